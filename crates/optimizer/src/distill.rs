//! Distillation: the teacher writes a skill, the student runs it, the evals grade it, the
//! teacher rewrites it from the failures, until validation accuracy stops improving.
//!
//! The loop keeps every candidate and its per-case validation results, and selects the
//! next parent from the Pareto front (candidates that are best on at least one validation
//! case, as GEPA does) rather than only the latest. The test split is sealed: the teacher is
//! never shown a test case or a test score; it is measured once, at the end.
//!
//! Every step ends with the state written atomically to `<skill>/evals/distill/state.json`;
//! student results are cached per (model, skill text, case), so a run killed at any point
//! resumes from its last finished step without losing a candidate or a score.

use crate::answer_format::{ANSWER_INSTRUCTIONS, ANSWER_PATTERN};
use crate::recall::RecallChecker;
pub use crate::recall::RecallReport;
use crate::teacher_io::{TokenCounting, counted, teacher_request};
use crate::worked_examples::as_shown;
pub use crate::worked_examples::{
    ExamplePairs, WORKED_EXAMPLES_END, WORKED_EXAMPLES_HEADING, with_worked_examples, without_worked_examples,
    worked_examples_in,
};
use crate::{Error, Result, clip};
use evals::grade::Grader;
use evals::run::{Evaluator, RunnerConfig, SkillText, SuiteRun};
use evals::stats::{Lift, Rate};
use evals::suite::{CaseId, CaseMode, EvalCase, EvalSuite, Split};
use serde::{Deserialize, Serialize};
use skill_core::fsutil::atomic_write;
use skill_core::{ChatMessage, CompletionRequest, Role, Skill, Student, Teacher, ValidationMode, VersionStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use teacher::ask_json;

/// What to distill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillJob {
    /// The skill's name (its folder).
    pub skill_name: String,
    /// The job, in a sentence or a paragraph.
    pub description: String,
    /// Past run transcripts (text excerpts) the teacher may learn from.
    #[serde(default)]
    pub transcripts: Vec<String>,
    /// Example cases from the user: they join the suite (across all three splits) and show
    /// the teacher what cases look like.
    #[serde(default)]
    pub examples: Vec<ExampleCase>,
}

/// A case given by the user or drafted by the teacher: an input and its exact answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleCase {
    /// The input.
    #[serde(alias = "input")]
    pub prompt: String,
    /// The exact expected answer (for a document: a good answer, shown to no one).
    #[serde(default, alias = "expected", alias = "output")]
    pub expected_output: String,
    /// Graded as a number (with tolerance) rather than as text.
    #[serde(default)]
    pub numeric: bool,
    /// For a job whose answer is a document (a message, a plan, a summary): the checks a good
    /// answer passes, judged by the teacher. A case with criteria is graded by them alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub criteria: Vec<String>,
}

impl ExampleCase {
    /// Whether the answer is a document graded against criteria rather than compared.
    pub fn is_document(&self) -> bool {
        !self.criteria.is_empty()
    }
}

/// Reads example cases: a JSON array, or JSON lines, of `{"prompt", "expected_output"}`
/// (`input` / `expected` are accepted too), or `{"prompt", "criteria": [...]}` for a job
/// whose answer is a document. Errors name the file and line.
pub fn read_examples(path: &Path) -> Result<Vec<ExampleCase>> {
    let text = std::fs::read_to_string(path).map_err(|e| skill_core::Error::io(path, e))?;
    let text = text.trim_start_matches('\u{feff}');
    let bad = |line: usize, message: String| Error::Suite { path: path.to_path_buf(), line, message };
    // (case, its line: JSON lines know it; in an array, the line of the array's start)
    let cases: Vec<(ExampleCase, usize)> = if text.trim_start().starts_with('[') {
        let all: Vec<ExampleCase> = serde_json::from_str(text).map_err(|e| bad(e.line(), e.to_string()))?;
        let first = text.lines().position(|l| !l.trim().is_empty()).unwrap_or(0) + 1;
        all.into_iter().map(|c| (c, first)).collect()
    } else {
        let mut cases = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            cases.push((serde_json::from_str(line).map_err(|e| bad(i + 1, e.to_string()))?, i + 1));
        }
        cases
    };
    if let Some((i, (_, line))) = cases
        .iter()
        .enumerate()
        .find(|(_, (c, _))| c.prompt.trim().is_empty() || (c.expected_output.trim().is_empty() && !c.is_document()))
    {
        return Err(bad(
            *line,
            format!("example {} needs a non-empty prompt and expected_output (or criteria)", i + 1),
        ));
    }
    let cases: Vec<ExampleCase> = cases.into_iter().map(|(c, _)| c).collect();
    Ok(cases)
}

/// Limits and stopping rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// Rewrite rounds at most.
    pub max_rounds: usize,
    /// Stop after this many rounds without a validation gain.
    pub patience: usize,
    /// Stop once validation accuracy reaches this (0..=1).
    pub target: Option<f64>,
    /// Stop once the teacher has used this many tokens.
    pub max_teacher_tokens: Option<u64>,
    /// Train cases the student runs per round.
    pub minibatch: usize,
    /// Cases the teacher drafts when the skill has no suite.
    pub draft_cases: usize,
    /// When the skill comes with a suite (a mined one: the user's own tasks) that has fewer
    /// train cases than this, the teacher drafts train cases like them up to this number. Only
    /// train grows: validation and the sealed test stay the user's own tasks. 0: never.
    #[serde(default)]
    pub top_up_train: usize,
    /// Recall-check queries of each kind (should / should not find the skill).
    pub recall_queries: usize,
    /// Worked examples an even round may put into the skill: the student's own passing
    /// answers on train cases (0: every round is a teacher rewrite).
    #[serde(default = "default_worked_examples")]
    pub worked_examples: usize,
    /// The teacher solves each case it drafted afresh; a case whose answer it cannot
    /// reproduce is dropped as mislabelled (the user's examples are never dropped).
    #[serde(default = "default_true")]
    pub verify_drafted_cases: bool,
    /// Seconds one teacher request may take (a local CPU teacher writing a long skill needs
    /// many minutes).
    #[serde(default = "default_teacher_timeout_secs")]
    pub teacher_timeout_secs: u64,
    /// Validation cases a candidate must pass beyond the best so far to replace it. On a
    /// small validation split one case is noise (a candidate that won 3 to 2 of 12 lost on
    /// the sealed test); 2 asks for a gain that a coin flip rarely gives.
    #[serde(default = "default_min_validation_gain")]
    pub min_validation_gain: usize,
    /// A candidate also replaces the best only when the exact McNemar test of its validation
    /// cases won and lost against the best, paired by case, gives a P value at most this.
    /// 1 (the default) leaves the decision to the gain alone: on the 3-12-case validation
    /// splits of a distillation no split of discordant cases reaches P < 0.05 below 6 to 0,
    /// so a significance rule there would keep nothing. Every round logs its P either way.
    #[serde(default = "default_keep_p")]
    pub keep_p: f64,
    /// Also measure the job alone (the starting skill's frontmatter with the job sentence as
    /// its whole body) before the rounds. When the starting procedure makes the student worse
    /// than the bare job (the human BIG-Bench Hard procedure does on boolean_expressions), the
    /// job alone becomes the best (parents still come from the whole Pareto front).
    #[serde(default = "default_true")]
    pub bare_job_candidate: bool,
}

fn default_min_validation_gain() -> usize {
    1
}

fn default_keep_p() -> f64 {
    1.0
}

fn default_teacher_timeout_secs() -> u64 {
    900
}

fn default_true() -> bool {
    true
}

fn default_worked_examples() -> usize {
    3
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            max_rounds: 6,
            patience: 2,
            target: None,
            max_teacher_tokens: None,
            minibatch: 6,
            draft_cases: 24,
            top_up_train: 0,
            recall_queries: 6,
            worked_examples: default_worked_examples(),
            verify_drafted_cases: true,
            teacher_timeout_secs: default_teacher_timeout_secs(),
            min_validation_gain: default_min_validation_gain(),
            keep_p: default_keep_p(),
            bare_job_candidate: true,
        }
    }
}

impl DistillConfig {
    /// The wall-clock limit on one teacher request.
    pub fn teacher_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.teacher_timeout_secs)
    }
}

/// One skill text the loop produced or started from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Index in [`DistillState::candidates`].
    pub id: usize,
    /// The candidate it was rewritten from.
    pub parent: Option<usize>,
    /// The round that produced it (0: the starting skill).
    pub round: usize,
    /// The whole `SKILL.md`.
    pub markdown: String,
    /// The teacher's reason for the change.
    pub rationale: String,
    /// Per validation case: passed? (empty until measured).
    pub validation: Vec<(CaseId, bool)>,
    /// Mean tokens per validation case.
    pub tokens_per_case: f64,
    /// The (input, solution) pairs its worked-examples section shows, as the distiller wrote
    /// them: read back from the text, a student solution that imitates the section's layout
    /// would count as more examples. A teacher rewrite's are parsed from its text when it is
    /// made. `None` for the starting skill and for states written before this was kept: then
    /// the section is parsed ([`worked_examples_in`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worked_examples: Option<ExamplePairs>,
}

impl Candidate {
    /// The (input, solution) pairs it shows as worked examples.
    pub fn shown_examples(&self) -> ExamplePairs {
        match &self.worked_examples {
            Some(pairs) => pairs.clone(),
            None => worked_examples_in(&self.markdown),
        }
    }

    /// Validation pass rate.
    pub fn validation_rate(&self) -> Rate {
        Rate::wilson(self.validation.iter().filter(|(_, p)| *p).count(), self.validation.len())
    }
}

/// What happened in a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundLog {
    /// 1-based.
    pub round: usize,
    /// The parent candidate.
    pub parent: usize,
    /// Train minibatch failures shown to the teacher.
    pub failures: usize,
    /// The new candidate, if one was made and measured.
    pub candidate: Option<usize>,
    /// Its validation rate.
    pub validation_rate: Option<f64>,
    /// Whether it became the best.
    pub improved: bool,
    /// Its validation cases against the best's, paired by case, when they shared any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against_best: Option<AgainstBest>,
    /// Why nothing was kept, when nothing was.
    pub note: String,
}

/// A candidate's validation cases against the best candidate's, paired by case id.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AgainstBest {
    /// Cases the candidate passes and the best fails.
    pub won: usize,
    /// Cases the best passes and the candidate fails.
    pub lost: usize,
    /// Two-sided exact McNemar P of that split.
    pub p: f64,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Nothing done yet.
    Start,
    /// The skill and the suite exist.
    Drafted,
    /// The no-skill baseline and the starting skill are measured on validation.
    Measured,
    /// Rewrite rounds finished.
    Converged,
    /// Retrieval finds the skill for its queries.
    RecallChecked,
    /// Test accuracy measured and the version saved.
    Finished,
}

/// The sealed-test measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    /// With the distilled skill.
    pub with_skill: Rate,
    /// Without any skill.
    pub no_skill: Rate,
    /// With the skill the run started from, when there was one.
    pub starting_skill: Option<Rate>,
    /// Paired lift over no skill.
    pub lift: Lift,
    /// Tokens per test case with the skill / without.
    pub tokens_per_case: (f64, f64),
    /// Teacher tokens used by the whole run.
    pub teacher_tokens: u64,
    /// The version saved.
    pub version: u32,
    /// More than 5 points of lift that is not chance (exact McNemar P < 0.05), or no loss
    /// with over 20% fewer tokens than the start.
    pub beneficial: bool,
    /// `version` became the skill's SKILL.md: it was beneficial, or there was no SKILL.md to
    /// stay on. Otherwise it waits in the history (`skd skill restore NAME VERSION`).
    #[serde(default = "adopted_before_it_was_recorded")]
    pub adopted: bool,
}

/// Reports written before [`FinalReport::adopted`] was kept: every result became SKILL.md.
fn adopted_before_it_was_recorded() -> bool {
    true
}

/// Everything a run knows; written after every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillState {
    /// The job.
    pub job: DistillJob,
    /// Settings.
    pub config: DistillConfig,
    /// Progress.
    pub stage: Stage,
    /// Every candidate, in order.
    pub candidates: Vec<Candidate>,
    /// Index of the best candidate on validation.
    pub best: usize,
    /// Rounds done.
    pub rounds: usize,
    /// Rounds since the best improved.
    pub rounds_without_gain: usize,
    /// Validation rate without a skill.
    pub baseline_validation: Option<Rate>,
    /// Teacher tokens so far.
    pub teacher_tokens: u64,
    /// Of which prompt tokens.
    #[serde(default)]
    pub teacher_prompt_tokens: u64,
    /// Of which completion tokens.
    #[serde(default)]
    pub teacher_completion_tokens: u64,
    /// Drafted cases dropped because the teacher's own fresh solution disagreed with the
    /// drafted answer.
    #[serde(default)]
    pub dropped_cases: Vec<ExampleCase>,
    /// Train cases the teacher added to the suite the skill came with (see
    /// [`DistillConfig::top_up_train`]).
    #[serde(default)]
    pub topped_up: usize,
    /// Per round.
    pub log: Vec<RoundLog>,
    /// The retrieval check.
    pub recall: Option<RecallReport>,
    /// The final measurement.
    pub report: Option<FinalReport>,
    /// The student the candidates are measured with, as the frontend named it, and its token
    /// limit per answer: a resumed run must measure the same way for its scores to compare.
    /// `None` in states written before they were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student: Option<StudentSettings>,
}

/// The student a distillation measures with (see [`DistillState::student`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentSettings {
    /// The student as named on the command line or in the config (a model id, a `.gguf`
    /// path, `URL#model`).
    pub spec: String,
    /// Token limit per answer.
    pub max_tokens: u32,
}

/// A line of progress.
#[derive(Debug, Clone)]
pub enum DistillEvent {
    /// A stage began.
    Stage(String),
    /// A round ended.
    Round(RoundLog),
    /// A student case finished (label, passed).
    Case(String, bool),
}

/// The loop's inputs.
pub struct Distiller<'a> {
    /// The local student.
    pub student: Arc<dyn Student>,
    /// The teacher.
    pub teacher: &'a dyn Teacher,
    /// The skill's folder (created when missing).
    pub skill_dir: PathBuf,
    /// Other skills, for the recall check (the new skill must outrank them).
    pub library_root: Option<PathBuf>,
    /// Student settings.
    pub runner: RunnerConfig,
}

const STATE_FILE: &str = "evals/distill/state.json";

/// The state file of a skill folder.
pub fn state_path(skill_dir: &Path) -> PathBuf {
    skill_dir.join(STATE_FILE)
}

/// Where `--restart` keeps the runs it set aside.
const ARCHIVE_DIR: &str = "evals/distill/runs";

