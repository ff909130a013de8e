//! Toolkits (file_edit), the `/file/*` shortcuts and computer control.

use crate::{
    error::ApiResult,
    extract::{Json, Path, Query},
    ApiError,
};
use axum::{extract::State, http::StatusCode};
use naga_engine::{
    agents::{
        file_edit::{ToolError, TOOLS},
        Agent, CallContext, FileEditToolkit,
    },
    Engine,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

fn tool_specs() -> Vec<Value> {
    TOOLS
        .iter()
        .map(|t| {
            json!({"toolkit": FileEditToolkit::NAME, "name": t.name,
                        "description": t.description, "input_schema": (t.input_schema)()})
        })
        .collect()
}

/// `GET /tools`: every toolkit tool, and the agents with their availability.
pub async fn tools(State(engine): State<Engine>) -> axum::Json<Value> {
    let agents: Vec<Value> = engine
        .agents()
        .iter()
        .map(|a| {
            let available = a.available();
            json!({"name": a.name(), "description": a.description(),
                   "available": available.is_ok(), "reason": available.err()})
        })
        .collect();
    let tools = tool_specs();
    axum::Json(json!({"success": true, "count": tools.len(), "tools": tools, "agents": agents}))
}

/// `GET /toolkits`: their names (upstream's), and each with its tools.
pub async fn toolkits() -> axum::Json<Value> {
    let names: Vec<&str> = TOOLS.iter().map(|t| t.name).collect();
    axum::Json(
        json!({"success": true, "toolkits": [FileEditToolkit::NAME], "count": 1,
        "toolkit_details": [{"name": FileEditToolkit::NAME,
        "description": FileEditToolkit::DESCRIPTION, "tools": names}]}),
    )
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

/// `GET /toolkits/{name}`.
pub async fn toolkit(Path(name): Path<String>) -> ApiResult<axum::Json<Value>> {
    known_toolkit(&name)?;
    let toolkit = json!({"name": name, "mode": "builtin", "config": {},
        "description": FileEditToolkit::DESCRIPTION, "tools": tool_specs()});
    Ok(axum::Json(
        json!({"success": true, "toolkit": toolkit, "name": name,
        "description": FileEditToolkit::DESCRIPTION, "tools": tool_specs()}),
    ))
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

async fn run_tool(
    engine: &Engine,
    tool: &str,
    args: &Map<String, Value>,
) -> ApiResult<axum::Json<Value>> {
    let result = engine.file_edit().call(tool, args).await?;
    tracing::info!(
        toolkit = FileEditToolkit::NAME,
        tool,
        "tool called over HTTP"
    );
    Ok(axum::Json(
        json!({"success": true, "toolkit": FileEditToolkit::NAME, "tool": tool, "result": result}),
    ))
}

/// `POST /tools/{toolkit}/{tool}` with the tool's arguments as the body.
pub async fn call_tool(
    State(engine): State<Engine>,
    Path((toolkit, tool)): Path<(String, String)>,
    Json(args): Json<Map<String, Value>>,
) -> ApiResult<axum::Json<Value>> {
    known_toolkit(&toolkit)?;
    run_tool(&engine, &tool, &args).await
}

pub async fn file_edit(
    State(engine): State<Engine>,
    Json(args): Json<Map<String, Value>>,
) -> ApiResult<axum::Json<Value>> {
    run_tool(&engine, "edit_file", &args).await
}

pub async fn file_write(
    State(engine): State<Engine>,
    Json(args): Json<Map<String, Value>>,
) -> ApiResult<axum::Json<Value>> {
    run_tool(&engine, "write_file", &args).await
}

#[derive(Deserialize)]
pub struct PathQuery {
    path: Option<String>,
    /// `/file/list`'s folder, as upstream names it.
    directory: Option<String>,
}

impl PathQuery {
    fn args(self) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(p) = self.path.or(self.directory) {
            m.insert("path".into(), Value::String(p));
        }
        m
    }
}

/// `GET /file/read?path=`: with the file's text as `content` (upstream's).
pub async fn file_read(
    State(engine): State<Engine>,
    Query(q): Query<PathQuery>,
) -> ApiResult<axum::Json<Value>> {
    let axum::Json(mut v) = run_tool(&engine, "read_file", &q.args()).await?;
    v["content"] = v["result"]["content"].clone();
    Ok(axum::Json(v))
}

pub async fn file_list(
    State(engine): State<Engine>,
    Query(q): Query<PathQuery>,
) -> ApiResult<axum::Json<Value>> {
    run_tool(&engine, "list_files", &q.args()).await
}

/// `GET /computer_control/availability`: `{"ready", "capabilities", "reasons"}`.
pub async fn cc_availability(State(engine): State<Engine>) -> axum::Json<Value> {
    let a = engine.computer_control().availability();
    // Upstream's `capabilities` is an object (`enabled`, its parts, and the
    // list of what it can do); naga's list of actions is `actions`.
    let planner = engine
        .config()
        .agents
        .computer_control
        .vision_model
        .is_some();
    // Upstream's analyzer reads screenshots: naga's vision planner does.
    let capabilities = json!({"enabled": a.ready, "adapter": a.ready, "executor": a.ready,
        "planner": planner, "analyzer": planner, "capabilities": a.capabilities});
    axum::Json(
        json!({"success": true, "ready": a.ready, "capabilities": capabilities,
        "actions": a.capabilities, "reasons": a.reasons,
        "timestamp": chrono::Utc::now().to_rfc3339()}),
    )
}

/// `POST /computer_control/execute`: runs one action now, outside any batch.
/// As upstream: a call without an instruction (nor a structured `action`)
/// is 400; one that cannot run (no display) is 200 with `success: false`,
/// `result`, `error` and `instruction`.
pub async fn cc_execute(
    State(engine): State<Engine>,
    Json(call): Json<Map<String, Value>>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
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
        let error = format!("computer_control is not available: {why}");
        return Ok((
            StatusCode::OK,
            axum::Json(json!({"success": false, "result": null, "error": error,
                              "instruction": instruction, "code": "computer_control_unavailable"})),
        ));
    }
    let ctx = CallContext {
        task_id: "direct".into(),
        session_id: "direct".into(),
        index: 0,
        steps: None,
    };
    let outcome = cc.run(&call, &ctx).await;
    Ok((
        StatusCode::OK,
        axum::Json(json!({"success": outcome.success, "result": outcome.result,
                          "error": outcome.error, "instruction": instruction})),
    ))
}
