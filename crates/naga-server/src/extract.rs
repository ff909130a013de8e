//! Extractors whose rejections are JSON errors.

use crate::error::ApiError;
use axum::{
    body::Bytes,
    extract::{rejection::JsonRejection, FromRequest, FromRequestParts, Request},
    http::{header, HeaderMap, StatusCode},
};
use naga_core::limits::{json_too_deep, MAX_JSON_DEPTH};
use serde::de::DeserializeOwned;

/// `axum::Json` with naga's error body. A JSON body is parsed straight with
/// serde_json; only a body that fails goes through `axum::Json` again, for
/// its rejection (the message names the field's path: tracking that path
/// costs every request, a sixth of the intake's parse here). A body nested
/// deeper than [`MAX_JSON_DEPTH`] is refused before it is parsed: the store
/// could not read it back.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !plainly_json(req.headers()) {
            // axum decides about any other content type (a rare path: the
            // body is read twice).
            let (parts, body) = req.into_parts();
            let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
                .await
                .map_err(JsonRejection::from)?;
            check_depth(&bytes)?;
            let req = Request::from_parts(parts, axum::body::Body::from(bytes));
            let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
            return Ok(Self(value));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(JsonRejection::from)?;
        check_depth(&bytes)?;
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(Self(value)),
            Err(_) => match axum::Json::<T>::from_bytes(&bytes) {
                Err(rejection) => Err(rejection.into()),
                Ok(axum::Json(value)) => Ok(Self(value)),
            },
        }
    }
}

/// A body taken as UTF-8 text (a signed callback, checked byte for byte
/// before it is parsed), with naga's error body: 413 past the size limit,
/// 400 for bytes that are not UTF-8, 422 for JSON nested too deep.
pub struct Text(pub String);

impl<S: Send + Sync> FromRequest<S> for Text {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(JsonRejection::from)?;
        check_depth(&bytes)?;
        String::from_utf8(bytes.into()).map(Self).map_err(|e| {
            ApiError::bad_request(
                "invalid_utf8",
                format!("the body is not UTF-8 text: {}", e.utf8_error()),
            )
        })
    }
}

fn check_depth(body: &[u8]) -> Result<(), ApiError> {
    match json_too_deep(body, MAX_JSON_DEPTH) {
        false => Ok(()),
        true => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "json_too_deep",
            format!(
                "the JSON nests arrays and objects deeper than {MAX_JSON_DEPTH} levels: flatten it"
            ),
        )),
    }
}

/// `Content-Type: application/json` (with parameters or not).
fn plainly_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// `axum::extract::Query` with naga's error body.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` with naga's error body.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `http://<Host>`: where a client reached this server (what the A2A card
/// and the MCP resource metadata name).
pub(crate) fn origin(headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8001");
    format!("http://{host}")
}

/// `limit` of a listing: 1..=1000, default 100.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        n => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and 1000, not {n}"),
        )),
    }
}
