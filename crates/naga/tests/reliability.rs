//! Nothing lost: signed callbacks, retries, dead letters and replay,
//! timeouts, cancellation and the four per-session policies.

mod common;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use common::*;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::{collections::HashSet, sync::Arc};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn app_with(change: impl FnOnce(&mut naga_core::config::Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    change(&mut config);
    TestApp::spawn_with(dir, config).await
}

/// The Rust verification method of docs/reliability.md, verbatim.
fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    let Ok(key) = B64.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| {
            B64.decode(s).is_ok_and(|sig| {
                // constant-time comparison
                sig.len() == expected.len()
                    && sig
                        .iter()
                        .zip(expected.iter())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            })
        })
}

/// A delivery's `webhook-id`, `webhook-timestamp` and `webhook-signature`.
fn webhook_headers(cb: &Received) -> (String, String, String) {
    let h = |k: &str| cb.headers.get(k).unwrap().to_str().unwrap().to_owned();
    (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    )
}

#[tokio::test]
async fn callbacks_are_signed_and_verify_with_the_documented_methods() {
    let app = app_with(|c| c.callbacks.secret = Some(SECRET.into())).await;
    let receiver = Receiver::start().await;
    app.post_schedule(&echo_batch(
        "sig",
        "sig-1",
        &["hi"],
        0,
        Some(&receiver.url()),
    ))
    .await;
    let cb = receiver.wait_for("sig-1").await;
    let (id, ts, sig) = webhook_headers(&cb);
    assert!(sig.starts_with("v1,"));
    assert!(verify(SECRET, &id, &ts, cb.raw.as_bytes(), &sig));
    assert!(
        !verify(
            SECRET,
            &id,
            &ts,
            cb.raw.replace("hi", "ho").as_bytes(),
            &sig
        ),
        "a changed body fails"
    );

    // The Python snippet of docs/reliability.md (examples/verify_webhook.py).
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/verify_webhook.py"
    );
    let run = |body: String| {
        let mut child = std::process::Command::new("python3")
            .args([script, &id, &ts, &sig])
            .env("WEBHOOK_SECRET", SECRET)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        child.wait().unwrap().success()
    };
    assert!(run(cb.raw.clone()), "python verifies the real callback");
    assert!(
        !run(cb.raw.replace("hi", "ho")),
        "python refuses a changed body"
    );
}

#[tokio::test]
async fn a_receiver_that_answers_503_then_recovers_gets_the_callback() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start_on(0, &[(503, None), (502, None), (500, None)]).await;
    app.post_schedule(&echo_batch(
        "retry",
        "retry-1",
        &["x"],
        0,
        Some(&receiver.url()),
    ))
    .await;
    let cb = receiver.wait_for("retry-1").await;
    assert_eq!(cb.body["status"], "succeeded");
    let all = receiver.all();
    assert_eq!(
        all.len(),
        4,
        "three failures, then delivered: {:?}",
        all.iter().map(|r| r.answered).collect::<Vec<_>>()
    );
    let ids: HashSet<_> = all
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one webhook-id across retries");
    let delivered = app.wait_for_callback_status("retry-1", "delivered").await;
    assert_eq!(delivered["attempts"], 4);
    assert_eq!(
        delivered["last_error"],
        "receiver answered 500 Internal Server Error"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start_on(0, &[(429, Some(1))]).await;
    app.post_schedule(&echo_batch("ra", "ra-1", &["x"], 0, Some(&receiver.url())))
        .await;
    receiver.wait_for("ra-1").await;
    let all = receiver.all();
    assert_eq!(all.len(), 2);
    let waited = all[1].at - all[0].at;
    // The test config's backoff is at most 200 ms: only Retry-After explains this.
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "{waited:?}"
    );
}

