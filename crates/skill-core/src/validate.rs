//! The Agent Skills specification's rules, reported with file and line.
//!
//! Every problem in a file is reported, not only the first. In [`ValidationMode::Lenient`]
//! (the default, as agents load skills) unknown frontmatter keys are warnings; in
//! [`ValidationMode::Strict`] they are errors, as in the reference validator.

use crate::skill::{KNOWN_KEYS, pod_get};
use crate::{Error, Skill};
use gray_matter::Pod;
use std::fmt;
use std::path::{Path, PathBuf};

/// Longest allowed `name`.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest allowed `description`.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Longest allowed `compatibility`.
pub const MAX_COMPATIBILITY_CHARS: usize = 500;
/// The specification recommends keeping `SKILL.md` bodies under this many lines.
pub const RECOMMENDED_MAX_BODY_LINES: usize = 500;

/// How unknown frontmatter keys are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidationMode {
    /// Unknown keys are warnings (what agents do when loading).
    #[default]
    Lenient,
    /// Unknown keys are errors (what the reference validator does).
    Strict,
}

/// Whether a problem makes the skill invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth fixing, but the skill still loads.
    Warning,
    /// The skill violates the specification.
    Error,
}

/// One problem at one place.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// Error or warning.
    pub severity: Severity,
    /// Stable machine-readable code, e.g. `name-format`.
    pub code: &'static str,
    /// Human-readable explanation with the fix.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}: {sev}[{}]: {}", self.file.display(), self.line, self.code, self.message)
    }
}

/// Reads, parses and validates a `SKILL.md` file. Returns the skill when it could be parsed,
/// and every problem found. Never fails: unreadable files become diagnostics too.
pub fn validate_file(path: &Path, mode: ValidationMode) -> (Option<Skill>, Vec<Diagnostic>) {
    match Skill::read(path) {
        Ok(skill) => {
            let diags = validate_skill(&skill, mode);
            (Some(skill), diags)
        }
        Err(err) => {
            let (line, message) = match err {
                Error::Parse { line, message, .. } => (line, message),
                other => (1, other.to_string()),
            };
            let code = if message.contains("YAML") { "yaml" } else { "frontmatter" };
            (None, vec![Diagnostic { file: path.to_path_buf(), line, severity: Severity::Error, code, message }])
        }
    }
}

