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
    read_header_and_layout(path).map(|(info, _)| info)
}

/// Where the parts of a GGUF file are: what rewriting its tensors needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub version: u32,
    pub kv_count: u64,
    /// Bytes of the metadata key-value section, copied as they are by a rewrite.
    pub metadata: std::ops::Range<u64>,
    pub alignment: u64,
    /// `split.count`: how many files the model is split into (1 when the key is absent).
    pub split_count: u16,
    pub tensors: Vec<TensorEntry>,
    /// Where tensor data starts; tensor offsets count from here.
    pub data_start: u64,
}

/// One entry of a GGUF file's tensor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// The name's bytes as stored.
    pub name: Vec<u8>,
    /// Dimensions, the first the row length.
    pub dims: Vec<u64>,
    /// ggml's type id.
    pub ggml_type: u32,
    /// Where the data starts, from the start of the data section.
    pub offset: u64,
}

impl TensorEntry {
    /// The name, for messages.
    pub fn display_name(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    /// Number of values.
    pub fn elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |n, d| n.saturating_mul(*d))
    }

    /// Bytes of data; None for a type this reader does not know.
    pub fn bytes(&self) -> Option<u64> {
        tensor_bytes(self.ggml_type, self.elements())
    }
}

/// How [`rewrite_tensors`] turns one tensor into another type, block by block.
#[derive(Debug, Clone, Copy)]
pub struct BlockRewrite {
    /// ggml's id of the new type.
    pub to_type: u32,
    /// Values in a block of both types; a row must hold whole blocks.
    pub values_per_block: u64,
    /// Bytes of a block of the old type.
    pub bytes_in: usize,
    /// Bytes of a block of the new type.
    pub bytes_out: usize,
    /// Writes the new block (`bytes_out` long) for an old one (`bytes_in` long).
    pub convert: fn(&[u8], &mut [u8]),
}

/// Writes `dest` from `src` with each tensor for which `plan` gives a [`BlockRewrite`]
/// converted block by block, and the metadata and every other tensor copied unchanged.
/// The tensor table keeps its order; data is laid out one tensor after another, each
/// padded to the file's alignment, as llama.cpp expects. The write is atomic.
pub fn rewrite_tensors(src: &Path, dest: &Path, plan: impl Fn(&TensorEntry) -> Option<BlockRewrite>) -> Result<()> {
    use std::io::Write;
    let (info, layout) = read_header_and_layout(src)?;
    let corrupt = |reason: String| Error::CorruptModel { path: src.to_path_buf(), reason };
    // Checked before anything is written: (tensor, its bytes, its rewrite, new bytes).
    let mut tensors = Vec::with_capacity(layout.tensors.len());
    for tensor in &layout.tensors {
        let name = tensor.display_name();
        let bytes = tensor.bytes().ok_or_else(|| {
            corrupt(format!("tensor `{name}` has a type ({}) this reader does not know", tensor.ggml_type))
        })?;
        let end = layout.data_start.saturating_add(tensor.offset).saturating_add(bytes);
        if end > info.file_size {
            return Err(corrupt(format!(
                "truncated: tensor `{name}` ends at byte {end} but the file has {} (re-download it: `skd models pull`)",
                info.file_size
            )));
        }
        let rewrite = plan(tensor);
        let new_bytes = match rewrite {
            None => bytes,
            Some(r) => {
                let whole_rows =
                    tensor.dims.first().is_some_and(|d| r.values_per_block > 0 && d % r.values_per_block == 0);
                if !whole_rows || bytes % r.bytes_in as u64 != 0 {
                    return Err(corrupt(format!(
                        "tensor `{name}` cannot be rewritten: its rows are not whole blocks of {}",
                        r.values_per_block
                    )));
                }
                bytes / r.bytes_in as u64 * r.bytes_out as u64
            }
        };
        tensors.push((tensor, bytes, rewrite, new_bytes));
    }

    let read_error = |e: std::io::Error| Error::io(src, e);
    let write_error = |e: std::io::Error| Error::io(dest, e);
    let mut source = BufReader::with_capacity(1 << 20, File::open(src).map_err(read_error)?);
    let mut header = Vec::new();
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&layout.version.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&layout.kv_count.to_le_bytes());
    let mut metadata = vec![0u8; (layout.metadata.end - layout.metadata.start) as usize];
    source.seek(SeekFrom::Start(layout.metadata.start)).map_err(read_error)?;
    source.read_exact(&mut metadata).map_err(read_error)?;
    header.extend_from_slice(&metadata);
    let mut offset = 0u64;
    for (tensor, _, rewrite, new_bytes) in &tensors {
        header.extend_from_slice(&(tensor.name.len() as u64).to_le_bytes());
        header.extend_from_slice(&tensor.name);
        header.extend_from_slice(&(tensor.dims.len() as u32).to_le_bytes());
        for dim in &tensor.dims {
            header.extend_from_slice(&dim.to_le_bytes());
        }
        header.extend_from_slice(&rewrite.map_or(tensor.ggml_type, |r| r.to_type).to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset += new_bytes.div_ceil(layout.alignment) * layout.alignment;
    }
    header.resize(header.len().div_ceil(layout.alignment as usize) * layout.alignment as usize, 0);

    // A temporary file of this writer's own beside the destination (removed if anything
    // fails), so two processes starting on one model at once never share a half-written file.
    let mut tmp = skill_core::fsutil::temp_beside(dest, ".rewrite-")
        .map_err(|e| Error::io(dest, std::io::Error::other(e.to_string())))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
    out.write_all(&header).map_err(write_error)?;
    for (tensor, bytes, rewrite, new_bytes) in &tensors {
        source.seek(SeekFrom::Start(layout.data_start + tensor.offset)).map_err(read_error)?;
        let mut data = source.by_ref().take(*bytes);
        match rewrite {
            Some(r) => {
                let (mut from, mut to) = (vec![0u8; r.bytes_in], vec![0u8; r.bytes_out]);
                for _ in 0..bytes / r.bytes_in as u64 {
                    data.read_exact(&mut from).map_err(read_error)?;
                    (r.convert)(&from, &mut to);
                    out.write_all(&to).map_err(write_error)?;
                }
            }
            None => {
                if std::io::copy(&mut data, &mut out).map_err(write_error)? != *bytes {
                    return Err(corrupt(format!("tensor `{}` is cut short", tensor.display_name())));
                }
            }
        }
        let padding = new_bytes.div_ceil(layout.alignment) * layout.alignment - new_bytes;
        std::io::copy(&mut std::io::repeat(0).take(padding), &mut out).map_err(write_error)?;
    }
    out.into_inner().map_err(|e| Error::io(dest, e.into_error()))?.sync_all().map_err(write_error)?;
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}

