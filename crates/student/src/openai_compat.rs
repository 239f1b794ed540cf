//! [`OpenAiCompatStudent`]: any server that speaks OpenAI's `/v1/chat/completions`.

use async_openai::types::chat::{
    CreateChatCompletionRequest, CreateChatCompletionResponse, FinishReason, ResponseFormat, ResponseFormatJsonSchema,
    StopConfiguration,
};
use async_trait::async_trait;
use serde_json::{Value, json};
use skill_core::{Completion, CompletionRequest, Student, Usage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// A student behind an OpenAI-compatible endpoint: Ollama, llama.cpp's server, vLLM, or
/// `skd serve`. JSON-schema constraints are sent as `response_format: json_schema`, which
/// these servers implement with grammar-constrained decoding. Lark grammars go as
/// `grammar: {"type": "lark", "value": ...}`, the field mistral.rs's server (and so `skd
/// serve`) reads; a server that refuses the field (HTTP 400 or 422) is asked again without
/// it, and from then on this student reports that it does not enforce grammars, so the agent
/// loop reads its free text instead.
///
/// A request whose last message is the assistant's asks the server to continue that message
/// (vLLM's `continue_final_message`; llama.cpp's server and `skd serve` continue it anyway).
/// Whether the server does is not part of OpenAI's API, so this student claims it
/// ([`Student::continues_reply`], which the agent loop's two-request reply needs) only after
/// [`discover`](Self::discover) read it from the server's model listing (`skd serve` lists
/// `"continue_final_message": true` for a model that continues; vLLM, SGLang and llama.cpp's
/// server are known by their `owned_by`) or the user said so
/// ([`with_continued_replies`](Self::with_continued_replies)).
#[derive(Clone)]
pub struct OpenAiCompatStudent {
    client: reqwest::Client,
    base_url: String,
    model: String,
    api_key: Option<String>,
    grammar_accepted: Arc<AtomicBool>,
    continues: Arc<AtomicBool>,
    /// What the server says it serves under `model` (its listing's `root`: `skd serve` gives
    /// the weights file and engine), so two servers both answering to "default" are told
    /// apart wherever results are keyed by the student.
    served: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for OpenAiCompatStudent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("OpenAiCompatStudent")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl OpenAiCompatStudent {
    /// `base_url` is the API root, e.g. `http://127.0.0.1:8080/v1`.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>, api_key: Option<String>) -> Self {
        OpenAiCompatStudent {
            client: reqwest::Client::new(),
            base_url: base_url.into().trim_end_matches('/').to_string(),
            model: model.into(),
            api_key: api_key.filter(|k| !k.is_empty()),
            grammar_accepted: Arc::new(AtomicBool::new(true)),
            continues: Arc::new(AtomicBool::new(false)),
            served: Arc::new(OnceLock::new()),
        }
    }

    /// Says whether the server continues a last assistant message, for servers that
    /// [`discover`](Self::discover) does not recognise (a library user's own proxy, say).
    pub fn with_continued_replies(self, continues: bool) -> Self {
        self.continues.store(continues, Ordering::Relaxed);
        self
    }

    /// Reads what the server says about this student's model in `GET /models` (its entry, or
    /// the only one listed): `"continue_final_message": true` (as `skd serve` lists it) or a
    /// server known to continue by its `owned_by` (vLLM, SGLang, llama.cpp's server) turns on
    /// [`Student::continues_reply`]; `"lark_grammar": false`, or one of those servers, turns
    /// off [`Student::supports_grammar`]; a `root` naming what is served becomes part of
    /// [`Student::model_id`] (`default=qwen2.5-...@llama.cpp#cc32...`). Returns whether the
    /// server continues replies; a server that does not answer in a few seconds, or lists
    /// nothing of the kind, leaves the student as it was (requests report an unreachable
    /// server themselves).
    pub async fn discover(&self) -> bool {
        let url = format!("{}/models", self.base_url);
        let mut call = self.client.get(&url).timeout(std::time::Duration::from_secs(5));
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let Ok(response) = call.send().await else { return false };
        let Ok(listing) = response.json::<Value>().await else { return false };
        let models = listing["data"].as_array().map(Vec::as_slice).unwrap_or_default();
        // This model's entry; a server that lists one model serves it whatever it is called
        // (llama.cpp's server answers to any model name).
        let entry = models.iter().find(|m| m["id"] == self.model.as_str()).or(match models {
            [only] => Some(only),
            _ => None,
        });
        let Some(entry) = entry else { return false };
        if let Some(root) = entry["root"].as_str().filter(|r| !r.is_empty() && *r != self.model) {
            let _ = self.served.set(format!("{}={root}", self.model));
        }
        // Servers that take vLLM's `continue_final_message`, by their documentation (vLLM,
        // SGLang, llama.cpp's server, which also continues by default), and whose grammar
        // field is not the Lark one this student sends: they would answer unconstrained
        // without refusing it, so the loop is told to read free text.
        let known = matches!(entry["owned_by"].as_str(), Some("vllm" | "sglang" | "llamacpp"));
        if known || entry["lark_grammar"] == false {
            self.grammar_accepted.store(false, Ordering::Relaxed);
        }
        let continues = known || entry["continue_final_message"] == true;
        if continues {
            self.continues.store(true, Ordering::Relaxed);
        }
        continues
    }

    /// The request body: async-openai's request type, plus mistral.rs's `grammar` field,
    /// which OpenAI's schema does not have.
    fn body(&self, request: &CompletionRequest, with_grammar: bool) -> skill_core::Result<Value> {
        let messages = skill_core::openai::chat_messages(&request.messages)?;
        #[allow(deprecated)] // `max_tokens`: the field compatible servers know.
        let mut body = CreateChatCompletionRequest {
            model: self.model.clone(),
            messages,
            max_tokens: Some(request.max_tokens),
            temperature: Some(request.temperature.unwrap_or(0.0)),
            stream: Some(false),
            stop: (!request.stop.is_empty()).then(|| StopConfiguration::StringArray(request.stop.clone())),
            ..Default::default()
        };
        let grammar = request.grammar.as_ref().filter(|_| with_grammar);
        if grammar.is_none()
            && let Some(schema) = &request.json_schema
        {
            body.response_format = Some(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    name: "response".into(),
                    description: None,
                    schema: schema.clone(),
                    strict: Some(true),
                },
            });
        }
        let mut body = serde_json::to_value(&body).map_err(|e| err(format!("building the request: {e}")))?;
        if let Some(grammar) = grammar {
            body["grammar"] = json!({"type": "lark", "value": grammar});
        }
        if self.continues_reply() && request.messages.last().is_some_and(|m| m.role == skill_core::Role::Assistant) {
            // vLLM's and SGLang's names; servers that continue anyway ignore them.
            body["continue_final_message"] = json!(true);
            body["add_generation_prompt"] = json!(false);
        }
        Ok(body)
    }
}