/// Checks a parsed skill against the specification. The folder-name rule applies when the
/// skill has a path (its parent folder must be named like the skill).
pub fn validate_skill(skill: &Skill, mode: ValidationMode) -> Vec<Diagnostic> {
    let file = skill.path().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("SKILL.md"));
    let mut out = Vec::new();
    let mut push = |line: usize, severity: Severity, code: &'static str, message: String| {
        out.push(Diagnostic { file: file.clone(), line, severity, code, message });
    };
    let data = skill.data();

    // name
    match pod_get(data, "name") {
        Pod::Null if !has_key(skill, "name") => {
            push(1, Severity::Error, "name-missing", "required key `name` is missing".into())
        }
        Pod::String(name) => {
            let line = skill.line_of("name");
            for problem in name_problems(name) {
                push(line, Severity::Error, "name-format", problem);
            }
            if let Some(folder) = skill.path().and_then(folder_name)
                && name_problems(name).is_empty()
                && folder != *name
            {
                push(
                    line,
                    Severity::Error,
                    "name-folder",
                    format!("name `{name}` must equal its folder's name `{folder}` (rename one of them)"),
                );
            }
        }
        other => push(
            skill.line_of("name"),
            Severity::Error,
            "name-type",
            format!("`name` must be a string, found {}", pod_kind(other)),
        ),
    }

    // description
    match pod_get(data, "description") {
        Pod::Null if !has_key(skill, "description") => push(
            1,
            Severity::Error,
            "description-missing",
            "required key `description` is missing: say what the skill does and when to use it".into(),
        ),
        Pod::String(d) => {
            let line = skill.line_of("description");
            let chars = d.chars().count();
            if d.trim().is_empty() {
                push(line, Severity::Error, "description-empty", "`description` is empty".into());
            } else if chars > MAX_DESCRIPTION_CHARS {
                push(
                    line,
                    Severity::Error,
                    "description-length",
                    format!("`description` is {chars} characters; at most {MAX_DESCRIPTION_CHARS} allowed"),
                );
            }
        }
        other => push(
            skill.line_of("description"),
            Severity::Error,
            "description-type",
            format!("`description` must be a string, found {}", pod_kind(other)),
        ),
    }

    // license
    match pod_get(data, "license") {
        Pod::Null | Pod::String(_) => {}
        other => push(
            skill.line_of("license"),
            Severity::Error,
            "license-type",
            format!("`license` must be a string, found {}", pod_kind(other)),
        ),
    }

    // compatibility
    match pod_get(data, "compatibility") {
        Pod::Null if !has_key(skill, "compatibility") => {}
        Pod::String(c) if !c.trim().is_empty() && c.chars().count() <= MAX_COMPATIBILITY_CHARS => {}
        Pod::String(c) => push(
            skill.line_of("compatibility"),
            Severity::Error,
            "compatibility-length",
            format!(
                "`compatibility` must be 1-{MAX_COMPATIBILITY_CHARS} characters, found {}",
                c.trim().chars().count()
            ),
        ),
        other => push(
            skill.line_of("compatibility"),
            Severity::Error,
            "compatibility-type",
            format!("`compatibility` must be a string, found {}", pod_kind(other)),
        ),
    }

    // metadata
    match pod_get(data, "metadata") {
        Pod::Null => {}
        Pod::Hash(map) => {
            let mut keys: Vec<_> = map.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in keys {
                if !matches!(v, Pod::String(_)) {
                    push(
                        nested_key_line(skill, "metadata", k),
                        Severity::Error,
                        "metadata-type",
                        format!("`metadata.{k}` must be a string, found {} (quote the value)", pod_kind(v)),
                    );
                }
            }
        }
        other => push(
            skill.line_of("metadata"),
            Severity::Error,
            "metadata-type",
            format!("`metadata` must be a map of strings to strings, found {}", pod_kind(other)),
        ),
    }

    // allowed-tools
    match pod_get(data, "allowed-tools") {
        Pod::Null | Pod::String(_) => {}
        Pod::Array(items) if items.iter().all(|i| matches!(i, Pod::String(_))) => {}
        other => push(
            skill.line_of("allowed-tools"),
            Severity::Error,
            "allowed-tools-type",
            format!("`allowed-tools` must be a space-separated string or a list of strings, found {}", pod_kind(other)),
        ),
    }

    // unknown keys
    for key in skill.keys() {
        if !KNOWN_KEYS.contains(&key.key.as_str()) {
            let (severity, hint) = match mode {
                ValidationMode::Lenient => (Severity::Warning, "ignored; put custom fields under `metadata`"),
                ValidationMode::Strict => {
                    (Severity::Error, "not allowed in strict mode; put custom fields under `metadata`")
                }
            };
            let suggestion = KNOWN_KEYS
                .iter()
                .find(|k| k.replace('-', "_") == key.key.replace('-', "_").to_lowercase())
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            push(
                key.line,
                severity,
                "unknown-key",
                format!("unknown frontmatter key `{}`{suggestion}: {hint}", key.key),
            );
        }
    }

    // body
    let body = skill.body();
    if body.trim().is_empty() {
        push(
            skill.body_line(),
            Severity::Warning,
            "body-empty",
            "the body is empty: a skill needs instructions after the frontmatter".into(),
        );
    } else {
        let lines = body.lines().count();
        if lines > RECOMMENDED_MAX_BODY_LINES {
            push(
                skill.body_line(),
                Severity::Warning,
                "body-length",
                format!(
                    "the body is {lines} lines; the specification recommends under {RECOMMENDED_MAX_BODY_LINES} (move detail to references/)"
                ),
            );
        }
        let tools: Vec<String> = skill
            .meta()
            .allowed_tools
            .iter()
            .flatten()
            .map(|t| t.split('(').next().unwrap_or(t).to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        // Only example calls: an answer format (`{"answer": "..."}`) is no argument.
        let is_call = |line: &str| {
            let lower = line.to_ascii_lowercase();
            lower.contains("call") || lower.contains("action:") || tools.iter().any(|t| lower.contains(t.as_str()))
        };
        for (i, line) in body.lines().enumerate().filter(|(_, l)| is_call(l)) {
            for (key, value) in placeholder_arguments(line) {
                push(
                    skill.body_line() + i,
                    Severity::Warning,
                    "placeholder-argument",
                    format!(
                        "the example call gives `{key}` the placeholder `{value}`, which small models copy as the \
                         argument (the agent loop refuses such calls): say in words what `{key}` holds, or leave \
                         the field out of the example"
                    ),
                );
            }
        }
    }

    out.sort_by_key(|d| d.line);
    out
}

