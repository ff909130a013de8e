//! `ListTasks` (A2A 1.0 §3.1.4): naga's tasks, newest first, filtered by
//! context, state and status time; `pageToken` is an offset; artifacts only
//! when asked for; `totalSize` the number of tasks the filter selects.

use super::types::TaskPage;
use super::{internal, task_json_with, text, to_value, Rpc, RpcError, INVALID_PARAMS};
use naga_core::TaskStatus;
use naga_engine::rows::TaskFilter;
use naga_engine::Engine;
use serde_json::Value;

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 100;

fn invalid(why: String) -> RpcError {
    RpcError(INVALID_PARAMS, why)
}

/// An integer parameter: a JSON number, or its text (HTTP+JSON's query).
fn integer(params: &Value, key: &str) -> Rpc<Option<i64>> {
    let value = match &params[key] {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    value
        .map(Some)
        .ok_or_else(|| invalid(format!("`{key}` must be an integer")))
}

/// `historyLength`: at least 0 when given.
pub(super) fn history_length(params: &Value) -> Rpc<Option<usize>> {
    match integer(params, "historyLength")? {
        Some(n) if n < 0 => Err(invalid(format!(
            "`historyLength` must be 0 or more, not {n}"
        ))),
        other => Ok(other.map(|n| n as usize)),
    }
}

/// The naga statuses an A2A state names; `None` for a state naga's tasks
/// never take (they ask for no input and are never rejected).
fn statuses(state: &str) -> Rpc<Option<Vec<TaskStatus>>> {
    Ok(Some(match state {
        "TASK_STATE_SUBMITTED" => vec![TaskStatus::Queued],
        "TASK_STATE_WORKING" => vec![TaskStatus::Running],
        "TASK_STATE_COMPLETED" => vec![TaskStatus::Succeeded],
        "TASK_STATE_FAILED" => vec![TaskStatus::Failed, TaskStatus::TimedOut],
        "TASK_STATE_CANCELED" => vec![TaskStatus::Cancelled],
        "TASK_STATE_INPUT_REQUIRED" | "TASK_STATE_REJECTED" | "TASK_STATE_AUTH_REQUIRED" => {
            return Ok(None)
        }
        other => return Err(invalid(format!("unknown task state `{other}`"))),
    }))
}

/// The filter a request's parameters make (its page left unset); `None`
/// when it can select nothing.
fn filter_of(params: &Value) -> Rpc<Option<TaskFilter>> {
    let mut filter = TaskFilter {
        session_id: text(&params["contextId"]).map(str::to_owned),
        ..Default::default()
    };
    if let Some(state) = text(&params["status"]) {
        match statuses(state)? {
            Some(s) => filter.statuses = s,
            None => return Ok(None),
        }
    }
    if let Some(after) = text(&params["statusTimestampAfter"]) {
        let at = chrono::DateTime::parse_from_rfc3339(after)
            .map_err(|e| invalid(format!("`statusTimestampAfter` `{after}`: {e}")))?;
        filter.updated_after = Some(at.timestamp_millis());
    }
    Ok(Some(filter))
}

/// A boolean parameter: JSON's, or its text.
fn flag(params: &Value, key: &str) -> Rpc<bool> {
    match &params[key] {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
        _ => Err(invalid(format!("`{key}` must be true or false"))),
    }
}

pub(super) async fn list_tasks(engine: &Engine, params: &Value) -> Rpc<Value> {
    let page_size = integer(params, "pageSize")?.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&page_size) {
        return Err(invalid(format!(
            "`pageSize` is 1 to {MAX_PAGE}, not {page_size}"
        )));
    }
    let offset = match text(&params["pageToken"]) {
        None => 0,
        Some(t) => (t.parse::<i64>().ok().filter(|n| *n >= 0))
            .ok_or_else(|| invalid(format!("unknown pageToken `{t}`")))?,
    };
    let history = history_length(params)?;
    let artifacts = flag(params, "includeArtifacts")?;
    let Some(mut filter) = filter_of(params)? else {
        return Ok(page(Vec::new(), String::new(), page_size, 0));
    };
    let reads = engine.reads();
    let total = reads.count_tasks(&filter).await.map_err(internal)?;
    (filter.limit, filter.offset) = (page_size, offset);
    let rows = reads.tasks(&filter).await.map_err(internal)?;
    let mut tasks = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut task = task_json_with(engine, row, history).await?;
        if !artifacts {
            task.as_object_mut().map(|t| t.remove("artifacts"));
        }
        tasks.push(task);
    }
    let next = offset + rows.len() as i64;
    let next = match next < total {
        true => next.to_string(),
        false => String::new(),
    };
    Ok(page(tasks, next, page_size, total))
}

/// A page of tasks, as `ListTasks` answers it.
fn page(tasks: Vec<Value>, next_page_token: String, page_size: i64, total_size: i64) -> Value {
    let page = TaskPage {
        tasks,
        next_page_token,
        page_size,
        total_size,
    };
    to_value(page)
}
