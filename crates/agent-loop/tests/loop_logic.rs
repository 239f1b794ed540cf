//! The loop's logic, deterministically: a cassette student replays recorded replies, real
//! tools run on a temporary workspace, real skills are read from disk.

use agent_loop::tools::{FnTool, ToolRegistry, WorkspaceAccess, builtin_tools, ok};
use agent_loop::transcript::read_transcript;
use agent_loop::{Agent, AgentConfig, Event, Outcome, RunOptions};
use async_trait::async_trait;
use serde_json::json;
use skill_core::{
    Completion, CompletionRequest, Hit, RetrievalQuery, Retriever, Scope, SkillHit, SkillLibrary, Student, Usage,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Replays recorded model replies in order and keeps the requests it was sent. A reply
/// starting with `[length]` is returned as cut off at the token limit.
struct Cassette {
    replies: Mutex<Vec<String>>,
    seen: Mutex<Vec<CompletionRequest>>,
    grammar: bool,
    continues: bool,
}

impl Cassette {
    fn new(replies: &[&str]) -> Arc<Cassette> {
        Self::build(replies, false)
    }

    /// A cassette standing in for a backend that enforces grammars (mistral.rs).
    fn constrained(replies: &[&str]) -> Arc<Cassette> {
        Self::build(replies, true)
    }

    /// A cassette standing in for a backend that enforces grammars and continues a reply
    /// (llama.cpp).
    fn continuing(replies: &[&str]) -> Arc<Cassette> {
        let mut c = Self::build(replies, true);
        Arc::get_mut(&mut c).expect("not shared yet").continues = true;
        c
    }

    /// A cassette standing in for a server without grammars that continues a reply
    /// (llama.cpp's server, vLLM asked to).
    fn free_continuing(replies: &[&str]) -> Arc<Cassette> {
        let mut c = Self::build(replies, false);
        Arc::get_mut(&mut c).expect("not shared yet").continues = true;
        c
    }

    fn build(replies: &[&str], grammar: bool) -> Arc<Cassette> {
        Arc::new(Cassette {
            replies: Mutex::new(replies.iter().rev().map(|s| s.to_string()).collect()),
            seen: Mutex::new(Vec::new()),
            grammar,
            continues: false,
        })
    }

    fn seen(&self) -> Vec<CompletionRequest> {
        self.seen.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Student for Cassette {
    fn model_id(&self) -> &str {
        "cassette"
    }
    fn supports_grammar(&self) -> bool {
        self.grammar
    }
    fn continues_reply(&self) -> bool {
        self.continues
    }
    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        self.seen.lock().expect("lock").push(request.clone());
        let text = self
            .replies
            .lock()
            .expect("lock")
            .pop()
            .ok_or_else(|| skill_core::Error::backend("cassette", "no more recorded replies"))?;
        let (text, finish_reason) = match text.strip_prefix("[length]") {
            Some(cut) => (cut.to_string(), "length"),
            None => (text, "stop"),
        };
        Ok(Completion {
            text,
            usage: Usage { prompt_tokens: 100, completion_tokens: 20 },
            elapsed: Duration::from_millis(5),
            finish_reason: finish_reason.into(),
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
    tmp: tempfile::TempDir,
    workspace: std::path::PathBuf,
    runs: std::path::PathBuf,
    library: SkillLibrary,
}

fn write_skill(s: &Setup, name: &str, frontmatter_extra: &str, body: &str) {
    let dir = s.library.root().join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let text = format!("---\nname: {name}\ndescription: {name} things.\n{frontmatter_extra}---\n{body}\n");
    std::fs::write(dir.join("SKILL.md"), text).expect("write");
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tmp");
    let workspace = tmp.path().join("ws");
    std::fs::create_dir_all(&workspace).expect("mkdir");
    std::fs::write(workspace.join("notes.txt"), "The secret word is heliotrope.\n").expect("write");
    let library = SkillLibrary::new(tmp.path().join("skills"));
    let runs = tmp.path().join("runs");
    let s = Setup { tmp, workspace, runs, library };
    write_skill(&s, "read-secret", "", "1. Call read_file on notes.txt.\n2. Answer with the secret word only.");
    write_skill(&s, "list-only", "allowed-tools: list_dir\n", "List the folder.");
    write_skill(&s, "git-only", "allowed-tools: Bash(git:*)\n", "Use git.");
    s
}

fn registry(s: &Setup, access: &WorkspaceAccess, extra: Vec<Arc<dyn skill_core::Tool>>) -> ToolRegistry {
    let mut tools = ToolRegistry::new();
    for t in builtin_tools(&s.workspace, None, access).into_iter().chain(extra) {
        tools.register(t).expect("register");
    }
    tools
}

fn config(s: &Setup) -> AgentConfig {
    AgentConfig {
        max_steps: 4,
        tool_timeout: Duration::from_millis(300),
        transcript_dir: Some(s.runs.clone()),
        ..AgentConfig::default()
    }
}

fn agent(s: &Setup, student: Arc<Cassette>, hits: Vec<Hit>, extra: Vec<Arc<dyn skill_core::Tool>>) -> Agent {
    Agent::new(student, config(s))
        .with_retriever(Arc::new(FixedHits(hits)))
        .with_library(s.library.clone())
        .with_tools(registry(s, &WorkspaceAccess::read_write(), extra))
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

fn tool_outputs(events: &[Event], want_ok: bool) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ToolCall { ok, output, .. } if *ok == want_ok => Some(output.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn free_reasoning_then_a_call_then_an_answer() {
    let s = setup();
    let cassette = Cassette::new(&[
        "The word is in a file. I will read it.\nAction: read_file {\"path\": \"notes.txt\"}",
        "The file says the secret word is heliotrope.\nAnswer: heliotrope",
    ]);
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, events) = run(&a, "What is the secret word?", RunOptions::default()).await;
    assert_eq!(outcome.outcome, Outcome::Answered);
    assert_eq!(outcome.answer.as_deref(), Some("heliotrope"), "the answer alone, not the reasoning");
    assert_eq!(outcome.steps, 2);
    assert_eq!(tool_outputs(&events, true), ["The secret word is heliotrope.\n"]);
    let seen = cassette.seen();
    assert!(seen[1].messages[1].content.contains("Result of read_file:\nThe secret word is heliotrope."));
    // the reasoning stays in the transcript
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ModelCall { step: 2, output, .. } if output.starts_with("The file says")))
    );
    // A backend without grammars is sent none, and the reply budget is reasoning + action.
    assert!(seen.iter().all(|r| r.grammar.is_none() && r.json_schema.is_none() && r.max_tokens == 256 + 160));
    assert!(matches!(
        events.last(),
        Some(Event::Finish { outcome: Outcome::Answered, prompt_tokens: 200, completion_tokens: 40, .. })
    ));
}

#[tokio::test]
async fn the_start_event_records_the_protocol_the_student_got() {
    use agent_loop::ReplyConstraint::{FreeText, Grammar, TwoRequests};
    let s = setup();
    let reply = "Answer: 42";
    for (cassette, expected) in [
        (Cassette::new(&[reply]), FreeText),
        (Cassette::constrained(&[reply]), Grammar),
        (Cassette::continuing(&[reply]), TwoRequests),
    ] {
        let a = agent(&s, cassette, vec![], vec![]);
        let (_, events) = run(&a, "Six times seven?", RunOptions::default()).await;
        let Some(Event::Start { settings: Some(settings), .. }) = events.first() else {
            panic!("{:?}", events.first())
        };
        assert_eq!(settings.reply, expected, "asked for two requests (the default), got what the student takes");
        assert_eq!((settings.reasoning_tokens, settings.action_tokens), (256, 160));
    }
}

#[tokio::test]
async fn free_text_opens_with_the_opener_where_the_student_continues_a_reply() {
    let s = setup();
    let reply = "\n17 + 25 = 42.\nAnswer: 42";
    let opener = agent_loop::protocol::DEFAULT_REASONING_OPENER;
    for (cassette, prefilled) in [(Cassette::free_continuing(&[reply]), true), (Cassette::new(&[reply]), false)] {
        let a = agent(&s, cassette.clone(), vec![], vec![]);
        let (outcome, _) = run(&a, "A box holds 17 red and 25 blue marbles. How many?", RunOptions::default()).await;
        assert_eq!(outcome.answer.as_deref(), Some("42"));
        let last = cassette.seen()[0].messages.last().cloned().expect("messages");
        assert_eq!(last.role == skill_core::Role::Assistant && last.content == opener, prefilled, "{last:?}");
    }
    // The reply is the opener and what followed: as a chat, the next step shows it whole.
    let cassette = Cassette::free_continuing(&["\nI need the file.\nAction: list_dir {}", "\nAnswer: notes.txt"]);
    let config = AgentConfig { history: agent_loop::History::Chat, ..config(&s) };
    let a = Agent::new(cassette.clone(), config).with_tools(registry(&s, &WorkspaceAccess::read_write(), vec![]));
    let (outcome, _) = run(&a, "What files are there?", RunOptions::default()).await;
    assert_eq!(outcome.answer.as_deref(), Some("notes.txt"));
    let second = &cassette.seen()[1].messages;
    let earlier_reply = &second[second.len() - 3];
    assert_eq!(
        (earlier_reply.role, earlier_reply.content.as_str()),
        (skill_core::Role::Assistant, format!("{opener}\nI need the file.\nAction: list_dir {{}}").as_str())
    );
}

#[tokio::test]
async fn a_task_that_needs_no_tool_is_answered_in_one_step() {
    let s = setup();
    let reply = "17 red and 25 blue marbles. 17 + 25 = 42. The JSON {\"total\": 42} agrees.\n\
                 My next Action: none needed.\nAnswer: 42";
    let cassette = Cassette::new(&[reply]);
    let a = agent(&s, cassette, vec![], vec![]);
    let (outcome, events) = run(&a, "A box holds 17 red and 25 blue marbles. How many?", RunOptions::default()).await;
    assert_eq!((outcome.outcome, outcome.answer.as_deref(), outcome.steps), (Outcome::Answered, Some("42"), 1));
    assert!(!events.iter().any(|e| matches!(e, Event::ToolCall { .. } | Event::InvalidReply { .. })));
}

#[tokio::test]
async fn a_grammar_backend_gets_the_reply_grammar_with_the_offered_tools_and_the_budget() {
    let s = setup();
    let cassette = Cassette::constrained(&["Listing.\nAction: list_dir {}", "Answer: notes.txt"]);
    let config = AgentConfig { reasoning_tokens: 100, action_tokens: 50, ..config(&s) };
    let a = Agent::new(cassette.clone(), config).with_library(s.library.clone()).with_tools(registry(
        &s,
        &WorkspaceAccess::read_write(),
        vec![],
    ));
    let (outcome, _) =
        run(&a, "What files are there?", RunOptions { skill: Some("list-only".into()), ..RunOptions::default() }).await;
    assert_eq!(outcome.answer.as_deref(), Some("notes.txt"));
    let seen = cassette.seen();
    let grammar = seen[0].grammar.as_deref().expect("a grammar");
    // 100 tokens of reasoning = 300 characters, then the action.
    assert!(grammar.contains("(.|\\n){0,300}"), "{grammar}");
    assert_eq!(seen[0].max_tokens, 150);
    // The active skill allows list_dir only: the grammar offers nothing else, not even
    // activate_skill.
    assert!(grammar.contains("Action: list_dir /"), "{grammar}");
    for absent in ["read_file", "write_file", "activate_skill"] {
        assert!(!grammar.contains(absent), "{absent} offered: {grammar}");
    }
    assert!(!seen[0].messages[0].content.contains("read_file"), "the prompt lists only the allowed tools");
}

/// Runs "What is the secret word?" with two requests a step on `cassette`, which reads
/// notes.txt and then answers; gives back the requests it was sent.
async fn two_request_run(cassette: &Arc<Cassette>) -> Vec<CompletionRequest> {
    let s = setup();
    let config = AgentConfig {
        constraint: agent_loop::ReplyConstraint::TwoRequests,
        reasoning_tokens: 100,
        action_tokens: 50,
        ..config(&s)
    };
    let a = Agent::new(cassette.clone(), config).with_tools(registry(&s, &WorkspaceAccess::read_write(), vec![]));
    let (outcome, events) = run(&a, "What is the secret word?", RunOptions::default()).await;
    assert_eq!((outcome.outcome, outcome.answer.as_deref(), outcome.steps), (Outcome::Answered, Some("heliotrope"), 2));
    assert_eq!(tool_outputs(&events, true), ["The secret word is heliotrope.\n"]);
    cassette.seen()
}

/// The reply so far that each action request (the second and fourth request) continues.
fn continued_replies(seen: &[CompletionRequest]) -> Vec<&str> {
    [&seen[1], &seen[3]].iter().map(|r| r.messages.last().expect("m").content.as_str()).collect()
}

#[tokio::test]
async fn two_requests_reason_unconstrained_then_continue_the_reply_under_the_action_grammar() {
    // Step 1: reasoning stopped at its `Action:` marker, then the action. Step 2: reasoning
    // that runs out of budget mid-line, then the answer.
    let cassette = Cassette::continuing(&[
        "The word is in notes.txt; {\"a\": 1} is not an action.\n",
        "Action: read_file {\"path\": \"notes.txt\"}",
        "[length]The file says heliotrope, so the word is",
        "\nAnswer: heliotrope",
    ]);
    let seen = two_request_run(&cassette).await;
    assert_eq!(seen.len(), 4, "two requests a step");
    let opener = agent_loop::protocol::DEFAULT_REASONING_OPENER;
    for (i, reasoning) in [(0, &seen[0]), (2, &seen[2])] {
        assert!(reasoning.grammar.is_none(), "request {i}: the reasoning is not constrained");
        assert_eq!(reasoning.max_tokens, 100, "request {i}: the reasoning budget");
        assert!(reasoning.stop.iter().any(|s| s == "Action:") && reasoning.stop.iter().any(|s| s == "Answer:"));
        let last = reasoning.messages.last().expect("messages");
        assert_eq!((last.role, last.content.as_str()), (skill_core::Role::Assistant, opener), "request {i}");
    }
    // Each action request continues the reply so far, under a grammar with no room for
    // reasoning; a budget that ran out gets a line break before the action.
    let continued = continued_replies(&seen);
    assert_eq!(
        continued,
        [
            format!("{opener}The word is in notes.txt; {{\"a\": 1}} is not an action.\n"),
            format!("{opener}The file says heliotrope, so the word is\n")
        ]
    );
    for (reasoning, action) in [(&seen[0], &seen[1]), (&seen[2], &seen[3])] {
        let grammar = action.grammar.as_deref().expect("the action is constrained");
        assert!(grammar.contains("Action: read_file /") && !grammar.contains("{0,300}"), "{grammar}");
        assert_eq!(action.max_tokens, 50);
        // The prompt before the reply is the reasoning request's: a prefix cache keeps it.
        assert_eq!(action.messages[..action.messages.len() - 1], reasoning.messages[..reasoning.messages.len() - 1]);
    }
}

#[tokio::test]
async fn two_requests_start_the_action_on_a_line_of_its_own_after_a_marker_written_inside_the_reasoning() {
    // Recorded from Qwen2.5-Coder-1.5B (everyday notes-lookup, 2026-12-07): the reasoning
    // wrote its action marker inside a sentence (`... files**: \`Action:`) and in a numbered
    // item (`1. Action:`), so the stop left each reply mid-line. Continued there, the action
    // was no line of its own and the parser refused the reply, costing a correction request.
    let cassette = Cassette::continuing(&[
        "1. **Read the note**: `",
        "Action: read_file {\"path\": \"notes.txt\"}",
        "1. ",
        "Answer: heliotrope",
    ]);
    let seen = two_request_run(&cassette).await;
    assert_eq!(seen.len(), 4, "two requests a step and no correction request");
    let opener = agent_loop::protocol::DEFAULT_REASONING_OPENER;
    let continued = continued_replies(&seen);
    assert_eq!(continued, [format!("{opener}1. **Read the note**: `\n"), format!("{opener}1. \n")]);
}

#[tokio::test]
async fn two_requests_close_a_code_block_the_reasoning_left_open_before_the_action() {
    // Recorded from Qwen2.5-Coder-1.5B (everyday weekly-update, 2026-12-07): continued inside
    // the open block, the action wrote the file's content and then ```json```json... to its
    // token limit, and the call was cut off.
    let cassette = Cassette::continuing(&[
        "1. **Read the `done.txt` file**:\n   ```json\n   ",
        "Action: read_file {\"path\": \"notes.txt\"}",
        "```text\nheliotrope\n```\n",
        "Answer: heliotrope",
    ]);
    let seen = two_request_run(&cassette).await;
    let opener = agent_loop::protocol::DEFAULT_REASONING_OPENER;
    assert_eq!(
        continued_replies(&seen),
        [
            format!("{opener}1. **Read the `done.txt` file**:\n   ```json\n   ```\n"),
            format!("{opener}```text\nheliotrope\n```\n")
        ],
        "an open block is closed; a closed one is left alone"
    );
}

#[tokio::test]
async fn two_requests_take_the_constrained_action_over_an_answer_the_reasoning_wrote_without_a_stop() {
    // Neither "the final answer is" nor `**Answer**:` trips the reasoning's stops, and the
    // parser reads both as answers; the constrained action after them is the reply's action.
    let cassette = Cassette::continuing(&[
        "A guess: the final answer is 7, but notes.txt says for sure.\n",
        "Action: read_file {\"path\": \"notes.txt\"}",
        "**Answer**: the word is heliotrope\n",
        "Answer: heliotrope",
    ]);
    let seen = two_request_run(&cassette).await;
    assert_eq!(seen.len(), 4, "two requests a step and no correction request");
}

#[tokio::test]
async fn a_blank_action_part_after_blank_reasoning_lines_is_corrected_without_losing_the_action_offset() {
    // The action part is blanks cut off at its limit: the correction's text is joined to the
    // reply with the reasoning's trailing line breaks trimmed away, so the action part's
    // offset must not point past them (it did, and slicing the joined text panicked).
    let blank_lines = "\n".repeat(60);
    let reasoning = format!("The file says heliotrope.{blank_lines}");
    let cassette = Cassette::continuing(&[
        "The word is in notes.txt.\n",
        "Action: read_file {\"path\": \"notes.txt\"}",
        &reasoning,
        "[length]  ",
        // The correction restates the call; the narrowed request then answers.
        "Action: read_file {\"path\": \"notes.txt\"}",
        "So the word is known.\n",
        "Answer: heliotrope",
    ]);
    let seen = two_request_run(&cassette).await;
    assert_eq!(seen.len(), 7, "two requests, then two with a correction and a narrowed pair");
}

#[tokio::test]
async fn two_requests_fall_back_to_one_on_a_backend_that_does_not_continue_replies() {
    let s = setup();
    let cassette = Cassette::constrained(&["Answer: heliotrope"]);
    let config = AgentConfig { constraint: agent_loop::ReplyConstraint::TwoRequests, ..config(&s) };
    let a = Agent::new(cassette.clone(), config);
    let (outcome, _) = run(&a, "What is the secret word?", RunOptions::default()).await;
    assert_eq!(outcome.answer.as_deref(), Some("heliotrope"));
    let seen = cassette.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].grammar.as_deref().is_some_and(|g| g.contains("{0,768}")), "the one-request grammar");
}

#[tokio::test]
async fn a_skill_that_names_tools_takes_no_answer_before_one_is_called() {
    let s = setup();
    write_skill(
        &s,
        "lookup",
        "allowed-tools: read_file\n",
        "1. Call read_file on notes.txt.\n2. Answer with the word.",
    );
    let options = || RunOptions { skill: Some("lookup".into()), ..RunOptions::default() };
    // A grammar backend is offered no answer until the first call is made.
    let cassette = Cassette::constrained(&["Action: read_file {\"path\": \"notes.txt\"}", "Answer: heliotrope"]);
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, _) = run(&a, "What is the secret word?", options()).await;
    assert_eq!(outcome.answer.as_deref(), Some("heliotrope"));
    let grammars: Vec<String> = cassette.seen().iter().map(|r| r.grammar.clone().expect("grammar")).collect();
    assert!(!grammars[0].contains("answer") && grammars[0].contains("Action: read_file /"), "{}", grammars[0]);
    assert!(grammars[1].contains("answer_head"), "{}", grammars[1]);

    // A call with a placeholder copied from the prompt is not made and is not the first call.
    let cassette = Cassette::constrained(&[
        "Action: read_file {\"path\": \"...\"}",
        "Action: read_file {\"path\": \"notes.txt\"}",
        "Answer: heliotrope",
    ]);
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, events) = run(&a, "What is the secret word?", options()).await;
    assert_eq!((outcome.answer.as_deref(), outcome.steps), (Some("heliotrope"), 3));
    assert!(
        events.iter().any(
            |e| matches!(e, Event::ToolCall { step: 1, ok: false, output, .. } if output.contains("a placeholder"))
        )
    );
    let grammars: Vec<String> = cassette.seen().iter().map(|r| r.grammar.clone().expect("grammar")).collect();
    assert!(!grammars[1].contains("answer"), "still no answer after the placeholder call: {}", grammars[1]);

    // A free-text backend's early answer gets a correction request for a call; answered
    // again, it is sent back as an observation, and the run goes on.
    let cassette = Cassette::new(&[
        "The steps say read the file.\nAnswer: Priya",
        "Answer: Priya",
        "Action: read_file {\"path\": \"notes.txt\"}",
        "Answer: heliotrope",
    ]);
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, events) = run(&a, "What is the secret word?", options()).await;
    assert_eq!((outcome.answer.as_deref(), outcome.steps), (Some("heliotrope"), 3));
    let seen = cassette.seen();
    let correction = &seen[1].messages.last().expect("correction").content;
    assert!(
        correction.contains("only the last line: `Action: `") && !correction.contains("`Answer: `"),
        "{correction}"
    );
    assert!(events.iter().any(
        |e| matches!(e, Event::InvalidReply { step: 1, error } if error.contains("before any tool the skill names"))
    ));
    assert!(seen[2].messages[1].content.contains("Do not answer yet"), "{:?}", seen[2]);
    // An answer line in the reasoning before the call is reasoning.
    let cassette = Cassette::new(&[
        "Answer: Priya?\nNo, read first.\nAction: read_file {\"path\": \"notes.txt\"}",
        "Answer: heliotrope",
    ]);
    let a = agent(&s, cassette, vec![], vec![]);
    let (outcome, events) = run(&a, "What is the secret word?", options()).await;
    assert_eq!((outcome.answer.as_deref(), outcome.steps), (Some("heliotrope"), 2));
    assert!(!events.iter().any(|e| matches!(e, Event::InvalidReply { .. })));

    // A correction that answers and then calls goes on with the call.
    let cassette = Cassette::new(&[
        "Answer: Priya",
        "Answer: Priya\nAction: read_file {\"path\": \"notes.txt\"}",
        "Answer: heliotrope",
    ]);
    let a = agent(&s, cassette, vec![], vec![]);
    let (outcome, _) = run(&a, "What is the secret word?", options()).await;
    assert_eq!((outcome.answer.as_deref(), outcome.steps), (Some("heliotrope"), 2));
    // A model that will not call a tool: after two refused answers the third is taken.
    let cassette = Cassette::new(&["Answer: Priya"; 5]);
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, events) = run(&a, "What is the secret word?", options()).await;
    assert_eq!((outcome.answer.as_deref(), outcome.steps), (Some("Priya"), 3));
    assert_eq!(cassette.seen().len(), 5, "two steps of reply and correction, then the answer");
    let refused = events
        .iter()
        .filter(|e| matches!(e, Event::InvalidReply { error, .. } if error.contains("before any tool")))
        .count();
    assert_eq!(refused, 2);

    // Turned off, the early answer stands; a skill that names no tools is answered at once.
    let config = AgentConfig { act_before_answer: false, ..config(&s) };
    let cassette = Cassette::new(&["Answer: Priya"]);
    let a = Agent::new(cassette, config).with_library(s.library.clone()).with_tools(registry(
        &s,
        &WorkspaceAccess::read_write(),
        vec![],
    ));
    let (outcome, _) = run(&a, "What is the secret word?", options()).await;
    assert_eq!((outcome.answer.as_deref(), outcome.steps), (Some("Priya"), 1));
    let cassette = Cassette::new(&["Answer: heliotrope"]);
    let a = agent(&s, cassette, vec![], vec![]);
    let (outcome, _) =
        run(&a, "secret?", RunOptions { skill: Some("read-secret".into()), ..RunOptions::default() }).await;
    assert_eq!((outcome.answer.as_deref(), outcome.steps), (Some("heliotrope"), 1));
}

