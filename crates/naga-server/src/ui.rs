//! The API server's routes that NagaAgent's UI and scripts call beside
//! chat (upstream `apiserver/api_server.py`, b2cd671), in upstream's
//! shapes: system info, memory stats, the conversation log, and the
//! routes through which tool results and follow-ups reach the UI.

use crate::{
    error::ApiResult,
    extract::{Json, Query},
    state::ApiState,
    views::Removed,
    ApiError,
};
use axum::extract::State;
use naga_core::{time::iso, MessageKind, MessageRole, SessionId};
use naga_engine::rows::NewMessage;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemInfo {
    version: &'static str,
    status: &'static str,
    /// The services this process runs.
    available_services: Vec<&'static str>,
    api_key_configured: bool,
}

/// `GET /system/info`.
#[utoipa::path(get, path = "/system/info", tag = "operations",
    responses((status = 200, description = "What runs here", body = SystemInfo)))]
pub async fn system_info(State(s): State<ApiState>) -> axum::Json<SystemInfo> {
    let services = ["api_server", "agent_server", "mcp_server"]
        .into_iter()
        .zip(naga_core::config::Service::ALL)
        .filter(|(_, svc)| s.engine.config().runs(*svc))
        .map(|(name, _)| name)
        .collect();
    axum::Json(SystemInfo {
        version: env!("CARGO_PKG_VERSION"),
        status: "running",
        available_services: services,
        api_key_configured: s.assistant.llm_configured(),
    })
}

/// `GET /memory/stats`: upstream's knowledge-graph memory, which naga does
/// not have (its task memory is the agent server's `/memory/global`).
#[utoipa::path(get, path = "/memory/stats", tag = "operations",
    responses((status = 200, description = "What memory holds", body = MemoryStats)))]
