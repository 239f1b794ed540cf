//! `skd eval`: a skill's suite with the skill and against a baseline, with reports.

use crate::Exit;
use crate::config::Config;
use crate::output::{JSON_SCHEMA_VERSION, print_json};
use anyhow::{Context, Result, bail};
use evals::report::{Benchmark, BenchmarkEntry};
use evals::run::default_cache_dir;
use evals::{CaseResult, EvalSuite, Evaluator, RunnerConfig, SkillText, Split};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use skill_core::versions::{Revision, WorkingCopy};
use skill_core::{Student, Teacher, VersionStore};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use teacher::{OpenAiTeacher, OpenAiTeacherConfig, StudentTeacher};

/// What the skill is compared against.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// The student with no skill.
    NoSkill,
    /// The previous recorded version of the skill.
    Previous,
    /// Another `SKILL.md`.
    File(PathBuf),
    /// No baseline run.
    Skip,
}

impl std::str::FromStr for Baseline {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "none" => Baseline::NoSkill,
            "previous" => Baseline::Previous,
            "skip" => Baseline::Skip,
            path => Baseline::File(PathBuf::from(path)),
        })
    }
}

/// `skd eval` arguments.
#[derive(Debug, Clone)]
pub struct EvalArgs {
    pub skill: String,
    pub student: Option<String>,
    pub teacher: Option<String>,
    pub baseline: Baseline,
    pub split: Option<Split>,
    pub no_cache: bool,
    pub max_tokens: u32,
    pub parallel: usize,
    pub style: crate::agent_cmds_style::Style,
    /// Agent cases find the skill in the library: (catalog size, note excerpts).
    pub library: Option<(usize, usize)>,
    pub json: bool,
}

/// Builds the teacher a spec names: `URL#model` for an OpenAI-compatible endpoint (key from
/// [`teacher_api_key`]), or a local model id / .gguf path run in-process. Without a spec, the
/// configured teacher (`SKD_TEACHER`, `teacher` in the config, `OPENAI_MODEL`); `None` when
/// there is none.
pub async fn load_teacher(config: &Config, spec: Option<&str>, quiet: bool) -> Result<Option<Arc<dyn Teacher>>> {
    let Some(spec) = spec.map(str::to_string).or_else(|| config.teacher.value.clone()) else { return Ok(None) };
    if spec.starts_with("http://") || spec.starts_with("https://") {
        let (url, model) = spec
            .split_once('#')
            .with_context(|| format!("teacher `{spec}`: name the model after `#`, e.g. {spec}#gpt-4o-mini"))?;
        let mut teacher_config = OpenAiTeacherConfig::new(url, model);
        teacher_config.prices = config.teacher_prices();
        teacher_config.api_key = teacher_api_key();
        // On stderr even with --json: it never mixes with the JSON on stdout.
        if teacher_config.api_key.is_some() && sends_key_in_clear(url) {
            eprintln!("warning: the teacher's API key goes to {url} unencrypted (plain http to another host)");
        }
        return Ok(Some(Arc::new(OpenAiTeacher::new(teacher_config)?)));
    }
    let student = crate::run_cmds::load_student(config, &spec, quiet).await?;
    Ok(Some(Arc::new(StudentTeacher::new(student))))
}

/// The teacher endpoint's key: `SKD_TEACHER_API_KEY` (for a provider other than OpenAI, so
/// an OpenAI key is not sent there), else `OPENAI_API_KEY`. `SKD_TEACHER_API_KEY` set, even
/// empty, is the choice: empty means no key at all.
fn teacher_api_key() -> Option<String> {
    let key = std::env::var("SKD_TEACHER_API_KEY").or_else(|_| std::env::var("OPENAI_API_KEY")).ok()?;
    Some(key).filter(|k| !k.trim().is_empty())
}

/// Whether a key sent to `url` would cross the network unencrypted: plain http to a host
/// other than this machine.
fn sends_key_in_clear(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else { return false };
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(name)) => !name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        None => false,
    }
}

/// Runner settings for a skill's suite: per-case transcripts under
/// `<skill>/evals/results/runs/<UTC time>/`, files relative to the skill, the shared cache
/// unless `cache` is off.
fn suite_runner(skill_dir: &std::path::Path, max_tokens: u32, parallelism: usize, cache: bool) -> RunnerConfig {
    let run_stamp = skill_core::time::rfc3339(skill_core::time::now_unix()).replace(':', "-");
    RunnerConfig {
        max_tokens,
        cache_dir: cache.then(default_cache_dir),
        transcript_dir: Some(skill_dir.join("evals/results/runs").join(run_stamp)),
        files_root: Some(skill_dir.to_path_buf()),
        parallelism,
        ..RunnerConfig::default()
    }
}

