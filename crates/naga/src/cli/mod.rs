//! The client subcommands: talk to a running agent server over HTTP. Data
//! goes to stdout (`--json`: the server's JSON, one document a line), the
//! rest (progress, errors) to stderr; an error is one line and a non-zero
//! exit.

pub mod callbacks;
pub mod demo;
pub mod schedule;
pub mod sessions;
pub mod tasks;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

#[derive(Args, Clone)]
pub struct Common {
    /// The agent server's base URL.
    #[arg(
        long = "agent-url",
        alias = "server",
        env = "NAGA_AGENT_URL",
        default_value = "http://127.0.0.1:8001",
        global = true
    )]
    pub agent_url: String,
    /// Print the server's JSON instead of lines of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The server's `[auth] token`, when it has one.
    #[arg(long, env = "NAGA_AUTH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

impl Common {
    /// A client that sends the token (if any).
    fn client(&self) -> reqwest::Client {
        let mut config = naga_core::config::Config::default();
        config.auth.token = self.token.clone().filter(|t| !t.is_empty());
        naga_engine::own_services_client(&config)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.agent_url.trim_end_matches('/'))
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        send(self.client().get(self.url(path)).query(query)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.post_query(path, &[], body).await
    }

    pub async fn post_query(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
    ) -> anyhow::Result<Value> {
        send(self.client().post(self.url(path)).query(query).json(body)).await
    }

    /// `answer` as JSON (`--json`) or as the lines `text` makes of it.
    pub fn print(&self, answer: &Value, text: impl FnOnce(&Value) -> Vec<String>) {
        if self.json {
            println!("{answer}");
        } else {
            for line in text(answer) {
                println!("{line}");
            }
        }
    }
}

async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = req
        .send()
        .await
        .context("cannot reach the agent server (is `naga serve` running? see --agent-url)")?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .context("the server did not answer JSON")?;
    if !status.is_success() {
        let detail = body["detail"]
            .as_str()
            .or(body["message"].as_str())
            .unwrap_or("error");
        bail!("{status}: {detail}");
    }
    Ok(body)
}

/// A field of a JSON answer as text (`-` when absent).
pub fn field(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}
