//! Mining on a generated history with the real embedding model: recurring workflows
//! phrased differently across the four log sources, hidden among one-off tasks, a library
//! skill whose runs fail, and one whose runs go well.

use agent_logs::{Episode, Outcome, OutcomeKind, SkillUse};
use embed::MiniLm;
use optimizer::{LibrarySkill, MineConfig, ProposalKind, mine};
use student::models::{ALL_MINILM_L6_V2, ModelStore, find_known};

fn model() -> MiniLm {
    let known = find_known(ALL_MINILM_L6_V2).expect("known");
    let store = ModelStore::new(ModelStore::default_dir());
    let weights = store.pull(&known, &mut |_| {}).expect("pull all-MiniLM-L6-v2");
    let [tokenizer, config] = [0, 1].map(|i| store.companion_path(&known.companions[i]));
    MiniLm::load(&weights, &tokenizer, &config).expect("load")
}

fn episode(source: &str, task: &str, kind: OutcomeKind, skill: Option<&str>) -> Episode {
    Episode {
        time: Some("2026-12-01T09:00:00Z".into()),
        skill: skill.map(|name| SkillUse { name: name.into(), content_hash: "h".into() }),
        outcome: Outcome { kind, evidence: String::new(), correction: None },
        ..Episode::new(source, format!("/logs/{source}/{}.jsonl", task.len()), "s", task)
    }
}

/// The workflows that should be proposed: (kind, the skill for `refine`, a word of its job).
const EXPECTED: [(ProposalKind, Option<&str>, &str); 4] = [
    (ProposalKind::New, None, "weekly"),
    (ProposalKind::New, None, "expense"),
    (ProposalKind::New, None, "email"),
    (ProposalKind::Refine, Some("open-todos"), "to-do"),
];

fn history() -> Vec<Episode> {
    use OutcomeKind::{Failure, Success, Unknown};
    vec![
        // Recurring, no skill: the weekly update.
        episode("claude-code", "Draft the weekly status update for the team", Success, None),
        episode("codex", "Write this week's status update for my manager", Unknown, None),
        episode("pi", "Prepare the weekly update: what shipped this week and what is next", Failure, None),
        episode("skd", "Put together my weekly status update", Success, None),
        // Recurring, no skill: the expense sheet.
        episode("pi", "Fill in the expense sheet with the receipts in ~/receipts", Failure, None),
        episode("claude-code", "Add my November receipts to the expense sheet", Success, None),
        episode("codex", "Enter these taxi and hotel receipts into the expense sheet", Unknown, None),
        // Recurring, no skill: triage the inbox.
        episode("claude-code", "Triage my email inbox and flag anything urgent", Success, None),
        episode("pi", "Go through my unread email and tell me which need a reply today", Failure, None),
        episode("codex", "Which of my new emails need an answer today?", Unknown, None),
        // A library skill whose runs fail.
        episode("skd", "How many open to-dos are in todo.md?", Failure, Some("open-todos")),
        episode("skd", "Count the unchecked to-do items in tasks.md", Failure, Some("open-todos")),
        episode("skd", "How many to-dos are still open in notes/todo.md?", Success, Some("open-todos")),
        // A library skill whose runs go well: nothing to propose.
        episode("skd", "Convert 5 km to miles", Success, Some("unit-convert")),
        episode("skd", "How many miles is 12 km?", Success, Some("unit-convert")),
        episode("claude-code", "Convert 42 kilometres into miles", Success, None),
        // One-offs.
        episode("claude-code", "Rename the git branch to release-2", Failure, None),
        episode("codex", "Fix the flaky test in auth.rs", Success, None),
        episode("pi", "Write a haiku about autumn", Success, None),
        episode("skd", "What is the capital of Peru?", Success, None),
        episode("claude-code", "Resize the logo to 64 pixels", Unknown, None),
        episode("pi", "Explain what a monad is", Success, None),
    ]
}

/// The library: a skill whose runs fail in the history, and one whose runs go well.
fn library() -> Vec<LibrarySkill> {
    vec![
        LibrarySkill {
            name: "open-todos".into(),
            description: "Count the open to-do items in a markdown to-do list.".into(),
        },
        LibrarySkill {
            name: "unit-convert".into(),
            description: "Convert between units: kilometres and miles, kilograms and pounds, Celsius and Fahrenheit."
                .into(),
        },
    ]
}

