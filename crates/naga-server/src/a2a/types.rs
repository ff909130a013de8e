//! What the A2A face answers, typed (A2A 1.0's JSON names): the agent
//! card, a sent message read back, the stream's events, push configs, a
//! page of tasks, errors. A task itself is the engine's (`callbacks::a2a`).

use serde::Serialize;
use serde_json::Value;

/// The agent card (`/.well-known/agent-card.json`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCard {
    pub name: &'static str,
    pub description: &'static str,
    pub version: &'static str,
    pub supported_interfaces: Vec<AgentInterface>,
    pub capabilities: Capabilities,
    pub default_input_modes: [&'static str; 2],
    pub default_output_modes: [&'static str; 2],
    pub skills: Vec<Skill>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_schemes: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_requirements: Option<Value>,
}

/// Where and how the agent is reached.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInterface {
    pub url: String,
    pub protocol_binding: &'static str,
    pub protocol_version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub streaming: bool,
    pub push_notifications: bool,
}

/// One of naga's agents, as a skill.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skill {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub tags: [&'static str; 1],
    pub input_modes: [&'static str; 2],
    pub output_modes: [&'static str; 2],
}

/// The modes naga takes and gives.
pub const MODES: [&str; 2] = ["text/plain", "application/json"];

/// A message a task was sent with, read back.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    pub message_id: String,
    pub context_id: String,
    pub task_id: String,
    pub role: &'static str,
    pub parts: Vec<Part>,
}

/// A message's part: text, or data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Part {
    #[serde(rename = "text")]
    Text(String),
    #[serde(rename = "data")]
    Data(Value),
}

/// One event of a stream (a `StreamResponse`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamEvent<'a> {
    Task(&'a Value),
    ArtifactUpdate {
        #[serde(rename = "taskId")]
        task_id: &'a str,
        #[serde(rename = "contextId")]
        context_id: &'a str,
        artifact: &'a Value,
        #[serde(rename = "lastChunk")]
        last_chunk: bool,
    },
    StatusUpdate {
        #[serde(rename = "taskId")]
        task_id: &'a str,
        #[serde(rename = "contextId")]
        context_id: &'a str,
        status: &'a Value,
    },
}

/// A task's push notification config, as shown (its secret never).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushConfig {
    pub id: String,
    pub task_id: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
}

#[derive(Serialize)]
pub struct Authentication {
    pub scheme: String,
}

/// `ListTaskPushNotificationConfigs`' answer.
#[derive(Serialize)]
pub struct PushConfigs {
    pub configs: Vec<PushConfig>,
}

/// A page of `ListTasks`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPage {
    pub tasks: Vec<Value>,
    pub next_page_token: String,
    pub page_size: i64,
    pub total_size: i64,
}

/// The `google.rpc.ErrorInfo` an A2A error carries.
#[derive(Serialize)]
pub struct ErrorInfo {
    #[serde(rename = "@type")]
    pub kind: &'static str,
    pub reason: &'static str,
    pub domain: &'static str,
}

impl ErrorInfo {
    pub fn of(reason: &'static str) -> Self {
        Self {
            kind: "type.googleapis.com/google.rpc.ErrorInfo",
            reason,
            domain: "a2a-protocol.org",
        }
    }
}

/// A JSON-RPC error of the A2A face.
#[derive(Serialize)]
pub struct RpcErrorBody {
    pub code: i64,
    pub message: String,
    pub data: [ErrorInfo; 1],
}

/// The HTTP+JSON binding's error (`{"error": …}`).
#[derive(Serialize)]
pub struct RestError {
    pub error: RestErrorBody,
}

#[derive(Serialize)]
pub struct RestErrorBody {
    pub code: u16,
    pub status: &'static str,
    pub message: String,
    pub details: [ErrorInfo; 1],
}