#[tokio::test]
async fn an_unreachable_receiver_ends_dead_and_is_replayed_on_request() {
    let app = app_with(|c| c.callbacks.max_attempts = 3).await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/agent_result_callback");
    app.post_schedule(&echo_batch("dead", "dead-1", &["x"], 0, Some(&url)))
        .await;
    let dead = app.wait_for_callback_status("dead-1", "dead").await;
    assert_eq!(dead["attempts"], 3);
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{dead}"
    );
    assert_eq!(dead["url"], url);

    let receiver = Receiver::start_on(port, &[]).await;
    let id = dead["id"].as_str().unwrap();
    let (s, r) = app
        .post(&format!("/callbacks/{id}/retry"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let cb = receiver.wait_for("dead-1").await;
    assert_eq!(
        cb.headers["webhook-id"], id,
        "the replay keeps the webhook-id"
    );
    app.wait_for_callback_status("dead-1", "delivered").await;
    let (s, r) = app.get("/callbacks?status=lost").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
}

#[tokio::test]
async fn a_4xx_other_than_408_and_429_stops_at_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start_on(0, &[(410, None)]).await;
    app.post_schedule(&echo_batch(
        "gone",
        "gone-1",
        &["x"],
        0,
        Some(&receiver.url()),
    ))
    .await;
    let dead = app.wait_for_callback_status("gone-1", "dead").await;
    assert_eq!(dead["attempts"], 1);
    assert_eq!(receiver.all().len(), 1);
}

#[tokio::test]
async fn call_and_task_timeouts_end_the_task_timed_out_with_a_reason() {
    let app = app_with(|c| c.scheduler.task_timeout_ms = 400).await;
    let receiver = Receiver::start().await;
    let mut b = echo_batch(
        "to",
        "to-call",
        &["slow", "next"],
        5_000,
        Some(&receiver.url()),
    );
    b["agent_calls"][0]["timeout_ms"] = json!(100);
    app.post_schedule(&b).await;
    let cb = receiver.wait_for("to-call").await.body;
    assert_eq!(cb["status"], "timed_out");
    assert_eq!(cb["error"], "call 0 timed out after 100 ms");
    assert_eq!(
        cb["results"][0]["result"]["error"],
        "call 0 timed out after 100 ms"
    );

    app.post_schedule(&echo_batch(
        "to",
        "to-task",
        &["a", "b", "c"],
        300,
        Some(&receiver.url()),
    ))
    .await;
    let cb = receiver.wait_for("to-task").await.body;
    assert_eq!(cb["status"], "timed_out");
    assert_eq!(cb["error"], "task timed out after 400 ms");
    assert_eq!(cb["results"][0]["result"]["success"], true);
    let t = app.wait_for_task_end("to-task").await;
    assert_eq!(t["calls"][2]["status"], "skipped");
}

#[tokio::test]
async fn a_queued_batch_can_be_cancelled_before_it_starts() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    app.post_schedule(&echo_batch("cq", "cq-1", &["busy"], 30_000, None))
        .await;
    app.post_schedule(&echo_batch(
        "cq",
        "cq-2",
        &["waiting"],
        0,
        Some(&receiver.url()),
    ))
    .await;
    let (s, r) = app.delete("/tasks/cq-2").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let cb = receiver.wait_for("cq-2").await.body;
    assert_eq!(cb["status"], "cancelled");
    assert_eq!(cb["error"], "cancelled before it started");
    assert_eq!(cb["results"], json!([]));
    let (_, t) = app.get("/tasks/cq-2").await;
    assert_eq!(t["steps_count"], 0);
    app.delete("/tasks/cq-1").await;
}

