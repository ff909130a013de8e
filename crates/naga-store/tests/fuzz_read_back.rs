//! Fuzzing by property tests: whatever JSON the door lets in is read back
//! whole, and stored text that is not JSON is reported, never a panic.
//! `.ci/run` runs these (`fuzz_*`) again with many more cases.

use naga_core::{config::StoreConfig, limits::MAX_JSON_DEPTH};
use naga_store::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A call: an object, its value nested up to the door's bound.
fn call() -> impl Strategy<Value = String> {
    (json_value(), 0usize..(MAX_JSON_DEPTH - 8)).prop_map(|(v, extra)| {
        let nested = (0..extra).fold(v, |v, _| Value::Array(vec![v]));
        serde_json::json!({"tool_name": "echo", "parameters": nested}).to_string()
    })
}

fn task(id: String, calls: String, count: usize) -> NewTask {
    NewTask {
        id,
        kind: naga_core::wire::TaskKind::Agent,
        session_id: "fuzz".into(),
        analysis_session_id: None,
        query: None,
        callback_url: None,
        policy: naga_core::config::SessionPolicy::Enqueue,
        fingerprint: None,
        calls,
        calls_count: count,
        response: String::new(),
        accepted_at: 0,
        lease: Lease {
            owner: "A".into(),
            until: 1,
        },
        started: false,
        clock: None,
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

#[test]
fn fuzz_the_store_reads_back_what_it_accepted_and_reports_what_it_cannot() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
    let store = rt
        .block_on(Store::open(&url, &StoreConfig::default()))
        .unwrap();
    let mut runner = TestRunner::new(Config::with_cases(cases()));
    let n = std::sync::atomic::AtomicU64::new(0);
    runner
        .run(&prop::collection::vec(call(), 1..4), |calls| {
            let id = format!(
                "good-{}",
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let text = format!("[{}]", calls.join(","));
            let back = rt.block_on(async {
                store
                    .insert_task(task(id.clone(), text, calls.len()))
                    .await
                    .unwrap();
                store.calls(&id).await.unwrap()
            });
            let payloads: Vec<&str> = back.iter().map(|c| c.payload.as_str()).collect();
            prop_assert_eq!(
                payloads,
                calls.iter().map(String::as_str).collect::<Vec<_>>()
            );
            Ok(())
        })
        .unwrap();
    runner
        .run(&"\\PC{0,64}", |garbage| {
            let id = format!(
                "bad-{}",
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let read = rt.block_on(async {
                store
                    .insert_task(task(id.clone(), garbage.clone(), 1))
                    .await
                    .unwrap();
                store.calls(&id).await
            });
            match read {
                Ok(calls) => prop_assert!(
                    serde_json::from_str::<Vec<Value>>(&garbage).is_ok(),
                    "{calls:?}"
                ),
                Err(StoreError::Corrupt(_)) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(store.close());
}
