//! The callback outbox on PostgreSQL: deliveries claimed, their outcomes,
//! replays and redrives.

use crate::{
    commands::{Claim, DeliveryOutcome, Lease, OUTBOXES},
    rows::{CallbackRow, Outbox},
    StoreError,
};
use naga_core::time::Millis;
use sqlx::PgPool;

/// Claims due outbox rows held by no live node, the longest due first,
/// skipping rows another node is claiming at this moment.
pub(crate) async fn claim_deliveries(
    pool: &PgPool,
    claim: &Claim,
    limit: i64,
) -> Result<Vec<CallbackRow>, StoreError> {
    let mut rows = Vec::new();
    for (outbox, table) in [Outbox::Callbacks, Outbox::Notifications]
        .into_iter()
        .zip(OUTBOXES)
    {
        let left = limit - rows.len() as i64;
        if left <= 0 {
            break;
        }
        let mut claimed: Vec<CallbackRow> = sqlx::query_as(&format!(
            "UPDATE {table} SET lease_owner = $1, lease_expires_at = $2
             WHERE seq IN (SELECT seq FROM {table}
                           WHERE status = 'pending' AND next_attempt_at <= $3
                             AND {}
                           ORDER BY next_attempt_at LIMIT $5
                           FOR UPDATE SKIP LOCKED)
             RETURNING {}",
            crate::sql::unheld!("$", "$6"),
            crate::callback_without_body!()
        ))
        .bind(&claim.lease.owner)
        .bind(claim.lease.until)
        .bind(claim.now)
        .bind(claim.dead_before)
        .bind(left)
        .bind(claim.lapsed_before)
        .fetch_all(pool)
        .await?;
        claimed.sort_by_key(|r| (r.next_attempt_at, r.seq));
        for r in &mut claimed {
            r.outbox = outbox;
        }
        rows.extend(claimed);
    }
    Ok(rows)
}

/// Delivery attempts of many rows in one statement, each row let go of;
/// only rows `owner` holds.
pub(crate) async fn record_deliveries_in(
    pool: &PgPool,
    outbox: Outbox,
    owner: &str,
    attempts: &[(i64, DeliveryOutcome, Millis)],
) -> Result<(), StoreError> {
    let table = match outbox {
        Outbox::Callbacks => "callbacks",
        Outbox::Notifications => "notifications",
    };
    let n = attempts.len();
    let (mut seqs, mut statuses, mut errors, mut nexts, mut delivered) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (seq, outcome, now) in attempts {
        let now = *now;
        let (status, error, next, at) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", None, now, Some(now)),
            DeliveryOutcome::Retry {
                error,
                next_attempt_at,
            } => ("pending", Some(error.clone()), *next_attempt_at, None),
            DeliveryOutcome::Dead { error } => ("dead", Some(error.clone()), now, None),
        };
        seqs.push(*seq);
        statuses.push(status);
        errors.push(error);
        nexts.push(next);
        delivered.push(at);
    }
    sqlx::query(&format!(
        "UPDATE {table} AS c SET status = d.status, attempts = c.attempts + 1,
             last_error = COALESCE(d.error, c.last_error), next_attempt_at = d.next,
             delivered_at = COALESCE(d.delivered, c.delivered_at),
             lease_owner = NULL, lease_expires_at = NULL
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
              AS d(seq, status, error, next, delivered)
         WHERE c.seq = d.seq AND c.lease_owner = $6"
    ))
    .bind(seqs)
    .bind(statuses)
    .bind(errors)
    .bind(nexts)
    .bind(delivered)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn requeue_callback(
    pool: &PgPool,
    id: &str,
    lease: &Lease,
    now: Millis,
) -> Result<Option<CallbackRow>, StoreError> {
    // Concurrent replays: the second waits for the first's row lock, then
    // sees the row pending and changes nothing.
    Ok(sqlx::query_as(
        "UPDATE callbacks SET status = 'pending', attempts = 0, next_attempt_at = $2,
             lease_owner = $3, lease_expires_at = $4
         WHERE id = $1 AND status <> 'pending' RETURNING *",
    )
    .bind(id)
    .bind(now)
    .bind(&lease.owner)
    .bind(lease.until)
    .fetch_optional(pool)
    .await?)
}

pub(crate) async fn redrive_dead(
    pool: &PgPool,
    since: Millis,
    limit: i64,
    lease: &Lease,
    now: Millis,
) -> Result<Vec<CallbackRow>, StoreError> {
    let mut rows: Vec<CallbackRow> = sqlx::query_as(
        "UPDATE callbacks SET status = 'pending', attempts = 0, next_attempt_at = $3,
             lease_owner = $4, lease_expires_at = $5
         WHERE seq IN (SELECT seq FROM callbacks
                       WHERE status = 'dead' AND next_attempt_at >= $1
                       ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
           AND status = 'dead'
         RETURNING *",
    )
    .bind(since)
    .bind(limit)
    .bind(now)
    .bind(&lease.owner)
    .bind(lease.until)
    .fetch_all(pool)
    .await?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}
