//! naga's engine: accepting batches (`/schedule`), scheduling and running
//! them, agents, callback delivery and task memory. HTTP lives in
//! naga-server; storage in naga-store.
#![forbid(unsafe_code)]

pub mod agents;
pub mod assistant;
pub mod callbacks;
pub mod clock;
mod error;
pub mod executor;
pub mod feed;
mod intake;
pub mod llm;
pub mod mcp;
pub mod memory;
pub mod metrics;
mod node;
mod reads;
mod records;
pub mod retention;
pub mod retry;
pub mod scheduler;

pub use error::EngineError;
pub use intake::{Batch, Outcome, Scheduled};
pub use naga_store::backup;

/// The store's rows and commands the engine hands out or takes: the servers
/// reach the store only through the engine (naga-server does not depend on
/// naga-store).
pub mod rows {
    pub use naga_store::{
        CallRow, CallbackRow, CompressedMemoryRow, Counts, FailedAttemptRow, KeyFactRow,
        MemoryScope, MessageRow, NewMessage, NewStep, PushConfigRow, SessionRow, StepRow,
        StoreError, TaskFilter, TaskRow,
    };
}
pub use reads::Reads;
pub use records::Replay;

use agents::{AgentRegistry, ComputerControl, Echo, FileEditToolkit};
use callbacks::Callbacks;
use clock::Clock;
use executor::{AgentExecutor, Executor};
use mcp::{McpExecutor, McpHub};
use naga_core::config::Config;
use naga_store::Store;
use scheduler::Scheduler;
use std::{sync::Arc, time::Duration};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A cheap, cloneable handle to the running engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    scheduler: Scheduler,
    callbacks: Callbacks,
    agents: AgentRegistry,
    agent_executor: Arc<dyn Executor>,
    file_edit: Arc<FileEditToolkit>,
    computer_control: Arc<ComputerControl>,
    mcp: Arc<McpHub>,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
    /// Background tasks outside the scheduler and the callback worker
    /// (the assistant's listeners, LLM summaries): waited for at shutdown.
    background: TaskTracker,
    /// The store's size as the pruner last measured it.
    size: retention::SizeCell,
    /// Held while the engine runs (see `node`).
    feed: feed::TaskFeed,
    _node: node::NodeIdentity,
}

