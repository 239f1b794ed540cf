//! The night: mine the episodes, distill or refine the top proposals within a teacher
//! budget, and gate every change on held-out real tasks before it is staged.
//!
//! One night at a time (a lock file); everything it knows is in `current.json`, written after
//! every step, so a night killed at any point resumes where it stopped (each distillation
//! resumes from its own state file). A change is staged, with its diff and scores, only when
//! it beats what the library has now on the held-out mined cases with no held-out task
//! getting worse and an exact McNemar test below [`NightlyConfig::gate_p`]; it becomes active
//! only through [`adopt`] (or [`AdoptPolicy::Beneficial`]), and never over a skill edited by
//! hand since the night began.
//!
//! Layout under the nightly folder (`<state_dir>/nightly`):
//!
//! ```text
//! lock                       held while a night runs
//! current.json               the night in progress (NightState)
//! last                       the id of the last finished night
//! nights/<id>/state.json     a finished night
//! nights/<id>/report.md|html
//! nights/<id>/staged/<skill>/SKILL.md, SKILL.md.diff, evals/evals.json, evals/distill/...
//! ```

use crate::cases::{UserVerdict, user_verdicts};
use crate::distill::{
    DistillConfig, DistillEvent, DistillJob, DistillState, Distiller, Stage, StudentSettings, load_state, state_path,
};
use crate::mine::{LibrarySkill, MineConfig, ProposalKind, mine};
use crate::teacher_io::TokenCounting;
use crate::{Error, Result, suite_from_episodes};
use agent_logs::Episode;
use evals::{EvalSuite, Evaluator, Lift, PairedCounts, Rate, RunnerConfig, SkillText, Split, format_p, mcnemar_exact};
use serde::{Deserialize, Serialize};
use skill_core::fsutil::{atomic_write, read_utf8};
use skill_core::skill::content_hash;
use skill_core::{Embedder, Student, Teacher, VersionStore};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// When a change that passed the gate becomes the library's skill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AdoptPolicy {
    /// Staged only; `skd nightly adopt NAME` makes it active.
    #[default]
    Never,
    /// Adopted as soon as it passes the gate.
    Beneficial,
}

/// What a night may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NightlyConfig {
    /// Proposals worked on, best first.
    pub max_skills: usize,
    /// Teacher tokens the whole night may use (each distillation gets what is left).
    pub teacher_tokens: Option<u64>,
    /// When a change that passed the gate becomes active.
    pub adopt: AdoptPolicy,
    /// Episodes a job needs to be proposed.
    pub min_episodes: usize,
    /// The exact McNemar P a change must stay under on the held-out tasks (with none lost).
    pub gate_p: f64,
    /// Settings of each distillation.
    pub distill: DistillConfig,
    /// The student every candidate is measured with, as the frontend named it: a resumed
    /// night measures the same way.
    pub student: Option<StudentSettings>,
    /// The least share of the user's own verdicts the rubric judge must agree with before a
    /// job whose held-out cases it judges is worked on (0 turns the check off).
    #[serde(default = "default_judge_min_agreement")]
    pub judge_min_agreement: f64,
    /// The teacher's prices, USD per million prompt and completion tokens, for the cost the
    /// report shows (`None`: no cost shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_prices: Option<[f64; 2]>,
}

fn default_judge_min_agreement() -> f64 {
    0.8
}

impl Default for NightlyConfig {
    fn default() -> Self {
        NightlyConfig {
            max_skills: 3,
            teacher_tokens: Some(200_000),
            adopt: AdoptPolicy::Never,
            min_episodes: 3,
            gate_p: 0.05,
            // A job with few settled tasks gets teacher-drafted train cases (only train).
            distill: DistillConfig { max_rounds: 4, top_up_train: 8, ..DistillConfig::default() },
            student: None,
            judge_min_agreement: default_judge_min_agreement(),
            teacher_prices: None,
        }
    }
}

/// Where a night stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NightStage {
    /// Proposals chosen; working through them.
    Working,
    /// Every proposal done and the report written.
    Finished,
}

/// What became of one proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PlanStatus {
    /// Not started.
    Pending,
    /// A distillation is under way in the staging folder.
    Distilling,
    /// Not worked on, and why (too few settled tasks, the budget spent).
    Skipped {
        /// Why.
        why: String,
    },
    /// Distilled, but the gate kept the library as it is.
    Rejected {
        /// Why, with the counts.
        why: String,
    },
    /// Passed the gate; waits in the staging folder for `adopt`.
    Staged,
    /// Passed the gate and became the library's skill (as this version).
    Adopted {
        /// The library version it became.
        version: u32,
    },
    /// Passed the gate, but the library's skill was edited by hand since the night began:
    /// left staged, never written over the edit.
    EditedByHand,
}

/// The held-out comparison that decides a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// Held-out cases (real mined tasks).
    pub cases: usize,
    /// With the candidate.
    pub candidate: Rate,
    /// With the library's current version (or no skill, for a new one).
    pub current: Rate,
    /// What `current` was.
    pub current_label: String,
    /// Paired counts, candidate against current.
    pub counts: PairedCounts,
    /// The paired lift with its interval.
    pub lift: Lift,
    /// Exact McNemar P of gained against lost.
    pub p: f64,
    /// Whether the change is kept.
    pub kept: bool,
    /// Teacher tokens the rubric judge used on the held-out cases (part of the plan's
    /// `teacher_tokens`; 0 when no case needs it).
    #[serde(default)]
    pub judge_tokens: u64,
    /// The completion part of `judge_tokens`.
    #[serde(default)]
    pub judge_completion_tokens: u64,
}

/// How often the rubric judge agrees with the user on the answers the user settled (their
/// agents' answers, accepted or corrected), outside the held-out split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calibration {
    /// Verdicts the judge matched.
    pub agreed: usize,
    /// Verdicts it was asked about.
    pub total: usize,
    /// Teacher tokens the judge used for them (part of the plan's `teacher_tokens`).
    #[serde(default)]
    pub tokens: u64,
    /// The completion part of `tokens`.
    #[serde(default)]
    pub completion_tokens: u64,
}

impl Calibration {
    /// The share agreed (0 with nothing to compare).
    pub fn agreement(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.agreed as f64 / self.total as f64 }
    }
}

