//! Tools: the built-ins (confined to a workspace folder), Rust functions registered by
//! library users, and the registry the loop looks tools up in.

use crate::{Error, Result};
use async_trait::async_trait;
use serde_json::{Value, json};
use skill_core::{Hit, RetrievalQuery, Retriever, Scope, Tool, ToolOutput, ToolSpec};
use std::collections::BTreeMap;
use std::future::Future;
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

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool; a second tool with the same name is refused.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<()> {
        let name = tool.spec().name;
        if name == crate::protocol::ACTIVATE_SKILL || name == crate::protocol::FINAL_ANSWER {
            return Err(Error::Config(format!("`{name}` is reserved by the agent loop")));
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

/// Resolves `requested` inside `root`, refusing anything that leaves it: absolute paths
/// elsewhere, `..` above the root, and symlinks that point out.
pub fn resolve_in_root(root: &Path, requested: &str) -> std::result::Result<PathBuf, String> {
    let root = root.canonicalize().map_err(|e| format!("workspace {}: {e}", root.display()))?;
    let requested = requested.trim();
    let rel = Path::new(requested);
    let rel = if rel.is_absolute() {
        rel.strip_prefix(&root).map_err(|_| format!("{requested} is outside the workspace"))?.to_path_buf()
    } else {
        rel.to_path_buf()
    };
    let mut out = root.clone();
    for c in rel.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if out == root {
                    return Err(format!("{requested} is outside the workspace"));
                }
                out.pop();
            }
            Component::RootDir | Component::Prefix(_) => return Err(format!("{requested} is outside the workspace")),
        }
    }
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

fn arg_str<'a>(args: &'a Value, key: &str) -> std::result::Result<&'a str, String> {
    args.get(key).and_then(Value::as_str).ok_or_else(|| format!("missing string argument `{key}`"))
}

/// `read_file`: a text file of the workspace.
pub struct ReadFile {
    root: PathBuf,
    max_bytes: usize,
}

impl ReadFile {
    /// Reads files under `root`, at most 64 KiB of each.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ReadFile { root: root.into(), max_bytes: 64 * 1024 }
    }
}

#[async_trait]
impl Tool for ReadFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "read_file".into(),
            description: "Read a text file in the workspace.".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"], "additionalProperties": false}),
        }
    }

    async fn call(&self, args: Value) -> skill_core::Result<ToolOutput> {
        let path = match arg_str(&args, "path").and_then(|p| resolve_in_root(&self.root, p)) {
            Ok(p) => p,
            Err(e) => return Ok(fail(e)),
        };
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let shown = &bytes[..bytes.len().min(self.max_bytes)];
                let mut text = String::from_utf8_lossy(shown).into_owned();
                if bytes.len() > self.max_bytes {
                    text.push_str(&format!("\n[... {} more bytes not shown]", bytes.len() - self.max_bytes));
                }
                Ok(ok(text))
            }
            Err(e) => Ok(fail(format!("cannot read {}: {e}", display_rel(&self.root, &path)))),
        }
    }
}

/// `write_file`: creates or replaces a file of the workspace, atomically.
pub struct WriteFile {
    root: PathBuf,
}

impl WriteFile {
    /// Writes files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        WriteFile { root: root.into() }
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
        let (path, content) = match arg_str(&args, "path")
            .and_then(|p| resolve_in_root(&self.root, p))
            .and_then(|p| Ok((p, arg_str(&args, "content")?)))
        {
            Ok(x) => x,
            Err(e) => return Ok(fail(e)),
        };
        match skill_core::fsutil::atomic_write(&path, content.as_bytes()) {
            Ok(()) => Ok(ok(format!("wrote {} bytes to {}", content.len(), display_rel(&self.root, &path)))),
            Err(e) => Ok(fail(format!("cannot write: {e}"))),
        }
    }
}

/// `list_dir`: the entries of a workspace folder.
pub struct ListDir {
    root: PathBuf,
}

impl ListDir {
    /// Lists folders under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ListDir { root: root.into() }
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
        let requested = args.get("path").and_then(Value::as_str).unwrap_or(".");
        let dir = match resolve_in_root(&self.root, requested) {
            Ok(p) => p,
            Err(e) => return Ok(fail(e)),
        };
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) => return Ok(fail(format!("cannot list {requested}: {e}"))),
        };
        let mut names = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let mut name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                name.push('/');
            }
            names.push(name);
        }
        names.sort();
        Ok(ok(if names.is_empty() { "(empty)".to_string() } else { names.join("\n") }))
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

/// `shell`: runs a command with `sh -c` in the workspace. Off unless the user opts in.
pub struct Shell {
    root: PathBuf,
}

impl Shell {
    /// Runs commands in `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Shell { root: root.into() }
    }
}

#[async_trait]
impl Tool for Shell {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "shell".into(),
            description: "Run a shell command in the workspace folder; returns exit code, stdout and stderr.".into(),
            parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"], "additionalProperties": false}),
        }
    }

    async fn call(&self, args: Value) -> skill_core::Result<ToolOutput> {
        let command = match arg_str(&args, "command") {
            Ok(c) => c.to_string(),
            Err(e) => return Ok(fail(e)),
        };
        // kill_on_drop: when the loop's timeout drops this future, the child dies with it.
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&self.root)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await;
        match output {
            Ok(out) => {
                let code = out.status.code().map(|c| c.to_string()).unwrap_or_else(|| "killed".into());
                let text = format!(
                    "exit code {code}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                Ok(ToolOutput { content: text, is_error: !out.status.success() })
            }
            Err(e) => Ok(fail(format!("cannot run sh: {e}"))),
        }
    }
}

fn display_rel(root: &Path, path: &Path) -> String {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}

/// The built-in tools for a workspace: `read_file`, `write_file`, `list_dir`, plus
/// `search_notes` when a retriever is given and `shell` when allowed.
pub fn builtin_tools(workspace: &Path, retriever: Option<Arc<dyn Retriever>>, allow_shell: bool) -> Vec<Arc<dyn Tool>> {
    let mut tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(ReadFile::new(workspace)),
        Arc::new(WriteFile::new(workspace)),
        Arc::new(ListDir::new(workspace)),
    ];
    if let Some(r) = retriever {
        tools.push(Arc::new(SearchNotes::new(r)));
    }
    if allow_shell {
        tools.push(Arc::new(Shell::new(workspace)));
    }
    tools
}
