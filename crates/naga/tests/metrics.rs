//! `GET /metrics`: what a Prometheus scraper reads of naga's work, on
//! every service.

mod common;
use common::*;
use reqwest::StatusCode;
use std::collections::HashMap;

/// The samples of a Prometheus text page: `name{labels}` → value (labels
/// as printed, sorted by the exporter).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(app: &TestApp, base: &str) -> HashMap<String, f64> {
    let resp = app
        .client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    samples(&resp.text().await.unwrap())
}

#[track_caller]
fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample `{key}` in /metrics: {samples:#?}"))
}

#[tokio::test]
async fn a_scraper_sees_requests_tasks_calls_deliveries_and_the_dead_letter() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    // A receiver that refuses for good (400): its callback is dead at once.
    let refusing = Receiver::start_on(0, &[(400, None)]).await;
    let url = receiver.url();
    for (id, callback) in [("m1", &url), ("m2", &url), ("m3", &refusing.url())] {
        let (status, body) = app
            .post_schedule(&echo_batch("s-metrics", id, &["a", "b"], 0, Some(callback)))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The first again: answered from the store, nothing runs.
    let (status, _) = app
        .post_schedule(&echo_batch("s-metrics", "m1", &["a", "b"], 0, Some(&url)))
        .await;
    assert_eq!(status, StatusCode::OK);
    // No calls at all: answered, nothing stored.
    let (status, _) = app
        .post_schedule(&serde_json::json!({"session_id": "s-metrics", "agent_calls": []}))
        .await;
    assert_eq!(status, StatusCode::OK);
    receiver.wait_for("m1").await;
    receiver.wait_for("m2").await;
    app.wait_for_callback_status("m3", "dead").await;

    let m = scrape(&app, &app.agent).await;
    let requests = |outcome: &str| {
        value(
            &m,
            &format!("naga_schedule_requests_total{{service=\"agent\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(requests("created"), 3.0);
    assert_eq!(requests("repeated"), 1.0);
    assert_eq!(requests("no_tasks"), 1.0);
    assert_eq!(
        value(
            &m,
            "naga_tasks_completed_total{kind=\"agent\",status=\"succeeded\"}"
        ),
        3.0
    );
    assert_eq!(
        value(&m, "naga_task_duration_seconds_count{kind=\"agent\"}"),
        3.0
    );
    assert_eq!(
        value(&m, "naga_call_duration_seconds_count{agent=\"echo\"}"),
        6.0
    );
    assert!(
        value(
            &m,
            "naga_call_duration_seconds_bucket{agent=\"echo\",le=\"+Inf\"}"
        ) >= 6.0
    );
    assert_eq!(
        value(&m, "naga_callback_deliveries_total{outcome=\"delivered\"}"),
        2.0
    );
    assert_eq!(
        value(&m, "naga_callback_deliveries_total{outcome=\"dead\"}"),
        1.0
    );
    assert_eq!(value(&m, "naga_callbacks_dead"), 1.0);
    assert_eq!(value(&m, "naga_queue_depth"), 0.0);
    assert_eq!(value(&m, "naga_tasks_running"), 0.0);
    assert!(value(&m, "naga_store_commit_seconds_count") >= 3.0);

    // Replayed to a receiver that takes it, the dead letter is gone.
    let (_, list) = app.get("/callbacks?status=dead").await;
    let id = list["callbacks"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(&format!("/callbacks/{id}/retry"), &serde_json::json!({}))
        .await;
    assert!(status.is_success(), "{body}");
    wait_until(
        std::time::Duration::from_secs(10),
        "the replay's delivery",
        || async {
            let m = scrape(&app, &app.agent).await;
            (value(&m, "naga_callbacks_dead") == 0.0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_queued_batch_shows_in_the_queue_depth_until_it_runs() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.scheduler.workers = 1;
    let app = TestApp::spawn_with(dir, config).await;
    // One slow batch holds the only worker; a batch of another session waits.
    for (session, id, delay) in [("q1", "slow", 1500), ("q2", "waiting", 0)] {
        let (status, body) = app
            .post_schedule(&echo_batch(session, id, &["x"], delay, None))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let m = scrape(&app, &app.agent).await;
    assert_eq!(value(&m, "naga_tasks_running"), 1.0);
    assert_eq!(value(&m, "naga_queue_depth"), 1.0);
    app.wait_for_status("waiting", "succeeded").await;
    let m = scrape(&app, &app.agent).await;
    assert_eq!(value(&m, "naga_queue_depth"), 0.0);
}
