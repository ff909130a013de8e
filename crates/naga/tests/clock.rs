//! Time driven by the test (`ManualClock`): callback backoff of minutes and
//! lease expiry of half a minute happen when the clock is moved, not after
//! waiting for them.

mod common;
use common::*;
use naga_server::{Clock, ManualClock};
use reqwest::StatusCode;
use std::{sync::Arc, time::Duration};

fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at(naga_server::SystemClock.now_ms()))
}

/// How many attempts the receiver has seen for `task_id`.
fn attempts(receiver: &Receiver, task_id: &str) -> usize {
    receiver
        .all()
        .iter()
        .filter(|r| r.body["task_id"] == task_id)
        .count()
}

async fn wait_for_attempts(receiver: &Receiver, task_id: &str, n: usize) {
    for _ in 0..500 {
        if attempts(receiver, task_id) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{task_id}: {} attempts, not {n}",
        attempts(receiver, task_id)
    );
}

/// Waits until the outbox has recorded `n` attempts of the task's callback:
/// its worker then waits on the clock (moving the clock before would move
/// the start of that wait, not its end).
async fn wait_for_recorded(app: &TestApp, task_id: &str, n: u64) {
    for _ in 0..500 {
        let (_, list) = app.get("/callbacks?limit=1000").await;
        let recorded = list["callbacks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["task_id"] == task_id && c["attempts"].as_u64() >= Some(n));
        if recorded {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{task_id}: {n} attempts never recorded");
}

/// A later batch whose callback reaches `canaries`: by the time it
/// arrives, a delivery worker woken by the last move of the clock has made
/// its attempt (it had less to do, and started first).
async fn canary(app: &TestApp, canaries: &Receiver, id: &str) {
    let batch = echo_batch("canary", id, &["c"], 0, Some(&canaries.url()));
    assert_eq!(app.post_schedule(&batch).await.0, StatusCode::OK);
    canaries.wait_for(id).await;
}

#[tokio::test]
async fn callback_retries_wait_for_the_clock_not_the_wall() {
    let clock = manual_clock();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    // A minute, then ten: eleven minutes of backoff.
    config.callbacks.retry_schedule_ms = vec![60_000, 600_000];
    let app = TestApp::spawn_with_clock(dir, config, clock.clone()).await;
    let receiver = Receiver::start_on(0, &[(503, None), (503, None)]).await;
    let batch = echo_batch("tick", "tick-1", &["a"], 0, Some(&receiver.url()));
    assert_eq!(app.post_schedule(&batch).await.0, StatusCode::OK);
    wait_for_attempts(&receiver, "tick-1", 1).await;
    wait_for_recorded(&app, "tick-1", 1).await;

    let canaries = Receiver::start().await;
    // Real time passes, the clock does not: no second attempt.
    canary(&app, &canaries, "canary-1").await;
    assert_eq!(attempts(&receiver, "tick-1"), 1);
    // Each wait is its schedule's ±10%: a minute is 54–66 s.
    clock.advance(Duration::from_secs(53));
    canary(&app, &canaries, "canary-2").await;
    assert_eq!(attempts(&receiver, "tick-1"), 1, "not a minute yet");
    clock.advance(Duration::from_secs(14));
    wait_for_attempts(&receiver, "tick-1", 2).await;
    wait_for_recorded(&app, "tick-1", 2).await;
    // Ten minutes: 540–660 s.
    clock.advance(Duration::from_secs(530));
    canary(&app, &canaries, "canary-3").await;
    assert_eq!(attempts(&receiver, "tick-1"), 2, "not ten minutes yet");
    clock.advance(Duration::from_secs(140));
    wait_for_attempts(&receiver, "tick-1", 3).await;
    let delivered = app.wait_for_callback_status("tick-1", "delivered").await;
    assert_eq!(delivered["attempts"], 3, "{delivered}");
}

#[tokio::test]
async fn a_dead_nodes_task_is_taken_over_when_its_lease_expires_on_the_clock() {
    let clock = manual_clock();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = test_config(&dir);
    let now = clock.now_ms();
    // A node that accepted a batch and died: its lease runs for 30 s more.
    {
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let store = naga_store::Store::open(&config.database_url(), &config.store)
            .await
            .unwrap();
        // (And a canary whose lease ends at 10 s, in a session of its own.)
        for (id, session, lease_ms) in
            [("orphan-1", "orphan", 30_000), ("early-1", "early", 10_000)]
        {
            let inserted = store
                .insert_task(naga_store::NewTask {
                    id: id.into(),
                    kind: naga_core::wire::TaskKind::Agent,
                    session_id: session.into(),
                    analysis_session_id: None,
                    query: None,
                    callback_url: None,
                    policy: naga_core::config::SessionPolicy::Enqueue,
                    fingerprint: None,
                    calls: r#"[{"tool_name":"echo","instruction":"still here"}]"#.into(),
                    calls_count: 1,
                    response: String::new(),
                    accepted_at: now,
                    lease: naga_store::Lease {
                        owner: "a-node-that-died".into(),
                        until: now + lease_ms,
                    },
                    started: true,
                    clock: None,
                })
                .await
                .unwrap();
            assert!(matches!(inserted, naga_store::Inserted::New { .. }));
        }
        store.close().await;
    }
    let app = TestApp::spawn_with_clock(dir, config, clock.clone()).await;
    let (_, task) = app.get("/tasks/orphan-1").await;
    assert_eq!(
        task["status"], "running",
        "the other node's lease runs: {task}"
    );
    // The sweep (every 15 s) finds the lease still valid at 20 s (the
    // canary's expired: that sweep took it, and it ran)…
    clock.advance(Duration::from_secs(20));
    let early = app.wait_for_task_end("early-1").await;
    assert_eq!(early["status"], "succeeded", "{early}");
    let (_, task) = app.get("/tasks/orphan-1").await;
    assert_eq!(
        (task["status"].clone(), task["steps_count"].clone()),
        (serde_json::json!("running"), serde_json::json!(0)),
        "{task}"
    );
    // …and expired at 35 s: the task is taken over and runs here.
    clock.advance(Duration::from_secs(15));
    let task = app.wait_for_task_end("orphan-1").await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["steps_count"], 1, "{task}");
}
