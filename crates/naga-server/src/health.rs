//! `/health` (is the process up, and is it well) and `/ready` (can it take
//! work now) of every service.

use axum::{extract::State, http::StatusCode, Json};
use naga_core::time::iso;
use naga_engine::Engine;
use serde::Serialize;
use utoipa::ToSchema;

/// Whether a service is up and well.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `healthy`, or `degraded` while the store cannot write (the process
    /// still answers reads; accepted work resumes once it can) or when its
    /// file was found damaged.
    pub status: &'static str,
    pub service: &'static str,
    pub version: &'static str,
    pub timestamp: String,
    pub queue: Queue,
    pub store: StoreHealth,
}

/// The batches this node runs now (waiting ones are in the store, for any
/// node), and the overload limit on unfinished agent batches (0: none).
#[derive(Debug, Serialize, ToSchema)]
pub struct Queue {
    pub agent: usize,
    pub mcp: usize,
    pub max_queued: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreHealth {
    pub writable: bool,
    pub error: Option<String>,
    pub failing_since: Option<String>,
    pub damage: Option<String>,
    /// How big the store is, as last measured (every `[retention] every`;
    /// absent until the first measure).
    pub size: Option<StoreSize>,
}

/// The store's size: bytes, and rows per table.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreSize {
    pub measured_at: String,
    /// SQLite: the file (pages in use and free); PostgreSQL: the database.
    pub bytes: i64,
    /// Of those, pages free for reuse (SQLite; 0 on PostgreSQL).
    pub free_bytes: i64,
    pub tables: Vec<TableSize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TableSize {
    pub table: String,
    /// Rows (PostgreSQL: the statistics' estimate).
    pub rows: i64,
    /// With its indexes (PostgreSQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// Row versions waiting for vacuum (PostgreSQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_rows: Option<i64>,
}

fn store_size(engine: &Engine) -> Option<StoreSize> {
    let measured = engine.store_size()?;
    Some(StoreSize {
        measured_at: iso(measured.measured_at),
        bytes: measured.size.bytes,
        free_bytes: measured.size.free_bytes,
        tables: measured
            .size
            .tables
            .into_iter()
            .map(|t| TableSize {
                table: t.table,
                rows: t.rows,
                bytes: t.bytes,
                dead_rows: t.dead_rows,
            })
            .collect(),
    })
}

pub fn body(engine: &Engine, service: &'static str) -> Health {
    let fault = engine.reads().write_fault();
    let damage = engine.reads().damage();
    Health {
        status: if fault.is_some() || damage.is_some() {
            "degraded"
        } else {
            "healthy"
        },
        service,
        version: env!("CARGO_PKG_VERSION"),
        timestamp: chrono::Utc::now().to_rfc3339(),
        queue: Queue {
            agent: engine.scheduler().held(naga_core::wire::TaskKind::Agent),
            mcp: engine.scheduler().held(naga_core::wire::TaskKind::Mcp),
            max_queued: engine.config().scheduler.max_queued,
        },
        store: StoreHealth {
            writable: fault.is_none(),
            error: fault.as_ref().map(|f| f.error.clone()),
            failing_since: fault.as_ref().map(|f| iso(f.since_ms)),
            damage,
            size: store_size(engine),
        },
    }
}

/// `GET /metrics`: Prometheus' text format (behind the token, as every
/// route but `/health`).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain")))]
pub async fn metrics(State(engine): State<Engine>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        engine.metrics_text().await,
    )
}

/// The agent server's health, with upstream's `modules` (which of its
/// parts are up).
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentHealth {
    #[serde(flatten)]
    pub health: Health,
    pub modules: Modules,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Modules {
    pub analyzer: bool,
    pub computer_control: bool,
    pub task_scheduler: bool,
}

/// `GET /health` (open without the token).
#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses((status = 200, description = "Up; `status` says whether it is well", body = AgentHealth)))]
pub async fn agent(State(engine): State<Engine>) -> Json<AgentHealth> {
    Json(AgentHealth {
        health: body(&engine, "agent_server"),
        modules: Modules {
            analyzer: engine.config().runs(naga_core::config::Service::Api),
            computer_control: engine.computer_control().availability().ready,
            task_scheduler: true,
        },
    })
}

/// `GET /health` (open without the token).
#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses((status = 200, description = "Up; `status` says whether it is well", body = Health)))]
pub async fn mcp(State(engine): State<Engine>) -> Json<Health> {
    Json(body(&engine, "mcp_server"))
}

/// Whether new work can be accepted now; why not when not.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// `store_damaged` or `store_unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
}

/// `GET /ready`: 200 when new work can be accepted, 503 while the store
/// cannot write or once its file was found damaged (a load balancer sends
/// requests elsewhere meanwhile).
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Takes work", body = Ready),
        (status = 503, description = "Cannot take work now", body = Ready)))]
pub async fn ready(State(engine): State<Engine>) -> (StatusCode, Json<Ready>) {
    let not_ready = |code, detail, failing_since| Ready {
        ready: false,
        success: Some(false),
        code: Some(code),
        detail: Some(detail),
        failing_since,
    };
    if let Some(damage) = engine.reads().damage() {
        let detail = format!("the store's file is damaged ({damage}): restore it from a backup");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(not_ready("store_damaged", detail, None)),
        );
    }
    match engine.reads().write_fault() {
        None => (
            StatusCode::OK,
            Json(Ready {
                ready: true,
                success: None,
                code: None,
                detail: None,
                failing_since: None,
            }),
        ),
        Some(f) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(not_ready(
                "store_unavailable",
                format!("the store cannot write: {}", f.error),
                Some(iso(f.since_ms)),
            )),
        ),
    }
}
