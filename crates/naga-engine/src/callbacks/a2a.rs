//! A2A push notifications ride the callback outbox (retried with backoff,
//! dead-lettered, replayable, signed with Standard Webhooks headers). What
//! makes a callback an A2A push is its URL's fragment, `#a2a-push` or
//! `#a2a-push=<token>` (a fragment is never sent over HTTP): the body then
//! also carries `task`, the A2A task (so an A2A receiver reads it as the
//! protocol's `StreamResponse`), and the delivery sends the push config's
//! token as `X-A2A-Notification-Token`, as A2A asks. Kept in the URL, both
//! survive a restart and a replay with no column of their own.

use crate::agents::CallOutcome;
use naga_core::{
    time::{iso, Millis},
    TaskStatus,
};
use serde_json::{json, Value};

const MARKER: &str = "a2a-push";

/// The header that carries a push config's token.
pub const TOKEN_HEADER: &str = "X-A2A-Notification-Token";

/// `url` marked as an A2A push (with `token`). A token is a header value:
/// letters, digits and `-._~+/=` only.
pub fn push_url(url: &str, token: Option<&str>) -> Result<String, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("push url `{url}`: {e}"))?;
    let fragment = match token.filter(|t| !t.is_empty()) {
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
    parsed.set_fragment(Some(&fragment));
    Ok(parsed.into())
}

/// Whether `url` is an A2A push, and its token.
pub fn push_of(url: &str) -> Option<Option<&str>> {
    let (_, fragment) = url.split_once('#')?;
    match fragment.strip_prefix(MARKER)? {
        "" => Some(None),
        rest => rest.strip_prefix('=').map(Some),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_url_keeps_its_token_in_the_fragment_and_shows_none() {
        let url = push_url("http://127.0.0.1:9/hook?x=1", Some("tok-1.A")).unwrap();
        assert_eq!(url, "http://127.0.0.1:9/hook?x=1#a2a-push=tok-1.A");
        assert_eq!(push_of(&url), Some(Some("tok-1.A")));
        assert_eq!(public_url(&url), "http://127.0.0.1:9/hook?x=1");
        let bare = push_url("http://127.0.0.1:9/hook", None).unwrap();
        assert_eq!(push_of(&bare), Some(None));
        assert_eq!(push_of("http://127.0.0.1:9/hook"), None);
        assert_eq!(push_of("http://127.0.0.1:9/hook#other"), None);
        assert!(push_url("http://127.0.0.1:9/", Some("a b")).is_err());
    }
}
