//! The MCP server (default 127.0.0.1:8003): docs/design.md's MCP section. The
//! same scheduler, store and outbox as the agent server; MCP tool calls.

use crate::{
    agent::tasks::{self, Cancelled, ListQuery, TaskDetail},
    error::ApiResult,
    extract::{Json, Path, Query},
    views, ApiError,
};
use axum::http::StatusCode;
use axum::{extract::State, Router};
use naga_core::wire::{McpScheduleRequest, ScheduleResponse, TaskKind};
use naga_core::TaskStatus;
use naga_engine::{Engine, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router(engine: Engine) -> Router {
    let (router, _) = routes().split_for_parts();
    router.with_state(engine)
}

/// Every route of the MCP server, with its OpenAPI description.
pub fn routes() -> OpenApiRouter<Engine> {
    OpenApiRouter::new()
        .routes(routes!(crate::health::mcp))
        .routes(routes!(crate::health::metrics))
        .routes(routes!(crate::health::ready))
        .routes(routes!(openapi))
        .routes(routes!(schedule))
        .routes(routes!(status))
        .routes(routes!(list))
        .routes(routes!(get_one, cancel))
        .routes(routes!(tools))
}

/// `GET /openapi.json`: this server's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", body = Object)))]
async fn openapi() -> axum::response::Response {
    static DOC: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| crate::openapi::document(routes(), "naga MCP server"));
    crate::openapi::serve(&DOC)
}

/// The MCP server's answer to `/schedule`: the agent server's, with
/// upstream's `request_id` and `result` (null: the batch runs later).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct McpScheduled {
    #[serde(flatten)]
    pub response: ScheduleResponse,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default)]
    pub result: Option<Value>,
    /// A repeated `request_id`: this is the first answer again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    /// An identical batch is still active: this is its task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

/// `POST /schedule` with `tool_calls`. A repeated request id answers the
/// first answer with `"idempotent": true`; an identical active batch
/// answers its task with `"duplicate": true`.
#[utoipa::path(post, path = "/schedule", tag = "schedule", request_body = McpScheduleRequest,
    responses((status = 200, description = "Committed; runs later", body = McpScheduled),
        (status = 429, description = "Too many batches held", body = naga_core::wire::ErrorBody)))]
async fn schedule(
    State(engine): State<Engine>,
    Json(req): Json<McpScheduleRequest>,
) -> ApiResult<axum::Json<McpScheduled>> {
    let scheduled = engine.schedule_mcp(req).await?;
    let mut answer: McpScheduled =
        serde_json::from_str(&scheduled.response).map_err(anyhow::Error::from)?;
    match scheduled.outcome {
        Outcome::Repeated => answer.idempotent = Some(true),
        Outcome::Duplicate => answer.duplicate = Some(true),
        Outcome::Created | Outcome::NoTasks => {}
    }
    Ok(axum::Json(answer))
}

/// Upstream's MCP task fields, read off the task and its calls.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpFields {
    pub id: String,
    /// The calls as sent.
    pub tool_calls: Vec<Value>,
    /// Once the task ended; null before.
    pub result: Option<McpResult>,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct McpResult {
    pub success: bool,
    pub results: Vec<Value>,
    pub message: String,
}

/// An MCP task: naga's view, upstream's fields beside.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpTask {
    #[serde(flatten)]
    pub task: views::Task,
    /// False once the task ended other than `succeeded`.
    pub success: bool,
    #[serde(flatten)]
    pub mcp: McpFields,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct McpTaskList {
    pub success: bool,
    pub count: usize,
    pub tasks: Vec<McpTask>,
}

/// `GET /tasks[?status=&session_id=]`: MCP tasks, newest first, each with
/// upstream's fields beside naga's (see [`upstream_fields`]).
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, description = "MCP tasks, newest first", body = McpTaskList)))]
async fn list(
    State(engine): State<Engine>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<McpTaskList>> {
    let mut filter = q.filter()?;
    filter.kind = Some(TaskKind::Mcp);
    let rows = engine.reads().tasks(&filter).await?;
    let mut tasks = Vec::with_capacity(rows.len());
    for task in &rows {
        let calls: Vec<views::Call> = views::all(&engine.reads().calls(&task.id).await?);
        let (success, mcp) = upstream_fields(task, &calls);
        tasks.push(McpTask {
            task: task.into(),
            success,
            mcp,
        });
    }
    Ok(axum::Json(McpTaskList {
        success: true,
        count: tasks.len(),
        tasks,
    }))
}

/// An MCP task with its calls and steps, upstream's fields beside.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpTaskDetail {
    #[serde(flatten)]
    pub detail: TaskDetail,
    #[serde(flatten)]
    pub mcp: McpFields,
}

