//! The teacher: a frontier model behind any OpenAI-compatible API that writes `SKILL.md`
//! drafts and the evals that grade them, and rewrites skills from the student's failures.
//!
//! This crate will hold `OpenAiTeacher` (async-openai, retries, token and cost accounting)
//! and the validated structured outputs (skill drafts, eval cases, verdicts) of the
//! distillation loop. Today it only re-exports the [`Teacher`] trait from `skill-core`, which
//! is what the rest of the workspace programs against; backends land with the distillation
//! work.

pub use skill_core::Teacher;
