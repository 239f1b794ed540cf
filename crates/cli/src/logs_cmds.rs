//! `skd logs`: what skd would learn from, read from the agents' session logs.

use crate::Exit;
use crate::config::Config;
use crate::output::{JSON_SCHEMA_VERSION, one_line, print_json};
use agent_logs::{EpisodeFilter, EpisodeStore, ScanOptions, parse_since};
use anyhow::Result;
use serde_json::json;
use skill_core::redact::Redactor;
use std::time::Duration;

/// Options of `skd logs`.
pub struct LogsArgs {
    /// Names checked by clap against `agent_logs::SOURCE_NAMES`.
    pub sources: Vec<String>,
    pub since: Option<String>,
    pub wait_minutes: u64,
    pub json: bool,
}

/// Reads what is new in the logs into the episode store, then lists the episodes.
pub fn logs(config: &Config, args: LogsArgs) -> Result<Exit> {
    let read = match read_episodes(config, &args.sources, args.since.as_deref(), args.wait_minutes)? {
        Ok(read) => read,
        Err(code) => return Ok(code),
    };
    let (report, sources) = (&read.report, &read.sources);
    let episodes: Vec<_> = read.store.episodes().into_iter().filter(|e| read.filter.matches(e)).collect();
    if args.json {
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "scan": report,
            "episodes": episodes,
        }))?;
        return Ok(Exit::Ok);
    }
    let count = |m: &std::collections::BTreeMap<String, usize>| m.values().sum::<usize>();
    eprintln!(
        "read {} new or changed session files ({} episodes), {} unchanged, {} still being written",
        count(&report.read),
        count(&report.episodes),
        count(&report.unchanged),
        count(&report.waiting)
    );
    for source in sources {
        let roots: Vec<String> = source.roots().iter().map(|r| r.display().to_string()).collect();
        eprintln!("  {:<12} {}", source.name(), roots.join(", "));
    }
    for e in &episodes {
        let time = e.time.as_deref().map(|t| t.get(..16).unwrap_or(t).replace('T', " ")).unwrap_or_else(|| "-".into());
        let outcome = e.outcome.kind.as_str();
        let skill = e.skill.as_ref().map(|s| format!("  [{}]", s.name)).unwrap_or_default();
        let task: String = one_line(&e.task).chars().take(100).collect();
        println!("{time:<16}  {:<11}  {outcome:<7}  {task}{skill}", e.source);
        let evidence =
            if e.outcome.evidence.is_empty() { String::new() } else { format!("  ({})", e.outcome.evidence) };
        println!("{:<16}  {}{evidence}", "", e.file.display());
    }
    if episodes.is_empty() {
        eprintln!("no episodes");
    }
    Ok(Exit::Ok)
}

/// The episode store after reading what is new in the logs, and which of its episodes a
/// command shows.
pub(crate) struct Read {
    pub(crate) store: EpisodeStore,
    report: agent_logs::ScanReport,
    sources: Vec<Box<dyn agent_logs::LogSource>>,
    pub(crate) filter: EpisodeFilter,
}

/// Reads what is new in `sources` (all when empty) into the episode store, telling of files
/// skipped; `Err` with the exit code after a usage error (a `--since` that is not a time).
pub(crate) fn read_episodes(
    config: &Config,
    sources: &[String],
    since: Option<&str>,
    wait_minutes: u64,
) -> Result<std::result::Result<Read, Exit>> {
    let since = match since {
        Some(text) => match parse_since(text) {
            Some(t) => Some(t),
            None => {
                eprintln!("error: --since {text}: not a date (2026-12-01) or an RFC 3339 time");
                return Ok(Err(Exit::Usage));
            }
        },
        None => None,
    };
    let chosen: Vec<_> = agent_logs::sources(config.runs_dir.value.clone(), &config.agent_log_dirs.value)
        .into_iter()
        .filter(|s| sources.is_empty() || sources.iter().any(|n| n == s.name()))
        .collect();
    let mut store = EpisodeStore::open(&config.state_dir.value.join("logs"))?;
    let options = ScanOptions { quiet: Duration::from_secs(wait_minutes * 60), ..ScanOptions::default() };
    let report = store.scan(&chosen, &options, &Redactor::from_env())?;
    for p in &report.problems {
        eprintln!("warning: skipped {}", p.message);
    }
    Ok(Ok(Read { store, report, sources: chosen, filter: EpisodeFilter { sources: sources.to_vec(), since } }))
}