/// Asks `judge` to grade each answer the user settled against its case's rubric and counts
/// how often it says what the user said: a judge that fails answers the user accepted, or
/// passes answers the user corrected, cannot be trusted to gate a change. Held-out cases
/// are left out (the judge will grade them in the gate), as are cases graded without a
/// judge.
pub async fn calibrate_judge(judge: &dyn Teacher, suite: &EvalSuite, verdicts: &[UserVerdict]) -> Result<Calibration> {
    let judge = TokenCounting::new(judge);
    let mut calibration = Calibration { agreed: 0, total: 0, tokens: 0, completion_tokens: 0 };
    for v in verdicts {
        let Some(case) = suite.evals.iter().find(|c| c.id.to_string() == v.case) else { continue };
        if case.split == Split::Test || case.expectations.is_empty() {
            continue;
        }
        let answer = evals::grade::Answer { output: &v.answer, extracted: &v.answer, tool_calls: &[], workspace: None };
        let rubric = evals::Grader::Rubric { criteria: case.expectations.clone() };
        // A verdict the judge could not give in usable form is no agreement: a judge that
        // cannot answer cannot gate either, and its job is then skipped, not the night ended.
        let agreed = match rubric.grade(case, &answer, Some(&judge)).await {
            Ok(outcome) => outcome.passed == v.accepted,
            Err(e) => {
                tracing::info!(case = %case.id, error = %e, "the judge gave no usable verdict");
                false
            }
        };
        calibration.total += 1;
        if agreed {
            calibration.agreed += 1;
        }
    }
    let usage = judge.take_usage();
    calibration.tokens = usage.total();
    calibration.completion_tokens = u64::from(usage.completion_tokens);
    Ok(calibration)
}

/// One proposal as the night works on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// New skill or refinement.
    pub kind: ProposalKind,
    /// The skill's name (the library's, for a refinement).
    pub skill: String,
    /// The job: the teacher's sentence for it, else its most central task.
    pub job: String,
    /// The job's most central task, in the user's words.
    #[serde(default)]
    pub central_task: String,
    /// Why the teacher's sentence was not used, when it was asked for one and was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_unusable: Option<String>,
    /// Teacher tokens of the job sentence (part of `teacher_tokens`).
    #[serde(default)]
    pub job_tokens: u64,
    /// The completion part of `job_tokens`.
    #[serde(default)]
    pub job_completion_tokens: u64,
    /// Episodes of the job, and how many failed.
    pub episodes: usize,
    /// Those that failed.
    pub failures: usize,
    /// Episodes per source.
    pub sources: BTreeMap<String, usize>,
    /// What the job costs each time (`skd mine`'s words: tool calls, minutes, tokens).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cost: String,
    /// Mined cases per split (train, validation, test).
    pub cases: [usize; 3],
    /// Train cases the teacher added where the mined ones were too few.
    #[serde(default)]
    pub teacher_cases: usize,
    /// blake3 of the library's SKILL.md when the night began (`None`: there was none).
    pub library_hash: Option<String>,
    /// Teacher tokens this proposal used.
    pub teacher_tokens: u64,
    /// The completion part of `teacher_tokens` (for the cost, priced apart from prompts).
    #[serde(default)]
    pub teacher_completion_tokens: u64,
    /// Some of the job's episodes, the failures first (as `skd mine` shows them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<crate::mine::Evidence>,
    /// How often the rubric judge agreed with the user, when the held-out cases need it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// The held-out comparison, once made.
    pub gate: Option<Gate>,
    /// What became of it.
    #[serde(flatten)]
    pub status: PlanStatus,
}

impl Plan {
    /// Its teacher tokens once distilled: the job sentence, the judge's calibration and the
    /// distillation's `tokens`, of which `completion` were generated (the gate's judge is
    /// added after).
    fn count_distillation(&mut self, tokens: u64, completion: u64) {
        self.teacher_tokens = self.job_tokens + self.calibration.map_or(0, |c| c.tokens) + tokens;
        self.teacher_completion_tokens =
            self.job_completion_tokens + self.calibration.map_or(0, |c| c.completion_tokens) + completion;
    }
}

/// Everything a night knows; `current.json` while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NightState {
    /// The night's id (its start time, `YYYYMMDDTHHMMSSZ`).
    pub id: String,
    /// When it began (RFC 3339).
    pub started: String,
    /// When it finished.
    pub finished: Option<String>,
    /// Progress.
    pub stage: NightStage,
    /// Settings.
    pub config: NightlyConfig,
    /// Episodes mined, per source.
    pub episodes: BTreeMap<String, usize>,
    /// Jobs found (one-offs included).
    pub jobs: usize,
    /// Proposals found before the top `max_skills` were taken.
    pub proposals_found: usize,
    /// The proposals worked on.
    pub plans: Vec<Plan>,
    /// Teacher tokens the night used.
    pub teacher_tokens: u64,
    /// Seconds spent, over every run of this night.
    pub seconds: f64,
}

/// The folders of the nightly job.
#[derive(Debug, Clone)]
pub struct NightlyPaths {
    /// `<state_dir>/nightly`.
    pub root: PathBuf,
}

impl NightlyPaths {
    /// The nightly folder under a state folder.
    pub fn under(state_dir: &Path) -> Self {
        NightlyPaths { root: state_dir.join("nightly") }
    }
    fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    /// The night in progress.
    pub fn current(&self) -> PathBuf {
        self.root.join("current.json")
    }
    /// A night's folder.
    pub fn night(&self, id: &str) -> PathBuf {
        self.root.join("nights").join(id)
    }
    /// Where a night stages a skill.
    pub fn staged(&self, id: &str, skill: &str) -> PathBuf {
        self.night(id).join("staged").join(skill)
    }
    fn last(&self) -> PathBuf {
        self.root.join("last")
    }
}

/// The lock of a running night, released when dropped.
#[derive(Debug)]
pub struct NightLock {
    _file: File,
}

/// Takes the night's lock; [`Error::Busy`] when another night holds it.
pub fn lock(paths: &NightlyPaths) -> Result<NightLock> {
    std::fs::create_dir_all(&paths.root).map_err(|e| skill_core::Error::io(&paths.root, e))?;
    let path = paths.lock();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| skill_core::Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(NightLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy(path)),
        Err(std::fs::TryLockError::Error(e)) => Err(skill_core::Error::io(&path, e).into()),
    }
}

/// Reads a night's state file, validated; errors name the file.
pub fn read_state(path: &Path) -> Result<NightState> {
    let text = read_utf8(path)?;
    serde_json::from_str(&text).map_err(|e| Error::Suite {
        path: path.to_path_buf(),
        line: e.line(),
        message: format!("not a night's state ({e}); move it aside to start a new night"),
    })
}

/// The last finished night, if any.
pub fn last_night(paths: &NightlyPaths) -> Result<Option<NightState>> {
    let last = paths.last();
    if !last.exists() {
        return Ok(None);
    }
    let id = read_utf8(&last)?.trim().to_string();
    read_state(&paths.night(&id).join("state.json")).map(Some)
}

/// The night in progress (one that was killed), if any.
pub fn unfinished_night(paths: &NightlyPaths) -> Result<Option<NightState>> {
    let path = paths.current();
    if path.exists() { read_state(&path).map(Some) } else { Ok(None) }
}

