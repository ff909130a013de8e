//! Callbacks: the outbox delivery worker, the URL allowlist and
//! Standard Webhooks signing.
//!
//! A callback row is written in the transaction that ends its task; this
//! worker then POSTs it through one pooled keep-alive client, retrying
//! connect errors, timeouts, 408, 429 and 5xx with exponential backoff and
//! jitter (honouring `Retry-After`), until it is delivered or declared dead.

use crate::{clock::Clock, retry::retry_store};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use hmac::{Hmac, Mac};
use naga_core::config::CallbackConfig;
use naga_store::{CallbackRow, DeliveryOutcome, Outbox, Store};
use rand::Rng;
use sha2::Sha256;
use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// Checks a `callback_url` against `[callbacks] allowed_hosts`.
pub fn check_url(raw: &str, allowed: &[String]) -> Result<url::Url, String> {
    let url = url::Url::parse(raw)
        .map_err(|e| format!("callback_url `{raw}` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "callback_url must be http or https, not `{}`",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("callback_url `{raw}` has no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let is_loopback = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let allowed_here = allowed
        .iter()
        .any(|a| a == "*" || (a == "loopback" && is_loopback) || a.eq_ignore_ascii_case(bare));
    let address = bare.parse::<IpAddr>().ok();
    if let Some(ip) = address.filter(|ip| !address_allowed(*ip, allowed)) {
        return Err(format!(
            "callback address {ip} is refused: private, loopback and link-local addresses need \
             to be listed in [callbacks] allowed_hosts"
        ));
    }
    if allowed_here {
        Ok(url)
    } else {
        Err(format!(
            "callback host `{host}` is not allowed; allowed: {} (set [callbacks] allowed_hosts)",
            allowed.join(", ")
        ))
    }
}

/// Whether a callback may be delivered to `ip` (the address a URL names,
/// or one its host name resolves to at delivery): public addresses yes;
/// loopback only with `loopback` allowed; private, link-local (the cloud
/// metadata service), shared, unspecified, multicast and documentation
/// ranges only when the address itself is listed.
pub fn address_allowed(ip: IpAddr, allowed: &[String]) -> bool {
    // An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is that address.
    let unmapped = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let ip = unmapped(ip);
    if allowed.iter().any(|a| {
        a.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|listed| unmapped(listed) == ip)
    }) {
        return true;
    }
    if ip.is_loopback() {
        return allowed.iter().any(|a| a == "loopback");
    }
    let special = match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared (CGNAT)
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 too)
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 // NAT64
        }
    };
    !special
}

/// A host name that resolves to no address a callback may go to.
#[derive(Debug)]
struct RefusedAddress(String);

impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RefusedAddress {}

