//! The distillation loop end to end with the real SmolLM2-135M student and recorded real
//! teacher answers (a cassette of Qwen2.5-Coder-1.5B served by `skd serve`), including a
//! crash in the middle and `--resume`.
//!
//! Re-record (needs a teacher endpoint, e.g. `skd serve --model qwen2.5-coder-1.5b`):
//! `SKD_RECORD_TEACHER=http://127.0.0.1:PORT/v1#default cargo test -p evals --test distill_loop`

use async_trait::async_trait;
use evals::bbh::{SplitSizes, import};
use evals::distill::{DistillConfig, DistillJob, DistillState, Distiller, Stage, load_state};
use evals::{EvalSuite, RunnerConfig};
use skill_core::{Completion, CompletionRequest, Student, Teacher, VersionStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use student::models::{ModelStore, find_known};
use student::{MistralRsOptions, MistralRsStudent};
use teacher::{CassetteTeacher, OpenAiTeacher, OpenAiTeacherConfig};

fn cassette_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cassettes/distill_boolean_expressions.json")
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/bbh")
}

/// Passes the first `limit` fresh requests (and their repair requests) through, then fails
/// like a dropped connection.
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
async fn distill_rewrites_measures_and_resumes_after_a_crash() {
    let known = find_known("smollm2-135m").expect("known");
    let model = ModelStore::new(ModelStore::default_dir()).path_of(&known);
    let student: Arc<dyn Student> = Arc::new(
        MistralRsStudent::load(&model, MistralRsOptions::default()).await.expect("SmolLM2 (scripts/test.sh pulls it)"),
    );

    let tmp = tempfile::tempdir().expect("tmp");
    let skills = tmp.path().join("skills");
    let task = import(&data_dir(), "boolean_expressions", SplitSizes { train: 3, validation: 3, test: 4 }, 11)
        .expect("import");
    let dir = skills.join(&task.skill_name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    VersionStore::new(&dir).save(&task.skill_markdown, "imported").expect("save");
    task.suite.save(&EvalSuite::path_in(&dir)).expect("suite");

    let recording = std::env::var("SKD_RECORD_TEACHER").ok();
    let cassette = Arc::new(match &recording {
        Some(spec) => {
            let (url, model) = spec.split_once('#').expect("URL#model");
            let real = OpenAiTeacher::new(OpenAiTeacherConfig::new(url, model)).expect("teacher");
            CassetteTeacher::record(Arc::new(real), &cassette_path())
        }
        None => CassetteTeacher::replay(&cassette_path()).expect("cassette"),
    });
    let config = DistillConfig {
        max_rounds: 2,
        patience: 2,
        minibatch: 3,
        recall_queries: 4,
        // The cassette holds two teacher rewrites: every round asks the teacher.
        worked_examples: 0,
        ..DistillConfig::default()
    };
    let job = DistillJob {
        skill_name: task.skill_name.clone(),
        description: "Evaluate a Boolean expression of True, False, not, and, or with brackets.".into(),
        transcripts: Vec::new(),
        examples: Vec::new(),
    };
    let runner = RunnerConfig { max_tokens: 96, cache_dir: Some(tmp.path().join("cache")), ..RunnerConfig::default() };
    let make = |teacher: Arc<dyn Teacher>| (teacher, runner.clone());

    // First run: the teacher "crashes" after its first answer.
    let (crashing, runner1) =
        make(Arc::new(CrashAfter { inner: cassette.clone(), limit: 1, fresh: AtomicUsize::new(0) }));
    let distiller = Distiller {
        student: student.clone(),
        teacher: crashing.as_ref(),
        skill_dir: dir.clone(),
        library_root: Some(skills.clone()),
        runner: runner1,
    };
    let mut events = Vec::new();
    let err = distiller
        .run(DistillState::new(job.clone(), config.clone()), &mut |e| events.push(format!("{e:?}")))
        .await
        .expect_err("the teacher crashed");
    assert!(err.to_string().contains("simulated crash"), "{err}");
    let saved = load_state(&dir).expect("state survives the crash");
    assert_eq!(saved.stage, Stage::Measured, "baseline and start were measured before the crash");
    assert!(saved.baseline_validation.is_some());
    assert!(saved.candidates[0].validation.len() == 3, "{:?}", saved.candidates[0]);
    let kept_candidates = saved.candidates.len();
    assert!(kept_candidates >= 2, "the first rewrite was kept: {kept_candidates}");

    // Resume: the teacher calls that finished are not repeated (the cassette goes on from
    // where the crash left it).
    let distiller =
        Distiller { student, teacher: cassette.as_ref(), skill_dir: dir.clone(), library_root: Some(skills), runner };
    let done = distiller.run(saved, &mut |_| {}).await.expect("resumed run finishes");
    assert_eq!(done.stage, Stage::Finished);
    assert!(done.candidates.len() >= kept_candidates, "no candidate lost");
    assert!(done.rounds >= 1 && done.rounds <= 2, "rounds {}", done.rounds);
    assert!(done.log.iter().all(|r| r.parent < done.candidates.len()));
    let report = done.report.as_ref().expect("report");
    assert_eq!(report.with_skill.total, 4, "the sealed test split");
    assert_eq!(report.no_skill.total, 4);
    assert!(report.teacher_tokens > 0);
    let recall = done.recall.as_ref().expect("recall check");
    assert!(!recall.positive.is_empty() && !recall.negative.is_empty());
    // The distilled version is in the history with its scores, and reports were written.
    let history = VersionStore::new(&dir).history().expect("history");
    let last = history.last().expect("a version");
    assert_eq!(last.version, report.version);
    assert!(last.scores.contains_key("test_pass_rate") && last.scores.contains_key("beneficial"), "{:?}", last.scores);
    assert!(dir.join("evals/results/benchmark.html").is_file());
    if recording.is_none() {
        assert_eq!(cassette.calls(), cassette_total(), "every recorded answer was used");
    }
}

fn cassette_total() -> usize {
    let text = std::fs::read_to_string(cassette_path()).expect("cassette");
    let c: teacher::Cassette = serde_json::from_str(&text).expect("json");
    c.exchanges.len()
}
