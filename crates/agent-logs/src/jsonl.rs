//! Tolerant JSON Lines reading, shared by the readers.

use crate::{Error, Result};
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// One parsed line and where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The JSON value.
    pub value: Value,
}

/// Reads a JSON Lines file (`.zst`-compressed when its name ends so). Blank lines are
/// skipped; a last line without its newline that does not parse is a write in progress or
/// torn by a crash, and is ignored; any other line that does not parse is an error naming
/// the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<Line>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if path.extension().is_some_and(|e| e == "zst") {
        let mut out = Vec::new();
        // A compressed file cut short decodes up to the cut, then fails: keep what decoded,
        // so the torn-tail rule below applies to it as to a plain file.
        let mut decoder = zstd::stream::read::Decoder::new(bytes.as_slice()).map_err(|e| Error::io(path, e))?;
        if let Err(e) = decoder.read_to_end(&mut out)
            && out.is_empty()
        {
            return Err(Error::Corrupt { path: path.to_path_buf(), line: 0, message: format!("not zstd data: {e}") });
        }
        out
    } else {
        bytes
    };
    let text = String::from_utf8_lossy(&bytes);
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let raw: Vec<&str> = text.lines().collect();
    let mut lines = Vec::with_capacity(raw.len());
    for (i, line) in raw.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(value) => lines.push(Line { number: i + 1, value }),
            Err(_) if torn_tail && i + 1 == raw.len() => break,
            Err(e) => {
                return Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("not JSON: {e}"),
                });
            }
        }
    }
    Ok(lines)
}

/// The text of a content value that is either a string or a list of blocks with `text`
/// fields of the given block types (every format here uses one of the two shapes).
pub(crate) fn text_of(content: &Value, block_types: &[&str]) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"].as_str().is_some_and(|t| block_types.contains(&t)))
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
