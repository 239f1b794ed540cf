//! Suite files on disk: valid ones load and round-trip, bad ones name the file, line and case.

use evals::{EvalCase, EvalSuite, Grader, Split};

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("evals.json");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn agent_skills_shape_loads_with_defaults() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(
        &dir,
        r#"{
  "skill_name": "pdf-forms",
  "evals": [
    {"id": 1, "prompt": "Fill the form", "expected_output": "done", "files": ["form.pdf"]},
    {"id": "two", "prompt": "Say hi", "expectations": ["greets the user"], "split": "test"}
  ]
}"#,
    );
    let suite = EvalSuite::load(&path).expect("load");
    assert_eq!(suite.evals.len(), 2);
    assert_eq!(suite.evals[0].effective_graders(), vec![Grader::Normalized { expected: None }]);
    assert_eq!(suite.evals[1].effective_graders(), vec![Grader::Rubric { criteria: vec!["greets the user".into()] }]);
    assert_eq!(suite.split(Split::Test).len(), 1);

    let copy = dir.path().join("copy/evals.json");
    suite.save(&copy).expect("save");
    assert_eq!(EvalSuite::load(&copy).expect("reload"), suite);
}

#[test]
fn json_syntax_errors_name_the_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(&dir, "{\n  \"skill_name\": \"x\",\n  \"evals\": [\n    {\"id\": 1, \"prompt\": \"p\",}\n  ]\n}");
    let msg = EvalSuite::load(&path).expect_err("bad json").to_string();
    assert!(msg.contains("evals.json:4:"), "{msg}");
}

#[test]
fn every_problem_is_listed_with_line_and_case() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = write(
        &dir,
        r#"{
  "skill_name": "s",
  "evals": [
    {"id": "a", "prompt": "p", "expected_output": "x", "graders": [{"type": "regex", "pattern": "("}]},
    {"id": "a", "prompt": "", "expected_output": "x"},
    {"id": "c", "prompt": "p", "graders": [{"type": "numeric", "tolerance": 0.5}]},
    {"id": "d", "prompt": "p", "graders": [{"type": "tool_call", "tool": "write_file"}]},
    {"id": "e", "prompt": "p"}
  ]
}"#,
    );
    let err = EvalSuite::load(&path).expect_err("invalid");
    let msg = err.to_string();
    for needle in [
        "line 4: case a: grader `regex`: bad pattern",
        "case a: duplicate id",
        "prompt is empty",
        "line 6: case c: grader `numeric`",
        "line 7: case d: grader `tool_call` needs \"mode\": \"agent\"",
        "line 8: case e: nothing to grade",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
}

#[test]
fn unknown_fields_and_grader_types_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let path =
        write(&dir, r#"{"skill_name": "s", "evals": [{"id": 1, "prompt": "p", "graders": [{"type": "fuzzy"}]}]}"#);
    let msg = EvalSuite::load(&path).expect_err("unknown grader").to_string();
    assert!(msg.contains("fuzzy"), "{msg}");
    let path = write(&dir, r#"{"skill_name": "s", "evals": [{"id": 1, "prompt": "p", "expected": "typo"}]}"#);
    let msg = EvalSuite::load(&path).expect_err("unknown field").to_string();
    assert!(msg.contains("expected"), "{msg}");
}

#[test]
fn saving_an_invalid_suite_writes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut suite = EvalSuite::new("s");
    suite.evals.push(EvalCase::new("a", "", "x"));
    let path = dir.path().join("evals.json");
    assert!(suite.save(&path).is_err());
    assert!(!path.exists());
}
