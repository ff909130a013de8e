use crate::extract::page_limit;
use crate::{
    error::ApiResult,
    extract::{Json, Path, Query},
    upstream, views, ApiError,
};
use axum::extract::State;
use naga_core::{wire::TaskKind, TaskStatus};
use naga_engine::rows::{NewStep, TaskFilter, TaskRow};
use naga_engine::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Which tasks: `?session_id=&status=&kind=&limit=&offset=`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub session_id: Option<String>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl ListQuery {
    pub fn filter(&self) -> ApiResult<TaskFilter> {
        let status = match self.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<TaskStatus>()
                    .map_err(|e| ApiError::bad_request("invalid_status", e.to_string()))?,
            ),
        };
        let kind = match self.kind.as_deref() {
            None | Some("") => None,
            Some(k) => Some(TaskKind::try_from(k.to_owned()).map_err(|_| {
                ApiError::bad_request("invalid_kind", format!("unknown kind `{k}`: agent or mcp"))
            })?),
        };
        Ok(TaskFilter {
            session_id: self.session_id.clone(),
            status,
            kind,
            limit: page_limit(self.limit)?,
            offset: self.offset.unwrap_or(0).max(0),
            ..Default::default()
        })
    }
}

/// A page of tasks, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskList {
    pub success: bool,
    pub count: usize,
    pub tasks: Vec<views::Task>,
    /// Upstream's: the running tasks (of the session when one is named).
    pub running_tasks: Vec<upstream::Task>,
    pub session_id: Option<String>,
}

/// `GET /tasks[?session_id=&status=&kind=&limit=&offset=]`, newest first;
/// with upstream's `running_tasks` (its running tasks, in its shape) and
/// `session_id`.
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, description = "Tasks, newest first", body = TaskList)))]
pub async fn list(
    State(engine): State<Engine>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<TaskList>> {
    let filter = q.filter()?;
    let tasks = engine.reads().tasks(&filter).await?;
    let running = TaskFilter {
        session_id: filter.session_id.clone(),
        status: Some(TaskStatus::Running),
        limit: 1000,
        ..Default::default()
    };
    let running = engine.reads().tasks(&running).await?;
    Ok(axum::Json(TaskList {
        success: true,
        count: tasks.len(),
        tasks: views::all(&tasks),
        running_tasks: views::all(&running),
        session_id: q.session_id,
    }))
}

pub async fn find_task(engine: &Engine, id: &str) -> ApiResult<TaskRow> {
    engine
        .reads()
        .task(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no task `{id}`")))
}

/// A task with its calls and steps, and upstream's `task` beside.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDetail {
    pub success: bool,
    #[serde(flatten)]
    pub view: views::Task,
    #[serde(rename = "task")]
    pub upstream: upstream::Task,
    pub calls: Vec<views::Call>,
    /// Why the calls are not shown: their stored text could not be read
    /// back (the task was quarantined).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_error: Option<String>,
    pub steps: Vec<views::Step>,
}

/// `GET /tasks/{id}`: the task with its calls and steps.
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, description = "The task", body = TaskDetail)))]
pub async fn get_one(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TaskDetail>> {
    let task = find_task(&engine, &id).await?;
    Ok(axum::Json(task_detail(&engine, &task).await?))
}

pub async fn task_detail(engine: &Engine, task: &TaskRow) -> ApiResult<TaskDetail> {
    let id = &task.id;
    // A task whose stored calls cannot be read back (it was quarantined)
    // is still shown, with the reason in place of its calls.
    let (calls, calls_error) = match engine.reads().calls(id).await {
        Ok(calls) => (calls, None),
        Err(naga_engine::rows::StoreError::Corrupt(e)) => (Vec::new(), Some(e)),
        Err(e) => return Err(e.into()),
    };
    let steps = engine.reads().steps(id).await?;
    Ok(TaskDetail {
        success: true,
        view: task.into(),
        upstream: task.into(),
        calls: views::all(&calls),
        calls_error,
        steps: views::all(&steps),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepList {
    pub success: bool,
    pub task_id: String,
    pub count: usize,
    pub steps: Vec<views::Step>,
}

/// `GET /tasks/{id}/steps`.
#[utoipa::path(get, path = "/tasks/{id}/steps", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, description = "The task's steps, oldest first", body = StepList)))]
pub async fn steps(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<StepList>> {
    find_task(&engine, &id).await?;
    let steps = engine.reads().steps(&id).await?;
    Ok(axum::Json(StepList {
        success: true,
        task_id: id,
        count: steps.len(),
        steps: views::all(&steps),
    }))
}

/// What a cancel answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cancelled {
    pub success: bool,
    pub task_id: String,
    /// The task's status now.
    pub status: TaskStatus,
    pub message: String,
    /// The MCP server's: false when the task had already ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<bool>,
}

/// `DELETE /tasks/{id}`: stops a queued or running task (409 once it ended).
#[utoipa::path(delete, path = "/tasks/{id}", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, description = "Cancelled", body = Cancelled)))]
pub async fn cancel(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Cancelled>> {
    let status = engine.scheduler().cancel(&id).await?;
    Ok(axum::Json(Cancelled {
        success: true,
        message: format!("task {id} is {status}"),
        task_id: id,
        status,
        cancelled: None,
    }))
}

/// `POST /tasks/{id}/cancel`: as `DELETE /tasks/{id}`.
#[utoipa::path(post, path = "/tasks/{id}/cancel", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, description = "Cancelled", body = Cancelled)))]
pub async fn cancel_post(
    engine: State<Engine>,
    id: Path<String>,
) -> ApiResult<axum::Json<Cancelled>> {
    cancel(engine, id).await
}

#[derive(Deserialize, ToSchema)]
pub struct StepRequest {
    purpose: Option<String>,
    content: Option<String>,
    output: Option<String>,
    analysis: Option<String>,
    /// Default true.
    #[serde(default = "yes")]
    success: bool,
    error: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepAdded {
    pub success: bool,
    pub message: &'static str,
    /// The step's number, as text (upstream's).
    pub step_id: String,
    pub step: views::Step,
}

/// `POST /tasks/{id}/steps`: records a step reported by a client.
#[utoipa::path(post, path = "/tasks/{id}/steps", tag = "tasks", params(("id" = String, Path)),
    request_body = StepRequest,
    responses((status = 200, description = "Recorded", body = StepAdded)))]
pub async fn add_step(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Json(req): Json<StepRequest>,
) -> ApiResult<axum::Json<StepAdded>> {
    if req.purpose.is_none() && req.content.is_none() && req.output.is_none() {
        return Err(ApiError::bad_request(
            "empty_step",
            "a step needs at least one of `purpose`, `content`, `output`",
        ));
    }
    find_task(&engine, &id).await?;
    let step = engine
        .add_step(NewStep {
            task_id: id,
            call_idx: None,
            purpose: req.purpose,
            content: req.content,
            output: req.output,
            analysis: req.analysis,
            success: req.success,
            error: req.error,
            created_at: engine.clock().now_ms(),
        })
        .await?;
    Ok(axum::Json(StepAdded {
        success: true,
        message: "步骤添加成功",
        step_id: step.step_no.to_string(),
        step: views::Step::from(&step),
    }))
}
