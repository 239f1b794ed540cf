//! Pi (the pi coding agent): `~/.pi/agent/sessions/--<cwd with / as ->--/<time>_<id>.jsonl`
//! (`$PI_CODING_AGENT_DIR` instead of `~/.pi/agent`).
//!
//! The first line is the header, `{"type": "session", "version", "id", "timestamp",
//! "cwd"}` (with `parentSession`, the file it was forked from, in a fork). Then entries:
//! `message` entries hold an agent message (`role` `user`, `assistant` with `text`,
//! `thinking` and `toolCall` blocks and a `stopReason`, `toolResult` with `toolCallId` and
//! `isError`); other entry types (model and thinking-level changes, compactions, branch
//! summaries, labels, extensions' entries) are skipped. From version 2 every entry has an
//! `id` and a `parentId`: the session is a tree, and the branch that counts is the path from
//! the last entry written back to the root (version 1 files are one linear branch). A fork
//! starts with a copy of its parent's branch; entries whose id the parent file holds are
//! the parent's and are left to it.

use crate::harness::user_text;
use crate::jsonl::{Line, read_jsonl, text_of};
use crate::{EditArgs, FileChange, FileRead, LogSource, Result, Session, Turn};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Pi's sessions folder.
#[derive(Debug, Clone)]
pub struct Pi {
    root: PathBuf,
}

impl Pi {
    /// Sessions under `agent_dir/sessions`.
    pub fn new(agent_dir: PathBuf) -> Self {
        Pi { root: agent_dir.join("sessions") }
    }

    /// `$PI_CODING_AGENT_DIR`, else `~/.pi/agent`.
    pub fn from_env() -> Self {
        Self::new(crate::env_dir("PI_CODING_AGENT_DIR").unwrap_or_else(|| crate::home().join(".pi").join("agent")))
    }
}