pub async fn eval(config: &Config, args: EvalArgs) -> Result<Exit> {
    // With the library, a skill under test is the library's copy, found by retrieval: a
    // baseline that is another text of the skill would run the same copy.
    if args.library.is_some() && matches!(args.baseline, Baseline::Previous | Baseline::File(_)) {
        bail!("--library compares the library's skill with no skill: use --baseline none or skip");
    }
    let entry = config.library().find(&args.skill)?;
    let suite_path = EvalSuite::path_in(&entry.dir);
    if !suite_path.exists() {
        bail!(
            "{} has no eval suite: write {} (see docs/evals.md) or let `skd distill` draft one",
            args.skill,
            suite_path.display()
        );
    }
    let suite = EvalSuite::load(&suite_path)?;
    let markdown =
        std::fs::read_to_string(entry.skill_md()).with_context(|| format!("reading {}", entry.skill_md().display()))?;
    let skill = SkillText { name: args.skill.clone(), markdown };
    let store = VersionStore::new(&entry.dir);
    let version = match store.working_copy()? {
        WorkingCopy::Recorded { version } => Some(version),
        _ => None,
    };
    let baseline_skill: Option<(String, Option<SkillText>)> = match &args.baseline {
        Baseline::Skip => None,
        Baseline::NoSkill => Some(("no skill".into(), None)),
        Baseline::Previous => {
            let history = store.history()?;
            let current = version.unwrap_or(u32::MAX);
            let previous = history
                .iter()
                .rev()
                .find(|v| v.version < current)
                .with_context(|| format!("{} has no earlier version to compare with", args.skill))?;
            let text = store.content(Revision::Version(previous.version))?;
            Some((format!("v{}", previous.version), Some(SkillText { name: args.skill.clone(), markdown: text })))
        }
        Baseline::File(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some((path.display().to_string(), Some(SkillText { name: args.skill.clone(), markdown: text })))
        }
    };

    // The sealed test split is run only when asked for: a look at it while a skill is being
    // worked on would unseal it.
    let sealed = suite.split(evals::Split::Test).len();
    let cases: Vec<&evals::EvalCase> = match args.split {
        Some(split) => suite.split(split),
        None => suite.evals.iter().filter(|c| c.split != evals::Split::Test).collect(),
    };
    if cases.is_empty() {
        match args.split {
            None if sealed > 0 => {
                bail!("{} has only sealed test cases ({sealed}); `--split test` runs them", suite_path.display())
            }
            _ => bail!("no cases to run in {}", suite_path.display()),
        }
    }
    if args.split.is_none() && sealed > 0 && !args.json {
        eprintln!("the sealed test split ({sealed} cases) is left out; `--split test` runs it");
    }
    let student_spec = args.student.clone().unwrap_or_else(|| config.student.value.clone());
    let student: Arc<dyn Student> = crate::run_cmds::load_student(config, &student_spec, args.json).await?;
    let teacher = load_teacher(config, args.teacher.as_deref(), args.json).await?;
    let results_dir = entry.dir.join("evals").join("results");
    let agent_library = match args.library {
        Some((catalog_size, notes_in_prompt)) => {
            // Brought up to date first: a skill is often evaluated right after an edit. An
            // index update reads and hashes every note: blocking work, off the runtime.
            let retriever = skill_core::blocking(|| -> Result<_> {
                crate::search_cmds::update_index(config, false, false)?;
                Ok(Arc::new(retrieval::SearchIndex::open(&config.index_dir.value)?))
            })?;
            Some(evals::AgentLibrary {
                retriever,
                library: config.library(),
                catalog_size,
                notes_in_prompt,
                confident_ratio: config.confident_ratio.value,
                confident_min_score: config.confident_min_score.value,
            })
        }
        None => None,
    };
    let runner = RunnerConfig {
        agent_constraint: args.style.constraint,
        agent_placement: args.style.placement,
        agent_history: args.style.history,
        agent_library,
        ..suite_runner(&entry.dir, args.max_tokens, args.parallel, !args.no_cache)
    };
    let evaluator = Evaluator { student: student.clone(), judge: teacher.as_deref(), suite: &suite, config: &runner };
    let quiet = args.json;
    let progress = |label: &str| {
        let label = label.to_string();
        move |r: &CaseResult| {
            if !quiet {
                let mark = if r.passed { "pass" } else { "FAIL" };
                let note = r.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
                let cached = if r.cached { " [cached]" } else { "" };
                eprintln!("  {label}: {} {mark}{cached}{note}", r.id);
            }
        }
    };
    let with_label = version.map(|v| format!("v{v}")).unwrap_or_else(|| "working copy".into());
    if !quiet {
        eprintln!("{} cases, student {}", cases.len(), student.model_id());
    }
    let with = evaluator.run(&cases, Some(&skill), &with_label, &mut progress(&with_label)).await?;
    let base = match &baseline_skill {
        Some((label, text)) => Some(evaluator.run(&cases, text.as_ref(), label, &mut progress(label)).await?),
        None => None,
    };
    let entry_record = BenchmarkEntry::new(&with, base.as_ref(), version);
    // A run through the library measures retrieval as well as the skill: it is printed, not
    // recorded beside (or in place of) the skill's own figures.
    let library = args.library.is_some();
    let paths = if library {
        None
    } else {
        let mut benchmark = Benchmark::load(&results_dir, &args.skill)?;
        benchmark.push(entry_record.clone());
        Some(benchmark.write(&results_dir)?)
    };
    if let Some(v) = version.filter(|_| !library) {
        let mut scores = BTreeMap::new();
        scores.insert("pass_rate".to_string(), with.rate().rate);
        scores.insert("tokens_per_case".to_string(), with.tokens_per_case());
        if let (Some(lift), Some((label, _))) = (entry_record.lift, &baseline_skill) {
            scores.insert(format!("lift_vs_{}", label.replace(' ', "_")), lift.delta);
        }
        // Takes the history's file lock.
        skill_core::blocking(|| store.record_scores(v, &scores))?;
    }

    if args.json {
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "skill": args.skill,
            "entry": entry_record,
            "reports": paths.as_ref().map(|p| json!({"json": p.json, "markdown": p.markdown, "html": p.html})),
        }))?;
    } else {
        println!("{:<16} {}", with.label, with.rate());
        if let Some(b) = &base {
            println!("{:<16} {}", b.label, b.rate());
        }
        if let Some(lift) = entry_record.lift {
            println!("lift             {lift}");
        }
        println!(
            "tokens/case      {:.0} with the skill{}",
            with.tokens_per_case(),
            base.as_ref().map(|b| format!(", {:.0} {}", b.tokens_per_case(), b.label)).unwrap_or_default()
        );
        println!(
            "seconds/case     {:.1} with the skill{}",
            with.seconds_per_case(),
            base.as_ref().map(|b| format!(", {:.1} {}", b.seconds_per_case(), b.label)).unwrap_or_default()
        );
        match &paths {
            Some(paths) => println!("report           {}", paths.html.display()),
            None => println!("report           none: a --library run is not recorded"),
        }
    }
    Ok(if with.errors() > 0 { Exit::Negative } else { Exit::Ok })
}

