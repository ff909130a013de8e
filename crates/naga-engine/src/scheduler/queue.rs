//! The queue is the store's: a node claims the runnable batches waiting
//! there, as many as it has free workers, the earliest accepted first.

use super::complete::Ending;
use super::{Calls, Inner, Scheduler, TaskSpec, Worker};
use crate::{agents::CallOutcome, retry::retry_store, EngineError};
use naga_core::{config::SessionPolicy, CallStatus, TaskStatus};
use naga_store::{HandedTask, StoreError, TaskRow};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Most batches one claim takes (one statement, one round trip).
const CLAIM_GROUP: usize = 64;

/// How often a node looks for runnable work nobody told it of (a lost
/// message, a dead node's tasks, a lease that expired).
pub(super) const CLAIM_POLL: Duration = Duration::from_secs(1);

/// Whether runnable batches may wait in the store, and the claimer's wake-up.
#[derive(Default)]
pub(super) struct Work {
    /// Set when a batch is stored ready, an end readies its session's
    /// next, another node says so, or a claim took all it asked for.
    maybe: AtomicBool,
    pub(super) wake: Notify,
}

impl Inner {
    /// Runnable work may wait in the store: claim it once a worker is free.
    pub(super) fn wake(&self) {
        self.work.maybe.store(true, Ordering::SeqCst);
        self.work.wake.notify_one();
    }

    /// A worker went back: claim the work that may wait for one.
    pub(super) fn worker_free(&self) {
        if self.work.maybe.load(Ordering::SeqCst) {
            self.work.wake.notify_one();
        }
    }
}

impl Scheduler {
    /// Claims runnable batches from the store for this node's free workers
    /// (in groups of at most [`CLAIM_GROUP`]) and starts them. Returns how
    /// many it started.
    pub async fn pull(&self) -> Result<usize, EngineError> {
        let inner = &self.inner;
        let mut started = 0;
        loop {
            if inner.draining.is_cancelled() {
                return Ok(started);
            }
            let mut workers = Vec::new();
            while workers.len() < CLAIM_GROUP {
                match inner.permits.clone().try_acquire_owned() {
                    Ok(w) => workers.push(w),
                    Err(_) => break,
                }
            }
            if workers.is_empty() {
                // (The hint stays: the next worker to go back wakes this.)
                return Ok(started);
            }
            let asked = workers.len();
            inner.work.maybe.store(false, Ordering::SeqCst);
            let claim = inner.claim_stamped(inner.clock.now_ms());
            let rows = match inner.store.claim_runnable(claim, asked as i64).await {
                Ok(rows) => rows,
                Err(e) => {
                    inner.work.maybe.store(true, Ordering::SeqCst);
                    return Err(e.into());
                }
            };
            let got = rows.len();
            // (Each reads its calls: at once, not one after the other.)
            let takes = rows.into_iter().zip(workers.drain(..));
            let took = futures::future::join_all(takes.map(|(t, worker)| self.take(t, worker)));
            started += took.await.into_iter().filter(|&taken| taken).count();
            if got < asked {
                return Ok(started);
            }
            // All it asked for: there may be more.
            inner.work.maybe.store(true, Ordering::SeqCst);
        }
    }

