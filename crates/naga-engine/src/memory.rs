//! Task memory: the deterministic summary written when a task ends (an LLM
//! summary replaces it when one is configured). Summaries never delete the
//! steps they summarise.

use crate::agents::CallOutcome;
use naga_core::ids::concat;
use naga_core::TaskStatus;
use serde::Serialize;
use serde_json::{json, Value};

pub const DETERMINISTIC: &str = "deterministic";
pub const LLM: &str = "llm";

/// Asks the LLM for the seed's four memory fields from a task's
/// deterministic summary and steps; `None` when its answer has no such
/// JSON object (the deterministic summary stays).
pub async fn compress_with_llm(
    llm: &crate::llm::LlmClient,
    summary: &Summary,
    steps: &[String],
) -> Option<Value> {
    use crate::llm::ChatMessage;
    let prompt = vec![
        ChatMessage::new("system", include_str!("../prompts/compress.md")),
        ChatMessage::new(
            "user",
            format!(
                "任务摘要：{}\n步骤：\n{}",
                summary.to_json(),
                steps.join("\n")
            ),
        ),
    ];
    let answer = match llm.chat(&prompt).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "LLM memory compression failed; the deterministic summary stays");
            return None;
        }
    };
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    let mut v: Value = serde_json::from_str(answer.get(start..=end)?).ok()?;
    let fields = [
        "key_findings",
        "failed_attempts",
        "current_status",
        "next_steps",
    ];
    if !fields.iter().all(|f| v.get(f).is_some()) {
        return None;
    }
    v["method"] = json!(LLM);
    Some(v)
}

/// One finished (or skipped) call, as the summary sees it.
pub struct CallSummary<'a> {
    pub command: &'a str,
    pub outcome: Option<&'a CallOutcome>,
}

/// The seed's memory fields, computed from the calls alone; labelled
/// `deterministic`. (Members in alphabetical order, as they were printed
/// when this was a JSON map.)
#[derive(Debug, Serialize)]
pub struct Summary {
    pub current_status: String,
    pub failed_attempts: Vec<String>,
    pub key_findings: Vec<String>,
    pub method: &'static str,
    pub next_steps: Vec<String>,
}

impl Summary {
    pub fn to_json(&self) -> String {
        naga_core::wire::json_text(self, 256)
    }
}

/// A task's deterministic summary.
pub fn summarize(status: TaskStatus, error: Option<&str>, calls: &[CallSummary<'_>]) -> Summary {
    let mut key_findings = Vec::new();
    let mut failed_attempts = Vec::new();
    let mut next_steps = Vec::new();
    let mut done = 0;
    for c in calls {
        match c.outcome {
            Some(o) if o.success => {
                done += 1;
                let text = o.text().unwrap_or_default();
                key_findings.push(concat(&[&*clip(c.command), " → ", &*clip(&text)]));
            }
            Some(o) => {
                let e = o.error.as_deref().unwrap_or("failed");
                failed_attempts.push(concat(&[&*clip(c.command), " → ", &*clip(e)]));
                next_steps.push(concat(&["fix the cause, then retry: ", &*clip(c.command)]));
            }
            None => next_steps.push(concat(&["not run: ", &*clip(c.command)])),
        }
    }
    let (mut done_text, mut all_text) = (itoa::Buffer::new(), itoa::Buffer::new());
    let mut current_status = concat(&[
        status.as_str(),
        ": ",
        done_text.format(done),
        " of ",
        all_text.format(calls.len()),
        " calls succeeded",
    ]);
    // A failed batch's error only repeats the counts; other reasons
    // (cancelled, timed out) say something new.
    if let Some(e) = error.filter(|_| status != TaskStatus::Failed) {
        for part in [" (", e, ")"] {
            current_status.push_str(part);
        }
    }
    Summary {
        current_status,
        failed_attempts,
        key_findings,
        method: DETERMINISTIC,
        next_steps,
    }
}

/// A summary names a call by its command and says what came of it, each in
/// at most 200 characters: the whole instruction and result are in the
/// task's calls and steps (a 0.9 MB instruction made a 0.9 MB summary).
pub(crate) fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= 200 {
        return s.into();
    }
    naga_core::ids::clip(s, 200).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_findings_failures_and_what_is_left() {
        let ok = CallOutcome::ok("opened");
        let bad = CallOutcome::failed("no display");
        let s = summarize(
            TaskStatus::Failed,
            None,
            &[
                CallSummary {
                    command: "open editor",
                    outcome: Some(&ok),
                },
                CallSummary {
                    command: "type text",
                    outcome: Some(&bad),
                },
                CallSummary {
                    command: "save",
                    outcome: None,
                },
            ],
        );
        let s: Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(s["method"], "deterministic");
        assert_eq!(s["key_findings"], json!(["open editor → opened"]));
        assert_eq!(s["failed_attempts"], json!(["type text → no display"]));
        assert_eq!(s["current_status"], "failed: 1 of 3 calls succeeded");
        assert_eq!(
            s["next_steps"],
            json!(["fix the cause, then retry: type text", "not run: save"])
        );
    }

    /// A 0.9 MB instruction made a 0.9 MB summary (its command whole).
    #[test]
    fn a_summary_names_a_long_call_in_a_few_words() {
        let command = format!("echo: {}", "x".repeat(900_000));
        let ok = CallOutcome::ok("y".repeat(900_000));
        let s = summarize(
            TaskStatus::Succeeded,
            None,
            &[CallSummary {
                command: &command,
                outcome: Some(&ok),
            }],
        )
        .to_json();
        assert!(s.len() < 1_000, "a summary of {} bytes", s.len());
        assert!(s.contains("echo: xxx"), "{s}");
    }
}
