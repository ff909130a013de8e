//! Task memory on PostgreSQL: LLM summaries added, memory forgotten.

use crate::sql::{self, ADD_COMPRESSED_MEMORY};
use crate::{MemoryScope, StoreError};
use naga_core::time::Millis;
use sqlx::PgPool;

pub(crate) async fn add_compressed_memory(
    pool: &PgPool,
    task_id: &str,
    method: &str,
    summary: &str,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query(ADD_COMPRESSED_MEMORY)
        .bind(method)
        .bind(summary)
        .bind(now)
        .bind(task_id)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn clear_memory(pool: &PgPool, scope: &MemoryScope) -> Result<u64, StoreError> {
    let value = match scope {
        MemoryScope::Task(id) | MemoryScope::Session(id) => Some(id.as_str()),
        MemoryScope::Global => None,
    };
    let mut tx = pool.begin().await?;
    let mut removed = 0;
    for sql in sql::clear_memory(scope) {
        removed += sqlx::query(&sql)
            .bind(value)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(removed)
}
