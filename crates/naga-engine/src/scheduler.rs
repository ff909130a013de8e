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

use crate::{
    agents::{CallContext, CallOutcome},
    callbacks::Callbacks,
    clock::Clock,
    executor::Executor,
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
            }),
        }
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

    /// Cancels every batch of a session accepted before `before` (a `seq`;
    /// the `interrupt` policy), here and, on a shared database, on the
    /// other nodes.
    pub fn interrupt_session(&self, session_id: &str, before: i64) -> Vec<String> {
        if self.inner.shared {
            self.inner.tell_nodes(WorkNews {
                interrupt: Some(session_id.to_owned()),
                before: Some(before),
                ..Default::default()
            });
        }
        self.interrupt_here(session_id, before)
    }

    /// Ends a batch that an interrupt reached before it was handed over.
    fn cancel_interrupted(&self, spec: TaskSpec) {
        tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
            "interrupt: batch accepted before the interrupting one cancelled as it is handed over");
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            inner
                .cancel_unstarted(&spec, "interrupted by a newer batch of the session")
                .await;
        });
    }

    fn interrupt_here(&self, session_id: &str, before: i64) -> Vec<String> {
        let queued: Vec<TaskSpec> = {
            let mut state = self.inner.state.lock().unwrap();
            state.remember_interrupt(session_id, before);
            let State {
                sessions,
                running,
                held,
                queued: queued_ids,
                ..
            } = &mut *state;
            // (A batch started at once on a shared database has no slot.)
            // Only batches accepted before the interrupting one: one accepted
            // after it may already be queued behind the running batch.
            let queued: Vec<TaskSpec> = sessions
                .get_mut(session_id)
                .map(|slot| {
                    let (earlier, later): (Vec<TaskSpec>, Vec<TaskSpec>) =
                        slot.queue.drain(..).partition(|q| q.seq < before);
                    slot.queue = later.into();
                    earlier
                })
                .unwrap_or_default();
            for q in &queued {
                held[kind_index(q.kind)] -= 1;
                queued_ids.remove(&q.id);
            }
            for (id, held) in running.iter() {
                if held.session == session_id && held.seq < before {
                    tracing::info!(task_id = %id, session_id, "interrupt: cancelling running batch");
                    held.token.cancel();
                }
            }
            queued
        };
        let ids = queued.iter().map(|s| s.id.clone()).collect();
        for spec in queued {
            let inner = self.inner.clone();
            inner.tracker.clone().spawn(async move {
                inner
                    .cancel_unstarted(&spec, "interrupted by a newer batch of the session")
                    .await;
            });
        }
        ids
    }

    /// Cancels a task: a running call stops at once, the rest is skipped.
    /// Resolves with the task's final status.
    pub async fn cancel(&self, task_id: &str) -> Result<TaskStatus, EngineError> {
        enum Found {
            Running(oneshot::Receiver<TaskStatus>),
            Queued(TaskSpec),
            Neither,
        }
        let found = {
            let mut state = self.inner.state.lock().unwrap();
            if let Some(Held { token, .. }) = state.running.get(task_id).cloned() {
                let (tx, rx) = oneshot::channel();
                state
                    .waiters
                    .entry(task_id.to_owned())
                    .or_default()
                    .push(tx);
                token.cancel();
                Found::Running(rx)
            } else {
                let hit = state.queued.remove(task_id).and_then(|session| {
                    let slot = state.sessions.get_mut(&session)?;
                    let pos = slot.queue.iter().position(|s| s.id == task_id)?;
                    slot.queue.remove(pos)
                });
                if let Some(spec) = &hit {
                    state.held[kind_index(spec.kind)] -= 1;
                }
                hit.map_or(Found::Neither, Found::Queued)
            }
        };
        match found {
            Found::Running(rx) => match tokio::time::timeout(CANCEL_WAIT, rx).await {
                Ok(Ok(status)) => Ok(status),
                Ok(Err(_)) => Err(EngineError::Unavailable(
                    "the server is stopping; the task will resume after restart".into(),
                )),
                Err(_) => Err(EngineError::Unavailable(format!(
                    "task `{task_id}` is being cancelled but has not ended yet (the store may be \
                     unable to write): it ends as cancelled; check it again later"
                ))),
            },
            Found::Queued(spec) => {
                tracing::info!(task_id, session_id = %spec.session_id, "queued batch cancelled");
                self.inner
                    .cancel_unstarted(&spec, "cancelled before it started")
                    .await;
                Ok(TaskStatus::Cancelled)
            }
            Found::Neither => {
                let task = self.inner.store.task(task_id).await?;
                match task {
                    None => Err(EngineError::NotFound(format!("no task `{task_id}`"))),
                    Some(t)
                        if self.inner.shared
                            && t.status.parse().is_ok_and(|s: TaskStatus| !s.is_terminal()) =>
                    {
                        self.cancel_elsewhere(task_id).await
                    }
                    Some(t) => Err(EngineError::Conflict(format!(
                        "task `{task_id}` is {} and can no longer be cancelled",
                        t.status
                    ))),
                }
            }
        }
    }

    /// Cancels a task another node holds: asks every node, then waits for
    /// the task's end in the store.
    async fn cancel_elsewhere(&self, task_id: &str) -> Result<TaskStatus, EngineError> {
        tracing::info!(
            task_id,
            "task held by another node: asking the nodes to cancel it"
        );
        self.inner.tell_nodes(WorkNews {
            cancel: Some(task_id.to_owned()),
            ..Default::default()
        });
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let task = self.inner.store.task(task_id).await?;
            let status = task.and_then(|t| t.status.parse::<TaskStatus>().ok());
            if let Some(status) = status.filter(|s| s.is_terminal()) {
                return Ok(status);
            }
        }
        Err(EngineError::Unavailable(format!(
            "task `{task_id}` is held by another node that has not cancelled it yet (it may be \
             stopping or unable to write): ask again; once its lease expires another node takes it"
        )))
    }

    /// A receiver for the final status of a task held here.
    pub fn wait(&self, task_id: &str) -> Option<oneshot::Receiver<TaskStatus>> {
        let mut state = self.inner.state.lock().unwrap();
        state.holds(task_id).then(|| {
            let (tx, rx) = oneshot::channel();
            state
                .waiters
                .entry(task_id.to_owned())
                .or_default()
                .push(tx);
            rx
        })
    }

    /// Takes over every unfinished task whose lease expired and resumes
    /// each at its first unfinished call, in acceptance order.
    pub async fn claim_expired(&self) -> Result<usize, EngineError> {
        self.claim(false).await
    }

    /// At start: [`Scheduler::claim_expired`], and at once every task this
    /// node's identity held when its last run ended (killed or not), so
    /// that FIFO, cancel and `reject` hold right after a restart.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        self.claim(true).await
    }

    /// Takes over no more than `[scheduler] max_queued` allows this node
    /// to hold (the rest stays in the store for a later sweep, here or on
    /// another node). At start, what this node held in its last run and did
    /// not take back is let go of, so that it is not renewed unheld.
    async fn claim(&self, own: bool) -> Result<usize, EngineError> {
        let now = self.inner.clock.now_ms();
        let owner = own.then_some(self.inner.node_id.as_str());
        let held = {
            let state = self.inner.state.lock().unwrap();
            state.held.iter().sum::<usize>()
        };
        let room = self.inner.config.max_queued.max(1).saturating_sub(held);
        if room == 0 {
            tracing::info!(
                held,
                max_queued = self.inner.config.max_queued,
                "holding as many batches as max_queued allows: expired leases are left for later"
            );
            return Ok(0);
        }
        let tasks = self
            .inner
            .store
            .claim_expired(self.lease(now), now, owner, room as i64)
            .await?;
        if own && tasks.len() == room {
            tracing::warn!(
                taken = room,
                max_queued = self.inner.config.max_queued,
                "more unfinished batches than max_queued: the rest is taken as room frees up"
            );
            self.inner
                .store
                .release_unheld_leases(&self.inner.node_id, tasks.last().map_or(0, |t| t.seq))
                .await?;
        }
        let n = tasks.len();
        for t in tasks {
            match self.resume_spec(&t).await {
                Ok(spec) => self.submit(spec),
                Err(EngineError::Store(e)) if !e.is_transient() => self.quarantine(t, e),
                Err(e) => {
                    // Not this task's fault: let go of it, so that a later
                    // sweep claims it again.
                    tracing::warn!(task_id = %t.id, session_id = %t.session_id, error = %e,
                        "cannot read a claimed task; it is claimed again later");
                    let _ = self
                        .inner
                        .store
                        .release_lease(&t.id, &self.inner.node_id)
                        .await;
                }
            }
        }
        Ok(n)
    }

    /// Ends a task whose stored form cannot be read back (it would stop
    /// every recovery that reaches it): failed, with the reason, and its
    /// callback sent; nothing of it runs. The other tasks go on.
    fn quarantine(&self, t: TaskRow, e: StoreError) {
        tracing::error!(task_id = %t.id, session_id = %t.session_id, error = %e,
            "stored task cannot be read back: quarantined (failed, callback sent)");
        let reason =
            format!("the stored task cannot be read back ({e}); it was quarantined and not run");
        let spec = TaskSpec {
            seq: t.seq,
            kind: TaskKind::parse(&t.kind).unwrap_or(TaskKind::Agent),
            policy: SessionPolicy::Parallel,
            id: t.id,
            session_id: t.session_id,
            analysis_session_id: t.analysis_session_id,
            callback_url: t.callback_url,
            calls: Calls::default(),
            done: Vec::new(),
        };
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            inner
                .complete(&spec, &[], &[], TaskStatus::Failed, Some(reason), &[], None)
                .await;
        });
    }

    async fn resume_spec(&self, t: &TaskRow) -> Result<TaskSpec, EngineError> {
        let calls = self.inner.store.calls(&t.id).await?;
        let mut payloads = Vec::with_capacity(calls.len());
        let mut done = Vec::with_capacity(calls.len());
        for c in calls {
            payloads.push(c.payload.into_boxed_str());
            let finished = CallStatus::parse(&c.status) != CallStatus::Pending;
            done.push(
                c.result
                    .filter(|_| finished)
                    .and_then(|r| serde_json::from_str(&r).ok()),
            );
        }
        tracing::info!(task_id = %t.id, session_id = %t.session_id,
            analysis_session_id = t.analysis_session_id.as_deref().unwrap_or(""),
            finished_calls = done.iter().filter(|d| d.is_some()).count(),
            calls = done.len(), "lease taken over: task resumes at its first unfinished call");
        Ok(TaskSpec {
            seq: t.seq,
            kind: TaskKind::parse(&t.kind).unwrap_or(TaskKind::Agent),
            policy: serde_json::from_value(Value::String(t.policy.clone())).unwrap_or_default(),
            id: t.id.clone(),
            session_id: t.session_id.clone(),
            analysis_session_id: t.analysis_session_id.clone(),
            callback_url: t.callback_url.clone(),
            calls: Calls::new(payloads),
            done,
        })
    }

    /// The background duties of a node: renew the leases it holds
    /// (heartbeat, every lease/3) and take over expired ones (every lease/2).
    pub fn spawn_maintenance(&self) {
        if self.inner.shared {
            let inner = Arc::downgrade(&self.inner);
            let (store, draining) = (self.inner.store.clone(), self.inner.draining.clone());
            self.inner.tracker.spawn(async move {
                let mut news = match store.listen(Channel::Work).await {
                    Ok(Some(news)) => news,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::error!(error = %e,
                            "cannot listen to the other nodes' scheduling news: batches waiting \
                             for another node's poll for their turn");
                        return;
                    }
                };
                loop {
                    let payload = tokio::select! {
                        p = news.recv() => p,
                        _ = draining.cancelled() => None,
                    };
                    let Some(payload) = payload else { return };
                    let Some(inner) = inner.upgrade() else { return };
                    match serde_json::from_str::<WorkNews>(&payload) {
                        Ok(news) => inner.hear(news),
                        Err(e) => tracing::warn!(error = %e, "unreadable scheduling news"),
                    }
                }
            });
        }
        let lease = Duration::from_millis(self.inner.config.lease_ms.max(30));
        let heartbeat = self.clone();
        self.inner.tracker.spawn(async move {
            let inner = &heartbeat.inner;
            loop {
                tokio::select! {
                    _ = inner.clock.sleep(lease / 3) => {}
                    _ = inner.draining.cancelled() => return,
                }
                let until = inner.clock.now_ms() + lease.as_millis() as i64;
                if let Err(e) = inner.store.renew_leases(&inner.node_id, until).await {
                    tracing::error!(error = %e, "cannot renew leases");
                }
            }
        });
        let sweeper = self.clone();
        self.inner.tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = sweeper.inner.clock.sleep(lease / 2) => {}
                    _ = sweeper.inner.draining.cancelled() => return,
                }
                match sweeper.claim_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(tasks = n, "took over tasks with expired leases"),
                    Err(e) => tracing::error!(error = %e, "cannot claim expired leases"),
                }
                let inner = &sweeper.inner;
                let lease = sweeper.lease(inner.clock.now_ms());
                match inner.callbacks.claim(lease, false).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        deliveries = n,
                        "took over callbacks and notifications whose node's lease expired"
                    ),
                    Err(e) => tracing::error!(error = %e, "cannot claim expired deliveries"),
                }
            }
        });
    }

    /// Graceful stop: no new task or call starts; calls in flight get
    /// `grace` to finish; then they are abandoned (their leases are let go
    /// of by [`Scheduler::release_leases`]).
    pub async fn drain(&self, grace: Duration) {
        let inner = &self.inner;
        inner.draining.cancel();
        inner.tracker.close();
        if tokio::time::timeout(grace, inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "grace period over: abandoning calls in flight"
            );
        }
        inner.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), inner.tracker.wait()).await;
    }

    /// Lets go of every task and callback this node holds, so that the next
    /// run or another node resumes them at once (the last step of a graceful
    /// stop, once nothing here runs or delivers any more).
    pub async fn release_leases(&self) {
        let inner = &self.inner;
        match inner.store.release_leases(&inner.node_id).await {
            Ok(n) => tracing::info!(released = n, "leases released for the next run"),
            Err(e) => {
                tracing::error!(error = %e, "cannot release leases; they expire by themselves")
            }
        }
    }
}

