//! What `/schedule` answers: the first answer of a batch, stored and
//! rebuilt, in the agent or the MCP server's shape.

use naga_core::{
    time::{iso, Millis},
    wire::{ScheduleResponse, TaskKind},
};
use naga_store::FirstAnswer;
use serde_json::{json, Value};

/// The answer to an accepted batch: a function of what its task's row
/// keeps, so that a repeat is answered byte for byte from the row and the
/// row keeps no copy (a quarter of a task row, written to the WAL with
/// the task and again at its end).
pub(super) fn scheduled_answer(
    kind: TaskKind,
    task_id: &str,
    calls: usize,
    accepted_at: Millis,
    session_id: &str,
    analysis_session_id: Option<&str>,
) -> String {
    let response = ScheduleResponse {
        success: true,
        status: "scheduled".into(),
        task_id: Some(task_id.to_owned()),
        message: naga_core::ids::concat(&[
            "已调度 ",
            itoa::Buffer::new().format(calls),
            " 个",
            noun(kind),
        ]),
        accepted_at: iso(accepted_at),
        session_id: session_id.to_owned(),
        analysis_session_id: analysis_session_id.map(str::to_owned),
    };
    with_kind_fields(kind, task_id, &response)
}

/// The answer's JSON, with what upstream's MCP server adds to it.
pub(super) fn with_kind_fields(
    kind: TaskKind,
    request_id: &str,
    response: &ScheduleResponse,
) -> String {
    match kind {
        TaskKind::Agent => to_json(response),
        TaskKind::Mcp => {
            let mut v = serde_json::to_value(response).unwrap_or_default();
            v["request_id"] = json!(request_id);
            // Upstream's answer has a `result` (null: the batch runs later).
            v["result"] = Value::Null;
            v.to_string()
        }
    }
}

/// A known task's first answer: as stored (tasks accepted before answers
/// were rebuilt), else rebuilt from its row.
pub(super) fn first_answer(first: FirstAnswer) -> String {
    if !first.response.is_empty() {
        return first.response;
    }
    scheduled_answer(
        first.kind,
        &first.id,
        usize::try_from(first.calls_count).unwrap_or_default(),
        first.accepted_at,
        &first.session_id,
        first.analysis_session_id.as_deref(),
    )
}

/// What a batch's calls are called in its answers.
pub(super) fn noun(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Agent => "Agent任务",
        TaskKind::Mcp => "MCP工具调用",
    }
}

/// An answer's JSON (a `/schedule` answer is ~250 bytes).
pub(super) fn to_json<T: serde::Serialize>(v: &T) -> String {
    naga_core::wire::json_text(v, 320)
}
