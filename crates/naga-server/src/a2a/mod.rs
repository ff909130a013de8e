//! naga as an A2A agent (protocol 1.0, JSON-RPC binding at `/a2a` on the
//! agent server): its agents are the card's skills, a message is a naga
//! task of one call (committed before the answer), `contextId` is naga's
//! `session_id` (same order and policies), a task's result is its artifact.
//! The card (`/.well-known/agent-card.json`) is open, and names the bearer
//! scheme when `[auth] token` is set. Streaming (`SendStreamingMessage`,
//! `SubscribeToTask`) follows the task to its end. A push notification
//! config given with the message makes the task's callback an A2A push
//! (`naga_engine::callbacks::a2a`): it goes through the outbox, signed;
//! configs created later (`push`) are pushed the same way at the end.
//!
//! A message's call: its text parts are the instruction, a data part the
//! agent's parameters; `metadata.skill` names the agent (else `[agents]
//! default_agent`), one the card advertises. Its `messageId` is the task's
//! request id: sent again, it answers the same task.

use crate::{
    jsonrpc::{self, Message},
    state::AgentState,
};
use axum::{
    extract::{FromRequest, Request, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use naga_core::{
    wire::{AgentScheduleRequest, CallPayload, RawCall},
    TaskStatus,
};
use naga_engine::rows::TaskRow;
use naga_engine::{callbacks::a2a, Engine, EngineError};
use serde_json::{json, Value};
use std::{convert::Infallible, time::Duration};
use types::{
    AgentCard, AgentInterface, Capabilities, ErrorInfo, Part, RpcErrorBody, SentMessage, Skill,
    StreamEvent, MODES,
};

mod list;
mod push;
pub mod rest;
pub mod types;
use list::list_tasks;
use rest::rest_error;

pub const PROTOCOL_VERSION: &str = "1.0";

/// A2A's JSON-RPC error codes.
const TASK_NOT_FOUND: i64 = -32001;
const TASK_NOT_CANCELABLE: i64 = -32002;
const UNSUPPORTED: i64 = -32004;
const VERSION_NOT_SUPPORTED: i64 = -32009;
const INVALID_PARAMS: i64 = -32602;
const METHOD_NOT_FOUND: i64 = -32601;
const INTERNAL: i64 = -32603;

struct RpcError(i64, String);

type Rpc<T> = Result<T, RpcError>;

fn internal(e: impl std::fmt::Display) -> RpcError {
    RpcError(INTERNAL, e.to_string())
}

/// `GET /.well-known/agent-card.json`: who naga is, where and how to reach it.
#[utoipa::path(get, path = "/.well-known/agent-card.json", tag = "a2a", security(()),
    responses((status = 200, description = "The A2A agent card", body = Object)))]
pub async fn agent_card(State(state): State<AgentState>, headers: HeaderMap) -> Json<AgentCard> {
    let engine = &state.engine;
    let origin = crate::extract::origin(&headers);
    let skills = engine
        .agents()
        .iter()
        .filter(|a| a.available().is_ok())
        .map(|a| Skill {
            id: a.name(),
            name: a.name(),
            description: a.description(),
            tags: ["naga"],
            input_modes: MODES,
            output_modes: MODES,
        })
        .collect();
    let interface = |path: &str, binding| AgentInterface {
        url: format!("{origin}{path}"),
        protocol_binding: binding,
        protocol_version: PROTOCOL_VERSION,
    };
    let token = engine.config().auth.token.is_some();
    Json(AgentCard {
        name: "naga",
        description: "NagaAgent's session scheduler: every message is a durable task, \
                      committed before it is acknowledged, run in its context's order, \
                      resumed after a crash.",
        version: env!("CARGO_PKG_VERSION"),
        supported_interfaces: vec![
            interface("/a2a", "JSONRPC"),
            interface("/a2a/rest", "HTTP+JSON"),
        ],
        capabilities: Capabilities {
            streaming: true,
            push_notifications: true,
        },
        default_input_modes: MODES,
        default_output_modes: MODES,
        skills,
        security_schemes: token.then(|| {
            json!({"bearer": {"httpAuthSecurityScheme": {
                "scheme": "Bearer", "description": "naga's [auth] token"}}})
        }),
        security_requirements: token.then(|| json!([{"schemes": {"bearer": {"list": []}}}])),
    })
}

/// `POST /a2a`: A2A's JSON-RPC binding. `SendStreamingMessage` and
/// `SubscribeToTask` answer a server-sent event stream: the task, then each
/// change of its state (its artifacts before its last), to its end.
#[utoipa::path(post, path = "/a2a", tag = "a2a",
    request_body(content = Object, description = "A JSON-RPC 2.0 request of A2A 1.0"),
    responses((status = 200, description = "The JSON-RPC answer (JSON, or server-sent events \
        for the streaming methods)", body = Object)))]
