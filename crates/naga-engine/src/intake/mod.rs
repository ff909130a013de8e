//! Accepting a batch: validation, idempotency, the session policy, the
//! durable commit, and only then the answer (the seed's `create_task`).
//!
//! Where each part is: this file, what a batch is and what accepting it
//! answers; `requests`, the servers' requests turned into a batch;
//! `admit`, the session's policy and the hand-over to the scheduler;
//! `commit`, the durable write; `answers`, the first answer and its
//! rebuilding; `legacy`, `/analyze_and_execute`.

mod admit;
mod answers;
mod commit;
mod legacy;
mod requests;

use naga_core::{
    config::SessionPolicy,
    wire::{RawCall, TaskKind},
};

/// Most calls in one batch.
pub const MAX_CALLS: usize = 1000;

/// A batch as both servers accept it.
pub struct Batch {
    pub kind: TaskKind,
    pub query: Option<String>,
    pub calls: Vec<RawCall>,
    pub session_id: Option<String>,
    pub analysis_session_id: Option<String>,
    pub request_id: Option<String>,
    pub callback_url: Option<String>,
    pub policy: Option<SessionPolicy>,
    /// What makes an identical batch still active answer instead (MCP).
    pub fingerprint: Option<String>,
    /// The callback is an A2A push (its URL carries the marker that
    /// [`crate::callbacks::a2a::push_url`] sets): only the A2A face says
    /// so; a client's `callback_url` carrying the marker is refused.
    pub push: bool,
}

/// The answer to `/schedule`: the JSON to send, and what this request did.
#[derive(Debug)]
pub struct Scheduled {
    pub response: String,
    pub outcome: Outcome,
    pub task_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed and scheduled.
    Created,
    /// The request id was known: the first answer, nothing ran again.
    Repeated,
    /// An identical batch of the session is still active: its answer.
    Duplicate,
    /// No calls: nothing stored.
    NoTasks,
}
