//! Every rule of the Agent Skills specification, with valid and invalid skills written to
//! real files in temporary folders.

use skill_core::{Severity, ValidationMode, validate_file};
use std::path::{Path, PathBuf};

fn write_skill(root: &Path, folder: &str, text: &str) -> PathBuf {
    let dir = root.join(folder);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("SKILL.md");
    std::fs::write(&path, text).expect("write");
    path
}

fn skill_text(frontmatter: &str) -> String {
    format!("---\n{frontmatter}\n---\n\n# Steps\n\n1. Do the thing.\n")
}

/// (code, line, severity) of every diagnostic.
fn check(folder: &str, text: &str, mode: ValidationMode) -> Vec<(&'static str, usize, Severity)> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = write_skill(tmp.path(), folder, text);
    let (_, diags) = validate_file(&path, mode);
    for d in &diags {
        assert_eq!(d.file, path, "diagnostics name the file");
        assert!(d.to_string().starts_with(&format!("{}:{}:", path.display(), d.line)), "{d}");
    }
    diags.into_iter().map(|d| (d.code, d.line, d.severity)).collect()
}

fn codes(folder: &str, frontmatter: &str) -> Vec<&'static str> {
    check(folder, &skill_text(frontmatter), ValidationMode::Lenient).into_iter().map(|c| c.0).collect()
}

#[test]
fn valid_skills_have_no_problems() {
    let cases = [
        ("a", "name: a\ndescription: d"),
        ("pdf-extract", "name: pdf-extract\ndescription: Extract text from PDFs. Use when a PDF is mentioned."),
        (
            "x1-2-y",
            "name: x1-2-y\ndescription: d\nlicense: Apache-2.0\ncompatibility: needs python3 and network access",
        ),
        ("m", "name: m\ndescription: d\nmetadata:\n  author: me\n  version: \"1.0\""),
        ("t", "name: t\ndescription: d\nallowed-tools: Bash(git:*) Read"),
        ("t2", "name: t2\ndescription: d\nallowed-tools:\n  - read_file\n  - write_file"),
        ("q", "name: \"q\"\ndescription: 'quoted: with colon'"),
    ];
    for (folder, fm) in cases {
        assert_eq!(codes(folder, fm), Vec::<&str>::new(), "{fm}");
    }
    let max_name = "a".repeat(64);
    assert!(codes(&max_name, &format!("name: {max_name}\ndescription: d")).is_empty());
    let max_desc = "d".repeat(1024);
    assert!(codes("a", &format!("name: a\ndescription: {max_desc}")).is_empty());
    let max_compat = "c".repeat(500);
    assert!(codes("a", &format!("name: a\ndescription: d\ncompatibility: {max_compat}")).is_empty());
}

#[test]
fn name_rules() {
    let long = "a".repeat(65);
    let cases: Vec<(&str, String, &str)> = vec![
        ("Pdf", "name: Pdf".into(), "name-format"),
        ("pdf_extract", "name: pdf_extract".into(), "name-format"),
        ("pdf-extract-", "name: pdf-extract-".into(), "name-format"),
        ("-pdf", "name: -pdf".into(), "name-format"),
        ("pdf--extract", "name: pdf--extract".into(), "name-format"),
        ("pdf extract", "name: pdf extract".into(), "name-format"),
        ("café", "name: café".into(), "name-format"),
        (&long, format!("name: {long}"), "name-format"),
        ("empty", "name: \"\"".into(), "name-format"),
        ("folder", "name: other".into(), "name-folder"),
        ("num", "name: 123".into(), "name-type"),
        ("missing", "title: x".into(), "name-missing"),
    ];
    for (folder, name_line, code) in cases {
        let got = codes(folder, &format!("{name_line}\ndescription: d"));
        assert!(got.contains(&code), "{name_line}: {got:?}");
    }
}

#[test]
fn description_rules() {
    let long = "d".repeat(1025);
    let cases: Vec<(String, &str)> = vec![
        ("name: a".into(), "description-missing"),
        ("name: a\ndescription: \"\"".into(), "description-empty"),
        ("name: a\ndescription: \"   \"".into(), "description-empty"),
        (format!("name: a\ndescription: {long}"), "description-length"),
        ("name: a\ndescription: [one, two]".into(), "description-type"),
        ("name: a\ndescription:".into(), "description-type"),
    ];
    for (fm, code) in cases {
        let got = codes("a", &fm);
        assert!(got.contains(&code), "{fm}: {got:?}");
    }
}

#[test]
fn optional_field_rules() {
    let long = "c".repeat(501);
    let cases: Vec<(String, &str)> = vec![
        ("license: 3".into(), "license-type"),
        (format!("compatibility: {long}"), "compatibility-length"),
        ("compatibility: \"\"".into(), "compatibility-length"),
        ("compatibility: [a]".into(), "compatibility-type"),
        ("metadata: just text".into(), "metadata-type"),
        ("metadata:\n  version: 1.0".into(), "metadata-type"),
        ("metadata:\n  flags: [a, b]".into(), "metadata-type"),
        ("allowed-tools: 5".into(), "allowed-tools-type"),
        ("allowed-tools:\n  - 1\n  - read".into(), "allowed-tools-type"),
    ];
    for (fm, code) in cases {
        let got = codes("a", &format!("name: a\ndescription: d\n{fm}"));
        assert!(got.contains(&code), "{fm}: {got:?}");
    }
}

