//! What the nodes of a shared database tell each other (`naga_work`):
//! runnable work in the store, interrupts and cancels.

use super::{Inner, Scheduler, WorkNews};
use naga_store::Channel;
use std::sync::Arc;
impl Inner {
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
        if news.ready {
            self.wake();
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