impl State {
    /// Whether the session has a batch running or queued here.
    fn busy(&self, session_id: &str) -> bool {
        self.sessions
            .get(session_id)
            .is_some_and(|s| s.active > 0 || !s.queue.is_empty())
    }

    fn holds(&self, task_id: &str) -> bool {
        self.running.contains_key(task_id) || self.queued.contains_key(task_id)
    }

    /// Whether an interrupt of its session came after `spec` was accepted.
    fn interrupted_before(&self, spec: &TaskSpec) -> bool {
        self.interrupted
            .get(&spec.session_id)
            .is_some_and(|(before, at)| spec.seq < *before && at.elapsed() < INTERRUPT_MEMORY)
    }

    fn remember_interrupt(&mut self, session_id: &str, before: i64) {
        let now = std::time::Instant::now();
        if self.interrupted.len() >= 64 {
            self.interrupted
                .retain(|_, (_, at)| now.duration_since(*at) < INTERRUPT_MEMORY);
        }
        let mark = self
            .interrupted
            .entry(session_id.to_owned())
            .or_insert((before, now));
        *mark = (mark.0.max(before), now);
    }
}

impl Inner {
    fn executor(&self, kind: TaskKind) -> Option<Arc<dyn Executor>> {
        match kind {
            TaskKind::Agent => Some(self.agent.clone()),
            TaskKind::Mcp => self.mcp.lock().unwrap().clone(),
        }
    }

