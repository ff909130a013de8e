//! MCP Tasks as protocol 2025-11-25 had them (experimental, before the
//! extension), for clients still on it: `tools/call` with `params.task`
//! answers `{"task"}`, and `tasks/get`, `tasks/result` (waits for the end),
//! `tasks/list` and `tasks/cancel` in that version's shapes. rmcp's server
//! speaks the 2026-07-28 extension only, so these requests are answered
//! here, in front of it, from the same store (`Gateway`), and `initialize`
//! of a 2025-11-25 client is told the `tasks` capability. Everything else
//! goes to rmcp.

use crate::{
    gateway::{Gateway, McpService},
    jsonrpc,
};
use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};
use naga_engine::rows::TaskFilter;
use rmcp::model::{TaskPayload, TaskStatus as McpTaskStatus};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The protocol version of the experimental dialect.
pub const VERSION: &str = "2025-11-25";

/// The `tasks` capability told to a 2025-11-25 client.
fn capability() -> Value {
    json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}})
}

/// `/mcp`: the dialect's requests answered here, the rest by rmcp.
pub async fn serve(gateway: Gateway, service: McpService, request: Request) -> Response {
    if request.method() != Method::POST {
        return forward(service, request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::MAX_BODY_BYTES).await else {
        let too_large = jsonrpc::Invalid {
            id: Value::Null,
            code: jsonrpc::INVALID_REQUEST,
            message: "an MCP message is at most 1 MiB".into(),
        };
        return too_large.answer(StatusCode::PAYLOAD_TOO_LARGE);
    };
    // Nothing that is not a JSON-RPC message reaches rmcp (which would
    // answer it in plain text).
    let (id, method, params) = match jsonrpc::parse(&bytes) {
        Ok(jsonrpc::Message::Request { id, method, params }) => (id, method, params),
        Ok(_) => return forward(service, Request::from_parts(parts, Body::from(bytes))).await,
        Err(invalid) => return invalid.answer(StatusCode::BAD_REQUEST),
    };
    let params = &params;
    // A 2026-07-28 request says its version in `_meta`; one of 2025-11-25
    // in the header (after `initialize`).
    let modern = params["_meta"]
        .get("io.modelcontextprotocol/protocolVersion")
        .is_some();
    let legacy = !modern
        && parts
            .headers
            .get("mcp-protocol-version")
            .is_some_and(|v| v.as_bytes() == VERSION.as_bytes());
    let answer = match method.as_str() {
        "initialize" if params["protocolVersion"] == VERSION => {
            let response = forward(service, Request::from_parts(parts, Body::from(bytes))).await;
            return patched(response, |result| {
                if let Some(c) = result["capabilities"].as_object_mut() {
                    c.insert("tasks".into(), capability());
                }
            })
            .await;
        }
        // Each tool may run as a task (the version's `execution.taskSupport`).
        "tools/list" if legacy => {
            let response = forward(service, Request::from_parts(parts, Body::from(bytes))).await;
            return patched(response, |result| {
                for tool in result["tools"].as_array_mut().into_iter().flatten() {
                    tool["execution"] = json!({"taskSupport": "optional"});
                }
            })
            .await;
        }
        "tools/call" if legacy && params.get("task").is_some() => {
            call_as_task(&gateway, params, &parts.headers).await
        }
        "tasks/get" if legacy => task(&gateway, params).await,
        "tasks/result" if legacy => result(&gateway, params).await,
        "tasks/cancel" if legacy => cancel(&gateway, params).await,
        "tasks/list" if legacy => list(&gateway, params).await,
        _ => return forward(service, Request::from_parts(parts, Body::from(bytes))).await,
    };
    let answer = answer.map_err(|(code, message)| json!({"code": code, "message": message}));
    jsonrpc::answer(StatusCode::OK, &id, answer)
}

async fn forward(service: McpService, request: Request) -> Response {
    match service.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

/// rmcp's answer with what 2025-11-25 adds to it (rmcp's types have no
/// field for it): `patch` changes its `result`. The answer is one JSON-RPC
/// message, as JSON or as the data of a server-sent event.
async fn patched(response: Response, patch: impl Fn(&mut Value)) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::MAX_BODY_BYTES).await else {
        return (parts.status, "").into_response();
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let patch_json = |json: &str| -> Option<String> {
        let mut v: Value = serde_json::from_str(json).ok()?;
        v.get_mut("result").map(&patch)?;
        Some(v.to_string())
    };
    let patched = match text.trim_start().starts_with('{') {
        true => patch_json(&text),
        false => {
            let lines: Vec<String> = text
                .lines()
                .map(|l| match l.strip_prefix("data:") {
                    Some(d) if d.contains("\"result\"") => {
                        format!(
                            "data: {}",
                            patch_json(d.trim()).unwrap_or_else(|| d.to_owned())
                        )
                    }
                    _ => l.to_owned(),
                })
                .collect();
            Some(lines.join("\n") + "\n")
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(patched.unwrap_or(text)))
}

type Answer = Result<Value, (i64, String)>;

fn mcp_error(e: rmcp::ErrorData) -> (i64, String) {
    (i64::from(e.code.0), e.message.to_string())
}

/// 2025-11-25 answers a task id it does not know with -32602 (invalid
/// params), where the Tasks extension says -32002 (resource not found).
fn unknown_task(e: rmcp::ErrorData) -> (i64, String) {
    match mcp_error(e) {
        (-32002, message) => (-32602, message),
        other => other,
    }
}

fn task_id(params: &Value) -> Result<&str, (i64, String)> {
    params["taskId"]
        .as_str()
        .ok_or((-32602, "`taskId` is required".to_owned()))
}

/// A task in 2025-11-25's shape.
async fn shape(gateway: &Gateway, id: &str) -> Result<(Value, TaskPayload), (i64, String)> {
    let detailed = gateway.detailed(id).await.map_err(unknown_task)?;
    let task = &detailed.task;
    let status = match detailed.status() {
        McpTaskStatus::Working => "working",
        McpTaskStatus::Completed => "completed",
        McpTaskStatus::Cancelled => "cancelled",
        _ => "failed",
    };
    let mut v = json!({"taskId": task.task_id, "status": status, "createdAt": task.created_at,
        "lastUpdatedAt": task.last_updated_at, "ttl": Value::Null,
        "pollInterval": task.poll_interval_ms});
    if let Some(m) = &task.status_message {
        v["statusMessage"] = json!(m);
    }
    if let TaskPayload::Failed { error } = &detailed.payload {
        v["statusMessage"] = error["message"].clone();
    }
    Ok((v, detailed.payload))
}

async fn call_as_task(gateway: &Gateway, params: &Value, headers: &HeaderMap) -> Answer {
    let name = params["name"].as_str().unwrap_or_default();
    let args = params["arguments"].as_object().cloned().unwrap_or_default();
    let (kind, call, session) = gateway.call_of(name, args).await.map_err(mcp_error)?;
    let session = session.or_else(|| {
        headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(|s| format!("mcp-{s}"))
    });
    let id = gateway
        .schedule(kind, &call, session, name)
        .await
        .map_err(mcp_error)?;
    tracing::info!(task_id = %id, tool = %name, "MCP (2025-11-25) tools/call accepted as a task");
    Ok(json!({"task": shape(gateway, &id).await?.0}))
}

async fn task(gateway: &Gateway, params: &Value) -> Answer {
    Ok(shape(gateway, task_id(params)?).await?.0)
}

/// `tasks/result`: the call's result once the task ended (waits for it).
async fn result(gateway: &Gateway, params: &Value) -> Answer {
    let id = task_id(params)?;
    gateway
        .engine()
        .task_ended(id)
        .await
        .map_err(|e| (-32603, e.to_string()))?;
    let (_, payload) = shape(gateway, id).await?;
    let related = json!({"io.modelcontextprotocol/related-task": {"taskId": id}});
    let mut result = match payload {
        TaskPayload::Completed { result } => Value::Object(result),
        TaskPayload::Failed { error } => json!({"isError": true,
            "content": [{"type": "text", "text": error["message"]}]}),
        _ => json!({"isError": true,
            "content": [{"type": "text", "text": format!("task {id} was cancelled")}]}),
    };
    result["_meta"] = related;
    Ok(result)
}

async fn cancel(gateway: &Gateway, params: &Value) -> Answer {
    let id = task_id(params)?;
    match gateway.engine().scheduler().cancel(id).await {
        Ok(_) => {}
        Err(naga_engine::EngineError::NotFound(m)) => return Err((-32602, m)),
        Err(naga_engine::EngineError::Conflict(m)) => return Err((-32602, m)),
        Err(e) => return Err((-32603, e.to_string())),
    }
    Ok(shape(gateway, id).await?.0)
}

/// `tasks/list`: naga's tasks, newest first; the cursor is an offset.
async fn list(gateway: &Gateway, params: &Value) -> Answer {
    const PAGE: i64 = 100;
    let offset = params["cursor"]
        .as_str()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| (-32602, format!("unknown cursor `{c}`")))
        })
        .transpose()?
        .unwrap_or(0);
    let filter = TaskFilter {
        limit: PAGE + 1,
        offset,
        ..Default::default()
    };
    let rows = gateway
        .engine()
        .reads()
        .tasks(&filter)
        .await
        .map_err(|e| (-32603, e.to_string()))?;
    let mut tasks = Vec::new();
    for row in rows.iter().take(PAGE as usize) {
        tasks.push(shape(gateway, &row.id).await?.0);
    }
    let mut answer = json!({"tasks": tasks});
    if rows.len() as i64 > PAGE {
        answer["nextCursor"] = json!((offset + PAGE).to_string());
    }
    Ok(answer)
}
