//! GGUF files from a Hugging Face model repository, where the network allows.
//!
//! A spec is `hf:OWNER/REPO[/FILE.gguf][@REVISION]`. Without a file name, the repository's
//! file list picks it: its only `.gguf`, or its only `Q4_K_M` one. Files land in
//! `<models dir>/hf/OWNER/REPO/REVISION/FILE`; a file already there is used without the
//! network. Downloads resume from a `.partial` file, give up when the server stalls for a
//! minute, and are checked against the hub's sha256 (the `X-Linked-Etag` of LFS files) or,
//! when it has none, the announced size.
//!
//! The endpoint is `$HF_ENDPOINT` (a mirror) or `https://huggingface.co`; `$HF_TOKEN`, when
//! set, is sent for gated and private repositories and never printed.
//!
//! We fetch with reqwest rather than the `hf-hub` crate because we need a stall timeout,
//! resumable partial files and errors instead of panics, none of which its sync API offers.

use crate::models::{PullProgress, sha256_file};
use crate::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The spec prefix.
pub const PREFIX: &str = "hf:";

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How long a connection may stall (connect, or between two reads) before the pull fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed `hf:` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubModel {
    /// `owner/name`.
    pub repo: String,
    /// The file in the repository, when named.
    pub file: Option<String>,
    /// Branch, tag or commit (`main` by default).
    pub revision: String,
}

impl HubModel {
    /// Parses `hf:OWNER/REPO[/FILE][@REVISION]`; `None` when `spec` is not an `hf:` spec.
    pub fn parse(spec: &str) -> Option<Result<HubModel>> {
        let rest = spec.strip_prefix(PREFIX)?;
        let bad = |why: &str| {
            Some(Err(Error::Hub {
                spec: spec.to_string(),
                message: format!("{why}; write hf:OWNER/REPO[/FILE.gguf][@REVISION]"),
            }))
        };
        let (path, revision) = match rest.rsplit_once('@') {
            Some((path, rev)) if !rev.is_empty() => (path, rev.to_string()),
            Some(_) => return bad("the revision after `@` is empty"),
            None => (rest, "main".to_string()),
        };
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() < 2 || !stays_inside(path) {
            return bad("not a repository id");
        }
        let valid = |p: &str| p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid(parts[0]) || !valid(parts[1]) {
            return bad("a repository id has letters, digits, `-`, `_` and `.` only");
        }
        let revision_ok =
            stays_inside(&revision) && revision.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !revision_ok {
            return bad("not a valid revision");
        }
        let file = (parts.len() > 2).then(|| parts[2..].join("/"));
        Some(Ok(HubModel { repo: format!("{}/{}", parts[0], parts[1]), file, revision }))
    }

    /// The spec, written back.
    pub fn spec(&self) -> String {
        let file = self.file.as_deref().map(|f| format!("/{f}")).unwrap_or_default();
        let rev = if self.revision == "main" { String::new() } else { format!("@{}", self.revision) };
        format!("{PREFIX}{}{file}{rev}", self.repo)
    }
}

/// A `/`-separated relative path that, joined to a folder, stays inside it: no empty, `.`
/// or `..` parts. (Repository ids, revisions and file names all become local paths.)
fn stays_inside(path: &str) -> bool {
    path.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
}

/// The endpoint in use: `$HF_ENDPOINT`, else the public hub.
pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// Where a hub file is kept under the models folder.
pub fn local_path(models_dir: &Path, model: &HubModel, file: &str) -> PathBuf {
    let mut path = models_dir.join("hf").join(&model.repo).join(&model.revision);
    for part in file.split('/') {
        path.push(part);
    }
    path
}

/// Hub files are checked against the hub's answer (sha256 or size) at download; their
/// markers record that under this identity.
const HUB_MARKER: &str = "hf";

fn is_verified(path: &Path) -> bool {
    crate::models::is_verified(path, HUB_MARKER)
}

/// Makes sure the model's file is in `models_dir` and verified, downloading it from
/// `endpoint` if not.
///
/// The HTTP work runs on a thread of its own, so this may be called from async code too.
pub fn pull(
    models_dir: &Path,
    endpoint: &str,
    model: &HubModel,
    on_progress: &mut dyn FnMut(PullProgress),
) -> Result<PathBuf> {
    if let Some(file) = &model.file {
        let path = local_path(models_dir, model, file);
        if is_verified(&path) {
            on_progress(PullProgress::AlreadyPresent);
            return Ok(path);
        }
    } else {
        // A repository named without a file: the one verified .gguf already pulled from it
        // serves without the network (offline, and no listing call each run).
        let dir = models_dir.join("hf").join(&model.repo).join(&model.revision);
        let pulled: Vec<PathBuf> = fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")) && is_verified(p))
                    .collect()
            })
            .unwrap_or_default();
        if let [only] = pulled.as_slice() {
            on_progress(PullProgress::AlreadyPresent);
            return Ok(only.clone());
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let hub = Hub::new(model, endpoint)?;
            hub.fetch(models_dir, &mut |p| {
                let _ = tx.send(p);
            })
        });
        for progress in rx {
            on_progress(progress);
        }
        worker.join()
    });
    result.unwrap_or_else(|_| Err(Error::Hub { spec: model.spec(), message: "the download thread panicked".into() }))
}