#[test]
fn recurring_workflows_are_proposed_and_one_offs_are_not() {
    let embedder = model();
    let library = library();
    let episodes = history();
    let refs: Vec<&Episode> = episodes.iter().collect();
    let report = mine(&refs, &library, &embedder, &MineConfig::default()).expect("mine");
    let found: Vec<(ProposalKind, Option<&str>, &str)> = report
        .proposals
        .iter()
        .map(|p| (p.kind, p.skill.as_deref().filter(|_| p.kind == ProposalKind::Refine), p.job.as_str()))
        .collect();
    let matches = |(kind, skill, word): (ProposalKind, Option<&str>, &str)| {
        found.iter().filter(|(k, s, job)| *k == kind && *s == skill && job.to_lowercase().contains(word)).count()
    };
    let hits = EXPECTED.iter().filter(|e| matches(**e) == 1).count();
    eprintln!("proposals: {found:#?}\nprecision {hits}/{} recall {hits}/{}", report.proposals.len(), EXPECTED.len());
    assert_eq!(report.episodes, episodes.len());
    assert_eq!(hits, EXPECTED.len(), "every recurring workflow proposed once: {found:#?}");
    assert_eq!(report.proposals.len(), EXPECTED.len(), "nothing else proposed: {found:#?}");
    let refine = report.proposals.iter().find(|p| p.kind == ProposalKind::Refine).expect("refine");
    assert_eq!((refine.episodes, refine.failures), (3, 2));
    assert_eq!(refine.evidence[0].outcome, OutcomeKind::Failure, "failures are shown first");
    let weekly = report.proposals.iter().find(|p| p.job.contains("weekly")).expect("weekly");
    assert_eq!(weekly.sources.len(), 4, "one job across the four sources: {:?}", weekly.sources);
}

#[test]
fn between_jobs_asked_as_often_the_one_that_takes_more_tool_calls_ranks_first() {
    let embedder = model();
    let mut episodes = history();
    // The expense sheet takes an agent five tool calls each time; the inbox none. Both come
    // back three times and failed once.
    let call = |name: &str| agent_logs::ToolUse {
        name: name.into(),
        error: false,
        read: None,
        partial_read: false,
        writes: false,
    };
    for e in episodes.iter_mut().filter(|e| e.task.contains("expense sheet")) {
        e.tools = ["list_dir", "read_file", "read_file", "read_file", "write_file"].map(call).to_vec();
    }
    let refs: Vec<&Episode> = episodes.iter().collect();
    let report = mine(&refs, &[], &embedder, &MineConfig::default()).expect("mine");
    let rank = |word: &str| report.proposals.iter().position(|p| p.job.to_lowercase().contains(word)).expect(word);
    let (expense, inbox) = (&report.proposals[rank("expense")], &report.proposals[rank("email")]);
    assert_eq!((expense.episodes, expense.failures, expense.mean_tool_calls), (3, 1, 5.0));
    assert_eq!((inbox.episodes, inbox.failures, inbox.mean_tool_calls), (3, 1, 0.0));
    // 3 x (1 + 1/3) x (1 + 5/10), and without tool calls 3 x (1 + 1/3).
    assert!((expense.score - 6.0).abs() < 1e-9 && (inbox.score - 4.0).abs() < 1e-9, "{report:?}");
    assert!(rank("expense") < rank("email"));
    assert_eq!((expense.mean_minutes, expense.mean_tokens), (None, None), "no times or token counts in these");

    // Waiting costs too: the inbox job taking a quarter of an hour each time (its logs'
    // times) now ranks first, 3 x (1 + 1/3) x (1 + 15/5), where five minutes count as ten
    // tool calls. Tokens are shown, not ranked on.
    let inbox_members = inbox.members.clone();
    for (n, &i) in inbox_members.iter().enumerate() {
        episodes[i].seconds = Some(15 * 60);
        episodes[i].tokens = Some(1_000 * (n as u64 + 1));
    }
    let refs: Vec<&Episode> = episodes.iter().collect();
    let report = mine(&refs, &[], &embedder, &MineConfig::default()).expect("mine");
    let inbox = &report.proposals[0];
    assert_eq!(
        (inbox.members.clone(), inbox.mean_minutes, inbox.mean_tokens),
        (inbox_members, Some(15.0), Some(2_000.0))
    );
    assert!((inbox.score - 16.0).abs() < 1e-9, "{report:?}");
    assert_eq!(inbox.cost_summary(), "0.0 tool calls, 15.0 min, 2000 tokens");
}

