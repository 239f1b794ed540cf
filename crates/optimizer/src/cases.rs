//! Eval cases from episodes: the user's own tasks, graded against what the user settled.
//!
//! A task the user accepted becomes a case whose reference is the accepted answer: checked
//! field by field when it is JSON (structured output), compared after normalizing when it is
//! one short line, else judged against it by the teacher's rubric. A task the user corrected
//! becomes a case judged by the rubric against the correction, word for word: the best
//! reference a failed case has. A task with no verdict
//! has nothing to grade against and is left out. Each case's split comes from a hash of its
//! episode, so a case keeps its split from one night to the next, and the sealed test split
//! holds real tasks only.
//!
//! A task the user's agent worked on files for is an agent case: the text files the agent
//! read whole, as it found them, go into the case (`workspace_files`), and the student runs it
//! through the agent loop with file tools in a workspace holding them. Where the accepted
//! work was a change to files, and the log shows every change whole, the case is graded on
//! the files the student leaves (see [`file_checks`]), not on its reply. Other agents' tool
//! names are not the student's (`Write`, `write`, `apply_patch` against skd's `write_file`),
//! so a case checks what was done to the files, not which tool did it.

use agent_logs::{Episode, OutcomeKind};
use evals::{CaseMode, EvalCase, EvalSuite, Grader, Split};
use std::collections::BTreeMap;

/// Longest accepted answer graded by comparison rather than by the rubric (characters).
const SHORT_ANSWER_CHARS: usize = 60;

/// The answer format of a mined suite with short answers: the job's answer on a line of its
/// own, so it can be compared (the reasoning before it is free). Not BIG-Bench Hard's "So the
/// answer is X.": the format belongs to the suite, with or without a skill.
pub const MINED_ANSWER_INSTRUCTIONS: &str =
    "Work it out step by step, then end with a line `Answer: ` followed by the answer alone.";

/// The answer format of a mined suite with structured (JSON) answers among its cases: the
/// same line, with the JSON on it, so the fields can be read back.
pub const MINED_JSON_ANSWER_INSTRUCTIONS: &str = "Work it out step by step, then end with a line `Answer: ` followed by \
     the answer alone (a JSON answer written on that one line).";

/// Most fields of a structured answer checked one by one: a bigger document is judged by the
/// rubric against the accepted answer instead.
const MAX_JSON_FIELDS: usize = 16;

/// Most added lines a file check asks for one by one: a file that gained more is a document
/// whose wording is the student's own (its kept lines are still asked for).
const MAX_FILE_CHECK_LINES: usize = 12;

/// Tools that change a file (skd's, Pi's, Claude Code's), for episodes stored before
/// `ToolUse::writes` was recorded: they say only the tool's name. A read after a write may
/// show the agent's own work rather than what the user had, so reads stop counting there.
const FILE_WRITING_TOOLS: &[&str] = &["write_file", "write", "edit", "Write", "Edit", "MultiEdit", "NotebookEdit"];

/// Reads the answer back from the last `Answer:` line.
pub const MINED_ANSWER_PATTERN: &str = r"(?im)^\s*\**answer\**:\**\s*(.+?)\s*$";

/// A mined case's id (`<source>-<10 hex>`) and the hash it comes from: fixed by the episode, so
/// a case keeps its id and split from one night to the next.
fn case_id(e: &Episode) -> (String, blake3::Hash) {
    let key = format!("{}\n{}\n{}\n{}", e.source, e.file.display(), e.session, e.task);
    let hash = blake3::hash(key.as_bytes());
    (format!("{}-{}", e.source, &hash.to_hex()[..10]), hash)
}

/// An answer the user judged: the agent's answer to a mined case's task, and whether the
/// user accepted it (`false`: they corrected it). The rubric judge is calibrated on these.
#[derive(Debug, Clone, PartialEq)]
pub struct UserVerdict {
    /// The case's id in the suite.
    pub case: String,
    /// The agent's answer the user saw.
    pub answer: String,
    /// Accepted (`true`) or corrected (`false`).
    pub accepted: bool,
}

