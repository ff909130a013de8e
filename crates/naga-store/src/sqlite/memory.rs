//! Task memory on SQLite.

use super::{stmts::Db, writer::Writer};
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
    c.cached(
        "INSERT INTO compressed_memories (session_id, task_id, method, summary, created_at)
         SELECT session_id, id, ?2, ?3, ?4 FROM tasks WHERE id = ?1",
    )?
    .execute(params![task_id, method, summary, now])?;
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
    use crate::MemoryScope::*;
    let (by_task, by_session) = ("task_id = ?1", "session_id = ?1");
    let (steps, tasks, compressed, failed) = match &scope {
        Task(_) => (
            "task_seq = (SELECT seq FROM tasks WHERE id = ?1)".to_owned(),
            "id = ?1".to_owned(),
            by_task,
            "last_task_id = ?1",
        ),
        // Steps and tasks are reached through the session's chain.
        Session(_) => {
            let seqs = crate::reads::session_task_seqs("?1");
            (
                format!("task_seq IN {seqs}"),
                format!("seq IN {seqs}"),
                by_session,
                by_session,
            )
        }
        Global => (
            "?1 IS NULL".to_owned(),
            "?1 IS NULL".to_owned(),
            "?1 IS NULL",
            "?1 IS NULL",
        ),
    };
    let statements = [
        format!("UPDATE steps SET in_memory = 0 WHERE in_memory = 1 AND {steps}"),
        format!("UPDATE tasks SET summary = NULL WHERE summary IS NOT NULL AND {tasks}"),
        format!("DELETE FROM compressed_memories WHERE {compressed}"),
        format!("DELETE FROM failed_attempts WHERE {failed}"),
    ];
    let value = match scope {
        Task(id) | Session(id) => Some(id),
        Global => None,
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
