//! What the model sees and what it must answer.
//!
//! Each step the model first reasons in free text (following the active skill's steps), then
//! acts with one line at the end of its reply:
//!
//! ```text
//! The list has 3 lines that start with "- [ ]": book dentist, call the plumber, buy a present.
//! Answer: 3
//! ```
//!
//! or, when it needs a tool first, `Action: read_file {"path": "todo.md"}`. Only the action is
//! constrained: [`reply_grammar`] is a Lark grammar (llguidance dialect) that lets the
//! reasoning run free up to a budget of characters and then allows nothing but a final answer
//! or a valid call of an offered tool, with JSON arguments that match that tool's schema.
//! Constraining the reasoning itself costs small models accuracy (Tam et al. 2024, "Let Me
//! Speak Freely?"); an earlier version of this protocol made every reply one JSON object with
//! a 200-character `thought` and Qwen2.5-Coder-0.5B answered all its demo tasks wrong.
//! Backends without grammars get the same instructions, and [`parse_reply`] reads their free
//! text.

use serde_json::{Value, json};
use skill_core::ToolSpec;
use std::sync::OnceLock;

/// Version of the reply protocol: results cached under one version do not stand for another
/// (1 was one JSON object per reply; 2 is free reasoning and an action line; 3 opens the
/// reasoning with a fixed sentence; 4 adds the calculating and counting tools, takes no
/// answer before a skill's first tool call, and words the reply instruction apart from the
/// opener; 5 takes answer and action lines written as list items, `   - Answer: 16.09`, and
/// no longer reads "the final answer isolated" as the answer "olated"; 6 starts a two-request
/// reply's action on a line of its own, shows `find_lines` results without line numbers, and
/// reads `the final answer is: Answer: 68` as 68; 7 reads a two-request reply's action from its
/// constrained part, past any answer its free reasoning wrote; 8 closes a code block the
/// reasoning left open before a two-request reply's action; 9 reads an empty answer line
/// followed by an answer or action line as that line, and cuts a quoted "the final answer
/// is ..." where its quote closes; 10 opens a free-text reply with the reasoning opener where
/// the student continues a reply; 11 keeps an answer whose quote closes at once, and does not
/// take an apostrophe for a quote; 12 shows note excerpts in the user turn instead of the
/// system prompt).
pub const PROTOCOL_VERSION: u32 = 12;
/// The words every constrained reply starts with. Zero-shot chain of thought works when the
/// trigger opens the model's own answer (Kojima et al. 2022), not only when the prompt asks
/// for it: asked in the prompt alone, Qwen2.5-Coder-0.5B began 42 of 47 replies with its
/// action and skipped the steps (README, "The agent loop on everyday tasks").
pub const DEFAULT_REASONING_OPENER: &str = "Let's think step by step.\n";
/// The pseudo-tool that loads a skill's instructions.
pub const ACTIVATE_SKILL: &str = "activate_skill";
/// A reserved tool name (the JSON protocol's finishing key; still refused as a tool name so
/// old transcripts stay unambiguous).
pub const FINAL_ANSWER: &str = "final_answer";
/// Characters of reasoning per token of budget. Qwen and SmolLM tokenizers average 3-4
/// characters per token on English prose and fewer on digits; 3 keeps the grammar's cap
/// near the token budget without cutting prose short.
pub const CHARS_PER_REASONING_TOKEN: usize = 3;
/// Longest final answer the grammar allows, in characters (one line).
pub const MAX_ANSWER_CHARS: usize = 200;

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

/// A parsed reply: the free reasoning and the action it ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Everything before the action line (kept in the transcript, not in the answer).
    pub reasoning: String,
    /// The action.
    pub action: Action,
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
    /// The tools it may call, as written in its `allowed-tools` (`None`: any).
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

/// How replies are constrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyConstraint {
    /// A grammar (free reasoning, then a valid action) when the student enforces one; free
    /// text otherwise.
    Grammar,
    /// Free text always, read by [`parse_reply`] with one correction turn (what backends
    /// without grammars get). A student that continues replies gets the reasoning opener as
    /// the start of its reply, as a grammar would impose it.
    FreeText,
    /// Two requests a step: the reasoning unconstrained, stopped at the first action marker
    /// or at the reasoning budget, then a request that continues the same reply under a
    /// grammar that allows only the action (the second request's prompt extends the first's,
    /// so a prefix cache prefills only the reasoning). Needs a student that enforces
    /// grammars and continues replies ([`skill_core::Student::continues_reply`]); others get
    /// [`ReplyConstraint::Grammar`]'s behaviour. The default: on the everyday task set it was
    /// as accurate as one grammar request and faster (README, "The agent loop on everyday
    /// tasks").
    #[default]
    TwoRequests,
}

