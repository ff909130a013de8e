//! Callbacks: the outbox delivery worker, the URL allowlist and
//! Standard Webhooks signing.
//!
//! A callback row is written in the transaction that ends its task; the
//! node that ended it POSTs it at once through one pooled keep-alive
//! client. Connect errors, timeouts, 408, 429 and 5xx are retried with
//! exponential backoff and jitter (honouring `Retry-After`) until delivered
//! or declared dead: a failed attempt writes the row's next due time and
//! lets go of it, and the row waits in the store, not in memory. Every
//! node's claimer takes due rows held by no live node (retries, and those
//! of a node that died), as many as it has delivery permits free.
//!
//! Where each part is: this file, the worker's handle (`Callbacks`: admit a
//! URL, enqueue a row, the claimer of due rows); `deliver`, one attempt and
//! the outcomes recorded in batches; `backoff`, when
//! to try again; `policy`, which URLs are allowed; `resolve`, the allowlist
//! checked again on every address a host resolves to; `sign`, Standard
//! Webhooks signatures.

pub mod a2a;
mod backoff;
mod deliver;
mod policy;
mod pushes;
mod resolve;
mod sign;

pub use backoff::{backoff_delay, scheduled_delay};
pub use policy::{address_allowed, check_url};
pub use sign::{parse_secret, secret_from_token, sign};

use deliver::flush_deliveries;
use resolve::{refused_address, CheckedResolver};

use crate::clock::Clock;
use naga_core::config::CallbackConfig;
use naga_core::time::Millis;
use naga_store::{CallbackRow, Outbox, Store};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How often the claimer looks for due deliveries when nothing woke it
/// (retries written by other nodes, a dead node's rows).
const CLAIM_POLL: Duration = Duration::from_secs(1);

/// Most rows claimed by one statement.
const CLAIM_GROUP: usize = 64;

/// The bodies claimed attempts may hold at once (bytes): a claim takes
/// rows without their bodies, and each attempt reads its own within this,
/// so retries of many large callbacks do not hold them all at once.
const BODY_BYTES: usize = 16 << 20;

