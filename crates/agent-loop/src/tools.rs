//! Tools: the built-ins (confined to a workspace folder), Rust functions registered by
//! library users, and the registry the loop looks tools up in.
//!
//! The file tools open every path beneath the workspace with `cap-std`, which resolves it
//! one component at a time relative to the workspace's open folder: `..` above it, absolute
//! paths elsewhere and symlinks that lead out fail at the open itself, so nothing can swap a
//! checked path for another between a check and the open.

use crate::{Error, Result};
use async_trait::async_trait;
use cap_std::fs::Dir;
use serde_json::{Value, json};
use skill_core::{Hit, RetrievalQuery, Retriever, Scope, Tool, ToolOutput, ToolSpec};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

/// The tools a run may use, by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

/// True for a name the reply grammar can carry: letters, digits and `_ - . : /`.
pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool; a second tool with the same name, a reserved name, or a name with
    /// spaces or quotes (which the reply format cannot carry) is refused.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<()> {
        let name = tool.spec().name;
        if name == crate::protocol::ACTIVATE_SKILL || name == crate::protocol::FINAL_ANSWER {
            return Err(Error::Config(format!("`{name}` is reserved by the agent loop")));
        }
        if !is_valid_tool_name(&name) {
            return Err(Error::Config(format!(
                "tool name {name:?} must be letters, digits and _ - . : / (at most 128)"
            )));
        }
        if self.tools.contains_key(&name) {
            return Err(Error::Config(format!("two tools are named `{name}`")));
        }
        self.tools.insert(name, tool);
        Ok(())
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.get(name).cloned()
    }

    /// Specs of every tool, sorted by name.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec()).collect()
    }

    /// Tool names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tools.keys().cloned().collect()
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = skill_core::Result<ToolOutput>> + Send>>;

/// A tool made from an async Rust closure: the easy way for library users to give the agent
/// a function.
pub struct FnTool {
    spec: ToolSpec,
    call: Box<dyn Fn(Value) -> BoxFuture + Send + Sync>,
}

impl FnTool {
    /// `parameters` is the JSON schema of the arguments object.
    pub fn new<F, Fut>(name: &str, description: &str, parameters: Value, f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = skill_core::Result<ToolOutput>> + Send + 'static,
    {
        FnTool {
            spec: ToolSpec { name: name.into(), description: description.into(), parameters },
            call: Box::new(move |args| Box::pin(f(args))),
        }
    }
}

#[async_trait]
impl Tool for FnTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, arguments: Value) -> skill_core::Result<ToolOutput> {
        (self.call)(arguments).await
    }
}

/// A successful tool result.
pub fn ok(content: impl Into<String>) -> ToolOutput {
    ToolOutput { content: content.into(), is_error: false }
}

/// A tool result that reports a problem the model can fix.
pub fn fail(content: impl Into<String>) -> ToolOutput {
    ToolOutput { content: content.into(), is_error: true }
}

/// Resolves `requested` inside `root` by name only, refusing `..` above the root, absolute
/// paths elsewhere and symlinks that point out. For copying trusted fixtures into a fresh
/// workspace (the eval runner); the tools themselves open paths with [`Workspace`], which
/// has no gap between the check and the open.
pub fn resolve_in_root(root: &Path, requested: &str) -> std::result::Result<PathBuf, String> {
    let root = root.canonicalize().map_err(|e| format!("workspace {}: {e}", root.display()))?;
    let rel = relative_in(&root, requested)?;
    let out = root.join(&rel);
    // Symlinks: the deepest existing ancestor must still be inside the root.
    let mut existing = out.as_path();
    while !existing.exists() {
        existing = existing.parent().unwrap_or(&root);
    }
    let real = existing.canonicalize().map_err(|e| format!("{requested}: {e}"))?;
    if !real.starts_with(&root) {
        return Err(format!("{requested} leads outside the workspace (symlink)"));
    }
    Ok(out)
}

