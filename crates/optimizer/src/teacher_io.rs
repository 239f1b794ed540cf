//! Requests to the teacher and the accounting of its structured answers, shared by the
//! distiller and the recall check.

use crate::{Error, Result};
use skill_core::{ChatMessage, Completion, CompletionRequest, Role, Teacher, Usage};
use std::sync::atomic::{AtomicU64, Ordering};

const TEACHER_SYSTEM: &str = "You write skills for a small local language model: SKILL.md files in the Agent \
Skills format (YAML frontmatter with `name` and `description`, then markdown instructions). A skill is one \
job, written as a short numbered procedure the small model can follow literally, with the output format \
stated exactly. Generalize: never mention specific test inputs.";

/// A request to the teacher: its system prompt, `user`, a token limit and a timeout.
pub(crate) fn teacher_request(user: String, max_tokens: u32, timeout: std::time::Duration) -> CompletionRequest {
    let mut request = CompletionRequest::new(vec![
        ChatMessage::new(Role::System, TEACHER_SYSTEM),
        ChatMessage::new(Role::User, user),
    ]);
    request.max_tokens = max_tokens;
    request.timeout = timeout;
    request
}

/// A structured teacher answer as ours, its tokens passed to `on_usage` whether or not it
/// was usable (an unusable reply still cost both answers; nothing is known of a request that
/// did not complete). "Answered, but unusably" stays apart from "unreachable".
pub(crate) fn counted<T>(
    answer: teacher::Result<teacher::JsonAnswer<T>>,
    on_usage: &mut dyn FnMut(&skill_core::Usage),
) -> Result<T> {
    match answer {
        Ok(answer) => {
            on_usage(&answer.usage);
            Ok(answer.value)
        }
        Err(invalid @ teacher::Error::InvalidOutput { usage, .. }) => {
            on_usage(&usage);
            Err(Error::TeacherOutput(invalid.to_string()))
        }
        Err(other) => Err(Error::other(other.to_string())),
    }
}

/// A teacher that counts the tokens of every answer it passes on: for the rubric judge, whose
/// requests the eval runner makes without reporting their usage.
pub(crate) struct TokenCounting<'a> {
    inner: &'a dyn Teacher,
    prompt: AtomicU64,
    completion: AtomicU64,
}

impl<'a> TokenCounting<'a> {
    pub(crate) fn new(inner: &'a dyn Teacher) -> Self {
        TokenCounting { inner, prompt: AtomicU64::new(0), completion: AtomicU64::new(0) }
    }

    /// The tokens of the answers since the last call, and starts counting again.
    pub(crate) fn take_usage(&self) -> Usage {
        let take = |n: &AtomicU64| u32::try_from(n.swap(0, Ordering::SeqCst)).unwrap_or(u32::MAX);
        Usage { prompt_tokens: take(&self.prompt), completion_tokens: take(&self.completion) }
    }
}

#[async_trait::async_trait]
impl Teacher for TokenCounting<'_> {
    fn model_id(&self) -> &str {
        // The judge's own id: cached verdicts stay keyed by the model that gave them.
        self.inner.model_id()
    }

    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        let answer = self.inner.complete(request).await?;
        self.prompt.fetch_add(u64::from(answer.usage.prompt_tokens), Ordering::SeqCst);
        self.completion.fetch_add(u64::from(answer.usage.completion_tokens), Ordering::SeqCst);
        Ok(answer)
    }
}
