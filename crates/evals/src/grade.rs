//! Graders: how an answer is checked. Each gives pass or fail with the evidence, so a failure
//! can be shown to the teacher and to the user as it is.

use crate::suite::EvalCase;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use skill_core::Teacher;
use std::path::Path;

/// One check on an answer. Graders that compare against a reference use the case's
/// `expected_output` unless they name their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Grader {
    /// The answer equals the reference exactly (surrounding whitespace ignored).
    Exact {
        /// Reference; default `expected_output`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected: Option<String>,
    },
    /// Equal after normalizing: case, whitespace runs, surrounding quotes, brackets, markdown
    /// emphasis and trailing punctuation are ignored.
    Normalized {
        /// Reference; default `expected_output`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected: Option<String>,
    },
    /// The answer contains every string of `all_of` and at least one of `any_of`.
    Contains {
        /// All of these must appear.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        all_of: Vec<String>,
        /// At least one of these must appear (ignored when empty).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        any_of: Vec<String>,
        /// Compare case-sensitively (default: no).
        #[serde(default)]
        case_sensitive: bool,
    },
    /// The answer matches a regular expression.
    Regex {
        /// The pattern (Rust `regex` syntax).
        pattern: String,
    },
    /// The last number in the answer is within `tolerance` of the reference.
    Numeric {
        /// Reference; default `expected_output` parsed as a number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected: Option<f64>,
        /// Largest accepted absolute difference (default 1e-6).
        #[serde(default = "default_tolerance")]
        tolerance: f64,
        /// The unit of the reference (`EUR`, `km`, `%`). An answer that names a unit next
        /// to its last number must name this one (`€`, `eur`, `euro` and `euros` are one
        /// unit); an answer that names none is read in this unit, so a bare "8" passes
        /// "8 euros" and "8 USD" does not. See [`unit_of`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
    },
    /// The answer is (or contains) a JSON object whose field at `pointer` equals `equals`.
    JsonField {
        /// RFC 6901 pointer, e.g. `/result/0/name`.
        pointer: String,
        /// The value the field must have.
        equals: serde_json::Value,
    },
    /// The agent called `tool`, with arguments containing `arguments` (agent cases).
    ToolCall {
        /// Tool name.
        tool: String,
        /// Argument fields that must be present with these values.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments: Option<serde_json::Value>,
    },
    /// After the run, a file in the agent's workspace exists with this content (agent cases).
    File {
        /// Path relative to the workspace.
        path: String,
        /// The whole file must equal this (trailing whitespace ignored).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<String>,
        /// The file must contain each of these.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
        /// Each of these must be a whole line of the file (surrounding whitespace ignored):
        /// `2026-11-03,train,73` is not found in `2026-11-03,train,730`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lines: Vec<String>,
        /// `lines` must come in the order given (other lines may stand between them): a sheet
        /// whose header moved below its rows has every line and is still wrong.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        in_order: bool,
        /// None of these may be a whole line of the file (surrounding whitespace ignored): the
        /// row a task said to delete.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        absent: Vec<String>,
        /// The file must not exist (the task was to delete it); nothing else may be asked of
        /// it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        missing: bool,
    },
    /// The teacher judges the answer against each criterion and cites its evidence.
    Rubric {
        /// Statements a good answer satisfies.
        criteria: Vec<String>,
    },
}

fn default_tolerance() -> f64 {
    1e-6
}

/// A tool call the agent made, as the grader sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// Tool name.
    pub tool: String,
    /// Arguments object.
    pub arguments: serde_json::Value,
}

/// What is graded.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The student's whole output.
    pub output: &'a str,
    /// The part `answer_pattern` picked out (the whole output without a pattern).
    pub extracted: &'a str,
    /// Tool calls of an agent run.
    pub tool_calls: &'a [ToolCallRecord],
    /// The agent's workspace after the run.
    pub workspace: Option<&'a Path>,
}

/// The verdict of one grader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeOutcome {
    /// The grader's kind (`exact`, `numeric`, ...).
    pub grader: String,
    /// Pass or fail.
    pub passed: bool,
    /// Why, in a line: what was expected and what was found.
    pub evidence: String,
}