/// Writes `e` as one session file of its source's own format under `root`, with a follow-up
/// that says how it went: "thanks!" for a success, a correction for a failure, nothing when
/// unknown (skd: its finish, and `skd feedback`'s verdict for a failure).
fn write_session(root: &std::path::Path, n: usize, e: &Episode) -> std::path::PathBuf {
    use serde_json::{Value, json};
    let time = "2026-12-01T09:00:00Z";
    let follow_up = match e.outcome.kind {
        OutcomeKind::Success => Some("thanks!"),
        OutcomeKind::Failure => Some("no, that's wrong"),
        OutcomeKind::Unknown => None,
    };
    let (path, lines): (std::path::PathBuf, Vec<Value>) = match e.source.as_str() {
        "claude-code" => {
            let line = |kind: &str, content: Value| {
                json!({"type": kind, "sessionId": format!("c-{n}"), "cwd": "/home/ana", "timestamp": time,
                       "message": {"role": kind, "id": format!("m-{n}"), "content": content}})
            };
            let mut lines =
                vec![line("user", json!(e.task)), line("assistant", json!([{"type": "text", "text": "Done."}]))];
            lines.extend(follow_up.map(|f| line("user", json!(f))));
            (root.join(format!("claude/projects/-home-ana/c-{n}.jsonl")), lines)
        }
        "codex" => {
            let user = |text: &str| json!({"timestamp": time, "type": "event_msg", "payload": {"type": "user_message", "message": text}});
            let mut lines = vec![
                json!({"timestamp": time, "type": "session_meta", "payload": {"id": format!("x-{n}"), "cwd": "/home/ana"}}),
                user(&e.task),
                json!({"timestamp": time, "type": "response_item", "payload": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]}}),
            ];
            lines.extend(follow_up.map(user));
            (root.join(format!("codex/sessions/2026/12/01/rollout-2026-12-01T09-00-00-x-{n}.jsonl")), lines)
        }
        "pi" => {
            let message = |id: usize, message: Value| json!({"type": "message", "id": format!("e{id}"), "parentId": (id > 1).then(|| format!("e{}", id - 1)), "timestamp": time, "message": message});
            let mut lines = vec![
                json!({"type": "session", "version": 3, "id": format!("p-{n}"), "timestamp": time, "cwd": "/home/ana"}),
                message(1, json!({"role": "user", "content": e.task})),
                message(
                    2,
                    json!({"role": "assistant", "content": [{"type": "text", "text": "Done."}], "stopReason": "stop"}),
                ),
            ];
            lines.extend(
                follow_up.map(|f| message(3, json!({"role": "user", "content": [{"type": "text", "text": f}]}))),
            );
            (root.join(format!("pi/sessions/--home-ana--/p-{n}.jsonl")), lines)
        }
        "skd" => {
            let mut lines =
                vec![json!({"event": "start", "schema_version": 1, "run_id": format!("run-{n}"), "time": time,
                                        "task": e.task, "student": "qwen", "max_steps": 8, "tools": []})];
            lines.extend(e.skill.as_ref().map(|s| json!({"event": "skill_activated", "step": 0, "name": s.name, "reason": "confident", "content_hash": s.content_hash})));
            lines.push(
                json!({"event": "finish", "outcome": "answered", "answer": "Done.", "steps": 1, "prompt_tokens": 10,
                              "completion_tokens": 5, "elapsed_ms": 900, "error": null}),
            );
            if e.outcome.kind == OutcomeKind::Failure {
                lines.push(json!({"event": "feedback", "time": time, "verdict": "bad", "note": "wrong"}));
            }
            (root.join(format!("skd/run-{n}.jsonl")), lines)
        }
        other => panic!("no writer for {other}"),
    };
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write");
    path
}

#[test]
fn the_same_history_written_as_four_agents_session_files_gives_the_same_proposals() {
    use agent_logs::{ClaudeCode, Codex, LogSource, Pi, SkdRuns, episodes};
    let tmp = tempfile::tempdir().expect("tmp");
    let history = history();
    for (n, e) in history.iter().enumerate() {
        write_session(tmp.path(), n, e);
    }
    let sources: Vec<Box<dyn LogSource>> = vec![
        Box::new(SkdRuns::new(tmp.path().join("skd"))),
        Box::new(Pi::new(tmp.path().join("pi"))),
        Box::new(ClaudeCode::new(tmp.path().join("claude"))),
        Box::new(Codex::new(tmp.path().join("codex"))),
    ];
    let redactor = skill_core::redact::Redactor::new();
    let mut read = Vec::new();
    for source in &sources {
        for file in source.files() {
            let session = source.read(&file).expect("read");
            read.extend(episodes(source.name(), &file, &session, &redactor));
        }
    }
    // Every task read back, with its source, outcome and skill.
    let key =
        |e: &Episode| (e.source.clone(), e.task.clone(), e.outcome.kind, e.skill.as_ref().map(|s| s.name.clone()));
    let mut wrote: Vec<_> = history.iter().map(key).collect();
    let mut got: Vec<_> = read.iter().map(key).collect();
    wrote.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(got, wrote);
    let library = library();
    let refs: Vec<&Episode> = read.iter().collect();
    let report = mine(&refs, &library, &model(), &MineConfig::default()).expect("mine");
    let found: Vec<(ProposalKind, Option<&str>, String)> = report
        .proposals
        .iter()
        .map(|p| (p.kind, p.skill.as_deref().filter(|_| p.kind == ProposalKind::Refine), p.job.to_lowercase()))
        .collect();
    for (kind, skill, word) in EXPECTED {
        assert_eq!(
            found.iter().filter(|(k, s, job)| *k == kind && *s == skill && job.contains(word)).count(),
            1,
            "{word}: {found:#?}"
        );
    }
    assert_eq!(report.proposals.len(), EXPECTED.len(), "precision and recall 4/4 from files too: {found:#?}");
}
