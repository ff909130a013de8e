//! Delivering one callback: its attempts until delivered or dead, and the
//! outcomes recorded in batches.

use super::{
    address_allowed, backoff_delay, check_url, refused_address, scheduled_delay, sign, Attempt,
    Inner, UnderWay, BODY_BYTES, MAX_RETRY_AFTER,
};
use crate::{clock::Clock, retry::retry_store};
use naga_store::{CallbackRow, DeliveryOutcome, Outbox, Store};
use rand::Rng;
use std::{net::IpAddr, sync::Arc, time::Duration};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

impl Inner {
    /// One attempt at a due callback this node holds. Its outcome is
    /// recorded and the row let go of: a retry waits in the store, held by
    /// nobody, until its due time, when whichever node has room claims it
    /// ([`Callbacks::spawn_claimer`]). `true`: delivered, and handed to
    /// the flusher to record (which then stops renewing its lease).
    pub(super) async fn deliver(&self, mut row: CallbackRow) -> bool {
        // Once draining, nothing new starts (the row stays pending, let go
        // of at the stop); an attempt under way goes on until `stop`.
        let permit = tokio::select! {
            p = self.permits.acquire() => p,
            _ = self.draining.cancelled() => return false,
        };
        let Ok(_permit) = permit else { return false };
        if self.draining.is_cancelled() {
            return false;
        }
        // A claimed row comes without its body: read as the attempt starts,
        // within the bytes that attempts may hold at once.
        let bytes = match row.body.is_empty() {
            true => match self.read_body(&mut row).await {
                Some(permit) => Some(permit),
                None => return false,
            },
            false => None,
        };
        let body = std::mem::take(&mut row.body);
        let attempts = row.attempts as u32 + 1;
        let outcome = tokio::select! {
            outcome = self.attempt(&row, body) => outcome,
            // Abandoned: the row stays pending, let go of at the stop.
            _ = self.stop.cancelled() => return false,
        };
        drop(bytes);
        let now = self.clock.now_ms();
        let record = self.outcome_of(outcome, attempts, now);
        self.report(&row, &record, attempts);
        if let DeliveryOutcome::Delivered = record {
            // Recorded with others in one commit; until then the row is
            // pending, and a crash would only send it again.
            return self.delivered.send((row.outbox, row.seq, now)).is_ok();
        }
        let next = match &record {
            DeliveryOutcome::Retry {
                next_attempt_at, ..
            } => Some(*next_attempt_at),
            _ => None,
        };
        let recorded = retry_store(
            &*self.clock,
            &self.stop,
            3,
            || format!("record an attempt of callback `{}`", row.id),
            || {
                self.store.record_deliveries_in(
                    row.outbox,
                    &self.node,
                    vec![(row.seq, record.clone(), now)],
                )
            },
        )
        .await;
        match recorded {
            // The row stays pending in the store, in this node's name but
            // no longer renewed: once its lease lapses a node with room
            // takes it and sends it again.
            Err(e) => {
                tracing::error!(callback_id = %row.id, error = %e, "cannot record callback delivery")
            }
            Ok(()) => {
                if let Some(due) = next {
                    self.due_at(due);
                }
            }
        }
        false
    }

    /// What an attempt makes of its callback: delivered, retried when due,
    /// or dead (fatal, or its last attempt).
    fn outcome_of(&self, attempt: Attempt, attempts: u32, now: i64) -> DeliveryOutcome {
        match attempt {
            Attempt::Delivered => DeliveryOutcome::Delivered,
            Attempt::Fatal(error) => DeliveryOutcome::Dead { error },
            Attempt::Retry { error, .. } if attempts >= self.config.max_attempts => {
                let error = format!("{error} (gave up after {attempts} attempts)");
                DeliveryOutcome::Dead { error }
            }
            Attempt::Retry { error, retry_after } => {
                // The receiver's Retry-After wins over our backoff (bounded,
                // so that no receiver can park a callback for days).
                let delay = match retry_after {
                    Some(d) => d.min(MAX_RETRY_AFTER),
                    None => self.backoff(attempts),
                };
                DeliveryOutcome::Retry {
                    error,
                    next_attempt_at: now + delay.as_millis() as i64,
                }
            }
        }
    }

    /// An attempt's outcome told: metrics, the live feed, the log.
    fn report(&self, row: &CallbackRow, record: &DeliveryOutcome, attempts: u32) {
        let (outcome, next, error) = match record {
            DeliveryOutcome::Delivered => ("delivered", None, None),
            DeliveryOutcome::Retry {
                error,
                next_attempt_at,
            } => ("retry", Some(*next_attempt_at), Some(error.as_str())),
            DeliveryOutcome::Dead { error } => ("dead", None, Some(error.as_str())),
        };
        crate::metrics::callback_delivery(outcome);
        if self.feed.watched() {
            let event = crate::feed::Event::Callback {
                task_id: &row.task_id,
                callback_id: &row.id,
                outcome,
                next_attempt_at: next.map(naga_core::time::iso),
                error,
            };
            self.feed.send(None, &event);
        }
        match record {
            DeliveryOutcome::Delivered => {
                tracing::debug!(callback_id = %row.id, task_id = %row.task_id, attempts, "callback delivered")
            }
            DeliveryOutcome::Retry {
                error,
                next_attempt_at,
            } => {
                tracing::warn!(callback_id = %row.id, task_id = %row.task_id, attempts, %error,
                    next_attempt_at, "callback delivery failed; retried when due, by any node")
            }
            DeliveryOutcome::Dead { error } => {
                tracing::error!(callback_id = %row.id, task_id = %row.task_id, attempts, %error, "callback dead-lettered")
            }
        }
    }