    /// Starts a claimed task on its worker (or quarantines it); `false`
    /// when it left it alone: a task that runs here already (claimed again
    /// because its lease lapsed while the store could not renew it; the
    /// claim renewed it) is left to that run.
    pub(super) async fn take(&self, t: TaskRow, worker: Worker) -> bool {
        if self.inner.state.lock().unwrap().running.contains_key(&t.id) {
            tracing::warn!(task_id = %t.id, session_id = %t.session_id,
                "claimed again while it runs here (its lease lapsed): left to that run");
            return false;
        }
        match self.resume_spec(&t).await {
            Ok(spec) => {
                let resumed = spec.done.iter().filter(|d| d.is_some()).count();
                tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
                    analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""),
                    finished_calls = resumed, calls = spec.done.len(),
                    "batch claimed from the store: starts at its first unfinished call");
                self.start_claimed(spec, worker);
            }
            Err(EngineError::Store(e)) if e.is_unreadable() => self.quarantine(t, e),
            Err(e) => {
                // Not this task's fault: let go of it, so that a later
                // claim takes it again (tried for as long as the store
                // cannot write: else it would wait out its lease).
                tracing::warn!(task_id = %t.id, session_id = %t.session_id, error = %e,
                    "cannot read a claimed task; it is let go of and claimed again");
                drop(worker);
                let inner = self.inner.clone();
                self.inner.tracker.spawn(async move {
                    let released = retry_store(
                        &*inner.clock,
                        &inner.stop,
                        3,
                        || format!("let go of task `{}`", t.id),
                        || inner.store.release_lease(&t.id, &inner.node_id),
                    )
                    .await;
                    match released {
                        Ok(()) => inner.wake(),
                        Err(e) => tracing::error!(task_id = %t.id, error = %e,
                            "cannot let go of a claimed task: it is claimed again once its lease lapses"),
                    }
                });
            }
        }
        true
    }

    /// Starts a batch an end claimed for this node on its worker (see
    /// [`TaskFinish::take_next`]): one that never ran is started from the
    /// row and calls the end read, with no read of its own; any other as a
    /// claimed one.
    pub(super) async fn take_handed(&self, next: HandedTask, worker: Worker) {
        let calls: Option<Vec<&serde_json::value::RawValue>> =
            serde_json::from_str(&next.calls).ok();
        let t = next.task;
        let (Some(calls), 0) = (calls, t.steps_count) else {
            self.take(t, worker).await;
            return;
        };
        let spec = TaskSpec {
            seq: t.seq,
            kind: t.kind,
            policy: t.policy,
            done: vec![None; calls.len()],
            calls: Calls::new(calls.iter().map(|c| c.get().into()).collect()),
            id: t.id,
            session_id: t.session_id,
            analysis_session_id: t.analysis_session_id,
            callback_url: t.callback_url,
        };
        tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
            analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""),
            calls = spec.done.len(), "batch handed over by its session's previous end: starts");
        self.start_claimed(spec, worker);
    }

    /// Holds a claimed task's spec on its worker, unless an interrupt of
    /// its session came first (then it is cancelled).
    fn start_claimed(&self, spec: TaskSpec, worker: Worker) {
        if self.inner.state.lock().unwrap().interrupted_before(&spec) {
            drop(worker);
            self.cancel_interrupted(spec);
            return;
        }
        self.inner.clone().hold(spec, worker);
    }

    /// Ends a task whose stored form cannot be read back (it would stop
    /// every claim that reaches it): failed, with the reason, and its
    /// callback sent; nothing of it runs. The other tasks go on.
    pub(super) fn quarantine(&self, t: TaskRow, e: StoreError) {
        tracing::error!(task_id = %t.id, session_id = %t.session_id, error = %e,
            "stored task cannot be read back: quarantined (failed, callback sent)");
        let reason =
            format!("the stored task cannot be read back ({e}); it was quarantined and not run");
        let spec = TaskSpec {
            seq: t.seq,
            kind: t.kind,
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
                .complete(
                    &spec,
                    &[],
                    &[],
                    Ending::without_next(TaskStatus::Failed, Some(reason)),
                    &[],
                    None,
                )
                .await;
        });
    }

    /// A stored task as the scheduler runs it: its calls, and the outcomes
    /// of those that already ended (a task taken over resumes after them).
    pub(super) async fn resume_spec(&self, t: &TaskRow) -> Result<TaskSpec, EngineError> {
        let calls = self.inner.store.calls(&t.id).await?;
        let mut payloads = Vec::with_capacity(calls.len());
        let mut done = Vec::with_capacity(calls.len());
        for (index, c) in calls.into_iter().enumerate() {
            payloads.push(c.payload.into_boxed_str());
            if c.status == CallStatus::Pending {
                done.push(None);
                continue;
            }
            // A call that ended never runs again: an end that cannot be
            // read back is damage (the task is quarantined), not "not run".
            let outcome = c.result.as_deref().map(serde_json::from_str::<CallOutcome>);
            match outcome {
                Some(Ok(outcome)) => done.push(Some(outcome)),
                Some(Err(e)) => {
                    return Err(StoreError::Corrupt(format!(
                        "the stored result of call {index} of task `{}` cannot be read back: {e}",
                        t.id
                    ))
                    .into())
                }
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "call {index} of task `{}` ended without a stored result",
                        t.id
                    ))
                    .into())
                }
            }
        }
        Ok(TaskSpec {
            seq: t.seq,
            kind: t.kind,
            policy: t.policy,
            id: t.id.clone(),
            session_id: t.session_id.clone(),
            analysis_session_id: t.analysis_session_id.clone(),
            callback_url: t.callback_url.clone(),
            calls: Calls::new(payloads),
            done,
        })
    }
}
