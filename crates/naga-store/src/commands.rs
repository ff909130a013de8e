//! The store's commands as data: what a caller asks to write (a batch, a
//! step, a call's or a task's end, a delivery's outcome) and what a
//! command answers. Both backends take these (`sqlite/`, `postgres/`); the
//! rows read back are in `rows.rs`.

use crate::rows::{CallbackRow, HandedTask, Outbox, StepRow, TaskRow};
use crate::StoreError;
use naga_core::{
    config::SessionPolicy,
    time::Millis,
    wire::{CallbackEnvelope, TaskKind},
    DeliveryStatus, MessageKind, MessageRole, TaskStatus,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A batch to register (the seed's `create_task`).
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub kind: TaskKind,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
    pub query: Option<String>,
    pub callback_url: Option<String>,
    pub policy: SessionPolicy,
    pub fingerprint: Option<String>,
    /// The calls, in order, as one JSON array.
    pub calls: String,
    pub calls_count: usize,
    /// The answer to keep for this request id: empty when the caller can
    /// rebuild it from the task's row (`FirstAnswer`), as naga's accept does.
    pub response: String,
    pub accepted_at: Millis,
    /// The node that accepts it: it holds the task's lease until
    /// `lease.until` when the task is stored as started; a task that is not
    /// is stored unheld, for whichever node has a free worker to claim.
    pub lease: Lease,
    /// Asks to commit it as running (started at `accepted_at`), held by
    /// `lease.owner` (a worker is free for it): granted only when it is
    /// `ready` (see [`Inserted::New`]).
    pub started: bool,
    /// When given, `accepted_at` (and the lease with it) is read from it
    /// again as the insert runs, so that the stored time is the commit's,
    /// not the request's (they differ when the store made it wait), and
    /// follows the store's order of the session's batches.
    pub clock: Option<StampClock>,
}

/// The clock [`NewTask::clock`] reads.
#[derive(Clone)]
pub struct StampClock(pub std::sync::Arc<dyn Fn() -> Millis + Send + Sync>);

impl std::fmt::Debug for StampClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StampClock")
    }
}

impl NewTask {
    /// `(accepted_at, lease until)` to store: read from the task's clock,
    /// if it has one (never earlier than `accepted_at`; the lease's end
    /// moved with it), else as given.
    pub(crate) fn stamp(&self) -> (Millis, Millis) {
        match &self.clock {
            Some(clock) => {
                let now = (clock.0)().max(self.accepted_at);
                (now, self.lease.until + (now - self.accepted_at))
            }
            None => (self.accepted_at, self.lease.until),
        }
    }
}

/// Who holds a task, and until when. A node renews the leases of every task
/// it holds; an expired lease lets another node (or the next run) take over.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub until: Millis,
}

/// A claim of tasks by a node: the lease it takes (`lease.owner` the node),
/// the time, the heartbeat before which another node counts as dead (the
/// tasks it holds are taken over as if their leases had expired), and the
/// time before which a lease counts as lapsed. A node that cannot tell
/// whether the others could beat and renew (it was itself cut off from the
/// store until a moment ago) judges nobody dead and no lease lapsed:
/// `dead_before` and `lapsed_before` are `Millis::MIN` (see [`Claim::unheld_only`]).
#[derive(Debug, Clone)]
pub struct Claim {
    pub lease: Lease,
    pub now: Millis,
    pub dead_before: Millis,
    pub lapsed_before: Millis,
    /// When given, `now` (and the lease and `dead_before` with it) is read
    /// from it again as the claim runs: a task claimed is stamped as started
    /// when it was, not when the claim waited for a connection (else it
    /// could seem to start before the batch it followed ended).
    pub clock: Option<StampClock>,
}

impl Claim {
    /// Moves the claim's times to its clock's now (never back).
    pub(crate) fn restamp(&mut self) {
        if let Some(clock) = &self.clock {
            let now = (clock.0)().max(self.now);
            let moved = now - self.now;
            self.now = now;
            self.lease.until += moved;
            self.dead_before = self.dead_before.saturating_add(moved);
            self.lapsed_before = self.lapsed_before.saturating_add(moved);
        }
    }

