//! The API server (default 127.0.0.1:8000): docs/design.md's API section.
//! Conversations, the callbacks of the agent and MCP servers, and the
//! events pushed to the UI.

use crate::extract::page_limit;
use crate::views::{Page, Removed};
use crate::{
    error::ApiResult,
    extract::{Json, Path, Query, Text},
    ApiError,
};
use axum::{
    extract::State,
    http::{header, HeaderMap},
    response::sse::{Event, Sse},
    response::{IntoResponse, Response},
    Router,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use naga_core::time::iso;
use naga_engine::assistant::WebhookHeaders;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{collections::BTreeMap, convert::Infallible, time::Duration};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use crate::state::ApiState;

pub fn router(state: ApiState) -> Router {
    let (router, _) = routes().split_for_parts();
    router.with_state(state)
}

/// Every route of the API server, with its OpenAPI description.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(root))
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
        .routes(routes!(dashboard))
        .routes(routes!(chat))
        .routes(routes!(chat_stream))
        .routes(routes!(sessions, crate::ui::clear_sessions))
        .routes(routes!(session, delete_session))
        .routes(routes!(crate::ui::system_info))
        .routes(routes!(crate::ui::memory_stats))
        .routes(routes!(crate::ui::log_statistics))
        .routes(routes!(crate::ui::log_load))
        .routes(routes!(crate::ui::tool_result))
        .routes(routes!(crate::ui::save_tool_conversation))
        .routes(routes!(crate::ui::ui_notification))
        .routes(routes!(events))
        .routes(routes!(tool_notification))
        .routes(routes!(tool_callback))
        .routes(routes!(agent_callback))
}

/// `GET /openapi.json`: this server's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", body = Object)))]
async fn openapi() -> Response {
    static DOC: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| crate::openapi::document(routes(), "naga API server"));
    crate::openapi::serve(&DOC)
}

/// `GET /ui`: the dashboard lives on the agent server (its API is there).
#[utoipa::path(get, path = "/ui", tag = "dashboard", security(()),
    responses((status = 307, description = "To the agent server's `/ui`")))]
async fn dashboard(State(s): State<ApiState>) -> axum::response::Redirect {
    axum::response::Redirect::temporary(&format!("{}/ui", s.assistant.links().agent))
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain")))]
async fn metrics(State(s): State<ApiState>) -> impl axum::response::IntoResponse {
    crate::health::metrics(State(s.engine)).await
}

/// The API server's health: whether chat can answer, who listens.
#[derive(Debug, Serialize, ToSchema)]
struct ApiHealth {
    #[serde(flatten)]
    health: crate::health::Health,
    llm_configured: bool,
    /// Sessions with a listener on `/sessions/{id}/events`.
    event_sessions: usize,
    events_from_other_nodes: bool,
    /// Upstream's: whether chat can answer.
    agent_ready: bool,
}

/// `GET /health` (open without the token).
#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses((status = 200, description = "Up; `status` says whether it is well", body = ApiHealth)))]
async fn health(State(s): State<ApiState>) -> axum::Json<ApiHealth> {
    axum::Json(ApiHealth {
        health: crate::health::body(&s.engine, "api_server"),
        llm_configured: s.assistant.llm_configured(),
        event_sessions: s.assistant.events().sessions_listened(),
        events_from_other_nodes: s.assistant.hears_other_nodes(),
        agent_ready: s.assistant.llm_configured(),
    })
}

/// What this server is (upstream's root).
#[derive(Debug, Serialize, ToSchema)]
struct Root {
    name: &'static str,
    server: &'static str,
    version: &'static str,
    status: &'static str,
    docs: &'static str,
}

/// `GET /`: what this server is (upstream's root).
#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "What this server is", body = Root)))]
async fn root() -> axum::Json<Root> {
    axum::Json(Root {
        name: "NagaAgent API",
        server: "naga",
        version: env!("CARGO_PKG_VERSION"),
        status: "running",
        docs: "/openapi.json",
    })
}

#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Takes work", body = crate::health::Ready),
        (status = 503, description = "Cannot take work now", body = crate::health::Ready)))]
async fn ready(
    State(s): State<ApiState>,
) -> (axum::http::StatusCode, axum::Json<crate::health::Ready>) {
    crate::health::ready(State(s.engine)).await
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ChatRequest {
    pub message: String,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub skip_intent_analysis: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatReply {
    pub response: String,
    pub session_id: String,
    /// `success`.
    pub status: &'static str,
}

/// `POST /chat` → `{response, session_id, status}` (503 without an LLM).
#[utoipa::path(post, path = "/chat", tag = "chat", request_body = ChatRequest,
    responses((status = 200, description = "The assistant's reply", body = ChatReply)))]
