//! Retention on PostgreSQL: one node prunes at a time (each batch's
//! transaction takes a transaction-level advisory lock, or leaves the
//! batch to the node that holds it), each batch one transaction.

use crate::{
    retention::{Candidate, PruneTasks, Rule, TasksPruned, SCAN_TASKS},
    Cutoffs, StoreError,
};
use naga_core::{time::Millis, TaskStatus};
use sqlx::{postgres::PgRow, PgPool, Postgres, Row, Transaction};

/// The advisory lock of the pruning node ("nagaprun").
const PRUNE_LOCK: i64 = 0x6e61_6761_7072_756e;

/// Whether this transaction may prune now: no other node is.
async fn take_turn(tx: &mut Transaction<'_, Postgres>) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(PRUNE_LOCK)
        .fetch_one(&mut **tx)
        .await?)
}

pub(crate) async fn prune_rule(
    pool: &PgPool,
    rule: Rule,
    cutoff: Millis,
    limit: i64,
    dry_run: bool,
) -> Result<Option<u64>, StoreError> {
    let mut tx = pool.begin().await?;
    if !take_turn(&mut tx).await? {
        return Ok(None);
    }
    let n = match dry_run {
        true => {
            sqlx::query_scalar::<_, i64>(&rule.count_sql())
                .bind(cutoff)
                .fetch_one(&mut *tx)
                .await? as u64
        }
        false => sqlx::query(&rule.delete_sql())
            .bind(cutoff)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
    };
    tx.commit().await?;
    Ok(Some(n))
}

fn candidate(r: &PgRow) -> Result<Candidate, StoreError> {
    Ok(Candidate {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        session_id: r.try_get(2)?,
        status: r.try_get::<TaskStatus, _>(3)?,
        finished_at: r.try_get(4)?,
        accepted_at: r.try_get(5)?,
        held: r.try_get(6)?,
    })
}

pub(crate) async fn prune_tasks(
    pool: &PgPool,
    batch: PruneTasks,
) -> Result<Option<TasksPruned>, StoreError> {
    let mut tx = pool.begin().await?;
    if !take_turn(&mut tx).await? {
        return Ok(None);
    }
    let rows = sqlx::query(SCAN_TASKS)
        .bind(Cutoffs::bound(batch.cutoffs.callbacks))
        .bind(Cutoffs::bound(batch.cutoffs.dead_callbacks))
        .bind(batch.pass.after)
        .bind(batch.limit)
        .fetch_all(&mut *tx)
        .await?;
    let candidates = rows.iter().map(candidate).collect::<Result<Vec<_>, _>>()?;
    let (pass, chosen) = batch.choose(candidates);
    let mut pruned = TasksPruned {
        pass,
        ..Default::default()
    };
    if !chosen.is_empty() {
        pruned.tasks = chosen.len() as u64;
        (pruned.steps, pruned.callbacks, pruned.push_configs) = match batch.dry_run {
            true => count_tasks(&mut tx, &chosen).await?,
            false => remove_tasks(&mut tx, &chosen, batch.now).await?,
        };
    }
    tx.commit().await?;
    Ok(Some(pruned))
}

/// The steps, callbacks and push configs hanging on `tasks`.
async fn count_tasks(
    tx: &mut Transaction<'_, Postgres>,
    tasks: &[Candidate],
) -> Result<(u64, u64, u64), StoreError> {
    let seqs: Vec<i64> = tasks.iter().map(|t| t.seq).collect();
    let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    // (Their callbacks are past their windows: the outbox's rules counted
    // them.)
    let (steps, push_configs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM steps WHERE task_seq = ANY($1)),
                (SELECT COUNT(*) FROM push_configs WHERE task_id = ANY($2))",
    )
    .bind(&seqs)
    .bind(&ids)
    .fetch_one(&mut **tx)
    .await?;
    Ok((steps as u64, 0, push_configs as u64))
}

/// Removes `tasks` with what hangs on them and leaves their request ids.
/// Their sessions' rows are locked last, in the order accepts lock them
/// (held for the commit only: the session's accepts wait that long). An
/// accept of one of these request ids that began before this commit
/// inserts its task only once this commit is made (the id's row is being
/// deleted), and then finds the request id left behind and undoes it
/// (`functions.sql`); when it holds the session's row meanwhile, one of the
/// two is ended as a deadlock: a prune batch is done again next round, an
/// accept answered 503 and sent again.
async fn remove_tasks(
    tx: &mut Transaction<'_, Postgres>,
    tasks: &[Candidate],
    now: Millis,
) -> Result<(u64, u64, u64), StoreError> {
    let seqs: Vec<i64> = tasks.iter().map(|t| t.seq).collect();
    let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    let sessions: Vec<&str> = tasks.iter().map(|t| t.session_id.as_str()).collect();
    let mut removed = [0u64; 3];
    let dependents = [
        ("DELETE FROM steps WHERE task_seq = ANY($1)", true),
        ("DELETE FROM callbacks WHERE task_id = ANY($1)", false),
        ("DELETE FROM push_configs WHERE task_id = ANY($1)", false),
    ];
    for (n, (sql, by_seq)) in removed.iter_mut().zip(dependents) {
        let q = sqlx::query(sql);
        let q = match by_seq {
            true => q.bind(&seqs),
            false => q.bind(&ids),
        };
        *n = q.execute(&mut **tx).await?.rows_affected();
    }
    sqlx::query("DELETE FROM tasks WHERE seq = ANY($1)")
        .bind(&seqs)
        .execute(&mut **tx)
        .await?;
    let statuses: Vec<&str> = tasks.iter().map(|t| t.status.as_str()).collect();
    let ends: Vec<Option<Millis>> = tasks.iter().map(|t| t.finished_at).collect();
    sqlx::query(
        "INSERT INTO pruned_tasks (id, session_id, status, finished_at, pruned_at)
         SELECT u.id, u.session_id, u.status, u.finished_at, $5
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])
              AS u(id, session_id, status, finished_at)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&sessions)
    .bind(&statuses)
    .bind(&ends)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    // (In bytes' order, as an accept group sorts its sessions: never in
    // the opposite order of another transaction, whatever the collation.)
    sqlx::query("SELECT 1 FROM sessions WHERE id = ANY($1) ORDER BY id COLLATE \"C\" FOR UPDATE")
        .bind(&sessions)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE sessions s SET task_count = s.task_count - d.n
         FROM (SELECT id, COUNT(*) AS n FROM UNNEST($1::TEXT[]) AS u(id) GROUP BY id) d
         WHERE s.id = d.id",
    )
    .bind(&sessions)
    .execute(&mut **tx)
    .await?;
    Ok((removed[0], removed[1], removed[2]))
}