/// How earlier steps are shown to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum History {
    /// One user turn that grows: the task, then a numbered list of the actions taken and
    /// their results. The model never sees its own earlier replies, which small models given
    /// greedy decoding otherwise copy word for word (Qwen2.5-Coder-0.5B repeated its first
    /// tool call until the step budget ran out).
    #[default]
    Folded,
    /// A chat: each reply as an assistant turn, each result as a user turn.
    Chat,
}

/// Where an active skill's instructions go in the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkillPlacement {
    /// After the tools in the system prompt. The default: as accurate as the user turn on
    /// the everyday tasks (README), and the system prompt then depends only on the skill and
    /// its tools, so a student that keeps prompt states across runs prefills it once.
    #[default]
    System,
    /// In the first user turn, after the task.
    User,
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

/// The system prompt: the tools, the skill catalog and (with [`SkillPlacement::System`]) the
/// active skill's steps. Nothing in it depends on the task's words when a skill is active, so
/// a student that keeps prompt states across runs (llama.cpp's prefix store) prefills it once
/// per skill; note excerpts, found for each task, go in the user turn. How to reply is said
/// last, at the end of the user turn ([`task_message`]): small models follow the instruction
/// nearest to their reply, and a skill's own last step ("answer with the number alone")
/// otherwise made the default student answer at once, without the reasoning the steps ask for.
pub fn system_prompt(
    tools: &[ToolSpec],
    catalog: &[CatalogEntry],
    active: Option<&ActiveSkill>,
    placement: SkillPlacement,
) -> String {
    let mut p = String::from("You complete tasks for the user, one step at a time.\n");
    if !tools.is_empty() {
        p.push_str(
            "\nTools (to call one, end your reply with a line `Action: <tool> <JSON arguments>`; its result comes \
             back to you):\n",
        );
        for t in tools {
            p.push_str(&format!("- {} {}: {}\n", t.name, args_example(t), one_line(&t.description)));
        }
    }
    if !catalog.is_empty() && active.is_none() {
        p.push_str(&format!(
            "\nSkills (when one fits the task, call {ACTIVATE_SKILL} with its name to get its steps):\n"
        ));
        for c in catalog {
            p.push_str(&format!("- {}: {}\n", c.name, one_line(&c.description)));
        }
    }
    if placement == SkillPlacement::System
        && let Some(skill) = active
    {
        p.push_str(&format!("\nFollow these steps (the skill `{}`):\n{}\n", skill.name, skill.body.trim()));
    }
    p
}

/// The user turn: the task; note excerpts from the knowledge base; with
/// [`SkillPlacement::User`] the active skill's steps; what was done so far (each action and
/// its result, numbered); and last, how to reply.
pub fn task_message(
    task: &str,
    notes: &[NoteExcerpt],
    active: Option<&ActiveSkill>,
    placement: SkillPlacement,
    done: &[String],
    tools: &[ToolSpec],
) -> String {
    let mut parts = vec![task.trim().to_string()];
    if !notes.is_empty() {
        let lines: Vec<String> = notes.iter().map(|n| format!("[{}] {}", n.source, one_line(&n.text))).collect();
        parts.push(format!("Notes from the knowledge base that may help:\n{}", lines.join("\n")));
    }
    if let Some(skill) = active
        && placement == SkillPlacement::User
    {
        parts.push(format!("Follow these steps:\n{}", skill.body.trim()));
    }
    // What was done comes after the steps, so the prompt up to here stays the same from
    // step to step (the student's prefix cache keeps it).
    if !done.is_empty() {
        let entries: Vec<String> =
            done.iter().enumerate().map(|(i, e)| format!("{}. {}", i + 1, e.trim_end())).collect();
        parts.push(format!("Done so far:\n{}\n\nGo on with the next step.", entries.join("\n")));
    }
    parts.push(reply_instruction(tools));
    parts.join("\n\n")
}

/// How to reply, with an example call of the first tool: `Work through it step by step. To
/// use a tool, end with a line like ...`. It does not begin with the reasoning opener: a
/// reply that opens with the prompt's own words makes a small model copy on from there (the
/// default student began every reply by repeating this instruction and the whole "Done so
/// far" list after it).
pub fn reply_instruction(tools: &[ToolSpec]) -> String {
    match tools.first() {
        None => "Work it out step by step, then end with a line `Answer: ` followed by the answer alone.".to_string(),
        Some(tool) => format!(
            "Work through it step by step. To use a tool, end with a line like `Action: {} {}` and stop: its result \
             comes back to you. When you know the answer, end with a line `Answer: ` followed by the answer alone.",
            tool.name,
            args_example(tool)
        ),
    }
}

