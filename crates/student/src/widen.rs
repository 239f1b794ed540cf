//! Q5_0 tensors rewritten as Q8_0, value for value, for llama.cpp.
//!
//! llama.cpp's Q4_K_M quantization falls back to Q5_0 for every tensor whose rows are not a
//! multiple of 256: in Qwen2.5-0.5B (rows of 896, the default student of the BBH runs and
//! the model of `skd bench student`) that is 133 of its 290 tensors, all of attention and
//! the FFN's gate and up. On x86, llama.cpp's Q5_0 matrix product unpacks the fifth bit of
//! every weight each time it is used, and there is no repacked kernel for it: profiling the
//! batched eval workload (24 prompts, 256 tokens out) put 36% of the time in it, against
//! 13% for the Q8_0 output matrix, which holds about half as many weights.
//!
//! A Q5_0 weight is `d * (q - 16)` with `q` in 0..32 and one f16 scale `d` per block of 32;
//! a Q8_0 weight is `d * q` with `q` an i8, in blocks of the same shape. So every Q5_0
//! block becomes a Q8_0 block with the same scale and `q - 16`: the same numbers, in 34
//! bytes instead of 22. Everything else in the file is copied as it is.

use crate::Result;
use crate::gguf::{self, BlockRewrite};
use std::path::{Path, PathBuf};

/// ggml's type id of Q5_0.
pub const Q5_0: u32 = 6;
/// ggml's type id of Q8_0.
pub const Q8_0: u32 = 8;
const VALUES_PER_BLOCK: u64 = 32;
const Q5_0_BLOCK_BYTES: usize = 22;
const Q8_0_BLOCK_BYTES: usize = 34;
/// Names the rewrite in the cached file's key (and in the llama.cpp engine's saved prefix
/// states): a change to the rewrite must change it.
pub const REWRITE_TAG: &str = "q5_0-as-q8_0 v1";

/// One Q5_0 block (f16 scale, 32 high bits, 16 bytes of low nibbles) as the Q8_0 block
/// holding the same 32 values.
pub fn q5_0_block_as_q8_0(block: &[u8; Q5_0_BLOCK_BYTES]) -> [u8; Q8_0_BLOCK_BYTES] {
    let mut out = [0u8; Q8_0_BLOCK_BYTES];
    write_q5_0_as_q8_0(block, &mut out);
    out
}

/// [`q5_0_block_as_q8_0`] on slices of a block's length each (what the rewriter hands over).
fn write_q5_0_as_q8_0(block: &[u8], out: &mut [u8]) {
    out[..2].copy_from_slice(&block[..2]);
    let high_bits = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    // As in ggml's dequantize_row_q5_0: byte j holds value j in its low nibble and value
    // j + 16 in its high one; bit j of `high_bits` is value j's fifth bit, bit j + 16 that
    // of value j + 16.
    for j in 0..16 {
        let nibbles = block[6 + j];
        let low = (nibbles & 0x0F) | ((((high_bits >> j) & 1) as u8) << 4);
        let high = (nibbles >> 4) | ((((high_bits >> (j + 16)) & 1) as u8) << 4);
        out[2 + j] = (low as i8 - 16) as u8;
        out[2 + 16 + j] = (high as i8 - 16) as u8;
    }
}

/// How many tensors of the file are Q5_0.
pub fn q5_0_tensor_count(path: &Path) -> Result<usize> {
    let (_, layout) = gguf::read_header_and_layout(path)?;
    Ok(layout.tensors.iter().filter(|t| t.ggml_type == Q5_0).count())
}

/// A file with the same model and no Q5_0 tensor: `path` itself when it has none (or is one
/// part of a split model, whose other parts llama.cpp finds by the first one's name), else a
/// rewritten copy under `cache_dir`, written once (atomically) and reused while the source
/// keeps its path, size and modification time.
pub fn llama_ready(path: &Path, cache_dir: &Path) -> Result<PathBuf> {
    let (_, layout) = gguf::read_header_and_layout(path)?;
    if layout.split_count > 1 || !layout.tensors.iter().any(|t| t.ggml_type == Q5_0) {
        return Ok(path.to_path_buf());
    }
    crate::derived::cached(path, cache_dir, REWRITE_TAG, ".q8.gguf", widen)
}