/// Sets the current state aside before a new run replaces it: moves `state.json` to
/// `evals/distill/runs/<UTC time>-<stage>.json` (a rename, so nothing is half-written) and
/// returns where it went, or `None` when there was no state. Finished runs stay readable
/// there, e.g. by `skd bbh report` while the new run is under way.
pub fn archive_state(skill_dir: &Path) -> Result<Option<PathBuf>> {
    let path = state_path(skill_dir);
    if !path.exists() {
        return Ok(None);
    }
    let stage = load_state(skill_dir).map(|s| format!("{:?}", s.stage).to_lowercase()).unwrap_or("unreadable".into());
    let dir = skill_dir.join(ARCHIVE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| skill_core::Error::io(&dir, e))?;
    // `:` is not allowed in Windows file names. Names sort by time as text; a second run set
    // aside in the same second gets `.002`, which sorts after the first (`-` < `.`).
    let stamp = skill_core::time::rfc3339(skill_core::time::now_unix()).replace(':', "");
    let mut target = dir.join(format!("{stamp}-{stage}.json"));
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = dir.join(format!("{stamp}.{n:03}-{stage}.json"));
    }
    std::fs::rename(&path, &target).map_err(|e| skill_core::Error::io(&path, e))?;
    Ok(Some(target))
}

/// The newest finished run: the current state when it is finished, else the newest one
/// `--restart` archived. `None` when no run ever finished.
pub fn latest_finished_state(skill_dir: &Path) -> Option<DistillState> {
    if let Ok(state) = load_state(skill_dir)
        && state.stage == Stage::Finished
    {
        return Some(state);
    }
    let mut archived: Vec<PathBuf> = std::fs::read_dir(skill_dir.join(ARCHIVE_DIR))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    // Names start with the UTC time, so the newest sorts last.
    archived.sort();
    archived.iter().rev().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        serde_json::from_str::<DistillState>(&text).ok().filter(|s| s.stage == Stage::Finished && s.check().is_ok())
    })
}

/// Reads a saved state (for `--resume`).
pub fn load_state(skill_dir: &Path) -> Result<DistillState> {
    let path = state_path(skill_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::other(format!("no distillation to resume at {} ({e}); start one without --resume", path.display()))
    })?;
    let state: DistillState = serde_json::from_str(&text).map_err(|e| Error::Suite {
        path: path.clone(),
        line: e.line(),
        message: e.to_string(),
    })?;
    state.check().map_err(|problems| Error::InvalidSuite {
        path,
        problems: problems.into_iter().map(|p| format!("corrupt distillation state: {p}")).collect(),
    })?;
    Ok(state)
}

impl DistillState {
    /// A fresh run.
    pub fn new(job: DistillJob, config: DistillConfig) -> Self {
        DistillState {
            job,
            config,
            stage: Stage::Start,
            candidates: Vec::new(),
            best: 0,
            rounds: 0,
            rounds_without_gain: 0,
            baseline_validation: None,
            teacher_tokens: 0,
            teacher_prompt_tokens: 0,
            teacher_completion_tokens: 0,
            dropped_cases: Vec::new(),
            topped_up: 0,
            log: Vec::new(),
            recall: None,
            report: None,
            student: None,
        }
    }

