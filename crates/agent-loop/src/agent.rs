//! The loop itself: retrieve, then Plan -> Tool Call -> Observe -> Refine until a final
//! answer or the step budget.

use crate::permissions::Permissions;
use crate::protocol::{
    ACTIVATE_SKILL, Action, ActiveSkill, CHARS_PER_REASONING_TOKEN, CatalogEntry, NoteExcerpt, Reply, SkillPlacement,
    activate_skill_spec, correction_message, parse_first_call, parse_reply, parse_reply_other_than, reply_grammar,
    system_prompt, task_message,
};
pub use crate::protocol::{History, ReplyConstraint};
use crate::tools::ToolRegistry;
use crate::transcript::{
    Event, Outcome, RetrievedNote, RetrievedSkill, RunSettings, TRANSCRIPT_SCHEMA_VERSION, TranscriptWriter,
};
use crate::{Error, Result};
use skill_core::redact::Redactor;
use skill_core::{
    ChatMessage, Completion, CompletionRequest, Hit, RetrievalQuery, Retriever, Role, Scope, Skill, SkillLibrary,
    Student, ToolSpec,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Model calls allowed before the run stops without an answer (a correction turn does not
    /// count).
    pub max_steps: usize,
    /// Tokens of free reasoning allowed before the action, per step.
    pub reasoning_tokens: u32,
    /// Tokens allowed for the action line after the reasoning.
    pub action_tokens: u32,
    /// The words a constrained reply with room for reasoning starts with ("": none).
    pub reasoning_opener: String,
    /// While the active skill names tools in `allowed-tools` and none has been called yet,
    /// no answer is taken: the grammar leaves the answer out, and a free-text answer is sent
    /// back. Qwen2.5-Coder-0.5B otherwise copies the steps as its reasoning and answers
    /// without doing the first one ("Answer: Priya" with contacts.csv unread).
    pub act_before_answer: bool,
    /// Wall-clock limit of each model call.
    pub model_timeout: Duration,
    /// Wall-clock limit of each tool call.
    pub tool_timeout: Duration,
    /// Per-tool limits that replace `tool_timeout` for the named tools (a slow MCP server,
    /// a long build in `shell`).
    pub tool_timeouts: std::collections::BTreeMap<String, Duration>,
    /// Observations longer than this (characters) are cut.
    pub max_observation_chars: usize,
    /// Skills shown in the catalog.
    pub catalog_size: usize,
    /// Note excerpts shown up front.
    pub notes_in_prompt: usize,
    /// The top skill is activated without asking the model when its score is at least
    /// `confident_min_score` and at least this many times the runner-up's (or it is the only
    /// hit).
    pub confident_ratio: f32,
    /// The least retrieval score of a skill activated without asking the model.
    pub confident_min_score: f32,
    /// Where an active skill's steps go in the prompt.
    pub skill_placement: SkillPlacement,
    /// How replies are constrained.
    pub constraint: ReplyConstraint,
    /// How earlier steps are shown to the model.
    pub history: History,
    /// Where transcripts go (`None`: not written).
    pub transcript_dir: Option<PathBuf>,
    /// Strings never shown or written (API keys the caller holds), in addition to
    /// secret-looking environment variables and the usual key shapes ([`Redactor`]).
    pub redact: Vec<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_steps: 8,
            reasoning_tokens: 256,
            action_tokens: 160,
            reasoning_opener: crate::protocol::DEFAULT_REASONING_OPENER.to_string(),
            act_before_answer: true,
            model_timeout: Duration::from_secs(180),
            tool_timeout: Duration::from_secs(30),
            tool_timeouts: std::collections::BTreeMap::new(),
            max_observation_chars: 2_000,
            catalog_size: 3,
            notes_in_prompt: 2,
            confident_ratio: 1.5,
            confident_min_score: 4.0,
            skill_placement: SkillPlacement::default(),
            constraint: ReplyConstraint::default(),
            history: History::default(),
            transcript_dir: None,
            redact: Vec::new(),
        }
    }
}

/// Per-run options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Activate this skill before the first step, whatever retrieval says.
    pub skill: Option<String>,
    /// Use no skill: none is retrieved, offered in the catalog or activated.
    pub no_skills: bool,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// How it ended.
    pub outcome: Outcome,
    /// The final answer.
    pub answer: Option<String>,
    /// Model calls made.
    pub steps: usize,
    /// The skill that was active at the end.
    pub skill: Option<String>,
    /// The transcript file, if written.
    pub transcript: Option<PathBuf>,
}

/// The agent: a student, tools, and optionally a retriever and a skill library.
pub struct Agent {
    student: Arc<dyn Student>,
    retriever: Option<Arc<dyn Retriever>>,
    library: Option<SkillLibrary>,
    tools: ToolRegistry,
    config: AgentConfig,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("student", &self.student.model_id()).field("tools", &self.tools).finish()
    }
}

