//! The scheduler: one active batch per session (FIFO) unless the batch asks
//! for `parallel`, batches of different sessions in parallel on a bounded
//! pool, the calls of a batch in order, every call's result and step
//! committed as it ends, and the terminal state committed together with the
//! callback it owes.
//!
//! In-memory state is only the queues and the cancel handles of tasks that
//! are waiting or running; it is dropped as soon as a task ends.
//!
//! On a database several nodes share (PostgreSQL) a session's order is the
//! database's: a node starts each batch it holds, and a batch that is not
//! `parallel` first waits until every batch its session accepted before it
//! has ended, wherever that runs ([`Store::earlier_unfinished`]); woken by
//! the ending node's `naga_work` broadcast, or a poll when one is lost.
//! `reject` is decided as the batch is stored; `interrupt` and `cancel`
//! reach the batch on whichever node holds it.
//!
//! Where each part is:
//! - this file: the scheduler's types and admission (`submit`, `reserve`:
//!   a batch gets a slot or waits in its session's queue);
//! - `slots`: which batch of a session runs, and the hand-over when one ends;
//! - `run`: a worker, the task marked running, its calls in order;
//! - `complete`: the end of a task, its summary and its callback, in one commit;
//! - `control`: `interrupt`, `cancel` and waiting for a task's end;
//! - `recovery`: taking tasks over (at start, and expired leases), the
//!   leases' renewal, the drain at shutdown;
//! - `cluster`: a session's order across the nodes of a shared database;
//! - `tests`: the scheduler alone, with a manual clock and gated calls.

mod cluster;
mod complete;
mod control;
mod recovery;
mod run;
mod slots;
#[cfg(test)]
mod tests;

use crate::{
    agents::{CallContext, CallOutcome},
    callbacks::Callbacks,
    clock::Clock,
    executor::Executor,
    feed::{Event, TaskFeed},
    memory,
    retry::retry_store,
    EngineError,
};
use naga_core::{
    config::{SchedulerConfig, SessionPolicy},
    time::iso,
    wire::{CallPayload, CallbackEnvelope, TaskKind},
    CallStatus, TaskStatus,
};
use naga_store::{
    CallFinish, Channel, Finished, Lease, NewStep, Store, StoreError, TaskFinish, TaskRow,
};
use serde_json::Value;
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A batch's calls, kept as their JSON text while the batch waits: parsed,
/// a call is several times larger, and a backlog of queued batches must
/// not fill memory (the store has them anyway). Parsed when the batch runs.
#[derive(Debug, Clone, Default)]
pub struct Calls(Box<[Box<str>]>);

impl Calls {
    /// From the JSON text of each call (as the store keeps them).
    pub fn new(texts: Vec<Box<str>>) -> Self {
        Self(texts.into_boxed_slice())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The JSON text of call `index`, as stored.
    pub fn text(&self, index: usize) -> Option<&str> {
        self.0.get(index).map(|t| &**t)
    }

    /// The calls, parsed (text that is not an object reads as an empty call,
    /// which the executors answer with a reason).
    pub fn parse(&self) -> Vec<CallPayload> {
        self.0
            .iter()
            .map(|c| serde_json::from_str(c).unwrap_or_default())
            .collect()
    }
}

/// A task as the scheduler runs it.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub id: String,
    /// The store's key for the task (`Inserted::New`); 0 until committed.
    pub seq: i64,
    pub kind: TaskKind,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
    pub callback_url: Option<String>,
    pub policy: SessionPolicy,
    pub calls: Calls,
    /// Outcomes of calls that already ended (after a restart); `None` = to run.
    pub done: Vec<Option<CallOutcome>>,
}

/// A session slot, and a worker when one was free, held for a batch about
/// to be committed. Dropped unused (the batch was a repeat, or its commit
/// failed), it gives both back and lets the session's next batch start.
pub struct Reservation {
    inner: Arc<Inner>,
    session_id: String,
    permit: Option<OwnedSemaphorePermit>,
    /// The slot is still this reservation's (not yet handed to the task).
    slot: bool,
}

impl Reservation {
    /// Whether a worker is held: the batch is committed as running.
    pub fn has_worker(&self) -> bool {
        self.permit.is_some()
    }

    /// Gives the worker back and keeps the session's slot, if this holds
    /// one (`None` otherwise: nothing is left to hand over).
    pub fn without_worker(mut self) -> Option<Self> {
        drop(self.permit.take());
        self.slot.then_some(self)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        drop(self.permit.take());
        if self.slot {
            let mut state = self.inner.state.lock().unwrap();
            self.inner
                .clone()
                .free_slot_locked(&mut state, &self.session_id);
        }
    }
}

