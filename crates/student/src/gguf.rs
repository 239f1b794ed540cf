//! Reading a GGUF header before handing the file to an engine.
//!
//! mistral.rs 0.8.1 panics on an architecture it does not implement, and a truncated or
//! corrupt file fails deep inside either engine's loader. This reader checks the file first and turns
//! every such problem into an [`Error`] naming the file and the cause. It is bounded: no
//! length read from the file is trusted beyond the file's size, so a corrupt header cannot
//! make it allocate without limit or loop forever.

use crate::engine::Engine;
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// GGUF architectures mistral.rs 0.8.1 loads (`general.architecture`).
pub const SUPPORTED_ARCHITECTURES: &[&str] =
    &["llama", "qwen2", "qwen3", "qwen3moe", "phi2", "phi3", "starcoder2", "mistral3"];

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// What the header says about a model file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GgufInfo {
    /// The file.
    pub path: PathBuf,
    /// GGUF format version.
    pub version: u32,
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`, when present.
    pub name: Option<String>,
    /// `<arch>.context_length`, when present.
    pub context_length: Option<u64>,
    /// Number of tensors.
    pub tensor_count: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Size the tensor table says the file must have (None if a tensor type is unknown).
    pub expected_size: Option<u64>,
    /// Ids of the tokens that end a turn (`tokenizer.ggml.eos_token_id` and end markers such
    /// as `<|im_end|>` found in the vocabulary).
    pub end_token_ids: Vec<u32>,
}

/// Vocabulary entries that end a turn in the chat formats of the supported architectures.
const END_MARKERS: &[&str] = &["<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end|>", "<|end_of_text|>"];

/// Reads the header, checks the file is complete and that mistral.rs runs the architecture.
pub fn inspect(path: &Path) -> Result<GgufInfo> {
    inspect_for(path, Engine::MistralRs)
}

/// Reads the header and checks the file is complete and, where the engine's list of
/// architectures is known before loading (mistral.rs panics on others), that it is on it.
/// llama.cpp reports an architecture it lacks as a load error, which the loader names.
pub fn inspect_for(path: &Path, engine: Engine) -> Result<GgufInfo> {
    let info = read_header(path)?;
    if let Some(expected) = info.expected_size
        && info.file_size < expected
    {
        return Err(Error::CorruptModel {
            path: path.to_path_buf(),
            reason: format!(
                "truncated: the tensors need {expected} bytes but the file has {} (re-download it: `skd models pull`)",
                info.file_size
            ),
        });
    }
    if engine == Engine::MistralRs && !SUPPORTED_ARCHITECTURES.contains(&info.architecture.as_str()) {
        return Err(Error::UnsupportedArchitecture {
            path: path.to_path_buf(),
            architecture: info.architecture.clone(),
        });
    }
    Ok(info)
}

/// Reads the header only (no architecture or size check).
pub fn read_header(path: &Path) -> Result<GgufInfo> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound(path.to_path_buf()),
        _ => Error::io(path, e),
    })?;
    let file_size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut r = Reader { inner: BufReader::new(file), path, remaining: file_size, pos: 0 };
    let corrupt = |reason: String| Error::CorruptModel { path: path.to_path_buf(), reason };

    let mut magic = [0u8; 4];
    r.bytes(&mut magic)?;
    if &magic != MAGIC {
        return Err(corrupt(format!("not a GGUF file (starts with {magic:02x?}, expected \"GGUF\")")));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(corrupt(format!("unsupported GGUF version {version} (2 and 3 are supported)")));
    }
    let tensor_count = r.u64()?;
    let kv_count = r.u64()?;
    // Each entry takes at least a few bytes: counts beyond the file size are corruption.
    if tensor_count > file_size / 8 || kv_count > file_size / 8 {
        return Err(corrupt(format!("header counts are impossible ({tensor_count} tensors, {kv_count} keys)")));
    }

    let mut architecture = None;
    let mut name = None;
    let mut alignment = DEFAULT_ALIGNMENT;
    let mut context_lengths = Vec::new();
    let mut end_token_ids = Vec::new();
    for _ in 0..kv_count {
        let key = r.string()?;
        let ty = r.u32()?;
        match (key.as_str(), ty) {
            ("tokenizer.ggml.eos_token_id", 4) => end_token_ids.push(r.u32()?),
            ("tokenizer.ggml.tokens", 9) => {
                let elem = r.u32()?;
                let count = r.u64()?;
                if elem != 8 || count > r.remaining {
                    return Err(corrupt("tokenizer.ggml.tokens is not a list of strings".into()));
                }
                for id in 0..count {
                    let token = r.string()?;
                    if END_MARKERS.contains(&token.as_str()) {
                        end_token_ids.push(id as u32);
                    }
                }
            }
            ("general.architecture", 8) => architecture = Some(r.string()?),
            ("general.name", 8) => name = Some(r.string()?),
            ("general.alignment", 4) => alignment = u64::from(r.u32()?),
            (k, 4 | 10) if k.ends_with(".context_length") => {
                let v = if ty == 4 { u64::from(r.u32()?) } else { r.u64()? };
                context_lengths.push((k.trim_end_matches(".context_length").to_string(), v));
            }
            _ => r.skip_value(ty)?,
        }
    }
    let architecture = architecture.ok_or_else(|| corrupt("no `general.architecture` key in the header".into()))?;
    let context_length = context_lengths.iter().find(|(a, _)| *a == architecture).map(|(_, v)| *v);

    let mut data_needed: Option<u64> = Some(0);
    for _ in 0..tensor_count {
        let _name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims > 8 {
            return Err(corrupt(format!("a tensor has {n_dims} dimensions")));
        }
        let mut elements: u64 = 1;
        for _ in 0..n_dims {
            elements = elements.saturating_mul(r.u64()?);
        }
        let ggml_type = r.u32()?;
        let offset = r.u64()?;
        data_needed = match (data_needed, tensor_bytes(ggml_type, elements)) {
            (Some(max), Some(bytes)) => Some(max.max(offset.saturating_add(bytes))),
            _ => None,
        };
    }
    if alignment == 0 {
        return Err(corrupt("general.alignment is 0".into()));
    }
    let data_start = r.pos.div_ceil(alignment) * alignment;
    Ok(GgufInfo {
        path: path.to_path_buf(),
        version,
        architecture,
        name,
        context_length,
        tensor_count,
        file_size,
        expected_size: data_needed.map(|n| data_start.saturating_add(n)),
        end_token_ids: {
            end_token_ids.sort_unstable();
            end_token_ids.dedup();
            end_token_ids
        },
    })
}

/// Bytes taken by `elements` values of a ggml type; None for types this table does not know.
fn tensor_bytes(ggml_type: u32, elements: u64) -> Option<u64> {
    // (block size in elements, bytes per block), from ggml's type traits.
    let (block, bytes) = match ggml_type {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        30 => (1, 2),     // BF16
        _ => return None,
    };
    Some(elements.div_ceil(block).saturating_mul(bytes))
}

struct Reader<'a> {
    inner: BufReader<File>,
    path: &'a Path,
    remaining: u64,
    pos: u64,
}

impl Reader<'_> {
    fn truncated(&self) -> Error {
        Error::CorruptModel {
            path: self.path.to_path_buf(),
            reason: format!("truncated or corrupt header (ends at byte {})", self.pos),
        }
    }

    fn bytes(&mut self, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 > self.remaining {
            return Err(self.truncated());
        }
        self.inner.read_exact(buf).map_err(|_| self.truncated())?;
        self.remaining -= buf.len() as u64;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        if n > self.remaining {
            return Err(self.truncated());
        }
        self.inner.seek(SeekFrom::Current(n as i64)).map_err(|e| Error::io(self.path, e))?;
        self.remaining -= n;
        self.pos += n;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        if len > self.remaining || len > 64 * 1024 * 1024 {
            return Err(self.truncated());
        }
        let mut buf = vec![0u8; len as usize];
        self.bytes(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn skip_value(&mut self, ty: u32) -> Result<()> {
        match ty {
            0 | 1 | 7 => self.skip(1), // u8, i8, bool
            2 | 3 => self.skip(2),     // u16, i16
            4..=6 => self.skip(4),     // u32, i32, f32
            10..=12 => self.skip(8),   // u64, i64, f64
            8 => {
                let len = self.u64()?;
                self.skip(len)
            }
            9 => {
                let elem = self.u32()?;
                let count = self.u64()?;
                if count > self.remaining {
                    return Err(self.truncated());
                }
                match fixed_size(elem) {
                    Some(size) => self.skip(count.saturating_mul(size)),
                    None => {
                        for _ in 0..count {
                            self.skip_value(elem)?;
                        }
                        Ok(())
                    }
                }
            }
            other => Err(Error::CorruptModel {
                path: self.path.to_path_buf(),
                reason: format!("unknown metadata value type {other} at byte {}", self.pos),
            }),
        }
    }
}

fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}
