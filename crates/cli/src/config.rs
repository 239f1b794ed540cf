//! `skd`'s configuration: a TOML file in the XDG config folder, overridden by environment
//! variables, with defaults for everything.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The config file as written by users. Unknown keys are rejected so typos are caught.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Folders of markdown notes to index.
    pub notes: Option<Vec<String>>,
    /// The writable skill library.
    pub skills_dir: Option<String>,
    /// Read-only folders other agents keep skills in.
    pub import_skill_dirs: Option<Vec<String>>,
    /// Other agents' skill folders a skill is copied to when a nightly change is adopted.
    pub publish_skill_dirs: Option<Vec<String>>,
    /// Where the search index lives.
    pub index_dir: Option<String>,
    /// Notes larger than this are skipped.
    pub max_file_mb: Option<toml::Spanned<f64>>,
    /// The student: a known model id, a path to a .gguf file, or `URL#model` for an
    /// OpenAI-compatible server.
    pub student: Option<String>,
    /// The engine for a local student or teacher without an engine prefix: "llama.cpp" or
    /// "mistral.rs".
    pub engine: Option<toml::Spanned<String>>,
    /// The teacher for `skd distill` and rubric grading: `URL#model` (key from
    /// `OPENAI_API_KEY`), or a local model id / .gguf path.
    pub teacher: Option<String>,
    /// The teacher's prices, USD per million prompt and completion tokens, for the cost
    /// `skd distill` reports.
    pub teacher_prices: Option<toml::Spanned<[f64; 2]>>,
    /// Where pulled models are cached.
    pub models_dir: Option<String>,
    /// Where run transcripts are written.
    pub runs_dir: Option<String>,
    /// Where skd keeps what it learned from agents' logs (the episode store).
    pub state_dir: Option<String>,
    /// Offer the `shell` tool to the agent.
    pub allow_shell: Option<bool>,
    /// Let `skd run` write in its workspace (`write_file`, and shell writes there) without
    /// `--write`. Off: runs are read-only.
    pub workspace_write: Option<bool>,
    /// Environment variables the shell tool's commands get besides PATH, HOME, LANG, LC_ALL
    /// and TERM (everything else, keys and tokens included, is withheld).
    pub shell_env: Option<Vec<String>>,
    /// MCP servers whose tools the agent may use.
    pub mcp_servers: Option<Vec<agent_loop::mcp::McpServerConfig>>,
    /// Seconds a named tool may run, replacing the 30 s default for it.
    pub tool_timeouts: Option<std::collections::BTreeMap<String, toml::Spanned<f64>>>,
    /// The search score a retrieved skill needs before `skd run` activates it unasked.
    pub confident_min_score: Option<toml::Spanned<f32>>,
    /// How many times the runner-up's score that skill's must also be.
    pub confident_ratio: Option<toml::Spanned<f32>>,
    /// More folders to read agents' logs from, beside their default places.
    pub agent_log_dirs: Option<AgentLogDirsFile>,
}

/// `[agent_log_dirs]`: more folders per agent, each as the agent's own setting names it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentLogDirsFile {
    /// Folders of skd run transcripts.
    pub skd: Option<Vec<String>>,
    /// Pi agent folders (what `PI_CODING_AGENT_DIR` names).
    pub pi: Option<Vec<String>>,
    /// Claude Code folders (what `CLAUDE_CONFIG_DIR` names).
    #[serde(rename = "claude-code", alias = "claude_code")]
    pub claude_code: Option<Vec<String>>,
    /// Codex homes (what `CODEX_HOME` names).
    pub codex: Option<Vec<String>>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Built-in default.
    Default,
    /// The config file.
    File,
    /// An environment variable.
    Env,
}

