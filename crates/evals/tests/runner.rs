//! The eval runner with suites on disk: agent-mode cases (the agent loop with real tools in
//! a scratch workspace, graded by tool-call and file graders), rubric cases (graded by a
//! real local judge model), and a student that times out.

use async_trait::async_trait;
use evals::{AgentLibrary, EvalSuite, Evaluator, RunnerConfig, SkillText};
use retrieval::{SearchIndex, Sources};
use skill_core::{Completion, CompletionRequest, SkillLibrary, Student, Teacher, Usage};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use student::models::{ModelStore, find_known};
use student::{MistralRsOptions, MistralRsStudent};
use teacher::StudentTeacher;

const SKILL: &str = "---\nname: copy-first-line\ndescription: Copy the first line of a file into another file.\n---\n\
1. Read the source file with read_file.\n2. Write its first line to the target file with write_file.\n\
3. Answer `done`.\n";

const SUITE: &str = r#"{
  "skill_name": "copy-first-line",
  "evals": [
    {
      "id": "copy",
      "prompt": "Copy the first line of input.txt into answer.txt.",
      "files": ["fixtures/input.txt"],
      "mode": "agent",
      "graders": [
        {"type": "tool_call", "tool": "write_file", "arguments": {"path": "answer.txt"}},
        {"type": "file", "path": "answer.txt", "contains": ["alpha"]}
      ]
    },
    {
      "id": "copy-again",
      "prompt": "Copy the first line of input.txt into answer.txt.",
      "files": ["fixtures/input.txt"],
      "mode": "agent",
      "graders": [
        {"type": "tool_call", "tool": "write_file", "arguments": {"path": "answer.txt"}},
        {"type": "file", "path": "answer.txt", "contains": ["alpha"]}
      ]
    }
  ]
}"#;

