//! Task memory on PostgreSQL: LLM summaries added, memory forgotten.

use crate::{reads::session_task_seqs, MemoryScope, StoreError};
use naga_core::time::Millis;
use sqlx::PgPool;

pub(crate) async fn add_compressed_memory(
    pool: &PgPool,
    task_id: &str,
    method: &str,
    summary: &str,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO compressed_memories (session_id, task_id, method, summary, created_at)
         SELECT session_id, id, $2, $3, $4 FROM tasks WHERE id = $1",
    )
    .bind(task_id)
    .bind(method)
    .bind(summary)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn clear_memory(pool: &PgPool, scope: &MemoryScope) -> Result<u64, StoreError> {
    let (by_task, by_session) = ("task_id = $1", "session_id = $1");
    let (steps, tasks, compressed, failed) = match scope {
        MemoryScope::Task(_) => (
            "task_seq = (SELECT seq FROM tasks WHERE id = $1)".to_owned(),
            "id = $1".to_owned(),
            by_task,
            "last_task_id = $1",
        ),
        MemoryScope::Session(_) => {
            let seqs = session_task_seqs("$1");
            (
                format!("task_seq IN {seqs}"),
                format!("seq IN {seqs}"),
                by_session,
                by_session,
            )
        }
        MemoryScope::Global => (
            "$1::text IS NULL".to_owned(),
            "$1::text IS NULL".to_owned(),
            "$1::text IS NULL",
            "$1::text IS NULL",
        ),
    };
    let value = match scope {
        MemoryScope::Task(id) | MemoryScope::Session(id) => Some(id.as_str()),
        MemoryScope::Global => None,
    };
    let mut tx = pool.begin().await?;
    let mut removed = 0;
    for sql in [
        format!("UPDATE steps SET in_memory = FALSE WHERE in_memory AND {steps}"),
        format!("UPDATE tasks SET summary = NULL WHERE summary IS NOT NULL AND {tasks}"),
        format!("DELETE FROM compressed_memories WHERE {compressed}"),
        format!("DELETE FROM failed_attempts WHERE {failed}"),
    ] {
        removed += sqlx::query(&sql)
            .bind(value)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(removed)
}
