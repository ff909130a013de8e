//! The SQLite backend's [`Commands`]: each write on the one writer thread
//! (`writer`), in the entity's file; a claim that answers ids reads its rows
//! back through the read pool, so that it returns what PostgreSQL returns.

use super::{
    conversations, leases, memory, outbox, push_configs, retention, tasks, writer::Writer,
};
use crate::{
    backend::Commands,
    commands::{
        AnalysisOwners, CallFinish, Claim, DeliveryOutcome, Finished, Holding, Inserted, Lease,
        NewMessage, NewNotification, NewPush, NewStep, NewTask, TaskFinish, Unheld,
    },
    reads::{callback_row, rows_by_id, MemoryScope},
    retention::{PruneTasks, Rule, TasksPruned},
    rows::{CallbackRow, DispatchRow, InboxRow, Outbox, PushConfigRow, StepRow, TaskRow},
    ReadPool, StoreError, StoreFault,
};
use naga_core::time::Millis;
use std::sync::Arc;

/// The SQLite backend: its writer, the analysis sessions committed with
/// their session, and the read pool claims read their rows back from.
#[derive(Clone)]
pub(crate) struct Sqlite {
    pub(crate) writer: Writer,
    pub(crate) analysis_owners: AnalysisOwners,
    pub(crate) read: ReadPool,
}

impl Commands for Sqlite {
    async fn insert_task(&self, task: NewTask) -> Result<Inserted, StoreError> {
        tasks::insert_task(&self.writer, &self.analysis_owners, task).await
    }
    async fn finish_call(&self, f: Arc<CallFinish>) -> Result<(), StoreError> {
        tasks::finish_call(&self.writer, f).await
    }
    async fn add_step(&self, step: NewStep) -> Result<StepRow, StoreError> {
        tasks::add_step(&self.writer, step).await
    }
    async fn finish_task(&self, finish: Arc<TaskFinish>) -> Result<Finished, StoreError> {
        tasks::finish_task(&self.writer, finish).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        until: Millis,
        holding: Holding,
    ) -> Result<u64, StoreError> {
        leases::renew_leases(&self.writer, owner, until, holding).await
    }
    async fn claim_runnable(&self, claim: Claim, limit: i64) -> Result<Vec<TaskRow>, StoreError> {
        let ids = leases::claim_runnable(&self.writer, claim, limit).await?;
        rows_by_id(&self.read, "task_rows", &ids).await
    }
    async fn claim_unheld(&self, claim: Claim, which: Unheld) -> Result<Vec<TaskRow>, StoreError> {
        let ids = leases::claim_unheld(&self.writer, claim, which).await?;
        rows_by_id(&self.read, "task_rows", &ids).await
    }
    async fn ready_heads(&self) -> Result<u64, StoreError> {
        // A task's end readies its session's next batch in its own
        // transaction: nothing is ever left to repair.
        Ok(0)
    }
    async fn release_lease(&self, task_id: &str, owner: &str) -> Result<(), StoreError> {
        leases::release_lease(&self.writer, task_id, owner).await
    }
    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        leases::release_leases(&self.writer, owner).await
    }
    async fn node_heartbeat(
        &self,
        id: &str,
        now: Millis,
        starting: bool,
    ) -> Result<(), StoreError> {
        leases::node_heartbeat(&self.writer, id, now, starting).await
    }
    async fn node_stopped(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        leases::node_stopped(&self.writer, id, now).await
    }

    async fn claim_deliveries(
        &self,
        claim: &Claim,
        limit: i64,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        outbox::claim_deliveries(&self.writer, claim.clone(), limit).await
    }
    async fn record_deliveries_in(
        &self,
        outbox: Outbox,
        owner: &str,
        attempts: Vec<(i64, DeliveryOutcome, Millis)>,
    ) -> Result<(), StoreError> {
        outbox::record_deliveries_in(&self.writer, outbox, owner.to_owned(), attempts).await
    }
    async fn requeue_callback(
        &self,
        id: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<Option<CallbackRow>, StoreError> {
        match outbox::requeue_callback(&self.writer, id, lease, now).await? {
            true => callback_row(&self.read, id).await,
            false => Ok(None),
        }
    }
    async fn redrive_dead(
        &self,
        since: Millis,
        limit: i64,
        lease: &Lease,
        now: Millis,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        let ids = outbox::redrive_dead(&self.writer, since, limit, lease, now).await?;
        rows_by_id(&self.read, "callbacks", &ids).await
    }

    async fn add_compressed_memory(
        &self,
        task_id: &str,
        method: &str,
        summary: String,
        now: Millis,
    ) -> Result<(), StoreError> {
        memory::add_compressed_memory(&self.writer, task_id, method, summary, now).await
    }
    async fn clear_memory(&self, scope: MemoryScope) -> Result<u64, StoreError> {
        memory::clear_memory(&self.writer, scope).await
    }

    async fn add_push_config(&self, config: PushConfigRow) -> Result<bool, StoreError> {
        push_configs::add_push_config(&self.writer, config).await
    }
    async fn delete_push_config(&self, task_id: &str, id: &str) -> Result<bool, StoreError> {
        let (task_id, id) = (task_id.to_owned(), id.to_owned());
        push_configs::delete_push_config(&self.writer, task_id, id).await
    }
    async fn drop_callback(&self, task_id: &str) -> Result<bool, StoreError> {
        push_configs::drop_callback(&self.writer, task_id.to_owned()).await
    }
    async fn enqueue_push(&self, push: NewPush) -> Result<bool, StoreError> {
        push_configs::enqueue_push(&self.writer, push).await
    }

    async fn add_message(&self, m: NewMessage) -> Result<i64, StoreError> {
        conversations::add_message(&self.writer, m).await
    }
    async fn delete_conversation(&self, session_id: Option<&str>) -> Result<u64, StoreError> {
        match session_id {
            Some(id) => conversations::delete_conversation(&self.writer, id).await,
            None => conversations::delete_all_conversations(&self.writer).await,
        }
    }
    async fn add_dispatch(&self, d: DispatchRow) -> Result<(), StoreError> {
        conversations::add_dispatch(&self.writer, d).await
    }
    async fn receive_callback(&self, row: InboxRow) -> Result<bool, StoreError> {
        conversations::receive_callback(&self.writer, row).await
    }
    async fn answer_callback(
        &self,
        key: &str,
        reply: NewMessage,
        notify: Option<NewNotification>,
    ) -> Result<Option<(i64, Option<CallbackRow>)>, StoreError> {
        conversations::answer_callback(&self.writer, key, reply, notify).await
    }

    async fn prune_rule(
        &self,
        rule: Rule,
        cutoff: Millis,
        limit: i64,
        dry_run: bool,
    ) -> Result<Option<u64>, StoreError> {
        retention::prune_rule(&self.writer, rule, cutoff, limit, dry_run).await
    }
    async fn prune_tasks(&self, batch: PruneTasks) -> Result<Option<TasksPruned>, StoreError> {
        retention::prune_tasks(&self.writer, batch).await
    }
    fn damage(&self) -> Option<String> {
        self.writer.health().damage()
    }
    fn write_fault(&self) -> Option<StoreFault> {
        self.writer.health().fault()
    }
    async fn close(&self) {
        self.writer.close().await;
    }
}
