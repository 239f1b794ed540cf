//! The run transcript: one JSON object per line, written as the run happens, so a crash
//! still leaves everything up to the last step. Its schema is documented in
//! `docs/transcript.md`; the nightly mining job reads these files.

use crate::protocol::{History, ReplyConstraint, SkillPlacement};
use crate::{Error, Result};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of the transcript schema, in every `start` event.
pub const TRANSCRIPT_SCHEMA_VERSION: u32 = 1;

/// A retrieved skill, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RetrievedSkill {
    /// Skill name.
    pub name: String,
    /// Retrieval score.
    pub score: f32,
}

/// A retrieved note section, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RetrievedNote {
    /// `path:start-end`.
    pub source: String,
    /// Heading path.
    pub heading_path: Vec<String>,
    /// Retrieval score.
    pub score: f32,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The model gave a final answer.
    Answered,
    /// The step budget ran out first.
    StepBudgetExhausted,
    /// The model backend failed (timeout, server down).
    ModelError,
}

/// A user's verdict on a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The run did what was asked.
    Good,
    /// It did not.
    Bad,
}

/// The loop's settings of a run, as the `start` event records them. `reply` is the protocol
/// the run used, which is the one asked for only where the student can take it (a student
/// without grammars gets free text).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RunSettings {
    /// The reply protocol used.
    pub reply: ReplyConstraint,
    /// Where the active skill's steps went.
    pub skill_placement: SkillPlacement,
    /// How earlier steps were shown.
    pub history: History,
    /// Tokens of free reasoning allowed a step.
    pub reasoning_tokens: u32,
    /// Tokens allowed for the action.
    pub action_tokens: u32,
    /// The words a reply with room for reasoning was started with.
    pub reasoning_opener: String,
    /// No answer taken before the active skill's first tool call.
    pub act_before_answer: bool,
    /// Skills shown in the catalog.
    pub catalog_size: usize,
    /// Note excerpts shown up front.
    pub notes_in_prompt: usize,
    /// A skill is activated without asking the model at this ratio to the runner-up...
    pub confident_ratio: f32,
    /// ...and at least this retrieval score.
    pub confident_min_score: f32,
    /// Observations are cut at this many characters.
    pub max_observation_chars: usize,
}

