//! The callback outbox: deliveries claimed by a node, each attempt's
//! outcome, replays and redrives of dead callbacks.

use crate::{
    backend::{on_backend, Commands},
    commands::{Claim, DeliveryOutcome, Lease},
    rows::{CallbackRow, Outbox},
    Store, StoreError,
};
use naga_core::time::Millis;

impl Store {
    /// Claims the pending callbacks and UI notifications that are due
    /// (`next_attempt_at` reached) and held by no live node: nobody holds
    /// them (a failed attempt lets go of its row, to be retried by whichever
    /// node has room when it is due), their holder's lease expired, or its
    /// heartbeat is older than `dead_before`. At most `limit` rows, the
    /// longest due first (callbacks before notifications). A row whose
    /// lease lapsed in the claiming node's own name is taken too (its
    /// delivery here ended without an outcome recorded, or never began: see
    /// [`Holding`]); the node skips those it is still delivering.
    pub async fn claim_deliveries(
        &self,
        claim: &Claim,
        limit: i64,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        on_backend!(self, |b| b.claim_deliveries(claim, limit).await)
    }

    /// Records one delivery attempt of a callback by the node `owner`.
    pub async fn record_delivery(
        &self,
        owner: &str,
        seq: i64,
        outcome: DeliveryOutcome,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.record_deliveries_in(Outbox::Callbacks, owner, vec![(seq, outcome, now)])
            .await
    }

    /// Records many delivery attempts of the node `owner` in one job (the
    /// delivery worker batches its successes). Rows are addressed by `seq`,
    /// the table's own key. Each row recorded is let go of (a retry waits,
    /// held by nobody, until it is due); a row `owner` no longer holds (its
    /// lease was taken over) is left to its new holder: fenced.
    pub async fn record_deliveries_in(
        &self,
        outbox: Outbox,
        owner: &str,
        attempts: Vec<(i64, DeliveryOutcome, Millis)>,
    ) -> Result<(), StoreError> {
        on_backend!(self, |b| b
            .record_deliveries_in(outbox, owner, attempts)
            .await)
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
        on_backend!(self, |b| b.requeue_callback(id, lease, now).await)
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
        on_backend!(self, |b| b.redrive_dead(since, limit, lease, now).await)
    }
}
