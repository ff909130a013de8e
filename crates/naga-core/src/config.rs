//! The configuration model: what `naga serve` reads from its TOML file,
//! `NAGA_…` environment variables and flags (the binary merges them; this
//! module only describes the settings and their defaults).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The three services of docs/design.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Api,
    Agent,
    Mcp,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Api, Service::Agent, Service::Mcp];
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database and the agents' workspace live.
    pub data_dir: PathBuf,
    /// `sqlite:…` (default: `<data_dir>/naga.db`) or `postgres://…`.
    pub database_url: Option<String>,
    pub api_addr: String,
    pub agent_addr: String,
    pub mcp_addr: String,
    /// Services this process runs; empty means all of them.
    pub only: Vec<Service>,
    pub store: StoreConfig,
    pub scheduler: SchedulerConfig,
    pub callbacks: CallbackConfig,
    pub agents: AgentsConfig,
    pub mcp: McpConfig,
    pub llm: LlmConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub retention: RetentionConfig,
}

/// What a client may cost each listener: slow or idle clients are closed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A request's headers must arrive within this; it is also the longest
    /// an idle keep-alive connection is kept.
    pub header_timeout_ms: u64,
    /// A request's body must arrive whole within this (from its headers).
    pub body_timeout_ms: u64,
    /// Connections open at once per listener; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections: 4096,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            database_url: None,
            api_addr: "127.0.0.1:8000".into(),
            agent_addr: "127.0.0.1:8001".into(),
            mcp_addr: "127.0.0.1:8003".into(),
            only: Vec::new(),
            store: StoreConfig::default(),
            scheduler: SchedulerConfig::default(),
            callbacks: CallbackConfig::default(),
            agents: AgentsConfig::default(),
            mcp: McpConfig::default(),
            llm: LlmConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

impl Config {
    pub fn runs(&self, service: Service) -> bool {
        self.only.is_empty() || self.only.contains(&service)
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("naga.db").display()))
    }

    pub fn mcp_config_path(&self) -> PathBuf {
        self.mcp
            .config
            .clone()
            .unwrap_or_else(|| self.data_dir.join("mcp_servers.json"))
    }

    pub fn file_edit_root(&self) -> PathBuf {
        self.agents
            .file_edit
            .root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("workspace"))
    }
}

/// Who may use naga's services (SECURITY.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// When set (or `NAGA_AUTH_TOKEN`), every route but `/health` needs
    /// `Authorization: Bearer <token>`. Required to listen beyond loopback.
    pub token: Option<String>,
    /// Host names the services answer to besides `localhost` and IP
    /// addresses (a DNS-rebinding page reaches naga under a name of its
    /// own: any other `Host` is refused). `*` turns the check off.
    pub allowed_hosts: Vec<String>,
    /// Origins whose pages may call naga from a browser (CORS); none by
    /// default. `*` allows every origin.
    pub cors_origins: Vec<String>,
}

/// How hard SQLite syncs. `normal` (WAL) survives a crash of the process
/// (kill -9); `full` also survives a power cut, at a cost in throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub synchronous: Synchronous,
    /// Most write requests committed in one transaction (group commit).
    pub max_batch: usize,
    /// Read connections.
    pub read_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            max_batch: 512,
            read_connections: 4,
        }
    }
}

/// What happens when a batch arrives while its session has one active.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionPolicy {
    /// FIFO per session.
    #[default]
    Enqueue,
    Parallel,
    Reject,
    Interrupt,
}

impl SessionPolicy {
    pub const ALL: [SessionPolicy; 4] =
        [Self::Enqueue, Self::Parallel, Self::Reject, Self::Interrupt];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueue => "enqueue",
            Self::Parallel => "parallel",
            Self::Reject => "reject",
            Self::Interrupt => "interrupt",
        }
    }
}