/// The session has a batch queued or running and the policy is `reject`.
#[derive(Debug)]
pub struct SessionBusy;

#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    callbacks: Callbacks,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    agent: Arc<dyn Executor>,
    mcp: Mutex<Option<Arc<dyn Executor>>>,
    /// Writes an LLM summary of each finished task, when configured.
    summarizer: Option<crate::llm::LlmClient>,
    node_id: String,
    /// Other nodes share the database: a session's order is kept there.
    shared: bool,
    /// Sessions whose batch just ended (here or, by `naga_work`, on another
    /// node): their next batch may start.
    turns: tokio::sync::broadcast::Sender<Arc<str>>,
    permits: Arc<Semaphore>,
    state: Mutex<State>,
    /// No new task or call starts once this fires (graceful shutdown).
    draining: CancellationToken,
    /// Calls in flight are abandoned once this fires.
    stop: CancellationToken,
    tracker: TaskTracker,
    /// Where a task's changes are told as they happen (`GET /events`).
    feed: TaskFeed,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Slot>,
    /// Tasks that hold a slot (running or about to).
    running: HashMap<String, Held>,
    /// Tasks waiting in a session's queue: their session (found without
    /// walking every queue: a backlog must not make each submit slower).
    queued: HashMap<String, String>,
    waiters: HashMap<String, Vec<oneshot::Sender<TaskStatus>>>,
    /// Tasks held (queued or running) per kind: agent, mcp.
    held: [usize; 2],
    /// Shared database: the `seq` of each batch held here, per session. A
    /// batch with an earlier one of its session here waits for that one's
    /// end here, without asking the database: only a session's first batch
    /// on a node polls.
    session_seqs: HashMap<String, std::collections::BTreeSet<i64>>,
    /// Recent interrupts: a session's batches accepted before this `seq`
    /// are cancelled, also one committed before the interrupt but handed
    /// over after it (see [`Scheduler::interrupt_session`]).
    interrupted: HashMap<String, (i64, std::time::Instant)>,
}

impl Inner {
    /// Tells the live feed that `spec` is now `status`.
    fn tell(&self, spec: &TaskSpec, status: TaskStatus, error: Option<&str>) {
        self.feed.send(
            Some(&spec.session_id),
            &Event::Status {
                task_id: &spec.id,
                session_id: &spec.session_id,
                kind: spec.kind.as_str(),
                status: status.as_str(),
                error,
            },
        );
    }
}

/// How long an interrupt is remembered for batches committed before it
/// and handed over after it (that gap has no await: microseconds).
const INTERRUPT_MEMORY: Duration = Duration::from_secs(60);

/// A task that holds a slot: its session, its `seq` and its cancel handle.
#[derive(Clone)]
struct Held {
    session: String,
    seq: i64,
    token: CancellationToken,
}

/// What the nodes of a shared database tell each other about scheduling
/// (on [`Channel::Work`]).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct WorkNews {
    /// A batch of this session ended (sent by the database on commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ended: Option<String>,
    /// Cancel this session's batches accepted before `before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interrupt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<i64>,
    /// Cancel this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cancel: Option<String>,
}

/// How often a batch waiting for its session's earlier batch on another
/// node checks again when no word of its end arrives (at most).
const TURN_POLL_MAX: Duration = Duration::from_secs(1);

fn kind_index(kind: TaskKind) -> usize {
    match kind {
        TaskKind::Agent => 0,
        TaskKind::Mcp => 1,
    }
}

#[derive(Default)]
struct Slot {
    active: usize,
    queue: VecDeque<TaskSpec>,
}

/// How long `cancel` waits for a running task to end before answering
/// that it will (the task's end may wait for the store to write again).
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// How a call ended when it did not simply return.
enum Interrupted {
    Cancelled,
    TimedOut(String),
    Stopping,
}

