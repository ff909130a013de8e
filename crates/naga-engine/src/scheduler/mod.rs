//! The scheduler: one active batch per session (FIFO) unless the batch asks
//! for `parallel`, batches of different sessions in parallel on a bounded
//! pool, the calls of a batch in order, every call's result and step
//! committed as it ends, and the terminal state committed together with the
//! callback it owes.
//!
//! The store is the queue. A batch that can start as it is accepted (a
//! worker free here, its session idle in the store) is committed as running
//! and held here; any other is committed unheld and waits in the store, not
//! in memory. Each node claims the runnable ones (its session's earliest
//! unfinished batch, or `parallel`; nobody holding it) in groups bounded by
//! its free workers, the earliest accepted first: a backlog of any size, a
//! restart's tasks and a dead node's are all taken the same way. A node's
//! memory holds only what it runs.
//!
//! Claims are woken, not polled: here by a batch stored ready and by an end
//! that readies its session's next batch, and on a shared database
//! (PostgreSQL) by the other nodes' `naga_work` news; a poll each second
//! (shared) finds what a lost message or a dead node left. A node is dead
//! once its heartbeat is [`DEAD_AFTER_BEATS`] beats old; its leases are
//! fenced as before (a node that wakes from a pause cannot write).
//!
//! Where each part is:
//! - this file: the scheduler's types and admission (`reserve`, `start`,
//!   `parked`);
//! - `queue`: claiming runnable batches from the store;
//! - `run`: a task held here, its calls in order, its release;
//! - `complete`: the end of a task, its summary and its callback, in one commit;
//! - `control`: `interrupt`, `cancel` and waiting for a task's end;
//! - `leases`: the heartbeat, the leases' renewal, the start and the drain;
//! - `cluster`: what nodes sharing a database tell each other;
//! - `tests`: the scheduler alone, with a manual clock and gated calls.

mod cluster;
mod complete;
mod control;
mod leases;
mod queue;
mod run;
#[cfg(test)]
mod tests;

use crate::{
    agents::CallOutcome,
    callbacks::Callbacks,
    clock::Clock,
    executor::Executor,
    feed::{Event, TaskFeed},
};
use naga_core::{
    config::{SchedulerConfig, SessionPolicy},
    wire::{CallPayload, TaskKind},
    TaskStatus,
};
use naga_store::{Claim, HandedTask, Lease, Store};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A batch's calls, kept as their JSON text (as the store keeps them);
/// parsed when the batch runs.
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

/// A free worker of this node, taken for a batch about to be committed
/// (it is committed as running and starts without a second write). Dropped
/// unused, it goes back.
pub type Worker = OwnedSemaphorePermit;

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
    /// Other nodes share the database: they hear of runnable work.
    shared: bool,
    permits: Arc<Semaphore>,
    state: Mutex<State>,
    /// Runnable batches may wait in the store (see `queue`).
    work: queue::Work,
    /// No new task or call starts once this fires (graceful shutdown).
    draining: CancellationToken,
    /// Calls in flight are abandoned once this fires.
    stop: CancellationToken,
    tracker: TaskTracker,
    /// Where a task's changes are told as they happen (`GET /events`).
    feed: TaskFeed,
    /// Since when this node has been in steady touch with the store.
    contact: leases::Contact,
}

#[derive(Default)]
struct State {
    /// Tasks held here (running, or about to).
    running: HashMap<String, Held>,
    /// A session's next batch, claimed by the end of the task (the key)
    /// whose worker starts it next (see `run::hold`).
    handed: HashMap<String, HandedTask>,
    waiters: HashMap<String, Vec<oneshot::Sender<TaskStatus>>>,
    /// Tasks held here per kind: agent, mcp.
    held: [usize; 2],
    /// Recent interrupts: a session's batches accepted before this `seq`
    /// are cancelled, also one claimed before the interrupt but handed
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

