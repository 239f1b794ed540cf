//! The one error type of `skill-core`.

use std::path::PathBuf;

/// Result alias used across `skill-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `skill-core`, and in backends that implement its traits.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed; `path` names the file or folder.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A `SKILL.md` could not be parsed at all (no frontmatter, broken YAML, not UTF-8...).
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong, in words a user can act on.
        message: String,
    },
    /// A skill failed validation; every problem is listed.
    #[error("{} problem(s) in {path}:\n{}", diagnostics.len(), diagnostics.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// All problems found.
        diagnostics: Vec<crate::Diagnostic>,
    },
    /// A named thing (skill, version) does not exist.
    #[error("{what} not found{}", hint.as_deref().map(|h| format!(": {h}")).unwrap_or_default())]
    NotFound {
        /// What was looked for, e.g. `skill "pdf-extract"`.
        what: String,
        /// How to find what exists.
        hint: Option<String>,
    },
    /// The operation would overwrite something that must not be overwritten.
    #[error("{0}")]
    Conflict(String),
    /// A model, retriever or tool backend failed.
    #[error("{backend}: {message}")]
    Backend {
        /// Which backend (e.g. `tantivy`, `openai`, `mistralrs`).
        backend: String,
        /// What went wrong.
        message: String,
    },
    /// A tool call was rejected or failed; the message is meant to be shown to the model.
    #[error("tool {tool}: {message}")]
    Tool {
        /// The tool's name.
        tool: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A backend error with a message.
    pub fn backend(backend: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Backend { backend: backend.into(), message: message.to_string() }
    }
}
