//! The backends the store's conformance tests run on: SQLite in a fresh
//! file, and PostgreSQL in a fresh database when `NAGA_TEST_POSTGRES_URL`
//! names a server (`.ci/postgres` starts one; CI always has it).
#![allow(dead_code)]

use naga_core::config::StoreConfig;
use naga_store::Store;

pub struct Backend {
    pub name: &'static str,
    pub url: String,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// Another handle on the same database: a second node.
    pub async fn another_node(&self) -> Store {
        Store::open(&self.url, &StoreConfig::default())
            .await
            .unwrap()
    }
}

/// A fresh database on every backend this machine has.
pub async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut all = vec![Backend {
        name: "sqlite",
        store: Store::open(&url, &StoreConfig::default()).await.unwrap(),
        url,
        _dir: Some(dir),
    }];
    match std::env::var("NAGA_TEST_POSTGRES_URL") {
        Ok(server) => {
            let (server, _) = server.rsplit_once('/').expect("a postgres:// URL");
            let url = format!("{server}/naga_store_{}", uuid::Uuid::new_v4().simple());
            all.push(Backend {
                name: "postgres",
                store: Store::open(&url, &StoreConfig::default()).await.unwrap(),
                url,
                _dir: None,
            });
        }
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI runs the store's tests on PostgreSQL too: NAGA_TEST_POSTGRES_URL is not set")
        }
        Err(_) => eprintln!("PostgreSQL not tested: NAGA_TEST_POSTGRES_URL is not set"),
    }
    all
}

/// A batch of one echo call of `session`, held by `owner` until `until`.
pub fn echo_task(id: &str, session: &str, owner: &str, until: i64) -> naga_store::NewTask {
    naga_store::NewTask {
        id: id.into(),
        kind: naga_core::wire::TaskKind::Agent,
        session_id: session.into(),
        analysis_session_id: Some(format!("analysis_{session}")),
        query: None,
        // Its end may owe a callback (as a batch sent with one).
        callback_url: Some("http://127.0.0.1:9/cb".into()),
        policy: naga_core::config::SessionPolicy::Enqueue,
        fingerprint: None,
        calls: "[{\"tool_name\":\"echo\"}]".into(),
        calls_count: 1,
        response: String::new(),
        accepted_at: 1,
        lease: naga_store::Lease {
            owner: owner.into(),
            until,
        },
        // Held by `owner` (as running) when its session is idle.
        started: true,
        clock: None,
    }
}

/// The end of call 0 of a task, succeeded, as `owner` records it.
pub fn call_finish(owner: &str, task_id: &str, task_seq: i64) -> naga_store::CallFinish {
    naga_store::CallFinish {
        task_seq,
        owner: owner.into(),
        idx: 0,
        result: "{\"success\":true}".into(),
        started_at: 0,
        step: naga_store::NewStep {
            task_id: task_id.into(),
            success: true,
            output: Some("ok".into()),
            ..Default::default()
        },
    }
}

/// A's end of task `id` (`seq`) at 2_000: succeeded, with no last call and
/// no callback, its callback lease until 1_000_000.
pub fn task_end(id: &str, seq: i64) -> naga_store::TaskFinish {
    naga_store::TaskFinish {
        task_id: id.into(),
        task_seq: seq,
        owner: "A".into(),
        last_call: None,
        status: naga_core::TaskStatus::Succeeded,
        error: None,
        finished_at: 2_000,
        callback: None,
        callback_id: format!("msg_{id}"),
        summary: None,
        lease_until: 1_000_000,
        take_next: false,
    }
}
