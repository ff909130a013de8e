//! The callback outbox on SQLite.

use super::writer::Writer;
use crate::{
    commands::{Claim, DeliveryOutcome, Lease, OUTBOXES},
    rows::{CallbackRow, Outbox},
    StoreError,
};
use naga_core::time::Millis;
use rusqlite::params;

pub(crate) async fn claim_deliveries(
    writer: &Writer,
    claim: Claim,
    limit: i64,
) -> Result<Vec<CallbackRow>, StoreError> {
    writer
        .write(move |c| {
            let mut rows = Vec::new();
            for (outbox, table) in [Outbox::Callbacks, Outbox::Notifications]
                .into_iter()
                .zip(OUTBOXES)
            {
                let left = limit - rows.len() as i64;
                if left <= 0 {
                    break;
                }
                let mut stmt = c.prepare(&format!(
                    "UPDATE {table} SET lease_owner = ?1, lease_expires_at = ?2
                         WHERE seq IN (
                           SELECT seq FROM {table}
                           WHERE status = 'pending' AND next_attempt_at <= ?3
                             AND {}
                           ORDER BY next_attempt_at LIMIT ?5)
                         RETURNING {}",
                    crate::sql::unheld!("?", "?6"),
                    crate::callback_without_body!()
                ))?;
                let mut claimed = stmt
                    .query_map(
                        params![
                            claim.lease.owner,
                            claim.lease.until,
                            claim.now,
                            claim.dead_before,
                            left,
                            claim.lapsed_before
                        ],
                        |r| {
                            Ok(CallbackRow {
                                outbox,
                                seq: r.get(0)?,
                                id: r.get(1)?,
                                task_id: r.get(2)?,
                                url: r.get(3)?,
                                body: r.get(4)?,
                                status: super::decoded(r, 5)?,
                                attempts: r.get(6)?,
                                next_attempt_at: r.get(7)?,
                                last_error: r.get(8)?,
                                created_at: r.get(9)?,
                                delivered_at: r.get(10)?,
                                body_len: r.get(11)?,
                            })
                        },
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                claimed.sort_by_key(|r| (r.next_attempt_at, r.seq));
                rows.extend(claimed);
            }
            Ok(rows)
        })
        .await
}

pub(crate) async fn record_deliveries_in(
    writer: &Writer,
    outbox: Outbox,
    owner: String,
    attempts: Vec<(i64, DeliveryOutcome, Millis)>,
) -> Result<(), StoreError> {
    writer
        .write(move |c| {
            let mut stmt = c.cached(match outbox {
                Outbox::Callbacks => {
                    "UPDATE callbacks SET status = ?2, attempts = attempts + 1,
                             last_error = COALESCE(?3, last_error), next_attempt_at = ?4,
                             delivered_at = COALESCE(?5, delivered_at),
                             lease_owner = NULL, lease_expires_at = NULL
                         WHERE seq = ?1 AND lease_owner = ?6"
                }
                Outbox::Notifications => {
                    "UPDATE notifications SET status = ?2, attempts = attempts + 1,
                             last_error = COALESCE(?3, last_error), next_attempt_at = ?4,
                             delivered_at = COALESCE(?5, delivered_at),
                             lease_owner = NULL, lease_expires_at = NULL
                         WHERE seq = ?1 AND lease_owner = ?6"
                }
            })?;
            for (seq, outcome, now) in &attempts {
                let now = *now;
                let (status, error, next, delivered) = match outcome {
                    DeliveryOutcome::Delivered => ("delivered", None, now, Some(now)),
                    DeliveryOutcome::Retry {
                        error,
                        next_attempt_at,
                    } => ("pending", Some(error), *next_attempt_at, None),
                    DeliveryOutcome::Dead { error } => ("dead", Some(error), now, None),
                };
                stmt.execute(params![seq, status, error, next, delivered, owner])?;
            }
            Ok(())
        })
        .await
}

/// Whether the callback was put back (read back by the caller).
pub(crate) async fn requeue_callback(
    writer: &Writer,
    id: &str,
    lease: &Lease,
    now: Millis,
) -> Result<bool, StoreError> {
    let (key, lease) = (id.to_owned(), lease.clone());
    writer
        .write(move |c| {
            let n = c
                .cached(
                    "UPDATE callbacks SET status = 'pending', attempts = 0, next_attempt_at = ?2,
                             lease_owner = ?3, lease_expires_at = ?4
                         WHERE id = ?1 AND status <> 'pending'",
                )?
                .execute(params![key, now, lease.owner, lease.until])?;
            Ok(n == 1)
        })
        .await
}

/// The ids of the callbacks put back (read back by the caller).
pub(crate) async fn redrive_dead(
    writer: &Writer,
    since: Millis,
    limit: i64,
    lease: &Lease,
    now: Millis,
) -> Result<Vec<String>, StoreError> {
    let lease = lease.clone();
    writer
        .write(move |c| {
            let mut stmt = c.cached(
                "UPDATE callbacks SET status = 'pending', attempts = 0, next_attempt_at = ?3,
                         lease_owner = ?4, lease_expires_at = ?5
                     WHERE seq IN (SELECT seq FROM callbacks
                                   WHERE status = 'dead' AND next_attempt_at >= ?1
                                   ORDER BY seq LIMIT ?2)
                     RETURNING id",
            )?;
            let ids = stmt
                .query_map(params![since, limit, now, lease.owner, lease.until], |r| {
                    r.get(0)
                })?
                .collect::<Result<_, _>>()?;
            Ok(ids)
        })
        .await
}
