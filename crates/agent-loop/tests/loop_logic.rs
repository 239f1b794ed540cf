//! The loop's logic, deterministically: a cassette student replays recorded replies, real
//! tools run on a temporary workspace, real skills are read from disk.

use agent_loop::tools::{FnTool, ToolRegistry, builtin_tools, ok};
use agent_loop::transcript::read_transcript;
use agent_loop::{Agent, AgentConfig, Event, Outcome, RunOptions};
use async_trait::async_trait;
use serde_json::json;
use skill_core::{
    Completion, CompletionRequest, Hit, RetrievalQuery, Retriever, Scope, SkillHit, SkillLibrary, Student, Usage,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Replays recorded model replies in order and keeps the requests it was sent.
struct Cassette {
    replies: Mutex<Vec<String>>,
    seen: Mutex<Vec<CompletionRequest>>,
}

impl Cassette {
    fn new(replies: &[&str]) -> Arc<Cassette> {
        Arc::new(Cassette {
            replies: Mutex::new(replies.iter().rev().map(|s| s.to_string()).collect()),
            seen: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl Student for Cassette {
    fn model_id(&self) -> &str {
        "cassette"
    }
    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        self.seen.lock().expect("lock").push(request.clone());
        let text = self
            .replies
            .lock()
            .expect("lock")
            .pop()
            .ok_or_else(|| skill_core::Error::backend("cassette", "no more recorded replies"))?;
        Ok(Completion {
            text,
            usage: Usage { prompt_tokens: 100, completion_tokens: 20 },
            elapsed: Duration::from_millis(5),
            finish_reason: "stop".into(),
        })
    }
}

/// A retriever that returns fixed hits (the real one is tested in the retrieval crate).
struct FixedHits(Vec<Hit>);

#[async_trait]
impl Retriever for FixedHits {
    async fn retrieve(&self, query: &RetrievalQuery) -> skill_core::Result<Vec<Hit>> {
        Ok(self
            .0
            .iter()
            .filter(|h| match query.scope {
                Scope::All => true,
                Scope::Skills => matches!(h, Hit::Skill(_)),
                Scope::Notes => matches!(h, Hit::Note(_)),
            })
            .take(query.limit)
            .cloned()
            .collect())
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    workspace: std::path::PathBuf,
    runs: std::path::PathBuf,
    library: SkillLibrary,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tmp");
    let workspace = tmp.path().join("ws");
    std::fs::create_dir_all(&workspace).expect("mkdir");
    std::fs::write(workspace.join("notes.txt"), "The secret word is heliotrope.\n").expect("write");
    let library = SkillLibrary::new(tmp.path().join("skills"));
    library
        .create(
            "read-secret",
            "Find the secret word in notes.txt.",
            "\n1. Call read_file on notes.txt.\n2. Answer with the secret word only.\n",
        )
        .expect("skill");
    let restricted =
        "---\nname: list-only\ndescription: Only lists folders.\nallowed-tools: list_dir\n---\nList the folder.\n";
    std::fs::create_dir_all(tmp.path().join("skills/list-only")).expect("mkdir");
    std::fs::write(tmp.path().join("skills/list-only/SKILL.md"), restricted).expect("write");
    let runs = tmp.path().join("runs");
    Setup { _tmp: tmp, workspace, runs, library }
}

fn agent(s: &Setup, student: Arc<Cassette>, hits: Vec<Hit>, extra: Vec<Arc<dyn skill_core::Tool>>) -> Agent {
    let mut tools = ToolRegistry::new();
    for t in builtin_tools(&s.workspace, None, false).into_iter().chain(extra) {
        tools.register(t).expect("register");
    }
    let config = AgentConfig {
        max_steps: 4,
        tool_timeout: Duration::from_millis(300),
        transcript_dir: Some(s.runs.clone()),
        ..AgentConfig::default()
    };
    Agent::new(student, config)
        .with_retriever(Arc::new(FixedHits(hits)))
        .with_library(s.library.clone())
        .with_tools(tools)
}

fn skill_hit(s: &Setup, name: &str, score: f32) -> Hit {
    Hit::Skill(SkillHit {
        name: name.into(),
        description: format!("{name} description"),
        path: s.library.root().join(name).join("SKILL.md"),
        score,
    })
}

async fn run(agent: &Agent, task: &str, options: RunOptions) -> (agent_loop::RunOutcome, Vec<Event>) {
    let mut streamed = Vec::new();
    let outcome = agent.run(task, &options, &mut |e: &Event| streamed.push(e.clone())).await.expect("run");
    let path = outcome.transcript.clone().expect("transcript written");
    let from_file = read_transcript(&path).expect("read transcript");
    assert_eq!(from_file, streamed, "the file holds exactly the streamed events");
    (outcome, streamed)
}

#[tokio::test]
async fn plan_call_observe_answer() {
    let s = setup();
    let cassette = Cassette::new(&[
        r#"{"thought": "read it", "tool": "read_file", "args": {"path": "notes.txt"}}"#,
        r#"{"thought": "found it", "final_answer": "heliotrope"}"#,
    ]);
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, events) = run(&a, "What is the secret word?", RunOptions::default()).await;
    assert_eq!(outcome.outcome, Outcome::Answered);
    assert_eq!(outcome.answer.as_deref(), Some("heliotrope"));
    assert_eq!(outcome.steps, 2);
    assert!(events.iter().any(|e| matches!(e, Event::ToolCall { tool, ok: true, output, .. } if tool == "read_file" && output.contains("heliotrope"))));
    // the observation reached the model, and every request carried the reply schema
    let seen = cassette.seen.lock().expect("lock");
    assert!(
        seen[1]
            .messages
            .last()
            .expect("msg")
            .content
            .contains("Observation from read_file: The secret word is heliotrope.")
    );
    assert!(seen.iter().all(|r| r.json_schema.as_ref().is_some_and(|s| s["anyOf"].is_array())));
    assert!(matches!(
        events.last(),
        Some(Event::Finish { outcome: Outcome::Answered, prompt_tokens: 200, completion_tokens: 40, .. })
    ));
}

#[tokio::test]
async fn malformed_unknown_and_failing_calls_become_observations() {
    let s = setup();
    let cassette = Cassette::new(&[
        r#"{"thought": "oops", "tool": "read_fi"#,
        r#"{"thought": "guess", "tool": "delete_everything", "args": {}}"#,
        r#"{"thought": "escape", "tool": "read_file", "args": {"path": "../../etc/passwd"}}"#,
        r#"{"thought": "ok", "final_answer": "gave up"}"#,
    ]);
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, events) = run(&a, "task", RunOptions::default()).await;
    assert_eq!(outcome.answer.as_deref(), Some("gave up"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::InvalidReply { step: 1, error } if error.contains("not a JSON object")))
    );
    assert!(events.iter().any(|e| matches!(e, Event::ToolCall { step: 2, ok: false, output, .. } if output.contains("there is no tool `delete_everything`"))));
    assert!(events.iter().any(
        |e| matches!(e, Event::ToolCall { step: 3, ok: false, output, .. } if output.contains("outside the workspace"))
    ));
    let seen = cassette.seen.lock().expect("lock");
    assert!(seen[1].messages.last().expect("msg").content.starts_with("Your reply could not be used"));
}

#[tokio::test]
async fn tool_timeouts_and_truncation() {
    let s = setup();
    let slow = FnTool::new("slow", "Sleeps.", json!({"type": "object"}), |_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(ok("late"))
    });
    let loud = FnTool::new("loud", "Talks a lot.", json!({"type": "object"}), |_| async { Ok(ok("x".repeat(10_000))) });
    let cassette = Cassette::new(&[
        r#"{"thought": "", "tool": "slow", "args": {}}"#,
        r#"{"thought": "", "tool": "loud", "args": {}}"#,
        r#"{"thought": "", "final_answer": "done"}"#,
    ]);
    let a = agent(&s, cassette, vec![], vec![Arc::new(slow), Arc::new(loud)]);
    let (_, events) = run(&a, "task", RunOptions::default()).await;
    assert!(events.iter().any(|e| matches!(e, Event::ToolCall { tool, ok: false, output, elapsed_ms, .. } if tool == "slow" && output.contains("timed out") && *elapsed_ms < 2_000)));
    assert!(events.iter().any(|e| matches!(e, Event::ToolCall { tool, output, .. } if tool == "loud" && output.len() < 2_100 && output.contains("more characters cut"))));
}

#[tokio::test]
async fn a_per_tool_timeout_replaces_the_default_for_that_tool() {
    let s = setup();
    let sleeper = |name: &str| {
        FnTool::new(name, "Sleeps 600 ms.", json!({"type": "object"}), |_| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok(ok("awake"))
        })
    };
    let mut tools = ToolRegistry::new();
    tools.register(Arc::new(sleeper("patient"))).expect("register");
    tools.register(Arc::new(sleeper("hasty"))).expect("register");
    let cassette = Cassette::new(&[
        r#"{"thought": "", "tool": "patient", "args": {}}"#,
        r#"{"thought": "", "tool": "hasty", "args": {}}"#,
        r#"{"thought": "", "final_answer": "done"}"#,
    ]);
    let config = AgentConfig {
        tool_timeout: Duration::from_millis(300),
        tool_timeouts: [("patient".to_string(), Duration::from_secs(3))].into_iter().collect(),
        transcript_dir: Some(s.runs.clone()),
        ..AgentConfig::default()
    };
    let a = Agent::new(cassette, config).with_tools(tools);
    let (_, events) = run(&a, "task", RunOptions::default()).await;
    assert!(
        events.iter().any(
            |e| matches!(e, Event::ToolCall { tool, ok: true, output, .. } if tool == "patient" && output == "awake")
        ),
        "{events:?}"
    );
    assert!(events.iter().any(|e| matches!(e, Event::ToolCall { tool, ok: false, output, .. } if tool == "hasty" && output.contains("timed out"))), "{events:?}");
}

