//! BIG-Bench Hard as skills: a task's human-written chain-of-thought procedure becomes a
//! `SKILL.md`, and its examples become an eval suite with a seeded train / validation /
//! test split. The data stays where it is (`../shared/data/bbh` by default); nothing from
//! it is copied into this repository.

use crate::{Error, Result};
use evals::grade::Grader;
use evals::suite::{CaseId, CaseMode, EvalCase, EvalSuite, Split};
use std::path::{Path, PathBuf};

/// Tasks whose answers are numbers (graded numerically).
const NUMERIC_TASKS: &[&str] = &["multistep_arithmetic_two", "object_counting"];

pub use crate::answer_format::{ANSWER_INSTRUCTIONS, ANSWER_PATTERN};

/// How many cases go to each split.
///
/// The seeded order is dealt as: train, the first [`VALIDATION_BEFORE_TEST`] validation
/// cases, the first [`TEST_BEFORE_LATE_VALIDATION`] test cases, any further validation
/// cases, then any further test cases. Dealt this way a larger validation split never moves
/// a test case, and a larger test split never moves a train or validation case: a suite can
/// grow its validation (`skd bbh import --validation 24`) and keep its sealed test split and
/// the results measured on it, or grow its test split (`--test 100`) from cases no run has
/// seen and keep every earlier test case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitSizes {
    /// Train cases (the teacher sees them and their failures).
    pub train: usize,
    /// Validation cases (decide which candidate is kept).
    pub validation: usize,
    /// Sealed test cases.
    pub test: usize,
}

impl Default for SplitSizes {
    fn default() -> Self {
        SplitSizes { train: 12, validation: 24, test: 30 }
    }
}

/// Validation cases dealt before the test split (see [`SplitSizes`]); 12 was the whole
/// validation split of the first layout.
pub const VALIDATION_BEFORE_TEST: usize = 12;

/// Test cases dealt before the late validation cases (see [`SplitSizes`]); 30 was the whole
/// test split of the first layouts.
pub const TEST_BEFORE_LATE_VALIDATION: usize = 30;

impl SplitSizes {
    /// The split of the `n`-th case in the seeded order (`None`: not used).
    pub fn split_of(&self, n: usize) -> Option<Split> {
        let early_validation = self.validation.min(VALIDATION_BEFORE_TEST);
        let early_test = self.test.min(TEST_BEFORE_LATE_VALIDATION);
        let blocks = [
            (self.train, Split::Train),
            (early_validation, Split::Validation),
            (early_test, Split::Test),
            (self.validation - early_validation, Split::Validation),
            (self.test - early_test, Split::Test),
        ];
        let mut end = 0;
        for (size, split) in blocks {
            end += size;
            if n < end {
                return Some(split);
            }
        }
        None
    }
}

/// One imported task.
#[derive(Debug, Clone)]
pub struct BbhTask {
    /// The BBH task name (`boolean_expressions`).
    pub task: String,
    /// The skill name (`bbh-boolean-expressions`).
    pub skill_name: String,
    /// The `SKILL.md` holding the human-written procedure.
    pub skill_markdown: String,
    /// The suite.
    pub suite: EvalSuite,
}

/// The default data folder: `../shared/data/bbh` from the current folder.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("../shared/data/bbh")
}

/// The task names available in `data_dir`.
pub fn list_tasks(data_dir: &Path) -> Result<Vec<String>> {
    let dir = data_dir.join("bbh");
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        Error::other(format!("BIG-Bench Hard data not found at {} ({e}); pass --data DIR", dir.display()))
    })?;
    let mut tasks: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string))
        .collect();
    tasks.sort();
    Ok(tasks)
}

#[derive(serde::Deserialize)]
struct TaskFile {
    examples: Vec<Example>,
}

#[derive(serde::Deserialize)]
struct Example {
    input: String,
    target: String,
}

