//! A2A push notifications ride the callback outbox (retried with backoff,
//! dead-lettered, replayable, signed with Standard Webhooks headers). What
//! makes a callback an A2A push is its URL's fragment, `#a2a-push` or
//! `#a2a-push=<token>`, and `&auth=<Authorization value>` after it (a
//! fragment is never sent over HTTP, nor shown by naga's API): the stored
//! envelope then also carries `task`, the A2A task, and the delivery sends
//! exactly its `StreamResponse` (`{"task": …}`, [`stream_response`]), the
//! push config's token as `X-A2A-Notification-Token` and its
//! authentication as `Authorization`, as A2A asks. Kept in the URL, they
//! survive a restart and a replay with no column of their own.

use crate::agents::CallOutcome;
use naga_core::{
    time::{iso, Millis},
    TaskStatus,
};
use naga_store::{CallRow, TaskRow};
use serde_json::{json, Value};

const MARKER: &str = "a2a-push";

/// The header that carries a push config's token.
pub const TOKEN_HEADER: &str = "X-A2A-Notification-Token";

/// What a push config asks the delivery to authenticate with (A2A's
/// `AuthenticationInfo`): sent as `Authorization: <scheme> <credentials>`.
pub struct Authentication<'a> {
    pub scheme: &'a str,
    pub credentials: &'a str,
}

/// The fragment's key of the `Authorization` value.
const AUTH: &str = "&auth=";

/// `url` marked as an A2A push (with `token`, and the `authentication` its
/// deliveries send). A token is a header value: letters, digits and
/// `-._~+/=` only; a scheme an HTTP token, credentials printable ASCII.
pub fn push_url(
    url: &str,
    token: Option<&str>,
    authentication: Option<Authentication>,
) -> Result<String, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("push url `{url}`: {e}"))?;
    let mut fragment = match token.filter(|t| !t.is_empty()) {
        Some(t)
            if t.len() <= 512
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~+/=".contains(c)) =>
        {
            format!("{MARKER}={t}")
        }
        Some(_) => return Err("a push token is at most 512 letters, digits or `-._~+/=`".into()),
        None => MARKER.to_owned(),
    };
    if let Some(auth) = authentication {
        let scheme_ok = (1..=64).contains(&auth.scheme.len())
            && (auth.scheme.chars())
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
        let credentials_ok = auth.credentials.len() <= 4096
            && (auth.credentials.chars()).all(|c| c.is_ascii_graphic() || c == ' ');
        if !scheme_ok || !credentials_ok {
            return Err(
                "a push authentication is a scheme (an HTTP token, e.g. Bearer) and \
                        credentials of at most 4096 printable ASCII characters"
                    .into(),
            );
        }
        let value = format!("{} {}", auth.scheme, auth.credentials);
        fragment.push_str(AUTH);
        fragment.extend(url::form_urlencoded::byte_serialize(
            value.trim_end().as_bytes(),
        ));
    }
    parsed.set_fragment(Some(&fragment));
    Ok(parsed.into())
}

/// Whether `url` is an A2A push, and its token.
pub fn push_of(url: &str) -> Option<Option<&str>> {
    let (_, fragment) = url.split_once('#')?;
    let marked = fragment.strip_prefix(MARKER)?;
    match marked.split_once(AUTH).map_or(marked, |(head, _)| head) {
        "" => Some(None),
        rest => rest.strip_prefix('=').map(Some),
    }
}

/// The `Authorization` value an A2A push's deliveries send, if its config
/// gave one.
pub fn push_authorization(url: &str) -> Option<String> {
    let (_, fragment) = url.split_once('#')?;
    let (_, value) = fragment.strip_prefix(MARKER)?.split_once(AUTH)?;
    let decoded = url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Some(decoded)
}

/// The body an A2A push delivers: the task's `StreamResponse`, `{"task":
/// …}` and nothing else (strict ProtoJSON receivers refuse unknown
/// fields), taken from the stored callback envelope; its sequence goes into
/// the task's `metadata` (a free-form Struct). `None` when the envelope has
/// no task.
pub fn stream_response(envelope: &str) -> Option<String> {
    let mut envelope: Value = serde_json::from_str(envelope).ok()?;
    let sequence = envelope["sequence"].take();
    let mut task = envelope.get_mut("task")?.take();
    if !task.is_object() {
        return None;
    }
    if !task["metadata"].is_object() {
        task["metadata"] = json!({});
    }
    task["metadata"]["naga_sequence"] = sequence;
    Some(json!({"task": task}).to_string())
}

/// A delivery to `url` as an A2A push, when it is one: its token and its
/// authentication as headers, and `body` (the stored envelope) as the
/// task's [`stream_response`]. Anything else goes as it is.
pub fn as_push(
    mut req: reqwest::RequestBuilder,
    url: &str,
    body: String,
) -> (reqwest::RequestBuilder, String) {
    let Some(token) = push_of(url) else {
        return (req, body);
    };
    if let Some(token) = token {
        req = req.header(TOKEN_HEADER, token);
    }
    if let Some(authorization) = push_authorization(url) {
        req = req.header(reqwest::header::AUTHORIZATION, authorization);
    }
    let body = stream_response(&body).unwrap_or(body);
    (req, body)
}

