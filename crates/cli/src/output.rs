//! Output helpers: JSON printing, terminal highlighting, and the CLI's own not-found error.

use anyhow::Result;
use std::io::{IsTerminal, Write};

/// Every JSON document `skd` prints carries this version; it changes only when a field is
/// removed or changes meaning (added fields do not bump it).
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// Prints a JSON value, pretty, with a trailing newline.
pub fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Whether stdout is a terminal (colors and highlighting only then).
pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// Renders `text` with the byte ranges in `highlights` in bold (terminal) or unchanged.
pub fn highlight(text: &str, highlights: &[[usize; 2]], tty: bool) -> String {
    if !tty || highlights.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + highlights.len() * 8);
    let mut pos = 0;
    for [start, end] in highlights {
        let (start, end) = (*start, *end);
        if start < pos || end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(&text[pos..start]);
        out.push_str("\x1b[1;33m");
        out.push_str(&text[start..end]);
        out.push_str("\x1b[0m");
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Collapses whitespace so a snippet fits on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A file or line the user named does not exist (exit code 3).
#[derive(Debug)]
pub struct NotFound(pub String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}
