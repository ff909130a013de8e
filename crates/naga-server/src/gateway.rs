//! naga as an MCP server (`/mcp` on the agent server, streamable HTTP, on
//! rmcp's server side): naga's agents and every tool of the configured MCP
//! servers are its tools. A call is a naga task, committed before the
//! answer: to a 2026-07-28 request that declares the Tasks extension
//! (`io.modelcontextprotocol/tasks`) the answer is the task (`resultType:
//! "task"`), which `tasks/get` reads back from the store (so it survives a
//! restart and any node of a PostgreSQL deployment answers it) and
//! `tasks/cancel` stops; 2025-11-25's `params.task` gets that version's
//! task (`gateway_legacy`); any other call's answer waits for the task's end
//! and is the tool's result.
//!
//! A call's session: the tool's `session_id` argument (naga's agents), else
//! the request's `_meta["io.naga/session_id"]`, else the MCP session (older
//! protocol versions), else the call's own task (nothing to wait behind).

use crate::gateway_sessions::BoundedSessions;
use axum::http::request::Parts;
use naga_core::{
    time::iso,
    wire::{AgentScheduleRequest, CallPayload, McpScheduleRequest, RawCall, TaskKind},
    TaskStatus,
};
use naga_engine::{agents::CallOutcome, Engine, EngineError};
use rmcp::{
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
        CreateTaskResult, DetailedTask, GetTaskParams, GetTaskResult, Implementation, JsonObject,
        ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
        Task, TaskPayload, TaskStatus as McpTaskStatus, Tool, UpdateTaskParams,
    },
    service::RequestContext,
    transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService},
    ErrorData as McpError, RoleServer, ServerHandler,
};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The tool name of an MCP server's tool: `<service>.<tool>`.
const SEPARATOR: char = '.';

/// How often a client is asked to poll a task.
const POLL_INTERVAL_MS: u64 = 500;

/// The `_meta` key that names a call's session.
pub const SESSION_META: &str = "io.naga/session_id";

#[derive(Clone)]
pub struct Gateway {
    engine: Engine,
}

