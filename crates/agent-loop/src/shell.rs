//! `shell`: runs a command with `sh -c` in the workspace. Off unless the user opts in.
//!
//! The command gets a scrubbed environment (`PATH`, `HOME`, `LANG`, `LC_ALL`, `TERM`, a
//! private `TMPDIR`, and the variables the config allows: never the user's keys and tokens by
//! default), runs in its own process group so a timeout kills it and everything it started,
//! and its output is bounded. With a sandbox helper (the `skd` binary itself, see
//! [`crate::sandbox`]) it runs under Landlock: it may read everywhere but write only inside
//! the workspace (or nowhere, in a read-only run) and its own temporary folder.

use crate::sandbox::SANDBOX_ARG;
use async_trait::async_trait;
use serde_json::{Value, json};
use skill_core::{Tool, ToolOutput, ToolSpec};
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

/// Variables every command gets from skd's own environment (when set).
pub const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TERM"];

/// Settings of the shell tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellConfig {
    /// More variables passed through from skd's environment (the config's allow-list).
    pub env_allow: Vec<String>,
    /// Bytes of stdout and of stderr kept each; the rest is read and dropped.
    pub max_output_bytes: usize,
    /// The program that confines a command with Landlock before running it: called as
    /// `PROGRAM __sandbox [--write DIR]... -- sh -c COMMAND` (`None`: not confined).
    pub sandbox_program: Option<PathBuf>,
}

impl Default for ShellConfig {
    fn default() -> Self {
        ShellConfig { env_allow: Vec::new(), max_output_bytes: 32 * 1024, sandbox_program: None }
    }
}

/// The shell tool.
pub struct Shell {
    root: PathBuf,
    write: bool,
    config: ShellConfig,
}

impl Shell {
    /// Runs commands in `root`; `write` lets them write inside it.
    pub fn new(root: impl Into<PathBuf>, write: bool, config: ShellConfig) -> Self {
        Shell { root: root.into(), write, config }
    }

    /// The command line to spawn; `lookup` reads skd's environment (a map in tests).
    fn command(
        &self,
        command: &str,
        tmp: &Path,
        lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> tokio::process::Command {
        let mut cmd = match &self.config.sandbox_program {
            Some(program) => {
                let mut c = tokio::process::Command::new(program);
                c.arg(SANDBOX_ARG);
                if self.write {
                    c.arg("--write").arg(&self.root);
                }
                c.arg("--write").arg(tmp).arg("--").arg("sh").arg("-c").arg(command);
                c
            }
            None => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(command);
                c
            }
        };
        cmd.env_clear();
        for name in BASE_ENV.iter().copied().map(String::from).chain(self.config.env_allow.iter().cloned()) {
            if let Some(value) = lookup(&name) {
                cmd.env(name, value);
            }
        }
        cmd.env("TMPDIR", tmp);
        cmd.current_dir(&self.root)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }
}

/// Kills a process group when dropped: the loop's timeout drops the tool's future, and the
/// command's children must die with it, not only `sh`.
struct GroupGuard(Option<rustix::process::Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Reads a stream to its end, keeping the first `limit` bytes; the count of the rest.
async fn read_bounded(stream: Option<impl tokio::io::AsyncRead + Unpin>, limit: usize) -> (Vec<u8>, usize) {
    let Some(mut stream) = stream else { return (Vec::new(), 0) };
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                dropped += n.saturating_sub(room);
            }
        }
    }
    (kept, dropped)
}

fn shown(bytes: &[u8], dropped: usize) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if dropped > 0 {
        text.push_str(&format!("\n[... {dropped} more bytes not shown]"));
    }
    text
}

#[async_trait]
impl Tool for Shell {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "shell".into(),
            description: "Run a shell command in the workspace folder; returns exit code, stdout and stderr.".into(),
            parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"], "additionalProperties": false}),
        }
    }

    async fn call(&self, args: Value) -> skill_core::Result<ToolOutput> {
        let Some(command) = args.get("command").and_then(Value::as_str) else {
            return Ok(crate::tools::fail("missing string argument `command`"));
        };
        let tmp = match tempfile::Builder::new().prefix("skd-shell-").tempdir() {
            Ok(t) => t,
            Err(e) => return Ok(crate::tools::fail(format!("cannot make a temporary folder: {e}"))),
        };
        let mut child = match self.command(command, tmp.path(), |name| std::env::var_os(name)).spawn() {
            Ok(c) => c,
            Err(e) => return Ok(crate::tools::fail(format!("cannot run the command: {e}"))),
        };
        // process_group(0): the child's pid is its group's id.
        let _guard = GroupGuard(child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)));
        let limit = self.config.max_output_bytes;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let ((out, out_dropped), (err, err_dropped), status) =
            tokio::join!(read_bounded(stdout, limit), read_bounded(stderr, limit), child.wait());
        let status = match status {
            Ok(s) => s,
            Err(e) => return Ok(crate::tools::fail(format!("the command failed: {e}"))),
        };
        let code = status.code().map(|c| c.to_string()).unwrap_or_else(|| "killed".into());
        let text =
            format!("exit code {code}\nstdout:\n{}\nstderr:\n{}", shown(&out, out_dropped), shown(&err, err_dropped));
        Ok(ToolOutput { content: text, is_error: !status.success() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shell(root: &Path, config: ShellConfig) -> Shell {
        Shell::new(root, true, config)
    }

    #[tokio::test]
    async fn the_environment_is_scrubbed_and_the_allow_list_passes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let env: std::collections::HashMap<&str, &str> = [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home/someone"),
            ("OPENAI_API_KEY", "sk-should-never-reach-the-command"),
            ("GITHUB_TOKEN", "ghp_should_never_reach"),
            ("PROJECT_NAME", "harbour"),
        ]
        .into_iter()
        .collect();
        let config = ShellConfig { env_allow: vec!["PROJECT_NAME".into()], ..ShellConfig::default() };
        let mut cmd = shell(tmp.path(), config).command("env", tmp.path(), |n| env.get(n).map(|v| v.into()));
        let out = cmd.output().await.expect("run");
        let mut seen: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
        seen.sort();
        let tmpdir = format!("TMPDIR={}", tmp.path().display());
        let mut want =
            vec!["HOME=/home/someone".to_string(), "PATH=/usr/bin:/bin".into(), "PROJECT_NAME=harbour".into(), tmpdir];
        want.sort();
        // sh may add PWD, SHLVL and `_` of its own; nothing else gets in.
        seen.retain(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="));
        assert_eq!(seen, want);
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let tmp = tempfile::tempdir().expect("tmp");
        let config = ShellConfig { max_output_bytes: 100, ..ShellConfig::default() };
        let out = shell(tmp.path(), config).call(json!({"command": "yes x | head -c 50000"})).await.expect("call");
        assert!(out.content.contains("more bytes not shown"), "{}", out.content);
        assert!(out.content.len() < 400, "{}", out.content.len());
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let tmp = tempfile::tempdir().expect("tmp");
        let marker = tmp.path().join("still-running");
        // The command starts a grandchild that would write the marker after 2 s.
        let command = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let tool = shell(tmp.path(), ShellConfig::default());
        let timed = tokio::time::timeout(Duration::from_millis(300), tool.call(json!({"command": command}))).await;
        assert!(timed.is_err(), "the call was cut off");
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert!(!marker.exists(), "the grandchild was killed with its group");
    }
}