    /// Registers the task's cancel handle and spawns it. Called with the
    /// state locked, after counting it active in its session's slot.
    /// `reserved`: the worker taken before its commit (it was committed as
    /// running, so it starts without taking one or writing its start).
    fn start_locked(
        self: Arc<Self>,
        state: &mut State,
        spec: TaskSpec,
        reserved: Option<OwnedSemaphorePermit>,
    ) {
        let token = CancellationToken::new();
        if self.shared {
            state
                .session_seqs
                .entry(spec.session_id.clone())
                .or_default()
                .insert(spec.seq);
        }
        state.running.insert(
            spec.id.clone(),
            Held {
                session: spec.session_id.clone(),
                seq: spec.seq,
                token: token.clone(),
            },
        );
        let tracker = self.tracker.clone();
        // Boxed for the reason given where a batch is committed (intake.rs).
        tracker.spawn(Box::pin(async move {
            let status = self.run(&spec, &token, reserved).await;
            self.release(&spec, status);
        }));
    }

    /// Frees the task's slot and starts the next batch of its session.
    fn release(self: &Arc<Self>, spec: &TaskSpec, status: Option<TaskStatus>) {
        let mut state = self.state.lock().unwrap();
        state.running.remove(&spec.id);
        state.held[kind_index(spec.kind)] -= 1;
        if let Some(seqs) = state.session_seqs.get_mut(&spec.session_id) {
            seqs.remove(&spec.seq);
            if seqs.is_empty() {
                state.session_seqs.remove(&spec.session_id);
            }
        }
        if let Some(waiters) = state.waiters.remove(&spec.id) {
            if let Some(status) = status {
                for w in waiters {
                    let _ = w.send(status);
                }
            }
        }
        self.clone().free_slot_locked(&mut state, &spec.session_id);
        if self.shared {
            let _ = self.turns.send(spec.session_id.as_str().into());
        }
    }

