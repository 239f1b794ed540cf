//! Episodes: one per user task, cut from a [`Session`], each with its outcome.

use crate::outcome::{Verdict, is_reask, verdict};
use crate::{FileChange, Session, Turn};
use serde::{Deserialize, Serialize};
use skill_core::redact::Redactor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The longest answer kept (characters); agents' replies can be pages long.
const MAX_ANSWER_CHARS: usize = 2_000;

/// The largest file read kept (bytes, about 4,000 tokens): a mined case's workspace is for a
/// small local student, which could not take in a bigger one, and the episode store keeps
/// what is read from every session.
pub const MAX_READ_BYTES: usize = 16 * 1024;

/// Most file reads kept per episode, and most bytes of them all together.
pub const MAX_EPISODE_READS: usize = 4;
const MAX_EPISODE_READ_BYTES: usize = 32 * 1024;

/// One user task and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The log source (`skd`, `pi`, `claude-code`, `codex`).
    pub source: String,
    /// The session file it was read from.
    pub file: PathBuf,
    /// The session's id.
    pub session: String,
    /// When the task was asked (RFC 3339), where the log says.
    pub time: Option<String>,
    /// The project folder the agent ran in.
    pub project: Option<PathBuf>,
    /// The task, in the user's words.
    pub task: String,
    /// What the user said next about it (corrections, thanks, re-asks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_ups: Vec<String>,
    /// The tools called, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolUse>,
    /// The skill used (skd's runs: the activated skill and its content hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<SkillUse>,
    /// The agent's last answer to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// How it went, and why we think so.
    pub outcome: Outcome,
    /// Tokens its model calls used, summed as the log counts them (agents count differently:
    /// compare within one source). None where the log does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Seconds from the task to the agent's last response before the user spoke again (a
    /// thanks a day later is not the task's time), where the log has times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// The files the agent changed, as it left them, where every change to them is known
    /// (secrets redacted; at most [`MAX_EPISODE_READS`] files of [`MAX_READ_BYTES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub written: Vec<FileWritten>,
    /// The agent changed files in a way the log does not tell (a shell command that may
    /// write, a patch that moves a file, an edit of text not seen, a file past the limits):
    /// `written` is not all it did.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown_writes: bool,
}

/// A file an episode's agent changed, as it left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWritten {
    /// Its path inside the project folder, `/`-separated.
    pub path: String,
    /// Its text after the agent's last change.
    pub content: String,
    /// The agent's first change wrote it whole (a new file, or one replaced unread), so its
    /// text before does not matter to the task.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    /// The agent's last change deleted it (`content` is empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// A tool call of an episode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolUse {
    /// The agent's tool name.
    pub name: String,
    /// Its result was an error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error: bool,
    /// The whole text file it read, when it was a file read (secrets redacted; at most
    /// [`MAX_READ_BYTES`], and [`MAX_EPISODE_READS`] files an episode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<FileRead>,
    /// It read a file that is not kept: part of one, an image, one outside the project or
    /// holding secrets, or one past the limits above. The task's files are not all known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial_read: bool,
    /// It may have changed files (a write or edit tool, a shell command not known to only
    /// read): files read after it may not be as the user had them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writes: bool,
}

/// A whole text file a tool read, as the tool returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRead {
    /// Its path inside the project folder, `/`-separated (never absolute, never `..`).
    pub path: String,
    /// The file's text.
    pub content: String,
}

/// A skill an episode used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillUse {
    /// Skill name.
    pub name: String,
    /// blake3 of the SKILL.md used.
    pub content_hash: String,
}

/// How an episode went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The user accepted the result, or skd answered and no one objected.
    Success,
    /// The user corrected, interrupted, refused a tool call or asked again; or skd's run
    /// ended without an answer.
    Failure,
    /// Nothing said either way.
    Unknown,
}

