//! Which in-process engine runs a GGUF file, the model's identity, and the one resolver
//! that turns a model spec into a [`Student`].
//!
//! A spec is a known model id (`qwen2.5-coder-0.5b`), a `.gguf` path, an
//! `hf:OWNER/REPO[/FILE.gguf]` spec or `URL#model` for an OpenAI-compatible server. A local
//! spec may name its engine with a prefix: `llama:qwen2.5-coder-0.5b`,
//! `mistral:./model.gguf` (`llama.cpp:` and `mistral.rs:` work too); without one, the
//! configured engine runs it. A new engine is one module plus one arm in [`load_student`].

use crate::models::{ModelStore, PullProgress};
use crate::{Error, Result};
use skill_core::Student;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An in-process inference engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Engine {
    /// llama.cpp through `llama-cpp-2`, with shared-prefix batched decoding.
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
    /// mistral.rs (candle).
    #[serde(rename = "mistral.rs")]
    MistralRs,
}

impl Engine {
    /// Every engine, in the order they are preferred.
    pub const ALL: [Engine; 2] = [Engine::LlamaCpp, Engine::MistralRs];

    /// The name users write (`engine = "llama.cpp"`) and reports show.
    pub fn name(self) -> &'static str {
        match self {
            Engine::LlamaCpp => "llama.cpp",
            Engine::MistralRs => "mistral.rs",
        }
    }

    /// Whether this build includes the engine (each is a Cargo feature of `student`).
    pub fn is_built(self) -> bool {
        match self {
            Engine::LlamaCpp => cfg!(feature = "llama-cpp"),
            Engine::MistralRs => cfg!(feature = "mistralrs"),
        }
    }

    /// The engine used when neither the spec nor the config names one: llama.cpp, measured
    /// faster on the eval workload (README, `skd bench student`), when it is built.
    pub fn default_built() -> Engine {
        Engine::ALL.into_iter().find(|e| e.is_built()).unwrap_or(Engine::MistralRs)
    }

    /// Splits an engine prefix off a spec: `llama:x` -> (Some(LlamaCpp), "x").
    pub fn split_spec(spec: &str) -> (Option<Engine>, &str) {
        for (prefix, engine) in [
            ("llama.cpp:", Engine::LlamaCpp),
            ("llama:", Engine::LlamaCpp),
            ("mistral.rs:", Engine::MistralRs),
            ("mistral:", Engine::MistralRs),
        ] {
            if let Some(rest) = spec.strip_prefix(prefix) {
                return (Some(engine), rest);
            }
        }
        (None, spec)
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = Error;

    fn from_str(s: &str) -> Result<Engine> {
        match s.trim().to_ascii_lowercase().as_str() {
            "llama.cpp" | "llama" | "llamacpp" | "llama-cpp" => Ok(Engine::LlamaCpp),
            "mistral.rs" | "mistral" | "mistralrs" => Ok(Engine::MistralRs),
            _ => Err(Error::UnknownEngine(s.to_string())),
        }
    }
}

/// The identity of a local model in result caches and transcripts:
/// `<file stem>@<engine>#<first 12 hex of the file's sha256>`, so two engines, or two files
/// of one name, never share cached results. The digest comes from the pull's verified
/// marker when the file has one (no hashing), else from reading the file once.
pub fn model_identity(path: &Path, engine: Engine) -> Result<String> {
    let stem = path.file_stem().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let digest = match crate::models::verified_digest(path) {
        Some(d) => d,
        None => crate::models::sha256_file(path)?,
    };
    Ok(format!("{stem}@{engine}#{}", &digest[..12.min(digest.len())]))
}

/// What [`load_student`] needs besides the spec.
#[derive(Debug, Clone)]
pub struct StudentSettings {
    /// The model cache.
    pub models_dir: PathBuf,
    /// The engine for local specs without a prefix.
    pub engine: Engine,
    /// Key for an OpenAI-compatible student.
    pub api_key: Option<String>,
    /// KV cells a local llama.cpp model starts with (`None`: the engine's default, room for
    /// a batch of requests); the cache grows when a request needs more (see
    /// [`crate::LlamaCppOptions::max_context_tokens`]). One agent run asks for fewer.
    pub context_tokens: Option<u32>,
}

impl Default for StudentSettings {
    fn default() -> Self {
        StudentSettings {
            models_dir: ModelStore::default_dir(),
            engine: Engine::default_built(),
            api_key: None,
            context_tokens: None,
        }
    }
}

/// Where a spec points once resolved, before anything is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedSpec {
    /// An OpenAI-compatible server.
    Endpoint {
        /// The API root.
        url: String,
        /// The model name sent to it.
        model: String,
    },
    /// A local GGUF file and the engine that runs it.
    Local {
        /// The file (pulled into the cache if it was a known id or `hf:` spec).
        path: PathBuf,
        /// The engine.
        engine: Engine,
    },
}

