//! Who may use naga: tokens, the browser-safe surface, callbacks that
//! cannot be turned against the network naga sits in (SECURITY.md).

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::{sync::Arc, time::Duration};

const TOKEN: &str = "a-long-random-token-for-tests";

/// All three services, with `change` applied to the configuration.
async fn app_with(change: impl FnOnce(&mut naga_core::config::Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.api_addr = "127.0.0.1:0".into();
    config.mcp_addr = "127.0.0.1:0".into();
    config.only = vec![];
    change(&mut config);
    TestApp::spawn_with(dir, config).await
}

/// The token's scheme is case-insensitive (RFC 9110); a request with two
/// `Host` headers is refused, not read by its first one.
#[tokio::test]
async fn the_bearer_scheme_in_any_case_and_one_host_header_only() {
    let app = app_with(|c| c.auth.token = Some(TOKEN.into())).await;
    let client = reqwest::Client::new();
    for (auth, want) in [
        (format!("bearer {TOKEN}"), StatusCode::OK),
        (format!("BEARER  {TOKEN}"), StatusCode::OK),
        (format!("Basic {TOKEN}"), StatusCode::UNAUTHORIZED),
        (format!("bearer{TOKEN}"), StatusCode::UNAUTHORIZED),
        ("bearer ".to_owned(), StatusCode::UNAUTHORIZED),
    ] {
        let resp = client
            .get(format!("{}/tasks", app.agent))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{auth}");
    }
    // Two Host headers, written by hand (HTTP clients send one).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.agent.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "GET /tasks HTTP/1.1\r\nHost: {addr}\r\nHost: evil.example\r\n\
         Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn with_a_token_every_route_but_health_needs_it() {
    let app = app_with(|c| c.auth.token = Some(TOKEN.into())).await;
    let client = reqwest::Client::new();
    let routes = [
        (&app.agent, "GET", "/tasks"),
        (&app.agent, "POST", "/schedule"),
        (&app.agent, "GET", "/callbacks"),
        (&app.agent, "DELETE", "/memory/global"),
        (&app.agent, "GET", "/"),
        (&app.agent, "GET", "/ready"),
        (&app.api, "GET", "/sessions"),
        (&app.api, "DELETE", "/sessions"),
        (&app.api, "POST", "/agent_result_callback"),
        (&app.mcp, "GET", "/status"),
        (&app.mcp, "POST", "/schedule"),
        (&app.agent, "GET", "/no-such-route"),
        (&app.agent, "GET", "/metrics"),
        (&app.api, "GET", "/metrics"),
        (&app.mcp, "GET", "/metrics"),
    ];
    for (base, method, path) in routes {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for auth in [None, Some("Bearer wrong"), Some(TOKEN)] {
            let mut req = client
                .request(method.clone(), format!("{base}{path}"))
                .json(&json!({}));
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let (status, body) = read(req.send().await.unwrap()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            assert_eq!(body["code"], "unauthorized", "{body}");
            assert!(
                !body.to_string().contains(TOKEN),
                "the token is never echoed"
            );
        }
    }
    for base in [&app.agent, &app.api, &app.mcp] {
        let (status, _) = read(client.get(format!("{base}/health")).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "/health stays open");
    }
    // With the token: the work is done.
    let batch = echo_batch("tok", "tok-1", &["hello"], 0, None);
    let (status, answer) = read(
        client
            .post(format!("{}/schedule", app.agent))
            .bearer_auth(TOKEN)
            .json(&batch)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, task) = read(
        client
            .get(format!("{}/tasks/tok-1", app.agent))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{task}");
}

#[tokio::test]
async fn a_non_loopback_bind_without_a_token_or_secret_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_naga"));
        cmd.args(["serve", "--only", "agent", "--agent-addr", "0.0.0.0:0"])
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("NAGA_AUTH_TOKEN")
            .env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = out.wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stderr) = run(&[]);
    assert!(!status.success());
    assert!(stderr.contains("without a token"), "{stderr}");
    let config = dir.path().join("naga.toml");
    std::fs::write(&config, "").unwrap();
    let (status, stderr) = run(&[
        ("NAGA_AUTH_TOKEN", TOKEN),
        ("NAGA_CONFIG", config.to_str().unwrap()),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("[callbacks] secret"), "{stderr}");
    // With both it starts (and answers on loopback with the token).
    std::fs::write(
        &config,
        "[callbacks]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
    )
    .unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_naga"))
        .args(["serve", "--only", "agent", "--agent-addr"])
        .arg(format!("0.0.0.0:{port}"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .env("NAGA_AUTH_TOKEN", TOKEN)
        .env_remove("DISPLAY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut answered = None;
    for _ in 0..500 {
        if let Ok(resp) = client
            .get(format!("http://127.0.0.1:{port}/tasks"))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            answered = Some(resp.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answered, Some(reqwest::StatusCode::OK));
}

#[tokio::test]
async fn a_rebinding_host_and_a_cross_site_form_are_refused() {
    let app = app_with(|_| {}).await;
    let client = reqwest::Client::new();
    // A DNS-rebinding page reaches naga under its own name.
    let port = app.agent.rsplit(':').next().unwrap().to_owned();
    for host in [
        "evil.example",
        "evil.example:80",
        "naga.attacker.test",
        // An authority with user info names evil.com, not 127.0.0.1.
        "127.0.0.1:80@evil.com",
        "localhost:80@evil.com",
        "127.0.0.1:8x",
    ] {
        let (status, body) = read(
            client
                .get(format!("{}/tasks", app.agent))
                .header("host", host)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host}: {body}");
        assert_eq!(body["code"], "host_not_allowed");
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
    ] {
        let resp = client
            .get(format!("{}/tasks", app.agent))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{host}");
    }

    // A cross-site form posts url-encoded (or text/plain) bodies: refused,
    // and the running task is not cancelled.
    app.post_schedule(&echo_batch("form", "form-1", &["long"], 30_000, None))
        .await;
    app.wait_for_status("form-1", "running").await;
    for content_type in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = read(
            client
                .post(format!("{}/tasks/form-1/cancel", app.agent))
                .header("content-type", content_type)
                .header("origin", "https://evil.example")
                .body("a=b")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
        assert_eq!(body["code"], "unsupported_media_type");
    }
    let (_, task) = app.get("/tasks/form-1").await;
    assert_eq!(task["status"], "running", "{task}");

    // CORS is closed: a page of another origin gets no permission.
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/tasks/form-1/cancel", app.agent),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let (status, _) = app.post("/tasks/form-1/cancel", &json!({})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn cors_opens_to_the_configured_origins_only() {
    let app = app_with(|c| c.auth.cors_origins = vec!["http://localhost:5173".into()]).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}/schedule", app.agent))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("http://localhost:5173").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn callbacks_are_refused_at_internal_addresses_at_delivery() {
    let receiver = Receiver::start().await;
    // `*` allows any host name, not any address.
    let app = app_with(|c| c.callbacks.allowed_hosts = vec!["*".into()]).await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/cb",
        "http://[fd00:ec2::254]/cb",
        "http://[::ffff:169.254.169.254]/cb",
        "http://127.0.0.1:9/cb",
    ] {
        let (status, body) = app
            .post_schedule(&echo_batch("ssrf", "ssrf-x", &["x"], 0, Some(url)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
    }
    // A name is admitted, but it resolves to loopback: refused when the
    // connection is made, the callback dead with the reason; the receiver
    // (listening there) hears nothing.
    let port = receiver.addr.port();
    let url = format!("http://localhost:{port}/cb");
    let (status, body) = app
        .post_schedule(&echo_batch("ssrf", "ssrf-1", &["x"], 0, Some(&url)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dead = app.wait_for_callback_status("ssrf-1", "dead").await;
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("resolves to"),
        "{dead}"
    );
    // Dead is recorded after its one attempt ended: nothing is in flight.
    assert!(receiver.all().is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn a_callback_stored_before_a_restart_is_checked_again_at_delivery() {
    // The receiver refuses the first attempt: the callback waits in the outbox.
    let receiver = Receiver::start_on(0, &[(503, None)]).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.callbacks.retry_schedule_ms = vec![4_000];
    let mut app = TestApp::spawn_with(dir.clone(), config.clone()).await;
    app.post_schedule(&echo_batch(
        "old",
        "old-1",
        &["x"],
        0,
        Some(&receiver.url()),
    ))
    .await;
    // (The first attempt: refused.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while receiver.all().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first attempt never reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.stop().await;
    // Restarted with a narrower allowlist: the stored callback is refused.
    config.callbacks.allowed_hosts = vec!["hooks.example".into()];
    let app = TestApp::spawn_with(dir, config).await;
    let dead = app.wait_for_callback_status("old-1", "dead").await;
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("is refused"),
        "{dead}"
    );
    assert_eq!(
        receiver.all().len(),
        1,
        "only the attempt before the restart"
    );
}

#[tokio::test]
async fn callbacks_received_must_be_signed_recently_with_a_configured_key() {
    const NEW: &str = "whsec_bmV3LWtleS1vZi10aGlzLXRlc3Qtcm90YXRpb24=";
    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let app = app_with(|c| {
        c.auth.token = Some(TOKEN.into());
        c.callbacks.secret = Some(NEW.into());
        c.callbacks.previous_secrets = vec![OLD.into()];
    })
    .await;
    let post = |key: &str, id: &str, age_secs: i64| {
        let key = naga_engine::callbacks::parse_secret(key).unwrap();
        let body = json!({"task_id": id, "session_id": "signed", "status": "succeeded",
                          "results": []})
        .to_string();
        let ts = chrono::Utc::now().timestamp() - age_secs;
        let signature = naga_engine::callbacks::sign(&key, id, ts, &body);
        app.client
            .post(format!("{}/agent_result_callback", app.api))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
    };
    // Signed with the current key or the one rotating out: taken, without
    // the token (the signature authenticates it).
    assert_eq!(post(NEW, "msg_new", 0).await.unwrap().status(), 200);
    assert_eq!(post(OLD, "msg_old", 0).await.unwrap().status(), 200);
    // Stale, or signed with another key: refused.
    let stale = post(NEW, "msg_stale", 600).await.unwrap();
    assert_eq!(stale.status(), 401);
    let other = "whsec_c29tZS1vdGhlci1rZXktbm90LWNvbmZpZ3VyZWQ=";
    assert_eq!(post(other, "msg_other", 0).await.unwrap().status(), 401);
}

/// What makes a callback an A2A push (its URL's `#a2a-push` fragment) is
/// naga's own: a client's `callback_url` carrying it is refused (400,
/// nothing stored), so a plain callback never becomes a push.
#[tokio::test]
async fn a_client_cannot_mark_its_callback_as_an_a2a_push() {
    let app = app_with(|_| {}).await;
    for fragment in ["#a2a-push", "#a2a-push=tok-1"] {
        let url = format!("http://127.0.0.1:9/cb{fragment}");
        let (status, body) = app
            .post_schedule(&echo_batch("marked", "marked-1", &["x"], 0, Some(&url)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{fragment}: {body}");
        assert!(body.to_string().contains("a2a-push"), "{body}");
    }
    let (status, _) = app.get("/tasks/marked-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing stored");
    // The same URL without the marker is a plain callback.
    let (status, body) = app
        .post_schedule(&echo_batch(
            "marked",
            "marked-1",
            &["x"],
            0,
            Some("http://127.0.0.1:9/cb"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
