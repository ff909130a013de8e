//! Who may use a service, checked before any handler (SECURITY.md):
//! - the `Host` must be one naga answers to (`localhost`, an IP address,
//!   or `[auth] allowed_hosts`): a DNS-rebinding page names its own host;
//! - with `[auth] token`, every route but `/health` needs
//!   `Authorization: Bearer <token>` (the callback routes may instead be
//!   signed with `[callbacks] secret`, which their handler verifies);
//! - a request that changes something and carries no token must be JSON: a
//!   cross-site HTML form cannot send `application/json`, and a page's
//!   script that does is stopped by CORS (closed unless configured);
//! - a listener beyond loopback needs a token and a callback secret.

use crate::ApiError;
use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use naga_core::config::Config;
use std::{net::SocketAddr, sync::Arc};
use subtle::ConstantTimeEq;

/// Serves `router` (with its common layers) behind the checks of one
/// naga's services, and CORS around both: applied once to the whole
/// service, not to each of its routes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    config: &Config,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use tower::Layer;
    let checked = axum::middleware::from_fn_with_state(Guard::new(config), check).layer(router);
    let checked = axum::middleware::from_fn(crate::faces::in_protocol_shape).layer(checked);
    match cors(config) {
        Some(cors) => {
            crate::listener::accept(listener, cors.layer(checked), &config.http, stop).await
        }
        None => crate::listener::accept(listener, checked, &config.http, stop).await,
    }
}

/// The checks of one naga's services.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    /// The token `Authorization: Bearer <token>` must carry.
    expected: Option<Vec<u8>>,
    /// Host names allowed besides `localhost` and IP addresses (lowercase).
    hosts: Vec<String>,
    any_host: bool,
    /// Callbacks received are verified by signature (a secret is set).
    signed_callbacks: bool,
}

/// Routes a request reaches without the token (and the dashboard's page,
/// which holds no data: `dashboard::ROUTES`). The A2A agent card is how a
/// client learns that it needs the token.
/// The protected-resource metadata of `/mcp` (RFC 9728) is how an MCP
/// client learns what token it needs.
const OPEN_ROUTES: [&str; 4] = [
    "/health",
    "/.well-known/agent-card.json",
    crate::gateway::RESOURCE_METADATA,
    crate::gateway::MCP_RESOURCE_METADATA,
];

/// Routes authenticated by a Standard Webhooks signature when a callback
/// secret is configured (naga's own agent and MCP servers sign them; the
/// token is never sent to a callback URL).
const SIGNED_ROUTES: [&str; 2] = ["/agent_result_callback", "/tool_result_callback"];

impl Guard {
    pub fn new(config: &Config) -> Self {
        let hosts: Vec<String> = config
            .auth
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        Self {
            inner: Arc::new(Inner {
                expected: config.auth.token.as_ref().map(|t| t.as_bytes().to_vec()),
                any_host: hosts.iter().any(|h| h == "*"),
                hosts,
                signed_callbacks: config.callbacks.secret.is_some(),
            }),
        }
    }

    /// Refuses to listen on `addr` beyond loopback without a token and a
    /// callback secret: naga types on the desktop and writes files for
    /// whoever reaches it.
    pub fn check_bind(config: &Config, addr: SocketAddr, service: &str) -> anyhow::Result<()> {
        if addr.ip().is_loopback() {
            return Ok(());
        }
        if config.auth.token.is_none() {
            anyhow::bail!(
                "refusing to listen on {addr} for the {service} server without a token: anyone \
                 who reaches it could control this desktop and write files. Set [auth] token (or \
                 NAGA_AUTH_TOKEN), or listen on 127.0.0.1 (see SECURITY.md)"
            );
        }
        if config.callbacks.secret.is_none() {
            anyhow::bail!(
                "refusing to listen on {addr} for the {service} server without [callbacks] \
                 secret: callbacks received could not be verified (see SECURITY.md)"
            );
        }
        Ok(())
    }