async fn chat(
    State(s): State<ApiState>,
    Json(req): Json<ChatRequest>,
) -> ApiResult<axum::Json<ChatReply>> {
    let reply = s
        .assistant
        .chat(&req.message, req.session_id, req.skip_intent_analysis)
        .await?;
    Ok(axum::Json(reply.into()))
}

impl From<naga_engine::assistant::Reply> for ChatReply {
    fn from(reply: naga_engine::assistant::Reply) -> Self {
        Self {
            response: reply.response,
            session_id: reply.session_id,
            status: "success",
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
#[utoipa::path(post, path = "/chat/stream", tag = "chat", params(StreamQuery),
    request_body = ChatRequest,
    responses((status = 200, description = "`data: session_id: <id>`, the text in pieces, `data: [DONE]`",
        body = String, content_type = "text/event-stream")))]
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

/// A conversation in naga's list of them.
#[derive(Debug, Serialize, ToSchema)]
struct Conversation {
    session_id: String,
    message_count: i64,
    created_at: String,
    last_activity_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct ConversationList {
    status: &'static str,
    success: bool,
    count: usize,
    total_sessions: usize,
    /// Upstream's: an object keyed by session id.
    sessions: BTreeMap<String, SessionInfo>,
    session_list: Vec<Conversation>,
}

/// `GET /sessions`: conversations, most recently active first.
#[utoipa::path(get, path = "/sessions", tag = "chat", params(Page),
    responses((status = 200, description = "Conversations, most recently active first",
        body = ConversationList)))]
async fn sessions(
    State(s): State<ApiState>,
    Query(p): Query<Page>,
) -> ApiResult<axum::Json<ConversationList>> {
    let rows = s
        .engine
        .reads()
        .conversations(page_limit(p.limit)?, p.offset.unwrap_or(0).max(0))
        .await?;
    let list: Vec<Conversation> = rows
        .iter()
        .map(|c| Conversation {
            session_id: c.session_id.clone(),
            message_count: c.messages,
            created_at: iso(c.created_at),
            last_activity_at: iso(c.last_activity_at),
        })
        .collect();
    let mut sessions = BTreeMap::new();
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
    Ok(axum::Json(ConversationList {
        status: "success",
        success: true,
        count: list.len(),
        total_sessions: list.len(),
        sessions,
        session_list: list,
    }))
}

/// A conversation as upstream describes it (`session_info`); times in
/// Unix seconds.
#[derive(Debug, Serialize, ToSchema)]
struct SessionInfo {
    session_id: String,
    created_at: f64,
    last_activity: f64,
    message_count: i64,
    conversation_rounds: i64,
    agent_type: &'static str,
    max_history_rounds: i64,
    last_message: String,
}

fn session_info(
    id: &str,
    messages: i64,
    created: i64,
    last: i64,
    last_message: Option<&str>,
) -> SessionInfo {
    SessionInfo {
        session_id: id.to_owned(),
        created_at: crate::upstream::secs(created),
        last_activity: crate::upstream::secs(last),
        message_count: messages,
        conversation_rounds: messages / 2,
        agent_type: "default",
        max_history_rounds: naga_engine::assistant::MAX_HISTORY_ROUNDS,
        last_message: match last_message {
            Some(m) => format!("{}...", naga_core::ids::clip(m, 100)),
            None => "无对话历史".to_owned(),
        },
    }
}

/// A message of a conversation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Message {
    id: i64,
    role: String,
    content: String,
    kind: String,
    task_id: Option<String>,
    created_at: String,
}