pub async fn jsonrpc(State(state): State<AgentState>, request: Request) -> Response {
    let refused = version_refused(&request);
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let (id, method, params) = match jsonrpc::parse(&body) {
        Ok(Message::Request { id, method, params }) => (id, method, params),
        // Never executed, never answered (JSON-RPC 2.0 §4.1).
        Ok(Message::Notification) => return StatusCode::NO_CONTENT.into_response(),
        Ok(Message::Response) => {
            let why = "naga's A2A face sends no requests: there is nothing to answer";
            let error = json!({"code": jsonrpc::INVALID_REQUEST, "message": why});
            return jsonrpc::answer(StatusCode::OK, &Value::Null, Err(error));
        }
        Err(invalid) => return invalid.answer(StatusCode::OK),
    };
    let params = json_names(params);
    let answer = match (refused, params.is_object()) {
        (Some(refused), _) => Err(refused),
        (None, true) => dispatch(&state.engine, &id, &method, &params).await,
        (None, false) => Err(RpcError(
            INVALID_PARAMS,
            "`params` must be an object".into(),
        )),
    };
    match answer {
        Ok(Answer::Result(result)) => jsonrpc::answer(StatusCode::OK, &id, Ok(result)),
        Ok(Answer::Stream(response)) => response,
        Err(e) => {
            tracing::debug!(%method, code = e.0, "A2A request refused");
            jsonrpc::answer(StatusCode::OK, &id, Err(rpc_error(e)))
        }
    }
}

/// A request's JSON with every field by its JSON name: ProtoJSON readers
/// accept a field by its proto name (`task_id`) as well as by its JSON name
/// (`taskId`), and naga reads the JSON names. Free-form values (`metadata`,
/// a data part's `data`) are the sender's own and stay as they are.
fn json_names(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| {
                    let value = match key.as_str() {
                        "metadata" | "data" => value,
                        _ => json_names(value),
                    };
                    (lower_camel(key), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(json_names).collect()),
        other => other,
    }
}

/// `task_id` → `taskId` (a name without `_` as it is).
fn lower_camel(name: String) -> String {
    if !name.contains('_') {
        return name;
    }
    let mut words = name.split('_');
    let mut camel = words.next().unwrap_or_default().to_owned();
    for word in words {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            camel.extend(first.to_uppercase());
            camel.push_str(chars.as_str());
        }
    }
    camel
}