struct Hub<'a> {
    model: &'a HubModel,
    endpoint: String,
    token: Option<String>,
    client: reqwest::blocking::Client,
    /// The same, not following redirects: the hub's own answer carries the checksum.
    head_client: reqwest::blocking::Client,
}

impl<'a> Hub<'a> {
    fn new(model: &'a HubModel, endpoint: &str) -> Result<Self> {
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::blocking::Client::builder()
                .user_agent(concat!("skd/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(STALL_TIMEOUT)
                .timeout(STALL_TIMEOUT)
                .redirect(redirects)
                .build()
                .map_err(|e| Error::Hub { spec: model.spec(), message: format!("HTTP client: {e}") })
        };
        Ok(Hub {
            model,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()),
            client: build(reqwest::redirect::Policy::limited(10))?,
            head_client: build(reqwest::redirect::Policy::none())?,
        })
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::Hub { spec: self.model.spec(), message: message.into() }
    }

    fn get(&self, client: &reqwest::blocking::Client, url: &str) -> reqwest::blocking::RequestBuilder {
        let request = client.get(url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A request error in words, with the endpoint (never the token).
    fn send_error(&self, e: reqwest::Error) -> Error {
        let cause = if e.is_timeout() {
            format!("{} did not answer within {} s", self.endpoint, STALL_TIMEOUT.as_secs())
        } else if e.is_connect() {
            let mut source: &dyn std::error::Error = &e;
            while let Some(inner) = source.source() {
                source = inner;
            }
            format!("cannot reach {} ({source})", self.endpoint)
        } else {
            format!("request to {} failed: {e}", self.endpoint)
        };
        self.error(format!(
            "{cause}; on a machine without access to the hub, set HF_ENDPOINT to a mirror or download the .gguf and \
             pass its path"
        ))
    }

    fn status_error(&self, status: reqwest::StatusCode, what: &str) -> Error {
        let why = match status.as_u16() {
            401 | 403 => format!(
                "{what} refused ({status}): the repository is gated or private{}",
                if self.token.is_some() { " and HF_TOKEN does not grant access" } else { "; set HF_TOKEN" }
            ),
            404 => format!("{what} not found ({status}): check the repository, file and revision"),
            _ => format!("{what} failed: {status}"),
        };
        self.error(why)
    }

    /// The file to fetch: the one named, or the repository's only (Q4_K_M) `.gguf`.
    fn choose_file(&self) -> Result<String> {
        if let Some(file) = &self.model.file {
            return Ok(file.clone());
        }
        let url = format!("{}/api/models/{}/revision/{}", self.endpoint, self.model.repo, self.model.revision);
        let response = self.get(&self.client, &url).send().map_err(|e| self.send_error(e))?;
        if !response.status().is_success() {
            return Err(self.status_error(response.status(), "listing the repository"));
        }
        #[derive(serde::Deserialize)]
        struct Info {
            siblings: Vec<Sibling>,
        }
        #[derive(serde::Deserialize)]
        struct Sibling {
            rfilename: String,
        }
        let info: Info = response
            .json()
            .map_err(|e| self.error(format!("the repository listing is not what the hub sends: {e}")))?;
        // Names from the listing become local paths: nothing that could leave the folder.
        let safe = |f: &str| stays_inside(f) && !f.contains('\\');
        let ggufs: Vec<String> = info
            .siblings
            .into_iter()
            .map(|s| s.rfilename)
            .filter(|f| f.to_ascii_lowercase().ends_with(".gguf") && safe(f))
            .collect();
        let q4km: Vec<&String> = ggufs.iter().filter(|f| f.to_ascii_uppercase().contains("Q4_K_M")).collect();
        match (ggufs.as_slice(), q4km.as_slice()) {
            ([], _) => Err(self.error("the repository has no .gguf file")),
            ([only], _) => Ok(only.clone()),
            (_, [only]) => Ok((*only).clone()),
            (all, _) => Err(self.error(format!(
                "the repository has {} .gguf files; name one, e.g. {PREFIX}{}/{} (all: {})",
                all.len(),
                self.model.repo,
                all[0],
                all.join(", ")
            ))),
        }
    }

    fn fetch(&self, models_dir: &Path, on_progress: &mut dyn FnMut(PullProgress)) -> Result<PathBuf> {
        let file = self.choose_file()?;
        let dest = local_path(models_dir, self.model, &file);
        if is_verified(&dest) {
            on_progress(PullProgress::AlreadyPresent);
            return Ok(dest);
        }
        let dir = dest.parent().unwrap_or(models_dir).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // One pull of a file at a time; whoever waited finds it verified.
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let lock_path = dir.join(format!(".{name}.lock"));
        let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        lock.lock().map_err(|e| Error::io(&lock_path, e))?;
        if is_verified(&dest) {
            on_progress(PullProgress::AlreadyPresent);
            return Ok(dest);
        }
        let url = format!("{}/{}/resolve/{}/{}", self.endpoint, self.model.repo, self.model.revision, file);
        // The hub's first answer (before any redirect to its CDN) names the LFS sha256.
        let head =
            self.get(&self.head_client, &url).header("Range", "bytes=0-0").send().map_err(|e| self.send_error(e))?;
        if !(head.status().is_success() || head.status().is_redirection()) {
            return Err(self.status_error(head.status(), &format!("fetching {file}")));
        }
        let header = |name: &str| head.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let sha256 = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_ascii_lowercase())
            .filter(|e| e.len() == 64 && e.chars().all(|c| c.is_ascii_hexdigit()));
        let announced_size = header("x-linked-size")
            .and_then(|s| s.parse::<u64>().ok())
            .or_else(|| header("content-range").and_then(|r| r.rsplit('/').next().and_then(|n| n.parse::<u64>().ok())));

        let partial = dir.join(format!(".{name}.partial"));
        let have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        // A partial file that already holds everything (a pull killed while verifying) goes
        // straight to the check; a server answering 416 to the resume says the same.
        let complete = have > 0 && announced_size.is_some_and(|n| have >= n);
        if !complete {
            on_progress(PullProgress::Downloading {
                index: 1,
                total: 1,
                package: format!("{} {file}", self.model.spec()),
            });
            self.download(&url, &partial, have, &file)?;
        }
        on_progress(PullProgress::Verifying);
        let size = fs::metadata(&partial).map_err(|e| Error::io(&partial, e))?.len();
        if let Some(expected) = &sha256 {
            let actual = sha256_file(&partial)?;
            if &actual != expected {
                let _ = fs::remove_file(&partial);
                return Err(Error::ChecksumMismatch { path: dest, expected: expected.clone(), actual });
            }
        } else if let Some(expected) = announced_size
            && expected != size
        {
            let _ = fs::remove_file(&partial);
            return Err(self.error(format!("{file}: the hub announced {expected} bytes, {size} arrived")));
        }
        fs::rename(&partial, &dest).map_err(|e| Error::io(&dest, e))?;
        crate::models::mark_verified(&dest, HUB_MARKER)?;
        Ok(dest)
    }

    /// Streams `url` into `partial`, resuming after its first `have` bytes when the server
    /// allows (206); a 200 starts the file over.
    fn download(&self, url: &str, partial: &Path, have: u64, file: &str) -> Result<()> {
        let mut request = self.get(&self.client, url);
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let mut response = request.send().map_err(|e| self.send_error(e))?;
        let status = response.status();
        if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            return Ok(());
        }
        if !status.is_success() {
            return Err(self.status_error(status, &format!("fetching {file}")));
        }
        let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT && have > 0;
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(partial)
            .map_err(|e| Error::io(partial, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = response.read(&mut buf).map_err(|e| {
                self.error(format!(
                    "the download of {file} broke off ({e}); run the command again to resume from {}",
                    partial.display()
                ))
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(|e| Error::io(partial, e))?;
        }
        out.sync_all().map_err(|e| Error::io(partial, e))
    }
}

#[cfg(test)]
mod tests {
    use super::HubModel;

    #[test]
    fn specs_parse_and_print_back() {
        let m = HubModel::parse("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf@v1")
            .expect("hf spec")
            .expect("valid");
        assert_eq!(m.repo, "Qwen/Qwen2.5-0.5B-Instruct-GGUF");
        assert_eq!(m.file.as_deref(), Some("qwen2.5-0.5b-instruct-q4_k_m.gguf"));
        assert_eq!(m.revision, "v1");
        assert_eq!(m.spec(), "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf@v1");
        let bare = HubModel::parse("hf:a/b").expect("hf").expect("valid");
        assert_eq!((bare.file, bare.revision.as_str()), (None, "main"));
        let nested = HubModel::parse("hf:a/b/sub/x.gguf").expect("hf").expect("valid");
        assert_eq!(nested.file.as_deref(), Some("sub/x.gguf"));
        assert!(HubModel::parse("qwen2.5-coder-0.5b").is_none());
        for bad in ["hf:", "hf:onlyowner", "hf:a//x.gguf", "hf:a/b@", "hf:a/../x", "hf:a b/c", "hf:a/b@../x"] {
            let err = HubModel::parse(bad).expect("hf spec").expect_err(bad);
            assert!(err.to_string().contains("hf:OWNER/REPO"), "{bad}: {err}");
        }
    }
}
