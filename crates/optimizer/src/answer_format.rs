//! The short-answer format of quiz-shaped suites (BIG-Bench Hard and the suites the
//! distiller drafts): the instruction every configuration is given, and the pattern that
//! reads the answer back.

/// The answer format every configuration is asked for, so that with or without a skill the
/// student is graded on the same question.
pub const ANSWER_INSTRUCTIONS: &str = "Think step by step and write out each step of your work. Then finish with one \
line: \"So the answer is X.\" where X is the answer alone.";

/// Picks the text after the last "the answer is".
pub const ANSWER_PATTERN: &str = r"(?im)answer is[:\s]*\**\s*(.+?)\**\s*\.?\s*$";