impl Engine {
    /// Opens the store, builds the agents and resumes what a previous run
    /// left unfinished (tasks and undelivered callbacks).
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Self, EngineError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            EngineError::Unavailable(format!(
                "cannot create the data dir `{}`: {e}",
                config.data_dir.display()
            ))
        })?;
        let store = Store::open(&config.database_url(), &config.store).await?;
        let node = node::NodeIdentity::acquire(&config.data_dir).map_err(|e| {
            EngineError::Unavailable(format!(
                "cannot keep this node's identity in `{}`: {e}",
                config.data_dir.join("nodes").display()
            ))
        })?;
        let stop = CancellationToken::new();
        let feed = feed::TaskFeed::default();
        let callbacks = Callbacks::new(
            store.clone(),
            node.id().to_owned(),
            config.callbacks.clone(),
            clock.clone(),
            stop.clone(),
            feed.clone(),
        )
        .map_err(EngineError::Invalid)?;
        if let Some(url) = &config.callbacks.ui_notify_url {
            callbacks
                .admit(url)
                .map_err(|e| EngineError::Invalid(format!("[callbacks] ui_notify_url: {e}")))?;
        }
        let (agents, file_edit, computer_control) = agents_of(&config)?;
        let agent_executor: Arc<dyn Executor> = Arc::new(AgentExecutor {
            agents: agents.clone(),
        });
        let scheduler = Scheduler::new(
            store.clone(),
            callbacks.clone(),
            clock.clone(),
            config.scheduler.clone(),
            agent_executor.clone(),
            config.llm.clone(),
            node.id().to_owned(),
            // (Its own: its drain abandons calls in flight, while callback
            // attempts in flight still get the rest of the grace period.)
            stop.child_token(),
            feed.clone(),
        );
        let mcp_path = config.mcp_config_path();
        let mcp_specs = mcp::load_config(&mcp_path).map_err(EngineError::Invalid)?;
        tracing::info!(config = %mcp_path.display(), servers = mcp_specs.len(), "MCP servers configured");
        let mcp = Arc::new(McpHub::new(
            mcp_specs,
            Duration::from_millis(config.mcp.call_timeout_ms),
        ));
        scheduler.set_mcp_executor(Arc::new(McpExecutor { hub: mcp.clone() }));
        let engine = Self {
            inner: Arc::new(Inner {
                config,
                store,
                scheduler,
                callbacks,
                agents,
                agent_executor,
                file_edit,
                computer_control,
                mcp,
                clock,
                stop,
                feed,
                background: TaskTracker::new(),
                size: Default::default(),
                _node: node,
            }),
        };
        let tasks = engine.inner.scheduler.recover().await?;
        let now = engine.inner.clock.now_ms();
        engine.inner.scheduler.record_heartbeat(now, true).await;
        engine.inner.scheduler.spawn_maintenance();
        engine.keep_metrics();
        engine.spawn_background(retention::keep_pruning(
            engine.inner.store.clone(),
            engine.inner.config.retention.clone(),
            engine.inner.clock.clone(),
            engine.inner.size.clone(),
            engine.inner.stop.clone(),
        ));
        if engine.inner.config.runs(naga_core::config::Service::Mcp) {
            engine.inner.mcp.start_all();
        }
        tracing::info!(resumed_tasks = tasks, "engine started");
        Ok(engine)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }
    /// The store itself, for tests that stage what a crash leaves behind;
    /// only with the `test-support` feature (a dev-dependency's).
    #[cfg(feature = "test-support")]
    pub fn store_for_tests(&self) -> &Store {
        &self.inner.store
    }
    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }
    pub fn callbacks(&self) -> &Callbacks {
        &self.inner.callbacks
    }
    pub fn agents(&self) -> &AgentRegistry {
        &self.inner.agents
    }
    pub fn agent_executor(&self) -> &Arc<dyn Executor> {
        &self.inner.agent_executor
    }
    pub fn file_edit(&self) -> &FileEditToolkit {
        &self.inner.file_edit
    }
    pub fn computer_control(&self) -> &ComputerControl {
        &self.inner.computer_control
    }
    pub fn mcp(&self) -> &Arc<McpHub> {
        &self.inner.mcp
    }
    /// The live feed of task events (`GET /events`).
    pub fn feed(&self) -> &feed::TaskFeed {
        &self.inner.feed
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Graceful stop: calls in flight get `grace` to finish, nothing new
    /// starts, the rest is released for the next run; callback attempts in
    /// flight finish within what is left of `grace` and are recorded, no
    /// new one starts (pending ones stay in the outbox); the store closes
    /// after its last commit.
    ///
    /// Every background task (deliveries, listeners, heartbeats, sweeps)
    /// ends on one signal, this engine's stop; leases are let go of only
    /// once nothing here runs or delivers any more (another node may take
    /// them at once).
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.inner.scheduler.drain(grace).await;
        // The callbacks of tasks that ended meanwhile, and attempts in
        // flight, get what is left of the grace period.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.inner.callbacks.drain(left).await;
        self.inner.stop.cancel();
        self.inner.callbacks.close().await;
        let background = &self.inner.background;
        background.close();
        if tokio::time::timeout(Duration::from_secs(5), background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running after 5 s: left behind");
        }
        self.inner.scheduler.release_leases().await;
        self.inner.mcp.shutdown().await;
        self.inner.store.close().await;
        tracing::info!("engine stopped");
    }

    /// Runs `task` as one of the engine's background tasks: it must end
    /// once [`Engine::stopping`] fires; shutdown waits for it.
    pub fn spawn_background<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.background.spawn(task);
    }

    /// `GET /metrics`: Prometheus text, with the gauges read from the store
    /// now (left out when the store cannot answer: the counters still are).
    pub async fn metrics_text(&self) -> String {
        let gauges = match self.inner.store.gauges().await {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the store's gauges cannot be read");
                None
            }
        };
        metrics::render(gauges)
    }

    /// Installs the process's metrics recorder (once) and folds its
    /// samples into their buckets every few seconds, until the engine stops.
    fn keep_metrics(&self) {
        let Some(handle) = metrics::handle() else {
            return;
        };
        let (stop, clock) = (self.inner.stop.clone(), self.inner.clock.clone());
        self.spawn_background(async move {
            loop {
                tokio::select! {
                    _ = clock.sleep(metrics::UPKEEP_EVERY) => handle.run_upkeep(),
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    /// The store's size as last measured (every `[retention] every`).
    pub fn store_size(&self) -> Option<retention::MeasuredSize> {
        let size = self.inner.size.lock().unwrap_or_else(|p| p.into_inner());
        size.clone()
    }

    /// Fires when the engine stops.
    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stop
    }
}

/// The HTTP client for naga's own services (the API server's dispatches
/// to the agent and MCP servers): it carries `[auth] token`, which goes
/// nowhere else (never to a callback URL).
pub fn own_services_client(config: &Config) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &config.auth.token {
        if let Ok(mut value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap_or_default()
}

/// The agents of `[agents]`: file_edit in its root, computer_control (with
/// a planner when a vision model is configured) and echo.
fn agents_of(
    config: &Config,
) -> Result<(AgentRegistry, Arc<FileEditToolkit>, Arc<ComputerControl>), EngineError> {
    let root = config.file_edit_root();
    let file_edit = Arc::new(FileEditToolkit::new(root.clone()).map_err(|e| {
        EngineError::Unavailable(format!(
            "cannot create the file_edit root `{}`: {e}",
            root.display()
        ))
    })?);
    let cc = &config.agents.computer_control;
    let planner = cc.vision_model.as_deref().and_then(|model| {
        Some(agents::Planner {
            llm: llm::LlmClient::from_config(&config.llm)?.with_model(model),
            max_steps: cc.max_steps,
            max_time: Duration::from_secs(cc.max_seconds),
        })
    });
    let computer_control = Arc::new(ComputerControl::new(
        cc.apps.clone(),
        config.data_dir.join("screenshots"),
        planner,
    ));
    let agents = AgentRegistry::default()
        .with(Arc::new(Echo))
        .with(file_edit.clone())
        .with(computer_control.clone())
        .with_default(&config.agents.default_agent);
    Ok((agents, file_edit, computer_control))
}