    /// Frees one active slot of a session and starts its next queued batch.
    fn free_slot_locked(self: Arc<Self>, state: &mut State, session_id: &str) {
        let Some(slot) = state.sessions.get_mut(session_id) else {
            return;
        };
        slot.active = slot.active.saturating_sub(1);
        let next = if self.draining.is_cancelled() {
            None
        } else {
            slot.queue.pop_front()
        };
        match next {
            Some(next) => {
                slot.active += 1;
                state.queued.remove(&next.id);
                tracing::info!(task_id = %next.id, session_id = %next.session_id,
                    analysis_session_id = next.analysis_session_id.as_deref().unwrap_or(""),
                    "next queued batch of the session starts");
                self.start_locked(state, next, None);
            }
            None if slot.active == 0 && slot.queue.is_empty() => {
                state.sessions.remove(session_id);
            }
            None => {}
        }
    }

    /// Runs a task to its end. `None`: it did not end here (the server is
    /// stopping, or the store failed); the store still has it as running and
    /// a restart resumes it.
    async fn run(
        &self,
        spec: &TaskSpec,
        token: &CancellationToken,
        reserved: Option<OwnedSemaphorePermit>,
    ) -> Option<TaskStatus> {
        let _permit = match reserved {
            Some(permit) => permit,
            None => match self.start(spec, token).await {
                Ok(permit) => permit,
                Err(status) => return status,
            },
        };
        self.run_calls(spec, token).await
    }