/// The callback client's DNS: every address a host name resolves to is
/// checked ([`address_allowed`]) as the connection is made, so a name that
/// was allowed cannot be rebound to an internal address.
struct CheckedResolver {
    allowed: Arc<[String]>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let usable: Vec<_> = found
                .iter()
                .copied()
                .filter(|a| address_allowed(a.ip(), &allowed))
                .collect();
            if usable.is_empty() {
                let addrs: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(Box::new(RefusedAddress(format!(
                    "callback host `{host}` resolves to {} only: private, loopback and \
                     link-local addresses are refused unless listed in [callbacks] allowed_hosts",
                    addrs.join(", ")
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal of the address-level check in `e`'s causes, if that is why
/// it failed.
fn refused_address(e: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<RefusedAddress>() {
            return Some(r.0.clone());
        }
        cause = c.source();
    }
    None
}

/// A Standard Webhooks signing key from `whsec_<base64>`.
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(b64)
        .map_err(|e| format!("[callbacks] secret must be `whsec_<base64 key>`: {e}"))
}

/// The callback secret of a node with `[auth] token` and no `[callbacks]
/// secret`: derived from the token (HMAC-SHA256, one way), so that every
/// process sharing the token signs and verifies naga's own callbacks with
/// the same key, and the token itself never leaves the process.
pub fn secret_from_token(token: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(b"naga callback secret, derived from [auth] token")
            .expect("HMAC takes keys of any length");
    mac.update(token.as_bytes());
    format!("whsec_{}", B64.encode(mac.finalize().into_bytes()))
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct Callbacks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    client: reqwest::Client,
    config: CallbackConfig,
    /// The signing key, then the keys being rotated out (a signature each).
    keys: Vec<Vec<u8>>,
    clock: Arc<dyn Clock>,
    permits: Semaphore,
    stop: CancellationToken,
    /// Successful deliveries, recorded in batches by the flusher.
    delivered: mpsc::UnboundedSender<(Outbox, i64, i64)>,
    flusher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Receiver URLs admitted (allowlist checked) and parsed once: most
    /// callbacks go to a few receivers.
    urls: std::sync::Mutex<HashMap<String, url::Url>>,
    /// Deliveries under way (each ends once `stop` fires).
    deliveries: tokio_util::task::TaskTracker,
}

/// Most distinct receiver URLs kept parsed.
const PARSED_URLS: usize = 1024;

enum Attempt {
    Delivered,
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    Fatal(String),
}

impl Callbacks {
    pub fn new(
        store: Store,
        config: CallbackConfig,
        clock: Arc<dyn Clock>,
        stop: CancellationToken,
    ) -> Result<Self, String> {
        let keys = config
            .secret
            .iter()
            .chain(&config.previous_secrets)
            .map(|s| parse_secret(s))
            .collect::<Result<Vec<_>, _>>()?;
        let client = reqwest::Client::builder()
            .dns_resolver(CheckedResolver {
                allowed: config.allowed_hosts.clone().into(),
            })
            .timeout(Duration::from_millis(config.timeout_ms))
            .pool_max_idle_per_host(config.concurrency)
            .user_agent(concat!("naga/", env!("CARGO_PKG_VERSION")))
            // A redirect could lead past `allowed_hosts`: a 3xx is an answer.
            .redirect(reqwest::redirect::Policy::none())
            // Retries are this worker's (with backoff and an outbox row).
            .retry(reqwest::retry::never())
            .build()
            .map_err(|e| format!("cannot build the callback HTTP client: {e}"))?;
        let (delivered, rx) = mpsc::unbounded_channel();
        let flusher = tokio::spawn(flush_deliveries(
            clock.clone(),
            store.clone(),
            rx,
            stop.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                permits: Semaphore::new(config.concurrency.max(1)),
                store,
                client,
                config,
                keys,
                clock,
                stop,
                delivered,
                flusher: std::sync::Mutex::new(Some(flusher)),
                urls: std::sync::Mutex::default(),
                deliveries: Default::default(),
            }),
        })
    }

    /// Waits, once the server stops, for the deliveries under way to end
    /// (an attempt in flight is abandoned: its row stays pending) and for
    /// the last delivery records.
    pub async fn close(&self) {
        let deliveries = &self.inner.deliveries;
        deliveries.close();
        deliveries.wait().await;
        let flusher = self.inner.flusher.lock().unwrap().take();
        if let Some(f) = flusher {
            let _ = f.await;
        }
    }

    /// Checks a batch's `callback_url` against `[callbacks] allowed_hosts`.
    /// A URL admitted once is known (and kept parsed for its deliveries):
    /// most batches name one of a few receivers.
    pub fn admit(&self, raw: &str) -> Result<(), String> {
        let inner = &self.inner;
        if inner.urls.lock().unwrap().contains_key(raw) {
            return Ok(());
        }
        let url = check_url(raw, &inner.config.allowed_hosts)?;
        let mut urls = inner.urls.lock().unwrap();
        if urls.len() >= PARSED_URLS {
            urls.clear();
        }
        urls.insert(raw.to_owned(), url);
        Ok(())
    }

    /// Delivers a callback in the background until delivered or dead.
    pub fn enqueue(&self, row: CallbackRow) {
        let inner = self.inner.clone();
        self.inner
            .deliveries
            .spawn(async move { inner.deliver(row).await });
    }

    /// Takes over and sends the pending callbacks and UI notifications
    /// that no live node holds: with `own`, also those this node's identity
    /// held in its last run (at start); without, those whose holder's lease
    /// expired (a node that died; the periodic sweep).
    pub async fn claim(
        &self,
        lease: naga_store::Lease,
        own: bool,
    ) -> Result<usize, naga_store::StoreError> {
        let now = self.inner.clock.now_ms();
        let me = own.then(|| lease.owner.clone());
        let rows = self
            .inner
            .store
            .claim_deliveries(lease, now, me.as_deref())
            .await?;
        let n = rows.len();
        for row in rows {
            self.enqueue(row);
        }
        Ok(n)
    }
}

impl Inner {
    async fn deliver(&self, mut row: CallbackRow) {
        let mut attempts = row.attempts as u32;
        let wait = row.next_attempt_at - self.clock.now_ms();
        if wait > 0 {
            // The body waits in the store, not here (a retry can be hours
            // away, and bodies can be large).
            row.body = String::new();
            if !self.sleep(Duration::from_millis(wait as u64)).await {
                return;
            }
        }
        loop {
            if row.body.is_empty() {
                match self.store.delivery_body(row.outbox, row.seq).await {
                    Ok(Some(body)) => row.body = body,
                    Ok(None) => return, // gone (its conversation was deleted)
                    Err(e) => {
                        // The store cannot be read now: asked again soon
                        // (the row stays pending and this node's).
                        tracing::warn!(callback_id = %row.id, error = %e,
                            "cannot read a callback's body to send it; trying again");
                        if !self.sleep(Duration::from_secs(1)).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let permit = tokio::select! {
                p = self.permits.acquire() => p,
                _ = self.stop.cancelled() => return,
            };
            let Ok(_permit) = permit else { return };
            if self.stop.is_cancelled() {
                return;
            }
            attempts += 1;
            let outcome = tokio::select! {
                outcome = self.attempt(&row) => outcome,
                // Abandoned: the row stays pending, sent again by the next run.
                _ = self.stop.cancelled() => return,
            };
            let now = self.clock.now_ms();
            let (record, delay) = match outcome {
                Attempt::Delivered => (DeliveryOutcome::Delivered, None),
                Attempt::Fatal(error) => (DeliveryOutcome::Dead { error }, None),
                Attempt::Retry { error, .. } if attempts >= self.config.max_attempts => {
                    let error = format!("{error} (gave up after {attempts} attempts)");
                    (DeliveryOutcome::Dead { error }, None)
                }
                Attempt::Retry { error, retry_after } => {
                    // The receiver's Retry-After wins over our backoff (bounded,
                    // so that no receiver can park a callback for days).
                    let delay = match retry_after {
                        Some(d) => d.min(MAX_RETRY_AFTER),
                        None => self.backoff(attempts),
                    };
                    let next_attempt_at = now + delay.as_millis() as i64;
                    (
                        DeliveryOutcome::Retry {
                            error,
                            next_attempt_at,
                        },
                        Some(delay),
                    )
                }
            };
            match &record {
                DeliveryOutcome::Delivered => {
                    tracing::debug!(callback_id = %row.id, task_id = %row.task_id, attempts, "callback delivered")
                }
                DeliveryOutcome::Retry { error, .. } => {
                    tracing::warn!(callback_id = %row.id, task_id = %row.task_id, attempts, %error, "callback delivery failed; will retry")
                }
                DeliveryOutcome::Dead { error } => {
                    tracing::error!(callback_id = %row.id, task_id = %row.task_id, attempts, %error, "callback dead-lettered")
                }
            }
            if let DeliveryOutcome::Delivered = record {
                // Recorded with others in one commit; until then the row is
                // pending, and a crash would only send it again.
                let _ = self.delivered.send((row.outbox, row.seq, now));
                return;
            }
            let recorded = retry_store(
                &*self.clock,
                &self.stop,
                3,
                || format!("record an attempt of callback `{}`", row.id),
                || {
                    self.store
                        .record_deliveries_in(row.outbox, vec![(row.seq, record.clone(), now)])
                },
            )
            .await;
            if let Err(e) = recorded {
                // The row stays pending in the store: a restart sends it again.
                tracing::error!(callback_id = %row.id, error = %e, "cannot record callback delivery");
                return;
            }
            drop(_permit);
            row.body = String::new();
            match delay {
                Some(d) if self.sleep(d).await => continue,
                _ => return,
            }
        }
    }

    /// Sleeps unless the server stops first; false when it stopped.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.clock.sleep(d) => true,
            _ = self.stop.cancelled() => false,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
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
    fn url(&self, raw: &str) -> Result<url::Url, String> {
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

    async fn attempt(&self, row: &CallbackRow) -> Attempt {
        let timestamp = self.clock.now().timestamp();
        let url = match self.url(&row.url) {
            Ok(url) => url,
            Err(e) => return Attempt::Fatal(e),
        };
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &row.id)
            .header("webhook-timestamp", timestamp.to_string());
        if !self.keys.is_empty() {
            let signatures: Vec<String> = self
                .keys
                .iter()
                .map(|key| sign(key, &row.id, timestamp, &row.body))
                .collect();
            req = req.header("webhook-signature", signatures.join(" "));
        }
        match req.body(row.body.clone()).send().await {
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
async fn flush_deliveries(
    clock: Arc<dyn Clock>,
    store: Store,
    mut rx: mpsc::UnboundedReceiver<(Outbox, i64, i64)>,
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
                || store.record_deliveries_in(outbox, of_outbox.clone()),
            )
            .await;
            if let Err(e) = recorded {
                tracing::error!(error = %e, "cannot record deliveries; those are sent again after a restart");
            }
        }
    }
}

/// The wait before retry number `attempt` (1-based) on a schedule: its
/// `attempt`th wait (the last one past its end), within ±10% by `jitter`
/// in `[0, 1)`. `None` when the schedule is empty.
pub fn scheduled_delay(attempt: u32, schedule: &[u64], jitter: f64) -> Option<Duration> {
    let index = (attempt.max(1) as usize - 1).min(schedule.len().checked_sub(1)?);
    let d = schedule[index] as f64;
    Some(Duration::from_millis(
        (d * (0.9 + 0.2 * jitter.clamp(0.0, 1.0))) as u64,
    ))
}

/// The wait before retry number `attempt` (1-based): `base · 2^(attempt-1)`
/// capped at `max`, with "equal jitter": somewhere in `[d/2, d]` by `jitter`
/// in `[0, 1)`, so that callbacks failed together do not retry together.
pub fn backoff_delay(attempt: u32, base_ms: u64, max_ms: u64, jitter: f64) -> Duration {
    let base = base_ms.max(1);
    let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let d = exp.min(max_ms.max(base));
    let half = d / 2;
    Duration::from_millis(half + ((d - half) as f64 * jitter.clamp(0.0, 1.0)) as u64)
}

fn describe_send_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist() {
        let loopback = vec!["loopback".to_owned()];
        assert!(check_url("http://localhost:8000/agent_result_callback", &loopback).is_ok());
        assert!(check_url("http://127.0.0.2:1/x", &loopback).is_ok());
        assert!(check_url("http://[::1]:1/x", &loopback).is_ok());
        assert!(check_url("http://example.com/x", &loopback).is_err());
        assert!(check_url("http://10.0.0.1/x", &loopback).is_err());
        assert!(check_url("ftp://localhost/x", &loopback).is_err());
        assert!(check_url("not a url", &loopback).is_err());
        let listed = vec!["hooks.internal".to_owned()];
        assert!(check_url("https://hooks.internal/x", &listed).is_ok());
        assert!(check_url("http://localhost/x", &listed).is_err());
    }

    #[test]
    fn internal_addresses_need_to_be_listed_by_address() {
        let ok = |ip: &str, allowed: &[&str]| {
            let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            address_allowed(ip.parse().unwrap(), &allowed)
        };
        for internal in [
            "169.254.169.254",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!ok(internal, &["*"]), "{internal}");
            assert!(ok(internal, &[internal]), "{internal} listed");
        }
        assert!(!ok("127.0.0.1", &["*"]));
        assert!(ok("127.0.0.1", &["loopback"]));
        assert!(ok("::1", &["loopback"]));
        assert!(ok("93.184.215.14", &["*"]), "a public address");
        assert!(ok("2606:4700::1111", &["hooks.example"]));
    }

    #[tokio::test]
    async fn only_the_allowlist_admits_a_url_also_once_known() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("naga.db").display());
        let store = Store::open(&url, &Default::default()).await.unwrap();
        let callbacks = Callbacks::new(
            store,
            CallbackConfig::default(),
            Arc::new(crate::clock::SystemClock),
            CancellationToken::new(),
        )
        .unwrap();
        let ok = "http://127.0.0.1:9/cb";
        assert!(callbacks.admit(ok).is_ok());
        assert!(callbacks.admit(ok).is_ok(), "known: admitted again");
        // A callback recovered from an earlier run (or replayed) is checked
        // again at delivery, and that does not make its host admissible.
        let elsewhere = "http://example.com/cb";
        assert!(callbacks.inner.url(elsewhere).is_err());
        let refused = callbacks.admit(elsewhere).unwrap_err();
        assert!(refused.contains("not allowed"), "{refused}");
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        let ms = |a, j| backoff_delay(a, 500, 60_000, j).as_millis();
        assert_eq!((ms(1, 0.0), ms(1, 0.999)), (250, 499));
        assert_eq!((ms(2, 0.0), ms(3, 0.0), ms(4, 0.0)), (500, 1000, 2000));
        assert_eq!((ms(20, 0.0), ms(20, 0.999)), (30_000, 59_970));
        assert_eq!(ms(1000, 0.5), 45_000, "no overflow on huge attempt counts");
    }

    #[test]
    fn the_default_schedule_retries_for_about_a_day_with_growing_gaps() {
        let c = CallbackConfig::default();
        let waits: Vec<Duration> = (1..c.max_attempts)
            .map(|a| scheduled_delay(a, &c.retry_schedule_ms, 0.5).unwrap())
            .collect();
        assert_eq!(waits.first(), Some(&Duration::from_secs(5)));
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        let total: Duration = waits.iter().sum();
        assert!(
            (Duration::from_secs(24 * 3600)..Duration::from_secs(30 * 3600)).contains(&total),
            "{total:?}"
        );
        let ms = |a, j| scheduled_delay(a, &[1_000, 10_000], j).unwrap().as_millis();
        assert_eq!((ms(1, 0.0), ms(1, 0.5), ms(2, 0.75)), (900, 1_000, 10_500));
        assert_eq!(ms(9, 0.5), 10_000, "past the end the last wait repeats");
        assert_eq!(scheduled_delay(1, &[], 0.5), None);
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // Test vector of the Standard Webhooks specification.
        let key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
