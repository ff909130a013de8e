//! The API error and its HTTP mapping, in one place. 4xx say what was
//! wrong and what to do; 500s hide internals from the client and log them.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use naga_core::wire::ErrorBody;
use naga_engine::rows::StoreError;
use naga_engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Client {
        status: StatusCode,
        code: &'static str,
        detail: String,
        retry_after: Option<u64>,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// `Retry-After` of a 503 while the store cannot write.
const STORE_RETRY_AFTER_SECS: u64 = 5;

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self::Client {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Client {
                status,
                code,
                detail,
                retry_after,
            } => {
                let body = ErrorBody {
                    success: false,
                    detail,
                    code: code.to_owned(),
                };
                let mut resp = (status, axum::Json(body)).into_response();
                if let Some(secs) = retry_after {
                    resp.headers_mut().insert(
                        header::RETRY_AFTER,
                        secs.to_string().parse().expect("digits"),
                    );
                }
                resp
            }
            Self::Internal(e) => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(error_id = %id, error = ?e, "internal error");
                let body = ErrorBody {
                    success: false,
                    detail: format!(
                        "internal error; the server log has the details under error_id {id}"
                    ),
                    code: "internal".into(),
                };
                (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(d) => Self::bad_request("invalid_request", d),
            EngineError::NotFound(d) => Self::not_found(d),
            EngineError::Conflict(d) => Self::new(StatusCode::CONFLICT, "conflict", d),
            EngineError::Reused(d) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "request_id_reused", d)
            }
            EngineError::Expired(d) => Self::new(StatusCode::CONFLICT, "request_id_expired", d),
            EngineError::Busy {
                detail,
                retry_after_secs,
            } => Self::Client {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "busy",
                detail,
                retry_after: Some(retry_after_secs),
            },
            EngineError::Unavailable(d) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", d)
            }
            EngineError::Unauthorized(d) => Self::new(StatusCode::UNAUTHORIZED, "unauthorized", d),
            EngineError::Llm(e) => {
                use naga_engine::llm::LlmError;
                let (status, code) = match &e {
                    LlmError::NotConfigured => {
                        (StatusCode::SERVICE_UNAVAILABLE, "llm_not_configured")
                    }
                    LlmError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "llm_timeout"),
                    _ => (StatusCode::BAD_GATEWAY, "llm_error"),
                };
                Self::new(status, code, e.to_string())
            }
            EngineError::Store(e) => Self::from(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(d) => Self::new(StatusCode::CONFLICT, "conflict", d),
            e if e.is_damage() => {
                tracing::error!(error = %e, "store damaged: request answered 503");
                Self::Client {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "store_damaged",
                    detail: format!(
                        "the store's file is damaged ({e}): this request cannot be served until \
                         the store is restored from a backup (see /health)"
                    ),
                    retry_after: Some(STORE_RETRY_AFTER_SECS),
                }
            }
            e if e.is_transient() => {
                tracing::warn!(error = %e, "store unavailable: request answered 503");
                Self::Client {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "store_unavailable",
                    detail: format!(
                        "the store cannot be reached or written right now ({e}); nothing was \
                         changed: retry later"
                    ),
                    retry_after: Some(STORE_RETRY_AFTER_SECS),
                }
            }
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (code, detail) = match &r {
            JsonRejection::JsonDataError(e) => (
                "invalid_fields",
                format!(
                    "the JSON has a field of the wrong type or shape: {}",
                    source_text(e)
                ),
            ),
            JsonRejection::JsonSyntaxError(e) => (
                "malformed_json",
                format!("the body is not valid JSON: {}", source_text(e)),
            ),
            JsonRejection::MissingJsonContentType(_) => (
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`".to_owned(),
            ),
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES),
            ),
            _ => ("unreadable_body", r.body_text()),
        };
        Self::new(r.status(), code, detail)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(
            "invalid_query",
            format!("bad query string: {}", r.body_text()),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request("invalid_path", r.body_text())
    }
}

/// The innermost error message (serde's, with line and column).
fn source_text(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