#[tokio::test]
async fn step_budget_ends_the_run() {
    let s = setup();
    let call = r#"{"thought": "again", "tool": "list_dir", "args": {}}"#;
    let a = agent(&s, Cassette::new(&[call, call, call, call, call]), vec![], vec![]);
    let (outcome, events) = run(&a, "loop forever", RunOptions::default()).await;
    assert_eq!(outcome.outcome, Outcome::StepBudgetExhausted);
    assert_eq!(outcome.steps, 4);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::ModelCall { .. })).count(), 4);
}

#[tokio::test]
async fn model_errors_end_the_run_with_a_clear_outcome() {
    let s = setup();
    let a = agent(&s, Cassette::new(&[]), vec![], vec![]);
    let (outcome, events) = run(&a, "task", RunOptions::default()).await;
    assert_eq!(outcome.outcome, Outcome::ModelError);
    assert!(
        matches!(events.last(), Some(Event::Finish { error: Some(e), .. }) if e.contains("no more recorded replies"))
    );
}

#[tokio::test]
async fn confident_retrieval_activates_the_skill_and_allowed_tools_are_enforced() {
    let s = setup();
    let cassette = Cassette::new(&[
        r#"{"thought": "read", "tool": "read_file", "args": {"path": "notes.txt"}}"#,
        r#"{"thought": "list", "tool": "list_dir", "args": {}}"#,
        r#"{"thought": "", "final_answer": "notes.txt"}"#,
    ]);
    let hits = vec![skill_hit(&s, "list-only", 9.0), skill_hit(&s, "read-secret", 2.0)];
    let a = agent(&s, cassette.clone(), hits, vec![]);
    let (outcome, events) = run(&a, "list the folder", RunOptions::default()).await;
    assert_eq!(outcome.skill.as_deref(), Some("list-only"));
    assert!(
        matches!(&events[2], Event::SkillActivated { step: 0, name, reason, .. } if name == "list-only" && reason == "confident")
    );
    assert!(events.iter().any(|e| matches!(e, Event::ToolCall { tool, denied: true, ok: false, output, .. } if tool == "read_file" && output.contains("does not allow"))));
    assert!(events.iter().any(|e| matches!(e, Event::ToolCall { tool, ok: true, output, .. } if tool == "list_dir" && output.contains("notes.txt"))));
    let seen = cassette.seen.lock().expect("lock");
    assert!(seen[0].messages[0].content.contains("Follow the skill `list-only`"));
}

