//! Running a suite's cases against a student, with or without a skill, and grading them.
//!
//! Cases go to the student in chunks of as many as it decodes together
//! ([`Student::max_parallel_requests`]), each chunk's answer cases as one
//! [`Student::complete_batch`]: llama.cpp decodes them as one shared-prefix batch and takes
//! the next chunk in as sequences finish, while mistral.rs on a CPU keeps the shared skill
//! prefix in its prefix cache only when cases run one after another (concurrent requests
//! were 11x slower). [`RunnerConfig::parallelism`] overrides the chunk size (a remote
//! endpoint that batches). Results are cached on disk by (model, skill text, case, runner
//! settings), so an unchanged case is never run twice, and every case's prompt, output and
//! grades are kept as its transcript.

use crate::grade::{Answer, GradeOutcome, ToolCallRecord};
use crate::stats::Rate;
use crate::suite::{CaseId, CaseMode, EvalCase, EvalSuite, Split};
use crate::{Error, Result};
use agent_loop::tools::{ToolRegistry, WorkspaceAccess, builtin_tools};
use agent_loop::{Agent, AgentConfig, Event, RunOptions};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use skill_core::fsutil::atomic_write;
use skill_core::{ChatMessage, CompletionRequest, Role, SkillLibrary, Student, Teacher, Usage};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bumped whenever prompts or grading change, so old cached results are not reused.
const RUNNER_VERSION: u32 = 1;

/// The skill under test: its name and full `SKILL.md` text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillText {
    /// The skill's name.
    pub name: String,
    /// The whole `SKILL.md`.
    pub markdown: String,
}

impl SkillText {
    /// The skill's content hash (blake3 of the text, as the version history records it).
    pub fn hash(&self) -> String {
        skill_core::skill::content_hash(&self.markdown)
    }

    /// The instructions part (after the frontmatter); the whole text if it has none.
    pub fn body(&self) -> String {
        match skill_core::Skill::parse(&self.markdown, None) {
            Ok(skill) => skill.body().trim().to_string(),
            Err(_) => self.markdown.trim().to_string(),
        }
    }
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Token limit per answer.
    pub max_tokens: u32,
    /// Wall-clock limit per answer (a timeout fails the case, the run goes on).
    pub timeout: Duration,
    /// Where results are cached (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Where each case's transcript is written (`None`: not written).
    pub transcript_dir: Option<PathBuf>,
    /// Cases in flight at once; 0: as many as the student decodes together
    /// ([`Student::max_parallel_requests`]).
    pub parallelism: usize,
    /// Steps allowed for agent cases.
    pub agent_max_steps: usize,
    /// How agent cases' replies are constrained.
    pub agent_constraint: agent_loop::ReplyConstraint,
    /// Where agent cases put the skill's steps.
    pub agent_placement: agent_loop::protocol::SkillPlacement,
    /// How agent cases show earlier steps to the model.
    pub agent_history: agent_loop::History,
    /// Folder the cases' `files` are relative to (the skill folder).
    pub files_root: Option<PathBuf>,
    /// Agent cases with a skill run with the whole library instead: the skill is not
    /// activated up front but found, as `skd run` finds it (`None`: activated up front).
    pub agent_library: Option<AgentLibrary>,
}

/// The skill library and notes an agent case searches, as `skd run` does: retrieval offers
/// a catalog of skills (or activates a confident match) and note excerpts, and the model may
/// search the notes (`search_notes`; the other tools are the eval's own file tools, with
/// their default timeouts, no shell or MCP servers). Whatever skill text is under test, what
/// runs is the skill as the library holds it, found by the task's words. Results are not
/// cached: the library and notes are not part of the cache key.
#[derive(Clone)]
pub struct AgentLibrary {
    /// Search over the library's skills and the notes.
    pub retriever: Arc<dyn skill_core::Retriever>,
    /// The skills the catalog names.
    pub library: SkillLibrary,
    /// Skills shown in the catalog.
    pub catalog_size: usize,
    /// Note excerpts shown up front.
    pub notes_in_prompt: usize,
    /// When retrieval activates its top skill without asking the model
    /// ([`AgentConfig::confident_ratio`], [`AgentConfig::confident_min_score`]).
    pub confident_ratio: f32,
    /// See `confident_ratio`.
    pub confident_min_score: f32,
}

