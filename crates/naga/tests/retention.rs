//! Retention as a user meets it (docs/configuration.md, "Retention"): a
//! node with short windows prunes an ended batch by itself, keeps a running
//! one however old, refuses a resend of the pruned batch's request id, and
//! shows what it did in `/health` and `/metrics`.

mod common;
use common::{echo_batch, test_config, wait_until, Receiver, TestApp};
use naga_core::config::Window;
use std::{sync::Arc, time::Duration};

#[tokio::test]
async fn a_node_prunes_ended_batches_keeps_running_ones_and_refuses_a_pruned_request_id() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    let second: Window = "1s".parse().unwrap();
    config.retention.tasks = second;
    config.retention.callbacks = second;
    config.retention.every = "100ms".parse().unwrap();
    let app = TestApp::spawn_with(dir, config).await;
    let receiver = Receiver::start().await;

    // A batch that runs for a minute, then one that ends at once.
    let slow = echo_batch("slow", "slow-1", &["wait"], 60_000, None);
    assert_eq!(app.post_schedule(&slow).await.0, 200);
    app.wait_for_status("slow-1", "running").await;
    let quick = echo_batch("quick", "quick-1", &["hello"], 0, Some(&receiver.url()));
    assert_eq!(app.post_schedule(&quick).await.0, 200);
    receiver.wait_for("quick-1").await;

    // A second after its end (and its callback's delivery) it is gone...
    wait_until(Duration::from_secs(30), "quick-1 pruned", || async {
        let (status, _) = app.get("/tasks/quick-1").await;
        (status == 404).then_some(())
    })
    .await;
    // ...while the older, running batch is still there.
    let (status, slow_task) = app.get("/tasks/slow-1").await;
    assert_eq!(
        (status.as_u16(), slow_task["status"].as_str()),
        (200, Some("running"))
    );

    // Sent again, the pruned batch is refused, not run again.
    let (status, answer) = app.post_schedule(&quick).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["code"], "request_id_expired", "{answer}");
    assert_eq!(answer["success"], false, "{answer}");
    let (status, _) = app.get("/tasks/quick-1").await;
    assert_eq!(status, 404, "nothing stored for the resend");

    // The node says what it keeps and what it removed.
    let health = wait_until(
        Duration::from_secs(10),
        "/health shows one task",
        || async {
            let (_, h) = app.get("/health").await;
            let tasks = h["store"]["size"]["tables"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["table"] == "tasks").cloned());
            (tasks.as_ref().and_then(|t| t["rows"].as_i64()) == Some(1)).then_some(h)
        },
    )
    .await;
    assert!(
        health["store"]["size"]["bytes"].as_i64().unwrap() > 0,
        "{health}"
    );
    let metrics = app
        .client
        .get(format!("{}/metrics", app.agent))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "naga_pruned_rows_total{kind=\"tasks\"}",
        "naga_store_rows{table=\"tasks\"}",
        "naga_store_bytes",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}");
    }
    let (status, _) = app
        .post("/tasks/slow-1/cancel", &serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
}
