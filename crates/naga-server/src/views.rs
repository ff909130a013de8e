//! What the HTTP APIs answer, typed: stored rows as naga shows them, and
//! the envelopes several routes share. Each struct is both what a handler
//! returns and the source of its schema in `/openapi.json`.

use naga_core::{
    config::SessionPolicy,
    time::{iso, iso_opt},
    wire::TaskKind,
    CallStatus, DeliveryStatus, TaskStatus,
};
use naga_engine::callbacks::a2a::public_url;
use naga_engine::rows::{
    CallRow, CallbackRow, CompressedMemoryRow, FailedAttemptRow, KeyFactRow, SessionRow, StepRow,
    TaskRow,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// Stored JSON text as JSON (text that is not JSON, as a string).
pub fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// A task (a batch of calls) as naga shows it; times are RFC 3339.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Task {
    pub task_id: String,
    /// The same as `task_id` (the seed's name for it).
    pub request_id: String,
    pub kind: TaskKind,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
    pub query: Option<String>,
    pub status: TaskStatus,
    pub error: Option<String>,
    pub policy: SessionPolicy,
    pub calls_count: i64,
    pub steps_count: i64,
    pub callback_url: Option<String>,
    pub accepted_at: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The order in which the store accepted the task.
    pub sequence: i64,
}

impl From<&TaskRow> for Task {
    fn from(t: &TaskRow) -> Self {
        Self {
            task_id: t.id.clone(),
            request_id: t.id.clone(),
            kind: t.kind,
            session_id: t.session_id.clone(),
            analysis_session_id: t.analysis_session_id.clone(),
            query: t.query.clone(),
            status: t.status,
            error: t.error.clone(),
            policy: t.policy,
            calls_count: t.calls_count,
            steps_count: t.steps_count,
            callback_url: t.callback_url.as_deref().map(|u| public_url(u).to_owned()),
            accepted_at: iso(t.accepted_at),
            created_at: iso(t.accepted_at),
            started_at: iso_opt(t.started_at),
            finished_at: iso_opt(t.finished_at),
            sequence: t.seq,
        }
    }
}

/// One call of a task: what was asked and what came of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Call {
    pub index: i64,
    /// The call as the client sent it.
    pub call: Value,
    pub status: CallStatus,
    /// The agent's or tool's result once the call ended.
    pub result: Option<Value>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl From<&CallRow> for Call {
    fn from(c: &CallRow) -> Self {
        Self {
            index: c.idx,
            call: parse_json(&c.payload),
            status: c.status,
            result: c.result.as_deref().map(parse_json),
            started_at: iso_opt(c.started_at),
            finished_at: iso_opt(c.finished_at),
        }
    }
}

/// A step a task recorded (by its agent, or posted by a client).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Step {
    pub step_id: i64,
    pub task_id: String,
    pub session_id: String,
    pub call_index: Option<i64>,
    pub purpose: Option<String>,
    pub content: Option<String>,
    pub output: Option<String>,
    pub analysis: Option<String>,
    pub success: bool,
    pub error: Option<String>,
    pub created_at: String,
}

impl From<&StepRow> for Step {
    fn from(s: &StepRow) -> Self {
        Self {
            step_id: s.step_no,
            task_id: s.task_id.clone(),
            session_id: s.session_id.clone(),
            call_index: s.call_idx,
            purpose: s.purpose.clone(),
            content: s.content.clone(),
            output: s.output.clone(),
            analysis: s.analysis.clone(),
            success: s.success,
            error: s.error.clone(),
            created_at: iso(s.created_at),
        }
    }
}

/// A session of the scheduler (the tasks that named it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Session {
    pub session_id: String,
    pub created_at: String,
    pub last_activity_at: String,
    pub task_count: i64,
    pub active_tasks: i64,
    pub analysis_sessions: i64,
}

impl From<&SessionRow> for Session {
    fn from(s: &SessionRow) -> Self {
        Self {
            session_id: s.id.clone(),
            created_at: iso(s.created_at),
            last_activity_at: iso(s.last_activity_at),
            task_count: s.task_count,
            active_tasks: s.active_tasks,
            analysis_sessions: s.analysis_sessions,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyFact {
    pub key: String,
    pub value: String,
    pub task_id: String,
    pub session_id: String,
    pub created_at: String,
}

impl From<&KeyFactRow> for KeyFact {
    fn from(k: &KeyFactRow) -> Self {
        Self {
            key: k.key.clone(),
            value: k.value.clone(),
            task_id: k.task_id.clone(),
            session_id: k.session_id.clone(),
            created_at: iso(k.created_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FailedAttempt {
    pub command: String,
    pub count: i64,
    pub last_error: Option<String>,
    pub last_task_id: Option<String>,
    pub session_id: String,
    pub updated_at: String,
}

impl From<&FailedAttemptRow> for FailedAttempt {
    fn from(f: &FailedAttemptRow) -> Self {
        Self {
            command: f.command.clone(),
            count: f.count,
            last_error: f.last_error.clone(),
            last_task_id: f.last_task_id.clone(),
            session_id: f.session_id.clone(),
            updated_at: iso(f.updated_at),
        }
    }
}

/// A finished task's memory, summarized.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Compressed {
    pub id: i64,
    pub session_id: String,
    pub task_id: Option<String>,
    pub method: String,
    pub summary: Value,
    pub created_at: String,
}

impl From<&CompressedMemoryRow> for Compressed {
    fn from(m: &CompressedMemoryRow) -> Self {
        Self {
            id: m.id,
            session_id: m.session_id.clone(),
            task_id: m.task_id.clone(),
            method: m.method.clone(),
            summary: parse_json(&m.summary),
            created_at: iso(m.created_at),
        }
    }
}

/// A callback in the outbox and how its delivery goes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Callback {
    pub id: String,
    pub task_id: String,
    pub url: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sequence: i64,
    pub created_at: String,
    pub next_attempt_at: String,
    pub delivered_at: Option<String>,
}

impl From<&CallbackRow> for Callback {
    fn from(c: &CallbackRow) -> Self {
        Self {
            id: c.id.clone(),
            task_id: c.task_id.clone(),
            url: public_url(&c.url).to_owned(),
            status: c.status,
            attempts: c.attempts,
            last_error: c.last_error.clone(),
            sequence: c.seq,
            created_at: iso(c.created_at),
            next_attempt_at: iso(c.next_attempt_at),
            delivered_at: iso_opt(c.delivered_at),
        }
    }
}

/// Rows of one kind as views of another.
pub fn all<'a, R: 'a, V: From<&'a R>>(rows: &'a [R]) -> Vec<V> {
    rows.iter().map(V::from).collect()
}

/// `{"success": true, "message", "removed"}` with what it removed from.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    pub success: bool,
    pub message: String,
    pub removed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `success` (upstream's API server says it so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

impl Removed {
    pub fn new(message: String, removed: u64) -> Self {
        Self {
            success: true,
            message,
            removed,
            task_id: None,
            session_id: None,
            status: None,
        }
    }
}

/// `?limit=&offset=` of a listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}