/// Options of `skd mine`.
pub struct MineArgs {
    pub since: Option<String>,
    pub min_episodes: usize,
    pub wait_minutes: u64,
    pub write_suites: Option<std::path::PathBuf>,
    /// Ask this teacher ("": the configured one) for each proposal's job sentence.
    pub teacher: Option<String>,
    pub json: bool,
}

/// The teacher's job sentence for each proposal in place of its most central task (kept in
/// `central_task`); a proposal whose answer is unusable keeps its task, and says why on
/// stderr.
fn describe_jobs(
    config: &Config,
    spec: &str,
    episodes: &[&agent_logs::Episode],
    proposals: &mut [optimizer::Proposal],
    quiet: bool,
) -> Result<()> {
    use anyhow::Context;
    crate::runtime()?.block_on(async {
        let spec = Some(spec).filter(|s| !s.is_empty());
        let teacher = crate::eval_cmds::load_teacher(config, spec, quiet).await?.context(
            "--teacher without a value needs a configured teacher: set SKD_TEACHER or put `teacher = ...` in the \
             config, or pass --teacher URL#model",
        )?;
        let timeout = optimizer::distill::DistillConfig::default().teacher_timeout();
        for p in proposals.iter_mut() {
            let members = p.members_in(episodes);
            let described = optimizer::job::describe_job(teacher.as_ref(), &members, timeout).await?;
            match described.sentence {
                Some(sentence) => p.central_task = Some(std::mem::replace(&mut p.job, sentence)),
                None => eprintln!(
                    "the teacher's job sentence for \"{}\" was not used: {}",
                    one_line(&p.job),
                    described.unusable.unwrap_or_default()
                ),
            }
        }
        Ok(())
    })
}

/// Reads what is new in the logs, then proposes the skills that should exist from every
/// episode kept (or those since `--since`).
pub fn mine(config: &Config, args: MineArgs) -> Result<Exit> {
    let read = match read_episodes(config, &[], args.since.as_deref(), args.wait_minutes)? {
        Ok(read) => read,
        Err(code) => return Ok(code),
    };
    let episodes: Vec<_> = read.store.episodes().into_iter().filter(|e| read.filter.matches(e)).collect();
    let library = library_skills(config);
    let cached = episode_embedder(config, args.json);
    let mine_config = optimizer::MineConfig { min_episodes: args.min_episodes, ..optimizer::MineConfig::default() };
    let mut mined = optimizer::mine(&episodes, &library, &cached, &mine_config)?;
    if let Some(spec) = &args.teacher {
        describe_jobs(config, spec, &episodes, &mut mined.proposals, args.json)?;
    }
    let mut suites = Vec::new();
    if let Some(dir) = &args.write_suites {
        for p in &mined.proposals {
            let name = match (p.kind, &p.skill) {
                (optimizer::ProposalKind::Refine, Some(skill)) => skill.clone(),
                _ => optimizer::nightly::mined_name(&p.job),
            };
            let members = p.members_in(&episodes);
            let suite = optimizer::suite_from_episodes(&name, &members);
            if suite.evals.is_empty() {
                continue;
            }
            let path = evals::EvalSuite::path_in(&dir.join(&name));
            suite.save(&path)?;
            suites.push(json!({"job": p.job, "skill": name, "path": path, "cases": suite.evals.len()}));
        }
    }
    if args.json {
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "episodes": mined.episodes,
            "jobs": mined.jobs,
            "proposals": mined.proposals,
            "suites": suites,
        }))?;
        return Ok(Exit::Ok);
    }
    eprintln!(
        "{} episodes, {} jobs, {} proposals (a job needs {} episodes)",
        mined.episodes,
        mined.jobs,
        mined.proposals.len(),
        args.min_episodes
    );
    for p in &mined.proposals {
        let what = match (p.kind, &p.skill) {
            (optimizer::ProposalKind::Refine, Some(s)) => format!("refine {s}"),
            _ => "new".to_string(),
        };
        let sources: Vec<String> = p.sources.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!(
            "{what:<22} {}  ({} episodes, {} failed; {}; each {})",
            one_line(&p.job),
            p.episodes,
            p.failures,
            sources.join(", "),
            p.cost_summary()
        );
        for e in &p.evidence {
            let outcome = e.outcome.as_str();
            let task: String = one_line(&e.task).chars().take(90).collect();
            println!("{:<22}   {outcome:<7} {task}  [{}]", "", e.source);
        }
    }
    for s in &suites {
        println!("suite: {} ({} cases)", s["path"].as_str().unwrap_or(""), s["cases"]);
    }
    Ok(Exit::Ok)
}