impl Scheduler {
    /// Wires the scheduler to the engine's parts (called once, by `Engine::start`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        callbacks: Callbacks,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
        agent: Arc<dyn Executor>,
        llm: naga_core::config::LlmConfig,
        node_id: String,
        stop: CancellationToken,
        feed: TaskFeed,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(config.workers.max(1))),
                shared: store.is_shared(),
                turns: tokio::sync::broadcast::channel(1024).0,
                store,
                callbacks,
                clock,
                config,
                agent,
                mcp: Mutex::new(None),
                summarizer: crate::llm::LlmClient::from_config(&llm),
                node_id,
                state: Mutex::default(),
                draining: CancellationToken::new(),
                stop,
                tracker: TaskTracker::new(),
                feed,
            }),
        }
    }

    /// Tells the live feed that `spec` is now `status`.
    pub fn tell(&self, spec: &TaskSpec, status: TaskStatus, error: Option<&str>) {
        self.inner.tell(spec, status, error);
    }

    /// Sets the executor of MCP tasks.
    pub fn set_mcp_executor(&self, executor: Arc<dyn Executor>) {
        *self.inner.mcp.lock().unwrap() = Some(executor);
    }

    /// This node's identity (the owner of its leases).
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// How many tasks of `kind` this node holds (queued or running).
    pub fn held(&self, kind: TaskKind) -> usize {
        self.inner.state.lock().unwrap().held[kind_index(kind)]
    }

    /// The lease a task accepted (or claimed) now by this node gets.
    pub fn lease(&self, now: i64) -> Lease {
        Lease {
            owner: self.inner.node_id.clone(),
            until: now + self.inner.config.lease_ms as i64,
        }
    }

    /// Hands a committed task, whose lease this node holds, to the scheduler.
    pub fn submit(&self, spec: TaskSpec) {
        let mut state = self.inner.state.lock().unwrap();
        if state.holds(&spec.id) {
            return;
        }
        if state.interrupted_before(&spec) {
            drop(state);
            self.cancel_interrupted(spec);
            return;
        }
        state.held[kind_index(spec.kind)] += 1;
        let State {
            sessions, queued, ..
        } = &mut *state;
        let slot = sessions.entry(spec.session_id.clone()).or_default();
        // (Shared database: the batch waits for its turn there, see `start`.)
        if spec.policy == SessionPolicy::Parallel || slot.active == 0 || self.inner.shared {
            tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
                analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""),
                policy = spec.policy.as_str(), "batch starts");
            slot.active += 1;
            self.inner.clone().start_locked(&mut state, spec, None);
        } else {
            tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
                analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""),
                queued_behind = slot.active + slot.queue.len(),
                "session busy: batch queued (FIFO per session)");
            queued.insert(spec.id.clone(), spec.session_id.clone());
            slot.queue.push_back(spec);
        }
    }

    /// Before a batch's commit: when its session is idle (or its policy is
    /// `parallel`) and a worker is free, takes both for it, so that it is
    /// committed as running and starts without a second write. `None`: it
    /// goes through [`Scheduler::submit`] after its commit, as usual.
    ///
    /// Under `reject` the check and the taking are one step (two batches
    /// for an idle session at once: one gets the slot, the other
    /// [`SessionBusy`]); the slot is taken even with no worker free.
    pub fn reserve(
        &self,
        session_id: &str,
        policy: SessionPolicy,
    ) -> Result<Option<Reservation>, SessionBusy> {
        if self.inner.shared {
            // The session's state is the database's (`reject` included): it
            // commits the batch as running only if the session is idle.
            if policy == SessionPolicy::Interrupt || self.inner.draining.is_cancelled() {
                return Ok(None);
            }
            return Ok(self
                .inner
                .permits
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|permit| Reservation {
                    inner: self.inner.clone(),
                    session_id: session_id.to_owned(),
                    permit: Some(permit),
                    slot: false,
                }));
        }
        let (parallel, reject) = match policy {
            SessionPolicy::Enqueue => (false, false),
            SessionPolicy::Parallel => (true, false),
            SessionPolicy::Reject => (false, true),
            SessionPolicy::Interrupt => return Ok(None),
        };
        let mut state = self.inner.state.lock().unwrap();
        if state.busy(session_id) && !parallel {
            return match reject {
                true => Err(SessionBusy),
                false => Ok(None),
            };
        }
        if self.inner.draining.is_cancelled() {
            return Ok(None);
        }
        let permit = self.inner.permits.clone().try_acquire_owned().ok();
        if permit.is_none() && !reject {
            return Ok(None);
        }
        state
            .sessions
            .entry(session_id.to_owned())
            .or_default()
            .active += 1;
        Ok(Some(Reservation {
            inner: self.inner.clone(),
            session_id: session_id.to_owned(),
            permit,
            slot: true,
        }))
    }

    /// Starts a batch committed with its reservation: at once when it
    /// holds a worker (it was committed as running), else once one is free;
    /// the session's slot it holds passes to the batch without a gap.
    pub fn submit_reserved(&self, spec: TaskSpec, mut reservation: Reservation) {
        let mut state = self.inner.state.lock().unwrap();
        if state.interrupted_before(&spec) {
            // (Unlocked first: the reservation gives its slot back.)
            drop(state);
            drop(reservation);
            self.cancel_interrupted(spec);
            return;
        }
        let permit = reservation.permit.take();
        reservation.slot = false;
        state.held[kind_index(spec.kind)] += 1;
        tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
            analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""),
            policy = spec.policy.as_str(), committed_as_running = permit.is_some(),
            "batch starts");
        self.inner.clone().start_locked(&mut state, spec, permit);
    }
}