/// Where events go: redacted once, where they are made, then to the caller and the file, so
/// every view of a run is as clean as its transcript.
struct RunState<'a> {
    transcript: Option<TranscriptWriter>,
    on_event: &'a mut (dyn FnMut(&Event) + Send),
    redactor: Redactor,
}

impl RunState<'_> {
    fn emit(&mut self, event: Event) -> Result<()> {
        let event = event.redacted(&self.redactor);
        (self.on_event)(&event);
        if let Some(t) = &mut self.transcript {
            t.write(&event)?;
        }
        Ok(())
    }
}

/// Answers refused before the active skill's first tool call (free-text replies; a grammar
/// offers no answer then) before the loop takes the next one.
const MAX_EARLY_ANSWERS: usize = 2;

/// Where the reasoning request of [`ReplyConstraint::TwoRequests`] stops: the start of an
/// answer or action marker (`Answer:`, `**Final Answer:**`, `Action:`); the constrained
/// request then writes the marker's line, on a line of its own (see
/// [`ends_at_a_line_start`]). "The final answer is" is left to run on: it often opens a
/// sentence of reasoning.
const REASONING_STOPS: &[&str] = &["Answer:", "answer:", "Action:"];

/// Characters the action request of [`ReplyConstraint::TwoRequests`] may write before its
/// marker and a line break (the reply so far already ends a line; small models still like to
/// write a list number or a word there first, `1.` or `So`).
const ACTION_LEAD_CHARS: usize = 2;

/// Whether the action request may continue `text` as it is: its last line holds at most an
/// indentation or a quote mark, so any marker line the action grammar writes (a bullet and
/// `**` included) parses. After anything else (a budget that ran out mid-line, a marker the
/// reasoning wrote inside a sentence, ``1. **List the files**: `Action:``, a bullet of its own
/// that the grammar's bullet would double, `- - Action:`) the action needs a new line.
fn ends_at_a_line_start(text: &str) -> bool {
    let last_line = text.rsplit('\n').next().unwrap_or_default();
    last_line.trim_start_matches([' ', '\t', '>']).is_empty()
}

/// The messages of a run so far.
struct Conversation<'a> {
    system: String,
    task: &'a str,
    notes: &'a [NoteExcerpt],
    mode: History,
    /// Folded: the numbered entries. Chat: alternating replies and observations.
    entries: Vec<String>,
}

impl<'a> Conversation<'a> {
    fn new(system: String, task: &'a str, notes: &'a [NoteExcerpt], mode: History) -> Self {
        Conversation { system, task, notes, mode, entries: Vec::new() }
    }

    fn messages(
        &self,
        active: Option<&ActiveSkill>,
        placement: SkillPlacement,
        tools: &[ToolSpec],
    ) -> Vec<ChatMessage> {
        let mut messages = vec![ChatMessage::new(Role::System, self.system.clone())];
        match self.mode {
            History::Folded => {
                let user = task_message(self.task, self.notes, active, placement, &self.entries, tools);
                messages.push(ChatMessage::new(Role::User, user));
            }
            History::Chat => {
                let user = task_message(self.task, self.notes, active, placement, &[], tools);
                messages.push(ChatMessage::new(Role::User, user));
                for (i, entry) in self.entries.iter().enumerate() {
                    let role = if i % 2 == 0 { Role::Assistant } else { Role::User };
                    messages.push(ChatMessage::new(role, entry.clone()));
                }
            }
        }
        messages
    }

    /// One step: the model's reply, the action it took (`None`: unusable) and what came back.
    fn record(&mut self, reply: &str, action: Option<String>, observation: String) {
        match self.mode {
            History::Folded => self.entries.push(match action {
                Some(line) => format!("{line}\n{observation}"),
                None => observation,
            }),
            History::Chat => {
                self.entries.push(reply.to_string());
                self.entries.push(observation);
            }
        }
    }
}

/// A step's reply and where its action part starts: 0 for one request; with two requests
/// the end of the unconstrained reasoning. The action is read from there on, so a marker the
/// reasoning wrote without tripping a stop (`so the final answer is 7`, `**Answer**: 7`)
/// does not win over the constrained action that follows it.
struct StepReply {
    completion: Completion,
    action_from: usize,
}

impl StepReply {
    fn parse(&self) -> std::result::Result<Reply, String> {
        parse_reply(self.action_part()).map(|reply| self.with_reasoning(reply))
    }

    fn first_call(&self) -> Option<Reply> {
        parse_first_call(self.action_part()).map(|reply| self.with_reasoning(reply))
    }

    fn other_than(&self, skip: &Action) -> Option<Reply> {
        parse_reply_other_than(self.action_part(), skip).map(|reply| self.with_reasoning(reply))
    }

    fn action_part(&self) -> &str {
        &self.completion.text[self.action_from..]
    }

