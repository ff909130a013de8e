//! Toolkits (file_edit), the `/file/*` shortcuts and computer control.

use crate::{
    error::ApiResult,
    extract::{Json, Path, Query},
    ApiError,
};
use axum::extract::State;
use naga_engine::{
    agents::{
        file_edit::{ToolError, TOOLS},
        Agent, CallContext, CallOutcome, FileEditToolkit,
    },
    Engine,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// A toolkit tool and the arguments it takes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolSpec {
    pub toolkit: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema of its arguments.
    pub input_schema: Value,
}

fn tool_specs() -> Vec<ToolSpec> {
    TOOLS
        .iter()
        .map(|t| ToolSpec {
            toolkit: FileEditToolkit::NAME,
            name: t.name,
            description: t.description,
            input_schema: (t.input_schema)(),
        })
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub available: bool,
    /// Why it is not available.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolList {
    pub success: bool,
    pub count: usize,
    pub tools: Vec<ToolSpec>,
    pub agents: Vec<AgentInfo>,
}

/// `GET /tools`: every toolkit tool, and the agents with their availability.
#[utoipa::path(get, path = "/tools", tag = "tools",
    responses((status = 200, description = "Tools and agents", body = ToolList)))]
pub async fn tools(State(engine): State<Engine>) -> axum::Json<ToolList> {
    let agents = engine
        .agents()
        .iter()
        .map(|a| {
            let available = a.available();
            AgentInfo {
                name: a.name(),
                description: a.description(),
                available: available.is_ok(),
                reason: available.err(),
            }
        })
        .collect();
    let tools = tool_specs();
    axum::Json(ToolList {
        success: true,
        count: tools.len(),
        tools,
        agents,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolkitSummary {
    pub name: &'static str,
    pub description: &'static str,
    pub tools: Vec<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolkitList {
    pub success: bool,
    /// Their names (upstream's).
    pub toolkits: Vec<&'static str>,
    pub count: usize,
    pub toolkit_details: Vec<ToolkitSummary>,
}

/// `GET /toolkits`: their names (upstream's), and each with its tools.
#[utoipa::path(get, path = "/toolkits", tag = "tools",
    responses((status = 200, description = "The toolkits", body = ToolkitList)))]
pub async fn toolkits() -> axum::Json<ToolkitList> {
    axum::Json(ToolkitList {
        success: true,
        toolkits: vec![FileEditToolkit::NAME],
        count: 1,
        toolkit_details: vec![ToolkitSummary {
            name: FileEditToolkit::NAME,
            description: FileEditToolkit::DESCRIPTION,
            tools: TOOLS.iter().map(|t| t.name).collect(),
        }],
    })
}

/// A toolkit as upstream describes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolkitInfo {
    pub name: String,
    /// `builtin`.
    pub mode: &'static str,
    pub config: Map<String, Value>,
    pub description: &'static str,
    pub tools: Vec<ToolSpec>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolkitDetail {
    pub success: bool,
    pub toolkit: ToolkitInfo,
    pub name: String,
    pub description: &'static str,
    pub tools: Vec<ToolSpec>,
}

/// `GET /toolkits/{name}`.
#[utoipa::path(get, path = "/toolkits/{name}", tag = "tools", params(("name" = String, Path)),
    responses((status = 200, description = "The toolkit and its tools", body = ToolkitDetail)))]
pub async fn toolkit(Path(name): Path<String>) -> ApiResult<axum::Json<ToolkitDetail>> {
    known_toolkit(&name)?;
    Ok(axum::Json(ToolkitDetail {
        success: true,
        toolkit: ToolkitInfo {
            name: name.clone(),
            mode: "builtin",
            config: Map::new(),
            description: FileEditToolkit::DESCRIPTION,
            tools: tool_specs(),
        },
        name,
        description: FileEditToolkit::DESCRIPTION,
        tools: tool_specs(),
    }))
}

fn known_toolkit(name: &str) -> ApiResult<()> {
    if name == FileEditToolkit::NAME {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "no toolkit `{name}`: this server has {}",
            FileEditToolkit::NAME
        )))
    }
}