impl Gateway {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// naga's agents as tools: an instruction, and the agent's parameters.
    fn agent_tools(&self) -> Vec<Tool> {
        self.engine
            .agents()
            .iter()
            .filter(|a| a.available().is_ok())
            .map(|a| {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "instruction": {"type": "string", "description": "What to do"},
                        "parameters": {"type": "object", "description": "The agent's parameters"},
                        "session_id": {"type": "string",
                            "description": "naga session: its calls run one at a time, in order"},
                    },
                    "required": ["instruction"],
                    "additionalProperties": false,
                });
                Tool::new(a.name(), a.description(), object(schema))
            })
            .collect()
    }

    /// The call a tool call becomes, and the kind of task that runs it.
    /// The tool called is what runs: its arguments are checked against its
    /// `inputSchema` (-32602 when they do not fit), and none of them can
    /// name another agent, service or tool.
    pub(crate) async fn call_of(
        &self,
        name: &str,
        mut args: JsonObject,
    ) -> Result<(TaskKind, CallPayload, Option<String>), McpError> {
        let agents = self.engine.agents();
        if let Some(agent) = agents.iter().find(|a| a.name() == name) {
            if let Err(why) = agent.available() {
                return Err(McpError::invalid_params(
                    format!("tool `{name}` is not available on this server: {why}"),
                    None,
                ));
            }
            check_agent_arguments(name, &args)?;
            let session = match args.remove("session_id") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            };
            let mut call = CallPayload::new();
            call.extend(args);
            call.insert("agentType".into(), json!("agent"));
            call.insert("tool_name".into(), json!(agent.name()));
            call.insert("service_name".into(), json!("agent_server"));
            return Ok((TaskKind::Agent, call, session));
        }
        let unknown = || {
            McpError::invalid_params(
                format!("no tool `{name}`: tools/list names them (agents, and `service.tool`)"),
                None,
            )
        };
        let (service, tool) = name.split_once(SEPARATOR).ok_or_else(unknown)?;
        let (tools, _) = self.engine.mcp().tools().await;
        let listed = tools
            .iter()
            .find(|t| t["service"] == service && t["name"] == tool)
            .ok_or_else(unknown)?;
        check_tool_arguments(name, &listed["input_schema"], &args)?;
        let mut call = CallPayload::new();
        call.extend(args);
        call.insert("agentType".into(), json!("mcp"));
        call.insert("service_name".into(), json!(service));
        call.insert("tool_name".into(), json!(tool));
        Ok((TaskKind::Mcp, call, None))
    }

    /// Commits the call as a task of its own; its id.
    pub(crate) async fn schedule(
        &self,
        kind: TaskKind,
        call: &CallPayload,
        session_id: Option<String>,
        name: &str,
    ) -> Result<String, McpError> {
        let calls = Some(vec![RawCall::from_payload(call)]);
        let query = Some(format!("MCP tools/call {name}"));
        let scheduled = match kind {
            TaskKind::Agent => {
                self.engine
                    .schedule_agent(AgentScheduleRequest {
                        query,
                        agent_calls: calls,
                        session_id,
                        analysis_session_id: None,
                        request_id: None,
                        callback_url: None,
                        multitask_strategy: None,
                    })
                    .await
            }
            TaskKind::Mcp => {
                self.engine
                    .schedule_mcp(McpScheduleRequest {
                        query,
                        tool_calls: calls,
                        session_id,
                        analysis_session_id: None,
                        request_id: None,
                        callback_url: None,
                        multitask_strategy: None,
                    })
                    .await
            }
        }
        .map_err(refused)?;
        scheduled
            .task_id
            .ok_or_else(|| McpError::internal_error("the call was not scheduled", None))
    }

    /// The task as MCP shows it, with its result once it ended.
    pub(crate) async fn detailed(&self, task_id: &str) -> Result<DetailedTask, McpError> {
        let reads = self.engine.reads();
        let task = reads
            .task(task_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| McpError::resource_not_found(format!("no task `{task_id}`"), None))?;
        let mut base = Task::new(
            task.id.clone(),
            McpTaskStatus::Working,
            iso(task.accepted_at),
            iso(task.updated_at()),
        )
        .with_poll_interval_ms(POLL_INTERVAL_MS);
        base.ttl_ms = None;
        let payload = match task.status {
            TaskStatus::Queued | TaskStatus::Running => {
                base = base.with_status_message(task.status.to_string());
                TaskPayload::Working
            }
            TaskStatus::Cancelled => TaskPayload::Cancelled,
            status => {
                let calls = reads.calls(task_id).await.map_err(internal)?;
                let outcome = calls
                    .first()
                    .and_then(|c| c.result.as_deref())
                    .and_then(|r| serde_json::from_str::<CallOutcome>(r).ok());
                match outcome {
                    Some(outcome) => TaskPayload::Completed {
                        result: object(
                            serde_json::to_value(tool_result(&outcome)).unwrap_or_default(),
                        ),
                    },
                    None => TaskPayload::Failed {
                        error: object(json!({
                            "code": -32603,
                            "message": task.error.clone().unwrap_or_else(|| format!("the task {status}")),
                        })),
                    },
                }
            }
        };
        Ok(DetailedTask::new(base, payload))
    }
}

/// What a call came to, as an MCP tool result.
/// The arguments of one of naga's agents, against its `inputSchema`
/// ([`Gateway::agent_tools`]): an object with a string `instruction`, an
/// object `parameters` and a string `session_id`, nothing else.
fn check_agent_arguments(name: &str, args: &JsonObject) -> Result<(), McpError> {
    let bad = |why: String| McpError::invalid_params(format!("tool `{name}`: {why}"), None);
    if !matches!(args.get("instruction"), Some(Value::String(_))) {
        return Err(bad("`instruction` (a string) is required".into()));
    }
    for (key, value) in args {
        let fits = match key.as_str() {
            "instruction" | "session_id" => value.is_string(),
            "parameters" => value.is_object(),
            _ => {
                return Err(bad(format!(
                    "unknown argument `{key}` (the tool's inputSchema allows instruction, \
                 parameters and session_id)"
                )))
            }
        };
        if !fits {
            let want = if key == "parameters" {
                "an object"
            } else {
                "a string"
            };
            return Err(bad(format!("`{key}` must be {want}")));
        }
    }
    Ok(())
}

