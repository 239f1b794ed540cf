//! [`OpenAiTeacher`]: chat completions through async-openai, with retries and accounting.

use crate::{Error, Result};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    CreateChatCompletionRequest, CreateChatCompletionResponse, FinishReason, StopConfiguration,
};
use async_trait::async_trait;
use skill_core::{Completion, CompletionRequest, Teacher, Usage};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When and how often to try again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled each time.
    pub initial_backoff: Duration,
    /// Upper bound on one wait.
    pub max_backoff: Duration,
    /// Attempts that may end in a timeout, at most (within `max_attempts`). Each waits the
    /// request's whole timeout, and a slow server that timed out is usually still busy with
    /// the first request: a teacher that hangs costs this many timeouts, not `max_attempts`
    /// (counted over the whole request, not in a row; 0 acts as 1).
    pub max_timed_out_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            max_timed_out_attempts: 2,
        }
    }
}

/// Price per million tokens, to report a run's cost (0 for local servers).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Prices {
    /// USD per 1M prompt tokens.
    pub input_per_million: f64,
    /// USD per 1M completion tokens.
    pub output_per_million: f64,
}

impl Prices {
    /// USD for `prompt` and `completion` tokens.
    pub fn cost_usd(&self, prompt: u64, completion: u64) -> f64 {
        prompt as f64 * self.input_per_million / 1e6 + completion as f64 * self.output_per_million / 1e6
    }
}

/// Tokens, requests and cost so far.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct UsageTotals {
    /// Successful requests.
    pub requests: u64,
    /// Attempts repeated by this crate (timeouts, unusable bodies); async-openai's own
    /// retries of 429/5xx/refused connections are not visible here.
    pub retries: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// USD, from [`Prices`].
    pub cost_usd: f64,
}

/// Where the teacher is and who it is.
#[derive(Clone, PartialEq)]
pub struct OpenAiTeacherConfig {
    /// Base URL including `/v1` (default `https://api.openai.com/v1`).
    pub base_url: String,
    /// Model name as the endpoint knows it.
    pub model: String,
    /// API key; `None` for local servers that need none.
    pub api_key: Option<String>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Prices for cost accounting.
    pub prices: Prices,
}

impl std::fmt::Debug for OpenAiTeacherConfig {
    // The key is never printed, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiTeacherConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("retry", &self.retry)
            .field("prices", &self.prices)
            .finish()
    }
}

impl OpenAiTeacherConfig {
    /// A config for `model` at `base_url`.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiTeacherConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            retry: RetryPolicy::default(),
            prices: Prices::default(),
        }
    }

    /// From `OPENAI_BASE_URL` (default OpenAI), `OPENAI_API_KEY` and `model`.
    pub fn from_env(model: impl Into<String>) -> Self {
        let base_url = std::env::var("OPENAI_BASE_URL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "https://api.openai.com/v1".into());
        let mut config = Self::new(base_url, model);
        config.api_key = std::env::var("OPENAI_API_KEY").ok().filter(|s| !s.trim().is_empty());
        config
    }
}

/// A teacher behind an OpenAI-compatible chat completions endpoint.
pub struct OpenAiTeacher {
    client: Client<OpenAIConfig>,
    config: OpenAiTeacherConfig,
    totals: Mutex<UsageTotals>,
}

impl std::fmt::Debug for OpenAiTeacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiTeacher").field("config", &self.config).finish()
    }
}

impl OpenAiTeacher {
    /// A teacher from its configuration.
    pub fn new(config: OpenAiTeacherConfig) -> Result<Self> {
        if config.model.trim().is_empty() {
            return Err(Error::Config("no teacher model: set `teacher.model` or pass --teacher-model".into()));
        }
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "base URL must start with http:// or https://, got `{}`",
                config.base_url
            )));
        }
        let mut openai = OpenAIConfig::new().with_api_base(config.base_url.trim_end_matches('/'));
        // Local servers take any key; sending an empty one keeps headers well-formed.
        openai = openai.with_api_key(config.api_key.clone().unwrap_or_default());
        Ok(OpenAiTeacher { client: Client::with_config(openai), config, totals: Mutex::new(UsageTotals::default()) })
    }

    /// Tokens, retries and cost so far.
    pub fn totals(&self) -> UsageTotals {
        *self.totals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoint's base URL.
    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    fn build_request(&self, request: &CompletionRequest) -> Result<CreateChatCompletionRequest> {
        let messages = skill_core::openai::chat_messages(&request.messages)
            .map_err(|e| Error::Config(format!("building the request: {e}")))?;
        let mut body = CreateChatCompletionRequest {
            model: self.config.model.clone(),
            messages,
            temperature: Some(request.temperature.unwrap_or(0.0)),
            ..Default::default()
        };
        // OpenAI's newer models refuse `max_tokens`; most compatible servers only know it.
        if self.config.base_url.contains("api.openai.com") {
            body.max_completion_tokens = Some(request.max_tokens);
        } else {
            #[allow(deprecated)]
            {
                body.max_tokens = Some(request.max_tokens);
            }
        }
        if !request.stop.is_empty() {
            body.stop = Some(StopConfiguration::StringArray(request.stop.clone()));
        }
        Ok(body)
    }

    fn record(&self, usage: Usage, retries: u64) {
        let mut t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        t.requests += 1;
        t.retries += retries;
        t.prompt_tokens += u64::from(usage.prompt_tokens);
        t.completion_tokens += u64::from(usage.completion_tokens);
        t.cost_usd += self.config.prices.cost_usd(u64::from(usage.prompt_tokens), u64::from(usage.completion_tokens));
    }

    fn endpoint_error(&self, message: String) -> Error {
        Error::Endpoint { endpoint: self.config.base_url.clone(), message }
    }
}