/// One line of the transcript.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began.
    Start {
        /// Transcript schema version.
        schema_version: u32,
        /// Unique id of the run (also the file name).
        run_id: String,
        /// RFC 3339 UTC time.
        time: String,
        /// The task as given.
        task: String,
        /// The student's model id.
        student: String,
        /// Step budget.
        max_steps: usize,
        /// Tools offered.
        tools: Vec<String>,
        /// How the loop was set up, so a run can be told apart from, and repeated like,
        /// another on the same model (absent in transcripts written before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settings: Option<RunSettings>,
    },
    /// What retrieval returned for the task.
    Retrieved {
        /// Skills, best first.
        skills: Vec<RetrievedSkill>,
        /// Note sections, best first.
        notes: Vec<RetrievedNote>,
    },
    /// A skill's instructions were loaded.
    SkillActivated {
        /// Step (0 = before the first model call).
        step: usize,
        /// Skill name.
        name: String,
        /// `requested` (--skill), `confident` (retrieval), or `tool` (the model asked).
        reason: String,
        /// blake3 of the SKILL.md used.
        content_hash: String,
        /// `allowed-tools` entries that could not be read (they allow nothing).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
    /// What the model is shown before its first step: the system prompt (rules, tools, the
    /// catalog or, by default, the active skill's steps) and the first user turn (the task,
    /// note excerpts, and the skill's steps with `--skill-placement user`).
    Prompt {
        /// The system prompt.
        system: String,
        /// The first user turn.
        user: String,
    },
    /// One model call.
    ModelCall {
        /// 1-based step.
        step: usize,
        /// True for the request that asks for the action alone after a reply without one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        correction: bool,
        /// Prompt tokens.
        prompt_tokens: u32,
        /// Generated tokens.
        completion_tokens: u32,
        /// Wall-clock milliseconds.
        elapsed_ms: u64,
        /// Backend's finish reason.
        finish_reason: String,
        /// What the model replied: its reasoning and the action line.
        output: String,
    },
    /// A reply that could not be used; the error went back to the model as an observation.
    InvalidReply {
        /// Step.
        step: usize,
        /// Why.
        error: String,
    },
    /// One tool call and its result.
    ToolCall {
        /// Step.
        step: usize,
        /// Tool name.
        tool: String,
        /// Arguments as given.
        arguments: serde_json::Value,
        /// False when the tool failed, timed out, was unknown or denied.
        ok: bool,
        /// True when the active skill's `allowed-tools` forbade it.
        denied: bool,
        /// The observation shown to the model (truncated as shown).
        output: String,
        /// Wall-clock milliseconds.
        elapsed_ms: u64,
    },
    /// The run was stopped before it finished (Ctrl-C), appended by the frontend.
    Aborted {
        /// RFC 3339 UTC time it was stopped.
        time: String,
        /// Why (`interrupted`).
        reason: String,
    },
    /// The user's verdict on the run, appended later by `skd feedback`.
    Feedback {
        /// RFC 3339 UTC time it was given.
        time: String,
        /// `good` or `bad`.
        verdict: Verdict,
        /// What the user said (for a bad run: what the answer should have been).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The run ended.
    Finish {
        /// How.
        outcome: Outcome,
        /// The final answer, if any.
        answer: Option<String>,
        /// Model calls made.
        steps: usize,
        /// Total prompt tokens.
        prompt_tokens: u64,
        /// Total generated tokens.
        completion_tokens: u64,
        /// Wall-clock milliseconds of the whole run.
        elapsed_ms: u64,
        /// The backend's error, for `model_error`.
        error: Option<String>,
    },
}

impl Event {
    /// The event with every string in it redacted, field by field: nothing can fail, so no
    /// event is ever passed on unredacted.
    pub fn redacted(mut self, redactor: &skill_core::redact::Redactor) -> Event {
        let clean = |s: &mut String| {
            if let std::borrow::Cow::Owned(c) = redactor.redact(s) {
                *s = c;
            }
        };
        match &mut self {
            Event::Start { schema_version: _, run_id, time, task, student, max_steps: _, tools, settings } => {
                [run_id, time, task, student].into_iter().for_each(clean);
                tools.iter_mut().for_each(clean);
                if let Some(settings) = settings {
                    clean(&mut settings.reasoning_opener);
                }
            }
            Event::Retrieved { skills, notes } => {
                skills.iter_mut().for_each(|s| clean(&mut s.name));
                for n in notes {
                    clean(&mut n.source);
                    n.heading_path.iter_mut().for_each(clean);
                }
            }
            Event::SkillActivated { step: _, name, reason, content_hash, warnings } => {
                [name, reason, content_hash].into_iter().for_each(clean);
                warnings.iter_mut().for_each(clean);
            }
            Event::Prompt { system, user } => [system, user].into_iter().for_each(clean),
            Event::ModelCall {
                step: _,
                correction: _,
                prompt_tokens: _,
                completion_tokens: _,
                elapsed_ms: _,
                finish_reason,
                output,
            } => [finish_reason, output].into_iter().for_each(clean),
            Event::InvalidReply { step: _, error } => clean(error),
            Event::ToolCall { step: _, tool, arguments, ok: _, denied: _, output, elapsed_ms: _ } => {
                [tool, output].into_iter().for_each(clean);
                redactor.redact_json(arguments);
            }
            Event::Aborted { time, reason } => [time, reason].into_iter().for_each(clean),
            Event::Feedback { time, verdict: _, note } => {
                clean(time);
                note.iter_mut().for_each(clean);
            }
            Event::Finish {
                outcome: _,
                answer,
                steps: _,
                prompt_tokens: _,
                completion_tokens: _,
                elapsed_ms: _,
                error,
            } => answer.iter_mut().chain(error.iter_mut()).for_each(clean),
        }
        self
    }
}

/// Appends events to a JSONL file. The agent redacts events where it makes them, so what
/// is written here is what every other view of the run showed.
pub struct TranscriptWriter {
    path: PathBuf,
    file: File,
}

impl std::fmt::Debug for TranscriptWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscriptWriter").field("path", &self.path).finish()
    }
}

