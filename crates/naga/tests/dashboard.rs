//! The dashboard at `/ui`: served from the binary without the token, and
//! used in a real browser (Debian's Chromium driven by playwright-core from
//! npm, as `.ci/run` installs them): `tests/browser/dashboard.cjs`.

mod common;
use common::*;
use reqwest::StatusCode;
use std::{path::PathBuf, time::Duration};

const TOKEN: &str = "dashboard-token-0123456789";

fn peers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-peers/node_modules")
}

/// Runs a browser scenario against `app`; its failure says which step did
/// not happen.
async fn browse(app: &TestApp, scenario: &str, extra: &str) {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && peers().join("playwright-core").exists(),
        "Chromium or playwright-core missing: `apt-get install chromium` and \
         `npm install --prefix target/test-peers playwright-core@1.64.1` (as .ci/run does)"
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.cjs");
    let shots = app.dir.path().to_owned();
    let run = tokio::process::Command::new("node")
        .arg(script)
        .args([&app.agent, scenario, extra])
        .arg(&shots)
        .env("NODE_PATH", peers())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("the browser scenario `{scenario}` did not end within 120 s"))
        .unwrap();
    assert!(
        out.status.success(),
        "browser scenario `{scenario}`: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    // Kept where CI keeps its artifacts (or NAGA_SCREENSHOTS), to look at.
    let keep = std::env::var_os("NAGA_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
        });
    let _ = std::fs::create_dir_all(&keep);
    for f in [
        "dashboard-1280x800.png",
        "dashboard-phone.png",
        "dashboard-chat.png",
    ] {
        if shots.join(f).exists() {
            std::fs::copy(shots.join(f), keep.join(f)).unwrap();
        }
    }
}