/// The arguments of an MCP server's tool: its schema's `required` ones are
/// there (the server checks the rest), and none is a field naga routes a
/// call by (they would name another service or tool).
fn check_tool_arguments(name: &str, schema: &Value, args: &JsonObject) -> Result<(), McpError> {
    let bad = |why: String| McpError::invalid_params(format!("tool `{name}`: {why}"), None);
    if let Some(key) = (naga_engine::mcp::CONTROL_FIELDS.iter()).find(|k| args.contains_key(**k)) {
        return Err(bad(format!("`{key}` is not an argument of this tool")));
    }
    let required = schema["required"].as_array().into_iter().flatten();
    match required
        .filter_map(Value::as_str)
        .find(|k| !args.contains_key(*k))
    {
        Some(missing) => Err(bad(format!("the required argument `{missing}` is missing"))),
        None => Ok(()),
    }
}

fn tool_result(outcome: &CallOutcome) -> CallToolResult {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if outcome.success {
        let value = outcome.result.clone().unwrap_or(Value::Null);
        let mut result = CallToolResult::success(vec![ContentBlock::text(text(&value))]);
        if value.is_object() {
            result.structured_content = Some(value);
        }
        result
    } else {
        let error = outcome.error.clone().unwrap_or_else(|| "failed".into());
        CallToolResult::error(vec![ContentBlock::text(error)])
    }
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn internal(e: impl std::fmt::Display) -> McpError {
    McpError::internal_error(e.to_string(), None)
}

/// A request naga refuses: what was wrong, as the HTTP API says it.
fn refused(e: EngineError) -> McpError {
    match e {
        EngineError::Invalid(detail) => McpError::invalid_params(detail, None),
        other => McpError::internal_error(other.to_string(), None),
    }
}

/// The session a call names (see the module's note).
fn session_of(explicit: Option<String>, ctx: &RequestContext<RoleServer>) -> Option<String> {
    explicit
        .or_else(|| {
            ctx.meta
                .get(SESSION_META)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .or_else(|| {
            ctx.extensions
                .get::<Parts>()
                .and_then(|p| p.headers.get("mcp-session-id"))
                .and_then(|v| v.to_str().ok())
                .map(|s| format!("mcp-{s}"))
        })
}

/// Whether a `tools/call` is answered with its task: only on 2026-07-28,
/// whose requests each declare the Tasks extension in their own `_meta`. A
/// session that negotiated an older version at `initialize` asks for a task
/// with `params.task` (2025-11-25's experimental tasks, answered in front of
/// rmcp), or not at all; its capabilities declared at `initialize` do not
/// change what a plain `tools/call` answers: the tool's result.
fn asks_for_a_task(context: &RequestContext<RoleServer>) -> bool {
    let meta = &context.meta;
    meta.protocol_version() == Some(ProtocolVersion::V_2026_07_28)
        && meta
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks())
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("naga", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "naga: every tool call is a durable task (committed before the answer, resumed \
             after a crash). On 2026-07-28, declare the io.modelcontextprotocol/tasks extension \
             in a request's _meta to get its task at once and poll it with tasks/get; on \
             2025-11-25, send params.task.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = self.agent_tools();
        let (servers, _) = self.engine.mcp().tools().await;
        for t in servers {
            let (Some(service), Some(name)) = (t["service"].as_str(), t["name"].as_str()) else {
                continue;
            };
            let description = t["description"].as_str().unwrap_or_default().to_owned();
            tools.push(Tool::new(
                format!("{service}{SEPARATOR}{name}"),
                description,
                Arc::new(object(t["input_schema"].clone())),
            ));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let (kind, call, session) = self
            .call_of(&name, request.arguments.unwrap_or_default())
            .await?;
        let session = session_of(session, &context);
        let task_id = self.schedule(kind, &call, session.clone(), &name).await?;
        tracing::info!(task_id = %task_id, session_id = ?session, tool = %name,
            "MCP tools/call accepted as a task");
        let as_task = asks_for_a_task(&context);
        if as_task {
            let task = self.detailed(&task_id).await?.task;
            return Ok(CallToolResponse::Task(CreateTaskResult::new(task)));
        }
        self.engine.task_ended(&task_id).await.map_err(internal)?;
        match self.detailed(&task_id).await?.payload {
            TaskPayload::Completed { result } => serde_json::from_value(Value::Object(result))
                .map(CallToolResponse::Complete)
                .map_err(internal),
            TaskPayload::Cancelled => Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                ContentBlock::text(format!("task {task_id} was cancelled")),
            ]))),
            TaskPayload::Failed { error } => {
                Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                    ContentBlock::text(error["message"].as_str().unwrap_or("failed").to_owned()),
                ])))
            }
            _ => Err(McpError::internal_error("the task did not end", None)),
        }
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        Ok(GetTaskResult::new(self.detailed(&request.task_id).await?))
    }

    async fn update_task(
        &self,
        _request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        // naga's tasks never ask for input: nothing is outstanding.
        Ok(())
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        match self.engine.scheduler().cancel(&request.task_id).await {
            Ok(status) => {
                tracing::info!(task_id = %request.task_id, %status, "MCP tasks/cancel");
                Ok(())
            }
            Err(EngineError::NotFound(m)) => Err(McpError::resource_not_found(m, None)),
            // Already ended: cancelling is a no-op (the spec's cooperative cancel).
            Err(EngineError::Conflict(_)) => Ok(()),
            Err(e) => Err(internal(e)),
        }
    }
}