impl OutcomeKind {
    /// Its name, as JSON spells it (`success`, `failure`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Success => "success",
            OutcomeKind::Failure => "failure",
            OutcomeKind::Unknown => "unknown",
        }
    }
}

/// An outcome and its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Which way it went.
    pub kind: OutcomeKind,
    /// What shows it (`the user: "no, the total is 412"`, `interrupted by the user`, ...).
    pub evidence: String,
    /// The user's correction, word for word: the best reference a failed case has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
}

impl Episode {
    /// An episode of `task` read from `file`, with nothing else known yet: no time, tools,
    /// skill or answer, and an unknown outcome (callers that know more set those fields).
    pub fn new(source: &str, file: impl Into<PathBuf>, session: &str, task: &str) -> Episode {
        Episode {
            source: source.into(),
            file: file.into(),
            session: session.into(),
            time: None,
            project: None,
            task: task.into(),
            follow_ups: Vec::new(),
            tools: Vec::new(),
            skill: None,
            answer: None,
            outcome: Outcome { kind: OutcomeKind::Unknown, evidence: String::new(), correction: None },
            tokens: None,
            seconds: None,
            written: Vec::new(),
            unknown_writes: false,
        }
    }

    /// When it was asked, where the log says and the time reads as RFC 3339.
    pub fn timestamp(&self) -> Option<jiff::Timestamp> {
        self.time.as_deref().and_then(|t| t.parse().ok())
    }
}

/// Which episodes a listing shows.
#[derive(Debug, Clone, Default)]
pub struct EpisodeFilter {
    /// Only these sources (empty: all).
    pub sources: Vec<String>,
    /// Only episodes asked at or after this time (episodes without a time are left out).
    pub since: Option<jiff::Timestamp>,
}

impl EpisodeFilter {
    /// Whether `episode` passes.
    pub fn matches(&self, episode: &Episode) -> bool {
        (self.sources.is_empty() || self.sources.contains(&episode.source))
            && self.since.is_none_or(|since| episode.timestamp().is_some_and(|t| t >= since))
    }
}

/// Reads `--since`: an RFC 3339 time, or a date (midnight UTC).
pub fn parse_since(text: &str) -> Option<jiff::Timestamp> {
    text.parse::<jiff::Timestamp>().ok().or_else(|| {
        let date: jiff::civil::Date = text.parse().ok()?;
        jiff::tz::Offset::UTC.to_timestamp(date.at(0, 0, 0, 0)).ok()
    })
}

impl Outcome {
    fn unknown() -> Self {
        Outcome { kind: OutcomeKind::Unknown, evidence: String::new(), correction: None }
    }
}

/// An episode being built.
struct Open {
    episode: Episode,
    /// A failure is final: later thanks (after the fix) do not undo the need for one.
    failed: bool,
    /// Each file's text as the log last showed it (read or written), unredacted: an edit's
    /// result is worked out from it.
    known: HashMap<String, String>,
    /// The user has spoken since the task (thanks, a correction): the time after that is
    /// theirs, not the task's, so `seconds` stops growing.
    clock_stopped: bool,
}

impl Open {
    /// Records what a call that changed files did: the file as it now is where the change
    /// is known, else that the episode's files are not all known.
    fn track_change(&mut self, change: &FileChange, clean: &dyn Fn(&str) -> String) {
        let path = change.path();
        if let FileChange::Delete { .. } = change {
            self.known.remove(path);
            let written = &mut self.episode.written;
            let room = written.len() < MAX_EPISODE_READS;
            match written.iter_mut().find(|w| w.path == path) {
                Some(w) => (w.content, w.deleted) = (String::new(), true),
                None if room => written.push(FileWritten {
                    path: path.to_string(),
                    content: String::new(),
                    created: false,
                    deleted: true,
                }),
                None => self.forget_written(path),
            }
            return;
        }
        let Some(after) = change.apply(self.known.get(path).map(String::as_str)) else {
            self.known.remove(path);
            self.forget_written(path);
            return;
        };
        let fits = after.len() <= MAX_READ_BYTES;
        self.known.insert(path.to_string(), after.clone());
        let written = &mut self.episode.written;
        let room = written.len() < MAX_EPISODE_READS;
        match written.iter_mut().find(|w| w.path == path) {
            Some(w) if fits => (w.content, w.deleted) = (clean(&after), false),
            None if fits && room => written.push(FileWritten {
                path: path.to_string(),
                content: clean(&after),
                created: matches!(change, FileChange::Whole { .. }),
                deleted: false,
            }),
            _ => self.forget_written(path),
        }
    }