/// A configuration running the API server beside the agent server.
fn with_api_server() -> (std::sync::Arc<tempfile::TempDir>, naga_core::config::Config) {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.only = vec![
        naga_core::config::Service::Api,
        naga_core::config::Service::Agent,
    ];
    config.api_addr = "127.0.0.1:0".into();
    (dir, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_tasks_live_cancels_and_replays_a_dead_callback() {
    let app = TestApp::spawn().await;
    // Refuses the first delivery for good (400: dead at once), then takes it.
    let receiver = Receiver::start_on(0, &[(400, None)]).await;
    browse(&app, "live", &receiver.url()).await;
    receiver.wait_for("b-3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_panel_talks_to_the_assistant_and_the_tasks_it_implies_show_live() {
    let llm = common::llm::ScriptedLlm::start().await;
    llm.set_analysis(
        "｛\"agentType\": \"agent\", \"tool_name\": \"echo\", \"instruction\": \"来自聊天\"｝",
    );
    let (dir, mut config) = with_api_server();
    config.llm.base_url = Some(llm.base_url.clone());
    config.llm.model = Some("scripted".into());
    config.llm.api_key = Some("sk-test".into());
    let app = TestApp::spawn_with(dir, config).await;
    browse(&app, "chat", "").await;
    assert!(
        !llm.requests("chat").is_empty(),
        "the chat reached the LLM through the assistant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_page_asks_for_it_once_and_sends_it() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.auth.token = Some(TOKEN.into());
    let app = TestApp::spawn_with(dir, config).await;
    browse(&app, "token", TOKEN).await;
}

#[tokio::test]
async fn the_page_is_served_without_the_token_and_holds_no_data() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.auth.token = Some(TOKEN.into());
    let app = TestApp::spawn_with(dir, config).await;
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let resp = app
            .client
            .get(format!("{}{path}", app.agent))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let headers = resp.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    }
    // The API server sends a browser to it, also without the token.
    let app_all = {
        let (dir, mut config) = with_api_server();
        config.auth.token = Some(TOKEN.into());
        TestApp::spawn_with(dir, config).await
    };
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirects
        .get(format!("{}/ui", app_all.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(resp.headers()["location"], format!("{}/ui", app_all.agent));
    // Its data is not: the API it calls still needs the token.
    let (status, _) = app.get("/sessions").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// What `GET /nodes` says of the node `id`.
async fn node(app: &TestApp, id: &str) -> serde_json::Value {
    let (status, body) = app.get("/nodes").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("node {id} is not in /nodes: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_shows_every_node_with_its_heartbeat_and_what_it_holds() {
    let a = TestApp::spawn().await;
    let (_, first) = a.get("/nodes").await;
    let id_a = first["node_id"].as_str().unwrap().to_owned();
    let me = node(&a, &id_a).await;
    assert_eq!(me["this"], true, "{first}");
    assert_eq!(me["alive"], true, "{first}");
    // A running task is held by the node that runs it.
    let (status, body) = a
        .post_schedule(&echo_batch("s-nodes", "n-1", &["long"], 60_000, None))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    a.wait_for_status("n-1", "running").await;
    assert_eq!(node(&a, &id_a).await["tasks"], 1);

    if a.config.database_url.is_some() {
        // PostgreSQL: a second node on the same database; each shows both.
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config(&dir);
        config.database_url = a.config.database_url.clone();
        let mut b = TestApp::spawn_with(dir, config).await;
        let (_, listed) = b.get("/nodes").await;
        let id_b = listed["node_id"].as_str().unwrap().to_owned();
        assert_ne!(id_a, id_b);
        assert_eq!(listed["shared"], true);
        for (app, this) in [(&a, &id_a), (&b, &id_b)] {
            for id in [&id_a, &id_b] {
                let n = node(app, id).await;
                assert_eq!(n["alive"], true, "{n}");
                assert_eq!(n["this"], id == this, "{n}");
            }
        }
        assert_eq!(node(&b, &id_a).await["tasks"], 1, "b sees what a holds");
        // A node that stops is shown stopped by the other.
        b.stop().await;
        let n = node(&a, &id_b).await;
        assert_eq!(n["alive"], false, "{n}");
        assert!(n["stopped_at"].is_string(), "{n}");
    } else {
        // SQLite: one node, whose identity survives a restart.
        let (_, listed) = a.get("/nodes").await;
        assert_eq!(listed["shared"], false);
        assert_eq!(listed["count"], 1, "{listed}");
        let started = me["started_at"].as_str().unwrap().to_owned();
        let a = a.restart().await;
        let again = node(&a, &id_a).await;
        assert_eq!(again["this"], true);
        assert_eq!(again["alive"], true);
        assert!(
            again["started_at"].as_str().unwrap() > started.as_str(),
            "{again}"
        );
    }
}

/// Old work stays in view: with 150 newer sessions and 600 newer callbacks,
/// the dashboard pages its lists ("more") and shows an old task's dead
/// callback, with its Replay button (it found the callback among the 500
/// newest before, and so said "not sent yet").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_work_stays_in_view_lists_page_and_a_callback_is_found_by_its_task() {
    let app = TestApp::spawn().await;
    // The first delivery is refused for good (400): old-1's callback is dead.
    let receiver = Receiver::start_on(0, &[(400, None)]).await;
    let (status, body) = app
        .post_schedule(&echo_batch(
            "old-session",
            "old-1",
            &["x"],
            0,
            Some(&receiver.url()),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.wait_for_callback_status("old-1", "dead").await;
    let app = &app;
    for chunk in 0..12 {
        let posts = (0..50).map(|i| {
            let n = chunk * 50 + i;
            let batch = echo_batch(
                &format!("newer-{}", n % 150),
                &format!("newer-{n}"),
                &["y"],
                0,
                Some(&receiver.url()),
            );
            async move { app.post_schedule(&batch).await }
        });
        for (status, body) in futures::future::join_all(posts).await {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    wait_until(
        Duration::from_secs(60),
        "600 newer callbacks delivered",
        || async { (receiver.accepted().len() >= 600).then_some(()) },
    )
    .await;
    browse(app, "paged", "").await;
}
