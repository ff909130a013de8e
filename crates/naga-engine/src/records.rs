//! What the servers may change besides scheduling: the steps a client adds
//! to a task, the memory and conversations it forgets, the messages the API
//! server keeps, and the callbacks an operator replays. Each change is
//! logged here, with its ids, once.

use crate::{Engine, EngineError};
use naga_core::time::Millis;
use naga_store::{
    CallbackRow, MemoryScope, NewMessage, NewStep, PushConfigRow, StepRow, StoreError,
};

/// What became of a request to deliver a callback again.
pub enum Replay {
    /// Back in the outbox, delivered again under the same webhook-id (the
    /// row as requeued, without its body).
    Requeued(CallbackRow),
    /// Not replayed: it is pending delivery already.
    AlreadyPending(CallbackRow),
    /// No such callback.
    Unknown,
}

impl Engine {
    /// Records a step a client adds to a task.
    pub async fn add_step(&self, step: NewStep) -> Result<StepRow, StoreError> {
        let step = self.store().add_step(step).await?;
        tracing::info!(task_id = %step.task_id, session_id = %step.session_id,
            step_id = step.step_no, "step recorded");
        Ok(step)
    }

    /// Forgets the memory in `scope`; how many entries went.
    pub async fn clear_memory(&self, scope: MemoryScope) -> Result<u64, StoreError> {
        let removed = self.store().clear_memory(scope.clone()).await?;
        match &scope {
            MemoryScope::Global => tracing::info!(removed, "global memory cleared"),
            MemoryScope::Session(id) => {
                tracing::info!(session_id = %id, removed, "session memory cleared")
            }
            MemoryScope::Task(id) => tracing::info!(task_id = %id, removed, "task memory cleared"),
        }
        Ok(removed)
    }

    /// Keeps a message of a conversation.
    pub async fn add_message(&self, message: NewMessage) -> Result<i64, StoreError> {
        self.store().add_message(message).await
    }

    /// Forgets a conversation (its tasks stay); how many messages went.
    pub async fn delete_conversation(&self, session_id: &str) -> Result<u64, StoreError> {
        let removed = self.store().delete_conversation(session_id).await?;
        if removed > 0 {
            tracing::info!(session_id, removed, "conversation deleted");
        }
        Ok(removed)
    }

    /// Forgets every conversation (their tasks stay); how many went.
    pub async fn delete_all_conversations(&self) -> Result<u64, StoreError> {
        let removed = self.store().delete_all_conversations().await?;
        tracing::info!(conversations = removed, "every conversation deleted");
        Ok(removed)
    }

    /// Puts a callback back in the outbox and delivers it again (same
    /// webhook-id), unless it is pending already (also when another replay
    /// of it just won).
    pub async fn replay_callback(&self, id: &str) -> Result<Replay, StoreError> {
        let now = self.clock().now_ms();
        let lease = self.scheduler().lease(now);
        let Some(mut row) = self.store().requeue_callback(id, &lease, now).await? else {
            return Ok(match self.store().callback(id).await? {
                Some(existing) => Replay::AlreadyPending(existing),
                None => Replay::Unknown,
            });
        };
        tracing::info!(callback_id = %id, task_id = %row.task_id, "callback replay requested");
        self.callbacks().enqueue(row.clone());
        row.body = String::new(); // (the answer shows the callback, not its body)
        Ok(Replay::Requeued(row))
    }

    /// Every dead callback that died at or after `since` (at most `limit`,
    /// oldest first) goes back in the outbox on the full retry schedule
    /// (same webhook-id); the ids of the callbacks redriven.
    pub async fn redrive_dead_callbacks(
        &self,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let now = self.clock().now_ms();
        let lease = self.scheduler().lease(now);
        let rows = self.store().redrive_dead(since, limit, &lease, now).await?;
        tracing::info!(count = rows.len(), since, "dead callbacks redriven");
        let ids = rows.iter().map(|r| r.id.clone()).collect();
        for row in rows {
            self.callbacks().enqueue(row);
        }
        Ok(ids)
    }
}

impl Engine {
    /// Keeps an A2A push config of a task (see `naga_store::push_configs`),
    /// its URL checked against `[callbacks] allowed_hosts` as a batch's
    /// callback is. `Ok(false)`: there is no such task.
    pub async fn add_push_config(&self, config: PushConfigRow) -> Result<bool, EngineError> {
        self.callbacks()
            .admit(&config.url)
            .map_err(EngineError::Invalid)?;
        let (task_id, id) = (config.task_id.clone(), config.id.clone());
        let added = self.store().add_push_config(config).await?;
        if added {
            tracing::info!(task_id = %task_id, push_config_id = %id, "A2A push config set");
        }
        Ok(added)
    }

    /// Deletes an A2A push config of a task: `false`, it had none of that
    /// id. `sent_with`: the config is the one the task was sent with (its
    /// callback, which its end then no longer writes).
    pub async fn delete_push_config(
        &self,
        task_id: &str,
        id: &str,
        sent_with: bool,
    ) -> Result<bool, StoreError> {
        let deleted = match sent_with {
            true => self.store().drop_callback(task_id).await?,
            false => self.store().delete_push_config(task_id, id).await?,
        };
        if deleted {
            tracing::info!(task_id = %task_id, push_config_id = %id, "A2A push config deleted");
        }
        Ok(deleted)
    }
}