/// The user's verdicts on the answers of the episodes whose cases the rubric judges: each
/// corrected answer (which the judge should fail against the correction) and each accepted
/// answer too long to compare (which it should pass).
pub fn user_verdicts(episodes: &[&Episode]) -> Vec<UserVerdict> {
    let mut out = Vec::new();
    for e in episodes {
        let Some(answer) = e.answer.as_deref().map(str::trim).filter(|a| !a.is_empty()) else { continue };
        let accepted = match (e.outcome.kind, &e.outcome.correction) {
            (OutcomeKind::Failure, Some(_)) => false,
            (OutcomeKind::Success, _) if answer.chars().count() > SHORT_ANSWER_CHARS || answer.contains('\n') => true,
            _ => continue,
        };
        out.push(UserVerdict { case: case_id(e).0, answer: answer.to_string(), accepted });
    }
    out
}

/// The suite of a mined job: one case per episode with a settled outcome.
pub fn suite_from_episodes(skill_name: &str, episodes: &[&Episode]) -> EvalSuite {
    let mut suite = EvalSuite::new(skill_name);
    let (mut short_answers, mut structured) = (false, false);
    for e in episodes {
        let (id, hash) = case_id(e);
        let mut case = EvalCase::new(id, e.task.clone(), String::new());
        case.expected_output = None;
        let files = files_read(e);
        let checks = (e.outcome.kind == OutcomeKind::Success).then(|| file_checks(e, &files)).flatten();
        match (e.outcome.kind, &e.outcome.correction, &e.answer, checks) {
            // The work is in the files: the reply is a message about it, not what is graded.
            (OutcomeKind::Success, _, _, Some(checks)) => case.graders = checks,
            (OutcomeKind::Failure, Some(correction), _, _) => {
                case.expectations = vec![format!(
                    "The answer does what the user asked for when they corrected an earlier answer: \"{}\"",
                    correction.trim()
                )];
            }
            (OutcomeKind::Success, _, Some(answer), None) => {
                let answer = answer.trim();
                let short = answer.chars().count() <= SHORT_ANSWER_CHARS && !answer.contains('\n');
                match json_fields(answer) {
                    Some((value, fields)) if fields.len() <= MAX_JSON_FIELDS => {
                        // Each field the user accepted must come back with its value: a
                        // reordered or reformatted object passes, a wrong amount or a missing
                        // field fails.
                        case.expected_output = Some(value.to_string());
                        case.graders =
                            fields.into_iter().map(|(pointer, equals)| Grader::JsonField { pointer, equals }).collect();
                        structured = true;
                    }
                    None if short => {
                        case.expected_output = Some(answer.to_string());
                        case.graders = vec![short_answer_grader(answer)];
                        short_answers = true;
                    }
                    // A long answer, or a JSON document of more fields than are checked one by one.
                    _ => {
                        case.expectations = vec![format!(
                            "The answer covers what this answer, which the user accepted, covers: \"{answer}\""
                        )];
                    }
                }
            }
            _ => continue,
        }
        if !files.is_empty() || case.graders.iter().any(Grader::needs_agent) {
            case.mode = CaseMode::Agent;
            case.workspace_files = files;
        }
        // 6 in 10 train, 2 validation, 2 test, fixed by the episode.
        case.split = match hash.as_bytes()[0] % 10 {
            0..=5 => Split::Train,
            6 | 7 => Split::Validation,
            _ => Split::Test,
        };
        suite.evals.push(case);
    }
    if short_answers || structured {
        let instructions = if structured { MINED_JSON_ANSWER_INSTRUCTIONS } else { MINED_ANSWER_INSTRUCTIONS };
        suite.instructions = Some(instructions.to_string());
        suite.answer_pattern = Some(MINED_ANSWER_PATTERN.to_string());
    }
    suite
}

/// The files an episode's agent read whole before it changed any file, by path: the
/// workspace its task was done in, as far as the log shows it (the episode keeps a few
/// small files only: `agent_logs::MAX_EPISODE_READS`). The first read of a path wins. None
/// when a file it read before then is not kept whole.
fn files_read(e: &Episode) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for tool in e.tools.iter().take_while(|t| !t.writes && !FILE_WRITING_TOOLS.contains(&t.name.as_str())) {
        if tool.partial_read {
            // A file the agent needed is not all there: a workspace without it would grade
            // the student on a task it cannot do.
            return BTreeMap::new();
        }
        if let Some(read) = &tool.read {
            files.entry(read.path.clone()).or_insert_with(|| read.content.clone());
        }
    }
    files
}