/// One effective setting, for `skd config show`.
#[derive(Debug, Clone, Serialize)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub origin: Origin,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The config file that was (or would be) read.
    pub config_file: PathBuf,
    /// Whether that file exists.
    pub config_file_exists: bool,
    /// Notes folders.
    pub notes: Setting<Vec<PathBuf>>,
    /// Writable skill library.
    pub skills_dir: Setting<PathBuf>,
    /// Import folders.
    pub import_skill_dirs: Setting<Vec<PathBuf>>,
    /// Where adopted skills are published (none by default).
    pub publish_skill_dirs: Setting<Vec<PathBuf>>,
    /// Index folder.
    pub index_dir: Setting<PathBuf>,
    /// Size limit for notes, in bytes.
    pub max_file_bytes: Setting<u64>,
    /// The student spec.
    pub student: Setting<String>,
    /// The engine of local models whose spec names none.
    pub engine: Setting<student::Engine>,
    /// The teacher spec, when one is configured.
    pub teacher: Setting<Option<String>>,
    /// USD per million prompt / completion tokens of the teacher (0 when unset).
    pub teacher_prices: Setting<[f64; 2]>,
    /// Model cache.
    pub models_dir: Setting<PathBuf>,
    /// Transcript folder.
    pub runs_dir: Setting<PathBuf>,
    /// State folder (episodes read from agents' logs, with their watermarks).
    pub state_dir: Setting<PathBuf>,
    /// Whether the agent gets a shell.
    pub allow_shell: Setting<bool>,
    /// Whether `skd run` may write in its workspace without `--write`.
    pub workspace_write: Setting<bool>,
    /// Variables the shell passes through.
    pub shell_env: Setting<Vec<String>>,
    /// MCP servers.
    pub mcp_servers: Setting<Vec<agent_loop::mcp::McpServerConfig>>,
    /// Per-tool time limits in seconds.
    pub tool_timeouts: Setting<std::collections::BTreeMap<String, f64>>,
    /// The least score of a skill activated from retrieval alone.
    pub confident_min_score: Setting<f32>,
    /// The least ratio of its score to the runner-up's.
    pub confident_ratio: Setting<f32>,
    /// More folders of agents' logs.
    pub agent_log_dirs: Setting<agent_logs::MoreLogDirs>,
}

/// The environment variables `skd` reads, documented in `skd config show` and the README.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("SKD_CONFIG", "path of the config file"),
    ("SKD_NOTES", "notes folders, separated by ':'"),
    ("SKD_SKILLS_DIR", "the writable skill library"),
    ("SKD_IMPORT_SKILL_DIRS", "read-only skill folders, separated by ':' (empty: none)"),
    ("SKD_INDEX_DIR", "where the search index is kept"),
    ("SKD_MAX_FILE_MB", "skip notes larger than this many MB"),
    ("SKD_STUDENT", "the student: a model id (`skd models list`), a .gguf path, or URL#model"),
    ("SKD_ENGINE", "the engine for local models whose spec names none: llama.cpp or mistral.rs"),
    ("SKD_STUDENT_API_KEY", "API key for an OpenAI-compatible student (never logged)"),
    ("SKD_TEACHER", "the teacher: URL#model, or a local model id / .gguf path"),
    ("OPENAI_MODEL", "with OPENAI_BASE_URL (default OpenAI): the teacher when SKD_TEACHER and the config name none"),
    ("SKD_TEACHER_API_KEY", "the teacher endpoint's key, before OPENAI_API_KEY (never logged or written)"),
    ("OPENAI_API_KEY", "the teacher endpoint's key when SKD_TEACHER_API_KEY is unset (never logged or written)"),
    ("SKD_MODELS_DIR", "where pulled models are cached"),
    ("SKD_RUNS_DIR", "where run transcripts are written"),
    ("SKD_STATE_DIR", "where episodes read from agents' logs are kept"),
];

fn home() -> Option<PathBuf> {
    dirs::home_dir()
}

/// Expands a leading `~` and makes relative paths relative to `base`.
pub fn expand(path: &str, base: &Path) -> PathBuf {
    let p = if path == "~" {
        home().unwrap_or_else(|| PathBuf::from("~"))
    } else if let Some(rest) = path.strip_prefix("~/") {
        home().map(|h| h.join(rest)).unwrap_or_else(|| PathBuf::from(path))
    } else {
        PathBuf::from(path)
    };
    if p.is_absolute() { p } else { base.join(p) }
}