/// `GET /tasks/{id}`: the task as the agent server shows it, with
/// upstream's MCP fields beside (see [`upstream_fields`]).
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, description = "The task", body = McpTaskDetail)))]
async fn get_one(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<McpTaskDetail>> {
    let task = tasks::find_task(&engine, &id).await?;
    let mut detail = tasks::task_detail(&engine, &task).await?;
    let (success, mcp) = upstream_fields(&task, &detail.calls);
    detail.success = success;
    Ok(axum::Json(McpTaskDetail { detail, mcp }))
}

/// Upstream's MCP task fields, from the task and its calls: `id`,
/// `tool_calls`, `result` (`{success, results, message}` once it ended,
/// else null) and `message`; and its `success`.
fn upstream_fields(task: &naga_engine::rows::TaskRow, calls: &[views::Call]) -> (bool, McpFields) {
    let tool_calls: Vec<Value> = calls.iter().map(|c| c.call.clone()).collect();
    let ended = task.status.is_terminal();
    let message = match (&task.error, ended) {
        (Some(e), _) => format!("{}: {e}", task.status),
        (None, true) => format!("{}: {} calls", task.status, tool_calls.len()),
        (None, false) => "任务已加入调度队列".to_owned(),
    };
    let results = calls
        .iter()
        .filter_map(|c| c.result.clone())
        .filter(|r| !r.is_null())
        .collect();
    let failed = ended && task.status != TaskStatus::Succeeded;
    let result = ended.then(|| McpResult {
        success: !failed,
        results,
        message: message.clone(),
    });
    let fields = McpFields {
        id: task.id.clone(),
        tool_calls,
        result,
        message,
    };
    (!failed, fields)
}

/// `DELETE /tasks/{id}`: as the agent server's cancel; a task that already
/// ended answers 200 with a message, as upstream's (whose registry never
/// marks a task ended) does, and `cancelled: false`.
#[utoipa::path(delete, path = "/tasks/{id}", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, description = "Cancelled, or had already ended", body = Cancelled)))]
async fn cancel(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Cancelled>> {
    match tasks::cancel(State(engine.clone()), Path(id.clone())).await {
        Err(ApiError::Client { status, .. }) if status == StatusCode::CONFLICT => {
            let task = tasks::find_task(&engine, &id).await?;
            Ok(axum::Json(Cancelled {
                success: true,
                cancelled: Some(false),
                message: format!("任务已结束 ({})，无需取消", task.status),
                task_id: id,
                status: task.status,
            }))
        }
        other => other,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct McpToolList {
    pub success: bool,
    pub count: usize,
    /// `{service_name, name, description, input_schema}` of each tool.
    pub tools: Vec<Value>,
    /// The servers that could not be listed, and why.
    pub unavailable: Vec<Value>,
}

/// `GET /tools`: every tool of every configured MCP server.
#[utoipa::path(get, path = "/tools", tag = "tools",
    responses((status = 200, description = "Every tool of every MCP server", body = McpToolList)))]
async fn tools(State(engine): State<Engine>) -> axum::Json<McpToolList> {
    let (tools, unavailable) = engine.mcp().tools().await;
    axum::Json(McpToolList {
        success: true,
        count: tools.len(),
        tools,
        unavailable,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskCounts {
    pub total: i64,
    pub active: i64,
    pub completed: i64,
    pub failed: i64,
}

/// Upstream's scheduler figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerFigures {
    pub active_tasks: usize,
    pub completed_tasks: i64,
    pub queue_size: usize,
    pub max_concurrent: usize,
    pub workers: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Held {
    pub held: usize,
    pub max_queued: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct McpStatus {
    pub success: bool,
    pub status: &'static str,
    pub server: &'static str,
    pub timestamp: String,
    pub tasks: TaskCounts,
    pub scheduler: SchedulerFigures,
    /// Each configured MCP server and whether it is connected.
    pub servers: Vec<Value>,
    pub queue: Held,
}

/// `GET /status`: the servers and the queue; upstream's `server`,
/// `timestamp`, `tasks` (counts) and `scheduler` beside.
#[utoipa::path(get, path = "/status", tag = "operations",
    responses((status = 200, description = "The MCP servers and the queue", body = McpStatus)))]
async fn status(State(engine): State<Engine>) -> ApiResult<axum::Json<McpStatus>> {
    let held = engine.scheduler().held(TaskKind::Mcp);
    let [total, active, completed, failed] = engine.reads().task_counts(TaskKind::Mcp).await?;
    let workers = engine.config().scheduler.workers;
    Ok(axum::Json(McpStatus {
        success: true,
        status: "running",
        server: "running",
        timestamp: chrono::Utc::now().to_rfc3339(),
        tasks: TaskCounts {
            total,
            active,
            completed,
            failed,
        },
        scheduler: SchedulerFigures {
            active_tasks: held,
            completed_tasks: completed + failed,
            queue_size: held,
            max_concurrent: workers,
            workers,
        },
        servers: engine.mcp().status().await,
        queue: Held {
            held,
            max_queued: engine.config().mcp.max_queued,
        },
    }))
}
