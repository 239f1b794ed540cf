//! Bad model files give clear errors before mistral.rs sees them: GGUF files written here
//! with candle's `gguf_file::write`, then damaged on purpose.

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use student::gguf::{inspect, read_header};
use student::{Error, MistralRsOptions, MistralRsStudent};

fn write_gguf(path: &Path, metadata: &[(&str, gguf_file::Value)], rows: usize) {
    let mut f = std::fs::File::create(path).expect("create");
    let t = Tensor::ones((rows, 32), DType::F32, &Device::Cpu).expect("tensor");
    let q = QTensor::quantize(&t, GgmlDType::F32).expect("quantize");
    let meta: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut f, &meta, &[("token_embd.weight", &q)]).expect("write gguf");
}

fn arch(a: &str) -> (&'static str, gguf_file::Value) {
    ("general.architecture", gguf_file::Value::String(a.to_string()))
}

fn tmp_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn reads_architecture_name_and_sizes() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = tmp_file(&dir, "ok.gguf");
    write_gguf(
        &path,
        &[
            arch("llama"),
            ("general.name", gguf_file::Value::String("tiny".into())),
            ("llama.context_length", gguf_file::Value::U32(2048)),
        ],
        4,
    );
    let info = inspect(&path).expect("inspect");
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.name.as_deref(), Some("tiny"));
    assert_eq!(info.context_length, Some(2048));
    assert_eq!(info.tensor_count, 1);
    assert_eq!(info.expected_size, Some(info.file_size), "4x32 f32 tensor fills the file exactly");
}

#[test]
fn unsupported_architecture_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = tmp_file(&dir, "gemma.gguf");
    write_gguf(&path, &[arch("gemma2")], 1);
    let err = inspect(&path).expect_err("gemma2");
    assert!(matches!(err, Error::UnsupportedArchitecture { ref architecture, .. } if architecture == "gemma2"));
    let msg = err.to_string();
    assert!(msg.contains("gemma.gguf") && msg.contains("gemma2") && msg.contains("qwen2"), "{msg}");
}

#[test]
fn truncated_file_is_detected() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = tmp_file(&dir, "cut.gguf");
    write_gguf(&path, &[arch("qwen2")], 64);
    let full = std::fs::read(&path).expect("read");
    std::fs::write(&path, &full[..full.len() - 100]).expect("truncate");
    let err = inspect(&path).expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    // cut inside the header
    std::fs::write(&path, &full[..30]).expect("truncate");
    let err = inspect(&path).expect_err("header cut");
    assert!(err.to_string().contains("truncated or corrupt header"), "{err}");
}

#[test]
fn not_gguf_missing_and_corrupt_headers() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = tmp_file(&dir, "x.gguf");
    std::fs::write(&path, b"PK\x03\x04 this is a zip").expect("write");
    assert!(inspect(&path).expect_err("zip").to_string().contains("not a GGUF file"));
    std::fs::write(&path, b"").expect("write");
    assert!(inspect(&path).expect_err("empty").to_string().contains("truncated"));
    assert!(matches!(inspect(&dir.path().join("nope.gguf")), Err(Error::ModelNotFound(_))));

    // A string length of 2^60 must be refused, not allocated.
    let mut evil = Vec::new();
    evil.extend_from_slice(b"GGUF");
    evil.extend_from_slice(&3u32.to_le_bytes());
    evil.extend_from_slice(&0u64.to_le_bytes());
    evil.extend_from_slice(&1u64.to_le_bytes());
    evil.extend_from_slice(&(1u64 << 60).to_le_bytes());
    std::fs::write(&path, &evil).expect("write");
    assert!(read_header(&path).expect_err("evil").to_string().contains("corrupt"));

    // No architecture key at all.
    write_gguf(&path, &[("general.name", gguf_file::Value::String("x".into()))], 1);
    assert!(inspect(&path).expect_err("no arch").to_string().contains("general.architecture"));
}

#[tokio::test(flavor = "multi_thread")]
async fn loader_failures_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tmp");
    // Supported architecture, but none of the metadata a real model has: mistral.rs fails
    // (or panics) inside its loader; either way the caller gets an error.
    let path = tmp_file(&dir, "hollow.gguf");
    write_gguf(&path, &[arch("llama")], 4);
    let err = MistralRsStudent::load(&path, MistralRsOptions::default()).await.expect_err("hollow model");
    assert!(matches!(err, Error::Load { .. }), "{err}");
    assert!(err.to_string().contains("hollow.gguf"), "{err}");

    let err =
        MistralRsStudent::load(&dir.path().join("absent.gguf"), MistralRsOptions::default()).await.expect_err("absent");
    assert!(matches!(err, Error::ModelNotFound(_)), "{err}");
}
