//! A2A's HTTP+JSON binding (`/a2a/rest`): the same operations as the
//! JSON-RPC one, the protocol's JSON as bodies, errors as `google.rpc.Status`
//! with A2A's reason.

use super::types::{RestError, RestErrorBody};
use super::{
    accept, cancel_task, error_info, error_kind, find, get_task, json_names, list_tasks,
    push::{create_push_config, delete_push_config, get_push_config, list_push_configs},
    send_message, stream, subscribable, Rpc, RpcError, INVALID_PARAMS, METHOD_NOT_FOUND,
};
use crate::{extract::Json, state::AgentState};
use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use serde_json::{json, Map, Value};

/// An error of the HTTP+JSON binding.
pub(super) fn rest_error(RpcError(code, message): RpcError) -> Response {
    let (status, name, reason) = error_kind(code);
    let body = RestError {
        error: RestErrorBody {
            code: status.as_u16(),
            status: name,
            message,
            details: [error_info(reason)],
        },
    };
    (status, axum::Json(body)).into_response()
}

fn rest(answer: Rpc<Value>) -> Response {
    match answer {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => rest_error(e),
    }
}

/// `POST /a2a/rest/message:send`.
#[utoipa::path(post, path = "/a2a/rest/message:send", tag = "a2a",
    request_body(content = Object, description = "A2A's SendMessageRequest"),
    responses((status = 200, description = "A2A's SendMessageResponse (the task)", body = Object)))]
pub async fn rest_send(State(state): State<AgentState>, Json(body): Json<Value>) -> Response {
    rest(send_message(&state.engine, &json_names(body)).await)
}

/// `POST /a2a/rest/message:stream`: server-sent `StreamResponse`s.
#[utoipa::path(post, path = "/a2a/rest/message:stream", tag = "a2a",
    request_body(content = Object, description = "A2A's SendMessageRequest"),
    responses((status = 200, description = "Server-sent StreamResponses, to the task's end",
        body = String, content_type = "text/event-stream")))]
pub async fn rest_stream(State(state): State<AgentState>, Json(body): Json<Value>) -> Response {
    match accept(&state.engine, &json_names(body)).await {
        Ok(task_id) => stream(state.engine.clone(), None, task_id),
        Err(e) => rest_error(e),
    }
}

/// `GET /a2a/rest/tasks?contextId=&pageSize=&pageToken=`.
#[utoipa::path(get, path = "/a2a/rest/tasks", tag = "a2a",
    params(("contextId" = Option<String>, Query), ("pageSize" = Option<i64>, Query),
        ("pageToken" = Option<String>, Query)),
    responses((status = 200, description = "A2A's ListTasksResponse", body = Object)))]
pub async fn rest_list(
    State(state): State<AgentState>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    // (Numbers and flags come as text: ListTasks reads them so.)
    let params: Map<String, Value> = query.into_iter().map(|(k, v)| (k, json!(v))).collect();
    rest(list_tasks(&state.engine, &json_names(Value::Object(params))).await)
}

/// `GET /a2a/rest/tasks/{id}` (the task) and `GET /a2a/rest/tasks/{id}:subscribe`
/// (server-sent `StreamResponse`s to its end).
#[utoipa::path(get, path = "/a2a/rest/tasks/{id}", tag = "a2a", params(("id" = String, Path)),
    responses((status = 200, description = "A2A's Task (`{id}:subscribe`: server-sent \
        StreamResponses)", body = Object)))]
pub async fn rest_task(State(state): State<AgentState>, Path(id): Path<String>) -> Response {
    let engine = &state.engine;
    match id.strip_suffix(":subscribe") {
        Some(task_id) => subscribe(engine, task_id).await,
        None => rest(get_task(engine, &json!({"id": id})).await),
    }
}

/// Server-sent `StreamResponse`s of a task to its end; one that ended is
/// UnsupportedOperationError.
async fn subscribe(engine: &naga_engine::Engine, task_id: &str) -> Response {
    match find(engine, task_id).await.and_then(|t| subscribable(&t)) {
        Ok(()) => stream(engine.clone(), None, task_id.to_owned()),
        Err(e) => rest_error(e),
    }
}

/// `POST /a2a/rest/tasks/{id}:cancel`, and `POST …/{id}:subscribe` (A2A 1.0
/// §11.3.2; `GET` is taken too).
#[utoipa::path(post, path = "/a2a/rest/tasks/{id}", tag = "a2a", params(("id" = String, Path)),
    responses((status = 200, description = "A2A's Task, cancelled (`{id}:cancel`), or \
        server-sent StreamResponses (`{id}:subscribe`)", body = Object)))]
pub async fn rest_cancel(State(state): State<AgentState>, Path(id): Path<String>) -> Response {
    if let Some(task_id) = id.strip_suffix(":subscribe") {
        return subscribe(&state.engine, task_id).await;
    }
    match id.strip_suffix(":cancel") {
        Some(task_id) => rest(cancel_task(&state.engine, &json!({"id": task_id})).await),
        None => rest_error(RpcError(
            METHOD_NOT_FOUND,
            format!("no operation on `{id}`"),
        )),
    }
}

/// `GET /a2a/rest/tasks/{id}/pushNotificationConfigs`.
#[utoipa::path(get, path = "/a2a/rest/tasks/{id}/pushNotificationConfigs", tag = "a2a",
    params(("id" = String, Path)),
    responses((status = 200, description = "A2A's ListTaskPushNotificationConfigsResponse",
        body = Object)))]
pub async fn rest_push_configs(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Response {
    rest(list_push_configs(&state.engine, &json!({"taskId": id})).await)
}

/// `POST /a2a/rest/tasks/{id}/pushNotificationConfigs`: the body a
/// `TaskPushNotificationConfig` (its task the path's).
#[utoipa::path(post, path = "/a2a/rest/tasks/{id}/pushNotificationConfigs", tag = "a2a",
    params(("id" = String, Path)), request_body = Object,
    responses((status = 200, description = "A2A's TaskPushNotificationConfig, as kept",
        body = Object)))]
pub async fn rest_create_push_config(
    State(state): State<AgentState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut params = json_names(body);
    if !params.is_object() {
        return rest_error(RpcError(
            INVALID_PARAMS,
            "the body is a TaskPushNotificationConfig object".into(),
        ));
    }
    params["taskId"] = json!(id);
    rest(create_push_config(&state.engine, &params).await)
}

/// `GET /a2a/rest/tasks/{id}/pushNotificationConfigs/{config}`.
#[utoipa::path(get, path = "/a2a/rest/tasks/{id}/pushNotificationConfigs/{config}", tag = "a2a",
    params(("id" = String, Path), ("config" = String, Path)),
    responses((status = 200, description = "A2A's TaskPushNotificationConfig", body = Object)))]
pub async fn rest_push_config(
    State(state): State<AgentState>,
    Path((id, config)): Path<(String, String)>,
) -> Response {
    rest(get_push_config(&state.engine, &json!({"taskId": id, "id": config})).await)
}

/// `DELETE /a2a/rest/tasks/{id}/pushNotificationConfigs/{config}`: `{}`.
#[utoipa::path(delete, path = "/a2a/rest/tasks/{id}/pushNotificationConfigs/{config}",
    tag = "a2a", params(("id" = String, Path), ("config" = String, Path)),
    responses((status = 200, description = "Deleted (also when there was none)", body = Object)))]
pub async fn rest_delete_push_config(
    State(state): State<AgentState>,
    Path((id, config)): Path<(String, String)>,
) -> Response {
    rest(delete_push_config(&state.engine, &json!({"taskId": id, "id": config})).await)
}
