//! OpenAiTeacher against a real HTTP server on loopback that misbehaves on purpose: 500s,
//! 429s, bodies that are not chat completions, answers cut off at the token limit, a server
//! that never answers, and no server at all.

use skill_core::{ChatMessage, CompletionRequest, Role, Teacher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use teacher::{OpenAiTeacher, OpenAiTeacherConfig, RetryPolicy, ask_json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone)]
enum Reply {
    Status(u16, &'static str),
    Chat { content: String, finish: &'static str },
    Hang,
}

fn chat(content: &str) -> Reply {
    Reply::Chat { content: content.to_string(), finish: "stop" }
}

/// Serves the scripted replies in order (the last one repeats); returns the base URL and
/// the bodies of the requests received.
async fn serve(script: Vec<Reply>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let reply = script[n.min(script.len() - 1)].clone();
            n += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let body = read_request(&mut socket).await;
                log.lock().expect("log").push(body);
                let (status, text) = match reply {
                    Reply::Hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    Reply::Status(code, body) => (code, body.to_string()),
                    Reply::Chat { content, finish } => (
                        200,
                        serde_json::json!({
                            "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                            "choices": [{"index": 0, "finish_reason": finish,
                                         "message": {"role": "assistant", "content": content}}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                        })
                        .to_string(),
                    ),
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    text.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(text.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, seen)
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = socket.read(&mut chunk).await else { return String::new() };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn teacher(url: &str, attempts: u32) -> OpenAiTeacher {
    let mut config = OpenAiTeacherConfig::new(url, "test-model");
    config.api_key = Some("sk-test-secret-123".into());
    config.retry = RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..RetryPolicy::default()
    };
    config.prices = teacher::Prices { input_per_million: 1.0, output_per_million: 2.0 };
    OpenAiTeacher::new(config).expect("teacher")
}

fn request(timeout: Duration) -> CompletionRequest {
    let mut r = CompletionRequest::new(vec![ChatMessage::new(Role::User, "give me JSON")]);
    r.timeout = timeout;
    r.max_tokens = 50;
    r
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried() {
    let (url, seen) = serve(vec![
        Reply::Status(500, r#"{"error": {"message": "boom", "type": "server_error"}}"#),
        Reply::Status(429, r#"{"error": {"message": "slow down", "type": "rate_limit"}}"#),
        chat("hello"),
    ])
    .await;
    let t = teacher(&url, 5);
    let out = t.complete(&request(Duration::from_secs(10))).await.expect("third attempt works");
    assert_eq!(out.text, "hello");
    assert_eq!(seen.lock().expect("seen").len(), 3);
    let totals = t.totals();
    assert_eq!((totals.requests, totals.prompt_tokens, totals.completion_tokens), (1, 10, 5));
    assert!((totals.cost_usd - (10.0 * 1.0 + 5.0 * 2.0) / 1e6).abs() < 1e-12);
    let body = &seen.lock().expect("seen")[2];
    assert!(body.contains("\"test-model\"") && body.contains("give me JSON"), "{body}");
}

#[tokio::test]
async fn client_errors_are_not_retried_and_name_the_endpoint() {
    let (url, seen) = serve(vec![Reply::Status(401, r#"{"error": {"message": "bad key", "type": "auth"}}"#)]).await;
    let err = teacher(&url, 5).complete(&request(Duration::from_secs(10))).await.expect_err("401");
    let msg = err.to_string();
    assert!(msg.contains(&url) && msg.contains("401") && msg.contains("bad key"), "{msg}");
    assert!(!msg.contains("sk-test-secret-123"), "the key must never appear: {msg}");
    assert_eq!(seen.lock().expect("seen").len(), 1);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_each_attempt() {
    let (url, seen) = serve(vec![Reply::Hang]).await;
    let err = teacher(&url, 5).complete(&request(Duration::from_millis(300))).await.expect_err("timeout");
    assert!(err.to_string().contains("no answer within") && err.to_string().contains("after 2 attempts"), "{err}");
    assert_eq!(seen.lock().expect("seen").len(), 2, "a hanging server is tried twice, not max_attempts times");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    drop(listener);
    let err = teacher(&url, 2).complete(&request(Duration::from_secs(5))).await.expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("connection failed") && msg.contains(&url), "{msg}");
}

#[tokio::test]
async fn a_body_that_is_not_a_completion_is_retried_then_reported() {
    let (url, seen) = serve(vec![Reply::Status(200, "<html>proxy error</html>")]).await;
    let err = teacher(&url, 2).complete(&request(Duration::from_secs(5))).await.expect_err("garbage");
    assert!(err.to_string().contains("not a chat completion"), "{err}");
    assert_eq!(seen.lock().expect("seen").len(), 2, "one retry");
}

#[derive(serde::Deserialize, Debug)]
struct Cases {
    cases: Vec<String>,
}

#[tokio::test]
async fn invalid_json_gets_one_repair_request() {
    let (url, seen) =
        serve(vec![chat("Sure! {\"cases\": [1, 2]}"), chat("```json\n{\"cases\": [\"a\", \"b\"]}\n```")]).await;
    let t = teacher(&url, 1);
    let answer = ask_json(&t, &request(Duration::from_secs(5)), "eval cases", |c: &Cases| {
        if c.cases.is_empty() { Err("no cases".into()) } else { Ok(()) }
    })
    .await
    .expect("repaired");
    assert!(answer.repaired);
    assert_eq!(answer.value.cases, vec!["a", "b"]);
    let repair = &seen.lock().expect("seen")[1];
    assert!(repair.contains("cannot be used") && repair.contains("required shape"), "{repair}");
}

#[tokio::test]
async fn truncated_output_twice_is_an_error_not_a_value() {
    let cut = Reply::Chat { content: "{\"cases\": [\"a\", \"b".into(), finish: "length" };
    let (url, _) = serve(vec![cut]).await;
    let t = teacher(&url, 1);
    let err =
        ask_json(&t, &request(Duration::from_secs(5)), "eval cases", |_: &Cases| Ok(())).await.expect_err("cut twice");
    let msg = err.to_string();
    assert!(msg.contains("eval cases") && msg.contains("cut off"), "{msg}");
}
