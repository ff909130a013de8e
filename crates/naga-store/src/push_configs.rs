//! A2A push configs created for a task after it was sent: kept, listed,
//! deleted, and once their task ended, their push written to the outbox.
//!
//! The config a `SendMessage` carried is the task's `callback_url`, sent by
//! the task's end itself; these others are found ended by the delivery
//! claimer ([`Store::due_pushes`]) and written to the outbox each in one
//! transaction that marks the config pushed ([`Store::enqueue_push`]), so a
//! push is neither lost (the config stays due until then) nor doubled.

use crate::sql::ended;
use crate::{
    backend::{on_backend, Commands},
    commands::NewPush,
    read,
    rows::PushConfigRow,
    Store, StoreError,
};

impl Store {
    /// Keeps a push config of a task (replacing one of the same id). A
    /// task that ended already has no update left to push: the config is
    /// kept as pushed. `false`: there is no such task.
    pub async fn add_push_config(&self, config: PushConfigRow) -> Result<bool, StoreError> {
        on_backend!(self, |b| b.add_push_config(config).await)
    }

    /// Deletes a push config of a task; `false`: it had none of that id.
    pub async fn delete_push_config(&self, task_id: &str, id: &str) -> Result<bool, StoreError> {
        on_backend!(self, |b| b.delete_push_config(task_id, id).await)
    }

    /// Drops the callback a task was sent with: its end, if still to come,
    /// writes none. `false`: the task had none.
    pub async fn drop_callback(&self, task_id: &str) -> Result<bool, StoreError> {
        on_backend!(self, |b| b.drop_callback(task_id).await)
    }

    /// A task's push configs (besides its `callback_url`), oldest first.
    pub async fn push_configs(&self, task_id: &str) -> Result<Vec<PushConfigRow>, StoreError> {
        read!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT task_id, id, url, created_at FROM push_configs
                 WHERE task_id = $1 ORDER BY created_at, id",
            )
            .bind(task_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Push configs whose task has ended and whose push is not in the
    /// outbox yet, at most `limit`.
    pub async fn due_pushes(&self, limit: i64) -> Result<Vec<PushConfigRow>, StoreError> {
        read!(self, |pool| {
            Ok(sqlx::query_as(concat!(
                "SELECT p.task_id, p.id, p.url, p.created_at FROM push_configs p
                 JOIN tasks t ON t.id = p.task_id
                 WHERE NOT p.pushed AND ",
                ended!("t"),
                "
                 LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Writes a config's push to the outbox (pending, held by no node:
    /// the claimer takes it) and marks the config pushed, in one
    /// transaction. `false`: it was pushed already (by another node), or
    /// deleted meanwhile.
    pub async fn enqueue_push(&self, push: NewPush) -> Result<bool, StoreError> {
        on_backend!(self, |b| b.enqueue_push(push).await)
    }
}
