//! `OpenAiCompatStudent` against loopback servers over real HTTP: the reply grammar goes out
//! as mistral.rs's `grammar` field, and a server that refuses the field is asked again
//! without it, after which the student reports that it does not enforce grammars.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use skill_core::{ChatMessage, CompletionRequest, Role, Student};
use std::sync::{Arc, Mutex};
use student::OpenAiCompatStudent;

/// Keeps every request body; refuses a `grammar` field when `strict`, as OpenAI's own API
/// refuses arguments it does not know.
struct Server {
    strict: bool,
    bodies: Mutex<Vec<Value>>,
}

async fn completions(State(server): State<Arc<Server>>, body: axum::Json<Value>) -> Response {
    let body = body.0;
    server.bodies.lock().expect("lock").push(body.clone());
    if server.strict && body.get("grammar").is_some() {
        return (StatusCode::BAD_REQUEST, "Unrecognized request argument supplied: grammar").into_response();
    }
    axum::Json(json!({
        "id": "c-1", "object": "chat.completion", "created": 0, "model": "default",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Answer: 42"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    }))
    .into_response()
}

/// The model listing: `small` continues a last assistant message, `default` does not say,
/// `plain` continues and enforces no grammar.
async fn models() -> axum::Json<Value> {
    axum::Json(json!({"object": "list", "data": [
        {"id": "default", "object": "model", "owned_by": "test"},
        {"id": "small", "object": "model", "owned_by": "test", "continue_final_message": true, "root": "small-q4.gguf"},
        {"id": "plain", "object": "model", "owned_by": "test", "continue_final_message": true, "lark_grammar": false},
    ]}))
}

async fn serve(strict: bool) -> (String, Arc<Server>) {
    let server = Arc::new(Server { strict, bodies: Mutex::new(Vec::new()) });
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .route("/v1/models", axum::routing::get(models))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), server)
}

fn request() -> CompletionRequest {
    let mut r = CompletionRequest::new(vec![ChatMessage::new(Role::User, "6 times 7?")]);
    r.grammar = Some("start: \"Answer: 42\"".into());
    r
}

#[tokio::test]
async fn the_grammar_goes_out_as_the_grammar_field() {
    let (url, server) = serve(false).await;
    let student = OpenAiCompatStudent::new(&url, "default", None);
    assert!(student.supports_grammar());
    let done = student.complete(&request()).await.expect("completion");
    assert_eq!(done.text, "Answer: 42");
    let bodies = server.bodies.lock().expect("lock");
    assert_eq!(bodies[0]["grammar"], json!({"type": "lark", "value": "start: \"Answer: 42\""}));
    assert!(bodies[0].get("response_format").is_none());
    assert!(student.supports_grammar(), "an accepted grammar keeps the student constrained");
}

#[tokio::test]
async fn a_server_that_refuses_the_grammar_is_asked_again_without_it() {
    let (url, server) = serve(true).await;
    let student = OpenAiCompatStudent::new(&url, "default", None);
    let done = student.complete(&request()).await.expect("the second request is answered");
    assert_eq!(done.text, "Answer: 42");
    assert!(!student.supports_grammar(), "from now on the loop reads free text");
    let again = student.complete(&request()).await.expect("completion");
    assert_eq!(again.text, "Answer: 42");
    let bodies = server.bodies.lock().expect("lock");
    let with_grammar: Vec<bool> = bodies.iter().map(|b| b.get("grammar").is_some()).collect();
    assert_eq!(with_grammar, [true, false, false], "one refusal, then never again");
}

#[tokio::test]
async fn a_request_goes_out_in_openai_s_shape_and_the_reply_is_read_from_it() {
    let (url, server) = serve(false).await;
    let student = OpenAiCompatStudent::new(&url, "small", None);
    let mut r = CompletionRequest::new(vec![
        ChatMessage::new(Role::System, "Be brief."),
        ChatMessage::new(Role::User, "6 times 7?"),
        ChatMessage::new(Role::Assistant, "Let me see."),
        ChatMessage::new(Role::Tool, "Result: 42"),
    ]);
    r.max_tokens = 7;
    r.stop = vec!["Action:".into()];
    r.json_schema = Some(json!({"type": "object"}));
    let done = student.complete(&r).await.expect("completion");
    assert_eq!((done.text.as_str(), done.finish_reason.as_str()), ("Answer: 42", "length"));
    assert_eq!((done.usage.prompt_tokens, done.usage.completion_tokens), (12, 3));
    let body = server.bodies.lock().expect("lock")[0].clone();
    let roles: Vec<&str> =
        body["messages"].as_array().expect("messages").iter().map(|m| m["role"].as_str().unwrap_or("")).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"], "a tool result goes as a user turn");
    assert_eq!(body["messages"][3]["content"], "Result: 42");
    assert_eq!(
        (body["model"].as_str(), body["max_tokens"].as_u64(), body["stream"].as_bool()),
        (Some("small"), Some(7), Some(false))
    );
    assert_eq!(body["stop"], json!(["Action:"]));
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["schema"], json!({"type": "object"}));
    assert!(body.get("grammar").is_none());
}