    /// The reply's reasoning is everything before its action, the unconstrained part included.
    fn with_reasoning(&self, reply: Reply) -> Reply {
        let before = &self.completion.text[..self.action_from];
        Reply { reasoning: format!("{before}{}", reply.reasoning).trim_end().to_string(), ..reply }
    }
}

/// What the loop knows about the skill situation of a run.
struct SkillState {
    active: Option<ActiveSkill>,
    permissions: Permissions,
}

impl Agent {
    /// An agent with no tools, retriever or library.
    pub fn new(student: Arc<dyn Student>, config: AgentConfig) -> Self {
        Agent { student, retriever: None, library: None, tools: ToolRegistry::new(), config }
    }

    /// Searches skills and notes with `retriever` before the loop.
    pub fn with_retriever(mut self, retriever: Arc<dyn Retriever>) -> Self {
        self.retriever = Some(retriever);
        self
    }

    /// Loads skills from `library` (for `RunOptions::skill` and `activate_skill`).
    pub fn with_library(mut self, library: SkillLibrary) -> Self {
        self.library = Some(library);
        self
    }

    /// Uses these tools.
    pub fn with_tools(mut self, tools: ToolRegistry) -> Self {
        self.tools = tools;
        self
    }

    fn load_skill(&self, name: &str, hits: &[Hit]) -> Result<(ActiveSkill, String)> {
        let from_hits = hits.iter().find_map(|h| match h {
            Hit::Skill(s) if s.name == name => Some(s.path.clone()),
            _ => None,
        });
        let path = match (from_hits, &self.library) {
            (Some(p), _) => p,
            (None, Some(lib)) => lib.find(name).map_err(|_| Error::SkillNotFound(name.to_string()))?.skill_md(),
            (None, None) => return Err(Error::SkillNotFound(name.to_string())),
        };
        let skill = Skill::read(&path).map_err(|e| Error::Skill(e.to_string()))?;
        let active = ActiveSkill {
            name: name.to_string(),
            body: skill.body().to_string(),
            allowed_tools: skill.meta().allowed_tools.clone(),
        };
        Ok((active, skill.content_hash()))
    }

    /// The tools offered now: those the permissions allow (argument limits written into
    /// their schemas, so the grammar enforces them), plus `activate_skill` while no skill is
    /// active and the catalog has one.
    fn offered(&self, skills: &SkillState, catalog: &[CatalogEntry]) -> Vec<ToolSpec> {
        let mut specs: Vec<ToolSpec> = self
            .tools
            .specs()
            .into_iter()
            .filter(|s| skills.permissions.allows_tool(&s.name))
            .map(|mut s| {
                for (argument, pattern) in skills.permissions.argument_patterns(&s.name) {
                    if let Some(prop) = s.parameters.get_mut("properties").and_then(|p| p.get_mut(argument)) {
                        prop["pattern"] = serde_json::Value::String(pattern);
                    }
                }
                s
            })
            .collect();
        if skills.active.is_none() && !catalog.is_empty() {
            specs.push(activate_skill_spec(catalog));
        }
        specs
    }

    /// The settings the `start` event records, with the reply protocol this student gets.
    fn run_settings(&self) -> RunSettings {
        let c = &self.config;
        let reply = if self.two_requests() {
            ReplyConstraint::TwoRequests
        } else if self.constrained() {
            ReplyConstraint::Grammar
        } else {
            ReplyConstraint::FreeText
        };
        RunSettings {
            reply,
            skill_placement: c.skill_placement,
            history: c.history,
            reasoning_tokens: c.reasoning_tokens,
            action_tokens: c.action_tokens,
            reasoning_opener: c.reasoning_opener.clone(),
            act_before_answer: c.act_before_answer,
            catalog_size: c.catalog_size,
            notes_in_prompt: c.notes_in_prompt,
            confident_ratio: c.confident_ratio,
            confident_min_score: c.confident_min_score,
            max_observation_chars: c.max_observation_chars,
        }
    }

    fn constrained(&self) -> bool {
        matches!(self.config.constraint, ReplyConstraint::Grammar | ReplyConstraint::TwoRequests)
            && self.student.supports_grammar()
    }

    fn two_requests(&self) -> bool {
        self.config.constraint == ReplyConstraint::TwoRequests
            && self.student.supports_grammar()
            && self.student.continues_reply()
    }