    /// What in a state read back from disk would send the run off its rails: numbers that
    /// point at candidates it does not have, candidates out of order. `Ok` when it is usable.
    pub fn check(&self) -> std::result::Result<(), Vec<String>> {
        let n = self.candidates.len();
        let mut problems = Vec::new();
        if n == 0 && self.stage != Stage::Start {
            problems.push(format!("stage {:?} with no candidate", self.stage));
        }
        if n > 0 && self.best >= n {
            problems.push(format!("best candidate {} of {n}", self.best));
        }
        for (i, c) in self.candidates.iter().enumerate() {
            if c.id != i {
                problems.push(format!("candidate {i} has id {}", c.id));
            }
            if let Some(parent) = c.parent.filter(|p| *p >= i) {
                problems.push(format!("candidate {i} has parent {parent}, not an earlier candidate"));
            }
        }
        for entry in &self.log {
            if entry.parent >= n {
                problems.push(format!("round {} names parent {} of {n} candidates", entry.round, entry.parent));
            }
            if let Some(c) = entry.candidate.filter(|c| *c >= n) {
                problems.push(format!("round {} names candidate {c} of {n}", entry.round));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    /// Whether the rewrite rounds are over (the stop limits no longer apply).
    pub fn rounds_over(&self) -> bool {
        matches!(self.stage, Stage::Converged | Stage::RecallChecked | Stage::Finished)
    }

    /// The candidate of a round that was cut short after the candidate was saved and before
    /// it was measured: made in the latest round, unmeasured, and with no log entry.
    pub fn interrupted_candidate(&self) -> Option<usize> {
        self.candidates
            .last()
            .filter(|c| {
                c.round > 0
                    && c.round == self.rounds
                    && c.validation.is_empty()
                    && !self.log.iter().any(|l| l.round == c.round)
            })
            .map(|c| c.id)
    }

    /// Candidates best on at least one validation case (ties count for all), with the
    /// number of cases each is best on, most first.
    pub fn pareto_front(&self) -> Vec<(usize, usize)> {
        let measured: Vec<&Candidate> = self.candidates.iter().filter(|c| !c.validation.is_empty()).collect();
        let mut wins = vec![0usize; self.candidates.len()];
        if let Some(first) = measured.first() {
            for (i, (case, _)) in first.validation.iter().enumerate() {
                let passers: Vec<usize> = measured
                    .iter()
                    .filter(|c| c.validation.get(i).is_some_and(|(id, p)| id == case && *p))
                    .map(|c| c.id)
                    .collect();
                for id in passers {
                    wins[id] += 1;
                }
            }
        }
        let mut front: Vec<(usize, usize)> = wins.into_iter().enumerate().filter(|(_, w)| *w > 0).collect();
        front.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        front
    }

    fn count_teacher_usage(&mut self, usage: &skill_core::Usage) {
        self.teacher_prompt_tokens += u64::from(usage.prompt_tokens);
        self.teacher_completion_tokens += u64::from(usage.completion_tokens);
        self.teacher_tokens += u64::from(usage.prompt_tokens + usage.completion_tokens);
    }

    /// The teacher's cost in USD at `prices` (per million prompt / completion tokens).
    pub fn teacher_cost_usd(&self, prices: teacher::Prices) -> f64 {
        prices.cost_usd(self.teacher_prompt_tokens, self.teacher_completion_tokens)
    }

    fn should_stop(&self) -> Option<String> {
        let best = self.candidates.get(self.best)?.validation_rate().rate;
        if self.rounds >= self.config.max_rounds {
            return Some(format!("round budget ({}) spent", self.config.max_rounds));
        }
        if self.rounds_without_gain >= self.config.patience {
            return Some(format!("no validation gain for {} rounds", self.config.patience));
        }
        if let Some(target) = self.config.target
            && best >= target
        {
            return Some(format!("target {:.0}% reached", target * 100.0));
        }
        if let Some(budget) = self.config.max_teacher_tokens
            && self.teacher_tokens >= budget
        {
            return Some(format!("teacher token budget ({budget}) spent"));
        }
        None
    }
}

/// A skill the teacher wrote: the whole `SKILL.md` and its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillDraft {
    /// The whole `SKILL.md`.
    pub skill_md: String,
    /// What changed and why (the text after the block).
    pub rationale: String,
}

/// Runs `f` on the skill's version store off the async workers: saves take a file lock that
/// blocks while another process (a `skd skill restore`, a second distillation) holds it.
fn with_versions<T>(skill_dir: &Path, f: impl FnOnce(&VersionStore) -> skill_core::Result<T>) -> Result<T> {
    skill_core::blocking(|| f(&VersionStore::new(skill_dir))).map_err(Error::from)
}

/// How the teacher is asked to return a skill: markdown in a fence, not a JSON string (small
/// teachers do not escape the quotes of a whole markdown file inside JSON).
const SKILL_REPLY_FORMAT: &str = "Reply with the whole SKILL.md in one ```markdown fenced block, then one line \
starting with `Rationale:` saying what you changed and why.";

/// Takes the `SKILL.md` out of a teacher reply: the fenced block that starts with
/// frontmatter (up to the last closing fence, so code fences inside the skill survive), or
/// the text from the first `---` line.
pub fn parse_skill_reply(text: &str, truncated: bool) -> std::result::Result<SkillDraft, String> {
    let lines: Vec<&str> = text.lines().collect();
    let opening = lines.iter().position(|l| {
        let t = l.trim();
        t.starts_with("```") && matches!(t.trim_start_matches('`').trim(), "" | "markdown" | "md" | "yaml")
    });
    let (body, rest): (Vec<&str>, Vec<&str>) = match opening {
        Some(start) => {
            let close = (start + 1..lines.len()).rev().find(|&i| lines[i].trim() == "```");
            match close {
                Some(end) => (lines[start + 1..end].to_vec(), lines[end + 1..].to_vec()),
                None if truncated => {
                    return Err("the answer was cut off before the closing ``` of the SKILL.md; be more concise".into());
                }
                None => (lines[start + 1..].to_vec(), Vec::new()),
            }
        }
        None => {
            let Some(start) = lines.iter().position(|l| l.trim() == "---") else {
                return Err("the answer contains no SKILL.md (no fenced block, no `---` frontmatter)".into());
            };
            let end = lines.iter().rposition(|l| is_rationale_line(l)).filter(|e| *e > start).unwrap_or(lines.len());
            (lines[start..end].to_vec(), lines[end..].to_vec())
        }
    };
    // A reply cut off at the token limit is whole only if it got past the skill to its
    // rationale: a closing fence alone may be one inside the skill, with the rest cut away.
    if truncated && !rest.iter().any(|l| is_rationale_line(l)) {
        return Err("the answer was cut off before the end of the SKILL.md; be more concise".into());
    }
    let first = body.iter().position(|l| !l.trim().is_empty()).unwrap_or(0);
    let skill_md = format!("{}\n", body[first..].join("\n").trim_end());
    let rest = rest.join(" ");
    let rest = rest.trim().trim_start_matches(RATIONALE_MARKUP);
    let rationale = after_rationale_label(rest).unwrap_or(rest).trim().to_string();
    Ok(SkillDraft { skill_md, rationale })
}

/// Markdown a teacher may put around its `Rationale:` label (`**Rationale:**`, `- Rationale:`).
const RATIONALE_MARKUP: &[char] = &['*', '_', '#', '-', ' '];

/// The text after a `Rationale:` label that starts `line` (markup around the label dropped);
/// `None` when `line` does not start the rationale that follows a skill.
fn after_rationale_label(line: &str) -> Option<&str> {
    let rest = line.trim_start().trim_start_matches(RATIONALE_MARKUP).strip_prefix("Rationale:")?;
    Some(rest.trim_start_matches(RATIONALE_MARKUP))
}

/// Whether `line` starts the rationale that follows a skill.
fn is_rationale_line(line: &str) -> bool {
    after_rationale_label(line).is_some()
}

#[cfg(test)]
mod tests {
    use super::{parse_skill_reply, replaces_best};

    #[test]
    fn later_passes_over_the_train_split_shift_the_minibatch() {
        let starts = |size, len| (1..=5).map(|r| super::minibatch_start(r, size, len)).collect::<Vec<_>>();
        // 12 train cases, 6 a round: the first pass as before, then one case further on.
        assert_eq!(starts(6, 12), [0, 6, 1, 7, 2]);
        assert_eq!(starts(3, 3), [0, 1, 2, 0, 1]);
        assert_eq!(starts(4, 10), [0, 4, 8, 3, 7]);
    }

    #[test]
    fn a_restart_archives_the_previous_run_and_finished_runs_stay_readable() {
        use super::{Stage, archive_state, latest_finished_state, state_path};
        let dir = tempfile::tempdir().expect("tmp");
        let skill = dir.path();
        assert_eq!(archive_state(skill).expect("nothing to archive"), None);
        assert!(latest_finished_state(skill).is_none());
        let write = |stage: Stage, rounds: usize| {
            let mut state = state_at(stage);
            state.rounds = rounds;
            write_state(skill, &state);
        };
        write(Stage::Finished, 3);
        assert_eq!(latest_finished_state(skill).expect("current finished run").rounds, 3);
        let first = archive_state(skill).expect("archive").expect("archived");
        assert!(!state_path(skill).exists(), "the state was moved, not copied");
        assert!(first.file_name().expect("name").to_string_lossy().ends_with("-finished.json"), "{first:?}");
        // A new run in progress: the report still reads the archived finished one.
        write(Stage::Measured, 1);
        assert_eq!(latest_finished_state(skill).expect("archived finished run").rounds, 3);
        // Restarted again within the same second: a second file, nothing overwritten.
        let second = archive_state(skill).expect("archive").expect("archived");
        assert_ne!(first, second);
        assert!(first.exists() && second.exists());
        assert!(second.file_name().expect("name").to_string_lossy().contains("-measured"), "{second:?}");
        // A third in the same second: the newest finished run is the one read.
        write(Stage::Finished, 5);
        let third = archive_state(skill).expect("archive").expect("archived");
        write(Stage::Measured, 1);
        assert_eq!(latest_finished_state(skill).expect("newest archived").rounds, 5, "{first:?} {second:?} {third:?}");
        write(Stage::Finished, 4);
        assert_eq!(latest_finished_state(skill).expect("current run").rounds, 4, "the current finished run wins");
    }

    /// A state at `stage` with the starting skill as its one candidate.
    fn state_at(stage: super::Stage) -> super::DistillState {
        let job = super::DistillJob {
            skill_name: "x".into(),
            description: "d".into(),
            transcripts: Vec::new(),
            examples: Vec::new(),
        };
        let mut state = super::DistillState::new(job, super::DistillConfig::default());
        state.stage = stage;
        state.candidates.push(start_candidate());
        state
    }

    fn write_state(skill: &std::path::Path, state: &super::DistillState) {
        let path = super::state_path(skill);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, serde_json::to_vec(state).expect("json")).expect("write");
    }

    fn start_candidate() -> super::Candidate {
        super::Candidate {
            id: 0,
            parent: None,
            round: 0,
            markdown: "---\nname: x\ndescription: d\n---\nDo it.\n".into(),
            rationale: String::new(),
            validation: Vec::new(),
            tokens_per_case: 0.0,
            worked_examples: None,
        }
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_the_file_and_the_problem() {
        use super::{Stage, latest_finished_state, load_state, state_path};
        let dir = tempfile::tempdir().expect("tmp");
        let skill = dir.path();
        let mut state = state_at(Stage::Finished);
        state.best = 3;
        let mut second = start_candidate();
        second.id = 1;
        second.parent = Some(1);
        state.candidates.push(second);
        write_state(skill, &state);
        let err = load_state(skill).expect_err("corrupt").to_string();
        assert!(err.contains("state.json") && err.contains("best candidate 3 of 2"), "{err}");
        assert!(err.contains("candidate 1 has parent 1"), "{err}");
        assert!(latest_finished_state(skill).is_none(), "a corrupt finished state is not read as a result");
        std::fs::write(state_path(skill), "{\"stage\": ").expect("write");
        let err = load_state(skill).expect_err("torn").to_string();
        assert!(err.contains("state.json:1"), "{err}");
    }

    #[test]
    fn skill_replies_are_read_from_fences_with_inner_code_blocks() {
        let reply = "Here it is:\n```markdown\n---\nname: x\ndescription: d\n---\n1. Run:\n```sh\nls\n```\n2. Done.\n```\nRationale: added a step.";
        let d = parse_skill_reply(reply, false).expect("parsed");
        assert_eq!(d.skill_md, "---\nname: x\ndescription: d\n---\n1. Run:\n```sh\nls\n```\n2. Done.\n");
        assert_eq!(d.rationale, "added a step.");
        let bare =
            parse_skill_reply("---\nname: x\ndescription: d\n---\nDo it.\nRationale: shorter", false).expect("bare");
        assert_eq!(bare.skill_md, "---\nname: x\ndescription: d\n---\nDo it.\n");
        assert!(parse_skill_reply("```markdown\n---\nname: x\n", true).expect_err("cut").contains("cut off"));
        assert!(parse_skill_reply("no skill here", false).is_err());
        // Cut off after a code block inside the skill: its closing fence is not the end.
        let cut_inside = "```markdown\n---\nname: x\ndescription: d\n---\n1. Run:\n```sh\nls\n```\n2. Th";
        assert!(parse_skill_reply(cut_inside, true).expect_err("cut").contains("cut off"));
        assert!(parse_skill_reply("---\nname: x\ndescription: d\n---\nDo it.\n2. Th", true).is_err());
        let bold =
            parse_skill_reply("```markdown\n---\nname: x\ndescription: d\n---\nDo it.\n```\n**Rationale:** sho", true);
        assert_eq!(bold.expect("a bold rationale label counts").rationale, "sho");
        // Cut off in the rationale, after the whole skill: usable.
        assert_eq!(
            parse_skill_reply(&format!("{reply} It now lists th"), true).expect("whole skill").skill_md,
            d.skill_md
        );
    }

    #[test]
    fn examples_are_read_from_json_arrays_and_json_lines_with_lines_in_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let array = dir.path().join("a.json");
        std::fs::write(&array, r#"[{"prompt": "2+2", "expected_output": "4", "numeric": true}]"#).expect("write");
        let cases = super::read_examples(&array).expect("array");
        assert_eq!((cases[0].prompt.as_str(), cases[0].expected_output.as_str(), cases[0].numeric), ("2+2", "4", true));
        let lines = dir.path().join("b.jsonl");
        std::fs::write(&lines, "{\"input\": \"a\", \"expected\": \"b\"}\n\n{\"input\": \"c\", \"output\": \"d\"}\n")
            .expect("write");
        let cases = super::read_examples(&lines).expect("lines");
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[1].expected_output, "d");
        std::fs::write(&lines, "{\"input\": \"a\", \"expected\": \"b\"}\n{\"input\": \"c\"}\n").expect("write");
        let err = super::read_examples(&lines).expect_err("missing answer").to_string();
        assert!(err.contains("b.jsonl") && err.contains(":2"), "{err}");
        std::fs::write(&lines, "{\"input\": \" \", \"expected\": \"b\"}\n").expect("write");
        let err = super::read_examples(&lines).expect_err("empty").to_string();
        assert!(err.contains("b.jsonl:1:") && err.contains("example 1"), "{err}");
        // A document job's example gives the checks its answer passes instead of the answer.
        std::fs::write(&lines, "{\"prompt\": \"Notes: shipped search\", \"criteria\": [\"mentions search\"]}\n")
            .expect("write");
        let cases = super::read_examples(&lines).expect("criteria");
        assert!(cases[0].is_document() && cases[0].expected_output.is_empty(), "{cases:?}");
    }

    #[test]
    fn answers_agree_when_equal_after_normalizing_or_the_same_short_number() {
        assert!(super::same_answer("True", "true."));
        assert!(super::same_answer("77 degrees", "77"));
        assert!(super::same_answer("-18", "-18.0"));
        assert!(!super::same_answer("14", "-18"));
        assert!(!super::same_answer("False", "True"));
        assert!(!super::same_answer("it is not 5 but 6 in the end", "6"));
        assert!(!super::same_answer("1/2", "2"));
        assert!(!super::same_answer("12:30", "30"));
    }

    #[test]
    fn a_candidate_must_win_by_the_minimum_gain_case_by_case() {
        // Validation outcomes as a string: '1' passed, '0' failed, case ids PREFIX0, PREFIX1, ...
        let with_ids = |prefix: &str, outcomes: &str| super::Candidate {
            validation: outcomes
                .chars()
                .enumerate()
                .map(|(i, c)| (evals::CaseId::Text(format!("{prefix}{i}")), c == '1'))
                .collect(),
            ..start_candidate()
        };
        let measured = |outcomes: &str| with_ids("c", outcomes);
        let keeps = |candidate: &str, best: &str, min_gain, keep_p| {
            replaces_best(&measured(candidate), &measured(best), min_gain, keep_p).0
        };
        assert!(keeps("1100", "1000", 1, 1.0));
        assert!(!keeps("1000", "1000", 1, 1.0));
        // 0 means the smallest real gain, not "a tie wins".
        assert!(!keeps("1000", "1000", 0, 1.0));
        assert!(!keeps("1100", "1000", 2, 1.0));
        assert!(keeps("1110", "1000", 2, 1.0));
        // Paired by case: the same count of passes on other cases is no gain, and two won
        // against one lost is a gain of one.
        assert!(!keeps("0110", "1100", 1, 1.0));
        assert!(keeps("0111", "1100", 1, 1.0));
        assert!(!keeps("0111", "1100", 2, 1.0));
        // The significance rule: 5 to 0 gives P 0.0625, 6 to 0 gives P 0.03125.
        let (kept, against) = replaces_best(&measured("111110"), &measured("000000"), 1, 0.05);
        assert_eq!((kept, against), (false, Some(super::AgainstBest { won: 5, lost: 0, p: 0.0625 })));
        assert!(keeps("111111", "000000", 1, 0.05));
        // Measured on no common case (a suite edited between runs): rates, the gain scaled.
        let other = |outcomes: &str| with_ids("d", outcomes);
        let rates = |candidate: &str, best: &str| replaces_best(&measured(candidate), &other(best), 1, 1.0);
        assert_eq!(rates("11110000", "1110"), (false, None), "4/8 does not beat 3/4");
        assert_eq!(rates("11111111", "1110"), (true, None));
    }

    #[test]
    fn worked_examples_replace_their_own_section_and_keep_the_rest() {
        let skill = "---\nname: x\ndescription: d\n---\n1. Do it.\n\n## Notes\nKeep this.\n";
        let once = super::with_worked_examples(skill, &[("2+2", "4\nANSWER: 4")]);
        assert!(
            once.starts_with(
                "---\nname: x\ndescription: d\n---\n1. Do it.\n\n## Notes\nKeep this.\n\n## Worked examples"
            )
        );
        assert!(once.contains("### Example 1\n\nInput:\n2+2\n\nSolution:\n4\nANSWER: 4\n"), "{once}");
        let twice = super::with_worked_examples(&once, &[("3+3", "ANSWER: 6"), ("1+1", "ANSWER: 2")]);
        assert_eq!(twice.matches(super::WORKED_EXAMPLES_HEADING).count(), 1, "{twice}");
        assert!(!twice.contains("2+2") && twice.contains("### Example 2\n\nInput:\n1+1"), "{twice}");
        assert!(twice.contains("## Notes\nKeep this."));
        // A section in the middle is replaced in place; what follows it survives.
        let middle = "---\nname: x\ndescription: d\n---\nA\n\n## Worked examples\nold\n\n## After\nZ\n";
        let replaced = super::with_worked_examples(middle, &[("q", "a")]);
        assert!(!replaced.contains("old") && replaced.contains("## After\nZ"), "{replaced}");
        assert_eq!(super::without_worked_examples(&once), skill);
        assert_eq!(super::without_worked_examples(skill), skill);
        // An answer with a heading of its own does not end the section early.
        let headed = super::with_worked_examples(skill, &[("q", "## Step 1\nANSWER: a")]);
        let again = super::with_worked_examples(&headed, &[("r", "ANSWER: b")]);
        assert!(!again.contains("## Step 1") && again.matches(super::WORKED_EXAMPLES_END).count() == 1, "{again}");
    }

    /// Adds numbers up to 3 (unless a procedure about carries confuses it); larger ones only
    /// when the skill shows the question as a worked example (it copies).
    struct Copycat;

    #[async_trait::async_trait]
    impl skill_core::Student for Copycat {
        fn model_id(&self) -> &str {
            "copycat"
        }
        async fn complete(
            &self,
            request: &skill_core::CompletionRequest,
        ) -> skill_core::Result<skill_core::Completion> {
            let (system, question) = (&request.messages[0].content, &request.messages[1].content);
            let terms: Vec<u32> =
                question.trim_start_matches("what is ").split('+').filter_map(|n| n.parse().ok()).collect();
            let sum: u32 = terms.iter().sum();
            let easy = terms.iter().all(|t| *t <= 3) && !system.contains("Write every carry");
            let answer = if easy || system.contains(&format!("Input:\n{question}")) { sum } else { 0 };
            Ok(crate::scripted_completion(format!("So the answer is {answer}.")))
        }
    }

    /// A teacher that answers each request with `reply(its last message)`, counting requests;
    /// each answer costs 10 prompt and 5 completion tokens.
    struct Scripted<F>(std::sync::atomic::AtomicUsize, F);

    impl<F: Fn(&str) -> String + Send + Sync> Scripted<F> {
        fn new(reply: F) -> Self {
            Scripted(Default::default(), reply)
        }
        fn asked(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl<F: Fn(&str) -> String + Send + Sync> skill_core::Teacher for Scripted<F> {
        fn model_id(&self) -> &str {
            "scripted"
        }
        async fn complete(
            &self,
            request: &skill_core::CompletionRequest,
        ) -> skill_core::Result<skill_core::Completion> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let last = request.messages.last().map(|m| m.content.as_str()).unwrap_or_default();
            Ok(skill_core::Completion {
                usage: skill_core::Usage { prompt_tokens: 10, completion_tokens: 5 },
                ..crate::scripted_completion((self.1)(last))
            })
        }
    }

    /// A distillation of the skill in `skill_dir` with `teacher` and the copying student, no
    /// library and no eval cache.
    fn copycat_distiller(teacher: &dyn skill_core::Teacher, skill_dir: std::path::PathBuf) -> super::Distiller<'_> {
        super::Distiller {
            student: std::sync::Arc::new(Copycat),
            teacher,
            skill_dir,
            library_root: None,
            runner: super::RunnerConfig { cache_dir: None, ..super::RunnerConfig::default() },
        }
    }

    /// A job with nothing but its name and description.
    fn job_named(skill_name: &str, description: &str) -> super::DistillJob {
        super::DistillJob {
            skill_name: skill_name.into(),
            description: description.into(),
            transcripts: Vec::new(),
            examples: Vec::new(),
        }
    }

    /// Answers a top-up request with six drafted cases (two repeat a user's task, one is
    /// mislabelled), and each check of a drafted case with its true answer (one only when the
    /// check shows the user's accepted answers).
    fn top_up_reply(last: &str) -> String {
        if last.contains("new tasks of the same job") {
            r#"{"cases": [
                {"prompt": "Tip on a  48 euro bill at 15%?", "expected_output": "7.20 EUR"},
                {"prompt": "What's the tip on a 90 euro bill at 10%?", "expected_output": "9 EUR"},
                {"prompt": "Tip on a 20 euro bill at 10%?", "expected_output": "3 EUR"},
                {"prompt": "Tip on a 60 euro bill at 20%?", "expected_output": "12 EUR"},
                {"prompt": "Tip on a 30 euro bill at 10%?", "expected_output": "3 EUR"},
                {"prompt": "Tip on a 70 euro bill at 20%?", "expected_output": "14 EUR"}
            ]}"#
            .to_string()
        } else if last.starts_with("Tip on a 20 euro bill") {
            "10% of 20 is 2. So the answer is 2 EUR.".to_string()
        } else if last.starts_with("Tip on a 60 euro bill") {
            // Right only with the user's accepted answers in view, as a rule the user's
            // answers follow would be.
            if last.contains("- Tip on a 48 euro bill at 15%? -> 7.20 EUR") {
                "So the answer is 12 EUR.".to_string()
            } else {
                "So the answer is 12.50 EUR.".to_string()
            }
        } else {
            "So the answer is 3 EUR.".to_string()
        }
    }

    #[test]
    fn a_drafted_task_with_the_same_numbers_and_mostly_the_same_words_is_a_repeat() {
        let repeats = |first: &str, second: &str| {
            let mut seen = super::SeenTasks::default();
            assert!(seen.insert(first));
            !seen.insert(second)
        };
        assert!(repeats("Tip for €120 at 18%?", "Calculate the tip for €120 at 18%?"));
        assert!(repeats("Sort these names", "sort  these NAMES"));
        assert!(!repeats("What is 12 + 7?", "What is 12 × 7?"));
        assert!(!repeats("Add 3 days to 2026-11-03", "Subtract 3 days from 2026-11-03"));
        assert!(!repeats("Convert -10 °C and 5 °C", "Convert 10 °C and 5 °C"), "a sign is part of a number");
        assert!(!repeats("Tip for €120 at 18%?", "Tip for €120 at 15%?"));
    }

    #[tokio::test]
    async fn a_small_given_suite_gets_teacher_train_cases_and_keeps_its_held_out_cases() {
        use super::*;
        use agent_logs::OutcomeKind;
        let dir = tempfile::tempdir().expect("tmp");
        let skill_dir = dir.path().join("mined-tip");
        let suite_path = EvalSuite::path_in(&skill_dir);
        let mut suite = crate::suite_from_episodes(
            "mined-tip",
            &[
                &crate::settled_episode("Tip on a 48 euro bill at 15%?", OutcomeKind::Success, Some("7.20 EUR"), None),
                &crate::settled_episode("Tip on a 90 euro bill at 10%?", OutcomeKind::Success, Some("9 EUR"), None),
                &crate::settled_episode("Tip on a 50 euro bill at 10%?", OutcomeKind::Success, Some("5 EUR"), None),
                &crate::settled_episode("Tip on a 10 euro bill at 20%?", OutcomeKind::Success, Some("2 EUR"), None),
            ],
        );
        for (case, split) in suite.evals.iter_mut().zip([Split::Train, Split::Train, Split::Validation, Split::Test]) {
            case.split = split;
        }
        suite.save(&suite_path).expect("suite");
        let teacher = Scripted::new(top_up_reply);
        let distiller = copycat_distiller(&teacher, skill_dir.clone());
        let job = job_named("mined-tip", "Work out a restaurant tip.");
        let mut state = DistillState::new(job, DistillConfig { top_up_train: 4, ..DistillConfig::default() });
        distiller.top_up_train(&mut state, &suite_path).await.expect("top up");

        let topped = EvalSuite::load(&suite_path).expect("suite");
        let prompts = |split| topped.split(split).iter().map(|c| c.prompt.clone()).collect::<Vec<_>>();
        // The repeats of the user's tasks (in other spacing, in other words with the same
        // amounts) are left out, the mislabelled case is dropped by its check, and two new
        // cases fill train up to 4; the fifth is not needed, nor checked.
        assert_eq!(
            prompts(Split::Train),
            [
                "Tip on a 48 euro bill at 15%?",
                "Tip on a 90 euro bill at 10%?",
                "Tip on a 60 euro bill at 20%?",
                "Tip on a 30 euro bill at 10%?"
            ]
        );
        assert_eq!(prompts(Split::Validation), ["Tip on a 50 euro bill at 10%?"]);
        assert_eq!(prompts(Split::Test), ["Tip on a 10 euro bill at 20%?"]);
        assert_eq!(state.topped_up, 2);
        assert_eq!(
            state.dropped_cases.iter().map(|c| c.prompt.as_str()).collect::<Vec<_>>(),
            ["Tip on a 20 euro bill at 10%?"]
        );
        let added = topped.evals.iter().find(|c| c.prompt.starts_with("Tip on a 60")).expect("added");
        assert_eq!(
            added.graders,
            [Grader::Numeric { expected: Some(12.0), tolerance: 1e-6, unit: Some("EUR".into()) }],
            "graded as the user's own short answers are"
        );
        assert!(matches!(&added.id, CaseId::Text(id) if id.starts_with("teacher-")), "{:?}", added.id);
        // One request for the cases, one check for each of the three it looked at.
        assert_eq!(teacher.asked(), 4);

        // Run again (a resumed run): train is full, nothing is asked.
        distiller.top_up_train(&mut state, &suite_path).await.expect("again");
        assert_eq!(teacher.asked(), 4);
        assert_eq!(EvalSuite::load(&suite_path).expect("suite").evals.len(), 6);

        // A suite of rubric cases (long accepted answers) has no short answer to go by.
        let long = "Shipped: login.\nNext: billing.";
        let rubric = crate::suite_from_episodes(
            "mined-update",
            &[&crate::settled_episode("Draft the weekly update", OutcomeKind::Success, Some(long), None)],
        );
        rubric.save(&suite_path).expect("suite");
        distiller.top_up_train(&mut state, &suite_path).await.expect("rubric suite");
        assert_eq!(teacher.asked(), 4, "nothing asked");
        assert_eq!(EvalSuite::load(&suite_path).expect("suite"), rubric);
    }

    #[tokio::test]
    async fn the_rubric_judges_tokens_count_in_the_runs_teacher_tokens() {
        use super::*;
        let dir = tempfile::tempdir().expect("tmp");
        let skill_dir = dir.path().join("adder");
        let mut suite = EvalSuite::new("adder");
        for (i, split) in [Split::Train, Split::Train, Split::Validation, Split::Test].into_iter().enumerate() {
            let mut case = EvalCase::new(format!("r{i}"), format!("what is {i}+1"), String::new());
            case.expected_output = None;
            case.expectations = vec!["says the sum".into()];
            case.split = split;
            suite.evals.push(case);
        }
        suite.save(&EvalSuite::path_in(&skill_dir)).expect("suite");
        // Judges every rubric as met and answers anything else with a skill.
        let teacher = Scripted::new(|last: &str| {
            if last.contains("{\"criteria\"") {
                r#"{"criteria": [{"criterion": "says the sum", "passed": true, "evidence": "it does"}]}"#.to_string()
            } else {
                one_rewrite(last)
            }
        });
        let distiller = copycat_distiller(&teacher, skill_dir);
        let job = job_named("adder", "Add two small numbers.");
        let config = DistillConfig { max_rounds: 1, bare_job_candidate: false, ..DistillConfig::default() };
        let done = distiller.run(DistillState::new(job, config), &mut |_| {}).await.expect("run");
        let asked = teacher.asked();
        // The skill's draft, the judge on validation (no skill, the start) and on the sealed
        // test (with and without), and the recall check's unusable queries.
        assert!(asked > 5, "{asked}");
        assert_eq!(done.teacher_tokens, 15 * asked as u64, "every request's tokens, the judge's included");
        assert_eq!((done.teacher_prompt_tokens, done.teacher_completion_tokens), (10 * asked as u64, 5 * asked as u64));
    }

    #[tokio::test]
    async fn a_job_whose_answer_is_a_document_gets_cases_judged_by_criteria_not_compared() {
        use super::*;
        let dir = tempfile::tempdir().expect("tmp");
        let skill_dir = dir.path().join("weekly-update");
        let solved = std::sync::atomic::AtomicUsize::new(0);
        let teacher = Scripted::new(|last: &str| {
            if last.contains("test cases for this job") {
                let case = |week: u32| {
                    format!(
                        r#"{{"prompt": "Notes for week {week}: shipped search, fixed login. Draft the weekly update.",
                            "expected_output": "Week {week}: shipped search; fixed login.",
                            "criteria": ["names week {week}", "mentions search", "mentions the login fix"]}}"#
                    )
                };
                let cases: Vec<String> = (1..=8).map(case).collect();
                format!(r#"{{"format": "document", "cases": [{}]}}"#, cases.join(","))
            } else if last.contains("{\"criteria\"") {
                r#"{"criteria": [{"criterion": "names the week", "passed": true, "evidence": "it does"}]}"#.to_string()
            } else if last.starts_with("Notes for week") {
                solved.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "So the answer is Week 1.".to_string()
            } else {
                "```markdown\n---\nname: weekly-update\ndescription: Draft the weekly update from the week's notes.\n\
                 ---\n1. List what shipped.\n2. List what was fixed.\n3. Write one line per item under the week.\n```"
                    .to_string()
            }
        });
        let distiller = copycat_distiller(&teacher, skill_dir.clone());
        let job = job_named("weekly-update", "Draft the weekly update from the week's notes.");
        let config = DistillConfig { max_rounds: 1, bare_job_candidate: false, ..DistillConfig::default() };
        distiller.run(DistillState::new(job, config), &mut |_| {}).await.expect("run");
        let suite = EvalSuite::load(&EvalSuite::path_in(&skill_dir)).expect("suite");
        assert_eq!((suite.answer_pattern.as_deref(), suite.instructions.as_deref()), (None, None));
        assert_eq!(suite.evals.len(), 8);
        for case in &suite.evals {
            assert_eq!(case.expected_output, None, "{case:?}");
            assert_eq!(case.expectations.len(), 3, "{case:?}");
            assert_eq!(case.effective_graders(), [Grader::Rubric { criteria: case.expectations.clone() }]);
        }
        assert_eq!(solved.load(std::sync::atomic::Ordering::SeqCst), 0, "a document is not solved afresh and compared");
    }

    /// One fixed rewrite, whatever is asked.
    fn one_rewrite(_: &str) -> String {
        "```markdown\n---\nname: adder\ndescription: Add two small numbers and state the sum.\n---\n\
         1. Read the two numbers.\n2. Add them digit by digit.\n3. End with: So the answer is N.\n```\n\
         Rationale: clearer steps."
            .to_string()
    }

    /// Runs round `rounds_done + 1` (even: a worked-examples round) from candidate 0 over
    /// `candidates` (ids in order), with train cases 2+2, 3+3, 4+4 and 5+5 (all in the
    /// minibatch); returns the round log, the teacher's request count and the state.
    async fn round_over(candidates: &[String], rounds_done: usize) -> (super::RoundLog, usize, super::DistillState) {
        let candidates: Vec<(String, Option<super::ExamplePairs>)> =
            candidates.iter().map(|markdown| (markdown.clone(), None)).collect();
        round_over_with(&candidates, rounds_done, |_| {}).await
    }

    /// [`round_over`] with candidates whose worked-example pairs are stored (`Some`), and
    /// `adjust` applied to the state before the round.
    async fn round_over_with(
        candidates: &[(String, Option<super::ExamplePairs>)],
        rounds_done: usize,
        adjust: impl FnOnce(&mut super::DistillState),
    ) -> (super::RoundLog, usize, super::DistillState) {
        over_with(candidates, rounds_done, adjust, false).await
    }

    /// [`round_over_with`], or with `whole_run` the rest of the run ([`Distiller::run`], the
    /// suite on disk with one sealed test case), returning the last round's log.
    async fn over_with(
        candidates: &[(String, Option<super::ExamplePairs>)],
        rounds_done: usize,
        adjust: impl FnOnce(&mut super::DistillState),
        whole_run: bool,
    ) -> (super::RoundLog, usize, super::DistillState) {
        use super::*;
        let dir = tempfile::tempdir().expect("tmp");
        let case = |n: usize, a: u32, b: u32, split: Split| EvalCase {
            id: CaseId::Text(format!("c{n}")),
            prompt: format!("what is {a}+{b}"),
            expected_output: Some((a + b).to_string()),
            files: Vec::new(),
            workspace: None,
            workspace_files: Default::default(),
            expectations: Vec::new(),
            graders: vec![Grader::Normalized { expected: None }],
            split,
            mode: CaseMode::Answer,
        };
        let mut suite = EvalSuite::new("adder");
        suite.answer_pattern = Some(ANSWER_PATTERN.into());
        suite.evals = vec![
            case(0, 2, 2, Split::Train),
            case(1, 3, 3, Split::Train),
            case(2, 4, 4, Split::Train),
            case(5, 5, 5, Split::Train),
            case(3, 5, 6, Split::Validation),
            case(4, 6, 6, Split::Validation),
            case(6, 1, 1, Split::Test),
        ];
        let config = DistillConfig { minibatch: 4, worked_examples: 3, ..DistillConfig::default() };
        let job = DistillJob {
            skill_name: "adder".into(),
            description: "Add two small numbers.".into(),
            transcripts: Vec::new(),
            examples: Vec::new(),
        };
        let mut state = DistillState::new(job, config);
        state.stage = Stage::Measured;
        state.rounds = rounds_done;
        for (id, (markdown, worked_examples)) in candidates.iter().enumerate() {
            state.candidates.push(Candidate {
                id,
                parent: id.checked_sub(1),
                round: id,
                markdown: markdown.clone(),
                rationale: String::new(),
                // Candidate 0 alone is on the Pareto front, so it is the parent.
                validation: vec![(CaseId::Text("c3".into()), id == 0), (CaseId::Text("c4".into()), false)],
                tokens_per_case: 0.0,
                worked_examples: worked_examples.clone(),
            });
        }
        adjust(&mut state);
        let teacher = Scripted::new(one_rewrite);
        let runner = RunnerConfig { cache_dir: None, ..RunnerConfig::default() };
        let distiller = Distiller {
            student: Arc::new(Copycat),
            teacher: &teacher,
            skill_dir: dir.path().join("adder"),
            library_root: None,
            runner: runner.clone(),
        };
        if whole_run {
            suite.save(&EvalSuite::path_in(&distiller.skill_dir)).expect("suite on disk");
            let state = distiller.run(state, &mut |_| {}).await.expect("run");
            let log = state.log.last().cloned().expect("a round log");
            return (log, teacher.asked(), state);
        }
        let evaluator = Evaluator { student: Arc::new(Copycat), judge: None, suite: &suite, config: &runner };
        let (train, validation) = (suite.split(Split::Train), suite.split(Split::Validation));
        let log = distiller.round(&mut state, &evaluator, &train, &validation, &mut |_| {}).await.expect("round");
        (log, teacher.asked(), state)
    }

    #[tokio::test]
    async fn a_round_cut_short_after_its_candidate_was_saved_is_finished_under_its_own_number() {
        let procedure =
            "---\nname: adder\ndescription: Add two small numbers.\n---\n1. Add the numbers and say the sum.\n";
        let rewrite = "---\nname: adder\ndescription: Add two small numbers.\n---\n1. Add the two numbers.\n\
                       2. Say the sum as: So the answer is N.\n";
        // Round 1 saved candidate 1 and was killed while measuring it.
        let (log, asked, state) =
            round_over_with(&[(procedure.to_string(), None), (rewrite.to_string(), None)], 1, |state| {
                state.candidates[1].validation.clear();
                state.candidates[1].round = 1;
                state.candidates[1].parent = Some(0);
            })
            .await;
        assert_eq!(asked, 0, "the teacher's saved rewrite is measured, not asked for again");
        assert_eq!((log.round, log.candidate, state.rounds), (1, Some(1), 1), "{log:?}");
        assert_eq!(state.candidates.len(), 2);
        assert_eq!(state.candidates[1].validation.len(), 2, "its validation is measured and kept");
        assert_eq!(state.log.len(), 1);
        assert_eq!(state.interrupted_candidate(), None);
        // A finished round's unmeasured candidate (the minibatch gate turned it down) is not
        // measured again: the next round is a new one.
        let (log, _, state) =
            round_over_with(&[(procedure.to_string(), None), (rewrite.to_string(), None)], 1, |state| {
                state.candidates[1].validation.clear();
                state.candidates[1].round = 1;
                state.log.push(super::RoundLog {
                    round: 1,
                    parent: 0,
                    failures: 1,
                    candidate: Some(1),
                    validation_rate: None,
                    improved: false,
                    against_best: None,
                    note: "worse on the minibatch".into(),
                });
            })
            .await;
        assert_eq!((log.round, state.rounds), (2, 2), "{log:?}");

        // Cut short in the last round the limits allow: the run still finishes that round
        // before it converges, rather than leaving its candidate unmeasured.
        let (log, _, state) = over_with(
            &[(procedure.to_string(), None), (rewrite.to_string(), None)],
            1,
            |state| {
                state.candidates[1].validation.clear();
                state.config.max_rounds = 1;
            },
            true,
        )
        .await;
        assert_eq!((log.round, log.candidate, state.rounds), (1, Some(1), 1), "{log:?}");
        assert_eq!(state.candidates[1].validation.len(), 2);
        assert_eq!(state.stage, super::Stage::Finished);
    }

    #[tokio::test]
    async fn a_worked_examples_round_shows_only_cases_no_candidate_with_its_procedure_shows() {
        let procedure =
            "---\nname: adder\ndescription: Add two small numbers.\n---\n1. Add the numbers and say the sum.\n";
        let shown = super::with_worked_examples(
            procedure,
            &[("what is 2+2", "So the answer is 4."), ("what is 3+3", "So the answer is 6.")],
        );
        // The parent shows the student's answers to 2+2 and 3+3, which pass again while 4+4
        // fails: nothing new to show, so the round asks the teacher instead of rebuilding the
        // parent.
        let (log, asked, state) = round_over(std::slice::from_ref(&shown), 1).await;
        assert_eq!((asked, log.candidate), (1, Some(1)), "{log:?}");
        assert_eq!(state.candidates[1].rationale, "clearer steps.");
        assert!(log.note.contains("did not beat the best"), "{log:?}");
        // The parent shows no examples and passes 2+2 and 3+3 on its own, but a sibling with
        // the same procedure already shows those: the round would only rebuild the sibling.
        let (log, asked, _) = round_over(&[procedure.to_string(), shown.clone()], 1).await;
        assert_eq!((asked, log.candidate), (1, Some(2)), "{log:?}");
        // The parent shows 2+2; it passes 2+2 (copied) and 3+3: the child shows the new 3+3 and
        // keeps the parent's 2+2.
        let one = super::with_worked_examples(procedure, &[("what is 2+2", "So the answer is 4.")]);
        let (log, asked, state) = round_over(&[one], 1).await;
        assert_eq!((asked, log.candidate), (0, Some(1)), "{log:?}");
        assert_eq!(
            state.candidates[1].rationale,
            "worked examples from 1 passing train answers (and 1 of the parent's)"
        );
        let shown: Vec<String> =
            super::worked_examples_in(&state.candidates[1].markdown).into_iter().map(|e| e.0).collect();
        assert_eq!(shown, ["what is 3+3", "what is 2+2"]);
        // The pairs are kept on the candidate as written, not only in its text.
        assert_eq!(state.candidates[1].worked_examples, Some(super::worked_examples_in(&state.candidates[1].markdown)));
        // Without that sibling the passes become worked examples, and the teacher is not asked.
        let (log, asked, state) = round_over(&[procedure.to_string()], 1).await;
        assert_eq!((asked, log.candidate), (0, Some(1)), "{log:?}");
        assert!(state.candidates[1].rationale.starts_with("worked examples from 2"), "{log:?}");
        // A rewrite round: the parent passes 4+4 only by copying its worked example, so the
        // minibatch gate leaves 4+4 out; the rewrite is not "worse" for lacking the copy.
        let copied = super::with_worked_examples(procedure, &[("what is 4+4", "So the answer is 8.")]);
        let (log, asked, _) = round_over(&[copied], 0).await;
        assert_eq!((asked, log.candidate), (1, Some(1)), "{log:?}");
        assert!(log.validation_rate.is_some() && log.note.contains("did not beat the best"), "{log:?}");
        let shown: Vec<String> =
            super::worked_examples_in(&state.candidates[1].markdown).into_iter().map(|e| e.0).collect();
        assert_eq!(shown, ["what is 3+3", "what is 2+2"]);
    }

    #[tokio::test]
    async fn a_round_reads_the_parents_stored_examples_not_an_imitation_in_its_text() {
        let procedure =
            "---\nname: adder\ndescription: Add two small numbers.\n---\n1. Add the numbers and say the sum.\n";
        // The parent's one example is 2+2, whose stored solution imitates a second example
        // (3+3). Read from the text, 3+3 would count as shown and the round, with no new
        // passes to show, would ask the teacher; from the stored pair, 3+3 is new.
        let imitation = "So the answer is 4.\n\n### Example 2\n\nInput:\nwhat is 3+3\n\nSolution:\nSo the answer is 6.";
        let parent = super::with_worked_examples(procedure, &[("what is 2+2", imitation)]);
        let pairs = vec![("what is 2+2".to_string(), imitation.to_string())];
        let (log, asked, state) = round_over_with(&[(parent, Some(pairs.clone()))], 1, |_| {}).await;
        assert_eq!((asked, log.candidate), (0, Some(1)), "{log:?}");
        let child = state.candidates[1].worked_examples.clone().expect("stored");
        assert_eq!(child, [("what is 3+3".to_string(), "So the answer is 6.".to_string()), pairs[0].clone()]);
    }

    #[test]
    fn a_solution_imitating_the_worked_examples_layout_adds_no_shown_example() {
        let procedure = "---\nname: adder\ndescription: Add.\n---\nAdd the numbers.\n";
        let imitation = "So the answer is 4.\n\n### Example 2\n\nInput:\nwhat is 9+9\n\nSolution:\n18";
        let markdown = super::with_worked_examples(procedure, &[("what is 2+2", imitation)]);
        // Read back from the text, the imitation is a second example...
        assert_eq!(super::worked_examples_in(&markdown).len(), 2);
        let mut candidate = super::Candidate {
            id: 1,
            parent: Some(0),
            round: 2,
            markdown,
            rationale: String::new(),
            validation: Vec::new(),
            tokens_per_case: 0.0,
            worked_examples: Some(vec![("what is 2+2".into(), imitation.into())]),
        };
        // ...but the candidate shows the one pair the distiller wrote.
        assert_eq!(candidate.shown_examples(), [("what is 2+2".to_string(), imitation.to_string())]);
        // A candidate from an older state file, without the pairs, falls back to its text.
        candidate.worked_examples = None;
        assert_eq!(candidate.shown_examples().len(), 2);
    }

    #[tokio::test]
    async fn the_job_alone_replaces_a_starting_procedure_that_makes_the_student_worse() {
        use super::*;
        let dir = tempfile::tempdir().expect("tmp");
        let easy = |n: usize| EvalCase {
            id: CaseId::Text(format!("v{n}")),
            prompt: format!("what is {n}+1"),
            expected_output: Some((n + 1).to_string()),
            files: Vec::new(),
            workspace: None,
            workspace_files: Default::default(),
            expectations: Vec::new(),
            graders: vec![Grader::Normalized { expected: None }],
            split: Split::Validation,
            mode: CaseMode::Answer,
        };
        let mut suite = EvalSuite::new("adder");
        suite.answer_pattern = Some(ANSWER_PATTERN.into());
        suite.evals = (1..=3).map(easy).collect();
        let frontmatter = "---\nname: adder\ndescription: Add two small numbers.\nlicense: MIT\n---\n";
        // Copycat gets everything wrong under this procedure, and adds small numbers without it.
        let confusing = format!("{frontmatter}1. Write every carry as a separate number before adding.\n");
        let job = DistillJob {
            skill_name: "adder".into(),
            description: "Add two small whole numbers and say their sum in one sentence.".into(),
            transcripts: Vec::new(),
            examples: Vec::new(),
        };
        let runner = RunnerConfig { cache_dir: None, ..RunnerConfig::default() };
        let teacher = Scripted::new(one_rewrite);
        let distiller = Distiller {
            student: Arc::new(Copycat),
            teacher: &teacher,
            skill_dir: dir.path().join("adder"),
            library_root: None,
            runner: runner.clone(),
        };
        let evaluator = Evaluator { student: Arc::new(Copycat), judge: None, suite: &suite, config: &runner };
        let validation = suite.split(Split::Validation);
        let start = |markdown: &str| {
            let mut state = DistillState::new(job.clone(), DistillConfig::default());
            let mut candidate = Candidate {
                id: 0,
                parent: None,
                round: 0,
                markdown: markdown.to_string(),
                rationale: String::new(),
                validation: Vec::new(),
                tokens_per_case: 0.0,
                worked_examples: None,
            };
            let flags = if markdown.contains("carry") { [false; 3] } else { [true; 3] };
            candidate.validation = (1..=3).zip(flags).map(|(n, p)| (CaseId::Text(format!("v{n}")), p)).collect();
            state.candidates.push(candidate);
            state
        };
        let mut state = start(&confusing);
        distiller.measure_bare_job(&mut state, &evaluator, &validation, &mut |_| {}).await.expect("measured");
        assert_eq!(state.candidates.len(), 2);
        let bare = &state.candidates[1];
        assert_eq!(bare.markdown, format!("{frontmatter}{}\n", job.description));
        assert_eq!(
            (bare.rationale.as_str(), bare.parent, bare.validation_rate().passed),
            (BARE_JOB_RATIONALE, Some(0), 3)
        );
        assert_eq!(state.best, 1, "3 of 3 against 0 of 3");
        // Measured again (a resumed run): the same candidate, not a second one.
        distiller.measure_bare_job(&mut state, &evaluator, &validation, &mut |_| {}).await.expect("again");
        assert_eq!(state.candidates.len(), 2);
        // A starting skill as good as the job alone stays the best.
        let mut state = start(&format!("{frontmatter}1. Add the two numbers.\n2. Say the sum.\n"));
        distiller.measure_bare_job(&mut state, &evaluator, &validation, &mut |_| {}).await.expect("measured");
        assert_eq!((state.candidates.len(), state.best), (2, 0));
        // A short job is the user's own sentence, not a truncated draft: it is a candidate.
        let mut state = start(&confusing);
        state.job.description = "Add them.".into();
        distiller.measure_bare_job(&mut state, &evaluator, &validation, &mut |_| {}).await.expect("measured");
        assert_eq!(state.candidates.len(), 2);
        assert_eq!(state.candidates[1].markdown, format!("{frontmatter}Add them.\n"));
        // An empty one adds none.
        let mut state = start(&confusing);
        state.job.description = "  ".into();
        distiller.measure_bare_job(&mut state, &evaluator, &validation, &mut |_| {}).await.expect("skipped");
        assert_eq!(state.candidates.len(), 1);
    }

    #[test]
    fn a_skill_is_beneficial_with_lift_or_when_cheaper_and_no_worse_than_start_and_no_skill() {
        use super::*;
        let run = |passed: usize, tokens: u32| SuiteRun {
            label: String::new(),
            model: "m".into(),
            skill_hash: None,
            results: (0..10)
                .map(|i| evals::run::CaseResult {
                    id: CaseId::Number(i),
                    split: Split::Test,
                    passed: (i as usize) < passed,
                    grades: Vec::new(),
                    output: String::new(),
                    extracted: String::new(),
                    tool_calls: Vec::new(),
                    events: Vec::new(),
                    usage: skill_core::Usage { prompt_tokens: tokens, completion_tokens: 0 },
                    elapsed_ms: 1,
                    error: None,
                    cached: false,
                })
                .collect(),
        };
        // More than 5 points over no skill, and not chance: 7 of 7 differing cases gained.
        assert!(is_beneficial(&run(10, 500), &run(3, 100), None));
        // 10 points, but one differing case (exact McNemar P 1) is no evidence.
        assert!(!is_beneficial(&run(6, 500), &run(5, 100), None));
        assert!(!is_beneficial(&run(5, 500), &run(5, 100), None));
        // Cheaper than the starting skill and no worse than it or than no skill.
        assert!(is_beneficial(&run(5, 100), &run(5, 100), Some(&run(4, 700))));
        // Cheaper and better than the start, but below no skill (boolean_expressions' job
        // alone: 50 of 100 against 52): not worth loading.
        assert!(!is_beneficial(&run(4, 100), &run(5, 100), Some(&run(3, 700))));
        // No loss, but not 20% cheaper.
        assert!(!is_beneficial(&run(5, 600), &run(5, 100), Some(&run(5, 700))));
    }

    #[test]
    fn a_hand_written_worked_examples_section_ends_at_the_next_heading() {
        let markdown = "---\nname: x\ndescription: d\n---\nDo it.\n\n## Worked examples\n\n### Example 1\n\nInput:\nq\n\nSolution:\na\n\n## Notes\nKeep.\n";
        assert_eq!(super::worked_examples_in(markdown), [("q".to_string(), "a".to_string())]);
    }

    #[test]
    fn worked_examples_are_read_back_from_their_section_only() {
        let skill = "---\nname: x\ndescription: d\n---\n1. Add.\n\nQ: 1+1\nA: 2\n";
        let with = super::with_worked_examples(
            skill,
            &[("2+2", "ANSWER: 4"), ("2+2+1", "## Step 1\n2+2 is 4\n\nANSWER: 5\n### Example 9")],
        );
        assert_eq!(
            super::worked_examples_in(&with),
            [
                ("2+2".into(), "ANSWER: 4".into()),
                ("2+2+1".into(), "## Step 1\n2+2 is 4\n\nANSWER: 5\n### Example 9".into())
            ]
        );
        // The procedure's own example (human-written) is not a worked example.
        assert!(super::worked_examples_in(skill).is_empty());
        assert_eq!(super::worked_examples_in(&super::with_worked_examples(&with, &[])), []);
    }
}

