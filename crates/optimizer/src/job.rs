//! The job a mined group of tasks asks for, in one sentence written by the teacher.
//!
//! Mining names a job by its most central task ("What's a 15% tip on a 48 euro bill?"): one
//! instance, with its numbers. A skill needs the job itself ("Work out a restaurant tip as a
//! percentage of the bill, rounded up to the next whole euro"): its name and description come
//! from it, and retrieval finds the skill by it. The teacher sees the group's tasks with the
//! answers the user accepted or the corrections they made, so a rule the user applies but
//! never states (the rounding) can reach the sentence.

use agent_logs::{Episode, OutcomeKind};
use skill_core::{Teacher, Usage};

/// Tasks shown to the teacher: enough to see what varies between them.
const MAX_TASKS_SHOWN: usize = 8;
/// Characters of a task or answer shown.
const MAX_SHOWN_CHARS: usize = 300;
/// The sentence's bounds: a job in words, not a word or a page.
const MIN_WORDS: usize = 3;
const MAX_WORDS: usize = 40;
const MAX_CHARS: usize = 240;
const MAX_TOKENS: u32 = 96;

/// The teacher's sentence, or why it was not used, and what the request cost.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSentence {
    /// The sentence, when the answer was usable.
    pub sentence: Option<String>,
    /// Why the answer was not used (the caller keeps the central task).
    pub unusable: Option<String>,
    /// Tokens of the request.
    pub usage: Usage,
}

/// The request's text: the tasks (with what the user settled) and what to write.
pub fn job_prompt(episodes: &[&Episode]) -> String {
    let clip = |t: &str| -> String {
        let one: String = t.split_whitespace().collect::<Vec<_>>().join(" ");
        match one.char_indices().nth(MAX_SHOWN_CHARS) {
            Some((at, _)) => format!("{}...", &one[..at]),
            None => one,
        }
    };
    let mut shown = String::new();
    for e in episodes.iter().take(MAX_TASKS_SHOWN) {
        shown.push_str(&format!("- request: {}\n", clip(&e.task)));
        match (e.outcome.kind, &e.outcome.correction, &e.answer) {
            (OutcomeKind::Failure, Some(correction), _) => {
                shown.push_str(&format!("  the user corrected the answer: {}\n", clip(correction)))
            }
            (OutcomeKind::Success, _, Some(answer)) => {
                shown.push_str(&format!("  the user accepted: {}\n", clip(answer)))
            }
            _ => {}
        }
    }
    format!(
        "A user asked their AI agents for the same job on different days, in different words:\n\n{shown}\n\
         Write that job as one sentence that could open the description of a skill for it: start with a verb, \
         say what is done and to what, and name none of the values that change from one request to the next \
         (numbers, names, dates). Where the answers the user accepted or the corrections they made follow a \
         rule the requests do not state (rounding, a unit, a format), include the rule. Reply with the \
         sentence alone."
    )
}

/// Reads the sentence out of the teacher's reply: its first non-empty line, without list
/// marks, quotes or a `Job:` label; `Err` says why the reply is not one.
pub fn read_sentence(reply: &str) -> Result<String, String> {
    let line = reply.lines().map(str::trim).find(|l| !l.is_empty()).ok_or("the reply is empty")?;
    let wrapping = |c: char| matches!(c, '"' | '\'' | '`' | '*' | '_' | '“' | '”');
    let mut s = line.trim_start_matches(['-', '>', '#', ' ']).trim_matches(wrapping).trim();
    for label in ["job:", "sentence:", "description:"] {
        if s.get(..label.len()).is_some_and(|head| head.eq_ignore_ascii_case(label)) {
            s = s[label.len()..].trim();
        }
    }
    let s = s.trim_matches(wrapping).trim();
    let words = s.split_whitespace().count();
    if !(MIN_WORDS..=MAX_WORDS).contains(&words) || s.chars().count() > MAX_CHARS {
        return Err(format!("not one sentence of {MIN_WORDS}-{MAX_WORDS} words: {:?}", crate::clip(s, 80)));
    }
    Ok(s.to_string())
}

/// Asks the teacher for the job of `episodes` (one mined group). A teacher that cannot be
/// reached is an error; an answer that is not one sentence is reported in
/// [`JobSentence::unusable`] with its cost, and the caller keeps the central task.
pub async fn describe_job(
    teacher: &dyn Teacher,
    episodes: &[&Episode],
    timeout: std::time::Duration,
) -> crate::Result<JobSentence> {
    let request = crate::teacher_io::teacher_request(job_prompt(episodes), MAX_TOKENS, timeout);
    let completion = teacher.complete(&request).await?;
    let (sentence, unusable) = match read_sentence(&completion.text) {
        Ok(s) => (Some(s), None),
        Err(why) => (None, Some(why)),
    };
    Ok(JobSentence { sentence, unusable, usage: completion.usage })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settled_episode as episode;

    #[test]
    fn the_prompt_shows_each_task_with_what_the_user_settled() {
        let episodes = [
            episode("What's a 15% tip on a 48 euro bill?", OutcomeKind::Success, Some("8 euros"), None),
            episode("Tip for €23 at 10%?", OutcomeKind::Failure, Some("2.30"), Some("no, round it up: 3")),
            episode("Tip on 64 EUR at 20%?", OutcomeKind::Unknown, Some("12.80"), None),
        ];
        let refs: Vec<&Episode> = episodes.iter().collect();
        let prompt = job_prompt(&refs);
        assert!(prompt.contains("- request: What's a 15% tip on a 48 euro bill?\n  the user accepted: 8 euros\n"));
        assert!(
            prompt.contains("- request: Tip for €23 at 10%?\n  the user corrected the answer: no, round it up: 3\n")
        );
        assert!(prompt.contains("- request: Tip on 64 EUR at 20%?\n\nWrite that job"), "{prompt}");
        assert!(!prompt.contains("12.80"), "an unsettled answer is no evidence of the rule");
    }

    #[test]
    fn a_sentence_is_read_from_the_first_line_without_its_label() {
        assert_eq!(
            read_sentence("\n\"Job: Work out a restaurant tip from the bill and a percentage.\"\nExtra line")
                .as_deref(),
            Ok("Work out a restaurant tip from the bill and a percentage.")
        );
        assert_eq!(
            read_sentence("- **Convert kilometres to metres.**").as_deref(),
            Ok("Convert kilometres to metres.")
        );
        assert!(read_sentence("Tip.").expect_err("one word").contains("3-40 words"));
        assert!(read_sentence("  \n ").expect_err("blank").contains("empty"));
        assert!(read_sentence(&"word ".repeat(41)).is_err());
    }
}