impl std::fmt::Debug for AgentLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentLibrary")
            .field("library", &self.library)
            .field("catalog_size", &self.catalog_size)
            .field("notes_in_prompt", &self.notes_in_prompt)
            .field("confident_ratio", &self.confident_ratio)
            .field("confident_min_score", &self.confident_min_score)
            .finish_non_exhaustive()
    }
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            max_tokens: 384,
            timeout: Duration::from_secs(300),
            cache_dir: None,
            transcript_dir: None,
            parallelism: 0,
            agent_max_steps: 8,
            agent_constraint: Default::default(),
            agent_placement: Default::default(),
            agent_history: Default::default(),
            files_root: None,
            agent_library: None,
        }
    }
}

/// One graded case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The case.
    pub id: CaseId,
    /// Its split.
    pub split: Split,
    /// All graders passed (and nothing failed to run).
    pub passed: bool,
    /// Each grader's verdict.
    pub grades: Vec<GradeOutcome>,
    /// The student's output.
    pub output: String,
    /// What the graders compared.
    pub extracted: String,
    /// Tool calls (agent cases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallRecord>,
    /// Every event of the agent run (agent cases): the prompt, each reply with its
    /// reasoning, each tool result, how it ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// Tokens of the student's calls.
    pub usage: Usage,
    /// Wall time of the student's calls, milliseconds.
    pub elapsed_ms: u64,
    /// Why the case could not be run or graded (student timeout, judge failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Taken from the cache rather than run now.
    #[serde(default)]
    pub cached: bool,
}

/// The results of one configuration (a skill version, or no skill) on a set of cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteRun {
    /// `with skill v3`, `no skill`, ...
    pub label: String,
    /// The student.
    pub model: String,
    /// Hash of the skill text (`None` for no skill).
    pub skill_hash: Option<String>,
    /// Per case, in suite order.
    pub results: Vec<CaseResult>,
}

impl SuiteRun {
    /// Pass rate over all results.
    pub fn rate(&self) -> Rate {
        Rate::wilson(self.results.iter().filter(|r| r.passed).count(), self.results.len())
    }

    /// Pass rate over one split.
    pub fn rate_on(&self, split: Split) -> Rate {
        let of: Vec<&CaseResult> = self.results.iter().filter(|r| r.split == split).collect();
        Rate::wilson(of.iter().filter(|r| r.passed).count(), of.len())
    }

    /// Mean tokens (prompt + completion) per case.
    pub fn tokens_per_case(&self) -> f64 {
        mean(self.results.iter().map(|r| f64::from(r.usage.prompt_tokens + r.usage.completion_tokens)))
    }

    /// Mean completion tokens per case (what the skill makes the student write).
    pub fn completion_tokens_per_case(&self) -> f64 {
        mean(self.results.iter().map(|r| f64::from(r.usage.completion_tokens)))
    }

    /// Mean seconds per case.
    pub fn seconds_per_case(&self) -> f64 {
        mean(self.results.iter().map(|r| r.elapsed_ms as f64 / 1000.0))
    }

    /// Cases that could not be run or graded.
    pub fn errors(&self) -> usize {
        self.results.iter().filter(|r| r.error.is_some()).count()
    }

