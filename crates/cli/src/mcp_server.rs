//! `skd mcp`: skd's knowledge base and skill library as an MCP server over stdio, so other
//! agents (and skd's own agent loop) can search notes and read skills. Logs go to stderr;
//! stdout carries only the protocol.

use crate::config::Config;
use retrieval::{HitKind, SearchIndex, SearchOptions};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{ErrorData, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use skill_core::{Scope, Skill};
use std::sync::Arc;

/// Arguments of `skd_search`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct SearchArgs {
    /// What to look for; any text.
    pub query: String,
    /// How many hits (default 5).
    pub limit: Option<usize>,
    /// `all` (default), `skills` or `notes`.
    pub scope: Option<String>,
}

/// Arguments of `skd_read_skill`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct SkillArgs {
    /// The skill's name.
    pub name: String,
}

/// The server: a config to find the index and the library.
#[derive(Clone)]
pub struct SkdMcp {
    config: Arc<Config>,
}

fn text(s: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s)])
}

fn tool_error(s: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(s)])
}

#[tool_router]
impl SkdMcp {
    #[tool(
        description = "Search the user's knowledge base of markdown notes and skills. Returns file, heading path, line range and a snippet for each hit."
    )]
    async fn skd_search(&self, Parameters(args): Parameters<SearchArgs>) -> Result<CallToolResult, ErrorData> {
        // Opening the index and reading its segments is blocking file work.
        Ok(skill_core::blocking(|| self.search(args)))
    }

    #[tool(description = "Read the full SKILL.md of a skill by name.")]
    async fn skd_read_skill(&self, Parameters(args): Parameters<SkillArgs>) -> Result<CallToolResult, ErrorData> {
        Ok(skill_core::blocking(|| self.read_skill(&args.name)))
    }

    #[tool(description = "List the skills in the library with their descriptions.")]
    async fn skd_list_skills(&self) -> String {
        // Reads every SKILL.md of the library.
        skill_core::blocking(|| self.list_skills())
    }
}

/// The tools' bodies: file work, run off the async workers by the tools above.
impl SkdMcp {
    fn search(&self, args: SearchArgs) -> CallToolResult {
        let scope = match args.scope.as_deref() {
            None | Some("all") => Scope::All,
            Some("skills") => Scope::Skills,
            Some("notes") => Scope::Notes,
            Some(other) => return tool_error(format!("scope must be all, skills or notes, not `{other}`")),
        };
        let index = match SearchIndex::open(&self.config.index_dir.value) {
            Ok(i) => i,
            Err(e) => return tool_error(e.to_string()),
        };
        let opts = SearchOptions { limit: args.limit.unwrap_or(5).clamp(1, 50), scope, ..SearchOptions::default() };
        let hits = match index.search(&args.query, &opts) {
            Ok(h) => h,
            Err(e) => return tool_error(e.to_string()),
        };
        if hits.is_empty() {
            return text(format!("no matches for {:?}", args.query));
        }
        let out: Vec<String> = hits
            .iter()
            .map(|h| match h.kind {
                HitKind::Skill => format!("skill {} ({})\n{}", h.title, h.path.display(), h.snippet),
                HitKind::Note => format!(
                    "note {}:{}-{} [{}]\n{}",
                    h.path.display(),
                    h.line_start,
                    h.line_end,
                    h.heading_path.join(" > "),
                    h.snippet
                ),
            })
            .collect();
        text(out.join("\n\n"))
    }

    fn read_skill(&self, name: &str) -> CallToolResult {
        let entry = match self.config.library().find(name) {
            Ok(e) => e,
            Err(e) => return tool_error(e.to_string()),
        };
        match Skill::read(&entry.skill_md()) {
            Ok(skill) => text(skill.to_markdown()),
            Err(e) => tool_error(e.to_string()),
        }
    }

    fn list_skills(&self) -> String {
        let discovery = self.config.library().discover();
        let lines: Vec<String> = discovery
            .skills
            .iter()
            .map(|e| {
                let desc = Skill::read(&e.skill_md())
                    .map(|s| s.description().trim().to_string())
                    .unwrap_or_else(|err| format!("(unreadable: {err})"));
                format!("{}: {desc}", e.name)
            })
            .collect();
        if lines.is_empty() { "no skills".to_string() } else { lines.join("\n") }
    }
}

#[tool_handler(
    name = "skd",
    instructions = "Search the user's notes and skills before answering procedural questions."
)]
impl ServerHandler for SkdMcp {}

/// Serves until the client disconnects.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let server = SkdMcp { config: Arc::new(config) };
    let running = server.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}