/// Reads a task and its procedure and builds the skill and the suite.
pub fn import(data_dir: &Path, task: &str, sizes: SplitSizes, seed: u64) -> Result<BbhTask> {
    let task_path = data_dir.join("bbh").join(format!("{task}.json"));
    let text = std::fs::read_to_string(&task_path).map_err(|e| {
        let known = list_tasks(data_dir).map(|t| t.join(", ")).unwrap_or_default();
        Error::other(format!("{}: {e} (tasks: {known})", task_path.display()))
    })?;
    let file: TaskFile = serde_json::from_str(&text).map_err(|e| Error::Suite {
        path: task_path.clone(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let cot_path = data_dir.join("cot-prompts").join(format!("{task}.txt"));
    let cot = std::fs::read_to_string(&cot_path).map_err(|e| skill_core::Error::io(&cot_path, e))?;
    // The file starts with a canary line and a `-----` separator; then the task's one-line
    // description and three worked examples.
    let procedure = cot.split_once("-----").map(|(_, rest)| rest).unwrap_or(&cot).trim();
    let description_line = procedure.lines().next().unwrap_or(task).trim();
    let skill_name = format!("bbh-{}", task.replace('_', "-"));
    let skill_markdown = format!(
        "---\nname: {skill_name}\ndescription: {}\nlicense: MIT\nmetadata:\n  source: BIG-Bench Hard cot-prompts/{task}.txt\n---\n{procedure}\n",
        // One scalar for the whole value: a quoted line with text after it is not YAML.
        skill_core::skill::yaml_scalar(&format!(
            "{description_line} Human-written step-by-step procedure from BIG-Bench Hard ({task})."
        ))
    );

    let total = sizes.train + sizes.validation + sizes.test;
    if file.examples.len() < total {
        return Err(Error::other(format!(
            "{task} has {} examples, fewer than the {total} asked for",
            file.examples.len()
        )));
    }
    let mut order: Vec<usize> = (0..file.examples.len()).collect();
    shuffle(&mut order, seed);
    let numeric = NUMERIC_TASKS.contains(&task);
    let mut suite = EvalSuite::new(&skill_name);
    suite.answer_pattern = Some(ANSWER_PATTERN.to_string());
    suite.instructions = Some(ANSWER_INSTRUCTIONS.to_string());
    for (n, &index) in order.iter().enumerate() {
        let Some(split) = sizes.split_of(n) else { break };
        let example = &file.examples[index];
        let graders = if numeric {
            vec![Grader::Numeric { expected: None, tolerance: 1e-6, unit: None }]
        } else {
            vec![Grader::Normalized { expected: None }]
        };
        suite.evals.push(EvalCase {
            id: CaseId::Text(format!("{task}-{index}")),
            prompt: example.input.clone(),
            expected_output: Some(example.target.clone()),
            files: Vec::new(),
            workspace: None,
            workspace_files: Default::default(),
            expectations: Vec::new(),
            graders,
            split,
            mode: CaseMode::Answer,
        });
    }
    Ok(BbhTask { task: task.to_string(), skill_name, skill_markdown, suite })
}

/// How a re-imported suite relates to the stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestSplitChange {
    /// The same test cases, graded the same way; every stored case keeps its split (more
    /// validation cases may have been added).
    Same,
    /// As [`TestSplitChange::Same`], plus new test cases from cases the stored suite never
    /// used.
    Grown {
        /// Test cases added.
        added: usize,
    },
    /// Anything else; the reason says what changed.
    Changed(String),
}

/// Compares a stored suite with a re-imported one. Results measured on the stored sealed test
/// split stay valid, and no case a run trained on or selected with can ever become a test
/// case, only when the re-split adds cases: every stored case keeps its split and grading.
pub fn test_split_change(stored: &EvalSuite, imported: &EvalSuite) -> TestSplitChange {
    if stored.answer_pattern != imported.answer_pattern || stored.instructions != imported.instructions {
        return TestSplitChange::Changed("the answer format changed".into());
    }
    let new: std::collections::BTreeMap<String, &EvalCase> =
        imported.evals.iter().map(|c| (c.id.to_string(), c)).collect();
    for case in &stored.evals {
        let id = case.id.to_string();
        match new.get(&id) {
            None => {
                return TestSplitChange::Changed(format!("{} case {id} would leave the suite", case.split.as_str()));
            }
            Some(c) if c.split != case.split => {
                return TestSplitChange::Changed(format!(
                    "case {id} would move from {} to {}",
                    case.split.as_str(),
                    c.split.as_str()
                ));
            }
            Some(c) if *c != case => return TestSplitChange::Changed(format!("case {id} would be graded differently")),
            Some(_) => {}
        }
    }
    match imported.split(Split::Test).len().saturating_sub(stored.split(Split::Test).len()) {
        0 => TestSplitChange::Same,
        added => TestSplitChange::Grown { added },
    }
}

/// Whether a re-split keeps the train and validation cases exactly (a grown test split
/// does; more validation cases do not): an unfinished distillation measured its candidates
/// on them, so only such a re-split leaves its selection valid.
pub fn selection_cases_kept(stored: &EvalSuite, imported: &EvalSuite) -> bool {
    let ids =
        |suite: &EvalSuite, split: Split| -> Vec<CaseId> { suite.split(split).iter().map(|c| c.id.clone()).collect() };
    [Split::Train, Split::Validation].into_iter().all(|split| ids(stored, split) == ids(imported, split))
}

/// Fisher-Yates with a small seeded generator (splitmix64): the same seed gives the same
/// split on every machine, so a sealed test set stays sealed across runs.
fn shuffle(items: &mut [usize], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_lift_adds_the_paired_cases_of_every_task() {
        let row = |lift: Option<evals::Lift>, paired_cases| ProofRow {
            skill: "bbh-x".into(),
            model: None,
            no_skill: None,
            human: None,
            distilled: None,
            distilled_version: None,
            kept_human: false,
            distilled_vs_human: lift,
            paired_cases,
        };
        assert_eq!(pooled_distilled_vs_human(&[row(None, 0)]), None);
        let a = evals::Lift::from_counts(evals::PairedCounts { both: 10, gained: 6, lost: 2, neither: 12 });
        let b = evals::Lift::from_counts(evals::PairedCounts { both: 20, gained: 1, lost: 3, neither: 6 });
        let (pooled, cases) =
            pooled_distilled_vs_human(&[row(Some(a), 30), row(None, 0), row(Some(b), 30)]).expect("pooled");
        assert_eq!(cases, 60);
        assert_eq!(pooled.counts(), evals::PairedCounts { both: 30, gained: 7, lost: 5, neither: 18 });
        assert!((pooled.delta - 2.0 / 60.0).abs() < 1e-12);
        // More cases, a narrower interval than either task's alone.
        assert!(pooled.high - pooled.low < a.high - a.low);
    }

    #[test]
    fn shuffle_is_deterministic_and_a_permutation() {
        let mut a: Vec<usize> = (0..50).collect();
        let mut b = a.clone();
        shuffle(&mut a, 7);
        shuffle(&mut b, 7);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        let mut c: Vec<usize> = (0..50).collect();
        shuffle(&mut c, 8);
        assert_ne!(a, c);
    }

    #[test]
    fn a_larger_validation_split_keeps_every_test_case_in_place() {
        let first = SplitSizes { train: 12, validation: 12, test: 30 };
        let grown = SplitSizes { train: 12, validation: 24, test: 30 };
        let splits = |sizes: SplitSizes| (0..80).map(|n| sizes.split_of(n)).collect::<Vec<_>>();
        let (a, b) = (splits(first), splits(grown));
        for n in 0..80 {
            if a[n] == Some(Split::Test) || b[n] == Some(Split::Test) {
                assert_eq!(a[n], b[n], "position {n}");
            }
        }
        let count = |v: &[Option<Split>], s: Split| v.iter().filter(|x| **x == Some(s)).count();
        assert_eq!((count(&b, Split::Train), count(&b, Split::Validation), count(&b, Split::Test)), (12, 24, 30));
        assert_eq!(b[66], None);
        // A validation split smaller than the early block is dealt before the test split.
        let small = SplitSizes { train: 2, validation: 3, test: 4 };
        assert_eq!(small.split_of(4), Some(Split::Validation));
        assert_eq!(small.split_of(5), Some(Split::Test));
        assert_eq!(small.split_of(9), None);
    }

    #[test]
    fn a_larger_test_split_keeps_every_earlier_case_in_place() {
        let first = SplitSizes { train: 12, validation: 24, test: 30 };
        let grown = SplitSizes { train: 12, validation: 24, test: 100 };
        let (a, b): (Vec<_>, Vec<_>) = (0..200).map(|n| (first.split_of(n), grown.split_of(n))).unzip();
        for n in 0..200 {
            if a[n].is_some() {
                assert_eq!(a[n], b[n], "position {n} moved");
            } else if b[n].is_some() {
                // Every new case is a test case, from positions the old layout never used.
                assert_eq!(b[n], Some(Split::Test), "position {n}");
            }
        }
        let count = |v: &[Option<Split>], s: Split| v.iter().filter(|x| **x == Some(s)).count();
        assert_eq!((count(&b, Split::Train), count(&b, Split::Validation), count(&b, Split::Test)), (12, 24, 100));
        assert_eq!(
            (b[65], b[66], b[135], b[136]),
            (Some(Split::Validation), Some(Split::Test), Some(Split::Test), None)
        );
        // A test split within the first block is dealt as before.
        let small = SplitSizes { train: 1, validation: 14, test: 3 };
        assert_eq!(
            (small.split_of(13), small.split_of(15), small.split_of(16), small.split_of(18)),
            (Some(Split::Test), Some(Split::Test), Some(Split::Validation), None)
        );
    }

    fn suite(sizes: SplitSizes) -> EvalSuite {
        let mut suite = EvalSuite::new("bbh-t");
        for n in 0..200 {
            let Some(split) = sizes.split_of(n) else { break };
            suite.evals.push(EvalCase {
                id: CaseId::Text(format!("t-{n}")),
                prompt: format!("question {n}"),
                expected_output: Some(n.to_string()),
                files: Vec::new(),
                workspace: None,
                workspace_files: Default::default(),
                expectations: Vec::new(),
                graders: vec![Grader::Normalized { expected: None }],
                split,
                mode: CaseMode::Answer,
            });
        }
        suite
    }

    #[test]
    fn a_re_split_may_only_add_cases() {
        let first = suite(SplitSizes { train: 12, validation: 12, test: 30 });
        let stored = suite(SplitSizes { train: 12, validation: 24, test: 30 });
        assert_eq!(test_split_change(&first, &stored), TestSplitChange::Same, "more validation cases");
        assert_eq!(test_split_change(&stored, &stored), TestSplitChange::Same);
        let grown = suite(SplitSizes { train: 12, validation: 24, test: 100 });
        assert_eq!(test_split_change(&stored, &grown), TestSplitChange::Grown { added: 70 });
        assert!(selection_cases_kept(&stored, &grown), "a grown test split keeps train and validation");
        assert!(!selection_cases_kept(&first, &stored), "more validation cases");
        let why = |to: &EvalSuite| match test_split_change(&stored, to) {
            TestSplitChange::Changed(why) => why,
            other => panic!("{other:?}"),
        };
        // Fewer validation cases with more test cases: a case the stored runs selected with
        // would be tested on.
        let leaked = suite(SplitSizes { train: 12, validation: 12, test: 100 });
        assert_eq!(why(&leaked), "case t-54 would move from validation to test");
        // Fewer validation cases alone frees them for a later, larger test split: refused too.
        assert_eq!(why(&first), "validation case t-54 would leave the suite");
        let shrunk = suite(SplitSizes { train: 12, validation: 24, test: 20 });
        assert_eq!(why(&shrunk), "case t-44 would move from test to validation");
        // After the test split grew past 30, more validation would push test cases back.
        let later = suite(SplitSizes { train: 12, validation: 30, test: 100 });
        assert!(
            matches!(test_split_change(&grown, &later), TestSplitChange::Changed(ref w) if w.contains("from test to validation"))
        );
        let mut regraded = grown.clone();
        regraded.evals[30].expected_output = Some("other".into());
        assert!(
            matches!(test_split_change(&stored, &regraded), TestSplitChange::Changed(ref why) if why.contains("t-30"))
        );
        let mut reformatted = grown;
        reformatted.answer_pattern = Some("x".into());
        assert!(matches!(test_split_change(&stored, &reformatted), TestSplitChange::Changed(_)));
    }

    /// Answers "So the answer is 4."; fails every request while `down` is set.
    struct Flaky {
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl skill_core::Student for Flaky {
        fn model_id(&self) -> &str {
            "flaky"
        }
        async fn complete(
            &self,
            _request: &skill_core::CompletionRequest,
        ) -> skill_core::Result<skill_core::Completion> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(skill_core::Error::backend("flaky", "timed out"));
            }
            Ok(crate::scripted_completion("So the answer is 4."))
        }
    }

    #[tokio::test]
    async fn a_measurement_with_cases_that_failed_to_run_is_not_recorded() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("bbh-t");
        let mut suite = suite(SplitSizes { train: 1, validation: 1, test: 2 });
        suite.answer_pattern = Some(ANSWER_PATTERN.into());
        skill_core::VersionStore::new(&dir)
            .save("---\nname: bbh-t\ndescription: Add numbers.\n---\nAdd the numbers and give the sum.\n", "imported")
            .expect("v1");
        let student = std::sync::Arc::new(Flaky { down: true.into() });
        let config =
            evals::RunnerConfig { cache_dir: Some(tmp.path().join("cache")), ..evals::RunnerConfig::default() };
        let evaluator = evals::Evaluator { student: student.clone(), judge: None, suite: &suite, config: &config };
        let benchmark = dir.join("evals/results/benchmark.json");
        let measured = measure_test_split(&evaluator, &dir, None, &mut |_, _| {}).await.expect("measured");
        assert!(!measured.recorded && measured.human.errors() == 2 && measured.distilled.is_none());
        assert!(!benchmark.exists(), "timeouts are not written down as failures");
        student.down.store(false, std::sync::atomic::Ordering::SeqCst);
        let measured = measure_test_split(&evaluator, &dir, None, &mut |_, _| {}).await.expect("measured");
        assert!(measured.recorded && measured.human.errors() == 0);
        let row = proof_row(&dir, "bbh-t", None).expect("row");
        assert_eq!(row.human.map(|r| r.total), Some(2));
        assert_eq!(row.no_skill.map(|r| r.total), Some(2));
        assert_eq!(row.mixed_case_counts(), None);
        // A distilled cell on more cases (a test split grown since) is pointed out.
        let grown = ProofRow { distilled: Some(evals::Rate::wilson(3, 4)), ..row };
        assert_eq!(grown.mixed_case_counts().as_deref(), Some("no skill 2, human 2, distilled 4"));
    }

    #[tokio::test]
    async fn a_measurement_of_part_of_the_split_runs_those_cases_and_a_selected_candidate() {
        use crate::distill::{Candidate, DistillConfig, DistillJob, DistillState, Stage};
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("bbh-t");
        let mut suite = suite(SplitSizes { train: 1, validation: 1, test: 4 });
        suite.answer_pattern = Some(ANSWER_PATTERN.into());
        let human = "---\nname: bbh-t\ndescription: Add numbers.\n---\nAdd the numbers and give the sum.\n";
        skill_core::VersionStore::new(&dir).save(human, "imported").expect("v1");
        let student = std::sync::Arc::new(Flaky { down: false.into() });
        let config =
            evals::RunnerConfig { cache_dir: Some(tmp.path().join("cache")), ..evals::RunnerConfig::default() };
        let evaluator = evals::Evaluator { student, judge: None, suite: &suite, config: &config };
        let later = test_cases_at(&suite, 3, None).expect("cases 3-4");
        let mut labels = Vec::new();
        let measured = measure_test_split(&evaluator, &dir, Some(&later), &mut |label, r| {
            labels.push(format!("{label} {}", r.id));
        })
        .await
        .expect("measured");
        let ids: Vec<CaseId> = measured.human.results.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, later);
        assert_eq!(labels, ["v1 t-4", "v1 t-5", "no skill t-4", "no skill t-5"]);
        assert!(measured.distilled.is_none(), "no distillation");
        assert!(!measured.recorded, "a part of the split is not recorded");
        assert!(!dir.join("evals/results/benchmark.json").exists());

        // A distillation whose selection is over, before its own sealed test: its best
        // candidate is measured, and not recorded (it is no version yet).
        let job = DistillJob {
            skill_name: "bbh-t".into(),
            description: "Add numbers.".into(),
            transcripts: Vec::new(),
            examples: Vec::new(),
        };
        let mut state = DistillState::new(job, DistillConfig::default());
        let candidate = |id: usize, markdown: &str| Candidate {
            id,
            parent: id.checked_sub(1),
            round: id,
            markdown: markdown.into(),
            rationale: String::new(),
            validation: Vec::new(),
            tokens_per_case: 0.0,
            worked_examples: None,
        };
        let rewrite = "---\nname: bbh-t\ndescription: Add numbers.\n---\nAdd them; answer with the sum.\n";
        state.candidates = vec![candidate(0, human), candidate(1, rewrite)];
        state.best = 1;
        state.stage = Stage::RecallChecked;
        let state_path = crate::distill::state_path(&dir);
        std::fs::create_dir_all(state_path.parent().expect("folder")).expect("mkdir");
        std::fs::write(&state_path, serde_json::to_string(&state).expect("json")).expect("state");
        let measured = measure_test_split(&evaluator, &dir, None, &mut |_, _| {}).await.expect("measured");
        let (from, run) = measured.distilled.as_ref().expect("the selected candidate");
        assert_eq!(*from, DistilledFrom::UnsavedCandidate(1));
        assert_eq!(run.results.len(), 4);
        assert!(!measured.recorded && measured.errors() == 0);
        assert!(!dir.join("evals/results/benchmark.json").exists(), "nothing recorded for an unsaved candidate");
        // Before the selection is over there is no distilled skill to measure.
        state.stage = Stage::Measured;
        std::fs::write(&state_path, serde_json::to_string(&state).expect("json")).expect("state");
        let measured = measure_test_split(&evaluator, &dir, None, &mut |_, _| {}).await.expect("measured");
        assert!(measured.distilled.is_none() && measured.recorded);
    }

    #[test]
    fn a_report_on_part_of_the_test_split_counts_only_those_cases() {
        use evals::report::{Benchmark, BenchmarkEntry, CaseRow, Summary};
        // Positions 31-100 of a grown split are exactly the cases `--test 100` added, though
        // late validation cases were dealt between them and the first 30.
        let sizes = SplitSizes { train: 12, validation: 24, test: 30 };
        let (stored, grown) = (suite(sizes), suite(SplitSizes { test: 100, ..sizes }));
        let ids = |s: &EvalSuite| -> Vec<CaseId> { s.split(Split::Test).iter().map(|c| c.id.clone()).collect() };
        let added: Vec<CaseId> = ids(&grown).into_iter().filter(|id| !ids(&stored).contains(id)).collect();
        assert_eq!(added.len(), 70);
        assert_eq!(test_cases_at(&grown, 31, None).expect("31 to the end"), added);
        assert_eq!(test_cases_at(&grown, 1, Some(30)).expect("1-30"), ids(&stored));
        let past = test_cases_at(&stored, 31, None).expect_err("past the split").to_string();
        assert!(past.contains("has 30 test cases") && past.contains("31-"), "{past}");
        assert!(test_cases_at(&stored, 25, Some(31)).is_err(), "past the split");
        assert!(test_cases_at(&stored, 0, Some(2)).is_err());
        assert!(test_cases_at(&stored, 3, Some(2)).is_err());

        let suite = suite(SplitSizes { train: 1, validation: 1, test: 6 });
        let test: Vec<CaseId> = suite.split(Split::Test).iter().map(|c| c.id.clone()).collect();
        let later = test_cases_at(&suite, 4, None).expect("4 to the end");

        // The human procedure passes the first three test cases and one later one; no skill
        // passes only the later ones.
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("bbh-t");
        let human = "---\nname: bbh-t\ndescription: Add numbers.\n---\nAdd the numbers and give the sum.\n";
        skill_core::VersionStore::new(&dir).save(human, "imported").expect("v1");
        let summary = |label: &str, passed, total| Summary {
            label: label.into(),
            rate: evals::Rate::wilson(passed, total),
            tokens_per_case: 10.0,
            completion_tokens_per_case: 5.0,
            seconds_per_case: 1.0,
            errors: 0,
        };
        let passes = [(true, false), (true, false), (true, false), (true, true), (false, true), (false, true)];
        let cases = test
            .iter()
            .zip(passes)
            .map(|(id, (with, base))| CaseRow {
                id: id.clone(),
                split: Split::Test,
                with_skill: with,
                baseline: Some(base),
            })
            .collect();
        let entry = BenchmarkEntry {
            time: "2026-12-01T00:00:00Z".into(),
            version: Some(1),
            skill_hash: skill_core::skill::content_hash(human),
            model: "m".into(),
            with_skill: summary("v1", 4, 6),
            baseline: Some(summary("no skill", 3, 6)),
            lift: Some(evals::Lift::from_counts(evals::PairedCounts { both: 1, gained: 3, lost: 2, neither: 0 })),
            cases,
        };
        let results = dir.join("evals/results");
        Benchmark { skill: "bbh-t".into(), entries: vec![entry] }.write(&results).expect("write");

        let whole = proof_row(&dir, "bbh-t", None).expect("whole split");
        assert_eq!(whole.human.map(|r| (r.passed, r.total)), Some((4, 6)));
        let part = proof_row(&dir, "bbh-t", Some(&later)).expect("cases 4-6");
        assert_eq!(part.human.map(|r| (r.passed, r.total)), Some((1, 3)));
        assert_eq!(part.no_skill.map(|r| (r.passed, r.total)), Some((3, 3)));
        // A measurement that does not hold every case asked for does not count.
        let partly = [test[5].clone(), CaseId::Text("t-999".into())];
        let none = proof_row(&dir, "bbh-t", Some(&partly)).expect("partly measured");
        assert_eq!((none.human, none.no_skill), (None, None));
    }

    #[test]
    fn answer_pattern_takes_the_last_answer_line() {
        let re = regex::Regex::new(ANSWER_PATTERN).expect("pattern");
        let out = "A = True. So the answer is False.\nWait, recheck.\nSo the answer is **True**.";
        assert_eq!(evals::run::extract_answer(out, Some(&re)), "True");
        assert_eq!(evals::run::extract_answer("So the answer is (B).", Some(&re)), "(B)");
    }
}

