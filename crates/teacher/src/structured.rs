//! Structured answers from the teacher: JSON that must parse into a type and pass a check.
//!
//! Teachers wrap JSON in code fences, add a sentence before it, or run out of tokens in the
//! middle. [`ask_json`] takes the first JSON value out of the answer, deserializes and
//! validates it; when that fails it sends one repair request (the answer and the exact
//! problem, asking for corrected JSON only), and when that fails too it returns
//! [`Error::InvalidOutput`]. Nothing half-valid is ever returned.

use crate::{Error, Result};
use serde::de::DeserializeOwned;
use skill_core::{ChatMessage, CompletionRequest, Role, Teacher, Usage};

/// A validated answer and what it cost.
#[derive(Debug, Clone)]
pub struct JsonAnswer<T> {
    /// The parsed value.
    pub value: T,
    /// Tokens of every request it took (one, or two with the repair).
    pub usage: Usage,
    /// True when the repair request was needed.
    pub repaired: bool,
}

/// Asks `teacher` and returns the answer parsed as `T` and accepted by `validate`; `what`
/// names the output in errors ("eval cases", "skill draft").
pub async fn ask_json<T, F>(
    teacher: &dyn Teacher,
    request: &CompletionRequest,
    what: &str,
    validate: F,
) -> Result<JsonAnswer<T>>
where
    T: DeserializeOwned,
    F: Fn(&T) -> std::result::Result<(), String>,
{
    ask_parsed(teacher, request, what, "JSON", |text, truncated| parse_checked(text, truncated, &validate)).await
}

/// Like [`ask_json`] for any format: `parse` turns the answer text (and whether it hit the
/// token limit) into a value or the problem in words; `format` names what the repair request
/// asks for ("JSON", "SKILL.md in a fenced block").
pub async fn ask_parsed<T, P>(
    teacher: &dyn Teacher,
    request: &CompletionRequest,
    what: &str,
    format: &str,
    parse: P,
) -> Result<JsonAnswer<T>>
where
    P: Fn(&str, bool) -> std::result::Result<T, String>,
{
    let first = teacher.complete(request).await?;
    let mut usage = first.usage;
    let problem = match parse(&first.text, first.finish_reason == "length") {
        Ok(value) => return Ok(JsonAnswer { value, usage, repaired: false }),
        Err(problem) => problem,
    };
    tracing::warn!(what, %problem, "teacher output invalid; asking for a repair");
    let mut repair = request.clone();
    repair.messages.push(ChatMessage::new(Role::Assistant, first.text.clone()));
    repair.messages.push(ChatMessage::new(
        Role::User,
        format!(
            "That answer cannot be used: {problem}. Reply again with only the corrected {format}, \
             complete and valid, and nothing else."
        ),
    ));
    let second = teacher.complete(&repair).await?;
    usage.prompt_tokens += second.usage.prompt_tokens;
    usage.completion_tokens += second.usage.completion_tokens;
    match parse(&second.text, second.finish_reason == "length") {
        Ok(value) => Ok(JsonAnswer { value, usage, repaired: true }),
        Err(problem) => Err(Error::InvalidOutput {
            what: what.to_string(),
            problem,
            excerpt: second.text.chars().take(400).collect(),
            usage,
        }),
    }
}

fn parse_checked<T, F>(text: &str, truncated: bool, validate: &F) -> std::result::Result<T, String>
where
    T: DeserializeOwned,
    F: Fn(&T) -> std::result::Result<(), String>,
{
    let json = extract_json(text).ok_or_else(|| {
        if truncated {
            "the answer was cut off at the token limit before any complete JSON value".to_string()
        } else {
            "the answer contains no JSON value".to_string()
        }
    })?;
    let value: T = serde_json::from_str(json).map_err(|e| {
        if truncated && e.is_eof() {
            "the answer was cut off at the token limit: the JSON is incomplete; be more concise".to_string()
        } else {
            format!("the JSON does not have the required shape: {e}")
        }
    })?;
    validate(&value)?;
    Ok(value)
}

/// The first complete JSON object or array in `text` (code fences and prose around it are
/// ignored), or `None`.
pub fn extract_json(text: &str) -> Option<&str> {
    let mut search_from = 0;
    while let Some(offset) = text[search_from..].find(['{', '[']) {
        let start = search_from + offset;
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<serde_json::Value>();
        match stream.next() {
            Some(Ok(_)) => return Some(&text[start..start + stream.byte_offset()]),
            // An incomplete value: report it as JSON so the caller sees the EOF error.
            Some(Err(e)) if e.is_eof() => return Some(&text[start..]),
            _ => search_from = start + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_found_inside_fences_and_prose() {
        assert_eq!(extract_json("Sure!\n```json\n{\"a\": [1, 2]}\n```\nDone."), Some("{\"a\": [1, 2]}"));
        assert_eq!(extract_json("[1] and {\"b\": 2}"), Some("[1]"));
        assert_eq!(extract_json("see {not json} then {\"ok\": true}"), Some("{\"ok\": true}"));
        assert_eq!(extract_json("no json here"), None);
        assert_eq!(extract_json("{\"a\": [1, "), Some("{\"a\": [1, "));
    }

    #[test]
    fn truncation_and_shape_problems_are_named() {
        #[derive(serde::Deserialize, Debug)]
        struct Verdict {
            #[allow(dead_code)]
            passed: bool,
        }
        let ok = |_: &Verdict| Ok(());
        let cut = parse_checked::<Verdict, _>("{\"passed\": tr", true, &ok).expect_err("cut");
        assert!(cut.contains("cut off"), "{cut}");
        let shape = parse_checked::<Verdict, _>("{\"passed\": \"yes\"}", false, &ok).expect_err("shape");
        assert!(shape.contains("shape"), "{shape}");
        let rejected =
            parse_checked::<Verdict, _>("{\"passed\": true}", false, &|_: &Verdict| Err("no evidence".into()));
        assert_eq!(rejected.expect_err("rejected"), "no evidence");
    }
}
