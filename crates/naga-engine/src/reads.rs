//! What the servers may read, through the engine (`engine.reads()`): the
//! store's queries and its health, never its writes. A handler holds no
//! store: what it changes goes through the engine's operations
//! (`records.rs`, `intake`, the scheduler), so that what a read or a write
//! costs, or where it goes, can change behind this seam.

use crate::Engine;
use naga_core::{time::Millis, wire::TaskKind, DeliveryStatus};
use naga_store::{
    CallRow, CallbackRow, CompressedMemoryRow, ConversationRow, Counts, FailedAttemptRow,
    KeyFactRow, MemoryScope, MessageRow, NodeRow, PushConfigRow, SessionRow, StepRow, Store,
    StoreError, StoreFault, TaskFilter, TaskRow,
};

/// The store's queries (see the module's note).
#[derive(Clone, Copy)]
pub struct Reads<'a>(&'a Store);

impl Engine {
    pub fn reads(&self) -> Reads<'_> {
        Reads(self.store())
    }

    /// Waits until the task ended (or is unknown): told by this node's
    /// scheduler when it holds the task, else read from the store every
    /// 100 ms (another node runs it).
    pub async fn task_ended(&self, task_id: &str) -> R<()> {
        if let Some(rx) = self.scheduler().wait(task_id) {
            let _ = rx.await;
            return Ok(());
        }
        while self
            .store()
            .task(task_id)
            .await?
            .is_some_and(|t| !t.status.is_terminal())
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

type R<T> = Result<T, StoreError>;

impl Reads<'_> {
    // Health.

    /// Why the store cannot write just now, if it cannot.
    pub fn write_fault(&self) -> Option<StoreFault> {
        self.0.write_fault()
    }

    /// What the integrity check found damaged, if anything.
    pub fn damage(&self) -> Option<String> {
        self.0.damage()
    }

    /// A task's A2A push configs besides the one it was sent with.
    pub async fn push_configs(&self, task_id: &str) -> R<Vec<PushConfigRow>> {
        self.0.push_configs(task_id).await
    }

    pub async fn counts(&self) -> R<Counts> {
        self.0.counts().await
    }

    /// Whether other nodes may share this store (PostgreSQL).
    pub fn shared(&self) -> bool {
        self.0.is_shared()
    }

    /// The nodes that ran on this store, last heard from first.
    pub async fn nodes(&self, limit: i64) -> R<Vec<NodeRow>> {
        self.0.nodes(limit).await
    }

    // Tasks, their calls and steps.

    pub async fn task(&self, id: &str) -> R<Option<TaskRow>> {
        self.0.task(id).await
    }

    pub async fn tasks(&self, filter: &TaskFilter) -> R<Vec<TaskRow>> {
        self.0.tasks(filter).await
    }

    /// How many tasks `filter` selects, whatever its page.
    pub async fn count_tasks(&self, filter: &TaskFilter) -> R<i64> {
        self.0.count_tasks(filter).await
    }

    /// Tasks of one kind by state: `[all, queued or running, succeeded,
    /// failed or timed out]`.
    pub async fn task_counts(&self, kind: TaskKind) -> R<[i64; 4]> {
        self.0.task_counts(kind).await
    }

    pub async fn calls(&self, task_id: &str) -> R<Vec<CallRow>> {
        self.0.calls(task_id).await
    }

    pub async fn steps(&self, task_id: &str) -> R<Vec<StepRow>> {
        self.0.steps(task_id).await
    }

    // Sessions and memory.

    pub async fn sessions(&self, limit: i64, offset: i64) -> R<Vec<SessionRow>> {
        self.0.sessions(limit, offset).await
    }

    pub async fn session(&self, id: &str) -> R<Option<SessionRow>> {
        self.0.session(id).await
    }

    /// A session's analysis sessions and when each was first seen.
    pub async fn analysis_sessions(&self, session_id: &str) -> R<Vec<(String, i64)>> {
        self.0.analysis_sessions(session_id).await
    }

    pub async fn key_facts(&self, scope: &MemoryScope, limit: i64) -> R<Vec<KeyFactRow>> {
        self.0.key_facts(scope, limit).await
    }

    pub async fn failed_attempts(
        &self,
        scope: &MemoryScope,
        limit: i64,
    ) -> R<Vec<FailedAttemptRow>> {
        self.0.failed_attempts(scope, limit).await
    }

    pub async fn compressed_memories(
        &self,
        scope: &MemoryScope,
        limit: i64,
    ) -> R<Vec<CompressedMemoryRow>> {
        self.0.compressed_memories(scope, limit).await
    }

    /// How many summaries, key facts and failed-attempt counters a scope's
    /// memory holds.
    pub async fn memory_counts(&self, scope: &MemoryScope) -> R<[usize; 3]> {
        self.0.memory_counts(scope).await
    }

    // Conversations (the API server's).

    pub async fn messages(&self, session_id: &str, limit: i64) -> R<Vec<MessageRow>> {
        self.0.messages(session_id, limit).await
    }

    pub async fn conversations(&self, limit: i64, offset: i64) -> R<Vec<ConversationRow>> {
        self.0.conversations(limit, offset).await
    }

    pub async fn recent_messages(&self, since: Millis, limit: i64) -> R<Vec<MessageRow>> {
        self.0.recent_messages(since, limit).await
    }

    /// Messages written at or after `since`: `[all, the user's, the days
    /// (UTC) that have any]`.
    pub async fn message_counts(&self, since: Millis) -> R<[i64; 3]> {
        self.0.message_counts(since).await
    }

    // The callback outbox.

    pub async fn callback(&self, id: &str) -> R<Option<CallbackRow>> {
        self.0.callback(id).await
    }

    pub async fn callbacks(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> R<Vec<CallbackRow>> {
        self.0.callbacks(status, limit).await
    }

    pub async fn callbacks_of_task(&self, task_id: &str) -> R<Vec<CallbackRow>> {
        self.0.callbacks_of_task(task_id).await
    }
}