#[tokio::test]
async fn a_reply_cut_off_before_its_action_gets_one_correction_request() {
    let s = setup();
    let cassette = Cassette::constrained(&[
        "[length]Let me think about this at great length, step one, step two",
        "Answer: heliotrope",
    ]);
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, events) = run(&a, "secret?", RunOptions::default()).await;
    assert_eq!((outcome.answer.as_deref(), outcome.steps), (Some("heliotrope"), 1), "the correction is not a step");
    let seen = cassette.seen();
    assert_eq!(seen.len(), 2);
    let correction = &seen[1];
    assert!(correction.messages.last().expect("msg").content.contains("cut off at its token limit"));
    // No reasoning left: the grammar asks for the action at once, within the action budget.
    assert!(!correction.grammar.as_deref().expect("grammar").contains("(.|\\n){0,"));
    assert_eq!(correction.max_tokens, 160);
    assert!(events.iter().any(|e| matches!(e, Event::ModelCall { step: 1, correction: true, .. })));
}

#[tokio::test]
async fn unusable_unknown_and_failing_calls_become_observations() {
    let s = setup();
    let outside = s.tmp.path().join("outside.txt");
    let cassette = Cassette::new(&[
        "I am not sure what to do.",
        "Still thinking without a final line.",
        "Action: delete_everything {}",
        "Action: read_file {\"path\": \"../outside.txt\"}",
        "Answer: gave up",
    ]);
    std::fs::write(&outside, "private").expect("write");
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, events) = run(&a, "task", RunOptions::default()).await;
    assert_eq!(outcome.answer.as_deref(), Some("gave up"));
    assert!(events.iter().any(|e| matches!(e, Event::InvalidReply { step: 1, error } if error.contains("no `Answer:` line") && error.contains("after a correction request"))), "{events:?}");
    let failures = tool_outputs(&events, false);
    assert!(failures[0].contains("there is no tool `delete_everything`"), "{failures:?}");
    assert!(failures[1].contains("outside the workspace"), "{failures:?}");
    let seen = cassette.seen();
    assert!(
        seen[2].messages[1].content.contains("Done so far:\n1. Your reply could not be used"),
        "{}",
        seen[2].messages[1].content
    );
}

