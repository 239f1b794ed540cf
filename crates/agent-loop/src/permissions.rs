//! What an active skill may call: its `allowed-tools`, read with the Agent Skills / Claude
//! Code syntax.
//!
//! - a tool name allows the tool: `read_file`, or Claude Code's `Read`, `Write`, `Edit`,
//!   `MultiEdit`, `Bash`, `Grep`, `Glob`, `LS` (mapped to `read_file`, `write_file`,
//!   `write_file`, `write_file`, `shell`, `find_lines` and `shell` limited to `grep`,
//!   `list_dir`, `list_dir`);
//! - `Bash(git:*)` allows shell commands that are `git` or start with `git `; `Bash(npm run
//!   test)` allows that command exactly; `Bash(git log *)` allows what the `*` pattern
//!   matches. A restricted command must be a simple command: `;`, `&`, `|`, backquotes,
//!   `$`, redirections and newlines are refused, so `git status; rm -rf ~` is not a git
//!   command;
//! - `Read(docs/**)`, `Write(out/*.md)`: the file tools on paths the pattern matches (`*`
//!   within a folder, `**` across folders, relative to the workspace).
//!
//! Limits only narrow: a skill activated while a restricted one is active gets the
//! intersection, so a restricted skill cannot leave its limits by activating another.

use serde_json::Value;

/// One allowed tool, with an optional limit on its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    tool: String,
    limit: Option<Limit>,
}

/// A limit on one argument of a tool, as an anchored regex.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Limit {
    /// The argument it applies to (`command`, `path`).
    argument: &'static str,
    /// Anchored regex the argument must match.
    pattern: String,
    /// How the skill wrote it, for messages.
    written: String,
}

/// Characters a limited shell command may not contain (they chain, substitute or redirect).
const SHELL_OPERATORS: &[char] = &[';', '&', '|', '`', '$', '<', '>', '\n', '\r', '(', ')'];

/// The tools a run may call. `Permissions::any()` allows every tool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions {
    /// `None`: no limit. Each inner list is one skill's rules; a call must pass every list.
    layers: Option<Vec<Vec<Rule>>>,
}

impl Permissions {
    /// No limit.
    pub fn any() -> Self {
        Permissions { layers: None }
    }

    /// True when nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.layers.is_none()
    }

    /// Narrows these permissions by one skill's `allowed-tools` (`None`: the skill sets no
    /// limit). Entries that cannot be read are returned as warnings and allow nothing.
    pub fn narrowed_by(&self, allowed: Option<&[String]>) -> (Permissions, Vec<String>) {
        let Some(allowed) = allowed else { return (self.clone(), Vec::new()) };
        let mut warnings = Vec::new();
        let mut rules = Vec::new();
        for entry in allowed {
            match parse_entry(entry) {
                Ok(mut parsed) => rules.append(&mut parsed),
                Err(w) => warnings.push(w),
            }
        }
        let mut layers = self.layers.clone().unwrap_or_default();
        layers.push(rules);
        (Permissions { layers: Some(layers) }, warnings)
    }

    /// Whether any call of `tool` can be allowed.
    pub fn allows_tool(&self, tool: &str) -> bool {
        match &self.layers {
            None => true,
            Some(layers) => layers.iter().all(|rules| rules.iter().any(|r| r.tool == tool)),
        }
    }

    /// Checks one call; the reason in words when it is not allowed.
    pub fn check(&self, tool: &str, args: &Value) -> Result<(), String> {
        let Some(layers) = &self.layers else { return Ok(()) };
        for rules in layers {
            let candidates: Vec<&Rule> = rules.iter().filter(|r| r.tool == tool).collect();
            if candidates.is_empty() {
                return Err(format!("`{tool}` is not among the allowed tools"));
            }
            if candidates.iter().any(|r| r.limit.is_none()) {
                continue;
            }
            let passes = candidates.iter().any(|r| r.limit.as_ref().is_some_and(|l| l.allows(args)));
            if !passes {
                let written: Vec<&str> =
                    candidates.iter().filter_map(|r| r.limit.as_ref().map(|l| l.written.as_str())).collect();
                return Err(format!("this `{tool}` call is outside {}", written.join(", ")));
            }
        }
        Ok(())
    }

    /// The JSON-schema `pattern`s a tool's arguments must match, for the reply grammar: the
    /// one limit of each argument, when a single limit applies (several alternatives are left
    /// to [`Permissions::check`]).
    pub fn argument_patterns(&self, tool: &str) -> Vec<(&'static str, String)> {
        let Some(layers) = &self.layers else { return Vec::new() };
        let mut out = Vec::new();
        for rules in layers {
            let candidates: Vec<&Rule> = rules.iter().filter(|r| r.tool == tool).collect();
            if candidates.len() == 1
                && let Some(limit) = &candidates[0].limit
            {
                out.push((limit.argument, limit.pattern.clone()));
            }
        }
        out
    }
}

