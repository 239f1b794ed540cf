//! The loop itself: retrieve, then Plan -> Tool Call -> Observe -> Refine until a final
//! answer or the step budget.

use crate::protocol::{
    ACTIVATE_SKILL, Action, ActiveSkill, CatalogEntry, NoteExcerpt, activate_skill_spec, parse_reply, reply_schema,
    system_prompt,
};
use crate::tools::ToolRegistry;
use crate::transcript::{Event, Outcome, RetrievedNote, RetrievedSkill, TRANSCRIPT_SCHEMA_VERSION, TranscriptWriter};
use crate::{Error, Result};
use skill_core::{
    ChatMessage, CompletionRequest, Hit, RetrievalQuery, Retriever, Role, Scope, Skill, SkillLibrary, Student, ToolSpec,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Model calls allowed before the run stops without an answer.
    pub max_steps: usize,
    /// Token limit of each model call.
    pub max_tokens: u32,
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
    /// The top skill is activated without asking the model when its score is at least this
    /// many times the runner-up's (or it is the only hit).
    pub confident_ratio: f32,
    /// Where transcripts go (`None`: not written).
    pub transcript_dir: Option<PathBuf>,
    /// Strings never written to the transcript (API keys the caller holds), in addition to
    /// secret-looking environment variables.
    pub redact: Vec<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_steps: 8,
            max_tokens: 256,
            model_timeout: Duration::from_secs(180),
            tool_timeout: Duration::from_secs(30),
            tool_timeouts: std::collections::BTreeMap::new(),
            max_observation_chars: 2_000,
            catalog_size: 3,
            notes_in_prompt: 2,
            confident_ratio: 1.5,
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

struct RunState<'a> {
    transcript: Option<TranscriptWriter>,
    on_event: &'a mut (dyn FnMut(&Event) + Send),
}