#[tokio::test]
async fn the_model_can_activate_a_skill_from_the_catalog() {
    let s = setup();
    let cassette = Cassette::new(&[
        r#"{"thought": "skill", "tool": "activate_skill", "args": {"name": "read-secret"}}"#,
        r#"{"thought": "", "final_answer": "heliotrope"}"#,
    ]);
    // Two close scores: not confident, so the model chooses.
    let hits = vec![skill_hit(&s, "read-secret", 5.0), skill_hit(&s, "list-only", 4.5)];
    let a = agent(&s, cassette.clone(), hits, vec![]);
    let (outcome, events) = run(&a, "secret word?", RunOptions::default()).await;
    assert_eq!(outcome.skill.as_deref(), Some("read-secret"));
    assert!(events.iter().any(|e| matches!(e, Event::SkillActivated { step: 1, reason, .. } if reason == "tool")));
    let seen = cassette.seen.lock().expect("lock");
    let first_prompt = &seen[0].messages[0].content;
    assert!(first_prompt.contains("- read-secret: read-secret description") && first_prompt.contains("activate_skill"));
    assert!(seen[1].messages.last().expect("obs").content.contains("1. Call read_file on notes.txt."));
    assert!(seen[1].messages[0].content.contains("Follow the skill `read-secret`"));
}

