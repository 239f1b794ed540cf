//! The teacher-judged rubric: pass or fail per criterion, each with its evidence.

use crate::suite::EvalCase;
use crate::{Error, Result};
use skill_core::{ChatMessage, CompletionRequest, Role, Teacher};
use teacher::ask_json;

#[derive(Debug, serde::Deserialize)]
struct Verdicts {
    criteria: Vec<Verdict>,
}

#[derive(Debug, serde::Deserialize)]
struct Verdict {
    passed: bool,
    evidence: String,
}

const JUDGE_SYSTEM: &str = "You grade answers strictly and fairly. For each criterion, decide whether the \
answer satisfies it, and give the evidence: a short quote from the answer, or what is missing. Reply with \
JSON only: {\"criteria\": [{\"criterion\": \"...\", \"passed\": true, \"evidence\": \"...\"}]}, one entry \
per criterion, in the order given.";

/// Asks `judge` to grade `output` on each criterion; passes only when all pass.
pub(crate) async fn judge(
    judge: &dyn Teacher,
    case: &EvalCase,
    output: &str,
    criteria: &[String],
) -> Result<(bool, String)> {
    let mut user = format!("## Task given to the model\n{}\n\n", case.prompt);
    if let Some(reference) = &case.expected_output {
        user.push_str(&format!("## Reference answer\n{reference}\n\n"));
    }
    user.push_str(&format!("## The model's answer\n{output}\n\n## Criteria\n"));
    for (i, c) in criteria.iter().enumerate() {
        user.push_str(&format!("{}. {c}\n", i + 1));
    }
    let mut request =
        CompletionRequest::new(vec![ChatMessage::new(Role::System, JUDGE_SYSTEM), ChatMessage::new(Role::User, user)]);
    request.max_tokens = 200 + 120 * criteria.len() as u32;
    let n = criteria.len();
    // A local judge decodes under this schema (an endpoint that ignores it is checked and
    // repaired by `ask_json` instead).
    request.json_schema = Some(serde_json::json!({
        "type": "object",
        "properties": {"criteria": {
            "type": "array", "minItems": n, "maxItems": n,
            "items": {
                "type": "object",
                "properties": {
                    "criterion": {"type": "string"},
                    "passed": {"type": "boolean"},
                    "evidence": {"type": "string", "minLength": 1}
                },
                "required": ["criterion", "passed", "evidence"]
            }
        }},
        "required": ["criteria"]
    }));
    let answer = ask_json(judge, &request, "rubric verdict", |v: &Verdicts| {
        if v.criteria.len() != n {
            return Err(format!("expected {n} verdicts, one per criterion, got {}", v.criteria.len()));
        }
        if v.criteria.iter().any(|c| c.evidence.trim().is_empty()) {
            return Err("every verdict needs evidence".into());
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::Grader { case: case.id.to_string(), message: format!("rubric: {e}") })?;
    let passed = answer.value.criteria.iter().all(|c| c.passed);
    let evidence = criteria
        .iter()
        .zip(&answer.value.criteria)
        .map(|(c, v)| format!("[{}] {c}: {}", if v.passed { "pass" } else { "fail" }, v.evidence.trim()))
        .collect::<Vec<_>>()
        .join("; ");
    Ok((passed, evidence))
}
