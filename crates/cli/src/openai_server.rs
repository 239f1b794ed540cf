//! `skd serve` for any in-process [`Student`]: OpenAI's `/v1/chat/completions` (not
//! streamed) and `/v1/models`, with `response_format: json_schema` and the `grammar` field
//! (`{"type": "lark", "value": ...}`) the agent loop sends. Requests from several clients
//! at once reach the student together, so llama.cpp decodes them as one batch. A last
//! assistant message is continued where the student does so (llama.cpp, as its own server
//! does), and `/v1/models` says whether (`continue_final_message`), so a remote agent loop
//! can use its two-request reply.
//!
//! mistral.rs brings its own, fuller server (streaming, tools); `skd serve` uses that one
//! on mistral.rs and this one on llama.cpp.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skill_core::{ChatMessage, CompletionRequest, Role, Student};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The name clients send as `model` (any name is accepted).
pub const SERVED_MODEL: &str = "default";

/// The router.
pub fn router(student: Arc<dyn Student>) -> axum::Router {
    axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route("/v1/models", axum::routing::get(models))
        .with_state(student)
}

async fn models(State(student): State<Arc<dyn Student>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": SERVED_MODEL, "object": "model", "owned_by": "skd", "root": student.model_id(),
        // Not OpenAI's: what an `OpenAiCompatStudent` reads to use the agent loop's
        // two-request reply (a last assistant message is continued, not answered).
        "continue_final_message": student.continues_reply(),
        "lark_grammar": student.supports_grammar(),
    }]}))
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"message": message.into(), "type": kind}}))).into_response()
}

async fn chat(
    State(student): State<Arc<dyn Student>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", format!("the body is not JSON: {e}")),
    };
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", message),
    };
    match student.complete(&request).await {
        Ok(completion) => {
            let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let model = body["model"].as_str().unwrap_or(SERVED_MODEL);
            Json(json!({
                "id": format!("chatcmpl-{created}"),
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "finish_reason": completion.finish_reason,
                }],
                "usage": {
                    "prompt_tokens": completion.usage.prompt_tokens,
                    "completion_tokens": completion.usage.completion_tokens,
                    "total_tokens": completion.usage.prompt_tokens + completion.usage.completion_tokens,
                },
            }))
            .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()),
    }
}

/// Reads an OpenAI chat request; the message says which field is wrong.
fn parse_request(body: &Value) -> Result<CompletionRequest, String> {
    if body["stream"].as_bool() == Some(true) {
        return Err("streaming is not supported by this server: send \"stream\": false".into());
    }
    let messages = body["messages"].as_array().ok_or("`messages` must be an array of messages")?;
    let mut chat = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m["role"].as_str() {
            Some("system" | "developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("tool") => Role::Tool,
            other => {
                return Err(format!("messages[{i}].role: expected system, user, assistant or tool, got {other:?}"));
            }
        };
        let content = match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""),
            other => return Err(format!("messages[{i}].content: expected text, got {other}")),
        };
        chat.push(ChatMessage::new(role, content));
    }
    if chat.is_empty() {
        return Err("`messages` is empty".into());
    }
    let mut request = CompletionRequest::new(chat);
    if let Some(n) = body.get("max_completion_tokens").or_else(|| body.get("max_tokens")).filter(|v| !v.is_null()) {
        let n = n
            .as_u64()
            .filter(|n| *n >= 1 && *n <= 32_768)
            .ok_or("`max_tokens` must be a whole number from 1 to 32768")?;
        request.max_tokens = n as u32;
    }
    if let Some(t) = body.get("temperature").filter(|v| !v.is_null()) {
        let t = t.as_f64().filter(|t| (0.0..=2.0).contains(t)).ok_or("`temperature` must be a number from 0 to 2")?;
        request.temperature = (t > 0.0).then_some(t as f32);
    }
    request.stop = match &body["stop"] {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("`stop` must hold strings")?,
        _ => return Err("`stop` must be a string or an array of strings".into()),
    };
    match (&body["grammar"], &body["response_format"]) {
        (Value::Null, Value::Null) => {}
        (grammar @ Value::Object(_), _) => {
            if grammar["type"].as_str() != Some("lark") {
                return Err("`grammar.type` must be \"lark\"".into());
            }
            request.grammar =
                Some(grammar["value"].as_str().ok_or("`grammar.value` must be the grammar's text")?.into());
        }
        (Value::Null, format) => match format["type"].as_str() {
            Some("json_schema") => {
                let schema = &format["json_schema"]["schema"];
                if !schema.is_object() {
                    return Err("`response_format.json_schema.schema` must be a JSON schema object".into());
                }
                request.json_schema = Some(schema.clone());
            }
            Some("json_object") => request.json_schema = Some(json!({"type": "object"})),
            Some("text") => {}
            other => {
                return Err(format!(
                    "`response_format.type`: expected json_schema, json_object or text, got {other:?}"
                ));
            }
        },
        _ => return Err("`grammar` must be an object".into()),
    }
    // A long generation on a CPU takes minutes; the client's own timeout is what counts.
    request.timeout = Duration::from_secs(600);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_their_constraints_and_bad_fields_are_named() {
        let r = parse_request(&json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 7, "stop": "\n",
            "grammar": {"type": "lark", "value": "start: \"a\""}}))
        .expect("valid");
        assert_eq!(
            (r.max_tokens, r.stop.clone(), r.grammar.as_deref()),
            (7, vec!["\n".to_string()], Some("start: \"a\""))
        );
        let schema = parse_request(&json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
            "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}}))
        .expect("valid");
        assert_eq!(schema.json_schema, Some(json!({"type": "object"})));
        assert_eq!(schema.messages[0].content, "x");
        let err = parse_request(&json!({"messages": [{"role": "robot", "content": "x"}]})).expect_err("bad role");
        assert!(err.contains("messages[0].role"), "{err}");
        let err = parse_request(&json!({"messages": [{"role": "user", "content": "x"}], "stream": true}))
            .expect_err("stream");
        assert!(err.contains("streaming"), "{err}");
    }
}
