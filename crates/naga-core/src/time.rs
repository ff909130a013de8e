//! Timestamps: stored as integer milliseconds since the Unix epoch (portable
//! between SQLite and PostgreSQL), shown as RFC 3339 with an explicit offset,
//! which Python's `datetime.fromisoformat` parses.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub fn to_millis(t: DateTime<Utc>) -> Millis {
    t.timestamp_millis()
}

/// RFC 3339 rendering of a stored timestamp, e.g. `2024-01-01T12:00:00.000+00:00`.
pub fn iso(ms: Millis) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

pub fn iso_opt(ms: Option<Millis>) -> Option<String> {
    ms.map(iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_renders_utc_with_offset() {
        assert_eq!(iso(1_703_123_456_000), "2023-12-21T01:50:56.000+00:00");
    }
}