/// `skd bbh import`: BIG-Bench Hard tasks as skills with suites, in the skill library.
pub fn bbh_import(
    config: &Config,
    tasks: &[String],
    data: Option<PathBuf>,
    sizes: optimizer::bbh::SplitSizes,
    seed: u64,
    force: bool,
) -> Result<Exit> {
    let data = data.unwrap_or_else(optimizer::bbh::default_data_dir);
    let tasks: Vec<String> = if tasks.is_empty() { optimizer::bbh::list_tasks(&data)? } else { tasks.to_vec() };
    for task in &tasks {
        let imported = optimizer::bbh::import(&data, task, sizes, seed)?;
        let dir = config.skills_dir.value.join(&imported.skill_name);
        let suite_path = EvalSuite::path_in(&dir);
        if suite_path.exists() && !force {
            // A new split that only adds cases (every stored case keeps its split and grading:
            // a grown validation split, or a test split grown from cases no run has seen) may
            // replace the suite; the skill and its versions stay as they are.
            let existing = EvalSuite::load(&suite_path)?;
            let change = optimizer::bbh::test_split_change(&existing, &imported.suite);
            if let optimizer::bbh::TestSplitChange::Changed(why) = &change {
                bail!(
                    "{} exists and a re-split may only add cases (so the sealed test split, and the cases runs \
                     trained and selected on, stay as they are), but here {why}, so it is not replaced (pass \
                     --force to re-split anyway: results on the old test split are then not comparable)",
                    suite_path.display()
                );
            }
            if existing == imported.suite {
                println!("{}: suite unchanged -> {}", imported.skill_name, dir.display());
                continue;
            }
            let state = optimizer::distill::state_path(&dir);
            if !optimizer::bbh::selection_cases_kept(&existing, &imported.suite)
                && optimizer::distill::load_state(&dir).is_ok_and(|s| s.report.is_none())
            {
                bail!(
                    "an unfinished distillation ({}) measured its candidates on the current validation split; \
                     finish it (skd distill {} --resume) or set it aside (--restart) before re-splitting",
                    state.display(),
                    imported.skill_name
                );
            }
            imported.suite.save(&suite_path)?;
            let test = match change {
                optimizer::bbh::TestSplitChange::Grown { added } => format!(
                    "{} test cases ({} kept, {added} new: run `skd bbh measure {}`)",
                    imported.suite.split(Split::Test).len(),
                    existing.split(Split::Test).len(),
                    imported.skill_name
                ),
                _ => format!("the same {} test cases", imported.suite.split(Split::Test).len()),
            };
            println!(
                "{}: suite re-split with {test} ({} -> {} train, {} -> {} validation); SKILL.md kept -> {}",
                imported.skill_name,
                existing.split(Split::Train).len(),
                imported.suite.split(Split::Train).len(),
                existing.split(Split::Validation).len(),
                imported.suite.split(Split::Validation).len(),
                dir.display()
            );
            continue;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let info = VersionStore::new(&dir)
            .save(&imported.skill_markdown, "imported from BIG-Bench Hard (human-written procedure)")?;
        imported.suite.save(&suite_path)?;
        println!(
            "{}: v{} with {} cases ({} train, {} validation, {} test) -> {}",
            imported.skill_name,
            info.version,
            imported.suite.evals.len(),
            imported.suite.split(Split::Train).len(),
            imported.suite.split(Split::Validation).len(),
            imported.suite.split(Split::Test).len(),
            dir.display()
        );
    }
    Ok(Exit::Ok)
}

/// The `bbh-*` skills that task names name (`object_counting` or `bbh-object-counting`), or
/// every one in the library when none are named.
fn bbh_skills(config: &Config, tasks: &[String]) -> Result<Vec<String>> {
    let skills: Vec<String> = if tasks.is_empty() {
        let mut names: Vec<String> =
            config.library().discover().skills.into_iter().map(|e| e.name).filter(|n| n.starts_with("bbh-")).collect();
        names.sort();
        names
    } else {
        tasks
            .iter()
            .map(|t| if t.starts_with("bbh-") { t.clone() } else { format!("bbh-{}", t.replace('_', "-")) })
            .collect()
    };
    if skills.is_empty() {
        bail!("no bbh-* skills in {}: run `skd bbh import` first", config.skills_dir.value.display());
    }
    Ok(skills)
}

/// `skd bbh measure` arguments.
#[derive(Debug, Clone)]
pub struct BbhMeasureArgs {
    pub tasks: Vec<String>,
    pub test_cases: Option<CaseRange>,
    pub student: Option<String>,
    pub max_tokens: u32,
    pub parallel: usize,
}

/// `skd bbh measure`: each BBH skill's sealed test split (or `--test-cases` of it) with no
/// skill, the human procedure and the distilled skill, recorded for `skd bbh report`.
pub async fn bbh_measure(config: &Config, args: BbhMeasureArgs) -> Result<Exit> {
    let library = config.library();
    let skills = bbh_skills(config, &args.tasks)?;
    let mut total_errors = 0;
    let student_spec = args.student.clone().unwrap_or_else(|| config.student.value.clone());
    let student: Arc<dyn Student> = crate::run_cmds::load_student(config, &student_spec, false).await?;
    for skill in &skills {
        let entry = library.find(skill)?;
        let suite = EvalSuite::load(&EvalSuite::path_in(&entry.dir))?;
        let only_cases = match args.test_cases {
            Some(range) => Some(optimizer::bbh::test_cases_at(&suite, range.first, range.last)?),
            None => None,
        };
        let runner = suite_runner(&entry.dir, args.max_tokens, args.parallel, true);
        let evaluator = Evaluator { student: student.clone(), judge: None, suite: &suite, config: &runner };
        let cases = match (&only_cases, args.test_cases) {
            (Some(ids), Some(range)) => format!("test cases {range} ({} cases)", ids.len()),
            _ => format!("{} test cases", suite.split(Split::Test).len()),
        };
        eprintln!("{skill}: {cases}, student {}", student.model_id());
        let (mut fresh, mut cached) = (0usize, 0usize);
        let measured =
            optimizer::bbh::measure_test_split(&evaluator, &entry.dir, only_cases.as_deref(), &mut |label, r| {
                if r.cached {
                    cached += 1;
                } else {
                    fresh += 1;
                    let mark = if r.passed { "pass" } else { "FAIL" };
                    let note = r.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
                    eprintln!("  {label}: {} {mark}{note}", r.id);
                }
            })
            .await?;
        let errors = measured.errors();
        let distilled = match &measured.distilled {
            Some((from, run)) => format!(", distilled ({from}) {}", run.rate()),
            None => ", no distillation has selected a skill".into(),
        };
        let not_recorded = if measured.recorded {
            String::new()
        } else if errors > 0 {
            format!(
                "; NOT recorded: {errors} cases failed to run (see above), run `skd bbh measure {skill}` again to \
                 retry them"
            )
        } else {
            "; not recorded (the table holds whole splits of saved versions; measuring the whole split once the \
             distillation has finished records it from the cache)"
                .to_string()
        };
        println!(
            "{skill}: {cases}: no skill {}, human procedure (v1) {}{distilled} [{fresh} cases run, {cached} \
             cached]{not_recorded}",
            measured.no_skill.rate(),
            measured.human.rate()
        );
        if let Some((_, run)) = &measured.distilled {
            let flags = run.passed_flags();
            println!(
                "  distilled vs human (paired)     {}",
                evals::Lift::paired(&flags, &measured.human.passed_flags())
            );
            println!(
                "  distilled vs no skill (paired)  {}",
                evals::Lift::paired(&flags, &measured.no_skill.passed_flags())
            );
        }
        total_errors += errors;
    }
    Ok(if total_errors > 0 { Exit::Negative } else { Exit::Ok })
}

/// Positions in a sealed test split, 1-based and inclusive (`last` `None`: to the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseRange {
    pub first: usize,
    pub last: Option<usize>,
}

