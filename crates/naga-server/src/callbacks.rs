//! The callback outbox over HTTP: list, and deliver one again.

use crate::{
    error::ApiResult,
    extract::{Path, Query},
    views, ApiError,
};
use axum::extract::State;
use naga_engine::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /callbacks?status=pending|delivered|dead`, newest first.
pub async fn list(
    State(engine): State<Engine>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s @ ("pending" | "delivered" | "dead")) => Some(s),
        Some(s) => {
            return Err(ApiError::bad_request(
                "invalid_status",
                format!("unknown callback status `{s}`: pending, delivered or dead"),
            ))
        }
    };
    let limit = crate::agent::page_limit(q.limit)?;
    let rows = engine.store().callbacks(status, limit).await?;
    let callbacks: Vec<Value> = rows.iter().map(views::callback).collect();
    Ok(axum::Json(
        json!({"success": true, "count": callbacks.len(), "callbacks": callbacks}),
    ))
}

/// `POST /callbacks/{id}/retry`: puts a callback back in the outbox and
/// delivers it again (same webhook-id).
pub async fn retry(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let existing = engine
        .store()
        .callback(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no callback `{id}`")))?;
    if existing.status == "pending" {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "already_pending",
            format!(
                "callback `{id}` is already pending delivery (attempt {} so far)",
                existing.attempts
            ),
        ));
    }
    let now = engine.clock().now_ms();
    let row = engine
        .store()
        .requeue_callback(&id, now)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no callback `{id}`")))?;
    tracing::info!(callback_id = %id, task_id = %row.task_id, "callback replay requested");
    let view = views::callback(&row);
    engine.callbacks().enqueue(row);
    Ok(axum::Json(json!({"success": true, "callback": view})))
}