/// Replies in the agent protocol, in order, for the deterministic part.
struct Scripted(Mutex<Vec<&'static str>>);

#[async_trait]
impl Student for Scripted {
    fn model_id(&self) -> &str {
        "scripted"
    }
    async fn complete(&self, _request: &CompletionRequest) -> skill_core::Result<Completion> {
        let text =
            self.0.lock().expect("lock").pop().ok_or_else(|| skill_core::Error::backend("scripted", "no more"))?;
        Ok(Completion {
            text: text.to_string(),
            usage: Usage { prompt_tokens: 50, completion_tokens: 10 },
            elapsed: Duration::from_millis(1),
            finish_reason: "stop".into(),
        })
    }
}

/// A skill folder in a temp dir with `suite_json` as its `evals/evals.json`, loaded.
fn suite_on_disk(suite_json: &str) -> (tempfile::TempDir, EvalSuite) {
    let dir = tempfile::tempdir().expect("tmp");
    let suite_path = EvalSuite::path_in(dir.path());
    std::fs::create_dir_all(suite_path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&suite_path, suite_json).expect("suite");
    let suite = EvalSuite::load(&suite_path).expect("the suite loads");
    (dir, suite)
}

fn skill_folder() -> (tempfile::TempDir, EvalSuite) {
    let (dir, suite) = suite_on_disk(SUITE);
    std::fs::create_dir_all(dir.path().join("fixtures")).expect("mkdir");
    std::fs::write(dir.path().join("fixtures/input.txt"), "alpha\nbeta\n").expect("fixture");
    std::fs::write(dir.path().join("SKILL.md"), SKILL).expect("skill");
    (dir, suite)
}

async fn smollm2() -> Arc<dyn Student> {
    let path = ModelStore::new(ModelStore::default_dir()).path_of(&find_known("smollm2-135m").expect("known"));
    Arc::new(MistralRsStudent::load(&path, MistralRsOptions::default()).await.expect("SmolLM2"))
}

#[tokio::test]
async fn a_case_workspace_folder_becomes_the_agent_workspace_and_the_run_is_recorded() {
    let suite_json = r#"{"skill_name": "copy-first-line", "evals": [
      {"id": "ws", "prompt": "What is the first line of input.txt?", "mode": "agent",
       "workspace": "evals/workspaces/one", "expected_output": "alpha"}]}"#;
    let (dir, suite) = suite_on_disk(suite_json);
    let ws = dir.path().join("evals/workspaces/one/sub");
    std::fs::create_dir_all(&ws).expect("mkdir");
    std::fs::write(dir.path().join("evals/workspaces/one/input.txt"), "alpha\nbeta\n").expect("fixture");
    std::fs::write(ws.join("deep.txt"), "deep").expect("fixture");
    let config = RunnerConfig { files_root: Some(dir.path().to_path_buf()), ..RunnerConfig::default() };
    let replies = vec!["Answer: alpha", "Action: read_file {\"path\": \"input.txt\"}"];
    let student: Arc<dyn Student> = Arc::new(Scripted(Mutex::new(replies)));
    let evaluator = Evaluator { student, judge: None, suite: &suite, config: &config };
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();
    let run = evaluator.run(&cases, None, "no skill", &mut |_| {}).await.expect("run");
    let result = &run.results[0];
    assert!(result.passed, "{result:#?}");
    // input.txt sat at the workspace root, and the run's events are kept with the result.
    assert!(
        result
            .events
            .iter()
            .any(|e| matches!(e, agent_loop::Event::ToolCall { ok: true, output, .. } if output == "alpha\nbeta\n")),
        "{:#?}",
        result.events
    );
    assert!(matches!(result.events.first(), Some(agent_loop::Event::Start { .. })));
    // A workspace folder that is not there is a clear error of that case.
    let missing = r#"{"skill_name": "x", "evals": [{"id": "gone", "prompt": "p", "mode": "agent", "workspace": "evals/workspaces/none", "expected_output": "a"}]}"#;
    let (dir, suite) = suite_on_disk(missing);
    let config = RunnerConfig { files_root: Some(dir.path().to_path_buf()), ..RunnerConfig::default() };
    let student: Arc<dyn Student> = Arc::new(Scripted(Mutex::new(vec![])));
    let evaluator = Evaluator { student, judge: None, suite: &suite, config: &config };
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();
    let err = evaluator.run(&cases, None, "no skill", &mut |_| {}).await.expect_err("no such folder").to_string();
    assert!(err.contains("workspace") && err.contains("is not a folder"), "{err}");
    // The suite check refuses a workspace outside the skill folder, and one on an answer case.
    let bad = r#"{"skill_name": "x", "evals": [
      {"id": "up", "prompt": "p", "mode": "agent", "workspace": "../elsewhere", "expected_output": "a"},
      {"id": "answer", "prompt": "p", "workspace": "evals/w", "expected_output": "a"}]}"#;
    let suite: EvalSuite = serde_json::from_str(bad).expect("parses");
    let problems = suite.problems(bad);
    assert!(
        problems.iter().any(|p| p.contains("case up") && p.contains("relative to the skill folder")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("case answer") && p.contains("needs \"mode\": \"agent\"")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn workspace_files_carried_in_the_suite_are_written_into_the_agent_workspace() {
    // The folder's input.txt is replaced by the suite's own; notes/extra.txt is added.
    let suite_json = r#"{"skill_name": "mined", "evals": [
      {"id": "inline", "prompt": "What is the first line of input.txt?", "mode": "agent",
       "workspace": "evals/workspaces/one", "expected_output": "gamma",
       "workspace_files": {"input.txt": "gamma\n", "notes/extra.txt": "x"}}]}"#;
    let (dir, suite) = suite_on_disk(suite_json);
    std::fs::create_dir_all(dir.path().join("evals/workspaces/one")).expect("mkdir");
    std::fs::write(dir.path().join("evals/workspaces/one/input.txt"), "alpha\n").expect("fixture");
    let config = RunnerConfig { files_root: Some(dir.path().to_path_buf()), ..RunnerConfig::default() };
    let replies = vec![
        "Answer: gamma",
        "Action: read_file {\"path\": \"notes/extra.txt\"}",
        "Action: read_file {\"path\": \"input.txt\"}",
    ];
    let student: Arc<dyn Student> = Arc::new(Scripted(Mutex::new(replies)));
    let evaluator = Evaluator { student, judge: None, suite: &suite, config: &config };
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();
    let run = evaluator.run(&cases, None, "no skill", &mut |_| {}).await.expect("run");
    let outputs: Vec<&str> = run.results[0]
        .events
        .iter()
        .filter_map(|e| match e {
            agent_loop::Event::ToolCall { ok: true, output, .. } => Some(output.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(outputs, ["gamma\n", "x"]);
    assert!(run.results[0].passed, "{:#?}", run.results[0]);
    // A path out of the workspace, or files on an answer case, are refused by the suite check.
    let bad = r#"{"skill_name": "x", "evals": [
      {"id": "up", "prompt": "p", "mode": "agent", "workspace_files": {"../escape.txt": "x"}, "expected_output": "a"},
      {"id": "dot", "prompt": "p", "mode": "agent", "workspace_files": {"./": "x"}, "expected_output": "a"},
      {"id": "clash", "prompt": "p", "mode": "agent", "workspace_files": {"a": "x", "a/b.txt": "y"}, "expected_output": "a"},
      {"id": "answer", "prompt": "p", "workspace_files": {"a.txt": "x"}, "expected_output": "a"}]}"#;
    let suite: EvalSuite = serde_json::from_str(bad).expect("parses");
    let problems = suite.problems(bad);
    assert!(
        problems.iter().any(|p| p.contains("case up") && p.contains("`../escape.txt`") && p.contains("inside it")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("case answer") && p.contains("`workspace_files` needs \"mode\": \"agent\"")),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.contains("case dot") && p.contains("`./`")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("case clash") && p.contains("`a` as a file and `a/b.txt` inside it")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn with_the_library_an_agent_case_finds_its_skill_by_retrieval_and_is_not_cached() {
    let (dir, suite) = skill_folder();
    // A library of the suite's skill and an unrelated one, and a note, indexed for real.
    let root = tempfile::tempdir().expect("tmp");
    let library_root = root.path().join("skills");
    for (name, text) in [
        ("copy-first-line", SKILL),
        (
            "weekly-update",
            "---\nname: weekly-update\ndescription: Draft the weekly status update from the standup notes.\n---\n1. Read standup.md.\n",
        ),
    ] {
        std::fs::create_dir_all(library_root.join(name)).expect("mkdir");
        std::fs::write(library_root.join(name).join("SKILL.md"), text).expect("skill");
    }
    let notes = root.path().join("notes");
    std::fs::create_dir_all(&notes).expect("mkdir");
    std::fs::write(notes.join("files.md"), "# Copying files\n\nKeep the source file; write the copy next to it.\n")
        .expect("note");
    let mut index = SearchIndex::open_or_create(&root.path().join("index")).expect("index");
    let sources =
        Sources { note_roots: vec![notes], library: Some(SkillLibrary::new(&library_root)), max_file_bytes: 0 };
    index.update(&sources, false, &mut |_| {}).expect("indexed");
    let cache = root.path().join("cache");
    let config = RunnerConfig {
        files_root: Some(dir.path().to_path_buf()),
        cache_dir: Some(cache.clone()),
        agent_library: Some(AgentLibrary {
            retriever: Arc::new(index),
            library: SkillLibrary::new(&library_root),
            catalog_size: 2,
            notes_in_prompt: 1,
            confident_ratio: agent_loop::AgentConfig::default().confident_ratio,
            confident_min_score: agent_loop::AgentConfig::default().confident_min_score,
        }),
        ..RunnerConfig::default()
    };
    let skill = SkillText { name: "copy-first-line".into(), markdown: SKILL.into() };
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();
    let mut replies = vec![
        "Action: read_file {\"path\": \"fixtures/input.txt\"}",
        "Action: write_file {\"path\": \"answer.txt\", \"content\": \"alpha\\n\"}",
        "Answer: done",
    ];
    replies.reverse();
    let student: Arc<dyn Student> = Arc::new(Scripted(Mutex::new(replies)));
    let evaluator = Evaluator { student, judge: None, suite: &suite, config: &config };
    let run = evaluator.run(&cases[..1], Some(&skill), "library", &mut |_| {}).await.expect("run");
    let result = &run.results[0];
    assert!(result.passed, "{result:#?}");
    let retrieved: Vec<&str> = result
        .events
        .iter()
        .find_map(|e| match e {
            agent_loop::Event::Retrieved { skills, .. } => Some(skills.iter().map(|s| s.name.as_str()).collect()),
            _ => None,
        })
        .expect("retrieval ran on the task's words");
    assert_eq!(retrieved.first(), Some(&"copy-first-line"), "{retrieved:?}");
    let activated: Vec<(&str, &str)> = result
        .events
        .iter()
        .filter_map(|e| match e {
            agent_loop::Event::SkillActivated { name, reason, .. } => Some((name.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(activated, [("copy-first-line", "confident")], "found, not handed over (`requested`)");
    assert!(!cache.exists(), "a library run is not cached: the library is not in the cache key");

    // With no skill, the library is not searched either: nothing retrieved or activated, no
    // `search_notes` tool.
    let student: Arc<dyn Student> = Arc::new(Scripted(Mutex::new(vec!["Answer: done"])));
    let evaluator = Evaluator { student, judge: None, suite: &suite, config: &config };
    let run = evaluator.run(&cases[..1], None, "no skill", &mut |_| {}).await.expect("run");
    let events = &run.results[0].events;
    let found = events.iter().any(|e| match e {
        agent_loop::Event::Retrieved { skills, notes } => !skills.is_empty() || !notes.is_empty(),
        agent_loop::Event::SkillActivated { .. } => true,
        _ => false,
    });
    assert!(!found, "{events:#?}");
    let tools = events.iter().find_map(|e| match e {
        agent_loop::Event::Start { tools, .. } => Some(tools.clone()),
        _ => None,
    });
    assert!(tools.as_ref().is_some_and(|t| !t.is_empty() && !t.iter().any(|t| t == "search_notes")), "{tools:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_cases_run_real_tools_in_a_scratch_workspace_and_are_graded_on_calls_and_files() {
    let (dir, suite) = skill_folder();
    let config = RunnerConfig { files_root: Some(dir.path().to_path_buf()), ..RunnerConfig::default() };
    let skill = SkillText { name: "copy-first-line".into(), markdown: SKILL.into() };
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();

    // Case 1 does the job; case 2 reads the file but writes the wrong line.
    let mut replies = vec![
        "I read the source first.\nAction: read_file {\"path\": \"fixtures/input.txt\"}",
        "Its first line is alpha.\nAction: write_file {\"path\": \"answer.txt\", \"content\": \"alpha\\n\"}",
        "The line is copied.\nAnswer: done",
        "Action: read_file {\"path\": \"fixtures/input.txt\"}",
        "Action: write_file {\"path\": \"answer.txt\", \"content\": \"beta\\n\"}",
        "Answer: done",
    ];
    replies.reverse();
    let student: Arc<dyn Student> = Arc::new(Scripted(Mutex::new(replies)));
    let evaluator = Evaluator { student, judge: None, suite: &suite, config: &config };
    let run = evaluator.run(&cases, Some(&skill), "v1", &mut |_| {}).await.expect("run");

    let good = &run.results[0];
    assert!(good.passed, "{good:#?}");
    assert_eq!(good.tool_calls.iter().map(|c| c.tool.as_str()).collect::<Vec<_>>(), ["read_file", "write_file"]);
    assert!(good.grades.iter().any(|g| g.evidence.contains("answer.txt is as expected")), "{:?}", good.grades);
    assert_eq!(good.usage.prompt_tokens, 150, "three model calls");

    let bad = &run.results[1];
    assert!(!bad.passed);
    let file_grade = bad.grades.iter().find(|g| g.evidence.contains("answer.txt")).expect("file grade");
    assert!(!file_grade.passed && file_grade.evidence.contains("lacks") && file_grade.evidence.contains("alpha"));
    // Each case had its own scratch copy: the skill folder's fixture is untouched and no
    // answer.txt was written next to it.
    assert_eq!(std::fs::read_to_string(dir.path().join("fixtures/input.txt")).expect("fixture"), "alpha\nbeta\n");
    assert!(!dir.path().join("answer.txt").exists() && !dir.path().join("fixtures/answer.txt").exists());

    // The same case with the real SmolLM2-135M: the loop runs to an end, the model is
    // called, and both graders give their verdict with its evidence.
    let real: Arc<dyn Student> = smollm2().await;
    let config = RunnerConfig { max_tokens: 96, agent_max_steps: 4, ..config };
    let evaluator = Evaluator { student: real, judge: None, suite: &suite, config: &config };
    let run = evaluator.run(&cases[..1], Some(&skill), "v1", &mut |_| {}).await.expect("run");
    let result = &run.results[0];
    assert!(result.error.is_none(), "{result:#?}");
    assert!(result.usage.prompt_tokens > 0 && result.usage.completion_tokens > 0);
    assert_eq!(result.grades.len(), 2, "{result:#?}");
    // SmolLM2 (greedy, mistral.rs) answers "1" without calling a tool: both graders fail it,
    // each saying why.
    let verdicts: Vec<(bool, &str)> = result.grades.iter().map(|g| (g.passed, g.evidence.as_str())).collect();
    assert_eq!(
        verdicts,
        [
            (false, "write_file was never called (calls: [])"),
            (false, "answer.txt: No such file or directory (os error 2)")
        ]
    );
    assert!(result.tool_calls.is_empty() && !result.passed, "{result:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rubric_cases_are_judged_per_criterion_by_a_real_local_model() {
    let (_dir, suite) = suite_on_disk(
        r#"{"skill_name": "haiku", "evals": [{"id": "h1", "prompt": "Write one sentence about the sea.",
            "graders": [{"type": "rubric", "criteria": ["mentions water or the sea", "is one sentence"]}]}]}"#,
    );
    let model: Arc<dyn Student> = smollm2().await;
    // The same local model answers and judges: the judge's JSON is constrained by the
    // verdict schema, so a verdict per criterion comes back whatever its quality.
    let judge = StudentTeacher::new(model.clone());
    let config = RunnerConfig { max_tokens: 48, ..RunnerConfig::default() };
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();

    let no_judge = Evaluator { student: model.clone(), judge: None, suite: &suite, config: &config };
    let err = no_judge.run(&cases, None, "no skill", &mut |_| {}).await.expect_err("a rubric needs a judge");
    assert!(err.to_string().contains("needs a teacher"), "{err}");

    let judged = Evaluator { student: model, judge: Some(&judge as &dyn Teacher), suite: &suite, config: &config };
    let run = judged.run(&cases, None, "no skill", &mut |_| {}).await.expect("judged run");
    let result = &run.results[0];
    assert!(result.error.is_none(), "{result:#?}");
    let grade = &result.grades[0];
    for criterion in ["mentions water or the sea", "is one sentence"] {
        assert!(grade.evidence.contains(criterion), "{}", grade.evidence);
    }
    assert_eq!(grade.evidence.matches("[pass]").count() + grade.evidence.matches("[fail]").count(), 2);
    // SmolLM2 wrote one sentence about the sea, and judged it to meet both criteria.
    assert_eq!(
        grade.evidence,
        "[pass] mentions water or the sea: The sea is a vast and mysterious realm that exists beneath the waves, \
         teeming with life and teeming with stories.; [pass] is one sentence: The sea is a vast and mysterious realm \
         that exists beneath the waves, teeming with life and teeming with stories."
    );
    assert!(result.passed, "{result:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_student_timeout_fails_the_case_the_run_goes_on_and_nothing_is_cached() {
    let (dir, suite) = suite_on_disk(
        r#"{"skill_name": "t", "evals": [
            {"id": 1, "prompt": "Say yes.", "expected_output": "yes"},
            {"id": 2, "prompt": "Say no.", "expected_output": "no"}]}"#,
    );
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();
    let model: Arc<dyn Student> = smollm2().await;
    let cache = dir.path().join("cache");
    let hasty = RunnerConfig {
        max_tokens: 16,
        timeout: Duration::from_millis(1),
        cache_dir: Some(cache.clone()),
        ..RunnerConfig::default()
    };
    let evaluator = Evaluator { student: model.clone(), judge: None, suite: &suite, config: &hasty };
    let run = evaluator.run(&cases, None, "no skill", &mut |_| {}).await.expect("the run itself succeeds");
    assert_eq!(run.results.len(), 2, "the second case ran after the first timed out");
    for r in &run.results {
        assert!(!r.passed);
        assert!(r.error.as_deref().is_some_and(|e| e.contains("no answer within")), "{r:#?}");
    }
    // A timeout is not a result: the next run asks the model again.
    let patient = RunnerConfig { timeout: Duration::from_secs(120), ..hasty };
    let evaluator = Evaluator { student: model, judge: None, suite: &suite, config: &patient };
    let run = evaluator.run(&cases, None, "no skill", &mut |_| {}).await.expect("run");
    for r in &run.results {
        assert!(!r.cached && r.error.is_none(), "{r:#?}");
        assert!(r.usage.completion_tokens > 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_answers_are_graded_again_with_the_current_graders() {
    let (dir, suite) = suite_on_disk(
        r#"{"skill_name": "t", "answer_pattern": "answer is (.+)", "evals": [
            {"id": 1, "prompt": "Who?\nOptions:\n(A) Karl\n(B) Sam", "expected_output": "(B)"}]}"#,
    );
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();
    let config = RunnerConfig { cache_dir: Some(dir.path().join("cache")), ..RunnerConfig::default() };
    let first: Arc<dyn Student> = Arc::new(Scripted(Mutex::new(vec!["So the answer is \\boxed{B}"])));
    let run = Evaluator { student: first, judge: None, suite: &suite, config: &config }
        .run(&cases, None, "no skill", &mut |_| {})
        .await
        .expect("run");
    assert!(run.results[0].passed && !run.results[0].cached, "{:#?}", run.results[0]);

    // Make the stored verdict stale, as an older grader would have left it.
    let stored = walk_json(&dir.path().join("cache"));
    assert_eq!(stored.len(), 1);
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stored[0]).expect("read")).expect("json");
    value["passed"] = serde_json::json!(false);
    value["grades"] = serde_json::json!([{"grader": "normalized", "passed": false, "evidence": "stale"}]);
    std::fs::write(&stored[0], value.to_string()).expect("write");

    // The model is not asked again (it has nothing left to say); the verdict is fresh.
    let silent: Arc<dyn Student> = Arc::new(Scripted(Mutex::new(Vec::new())));
    let transcripts = dir.path().join("runs");
    let config = RunnerConfig { transcript_dir: Some(transcripts.clone()), ..config };
    let run = Evaluator { student: silent, judge: None, suite: &suite, config: &config }
        .run(&cases, None, "no skill", &mut |_| {})
        .await
        .expect("run");
    let r = &run.results[0];
    assert!(r.cached && r.passed, "{r:#?}");
    assert!(r.grades[0].evidence.contains("option (B) Sam"), "{:?}", r.grades);
    // A case answered from the cache still has its transcript in this run's folder.
    let written = walk_json(&transcripts);
    assert_eq!(written.len(), 1, "{written:?}");
    let transcript: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&written[0]).expect("read")).expect("json");
    assert_eq!(transcript["result"]["cached"], serde_json::json!(true), "{transcript}");
    assert!(transcript["result"]["output"].as_str().is_some_and(|o| o.contains("boxed{B}")), "{transcript}");
}

/// A judge that passes every criterion, under the name it is given.
struct Approving(&'static str);

#[async_trait]
impl Teacher for Approving {
    fn model_id(&self) -> &str {
        self.0
    }
    async fn complete(&self, _request: &CompletionRequest) -> skill_core::Result<Completion> {
        Ok(Completion {
            text: r#"{"criteria": [{"criterion": "is polite", "passed": true, "evidence": "says please"}]}"#.into(),
            usage: Usage { prompt_tokens: 50, completion_tokens: 10 },
            elapsed: Duration::from_millis(1),
            finish_reason: "stop".into(),
        })
    }
}

#[tokio::test]
async fn a_rubric_verdict_is_cached_per_judge() {
    let (dir, suite) = suite_on_disk(
        r#"{"skill_name": "t", "evals": [{"id": 1, "prompt": "Ask for the salt.",
            "graders": [{"type": "rubric", "criteria": ["is polite"]}]}]}"#,
    );
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();
    let config = RunnerConfig { cache_dir: Some(dir.path().join("cache")), ..RunnerConfig::default() };
    let run_with = |judge: &'static str, replies: Vec<&'static str>| {
        let student: Arc<dyn Student> = Arc::new(Scripted(Mutex::new(replies)));
        let (suite, config, cases) = (&suite, &config, &cases);
        async move {
            let judge = Approving(judge);
            Evaluator { student, judge: Some(&judge as &dyn Teacher), suite, config }
                .run(cases, None, "no skill", &mut |_| {})
                .await
                .expect("run")
                .results
                .remove(0)
        }
    };
    let first = run_with("judge-a", vec!["Please pass the salt."]).await;
    assert!(first.passed && !first.cached, "{first:#?}");
    let again = run_with("judge-a", Vec::new()).await;
    assert!(again.cached && again.passed, "the same judge: from the cache {again:#?}");
    // Another judge's verdict is not this one's: the student is asked again.
    let other = run_with("judge-b", vec!["Salt, please."]).await;
    assert!(!other.cached && other.output.contains("Salt, please"), "{other:#?}");
}