#[derive(Clone)]
pub struct Callbacks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// This node: the holder of the rows it delivers.
    node: String,
    client: reqwest::Client,
    config: CallbackConfig,
    /// The signing key, then the keys being rotated out (a signature each).
    keys: Vec<Vec<u8>>,
    clock: Arc<dyn Clock>,
    permits: Semaphore,
    /// [`BODY_BYTES`], in KiB.
    body_bytes: Semaphore,
    /// No new attempt starts once this fires (a graceful stop); attempts
    /// in flight finish (or time out) and are recorded.
    draining: CancellationToken,
    /// Attempts still in flight are abandoned once this fires (their rows
    /// stay pending).
    stop: CancellationToken,
    /// Successful deliveries, recorded in batches by the flusher.
    delivered: mpsc::UnboundedSender<(Outbox, i64, i64)>,
    flusher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Receiver URLs admitted (allowlist checked) and parsed once: most
    /// callbacks go to a few receivers.
    urls: std::sync::Mutex<HashMap<String, url::Url>>,
    /// Deliveries under way (each ends once `stop` fires).
    deliveries: tokio_util::task::TaskTracker,
    /// Where each attempt's outcome is told (the live task feed).
    feed: crate::feed::TaskFeed,
    /// Deliveries handed to this node's workers and not ended yet (what
    /// the claimer leaves room for).
    in_flight: AtomicUsize,
    /// The rows this node attempts, or whose delivery it is recording:
    /// the only ones whose leases it renews (see [`naga_store::Holding`]).
    under_way: Arc<UnderWay>,
    /// The earliest due time of a retry this node wrote, not claimed yet
    /// (`i64::MAX`: none): the claimer wakes for it, not only on its poll.
    due: AtomicI64,
    /// The claimer found no room: the next delivery to end wakes it.
    starved: AtomicBool,
    wake: Notify,
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
        node: String,
        config: CallbackConfig,
        clock: Arc<dyn Clock>,
        stop: CancellationToken,
        feed: crate::feed::TaskFeed,
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
        let under_way = Arc::new(UnderWay::default());
        let flusher = tokio::spawn(flush_deliveries(
            clock.clone(),
            store.clone(),
            node.clone(),
            rx,
            under_way.clone(),
            stop.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                permits: Semaphore::new(config.concurrency.max(1)),
                body_bytes: Semaphore::new(BODY_BYTES / 1024),
                draining: CancellationToken::new(),
                store,
                node,
                client,
                config,
                keys,
                clock,
                stop,
                delivered,
                flusher: std::sync::Mutex::new(Some(flusher)),
                urls: std::sync::Mutex::default(),
                deliveries: Default::default(),
                feed,
                in_flight: AtomicUsize::new(0),
                under_way,
                due: AtomicI64::new(i64::MAX),
                starved: AtomicBool::new(false),
                wake: Notify::new(),
            }),
        })
    }

    /// The first step of a graceful stop: no new attempt starts, and the
    /// attempts in flight get until `within` to end and be recorded (a
    /// receiver that got a callback is not sent it again by the node that
    /// takes the row over). `true` when none was left in flight.
    pub async fn drain(&self, within: Duration) -> bool {
        let inner = &self.inner;
        inner.draining.cancel();
        inner.deliveries.close();
        let drained = (tokio::time::timeout(within, inner.deliveries.wait()).await).is_ok();
        if !drained {
            tracing::warn!(
                deliveries = inner.in_flight.load(Ordering::Acquire),
                "grace period over: callback attempts still in flight are abandoned"
            );
        }
        drained
    }

    /// Waits, once the server stops, for the deliveries under way to end
    /// (an attempt still in flight is abandoned: its row stays pending) and
    /// for the last delivery records.
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

    /// Attempts a due callback this node holds, in the background (one
    /// attempt: a retry waits in the store until it is due).
    pub fn enqueue(&self, row: CallbackRow) {
        let inner = self.inner.clone();
        inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let key = (row.outbox, row.seq);
        inner.under_way.hold(key);
        self.inner.deliveries.spawn(async move {
            let _ended = Ended(&inner);
            if !inner.deliver(row).await {
                inner.under_way.let_go(&[key]);
            }
        });
    }

    /// [`Callbacks::enqueue`], unless this node is delivering the row
    /// already (claimed again because its lease lapsed meanwhile: the
    /// claim renewed it).
    fn enqueue_unless_under_way(&self, row: CallbackRow) {
        if self.inner.under_way.contains((row.outbox, row.seq)) {
            tracing::debug!(callback_id = %row.id, "claimed again while delivered here: left to that delivery");
            return;
        }
        self.enqueue(row);
    }

    /// The deliveries this node works on, added to `holding` (their leases
    /// are renewed with its tasks').
    pub fn holding(&self, holding: &mut naga_store::Holding) {
        self.inner.under_way.fill(holding);
    }

    /// Starts this node's claimer of due deliveries: retries whose time
    /// came and rows whose holder died or let its lease expire, held by no
    /// live node, the longest due first, as many as this node has delivery
    /// permits free (in groups of at most 64). It wakes at the due time of
    /// a retry written here, when a delivery ends while it had no room, and
    /// every second (what other nodes let go of); it stops with the engine.
    /// `claims` makes this node's claim at a time (its lease, and the
    /// heartbeat before which a node is dead).
    pub fn spawn_claimer(&self, claims: impl Fn(Millis) -> naga_store::Claim + Send + 'static) {
        let this = self.clone();
        self.inner.deliveries.spawn(async move {
            let inner = &this.inner;
            let mut pushes_at = Millis::MIN;
            loop {
                let now = inner.clock.now_ms();
                if inner.due.load(Ordering::Acquire) <= now {
                    inner.due.store(i64::MAX, Ordering::Release);
                }
                let free = inner
                    .config
                    .concurrency
                    .max(1)
                    .saturating_sub(inner.in_flight.load(Ordering::Acquire));
                let limit = free.min(CLAIM_GROUP);
                let mut full = free == 0;
                // Pushes of configs whose task ended, looked for once a
                // poll (not on every wake-up under load): claimed below.
                if now.saturating_sub(pushes_at) >= CLAIM_POLL.as_millis() as Millis {
                    pushes_at = now;
                    if let Err(e) = pushes::write_due_pushes(&inner.store, now).await {
                        tracing::warn!(error = %e, "cannot write the due A2A pushes");
                    }
                }
                if limit > 0 {
                    match inner
                        .store
                        .claim_deliveries(&claims(now), limit as i64)
                        .await
                    {
                        Ok(rows) => {
                            full = rows.len() == limit;
                            if !rows.is_empty() {
                                tracing::debug!(
                                    deliveries = rows.len(),
                                    "claimed due callbacks and notifications"
                                );
                            }
                            for row in rows {
                                this.enqueue_unless_under_way(row);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot claim due deliveries")
                        }
                    }
                }
                if full {
                    // More may be due: claim again once a delivery ends.
                    inner.starved.store(true, Ordering::Release);
                }
                let wait = match inner.due.load(Ordering::Acquire) {
                    i64::MAX => CLAIM_POLL,
                    due => CLAIM_POLL.min(Duration::from_millis(
                        (due - inner.clock.now_ms()).max(0) as u64,
                    )),
                };
                tokio::select! {
                    _ = inner.clock.sleep(wait) => {}
                    _ = inner.wake.notified() => {}
                    _ = inner.draining.cancelled() => return,
                }
            }
        });
    }
}

impl Inner {
    /// A retry written here is due at `at`: the claimer wakes for it.
    fn due_at(&self, at: Millis) {
        if self.due.fetch_min(at, Ordering::AcqRel) > at {
            self.wake.notify_one();
        }
    }
}

/// The rows a node attempts or records (see `Inner::under_way`).
#[derive(Default)]
struct UnderWay(std::sync::Mutex<std::collections::HashSet<(Outbox, i64)>>);

impl UnderWay {
    fn hold(&self, key: (Outbox, i64)) {
        self.0.lock().unwrap().insert(key);
    }

