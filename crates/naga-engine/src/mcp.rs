//! MCP: the configured MCP servers (stdio children or streamable HTTP),
//! reached through the official Rust SDK, and the executor of MCP tasks.
//!
//! Servers are configured in the common `mcpServers` JSON format. Each is
//! started at boot (in the background) or on first use; one whose process
//! died or whose connection closed is started again on the next call.

use crate::{
    agents::{CallContext, CallOutcome},
    executor::Executor,
};
use futures::future::BoxFuture;
use naga_core::wire::{raw_json, CallPayload, RawJson};
use rmcp::{
    model::{CallToolRequestParams, CallToolResult, ClientConfig, Tool},
    service::{Peer, RunningService},
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
        TokioChildProcess,
    },
    RoleClient, ServiceExt,
};
use serde::Deserialize;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};
use tokio::io::AsyncBufReadExt;

/// Fields of an MCP call that are not tool arguments.
pub const CONTROL_FIELDS: [&str; 4] = ["agentType", "service_name", "tool_name", "timeout_ms"];

/// One entry of `mcpServers`.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSpec {
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub url: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Deserialize)]
struct ServersFile {
    #[serde(rename = "mcpServers")]
    mcp_servers: BTreeMap<String, ServerSpec>,
}

/// Reads an `mcpServers` file. A missing file means no servers.
pub fn load_config(path: &Path) -> Result<BTreeMap<String, ServerSpec>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read MCP config `{}`: {e}", path.display())),
    };
    let file: ServersFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "MCP config `{}` is not an mcpServers file: {e}",
            path.display()
        )
    })?;
    for (name, spec) in &file.mcp_servers {
        if spec.command.is_some() == spec.url.is_some() {
            return Err(format!(
                "MCP server `{name}` in `{}` needs exactly one of `command` (stdio) or `url` (streamable HTTP)",
                path.display()
            ));
        }
    }
    Ok(file
        .mcp_servers
        .into_iter()
        .filter(|(_, s)| !s.disabled)
        .collect())
}

struct Connection {
    service: RunningService<RoleClient, ClientConfig>,
    tools: Arc<Vec<Tool>>,
    pid: Option<u32>,
}

impl Connection {
    fn alive(&self) -> bool {
        !self.service.is_closed() && !self.service.is_transport_closed()
    }
}

struct Server {
    name: String,
    spec: ServerSpec,
    conn: tokio::sync::Mutex<Option<Connection>>,
    last_error: std::sync::Mutex<Option<String>>,
    starts: std::sync::atomic::AtomicU32,
}

/// The configured MCP servers.
pub struct McpHub {
    servers: BTreeMap<String, Arc<Server>>,
    call_timeout: Duration,
    connect_timeout: Duration,
}