impl From<&naga_engine::rows::MessageRow> for Message {
    fn from(m: &naga_engine::rows::MessageRow) -> Self {
        Self {
            id: m.id,
            role: m.role.as_str().to_owned(),
            content: m.content.clone(),
            kind: m.kind.as_str().to_owned(),
            task_id: m.task_id.clone(),
            created_at: iso(m.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct ConversationDetail {
    status: &'static str,
    success: bool,
    session_id: String,
    session_info: SessionInfo,
    messages: Vec<Message>,
    conversation_rounds: i64,
}

/// `GET /sessions/{id}`: `{"session_id", "messages": [{role, content, …}]}`.
#[utoipa::path(get, path = "/sessions/{id}", tag = "chat", params(("id" = String, Path)),
    responses((status = 200, description = "The conversation", body = ConversationDetail)))]
async fn session(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ConversationDetail>> {
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
    let messages = crate::views::all(&messages);
    Ok(axum::Json(ConversationDetail {
        status: "success",
        success: true,
        session_id: id,
        conversation_rounds: info.conversation_rounds,
        session_info: info,
        messages,
    }))
}

/// `DELETE /sessions/{id}`: forgets the conversation (its tasks stay).
#[utoipa::path(delete, path = "/sessions/{id}", tag = "chat", params(("id" = String, Path)),
    responses((status = 200, description = "Forgotten", body = Removed)))]
async fn delete_session(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Removed>> {
    let removed = s.engine.delete_conversation(&id).await?;
    if removed == 0 {
        return Err(ApiError::not_found(format!("no conversation `{id}`")));
    }
    Ok(axum::Json(Removed {
        status: Some("success"),
        session_id: Some(id.clone()),
        ..Removed::new(format!("会话 {id} 已删除"), removed)
    }))
}

/// `GET /sessions/{id}/events`: follow-ups and tool notifications as SSE.
/// Each event's frame is shared by every listener (not copied per
/// listener); a listener that does not read falls behind and is told what
/// it missed (a `lagged` event); a comment every 15 s keeps idle streams
/// open through proxies.
#[utoipa::path(get, path = "/sessions/{id}/events", tag = "chat", params(("id" = String, Path)),
    responses((status = 200, description = "Server-sent events: `followup` and `tool_notification`",
        body = String, content_type = "text/event-stream")))]
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

/// A notification for a session's UI: its `session_id`, and whatever else
/// the UI shows (`tool_calls`, `message`, …).
#[derive(Deserialize, ToSchema)]
struct Notification {
    session_id: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Notified {
    success: bool,
    message: &'static str,
    tool_calls: Value,
    display_message: Value,
    /// How many listeners got it.
    delivered: usize,
}

/// `POST /tool_notification`: passed on to the session's UI listeners.
#[utoipa::path(post, path = "/tool_notification", tag = "chat", request_body = Notification,
    responses((status = 200, description = "Passed on", body = Notified)))]
async fn tool_notification(
    State(s): State<ApiState>,
    Json(n): Json<Notification>,
) -> ApiResult<axum::Json<Notified>> {
    naga_core::SessionId::parse(n.session_id.as_str())
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let tool_calls = n
        .rest
        .get("tool_calls")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let display = n
        .rest
        .get("message")
        .cloned()
        .unwrap_or(Value::String(String::new()));
    let mut event = n.rest;
    event.insert("session_id".into(), Value::String(n.session_id.clone()));
    let delivered = s.assistant.notify(&n.session_id, Value::Object(event));
    Ok(axum::Json(Notified {
        success: true,
        message: "工具调用状态通知已接收",
        tool_calls,
        display_message: display,
        delivered,
    }))
}

/// What a callback receiver answers.
#[derive(Debug, Serialize, ToSchema)]
struct CallbackReceived {
    success: bool,
    /// This `webhook-id` (else task) was received before: no second reply.
    duplicate: bool,
    message: &'static str,
    /// Empty: the reply reaches the session's listeners as a follow-up.
    response: &'static str,
    task_id: Option<Value>,
    session_id: Option<Value>,
}

/// `POST /tool_result_callback`: the MCP server's callback (Standard
/// Webhooks signature checked when `[callbacks] secret` is set).
#[utoipa::path(post, path = "/tool_result_callback", tag = "callbacks",
    request_body = naga_core::wire::CallbackEnvelope,
    responses((status = 200, description = "Stored", body = CallbackReceived)))]
async fn tool_callback(
    state: State<ApiState>,
    headers: HeaderMap,
    body: Text,
) -> ApiResult<axum::Json<CallbackReceived>> {
    callback(state, headers, body).await
}

/// `POST /agent_result_callback`: the agent server's callback.
#[utoipa::path(post, path = "/agent_result_callback", tag = "callbacks",
    request_body = naga_core::wire::CallbackEnvelope,
    responses((status = 200, description = "Stored", body = CallbackReceived)))]
async fn agent_callback(
    state: State<ApiState>,
    headers: HeaderMap,
    body: Text,
) -> ApiResult<axum::Json<CallbackReceived>> {
    callback(state, headers, body).await
}

async fn callback(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Text(body): Text,
) -> ApiResult<axum::Json<CallbackReceived>> {
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
    Ok(axum::Json(CallbackReceived {
        success: true,
        duplicate: !new,
        message: "工具结果已接收，主AI的回复将通过会话事件送达",
        response: "",
        task_id: ids.get("task_id").cloned(),
        session_id: ids.get("session_id").cloned(),
    }))
}