impl Grader {
    /// The grader's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Grader::Exact { .. } => "exact",
            Grader::Normalized { .. } => "normalized",
            Grader::Contains { .. } => "contains",
            Grader::Regex { .. } => "regex",
            Grader::Numeric { .. } => "numeric",
            Grader::JsonField { .. } => "json_field",
            Grader::ToolCall { .. } => "tool_call",
            Grader::File { .. } => "file",
            Grader::Rubric { .. } => "rubric",
        }
    }

    /// True for graders that need an agent run (tool calls, workspace files).
    pub fn needs_agent(&self) -> bool {
        matches!(self, Grader::ToolCall { .. } | Grader::File { .. })
    }

    /// True for graders that need a teacher.
    pub fn needs_teacher(&self) -> bool {
        matches!(self, Grader::Rubric { .. })
    }

    /// Checks the grader's configuration against its case; the problem in words.
    pub fn check(&self, case: &EvalCase) -> std::result::Result<(), String> {
        let needs_reference = |own: bool| {
            if own || case.expected_output.as_deref().is_some_and(|e| !e.trim().is_empty()) {
                Ok(())
            } else {
                Err("no reference: set `expected` on the grader or `expected_output` on the case".to_string())
            }
        };
        match self {
            Grader::Exact { expected } | Grader::Normalized { expected } => needs_reference(expected.is_some()),
            Grader::Contains { all_of, any_of, .. } => {
                if all_of.is_empty() && any_of.is_empty() {
                    Err("give `all_of` or `any_of`".into())
                } else {
                    Ok(())
                }
            }
            Grader::Regex { pattern } => {
                regex::Regex::new(pattern).map(|_| ()).map_err(|e| format!("bad pattern: {e}"))
            }
            Grader::Numeric { expected, tolerance, unit } => {
                if !tolerance.is_finite() || *tolerance < 0.0 {
                    return Err(format!("tolerance must be a number >= 0, got {tolerance}"));
                }
                if let Some(u) = unit
                    && canonical_unit(u).is_none()
                {
                    return Err(format!("unknown unit {u:?} (known: {})", known_units()));
                }
                match expected {
                    Some(v) if v.is_finite() => Ok(()),
                    Some(v) => Err(format!("expected must be finite, got {v}")),
                    None => match case.expected_output.as_deref().map(parse_number) {
                        Some(Some(_)) => Ok(()),
                        _ => Err("expected_output is not a number; set `expected`".into()),
                    },
                }
            }
            Grader::JsonField { pointer, .. } => {
                if pointer.is_empty() || pointer.starts_with('/') {
                    Ok(())
                } else {
                    Err(format!("pointer must start with `/` (RFC 6901), got `{pointer}`"))
                }
            }
            Grader::ToolCall { tool, arguments } => {
                if tool.trim().is_empty() {
                    Err("tool is empty".into())
                } else if arguments.as_ref().is_some_and(|a| !a.is_object()) {
                    Err("arguments must be a JSON object".into())
                } else {
                    Ok(())
                }
            }
            Grader::File { path, equals, contains, lines, absent, missing, .. } => {
                let p = Path::new(path);
                let both = absent.iter().find(|a| lines.iter().any(|l| l.trim() == a.trim()));
                let asks_content = equals.is_some() || !contains.is_empty() || !lines.is_empty() || !absent.is_empty();
                if path.is_empty() || p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
                    Err(format!("path must be relative and stay inside the workspace, got `{path}`"))
                } else if *missing && asks_content {
                    Err("`missing` asks for no file: it cannot also ask for content".into())
                } else if let Some(line) = both {
                    Err(format!("`{line}` is both in `lines` and in `absent`"))
                } else {
                    Ok(())
                }
            }
            Grader::Rubric { criteria } => {
                if criteria.iter().all(|c| c.trim().is_empty()) {
                    Err("criteria are empty".into())
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Grades an answer. Rubrics need `judge`; every other grader is local and instant.
    pub async fn grade(
        &self,
        case: &EvalCase,
        answer: &Answer<'_>,
        judge: Option<&dyn Teacher>,
    ) -> Result<GradeOutcome> {
        let reference = |own: &Option<String>| own.clone().or_else(|| case.expected_output.clone()).unwrap_or_default();
        let (passed, evidence) = match self {
            Grader::Exact { expected } => {
                let want = reference(expected);
                let got = answer.extracted.trim();
                (got == want.trim(), format!("expected {:?}, got {:?}", want.trim(), clip(got)))
            }
            Grader::Normalized { expected } => {
                let want = reference(expected);
                let got = normalize(answer.extracted);
                if let Some(letter) = option_label(&want) {
                    let text = option_text(&case.prompt, letter);
                    let passed = chose_option(&got, letter, text.as_deref());
                    let named = text.map(|t| format!(" {t}")).unwrap_or_default();
                    (passed, format!("expected option ({letter}){named}, got {:?} (normalized)", clip(&got)))
                } else {
                    (
                        got == normalize(&want),
                        format!("expected {:?}, got {:?} (normalized)", normalize(&want), clip(&got)),
                    )
                }
            }
            Grader::Contains { all_of, any_of, case_sensitive } => {
                let fold = |s: &str| if *case_sensitive { s.to_string() } else { s.to_lowercase() };
                let hay = fold(answer.extracted);
                let missing: Vec<&String> = all_of.iter().filter(|n| !hay.contains(&fold(n))).collect();
                let any_ok = any_of.is_empty() || any_of.iter().any(|n| hay.contains(&fold(n)));
                let evidence = match (missing.is_empty(), any_ok) {
                    (true, true) => "all required text present".to_string(),
                    (false, _) => format!("missing {missing:?}"),
                    (true, false) => format!("none of {any_of:?}"),
                };
                (missing.is_empty() && any_ok, evidence)
            }
            Grader::Regex { pattern } => {
                let re = regex::Regex::new(pattern)
                    .map_err(|e| Error::Grader { case: case.id.to_string(), message: format!("regex: {e}") })?;
                let found = re.find(answer.extracted).map(|m| m.as_str().to_string());
                (
                    found.is_some(),
                    match found {
                        Some(m) => format!("matched {:?}", clip(&m)),
                        None => format!("/{pattern}/ does not match {:?}", clip(answer.extracted)),
                    },
                )
            }
            Grader::Numeric { expected, tolerance, unit } => {
                let want = match expected {
                    Some(v) => *v,
                    None => case.expected_output.as_deref().and_then(parse_number).ok_or_else(|| Error::Grader {
                        case: case.id.to_string(),
                        message: "numeric: expected_output is not a number".into(),
                    })?,
                };
                let want_unit = unit.as_deref().and_then(canonical_unit);
                match last_number(answer.extracted) {
                    Some(got) => {
                        let got_unit = unit_of(answer.extracted);
                        let same_unit = match (want_unit, got_unit) {
                            (Some(w), Some(g)) => w == g,
                            _ => true,
                        };
                        let ok = (got - want).abs() <= *tolerance && same_unit;
                        let show = |u: Option<&str>| u.map(|u| format!(" {u}")).unwrap_or_default();
                        (ok, format!("expected {want}{} ± {tolerance}, got {got}{}", show(want_unit), show(got_unit)))
                    }
                    None => (false, format!("expected {want}, found no number in {:?}", clip(answer.extracted))),
                }
            }
            Grader::JsonField { pointer, equals } => match find_json(answer.extracted) {
                Some(value) => match value.pointer(pointer) {
                    Some(found) => (json_equal(found, equals), format!("{pointer} is {found}, expected {equals}")),
                    None => (false, format!("{pointer} is absent")),
                },
                None => (false, format!("no JSON value in {:?}", clip(answer.extracted))),
            },
            Grader::ToolCall { tool, arguments } => {
                let calls: Vec<&ToolCallRecord> = answer.tool_calls.iter().filter(|c| &c.tool == tool).collect();
                let hit = calls.iter().any(|c| arguments.as_ref().is_none_or(|want| json_contains(&c.arguments, want)));
                let evidence = if hit {
                    format!("{tool} was called as required")
                } else if calls.is_empty() {
                    let made: Vec<&str> = answer.tool_calls.iter().map(|c| c.tool.as_str()).collect();
                    format!("{tool} was never called (calls: {made:?})")
                } else {
                    format!("{tool} was called, but never with {}", arguments.clone().unwrap_or_default())
                };
                (hit, evidence)
            }
            Grader::File { path, equals, contains, lines, in_order, absent, missing } => {
                let Some(root) = answer.workspace else {
                    return Err(Error::Grader {
                        case: case.id.to_string(),
                        message: "file grader needs an agent run with a workspace".into(),
                    });
                };
                if *missing {
                    let there = root.join(path).exists();
                    let evidence = format!("{path} {}", if there { "is still there" } else { "is gone" });
                    return Ok(GradeOutcome { grader: self.kind().to_string(), passed: !there, evidence });
                }
                match std::fs::read_to_string(root.join(path)) {
                    Err(e) => (false, format!("{path}: {e}")),
                    Ok(text) => {
                        let equal_ok = equals.as_ref().is_none_or(|want| text.trim_end() == want.trim_end());
                        let has: std::collections::HashSet<&str> = text.lines().map(str::trim).collect();
                        let lacking: Vec<&String> = contains
                            .iter()
                            .filter(|c| !text.contains(c.as_str()))
                            .chain(lines.iter().filter(|l| !has.contains(l.trim())))
                            .collect();
                        let present: Vec<&String> = absent.iter().filter(|a| has.contains(a.trim())).collect();
                        let out_of_order =
                            if *in_order && lacking.is_empty() { first_out_of_order(&text, lines) } else { None };
                        let evidence = if !equal_ok {
                            format!("{path} differs from the expected content: {:?}", clip(&text))
                        } else if !lacking.is_empty() {
                            format!("{path} lacks {lacking:?}")
                        } else if !present.is_empty() {
                            format!("{path} still has {present:?}")
                        } else if let Some(line) = out_of_order {
                            format!("{path} has {line:?} out of order")
                        } else {
                            format!("{path} is as expected")
                        };
                        let passed = equal_ok && lacking.is_empty() && present.is_empty() && out_of_order.is_none();
                        (passed, evidence)
                    }
                }
            }
            Grader::Rubric { criteria } => {
                let Some(judge) = judge else {
                    return Err(Error::Grader {
                        case: case.id.to_string(),
                        message: "rubric grading needs a teacher: pass --teacher, or set SKD_TEACHER, OPENAI_MODEL or `teacher` in the config"
                            .into(),
                    });
                };
                crate::rubric::judge(judge, case, answer.output, criteria).await?
            }
        };
        Ok(GradeOutcome { grader: self.kind().to_string(), passed, evidence })
    }
}

/// Lower-case, whitespace runs collapsed, LaTeX answer wrappers (`\\boxed{..}`, `\\(..\\)`,
/// `$..$`) unwrapped, and surrounding quotes, brackets, emphasis and trailing punctuation
/// removed: `**(A)**.`, `\\boxed{A}` and `a` are equal.
pub fn normalize(text: &str) -> String {
    let mut unwrapped = text.to_string();
    for wrapper in ["\\boxed{", "\\text{", "\\textbf{", "\\mathrm{"] {
        while let Some(start) = unwrapped.find(wrapper) {
            let inner = start + wrapper.len();
            // The matching brace, not the first one: `\\boxed{\\frac{1}{2}}`.
            let mut depth = 1usize;
            let close = unwrapped[inner..].char_indices().find_map(|(i, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            });
            let Some(close) = close else { break };
            unwrapped = format!(
                "{}{}{}",
                &unwrapped[..start],
                &unwrapped[inner..inner + close],
                &unwrapped[inner + close + 1..]
            );
        }
    }
    let unwrapped =
        unwrapped.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "").replace('$', "");
    let collapsed = unwrapped.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let strip: &[char] = &['"', '\'', '`', '*', '_', '(', ')', '[', ']', '.', ',', ';', ':', '!', '?'];
    collapsed.trim_matches(|c: char| strip.contains(&c) || c.is_whitespace()).to_string()
}

/// The letter of a multiple-choice label such as `(B)`.
fn option_label(expected: &str) -> Option<char> {
    let t = expected.trim();
    let inner = t.strip_prefix('(')?.strip_suffix(')')?;
    let mut chars = inner.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_uppercase() => Some(c),
        _ => None,
    }
}

