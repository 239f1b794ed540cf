//! Claude Code: `~/.claude/projects/<project slug>/<session id>.jsonl` (`$CLAUDE_CONFIG_DIR`
//! instead of `~/.claude`).
//!
//! Each line is one entry: `type` `user` or `assistant` (others, such as `summary`,
//! `system` and `file-history-snapshot`, are skipped) with `sessionId`, `cwd`, `timestamp`
//! and a `message` in the Messages API's shape: `content` a string or a list of blocks
//! (`text`, `tool_use` with `id` and `name`, `tool_result` with `tool_use_id` and
//! `is_error`). One assistant message is often split over several lines that share
//! `message.id`, one block each; their text is joined. Lines with `isMeta` are harness text;
//! lines with `isSidechain` are a subagent's conversation, whose "user" is the main agent,
//! so they hold no user task.
//!
//! A subagent (the `Task` or `Agent` tool) writes its own transcript,
//! `<session>/subagents/agent-<agentId>.jsonl` (`agent-<agentId>.jsonl` beside the session in
//! older versions), and its result in the session names it (`agentId: <id>`, or
//! `toolUseResult.agentId`). Its tool calls are read into the session right after the call
//! that started it: the work it did for the user's task, with its errors, its whole-file reads
//! and the files it changed (its calls stand for the call's own `writes`). Its text is not.

use crate::harness::user_text;
use crate::jsonl::{read_jsonl, text_of};
use crate::{EditArgs, FileChange, FileRead, LogSource, Result, Session, Turn};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Claude Code's projects folder.
#[derive(Debug, Clone)]
pub struct ClaudeCode {
    root: PathBuf,
}

impl ClaudeCode {
    /// Sessions under `config_dir/projects`.
    pub fn new(config_dir: PathBuf) -> Self {
        ClaudeCode { root: config_dir.join("projects") }
    }

    /// `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
    pub fn from_env() -> Self {
        Self::new(crate::env_dir("CLAUDE_CONFIG_DIR").unwrap_or_else(|| crate::home().join(".claude")))
    }
}

/// What Claude Code writes as the user's message when the user stops it.
const INTERRUPTED: &str = "[Request interrupted by user";
/// The start of the tool result Claude Code records when the user refuses a call.
const REFUSED: &str = "The user doesn't want to proceed with this tool use";

impl LogSource for ClaudeCode {
    fn name(&self) -> &'static str {
        "claude-code"
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.root.clone()]
    }

    fn is_session_file(&self, path: &Path) -> bool {
        // Subagent transcripts: `<session>/subagents/*.jsonl`, and `agent-*.jsonl` beside the
        // sessions in older versions.
        path.extension().is_some_and(|e| e == "jsonl")
            && !path.components().any(|c| c.as_os_str() == "subagents")
            && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("agent-"))
    }

    fn read(&self, path: &Path) -> Result<Session> {
        let (mut session, subagents) = parse(path, false)?;
        // Later calls first, so the earlier indices stay where they are.
        for (at, agent) in subagents.into_iter().rev() {
            let Some(file) = subagent_file(path, &agent) else { continue };
            let tools = match parse(&file, true) {
                Ok((sub, _)) => sub.turns,
                // The session stays readable: the call keeps its cautious `writes`.
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "skipped a subagent transcript");
                    continue;
                }
            };
            // The subagent's own calls, which follow the call, say what it changed.
            if let Some(Turn::Tool { writes, .. }) = session.turns.get_mut(at) {
                *writes = false;
            }
            session.turns.splice(at + 1..at + 1, tools);
        }
        Ok(session)
    }
}

/// The transcript of subagent `agent` of the session in `session_file`, where there is one.
fn subagent_file(session_file: &Path, agent: &str) -> Option<PathBuf> {
    // An id is a name, never a path.
    if agent.is_empty() || !agent.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return None;
    }
    let name = format!("agent-{agent}.jsonl");
    let nested = session_file.with_extension("").join("subagents").join(&name);
    let beside = session_file.with_file_name(&name);
    [nested, beside].into_iter().find(|f| f.is_file())
}

/// The id a subagent's result names it by: `toolUseResult.agentId`, else `agentId: <id>` in
/// the result's text.
fn agent_id(result_line: &Value, result_text: &str) -> Option<String> {
    if let Some(id) = result_line["toolUseResult"]["agentId"].as_str() {
        return Some(id.to_string());
    }
    let rest = &result_text[result_text.find("agentId:")? + "agentId:".len()..];
    let id: String =
        rest.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    (!id.is_empty()).then_some(id)
}

