use crate::{error::ApiResult, extract::Json, ApiError};
use axum::{extract::State, http::header, response::IntoResponse};
use naga_core::wire::{AgentScheduleRequest, ScheduleResponse};
use naga_engine::Engine;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /schedule`: answers at once, after the batch is committed. The
/// answer is the `ScheduleResponse` printed when the batch was accepted
/// (a repeated `request_id` gets it again, byte for byte).
#[utoipa::path(post, path = "/schedule", tag = "schedule", request_body = AgentScheduleRequest,
    responses((status = 200, description = "Committed; runs later", body = ScheduleResponse),
        (status = 429, description = "Too many batches held", body = naga_core::wire::ErrorBody)))]
pub async fn schedule(
    State(engine): State<Engine>,
    Json(req): Json<AgentScheduleRequest>,
) -> ApiResult<impl IntoResponse> {
    let scheduled = engine.schedule_agent(req).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        scheduled.response,
    ))
}

/// Upstream's legacy request: the conversation's messages.
#[derive(Deserialize, ToSchema)]
pub struct LegacyRequest {
    /// `[{"role", "content"}]`; user messages `执行Agent任务: …` run.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    messages: Value,
    #[serde(default)]
    session_id: Option<String>,
}

/// `POST /analyze_and_execute` (legacy, synchronous): answers once the
/// calls ran, with their results.
#[utoipa::path(post, path = "/analyze_and_execute", tag = "schedule", request_body = LegacyRequest,
    responses((status = 200, description = "The calls ran: `{success, status, message, results…}`",
        body = Object)))]
pub async fn analyze_and_execute(
    State(engine): State<Engine>,
    Json(req): Json<LegacyRequest>,
) -> ApiResult<axum::Json<Value>> {
    let Value::Array(messages) = &req.messages else {
        return Err(ApiError::bad_request(
            "invalid_messages",
            "`messages` must be a list of {\"role\", \"content\"} objects",
        ));
    };
    Ok(axum::Json(
        engine.analyze_and_execute(messages, req.session_id).await?,
    ))
}