    /// The reply of one step with room for reasoning: one request, or with
    /// [`ReplyConstraint::TwoRequests`] the reasoning and then the action (see there), given
    /// back as one completion whose text is the whole reply, opener included, as a grammar
    /// request returns it, with where its action part starts.
    #[allow(clippy::too_many_arguments)]
    async fn reply_call(
        &self,
        step: usize,
        correction: bool,
        messages: &[ChatMessage],
        offered: &[ToolSpec],
        answer_allowed: bool,
        totals: &mut (u64, u64),
        state: &mut RunState<'_>,
    ) -> Result<std::result::Result<StepReply, String>> {
        let reasoning_tokens = self.config.reasoning_tokens;
        let opener = &self.config.reasoning_opener;
        if !self.two_requests() || reasoning_tokens == 0 {
            let mut request = self.request(messages, offered, reasoning_tokens, answer_allowed);
            // Free text from a backend that continues a reply: the opener goes in as the
            // reply's start, as the grammar's first literal does. Asked for in the prompt
            // alone, the default student opened 85 of 91 free-text replies with its action.
            let prefilled = request.grammar.is_none()
                && reasoning_tokens > 0
                && !opener.is_empty()
                && self.student.continues_reply();
            if prefilled {
                request.messages.push(ChatMessage::new(Role::Assistant, opener.clone()));
            }
            let completion = self.model_call(step, correction, &request, totals, state).await?;
            return Ok(completion.map(|mut completion| {
                if prefilled {
                    completion.text = format!("{opener}{}", completion.text);
                }
                StepReply { completion, action_from: 0 }
            }));
        }
        let mut reasoning_request = self.plain_request(messages, reasoning_tokens);
        if !opener.is_empty() {
            reasoning_request.messages.push(ChatMessage::new(Role::Assistant, opener.clone()));
        }
        reasoning_request.stop = REASONING_STOPS.iter().map(|s| s.to_string()).collect();
        let reasoning = match self.model_call(step, correction, &reasoning_request, totals, state).await? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let mut so_far = format!("{opener}{}", reasoning.text);
        // The action starts on a line of its own, where the reply's parser looks for it.
        if !ends_at_a_line_start(&so_far) {
            so_far.push('\n');
        }
        // Outside any code block the reasoning opened: an action continued inside one tries
        // to close it within its JSON, and runs on (```json```json...) to its token limit.
        if so_far.matches("```").count() % 2 == 1 {
            so_far.push_str("```\n");
        }
        let mut action_request = self.plain_request(messages, self.config.action_tokens);
        action_request.messages.push(ChatMessage::new(Role::Assistant, so_far.clone()));
        // A few characters and a line break may come before the marker (ACTION_LEAD_CHARS).
        action_request.grammar =
            Some(reply_grammar(offered, ACTION_LEAD_CHARS, "", answer_allowed || offered.is_empty()));
        let action = match self.model_call(step, correction, &action_request, totals, state).await? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let completion = Completion {
            text: format!("{so_far}{}", action.text),
            usage: skill_core::Usage {
                prompt_tokens: reasoning.usage.prompt_tokens + action.usage.prompt_tokens,
                completion_tokens: reasoning.usage.completion_tokens + action.usage.completion_tokens,
            },
            elapsed: reasoning.elapsed + action.elapsed,
            finish_reason: action.finish_reason,
        };
        Ok(Ok(StepReply { completion, action_from: so_far.len() }))
    }

    /// Whether an answer may be given now (see [`AgentConfig::act_before_answer`]): not while
    /// the active skill names tools, one of them is offered, and none has been called.
    fn answer_allowed(&self, skills: &SkillState, offered: &[ToolSpec], acted: bool) -> bool {
        let skill_names_tools =
            skills.active.as_ref().is_some_and(|a| a.allowed_tools.as_ref().is_some_and(|t| !t.is_empty()));
        let a_tool_is_offered = offered.iter().any(|s| s.name != ACTIVATE_SKILL);
        !(self.config.act_before_answer && skill_names_tools && a_tool_is_offered && !acted)
    }

    fn request(
        &self,
        messages: &[ChatMessage],
        offered: &[ToolSpec],
        reasoning_tokens: u32,
        answer_allowed: bool,
    ) -> CompletionRequest {
        let reasoning_chars = reasoning_tokens as usize * CHARS_PER_REASONING_TOKEN;
        // With no tool left to call, an answer is the only way on.
        let answer_allowed = answer_allowed || offered.is_empty();
        let mut request = self.plain_request(messages, reasoning_tokens + self.config.action_tokens);
        request.grammar = self
            .constrained()
            .then(|| reply_grammar(offered, reasoning_chars, &self.config.reasoning_opener, answer_allowed));
        request
    }

    /// A greedy request of `messages` with no constraint.
    fn plain_request(&self, messages: &[ChatMessage], max_tokens: u32) -> CompletionRequest {
        CompletionRequest {
            messages: messages.to_vec(),
            max_tokens,
            temperature: None,
            stop: Vec::new(),
            json_schema: None,
            grammar: None,
            timeout: self.config.model_timeout,
        }
    }