/// The version a request speaks (`A2A-Version`, as a header or a query
/// parameter; none is 0.3, A2A 1.0 §3.6.1): naga speaks 1.0 (its patch
/// versions too), and refuses any other with VersionNotSupportedError.
fn version_refused(request: &Request) -> Option<RpcError> {
    let header = request
        .headers()
        .get("a2a-version")
        .map(|v| v.to_str().unwrap_or("?").trim().to_owned());
    let query = || {
        let query = request.uri().query()?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case("A2A-Version"))
            .map(|(_, v)| v.trim().to_owned())
    };
    let asked = header.or_else(query).filter(|v| !v.is_empty());
    let version = asked.as_deref().unwrap_or("0.3");
    let spoken = version == PROTOCOL_VERSION
        || version
            .strip_prefix("1.0.")
            .is_some_and(|patch| patch.parse::<u32>().is_ok());
    match spoken {
        true => None,
        false => Some(RpcError(
            VERSION_NOT_SUPPORTED,
            format!(
                "A2A version {version}{} is not supported: naga speaks {PROTOCOL_VERSION} \
                 (send `A2A-Version: {PROTOCOL_VERSION}`)",
                if asked.is_none() {
                    " (no A2A-Version header)"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// The HTTP+JSON binding's routes speak only the versions naga speaks.
pub async fn versioned(request: Request, next: axum::middleware::Next) -> Response {
    match version_refused(&request) {
        Some(refused) => rest_error(refused),
        None => next.run(request).await,
    }
}

/// What a JSON-RPC method answers: a result, or an event stream.
enum Answer {
    Result(Value),
    Stream(Response),
}

async fn dispatch(engine: &Engine, id: &Value, method: &str, params: &Value) -> Rpc<Answer> {
    let result = match method {
        "SendMessage" => send_message(engine, params).await,
        "GetTask" => get_task(engine, params).await,
        "ListTasks" => list_tasks(engine, params).await,
        "CancelTask" => cancel_task(engine, params).await,
        "SendStreamingMessage" => {
            let task_id = accept(engine, params).await?;
            return Ok(Answer::Stream(stream(
                engine.clone(),
                Some(id.clone()),
                task_id,
            )));
        }
        "SubscribeToTask" => {
            let task_id = text(&params["id"])
                .ok_or_else(|| RpcError(INVALID_PARAMS, "`id` is required".into()))?;
            subscribable(&find(engine, task_id).await?)?;
            let stream = stream(engine.clone(), Some(id.clone()), task_id.to_owned());
            return Ok(Answer::Stream(stream));
        }
        "CreateTaskPushNotificationConfig" => push::create_push_config(engine, params).await,
        "GetTaskPushNotificationConfig" => push::get_push_config(engine, params).await,
        "ListTaskPushNotificationConfigs" => push::list_push_configs(engine, params).await,
        "DeleteTaskPushNotificationConfig" => push::delete_push_config(engine, params).await,
        other => Err(RpcError(METHOD_NOT_FOUND, format!("no method `{other}`"))),
    };
    result.map(Answer::Result)
}

/// One server-sent event: a JSON-RPC result (`id` given), or the
/// `StreamResponse` itself (HTTP+JSON).
fn event(id: &Option<Value>, result: impl serde::Serialize) -> Bytes {
    let result = to_value(result);
    let answer = match id {
        Some(id) => jsonrpc::body(id, Ok(result)),
        None => result,
    };
    Bytes::from(format!("data: {answer}\n\n"))
}

/// The task as a stream: the task first, then its state each time it
/// changes (its artifacts just before its end), until it ended. Woken by
/// this node's task feed, and every second (a task another node runs).
fn stream(engine: Engine, id: Option<Value>, task_id: String) -> Response {
    struct Follow {
        engine: Engine,
        id: Option<Value>,
        task_id: String,
        feed: naga_engine::feed::Subscription,
        /// The task's session, once read: only its events wake the stream.
        session: Option<String>,
        last: Option<TaskStatus>,
        done: bool,
    }
    let follow = Follow {
        feed: engine.feed().subscribe(),
        engine,
        id,
        task_id,
        session: None,
        last: None,
        done: false,
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            if f.last.is_some() {
                let stop = f.engine.stopping().clone();
                tokio::select! {
                    frame = f.feed.next_frame(f.session.as_deref()) => frame.map(|_| ())?,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return None,
                }
            }
            let row = find(&f.engine, &f.task_id).await.ok()?;
            if f.last == Some(row.status) {
                continue;
            }
            let task = task_json(&f.engine, &row).await.ok()?;
            let mut chunk = Vec::new();
            if f.last.is_none() {
                chunk.extend_from_slice(&event(&f.id, StreamEvent::Task(&task)));
            } else {
                if row.status.is_terminal() {
                    for artifact in task["artifacts"].as_array().into_iter().flatten() {
                        let update = StreamEvent::ArtifactUpdate {
                            task_id: &row.id,
                            context_id: &row.session_id,
                            artifact,
                            last_chunk: true,
                        };
                        chunk.extend_from_slice(&event(&f.id, update));
                    }
                }
                let update = StreamEvent::StatusUpdate {
                    task_id: &row.id,
                    context_id: &row.session_id,
                    status: &task["status"],
                };
                chunk.extend_from_slice(&event(&f.id, update));
            }
            f.last = Some(row.status);
            f.done = row.status.is_terminal();
            f.session.get_or_insert_with(|| row.session_id.clone());
            return Some((Ok::<_, Infallible>(Bytes::from(chunk)), f));
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

fn text(value: &Value) -> Option<&str> {
    value.as_str().filter(|s| !s.is_empty())
}

/// The call a message asks for (see the module's note).
fn call_of(engine: &Engine, message: &Value, metadata: &Value) -> Rpc<CallPayload> {
    let parts = message["parts"].as_array().cloned().unwrap_or_default();
    let instruction: Vec<&str> = parts.iter().filter_map(|p| text(&p["text"])).collect();
    let parameters = parts.iter().find_map(|p| p["data"].as_object().cloned());
    if instruction.is_empty() && parameters.is_none() {
        return Err(RpcError(
            INVALID_PARAMS,
            "the message has no text part and no data part: say what to do".into(),
        ));
    }
    let named = text(&message["metadata"]["skill"]).or_else(|| text(&metadata["skill"]));
    let skill = skill_of(engine, named)?;
    let mut call = CallPayload::new();
    call.insert("agentType".into(), json!("agent"));
    call.insert("tool_name".into(), json!(skill));
    call.insert("service_name".into(), json!("agent_server"));
    call.insert("instruction".into(), json!(instruction.join("\n")));
    if let Some(p) = parameters {
        call.insert("parameters".into(), integral(Value::Object(p)));
    }
    Ok(call)
}

/// The skill a message runs on: the one its `metadata.skill` names, else
/// `[agents] default_agent`; either must be one the card advertises (an
/// agent available here), else -32602 naming those that are.
fn skill_of(engine: &Engine, named: Option<&str>) -> Rpc<String> {
    let default = &engine.config().agents.default_agent;
    let name = named.unwrap_or(default);
    let agents = engine.agents();
    let why = match agents.iter().find(|a| a.name() == name) {
        Some(agent) => match agent.available() {
            Ok(()) => return Ok(name.to_owned()),
            Err(why) => format!("`{name}` is not available on this server ({why})"),
        },
        None => format!("no skill `{name}`"),
    };
    let advertised: Vec<&str> = (agents.iter())
        .filter(|a| a.available().is_ok())
        .map(|a| a.name())
        .collect();
    let whose = match named {
        Some(_) => String::new(),
        None => " (the message names no skill in metadata.skill: this is the default)".into(),
    };
    Err(RpcError(
        INVALID_PARAMS,
        format!(
            "{why}{whose}; name one of the card's skills in metadata.skill: [{}]",
            advertised.join(", ")
        ),
    ))
}

/// Protocol-buffer JSON has only doubles: a whole number (`3000.0`) is
/// given back as an integer, as naga's agents read counts and durations.
fn integral(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(integral).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}

/// Commits the message as a task; its id.
async fn accept(engine: &Engine, params: &Value) -> Rpc<String> {
    let message = &params["message"];
    if !message.is_object() {
        return Err(RpcError(INVALID_PARAMS, "`message` is required".into()));
    }
    // A Message requires both (A2A): nothing is created without them.
    if text(&message["messageId"]).is_none() {
        return Err(RpcError(
            INVALID_PARAMS,
            "`message.messageId` is required".into(),
        ));
    }
    let roles = ["ROLE_USER", "ROLE_AGENT", "user", "agent"];
    if !message["role"].as_str().is_some_and(|r| roles.contains(&r)) {
        return Err(RpcError(
            INVALID_PARAMS,
            "`message.role` is required: ROLE_USER or ROLE_AGENT".into(),
        ));
    }
    if text(&message["taskId"]).is_some() {
        return Err(RpcError(
            UNSUPPORTED,
            "naga's tasks take no further input: send a new message (same contextId) instead"
                .into(),
        ));
    }
    let call = call_of(engine, message, &params["metadata"])?;
    let callback_url = push::push_url_of(&params["configuration"]["taskPushNotificationConfig"])?;
    let scheduled = engine
        .schedule_agent_push(AgentScheduleRequest {
            query: Some("A2A SendMessage".into()),
            agent_calls: Some(vec![RawCall::from_payload(&call)]),
            session_id: text(&message["contextId"]).map(str::to_owned),
            analysis_session_id: None,
            request_id: text(&message["messageId"]).map(str::to_owned),
            callback_url,
            multitask_strategy: None,
        })
        .await
        .map_err(|e| match e {
            EngineError::Invalid(m) | EngineError::Reused(m) | EngineError::Expired(m) => {
                RpcError(INVALID_PARAMS, m)
            }
            other => internal(other),
        })?;
    let task_id = scheduled
        .task_id
        .ok_or_else(|| internal("the message was not scheduled"))?;
    tracing::info!(task_id = %task_id, "A2A message accepted as a task");
    Ok(task_id)
}

async fn send_message(engine: &Engine, params: &Value) -> Rpc<Value> {
    let task_id = accept(engine, params).await?;
    if !params["configuration"]["returnImmediately"]
        .as_bool()
        .unwrap_or(false)
    {
        engine.task_ended(&task_id).await.map_err(internal)?;
    }
    Ok(json!({"task": task_json(engine, &find(engine, &task_id).await?).await?}))
}

/// An answer as JSON (a typed answer always serializes).
fn to_value(answer: impl serde::Serialize) -> Value {
    serde_json::to_value(answer).unwrap_or_default()
}

/// A task can be subscribed to until it ended (A2A 1.0 §3.1.6: a task in
/// a terminal state is UnsupportedOperationError).
fn subscribable(task: &TaskRow) -> Rpc<()> {
    match task.status.is_terminal() {
        false => Ok(()),
        true => Err(RpcError(
            UNSUPPORTED,
            format!(
                "task `{}` is {}: it has no updates to stream (GetTask reads it)",
                task.id, task.status
            ),
        )),
    }
}

async fn find(engine: &Engine, id: &str) -> Rpc<TaskRow> {
    engine
        .reads()
        .task(id)
        .await
        .map_err(internal)?
        .ok_or_else(|| RpcError(TASK_NOT_FOUND, format!("no task `{id}`")))
}

/// A naga task as an A2A task, read from the store.
async fn task_json(engine: &Engine, task: &TaskRow) -> Rpc<Value> {
    task_json_with(engine, task, None).await
}

/// [`task_json`], with at most `history_length` messages of its history
/// (the message it was sent with; none asked: all).
async fn task_json_with(
    engine: &Engine,
    task: &TaskRow,
    history_length: Option<usize>,
) -> Rpc<Value> {
    let calls = engine.reads().calls(&task.id).await.map_err(internal)?;
    let mut json = a2a::stored_task_json(task, &calls);
    let history: Vec<SentMessage> = (calls.first().map(|c| sent_message(task, &c.payload)))
        .into_iter()
        .take(history_length.unwrap_or(usize::MAX))
        .collect();
    if !history.is_empty() {
        json["history"] = to_value(history);
    }
    Ok(json)
}

/// The message a task was sent with, read back from its call: its text the
/// instruction, its data part the parameters, its id the task's.
fn sent_message(task: &TaskRow, payload: &str) -> SentMessage {
    let mut call: Value = serde_json::from_str(payload).unwrap_or_default();
    let text = call["instruction"].as_str().unwrap_or_default().to_owned();
    let mut parts = vec![Part::Text(text)];
    if call["parameters"].is_object() {
        parts.push(Part::Data(call["parameters"].take()));
    }
    SentMessage {
        message_id: task.id.clone(),
        context_id: task.session_id.clone(),
        task_id: task.id.clone(),
        role: "ROLE_USER",
        parts,
    }
}

async fn get_task(engine: &Engine, params: &Value) -> Rpc<Value> {
    let id =
        text(&params["id"]).ok_or_else(|| RpcError(INVALID_PARAMS, "`id` is required".into()))?;
    let history_length = list::history_length(params)?;
    task_json_with(engine, &find(engine, id).await?, history_length).await
}

async fn cancel_task(engine: &Engine, params: &Value) -> Rpc<Value> {
    let id =
        text(&params["id"]).ok_or_else(|| RpcError(INVALID_PARAMS, "`id` is required".into()))?;
    match engine.scheduler().cancel(id).await {
        Ok(_) => {}
        Err(EngineError::NotFound(m)) => return Err(RpcError(TASK_NOT_FOUND, m)),
        Err(EngineError::Conflict(m)) => return Err(RpcError(TASK_NOT_CANCELABLE, m)),
        Err(e) => return Err(internal(e)),
    }
    task_json(engine, &find(engine, id).await?).await
}

/// The `google.rpc.ErrorInfo` an A2A error carries (in the JSON-RPC
/// error's `data`, in the HTTP+JSON error's `details`).
fn error_info(reason: &'static str) -> ErrorInfo {
    ErrorInfo::of(reason)
}

/// A JSON-RPC error, with its `ErrorInfo` as `data`.
fn rpc_error(RpcError(code, message): RpcError) -> Value {
    let (_, _, reason) = error_kind(code);
    let body = RpcErrorBody {
        code,
        message,
        data: [error_info(reason)],
    };
    to_value(body)
}

/// An error's HTTP status, `google.rpc.Code` name and A2A reason (A2A
/// 1.0 §5.4's table).
fn error_kind(code: i64) -> (StatusCode, &'static str, &'static str) {
    use StatusCode as S;
    match code {
        TASK_NOT_FOUND => (S::NOT_FOUND, "NOT_FOUND", "TASK_NOT_FOUND"),
        TASK_NOT_CANCELABLE => (S::CONFLICT, "FAILED_PRECONDITION", "TASK_NOT_CANCELABLE"),
        UNSUPPORTED => (S::BAD_REQUEST, "UNIMPLEMENTED", "UNSUPPORTED_OPERATION"),
        VERSION_NOT_SUPPORTED => (S::BAD_REQUEST, "UNIMPLEMENTED", "VERSION_NOT_SUPPORTED"),
        INVALID_PARAMS => (S::BAD_REQUEST, "INVALID_ARGUMENT", "INVALID_PARAMS"),
        METHOD_NOT_FOUND => (S::NOT_FOUND, "NOT_FOUND", "METHOD_NOT_FOUND"),
        _ => (S::INTERNAL_SERVER_ERROR, "INTERNAL", "INTERNAL_ERROR"),
    }
}