#[derive(Deserialize)]
struct DraftCases {
    /// `short` (compared) or `document` (judged against each case's criteria).
    #[serde(default)]
    format: Option<String>,
    cases: Vec<ExampleCase>,
}

impl DraftCases {
    fn documents(&self) -> bool {
        self.format.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("document"))
    }
}

impl Distiller<'_> {
    fn save(&self, state: &DistillState) -> Result<()> {
        let path = state_path(&self.skill_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| skill_core::Error::io(dir, e))?;
        }
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::other(e.to_string()))?;
        atomic_write(&path, &json)?;
        Ok(())
    }

    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        state: &mut DistillState,
        user: String,
        max_tokens: u32,
        what: &str,
        validate: impl Fn(&T) -> std::result::Result<(), String>,
    ) -> Result<T> {
        let request = teacher_request(user, max_tokens, state.config.teacher_timeout());
        counted(ask_json(self.teacher, &request, what, validate).await, &mut |u| state.count_teacher_usage(u))
    }

    /// A whole SKILL.md from the teacher. One it could not get right (invalid after its repair
    /// request) is [`Error::TeacherOutput`]; a teacher that cannot be reached is another error.
    async fn ask_skill(
        &self,
        state: &mut DistillState,
        user: String,
        max_tokens: u32,
        what: &str,
        name: &str,
    ) -> Result<SkillDraft> {
        let request = teacher_request(user, max_tokens, state.config.teacher_timeout());
        let check = self.check_skill(name, MIN_DRAFT_BODY_CHARS);
        let answer =
            teacher::ask_parsed(self.teacher, &request, what, "SKILL.md in a ```markdown block", |text, cut| {
                let draft = parse_skill_reply(text, cut)?;
                check(&draft)?;
                Ok(draft)
            })
            .await;
        counted(answer, &mut |u| state.count_teacher_usage(u))
    }

    /// Checks a skill text: a valid SKILL.md named `name`, whose body has at least
    /// `min_body_chars` characters (a teacher's draft needs [`MIN_DRAFT_BODY_CHARS`]: less is a
    /// truncated or empty reply; the user's own job sentence only needs to be there).
    fn check_skill(
        &self,
        name: &str,
        min_body_chars: usize,
    ) -> impl Fn(&SkillDraft) -> std::result::Result<(), String> + '_ {
        let name = name.to_string();
        move |draft: &SkillDraft| {
            let skill =
                Skill::parse(&draft.skill_md, None).map_err(|e| format!("skill_md is not a valid SKILL.md: {e}"))?;
            if skill.meta().name.as_deref() != Some(name.as_str()) {
                return Err(format!("the frontmatter `name` must be `{name}`"));
            }
            let errors: Vec<String> = skill_core::validate_skill(&skill, ValidationMode::Lenient)
                .into_iter()
                .filter(|d| d.severity == skill_core::Severity::Error)
                .map(|d| d.to_string())
                .collect();
            if !errors.is_empty() {
                return Err(format!("skill_md breaks the format: {}", errors.join("; ")));
            }
            if skill.body().trim().chars().count() < min_body_chars.max(1) {
                return Err("the instructions are empty or too short".into());
            }
            Ok(())
        }
    }

    /// Runs (or resumes) the loop to the end and returns the final state.
    pub async fn run(
        &self,
        mut state: DistillState,
        on_event: &mut (dyn FnMut(DistillEvent) + Send),
    ) -> Result<DistillState> {
        let suite_path = EvalSuite::path_in(&self.skill_dir);
        if state.stage == Stage::Start {
            on_event(DistillEvent::Stage("drafting the skill and its evals".into()));
            self.draft(&mut state, &suite_path).await?;
            state.stage = Stage::Drafted;
            self.save(&state)?;
        }
        let suite = EvalSuite::load(&suite_path)?;
        let validation = suite.split(Split::Validation);
        let train = suite.split(Split::Train);
        let test = suite.split(Split::Test);
        if validation.is_empty() || train.is_empty() || test.is_empty() {
            return Err(Error::other(format!(
                "{} needs train, validation and test cases (has {}, {}, {})",
                suite_path.display(),
                train.len(),
                validation.len(),
                test.len()
            )));
        }
        // The rubric judge is the teacher; its tokens join the run's teacher count (and so
        // its budget) each time the state is saved.
        let judge = TokenCounting::new(self.teacher);
        let evaluator =
            Evaluator { student: self.student.clone(), judge: Some(&judge), suite: &suite, config: &self.runner };
        // Saves the state with the judge's tokens since the last save.
        let checkpoint = |state: &mut DistillState| {
            state.count_teacher_usage(&judge.take_usage());
            self.save(state)
        };

        if state.stage == Stage::Drafted {
            on_event(DistillEvent::Stage("measuring the baseline and the starting skill on validation".into()));
            let base = evaluator
                .run(&validation, None, "no skill", &mut |r: &evals::run::CaseResult| {
                    on_event(DistillEvent::Case(format!("no skill {}", r.id), r.passed))
                })
                .await?;
            state.baseline_validation = Some(base.rate());
            let start = state.candidates[0].clone();
            let run = evaluator
                .run(&validation, Some(&self.text(&start.markdown)), "start", &mut |r: &evals::run::CaseResult| {
                    on_event(DistillEvent::Case(format!("start {}", r.id), r.passed))
                })
                .await?;
            record_validation(&mut state.candidates[0], &run);
            state.best = 0;
            if state.config.bare_job_candidate {
                on_event(DistillEvent::Stage("measuring the job alone, without a procedure".into()));
                self.measure_bare_job(&mut state, &evaluator, &validation, on_event).await?;
            }
            state.stage = Stage::Measured;
            checkpoint(&mut state)?;
        }

        if state.stage == Stage::Measured {
            // A round cut short is finished even when the limits are reached (it was the
            // last round, or a resume lowered them): its candidate is measured either way.
            while state.interrupted_candidate().is_some() || state.should_stop().is_none() {
                let log = self.round(&mut state, &evaluator, &train, &validation, on_event).await?;
                on_event(DistillEvent::Round(log));
                checkpoint(&mut state)?;
            }
            let why = state.should_stop().unwrap_or_default();
            on_event(DistillEvent::Stage(format!("converged: {why}")));
            state.stage = Stage::Converged;
            checkpoint(&mut state)?;
        }

        if state.stage == Stage::Converged {
            on_event(DistillEvent::Stage("checking that retrieval finds the skill".into()));
            // A teacher that cannot write usable queries leaves retrieval unchecked (and says
            // so); the sealed test does not depend on it.
            match self.recall_check(&mut state).await {
                Ok(()) => {}
                Err(Error::TeacherOutput(why)) => {
                    on_event(DistillEvent::Stage(format!("recall not checked: {}", clip(&why, 200))));
                    state.recall = Some(RecallReport::not_checked(why));
                }
                Err(e) => return Err(e),
            }
            state.stage = Stage::RecallChecked;
            checkpoint(&mut state)?;
        }

        if state.stage == Stage::RecallChecked {
            on_event(DistillEvent::Stage("measuring the sealed test split".into()));
            let best = state.candidates[state.best].clone();
            let with = evaluator
                .run(&test, Some(&self.text(&best.markdown)), "distilled", &mut |r: &evals::run::CaseResult| {
                    on_event(DistillEvent::Case(format!("distilled {}", r.id), r.passed))
                })
                .await?;
            let none = evaluator
                .run(&test, None, "no skill", &mut |r: &evals::run::CaseResult| {
                    on_event(DistillEvent::Case(format!("no skill {}", r.id), r.passed))
                })
                .await?;
            let start = state.candidates[0].clone();
            let started_from = if best.id == 0 {
                None
            } else {
                Some(
                    evaluator
                        .run(&test, Some(&self.text(&start.markdown)), "start", &mut |r: &evals::run::CaseResult| {
                            on_event(DistillEvent::Case(format!("start {}", r.id), r.passed))
                        })
                        .await?,
                )
            };
            let lift = Lift::paired(&with.passed_flags(), &none.passed_flags());
            let beneficial = is_beneficial(&with, &none, started_from.as_ref());
            let message =
                format!("distilled: round {}, validation {:.0}%", best.round, best.validation_rate().rate * 100.0);
            // Only a beneficial result becomes the SKILL.md retrieval loads; otherwise it is
            // kept as a version to adopt, and the skill stays on the one the run started
            // from (when there is one on disk to stay on).
            let adopted = beneficial || !self.skill_dir.join(skill_core::library::SKILL_FILE).exists();
            let info = with_versions(&self.skill_dir, |store| {
                if adopted { store.save(&best.markdown, &message) } else { store.record(&best.markdown, &message) }
            })?;
            let mut scores = std::collections::BTreeMap::new();
            scores.insert("test_pass_rate".into(), with.rate().rate);
            scores.insert("test_pass_rate_no_skill".into(), none.rate().rate);
            scores.insert("test_lift".into(), lift.delta);
            scores.insert("validation_pass_rate".into(), best.validation_rate().rate);
            scores.insert("tokens_per_case".into(), with.tokens_per_case());
            scores.insert("teacher_tokens".into(), state.teacher_tokens as f64);
            scores.insert("beneficial".into(), if beneficial { 1.0 } else { 0.0 });
            with_versions(&self.skill_dir, |store| store.record_scores(info.version, &scores))?;
            let mut benchmark =
                evals::report::Benchmark::load(&self.skill_dir.join("evals/results"), &state.job.skill_name)?;
            benchmark.push(evals::report::BenchmarkEntry::new(&with, Some(&none), Some(info.version)));
            benchmark.write(&self.skill_dir.join("evals/results"))?;
            state.report = Some(FinalReport {
                with_skill: with.rate(),
                no_skill: none.rate(),
                starting_skill: started_from.as_ref().map(SuiteRun::rate),
                lift,
                tokens_per_case: (with.tokens_per_case(), none.tokens_per_case()),
                teacher_tokens: state.teacher_tokens,
                version: info.version,
                beneficial,
                adopted,
            });
            state.stage = Stage::Finished;
            checkpoint(&mut state)?;
        }
        Ok(state)
    }

    /// The job alone as a candidate: the starting skill's frontmatter with the job sentence as
    /// its body, measured on validation; it becomes the best when it beats the starting skill
    /// by the minimum gain. Skipped when that is no valid skill (an empty job) or is the
    /// starting skill itself. Called again on the same state, it adds no second
    /// candidate.
    async fn measure_bare_job(
        &self,
        state: &mut DistillState,
        evaluator: &Evaluator<'_>,
        validation: &[&EvalCase],
        on_event: &mut (dyn FnMut(DistillEvent) + Send),
    ) -> Result<()> {
        let Some(markdown) = with_body(&state.candidates[0].markdown, &state.job.description) else {
            on_event(DistillEvent::Stage("job alone skipped: the starting skill has no frontmatter".into()));
            return Ok(());
        };
        let draft = SkillDraft { skill_md: markdown.clone(), rationale: String::new() };
        if markdown == state.candidates[0].markdown {
            return Ok(());
        }
        if let Err(why) = self.check_skill(&state.job.skill_name, 1)(&draft) {
            on_event(DistillEvent::Stage(format!("job alone skipped: {why}")));
            return Ok(());
        }
        let id = match state.candidates.iter().position(|c| c.markdown == markdown) {
            Some(id) => id,
            None => {
                let id = state.candidates.len();
                state.candidates.push(Candidate {
                    id,
                    parent: Some(0),
                    round: 0,
                    markdown: markdown.clone(),
                    rationale: BARE_JOB_RATIONALE.into(),
                    validation: Vec::new(),
                    tokens_per_case: 0.0,
                    worked_examples: Some(Vec::new()),
                });
                id
            }
        };
        let run = evaluator
            .run(validation, Some(&self.text(&markdown)), "job alone", &mut |r: &evals::run::CaseResult| {
                on_event(DistillEvent::Case(format!("job alone {}", r.id), r.passed))
            })
            .await?;
        record_validation(&mut state.candidates[id], &run);
        let config = &state.config;
        let (replaces, _) = replaces_best(
            &state.candidates[id],
            &state.candidates[state.best],
            config.min_validation_gain,
            config.keep_p,
        );
        if replaces {
            state.best = id;
        }
        Ok(())
    }

    /// The recall check on the best candidate; a rewritten description the check keeps
    /// replaces its own. Its validation scores stay true: the student is shown the skill's
    /// body, not its frontmatter.
    async fn recall_check(&self, state: &mut DistillState) -> Result<()> {
        let checker = RecallChecker {
            teacher: self.teacher,
            skill_name: self.skill_folder_name(),
            library_root: self.library_root.clone(),
            queries_per_kind: state.config.recall_queries,
            teacher_timeout: state.config.teacher_timeout(),
            // As `skd run` finds skills: by BM25.
            embedder: None,
            vector_cache: None,
        };
        let best = state.best;
        let markdown = state.candidates[best].markdown.clone();
        let outcome = checker.check(&markdown, &mut |usage| state.count_teacher_usage(usage)).await?;
        if outcome.report.rewrite_kept {
            state.candidates[best].markdown = outcome.markdown;
        }
        state.recall = Some(outcome.report);
        Ok(())
    }

    /// The skill's folder name, which search and the student know it by.
    fn skill_folder_name(&self) -> String {
        self.skill_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn text(&self, markdown: &str) -> SkillText {
        SkillText { name: self.skill_folder_name(), markdown: markdown.to_string() }
    }

    async fn draft(&self, state: &mut DistillState, suite_path: &Path) -> Result<()> {
        let name = state.job.skill_name.clone();
        if suite_path.exists() && state.config.top_up_train > 0 {
            self.top_up_train(state, suite_path).await?;
        }
        // The cases first, so that a skill the teacher drafts can be shown some of them.
        if !suite_path.exists() {
            let mut cases = state.job.examples.clone();
            let wanted = state.config.draft_cases.saturating_sub(cases.len());
            if wanted > 0 {
                let mut user = format!(
                    "Write {wanted} test cases for this job, varied and of realistic difficulty, each with the exact \
                     expected answer (short: a word, a number, a phrase).\n\nJob: {}\n",
                    state.job.description
                );
                // Only examples bound for train (see the split below): validation and test
                // cases must not shape the drafted train cases.
                let train_bound: Vec<&ExampleCase> = cases
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| drafted_split(*i) == Split::Train)
                    .map(|(_, c)| c)
                    .collect();
                if !train_bound.is_empty() {
                    user.push_str("\nCases the user gave (write new ones like these, not copies):\n");
                    for c in train_bound.iter().take(3) {
                        if c.is_document() {
                            user.push_str(&format!("- prompt: {:?} criteria: {:?}\n", c.prompt, c.criteria));
                        } else {
                            user.push_str(&format!(
                                "- prompt: {:?} expected_output: {:?}\n",
                                c.prompt, c.expected_output
                            ));
                        }
                    }
                }
                // The opening above is what recorded teachers matched on; the form of the
                // answer is asked for here.
                user.push_str(
                    "\nIf the job's answer is a document (a message, a plan, a summary, a filled-in form) rather \
                     than a short answer, set \"format\" to \"document\" and give each case \"criteria\": 3 to 6 \
                     checks a good answer passes, each about one thing it must contain or get right; then \
                     \"expected_output\" is one good answer. Otherwise \"format\" is \"short\".\n\nReply with JSON \
                     only: {\"format\": \"short\", \"cases\": [{\"prompt\": \"...\", \"expected_output\": \"...\", \
                     \"numeric\": false, \"criteria\": []}]}",
                );
                let at_least = wanted.min(6);
                let mut drafted: DraftCases = self
                    .ask(state, user, 200 + 80 * wanted as u32, "eval cases", |c: &DraftCases| {
                        if c.cases.len() < at_least {
                            return Err(format!("need at least {at_least} cases, got {}", c.cases.len()));
                        }
                        if c.documents() {
                            if c.cases.iter().any(|c| c.prompt.trim().is_empty() || !c.is_document()) {
                                return Err(
                                    "with \"format\": \"document\" every case needs a prompt and criteria".into()
                                );
                            }
                        } else if c
                            .cases
                            .iter()
                            .any(|c| c.prompt.trim().is_empty() || c.expected_output.trim().is_empty())
                        {
                            return Err("every case needs a prompt and an expected_output".into());
                        }
                        Ok(())
                    })
                    .await?;
                tracing::info!(given = cases.len(), drafted = drafted.cases.len(), "teacher drafted eval cases");
                // Short answers are compared: criteria a teacher added to them anyway would
                // turn them into judged documents.
                if !drafted.documents() {
                    drafted.cases.iter_mut().for_each(|c| c.criteria.clear());
                }
                // A drafted case that repeats one already there (the user's, or its own) would
                // count twice, or leak a test case into train.
                let mut seen = SeenTasks::default();
                cases.iter().for_each(|c| _ = seen.insert(&c.prompt));
                let fresh: Vec<ExampleCase> = drafted.cases.into_iter().filter(|c| seen.insert(&c.prompt)).collect();
                // The check sees the train-bound short answers only, as the drafting does.
                let given: Vec<(String, String)> = cases
                    .iter()
                    .enumerate()
                    .filter(|(i, c)| {
                        drafted_split(*i) == Split::Train
                            && !c.is_document()
                            && !c.expected_output.trim().is_empty()
                            && !c.expected_output.contains('\n')
                    })
                    .map(|(_, c)| (c.prompt.clone(), c.expected_output.trim().to_string()))
                    .collect();
                for case in fresh {
                    // A document has no one right answer to solve afresh and compare.
                    if state.config.verify_drafted_cases
                        && !case.is_document()
                        && !self.teacher_agrees(state, &case, &given).await?
                    {
                        tracing::info!(prompt = %case.prompt, expected = %case.expected_output, "dropped a mislabelled case");
                        state.dropped_cases.push(case);
                    } else {
                        cases.push(case);
                    }
                }
                if cases.len() < 5 {
                    return Err(Error::other(format!(
                        "only {} usable eval cases: the teacher's solutions disagreed with {} of its drafted answers; \
                         give examples with --examples or use a stronger teacher",
                        cases.len(),
                        state.dropped_cases.len()
                    )));
                }
            }
            let mut suite = EvalSuite::new(&name);
            // Short answers are read back from "So the answer is X."; documents are judged
            // whole, so they get no answer format.
            if cases.iter().any(|c| !c.is_document()) {
                suite.answer_pattern = Some(ANSWER_PATTERN.to_string());
                suite.instructions = Some(ANSWER_INSTRUCTIONS.to_string());
            }
            for (i, c) in cases.into_iter().enumerate() {
                let split = drafted_split(i);
                let numeric = c.numeric && evals::grade::last_number(&c.expected_output).is_some();
                let document = c.is_document();
                suite.evals.push(EvalCase {
                    id: CaseId::Text(format!("d{i:03}")),
                    prompt: c.prompt,
                    expected_output: (!document).then_some(c.expected_output),
                    files: Vec::new(),
                    workspace: None,
                    workspace_files: Default::default(),
                    // A document is graded by the rubric judge against its criteria.
                    expectations: c.criteria,
                    graders: if document {
                        Vec::new()
                    } else if numeric {
                        vec![Grader::Numeric { expected: None, tolerance: 1e-6, unit: None }]
                    } else {
                        vec![Grader::Normalized { expected: None }]
                    },
                    split,
                    mode: CaseMode::Answer,
                });
            }
            if let Some(dir) = suite_path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| skill_core::Error::io(dir, e))?;
            }
            suite.save(suite_path)?;
            // Saved with the suite: a run that dies while the skill is drafted resumes with
            // these cases, their teacher tokens and the cases dropped. (Not before: a first
            // request that fails, say on a wrong URL, leaves no run in progress behind.)
            self.save(state)?;
        }
        let skill_md = self.skill_dir.join("SKILL.md");
        let markdown = if skill_md.exists() {
            std::fs::read_to_string(&skill_md).map_err(|e| skill_core::Error::io(&skill_md, e))?
        } else {
            let mut user = format!(
                "Write the SKILL.md for this job. The frontmatter `name` is `{name}`; the description says what the \
                 skill does and when to use it, with the words a user would search for.\n\nJob: {}\n",
                state.job.description
            );
            // Train cases only: validation and test stay unseen.
            let suite = EvalSuite::load(suite_path)?;
            let train = suite.split(Split::Train);
            if !train.is_empty() {
                user.push_str("\nExamples of inputs and their exact answers:\n");
                for c in train.iter().take(3) {
                    match &c.expected_output {
                        Some(answer) => {
                            user.push_str(&format!("- input: {}\n  answer: {answer}\n", clip(&c.prompt, 400)))
                        }
                        // A document case: what its answer must do.
                        None => user.push_str(&format!(
                            "- input: {}\n  a good answer: {}\n",
                            clip(&c.prompt, 400),
                            c.expectations.join("; ")
                        )),
                    }
                }
            }
            for t in state.job.transcripts.iter().take(3) {
                user.push_str(&format!("\nA past run of a similar task:\n{}\n", clip(t, 1500)));
            }
            user.push('\n');
            user.push_str(SKILL_REPLY_FORMAT);
            let draft = self.ask_skill(state, user, 1200, "skill draft", &name).await?;
            std::fs::create_dir_all(&self.skill_dir).map_err(|e| skill_core::Error::io(&self.skill_dir, e))?;
            with_versions(&self.skill_dir, |store| store.save(&draft.skill_md, "drafted by the teacher"))?;
            draft.skill_md
        };
        state.candidates = vec![Candidate {
            id: 0,
            parent: None,
            round: 0,
            markdown,
            rationale: "starting skill".into(),
            validation: Vec::new(),
            tokens_per_case: 0.0,
            // Whatever examples it has were written before this run: read from its text.
            worked_examples: None,
        }];
        Ok(())
    }

    /// Tops up a given suite's train split to [`DistillConfig::top_up_train`] cases drafted by
    /// the teacher from the suite's own short-answer train cases, each checked like drafted
    /// cases are. A suite whose train cases have no short reference (rubric cases) is left as
    /// it is, and so is the suite when the teacher's reply is unusable: the user's own cases
    /// are enough to go on with. The suite is saved before the state, so a run that dies in
    /// between finds its train split full and does not ask again.
    async fn top_up_train(&self, state: &mut DistillState, suite_path: &Path) -> Result<()> {
        let mut suite = EvalSuite::load(suite_path)?;
        let train = suite.split(Split::Train);
        let wanted = state.config.top_up_train.saturating_sub(train.len());
        // Short answers to the task alone: a rubric case has no reference to copy, a JSON
        // answer's fields could not be graded as the user's are, and a case over files the
        // user's agent read would be drafted without them.
        let examples: Vec<(&str, &str)> = train
            .iter()
            .filter(|c| c.expectations.is_empty() && !c.graders.iter().any(|g| matches!(g, Grader::JsonField { .. })))
            .filter(|c| c.mode == CaseMode::Answer)
            .filter_map(|c| {
                let expected = c.expected_output.as_deref()?.trim();
                (!expected.is_empty() && !expected.contains('\n')).then_some((c.prompt.as_str(), expected))
            })
            .collect();
        if wanted == 0 || examples.is_empty() {
            if wanted > 0 {
                tracing::info!(train = train.len(), "train split not topped up: no short-answer train case to go by");
            }
            return Ok(());
        }
        let mut user = format!(
            "Here are tasks a user gave an assistant for one job, each with the answer the user accepted. Write \
             {wanted} new tasks of the same job, varied like real requests (other names, amounts, dates), each with its \
             exact expected answer in the same form.\n\nJob: {}\n\nThe user's tasks:\n",
            state.job.description
        );
        for (prompt, expected) in examples.iter().take(8) {
            user.push_str(&format!("- prompt: {prompt:?} expected_output: {expected:?}\n"));
        }
        user.push_str(
            "\nReply with JSON only: {\"cases\": [{\"prompt\": \"...\", \"expected_output\": \"...\", \"numeric\": \
             false}]}",
        );
        let drafted: DraftCases = match self
            .ask(state, user, 200 + 80 * wanted as u32, "train cases", |c: &DraftCases| {
                if c.cases.iter().any(|c| c.prompt.trim().is_empty() || c.expected_output.trim().is_empty()) {
                    return Err("every case needs a prompt and an expected_output".into());
                }
                Ok(())
            })
            .await
        {
            Ok(drafted) => drafted,
            Err(Error::TeacherOutput(why)) => {
                tracing::info!(%why, "train split not topped up: the teacher's cases were unusable");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut seen = SeenTasks::default();
        suite.evals.iter().for_each(|c| _ = seen.insert(&c.prompt));
        let accepted: Vec<(String, String)> =
            examples.iter().map(|(prompt, answer)| (prompt.to_string(), answer.to_string())).collect();
        let mut added = 0;
        for case in drafted.cases.into_iter().filter(|c| seen.insert(&c.prompt)) {
            if added == wanted {
                break;
            }
            if state.config.verify_drafted_cases && !self.teacher_agrees(state, &case, &accepted).await? {
                tracing::info!(prompt = %case.prompt, expected = %case.expected_output, "dropped a mislabelled case");
                state.dropped_cases.push(case);
                continue;
            }
            let expected = case.expected_output.trim().to_string();
            // Graded as the suite grades the user's own short answers.
            let grader = crate::cases::short_answer_grader(&expected);
            let mut id = suite.evals.len();
            while suite.evals.iter().any(|c| c.id == CaseId::Text(format!("teacher-{id:03}"))) {
                id += 1;
            }
            let mut eval = EvalCase::new(format!("teacher-{id:03}"), case.prompt, expected);
            eval.graders = vec![grader];
            eval.split = Split::Train;
            suite.evals.push(eval);
            added += 1;
        }
        state.topped_up += added;
        if added > 0 {
            suite.save(suite_path)?;
        }
        // With the suite: a run that dies later resumes with the count, the dropped cases and
        // their teacher tokens (a death between the two writes loses only the count).
        self.save(state)?;
        tracing::info!(added, dropped = state.dropped_cases.len(), "train split topped up by the teacher");
        Ok(())
    }

    /// Whether the teacher, solving `case` afresh, reaches its drafted answer. It is shown the
    /// `accepted` tasks and answers (the user's, at most 8): a user's answers may follow a
    /// rule no task states (a tip rounded up to the next whole euro), and a check that did
    /// not see them would drop every drafted case that follows it (a live night did).
    async fn teacher_agrees(
        &self,
        state: &mut DistillState,
        case: &ExampleCase,
        accepted: &[(String, String)],
    ) -> Result<bool> {
        let mut prompt = format!("{}\n\n", case.prompt);
        if !accepted.is_empty() {
            prompt.push_str("Answer it the way these answers to other tasks of the same job were accepted:\n");
            for (task, answer) in accepted.iter().take(8) {
                prompt.push_str(&format!("- {task} -> {answer}\n"));
            }
            prompt.push('\n');
        }
        prompt.push_str(ANSWER_INSTRUCTIONS);
        let mut request = CompletionRequest::new(vec![ChatMessage::new(Role::User, prompt)]);
        request.max_tokens = 1000;
        request.timeout = state.config.teacher_timeout();
        // A failed or unfinished check says nothing about the label: the case is kept.
        let answer = match self.teacher.complete(&request).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(error = %e, "could not check a drafted case; keeping it");
                return Ok(true);
            }
        };
        state.count_teacher_usage(&answer.usage);
        let pattern = regex::Regex::new(ANSWER_PATTERN).map_err(|e| Error::other(e.to_string()))?;
        let Some(got) =
            pattern.captures_iter(&answer.text).last().and_then(|c| c.get(1)).map(|m| m.as_str().to_string())
        else {
            return Ok(true);
        };
        Ok(same_answer(&got, &case.expected_output))
    }

    async fn round(
        &self,
        state: &mut DistillState,
        evaluator: &Evaluator<'_>,
        train: &[&EvalCase],
        validation: &[&EvalCase],
        on_event: &mut (dyn FnMut(DistillEvent) + Send),
    ) -> Result<RoundLog> {
        if let Some(id) = state.interrupted_candidate() {
            // The round was cut short (a crash or Ctrl-C) after its candidate was saved: it
            // is finished, under its own number, rather than counted again and orphaned.
            let round = state.rounds;
            on_event(DistillEvent::Stage(format!("finishing round {round}: measuring its candidate #{id}")));
            let parent_id = state.candidates[id].parent.unwrap_or(state.best);
            let (batch, parent_run) =
                self.parent_on_minibatch(state, evaluator, train, round, parent_id, on_event).await?;
            let log = RoundLog {
                round,
                parent: parent_id,
                failures: parent_run.results.iter().filter(|r| !r.passed).count(),
                candidate: Some(id),
                validation_rate: None,
                improved: false,
                against_best: None,
                note: String::new(),
            };
            return self.finish_round(state, evaluator, id, &batch, &parent_run, validation, log, on_event).await;
        }
        state.rounds += 1;
        let round = state.rounds;
        let front = state.pareto_front();
        let parent_id = if front.is_empty() { state.best } else { front[(round - 1) % front.len()].0 };
        let parent = state.candidates[parent_id].clone();
        let (batch, parent_run) = self.parent_on_minibatch(state, evaluator, train, round, parent_id, on_event).await?;
        let failures: Vec<String> = parent_run
            .results
            .iter()
            .zip(&batch)
            .filter(|(r, _)| !r.passed)
            .map(|(r, case)| {
                let evidence: Vec<String> = r.grades.iter().filter(|g| !g.passed).map(|g| g.evidence.clone()).collect();
                format!(
                    "### Input\n{}\n### Expected\n{}\n### The model wrote\n{}\n### Grader\n{}{}",
                    case.prompt,
                    case.expected_output.as_deref().unwrap_or("(see grader)"),
                    clip(&r.output, 1200),
                    evidence.join("; "),
                    r.error.as_deref().map(|e| format!("\nerror: {e}")).unwrap_or_default()
                )
            })
            .collect();
        let mut log = RoundLog {
            round,
            parent: parent_id,
            failures: failures.len(),
            candidate: None,
            validation_rate: None,
            improved: false,
            against_best: None,
            note: String::new(),
        };
        if failures.is_empty() {
            state.rounds_without_gain += 1;
            log.note = "no failures on this minibatch".into();
            state.log.push(log.clone());
            return Ok(log);
        }
        // Even rounds show the student its own verified answers (train cases it passed with
        // the parent) as worked examples; odd rounds, and rounds with nothing passed, ask the
        // teacher for a rewrite. Small students follow a worked example in their own words
        // more reliably than a procedure alone. Only cases no candidate with this procedure
        // shows yet: a pass on a case the parent shows is the student copying it, and cases a
        // sibling shows would only rebuild that sibling.
        let procedure = without_worked_examples(&parent.markdown);
        let parent_examples = parent.shown_examples();
        let shown_with_this_procedure: Vec<String> = state
            .candidates
            .iter()
            .filter(|c| without_worked_examples(&c.markdown) == procedure)
            .flat_map(|c| c.shown_examples().into_iter().map(|(input, _)| input))
            .collect();
        let examples: Vec<(&EvalCase, &str)> = parent_run
            .results
            .iter()
            .zip(&batch)
            .filter(|(r, case)| r.passed && case.mode == CaseMode::Answer && r.error.is_none())
            .filter(|(_, case)| !shown_with_this_procedure.iter().any(|input| *input == as_shown(&case.prompt)))
            .map(|(r, case)| (*case, r.output.as_str()))
            .take(state.config.worked_examples)
            .collect();
        let (markdown, rationale, shown_pairs): (String, String, ExamplePairs) =
            if round.is_multiple_of(2) && !examples.is_empty() {
                // The new examples first, then as many of the parent's own as the limit allows
                // (with as many new passes as the limit, none of the parent's remain).
                let mut pairs: Vec<(&str, &str)> = examples.iter().map(|(c, out)| (c.prompt.as_str(), *out)).collect();
                for (input, solution) in &parent_examples {
                    if pairs.len() < state.config.worked_examples {
                        pairs.push((input.as_str(), solution.as_str()));
                    }
                }
                let markdown = with_worked_examples(&parent.markdown, &pairs);
                if let Err(why) = self.check_skill(&state.job.skill_name, MIN_DRAFT_BODY_CHARS)(&SkillDraft {
                    skill_md: markdown.clone(),
                    rationale: String::new(),
                }) {
                    state.rounds_without_gain += 1;
                    log.note = format!("worked examples break the skill: {why}");
                    state.log.push(log.clone());
                    return Ok(log);
                }
                let rationale = format!(
                    "worked examples from {} passing train answers{}",
                    examples.len(),
                    if pairs.len() > examples.len() {
                        format!(" (and {} of the parent's)", pairs.len() - examples.len())
                    } else {
                        String::new()
                    }
                );
                let shown_pairs =
                    pairs.iter().map(|(input, solution)| (as_shown(input), solution.trim().to_string())).collect();
                (markdown, rationale, shown_pairs)
            } else {
                let name = state.job.skill_name.clone();
                // The teacher rewrites the procedure; worked examples are the student's own
                // (a later even round adds fresh ones), so they are not its to copy out.
                let user = format!(
                    "The small model followed this skill and failed the cases below. Rewrite the skill so it handles \
                 these and similar inputs: fix the procedure where it is wrong or unclear, add the missing step or \
                 check, keep it short. Do not mention these specific inputs. The frontmatter `name` stays `{name}`.\n\n\
                 ## Current SKILL.md\n{}\n\n## Failures\n{}\n\n{SKILL_REPLY_FORMAT}",
                    procedure,
                    failures.join("\n\n")
                );
                // Room for the whole skill again (about 3.5 characters a token) and the rationale.
                let budget = (procedure.len() as f64 / 3.5 * 1.5) as u32 + 400;
                match self.ask_skill(state, user, budget.max(1500), "skill rewrite", &name).await {
                    // The teacher's own text: a worked-examples section it wrote is read back
                    // (no student output in it to imitate the layout).
                    Ok(draft) => {
                        let shown_pairs = worked_examples_in(&draft.skill_md);
                        (draft.skill_md, draft.rationale, shown_pairs)
                    }
                    // An unusable rewrite costs the round, not the run: everything measured is
                    // kept and the loop goes on. (A teacher that cannot be reached stops the
                    // run, to be resumed.)
                    Err(Error::TeacherOutput(why)) => {
                        state.rounds_without_gain += 1;
                        log.note = format!("the teacher's rewrite was unusable: {}", clip(&why, 300));
                        state.log.push(log.clone());
                        return Ok(log);
                    }
                    Err(e) => return Err(e),
                }
            };
        // The same text again (the same parent and passes make the same worked examples) is
        // not a new candidate: its scores are already known.
        if let Some(same) = state.candidates.iter().find(|c| c.markdown == markdown) {
            state.rounds_without_gain += 1;
            log.note = format!("same skill as candidate #{}", same.id);
            state.log.push(log.clone());
            return Ok(log);
        }
        let id = state.candidates.len();
        state.candidates.push(Candidate {
            id,
            parent: Some(parent_id),
            round,
            markdown: markdown.clone(),
            rationale,
            validation: Vec::new(),
            tokens_per_case: 0.0,
            worked_examples: Some(shown_pairs),
        });
        log.candidate = Some(id);
        // Saved before it is measured: a crash now keeps the teacher's work, and a resumed run
        // finishes this round ([`DistillState::interrupted_candidate`]).
        self.save(state)?;
        self.finish_round(state, evaluator, id, &batch, &parent_run, validation, log, on_event).await
    }

    /// Round `round`'s train minibatch, and candidate `parent_id` run on it.
    async fn parent_on_minibatch<'c>(
        &self,
        state: &DistillState,
        evaluator: &Evaluator<'_>,
        train: &[&'c EvalCase],
        round: usize,
        parent_id: usize,
        on_event: &mut (dyn FnMut(DistillEvent) + Send),
    ) -> Result<(Vec<&'c EvalCase>, SuiteRun)> {
        let batch = round_minibatch(round, state.config.minibatch, train);
        let parent = self.text(&state.candidates[parent_id].markdown);
        let run = evaluator
            .run(&batch, Some(&parent), "parent", &mut |r: &evals::run::CaseResult| {
                on_event(DistillEvent::Case(format!("round {round} parent {}", r.id), r.passed))
            })
            .await?;
        Ok((batch, run))
    }

    /// The second half of a round: candidate `id` (made from `parent_run` on `batch`) goes
    /// through the minibatch gate, then validation, and becomes the best when it wins there.
    #[allow(clippy::too_many_arguments)]
    async fn finish_round(
        &self,
        state: &mut DistillState,
        evaluator: &Evaluator<'_>,
        id: usize,
        batch: &[&EvalCase],
        parent_run: &SuiteRun,
        validation: &[&EvalCase],
        mut log: RoundLog,
        on_event: &mut (dyn FnMut(DistillEvent) + Send),
    ) -> Result<RoundLog> {
        let round = log.round;
        let mut report = |label: &str, r: &evals::run::CaseResult| {
            on_event(DistillEvent::Case(format!("round {round} {label} {}", r.id), r.passed))
        };
        let candidate = state.candidates[id].clone();
        let text = self.text(&candidate.markdown);
        // The gate runs on minibatch cases neither the candidate nor the parent shows as worked
        // examples: a pass on those is a copy (none left: straight to validation).
        let shown: Vec<String> = candidate
            .shown_examples()
            .into_iter()
            .chain(state.candidates[log.parent].shown_examples())
            .map(|(input, _)| input)
            .collect();
        let gate: Vec<&EvalCase> =
            batch.iter().copied().filter(|c| !shown.iter().any(|input| *input == as_shown(&c.prompt))).collect();
        if !gate.is_empty() {
            let parent_passed = parent_run
                .results
                .iter()
                .zip(batch)
                .filter(|(r, c)| r.passed && gate.iter().any(|g| std::ptr::eq(*g, **c)))
                .count();
            let mini = evaluator
                .run(&gate, Some(&text), "candidate", &mut |r: &evals::run::CaseResult| report("minibatch", r))
                .await?;
            if mini.rate().passed < parent_passed {
                state.rounds_without_gain += 1;
                log.note = format!("worse on the minibatch ({} vs {})", mini.rate().passed, parent_passed);
                state.log.push(log.clone());
                return Ok(log);
            }
        }
        let run = evaluator
            .run(validation, Some(&text), "candidate", &mut |r: &evals::run::CaseResult| report("validation", r))
            .await?;
        record_validation(&mut state.candidates[id], &run);
        let (candidate, best) =
            (state.candidates[id].validation_rate(), state.candidates[state.best].validation_rate());
        log.validation_rate = Some(candidate.rate);
        let config = &state.config;
        let (replaces, against) = replaces_best(
            &state.candidates[id],
            &state.candidates[state.best],
            config.min_validation_gain,
            config.keep_p,
        );
        log.against_best = against;
        if replaces {
            state.best = id;
            state.rounds_without_gain = 0;
            log.improved = true;
        } else {
            state.rounds_without_gain += 1;
            let gain = state.config.min_validation_gain.max(1);
            log.note = match against {
                Some(a) if a.won >= a.lost + gain => format!(
                    "validation {}/{} beat the best {}/{} (won {}, lost {}) but its McNemar P {} is above --keep-p {}",
                    candidate.passed,
                    candidate.total,
                    best.passed,
                    best.total,
                    a.won,
                    a.lost,
                    evals::format_p(a.p),
                    state.config.keep_p
                ),
                _ => format!(
                    "validation {}/{} did not beat the best {}/{} by {} case{}{}",
                    candidate.passed,
                    candidate.total,
                    best.passed,
                    best.total,
                    gain,
                    if gain > 1 { "s" } else { "" },
                    against.map(|a| format!(" (won {}, lost {})", a.won, a.lost)).unwrap_or_default()
                ),
            };
        }
        state.log.push(log.clone());
        Ok(log)
    }
}

