//! A2A push configs on PostgreSQL (see `crate::push_configs`).

use crate::sql::{ADD_PUSH_CONFIG, DELETE_PUSH_CONFIG, DROP_CALLBACK};
use crate::{commands::NewPush, rows::PushConfigRow, StoreError};
use sqlx::PgPool;

pub(crate) async fn add_push_config(pool: &PgPool, p: &PushConfigRow) -> Result<bool, StoreError> {
    // Pushed already when its task has ended: no update is left. (A task
    // ending meanwhile leaves it due: the claimer pushes it.)
    let added = sqlx::query(ADD_PUSH_CONFIG)
        .bind(&p.id)
        .bind(&p.url)
        .bind(p.created_at)
        .bind(&p.task_id)
        .execute(pool)
        .await?;
    Ok(added.rows_affected() > 0)
}

pub(crate) async fn delete_push_config(
    pool: &PgPool,
    task_id: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let deleted = sqlx::query(DELETE_PUSH_CONFIG)
        .bind(task_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

pub(crate) async fn drop_callback(pool: &PgPool, task_id: &str) -> Result<bool, StoreError> {
    let dropped = sqlx::query(DROP_CALLBACK)
        .bind(task_id)
        .execute(pool)
        .await?;
    Ok(dropped.rows_affected() > 0)
}

pub(crate) async fn enqueue_push(pool: &PgPool, p: &NewPush) -> Result<bool, StoreError> {
    let written: Option<i64> = sqlx::query_scalar(
        "WITH p AS (
             UPDATE push_configs SET pushed = TRUE
             WHERE task_id = $1 AND id = $2 AND NOT pushed RETURNING url)
         INSERT INTO callbacks (seq, id, task_id, url, body, status, attempts, next_attempt_at,
                                created_at)
         SELECT n.seq, $3, $1, p.url, $4 || n.seq || '}', 'pending', 0, $5, $5
         FROM p CROSS JOIN LATERAL (SELECT nextval('callbacks_seq_seq') AS seq) n
         RETURNING seq",
    )
    .bind(&p.task_id)
    .bind(&p.config_id)
    .bind(&p.callback_id)
    .bind(p.head.as_str())
    .bind(p.now)
    .fetch_optional(pool)
    .await?;
    Ok(written.is_some())
}
