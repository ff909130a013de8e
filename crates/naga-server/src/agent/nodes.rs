//! `GET /nodes`: the nodes that run on this store (one on SQLite; several
//! sharing a PostgreSQL database), each with its last heartbeat and what it
//! holds. Every node answers the same: it is read from the store.

use crate::error::ApiResult;
use axum::extract::State;
use naga_core::time::{iso, iso_opt};
use naga_engine::Engine;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Node {
    pub node_id: String,
    /// The node that answered.
    pub this: bool,
    /// Heard from within a lease and not stopped.
    pub alive: bool,
    pub started_at: String,
    pub last_heartbeat_at: String,
    /// When it stopped cleanly (letting go of its leases).
    pub stopped_at: Option<String>,
    /// Unfinished tasks whose lease it holds.
    pub tasks: i64,
    /// Pending callbacks whose lease it holds.
    pub callbacks: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    pub success: bool,
    /// The node that answered.
    pub node_id: String,
    /// Whether several nodes may share this store (PostgreSQL).
    pub shared: bool,
    /// A node not heard from for this long is taken for dead: its work
    /// goes to the others.
    pub lease_ms: u64,
    pub count: usize,
    pub nodes: Vec<Node>,
}

/// `GET /nodes`: last heard from first.
#[utoipa::path(get, path = "/nodes", tag = "operations",
    responses((status = 200, description = "The nodes on this store", body = NodeList)))]
pub async fn nodes(State(engine): State<Engine>) -> ApiResult<axum::Json<NodeList>> {
    let this = engine.scheduler().node_id().to_owned();
    let lease_ms = engine.config().scheduler.lease_ms;
    let now = engine.clock().now_ms();
    let nodes: Vec<Node> = engine
        .reads()
        .nodes(100)
        .await?
        .into_iter()
        .map(|n| Node {
            this: n.id == this,
            alive: n.stopped_at.is_none() && now - n.heartbeat_at <= lease_ms as i64,
            node_id: n.id,
            started_at: iso(n.started_at),
            last_heartbeat_at: iso(n.heartbeat_at),
            stopped_at: iso_opt(n.stopped_at),
            tasks: n.tasks,
            callbacks: n.callbacks,
        })
        .collect();
    Ok(axum::Json(NodeList {
        success: true,
        node_id: this,
        shared: engine.reads().shared(),
        lease_ms,
        count: nodes.len(),
        nodes,
    }))
}