impl McpHub {
    pub fn new(specs: BTreeMap<String, ServerSpec>, call_timeout: Duration) -> Self {
        let servers = specs
            .into_iter()
            .map(|(name, spec)| {
                let server = Server {
                    name: name.clone(),
                    spec,
                    conn: tokio::sync::Mutex::new(None),
                    last_error: std::sync::Mutex::new(None),
                    starts: Default::default(),
                };
                (name, Arc::new(server))
            })
            .collect();
        Self {
            servers,
            call_timeout,
            connect_timeout: Duration::from_secs(30),
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.servers.keys().map(String::as_str).collect()
    }

    /// Starts every server in the background.
    pub fn start_all(self: &Arc<Self>) {
        for server in self.servers.values() {
            let (hub, server) = (self.clone(), server.clone());
            tokio::spawn(async move {
                if let Err(e) = hub.peer(&server).await {
                    tracing::warn!(service = %server.name, error = %e, "MCP server did not start");
                }
            });
        }
    }

    /// Stops every server (children get the MCP stdio shutdown sequence).
    pub async fn shutdown(&self) {
        for server in self.servers.values() {
            if let Some(c) = server.conn.lock().await.take() {
                let _ = c.service.cancel().await;
            }
        }
    }

    /// A live connection's peer and tools, connecting (again) when needed.
    async fn peer(&self, server: &Server) -> Result<(Peer<RoleClient>, Arc<Vec<Tool>>), String> {
        let mut conn = server.conn.lock().await;
        if let Some(c) = conn.as_ref().filter(|c| c.alive()) {
            return Ok((c.service.peer().clone(), c.tools.clone()));
        }
        let restart = server
            .starts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            > 0;
        tracing::info!(service = %server.name, restart, "starting MCP server");
        match tokio::time::timeout(self.connect_timeout, connect(server)).await {
            Ok(Ok(c)) => {
                tracing::info!(service = %server.name, tools = c.tools.len(), pid = c.pid, "MCP server ready");
                *server.last_error.lock().unwrap() = None;
                let out = (c.service.peer().clone(), c.tools.clone());
                *conn = Some(c);
                Ok(out)
            }
            Ok(Err(e)) => Err(server.failed(e)),
            Err(_) => Err(server.failed(format!(
                "did not answer the MCP handshake within {} s",
                self.connect_timeout.as_secs()
            ))),
        }
    }

    /// Calls `tool` of `service`. Every failure is a failed result whose
    /// error says what went wrong and what exists.
    pub async fn call(&self, service: &str, tool: &str, args: Map<String, Value>) -> CallOutcome {
        let Some(server) = self.servers.get(service) else {
            return CallOutcome::failed(format!(
                "unknown MCP service `{service}`: configured services are [{}]",
                self.names().join(", ")
            ));
        };
        let (peer, tools) = match self.peer(server).await {
            Ok(p) => p,
            Err(e) => {
                return CallOutcome::failed(format!(
                    "MCP service `{service}` is not available: {e}"
                ))
            }
        };
        if !tools.iter().any(|t| t.name == tool) {
            let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
            return CallOutcome::failed(format!(
                "MCP service `{service}` has no tool `{tool}`; its tools are [{}]",
                names.join(", ")
            ));
        }
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        match tokio::time::timeout(self.call_timeout, peer.call_tool(params)).await {
            Err(_) => CallOutcome::failed(format!(
                "MCP tool `{service}.{tool}` did not answer within {} ms",
                self.call_timeout.as_millis()
            )),
            Ok(Err(e)) => CallOutcome::failed(format!("MCP tool `{service}.{tool}` failed: {e}")),
            Ok(Ok(result)) => outcome_of(result),
        }
    }

    /// Every tool of every server; servers that cannot be reached are
    /// reported with their reason.
    pub async fn tools(&self) -> (Vec<Value>, Vec<Value>) {
        let lists = futures::future::join_all(
            self.servers
                .values()
                .map(|s| async move { (s.name.clone(), self.peer(s).await) }),
        )
        .await;
        let (mut tools, mut errors) = (Vec::new(), Vec::new());
        for (service, result) in lists {
            match result {
                Ok((_, list)) => tools.extend(list.iter().map(|t| {
                    json!({"service": service, "name": t.name, "description": t.description,
                           "input_schema": t.input_schema})
                })),
                Err(e) => errors.push(json!({"service": service, "error": e})),
            }
        }
        (tools, errors)
    }

    /// What `/status` shows of each server.
    pub async fn status(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for s in self.servers.values() {
            let conn = s.conn.lock().await;
            let live = conn.as_ref().filter(|c| c.alive());
            out.push(json!({
                "service": s.name,
                "transport": if s.spec.url.is_some() { "streamable_http" } else { "stdio" },
                "connected": live.is_some(),
                "pid": live.and_then(|c| c.pid),
                "tools": live.map(|c| c.tools.len()),
                "starts": s.starts.load(std::sync::atomic::Ordering::Relaxed),
                "last_error": *s.last_error.lock().unwrap(),
            }));
        }
        out
    }
}

impl Server {
    fn failed(&self, error: String) -> String {
        tracing::warn!(service = %self.name, %error, "MCP server unavailable");
        *self.last_error.lock().unwrap() = Some(error.clone());
        error
    }
}

async fn connect(server: &Server) -> Result<Connection, String> {
    let spec = &server.spec;
    let info = ClientConfig::default();
    let (service, pid) = if let Some(url) = &spec.url {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(url.clone()),
        );
        let service = info
            .serve(transport)
            .await
            .map_err(|e| format!("MCP handshake with {url} failed: {e}"))?;
        (service, None)
    } else {
        let command = spec.command.as_deref().unwrap_or_default();
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(&spec.args).envs(&spec.env);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        let (child, stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start `{command}`: {e}"))?;
        let pid = child.id();
        if let Some(stderr) = stderr {
            let name = server.name.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(service = %name, "{line}");
                }
            });
        }
        let service = info
            .serve(child)
            .await
            .map_err(|e| format!("MCP handshake with `{command}` failed: {e}"))?;
        (service, pid)
    };
    let tools = service
        .list_all_tools()
        .await
        .map_err(|e| format!("cannot list tools: {e}"))?;
    Ok(Connection {
        service,
        tools: Arc::new(tools),
        pid,
    })
}

