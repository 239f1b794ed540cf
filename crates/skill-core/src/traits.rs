//! The backend traits the agent loop and the distillation loop are generic over.
//!
//! Each trait is small and object-safe (`Box<dyn Student>` works), so a backend is chosen at
//! run time from config. Implementations live in their own crates: `student` (mistral.rs,
//! OpenAI-compatible servers), `teacher` (OpenAI-compatible APIs), `retrieval` (tantivy) and
//! `agent-loop` (built-in and MCP tools).

use crate::Result;
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user or the loop speaking to the model.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A message with a role.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage { role, content: content.into() }
    }
}

/// A request for one completion.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompletionRequest {
    /// The conversation so far. A last message from the assistant is continued by backends
    /// whose [`Student::continues_reply`] is true.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
    /// `None` means greedy (deterministic) decoding.
    pub temperature: Option<f32>,
    /// Strings that end generation.
    pub stop: Vec<String>,
    /// When set, the output must be JSON matching this schema (constrained decoding where the
    /// backend supports it).
    pub json_schema: Option<serde_json::Value>,
    /// When set, the output must match this Lark grammar (llguidance's dialect), enforced
    /// during decoding by backends whose [`Student::supports_grammar`] is true; others
    /// ignore it, and the caller reads their free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<String>,
    /// Wall-clock limit for the call.
    pub timeout: Duration,
}

impl CompletionRequest {
    /// Greedy decoding, 512 tokens, 120 s.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        CompletionRequest {
            messages,
            max_tokens: 512,
            temperature: None,
            stop: Vec::new(),
            json_schema: None,
            grammar: None,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt and generated tokens together.
    pub fn total(&self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.completion_tokens)
    }
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// Token counts.
    pub usage: Usage,
    /// Wall-clock time of the call.
    pub elapsed: Duration,
    /// Why generation stopped (`stop`, `length`, ...), as the backend reports it.
    pub finish_reason: String,
}

/// The small local model that executes skills.
#[async_trait]
pub trait Student: Send + Sync {
    /// A stable identifier of the model (used in result caches and transcripts).
    fn model_id(&self) -> &str;
    /// One chat completion.
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion>;
    /// True when [`CompletionRequest::grammar`] is enforced during decoding (the agent loop
    /// then relies on it; otherwise it reads free text and asks once for a correction).
    fn supports_grammar(&self) -> bool {
        false
    }
    /// True when a request whose last message is the assistant's is answered by continuing
    /// that message (the reply starts where it ends) rather than by a new reply after it. The
    /// agent loop's two-request protocol needs it to hand the model's reasoning to a second,
    /// constrained request; backends that cannot say so keep the one-request protocol.
    fn continues_reply(&self) -> bool {
        false
    }
    /// How many requests this backend decodes together when they are in flight at once
    /// (an eval runner sends this many cases together unless told otherwise). 1, the
    /// default, means concurrent requests gain nothing and may cost (a CPU engine's prefix
    /// cache only helps sequential requests).
    fn max_parallel_requests(&self) -> usize {
        1
    }
    /// Answers several requests, one result per request in their order. Backends that
    /// decode requests together (llama.cpp's shared-prefix batches) or that serve them
    /// concurrently (an OpenAI-compatible endpoint) override it; the default answers one
    /// after another.
    async fn complete_batch(&self, requests: &[CompletionRequest]) -> Vec<Result<Completion>> {
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            answers.push(self.complete(request).await);
        }
        answers
    }
}

/// The frontier model that writes and rewrites skills and their evals.
#[async_trait]
pub trait Teacher: Send + Sync {
    /// A stable identifier of the model.
    fn model_id(&self) -> &str;
    /// One chat completion.
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion>;
}

/// What to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Skills and notes.
    #[default]
    All,
    /// Only the skill library.
    Skills,
    /// Only knowledge-base notes.
    Notes,
}

/// A retrieval request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetrievalQuery {
    /// Free text; any text is valid.
    pub text: String,
    /// At most this many hits.
    pub limit: usize,
    /// What to search.
    pub scope: Scope,
}

/// A skill that matched.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SkillHit {
    /// The skill's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Path of its `SKILL.md`.
    pub path: PathBuf,
    /// Relevance (higher is better; comparable within one query only).
    pub score: f32,
}

/// A note section that matched.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NoteHit {
    /// The note file.
    pub path: PathBuf,
    /// Title of the note.
    pub title: String,
    /// Headings from the top of the note down to the matched section.
    pub heading_path: Vec<String>,
    /// First line of the section (1-based).
    pub line_start: usize,
    /// Last line of the section (1-based, inclusive).
    pub line_end: usize,
    /// A short excerpt around the matched words.
    pub snippet: String,
    /// Relevance (higher is better; comparable within one query only).
    pub score: f32,
}

/// One retrieval result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Hit {
    /// A skill.
    Skill(SkillHit),
    /// A note section.
    Note(NoteHit),
}

impl Hit {
    /// The hit's score.
    pub fn score(&self) -> f32 {
        match self {
            Hit::Skill(h) => h.score,
            Hit::Note(h) => h.score,
        }
    }
}

/// Turns texts into vectors of length 1 whose dot products are their cosine similarities
/// (a sentence-embedding model): what hybrid search and the task miner compare by meaning.
pub trait Embedder: Send + Sync {
    /// A stable name of the model (vectors cached under one name do not stand for another).
    fn id(&self) -> &str;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

/// A shared embedder is an embedder (a cache or a search can hold the model its owner holds).
impl<T: Embedder + ?Sized> Embedder for std::sync::Arc<T> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        (**self).embed(texts)
    }
}

/// The cosine similarity of two vectors of length 1 (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Finds the skills and notes that fit a task.
#[async_trait]
pub trait Retriever: Send + Sync {
    /// Hits ordered best first.
    async fn retrieve(&self, query: &RetrievalQuery) -> Result<Vec<Hit>>;
}

/// What a tool looks like to the model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolSpec {
    /// Unique name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// A tool's result, shown to the model as an observation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolOutput {
    /// Text for the model.
    pub content: String,
    /// True when the tool failed; the content then explains why.
    pub is_error: bool,
}

/// Something the agent can call: a Rust function, a built-in, or an MCP server's tool.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Name, description and argument schema.
    fn spec(&self) -> ToolSpec;
    /// Runs the tool. Errors the model can fix (bad arguments) should be returned as
    /// `ToolOutput { is_error: true, .. }`; `Err` is for failures of the tool itself.
    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput>;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    #[async_trait]
    impl Tool for Echo {
        fn spec(&self) -> ToolSpec {
            ToolSpec {
                name: "echo".into(),
                description: "echoes".into(),
                parameters: serde_json::json!({"type": "object"}),
            }
        }
        async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput> {
            Ok(ToolOutput { content: arguments.to_string(), is_error: false })
        }
    }

    #[tokio::test]
    async fn traits_are_object_safe() {
        let tools: Vec<Box<dyn Tool>> = vec![Box::new(Echo)];
        let out = tools[0].call(serde_json::json!({"x": 1})).await.expect("call");
        assert_eq!(out.content, r#"{"x":1}"#);
        assert_eq!(tools[0].spec().name, "echo");
    }

    #[test]
    fn hit_serializes_with_kind_tag() {
        let hit =
            Hit::Skill(SkillHit { name: "a".into(), description: "d".into(), path: "a/SKILL.md".into(), score: 1.5 });
        let json = serde_json::to_value(&hit).expect("json");
        assert_eq!(json["kind"], "skill");
        assert_eq!(json["name"], "a");
    }
}
