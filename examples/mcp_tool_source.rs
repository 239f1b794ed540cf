//! An MCP server as a tool source: launches `skd mcp` (skd's own MCP server, in this
//! workspace) over stdio, lists its tools and calls one, then hands the tools to an agent.
//!
//! ```sh
//! cargo build -p skd-cli
//! cargo run -p skd-examples --example mcp_tool_source -- target/debug/skd "how do I roll back"
//! ```

use agent_loop::mcp::{McpServer, McpServerConfig};
use agent_loop::tools::ToolRegistry;
use anyhow::Result;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let skd = args.next().unwrap_or_else(|| "skd".into());
    let query = args.next().unwrap_or_else(|| "deploy".into());
    let server = McpServer::connect(&McpServerConfig {
        name: "skd".into(),
        command: skd,
        args: vec!["mcp".into()],
        env: Default::default(),
        startup_timeout_secs: 20.0,
    })
    .await?;
    let mut registry = ToolRegistry::new();
    for tool in server.tools() {
        let spec = tool.spec();
        println!("tool {}: {}", spec.name, spec.description);
        registry.register(tool)?;
    }
    let search = registry.get("skd_search").ok_or_else(|| anyhow::anyhow!("skd mcp offers no skd_search"))?;
    let out = search.call(json!({"query": query, "limit": 3})).await?;
    println!("\nskd_search {query:?} ->\n{}", out.content);
    // `registry` can now be given to `agent_loop::Agent::with_tools`.
    Ok(())
}