    /// The claim this node makes now: its lease, which other nodes count
    /// as dead (no heartbeat for [`DEAD_AFTER_BEATS`] beats) and which
    /// leases as lapsed. Only a node in steady touch with the store for
    /// that long can tell a dead node from one that was cut off with it
    /// (a database outage stales every node's heartbeat and lets leases
    /// lapse): until then it takes only what nobody holds (see
    /// [`leases::Contact`]).
    fn claim(&self, now: i64) -> Claim {
        let dead_before = now - (self.config.heartbeat_ms * DEAD_AFTER_BEATS) as i64;
        let claim = Claim {
            lease: Lease {
                owner: self.node_id.clone(),
                until: now + self.config.lease_ms as i64,
            },
            now,
            dead_before,
            lapsed_before: now,
            clock: None,
        };
        match self.contact.steady_since(dead_before) {
            true => claim,
            false => claim.unheld_only(),
        }
    }

    /// [`Inner::claim`], stamped again as the store runs it.
    fn claim_stamped(&self, now: i64) -> Claim {
        let clock = self.clock.clone();
        Claim {
            clock: Some(naga_store::StampClock(Arc::new(move || clock.now_ms()))),
            ..self.claim(now)
        }
    }
}

/// A node whose heartbeat is this many beats old is dead: whichever node
/// has room takes its tasks over.
pub const DEAD_AFTER_BEATS: u64 = 3;

/// How long an interrupt is remembered for batches claimed before it
/// and handed over after it (that gap has no await: microseconds).
const INTERRUPT_MEMORY: Duration = Duration::from_secs(60);

/// A task held here: its session, its `seq` and its cancel handle.
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
    /// A runnable batch waits in the store for a free worker (sent by a
    /// node that stored one it cannot run, and by the database when an
    /// end readies a session's next batch).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ready: bool,
    /// Cancel this session's batches accepted before `before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interrupt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<i64>,
    /// Cancel this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cancel: Option<String>,
}

fn kind_index(kind: TaskKind) -> usize {
    match kind {
        TaskKind::Agent => 0,
        TaskKind::Mcp => 1,
    }
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
                contact: leases::Contact::new(config.heartbeat_ms),
                permits: Arc::new(Semaphore::new(config.workers.max(1))),
                shared: store.is_shared(),
                store,
                callbacks,
                clock,
                config,
                agent,
                mcp: Mutex::new(None),
                summarizer: crate::llm::LlmClient::from_config(&llm),
                node_id,
                state: Mutex::default(),
                work: Default::default(),
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

    /// How many tasks of `kind` this node holds (running, or about to).
    pub fn held(&self, kind: TaskKind) -> usize {
        self.inner.state.lock().unwrap().held[kind_index(kind)]
    }

    /// The lease a task accepted (or claimed) now by this node gets.
    pub fn lease(&self, now: i64) -> Lease {
        self.inner.claim(now).lease
    }

    /// A free worker for a batch about to be committed (`None`: none is
    /// free, or the node is stopping: the batch waits in the store).
    pub fn reserve(&self) -> Option<Worker> {
        if self.inner.draining.is_cancelled() {
            return None;
        }
        self.inner.permits.clone().try_acquire_owned().ok()
    }

    /// Runs a batch committed as running, held here, on its worker.
    pub fn start(&self, spec: TaskSpec, worker: Worker) {
        tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
            analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""),
            policy = spec.policy.as_str(), "batch starts");
        self.inner.clone().hold(spec, worker);
    }

    /// A batch committed unheld: it waits in the store. `ready`: it may run
    /// as soon as a worker is free (here, or on another node).
    pub fn parked(&self, spec: &TaskSpec, ready: bool) {
        tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
            analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""),
            ready, "batch waits in the store (its session is busy, or no worker is free)");
        self.inner.tell(spec, TaskStatus::Queued, None);
        if ready {
            self.inner.wake();
            if self.inner.shared {
                self.inner.tell_nodes(WorkNews {
                    ready: true,
                    ..Default::default()
                });
            }
        }
    }
}
