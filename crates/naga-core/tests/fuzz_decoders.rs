//! Fuzzing by property tests: the request decoders and the JSON depth
//! bound never panic on any input, and the bound agrees with a real
//! parser. `.ci/run` runs these (`fuzz_*`) again with many more cases.

use naga_core::limits::{json_too_deep, MAX_JSON_DEPTH};
use naga_core::wire::{AgentScheduleRequest, McpScheduleRequest};
use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value, nested up to about `depth` levels.
fn json_value(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        "[\\[\\]{}\"\\\\:,]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 256, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value nested `extra` more levels inside arrays and objects.
fn wrapped(v: Value, extra: usize, objects: bool) -> Value {
    (0..extra).fold(v, |v, i| match objects && i % 2 == 0 {
        true => serde_json::json!({ "k": v }),
        false => Value::Array(vec![v]),
    })
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A schedule request's text with some bytes changed: close to valid,
/// which reaches deeper into the decoders than random bytes do.
fn mutated_request() -> impl Strategy<Value = Vec<u8>> {
    let seed = br#"{"query":"q","agent_calls":[{"tool_name":"echo","instruction":"\u6253\u5f00","parameters":{"delay_ms":1}}],"tool_calls":[{"service_name":"s","tool_name":"t","a":[1,{"b":null}]}],"session_id":"s","analysis_session_id":"analysis_s_1","request_id":"r","callback_url":"http://127.0.0.1:1/cb","multitask_strategy":"reject"}"#;
    prop::collection::vec((0..seed.len(), any::<u8>()), 0..6).prop_map(move |edits| {
        let mut bytes = seed.to_vec();
        for (at, b) in edits {
            bytes[at] = b;
        }
        bytes
    })
}

proptest! {
    #[test]
    fn fuzz_decoders_never_panic_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<AgentScheduleRequest>(&bytes);
        let _ = serde_json::from_slice::<McpScheduleRequest>(&bytes);
        let _ = json_too_deep(&bytes, MAX_JSON_DEPTH);
    }

    #[test]
    fn fuzz_decoders_never_panic_on_nearly_valid_requests(bytes in mutated_request()) {
        let _ = json_too_deep(&bytes, MAX_JSON_DEPTH);
        if let Ok(r) = serde_json::from_slice::<AgentScheduleRequest>(&bytes) {
            for call in r.agent_calls.unwrap_or_default() {
                // A call that decodes is an object whose text parses again.
                prop_assert!(call.get().starts_with('{'), "a call is an object");
                let _ = call.parse();
            }
        }
        let _ = serde_json::from_slice::<McpScheduleRequest>(&bytes);
    }

    #[test]
    fn fuzz_the_depth_bound_agrees_with_a_parser(
        v in json_value(6),
        extra in 0usize..100,
        objects in any::<bool>(),
    ) {
        let v = wrapped(v, extra, objects);
        let text = serde_json::to_string(&v).unwrap();
        prop_assert_eq!(json_too_deep(text.as_bytes(), MAX_JSON_DEPTH), depth(&v) > MAX_JSON_DEPTH);
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        prop_assert_eq!(json_too_deep(pretty.as_bytes(), MAX_JSON_DEPTH), depth(&v) > MAX_JSON_DEPTH);
    }
}