impl Limit {
    fn allows(&self, args: &Value) -> bool {
        let Some(value) = args.get(self.argument).and_then(Value::as_str) else { return false };
        let value = if self.argument == "path" { normalize_path(value) } else { value.trim().to_string() };
        if self.argument == "command" && value.contains(SHELL_OPERATORS) {
            return false;
        }
        regex::Regex::new(&self.pattern).is_ok_and(|re| re.is_match(&value))
    }
}

fn normalize_path(path: &str) -> String {
    let mut p = path.trim();
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p.to_string()
}

/// Our tool names for one entry of `allowed-tools`.
fn parse_entry(entry: &str) -> Result<Vec<Rule>, String> {
    let entry = entry.trim();
    let (name, inner) = match entry.split_once('(') {
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("allowed-tools entry `{entry}` has no closing parenthesis"))?;
            (name.trim(), Some(inner.trim()))
        }
        None => (entry, None),
    };
    let rule = |tool: &str, limit: Option<Limit>| Rule { tool: tool.to_string(), limit };
    let file_limit = |inner: Option<&str>| inner.map(|p| path_limit(p, entry));
    Ok(match name {
        "Read" => vec![rule("read_file", file_limit(inner))],
        "Write" | "Edit" | "MultiEdit" => vec![rule("write_file", file_limit(inner))],
        "LS" | "Glob" => vec![rule("list_dir", file_limit(inner))],
        "Bash" | "shell" => vec![rule("shell", inner.map(|c| command_limit(c, entry)))],
        "Grep" => vec![rule("find_lines", file_limit(inner)), rule("shell", Some(command_limit("grep:*", entry)))],
        "read_file" | "write_file" | "list_dir" | "find_lines" | "count_words" => vec![rule(name, file_limit(inner))],
        other if inner.is_none() && !other.is_empty() => vec![rule(other, None)],
        _ => return Err(format!("allowed-tools entry `{entry}` is not a tool name or a known pattern")),
    })
}

/// `git:*` (the command or the command and arguments), `npm run test` (exactly), `git log *`
/// (a `*` pattern).
fn command_limit(pattern: &str, written: &str) -> Limit {
    let regex = if let Some(prefix) = pattern.strip_suffix(":*") {
        format!("^{}( [^\\n]*)?$", regex::escape(prefix.trim()))
    } else {
        let parts: Vec<String> = pattern.split('*').map(regex::escape).collect();
        format!("^{}$", parts.join("[^\\n]*"))
    };
    Limit { argument: "command", pattern: regex, written: written.to_string() }
}