/// `requested` as a path relative to `root` (an absolute path must lie under the root),
/// with `.` and inner `..` folded; `..` above the root is refused.
fn relative_in(root: &Path, requested: &str) -> std::result::Result<PathBuf, String> {
    let requested = requested.trim();
    let path = Path::new(requested);
    let rel = if path.is_absolute() {
        path.strip_prefix(root).map_err(|_| format!("{requested} is outside the workspace"))?
    } else {
        path
    };
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(format!("{requested} is outside the workspace"));
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(format!("{requested} is outside the workspace")),
        }
    }
    Ok(out)
}

/// A workspace folder, opened once by path; every file operation goes through it.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The workspace at `root` (opened on each use, so a folder that appears later works).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Workspace { root: root.into() }
    }

    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn open(&self) -> std::result::Result<(Dir, PathBuf), String> {
        let canonical = self.root.canonicalize().map_err(|e| format!("workspace {}: {e}", self.root.display()))?;
        let dir = Dir::open_ambient_dir(&canonical, cap_std::ambient_authority())
            .map_err(|e| format!("workspace {}: {e}", self.root.display()))?;
        Ok((dir, canonical))
    }

    /// The workspace folder and `requested` relative to it.
    fn beneath(&self, requested: &str) -> std::result::Result<(Dir, PathBuf), String> {
        let (dir, canonical) = self.open()?;
        let rel = relative_in(&canonical, requested)?;
        Ok((dir, rel))
    }

    /// Reads at most `limit` bytes of a file; the flag says whether there was more.
    pub fn read(&self, requested: &str, limit: usize) -> std::result::Result<(Vec<u8>, bool), String> {
        let (dir, rel) = self.beneath(requested)?;
        let file = dir.open(&rel).map_err(|e| describe(requested, "read", &e))?;
        let mut bytes = Vec::with_capacity(limit.min(64 * 1024) + 1);
        file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(|e| describe(requested, "read", &e))?;
        let more = bytes.len() > limit;
        bytes.truncate(limit);
        Ok((bytes, more))
    }

    /// Creates or replaces a file atomically: content goes to a temporary file beside it,
    /// then is renamed over it, both beneath the workspace.
    pub fn write(&self, requested: &str, contents: &[u8]) -> std::result::Result<(), String> {
        let (dir, rel) = self.beneath(requested)?;
        let name = rel.file_name().ok_or_else(|| format!("{requested} names no file"))?.to_string_lossy().into_owned();
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        if !parent.as_os_str().is_empty() {
            // A symlink where a folder should be is "already there"; opening it below says
            // whether it stays inside.
            match dir.create_dir_all(&parent) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(describe(requested, "create the folder of", &e));
                }
                _ => {}
            }
        }
        let folder = if parent.as_os_str().is_empty() {
            dir.try_clone().map_err(|e| describe(requested, "write", &e))?
        } else {
            dir.open_dir(&parent).map_err(|e| describe(requested, "write", &e))?
        };
        let tmp = format!(".{name}.tmp.{}.{}", std::process::id(), unique_suffix());
        let mut options = cap_std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        let written = folder.open_with(&tmp, &options).and_then(|mut f| {
            f.write_all(contents)?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|()| folder.rename(&tmp, &folder, &name)) {
            let _ = folder.remove_file(&tmp);
            return Err(describe(requested, "write", &e));
        }
        Ok(())
    }

    /// The entries of a folder, sorted, folders with a trailing `/`.
    pub fn list(&self, requested: &str) -> std::result::Result<Vec<String>, String> {
        let (dir, rel) = self.beneath(requested)?;
        let folder = if rel.as_os_str().is_empty() {
            dir
        } else {
            dir.open_dir(&rel).map_err(|e| describe(requested, "list", &e))?
        };
        let mut names = Vec::new();
        for entry in folder.entries().map_err(|e| describe(requested, "list", &e))? {
            let entry = entry.map_err(|e| describe(requested, "list", &e))?;
            let mut name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                name.push('/');
            }
            names.push(name);
        }
        names.sort();
        Ok(names)
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// An I/O error in words; cap-std's refusal to leave the folder becomes "leads outside the
/// workspace".
fn describe(requested: &str, what: &str, e: &std::io::Error) -> String {
    let text = e.to_string();
    if e.kind() == std::io::ErrorKind::PermissionDenied && text.contains("outside") {
        format!("{requested} leads outside the workspace (symlink or `..`)")
    } else {
        format!("cannot {what} {requested}: {text}")
    }
}