fn walk_json(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk_json(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn a_case_whose_file_changed_is_not_answered_from_the_cache() {
    let (dir, suite) = suite_on_disk(
        r#"{"skill_name": "t", "evals": [{"id": 1, "prompt": "What does notes.txt say?",
            "files": ["notes.txt"], "expected_output": "alpha"}]}"#,
    );
    std::fs::write(dir.path().join("notes.txt"), "alpha\n").expect("file");
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();
    let config = RunnerConfig {
        cache_dir: Some(dir.path().join("cache")),
        files_root: Some(dir.path().to_path_buf()),
        ..RunnerConfig::default()
    };
    let run = |replies: Vec<&'static str>| {
        let student: Arc<dyn Student> = Arc::new(Scripted(Mutex::new(replies)));
        let (suite, config, cases) = (&suite, &config, &cases);
        async move {
            Evaluator { student, judge: None, suite, config }
                .run(cases, None, "no skill", &mut |_| {})
                .await
                .expect("run")
                .results
                .remove(0)
        }
    };
    assert!(!run(vec!["alpha"]).await.cached);
    assert!(run(Vec::new()).await.cached, "the same file: from the cache");
    std::fs::write(dir.path().join("notes.txt"), "beta\n").expect("file");
    let changed = run(vec!["beta"]).await;
    assert!(!changed.cached && changed.output == "beta", "{changed:#?}");
}

