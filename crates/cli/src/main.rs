//! `skd`: the command-line frontend. Thin by design: argument parsing, output formatting
//! and exit codes; the work happens in the library crates.

mod bench_cmds;
mod config;
mod eval_cmds;
mod logs_cmds;
mod mcp_server;
mod nightly_cmds;
mod openai_server;
mod output;
mod run_cmds;
mod search_cmds;
mod skill_cmds;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use optimizer::distill::DistillConfig;
use optimizer::nightly::NightlyConfig;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes scripts can rely on (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The command ran but found nothing or found problems (no search hits, an invalid skill).
    Negative = 1,
    /// Bad command-line usage (clap's own code).
    Usage = 2,
    /// A named skill, version or file does not exist.
    NotFound = 3,
    /// The configuration is invalid.
    Config = 4,
    /// Any other failure (I/O, index).
    Failure = 5,
    /// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "skd",
    version,
    about = "Skill distillation: a searchable knowledge base and a versioned library of SKILL.md files",
    long_about = "skd keeps a library of Agent Skills (SKILL.md files), validates them against the specification, \
keeps every version, and searches them together with your markdown notes.\n\n\
Start with `skd init`, put notes in ~/memories (or set `notes` in the config), then `skd index` and `skd search \"how do I ...\"`.",
    after_help = "Exit codes: 0 ok, 1 nothing found / problems found, 2 usage error, 3 not found, 4 config error, 5 other failure.\n\
Every listing command takes --json; the JSON shapes are documented in docs/json.md."
)]
struct Cli {
    /// Config file (default: $XDG_CONFIG_HOME/skd/config.toml; env SKD_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log more (-v info, -vv debug) to stderr; RUST_LOG works too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a default config file and create the skill library folder.
    Init {
        /// Overwrite an existing config file.
        #[arg(long)]
        force: bool,
    },
    /// Build or refresh the search index (incremental: only changed files are re-read).
    Index(IndexArgs),
    /// Search notes and skills. Any text is a valid query; "quoted words" match as a phrase.
    Search(SearchArgs),
    /// Print a note or skill file, the section around a line, or a line range.
    Get(GetArgs),
    /// Create, list, show, validate and version skills.
    #[command(subcommand)]
    Skill(SkillCommand),
    /// Show the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a task with the local student: retrieve skills and notes, then Plan -> Tool Call ->
    /// Observe -> Refine until an answer. Streams each step; writes a JSONL transcript.
    Run(RunArgs),
    /// Run a skill's eval suite (`<skill>/evals/evals.json`) with the skill and against a
    /// baseline; print pass rates with 95% intervals and the lift, and write
    /// benchmark.json/.md/.html under `<skill>/evals/results/`.
    Eval(EvalCliArgs),
    /// Distill a skill: the teacher drafts it (and its evals), the student runs it, the
    /// teacher rewrites it from the failures until validation accuracy converges; then a
    /// recall check and the sealed test split. Resumable with --resume.
    Distill(DistillCliArgs),
    /// Check that search ranks a skill first for the words its users type and not for
    /// near-misses (the teacher writes both). When it does not, the teacher rewrites the
    /// description, saved as a new version when more queries come out right.
    Recall(RecallCliArgs),
    /// BIG-Bench Hard tasks as skills and eval suites (the benchmark the README reports).
    #[command(subcommand)]
    Bbh(BbhCommand),
    /// Read the session logs of skd and of the agents beside it (Pi, Claude Code, Codex) and
    /// list the episodes found: one per user task, with its outcome and the evidence for it.
    /// What was read is kept (with a watermark per file), so each run reads only what is new.
    Logs(LogsCliArgs),
    /// Propose the skills that should exist: the episodes of `skd logs` grouped by the job
    /// they ask for (an embedding model, offline), each job that recurs with no skill
    /// covering it (`new`) or whose skill's episodes fail (`refine`), best first.
    Mine {
        /// Only episodes asked on or after this date (2026-12-01) or RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Episodes a job needs to be proposed.
        #[arg(long, default_value_t = 3)]
        min_episodes: usize,
        /// Session files modified in the last this many minutes wait for the next run.
        #[arg(long, default_value_t = 15)]
        wait_minutes: u64,
        /// Write each proposal's eval suite, made from its episodes the user settled, to
        /// DIR/NAME/evals/evals.json (NAME: the skill to refine, or `mined-` and the job's
        /// first words).
        #[arg(long, value_name = "DIR")]
        write_suites: Option<PathBuf>,
        /// Have a teacher write each proposal's job sentence (what the skill's name and
        /// description come from) instead of showing its most central task: URL#model or a
        /// local model id; with no value, the configured teacher. Without it, mining needs no
        /// model but the embedder.
        #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "")]
        teacher: Option<String>,
        /// Print the proposals as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The night: read what is new in the logs, mine the proposals, distill or refine the top
    /// ones within a teacher budget, keep a change only when it beats the library's version on
    /// held-out real tasks (none worse), stage it with its diff, and write a report.
    /// One at a time; an interrupted night resumes. `status`, `adopt`, `install`, `uninstall`
    Nightly(NightlyCli),
    /// Record your verdict on a run (`good` or `bad`, with what the answer should have been
    /// in --note): appended to its transcript, it is the run's outcome for `skd logs`.
    Feedback {
        /// The run id (`skd run` prints it; the transcript's file name) or the transcript's path.
        run: String,
        /// `good` or `bad`.
        #[arg(value_parser = ["good", "bad"])]
        verdict: String,
        /// What was wrong, or what the answer should have been.
        #[arg(long)]
        note: Option<String>,
    },
    /// Serve the local model as an OpenAI-compatible endpoint on 127.0.0.1.
    Serve {
        /// Model id (`skd models list`) or .gguf path (default: the configured student).
        #[arg(long)]
        model: Option<String>,
        /// Port (0 picks a free one; the first line printed is the endpoint URL).
        #[arg(long, default_value_t = 8089)]
        port: u16,
    },
    /// List, pull and locate the models skd knows.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Serve the knowledge base and skill library as an MCP server over stdio.
    Mcp,
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// The eval workload (prompts sharing one long skill prefix) through mistral.rs with and
    /// without its prefix cache, sequential and concurrent, and through llama.cpp.
    Student {
        /// Model id or .gguf path.
        #[arg(long, default_value = "qwen2.5-coder-0.5b")]
        model: String,
        /// Number of prompts.
        #[arg(long, default_value_t = 8)]
        prompts: usize,
        /// Approximate tokens of the shared system prompt.
        #[arg(long, default_value_t = 510)]
        prefix_tokens: usize,
        /// Tokens generated per prompt.
        #[arg(long, default_value_t = 16)]
        max_tokens: u32,
        /// CPU threads for llama.cpp (mistral.rs uses all cores).
        #[arg(long, default_value_t = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))]
        threads: usize,
        /// Sequences llama.cpp decodes together (0: the engine's default, what `skd eval` uses).
        #[arg(long, default_value_t = 0)]
        sequences: usize,
        /// Python with llama-cpp-python, for the reference (`scripts/install-llama-cpp.sh` prints one).
        #[arg(long)]
        python: Option<String>,
        /// Run llama-cpp-python only with prefix reuse (the reference), not also without it.
        #[arg(long)]
        reference_reuse_only: bool,
        /// Which engine configurations to run (the mistral.rs ones take minutes each on a CPU);
        /// by default every one this build has an engine for.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = bench_cmds::Mode::built())]
        modes: Vec<bench_cmds::Mode>,
        /// Load the GGUF as it is, without rewriting tensors as Q8_0 (mistral.rs: Q5_0, Q4_1
        /// and the other types candle has no SIMD kernels for; llama.cpp: Q5_0, value for
        /// value), to measure what the rewrite buys.
        #[arg(long)]
        no_transcode: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The task, in words.
    #[arg(required = true, num_args = 1..)]
    task: Vec<String>,
    /// Activate this skill before the first step.
    #[arg(long)]
    skill: Option<String>,
    /// Student: model id, .gguf path, hf:OWNER/REPO[/FILE.gguf], or URL#model of an
    /// OpenAI-compatible server (default: config `student`).
    #[arg(long)]
    student: Option<String>,
    /// Use no skill: none is retrieved, offered or activated (to see what a skill changes).
    #[arg(long, conflicts_with = "skill")]
    no_skill: bool,
    /// Model calls allowed before giving up.
    #[arg(long, default_value_t = 8)]
    max_steps: usize,
    /// Tokens of free reasoning per step before the action (an answer or a tool call).
    #[arg(long, default_value_t = agent_loop::AgentConfig::default().reasoning_tokens)]
    reasoning_tokens: u32,
    /// Folder the file tools work in (default: the current folder).
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Let the agent write in the workspace (`write_file`; shell writes there). Without it
    /// (or `workspace_write = true` in the config) a run is read-only.
    #[arg(long)]
    write: bool,
    #[command(flatten)]
    style: AgentStyleArgs,
    /// Print the transcript events as JSON lines instead of the human view.
    #[arg(long)]
    json: bool,
    /// Do not write a transcript file.
    #[arg(long)]
    no_transcript: bool,
}

/// `--reply`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ReplyArg {
    Grammar,
    FreeText,
    TwoRequests,
}

/// `--skill-placement`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum PlacementArg {
    User,
    System,
}