fn arg_str<'a>(args: &'a Value, key: &str) -> std::result::Result<&'a str, String> {
    args.get(key).and_then(Value::as_str).ok_or_else(|| format!("missing string argument `{key}`"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, String> + Send + 'static,
) -> std::result::Result<T, String> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(format!("the file operation failed: {e}")))
}

/// `read_file`: a text file of the workspace, at most `max_bytes` of it.
pub struct ReadFile {
    workspace: Workspace,
    max_bytes: usize,
}

impl ReadFile {
    /// Reads files under `root`, at most 64 KiB of each.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ReadFile { workspace: Workspace::new(root), max_bytes: 64 * 1024 }
    }

    /// Reads at most `max_bytes` of each file.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }
}

#[async_trait]
impl Tool for ReadFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "read_file".into(),
            description: "Read a text file in the workspace.".into(),
            parameters: path_only_parameters(),
        }
    }

    async fn call(&self, args: Value) -> skill_core::Result<ToolOutput> {
        let path = match arg_str(&args, "path") {
            Ok(p) => p.to_string(),
            Err(e) => return Ok(fail(e)),
        };
        let (workspace, limit) = (self.workspace.clone(), self.max_bytes);
        Ok(match blocking(move || workspace.read(&path, limit)).await {
            Ok((bytes, more)) => {
                let mut text = String::from_utf8_lossy(&bytes).into_owned();
                if more {
                    text.push_str(&format!(
                        "{}the file goes on; only the first {limit} bytes are shown]",
                        crate::transcript::CUT_MARK
                    ));
                }
                ok(text)
            }
            Err(e) => fail(e),
        })
    }
}

/// The arguments of a tool that takes one workspace path and nothing else.
fn path_only_parameters() -> Value {
    json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"], "additionalProperties": false})
}

/// `write_file`: creates or replaces a file of the workspace, atomically.
pub struct WriteFile {
    workspace: Workspace,
}

impl WriteFile {
    /// Writes files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        WriteFile { workspace: Workspace::new(root) }
    }
}

#[async_trait]
impl Tool for WriteFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "write_file".into(),
            description: "Create or overwrite a text file in the workspace.".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}, "required": ["path", "content"], "additionalProperties": false}),
        }
    }

    async fn call(&self, args: Value) -> skill_core::Result<ToolOutput> {
        let (path, content) = match arg_str(&args, "path").and_then(|p| Ok((p.to_string(), arg_str(&args, "content")?)))
        {
            Ok((p, c)) => (p, c.to_string()),
            Err(e) => return Ok(fail(e)),
        };
        let workspace = self.workspace.clone();
        let shown = path.clone();
        let len = content.len();
        Ok(match blocking(move || workspace.write(&path, content.as_bytes())).await {
            Ok(()) => ok(format!("wrote {len} bytes to {shown}")),
            Err(e) => fail(e),
        })
    }
}

/// `list_dir`: the entries of a workspace folder.
pub struct ListDir {
    workspace: Workspace,
}

impl ListDir {
    /// Lists folders under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ListDir { workspace: Workspace::new(root) }
    }
}

#[async_trait]
impl Tool for ListDir {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "list_dir".into(),
            description: "List the files and folders of a workspace folder (default: the workspace root).".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "additionalProperties": false}),
        }
    }

    async fn call(&self, args: Value) -> skill_core::Result<ToolOutput> {
        let requested = args.get("path").and_then(Value::as_str).unwrap_or(".").to_string();
        let workspace = self.workspace.clone();
        Ok(match blocking(move || workspace.list(&requested)).await {
            Ok(names) if names.is_empty() => ok("(empty)"),
            Ok(names) => ok(names.join("\n")),
            Err(e) => fail(e),
        })
    }
}

