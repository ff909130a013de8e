//! Crash consistency of the store's writer (and of its WAL-gathering VFS,
//! `naga-store/src/sqlite/wal_vfs/`): the real `naga` process is killed -9 at
//! random moments while clients keep sending batches, many times over one
//! data directory. After every kill the database file must pass
//! `PRAGMA integrity_check`, and every batch whose `/schedule` was answered
//! must be in it with all its calls; at the end a last run finishes them
//! all.
//!
//! `NAGA_TORTURE_ROUNDS` (default 30) sets the number of kills;
//! `NAGA_TORTURE_SEED` replays a run (the seed is printed).

mod common;
use common::*;
use reqwest::StatusCode;
use std::{
    collections::HashMap,
    path::Path,
    process::Child,
    sync::{Arc, Mutex},
    time::Duration,
};

/// A small deterministic generator (xorshift64*), so a failing run replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn serve(data: &Path) -> (Child, String) {
    spawn_naga(|cmd| {
        cmd.arg("--data-dir").arg(data);
    })
}

/// Batches answered 200, by request id, with their number of calls.
type Answered = Arc<Mutex<HashMap<String, usize>>>;

/// Sends batches from `clients` connections until the server goes away;
/// records every batch it answered with 200.
async fn load(url: &str, round: u64, clients: usize, answered: &Answered) {
    let mut senders = Vec::new();
    for c in 0..clients {
        let (url, answered) = (url.to_owned(), answered.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0.. {
                let id = format!("r{round}-c{c}-{n}");
                let calls = 1 + n % 3;
                let instructions: Vec<String> = (0..calls).map(|i| format!("{id}/{i}")).collect();
                let refs: Vec<&str> = instructions.iter().map(String::as_str).collect();
                // Eight sessions: batches queue behind each other (FIFO)
                // as well as run side by side.
                let session = format!("torture-{}", (c + n) % 8);
                let batch = echo_batch(&session, &id, &refs, 0, None);
                let sent = client
                    .post(format!("{url}/schedule"))
                    .json(&batch)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        // Answered: from now on the batch must survive.
                        answered.lock().unwrap().insert(id, calls);
                    }
                    Ok(resp) => panic!("batch {id} refused: {}", resp.status()),
                    Err(_) => return,
                }
            }
        }));
    }
    for s in senders {
        let _ = s.await;
    }
}

/// The database file, opened as any SQLite client would (recovering the
/// WAL of the killed process), is intact and holds every answered batch.
fn check_store(db: &Path, answered: &HashMap<String, usize>, round: u64, seed: u64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: Result<Vec<String>, _> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    let check = check.unwrap_or_else(|e| vec![e.to_string()]);
    assert_eq!(
        check,
        ["ok"],
        "round {round} (seed {seed}): integrity_check after kill -9"
    );
    let mut stored: HashMap<String, String> = HashMap::new();
    let mut rows = conn.prepare("SELECT id, calls FROM tasks").unwrap();
    for row in rows
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
    {
        let (id, calls) = row.unwrap();
        stored.insert(id, calls);
    }
    for (id, calls) in answered {
        let text = stored.get(id).unwrap_or_else(|| {
            panic!("round {round} (seed {seed}): batch {id} was answered 200 and is not stored")
        });
        let parsed: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
        assert_eq!(parsed.len(), *calls, "round {round}: calls of {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_survives_kill_9_at_random_moments_under_load() {
    let rounds = env_number("NAGA_TORTURE_ROUNDS").unwrap_or(30);
    let seed = env_number("NAGA_TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("torture: {rounds} rounds, NAGA_TORTURE_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("naga.db");
    let answered: Answered = Arc::default();
    for round in 0..rounds {
        let (mut naga, url) = serve(dir.path());
        let before = answered.lock().unwrap().len();
        // The first moments (recovery of the last run's tasks, the first
        // commits) are as interesting as steady load.
        let run_for = Duration::from_millis(20 + rng.below(600));
        let sending = tokio::spawn({
            let answered = answered.clone();
            async move { load(&url, round, 6, &answered).await }
        });
        tokio::time::sleep(run_for).await;
        naga.kill().unwrap();
        naga.wait().unwrap();
        sending.await.unwrap();
        let answered = answered.lock().unwrap();
        eprintln!(
            "torture: round {round}: killed after {} ms, {} batches answered in it",
            run_for.as_millis(),
            answered.len() - before
        );
        check_store(&db, &answered, round, seed);
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() > rounds as usize * 10,
        "the load reached the server ({} batches)",
        answered.len()
    );

    // A last run takes every unfinished batch back and ends it.
    let (mut naga, _url) = serve(dir.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let open: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE status IN ('queued', 'running')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} batches still unfinished (seed {seed})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    naga.kill().unwrap();
    naga.wait().unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    for (id, calls) in &answered {
        let (status, steps): (String, i64) = conn
            .query_row(
                "SELECT t.status, (SELECT COUNT(*) FROM steps s
                                   WHERE s.task_seq = t.seq AND s.result IS NOT NULL)
                 FROM tasks t WHERE t.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(status, "succeeded", "batch {id} (seed {seed})");
        assert_eq!(steps, *calls as i64, "each call of {id} recorded once");
    }
}
