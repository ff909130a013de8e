//! The agent server (default 127.0.0.1:8001): docs/design.md's agent section.

mod chat;
mod events;
mod memory;
mod nodes;
mod schedule;
pub(crate) mod tasks;
mod tools;

use axum::Router;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use crate::state::AgentState;

pub fn router(state: AgentState) -> Router {
    let (router, _) = routes().split_for_parts();
    router.with_state(state)
}

/// A2A's HTTP+JSON binding: only for the A2A versions naga speaks.
fn a2a_rest() -> OpenApiRouter<AgentState> {
    OpenApiRouter::new()
        .routes(routes!(crate::a2a::rest::rest_send))
        .routes(routes!(crate::a2a::rest::rest_stream))
        .routes(routes!(crate::a2a::rest::rest_list))
        .routes(routes!(
            crate::a2a::rest::rest_task,
            crate::a2a::rest::rest_cancel
        ))
        .routes(routes!(
            crate::a2a::rest::rest_push_configs,
            crate::a2a::rest::rest_create_push_config
        ))
        .routes(routes!(
            crate::a2a::rest::rest_push_config,
            crate::a2a::rest::rest_delete_push_config
        ))
        .route_layer(axum::middleware::from_fn(crate::a2a::versioned))
}

/// Every route of the agent server, with its OpenAPI description.
pub fn routes() -> OpenApiRouter<AgentState> {
    OpenApiRouter::new()
        .routes(routes!(crate::health::agent))
        .routes(routes!(crate::health::ready))
        .routes(routes!(crate::health::metrics))
        .routes(routes!(openapi))
        .routes(routes!(schedule::schedule))
        .routes(routes!(schedule::analyze_and_execute))
        .routes(routes!(events::events))
        .routes(routes!(crate::dashboard::page))
        .routes(routes!(crate::dashboard::script))
        .routes(routes!(crate::dashboard::style))
        .routes(routes!(mcp))
        .routes(routes!(crate::gateway::resource_metadata))
        .routes(routes!(crate::gateway::mcp_resource_metadata))
        .routes(routes!(crate::a2a::agent_card))
        .routes(routes!(crate::a2a::jsonrpc))
        .merge(a2a_rest())
        .routes(routes!(chat::send))
        .routes(routes!(chat::history))
        .routes(routes!(tasks::list))
        .routes(routes!(tasks::get_one, tasks::cancel))
        .routes(routes!(tasks::cancel_post))
        .routes(routes!(tasks::add_step, tasks::steps))
        .routes(routes!(memory::task, memory::clear_task))
        .routes(routes!(memory::global, memory::clear_global))
        .routes(routes!(memory::sessions))
        .routes(routes!(memory::session))
        .routes(routes!(memory::session_memory, memory::clear_session))
        .routes(routes!(memory::session_tasks))
        .routes(routes!(memory::session_key_facts))
        .routes(routes!(memory::session_failed_attempts))
        .routes(routes!(memory::session_compressed))
        .routes(routes!(nodes::nodes))
        .routes(routes!(crate::callbacks::list))
        .routes(routes!(crate::callbacks::retry))
        .routes(routes!(crate::callbacks::redrive))
        .routes(routes!(tools::tools))
        .routes(routes!(tools::toolkits))
        .routes(routes!(tools::toolkit))
        .routes(routes!(tools::call_tool))
        .routes(routes!(tools::file_edit))
        .routes(routes!(tools::file_write))
        .routes(routes!(tools::file_read))
        .routes(routes!(tools::file_list))
        .routes(routes!(tools::cc_availability))
        .routes(routes!(tools::cc_execute))
}

/// `GET /openapi.json`: this server's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", body = Object)))]
async fn openapi() -> axum::response::Response {
    static DOC: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| crate::openapi::document(routes(), "naga agent server"));
    crate::openapi::serve(&DOC)
}

/// `/mcp`: naga as an MCP server (streamable HTTP: JSON-RPC in `POST`,
/// a session's stream on `GET`, its end on `DELETE`); see `gateway.rs`.
#[utoipa::path(method(get, post, delete), path = "/mcp", tag = "mcp",
    request_body(content = Object, description = "A JSON-RPC message of the MCP protocol"),
    responses((status = 200, description = "The JSON-RPC answer (JSON or a server-sent event stream)",
        body = Object)))]
async fn mcp(
    axum::extract::State(state): axum::extract::State<AgentState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let gateway = crate::gateway::Gateway::new(state.engine.clone());
    crate::gateway_legacy::serve(gateway, state.mcp, request).await
}