#[test]
fn unknown_keys_warn_by_default_and_fail_in_strict_mode() {
    let text = skill_text("name: a\ndescription: d\nversion: 2\nAllowed_Tools: x");
    let lenient = check("a", &text, ValidationMode::Lenient);
    assert_eq!(lenient, vec![("unknown-key", 4, Severity::Warning), ("unknown-key", 5, Severity::Warning)]);
    let strict = check("a", &text, ValidationMode::Strict);
    assert_eq!(strict, vec![("unknown-key", 4, Severity::Error), ("unknown-key", 5, Severity::Error)]);
    let tmp = tempfile::tempdir().expect("tmp");
    let path = write_skill(tmp.path(), "a", &text);
    let (_, diags) = validate_file(&path, ValidationMode::Strict);
    assert!(diags[1].message.contains("did you mean `allowed-tools`"), "{}", diags[1].message);
}

#[test]
fn all_problems_are_reported_at_once_with_lines() {
    let text = "---\nname: Bad_Name\nlicense: 5\ndescription: \"\"\nmetadata:\n  a: ok\n  b: 2\nextra: x\n---\n";
    let got = check("bad-name", text, ValidationMode::Lenient);
    assert_eq!(
        got,
        vec![
            ("name-format", 2, Severity::Error),
            ("license-type", 3, Severity::Error),
            ("description-empty", 4, Severity::Error),
            ("metadata-type", 7, Severity::Error),
            ("unknown-key", 8, Severity::Warning),
            ("body-empty", 10, Severity::Warning),
        ]
    );
}

#[test]
fn body_rules() {
    let long_body = format!("---\nname: a\ndescription: d\n---\n{}", "line\n".repeat(501));
    assert_eq!(check("a", &long_body, ValidationMode::Lenient), vec![("body-length", 5, Severity::Warning)]);
    let with_rule = "---\nname: a\ndescription: d\n---\nStep one\n\n---\n\nname: not frontmatter\n";
    assert_eq!(check("a", with_rule, ValidationMode::Lenient), vec![]);
}

#[test]
fn example_calls_with_placeholder_arguments_warn_on_their_line() {
    // Recorded on the everyday weekly-update skill: Qwen2.5-Coder-1.5B called
    // `write_file {"path": "update.md", "content": "..."}` as the step's example showed it.
    let text = "---\nname: a\ndescription: d\n---\n1. Call `read_file` with `{\"path\": \"done.txt\"}`.\n\
                2. Call `write_file` with `{\"path\": \"<file name>\", \"content\": \"...\"}`.\n";
    assert_eq!(
        check("a", text, ValidationMode::Lenient),
        vec![("placeholder-argument", 6, Severity::Warning), ("placeholder-argument", 6, Severity::Warning)]
    );
    let real_values = "---\nname: a\ndescription: d\nallowed-tools: write_file\n---\nCall `write_file` with \
                       `{\"path\": \"update.md\", \"content\": \"# Weekly update\"}`, then stop...\n\
                       Or use write_file with the path `a.md` and the text as its content.\n\
                       Reply with JSON only: `{\"answer\": \"...\"}`.\n";
    assert_eq!(check("a", real_values, ValidationMode::Lenient), vec![], "real values, and an answer format");
    let tool_named = "---\nname: a\ndescription: d\nallowed-tools: Bash(git:*)\n---\nRun bash with \
                      `{\"command\": \"<command>\"}`.\n";
    assert_eq!(check("a", tool_named, ValidationMode::Lenient), vec![("placeholder-argument", 6, Severity::Warning)]);
}

#[test]
fn unparseable_files_are_one_clear_error() {
    let cases: Vec<(&[u8], usize, &str)> = vec![
        (b"", 1, "empty"),
        (b"# Just markdown\n", 1, "missing frontmatter"),
        (b"---\nname: a\ndescription: d\n", 1, "never closed"),
        (b"---\nname: a\ndescription: d: e: f\n---\n", 3, "invalid YAML"),
        (b"---\nname: a\ndescription: \"unterminated\n---\nbody\n", 3, "invalid YAML"),
        (b"---\nname: a\ndescription: caf\xe9\n---\n", 3, "not valid UTF-8"),
    ];
    for (bytes, line, needle) in cases {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("a");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("SKILL.md");
        std::fs::write(&path, bytes).expect("write");
        let (skill, diags) = validate_file(&path, ValidationMode::Lenient);
        assert!(skill.is_none());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].line, line, "{}", diags[0]);
        assert!(diags[0].message.contains(needle), "{}", diags[0]);
        assert_eq!(diags[0].severity, Severity::Error);
    }
}

#[test]
fn missing_file_is_a_diagnostic_not_a_panic() {
    let (skill, diags) = validate_file(Path::new("/nonexistent/a/SKILL.md"), ValidationMode::Lenient);
    assert!(skill.is_none());
    assert!(diags[0].message.contains("No such file"), "{}", diags[0]);
}

#[test]
fn large_files_parse() {
    let body = "Some instruction text that repeats.\n".repeat(200_000); // ~7 MB
    let text = format!("---\nname: big\ndescription: d\n---\n{body}");
    let got = check("big", &text, ValidationMode::Lenient);
    assert_eq!(got, vec![("body-length", 5, Severity::Warning)]);
}
