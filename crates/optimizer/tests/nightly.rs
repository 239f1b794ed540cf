//! The night end to end with real parts: mined episodes of a recurring job, the real
//! embedding model, the real SmolLM2-135M student and recorded real teacher answers (a
//! cassette of Qwen2.5-Coder-1.5B served by `skd serve`). The teacher names the job, and the
//! night is killed in the middle of the skill's draft and resumed; a second night is refused while one holds the lock; a skill the user writes
//! by hand during the night is never overwritten.
//!
//! Re-record (needs a teacher endpoint, e.g. `skd serve --model qwen2.5-coder-1.5b`):
//! `SKD_RECORD_TEACHER=http://127.0.0.1:PORT/v1#default cargo test --workspace --test nightly`
//! (the replay-only assertions describe the current recording).

use agent_logs::{Episode, Outcome, OutcomeKind};
use async_trait::async_trait;
use embed::MiniLm;
use evals::RunnerConfig;
use optimizer::distill::DistillConfig;
use optimizer::nightly::{
    AdoptPolicy, NightStage, Nightly, NightlyConfig, NightlyPaths, PlanStatus, lock, unfinished_night,
};
use optimizer::{Error, LibrarySkill, ProposalKind};
use skill_core::{Completion, CompletionRequest, Student, Teacher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use student::models::{ALL_MINILM_L6_V2, ModelStore, find_known};
use student::{MistralRsOptions, MistralRsStudent};
use teacher::{CassetteTeacher, OpenAiTeacher, OpenAiTeacherConfig};

/// This package's folder, as cargo gives it to the running test: a test binary built from
/// another checkout that shares the target folder keeps that checkout's compile-time path.
fn package_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests"))
}

fn cassette_path() -> PathBuf {
    package_dir().join("tests/cassettes/nightly_km_to_metres.json")
}

fn embedder() -> MiniLm {
    let known = find_known(ALL_MINILM_L6_V2).expect("known");
    let store = ModelStore::new(ModelStore::default_dir());
    let weights = store.pull(&known, &mut |_| {}).expect("pull all-MiniLM-L6-v2");
    let [tokenizer, config] = [0, 1].map(|i| store.companion_path(&known.companions[i]));
    MiniLm::load(&weights, &tokenizer, &config).expect("load")
}

fn episode(source: &str, session: &str, task: &str, answer: &str) -> Episode {
    Episode {
        time: Some("2026-12-01T09:00:00Z".into()),
        answer: Some(answer.into()),
        outcome: Outcome { kind: OutcomeKind::Success, evidence: "thanks".into(), correction: None },
        ..Episode::new(source, format!("/logs/{source}/{session}.jsonl"), session, task)
    }
}

/// One job asked eight ways over three agents (each answer the user accepted), and two
/// one-off tasks.
fn history() -> Vec<Episode> {
    vec![
        episode("pi", "a1", "How many metres are in 3 kilometres?", "3000"),
        episode("claude-code", "b1", "Convert 5 km to metres.", "5000"),
        episode("codex", "c1", "What is 2.5 kilometres in metres?", "2500"),
        episode("pi", "a2", "7 km is how many metres?", "7000"),
        episode("claude-code", "b2", "How many meters is 12 km?", "12000"),
        episode("codex", "c2", "Express 4 kilometres in metres.", "4000"),
        episode("pi", "a3", "Convert 9 kilometers into meters.", "9000"),
        episode("codex", "c3", "How many metres make 1.2 km?", "1200"),
        episode("pi", "a4", "Rename the git branch to main", "Done."),
        episode("codex", "c4", "Write a haiku about autumn", "Leaves fall softly down"),
    ]
}

/// Passes the first `limit` fresh requests (and their repairs) through, then fails like a
/// dropped connection.
struct CrashAfter {
    inner: Arc<dyn Teacher>,
    limit: usize,
    fresh: AtomicUsize,
}