impl From<ToolError> for ApiError {
    fn from(e: ToolError) -> Self {
        let code = match &e {
            ToolError::UnknownTool(_) => return ApiError::not_found(e.to_string()),
            ToolError::NotFound(_) => return ApiError::not_found(e.to_string()),
            ToolError::Invalid(_) => "invalid_arguments",
            ToolError::Refused(_) => "path_refused",
            ToolError::Io(_) => return ApiError::Internal(anyhow::anyhow!(e)),
        };
        ApiError::bad_request(code, e.to_string())
    }
}

/// A tool's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolResult {
    pub success: bool,
    pub toolkit: &'static str,
    pub tool: &'static str,
    pub result: Value,
    /// `/file/read`'s: the file's text (upstream's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
}

/// A tool's arguments.
type Args = Map<String, Value>;

async fn run_tool(engine: &Engine, tool: &'static str, args: &Args) -> ApiResult<ToolResult> {
    let result = engine.file_edit().call(tool, args).await?;
    tracing::info!(
        toolkit = FileEditToolkit::NAME,
        tool,
        "tool called over HTTP"
    );
    Ok(ToolResult {
        success: true,
        toolkit: FileEditToolkit::NAME,
        tool,
        result,
        content: None,
    })
}

/// `POST /tools/{toolkit}/{tool}` with the tool's arguments as the body.
#[utoipa::path(post, path = "/tools/{toolkit}/{tool}", tag = "tools",
    params(("toolkit" = String, Path), ("tool" = String, Path)), request_body = Object,
    responses((status = 200, description = "The tool's result", body = ToolResult)))]
pub async fn call_tool(
    State(engine): State<Engine>,
    Path((toolkit, tool)): Path<(String, String)>,
    Json(args): Json<Args>,
) -> ApiResult<axum::Json<ToolResult>> {
    known_toolkit(&toolkit)?;
    let tool = TOOLS
        .iter()
        .find(|t| t.name == tool)
        .ok_or_else(|| ApiError::from(ToolError::UnknownTool(tool)))?;
    Ok(axum::Json(run_tool(&engine, tool.name, &args).await?))
}

/// `POST /file/edit`: `edit_file` (SEARCH/REPLACE blocks).
#[utoipa::path(post, path = "/file/edit", tag = "tools", request_body = Object,
    responses((status = 200, description = "Edited", body = ToolResult)))]
pub async fn file_edit(
    State(engine): State<Engine>,
    Json(args): Json<Args>,
) -> ApiResult<axum::Json<ToolResult>> {
    Ok(axum::Json(run_tool(&engine, "edit_file", &args).await?))
}

/// `POST /file/write`: `write_file`.
#[utoipa::path(post, path = "/file/write", tag = "tools", request_body = Object,
    responses((status = 200, description = "Written", body = ToolResult)))]
pub async fn file_write(
    State(engine): State<Engine>,
    Json(args): Json<Args>,
) -> ApiResult<axum::Json<ToolResult>> {
    Ok(axum::Json(run_tool(&engine, "write_file", &args).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    path: Option<String>,
    /// `/file/list`'s folder, as upstream names it.
    directory: Option<String>,
}

impl PathQuery {
    fn args(self) -> Args {
        let mut m = Map::new();
        if let Some(p) = self.path.or(self.directory) {
            m.insert("path".into(), Value::String(p));
        }
        m
    }
}

/// `GET /file/read?path=`: with the file's text as `content` (upstream's).
#[utoipa::path(get, path = "/file/read", tag = "tools", params(PathQuery),
    responses((status = 200, description = "The file", body = ToolResult)))]
pub async fn file_read(
    State(engine): State<Engine>,
    Query(q): Query<PathQuery>,
) -> ApiResult<axum::Json<ToolResult>> {
    let mut answer = run_tool(&engine, "read_file", &q.args()).await?;
    answer.content = Some(answer.result["content"].clone());
    Ok(axum::Json(answer))
}