    /// Passed flags in result order (for paired lift).
    pub fn passed_flags(&self) -> Vec<bool> {
        self.results.iter().map(|r| r.passed).collect()
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// The system prompt: the skill first (so every case shares it as a cacheable prefix), then
/// the suite's instructions.
pub fn system_prompt(skill: Option<&SkillText>, instructions: Option<&str>) -> String {
    let mut system = match skill {
        Some(skill) => format!(
            "Follow this skill to do the task.\n\n<skill name=\"{}\">\n{}\n</skill>\n",
            skill.name,
            skill.body()
        ),
        None => "Do the task.\n".to_string(),
    };
    if let Some(extra) = instructions.filter(|s| !s.trim().is_empty()) {
        system.push('\n');
        system.push_str(extra.trim());
        system.push('\n');
    }
    system
}

/// Picks the answer out of an output with the suite's `answer_pattern` (last match, first
/// capture group); the trimmed output when there is no pattern or no match.
pub fn extract_answer(output: &str, pattern: Option<&regex::Regex>) -> String {
    if let Some(re) = pattern
        && let Some(caps) = re.captures_iter(output).last()
    {
        let m = caps.get(1).or_else(|| caps.get(0));
        if let Some(m) = m {
            return m.as_str().trim().to_string();
        }
    }
    output.trim().to_string()
}

/// What is evaluated and how: the student, the judge for rubrics, the suite and settings.
pub struct Evaluator<'a> {
    /// The student under test.
    pub student: Arc<dyn Student>,
    /// Grades rubric cases (`None`: a suite with rubrics is refused up front).
    pub judge: Option<&'a dyn Teacher>,
    /// The suite the cases come from (answer pattern, instructions).
    pub suite: &'a EvalSuite,
    /// Runner settings.
    pub config: &'a RunnerConfig,
}

impl Evaluator<'_> {
    /// Runs `cases` with `skill` (or none). `on_case` sees each result as it is ready.
    pub async fn run(
        &self,
        cases: &[&EvalCase],
        skill: Option<&SkillText>,
        label: &str,
        on_case: &mut (dyn FnMut(&CaseResult) + Send),
    ) -> Result<SuiteRun> {
        let pattern = self
            .suite
            .answer_pattern
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| Error::other(format!("answer_pattern: {e}")))?;
        if self.judge.is_none()
            && let Some(case) = cases.iter().find(|c| c.effective_graders().iter().any(|g| g.needs_teacher()))
        {
            return Err(Error::Grader {
                case: case.id.to_string(),
                message: "a rubric grader needs a teacher: pass --teacher, or set SKD_TEACHER, OPENAI_MODEL or `teacher` in the config"
                    .into(),
            });
        }
        let system = system_prompt(skill, self.suite.instructions.as_deref());
        let transcript_dir = self.config.transcript_dir.as_ref().map(|d| d.join(sanitize(label)));
        let ctx = CaseContext {
            transcript_dir: transcript_dir.as_deref(),
            student: self.student.clone(),
            judge: self.judge,
            suite: self.suite,
            skill,
            system: &system,
            pattern: pattern.as_ref(),
            config: self.config,
        };
        let in_flight = match self.config.parallelism {
            0 => self.student.max_parallel_requests(),
            n => n,
        };
        let in_flight = in_flight.max(1);
        // A backend that decodes requests together gets the next chunk while it still
        // decodes this one, so its sequences refill as answers finish instead of waiting
        // for the slowest case of each chunk. One that answers one at a time gets one.
        let ahead = if in_flight > 1 { 2 } else { 1 };
        let mut chunks =
            futures::stream::iter(cases.chunks(in_flight)).map(|chunk| ctx.run_chunk(chunk)).buffered(ahead);
        let mut results = Vec::with_capacity(cases.len());
        while let Some(chunk) = chunks.next().await {
            for result in chunk? {
                on_case(&result);
                results.push(result);
            }
        }
        Ok(SuiteRun {
            label: label.to_string(),
            model: self.student.model_id().to_string(),
            skill_hash: skill.map(SkillText::hash),
            results,
        })
    }
}

struct CaseContext<'a> {
    /// This configuration's transcript folder (one per label, so runs do not overwrite).
    transcript_dir: Option<&'a Path>,
    student: Arc<dyn Student>,
    judge: Option<&'a dyn Teacher>,
    suite: &'a EvalSuite,
    skill: Option<&'a SkillText>,
    system: &'a str,
    pattern: Option<&'a regex::Regex>,
    config: &'a RunnerConfig,
}

