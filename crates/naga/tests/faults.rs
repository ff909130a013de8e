//! Poison input, storage faults and restarts: nothing a request or an
//! unlucky disk does leaves accepted work stuck, lost, or naga unable to
//! start.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::Arc,
    time::Duration,
};

/// `naga serve` (the real binary) on a free port with its data in `data`.
fn serve(data: &Path, extra: &[&str]) -> (Child, Http) {
    let (child, url) = spawn_naga(|cmd| {
        cmd.arg("--data-dir").arg(data).args(extra);
    });
    let client = reqwest::Client::new();
    (child, Http { client, url })
}

/// The agent server of a `naga` process, over HTTP.
struct Http {
    client: reqwest::Client,
    url: String,
}

impl Http {
    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        post_json(&self.client, &format!("{}{path}", self.url), body).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        read(
            self.client
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Sends a batch that must be accepted.
    async fn schedule(&self, batch: &Value) {
        let (status, answer) = self.post("/schedule", batch).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
}

fn kill_9(mut naga: Child) {
    naga.kill().unwrap();
    naga.wait().unwrap();
}

/// A batch of one echo call that takes `delay_ms`.
fn one_call(session: &str, id: &str, delay_ms: u64, callback: &str) -> Value {
    json!({"agent_calls": [{"tool_name": "echo", "instruction": id, "parameters": {"delay_ms": delay_ms}}],
           "session_id": session, "request_id": id, "callback_url": callback})
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn json_nested_too_deep_for_the_store_is_refused_at_the_door_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let body = format!(
        r#"{{"agent_calls": [{{"tool_name": "echo", "instruction": "deep", "parameters": {{"p": {}}}}}],
             "session_id": "deep", "request_id": "deep-1"}}"#,
        nested(1000)
    );
    let (status, answer) = app
        .post_raw("/schedule", body.into_bytes(), Some("application/json"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["code"], "json_too_deep");
    assert_eq!(app.get("/tasks/deep-1").await.0, StatusCode::NOT_FOUND);
    // Whatever the content type that axum takes for JSON.
    let body = format!(r#"{{"purpose": "x", "content": {}}}"#, nested(100));
    let (status, answer) = app
        .post_raw(
            "/tasks/none/steps",
            body.into_bytes(),
            Some("application/vnd.api+json"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    // Nesting a client really sends is accepted, stored and read back.
    let ok: Value = serde_json::from_str(&format!(
        r#"{{"agent_calls": [{{"tool_name": "echo", "instruction": "ok", "parameters": {{"p": {}}}}}],
             "session_id": "deep", "request_id": "deep-2"}}"#,
        nested(20)
    ))
    .unwrap();
    assert_eq!(app.post_schedule(&ok).await.0, StatusCode::OK);
    let task = app.wait_for_task_end("deep-2").await;
    assert_eq!(task["status"], "succeeded", "{task}");
}

/// Writes `calls` as the stored calls of task `id`, bypassing naga (what
/// an older naga stored, or a damaged file).
fn plant_calls(db: &Path, id: &str, calls: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let n = conn
        .execute("UPDATE tasks SET calls = ?2 WHERE id = ?1", (id, calls))
        .unwrap();
    assert_eq!(n, 1, "task {id} is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_tasks_among_good_ones_neither_stop_a_restart_after_kill_9_nor_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("naga.toml");
    // Short leases: the restart below comes after they expired, so the
    // tasks are recovered as any node would recover them.
    std::fs::write(&config, "[scheduler]\nlease_ms = 300\n").unwrap();
    let config = config.display().to_string();
    let receiver = Receiver::start().await;
    let callback = receiver.url();
    let (naga, http) = serve(&data, &["--config", &config]);
    // One long batch holds the session; the rest wait behind it.
    let ids = [
        "blocker", "good-1", "corrupt", "good-2", "deep", "good-3", "blob",
    ];
    for (i, id) in ids.iter().enumerate() {
        let delay = if i == 0 { 60_000 } else { 0 };
        http.schedule(&one_call("poison", id, delay, &callback))
            .await;
    }
    kill_9(naga);

    let db = data.join("naga.db");
    plant_calls(
        &db,
        "blocker",
        r#"[{"tool_name":"echo","instruction":"blocker"}]"#,
    );
    plant_calls(&db, "corrupt", r#"[{"tool_name": "echo", "instr"#);
    // Not even text: SQLite keeps whatever a damaged file or another
    // program put there.
    let n = rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE tasks SET calls = X'00FF17' WHERE id = 'blob'", ())
        .unwrap();
    assert_eq!(n, 1);
    plant_calls(
        &db,
        "deep",
        &format!(
            r#"[{{"tool_name":"echo","instruction":"deep","parameters":{}}}]"#,
            nested(1000)
        ),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;

    let (naga, http) = serve(&data, &["--config", &config]);
    for id in ["blocker", "good-1", "good-2", "good-3"] {
        let cb = receiver.wait_for(id).await.body;
        assert_eq!(cb["status"], "succeeded", "{cb}");
    }
    for id in ["corrupt", "blob"] {
        let cb = receiver.wait_for(id).await.body;
        assert_eq!(cb["status"], "failed", "{cb}");
        assert!(
            cb["error"].as_str().unwrap().contains("quarantined"),
            "{cb}"
        );
    }
    // Deep, but JSON: it is read back and ends like any batch.
    receiver.wait_for("deep").await;
    for id in ["corrupt", "deep", "blob"] {
        let (status, task) = http.get(&format!("/tasks/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{task}");
        assert_eq!(task["status"], "failed", "{task}");
    }
    let (_, blob) = http.get("/tasks/blob").await;
    assert!(blob["calls_error"].as_str().is_some(), "the reason: {blob}");
    let (status, list) = http.get("/tasks?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["count"], ids.len());
    kill_9(naga);

    // And once more: a store that holds them starts.
    let (naga, http) = serve(&data, &["--config", &config]);
    for id in ["corrupt", "blob"] {
        assert_eq!(http.get(&format!("/tasks/{id}")).await.0, StatusCode::OK);
    }
    kill_9(naga);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_after_kill_9_and_a_restart_cancel_fifo_and_reject_hold() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start().await;
    let callback = receiver.url();
    // The default lease (30 s): a node that waited for its own leases to
    // expire would not run the recovered batches within this test.
    let (naga, http) = serve(&data, &[]);
    for (id, delay) in [("w-first", 1_500), ("w-queued", 0)] {
        http.schedule(&one_call("w", id, delay, &callback)).await;
    }
    kill_9(naga);

    let (naga, http) = serve(&data, &[]);
    let (status, answer) = http.post("/tasks/w-queued/cancel", &json!({})).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the recovered queued batch is held here: {answer}"
    );
    assert_eq!(answer["status"], "cancelled");
    let mut reject = one_call("w", "w-reject", 0, &callback);
    reject["multitask_strategy"] = json!("reject");
    let (status, answer) = http.post("/schedule", &reject).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the session is busy: {answer}"
    );
    http.schedule(&one_call("w", "w-later", 0, &callback)).await;
    let first = receiver.wait_for("w-first").await;
    receiver.wait_for("w-later").await;
    assert_eq!(first.body["status"], "succeeded", "{}", first.body);
    // (Callbacks travel separately: their arrival order is not the order
    // of the ends. The store's times are.)
    let (_, first) = http.get("/tasks/w-first").await;
    let (_, later) = http.get("/tasks/w-later").await;
    assert!(
        later["started_at"].as_str().unwrap() >= first["finished_at"].as_str().unwrap(),
        "the older batch of the session ends before the next starts (FIFO): {first} {later}"
    );
    let cancelled = receiver.wait_for("w-queued").await.body;
    assert_eq!(cancelled["status"], "cancelled");
    let (status, _) = http.get("/tasks/w-reject").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused batch stores nothing"
    );
    kill_9(naga);
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` where this process may not mount (not root): the test says so.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { path, _dir: dir })
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&[7]).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_disk_was_full_every_accepted_batch_finishes_and_is_called_back_without_a_restart(
) {
    let Some(disk) = SmallDisk::mount("32m") else {
        eprintln!("SKIPPED: this process cannot mount a tmpfs (it needs root)");
        return;
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    // A full disk under SQLite's file (PostgreSQL's disk is its server's).
    config.database_url = None;
    config.data_dir = disk.path.join("data");
    let app = TestApp::spawn_with(dir, config).await;
    let receiver = Receiver::start().await;
    let ids: Vec<String> = (0..9).map(|i| format!("full-{i}")).collect();
    for id in &ids {
        let mut b = echo_batch(id, id, &["one", "two"], 300, Some(&receiver.url()));
        b["analysis_session_id"] = Value::Null;
        assert_eq!(app.post_schedule(&b).await.0, StatusCode::OK);
    }
    // A reader holding a snapshot keeps SQLite from starting the WAL over
    // (which would reuse space the file already has): from here on every
    // commit needs new space, whenever the checkpointer last ran.
    let reader = rusqlite::Connection::open(app.data_dir().join("naga.db")).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    let filler = disk.fill();
    // The calls end while nothing can be written.
    let mut degraded = false;
    for _ in 0..200 {
        let (_, health) = app.get("/health").await;
        if health["status"] == "degraded" {
            degraded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(degraded, "/health says the store cannot write");
    let (status, ready) = app.get("/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let resp = app
        .client
        .post(format!("{}/schedule", app.agent))
        .json(&echo_batch("late", "late-1", &["x"], 0, None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let (_, answer) = read(resp).await;
    assert_eq!(answer["code"], "store_unavailable", "{answer}");

    // Space comes back: everything accepted finishes, no restart.
    std::fs::remove_file(filler).unwrap();
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    for id in &ids {
        let cb = receiver.wait_for(id).await.body;
        assert_eq!(cb["status"], "succeeded", "{cb}");
        let task = app.wait_for_task_end(id).await;
        assert_eq!(task["steps"].as_array().unwrap().len(), 2, "{task}");
    }
    let (status, _) = app.get("/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get("/health").await.1["status"], "healthy");
    let mut app = app;
    app.stop().await;
}

#[tokio::test]
async fn closed_event_subscriptions_leave_nothing_behind() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.api_addr = "127.0.0.1:0".into();
    config.only = vec![];
    config.mcp_addr = "127.0.0.1:0".into();
    let app = TestApp::spawn_with(dir, config).await;
    let mut open = Vec::new();
    for i in 0..30 {
        let resp = app
            .client
            .get(format!("{}/sessions/sub-{i}/events", app.api))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        open.push(resp);
    }
    assert_eq!(app.api_get("/health").await.1["event_sessions"], 30);
    drop(open);
    let mut left = Value::Null;
    for _ in 0..500 {
        left = app.api_get("/health").await.1["event_sessions"].clone();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(left, 0, "every closed subscription freed its channel");
}

#[tokio::test]
async fn a_damaged_page_in_the_middle_of_the_store_is_reported_at_start() {
    // A damaged page of SQLite's file.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.database_url = None;
    let app = TestApp::spawn_with(dir, config).await;
    for i in 0..200 {
        let id = format!("page-{i}");
        let b = echo_batch(&format!("pages-{}", i % 7), &id, &["a", "b"], 0, None);
        assert_eq!(app.post_schedule(&b).await.0, StatusCode::OK);
    }
    for i in 0..200 {
        app.wait_for_task_end(&format!("page-{i}")).await;
    }
    let (_, health) = app.get("/health").await;
    assert_eq!(health["store"]["damage"], Value::Null, "{health}");
    let mut app = app;
    app.stop().await;

    let db = app.data_dir().join("naga.db");
    // Every page in the file itself: a newer copy of the damaged page in
    // the WAL would hide the damage (as it did once under CI's load).
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let len = std::fs::metadata(&db).unwrap().len();
    let middle = (len / 4096 / 2) * 4096;
    assert!(middle > 4096, "the store has pages to damage ({len} bytes)");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.seek(SeekFrom::Start(middle)).unwrap();
        f.write_all(&[0xAB; 4096]).unwrap();
    }
    let app = TestApp::spawn_with(app.dir.clone(), app.config.clone()).await;
    let mut health = Value::Null;
    // (The check runs beside start-up; a loaded machine can take seconds.)
    for _ in 0..3000 {
        health = app.get("/health").await.1;
        if !health["store"]["damage"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(health["status"], "degraded", "{health}");
    let damage = health["store"]["damage"].as_str().unwrap();
    assert!(
        damage.contains("Page") || damage.contains("malformed"),
        "{health}"
    );
    // It still serves what it can read, but is not ready for more work.
    assert_eq!(app.get("/health").await.0, StatusCode::OK);
    let (status, ready) = app.get("/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["code"], "store_damaged", "{ready}");
    // A request that meets the damage is told so (503), never a 500.
    for i in 0..20 {
        let id = format!("after-{i}");
        let b = echo_batch(&format!("pages-{}", i % 7), &id, &["a"], 0, None);
        let (status, answer) = app.post_schedule(&b).await;
        assert!(
            status == StatusCode::OK
                || (status == StatusCode::SERVICE_UNAVAILABLE && answer["code"] == "store_damaged"),
            "{status}: {answer}"
        );
        let (status, task) = app.get(&format!("/tasks/page-{}", i * 10)).await;
        assert!(
            status == StatusCode::OK
                || (status == StatusCode::SERVICE_UNAVAILABLE && task["code"] == "store_damaged"),
            "{status}: {task}"
        );
    }
}

/// A batch that waited for the store is stored with the time of its commit
/// (and answered with it), not the time it arrived: times then follow the
/// order in which the store took the batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_waited_for_the_store_is_stored_with_its_commit_time() {
    let clock = Arc::new(naga_server::ManualClock::at(1_800_000_000_000));
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.database_url = None; // (another connection holds SQLite's write lock)
    let app = TestApp::spawn_with_clock(dir, config, clock.clone()).await;
    let db = app.data_dir().join("naga.db");
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let post = {
        let (client, url) = (app.client.clone(), format!("{}/schedule", app.agent));
        let batch = echo_batch("waited", "waited-1", &["x"], 0, None);
        tokio::spawn(async move { read(client.post(url).json(&batch).send().await.unwrap()).await })
    };
    // The request arrives at 1_800_000_000_000 and waits for the lock; the
    // store can write again five seconds later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock.advance(Duration::from_secs(5));
    lock.execute_batch("ROLLBACK;").unwrap();
    let (status, answer) = post.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    let committed = "2027-01-15T08:00:05.000+00:00";
    assert_eq!(answer["accepted_at"], committed, "{answer}");
    let task = app.wait_for_task_end("waited-1").await;
    assert_eq!(task["accepted_at"], committed, "{task}");
    // A repeat is answered from the row: the same time.
    let again = app
        .post_schedule(&echo_batch("waited", "waited-1", &["x"], 0, None))
        .await
        .1;
    assert_eq!(again["accepted_at"], committed, "{again}");
}
