//! Identifiers of the unified session management (docs/design.md, "Identifiers").

use std::fmt;

/// Longest accepted session, analysis-session or request id, in characters.
pub const MAX_ID_CHARS: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("`{field}` is longer than {MAX_ID_CHARS} characters")]
    TooLong { field: &'static str },
    #[error("`{field}` must not contain control characters")]
    Control { field: &'static str },
    #[error("`{field}` must not contain invisible or text-direction characters (zero-width, bidi overrides)")]
    Invisible { field: &'static str },
}

/// Characters that are not seen but change how an id reads: zero-width
/// ones, bidi embeddings, overrides and isolates, the byte-order mark.
/// Two ids that look the same in a log or a UI must be the same id.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}')
}

/// Checks an identifier supplied by a client: non-empty, at most
/// [`MAX_ID_CHARS`] characters, no control characters (they would corrupt
/// logs), no invisible or text-direction ones (they would disguise it).
pub fn validate_id(field: &'static str, value: &str) -> Result<(), IdError> {
    if value.trim().is_empty() {
        return Err(IdError::Empty { field });
    }
    if value.chars().count() > MAX_ID_CHARS {
        return Err(IdError::TooLong { field });
    }
    if value.chars().any(char::is_control) {
        return Err(IdError::Control { field });
    }
    if value.chars().any(invisible) {
        return Err(IdError::Invisible { field });
    }
    Ok(())
}

/// One conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        validate_id("session_id", &value)?;
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The analysis-session id the background analyzer makes for one run:
/// `analysis_{session_id}_{unix_secs}`.
pub fn analysis_session_id(session: &SessionId, unix_secs: i64) -> String {
    format!("analysis_{}_{}", session.as_str(), unix_secs)
}

/// Whether `analysis_id` has the form the analyzer makes for `session`.
pub fn analysis_session_matches(analysis_id: &str, session: &str) -> bool {
    analysis_id
        .strip_prefix("analysis_")
        .and_then(|rest| rest.strip_prefix(session))
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|secs| !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit()))
}

/// At most `max` characters of `s`, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((at, _)) => concat(&[&s[..at], "…"]),
    }
}

/// The parts one after another, in one allocation: `format!` costs ~800
/// instructions a call, which the per-call texts of every batch (commands,
/// summaries, messages) paid several times over.
pub fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

/// A fresh request id (UUID v4), used when a client sends none.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_validated() {
        assert!(SessionId::parse("user_session_123").is_ok());
        assert_eq!(
            SessionId::parse("  "),
            Err(IdError::Empty {
                field: "session_id"
            })
        );
        assert!(SessionId::parse("x".repeat(257)).is_err());
        assert!(SessionId::parse("会".repeat(256)).is_ok());
        assert!(SessionId::parse("a\nb").is_err());
        for disguised in [
            "user\u{202E}321",
            "user\u{200B}",
            "\u{FEFF}user",
            "a\u{2066}b",
        ] {
            assert_eq!(
                SessionId::parse(disguised),
                Err(IdError::Invisible {
                    field: "session_id"
                }),
                "{disguised:?}"
            );
        }
        assert!(SessionId::parse("用户_session-123.x@y").is_ok());
    }

    #[test]
    fn analysis_ids_map_back_to_their_session() {
        let s = SessionId::parse("user_session_123").unwrap();
        let a = analysis_session_id(&s, 1_703_123_456);
        assert_eq!(a, "analysis_user_session_123_1703123456");
        assert!(analysis_session_matches(&a, "user_session_123"));
        assert!(!analysis_session_matches(&a, "user_session_12"));
        assert!(!analysis_session_matches(
            "analysis_user_session_123_",
            "user_session_123"
        ));
    }
}
