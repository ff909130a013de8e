//! The store's backend interface: every command a backend implements, one
//! signature each, the same rows back (River's driver interface and Oban's
//! engine are the models). [`Store`](crate::Store) runs each on the backend
//! it opened (`on_backend!`); `sqlite/backend.rs` and `postgres/backend.rs`
//! implement it. What each command does is said on its `Store` method.
//! Queries are not here: they are written once for both (`reads.rs`).

use crate::{
    commands::{
        CallFinish, Claim, DeliveryOutcome, Finished, Holding, Inserted, Lease, NewMessage,
        NewNotification, NewPush, NewStep, NewTask, TaskFinish, Unheld,
    },
    reads::MemoryScope,
    retention::{PruneTasks, Rule, TasksPruned},
    rows::{CallbackRow, DispatchRow, InboxRow, Outbox, PushConfigRow, StepRow, TaskRow},
    StoreError, StoreFault,
};
use naga_core::time::Millis;
use std::sync::Arc;

/// The commands of a backend (see the module's header).
pub(crate) trait Commands {
    // Tasks: accepted, their calls ended, steps added, ended.
    async fn insert_task(&self, task: NewTask) -> Result<Inserted, StoreError>;
    async fn finish_call(&self, f: Arc<CallFinish>) -> Result<(), StoreError>;
    async fn add_step(&self, step: NewStep) -> Result<StepRow, StoreError>;
    async fn finish_task(&self, finish: Arc<TaskFinish>) -> Result<Finished, StoreError>;
    // Leases and nodes.
    async fn renew_leases(
        &self,
        owner: &str,
        until: Millis,
        holding: Holding,
    ) -> Result<u64, StoreError>;
    async fn claim_runnable(&self, claim: Claim, limit: i64) -> Result<Vec<TaskRow>, StoreError>;
    async fn claim_unheld(&self, claim: Claim, which: Unheld) -> Result<Vec<TaskRow>, StoreError>;
    async fn ready_heads(&self) -> Result<u64, StoreError>;
    async fn release_lease(&self, task_id: &str, owner: &str) -> Result<(), StoreError>;
    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError>;
    async fn node_heartbeat(&self, id: &str, now: Millis, starting: bool)
        -> Result<(), StoreError>;
    async fn node_stopped(&self, id: &str, now: Millis) -> Result<(), StoreError>;
    // The callback outbox.
    async fn claim_deliveries(
        &self,
        claim: &Claim,
        limit: i64,
    ) -> Result<Vec<CallbackRow>, StoreError>;
    async fn record_deliveries_in(
        &self,
        outbox: Outbox,
        owner: &str,
        attempts: Vec<(i64, DeliveryOutcome, Millis)>,
    ) -> Result<(), StoreError>;
    async fn requeue_callback(
        &self,
        id: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<Option<CallbackRow>, StoreError>;
    async fn redrive_dead(
        &self,
        since: Millis,
        limit: i64,
        lease: &Lease,
        now: Millis,
    ) -> Result<Vec<CallbackRow>, StoreError>;
    // Task memory.
    async fn add_compressed_memory(
        &self,
        task_id: &str,
        method: &str,
        summary: String,
        now: Millis,
    ) -> Result<(), StoreError>;
    async fn clear_memory(&self, scope: MemoryScope) -> Result<u64, StoreError>;
    // A2A push configs.
    async fn add_push_config(&self, config: PushConfigRow) -> Result<bool, StoreError>;
    async fn delete_push_config(&self, task_id: &str, id: &str) -> Result<bool, StoreError>;
    async fn drop_callback(&self, task_id: &str) -> Result<bool, StoreError>;
    async fn enqueue_push(&self, push: NewPush) -> Result<bool, StoreError>;
    // Conversations (the API server).
    async fn add_message(&self, m: NewMessage) -> Result<i64, StoreError>;
    async fn delete_conversation(&self, session_id: Option<&str>) -> Result<u64, StoreError>;
    async fn add_dispatch(&self, d: DispatchRow) -> Result<(), StoreError>;
    async fn receive_callback(&self, row: InboxRow) -> Result<bool, StoreError>;
    async fn answer_callback(
        &self,
        key: &str,
        reply: NewMessage,
        notify: Option<NewNotification>,
    ) -> Result<Option<(i64, Option<CallbackRow>)>, StoreError>;
    // Retention: one bounded batch each; `None` when another node prunes.
    async fn prune_rule(
        &self,
        rule: Rule,
        cutoff: Millis,
        limit: i64,
        dry_run: bool,
    ) -> Result<Option<u64>, StoreError>;
    async fn prune_tasks(&self, batch: PruneTasks) -> Result<Option<TasksPruned>, StoreError>;
    // The backend's state.
    /// Damage found in the store's file, if any.
    fn damage(&self) -> Option<String>;
    /// Why writes are failing now, if they are.
    fn write_fault(&self) -> Option<StoreFault>;
    /// Waits until every write handed over so far is committed.
    async fn close(&self);
}

/// Runs a command on whichever backend `$store` opened: `$b` is that
/// backend, `$call` a [`Commands`] call on it.
macro_rules! on_backend {
    ($store:expr, |$b:ident| $call:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($b) => $call,
            $crate::Backend::Postgres($b) => $call,
        }
    };
}
pub(crate) use on_backend;
