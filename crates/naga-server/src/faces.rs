//! Every answer on a protocol's route is in that protocol's shape: an error
//! on `/mcp` or `/a2a` is a JSON-RPC error (JSON-RPC 2.0 §5.1), one on
//! `/a2a/rest/…` an A2A HTTP+JSON error (`google.rpc.Status` as JSON), not
//! naga's own `{"success": false, …}` nor a library's plain text. This
//! layer, around the guard and the routes, reshapes what comes from
//! elsewhere (the guard's 401/403/415, the body limit's 413, a route's
//! 404/405, rmcp's plain-text refusals); an answer already in the
//! protocol's shape passes unchanged, and so does every other route's.

use axum::{
    body::{to_bytes, Body},
    extract::Request,
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::{json, Value};

/// The protocol a route speaks.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Face {
    JsonRpc,
    A2aRest,
    Api,
}

impl Face {
    fn of(path: &str) -> Self {
        match path {
            "/mcp" | "/a2a" => Face::JsonRpc,
            p if p.starts_with("/a2a/rest/") || p == "/a2a/rest" => Face::A2aRest,
            _ => Face::Api,
        }
    }
}

/// The largest error body reshaped (larger ones are not naga's refusals).
const MAX_ERROR_BODY: usize = 64 * 1024;

pub async fn in_protocol_shape(req: Request, next: Next) -> Response {
    let face = Face::of(req.uri().path());
    let response = next.run(req).await;
    if face == Face::Api
        || !(response.status().is_client_error() || response.status().is_server_error())
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, MAX_ERROR_BODY).await.unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let shaped = match (face, &parsed) {
        (Face::JsonRpc, Some(v)) => v.get("jsonrpc").is_some(),
        (_, Some(v)) => v["error"].is_object(),
        _ => false,
    };
    if shaped {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let message = match &parsed {
        Some(v) if v["detail"].is_string() => v["detail"].as_str().unwrap_or_default().to_owned(),
        _ => String::from_utf8_lossy(&bytes).trim().to_owned(),
    };
    let message = match message.is_empty() {
        true => parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_owned(),
        false => message,
    };
    let body = match face {
        Face::JsonRpc => json_rpc_error(parts.status, &message),
        _ => a2a_rest_error(parts.status, &message),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    (parts.status, parts.headers, body.to_string()).into_response()
}

/// A JSON-RPC error without a request id (the request was not read).
fn json_rpc_error(status: StatusCode, message: &str) -> Value {
    let code = match status.is_server_error() {
        true => crate::jsonrpc::INTERNAL_ERROR,
        false => crate::jsonrpc::INVALID_REQUEST,
    };
    crate::jsonrpc::body(&Value::Null, Err(json!({"code": code, "message": message})))
}

/// An HTTP+JSON A2A error: `google.rpc.Status` with the status's code.
fn a2a_rest_error(status: StatusCode, message: &str) -> Value {
    let name = match status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 | 501 => "UNIMPLEMENTED",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        500..=599 => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    };
    json!({"error": {"code": status.as_u16(), "status": name, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::{in_protocol_shape, Face};
    use axum::{body::Bytes, extract::DefaultBodyLimit, routing::post, Router};
    use serde_json::Value;
    use tower::ServiceExt;

    /// A body over the limit (the transport's refusal, plain text from
    /// axum) is answered in each face's shape. (Over a socket, a client
    /// still sending may not read the answer: here nothing races.)
    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_in_the_protocol_s_shape() {
        let take = |_: Bytes| async { "taken" };
        // A test router of two routes, not a service: nothing to describe.
        #[allow(clippy::disallowed_methods)]
        let app = Router::new()
            .route("/mcp", post(take))
            .route("/a2a/rest/message:send", post(take))
            .layer(DefaultBodyLimit::max(8))
            .layer(axum::middleware::from_fn(in_protocol_shape));
        for path in ["/mcp", "/a2a/rest/message:send"] {
            let request = axum::http::Request::post(path)
                .body(axum::body::Body::from(vec![b' '; 64]))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 413, "{path}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let answer: Value = serde_json::from_slice(&body).unwrap();
            match path {
                "/mcp" => assert_eq!(answer["error"]["code"], -32600, "{answer}"),
                _ => assert_eq!(answer["error"]["code"], 413, "{answer}"),
            }
        }
    }

    #[test]
    fn the_protocol_routes_are_told_by_their_path() {
        assert_eq!(Face::of("/mcp"), Face::JsonRpc);
        assert_eq!(Face::of("/a2a"), Face::JsonRpc);
        assert_eq!(Face::of("/a2a/rest/tasks/x:cancel"), Face::A2aRest);
        assert_eq!(Face::of("/a2a-other"), Face::Api);
        assert_eq!(Face::of("/tasks"), Face::Api);
    }
}