#[tokio::test]
async fn tool_timeouts_and_truncation() {
    let s = setup();
    let slow = FnTool::new("slow", "Sleeps.", json!({"type": "object"}), |_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(ok("late"))
    });
    let loud = FnTool::new("loud", "Talks a lot.", json!({"type": "object"}), |_| async { Ok(ok("x".repeat(10_000))) });
    let cassette = Cassette::new(&["Action: slow {}", "Action: loud {}", "Answer: done"]);
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
    let cassette = Cassette::new(&["Action: patient {}", "Action: hasty {}", "Answer: done"]);
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
    let call = "Again.\nAction: list_dir {}";
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
    let cassette =
        Cassette::new(&["Action: read_file {\"path\": \"notes.txt\"}", "Action: list_dir {}", "Answer: notes.txt"]);
    let hits = vec![skill_hit(&s, "list-only", 9.0), skill_hit(&s, "read-secret", 2.0)];
    let a = agent(&s, cassette.clone(), hits, vec![]);
    let (outcome, events) = run(&a, "list the folder", RunOptions::default()).await;
    assert_eq!(outcome.skill.as_deref(), Some("list-only"));
    assert!(
        matches!(&events[2], Event::SkillActivated { step: 0, name, reason, .. } if name == "list-only" && reason == "confident")
    );
    assert!(events.iter().any(|e| matches!(e, Event::ToolCall { tool, denied: true, ok: false, output, .. } if tool == "read_file" && output.contains("does not allow"))));
    assert!(events.iter().any(|e| matches!(e, Event::ToolCall { tool, ok: true, output, .. } if tool == "list_dir" && output.contains("notes.txt"))));
    let seen = cassette.seen();
    assert!(
        seen[0].messages[0].content.contains("Follow these steps (the skill `list-only`):\nList the folder."),
        "the steps are in the system prompt (the default placement)"
    );
    assert!(!seen[0].messages[1].content.contains("List the folder."), "and not again with the task");
}

