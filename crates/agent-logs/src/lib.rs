//! Agents' session logs as episodes.
//!
//! Each agent writes its sessions in its own format; a [`LogSource`] finds one agent's files
//! and reads one file into a [`Session`]: the user's messages (with the harness text agents
//! put in them removed), the assistant's replies, and the tool calls with their results.
//! [`episodes`] then cuts a session into [`Episode`]s, one per user task, and judges each
//! one's [`Outcome`] from what the user did next (a correction, an interruption, a rejected
//! tool call, a re-ask, thanks). [`EpisodeStore`] keeps what was read, with a watermark per
//! file, so a night reads only files that changed, and episodes outlive the logs they came
//! from (Claude Code deletes transcripts after 30 days by default).
//!
//! A new agent's format is one module: a type that implements [`LogSource`], added to
//! [`default_sources`].

mod claude;
mod codex;
mod episode;
mod error;
pub mod harness;
mod jsonl;
pub mod outcome;
mod pi;
mod shell;
mod skd;
mod store;

pub use claude::ClaudeCode;
pub use codex::Codex;
pub use episode::{
    Episode, EpisodeFilter, FileRead, FileWritten, MAX_EPISODE_READS, MAX_READ_BYTES, Outcome, OutcomeKind, SkillUse,
    ToolUse, episodes, parse_since,
};
pub use error::{Error, Result};
pub use jsonl::{Line, read_jsonl};
pub use pi::Pi;
pub use skd::SkdRuns;
pub use store::{EpisodeStore, Problem, ScanOptions, ScanReport};

use std::path::{Path, PathBuf};

/// One agent's logs: where its session files are and how to read one.
pub trait LogSource: Send + Sync {
    /// Short name, as episodes and `skd logs --source` spell it (`skd`, `pi`, `claude-code`,
    /// `codex`).
    fn name(&self) -> &'static str;
    /// The folders searched (shown to the user; they need not exist).
    fn roots(&self) -> Vec<PathBuf>;
    /// The session files under [`LogSource::roots`].
    fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for root in self.roots() {
            for entry in walkdir::WalkDir::new(&root).follow_links(false).into_iter().filter_map(|e| e.ok()) {
                if entry.file_type().is_file() && self.is_session_file(entry.path()) {
                    files.push(entry.into_path());
                }
            }
        }
        files.sort();
        files
    }
    /// Whether a file under a root is one of this agent's session files.
    fn is_session_file(&self, path: &Path) -> bool;
    /// Reads one session file. A torn last line is ignored; any other unreadable line is an
    /// error naming the file and line.
    fn read(&self, path: &Path) -> Result<Session>;
}

/// One session, in the terms every format shares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    /// The agent's id of the session (the file stem where it has none).
    pub id: String,
    /// The project folder the agent ran in.
    pub project: Option<PathBuf>,
    /// What happened, in order.
    pub turns: Vec<Turn>,
}

/// One thing that happened in a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// A message the user typed (harness text already removed; never empty).
    User {
        /// The text.
        text: String,
        /// RFC 3339 time, where the log has one.
        time: Option<String>,
    },
    /// Text the assistant wrote to the user.
    Assistant {
        /// The text.
        text: String,
    },
    /// A tool call and, when it came back, its result.
    Tool {
        /// The agent's tool name.
        name: String,
        /// True when the result was an error.
        error: bool,
        /// True when the user refused the call.
        rejected: bool,
        /// The whole text file the call read, when it was a file read that returned one (a
        /// mined agent case's workspace holds it).
        read: Option<FileRead>,
        /// The call read a file but not one to keep whole (part of it, an image, a file
        /// outside the project or holding secrets, a file a shell command printed where its
        /// output cannot be told whole): the task's files are not all known.
        partial_read: bool,
        /// The call may have changed files: a write or edit tool, or a shell command not
        /// known to only read. Files read after it may not be as the user had them.
        writes: bool,
        /// What the call did to files, where its arguments say it exactly (whole-file
        /// writes, exact-text replacements); empty for any other call, and for a change whose
        /// effect cannot be told from the call (a shell command, a patch that moves a file),
        /// which `writes` then marks.
        changes: Vec<FileChange>,
    },
    /// A model response: the tokens its call used (prompt, cache and output, as the log counts
    /// them) and when it came. What a task cost is summed from these.
    Model {
        /// Tokens, where the log counts them.
        tokens: Option<u64>,
        /// RFC 3339 time, where the log has one.
        time: Option<String>,
    },
    /// The user stopped the agent mid-turn.
    Interrupted,
    /// The user's verdict given afterwards (`skd feedback`).
    Feedback {
        /// True for `good`.
        good: bool,
        /// What the user said.
        note: Option<String>,
    },
    /// skd's own record of a run: its skill and how it ended (skd's transcripts only).
    SkdRun {
        /// The skill used.
        skill: Option<SkillUse>,
        /// The final answer.
        answer: Option<String>,
        /// skd's outcome (`answered`, `step_budget_exhausted`, `model_error`).
        outcome: String,
        /// Model calls made.
        steps: usize,
    },
}

