//! Test helpers: the real app on port 0 with a fresh database in a temporary
//! folder, and a real HTTP callback receiver.
#![allow(dead_code)]

pub mod llm;
pub mod peers;
pub mod shapes;

use axum::{extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
use naga_core::config::{Config, Service};
use serde_json::{json, Value};
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::Notify;

pub struct TestApp {
    pub running: Option<naga_server::Running>,
    /// The API server's base URL, when it runs.
    pub api: String,
    pub agent: String,
    /// The MCP server's base URL, when it runs.
    pub mcp: String,
    pub client: reqwest::Client,
    pub dir: Arc<tempfile::TempDir>,
    pub config: Config,
}

pub fn test_config(dir: &tempfile::TempDir) -> Config {
    let mut config = Config {
        data_dir: dir.path().join("data"),
        agent_addr: "127.0.0.1:0".into(),
        only: vec![Service::Agent],
        ..Default::default()
    };
    config.database_url = test_database_url();
    config.agents.legacy_agent = "echo".into();
    config.callbacks.retry_schedule_ms = Vec::new();
    config.callbacks.backoff_base_ms = 20;
    config.callbacks.backoff_max_ms = 200;
    config
}

/// The backend the tests run on: SQLite in the test's folder, or with
/// `NAGA_TEST_BACKEND=postgres` a new database of its own on the server at
/// `NAGA_TEST_POSTGRES_URL` (`.ci/postgres` starts one).
pub fn test_database_url() -> Option<String> {
    match std::env::var("NAGA_TEST_BACKEND").as_deref() {
        Ok("postgres") => Some(format!(
            "{}/naga_test_{}",
            postgres_server(),
            uuid::Uuid::new_v4().simple()
        )),
        _ => None,
    }
}

/// The test PostgreSQL server's URL (without a database), or `None` (and a
/// note) on a machine without one; CI always has one.
pub fn postgres_server_if_any() -> Option<String> {
    match std::env::var("NAGA_TEST_POSTGRES_URL") {
        Ok(_) => Some(postgres_server()),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI runs the PostgreSQL tests: NAGA_TEST_POSTGRES_URL is not set")
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: no PostgreSQL (NAGA_TEST_POSTGRES_URL; `eval \"$(.ci/postgres)\"`)"
            );
            None
        }
    }
}

/// The test PostgreSQL server's URL, without a database.
pub fn postgres_server() -> String {
    let url = std::env::var("NAGA_TEST_POSTGRES_URL")
        .expect("NAGA_TEST_POSTGRES_URL: run `eval \"$(.ci/postgres)\"` first");
    let (server, _database) = url.rsplit_once('/').expect("a postgres:// URL");
    server.to_owned()
}

