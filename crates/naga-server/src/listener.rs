//! The accept loop of every listener: what a slow or idle client may cost
//! is bounded, whoever it is (this runs before the token is checked).
//! - A connection whose request headers do not arrive within
//!   `header_timeout_ms` is closed (an idle keep-alive connection included);
//!   a request whose body does not arrive whole within `body_timeout_ms`
//!   fails.
//! - At most `max_connections` are open at once. When a new one arrives at
//!   that bound, or the process is out of file descriptors, the connection
//!   that has waited longest for a request is closed to make room; a
//!   connection with a request under way (an SSE stream included) is never
//!   closed for it. With every connection busy, newcomers wait to be
//!   accepted.

use axum::{extract::Request, response::Response};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// Serves each connection `listener` accepts (see the module's note). Once
/// `stop` fires, accepts no more and lets the open connections finish.
pub(crate) async fn accept<S>(
    listener: tokio::net::TcpListener,
    service: S,
    http: &naga_core::config::HttpConfig,
    stop: CancellationToken,
) -> std::io::Result<()>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let permits = Arc::new(tokio::sync::Semaphore::new(http.max_connections.max(1)));
    let open = Arc::new(OpenConnections::default());
    let header_timeout = Duration::from_millis(http.header_timeout_ms.max(1));
    let body_timeout = Duration::from_millis(http.body_timeout_ms.max(1));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1.1 (naga's clients speak it): its header timer runs from the
    // connection's first moment, so a client that sends nothing is closed.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, mostly: make room, or wait
                    // for some to close.
                    if !open.close_longest_waiting("no file descriptor left") {
                        tracing::warn!(error = %e, "cannot accept a connection; trying again shortly");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                open.close_longest_waiting("max_connections reached");
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = stop.cancelled() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (id, conn_state) = open.add();
        let state = conn_state.clone();
        let service = service.clone();
        let handle =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                state.busy();
                let req =
                    req.map(|body| axum::body::Body::new(DeadlineBody::new(body, body_timeout)));
                let state = state.clone();
                let response = service.clone().oneshot(req);
                async move {
                    let response = response.await?;
                    // Waiting again once the response is sent (or dropped).
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| axum::body::Body::new(Responding { body, state })),
                    )
                }
            });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), handle));
        let open = open.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                _ = conn_state.close.cancelled() => {}
            }
            open.remove(id);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A listener's open connections, to find the one that has waited longest
/// for a request.
struct OpenConnections {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Default for OpenConnections {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::default(),
        }
    }
}

impl OpenConnections {
    fn add(&self) -> (u64, Arc<Connection>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Connection {
            epoch: self.epoch,
            waiting_since: AtomicU64::new(0),
            close: CancellationToken::new(),
        });
        conn.waiting();
        self.lock().insert(id, conn.clone());
        (id, conn)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes the connection that has waited longest for a request's
    /// headers; false when every connection has a request under way.
    fn close_longest_waiting(&self, why: &'static str) -> bool {
        let open = self.lock();
        let longest = open
            .values()
            .filter(|c| !c.close.is_cancelled())
            .map(|c| (c.waiting_since.load(Ordering::Relaxed), c))
            .filter(|(since, _)| *since != BUSY)
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((since, conn)) => {
                let waited = (self.epoch.elapsed().as_micros() as u64).saturating_sub(since) / 1000;
                tracing::info!(
                    waited_ms = waited,
                    open = open.len(),
                    why,
                    "closed the connection that waited longest for a request, to make room"
                );
                conn.close.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `waiting_since` while a request or its response is under way.
const BUSY: u64 = u64::MAX;

struct Connection {
    epoch: Instant,
    /// Microseconds after `epoch` from which the connection has waited for
    /// a request's headers, or `BUSY`.
    waiting_since: AtomicU64,
    close: CancellationToken,
}

impl Connection {
    fn busy(&self) {
        self.waiting_since.store(BUSY, Ordering::Relaxed);
    }

    fn waiting(&self) {
        let now = self.epoch.elapsed().as_micros() as u64;
        self.waiting_since.store(now, Ordering::Relaxed);
    }
}

/// A response body under way: its connection waits for the next request
/// once it is sent whole or dropped.
struct Responding {
    body: axum::body::Body,
    state: Arc<Connection>,
}

impl Drop for Responding {
    fn drop(&mut self) {
        self.state.waiting();
    }
}

impl http_body::Body for Responding {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A request body that must arrive whole by a deadline set when its
/// headers did (a client trickling a byte at a time would otherwise hold
/// its connection and handler for as long as it likes).
struct DeadlineBody<B> {
    body: B,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl<B> DeadlineBody<B> {
    fn new(body: B, limit: Duration) -> Self {
        Self {
            body,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.body).poll_frame(cx) {
            std::task::Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(Some(Err(format!(
                        "the request body did not arrive within {} ms",
                        this.limit.as_millis()
                    )
                    .into())));
                }
                std::task::Poll::Pending
            }
            ready => ready.map(|frame| frame.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