#[async_trait]
impl Teacher for CrashAfter {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        let repair = request.messages.last().is_some_and(|m| m.content.starts_with("That answer cannot be used"));
        if !repair && self.fresh.fetch_add(1, Ordering::SeqCst) >= self.limit {
            return Err(skill_core::Error::backend("test", "simulated crash"));
        }
        self.inner.complete(request).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_night_mines_distills_gates_and_resumes_after_a_crash() {
    let known = find_known("smollm2-135m").expect("known");
    let model = ModelStore::new(ModelStore::default_dir()).path_of(&known);
    let student: Arc<dyn Student> = Arc::new(
        MistralRsStudent::load(&model, MistralRsOptions::default()).await.expect("SmolLM2 (scripts/test.sh pulls it)"),
    );
    let embedder = embedder();
    let tmp = tempfile::tempdir().expect("tmp");
    let library_root = tmp.path().join("skills");
    std::fs::create_dir_all(library_root.join("boolean-eval")).expect("mkdir");
    std::fs::write(
        library_root.join("boolean-eval/SKILL.md"),
        "---\nname: boolean-eval\ndescription: Evaluate a Boolean expression of True, False, not, and, or.\n---\n\n\
         1. Work from the innermost parentheses outwards.\n2. Answer True or False.\n",
    )
    .expect("skill");
    let paths = NightlyPaths::under(&tmp.path().join("state"));
    let recording = std::env::var("SKD_RECORD_TEACHER").ok();
    let cassette = Arc::new(match &recording {
        Some(spec) => {
            let (url, model) = spec.split_once('#').expect("URL#model");
            let real = OpenAiTeacher::new(OpenAiTeacherConfig::new(url, model)).expect("teacher");
            CassetteTeacher::record(Arc::new(real), &cassette_path())
        }
        None => CassetteTeacher::replay(&cassette_path()).expect("cassette"),
    });
    let history = history();
    let episodes: Vec<&Episode> = history.iter().collect();
    let config = NightlyConfig {
        max_skills: 2,
        teacher_tokens: Some(20_000),
        adopt: AdoptPolicy::Beneficial,
        min_episodes: 3,
        // The held-out split of eight mined tasks is one or two cases: no change could reach
        // P < 0.05 on it, so this night gates on "better on some held-out task, worse on none".
        gate_p: 1.0,
        distill: DistillConfig {
            max_rounds: 1,
            patience: 1,
            minibatch: 3,
            recall_queries: 2,
            worked_examples: 0,
            bare_job_candidate: false,
            min_validation_gain: 1,
            teacher_timeout_secs: 1800,
            ..DistillConfig::default()
        },
        student: None,
        judge_min_agreement: 0.8,
        teacher_prices: Some([0.15, 0.6]),
    };
    let runner = RunnerConfig { max_tokens: 96, cache_dir: Some(tmp.path().join("cache")), ..RunnerConfig::default() };
    let library = vec![LibrarySkill {
        name: "boolean-eval".into(),
        description: "Evaluate a Boolean expression of True, False, not, and, or.".into(),
    }];
    let crashing: Arc<dyn Teacher> =
        Arc::new(CrashAfter { inner: cassette.clone(), limit: 1, fresh: AtomicUsize::new(0) });
    let night = |teacher| Nightly {
        student: student.clone(),
        teacher,
        embedder: &embedder,
        library_root: library_root.clone(),
        library: library.clone(),
        paths: paths.clone(),
        runner: runner.clone(),
    };
    // The first night: the teacher drafts the skill, then the connection drops.
    let held = lock(&paths).expect("lock");
    let err = night(crashing.as_ref()).run(&held, &episodes, config.clone(), &mut |_| {}).await.expect_err("crash");
    assert!(err.to_string().contains("simulated crash"), "{err}");
    let interrupted = unfinished_night(&paths).expect("read").expect("the night is kept");
    assert_eq!(interrupted.plans.len(), 1, "one job recurs: {:?}", interrupted.plans);
    let plan = &interrupted.plans[0];
    assert_eq!(plan.kind, ProposalKind::New);
    assert_eq!(plan.episodes, 8, "the one-offs are not part of it");
    assert_eq!(plan.status, PlanStatus::Distilling);
    assert!(plan.cases[2] >= 1, "held-out cases are mined tasks: {:?}", plan.cases);
    // The teacher wrote the job's sentence before the crash, and the skill is named after it;
    // the most central task is kept beside it.
    assert!(plan.job_tokens > 0 && plan.job_unusable.is_none(), "{plan:?}");
    assert!(history.iter().any(|e| e.task == plan.central_task), "{plan:?}");
    if recording.is_none() {
        assert_eq!(plan.job, "Convert the given distance from kilometers to meters.");
        assert_eq!(plan.skill, "mined-convert-the-given-distance");
    }
    // A second night while the first holds the lock is refused.
    assert!(matches!(lock(&paths), Err(Error::Busy(_))), "a second night must be refused");
    drop(held);

    // The user writes the skill by hand while the night is down.
    let name = plan.skill.clone();
    let by_hand = format!(
        "---\nname: {name}\ndescription: Convert kilometres to metres.\n---\n\nMultiply the kilometres by 1000.\n"
    );
    std::fs::create_dir_all(library_root.join(&name)).expect("mkdir");
    std::fs::write(library_root.join(&name).join("SKILL.md"), &by_hand).expect("hand edit");

    // The next night resumes it: the teacher's finished answer is not asked again.
    let held = lock(&paths).expect("lock");
    let done = night(cassette.as_ref() as &dyn Teacher)
        .run(&held, &episodes, config.clone(), &mut |_| {})
        .await
        .expect("resumed night");
    drop(held);
    assert_eq!(done.id, interrupted.id, "the same night, resumed");
    assert_eq!(done.stage, NightStage::Finished);
    assert!(unfinished_night(&paths).expect("read").is_none(), "current.json is cleared");
    let plan = &done.plans[0];
    let gate = plan.gate.as_ref().expect("the change was gated");
    assert_eq!(gate.cases, plan.cases[2]);
    assert_eq!(gate.current_label, "no skill");
    assert!(done.teacher_tokens > 0 && done.teacher_tokens == plan.teacher_tokens, "{done:?}");
    // The generated part is counted apart (it is priced apart), and the proposal keeps its
    // evidence for the report.
    assert!(plan.teacher_completion_tokens > 0 && plan.teacher_completion_tokens < plan.teacher_tokens, "{plan:?}");
    assert!(!plan.evidence.is_empty(), "{plan:?}");
    // The hand-written skill is as the user left it (a change that passed the gate would be
    // left staged, not written over it: unit-tested in nightly.rs).
    assert_eq!(std::fs::read_to_string(library_root.join(&name).join("SKILL.md")).expect("read"), by_hand);
    let staged = paths.staged(&done.id, &name);
    assert!(staged.join("SKILL.md").is_file() && staged.join("SKILL.md.diff").is_file());
    let report = std::fs::read_to_string(paths.night(&done.id).join("report.md")).expect("report");
    assert!(report.contains(&format!("### new `{name}`")) && report.contains("held out:"), "{report}");
    assert!(report.contains("- evidence (") && report.contains(", about $"), "{report}");
    assert!(paths.night(&done.id).join("report.html").is_file());
    // The distillation ran the recall check on the teacher's queries (the recorded ones are
    // usable), and its ranking is kept with the staged state.
    let distilled = optimizer::distill::load_state(&staged).expect("the staged distillation's state");
    let recall = distilled.recall.as_ref().expect("recall check");
    assert_eq!(recall.not_checked, None, "{recall:?}");
    assert!(!recall.positive.is_empty() && !recall.negative.is_empty(), "{recall:?}");
    if recording.is_none() {
        // Search ranks the skill first for all three of its users' queries, and for both
        // near-misses too (miles, not kilometres: in a library of two skills nothing else is
        // nearer); neither description rewrite gets more of them right, so the check fails.
        fn found(qs: &[(String, bool)]) -> Vec<(&str, bool)> {
            qs.iter().map(|(q, ok)| (q.as_str(), *ok)).collect()
        }
        assert_eq!(
            found(&recall.positive),
            [
                ("Convert distance from kilometers to meters", true),
                ("Convert 3 km to meters", true),
                ("How to convert 5 km to meters", true)
            ]
        );
        assert_eq!(
            found(&recall.negative),
            [("Convert 1 mile to meters", false), ("How to convert 2 miles to meters", false)]
        );
        assert_eq!(recall.discarded_near_misses, ["Convert distance from miles to meters"]);
        assert_eq!((recall.rewrites, recall.right_before_and_after, recall.rewrite_kept), (2, Some((3, 3)), false));
        assert!(!recall.passed);
        assert!(cassette.calls() > 1, "the resumed night went on with the recording");
        // SmolLM2 gets the one held-out task wrong with the distilled skill and without one:
        // nothing gained, so the change is rejected.
        assert_eq!((gate.candidate.passed, gate.current.passed, gate.cases), (0, 0, 1), "{gate:?}");
        assert!(!gate.kept);
        assert!(
            matches!(&plan.status, PlanStatus::Rejected { why } if why.ends_with("not kept: no held-out task got better")),
            "{:?}",
            plan.status
        );
    } else {
        panic!("re-recorded: assert what this recording does above (recall {recall:?}, gate {gate:?})");
    }

    // A night whose teacher budget is spent works on nothing, and says so.
    let spent = NightlyConfig { teacher_tokens: Some(0), ..config };
    let held = lock(&paths).expect("lock");
    let skipped =
        night(cassette.as_ref() as &dyn Teacher).run(&held, &episodes, spent, &mut |_| {}).await.expect("night");
    assert_ne!(skipped.id, done.id);
    assert_eq!(
        skipped.plans.iter().map(|p| p.status.clone()).collect::<Vec<_>>(),
        [PlanStatus::Skipped { why: "the night's teacher budget was spent".into() }]
    );
    assert_eq!(skipped.teacher_tokens, 0);
}