/// `--history`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum HistoryArg {
    Folded,
    Chat,
}

/// How the agent loop talks to the student (`skd run`, and `skd eval` agent cases).
#[derive(Args, Debug, Clone, Copy)]
struct AgentStyleArgs {
    /// How replies are constrained: `grammar` (free reasoning, then a grammar-checked action,
    /// where the student enforces grammars), `two-requests` (the reasoning unconstrained, then
    /// the action in a second, grammar-checked request continuing the reply; llama.cpp
    /// students; elsewhere `grammar`) or `free-text` (read from plain text).
    #[arg(long, value_enum, default_value = "two-requests")]
    reply: ReplyArg,
    /// Where an active skill's steps go: `system` (the system prompt, which a llama.cpp
    /// student keeps on disk from run to run) or `user` (with the task).
    #[arg(long, value_enum, default_value = "system")]
    skill_placement: PlacementArg,
    /// How earlier steps are shown: `folded` (a "done so far" list in one user turn) or
    /// `chat` (the model's replies and each result as turns).
    #[arg(long, value_enum, default_value = "folded")]
    history: HistoryArg,
}

impl AgentStyleArgs {
    fn style(self) -> agent_cmds_style::Style {
        agent_cmds_style::Style {
            constraint: match self.reply {
                ReplyArg::Grammar => agent_loop::ReplyConstraint::Grammar,
                ReplyArg::FreeText => agent_loop::ReplyConstraint::FreeText,
                ReplyArg::TwoRequests => agent_loop::ReplyConstraint::TwoRequests,
            },
            placement: match self.skill_placement {
                PlacementArg::User => agent_loop::protocol::SkillPlacement::User,
                PlacementArg::System => agent_loop::protocol::SkillPlacement::System,
            },
            history: match self.history {
                HistoryArg::Folded => agent_loop::History::Folded,
                HistoryArg::Chat => agent_loop::History::Chat,
            },
        }
    }
}

