//! Tensors without SIMD kernels in candle are rewritten as Q8_0, once, and nothing else
//! in the file changes. Small GGUF files are written here with candle's `gguf_file::write`.

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use student::transcode::{TARGET_TYPE, cpu_ready, scalar_only_tensors};

/// Deterministic values in [-0.9, 0.9], 16 rows of 256 (a whole K-quant block per row).
fn weights(seed: f32) -> Tensor {
    let values: Vec<f32> = (0..16 * 256).map(|i| (i as f32 * 0.37 + seed).sin() * 0.9).collect();
    Tensor::from_vec(values, (16, 256), &Device::Cpu).expect("tensor")
}

fn write(path: &Path, tensors: &[(&str, GgmlDType)]) {
    let quantized: Vec<(String, QTensor)> = tensors
        .iter()
        .enumerate()
        .map(|(i, (name, dtype))| (name.to_string(), QTensor::quantize(&weights(i as f32), *dtype).expect("quantize")))
        .collect();
    let refs: Vec<(&str, &QTensor)> = quantized.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let arch = gguf_file::Value::String("llama".into());
    let name = gguf_file::Value::String("tiny".into());
    let mut f = File::create(path).expect("create");
    gguf_file::write(&mut f, &[("general.architecture", &arch), ("general.name", &name)], &refs).expect("write");
}

fn read(path: &Path) -> (gguf_file::Content, BufReader<File>) {
    let mut reader = BufReader::new(File::open(path).expect("open"));
    let content = gguf_file::Content::read(&mut reader).expect("read gguf");
    (content, reader)
}

fn values(content: &gguf_file::Content, reader: &mut BufReader<File>, name: &str) -> Vec<f32> {
    let t = content.tensor(reader, name, &Device::Cpu).expect("tensor");
    t.dequantize(&Device::Cpu).expect("dequantize").flatten_all().expect("flatten").to_vec1().expect("vec")
}

#[test]
fn scalar_only_tensors_become_q8_0_and_keep_their_values() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("mixed.gguf");
    write(&src, &[("a.weight", GgmlDType::Q5_0), ("b.weight", GgmlDType::Q4_1), ("c.weight", GgmlDType::Q4_0)]);
    assert_eq!(scalar_only_tensors(&src).expect("scan"), vec!["a.weight".to_string(), "b.weight".to_string()]);

    let cache = dir.path().join("cache");
    let out = cpu_ready(&src, &cache).expect("transcode");
    assert!(out.starts_with(&cache), "a transcoded copy goes to the cache, not {}", out.display());
    assert!(scalar_only_tensors(&out).expect("scan").is_empty());

    let (before, mut r0) = read(&src);
    let (after, mut r1) = read(&out);
    assert_eq!(after.tensor_infos["a.weight"].ggml_dtype, TARGET_TYPE);
    assert_eq!(after.tensor_infos["b.weight"].ggml_dtype, TARGET_TYPE);
    assert_eq!(after.tensor_infos["c.weight"].ggml_dtype, GgmlDType::Q4_0, "fast types are left alone");
    assert_eq!(after.metadata["general.name"].to_string().expect("name"), "tiny");
    for name in ["a.weight", "b.weight"] {
        let (old, new) = (values(&before, &mut r0, name), values(&after, &mut r1, name));
        let worst = old.iter().zip(&new).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        // Q8_0's step is max|x|/127 per block of 32 and its rounding error half that, plus
        // the f16 rounding of the block scale (2^-11 relative). Q5_0's own step here is
        // 0.9/16, so the transcode adds well under a tenth of the original error.
        let bound = 0.9 / 127.0 / 2.0 + 0.9 / 2048.0;
        assert!(worst > 0.0 && worst <= bound, "{name}: values moved by {worst} (bound {bound})");
    }
    assert_eq!(values(&before, &mut r0, "c.weight"), values(&after, &mut r1, "c.weight"));
}

#[test]
fn transcode_happens_once_and_follows_the_source() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("m.gguf");
    let cache = dir.path().join("cache");
    write(&src, &[("a.weight", GgmlDType::Q5_0)]);
    let first = cpu_ready(&src, &cache).expect("first");
    let stamp = std::fs::metadata(&first).expect("meta").modified().expect("mtime");
    let again = cpu_ready(&src, &cache).expect("again");
    assert_eq!(first, again);
    assert_eq!(std::fs::metadata(&again).expect("meta").modified().expect("mtime"), stamp, "not rewritten");

    // A changed source gets a new transcode, and the stale one is removed.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&src, &[("a.weight", GgmlDType::Q5_0), ("b.weight", GgmlDType::Q5_1)]);
    let changed = cpu_ready(&src, &cache).expect("changed");
    assert_ne!(changed, first);
    assert!(!first.exists(), "stale transcode removed");
    let files: Vec<_> = std::fs::read_dir(&cache).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn concurrent_first_uses_of_a_model_each_get_a_whole_transcode() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("m.gguf");
    let cache = dir.path().join("cache");
    write(&src, &[("a.weight", GgmlDType::Q5_0), ("b.weight", GgmlDType::Q4_1)]);
    // Every thread transcodes (none finds the file yet): they shared one temporary file,
    // so a rename could take another's file away (NotFound) or move a half-written one.
    let barrier = std::sync::Barrier::new(4);
    let outs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    cpu_ready(&src, &cache)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for out in &outs {
        let out = out.as_ref().expect("each transcode succeeds");
        assert!(scalar_only_tensors(out).expect("a whole, readable file").is_empty());
    }
    let files: Vec<_> = std::fs::read_dir(&cache).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert_eq!(files.len(), 1, "one transcode and no partial files left: {files:?}");
}

#[test]
fn files_without_slow_types_are_used_as_they_are() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("fast.gguf");
    write(&src, &[("a.weight", GgmlDType::Q8_0), ("b.weight", GgmlDType::Q4K)]);
    let cache = dir.path().join("cache");
    assert_eq!(cpu_ready(&src, &cache).expect("ready"), src);
    assert!(!cache.exists(), "nothing written");
}

#[test]
fn a_corrupt_source_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("junk.gguf");
    std::fs::write(&src, b"GGUF\x03\x00\x00\x00garbage").expect("write");
    let err = cpu_ready(&src, &dir.path().join("cache")).expect_err("corrupt");
    assert!(err.to_string().contains("junk.gguf"), "{err}");
}