/// Whether a failed attempt is worth repeating here, and how to describe it.
///
/// async-openai's own retry layer already repeats 429s (honouring `Retry-After`), 5xx
/// answers and refused connections, up to 3 times with backoff; repeating those again here
/// would multiply the attempts. This loop adds what that layer does not cover: attempts
/// that hang past the request's timeout, and 200 answers whose body is not a completion.
fn classify(err: &OpenAIError) -> (bool, String) {
    match err {
        OpenAIError::ApiError(resp) => {
            let status = resp.status_code.as_u16();
            let retried = status == 429 || status >= 500;
            let note = if retried { " (after async-openai's retries)" } else { "" };
            (false, format!("HTTP {}: {}{note}", status, resp.api_error.message))
        }
        OpenAIError::Reqwest(e) => {
            let what = if e.is_connect() {
                "connection failed (is the server running? check the base URL)"
            } else if e.is_timeout() {
                "timed out"
            } else {
                "request failed"
            };
            (e.is_timeout() || e.is_body(), format!("{what}: {e}"))
        }
        // A 200 with a body that is not a chat completion: usually a proxy's error page, or
        // a server cut off mid-answer. Retrying is cheap and often enough.
        OpenAIError::JSONDeserialize(e, body) => {
            (true, format!("the response is not a chat completion ({e}); body starts: {:?}", excerpt(body, 200)))
        }
        other => (false, other.to_string()),
    }
}

fn excerpt(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[async_trait]
impl Teacher for OpenAiTeacher {
    fn model_id(&self) -> &str {
        &self.config.model
    }

    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        let body = self.build_request(request)?;
        let policy = self.config.retry;
        let started = Instant::now();
        let mut backoff = policy.initial_backoff;
        let mut last_problem = String::new();
        let attempts = policy.max_attempts.max(1);
        let mut timed_out = 0;
        let mut made = 0;
        for attempt in 1..=attempts {
            made = attempt;
            let chat = self.client.chat();
            let call = chat.create(body.clone());
            let (retry, problem) = match tokio::time::timeout(request.timeout, call).await {
                Ok(Ok(response)) => return Ok(self.finish(response, started, u64::from(attempt - 1))?),
                Ok(Err(e)) => classify(&e),
                Err(_) => {
                    timed_out += 1;
                    (
                        timed_out < policy.max_timed_out_attempts,
                        format!("no answer within {:.0} s", request.timeout.as_secs_f64()),
                    )
                }
            };
            last_problem = problem;
            if !retry || attempt == attempts {
                break;
            }
            tracing::warn!(attempt, problem = %last_problem, "teacher request failed; retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
        let attempts_note = if made > 1 { format!(" (gave up after {made} attempts)") } else { String::new() };
        Err(self.endpoint_error(format!("{last_problem}{attempts_note}")).into())
    }
}

impl OpenAiTeacher {
    fn finish(&self, response: CreateChatCompletionResponse, started: Instant, retries: u64) -> Result<Completion> {
        let usage = response
            .usage
            .as_ref()
            .map(|u| Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens })
            .unwrap_or_default();
        let choice = response
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| self.endpoint_error("the response has no choices".into()))?;
        self.record(usage, retries);
        let finish_reason = match choice.finish_reason {
            Some(FinishReason::Stop) => "stop",
            Some(FinishReason::Length) => "length",
            Some(FinishReason::ContentFilter) => "content_filter",
            Some(FinishReason::ToolCalls) | Some(FinishReason::FunctionCall) => "tool_calls",
            None => "unknown",
        };
        Ok(Completion {
            text: choice.message.content.unwrap_or_default(),
            usage,
            elapsed: started.elapsed(),
            finish_reason: finish_reason.to_string(),
        })
    }
}
