//! What a user's next message says about the agent's last answer.
//!
//! The patterns are deliberately narrow: a message is read as a verdict only when it opens
//! with one ("no, that's wrong", "thanks!") or holds an unmistakable one ("still broken",
//! "you missed the header"); anything else is a new message, so a new task that happens to
//! contain "no" is not counted as a complaint.

use regex::Regex;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// A user's message, read as a verdict on what came before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A correction or complaint: the last answer was wrong.
    Correction,
    /// Thanks or acceptance.
    Acceptance,
    /// Neither: a new task, or more of the same one.
    None,
}

fn correction() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            r"(?i)^\s*(no|nope|wrong|incorrect|not quite|not right|that'?s (not|wrong|incorrect)|that is (not|wrong)|",
            r"this is (wrong|not)|it'?s wrong|revert|undo|roll ?back|try again|you (missed|forgot|broke|didn'?t)|",
            r"still (not|broken|wrong|failing|fails|doesn'?t))\b",
            r"|(?i)\b(still (broken|wrong|failing|fails|doesn'?t work|not working)|doesn'?t work|didn'?t work|",
            r"does not work|did not work|you missed|you forgot|you broke|not what i (asked|meant|wanted)|",
            r"please revert|revert (it|that|this|the)|roll (it|that|this) back)\b",
        ))
        .expect("valid regex")
    })
}

fn acceptance() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            r"(?i)^\s*(thanks|thank you|thx|ty|perfect|great|awesome|excellent|looks good|lgtm|nice|",
            r"works|that works|it works|exactly|correct|good job|well done|ok,? (great|thanks|perfect))\b",
        ))
        .expect("valid regex")
    })
}

/// Reads a message as a verdict on the answer before it.
pub fn verdict(message: &str) -> Verdict {
    if correction().is_match(message) {
        Verdict::Correction
    } else if acceptance().is_match(message) {
        Verdict::Acceptance
    } else {
        Verdict::None
    }
}

/// The content words of a text (lowercased, three letters or more).
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() >= 3).map(str::to_lowercase).collect()
}

/// Whether `message` asks again for what `task` asked (most of their content words shared):
/// a re-ask says the first answer did not do.
pub fn is_reask(task: &str, message: &str) -> bool {
    let (a, b) = (words(task), words(message));
    if a.len() < 3 || b.len() < 3 {
        return a == b && !a.is_empty();
    }
    let shared = a.intersection(&b).count() as f64;
    shared / a.union(&b).count() as f64 >= 0.6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        for m in [
            "no, that's wrong",
            "Nope.",
            "still broken",
            "It still doesn't work after that",
            "revert it please",
            "You missed the header row",
            "that's not what I asked",
        ] {
            assert_eq!(verdict(m), Verdict::Correction, "{m}");
        }
        for m in ["thanks!", "Perfect, that works", "LGTM", "great"] {
            assert_eq!(verdict(m), Verdict::Acceptance, "{m}");
        }
        for m in ["Draft the weekly update for the team", "Is there no way to sort this?", "knowledge of greatness"] {
            assert_eq!(verdict(m), Verdict::None, "{m}");
        }
    }

    #[test]
    fn reasks() {
        assert!(is_reask("Sum the amounts in expenses.csv", "sum the amounts in expenses.csv please"));
        assert!(!is_reask("Sum the amounts in expenses.csv", "Draft the weekly update"));
    }
}
