//! Importing BIG-Bench Hard tasks from the shared data folder (read in place, never copied).

use evals::{Grader, Split};
use optimizer::bbh::{SplitSizes, import, list_tasks};
use std::path::PathBuf;

/// This package's folder, as cargo gives it to the running test: a test binary built from
/// another checkout that shares the target folder keeps that checkout's compile-time path.
fn package_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests"))
}

fn data_dir() -> PathBuf {
    package_dir().join("../../../shared/data/bbh")
}

#[test]
fn a_task_becomes_a_valid_skill_and_a_sealed_split() {
    let tasks = list_tasks(&data_dir()).expect("BBH data at ../shared/data/bbh");
    assert_eq!(tasks.len(), 27, "{tasks:?}");
    let sizes = SplitSizes { train: 5, validation: 5, test: 10 };
    let t = import(&data_dir(), "boolean_expressions", sizes, 7).expect("import");
    assert_eq!(t.skill_name, "bbh-boolean-expressions");
    let skill = skill_core::Skill::parse(&t.skill_markdown, None).expect("parse skill");
    let diags = skill_core::validate_skill(&skill, skill_core::ValidationMode::Strict);
    assert!(diags.iter().all(|d| d.severity != skill_core::Severity::Error), "{diags:?}");
    assert!(skill.body().contains("Let's think step by step"));
    assert_eq!(t.suite.split(Split::Train).len(), 5);
    assert_eq!(t.suite.split(Split::Test).len(), 10);
    assert!(t.suite.problems("").is_empty(), "{:?}", t.suite.problems(""));
    // Same seed, same split; another seed, another split.
    let again = import(&data_dir(), "boolean_expressions", sizes, 7).expect("again");
    assert_eq!(again.suite, t.suite);
    let other = import(&data_dir(), "boolean_expressions", sizes, 8).expect("other");
    assert_ne!(other.suite, t.suite);
}

#[test]
fn numeric_tasks_get_numeric_graders_and_unknown_tasks_are_named() {
    let sizes = SplitSizes { train: 1, validation: 1, test: 1 };
    let t = import(&data_dir(), "object_counting", sizes, 1).expect("import");
    assert!(matches!(t.suite.evals[0].graders[0], Grader::Numeric { .. }));
    let err = import(&data_dir(), "no_such_task", sizes, 1).expect_err("unknown").to_string();
    assert!(err.contains("no_such_task") && err.contains("boolean_expressions"), "{err}");
}