impl Turn {
    /// A tool call whose result has not come back yet (readers fill in the rest when it does),
    /// with what the call alone tells: `edits` for the agent's file-changing tools, and a
    /// shell tool's command, which writes unless it is known to only read and whose printed
    /// file is not kept (a partial read: only Codex's reader checks such output).
    pub fn call(name: impl Into<String>, edits: bool, shell_command: Option<&str>) -> Turn {
        let shell = shell_command.map(shell::effect_of_script);
        Turn::Tool {
            name: name.into(),
            error: false,
            rejected: false,
            read: None,
            partial_read: shell.as_ref().is_some_and(|e| e.read.is_some()),
            writes: edits || shell.is_some_and(|e| e.may_write),
            changes: Vec::new(),
        }
    }

    /// [`Turn::call`] for a call that changes files, with the changes its arguments tell
    /// (empty: not known).
    pub fn call_changing(name: impl Into<String>, changes: Vec<FileChange>) -> Turn {
        let mut turn = Turn::call(name, true, None);
        if let Turn::Tool { changes: slot, .. } = &mut turn {
            *slot = changes;
        }
        turn
    }
}

/// A change a file tool made to one file, as its call's arguments give it.
#[derive(Debug, Clone, PartialEq)]
pub enum FileChange {
    /// The file's whole new text (Claude Code's `Write`, Pi's `write`, skd's `write_file`, a
    /// Codex patch's `Add File`).
    Whole {
        /// Its path inside the project folder, `/`-separated.
        path: String,
        /// The text written.
        content: String,
    },
    /// Exact-text replacements applied in order (Claude Code's `Edit` and `MultiEdit`, Pi's
    /// `edit`, a Codex patch's `Update File` hunks): the result is known only where the
    /// text before is.
    Replace {
        /// Its path inside the project folder, `/`-separated.
        path: String,
        /// The replacements.
        edits: Vec<Replacement>,
    },
    /// The file was deleted (a Codex patch's `Delete File`).
    Delete {
        /// Its path inside the project folder, `/`-separated.
        path: String,
    },
}

/// One exact-text replacement of a [`FileChange::Replace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// The text replaced (the agents' edit tools refuse one that is not found, or found more
    /// than once without `all`, and so does [`FileChange::apply`]).
    pub old: String,
    /// Its replacement.
    pub new: String,
    /// Every occurrence (Claude Code's `replace_all`), else the only one.
    pub all: bool,
    /// `old` is whole lines, found only from a line's start (a patch hunk's lines, which
    /// Codex matches line by line), not anywhere in a line.
    pub whole_lines: bool,
}

/// The argument names of an agent's write and edit tools.
pub(crate) struct EditArgs {
    /// The file's path.
    pub path: &'static str,
    /// A replacement's text before.
    pub old: &'static str,
    /// Its text after.
    pub new: &'static str,
    /// Every occurrence, where the tool has such a flag.
    pub all: Option<&'static str>,
}

impl EditArgs {
    /// What a write (`content`) or edit (one replacement, or `edits` of them) call does to its
    /// file, from its arguments.
    pub(crate) fn change(&self, args: &serde_json::Value, project: Option<&Path>) -> Option<FileChange> {
        let path = path_in_project(project, args[self.path].as_str()?)?;
        if let Some(content) = args["content"].as_str() {
            return Some(FileChange::Whole { path, content: content.to_string() });
        }
        let replacement = |edit: &serde_json::Value| {
            Some(Replacement {
                old: edit[self.old].as_str()?.to_string(),
                new: edit[self.new].as_str()?.to_string(),
                all: self.all.is_some_and(|flag| edit[flag].as_bool() == Some(true)),
                whole_lines: false,
            })
        };
        let edits = match args["edits"].as_array() {
            Some(edits) => edits.iter().map(replacement).collect::<Option<Vec<_>>>()?,
            None => vec![replacement(args)?],
        };
        Some(FileChange::Replace { path, edits })
    }
}

