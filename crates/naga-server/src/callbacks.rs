//! The callback outbox over HTTP: list, and deliver one again.

use crate::{
    error::ApiResult,
    extract::{Path, Query},
    views, ApiError,
};
use axum::extract::State;
use naga_core::DeliveryStatus;
use naga_engine::{Engine, Replay};
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
        Some(s) => match DeliveryStatus::try_from(s.to_owned()) {
            Ok(s) => Some(s),
            Err(_) => {
                return Err(ApiError::bad_request(
                    "invalid_status",
                    format!("unknown callback status `{s}`: pending, delivered or dead"),
                ))
            }
        },
    };
    let limit = crate::agent::page_limit(q.limit)?;
    let rows = engine.reads().callbacks(status, limit).await?;
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
    match engine.replay_callback(&id).await? {
        Replay::Requeued(row) => Ok(axum::Json(
            json!({"success": true, "callback": views::callback(&row)}),
        )),
        Replay::AlreadyPending(existing) => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "already_pending",
            format!(
                "callback `{id}` is already pending delivery (attempt {} so far)",
                existing.attempts
            ),
        )),
        Replay::Unknown => Err(ApiError::not_found(format!("no callback `{id}`"))),
    }
}

#[derive(Deserialize)]
pub struct RedriveQuery {
    /// Epoch milliseconds or an RFC 3339 time; every dead callback when absent.
    since: Option<String>,
    limit: Option<i64>,
}

/// `POST /callbacks/redrive[?since=&limit=]`: every dead callback that
/// died at or after `since` goes back in the outbox and is delivered again
/// on the full retry schedule (same webhook-id), oldest first.
pub async fn redrive(
    State(engine): State<Engine>,
    Query(q): Query<RedriveQuery>,
) -> ApiResult<axum::Json<Value>> {
    let since = match q.since.as_deref().map(str::trim) {
        None | Some("") => i64::MIN,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|t| t.timestamp_millis())
            })
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_since",
                    format!("`since` must be epoch milliseconds or an RFC 3339 time, not `{s}`"),
                )
            })?,
    };
    let limit = crate::agent::page_limit(q.limit)?;
    let ids = engine.redrive_dead_callbacks(since, limit).await?;
    Ok(axum::Json(
        json!({"success": true, "count": ids.len(), "callback_ids": ids}),
    ))
}
