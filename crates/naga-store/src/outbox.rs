//! The callback outbox: deliveries claimed by a node, each attempt's
//! outcome, replays and redrives of dead callbacks.

use crate::{commands::*, postgres, rows::*, sqlite, Backend, Store, StoreError};
use naga_core::time::Millis;

impl Store {
    /// Takes over the pending callbacks and UI notifications of both
    /// outboxes whose lease expired (or that have none), and those whose
    /// lease `own` holds (a restarted node's own): what a restart or another
    /// node delivers. Oldest first, each outbox in turn. Rows of the
    /// claiming node itself are taken only through `own`: while it runs, it
    /// is delivering them (even when its heartbeat could not renew them).
    /// Also those of a node whose heartbeat is older than `dead_before`.
    pub async fn claim_deliveries(
        &self,
        lease: Lease,
        now: Millis,
        own: Option<&str>,
        dead_before: Millis,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                sqlite::outbox::claim_deliveries(writer, lease, now, own, dead_before).await
            }
            Backend::Postgres(pg) => {
                pg.observed(postgres::claim_deliveries(
                    pg,
                    &lease,
                    now,
                    own,
                    dead_before,
                ))
                .await
            }
        }
    }

    /// Records one delivery attempt of a callback.
    pub async fn record_delivery(
        &self,
        seq: i64,
        outcome: DeliveryOutcome,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.record_deliveries(vec![(seq, outcome, now)]).await
    }

    /// Records many delivery attempts in one job (the delivery worker
    /// batches its successes). Callbacks are addressed by `seq`, the
    /// table's own key (the text `id` would cost an index seek more).
    pub async fn record_deliveries(
        &self,
        attempts: Vec<(i64, DeliveryOutcome, Millis)>,
    ) -> Result<(), StoreError> {
        self.record_deliveries_in(Outbox::Callbacks, attempts).await
    }

    /// [`Store::record_deliveries`] in either outbox.
    pub async fn record_deliveries_in(
        &self,
        outbox: Outbox,
        attempts: Vec<(i64, DeliveryOutcome, Millis)>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                sqlite::outbox::record_deliveries_in(writer, outbox, attempts).await
            }
            Backend::Postgres(pg) => {
                pg.observed(postgres::record_deliveries_in(pg, outbox, &attempts))
                    .await
            }
        }
    }

    /// Puts a callback that is not pending back in the outbox to be
    /// delivered again (replay), with its attempts counted from zero: it
    /// retries like a first delivery. The replaying node takes its lease in
    /// the same statement (no other node's sweep takes it from under it).
    /// `None` when there is no such callback or it is pending already: of
    /// concurrent replays of one callback, one gets it.
    pub async fn requeue_callback(
        &self,
        id: &str,
        lease: &Lease,
        now: Millis,
    ) -> Result<Option<CallbackRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                match sqlite::outbox::requeue_callback(writer, id, lease, now).await? {
                    true => self.callback(id).await,
                    false => Ok(None),
                }
            }
            Backend::Postgres(pg) => {
                pg.observed(postgres::requeue_callback(pg, id, lease, now))
                    .await
            }
        }
    }

    /// Puts back in the outbox, as first deliveries, at most `limit` dead
    /// callbacks, oldest first, that died at or after `since` (a dead row's
    /// `next_attempt_at` is when it died), under `lease`. Returns them.
    pub async fn redrive_dead(
        &self,
        since: Millis,
        limit: i64,
        lease: &Lease,
        now: Millis,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let ids = sqlite::outbox::redrive_dead(writer, since, limit, lease, now).await?;
                let mut rows = Vec::with_capacity(ids.len());
                for id in ids {
                    rows.extend(self.callback(&id).await?);
                }
                rows.sort_by_key(|r| r.seq);
                Ok(rows)
            }
            Backend::Postgres(pg) => {
                pg.observed(postgres::redrive_dead(pg, since, limit, lease, now))
                    .await
            }
        }
    }
}
