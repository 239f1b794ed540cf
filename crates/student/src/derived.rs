//! Files derived from a model file (a rewrite that an engine runs faster), cached under the
//! model store and made again when the source file changes.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// The file derived from `src` in `cache_dir`, made by `make(src, dest)` unless it is there
/// already. `make` must write atomically (a reader never sees half a file). Older
/// derivations of the same source are removed: each is the size of a model.
pub(crate) fn cached(
    src: &Path,
    cache_dir: &Path,
    tag: &str,
    suffix: &str,
    make: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<PathBuf> {
    let dest = cache_dir.join(cached_name(src, tag, suffix)?);
    if dest.is_file() {
        return Ok(dest);
    }
    fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
    make(src, &dest)?;
    remove_stale_siblings(cache_dir, src, &dest, suffix);
    Ok(dest)
}

/// `<stem>.<key><suffix>`, where the key changes whenever the source file (its path, size or
/// modification time) or `tag` (what the derivation does) does.
fn cached_name(path: &Path, tag: &str, suffix: &str) -> Result<String> {
    let absolute = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let mut hasher = Sha256::new();
    hasher.update(absolute.to_string_lossy().as_bytes());
    hasher.update(meta.len().to_le_bytes());
    hasher.update(modified.map(|d| d.as_nanos()).unwrap_or(0).to_le_bytes());
    hasher.update(tag.as_bytes());
    let key = hex::encode(&hasher.finalize()[..8]);
    Ok(format!("{}.{key}{suffix}", stem(path)))
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
}

/// Drops older derivations of the same source (same stem and suffix, another key).
fn remove_stale_siblings(cache_dir: &Path, src: &Path, keep: &Path, suffix: &str) {
    let prefix = format!("{}.", stem(src));
    let Ok(entries) = fs::read_dir(cache_dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_old =
            name.starts_with(&prefix) && name.ends_with(suffix) && name.len() == prefix.len() + 16 + suffix.len();
        if is_old && path != keep {
            let _ = fs::remove_file(&path);
        }
    }
}
