//! Tasks: a batch accepted (with its session, analysis session and calls),
//! each call's end, the steps reported, and its end together with
//! the callback it owes.

use crate::{
    backend::{on_backend, Commands},
    commands::{CallFinish, Finished, Inserted, NewStep, NewTask, TaskFinish},
    rows::StepRow,
    Store, StoreError,
};
use std::sync::Arc;

impl Store {
    /// Registers a batch and its calls, or answers the first registration of
    /// the same id, or (with a fingerprint) the identical batch still active.
    /// Also records the session and the analysis-session → session mapping;
    /// an analysis session claimed by another session is a conflict and
    /// stores nothing.
    pub async fn insert_task(&self, task: NewTask) -> Result<Inserted, StoreError> {
        // (On SQLite the task is stamped by the writer, as it is written.)
        on_backend!(self, |b| b.insert_task(task).await)
    }

    /// Records the end of one call (see `record_call`).
    /// Shared (`Arc`), so that a caller trying the write again after a
    /// storage fault hands over the same record instead of a copy.
    pub async fn finish_call(&self, f: impl Into<Arc<CallFinish>>) -> Result<(), StoreError> {
        let f = f.into();
        on_backend!(self, |b| b.finish_call(f).await)
    }

    /// Records a step reported through `POST /tasks/{id}/steps`.
    pub async fn add_step(&self, step: NewStep) -> Result<StepRow, StoreError> {
        on_backend!(self, |b| b.add_step(step).await)
    }

    /// Ends a task, and in the same transaction writes its callback to the
    /// outbox and its summary to memory. A task ends once: when it had
    /// already ended (or another node holds it) this changes nothing.
    /// Shared (`Arc`) for the same reason as [`Store::finish_call`].
    pub async fn finish_task(
        &self,
        finish: impl Into<Arc<TaskFinish>>,
    ) -> Result<Finished, StoreError> {
        let finish = finish.into();
        on_backend!(self, |b| b.finish_task(finish).await)
    }
}
