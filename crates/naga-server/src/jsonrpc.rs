//! JSON-RPC 2.0's envelope, for naga's JSON-RPC faces (A2A at `/a2a`, MCP
//! at `/mcp`): what a message must be before anything is executed
//! (JSON-RPC 2.0 §4, §5.1), and the error answer when it is not.

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use naga_core::limits::{json_too_deep, MAX_JSON_DEPTH};
use serde_json::{json, Map, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INTERNAL_ERROR: i64 = -32603;

/// A well-formed JSON-RPC 2.0 message.
#[derive(Debug)]
pub enum Message {
    /// A request: it is answered.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A request without `id`: executed never here, answered never.
    Notification,
    /// A client's answer to a server's request (MCP's elicitation, …).
    Response,
}

/// Why a body is not a JSON-RPC 2.0 message: its error, and the `id` to
/// answer it with (null when the request's own could not be read).
#[derive(Debug)]
pub struct Invalid {
    pub id: Value,
    pub code: i64,
    pub message: String,
}

impl Invalid {
    fn new(id: &Value, code: i64, message: impl Into<String>) -> Self {
        Self {
            id: id.clone(),
            code,
            message: message.into(),
        }
    }

    /// The error answer, with HTTP `status`.
    pub fn answer(self, status: StatusCode) -> Response {
        let error = json!({"code": self.code, "message": self.message});
        answer(status, &self.id, Err(error))
    }
}

/// The message a body holds: one JSON object, `"jsonrpc": "2.0"`, an `id`
/// that is a string or a number when present, a string `method` (or, with
/// an `id` and no method, a `result` or an `error`: a response), `params`
/// an object or an array. A batch is refused: neither A2A nor MCP (since
/// 2025-06-18) has them.
pub fn parse(body: &[u8]) -> Result<Message, Invalid> {
    let null = Value::Null;
    if json_too_deep(body, MAX_JSON_DEPTH) {
        let why = format!("the message is nested deeper than {MAX_JSON_DEPTH} levels");
        return Err(Invalid::new(&null, INVALID_REQUEST, why));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Invalid::new(&null, PARSE_ERROR, format!("Invalid JSON payload: {e}")))?;
    let why = match value {
        Value::Object(message) => return classify(message),
        Value::Array(_) => "batches are not supported",
        _ => "a JSON-RPC message is a JSON object",
    };
    Err(Invalid::new(&null, INVALID_REQUEST, why))
}

fn classify(mut message: Map<String, Value>) -> Result<Message, Invalid> {
    let id = match message.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id),
        Some(_) => {
            let why = "`id` must be a string or a number";
            return Err(Invalid::new(&Value::Null, INVALID_REQUEST, why));
        }
    };
    let answer_id = id.clone().unwrap_or(Value::Null);
    let invalid = |why: &str| Err(Invalid::new(&answer_id, INVALID_REQUEST, why));
    if message.get("jsonrpc") != Some(&json!("2.0")) {
        return invalid("`jsonrpc` must be \"2.0\"");
    }
    let params = message.remove("params").unwrap_or_else(|| json!({}));
    if !params.is_object() && !params.is_array() {
        return invalid("`params` must be an object or an array");
    }
    match (message.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => Ok(Message::Request { id, method, params }),
        (Some(Value::String(_)), None) => Ok(Message::Notification),
        (Some(_), _) => invalid("`method` must be a string"),
        (None, Some(_)) if message.contains_key("result") || message.contains_key("error") => {
            Ok(Message::Response)
        }
        (None, _) => invalid("`method` is required"),
    }
}

/// The JSON-RPC answer to request `id`: its result, or its error object.
pub fn body(id: &Value, outcome: Result<Value, Value>) -> Value {
    match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
    }
}

/// [`body`] as an HTTP answer with `status`.
pub fn answer(status: StatusCode, id: &Value, outcome: Result<Value, Value>) -> Response {
    let body = body(id, outcome);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> i64 {
        parse(body.as_bytes()).unwrap_err().code
    }

    #[test]
    fn what_is_not_a_request_is_told_apart() {
        assert_eq!(code("{bad"), PARSE_ERROR);
        assert_eq!(
            code(r#"[{"jsonrpc":"2.0","id":1,"method":"m"}]"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":{"a":1},"method":"m"}"#),
            INVALID_REQUEST
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1}"#), INVALID_REQUEST);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":7}"#),
            INVALID_REQUEST
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":3}"#),
            INVALID_REQUEST
        );
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(code(&deep), INVALID_REQUEST);
        let ok = parse(br#"{"jsonrpc":"2.0","id":"x","method":"m"}"#).unwrap();
        assert!(matches!(ok, Message::Request { .. }));
        let note = parse(br#"{"jsonrpc":"2.0","method":"m"}"#).unwrap();
        assert!(matches!(note, Message::Notification));
        let response = parse(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#).unwrap();
        assert!(matches!(response, Message::Response));
    }
}