    /// This claim takes only rows nobody holds: no holder is judged dead
    /// and no lease lapsed (what a node claims while it cannot tell).
    pub fn unheld_only(mut self) -> Self {
        self.dead_before = Millis::MIN;
        self.lapsed_before = Millis::MIN;
        self
    }
}

/// What a node works on now, whose leases it renews: the tasks it runs
/// and the deliveries it attempts, each by `seq`. A row held in its name
/// that it does not work on (an accept or a claim whose answer was lost
/// after it committed, a release that failed) is not renewed: its lease
/// lapses and a node with room takes it.
#[derive(Debug, Clone, Default)]
pub struct Holding {
    pub tasks: Vec<i64>,
    pub callbacks: Vec<i64>,
    pub notifications: Vec<i64>,
}

impl Holding {
    /// The deliveries held, with their table (as [`OUTBOXES`]).
    pub(crate) fn deliveries(&self) -> [(&'static str, &[i64]); 2] {
        [
            (OUTBOXES[0], &self.callbacks),
            (OUTBOXES[1], &self.notifications),
        ]
    }

    /// The deliveries held in `outbox`.
    pub fn of(&mut self, outbox: Outbox) -> &mut Vec<i64> {
        match outbox {
            Outbox::Callbacks => &mut self.callbacks,
            Outbox::Notifications => &mut self.notifications,
        }
    }
}

/// Which unfinished tasks, nobody else holding them, to claim without
/// starting them (to cancel them).
#[derive(Debug, Clone)]
pub enum Unheld {
    /// This task.
    Task(String),
    /// This session's, accepted before this `seq` (an interrupt).
    SessionBefore(String, i64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// Stored, with its `seq`: the store's own key for the task, by which
    /// its calls and end are recorded; `ready`: it may run now (its session
    /// had no batch unfinished, or it is `parallel`); `started`: stored as
    /// running, held by the accepting node (asked by `NewTask::started`
    /// and ready); else it waits in the store, unheld, to be claimed
    /// ([`crate::Store::claim_runnable`]); `accepted_at`: the time stored
    /// (see [`NewTask::clock`]).
    New {
        seq: i64,
        started: bool,
        ready: bool,
        accepted_at: Millis,
    },
    /// The request id was known: what its first answer was made of.
    Existing(FirstAnswer),
    /// An identical batch (same session and fingerprint) is still active:
    /// its answer; nothing was stored.
    Duplicate(FirstAnswer),
    /// The request id was known for another batch (another kind, session
    /// or calls): nothing was stored, and the first is not its answer.
    Reused(FirstAnswer),
    /// The batch's policy is `reject` and its session has batches that have
    /// not ended: nothing was stored.
    Busy,
    /// The request id was a task's that ended and was pruned: nothing was
    /// stored (it must not run again), and its answer is gone.
    Pruned(PrunedTask),
}

/// What is kept of a pruned task (retention's `requests` window).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PrunedTask {
    pub id: String,
    pub session_id: String,
    pub status: TaskStatus,
    pub finished_at: Option<Millis>,
    pub pruned_at: Millis,
}

/// What a task's first answer was made of: the answer as stored, or (when
/// stored empty) the fields it is rebuilt from.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstAnswer {
    pub response: String,
    pub id: String,
    pub kind: TaskKind,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
    pub calls_count: i64,
    pub accepted_at: Millis,
}

impl From<TaskRow> for FirstAnswer {
    fn from(t: TaskRow) -> Self {
        Self {
            response: t.response,
            id: t.id,
            kind: t.kind,
            session_id: t.session_id,
            analysis_session_id: t.analysis_session_id,
            calls_count: t.calls_count,
            accepted_at: t.accepted_at,
        }
    }
}

/// One step to record.
#[derive(Debug, Clone, Default)]
pub struct NewStep {
    pub task_id: String,
    pub call_idx: Option<i64>,
    pub purpose: Option<String>,
    pub content: Option<String>,
    pub output: Option<String>,
    pub analysis: Option<String>,
    pub success: bool,
    pub error: Option<String>,
    pub created_at: Millis,
}

/// The end of one call: its result, its step, and what memory learns.
#[derive(Debug, Clone)]
pub struct CallFinish {
    /// The task's `seq` (`Inserted::New`); its id (`step.task_id`) must match.
    pub task_seq: i64,
    /// The lease holder; the write is refused when another holds the task.
    pub owner: String,
    pub idx: i64,
    /// The outcome as JSON (its success is the step's).
    pub result: String,
    pub started_at: Millis,
    /// Its `purpose` is the `command …` text of the key fact and of the
    /// failed-attempt counter.
    pub step: NewStep,
}

