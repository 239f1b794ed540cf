//! Transcoding GGUF tensors to types candle has fast CPU kernels for.
//!
//! candle 0.10.2 (under mistral.rs 0.8.1) has AVX2 dot products for Q4_0, Q8_0 and the
//! K-quants, but only scalar code for Q4_1, Q5_0, Q5_1 and Q8_1. Those types are common:
//! llama.cpp's Q4_K_M falls back to Q5_0 for every tensor whose rows are not a multiple
//! of 256 (all of Qwen2.5-0.5B's attention and FFN gate/up tensors), and SmolLM2's Q4_1
//! file is Q4_1 throughout. Profiling showed 85% of prefill time in the scalar Q5_0 dot
//! product. So before loading, the student rewrites those tensors as Q8_0 once, into a
//! cached sibling file: Q8_0 holds every Q5_0/Q4_1 value to within a small fraction of
//! its own quantization step, and runs on the SIMD path.

use crate::{Error, Result};
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

/// Tensor types with only scalar dot products in candle 0.10.2.
pub const SCALAR_ONLY_TYPES: &[GgmlDType] = &[GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1, GgmlDType::Q8_1];

/// The type the scalar-only tensors are rewritten as.
pub const TARGET_TYPE: GgmlDType = GgmlDType::Q8_0;

/// Names of the tensors in `path` whose type has no SIMD kernel, sorted.
pub fn scalar_only_tensors(path: &Path) -> Result<Vec<String>> {
    let content = read_content(path)?;
    let mut names: Vec<String> = content
        .tensor_infos
        .iter()
        .filter(|(_, info)| SCALAR_ONLY_TYPES.contains(&info.ggml_dtype))
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    Ok(names)
}

/// Returns a file with the same model whose tensors all have SIMD kernels: `path` itself
/// when it has none to convert, else a transcoded copy under `cache_dir`, written once
/// (atomically) and reused while the source file keeps its size and modification time.
pub fn cpu_ready(path: &Path, cache_dir: &Path) -> Result<PathBuf> {
    let to_convert = scalar_only_tensors(path)?;
    if to_convert.is_empty() {
        return Ok(path.to_path_buf());
    }
    crate::derived::cached(path, cache_dir, &format!("{TARGET_TYPE:?}"), ".cpu.gguf", transcode)
}

/// Writes `dest` from `src` with every scalar-only tensor requantized to [`TARGET_TYPE`];
/// other tensors and all metadata are copied unchanged. The write is atomic.
pub fn transcode(src: &Path, dest: &Path) -> Result<()> {
    let content = read_content(src)?;
    let corrupt = |e: candle_core::Error| Error::CorruptModel { path: src.to_path_buf(), reason: e.to_string() };
    let mut reader = BufReader::new(File::open(src).map_err(|e| Error::io(src, e))?);

    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    // Keep the source's tensor order (by offset) so the file reads sequentially.
    names.sort_by_key(|name| content.tensor_infos[*name].offset);
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content.tensor(&mut reader, name, &Device::Cpu).map_err(corrupt)?;
        let tensor = if SCALAR_ONLY_TYPES.contains(&tensor.dtype()) {
            requantize(&tensor, TARGET_TYPE).map_err(corrupt)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    // The writer always aligns to 32 bytes; a different recorded alignment would misplace
    // every tensor on reading.
    let mut metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.sort_by_key(|(k, _)| *k);
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();

    // A temporary file of this writer's own beside the destination (removed if anything
    // fails): two processes (or tests) starting on the same model at once each write theirs,
    // and the second rename replaces the first's identical file, instead of one truncating
    // the file the other is writing or renaming it away.
    let mut tmp = skill_core::fsutil::temp_beside(dest, ".transcode-")
        .map_err(|e| Error::io(dest, std::io::Error::other(e.to_string())))?;
    let mut writer = BufWriter::new(tmp.as_file_mut());
    gguf_file::write(&mut writer, &metadata, &tensor_refs)
        .map_err(|e| Error::io(dest, std::io::Error::other(e.to_string())))?;
    writer.into_inner().map_err(|e| Error::io(dest, e.into_error()))?.sync_all().map_err(|e| Error::io(dest, e))?;
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}

fn requantize(tensor: &QTensor, dtype: GgmlDType) -> candle_core::Result<QTensor> {
    let values: Tensor = tensor.dequantize(&Device::Cpu)?;
    QTensor::quantize(&values, dtype)
}

fn read_content(path: &Path) -> Result<gguf_file::Content> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound(path.to_path_buf()),
        _ => Error::io(path, e),
    })?;
    gguf_file::Content::read(&mut BufReader::new(file))
        .map_err(|e| Error::CorruptModel { path: path.to_path_buf(), reason: e.to_string() })
}
