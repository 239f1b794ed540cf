//! What improves the skill library. Today: [`mine`], which groups the episodes read from
//! agents' logs by the job they ask for and proposes the skills that should exist (a new
//! one for a job that recurs with no skill covering it, a refinement for a skill whose
//! episodes fail). The distillation loop and the recall check, which live in `evals` for
//! now, are to move here, with the nightly cycle that runs them on the proposals.

mod cases;
mod mine;

pub use cases::suite_from_episodes;
pub use mine::{Evidence, LibrarySkill, MineConfig, MineReport, Proposal, ProposalKind, mine};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedding model failed.
    #[error(transparent)]
    Embed(#[from] skill_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
