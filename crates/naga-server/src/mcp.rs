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
use naga_engine::{Engine, Outcome};
use serde_json::{json, Value};

pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/health", get(crate::health::mcp))
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

/// `GET /tasks[?status=&session_id=]`: MCP tasks, newest first.
async fn list(
    State(engine): State<Engine>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let mut filter = q.filter()?;
    filter.kind = Some(TaskKind::Mcp.as_str());
    Ok(axum::Json(tasks::tasks_json(&engine, &filter).await?))
}

/// `GET /tasks/{id}`: the task as the agent server shows it, with
/// upstream's MCP fields beside: `id`, `tool_calls`, `result` (`{success,
/// results, message}` once it ended, else null) and `message`.
async fn get_one(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let task = tasks::find_task(&engine, &id).await?;
    let mut v = tasks::task_json(&engine, &task).await?;
    let calls: Vec<Value> = v["calls"]
        .as_array()
        .map(|c| c.iter().map(|c| c["call"].clone()).collect())
        .unwrap_or_default();
    let ended = !matches!(task.status.as_str(), "queued" | "running");
    let message = match (&task.error, ended) {
        (Some(e), _) => format!("{}: {e}", task.status),
        (None, true) => format!("{}: {} calls", task.status, calls.len()),
        (None, false) => "任务已加入调度队列".to_owned(),
    };
    let results: Vec<Value> = v["calls"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["result"].clone())
                .filter(|r| !r.is_null())
                .collect()
        })
        .unwrap_or_default();
    v["id"] = json!(task.id);
    v["tool_calls"] = json!(calls);
    v["result"] = match ended {
        true => {
            json!({"success": task.status == "succeeded", "results": results, "message": message})
        }
        false => Value::Null,
    };
    v["message"] = json!(message);
    Ok(axum::Json(v))
}

/// `DELETE /tasks/{id}`: as the agent server's cancel, but a task that
/// already ended is a 400, as upstream's MCP server answers it.
async fn cancel(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    match tasks::cancel(State(engine), Path(id)).await {
        Err(ApiError::Client { status, detail, .. }) if status == StatusCode::CONFLICT => {
            Err(ApiError::bad_request("already_ended", detail))
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
    let [total, active, completed, failed] =
        engine.store().task_counts(TaskKind::Mcp.as_str()).await?;
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
