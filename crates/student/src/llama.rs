//! [`LlamaCppStudent`]: a GGUF model run in-process by llama.cpp (through `llama-cpp-2`),
//! with shared-prefix continuous batching.
//!
//! llama.cpp's model context, samplers and batches are not `Send`, so one worker thread
//! owns them all and the student hands it requests over a channel ([`Student::complete`]
//! sends one, [`Student::complete_batch`] several at once). Requests in the worker are
//! decoded together:
//!
//! 1. when no request is being decoded, the longest token prefix the waiting ones share is
//!    prefilled into sequence 0 (or read from the prefix cache on disk when it is long and
//!    was met before), which keeps it between calls, so the next batch with the same skill
//!    text, or the next step of an agent whose prompt extends the last one, prefills only
//!    what is new;
//! 2. a waiting request starts when a sequence is free and the KV cache holds its prompt
//!    and token limit: it gets a copy of sequence 0's prefix (the KV cache is unified, so
//!    the copy shares cells instead of duplicating them), or continues a finished request's
//!    kept sequence when that covers more of its prompt;
//! 3. one batch per step holds the next token of every request being decoded and, in the
//!    room left, prompt tokens of those still prefilling; each request is sampled greedy
//!    unless it sets a temperature, until its end token, a stop string or its token limit,
//!    and ends early at the step after its caller gave up or its deadline passed. A request
//!    that finishes is answered at once and its sequence goes to the next one waiting.
//!
//! `GGML_ASSERT` aborts the whole process, so nothing unchecked reaches llama.cpp: batches
//! never hold more tokens than they were allocated for or than the context's batch size,
//! sequence ids stay below the context's sequence count, a request only starts when what
//! every started request may still need fits the KV cache, and a saved KV state is read
//! back only when it matches the digest written beside it.

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
use skill_core::{ChatMessage, Completion, CompletionRequest, Role, Student, Usage};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaCppOptions {
    /// Tokens of KV cache shared by every sequence (a shared prefix counts once), made at
    /// load.
    pub context_tokens: u32,
    /// The most the KV cache may grow to: a request that needs more than it holds (prompt
    /// and token limit) is served from a cache made anew, twice as large or as large as it
    /// needs, at most this (and the model's trained context). Below `context_tokens` it
    /// means `context_tokens`. One agent run (`skd run`) starts small: llama.cpp writes
    /// every cell of the cache when it makes it, and 16,384 cells of the 1.5B model (448 MiB)
    /// took 1.7-3.2 s of a 10 s task on a 2-vCPU VM.
    pub max_context_tokens: u32,
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
    /// Where the KV state of long shared prefixes (a skill and its suite's instructions) is
    /// kept on disk, keyed by model identity and prefix tokens, so a resumed distillation or
    /// the next `skd eval` of the same skill loads it instead of prefilling it again.
    /// `None`: only the one in memory is kept.
    pub prefix_cache_dir: Option<std::path::PathBuf>,
    /// Where a copy of the model with its Q5_0 tensors rewritten as Q8_0 is kept: the same
    /// values, for llama.cpp's faster Q8_0 kernels (see [`crate::widen`]); made on the first
    /// load of a file with Q5_0 tensors. `None`: the file is loaded as it is. The default is
    /// the model cache's `q8/` on x86-64, where the gain was measured, and `None` elsewhere.
    pub widened_dir: Option<std::path::PathBuf>,
}

impl LlamaCppOptions {
    /// [`LlamaCppOptions::widened_dir`] for a model cache: its `q8/` on x86-64, where
    /// llama.cpp's Q8_0 kernels were measured faster than its Q5_0 ones; None elsewhere.
    pub fn widened_dir_in(models_dir: &Path) -> Option<std::path::PathBuf> {
        cfg!(target_arch = "x86_64").then(|| models_dir.join("q8"))
    }
}

impl Default for LlamaCppOptions {
    fn default() -> Self {
        LlamaCppOptions {
            context_tokens: 16_384,
            max_context_tokens: 16_384,
            max_sequences: 8,
            batch_tokens: 512,
            threads: None,
            gather_window: Duration::from_millis(5),
            prefix_cache_dir: None,
            widened_dir: LlamaCppOptions::widened_dir_in(&crate::models::ModelStore::default_dir()),
        }
    }
}

/// What the engine has done since it was loaded: tokens fed and the time spent in
/// `llama_decode`, split into steps that held prompt tokens (prefill, including the decode
/// tokens that shared those batches) and steps that only decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LlamaCppCounters {
    /// Prompt tokens run through the model.
    pub prefill_tokens: u64,
    /// Time in the batches that held prompt tokens.
    pub prefill_seconds: f64,
    /// Generated tokens fed back (one per sequence per step).
    pub decode_tokens: u64,
    /// Time in the batches that only decoded.
    pub decode_seconds: f64,
    /// Prompt tokens copied from the shared prefix instead of being prefilled.
    pub shared_tokens: u64,
    /// Prefix tokens whose KV state was read from the prefix cache on disk.
    pub loaded_tokens: u64,
    /// Prompt tokens shared into the prefix from a finished request's kept sequence (a
    /// reply that the next prompt continues) instead of being prefilled again.
    pub reused_reply_tokens: u64,
    /// The most requests decoded at once.
    pub peak_sequences: usize,
    /// Times the KV cache was made anew, larger, for a request it could not hold.
    pub context_growths: u64,
}

