//! The teacher: a frontier model behind any OpenAI-compatible API that writes `SKILL.md`
//! drafts and the evals that grade them, and rewrites skills from the student's failures.
//!
//! * [`OpenAiTeacher`]: async-openai against OpenAI or any OpenAI-compatible endpoint
//!   (another provider, Ollama, llama.cpp's server, `skd serve`). Base URL, model and key
//!   come from config or `OPENAI_BASE_URL` / `OPENAI_API_KEY`; the key is never logged,
//!   printed or written. Rate limits (429, honouring `Retry-After`), server errors (5xx)
//!   and refused connections are retried by async-openai's retry layer; attempts that hang
//!   past the timeout and bodies that are not completions are retried here, with
//!   exponential backoff. Tokens and cost are counted.
//! * [`StudentTeacher`]: any [`Student`](skill_core::Student) backend used as the teacher.
//! * [`cassette`]: recorded teacher answers, replayed in order, for deterministic tests.
//! * [`structured`]: asking for JSON that must validate, with one repair request when the
//!   answer is invalid or cut off, then a clear error: a corrupt draft never reaches disk.

pub mod cassette;
mod openai;
pub mod structured;

pub use cassette::{Cassette, CassetteTeacher};
pub use openai::{OpenAiTeacher, OpenAiTeacherConfig, Prices, RetryPolicy, UsageTotals};
pub use skill_core::Teacher;
pub use structured::{JsonAnswer, ask_json, ask_parsed};

use async_trait::async_trait;
use skill_core::{Completion, CompletionRequest, Student};
use std::sync::Arc;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the teacher crate. Each names the endpoint or the output and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint could not be used (after retries where retrying made sense).
    #[error("teacher at {endpoint}: {message}")]
    Endpoint {
        /// Base URL (never the key).
        endpoint: String,
        /// What happened, including the number of attempts.
        message: String,
    },
    /// The teacher's structured output was invalid twice (the answer and its repair).
    #[error(
        "the teacher's {what} was invalid after one repair request: {problem}\n--- last answer (first 400 chars) ---\n{excerpt}"
    )]
    InvalidOutput {
        /// What was asked for (`eval cases`, `skill draft`, `verdict`).
        what: String,
        /// Why it was rejected.
        problem: String,
        /// The start of the last answer.
        excerpt: String,
        /// Tokens both answers used: spent even though nothing usable came back.
        usage: skill_core::Usage,
    },
    /// Configuration is incomplete (no model, bad URL).
    #[error("teacher configuration: {0}")]
    Config(String),
    /// A backend error from a wrapped student or the shared traits.
    #[error(transparent)]
    Core(#[from] skill_core::Error),
}

impl From<Error> for skill_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(inner) => inner,
            other => skill_core::Error::backend("teacher", other),
        }
    }
}

/// A [`Student`] backend serving as the teacher (e.g. a bigger local GGUF).
pub struct StudentTeacher {
    inner: Arc<dyn Student>,
}

impl StudentTeacher {
    /// Wraps a student.
    pub fn new(inner: Arc<dyn Student>) -> Self {
        StudentTeacher { inner }
    }
}

#[async_trait]
impl Teacher for StudentTeacher {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        self.inner.complete(request).await
    }
}
