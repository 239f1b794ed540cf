//! The agent loop: Plan -> Tool Call -> Observe -> Refine.
//!
//! Given a task, [`Agent::run`] asks a [`Retriever`] for the skills and notes that fit,
//! shows the [`Student`] a catalog of the top skills (name and description) and the best
//! note excerpts, and activates a skill directly when retrieval is confident or the caller
//! names one; otherwise the model can load one with the `activate_skill` tool. Each step
//! the model reasons in free text, following the skill's steps, and ends with one action
//! line: a final answer or a call of a tool it may use. Only the action is constrained, by a
//! grammar where the backend enforces one ([`protocol`]); a reply without a usable action
//! gets one correction request, then becomes an observation the model can correct. Tools
//! ([`tools`], [`shell`], [`mcp`]) run with a timeout, their output is truncated, and an
//! active skill's `allowed-tools` limits what may be called ([`permissions`]). Every event is
//! redacted where it is made and goes to a JSONL transcript ([`transcript`]).

mod agent;
pub mod arith;
pub mod mcp;
pub mod permissions;
pub mod protocol;
pub mod sandbox;
pub mod shell;
pub mod tools;
pub mod transcript;

pub use agent::{Agent, AgentConfig, History, ReplyConstraint, RunOptions, RunOutcome};
pub use skill_core::{Retriever, Student, Tool};
pub use transcript::{Event, Outcome};

use std::path::{Path, PathBuf};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors that end a run (tool failures do not: they become observations).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed (transcript, workspace).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The named skill does not exist.
    #[error("skill `{0}` not found (`skd skill list` shows the skills there are)")]
    SkillNotFound(String),
    /// A skill file could not be read.
    #[error("{0}")]
    Skill(String),
    /// Retrieval failed.
    #[error("retrieval failed: {0}")]
    Retrieval(String),
    /// An MCP server could not be used.
    #[error("MCP server `{server}`: {message}")]
    Mcp {
        /// The server's configured name.
        server: String,
        /// What went wrong.
        message: String,
    },
    /// The agent was set up wrongly (duplicate tool names...).
    #[error("{0}")]
    Config(String),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }
}