/// Resolves a spec: pulls a known or `hf:` model if needed, picks the engine. An engine
/// this build lacks is an error naming the Cargo feature.
pub fn resolve_spec(
    spec: &str,
    settings: &StudentSettings,
    on_progress: &mut dyn FnMut(PullProgress),
) -> Result<ResolvedSpec> {
    if spec.starts_with("http://") || spec.starts_with("https://") {
        let (url, model) = spec.split_once('#').unwrap_or((spec, "default"));
        return Ok(ResolvedSpec::Endpoint { url: url.to_string(), model: model.to_string() });
    }
    let (engine, rest) = Engine::split_spec(spec);
    let engine = engine.unwrap_or(settings.engine);
    if !engine.is_built() {
        return Err(Error::EngineNotBuilt(engine));
    }
    let path = ModelStore::new(&settings.models_dir).resolve(rest, on_progress)?;
    Ok(ResolvedSpec::Local { path, engine })
}

/// Turns a model spec into a loaded [`Student`]: the CLI, `skd serve`, `skd bench` and
/// the examples all come through here.
pub async fn load_student(
    spec: &str,
    settings: &StudentSettings,
    on_progress: &mut dyn FnMut(PullProgress),
) -> Result<Arc<dyn Student>> {
    // Resolving may pull a model with pip and hash it: blocking work.
    let resolved = skill_core::blocking(|| resolve_spec(spec, settings, on_progress))?;
    load_resolved(resolved, settings).await
}

/// Loads what [`resolve_spec`] found.
pub async fn load_resolved(resolved: ResolvedSpec, settings: &StudentSettings) -> Result<Arc<dyn Student>> {
    match resolved {
        ResolvedSpec::Endpoint { url, model } => {
            let student = crate::OpenAiCompatStudent::new(url, model, settings.api_key.clone());
            // Whether the server continues a reply (the agent loop's two-request form).
            student.discover().await;
            Ok(Arc::new(student))
        }
        ResolvedSpec::Local { path, engine } => match engine {
            #[cfg(feature = "llama-cpp")]
            Engine::LlamaCpp => {
                // Shared prefixes' KV state lives beside the models it belongs to.
                let defaults = crate::LlamaCppOptions::default();
                let options = crate::LlamaCppOptions {
                    context_tokens: settings.context_tokens.unwrap_or(defaults.context_tokens),
                    prefix_cache_dir: Some(settings.models_dir.join("prefix-kv")),
                    widened_dir: crate::LlamaCppOptions::widened_dir_in(&settings.models_dir),
                    ..defaults
                };
                Ok(Arc::new(crate::LlamaCppStudent::load(&path, options).await?))
            }
            #[cfg(feature = "mistralrs")]
            Engine::MistralRs => {
                Ok(Arc::new(crate::MistralRsStudent::load(&path, crate::MistralRsOptions::default()).await?))
            }
            #[allow(unreachable_patterns)]
            other => Err(Error::EngineNotBuilt(other)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_prefixes_split_off_and_names_parse() {
        assert_eq!(Engine::split_spec("llama:qwen2.5-coder-0.5b"), (Some(Engine::LlamaCpp), "qwen2.5-coder-0.5b"));
        assert_eq!(Engine::split_spec("mistral.rs:/m/a.gguf"), (Some(Engine::MistralRs), "/m/a.gguf"));
        assert_eq!(Engine::split_spec("hf:owner/repo"), (None, "hf:owner/repo"));
        assert_eq!("llama.cpp".parse::<Engine>().expect("parse"), Engine::LlamaCpp);
        assert_eq!("mistral.rs".parse::<Engine>().expect("parse"), Engine::MistralRs);
        let err = "vllm".parse::<Engine>().expect_err("unknown engine");
        assert!(err.to_string().contains("vllm"), "{err}");
    }

    #[test]
    fn identity_names_the_engine_and_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a").join("m.gguf");
        let b = dir.path().join("b").join("m.gguf");
        for (path, content) in [(&a, b"one".as_slice()), (&b, b"two".as_slice())] {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, content).expect("write");
        }
        let llama = model_identity(&a, Engine::LlamaCpp).expect("identity");
        let mistral = model_identity(&a, Engine::MistralRs).expect("identity");
        let other_file = model_identity(&b, Engine::LlamaCpp).expect("identity");
        assert!(llama.starts_with("m@llama.cpp#"), "{llama}");
        assert_ne!(llama, mistral, "two engines must not share cached results");
        assert_ne!(llama, other_file, "two files of one name must not share cached results");
    }
}