/// The text of option `letter` in a prompt that lists options as `(A) text` lines.
fn option_text(prompt: &str, letter: char) -> Option<String> {
    let label = format!("({letter})");
    prompt
        .lines()
        .find_map(|l| l.trim().strip_prefix(label.as_str()).map(|t| t.trim().to_string()))
        .filter(|t| !t.is_empty())
}

/// A normalized answer chooses option `letter`: the letter alone, the letter followed by its
/// text or punctuation (`b) purple present`), or the option's text alone.
fn chose_option(got: &str, letter: char, text: Option<&str>) -> bool {
    let l = letter.to_ascii_lowercase();
    let text = text.map(normalize);
    // `b)` may be followed by the option's text, nothing else ("(B) or (C)" is no choice).
    let after_label = got.strip_prefix(&format!("{l})")).map(str::trim);
    got == l.to_string()
        || after_label.is_some_and(|rest| rest.is_empty() || text.as_deref() == Some(rest))
        || text.as_deref().is_some_and(|t| got == t || got == format!("{l} {t}"))
}

fn number_regex() -> &'static regex::Regex {
    static NUMBER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    NUMBER.get_or_init(|| {
        regex::Regex::new(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?").expect("number regex")
    })
}

/// The last number written in the text (`1,234.5`, `-3`, `2e3`), if any.
pub fn last_number(text: &str) -> Option<f64> {
    number_regex().find_iter(text).last().and_then(|m| m.as_str().replace(',', "").parse().ok())
}