/// Round `round`'s train minibatch: `size` cases (at most all of them) from
/// [`minibatch_start`] on, wrapping around.
fn round_minibatch<'c>(round: usize, size: usize, train: &[&'c EvalCase]) -> Vec<&'c EvalCase> {
    let size = size.clamp(1, train.len());
    let start = minibatch_start(round, size, train.len());
    (0..size).map(|i| train[(start + i) % train.len()]).collect()
}

/// Where round `round` (from 1) takes its `size` train cases of `len`: consecutive slices,
/// each later pass over the split starting one case further on, so a round does not get the
/// very minibatch of an earlier one (with the same parent, that made the same worked
/// examples or the same rewrite again).
fn minibatch_start(round: usize, size: usize, len: usize) -> usize {
    let offset = (round - 1) * size;
    (offset + offset / len) % len
}

/// The split of the `i`-th case of a drafted suite: 40% train, 20% validation, 40% sealed
/// test, interleaved so each split gets cases from the whole list (the user's examples
/// included).
fn drafted_split(i: usize) -> Split {
    match i % 5 {
        0 | 3 => Split::Train,
        1 => Split::Validation,
        _ => Split::Test,
    }
}

/// The tasks of a suite, to tell a drafted one that repeats another: the same words (case and
/// spacing aside), or the same two or more numbers in the same order with mostly the same
/// other words ("Tip for €120 at 18%?" and "Calculate the tip for €120 at 18%?" are one
/// task; "What is 12 + 7?" and "What is 12 × 7?", or "Add 3 days to 2026-11-03" and
/// "Subtract 3 days from 2026-11-03", are not).
#[derive(Default)]
struct SeenTasks {
    words: std::collections::HashSet<String>,
    /// For each run of two or more numbers, the other words of each task that had it.
    numbers: std::collections::HashMap<Vec<String>, Vec<std::collections::HashSet<String>>>,
}