/// `calculate`: the value of an arithmetic expression ([`crate::arith`]). The argument's
/// schema admits only numbers, operators, parentheses and spaces, so with a grammar the
/// student cannot write a word or an `=` into it.
pub struct Calculate;

#[async_trait]
impl Tool for Calculate {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "calculate".into(),
            description:
                "Work out an arithmetic expression (numbers, + - * / ^ and parentheses) and return the number.".into(),
            parameters: json!({"type": "object", "properties": {"expression": {"type": "string", "pattern": "^[0-9.+*/%^() -]+$"}}, "required": ["expression"], "additionalProperties": false}),
        }
    }

    async fn call(&self, args: Value) -> skill_core::Result<ToolOutput> {
        let expression = match arg_str(&args, "expression") {
            Ok(e) => e,
            Err(e) => return Ok(fail(e)),
        };
        Ok(match crate::arith::evaluate(expression) {
            Ok(value) => ok(crate::arith::format_number(value)),
            Err(e) => fail(format!("cannot calculate {expression:?}: {e}")),
        })
    }
}

/// The text of a workspace file for the counting tools, and a note when only its first
/// `limit` bytes were read.
async fn read_text(workspace: &Workspace, path: &str, limit: usize) -> std::result::Result<(String, String), String> {
    let (workspace, path) = (workspace.clone(), path.to_string());
    let (bytes, more) = blocking(move || workspace.read(&path, limit)).await?;
    let note = if more { format!(" (in the first {limit} bytes; the file goes on)") } else { String::new() };
    Ok((String::from_utf8_lossy(&bytes).into_owned(), note))
}

/// `count_words`: how many words a workspace file has (words are what whitespace
/// separates, as `wc -w` counts them).
pub struct CountWords {
    workspace: Workspace,
    max_bytes: usize,
}

impl CountWords {
    /// Counts in files under `root`, at most 1 MiB of each.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CountWords { workspace: Workspace::new(root), max_bytes: 1024 * 1024 }
    }
}

#[async_trait]
impl Tool for CountWords {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "count_words".into(),
            description: "Count the words of a text file in the workspace.".into(),
            parameters: path_only_parameters(),
        }
    }

    async fn call(&self, args: Value) -> skill_core::Result<ToolOutput> {
        let path = match arg_str(&args, "path") {
            Ok(p) => p.to_string(),
            Err(e) => return Ok(fail(e)),
        };
        Ok(match read_text(&self.workspace, &path, self.max_bytes).await {
            Ok((text, note)) => {
                let n = text.split_whitespace().count();
                ok(format!("{path} has {n} word{}{note}", if n == 1 { "" } else { "s" }))
            }
            Err(e) => fail(e),
        })
    }
}

/// `find_lines`: the lines of a workspace file that contain a text, with their count first
/// (`grep -F`, and `grep -c` in the same answer). The lines are not numbered: asked how many
/// to-dos were open, Qwen2.5-Coder-1.5B answered the first line's number instead of the
/// count above it (`1 line ... contains "- [ ]"` / `5: - [ ] water the plants` -> 5), and no
/// tool here takes a line number.
pub struct FindLines {
    workspace: Workspace,
    max_bytes: usize,
    max_lines_shown: usize,
}

impl FindLines {
    /// Searches files under `root`, at most 1 MiB of each, showing at most 50 lines.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FindLines { workspace: Workspace::new(root), max_bytes: 1024 * 1024, max_lines_shown: 50 }
    }
}