/// A tool's result as naga reports it: structured content when there is
/// some, else the text (one string), else the content blocks as JSON.
/// `isError` makes it a failed result carrying the tool's text.
fn outcome_of(result: CallToolResult) -> CallOutcome {
    let texts: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    let text = texts.join("\n");
    if result.is_error == Some(true) {
        return CallOutcome::failed(if text.is_empty() {
            "the tool reported an error".into()
        } else {
            text
        });
    }
    if let Some(structured) = result.structured_content {
        return CallOutcome::ok(structured);
    }
    if texts.len() == result.content.len() {
        CallOutcome::ok(text)
    } else {
        CallOutcome::ok(serde_json::to_value(&result.content).unwrap_or_default())
    }
}

/// A tool call's arguments: every field but naga's control fields.
pub fn arguments(call: &CallPayload) -> Map<String, Value> {
    call.iter()
        .filter(|(k, _)| !CONTROL_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn names(call: &CallPayload) -> (&str, &str) {
    let field = |k| call.get(k).and_then(Value::as_str).unwrap_or("");
    (field("service_name"), field("tool_name"))
}

/// MCP calls: `results[i] = {"tool", "service", "success", "result" | "error"}`,
/// and the upstream `result: {"success", "results", "message"}`.
pub struct McpExecutor {
    pub hub: Arc<McpHub>,
}

impl Executor for McpExecutor {
    fn run<'a>(
        &'a self,
        call: &'a CallPayload,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, CallOutcome> {
        Box::pin(async move {
            let (service, tool) = names(call);
            self.hub.call(service, tool, arguments(call)).await
        })
    }

    fn command(&self, call: &CallPayload) -> String {
        let (service, tool) = names(call);
        format!("{service}.{tool} {}", Value::Object(arguments(call)))
    }

    fn agent(&self, call: &CallPayload) -> std::borrow::Cow<'static, str> {
        let (service, _) = names(call);
        match self.hub.servers.contains_key(service) {
            true => format!("mcp:{service}").into(),
            false => "mcp:unknown".into(),
        }
    }

    fn result_entry(&self, _index: usize, call: &CallPayload, outcome: &CallOutcome) -> RawJson {
        let (service, tool) = names(call);
        let (error, result) = match &outcome.error {
            Some(e) => (Some(e.as_str()), None),
            None => (None, Some(outcome.result.as_ref().unwrap_or(&Value::Null))),
        };
        raw_json(&ToolEntry {
            tool,
            service,
            success: outcome.success,
            error,
            result,
        })
    }

    fn envelope_result(
        &self,
        success: bool,
        results: &[RawJson],
        message: &str,
    ) -> Option<RawJson> {
        Some(raw_json(&EnvelopeResult {
            success,
            results,
            message,
        }))
    }
}

/// A tool call's entry in a callback's `results`: `result` on success,
/// `error` on failure.
#[derive(Serialize)]
struct ToolEntry<'a> {
    tool: &'a str,
    service: &'a str,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
}

/// The callback's top-level `result` upstream MCP receivers read.
#[derive(Serialize)]
struct EnvelopeResult<'a> {
    success: bool,
    results: &'a [RawJson],
    message: &'a str,
}

/// A canonical text of JSON (object keys sorted at every level), so that
/// equal batches have equal fingerprints whatever their key order.
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let ordered: BTreeMap<&String, Value> =
                    m.iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// The fingerprint of a batch's calls: equal for the same calls with the
/// same arguments, in the same order.
pub fn fingerprint(calls: &[CallPayload]) -> String {
    use sha2::{Digest, Sha256};
    let list = Value::Array(calls.iter().map(|c| Value::Object(c.clone())).collect());
    let digest = Sha256::digest(canonical(&list).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(v: Value) -> CallPayload {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn fingerprints_compare_calls_and_arguments_not_just_tool_names() {
        let a = call(
            json!({"service_name": "s", "tool_name": "echo", "message": "hi", "n": {"x": 1, "y": 2}}),
        );
        let a2 = call(
            json!({"n": {"y": 2, "x": 1}, "message": "hi", "tool_name": "echo", "service_name": "s"}),
        );
        let b = call(
            json!({"service_name": "s", "tool_name": "echo", "message": "ho", "n": {"x": 1, "y": 2}}),
        );
        let one = |c: &CallPayload| fingerprint(std::slice::from_ref(c));
        assert_eq!(one(&a), one(&a2));
        assert_ne!(one(&a), one(&b));
        assert_ne!(fingerprint(&[a.clone(), b.clone()]), fingerprint(&[b, a]));
    }

    #[test]
    fn arguments_are_every_field_but_the_control_fields() {
        let c = call(
            json!({"agentType": "mcp", "service_name": "s", "tool_name": "t", "city": "北京", "timeout_ms": 5}),
        );
        assert_eq!(Value::Object(arguments(&c)), json!({"city": "北京"}));
    }
}