/// How many numbers the text holds.
pub fn count_numbers(text: &str) -> usize {
    numbers(text).count()
}

/// The numbers written in the text, in order, each with where it stands (`1,234.5` and `-3`
/// as written).
pub fn numbers(text: &str) -> impl Iterator<Item = (std::ops::Range<usize>, &str)> {
    number_regex().find_iter(text).map(|m| (m.range(), m.as_str()))
}

/// Units a numeric grader compares, each with the ways answers write it. Only these are read
/// as units: a word after a number that is not one ("8 is the tip") names no unit. Names that
/// mean two units ("pounds": money or weight) are left out.
const UNITS: &[(&str, &[&str])] = &[
    ("EUR", &["€", "eur", "euro", "euros"]),
    ("USD", &["$", "us$", "usd", "dollar", "dollars"]),
    ("GBP", &["£", "gbp"]),
    ("JPY", &["¥", "jpy", "yen"]),
    ("CHF", &["chf", "franc", "francs"]),
    ("%", &["%", "percent", "pct"]),
    ("km", &["km", "kilometre", "kilometres", "kilometer", "kilometers"]),
    ("m", &["m", "metre", "metres", "meter", "meters"]),
    ("cm", &["cm", "centimetre", "centimetres", "centimeter", "centimeters"]),
    ("mm", &["mm", "millimetre", "millimetres", "millimeter", "millimeters"]),
    ("mi", &["mi", "mile", "miles"]),
    ("ft", &["ft", "foot", "feet"]),
    ("in", &["inch", "inches"]),
    ("kg", &["kg", "kilogram", "kilograms", "kilo", "kilos"]),
    ("g", &["g", "gram", "grams"]),
    ("lb", &["lb", "lbs"]),
    ("°C", &["°c", "celsius"]),
    ("°F", &["°f", "fahrenheit"]),
    ("l", &["l", "litre", "litres", "liter", "liters"]),
    ("ml", &["ml", "millilitre", "millilitres", "milliliter", "milliliters"]),
    ("h", &["h", "hr", "hrs", "hour", "hours"]),
    ("min", &["min", "mins", "minute", "minutes"]),
    ("s", &["sec", "secs", "second", "seconds"]),
    ("days", &["day", "days"]),
    ("weeks", &["week", "weeks"]),
];