/// The library's skills as mining sees them (name and description; invalid ones left out).
pub(crate) fn library_skills(config: &Config) -> Vec<optimizer::LibrarySkill> {
    config
        .library()
        .discover()
        .skills
        .iter()
        .filter_map(|entry| {
            let (skill, _) = skill_core::validate_file(&entry.skill_md(), skill_core::ValidationMode::Lenient);
            skill
                .map(|s| optimizer::LibrarySkill { name: entry.name.clone(), description: s.description().to_string() })
        })
        .collect()
}

/// The embedder of episodes and skills. Each task is embedded once: the vectors are kept
/// beside the episodes, and the model is loaded only when some task or skill is new.
pub(crate) fn episode_embedder(config: &Config, quiet: bool) -> skill_core::embed_cache::CachedEmbedder<'_> {
    skill_core::embed_cache::CachedEmbedder::lazy(EMBEDDING_MODEL_ID, &config.state_dir.value.join("logs"), move || {
        load_embedder(config, quiet).map_err(|e| skill_core::Error::backend("all-MiniLM-L6-v2", format!("{e:#}")))
    })
}

/// The name the embedding model's vectors are cached under (the model file's stem).
const EMBEDDING_MODEL_ID: &str = "all-MiniLM-L6-v2";

/// The sentence-embedding model, pulled into the model cache on first use.
#[cfg(feature = "embeddings")]
pub fn load_embedder(config: &Config, quiet: bool) -> Result<Box<dyn skill_core::Embedder>> {
    use student::models::{ALL_MINILM_L6_V2, ModelStore, find_known};
    let known = find_known(ALL_MINILM_L6_V2).expect("a known model");
    let store = ModelStore::new(&config.models_dir.value);
    if !store.is_verified(&known) && !quiet {
        eprintln!("pulling {} (the embedding model, {} MB)...", known.display_name, 91);
    }
    let weights = store.pull(&known, &mut |_| {})?;
    let [tokenizer, model_config] = [0, 1].map(|i| store.companion_path(&known.companions[i]));
    Ok(Box::new(embed::MiniLm::load(&weights, &tokenizer, &model_config)?))
}

/// A build without the embedding model (the quick start's) says which commands need it.
#[cfg(not(feature = "embeddings"))]
pub fn load_embedder(_config: &Config, _quiet: bool) -> Result<Box<dyn skill_core::Embedder>> {
    anyhow::bail!(
        "this build of skd has no embedding model, which `skd mine`, `skd nightly`, `skd search --hybrid` and `skd recall --hybrid` need: \
         build it with `--features embeddings` (on by default)"
    )
}

/// `skd feedback RUN good|bad [--note TEXT]`: appends the user's verdict to a run's
/// transcript, where `skd logs` (and the nightly miner) read it as the run's outcome.
pub fn feedback(config: &Config, run: &str, good: bool, note: Option<String>) -> Result<Exit> {
    let as_path = std::path::Path::new(run);
    let path = if as_path.extension().is_some_and(|e| e == "jsonl") && as_path.is_file() {
        as_path.to_path_buf()
    } else {
        config.runs_dir.value.join(format!("{run}.jsonl"))
    };
    if !path.is_file() {
        return Err(crate::output::NotFound(format!(
            "no run `{run}`: {} does not exist (run ids are printed by `skd run` and listed by `skd logs --source skd`)",
            path.display()
        ))
        .into());
    }
    let verdict = if good { agent_loop::transcript::Verdict::Good } else { agent_loop::transcript::Verdict::Bad };
    agent_loop::transcript::append_feedback(&path, verdict, note, &Redactor::from_env())?;
    println!("recorded: {} for {}", if good { "good" } else { "bad" }, path.display());
    Ok(Exit::Ok)
}
