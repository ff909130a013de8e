//! The order of a session across the nodes of a shared database: waiting
//! for its earlier batches wherever they run, and the news nodes send each
//! other (`naga_work`).

use super::*;

impl Inner {
    /// On a shared database, waits until every batch its session accepted
    /// before this one has ended, on whichever node (unless `parallel`).
    /// `Err`: it does not run here, with the status it ended with.
    pub(super) async fn wait_turn(
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
    pub(super) fn tell_nodes(&self, news: WorkNews) {
        let store = self.store.clone();
        let payload = serde_json::to_string(&news).unwrap_or_default();
        self.tracker.spawn(async move {
            if let Err(e) = store.broadcast(Channel::Work, &payload).await {
                tracing::warn!(error = %e, "scheduling news did not reach the other nodes");
            }
        });
    }

    /// Acts on another node's scheduling news.
    pub(super) fn hear(self: &Arc<Self>, news: WorkNews) {
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
}