/// `docs/**` (anything under docs), `*.md` (a markdown file at the top), `notes/*.txt`.
fn path_limit(pattern: &str, written: &str) -> Limit {
    let pattern = normalize_path(pattern);
    let mut regex = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `dir/**` also matches `dir` itself and everything below it.
                if chars.peek() == Some(&'/') {
                    chars.next();
                    regex.push_str("(.*/)?");
                } else {
                    regex.push_str(".*");
                }
            }
            '*' => regex.push_str("[^/]*"),
            '?' => regex.push_str("[^/]"),
            other => regex.push_str(&regex::escape(&other.to_string())),
        }
    }
    regex.push('$');
    Limit { argument: "path", pattern: regex, written: written.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn perms(entries: &[&str]) -> Permissions {
        let list: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        let (p, warnings) = Permissions::any().narrowed_by(Some(&list));
        assert!(warnings.is_empty(), "{warnings:?}");
        p
    }

    #[test]
    fn bash_prefix_patterns_allow_that_command_only() {
        let p = perms(&["Bash(git:*)"]);
        for ok in ["git", "git status", "git log --oneline -5"] {
            assert_eq!(p.check("shell", &json!({"command": ok})), Ok(()), "{ok}");
        }
        for bad in
            ["gitk", "rm -rf /", "git status; rm -rf ~", "git log | sh", "git $(rm x)", "git > /etc/x", "ls && git"]
        {
            let err = p.check("shell", &json!({"command": bad})).expect_err(bad);
            assert!(err.contains("outside Bash(git:*)"), "{bad}: {err}");
        }
        assert!(p.check("read_file", &json!({"path": "a"})).is_err(), "Bash(git:*) allows no file reads");
        assert_eq!(p.argument_patterns("shell"), vec![("command", "^git( [^\\n]*)?$".to_string())]);
    }

    #[test]
    fn exact_and_star_commands() {
        let p = perms(&["Bash(npm run test)", "Bash(git log *)"]);
        assert_eq!(p.check("shell", &json!({"command": "npm run test"})), Ok(()));
        assert!(p.check("shell", &json!({"command": "npm run test2"})).is_err());
        assert_eq!(p.check("shell", &json!({"command": "git log -3"})), Ok(()));
        assert!(p.check("shell", &json!({"command": "git push"})).is_err());
        assert!(p.argument_patterns("shell").is_empty(), "two alternatives: checked after the reply");
    }

    #[test]
    fn claude_code_names_map_to_ours() {
        let p = perms(&["Read", "Write", "LS", "Grep"]);
        for tool in ["read_file", "write_file", "list_dir", "find_lines", "shell"] {
            assert!(p.allows_tool(tool), "{tool}");
        }
        assert_eq!(p.check("shell", &json!({"command": "grep -n todo notes.md"})), Ok(()));
        assert!(p.check("shell", &json!({"command": "cat notes.md"})).is_err(), "Grep is grep only");
        assert!(!perms(&["Read"]).allows_tool("write_file"));
    }

    #[test]
    fn path_patterns_limit_file_tools() {
        let p = perms(&["Read(docs/**)", "Write(out/*.md)", "Grep(docs/**)"]);
        assert_eq!(p.check("read_file", &json!({"path": "docs/a/b.txt"})), Ok(()));
        assert_eq!(p.check("find_lines", &json!({"path": "docs/a/b.txt", "text": "x"})), Ok(()));
        assert!(p.check("find_lines", &json!({"path": "secrets.txt", "text": "key"})).is_err());
        assert_eq!(p.check("read_file", &json!({"path": "./docs/c.md"})), Ok(()));
        assert!(p.check("read_file", &json!({"path": "secrets.txt"})).is_err());
        assert_eq!(p.check("write_file", &json!({"path": "out/report.md"})), Ok(()));
        assert!(p.check("write_file", &json!({"path": "out/deep/report.md"})).is_err());
        assert!(p.check("write_file", &json!({"path": "out/report.txt"})).is_err());
    }

    #[test]
    fn limits_only_narrow() {
        let restricted = perms(&["list_dir"]);
        let wider = vec!["read_file".to_string(), "list_dir".to_string()];
        let (both, _) = restricted.narrowed_by(Some(&wider));
        assert!(both.allows_tool("list_dir"));
        assert!(!both.allows_tool("read_file"), "activating a wider skill does not widen the limits");
        let (same, _) = restricted.narrowed_by(None);
        assert_eq!(same, restricted, "a skill without allowed-tools keeps the limits as they are");
        assert!(Permissions::any().allows_tool("anything"));
        let (none, _) = Permissions::any().narrowed_by(Some(&[]));
        assert!(!none.allows_tool("read_file"), "an empty allowed-tools allows no tool");
    }

    #[test]
    fn unreadable_entries_are_warnings() {
        let list = vec!["Bash(git:*".to_string(), "Read(".to_string(), "list_dir".to_string()];
        let (p, warnings) = Permissions::any().narrowed_by(Some(&list));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("no closing parenthesis"));
        assert!(p.allows_tool("list_dir") && !p.allows_tool("shell"));
    }
}