/// The message that asks for the action alone, after a reply without a usable action line
/// (only for a call while `answer_allowed` is off).
pub fn correction_message(error: &str, tools_offered: bool, answer_allowed: bool) -> String {
    if tools_offered && !answer_allowed {
        return format!(
            "Your reply could not be used: {error}. Reply now with only the last line: `Action: ` followed by a tool \
             name and its JSON arguments."
        );
    }
    let action = if tools_offered { ", or `Action: ` followed by a tool name and its JSON arguments" } else { "" };
    format!(
        "Your reply could not be used: {error}. Reply now with only the last line: `Answer: ` followed by the answer \
         alone{action}."
    )
}

/// An example arguments object for the prompt: `{"path": "..."}`.
fn args_example(spec: &ToolSpec) -> String {
    let Some(props) = spec.parameters.get("properties").and_then(Value::as_object) else {
        return "{}".into();
    };
    let fields: Vec<String> = props
        .iter()
        .map(|(name, schema)| {
            let shown = match schema.get("type").and_then(Value::as_str) {
                Some("integer" | "number") => "0".to_string(),
                Some("boolean") => "true".to_string(),
                _ => match schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
                    Some(first) => first.to_string(),
                    None => "\"...\"".to_string(),
                },
            };
            format!("{}: {shown}", Value::String(name.clone()))
        })
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A tool's argument schema as the constraint uses it: object schemas pass through (with
/// fixed separators and no free whitespace, so the grammar ends at the closing brace);
/// anything else (an MCP server may send exotic schemas) becomes "any object", so the
/// grammar always compiles.
pub fn args_schema(spec: &ToolSpec) -> Value {
    let mut schema = match &spec.parameters {
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
    };
    // llguidance lets JSON carry any amount of whitespace, and small models use that freedom
    // to emit newlines after the closing brace until the token limit.
    schema["x-guidance"] = json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "});
    schema
}

/// The Lark grammar (llguidance dialect) of one reply: free reasoning of at most
/// `reasoning_chars` characters, then the answer (`Answer: <one line>` on a line of its own,
/// or `the final answer is <...>` anywhere) or `Action: <tool> <arguments matching its
/// schema>` for one of `tools`. The reasoning is a lazy lexeme that ends at the first answer
/// marker or `Action: <one of these tools> `, so braces, JSON, the word "Action", or a tool
/// left out of `tools` are free text; when the cap is reached the only way on is an action,
/// so a budget that runs out leads to one, not to a cut-off reply. With reasoning allowed,
/// the reply begins with `opener` (none when it is empty); `reasoning_chars = 0` asks for the
/// action at once. Without `answer` only the calls are offered (a skill whose first step is
/// a tool call, not done yet); the caller keeps `answer` on when `tools` is empty.
pub fn reply_grammar(tools: &[ToolSpec], reasoning_chars: usize, opener: &str, answer: bool) -> String {
    let (line_lead, any_lead) = if reasoning_chars == 0 {
        (String::new(), String::new())
    } else {
        (format!("((.|\\n){{0,{reasoning_chars}}}\\n)?"), format!("(.|\\n){{0,{reasoning_chars}}}"))
    };
    let calls: Vec<String> = (0..tools.len()).map(|i| format!("call_{i}")).collect();
    let mut g = String::from("%llguidance {}\n");
    let answer = answer || calls.is_empty();
    let mut alternatives: Vec<&str> = calls.iter().map(String::as_str).collect();
    if answer {
        alternatives.insert(0, "answer");
    }
    let branches = alternatives.join(" | ");
    if reasoning_chars > 0 && !opener.is_empty() {
        // A JSON string literal is a Lark string literal too.
        g.push_str(&format!("start: {} ({branches})\n", Value::String(opener.to_string())));
    } else {
        g.push_str(&format!("start: {branches}\n"));
    }
    if answer {
        // The answer is one line; a newline after it ends the reply.
        g.push_str("answer: answer_head ANSWER_TEXT \"\\n\"?\n");
        g.push_str(&format!(
            "answer_head[lazy]: /{line_lead}{LIST_ITEM}(\\*\\*)?(Final )?[Aa]nswer:|{any_lead}[Tt]he final answer is:? /\n"
        ));
        g.push_str(&format!("ANSWER_TEXT: /[^\\n]{{1,{MAX_ANSWER_CHARS}}}/\n"));
    }
    for (i, tool) in tools.iter().enumerate() {
        let name = lark_regex_escape(&tool.name);
        g.push_str(&format!("call_{i}: call_head_{i} %json {}\n", args_schema(tool)));
        g.push_str(&format!("call_head_{i}[lazy]: /{line_lead}{LIST_ITEM}(\\*\\*)?Action: {name} /\n"));
    }
    g
}

