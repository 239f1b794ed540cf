//! `<skill>/evals/evals.json`: the cases that measure a skill, and how each is graded.
//!
//! The shape follows the Agent Skills tooling's `evals.json` (`skill_name`, `evals` with `id`,
//! `prompt`, `expected_output`, `files`, `expectations`) and adds explicit graders and a
//! split per case:
//!
//! ```json
//! {
//!   "skill_name": "boolean-expressions",
//!   "answer_pattern": "(?i)the answer is\\s*(.+?)\\.?\\s*$",
//!   "evals": [
//!     { "id": "t1", "prompt": "not ( True ) and ( True ) is", "expected_output": "False",
//!       "split": "test", "graders": [{ "type": "normalized" }] }
//!   ]
//! }
//! ```
//!
//! A case without graders is graded `normalized` against `expected_output`; `expectations`
//! (free-text statements about a good answer) become a teacher-judged rubric. Everything is
//! checked on load, all problems at once, each naming the file, line and case.

use crate::grade::Grader;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use skill_core::fsutil::{atomic_write, read_utf8};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Where a suite lives, relative to the skill folder.
pub const SUITE_PATH: &str = "evals/evals.json";

/// Which part of the data a case belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Seen by the teacher while it rewrites the skill.
    #[default]
    Train,
    /// Decides which candidate is kept; the teacher sees scores, not cases.
    Validation,
    /// Sealed: measured once at the end; the teacher never sees it or its scores.
    Test,
}

impl Split {
    /// All splits, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// A case id: the Agent Skills tooling uses numbers, people use names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CaseId {
    /// `"id": 3`
    Number(u64),
    /// `"id": "t3"`
    Text(String),
}

impl std::fmt::Display for CaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaseId::Number(n) => write!(f, "{n}"),
            CaseId::Text(s) => f.write_str(s),
        }
    }
}

/// How a case is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CaseMode {
    /// One completion: the skill as system prompt, the case's prompt as the user turn.
    #[default]
    Answer,
    /// The agent loop with tools in a scratch workspace (for tool-call and file graders).
    Agent,
}

/// One eval case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalCase {
    /// Unique within the suite.
    pub id: CaseId,
    /// What the student is asked.
    pub prompt: String,
    /// The reference answer, used by graders that do not name their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output: Option<String>,
    /// Files the case needs, relative to the skill folder; copied into the agent workspace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// A folder, relative to the skill folder, whose contents become the agent workspace
    /// (`evals/workspaces/october` holding `expenses.csv` gives a workspace with
    /// `expenses.csv` at its root). Agent cases only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Text files written into the agent workspace before the run, by path relative to it
    /// (written last: they replace a file of the same path from `workspace` or `files`). The
    /// suite carries them itself: cases mined from agents' logs hold the files the user's
    /// agent read there. Agent cases only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workspace_files: BTreeMap<String, String>,
    /// Statements a good answer satisfies, judged by the teacher.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expectations: Vec<String>,
    /// How the answer is checked; empty means `normalized` against `expected_output`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub graders: Vec<Grader>,
    /// Train, validation or test (default train).
    #[serde(default)]
    pub split: Split,
    /// Answer (default) or agent.
    #[serde(default)]
    pub mode: CaseMode,
}

impl EvalCase {
    /// A case graded `normalized` against `expected`.
    pub fn new(id: impl Into<String>, prompt: impl Into<String>, expected: impl Into<String>) -> Self {
        EvalCase {
            id: CaseId::Text(id.into()),
            prompt: prompt.into(),
            expected_output: Some(expected.into()),
            files: Vec::new(),
            workspace: None,
            workspace_files: BTreeMap::new(),
            expectations: Vec::new(),
            graders: Vec::new(),
            split: Split::Train,
            mode: CaseMode::Answer,
        }
    }

    /// The graders that apply: the explicit ones, or `normalized`, plus a rubric for
    /// `expectations`.
    pub fn effective_graders(&self) -> Vec<Grader> {
        let mut graders = self.graders.clone();
        if graders.is_empty() && self.expected_output.is_some() {
            graders.push(Grader::Normalized { expected: None });
        }
        if !self.expectations.is_empty() {
            graders.push(Grader::Rubric { criteria: self.expectations.clone() });
        }
        graders
    }
}

/// A skill's eval suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSuite {
    /// The skill the suite measures.
    pub skill_name: String,
    /// A regex whose first capture group (or whole match) is the answer to grade; the last
    /// match in the output wins. Without it, the whole output is graded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_pattern: Option<String>,
    /// Extra instructions given to the student with every case, with or without the skill
    /// (for example the answer format), so both are asked the same question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The cases.
    pub evals: Vec<EvalCase>,
}

impl EvalSuite {
    /// An empty suite for a skill.
    pub fn new(skill_name: impl Into<String>) -> Self {
        EvalSuite { skill_name: skill_name.into(), answer_pattern: None, instructions: None, evals: Vec::new() }
    }

    /// The suite file of a skill folder.
    pub fn path_in(skill_dir: &Path) -> PathBuf {
        skill_dir.join(SUITE_PATH)
    }