impl CaseContext<'_> {
    /// The library an agent case searches for its skill: the library stands in for the skill
    /// under test, and a run with no skill gets neither.
    fn agent_library(&self) -> Option<&AgentLibrary> {
        self.config.agent_library.as_ref().filter(|_| self.skill.is_some())
    }

    fn cache_key(&self, case: &EvalCase) -> String {
        let mut h = Sha256::new();
        h.update(RUNNER_VERSION.to_le_bytes());
        h.update(self.student.model_id().as_bytes());
        h.update([0]);
        h.update(self.skill.map(SkillText::hash).unwrap_or_default().as_bytes());
        h.update([0]);
        h.update(self.system.as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(case).unwrap_or_default());
        h.update(self.suite.answer_pattern.as_deref().unwrap_or("").as_bytes());
        h.update(self.config.max_tokens.to_le_bytes());
        h.update((self.config.agent_max_steps as u64).to_le_bytes());
        // An agent case's answer depends on the loop's reply protocol, not only on its inputs.
        if case.mode == CaseMode::Agent {
            h.update(b"agent protocol\0");
            h.update(agent_loop::protocol::PROTOCOL_VERSION.to_le_bytes());
            let style = (self.config.agent_constraint, self.config.agent_placement, self.config.agent_history);
            h.update(serde_json::to_vec(&style).unwrap_or_default());
            // What the student can do decides the protocol it gets: one request a step or two,
            // constrained or free text (a server that refused the grammar, another server).
            h.update([u8::from(self.student.supports_grammar()), u8::from(self.student.continues_reply())]);
        }
        // A rubric's verdict is the judge's, and is kept with the answer: another judge is
        // another result.
        if case.effective_graders().iter().any(|g| g.needs_teacher()) {
            h.update(b"judge\0");
            h.update(self.judge.map(|j| j.model_id()).unwrap_or("").as_bytes());
        }
        // The case names its files; what they hold is part of its input.
        let root = self.config.files_root.clone().unwrap_or_default();
        for file in &case.files {
            h.update([0]);
            h.update(std::fs::read(root.join(file)).unwrap_or_default());
        }
        if let Some(folder) = &case.workspace {
            for (rel, abs) in workspace_files(&root.join(folder)).unwrap_or_default() {
                h.update([1]);
                h.update(rel.to_string_lossy().as_bytes());
                h.update([0]);
                h.update(std::fs::read(abs).unwrap_or_default());
            }
        }
        hex::encode(h.finalize())
    }

    /// Runs a chunk of cases: cached results are graded again, the answer cases left go
    /// to the student as one batch ([`Student::complete_batch`]), agent cases run
    /// concurrently. Results come back in the chunk's order; each new one is cached.
    async fn run_chunk(&self, chunk: &[&EvalCase]) -> Result<Vec<CaseResult>> {
        let cache_paths: Vec<Option<PathBuf>> = chunk
            .iter()
            .map(|case| {
                let key = self.cache_key(case);
                self.config
                    .cache_dir
                    .as_ref()
                    // The library and notes are not part of the key.
                    .filter(|_| case.mode != CaseMode::Agent || self.agent_library().is_none())
                    .map(|d| d.join(&key[..2]).join(format!("{key}.json")))
            })
            .collect();
        let mut results: Vec<Option<CaseResult>> = Vec::with_capacity(chunk.len());
        for (case, path) in chunk.iter().zip(&cache_paths) {
            results.push(self.cached_result(case, path.as_deref()).await);
        }
        let missing = |mode: CaseMode| -> Vec<usize> {
            (0..chunk.len()).filter(|&i| results[i].is_none() && chunk[i].mode == mode).collect()
        };
        let (answers, agents) = (missing(CaseMode::Answer), missing(CaseMode::Agent));
        let requests: Vec<CompletionRequest> = answers.iter().map(|&i| self.answer_request(chunk[i])).collect();
        let started = Instant::now();
        let (completions, agent_results) = futures::join!(
            self.student.complete_batch(&requests),
            futures::future::join_all(agents.iter().map(|&i| self.agent_case(chunk[i])))
        );
        for (&i, completion) in answers.iter().zip(completions) {
            results[i] = Some(self.answer_result(chunk[i], completion, started).await);
        }
        for (&i, result) in agents.iter().zip(agent_results) {
            results[i] = Some(result?);
        }
        let redactor = skill_core::redact::Redactor::from_env();
        let mut out = Vec::with_capacity(chunk.len());
        for ((case, path), result) in chunk.iter().zip(&cache_paths).zip(results) {
            let result = result.expect("every case of the chunk has a result");
            // Errors (a timeout) are not cached: the next run tries again.
            if let Some(path) = path
                && !result.cached
                && result.error.is_none()
            {
                write_json(path, &result)?;
            }
            // Every run keeps a transcript of every case, from the cache or not.
            if let Some(dir) = self.transcript_dir {
                let mut transcript = serde_json::json!({
                    "case": case,
                    "system": self.system,
                    "result": result,
                });
                // As clean as an agent run's transcript: no secret-named variable's value and
                // no key shape, in the case, the prompt or the student's output.
                redactor.redact_json(&mut transcript);
                write_json(&dir.join(format!("{}.json", sanitize(&case.id.to_string()))), &transcript)?;
            }
            out.push(result);
        }
        Ok(out)
    }

    /// The cached result of `case`, graded again, when the cache at `path` has one.
    async fn cached_result(&self, case: &EvalCase, path: Option<&Path>) -> Option<CaseResult> {
        let text = std::fs::read_to_string(path?).ok()?;
        let mut cached = serde_json::from_str::<CaseResult>(&text).ok()?;
        cached.cached = true;
        // The stored output is graded again with today's graders, so a grader fix applies
        // to cached results too. Rubric verdicts (a teacher call) and agent cases (whose
        // workspace is gone) keep their stored grades.
        let regradable = case.mode == CaseMode::Answer
            && cached.error.is_none()
            && !case.effective_graders().iter().any(|g| g.needs_teacher());
        if regradable {
            cached.extracted = extract_answer(&cached.output, self.pattern);
            let answer =
                Answer { output: &cached.output, extracted: &cached.extracted, tool_calls: &[], workspace: None };
            let (grades, error) = self.grade(case, &answer).await;
            cached.passed = all_passed(&grades, &error);
            cached.grades = grades;
            cached.error = error;
        }
        Some(cached)
    }

    fn answer_request(&self, case: &EvalCase) -> CompletionRequest {
        let mut request = CompletionRequest::new(vec![
            ChatMessage::new(Role::System, self.system),
            ChatMessage::new(Role::User, case.prompt.clone()),
        ]);
        request.max_tokens = self.config.max_tokens;
        request.timeout = self.config.timeout;
        request
    }

    /// Grades the student's answer to an answer case.
    async fn answer_result(
        &self,
        case: &EvalCase,
        completion: skill_core::Result<skill_core::Completion>,
        started: Instant,
    ) -> CaseResult {
        match completion {
            Ok(completion) => {
                let extracted = extract_answer(&completion.text, self.pattern);
                let answer =
                    Answer { output: &completion.text, extracted: &extracted, tool_calls: &[], workspace: None };
                let (grades, error) = self.grade(case, &answer).await;
                CaseResult {
                    id: case.id.clone(),
                    split: case.split,
                    passed: all_passed(&grades, &error),
                    grades,
                    output: completion.text.clone(),
                    extracted,
                    tool_calls: Vec::new(),
                    events: Vec::new(),
                    usage: completion.usage,
                    elapsed_ms: completion.elapsed.as_millis() as u64,
                    error,
                    cached: false,
                }
            }
            Err(e) => self.failed(case, started, format!("student: {e}")),
        }
    }

    async fn agent_case(&self, case: &EvalCase) -> Result<CaseResult> {
        let scratch = tempfile::tempdir().map_err(|e| Error::other(format!("scratch folder: {e}")))?;
        let workspace = scratch.path().join("workspace");
        std::fs::create_dir_all(&workspace).map_err(|e| skill_core::Error::io(&workspace, e))?;
        if let Some(folder) = &case.workspace {
            let from = self.config.files_root.clone().unwrap_or_default().join(folder);
            let files = workspace_files(&from)
                .map_err(|e| Error::Grader { case: case.id.to_string(), message: format!("workspace: {e}") })?;
            for (rel, abs) in files {
                let to = workspace.join(&rel);
                if let Some(dir) = to.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| skill_core::Error::io(dir, e))?;
                }
                std::fs::copy(&abs, &to).map_err(|e| skill_core::Error::io(&abs, e))?;
            }
        }
        for file in &case.files {
            let from = self.config.files_root.clone().unwrap_or_default().join(file);
            let to = agent_loop::tools::resolve_in_root(&workspace, file)
                .map_err(|e| Error::Grader { case: case.id.to_string(), message: format!("files: {e}") })?;
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(|e| skill_core::Error::io(dir, e))?;
            }
            std::fs::copy(&from, &to).map_err(|e| skill_core::Error::io(&from, e))?;
        }
        for (file, text) in &case.workspace_files {
            let to = agent_loop::tools::resolve_in_root(&workspace, file)
                .map_err(|e| Error::Grader { case: case.id.to_string(), message: format!("workspace_files: {e}") })?;
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(|e| skill_core::Error::io(dir, e))?;
            }
            std::fs::write(&to, text).map_err(|e| skill_core::Error::io(&to, e))?;
        }
        let library = self.agent_library();
        let mut tools = ToolRegistry::new();
        for tool in builtin_tools(&workspace, library.map(|l| l.retriever.clone()), &WorkspaceAccess::read_write()) {
            tools.register(tool).map_err(|e| Error::other(e.to_string()))?;
        }
        let defaults = AgentConfig::default();
        let agent_config = AgentConfig {
            max_steps: self.config.agent_max_steps,
            reasoning_tokens: self.config.max_tokens,
            constraint: self.config.agent_constraint,
            skill_placement: self.config.agent_placement,
            history: self.config.agent_history,
            model_timeout: self.config.timeout,
            catalog_size: library.map_or(defaults.catalog_size, |l| l.catalog_size),
            notes_in_prompt: library.map_or(defaults.notes_in_prompt, |l| l.notes_in_prompt),
            confident_ratio: library.map_or(defaults.confident_ratio, |l| l.confident_ratio),
            confident_min_score: library.map_or(defaults.confident_min_score, |l| l.confident_min_score),
            ..defaults
        };
        let mut agent = Agent::new(self.student.clone(), agent_config).with_tools(tools);
        let mut options = RunOptions::default();
        if let Some(library) = library {
            agent = agent.with_retriever(library.retriever.clone()).with_library(library.library.clone());
        } else if let Some(skill) = self.skill {
            let library_root = scratch.path().join("skills");
            let dir = library_root.join(&skill.name);
            std::fs::create_dir_all(&dir).map_err(|e| skill_core::Error::io(&dir, e))?;
            atomic_write(&dir.join("SKILL.md"), skill.markdown.as_bytes())?;
            agent = agent.with_library(SkillLibrary::new(library_root));
            options.skill = Some(skill.name.clone());
        }
        let task = match self.suite.instructions.as_deref() {
            Some(extra) => format!("{}\n\n{}", case.prompt, extra),
            None => case.prompt.clone(),
        };
        let mut tool_calls = Vec::new();
        let mut usage = Usage::default();
        let mut events = Vec::new();
        let started = Instant::now();
        let run = agent
            .run(&task, &options, &mut |event| {
                match event {
                    Event::ToolCall { tool, arguments, .. } => {
                        tool_calls.push(ToolCallRecord { tool: tool.clone(), arguments: arguments.clone() })
                    }
                    Event::ModelCall { prompt_tokens, completion_tokens, .. } => {
                        usage.prompt_tokens += prompt_tokens;
                        usage.completion_tokens += completion_tokens;
                    }
                    _ => {}
                }
                events.push(event.clone());
            })
            .await;
        let outcome = match run {
            Ok(outcome) => outcome,
            Err(e) => return Ok(self.failed(case, started, format!("agent: {e}"))),
        };
        let output = outcome.answer.unwrap_or_default();
        let extracted = extract_answer(&output, self.pattern);
        let answer =
            Answer { output: &output, extracted: &extracted, tool_calls: &tool_calls, workspace: Some(&workspace) };
        let (grades, error) = self.grade(case, &answer).await;
        Ok(CaseResult {
            id: case.id.clone(),
            split: case.split,
            passed: all_passed(&grades, &error),
            grades,
            output,
            extracted,
            tool_calls,
            events,
            usage,
            elapsed_ms: started.elapsed().as_millis() as u64,
            error,
            cached: false,
        })
    }

    async fn grade(&self, case: &EvalCase, answer: &Answer<'_>) -> (Vec<GradeOutcome>, Option<String>) {
        let mut grades = Vec::new();
        for grader in case.effective_graders() {
            match grader.grade(case, answer, self.judge).await {
                Ok(g) => grades.push(g),
                Err(e) => return (grades, Some(e.to_string())),
            }
        }
        (grades, None)
    }

    fn failed(&self, case: &EvalCase, started: Instant, error: String) -> CaseResult {
        CaseResult {
            id: case.id.clone(),
            split: case.split,
            passed: false,
            grades: Vec::new(),
            output: String::new(),
            extracted: String::new(),
            tool_calls: Vec::new(),
            events: Vec::new(),
            usage: Usage::default(),
            elapsed_ms: started.elapsed().as_millis() as u64,
            error: Some(error),
            cached: false,
        }
    }
}

/// Every regular file under `folder`, as (path relative to it, path), sorted. Symlinks are
/// left out: a fixture must not reach outside its folder.
fn workspace_files(folder: &Path) -> std::result::Result<Vec<(PathBuf, PathBuf)>, String> {
    if !folder.is_dir() {
        return Err(format!("{} is not a folder", folder.display()));
    }
    let mut out = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| format!("{}: {e}", path.display()))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let rel = path.strip_prefix(folder).map(Path::to_path_buf).unwrap_or_else(|_| path.clone());
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A case passes when it was graded without error, by at least one grader, and every
/// grader passed it.
fn all_passed(grades: &[GradeOutcome], error: &Option<String>) -> bool {
    error.is_none() && !grades.is_empty() && grades.iter().all(|g| g.passed)
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| skill_core::Error::io(dir, e))?;
    }
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::other(e.to_string()))?;
    atomic_write(path, &json)?;
    Ok(())
}

/// The default result cache: `$XDG_CACHE_HOME/skd/evals`.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(|| PathBuf::from(".cache")).join("skd").join("evals")
}