/// What may come before an answer or action line's marker: indentation and a list bullet.
/// Qwen2.5-Coder-0.5B writes its steps as a list and its answer as one of the items
/// (`   - Answer: 16.09`); a marker only at the start of a line let it run on past it.
const LIST_ITEM: &str = "[ \\t]*([-*] )?";

/// A literal for a Lark `/.../` regex (tool names are letters, digits and `_ - . : /`).
fn lark_regex_escape(text: &str) -> String {
    regex::escape(text).replace('/', "\\/")
}

/// A sentence end inside an answer line: `. ` then a capital letter, after a few characters.
fn sentence_end() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"[^.\s]\.\s+[A-Z]").expect("valid regex"))
}

fn marker_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(concat!(
            r"(?im)^[ \t>]*(?:[-*][ \t]+)?(?:\*\*)?(?P<kind>(?:final )?answer|action)[ \t]*(?:\*\*)?[ \t]*:(?:\*\*)?[ \t]*(?P<rest>.*)$",
            // Small models often close their reasoning with "...so the final answer is 42."
            r"|(?P<final>the final answer is)(?::|\s)[:\s]*(?P<after>.*)$",
        ))
        .expect("valid regex")
    })
}

/// Parses a reply: reasoning, then the first `Answer:` or `Action:` line. Lines after the
/// action line are ignored (a small model sometimes goes on to imagine the tool's result).
/// Free-text backends also get credit for a few near-misses: `**Answer:**`, `Final answer:`,
/// `Action: {"tool": ..., "args": ...}`, `Action: name` with an `Action Input:` line, and a
/// reply that is one JSON object with `final_answer` or `tool`. Everything else is an error
/// message meant for the model.
pub fn parse_reply(text: &str) -> Result<Reply, String> {
    let Some(caps) = marker_regex().captures(text) else {
        if let Some(action) = legacy_json_action(text) {
            return Ok(Reply { reasoning: String::new(), action });
        }
        return Err("the reply has no `Answer:` line and no `Action:` line".into());
    };
    let whole = caps.get(0).map_or(0..0, |m| m.range());
    let reasoning_end = caps.name("final").map_or(whole.start, |m| m.start());
    let reasoning = text[..reasoning_end].trim_end().to_string();
    // "The final answer is:" followed by a marker, on its line or the next (`the final answer
    // is: Answer: 68.00`): the marker's own line is the reply, not an answer that starts with
    // "Answer:".
    if let Some(after) = caps.name("after") {
        // Also quoted: "the final answer is `Answer: 2`.", read up to the closing quote.
        let after_text = &text[after.start()..];
        let (tail, quote) = match after_text.chars().next() {
            Some(q @ ('`' | '"')) => (&after_text[1..], Some(q)),
            _ => (after_text, None),
        };
        if starts_with_marker_line(tail) {
            let tail = quote.and_then(|q| tail.split_once(q)).map_or(tail, |(quoted, _)| quoted);
            return parse_reply(tail).map(|reply| Reply { reasoning, ..reply });
        }
    }
    let (kind, rest) = match (caps.name("final"), caps.name("after")) {
        (Some(phrase), Some(after)) => {
            // Quoted: "we will give `the final answer is update.md` to show ...": the answer
            // ends where the quote closes.
            // Not on `'`: an answer may hold an apostrophe (O'Brien).
            let quote = text[..phrase.start()].chars().next_back().filter(|c| matches!(c, '`' | '"'));
            let after = after.as_str();
            let quoted = quote
                .and_then(|q| after.split_once(q))
                .map(|(quoted, _)| quoted)
                .filter(|quoted| !clean_answer(quoted).is_empty());
            ("answer".to_string(), quoted.unwrap_or(after))
        }
        _ => (caps["kind"].to_ascii_lowercase(), caps.name("rest").map_or("", |m| m.as_str())),
    };
    let after = &text[whole.end..];
    if kind.ends_with("answer") {
        let mut answer = clean_answer(rest);
        if answer.is_empty() {
            // `Answer:` alone on its line, the answer on the next, unless that line is an
            // answer or action line of its own (`**Final Answer:**` then `Action: list_dir {}`):
            // then it is the reply.
            let mut line_start = 0;
            let next = after.split_inclusive('\n').find_map(|line| {
                let cleaned = clean_answer(line);
                let found = (!cleaned.is_empty()).then_some((line_start, cleaned));
                line_start += line.len();
                found
            });
            if let Some((line_start, cleaned)) = next {
                let tail = &after[line_start..];
                if starts_with_marker_line(tail) {
                    return parse_reply(tail).map(|reply| Reply { reasoning, ..reply });
                }
                answer = cleaned;
            }
        }
        if answer.is_empty() {
            return Err("the `Answer:` line is empty".into());
        }
        return Ok(Reply { reasoning, action: Action::Final(answer) });
    }
    let action = parse_call(rest, after)?;
    Ok(Reply { reasoning, action })
}