/// The share of words two tasks with the same numbers must have in common (of the words
/// either has) to be one task.
const SAME_TASK_WORDS: f64 = 0.6;

impl SeenTasks {
    /// Records `prompt`; false when it repeats one recorded before.
    fn insert(&mut self, prompt: &str) -> bool {
        let words = prompt.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        // Numbers as the graders read them ("1,234.5", "-10"); the rest, split at spaces and
        // trimmed of punctuation, are the words ("€120" is 120 and "€", "18%" 18 and "%").
        let mut numbers = Vec::new();
        let mut rest = String::with_capacity(prompt.len());
        let mut end = 0;
        for (span, number) in evals::grade::numbers(prompt) {
            rest.push_str(&prompt[end..span.start]);
            rest.push(' ');
            numbers.push(number.replace(',', ""));
            end = span.end;
        }
        rest.push_str(&prompt[end..]);
        let others: std::collections::HashSet<String> = rest
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| matches!(c, '?' | '!' | ',' | ';' | ':' | '"' | '\'' | '(' | ')' | '.')))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let similar = |seen: &std::collections::HashSet<String>| {
            let shared = seen.intersection(&others).count() as f64;
            let either = seen.union(&others).count().max(1) as f64;
            shared / either >= SAME_TASK_WORDS
        };
        let repeats_numbers = numbers.len() >= 2 && self.numbers.get(&numbers).is_some_and(|s| s.iter().any(similar));
        let new = !self.words.contains(&words) && !repeats_numbers;
        self.words.insert(words);
        if numbers.len() >= 2 {
            self.numbers.entry(numbers).or_default().push(others);
        }
        new
    }
}