/// `url` without its fragment: what is shown of a callback's URL (a push
/// token is not shown).
pub fn public_url(url: &str) -> &str {
    url.split_once('#').map_or(url, |(base, _)| base)
}

/// A2A's name of a task state.
pub fn state(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Queued => "TASK_STATE_SUBMITTED",
        TaskStatus::Running => "TASK_STATE_WORKING",
        TaskStatus::Succeeded => "TASK_STATE_COMPLETED",
        TaskStatus::Failed | TaskStatus::TimedOut => "TASK_STATE_FAILED",
        TaskStatus::Cancelled => "TASK_STATE_CANCELED",
    }
}

/// A part carrying a value: text as text, anything else as data.
fn part(value: &Value) -> Value {
    match value {
        Value::String(s) => json!({"text": s}),
        other => json!({"data": other}),
    }
}

/// A naga task as an A2A task (protocol JSON): `contextId` its session,
/// each successful call's result an artifact, the error its status message.
pub fn task_json(
    id: &str,
    session_id: &str,
    status: TaskStatus,
    updated_at: Millis,
    error: Option<&str>,
    outcomes: &[&CallOutcome],
) -> Value {
    let mut state = json!({"state": state(status), "timestamp": iso(updated_at)});
    let artifacts: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.success)
        .map(|(i, o)| {
            json!({"artifactId": format!("{id}-{i}"), "name": "result",
                   "parts": [part(o.result.as_ref().unwrap_or(&Value::Null))]})
        })
        .collect();
    let error = error.or_else(|| outcomes.iter().find_map(|o| o.error.as_deref()));
    if let (true, Some(error)) = (status != TaskStatus::Succeeded, error) {
        state["message"] = json!({"messageId": format!("{id}-status"),
            "role": "ROLE_AGENT", "parts": [{"text": error}]});
    }
    json!({"id": id, "contextId": session_id, "status": state, "artifacts": artifacts,
           "metadata": {"naga_status": status}})
}

/// A stored task as an A2A task ([`task_json`]): the stored outcomes of
/// its calls (`calls`, as the store reads them) its artifacts.
pub fn stored_task_json(task: &TaskRow, calls: &[CallRow]) -> Value {
    let outcomes: Vec<CallOutcome> = calls
        .iter()
        .filter_map(|c| serde_json::from_str(c.result.as_deref()?).ok())
        .collect();
    let outcomes: Vec<&CallOutcome> = outcomes.iter().collect();
    task_json(
        &task.id,
        &task.session_id,
        task.status,
        task.updated_at(),
        task.error.as_deref(),
        &outcomes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_url_keeps_its_authentication_in_the_fragment_beside_its_token() {
        let auth = Authentication {
            scheme: "Basic",
            credentials: "dXNlcjpwYXNz&x=1#",
        };
        let url = push_url("http://127.0.0.1:9/hook", Some("tok"), Some(auth)).unwrap();
        assert_eq!(push_of(&url), Some(Some("tok")));
        assert_eq!(
            push_authorization(&url).as_deref(),
            Some("Basic dXNlcjpwYXNz&x=1#")
        );
        assert_eq!(public_url(&url), "http://127.0.0.1:9/hook");
        let bare = Authentication {
            scheme: "Bearer",
            credentials: "abc",
        };
        let url = push_url("http://127.0.0.1:9/hook", None, Some(bare)).unwrap();
        assert_eq!(push_of(&url), Some(None));
        assert_eq!(push_authorization(&url).as_deref(), Some("Bearer abc"));
        let bad = Authentication {
            scheme: "Bea rer",
            credentials: "abc",
        };
        assert!(push_url("http://127.0.0.1:9/hook", None, Some(bad)).is_err());
        let bad = Authentication {
            scheme: "Bearer",
            credentials: "a\r\nX-Injected: 1",
        };
        assert!(push_url("http://127.0.0.1:9/hook", None, Some(bad)).is_err());
    }

    #[test]
    fn a_push_body_is_the_task_s_stream_response_and_nothing_else() {
        let envelope = r#"{"task_id":"t","success":true,"task":{"id":"t","metadata":{"naga_status":"succeeded"}},"sequence":7}"#;
        let body: Value = serde_json::from_str(&stream_response(envelope).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"task": {"id": "t", "metadata": {"naga_status": "succeeded", "naga_sequence": 7}}})
        );
        assert_eq!(stream_response(r#"{"task_id":"t","sequence":1}"#), None);
    }

    #[test]
    fn a_push_url_keeps_its_token_in_the_fragment_and_shows_none() {
        let url = push_url("http://127.0.0.1:9/hook?x=1", Some("tok-1.A"), None).unwrap();
        assert_eq!(url, "http://127.0.0.1:9/hook?x=1#a2a-push=tok-1.A");
        assert_eq!(push_of(&url), Some(Some("tok-1.A")));
        assert_eq!(public_url(&url), "http://127.0.0.1:9/hook?x=1");
        let bare = push_url("http://127.0.0.1:9/hook", None, None).unwrap();
        assert_eq!(push_of(&bare), Some(None));
        assert_eq!(push_of("http://127.0.0.1:9/hook"), None);
        assert_eq!(push_of("http://127.0.0.1:9/hook#other"), None);
        assert!(push_url("http://127.0.0.1:9/", Some("a b"), None).is_err());
    }
}