/// The file checks of an accepted task whose agent changed files, when the log shows every
/// change whole: each file it left must be there with every line it had after the accepted
/// change, the lines it kept and the lines it gained (for a file not in the workspace, all of
/// its lines), without the lines the change removed, its kept lines in their order; or, where
/// the change only removed lines, with its text exactly. Kept lines count: a student that
/// writes the new row alone over the sheet has lost the user's rows. A file that gained more
/// than [`MAX_FILE_CHECK_LINES`] lines is a document written rather than a record filled in:
/// its new lines are not asked for one by one (its wording is the student's own), its kept
/// ones still are, in any order and whatever it removed (a rewrite may move or reword them).
/// None when the episode changed no file, changed one in a way the log does not show, changed
/// a file the case's workspace does not hold, or deleted one (the student cannot delete).
fn file_checks(e: &Episode, workspace: &BTreeMap<String, String>) -> Option<Vec<Grader>> {
    if e.written.is_empty() || e.unknown_writes {
        return None;
    }
    // Every file the agent looked at must be in the workspace (or be one it wrote): a file
    // written from one the student cannot see is a case it cannot do.
    let seen_elsewhere = e.tools.iter().any(|t| {
        t.partial_read
            || t.read
                .as_ref()
                .is_some_and(|r| !workspace.contains_key(&r.path) && !e.written.iter().any(|w| w.path == r.path))
    });
    if seen_elsewhere {
        return None;
    }
    // The student's file tools write and edit; none deletes, so a task that deleted a file is
    // one it cannot do over files.
    if e.written.iter().any(|w| w.deleted) {
        return None;
    }
    let checks = e.written.iter().map(|file| {
        let before = match workspace.get(&file.path) {
            Some(before) => before.as_str(),
            None if file.created => "",
            None => return None,
        };
        let had: std::collections::HashSet<&str> = before.lines().map(str::trim).collect();
        let mut seen = std::collections::HashSet::new();
        let lines: Vec<&str> =
            file.content.lines().map(str::trim).filter(|l| !l.is_empty() && seen.insert(*l)).collect();
        let added = lines.iter().filter(|l| !had.contains(*l)).count();
        let kept: Vec<String> = lines.iter().filter(|l| had.contains(*l)).map(|l| l.to_string()).collect();
        let check = |equals, lines, in_order, absent| Grader::File {
            path: file.path.clone(),
            equals,
            contains: Vec::new(),
            lines,
            in_order,
            absent,
            missing: false,
        };
        Some(match added {
            0 => vec![check(Some(file.content.clone()), Vec::new(), false, Vec::new())],
            n if n > MAX_FILE_CHECK_LINES => vec![check(None, kept, false, Vec::new())],
            _ => {
                let now: std::collections::HashSet<&str> = lines.iter().copied().collect();
                let mut once = std::collections::HashSet::new();
                let removed = before
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !now.contains(l) && once.insert(*l))
                    .map(str::to_string)
                    .collect();
                let all = lines.iter().map(|l| l.to_string()).collect();
                // The user's lines keep their order; the added ones may stand anywhere (rows
                // added in another order, or appended where the agent inserted them by date,
                // are the same work).
                let mut checks = vec![check(None, all, false, removed)];
                if kept.len() > 1 {
                    checks.push(check(None, kept, true, Vec::new()));
                }
                checks
            }
        })
    });
    checks.collect::<Option<Vec<Vec<Grader>>>>().map(|checks| checks.concat())
}

/// The grader of a short accepted answer: one with one number in it ("42", "8 euros",
/// "€7.20") is graded as that number, so "42.0" or "42 marbles" pass too, and where it names a
/// unit an answer in another unit fails ("8 USD"); any other is compared after normalizing.
pub(crate) fn short_answer_grader(answer: &str) -> Grader {
    let number = (evals::grade::count_numbers(answer) == 1).then(|| evals::grade::last_number(answer)).flatten();
    match number {
        Some(n) => Grader::Numeric {
            expected: Some(n),
            tolerance: 1e-6,
            unit: evals::grade::unit_of(answer).map(str::to_string),
        },
        None => Grader::Normalized { expected: None },
    }
}