    /// A file whose state is no longer known: out of `written`, and the episode's files are
    /// not all known.
    fn forget_written(&mut self, path: &str) {
        self.episode.written.retain(|w| w.path != path);
        self.episode.unknown_writes = true;
    }

    fn fail(&mut self, evidence: String, correction: Option<String>) {
        if !self.failed {
            self.failed = true;
            self.episode.outcome = Outcome { kind: OutcomeKind::Failure, evidence, correction };
        } else if self.episode.outcome.correction.is_none() {
            // The first failure is the evidence; a correction given later is still the reference.
            self.episode.outcome.correction = correction;
        }
    }
    fn succeed(&mut self, evidence: String) {
        if !self.failed {
            self.episode.outcome = Outcome { kind: OutcomeKind::Success, evidence, correction: None };
        }
    }
}

/// Cuts a session into episodes. A user message starts a new episode unless it is a verdict
/// on the open one (a correction, thanks) or asks for the same thing again; interruptions
/// and refused tool calls fail the open episode; a tool error the agent recovered from does
/// not. Every string is passed through `redactor` (other agents' logs hold keys and tokens).
pub fn episodes(source: &str, file: &Path, session: &Session, redactor: &Redactor) -> Vec<Episode> {
    let mut done = Vec::new();
    let mut open: Option<Open> = None;
    let clean = |s: &str| redactor.redact(s).into_owned();
    for turn in &session.turns {
        match turn {
            Turn::User { text, time } => {
                let text = clean(text);
                if let Some(o) = &mut open {
                    match verdict(&text) {
                        Verdict::Correction => {
                            o.fail(format!("the user: {}", quote(&text)), Some(text.clone()));
                            o.episode.follow_ups.push(text);
                            o.clock_stopped = true;
                            continue;
                        }
                        Verdict::Acceptance => {
                            o.succeed(format!("the user: {}", quote(&text)));
                            o.episode.follow_ups.push(text);
                            o.clock_stopped = true;
                            continue;
                        }
                        Verdict::None if is_reask(&o.episode.task, &text) => {
                            o.fail(format!("asked again: {}", quote(&text)), None);
                            o.episode.follow_ups.push(text);
                            o.clock_stopped = true;
                            continue;
                        }
                        Verdict::None => {}
                    }
                }
                done.extend(open.take().map(|o| o.episode));
                open = Some(Open {
                    episode: Episode {
                        source: source.to_string(),
                        file: file.to_path_buf(),
                        session: session.id.clone(),
                        time: time.clone(),
                        project: session.project.clone(),
                        task: text,
                        follow_ups: Vec::new(),
                        tools: Vec::new(),
                        skill: None,
                        answer: None,
                        outcome: Outcome::unknown(),
                        tokens: None,
                        seconds: None,
                        written: Vec::new(),
                        unknown_writes: false,
                    },
                    failed: false,
                    known: HashMap::new(),
                    clock_stopped: false,
                });
            }
            // Before the first task (a harness preamble) nothing is recorded.
            _ if open.is_none() => {}
            Turn::Assistant { text } => {
                if let Some(o) = &mut open
                    && !text.trim().is_empty()
                {
                    o.episode.answer = Some(clip(&clean(text)));
                }
            }
            Turn::Tool { name, error, rejected, read, partial_read, writes, changes } => {
                if let Some(o) = &mut open {
                    // A command that failed may have written before it failed (`sed -i ..; grep
                    // -q ..`); an edit tool that failed changed nothing.
                    if *writes && changes.is_empty() && !*rejected {
                        o.episode.unknown_writes = true;
                    }
                    if !*error && !*rejected {
                        if let Some(r) = read {
                            o.known.insert(r.path.clone(), r.content.clone());
                        }
                        for change in changes {
                            o.track_change(change, &clean);
                        }
                    }
                    let kept: Vec<&FileRead> = o.episode.tools.iter().filter_map(|t| t.read.as_ref()).collect();
                    let kept_bytes: usize = kept.iter().map(|r| r.content.len()).sum();
                    // A path read again is kept once (its first read is the file as found).
                    let read = read.as_ref().filter(|r| !*error && !kept.iter().any(|k| k.path == r.path));
                    let fits = |r: &&FileRead| {
                        r.content.len() <= MAX_READ_BYTES
                            && kept.len() < MAX_EPISODE_READS
                            && kept_bytes + r.content.len() <= MAX_EPISODE_READ_BYTES
                    };
                    // A whole file too big to keep leaves the task's files as unknown as a
                    // partial read does.
                    let partial_read = *partial_read || read.is_some_and(|r| !fits(&r));
                    let read = read.filter(fits).map(|r| FileRead { path: r.path.clone(), content: clean(&r.content) });
                    o.episode.tools.push(ToolUse {
                        name: name.clone(),
                        error: *error,
                        read,
                        partial_read,
                        writes: *writes,
                    });
                    if *rejected {
                        o.fail(format!("the user refused a {name} call"), None);
                    }
                }
            }
            Turn::Model { tokens, time } => {
                if let Some(o) = &mut open {
                    if let Some(t) = tokens {
                        o.episode.tokens = Some(o.episode.tokens.unwrap_or(0).saturating_add(*t));
                    }
                    let at = |t: Option<&str>| t.and_then(|t| t.parse::<jiff::Timestamp>().ok());
                    if let (Some(start), Some(now), false) =
                        (at(o.episode.time.as_deref()), at(time.as_deref()), o.clock_stopped)
                    {
                        let seconds = u64::try_from(now.as_second() - start.as_second()).unwrap_or(0);
                        o.episode.seconds = Some(o.episode.seconds.unwrap_or(0).max(seconds));
                    }
                }
            }
            Turn::Interrupted => {
                if let Some(o) = &mut open {
                    o.fail("interrupted by the user".into(), None);
                }
            }
            Turn::Feedback { good, note } => {
                if let Some(o) = &mut open {
                    let note = note.as_deref().map(clean);
                    let said = note.as_deref().map(|n| format!(": {}", quote(n))).unwrap_or_default();
                    if *good {
                        o.succeed(format!("skd feedback: good{said}"));
                    } else {
                        o.fail(format!("skd feedback: bad{said}"), note.clone());
                    }
                    o.episode.follow_ups.extend(note);
                }
            }
            Turn::SkdRun { skill, answer, outcome, steps } => {
                if let Some(o) = &mut open {
                    o.episode.skill = skill.clone();
                    o.episode.answer = answer.as_deref().map(|a| clip(&clean(a)));
                    if outcome == "answered" {
                        o.succeed(format!("skd: answered in {steps} steps"));
                    } else {
                        o.fail(format!("skd: {}", outcome.replace('_', " ")), None);
                    }
                }
            }
        }
    }
    done.extend(open.map(|o| o.episode));
    done
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_ANSWER_CHARS {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX_ANSWER_CHARS).collect::<String>())
    }
}

fn quote(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = flat.chars().take(120).collect();
    if short.len() < flat.len() { format!("\"{short}…\"") } else { format!("\"{short}\"") }
}