impl TranscriptWriter {
    /// Creates `<dir>/<run_id>.jsonl`.
    pub fn create(dir: &Path, run_id: &str) -> Result<TranscriptWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(format!("{run_id}.jsonl"));
        let file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(TranscriptWriter { path, file })
    }

    /// Where the transcript is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event as one line, with the time it was written (`time`, RFC 3339 UTC,
    /// where the event has none of its own), and flushes it.
    pub fn write(&mut self, event: &Event) -> Result<()> {
        let mut value = serde_json::to_value(event).map_err(|e| Error::Config(format!("transcript: {e}")))?;
        if let Some(fields) = value.as_object_mut() {
            fields.entry("time").or_insert_with(|| skill_core::time::rfc3339(skill_core::time::now_unix()).into());
        }
        let mut line = serde_json::to_string(&value).map_err(|e| Error::Config(format!("transcript: {e}")))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|e| Error::io(&self.path, e))?;
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// Appends the user's verdict to a run's transcript (`skd feedback`).
pub fn append_feedback(
    path: &Path,
    verdict: Verdict,
    note: Option<String>,
    redactor: &skill_core::redact::Redactor,
) -> Result<()> {
    let time = skill_core::time::rfc3339(skill_core::time::now_unix());
    append_event(path, Event::Feedback { time, verdict, note }, redactor)
}

/// Appends an event to a run's transcript after the run (a verdict, an interruption),
/// redacted like every other event. The file must be a transcript (it is read first); a
/// last line cut short by a crash, which no reader can use, is cut off so the event starts
/// a line of its own.
pub fn append_event(path: &Path, event: Event, redactor: &skill_core::redact::Redactor) -> Result<()> {
    let read = read_lines(path)?;
    if !matches!(read.events.first(), Some(Event::Start { .. })) {
        return Err(Error::Config(format!("{}: not a run transcript (no `start` event)", path.display())));
    }
    let mut file = OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
    // After the last newline: a whole event (kept) gets its newline, a torn write is cut off.
    if read.torn_tail {
        file.set_len(read.whole_lines_len as u64).map_err(|e| Error::io(path, e))?;
    }
    let mut line =
        serde_json::to_string(&event.redacted(redactor)).map_err(|e| Error::Config(format!("transcript: {e}")))?;
    if read.unterminated_event {
        line.insert(0, '\n');
    }
    line.push('\n');
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
    file.write_all(line.as_bytes()).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// How an observation cut short ends: its last line starts with this mark (`[... 120 more
/// characters cut]` from the loop's limit, `[... the file goes on; ...]` from `read_file`).
pub const CUT_MARK: &str = "\n[... ";

/// Whether a tool's observation was cut short (so a `read_file` output is not the whole
/// file).
pub fn is_cut_observation(output: &str) -> bool {
    output.rfind(CUT_MARK).is_some_and(|at| !output[at + 1..].contains('\n') && output.ends_with(']'))
}

/// Reads a transcript back (for tests and the mining job). A last line without its newline
/// that does not parse is a write cut short by a crash (perhaps inside a multi-byte
/// character): it is left out, and everything before it is returned. A bad line anywhere else
/// is an error naming the file and line.
pub fn read_transcript(path: &Path) -> Result<Vec<Event>> {
    Ok(read_lines(path)?.events)
}

/// A transcript as read: its events, and what follows its last newline.
struct ReadTranscript {
    events: Vec<Event>,
    /// Bytes up to and including the last newline.
    whole_lines_len: usize,
    /// The last event had no newline after it (it is in `events`).
    unterminated_event: bool,
    /// Something that is no event follows the last newline: a write cut short.
    torn_tail: bool,
}

fn read_lines(path: &Path) -> Result<ReadTranscript> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let whole_lines_len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (body, tail) = bytes.split_at(whole_lines_len);
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = body[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::Config(format!("{}:{line}: not UTF-8 text", path.display()))
    })?;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(event) => events.push(event),
            Err(e) => return Err(Error::Config(format!("{}:{}: {e}", path.display(), i + 1))),
        }
    }
    let last = std::str::from_utf8(tail).ok().and_then(|t| serde_json::from_str::<Event>(t).ok());
    let unterminated_event = last.is_some();
    events.extend(last);
    Ok(ReadTranscript {
        events,
        whole_lines_len,
        unterminated_event,
        torn_tail: !tail.is_empty() && !unterminated_event,
    })
}

