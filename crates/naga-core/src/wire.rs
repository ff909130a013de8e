//! Wire contracts of docs/design.md: the JSON that clients and callback receivers
//! see. Field names are NagaAgent's and must not change.

use crate::config::SessionPolicy;
use serde::{de::Error as _, Deserialize, Deserializer, Serialize};
use serde_json::{value::RawValue, Map, Value};

/// One call of a batch as the client sent it: its fields are the agent's
/// (or tool's) input and are kept verbatim.
pub type CallPayload = Map<String, Value>;

/// A call as it arrives in `/schedule`: a JSON object, kept as the text the
/// client sent. A batch is stored and waits as text and is parsed when it
/// runs, so accepting one builds no map per call only to print it again.
#[derive(Debug, Clone)]
pub struct RawCall(Box<RawValue>);

impl RawCall {
    /// The call's JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The call's fields.
    pub fn parse(&self) -> CallPayload {
        serde_json::from_str(self.get()).unwrap_or_default()
    }

    /// A call made here (e.g. by the legacy endpoint).
    pub fn from_payload(call: &CallPayload) -> Self {
        let text = serde_json::to_string(call).unwrap_or_else(|_| "{}".into());
        Self(RawValue::from_string(text).expect("a printed map is JSON"))
    }

    pub fn into_text(self) -> Box<str> {
        self.0.into()
    }
}

impl<'de> Deserialize<'de> for RawCall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        // A raw value starts at its first character: `{` is an object.
        if !raw.get().starts_with('{') {
            return Err(D::Error::invalid_type(
                serde::de::Unexpected::Other(&crate::ids::clip(raw.get(), 40)),
                &"a JSON object (one call)",
            ));
        }
        if let Some(at) = lone_surrogate(raw.get()) {
            return Err(D::Error::custom(format!(
                "a lone UTF-16 surrogate `{}` in a string: not text",
                &raw.get()[at..at + 6]
            )));
        }
        Ok(Self(raw))
    }
}

/// Where valid JSON text has a `\uXXXX` escape of half a surrogate pair
/// without its other half. Parsing into strings refuses those; capturing raw
/// text does not, and such a call could never be read back, so it is refused
/// at intake as a parser would. (In valid JSON every `\` starts an escape
/// inside a string, and a `\u` has four hex digits.)
fn lone_surrogate(json: &str) -> Option<usize> {
    let bytes = json.as_bytes();
    let unit = |at: usize| {
        let hex = json.get(at + 2..at + 6)?;
        (bytes.get(at + 1) == Some(&b'u'))
            .then(|| u16::from_str_radix(hex, 16).ok())
            .flatten()
    };
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            // Most calls have no escape at all: find the next one fast.
            match json.get(i..).and_then(|rest| rest.find('\\')) {
                Some(next) => i += next,
                None => return None,
            }
            continue;
        }
        match unit(i) {
            Some(0xD800..=0xDBFF) => match unit(i + 6) {
                Some(0xDC00..=0xDFFF) => i += 12,
                _ => return Some(i),
            },
            Some(0xDC00..=0xDFFF) => return Some(i),
            Some(_) => i += 6,
            None => i += 2,
        }
    }
    None
}

/// `POST /schedule` on the agent server (the seed's request).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
pub struct AgentScheduleRequest {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub agent_calls: Option<Vec<RawCall>>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub analysis_session_id: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Overrides `[scheduler] session_policy` for this batch.
    #[serde(default)]
    pub multitask_strategy: Option<SessionPolicy>,
}

/// `POST /schedule` on the MCP server: `tool_calls` instead of `agent_calls`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
pub struct McpScheduleRequest {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub tool_calls: Option<Vec<RawCall>>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub analysis_session_id: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub multitask_strategy: Option<SessionPolicy>,
}

/// The answer to `/schedule`, given before any call runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleResponse {
    pub success: bool,
    /// `scheduled` or `no_tasks`.
    pub status: String,
    pub task_id: Option<String>,
    pub message: String,
    pub accepted_at: String,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
}

/// The kind of calls a task holds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Agent,
    Mcp,
}

impl TaskKind {
    pub const ALL: [TaskKind; 2] = [Self::Agent, Self::Mcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Mcp => "mcp",
        }
    }
}

crate::status::stored_enum!(TaskKind, "task kind");

/// JSON text made once and embedded as is (a callback's result entries).
pub type RawJson = Box<RawValue>;