/// One task's row of the proof table: the sealed test split with no skill, with the
/// human-written procedure (version 1, as imported) and with the distilled skill.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProofRow {
    /// The skill (`bbh-navigate`).
    pub skill: String,
    /// The student model.
    pub model: Option<String>,
    /// Without a skill.
    pub no_skill: Option<evals::Rate>,
    /// With the human-written procedure.
    pub human: Option<evals::Rate>,
    /// With the distilled skill (a finished `skd distill`).
    pub distilled: Option<evals::Rate>,
    /// The version `skd distill` saved.
    pub distilled_version: Option<u32>,
    /// The distillation kept the human procedure (no rewrite beat it on validation).
    pub kept_human: bool,
    /// Distilled against human, paired by case.
    pub distilled_vs_human: Option<evals::Lift>,
    /// Test cases in that pairing.
    #[serde(default)]
    pub paired_cases: usize,
}

impl ProofRow {
    /// The case count of each cell (`no skill 30, human 30, distilled 100`) when they differ:
    /// after the test split grew, until `skd bbh measure` runs, the cells come from
    /// measurements on different cases (the pairing uses the cases both have).
    pub fn mixed_case_counts(&self) -> Option<String> {
        let cells = [("no skill", &self.no_skill), ("human", &self.human), ("distilled", &self.distilled)];
        let totals: Vec<(&str, usize)> =
            cells.iter().filter_map(|(label, rate)| rate.as_ref().map(|r| (*label, r.total))).collect();
        let differ = totals.windows(2).any(|pair| pair[0].1 != pair[1].1);
        differ.then(|| totals.iter().map(|(label, total)| format!("{label} {total}")).collect::<Vec<_>>().join(", "))
    }
}