/// The canonical name of a unit as written (`"euros"` and `"€"` are `"EUR"`), if known.
pub fn canonical_unit(written: &str) -> Option<&'static str> {
    let w = written.trim().to_lowercase().replace("° ", "°").replace("degrees ", "");
    UNITS.iter().find(|(_, names)| names.contains(&w.as_str())).map(|(canonical, _)| *canonical)
}

fn known_units() -> String {
    UNITS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
}

/// The unit written next to the text's last number: a known unit right after it ("8 euros",
/// "12.5%", "20 °C") or a currency right before it ("€8", "USD 8"), if any.
pub fn unit_of(text: &str) -> Option<&'static str> {
    static AFTER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static BEFORE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let number = number_regex().find_iter(text).last()?;
    let after = AFTER
        .get_or_init(|| regex::Regex::new(r"^\s?(?i:degrees\s)?(°\s?[CcFf]|%|[$€£¥]|\p{L}+\$?)").expect("unit after"));
    let before =
        BEFORE.get_or_init(|| regex::Regex::new(r"(?:^|[^\p{L}])(US\$|[$€£¥]|\p{Lu}{3})\s?$").expect("unit before"));
    let following = after.captures(&text[number.end()..]).and_then(|c| canonical_unit(&c[1]));
    following.or_else(|| before.captures(&text[..number.start()]).and_then(|c| canonical_unit(&c[1])))
}

fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    t.replace(',', "").parse().ok().or_else(|| last_number(t))
}

/// The JSON value in the text: the whole text, or its first `{...}`/`[...]` block.
fn find_json(text: &str) -> Option<serde_json::Value> {
    if let Ok(v) = serde_json::from_str(text.trim()) {
        return Some(v);
    }
    let start = text.find(['{', '['])?;
    let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<serde_json::Value>();
    stream.next()?.ok()
}

/// Equal JSON values, numbers compared by value: `1`, `1.0` and `1e0` are one number (serde
/// keeps integers and floats apart).
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().is_some_and(|x| y.as_f64() == Some(x)),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// True when every field of `want` is in `have` with an equal (recursively contained) value.
fn json_contains(have: &serde_json::Value, want: &serde_json::Value) -> bool {
    match (have, want) {
        (serde_json::Value::Object(h), serde_json::Value::Object(w)) => {
            w.iter().all(|(k, wv)| h.get(k).is_some_and(|hv| json_contains(hv, wv)))
        }
        _ => have == want,
    }
}

/// The first of `lines` not found, as a whole line, after the lines before it: `None` when
/// the file holds them in the order given. Taking each line's earliest match after the last
/// is enough: if any order-keeping match exists, that one does.
fn first_out_of_order<'a>(text: &str, lines: &'a [String]) -> Option<&'a String> {
    let mut rest = text.lines().map(str::trim);
    lines.iter().find(|want| !rest.any(|line| line == want.trim()))
}