/// The default config file path.
pub fn default_config_file() -> PathBuf {
    dirs::config_dir().unwrap_or_else(|| PathBuf::from(".config")).join("skd").join("config.toml")
}

/// How [`Config::load_with`] treats the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileUse {
    /// Read it; an explicitly named file must exist.
    Read,
    /// Read it when it exists, even when named explicitly.
    ReadIfThere,
    /// Do not read it (it is about to be replaced).
    Ignore,
}

impl Config {
    /// The teacher's prices as the teacher crate counts them.
    pub fn teacher_prices(&self) -> teacher::Prices {
        let [input, output] = self.teacher_prices.value;
        teacher::Prices { input_per_million: input, output_per_million: output }
    }

    /// Loads the config: `explicit` path (from `--config`) or `SKD_CONFIG` or the default
    /// file; a missing default file is fine, a missing explicit one is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        Config::load_with(explicit, FileUse::Read)
    }

    /// The config `skd init` works with: the file may be missing (init writes it), and with
    /// `--force` its contents are not read, so a file with an error can be replaced.
    pub fn load_for_init(explicit: Option<&Path>, force: bool) -> Result<Config> {
        Config::load_with(explicit, if force { FileUse::Ignore } else { FileUse::ReadIfThere })
    }

    fn load_with(explicit: Option<&Path>, file_use: FileUse) -> Result<Config> {
        let env = |k: &str| std::env::var_os(k);
        let cwd = std::env::current_dir().context("cannot read the current folder")?;
        let (config_file, must_exist) = match (explicit, env("SKD_CONFIG")) {
            (Some(p), _) => (p.to_path_buf(), true),
            (None, Some(p)) => (PathBuf::from(p), true),
            (None, None) => (default_config_file(), false),
        };
        let exists = config_file.exists();
        if must_exist && !exists && file_use == FileUse::Read {
            return Err(ConfigError(format!(
                "config file {} does not exist (`skd init` writes one)",
                config_file.display()
            ))
            .into());
        }
        let (file, text): (FileConfig, String) = if exists && file_use != FileUse::Ignore {
            let text = std::fs::read_to_string(&config_file)
                .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", config_file.display())))?;
            let file = toml::from_str(&text)
                .map_err(|e| ConfigError(format!("config file {}: {e}", config_file.display())))?;
            (file, text)
        } else {
            (FileConfig::default(), String::new())
        };
        // "FILE:LINE" of a value in the config file, for the errors found after parsing.
        let place = |span: std::ops::Range<usize>| {
            let line = text.get(..span.start).map_or(0, |before| before.matches('\n').count()) + 1;
            format!("config file {}:{line}", config_file.display())
        };
        let file_base = config_file.parent().map(Path::to_path_buf).unwrap_or_else(|| cwd.clone());

        let notes = match (env("SKD_NOTES"), &file.notes) {
            (Some(v), _) => Setting {
                value: std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| expand(&p.to_string_lossy(), &cwd))
                    .collect(),
                origin: Origin::Env,
            },
            (None, Some(list)) => {
                Setting { value: list.iter().map(|p| expand(p, &file_base)).collect(), origin: Origin::File }
            }
            (None, None) => Setting { value: vec![expand("~/memories", &cwd)], origin: Origin::Default },
        };
        // A folder setting: the environment wins, then the file (relative to the file's folder),
        // then the default.
        let dir_setting = |var: &str, from_file: &Option<String>, default: PathBuf| match (env(var), from_file) {
            (Some(v), _) => Setting { value: expand(&v.to_string_lossy(), &cwd), origin: Origin::Env },
            (None, Some(p)) => Setting { value: expand(p, &file_base), origin: Origin::File },
            (None, None) => Setting { value: default, origin: Origin::Default },
        };
        let skills_dir = dir_setting(
            "SKD_SKILLS_DIR",
            &file.skills_dir,
            dirs::data_dir().unwrap_or_else(|| PathBuf::from(".local/share")).join("skd").join("skills"),
        );
        let publish_skill_dirs = match &file.publish_skill_dirs {
            Some(list) => Setting { value: list.iter().map(|p| expand(p, &cwd)).collect(), origin: Origin::File },
            None => Setting { value: Vec::new(), origin: Origin::Default },
        };
        let import_skill_dirs = match (env("SKD_IMPORT_SKILL_DIRS"), &file.import_skill_dirs) {
            (Some(v), _) => Setting {
                value: std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| expand(&p.to_string_lossy(), &cwd))
                    .collect(),
                origin: Origin::Env,
            },
            (None, Some(list)) => {
                Setting { value: list.iter().map(|p| expand(p, &cwd)).collect(), origin: Origin::File }
            }
            (None, None) => Setting {
                value: skill_core::SkillLibrary::default_import_roots(&cwd, home().as_deref()),
                origin: Origin::Default,
            },
        };
        let index_dir = dir_setting(
            "SKD_INDEX_DIR",
            &file.index_dir,
            dirs::cache_dir().unwrap_or_else(|| PathBuf::from(".cache")).join("skd").join("index"),
        );
        let mb_to_bytes = |mb: f64, what: &str| -> Result<u64> {
            if mb.is_finite() && mb > 0.0 {
                Ok((mb * 1024.0 * 1024.0) as u64)
            } else {
                Err(ConfigError(format!("{what}: max_file_mb must be a positive number, got {mb}")).into())
            }
        };
        let max_file_bytes = match (env("SKD_MAX_FILE_MB"), &file.max_file_mb) {
            (Some(v), _) => {
                let s = v.to_string_lossy();
                let mb: f64 =
                    s.parse().map_err(|_| ConfigError(format!("SKD_MAX_FILE_MB must be a number, got `{s}`")))?;
                Setting { value: mb_to_bytes(mb, "SKD_MAX_FILE_MB")?, origin: Origin::Env }
            }
            (None, Some(mb)) => Setting { value: mb_to_bytes(*mb.get_ref(), &place(mb.span()))?, origin: Origin::File },
            (None, None) => Setting { value: retrieval::DEFAULT_MAX_FILE_BYTES, origin: Origin::Default },
        };
        let student = match (env("SKD_STUDENT"), &file.student) {
            (Some(v), _) => Setting { value: v.to_string_lossy().into_owned(), origin: Origin::Env },
            (None, Some(s)) => Setting { value: s.clone(), origin: Origin::File },
            (None, None) => Setting { value: student::models::DEFAULT_STUDENT.to_string(), origin: Origin::Default },
        };
        let engine = match (env("SKD_ENGINE"), &file.engine) {
            (Some(v), _) => {
                let value = v.to_string_lossy().parse().map_err(|e| ConfigError(format!("SKD_ENGINE: {e}")))?;
                Setting { value, origin: Origin::Env }
            }
            (None, Some(name)) => {
                let value = name.get_ref().parse().map_err(|e| ConfigError(format!("{}: {e}", place(name.span()))))?;
                Setting { value, origin: Origin::File }
            }
            (None, None) => Setting { value: student::Engine::default_built(), origin: Origin::Default },
        };
        // SKD_TEACHER, then the file, then the OpenAI variables (OPENAI_MODEL names the model
        // on OPENAI_BASE_URL, or on OpenAI itself).
        let non_empty = |k: &str| env(k).map(|v| v.to_string_lossy().trim().to_string()).filter(|v| !v.is_empty());
        let teacher = match (non_empty("SKD_TEACHER"), &file.teacher, non_empty("OPENAI_MODEL")) {
            (Some(v), _, _) => Setting { value: Some(v), origin: Origin::Env },
            (None, Some(t), _) => Setting { value: Some(t.clone()), origin: Origin::File },
            (None, None, Some(model)) => {
                let base = non_empty("OPENAI_BASE_URL").unwrap_or_else(|| "https://api.openai.com/v1".to_string());
                Setting { value: Some(format!("{base}#{model}")), origin: Origin::Env }
            }
            (None, None, None) => Setting { value: None, origin: Origin::Default },
        };
        let teacher_prices = match &file.teacher_prices {
            Some(p) if p.get_ref().iter().all(|v| v.is_finite() && *v >= 0.0) => {
                Setting { value: *p.get_ref(), origin: Origin::File }
            }
            Some(p) => {
                return Err(ConfigError(format!(
                    "{}: teacher_prices must be two non-negative numbers (USD per million prompt and completion \
                     tokens), got {:?}",
                    place(p.span()),
                    p.get_ref()
                ))
                .into());
            }
            None => Setting { value: [0.0, 0.0], origin: Origin::Default },
        };
        let models_dir = dir_setting("SKD_MODELS_DIR", &file.models_dir, student::models::ModelStore::default_dir());
        let runs_dir = dir_setting(
            "SKD_RUNS_DIR",
            &file.runs_dir,
            dirs::data_dir().unwrap_or_else(|| PathBuf::from(".local/share")).join("skd").join("runs"),
        );
        let state_dir = dir_setting(
            "SKD_STATE_DIR",
            &file.state_dir,
            dirs::state_dir().unwrap_or_else(|| PathBuf::from(".local/state")).join("skd"),
        );
        let allow_shell = match file.allow_shell {
            Some(b) => Setting { value: b, origin: Origin::File },
            None => Setting { value: false, origin: Origin::Default },
        };
        let workspace_write = match file.workspace_write {
            Some(b) => Setting { value: b, origin: Origin::File },
            None => Setting { value: false, origin: Origin::Default },
        };
        let shell_env = match &file.shell_env {
            Some(list) => Setting { value: list.clone(), origin: Origin::File },
            None => Setting { value: Vec::new(), origin: Origin::Default },
        };
        let mcp_servers = match &file.mcp_servers {
            Some(list) => Setting { value: list.clone(), origin: Origin::File },
            None => Setting { value: Vec::new(), origin: Origin::Default },
        };
        let tool_timeouts = match &file.tool_timeouts {
            Some(map) => {
                if let Some((name, secs)) = map.iter().find(|(_, s)| !s.get_ref().is_finite() || *s.get_ref() <= 0.0) {
                    return Err(ConfigError(format!(
                        "{}: tool_timeouts.{name} must be a positive number of seconds, got {}",
                        place(secs.span()),
                        secs.get_ref()
                    ))
                    .into());
                }
                Setting { value: map.iter().map(|(k, v)| (k.clone(), *v.get_ref())).collect(), origin: Origin::File }
            }
            None => Setting { value: Default::default(), origin: Origin::Default },
        };
        let defaults = agent_loop::AgentConfig::default();
        let bounded = |key: &str, value: &Option<toml::Spanned<f32>>, least: f32, default: f32| match value {
            Some(v) if v.get_ref().is_finite() && *v.get_ref() >= least => {
                Ok(Setting { value: *v.get_ref(), origin: Origin::File })
            }
            Some(v) => Err(ConfigError(format!(
                "{}: {key} must be a number of at least {least}, got {}",
                place(v.span()),
                v.get_ref()
            ))),
            None => Ok(Setting { value: default, origin: Origin::Default }),
        };
        let confident_min_score =
            bounded("confident_min_score", &file.confident_min_score, 0.0, defaults.confident_min_score)?;
        let confident_ratio = bounded("confident_ratio", &file.confident_ratio, 1.0, defaults.confident_ratio)?;
        let agent_log_dirs = match &file.agent_log_dirs {
            Some(dirs) => {
                let expanded = |list: &Option<Vec<String>>| {
                    list.iter().flatten().map(|p| agent_logs::without_dots(&expand(p, &file_base))).collect()
                };
                Setting {
                    value: agent_logs::MoreLogDirs {
                        skd: expanded(&dirs.skd),
                        pi: expanded(&dirs.pi),
                        claude_code: expanded(&dirs.claude_code),
                        codex: expanded(&dirs.codex),
                    },
                    origin: Origin::File,
                }
            }
            None => Setting { value: agent_logs::MoreLogDirs::default(), origin: Origin::Default },
        };
        Ok(Config {
            config_file,
            config_file_exists: exists,
            notes,
            skills_dir,
            import_skill_dirs,
            publish_skill_dirs,
            index_dir,
            max_file_bytes,
            student,
            engine,
            teacher,
            teacher_prices,
            models_dir,
            runs_dir,
            state_dir,
            allow_shell,
            workspace_write,
            shell_env,
            mcp_servers,
            tool_timeouts,
            confident_min_score,
            confident_ratio,
            agent_log_dirs,
        })
    }

    /// The skill library these settings describe.
    pub fn library(&self) -> skill_core::SkillLibrary {
        skill_core::SkillLibrary::new(&self.skills_dir.value).with_import_roots(self.import_skill_dirs.value.clone())
    }

    /// What the indexer indexes.
    pub fn sources(&self) -> retrieval::Sources {
        retrieval::Sources {
            note_roots: self.notes.value.clone(),
            library: Some(self.library()),
            max_file_bytes: self.max_file_bytes.value,
        }
    }
}

