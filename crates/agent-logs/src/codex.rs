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

use crate::harness::user_text;
use crate::jsonl::{read_jsonl, text_of};
use crate::{LogSource, Result, Session, Turn};
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
        let mut seen_meta = false;
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
                    // Codex reads files through its shell: no whole-file read is told apart.
                    session.turns.push(Turn::call(name));
                }
                ("response_item", "function_call_output" | "custom_tool_call_output") => {
                    let at = payload["call_id"].as_str().and_then(|id| calls.get(id)).copied();
                    if let Some(Turn::Tool { error, rejected, .. }) = at.and_then(|i| session.turns.get_mut(i)) {
                        let (failed, refused) = output_verdict(&payload["output"]);
                        *error = failed;
                        *rejected = refused;
                    }
                }
                _ => {}
            }
        }
        Ok(session)
    }
}

/// Whether a tool's output says it failed, and whether the user refused it. Codex writes
/// the output as text (shell results hold their exit code: a JSON text with
/// `metadata.exit_code` in older versions, an `Exit code: N` line in newer ones), as a list of
/// `input_text` items, or as an object with `success`.
fn output_verdict(output: &Value) -> (bool, bool) {
    let text = match output {
        Value::Object(o) if o.get("success").and_then(Value::as_bool) == Some(false) => return (true, false),
        Value::Object(o) => o.get("content").map(|c| text_of(c, &["input_text", "text"])).unwrap_or_default(),
        other => text_of(other, &["input_text", "text"]),
    };
    let refused = ["rejected by user", "user rejected", "declined by user", "denied by the user"]
        .iter()
        .any(|p| text.contains(p));
    let exit_code =
        serde_json::from_str::<Value>(&text).ok().and_then(|v| v["metadata"]["exit_code"].as_i64()).or_else(|| {
            text.lines().find_map(|l| l.strip_prefix("Exit code: ")).and_then(|c| c.trim().parse::<i64>().ok())
        });
    (refused || exit_code.is_some_and(|c| c != 0), refused)
}
