//! Property tests of the analyzer's parser.

use naga_core::analysis::parse_tool_calls;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Text a model might write inside a string: Chinese, full-width
/// punctuation, spaces, ASCII.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 一-龥，：｛｝、。_-]{0,24}"
}

fn call() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop_oneof![Just("mcp"), Just("agent")],
        prop::collection::btree_map("[a-z_]{1,10}", text(), 0..5),
    )
        .prop_map(|(kind, fields)| {
            let mut m = Map::new();
            m.insert("agentType".into(), Value::String(kind.into()));
            for (k, v) in fields {
                if k != "agentType" {
                    m.insert(k, Value::String(v));
                }
            }
            m
        })
}

/// Renders calls the way the upstream prompt's examples look: full-width
/// braces, colons and commas, curly quotes, prose around them.
fn upstream_style(calls: &[Map<String, Value>], fullwidth: bool) -> String {
    let (open, close, colon, comma) = if fullwidth {
        ("｛", "｝", "：", "，")
    } else {
        ("{", "}", ":", ",")
    };
    let mut out = String::from("好的，以下是任务：\n");
    for c in calls {
        out.push_str(open);
        out.push('\n');
        let pairs: Vec<String> = c
            .iter()
            .map(|(k, v)| format!("“{k}”{colon} “{}”", v.as_str().unwrap()))
            .collect();
        out.push_str(&pairs.join(&format!("{comma}\n")));
        out.push('\n');
        out.push_str(close);
        out.push('\n');
    }
    out.push_str("以上。");
    out
}

proptest! {
    #[test]
    fn never_panics_on_any_input(s in "\\PC{0,400}") {
        let _ = parse_tool_calls(&s);
    }

    #[test]
    fn never_panics_on_brace_soup(s in "[{}｛｝\\[\\]:：,，\"“”' a-z0-9\n]{0,300}") {
        let _ = parse_tool_calls(&s);
    }

    #[test]
    fn recovers_every_call_written_upstream_style(calls in prop::collection::vec(call(), 0..6), fullwidth in any::<bool>()) {
        let parsed = parse_tool_calls(&upstream_style(&calls, fullwidth));
        let want_mcp: Vec<_> = calls.iter().filter(|c| c["agentType"] == "mcp").cloned().collect();
        let want_agent: Vec<_> = calls.iter().filter(|c| c["agentType"] == "agent").cloned().collect();
        prop_assert_eq!(parsed.mcp, want_mcp);
        prop_assert_eq!(parsed.agent, want_agent);
        prop_assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    }
}
