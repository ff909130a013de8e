//! The API server's routes that NagaAgent's UI and scripts call beside
//! chat (upstream `apiserver/api_server.py`, b2cd671), in upstream's
//! shapes: system info, memory stats, the conversation log, and the
//! routes through which tool results and follow-ups reach the UI.

use crate::{
    api::ApiState,
    error::ApiResult,
    extract::{Json, Query},
    ApiError,
};
use axum::extract::State;
use naga_core::{time::iso, SessionId};
use naga_store::NewMessage;
use serde::Deserialize;
use serde_json::{json, Value};

const DAY_MS: i64 = 86_400_000;

/// `GET /system/info`.
pub async fn system_info(State(s): State<ApiState>) -> axum::Json<Value> {
    let services: Vec<&str> = ["api_server", "agent_server", "mcp_server"]
        .into_iter()
        .zip(naga_core::config::Service::ALL)
        .filter(|(_, svc)| s.engine.config().runs(*svc))
        .map(|(name, _)| name)
        .collect();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "status": "running",
        "available_services": services,
        "api_key_configured": s.assistant.llm_configured(),
    }))
}

/// `GET /memory/stats`: upstream's knowledge-graph memory, which naga does
/// not have (its task memory is the agent server's `/memory/global`).
pub async fn memory_stats(State(s): State<ApiState>) -> ApiResult<axum::Json<Value>> {
    let counts = s.engine.reads().counts().await?;
    Ok(axum::Json(json!({"status": "success", "memory_stats": {
        "enabled": false,
        "message": "naga has no knowledge-graph memory; task memory: the agent server's /memory/global",
        "tasks": counts.tasks, "steps": counts.steps, "sessions": counts.sessions}})))
}

#[derive(Deserialize)]
pub struct Days {
    days: Option<i64>,
    max_messages: Option<i64>,
}

fn since(engine: &naga_engine::Engine, days: i64) -> i64 {
    engine.clock().now_ms() - days.clamp(0, 36_500) * DAY_MS
}

/// `GET /logs/context/statistics?days=7`: the conversations' messages of
/// the last `days` days (upstream counts its daily log files as files).
pub async fn log_statistics(
    State(s): State<ApiState>,
    Query(q): Query<Days>,
) -> ApiResult<axum::Json<Value>> {
    let days = q.days.unwrap_or(7);
    let [all, user, active_days] = s
        .engine
        .reads()
        .message_counts(since(&s.engine, days))
        .await?;
    Ok(axum::Json(json!({"status": "success", "statistics": {
        "total_files": active_days, "total_messages": all, "user_messages": user,
        "assistant_messages": all - user, "days_covered": days}})))
}

/// `GET /logs/context/load?days=3&max_messages=`: the last messages of
/// every conversation, oldest first, as `{role, content}`.
pub async fn log_load(
    State(s): State<ApiState>,
    Query(q): Query<Days>,
) -> ApiResult<axum::Json<Value>> {
    let days = q.days.unwrap_or(3);
    let limit = q.max_messages.unwrap_or(1000).clamp(1, 10_000);
    let rows = s
        .engine
        .reads()
        .recent_messages(since(&s.engine, days), limit)
        .await?;
    let messages: Vec<Value> = rows
        .iter()
        .map(|m| {
            json!({"role": m.role, "content": m.content, "session_id": m.session_id,
                        "created_at": iso(m.created_at)})
        })
        .collect();
    Ok(axum::Json(
        json!({"status": "success", "messages": messages,
        "count": messages.len(), "days": days}),
    ))
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
pub async fn tool_result(
    State(s): State<ApiState>,
    Json(body): Json<Value>,
) -> ApiResult<axum::Json<Value>> {
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
    Ok(axum::Json(
        json!({"success": true, "message": "工具结果已接收",
        "result": body.get("result").cloned().unwrap_or(json!("")), "session_id": session_id,
        "delivered": shown}),
    ))
}

/// `POST /save_tool_conversation {session_id, user_message,
/// assistant_response}`: saves a tool turn in the conversation.
pub async fn save_tool_conversation(
    State(s): State<ApiState>,
    Json(body): Json<Value>,
) -> ApiResult<axum::Json<Value>> {
    let session_id = session_of(&body)?;
    let now = s.engine.clock().now_ms();
    for (role, key) in [
        ("user", "user_message"),
        ("assistant", "assistant_response"),
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
                role: role.into(),
                content: content.to_owned(),
                kind: "tool",
                task_id: None,
                created_at: now,
            })
            .await?;
    }
    tracing::info!(session_id = %session_id, "tool conversation saved");
    Ok(axum::Json(
        json!({"success": true, "message": "工具对话历史已保存",
        "session_id": session_id}),
    ))
}

/// `POST /ui_notification {session_id, action, ai_response}`:
/// `show_tool_ai_response` shows `ai_response` in the session's UI.
pub async fn ui_notification(
    State(s): State<ApiState>,
    Json(body): Json<Value>,
) -> ApiResult<axum::Json<Value>> {
    let session_id = session_of(&body)?;
    let action = body.get("action").and_then(Value::as_str).unwrap_or("");
    let ai_response = body
        .get("ai_response")
        .and_then(Value::as_str)
        .unwrap_or("");
    if action == "show_tool_ai_response" && !ai_response.is_empty() {
        let shown = show(&s, &session_id, ai_response);
        tracing::info!(session_id = %session_id, shown, "tool AI response shown in the UI");
        return Ok(axum::Json(
            json!({"success": true, "message": "AI回复已显示", "delivered": shown}),
        ));
    }
    Ok(axum::Json(
        json!({"success": true, "message": "UI通知已处理"}),
    ))
}

/// `DELETE /sessions`: forgets every conversation (their tasks stay).
pub async fn clear_sessions(State(s): State<ApiState>) -> ApiResult<axum::Json<Value>> {
    let n = s.engine.delete_all_conversations().await?;
    Ok(axum::Json(json!({"status": "success", "success": true,
        "message": format!("已清空 {n} 个会话"), "removed": n})))
}
