//! Hostile load: what a slow or idle client costs is bounded.

mod common;
use common::*;
use reqwest::StatusCode;
use std::{sync::Arc, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (whatever it answered
/// first), at most `within`.
async fn closed_by_server(mut stream: TcpStream, within: Duration) -> Result<String, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    match tokio::time::timeout(within, read).await {
        Ok(()) => Ok(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => Err(String::from_utf8_lossy(&got).into_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_closed_and_the_others_still_answered() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.http.header_timeout_ms = 500;
    config.http.body_timeout_ms = 1_000;
    let app = TestApp::spawn_with(dir, config).await;
    let addr = app.agent.trim_start_matches("http://").to_owned();
    let connect = || TcpStream::connect(addr.clone());

    // Idle: connected, nothing sent.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(connect().await.unwrap());
    }
    // Slow headers: a request line and one header, never the end.
    let mut slow_headers = Vec::new();
    for _ in 0..40 {
        let mut s = connect().await.unwrap();
        s.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
            .await
            .unwrap();
        slow_headers.push(s);
    }
    // Slow body: whole headers, then a byte every 100 ms, forever.
    let mut slow_bodies = Vec::new();
    for _ in 0..40 {
        let s = connect().await.unwrap();
        let (mut read, mut write) = s.into_split();
        let head = format!(
            "POST /schedule HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: 100000\r\n\r\n{{"
        );
        write.write_all(head.as_bytes()).await.unwrap();
        tokio::spawn(async move {
            while write.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        slow_bodies.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            let read_all = async {
                loop {
                    match read.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            };
            let done = tokio::time::timeout(Duration::from_secs(15), read_all).await;
            (done.is_ok(), String::from_utf8_lossy(&got).into_owned())
        }));
    }

    // Meanwhile, a normal client is answered.
    let (status, health) = app.get("/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let batch = echo_batch("calm", "calm-1", &["x"], 0, None);
    assert_eq!(app.post_schedule(&batch).await.0, StatusCode::OK);

    // Each slow or idle connection is closed by naga.
    for (what, streams) in [("idle", idle), ("slow headers", slow_headers)] {
        for s in streams {
            if let Err(got) = closed_by_server(s, Duration::from_secs(15)).await {
                panic!("a connection with {what} was still open after 15 s (got {got:?})");
            }
        }
    }
    for body in slow_bodies {
        let (closed, got) = body.await.unwrap();
        assert!(
            closed,
            "a connection with a slow body was still open after 15 s (got {got:?})"
        );
        assert!(!got.starts_with("HTTP/1.1 200"), "{got}");
    }
    assert_eq!(app.wait_for_task_end("calm-1").await["status"], "succeeded");
}

/// At `max_connections`, a newcomer used to wait in the backlog until an
/// idle connection timed out (with 300 file descriptors and 400 slow
/// clients: answers after up to 4 s, some not at all). Now the connection
/// that waited longest for a request is closed to make room, and one with
/// a response under way (an SSE stream) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_bound_the_longest_idle_connection_makes_room() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.http.max_connections = 8;
    config.http.header_timeout_ms = 120_000;
    config.api_addr = "127.0.0.1:0".into();
    config.only = vec![
        naga_core::config::Service::Api,
        naga_core::config::Service::Agent,
    ];
    let app = TestApp::spawn_with(dir, config).await;
    let addr = app.api.trim_start_matches("http://").to_owned();
    // Each request on a connection of its own (none kept idle by a pool).
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };

    let resp = fresh()
        .get(format!("{}/sessions/crowd/events", app.api))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut events = sse(resp);
    // Every other connection idle: the bound is reached (and one more waits).
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for round in 0..3 {
        let health = fresh().get(format!("{}/health", app.api)).send().await;
        assert!(
            matches!(&health, Ok(r) if r.status() == StatusCode::OK),
            "round {round}: /health with every connection idle: {health:?}"
        );
    }
    // The first idle connection waited longest: it was closed.
    let first = idle.remove(0);
    if let Err(got) = closed_by_server(first, Duration::from_secs(10)).await {
        panic!("the longest idle connection was still open (got {got:?})");
    }
    // The SSE stream was not: a notification reaches it.
    let shown = fresh()
        .post(format!("{}/ui_notification", app.api))
        .json(&serde_json::json!({"session_id": "crowd", "action": "show_tool_ai_response", "ai_response": "still here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(
        next_event(&mut events, "followup").await["ai_response"],
        "still here"
    );
}
