//! What the model sees and what it must answer: the system prompt, the JSON schema that
//! constrains each reply to a valid call of a known tool (or a final answer), and the parser
//! that turns a reply into an [`Action`].

use serde_json::{Value, json};
use skill_core::ToolSpec;

/// The pseudo-tool that loads a skill's instructions.
pub const ACTIVATE_SKILL: &str = "activate_skill";
/// The key of a finishing reply.
pub const FINAL_ANSWER: &str = "final_answer";
/// Longest `thought` the schema allows, in characters: small models otherwise ramble until
/// the token limit and never reach the action.
pub const MAX_THOUGHT_CHARS: usize = 200;

/// What the model decided to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Call a tool with arguments.
    Call {
        /// Tool name.
        tool: String,
        /// Arguments object.
        args: Value,
    },
    /// Finish with an answer.
    Final(String),
}

/// A skill the model may activate: name and description only (the body is loaded on demand).
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    /// Skill name.
    pub name: String,
    /// Its description.
    pub description: String,
}

/// An activated skill.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveSkill {
    /// Skill name.
    pub name: String,
    /// Its instructions.
    pub body: String,
    /// The tools it may call (`None`: any).
    pub allowed_tools: Option<Vec<String>>,
}

/// A note excerpt shown up front.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteExcerpt {
    /// `path:lines [headings]`.
    pub source: String,
    /// The snippet.
    pub text: String,
}

/// The activate_skill tool's spec, offered when the catalog is not empty.
pub fn activate_skill_spec(catalog: &[CatalogEntry]) -> ToolSpec {
    let names: Vec<&str> = catalog.iter().map(|c| c.name.as_str()).collect();
    ToolSpec {
        name: ACTIVATE_SKILL.into(),
        description: "Load the step-by-step instructions of a skill from the catalog.".into(),
        parameters: json!({"type": "object", "properties": {"name": {"type": "string", "enum": names}}, "required": ["name"], "additionalProperties": false}),
    }
}

