//! naga's HTTP services: one axum router per service, sharing one engine.
//! Handlers are thin: parse, call the engine, map the result.
#![forbid(unsafe_code)]

mod a2a;
pub mod agent;
pub mod api;
mod callbacks;
mod dashboard;
mod error;
mod extract;
mod faces;
mod gateway;
mod gateway_legacy;
mod gateway_sessions;
mod guard;
mod health;
mod jsonrpc;
mod listener;
pub mod mcp;
mod openapi;
mod state;
mod ui;
mod upstream;
mod views;

pub use error::{ApiError, ApiResult};
pub use naga_engine::clock::{Clock, ManualClock, SystemClock};

use anyhow::Context;
use axum::{
    extract::DefaultBodyLimit,
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use naga_core::config::{Config, Service};
use naga_engine::{
    assistant::{Assistant, Links},
    Engine,
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

/// Largest request body accepted (1 MiB): larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The layers every service shares: body limit, JSON 404/405, a panic
/// turned into a JSON 500, request tracing. One stack, applied once to each
/// route: each `Router::layer` boxes every route again, and a request then
/// clones one box per layer.
pub fn with_common_layers(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            tower::ServiceBuilder::new()
                // Server faults are logged where they happen
                // (ApiError::Internal); a 503 for a missing LLM is not an
                // error of the server.
                .layer(TraceLayer::new_for_http().on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ))
                .layer(CatchPanicLayer::custom(
                    |_: Box<dyn std::any::Any + Send>| {
                        ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
                    },
                ))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
}

async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(format!("no endpoint `{}`", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("`{method} {}` is not supported", uri.path()),
    )
    .into_response()
}

/// A running naga: the engine and the services this process serves.
pub struct Running {
    pub engine: Engine,
    pub api_addr: Option<SocketAddr>,
    pub agent_addr: Option<SocketAddr>,
    pub mcp_addr: Option<SocketAddr>,
    stop: CancellationToken,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, stops the engine:
    /// requests and running calls share one `grace` period.
    pub async fn shutdown(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.stop.cancel();
        for s in self.servers {
            let _ = tokio::time::timeout_at(deadline, s).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.engine.shutdown(left).await;
    }
}

async fn bind(addr: &str, service: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {service} server (is another naga running? set --{service}-addr)"))
}

/// Starts the engine and the configured services on their addresses
/// (port 0 picks a free port: see the returned addresses).
pub async fn start(mut config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    // Bind first: a taken port fails before anything starts.
    let agent_listener = match config.runs(Service::Agent) {
        true => Some(bind(&config.agent_addr, "agent").await?),
        false => None,
    };
    let mcp_listener = match config.runs(Service::Mcp) {
        true => Some(bind(&config.mcp_addr, "mcp").await?),
        false => None,
    };
    let api_listener = match config.runs(Service::Api) {
        true => Some(bind(&config.api_addr, "api").await?),
        false => None,
    };
    // Where each service is: this process's listeners, else the configured addresses.
    let url = |l: &Option<TcpListener>, configured: &str| match l
        .as_ref()
        .and_then(|l| l.local_addr().ok())
    {
        Some(a) => format!("http://{a}"),
        None => format!("http://{configured}"),
    };
    let links = Links {
        api: url(&api_listener, &config.api_addr),
        agent: url(&agent_listener, &config.agent_addr),
        mcp: url(&mcp_listener, &config.mcp_addr),
    };
    for (listener, service) in [
        (&agent_listener, "agent"),
        (&mcp_listener, "mcp"),
        (&api_listener, "api"),
    ] {
        if let Some(addr) = listener.as_ref().and_then(|l| l.local_addr().ok()) {
            guard::Guard::check_bind(&config, addr, service)?;
        }
    }
    // With a token, naga's callback routes take only signed callbacks: its
    // own services must sign theirs even when no secret is configured.
    if let (Some(token), None) = (&config.auth.token, &config.callbacks.secret) {
        config.callbacks.secret = Some(naga_engine::callbacks::secret_from_token(token));
        tracing::info!(
            "callbacks signed with a key derived from [auth] token ([callbacks] secret \
            is not set): naga's own services verify each other's; set a secret to share it with \
            other receivers"
        );
    }
    let engine = Engine::start(config.clone(), clock)
        .await
        .context("cannot start the engine")?;
    let stop = CancellationToken::new();
    let mut servers = Vec::new();
    let mut serve = |listener: Option<TcpListener>, router: Router, name: &str| {
        let listener = listener?;
        let addr = listener.local_addr().ok()?;
        let app = with_common_layers(router);
        let (stop, config) = (stop.clone(), config.clone());
        servers.push(tokio::spawn(async move {
            guard::serve(listener, app, &config, stop).await
        }));
        tracing::info!(%addr, "{name} server listening");
        Some(addr)
    };
    // The API server's assistant, when it runs here (the dashboard on the
    // agent server chats through it too).
    let assistant = api_listener
        .is_some()
        .then(|| Assistant::new(engine.clone(), links));
    let agent = agent::AgentState {
        engine: engine.clone(),
        assistant: assistant.clone(),
        mcp: gateway::service(&engine),
    };
    let agent_addr = serve(agent_listener, agent::router(agent), "agent");
    let mcp_addr = serve(mcp_listener, mcp::router(engine.clone()), "MCP");
    let api_addr = match assistant {
        Some(assistant) => {
            let state = api::ApiState {
                engine: engine.clone(),
                assistant,
            };
            serve(api_listener, api::router(state), "API")
        }
        None => None,
    };
    Ok(Running {
        engine,
        api_addr,
        agent_addr,
        mcp_addr,
        stop,
        servers,
    })
}
