//! Embeddings computed once: a wrapper around an [`Embedder`] that keeps each text's vector
//! (by the hash of the text) in a file, so a second search over the same notes, or a second
//! mining run over the same episodes, embeds only what is new, and loads no model when
//! nothing is.

use crate::fsutil::atomic_write;
use crate::{Embedder, Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The first bytes of a cache file (then records: 32-byte blake3 hash, u32 length, that many
/// little-endian f32).
const MAGIC: &[u8] = b"skd-vectors-1\n";

type Loader<'a> = Box<dyn Fn() -> Result<Box<dyn Embedder>> + Send + Sync + 'a>;

enum Inner<'a> {
    Borrowed(&'a dyn Embedder),
    /// Loaded on the first text the cache does not hold.
    Lazy {
        model: OnceLock<Box<dyn Embedder>>,
        load: Loader<'a>,
    },
}

/// An [`Embedder`] whose vectors are cached in a file, `vectors-<model id>.bin`.
pub struct CachedEmbedder<'a> {
    inner: Inner<'a>,
    id: String,
    path: PathBuf,
    vectors: Mutex<HashMap<[u8; 32], Vec<f32>>>,
}

impl std::fmt::Debug for CachedEmbedder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedEmbedder").field("model", &self.id).field("path", &self.path).finish()
    }
}

impl<'a> CachedEmbedder<'a> {
    /// `inner`'s vectors cached in `dir`. A file that cannot be read is started again: it
    /// only saves time.
    pub fn new(inner: &'a dyn Embedder, dir: &Path) -> Self {
        Self::with(Inner::Borrowed(inner), inner.id(), dir)
    }

    /// The vectors of the model named `id`, cached in `dir`; `load` makes the model the first
    /// time a text is not in the cache (a model takes longer to load than a cache to read).
    pub fn lazy(id: &str, dir: &Path, load: impl Fn() -> Result<Box<dyn Embedder>> + Send + Sync + 'a) -> Self {
        Self::with(Inner::Lazy { model: OnceLock::new(), load: Box::new(load) }, id, dir)
    }

    fn with(inner: Inner<'a>, id: &str, dir: &Path) -> Self {
        let name: String = id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let path = dir.join(format!("vectors-{name}.bin"));
        let vectors = std::fs::read(&path).ok().and_then(|b| decode(&b)).unwrap_or_default();
        CachedEmbedder { inner, id: id.to_string(), path, vectors: Mutex::new(vectors) }
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn model(&self) -> Result<&dyn Embedder> {
        match &self.inner {
            Inner::Borrowed(e) => Ok(*e),
            Inner::Lazy { model, load } => {
                if model.get().is_none() {
                    let _ = model.set(load()?);
                }
                Ok(model.get().map(|m| &**m).ok_or_else(|| Error::backend(&self.id, "the model did not load"))?)
            }
        }
    }
}

fn decode(bytes: &[u8]) -> Option<HashMap<[u8; 32], Vec<f32>>> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let mut map = HashMap::new();
    while !rest.is_empty() {
        let key: [u8; 32] = rest.get(..32)?.try_into().ok()?;
        let len = u32::from_le_bytes(rest.get(32..36)?.try_into().ok()?) as usize;
        let floats = rest.get(36..36 + len.checked_mul(4)?)?;
        map.insert(key, floats.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
        rest = &rest[36 + len * 4..];
    }
    Some(map)
}

fn encode(map: &HashMap<[u8; 32], Vec<f32>>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (key, v) in map {
        out.extend_from_slice(key);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    }
    out
}

impl Embedder for CachedEmbedder<'_> {
    fn id(&self) -> &str {
        &self.id
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut vectors = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<[u8; 32]> = texts.iter().map(|t| *blake3::hash(t.as_bytes()).as_bytes()).collect();
        let mut asked = HashSet::new();
        let missing: Vec<usize> =
            (0..texts.len()).filter(|&i| !vectors.contains_key(&keys[i]) && asked.insert(keys[i])).collect();
        if !missing.is_empty() {
            let fresh = self.model()?.embed(&missing.iter().map(|&i| texts[i]).collect::<Vec<_>>())?;
            for (&i, v) in missing.iter().zip(fresh) {
                vectors.insert(keys[i], v);
            }
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            atomic_write(&self.path, &encode(&vectors))?;
        }
        Ok(keys.iter().map(|k| vectors.get(k).cloned().unwrap_or_default()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An embedder that counts what it is asked (the cache is what is tested).
    struct Lengths(std::sync::atomic::AtomicUsize);

    impl Embedder for Lengths {
        fn id(&self) -> &str {
            "lengths"
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
            self.0.fetch_add(texts.len(), std::sync::atomic::Ordering::Relaxed);
            Ok(texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect())
        }
    }

    #[test]
    fn vectors_are_kept_on_disk_and_the_model_is_loaded_only_for_new_texts() {
        let dir = tempfile::tempdir().expect("tmp");
        let model = Lengths(Default::default());
        let cached = CachedEmbedder::new(&model, dir.path());
        assert_eq!(
            cached.embed(&["ab", "abc", "ab"]).expect("embed"),
            [vec![2.0, 1.0], vec![3.0, 1.0], vec![2.0, 1.0]]
        );
        assert_eq!(model.0.load(std::sync::atomic::Ordering::Relaxed), 2, "each new text once");
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let again = CachedEmbedder::lazy("lengths", dir.path(), || {
            loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Box::new(Lengths(Default::default())))
        });
        assert_eq!(again.embed(&["abc"]).expect("embed"), [vec![3.0, 1.0]]);
        assert_eq!(loads.load(std::sync::atomic::Ordering::Relaxed), 0, "all cached: no model loaded");
        assert_eq!(again.embed(&["abcd"]).expect("embed"), [vec![4.0, 1.0]]);
        assert_eq!(loads.load(std::sync::atomic::Ordering::Relaxed), 1);
        // A damaged file is started again, not an error.
        std::fs::write(again.path(), b"skd-vectors-1\ntorn").expect("write");
        let fresh = CachedEmbedder::new(&model, dir.path());
        assert_eq!(fresh.embed(&["ab"]).expect("embed"), [vec![2.0, 1.0]]);
    }
}