#[tokio::test]
async fn a_reply_is_continued_only_where_the_server_lists_that_it_continues() {
    let (url, server) = serve(false).await;
    let continued = vec![ChatMessage::new(Role::User, "6 times 7?"), ChatMessage::new(Role::Assistant, "6 x 7 =")];

    let silent = OpenAiCompatStudent::new(&url, "default", None);
    assert!(!silent.discover().await, "`default` is listed without the field");
    assert!(!silent.continues_reply());
    silent.complete(&CompletionRequest::new(continued.clone())).await.expect("completion");

    let small = OpenAiCompatStudent::new(&url, "small", None);
    assert!(!small.continues_reply(), "not claimed before the listing is read");
    assert_eq!(small.model_id(), "small");
    assert!(small.discover().await);
    assert!(small.continues_reply());
    assert_eq!(small.model_id(), "small=small-q4.gguf", "what is served tells two servers' results apart");
    small.complete(&CompletionRequest::new(continued)).await.expect("completion");
    // A request that does not end with the assistant's message asks for a new reply.
    small.complete(&request()).await.expect("completion");

    let asked = OpenAiCompatStudent::new(&url, "default", None).with_continued_replies(true);
    assert!(asked.continues_reply(), "the user's word stands for servers that do not list it");

    // llama.cpp's server lists its one model as its alias, owned by "llamacpp", and answers to
    // any model name.
    let app = Router::new().route(
        "/v1/models",
        axum::routing::get(|| async {
            axum::Json(
                json!({"object": "list", "data": [{"id": "qwen.gguf", "object": "model", "owned_by": "llamacpp"}]}),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let llama_server = format!("http://{}/v1", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let llama = OpenAiCompatStudent::new(&llama_server, "anything", None);
    assert!(llama.discover().await);
    assert!(!llama.supports_grammar(), "llama.cpp's server reads `grammar` as GBNF: free text it is");
    // Two models listed, neither of them this one: nothing is known.
    let other = OpenAiCompatStudent::new(&url, "large", None);
    assert!(!other.discover().await && other.supports_grammar());
    assert!(small.supports_grammar(), "`small` is not listed as refusing grammars");
    let plain = OpenAiCompatStudent::new(&url, "plain", None);
    assert!(plain.discover().await && !plain.supports_grammar());

    let down = OpenAiCompatStudent::new("http://127.0.0.1:9/v1", "small", None);
    assert!(!down.discover().await && !down.continues_reply(), "nothing listens on port 9");

    let bodies = server.bodies.lock().expect("lock");
    let flags: Vec<(Option<bool>, Option<bool>)> =
        bodies.iter().map(|b| (b["continue_final_message"].as_bool(), b["add_generation_prompt"].as_bool())).collect();
    assert_eq!(flags, [(None, None), (Some(true), Some(false)), (None, None)]);
}