impl FileChange {
    /// The file's path.
    pub fn path(&self) -> &str {
        match self {
            FileChange::Whole { path, .. } | FileChange::Replace { path, .. } | FileChange::Delete { path } => path,
        }
    }

    /// The file's text after the change, given its text before (None: not known); None when
    /// it cannot be told (no text before, or a replaced text not in it) or there is none (a
    /// deletion).
    pub fn apply(&self, before: Option<&str>) -> Option<String> {
        match self {
            FileChange::Whole { content, .. } => Some(content.clone()),
            FileChange::Delete { .. } => None,
            FileChange::Replace { edits, .. } => {
                // A leading newline makes "found from a line's start" a plain search.
                let mut text = format!("\n{}", before?);
                for edit in edits {
                    let (old, new) = if edit.whole_lines {
                        (format!("\n{}", edit.old), format!("\n{}", edit.new))
                    } else {
                        (edit.old.clone(), edit.new.clone())
                    };
                    let found = if edit.old.is_empty() { 0 } else { text.matches(old.as_str()).count() };
                    if found == 0 || (found > 1 && !edit.all) {
                        return None;
                    }
                    text = text.replace(&old, &new);
                }
                Some(text[1..].to_string())
            }
        }
    }
}

/// The names of the sources [`default_sources`] makes.
pub const SOURCE_NAMES: &[&str] = &["skd", "pi", "claude-code", "codex"];

/// The sources found at each agent's default place (with the agent's own override of that
/// place honoured), plus skd's runs in `skd_runs`.
pub fn default_sources(skd_runs: PathBuf) -> Vec<Box<dyn LogSource>> {
    sources(skd_runs, &MoreLogDirs::default())
}

/// More places to read agents' logs from, beside their default ones: each folder as the
/// agent's own setting names it (`PI_CODING_AGENT_DIR`, `CLAUDE_CONFIG_DIR`, `CODEX_HOME`),
/// and for skd a runs folder. Another machine's copy, an old home, a second profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MoreLogDirs {
    /// More folders of skd run transcripts.
    pub skd: Vec<PathBuf>,
    /// More Pi agent folders (each with a `sessions/` folder).
    pub pi: Vec<PathBuf>,
    /// More Claude Code folders (each with a `projects/` folder).
    pub claude_code: Vec<PathBuf>,
    /// More Codex homes (each with `sessions/` and `archived_sessions/`).
    pub codex: Vec<PathBuf>,
}

/// [`default_sources`] and a source for each of `more`'s folders. A folder that is already
/// a source's (the same path, or the same folder through a link) is read once.
pub fn sources(skd_runs: PathBuf, more: &MoreLogDirs) -> Vec<Box<dyn LogSource>> {
    let mut all: Vec<Box<dyn LogSource>> = vec![
        Box::new(SkdRuns::new(skd_runs)),
        Box::new(Pi::from_env()),
        Box::new(ClaudeCode::from_env()),
        Box::new(Codex::from_env()),
    ];
    let more_sources = more
        .skd
        .iter()
        .map(|d| Box::new(SkdRuns::new(d.clone())) as Box<dyn LogSource>)
        .chain(more.pi.iter().map(|d| Box::new(Pi::new(d.clone())) as Box<dyn LogSource>))
        .chain(more.claude_code.iter().map(|d| Box::new(ClaudeCode::new(d.clone())) as Box<dyn LogSource>))
        .chain(more.codex.iter().map(|d| Box::new(Codex::new(d.clone())) as Box<dyn LogSource>));
    for source in more_sources {
        let roots: Vec<PathBuf> = source.roots().iter().map(|r| comparable(r)).collect();
        let known = all
            .iter()
            .any(|s| s.name() == source.name() && s.roots().iter().zip(&roots).all(|(a, b)| comparable(a) == *b));
        if !known {
            all.push(source);
        }
    }
    all
}

