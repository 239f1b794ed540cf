//! [`MistralRsStudent`]: a GGUF model run in-process by mistral.rs on the CPU.

use crate::gguf::{self, GgufInfo};
use crate::{Error, Result};
use async_trait::async_trait;
use mistralrs::core::{
    AutoDeviceMapParams, DefaultSchedulerMethod, DeviceMapSetting, GGUFLoaderBuilder, GGUFSpecificConfig,
    MistralRsBuilder, ModelDType, SchedulerConfig,
};
use mistralrs::{
    Constraint, Device, MistralRs, Model, RequestBuilder, SamplingParams, StopTokens, TextMessageRole, TokenSource,
};
use skill_core::{ChatMessage, Completion, CompletionRequest, Role, Student, Usage};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Engine settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MistralRsOptions {
    /// How many sequences the scheduler runs at once. 1 keeps requests sequential, which on
    /// a CPU is what lets the prefix cache work (concurrent requests defeated it: 11x slower).
    pub max_num_seqs: usize,
    /// How many sequences' KV caches the prefix cache keeps (0 disables it).
    pub prefix_cache_n: usize,
    /// Rewrite tensors candle has no SIMD kernel for (Q4_1, Q5_0, ...) as Q8_0 before
    /// loading, once, into the model cache (see [`crate::transcode`]). Prefill of
    /// Qwen2.5-0.5B Q4_K_M is several times faster with it.
    pub transcode: bool,
}

impl Default for MistralRsOptions {
    fn default() -> Self {
        MistralRsOptions { max_num_seqs: 1, prefix_cache_n: 16, transcode: true }
    }
}

/// A local GGUF model served in-process. Load once, then call [`Student::complete`] many
/// times; the engine is shared, so [`MistralRsStudent::runner`] can also back an HTTP server.
pub struct MistralRsStudent {
    runner: Arc<MistralRs>,
    model_id: String,
    info: GgufInfo,
}

impl std::fmt::Debug for MistralRsStudent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MistralRsStudent").field("model_id", &self.model_id).field("info", &self.info).finish()
    }
}

impl MistralRsStudent {
    /// Checks and loads a GGUF file. The header is read first, so a missing, truncated or
    /// unsupported file fails here with its cause, never with a panic in the loader.
    pub async fn load(path: &Path, options: MistralRsOptions) -> Result<MistralRsStudent> {
        let mut path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        // The engine serves under the file's stem (the name `skd serve` clients send); the
        // student's identity adds the engine and the content (see `engine::model_identity`).
        let served_name = path.file_stem().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        // The header read and the file's hash (when no pull recorded it) block: off the runtime.
        let (info, model_id) = {
            let file = path.clone();
            tokio::task::spawn_blocking(move || -> Result<(gguf::GgufInfo, String)> {
                Ok((gguf::inspect(&file)?, crate::engine::model_identity(&file, crate::Engine::MistralRs)?))
            })
            .await
            .map_err(|e| Error::Load { path: path.clone(), message: format!("reading the model file: {e}") })??
        };
        if options.transcode {
            let source = path.clone();
            let cache_dir = crate::models::ModelStore::default_dir().join("cpu");
            path = tokio::task::spawn_blocking(move || crate::transcode::cpu_ready(&source, &cache_dir))
                .await
                .map_err(|e| Error::Load { path: info.path.clone(), message: panic_message(e) })??;
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();

        let load_path = path.clone();
        // Loading reads and dequantizes weights synchronously; keep it off the async threads,
        // and turn a panic inside the loader into an error.
        let pipeline = tokio::task::spawn_blocking(move || {
            let loader = GGUFLoaderBuilder::new(
                None,
                None,
                dir.to_string_lossy().into_owned(),
                vec![file],
                GGUFSpecificConfig::default(),
                false,
                None,
            )
            .build();
            loader.load_model_from_hf(
                None,
                TokenSource::None,
                &ModelDType::Auto,
                &Device::Cpu,
                true,
                DeviceMapSetting::Auto(AutoDeviceMapParams::default_text()),
                None,
                None,
            )
        })
        .await
        .map_err(|e| Error::Load { path: load_path.clone(), message: panic_message(e) })?
        .map_err(|e| Error::Load { path: load_path.clone(), message: format!("{e:#}") })?;

        let seqs = NonZeroUsize::new(options.max_num_seqs.max(1)).unwrap_or(NonZeroUsize::MIN);
        let scheduler = SchedulerConfig::DefaultScheduler { method: DefaultSchedulerMethod::Fixed(seqs) };
        let mut builder = MistralRsBuilder::new(pipeline, scheduler, false, None).with_model_id(served_name);
        builder = if options.prefix_cache_n == 0 {
            builder.with_no_prefix_cache(true)
        } else {
            builder.with_prefix_cache_n(options.prefix_cache_n)
        };
        let runner = builder.build().await;
        Ok(MistralRsStudent { runner, model_id, info })
    }

    /// The engine, to serve it over HTTP as well.
    pub fn runner(&self) -> Arc<MistralRs> {
        self.runner.clone()
    }

    /// What the GGUF header said.
    pub fn info(&self) -> &GgufInfo {
        &self.info
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.info.path
    }
}

fn panic_message(err: tokio::task::JoinError) -> String {
    if err.is_panic() {
        let payload = err.into_panic();
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        format!("the loader panicked: {text}")
    } else {
        "loading was cancelled".into()
    }
}

fn role(role: Role) -> TextMessageRole {
    match role {
        Role::System => TextMessageRole::System,
        Role::User => TextMessageRole::User,
        Role::Assistant => TextMessageRole::Assistant,
        Role::Tool => TextMessageRole::Tool,
    }
}

/// Builds the mistral.rs request: greedy unless a temperature is given, with the token
/// limit, stop strings and JSON-schema constraint of the request. (`RequestBuilder`'s
/// `set_deterministic_sampler` resets every parameter, `max_len` included; building the
/// whole `SamplingParams` here avoids depending on call order.)
fn build_request(request: &CompletionRequest, end_token_ids: &[u32]) -> RequestBuilder {
    let mut sampling = SamplingParams::deterministic();
    sampling.max_len = Some(request.max_tokens as usize);
    if let Some(t) = request.temperature
        && t > 0.0
    {
        sampling.temperature = Some(f64::from(t));
        sampling.top_k = None;
    }
    if !request.stop.is_empty() {
        sampling.stop_toks = Some(StopTokens::Seqs(request.stop.clone()));
    } else if !end_token_ids.is_empty() {
        // Once a grammar (JSON schema or Lark) is complete, llguidance only allows an end token, but
        // not always the one the engine stops on: without this, constrained replies ran on
        // (invisible) to the token limit.
        sampling.stop_toks = Some(StopTokens::Ids(end_token_ids.to_vec()));
    }
    let mut builder = RequestBuilder::new();
    for ChatMessage { role: r, content } in &request.messages {
        builder = builder.add_message(role(*r), content);
    }
    builder = builder.set_sampling(sampling);
    if let Some(grammar) = &request.grammar {
        builder = builder.set_constraint(Constraint::Lark(grammar.clone()));
    } else if let Some(schema) = &request.json_schema {
        builder = builder.set_constraint(Constraint::JsonSchema(crate::without_free_whitespace(schema)));
    }
    builder
}

/// Where the time of one call went, as mistral.rs measured it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timing {
    /// Seconds spent processing the prompt (prefill).
    pub prompt_secs: f32,
    /// Seconds spent generating (decode).
    pub completion_secs: f32,
}

