//! Rows as they are stored. A status, kind or policy is decoded here, once,
//! into its enum (naga-core's `sqlx` feature): a value outside its set
//! (naga writes them from the enums; PostgreSQL's schema CHECKs them) is an
//! error, never a default.

use naga_core::{
    config::SessionPolicy, time::Millis, wire::TaskKind, CallStatus, DeliveryStatus, InboxStatus,
    MessageKind, MessageRole, TaskStatus,
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub seq: i64,
    pub id: String,
    pub kind: TaskKind,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
    pub query: Option<String>,
    pub callback_url: Option<String>,
    pub policy: SessionPolicy,
    pub fingerprint: Option<String>,
    pub status: TaskStatus,
    pub error: Option<String>,
    pub calls_count: i64,
    pub steps_count: i64,
    pub response: String,
    pub accepted_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

/// A batch an end claimed for its node (`TaskFinish::take_next`): its row
/// and its calls as stored (a JSON array), read in the same transaction.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HandedTask {
    #[sqlx(flatten)]
    pub task: TaskRow,
    pub calls: String,
}

impl TaskRow {
    /// When its status last changed: its end, else its start, else its
    /// acceptance (what `TaskFilter::updated_after` compares).
    pub fn updated_at(&self) -> Millis {
        self.finished_at
            .or(self.started_at)
            .unwrap_or(self.accepted_at)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CallRow {
    pub task_id: String,
    pub idx: i64,
    pub payload: String,
    pub status: CallStatus,
    pub result: Option<String>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StepRow {
    pub task_id: String,
    pub session_id: String,
    pub step_no: i64,
    pub call_idx: Option<i64>,
    pub purpose: Option<String>,
    pub content: Option<String>,
    pub output: Option<String>,
    pub analysis: Option<String>,
    pub success: bool,
    pub error: Option<String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub created_at: Millis,
    pub last_activity_at: Millis,
    pub task_count: i64,
    pub active_tasks: i64,
    pub analysis_sessions: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyFactRow {
    pub key: String,
    pub session_id: String,
    pub task_id: String,
    pub value: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FailedAttemptRow {
    pub session_id: String,
    pub command: String,
    pub count: i64,
    pub last_error: Option<String>,
    pub last_task_id: Option<String>,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CompressedMemoryRow {
    pub id: i64,
    pub session_id: String,
    pub task_id: Option<String>,
    pub method: String,
    pub summary: String,
    pub created_at: Millis,
}

/// Which outbox a row is in: the callbacks tasks owe, or the UI
/// notifications of follow-ups. Both are delivered the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Outbox {
    #[default]
    Callbacks,
    Notifications,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CallbackRow {
    /// Not a column: which table the row was read from.
    #[sqlx(skip)]
    pub outbox: Outbox,
    pub seq: i64,
    pub id: String,
    pub task_id: String,
    pub url: String,
    /// Empty when the row was read without it (listed, or claimed: a
    /// delivery reads it as its attempt starts, [`CallbackRow::body_len`]).
    pub body: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
    /// The body's length in bytes when it was left out (0 otherwise).
    #[sqlx(default)]
    pub body_len: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub session_id: String,
    pub role: MessageRole,
    pub content: String,
    pub kind: MessageKind,
    pub task_id: Option<String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConversationRow {
    pub session_id: String,
    pub messages: i64,
    pub created_at: Millis,
    pub last_activity_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DispatchRow {
    pub request_id: String,
    pub session_id: String,
    pub analysis_session_id: String,
    pub kind: TaskKind,
    pub user_message: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InboxRow {
    pub key: String,
    pub task_id: String,
    pub session_id: String,
    pub body: String,
    pub status: InboxStatus,
    pub reply_message_id: Option<i64>,
    pub received_at: Millis,
}

/// A node that ran on this store, and what it holds now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NodeRow {
    pub id: String,
    pub started_at: Millis,
    pub heartbeat_at: Millis,
    pub stopped_at: Option<Millis>,
    /// Unfinished tasks whose lease it holds.
    pub tasks: i64,
    /// Pending callbacks whose lease it holds.
    pub callbacks: i64,
}

/// A push config of a task (its URL as naga keeps it: token and
/// authentication in the fragment).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PushConfigRow {
    pub task_id: String,
    pub id: String,
    pub url: String,
    pub created_at: Millis,
}
