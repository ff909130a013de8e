//! A2A push configs on SQLite (see `crate::push_configs`).

use super::{stmts::Db, writer::Writer};
use crate::sql::{ADD_PUSH_CONFIG, DELETE_PUSH_CONFIG, DROP_CALLBACK};
use crate::{commands::NewPush, rows::PushConfigRow, StoreError};
use rusqlite::{params, OptionalExtension};

fn add(c: &Db, p: &PushConfigRow) -> Result<bool, StoreError> {
    // Pushed already when its task has ended: no update is left.
    let added =
        c.cached(ADD_PUSH_CONFIG)?
            .execute(params![p.id, p.url, p.created_at, p.task_id])?;
    Ok(added > 0)
}

pub(crate) async fn add_push_config(
    writer: &Writer,
    config: PushConfigRow,
) -> Result<bool, StoreError> {
    writer.write(move |c| add(c, &config)).await
}

pub(crate) async fn delete_push_config(
    writer: &Writer,
    task_id: String,
    id: String,
) -> Result<bool, StoreError> {
    writer
        .write(move |c| {
            let deleted = c
                .cached(DELETE_PUSH_CONFIG)?
                .execute(params![task_id, id])?;
            Ok(deleted > 0)
        })
        .await
}

pub(crate) async fn drop_callback(writer: &Writer, task_id: String) -> Result<bool, StoreError> {
    writer
        .write(move |c| {
            let dropped = c.cached(DROP_CALLBACK)?.execute(params![task_id])?;
            Ok(dropped > 0)
        })
        .await
}

fn enqueue(c: &Db, p: &NewPush) -> Result<bool, StoreError> {
    let url: Option<String> = c
        .cached(
            "UPDATE push_configs SET pushed = 1
             WHERE task_id = ?1 AND id = ?2 AND NOT pushed RETURNING url",
        )?
        .query_row(params![p.task_id, p.config_id], |r| r.get(0))
        .optional()?;
    let Some(url) = url else {
        return Ok(false);
    };
    let seq: i64 = c
        .cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM callbacks")?
        .query_row([], |r| r.get(0))?;
    let body = p.head.body(seq);
    c.cached(
        "INSERT INTO callbacks (seq, id, task_id, url, body, status, attempts, next_attempt_at,
                                created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
    )?
    .execute(params![seq, p.callback_id, p.task_id, url, body, p.now])?;
    Ok(true)
}

pub(crate) async fn enqueue_push(writer: &Writer, push: NewPush) -> Result<bool, StoreError> {
    writer.write(move |c| enqueue(c, &push)).await
}