    /// Runs a write of `spec`'s through storage faults (a full disk, an I/O
    /// error; see [`retry_store`]). While it waits the task keeps its slot
    /// and its lease, so it neither stays `running` with no way to finish
    /// nor lets its session's next batch overtake it. A task given up on is
    /// let go of in the store, so that a later sweep resumes it.
    async fn persist<T, F, Fut>(
        &self,
        what: &str,
        spec: &TaskSpec,
        write: F,
    ) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let described = || format!("{what} task `{}` of session `{}`", spec.id, spec.session_id);
        let result = retry_store(&*self.clock, &self.stop, 3, described, write).await;
        if let Err(e) = &result {
            if !matches!(e, StoreError::LeaseLost(_) | StoreError::NotCommitted) {
                let _ = self.store.release_lease(&spec.id, &self.node_id).await;
            }
        }
        result
    }

    /// On a shared database, waits until every batch its session accepted
    /// before this one has ended, on whichever node (unless `parallel`).
    /// `Err`: it does not run here, with the status it ended with.
    async fn wait_turn(
        &self,
        spec: &TaskSpec,
        token: &CancellationToken,
    ) -> Result<(), Option<TaskStatus>> {
        if !self.shared || spec.policy == SessionPolicy::Parallel {
            return Ok(());
        }
        let ids = (spec.id.as_str(), spec.session_id.as_str());
        let mut turns = self.turns.subscribe();
        let mut poll = Duration::from_millis(50);
        let mut waited = false;
        loop {
            let earlier_here = self
                .state
                .lock()
                .unwrap()
                .session_seqs
                .get(&spec.session_id)
                .is_some_and(|seqs| seqs.range(..spec.seq).next().is_some());
            let earlier = match earlier_here {
                // Its end here wakes this one (no poll needed).
                true => Ok(true),
                false => {
                    self.store
                        .earlier_unfinished(&spec.session_id, spec.seq)
                        .await
                }
            };
            match earlier {
                Ok(false) => {
                    if waited {
                        tracing::info!(
                            task_id = ids.0,
                            session_id = ids.1,
                            "the session's earlier batches ended: batch starts"
                        );
                    }
                    return Ok(());
                }
                Ok(true) if !waited => {
                    waited = true;
                    tracing::info!(task_id = ids.0, session_id = ids.1,
                        "session busy: batch waits for the session's earlier batches (FIFO per session, across nodes)");
                }
                Ok(true) => {}
                Err(e) => tracing::warn!(task_id = ids.0, session_id = ids.1, error = %e,
                    "cannot read the session's earlier batches; asking again"),
            }
            let timer = self.clock.sleep(match earlier_here {
                true => TURN_POLL_MAX * 10,
                false => poll,
            });
            tokio::pin!(timer);
            loop {
                tokio::select! {
                    turn = turns.recv() => match turn {
                        Ok(s) if *s != *spec.session_id => continue,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => (&mut timer).await,
                    },
                    _ = &mut timer => break,
                    _ = self.draining.cancelled() => return Err(None),
                    _ = token.cancelled() => {
                        return Err(self.cancel_unstarted(spec, "cancelled before it started").await)
                    }
                }
                break;
            }
            poll = (poll * 2).min(TURN_POLL_MAX);
        }
    }

    /// Tells the other nodes of a shared database (in the background: the
    /// news is a wake-up; what it asks is also found by polling or is lost
    /// with a node's connection).
    fn tell_nodes(&self, news: WorkNews) {
        let store = self.store.clone();
        let payload = serde_json::to_string(&news).unwrap_or_default();
        self.tracker.spawn(async move {
            if let Err(e) = store.broadcast(Channel::Work, &payload).await {
                tracing::warn!(error = %e, "scheduling news did not reach the other nodes");
            }
        });
    }

    /// Acts on another node's scheduling news.
    fn hear(self: &Arc<Self>, news: WorkNews) {
        if let Some(session) = news.ended {
            let _ = self.turns.send(session.into());
        }
        if let (Some(session), Some(before)) = (news.interrupt, news.before) {
            Scheduler {
                inner: self.clone(),
            }
            .interrupt_here(&session, before);
        }
        if let Some(task_id) = news.cancel {
            if let Some(held) = self.state.lock().unwrap().running.get(&task_id) {
                tracing::info!(task_id, session_id = %held.session, "cancel asked by another node");
                held.token.cancel();
            }
        }
    }

    /// Takes a worker and marks the task running. `Err`: it does not run
    /// here, with the status it ended with, if known.
    async fn start(
        &self,
        spec: &TaskSpec,
        token: &CancellationToken,
    ) -> Result<OwnedSemaphorePermit, Option<TaskStatus>> {
        let ids = (spec.id.as_str(), spec.session_id.as_str());
        self.wait_turn(spec, token).await?;
        let permit = tokio::select! {
            p = self.permits.clone().acquire_owned() => p.map_err(|_| None)?,
            _ = self.draining.cancelled() => return Err(None),
            _ = token.cancelled() => return Err(self.cancel_unstarted(spec, "cancelled before it started").await),
        };
        let now = self.clock.now_ms();
        let started = self
            .persist("start", spec, || {
                self.store.start_task(&spec.id, &self.node_id, now)
            })
            .await;
        match started {
            Ok(true) => Ok(permit),
            Ok(false) => {
                tracing::info!(
                    task_id = ids.0,
                    session_id = ids.1,
                    "task ended or is held by another node; not run here"
                );
                let t = self.store.task(&spec.id).await.ok().flatten();
                Err(t.and_then(|t| t.status.parse().ok()))
            }
            Err(e) => {
                tracing::error!(task_id = ids.0, session_id = ids.1, error = %e, "cannot start task");
                Err(None)
            }
        }
    }

    /// Runs the calls of a started task in order, then ends it.
    async fn run_calls(&self, spec: &TaskSpec, token: &CancellationToken) -> Option<TaskStatus> {
        let calls = spec.calls.parse();
        let ids = (
            spec.id.as_str(),
            spec.session_id.as_str(),
            spec.analysis_session_id.as_deref().unwrap_or(""),
        );
        let Some(executor) = self.executor(spec.kind) else {
            let outcomes: Vec<_> = calls
                .iter()
                .map(|_| {
                    Some(CallOutcome::failed(
                        "this server has no MCP executor configured",
                    ))
                })
                .collect();
            return self
                .complete(
                    spec,
                    &calls,
                    &self.commands(spec.kind, &calls),
                    TaskStatus::Failed,
                    Some("no MCP executor".into()),
                    &outcomes,
                    None,
                )
                .await;
        };
        let commands: Vec<String> = calls.iter().map(|c| executor.command(c)).collect();
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.task_timeout_ms);
        let mut outcomes = spec.done.clone();
        outcomes.resize(calls.len(), None);
        let mut end: Option<(TaskStatus, String)> = None;
        let mut final_call = None;
        for (index, call) in calls.iter().enumerate() {
            if outcomes[index].is_some() {
                continue;
            }
            if token.is_cancelled() {
                end = Some((TaskStatus::Cancelled, "cancelled".into()));
                break;
            }
            if self.draining.is_cancelled() {
                tracing::info!(
                    task_id = ids.0,
                    session_id = ids.1,
                    index,
                    "server stopping: the rest of the batch resumes after restart"
                );
                return None;
            }
            let ctx = CallContext {
                task_id: spec.id.clone(),
                session_id: spec.session_id.clone(),
                index,
                steps: Some(crate::agents::StepLog {
                    store: self.store.clone(),
                    clock: self.clock.clone(),
                }),
            };
            let call_ms = call
                .get("timeout_ms")
                .and_then(Value::as_u64)
                .unwrap_or(self.config.call_timeout_ms);
            let call_deadline = tokio::time::Instant::now() + Duration::from_millis(call_ms);
            let started_at = self.clock.now_ms();
            tracing::debug!(task_id = ids.0, session_id = ids.1, index, "call starts");
            // The call is polled first: one that ends at its first poll (an
            // in-process agent, mostly) then sets no timer and registers no
            // cancel waiter. (Nothing starts once draining: checked above.)
            let result = tokio::select! {
                biased;
                o = executor.run(call, &ctx) => Ok(o),
                _ = self.stop.cancelled() => Err(Interrupted::Stopping),
                _ = token.cancelled() => Err(Interrupted::Cancelled),
                _ = tokio::time::sleep_until(deadline.min(call_deadline)) => Err(Interrupted::TimedOut(
                    if deadline <= call_deadline {
                        format!("task timed out after {} ms", self.config.task_timeout_ms)
                    } else {
                        format!("call {index} timed out after {call_ms} ms")
                    })),
            };
            let outcome = match result {
                Ok(o) => o,
                Err(Interrupted::Stopping) => {
                    tracing::info!(
                        task_id = ids.0,
                        session_id = ids.1,
                        index,
                        "server stopping: call abandoned, resumes after restart"
                    );
                    return None;
                }
                Err(Interrupted::Cancelled) => {
                    end = Some((
                        TaskStatus::Cancelled,
                        format!("cancelled while call {index} was running"),
                    ));
                    CallOutcome::failed("cancelled while running")
                }
                Err(Interrupted::TimedOut(why)) => {
                    end = Some((TaskStatus::TimedOut, why.clone()));
                    CallOutcome::failed(why)
                }
            };
            let finish = self.call_finish(spec, &commands[index], index, &outcome, started_at);
            outcomes[index] = Some(outcome);
            if end.is_some() || index + 1 == calls.len() {
                // The task ends with this call: one commit records both.
                final_call = Some(finish);
                break;
            }
            let finish = Arc::new(finish);
            let recorded = self
                .persist("record call", spec, || {
                    self.store.finish_call(finish.clone())
                })
                .await;
            if let Err(e) = recorded {
                if let StoreError::LeaseLost(_) = e {
                    tracing::warn!(
                        task_id = ids.0,
                        session_id = ids.1,
                        index,
                        "lease lost: another node continues this task"
                    );
                    return None;
                }
                tracing::error!(task_id = ids.0, session_id = ids.1, index, error = %e, "cannot record call; task resumes after restart");
                return None;
            }
        }
        let (status, error) = match end {
            Some((s, e)) => (s, Some(e)),
            None => {
                let failed = outcomes.iter().flatten().filter(|o| !o.success).count();
                if failed == 0 {
                    (TaskStatus::Succeeded, None)
                } else {
                    (
                        TaskStatus::Failed,
                        Some(format!("{failed} of {} calls failed", calls.len())),
                    )
                }
            }
        };
        self.complete(
            spec, &calls, &commands, status, error, &outcomes, final_call,
        )
        .await
    }

    /// The record of a call's end.
    fn call_finish(
        &self,
        spec: &TaskSpec,
        command: &str,
        index: usize,
        outcome: &CallOutcome,
        started_at: i64,
    ) -> CallFinish {
        tracing::debug!(task_id = %spec.id, session_id = %spec.session_id, index,
            success = outcome.success, "call finished");
        CallFinish {
            task_seq: spec.seq,
            owner: self.node_id.clone(),
            idx: index as i64,
            result: serde_json::to_string(outcome).unwrap_or_default(),
            started_at,
            step: NewStep {
                task_id: spec.id.clone(),
                call_idx: Some(index as i64),
                // The instruction itself is the step's content.
                purpose: Some(crate::memory::clip(command).into_owned()),
                content: spec.calls.text(index).map(str::to_owned),
                output: outcome.text(),
                analysis: None,
                success: outcome.success,
                error: outcome.error.clone(),
                created_at: self.clock.now_ms(),
            },
        }
    }

    /// The `command …` text of each call (empty without an executor).
    fn commands(&self, kind: TaskKind, calls: &[CallPayload]) -> Vec<String> {
        let executor = self.executor(kind);
        calls
            .iter()
            .map(|c| executor.as_ref().map(|e| e.command(c)).unwrap_or_default())
            .collect()
    }

    /// Ends a task that holds no running call as cancelled.
    async fn cancel_unstarted(&self, spec: &TaskSpec, reason: &str) -> Option<TaskStatus> {
        let calls = spec.calls.parse();
        self.complete(
            spec,
            &calls,
            &self.commands(spec.kind, &calls),
            TaskStatus::Cancelled,
            Some(reason.to_owned()),
            &spec.done,
            None,
        )
        .await
    }

    /// Ends the task: terminal state, summary and callback in one commit,
    /// then hands the callback to the delivery worker.
    #[allow(clippy::too_many_arguments)]
    async fn complete(
        &self,
        spec: &TaskSpec,
        calls: &[CallPayload],
        commands: &[String],
        status: TaskStatus,
        error: Option<String>,
        outcomes: &[Option<CallOutcome>],
        last_call: Option<CallFinish>,
    ) -> Option<TaskStatus> {
        let executor = self.executor(spec.kind);
        let now = self.clock.now_ms();
        let outcome = |i: usize| outcomes.get(i).and_then(Option::as_ref);
        let summaries: Vec<_> = commands
            .iter()
            .enumerate()
            .map(|(i, command)| memory::CallSummary {
                command,
                outcome: outcome(i),
            })
            .collect();
        let summary = memory::summarize(status, error.as_deref(), &summaries);
        let success = status == TaskStatus::Succeeded;
        let mut count = itoa::Buffer::new();
        let message = match &error {
            Some(e) => naga_core::ids::concat(&[status.as_str(), ": ", e]),
            None => naga_core::ids::concat(&[
                status.as_str(),
                ": ",
                count.format(calls.len()),
                " calls",
            ]),
        };
        // The result entries only go into a callback.
        let callback = spec.callback_url.clone().map(|url| {
            let results: Vec<naga_core::wire::RawJson> = match &executor {
                Some(e) => calls
                    .iter()
                    .enumerate()
                    .filter_map(|(i, call)| Some(e.result_entry(i, call, outcome(i)?)))
                    .collect(),
                None => Vec::new(),
            };
            let result = executor
                .as_ref()
                .and_then(|e| e.envelope_result(success, &results, &message));
            let envelope = CallbackEnvelope {
                task_id: spec.id.clone(),
                request_id: spec.id.clone(),
                kind: spec.kind,
                session_id: spec.session_id.clone(),
                analysis_session_id: spec.analysis_session_id.clone(),
                status: status.as_str().to_owned(),
                success,
                error: error.clone(),
                results,
                completed_at: iso(now),
                result,
                sequence: 0,
            };
            (url, envelope.json_head())
        });
        let finish = TaskFinish {
            task_id: spec.id.clone(),
            task_seq: spec.seq,
            owner: self.node_id.clone(),
            last_call,
            status,
            error: error.clone(),
            finished_at: now,
            // The webhook id, for a callback only.
            callback_id: match &callback {
                Some(_) => format!("msg_{}", uuid::Uuid::now_v7().simple()),
                None => String::new(),
            },
            callback,
            summary: Some(summary.to_json()),
            lease_until: now + self.config.lease_ms as i64,
        };
        let finish = Arc::new(finish);
        let finished = self
            .persist("finish", spec, || self.store.finish_task(finish.clone()))
            .await;
        match finished {
            Ok(Finished::Ended { callback }) => {
                tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
                    analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""),
                    status = status.as_str(), error = error.as_deref().unwrap_or(""),
                    callback = callback.is_some(), "task finished");
                if let Some(row) = callback {
                    self.callbacks.enqueue(row);
                }
                if let Some(llm) = self.summarizer.clone() {
                    let (store, clock, id) =
                        (self.store.clone(), self.clock.clone(), spec.id.clone());
                    let steps: Vec<String> = commands
                        .iter()
                        .zip(outcomes)
                        .map(|(c, o)| match o {
                            Some(o) => format!(
                                "{c} → {}",
                                o.text().or(o.error.clone()).unwrap_or_default()
                            ),
                            None => format!("{c} → not run"),
                        })
                        .collect();
                    let draining = self.draining.clone();
                    self.tracker.spawn(async move {
                        let compressed = tokio::select! {
                            v = memory::compress_with_llm(&llm, &summary, &steps) => v,
                            // Not worth a wait at shutdown (the task's own
                            // summary is stored already).
                            _ = draining.cancelled() => None,
                        };
                        if let Some(v) = compressed {
                            let _ = store
                                .add_compressed_memory(
                                    &id,
                                    memory::LLM,
                                    v.to_string(),
                                    clock.now_ms(),
                                )
                                .await;
                        }
                    });
                }
                Some(status)
            }
            Ok(Finished::AlreadyEnded) => {
                let t = self.store.task(&spec.id).await.ok()??;
                t.status.parse().ok()
            }
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(task_id = %spec.id, session_id = %spec.session_id,
                    "lease lost: another node continues this task");
                None
            }
            Err(e) => {
                tracing::error!(task_id = %spec.id, session_id = %spec.session_id, error = %e, "cannot record the end of the task; it resumes after restart");
                None
            }
        }
    }
}