    /// Runs a task. `on_event` sees every transcript event as it happens (for streaming
    /// progress); the same events go to the transcript file, both with secrets redacted.
    pub async fn run(
        &self,
        task: &str,
        options: &RunOptions,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<RunOutcome> {
        let started = Instant::now();
        let run_id = new_run_id();
        let transcript = match &self.config.transcript_dir {
            Some(dir) => Some(TranscriptWriter::create(dir, &run_id)?),
            None => None,
        };
        let transcript_path = transcript.as_ref().map(|t| t.path().to_path_buf());
        let redactor = Redactor::from_env().with_values(self.config.redact.iter().cloned());
        let mut state = RunState { transcript, on_event, redactor };
        state.emit(Event::Start {
            schema_version: TRANSCRIPT_SCHEMA_VERSION,
            run_id: run_id.clone(),
            time: skill_core::time::rfc3339(skill_core::time::now_unix()),
            task: task.to_string(),
            student: self.student.model_id().to_string(),
            max_steps: self.config.max_steps,
            tools: self.tools.names(),
            settings: Some(self.run_settings()),
        })?;

        // Retrieval.
        // Skills and notes are asked for separately so neither crowds the other out.
        let mut hits = Vec::new();
        if let Some(r) = &self.retriever {
            for (scope, limit) in
                [(Scope::Skills, self.config.catalog_size.max(5)), (Scope::Notes, self.config.notes_in_prompt.max(3))]
            {
                if scope == Scope::Skills && options.no_skills {
                    continue;
                }
                let found = r
                    .retrieve(&RetrievalQuery { text: task.to_string(), limit, scope })
                    .await
                    .map_err(|e| Error::Retrieval(e.to_string()))?;
                hits.extend(found);
            }
        }
        let skill_hits: Vec<_> =
            hits.iter().filter_map(|h| if let Hit::Skill(s) = h { Some(s) } else { None }).collect();
        let note_hits: Vec<_> = hits.iter().filter_map(|h| if let Hit::Note(n) = h { Some(n) } else { None }).collect();
        state.emit(Event::Retrieved {
            skills: skill_hits.iter().map(|s| RetrievedSkill { name: s.name.clone(), score: s.score }).collect(),
            notes: note_hits
                .iter()
                .map(|n| RetrievedNote {
                    source: format!("{}:{}-{}", n.path.display(), n.line_start, n.line_end),
                    heading_path: n.heading_path.clone(),
                    score: n.score,
                })
                .collect(),
        })?;
        let catalog: Vec<CatalogEntry> = skill_hits
            .iter()
            .take(self.config.catalog_size)
            .map(|s| CatalogEntry { name: s.name.clone(), description: s.description.clone() })
            .collect();
        let notes: Vec<NoteExcerpt> = note_hits
            .iter()
            .take(self.config.notes_in_prompt)
            .map(|n| NoteExcerpt {
                source: format!(
                    "{}:{}-{} {}",
                    n.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                    n.line_start,
                    n.line_end,
                    n.heading_path.join(" > ")
                ),
                text: n.snippet.clone(),
            })
            .collect();

        // Direct activation: asked for, or retrieval is confident (a high enough score, well
        // ahead of the runner-up).
        let mut skills = SkillState { active: None, permissions: Permissions::any() };
        let direct = match (&options.skill, skill_hits.first()) {
            (Some(name), _) => Some((name.clone(), "requested")),
            (None, Some(top)) => {
                let ahead =
                    skill_hits.get(1).is_none_or(|second| top.score >= self.config.confident_ratio * second.score);
                (ahead && top.score >= self.config.confident_min_score).then(|| (top.name.clone(), "confident"))
            }
            (None, None) => None,
        };
        if let Some((name, reason)) = direct {
            let (skill, hash) = self.load_skill(&name, &hits)?;
            self.activate(&mut skills, skill, 0, reason, hash, &mut state)?;
        }

        // The system prompt is written once, so the student's prefix cache keeps it across
        // steps; a skill activated later arrives as an observation.
        let offered_at_start = self.offered(&skills, &catalog);
        let system = system_prompt(&offered_at_start, &catalog, skills.active.as_ref(), self.config.skill_placement);
        let first =
            task_message(task, &notes, skills.active.as_ref(), self.config.skill_placement, &[], &offered_at_start);
        state.emit(Event::Prompt { system: system.clone(), user: first.clone() })?;
        let mut conversation = Conversation::new(system, task, &notes, self.config.history);
        let activated_at_start = skills.active.is_some();
        let mut totals = (0u64, 0u64);
        // The last call made: small models given greedy decoding tend to repeat their previous
        // call once its result comes back.
        let mut last_call: Option<(String, serde_json::Value)> = None;
        // Whether a tool other than activate_skill has been called since the skill became
        // active (see `AgentConfig::act_before_answer`).
        let mut acted = false;
        // Answers refused for coming before that call: after MAX_EARLY_ANSWERS the gate gives
        // way, so a model that will not call a tool still ends with its answer.
        let mut early_answers = 0usize;
        // A model call whose failure ends the run (a model error after `$steps` steps).
        macro_rules! finish_on_error {
            ($call:expr, $steps:expr) => {
                match $call? {
                    Ok(c) => c,
                    Err(error) => {
                        return self.finish_model_error(
                            $steps,
                            error,
                            totals,
                            &skills,
                            started,
                            &mut state,
                            transcript_path,
                        );
                    }
                }
            };
        }
        for step in 1..=self.config.max_steps {
            let offered = self.offered(&skills, &catalog);
            // A skill activated mid-run by the model keeps its steps where they arrived: in the
            // activate_skill result.
            let shown = if activated_at_start { skills.active.as_ref() } else { None };
            let messages = conversation.messages(shown, self.config.skill_placement, &offered);
            let answer_allowed = self.answer_allowed(&skills, &offered, acted || early_answers >= MAX_EARLY_ANSWERS);
            let step_reply = finish_on_error!(
                self.reply_call(step, false, &messages, &offered, answer_allowed, &mut totals, &mut state).await,
                step - 1
            );
            let mut parsed = step_reply.parse();
            let completion = &step_reply.completion;
            if !answer_allowed && matches!(&parsed, Ok(Reply { action: Action::Final(_), .. })) {
                parsed = step_reply.first_call().ok_or_else(|| {
                    "the reply has no `Action:` line, and no answer is taken before the skill's first tool call"
                        .to_string()
                });
            }
            let mut reply_text = completion.text.clone();
            // Where a repeated call is looked past (below): from the reply's action part on.
            let mut action_from = step_reply.action_from;
            if let Err(error) = &parsed {
                // One correction turn: the action alone, with no room for more reasoning.
                let cut = if completion.finish_reason == "length" {
                    " (the reply was cut off at its token limit)"
                } else {
                    ""
                };
                let mut retry = messages.clone();
                retry.push(ChatMessage::new(Role::Assistant, completion.text.clone()));
                retry.push(ChatMessage::new(
                    Role::User,
                    correction_message(&format!("{error}{cut}"), !offered.is_empty(), answer_allowed),
                ));
                let request = self.request(&retry, &offered, 0, answer_allowed);
                let correction =
                    finish_on_error!(self.model_call(step, true, &request, &mut totals, &mut state).await, step);
                parsed =
                    parse_reply(&correction.text).map_err(|e| format!("{error}{cut}; after a correction request: {e}"));
                if !answer_allowed
                    && matches!(&parsed, Ok(Reply { action: Action::Final(_), .. }))
                    && let Some(call) = parse_first_call(&correction.text)
                {
                    parsed = Ok(call);
                }
                let kept = completion.text.trim_end();
                // An action part of blanks alone is trimmed away with the reasoning's last ones.
                action_from = action_from.min(kept.len());
                reply_text = format!("{kept}\n{}", correction.text.trim());
            }
            // A repeat of the call before: small models restate it and go on in the same reply.
            // Take what follows; with a grammar (which stopped at the restatement), ask once more
            // with that tool's `Action:` left as plain text, so the model can go on past it.
            if let (Ok(reply), Some((tool, args))) = (&parsed, &last_call)
                && reply.action == (Action::Call { tool: tool.clone(), args: args.clone() })
            {
                if let Some(next) = parse_reply_other_than(&reply_text[action_from..], &reply.action) {
                    parsed = Ok(next);
                } else if self.constrained() {
                    let narrowed: Vec<ToolSpec> = offered.iter().filter(|s| &s.name != tool).cloned().collect();
                    let again = finish_on_error!(
                        self.reply_call(step, true, &messages, &narrowed, answer_allowed, &mut totals, &mut state)
                            .await,
                        step
                    );
                    if let Some(next) = again.other_than(&reply.action) {
                        parsed = Ok(next);
                        reply_text = again.completion.text.clone();
                    }
                }
            }
            let (action_line, observation) = match parsed {
                Err(error) => {
                    state.emit(Event::InvalidReply { step, error: error.clone() })?;
                    (
                        None,
                        format!(
                            "Your reply could not be used: {error}. Think in plain text, then end with one line: \
                             `Answer: <the answer alone>` or `Action: <tool name> <JSON arguments>`."
                        ),
                    )
                }
                Ok(reply) => match reply.action {
                    // A free-text backend answered before the skill's first tool call.
                    Action::Final(_) if !answer_allowed => {
                        early_answers += 1;
                        let tools: Vec<&str> =
                            offered.iter().filter(|s| s.name != ACTIVATE_SKILL).map(|s| s.name.as_str()).collect();
                        let error =
                            format!("an answer before any tool the skill names was called ({})", tools.join(", "));
                        state.emit(Event::InvalidReply { step, error })?;
                        (
                            None,
                            format!(
                                "Do not answer yet: follow the steps and call the tool the first step names (one of: \
                                 {}), with an `Action:` line. Answer when its result is back.",
                                tools.join(", ")
                            ),
                        )
                    }
                    Action::Final(answer) => {
                        let answer = state.redactor.redact(&answer).into_owned();
                        state.emit(Event::Finish {
                            outcome: Outcome::Answered,
                            answer: Some(answer.clone()),
                            steps: step,
                            prompt_tokens: totals.0,
                            completion_tokens: totals.1,
                            elapsed_ms: started.elapsed().as_millis() as u64,
                            error: None,
                        })?;
                        return Ok(RunOutcome {
                            outcome: Outcome::Answered,
                            answer: Some(answer),
                            steps: step,
                            skill: skills.active.map(|a| a.name),
                            transcript: transcript_path,
                        });
                    }
                    Action::Call { tool, args } => {
                        let line = format!("Action: {tool} {args}");
                        let call = (tool.clone(), args.clone());
                        let observation = if last_call.as_ref() == Some(&call) {
                            state.emit(Event::InvalidReply {
                                step,
                                error: format!("the same `{tool}` call as in the step before"),
                            })?;
                            format!(
                                "You already called {tool} with these arguments and have its result above. Do not \
                                 call it again: use that result for the next step, or give the Answer."
                            )
                        } else {
                            last_call = Some(call);
                            if tool != ACTIVATE_SKILL
                                && skills.active.is_some()
                                && skills.permissions.allows_tool(&tool)
                                && placeholder_argument(&args).is_none()
                            {
                                acted = true;
                            }
                            self.call_tool(step, &tool, args, &hits, &catalog, &mut skills, &mut state).await?
                        };
                        (Some(line), observation)
                    }
                },
            };
            conversation.record(&reply_text, action_line, observation);
        }
        let steps = self.config.max_steps;
        state.emit(Event::Finish {
            outcome: Outcome::StepBudgetExhausted,
            answer: None,
            steps,
            prompt_tokens: totals.0,
            completion_tokens: totals.1,
            elapsed_ms: started.elapsed().as_millis() as u64,
            error: None,
        })?;
        Ok(RunOutcome {
            outcome: Outcome::StepBudgetExhausted,
            answer: None,
            steps,
            skill: skills.active.map(|a| a.name),
            transcript: transcript_path,
        })
    }

    /// One model call and its event; the backend's error as `Err` inside `Ok`.
    async fn model_call(
        &self,
        step: usize,
        correction: bool,
        request: &CompletionRequest,
        totals: &mut (u64, u64),
        state: &mut RunState<'_>,
    ) -> Result<std::result::Result<Completion, String>> {
        let completion = match self.student.complete(request).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e.to_string())),
        };
        totals.0 += u64::from(completion.usage.prompt_tokens);
        totals.1 += u64::from(completion.usage.completion_tokens);
        state.emit(Event::ModelCall {
            step,
            correction,
            prompt_tokens: completion.usage.prompt_tokens,
            completion_tokens: completion.usage.completion_tokens,
            elapsed_ms: completion.elapsed.as_millis() as u64,
            finish_reason: completion.finish_reason.clone(),
            output: completion.text.clone(),
        })?;
        Ok(Ok(completion))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_model_error(
        &self,
        steps: usize,
        error: String,
        totals: (u64, u64),
        skills: &SkillState,
        started: Instant,
        state: &mut RunState<'_>,
        transcript: Option<PathBuf>,
    ) -> Result<RunOutcome> {
        state.emit(Event::Finish {
            outcome: Outcome::ModelError,
            answer: None,
            steps,
            prompt_tokens: totals.0,
            completion_tokens: totals.1,
            elapsed_ms: started.elapsed().as_millis() as u64,
            error: Some(error),
        })?;
        Ok(RunOutcome {
            outcome: Outcome::ModelError,
            answer: None,
            steps,
            skill: skills.active.as_ref().map(|a| a.name.clone()),
            transcript,
        })
    }

    /// Makes `skill` the active one and narrows the permissions by its `allowed-tools`
    /// (never widens them: a restricted skill cannot leave its limits by activating another).
    fn activate(
        &self,
        skills: &mut SkillState,
        skill: ActiveSkill,
        step: usize,
        reason: &str,
        content_hash: String,
        state: &mut RunState<'_>,
    ) -> Result<()> {
        let (permissions, warnings) = skills.permissions.narrowed_by(skill.allowed_tools.as_deref());
        state.emit(Event::SkillActivated {
            step,
            name: skill.name.clone(),
            reason: reason.into(),
            content_hash,
            warnings,
        })?;
        skills.permissions = permissions;
        skills.active = Some(skill);
        Ok(())
    }

    /// Executes one tool call and returns the observation for the model. Every failure is an
    /// observation, never an error of the run.
    #[allow(clippy::too_many_arguments)]
    async fn call_tool(
        &self,
        step: usize,
        tool: &str,
        args: serde_json::Value,
        hits: &[Hit],
        catalog: &[CatalogEntry],
        skills: &mut SkillState,
        state: &mut RunState<'_>,
    ) -> Result<String> {
        let started = Instant::now();
        let max_chars = self.config.max_observation_chars;
        let record = |state: &mut RunState<'_>, ok: bool, denied: bool, output: String| -> Result<String> {
            // Redact before cutting: a secret that straddles the cut would otherwise leave
            // its first half behind.
            let output = truncate(&state.redactor.redact(&output), max_chars);
            state.emit(Event::ToolCall {
                step,
                tool: tool.to_string(),
                arguments: args.clone(),
                ok,
                denied,
                output: output.clone(),
                elapsed_ms: started.elapsed().as_millis() as u64,
            })?;
            Ok(if ok { format!("Result of {tool}:\n{output}") } else { format!("Error from {tool}: {output}") })
        };

        if tool == ACTIVATE_SKILL {
            if let Some(current) = &skills.active {
                return record(
                    state,
                    false,
                    true,
                    format!("the skill `{}` is already active; follow its steps", current.name),
                );
            }
            let name = args.get("name").and_then(|v| v.as_str()).unwrap_or("").to_string();
            if !catalog.iter().any(|c| c.name == name) {
                let names: Vec<&str> = catalog.iter().map(|c| c.name.as_str()).collect();
                return record(
                    state,
                    false,
                    false,
                    format!("no skill `{name}` in the catalog (choose one of: {})", names.join(", ")),
                );
            }
            return match self.load_skill(&name, hits) {
                Ok((skill, hash)) => {
                    let body = skill.body.clone();
                    self.activate(skills, skill, step, "tool", hash, state)?;
                    record(
                        state,
                        true,
                        false,
                        format!(
                            "Skill `{name}` activated. Follow these steps. Where a step calls a tool, write that \
                             Action line and stop; go on with the next step when its result comes back.\n{}",
                            body.trim()
                        ),
                    )
                }
                Err(e) => record(state, false, false, e.to_string()),
            };
        }
        if let Err(reason) = skills.permissions.check(tool, &args) {
            let skill = skills.active.as_ref().map(|s| s.name.as_str()).unwrap_or("active");
            return record(state, false, true, format!("the skill `{skill}` does not allow this: {reason}"));
        }
        if let Some(key) = placeholder_argument(&args) {
            let value = args[key.as_str()].as_str().unwrap_or_default().to_string();
            return record(
                state,
                false,
                false,
                format!(
                    "`{key}` is `{value}`, a placeholder, so {tool} was not called: call it again with the real \
                     value (from the task or the steps)"
                ),
            );
        }
        let Some(handle) = self.tools.get(tool) else {
            return record(
                state,
                false,
                false,
                format!("there is no tool `{tool}` (available: {})", self.tools.names().join(", ")),
            );
        };
        let limit = self.config.tool_timeouts.get(tool).copied().unwrap_or(self.config.tool_timeout);
        match tokio::time::timeout(limit, handle.call(args.clone())).await {
            Err(_) => record(state, false, false, format!("timed out after {limit:.0?}")),
            Ok(Err(e)) => record(state, false, false, e.to_string()),
            Ok(Ok(out)) => record(state, !out.is_error, false, out.content),
        }
    }
}