impl std::fmt::Display for CaseRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.last {
            Some(last) => write!(f, "{}-{last}", self.first),
            None => write!(f, "{}-", self.first),
        }
    }
}

/// Parses `--test-cases`: `FIRST-LAST` or `FIRST-`.
pub fn parse_case_range(text: &str) -> std::result::Result<CaseRange, String> {
    let usage = || format!("`{text}`: expected FIRST-LAST or FIRST- (1-based positions, e.g. 31-100)");
    let (first, last) = text.split_once('-').ok_or_else(usage)?;
    let first: usize = first.trim().parse().map_err(|_| usage())?;
    let last = match last.trim() {
        "" => None,
        last => Some(last.parse::<usize>().map_err(|_| usage())?),
    };
    if first == 0 || last.is_some_and(|last| last < first) {
        return Err(usage());
    }
    Ok(CaseRange { first, last })
}

/// `skd bbh report`: the proof table from stored results.
pub fn bbh_report(config: &Config, tasks: &[String], test_cases: Option<CaseRange>, as_json: bool) -> Result<Exit> {
    let library = config.library();
    let skills = bbh_skills(config, tasks)?;
    let mut rows = Vec::new();
    for skill in &skills {
        let entry = library.find(skill)?;
        let only_cases = match test_cases {
            Some(range) => {
                let suite = EvalSuite::load(&EvalSuite::path_in(&entry.dir))?;
                // A task whose split is too short for the range is a row with nothing
                // measured, so one task not grown yet does not hide the others.
                Some(optimizer::bbh::test_cases_at(&suite, range.first, range.last).unwrap_or_else(|e| {
                    eprintln!("{skill}: {e}");
                    Vec::new()
                }))
            }
            None => None,
        };
        rows.push(optimizer::bbh::proof_row(&entry.dir, skill, only_cases.as_deref())?);
    }
    let pooled = optimizer::bbh::pooled_distilled_vs_human(&rows);
    // The tasks where the distillation replaced the procedure (chosen on validation, so the
    // test split does not select them); elsewhere distilled and human are the same skill.
    let replaced: Vec<optimizer::bbh::ProofRow> = rows.iter().filter(|r| !r.kept_human).cloned().collect();
    let pooled_replaced = optimizer::bbh::pooled_distilled_vs_human(&replaced);
    if as_json {
        let pool =
            |p: Option<(evals::Lift, usize)>| p.map(|(lift, cases)| json!({"lift": lift, "paired_cases": cases}));
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                let mut value = serde_json::to_value(row)?;
                value["mixed_case_counts"] = json!(row.mixed_case_counts());
                Ok(value)
            })
            .collect::<Result<_>>()?;
        print_json(&json!({"schema_version": JSON_SCHEMA_VERSION, "rows": rows,
            "test_cases": test_cases.map(|r| json!({"first": r.first, "last": r.last})),
            "pooled_distilled_vs_human": pool(pooled), "pooled_where_replaced": pool(pooled_replaced)}))?;
        return Ok(Exit::Ok);
    }
    let cell = |r: &Option<evals::Rate>| match r {
        Some(r) => {
            format!("{:.1}% ({}/{}, {:.1}–{:.1})", r.rate * 100.0, r.passed, r.total, r.low * 100.0, r.high * 100.0)
        }
        None => "not measured".to_string(),
    };
    if let Some(range) = test_cases {
        println!("sealed test cases {range} of each split only\n");
    }
    println!("| task | no skill | human-written procedure | distilled | distilled vs human (paired) |");
    println!("|---|---|---|---|---|");
    for row in &rows {
        let distilled = match (&row.distilled, row.kept_human) {
            (Some(_), true) => format!("{} (kept the human procedure)", cell(&row.distilled)),
            _ => cell(&row.distilled),
        };
        let versus = row
            .distilled_vs_human
            .as_ref()
            .map(|l| {
                format!(
                    "{:+.1} ({:+.1} to {:+.1}; P {})",
                    l.delta * 100.0,
                    l.low * 100.0,
                    l.high * 100.0,
                    evals::format_p(l.p_value)
                )
            })
            .unwrap_or_else(|| "-".into());
        let task = row.skill.trim_start_matches("bbh-").replace('-', "_");
        println!("| {task} | {} | {} | {distilled} | {versus} |", cell(&row.no_skill), cell(&row.human));
    }
    for row in &rows {
        if let Some(counts) = row.mixed_case_counts() {
            println!(
                "\n{}: measured on different test cases ({counts}); `skd bbh measure {}`, with the distillation's \
                 --student and --max-tokens, measures all three on the whole split",
                row.skill,
                row.skill.trim_start_matches("bbh-").replace('-', "_")
            );
        }
    }
    if let Some((lift, cases)) = pooled {
        let tasks = rows.iter().filter(|r| r.distilled_vs_human.is_some()).count();
        println!("\npooled, {tasks} of {} tasks ({cases} paired test cases), distilled vs human: {lift}", rows.len());
        if let Some((lift, cases)) = pooled_replaced.filter(|_| replaced.len() < rows.len()) {
            let tasks = replaced.iter().filter(|r| r.distilled_vs_human.is_some()).count();
            println!(
                "pooled, the {tasks} tasks where the distilled skill replaced the procedure ({cases} cases): {lift}"
            );
        }
    }
    let models: std::collections::BTreeSet<&str> = rows.iter().filter_map(|r| r.model.as_deref()).collect();
    if !models.is_empty() {
        println!("\nstudent: {}", models.into_iter().collect::<Vec<_>>().join(", "));
    }
    Ok(Exit::Ok)
}

