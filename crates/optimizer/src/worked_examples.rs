//! The worked-examples section the distiller writes into a skill: input / verified answer
//! pairs, closed by an end marker so a student's answer holding `## ` lines stays inside.

/// (input, solution) pairs, as shown in a skill.
pub type ExamplePairs = Vec<(String, String)>;

/// The heading of the section [`with_worked_examples`] writes.
pub const WORKED_EXAMPLES_HEADING: &str = "## Worked examples";

/// The line that closes the section [`with_worked_examples`] writes.
pub const WORKED_EXAMPLES_END: &str = "<!-- end of worked examples -->";

/// `markdown` without its worked-examples section (ending with one newline).
pub fn without_worked_examples(markdown: &str) -> String {
    // The section ends at its end marker (a student's answer may hold `## ` lines of its
    // own), or, written by hand without one, at the next `## ` heading.
    let has_marker = markdown.contains(WORKED_EXAMPLES_END);
    let mut kept = String::new();
    let mut skipping = false;
    for line in markdown.lines() {
        if line.trim_end() == WORKED_EXAMPLES_HEADING {
            skipping = true;
            continue;
        }
        if skipping {
            if line.trim_end() == WORKED_EXAMPLES_END {
                skipping = false;
                continue;
            }
            if !has_marker && line.starts_with("## ") {
                skipping = false;
            }
        }
        if !skipping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    format!("{}\n", kept.trim_end())
}

/// An input as [`worked_examples_in`] reads it back: trimmed, lines joined with `\n`.
pub(crate) fn as_shown(input: &str) -> String {
    input.trim().lines().collect::<Vec<_>>().join("\n")
}

/// The (input, solution) pairs of the worked-examples section [`with_worked_examples`]
/// wrote into `markdown`, trimmed; empty without one.
pub fn worked_examples_in(markdown: &str) -> ExamplePairs {
    let Some(start) = markdown.lines().position(|l| l.trim_end() == WORKED_EXAMPLES_HEADING) else {
        return Vec::new();
    };
    // Like `without_worked_examples`: the end marker, or in a section written by hand without
    // one, the next `## ` heading.
    let has_marker = markdown.contains(WORKED_EXAMPLES_END);
    let section: Vec<&str> = markdown
        .lines()
        .skip(start + 1)
        .take_while(|l| l.trim_end() != WORKED_EXAMPLES_END && (has_marker || !l.starts_with("## ")))
        .collect();
    let section = format!("\n{}\n", section.join("\n"));
    let example_start = regex::Regex::new(r"\n### Example \d+\n\nInput:\n").expect("a valid pattern");
    example_start
        .split(&section)
        .skip(1)
        .filter_map(|example| {
            let (input, solution) = example.split_once("\n\nSolution:\n")?;
            Some((input.trim().to_string(), solution.trim().to_string()))
        })
        .collect()
}

/// `markdown` with its worked-examples section replaced by (or, when it has none, followed
/// by) one example per (input, verified answer) pair.
pub fn with_worked_examples(markdown: &str, examples: &[(&str, &str)]) -> String {
    let mut out = format!(
        "{}\n{WORKED_EXAMPLES_HEADING}\n\nThese inputs were solved correctly with this skill.\n",
        without_worked_examples(markdown)
    );
    for (i, (input, answer)) in examples.iter().enumerate() {
        out.push_str(&format!("\n### Example {}\n\nInput:\n{}\n\nSolution:\n{}\n", i + 1, input.trim(), answer.trim()));
    }
    out.push_str(WORKED_EXAMPLES_END);
    out.push('\n');
    out
}
