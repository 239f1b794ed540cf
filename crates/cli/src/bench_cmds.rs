//! `skd bench student`: the eval workload (many prompts sharing one long skill prefix) through
//! both in-process engines in several configurations, and through llama-cpp-python (the
//! reference) on the same GGUF file, in one run.

use crate::Exit;
use crate::config::Config;
use crate::output::{JSON_SCHEMA_VERSION, print_json};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use skill_core::{ChatMessage, CompletionRequest, Role};
use std::path::{Path, PathBuf};
#[cfg(feature = "mistralrs")]
use std::sync::Arc;
use std::time::Instant;
use student::Engine;
#[cfg(feature = "llama-cpp")]
use student::{LlamaCppOptions, LlamaCppStudent, Student};
#[cfg(feature = "mistralrs")]
use student::{MistralRsOptions, MistralRsStudent};

/// A skill-like system prompt: the shape of what the eval workload shares across prompts.
const SKILL_PARAGRAPH: &str = "When the task asks you to evaluate a Boolean expression, work from the innermost parentheses outwards. \
Replace each `not True` with False and each `not False` with True before anything else. Then evaluate every `and` \
from left to right: the result is True only when both sides are True. Then evaluate every `or` from left to right: \
the result is True when either side is True. Write each intermediate expression on its own line so the reader can \
check it, and finish with the single word True or False. ";

/// Options of the benchmark.
#[derive(Debug)]
pub struct BenchArgs {
    pub model: String,
    pub prompts: usize,
    pub prefix_tokens: usize,
    pub max_tokens: u32,
    pub threads: usize,
    /// Sequences llama.cpp decodes together (0: the engine's default).
    pub sequences: usize,
    pub python: Option<String>,
    /// Run llama-cpp-python only with prefix reuse (the reference), not also without.
    pub reference_reuse_only: bool,
    pub modes: Vec<Mode>,
    /// Rewrite tensors to Q8_0 first (the default for every student): mistral.rs's
    /// scalar-only types, llama.cpp's Q5_0.
    pub transcode: bool,
    pub json: bool,
}

/// An engine configuration of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// llama.cpp, all requests at once: one shared-prefix batch (what `skd eval` does on it).
    LlamaBatched,
    /// llama.cpp, one request after another (the prefix kept in sequence 0 between them).
    LlamaSequential,
    /// mistral.rs, prefix cache on, one request after another (what `skd eval` does on it).
    Cached,
    /// mistral.rs, prefix cache off, one request after another.
    Uncached,
    /// mistral.rs, prefix cache on, all requests sent at once.
    Concurrent,
}

impl Mode {
    /// Every mode, in the order they run.
    pub const ALL: [Mode; 5] =
        [Mode::LlamaBatched, Mode::LlamaSequential, Mode::Cached, Mode::Uncached, Mode::Concurrent];

    /// The engine the mode runs on.
    pub fn engine(self) -> Engine {
        match self {
            Mode::LlamaBatched | Mode::LlamaSequential => Engine::LlamaCpp,
            Mode::Cached | Mode::Uncached | Mode::Concurrent => Engine::MistralRs,
        }
    }

    /// The modes whose engine this build has: what runs when none are named.
    pub fn built() -> Vec<Mode> {
        Mode::ALL.into_iter().filter(|m| m.engine().is_built()).collect()
    }
}

/// How a mistral.rs mode loads the model (MistralRsOptions, in words every build has).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "mistralrs"), allow(dead_code))]
struct MistralSettings {
    max_num_seqs: usize,
    prefix_cache_n: usize,
    transcode: bool,
}

/// How a llama.cpp mode loads the model (LlamaCppOptions, in words every build has).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "llama-cpp"), allow(dead_code))]
struct LlamaSettings {
    threads: usize,
    /// 0: the engine's default.
    sequences: usize,
    /// Q5_0 tensors rewritten as Q8_0 (the same values), as `skd run` loads the model.
    widen: bool,
    /// The configured model cache, where the rewritten copy is kept.
    models_dir: PathBuf,
}

#[derive(Debug, Default, Serialize)]
struct ModeResult {
    mode: String,
    wall_s: f64,
    prompt_tokens: u64,
    completion_tokens: u64,
    prefill_tok_s: Option<f64>,
    decode_tok_s: Option<f64>,
    /// llama.cpp's own counters for the run (the in-process llama.cpp modes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    llama_cpp: Option<LlamaRunCounters>,
}

/// Where a llama.cpp run's wall time and tokens went.
#[derive(Debug, Default, Serialize)]
struct LlamaRunCounters {
    prefill_tokens: u64,
    prefill_s: f64,
    decode_tokens: u64,
    decode_s: f64,
    /// Prompt tokens whose KV state was copied from another sequence, not prefilled.
    shared_prompt_tokens: u64,
    /// Prompt tokens whose KV state was read back from the model cache on disk.
    loaded_prompt_tokens: u64,
    /// Wall time outside llama_decode: templating, tokenizing, sampling, scheduling.
    outside_decode_s: f64,
}