    fn let_go(&self, keys: &[(Outbox, i64)]) {
        let mut under_way = self.0.lock().unwrap();
        for key in keys {
            under_way.remove(key);
        }
    }

    fn contains(&self, key: (Outbox, i64)) -> bool {
        self.0.lock().unwrap().contains(&key)
    }

    /// Adds the rows under way to `holding`.
    fn fill(&self, holding: &mut naga_store::Holding) {
        for &(outbox, seq) in self.0.lock().unwrap().iter() {
            holding.of(outbox).push(seq);
        }
    }
}

/// A delivery's end: room for the claimer.
struct Ended<'a>(&'a Inner);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        let inner = self.0;
        inner.in_flight.fetch_sub(1, Ordering::AcqRel);
        if inner.starved.swap(false, Ordering::AcqRel) {
            inner.wake.notify_one();
        }
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

    /// A row this node delivers is renewed by name while it is under way
    /// and let go of once its outcome is recorded; claimed again meanwhile
    /// (its lease lapsed before a renewal), it is not sent a second time.
    #[tokio::test]
    async fn a_row_claimed_again_while_it_is_delivered_here_is_not_sent_twice() {
        use naga_store::{Finished, Holding, Inserted, Lease, NewTask, TaskFinish};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("naga.db").display());
        let store = Store::open(&url, &Default::default()).await.unwrap();
        // A receiver that answers each request only when the test says so.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = format!("http://{}/cb", listener.local_addr().unwrap());
        let (arrived, mut requests) = mpsc::unbounded_channel();
        let answer = Arc::new(Notify::new());
        let answers = answer.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (arrived, answer) = (arrived.clone(), answers.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let _ = conn.read(&mut buf).await;
                    let _ = arrived.send(());
                    answer.notified().await;
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        let stop = CancellationToken::new();
        let callbacks = Callbacks::new(
            store.clone(),
            "node".into(),
            CallbackConfig::default(),
            Arc::new(crate::clock::SystemClock),
            stop.clone(),
            Default::default(),
        )
        .unwrap();
        let lease = Lease {
            owner: "node".into(),
            until: i64::MAX,
        };
        let Inserted::New { seq, .. } = store
            .insert_task(NewTask {
                id: "t".into(),
                kind: naga_core::wire::TaskKind::Agent,
                session_id: "s".into(),
                analysis_session_id: None,
                query: None,
                callback_url: Some(receiver.clone()),
                policy: Default::default(),
                fingerprint: None,
                calls: "[]".into(),
                calls_count: 0,
                response: String::new(),
                accepted_at: 0,
                lease: lease.clone(),
                started: true,
                clock: None,
            })
            .await
            .unwrap()
        else {
            panic!("stored")
        };
        let ended = store
            .finish_task(TaskFinish {
                task_id: "t".into(),
                task_seq: seq,
                owner: "node".into(),
                last_call: None,
                status: naga_core::TaskStatus::Succeeded,
                error: None,
                finished_at: 1,
                callback: Some((
                    receiver,
                    naga_store::EnvelopeHead::parse(r#"{"task_id":"t","sequence":"#).unwrap(),
                )),
                callback_id: "msg_t".into(),
                summary: None,
                lease_until: 2,
                take_next: false,
            })
            .await
            .unwrap();
        let Finished::Ended {
            callback: Some(row),
            ..
        } = ended
        else {
            panic!("{ended:?}")
        };
        let held = |callbacks: &Callbacks| {
            let mut holding = Holding::default();
            callbacks.holding(&mut holding);
            holding.callbacks
        };

        callbacks.enqueue(row.clone());
        tokio::time::timeout(Duration::from_secs(10), requests.recv())
            .await
            .expect("the delivery reached the receiver within 10 s");
        assert_eq!(held(&callbacks), [row.seq], "renewed while under way");
        // Its lease (until 2) lapsed: this node's own claim takes it again.
        let claim = naga_store::Claim {
            lease: Lease {
                owner: "node".into(),
                until: 1_000,
            },
            now: 10,
            lapsed_before: 10,
            dead_before: 0,
            clock: None,
        };
        let again = store.claim_deliveries(&claim, 10).await.unwrap();
        assert_eq!(again.len(), 1, "claimable again: its lease lapsed");
        callbacks.enqueue_unless_under_way(again[0].clone());
        assert_eq!(
            callbacks.inner.in_flight.load(Ordering::Acquire),
            1,
            "left to the delivery under way"
        );

        answer.notify_one();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !held(&callbacks).is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the delivery was not let go of within 10 s of its answer"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let row = store.callback("msg_t").await.unwrap().unwrap();
        assert_eq!(row.status, naga_core::DeliveryStatus::Delivered);
        assert!(requests.try_recv().is_err(), "sent once");
        stop.cancel();
    }

    #[tokio::test]
    async fn only_the_allowlist_admits_a_url_also_once_known() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("naga.db").display());
        let store = Store::open(&url, &Default::default()).await.unwrap();
        let callbacks = Callbacks::new(
            store,
            "node".into(),
            CallbackConfig::default(),
            Arc::new(crate::clock::SystemClock),
            CancellationToken::new(),
            Default::default(),
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