/// A local GGUF model run by llama.cpp in-process. Load once, then call
/// [`Student::complete`] many times, from many tasks at once: concurrent requests are
/// decoded together.
pub struct LlamaCppStudent {
    jobs: mpsc::Sender<Vec<Job>>,
    counters: std::sync::Arc<std::sync::Mutex<LlamaCppCounters>>,
    /// Goes up at every turn of the worker's loop: a caller whose answer is late tells a
    /// long queue (it moves) from a worker stuck inside llama.cpp (it does not).
    heartbeat: std::sync::Arc<std::sync::atomic::AtomicU64>,
    model_id: String,
    info: GgufInfo,
    /// The file llama.cpp read: the model file, or its copy with Q5_0 tensors rewritten.
    weights: std::path::PathBuf,
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
        let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        // The header read and the file's hash (when no pull recorded it) block: off the runtime.
        let (info, model_id) = {
            let file = path.clone();
            tokio::task::spawn_blocking(move || -> Result<(GgufInfo, String)> {
                Ok((
                    gguf::inspect_for(&file, Engine::LlamaCpp)?,
                    crate::engine::model_identity(&file, Engine::LlamaCpp)?,
                ))
            })
            .await
            .map_err(|e| Error::Load { path: path.clone(), message: format!("reading the model file: {e}") })??
        };
        // Every sequence being decoded gets its token in each step's batch, so there are never
        // more sequences than batch slots (one would starve).
        let max_sequences = options.max_sequences.clamp(1, 64).min(options.batch_tokens.max(1) as usize);
        let options = LlamaCppOptions { max_sequences, ..options };
        if options.context_tokens < 256 || options.batch_tokens < 16 {
            return Err(Error::Load {
                path: path.clone(),
                message: format!(
                    "llama.cpp needs a context of at least 256 tokens and batches of at least 16 (got {} and {})",
                    options.context_tokens, options.batch_tokens
                ),
            });
        }
        let worker_path = match options.widened_dir.clone() {
            Some(dir) => {
                let source = path.clone();
                let ready = tokio::task::spawn_blocking(move || crate::widen::llama_ready(&source, &dir))
                    .await
                    .map_err(|e| Error::Load { path: path.clone(), message: format!("rewriting Q5_0 tensors: {e}") })?;
                // The rewrite only makes the model faster: a file it cannot make (a full disk,
                // a tensor type it does not know) leaves the model as it is.
                ready.unwrap_or_else(|e| {
                    tracing::warn!("{e}; loading {} without rewriting its Q5_0 tensors", path.display());
                    path.clone()
                })
            }
            None => path.clone(),
        };
        let (jobs, queue) = mpsc::channel::<Vec<Job>>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<()>>();
        let architecture = info.architecture.clone();
        let counters = std::sync::Arc::new(std::sync::Mutex::new(LlamaCppCounters::default()));
        let worker_counters = counters.clone();
        let heartbeat = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let worker_heartbeat = heartbeat.clone();
        let max_sequences = options.max_sequences;
        let worker_id = model_id.clone();
        let weights = worker_path.clone();
        std::thread::Builder::new()
            .name("llama.cpp".into())
            .spawn(move || {
                let shared = WorkerShared { counters: worker_counters, heartbeat: worker_heartbeat };
                worker(&worker_path, &worker_id, &architecture, options, shared, ready_tx, queue)
            })
            .map_err(|e| Error::io(&path, e))?;
        ready_rx.await.map_err(|_| Error::Load {
            path: path.clone(),
            message: "the llama.cpp worker stopped while loading".into(),
        })??;
        Ok(LlamaCppStudent { jobs, counters, heartbeat, model_id, info, weights, max_sequences })
    }

    /// What the GGUF header said.
    pub fn info(&self) -> &GgufInfo {
        &self.info
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.info.path
    }

    /// The file llama.cpp read its weights from: [`Self::path`], or a copy of it with its
    /// Q5_0 tensors rewritten as Q8_0 ([`LlamaCppOptions::widened_dir`]).
    pub fn weights_path(&self) -> &Path {
        &self.weights
    }

    /// What the engine has done so far (the benchmark reads prefill and decode speed here).
    pub fn counters(&self) -> LlamaCppCounters {
        *self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Student for LlamaCppStudent {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    async fn complete(&self, request: &CompletionRequest) -> skill_core::Result<Completion> {
        let mut answers = self.complete_batch(std::slice::from_ref(request)).await;
        answers.pop().unwrap_or_else(|| Err(backend_error("no answer")))
    }

    /// The requests go to the worker together, so they start as one shared-prefix batch
    /// (up to `max_sequences` at a time; the rest take the sequences that finish first).
    async fn complete_batch(&self, requests: &[CompletionRequest]) -> Vec<skill_core::Result<Completion>> {
        let now = Instant::now();
        let (jobs, answers): (Vec<Job>, Vec<_>) = requests
            .iter()
            .map(|request| {
                let (reply, answer) = tokio::sync::oneshot::channel();
                (Job { request: request.clone(), reply, received: now }, answer)
            })
            .unzip();
        if self.jobs.send(jobs).is_err() {
            let stopped = || backend_error(format!("{}: the worker has stopped", self.model_id));
            return requests.iter().map(|_| Err(stopped())).collect();
        }
        // The worker enforces each request's deadline from the moment it starts decoding,
        // and answers every request it takes; a dropped reply means the worker is gone. A
        // request may wait long for a sequence behind a big batch, so the wait has no
        // deadline of its own, only a watchdog: a worker that makes no progress for a whole
        // request timeout is stuck (inside llama.cpp, where nothing can interrupt it), and
        // its callers get an error instead of waiting forever.
        let mut out = Vec::with_capacity(answers.len());
        for (answer, request) in answers.into_iter().zip(requests) {
            out.push(self.await_answer(answer, request.timeout.max(MIN_STALL)).await);
        }
        out
    }

    fn supports_grammar(&self) -> bool {
        true
    }

    fn continues_reply(&self) -> bool {
        true
    }

    fn max_parallel_requests(&self) -> usize {
        self.max_sequences
    }
}

/// The shortest time without progress taken as a stuck worker (one prefill batch of a big
/// model on a slow CPU takes seconds).
const MIN_STALL: Duration = Duration::from_secs(10);

impl LlamaCppStudent {
    async fn await_answer(
        &self,
        answer: tokio::sync::oneshot::Receiver<skill_core::Result<Completion>>,
        stall: Duration,
    ) -> skill_core::Result<Completion> {
        await_with_watchdog(answer, &self.heartbeat, stall, &self.model_id).await
    }
}

/// The worker's answer, or an error once `heartbeat` has not moved for `stall`.
async fn await_with_watchdog(
    mut answer: tokio::sync::oneshot::Receiver<skill_core::Result<Completion>>,
    heartbeat: &std::sync::atomic::AtomicU64,
    stall: Duration,
    model_id: &str,
) -> skill_core::Result<Completion> {
    use std::sync::atomic::Ordering;
    let check_every = (stall / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut beat = heartbeat.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    loop {
        match tokio::time::timeout(check_every, &mut answer).await {
            Ok(answered) => {
                return answered.unwrap_or_else(|_| {
                    Err(backend_error(format!("{model_id}: the worker stopped before answering")))
                });
            }
            Err(_) => {
                let now = heartbeat.load(Ordering::Relaxed);
                if now != beat {
                    (beat, quiet_since) = (now, Instant::now());
                } else if quiet_since.elapsed() >= stall {
                    // Dropping `answer` tells the worker, should it ever move again.
                    return Err(backend_error(format!(
                        "{model_id}: the llama.cpp worker has made no progress for {:.0?} (stuck inside \
                         llama.cpp?)",
                        quiet_since.elapsed()
                    )));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The worker thread.

/// What the worker shares with the student's handles.
struct WorkerShared {
    counters: std::sync::Arc<std::sync::Mutex<LlamaCppCounters>>,
    heartbeat: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn worker(
    path: &Path,
    model_id: &str,
    architecture: &str,
    options: LlamaCppOptions,
    shared: WorkerShared,
    ready: tokio::sync::oneshot::Sender<Result<()>>,
    queue: mpsc::Receiver<Vec<Job>>,
) {
    let WorkerShared { counters, heartbeat } = shared;
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
    let batch_tokens = options.batch_tokens;
    let context_params = move |cells: u32| {
        LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cells))
            .with_n_batch(batch_tokens)
            .with_n_ubatch(batch_tokens)
            .with_n_seq_max(sequences)
            .with_kv_unified(true)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
    };
    let mut ctx = match model.new_context(backend, context_params(options.context_tokens)) {
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
        backend,
        context_params: Box::new(context_params),
        max_context_tokens: options.max_context_tokens.max(ctx.n_ctx()),
        template,
        grammar: None,
        prefix: Vec::new(),
        context_tokens: ctx.n_ctx(),
        batch_tokens: ctx.n_batch().min(options.batch_tokens) as usize,
        batch_option: options.batch_tokens,
        max_sequences: options.max_sequences,
        train_context: model.n_ctx_train(),
        active: Vec::new(),
        pending: std::collections::VecDeque::new(),
        parked: Vec::new(),
        counters,
        heartbeat: heartbeat.clone(),
        prefix_store: options.prefix_cache_dir.clone().map(|dir| PrefixStore::new(dir, model_id, path, &options)),
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    loop {
        let mut inbox: Vec<Job> = Vec::new();
        if state.is_idle() {
            // Nothing to do: sleep until requests come, then give the ones sent together
            // (the eval runner's cases, concurrent `skd serve` clients) a moment to arrive,
            // so they start as one batch around one prefix.
            let Ok(first) = queue.recv() else { return };
            inbox.extend(first);
            let gather_until = Instant::now() + options.gather_window;
            while inbox.len() < state.max_sequences {
                match queue.recv_timeout(gather_until.saturating_duration_since(Instant::now())) {
                    Ok(jobs) => inbox.extend(jobs),
                    Err(_) => break,
                }
            }
        }
        // Requests that come while others decode join them at the next step.
        while let Ok(jobs) = queue.try_recv() {
            inbox.extend(jobs);
        }
        // A panic in this code must not leave callers waiting forever: answer them all
        // with the cause and forget the KV cache, whose state is then unknown.
        // (A job lost to a panic here drops its reply channel: its caller gets an error.)
        heartbeat.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            state.accept(inbox);
            state.step(&mut ctx);
        }));
        heartbeat.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(panic) = outcome {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("the llama.cpp worker recovered from a panic: {text}");
            state.fail_all(&format!("the llama.cpp worker failed: {text}"));
            ctx.clear_kv_cache();
            state.prefix.clear();
            state.parked.clear();
        }
    }
}

/// The worker's state: the model, its chat template, the prefix kept in sequence 0 and
/// the requests being decoded or waiting for a sequence.
struct Worker<'m> {
    model: &'m LlamaModel,
    backend: &'static LlamaBackend,
    /// A context's parameters for a KV cache of so many cells.
    context_params: Box<dyn Fn(u32) -> LlamaContextParams>,
    /// See [`LlamaCppOptions::max_context_tokens`].
    max_context_tokens: u32,
    template: LlamaChatTemplate,
    /// Built on the first constrained request (it walks the whole vocabulary).
    grammar: Option<std::sync::Arc<llguidance::ParserFactory>>,
    /// Tokens whose KV state sequence 0 holds.
    prefix: Vec<LlamaToken>,
    context_tokens: u32,
    /// Tokens per prefill batch: the option, or the cache's size where that is smaller.
    batch_tokens: usize,
    batch_option: u32,
    max_sequences: usize,
    train_context: u32,
    /// Requests being decoded, each in its own sequence (1..=max_sequences).
    active: Vec<Sequence>,
    /// Requests ready to decode, in arrival order, waiting for a sequence and KV cells.
    pending: std::collections::VecDeque<Sequence>,
    /// Sequences of finished requests whose KV state is kept for a request that continues
    /// them, oldest first; evicted when their id or their cells are needed.
    parked: Vec<Parked>,
    counters: std::sync::Arc<std::sync::Mutex<LlamaCppCounters>>,
    /// Bumped at each turn of the loop and after each `llama_decode`, so a long prefill of
    /// many batches in one turn still shows as progress to waiting callers.
    heartbeat: std::sync::Arc<std::sync::atomic::AtomicU64>,
    prefix_store: Option<PrefixStore>,
}

/// Shared prefixes' KV state on disk, one file per (model identity, context settings,
/// prefix tokens), the least recently written or read removed beyond [`PrefixStore::KEEP`]
/// files.
struct PrefixStore {
    dir: std::path::PathBuf,
    /// Hashes the model's identity (engine and file content included) and the context
    /// settings a saved state depends on.
    salt: Vec<u8>,
}

impl PrefixStore {
    /// Prefixes shorter than this are prefilled faster than a file is found and read.
    const MIN_TOKENS: usize = 256;
    /// A lone request's system prompt shorter than this is not kept: a file per short
    /// prompt saves little. (Reading one is cheap: the boolean-eval skill's 107-token
    /// system prompt, 3 MB of the 1.5B model's state, read in 5-7 ms against about 2 s of
    /// prefill on a 2-vCPU machine.)
    const MIN_SYSTEM_TOKENS: usize = 64;
    const KEEP: usize = 32;

    /// `weights`: the file llama.cpp read, the model file or its rewritten copy.
    fn new(dir: std::path::PathBuf, model_id: &str, weights: &Path, options: &LlamaCppOptions) -> PrefixStore {
        // A rewritten copy holds the same weights, and graded answers from either are the same
        // model's (the model id names the source). A saved state is read back as raw numbers,
        // though, and other kernels may round differently: states are kept apart.
        let mut salt = format!("{model_id}\0ctx={}\0llama-cpp-2={}", options.context_tokens, LLAMA_CPP_2_VERSION);
        if options.widened_dir.as_deref().is_some_and(|dir| weights.starts_with(dir)) {
            salt.push_str(&format!("\0weights={}", crate::widen::REWRITE_TAG));
        }
        PrefixStore { dir, salt: salt.into_bytes() }
    }

    fn path(&self, prefix: &[LlamaToken]) -> std::path::PathBuf {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(&self.salt);
        for t in prefix {
            h.update(t.0.to_le_bytes());
        }
        let digest = hex::encode(&h.finalize()[..16]);
        self.dir.join(format!("{digest}.kv"))
    }

    /// Loads `prefix` into sequence 0 (empty before) when a file holds it.
    fn load(&self, ctx: &mut LlamaContext<'_>, prefix: &[LlamaToken]) -> bool {
        let path = self.path(prefix);
        let intact = match (std::fs::read(&path), std::fs::read_to_string(digest_path(&path))) {
            (Ok(bytes), Ok(digest)) => sha256_hex(&bytes) == digest.trim(),
            _ => false,
        };
        if !intact {
            tracing::warn!("{}: damaged or incomplete prefix state; prefilling", path.display());
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(digest_path(&path));
            return false;
        }
        match ctx.state_seq_load_file(&path, 0, prefix.len()) {
            Ok((tokens, _))
                if tokens == prefix
                    && ctx.kv_cache_seq_pos_min(0) == 0
                    && ctx.kv_cache_seq_pos_max(0) == prefix.len() as i32 - 1 =>
            {
                // Pruning removes the least recently written files: a state read back counts
                // as new, so the system prompt of a skill used every day outlives the one-off
                // prompts (catalogs of runs without a skill) written after it.
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                true
            }
            outcome => {
                // A file from another build or a torn write: drop it and prefill instead.
                tracing::warn!("{}: not a usable prefix state ({:?}); prefilling", path.display(), outcome.err());
                let _ = ctx.clear_kv_cache_seq(Some(0), None, None);
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(digest_path(&path));
                false
            }
        }
    }

    /// Saves sequence 0, which holds `prefix`, through a temporary file and a rename, with
    /// the file's sha256 beside it: llama.cpp reads a truncated state without noticing and
    /// then aborts the process, so nothing is handed to it that does not match its digest.
    fn save(&self, ctx: &LlamaContext<'_>, prefix: &[LlamaToken]) {
        let path = self.path(prefix);
        if path.exists() || std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let partial = path.with_extension(format!("kv.{}.partial", std::process::id()));
        let saved = ctx
            .state_seq_save_file(&partial, 0, prefix)
            .map_err(|e| format!("saving the prefix state: {e}"))
            .and_then(|written| {
                let bytes = std::fs::read(&partial).map_err(|e| e.to_string())?;
                if bytes.len() != written {
                    return Err(format!("{} of {written} bytes written (disk full?)", bytes.len()));
                }
                std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
                skill_core::fsutil::atomic_write(&digest_path(&path), sha256_hex(&bytes).as_bytes())
                    .map_err(|e| e.to_string())?;
                std::fs::rename(&partial, &path).map_err(|e| e.to_string())
            });
        if let Err(e) = saved {
            tracing::warn!("{}: {e}", path.display());
            let _ = std::fs::remove_file(&partial);
        }
        self.prune();
    }

    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "kv"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if files.len() <= Self::KEEP {
            return;
        }
        files.sort();
        for (_, path) in &files[..files.len() - Self::KEEP] {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(digest_path(path));
        }
    }
}

fn digest_path(state: &Path) -> std::path::PathBuf {
    state.with_extension("kv.sha256")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// The bindings' version: a saved KV state is only read back by the build that wrote it.
/// (A test holds it to the version in Cargo.lock, so a new pin cannot forget it.)
const LLAMA_CPP_2_VERSION: &str = "0.1.160";

/// A finished request's sequence, kept.
struct Parked {
    id: i32,
    /// The tokens whose KV state the sequence holds (its prompt and answer, positions 0..).
    tokens: Vec<LlamaToken>,
}

/// A request being decoded.
struct Sequence {
    job: Job,
    /// Its llama.cpp sequence id once it has one (0 until then: sequence 0 is the prefix).
    id: i32,
    /// The prompt's tokens, then the generated ones. Those before `position` are in the
    /// KV cache; the rest are fed at the next steps.
    tokens: Vec<LlamaToken>,
    prompt_len: usize,
    /// The prompt tokens already in the KV cache when it started (copied from sequence 0,
    /// or kept from a parked sequence) instead of being prefilled.
    shared: usize,
    /// KV cells reserved for it: what it may need beyond what it shares.
    cells: usize,
    sampler: LlamaSampler,
    /// Where the next token goes.
    position: usize,
    /// Index of this sequence's logits in the last decoded batch, if it asked for them.
    logits_at: Option<i32>,
    generated: Vec<u8>,
    completion_tokens: u32,
    finish: Option<String>,
    error: Option<String>,
    deadline: Instant,
}

impl Sequence {
    /// The KV cells this request holds at most beyond a shared prefix of `shared` tokens.
    fn cells_beyond(&self, shared: usize) -> usize {
        self.prompt_len - shared + self.job.request.max_tokens as usize
    }

    fn is_done(&self) -> bool {
        self.finish.is_some() || self.error.is_some()
    }
}

/// `from + timeout`, or far in the future when a huge timeout would overflow `Instant`.
fn deadline_after(from: Instant, timeout: Duration) -> Instant {
    from.checked_add(timeout).unwrap_or_else(|| from + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn backend_error(message: impl std::fmt::Display) -> skill_core::Error {
    skill_core::Error::backend("llama.cpp", message.to_string())
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<'m> Worker<'m> {
    fn is_idle(&self) -> bool {
        self.active.is_empty() && self.pending.is_empty()
    }

    /// Takes requests in: each is checked and tokenized now, and waits for a sequence.
    fn accept(&mut self, jobs: Vec<Job>) {
        for job in jobs {
            if let Some(sequence) = self.prepare(job) {
                self.pending.push_back(sequence);
            }
        }
    }

    /// Answers every request in the worker with `message`.
    fn fail_all(&mut self, message: &str) {
        for mut s in self.active.drain(..).chain(self.pending.drain(..)) {
            s.error.get_or_insert_with(|| message.to_string());
            reply(s);
        }
    }

    /// One step of the engine: requests that fit start, then one batch advances every
    /// request being decoded (a token each) and fills the rest with prompt tokens of those
    /// still prefilling; requests that finish are answered at once and free their sequence.
    fn step(&mut self, ctx: &mut LlamaContext<'m>) {
        if self.active.is_empty()
            && let Some(front) = self.pending.front()
            && !front.job.reply.is_closed()
            && front.cells_beyond(0) > self.context_tokens as usize
        {
            let needed = front.cells_beyond(0);
            self.grow(ctx, needed);
        }
        if self.active.is_empty() && !self.pending.is_empty() {
            // Sequence 0 may change only while no sequence still reads from it.
            let prefix = self.pending_prefix();
            // Only a lone request's system prompt is kept on disk: worked out here, not for
            // every request of a batch.
            let stable = match (self.pending.len(), self.pending.front()) {
                (1, Some(lone)) => self.stable_prefix_len(&lone.job.request, &lone.tokens),
                _ => 0,
            };
            if let Err(e) = self.fill_prefix(ctx, &prefix, self.pending.len(), stable) {
                tracing::warn!("{e}: the requests are prefilled one by one");
            }
        }
        self.admit(ctx);
        if self.active.is_empty() {
            return;
        }
        let mut batch = LlamaBatch::new(self.batch_tokens, 1);
        match self.fill_batch(&mut batch) {
            Ok((0, _)) => {}
            Ok((fed, prompt_tokens)) => {
                let started = Instant::now();
                let decoded = ctx.decode(&mut batch);
                self.count(|c| {
                    let seconds = started.elapsed().as_secs_f64();
                    if prompt_tokens > 0 {
                        c.prefill_tokens += prompt_tokens as u64;
                        c.prefill_seconds += seconds;
                        c.decode_tokens += (fed - prompt_tokens) as u64;
                    } else {
                        c.decode_tokens += fed as u64;
                        c.decode_seconds += seconds;
                    }
                });
                if let Err(e) = decoded {
                    // What the failed batch left in each sequence is unknown: end them all.
                    for s in &mut self.active {
                        s.error.get_or_insert_with(|| format!("decoding: {e}"));
                    }
                } else {
                    for i in 0..self.active.len() {
                        if self.active[i].logits_at.is_some() {
                            let model = self.model;
                            take_token(model, ctx, &mut self.active[i]);
                        }
                    }
                }
            }
            Err(e) => {
                for s in &mut self.active {
                    s.error.get_or_insert_with(|| e.clone());
                }
            }
        }
        let now = Instant::now();
        for s in &mut self.active {
            if !s.is_done() && s.job.reply.is_closed() {
                s.error = Some("cancelled".into());
            } else if !s.is_done() && now >= s.deadline {
                s.error = Some(format!(
                    "no answer within {:.0?} (raise the timeout or lower max tokens)",
                    s.job.request.timeout
                ));
            }
        }
        let (done, running): (Vec<Sequence>, Vec<Sequence>) = self.active.drain(..).partition(Sequence::is_done);
        self.active = running;
        for s in done {
            // An answered request's sequence is kept: the agent loop's next step extends
            // exactly this prompt and answer.
            if s.error.is_none() && s.position > 0 {
                self.parked.retain(|p| p.id != s.id);
                self.parked.push(Parked { id: s.id, tokens: s.tokens[..s.position].to_vec() });
            } else {
                let _ = ctx.clear_kv_cache_seq(Some(s.id as u32), None, None);
            }
            reply(s);
        }
    }

    /// Makes the KV cache anew with room for `needed` cells (twice its size or more, at most
    /// [`Worker::max_context_tokens`], which requests were checked against when they came).
    /// What the old cache held (sequence 0's prefix, parked sequences) is gone. If llama.cpp
    /// cannot make it (memory), the old cache stays and the request that needed it fails.
    fn grow(&mut self, ctx: &mut LlamaContext<'m>, needed: usize) {
        let ceiling = self.max_context_tokens.min(self.train_context.max(1)).max(needed as u32);
        let cells = (needed.next_power_of_two() as u32).max(self.context_tokens.saturating_mul(2)).min(ceiling);
        // Making a cache writes all of it (seconds for a large one): progress for the watchdog.
        self.count(|_| {});
        let made = self.model.new_context(self.backend, (self.context_params)(cells)).or_else(|e| {
            // Short of memory for twice the size, perhaps not for what the request needs.
            if cells as usize > needed {
                self.model.new_context(self.backend, (self.context_params)(needed as u32))
            } else {
                Err(e)
            }
        });
        self.count(|_| {});
        match made {
            Ok(larger) => {
                tracing::debug!(
                    "KV cache grown from {} to {} cells for a request of {needed}",
                    self.context_tokens,
                    cells
                );
                *ctx = larger;
                self.context_tokens = ctx.n_ctx();
                self.batch_tokens = ctx.n_batch().min(self.batch_option) as usize;
                self.prefix.clear();
                self.parked.clear();
                self.count(|c| c.context_growths += 1);
            }
            Err(e) => {
                let mut s = self.pending.pop_front().expect("a front element");
                s.error = Some(format!("a KV cache of {cells} cells for this request could not be made: {e}"));
                reply(s);
            }
        }
    }

    /// The longest prefix every waiting request shares (each keeps at least its last
    /// prompt token to prefill: its first token is sampled from that token's logits).
    fn pending_prefix(&self) -> Vec<LlamaToken> {
        let first = &self.pending[0].tokens;
        let shared = self
            .pending
            .iter()
            .fold(first.len() - 1, |n, s| n.min(common_prefix(first, &s.tokens)).min(s.tokens.len() - 1));
        first[..shared].to_vec()
    }

    /// Starts waiting requests, in arrival order, while a sequence is free and the KV cache
    /// holds what every started request may still need. A request starts from what a
    /// parked sequence holds when that covers more of its prompt than sequence 0 does (the
    /// next step of an agent run whose sequence finished a moment ago), else from a copy
    /// of sequence 0's prefix.
    fn admit(&mut self, ctx: &mut LlamaContext<'_>) {
        let budget = self.context_tokens as usize;
        while self.active.len() < self.max_sequences {
            let Some(next) = self.pending.front() else { break };
            if next.job.reply.is_closed() {
                let mut s = self.pending.pop_front().expect("a front element");
                s.error = Some("cancelled".into());
                reply(s);
                continue;
            }
            let limit = next.prompt_len - 1;
            let mut shared = common_prefix(&self.prefix, &next.tokens).min(limit);
            // As in `fill_prefix`: a window or recurrent state is copied whole or not at all.
            if shared < self.prefix.len() && ctx.kv_cache_seq_pos_min(0) > 0 {
                shared = 0;
            }
            let reuse = self
                .parked
                .iter()
                .enumerate()
                .map(|(i, p)| (i, common_prefix(&p.tokens, &next.tokens).min(limit)))
                .filter(|&(i, n)| {
                    let p = &self.parked[i];
                    n > shared && (n == p.tokens.len() || ctx.kv_cache_seq_pos_min(p.id) == 0)
                })
                .max_by_key(|&(_, n)| n);
            let start = reuse.map_or(shared, |(_, n)| n);
            // What it needs beyond what it starts from (a reused sequence's own cells are
            // counted as parked until it is taken).
            let needed = next.cells_beyond(start);
            let kept_parked = reuse.map(|(i, _)| self.parked[i].id);
            // Parked sequences give their cells back first when room is short.
            while self.cells_in_use() + needed > budget {
                let Some(oldest) = self.parked.iter().position(|p| Some(p.id) != kept_parked) else { break };
                let evicted = self.parked.remove(oldest);
                let _ = ctx.clear_kv_cache_seq(Some(evicted.id as u32), None, None);
            }
            // A request alone always starts: it was checked against the context when it came.
            if !self.active.is_empty() && self.cells_in_use() + needed > budget {
                break;
            }
            let mut s = self.pending.pop_front().expect("a front element");
            match kept_parked {
                Some(id) => {
                    let i = self.parked.iter().position(|p| p.id == id).expect("the parked sequence");
                    self.parked.remove(i);
                    s.id = id;
                    let _ = ctx.clear_kv_cache_seq(Some(id as u32), Some(start as u32), None);
                    s.shared = start;
                    // Its kept cells are its own now (an overestimate where they are
                    // shared with sequence 0).
                    s.cells = needed + start;
                }
                None => {
                    s.id = self.free_id(ctx);
                    let _ = ctx.clear_kv_cache_seq(Some(s.id as u32), None, None);
                    s.shared = 0;
                    if shared > 0 {
                        match ctx.copy_kv_cache_seq(0, s.id, None, Some(shared as u32)) {
                            Ok(()) => s.shared = shared,
                            Err(e) => tracing::warn!("copying the shared prefix: {e}; prefilling the whole prompt"),
                        }
                    }
                    s.cells = s.cells_beyond(s.shared);
                }
            }
            s.position = s.shared;
            self.count(|c| c.shared_tokens += s.shared as u64);
            s.deadline = deadline_after(Instant::now(), s.job.request.timeout);
            self.active.push(s);
        }
        let active = self.active.len();
        self.count(|c| c.peak_sequences = c.peak_sequences.max(active));
    }

    /// KV cells held or reserved: sequence 0's prefix, what every active request may still
    /// need, and what parked sequences hold.
    fn cells_in_use(&self) -> usize {
        self.prefix.len()
            + self.active.iter().map(|s| s.cells).sum::<usize>()
            + self.parked.iter().map(|p| p.tokens.len()).sum::<usize>()
    }

    /// A sequence id no active request uses, taken from the oldest parked sequence when
    /// every free one is parked.
    fn free_id(&mut self, ctx: &mut LlamaContext<'_>) -> i32 {
        let free = (1..=self.max_sequences as i32)
            .find(|&id| !self.active.iter().any(|a| a.id == id) && !self.parked.iter().any(|p| p.id == id));
        if let Some(id) = free {
            return id;
        }
        let evicted = self.parked.remove(0);
        let _ = ctx.clear_kv_cache_seq(Some(evicted.id as u32), None, None);
        evicted.id
    }

    /// Updates the counters (after a decode, a copy or a load), which is progress callers see.
    fn count(&self, update: impl FnOnce(&mut LlamaCppCounters)) {
        update(&mut self.counters.lock().unwrap_or_else(|e| e.into_inner()));
        self.heartbeat.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Puts the next token of every generating sequence in the batch, then as many prompt
    /// tokens of prefilling ones as fit. Returns how many tokens it holds, and how many of
    /// them are prompt tokens.
    fn fill_batch(&mut self, batch: &mut LlamaBatch) -> std::result::Result<(usize, usize), String> {
        let capacity = self.batch_tokens;
        let (mut used, mut prompt_tokens) = (0usize, 0usize);
        for s in &mut self.active {
            s.logits_at = None;
        }
        // Generating sequences first: one token each, so prefill never stalls a reply.
        let order: Vec<usize> = {
            let (decoding, prefilling): (Vec<usize>, Vec<usize>) =
                (0..self.active.len()).partition(|&i| self.active[i].tokens.len() - self.active[i].position == 1);
            decoding.into_iter().chain(prefilling).collect()
        };
        for i in order {
            let s = &mut self.active[i];
            if s.is_done() || s.position >= s.tokens.len() {
                continue;
            }
            let take = (s.tokens.len() - s.position).min(capacity - used);
            if take == 0 {
                break;
            }
            for t in s.position..s.position + take {
                let is_last = t + 1 == s.tokens.len();
                batch.add(s.tokens[t], t as i32, &[s.id], is_last).map_err(|e| format!("batch: {e}"))?;
                if is_last {
                    s.logits_at = Some(used as i32 + (t - s.position) as i32);
                }
            }
            prompt_tokens += s.prompt_len.saturating_sub(s.position).min(take);
            s.position += take;
            used += take;
        }
        Ok((used, prompt_tokens))
    }

    /// Turns a job into a sequence ready to decode, or answers it with the reason it cannot
    /// be decoded.
    fn prepare(&mut self, job: Job) -> Option<Sequence> {
        match self.tokens_and_sampler(&job.request) {
            Ok((tokens, sampler)) => {
                // Set again when it starts decoding: time spent waiting for a sequence
                // does not count against it.
                let deadline = deadline_after(job.received, job.request.timeout);
                Some(Sequence {
                    job,
                    prompt_len: tokens.len(),
                    tokens,
                    id: 0,
                    shared: 0,
                    cells: 0,
                    sampler,
                    position: 0,
                    logits_at: None,
                    generated: Vec::new(),
                    completion_tokens: 0,
                    finish: None,
                    error: None,
                    deadline,
                })
            }
            Err(e) => {
                let _ = job.reply.send(Err(e));
                None
            }
        }
    }

    /// Templating, tokenizing and the checks that keep llama.cpp's asserts from firing.
    fn tokens_and_sampler(
        &mut self,
        request: &CompletionRequest,
    ) -> skill_core::Result<(Vec<LlamaToken>, LlamaSampler)> {
        if request.max_tokens == 0 {
            return Err(backend_error("max_tokens is 0: ask for at least one token"));
        }
        let prompt = self.render(request)?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
        if tokens.is_empty() {
            return Err(backend_error("the prompt is empty"));
        }
        let needed = tokens.len() + request.max_tokens as usize;
        let limit = (self.max_context_tokens as usize).min(self.train_context.max(1) as usize);
        if needed > limit {
            let message = format!(
                "the prompt is {} tokens and up to {} more were asked for: more than the {} this model's context holds",
                tokens.len(),
                request.max_tokens,
                limit
            );
            return Err(backend_error(message));
        }
        let sampler = self.sampler(request)?;
        Ok((tokens, sampler))
    }

    /// The prompt text: the chat template applied to the messages, with the assistant's turn
    /// opened. A last assistant message is continued (see [`Student::continues_reply`]): the
    /// template opens the turn after the messages before it and the message's text follows,
    /// unclosed, so the reply starts where that text ends.
    fn render(&self, request: &CompletionRequest) -> skill_core::Result<String> {
        let (before, partial) = match request.messages.split_last() {
            Some((last, before)) if last.role == Role::Assistant => (before, Some(last.content.as_str())),
            _ => (request.messages.as_slice(), None),
        };
        let mut prompt = self.render_messages(before, true)?;
        prompt.push_str(partial.unwrap_or(""));
        Ok(prompt)
    }

    /// How many of `tokens` (the request's prompt) render its system message alone, when
    /// they begin the prompt and something follows them; else 0 (no system message, or a
    /// template that folds it into the first user turn). The agent loop's system prompt holds
    /// the tools and the active skill's steps, so it is the part of a lone request that the
    /// next run with the same skill begins with too.
    fn stable_prefix_len(&self, request: &CompletionRequest, tokens: &[LlamaToken]) -> usize {
        let [first, _, ..] = request.messages.as_slice() else { return 0 };
        if first.role != Role::System {
            return 0;
        }
        let Ok(text) = self.render_messages(std::slice::from_ref(first), false) else { return 0 };
        let vocab = self.model.vocab();
        let head = vocab.tokenize(text.as_bytes(), vocab.should_add_bos(), true);
        if !head.is_empty() && head.len() < tokens.len() && tokens.starts_with(&head) { head.len() } else { 0 }
    }

    /// The chat template applied to `messages`, with the assistant's turn opened after them
    /// when `open_reply`.
    fn render_messages(&self, messages: &[ChatMessage], open_reply: bool) -> skill_core::Result<String> {
        let messages = messages
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
            .apply_chat_template(&self.template, &messages, open_reply)
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

    /// Makes sequence 0 hold exactly `prefix` (shared by `shared_by` waiting requests),
    /// reusing what it already holds, a finished request's kept cells, or a prefix state
    /// saved on disk: the prefix several requests share (an eval's cases of one skill), or a
    /// lone request's first `stable` tokens, its system prompt (the next run with the same
    /// skill and tools begins with it).
    fn fill_prefix(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        prefix: &[LlamaToken],
        shared_by: usize,
        stable: usize,
    ) -> std::result::Result<(), String> {
        let mut keep = common_prefix(&self.prefix, prefix);
        // Sliding-window and recurrent memories do not keep every position of sequence 0
        // (the oldest fall out of the window; a recurrent state is one summary): only the
        // whole of what it holds can be reused there, never a shorter start of it.
        if keep < self.prefix.len() && ctx.kv_cache_seq_pos_min(0) > 0 {
            keep = 0;
        }
        if keep < self.prefix.len() {
            let removed = ctx.clear_kv_cache_seq(Some(0), Some(keep as u32), None).unwrap_or(false);
            if !removed {
                let _ = ctx.clear_kv_cache_seq(Some(0), None, None);
                keep = 0;
            }
            self.prefix.truncate(keep);
        }
        // Where a state on disk ends, if anywhere. A lone request's whole prompt is not worth
        // a file (the next run will not repeat it), but its system prompt may be.
        let boundary = if shared_by > 1 {
            Some(prefix.len()).filter(|&end| end - keep >= PrefixStore::MIN_TOKENS)
        } else {
            Some(stable).filter(|&end| end >= PrefixStore::MIN_SYSTEM_TOKENS && end <= prefix.len() && keep < end)
        };
        // A kept sequence that holds the whole boundary is shared below at no cost.
        let parked_covers = |end: usize| {
            self.parked.iter().any(|p| common_prefix(&p.tokens, prefix) >= end && ctx.kv_cache_seq_pos_min(p.id) == 0)
        };
        if let (Some(store), Some(end)) = (&self.prefix_store, boundary)
            && !parked_covers(end)
            && store.path(&prefix[..end]).exists()
        {
            let _ = ctx.clear_kv_cache_seq(Some(0), None, None);
            self.prefix.clear();
            keep = 0;
            // Room for the state first: llama.cpp fails a load that finds too few free cells,
            // and a failed load drops the file.
            while self.cells_in_use() + end > self.context_tokens as usize && !self.parked.is_empty() {
                let evicted = self.parked.remove(0);
                let _ = ctx.clear_kv_cache_seq(Some(evicted.id as u32), None, None);
            }
            let started = Instant::now();
            if store.load(ctx, &prefix[..end]) {
                tracing::debug!("{end} prefix tokens read from disk in {:.0?}", started.elapsed());
                self.prefix = prefix[..end].to_vec();
                self.count(|c| c.loaded_tokens += end as u64);
                keep = end;
            }
        }
        // Else a finished request's kept sequence may hold more of it: the agent loop's action
        // request extends its reasoning request's prompt and reply. Those cells are shared
        // into sequence 0 rather than prefilled again (the reasoning's 90-150 tokens cost the
        // 1.5B student 2-3 s a step on two cores). Where cells lie in the KV cache enters the
        // attention sums, so an answer can depend on what ran before in this process; the same
        // requests in the same order get the same answers.
        let from_parked = self
            .parked
            .iter()
            .map(|p| (p.id, common_prefix(&p.tokens, prefix)))
            .filter(|&(id, n)| n > keep && ctx.kv_cache_seq_pos_min(id) == 0)
            .max_by_key(|&(_, n)| n);
        if let Some((id, n)) = from_parked
            && ctx.copy_kv_cache_seq(id, 0, Some(keep as u32), Some(n as u32)).is_ok()
        {
            self.prefix.extend_from_slice(&prefix[keep..n]);
            self.count(|c| c.reused_reply_tokens += (n - keep) as u64);
            keep = n;
        }
        // Prefilled in two parts when a state is to be saved: up to the boundary, where it is
        // saved, then the rest. The split is made whether or not a file is written, so a run
        // that read the state back computes the rest exactly as the run that saved it.
        if let Some(end) = boundary
            && keep < end
        {
            self.prefill_prefix(ctx, &prefix[..end], keep)?;
            keep = end;
            if let Some(store) = &self.prefix_store {
                store.save(ctx, &prefix[..end]);
            }
        }
        self.prefill_prefix(ctx, prefix, keep)
    }

    /// Prefills `prefix[from..]` into sequence 0, which holds `prefix[..from]`.
    fn prefill_prefix(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        prefix: &[LlamaToken],
        from: usize,
    ) -> std::result::Result<(), String> {
        let mut batch = LlamaBatch::new(self.batch_tokens, 1);
        for (chunk_index, chunk) in prefix[from..].chunks(self.batch_tokens).enumerate() {
            batch.clear();
            let start = from + chunk_index * self.batch_tokens;
            for (i, token) in chunk.iter().enumerate() {
                batch.add(*token, (start + i) as i32, &[0], false).map_err(|e| format!("prefix batch: {e}"))?;
            }
            let started = Instant::now();
            let decoded = ctx.decode(&mut batch);
            self.count(|c| {
                c.prefill_tokens += chunk.len() as u64;
                c.prefill_seconds += started.elapsed().as_secs_f64();
            });
            if let Err(e) = decoded {
                let _ = ctx.clear_kv_cache_seq(Some(0), None, None);
                self.prefix.clear();
                return Err(format!("prefilling the shared prompt: {e}"));
            }
            self.prefix.extend_from_slice(chunk);
        }
        Ok(())
    }
}

/// Samples the next token of `s` from its logits and records it, or finishes it.
fn take_token(model: &LlamaModel, ctx: &LlamaContext<'_>, s: &mut Sequence) {
    let Some(at) = s.logits_at else { return };
    let token = s.sampler.sample(ctx, at);
    let vocab = model.vocab();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn a_worker_that_stops_moving_fails_its_callers_and_a_moving_queue_does_not() {
        let still = AtomicU64::new(0);
        let (_keep_open, never) = tokio::sync::oneshot::channel();
        let started = Instant::now();
        let err = await_with_watchdog(never, &still, Duration::from_millis(200), "m").await.expect_err("stuck");
        assert!(err.to_string().contains("has made no progress"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

        // A worker that keeps moving is waited for well past the stall time.
        let beat = Arc::new(AtomicU64::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ticking = beat.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                ticking.fetch_add(1, Ordering::Relaxed);
            }
            let answer = Completion {
                text: "ok".into(),
                usage: Usage::default(),
                elapsed: Duration::ZERO,
                finish_reason: "stop".into(),
            };
            let _ = tx.send(Ok(answer));
        });
        let started = Instant::now();
        let answer = await_with_watchdog(rx, &beat, Duration::from_millis(200), "m").await.expect("answered");
        assert_eq!(answer.text, "ok");
        assert!(started.elapsed() >= Duration::from_millis(900), "it waited for the whole queue");
    }

    #[test]
    fn the_kv_state_salt_names_the_locked_llama_cpp_2_version() {
        // Read at run time: a test binary built from another checkout sharing the target folder
        // keeps that checkout's compile-time path.
        let package_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests");
        let lock_path = Path::new(&package_dir).join("../../Cargo.lock");
        let lock = std::fs::read_to_string(&lock_path).expect("the workspace's Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find(|entry| entry.contains("name = \"llama-cpp-2\"\n"))
            .and_then(|entry| entry.lines().find_map(|l| l.strip_prefix("version = \"")))
            .map(|v| v.trim_end_matches('"'))
            .expect("llama-cpp-2 in Cargo.lock");
        assert_eq!(LLAMA_CPP_2_VERSION, locked);
    }
}