/// `skd recall` arguments.
#[derive(Debug, Clone)]
pub struct RecallArgs {
    pub skill: String,
    pub teacher: Option<String>,
    pub queries: usize,
    pub teacher_timeout: std::time::Duration,
    pub dry_run: bool,
    pub json: bool,
    /// Rank with hybrid search instead of BM25 alone.
    pub hybrid: bool,
}

/// `skd recall`: the distillation's recall check on a skill as it is now.
pub async fn recall(config: &Config, args: RecallArgs) -> Result<Exit> {
    use optimizer::recall::{RecallChecker, RecallOutcome, RecallReport, held_out_passed};
    let library = config.library();
    let entry = library.find(&args.skill)?;
    let skill_md = entry.skill_md();
    let markdown = std::fs::read_to_string(&skill_md).with_context(|| format!("reading {}", skill_md.display()))?;
    let folder = entry.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(args.skill.clone());
    // Search knows a skill by its frontmatter name: with another name than its folder, the
    // check would compare hits against the wrong one.
    let skill = skill_core::Skill::parse(&markdown, Some(&skill_md))?;
    if let Some(name) = skill.meta().name.as_deref().filter(|n| *n != folder) {
        bail!(
            "{}: the frontmatter name `{name}` differs from the folder `{folder}`; fix one of them first \
             (skd skill validate {})",
            skill_md.display(),
            args.skill
        );
    }
    let teacher = load_teacher(config, args.teacher.as_deref(), args.json).await?.context(
        "the recall check needs a teacher to write the queries: pass --teacher URL#model (or a local model id), \
         set SKD_TEACHER or OPENAI_MODEL, or put `teacher = ...` in the config",
    )?;
    let embedder = if args.hybrid {
        Some(std::sync::Arc::from(crate::logs_cmds::load_embedder(config, args.json)?))
    } else {
        None
    };
    let checker = RecallChecker {
        teacher: teacher.as_ref(),
        skill_name: folder,
        library_root: Some(config.skills_dir.value.clone()),
        queries_per_kind: args.queries,
        teacher_timeout: args.teacher_timeout,
        embedder,
        vector_cache: Some(config.index_dir.value.clone()),
    };
    let mut tokens = 0u64;
    let outcome = match checker
        .check(&markdown, &mut |u| tokens += u64::from(u.prompt_tokens + u.completion_tokens))
        .await
    {
        Ok(outcome) => outcome,
        Err(optimizer::Error::TeacherOutput(why)) => {
            RecallOutcome { report: RecallReport::not_checked(why), markdown: markdown.clone(), given_ranking: None }
        }
        Err(e) => return Err(e.into()),
    };
    let mut report = outcome.report;
    // The checker keeps a rewrite only when it gets more of all the queries right; it is
    // saved unless this is a dry run or the skill is read-only.
    let total = report.positive.len() + report.negative.len();
    let counts = report.right_before_and_after.map(|(now, after)| (now, after, total));
    let kept_out = if report.rewrites == 0 {
        None
    } else if !report.rewrite_kept {
        Some("no more queries right than the current description".to_string())
    } else if args.dry_run {
        Some("dry run".to_string())
    } else if !entry.writable {
        Some(format!(
            "imported from {} and read-only; `skd skill import {}` copies it",
            entry.root.display(),
            args.skill
        ))
    } else {
        None
    };
    let mut saved = None;
    if report.rewrite_kept && kept_out.is_none() {
        let (now, after, _) = counts.unwrap_or_default();
        let rewritten = skill_core::Skill::parse(&outcome.markdown, Some(&skill_md))?;
        let message = format!("recall: description rewritten ({now} -> {after} of {total} queries right)");
        // The save takes the skill's file lock, which blocks: off the runtime.
        let info = skill_core::blocking(|| library.save(&entry, &rewritten, &message))?;
        saved = Some(info.version);
    } else if let Some((positive, negative)) = outcome.given_ranking {
        // Not saved: the results shown are those of the description on disk.
        report.passed = held_out_passed(&positive, &negative);
        report.positive = positive;
        report.negative = negative;
    }
    if args.json {
        print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION, "skill": args.skill, "report": report,
            "right_with_current_description": counts.map(|c| c.0),
            "right_with_rewritten_description": counts.map(|c| c.1),
            "saved_version": saved, "not_saved_because": kept_out, "teacher_tokens": tokens,
            "ranking": if args.hybrid { "hybrid" } else { "bm25" },
        }))?;
    } else if let Some(why) = &report.not_checked {
        println!("recall not checked: {why}");
    } else {
        let held_out = |v: &[(String, bool)]| v.len() - v.len() / 2;
        let which = if saved.is_some() { "the rewritten description" } else { "the current description" };
        println!("should find {} (ranked first), with {which}:", args.skill);
        for (q, ok) in &report.positive {
            println!("  {} {q}", if *ok { "ok  " } else { "MISS" });
        }
        println!("near-misses (must not rank it first):");
        for (q, ok) in &report.negative {
            let source =
                if report.near_misses_from_library.contains(q) { " (another skill's description)" } else { "" };
            println!("  {} {q}{source}", if *ok { "ok  " } else { "HIT " });
        }
        if !report.discarded_near_misses.is_empty() {
            println!("set aside as near-copies of a should-find query: {:?}", report.discarded_near_misses);
        }
        if let Some(why) = &report.rewrite_failed {
            println!("the teacher's description rewrite was unusable: {why}");
        }
        if let Some((now, after, total)) = counts {
            match (saved, &kept_out) {
                (Some(v), _) => {
                    println!("description rewritten: {now} -> {after} of {total} queries right; saved as version {v}")
                }
                (None, Some(why)) => println!(
                    "the teacher's rewritten description got {after} of {total} queries right against {now} now; not saved ({why})"
                ),
                (None, None) => {}
            }
        }
        println!(
            "{}: held-out {} should-find and {} near-miss queries ({} near-misses in all are other skills' \
             descriptions); teacher tokens {tokens}",
            if report.passed { "passed" } else { "FAILED" },
            held_out(&report.positive),
            held_out(&report.negative),
            report.near_misses_from_library.len(),
        );
    }
    Ok(match (&report.not_checked, report.passed) {
        (Some(_), _) => Exit::Failure,
        (None, true) => Exit::Ok,
        (None, false) => Exit::Negative,
    })
}

