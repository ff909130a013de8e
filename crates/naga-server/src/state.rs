//! What the servers' handlers share: one state per server, built in
//! `lib.rs`, read by every handler module (none of which imports another's).

use axum::extract::FromRef;
use naga_engine::{assistant::Assistant, Engine};

/// What the agent server's handlers read: the engine, and the API server's
/// assistant when it runs in this process (the dashboard's chat panel).
#[derive(Clone)]
pub struct AgentState {
    pub engine: Engine,
    pub assistant: Option<Assistant>,
    /// naga as an MCP server (`/mcp`).
    pub mcp: crate::gateway::McpService,
}

impl FromRef<AgentState> for Engine {
    fn from_ref(state: &AgentState) -> Engine {
        state.engine.clone()
    }
}

/// What the API server's handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub assistant: Assistant,
}
