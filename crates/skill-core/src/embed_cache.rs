//! Embeddings computed once: a wrapper around an [`Embedder`] that keeps each text's vector
//! (by the hash of the text) in a file, so a second search over the same notes, or a second
//! mining run over the same episodes, embeds only what is new.

use crate::fsutil::atomic_write;
use crate::{Embedder, Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An [`Embedder`] whose vectors are cached in a JSON file (`{text hash: vector}`).
pub struct CachedEmbedder<'a> {
    inner: &'a dyn Embedder,
    path: PathBuf,
    vectors: Mutex<HashMap<String, Vec<f32>>>,
}

impl std::fmt::Debug for CachedEmbedder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedEmbedder").field("model", &self.inner.id()).field("path", &self.path).finish()
    }
}

impl<'a> CachedEmbedder<'a> {
    /// Vectors of `inner` cached in `dir/vectors-<model id>.json`. A file that cannot be read
    /// is started again: it only saves time.
    pub fn new(inner: &'a dyn Embedder, dir: &Path) -> Self {
        let name: String = inner.id().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let path = dir.join(format!("vectors-{name}.json"));
        let vectors = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        CachedEmbedder { inner, path, vectors: Mutex::new(vectors) }
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn key(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

impl Embedder for CachedEmbedder<'_> {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut vectors = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<String> = texts.iter().map(|t| key(t)).collect();
        let mut asked = std::collections::HashSet::new();
        let missing: Vec<usize> =
            (0..texts.len()).filter(|&i| !vectors.contains_key(&keys[i]) && asked.insert(&keys[i])).collect();
        if !missing.is_empty() {
            let fresh = self.inner.embed(&missing.iter().map(|&i| texts[i]).collect::<Vec<_>>())?;
            for (&i, v) in missing.iter().zip(fresh) {
                vectors.insert(keys[i].clone(), v);
            }
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let bytes = serde_json::to_vec(&*vectors).map_err(|e| Error::backend("serde_json", e))?;
            atomic_write(&self.path, &bytes)?;
        }
        Ok(keys.iter().map(|k| vectors.get(k).cloned().unwrap_or_default()).collect())
    }
}
