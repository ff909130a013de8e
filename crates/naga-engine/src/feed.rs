//! The live feed of what happens to tasks on this node (`GET /events` of
//! the agent server: the dashboard and `naga tasks watch` follow it): a
//! task queued or started, each call's end, the task's end, each delivery
//! of its callback.
//!
//! An event is rendered once, as the SSE frame every subscriber sends, and
//! only while someone listens (the hot path pays one atomic load
//! otherwise). A subscriber that falls more than [`BACKLOG`] events behind
//! is told how many it missed (`lagged`) and goes on from the newest.

use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Events kept for subscribers that have not read them yet.
pub const BACKLOG: usize = 1024;

/// One event: which session it belongs to (subscribers may follow one
/// session; `None`: not known here, every subscriber gets it), and its SSE
/// frame.
#[derive(Clone)]
pub struct Item {
    pub session_id: Option<Arc<str>>,
    pub frame: Bytes,
}

#[derive(Clone)]
pub struct TaskFeed {
    tx: broadcast::Sender<Item>,
}

impl Default for TaskFeed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

/// What an event says. `type` is the SSE event's name too.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event<'a> {
    /// The task's state changed (`queued`, `running`, or its end).
    Status {
        task_id: &'a str,
        session_id: &'a str,
        kind: &'a str,
        status: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
    /// One call of the task ended.
    Call {
        task_id: &'a str,
        session_id: &'a str,
        index: usize,
        success: bool,
    },
    /// An attempt to deliver the task's callback: `delivered`, `retry`
    /// (with when) or `dead`.
    Callback {
        task_id: &'a str,
        callback_id: &'a str,
        outcome: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_attempt_at: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Call { .. } => "call",
            Self::Callback { .. } => "callback",
        }
    }
}

impl TaskFeed {
    /// Whether anyone listens (an event is worth rendering).
    pub fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Sends `event` of `session_id` to every subscriber (if any).
    pub fn send(&self, session_id: Option<&str>, event: &Event<'_>) {
        if !self.watched() {
            return;
        }
        let data = serde_json::to_string(event).unwrap_or_default();
        let frame = Bytes::from(format!("event: {}\ndata: {data}\n\n", event.name()));
        let _ = self.tx.send(Item {
            session_id: session_id.map(Into::into),
            frame,
        });
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
        }
    }
}

pub struct Subscription {
    rx: broadcast::Receiver<Item>,
}

impl Subscription {
    /// The next frame (of `session`'s tasks only, when given); a `lagged`
    /// frame after falling behind. `None` once the feed is gone.
    pub async fn next_frame(&mut self, session: Option<&str>) -> Option<Bytes> {
        loop {
            match self.rx.recv().await {
                Ok(item)
                    if session
                        .is_none_or(|s| item.session_id.as_deref().is_none_or(|i| i == s)) =>
                {
                    return Some(item.frame)
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a slow task-event listener missed events");
                    return Some(Bytes::from(format!(
                        "event: lagged\ndata: {{\"type\":\"lagged\",\"missed\":{missed}}}\n\n"
                    )));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
