use crate::{
    error::ApiResult,
    extract::{Json, Path, Query},
    upstream, views, ApiError,
};
use axum::extract::State;
use naga_core::{wire::TaskKind, TaskStatus};
use naga_engine::Engine;
use naga_store::{NewStep, TaskFilter, TaskRow};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
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
        })
    }
}

/// `limit` of a listing: 1..=1000, default 100.
pub fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    match limit.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        n => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and 1000, not {n}"),
        )),
    }
}

pub async fn tasks_json(engine: &Engine, filter: &TaskFilter) -> ApiResult<Value> {
    let tasks: Vec<Value> = engine
        .reads()
        .tasks(filter)
        .await?
        .iter()
        .map(views::task)
        .collect();
    Ok(json!({"success": true, "count": tasks.len(), "tasks": tasks}))
}

/// `GET /tasks[?session_id=&status=&kind=&limit=&offset=]`, newest first;
/// with upstream's `running_tasks` (its running tasks, in its shape) and
/// `session_id`.
pub async fn list(
    State(engine): State<Engine>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let filter = q.filter()?;
    let mut v = tasks_json(&engine, &filter).await?;
    let running = TaskFilter {
        session_id: filter.session_id.clone(),
        status: Some(TaskStatus::Running),
        limit: 1000,
        ..Default::default()
    };
    let running: Vec<Value> = engine
        .reads()
        .tasks(&running)
        .await?
        .iter()
        .map(upstream::task)
        .collect();
    v["running_tasks"] = json!(running);
    v["session_id"] = json!(q.session_id);
    Ok(axum::Json(v))
}

pub async fn find_task(engine: &Engine, id: &str) -> ApiResult<TaskRow> {
    engine
        .reads()
        .task(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no task `{id}`")))
}

/// `GET /tasks/{id}`: the task with its calls and steps.
pub async fn get_one(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let task = find_task(&engine, &id).await?;
    Ok(axum::Json(task_json(&engine, &task).await?))
}

/// A task with its calls and steps, and upstream's `task` beside.
pub async fn task_json(engine: &Engine, task: &TaskRow) -> ApiResult<Value> {
    let id = &task.id;
    // A task whose stored calls cannot be read back (it was quarantined)
    // is still shown, with the reason in place of its calls.
    let (calls, calls_error) = match engine.reads().calls(id).await {
        Ok(calls) => (calls, None),
        Err(naga_store::StoreError::Corrupt(e)) => (Vec::new(), Some(e)),
        Err(e) => return Err(e.into()),
    };
    let steps = engine.reads().steps(id).await?;
    let mut v = views::task(task);
    v["success"] = json!(true);
    v["task"] = upstream::task(task);
    v["calls"] = calls.iter().map(views::call).collect();
    if let Some(e) = calls_error {
        v["calls_error"] = json!(e);
    }
    v["steps"] = steps.iter().map(views::step).collect();
    Ok(v)
}

/// `GET /tasks/{id}/steps`.
pub async fn steps(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    find_task(&engine, &id).await?;
    let steps: Vec<Value> = engine
        .reads()
        .steps(&id)
        .await?
        .iter()
        .map(views::step)
        .collect();
    Ok(axum::Json(
        json!({"success": true, "task_id": id, "count": steps.len(), "steps": steps}),
    ))
}

/// `POST /tasks/{id}/cancel` and `DELETE /tasks/{id}`.
pub async fn cancel(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let status = engine.scheduler().cancel(&id).await?;
    Ok(axum::Json(
        json!({"success": true, "task_id": id, "status": status,
        "message": format!("task {id} is {status}")}),
    ))
}

#[derive(Deserialize)]
pub struct StepRequest {
    purpose: Option<String>,
    content: Option<String>,
    output: Option<String>,
    analysis: Option<String>,
    #[serde(default = "yes")]
    success: bool,
    error: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /tasks/{id}/steps`: records a step reported by a client.
pub async fn add_step(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Json(req): Json<StepRequest>,
) -> ApiResult<axum::Json<Value>> {
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
    Ok(axum::Json(
        json!({"success": true, "message": "步骤添加成功", "step_id": step.step_no.to_string(),
               "step": views::step(&step)}),
    ))
}
