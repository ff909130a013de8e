//! Slots: which batch of a session runs, which wait, and the hand-over
//! when one ends.

use super::*;
use tracing::Instrument;

impl State {
    /// Whether the session has a batch running or queued here.
    pub(super) fn busy(&self, session_id: &str) -> bool {
        self.sessions
            .get(session_id)
            .is_some_and(|s| s.active > 0 || !s.queue.is_empty())
    }

    pub(super) fn holds(&self, task_id: &str) -> bool {
        self.running.contains_key(task_id) || self.queued.contains_key(task_id)
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

impl Inner {
    pub(super) fn executor(&self, kind: TaskKind) -> Option<Arc<dyn Executor>> {
        match kind {
            TaskKind::Agent => Some(self.agent.clone()),
            TaskKind::Mcp => self.mcp.lock().unwrap().clone(),
        }
    }

    /// Registers the task's cancel handle and spawns it. Called with the
    /// state locked, after counting it active in its session's slot.
    /// `reserved`: the worker taken before its commit (it was committed as
    /// running, so it starts without taking one or writing its start).
    pub(super) fn start_locked(
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
        // Every line the task's run logs carries its ids.
        let span = tracing::info_span!("task", task_id = %spec.id, request_id = %spec.id,
            session_id = %spec.session_id,
            analysis_session_id = spec.analysis_session_id.as_deref().unwrap_or(""));
        // Boxed for the reason given where a batch is committed (intake/commit.rs).
        tracker.spawn(Box::pin(
            async move {
                let status = self.run(&spec, &token, reserved).await;
                self.release(&spec, status);
            }
            .instrument(span),
        ));
    }

    /// Frees the task's slot and starts the next batch of its session.
    pub(super) fn release(self: &Arc<Self>, spec: &TaskSpec, status: Option<TaskStatus>) {
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
    pub(super) fn free_slot_locked(self: Arc<Self>, state: &mut State, session_id: &str) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A session is busy while a batch of it runs or waits here, and only
    /// that session.
    #[test]
    fn a_session_is_busy_while_a_batch_of_it_runs_or_waits() {
        let mut state = State::default();
        assert!(!state.busy("s"));
        state.sessions.entry("s".into()).or_default().active = 1;
        assert!(state.busy("s"));
        assert!(!state.busy("t"), "another session is not");
        state.sessions.get_mut("s").unwrap().active = 0;
        assert!(!state.busy("s"));
        let queued = spec("s", 2);
        state.sessions.get_mut("s").unwrap().queue.push_back(queued);
        assert!(state.busy("s"), "a queued batch keeps its session busy");
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
