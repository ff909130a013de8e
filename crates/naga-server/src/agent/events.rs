//! `GET /events[?session_id=]`: the live feed of this node's tasks as
//! server-sent events (`status`, `call`, `callback`; `lagged` after falling
//! behind), as the dashboard and `naga tasks watch` follow them.

use crate::error::{ApiError, ApiResult};
use axum::{
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use naga_engine::Engine;
use serde::Deserialize;
use std::{convert::Infallible, time::Duration};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this session's tasks.
    session_id: Option<String>,
}

#[utoipa::path(get, path = "/events", tag = "tasks", params(EventsQuery),
    responses((status = 200, description = "Server-sent events: `open`, then `status`, `call`, \
        `callback` and `lagged` as JSON data", body = String, content_type = "text/event-stream")))]
pub async fn events(
    State(engine): State<Engine>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Response> {
    let session = q.session_id.filter(|s| !s.is_empty());
    if let Some(s) = &session {
        naga_core::SessionId::parse(s.as_str())
            .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    }
    let rx = engine.feed().subscribe();
    let stop = engine.stopping().clone();
    // The first frame says the feed is open: a client knows from then on
    // that it misses nothing.
    let open = Bytes::from_static(b"event: open\ndata: {\"type\":\"open\"}\n\n");
    let stream = futures::stream::unfold(
        (rx, session, Some(open)),
        move |(mut rx, session, first)| {
            let stop = stop.clone();
            async move {
                if let Some(open) = first {
                    return Some((Ok::<_, Infallible>(open), (rx, session, None)));
                }
                let frame = tokio::select! {
                    frame = rx.next_frame(session.as_deref()) => frame?,
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {
                        Bytes::from_static(b": keep-alive\n\n")
                    }
                    _ = stop.cancelled() => return None,
                };
                Some((Ok(frame), (rx, session, None)))
            }
        },
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
