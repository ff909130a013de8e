//! The dashboard's chat panel: a conversation with the assistant of the
//! API server running in this process (its `/chat`, in-process), and a
//! conversation's messages. 503 `chat_unavailable` when this process runs
//! no API server.

use super::AgentState;
use crate::{
    api::{ChatReply, ChatRequest, Message},
    error::ApiResult,
    extract::{Json, Path},
    views, ApiError,
};
use axum::{extract::State, http::StatusCode};
use naga_engine::assistant::Assistant;
use serde::Serialize;
use utoipa::ToSchema;

fn assistant(state: &AgentState) -> ApiResult<&Assistant> {
    state.assistant.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "chat_unavailable",
            "chat needs the API server in this process (`naga serve` without `--only`, or \
             with `--only api,agent`)",
        )
    })
}

/// `POST /ui/chat`: as the API server's `POST /chat`.
#[utoipa::path(post, path = "/ui/chat", tag = "dashboard", request_body = ChatRequest,
    responses((status = 200, description = "The assistant's reply", body = ChatReply)))]
pub async fn send(
    State(state): State<AgentState>,
    Json(req): Json<ChatRequest>,
) -> ApiResult<axum::Json<ChatReply>> {
    let reply = assistant(&state)?
        .chat(&req.message, req.session_id, req.skip_intent_analysis)
        .await?;
    Ok(axum::Json(reply.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatHistory {
    pub success: bool,
    pub session_id: String,
    /// Oldest first (none for a session nobody chatted in).
    pub messages: Vec<Message>,
}

/// `GET /ui/chat/{id}`: the conversation's messages.
#[utoipa::path(get, path = "/ui/chat/{id}", tag = "dashboard", params(("id" = String, Path)),
    responses((status = 200, description = "The conversation", body = ChatHistory)))]
pub async fn history(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ChatHistory>> {
    let messages = assistant(&state)?.history(&id).await?;
    Ok(axum::Json(ChatHistory {
        success: true,
        session_id: id,
        messages: views::all(&messages),
    }))
}
