//! `SKILL.md`: YAML frontmatter between `---` lines, then a markdown body.
//!
//! A [`Skill`] keeps the exact text it was parsed from, split into three parts (opening
//! delimiter, frontmatter, closing delimiter plus body), so [`Skill::to_markdown`] on an
//! unchanged skill returns the input byte for byte: comments, key order, quoting and line
//! endings survive. Edits through [`Skill::set_field`] and [`Skill::set_body`] rewrite only the
//! part they touch.
//!
//! The frontmatter is parsed by gray_matter's YAML engine; where YAML is broken, the line comes
//! from the YAML scanner so the error can name it.

use crate::{Error, Result};
use gray_matter::Pod;
use gray_matter::engine::{Engine, YAML};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The frontmatter keys the Agent Skills specification defines.
pub const KNOWN_KEYS: &[&str] = &["name", "description", "license", "compatibility", "metadata", "allowed-tools"];

/// Typed view of the frontmatter. Fields are `None` when absent or of the wrong YAML type;
/// [`crate::validate`] reports which.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SkillMeta {
    /// `name`: the skill's identifier, equal to its folder's name.
    pub name: Option<String>,
    /// `description`: what the skill does and when to use it.
    pub description: Option<String>,
    /// `license`.
    pub license: Option<String>,
    /// `compatibility`: environment requirements, free text.
    pub compatibility: Option<String>,
    /// `metadata`: string to string map (non-string values are left out and reported).
    pub metadata: BTreeMap<String, String>,
    /// `allowed-tools`: the tools the skill may call, from a space/comma separated string or a
    /// YAML list.
    pub allowed_tools: Option<Vec<String>>,
}

/// One top-level frontmatter key with the 1-based file line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyLine {
    /// The key as written.
    pub key: String,
    /// 1-based line in the whole file.
    pub line: usize,
}

/// A parsed `SKILL.md`.
#[derive(Debug, Clone)]
pub struct Skill {
    path: Option<PathBuf>,
    /// The opening `---` line including its line ending (and a BOM, if the file had one).
    open: String,
    /// Frontmatter text between the delimiter lines, line endings included.
    frontmatter: String,
    /// The closing `---` line including its line ending (empty line ending at end of file).
    close: String,
    body: String,
    data: Pod,
    meta: SkillMeta,
    keys: Vec<KeyLine>,
}

impl Skill {
    /// Parses `SKILL.md` text. `path` is only used in error messages and validation.
    ///
    /// Fails only when the file cannot be understood at all: empty, no frontmatter, unclosed
    /// frontmatter, broken YAML, or frontmatter that is not a mapping. Spec violations (a bad
    /// name, a missing description) are left to [`crate::validate_skill`] so they can all be
    /// reported at once.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Skill> {
        let err = |line: usize, message: String| Error::Parse {
            path: path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<input>")),
            line,
            message,
        };
        if text.trim().is_empty() {
            return Err(err(1, "file is empty: a SKILL.md starts with `---`, YAML frontmatter (name, description), `---`, then instructions".into()));
        }
        let (first, rest_start) = split_line(text, 0);
        let first_content = first.trim_start_matches('\u{feff}').trim_end();
        if first_content != "---" {
            return Err(err(
                1,
                format!("missing frontmatter: the first line must be `---`, found `{}`", truncate(first_content, 40)),
            ));
        }
        // Find the closing delimiter: the next line that is exactly `---`. Anything after it,
        // including further `---` lines, is body.
        let mut pos = rest_start;
        let mut line_no = 2;
        let close_at = loop {
            if pos >= text.len() {
                return Err(err(1, "frontmatter is never closed: add a line `---` after the YAML keys".into()));
            }
            let (line, next) = split_line(text, pos);
            if line.trim_end() == "---" {
                break (pos, next);
            }
            pos = next;
            line_no += 1;
        };
        let _ = line_no;
        let open = text[..rest_start].to_string();
        let frontmatter = text[rest_start..close_at.0].to_string();
        let close = text[close_at.0..close_at.1].to_string();
        let body = text[close_at.1..].to_string();

