//! OpenAI's Codex CLI: `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl` (and `.jsonl.zst`,
//! and `$CODEX_HOME/archived_sessions/`), `~/.codex` when `CODEX_HOME` is unset.
//!
//! Each line is `{"timestamp", "type", "payload"}`: `session_meta` (the session's `id` and
//! `cwd`), `response_item` (the model's input and output items: `message` with a `role`
//! and `input_text`/`output_text` blocks, `function_call` with `name` and `call_id`,
//! `function_call_output` with `call_id` and `output`, `custom_tool_call` and its output,
//! `local_shell_call`), `event_msg` (what the UI showed: `user_message` holds what the user
//! typed, `turn_aborted` an interruption), and others (`turn_context`, `compacted`) that
//! are skipped. The user's words come from `user_message` events where the file has them,
//! since Codex's `response_item` user messages also carry its environment block and
//! AGENTS.md; older rollouts without events fall back to those, harness text removed.
//!
//! Codex reads files through its shell (`cat F`, `sed -n '1,200p' F`, `nl -ba F`) or its
//! `read_file` tool (`L1: text` lines); a read whose output shows the whole file is kept,
//! one that shows part of a file, or output Codex cut, is marked partial. Its shell commands
//! count as writes unless they are known to only read ([`crate::shell`]); `apply_patch`
//! writes.

use crate::harness::user_text;
use crate::jsonl::{read_jsonl, text_of};
use crate::shell::{self, ShellRead, View};
use crate::{FileChange, FileRead, LogSource, Replacement, Result, Session, Turn};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Codex's session folders.
#[derive(Debug, Clone)]
pub struct Codex {
    home: PathBuf,
}

impl Codex {
    /// Sessions under `codex_home`.
    pub fn new(codex_home: PathBuf) -> Self {
        Codex { home: codex_home }
    }

    /// `$CODEX_HOME`, else `~/.codex`.
    pub fn from_env() -> Self {
        Self::new(crate::env_dir("CODEX_HOME").unwrap_or_else(|| crate::home().join(".codex")))
    }
}

