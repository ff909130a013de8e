//! The MCP server (default 127.0.0.1:8003): DESIGN.md's MCP section. The
//! same scheduler, store and outbox as the agent server; MCP tool calls.

use crate::{
    agent::tasks::{self, ListQuery},
    error::ApiResult,
    extract::{Json, Path, Query},
    ApiError,
};
use axum::http::StatusCode;
use axum::{
    extract::State,
    routing::{get, post},
    Router,
};
use naga_core::wire::{McpScheduleRequest, TaskKind};
use naga_core::TaskStatus;
use naga_engine::{Engine, Outcome};
use serde_json::{json, Value};

pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/health", get(crate::health::mcp))
        .route("/metrics", get(crate::health::metrics))
        .route("/ready", get(crate::health::ready))
        .route("/schedule", post(schedule))
        .route("/status", get(status))
        .route("/tasks", get(list))
        .route("/tasks/{id}", get(get_one).delete(cancel))
        .route("/tools", get(tools))
        .with_state(engine)
}

/// `POST /schedule` with `tool_calls`. A repeated request id answers the
/// first answer with `"idempotent": true`; an identical active batch
/// answers its task with `"duplicate": true`.
async fn schedule(
    State(engine): State<Engine>,
    Json(req): Json<McpScheduleRequest>,
) -> ApiResult<axum::Json<Value>> {
    let scheduled = engine.schedule_mcp(req).await?;
    let mut v: Value = serde_json::from_str(&scheduled.response).map_err(anyhow::Error::from)?;
    match scheduled.outcome {
        Outcome::Repeated => v["idempotent"] = json!(true),
        Outcome::Duplicate => v["duplicate"] = json!(true),
        Outcome::Created | Outcome::NoTasks => {}
    }
    Ok(axum::Json(v))
}

/// `GET /tasks[?status=&session_id=]`: MCP tasks, newest first, each with
/// upstream's fields beside naga's (see [`upstream_fields`]).
async fn list(
    State(engine): State<Engine>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let mut filter = q.filter()?;
    filter.kind = Some(TaskKind::Mcp);
    let rows = engine.reads().tasks(&filter).await?;
    let mut tasks = Vec::with_capacity(rows.len());
    for task in &rows {
        let calls = engine.reads().calls(&task.id).await?;
        let mut v = crate::views::task(task);
        let calls: Vec<Value> = calls.iter().map(crate::views::call).collect();
        upstream_fields(&mut v, task, &calls);
        tasks.push(v);
    }
    Ok(axum::Json(
        json!({"success": true, "count": tasks.len(), "tasks": tasks}),
    ))
}

/// `GET /tasks/{id}`: the task as the agent server shows it, with
/// upstream's MCP fields beside (see [`upstream_fields`]).
async fn get_one(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let task = tasks::find_task(&engine, &id).await?;
    let mut v = tasks::task_json(&engine, &task).await?;
    let calls = v["calls"].as_array().cloned().unwrap_or_default();
    upstream_fields(&mut v, &task, &calls);
    Ok(axum::Json(v))
}

/// Upstream's MCP task fields, from the task and its calls (as
/// `views::call` shows them): `id`, `tool_calls`, `result` (`{success,
/// results, message}` once it ended, else null), `success` and `message`.
fn upstream_fields(v: &mut Value, task: &naga_store::TaskRow, calls: &[Value]) {
    let tool_calls: Vec<Value> = calls.iter().map(|c| c["call"].clone()).collect();
    let ended = task.status.is_terminal();
    let message = match (&task.error, ended) {
        (Some(e), _) => format!("{}: {e}", task.status),
        (None, true) => format!("{}: {} calls", task.status, tool_calls.len()),
        (None, false) => "任务已加入调度队列".to_owned(),
    };
    let results: Vec<Value> = calls
        .iter()
        .map(|c| c["result"].clone())
        .filter(|r| !r.is_null())
        .collect();
    let failed = ended && task.status != TaskStatus::Succeeded;
    v["id"] = json!(task.id);
    v["tool_calls"] = json!(tool_calls);
    v["result"] = match ended {
        true => json!({"success": !failed, "results": results, "message": message}),
        false => Value::Null,
    };
    v["success"] = json!(!failed);
    v["message"] = json!(message);
}

/// `DELETE /tasks/{id}`: as the agent server's cancel; a task that already
/// ended answers 200 with a message, as upstream's (whose registry never
/// marks a task ended) does, and `cancelled: false`.
async fn cancel(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    match tasks::cancel(State(engine.clone()), Path(id.clone())).await {
        Err(ApiError::Client { status, .. }) if status == StatusCode::CONFLICT => {
            let task = tasks::find_task(&engine, &id).await?;
            Ok(axum::Json(json!({"success": true, "cancelled": false,
                "message": format!("任务已结束 ({})，无需取消", task.status),
                "task_id": id, "status": task.status})))
        }
        other => other,
    }
}

/// `GET /tools`: every tool of every configured MCP server.
async fn tools(State(engine): State<Engine>) -> axum::Json<Value> {
    let (tools, errors) = engine.mcp().tools().await;
    axum::Json(
        json!({"success": true, "count": tools.len(), "tools": tools, "unavailable": errors}),
    )
}

/// `GET /status`: the servers and the queue; upstream's `server`,
/// `timestamp`, `tasks` (counts) and `scheduler` beside.
async fn status(State(engine): State<Engine>) -> ApiResult<axum::Json<Value>> {
    let held = engine.scheduler().held(TaskKind::Mcp);
    let [total, active, completed, failed] = engine.reads().task_counts(TaskKind::Mcp).await?;
    let workers = engine.config().scheduler.workers;
    Ok(axum::Json(json!({
        "success": true,
        "status": "running",
        "server": "running",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "tasks": {"total": total, "active": active, "completed": completed, "failed": failed},
        "scheduler": {"active_tasks": held, "completed_tasks": completed + failed,
                      "queue_size": held, "max_concurrent": workers, "workers": workers},
        "servers": engine.mcp().status().await,
        "queue": {"held": held, "max_queued": engine.config().mcp.max_queued},
    })))
}