/// The agent style, as the command modules take it.
mod agent_cmds_style {
    /// How the loop talks to the student.
    #[derive(Debug, Clone, Copy)]
    pub struct Style {
        pub constraint: agent_loop::ReplyConstraint,
        pub placement: agent_loop::protocol::SkillPlacement,
        pub history: agent_loop::History,
    }
}

#[derive(Args, Debug)]
struct EvalCliArgs {
    /// The skill's name.
    skill: String,
    /// Student: model id, .gguf path, hf:OWNER/REPO[/FILE.gguf], or URL#model (default:
    /// config `student`).
    #[arg(long)]
    student: Option<String>,
    /// Teacher for rubric graders: URL#model (key from SKD_TEACHER_API_KEY or OPENAI_API_KEY), or a local model id
    /// or .gguf path (default: $SKD_TEACHER).
    #[arg(long)]
    teacher: Option<String>,
    /// Compare with: `none` (no skill), `previous` (the previous version), a SKILL.md path,
    /// or `skip`.
    #[arg(long, default_value = "none")]
    baseline: eval_cmds::Baseline,
    /// Only this split (train, validation, test).
    #[arg(long, value_parser = parse_split)]
    split: Option<evals::Split>,
    /// Run every case again instead of reusing cached results.
    #[arg(long)]
    no_cache: bool,
    /// Token limit per answer.
    #[arg(long, default_value_t = 384)]
    max_tokens: u32,
    /// Cases in flight at once; 0 (the default) lets the student say how many it decodes
    /// together: 8 for llama.cpp (one shared-prefix batch), 1 for mistral.rs (concurrent
    /// requests defeat its prefix cache: measured 11x slower) and for a remote endpoint.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    parallel: u16,
    /// Agent cases: how the loop talks to the student.
    #[command(flatten)]
    style: AgentStyleArgs,
    /// Agent cases "with the skill" run as `skd run` does instead: the skill is not activated
    /// up front but found in the whole library (a catalog or a confident match), with the
    /// notes' excerpts and `search_notes`. Not cached.
    #[arg(long)]
    library: bool,
    /// With `--library`: skills shown in the catalog.
    #[arg(long, default_value_t = agent_loop::AgentConfig::default().catalog_size, requires = "library")]
    catalog_size: usize,
    /// With `--library`: note excerpts shown up front.
    #[arg(long, default_value_t = agent_loop::AgentConfig::default().notes_in_prompt, requires = "library")]
    notes_in_prompt: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Help for an optional flag whose default is applied later (a resumed run must tell a flag
/// given from one left out), written from the default itself so the two cannot drift apart.
fn with_default(text: &str, default: impl std::fmt::Display) -> String {
    format!("{text} [default: {default}]")
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct NightlyCli {
    #[command(subcommand)]
    command: Option<NightlyCommand>,
    #[command(flatten)]
    run: NightlyRunArgs,
}

#[derive(Subcommand, Debug)]
enum NightlyCommand {
    /// The last night: what it read, proposed, distilled and staged; and a night in progress.
    Status {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the last night's staged change of NAME the library's skill (a new version).
    Adopt {
        /// The skill.
        name: String,
        /// Replace a hand edit made since the night began (it stays in the history).
        #[arg(long)]
        force: bool,
    },
    /// Run `skd nightly` every day: a systemd user timer, or a crontab line without systemd.
    Install {
        /// Time of day, HH:MM.
        #[arg(long, default_value = "03:30")]
        at: String,
    },
    /// Remove the timer or crontab line `install` wrote.
    Uninstall,
}

#[derive(Args, Debug)]
struct NightlyRunArgs {
    /// Teacher: URL#model, or a local model id or .gguf path (default: config `teacher`).
    #[arg(long)]
    teacher: Option<String>,
    /// Student every candidate is measured with (default: config `student`).
    #[arg(long)]
    student: Option<String>,
    /// Proposals worked on, best first.
    #[arg(long, default_value_t = NightlyConfig::default().max_skills)]
    max_skills: usize,
    /// Teacher tokens the whole night may use.
    #[arg(long, default_value_t = NightlyConfig::default().teacher_tokens.unwrap_or(0))]
    teacher_tokens: u64,
    /// `never`: changes wait for `skd nightly adopt`; `beneficial`: a change that passed the
    /// gate becomes active at once.
    #[arg(long, default_value = "never", value_parser = ["never", "beneficial"])]
    adopt: String,
    /// Episodes a job needs to be proposed.
    #[arg(long, default_value_t = 3)]
    min_episodes: usize,
    /// Exact McNemar P a change must stay under on the held-out tasks (none may get worse).
    #[arg(long, default_value_t = NightlyConfig::default().gate_p, value_parser = parse_probability)]
    gate_p: f64,
    /// The least share of your own verdicts (accepted or corrected answers) the rubric judge
    /// must agree with before a job whose held-out cases it grades is worked on; 0: no check.
    #[arg(long, default_value_t = NightlyConfig::default().judge_min_agreement)]
    judge_agreement: f64,
    /// Rewrite rounds per skill at most.
    #[arg(long, default_value_t = NightlyConfig::default().distill.max_rounds)]
    rounds: usize,
    /// A job with fewer mined train cases than this gets train cases drafted by the teacher
    /// up to it (validation and held-out cases stay your own tasks); 0: never.
    #[arg(long, default_value_t = NightlyConfig::default().distill.top_up_train)]
    top_up_train: usize,
    /// Token limit per student answer.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Cases in flight at once (0: the student decides).
    #[arg(long, default_value_t = 0)]
    parallel: usize,
    /// Session files modified in the last this many minutes wait for the next night.
    #[arg(long, default_value_t = 15)]
    wait_minutes: u64,
    /// Print the night as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct DistillCliArgs {
    /// The skill's name (a new one is created in the skill library).
    skill: String,
    /// The job, in a sentence (default: the existing skill's description).
    #[arg(long, conflicts_with = "resume")]
    job: Option<String>,
    /// Student: model id, .gguf path, hf:OWNER/REPO[/FILE.gguf], or URL#model (default:
    /// config `student`). A resumed run keeps its own.
    #[arg(long)]
    student: Option<String>,
    /// Teacher: URL#model (key from SKD_TEACHER_API_KEY or OPENAI_API_KEY) or a local model id / .gguf path
    /// (default: $SKD_TEACHER).
    #[arg(long)]
    teacher: Option<String>,
    #[arg(long, help = with_default(
        "Rewrite rounds at most. With --resume: a new limit for the run.",
        DistillConfig::default().max_rounds,
    ))]
    rounds: Option<usize>,
    #[arg(long, help = with_default(
        "Stop after this many rounds without a validation gain. With --resume: a new limit for the run.",
        DistillConfig::default().patience,
    ))]
    patience: Option<usize>,
    /// Stop once validation accuracy reaches this fraction. With --resume: a new target.
    #[arg(long)]
    target: Option<f64>,
    /// Stop once the teacher has used this many tokens. With --resume: a new budget.
    #[arg(long)]
    max_teacher_tokens: Option<u64>,
    /// Train cases per round.
    #[arg(long, default_value_t = DistillConfig::default().minibatch, conflicts_with = "resume")]
    minibatch: usize,
    /// Validation cases a candidate must pass beyond the best so far to replace it (2 on a
    /// small validation split keeps one lucky case from choosing the skill).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000), conflicts_with = "resume")]
    min_gain: u16,
    /// Also require the exact McNemar P of the cases a candidate won and lost against the
    /// best (paired by case) to be at most this (1: the gain alone decides; each round's P is
    /// in the log either way).
    #[arg(long, default_value_t = DistillConfig::default().keep_p, value_parser = parse_probability, conflicts_with = "resume")]
    keep_p: f64,
    /// Cases the teacher drafts when the skill has no suite.
    #[arg(long, default_value_t = DistillConfig::default().draft_cases, conflicts_with = "resume")]
    draft_cases: usize,
    /// When the skill's suite has fewer train cases than this, the teacher drafts train cases
    /// like them up to it (checked as drafted cases are; validation and test stay as they are).
    #[arg(long, default_value_t = DistillConfig::default().top_up_train, conflicts_with = "resume")]
    top_up_train: usize,
    /// Worked examples an even round may add to the skill: the student's own passing
    /// answers on train cases (0: every round is a teacher rewrite).
    #[arg(long, default_value_t = DistillConfig::default().worked_examples, conflicts_with = "resume")]
    worked_examples: usize,
    #[arg(long, help = with_default(
        "Seconds one teacher request may take (raise it for a slow local teacher). With --resume: the new limit.",
        DistillConfig::default().teacher_timeout_secs,
    ))]
    teacher_timeout: Option<u64>,
    /// Keep the teacher's drafted cases without checking them (by default the teacher solves
    /// each afresh and a case whose answer it cannot reproduce is dropped as mislabelled).
    #[arg(long, conflicts_with = "resume")]
    no_verify_cases: bool,
    /// Do not measure the job alone (the skill's frontmatter with the job sentence as its
    /// body) beside the starting skill before the rounds.
    #[arg(long, conflicts_with = "resume")]
    no_bare_job: bool,
    /// Example cases: a JSON array or JSON lines of {"prompt", "expected_output"}. They join
    /// the suite (split across train, validation and test); the teacher drafts the rest up
    /// to --draft-cases.
    #[arg(long, conflicts_with = "resume")]
    examples: Option<PathBuf>,
    /// Past run transcripts to learn from.
    #[arg(long = "transcript", conflicts_with = "resume")]
    transcripts: Vec<PathBuf>,
    /// Continue the interrupted run from its last finished step, with the settings and the
    /// student it began with (only its stop limits, the teacher and the teacher timeout may
    /// change).
    #[arg(long, conflicts_with = "restart")]
    resume: bool,
    /// Start a new run; the previous one, finished or not, is kept under
    /// `<skill>/evals/distill/runs/`.
    #[arg(long)]
    restart: bool,
    #[arg(long, help = with_default(
        "Token limit per student answer. A resumed run keeps its own.",
        eval_cmds::DISTILL_MAX_TOKENS,
    ))]
    max_tokens: Option<u32>,
    /// Cases in flight at once; 0 (the default) lets the student say how many it decodes
    /// together: 8 for llama.cpp (one shared-prefix batch), 1 for mistral.rs (concurrent
    /// requests defeat its prefix cache: measured 11x slower) and for a remote endpoint.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    parallel: u16,
    /// Print the final state as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct RecallCliArgs {
    /// The skill's name.
    skill: String,
    /// Teacher: URL#model (key from SKD_TEACHER_API_KEY or OPENAI_API_KEY) or a local model id / .gguf path
    /// (default: $SKD_TEACHER).
    #[arg(long)]
    teacher: Option<String>,
    /// Queries of each kind to ask the teacher for (half tune the description, half check it).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(2..=30))]
    queries: u16,
    /// Seconds one teacher request may take.
    #[arg(long, default_value_t = 900)]
    teacher_timeout: u64,
    /// Report only: never save a rewritten description.
    #[arg(long)]
    dry_run: bool,
    /// Rank the queries by words and meaning together, as `skd search --hybrid` does
    /// (default: BM25 alone, as `skd run` finds skills).
    #[arg(long)]
    hybrid: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum BbhCommand {
    /// Write `bbh-<task>` skills (the human-written procedure as SKILL.md) with seeded
    /// train/validation/test suites into the skill library.
    Import {
        /// Task names (default: all 27).
        tasks: Vec<String>,
        /// The BBH folder with `bbh/` and `cot-prompts/`.
        #[arg(long, env = "SKD_BBH_DATA")]
        data: Option<PathBuf>,
        /// Train cases per task.
        #[arg(long, default_value_t = 12)]
        train: usize,
        /// Validation cases per task (the first 12 are dealt before the test split, the rest
        /// after its first 30 cases: while the test split has at most 30 cases, growing
        /// validation never moves a test case).
        #[arg(long, default_value_t = 24)]
        validation: usize,
        /// Sealed test cases per task (the first 30 are dealt before the further validation
        /// cases, the rest after them: growing the test split never moves a train or
        /// validation case, and keeps every earlier test case).
        #[arg(long, default_value_t = 30)]
        test: usize,
        /// Seed of the split.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Replace an existing suite even when the new split moves or drops its cases (the old
        /// test set is then no longer sealed). A split that only adds cases (more validation,
        /// or more test cases past the first 30) replaces it without this.
        #[arg(long)]
        force: bool,
    },
    /// Run each BBH skill's whole sealed test split with no skill, the human-written
    /// procedure (v1) and the newest finished distillation's version, and record the results
    /// for `skd bbh report`. Cached cases are not run again: after `skd bbh import --test N`
    /// grew the split, only the new cases run. A measurement with cases that failed to run
    /// (timeouts) is not recorded and exits 1; running it again retries only those.
    Measure {
        /// Task names (default: every bbh-* skill in the library).
        tasks: Vec<String>,
        /// Student: model id, .gguf path, hf:OWNER/REPO[/FILE.gguf], or URL#model (default:
        /// config `student`).
        #[arg(long)]
        student: Option<String>,
        /// Token limit per answer; use the distillation's (`skd distill --max-tokens`) so its
        /// cached test results are reused.
        #[arg(long, default_value_t = 384)]
        max_tokens: u32,
        /// Cases in flight at once; 0 (the default): as many as the student decodes together.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
        parallel: u16,
        /// Only the sealed test cases at these 1-based positions of the split, `FIRST-LAST` or
        /// `FIRST-` (as `skd bbh report --test-cases`); such a part is not recorded.
        #[arg(long, value_name = "FIRST-LAST", value_parser = eval_cmds::parse_case_range)]
        test_cases: Option<eval_cmds::CaseRange>,
    },
    /// The proof table: each BBH skill's sealed test accuracy with no skill, with the
    /// human-written procedure and with the distilled skill, from stored results (`skd bbh
    /// measure`, `skd eval` on version 1, a finished `skd distill`).
    Report {
        /// Task names (default: every bbh-* skill in the library).
        tasks: Vec<String>,
        /// Only the sealed test cases at these 1-based positions of each split, `FIRST-LAST`
        /// or `FIRST-` (to the end), in the order they were dealt: `--test-cases 31-100` is
        /// what `skd bbh import --test 100` added to a 30-case split.
        #[arg(long, value_name = "FIRST-LAST", value_parser = eval_cmds::parse_case_range)]
        test_cases: Option<eval_cmds::CaseRange>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_split(s: &str) -> std::result::Result<evals::Split, String> {
    evals::Split::ALL
        .into_iter()
        .find(|x| x.as_str() == s)
        .ok_or_else(|| format!("unknown split `{s}`: train, validation or test"))
}

/// A P value threshold: a number in (0, 1].
fn parse_probability(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(format!("`{s}` is not a probability in (0, 1]")),
    }
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// The known models and whether they are pulled.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download, assemble and verify models (default: the configured student). A no-op when
    /// the file is there.
    Pull {
        /// Model ids, or hf:OWNER/REPO[/FILE.gguf][@REVISION] (endpoint: $HF_ENDPOINT,
        /// token: $HF_TOKEN).
        ids: Vec<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print where a model's file is (exit 1 when it is not pulled yet).
    Path {
        /// Model id.
        id: String,
    },
}

#[derive(Args, Debug)]
struct IndexArgs {
    /// Rebuild from scratch instead of updating.
    #[arg(long)]
    full: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct SearchArgs {
    /// What to look for (several words are joined).
    #[arg(required = true, num_args = 1..)]
    query: Vec<String>,
    /// Only skills.
    #[arg(long, conflicts_with = "notes")]
    skills: bool,
    /// Only notes.
    #[arg(long)]
    notes: bool,
    /// Number of hits.
    #[arg(short = 'n', long, default_value_t = 10)]
    limit: usize,
    /// Rank by words and by meaning together (BM25 and all-MiniLM-L6-v2 embeddings fused by
    /// reciprocal rank), not by words alone.
    #[arg(long)]
    hybrid: bool,
    /// Print hits as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct LogsCliArgs {
    /// Only this source (repeatable).
    #[arg(long = "source", value_parser = clap::builder::PossibleValuesParser::new(agent_logs::SOURCE_NAMES))]
    sources: Vec<String>,
    /// Only episodes asked on or after this date (2026-12-01) or RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Session files modified in the last this many minutes are still being written: they
    /// wait for the next run.
    #[arg(long, default_value_t = 15)]
    wait_minutes: u64,
    /// Print the episodes as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct GetArgs {
    /// PATH, PATH:LINE (the section containing LINE) or PATH:START-END. Relative paths are
    /// also looked up in the notes folders and the skill library.
    target: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum SkillCommand {
    /// Create a new skill in the library (recorded as version 1).
    New {
        /// Lowercase letters, digits and hyphens, e.g. `pdf-extract`.
        name: String,
        /// What the skill does and when to use it.
        #[arg(short, long)]
        description: String,
        /// Read the body (instructions) from this file instead of a template.
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the skills of the library and the import folders.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a skill's SKILL.md (or its parsed fields with --json).
    Show {
        /// Skill name.
        name: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate skills against the Agent Skills specification (all problems, with lines).
    Validate {
        /// Skill names, skill folders or SKILL.md paths (default: every skill).
        targets: Vec<String>,
        /// Unknown frontmatter keys are errors, as in the reference validator.
        #[arg(long)]
        strict: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the recorded versions of a skill.
    History {
        /// Skill name.
        name: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what changed between versions. No version: latest recorded vs the file on disk
    /// (or the previous version vs the latest, when they are equal). One: that version vs the
    /// file on disk. Two: the first vs the second.
    Diff {
        /// Skill name.
        name: String,
        /// From this version (e.g. 3 or v3).
        from: Option<String>,
        /// To this version (`working` = the file on disk).
        to: Option<String>,
    },
    /// Make an old version current again (recorded as a new version; nothing is lost).
    Restore {
        /// Skill name.
        name: String,
        /// The version to restore (e.g. 2 or v2).
        version: String,
        /// Print the new version as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy a skill to another agent's skill folder (`~/.claude/skills`, `~/.pi/agent/skills`,
    /// `.agents/skills`): SKILL.md and its resources, without skd's history and evals.
    Export {
        /// The skill's name.
        name: String,
        /// The folder to copy it into (the skill lands in DIR/NAME).
        #[arg(long)]
        to: PathBuf,
        /// Replace a different skill of that name already there.
        #[arg(long)]
        force: bool,
    },
    /// Copy a skill from an import folder (or any folder) into the library.
    Import {
        /// A skill name found in an import folder, or a path to a skill folder.
        source: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print every setting with where it came from (default, file, env).
    Show {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the path of the config file.
    Path,
}

fn main() -> ExitCode {
    // The shell tool's Landlock helper (`skd __sandbox ... -- sh -c CMD`): confine this
    // process, then become the command. Before anything else: no threads, no logging.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == agent_loop::sandbox::SANDBOX_ARG) {
        let code = agent_loop::sandbox::run_helper(args);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { Exit::Usage } else { Exit::Ok };
            let _ = e.print();
            return code.into();
        }
    };
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            exit_for(&err).into()
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // mistral.rs 0.8.1 warns "Device mapping contains a mix of GPU and CPU" on every load of a
    // GGUF onto the CPU, where nothing is mixed: that one module's warnings are not shown by
    // default (RUST_LOG still can).
    // llama.cpp warns about quirks of the model file on every load ("control-looking token
    // ... was not control-type" for Qwen2.5's GGUFs), which a user cannot act on; its errors
    // reach skd as errors of the call anyway. Also shown with RUST_LOG (target llama-cpp-2).
    let default = format!("{default},mistralrs_core::pipeline::gguf=error,llama-cpp-2=error");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

fn exit_for(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if cause.downcast_ref::<config::ConfigError>().is_some() {
            return Exit::Config;
        }
        if let Some(e) = cause.downcast_ref::<skill_core::Error>() {
            return match e {
                skill_core::Error::NotFound { .. } => Exit::NotFound,
                skill_core::Error::Invalid { .. } | skill_core::Error::Parse { .. } => Exit::Negative,
                _ => Exit::Failure,
            };
        }
        if let Some(e) = cause.downcast_ref::<retrieval::Error>() {
            return match e {
                retrieval::Error::Core(skill_core::Error::NotFound { .. }) => Exit::NotFound,
                _ => Exit::Failure,
            };
        }
        if cause.downcast_ref::<output::NotFound>().is_some() {
            return Exit::NotFound;
        }
    }
    Exit::Failure
}

fn run(cli: Cli) -> Result<Exit> {
    let config = match cli.command {
        Command::Init { force } => config::Config::load_for_init(cli.config.as_deref(), force)?,
        _ => config::Config::load(cli.config.as_deref())?,
    };
    match cli.command {
        Command::Init { force } => skill_cmds::init(&config, force),
        Command::Index(a) => search_cmds::index(&config, a.full, a.json, a.quiet),
        Command::Search(a) => {
            let scope = if a.skills {
                skill_core::Scope::Skills
            } else if a.notes {
                skill_core::Scope::Notes
            } else {
                skill_core::Scope::All
            };
            search_cmds::search(&config, &a.query.join(" "), scope, a.limit, a.hybrid, a.json)
        }
        Command::Get(a) => search_cmds::get(&config, &a.target, a.json),
        Command::Mine { since, min_episodes, wait_minutes, write_suites, teacher, json } => logs_cmds::mine(
            &config,
            logs_cmds::MineArgs { since, min_episodes, wait_minutes, write_suites, teacher, json },
        ),
        Command::Nightly(n) => match n.command {
            Some(NightlyCommand::Status { json }) => nightly_cmds::status(&config, json),
            Some(NightlyCommand::Adopt { name, force }) => nightly_cmds::adopt(&config, &name, force),
            Some(NightlyCommand::Install { at }) => nightly_cmds::install(&config, &at),
            Some(NightlyCommand::Uninstall) => nightly_cmds::uninstall(),
            None => {
                let a = n.run;
                let defaults = NightlyConfig::default();
                let night = NightlyConfig {
                    max_skills: a.max_skills,
                    teacher_tokens: Some(a.teacher_tokens),
                    adopt: nightly_cmds::parse_adopt(&a.adopt),
                    min_episodes: a.min_episodes,
                    gate_p: a.gate_p,
                    judge_min_agreement: a.judge_agreement,
                    distill: DistillConfig { max_rounds: a.rounds, top_up_train: a.top_up_train, ..defaults.distill },
                    student: None,
                    // The report prices the teacher's tokens when the config gives prices.
                    teacher_prices: Some(config.teacher_prices.value).filter(|p| p.iter().any(|v| *v > 0.0)),
                };
                runtime()?.block_on(nightly_cmds::run(
                    &config,
                    nightly_cmds::NightlyArgs {
                        teacher: a.teacher,
                        student: a.student,
                        config: night,
                        max_tokens: a.max_tokens,
                        parallel: a.parallel,
                        wait_minutes: a.wait_minutes,
                        json: a.json,
                    },
                ))
            }
        },
        Command::Feedback { run, verdict, note } => logs_cmds::feedback(&config, &run, verdict == "good", note),
        Command::Logs(a) => logs_cmds::logs(
            &config,
            logs_cmds::LogsArgs { sources: a.sources, since: a.since, wait_minutes: a.wait_minutes, json: a.json },
        ),
        Command::Skill(cmd) => match cmd {
            SkillCommand::New { name, description, body_file, json } => {
                skill_cmds::new(&config, &name, &description, body_file.as_deref(), json)
            }
            SkillCommand::List { json } => skill_cmds::list(&config, json),
            SkillCommand::Show { name, json } => skill_cmds::show(&config, &name, json),
            SkillCommand::Validate { targets, strict, json } => skill_cmds::validate(&config, &targets, strict, json),
            SkillCommand::History { name, json } => skill_cmds::history(&config, &name, json),
            SkillCommand::Diff { name, from, to } => skill_cmds::diff(&config, &name, from.as_deref(), to.as_deref()),
            SkillCommand::Restore { name, version, json } => skill_cmds::restore(&config, &name, &version, json),
            SkillCommand::Import { source, json } => skill_cmds::import(&config, &source, json),
            SkillCommand::Export { name, to, force } => skill_cmds::export(&config, &name, &to, force),
        },
        Command::Config(ConfigCommand::Show { json }) => skill_cmds::config_show(&config, json),
        Command::Config(ConfigCommand::Path) => {
            println!("{}", config.config_file.display());
            Ok(Exit::Ok)
        }
        Command::Models(ModelsCommand::List { json }) => run_cmds::models_list(&config, json),
        Command::Models(ModelsCommand::Pull { ids, json }) => run_cmds::models_pull(&config, &ids, json),
        Command::Models(ModelsCommand::Path { id }) => run_cmds::models_path(&config, &id),
        Command::Run(a) => runtime()?.block_on(run_cmds::run(
            &config,
            run_cmds::RunArgs {
                task: a.task.join(" "),
                skill: a.skill,
                no_skill: a.no_skill,
                student: a.student,
                max_steps: a.max_steps,
                reasoning_tokens: a.reasoning_tokens,
                workspace: a.workspace,
                write: a.write,
                style: a.style.style(),
                json: a.json,
                no_transcript: a.no_transcript,
            },
        )),
        Command::Eval(a) => runtime()?.block_on(eval_cmds::eval(
            &config,
            eval_cmds::EvalArgs {
                skill: a.skill,
                student: a.student,
                teacher: a.teacher,
                baseline: a.baseline,
                split: a.split,
                no_cache: a.no_cache,
                max_tokens: a.max_tokens,
                parallel: usize::from(a.parallel),
                style: a.style.style(),
                library: a.library.then_some((a.catalog_size, a.notes_in_prompt)),
                json: a.json,
            },
        )),
        Command::Distill(a) => runtime()?.block_on(eval_cmds::distill(
            &config,
            eval_cmds::DistillArgs {
                skill: a.skill,
                job: a.job,
                student: a.student,
                teacher: a.teacher,
                config: {
                    let defaults = optimizer::distill::DistillConfig::default();
                    optimizer::distill::DistillConfig {
                        max_rounds: a.rounds.unwrap_or(defaults.max_rounds),
                        patience: a.patience.unwrap_or(defaults.patience),
                        target: a.target,
                        max_teacher_tokens: a.max_teacher_tokens,
                        minibatch: a.minibatch,
                        draft_cases: a.draft_cases,
                        top_up_train: a.top_up_train,
                        recall_queries: defaults.recall_queries,
                        worked_examples: a.worked_examples,
                        verify_drafted_cases: !a.no_verify_cases,
                        teacher_timeout_secs: a.teacher_timeout.unwrap_or(defaults.teacher_timeout_secs),
                        min_validation_gain: usize::from(a.min_gain),
                        keep_p: a.keep_p,
                        bare_job_candidate: !a.no_bare_job,
                    }
                },
                resume_limits: eval_cmds::ResumeLimits {
                    rounds: a.rounds,
                    patience: a.patience,
                    target: a.target,
                    max_teacher_tokens: a.max_teacher_tokens,
                    teacher_timeout_secs: a.teacher_timeout,
                },
                transcripts: a.transcripts,
                examples: a.examples,
                resume: a.resume,
                restart: a.restart,
                max_tokens: a.max_tokens,
                parallel: usize::from(a.parallel),
                json: a.json,
            },
        )),
        Command::Recall(a) => runtime()?.block_on(eval_cmds::recall(
            &config,
            eval_cmds::RecallArgs {
                skill: a.skill,
                teacher: a.teacher,
                queries: usize::from(a.queries),
                teacher_timeout: std::time::Duration::from_secs(a.teacher_timeout),
                dry_run: a.dry_run,
                json: a.json,
                hybrid: a.hybrid,
            },
        )),
        Command::Bbh(BbhCommand::Report { tasks, test_cases, json }) => {
            eval_cmds::bbh_report(&config, &tasks, test_cases, json)
        }
        Command::Bbh(BbhCommand::Measure { tasks, student, max_tokens, parallel, test_cases }) => {
            runtime()?.block_on(eval_cmds::bbh_measure(
                &config,
                eval_cmds::BbhMeasureArgs { tasks, test_cases, student, max_tokens, parallel: usize::from(parallel) },
            ))
        }
        Command::Bbh(BbhCommand::Import { tasks, data, train, validation, test, seed, force }) => {
            eval_cmds::bbh_import(
                &config,
                &tasks,
                data,
                optimizer::bbh::SplitSizes { train, validation, test },
                seed,
                force,
            )
        }
        Command::Serve { model, port } => runtime()?.block_on(run_cmds::serve(&config, model.as_deref(), port)),
        Command::Bench(BenchCommand::Student {
            model,
            prompts,
            prefix_tokens,
            max_tokens,
            threads,
            sequences,
            python,
            reference_reuse_only,
            modes,
            no_transcode,
            json,
        }) => runtime()?.block_on(bench_cmds::bench_student(
            &config,
            bench_cmds::BenchArgs {
                model,
                prompts,
                prefix_tokens,
                max_tokens,
                threads,
                sequences,
                python,
                reference_reuse_only,
                modes,
                transcode: !no_transcode,
                json,
            },
        )),
        Command::Mcp => runtime()?.block_on(async {
            mcp_server::serve(config).await?;
            Ok(Exit::Ok)
        }),
    }
}

/// mistral.rs needs a multi-threaded runtime (it blocks in place while warming up).
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