/// `value` as JSON text (`null` if it cannot be printed, which the types
/// printed here cannot fail to be).
pub fn raw_json<T: Serialize + ?Sized>(value: &T) -> RawJson {
    serde_json::value::to_raw_value(value)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("`null` is JSON"))
}

/// `value` as JSON text, printed into a buffer of `capacity` bytes made at
/// once (serde_json's own starts at 128 bytes and grows by doubling: twice
/// for a `/schedule` answer). Empty if it cannot be printed, which the
/// types printed here cannot fail to be.
pub fn json_text<T: Serialize + ?Sized>(value: &T, capacity: usize) -> String {
    let mut out = Vec::with_capacity(capacity);
    let _ = serde_json::to_writer(&mut out, value);
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// What is POSTed to `callback_url` when a task ends.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackEnvelope {
    pub task_id: String,
    pub request_id: String,
    pub kind: TaskKind,
    pub session_id: String,
    pub analysis_session_id: Option<String>,
    pub status: String,
    pub success: bool,
    pub error: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub results: Vec<RawJson>,
    pub completed_at: String,
    /// Upstream MCP receivers read `result: {success, results, message}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub result: Option<RawJson>,
    /// An A2A push notification's task (A2A's protocol JSON), so that an
    /// A2A receiver reads the body as its `StreamResponse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub task: Option<RawJson>,
    /// Increases with every callback this store emits: receivers order by
    /// it. The last member (see `json_head`).
    pub sequence: i64,
}

impl CallbackEnvelope {
    /// The envelope's JSON up to the value of `sequence`, its last member,
    /// which the store assigns as it commits the callback: the body is
    /// `head`, the sequence, `}`. (Serialized by the caller, not on the
    /// store's writer thread that every request waits on.)
    pub fn json_head(&self) -> String {
        let mut json = serde_json::to_string(self).unwrap_or_default();
        let key = "\"sequence\":";
        let end = json.rfind(key).map_or(0, |at| at + key.len());
        json.truncate(end);
        json
    }
}

/// Every error body: `{"success": false, "detail", "code"}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub success: bool,
    pub detail: String,
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_is_an_object_of_text_a_parser_would_read() {
        let call = |json: &str| serde_json::from_str::<RawCall>(json);
        for ok in [
            r#"{"tool_name": "echo"}"#,
            r#"{"text": "\u6253\u5f00 \ud83d\ude00 \\ud800 \n"}"#,
            r#"{"t": "\\\u0041"}"#,
        ] {
            let c = call(ok).unwrap();
            assert_eq!(c.get(), ok, "kept as sent");
            assert!(!c.parse().is_empty(), "{ok} reads back");
        }
        for bad in [
            r#""open notepad""#,
            "[1]",
            r#"{"t": "\ud800"}"#,
            r#"{"t": "\ud800\u0041"}"#,
            r#"{"t": "x\udc00"}"#,
            r#"{"t": "\\\ud800"}"#,
        ] {
            assert!(call(bad).is_err(), "{bad} is refused");
            assert!(
                serde_json::from_str::<CallPayload>(bad).is_err(),
                "as a parser does"
            );
        }
    }

    /// The store completes the head with the sequence it assigns: the body
    /// must be the envelope with that sequence, whatever the results hold.
    #[test]
    fn a_callback_body_is_its_head_and_sequence() {
        for result in [
            None,
            Some(raw_json(
                &json!({"success": true, "message": "\"sequence\":"}),
            )),
        ] {
            let envelope = CallbackEnvelope {
                task_id: "t".into(),
                request_id: "t".into(),
                kind: TaskKind::Mcp,
                session_id: "s".into(),
                analysis_session_id: None,
                status: "succeeded".into(),
                success: true,
                error: None,
                results: vec![raw_json(
                    &json!({"sequence": 99, "text": "\"sequence\":1}"}),
                )],
                completed_at: "2026-11-25T00:00:00+00:00".into(),
                result,
                task: None,
                sequence: 0,
            };
            let body = format!("{}{}}}", envelope.json_head(), 4242);
            let back: Value = serde_json::from_str(&body).unwrap();
            let expected = CallbackEnvelope {
                sequence: 4242,
                ..envelope
            };
            assert_eq!(back, serde_json::to_value(&expected).unwrap());
            assert_eq!(back["results"][0]["text"], "\"sequence\":1}");
        }
    }
}