/// Where `/mcp`'s protected-resource metadata is (RFC 9728 §3.1: the
/// resource's path after the well-known one), and the root's.
pub const MCP_RESOURCE_METADATA: &str = "/.well-known/oauth-protected-resource/mcp";
pub const RESOURCE_METADATA: &str = "/.well-known/oauth-protected-resource";

/// `GET /.well-known/oauth-protected-resource/mcp`: the RFC 9728 metadata of
/// `/mcp`. naga takes a static bearer token (`[auth] token`) that no
/// authorization server issues: the metadata names none, only the header
/// that carries the token, so a client that starts with OAuth learns there
/// is no flow to run and that an `Authorization: Bearer` header is what it
/// needs.
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource/mcp", tag = "mcp",
    security(()),
    responses((status = 200, description = "RFC 9728 protected-resource metadata", body = Object)))]
pub async fn mcp_resource_metadata(headers: axum::http::HeaderMap) -> axum::Json<Value> {
    let origin = crate::extract::origin(&headers);
    axum::Json(json!({
        "resource": format!("{origin}/mcp"),
        "resource_name": "naga",
        "bearer_methods_supported": ["header"],
        "resource_documentation": format!("{origin}/openapi.json"),
        "naga_token": "a static bearer token, naga's [auth] token, issued by no \
                       authorization server: send `Authorization: Bearer <token>`",
    }))
}

/// `GET /.well-known/oauth-protected-resource`: the same (clients that try
/// the root after the resource's path find it there too).
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource", tag = "mcp", security(()),
    responses((status = 200, description = "RFC 9728 protected-resource metadata", body = Object)))]
pub async fn resource_metadata(headers: axum::http::HeaderMap) -> axum::Json<Value> {
    mcp_resource_metadata(headers).await
}

/// The streamable-HTTP service at `/mcp`.
pub type McpService = StreamableHttpService<Gateway, BoundedSessions>;

pub fn service(engine: &Engine) -> McpService {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(engine.stopping().child_token());
    // With a token, the guard lets in only who holds it, on any address;
    // without one naga listens on loopback only, which rmcp's own Host
    // check (against DNS rebinding) keeps to.
    if engine.config().auth.token.is_some() {
        config = config.disable_allowed_hosts();
    }
    let mcp = &engine.config().mcp;
    let sessions = BoundedSessions::new(
        mcp.max_sessions,
        std::time::Duration::from_millis(mcp.session_idle_ms.max(1)),
    );
    let engine = engine.clone();
    StreamableHttpService::new(
        move || Ok(Gateway::new(engine.clone())),
        Arc::new(sessions),
        config,
    )
}