impl MistralRsStudent {
    /// [`Student::complete`] plus the engine's prefill/decode split (for benchmarks).
    pub async fn complete_timed(&self, request: &CompletionRequest) -> skill_core::Result<(Completion, Timing)> {
        let started = Instant::now();
        let builder = build_request(request, &self.info.end_token_ids);
        // The request runs in its own task, and a timeout detaches it instead of dropping it:
        // mistral.rs 0.8.1's engine thread panics (and every later request fails) when a
        // caller's response channel closes mid-generation. The detached request finishes
        // within its token limit and its answer is discarded.
        let runner = self.runner.clone();
        let mut call = tokio::spawn(async move { Model::new(runner).send_chat_request(builder).await });
        let response = match tokio::time::timeout(request.timeout, &mut call).await {
            Err(_) => {
                return Err(skill_core::Error::backend(
                    "mistralrs",
                    format!(
                        "{}: no answer within {:.0?} (raise the timeout or lower max tokens)",
                        self.model_id, request.timeout
                    ),
                ));
            }
            Ok(joined) => joined
                .map_err(|e| {
                    skill_core::Error::backend("mistralrs", format!("{}: the request task failed: {e}", self.model_id))
                })?
                .map_err(|e| skill_core::Error::backend("mistralrs", format!("{}: {e}", self.model_id)))?,
        };
        let choice = response
            .choices
            .first()
            .ok_or_else(|| skill_core::Error::backend("mistralrs", "the response had no choices"))?;
        let completion = Completion {
            text: choice.message.content.clone().unwrap_or_default(),
            usage: Usage {
                prompt_tokens: response.usage.prompt_tokens as u32,
                completion_tokens: response.usage.completion_tokens as u32,
            },
            elapsed: started.elapsed(),
            finish_reason: choice.finish_reason.clone(),
        };
        let timing = Timing {
            prompt_secs: response.usage.total_prompt_time_sec,
            completion_secs: response.usage.total_completion_time_sec,
        };
        Ok((completion, timing))
    }
}

#[async_trait]
impl Student for MistralRsStudent {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        Ok(self.complete_timed(request).await?.0)
    }

    fn supports_grammar(&self) -> bool {
        true
    }
}