/// Whether `text` begins with an `Answer:` or `Action:` line (not "the final answer is").
fn starts_with_marker_line(text: &str) -> bool {
    marker_regex().captures(text).is_some_and(|c| c.name("kind").is_some() && c.get(0).is_some_and(|m| m.start() == 0))
}

/// The first action of the reply other than `skip`. Small models restate the call they made
/// in the step before (`Action: read_file {...}`) and then go on to the next step in the same
/// reply; that restatement is not a new call.
pub fn parse_reply_other_than(text: &str, skip: &Action) -> Option<Reply> {
    first_reply_where(text, |r| &r.action != skip)
}

/// The first call of the reply, passing over answer lines: what counts while no answer is
/// taken yet (under a grammar without the answer branch, `Answer:` lines are reasoning).
pub fn parse_first_call(text: &str) -> Option<Reply> {
    first_reply_where(text, |r| matches!(r.action, Action::Call { .. }))
}

fn first_reply_where(text: &str, wanted: impl Fn(&Reply) -> bool) -> Option<Reply> {
    marker_regex().find_iter(text).find_map(|m| {
        let start = text[..m.start()].rfind('\n').map_or(0, |i| i + 1);
        parse_reply(&text[start..])
            .ok()
            .filter(&wanted)
            .map(|r| Reply { reasoning: format!("{}{}", &text[..start], r.reasoning).trim_end().to_string(), ..r })
    })
}

/// The answer of an answer line: what a bold marker closes (`**Answer: True**. Because...`),
/// or what comes before a new sentence (`42. The total is...`), without emphasis, backquotes
/// or wrapping quotes.
fn clean_answer(line: &str) -> String {
    let mut t = line.trim();
    if let Some(end) = t.find("**").filter(|&i| i > 0) {
        t = &t[..end];
    }
    if let Some(m) = sentence_end().find(t) {
        t = &t[..m.start() + 1];
    }
    // Peel emphasis, backquotes and one closing full stop until nothing changes.
    loop {
        let peeled = t.trim().trim_matches('*').trim_matches('`').trim();
        let peeled = peeled.strip_suffix('.').filter(|s| !s.is_empty() && !s.ends_with('.')).unwrap_or(peeled);
        if peeled == t {
            break;
        }
        t = peeled;
    }
    let unquoted = t.strip_prefix('"').and_then(|s| s.strip_suffix('"')).filter(|s| !s.contains('"')).unwrap_or(t);
    unquoted.trim().to_string()
}

/// `name {json}`, `name({json})`, `{"tool": name, "args": {...}}`, or `name` with the
/// arguments on an `Action Input:` line.
fn parse_call(rest: &str, after: &str) -> Result<Action, String> {
    let rest = rest.trim().trim_matches('`').trim();
    if rest.starts_with('{') {
        let joined = format!("{rest}\n{after}");
        return legacy_json_action(&joined).ok_or_else(|| {
            "the `Action:` line must name a tool and then give its arguments as one JSON object".to_string()
        });
    }
    let name_len =
        rest.find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))).unwrap_or(rest.len());
    let tool = rest[..name_len].trim_end_matches(':').to_string();
    if tool.is_empty() {
        return Err("the `Action:` line must start with a tool name".into());
    }
    let tail = rest[name_len..].trim_start().trim_start_matches('(');
    let args_text = if tail.trim().is_empty() {
        // ReAct's two-line form: `Action: name` then `Action Input: {...}`.
        after
            .lines()
            .map(str::trim)
            .find_map(|l| {
                let lower = l.to_ascii_lowercase();
                lower.starts_with("action input").then(|| l.split_once(':').map_or("", |(_, v)| v).to_string())
            })
            .unwrap_or_default()
    } else {
        format!("{tail}\n{after}")
    };
    let args = if args_text.trim().is_empty() {
        json!({})
    } else {
        match first_json_object(&args_text) {
            Some(Value::Object(map)) => Value::Object(map),
            _ => {
                return Err(format!(
                    "the arguments of `{tool}` must be one JSON object, like {{\"path\": \"notes.txt\"}}"
                ));
            }
        }
    };
    Ok(Action::Call { tool, args })
}