fn workload(prompts: usize, prefix_tokens: usize) -> (String, Vec<String>) {
    // About 4 characters per token for English text.
    let mut system = String::from("You are a careful assistant. Follow this skill exactly.\n\n");
    while system.len() < prefix_tokens * 4 {
        system.push_str(SKILL_PARAGRAPH);
    }
    let values = ["True", "False"];
    let prompts = (0..prompts)
        .map(|i| {
            let (a, b, c) = (values[i % 2], values[(i / 2) % 2], values[(i / 4) % 2]);
            // BIG-Bench Hard's chain-of-thought shape: Qwen2.5-Coder-0.5B then reasons for
            // about 190 tokens (asked to "work through it step by step" it answered in one
            // token), so a long limit measures decoding and a short one mostly prefill.
            format!(
                "Evaluate the result of a random Boolean expression.\n\nQ: not ( {a} and {b} ) or {c} (case {i})\nA: Let's think step by step."
            )
        })
        .collect();
    (system, prompts)
}

fn request(system: &str, prompt: &str, max_tokens: u32) -> CompletionRequest {
    let mut r =
        CompletionRequest::new(vec![ChatMessage::new(Role::System, system), ChatMessage::new(Role::User, prompt)]);
    r.max_tokens = max_tokens;
    r
}

#[cfg(not(feature = "mistralrs"))]
async fn run_mistral(
    _path: &Path,
    _label: &str,
    _settings: MistralSettings,
    _concurrent: bool,
    _requests: &[CompletionRequest],
    _verbose: bool,
) -> Result<ModeResult> {
    Err(student::Error::EngineNotBuilt(Engine::MistralRs).into())
}

#[cfg(feature = "mistralrs")]
async fn run_mistral(
    path: &Path,
    label: &str,
    settings: MistralSettings,
    concurrent: bool,
    requests: &[CompletionRequest],
    verbose: bool,
) -> Result<ModeResult> {
    let MistralSettings { max_num_seqs, prefix_cache_n, transcode } = settings;
    let options = MistralRsOptions { max_num_seqs, prefix_cache_n, transcode };
    let student = Arc::new(MistralRsStudent::load(path, options).await?);
    // Warm-up outside the timing: page the weights in (a different prompt: no prefix help).
    student.complete_timed(&request("Hi.", "Hi.", 1)).await?;
    let mut result = ModeResult { mode: label.to_string(), ..ModeResult::default() };
    let (mut prefill_s, mut decode_s) = (0f64, 0f64);
    let started = Instant::now();
    let outcomes = if concurrent {
        let handles: Vec<_> = requests
            .iter()
            .map(|r| {
                let s = student.clone();
                let r = r.clone();
                tokio::spawn(async move { s.complete_timed(&r).await })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.context("benchmark task failed")??);
        }
        out
    } else {
        let mut out = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let (completion, timing) = student.complete_timed(r).await?;
            if verbose {
                // Per request: a prefix-cache hit shows as a prefill far shorter than the first.
                eprintln!(
                    "    request {i}: {} prompt tokens, prefill {:.2} s, decode {:.2} s, {:.2} s wall",
                    completion.usage.prompt_tokens,
                    timing.prompt_secs,
                    timing.completion_secs,
                    completion.elapsed.as_secs_f64()
                );
            }
            out.push((completion, timing));
        }
        out
    };
    result.wall_s = started.elapsed().as_secs_f64();
    for (completion, timing) in &outcomes {
        result.prompt_tokens += u64::from(completion.usage.prompt_tokens);
        result.completion_tokens += u64::from(completion.usage.completion_tokens);
        prefill_s += f64::from(timing.prompt_secs);
        decode_s += f64::from(timing.completion_secs);
    }
    if !concurrent {
        result.prefill_tok_s = (prefill_s > 0.0).then(|| result.prompt_tokens as f64 / prefill_s);
        result.decode_tok_s = (decode_s > 0.0).then(|| result.completion_tokens as f64 / decode_s);
    }
    Ok(result)
}

#[cfg(not(feature = "llama-cpp"))]
async fn run_llama(
    _path: &Path,
    _label: &str,
    _settings: LlamaSettings,
    _concurrent: bool,
    _requests: &[CompletionRequest],
) -> Result<ModeResult> {
    Err(student::Error::EngineNotBuilt(Engine::LlamaCpp).into())
}

