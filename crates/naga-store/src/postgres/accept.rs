//! A batch accepted on PostgreSQL: its session's row locked (made if
//! missing) so that the session's chain grows one task at a time, its
//! analysis session (unless known), the task with the session's chain, all
//! decided in the database (`functions.sql`, applied at every start). The
//! batches a node accepts at the same moment are stored by one statement,
//! one round trip and one commit for all (the group writers of
//! `grouped.rs`); a lone one by a statement of its own.
//!
//! Two nodes accepting the same request id (or creating the same session
//! or analysis session) at once need no retry: every insert is
//! `ON CONFLICT`, which waits for the other's commit and then sees its row.

use super::{first_answer, ready_next, Pg, FIRST_ANSWER};
use crate::{
    commands::{Inserted, NewTask},
    StoreError,
};
use naga_core::time::Millis;
use sqlx::{FromRow, PgPool, Row};

/// A batch to store, as the group writers take it: the node's answer for
/// its analysis session's owner, if it knows it.
pub(crate) struct Accept {
    pub task: NewTask,
    pub known_owner: Option<String>,
}

/// What the database decided for one batch (`naga_accept_one`): `code`
/// `None` when stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Accepted {
    code: Option<String>,
    message: Option<String>,
    seq: Option<i64>,
    started: Option<bool>,
    ready: Option<bool>,
    accepted_at: Option<Millis>,
    analysis_owner: Option<String>,
}

/// Stores a batch (in a group with others accepted at the same moment),
/// then answers: a stored batch behind an unfinished one is readied if
/// that one ended meanwhile (`ready_next`); a refused one reads what it
/// answers.
pub(crate) async fn insert_task(pg: &Pg, task: NewTask) -> Result<Inserted, StoreError> {
    if let Some(e) = pg.known_unreachable() {
        return Err(e);
    }
    let known_owner = match &task.analysis_session_id {
        Some(analysis) => match pg.analysis_owners.owner(analysis, &task.session_id) {
            Some(Ok(())) => Some(task.session_id.clone()),
            Some(Err(owner)) => Some(owner),
            None => None,
        },
        None => None,
    };
    let (accepted, accept) = pg.grouped.accept(Accept { task, known_owner }).await?;
    let task = &accept.task;
    let (Some(seq), Some(started), Some(ready), Some(accepted_at), None) = (
        accepted.seq,
        accepted.started,
        accepted.ready,
        accepted.accepted_at,
        &accepted.code,
    ) else {
        return refused(&pg.pool, task, accepted).await;
    };
    if let (Some(analysis), None, Some(owner)) = (
        &task.analysis_session_id,
        &accept.known_owner,
        accepted.analysis_owner,
    ) {
        pg.analysis_owners.learn(analysis.clone(), owner);
    }
    // Stored behind an unfinished batch that may have ended meanwhile
    // (see `ready_next`).
    let ready = ready || ready_next(&pg.pool, &task.session_id).await?.is_some();
    Ok(Inserted::New {
        seq,
        started,
        ready,
        accepted_at,
    })
}

/// One batch by its own statement.
pub(crate) async fn accept_one(pool: &PgPool, a: &Accept) -> Result<Accepted, StoreError> {
    let t = &a.task;
    // (The time as the writer takes it; the database keeps a session's
    // batches in the order of their times.)
    let (accepted_at, lease_until) = t.stamp();
    Ok(sqlx::query_as(
        "SELECT o_code AS code, o_message AS message, o_seq AS seq, o_started AS started,
                o_ready AS ready, o_accepted_at AS accepted_at,
                o_analysis_owner AS analysis_owner
         FROM naga_accept_one($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                              $16)",
    )
    .bind(&t.id)
    .bind(t.kind.as_str())
    .bind(&t.session_id)
    .bind(&t.analysis_session_id)
    .bind(&a.known_owner)
    .bind(&t.query)
    .bind(&t.callback_url)
    .bind(t.policy.as_str())
    .bind(&t.fingerprint)
    .bind(t.calls_count as i64)
    .bind(&t.calls)
    .bind(&t.response)
    .bind(accepted_at)
    .bind(t.started)
    .bind(&t.lease.owner)
    .bind(lease_until)
    .fetch_one(pool)
    .await?)
}