/// The end of a task, with its callback and summary in the same transaction.
#[derive(Debug, Clone)]
pub struct TaskFinish {
    pub task_id: String,
    /// The task's `seq` (`Inserted::New`); `task_id` must match.
    pub task_seq: i64,
    /// The lease holder; a task held by another node is not ended here.
    pub owner: String,
    /// The task's last call, recorded in the same transaction (one commit
    /// instead of two for the common end of a batch).
    pub last_call: Option<CallFinish>,
    pub status: TaskStatus,
    pub error: Option<String>,
    pub finished_at: Millis,
    /// URL and the envelope up to its `sequence`, assigned here.
    pub callback: Option<(String, EnvelopeHead)>,
    pub callback_id: String,
    /// The deterministic summary (JSON) kept on the task row.
    pub summary: Option<String>,
    /// The callback is held by `owner` until then (renewed with its task
    /// leases): if the node dies, another delivers it after that.
    pub lease_until: Millis,
    /// `owner` starts the session's next batch at once, on the worker this
    /// end frees, when it waits unheld: the end claims it (held until
    /// `lease_until`, running) and answers it as [`Finished::Ended`]'s
    /// `next`, with no claim of its own.
    pub take_next: bool,
}

#[derive(Debug, Clone)]
pub enum Finished {
    /// `woke`: the session's next batch, waiting unheld in the store,
    /// became ready with this end (a free worker may claim it now).
    /// `next`: the session's next batch, claimed for `owner` by this end
    /// (asked with `take_next`); it is not `woke` then.
    Ended {
        callback: Option<CallbackRow>,
        woke: bool,
        next: Option<Box<HandedTask>>,
    },
    AlreadyEnded,
}

/// What one delivery attempt of a callback came to.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    Delivered,
    Retry {
        error: String,
        next_attempt_at: Millis,
    },
    Dead {
        error: String,
    },
}

/// The two outbox tables (see [`Outbox`]).
pub(crate) const OUTBOXES: [&str; 2] = ["callbacks", "notifications"];

/// Analysis sessions known to be committed, with their session: each is
/// created once and never changes or goes, so an accept that finds its
/// analysis session here need not read it. Filled only after a commit
/// (a rolled-back group leaves nothing here); bounded by starting over.
#[derive(Clone, Default)]
pub(crate) struct AnalysisOwners(Arc<Mutex<HashMap<String, String>>>);

impl AnalysisOwners {
    /// Most entries kept (~100 bytes each) before starting over.
    const MOST: usize = 16_384;

    /// `Some(Ok)` when `analysis` is known to belong to `session`,
    /// `Some(Err(owner))` when to another, `None` when not known.
    pub(crate) fn owner(&self, analysis: &str, session: &str) -> Option<Result<(), String>> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known.get(analysis).map(|owner| match owner == session {
            true => Ok(()),
            false => Err(owner.clone()),
        })
    }

    pub(crate) fn learn(&self, analysis: String, session: String) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= Self::MOST {
            known.clear();
        }
        known.insert(analysis, session);
    }
}

impl NewStep {
    /// The step as stored, once its session and number are known.
    pub(crate) fn row(&self, session_id: String, step_no: i64) -> StepRow {
        StepRow {
            task_id: self.task_id.clone(),
            session_id,
            step_no,
            call_idx: self.call_idx,
            purpose: self.purpose.clone(),
            content: self.content.clone(),
            output: self.output.clone(),
            analysis: self.analysis.clone(),
            success: self.success,
            error: self.error.clone(),
            created_at: self.created_at,
        }
    }

    /// What the step did, as memory counts its failures: its purpose, else
    /// its content.
    pub(crate) fn command(&self) -> &str {
        self.purpose
            .as_deref()
            .or(self.content.as_deref())
            .unwrap_or_default()
    }
}