impl RunState<'_> {
    fn emit(&mut self, event: Event) -> Result<()> {
        (self.on_event)(&event);
        if let Some(t) = &mut self.transcript {
            t.write(&event)?;
        }
        Ok(())
    }
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

    /// Runs a task. `on_event` sees every transcript event as it happens (for streaming
    /// progress); the same events go to the transcript file.
    pub async fn run(
        &self,
        task: &str,
        options: &RunOptions,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<RunOutcome> {
        let started = Instant::now();
        let run_id = new_run_id();
        let transcript = match &self.config.transcript_dir {
            Some(dir) => Some(TranscriptWriter::create(dir, &run_id, &self.config.redact)?),
            None => None,
        };
        let transcript_path = transcript.as_ref().map(|t| t.path().to_path_buf());
        let mut state = RunState { transcript, on_event };
        state.emit(Event::Start {
            schema_version: TRANSCRIPT_SCHEMA_VERSION,
            run_id: run_id.clone(),
            time: skill_core::time::rfc3339(skill_core::time::now_unix()),
            task: task.to_string(),
            student: self.student.model_id().to_string(),
            max_steps: self.config.max_steps,
            tools: self.tools.names(),
        })?;

        // Retrieval.
        // Skills and notes are asked for separately so neither crowds the other out.
        let mut hits = Vec::new();
        if let Some(r) = &self.retriever {
            for (scope, limit) in
                [(Scope::Skills, self.config.catalog_size.max(5)), (Scope::Notes, self.config.notes_in_prompt.max(3))]
            {
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

        // Direct activation: asked for, or retrieval is confident.
        let mut active: Option<ActiveSkill> = None;
        let direct = match (&options.skill, skill_hits.first()) {
            (Some(name), _) => Some((name.clone(), "requested")),
            (None, Some(top)) => {
                let confident =
                    skill_hits.get(1).is_none_or(|second| top.score >= self.config.confident_ratio * second.score);
                confident.then(|| (top.name.clone(), "confident"))
            }
            (None, None) => None,
        };
        if let Some((name, reason)) = direct {
            let (skill, hash) = self.load_skill(&name, &hits)?;
            state.emit(Event::SkillActivated {
                step: 0,
                name: name.clone(),
                reason: reason.into(),
                content_hash: hash,
            })?;
            active = Some(skill);
        }

        let mut messages =
            vec![ChatMessage::new(Role::System, String::new()), ChatMessage::new(Role::User, task.to_string())];
        let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);
        for step in 1..=self.config.max_steps {
            let mut specs: Vec<ToolSpec> = self.tools.specs();
            if active.is_none() && !catalog.is_empty() {
                specs.push(activate_skill_spec(&catalog));
            }
            messages[0].content = system_prompt(&specs, &catalog, &notes, active.as_ref());
            let request = CompletionRequest {
                messages: messages.clone(),
                max_tokens: self.config.max_tokens,
                temperature: None,
                stop: Vec::new(),
                json_schema: Some(reply_schema(&specs)),
                timeout: self.config.model_timeout,
            };
            let completion = match self.student.complete(&request).await {
                Ok(c) => c,
                Err(e) => {
                    let error = e.to_string();
                    state.emit(Event::Finish {
                        outcome: Outcome::ModelError,
                        answer: None,
                        steps: step - 1,
                        prompt_tokens,
                        completion_tokens,
                        elapsed_ms: started.elapsed().as_millis() as u64,
                        error: Some(error),
                    })?;
                    return Ok(RunOutcome {
                        outcome: Outcome::ModelError,
                        answer: None,
                        steps: step - 1,
                        skill: active.map(|a| a.name),
                        transcript: transcript_path,
                    });
                }
            };
            prompt_tokens += u64::from(completion.usage.prompt_tokens);
            completion_tokens += u64::from(completion.usage.completion_tokens);
            state.emit(Event::ModelCall {
                step,
                prompt_tokens: completion.usage.prompt_tokens,
                completion_tokens: completion.usage.completion_tokens,
                elapsed_ms: completion.elapsed.as_millis() as u64,
                finish_reason: completion.finish_reason.clone(),
                output: completion.text.clone(),
            })?;
            messages.push(ChatMessage::new(Role::Assistant, completion.text.clone()));

            let observation = match parse_reply(&completion.text) {
                Err(error) => {
                    let hint = if completion.finish_reason == "length" {
                        " (the reply was cut off at the token limit: keep the thought short)"
                    } else {
                        ""
                    };
                    state.emit(Event::InvalidReply { step, error: format!("{error}{hint}") })?;
                    format!("Your reply could not be used: {error}{hint}. Reply with one JSON object as described.")
                }
                Ok(Action::Final(answer)) => {
                    state.emit(Event::Finish {
                        outcome: Outcome::Answered,
                        answer: Some(answer.clone()),
                        steps: step,
                        prompt_tokens,
                        completion_tokens,
                        elapsed_ms: started.elapsed().as_millis() as u64,
                        error: None,
                    })?;
                    return Ok(RunOutcome {
                        outcome: Outcome::Answered,
                        answer: Some(answer),
                        steps: step,
                        skill: active.map(|a| a.name),
                        transcript: transcript_path,
                    });
                }
                Ok(Action::Call { tool, args }) => {
                    self.call_tool(step, &tool, args, &hits, &catalog, &mut active, &mut state).await?
                }
            };
            messages.push(ChatMessage::new(Role::User, observation));
        }
        let steps = self.config.max_steps;
        state.emit(Event::Finish {
            outcome: Outcome::StepBudgetExhausted,
            answer: None,
            steps,
            prompt_tokens,
            completion_tokens,
            elapsed_ms: started.elapsed().as_millis() as u64,
            error: None,
        })?;
        Ok(RunOutcome {
            outcome: Outcome::StepBudgetExhausted,
            answer: None,
            steps,
            skill: active.map(|a| a.name),
            transcript: transcript_path,
        })
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
        active: &mut Option<ActiveSkill>,
        state: &mut RunState<'_>,
    ) -> Result<String> {
        let started = Instant::now();
        let record = |state: &mut RunState<'_>, ok: bool, denied: bool, output: String| -> Result<String> {
            let output = truncate(&output, self.config.max_observation_chars);
            state.emit(Event::ToolCall {
                step,
                tool: tool.to_string(),
                arguments: args.clone(),
                ok,
                denied,
                output: output.clone(),
                elapsed_ms: started.elapsed().as_millis() as u64,
            })?;
            let label = if ok { "Observation" } else { "Error" };
            Ok(format!("{label} from {tool}: {output}"))
        };

        if tool == ACTIVATE_SKILL {
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
                    state.emit(Event::SkillActivated {
                        step,
                        name: name.clone(),
                        reason: "tool".into(),
                        content_hash: hash,
                    })?;
                    let body = skill.body.clone();
                    *active = Some(skill);
                    record(
                        state,
                        true,
                        false,
                        format!("Skill `{name}` activated. Follow these instructions:\n{}", body.trim()),
                    )
                }
                Err(e) => record(state, false, false, e.to_string()),
            };
        }
        if let Some(skill) = active.as_ref()
            && let Some(allowed) = &skill.allowed_tools
            && !allowed.iter().any(|a| a == tool || a.split('(').next() == Some(tool))
        {
            return record(
                state,
                false,
                true,
                format!("the skill `{}` does not allow `{tool}` (allowed: {})", skill.name, allowed.join(", ")),
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

fn truncate(text: &str, max_chars: usize) -> String {
    let count = text.chars().count();
    if count <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars).collect();
    format!("{kept}\n[... {} more characters cut]", count - max_chars)
}

fn new_run_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let stamp = skill_core::time::rfc3339(now.as_secs() as i64).replace([':', '-'], "");
    format!("{}-{:06x}{:04x}", stamp.trim_end_matches('Z'), now.subsec_micros(), std::process::id() & 0xffff)
}