/// A problem with the configuration (exit code 4).
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The config file `skd init` writes.
pub fn default_file_text(skills_dir: &Path) -> String {
    format!(
        r#"# skd configuration. Environment variables override these (see `skd config show`).

# Folders of markdown notes that `skd index` indexes and `skd search` searches.
notes = ["~/memories"]

# The skill library: one folder per skill, each with a SKILL.md.
skills_dir = "{}"

# Read-only folders other agents keep skills in (relative paths are relative to the
# folder skd runs in).
import_skill_dirs = [".agents/skills", "~/.claude/skills", "~/.pi/agent/skills"]

# Other agents' skill folders that a skill adopted from a night (`skd nightly adopt`, or
# --adopt beneficial) is copied to. A skill of the same name there that is not one of
# skd's own versions (another agent's user wrote or edited it) is left alone.
# publish_skill_dirs = ["~/.claude/skills", "~/.pi/agent/skills"]

# More places to read agents' logs from (`skd logs`, `skd mine`, `skd nightly`), beside
# each agent's default one: folders as the agent's own setting names them
# (PI_CODING_AGENT_DIR, CLAUDE_CONFIG_DIR, CODEX_HOME), and for skd a runs folder.
# [agent_log_dirs]
# claude-code = ["~/old-laptop/.claude"]
# codex = ["~/.codex-work"]

# Notes larger than this are skipped by the indexer.
max_file_mb = 4

# The student that runs skills: a model id from `skd models list` (pulled on first use),
# a path to a .gguf file, or an OpenAI-compatible server as "http://host:port/v1#model".
student = "qwen2.5-coder-1.5b"

# The engine that runs a local model whose spec names none ("llama:" or "mistral:" before
# a model names one): "llama.cpp" (the default, faster) or "mistral.rs".
# engine = "llama.cpp"

# The teacher that writes skills and grades rubrics (`skd distill`, `skd eval`): an
# OpenAI-compatible endpoint as "https://host/v1#model" (key from SKD_TEACHER_API_KEY or OPENAI_API_KEY), or a local
# model id such as "qwen2.5-coder-1.5b". SKD_TEACHER and --teacher override it.
# teacher = "https://api.openai.com/v1#gpt-4o-mini"
# Its prices, USD per million prompt and completion tokens, for the cost skd distill reports:
# teacher_prices = [0.15, 0.60]

# Let the agent run shell commands in its workspace (off by default). Commands get a
# scrubbed environment, their own process group, and on Linux are confined with Landlock to
# writing inside the workspace (nowhere, in a read-only run).
allow_shell = false
# Variables the shell passes through besides PATH, HOME, LANG, LC_ALL and TERM:
# shell_env = ["CARGO_HOME"]

# `skd run` is read-only unless run with --write; this makes writing the default:
# workspace_write = true

# `skd run` activates a retrieved skill without asking the model when its search score is
# at least confident_min_score and at least confident_ratio times the runner-up's:
# confident_min_score = 4.0
# confident_ratio = 1.5

# Seconds a tool may run before the agent is told it timed out (default 30 for every tool):
# [tool_timeouts]
# shell = 120

# MCP servers whose tools the agent may call, launched over stdio:
# [[mcp_servers]]
# name = "skd"
# command = "skd"
# args = ["mcp"]
"#,
        skills_dir.display()
    )
}