impl LogSource for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.home.join("sessions"), self.home.join("archived_sessions")]
    }

    fn is_session_file(&self, path: &Path) -> bool {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.starts_with("rollout-") {
            return false;
        }
        // A compressed rollout beside its plain copy is the same session: the plain one counts.
        name.ends_with(".jsonl") || (name.ends_with(".jsonl.zst") && !path.with_extension("").is_file())
    }

    fn read(&self, path: &Path) -> Result<Session> {
        let lines = read_jsonl(path)?;
        let mut session = Session {
            id: path
                .file_stem()
                .map(|s| s.to_string_lossy().trim_end_matches(".jsonl").to_string())
                .unwrap_or_default(),
            ..Session::default()
        };
        let has_user_events =
            lines.iter().any(|l| l.value["type"] == "event_msg" && l.value["payload"]["type"] == "user_message");
        let mut calls: HashMap<String, usize> = HashMap::new();
        // Turn index of a call that prints a file -> how, until its output comes.
        let mut reads: HashMap<usize, PendingRead> = HashMap::new();
        let mut seen_meta = false;
        // The session's running token total, as its last `token_count` gave it.
        let mut session_tokens = 0u64;
        for line in &lines {
            let v = &line.value;
            // Rollouts before the `{timestamp, type, payload}` envelope hold bare items.
            let (kind, payload) = match (v["type"].as_str(), v.get("payload")) {
                (Some(kind), Some(payload)) => (kind, payload),
                (Some(_), None) => ("response_item", v),
                _ => continue,
            };
            let time = v["timestamp"].as_str().map(str::to_string);
            match (kind, payload["type"].as_str().unwrap_or("")) {
                // The first one is the session's (a fork's copied history may hold its parent's).
                ("session_meta", _) if !seen_meta => {
                    seen_meta = true;
                    if let Some(id) = payload["id"].as_str().or(payload["session_id"].as_str()) {
                        session.id = id.to_string();
                    }
                    session.project = payload["cwd"].as_str().map(PathBuf::from);
                }
                ("event_msg", "user_message") => {
                    if let Some(text) = payload["message"].as_str().and_then(user_text) {
                        session.turns.push(Turn::User { text, time });
                    }
                }
                ("event_msg", "turn_aborted") => session.turns.push(Turn::Interrupted),
                // After each model response, and again when rate limits come in (repeating the
                // last call's usage): what the session's running total gained is new.
                ("event_msg", "token_count") => {
                    let info = &payload["info"];
                    let tokens = match info["total_token_usage"]["total_tokens"].as_u64() {
                        Some(total) => {
                            let gained = total.checked_sub(session_tokens).filter(|&g| g > 0);
                            session_tokens = session_tokens.max(total);
                            gained
                        }
                        None => info["last_token_usage"]["total_tokens"].as_u64(),
                    };
                    if tokens.is_some() {
                        session.turns.push(Turn::Model { tokens, time });
                    }
                }
                ("response_item", "message") => match payload["role"].as_str() {
                    Some("user") if !has_user_events => {
                        if let Some(text) = user_text(&text_of(&payload["content"], &["input_text", "text"])) {
                            session.turns.push(Turn::User { text, time });
                        }
                    }
                    Some("assistant") => {
                        let text = text_of(&payload["content"], &["output_text", "text"]);
                        if !text.trim().is_empty() {
                            session.turns.push(Turn::Assistant { text });
                        }
                    }
                    _ => {}
                },
                ("response_item", "function_call" | "custom_tool_call" | "local_shell_call") => {
                    let name = payload["name"].as_str().unwrap_or(if payload["type"] == "local_shell_call" {
                        "shell"
                    } else {
                        "?"
                    });
                    if let Some(id) = payload["call_id"].as_str() {
                        calls.insert(id.to_string(), session.turns.len());
                    }
                    let call = CallEffect::of(name, payload, session.project.as_deref());
                    if let Some(read) = call.read {
                        reads.insert(session.turns.len(), read);
                    }
                    // Codex's shell output is checked when it comes, so its command is judged
                    // here rather than by `Turn::call`.
                    session.turns.push(if call.changes.is_empty() {
                        Turn::call(name, call.writes, None)
                    } else {
                        Turn::call_changing(name, call.changes)
                    });
                }
                ("response_item", "function_call_output" | "custom_tool_call_output") => {
                    let at = payload["call_id"].as_str().and_then(|id| calls.get(id)).copied();
                    let pending = at.and_then(|i| reads.remove(&i));
                    if let Some(Turn::Tool { name, error, rejected, read, partial_read, .. }) =
                        at.and_then(|i| session.turns.get_mut(i))
                    {
                        let output = output_text(&payload["output"]);
                        let (mut failed, refused) = output_verdict(&payload["output"], &output);
                        // A patch that did not apply says why, with no exit code; one that did
                        // says "Success." (or, run as a command, exits 0).
                        if name == "apply_patch"
                            && !output.trim_start().starts_with("Success")
                            && exit_code(&output) != Some(0)
                        {
                            failed = true;
                        }
                        *error = failed;
                        *rejected = refused;
                        match pending.map(|p| p.file(&output, failed)) {
                            Some(Shown::Whole(file)) => *read = Some(file),
                            Some(Shown::Part) => *partial_read = true,
                            Some(Shown::Nothing) | None => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(session)
    }
}

/// What a call may do to files, known from the call alone.
struct CallEffect {
    writes: bool,
    read: Option<PendingRead>,
    /// What an `apply_patch` call did to files, where its patch says it exactly.
    changes: Vec<FileChange>,
}

/// A call that prints a file, waiting for its output.
enum PendingRead {
    /// A shell command: the file's path in the project (None: outside it or a secrets file)
    /// and how it was printed (None: a part of it, or several files).
    Shell { path: Option<String>, view: Option<View> },
    /// Codex's `read_file` tool: the path in the project, and the line limit when the call
    /// asked for the file from its first line in slice mode (None: a part of it).
    ReadFile { path: Option<String>, limit: Option<usize> },
}

/// What a call's output showed of a file.
enum Shown {
    Whole(FileRead),
    Part,
    Nothing,
}

impl CallEffect {
    /// Codex's tools: `apply_patch` writes; the shell tools (`shell`, `shell_command`,
    /// `exec_command`, `local_shell_call`) write unless their command is known to only read,
    /// and may print a file; `read_file` prints one; `write_stdin` feeds a running command,
    /// which may write.
    fn of(name: &str, payload: &Value, project: Option<&Path>) -> CallEffect {
        let args: Value = match &payload["arguments"] {
            Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            other => other.clone(),
        };
        let (effect, workdir) = if payload["type"] == "local_shell_call" {
            let action = &payload["action"];
            (Some(shell::effect_of_argv(&strings(&action["command"]))), action["working_directory"].as_str())
        } else {
            let effect = match (name, &args["command"]) {
                ("shell" | "container.exec", Value::Array(_)) => {
                    Some(shell::effect_of_argv(&strings(&args["command"])))
                }
                ("shell_command", Value::String(script)) => Some(shell::effect_of_script(script)),
                ("exec_command", _) if args["cmd"].is_string() => args["cmd"].as_str().map(shell::effect_of_script),
                // A shell call whose command cannot be read may have done anything.
                ("shell" | "container.exec" | "shell_command" | "exec_command", _) => {
                    Some(shell::ShellEffect { read: None, may_write: true })
                }
                _ => None,
            };
            (effect, args["workdir"].as_str())
        };
        if let Some(effect) = effect {
            let read = effect.read.map(|read| match read {
                ShellRead::File { path, view } => {
                    PendingRead::Shell { path: in_project(project, workdir, &path), view: Some(view) }
                }
                ShellRead::Part => PendingRead::Shell { path: None, view: None },
            });
            return CallEffect { writes: effect.may_write, read, changes: Vec::new() };
        }
        match name {
            "apply_patch" => {
                // A custom tool's input is the patch; a function's arguments hold it in `input`.
                let patch = payload["input"].as_str().or_else(|| args["input"].as_str()).unwrap_or("");
                let workdir = args["workdir"].as_str();
                CallEffect {
                    writes: true,
                    read: None,
                    changes: patch_changes(patch, project, workdir).unwrap_or_default(),
                }
            }
            "write_stdin" => CallEffect { writes: true, read: None, changes: Vec::new() },
            "read_file" => {
                let from_start = args["offset"].as_u64().is_none_or(|o| o == 1)
                    && args["mode"].as_str().is_none_or(|m| m == "slice");
                let limit = args["limit"].as_u64().map_or(Some(READ_FILE_LIMIT), |l| usize::try_from(l).ok());
                let path = args["file_path"].as_str().and_then(|p| in_project(project, None, p));
                CallEffect {
                    writes: false,
                    read: Some(PendingRead::ReadFile { path, limit: limit.filter(|_| from_start) }),
                    changes: Vec::new(),
                }
            }
            _ => CallEffect { writes: false, read: None, changes: Vec::new() },
        }
    }
}

/// The changes of an `apply_patch` patch (`*** Begin Patch`, then `*** Add File: PATH` with
/// `+` lines, `*** Update File: PATH` with hunks of ` `, `-` and `+` lines after `@@`
/// headers, `*** Delete File: PATH`, `*** End Patch`): an added file is written whole, each
/// hunk of an update replaces its old lines (context and removed) with its new ones (context
/// and added), a deleted file is deleted. None when the patch does something whose result
/// cannot be told that way (a moved file, a hunk with no old lines), or cannot be read.
fn patch_changes(patch: &str, project: Option<&Path>, workdir: Option<&str>) -> Option<Vec<FileChange>> {
    let mut lines = patch.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).peekable();
    if lines.next()?.trim() != "*** Begin Patch" {
        return None;
    }
    let mut changes = Vec::new();
    while let Some(line) = lines.next() {
        let line = line.trim_end();
        if line == "*** End Patch" {
            return Some(changes);
        }
        if let Some(path) = line.strip_prefix("*** Add File: ") {
            let path = in_project(project, workdir, path.trim())?;
            let mut content = String::new();
            while let Some(added) = lines.peek().and_then(|l| l.strip_prefix('+')) {
                content.push_str(added);
                content.push('\n');
                lines.next();
            }
            changes.push(FileChange::Whole { path, content });
        } else if let Some(path) = line.strip_prefix("*** Update File: ") {
            let path = in_project(project, workdir, path.trim())?;
            let mut edits = Vec::new();
            let (mut old, mut new) = (String::new(), String::new());
            while let Some(next) = lines.peek().copied() {
                if next.starts_with("*** ") && next.trim_end() != "*** End of File" {
                    break;
                }
                lines.next();
                if next.starts_with("@@") || next.trim_end() == "*** End of File" {
                    if !old.is_empty() || !new.is_empty() {
                        edits.push(hunk(std::mem::take(&mut old), std::mem::take(&mut new))?);
                    }
                    continue;
                }
                let mut chars = next.chars();
                match (chars.next(), chars.as_str()) {
                    (Some(' '), text) => {
                        old.extend([text, "\n"]);
                        new.extend([text, "\n"]);
                    }
                    (Some('-'), text) => old.extend([text, "\n"]),
                    (Some('+'), text) => new.extend([text, "\n"]),
                    // An empty context line, as some models write it.
                    (None, _) => {
                        old.push('\n');
                        new.push('\n');
                    }
                    _ => return None,
                }
            }
            if !old.is_empty() || !new.is_empty() {
                edits.push(hunk(old, new)?);
            }
            if edits.is_empty() {
                return None;
            }
            changes.push(FileChange::Replace { path, edits });
        } else if let Some(path) = line.strip_prefix("*** Delete File: ") {
            changes.push(FileChange::Delete { path: in_project(project, workdir, path.trim())? });
        } else {
            // `*** Move to:`, or a line that is not the format's.
            return None;
        }
    }
    None
}

/// One hunk as a replacement: the old lines must be there to find where it goes.
fn hunk(old: String, new: String) -> Option<Replacement> {
    (!old.trim().is_empty()).then_some(Replacement { old, new, all: false, whole_lines: true })
}

/// Where Codex versions that wrote JSON outputs cut a command's output, silently.
const OLD_OUTPUT_MAX_BYTES: usize = 10 * 1024;
const OLD_OUTPUT_MAX_LINES: usize = 256;

/// `read_file`'s default line limit, and the length at which it cuts a line (bytes).
const READ_FILE_LIMIT: usize = 2000;
const READ_FILE_LINE_CUT: usize = 500;

impl PendingRead {
    /// What the call's output text showed of the file. A command that failed printed no
    /// single file, but a longer one may have printed some before it failed.
    fn file(self, output: &str, failed: bool) -> Shown {
        match self {
            PendingRead::Shell { view: Some(_), .. } | PendingRead::ReadFile { .. } if failed => Shown::Nothing,
            PendingRead::Shell { path, view } => {
                // Carriage returns: a terminal's output (`exec_command` with a tty) or a CRLF
                // file; either way not the file's lines as they are.
                let text = command_output(output).filter(|t| !t.contains('\r'));
                let content = view.zip(text).and_then(|(view, text)| view.whole_text(&text));
                match (path, content) {
                    (Some(path), Some(content)) => Shown::Whole(FileRead { path, content }),
                    _ => Shown::Part,
                }
            }
            PendingRead::ReadFile { path, limit } => {
                // An error comes back as a message, not as numbered lines.
                if !output.starts_with('L')
                    || output.split_once(": ").is_none_or(|(n, _)| n[1..].parse::<u64>().is_err())
                {
                    return Shown::Nothing;
                }
                let content = limit.and_then(|limit| numbered_lines(output, limit));
                match (path, content) {
                    (Some(path), Some(content)) => Shown::Whole(FileRead { path, content }),
                    _ => Shown::Part,
                }
            }
        }
    }
}

/// The file behind `read_file`'s output (`L1: text` lines), when it is all there: numbered
/// from 1 with no gap, fewer lines than the limit, and no line long enough to have been cut.
fn numbered_lines(output: &str, limit: usize) -> Option<String> {
    let mut text = String::with_capacity(output.len());
    let mut count = 0;
    for (i, line) in output.split('\n').enumerate() {
        let rest = line.strip_prefix(&format!("L{}: ", i + 1))?;
        // Cut at a character boundary: a cut line of multibyte text can be a few bytes short.
        if rest.len() + 3 >= READ_FILE_LINE_CUT {
            return None;
        }
        text.push_str(rest);
        text.push('\n');
        count += 1;
    }
    (count < limit).then_some(text)
}

/// The text a shell tool's command printed, from the output Codex gave the model: a JSON
/// text `{"output", "metadata"}` (older versions) or header lines (`Exit code: 0`, `Wall
/// time`, `Process exited with code 0`, `Chunk ID`, `Original token count`) and `Output:`.
/// None when Codex cut it (a `Total output lines:` header, a truncation notice; the older
/// versions cut each stream at 10 KiB or 256 lines without a word) or the command had not
/// finished.
fn command_output(output: &str) -> Option<String> {
    let body = match serde_json::from_str::<Value>(output) {
        Ok(v) => {
            let body = v["output"].as_str()?;
            if body.len() >= OLD_OUTPUT_MAX_BYTES || body.lines().count() >= OLD_OUTPUT_MAX_LINES {
                return None;
            }
            body.to_string()
        }
        Err(_) => {
            let (header, body) = output.split_once("Output:\n")?;
            let finished =
                header.lines().any(|l| l.starts_with("Exit code: ") || l.starts_with("Process exited with code "));
            if !finished || header.contains("Total output lines:") {
                return None;
            }
            body.to_string()
        }
    };
    const CUT: [&str; 5] =
        ["Total output lines:", "truncated output", "tokens truncated", "chars truncated", "[... omitted"];
    (!CUT.iter().any(|mark| body.contains(mark))).then_some(body)
}

/// A command's path as a path in the project: relative ones from the command's folder.
fn in_project(project: Option<&Path>, workdir: Option<&str>, path: &str) -> Option<String> {
    let full = match workdir {
        Some(dir) if !Path::new(path).is_absolute() => Path::new(dir).join(path),
        _ => PathBuf::from(path),
    };
    crate::path_in_project(project, full.to_str()?)
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

/// A tool's output as text: a text, a list of `input_text` items, or an object with
/// `content`.
fn output_text(output: &Value) -> String {
    match output {
        Value::Object(o) => o.get("content").map(|c| text_of(c, &["input_text", "text"])).unwrap_or_default(),
        other => text_of(other, &["input_text", "text"]),
    }
}

/// Whether a tool's output says it failed, and whether the user refused it: an object with
/// `success: false`, a refusal, or a shell result whose exit code is not 0 (a JSON text with
/// `metadata.exit_code` in older versions, an `Exit code: N` or `Process exited with code N`
/// line in newer ones).
fn output_verdict(output: &Value, text: &str) -> (bool, bool) {
    if output.get("success").and_then(Value::as_bool) == Some(false) {
        return (true, false);
    }
    let refused = ["rejected by user", "user rejected", "declined by user", "denied by the user"]
        .iter()
        .any(|p| text.contains(p));
    (refused || exit_code(text).is_some_and(|c| c != 0), refused)
}

/// The exit code a command's output reports: the older JSON's `metadata.exit_code`, or an
/// `Exit code: N` / `Process exited with code N` header.
fn exit_code(text: &str) -> Option<i64> {
    serde_json::from_str::<Value>(text).ok().and_then(|v| v["metadata"]["exit_code"].as_i64()).or_else(|| {
        text.lines()
            .find_map(|l| l.strip_prefix("Exit code: ").or_else(|| l.strip_prefix("Process exited with code ")))
            .and_then(|c| c.trim().parse::<i64>().ok())
    })
}