/// On llama.cpp the runner hands a suite's answer cases over as batches, so the engine
/// decodes as many together as it has sequences for, and every case gets its own answer.
#[tokio::test(flavor = "multi_thread")]
async fn answer_cases_reach_llama_cpp_as_one_batch() {
    let evals: Vec<String> = (1..=6)
        .map(|i| format!(r#"{{"id": {i}, "prompt": "What is {i} plus {i}?", "expected_output": "{}"}}"#, 2 * i))
        .collect();
    let (_dir, suite) = suite_on_disk(&format!(r#"{{"skill_name": "t", "evals": [{}]}}"#, evals.join(",")));
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();
    let path = ModelStore::new(ModelStore::default_dir()).path_of(&find_known("smollm2-135m").expect("known"));
    let options = student::LlamaCppOptions { context_tokens: 4096, max_sequences: 4, ..Default::default() };
    let engine = Arc::new(student::LlamaCppStudent::load(&path, options).await.expect("SmolLM2"));
    let config = RunnerConfig { max_tokens: 8, ..RunnerConfig::default() };
    let evaluator = Evaluator { student: engine.clone(), judge: None, suite: &suite, config: &config };
    let run = evaluator.run(&cases, None, "no skill", &mut |_| {}).await.expect("run");
    assert_eq!(run.results.len(), 6);
    assert!(run.results.iter().all(|r| r.error.is_none() && r.usage.completion_tokens > 0), "{:#?}", run.results);
    assert_eq!(engine.counters().peak_sequences, 4, "the cases were decoded together, four at a time");
}

#[tokio::test]
async fn an_answer_case_transcript_holds_no_key() {
    // A key in the case's prompt, and a student that repeats it.
    let key = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let (dir, suite) = suite_on_disk(&format!(
        r#"{{"skill_name": "t", "evals": [{{"id": 1, "prompt": "Is {key} a token?", "expected_output": "yes"}}]}}"#
    ));
    let cases: Vec<&evals::EvalCase> = suite.evals.iter().collect();
    let transcripts = dir.path().join("runs");
    let config = RunnerConfig { transcript_dir: Some(transcripts.clone()), ..RunnerConfig::default() };
    let student: Arc<dyn Student> =
        Arc::new(Scripted(Mutex::new(vec!["ghp_abcdefghijklmnopqrstuvwxyz0123456789 is one. yes"])));
    let run = Evaluator { student, judge: None, suite: &suite, config: &config }
        .run(&cases, None, "no skill", &mut |_| {})
        .await
        .expect("run");
    assert_eq!(run.results.len(), 1);
    let written = walk_json(&transcripts);
    assert_eq!(written.len(), 1, "{written:?}");
    let text = std::fs::read_to_string(&written[0]).expect("read");
    assert!(!text.contains(key), "{text}");
    assert!(text.contains("Is [REDACTED] a token?") && text.contains("[REDACTED] is one. yes"), "{text}");
}