#[cfg(feature = "llama-cpp")]
async fn run_llama(
    path: &Path,
    label: &str,
    settings: LlamaSettings,
    concurrent: bool,
    requests: &[CompletionRequest],
) -> Result<ModeResult> {
    let LlamaSettings { threads, sequences, widen, models_dir } = settings;
    let defaults = LlamaCppOptions::default();
    let widened_dir = if widen { LlamaCppOptions::widened_dir_in(&models_dir) } else { None };
    let max_sequences = if sequences == 0 { defaults.max_sequences } else { sequences };
    let options = LlamaCppOptions { threads: Some(threads), max_sequences, widened_dir, ..defaults };
    let student = LlamaCppStudent::load(path, options).await?;
    // Warm-up outside the timing: page the weights in (a different prompt: no prefix help).
    student.complete(&request("Hi.", "Hi.", 1)).await?;
    let mut result = ModeResult { mode: label.to_string(), ..ModeResult::default() };
    let before = student.counters();
    let started = Instant::now();
    let outcomes = if concurrent {
        student.complete_batch(requests).await.into_iter().collect::<skill_core::Result<Vec<_>>>()?
    } else {
        let mut out = Vec::new();
        for r in requests {
            out.push(student.complete(r).await?);
        }
        out
    };
    result.wall_s = started.elapsed().as_secs_f64();
    for completion in &outcomes {
        result.prompt_tokens += u64::from(completion.usage.prompt_tokens);
        result.completion_tokens += u64::from(completion.usage.completion_tokens);
    }
    let after = student.counters();
    let (prefill_s, decode_s) =
        (after.prefill_seconds - before.prefill_seconds, after.decode_seconds - before.decode_seconds);
    let counters = LlamaRunCounters {
        prefill_tokens: after.prefill_tokens - before.prefill_tokens,
        prefill_s,
        decode_tokens: after.decode_tokens - before.decode_tokens,
        decode_s,
        shared_prompt_tokens: after.shared_tokens - before.shared_tokens,
        loaded_prompt_tokens: after.loaded_tokens - before.loaded_tokens,
        outside_decode_s: result.wall_s - prefill_s - decode_s,
    };
    let rate = |tokens: u64, secs: f64| (secs > 0.0).then(|| tokens as f64 / secs);
    result.prefill_tok_s = rate(counters.prefill_tokens, counters.prefill_s);
    result.decode_tok_s = rate(counters.decode_tokens, counters.decode_s);
    result.llama_cpp = Some(counters);
    Ok(result)
}