#[tokio::test]
async fn a_lone_hit_with_a_low_score_is_not_confident() {
    let s = setup();
    let cassette = Cassette::new(&["Answer: nothing"]);
    let a = agent(&s, cassette.clone(), vec![skill_hit(&s, "read-secret", 1.2)], vec![]);
    let (outcome, events) = run(&a, "what is the weather", RunOptions::default()).await;
    assert_eq!(outcome.skill, None);
    assert!(!events.iter().any(|e| matches!(e, Event::SkillActivated { .. })));
    assert!(
        cassette.seen()[0].messages[0].content.contains("- read-secret: read-secret description"),
        "offered in the catalog"
    );
}

#[tokio::test]
async fn the_model_can_activate_a_skill_from_the_catalog() {
    let s = setup();
    let cassette =
        Cassette::new(&["A skill fits.\nAction: activate_skill {\"name\": \"read-secret\"}", "Answer: heliotrope"]);
    // Two close scores: not confident, so the model chooses.
    let hits = vec![skill_hit(&s, "read-secret", 5.0), skill_hit(&s, "list-only", 4.5)];
    let a = agent(&s, cassette.clone(), hits, vec![]);
    let (outcome, events) = run(&a, "secret word?", RunOptions::default()).await;
    assert_eq!(outcome.skill.as_deref(), Some("read-secret"));
    assert!(events.iter().any(|e| matches!(e, Event::SkillActivated { step: 1, reason, .. } if reason == "tool")));
    let seen = cassette.seen();
    let first_prompt = &seen[0].messages[0].content;
    assert!(first_prompt.contains("- read-secret: read-secret description") && first_prompt.contains("activate_skill"));
    assert!(seen[1].messages.last().expect("obs").content.contains("1. Call read_file on notes.txt."));
    assert_eq!(seen[1].messages[0].content, seen[0].messages[0].content, "the system prompt stays the same");
}