impl TestApp {
    pub async fn spawn() -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let config = test_config(&dir);
        Self::spawn_with(dir, config).await
    }

    pub async fn spawn_with(dir: Arc<tempfile::TempDir>, config: Config) -> Self {
        Self::spawn_with_clock(dir, config, Arc::new(naga_server::SystemClock)).await
    }

    /// Starts on `clock` (a `ManualClock` drives leases and backoff).
    pub async fn spawn_with_clock(
        dir: Arc<tempfile::TempDir>,
        config: Config,
        clock: Arc<dyn naga_server::Clock>,
    ) -> Self {
        let running = naga_server::start(config.clone(), clock)
            .await
            .expect("naga starts");
        let agent = format!("http://{}", running.agent_addr.unwrap());
        let url =
            |a: Option<std::net::SocketAddr>| a.map(|a| format!("http://{a}")).unwrap_or_default();
        let (mcp, api) = (url(running.mcp_addr), url(running.api_addr));
        Self {
            running: Some(running),
            api,
            agent,
            mcp,
            client: reqwest::Client::new(),
            dir,
            config,
        }
    }

    /// Stops this instance and starts a new one on the same database.
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        let (dir, config) = (self.dir.clone(), self.config.clone());
        Self::spawn_with(dir, config).await
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_millis(300)).await;
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// One JSON request to a service (`base`: agent, api or mcp URL).
    async fn call(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{base}{path}"));
        if let Some(body) = body {
            req = req.json(body);
        }
        read(req.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(&self.agent, reqwest::Method::POST, path, Some(body))
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.post(format!("{}{path}", self.agent)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        read(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(&self.agent, reqwest::Method::GET, path, None)
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(&self.agent, reqwest::Method::DELETE, path, None)
            .await
    }

    pub async fn api_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(&self.api, reqwest::Method::POST, path, Some(body))
            .await
    }

    pub async fn api_get(&self, path: &str) -> (StatusCode, Value) {
        self.call(&self.api, reqwest::Method::GET, path, None).await
    }

    pub async fn mcp_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(&self.mcp, reqwest::Method::POST, path, Some(body))
            .await
    }

    pub async fn mcp_get(&self, path: &str) -> (StatusCode, Value) {
        self.call(&self.mcp, reqwest::Method::GET, path, None).await
    }

    pub async fn post_schedule(&self, body: &Value) -> (StatusCode, Value) {
        self.post("/schedule", body).await
    }

    /// Polls `GET /tasks/{id}` until the task has ended.
    pub async fn wait_for_task_end(&self, task_id: &str) -> Value {
        for _ in 0..1000 {
            let (status, task) = self.get(&format!("/tasks/{task_id}")).await;
            assert_eq!(status, StatusCode::OK, "{task}");
            if !matches!(task["status"].as_str(), Some("queued" | "running")) {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {task_id} did not end");
    }

    /// Polls `GET /callbacks?status=` until the task's callback is listed there.
    pub async fn wait_for_callback_status(&self, task_id: &str, status: &str) -> Value {
        for _ in 0..1000 {
            let (_, list) = self
                .get(&format!("/callbacks?status={status}&limit=1000"))
                .await;
            let found = list["callbacks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["task_id"] == task_id)
                .cloned();
            if let Some(c) = found {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the callback of {task_id} never became {status}");
    }

    /// Polls until the task reaches `status`.
    pub async fn wait_for_status(&self, task_id: &str, want: &str) -> Value {
        for _ in 0..1000 {
            let (_, task) = self.get(&format!("/tasks/{task_id}")).await;
            if task["status"] == want {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {task_id} never became {want}");
    }
}

/// Asks `check` every 10 ms until it answers `Some`, for at most `within`;
/// then fails, saying what did not happen.
pub async fn wait_until<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let text = resp.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, body)
}

/// POSTs `body` as JSON to `url` and reads the JSON answer.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (StatusCode, Value) {
    read(client.post(url).json(body).send().await.unwrap()).await
}

/// The seed's example batch, with its callback sent to `callback_url`.
pub fn seed_request(callback_url: &str) -> Value {
    json!({
        "query": "批量Agent任务执行 (2 个)",
        "agent_calls": [
            {"tool_name": "computer_control", "service_name": "agent_server",
             "instruction": "打开记事本", "agentType": "agent"},
            {"tool_name": "computer_control", "service_name": "agent_server",
             "instruction": "输入文本", "agentType": "agent"}
        ],
        "session_id": "user_session_123",
        "analysis_session_id": "analysis_user_session_123_1703123456",
        "request_id": "req_456789",
        "callback_url": callback_url
    })
}

/// A batch of echo calls, one per instruction.
pub fn echo_batch(
    session: &str,
    request_id: &str,
    instructions: &[&str],
    delay_ms: u64,
    callback: Option<&str>,
) -> Value {
    let calls: Vec<Value> = instructions
        .iter()
        .map(|i| {
            json!({"tool_name": "echo", "service_name": "agent_server", "instruction": i,
                        "agentType": "agent", "parameters": {"delay_ms": delay_ms}})
        })
        .collect();
    json!({"query": format!("批量Agent任务执行 ({} 个)", calls.len()), "agent_calls": calls,
           "session_id": session, "analysis_session_id": format!("analysis_{session}_1703123456"),
           "request_id": request_id, "callback_url": callback})
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Value,
    /// The raw body, as signed.
    pub raw: String,
    /// The status this receiver answered.
    pub answered: u16,
    pub at: std::time::Instant,
}

/// How the receiver answers the next requests: `(status, Retry-After)`;
/// once the script is used up it answers 200.
pub type Script = Arc<Mutex<std::collections::VecDeque<(u16, Option<u64>)>>>;

type Log = Arc<Mutex<Vec<Received>>>;

/// A real HTTP server that records every callback POSTed to it.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    got: Log,
    notify: Arc<Notify>,
    pub script: Script,
}

/// A loopback port that nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(0, &[]).await
    }

    /// Starts on `port` (0: any), answering `script` first.
    pub async fn start_on(port: u16, script: &[(u16, Option<u64>)]) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(Notify::new());
        let script: Script = Arc::new(Mutex::new(script.iter().copied().collect()));
        let state = (got.clone(), notify.clone(), script.clone());
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            got,
            notify,
            script,
        }
    }

    /// Callbacks this receiver accepted (answered 2xx).
    pub fn accepted(&self) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.answered < 300)
            .collect()
    }

    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/agent_result_callback",
            self.addr.port()
        )
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for the callback of `task_id`.
    pub async fn wait_for(&self, task_id: &str) -> Received {
        self.wait_for_body(|b| b["task_id"] == task_id).await
    }

    /// Waits for an accepted POST whose body matches.
    pub async fn wait_for_body(&self, matches: impl Fn(&Value) -> bool) -> Received {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let notified = self.notify.notified();
            if let Some(r) = self.accepted().into_iter().find(|r| matches(&r.body)) {
                return r;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no such POST; got {:?}", self.all());
            }
        }
    }
}

