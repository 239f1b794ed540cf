//! Sentence embeddings on the CPU, for grouping tasks by what they ask rather than by their
//! words: "draft the weekly update" and "write this week's status report" land close
//! together, "sort these names" far from both.
//!
//! [`MiniLm`] runs all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions) through candle: the
//! tokens' last hidden states are averaged over the real tokens (the model's own pooling)
//! and scaled to length 1, so the dot product of two embeddings is their cosine similarity.
//! The model files come from the model cache (`skd models pull all-minilm-l6-v2`).

pub use skill_core::{Embedder, cosine};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

/// What can go wrong loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file could not be read or is not what it should be.
    #[error("{}: {message}", path.display())]
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer failed on an input.
    #[error("tokenizing: {0}")]
    Tokenize(String),
    /// The forward pass failed.
    #[error("embedding: {0}")]
    Compute(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Tokens kept of each text: tasks and skill descriptions are a sentence or two; the model
/// was trained on 256-token inputs.
const MAX_TOKENS: usize = 256;
/// Texts run through the model at once (bounded memory on long lists).
const BATCH: usize = 32;

/// all-MiniLM-L6-v2 through candle, on the CPU.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    id: String,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm").field("id", &self.id).finish()
    }
}

impl MiniLm {
    /// Loads the model from its weights (`model.safetensors`), `tokenizer.json` and
    /// `config.json`.
    pub fn load(weights: &Path, tokenizer: &Path, config: &Path) -> Result<Self> {
        let bad = |path: &Path, message: String| Error::Model { path: path.to_path_buf(), message };
        let config_text = std::fs::read_to_string(config).map_err(|e| bad(config, e.to_string()))?;
        let config: Config =
            serde_json::from_str(&config_text).map_err(|e| bad(config, format!("not a BERT config: {e}")))?;
        let mut tokenizer =
            Tokenizer::from_file(tokenizer).map_err(|e| bad(tokenizer, format!("not a tokenizer: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..TruncationParams::default() }))
            .map_err(|e| Error::Tokenize(e.to_string()))?;
        let bytes = std::fs::read(weights).map_err(|e| bad(weights, e.to_string()))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
            .map_err(|e| bad(weights, format!("not safetensors: {e}")))?;
        let model = BertModel::load(vb, &config).map_err(|e| bad(weights, format!("not a BERT model: {e}")))?;
        let id = weights.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "bert".into());
        Ok(MiniLm { model, tokenizer, id })
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings =
            self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| Error::Tokenize(e.to_string()))?;
        let n = encodings.len();
        let len = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &encodings {
            let (i, m) = (e.get_ids(), e.get_attention_mask());
            ids.extend((0..len).map(|k| i.get(k).copied().unwrap_or(0)));
            mask.extend((0..len).map(|k| m.get(k).copied().unwrap_or(0)));
        }
        let ids = Tensor::from_vec(ids, (n, len), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (n, len), &Device::Cpu)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, dim)
        // Mean over the real tokens only.
        let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&weights)?.sum(1)?; // (n, dim)
        let counts = weights.sum(1)?.clamp(1e-9, f64::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

impl Embedder for MiniLm {
    fn id(&self) -> &str {
        &self.id
    }

    fn embed(&self, texts: &[&str]) -> skill_core::Result<Vec<Vec<f32>>> {
        // A batch is padded to its longest text, so texts of like length go together (by
        // bytes, a proxy for tokens): a one-word reply batched with a pasted paragraph would
        // cost the paragraph's length.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let vectors = self.embed_batch(&batch).map_err(|e| skill_core::Error::backend(&self.id, e))?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}