fn run_llama_cpp(
    python: &str,
    model: &Path,
    system: &str,
    prompts: &[String],
    max_tokens: u32,
    threads: usize,
    reuse_only: bool,
) -> Result<Vec<ModeResult>> {
    let dir = tempfile::tempdir()?;
    let workload = dir.path().join("workload.json");
    std::fs::write(
        &workload,
        serde_json::to_vec(&json!({"system": system, "prompts": prompts, "max_tokens": max_tokens}))?,
    )?;
    // The script travels inside the binary: an installed `skd` has no checkout to find it in.
    let script = dir.path().join("llamacpp_bench.py");
    std::fs::write(&script, LLAMA_CPP_BENCH_SCRIPT)?;
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(model)
        .arg(&workload)
        .arg(threads.to_string())
        .args(reuse_only.then_some("reuse-only"))
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "llama.cpp benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("llama.cpp benchmark printed no JSON")?;
    Ok(["with_prefix_reuse", "without_prefix_reuse"]
        .iter()
        .filter(|k| v.get(**k).is_some())
        .map(|k| ModeResult {
            mode: format!("llama-cpp-python {}", k.replace('_', " ")),
            wall_s: v[k]["wall_s"].as_f64().unwrap_or(f64::NAN),
            prompt_tokens: v[k]["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: v[k]["completion_tokens"].as_u64().unwrap_or(0),
            prefill_tok_s: None,
            decode_tok_s: None,
            llama_cpp: None,
        })
        .collect())
}

/// The reference's side of the benchmark, run by the Python that has llama-cpp-python.
const LLAMA_CPP_BENCH_SCRIPT: &str = include_str!("../../../scripts/llamacpp_bench.py");

pub async fn bench_student(config: &Config, args: BenchArgs) -> Result<Exit> {
    let path = skill_core::blocking(|| crate::run_cmds::model_path(config, &args.model, args.json))?;
    if args.modes.is_empty() && args.python.is_none() {
        anyhow::bail!("nothing to measure: name at least one mode or pass --python");
    }
    // Before minutes of measuring, not in the middle of them.
    if let Some(mode) = args.modes.iter().find(|m| !m.engine().is_built()) {
        let name = clap::ValueEnum::to_possible_value(mode).map(|v| v.get_name().to_owned()).unwrap_or_default();
        anyhow::bail!("mode {name}: {}", student::Error::EngineNotBuilt(mode.engine()));
    }
    let (system, prompts) = workload(args.prompts, args.prefix_tokens);
    let requests: Vec<CompletionRequest> = prompts.iter().map(|p| request(&system, p, args.max_tokens)).collect();
    let mut results = Vec::new();
    for mode in &args.modes {
        let mistral =
            |max_num_seqs, prefix_cache_n| MistralSettings { max_num_seqs, prefix_cache_n, transcode: args.transcode };
        let (label, options, at_once) = match mode {
            Mode::LlamaBatched => ("skd llama.cpp, one shared-prefix batch", None, true),
            Mode::LlamaSequential => ("skd llama.cpp, sequential", None, false),
            Mode::Cached => ("skd mistral.rs prefix cache, sequential", Some(mistral(1, 16)), false),
            Mode::Uncached => ("skd mistral.rs no prefix cache, sequential", Some(mistral(1, 0)), false),
            Mode::Concurrent => {
                ("skd mistral.rs prefix cache, all at once", Some(mistral(args.prompts.max(1), 16)), true)
            }
        };
        if !args.json {
            eprintln!("running: {label}");
        }
        let r = match options {
            Some(options) => run_mistral(&path, label, options, at_once, &requests, !args.json).await?,
            None => {
                let llama = LlamaSettings {
                    threads: args.threads,
                    sequences: args.sequences,
                    widen: args.transcode,
                    models_dir: config.models_dir.value.clone(),
                };
                run_llama(&path, label, llama, at_once, &requests).await?
            }
        };
        if !args.json {
            // Each mode takes minutes on a CPU: show it as soon as it is measured.
            eprintln!(
                "  {:.2} s wall, {} prompt + {} completion tokens",
                r.wall_s, r.prompt_tokens, r.completion_tokens
            );
            if let Some(c) = &r.llama_cpp {
                eprintln!(
                    "  prefill {} tokens in {:.2} s, decode {} tokens in {:.2} s, {} prompt tokens shared, {} read \
                     from disk; {:.2} s outside llama_decode",
                    c.prefill_tokens,
                    c.prefill_s,
                    c.decode_tokens,
                    c.decode_s,
                    c.shared_prompt_tokens,
                    c.loaded_prompt_tokens,
                    c.outside_decode_s
                );
            }
        }
        results.push(r);
    }
    let llama = match &args.python {
        Some(python) => {
            if !args.json {
                eprintln!("running: llama.cpp");
            }
            match run_llama_cpp(
                python,
                &path,
                &system,
                &prompts,
                args.max_tokens,
                args.threads,
                args.reference_reuse_only,
            ) {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("llama.cpp: {e:#}");
                    None
                }
            }
        }
        None => None,
    };
    // One ratio per engine, each for the configuration `skd eval` runs it in: llama.cpp as
    // one batch, mistral.rs sequential with its prefix cache.
    let reference = llama.as_ref().map(|l| l[0].wall_s);
    let ratio_of = |mode: Mode| {
        let ours = args.modes.iter().position(|m| *m == mode).map(|i| results[i].wall_s);
        reference.zip(ours).map(|(r, o)| r / o)
    };
    let (ratio_llama, ratio_mistral) = (ratio_of(Mode::LlamaBatched), ratio_of(Mode::Cached));
    if let Some(l) = llama {
        results.extend(l);
    }
    if args.json {
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "model": path,
            "prompts": args.prompts,
            "prompt_tokens_each": results.first().map(|r| r.prompt_tokens / args.prompts.max(1) as u64),
            "max_tokens": args.max_tokens,
            "threads": args.threads,
            "results": results,
            "throughput_ratio_vs_llama_cpp_prefix_reuse": {"llama.cpp": ratio_llama, "mistral.rs": ratio_mistral},
        }))?;
    } else {
        println!(
            "model {}; {} prompts of ~{} prompt tokens each, {} tokens out",
            path.display(),
            args.prompts,
            results.first().map(|r| r.prompt_tokens / args.prompts.max(1) as u64).unwrap_or(0),
            args.max_tokens
        );
        println!("{:<44} {:>9} {:>10} {:>10}", "mode", "wall s", "prefill/s", "decode/s");
        for r in &results {
            let f = |x: Option<f64>| x.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            println!("{:<44} {:>9.2} {:>10} {:>10}", r.mode, r.wall_s, f(r.prefill_tok_s), f(r.decode_tok_s));
        }
        if reference.is_none() {
            println!("llama-cpp-python not measured (pass --python $(scripts/install-llama-cpp.sh))");
        }
        for (engine, ratio) in [("llama.cpp", ratio_llama), ("mistral.rs", ratio_mistral)] {
            if let Some(r) = ratio {
                println!(
                    "throughput ratio of skd on {engine} vs llama-cpp-python with prefix reuse: {r:.2} (>= 1.0: skd is at least as fast)"
                );
            }
        }
    }
    Ok(Exit::Ok)
}