    fn host_allowed(&self, req: &Request) -> bool {
        if self.inner.any_host {
            return true;
        }
        let Some(host) = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
        else {
            // No Host at all (HTTP/1.0): not a browser's request.
            return true;
        };
        // `host[:port]` and nothing else (RFC 9110 §7.2): user info
        // (`127.0.0.1:80@evil.com` names evil.com) or a port that is not
        // a number is refused, not read past.
        let Ok(authority) = host.parse::<axum::http::uri::Authority>() else {
            return false;
        };
        if authority.as_str().contains('@')
            || (authority.as_str().rsplit_once(':'))
                .is_some_and(|(_, p)| !p.ends_with(']') && authority.port().is_none())
        {
            return false;
        }
        let name = authority.host();
        let name = (name.strip_prefix('[').and_then(|v6| v6.strip_suffix(']'))).unwrap_or(name);
        let localhost = name.len() >= 9
            && name.as_bytes()[name.len() - 9..].eq_ignore_ascii_case(b"localhost")
            && (name.len() == 9 || name.as_bytes()[name.len() - 10] == b'.');
        localhost
            || name.parse::<std::net::IpAddr>().is_ok()
            || self
                .inner
                .hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    }

    fn token_given(&self, req: &Request) -> Option<bool> {
        let expected = self.inner.expected.as_ref()?;
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        // `Bearer`, in any case (RFC 9110: the scheme is case-insensitive),
        // then the token after its spaces.
        let token = match given.iter().position(|&b| b == b' ') {
            Some(at) if given[..at].eq_ignore_ascii_case(b"bearer") => {
                let rest = &given[at..];
                &rest[rest.iter().take_while(|&&b| b == b' ').count()..]
            }
            _ => &[][..],
        };
        Some(bool::from(token.ct_eq(expected.as_slice())) && !token.is_empty())
    }
}

/// The middleware: see the module's description.
pub async fn check(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    // Two `Host` headers: which one a proxy or a check read is anyone's
    // guess (RFC 9112 makes the request invalid).
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return ApiError::bad_request(
            "invalid_host",
            "the request has more than one `Host` header",
        )
        .into_response();
    }
    if !guard.host_allowed(&req) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        tracing::warn!(
            host,
            path = req.uri().path(),
            "request for a host naga does not answer to refused"
        );
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "`Host: {host}` is not a name this server answers to (localhost, an IP address, \
                 or [auth] allowed_hosts)"
            ),
        )
        .into_response();
    }
    let path = req.uri().path();
    // A signed callback is authenticated by its handler (a cross-site form
    // cannot sign either).
    if guard.inner.signed_callbacks && SIGNED_ROUTES.contains(&path) {
        return next.run(req).await;
    }
    let token = guard.token_given(&req);
    if token == Some(false)
        && !OPEN_ROUTES.contains(&path)
        && !crate::dashboard::ROUTES.contains(&path)
    {
        let mut refused = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server needs `Authorization: Bearer <token>` ([auth] token)",
        )
        .into_response();
        refused
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge(&req));
        return refused;
    }
    let changes = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if changes && token != Some(true) && !is_json(&req) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request body as JSON (`Content-Type: application/json`), `{}` when there \
             is nothing to say",
        )
        .into_response();
    }
    next.run(req).await
}

/// `WWW-Authenticate` of a 401: a bearer token, and on `/mcp` where its
/// metadata is (RFC 9728 §5.1, which MCP clients follow).
fn challenge(req: &Request) -> HeaderValue {
    if req.uri().path() != "/mcp" {
        return HeaderValue::from_static("Bearer");
    }
    let origin = crate::extract::origin(req.headers());
    let metadata = format!("{origin}{}", crate::gateway::MCP_RESOURCE_METADATA);
    HeaderValue::from_str(&format!("Bearer resource_metadata=\"{metadata}\""))
        .unwrap_or(HeaderValue::from_static("Bearer"))
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .is_some_and(|v| {
            v.eq_ignore_ascii_case("application/json")
                || (v.len() > 5 && v[v.len() - 5..].eq_ignore_ascii_case("+json"))
        })
}

/// CORS: closed unless `[auth] cors_origins` names origins (`*`: any).
pub fn cors(config: &Config) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = &config.auth.cors_origins;
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::PUT])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    )
}
