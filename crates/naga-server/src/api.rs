//! The API server (default 127.0.0.1:8000): DESIGN.md's API section.
//! Conversations, the callbacks of the agent and MCP servers, and the
//! events pushed to the UI.

use crate::{
    agent::page_limit,
    error::ApiResult,
    extract::{Json, Path, Query, Text},
    ApiError,
};
use axum::{
    extract::State,
    http::{header, HeaderMap},
    response::sse::{Event, Sse},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use naga_core::time::iso;
use naga_engine::assistant::{Assistant, WebhookHeaders};
use serde::Deserialize;
use serde_json::{json, Value};
use std::{convert::Infallible, time::Duration};

#[derive(Clone)]
pub struct ApiState {
    pub engine: naga_engine::Engine,
    pub assistant: Assistant,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/ui", get(dashboard))
        .route("/chat", post(chat))
        .route("/chat/stream", post(chat_stream))
        .route("/sessions", get(sessions).delete(crate::ui::clear_sessions))
        .route("/sessions/{id}", get(session).delete(delete_session))
        .route("/system/info", get(crate::ui::system_info))
        .route("/memory/stats", get(crate::ui::memory_stats))
        .route("/logs/context/statistics", get(crate::ui::log_statistics))
        .route("/logs/context/load", get(crate::ui::log_load))
        .route("/tool_result", post(crate::ui::tool_result))
        .route(
            "/save_tool_conversation",
            post(crate::ui::save_tool_conversation),
        )
        .route("/ui_notification", post(crate::ui::ui_notification))
        .route("/sessions/{id}/events", get(events))
        .route("/tool_notification", post(tool_notification))
        .route("/tool_result_callback", post(callback))
        .route("/agent_result_callback", post(callback))
        .with_state(state)
}

/// `GET /ui`: the dashboard lives on the agent server (its API is there).
async fn dashboard(State(s): State<ApiState>) -> axum::response::Redirect {
    axum::response::Redirect::temporary(&format!("{}/ui", s.assistant.links().agent))
}

async fn metrics(State(s): State<ApiState>) -> impl axum::response::IntoResponse {
    crate::health::metrics(State(s.engine)).await
}

async fn health(State(s): State<ApiState>) -> axum::Json<Value> {
    let mut body = crate::health::body(&s.engine, "api_server");
    body["llm_configured"] = json!(s.assistant.llm_configured());
    body["event_sessions"] = json!(s.assistant.events().sessions_listened());
    body["events_from_other_nodes"] = json!(s.assistant.hears_other_nodes());
    // Upstream's: whether chat can answer.
    body["agent_ready"] = json!(s.assistant.llm_configured());
    axum::Json(body)
}

/// `GET /`: what this server is (upstream's root).
async fn root() -> axum::Json<Value> {
    axum::Json(json!({"name": "NagaAgent API", "server": "naga",
        "version": env!("CARGO_PKG_VERSION"), "status": "running", "docs": "/health"}))
}

async fn ready(State(s): State<ApiState>) -> (axum::http::StatusCode, axum::Json<Value>) {
    crate::health::ready(State(s.engine)).await
}

#[derive(Deserialize)]
struct ChatRequest {
    message: String,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    skip_intent_analysis: bool,
}

/// `POST /chat` → `{response, session_id, status}`.
async fn chat(
    State(s): State<ApiState>,
    Json(req): Json<ChatRequest>,
) -> ApiResult<axum::Json<Value>> {
    let reply = s
        .assistant
        .chat(&req.message, req.session_id, req.skip_intent_analysis)
        .await?;
    Ok(axum::Json(
        json!({"response": reply.response, "session_id": reply.session_id, "status": "success"}),
    ))
}

#[derive(Deserialize)]
struct StreamQuery {
    /// `base64` (default, as NagaAgent's UI decodes it) or `text`.
    encoding: Option<String>,
}

/// `POST /chat/stream[?encoding=base64|text]`: SSE whose first event is
/// `session_id: <id>`, then each piece of the text as it is written, then
/// `[DONE]` (NagaAgent's stream). Each piece is the base64 of its UTF-8,
/// which NagaAgent's UI client decodes line by line (an SSE data line
/// cannot carry a newline or keep trailing spaces); `?encoding=text` sends
/// it as it is, for other clients.
async fn chat_stream(
    State(s): State<ApiState>,
    Query(q): Query<StreamQuery>,
    Json(req): Json<ChatRequest>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let base64 = match q.encoding.as_deref() {
        None | Some("base64") => true,
        Some("text") => false,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_encoding",
                format!("encoding must be `base64` (NagaAgent's) or `text`, not `{other}`"),
            ))
        }
    };
    let (session_id, rx) = s
        .assistant
        .chat_stream(&req.message, req.session_id, req.skip_intent_analysis)
        .await?;
    let first = futures::stream::once(async move {
        Ok(Event::default().data(format!("session_id: {session_id}")))
    });
    let text = tokio_stream_from(rx).map(move |piece| {
        Ok(match piece {
            Ok(t) if base64 => Event::default().data(B64.encode(t.as_bytes())),
            Ok(t) => Event::default().data(t),
            Err(e) => Event::default().event("error").data(e.to_string()),
        })
    });
    let done = futures::stream::once(async { Ok(Event::default().data("[DONE]")) });
    Ok(Sse::new(first.chain(text).chain(done)))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /sessions`: conversations, most recently active first.
async fn sessions(
    State(s): State<ApiState>,
    Query(p): Query<Page>,
) -> ApiResult<axum::Json<Value>> {
    let rows = s
        .engine
        .reads()
        .conversations(page_limit(p.limit)?, p.offset.unwrap_or(0).max(0))
        .await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|c| json!({"session_id": c.session_id, "message_count": c.messages,
                        "created_at": iso(c.created_at), "last_activity_at": iso(c.last_activity_at)}))
        .collect();
    // Upstream's `sessions` is an object keyed by session id.
    let mut sessions = serde_json::Map::new();
    for c in &rows {
        let last = s.engine.reads().messages(&c.session_id, 1).await?;
        sessions.insert(
            c.session_id.clone(),
            session_info(
                &c.session_id,
                c.messages,
                c.created_at,
                c.last_activity_at,
                last.first().map(|m| m.content.as_str()),
            ),
        );
    }
    Ok(axum::Json(
        json!({"status": "success", "success": true, "count": list.len(),
               "total_sessions": list.len(), "sessions": sessions, "session_list": list}),
    ))
}

/// A conversation as upstream describes it (`session_info`).
fn session_info(
    id: &str,
    messages: i64,
    created: i64,
    last: i64,
    last_message: Option<&str>,
) -> Value {
    json!({
        "session_id": id,
        "created_at": crate::upstream::secs(created),
        "last_activity": crate::upstream::secs(last),
        "message_count": messages,
        "conversation_rounds": messages / 2,
        "agent_type": "default",
        "max_history_rounds": naga_engine::assistant::MAX_HISTORY_ROUNDS,
        "last_message": match last_message {
            Some(m) => format!("{}...", naga_core::ids::clip(m, 100)),
            None => "无对话历史".to_owned(),
        },
    })
}

/// `GET /sessions/{id}`: `{"session_id", "messages": [{role, content, …}]}`.
async fn session(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let messages = s.assistant.history(&id).await?;
    if messages.is_empty() {
        return Err(ApiError::not_found(format!("no conversation `{id}`")));
    }
    let info = session_info(
        &id,
        messages.len() as i64,
        messages.first().map_or(0, |m| m.created_at),
        messages.last().map_or(0, |m| m.created_at),
        messages.last().map(|m| m.content.as_str()),
    );
    let rounds = info["conversation_rounds"].clone();
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({"id": m.id, "role": m.role, "content": m.content, "kind": m.kind,
                        "task_id": m.task_id, "created_at": iso(m.created_at)})
        })
        .collect();
    Ok(axum::Json(
        json!({"status": "success", "success": true, "session_id": id, "session_info": info,
               "messages": messages, "conversation_rounds": rounds}),
    ))
}

/// `DELETE /sessions/{id}`: forgets the conversation (its tasks stay).
async fn delete_session(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let removed = s.engine.delete_conversation(&id).await?;
    if removed == 0 {
        return Err(ApiError::not_found(format!("no conversation `{id}`")));
    }
    Ok(axum::Json(
        json!({"status": "success", "success": true, "message": format!("会话 {id} 已删除"),
               "session_id": id, "removed": removed}),
    ))
}

/// `GET /sessions/{id}/events`: follow-ups and tool notifications as SSE.
/// Each event's frame is shared by every listener (not copied per
/// listener); a listener that does not read falls behind and is told what
/// it missed (a `lagged` event); a comment every 15 s keeps idle streams
/// open through proxies.
async fn events(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<Response> {
    naga_core::SessionId::parse(id.as_str())
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let rx = s.assistant.events().subscribe(&id);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let frame = tokio::select! {
            frame = rx.next_frame() => frame?,
            _ = tokio::time::sleep(Duration::from_secs(15)) => Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok::<_, Infallible>(frame), rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
struct Notification {
    session_id: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// `POST /tool_notification`: passed on to the session's UI listeners.
async fn tool_notification(
    State(s): State<ApiState>,
    Json(n): Json<Notification>,
) -> ApiResult<axum::Json<Value>> {
    naga_core::SessionId::parse(n.session_id.as_str())
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let tool_calls = n.rest.get("tool_calls").cloned().unwrap_or(json!([]));
    let display = n.rest.get("message").cloned().unwrap_or(json!(""));
    let mut event = Value::Object(n.rest);
    event["session_id"] = json!(n.session_id);
    let delivered = s.assistant.notify(&n.session_id, event);
    Ok(axum::Json(
        json!({"success": true, "message": "工具调用状态通知已接收", "tool_calls": tool_calls,
               "display_message": display, "delivered": delivered}),
    ))
}

/// `POST /tool_result_callback` and `/agent_result_callback`.
async fn callback(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Text(body): Text,
) -> ApiResult<axum::Json<Value>> {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let webhook = WebhookHeaders {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
    };
    let new = s.assistant.receive_callback(&webhook, &body).await?;
    // Upstream answers once its LLM has replied; naga answers once the
    // callback is stored, and the reply reaches the session's listeners
    // (and its history) as a follow-up: `response` is empty here.
    let ids: Value = serde_json::from_str(&body).unwrap_or_default();
    Ok(axum::Json(json!({"success": true, "duplicate": !new,
        "message": "工具结果已接收，主AI的回复将通过会话事件送达",
        "response": "", "task_id": ids.get("task_id"), "session_id": ids.get("session_id")})))
}
