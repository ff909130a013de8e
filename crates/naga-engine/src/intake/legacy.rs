//! `POST /analyze_and_execute`, kept for compatibility: the instructions
//! of a conversation's messages run at once, answered when they end.

use super::Batch;
use crate::{Engine, EngineError};
use naga_core::{
    time::iso,
    wire::{CallPayload, RawCall, TaskKind},
    SessionId,
};
use serde_json::{json, Value};

impl Engine {
    /// The legacy synchronous `POST /analyze_and_execute`: user messages that
    /// contain `执行Agent任务:` carry an instruction after it; they run as one
    /// batch on `[agents] legacy_agent` and the answer waits for them.
    pub async fn analyze_and_execute(
        &self,
        messages: &[Value],
        session_id: Option<String>,
    ) -> Result<Value, EngineError> {
        let instructions: Vec<String> = messages
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .filter_map(legacy_instruction)
            .collect();
        let session_id = match session_id {
            Some(s) => SessionId::parse(s)
                .map_err(|e| EngineError::Invalid(e.to_string()))?
                .into_string(),
            None => format!("legacy_{}", uuid::Uuid::new_v4().simple()),
        };
        let accepted_at = iso(self.clock().now_ms());
        if instructions.is_empty() {
            return Ok(
                json!({"success": true, "status": "no_tasks", "message": "未发现可执行的电脑控制任务",
                "tasks_processed": 0, "results": [], "accepted_at": accepted_at, "session_id": session_id}),
            );
        }
        let agent = self.config().agents.legacy_agent.clone();
        let calls: Vec<RawCall> = instructions
            .iter()
            .map(|i| {
                let call = json!({"tool_name": agent, "service_name": "agent_server",
                                  "instruction": i, "agentType": "agent"});
                RawCall::from_payload(call.as_object().unwrap_or(&CallPayload::new()))
            })
            .collect();
        let scheduled = self
            .accept(Batch {
                kind: TaskKind::Agent,
                query: Some(format!("执行Agent任务 ({} 个)", calls.len())),
                calls,
                session_id: Some(session_id.clone()),
                analysis_session_id: None,
                request_id: None,
                callback_url: None,
                policy: None,
                fingerprint: None,
                push: false,
            })
            .await?;
        let task_id = scheduled.task_id.unwrap_or_default();
        self.task_ended(&task_id).await?;
        let calls = self.store().calls(&task_id).await?;
        let mut all_ok = true;
        let entries: Vec<Value> = calls
            .iter()
            .filter_map(|c| {
                let outcome: crate::agents::CallOutcome =
                    serde_json::from_str(c.result.as_deref()?).ok()?;
                all_ok &= outcome.success;
                let payload: CallPayload = serde_json::from_str(&c.payload).ok()?;
                let entry = self
                    .agent_executor()
                    .result_entry(c.idx as usize, &payload, &outcome);
                serde_json::from_str(entry.get()).ok()
            })
            .collect();
        // Upstream's `results` are each call's result ({success, result,
        // error, task_type, instruction}: `result` a string, what upstream's
        // agent returned, also when it failed; the instruction as the
        // object its analyzer made, `{"instruction"}`); naga's whole
        // entries are `calls`.
        let results: Vec<Value> = entries
            .iter()
            .map(|e| {
                let mut r = e["result"].clone();
                if let Some(r) = r.as_object_mut() {
                    let outcome = crate::agents::CallOutcome {
                        success: r["success"].as_bool().unwrap_or(false),
                        result: r.get("result").cloned(),
                        error: r.get("error").and_then(Value::as_str).map(str::to_owned),
                    };
                    r.insert("result".into(), outcome.upstream_text().into());
                    let text = r.get("instruction").cloned().unwrap_or(Value::Null);
                    r.insert("instruction".into(), json!({ "instruction": text }));
                }
                r
            })
            .collect();
        Ok(
            json!({"success": true, "status": "completed", "tasks_processed": results.len(),
            "results": results, "calls": entries,
            "all_succeeded": all_ok && entries.len() == instructions.len(),
            "accepted_at": accepted_at, "session_id": session_id, "task_id": task_id}),
        )
    }
}

/// The instruction after `执行Agent任务:` (or its full-width colon).
pub(super) fn legacy_instruction(content: &str) -> Option<String> {
    let marker = "执行Agent任务";
    let at = content.find(marker)? + marker.len();
    let rest = content[at..].trim_start();
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix('：'))?;
    let instruction = rest.trim();
    (!instruction.is_empty()).then(|| instruction.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_marker() {
        assert_eq!(
            legacy_instruction("请 执行Agent任务: 打开记事本").as_deref(),
            Some("打开记事本")
        );
        assert_eq!(
            legacy_instruction("执行Agent任务：输入文本 ").as_deref(),
            Some("输入文本")
        );
        assert_eq!(legacy_instruction("执行Agent任务:   "), None);
        assert_eq!(legacy_instruction("hello"), None);
    }
}