#[tokio::test]
async fn a_restricted_skill_cannot_leave_its_limits() {
    let s = setup();
    let cassette = Cassette::new(&[
        "Action: activate_skill {\"name\": \"read-secret\"}",
        "Action: read_file {\"path\": \"notes.txt\"}",
        "Answer: done",
    ]);
    let hits = vec![skill_hit(&s, "read-secret", 5.0), skill_hit(&s, "list-only", 4.5)];
    let a = agent(&s, cassette, hits, vec![]);
    let (outcome, events) = run(&a, "t", RunOptions { skill: Some("list-only".into()), ..RunOptions::default() }).await;
    assert_eq!(outcome.skill.as_deref(), Some("list-only"));
    let refused = tool_outputs(&events, false);
    assert!(refused[0].contains("is already active"), "{refused:?}");
    assert!(refused[1].contains("does not allow"), "{refused:?}");
}

#[tokio::test]
async fn bash_patterns_limit_the_shell_to_their_commands() {
    let s = setup();
    let access = WorkspaceAccess { write: false, shell: Some(Default::default()) };
    let cassette = Cassette::constrained(&[
        "Action: shell {\"command\": \"git status; touch pwned\"}",
        "Action: shell {\"command\": \"touch pwned\"}",
        "Answer: done",
    ]);
    let a = Agent::new(cassette.clone(), config(&s)).with_library(s.library.clone()).with_tools(registry(
        &s,
        &access,
        vec![],
    ));
    let (_, events) = run(&a, "t", RunOptions { skill: Some("git-only".into()), ..RunOptions::default() }).await;
    let refused = tool_outputs(&events, false);
    assert_eq!(refused.len(), 2, "{events:?}");
    assert!(refused.iter().all(|r| r.contains("outside Bash(git:*)")), "{refused:?}");
    assert!(!s.workspace.join("pwned").exists());
    // The grammar carries the limit, so a grammar backend cannot even write those commands.
    let grammar = cassette.seen()[0].grammar.clone().expect("grammar");
    assert!(grammar.contains(r#""pattern":"^git( [^\\n]*)?$""#), "{grammar}");
}

#[tokio::test]
async fn requested_skill_wins_and_unknown_skill_is_an_error() {
    let s = setup();
    let a = agent(&s, Cassette::new(&["Answer: x"]), vec![], vec![]);
    let (outcome, events) =
        run(&a, "t", RunOptions { skill: Some("read-secret".into()), ..RunOptions::default() }).await;
    assert_eq!(outcome.skill.as_deref(), Some("read-secret"));
    assert!(events.iter().any(|e| matches!(e, Event::SkillActivated { reason, .. } if reason == "requested")));
    let a = agent(&s, Cassette::new(&[]), vec![], vec![]);
    let err = a
        .run("t", &RunOptions { skill: Some("nope".into()), ..RunOptions::default() }, &mut |_| {})
        .await
        .expect_err("unknown skill");
    assert!(err.to_string().contains("skill `nope` not found"), "{err}");
}

#[tokio::test]
async fn secrets_are_redacted_on_every_output_path() {
    let s = setup();
    let shapes = [
        "sk-test-0123456789abcdef",
        "ghp_0123456789abcdefghijABCDEFGHIJ",
        "github_pat_11ABCDEFG0123456789_abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
        "xoxb-123456789012-abcdefghijkl",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n-----END OPENSSH PRIVATE KEY-----",
        "https://deploy:hunter2hunter2@git.example.com",
        "Bearer abcdefghijklmnopqrstuvwxyz123456",
        "caller-held-secret-42",
    ];
    // A file full of secrets, long enough that the observation is cut in the middle of one.
    let mut leaky = shapes.join("\n");
    leaky.push('\n');
    leaky.push_str(&"filler ".repeat(20));
    leaky.push_str("sk-straddling-the-cut-0123456789");
    std::fs::write(s.workspace.join("leaky.txt"), &leaky).expect("write");
    let cut_at = leaky.find("sk-straddling").expect("find") + 6;
    let cassette = Cassette::new(&[
        "Action: read_file {\"path\": \"leaky.txt\"}",
        "I saw sk-test-0123456789abcdef and AKIAIOSFODNN7EXAMPLE.\nAnswer: the key is ghp_0123456789abcdefghijABCDEFGHIJ",
    ]);
    let config =
        AgentConfig { max_observation_chars: cut_at, redact: vec!["caller-held-secret-42".into()], ..config(&s) };
    let a = Agent::new(cassette.clone(), config).with_tools(registry(&s, &WorkspaceAccess::read_write(), vec![]));
    let mut streamed = Vec::new();
    let outcome = a
        .run("use caller-held-secret-42 to read leaky.txt", &RunOptions::default(), &mut |e: &Event| {
            streamed.push(serde_json::to_string(e).expect("json"))
        })
        .await
        .expect("run");
    let file = std::fs::read_to_string(outcome.transcript.clone().expect("path")).expect("read");
    // The model gets the user's task as the user wrote it; everything tools bring in is clean.
    let shown_to_model: Vec<String> =
        cassette.seen().iter().flat_map(|r| r.messages.iter().skip(2).map(|m| m.content.clone())).collect();
    let views = [
        ("streamed events", streamed.join("\n")),
        ("transcript", file),
        ("model input", shown_to_model.join("\n")),
        ("answer", outcome.answer.clone().unwrap_or_default()),
    ];
    for (view, text) in &views {
        for secret in shapes.iter().chain(&["hunter2hunter2", "sk-str", "b3BlbnNzaC1rZXktdjE"]) {
            assert!(!text.contains(secret), "{view} leaks {secret:?}: {text}");
        }
    }
    assert_eq!(outcome.answer.as_deref(), Some("the key is [REDACTED]"));
}

#[tokio::test]
async fn workspace_tools_stay_inside_the_root_and_runs_are_read_only_unless_asked() {
    let s = setup();
    let outside = s.tmp.path().join("outside.txt");
    std::fs::write(&outside, "private").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, s.workspace.join("link.txt")).expect("symlink");
    let planted = s.tmp.path().join("planted.txt");
    let cassette = Cassette::new(&[
        "Action: write_file {\"path\": \"out/answer.txt\", \"content\": \"42\"}",
        "Action: read_file {\"path\": \"link.txt\"}",
        &format!("Action: write_file {{\"path\": \"{}\", \"content\": \"x\"}}", planted.display()),
        "Answer: ok",
    ]);
    let a = agent(&s, cassette, vec![], vec![]);
    let (_, events) = run(&a, "t", RunOptions::default()).await;
    assert_eq!(std::fs::read_to_string(s.workspace.join("out/answer.txt")).expect("written"), "42");
    let failures = tool_outputs(&events, false);
    #[cfg(unix)]
    assert!(failures.iter().any(|f| f.contains("leads outside")), "{failures:?}");
    assert!(failures.iter().any(|f| f.contains("outside the workspace")), "{failures:?}");
    assert!(!planted.exists());

    // Read-only: write_file is not there at all.
    let cassette = Cassette::new(&["Action: write_file {\"path\": \"new.txt\", \"content\": \"x\"}", "Answer: ok"]);
    let a = Agent::new(cassette.clone(), config(&s)).with_tools(registry(&s, &WorkspaceAccess::default(), vec![]));
    let (_, events) = run(&a, "t", RunOptions::default()).await;
    assert!(tool_outputs(&events, false)[0].contains("there is no tool `write_file`"));
    assert!(!s.workspace.join("new.txt").exists());
    assert!(!cassette.seen()[0].messages[0].content.contains("write_file"));
}

#[tokio::test]
async fn a_restated_call_is_passed_over_and_a_grammar_backend_is_asked_past_it() {
    let s = setup();
    // Free text: the reply restates the call before, then answers in the same reply.
    let cassette = Cassette::new(&[
        "Action: read_file {\"path\": \"notes.txt\"}",
        "Action: read_file {\"path\": \"notes.txt\"}\nThe file names the word.\nAnswer: heliotrope",
    ]);
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, events) = run(&a, "secret?", RunOptions::default()).await;
    assert_eq!((outcome.answer.as_deref(), outcome.steps), (Some("heliotrope"), 2));
    assert_eq!(events.iter().filter(|e| matches!(e, Event::ToolCall { .. })).count(), 1, "read once");
    // A grammar stops at the restatement: the loop asks again with read_file's `Action:`
    // left as plain text, and takes what comes after it.
    let cassette = Cassette::constrained(&[
        "Action: read_file {\"path\": \"notes.txt\"}",
        "Action: read_file {\"path\": \"notes.txt\"}",
        "Action: read_file {\"path\": \"notes.txt\"}\nSo it is heliotrope.\nAnswer: heliotrope",
    ]);
    let a = agent(&s, cassette.clone(), vec![], vec![]);
    let (outcome, events) = run(&a, "secret?", RunOptions::default()).await;
    assert_eq!((outcome.answer.as_deref(), outcome.steps), (Some("heliotrope"), 2));
    assert_eq!(events.iter().filter(|e| matches!(e, Event::ToolCall { .. })).count(), 1, "read once");
    let seen = cassette.seen();
    let narrowed = seen[2].grammar.as_deref().expect("grammar");
    assert!(!narrowed.contains("Action: read_file "), "read_file is plain text in the re-ask: {narrowed}");
    assert!(seen[1].grammar.as_deref().expect("grammar").contains("Action: read_file "));
    // The folded history shows the call and its result after the steps, not the replies.
    let user = &seen[1].messages[1].content;
    assert!(user.contains("Done so far:\n1. Action: read_file {\"path\":\"notes.txt\"}\nResult of read_file:\nThe secret word is heliotrope."), "{user}");
    assert_eq!(seen[1].messages.len(), 2, "one system and one user turn");
}