impl LogSource for Pi {
    fn name(&self) -> &'static str {
        "pi"
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.root.clone()]
    }

    fn is_session_file(&self, path: &Path) -> bool {
        path.extension().is_some_and(|e| e == "jsonl")
    }

    fn read(&self, path: &Path) -> Result<Session> {
        let lines = read_jsonl(path)?;
        let mut session = Session {
            id: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            ..Session::default()
        };
        let header = lines.iter().find(|l| l.value["type"] == "session");
        let mut inherited = HashSet::new();
        if let Some(h) = header {
            if let Some(id) = h.value["id"].as_str() {
                session.id = id.to_string();
            }
            session.project = h.value["cwd"].as_str().map(PathBuf::from);
            if let Some(parent) = h.value["parentSession"].as_str() {
                // The parent's entries are counted once, in the parent's file (a parent that
                // is gone leaves the copy to stand for it).
                let parent = resolve(path, parent);
                if let Ok(parent_lines) = read_jsonl(&parent) {
                    inherited = parent_lines.iter().filter_map(|l| entry_id(&l.value)).map(str::to_string).collect();
                }
            }
        }
        let entries: Vec<&Line> = lines.iter().filter(|l| l.value["type"] != "session").collect();
        let branch = active_branch(&entries);
        let mut calls: HashMap<String, usize> = HashMap::new();
        // Turn index of a `read` -> the path it read whole (None: part of a file, or one not
        // to keep), until its result comes.
        let mut reads: HashMap<usize, Option<String>> = HashMap::new();
        for line in entries
            .iter()
            .filter(|l| branch.as_ref().is_none_or(|b| entry_id(&l.value).is_some_and(|id| b.contains(id))))
        {
            let v = &line.value;
            if entry_id(v).is_some_and(|id| inherited.contains(id)) || v["type"] != "message" {
                continue;
            }
            let message = &v["message"];
            let time = v["timestamp"].as_str().map(str::to_string);
            match message["role"].as_str().unwrap_or("") {
                "user" => {
                    if let Some(text) = user_text(&text_of(&message["content"], &["text"])) {
                        session.turns.push(Turn::User { text, time });
                    }
                }
                "assistant" => {
                    let text = text_of(&message["content"], &["text"]);
                    if !text.trim().is_empty() {
                        session.turns.push(Turn::Assistant { text });
                    }
                    for block in message["content"].as_array().into_iter().flatten().filter(|b| b["type"] == "toolCall")
                    {
                        calls.insert(block["id"].as_str().unwrap_or("").to_string(), session.turns.len());
                        let name = block["name"].as_str().unwrap_or("?").to_string();
                        // A `read` is of a whole file with a path and no `offset`/`limit`; its
                        // text comes with the result.
                        let args = &block["arguments"];
                        if name == "read" {
                            let whole = args["offset"].is_null() && args["limit"].is_null();
                            let path = args["path"].as_str().filter(|_| whole);
                            let path = path.and_then(|p| crate::path_in_project(session.project.as_deref(), p));
                            reads.insert(session.turns.len(), path);
                        }
                        if matches!(name.as_str(), "write" | "edit") {
                            let change = file_change(args, session.project.as_deref());
                            session.turns.push(Turn::call_changing(name, change.into_iter().collect()));
                            continue;
                        }
                        // `bash` writes unless its command is known to only read, and a file
                        // it prints is not kept (Pi reads files with `read`).
                        let command = (name == "bash").then(|| args["command"].as_str().unwrap_or(""));
                        session.turns.push(Turn::call(name, false, command));
                    }
                    // `usage`: `input`, `output`, `cacheRead`, `cacheWrite` and, since Pi added
                    // it, their `totalTokens`.
                    let usage = &message["usage"];
                    let tokens = usage["totalTokens"].as_u64().or_else(|| {
                        let parts: Vec<u64> = ["input", "output", "cacheRead", "cacheWrite"]
                            .iter()
                            .filter_map(|f| usage[f].as_u64())
                            .collect();
                        (!parts.is_empty()).then(|| parts.iter().sum())
                    });
                    if tokens.is_some() || time.is_some() {
                        session.turns.push(Turn::Model { tokens, time: time.clone() });
                    }
                    if message["stopReason"] == "aborted" {
                        session.turns.push(Turn::Interrupted);
                    }
                }
                "toolResult" => {
                    let at = message["toolCallId"].as_str().and_then(|id| calls.get(id)).copied();
                    let was_read = at.and_then(|i| reads.remove(&i));
                    if let Some(Turn::Tool { error, read, partial_read, .. }) =
                        at.and_then(|i| session.turns.get_mut(i))
                    {
                        *error = message["isError"].as_bool() == Some(true);
                        if let Some(path) = was_read
                            && !*error
                        {
                            *read = path.and_then(|path| Some(FileRead { path, content: whole_text(message)? }));
                            *partial_read = read.is_none();
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(session)
    }
}

/// What `write` (`path`, `content`) or `edit` (`path`, `oldText`, `newText`; or `edits` of
/// those) does to its file.
fn file_change(args: &Value, project: Option<&Path>) -> Option<FileChange> {
    EditArgs { path: "path", old: "oldText", new: "newText", all: None }.change(args, project)
}

fn entry_id(v: &Value) -> Option<&str> {
    v["id"].as_str()
}

/// The ids on the path from the last entry with an id back to the root; `None` for a
/// file without ids (format version 1: one linear branch).
fn active_branch(entries: &[&Line]) -> Option<HashSet<String>> {
    let parents: HashMap<&str, Option<&str>> =
        entries.iter().filter_map(|l| Some((entry_id(&l.value)?, l.value["parentId"].as_str()))).collect();
    let leaf = entries.iter().rev().find_map(|l| entry_id(&l.value))?;
    let mut branch = HashSet::new();
    let mut at = Some(leaf);
    // Bounded by the number of entries, so a cycle in an edited file cannot loop forever.
    while let Some(id) = at {
        if !branch.insert(id.to_string()) {
            break;
        }
        at = parents.get(id).copied().flatten();
    }
    Some(branch)
}

/// A `parentSession` path, relative ones taken from the fork's folder.
fn resolve(fork: &Path, parent: &str) -> PathBuf {
    let p = PathBuf::from(parent);
    if p.is_absolute() { p } else { fork.parent().map(|d| d.join(&p)).unwrap_or(p) }
}

/// The text of a `read` result that shows a whole text file: text blocks only (an image
/// comes as an image block with a note), and no sign that it was cut (`details.truncation`
/// since Pi recorded it; the `[Showing lines ...` notice the text carries in every version).
fn whole_text(message: &Value) -> Option<String> {
    let blocks = message["content"].as_array();
    let text_only = blocks.is_none_or(|b| b.iter().all(|block| block["type"] == "text"));
    let text = text_of(&message["content"], &["text"]);
    let cut = message["details"]["truncation"]["truncated"].as_bool() == Some(true) || text.contains("[Showing lines ");
    (text_only && !cut).then_some(text)
}