        // An error found at the end of input (an unclosed bracket or quote) is reported on the
        // last frontmatter line rather than on the closing delimiter.
        let last_fm_line = count_lines(&frontmatter).max(1);
        let data = parse_yaml(&frontmatter).map_err(|(line, msg)| err(1 + line.min(last_fm_line), msg))?;
        let data = match data {
            Pod::Hash(_) => data,
            Pod::Null => {
                return Err(err(2, "frontmatter is empty: it needs at least `name:` and `description:`".into()));
            }
            _ => {
                return Err(err(2, "frontmatter must be a YAML mapping of `key: value` lines".into()));
            }
        };
        let keys = top_level_keys(&frontmatter, 2);
        let meta = meta_from_pod(&data);
        Ok(Skill { path: path.map(Path::to_path_buf), open, frontmatter, close, body, data, meta, keys })
    }

    /// Reads and parses a `SKILL.md` file.
    pub fn read(path: &Path) -> Result<Skill> {
        let text = crate::fsutil::read_utf8(path)?;
        Skill::parse(&text, Some(path))
    }

    /// Builds a new skill with the required fields and a body.
    pub fn new(name: &str, description: &str, body: &str) -> Skill {
        let text =
            format!("---\nname: {}\ndescription: {}\n---\n{}", yaml_scalar(name), yaml_scalar(description), body);
        // Built from escaped scalars, so it always parses.
        Skill::parse(&text, None).unwrap_or_else(|e| unreachable!("generated SKILL.md must parse: {e}"))
    }

    /// The file this skill was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Typed frontmatter fields.
    pub fn meta(&self) -> &SkillMeta {
        &self.meta
    }

    /// The raw parsed frontmatter (all keys, including unknown ones).
    pub fn data(&self) -> &Pod {
        &self.data
    }

    /// Top-level frontmatter keys in file order, with their lines.
    pub fn keys(&self) -> &[KeyLine] {
        &self.keys
    }

    /// 1-based file line where the frontmatter key `key` starts (or 1 when absent).
    pub fn line_of(&self, key: &str) -> usize {
        self.keys.iter().find(|k| k.key == key).map(|k| k.line).unwrap_or(1)
    }

    /// 1-based file line where the body starts.
    pub fn body_line(&self) -> usize {
        count_lines(&self.open) + count_lines(&self.frontmatter) + count_lines(&self.close) + 1
    }

    /// The frontmatter text as written.
    pub fn frontmatter_text(&self) -> &str {
        &self.frontmatter
    }

    /// The markdown body (everything after the closing `---` line).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// `name`, or an empty string when missing.
    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    /// `description`, or an empty string when missing.
    pub fn description(&self) -> &str {
        self.meta.description.as_deref().unwrap_or("")
    }

    /// The whole file; byte-identical to the parsed input when nothing was changed.
    pub fn to_markdown(&self) -> String {
        let mut out =
            String::with_capacity(self.open.len() + self.frontmatter.len() + self.close.len() + self.body.len() + 1);
        out.push_str(&self.open);
        out.push_str(&self.frontmatter);
        out.push_str(&self.close);
        if self.close.ends_with('\n') || self.body.is_empty() {
            out.push_str(&self.body);
        } else {
            // The closing delimiter was the last line without a newline and a body was added.
            out.push('\n');
            out.push_str(&self.body);
        }
        out
    }

    /// Replaces the body, keeping the frontmatter text untouched.
    pub fn set_body(&mut self, body: &str) {
        self.body = body.to_string();
    }

    /// Sets a top-level string field (`description`, `name`, ...), rewriting only that key's
    /// lines in the frontmatter; comments and other keys stay as they were.
    pub fn set_field(&mut self, key: &str, value: &str) -> Result<()> {
        let newline = if self.frontmatter.contains("\r\n") { "\r\n" } else { "\n" };
        let replacement = format!("{key}: {}{newline}", yaml_scalar(value));
        let lines: Vec<&str> = self.frontmatter.split_inclusive('\n').collect();
        let start = lines.iter().position(|l| key_of_line(l).as_deref() == Some(key));
        let mut out = String::with_capacity(self.frontmatter.len() + replacement.len());
        match start {
            Some(start) => {
                // The key's block runs until the next line that starts at column 0 with content.
                let mut end = start + 1;
                while end < lines.len() {
                    let l = lines[end];
                    let continuation = l.starts_with([' ', '\t']) || l.trim().is_empty();
                    if !continuation {
                        break;
                    }
                    end += 1;
                }
                // Keep trailing blank lines of the block outside it.
                while end > start + 1 && lines[end - 1].trim().is_empty() {
                    end -= 1;
                }
                for l in &lines[..start] {
                    out.push_str(l);
                }
                out.push_str(&replacement);
                for l in &lines[end..] {
                    out.push_str(l);
                }
            }
            None => {
                out.push_str(&self.frontmatter);
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push_str(newline);
                }
                out.push_str(&replacement);
            }
        }
        let data = parse_yaml(&out).map_err(|(line, message)| Error::Parse {
            path: self.path.clone().unwrap_or_else(|| PathBuf::from("<input>")),
            line: line + 1,
            message: format!("setting `{key}` produced invalid YAML: {message}"),
        })?;
        self.meta = meta_from_pod(&data);
        self.keys = top_level_keys(&out, 2);
        self.data = data;
        self.frontmatter = out;
        Ok(())
    }

    /// A content hash of the whole file (blake3, hex), used to identify versions.
    pub fn content_hash(&self) -> String {
        content_hash(&self.to_markdown())
    }
}

