//! Tools from MCP servers: each configured server is launched as a stdio child process
//! through `rmcp`, its tools are listed once, and each becomes a [`Tool`] of the loop.

use crate::{Error, Result};
use async_trait::async_trait;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use skill_core::{Tool, ToolOutput, ToolSpec};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How to start one MCP server (the `[[mcp_servers]]` entries of the config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Name used in messages (and as a prefix when two servers offer the same tool name).
    pub name: String,
    /// Program to run.
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment besides PATH and HOME: nothing else of skd's (keys and tokens
    /// included) reaches it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Seconds the handshake and the tool listing may take together.
    #[serde(default = "default_startup_secs")]
    pub startup_timeout_secs: f64,
}

fn default_startup_secs() -> f64 {
    20.0
}

/// Bytes of a server's stderr kept (the end of it).
pub const STDERR_KEPT_BYTES: usize = 64 * 1024;

/// A running MCP server and the tools it offers.
pub struct McpServer {
    name: String,
    client: Arc<RunningService<RoleClient, ()>>,
    tools: Vec<ToolSpec>,
    stderr: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer").field("name", &self.name).field("tools", &self.tools.len()).finish()
    }
}

impl McpServer {
    /// Starts the server and lists its tools, within the config's startup timeout.
    pub async fn connect(config: &McpServerConfig) -> Result<McpServer> {
        let fail = |message: String| Error::Mcp { server: config.name.clone(), message };
        let command = tokio::process::Command::new(&config.command).configure(|cmd| {
            cmd.args(&config.args);
            cmd.env_clear();
            for name in ["PATH", "HOME"] {
                if let Some(value) = std::env::var_os(name) {
                    cmd.env(name, value);
                }
            }
            cmd.envs(&config.env);
        });
        let (transport, stderr_pipe) = TokioChildProcess::builder(command)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot start `{}`: {e}", config.command)))?;
        let stderr = Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(pipe) = stderr_pipe {
            tokio::spawn(keep_tail(pipe, stderr.clone()));
        }
        let limit = std::time::Duration::from_secs_f64(config.startup_timeout_secs.max(0.1));
        let started = async {
            let client = ().serve(transport).await.map_err(|e| fail(format!("handshake failed: {e}")))?;
            let listed = client.list_all_tools().await.map_err(|e| fail(format!("listing tools failed: {e}")))?;
            Ok::<_, Error>((client, listed))
        };
        let outcome = match tokio::time::timeout(limit, started).await {
            Ok(result) => result,
            Err(_) => {
                Err(fail(format!("no handshake and tool list within {limit:.0?} (startup_timeout_secs in the config)")))
            }
        };
        let (client, listed) = match outcome {
            Ok(x) => x,
            Err(Error::Mcp { server, message }) => {
                // What the server said on stderr is usually the reason.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let tail = tail_text(&stderr, 1_000);
                let message = if tail.is_empty() { message } else { format!("{message}; its stderr: {tail}") };
                return Err(Error::Mcp { server, message });
            }
            Err(other) => return Err(other),
        };
        let tools = listed
            .into_iter()
            .map(|t| ToolSpec {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                parameters: Value::Object((*t.input_schema).clone()),
            })
            .collect();
        Ok(McpServer { name: config.name.clone(), client: Arc::new(client), tools, stderr })
    }

    /// The end of what the server wrote to stderr (at most [`STDERR_KEPT_BYTES`]).
    pub fn stderr_tail(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().map(|b| b.clone()).unwrap_or_default()).into_owned()
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tools, as [`Tool`]s of the loop.
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.tools
            .iter()
            .map(|spec| {
                Arc::new(McpTool { server: self.name.clone(), client: self.client.clone(), spec: spec.clone() })
                    as Arc<dyn Tool>
            })
            .collect()
    }
}

/// The last `max_chars` characters of a stderr buffer, trimmed.
fn tail_text(buffer: &std::sync::Mutex<Vec<u8>>, max_chars: usize) -> String {
    let text = String::from_utf8_lossy(&buffer.lock().map(|b| b.clone()).unwrap_or_default()).trim().to_string();
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(max_chars)).collect()
}

/// Reads a server's stderr to its end, keeping the last [`STDERR_KEPT_BYTES`].
async fn keep_tail(mut pipe: impl tokio::io::AsyncRead + Unpin, kept: Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut k) = kept.lock() {
            k.extend_from_slice(&buf[..n]);
            if k.len() > STDERR_KEPT_BYTES {
                let cut = k.len() - STDERR_KEPT_BYTES;
                k.drain(..cut);
            }
        }
    }
}

/// One tool of an MCP server.
pub struct McpTool {
    server: String,
    client: Arc<RunningService<RoleClient, ()>>,
    spec: ToolSpec,
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, arguments: Value) -> skill_core::Result<ToolOutput> {
        let args = match arguments {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => return Ok(crate::tools::fail(format!("arguments must be an object, got {other}"))),
        };
        let result = self
            .client
            .call_tool(CallToolRequestParams::new(self.spec.name.clone()).with_arguments(args))
            .await
            .map_err(|e| skill_core::Error::Tool {
                tool: self.spec.name.clone(),
                message: format!("MCP server `{}`: {e}", self.server),
            })?;
        let mut text: Vec<String> = result.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.clone()).collect();
        if text.is_empty()
            && let Some(structured) = &result.structured_content
        {
            text.push(structured.to_string());
        }
        Ok(ToolOutput { content: text.join("\n"), is_error: result.is_error.unwrap_or(false) })
    }
}
