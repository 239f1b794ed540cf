//! What improves the skill library (`evals` measures; this crate changes skills):
//!
//! * [`distill`]: the teacher-student loop with a Pareto front, convergence, a recall check,
//!   a sealed test measurement and resume.
//! * [`recall`]: does search rank a skill first for its users' words and not for
//!   near-misses; the teacher writes the queries and rewrites the description.
//! * [`bbh`]: BIG-Bench Hard tasks as a skill (the human-written procedure) and a suite, and
//!   the measurements the README reports on them.
//! * [`mine`]: groups the episodes read from agents' logs by the job they ask for and
//!   proposes the skills that should exist (a new one for a job that recurs with no skill
//!   covering it, a refinement for a skill whose episodes fail), with
//!   [`suite_from_episodes`] turning a proposal's settled episodes into eval cases.
//!
//! * [`nightly`]: the night that mines, distills the top proposals within a budget, gates
//!   each change on held-out real tasks, stages it and reports.
//!
//! Modules depend one way: `nightly` -> (`distill`, `mine`, `cases`); `bbh` -> `distill` -> `recall` -> (`teacher_io`,
//! `worked_examples`); `answer_format` is shared by `bbh` and `distill`.

mod answer_format;
pub mod bbh;
mod cases;
pub mod distill;
pub mod job;
mod mine;
pub mod nightly;
pub mod recall;
mod teacher_io;
mod worked_examples;

pub use cases::{UserVerdict, suite_from_episodes, user_verdicts};
pub use mine::{Evidence, LibrarySkill, MineConfig, MineReport, Proposal, ProposalKind, mine};

use std::path::PathBuf;

/// What can go wrong; each error names the file, line or case where one is known.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A suite, state or example file is not valid JSON of the expected shape.
    #[error("{path}:{line}: {message}")]
    Suite {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A suite parsed but has problems (all listed).
    #[error("{} problem(s) in {path}:\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    InvalidSuite {
        /// The file.
        path: PathBuf,
        /// Each problem, with line and case where known.
        problems: Vec<String>,
    },
    /// Measuring failed (a suite, a grader, the runner).
    #[error(transparent)]
    Evals(#[from] evals::Error),
    /// An error from the shared crate (files, skills, backends, the embedding model).
    #[error(transparent)]
    Core(#[from] skill_core::Error),
    /// The teacher answered, but not with usable structured output (after its repair request).
    #[error("{0}")]
    TeacherOutput(String),
    /// Another night holds the lock.
    #[error("another night is running (it holds {0}); wait for it to finish")]
    Busy(PathBuf),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// An episode the user settled (or not), for the unit tests of mining, cases and the night.
#[cfg(test)]
pub(crate) fn settled_episode(
    task: &str,
    kind: agent_logs::OutcomeKind,
    answer: Option<&str>,
    correction: Option<&str>,
) -> agent_logs::Episode {
    agent_logs::Episode {
        answer: answer.map(str::to_string),
        outcome: agent_logs::Outcome { kind, evidence: String::new(), correction: correction.map(str::to_string) },
        ..agent_logs::Episode::new("pi", "/logs/s.jsonl", "s", task)
    }
}

/// The text cut to `max` characters, with `…` where it was cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

impl Error {
    pub(crate) fn other(message: impl Into<String>) -> Self {
        Error::Other(message.into())
    }
}

impl From<Error> for skill_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(inner) | Error::Evals(evals::Error::Core(inner)) => inner,
            other => skill_core::Error::backend("optimizer", other),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A finished answer from a scripted test backend.
#[cfg(test)]
pub(crate) fn scripted_completion(text: impl Into<String>) -> skill_core::Completion {
    skill_core::Completion {
        text: text.into(),
        usage: Default::default(),
        elapsed: std::time::Duration::ZERO,
        finish_reason: "stop".into(),
    }
}