#[tokio::test]
async fn reject_policy_refuses_a_second_batch_and_stores_nothing() {
    let app =
        app_with(|c| c.scheduler.session_policy = naga_core::config::SessionPolicy::Reject).await;
    app.post_schedule(&echo_batch("rej", "rej-1", &["busy"], 30_000, None))
        .await;
    let (s, r) = app
        .post_schedule(&echo_batch("rej", "rej-2", &["second"], 0, None))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert!(r["detail"].as_str().unwrap().contains("reject"));
    let (s, _) = app.get("/tasks/rej-2").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Another session is not affected, and a request may override the policy.
    let (s, _) = app
        .post_schedule(&echo_batch("rej-other", "rej-3", &["x"], 0, None))
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut b = echo_batch("rej", "rej-4", &["queued"], 0, None);
    b["multitask_strategy"] = json!("enqueue");
    let (s, _) = app.post_schedule(&b).await;
    assert_eq!(s, StatusCode::OK);
    let (_, t) = app.get("/tasks/rej-4").await;
    assert_eq!(t["status"], "queued");
    app.delete("/tasks/rej-1").await;
    assert_eq!(app.wait_for_task_end("rej-4").await["status"], "succeeded");
}

#[tokio::test]
async fn interrupt_policy_cancels_the_running_batch_and_starts_the_new_one() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    app.post_schedule(&echo_batch(
        "int",
        "int-1",
        &["long"],
        30_000,
        Some(&receiver.url()),
    ))
    .await;
    app.post_schedule(&echo_batch(
        "int",
        "int-2",
        &["queued"],
        0,
        Some(&receiver.url()),
    ))
    .await;
    app.wait_for_status("int-1", "running").await;
    let mut b = echo_batch("int", "int-3", &["urgent"], 0, Some(&receiver.url()));
    b["multitask_strategy"] = json!("interrupt");
    let (s, _) = app.post_schedule(&b).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(receiver.wait_for("int-1").await.body["status"], "cancelled");
    assert_eq!(receiver.wait_for("int-2").await.body["status"], "cancelled");
    let cb = receiver.wait_for("int-3").await.body;
    assert_eq!(cb["status"], "succeeded");
    assert_eq!(cb["results"][0]["result"]["result"], "urgent");
}