/// `skd distill` arguments.
#[derive(Debug, Clone)]
pub struct DistillArgs {
    pub skill: String,
    pub job: Option<String>,
    pub student: Option<String>,
    pub teacher: Option<String>,
    /// A new run's settings (a resumed run keeps its own, but for `resume_limits`).
    pub config: optimizer::distill::DistillConfig,
    /// The stop limits given on the command line, which a resumed run takes over its own.
    pub resume_limits: ResumeLimits,
    pub transcripts: Vec<PathBuf>,
    pub examples: Option<PathBuf>,
    pub resume: bool,
    pub restart: bool,
    /// Token limit per student answer (default [`DISTILL_MAX_TOKENS`]).
    pub max_tokens: Option<u32>,
    pub parallel: usize,
    pub json: bool,
}

/// `skd distill`'s token limit per student answer when none is given.
pub const DISTILL_MAX_TOKENS: u32 = 384;

/// Stop limits and the teacher timeout, as given on the command line. A resumed run keeps
/// the settings it began with (its candidates were measured under them) except these: a run
/// that a teacher timeout stopped can go on with a longer one, and an interrupted run with
/// more rounds.
#[derive(Debug, Clone, Default)]
pub struct ResumeLimits {
    pub rounds: Option<usize>,
    pub patience: Option<usize>,
    pub target: Option<f64>,
    pub max_teacher_tokens: Option<u64>,
    pub teacher_timeout_secs: Option<u64>,
}

impl ResumeLimits {
    /// Sets the given limits on `config`; returns a clause per change (`--rounds 6 (was 4)`).
    /// Once the rounds are over, the round limits no longer apply and are only reported.
    pub fn apply(&self, config: &mut optimizer::distill::DistillConfig, rounds_over: bool) -> Vec<String> {
        fn set<T: PartialEq + Copy>(
            changes: &mut Vec<String>,
            flag: &str,
            given: Option<T>,
            field: &mut T,
            show: impl Fn(T) -> String,
        ) {
            if let Some(value) = given
                && value != *field
            {
                changes.push(format!("--{flag} {} (was {})", show(value), show(*field)));
                *field = value;
            }
        }
        let mut changes = Vec::new();
        set(&mut changes, "teacher-timeout", self.teacher_timeout_secs, &mut config.teacher_timeout_secs, |v| {
            v.to_string()
        });
        if rounds_over {
            let given = [
                ("--rounds", self.rounds.is_some()),
                ("--patience", self.patience.is_some()),
                ("--target", self.target.is_some()),
                ("--max-teacher-tokens", self.max_teacher_tokens.is_some()),
            ];
            for (flag, _) in given.iter().filter(|(_, given)| *given) {
                changes.push(format!("{flag} ignored (the rewrite rounds are over)"));
            }
            return changes;
        }
        set(&mut changes, "rounds", self.rounds, &mut config.max_rounds, |v| v.to_string());
        set(&mut changes, "patience", self.patience, &mut config.patience, |v| v.to_string());
        let limit = |v: Option<String>| v.unwrap_or_else(|| "none".into());
        set(&mut changes, "target", self.target.map(Some), &mut config.target, |v| limit(v.map(|t| t.to_string())));
        set(
            &mut changes,
            "max-teacher-tokens",
            self.max_teacher_tokens.map(Some),
            &mut config.max_teacher_tokens,
            |v| limit(v.map(|t| t.to_string())),
        );
        changes
    }
}

