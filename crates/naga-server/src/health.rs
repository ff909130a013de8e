//! `/health` (is the process up, and is it well) and `/ready` (can it take
//! work now) of every service.

use axum::{extract::State, http::StatusCode, Json};
use naga_core::time::iso;
use naga_engine::Engine;
use serde_json::{json, Value};

/// `status` is `healthy`, or `degraded` while the store cannot write (the
/// process still answers reads; accepted work resumes once it can) or when
/// its file was found damaged.
pub fn body(engine: &Engine, service: &str) -> Value {
    let fault = engine.reads().write_fault();
    let damage = engine.reads().damage();
    json!({
        "status": if fault.is_some() || damage.is_some() { "degraded" } else { "healthy" },
        "service": service,
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        // The batches this node holds (queued or running), against the
        // most it takes (`max_queued`).
        "queue": {
            "agent": engine.scheduler().held(naga_core::wire::TaskKind::Agent),
            "mcp": engine.scheduler().held(naga_core::wire::TaskKind::Mcp),
            "max_queued": engine.config().scheduler.max_queued,
        },
        "store": {
            "writable": fault.is_none(),
            "error": fault.as_ref().map(|f| f.error.clone()),
            "failing_since": fault.as_ref().map(|f| iso(f.since_ms)),
            "damage": damage,
        },
    })
}

/// `GET /metrics`: Prometheus' text format (behind the token, as every
/// route but `/health`).
pub async fn metrics(State(engine): State<Engine>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        engine.metrics_text().await,
    )
}

/// With upstream's `modules` (which of its parts are up).
pub async fn agent(State(engine): State<Engine>) -> Json<Value> {
    let mut v = body(&engine, "agent_server");
    v["modules"] = json!({
        "analyzer": engine.config().runs(naga_core::config::Service::Api),
        "computer_control": engine.computer_control().availability().ready,
        "task_scheduler": true,
    });
    Json(v)
}

pub async fn mcp(State(engine): State<Engine>) -> Json<Value> {
    Json(body(&engine, "mcp_server"))
}

/// `GET /ready`: 200 when new work can be accepted, 503 while the store
/// cannot write or once its file was found damaged (a load balancer sends
/// requests elsewhere meanwhile).
pub async fn ready(State(engine): State<Engine>) -> (StatusCode, Json<Value>) {
    if let Some(damage) = engine.reads().damage() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"ready": false, "success": false, "code": "store_damaged",
                "detail": format!("the store's file is damaged ({damage}): restore it from a backup")}),
            ),
        );
    }
    match engine.reads().write_fault() {
        None => (StatusCode::OK, Json(json!({"ready": true}))),
        Some(f) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"ready": false, "success": false, "code": "store_unavailable",
                "detail": format!("the store cannot write: {}", f.error),
                "failing_since": iso(f.since_ms)}),
            ),
        ),
    }
}
