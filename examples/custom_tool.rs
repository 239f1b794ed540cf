//! A Rust function as a tool in the agent loop, run by the real local student.
//!
//! ```sh
//! cargo run -p skd-examples --example custom_tool [-- MODEL]   # MODEL: id or .gguf (default smollm2-135m)
//! ```

use agent_loop::tools::{FnTool, ToolRegistry, fail, ok};
use agent_loop::{Agent, AgentConfig, Event, RunOptions};
use anyhow::Result;
use serde_json::json;
use std::sync::Arc;
use student::StudentSettings;

#[tokio::main]
async fn main() -> Result<()> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "smollm2-135m".into());
    let student = student::load_student(&model, &StudentSettings::default(), &mut |p| eprintln!("{p:?}")).await?;

    // Any async Rust function can be a tool: a name, a description, an argument schema.
    let word_count = FnTool::new(
        "word_count",
        "Count the words of a text.",
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"], "additionalProperties": false}),
        |args| async move {
            Ok(match args["text"].as_str() {
                Some(text) => ok(text.split_whitespace().count().to_string()),
                None => fail("`text` must be a string"),
            })
        },
    );
    let mut tools = ToolRegistry::new();
    tools.register(Arc::new(word_count))?;

    let agent = Agent::new(student, AgentConfig { max_steps: 4, ..AgentConfig::default() }).with_tools(tools);
    let task = "How many words are in the text 'the quick brown fox jumps'? Use the word_count tool.";
    let outcome = agent
        .run(task, &RunOptions::default(), &mut |e: &Event| {
            if let Event::ToolCall { tool, arguments, output, .. } = e {
                println!("tool {tool}({arguments}) -> {output}");
            }
        })
        .await?;
    println!("{:?}: {}", outcome.outcome, outcome.answer.unwrap_or_default());
    Ok(())
}
