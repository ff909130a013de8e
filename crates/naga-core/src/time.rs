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
///
/// Written digit by digit for 1970 to 9999 (every timestamp naga makes:
/// one or two per accepted batch, where chrono's formatter cost as much as
/// serializing the whole answer); chrono's rendering otherwise.
pub fn iso(ms: Millis) -> String {
    /// 10000-01-01T00:00:00.000 UTC.
    const YEAR_10000: Millis = 253_402_300_800_000;
    if !(0..YEAR_10000).contains(&ms) {
        return Utc
            .timestamp_millis_opt(ms)
            .single()
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, false);
    }
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (secs, milli) = (ms_of_day / 1000, ms_of_day % 1000);
    let mut out = [0u8; 29];
    let mut at = 0;
    let mut put = |value: Millis, digits: u32, then: u8| {
        for d in (0..digits).rev() {
            out[at] = b'0' + (value / 10_i64.pow(d) % 10) as u8;
            at += 1;
        }
        out[at] = then;
        at += 1;
    };
    put(year, 4, b'-');
    put(month, 2, b'-');
    put(day, 2, b'T');
    put(secs / 3600, 2, b':');
    put(secs / 60 % 60, 2, b':');
    put(secs % 60, 2, b'.');
    put(milli, 3, b'+');
    out[at..].copy_from_slice(b"00:00");
    // Only ASCII digits and separators were written.
    String::from_utf8_lossy(&out).into_owned()
}

/// Year, month (1–12) and day (1–31) of a count of days since 1970-01-01
/// (H. Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: Millis) -> (Millis, Millis, Millis) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + Millis::from(month <= 2);
    (year, month, day)
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
        assert_eq!(iso(0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(iso(951_782_400_123), "2000-02-29T00:00:00.123+00:00");
        assert_eq!(iso(253_402_300_799_999), "9999-12-31T23:59:59.999+00:00");
    }

    fn chrono_iso(ms: Millis) -> String {
        Utc.timestamp_millis_opt(ms)
            .single()
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, false)
    }

    proptest::proptest! {
        /// The digit-by-digit rendering is chrono's, inside its range and
        /// at its edges (outside it, chrono renders).
        #[test]
        fn iso_is_chronos_rendering(ms in 0i64..253_402_300_800_000) {
            proptest::prop_assert_eq!(iso(ms), chrono_iso(ms));
        }

        #[test]
        fn iso_outside_the_fast_range_is_chronos(ms in proptest::prelude::any::<i64>()) {
            proptest::prop_assert_eq!(iso(ms), chrono_iso(ms));
        }
    }
}