/// A receiver that redirects is answered as it answered: a redirect could
/// lead a callback past `allowed_hosts`, so it is never followed.
#[tokio::test]
async fn a_redirecting_receiver_is_not_followed() {
    let app = TestApp::spawn().await;
    let target = Receiver::start().await;
    let location = target.url();
    let redirector = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(move || {
            let location = location.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", location)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, redirector).await });

    app.post_schedule(&echo_batch("redirect", "redir-1", &["x"], 0, Some(&url)))
        .await;
    let dead = app.wait_for_callback_status("redir-1", "dead").await;
    assert!(
        dead["last_error"].as_str().unwrap().contains("307"),
        "{dead}"
    );
    assert!(target.all().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn a_replayed_callback_retries_like_a_first_delivery() {
    let app = app_with(|c| c.callbacks.max_attempts = 3).await;
    // Three failures make it dead; the replay then meets two more.
    let receiver = Receiver::start_on(0, &[(503, None); 5]).await;
    app.post_schedule(&echo_batch(
        "replay",
        "replay-1",
        &["x"],
        0,
        Some(&receiver.url()),
    ))
    .await;
    let dead = app.wait_for_callback_status("replay-1", "dead").await;
    let id = dead["id"].as_str().unwrap();
    let (s, r) = app
        .post(&format!("/callbacks/{id}/retry"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let delivered = app.wait_for_callback_status("replay-1", "delivered").await;
    assert_eq!(delivered["attempts"], 3, "attempts counted from the replay");
    assert_eq!(receiver.all().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_replays_of_one_callback_one_wins_and_it_is_delivered_once() {
    let app = TestApp::spawn().await;
    // The first delivery is refused for good (410): dead at once. The
    // replay's first attempt is asked to come back in an hour: it stays
    // pending while the replays race.
    let receiver = Receiver::start_on(0, &[(410, None), (503, Some(3600))]).await;
    let url = receiver.url();
    app.post_schedule(&echo_batch("replays", "replays-1", &["x"], 0, Some(&url)))
        .await;
    let dead = app.wait_for_callback_status("replays-1", "dead").await;
    let id = dead["id"].as_str().unwrap().to_owned();
    let replays = (0..10).map(|_| {
        let (client, url) = (
            app.client.clone(),
            format!("{}/callbacks/{id}/retry", app.agent),
        );
        async move { read(client.post(url).json(&json!({})).send().await.unwrap()).await }
    });
    let answers = futures::future::join_all(replays).await;
    let won = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let refused = answers
        .iter()
        .filter(|(s, r)| *s == StatusCode::CONFLICT && r["code"] == "already_pending")
        .count();
    assert_eq!((won, refused), (1, 9), "{answers:?}");
    // A later callback through the same worker: the replay had its chance
    // to be sent twice by now.
    app.post_schedule(&echo_batch("replays", "replays-2", &["y"], 0, Some(&url)))
        .await;
    receiver.wait_for("replays-2").await;
    let sent = receiver
        .all()
        .iter()
        .filter(|r| r.body["task_id"] == "replays-1")
        .count();
    assert_eq!(sent, 2, "the refused first delivery and one replay");
    let pending = app.wait_for_callback_status("replays-1", "pending").await;
    assert_eq!(pending["attempts"], 1, "{pending}");
}

#[tokio::test]
async fn dead_callbacks_are_redriven_on_request_since_a_time() {
    let app = app_with(|c| c.callbacks.max_attempts = 2).await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/agent_result_callback");
    let before = chrono::Utc::now().to_rfc3339();
    for id in ["redrive-1", "redrive-2"] {
        app.post_schedule(&echo_batch("redrive", id, &["x"], 0, Some(&url)))
            .await;
        app.wait_for_callback_status(id, "dead").await;
    }
    let receiver = Receiver::start_on(port, &[]).await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp_millis();
    let (s, r) = app
        .post(&format!("/callbacks/redrive?since={later}"), &json!({}))
        .await;
    assert_eq!((s, r["count"].clone()), (StatusCode::OK, json!(0)), "{r}");
    let (s, r) = app
        .post("/callbacks/redrive?since=yesterday", &json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    let since = before.replace('+', "%2B");
    let (s, r) = app
        .post(&format!("/callbacks/redrive?since={since}"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["count"], 2, "{r}");
    for id in ["redrive-1", "redrive-2"] {
        receiver.wait_for(id).await;
        app.wait_for_callback_status(id, "delivered").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_admits_one_of_many_batches_sent_at_once_to_an_idle_session() {
    let app = TestApp::spawn().await;
    let bodies: Vec<_> = (0..10)
        .map(|i| {
            let mut b = echo_batch("rj", &format!("rj-{i}"), &["x"], 300, None);
            b["multitask_strategy"] = json!("reject");
            b
        })
        .collect();
    let answers = futures::future::join_all(bodies.iter().map(|b| app.post_schedule(b))).await;
    let accepted = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let refused = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .count();
    assert_eq!((accepted, refused), (1, 9), "{answers:?}");
    let (_, list) = app.get("/tasks?session_id=rj").await;
    assert_eq!(list["count"], 1, "refused batches store nothing");
}

/// While every worker is busy, a `reject` batch holds its session's slot
/// from before its commit until it is handed over: a second one sent at
/// the same time never gets in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_admits_one_batch_of_a_session_also_when_every_worker_is_busy() {
    let app = app_with(|c| c.scheduler.workers = 1).await;
    let (s, _) = app
        .post_schedule(&echo_batch("hog", "hog", &["x"], 60_000, None))
        .await;
    assert_eq!(s, StatusCode::OK);
    app.wait_for_status("hog", "running").await;
    // (A race: each round is one more chance for it to show.)
    for round in 0..150 {
        let session = format!("rjw-{round}");
        let bodies: Vec<_> = (0..8)
            .map(|i| {
                let mut b = echo_batch(&session, &format!("{session}-{i}"), &["x"], 0, None);
                b["multitask_strategy"] = json!("reject");
                b
            })
            .collect();
        let answers = futures::future::join_all(bodies.iter().map(|b| app.post_schedule(b))).await;
        let accepted = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        assert_eq!(accepted, 1, "round {round}: {answers:?}");
    }
    let (s, r) = app.post("/tasks/hog/cancel", &json!({})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
}

/// `interrupt` cancels the batches of its session accepted before it,
/// never one accepted after it (even one already queued when the
/// interrupting batch is handed over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_cancels_only_the_batches_accepted_before_it() {
    let app = TestApp::spawn().await;
    // (A race: each round is one more chance for it to show.)
    for round in 0..60 {
        let session = format!("intr-{round}");
        let first = format!("{session}-running");
        let (s, _) = app
            .post_schedule(&echo_batch(&session, &first, &["x"], 60_000, None))
            .await;
        assert_eq!(s, StatusCode::OK);
        app.wait_for_status(&first, "running").await;
        let mut interrupting = echo_batch(&session, &format!("{session}-i"), &["i"], 0, None);
        interrupting["multitask_strategy"] = json!("interrupt");
        let queued = echo_batch(&session, &format!("{session}-q"), &["q"], 0, None);
        let (a, b) = tokio::join!(app.post_schedule(&interrupting), app.post_schedule(&queued));
        assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "{a:?} {b:?}");
        let i = app.wait_for_task_end(&format!("{session}-i")).await;
        let q = app.wait_for_task_end(&format!("{session}-q")).await;
        assert_eq!(i["status"], "succeeded", "{i}");
        let later = q["sequence"].as_i64() > i["sequence"].as_i64();
        let want = if later { "succeeded" } else { "cancelled" };
        assert_eq!(
            q["status"], want,
            "round {round}: accepted after the interrupt: {later}\n{i}\n{q}"
        );
        assert_eq!(app.wait_for_task_end(&first).await["status"], "cancelled");
    }
}

#[tokio::test]
async fn a_request_id_sent_again_with_another_batch_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let first = echo_batch("reuse", "reuse-1", &["a"], 0, None);
    let (s, answer) = app.post_schedule(&first).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        app.post_schedule(&first).await.1,
        answer,
        "a retry: the first answer"
    );
    for other in [
        echo_batch("reuse", "reuse-1", &["b"], 0, None),
        echo_batch("another-session", "reuse-1", &["a"], 0, None),
    ] {
        let (s, r) = app.post_schedule(&other).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
        assert_eq!(r["code"], "request_id_reused");
    }
    // Another callback URL or query is another batch, too.
    let mut with_url = first.clone();
    with_url["callback_url"] = json!("http://127.0.0.1:9/agent_result_callback");
    let mut with_query = first.clone();
    with_query["query"] = json!("另一个问题");
    for other in [with_url, with_query] {
        let (s, r) = app.post_schedule(&other).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{other}: {r}");
    }
    let task = app.wait_for_task_end("reuse-1").await;
    assert_eq!(task["calls"].as_array().unwrap().len(), 1);
    assert_eq!(task["steps"][0]["output"], "a");
    assert!(task["callback_url"].is_null(), "{task}");

    // The same calls with their keys in another order: the same batch.
    let body = |call: &str| {
        format!(r#"{{"agent_calls": [{call}], "session_id": "reuse", "request_id": "reuse-2"}}"#)
            .into_bytes()
    };
    let json = Some("application/json");
    let (s, answer) = app
        .post_raw(
            "/schedule",
            body(r#"{"tool_name": "echo", "instruction": "b"}"#),
            json,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    let (s, again) = app
        .post_raw(
            "/schedule",
            body(r#"{"instruction": "b", "tool_name": "echo"}"#),
            json,
        )
        .await;
    assert_eq!(
        (s, again),
        (StatusCode::OK, answer),
        "a retry: the first answer"
    );
}

#[tokio::test]
async fn a_node_holding_max_queued_batches_refuses_more_with_429_and_stores_nothing() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.scheduler.max_queued = 3;
    let app = TestApp::spawn_with(dir, config).await;
    for i in 1..=3 {
        let id = format!("full-{i}");
        let b = echo_batch("full", &id, &["slow"], 10_000, None);
        assert_eq!(app.post_schedule(&b).await.0, StatusCode::OK);
    }
    let refused = echo_batch("full", "full-4", &["one more"], 0, None);
    let resp = app
        .client
        .post(format!("{}/schedule", app.agent))
        .json(&refused)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body.to_string().contains("max_queued"), "{body}");
    assert_eq!(app.get("/tasks/full-4").await.0, StatusCode::NOT_FOUND);
    // A repeat of an accepted batch still gets its first answer.
    let again = echo_batch("full", "full-2", &["slow"], 10_000, None);
    let (status, answer) = app.post_schedule(&again).await;
    assert_eq!(
        (status, answer["task_id"].as_str()),
        (StatusCode::OK, Some("full-2"))
    );
    // Room again once one has ended.
    assert_eq!(
        app.post("/tasks/full-3/cancel", &json!({})).await.0,
        StatusCode::OK
    );
    assert_eq!(app.post_schedule(&refused).await.0, StatusCode::OK);
}

#[tokio::test]
async fn while_a_secret_rotates_callbacks_carry_a_signature_for_each_key() {
    const NEW: &str = "whsec_bmV3LWtleS1vZi10aGlzLXRlc3Qtcm90YXRpb24=";
    let app = app_with(|c| {
        c.callbacks.secret = Some(NEW.into());
        c.callbacks.previous_secrets = vec![SECRET.into()];
    })
    .await;
    let receiver = Receiver::start().await;
    app.post_schedule(&echo_batch(
        "rot",
        "rot-1",
        &["hi"],
        0,
        Some(&receiver.url()),
    ))
    .await;
    let cb = receiver.wait_for("rot-1").await;
    let (id, ts, sig) = webhook_headers(&cb);
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    // A receiver still on the old key and one already on the new verify it.
    assert!(verify(SECRET, &id, &ts, cb.raw.as_bytes(), &sig));
    assert!(verify(NEW, &id, &ts, cb.raw.as_bytes(), &sig));
    let other = "whsec_c29tZS1vdGhlci1rZXktbm90LWNvbmZpZ3VyZWQ=";
    assert!(!verify(other, &id, &ts, cb.raw.as_bytes(), &sig));
}

/// A backlog behind one session's long batch is accepted whatever its
/// size (no 429 at the defaults) and waits in the store, not in memory:
/// the node holds only the batch that runs. Once that ends, the backlog
/// runs in the session's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_behind_a_long_batch_waits_in_the_store_and_runs_in_order() {
    let app = TestApp::spawn().await;
    let (s, r) = app
        .post_schedule(&echo_batch("bk", "bk-long", &["long"], 2000, None))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    app.wait_for_status("bk-long", "running").await;
    let ids: Vec<String> = (0..160).map(|i| format!("bk-{i:03}")).collect();
    for chunk in ids.chunks(8) {
        let batches: Vec<_> = chunk
            .iter()
            .map(|id| echo_batch("bk", id, &["x"], 0, None))
            .collect();
        let answers = futures::future::join_all(batches.iter().map(|b| app.post_schedule(b))).await;
        for (s, r) in answers {
            assert_eq!(s, StatusCode::OK, "{r}");
        }
    }
    let (_, health) = app.get("/health").await;
    assert_eq!(
        health["queue"]["agent"], 1,
        "only the long batch is held: {health}"
    );
    let mut ended = vec![app.wait_for_task_end("bk-long").await];
    for id in &ids {
        let task = app.wait_for_task_end(id).await;
        assert_eq!(task["status"], "succeeded", "{task}");
        ended.push(task);
    }
    ended.sort_by_key(|t| t["sequence"].as_i64());
    for pair in ended.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            after["started_at"].as_str() >= before["finished_at"].as_str(),
            "{} started before {} ended:\n{before}\n{after}",
            after["task_id"],
            before["task_id"]
        );
    }
}

/// Stores a batch of `calls` (a JSON array) as running, held by this
/// node, straight in its store: as an accept that committed and whose
/// answer was lost leaves it (nothing here runs it). Returns its seq.
async fn stored_held_here(app: &TestApp, id: &str, calls: &[Value], callback: &str) -> i64 {
    let engine = &app.running.as_ref().unwrap().engine;
    let now = chrono::Utc::now().timestamp_millis();
    let calls_text: Vec<String> = calls.iter().map(Value::to_string).collect();
    let inserted = engine
        .store_for_tests()
        .insert_task(naga_store::NewTask {
            id: id.into(),
            kind: naga_core::wire::TaskKind::Agent,
            session_id: format!("s-{id}"),
            analysis_session_id: None,
            query: None,
            callback_url: Some(callback.into()),
            policy: naga_core::config::SessionPolicy::Enqueue,
            fingerprint: None,
            calls: format!("[{}]", calls_text.join(",")),
            calls_count: calls.len(),
            response: String::new(),
            accepted_at: now,
            lease: engine.scheduler().lease(now),
            started: true,
            clock: None,
        })
        .await
        .unwrap();
    match inserted {
        naga_store::Inserted::New {
            seq, started: true, ..
        } => seq,
        other => panic!("{id}: not stored as running here: {other:?}"),
    }
}

/// A batch stored as running in this node's name that nothing here runs
/// (its accept committed but the answer was lost, as when the database's
/// connection drops at that moment, so the node never started it) is not
/// kept alive by the node's lease renewals: once its lease lapses, a node
/// with room (here this one) claims it, runs it and calls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_held_in_a_live_nodes_name_that_nothing_runs_is_run_once_its_lease_lapses() {
    let receiver = Receiver::start().await;
    let app = app_with(|c| c.scheduler.lease_ms = 1_500).await;
    let call = json!({"tool_name": "echo", "service_name": "agent_server",
                      "instruction": "orphan", "agentType": "agent"});
    stored_held_here(&app, "orphan", &[call], &receiver.url()).await;
    let (_, task) = app.get("/tasks/orphan").await;
    assert_eq!(task["status"], "running", "{task}");

    let callback = receiver.wait_for("orphan").await;
    assert_eq!(callback.body["status"], "succeeded", "{}", callback.raw);
    let task = app.wait_for_task_end("orphan").await;
    assert_eq!(task["status"], "succeeded", "{task}");
}

/// Likewise a callback stored in this node's name that no delivery here
/// attempts (its task's end committed but the answer was lost): once its
/// lease lapses it is claimed and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_held_in_a_live_nodes_name_that_nothing_sends_is_sent_once_its_lease_lapses() {
    let receiver = Receiver::start().await;
    let app = app_with(|c| c.scheduler.lease_ms = 1_500).await;
    let seq = stored_held_here(&app, "unsent", &[], &receiver.url()).await;
    let engine = &app.running.as_ref().unwrap().engine;
    let now = chrono::Utc::now().timestamp_millis();
    let lease = engine.scheduler().lease(now);
    engine
        .store_for_tests()
        .finish_task(naga_store::TaskFinish {
            task_id: "unsent".into(),
            task_seq: seq,
            owner: lease.owner.clone(),
            last_call: None,
            status: naga_core::TaskStatus::Succeeded,
            error: None,
            finished_at: now,
            callback: Some((
                receiver.url(),
                naga_store::EnvelopeHead::parse(
                    r#"{"task_id":"unsent","status":"succeeded","sequence":"#,
                )
                .unwrap(),
            )),
            callback_id: "msg_unsent".into(),
            summary: None,
            lease_until: lease.until,
            take_next: false,
        })
        .await
        .unwrap();
    let (_, pending) = app.get("/callbacks?status=pending").await;
    assert!(
        pending["callbacks"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["task_id"] == "unsent")),
        "stored pending, held by the node: {pending}"
    );

    let callback = receiver.wait_for("unsent").await;
    assert_eq!(callback.body["status"], "succeeded", "{}", callback.raw);
}
