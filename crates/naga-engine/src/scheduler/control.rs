//! Interrupting a session and cancelling a task, here, in the store and
//! on the other nodes of a shared database; waiting for a task's end.

use super::{Held, Scheduler, State, TaskSpec, WorkNews, CANCEL_WAIT, INTERRUPT_MEMORY};
use crate::EngineError;
use naga_core::TaskStatus;
use naga_store::{TaskRow, Unheld};
use std::time::Duration;
use tokio::sync::oneshot;
impl Scheduler {
    /// Cancels every batch of a session accepted before `before` (a `seq`;
    /// the `interrupt` policy): those running here and, on a shared
    /// database, on the other nodes, and those waiting in the store.
    /// Returns how many waiting ones it cancelled.
    pub async fn interrupt_session(&self, session_id: &str, before: i64) -> usize {
        if self.inner.shared {
            self.inner.tell_nodes(WorkNews {
                interrupt: Some(session_id.to_owned()),
                before: Some(before),
                ..Default::default()
            });
        }
        self.interrupt_here(session_id, before);
        let now = self.inner.clock.now_ms();
        let which = Unheld::SessionBefore(session_id.to_owned(), before);
        let waiting = match self
            .inner
            .store
            .claim_unheld(self.inner.claim(now), which)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                // They run, then: an interrupt is a wish, not a guarantee.
                tracing::error!(session_id, error = %e,
                    "interrupt: cannot claim the session's waiting batches to cancel them");
                return 0;
            }
        };
        let n = waiting.len();
        for t in waiting {
            tracing::info!(task_id = %t.id, session_id,
                "interrupt: batch waiting in the store cancelled");
            self.end_claimed(t, "interrupted by a newer batch of the session")
                .await;
        }
        n
    }

    /// Ends a task claimed (not started) to cancel it.
    async fn end_claimed(&self, t: TaskRow, reason: &str) -> Option<TaskStatus> {
        match self.resume_spec(&t).await {
            Ok(spec) => self.inner.cancel_unstarted(&spec, reason).await,
            Err(EngineError::Store(e)) if e.is_unreadable() => {
                self.quarantine(t, e);
                Some(TaskStatus::Failed)
            }
            Err(e) => {
                tracing::warn!(task_id = %t.id, error = %e, "cannot read a task to cancel it");
                let _ = self
                    .inner
                    .store
                    .release_lease(&t.id, &self.inner.node_id)
                    .await;
                None
            }
        }
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

    /// Cancels this session's batches accepted before `before` running here.
    pub(super) fn interrupt_here(&self, session_id: &str, before: i64) {
        let mut state = self.inner.state.lock().unwrap();
        state.remember_interrupt(session_id, before);
        for (id, held) in state.running.iter() {
            if held.session == session_id && held.seq < before {
                tracing::info!(task_id = %id, session_id, "interrupt: cancelling running batch");
                held.token.cancel();
            }
        }
    }

    /// Cancels a task: a running call stops at once, the rest is skipped;
    /// one waiting in the store is ended there. Resolves with the task's
    /// final status.
    pub async fn cancel(&self, task_id: &str) -> Result<TaskStatus, EngineError> {
        if let Some(rx) = self.cancel_here(task_id) {
            return match tokio::time::timeout(CANCEL_WAIT, rx).await {
                Ok(Ok(status)) => Ok(status),
                Ok(Err(_)) => Err(EngineError::Unavailable(
                    "the server is stopping; the task will resume after restart".into(),
                )),
                Err(_) => Err(EngineError::Unavailable(format!(
                    "task `{task_id}` is being cancelled but has not ended yet (the store may be \
                     unable to write): it ends as cancelled; check it again later"
                ))),
            };
        }
        let now = self.inner.clock.now_ms();
        let which = Unheld::Task(task_id.to_owned());
        let claimed = self
            .inner
            .store
            .claim_unheld(self.inner.claim(now), which)
            .await?;
        if let Some(t) = claimed.into_iter().next() {
            tracing::info!(task_id, session_id = %t.session_id,
                "batch nobody runs cancelled in the store");
            let reason = match t.status {
                TaskStatus::Running => "cancelled while the node running it was gone",
                _ => "cancelled before it started",
            };
            return self.end_claimed(t, reason).await.ok_or_else(|| {
                EngineError::Unavailable(format!(
                    "task `{task_id}` could not be cancelled yet (the store may be unable to \
                     write): ask again"
                ))
            });
        }
        match self.inner.store.task(task_id).await? {
            None => Err(EngineError::NotFound(format!("no task `{task_id}`"))),
            Some(t) if t.status.is_terminal() => Err(EngineError::Conflict(format!(
                "task `{task_id}` is {} and can no longer be cancelled",
                t.status
            ))),
            // Held by a node that runs it: this one (it is being handed
            // over) or, on a shared database, another.
            Some(_) => self.cancel_elsewhere(task_id).await,
        }
    }

    /// Cancels the task if it runs here: a receiver for its final status.
    fn cancel_here(&self, task_id: &str) -> Option<oneshot::Receiver<TaskStatus>> {
        let mut state = self.inner.state.lock().unwrap();
        let Held { token, .. } = state.running.get(task_id).cloned()?;
        token.cancel();
        Some(state.waiter(task_id))
    }

    /// Cancels a task another node holds: asks every node, then waits for
    /// the task's end in the store.
    pub(super) async fn cancel_elsewhere(&self, task_id: &str) -> Result<TaskStatus, EngineError> {
        tracing::info!(task_id, "task held by a node: asking it to cancel it");
        if self.inner.shared {
            self.inner.tell_nodes(WorkNews {
                cancel: Some(task_id.to_owned()),
                ..Default::default()
            });
        }
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // (Handed over here meanwhile.)
            drop(self.cancel_here(task_id));
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
        state
            .running
            .contains_key(task_id)
            .then(|| state.waiter(task_id))
    }
}

