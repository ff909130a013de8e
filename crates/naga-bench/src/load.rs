//! The load: `/schedule` bodies made before the clock starts, sent by
//! keep-alive clients, and the receiver that counts the callbacks.

use crate::children::{cpu_per, thread_cpu_us};
use crate::{Args, Ids};
use axum::{extract::State, routing::post, Json, Router};
use serde_json::{json, Value};
use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::sync::Notify;

/// The request id of batch `i` of a run: `{run}-` (the receiver counts a
/// run's callbacks by it) and then the batch's number, or a UUID's text made
/// from it (distinct for every `i`, in no order), as NagaAgent sends.
pub(crate) fn request_id(ids: Ids, run: &str, i: usize) -> String {
    match ids {
        Ids::Sequential => format!("{run}-{i}"),
        Ids::Uuid => {
            // An odd multiplier is a bijection of u128: no two `i` collide.
            let bits = (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            format!("{run}-{}", uuid::Uuid::from_u128(bits))
        }
    }
}

pub(crate) fn batch(i: usize, args: &Args, callback: Option<&str>, run: &str) -> Value {
    let calls: Vec<Value> = (0..args.calls)
        .map(|c| {
            json!({"tool_name": "echo", "service_name": "agent_server",
                        "instruction": format!("step {c}"), "agentType": "agent"})
        })
        .collect();
    let session = format!("bench_session_{}", i % args.sessions.max(1));
    json!({"query": format!("批量Agent任务执行 ({} 个)", calls.len()), "agent_calls": calls,
           "session_id": session, "analysis_session_id": format!("analysis_{session}_1703123456"),
           "request_id": request_id(args.ids, run, i), "callback_url": callback})
}

pub(crate) struct Load {
    pub(crate) seconds: f64,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: usize,
    /// CPU of this process (the load client) per request while the clock
    /// ran, in µs.
    pub(crate) client_cpu_us_per_request: f64,
}

impl Load {
    pub(crate) fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds
    }
    pub(crate) fn percentile(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
        l[i].as_secs_f64() * 1000.0
    }
}

/// `n` requests of `args`' shape to `url`, from `args.concurrency` clients.
pub(crate) async fn load(
    url: &str,
    args: &Args,
    n: usize,
    callback: Option<String>,
    run: &str,
) -> Load {
    load_spread(&[url], args, n, callback, run).await
}

/// [`load`] spread over several servers: client `i` sends to `urls[i % len]`.
pub(crate) async fn load_spread(
    urls: &[&str],
    args: &Args,
    n: usize,
    callback: Option<String>,
    run: &str,
) -> Load {
    let concurrency = args.concurrency;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    // Bodies are made before the clock starts.
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|i| batch(i, args, callback.as_deref(), run).to_string())
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let client_before = thread_cpu_us(std::process::id());
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|i| {
            let (client, bodies, next, url) = (
                client.clone(),
                bodies.clone(),
                next.clone(),
                format!("{}/schedule", urls[i % urls.len()]),
            );
            tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() {
                        return (lat, errors);
                    }
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(bodies[i].clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.push(t.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
            })
        })
        .collect();
    let mut out = Load {
        seconds: 0.0,
        latencies: Vec::with_capacity(n),
        errors: 0,
        client_cpu_us_per_request: 0.0,
    };
    for w in workers {
        let (lat, errors) = w.await.unwrap();
        out.latencies.extend(lat);
        out.errors += errors;
    }
    out.seconds = start.elapsed().as_secs_f64();
    out.client_cpu_us_per_request = cpu_per(std::process::id(), &client_before, n).0;
    out
}

/// A callback receiver counting distinct task ids.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) seen: Arc<Mutex<HashSet<String>>>,
    pub(crate) total: Arc<AtomicUsize>,
    pub(crate) notify: Arc<Notify>,
}

impl Receiver {
    pub(crate) async fn start(&self) -> anyhow::Result<String> {
        let app = Router::new()
            .route(
                "/cb",
                post(
                    |State(r): State<Receiver>, Json(v): Json<Value>| async move {
                        r.total.fetch_add(1, Ordering::Relaxed);
                        if let Some(id) = v["task_id"].as_str() {
                            r.seen.lock().unwrap().insert(id.to_owned());
                        }
                        r.notify.notify_waiters();
                        "ok"
                    },
                ),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{addr}/cb"))
    }

    pub(crate) fn distinct(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|id| id.starts_with(prefix))
            .count()
    }

    /// Waits until `n` distinct tasks of `prefix` were called back (or `limit` passes).
    pub(crate) async fn wait(&self, prefix: &str, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.notify.notified();
            if self.distinct(prefix) >= n {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }
}

/// Submits `n` batches with callbacks and times until every callback came.
pub(crate) async fn drain(
    url: &str,
    args: &Args,
    receiver: &Receiver,
    cb: &str,
    run: &str,
) -> (f64, usize, Load) {
    drain_spread(&[url], args, receiver, cb, run).await
}

/// [`drain`] with the batches spread over several nodes.
pub(crate) async fn drain_spread(
    urls: &[&str],
    args: &Args,
    receiver: &Receiver,
    cb: &str,
    run: &str,
) -> (f64, usize, Load) {
    let start = Instant::now();
    let l = load_spread(urls, args, args.batches, Some(cb.to_owned()), run).await;
    let prefix = format!("{run}-");
    receiver
        .wait(&prefix, args.batches, Duration::from_secs(600))
        .await;
    let secs = start.elapsed().as_secs_f64();
    let got = receiver.distinct(&prefix);
    (got as f64 / secs, args.batches - got, l)
}
