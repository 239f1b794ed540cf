//! Shared domain types of the skill distillation workspace.
//!
//! This crate is the vocabulary every other crate speaks:
//!
//! * [`Skill`]: a parsed `SKILL.md` in the [Agent Skills](https://agentskills.io) format,
//!   written back byte for byte when unchanged ([`skill`]).
//! * [`validate`]: the specification's rules, reported as [`Diagnostic`]s with file and line,
//!   all problems at once.
//! * [`SkillLibrary`]: a folder tree of `<name>/SKILL.md`, plus the usual import locations.
//! * [`VersionStore`]: atomic saves that keep every earlier version of a skill, with its time
//!   and scores ([`versions`]).
//! * The backend traits [`Teacher`], [`Student`], [`Retriever`] and [`Tool`], small and
//!   object-safe so the agent loop can hold `Box<dyn Student>` chosen at run time.
//!
//! Nothing here talks to a model or an index: those live in the `teacher`, `student` and
//! `retrieval` crates, which implement these traits.

pub mod blocking;
pub mod embed_cache;
pub mod error;
pub mod fsutil;
pub mod library;
#[cfg(feature = "openai")]
pub mod openai;
pub mod redact;
pub mod skill;
pub mod time;
pub mod traits;
pub mod validate;
pub mod versions;

pub use blocking::blocking;
pub use error::{Error, Result};
pub use library::{Discovery, SkillEntry, SkillLibrary, SkippedPath};
pub use skill::{Skill, SkillMeta};
pub use traits::{
    ChatMessage, Completion, CompletionRequest, Embedder, Hit, NoteHit, RetrievalQuery, Retriever, Role, Scope,
    SkillHit, Student, Teacher, Tool, ToolOutput, ToolSpec, Usage, cosine,
};
pub use validate::{Diagnostic, Severity, ValidationMode, is_placeholder_value, validate_file, validate_skill};
pub use versions::{VersionInfo, VersionStore};