/// Reads the header and the tensor table.
pub(crate) fn read_header_and_layout(path: &Path) -> Result<(GgufInfo, Layout)> {
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
    let metadata_start = r.pos;
    // Each entry takes at least a few bytes: counts beyond the file size are corruption.
    if tensor_count > file_size / 8 || kv_count > file_size / 8 {
        return Err(corrupt(format!("header counts are impossible ({tensor_count} tensors, {kv_count} keys)")));
    }

    let mut architecture = None;
    let mut name = None;
    let mut alignment = DEFAULT_ALIGNMENT;
    let mut split_count = 1u16;
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
            ("split.count", 2) => split_count = r.u16()?,
            (k, 4 | 10) if k.ends_with(".context_length") => {
                let v = if ty == 4 { u64::from(r.u32()?) } else { r.u64()? };
                context_lengths.push((k.trim_end_matches(".context_length").to_string(), v));
            }
            _ => r.skip_value(ty)?,
        }
    }
    let metadata = metadata_start..r.pos;
    let architecture = architecture.ok_or_else(|| corrupt("no `general.architecture` key in the header".into()))?;
    let context_length = context_lengths.iter().find(|(a, _)| *a == architecture).map(|(_, v)| *v);

    let mut data_needed: Option<u64> = Some(0);
    // Not preallocated: a corrupt count would reserve memory for entries the file cannot hold.
    let mut tensors = Vec::new();
    for _ in 0..tensor_count {
        let name = r.raw_string()?;
        let n_dims = r.u32()?;
        if n_dims > 8 {
            return Err(corrupt(format!("a tensor has {n_dims} dimensions")));
        }
        let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<u64>>>()?;
        let tensor = TensorEntry { name, dims, ggml_type: r.u32()?, offset: r.u64()? };
        data_needed = match (data_needed, tensor.bytes()) {
            (Some(max), Some(bytes)) => Some(max.max(tensor.offset.saturating_add(bytes))),
            _ => None,
        };
        tensors.push(tensor);
    }
    if !alignment.is_power_of_two() {
        return Err(corrupt(format!("general.alignment is {alignment}, not a power of two")));
    }
    let data_start = r.pos.div_ceil(alignment) * alignment;
    let layout = Layout { version, kv_count, metadata, alignment, split_count, tensors, data_start };
    let info = GgufInfo {
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
    };
    Ok((info, layout))
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
        // `seek_relative` keeps BufReader's buffer where the target lies inside it; `seek`
        // always drops it, and skipping the 151,387 merge strings of a Qwen2.5 vocabulary
        // one by one cost 300,000 lseek and read calls (0.3 s a header read, twice a load).
        self.inner.seek_relative(n as i64).map_err(|e| Error::io(self.path, e))?;
        self.remaining -= n;
        self.pos += n;
        Ok(())
    }

    fn u16(&mut self) -> Result<u16> {
        let mut b = [0u8; 2];
        self.bytes(&mut b)?;
        Ok(u16::from_le_bytes(b))
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
        Ok(String::from_utf8_lossy(&self.raw_string()?).into_owned())
    }

    fn raw_string(&mut self) -> Result<Vec<u8>> {
        let len = self.u64()?;
        if len > self.remaining || len > 64 * 1024 * 1024 {
            return Err(self.truncated());
        }
        let mut buf = vec![0u8; len as usize];
        self.bytes(&mut buf)?;
        Ok(buf)
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
