//! A node's liveness and leases: its heartbeat, the leases it renews and
//! lets go of, its start (what it held in its last run) and its drain.

use super::{queue::CLAIM_POLL, Inner, Scheduler, WorkNews};
use crate::EngineError;
use naga_core::time::Millis;
use naga_store::{Channel, Holding};
use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::Notify;

/// Which notification of the node's also starts a periodic duty's round.
type Nudge = fn(&Inner) -> &Notify;

impl Scheduler {
    /// At start: lets go of every task and delivery this node's identity
    /// held when its last run ended (killed or not), then claims runnable
    /// batches for its workers, the earliest accepted first; the rest waits
    /// in the store (order, cancel and `reject` are the store's: they hold
    /// at once).
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let inner = &self.inner;
        let released = inner.store.release_leases(&inner.node_id).await?;
        if released > 0 {
            tracing::info!(
                tasks = released,
                "this node's unfinished tasks from its last run let go of, to be claimed again"
            );
        }
        self.pull().await
    }

    /// The node's heartbeat (`GET /nodes`); `starting` at start-up, before
    /// it serves. A node silent for [`DEAD_AFTER_BEATS`] beats is dead to
    /// the others, who take its tasks over: a failure here is logged (and
    /// the leases, fenced, keep a node that lost them from writing).
    pub async fn record_heartbeat(&self, now: Millis, starting: bool) {
        let inner = &self.inner;
        inner.contact.beat_begins();
        match inner
            .store
            .node_heartbeat(&inner.node_id, now, starting)
            .await
        {
            Ok(()) => {
                if inner.contact.beat_ok(now) {
                    tracing::info!(node_id = %inner.node_id,
                        "in touch with the store again: leases renewed at once; other nodes' \
                         work is judged after three beats");
                }
            }
            Err(e) => {
                inner.contact.beat_failed();
                tracing::warn!(error = %e, "cannot record the node's heartbeat");
            }
        }
    }

    /// The background duties of a node, all started here: its heartbeat
    /// (every `heartbeat_ms`), the leases of what it works on renewed
    /// (every lease/3; see [`naga_store::Holding`]), the claimer of
    /// batches (when told, and each [`CLAIM_POLL`]), the sessions' next
    /// batches readied where a node died before it did (every lease/2), the
    /// claimer of due deliveries (retries, and a dead node's); on a shared
    /// database, the other nodes' news.
    pub fn spawn_maintenance(&self) {
        if self.inner.shared {
            self.spawn_listener();
        }
        let lease = Duration::from_millis(self.inner.config.lease_ms.max(30));
        let beat = Duration::from_millis(self.inner.config.heartbeat_ms.max(10));
        self.spawn_every(beat, None, move |s| async move {
            s.record_heartbeat(s.inner.clock.now_ms(), false).await;
            beat
        });
        // Each beat while renewals fail; at once when the store is in touch
        // again (its leases may have lapsed during an outage: renewed
        // before another node judges them).
        let regained: Nudge = |inner| &inner.contact.regained;
        self.spawn_every(lease / 3, Some(regained), move |s| async move {
            match s.renew_leases(lease).await {
                true => lease / 3,
                false => beat,
            }
        });
        let told: Nudge = |inner| &inner.work.wake;
        self.spawn_every(CLAIM_POLL, Some(told), |s| async move {
            match s.pull().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(tasks = n, "claimed runnable batches from the store"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim runnable batches; trying again");
                    return Duration::from_millis(200);
                }
            }
            CLAIM_POLL
        });
        // At once when the store is in touch again too: an end that
        // committed just before an outage may not have readied its
        // session's next batch.
        let repair: Nudge = |inner| &inner.contact.repair;
        self.spawn_every(lease / 2, Some(repair), move |s| async move {
            s.ready_late_heads().await;
            lease / 2
        });
        let claims = self.inner.clone();
        self.inner
            .callbacks
            .spawn_claimer(move |now| claims.claim(now));
    }

    /// Runs `round` as one of the node's periodic duties until it drains:
    /// first after `first`, then after what the last round answered, or at
    /// once when `nudge`'s notification fires.
    fn spawn_every<R, F>(&self, first: Duration, nudge: Option<Nudge>, mut round: R)
    where
        R: FnMut(Scheduler) -> F + Send + 'static,
        F: Future<Output = Duration> + Send,
    {
        let scheduler = self.clone();
        self.inner.tracker.spawn(async move {
            let mut wait = first;
            loop {
                let inner = &scheduler.inner;
                let nudged = async {
                    match nudge {
                        Some(nudge) => nudge(inner).notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = inner.clock.sleep(wait) => {}
                    _ = nudged => {}
                    _ = inner.draining.cancelled() => return,
                }
                wait = round(scheduler.clone()).await;
            }
        });
    }

    /// Renews the leases of what this node works on, for `lease` from now.
    /// `false`: the store did not take it.
    async fn renew_leases(&self, lease: Duration) -> bool {
        let inner = &self.inner;
        let until = inner.clock.now_ms() + lease.as_millis() as i64;
        let renewed = inner
            .store
            .renew_leases(&inner.node_id, until, inner.holding())
            .await;
        if let Err(e) = &renewed {
            tracing::error!(error = %e, "cannot renew leases; trying again next beat");
        }
        renewed.is_ok()
    }

    /// Readies the sessions' next batches whose turn came while no end
    /// readied them (a node died between a task's end and that).
    async fn ready_late_heads(&self) {
        let inner = &self.inner;
        match inner.store.ready_heads().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    tasks = n,
                    "batches whose turn came were readied late \
                    (a node died between a task's end and readying the next)"
                );
                inner.wake();
            }
            Err(e) => tracing::error!(error = %e, "cannot ready the sessions' next batches"),
        }
    }

    /// Listens to the other nodes' scheduling news (shared database).
    fn spawn_listener(&self) {
        let inner = Arc::downgrade(&self.inner);
        let (store, draining) = (self.inner.store.clone(), self.inner.draining.clone());
        self.inner.tracker.spawn(async move {
            let mut news = match store.listen(Channel::Work).await {
                Ok(Some(news)) => news,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e,
                        "cannot listen to the other nodes' scheduling news: runnable work is \
                         found by the claimer's poll");
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
        let now = inner.clock.now_ms();
        if let Err(e) = inner.store.node_stopped(&inner.node_id, now).await {
            tracing::warn!(error = %e, "cannot record that the node stopped");
        }
    }
}

impl Inner {
    /// What this node works on: the tasks held here and the deliveries
    /// under way. Only their leases are renewed: a row in this node's name
    /// that nothing here works on (its accept or claim answered with an
    /// error after it committed) lapses, and a node with room takes it.
    fn holding(&self) -> Holding {
        let state = self.state.lock().unwrap();
        let running = state.running.values().map(|held| held.seq);
        let handed = state.handed.values().map(|h| h.task.seq);
        let mut holding = Holding {
            tasks: running.chain(handed).collect(),
            ..Holding::default()
        };
        drop(state);
        self.callbacks.holding(&mut holding);
        holding
    }
}

/// Whether this node has been in steady touch with the store, as its own
/// heartbeats show: a chain of beats that each committed promptly (within
/// a beat, in real time). A beat that failed, or one that took longer (a
/// write that waited out an outage), starts the chain again; so does a
/// beat under way for longer than that.
///
/// Why it matters: when the store comes back after an outage every node's
/// heartbeat is stale and leases may have lapsed, though the nodes live
/// and still run their tasks. A node judges another dead, or a lease
/// lapsed, only once its own chain is [`DEAD_AFTER_BEATS`] beats long:
/// by then every live node has beaten and renewed its leases (at once
/// when it is in touch again), so what still looks dead is.
pub(super) struct Contact {
    beat: Duration,
    state: Mutex<ContactState>,
    /// A chain started anew: the node's leases are renewed at once.
    pub(super) regained: tokio::sync::Notify,
    /// The same, for the repair of sessions whose next batch an end could
    /// not ready while the store was out: it runs at once.
    pub(super) repair: tokio::sync::Notify,
}

#[derive(Default)]
struct ContactState {
    /// The stamp of the chain's first beat; `None` after a failed one.
    since: Option<Millis>,
    /// When the beat under way began (real time).
    beating: Option<std::time::Instant>,
}

impl Contact {
    pub(super) fn new(heartbeat_ms: u64) -> Self {
        Self {
            beat: Duration::from_millis(heartbeat_ms.max(10)),
            state: Mutex::default(),
            regained: tokio::sync::Notify::new(),
            repair: tokio::sync::Notify::new(),
        }
    }

    /// A heartbeat is being written.
    pub(super) fn beat_begins(&self) {
        self.state.lock().unwrap().beating = Some(std::time::Instant::now());
    }

    /// The heartbeat stamped `at` committed; `true` when it starts a chain.
    pub(super) fn beat_ok(&self, at: Millis) -> bool {
        let mut state = self.state.lock().unwrap();
        let prompt = (state.beating.take()).is_none_or(|began| began.elapsed() <= self.beat);
        let anew = state.since.is_none() || !prompt;
        if anew {
            state.since = Some(at);
            self.regained.notify_one();
            self.repair.notify_one();
        }
        anew
    }

    /// A heartbeat failed: the chain is broken.
    pub(super) fn beat_failed(&self) {
        *self.state.lock().unwrap() = ContactState::default();
    }

    /// Whether the chain began by `before` and no beat is overdue now.
    pub(super) fn steady_since(&self, before: Millis) -> bool {
        let state = self.state.lock().unwrap();
        let overdue = (state.beating).is_some_and(|began| began.elapsed() > self.beat);
        !overdue && state.since.is_some_and(|since| since <= before)
    }
}