    /// Reads the body of a claimed row, once the bytes it takes are free
    /// among [`BODY_BYTES`]; `None`: not now (stopping, or the store could
    /// not read it: the row lapses and is claimed again).
    async fn read_body(&self, row: &mut CallbackRow) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let kib = (row.body_len.max(0) as u64 / 1024).clamp(1, BODY_BYTES as u64 / 1024) as u32;
        let permit = tokio::select! {
            p = self.body_bytes.acquire_many(kib) => p.ok()?,
            _ = self.draining.cancelled() => return None,
        };
        match self.store.callback_body(row.outbox, row.seq).await {
            Ok(Some(body)) => {
                row.body = body;
                Some(permit)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(callback_id = %row.id, error = %e,
                    "cannot read a callback's body; it is claimed again once its lease lapses");
                None
            }
        }
    }

    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let c = &self.config;
        let jitter = rand::rng().random();
        match scheduled_delay(attempt, &c.retry_schedule_ms, jitter) {
            Some(d) => d,
            None => backoff_delay(attempt, c.backoff_base_ms, c.backoff_max_ms, jitter),
        }
    }

    /// The receiver's URL: parsed when it was admitted, else (a callback
    /// recovered from an earlier run, or replayed) checked against today's
    /// allowlist now. Only `admit` adds to the known URLs: a URL known is
    /// one the allowlist let in. An address in the URL itself is checked
    /// here; a host name's addresses as the connection is made.
    pub(super) fn url(&self, raw: &str) -> Result<url::Url, String> {
        let allowed = &self.config.allowed_hosts;
        let known = self.urls.lock().unwrap().get(raw).cloned();
        let url = match known {
            Some(url) => url,
            None => check_url(raw, allowed)?,
        };
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        match ip {
            Some(ip) if !address_allowed(ip, allowed) => Err(format!(
                "callback address {ip} is refused: private, loopback and link-local addresses \
                 need to be listed in [callbacks] allowed_hosts"
            )),
            _ => Ok(url),
        }
    }

    pub(super) async fn attempt(&self, row: &CallbackRow, body: String) -> Attempt {
        let timestamp = self.clock.now().timestamp();
        let url = match self.url(&row.url) {
            Ok(url) => url,
            Err(e) => return Attempt::Fatal(e),
        };
        let req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &row.id)
            .header("webhook-timestamp", timestamp.to_string());
        // An A2A push: what is signed and sent is the task's StreamResponse.
        let (mut req, body) = super::a2a::as_push(req, &row.url, body);
        if !self.keys.is_empty() {
            let signatures: Vec<String> = self
                .keys
                .iter()
                .map(|key| sign(key, &row.id, timestamp, &body))
                .collect();
            req = req.header("webhook-signature", signatures.join(" "));
        }
        // (The body moves into the request: no copy of megabytes.)
        match req.body(body).send().await {
            Err(e) if refused_address(&e).is_some() => {
                Attempt::Fatal(refused_address(&e).unwrap_or_default())
            }
            Err(e) => Attempt::Retry {
                error: describe_send_error(&e),
                retry_after: None,
            },
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return Attempt::Delivered;
                }
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let error = format!("receiver answered {status}");
                if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
                    Attempt::Retry { error, retry_after }
                } else {
                    Attempt::Fatal(error)
                }
            }
        }
    }
}

/// Records successful deliveries in batches: whatever arrived while the
/// last batch was being committed goes into the next.
pub(super) async fn flush_deliveries(
    clock: Arc<dyn Clock>,
    store: Store,
    node: String,
    mut rx: mpsc::UnboundedReceiver<(Outbox, i64, i64)>,
    under_way: Arc<UnderWay>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = stop.cancelled() => None,
        };
        let mut batch: Vec<(Outbox, i64, i64)> = first.into_iter().collect();
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return; // stopped, nothing left
        }
        for outbox in [Outbox::Callbacks, Outbox::Notifications] {
            let of_outbox: Vec<(i64, DeliveryOutcome, i64)> = batch
                .iter()
                .filter(|d| d.0 == outbox)
                .map(|&(_, seq, at)| (seq, DeliveryOutcome::Delivered, at))
                .collect();
            if of_outbox.is_empty() {
                continue;
            }
            let recorded = retry_store(
                &*clock,
                &stop,
                3,
                || format!("record {} deliveries", of_outbox.len()),
                || store.record_deliveries_in(outbox, &node, of_outbox.clone()),
            )
            .await;
            if let Err(e) = recorded {
                tracing::error!(error = %e,
                    "cannot record deliveries; those are sent again once their leases lapse");
            }
            let keys: Vec<_> = of_outbox.iter().map(|&(seq, ..)| (outbox, seq)).collect();
            under_way.let_go(&keys);
        }
    }
}

pub(super) fn describe_send_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        e.to_string()
    }
}
