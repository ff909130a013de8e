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
    if let Ok(dir) = std::env::var("NAGA_SCREENSHOTS") {
        for f in ["dashboard-1280x800.png", "dashboard-phone.png"] {
            let _ = std::fs::copy(shots.join(f), PathBuf::from(&dir).join(f));
        }
    }
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
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config(&dir);
        config.only = vec![
            naga_core::config::Service::Api,
            naga_core::config::Service::Agent,
        ];
        config.api_addr = "127.0.0.1:0".into();
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