/// The first argument whose value is a placeholder copied from the prompt's examples
/// (`{"path": "..."}`, `<file>`) rather than a value: the small student copies them.
fn placeholder_argument(args: &serde_json::Value) -> Option<String> {
    let fields = args.as_object()?;
    fields.iter().find_map(|(key, value)| skill_core::is_placeholder_value(value.as_str()?).then(|| key.clone()))
}

fn truncate(text: &str, max_chars: usize) -> String {
    let count = text.chars().count();
    if count <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars).collect();
    format!("{kept}{}{} more characters cut]", crate::transcript::CUT_MARK, count - max_chars)
}

fn new_run_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let stamp = skill_core::time::rfc3339(now.as_secs() as i64).replace([':', '-'], "");
    format!("{}-{:06x}{:04x}", stamp.trim_end_matches('Z'), now.subsec_micros(), std::process::id() & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::ends_at_a_line_start;

    #[test]
    fn the_action_continues_a_reply_only_at_a_line_start() {
        for text in ["", "Let's think.\n", "x\n   ", "x\n\t", "x\n> "] {
            assert!(ends_at_a_line_start(text), "{text:?}");
        }
        // A marker after these would not start a line the parser reads (`1. Action:`, text
        // ending in a backtick), or would double a bullet (`- - Action:`).
        for text in ["so the word is", "1. ", "x\n1. **List the files**: `", "x\n   - ", "x\n* ", "x\n**"] {
            assert!(!ends_at_a_line_start(text), "{text:?}");
        }
    }
}