/// Two answers agree: equal after normalizing, or the same number.
fn same_answer(a: &str, b: &str) -> bool {
    let (na, nb) = (evals::grade::normalize(a), evals::grade::normalize(b));
    if na == nb {
        return true;
    }
    match (evals::grade::last_number(a), evals::grade::last_number(b)) {
        // "77", "77 degrees", "77°F": the same single number in a short answer ("1/2" and
        // "12:30" hold two numbers and are compared as text).
        (Some(x), Some(y)) => {
            let short = |t: &str| t.split_whitespace().count() <= 3 && evals::grade::count_numbers(t) == 1;
            (x - y).abs() < 1e-6 && short(&na) && short(&nb)
        }
        _ => false,
    }
}

/// Whether the distilled skill is worth loading: more than 5 points of lift over no skill that
/// the exact McNemar test says is not chance (P < 0.05), or,
/// when it replaced the starting skill, no loss against that skill and against no skill with
/// over 20% fewer tokens than the starting skill.
fn is_beneficial(with: &SuiteRun, none: &SuiteRun, started_from: Option<&SuiteRun>) -> bool {
    let lift = Lift::paired(&with.passed_flags(), &none.passed_flags());
    let cheaper_and_no_worse = started_from.is_some_and(|start| {
        with.tokens_per_case() < 0.8 * start.tokens_per_case()
            && with.rate().rate >= start.rate().rate
            && with.rate().rate >= none.rate().rate
    });
    (lift.delta > 0.05 && lift.is_significant()) || cheaper_and_no_worse
}

