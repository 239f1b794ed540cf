//! Splitting a markdown note into sections at its headings.
//!
//! Each chunk is one section: from a heading to the next heading of any level, with the path
//! of headings above it (`Deploy > Rollback > Database`). Text before the first heading is a
//! chunk of its own with an empty heading path. Very long sections are cut at blank lines so
//! a hit points at a readable range. Headings are found by a CommonMark parser, so a `#` line
//! inside a code fence is not a heading.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

/// Sections longer than this (in bytes) are split at blank lines.
pub const MAX_CHUNK_BYTES: usize = 4_000;

/// One section of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Headings from the top of the note down to this section.
    pub heading_path: Vec<String>,
    /// First line, 1-based.
    pub line_start: usize,
    /// Last line, 1-based, inclusive.
    pub line_end: usize,
    /// The section's text, heading line included.
    pub text: String,
}

/// A note split into chunks, with its title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedNote {
    /// The first level-1 heading, or the file name without extension.
    pub title: String,
    /// Sections in file order.
    pub chunks: Vec<Chunk>,
}

struct Heading {
    level: usize,
    text: String,
    start: usize,
}

/// Splits `text` at headings. `fallback_title` is used when the note has no `# Title`.
pub fn chunk_markdown(text: &str, fallback_title: &str) -> ChunkedNote {
    let headings = find_headings(text);
    let title =
        headings.iter().find(|h| h.level == 1).map(|h| h.text.clone()).unwrap_or_else(|| fallback_title.to_string());
    let line_starts = line_starts(text);
    let line_of = |offset: usize| line_starts.partition_point(|&s| s <= offset);

    let mut chunks = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut boundaries: Vec<(usize, Vec<String>)> = Vec::new();
    if headings.first().is_none_or(|h| h.start > 0) {
        boundaries.push((0, Vec::new()));
    }
    for h in &headings {
        while stack.last().is_some_and(|(level, _)| *level >= h.level) {
            stack.pop();
        }
        stack.push((h.level, h.text.clone()));
        boundaries.push((h.start, stack.iter().map(|(_, t)| t.clone()).collect()));
    }
    for (i, (start, path)) in boundaries.iter().enumerate() {
        let end = boundaries.get(i + 1).map(|b| b.0).unwrap_or(text.len());
        let section = &text[*start..end];
        // A heading with no text of its own (directly followed by a subheading) is not a
        // chunk: its title still reaches every subsection through the heading path.
        let own_text =
            if path.is_empty() { section } else { section.split_once('\n').map(|(_, rest)| rest).unwrap_or("") };
        if own_text.trim().is_empty() {
            continue;
        }
        for (piece_start, piece) in split_long(section, MAX_CHUNK_BYTES) {
            let abs_start = start + piece_start;
            let trimmed_end = abs_start + piece.trim_end().len();
            chunks.push(Chunk {
                heading_path: path.clone(),
                line_start: line_of(abs_start),
                line_end: line_of(trimmed_end.saturating_sub(1).max(abs_start)),
                text: piece.trim_end().to_string(),
            });
        }
    }
    ChunkedNote { title, chunks }
}

fn find_headings(text: &str) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut current: Option<Heading> = None;
    for (event, range) in Parser::new(text).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                current = Some(Heading { level: heading_level(level), text: String::new(), start: range.start });
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(mut h) = current.take() {
                    h.text = h.text.trim().to_string();
                    // The heading's range starts at its line for ATX and setext headings alike.
                    h.start = text[..h.start].rfind('\n').map(|i| i + 1).unwrap_or(0);
                    out.push(h);
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = current.as_mut() {
                    h.text.push_str(&t);
                }
            }
            _ => {}
        }
    }
    out
}

fn heading_level(level: HeadingLevel) -> usize {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

/// Splits a section into pieces of at most about `max` bytes at blank lines (a single
/// paragraph longer than `max` stays whole). Returns (byte offset in section, piece).
fn split_long(section: &str, max: usize) -> Vec<(usize, &str)> {
    if section.len() <= max {
        return vec![(0, section)];
    }
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    let mut last_break = None;
    let mut search_from = 0;
    while let Some(rel) = section[search_from..].find("\n\n") {
        let brk = search_from + rel + 2;
        if brk - piece_start > max
            && let Some(b) = last_break
            && b > piece_start
        {
            pieces.push((piece_start, &section[piece_start..b]));
            piece_start = b;
        }
        last_break = Some(brk);
        search_from = brk;
    }
    if section.len() - piece_start > max
        && let Some(b) = last_break
        && b > piece_start
    {
        pieces.push((piece_start, &section[piece_start..b]));
        piece_start = b;
    }
    pieces.push((piece_start, &section[piece_start..]));
    pieces.retain(|(_, p)| !p.trim().is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_at_headings_with_paths_and_lines() {
        let text = "intro line\n\n# Deploy\n\nsteps\n\n## Rollback\n\nundo it\n\n```sh\n# not a heading\n```\n\n# Other\ntext\n";
        let note = chunk_markdown(text, "file");
        assert_eq!(note.title, "Deploy");
        let summary: Vec<_> =
            note.chunks.iter().map(|c| (c.heading_path.join(" > "), c.line_start, c.line_end)).collect();
        assert_eq!(
            summary,
            vec![
                ("".to_string(), 1, 1),
                ("Deploy".to_string(), 3, 5),
                ("Deploy > Rollback".to_string(), 7, 13),
                ("Other".to_string(), 15, 16),
            ]
        );
        assert!(note.chunks[2].text.contains("# not a heading"));
    }

    #[test]
    fn setext_headings_and_fallback_title() {
        let note = chunk_markdown("Setup\n-----\nbody\n", "my-note");
        assert!(chunk_markdown("# Only a title\n", "x").chunks.is_empty());
        let nested = chunk_markdown("# Top\n## Sub\ntext\n", "x");
        assert_eq!(nested.chunks.len(), 1);
        assert_eq!(nested.chunks[0].heading_path, vec!["Top", "Sub"]);
        assert_eq!(note.title, "my-note");
        assert_eq!(note.chunks.len(), 1);
        assert_eq!(note.chunks[0].heading_path, vec!["Setup"]);
        assert_eq!((note.chunks[0].line_start, note.chunks[0].line_end), (1, 3));
    }

    #[test]
    fn long_sections_split_at_blank_lines() {
        let para = "word ".repeat(200);
        let text = format!("# Big\n\n{}", (0..10).map(|_| para.clone()).collect::<Vec<_>>().join("\n\n"));
        let note = chunk_markdown(&text, "x");
        assert!(note.chunks.len() > 1, "{}", note.chunks.len());
        assert!(note.chunks.iter().all(|c| c.heading_path == vec!["Big"]));
        assert!(note.chunks.iter().all(|c| c.text.len() <= MAX_CHUNK_BYTES + para.len()));
        // ranges are contiguous and ordered
        for w in note.chunks.windows(2) {
            assert!(w[0].line_end < w[1].line_start);
        }
        assert_eq!(note.chunks.last().map(|c| c.line_end), Some(text.lines().count()));
    }

    #[test]
    fn empty_and_whitespace_notes_have_no_chunks() {
        assert!(chunk_markdown("", "x").chunks.is_empty());
        assert!(chunk_markdown("\n\n  \n", "x").chunks.is_empty());
    }
}
