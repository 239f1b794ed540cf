//! `hf:OWNER/REPO[/FILE]` models, fetched over real HTTP from a loopback server that answers
//! like the Hugging Face hub (file listing, `resolve` URLs with ranges, the LFS sha256 in
//! the ETag), selected as a mirror would be (`HF_ENDPOINT`).

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use student::models::{ModelStore, PullProgress};

struct Hub {
    gguf: Vec<u8>,
    sha256: String,
    file_requests: AtomicUsize,
}

fn tiny_gguf() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let t = Tensor::ones((4, 32), DType::F32, &Device::Cpu).expect("tensor");
    let q = QTensor::quantize(&t, GgmlDType::F32).expect("quantize");
    let arch = gguf_file::Value::String("llama".into());
    gguf_file::write(&mut out, &[("general.architecture", &arch)], &[("token_embd.weight", &q)]).expect("gguf");
    out.into_inner()
}

async fn listing(UrlPath((owner, repo, _rev)): UrlPath<(String, String, String)>) -> Response {
    let files: &[&str] = match (owner.as_str(), repo.as_str()) {
        ("acme", "tiny") => &["README.md", "tiny.Q8_0.gguf"],
        ("acme", "pick") => &["m.Q8_0.gguf", "m.Q4_K_M.gguf"],
        ("acme", "many") => &["a.Q8_0.gguf", "b.Q8_0.gguf"],
        ("acme", "gated") => return StatusCode::UNAUTHORIZED.into_response(),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let siblings: Vec<serde_json::Value> = files.iter().map(|f| serde_json::json!({"rfilename": f})).collect();
    axum::Json(serde_json::json!({"sha": "0123abcd", "siblings": siblings})).into_response()
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    UrlPath((owner, repo, _rev, _file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if owner != "acme" || !["tiny", "pick", "corrupt"].contains(&repo.as_str()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    hub.file_requests.fetch_add(1, Ordering::SeqCst);
    // The "corrupt" repository announces a checksum its bytes do not have.
    let etag = if repo == "corrupt" { "f".repeat(64) } else { hub.sha256.clone() };
    let total = hub.gguf.len();
    let (start, end) = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(range) => {
            let spec = range.trim_start_matches("bytes=");
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = b.parse().map(|b: usize| b + 1).unwrap_or(total).min(total);
            (a, b)
        }
        None => (0, total),
    };
    let status = if headers.contains_key(header::RANGE) { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    (
        status,
        [
            (header::ETAG.as_str(), format!("\"{etag}\"")),
            ("x-repo-commit", "0123abcd".to_string()),
            (header::CONTENT_RANGE.as_str(), format!("bytes {start}-{}/{total}", end.saturating_sub(1))),
        ],
        hub.gguf[start..end].to_vec(),
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_models_download_verify_cache_and_fail_clearly() {
    let gguf = tiny_gguf();
    let sha256 = hex::encode(Sha256::digest(&gguf));
    let hub = Arc::new(Hub { gguf, sha256, file_requests: AtomicUsize::new(0) });
    let app = Router::new()
        .route("/api/models/{owner}/{repo}/revision/{rev}", get(listing))
        .route("/{owner}/{repo}/resolve/{rev}/{*file}", get(resolve))
        .with_state(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let models = tempfile::tempdir().expect("tmp");
    // What `HF_ENDPOINT` does for the CLI.
    let store = ModelStore::new(models.path()).with_hub_endpoint(format!("http://{addr}"));
    let resolve = |spec: &str| {
        let store = store.clone();
        let spec = spec.to_string();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut seen = Vec::new();
                let result = store.resolve(&spec, &mut |p| seen.push(p));
                (result, seen)
            })
            .await
            .expect("join")
        }
    };

    // Named file: downloaded, checked against the sha256 in the ETag, kept under hf/.
    let (path, seen) = resolve("hf:acme/tiny/tiny.Q8_0.gguf").await;
    let path = path.expect("downloaded");
    assert_eq!(path, models.path().join("hf/acme/tiny/main/tiny.Q8_0.gguf"));
    assert_eq!(std::fs::read(&path).expect("read"), hub.gguf);
    assert!(seen.contains(&PullProgress::Verifying), "{seen:?}");
    assert_eq!(student::gguf::inspect(&path).expect("a valid GGUF").architecture, "llama");
    let requests = hub.file_requests.load(Ordering::SeqCst);

    // Again: served from the cache, no request for the file.
    let (again, seen) = resolve("hf:acme/tiny/tiny.Q8_0.gguf").await;
    assert_eq!(again.expect("cached"), path);
    assert_eq!(seen, vec![PullProgress::AlreadyPresent]);
    assert_eq!(hub.file_requests.load(Ordering::SeqCst), requests);

    // No file named: the only .gguf, or the only Q4_K_M one.
    let (only, _) = resolve("hf:acme/tiny").await;
    assert_eq!(only.expect("only gguf"), path);
    let (picked, _) = resolve("hf:acme/pick").await;
    assert!(picked.expect("picked").ends_with("hf/acme/pick/main/m.Q4_K_M.gguf"));

    // An interrupted pull resumes from its partial file (the server sends the rest), and a
    // partial that is already whole (killed while verifying) is checked without a download.
    let pick_dir = models.path().join("hf/acme/pick/main");
    std::fs::create_dir_all(&pick_dir).expect("mkdir");
    std::fs::write(pick_dir.join(".m.Q8_0.gguf.partial"), &hub.gguf[..hub.gguf.len() / 2]).expect("half");
    let (resumed, seen) = resolve("hf:acme/pick/m.Q8_0.gguf").await;
    assert_eq!(std::fs::read(resumed.expect("resumed")).expect("read"), hub.gguf, "{seen:?}");
    let pick_q4 = pick_dir.join("m.Q4_K_M.gguf");
    std::fs::remove_file(&pick_q4).expect("rm");
    std::fs::write(pick_dir.join(".m.Q4_K_M.gguf.partial"), &hub.gguf).expect("whole");
    let (whole, seen) = resolve("hf:acme/pick/m.Q4_K_M.gguf").await;
    assert_eq!(whole.expect("verified"), pick_q4);
    assert!(!seen.iter().any(|p| matches!(p, PullProgress::Downloading { .. })), "{seen:?}");

    // Errors name the spec and the cause; nothing corrupt is kept.
    let (many, _) = resolve("hf:acme/many").await;
    let many = many.expect_err("ambiguous").to_string();
    assert!(many.contains("hf:acme/many") && many.contains("2 .gguf files") && many.contains("b.Q8_0.gguf"), "{many}");
    let (gated, _) = resolve("hf:acme/gated").await;
    let gated = gated.expect_err("gated").to_string();
    assert!(gated.contains("gated or private") && gated.contains("HF_TOKEN"), "{gated}");
    let (missing, _) = resolve("hf:acme/nothing/x.gguf").await;
    assert!(missing.expect_err("404").to_string().contains("not found"));
    let (corrupt, _) = resolve("hf:acme/corrupt/tiny.Q8_0.gguf").await;
    assert!(corrupt.expect_err("bad checksum").to_string().contains("checksum mismatch"));
    assert!(!models.path().join("hf/acme/corrupt/main/tiny.Q8_0.gguf").exists());
    let (bad_spec, _) = resolve("hf:acme").await;
    assert!(bad_spec.expect_err("bad spec").to_string().contains("hf:OWNER/REPO"));

    // A server that is gone: a clear error naming the endpoint, not a hang.
    server.abort();
    let _ = server.await;
    let (gone, _) = resolve("hf:acme/tiny/other.gguf").await;
    let gone = gone.expect_err("unreachable").to_string();
    assert!(gone.contains(&format!("cannot reach http://{addr}")) && gone.contains("HF_ENDPOINT"), "{gone}");
    // ...while what is cached still resolves offline, named or not.
    let (offline, _) = resolve("hf:acme/tiny/tiny.Q8_0.gguf").await;
    assert_eq!(offline.expect("cached offline"), path);
    let (offline, _) = resolve("hf:acme/tiny").await;
    assert_eq!(offline.expect("the one file pulled from the repository"), path);
}
