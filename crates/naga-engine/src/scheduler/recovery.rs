//! Taking over tasks: at start, what this node held; while it runs,
//! what other nodes let expire. Leases renewed and released; the drain.

use super::*;

impl Scheduler {
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
    pub(super) async fn claim(&self, own: bool) -> Result<usize, EngineError> {
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
                .complete(&spec, &[], &[], TaskStatus::Failed, Some(reason), &[], None)
                .await;
        });
    }

    pub(super) async fn resume_spec(&self, t: &TaskRow) -> Result<TaskSpec, EngineError> {
        let calls = self.inner.store.calls(&t.id).await?;
        let mut payloads = Vec::with_capacity(calls.len());
        let mut done = Vec::with_capacity(calls.len());
        for c in calls {
            payloads.push(c.payload.into_boxed_str());
            let finished = c.status != CallStatus::Pending;
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

    /// The node's heartbeat, as operators see it (`GET /nodes`); `starting`
    /// at start-up, before it serves. Which node runs what is decided by
    /// the leases alone: a failure here is only logged.
    pub async fn record_heartbeat(&self, now: naga_core::time::Millis, starting: bool) {
        let inner = &self.inner;
        if let Err(e) = inner
            .store
            .node_heartbeat(&inner.node_id, now, starting)
            .await
        {
            tracing::warn!(error = %e, "cannot record the node's heartbeat");
        }
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
                let now = inner.clock.now_ms();
                heartbeat.record_heartbeat(now, false).await;
                let until = now + lease.as_millis() as i64;
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
        let now = inner.clock.now_ms();
        if let Err(e) = inner.store.node_stopped(&inner.node_id, now).await {
            tracing::warn!(error = %e, "cannot record that the node stopped");
        }
    }
}