pub async fn memory_stats(State(s): State<ApiState>) -> ApiResult<axum::Json<MemoryStats>> {
    let counts = s.engine.reads().counts().await?;
    Ok(axum::Json(MemoryStats {
        status: "success",
        memory_stats: MemoryFigures {
            enabled: false,
            message:
                "naga has no knowledge-graph memory; task memory: the agent server's /memory/global",
            tasks: counts.tasks,
            steps: counts.steps,
            sessions: counts.sessions,
        },
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryStats {
    status: &'static str,
    memory_stats: MemoryFigures,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryFigures {
    /// Knowledge-graph memory: never, here.
    enabled: bool,
    message: &'static str,
    tasks: i64,
    steps: i64,
    sessions: i64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Days {
    /// How many days back.
    days: Option<i64>,
    /// `/logs/context/load`: at most this many (1..=10000, default 1000).
    max_messages: Option<i64>,
}

fn since(engine: &naga_engine::Engine, days: i64) -> i64 {
    engine.clock().now_ms() - days.clamp(0, 36_500) * DAY_MS
}

/// `GET /logs/context/statistics?days=7`: the conversations' messages of
/// the last `days` days (upstream counts its daily log files as files).
#[utoipa::path(get, path = "/logs/context/statistics", tag = "chat", params(Days),
    responses((status = 200, description = "Messages counted", body = LogStatistics)))]
pub async fn log_statistics(
    State(s): State<ApiState>,
    Query(q): Query<Days>,
) -> ApiResult<axum::Json<LogStatistics>> {
    let days = q.days.unwrap_or(7);
    let [all, user, active_days] = s
        .engine
        .reads()
        .message_counts(since(&s.engine, days))
        .await?;
    Ok(axum::Json(LogStatistics {
        status: "success",
        statistics: LogFigures {
            total_files: active_days,
            total_messages: all,
            user_messages: user,
            assistant_messages: all - user,
            days_covered: days,
        },
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogStatistics {
    status: &'static str,
    statistics: LogFigures,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogFigures {
    /// Days with messages (upstream's log files are daily).
    total_files: i64,
    total_messages: i64,
    user_messages: i64,
    assistant_messages: i64,
    days_covered: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogMessage {
    role: String,
    content: String,
    session_id: String,
    created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogLoad {
    status: &'static str,
    messages: Vec<LogMessage>,
    count: usize,
    days: i64,
}

/// `GET /logs/context/load?days=3&max_messages=`: the last messages of
/// every conversation, oldest first, as `{role, content}`.
#[utoipa::path(get, path = "/logs/context/load", tag = "chat", params(Days),
    responses((status = 200, description = "Messages, oldest first", body = LogLoad)))]
pub async fn log_load(
    State(s): State<ApiState>,
    Query(q): Query<Days>,
) -> ApiResult<axum::Json<LogLoad>> {
    let days = q.days.unwrap_or(3);
    let limit = q.max_messages.unwrap_or(1000).clamp(1, 10_000);
    let rows = s
        .engine
        .reads()
        .recent_messages(since(&s.engine, days), limit)
        .await?;
    let messages: Vec<LogMessage> = rows
        .iter()
        .map(|m| LogMessage {
            role: m.role.as_str().to_owned(),
            content: m.content.clone(),
            session_id: m.session_id.clone(),
            created_at: iso(m.created_at),
        })
        .collect();
    Ok(axum::Json(LogLoad {
        status: "success",
        count: messages.len(),
        messages,
        days,
    }))
}

/// The `session_id` every one of these routes needs (400 without it).
fn session_of(body: &Value) -> ApiResult<String> {
    let id = body
        .get("session_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_request",
                "缺少session_id: `session_id` is required",
            )
        })?;
    SessionId::parse(id)
        .map(SessionId::into_string)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))
}

/// Shows a follow-up in the session's UI: the event its listeners
/// (`GET /sessions/{id}/events`) get. Returns how many got it.
fn show(s: &ApiState, session_id: &str, ai_response: &str) -> usize {
    s.assistant.notify(
        session_id,
        json!({"type": "followup", "action": "show_tool_ai_response", "session_id": session_id,
               "ai_response": ai_response, "content": ai_response}),
    )
}

/// `POST /tool_result {session_id, result, type, ai_response}`: a tool's
/// result for the UI; `type: tool_completed_with_ai_response` shows
/// `ai_response`.
#[utoipa::path(post, path = "/tool_result", tag = "chat", request_body = Object,
    responses((status = 200, description = "Received", body = ToolResultReceived)))]
pub async fn tool_result(
    State(s): State<ApiState>,
    Json(body): Json<Value>,
) -> ApiResult<axum::Json<ToolResultReceived>> {
    let session_id = session_of(&body)?;
    let ai_response = body
        .get("ai_response")
        .and_then(Value::as_str)
        .unwrap_or("");
    let shown = match body.get("type").and_then(Value::as_str) {
        Some("tool_completed_with_ai_response") if !ai_response.is_empty() => {
            show(&s, &session_id, ai_response)
        }
        _ => 0,
    };
    tracing::info!(session_id = %session_id, shown, "tool result received for the UI");
    Ok(axum::Json(ToolResultReceived {
        success: true,
        message: "工具结果已接收",
        result: body.get("result").cloned().unwrap_or(json!("")),
        session_id,
        delivered: shown,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolResultReceived {
    success: bool,
    message: &'static str,
    result: Value,
    session_id: String,
    /// How many listeners were shown `ai_response`.
    delivered: usize,
}

/// What a UI route answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct UiDone {
    success: bool,
    message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    /// How many listeners were shown it.
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered: Option<usize>,
}

/// `POST /save_tool_conversation {session_id, user_message,
/// assistant_response}`: saves a tool turn in the conversation.
#[utoipa::path(post, path = "/save_tool_conversation", tag = "chat", request_body = Object,
    responses((status = 200, description = "Saved", body = UiDone)))]
pub async fn save_tool_conversation(
    State(s): State<ApiState>,
    Json(body): Json<Value>,
) -> ApiResult<axum::Json<UiDone>> {
    let session_id = session_of(&body)?;
    let now = s.engine.clock().now_ms();
    for (role, key) in [
        (MessageRole::User, "user_message"),
        (MessageRole::Assistant, "assistant_response"),
    ] {
        let Some(content) = body
            .get(key)
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
        else {
            continue;
        };
        s.engine
            .add_message(NewMessage {
                session_id: session_id.clone(),
                role,
                content: content.to_owned(),
                kind: MessageKind::Tool,
                task_id: None,
                created_at: now,
            })
            .await?;
    }
    tracing::info!(session_id = %session_id, "tool conversation saved");
    Ok(axum::Json(UiDone {
        success: true,
        message: "工具对话历史已保存",
        session_id: Some(session_id),
        delivered: None,
    }))
}

/// `POST /ui_notification {session_id, action, ai_response}`:
/// `show_tool_ai_response` shows `ai_response` in the session's UI.
#[utoipa::path(post, path = "/ui_notification", tag = "chat", request_body = Object,
    responses((status = 200, description = "Handled", body = UiDone)))]
pub async fn ui_notification(
    State(s): State<ApiState>,
    Json(body): Json<Value>,
) -> ApiResult<axum::Json<UiDone>> {
    let session_id = session_of(&body)?;
    let action = body.get("action").and_then(Value::as_str).unwrap_or("");
    let ai_response = body
        .get("ai_response")
        .and_then(Value::as_str)
        .unwrap_or("");
    if action == "show_tool_ai_response" && !ai_response.is_empty() {
        let shown = show(&s, &session_id, ai_response);
        tracing::info!(session_id = %session_id, shown, "tool AI response shown in the UI");
        return Ok(axum::Json(UiDone {
            success: true,
            message: "AI回复已显示",
            session_id: None,
            delivered: Some(shown),
        }));
    }
    Ok(axum::Json(UiDone {
        success: true,
        message: "UI通知已处理",
        session_id: None,
        delivered: None,
    }))
}

/// `DELETE /sessions`: forgets every conversation (their tasks stay).
#[utoipa::path(delete, path = "/sessions", tag = "chat",
    responses((status = 200, description = "Forgotten", body = Removed)))]
pub async fn clear_sessions(State(s): State<ApiState>) -> ApiResult<axum::Json<Removed>> {
    let n = s.engine.delete_all_conversations().await?;
    Ok(axum::Json(Removed {
        status: Some("success"),
        ..Removed::new(format!("已清空 {n} 个会话"), n)
    }))
}