/// The shortest body a teacher's skill draft may have: anything shorter is an empty or
/// truncated reply, not instructions.
const MIN_DRAFT_BODY_CHARS: usize = 40;

/// The rationale of the job-alone candidate (see [`DistillConfig::bare_job_candidate`]).
pub const BARE_JOB_RATIONALE: &str = "the job alone, without a procedure";

/// `markdown`'s frontmatter followed by `body` alone; `None` when it has no frontmatter.
fn with_body(markdown: &str, body: &str) -> Option<String> {
    let markdown = markdown.replace("\r\n", "\n");
    let rest = markdown.strip_prefix("---\n")?;
    let end = rest.find("\n---\n")?;
    Some(format!("---\n{}\n---\n{}\n", &rest[..end], body.trim()))
}

/// Whether a candidate replaces the best: on the validation cases both ran (paired by case
/// id), it must win at least `min_gain` (at least 1) more than it loses, and the exact
/// McNemar P of that split must be at most `keep_p`. Should they share no case (a suite
/// edited between runs), pass rates are compared with the gain scaled to their totals.
fn replaces_best(candidate: &Candidate, best: &Candidate, min_gain: usize, keep_p: f64) -> (bool, Option<AgainstBest>) {
    let gain = min_gain.max(1);
    let best_passed: std::collections::HashMap<&evals::CaseId, bool> =
        best.validation.iter().map(|(id, passed)| (id, *passed)).collect();
    let (mut won, mut lost, mut shared) = (0, 0, 0);
    for (id, passed) in &candidate.validation {
        if let Some(&theirs) = best_passed.get(id) {
            shared += 1;
            match (*passed, theirs) {
                (true, false) => won += 1,
                (false, true) => lost += 1,
                _ => {}
            }
        }
    }
    if shared == 0 {
        let (candidate, best) = (candidate.validation_rate(), best.validation_rate());
        // candidate.rate >= best.rate + gain / best.total, without floating point.
        let replaces = candidate.total > 0 && candidate.passed * best.total >= (best.passed + gain) * candidate.total;
        return (replaces, None);
    }
    let p = evals::mcnemar_exact(won, lost);
    (won >= lost + gain && p <= keep_p, Some(AgainstBest { won, lost, p }))
}

fn record_validation(candidate: &mut Candidate, run: &SuiteRun) {
    candidate.validation = run.results.iter().map(|r| (r.id.clone(), r.passed)).collect();
    candidate.tokens_per_case = run.tokens_per_case();
}