#[async_trait]
impl Tool for FindLines {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "find_lines".into(),
            description:
                "Find the lines of a workspace file that contain a text; returns how many there are and the lines."
                    .into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}}, "required": ["path", "text"], "additionalProperties": false}),
        }
    }

    async fn call(&self, args: Value) -> skill_core::Result<ToolOutput> {
        let (path, needle) = match arg_str(&args, "path").and_then(|p| Ok((p.to_string(), arg_str(&args, "text")?))) {
            Ok((p, t)) if !t.is_empty() => (p, t.to_string()),
            Ok(_) => return Ok(fail("`text` is empty: give the text the lines must contain")),
            Err(e) => return Ok(fail(e)),
        };
        Ok(match read_text(&self.workspace, &path, self.max_bytes).await {
            Ok((text, note)) => {
                let found: Vec<String> =
                    text.lines().filter(|line| line.contains(&needle)).map(str::to_string).collect();
                let n = found.len();
                let mut out = format!(
                    "{n} line{} of {path} contain{} {needle:?}{note}{}",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "s" } else { "" },
                    if n == 0 { "" } else { ":" }
                );
                for line in found.iter().take(self.max_lines_shown) {
                    out.push('\n');
                    out.push_str(line);
                }
                if n > self.max_lines_shown {
                    out.push_str(&format!("\n[... {} more lines]", n - self.max_lines_shown));
                }
                ok(out)
            }
            Err(e) => fail(e),
        })
    }
}

/// `search_notes`: the knowledge base, through any [`Retriever`].
pub struct SearchNotes {
    retriever: Arc<dyn Retriever>,
}

impl SearchNotes {
    /// Searches with `retriever`.
    pub fn new(retriever: Arc<dyn Retriever>) -> Self {
        SearchNotes { retriever }
    }
}

#[async_trait]
impl Tool for SearchNotes {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "search_notes".into(),
            description: "Search the knowledge base of notes. Returns matching sections with file and lines.".into(),
            parameters: json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"], "additionalProperties": false}),
        }
    }

    async fn call(&self, args: Value) -> skill_core::Result<ToolOutput> {
        let query = match arg_str(&args, "query") {
            Ok(q) => q.to_string(),
            Err(e) => return Ok(fail(e)),
        };
        let hits =
            self.retriever.retrieve(&RetrievalQuery { text: query.clone(), limit: 3, scope: Scope::Notes }).await?;
        if hits.is_empty() {
            return Ok(ok(format!("no notes match {query:?}")));
        }
        let text = hits
            .iter()
            .filter_map(|h| match h {
                Hit::Note(n) => Some(format!(
                    "{}:{}-{} [{}]\n{}",
                    n.path.display(),
                    n.line_start,
                    n.line_end,
                    n.heading_path.join(" > "),
                    n.snippet
                )),
                Hit::Skill(_) => None,
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        Ok(ok(text))
    }
}

/// What the built-in tools may do in the workspace.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceAccess {
    /// Offer `write_file` (and let the shell write inside the workspace). Off: read-only.
    pub write: bool,
    /// Offer the `shell` tool with these settings.
    pub shell: Option<crate::shell::ShellConfig>,
}

impl WorkspaceAccess {
    /// Read and write files; no shell.
    pub fn read_write() -> Self {
        WorkspaceAccess { write: true, shell: None }
    }
}