/// blake3 hex digest of a text.
pub fn content_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// Returns the line starting at byte `pos` (with its terminator) and the next line's start.
fn split_line(text: &str, pos: usize) -> (&str, usize) {
    match text[pos..].find('\n') {
        Some(i) => (&text[pos..pos + i + 1], pos + i + 1),
        None => (&text[pos..], text.len()),
    }
}

fn count_lines(s: &str) -> usize {
    s.bytes().filter(|&b| b == b'\n').count()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { format!("{}...", s.chars().take(max).collect::<String>()) }
}

/// Parses YAML with gray_matter's engine; on failure returns (0-based line, message) from the
/// YAML scanner, which gray_matter's own error does not carry.
fn parse_yaml(text: &str) -> std::result::Result<Pod, (usize, String)> {
    match YAML::parse(text) {
        Ok(pod) => Ok(pod),
        Err(gm_err) => match yaml_rust2::YamlLoader::load_from_str(text) {
            Err(scan) => {
                let line = scan.marker().line().saturating_sub(1);
                Err((line + 1, format!("invalid YAML in frontmatter: {}", scan.info())))
            }
            Ok(_) => Err((1, format!("invalid YAML in frontmatter: {gm_err}"))),
        },
    }
}

/// Top-level keys and their file lines; `first_line` is the file line of the frontmatter's
/// first line.
fn top_level_keys(frontmatter: &str, first_line: usize) -> Vec<KeyLine> {
    frontmatter
        .split_inclusive('\n')
        .enumerate()
        .filter_map(|(i, l)| key_of_line(l).map(|key| KeyLine { key, line: first_line + i }))
        .collect()
}

/// `key` when the line is `key: ...` starting at column 0.
fn key_of_line(line: &str) -> Option<String> {
    if line.starts_with([' ', '\t', '#', '-']) {
        return None;
    }
    let (key, _) = line.split_once(':')?;
    let key = key.trim().trim_matches(['"', '\'']);
    if key.is_empty() || key.contains(char::is_whitespace) {
        return None;
    }
    Some(key.to_string())
}

