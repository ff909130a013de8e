//! Bounds on what a request may carry, so that everything accepted can be
//! stored and read back (SQLite's JSON functions refuse nesting deeper
//! than 1,000; serde_json's typed parsing, deeper than 128).

/// Deepest nesting of arrays and objects accepted in a JSON body. A
/// `/schedule` body puts a call's `parameters` at depth 4; no client of
/// NagaAgent's nests anywhere near this.
pub const MAX_JSON_DEPTH: usize = 64;

/// Whether `json` nests arrays and objects deeper than `max` (brackets
/// inside strings do not count). A linear scan that allocates nothing; it
/// does not validate the rest of the syntax (the parser does that).
pub fn json_too_deep(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}1{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(!json_too_deep(nested(64).as_bytes(), 64));
        assert!(json_too_deep(nested(65).as_bytes(), 64));
        assert!(json_too_deep(br#"{"a":{"b":[{}]}}"#, 3));
        assert!(!json_too_deep(br#"{"a":{"b":[{}]}}"#, 4));
        let in_string = format!(r#"{{"s":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(!json_too_deep(in_string.as_bytes(), 1));
        assert!(
            !json_too_deep(br#"{"s":"\\"}"#, 1),
            "an escaped backslash ends before the quote"
        );
    }
}