async fn record(
    State((got, notify, script)): State<(Log, Arc<Notify>, Script)>,
    headers: HeaderMap,
    raw: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (status, retry_after) = script.lock().unwrap().pop_front().unwrap_or((200, None));
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let at = std::time::Instant::now();
    got.lock().unwrap().push(Received {
        headers,
        body,
        raw,
        answered: status,
        at,
    });
    notify.notify_waiters();
    let status = StatusCode::from_u16(status).unwrap();
    match retry_after {
        Some(secs) => (status, [("retry-after", secs.to_string())]).into_response(),
        None => status.into_response(),
    }
}

/// Where `.ci/run` installs server-everything (override with NAGA_TEST_MCP_EVERYTHING).
pub fn everything() -> PathBuf {
    let path = std::env::var_os("NAGA_TEST_MCP_EVERYTHING").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/test-peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
    });
    assert!(
        path.exists(),
        "server-everything is not installed at {}: run `npm install --prefix target/test-peers @modelcontextprotocol/server-everything` (as .ci/run does)",
        path.display()
    );
    path
}

/// Starts the real `naga` binary: `naga serve --only agent --agent-addr
/// 127.0.0.1:0` plus what `configure` adds (arguments, environment); waits
/// until it listens and returns it (the caller kills and reaps it) and its
/// agent URL.
#[allow(clippy::zombie_processes)]
pub fn spawn_naga(
    configure: impl FnOnce(&mut std::process::Command),
) -> (std::process::Child, String) {
    let (child, url, _stderr) = spawn_naga_logged(configure);
    (child, url)
}

/// `spawn_naga`, also collecting the rest of its stderr: the handle
/// yields it once the process has exited.
// The child goes back to the caller, who waits for it.
#[allow(clippy::zombie_processes)]
pub fn spawn_naga_logged(
    configure: impl FnOnce(&mut std::process::Command),
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader};
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_naga"));
    cmd.args(["serve", "--only", "agent", "--agent-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        // No desktop unless a test gives one: never act on a developer's screen.
        .env_remove("DISPLAY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    configure(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    // Read on a thread of its own (a blocking read has no deadline): it
    // hands over the agent server's address, then keeps draining stderr so
    // that the child never blocks on a full pipe.
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let rest = std::thread::spawn(move || {
        let mut before = String::new();
        let mut rest = String::new();
        let mut url_tx = Some(url_tx);
        for l in stderr.lines().map_while(Result::ok) {
            match url_tx.as_ref() {
                Some(tx) => match l.trim().strip_prefix("naga: agent server on ") {
                    Some(url) => {
                        let _ = tx.send(Ok(url.to_owned()));
                        url_tx = None;
                    }
                    None => {
                        before.push_str(&l);
                        before.push('\n');
                    }
                },
                None => {
                    rest.push_str(&l);
                    rest.push('\n');
                }
            }
        }
        if let Some(tx) = url_tx {
            let _ = tx.send(Err(before));
        }
        rest
    });
    match url_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(url)) => (child, url, rest),
        Ok(Err(stderr)) => panic!("naga exited before listening:\n{stderr}"),
        Err(_) => {
            let _ = child.kill();
            panic!("naga did not say where it listens within 60 s")
        }
    }
}

/// Server-sent events of a response: (event, data) pairs, in order.
pub fn sse(resp: reqwest::Response) -> tokio::sync::mpsc::UnboundedReceiver<(String, String)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = futures::StreamExt::boxed(resp.bytes_stream());
        let mut buf = Vec::new();
        while let Some(Ok(chunk)) = futures::StreamExt::next(&mut body).await {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buf.drain(..end + 2).collect();
                let block = String::from_utf8(block).unwrap();
                let (mut event, mut data) = ("message".to_owned(), Vec::new());
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim().to_owned();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push(d.strip_prefix(' ').unwrap_or(d).to_owned());
                    }
                }
                if !data.is_empty() && tx.send((event, data.join("\n"))).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

pub async fn next_event(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    kind: &str,
) -> Value {
    loop {
        let (event, data) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no `{kind}` event"))
            .expect("stream open");
        if event == kind {
            return serde_json::from_str(&data).unwrap();
        }
    }
}
