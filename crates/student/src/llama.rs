//! [`LlamaCppStudent`]: a GGUF model run in-process by llama.cpp (through `llama-cpp-2`),
//! with shared-prefix batched decoding.
//!
//! llama.cpp's model context, samplers and batches are not `Send`, so one worker thread
//! owns them all and the student hands it requests over a channel. Requests that are in
//! flight together (an eval runner with several cases at once, the agent loop of several
//! cases) are decoded together:
//!
//! 1. the longest token prefix they share is prefilled once into sequence 0, which keeps it
//!    between calls, so the next batch with the same skill text, or the next step of an
//!    agent whose prompt extends the last one, prefills only what is new;
//! 2. sequence 0 is copied to one sequence per request (the KV cache is unified, so the
//!    copy shares cells instead of duplicating them), and each request's suffix is
//!    prefilled;
//! 3. one batch per step then advances every unfinished sequence by one token, greedy
//!    unless the request sets a temperature, each until its end token, a stop string, its
//!    token limit or its deadline.
//!
//! `GGML_ASSERT` aborts the whole process, so nothing unchecked reaches llama.cpp: batches
//! never hold more tokens than they were allocated for or than the context's batch size,
//! sequence ids stay below the context's sequence count, and a group of requests is only
//! decoded together when its prefix plus every suffix and token limit fits the KV cache.

use crate::engine::Engine;
use crate::gguf::{self, GgufInfo};
use crate::{Error, Result};
use async_trait::async_trait;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use skill_core::{Completion, CompletionRequest, Role, Student, Usage};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Engine settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlamaCppOptions {
    /// Tokens of KV cache shared by every sequence (a shared prefix counts once).
    pub context_tokens: u32,
    /// Requests decoded together at most.
    pub max_sequences: usize,
    /// Tokens per prefill batch (llama.cpp's `n_batch`).
    pub batch_tokens: u32,
    /// CPU threads (`None`: one per core).
    pub threads: Option<usize>,
    /// How long the worker waits for more requests after the first one arrives before it
    /// starts a batch. Requests sent together (`join_all` in the eval runner) arrive within
    /// microseconds of each other; a few milliseconds is nothing against a decode step.
    pub gather_window: Duration,
}

impl Default for LlamaCppOptions {
    fn default() -> Self {
        LlamaCppOptions {
            context_tokens: 16_384,
            max_sequences: 8,
            batch_tokens: 512,
            threads: None,
            gather_window: Duration::from_millis(5),
        }
    }
}

/// A local GGUF model run by llama.cpp in-process. Load once, then call
/// [`Student::complete`] many times, from many tasks at once: concurrent requests are
/// decoded together.
pub struct LlamaCppStudent {
    jobs: mpsc::Sender<Job>,
    model_id: String,
    info: GgufInfo,
    max_sequences: usize,
}

impl std::fmt::Debug for LlamaCppStudent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppStudent").field("model_id", &self.model_id).field("info", &self.info).finish()
    }
}

/// One request on its way to the worker.
struct Job {
    request: CompletionRequest,
    reply: tokio::sync::oneshot::Sender<skill_core::Result<Completion>>,
    received: Instant,
}