    /// Reads and checks a suite file.
    pub fn load(path: &Path) -> Result<EvalSuite> {
        let text = read_utf8(path)?;
        Self::parse(&text, path)
    }

    /// Parses and checks suite text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<EvalSuite> {
        let suite: EvalSuite = serde_json::from_str(text).map_err(|e| Error::Suite {
            path: path.to_path_buf(),
            line: e.line(),
            message: e.to_string(),
        })?;
        let problems = suite.problems(text);
        if !problems.is_empty() {
            return Err(Error::InvalidSuite { path: path.to_path_buf(), problems });
        }
        Ok(suite)
    }

    /// Writes the suite atomically (pretty JSON).
    pub fn save(&self, path: &Path) -> Result<()> {
        let problems = self.problems("");
        if !problems.is_empty() {
            return Err(Error::InvalidSuite { path: path.to_path_buf(), problems });
        }
        let mut json = serde_json::to_string_pretty(self).map_err(|e| Error::other(e.to_string()))?;
        json.push('\n');
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| skill_core::Error::io(dir, e))?;
        }
        atomic_write(path, json.as_bytes())?;
        Ok(())
    }

    /// Every problem with the suite, each as `line N: case ID: what` (line when `text` is
    /// the file the suite came from).
    pub fn problems(&self, text: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.skill_name.trim().is_empty() {
            problems.push("skill_name is empty".to_string());
        }
        if let Some(pattern) = &self.answer_pattern
            && let Err(e) = regex::Regex::new(pattern)
        {
            problems.push(format!("answer_pattern is not a valid regex: {e}"));
        }
        let mut seen = HashSet::new();
        for case in &self.evals {
            let at = match line_of_id(text, &case.id) {
                Some(line) => format!("line {line}: case {}", case.id),
                None => format!("case {}", case.id),
            };
            if !seen.insert(case.id.clone()) {
                problems.push(format!("{at}: duplicate id"));
            }
            if case.prompt.trim().is_empty() {
                problems.push(format!("{at}: prompt is empty"));
            }
            let graders = case.effective_graders();
            if graders.is_empty() {
                problems.push(format!("{at}: nothing to grade: give expected_output, graders or expectations"));
            }
            for grader in &graders {
                if let Err(problem) = grader.check(case) {
                    problems.push(format!("{at}: grader `{}`: {problem}", grader.kind()));
                }
            }
            if case.mode == CaseMode::Answer
                && let Some(g) = graders.iter().find(|g| g.needs_agent())
            {
                problems.push(format!("{at}: grader `{}` needs \"mode\": \"agent\"", g.kind()));
            }
            if let Some(folder) = &case.workspace {
                if case.mode == CaseMode::Answer {
                    problems.push(format!("{at}: `workspace` needs \"mode\": \"agent\""));
                }
                if !is_relative_inside(folder) {
                    problems.push(format!(
                        "{at}: `workspace` must be a folder relative to the skill folder, got `{folder}`"
                    ));
                }
            }
            if !case.workspace_files.is_empty() && case.mode == CaseMode::Answer {
                problems.push(format!("{at}: `workspace_files` needs \"mode\": \"agent\""));
            }
            for path in case.workspace_files.keys() {
                let names_a_file =
                    std::path::Path::new(path).components().any(|c| matches!(c, std::path::Component::Normal(_)));
                if !is_relative_inside(path) || !names_a_file {
                    problems.push(format!(
                        "{at}: `workspace_files` names `{path}`: a file path relative to the workspace, inside it"
                    ));
                }
                // `a` and `a/b` cannot both be files.
                let folder = format!("{}/", path.trim_end_matches('/'));
                if let Some(inside) = case.workspace_files.keys().find(|other| other.starts_with(&folder)) {
                    problems.push(format!("{at}: `workspace_files` has `{path}` as a file and `{inside}` inside it"));
                }
            }
        }
        problems
    }

    /// The cases of one split.
    pub fn split(&self, split: Split) -> Vec<&EvalCase> {
        self.evals.iter().filter(|c| c.split == split).collect()
    }
}

/// A non-empty relative path with no `..` part: it stays inside the folder it is joined to.
fn is_relative_inside(path: &str) -> bool {
    let p = std::path::Path::new(path);
    !path.trim().is_empty()
        && p.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
}

/// The 1-based line where a case's `"id"` is written, found by text search (serde_json does
/// not keep positions); good enough to point a user at the case.
fn line_of_id(text: &str, id: &CaseId) -> Option<usize> {
    let needle = match id {
        CaseId::Number(n) => format!("{n}"),
        CaseId::Text(s) => serde_json::to_string(s).ok()?,
    };
    text.lines()
        .position(|line| {
            let Some(at) = line.find("\"id\"") else { return false };
            let rest = line[at + 4..].trim_start().trim_start_matches(':').trim_start();
            rest.starts_with(&needle)
                && !rest[needle.len()..].starts_with(|c: char| c.is_ascii_digit() || c.is_alphanumeric())
        })
        .map(|i| i + 1)
}
