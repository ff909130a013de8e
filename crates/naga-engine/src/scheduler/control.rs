//! Interrupting a session and cancelling a task, here and on the other
//! nodes of a shared database; waiting for a task's end.

use super::*;

impl Scheduler {
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
    pub(super) fn cancel_interrupted(&self, spec: TaskSpec) {
        tracing::info!(task_id = %spec.id, session_id = %spec.session_id,
            "interrupt: batch accepted before the interrupting one cancelled as it is handed over");
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            inner
                .cancel_unstarted(&spec, "interrupted by a newer batch of the session")
                .await;
        });
    }

    pub(super) fn interrupt_here(&self, session_id: &str, before: i64) -> Vec<String> {
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
                    Some(t) if self.inner.shared && !t.status.is_terminal() => {
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
    pub(super) async fn cancel_elsewhere(&self, task_id: &str) -> Result<TaskStatus, EngineError> {
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
            let status = task.map(|t| t.status);
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
}