fn meta_from_pod(data: &Pod) -> SkillMeta {
    let string = |key: &str| match pod_get(data, key) {
        Pod::String(s) => Some(s.clone()),
        _ => None,
    };
    let metadata = match pod_get(data, "metadata") {
        Pod::Hash(map) => map
            .iter()
            .filter_map(|(k, v)| match v {
                Pod::String(s) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let allowed_tools = match pod_get(data, "allowed-tools") {
        Pod::String(s) => {
            Some(s.split([' ', ',']).map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect())
        }
        Pod::Array(items) => {
            Some(items.iter().filter_map(|p| if let Pod::String(s) = p { Some(s.clone()) } else { None }).collect())
        }
        _ => None,
    };
    SkillMeta {
        name: string("name"),
        description: string("description"),
        license: string("license"),
        compatibility: string("compatibility"),
        metadata,
        allowed_tools,
    }
}

/// The value of a top-level key, `Pod::Null` when absent (gray_matter's `Index` panics).
pub fn pod_get<'a>(data: &'a Pod, key: &str) -> &'a Pod {
    static NULL: Pod = Pod::Null;
    match data {
        Pod::Hash(map) => map.get(key).unwrap_or(&NULL),
        _ => &NULL,
    }
}

/// Renders a string as a YAML scalar: plain when that reads back as the same string,
/// double-quoted with escapes otherwise. "Reads back" is decided by the YAML parser that
/// reads frontmatter, so `0x10`, `.inf`, `1e3` or `null` (a number or null there) are quoted;
/// YAML 1.1's booleans (`yes`, `on`, ...) are quoted too, for the other agents' parsers.
pub fn yaml_scalar(s: &str) -> String {
    let reads_back_plain = || {
        yaml_rust2::YamlLoader::load_from_str(&format!("k: {s}\n"))
            .is_ok_and(|docs| docs.first().is_some_and(|doc| doc["k"].as_str() == Some(s)))
    };
    let plain_ok = !s.is_empty()
        && s.trim() == s
        && !s.chars().any(char::is_control)
        && !s.contains(['"', '\\'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~" | "y" | "n"
        )
        && reads_back_plain();
    if plain_ok {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars_read_back_as_the_same_string() {
        for text in [
            "0x10",
            ".inf",
            "-.inf",
            ".nan",
            "1e3",
            "0o17",
            "12",
            "null",
            "~",
            "yes",
            "On",
            "",
            " lead",
            "a: b",
            "a #b",
            "- item",
            "[x]",
            "{x}",
            "*ref",
            "&anchor",
            "!tag",
            "|",
            ">",
            "%x",
            "@x",
            "`x",
            "'q'",
            "\"q\"",
            "back\\slash",
            "tab\there",
            "line\nbreak",
            "ends:",
            "Extract text from PDF files.",
            "plain words",
            "日本語",
            "version 1.0",
        ] {
            let rendered = yaml_scalar(text);
            let docs = yaml_rust2::YamlLoader::load_from_str(&format!("k: {rendered}\n")).expect(&rendered);
            assert_eq!(docs[0]["k"].as_str(), Some(text), "{text:?} written as {rendered}");
        }
        assert_eq!(yaml_scalar("plain words"), "plain words");
        assert_eq!(yaml_scalar("0x10"), "\"0x10\"");
    }

    const SAMPLE: &str = "---\n# a comment that must survive\nname: pdf-extract\ndescription: >\n  Extract text from PDF files.\n  Use when a PDF is mentioned.\nmetadata:\n  author: me\n  version: \"1.0\"\n---\n\n# PDF extraction\n\n1. Open the file.\n\n---\n\nMore after a rule.\n";

    #[test]
    fn round_trip_is_byte_identical() {
        for text in [
            SAMPLE,
            "---\r\nname: a\r\ndescription: b\r\n---\r\nbody\r\n",
            "\u{feff}---\nname: a\ndescription: b\n---",
            "---\nname: a\ndescription: b\n---\nno trailing newline",
        ] {
            let skill = Skill::parse(text, None).expect("parses");
            assert_eq!(skill.to_markdown(), text);
        }
    }

    #[test]
    fn parses_fields_and_lines() {
        let skill = Skill::parse(SAMPLE, None).expect("parses");
        assert_eq!(skill.name(), "pdf-extract");
        assert_eq!(skill.description(), "Extract text from PDF files. Use when a PDF is mentioned.\n");
        assert_eq!(skill.meta().metadata.get("version").map(String::as_str), Some("1.0"));
        assert_eq!(skill.line_of("name"), 3);
        assert_eq!(skill.line_of("metadata"), 7);
        assert_eq!(skill.body_line(), 11);
        assert!(skill.body().contains("---\n\nMore after a rule."), "a rule in the body stays body");
    }

    #[test]
    fn set_field_rewrites_only_that_key() {
        let mut skill = Skill::parse(SAMPLE, None).expect("parses");
        skill.set_field("description", "New: text with \"quotes\"").expect("set");
        assert_eq!(skill.description(), "New: text with \"quotes\"");
        let md = skill.to_markdown();
        assert!(md.contains("# a comment that must survive\nname: pdf-extract\ndescription: \"New: text with \\\"quotes\\\"\"\nmetadata:\n"), "{md}");
        let reparsed = Skill::parse(&md, None).expect("reparses");
        assert_eq!(reparsed.description(), "New: text with \"quotes\"");
        assert_eq!(reparsed.body(), skill.body());
        skill.set_field("license", "MIT").expect("add key");
        assert_eq!(skill.meta().license.as_deref(), Some("MIT"));
    }

    #[test]
    fn new_skill_escapes_scalars() {
        for desc in
            ["plain words", "yes", "1.5", "a: b", "- dash", "#hash", "quote \" and \\", "multi\nline", " padded "]
        {
            let s = Skill::new("x", desc, "body\n");
            assert_eq!(s.description(), desc, "{}", s.to_markdown());
        }
    }

    #[test]
    fn parse_errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "empty"),
            ("   \n\n", 1, "empty"),
            ("# Title\nno frontmatter", 1, "missing frontmatter"),
            ("---\nname: a\ndescription: b\n", 1, "never closed"),
            ("---\nname: a\ndescription: [unclosed\nfoo: bar\n---\nbody", 4, "invalid YAML"),
            ("---\nname: a\n  bad: indent: here\n---\n", 3, "invalid YAML"),
            ("---\n- a\n- b\n---\n", 2, "mapping"),
            ("---\n---\nbody", 2, "empty"),
        ];
        for (text, line, needle) in cases {
            let err = Skill::parse(text, Some(Path::new("s/SKILL.md"))).expect_err(text);
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("s/SKILL.md:{line}:")), "{text:?} -> {msg}");
            assert!(msg.contains(needle), "{text:?} -> {msg}");
        }
    }

    #[test]
    fn allowed_tools_string_or_list() {
        let s = Skill::parse("---\nname: a\ndescription: b\nallowed-tools: Bash(git:*) Read, Write\n---\n", None)
            .expect("p");
        assert_eq!(s.meta().allowed_tools.clone().expect("tools"), ["Bash(git:*)", "Read", "Write"]);
        let s = Skill::parse("---\nname: a\ndescription: b\nallowed-tools:\n  - read_file\n  - shell\n---\n", None)
            .expect("p");
        assert_eq!(s.meta().allowed_tools.clone().expect("tools"), ["read_file", "shell"]);
    }
}