#[tokio::test]
async fn requested_skill_wins_and_unknown_skill_is_an_error() {
    let s = setup();
    let a = agent(&s, Cassette::new(&[r#"{"thought": "", "final_answer": "x"}"#]), vec![], vec![]);
    let (outcome, events) = run(&a, "t", RunOptions { skill: Some("read-secret".into()) }).await;
    assert_eq!(outcome.skill.as_deref(), Some("read-secret"));
    assert!(events.iter().any(|e| matches!(e, Event::SkillActivated { reason, .. } if reason == "requested")));
    let a = agent(&s, Cassette::new(&[]), vec![], vec![]);
    let err = a.run("t", &RunOptions { skill: Some("nope".into()) }, &mut |_| {}).await.expect_err("unknown skill");
    assert!(err.to_string().contains("skill `nope` not found"), "{err}");
}

#[tokio::test]
async fn secrets_never_reach_the_transcript() {
    let s = setup();
    let cassette = Cassette::new(&[r#"{"thought": "", "final_answer": "the key is sk-test-0123456789abcdef"}"#]);
    let mut tools = ToolRegistry::new();
    for t in builtin_tools(&s.workspace, None, false) {
        tools.register(t).expect("register");
    }
    let config = AgentConfig {
        transcript_dir: Some(s.runs.clone()),
        redact: vec!["sk-test-0123456789abcdef".into()],
        ..AgentConfig::default()
    };
    let a = Agent::new(cassette, config).with_tools(tools);
    let outcome = a.run("use key sk-test-0123456789abcdef", &RunOptions::default(), &mut |_| {}).await.expect("run");
    let text = std::fs::read_to_string(outcome.transcript.expect("path")).expect("read");
    assert!(!text.contains("sk-test-0123456789abcdef"), "{text}");
    assert_eq!(text.matches("[REDACTED]").count(), 3, "task, model output and answer: {text}");
}

#[tokio::test]
async fn workspace_tools_stay_inside_the_root() {
    let s = setup();
    let outside = s.workspace.parent().expect("parent").join("outside.txt");
    std::fs::write(&outside, "private").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, s.workspace.join("link.txt")).expect("symlink");
    let cassette = Cassette::new(&[
        r#"{"thought": "", "tool": "write_file", "args": {"path": "out/answer.txt", "content": "42"}}"#,
        r#"{"thought": "", "tool": "read_file", "args": {"path": "link.txt"}}"#,
        r#"{"thought": "", "tool": "write_file", "args": {"path": "/tmp/evil.txt", "content": "x"}}"#,
        r#"{"thought": "", "final_answer": "ok"}"#,
    ]);
    let a = agent(&s, cassette, vec![], vec![]);
    let (_, events) = run(&a, "t", RunOptions::default()).await;
    assert_eq!(std::fs::read_to_string(s.workspace.join("out/answer.txt")).expect("written"), "42");
    let failures: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::ToolCall { ok: false, output, .. } => Some(output.clone()),
            _ => None,
        })
        .collect();
    #[cfg(unix)]
    assert!(failures.iter().any(|f| f.contains("symlink")), "{failures:?}");
    assert!(failures.iter().any(|f| f.contains("outside the workspace")), "{failures:?}");
    assert!(!std::path::Path::new("/tmp/evil.txt").exists());
}
