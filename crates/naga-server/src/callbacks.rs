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
    let now = engine.clock().now_ms();
    let lease = engine.scheduler().lease(now);
    let Some(row) = engine.store().requeue_callback(&id, &lease, now).await? else {
        // Not replayed: no such callback, or pending already (also when
        // another replay of it just won).
        let existing = engine
            .store()
            .callback(&id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no callback `{id}`")))?;
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "already_pending",
            format!(
                "callback `{id}` is already pending delivery (attempt {} so far)",
                existing.attempts
            ),
        ));
    };
    tracing::info!(callback_id = %id, task_id = %row.task_id, "callback replay requested");
    let view = views::callback(&row);
    engine.callbacks().enqueue(row);
    Ok(axum::Json(json!({"success": true, "callback": view})))
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
    let now = engine.clock().now_ms();
    let lease = engine.scheduler().lease(now);
    let rows = engine
        .store()
        .redrive_dead(since, limit, &lease, now)
        .await?;
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    tracing::info!(count = rows.len(), since, "dead callbacks redriven");
    let body = json!({"success": true, "count": ids.len(), "callback_ids": ids});
    for row in rows {
        engine.callbacks().enqueue(row);
    }
    Ok(axum::Json(body))
}
