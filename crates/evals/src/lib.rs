//! Evals: the cases and graders that measure whether a skill helps the student.
//!
//! A skill's suite lives beside it in `<skill>/evals/evals.json`. This crate will load and
//! validate suites, run them against a [`Student`] with and without the skill, grade the
//! answers (exact, normalized, regex, numeric, JSON field, tool-call checks, teacher rubric)
//! and report pass rates with confidence intervals. Scores are recorded on the skill's
//! versions through [`skill_core::VersionStore::record_scores`]. Today it only re-exports
//! the trait it grades; the runner lands with the distillation work.

pub use skill_core::Student;
