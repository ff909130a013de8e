//! The web dashboard at `/ui` on the agent server: one page, its script and
//! its style, embedded in the binary. The page holds no data: it is served
//! without the token and asks for it (kept for the tab, sent as `Authorization:
//! Bearer` on every request it makes, never as a cookie).

use axum::{
    http::header,
    response::{IntoResponse, Response},
};

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// Its own scripts and styles only, its own API only, never in a frame.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /ui`: the dashboard (open without the token: the page holds no data).
#[utoipa::path(get, path = "/ui", tag = "dashboard", security(()),
    responses((status = 200, description = "The page", body = String, content_type = "text/html")))]
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

#[utoipa::path(get, path = "/ui/app.js", tag = "dashboard", security(()),
    responses((status = 200, description = "Its script", body = String, content_type = "text/javascript")))]
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

#[utoipa::path(get, path = "/ui/app.css", tag = "dashboard", security(()),
    responses((status = 200, description = "Its style", body = String, content_type = "text/css")))]
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The dashboard's routes, open without the token.
pub const ROUTES: [&str; 3] = ["/ui", "/ui/app.js", "/ui/app.css"];
