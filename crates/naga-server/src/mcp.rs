//! The MCP server (default 127.0.0.1:8003): DESIGN.md's MCP section. The
//! same scheduler, store and outbox as the agent server; MCP tool calls.

use crate::{
    agent::tasks::{self, ListQuery},
    error::ApiResult,
    extract::{Json, Query},
};
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
        .route("/tasks/{id}", get(tasks::get_one).delete(tasks::cancel))
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

/// `GET /tools`: every tool of every configured MCP server.
async fn tools(State(engine): State<Engine>) -> axum::Json<Value> {
    let (tools, errors) = engine.mcp().tools().await;
    axum::Json(
        json!({"success": true, "count": tools.len(), "tools": tools, "unavailable": errors}),
    )
}

/// `GET /status`: the servers and the queue.
async fn status(State(engine): State<Engine>) -> axum::Json<Value> {
    axum::Json(json!({
        "success": true,
        "status": "running",
        "servers": engine.mcp().status().await,
        "queue": {"held": engine.scheduler().held(TaskKind::Mcp),
                  "max_queued": engine.config().mcp.max_queued},
    }))
}