/// The system prompt.
pub fn system_prompt(
    tools: &[ToolSpec],
    catalog: &[CatalogEntry],
    notes: &[NoteExcerpt],
    active: Option<&ActiveSkill>,
) -> String {
    let mut p = String::from(
        "You complete the user's task step by step. Each turn, reply with exactly one JSON object:\n\
         {\"thought\": \"<short reasoning>\", \"final_answer\": \"<the answer>\"} when you can answer, or\n\
         {\"thought\": \"<short reasoning>\", \"tool\": \"<tool name>\", \"args\": {<arguments>}} to call a tool.\n\
         After a tool call you will get its result as an observation.\n\
         Use tools only to read or change files or to search notes; when the task and the skill are enough, \
         give the final_answer right away.\n",
    );
    if !tools.is_empty() {
        p.push_str("\nTools:\n");
        for t in tools {
            let args = t
                .parameters
                .get("properties")
                .and_then(Value::as_object)
                .map(|props| props.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            p.push_str(&format!("- {}({args}): {}\n", t.name, t.description));
        }
    }
    if !catalog.is_empty() && active.is_none() {
        p.push_str(
            "\nSkills (call activate_skill with the name of the one that fits the task to get its instructions):\n",
        );
        for c in catalog {
            p.push_str(&format!("- {}: {}\n", c.name, one_line(&c.description)));
        }
    }
    if !notes.is_empty() {
        p.push_str("\nNotes from the knowledge base that may help:\n");
        for n in notes {
            p.push_str(&format!("[{}] {}\n", n.source, one_line(&n.text)));
        }
    }
    if let Some(skill) = active {
        p.push_str(&format!("\nFollow the skill `{}`:\n{}\n", skill.name, skill.body.trim()));
    }
    p
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A tool's argument schema as the constraint uses it: object schemas pass through; anything
/// else (an MCP server may send exotic schemas) becomes "any object", so the grammar always
/// compiles.
fn args_schema(spec: &ToolSpec) -> Value {
    match &spec.parameters {
        Value::Object(map) if map.get("type").and_then(Value::as_str) == Some("object") => {
            let mut schema = json!({"type": "object"});
            for key in ["properties", "required", "additionalProperties"] {
                if let Some(v) = map.get(key) {
                    schema[key] = v.clone();
                }
            }
            schema
        }
        _ => json!({"type": "object"}),
    }
}

/// The JSON schema every reply must match: one branch per tool (with that tool's argument
/// schema) and one for the final answer.
pub fn reply_schema(tools: &[ToolSpec]) -> Value {
    let thought = json!({"type": "string", "maxLength": MAX_THOUGHT_CHARS});
    // The answer branch comes first: small models lean towards the first option they see,
    // and most tasks end with an answer, not another tool call.
    let mut branches: Vec<Value> = vec![json!({
        "type": "object",
        "properties": {"thought": thought, FINAL_ANSWER: {"type": "string"}},
        "required": ["thought", FINAL_ANSWER],
        "additionalProperties": false
    })];
    branches.extend(tools.iter().map(|t| {
        json!({
            "type": "object",
            "properties": {"thought": thought, "tool": {"const": t.name}, "args": args_schema(t)},
            "required": ["thought", "tool", "args"],
            "additionalProperties": false
        })
    }));
    json!({"anyOf": branches})
}

/// Parses a reply. Tolerates text around the JSON object (backends without constrained
/// decoding); everything else is an error message meant for the model.
pub fn parse_reply(text: &str) -> Result<Action, String> {
    let value: Value = match serde_json::from_str(text.trim()) {
        Ok(v) => v,
        Err(first) => match extract_object(text).and_then(|s| serde_json::from_str(s).ok()) {
            Some(v) => v,
            None => return Err(format!("the reply is not a JSON object ({first})")),
        },
    };
    let Value::Object(map) = value else {
        return Err("the reply must be a JSON object".into());
    };
    if let Some(answer) = map.get(FINAL_ANSWER) {
        return match answer {
            Value::String(s) => Ok(Action::Final(s.clone())),
            other => Ok(Action::Final(other.to_string())),
        };
    }
    match map.get("tool") {
        Some(Value::String(tool)) if !tool.trim().is_empty() => {
            let args = match map.get("args") {
                None | Some(Value::Null) => json!({}),
                Some(Value::Object(o)) => Value::Object(o.clone()),
                Some(other) => return Err(format!("`args` must be an object, got {other}")),
            };
            Ok(Action::Call { tool: tool.trim().to_string(), args })
        }
        Some(other) => Err(format!("`tool` must be a tool name, got {other}")),
        None => Err(format!("the reply needs either \"tool\" and \"args\", or \"{FINAL_ANSWER}\"")),
    }
}

/// The first balanced `{...}` in the text (strings and escapes respected).
fn extract_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..start + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_calls_and_finals() {
        assert_eq!(
            parse_reply(r#"{"thought": "look", "tool": "read_file", "args": {"path": "a.txt"}}"#),
            Ok(Action::Call { tool: "read_file".into(), args: json!({"path": "a.txt"}) })
        );
        assert_eq!(parse_reply(r#"{"thought": "done", "final_answer": "42"}"#), Ok(Action::Final("42".into())));
        assert_eq!(parse_reply(r#"{"final_answer": 42}"#), Ok(Action::Final("42".into())));
        assert_eq!(
            parse_reply("Sure! ```json\n{\"tool\": \"list_dir\", \"args\": {\"note\": \"a } in a string\"}}\n``` done"),
            Ok(Action::Call { tool: "list_dir".into(), args: json!({"note": "a } in a string"}) })
        );
        assert_eq!(
            parse_reply(r#"{"tool": "list_dir"}"#),
            Ok(Action::Call { tool: "list_dir".into(), args: json!({}) })
        );
    }

    #[test]
    fn malformed_replies_explain_the_problem() {
        for (text, needle) in [
            ("", "not a JSON object"),
            ("I will read the file", "not a JSON object"),
            (r#"{"thought": "truncated", "tool": "read_fi"#, "not a JSON object"),
            ("[1, 2]", "must be a JSON object"),
            (r#"{"thought": "x"}"#, "needs either"),
            (r#"{"tool": 3}"#, "must be a tool name"),
            (r#"{"tool": "read_file", "args": "a.txt"}"#, "must be an object"),
        ] {
            let err = parse_reply(text).expect_err(text);
            assert!(err.contains(needle), "{text:?} -> {err}");
        }
    }

    #[test]
    fn schema_has_a_branch_per_tool_and_one_for_the_answer() {
        let tools = vec![
            ToolSpec {
                name: "read_file".into(),
                description: "r".into(),
                parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
            },
            ToolSpec { name: "odd".into(), description: "o".into(), parameters: json!({"oneOf": []}) },
        ];
        let schema = reply_schema(&tools);
        let branches = schema["anyOf"].as_array().expect("anyOf");
        assert_eq!(branches.len(), 3);
        assert!(branches[0]["properties"][FINAL_ANSWER].is_object());
        assert_eq!(branches[1]["properties"]["tool"]["const"], "read_file");
        assert_eq!(branches[1]["properties"]["args"]["required"][0], "path");
        assert_eq!(branches[2]["properties"]["args"], json!({"type": "object"}));
    }

    #[test]
    fn prompt_lists_tools_catalog_notes_and_active_skill() {
        let tools = vec![ToolSpec {
            name: "read_file".into(),
            description: "Read.".into(),
            parameters: json!({"type": "object", "properties": {"path": {}}}),
        }];
        let catalog = vec![CatalogEntry { name: "pdf".into(), description: "PDF\nthings".into() }];
        let notes = vec![NoteExcerpt { source: "a.md:1-3 [A]".into(), text: "hello".into() }];
        let p = system_prompt(&tools, &catalog, &notes, None);
        assert!(p.contains("- read_file(path): Read."));
        assert!(p.contains("- pdf: PDF things"));
        assert!(p.contains("[a.md:1-3 [A]] hello"));
        let active = ActiveSkill { name: "pdf".into(), body: "1. Do it.".into(), allowed_tools: None };
        let p = system_prompt(&tools, &catalog, &notes, Some(&active));
        assert!(p.contains("Follow the skill `pdf`:\n1. Do it."));
        assert!(!p.contains("- pdf: PDF things"), "no catalog once a skill is active");
    }
}
