use axum::Json;
use serde_json::{json, Value};

fn health(service: &str) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "service": service,
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": chrono::Utc::now().to_rfc3339(),
    }))
}

pub async fn agent() -> Json<Value> {
    health("agent_server")
}

pub async fn mcp() -> Json<Value> {
    health("mcp_server")
}