/// llama.cpp's backend may be initialised once per process.
fn backend() -> std::result::Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp's log lines go to `tracing` (shown with RUST_LOG=llama_cpp_2=info),
            // not straight to stderr, where they would mix with skd's own output.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl LlamaCppStudent {
    /// Checks and loads a GGUF file. The header is read first, so a missing or truncated
    /// file fails here with its cause; an architecture llama.cpp cannot run fails with an
    /// error naming the engine.
    pub async fn load(path: &Path, options: LlamaCppOptions) -> Result<LlamaCppStudent> {
        let info = gguf::inspect_for(path, Engine::LlamaCpp)?;
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        let model_id = crate::engine::model_identity(&path, Engine::LlamaCpp)?;
        let options = LlamaCppOptions { max_sequences: options.max_sequences.clamp(1, 64), ..options };
        if options.context_tokens < 256 || options.batch_tokens < 16 {
            return Err(Error::Load {
                path: path.clone(),
                message: format!(
                    "llama.cpp needs a context of at least 256 tokens and batches of at least 16 (got {} and {})",
                    options.context_tokens, options.batch_tokens
                ),
            });
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<()>>();
        let worker_path = path.clone();
        let architecture = info.architecture.clone();
        std::thread::Builder::new()
            .name("llama.cpp".into())
            .spawn(move || worker(&worker_path, &architecture, options, ready_tx, queue))
            .map_err(|e| Error::io(&path, e))?;
        ready_rx.await.map_err(|_| Error::Load {
            path: path.clone(),
            message: "the llama.cpp worker stopped while loading".into(),
        })??;
        Ok(LlamaCppStudent { jobs, model_id, info, max_sequences: options.max_sequences })
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

#[async_trait]
impl Student for LlamaCppStudent {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job { request: request.clone(), reply, received: Instant::now() };
        self.jobs.send(job).map_err(|_| {
            skill_core::Error::backend("llama.cpp", format!("{}: the worker has stopped", self.model_id))
        })?;
        // The worker enforces the request's deadline itself (it stops decoding that
        // sequence); this outer limit only guards against a worker that never answers.
        let grace = request.timeout + Duration::from_secs(30);
        match tokio::time::timeout(grace, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(skill_core::Error::backend(
                "llama.cpp",
                format!("{}: the worker stopped before answering", self.model_id),
            )),
            Err(_) => Err(skill_core::Error::backend(
                "llama.cpp",
                format!("{}: no answer within {:.0?}", self.model_id, request.timeout),
            )),
        }
    }

    fn supports_grammar(&self) -> bool {
        true
    }

    fn max_parallel_requests(&self) -> usize {
        self.max_sequences
    }
}

// ---------------------------------------------------------------------------------------
// The worker thread.

fn worker(
    path: &Path,
    architecture: &str,
    options: LlamaCppOptions,
    ready: tokio::sync::oneshot::Sender<Result<()>>,
    queue: mpsc::Receiver<Job>,
) {
    let load_error = |message: String| Error::Load { path: path.to_path_buf(), message };
    let backend = match backend() {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(load_error(format!("initialising llama.cpp: {e}"))));
            return;
        }
    };
    let model = match LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()) {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(load_error(format!(
                "llama.cpp could not load this model (architecture `{architecture}`): {e}"
            ))));
            return;
        }
    };
    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
        .clamp(1, 256) as i32;
    // One more sequence than requests: sequence 0 holds the shared prefix.
    let sequences = options.max_sequences as u32 + 1;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(options.context_tokens))
        .with_n_batch(options.batch_tokens)
        .with_n_ubatch(options.batch_tokens)
        .with_n_seq_max(sequences)
        .with_kv_unified(true)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(load_error(format!("llama.cpp could not create a context: {e}"))));
            return;
        }
    };
    let template = model.chat_template(None).or_else(|_| LlamaChatTemplate::new("chatml"));
    let template = match template {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(load_error(format!("the model's chat template: {e}"))));
            return;
        }
    };
    let mut state = Worker {
        model: &model,
        template,
        grammar: None,
        prefix: Vec::new(),
        context_tokens: ctx.n_ctx(),
        batch_tokens: ctx.n_batch().min(options.batch_tokens) as usize,
        max_sequences: options.max_sequences,
        train_context: model.n_ctx_train(),
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        let gather_until = Instant::now() + options.gather_window;
        while jobs.len() < state.max_sequences {
            let wait = gather_until.saturating_duration_since(Instant::now());
            match queue.recv_timeout(wait) {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // A panic in this code must not leave callers waiting forever: answer them all
        // with the cause and forget the prefix, whose state is then unknown.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.serve(&mut ctx, jobs)));
        if let Err(panic) = outcome {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("the llama.cpp worker recovered from a panic: {text}");
            ctx.clear_kv_cache();
            state.prefix.clear();
        }
    }
}

/// The worker's state: the model, its chat template and the prefix kept in sequence 0.
struct Worker<'m> {
    model: &'m LlamaModel,
    template: LlamaChatTemplate,
    /// Built on the first constrained request (it walks the whole vocabulary).
    grammar: Option<std::sync::Arc<llguidance::ParserFactory>>,
    /// Tokens whose KV state sequence 0 holds.
    prefix: Vec<LlamaToken>,
    context_tokens: u32,
    batch_tokens: usize,
    max_sequences: usize,
    train_context: u32,
}