/// The paired lift of distilled over human across every row that has one, and the number of
/// paired cases: each task's sealed test cases together, so small per-task differences can
/// add up (or cancel). `None` when no row has a pairing.
pub fn pooled_distilled_vs_human(rows: &[ProofRow]) -> Option<(evals::Lift, usize)> {
    let paired: Vec<(&evals::Lift, usize)> =
        rows.iter().filter_map(|r| r.distilled_vs_human.as_ref().map(|l| (l, r.paired_cases))).collect();
    if paired.is_empty() {
        return None;
    }
    let counts = paired.iter().fold(evals::PairedCounts::default(), |sum, (lift, _)| sum + lift.counts());
    Some((evals::Lift::from_counts(counts), paired.iter().map(|(_, cases)| cases).sum()))
}

/// Which text a measurement's distilled configuration was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistilledFrom {
    /// The version the newest finished distillation saved.
    Version(u32),
    /// The best candidate of a distillation whose selection is over but which has not yet
    /// run its own sealed test (and so saved no version): the text it will save.
    UnsavedCandidate(usize),
}

impl DistilledFrom {
    /// The configuration's label in results and progress lines (`v3`, `candidate 2`).
    pub fn label(&self) -> String {
        match self {
            DistilledFrom::Version(v) => format!("v{v}"),
            DistilledFrom::UnsavedCandidate(id) => format!("candidate {id}"),
        }
    }
}

