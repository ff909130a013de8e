use crate::{error::ApiResult, extract::Json, ApiError};
use axum::{extract::State, http::header, response::IntoResponse};
use naga_core::wire::AgentScheduleRequest;
use naga_engine::Engine;
use serde::Deserialize;
use serde_json::Value;

/// `POST /schedule`: answers at once, after the batch is committed.
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

#[derive(Deserialize)]
pub struct LegacyRequest {
    #[serde(default)]
    messages: Value,
    #[serde(default)]
    session_id: Option<String>,
}

/// `POST /analyze_and_execute` (legacy, synchronous).
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
