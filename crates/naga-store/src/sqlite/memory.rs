//! Task memory on SQLite.

use super::{stmts::Db, writer::Writer};
use crate::sql::{self, ADD_COMPRESSED_MEMORY};
use crate::StoreError;
use naga_core::time::Millis;
use rusqlite::params;

fn add_compressed(
    c: &Db,
    task_id: &str,
    method: &str,
    summary: &str,
    now: Millis,
) -> Result<(), StoreError> {
    c.cached(ADD_COMPRESSED_MEMORY)?
        .execute(params![method, summary, now, task_id])?;
    Ok(())
}

pub(crate) async fn add_compressed_memory(
    writer: &Writer,
    task_id: &str,
    method: &str,
    summary: String,
    now: Millis,
) -> Result<(), StoreError> {
    let (task_id, method) = (task_id.to_owned(), method.to_owned());
    writer
        .write(move |c| add_compressed(c, &task_id, &method, &summary, now))
        .await
}

pub(crate) async fn clear_memory(
    writer: &Writer,
    scope: crate::MemoryScope,
) -> Result<u64, StoreError> {
    let statements = sql::clear_memory(&scope);
    let value = match scope {
        crate::MemoryScope::Task(id) | crate::MemoryScope::Session(id) => Some(id),
        crate::MemoryScope::Global => None,
    };
    writer
        .write(move |c| {
            let mut removed = 0;
            for sql in &statements {
                removed += c.execute(sql, params![value])? as u64;
            }
            Ok(removed)
        })
        .await
}