impl std::fmt::Display for DistilledFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())?;
        if let DistilledFrom::UnsavedCandidate(_) = self {
            f.write_str(", not saved yet")?;
        }
        Ok(())
    }
}

/// What [`measure_test_split`] ran on one skill's sealed test split.
#[derive(Debug, Clone)]
pub struct TestMeasurement {
    /// Without a skill.
    pub no_skill: evals::SuiteRun,
    /// With the human-written procedure (version 1).
    pub human: evals::SuiteRun,
    /// With the distilled skill, when a distillation has selected one.
    pub distilled: Option<(DistilledFrom, evals::SuiteRun)>,
    /// Whether the runs were recorded in `benchmark.json`. Not when a case failed to run (a
    /// timeout), which would count as a failure; such cases are not cached, so measuring
    /// again runs only them. Nor when only part of the split ran, or the distilled text is
    /// not a saved version: the table holds whole splits of versions, and once the rest has
    /// run, measuring the whole split records them from the cache.
    pub recorded: bool,
}

impl TestMeasurement {
    /// Cases that failed to run, over all configurations.
    pub fn errors(&self) -> usize {
        self.no_skill.errors() + self.human.errors() + self.distilled.as_ref().map_or(0, |(_, run)| run.errors())
    }
}

/// Runs a BBH skill's sealed test split (or, with `only_cases`, those of its cases) with no
/// skill, with the human-written procedure (version 1) and with the distilled skill, and
/// records each skill against no skill in `benchmark.json`, which [`proof_row`] reads (see
/// [`TestMeasurement::recorded`] for when it does not). The distilled skill is the version
/// the newest finished distillation saved; without one, the best candidate of a
/// distillation whose selection is over ([`DistilledFrom::UnsavedCandidate`]). Cases the
/// evaluator's cache already holds are not run again, so after a test split grew (`skd bbh
/// import --test 100`) only the new cases run. The skill is named by its folder, as the
/// distillation names it, so their results share cache entries. `evaluator` must hold this
/// skill's suite; `on_case` sees each result with its configuration's label (`no skill`,
/// `v1`, ...).
pub async fn measure_test_split(
    evaluator: &evals::Evaluator<'_>,
    skill_dir: &Path,
    only_cases: Option<&[CaseId]>,
    on_case: &mut (dyn FnMut(&str, &evals::CaseResult) + Send),
) -> Result<TestMeasurement> {
    use evals::report::{Benchmark, BenchmarkEntry};
    use skill_core::versions::Revision;
    let skill = skill_dir.file_name().and_then(|n| n.to_str()).unwrap_or(&evaluator.suite.skill_name);
    let mut test = evaluator.suite.split(Split::Test);
    if let Some(ids) = only_cases {
        test.retain(|c| ids.contains(&c.id));
    }
    if test.is_empty() {
        return Err(Error::other(format!("{skill} has no test cases in its suite to measure")));
    }
    let store = skill_core::VersionStore::new(skill_dir);
    let text = |markdown: String| evals::SkillText { name: skill.to_string(), markdown };
    let human_skill = text(store.content(Revision::Version(1))?);
    let distilled_text = match crate::distill::latest_finished_state(skill_dir).and_then(|s| s.report) {
        Some(report) => {
            Some((DistilledFrom::Version(report.version), store.content(Revision::Version(report.version))?))
        }
        None => crate::distill::load_state(skill_dir)
            .ok()
            .filter(|state| state.rounds_over())
            .and_then(|state| state.candidates.get(state.best).cloned())
            .map(|best| (DistilledFrom::UnsavedCandidate(best.id), best.markdown)),
    };
    // The two configurations the table compares first, so that a long run stopped early has
    // them both.
    let human = evaluator.run(&test, Some(&human_skill), "v1", &mut |r| on_case("v1", r)).await?;
    let distilled = match distilled_text {
        Some((from, markdown)) => {
            let label = from.label();
            let run = evaluator.run(&test, Some(&text(markdown)), &label, &mut |r| on_case(&label, r)).await?;
            Some((from, run))
        }
        None => None,
    };
    let no_skill = evaluator.run(&test, None, "no skill", &mut |r| on_case("no skill", r)).await?;
    let mut measured = TestMeasurement { no_skill, human, distilled, recorded: false };
    let unsaved = matches!(measured.distilled, Some((DistilledFrom::UnsavedCandidate(_), _)));
    measured.recorded = measured.errors() == 0 && only_cases.is_none() && !unsaved;
    if measured.recorded {
        let results = skill_dir.join("evals/results");
        let mut benchmark = Benchmark::load(&results, skill)?;
        benchmark.push(BenchmarkEntry::new(&measured.human, Some(&measured.no_skill), Some(1)));
        if let Some((DistilledFrom::Version(version), run)) = &measured.distilled {
            benchmark.push(BenchmarkEntry::new(run, Some(&measured.no_skill), Some(*version)));
        }
        benchmark.write(&results)?;
    }
    Ok(measured)
}