/// `"key": "..."` and `"key": "<name>"` in an example call: arguments a model copied from
/// an example without filling them in (see [`is_placeholder_value`]).
fn placeholder_arguments(line: &str) -> Vec<(String, String)> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r#""([A-Za-z_][\w-]*)"\s*:\s*"([^"]*)""#).expect("valid regex"));
    re.captures_iter(line)
        .filter(|c| is_placeholder_value(&c[2]))
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

/// Whether an argument value is a placeholder rather than a value: `...`, `…`, or a short
/// name in angle brackets (`<file name>`). The agent loop refuses calls with one, and skill
/// validation warns about example calls that show one.
pub fn is_placeholder_value(text: &str) -> bool {
    let text = text.trim();
    let named = text.strip_prefix('<').and_then(|t| t.strip_suffix('>')).is_some_and(|inner| {
        !inner.is_empty() && inner.len() <= 40 && inner.chars().all(|c| c.is_alphabetic() || " _-".contains(c))
    });
    matches!(text, "..." | "…") || named
}

/// Every way `name` breaks the naming rule (empty when it is valid).
pub fn name_problems(name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let chars = name.chars().count();
    if chars == 0 {
        problems.push("`name` is empty".to_string());
        return problems;
    }
    if chars > MAX_NAME_CHARS {
        problems.push(format!("`name` is {chars} characters; at most {MAX_NAME_CHARS} allowed"));
    }
    let bad: Vec<char> = {
        let mut v: Vec<char> =
            name.chars().filter(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')).collect();
        v.dedup();
        v
    };
    if !bad.is_empty() {
        let shown: String = bad.iter().take(8).map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
        let upper = if bad.iter().any(|c| c.is_uppercase()) { " (use lowercase)" } else { "" };
        problems.push(format!("`name` may only contain lowercase letters, digits and hyphens; found {shown}{upper}"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        problems.push("`name` must not start or end with a hyphen".to_string());
    }
    if name.contains("--") {
        problems.push("`name` must not contain consecutive hyphens".to_string());
    }
    problems
}

fn folder_name(path: &Path) -> Option<String> {
    path.parent()?.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn has_key(skill: &Skill, key: &str) -> bool {
    skill.keys().iter().any(|k| k.key == key)
}

fn nested_key_line(skill: &Skill, parent: &str, child: &str) -> usize {
    let start = skill.line_of(parent);
    let first_fm_line = 2;
    skill
        .frontmatter_text()
        .lines()
        .enumerate()
        .skip(start.saturating_sub(first_fm_line) + 1)
        .take_while(|(_, l)| l.starts_with([' ', '\t']) || l.trim().is_empty())
        .find(|(_, l)| l.trim_start().trim_start_matches(['"', '\'']).starts_with(child))
        .map(|(i, _)| i + first_fm_line)
        .unwrap_or(start)
}

fn pod_kind(pod: &Pod) -> &'static str {
    match pod {
        Pod::Null => "nothing (null)",
        Pod::String(_) => "a string",
        Pod::Integer(_) => "a number",
        Pod::Float(_) => "a number",
        Pod::Boolean(_) => "a boolean",
        Pod::Array(_) => "a list",
        Pod::Hash(_) => "a map",
    }
}

/// True when no diagnostic is an error.
pub fn is_valid(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().all(|d| d.severity != Severity::Error)
}
