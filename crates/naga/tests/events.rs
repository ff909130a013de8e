//! `GET /events` on the agent server: a task's life as it happens, for the
//! dashboard and `naga tasks watch`.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

type Events = tokio::sync::mpsc::UnboundedReceiver<(String, String)>;

async fn subscribe(app: &TestApp, query: &str) -> Events {
    let resp = app
        .client
        .get(format!("{}/events{query}", app.agent))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut rx = sse(resp);
    next_event(&mut rx, "open").await;
    rx
}

/// The next event of any kind except keep-alives: (kind, data).
async fn next(rx: &mut Events, waiting_for: &str) -> (String, Value) {
    let (kind, data) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within 30 s: {waiting_for}"))
        .expect("the stream stays open");
    (kind, serde_json::from_str(&data).unwrap())
}

#[tokio::test]
async fn a_tasks_life_is_told_as_it_happens_to_those_who_follow_its_session() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let mut session = subscribe(&app, "?session_id=ev").await;
    let mut everything = subscribe(&app, "").await;
    // Another session's batch: the session's follower never hears of it
    // (its first event is the `ev` batch's, scheduled after).
    let (status, _) = app
        .post_schedule(&echo_batch("other", "other-1", &["x"], 0, None))
        .await;
    assert_eq!(status, StatusCode::OK);
    app.wait_for_status("other-1", "succeeded").await;
    let (status, _) = app
        .post_schedule(&echo_batch(
            "ev",
            "ev-1",
            &["a", "b"],
            0,
            Some(&receiver.url()),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);

    let mut seen = Vec::new();
    loop {
        let (kind, data) = next(&mut session, "the ev batch's callback").await;
        assert_ne!(
            data["task_id"], "other-1",
            "another session's event: {data}"
        );
        let done = kind == "callback";
        seen.push(match kind.as_str() {
            "status" => format!("status {}", data["status"].as_str().unwrap()),
            "call" => format!("call {} {}", data["index"], data["success"]),
            "callback" => format!("callback {}", data["outcome"].as_str().unwrap()),
            other => panic!("unexpected `{other}` event: {data}"),
        });
        if done {
            break;
        }
    }
    // Started at once (a worker was free), then its calls, its end and its
    // callback, each once.
    let expected = [
        "status running",
        "call 0 true",
        "call 1 true",
        "status succeeded",
        "callback delivered",
    ];
    assert_eq!(seen, expected);

    // Who follows every session heard of both.
    let mut tasks = std::collections::BTreeSet::new();
    while tasks.len() < 2 {
        let (_, data) = next(&mut everything, "both tasks").await;
        if let Some(id) = data["task_id"].as_str() {
            tasks.insert(id.to_owned());
        }
    }
    assert_eq!(tasks.into_iter().collect::<Vec<_>>(), ["ev-1", "other-1"]);
}

#[tokio::test]
async fn a_bad_session_id_is_refused_with_a_json_error() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/events?session_id=a%0Ab").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_request");
}
