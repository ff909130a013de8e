//! Wire contracts of DESIGN.md: the JSON that clients and callback receivers
//! see. Field names are NagaAgent's and must not change.

use crate::config::SessionPolicy;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One call of a batch as the client sent it: its fields are the agent's
/// (or tool's) input and are kept verbatim.
pub type CallPayload = Map<String, Value>;

/// `POST /schedule` on the agent server (the seed's request).
#[derive(Debug, Clone, Deserialize)]
pub struct AgentScheduleRequest {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub agent_calls: Option<Vec<CallPayload>>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub analysis_session_id: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Overrides `[scheduler] session_policy` for this batch.
    #[serde(default)]
    pub multitask_strategy: Option<SessionPolicy>,
}

/// `POST /schedule` on the MCP server: `tool_calls` instead of `agent_calls`.
#[derive(Debug, Clone, Deserialize)]
pub struct McpScheduleRequest {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<CallPayload>>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub analysis_session_id: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub multitask_strategy: Option<SessionPolicy>,
}

/// The answer to `/schedule`, given before any call runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleResponse {
    pub success: bool,
    /// `scheduled` or `no_tasks`.
    pub status: String,
    pub task_id: Option<String>,
    pub message: String,
    pub accepted_at: String,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
}

/// The kind of calls a task holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Agent,
    Mcp,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Mcp => "mcp",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(Self::Agent),
            "mcp" => Some(Self::Mcp),
            _ => None,
        }
    }
}

/// What is POSTed to `callback_url` when a task ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackEnvelope {
    pub task_id: String,
    pub request_id: String,
    pub kind: TaskKind,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
    pub status: String,
    pub success: bool,
    pub error: Option<String>,
    pub results: Vec<Value>,
    pub completed_at: String,
    /// Increases with every callback this store emits: receivers order by it.
    pub sequence: i64,
    /// Upstream MCP receivers read `result: {success, results, message}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// Every error body: `{"success": false, "detail", "code"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub success: bool,
    pub detail: String,
    pub code: String,
}