impl TaskFinish {
    /// The outbox row of this end's callback as stored: `seq`, and `body`
    /// (the envelope with that sequence), pending since the end.
    pub(crate) fn pending_callback(&self, url: &str, seq: i64, body: String) -> CallbackRow {
        CallbackRow {
            outbox: Outbox::Callbacks,
            seq,
            id: self.callback_id.clone(),
            task_id: self.task_id.clone(),
            url: url.to_owned(),
            body,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: self.finished_at,
            last_error: None,
            created_at: self.finished_at,
            delivered_at: None,
            body_len: 0,
        }
    }
}

/// What a known request id was stored with, to tell a retry of the same
/// batch from another batch under the same id: kind, session, calls (JSON
/// text), callback URL and query.
pub(crate) type StoredBatch = (String, String, String, Option<String>, Option<String>);

/// The columns of [`StoredBatch`], in its order.
macro_rules! stored_batch_columns {
    () => {
        "kind, session_id, calls, callback_url, query"
    };
}
pub(crate) use stored_batch_columns;

/// Whether `task` is the batch stored under its id again: the same kind,
/// session, callback URL and query, and the same calls as JSON values (a
/// client may send an object's keys in another order).
pub(crate) fn same_batch(stored: &StoredBatch, task: &NewTask) -> bool {
    let (kind, session, calls, callback_url, query) = stored;
    let calls_equal = *calls == task.calls
        || matches!(
            (
                serde_json::from_str::<serde_json::Value>(calls),
                serde_json::from_str::<serde_json::Value>(&task.calls),
            ),
            (Ok(a), Ok(b)) if a == b
        );
    kind == task.kind.as_str()
        && *session == task.session_id
        && *callback_url == task.callback_url
        && *query == task.query
        && calls_equal
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub session_id: String,
    pub role: MessageRole,
    pub content: String,
    pub kind: MessageKind,
    pub task_id: Option<String>,
    pub created_at: Millis,
}

/// Where a follow-up is also announced, and the webhook id of that delivery.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub id: String,
    pub url: String,
    /// The node that delivers it, and until when (see `TaskFinish::lease_until`).
    pub lease: crate::Lease,
}

/// The JSON body of follow-up `message_id`'s UI notification.
pub(crate) fn notification_body(reply: &NewMessage, message_id: i64) -> String {
    serde_json::json!({
        "session_id": reply.session_id, "action": "show_tool_ai_response",
        "ai_response": reply.content, "task_id": reply.task_id, "message_id": message_id,
    })
    .to_string()
}

/// A push to write to the outbox: `head` is the envelope's JSON up to its
/// sequence (as a task's end writes it), `callback_id` the webhook id.
#[derive(Debug, Clone)]
pub struct NewPush {
    pub task_id: String,
    pub config_id: String,
    pub callback_id: String,
    pub head: EnvelopeHead,
    pub now: Millis,
}

/// A callback's body up to its sequence number: the envelope's JSON
/// without its last member's value (`{…,"sequence":`), which the store
/// completes with the number it assigns in the commit that writes the
/// callback. Made from an envelope, or from a text checked to be one.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeHead(String);

impl EnvelopeHead {
    /// The head of `envelope` (its `sequence` left for the store).
    pub fn of(envelope: &CallbackEnvelope) -> Self {
        Self(envelope.json_head())
    }

    /// A head from its text, refused unless it is an object's JSON ending
    /// in `"sequence":`.
    pub fn parse(text: impl Into<String>) -> Result<Self, StoreError> {
        let text = text.into();
        if !text.starts_with('{') || !text.ends_with("\"sequence\":") {
            return Err(StoreError::Corrupt(format!(
                "not an envelope's JSON up to its sequence: {}",
                naga_core::ids::clip(&text, 80)
            )));
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The whole body, with the sequence number the store assigned.
    pub(crate) fn body(&self, sequence: i64) -> String {
        format!("{}{sequence}}}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::EnvelopeHead;

    #[test]
    fn a_head_is_an_object_up_to_its_sequence_which_the_store_completes() {
        let head = EnvelopeHead::parse(r#"{"task_id":"t","sequence":"#).unwrap();
        assert_eq!(head.body(7), r#"{"task_id":"t","sequence":7}"#);
        for bad in [
            "",
            r#"{"task_id":"t"}"#,
            r#"["sequence":"#,
            r#"{"sequence":1}"#,
        ] {
            assert!(EnvelopeHead::parse(bad).is_err(), "{bad} was taken");
        }
    }
}