/// A request being decoded.
struct Sequence {
    job: Job,
    /// The prompt's tokens, then the generated ones.
    tokens: Vec<LlamaToken>,
    prompt_len: usize,
    sampler: LlamaSampler,
    /// Where the next token goes.
    position: i32,
    /// Index of this sequence's logits in the last decoded batch.
    logits_at: i32,
    generated: Vec<u8>,
    completion_tokens: u32,
    finish: Option<String>,
    error: Option<String>,
    deadline: Instant,
}

impl Sequence {
    /// The KV cells this request needs beyond a shared prefix of `shared` tokens.
    fn cells_beyond(&self, shared: usize) -> usize {
        self.tokens.len() - shared + self.job.request.max_tokens as usize
    }
}

fn backend_error(message: impl std::fmt::Display) -> skill_core::Error {
    skill_core::Error::backend("llama.cpp", message.to_string())
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Worker<'_> {
    /// Answers a group of requests: prepares each, decodes those that fit together in
    /// groups, and replies to every one.
    fn serve(&mut self, ctx: &mut LlamaContext<'_>, jobs: Vec<Job>) {
        let mut ready = Vec::with_capacity(jobs.len());
        for job in jobs {
            match self.prepare(job) {
                Ok(sequence) => ready.push(sequence),
                Err((job, e)) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        while !ready.is_empty() {
            let group = self.take_group(&mut ready);
            let finished = self.decode_group(ctx, group);
            for sequence in finished {
                reply(sequence);
            }
        }
    }

    /// Templating, tokenizing and the checks that keep llama.cpp's asserts from firing.
    fn prepare(&mut self, job: Job) -> std::result::Result<Sequence, (Job, skill_core::Error)> {
        let request = &job.request;
        let prompt = match self.render(request) {
            Ok(p) => p,
            Err(e) => return Err((job, e)),
        };
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
        if tokens.is_empty() {
            return Err((job, backend_error("the prompt is empty")));
        }
        let needed = tokens.len() + request.max_tokens as usize;
        let limit = (self.context_tokens as usize).min(self.train_context.max(1) as usize);
        if needed > limit {
            let message = format!(
                "the prompt is {} tokens and up to {} more were asked for: more than the {} this model's context holds",
                tokens.len(),
                request.max_tokens,
                limit
            );
            return Err((job, backend_error(message)));
        }
        let sampler = match self.sampler(request) {
            Ok(s) => s,
            Err(e) => return Err((job, e)),
        };
        let deadline = job.received + request.timeout;
        Ok(Sequence {
            job,
            prompt_len: tokens.len(),
            tokens,
            sampler,
            position: 0,
            logits_at: -1,
            generated: Vec::new(),
            completion_tokens: 0,
            finish: None,
            error: None,
            deadline,
        })
    }

    fn render(&self, request: &CompletionRequest) -> skill_core::Result<String> {
        let messages = request
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    // The loop's observations are plain user turns (as for OpenAI servers):
                    // llama.cpp's built-in templates do not all know a tool role.
                    Role::Tool => "user",
                };
                LlamaChatMessage::new(role.to_string(), m.content.clone())
                    .map_err(|e| backend_error(format!("a message holds a NUL byte: {e}")))
            })
            .collect::<skill_core::Result<Vec<_>>>()?;
        self.model
            .apply_chat_template(&self.template, &messages, true)
            .map_err(|e| backend_error(format!("chat template: {e}")))
    }

    fn sampler(&mut self, request: &CompletionRequest) -> skill_core::Result<LlamaSampler> {
        let grammar = match (&request.grammar, &request.json_schema) {
            (Some(lark), _) => Some(llguidance::api::TopLevelGrammar::from_lark(lark.clone())),
            (None, Some(schema)) => {
                Some(llguidance::api::TopLevelGrammar::from_json_schema(crate::without_free_whitespace(schema)))
            }
            (None, None) => None,
        };
        let pick = match request.temperature {
            Some(t) if t > 0.0 => LlamaSampler::chain_simple([LlamaSampler::temp(t), LlamaSampler::dist(0x5eed)]),
            _ => LlamaSampler::greedy(),
        };
        let Some(grammar) = grammar else { return Ok(pick) };
        let model = self.model;
        let factory = match &self.grammar {
            Some(f) => f.clone(),
            None => {
                let env = LlamaSampler::llguidance_tok_env(model);
                let factory = llguidance::ParserFactory::new_simple(&env)
                    .map_err(|e| backend_error(format!("grammar support: {e}")))?;
                let factory = std::sync::Arc::new(factory);
                self.grammar = Some(factory.clone());
                factory
            }
        };
        let parser = factory.create_parser(grammar).map_err(|e| backend_error(format!("the grammar: {e}")))?;
        let matcher = llguidance::Matcher::new(Ok(parser));
        Ok(LlamaSampler::chain_simple([LlamaSampler::from(matcher), pick]))
    }

    /// The largest run of requests (in arrival order) that fits the KV cache together.
    fn take_group(&self, ready: &mut Vec<Sequence>) -> Vec<Sequence> {
        let budget = self.context_tokens as usize;
        let mut count = 1;
        let mut shared = ready[0].tokens.len() - 1;
        while count < ready.len() && count < self.max_sequences {
            let next = &ready[count];
            let shared_next = shared.min(common_prefix(&ready[0].tokens, &next.tokens)).min(next.tokens.len() - 1);
            let beyond: usize =
                ready[..=count].iter().map(|s| s.cells_beyond(shared_next)).sum::<usize>() + shared_next;
            if beyond > budget {
                break;
            }
            shared = shared_next;
            count += 1;
        }
        ready.drain(..count).collect()
    }

    /// Prefills the shared prefix, then every suffix, then decodes all sequences together.
    fn decode_group(&mut self, ctx: &mut LlamaContext<'_>, mut group: Vec<Sequence>) -> Vec<Sequence> {
        let shared = group.iter().skip(1).fold(group[0].tokens.len() - 1, |n, s| {
            n.min(common_prefix(&group[0].tokens, &s.tokens)).min(s.tokens.len() - 1)
        });
        if let Err(e) = self.fill_prefix(ctx, &group[0].tokens[..shared]) {
            for s in &mut group {
                s.error = Some(e.clone());
            }
            return group;
        }
        let mut batch = LlamaBatch::new(self.batch_tokens, 1);
        if let Err(e) = self.prefill_suffixes(ctx, &mut batch, &mut group, shared) {
            for s in &mut group {
                s.error.get_or_insert_with(|| e.clone());
            }
        } else {
            self.decode_steps(ctx, &mut batch, &mut group);
        }
        for id in 1..=group.len() {
            let _ = ctx.clear_kv_cache_seq(Some(id as u32), None, None);
        }
        group
    }

    /// Makes sequence 0 hold exactly `prefix`, reusing what it already holds.
    fn fill_prefix(&mut self, ctx: &mut LlamaContext<'_>, prefix: &[LlamaToken]) -> std::result::Result<(), String> {
        let mut keep = common_prefix(&self.prefix, prefix);
        if keep < self.prefix.len() {
            let removed = ctx.clear_kv_cache_seq(Some(0), Some(keep as u32), None).unwrap_or(false);
            if !removed {
                let _ = ctx.clear_kv_cache_seq(Some(0), None, None);
                keep = 0;
            }
            self.prefix.truncate(keep);
        }
        let mut batch = LlamaBatch::new(self.batch_tokens, 1);
        for (chunk_index, chunk) in prefix[keep..].chunks(self.batch_tokens).enumerate() {
            batch.clear();
            let start = keep + chunk_index * self.batch_tokens;
            for (i, token) in chunk.iter().enumerate() {
                batch.add(*token, (start + i) as i32, &[0], false).map_err(|e| format!("prefix batch: {e}"))?;
            }
            if let Err(e) = ctx.decode(&mut batch) {
                let _ = ctx.clear_kv_cache_seq(Some(0), None, None);
                self.prefix.clear();
                return Err(format!("prefilling the shared prompt: {e}"));
            }
            self.prefix.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Copies the prefix to each request's sequence and prefills the rest of its prompt;
    /// each sequence's first token is sampled right after the batch that held its last
    /// prompt token (a later batch would overwrite those logits).
    fn prefill_suffixes(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        batch: &mut LlamaBatch,
        group: &mut [Sequence],
        shared: usize,
    ) -> std::result::Result<(), String> {
        let mut pending: Vec<(usize, usize)> = Vec::new(); // (sequence index, token index)
        for (i, s) in group.iter_mut().enumerate() {
            let id = (i + 1) as i32;
            let _ = ctx.clear_kv_cache_seq(Some(id as u32), None, None);
            if shared > 0 {
                ctx.copy_kv_cache_seq(0, id, None, Some(shared as u32))
                    .map_err(|e| format!("copying the prefix: {e}"))?;
            }
            s.position = shared as i32;
            pending.extend((shared..s.tokens.len()).map(|t| (i, t)));
        }
        for chunk in pending.chunks(self.batch_tokens) {
            batch.clear();
            let mut last_in_chunk = Vec::new();
            for (slot, &(i, t)) in chunk.iter().enumerate() {
                let s = &group[i];
                let is_last = t + 1 == s.tokens.len();
                batch
                    .add(s.tokens[t], t as i32, &[(i + 1) as i32], is_last)
                    .map_err(|e| format!("prompt batch: {e}"))?;
                if is_last {
                    last_in_chunk.push((i, slot as i32));
                }
            }
            ctx.decode(batch).map_err(|e| format!("prefilling a prompt: {e}"))?;
            for (i, slot) in last_in_chunk {
                let s = &mut group[i];
                s.position = s.tokens.len() as i32;
                s.logits_at = slot;
                self.take_token(ctx, s);
            }
        }
        Ok(())
    }

    /// Samples the next token of `s` from its logits and records it, or finishes it.
    fn take_token(&self, ctx: &LlamaContext<'_>, s: &mut Sequence) {
        let token = s.sampler.sample(ctx, s.logits_at);
        let vocab = self.model.vocab();
        if vocab.is_eog(token) {
            s.finish = Some("stop".into());
            return;
        }
        s.completion_tokens += 1;
        s.generated.extend(vocab.token_to_piece(token, false, None));
        s.tokens.push(token);
        if let Some(cut) = stop_at(&s.generated, &s.job.request.stop) {
            s.generated.truncate(cut);
            s.finish = Some("stop".into());
        } else if s.completion_tokens >= s.job.request.max_tokens {
            s.finish = Some("length".into());
        } else if Instant::now() >= s.deadline {
            s.error =
                Some(format!("no answer within {:.0?} (raise the timeout or lower max tokens)", s.job.request.timeout));
        }
    }

    /// One batch per step, one token per unfinished sequence.
    fn decode_steps(&self, ctx: &mut LlamaContext<'_>, batch: &mut LlamaBatch, group: &mut [Sequence]) {
        loop {
            batch.clear();
            let mut any = false;
            for (i, s) in group.iter_mut().enumerate() {
                if s.finish.is_some() || s.error.is_some() {
                    continue;
                }
                let token = *s.tokens.last().unwrap_or(&LlamaToken(0));
                let slot = batch.n_tokens();
                if let Err(e) = batch.add(token, s.position, &[(i + 1) as i32], true) {
                    s.error = Some(format!("decode batch: {e}"));
                    continue;
                }
                s.logits_at = slot;
                s.position += 1;
                any = true;
            }
            if !any {
                return;
            }
            if let Err(e) = ctx.decode(batch) {
                for s in group.iter_mut().filter(|s| s.finish.is_none()) {
                    s.error.get_or_insert_with(|| format!("decoding: {e}"));
                }
                return;
            }
            for s in group.iter_mut() {
                if s.finish.is_none() && s.error.is_none() {
                    self.take_token(ctx, s);
                }
            }
        }
    }
}

/// The first place a stop string occurs in the generated text, to cut it there.
fn stop_at(generated: &[u8], stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|stop| generated.windows(stop.len()).position(|w| w == stop.as_bytes()))
        .min()
}

fn reply(s: Sequence) {
    let result = match s.error {
        Some(e) => Err(backend_error(e)),
        None => Ok(Completion {
            text: String::from_utf8_lossy(&s.generated).into_owned(),
            usage: Usage { prompt_tokens: s.prompt_len as u32, completion_tokens: s.completion_tokens },
            elapsed: s.job.received.elapsed(),
            finish_reason: s.finish.unwrap_or_else(|| "stop".into()),
        }),
    };
    let _ = s.job.reply.send(result);
}