crate::status::stored_enum!(SessionPolicy, "session policy");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Batches running at once, across sessions.
    pub workers: usize,
    pub session_policy: SessionPolicy,
    pub lease_ms: u64,
    /// How often a node writes its heartbeat; one silent for three beats is
    /// dead, and the nodes with room take its tasks over.
    pub heartbeat_ms: u64,
    pub call_timeout_ms: u64,
    pub task_timeout_ms: u64,
    /// Overload protection, off by default (0): with more unfinished agent
    /// batches than this in the store, new ones are refused with 429. The
    /// backlog waits in the store, not in memory, so none is needed for
    /// memory's sake.
    pub max_queued: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            workers: 256,
            session_policy: SessionPolicy::Enqueue,
            lease_ms: 30_000,
            heartbeat_ms: 2_000,
            call_timeout_ms: 300_000,
            task_timeout_ms: 3_600_000,
            max_queued: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackConfig {
    /// Hosts a `callback_url` may name. `loopback` stands for `localhost`,
    /// `127.0.0.0/8` and `::1`; `*` allows every host.
    pub allowed_hosts: Vec<String>,
    /// `whsec_<base64 key>`: signs callbacks per Standard Webhooks, and
    /// callbacks received must carry its signature. Required to listen
    /// beyond loopback.
    pub secret: Option<String>,
    /// Keys being rotated out: callbacks sent carry a signature for each
    /// too (receivers still on an old key verify them), and callbacks
    /// received signed with one are accepted.
    pub previous_secrets: Vec<String>,
    /// Attempts before a callback is dead-lettered (the first included).
    /// Past the schedule's end its last wait repeats.
    pub max_attempts: u32,
    /// The wait before each retry, as Svix spaces them: 5 s, 5 min, 30 min,
    /// 2 h, 5 h, 10 h, 10 h (about 27.6 h in all, each wait ±10%). Empty:
    /// exponential backoff from `backoff_base_ms` up to `backoff_max_ms`.
    pub retry_schedule_ms: Vec<u64>,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Per delivery attempt.
    pub timeout_ms: u64,
    /// Where the API server also POSTs every follow-up, as upstream's
    /// `show_tool_ai_response` UI notification (e.g. a NagaAgent UI's
    /// `/ui_notification`), through the same outbox as callbacks. Checked
    /// against `allowed_hosts`.
    pub ui_notify_url: Option<String>,
    /// Delivery attempts in flight at once on this node: the claimer of
    /// due retries (and of a dead node's deliveries) takes at most this
    /// many.
    pub concurrency: usize,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: vec!["loopback".into()],
            secret: None,
            previous_secrets: Vec::new(),
            max_attempts: 8,
            retry_schedule_ms: vec![
                5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
            ],
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            timeout_ms: 10_000,
            ui_notify_url: None,
            concurrency: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsConfig {
    /// Agent that runs the legacy `/analyze_and_execute` instructions.
    pub legacy_agent: String,
    /// Agent that runs a call whose `tool_name`/`task_type` names no agent
    /// of this server (upstream runs every agent call as computer_control).
    /// Empty: such a call fails, naming the agents there are.
    pub default_agent: String,
    pub file_edit: FileEditConfig,
    pub computer_control: ComputerControlConfig,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            legacy_agent: "computer_control".into(),
            default_agent: "computer_control".into(),
            file_edit: FileEditConfig::default(),
            computer_control: ComputerControlConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileEditConfig {
    /// The only directory the file_edit toolkit touches (default
    /// `<data_dir>/workspace`).
    pub root: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputerControlConfig {
    /// Apps `open` may start: name → program and arguments.
    pub apps: std::collections::BTreeMap<String, Vec<String>>,
    /// A vision model of `[llm]`'s endpoint: free-form instructions are
    /// then planned one action at a time from screenshots.
    pub vision_model: Option<String>,
    /// Most actions the planner takes for one instruction.
    pub max_steps: usize,
    /// Longest the planner works on one instruction.
    pub max_seconds: u64,
}

impl Default for ComputerControlConfig {
    fn default() -> Self {
        Self {
            apps: Default::default(),
            vision_model: None,
            max_steps: 10,
            max_seconds: 120,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// `mcpServers` JSON file (default `<data_dir>/mcp_servers.json`).
    pub config: Option<PathBuf>,
    /// Overload protection, off by default (0): with more unfinished MCP
    /// batches than this in the store, new ones are refused with 429.
    pub max_queued: usize,
    /// One tool call's limit; past it the call fails and the batch goes on.
    pub call_timeout_ms: u64,
    /// Most live sessions of naga's own MCP face (`/mcp`): past it the
    /// least recently used one is closed (its client's next request gets
    /// 404 and initializes again, as the transport says).
    pub max_sessions: usize,
    /// A session of naga's MCP face with no request for this long is closed.
    pub session_idle_ms: u64,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            config: None,
            max_queued: 0,
            call_timeout_ms: 60_000,
            max_sessions: 256,
            session_idle_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub model: Option<String>,
    pub temperature: f32,
    pub timeout_ms: u64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            api_key: None,
            model: None,
            temperature: 0.7,
            timeout_ms: 60_000,
        }
    }
}

/// How long each kind of record is kept once it is done with (docs/
/// configuration.md, "Retention"). Unfinished work is never removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Ended tasks, with their steps and push configs, after their end.
    pub tasks: Window,
    /// Delivered callbacks and UI notifications, after their delivery.
    pub callbacks: Window,
    /// Dead-lettered callbacks and notifications (an operator replays
    /// them), after their last attempt.
    pub dead_callbacks: Window,
    /// Conversation messages, dispatches, received callbacks and the
    /// session memory (compressed memories, failed-attempt counts), after
    /// they were written or last updated.
    pub conversations: Window,
    /// A pruned task's request id, after the prune: a resend within it is
    /// refused (`request_id_expired`), never run again.
    pub requests: Window,
    /// How often a node looks for what to prune.
    pub every: Window,
    /// Most tasks (each with its steps and callbacks), or rows of another
    /// kind, one prune transaction removes: small, so that a write that
    /// arrives meanwhile waits little (BENCHMARKS.md, "Issue 43").
    pub batch: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400_000;
        Self {
            tasks: Window::from_millis(7 * DAY),
            callbacks: Window::from_millis(DAY),
            dead_callbacks: Window::from_millis(30 * DAY),
            conversations: Window::from_millis(90 * DAY),
            requests: Window::from_millis(7 * DAY),
            every: Window::from_millis(60_000),
            batch: 50,
        }
    }
}

/// A duration written as people write them (`"7d"`, `"12h"`, `"30s"`,
/// `"1h 30m"`); `"0"` (or `0`) means for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(std::time::Duration);

impl Window {
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// The window as written (zero: for ever).
    pub fn duration(self) -> std::time::Duration {
        self.0
    }

    /// The window in milliseconds, `None` when records are kept for ever.
    pub fn millis(self) -> Option<i64> {
        let ms = i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX);
        (ms > 0).then_some(ms)
    }
}

impl std::str::FromStr for Window {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "0" {
            return Ok(Self(std::time::Duration::ZERO));
        }
        humantime::parse_duration(s).map(Self).map_err(|e| {
            format!(
                "`{s}` is not a duration ({e}): write e.g. \"7d\", \"12h\", \"30s\", or 0 for ever"
            )
        })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.is_zero() {
            true => f.write_str("0"),
            false => write!(f, "{}", humantime::format_duration(self.0)),
        }
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Number(u64),
        }
        match Written::deserialize(d)? {
            Written::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Written::Number(0) => Ok(Self(std::time::Duration::ZERO)),
            Written::Number(n) => Err(serde::de::Error::custom(format!(
                "{n} has no unit: write e.g. \"{n}s\" or \"{n}d\" (0 alone means for ever)"
            ))),
        }
    }
}