impl OpenAiCompatStudent {
    async fn post(
        &self,
        url: &str,
        request: &CompletionRequest,
        with_grammar: bool,
    ) -> skill_core::Result<(reqwest::StatusCode, String)> {
        let mut call = self.client.post(url).timeout(request.timeout).json(&self.body(request, with_grammar)?);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let response = call.send().await.map_err(|e| {
            if e.is_timeout() {
                err(format!("{url}: no answer within {:.0?}", request.timeout))
            } else if e.is_connect() {
                err(format!("cannot reach {url}: is the server running? ({e})"))
            } else {
                err(format!("{url}: {e}"))
            }
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| err(format!("{url}: reading the response: {e}")))?;
        Ok((status, text))
    }
}

fn err(message: impl std::fmt::Display) -> skill_core::Error {
    skill_core::Error::backend("openai-compatible", message)
}

#[async_trait]
impl Student for OpenAiCompatStudent {
    fn model_id(&self) -> &str {
        self.served.get().unwrap_or(&self.model)
    }

    fn supports_grammar(&self) -> bool {
        self.grammar_accepted.load(Ordering::Relaxed)
    }

    fn continues_reply(&self) -> bool {
        self.continues.load(Ordering::Relaxed)
    }

    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        let started = Instant::now();
        let url = format!("{}/chat/completions", self.base_url);
        let with_grammar = request.grammar.is_some() && self.supports_grammar();
        let (mut status, mut text) = self.post(&url, request, with_grammar).await?;
        if with_grammar && matches!(status.as_u16(), 400 | 422) {
            // The server does not take the grammar field: ask again without it, and tell the
            // loop to read free text from now on.
            self.grammar_accepted.store(false, Ordering::Relaxed);
            (status, text) = self.post(&url, request, false).await?;
        }
        if !status.is_success() {
            let excerpt: String = text.chars().take(300).collect();
            return Err(err(format!("{url}: HTTP {status}: {excerpt}")));
        }
        let reply: CreateChatCompletionResponse =
            serde_json::from_str(&text).map_err(|e| err(format!("{url}: not a chat completion ({e})")))?;
        let choice =
            reply.choices.into_iter().next().ok_or_else(|| err(format!("{url}: the response has no choices")))?;
        let usage = reply.usage.unwrap_or_default();
        let finish_reason = match choice.finish_reason {
            Some(FinishReason::Stop) => "stop",
            Some(FinishReason::Length) => "length",
            Some(FinishReason::ToolCalls) => "tool_calls",
            Some(FinishReason::ContentFilter) => "content_filter",
            Some(FinishReason::FunctionCall) => "function_call",
            None => "unknown",
        };
        Ok(Completion {
            text: choice.message.content.unwrap_or_default(),
            usage: Usage { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens },
            elapsed: started.elapsed(),
            finish_reason: finish_reason.to_string(),
        })
    }

    /// All at once: the server schedules them (a batching server decodes them together).
    async fn complete_batch(&self, requests: &[CompletionRequest]) -> Vec<skill_core::Result<Completion>> {
        futures::future::join_all(requests.iter().map(|r| self.complete(r))).await
    }
}