/// `GET /file/list?path=`: `list_files`.
#[utoipa::path(get, path = "/file/list", tag = "tools", params(PathQuery),
    responses((status = 200, description = "The folder's entries", body = ToolResult)))]
pub async fn file_list(
    State(engine): State<Engine>,
    Query(q): Query<PathQuery>,
) -> ApiResult<axum::Json<ToolResult>> {
    Ok(axum::Json(
        run_tool(&engine, "list_files", &q.args()).await?,
    ))
}

/// Upstream's `capabilities`: `enabled`, its parts, and what it can do.
#[derive(Debug, Serialize, ToSchema)]
pub struct Capabilities {
    pub enabled: bool,
    pub adapter: bool,
    pub executor: bool,
    pub planner: bool,
    pub analyzer: bool,
    pub capabilities: Vec<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CcAvailability {
    pub success: bool,
    pub ready: bool,
    pub capabilities: Capabilities,
    /// What it can do (naga's list).
    pub actions: Vec<&'static str>,
    /// Why it is not ready.
    pub reasons: Vec<String>,
    pub timestamp: String,
}

/// `GET /computer_control/availability`.
#[utoipa::path(get, path = "/computer_control/availability", tag = "computer_control",
    responses((status = 200, description = "Whether desktop control can run here", body = CcAvailability)))]
pub async fn cc_availability(State(engine): State<Engine>) -> axum::Json<CcAvailability> {
    let a = engine.computer_control().availability();
    // Upstream's analyzer reads screenshots: naga's vision planner does.
    let planner = engine
        .config()
        .agents
        .computer_control
        .vision_model
        .is_some();
    axum::Json(CcAvailability {
        success: true,
        ready: a.ready,
        capabilities: Capabilities {
            enabled: a.ready,
            adapter: a.ready,
            executor: a.ready,
            planner,
            analyzer: planner,
            capabilities: a.capabilities.clone(),
        },
        actions: a.capabilities,
        reasons: a.reasons,
        timestamp: chrono::Utc::now().to_rfc3339(),
    })
}

/// What one desktop action came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct CcOutcome {
    pub success: bool,
    /// What the agent returned, as a string (upstream's type), a failure
    /// as the JSON text upstream's agent returns.
    pub result: String,
    pub error: Option<String>,
    /// The instruction as sent.
    pub instruction: Value,
    /// `computer_control_unavailable` when it cannot run here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
}

/// `POST /computer_control/execute`: runs one action now, outside any batch.
/// As upstream: a call without an instruction (nor a structured `action`)
/// is 400; one that cannot run (no display) is 200 with `success: false`,
/// `result`, `error` and `instruction`.
#[utoipa::path(post, path = "/computer_control/execute", tag = "computer_control",
    request_body = Object,
    responses((status = 200, description = "What the action came to", body = CcOutcome)))]
pub async fn cc_execute(
    State(engine): State<Engine>,
    Json(call): Json<Args>,
) -> ApiResult<axum::Json<CcOutcome>> {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    };
    let instruction = call.get("instruction").cloned().unwrap_or(Value::Null);
    let action = call
        .get("action")
        .or_else(|| call.get("parameters").and_then(|p| p.get("action")));
    if !text(Some(&instruction)) && !text(action) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "`instruction` is empty: say what to do on the desktop (or send `parameters.action`)",
        ));
    }
    let cc = engine.computer_control();
    if let Err(why) = cc.available() {
        let outcome = CallOutcome::failed(format!("computer_control is not available: {why}"));
        return Ok(axum::Json(CcOutcome {
            success: false,
            result: outcome.upstream_text(),
            error: outcome.error,
            instruction,
            code: Some("computer_control_unavailable"),
        }));
    }
    let ctx = CallContext {
        task_id: "direct".into(),
        session_id: "direct".into(),
        index: 0,
        steps: None,
    };
    let outcome = cc.run(&call, &ctx).await;
    Ok(axum::Json(CcOutcome {
        success: outcome.success,
        result: outcome.upstream_text(),
        error: outcome.error,
        instruction,
        code: None,
    }))
}