/// The built-in tools for a workspace: `read_file`, `list_dir`, `find_lines`,
/// `count_words` and `calculate`, `write_file` when writing is allowed, `search_notes` when a retriever is given, and `shell` when
/// configured.
pub fn builtin_tools(
    workspace: &Path,
    retriever: Option<Arc<dyn Retriever>>,
    access: &WorkspaceAccess,
) -> Vec<Arc<dyn Tool>> {
    let mut tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(ReadFile::new(workspace)),
        Arc::new(ListDir::new(workspace)),
        Arc::new(FindLines::new(workspace)),
        Arc::new(CountWords::new(workspace)),
        Arc::new(Calculate),
    ];
    if access.write {
        tools.push(Arc::new(WriteFile::new(workspace)));
    }
    if let Some(r) = retriever {
        tools.push(Arc::new(SearchNotes::new(r)));
    }
    if let Some(shell) = &access.shell {
        tools.push(Arc::new(crate::shell::Shell::new(workspace, access.write, shell.clone())));
    }
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_stops_at_its_limit() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::write(tmp.path().join("big.txt"), "x".repeat(10_000)).expect("write");
        let ws = Workspace::new(tmp.path());
        let (bytes, more) = ws.read("big.txt", 100).expect("read");
        assert_eq!((bytes.len(), more), (100, true));
        let (bytes, more) = ws.read("./big.txt", 10_000).expect("read");
        assert_eq!((bytes.len(), more), (10_000, false));
    }

    #[test]
    fn paths_stay_beneath_the_workspace() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("ws");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(tmp.path().join("outside.txt"), "private").expect("write");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.path().join("outside.txt"), root.join("link.txt")).expect("symlink");
            std::os::unix::fs::symlink(tmp.path(), root.join("sub/up")).expect("symlink");
        }
        let ws = Workspace::new(&root);
        assert!(ws.read("../outside.txt", 10).expect_err("..").contains("outside the workspace"));
        assert!(ws.read("/etc/hostname", 10).expect_err("abs").contains("outside the workspace"));
        #[cfg(unix)]
        {
            assert!(ws.read("link.txt", 10).expect_err("link").contains("leads outside"));
            assert!(ws.read("sub/up/outside.txt", 10).expect_err("dir link").contains("leads outside"));
            let e = ws.write("sub/up/planted.txt", b"x").expect_err("write via link");
            assert!(e.contains("leads outside"), "{e}");
            assert!(!tmp.path().join("planted.txt").exists());
        }
        ws.write("sub/../a/b.txt", b"42").expect("inner .. is fine");
        assert_eq!(std::fs::read_to_string(root.join("a/b.txt")).expect("written"), "42");
        let abs = root.canonicalize().expect("canon").join("a/b.txt");
        assert_eq!(ws.read(&abs.to_string_lossy(), 10).expect("absolute inside").0, b"42");
        assert_eq!(ws.list(".").expect("list"), ["a/", "link.txt", "sub/"].map(String::from).to_vec());
    }

    #[tokio::test]
    async fn calculate_counts_and_finds() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::write(tmp.path().join("todo.md"), "# Home\n- [ ] wash the car\n- [x] buy milk\n- [ ] call mum\n")
            .expect("write");
        std::fs::write(tmp.path().join("note.txt"), "Thanks everyone, see you  on\nMonday.\n").expect("write");
        let call = |tool: Arc<dyn Tool>, args: Value| async move { tool.call(args).await.expect("call") };
        let out = call(Arc::new(Calculate), json!({"expression": "20 * 9 / 5 + 32"})).await;
        assert_eq!((out.content.as_str(), out.is_error), ("68", false));
        let out = call(Arc::new(Calculate), json!({"expression": "17 + apples"})).await;
        assert!(out.is_error && out.content.contains("unexpected `a` at character 6"), "{}", out.content);
        let out = call(Arc::new(CountWords::new(tmp.path())), json!({"path": "note.txt"})).await;
        assert_eq!(out.content, "note.txt has 6 words");
        let out = call(Arc::new(FindLines::new(tmp.path())), json!({"path": "todo.md", "text": "- [ ]"})).await;
        assert_eq!(out.content, "2 lines of todo.md contain \"- [ ]\":\n- [ ] wash the car\n- [ ] call mum");
        let out = call(Arc::new(FindLines::new(tmp.path())), json!({"path": "../todo.md", "text": "x"})).await;
        assert!(out.is_error && out.content.contains("outside the workspace"), "{}", out.content);
        // The schema admits arithmetic only, so a grammar keeps words and `=` out.
        let pattern = Calculate.spec().parameters["properties"]["expression"]["pattern"].as_str().map(String::from);
        let re = regex::Regex::new(&pattern.expect("pattern")).expect("regex");
        assert!(re.is_match("(50 - 32) * 5 / 9") && !re.is_match("17 + 25 = 42") && !re.is_match("ten + 2"));
    }

    #[test]
    fn tool_names_the_reply_format_cannot_carry_are_refused() {
        let mut reg = ToolRegistry::new();
        let tool = |name: &str| Arc::new(FnTool::new(name, "d", json!({"type": "object"}), |_| async { Ok(ok("")) }));
        assert!(reg.register(tool("mcp.search")).is_ok());
        for bad in ["has space", "quote\"d", "", "activate_skill"] {
            assert!(reg.register(tool(bad)).is_err(), "{bad:?}");
        }
    }
}
