//! Clients nobody here wrote (the official SDKs, installed by `.ci/run`
//! under `target/test-peers`), and naga processes to point them at.

use serde_json::Value;
use std::{path::PathBuf, process::Child, time::Duration};

/// Where `.ci/run` installs the test peers.
pub fn peers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-peers")
}

/// A naga process, killed when dropped (also when the test fails).
pub struct Node(pub Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Node {
    /// kill -9, and reaped.
    pub fn kill_9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

/// `naga serve --only agent` on `data` (and `database` when given); its URL.
pub fn node(data: &std::path::Path, database: Option<&str>) -> (Node, String) {
    let (child, url) = super::spawn_naga(|cmd| {
        cmd.arg("--data-dir").arg(data);
        if let Some(db) = database {
            cmd.arg("--database-url").arg(db);
        }
    });
    (Node(child), url)
}

/// Runs a client (`program` with `args`) to its end within 60 s; the one
/// JSON line it prints. `what` names it in failures.
pub async fn run_client(
    what: &str,
    mut cmd: tokio::process::Command,
    token: Option<&str>,
) -> Value {
    cmd.kill_on_drop(true);
    if let Some(t) = token {
        cmd.env("NAGA_TOKEN", t);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within 60 s"))
        .unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    serde_json::from_str(&last).unwrap_or_else(|e| panic!("{what} printed no JSON ({e}): {last}"))
}

/// The venv's Python running `tests/peers/<script>` with `args`.
pub fn python(script: &str, args: &[&str]) -> tokio::process::Command {
    let python = peers().join("venv/bin/python");
    assert!(
        python.exists(),
        "the official Python SDKs are missing: `python3 -m venv target/test-peers/venv && \
         target/test-peers/venv/bin/pip install mcp==2.3.0 a2a-sdk==1.3.0` (as .ci/run does)"
    );
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peers")
            .join(script),
    )
    .args(args);
    cmd
}