/// A reply in the older one-JSON-object form: `{"final_answer": ...}` or `{"tool": ...,
/// "args": ...}` (also `name`/`arguments`, as some models were tuned to write calls).
fn legacy_json_action(text: &str) -> Option<Action> {
    let Value::Object(map) = first_json_object(text)? else { return None };
    if let Some(answer) = map.get(FINAL_ANSWER) {
        let text = match answer {
            Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        };
        return (!text.is_empty()).then_some(Action::Final(text));
    }
    let tool = map.get("tool").or_else(|| map.get("name")).and_then(Value::as_str)?.trim().to_string();
    if tool.is_empty() {
        return None;
    }
    let args = match map.get("args").or_else(|| map.get("arguments")) {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(o)) => Value::Object(o.clone()),
        Some(_) => return None,
    };
    Some(Action::Call { tool, args })
}

/// The first JSON object in the text that parses (strings and escapes respected).
fn first_json_object(text: &str) -> Option<Value> {
    let mut from = 0;
    while let Some(offset) = text[from..].find('{') {
        let start = from + offset;
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        if let Some(Ok(value @ Value::Object(_))) = stream.next() {
            return Some(value);
        }
        from = start + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tool: &str, args: Value) -> Action {
        Action::Call { tool: tool.into(), args }
    }

    #[test]
    fn reasoning_then_an_answer_or_a_call() {
        let r = parse_reply("17 red and 25 blue.\n17 + 25 = 42.\nAnswer: 42").expect("answer");
        assert_eq!(
            r,
            Reply { reasoning: "17 red and 25 blue.\n17 + 25 = 42.".into(), action: Action::Final("42".into()) }
        );
        let r = parse_reply("I need the file.\nAction: read_file {\"path\": \"todo.md\"}").expect("call");
        assert_eq!(r.action, call("read_file", json!({"path": "todo.md"})));
        assert_eq!(r.reasoning, "I need the file.");
        assert_eq!(parse_reply("Answer: True").expect("bare").action, Action::Final("True".into()));
    }

    #[test]
    fn braces_json_and_the_word_action_inside_the_reasoning_are_free_text() {
        let text = "The config is {\"a\": 1} and my next action: none.\nThe Action item is done.\nAnswer: {\"a\": 1}";
        let r = parse_reply(text).expect("answer");
        assert_eq!(r.action, Action::Final("{\"a\": 1}".into()));
        assert!(r.reasoning.contains("my next action: none"));
        // "my next action:" is inside a line, not at its start: not an action line.
        let text = "I will take the Action: after reading.\nAnswer: 3";
        assert_eq!(parse_reply(text).expect("answer").action, Action::Final("3".into()));
    }

    #[test]
    fn before_the_first_call_answer_lines_are_reasoning() {
        let text = "Answer: 180 probably.\nLet me check.\nAction: read_file {\"path\": \"expenses.csv\"}";
        let reply = parse_first_call(text).expect("a call");
        assert_eq!(reply.action, call("read_file", json!({"path": "expenses.csv"})));
        assert!(reply.reasoning.starts_with("Answer: 180 probably."), "{}", reply.reasoning);
        assert!(parse_first_call("Answer: 180").is_none());
    }

    #[test]
    fn a_restated_call_is_passed_over_for_the_next_action() {
        let previous = call("read_file", json!({"path": "todo.md"}));
        let text = "Action: read_file {\"path\": \"todo.md\"}\nThe open lines are book dentist and call the plumber.\nAnswer: 2";
        let r = parse_reply_other_than(text, &previous).expect("a later action");
        assert_eq!(r.action, Action::Final("2".into()));
        assert!(
            r.reasoning.starts_with("Action: read_file") && r.reasoning.ends_with("call the plumber."),
            "{}",
            r.reasoning
        );
        assert_eq!(parse_reply_other_than("Action: read_file {\"path\": \"todo.md\"}", &previous), None);
    }

    #[test]
    fn a_word_that_starts_with_is_after_the_final_answer_is_no_answer() {
        let text = "When you know it, end with a line followed by the final answer isolated.";
        assert!(parse_reply(text).is_err(), "{:?}", parse_reply(text));
    }

    #[test]
    fn only_the_first_action_line_counts() {
        let text = "Action: list_dir {}\nObservation: a.txt\nAnswer: a.txt";
        assert_eq!(parse_reply(text).expect("call").action, call("list_dir", json!({})));
    }

    #[test]
    fn near_misses_of_free_text_backends_are_read() {
        for (text, want) in [
            ("**Answer:** 42", Action::Final("42".into())),
            ("**Final Answer: True**. The reasoning behind this is long.", Action::Final("True".into())),
            ("Answer: 42. The total of the four lines.", Action::Final("42".into())),
            ("Answer: 57.50", Action::Final("57.50".into())),
            ("Answer: apple mango pear.", Action::Final("apple mango pear".into())),
            ("Answer: +44 20 7946 0123", Action::Final("+44 20 7946 0123".into())),
            (
                "So not False is True, and True or True is True. Therefore, the final answer is `True`.",
                Action::Final("True".into()),
            ),
            ("Final answer: \"heliotrope\"", Action::Final("heliotrope".into())),
            // Seen from Qwen2.5-Coder-1.5B: the answer line after "the final answer is".
            ("So the final answer is: Answer: 68.00", Action::Final("68.00".into())),
            ("The final answer is:\n\nAnswer: update.md", Action::Final("update.md".into())),
            ("the final answer is:\n   - Action: list_dir {}", call("list_dir", json!({}))),
            ("4. Answer with it.\n   - Answer: 16.09\n\nDone so far:", Action::Final("16.09".into())),
            ("* **Answer:** 42", Action::Final("42".into())),
            ("   - Action: calculate {\"expression\": \"6 * 4\"}", call("calculate", json!({"expression": "6 * 4"}))),
            ("Answer:\n  False\n", Action::Final("False".into())),
            // Seen over HTTP (one grammar request a step): an empty answer line, then the call.
            (
                "- **Final Answer:**\n\nAction: list_dir {\"path\": \"notes\"}",
                call("list_dir", json!({"path": "notes"})),
            ),
            ("**Final Answer:**\n  - Answer: 5 PM", Action::Final("5 PM".into())),
            (
                "We will give the `the final answer is update.md` to show the file was written.",
                Action::Final("update.md".into()),
            ),
            ("So \"the final answer is 42\", as computed.", Action::Final("42".into())),
            ("and the final answer is `Answer: 2`.", Action::Final("2".into())),
            ("and the final answer is \"Answer: 2\".", Action::Final("2".into())),
            // A quote that closes at once is the answer's own.
            ("So `the final answer is `a.md``.", Action::Final("a.md".into())),
            ("Thus 'the final answer is O'Brien.", Action::Final("O'Brien".into())),
            ("Action: read_file({\"path\": \"a.txt\"})", call("read_file", json!({"path": "a.txt"}))),
            ("Action: list_dir", call("list_dir", json!({}))),
            ("Action: read_file\nAction Input: {\"path\": \"b.txt\"}", call("read_file", json!({"path": "b.txt"}))),
            ("Action: {\"tool\": \"read_file\", \"args\": {\"path\": \"c\"}}", call("read_file", json!({"path": "c"}))),
            (
                "Action: {\"name\": \"write_file\", \"arguments\": {\"path\": \"d\", \"content\": \"x\"}}",
                call("write_file", json!({"path": "d", "content": "x"})),
            ),
            ("{\"thought\": \"done\", \"final_answer\": 42}", Action::Final("42".into())),
            (
                "Sure: {\"tool\": \"list_dir\", \"args\": {\"note\": \"a } in a string\"}}",
                call("list_dir", json!({"note": "a } in a string"})),
            ),
        ] {
            assert_eq!(parse_reply(text).map(|r| r.action), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn unusable_replies_say_what_is_missing() {
        for (text, needle) in [
            ("", "no `Answer:` line"),
            ("I think the answer is 42", "no `Answer:` line"),
            ("Answer:   ", "is empty"),
            ("Action: read_file \"a.txt\"", "must be one JSON object"),
            ("Action: {\"args\": {}}", "must name a tool"),
            ("Action: (\"x\")", "must start with a tool name"),
        ] {
            let err = parse_reply(text).expect_err(text);
            assert!(err.contains(needle), "{text:?} -> {err}");
        }
    }

    fn spec(name: &str, parameters: Value) -> ToolSpec {
        ToolSpec { name: name.into(), description: format!("{name} things."), parameters }
    }

    #[test]
    fn the_grammar_offers_one_branch_per_tool_and_an_answer() {
        let tools = vec![
            spec(
                "read_file",
                json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
            ),
            spec("odd", json!({"oneOf": []})),
        ];
        let g = reply_grammar(&tools, 600, "", true);
        assert!(g.starts_with("%llguidance {}\nstart: answer | call_0 | call_1\n"), "{g}");
        let opened = reply_grammar(&tools, 600, DEFAULT_REASONING_OPENER, true);
        assert!(
            opened.starts_with("%llguidance {}\nstart: \"Let's think step by step.\\n\" (answer | call_0 | call_1)\n"),
            "{opened}"
        );
        assert!(
            g.contains(r"answer_head[lazy]: /((.|\n){0,600}\n)?[ \t]*([-*] )?(\*\*)?(Final )?[Aa]nswer:|(.|\n){0,600}[Tt]he final answer is:? /"),
            "{g}"
        );
        assert!(g.contains("answer: answer_head ANSWER_TEXT \"\\n\"?\n"), "{g}");
        assert!(g.contains(r"call_head_0[lazy]: /((.|\n){0,600}\n)?[ \t]*([-*] )?(\*\*)?Action: read_file /"), "{g}");
        assert!(g.contains("call_0: call_head_0 %json {"), "{g}");
        assert!(g.contains(r#""required":["path"]"#), "{g}");
        assert!(g.contains("call_1: call_head_1 %json {\"type\":\"object\""), "{g}");
        let bare = reply_grammar(&[], 0, DEFAULT_REASONING_OPENER, false);
        assert!(bare.contains("start: answer\n") && !bare.contains("call"), "{bare}");
        assert!(
            bare.contains(r"answer_head[lazy]: /[ \t]*([-*] )?(\*\*)?(Final )?[Aa]nswer:|[Tt]he final answer is:? /"),
            "{bare}"
        );
        let odd = reply_grammar(&[spec("mcp.fs/read", json!({"type": "object"}))], 10, "", true);
        assert!(odd.contains(r"Action: mcp\.fs\/read /"), "{odd}");
        // Before the skill's first tool call: the calls only, no answer rules.
        let act = reply_grammar(&tools, 600, DEFAULT_REASONING_OPENER, false);
        assert!(
            act.starts_with("%llguidance {}\nstart: \"Let's think step by step.\\n\" (call_0 | call_1)\n"),
            "{act}"
        );
        assert!(!act.contains("answer"), "{act}");
    }

    #[test]
    fn prompt_lists_tools_catalog_notes_and_places_the_skill() {
        let tools = vec![spec("read_file", json!({"type": "object", "properties": {"path": {"type": "string"}}}))];
        let catalog = vec![CatalogEntry { name: "pdf".into(), description: "PDF\nthings".into() }];
        let notes = vec![NoteExcerpt { source: "a.md:1-3 [A]".into(), text: "hello".into() }];
        let p = system_prompt(&tools, &catalog, None, SkillPlacement::User);
        assert!(p.contains("- read_file {\"path\": \"...\"}: read_file things."), "{p}");
        assert!(p.contains("- pdf: PDF things"));
        let active = ActiveSkill { name: "pdf".into(), body: "1. Do it.".into(), allowed_tools: None };
        let system = system_prompt(&tools, &catalog, Some(&active), SkillPlacement::System);
        assert!(system.contains("Follow these steps (the skill `pdf`):\n1. Do it."), "{system}");
        assert!(!system.contains("- pdf: PDF things"), "no catalog once a skill is active");
        let user = system_prompt(&tools, &catalog, Some(&active), SkillPlacement::User);
        assert!(!user.contains("1. Do it."));
        let how = reply_instruction(&tools);
        assert!(how.contains("end with a line like `Action: read_file {\"path\": \"...\"}` and stop"), "{how}");
        let first = task_message("Read it.", &[], Some(&active), SkillPlacement::User, &[], &tools);
        assert_eq!(first, format!("Read it.\n\nFollow these steps:\n1. Do it.\n\n{how}"));
        // Notes are found for each task: in the user turn, so the system prompt stays the same
        // from task to task.
        assert_eq!(
            task_message("Read it.", &notes, Some(&active), SkillPlacement::System, &[], &tools),
            format!("Read it.\n\nNotes from the knowledge base that may help:\n[a.md:1-3 [A]] hello\n\n{how}")
        );
        assert!(!system.contains("hello") && !p.contains("hello"), "{system}");
        assert_eq!(
            task_message("Read it.", &[], Some(&active), SkillPlacement::User, &[], &[]),
            "Read it.\n\nFollow these steps:\n1. Do it.\n\nWork it out step by step, then end with a line `Answer: ` followed by the answer alone.",
            "no tool advice when there are no tools"
        );
        assert_eq!(
            task_message("Read it.", &[], Some(&active), SkillPlacement::System, &[], &tools),
            format!("Read it.\n\n{how}")
        );
        let done = ["Action: x {}\nResult of x:\nok".to_string()];
        let later = task_message("Read it.", &[], Some(&active), SkillPlacement::User, &done, &tools);
        assert_eq!(
            later,
            format!(
                "Read it.\n\nFollow these steps:\n1. Do it.\n\nDone so far:\n1. Action: x {{}}\nResult of x:\nok\n\nGo on with the next step.\n\n{how}"
            )
        );
        let none = system_prompt(&[], &[], None, SkillPlacement::User);
        assert!(!none.contains("Action:"), "{none}");
    }
}