/// A transcript as a short text for a teacher to read: the task, the skill used, each tool
/// call with the start of its result, rejected replies, and how the run ended. Tool output is
/// clipped to `max_output` characters per call.
pub fn summarize(events: &[Event], max_output: usize) -> String {
    let clip = |text: &str| {
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if flat.chars().count() <= max_output {
            flat
        } else {
            format!("{}…", flat.chars().take(max_output).collect::<String>())
        }
    };
    let mut out = Vec::new();
    for event in events {
        match event {
            Event::Start { task, student, .. } => out.push(format!("Task: {task}\nModel: {student}")),
            Event::SkillActivated { name, reason, .. } => out.push(format!("Skill used: {name} ({reason})")),
            Event::InvalidReply { step, error } => out.push(format!("Step {step}: unusable reply: {}", clip(error))),
            Event::ToolCall { step, tool, arguments, ok, denied, output, .. } => {
                let status = if *denied {
                    "denied"
                } else if *ok {
                    "ok"
                } else {
                    "failed"
                };
                out.push(format!("Step {step}: {tool} {} -> {status}: {}", clip(&arguments.to_string()), clip(output)));
            }
            Event::Finish { outcome, answer, steps, error, .. } => {
                let how = match outcome {
                    Outcome::Answered => format!("answered {:?}", answer.as_deref().unwrap_or("")),
                    Outcome::StepBudgetExhausted => "ran out of steps".to_string(),
                    Outcome::ModelError => format!("model error: {}", error.as_deref().unwrap_or("unknown")),
                };
                out.push(format!("Outcome: {how} after {steps} steps"));
            }
            Event::Aborted { reason, .. } => out.push(format!("Aborted: {reason}")),
            Event::Feedback { verdict, note, .. } => out.push(format!(
                "The user's verdict: {}{}",
                if *verdict == Verdict::Good { "good" } else { "bad" },
                note.as_deref().map(|n| format!(" ({})", clip(n))).unwrap_or_default()
            )),
            Event::Retrieved { .. } | Event::Prompt { .. } | Event::ModelCall { .. } => {}
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RunSettings {
        RunSettings {
            reply: ReplyConstraint::TwoRequests,
            skill_placement: SkillPlacement::User,
            history: History::Folded,
            reasoning_tokens: 256,
            action_tokens: 160,
            reasoning_opener: "Let's think step by step.".into(),
            act_before_answer: true,
            catalog_size: 3,
            notes_in_prompt: 2,
            confident_ratio: 1.5,
            confident_min_score: 4.0,
            max_observation_chars: 2_000,
        }
    }

    #[test]
    fn a_start_line_keeps_its_settings_and_one_written_before_them_still_reads() {
        let with = r#"{"event":"start","schema_version":1,"run_id":"r","time":"2026-12-04T18:00:00Z","task":"t","student":"m@llama.cpp#0123456789ab","max_steps":8,"tools":[],"settings":{"reply":"free_text","skill_placement":"system","history":"chat","reasoning_tokens":64,"action_tokens":32,"reasoning_opener":"","act_before_answer":false,"catalog_size":5,"notes_in_prompt":0,"confident_ratio":2.0,"confident_min_score":1.0,"max_observation_chars":500}}"#;
        let event: Event = serde_json::from_str(with).expect("start with settings");
        let Event::Start { settings: Some(s), .. } = &event else { panic!("{event:?}") };
        assert_eq!(
            (s.reply, s.skill_placement, s.history),
            (ReplyConstraint::FreeText, SkillPlacement::System, History::Chat)
        );
        assert_eq!((s.reasoning_tokens, s.action_tokens, s.catalog_size, s.max_observation_chars), (64, 32, 5, 500));
        assert_eq!(serde_json::to_string(&event).expect("json"), with, "written back as read");
        let before = r#"{"event":"start","schema_version":1,"run_id":"r","time":"2026-12-04T18:00:00Z","task":"t","student":"m","max_steps":8,"tools":[]}"#;
        let old: Event = serde_json::from_str(before).expect("start without settings");
        assert!(matches!(old, Event::Start { settings: None, .. }), "{old:?}");
    }

    #[test]
    fn every_string_of_every_event_is_redacted() {
        let secret = "hunter2-correct-horse-battery";
        let r = skill_core::redact::Redactor::new().with_values([secret.to_string()]);
        let x = || format!("before {secret} after");
        let events = vec![
            Event::Start {
                schema_version: 1,
                run_id: x(),
                time: x(),
                task: x(),
                student: x(),
                max_steps: 1,
                tools: vec![x()],
                settings: Some(RunSettings { reasoning_opener: x(), ..settings() }),
            },
            Event::Retrieved {
                skills: vec![RetrievedSkill { name: x(), score: 1.0 }],
                notes: vec![RetrievedNote { source: x(), heading_path: vec![x()], score: 1.0 }],
            },
            Event::SkillActivated { step: 0, name: x(), reason: x(), content_hash: x(), warnings: vec![x()] },
            Event::Prompt { system: x(), user: x() },
            Event::ModelCall {
                step: 1,
                correction: false,
                prompt_tokens: 1,
                completion_tokens: 1,
                elapsed_ms: 1,
                finish_reason: x(),
                output: x(),
            },
            Event::InvalidReply { step: 1, error: x() },
            Event::ToolCall {
                step: 1,
                tool: x(),
                arguments: serde_json::json!({ x(): [x()] }),
                ok: true,
                denied: false,
                output: x(),
                elapsed_ms: 1,
            },
            Event::Finish {
                outcome: Outcome::Answered,
                answer: Some(x()),
                steps: 1,
                prompt_tokens: 1,
                completion_tokens: 1,
                elapsed_ms: 1,
                error: Some(x()),
            },
            Event::Feedback { time: x(), verdict: Verdict::Bad, note: Some(x()) },
        ];
        for event in events {
            let line = serde_json::to_string(&event.redacted(&r)).expect("json");
            assert!(!line.contains(secret), "{line}");
            assert!(line.contains("before [REDACTED] after"), "{line}");
        }
    }

    #[test]
    fn a_torn_last_line_is_left_out_and_other_bad_lines_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let good = r#"{"event":"invalid_reply","step":1,"error":"x"}"#;
        let torn = dir.path().join("torn.jsonl");
        std::fs::write(&torn, format!("{good}\n{good}\n{{\"event\":\"tool_ca")).expect("write");
        assert_eq!(super::read_transcript(&torn).expect("read").len(), 2);
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, format!("{good}\nnot json\n{good}\n")).expect("write");
        let err = super::read_transcript(&bad).expect_err("bad middle line").to_string();
        assert!(err.contains("bad.jsonl:2:"), "{err}");
        let bad_end = dir.path().join("bad_end.jsonl");
        std::fs::write(&bad_end, format!("{good}\nnot json\n")).expect("write");
        assert!(super::read_transcript(&bad_end).is_err(), "a whole bad last line is not a torn write");
        // Torn inside a multi-byte character: the lines before it are still read.
        let mid_char = dir.path().join("mid_char.jsonl");
        let mut bytes = format!("{good}\n{{\"event\":\"invalid_reply\",\"step\":2,\"error\":\"12 €").into_bytes();
        bytes.push(0xE2);
        std::fs::write(&mid_char, &bytes).expect("write");
        assert_eq!(super::read_transcript(&mid_char).expect("read").len(), 1);
        // A whole last event whose newline was not written is kept.
        let no_newline = dir.path().join("no_newline.jsonl");
        std::fs::write(&no_newline, format!("{good}\n{good}")).expect("write");
        assert_eq!(super::read_transcript(&no_newline).expect("read").len(), 2);
        // Bytes that are not UTF-8 in a whole line are an error naming the line.
        let latin1 = dir.path().join("latin1.jsonl");
        let mut bytes = format!("{good}\n{{\"event\":\"invalid_reply\",\"step\":2,\"error\":\"caf").into_bytes();
        bytes.extend_from_slice(b"\xe9\"}\n");
        std::fs::write(&latin1, &bytes).expect("write");
        let err = super::read_transcript(&latin1).expect_err("latin-1").to_string();
        assert!(err.contains("latin1.jsonl:2: not UTF-8"), "{err}");
    }

    #[test]
    fn feedback_is_appended_after_the_run_and_a_torn_tail_is_cut_first() {
        let dir = tempfile::tempdir().expect("tmp");
        let start = r#"{"event":"start","schema_version":1,"run_id":"r","time":"t","task":"Sum it","student":"m","max_steps":8,"tools":[]}"#;
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, format!("{start}\n{{\"event\":\"fini")).expect("write");
        let r = skill_core::redact::Redactor::new().with_values(["sk-live-secret-value".to_string()]);
        super::append_feedback(&path, Verdict::Bad, Some("it is 42, key sk-live-secret-value".into()), &r)
            .expect("append");
        let events = super::read_transcript(&path).expect("still a transcript");
        assert_eq!(events.len(), 2);
        assert!(
            matches!(&events[1], Event::Feedback { verdict: Verdict::Bad, note: Some(n), .. } if n == "it is 42, key [REDACTED]"),
            "{:?}",
            events[1]
        );
        // A last event whose newline was not written is kept, and the verdict follows it.
        let unterminated = dir.path().join("u.jsonl");
        std::fs::write(&unterminated, start).expect("write");
        super::append_feedback(&unterminated, Verdict::Good, None, &r).expect("append");
        let events = super::read_transcript(&unterminated).expect("read");
        assert!(
            matches!(events[..], [Event::Start { .. }, Event::Feedback { verdict: Verdict::Good, .. }]),
            "{events:?}"
        );
        let not_a_run = dir.path().join("x.jsonl");
        std::fs::write(&not_a_run, "{\"event\":\"invalid_reply\",\"step\":1,\"error\":\"x\"}\n").expect("write");
        assert!(super::append_feedback(&not_a_run, Verdict::Good, None, &r).is_err());
    }

    #[test]
    fn summaries_keep_task_skill_calls_and_outcome() {
        let events: Vec<super::Event> = [
            r#"{"event":"start","schema_version":1,"run_id":"r","time":"t","task":"What is in notes.txt?","student":"m","max_steps":8,"tools":[]}"#,
            r#"{"event":"retrieved","skills":[],"notes":[]}"#,
            r#"{"event":"skill_activated","step":0,"name":"read-secret","reason":"confident","content_hash":"h"}"#,
            r#"{"event":"model_call","step":1,"prompt_tokens":1,"completion_tokens":1,"elapsed_ms":1,"finish_reason":"stop","output":"{}"}"#,
            r#"{"event":"invalid_reply","step":1,"error":"not JSON"}"#,
            r#"{"event":"tool_call","step":2,"tool":"read_file","arguments":{"path":"notes.txt"},"ok":true,"denied":false,"output":"The secret word is heliotrope and a very long tail","elapsed_ms":0}"#,
            r#"{"event":"finish","outcome":"answered","answer":"heliotrope","steps":3,"prompt_tokens":1,"completion_tokens":1,"elapsed_ms":1,"error":null}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
        let text = super::summarize(&events, 20);
        assert_eq!(
            text,
            "Task: What is in notes.txt?\nModel: m\nSkill used: read-secret (confident)\nStep 1: unusable reply: not \
             JSON\nStep 2: read_file {\"path\":\"notes.txt\"} -> ok: The secret word is h…\nOutcome: answered \
             \"heliotrope\" after 3 steps"
        );
    }
}