/// Writes `dest` from `src` with every Q5_0 tensor as Q8_0 and all else unchanged. The
/// write is atomic.
pub fn widen(src: &Path, dest: &Path) -> Result<()> {
    gguf::rewrite_tensors(src, dest, |tensor| {
        (tensor.ggml_type == Q5_0).then_some(BlockRewrite {
            to_type: Q8_0,
            values_per_block: VALUES_PER_BLOCK,
            bytes_in: Q5_0_BLOCK_BYTES,
            bytes_out: Q8_0_BLOCK_BYTES,
            convert: write_q5_0_as_q8_0,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::gguf::Layout;

    /// ggml's dequantize_row_q5_0, as integers: the value times the block's scale.
    fn q5_0_values(block: &[u8; Q5_0_BLOCK_BYTES]) -> [i32; 32] {
        let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        let mut values = [0i32; 32];
        for j in 0..16 {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            values[j] = i32::from((block[6 + j] & 0x0F) | xh_0) - 16;
            values[j + 16] = i32::from((block[6 + j] >> 4) | xh_1) - 16;
        }
        values
    }

    /// Deterministic bytes (no generator crate needed for a test).
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect()
    }

    #[test]
    fn every_q5_0_value_survives_as_q8_0() {
        let mut blocks: Vec<[u8; Q5_0_BLOCK_BYTES]> =
            (0..2000).map(|seed| bytes(seed, Q5_0_BLOCK_BYTES).try_into().expect("22 bytes")).collect();
        // The extremes: every value 0 (-16) and every value 31 (+15).
        blocks.push([0u8; Q5_0_BLOCK_BYTES]);
        blocks.push([0xFF; Q5_0_BLOCK_BYTES]);
        for block in &blocks {
            let widened = q5_0_block_as_q8_0(block);
            assert_eq!(widened[..2], block[..2], "the scale is kept");
            let values: Vec<i32> = widened[2..].iter().map(|b| i32::from(*b as i8)).collect();
            assert_eq!(values, q5_0_values(block), "block {block:02x?}");
        }
    }

    /// A GGUF file of three tensors: F32 [3], Q5_0 [64, 2], Q8_0 [32].
    fn tiny_gguf(path: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        tiny_gguf_split(path, None)
    }

    /// [`tiny_gguf`], with `split.count` in its metadata when given.
    fn tiny_gguf_split(path: &Path, split_count: Option<u16>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        fn string(out: &mut Vec<u8>, s: &[u8]) {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s);
        }
        let f32_data: Vec<u8> = [1.0f32, -2.5, 3.25].iter().flat_map(|v| v.to_le_bytes()).collect();
        let q5_data = bytes(7, 4 * Q5_0_BLOCK_BYTES);
        let q8_data = bytes(8, Q8_0_BLOCK_BYTES);
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&3u64.to_le_bytes()); // tensors
        out.extend_from_slice(&(2 + u64::from(split_count.is_some())).to_le_bytes()); // metadata keys
        if let Some(count) = split_count {
            string(&mut out, b"split.count");
            out.extend_from_slice(&2u32.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        string(&mut out, b"general.architecture");
        out.extend_from_slice(&8u32.to_le_bytes());
        string(&mut out, b"llama");
        string(&mut out, b"tokenizer.ggml.tokens");
        out.extend_from_slice(&9u32.to_le_bytes());
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&2u64.to_le_bytes());
        string(&mut out, b"<s>");
        string(&mut out, b"</s>");
        /// Name, dimensions, type, data.
        type Tensor<'a> = (&'a [u8], &'a [u64], u32, &'a Vec<u8>);
        let tensors: [Tensor; 3] =
            [(b"a", &[3], 0, &f32_data), (b"b", &[64, 2], Q5_0, &q5_data), (b"c", &[32], Q8_0, &q8_data)];
        let mut offset = 0u64;
        for (name, dims, ty, data) in tensors {
            string(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        for (_, _, _, data) in &tensors {
            out.resize(out.len().div_ceil(32) * 32, 0);
            out.extend_from_slice(data);
        }
        std::fs::write(path, &out).expect("write");
        (f32_data, q5_data, q8_data)
    }

    fn tensor_data(path: &Path, layout: &Layout, index: usize) -> Vec<u8> {
        let file = std::fs::read(path).expect("read");
        let tensor = &layout.tensors[index];
        let start = (layout.data_start + tensor.offset) as usize;
        file[start..start + tensor.bytes().expect("known type") as usize].to_vec()
    }

    #[test]
    fn widen_rewrites_the_q5_0_tensors_and_copies_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dest) = (dir.path().join("tiny.gguf"), dir.path().join("tiny.q8.gguf"));
        let (f32_data, q5_data, q8_data) = tiny_gguf(&src);
        widen(&src, &dest).expect("widen");

        let (before, source) = gguf::read_header_and_layout(&src).expect("source");
        let (after, layout) = gguf::read_header_and_layout(&dest).expect("the rewrite reads back");
        assert_eq!(after.architecture, "llama");
        assert_eq!(after.end_token_ids, before.end_token_ids, "the metadata is copied");
        // Like ggml's own writer, the last tensor is padded to the alignment too.
        assert_eq!(after.expected_size.map(|n| n.div_ceil(32) * 32), Some(after.file_size), "no more, no less");
        let types: Vec<u32> = layout.tensors.iter().map(|t| t.ggml_type).collect();
        assert_eq!(types, [0, Q8_0, Q8_0]);
        let dims: Vec<&[u64]> = layout.tensors.iter().map(|t| t.dims.as_slice()).collect();
        assert_eq!(dims, [&[3u64][..], &[64, 2], &[32]]);
        assert_eq!(tensor_data(&dest, &layout, 0), f32_data);
        let widened: Vec<u8> = q5_data
            .chunks(Q5_0_BLOCK_BYTES)
            .flat_map(|b| q5_0_block_as_q8_0(b.try_into().expect("22 bytes")))
            .collect();
        assert_eq!(tensor_data(&dest, &layout, 1), widened);
        assert_eq!(tensor_data(&dest, &layout, 2), q8_data);
        assert_eq!(tensor_data(&src, &source, 1), q5_data, "the source is left as it was");
    }

    #[test]
    fn a_truncated_source_is_an_error_naming_the_file_and_leaves_no_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dest) = (dir.path().join("tiny.gguf"), dir.path().join("tiny.q8.gguf"));
        tiny_gguf(&src);
        let mut data = std::fs::read(&src).expect("read");
        data.truncate(data.len() - 10);
        std::fs::write(&src, data).expect("cut");
        let err = widen(&src, &dest).expect_err("truncated");
        assert!(
            matches!(&err, Error::CorruptModel { path, reason } if path == &src && reason.contains("tensor `c`")),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1, "nothing written beside the source");
    }

    #[test]
    fn llama_ready_rewrites_once_and_passes_files_without_q5_0() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("q8");
        let src = dir.path().join("tiny.gguf");
        tiny_gguf(&src);
        let ready = llama_ready(&src, &cache).expect("ready");
        assert!(ready.starts_with(&cache) && ready.to_string_lossy().ends_with(".q8.gguf"), "{}", ready.display());
        assert_eq!(q5_0_tensor_count(&ready).expect("count"), 0);
        let written = std::fs::metadata(&ready).and_then(|m| m.modified()).expect("mtime");
        assert_eq!(llama_ready(&src, &cache).expect("again"), ready);
        assert_eq!(std::fs::metadata(&ready).and_then(|m| m.modified()).expect("mtime"), written, "not rewritten");
        // The rewritten file has no Q5_0 left: it is handed back as it is.
        assert_eq!(llama_ready(&ready, &cache).expect("no Q5_0"), ready);
    }

    #[test]
    fn a_part_of_a_split_model_is_not_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("model-00001-of-00002.gguf");
        tiny_gguf_split(&src, Some(2));
        assert_eq!(q5_0_tensor_count(&src).expect("count"), 1);
        // llama.cpp finds the other parts by this file's name, which a copy would not have.
        assert_eq!(llama_ready(&src, &dir.path().join("q8")).expect("ready"), src);
        assert!(!dir.path().join("q8").exists(), "nothing written");
    }
}