/// The ids of a suite's sealed test cases at 1-based positions `first..=last` of its test
/// split (`last` `None`: to the end), in the seeded order the split was dealt in. After
/// `skd bbh import --test 100` grew a 30-case split, positions 31-100 are the cases added.
pub fn test_cases_at(suite: &EvalSuite, first: usize, last: Option<usize>) -> Result<Vec<CaseId>> {
    let test = suite.split(Split::Test);
    let asked = || format!("{first}-{}", last.map(|l| l.to_string()).unwrap_or_default());
    if first == 0 || last.is_some_and(|last| last < first) {
        return Err(Error::other(format!("test cases {}: positions start at 1 and run upwards", asked())));
    }
    let last = last.unwrap_or(test.len());
    if first > test.len() || last > test.len() {
        return Err(Error::other(format!(
            "{} has {} test cases; test cases {} go past them",
            suite.skill_name,
            test.len(),
            asked()
        )));
    }
    Ok(test[first - 1..last].iter().map(|c| c.id.clone()).collect())
}

/// Reads a BBH skill's stored results (`benchmark.json` and the distillation state) into its
/// proof row. Only test-split measurements of a version against no skill count; the latest
/// of each wins, and the distillation's own report fills what `benchmark.json` lacks.
///
/// With `only_cases`, every measurement is restricted to those cases (see
/// [`test_cases_at`]), for example the cases a test split gained after a decision was
/// made; measurements that do not hold all of them do not count, and the distillation's
/// report (whose figures cover its whole test split) fills nothing.
pub fn proof_row(skill_dir: &Path, skill: &str, only_cases: Option<&[CaseId]>) -> Result<ProofRow> {
    use evals::report::{Benchmark, BenchmarkEntry};
    let store = skill_core::VersionStore::new(skill_dir);
    let human_hash =
        store.content(skill_core::versions::Revision::Version(1)).ok().map(|t| skill_core::skill::content_hash(&t));
    let mut bench = Benchmark::load(&skill_dir.join("evals/results"), skill)?;
    let on_test = |e: &&BenchmarkEntry| {
        !e.cases.is_empty()
            && e.cases.iter().all(|c| c.split == Split::Test)
            && e.baseline.as_ref().is_some_and(|b| b.label == "no skill")
    };
    if let Some(ids) = only_cases {
        // Judged on the whole measurement (a run over every split stays out), and a part
        // counts only when the measurement holds every case asked for.
        bench.entries = bench
            .entries
            .iter()
            .filter(on_test)
            .map(|e| e.restricted_to(ids))
            .filter(|e| e.cases.len() == ids.len())
            .collect();
    }
    let state = crate::distill::latest_finished_state(skill_dir);
    let report = state.as_ref().and_then(|s| s.report.clone());
    let distilled_entry =
        report.as_ref().and_then(|r| bench.entries.iter().filter(on_test).rfind(|e| e.version == Some(r.version)));
    // The report's figures cover the distillation's whole test split: no stand-in for a part.
    let fallback = report.as_ref().filter(|_| only_cases.is_none());
    // The human-procedure measurement of the same student as the distillation, when there is one.
    let human =
        bench.entries.iter().filter(on_test).rfind(|e| {
            Some(&e.skill_hash) == human_hash.as_ref() && distilled_entry.is_none_or(|d| d.model == e.model)
        });
    let flags =
        |e: &BenchmarkEntry| -> Vec<(CaseId, bool)> { e.cases.iter().map(|c| (c.id.clone(), c.with_skill)).collect() };
    let (distilled_vs_human, paired_cases) = match (distilled_entry, human) {
        (Some(d), Some(h)) => {
            let hv = flags(h);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for (id, passed) in flags(d) {
                if let Some((_, hp)) = hv.iter().find(|(i, _)| *i == id) {
                    a.push(passed);
                    b.push(*hp);
                }
            }
            (Some(evals::Lift::paired(&a, &b)), a.len())
        }
        _ => (None, 0),
    };
    // The newest measurements win: after `skd bbh measure` on a grown test split, the entries
    // hold more cases than the distillation's own report.
    let baseline_rate = |e: &BenchmarkEntry| e.baseline.as_ref().map(|b| b.rate);
    let no_skill = distilled_entry
        .and_then(baseline_rate)
        .or_else(|| human.and_then(baseline_rate))
        .or_else(|| fallback.map(|r| r.no_skill));
    Ok(ProofRow {
        skill: skill.to_string(),
        model: human.map(|h| h.model.clone()).or_else(|| distilled_entry.map(|d| d.model.clone())),
        no_skill,
        human: human.map(|h| h.with_skill.rate).or_else(|| fallback.and_then(|r| r.starting_skill)),
        distilled: distilled_entry.map(|d| d.with_skill.rate).or_else(|| fallback.map(|r| r.with_skill)),
        distilled_version: report.as_ref().map(|r| r.version),
        kept_human: state.as_ref().is_some_and(|s| s.best == 0),
        distilled_vs_human,
        paired_cases,
    })
}
