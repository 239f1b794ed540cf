//! BIG-Bench Hard as skills: a task's human-written chain-of-thought procedure becomes a
//! `SKILL.md`, and its examples become an eval suite with a seeded train / validation /
//! test split. The data stays where it is (`../shared/data/bbh` by default); nothing from
//! it is copied into this repository.

use crate::grade::Grader;
use crate::suite::{CaseId, CaseMode, EvalCase, EvalSuite, Split};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Tasks whose answers are numbers (graded numerically).
const NUMERIC_TASKS: &[&str] = &["multistep_arithmetic_two", "object_counting"];

/// The answer format every configuration is asked for, so that with or without a skill the
/// student is graded on the same question.
pub const ANSWER_INSTRUCTIONS: &str = "Think step by step and write out each step of your work. Then finish with one \
line: \"So the answer is X.\" where X is the answer alone.";

/// Picks the text after the last "the answer is".
pub const ANSWER_PATTERN: &str = r"(?im)answer is[:\s]*\**\s*(.+?)\**\s*\.?\s*$";

/// How many cases go to each split.
///
/// The seeded order is dealt as: train, the first [`VALIDATION_BEFORE_TEST`] validation
/// cases, test, then any further validation cases. Dealt this way a larger validation split
/// never moves a test case, so a suite can grow its validation (`skd bbh import
/// --validation 24`) and keep its sealed test split and the results measured on it.
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

impl SplitSizes {
    /// The split of the `n`-th case in the seeded order (`None`: not used).
    pub fn split_of(&self, n: usize) -> Option<Split> {
        let early_validation = self.validation.min(VALIDATION_BEFORE_TEST);
        let test_start = self.train + early_validation;
        if n < self.train {
            Some(Split::Train)
        } else if n < test_start {
            Some(Split::Validation)
        } else if n < test_start + self.test {
            Some(Split::Test)
        } else if n < self.train + self.validation + self.test {
            Some(Split::Validation)
        } else {
            None
        }
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
        "---\nname: {skill_name}\ndescription: {} Human-written step-by-step procedure from BIG-Bench Hard ({task}).\nlicense: MIT\nmetadata:\n  source: BIG-Bench Hard cot-prompts/{task}.txt\n---\n{procedure}\n",
        yaml_safe(description_line)
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
            vec![Grader::Numeric { expected: None, tolerance: 1e-6 }]
        } else {
            vec![Grader::Normalized { expected: None }]
        };
        suite.evals.push(EvalCase {
            id: CaseId::Text(format!("{task}-{index}")),
            prompt: example.input.clone(),
            expected_output: Some(example.target.clone()),
            files: Vec::new(),
            expectations: Vec::new(),
            graders,
            split,
            mode: CaseMode::Answer,
        });
    }
    Ok(BbhTask { task: task.to_string(), skill_name, skill_markdown, suite })
}

fn yaml_safe(text: &str) -> String {
    // Quote when YAML would read the line as something other than a plain string.
    if text.contains(": ") || text.starts_with(['"', '\'', '[', '{', '-', '#', '&', '*', '!', '|', '>', '%', '@']) {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text.to_string()
    }
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
        let row = |lift: Option<crate::Lift>, paired_cases| ProofRow {
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
        let a = crate::Lift::from_counts(6, 2, 30);
        let b = crate::Lift::from_counts(1, 3, 30);
        let (pooled, cases) =
            pooled_distilled_vs_human(&[row(Some(a), 30), row(None, 0), row(Some(b), 30)]).expect("pooled");
        assert_eq!(cases, 60);
        assert_eq!((pooled.gained, pooled.lost), (7, 5));
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
    fn answer_pattern_takes_the_last_answer_line() {
        let re = regex::Regex::new(ANSWER_PATTERN).expect("pattern");
        let out = "A = True. So the answer is False.\nWait, recheck.\nSo the answer is **True**.";
        assert_eq!(crate::run::extract_answer(out, Some(&re)), "True");
        assert_eq!(crate::run::extract_answer("So the answer is (B).", Some(&re)), "(B)");
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
    pub no_skill: Option<crate::Rate>,
    /// With the human-written procedure.
    pub human: Option<crate::Rate>,
    /// With the distilled skill (a finished `skd distill`).
    pub distilled: Option<crate::Rate>,
    /// The version `skd distill` saved.
    pub distilled_version: Option<u32>,
    /// The distillation kept the human procedure (no rewrite beat it on validation).
    pub kept_human: bool,
    /// Distilled against human, paired by case.
    pub distilled_vs_human: Option<crate::Lift>,
    /// Test cases in that pairing.
    #[serde(default)]
    pub paired_cases: usize,
}

/// The paired lift of distilled over human across every row that has one, and the number of
/// paired cases: each task's sealed test cases together, so small per-task differences can
/// add up (or cancel). `None` when no row has a pairing.
pub fn pooled_distilled_vs_human(rows: &[ProofRow]) -> Option<(crate::Lift, usize)> {
    let paired: Vec<(&crate::Lift, usize)> =
        rows.iter().filter_map(|r| r.distilled_vs_human.as_ref().map(|l| (l, r.paired_cases))).collect();
    if paired.is_empty() {
        return None;
    }
    let (gained, lost, n) =
        paired.iter().fold((0, 0, 0), |(g, l, n), (lift, cases)| (g + lift.gained, l + lift.lost, n + cases));
    Some((crate::Lift::from_counts(gained, lost, n), n))
}

/// Reads a BBH skill's stored results (`benchmark.json` and the distillation state) into its
/// proof row. Only test-split measurements of no skill against a version count; the latest
/// of each wins.
pub fn proof_row(skill_dir: &Path, skill: &str) -> Result<ProofRow> {
    use crate::report::{Benchmark, BenchmarkEntry};
    let store = skill_core::VersionStore::new(skill_dir);
    let human_hash =
        store.content(skill_core::versions::Revision::Version(1)).ok().map(|t| skill_core::skill::content_hash(&t));
    let bench = Benchmark::load(&skill_dir.join("evals/results"), skill)?;
    let on_test = |e: &&BenchmarkEntry| {
        !e.cases.is_empty()
            && e.cases.iter().all(|c| c.split == Split::Test)
            && e.baseline.as_ref().is_some_and(|b| b.label == "no skill")
    };
    let state = crate::distill::latest_finished_state(skill_dir);
    let report = state.as_ref().and_then(|s| s.report.clone());
    let distilled_entry =
        report.as_ref().and_then(|r| bench.entries.iter().filter(on_test).rfind(|e| e.version == Some(r.version)));
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
            (Some(crate::Lift::paired(&a, &b)), a.len())
        }
        _ => (None, 0),
    };
    let no_skill =
        report.as_ref().map(|r| r.no_skill).or_else(|| human.and_then(|h| h.baseline.as_ref().map(|b| b.rate)));
    Ok(ProofRow {
        skill: skill.to_string(),
        model: human.map(|h| h.model.clone()).or_else(|| distilled_entry.map(|d| d.model.clone())),
        no_skill,
        human: human.map(|h| h.with_skill.rate).or_else(|| report.as_ref().and_then(|r| r.starting_skill)),
        distilled: report.as_ref().map(|r| r.with_skill),
        distilled_version: report.as_ref().map(|r| r.version),
        kept_human: state.as_ref().is_some_and(|s| s.best == 0),
        distilled_vs_human,
        paired_cases,
    })
}
