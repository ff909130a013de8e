//! The callback outbox over HTTP: list, and deliver one again.

use crate::{
    error::ApiResult,
    extract::{Path, Query},
    views, ApiError,
};
use axum::extract::State;
use naga_core::DeliveryStatus;
use naga_engine::{Engine, Replay};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending`, `delivered` or `dead`; every callback when absent.
    status: Option<String>,
    /// 1..=1000, default 100.
    limit: Option<i64>,
    /// Only the callbacks of this task (however many are newer).
    task_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackList {
    pub success: bool,
    pub count: usize,
    pub callbacks: Vec<views::Callback>,
}

/// `GET /callbacks?status=pending|delivered|dead&task_id=`, newest first.
#[utoipa::path(get, path = "/callbacks", tag = "callbacks", params(ListQuery),
    responses((status = 200, description = "Callbacks, newest first", body = CallbackList)))]
pub async fn list(
    State(engine): State<Engine>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<CallbackList>> {
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
    let limit = crate::extract::page_limit(q.limit)?;
    let rows = match q.task_id.as_deref() {
        Some(task) => {
            let mut rows = engine.reads().callbacks_of_task(task).await?;
            rows.retain(|r| status.is_none_or(|s| r.status == s));
            rows.truncate(limit as usize);
            rows
        }
        None => engine.reads().callbacks(status, limit).await?,
    };
    Ok(axum::Json(CallbackList {
        success: true,
        count: rows.len(),
        callbacks: views::all(&rows),
    }))
}

/// `POST /callbacks/{id}/retry`: puts a callback back in the outbox and
/// delivers it again (same webhook-id); 409 while it is still pending.
#[utoipa::path(post, path = "/callbacks/{id}/retry", tag = "callbacks",
    params(("id" = String, Path)),
    responses((status = 200, description = "Back in the outbox", body = Requeued)))]
pub async fn retry(
    State(engine): State<Engine>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Requeued>> {
    match engine.replay_callback(&id).await? {
        Replay::Requeued(row) => Ok(axum::Json(Requeued {
            success: true,
            callback: views::Callback::from(&row),
        })),
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    pub success: bool,
    pub callback: views::Callback,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RedriveQuery {
    /// Epoch milliseconds or an RFC 3339 time; every dead callback when absent.
    since: Option<String>,
    /// 1..=1000, default 100.
    limit: Option<i64>,
}

/// `POST /callbacks/redrive[?since=&limit=]`: every dead callback that
/// died at or after `since` goes back in the outbox and is delivered again
/// on the full retry schedule (same webhook-id), oldest first.
#[utoipa::path(post, path = "/callbacks/redrive", tag = "callbacks", params(RedriveQuery),
    responses((status = 200, description = "The callbacks put back in the outbox", body = Redriven)))]
pub async fn redrive(
    State(engine): State<Engine>,
    Query(q): Query<RedriveQuery>,
) -> ApiResult<axum::Json<Redriven>> {
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
    let limit = crate::extract::page_limit(q.limit)?;
    let ids = engine.redrive_dead_callbacks(since, limit).await?;
    Ok(axum::Json(Redriven {
        success: true,
        count: ids.len(),
        callback_ids: ids,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Redriven {
    pub success: bool,
    pub count: usize,
    pub callback_ids: Vec<String>,
}
