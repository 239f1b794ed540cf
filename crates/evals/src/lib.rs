//! Evals: the cases and graders that measure whether a skill helps the student.
//!
//! * [`suite`]: `<skill>/evals/evals.json`, checked on load with every problem named.
//! * [`grade`]: exact, normalized, contains, regex, numeric, JSON field, tool-call and
//!   final-file graders, and a teacher-judged rubric; each verdict carries its evidence.
//! * [`run`]: runs cases against a [`Student`] with or without a skill, caches results by
//!   (model, skill text, case) and keeps each case's transcript.
//! * [`stats`]: pass rates with Wilson intervals, the paired lift with Newcombe's interval
//!   and the exact McNemar test.
//! * [`report`]: `benchmark.json`, `benchmark.md` and a self-contained `benchmark.html`.

pub mod grade;
pub mod report;
mod rubric;
pub mod run;
pub mod stats;
pub mod suite;

pub use grade::{Answer, GradeOutcome, Grader, ToolCallRecord};
pub use report::{Benchmark, BenchmarkEntry, Summary};
pub use run::{AgentLibrary, CaseResult, Evaluator, RunnerConfig, SkillText, SuiteRun};
pub use skill_core::Student;
pub use stats::{Lift, PairedCounts, Rate, format_p, mcnemar_exact};
pub use suite::{CaseId, CaseMode, EvalCase, EvalSuite, Split};

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the evals crate; each names the file, line or case.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A suite or report file is not valid JSON of the expected shape.
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
    /// A grader could not grade a case.
    #[error("case {case}: {message}")]
    Grader {
        /// The case id.
        case: String,
        /// Why.
        message: String,
    },
    /// An error from the shared crate (files, skills, backends).
    #[error(transparent)]
    Core(#[from] skill_core::Error),
    /// The teacher answered, but not with usable structured output (after its repair request).
    #[error("{0}")]
    TeacherOutput(String),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub(crate) fn other(message: impl Into<String>) -> Self {
        Error::Other(message.into())
    }
}

impl From<Error> for skill_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(inner) => inner,
            other => skill_core::Error::backend("evals", other),
        }
    }
}
