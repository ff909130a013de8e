//! The PostgreSQL backend's [`Commands`]: each one transaction (mostly one
//! statement) of the entity's file, or the grouped statement of the ends
//! arriving together (`grouped`); every outcome feeds the write health
//! ([`Pg::observed`]).

use super::{
    add_compressed_memory, add_dispatch, add_message, add_push_config, add_step, answer_callback,
    claim_deliveries, claim_runnable, claim_unheld, clear_memory, delete_conversation,
    delete_push_config, drop_callback, enqueue_push, insert_task, node_heartbeat, node_stopped,
    ready_heads, receive_callback, record_deliveries_in, redrive_dead, release_lease,
    release_leases, renew_leases, requeue_callback, Pg,
};
use crate::{
    backend::Commands,
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

impl Commands for Pg {
    async fn insert_task(&self, task: NewTask) -> Result<Inserted, StoreError> {
        self.observed(insert_task(self, task)).await
    }
    async fn finish_call(&self, f: Arc<CallFinish>) -> Result<(), StoreError> {
        self.observed(self.grouped.finish_call(f)).await
    }
    async fn add_step(&self, step: NewStep) -> Result<StepRow, StoreError> {
        self.observed(add_step(self, &step)).await
    }
    async fn finish_task(&self, finish: Arc<TaskFinish>) -> Result<Finished, StoreError> {
        self.observed(self.grouped.finish_task(finish)).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        until: Millis,
        holding: Holding,
    ) -> Result<u64, StoreError> {
        self.observed(renew_leases(self, owner, until, &holding))
            .await
    }
    async fn claim_runnable(&self, claim: Claim, limit: i64) -> Result<Vec<TaskRow>, StoreError> {
        self.observed(claim_runnable(self, &claim, limit)).await
    }
    async fn claim_unheld(&self, claim: Claim, which: Unheld) -> Result<Vec<TaskRow>, StoreError> {
        self.observed(claim_unheld(self, &claim, &which)).await
    }
    async fn ready_heads(&self) -> Result<u64, StoreError> {
        self.observed(ready_heads(self)).await
    }
    async fn release_lease(&self, task_id: &str, owner: &str) -> Result<(), StoreError> {
        self.observed(release_lease(self, task_id, owner)).await
    }
    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        self.observed(release_leases(self, owner)).await
    }
    async fn node_heartbeat(
        &self,
        id: &str,
        now: Millis,
        starting: bool,
    ) -> Result<(), StoreError> {
        self.observed(node_heartbeat(self, id, now, starting)).await
    }
    async fn node_stopped(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        self.observed(node_stopped(self, id, now)).await
    }

    async fn claim_deliveries(
        &self,
        claim: &Claim,
        limit: i64,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        self.observed(claim_deliveries(self, claim, limit)).await
    }
    async fn record_deliveries_in(
        &self,
        outbox: Outbox,
        owner: &str,
        attempts: Vec<(i64, DeliveryOutcome, Millis)>,
    ) -> Result<(), StoreError> {
        self.observed(record_deliveries_in(self, outbox, owner, &attempts))
            .await
    }
    async fn requeue_callback(
        &self,
        id: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<Option<CallbackRow>, StoreError> {
        self.observed(requeue_callback(self, id, lease, now)).await
    }
    async fn redrive_dead(
        &self,
        since: Millis,
        limit: i64,
        lease: &Lease,
        now: Millis,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        self.observed(redrive_dead(self, since, limit, lease, now))
            .await
    }

    async fn add_compressed_memory(
        &self,
        task_id: &str,
        method: &str,
        summary: String,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.observed(add_compressed_memory(self, task_id, method, &summary, now))
            .await
    }
    async fn clear_memory(&self, scope: MemoryScope) -> Result<u64, StoreError> {
        self.observed(clear_memory(self, &scope)).await
    }

    async fn add_push_config(&self, config: PushConfigRow) -> Result<bool, StoreError> {
        self.observed(add_push_config(self, &config)).await
    }
    async fn delete_push_config(&self, task_id: &str, id: &str) -> Result<bool, StoreError> {
        self.observed(delete_push_config(self, task_id, id)).await
    }
    async fn drop_callback(&self, task_id: &str) -> Result<bool, StoreError> {
        self.observed(drop_callback(self, task_id)).await
    }
    async fn enqueue_push(&self, push: NewPush) -> Result<bool, StoreError> {
        self.observed(enqueue_push(self, &push)).await
    }

    async fn add_message(&self, m: NewMessage) -> Result<i64, StoreError> {
        self.observed(add_message(self, &m)).await
    }
    async fn delete_conversation(&self, session_id: Option<&str>) -> Result<u64, StoreError> {
        self.observed(delete_conversation(self, session_id)).await
    }
    async fn add_dispatch(&self, d: DispatchRow) -> Result<(), StoreError> {
        self.observed(add_dispatch(self, &d)).await
    }
    async fn receive_callback(&self, row: InboxRow) -> Result<bool, StoreError> {
        self.observed(receive_callback(self, &row)).await
    }
    async fn answer_callback(
        &self,
        key: &str,
        reply: NewMessage,
        notify: Option<NewNotification>,
    ) -> Result<Option<(i64, Option<CallbackRow>)>, StoreError> {
        self.observed(answer_callback(self, key, &reply, notify.as_ref()))
            .await
    }

    async fn prune_rule(
        &self,
        rule: Rule,
        cutoff: Millis,
        limit: i64,
        dry_run: bool,
    ) -> Result<Option<u64>, StoreError> {
        self.observed(super::retention::prune_rule(
            self, rule, cutoff, limit, dry_run,
        ))
        .await
    }
    async fn prune_tasks(&self, batch: PruneTasks) -> Result<Option<TasksPruned>, StoreError> {
        self.observed(super::retention::prune_tasks(self, batch))
            .await
    }

    fn damage(&self) -> Option<String> {
        None
    }
    fn write_fault(&self) -> Option<StoreFault> {
        self.health.fault()
    }
    async fn close(&self) {}
}
