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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct McpServerConfig {
    /// Name used in messages (and as a prefix when two servers offer the same tool name).
    pub name: String,
    /// Program to run.
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A running MCP server and the tools it offers.
pub struct McpServer {
    name: String,
    client: Arc<RunningService<RoleClient, ()>>,
    tools: Vec<ToolSpec>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer").field("name", &self.name).field("tools", &self.tools.len()).finish()
    }
}

impl McpServer {
    /// Starts the server and lists its tools.
    pub async fn connect(config: &McpServerConfig) -> Result<McpServer> {
        let fail = |message: String| Error::Mcp { server: config.name.clone(), message };
        let command = tokio::process::Command::new(&config.command).configure(|cmd| {
            cmd.args(&config.args);
            cmd.envs(&config.env);
            cmd.stderr(std::process::Stdio::null());
        });
        let transport =
            TokioChildProcess::new(command).map_err(|e| fail(format!("cannot start `{}`: {e}", config.command)))?;
        let client = ().serve(transport).await.map_err(|e| fail(format!("handshake failed: {e}")))?;
        let listed = client.list_all_tools().await.map_err(|e| fail(format!("listing tools failed: {e}")))?;
        let tools = listed
            .into_iter()
            .map(|t| ToolSpec {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()).unwrap_or_default(),
                parameters: Value::Object((*t.input_schema).clone()),
            })
            .collect();
        Ok(McpServer { name: config.name.clone(), client: Arc::new(client), tools })
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
