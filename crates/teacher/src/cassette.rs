//! Recorded teacher responses, for deterministic tests of the distillation loop.
//!
//! [`CassetteTeacher::record`] wraps a real teacher and writes every exchange to a JSON
//! file; [`CassetteTeacher::replay`] serves the recorded answers in order. Replay checks
//! that each request still asks what the recording asked (the opening of its last
//! message), so a loop that drifted from the recording fails with a clear message instead
//! of silently getting the wrong answer.

use crate::{Error, Result};
use async_trait::async_trait;
use skill_core::{Completion, CompletionRequest, Teacher, Usage};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Characters of the last message compared on replay.
const MATCH_CHARS: usize = 120;

/// One recorded exchange.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exchange {
    /// The request's last message (what was asked).
    pub asked: String,
    /// The answer text.
    pub text: String,
    /// Its token counts.
    pub usage: Usage,
    /// Why generation stopped.
    pub finish_reason: String,
}

/// A cassette file: the teacher's model id and the exchanges in order.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Cassette {
    /// The teacher that was recorded.
    pub model: String,
    /// Exchanges, in call order.
    pub exchanges: Vec<Exchange>,
}

enum Mode {
    Record(Arc<dyn Teacher>),
    Replay,
}

/// A teacher that records or replays a cassette.
pub struct CassetteTeacher {
    path: PathBuf,
    mode: Mode,
    cassette: Mutex<Cassette>,
    next: Mutex<usize>,
}

impl CassetteTeacher {
    /// Records `inner`'s answers to `path` (rewritten after every call).
    pub fn record(inner: Arc<dyn Teacher>, path: &Path) -> Self {
        let cassette = Cassette { model: inner.model_id().to_string(), exchanges: Vec::new() };
        CassetteTeacher {
            path: path.to_path_buf(),
            mode: Mode::Record(inner),
            cassette: Mutex::new(cassette),
            next: Mutex::new(0),
        }
    }

    /// Replays the cassette at `path`.
    pub fn replay(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cassette {}: {e} (record it first)", path.display())))?;
        let cassette: Cassette = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("cassette {}:{}: {e}", path.display(), e.line())))?;
        Ok(CassetteTeacher {
            path: path.to_path_buf(),
            mode: Mode::Replay,
            cassette: Mutex::new(cassette),
            next: Mutex::new(0),
        })
    }

    /// Calls answered so far.
    pub fn calls(&self) -> usize {
        *self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Skips the first `n` exchanges (a resumed run does not repeat finished calls).
    pub fn skip(&self, n: usize) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = n;
    }
}

fn asked(request: &CompletionRequest) -> String {
    request.messages.last().map(|m| m.content.clone()).unwrap_or_default()
}

fn opening(text: &str) -> String {
    text.chars().take(MATCH_CHARS).collect()
}

#[async_trait]
impl Teacher for CassetteTeacher {
    fn model_id(&self) -> &str {
        "cassette"
    }

    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        let question = asked(request);
        match &self.mode {
            Mode::Record(inner) => {
                let completion = inner.complete(request).await?;
                let mut cassette = self.cassette.lock().unwrap_or_else(|e| e.into_inner());
                cassette.exchanges.push(Exchange {
                    asked: question,
                    text: completion.text.clone(),
                    usage: completion.usage,
                    finish_reason: completion.finish_reason.clone(),
                });
                let json =
                    serde_json::to_vec_pretty(&*cassette).map_err(|e| skill_core::Error::backend("cassette", e))?;
                skill_core::fsutil::atomic_write(&self.path, &json)?;
                *self.next.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                Ok(completion)
            }
            Mode::Replay => {
                let index = {
                    let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
                    *next += 1;
                    *next - 1
                };
                let cassette = self.cassette.lock().unwrap_or_else(|e| e.into_inner());
                let Some(exchange) = cassette.exchanges.get(index) else {
                    return Err(skill_core::Error::backend(
                        "cassette",
                        format!(
                            "{}: call {} was never recorded (the cassette has {})",
                            self.path.display(),
                            index + 1,
                            cassette.exchanges.len()
                        ),
                    ));
                };
                if opening(&exchange.asked) != opening(&question) {
                    return Err(skill_core::Error::backend(
                        "cassette",
                        format!(
                            "{}: call {} asks something else than the recording (re-record it)\n  recorded: {:?}\n  now:      {:?}",
                            self.path.display(),
                            index + 1,
                            opening(&exchange.asked),
                            opening(&question)
                        ),
                    ));
                }
                Ok(Completion {
                    text: exchange.text.clone(),
                    usage: exchange.usage,
                    elapsed: Duration::ZERO,
                    finish_reason: exchange.finish_reason.clone(),
                })
            }
        }
    }
}