fn clip(text: &str) -> String {
    const MAX: usize = 120;
    let text = text.trim();
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Answer<'_> {
        Answer { output: text, extracted: text, tool_calls: &[], workspace: None }
    }

    async fn run(grader: Grader, case: &EvalCase, text: &str) -> GradeOutcome {
        grader.grade(case, &answer(text), None).await.expect("grade")
    }

    #[tokio::test]
    async fn a_file_s_lines_are_whole_lines_and_its_contents_any_text() {
        let workspace = tempfile::tempdir().expect("tmp");
        std::fs::write(workspace.path().join("expenses.csv"), "date,item,amount\n  2026-11-03,train,730\n")
            .expect("write");
        let case = EvalCase::new("c", "Add the train ticket", "");
        let answer = Answer { output: "", extracted: "", tool_calls: &[], workspace: Some(workspace.path()) };
        let grade = |lines: &[&str], contains: &[&str]| {
            let grader = Grader::File {
                path: "expenses.csv".into(),
                equals: None,
                contains: contains.iter().map(|c| c.to_string()).collect(),
                lines: lines.iter().map(|l| l.to_string()).collect(),
                in_order: false,
                absent: vec![],
                missing: false,
            };
            let (case, answer) = (&case, &answer);
            async move { grader.grade(case, answer, None).await.expect("grade") }
        };
        assert!(grade(&[], &["2026-11-03,train,73"]).await.passed, "a part of a line");
        let short = grade(&["date,item,amount", "2026-11-03,train,73"], &[]).await;
        assert_eq!((short.passed, short.evidence.as_str()), (false, "expenses.csv lacks [\"2026-11-03,train,73\"]"));
        assert!(grade(&["2026-11-03,train,730"], &[]).await.passed, "whitespace around a line ignored");
    }

    #[tokio::test]
    async fn a_file_can_be_asked_to_be_gone() {
        let workspace = tempfile::tempdir().expect("tmp");
        std::fs::write(workspace.path().join("kept.md"), "x").expect("write");
        let case = EvalCase::new("c", "Delete the old notes", "");
        let answer = Answer { output: "", extracted: "", tool_calls: &[], workspace: Some(workspace.path()) };
        let gone = |path: &str| Grader::File {
            path: path.into(),
            equals: None,
            contains: vec![],
            lines: vec![],
            in_order: false,
            absent: vec![],
            missing: true,
        };
        let outcome = |path: &str| {
            let (grader, case, answer) = (gone(path), &case, &answer);
            async move {
                let o = grader.grade(case, answer, None).await.expect("grade");
                (o.passed, o.evidence)
            }
        };
        assert_eq!(outcome("old.md").await, (true, "old.md is gone".to_string()));
        assert_eq!(outcome("kept.md").await, (false, "kept.md is still there".to_string()));
        let mut asks_both = gone("kept.md");
        if let Grader::File { lines, .. } = &mut asks_both {
            lines.push("x".into());
        }
        assert_eq!(
            asks_both.check(&case),
            Err("`missing` asks for no file: it cannot also ask for content".to_string())
        );
    }

    #[tokio::test]
    async fn a_file_s_lines_can_be_asked_for_in_order_and_others_to_be_gone() {
        let workspace = tempfile::tempdir().expect("tmp");
        let sheet = "2026-11-03,train,73\ndate,item,amount\n2026-11-02,lunch,12\n2026-11-02,lunch,21\n";
        std::fs::write(workspace.path().join("expenses.csv"), sheet).expect("write");
        let case = EvalCase::new("c", "Fix the lunch (21, not 12) and add the train ticket", "");
        let answer = Answer { output: "", extracted: "", tool_calls: &[], workspace: Some(workspace.path()) };
        let grade = |lines: &[&str], absent: &[&str]| {
            let grader = Grader::File {
                path: "expenses.csv".into(),
                equals: None,
                contains: vec![],
                lines: lines.iter().map(|l| l.to_string()).collect(),
                in_order: true,
                absent: absent.iter().map(|l| l.to_string()).collect(),
                missing: false,
            };
            let (case, answer) = (&case, &answer);
            async move {
                let outcome = grader.grade(case, answer, None).await.expect("grade");
                (outcome.passed, outcome.evidence)
            }
        };
        let (header, lunch, train) = ("date,item,amount", "2026-11-02,lunch,21", "2026-11-03,train,73");
        assert_eq!(grade(&[header, lunch], &[]).await, (true, "expenses.csv is as expected".to_string()));
        assert_eq!(
            grade(&[header, lunch, train], &[]).await,
            (false, "expenses.csv has \"2026-11-03,train,73\" out of order".to_string()),
            "the row is above the header"
        );
        assert_eq!(
            grade(&[header, lunch], &["2026-11-02,lunch,12", "2026-11-01,taxi,9"]).await,
            (false, "expenses.csv still has [\"2026-11-02,lunch,12\"]".to_string()),
            "the wrong row is left beside the right one"
        );
        assert!(grade(&[header], &["2026-11-02,lunch"]).await.0, "a part of a line is not the line");
    }

    #[tokio::test]
    async fn option_labels_accept_the_letter_in_its_usual_forms_or_the_option_text() {
        let case: EvalCase = serde_json::from_value(serde_json::json!({
            "id": 1,
            "prompt": "Who dances with Alice?\nOptions:\n(A) Karl\n(B) Sam\n(C) Bob",
            "expected_output": "(B)"
        }))
        .expect("case");
        let g = Grader::Normalized { expected: None };
        for ok in ["(B)", "B", "b.", "**(B)**", "\\boxed{B}", "\\(\\boxed{B}\\)", "(B) Sam", "Sam", "B Sam"] {
            assert!(run(g.clone(), &case, ok).await.passed, "{ok}");
        }
        for bad in ["(A)", "Karl", "Bob", "(C) Bob", "b or c", "sam and karl", "(B) or (C)"] {
            let out = run(g.clone(), &case, bad).await;
            assert!(!out.passed, "{bad}");
            assert!(out.evidence.contains("option (B) Sam"), "{}", out.evidence);
        }
        // Not an option label: plain normalized comparison, with LaTeX unwrapped.
        let plain: EvalCase =
            serde_json::from_value(serde_json::json!({"id": 2, "prompt": "2+2?", "expected_output": "4"}))
                .expect("case");
        assert!(run(g.clone(), &plain, "\\boxed{4}").await.passed);
        assert!(run(g.clone(), &plain, "$4$").await.passed);
        let half: EvalCase =
            serde_json::from_value(serde_json::json!({"id": 3, "prompt": "1/2?", "expected_output": "\\frac{1}{2}"}))
                .expect("case");
        assert!(run(g, &half, "\\boxed{\\frac{1}{2}}").await.passed);
    }

    #[tokio::test]
    async fn normalized_ignores_case_quotes_brackets_and_punctuation() {
        let case = EvalCase::new("c", "q", "(A)");
        assert!(run(Grader::Normalized { expected: None }, &case, "**(a)**.").await.passed);
        assert!(!run(Grader::Normalized { expected: None }, &case, "(B)").await.passed);
        let exact = run(Grader::Exact { expected: None }, &case, "(a)").await;
        assert!(!exact.passed && exact.evidence.contains("(A)"), "{exact:?}");
    }

    #[tokio::test]
    async fn numeric_takes_the_last_number_with_tolerance() {
        let case = EvalCase::new("c", "q", "-42");
        let g = Grader::Numeric { expected: None, tolerance: 0.0, unit: None };
        assert!(run(g.clone(), &case, "first 3, then 7, so the answer is -42.").await.passed);
        assert!(!run(g.clone(), &case, "the answer is 42").await.passed);
        let near = Grader::Numeric { expected: Some(1234.5), tolerance: 0.1, unit: None };
        assert!(run(near, &case, "about 1,234.55").await.passed);
        let none = run(g, &case, "no idea").await;
        assert!(!none.passed && none.evidence.contains("no number"));
    }

    #[tokio::test]
    async fn numeric_with_a_unit_fails_an_answer_in_another_unit() {
        let case = EvalCase::new("c", "q", "412.50 EUR");
        let g = Grader::Numeric { expected: None, tolerance: 1e-6, unit: Some("EUR".into()) };
        for same in ["412.50 EUR", "412.5", "€412.50", "412.50 euros", "The total is 412.50 eur.", "EUR 412.50"] {
            assert!(run(g.clone(), &case, same).await.passed, "{same}");
        }
        for other in ["412.50 USD", "$412.50", "412.50 GBP", "£412.50", "USD 412.50"] {
            let r = run(g.clone(), &case, other).await;
            assert!(!r.passed, "{other}: {r:?}");
            assert!(r.evidence.contains("EUR") && r.evidence.contains("got 412.5"), "{}", r.evidence);
        }
        assert!(!run(g.clone(), &case, "413 EUR").await.passed, "the number still counts");
        // A word after the number that is no unit names none.
        let tip = Grader::Numeric { expected: Some(8.0), tolerance: 1e-6, unit: Some("euros".into()) };
        assert!(run(tip.clone(), &case, "8 is the tip").await.passed);
        assert!(!run(tip, &case, "8 dollars").await.passed);
        let temp = Grader::Numeric { expected: Some(20.0), tolerance: 0.1, unit: Some("°C".into()) };
        assert!(run(temp.clone(), &case, "20 °C").await.passed);
        assert!(run(temp.clone(), &case, "20 degrees Celsius").await.passed);
        assert!(!run(temp, &case, "20°F").await.passed);
        let pct = Grader::Numeric { expected: Some(12.5), tolerance: 1e-6, unit: Some("%".into()) };
        assert!(run(pct.clone(), &case, "12.5%").await.passed);
        assert!(!run(pct, &case, "12.5 km").await.passed);
    }

    #[test]
    fn units_are_read_next_to_the_last_number_only() {
        assert_eq!(unit_of("I paid 3 EUR for 2 items"), None, "the last number, 2, has no unit");
        assert_eq!(unit_of("€7.20"), Some("EUR"));
        assert_eq!(unit_of("7 pounds"), None, "money or weight: not read");
        assert_eq!(unit_of("42 marbles"), None);
        assert_eq!(canonical_unit("Kilometres"), Some("km"));
        let case = EvalCase::new("c", "q", "1");
        let bad = Grader::Numeric { expected: Some(1.0), tolerance: 0.0, unit: Some("parsecs".into()) };
        assert!(bad.check(&case).expect_err("unknown unit").contains("unknown unit \"parsecs\""));
    }

    #[tokio::test]
    async fn contains_regex_and_json_field() {
        let case = EvalCase::new("c", "q", "x");
        let g = Grader::Contains {
            all_of: vec!["Paris".into()],
            any_of: vec!["France".into(), "FR".into()],
            case_sensitive: false,
        };
        assert!(run(g.clone(), &case, "paris is in france").await.passed);
        let miss = run(g, &case, "paris").await;
        assert!(!miss.passed && miss.evidence.contains("none of"));
        assert!(run(Grader::Regex { pattern: r"^\d{4}-\d{2}$".into() }, &case, "2026-11").await.passed);
        let j = Grader::JsonField { pointer: "/a/1".into(), equals: serde_json::json!(5) };
        assert!(run(j.clone(), &case, "result: {\"a\": [4, 5]} done").await.passed);
        assert!(!run(j, &case, "{\"a\": [4]}").await.passed);
        // Numbers by value: an integer field matches the same amount written as a float.
        let total = Grader::JsonField { pointer: "/total".into(), equals: serde_json::json!(412.5) };
        assert!(run(total.clone(), &case, "{\"total\": 412.50}").await.passed);
        let count = Grader::JsonField { pointer: "/n".into(), equals: serde_json::json!(3) };
        assert!(run(count.clone(), &case, "{\"n\": 3.0}").await.passed);
        assert!(!run(count, &case, "{\"n\": \"3\"}").await.passed, "a string is not a number");
        assert!(!run(total, &case, "{\"total\": 412.51}").await.passed);
    }

    #[tokio::test]
    async fn tool_calls_match_on_argument_subsets() {
        let case = EvalCase::new("c", "q", "x");
        let calls = vec![ToolCallRecord {
            tool: "write_file".into(),
            arguments: serde_json::json!({"path": "a.txt", "content": "hi"}),
        }];
        let a = Answer { output: "", extracted: "", tool_calls: &calls, workspace: None };
        let g = Grader::ToolCall { tool: "write_file".into(), arguments: Some(serde_json::json!({"path": "a.txt"})) };
        assert!(g.grade(&case, &a, None).await.expect("grade").passed);
        let g = Grader::ToolCall { tool: "write_file".into(), arguments: Some(serde_json::json!({"path": "b.txt"})) };
        assert!(!g.grade(&case, &a, None).await.expect("grade").passed);
        let g = Grader::ToolCall { tool: "shell".into(), arguments: None };
        let out = g.grade(&case, &a, None).await.expect("grade");
        assert!(!out.passed && out.evidence.contains("never called"), "{out:?}");
    }

    #[tokio::test]
    async fn rubric_without_a_teacher_is_a_clear_error() {
        let case = EvalCase::new("c7", "q", "x");
        let err = Grader::Rubric { criteria: vec!["is polite".into()] }.grade(&case, &answer("hi"), None).await;
        let msg = err.expect_err("no judge").to_string();
        assert!(msg.contains("c7") && msg.contains("teacher"), "{msg}");
    }

    #[test]
    fn misconfigured_graders_are_reported() {
        let mut case = EvalCase::new("c", "q", "not a number");
        assert!(Grader::Numeric { expected: None, tolerance: 0.1, unit: None }.check(&case).is_err());
        assert!(Grader::Numeric { expected: Some(1.0), tolerance: -1.0, unit: None }.check(&case).is_err());
        assert!(Grader::Regex { pattern: "(".into() }.check(&case).is_err());
        assert!(
            Grader::File {
                path: "../etc/passwd".into(),
                equals: None,
                contains: vec![],
                lines: vec![],
                in_order: false,
                absent: vec![],
                missing: false,
            }
            .check(&case)
            .is_err()
        );
        let both = Grader::File {
            path: "expenses.csv".into(),
            equals: None,
            contains: vec![],
            lines: vec!["lunch,12".into()],
            in_order: false,
            absent: vec![" lunch,12".into()],
            missing: false,
        };
        assert_eq!(both.check(&case), Err("` lunch,12` is both in `lines` and in `absent`".to_string()));
        assert!(Grader::JsonField { pointer: "a".into(), equals: serde_json::json!(1) }.check(&case).is_err());
        case.expected_output = None;
        assert!(Grader::Exact { expected: None }.check(&case).is_err());
        assert!(Grader::Exact { expected: Some("x".into()) }.check(&case).is_ok());
    }
}