/// An accepted answer that is structured output: the whole answer (or its one fenced code
/// block) is a JSON object or array. Returns the value and its leaves as (RFC 6901 pointer,
/// value).
fn json_fields(answer: &str) -> Option<(serde_json::Value, Vec<(String, serde_json::Value)>)> {
    let text = answer.trim();
    let text = match text.strip_prefix("```") {
        Some(fenced) => {
            let body = fenced.strip_suffix("```")?;
            // The fence's language tag (```json) is the rest of its first line.
            body.split_once('\n').map_or(body, |(_, rest)| rest)
        }
        None => text,
    };
    let value: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    if !(value.is_object() || value.is_array()) {
        return None;
    }
    let mut fields = Vec::new();
    collect_leaves(&value, &mut String::new(), &mut fields);
    Some((value, fields))
}

/// The scalar values (and empty containers) of `value`, each with its pointer.
fn collect_leaves(value: &serde_json::Value, pointer: &mut String, out: &mut Vec<(String, serde_json::Value)>) {
    let children: Vec<(String, &serde_json::Value)> = match value {
        serde_json::Value::Object(map) => {
            map.iter().map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v)).collect()
        }
        serde_json::Value::Array(items) => items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        scalar => {
            out.push((pointer.clone(), scalar.clone()));
            return;
        }
    };
    if children.is_empty() {
        out.push((pointer.clone(), value.clone()));
    }
    for (key, child) in children {
        let len = pointer.len();
        pointer.push('/');
        pointer.push_str(&key);
        collect_leaves(child, pointer, out);
        pointer.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settled_episode as episode;

    #[test]
    fn a_task_done_over_files_becomes_an_agent_case_holding_the_files_as_the_agent_found_them() {
        use agent_logs::{FileRead, ToolUse};
        let read = |path: &str, content: &str| ToolUse {
            name: "Read".into(),
            error: false,
            read: Some(FileRead { path: path.into(), content: content.into() }),
            partial_read: false,
            writes: false,
        };
        let tool =
            |name: &str| ToolUse { name: name.into(), error: false, read: None, partial_read: false, writes: false };
        let mut e = episode("Total my expenses.csv", OutcomeKind::Success, Some("85"), None);
        e.tools = vec![
            tool("Bash"),
            read("expenses.csv", "item,amount\nlunch,12\ntrain,73\n"),
            read("notes/budget.md", "Budget: 100"),
            // A second read of a path is not the file as the agent found it.
            read("expenses.csv", "changed"),
            tool("Edit"),
            // After the agent changed a file, what it reads may be its own work.
            read("summary.md", "written by the agent"),
        ];
        let plain = episode("What is 12 + 73?", OutcomeKind::Success, Some("85"), None);
        let suite = suite_from_episodes("mined-job", &[&e, &plain]);
        let case = &suite.evals[0];
        assert_eq!(case.mode, CaseMode::Agent);
        let files: Vec<(&str, &str)> = case.workspace_files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        assert_eq!(files, [("expenses.csv", "item,amount\nlunch,12\ntrain,73\n"), ("notes/budget.md", "Budget: 100")]);
        assert_eq!(case.graders, [Grader::Numeric { expected: Some(85.0), tolerance: 1e-6, unit: None }]);
        assert_eq!((suite.evals[1].mode, suite.evals[1].workspace_files.len()), (CaseMode::Answer, 0));
        assert!(suite.problems("").is_empty(), "{:?}", suite.problems(""));
        // One file read only in part: the task's files are not all known, so no workspace.
        let mut partly = e.clone();
        partly.tools.insert(1, ToolUse { partial_read: true, ..tool("Read") });
        let suite = suite_from_episodes("mined-job", &[&partly]);
        assert_eq!((suite.evals[0].mode, suite.evals[0].workspace_files.len()), (CaseMode::Answer, 0));
        // A shell command that may have written (the reader says so) ends the reads too.
        let mut shelled = e.clone();
        shelled.tools.insert(2, ToolUse { writes: true, ..tool("shell") });
        let suite = suite_from_episodes("mined-job", &[&shelled]);
        let files: Vec<&str> = suite.evals[0].workspace_files.keys().map(String::as_str).collect();
        assert_eq!(files, ["expenses.csv"], "only the read before the write");
    }

    #[test]
    fn accepted_work_on_files_is_graded_on_the_files_the_student_leaves_not_on_its_reply() {
        use agent_logs::{FileRead, FileWritten, ToolUse};
        let sheet = "date,item,amount\n2026-11-02,lunch,12\n";
        let mut e =
            episode("Add the train ticket, 73 euros, to expenses.csv", OutcomeKind::Success, Some("Added."), None);
        e.tools = vec![ToolUse {
            name: "Read".into(),
            error: false,
            read: Some(FileRead { path: "expenses.csv".into(), content: sheet.into() }),
            partial_read: false,
            writes: false,
        }];
        let file = |path: &str, content: &str, created: bool| FileWritten {
            path: path.into(),
            content: content.into(),
            created,
            deleted: false,
        };
        e.written = vec![
            file("expenses.csv", &format!("{sheet}2026-11-03,train,73\n"), false),
            file("notes/november.md", "# November\n\nTrain: 73\n", true),
        ];
        let suite = suite_from_episodes("mined-job", &[&e]);
        let case = &suite.evals[0];
        let lines = |l: &[&str]| l.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        let check = |path: &str, want: &[&str], in_order: bool, absent: &[&str]| Grader::File {
            path: path.into(),
            equals: None,
            contains: vec![],
            lines: lines(want),
            in_order,
            absent: lines(absent),
            missing: false,
        };
        assert_eq!(
            case.graders,
            [
                check("expenses.csv", &["date,item,amount", "2026-11-02,lunch,12", "2026-11-03,train,73"], false, &[]),
                check("expenses.csv", &["date,item,amount", "2026-11-02,lunch,12"], true, &[]),
                check("notes/november.md", &["# November", "Train: 73"], false, &[]),
            ],
            "the sheet's rows as the accepted change left them, kept and added (a student that writes the new row \
             alone over the sheet has lost the user's rows), the user's rows in their order, and the new file's \
             lines; the reply \"Added.\" is not graded"
        );
        assert_eq!(
            (case.mode, case.workspace_files.get("expenses.csv").map(String::as_str)),
            (CaseMode::Agent, Some(sheet))
        );
        assert!(suite.problems("").is_empty(), "{:?}", suite.problems(""));

        // A change that only removed lines: the file must be left exactly so. Many new lines:
        // a document, whose wording is the student's own: a new one must be there, an edited
        // one must keep its lines.
        let mut trimmed = e.clone();
        let long: String = (1..=20).map(|i| format!("Point {i}\n")).collect();
        trimmed.written = vec![
            file("expenses.csv", "date,item,amount\n", false),
            file("weekly.md", &long, true),
            file("budget.md", &format!("Budget: 100\n{long}"), false),
        ];
        let mut budget = e.tools[0].clone();
        budget.read = Some(FileRead { path: "budget.md".into(), content: "Budget: 100\n".into() });
        trimmed.tools.push(budget);
        assert_eq!(
            suite_from_episodes("mined-job", &[&trimmed]).evals[0].graders,
            [
                Grader::File {
                    path: "expenses.csv".into(),
                    equals: Some("date,item,amount\n".into()),
                    contains: vec![],
                    lines: vec![],
                    in_order: false,
                    absent: vec![],
                    missing: false,
                },
                check("weekly.md", &[], false, &[]),
                check("budget.md", &["Budget: 100"], false, &[]),
            ]
        );

        // A row changed: the new row is asked for and the old one must be gone (a student that
        // adds the right row and leaves the wrong one has not done the task).
        let mut fixed = e.clone();
        fixed.written = vec![file("expenses.csv", "date,item,amount\n2026-11-02,lunch,21\n", false)];
        assert_eq!(
            suite_from_episodes("mined-job", &[&fixed]).evals[0].graders,
            [check("expenses.csv", &["date,item,amount", "2026-11-02,lunch,21"], false, &["2026-11-02,lunch,12"])]
        );

        // No file checks where the files cannot all be told: another change the log does not
        // show, a change to a file the workspace lacks, or a deletion (the student's tools
        // cannot delete). The reply is graded as before.
        let mut deleting = e.clone();
        deleting.written.push(FileWritten { deleted: true, ..file("notes/old.md", "", false) });
        let mut unknown = e.clone();
        unknown.unknown_writes = true;
        let mut unseen = e.clone();
        unseen.written = vec![file("ledger.csv", "x\n", false)];
        let mut unseen_deleted = e.clone();
        unseen_deleted.written = vec![FileWritten { deleted: true, ..file("ledger.csv", "", false) }];
        // A file the agent saw only in part, or read and not kept: the student could not see
        // what the written file was made from.
        let mut partly = e.clone();
        partly.tools.push(agent_logs::ToolUse { partial_read: true, ..e.tools[0].clone() });
        let mut unkept = e.clone();
        unkept.tools.push(agent_logs::ToolUse { writes: true, ..e.tools[0].clone() });
        unkept.tools.push(agent_logs::ToolUse {
            read: Some(FileRead { path: "rates.csv".into(), content: "eur,1".into() }),
            ..e.tools[0].clone()
        });
        for other in [&unknown, &unseen, &unseen_deleted, &deleting, &partly, &unkept] {
            assert_eq!(
                suite_from_episodes("mined-job", &[other]).evals[0].graders,
                [Grader::Normalized { expected: None }]
            );
        }
        // A corrected task keeps the correction as its reference: the files it left were wrong.
        let corrected = agent_logs::Episode {
            outcome: agent_logs::Outcome {
                kind: OutcomeKind::Failure,
                evidence: String::new(),
                correction: Some("no, the train was 37 euros".into()),
            },
            ..e.clone()
        };
        let case = &suite_from_episodes("mined-job", &[&corrected]).evals[0];
        assert!(case.graders.is_empty() && case.expectations[0].contains("37 euros"), "{:?}", case.graders);
    }

    #[test]
    fn settled_episodes_become_cases_with_their_reference_and_a_stable_split() {
        let episodes = [
            episode("Total the amounts in expenses.csv", OutcomeKind::Success, Some("412.50 EUR"), None),
            episode(
                "Draft the weekly update",
                OutcomeKind::Success,
                Some("Shipped: the new login.\nNext: billing."),
                None,
            ),
            episode("Count the open to-dos", OutcomeKind::Failure, Some("5"), Some("no, there are 3")),
            episode("Rename the branch", OutcomeKind::Unknown, Some("Done."), None),
            episode("Sort the names", OutcomeKind::Failure, None, None),
        ];
        let refs: Vec<&Episode> = episodes.iter().collect();
        let suite = suite_from_episodes("mined-job", &refs);
        let prompts: Vec<&str> = suite.evals.iter().map(|c| c.prompt.as_str()).collect();
        assert_eq!(prompts, ["Total the amounts in expenses.csv", "Draft the weekly update", "Count the open to-dos"]);
        assert_eq!(suite.evals[0].expected_output.as_deref(), Some("412.50 EUR"));
        assert_eq!(
            suite.evals[0].graders,
            [Grader::Numeric { expected: Some(412.5), tolerance: 1e-6, unit: Some("EUR".into()) }]
        );
        assert!(suite.evals[1].expectations[0].contains("Shipped: the new login."), "{:?}", suite.evals[1]);
        assert!(suite.evals[2].expectations[0].contains("no, there are 3"), "{:?}", suite.evals[2]);
        let text = serde_json::to_string_pretty(&suite).expect("json");
        assert!(suite.problems(&text).is_empty(), "{:?}", suite.problems(&text));
        // The same episodes give the same ids and splits.
        let again = suite_from_episodes("mined-job", &refs);
        let key = |s: &EvalSuite| s.evals.iter().map(|c| (c.id.clone(), c.split)).collect::<Vec<_>>();
        assert_eq!(key(&suite), key(&again));
    }

    #[tokio::test]
    async fn structured_answers_are_checked_field_by_field() {
        let expense =
            r#"{"merchant": "Café Nord", "total": 18.40, "items": [{"what": "lunch", "eur": 18.4}], "a/b": true}"#;
        let fenced = "```json\n[\"Ana\", \"Ben\"]\n```";
        let big = serde_json::to_string(&(0..17).collect::<Vec<_>>()).expect("json");
        let episodes = [
            episode("Fill in the expense line for this receipt", OutcomeKind::Success, Some(expense), None),
            episode("Who is on call this week, as a JSON list?", OutcomeKind::Success, Some(fenced), None),
            episode("List the first 17 numbers as JSON", OutcomeKind::Success, Some(&big), None),
            episode("Total of expenses.csv?", OutcomeKind::Success, Some("412.50"), None),
        ];
        let refs: Vec<&Episode> = episodes.iter().collect();
        let suite = suite_from_episodes("mined-expenses", &refs);
        let field = |pointer: &str, equals: serde_json::Value| Grader::JsonField { pointer: pointer.into(), equals };
        // Fields in any order (serde_json keeps keys sorted or as written, by a feature).
        let mut graders = suite.evals[0].graders.clone();
        graders.sort_by_key(|g| match g {
            Grader::JsonField { pointer, .. } => pointer.clone(),
            _ => String::new(),
        });
        assert_eq!(
            graders,
            [
                field("/a~1b", serde_json::json!(true)),
                field("/items/0/eur", serde_json::json!(18.4)),
                field("/items/0/what", serde_json::json!("lunch")),
                field("/merchant", serde_json::json!("Café Nord")),
                field("/total", serde_json::json!(18.4)),
            ]
        );
        assert_eq!(
            suite.evals[1].graders,
            [field("/0", serde_json::json!("Ana")), field("/1", serde_json::json!("Ben"))],
            "a fenced block is read inside its fence"
        );
        assert_eq!(suite.evals[1].expected_output.as_deref(), Some(r#"["Ana","Ben"]"#), "on one line");
        assert!(suite.evals[2].graders.is_empty() && !suite.evals[2].expectations.is_empty(), "17 fields: the rubric");
        assert_eq!(suite.instructions.as_deref(), Some(MINED_JSON_ANSWER_INSTRUCTIONS));
        let text = serde_json::to_string_pretty(&suite).expect("json");
        assert!(suite.problems(&text).is_empty(), "{:?}", suite.problems(&text));
        // The student's reply is graded on the JSON of its answer line, fields in any order.
        let pattern = regex::Regex::new(MINED_ANSWER_PATTERN).expect("regex");
        let reply = "The receipt says lunch.\nAnswer: {\"total\": 18.4, \"merchant\": \"Café Nord\", \"a/b\": true, \"items\": [{\"eur\": 18.40, \"what\": \"lunch\"}]}";
        let extracted = evals::run::extract_answer(reply, Some(&pattern));
        let answer = evals::grade::Answer { output: reply, extracted: &extracted, tool_calls: &[], workspace: None };
        for grader in &suite.evals[0].graders {
            let outcome = grader.grade(&suite.evals[0], &answer, None).await.expect("grade");
            assert!(outcome.passed, "{grader:?}: {}", outcome.evidence);
        }
        let wrong = reply.replace("18.4,", "18.0,");
        let extracted = evals::run::extract_answer(&wrong, Some(&pattern));
        let answer = evals::grade::Answer { output: &wrong, extracted: &extracted, tool_calls: &[], workspace: None };
        let total = &graders[4];
        let outcome = total.grade(&suite.evals[0], &answer, None).await.expect("grade");
        assert!(!outcome.passed, "a wrong total fails: {}", outcome.evidence);
    }

    #[test]
    fn short_answers_get_the_suite_answer_format_and_numbers_a_numeric_grader() {
        let episodes = [
            episode("How many marbles in all?", OutcomeKind::Success, Some("42"), None),
            episode("Tip on a 48 euro bill?", OutcomeKind::Success, Some("8 euros"), None),
            episode("Due date?", OutcomeKind::Success, Some("3 March 2027"), None),
        ];
        let refs: Vec<&Episode> = episodes.iter().collect();
        let suite = suite_from_episodes("mined-job", &refs);
        assert_eq!(suite.evals[0].graders, [Grader::Numeric { expected: Some(42.0), tolerance: 1e-6, unit: None }]);
        assert_eq!(
            suite.evals[1].graders,
            [Grader::Numeric { expected: Some(8.0), tolerance: 1e-6, unit: Some("EUR".into()) }]
        );
        assert_eq!(suite.evals[2].graders, [Grader::Normalized { expected: None }], "two numbers: compared as text");
        assert_eq!(suite.instructions.as_deref(), Some(MINED_ANSWER_INSTRUCTIONS));
        let pattern = regex::Regex::new(suite.answer_pattern.as_deref().expect("a pattern")).expect("regex");
        let reply = "17 red and 25 blue.\nAnswering: add them.\n**Answer:** 42\n";
        assert_eq!(evals::run::extract_answer(reply, Some(&pattern)), "42");
    }
}