/// `path` with its `.` parts dropped and each `..` taking off the part before it, as written
/// (no link is followed): `config/skd/../../home/.codex` is `home/.codex`.
pub fn without_dots(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `path` with `.` and `..` taken out and the part of it that exists resolved through links,
/// so two spellings of one folder compare equal even where its last parts do not exist yet
/// (a Codex home without `archived_sessions`).
fn comparable(path: &Path) -> PathBuf {
    let lexical = without_dots(path);
    let mut existing = lexical.as_path();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return tail.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

/// `path` as a path inside `project`: a relative path as it is, an absolute one with the
/// project folder taken off. None when it leaves the project (an absolute path elsewhere, a
/// `..` part, `~`, Pi's `@` prefix), names nothing, or names a file that holds secrets by
/// its nature (keys, `.env`, credentials: redaction by shape cannot be trusted with them).
pub(crate) fn path_in_project(project: Option<&Path>, path: &str) -> Option<String> {
    use std::path::Component;
    if path.starts_with('~') || path.starts_with('@') {
        return None;
    }
    let p = Path::new(path);
    let rel = if p.is_absolute() { p.strip_prefix(project?).ok()? } else { p };
    let parts: Vec<String> = rel
        .components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(part) => part.to_str().map(str::to_string),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if parts.is_empty() || parts.iter().any(|part| holds_secrets(part)) {
        return None;
    }
    Some(parts.join("/"))
}

/// A file or folder name whose contents are secrets by their nature.
fn holds_secrets(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with(".env")
        || n.starts_with("id_rsa")
        || n.starts_with("id_ed25519")
        || n.starts_with("id_ecdsa")
        || n.starts_with("id_dsa")
        || n.starts_with("credentials")
        || [".ssh", ".aws", ".gnupg", ".netrc", ".npmrc", ".pypirc", ".git-credentials", ".docker"]
            .contains(&n.as_str())
        || [".pem", ".key", ".p12", ".pfx", ".keystore", ".jks"].iter().any(|ext| n.ends_with(ext))
}

/// An environment variable naming a folder, when it is set and not empty.
pub(crate) fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The home folder (`.` where there is none, so roots stay relative and simply do not exist).
pub(crate) fn home() -> PathBuf {
    dirs::home_dir().unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_hunk_is_found_from_a_line_s_start_and_an_edit_anywhere() {
        let edit = |whole_lines: bool| FileChange::Replace {
            path: "a.py".into(),
            edits: vec![Replacement { old: "x = 1\n".into(), new: "x = 2\n".into(), all: false, whole_lines }],
        };
        // Codex would not find the hunk's line in `max = 1`; an exact-text edit would.
        assert_eq!(edit(true).apply(Some("max = 1\n")), None);
        assert_eq!(edit(false).apply(Some("max = 1\n")).as_deref(), Some("max = 2\n"));
        assert_eq!(edit(true).apply(Some("y = 0\nx = 1\n")).as_deref(), Some("y = 0\nx = 2\n"));
        // Found twice without `all`: the agent's tool refuses, so the result is not known.
        assert_eq!(edit(false).apply(Some("x = 1\nx = 1\n")), None);
    }

    #[test]
    fn more_log_dirs_add_a_source_each_and_a_folder_already_read_is_not_added() {
        let tmp = tempfile::tempdir().expect("tmp");
        let runs = tmp.path().join("runs");
        let (a, b) = (tmp.path().join("pi-a"), tmp.path().join("codex-b"));
        let more = MoreLogDirs {
            skd: vec![runs.clone()],
            pi: vec![a.clone(), a.clone()],
            claude_code: Vec::new(),
            codex: vec![b.clone()],
        };
        let all = sources(runs, &more);
        let named: Vec<(&str, Vec<PathBuf>)> = all.iter().map(|s| (s.name(), s.roots())).collect();
        assert_eq!(named.len(), 6, "{named:?}");
        assert_eq!(named[4], ("pi", vec![a.join("sessions")]));
        assert_eq!(named[5], ("codex", vec![b.join("sessions"), b.join("archived_sessions")]));
    }

    #[test]
    fn one_folder_spelt_two_ways_compares_equal_where_its_last_parts_do_not_exist() {
        let tmp = tempfile::tempdir().expect("tmp");
        let home = tmp.path().join("home/.codex");
        std::fs::create_dir_all(home.join("sessions")).expect("mkdir");
        let other_spelling = tmp.path().join("config/skd/../../home/./.codex");
        // `archived_sessions` does not exist, and `config/skd` neither.
        assert_eq!(comparable(&other_spelling.join("archived_sessions")), comparable(&home.join("archived_sessions")));
        assert_eq!(comparable(&other_spelling.join("sessions")), comparable(&home.join("sessions")));
        assert_ne!(comparable(&home.join("sessions")), comparable(&home.join("archived_sessions")));
    }
}