/// What a night runs with.
pub struct Nightly<'a> {
    /// The student every candidate is measured with.
    pub student: Arc<dyn Student>,
    /// The teacher that writes skills and judges rubric cases.
    pub teacher: &'a dyn Teacher,
    /// Groups episodes by job.
    pub embedder: &'a dyn Embedder,
    /// The skill library's folder.
    pub library_root: PathBuf,
    /// Its skills (name and description), as mining sees them.
    pub library: Vec<LibrarySkill>,
    /// The nightly folders.
    pub paths: NightlyPaths,
    /// Student settings of every measurement.
    pub runner: RunnerConfig,
}

/// A line of progress.
#[derive(Debug, Clone)]
pub enum NightEvent {
    /// A step began or ended.
    Step(String),
    /// Progress of a distillation.
    Distill(String, DistillEvent),
}

impl Nightly<'_> {
    /// Runs a night (or resumes the one that was killed) over `episodes`, under the lock the
    /// caller took with [`lock`] (so a second night is refused before any model is loaded).
    /// Returns the finished night. `config` is ignored when a night is resumed: it keeps its
    /// own.
    pub async fn run(
        &self,
        _lock: &NightLock,
        episodes: &[&Episode],
        config: NightlyConfig,
        on_event: &mut (dyn FnMut(NightEvent) + Send),
    ) -> Result<NightState> {
        let started = std::time::Instant::now();
        let mut night = match unfinished_night(&self.paths)? {
            Some(night) => {
                on_event(NightEvent::Step(format!("resuming the night {}", night.id)));
                night
            }
            None => self.plan(episodes, config, on_event).await?,
        };
        let seconds_before = night.seconds;
        for i in 0..night.plans.len() {
            if !matches!(night.plans[i].status, PlanStatus::Pending | PlanStatus::Distilling) {
                continue;
            }
            self.work(&mut night, i, on_event).await?;
            night.seconds = seconds_before + started.elapsed().as_secs_f64();
            self.save(&night)?;
        }
        night.seconds = seconds_before + started.elapsed().as_secs_f64();
        self.finish(&mut night)?;
        Ok(night)
    }

    /// Mines and chooses the night's proposals; the teacher writes each one's job sentence
    /// (the skill's name and description come from it) while the budget allows.
    async fn plan(
        &self,
        episodes: &[&Episode],
        config: NightlyConfig,
        on_event: &mut (dyn FnMut(NightEvent) + Send),
    ) -> Result<NightState> {
        let now = skill_core::time::now_unix();
        let started = skill_core::time::rfc3339(now);
        let stamp: String = started.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        // Two nights within a second (a night with nothing to do) get folders of their own.
        let mut id = stamp.clone();
        for n in 2.. {
            if !self.paths.night(&id).exists() {
                break;
            }
            id = format!("{stamp}-{n}");
        }
        on_event(NightEvent::Step(format!("mining {} episodes", episodes.len())));
        let mine_config = MineConfig { min_episodes: config.min_episodes, ..MineConfig::default() };
        // Embedding every task is seconds of CPU.
        let mined = skill_core::blocking(|| mine(episodes, &self.library, self.embedder, &mine_config))?;
        let mut by_source = BTreeMap::new();
        for e in episodes {
            *by_source.entry(e.source.clone()).or_insert(0) += 1;
        }
        let mut plans = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut job_tokens_spent = 0u64;
        for p in mined.proposals.iter() {
            if plans.len() == config.max_skills {
                break;
            }
            let members = p.members_in(episodes);
            let budget_left = config.teacher_tokens.map(|b| b.saturating_sub(job_tokens_spent));
            let described = if budget_left == Some(0) {
                None
            } else {
                on_event(NightEvent::Step(format!("asking the teacher for the job of: {}", one_line(&p.job))));
                let timeout = config.distill.teacher_timeout();
                Some(crate::job::describe_job(self.teacher, &members, timeout).await?)
            };
            let tokens =
                described.as_ref().map_or(0, |d| d.usage.prompt_tokens as u64 + d.usage.completion_tokens as u64);
            let completion_tokens = described.as_ref().map_or(0, |d| u64::from(d.usage.completion_tokens));
            job_tokens_spent += tokens;
            let job = described.as_ref().and_then(|d| d.sentence.clone()).unwrap_or_else(|| p.job.clone());
            let skill = match (p.kind, &p.skill) {
                (ProposalKind::Refine, Some(skill)) => skill.clone(),
                _ => mined_name(&job),
            };
            if !names.insert(skill.clone()) {
                continue;
            }
            let suite = suite_from_episodes(&skill, &members);
            let count = |s: Split| suite.split(s).len();
            let skill_md = self.library_root.join(&skill).join(skill_core::library::SKILL_FILE);
            let library_hash = match p.kind {
                ProposalKind::Refine => Some(content_hash(&read_utf8(&skill_md)?)),
                // A new skill's name may still exist in the library by chance (a mined name).
                ProposalKind::New => {
                    skill_md.exists().then(|| read_utf8(&skill_md).map(|t| content_hash(&t))).transpose()?
                }
            };
            let staged = self.paths.staged(&id, &skill);
            let mut calibration = None;
            let status = match settled_splits(&suite) {
                Ok(suite) => {
                    suite.save(&EvalSuite::path_in(&staged))?;
                    if p.kind == ProposalKind::Refine {
                        copy_skill_md(&skill_md, &staged.join(skill_core::library::SKILL_FILE))?;
                    }
                    let judged = |c: &&evals::EvalCase| c.effective_graders().iter().any(evals::Grader::needs_teacher);
                    let needs_judge = suite.split(Split::Test).iter().any(judged);
                    let budget_left = config.teacher_tokens.map(|b| b.saturating_sub(job_tokens_spent));
                    if needs_judge && config.judge_min_agreement > 0.0 && budget_left != Some(0) {
                        on_event(NightEvent::Step(format!("{skill}: checking the judge against your verdicts")));
                        let c = calibrate_judge(self.teacher, &suite, &user_verdicts(&members)).await?;
                        job_tokens_spent += c.tokens;
                        calibration = Some(c);
                        match judge_refused(&c, config.judge_min_agreement) {
                            Some(why) => PlanStatus::Skipped { why },
                            None => PlanStatus::Pending,
                        }
                    } else {
                        PlanStatus::Pending
                    }
                }
                Err(why) => PlanStatus::Skipped { why },
            };
            plans.push(Plan {
                kind: p.kind,
                skill,
                job,
                central_task: p.job.clone(),
                job_unusable: described.and_then(|d| d.unusable),
                job_tokens: tokens,
                job_completion_tokens: completion_tokens,
                episodes: p.episodes,
                failures: p.failures,
                sources: p.sources.clone(),
                cost: p.cost_summary(),
                cases: [count(Split::Train), count(Split::Validation), count(Split::Test)],
                teacher_cases: 0,
                library_hash,
                teacher_tokens: tokens + calibration.map_or(0, |c| c.tokens),
                teacher_completion_tokens: completion_tokens + calibration.map_or(0, |c| c.completion_tokens),
                evidence: p.evidence.clone(),
                calibration,
                gate: None,
                status,
            });
        }
        let night = NightState {
            id,
            started,
            finished: None,
            stage: NightStage::Working,
            config,
            episodes: by_source,
            jobs: mined.jobs,
            proposals_found: mined.proposals.len(),
            teacher_tokens: plans.iter().map(|p| p.teacher_tokens).sum(),
            plans,
            seconds: 0.0,
        };
        self.save(&night)?;
        Ok(night)
    }

    /// Distills one proposal in its staging folder, gates it and stages (or adopts) it.
    async fn work(
        &self,
        night: &mut NightState,
        i: usize,
        on_event: &mut (dyn FnMut(NightEvent) + Send),
    ) -> Result<()> {
        let plan = night.plans[i].clone();
        let staged = self.paths.staged(&night.id, &plan.skill);
        let left = night.config.teacher_tokens.map(|budget| budget.saturating_sub(night.teacher_tokens));
        if left == Some(0) && plan.status == PlanStatus::Pending {
            night.plans[i].status = PlanStatus::Skipped { why: "the night's teacher budget was spent".into() };
            return Ok(());
        }
        on_event(NightEvent::Step(format!(
            "{} {}: {}",
            if plan.kind == ProposalKind::Refine { "refining" } else { "distilling" },
            plan.skill,
            plan.job
        )));
        let state = match plan.status {
            PlanStatus::Distilling if state_path(&staged).exists() => load_state(&staged)?,
            _ => {
                let mut config = night.config.distill.clone();
                config.max_teacher_tokens = match (config.max_teacher_tokens, left) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                // A mined suite is the user's own tasks; where its train split is smaller
                // than `top_up_train`, the teacher adds train cases like them (validation
                // and the held-out split stay the user's own).
                let mut state = DistillState::new(
                    DistillJob {
                        skill_name: plan.skill.clone(),
                        description: plan.job.clone(),
                        transcripts: Vec::new(),
                        examples: Vec::new(),
                    },
                    config,
                );
                state.student = night.config.student.clone();
                state
            }
        };
        night.plans[i].status = PlanStatus::Distilling;
        self.save(night)?;
        let distiller = Distiller {
            student: self.student.clone(),
            teacher: self.teacher,
            skill_dir: staged.clone(),
            library_root: Some(self.library_root.clone()),
            runner: RunnerConfig { files_root: Some(staged.clone()), ..self.runner.clone() },
        };
        let skill = plan.skill.clone();
        let state = match distiller.run(state, &mut |e| on_event(NightEvent::Distill(skill.clone(), e))).await {
            Ok(state) => state,
            // A teacher that cannot write this skill (its answers unusable after a repair
            // request) ends this proposal, not the night: the others still get their turn.
            // A teacher that cannot be reached, or a failing disk, stops the night, which the
            // next run resumes.
            Err(Error::TeacherOutput(why)) => {
                let spent = load_state(&staged).ok();
                let p = &mut night.plans[i];
                if let Some(spent) = spent {
                    p.count_distillation(spent.teacher_tokens, spent.teacher_completion_tokens);
                }
                let first_line = why.lines().next().unwrap_or_default();
                p.status =
                    PlanStatus::Skipped { why: format!("the teacher's answers could not be used: {first_line}") };
                night.teacher_tokens = night.plans.iter().map(|p| p.teacher_tokens).sum();
                on_event(NightEvent::Step(format!("{skill}: skipped, the teacher's answers could not be used")));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        debug_assert_eq!(state.stage, Stage::Finished);
        // The distillation's own count includes what it used before a crash.
        night.plans[i].count_distillation(state.teacher_tokens, state.teacher_completion_tokens);
        night.plans[i].teacher_cases = state.topped_up;
        night.teacher_tokens = night.plans.iter().map(|p| p.teacher_tokens).sum();
        let candidate = state.candidates[state.best].markdown.clone();
        let current = match plan.kind {
            ProposalKind::Refine => {
                Some(read_utf8(&self.library_root.join(&plan.skill).join(skill_core::library::SKILL_FILE))?)
            }
            ProposalKind::New => None,
        };
        let suite = EvalSuite::load(&EvalSuite::path_in(&staged))?;
        let gate = self.gate(&suite, &plan.skill, &candidate, current.as_deref(), night.config.gate_p).await?;
        on_event(NightEvent::Step(format!("{}: {}", plan.skill, gate_line(&gate, night.config.gate_p))));
        // The staged SKILL.md is the candidate, whatever the distiller adopted in the folder.
        atomic_write(&staged.join(skill_core::library::SKILL_FILE), candidate.as_bytes())?;
        let diff = similar::TextDiff::from_lines(current.as_deref().unwrap_or(""), &candidate)
            .unified_diff()
            .context_radius(3)
            .header("library", "staged")
            .to_string();
        atomic_write(&staged.join("SKILL.md.diff"), diff.as_bytes())?;
        night.plans[i].status = if !gate.kept {
            PlanStatus::Rejected { why: gate_line(&gate, night.config.gate_p) }
        } else {
            PlanStatus::Staged
        };
        night.plans[i].teacher_tokens += gate.judge_tokens;
        night.plans[i].teacher_completion_tokens += gate.judge_completion_tokens;
        night.teacher_tokens += gate.judge_tokens;
        night.plans[i].gate = Some(gate);
        if night.plans[i].status == PlanStatus::Staged && night.config.adopt == AdoptPolicy::Beneficial {
            night.plans[i].status =
                skill_core::blocking(|| adopt_plan(&self.library_root, &night.id, &night.plans[i], &staged))?;
        }
        Ok(())
    }

    /// The candidate against the library's current version (or no skill) on the held-out
    /// mined cases.
    async fn gate(
        &self,
        suite: &EvalSuite,
        name: &str,
        candidate: &str,
        current: Option<&str>,
        gate_p: f64,
    ) -> Result<Gate> {
        let test = suite.split(Split::Test);
        let judge = TokenCounting::new(self.teacher);
        let evaluator = Evaluator { student: self.student.clone(), judge: Some(&judge), suite, config: &self.runner };
        let text = |markdown: &str| SkillText { name: name.to_string(), markdown: markdown.to_string() };
        let with = evaluator.run(&test, Some(&text(candidate)), "candidate", &mut |_| {}).await?;
        let current_label = if current.is_some() { "the library's version" } else { "no skill" };
        let now = evaluator.run(&test, current.map(text).as_ref(), current_label, &mut |_| {}).await?;
        let lift = Lift::paired(&with.passed_flags(), &now.passed_flags());
        let counts = lift.counts();
        let (kept, p) = gate_keeps(counts, gate_p);
        let usage = judge.take_usage();
        Ok(Gate {
            cases: test.len(),
            candidate: with.rate(),
            current: now.rate(),
            current_label: current_label.to_string(),
            counts,
            lift,
            p,
            kept,
            judge_tokens: usage.total(),
            judge_completion_tokens: u64::from(usage.completion_tokens),
        })
    }

    fn save(&self, night: &NightState) -> Result<()> {
        let json = serde_json::to_vec_pretty(night).map_err(|e| Error::other(e.to_string()))?;
        atomic_write(&self.paths.current(), &json)?;
        Ok(())
    }

    /// Writes the report and the finished state, and clears `current.json`.
    fn finish(&self, night: &mut NightState) -> Result<()> {
        night.stage = NightStage::Finished;
        night.finished = Some(skill_core::time::rfc3339(skill_core::time::now_unix()));
        let dir = self.paths.night(&night.id);
        write_night(&dir, night)?;
        atomic_write(&self.paths.last(), night.id.as_bytes())?;
        std::fs::remove_file(self.paths.current()).map_err(|e| skill_core::Error::io(self.paths.current(), e))?;
        Ok(())
    }
}

/// The gate's rule on the held-out cases, paired: a change is kept when it loses none, gains at
/// least one, and the exact McNemar P of its gains and losses is under `gate_p`. Returns the
/// decision and P.
fn gate_keeps(counts: PairedCounts, gate_p: f64) -> (bool, f64) {
    let p = mcnemar_exact(counts.gained, counts.lost);
    (counts.lost == 0 && counts.gained > 0 && p < gate_p, p)
}

/// Writes a night's `state.json`, `report.md` and `report.html` into its folder.
fn write_night(dir: &Path, night: &NightState) -> Result<()> {
    let json = serde_json::to_vec_pretty(night).map_err(|e| Error::other(e.to_string()))?;
    atomic_write(&dir.join("state.json"), &json)?;
    atomic_write(&dir.join("report.md"), report_markdown(night).as_bytes())?;
    atomic_write(&dir.join("report.html"), report_html(night).as_bytes())?;
    Ok(())
}

/// Makes a staged change of the last night the library's skill: `NAME` must be staged (or
/// left staged over a hand edit, which `force` overrides). Returns the version it became.
pub fn adopt(paths: &NightlyPaths, library_root: &Path, name: &str, force: bool) -> Result<u32> {
    let _lock = lock(paths)?;
    let mut night = last_night(paths)?.ok_or_else(|| Error::other("no night has finished yet (skd nightly)"))?;
    let i = night
        .plans
        .iter()
        .position(|p| p.skill == name)
        .ok_or_else(|| Error::other(format!("the night {} did not work on `{name}`", night.id)))?;
    let mut plan = night.plans[i].clone();
    match &plan.status {
        PlanStatus::Staged => {}
        PlanStatus::EditedByHand if force => {
            // The hand edit is kept in the history first (VersionStore::save records it).
            let skill_md = library_root.join(name).join(skill_core::library::SKILL_FILE);
            plan.library_hash =
                skill_md.exists().then(|| read_utf8(&skill_md).map(|t| content_hash(&t))).transpose()?;
        }
        PlanStatus::EditedByHand => {
            return Err(Error::other(format!(
                "`{name}` was edited by hand since the night {} began; review {} and adopt with --force to replace \
                 the edit (it stays in the history)",
                night.id,
                paths.staged(&night.id, name).join("SKILL.md.diff").display()
            )));
        }
        PlanStatus::Adopted { version } => {
            return Err(Error::other(format!("`{name}` was adopted already (version {version})")));
        }
        other => {
            return Err(Error::other(format!("`{name}` is not staged: {}", status_line(other))));
        }
    }
    let staged = paths.staged(&night.id, name);
    let status = adopt_plan(library_root, &night.id, &plan, &staged)?;
    night.plans[i].status = status.clone();
    write_night(&paths.night(&night.id), &night)?;
    match status {
        PlanStatus::Adopted { version } => Ok(version),
        PlanStatus::EditedByHand => Err(Error::other(format!(
            "`{name}` was edited by hand since the night {} began: left staged at {}",
            night.id,
            staged.display()
        ))),
        other => Err(Error::other(status_line(&other))),
    }
}

/// Writes a staged skill into the library, unless the library's skill changed since the
/// night began.
fn adopt_plan(library_root: &Path, night_id: &str, plan: &Plan, staged: &Path) -> Result<PlanStatus> {
    let dir = library_root.join(&plan.skill);
    let skill_md = dir.join(skill_core::library::SKILL_FILE);
    let now = skill_md.exists().then(|| read_utf8(&skill_md).map(|t| content_hash(&t))).transpose()?;
    if now != plan.library_hash {
        return Ok(PlanStatus::EditedByHand);
    }
    let markdown = read_utf8(&staged.join(skill_core::library::SKILL_FILE))?;
    let message = match &plan.gate {
        Some(g) => format!(
            "nightly {night_id}: held-out {}/{} vs {}/{} ({})",
            g.candidate.passed, g.candidate.total, g.current.passed, g.current.total, g.current_label
        ),
        None => format!("nightly {night_id}"),
    };
    let info = VersionStore::new(&dir).save(&markdown, &message)?;
    // A new skill takes its mined suite along, so `skd eval NAME` measures it on the tasks it
    // was made from.
    let suite = EvalSuite::path_in(&dir);
    if !suite.exists() {
        let mined = read_utf8(&EvalSuite::path_in(staged))?;
        atomic_write(&suite, mined.as_bytes())?;
    }
    Ok(PlanStatus::Adopted { version: info.version })
}

/// The mined suite with train and validation cases, or why it cannot be distilled. The
/// held-out (test) cases stay as their episode hash put them: real tasks only, at least one.
fn settled_splits(suite: &EvalSuite) -> std::result::Result<EvalSuite, String> {
    let count = |s: &EvalSuite, split: Split| s.split(split).len();
    let n = suite.evals.len();
    if count(suite, Split::Test) == 0 || n < 3 {
        return Err(format!(
            "too few settled tasks to distill and gate on: {n} with a verdict, {} of them held out (needs 3, one \
             held out)",
            count(suite, Split::Test)
        ));
    }
    let mut suite = suite.clone();
    // Few cases may all hash to one of train and validation: the other takes one of them.
    for (empty, from) in [(Split::Validation, Split::Train), (Split::Train, Split::Validation)] {
        if count(&suite, empty) == 0 {
            if count(&suite, from) < 2 {
                return Err(format!(
                    "too few settled tasks outside the held-out split: {} (needs 2)",
                    n - count(&suite, Split::Test)
                ));
            }
            if let Some(c) = suite.evals.iter_mut().rev().find(|c| c.split == from) {
                c.split = empty;
            }
        }
    }
    Ok(suite)
}

fn copy_skill_md(from: &Path, to: &Path) -> Result<()> {
    let text = read_utf8(from)?;
    atomic_write(to, text.as_bytes())?;
    Ok(())
}

/// Why a judge with this calibration may not gate, if it may not.
fn judge_refused(c: &Calibration, min_agreement: f64) -> Option<String> {
    if c.total == 0 {
        Some(
            "the held-out cases need the rubric judge, and no answer you settled outside them could check it \
             (a corrected answer, or an accepted one too long to compare)"
                .into(),
        )
    } else if c.agreement() < min_agreement {
        Some(format!(
            "the rubric judge agreed with your own verdicts on {} of {} answers ({:.0}%, needs {:.0}%): it cannot be \
             trusted to gate a change",
            c.agreed,
            c.total,
            100.0 * c.agreement(),
            100.0 * min_agreement
        ))
    } else {
        None
    }
}

/// A skill name from a job sentence: `mined-` and its first four words.
pub fn mined_name(job: &str) -> String {
    let words: Vec<String> = job
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(4)
        .map(str::to_ascii_lowercase)
        .collect();
    format!("mined-{}", words.join("-"))
}

fn gate_line(g: &Gate, gate_p: f64) -> String {
    let verdict = if g.kept {
        "kept".to_string()
    } else if g.counts.lost > 0 {
        format!("not kept: {} held-out task(s) got worse", g.counts.lost)
    } else if g.counts.gained == 0 {
        "not kept: no held-out task got better".to_string()
    } else {
        format!("not kept: P {} is not under {gate_p}", format_p(g.p))
    };
    format!(
        "held-out {}/{} with the candidate vs {}/{} with {} (gained {}, lost {}, P {}): {verdict}",
        g.candidate.passed,
        g.candidate.total,
        g.current.passed,
        g.current.total,
        g.current_label,
        g.counts.gained,
        g.counts.lost,
        format_p(g.p)
    )
}

/// One line for a plan's status.
pub fn status_line(status: &PlanStatus) -> String {
    match status {
        PlanStatus::Pending => "not started".into(),
        PlanStatus::Distilling => "distilling (the night was interrupted)".into(),
        PlanStatus::Skipped { why } => format!("skipped: {why}"),
        PlanStatus::Rejected { why } => format!("rejected: {why}"),
        PlanStatus::Staged => "staged: `skd nightly adopt NAME` makes it active".into(),
        PlanStatus::Adopted { version } => format!("adopted as version {version}"),
        PlanStatus::EditedByHand => {
            "passed the gate, left staged: the skill was edited by hand since the night began".into()
        }
    }
}

/// Episodes of a proposal the report lists as its evidence.
const REPORT_EVIDENCE: usize = 5;

/// ", about $X" for `tokens` of which `completion` were generated, at `prices` (USD per
/// million prompt and completion tokens); nothing without prices.
fn cost_text(prices: Option<[f64; 2]>, tokens: u64, completion: u64) -> String {
    match prices {
        Some([input_per_million, output_per_million]) => {
            let prices = teacher::Prices { input_per_million, output_per_million };
            format!(", about ${:.4}", prices.cost_usd(tokens.saturating_sub(completion), completion))
        }
        None => String::new(),
    }
}

/// The night's report in markdown.
pub fn report_markdown(night: &NightState) -> String {
    let mut md = format!("# Night {}\n\n", night.id);
    let completion: u64 = night.plans.iter().map(|p| p.teacher_completion_tokens).sum();
    md.push_str(&format!(
        "Started {}, finished {}; {:.0} s; teacher tokens {} ({} of them generated){}{}.\n\n",
        night.started,
        night.finished.as_deref().unwrap_or("-"),
        night.seconds,
        night.teacher_tokens,
        completion,
        night.config.teacher_tokens.map(|b| format!(" of a budget of {b}")).unwrap_or_default(),
        cost_text(night.config.teacher_prices, night.teacher_tokens, completion)
    ));
    md.push_str("## Episodes\n\n| source | episodes |\n|---|---:|\n");
    for (source, n) in &night.episodes {
        md.push_str(&format!("| {source} | {n} |\n"));
    }
    md.push_str(&format!(
        "\n{} jobs; {} proposals (a job needs {} episodes); the top {} worked on.\n\n## Proposals\n\n",
        night.jobs,
        night.proposals_found,
        night.config.min_episodes,
        night.plans.len()
    ));
    if night.plans.is_empty() {
        md.push_str("None.\n");
    }
    for p in &night.plans {
        let kind = if p.kind == ProposalKind::Refine { "refine" } else { "new" };
        let sources: Vec<String> = p.sources.iter().map(|(s, n)| format!("{s} {n}")).collect();
        md.push_str(&format!("### {kind} `{}`\n\n", p.skill));
        md.push_str(&format!("- job: {}\n", one_line(&p.job)));
        if !p.central_task.is_empty() && p.central_task != p.job {
            md.push_str(&format!("- its most central task: {}\n", one_line(&p.central_task)));
        }
        if let Some(why) = &p.job_unusable {
            md.push_str(&format!("- the teacher's job sentence was not used: {}\n", one_line(why)));
        }
        md.push_str(&format!("- episodes: {} ({} failed; {})\n", p.episodes, p.failures, sources.join(", ")));
        if !p.cost.is_empty() {
            md.push_str(&format!("- each time: {}\n", p.cost));
        }
        for e in p.evidence.iter().take(REPORT_EVIDENCE) {
            md.push_str(&format!(
                "- evidence ({}, {}): {} ({})\n",
                e.source,
                e.outcome.as_str(),
                one_line(&e.task),
                e.file.display()
            ));
        }
        md.push_str(&format!(
            "- mined cases: {} train, {} validation, {} held out\n",
            p.cases[0], p.cases[1], p.cases[2]
        ));
        if p.teacher_cases > 0 {
            md.push_str(&format!("- train cases the teacher added: {}\n", p.teacher_cases));
        }
        if let Some(g) = &p.gate {
            md.push_str(&format!(
                "- held out: candidate {} vs {} {}; lift {}\n",
                g.candidate, g.current_label, g.current, g.lift
            ));
        }
        if let Some(c) = &p.calibration {
            md.push_str(&format!(
                "- the rubric judge agreed with your verdicts on {} of {} answers\n",
                c.agreed, c.total
            ));
        }
        md.push_str(&format!(
            "- teacher tokens: {}{}\n",
            p.teacher_tokens,
            cost_text(night.config.teacher_prices, p.teacher_tokens, p.teacher_completion_tokens)
        ));
        md.push_str(&format!("- outcome: {}\n\n", status_line(&p.status)));
    }
    md
}

/// The night's report as a self-contained HTML page.
pub fn report_html(night: &NightState) -> String {
    let body = report_markdown(night);
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>skd night</title><style>body{font-family:\
         sans-serif;max-width:50em;margin:2em auto}pre{white-space:pre-wrap}</style></head><body>",
    );
    let mut in_list = false;
    for line in body.lines() {
        let text = escape(line);
        if let Some(item) = text.strip_prefix("- ") {
            if !in_list {
                html.push_str("<ul>");
                in_list = true;
            }
            html.push_str(&format!("<li>{item}</li>"));
            continue;
        }
        if in_list {
            html.push_str("</ul>");
            in_list = false;
        }
        if let Some(h) = text.strip_prefix("### ") {
            html.push_str(&format!("<h3>{h}</h3>"));
        } else if let Some(h) = text.strip_prefix("## ") {
            html.push_str(&format!("<h2>{h}</h2>"));
        } else if let Some(h) = text.strip_prefix("# ") {
            html.push_str(&format!("<h1>{h}</h1>"));
        } else if text.starts_with('|') {
            if !text.starts_with("|---") {
                let cells: Vec<&str> = text.trim_matches('|').split('|').map(str::trim).collect();
                html.push_str(&format!("<div>{}</div>", cells.join(" &middot; ")));
            }
        } else if !text.is_empty() {
            html.push_str(&format!("<p>{text}</p>"));
        }
    }
    if in_list {
        html.push_str("</ul>");
    }
    html.push_str("</body></html>\n");
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use evals::EvalCase;

    #[test]
    fn the_gate_keeps_a_change_only_when_it_loses_nothing_and_its_p_is_under_the_threshold() {
        let counts = |gained, lost| PairedCounts { both: 3, gained, lost, neither: 2 };
        // With none lost P is 2 x 0.5^gained: 5 gained is 0.0625, 6 gained 0.03125.
        assert_eq!(gate_keeps(counts(5, 0), 0.05), (false, 0.0625));
        assert_eq!(gate_keeps(counts(6, 0), 0.05), (true, 0.03125));
        // One held-out task worse is never kept, however many gained (12 to 1: P 0.0034).
        assert!(!gate_keeps(counts(12, 1), 0.05).0);
        assert!(!gate_keeps(counts(12, 1), 1.0).0);
        // Nothing gained is no change worth making, even with the check turned off.
        assert_eq!(gate_keeps(counts(0, 0), 1.0), (false, 1.0));
        // A looser threshold lets a small job's change through.
        assert_eq!(gate_keeps(counts(2, 0), 0.6), (true, 0.5));
    }

    /// A judge that passes every answer (the failure a calibration must catch): it answers
    /// each rubric request with every criterion met.
    struct PassesEverything(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl Teacher for PassesEverything {
        fn model_id(&self) -> &str {
            "passes-everything"
        }
        async fn complete(&self, _: &skill_core::CompletionRequest) -> skill_core::Result<skill_core::Completion> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(skill_core::Completion {
                text: r#"{"criteria": [{"criterion": "c", "passed": true, "evidence": "looks fine"}]}"#.into(),
                usage: skill_core::Usage { prompt_tokens: 50, completion_tokens: 10 },
                elapsed: std::time::Duration::ZERO,
                finish_reason: "stop".into(),
            })
        }
    }

    /// A judge that never answers in the verdict's JSON.
    struct Unusable;

    #[async_trait::async_trait]
    impl Teacher for Unusable {
        fn model_id(&self) -> &str {
            "unusable"
        }
        async fn complete(&self, _: &skill_core::CompletionRequest) -> skill_core::Result<skill_core::Completion> {
            Ok(crate::scripted_completion("I think it is fine."))
        }
    }

    #[tokio::test]
    async fn a_judge_that_passes_what_the_user_corrected_may_not_gate() {
        use crate::settled_episode;
        use agent_logs::OutcomeKind::{Failure, Success};
        let long = "Shipped: the login page and the billing fix.\nNext: the export and the invoice emails.";
        let episodes = [
            settled_episode("Draft the weekly update for week 1", Success, Some(long), None),
            settled_episode(
                "Draft the weekly update for week 2",
                Failure,
                Some("Shipped: nothing"),
                Some("no, you missed the export"),
            ),
            settled_episode(
                "Draft the weekly update for week 3",
                Failure,
                Some("Next: nothing"),
                Some("wrong, billing shipped"),
            ),
            settled_episode("Draft the weekly update for week 4", Success, Some(long), None),
        ];
        let refs: Vec<&Episode> = episodes.iter().collect();
        let mut suite = suite_from_episodes("mined-draft-the-weekly", &refs);
        for (case, split) in suite.evals.iter_mut().zip([Split::Train, Split::Train, Split::Validation, Split::Test]) {
            case.split = split;
        }
        let verdicts = user_verdicts(&refs);
        assert_eq!(verdicts.iter().map(|v| v.accepted).collect::<Vec<_>>(), [true, false, false, true]);
        let judge = PassesEverything(Default::default());
        let c = calibrate_judge(&judge, &suite, &verdicts).await.expect("calibrated");
        // The held-out case is not asked about; the two corrected answers are passed.
        assert_eq!((c.agreed, c.total), (1, 3));
        assert_eq!(c.tokens, 3 * 60, "the judge's tokens are counted (50 + 10 an answer)");
        assert_eq!(judge.0.load(std::sync::atomic::Ordering::SeqCst), 3);
        let why = judge_refused(&c, 0.8).expect("refused");
        assert!(why.contains("on 1 of 3 answers (33%, needs 80%)"), "{why}");
        // A judge whose verdicts are unusable agrees with nothing (and does not end the night).
        let c = calibrate_judge(&Unusable, &suite, &verdicts).await.expect("calibrated, not an error");
        assert_eq!((c.agreed, c.total), (0, 3));
        assert_eq!(judge_refused(&Calibration { agreed: 4, total: 5, tokens: 0, completion_tokens: 0 }, 0.8), None);
        assert!(
            judge_refused(&Calibration { agreed: 0, total: 0, tokens: 0, completion_tokens: 0 }, 0.8)
                .expect("no evidence")
                .contains("no answer")
        );
    }

    fn suite(splits: &[Split]) -> EvalSuite {
        let mut suite = EvalSuite::new("mined-job");
        for (i, split) in splits.iter().enumerate() {
            let mut case = EvalCase::new(format!("c{i}"), format!("task {i}"), "1".to_string());
            case.split = *split;
            suite.evals.push(case);
        }
        suite
    }

    #[test]
    fn mined_cases_need_a_held_out_task_and_two_others() {
        let no_test = settled_splits(&suite(&[Split::Train, Split::Train, Split::Validation])).expect_err("no test");
        assert!(no_test.contains("0 of them held out"), "{no_test}");
        let too_few = settled_splits(&suite(&[Split::Test, Split::Train])).expect_err("two cases");
        assert!(too_few.contains("2 with a verdict"), "{too_few}");
        // All non-held-out cases hashed to train: the last one becomes validation, the
        // held-out case stays.
        let fixed = settled_splits(&suite(&[Split::Train, Split::Test, Split::Train])).expect("fixed");
        let splits: Vec<Split> = fixed.evals.iter().map(|c| c.split).collect();
        assert_eq!(splits, [Split::Train, Split::Test, Split::Validation]);
    }

    fn plan(skill: &str, library_hash: Option<String>) -> Plan {
        Plan {
            kind: ProposalKind::New,
            skill: skill.into(),
            job: "Convert kilometres to metres".into(),
            central_task: "How many metres are in 3 km?".into(),
            job_unusable: None,
            job_tokens: 0,
            job_completion_tokens: 0,
            episodes: 4,
            failures: 0,
            sources: BTreeMap::new(),
            cost: String::new(),
            cases: [2, 1, 1],
            teacher_cases: 0,
            library_hash,
            teacher_tokens: 10,
            teacher_completion_tokens: 0,
            evidence: Vec::new(),
            calibration: None,
            gate: None,
            status: PlanStatus::Staged,
        }
    }

    #[test]
    fn the_report_lists_each_proposal_s_evidence_and_prices_the_teacher_s_tokens() {
        use agent_logs::OutcomeKind::{Failure, Success};
        let evidence = |task: &str, outcome| crate::mine::Evidence {
            source: "claude-code".into(),
            file: PathBuf::from("/home/ana/.claude/projects/-home-ana/s-1.jsonl"),
            task: task.into(),
            outcome,
        };
        let mut proposal = plan("km-to-m", None);
        proposal.evidence = (0..7).map(|i| evidence(&format!("How many metres are in {i} km?"), Success)).collect();
        proposal.evidence[0] = evidence("How many metres\nare in 3 km?", Failure);
        proposal.teacher_tokens = 1_000_000;
        proposal.teacher_completion_tokens = 250_000;
        let mut night = NightState {
            id: "20261207T020000Z".into(),
            started: "2026-12-07T02:00:00Z".into(),
            finished: None,
            stage: NightStage::Finished,
            config: NightlyConfig { teacher_prices: Some([1.0, 4.0]), ..NightlyConfig::default() },
            episodes: BTreeMap::from([("claude-code".to_string(), 7)]),
            jobs: 1,
            proposals_found: 1,
            plans: vec![proposal],
            teacher_tokens: 1_000_000,
            seconds: 1.0,
        };
        let report = report_markdown(&night);
        // 750,000 prompt tokens at $1 and 250,000 generated at $4 a million.
        assert!(
            report.contains("teacher tokens 1000000 (250000 of them generated) of a budget of 200000, about $1.7500."),
            "{report}"
        );
        assert!(report.contains("- teacher tokens: 1000000, about $1.7500\n"), "{report}");
        let listed: Vec<&str> = report.lines().filter(|l| l.starts_with("- evidence")).collect();
        assert_eq!(listed.len(), REPORT_EVIDENCE, "{report}");
        assert_eq!(
            listed[0],
            "- evidence (claude-code, failure): How many metres are in 3 km? (/home/ana/.claude/projects/-home-ana/s-1.jsonl)"
        );
        night.config.teacher_prices = None;
        assert!(!report_markdown(&night).contains('$'), "no prices, no cost");
    }

    const STAGED: &str = "---\nname: km-to-m\ndescription: Convert kilometres to metres.\n---\n\nMultiply by 1000.\n";

    fn staged_folder(root: &Path) -> PathBuf {
        let staged = root.join("staged/km-to-m");
        atomic_write(&staged.join("SKILL.md"), STAGED.as_bytes()).expect("staged");
        suite(&[Split::Train, Split::Validation, Split::Test]).save(&EvalSuite::path_in(&staged)).expect("suite");
        staged
    }

    #[test]
    fn adopting_never_writes_over_a_skill_edited_since_the_night_began() {
        let tmp = tempfile::tempdir().expect("tmp");
        let library = tmp.path().join("skills");
        let staged = staged_folder(tmp.path());
        // The night saw no such skill; the user has written one since.
        let by_hand = "---\nname: km-to-m\ndescription: Mine.\n---\n\nMy own steps.\n";
        atomic_write(&library.join("km-to-m/SKILL.md"), by_hand.as_bytes()).expect("hand");
        let status = adopt_plan(&library, "n1", &plan("km-to-m", None), &staged).expect("adopt");
        assert_eq!(status, PlanStatus::EditedByHand);
        assert_eq!(std::fs::read_to_string(library.join("km-to-m/SKILL.md")).expect("read"), by_hand);
        // Seen at the night's start as it is now, it is replaced, and kept in the history.
        let status = adopt_plan(&library, "n1", &plan("km-to-m", Some(content_hash(by_hand))), &staged).expect("adopt");
        assert_eq!(status, PlanStatus::Adopted { version: 2 });
        assert_eq!(std::fs::read_to_string(library.join("km-to-m/SKILL.md")).expect("read"), STAGED);
        let history = VersionStore::new(library.join("km-to-m")).history().expect("history");
        assert_eq!(
            history.iter().map(|v| v.hash.clone()).collect::<Vec<_>>(),
            [content_hash(by_hand), content_hash(STAGED)]
        );
        assert!(EvalSuite::path_in(&library.join("km-to-m")).is_file(), "a new skill takes its mined suite along");
    }

    #[test]
    fn adopt_takes_the_last_nights_staged_change_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let paths = NightlyPaths::under(tmp.path());
        let library = tmp.path().join("skills");
        let night = NightState {
            id: "20261204T030000Z".into(),
            started: "2026-12-04T03:00:00Z".into(),
            finished: Some("2026-12-04T03:10:00Z".into()),
            stage: NightStage::Finished,
            config: NightlyConfig::default(),
            episodes: BTreeMap::from([("pi".to_string(), 4)]),
            jobs: 1,
            proposals_found: 1,
            plans: vec![plan("km-to-m", None)],
            teacher_tokens: 10,
            seconds: 1.0,
        };
        staged_folder(&paths.night(&night.id));
        write_night(&paths.night(&night.id), &night).expect("night");
        atomic_write(&paths.last(), night.id.as_bytes()).expect("last");
        assert_eq!(adopt(&paths, &library, "km-to-m", false).expect("adopt"), 1);
        assert_eq!(std::fs::read_to_string(library.join("km-to-m/SKILL.md")).expect("read"), STAGED);
        let again = adopt(&paths, &library, "km-to-m", false).expect_err("twice");
        assert!(again.to_string().contains("adopted already (version 1)"), "{again}");
        let unknown = adopt(&paths, &library, "other", false).expect_err("unknown");
        assert!(unknown.to_string().contains("did not work on `other`"), "{unknown}");
        let report = std::fs::read_to_string(paths.night(&night.id).join("report.md")).expect("report");
        assert!(report.contains("adopted as version 1"), "{report}");
    }

    #[test]
    fn a_second_night_is_refused_while_one_holds_the_lock() {
        let tmp = tempfile::tempdir().expect("tmp");
        let paths = NightlyPaths::under(tmp.path());
        let held = lock(&paths).expect("first");
        assert!(matches!(lock(&paths), Err(Error::Busy(_))));
        drop(held);
        lock(&paths).expect("free again");
    }

    #[test]
    fn a_corrupt_night_state_names_its_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let paths = NightlyPaths::under(tmp.path());
        atomic_write(&paths.current(), b"{\"id\": 3").expect("write");
        let err = unfinished_night(&paths).expect_err("corrupt");
        assert!(err.to_string().contains("current.json:1:") && err.to_string().contains("move it aside"), "{err}");
    }
}