impl State {
    /// A receiver for the final status of a task held here.
    fn waiter(&mut self, task_id: &str) -> oneshot::Receiver<TaskStatus> {
        let (tx, rx) = oneshot::channel();
        self.waiters.entry(task_id.to_owned()).or_default().push(tx);
        rx
    }

    /// Whether an interrupt of its session came after `spec` was accepted.
    pub(super) fn interrupted_before(&self, spec: &TaskSpec) -> bool {
        self.interrupted
            .get(&spec.session_id)
            .is_some_and(|(before, at)| spec.seq < *before && at.elapsed() < INTERRUPT_MEMORY)
    }

    pub(super) fn remember_interrupt(&mut self, session_id: &str, before: i64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::Calls;
    use naga_core::{config::SessionPolicy, wire::TaskKind};

    fn spec(session: &str, seq: i64) -> TaskSpec {
        TaskSpec {
            id: format!("{session}-{seq}"),
            seq,
            kind: TaskKind::Agent,
            session_id: session.into(),
            analysis_session_id: None,
            callback_url: None,
            policy: SessionPolicy::Enqueue,
            calls: Calls::default(),
            done: Vec::new(),
        }
    }

    /// An interrupt cancels the batches its session accepted before it
    /// (`seq` below the mark), never a later one; a later interrupt can
    /// only move the mark on, and the mark is per session.
    #[test]
    fn an_interrupt_reaches_only_the_batches_accepted_before_it() {
        let mut state = State::default();
        assert!(!state.interrupted_before(&spec("s", 1)));
        state.remember_interrupt("s", 10);
        assert!(state.interrupted_before(&spec("s", 9)));
        assert!(
            !state.interrupted_before(&spec("s", 10)),
            "the interrupting batch itself"
        );
        assert!(
            !state.interrupted_before(&spec("s", 11)),
            "a batch accepted after it"
        );
        assert!(!state.interrupted_before(&spec("t", 9)), "another session");
        // A late-arriving older interrupt does not lower the mark.
        state.remember_interrupt("s", 5);
        assert!(state.interrupted_before(&spec("s", 9)));
        state.remember_interrupt("s", 20);
        assert!(state.interrupted_before(&spec("s", 15)));
    }
}
