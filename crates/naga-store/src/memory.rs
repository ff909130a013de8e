//! Task memory: summaries added (an LLM's), memory forgotten by scope.

use crate::{
    backend::{on_backend, Commands},
    Store, StoreError,
};
use naga_core::time::Millis;

impl Store {
    /// Adds a summary of a task to memory (e.g. one written by an LLM).
    pub async fn add_compressed_memory(
        &self,
        task_id: &str,
        method: &str,
        summary: String,
        now: Millis,
    ) -> Result<(), StoreError> {
        on_backend!(self, |b| b
            .add_compressed_memory(task_id, method, summary, now)
            .await)
    }

    /// Forgets memory (key facts, failed attempts, summaries) of a scope.
    /// Tasks and their steps stay: they are history, not memory.
    pub async fn clear_memory(&self, scope: crate::MemoryScope) -> Result<u64, StoreError> {
        on_backend!(self, |b| b.clear_memory(scope).await)
    }
}
