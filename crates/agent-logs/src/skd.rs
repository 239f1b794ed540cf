//! skd's own run transcripts (`runs_dir/*.jsonl`, one run each; schema in
//! docs/transcript.md).

use crate::FileChange;
use crate::episode::{FileRead, SkillUse};
use crate::jsonl::read_jsonl;
use crate::{Error, LogSource, Result, Session, Turn};
use agent_loop::transcript::{Event, Verdict};
use std::path::{Path, PathBuf};

/// skd's runs in one folder.
#[derive(Debug, Clone)]
pub struct SkdRuns {
    dir: PathBuf,
}

impl SkdRuns {
    /// The runs in `dir` (the config's `runs_dir`).
    pub fn new(dir: PathBuf) -> Self {
        SkdRuns { dir }
    }
}

/// Event names of the transcript schema: a line that names one and does not parse is
/// corrupt; a line naming another is from a newer skd and is skipped.
const KNOWN_EVENTS: &[&str] = &[
    "start",
    "retrieved",
    "skill_activated",
    "prompt",
    "model_call",
    "invalid_reply",
    "tool_call",
    "feedback",
    "finish",
];

impl LogSource for SkdRuns {
    fn name(&self) -> &'static str {
        "skd"
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn is_session_file(&self, path: &Path) -> bool {
        path.extension().is_some_and(|e| e == "jsonl")
    }

    fn read(&self, path: &Path) -> Result<Session> {
        let mut session = Session {
            id: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            ..Session::default()
        };
        let mut skill = None;
        for line in read_jsonl(path)? {
            let name = line.value["event"].as_str().unwrap_or("").to_string();
            // Every event carries the time it was written.
            let time = line.value["time"].as_str().map(str::to_string);
            let event: Event = match serde_json::from_value(line.value) {
                Ok(e) => e,
                Err(_) if !KNOWN_EVENTS.contains(&name.as_str()) => continue,
                Err(e) => {
                    return Err(Error::Corrupt {
                        path: path.to_path_buf(),
                        line: line.number,
                        message: format!("a `{name}` event: {e}"),
                    });
                }
            };
            match event {
                Event::Start { run_id, time, task, .. } => {
                    session.id = run_id;
                    session.turns.push(Turn::User { text: task, time: Some(time) });
                }
                Event::SkillActivated { name, content_hash, .. } => skill = Some(SkillUse { name, content_hash }),
                // A call `denied` is the skill's allowed-tools at work, not the user refusing.
                Event::ToolCall { tool, arguments, ok, output, .. } => {
                    // skd's file tools take workspace-relative paths; an observation cut to
                    // the loop's limit is not the whole file.
                    let is_read = tool == "read_file" && ok;
                    let read = (is_read && !agent_loop::transcript::is_cut_observation(&output))
                        .then(|| arguments["path"].as_str().and_then(|p| crate::path_in_project(None, p)))
                        .flatten()
                        .map(|path| FileRead { path, content: output });
                    // The opt-in `shell` writes unless its command is known to only read; a
                    // file it prints is not kept (skd reads files with `read_file`).
                    let shell = (tool == "shell")
                        .then(|| crate::shell::effect_of_script(arguments["command"].as_str().unwrap_or("")));
                    let shell_shows_file = ok && shell.as_ref().is_some_and(|e| e.read.is_some());
                    let partial_read = (is_read && read.is_none()) || shell_shows_file;
                    let writes = tool == "write_file" || shell.is_some_and(|e| e.may_write);
                    let changes = (tool == "write_file")
                        .then(|| {
                            let path = arguments["path"].as_str().and_then(|p| crate::path_in_project(None, p))?;
                            let content = arguments["content"].as_str()?.to_string();
                            Some(FileChange::Whole { path, content })
                        })
                        .flatten()
                        .into_iter()
                        .collect();
                    session.turns.push(Turn::Tool {
                        name: tool,
                        error: !ok,
                        rejected: false,
                        read,
                        partial_read,
                        writes,
                        changes,
                    })
                }
                Event::Aborted { .. } => session.turns.push(Turn::Interrupted),
                Event::Feedback { verdict, note, .. } => {
                    session.turns.push(Turn::Feedback { good: verdict == Verdict::Good, note })
                }
                Event::Finish { outcome, answer, steps, prompt_tokens, completion_tokens, .. } => {
                    session.turns.push(Turn::Model { tokens: Some(prompt_tokens + completion_tokens), time });
                    let outcome = serde_json::to_value(outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    session.turns.push(Turn::SkdRun { skill: skill.clone(), answer, outcome, steps });
                }
                _ => {}
            }
        }
        Ok(session)
    }
}
