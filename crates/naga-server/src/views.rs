//! JSON views of stored rows, as the HTTP APIs show them.

use naga_core::time::{iso, iso_opt};
use naga_store::*;
use serde_json::{json, Value};

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

pub fn task(t: &TaskRow) -> Value {
    json!({
        "task_id": t.id,
        "request_id": t.id,
        "kind": t.kind,
        "session_id": t.session_id,
        "analysis_session_id": t.analysis_session_id,
        "query": t.query,
        "status": t.status,
        "error": t.error,
        "policy": t.policy,
        "calls_count": t.calls_count,
        "steps_count": t.steps_count,
        "callback_url": t.callback_url,
        "accepted_at": iso(t.accepted_at),
        "created_at": iso(t.accepted_at),
        "started_at": iso_opt(t.started_at),
        "finished_at": iso_opt(t.finished_at),
        // The order in which the store accepted the task.
        "sequence": t.seq,
    })
}

pub fn call(c: &CallRow) -> Value {
    json!({
        "index": c.idx,
        "call": parse_json(&c.payload),
        "status": c.status,
        "result": c.result.as_deref().map(parse_json),
        "started_at": iso_opt(c.started_at),
        "finished_at": iso_opt(c.finished_at),
    })
}

pub fn step(s: &StepRow) -> Value {
    json!({
        "step_id": s.step_no,
        "task_id": s.task_id,
        "session_id": s.session_id,
        "call_index": s.call_idx,
        "purpose": s.purpose,
        "content": s.content,
        "output": s.output,
        "analysis": s.analysis,
        "success": s.success,
        "error": s.error,
        "created_at": iso(s.created_at),
    })
}

pub fn session(s: &SessionRow) -> Value {
    json!({
        "session_id": s.id,
        "created_at": iso(s.created_at),
        "last_activity_at": iso(s.last_activity_at),
        "task_count": s.task_count,
        "active_tasks": s.active_tasks,
        "analysis_sessions": s.analysis_sessions,
    })
}

pub fn key_fact(k: &KeyFactRow) -> Value {
    json!({"key": k.key, "value": k.value, "task_id": k.task_id,
           "session_id": k.session_id, "created_at": iso(k.created_at)})
}

pub fn failed_attempt(f: &FailedAttemptRow) -> Value {
    json!({"command": f.command, "count": f.count, "last_error": f.last_error,
           "last_task_id": f.last_task_id, "session_id": f.session_id,
           "updated_at": iso(f.updated_at)})
}

pub fn compressed(m: &CompressedMemoryRow) -> Value {
    json!({"id": m.id, "session_id": m.session_id, "task_id": m.task_id, "method": m.method,
           "summary": parse_json(&m.summary), "created_at": iso(m.created_at)})
}

pub fn callback(c: &CallbackRow) -> Value {
    json!({"id": c.id, "task_id": c.task_id, "url": c.url, "status": c.status,
           "attempts": c.attempts, "last_error": c.last_error, "sequence": c.seq,
           "created_at": iso(c.created_at), "next_attempt_at": iso(c.next_attempt_at),
           "delivered_at": iso_opt(c.delivered_at)})
}
