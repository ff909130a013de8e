//! Tasks: a batch accepted (with its session, analysis session and calls),
//! each call's end, the steps reported, and its end together with
//! the callback it owes.

use crate::{
    commands::{CallFinish, Finished, Inserted, NewStep, NewTask, TaskFinish},
    postgres,
    rows::StepRow,
    sqlite, Backend, Store, StoreError,
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
        match &self.backend {
            Backend::Sqlite {
                writer,
                analysis_owners,
            } => sqlite::tasks::insert_task(writer, analysis_owners, task).await,
            Backend::Postgres(pg) => pg.observed(postgres::insert_task(pg, task)).await,
        }
    }

    /// Records the end of one call (see `record_call`).
    /// Shared (`Arc`), so that a caller trying the write again after a
    /// storage fault hands over the same record instead of a copy.
    pub async fn finish_call(&self, f: impl Into<Arc<CallFinish>>) -> Result<(), StoreError> {
        let f = f.into();
        match &self.backend {
            Backend::Sqlite { writer, .. } => sqlite::tasks::finish_call(writer, f).await,
            Backend::Postgres(pg) => pg.observed(pg.grouped.finish_call(f)).await,
        }
    }

    /// Records a step reported through `POST /tasks/{id}/steps`.
    pub async fn add_step(&self, step: NewStep) -> Result<StepRow, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => sqlite::tasks::add_step(writer, step).await,
            Backend::Postgres(pg) => pg.observed(postgres::add_step(pg, &step)).await,
        }
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
        match &self.backend {
            Backend::Sqlite { writer, .. } => sqlite::tasks::finish_task(writer, finish).await,
            Backend::Postgres(pg) => pg.observed(pg.grouped.finish_task(finish)).await,
        }
    }
}