/// Many batches by one statement, one answer each in the order given.
/// They are stored sorted by session (each session's in the order given),
/// so that two groups lock their sessions' rows in the same order.
pub(crate) async fn accept_group(
    pool: &PgPool,
    group: &[&Accept],
) -> Result<Vec<Accepted>, StoreError> {
    let mut order: Vec<usize> = (0..group.len()).collect();
    order.sort_by(|&x, &y| group[x].task.session_id.cmp(&group[y].task.session_id));
    let mut c = Columns::default();
    for &i in &order {
        let (a, t) = (group[i], &group[i].task);
        let (accepted_at, lease_until) = t.stamp();
        c.id.push(&t.id);
        c.kind.push(t.kind.as_str());
        c.session_id.push(&t.session_id);
        c.analysis_session_id.push(t.analysis_session_id.as_deref());
        c.known_owner.push(a.known_owner.as_deref());
        c.query.push(t.query.as_deref());
        c.callback_url.push(t.callback_url.as_deref());
        c.policy.push(t.policy.as_str());
        c.fingerprint.push(t.fingerprint.as_deref());
        c.calls_count.push(t.calls_count as i64);
        c.calls.push(&t.calls);
        c.response.push(&t.response);
        c.accepted_at.push(accepted_at);
        c.start.push(t.started);
        c.lease_owner.push(&t.lease.owner);
        c.lease_until.push(lease_until);
    }
    let rows: Vec<(i32, Accepted)> = sqlx::query(
        "SELECT g_i, g_code AS code, g_message AS message, g_seq AS seq, g_started AS started,
                g_ready AS ready, g_accepted_at AS accepted_at,
                g_analysis_owner AS analysis_owner
         FROM naga_accept_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                                $15, $16)",
    )
    .bind(c.id)
    .bind(c.kind)
    .bind(c.session_id)
    .bind(c.analysis_session_id)
    .bind(c.known_owner)
    .bind(c.query)
    .bind(c.callback_url)
    .bind(c.policy)
    .bind(c.fingerprint)
    .bind(c.calls_count)
    .bind(c.calls)
    .bind(c.response)
    .bind(c.accepted_at)
    .bind(c.start)
    .bind(c.lease_owner)
    .bind(c.lease_until)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, Accepted::from_row(r)?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let mut answers: Vec<Option<Accepted>> = group.iter().map(|_| None).collect();
    for (i, accepted) in rows {
        let slot = usize::try_from(i - 1)
            .ok()
            .and_then(|at| order.get(at))
            .and_then(|&at| answers.get_mut(at));
        match slot {
            Some(slot) => *slot = Some(accepted),
            None => return Err(StoreError::Corrupt(format!("naga_accept_group: row {i}"))),
        }
    }
    answers
        .into_iter()
        .map(|a| a.ok_or_else(|| StoreError::Corrupt("naga_accept_group: a batch left out".into())))
        .collect()
}

/// The group's columns, one array each (borrowed: a batch's calls can be
/// large).
#[derive(Default)]
struct Columns<'a> {
    id: Vec<&'a str>,
    kind: Vec<&'static str>,
    session_id: Vec<&'a str>,
    analysis_session_id: Vec<Option<&'a str>>,
    known_owner: Vec<Option<&'a str>>,
    query: Vec<Option<&'a str>>,
    callback_url: Vec<Option<&'a str>>,
    policy: Vec<&'static str>,
    fingerprint: Vec<Option<&'a str>>,
    calls_count: Vec<i64>,
    calls: Vec<&'a str>,
    response: Vec<&'a str>,
    accepted_at: Vec<i64>,
    start: Vec<bool>,
    lease_owner: Vec<&'a str>,
    lease_until: Vec<i64>,
}

/// What a batch the database did not store answers (see `functions.sql`).
async fn refused(pool: &PgPool, task: &NewTask, a: Accepted) -> Result<Inserted, StoreError> {
    let message = a.message.unwrap_or_default();
    Ok(match a.code.as_deref() {
        Some("NGBSY") => Inserted::Busy,
        Some("NGANA") => {
            return Err(StoreError::Conflict(format!(
                "analysis_session_id `{}` belongs to session `{message}`, not `{}`",
                task.analysis_session_id.as_deref().unwrap_or_default(),
                task.session_id
            )))
        }
        Some("NGDUP") => {
            let seq: i64 = message.parse().map_err(|_| {
                StoreError::Corrupt(format!("naga_accept_one: a duplicate's seq `{message}`"))
            })?;
            let row = sqlx::query(&format!("{FIRST_ANSWER} WHERE seq = $1"))
                .bind(seq)
                .fetch_one(pool)
                .await?;
            Inserted::Duplicate(first_answer(&row)?)
        }
        Some("NGPRN") => Inserted::Pruned(
            sqlx::query_as(crate::sql::PRUNED_TASK)
                .bind(&task.id)
                .fetch_one(pool)
                .await?,
        ),
        Some("NGKWN") => {
            let row = sqlx::query(&format!("{FIRST_ANSWER} WHERE id = $1"))
                .bind(&task.id)
                .fetch_one(pool)
                .await?;
            let first = first_answer(&row)?;
            match repeated(pool, task).await? {
                true => Inserted::Existing(first),
                false => Inserted::Reused(first),
            }
        }
        other => {
            return Err(StoreError::Corrupt(format!(
                "naga_accept_one answered {other:?} without a task"
            )))
        }
    })
}

/// Whether a task with this request id is stored with the same batch.
async fn repeated(pool: &PgPool, task: &NewTask) -> Result<bool, StoreError> {
    let stored: Option<crate::commands::StoredBatch> = sqlx::query_as(concat!(
        "SELECT ",
        crate::commands::stored_batch_columns!(),
        " FROM tasks WHERE id = $1"
    ))
    .bind(&task.id)
    .fetch_optional(pool)
    .await?;
    Ok(stored.is_some_and(|s| crate::commands::same_batch(&s, task)))
}