/// Reads one transcript: the session's turns, and for each call that started a subagent, its
/// turn's index and the subagent's id. `tools_only` reads a subagent's own transcript: its
/// tool calls only (its "user" is the main agent, its text not the answer).
fn parse(path: &Path, tools_only: bool) -> Result<(Session, Vec<(usize, String)>)> {
    let mut session = Session {
        id: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        ..Session::default()
    };
    let mut subagents = Vec::new();
    // tool_use id -> index of its Turn::Tool, to mark it when its result comes back.
    let mut calls: HashMap<String, usize> = HashMap::new();
    // The message id of the last assistant line, to join a message split over lines.
    let mut last_message: Option<String> = None;
    // Message ids whose usage is counted.
    let mut usage_counted: HashSet<String> = HashSet::new();
    for line in read_jsonl(path)? {
        let v = &line.value;
        let kind = v["type"].as_str().unwrap_or("");
        if !matches!(kind, "user" | "assistant") || (!tools_only && v["isSidechain"].as_bool() == Some(true)) {
            continue;
        }
        if let Some(id) = v["sessionId"].as_str() {
            session.id = id.to_string();
        }
        if session.project.is_none()
            && let Some(cwd) = v["cwd"].as_str()
        {
            session.project = Some(PathBuf::from(cwd));
        }
        let content = &v["message"]["content"];
        if kind == "assistant" {
            let id = v["message"]["id"].as_str().map(str::to_string);
            let text = text_of(content, &["text"]);
            let same_message = id.is_some() && id == last_message;
            // A message split over lines repeats its usage on each (even with tool results
            // between them): counted once, first, so its text lines stay together to be joined.
            if id.as_ref().is_none_or(|id| usage_counted.insert(id.clone())) {
                session.turns.push(Turn::Model { tokens: usage_tokens(&v["message"]["usage"]), time: timestamp(v) });
            }
            if !text.trim().is_empty() && !tools_only {
                match session.turns.last_mut() {
                    Some(Turn::Assistant { text: before }) if same_message => {
                        before.push('\n');
                        before.push_str(&text);
                    }
                    _ => session.turns.push(Turn::Assistant { text }),
                }
            }
            for block in content.as_array().into_iter().flatten() {
                if block["type"] == "tool_use" {
                    let name = block["name"].as_str().unwrap_or("?").to_string();
                    calls.insert(block["id"].as_str().unwrap_or("").to_string(), session.turns.len());
                    session.turns.push(tool_call(name, &block["input"], session.project.as_deref()));
                }
            }
            last_message = id;
            continue;
        }
        last_message = None;
        // A user line: the user's words, or tool results (the API sends those as user turns).
        let results: Vec<&Value> =
            content.as_array().into_iter().flatten().filter(|b| b["type"] == "tool_result").collect();
        // `toolUseResult` is the line's one result in Claude Code's own terms.
        let whole_file =
            (results.len() == 1).then(|| whole_file_read(&v["toolUseResult"], session.project.as_deref())).flatten();
        for block in results {
            let result = text_of(&block["content"], &["text"]);
            let at = block["tool_use_id"].as_str().and_then(|id| calls.get(id)).copied();
            if let Some(Turn::Tool { name, error, rejected, read, partial_read, .. }) =
                at.and_then(|i| session.turns.get_mut(i))
            {
                *error = block["is_error"].as_bool() == Some(true);
                *rejected = result.starts_with(REFUSED);
                if name == "Read" && !*error {
                    *read = whole_file.clone();
                    *partial_read = read.is_none();
                }
                if matches!(name.as_str(), "Task" | "Agent")
                    && let (Some(i), Some(agent)) = (at, agent_id(v, &result))
                {
                    subagents.push((i, agent));
                }
            }
        }
        if tools_only || v["isMeta"].as_bool() == Some(true) || v["isCompactSummary"].as_bool() == Some(true) {
            continue;
        }
        let text = text_of(content, &["text"]);
        if text.trim_start().starts_with(INTERRUPTED) {
            session.turns.push(Turn::Interrupted);
        } else if let Some(text) = user_text(&text) {
            session.turns.push(Turn::User { text, time: timestamp(v) });
        }
    }
    Ok((session, subagents))
}

/// A call of one of Claude Code's tools: its edit tools and subagents (`Task`) write; `Bash`
/// writes unless its command is known to only read, and a file it prints is not kept (its
/// output is not checked for being the whole file: Claude Code reads files with `Read`),
/// even when the command failed (`cat a b` shows `a` when `b` is missing).
fn tool_call(name: String, input: &Value, project: Option<&Path>) -> Turn {
    if matches!(name.as_str(), "Write" | "Edit" | "MultiEdit") {
        return Turn::call_changing(name, file_change(input, project).into_iter().collect());
    }
    // A subagent may do anything until its own transcript says what it did.
    let edits = matches!(name.as_str(), "NotebookEdit" | "Task" | "Agent");
    let command = (name == "Bash").then(|| input["command"].as_str().unwrap_or(""));
    Turn::call(name, edits, command)
}

/// What `Write` (`file_path`, `content`), `Edit` (`file_path`, `old_string`, `new_string`,
/// `replace_all`) or `MultiEdit` (`file_path`, `edits` of those) does to its file.
///
/// An `Edit` that deletes text (an empty `new_string`) whose `old_string` does not end a line
/// is not followed: Claude Code may then delete the newline after it too, so the file after
/// it is not known for sure.
fn file_change(input: &Value, project: Option<&Path>) -> Option<FileChange> {
    let args = EditArgs { path: "file_path", old: "old_string", new: "new_string", all: Some("replace_all") };
    let change = args.change(input, project)?;
    if let FileChange::Replace { edits, .. } = &change
        && edits.iter().any(|e| e.new.is_empty() && !e.old.ends_with('\n'))
    {
        return None;
    }
    Some(change)
}

/// The `Read` tool's record of a file shown from its first line to its last
/// (`toolUseResult.file`: `filePath`, `content` without line numbers, `startLine`,
/// `numLines`, `totalLines`).
fn whole_file_read(result: &Value, project: Option<&Path>) -> Option<FileRead> {
    let file = &result["file"];
    let (start, lines, total) = (file["startLine"].as_u64()?, file["numLines"].as_u64()?, file["totalLines"].as_u64()?);
    if start != 1 || lines < total {
        return None;
    }
    let path = crate::path_in_project(project, file["filePath"].as_str()?)?;
    Some(FileRead { path, content: file["content"].as_str()?.to_string() })
}

/// The tokens of one API call (`message.usage`): input, cache reads and writes, and output.
fn usage_tokens(usage: &Value) -> Option<u64> {
    let fields = ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"];
    let counts: Vec<u64> = fields.iter().filter_map(|f| usage[f].as_u64()).collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

fn timestamp(v: &Value) -> Option<String> {
    v["timestamp"].as_str().map(str::to_string)
}