pub async fn distill(config: &Config, args: DistillArgs) -> Result<Exit> {
    use optimizer::distill::{DistillEvent, DistillJob, DistillState, Distiller, Stage, load_state, state_path};
    let skill_dir = match config.library().find(&args.skill) {
        Ok(entry) => entry.dir,
        Err(_) => config.skills_dir.value.join(&args.skill),
    };
    let state_file = state_path(&skill_dir);
    let mut state = if args.resume {
        let mut state = load_state(&skill_dir)?;
        if state.stage == Stage::Finished {
            bail!("the distillation in {} already finished; start a new one with --restart", state_file.display());
        }
        let rounds_over = state.rounds_over();
        let changes = args.resume_limits.apply(&mut state.config, rounds_over);
        if !changes.is_empty() && !args.json {
            eprintln!("resuming with {}", changes.join(", "));
        }
        // Its candidates were measured with this student and token limit: another would make
        // the scores incomparable (and miss the result cache). A state written before they
        // were kept takes the command line's, as before (below).
        if let Some(saved) = &state.student {
            if let Some(given) = args.student.as_deref().filter(|s| *s != saved.spec) {
                bail!(
                    "this run measures with the student `{}`, not `{given}`: resume without --student, or start \
                     over with --restart",
                    saved.spec
                );
            }
            if let Some(given) = args.max_tokens.filter(|t| *t != saved.max_tokens) {
                bail!(
                    "this run measures with --max-tokens {}, not {given}: resume without --max-tokens, or start over \
                     with --restart",
                    saved.max_tokens
                );
            }
        }
        state
    } else {
        if state_file.exists() && !args.restart {
            bail!(
                "a distillation of {} is in progress ({}): continue it with --resume, or start over with --restart",
                args.skill,
                state_file.display()
            );
        }
        let description = match &args.job {
            Some(job) => job.clone(),
            None if skill_dir.join("SKILL.md").exists() => {
                let skill = skill_core::Skill::read(&skill_dir.join("SKILL.md"))?;
                skill.meta().description.clone().unwrap_or_default()
            }
            None => bail!("describe the job with --job \"...\" (the skill {} does not exist yet)", args.skill),
        };
        let mut transcripts = Vec::new();
        for path in &args.transcripts {
            // A `skd run` transcript is summarized (task, calls, outcome); any other file is
            // taken as text.
            let text = match agent_loop::transcript::read_transcript(path) {
                Ok(events) if matches!(events.first(), Some(agent_loop::transcript::Event::Start { .. })) => {
                    agent_loop::transcript::summarize(&events, 300)
                }
                _ => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            };
            transcripts.push(text);
        }
        let examples = match &args.examples {
            Some(path) => optimizer::distill::read_examples(path)?,
            None => Vec::new(),
        };
        if !examples.is_empty() && evals::EvalSuite::path_in(&skill_dir).exists() {
            bail!(
                "{} already has an eval suite ({}): add the examples to it instead of --examples",
                args.skill,
                evals::EvalSuite::path_in(&skill_dir).display()
            );
        }
        DistillState::new(
            DistillJob { skill_name: args.skill.clone(), description, transcripts, examples },
            args.config.clone(),
        )
    };
    let settings = state
        .student
        .get_or_insert_with(|| optimizer::distill::StudentSettings {
            spec: args.student.clone().unwrap_or_else(|| config.student.value.clone()),
            max_tokens: args.max_tokens.unwrap_or(DISTILL_MAX_TOKENS),
        })
        .clone();
    let teacher = load_teacher(config, args.teacher.as_deref(), args.json).await?.context(
        "distillation needs a teacher: pass --teacher URL#model (or a local model id), set SKD_TEACHER or \
             OPENAI_MODEL, or put `teacher = ...` in the config",
    )?;
    let student = crate::run_cmds::load_student(config, &settings.spec, args.json).await?;
    let runner = RunnerConfig {
        max_tokens: settings.max_tokens,
        cache_dir: Some(default_cache_dir()),
        files_root: Some(skill_dir.clone()),
        parallelism: args.parallel,
        ..RunnerConfig::default()
    };
    // Only now, with the teacher and student loaded, does a new run set the old one aside.
    if !args.resume
        && let Some(kept) = optimizer::distill::archive_state(&skill_dir)?
        && !args.json
    {
        eprintln!("the previous run is kept at {}", kept.display());
    }
    let distiller = Distiller {
        student,
        teacher: teacher.as_ref(),
        skill_dir: skill_dir.clone(),
        library_root: Some(config.skills_dir.value.clone()),
        runner,
    };
    let quiet = args.json;
    // A bar over the rounds on a terminal; plain lines (one per stage and round) in logs.
    let tty = !quiet && std::io::stderr().is_terminal();
    let bar = if tty {
        ProgressBar::with_draw_target(Some(state.config.max_rounds as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} round {pos}/{len} {elapsed_precise} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(state.rounds as u64);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let line = |text: String| {
        if tty {
            bar.println(text);
        } else if !quiet {
            eprintln!("{text}");
        }
    };
    let (mut done, mut passed) = (0usize, 0usize);
    let mut on_event = |event: DistillEvent| match event {
        DistillEvent::Stage(s) => line(format!("== {s}")),
        DistillEvent::Case(label, ok) => {
            done += 1;
            passed += usize::from(ok);
            bar.set_message(format!(
                "{done} cases run, {passed} passed; last: {label} {}",
                if ok { "ok" } else { "FAIL" }
            ));
        }
        DistillEvent::Round(r) => {
            bar.set_position(r.round as u64);
            let rate = r.validation_rate.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or_else(|| "-".into());
            let mark = if r.improved { "new best" } else { r.note.as_str() };
            line(format!(
                "round {}: parent #{}, {} failures, candidate {}, validation {rate}: {mark}",
                r.round,
                r.parent,
                r.failures,
                r.candidate.map(|c| format!("#{c}")).unwrap_or_else(|| "-".into())
            ));
        }
    };
    let state = distiller.run(state, &mut on_event).await;
    bar.finish_and_clear();
    let state = state?;
    let report = state.report.as_ref().context("the run ended without a report")?;
    let prices = config.teacher_prices();
    let cost = state.teacher_cost_usd(prices);
    if args.json {
        print_json(&json!({"schema_version": JSON_SCHEMA_VERSION, "skill": args.skill, "teacher_cost_usd": cost,
                           "state": state}))?;
    } else {
        println!("skill            {} v{} ({})", args.skill, report.version, skill_dir.display());
        println!("test, distilled  {}", report.with_skill);
        println!("test, no skill   {}", report.no_skill);
        if let Some(start) = &report.starting_skill {
            println!("test, start      {start}");
        }
        println!("lift             {}", report.lift);
        println!(
            "tokens/case      {:.0} with the skill, {:.0} without",
            report.tokens_per_case.0, report.tokens_per_case.1
        );
        let priced = if prices != teacher::Prices::default() { format!(", ${cost:.4}") } else { String::new() };
        println!(
            "teacher tokens   {} ({} prompt, {} completion{priced})",
            report.teacher_tokens, state.teacher_prompt_tokens, state.teacher_completion_tokens
        );
        if let Some(why) = state.recall.as_ref().and_then(|r| r.not_checked.as_deref()) {
            println!("recall           not checked: {}", why.lines().next().unwrap_or(why));
        } else if let Some(recall) = &state.recall {
            let found = recall.positive.iter().filter(|(_, ok)| *ok).count();
            let avoided = recall.negative.iter().filter(|(_, ok)| *ok).count();
            let rewrites = match (recall.rewrites, recall.rewrite_kept) {
                (0, _) => "no description rewrite".to_string(),
                (n, true) => format!("{n} description rewrites, the last kept"),
                (n, false) => format!("{n} description rewrites, none kept"),
            };
            println!(
                "recall           {found}/{} queries find it, {avoided}/{} near-misses do not ({} of them other \
                 skills' descriptions; {rewrites}; {} near-misses set aside as copies of a query)",
                recall.positive.len(),
                recall.negative.len(),
                recall.near_misses_from_library.len(),
                recall.discarded_near_misses.len()
            );
        }
        // A result that is not beneficial waits in the history; say which version SKILL.md
        // stayed on and how to adopt the new one.
        let kept = VersionStore::new(&skill_dir).working_copy().ok().and_then(|w| match w {
            WorkingCopy::Recorded { version } => Some(version),
            _ => None,
        });
        match (report.beneficial, report.adopted, kept) {
            (true, _, _) => println!("beneficial       yes (SKILL.md is now v{})", report.version),
            (false, false, Some(kept)) => println!(
                "beneficial       no (saved as v{v}; SKILL.md stays v{kept}; `skd skill restore {name} {v}` adopts \
                 it)",
                v = report.version,
                name = args.skill
            ),
            (false, false, None) => println!(
                "beneficial       no (saved as v{v}; SKILL.md left as it was; `skd skill restore {name} {v}` adopts it)",
                v = report.version,
                name = args.skill
            ),
            (false, true, _) => {
                println!("beneficial       no (SKILL.md is v{}: there was none to keep)", report.version)
            }
        }
    }
    Ok(if report.beneficial { Exit::Ok } else { Exit::Negative })
}

#[cfg(test)]
mod tests {
    use super::{CaseRange, ResumeLimits, parse_case_range};
    use optimizer::distill::DistillConfig;

    #[test]
    fn only_plain_http_to_another_host_sends_a_key_in_clear() {
        for local in
            ["http://127.0.0.1:8089/v1", "http://localhost/v1", "http://[::1]:80/v1", "https://api.example.com/v1"]
        {
            assert!(!super::sends_key_in_clear(local), "{local}");
        }
        assert!(!super::sends_key_in_clear("http://user:pw@127.0.0.1:8089/v1"));
        // The userinfo is not the host: this one goes to evil.example.
        assert!(super::sends_key_in_clear("http://localhost@evil.example/v1"));
        for remote in ["http://10.0.0.5:8000/v1", "http://gpu-box/v1", "http://[fe80::1]/v1", "HTTP://Gpu-Box/v1"] {
            assert!(super::sends_key_in_clear(remote), "{remote}");
        }
    }

    #[test]
    fn test_case_ranges_are_one_based_and_inclusive() {
        assert_eq!(parse_case_range("101-214"), Ok(CaseRange { first: 101, last: Some(214) }));
        assert_eq!(parse_case_range("31-"), Ok(CaseRange { first: 31, last: None }));
        assert_eq!(parse_case_range("5-5").map(|r| r.to_string()).as_deref(), Ok("5-5"));
        for bad in ["", "31", "0-10", "10-9", "a-b", "-10", "1-2-3"] {
            assert!(parse_case_range(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn started_with() -> DistillConfig {
        DistillConfig { max_rounds: 4, patience: 2, teacher_timeout_secs: 900, ..DistillConfig::default() }
    }

    #[test]
    fn resume_limits_replace_the_runs_own_and_say_what_changed() {
        let mut config = started_with();
        let limits = ResumeLimits {
            rounds: Some(6),
            patience: Some(2),
            target: Some(0.9),
            max_teacher_tokens: Some(50_000),
            teacher_timeout_secs: Some(1800),
        };
        let changes = limits.apply(&mut config, false);
        assert_eq!(
            changes,
            [
                "--teacher-timeout 1800 (was 900)",
                "--rounds 6 (was 4)",
                "--target 0.9 (was none)",
                "--max-teacher-tokens 50000 (was none)",
            ],
            "an unchanged --patience is no change"
        );
        assert_eq!(
            (config.max_rounds, config.patience, config.target, config.max_teacher_tokens, config.teacher_timeout_secs),
            (6, 2, Some(0.9), Some(50_000), 1800)
        );
    }

    #[test]
    fn once_the_rounds_are_over_only_the_teacher_timeout_applies() {
        let mut config = started_with();
        let limits = ResumeLimits { rounds: Some(9), teacher_timeout_secs: Some(60), ..ResumeLimits::default() };
        let changes = limits.apply(&mut config, true);
        assert_eq!(changes, ["--teacher-timeout 60 (was 900)", "--rounds ignored (the rewrite rounds are over)"]);
        assert_eq!((config.max_rounds, config.teacher_timeout_secs), (4, 60));
    }

    #[test]
    fn no_flags_change_nothing() {
        let mut config = started_with();
        assert!(ResumeLimits::default().apply(&mut config, false).is_empty());
        assert_eq!(config.max_rounds, 4);
    }
}
