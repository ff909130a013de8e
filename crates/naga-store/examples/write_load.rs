//! The store's share of a batch, without HTTP: `cargo run --release -p
//! naga-store --example write_load -- [batches] [concurrency]`. Each batch
//! is what the engine writes for two `echo` calls with a callback: accept
//! (as running), first call, last call with the end and the callback, delivery.
//! Prints batches/s and the CPU seconds of the writer and checkpointer threads.

use naga_core::{
    wire::{raw_json, CallbackEnvelope, TaskKind},
    TaskStatus,
};
use naga_store::{
    CallFinish, DeliveryOutcome, EnvelopeHead, Finished, Inserted, Lease, NewStep, NewTask, Store,
    TaskFinish,
};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds of this process's threads named `name`.
fn thread_cpu(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .map(|s| {
            let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
            (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
        })
        .sum()
}

async fn one_batch(store: Store, i: usize) {
    let id = format!(
        "{:032x}",
        (i as u128).wrapping_mul(0x9e3779b97f4a7c15f39cc0605cedc835)
    );
    let session = format!("bench_session_{}", i % 1000);
    let now = chrono::Utc::now().timestamp_millis();
    let calls: Vec<String> = (0..2)
        .map(|c| format!(r#"{{"agentType":"agent","instruction":"step {c}","service_name":"agent_server","tool_name":"echo"}}"#))
        .collect();
    let lease = Lease {
        owner: "node".into(),
        until: now + 30_000,
    };
    let Inserted::New { seq, .. } = store
        .insert_task(NewTask {
            id: id.clone(),
            kind: naga_core::wire::TaskKind::Agent,
            session_id: session.clone(),
            analysis_session_id: Some(format!("analysis_{session}_1703123456")),
            query: Some("批量Agent任务执行 (2 个)".into()),
            callback_url: Some("http://127.0.0.1:9/cb".into()),
            policy: naga_core::config::SessionPolicy::Enqueue,
            fingerprint: None,
            calls: format!("[{}]", calls.join(",")),
            calls_count: calls.len(),
            // Rebuilt from the row on a repeat, as naga does: stored empty.
            response: String::new(),
            accepted_at: now,
            lease,
            started: true, // its session idle: committed as running, as the engine does
            clock: None,
        })
        .await
        .unwrap()
    else {
        panic!("batch {i} was stored before");
    };
    let finish = |idx: i64| CallFinish {
        task_seq: seq,
        owner: "node".into(),
        idx,
        result: format!(r#"{{"success":true,"result":"step {idx}"}}"#),
        started_at: now,
        step: NewStep {
            task_id: id.clone(),
            call_idx: Some(idx),
            purpose: Some(format!("echo: step {idx}")),
            content: Some(calls[idx as usize].clone()),
            output: Some(format!("step {idx}")),
            success: true,
            created_at: now,
            ..Default::default()
        },
    };
    store.finish_call(finish(0)).await.unwrap();
    let envelope = CallbackEnvelope {
        task_id: id.clone(),
        request_id: id.clone(),
        kind: TaskKind::Agent,
        session_id: session.clone(),
        analysis_session_id: Some(format!("analysis_{session}_1703123456")),
        status: "succeeded".into(),
        success: true,
        error: None,
        results: vec![
            raw_json(&serde_json::json!({"index": 0, "success": true, "result": "step 0"})),
            raw_json(&serde_json::json!({"index": 1, "success": true, "result": "step 1"})),
        ],
        completed_at: "2026-11-25T00:43:48.949+00:00".into(),
        sequence: 0,
        result: None,
        task: None,
    };
    let cb = format!("msg_{i:032x}"); // time-ordered, as the engine makes them (UUIDv7)
    let ended = store
        .finish_task(TaskFinish {
            task_id: id.clone(),
            task_seq: seq,
            owner: "node".into(),
            last_call: Some(finish(1)),
            status: TaskStatus::Succeeded,
            error: None,
            finished_at: now,
            callback: Some(("http://127.0.0.1:9/cb".into(), EnvelopeHead::of(&envelope))),
            callback_id: cb,
            summary: Some(r#"{"current_status":"succeeded: 2 of 2 calls succeeded","failed_attempts":[],"key_findings":["echo: step 0 → step 0","echo: step 1 → step 1"],"method":"deterministic","next_steps":[]}"#.into()),
            lease_until: 1_000_000,
            take_next: false,
        })
        .await
        .unwrap();
    let Finished::Ended {
        callback: Some(row),
        ..
    } = ended
    else {
        panic!("the task ends with its callback");
    };
    store
        .record_delivery("node", row.seq, DeliveryOutcome::Delivered, now)
        .await
        .unwrap();
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let batches: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("naga.db").display());
    let store = Store::open(&url, &naga_core::config::StoreConfig::default())
        .await
        .unwrap();
    let start = Instant::now();
    let cpu0 = thread_cpu("naga-writer");
    let checkpoint0 = thread_cpu("naga-checkpoint");
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= batches {
                        break;
                    }
                    one_batch(store.clone(), i).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = thread_cpu("naga-writer") - cpu0;
    let checkpoint = thread_cpu("naga-checkpoint") - checkpoint0;
    println!(
        "{batches} batches in {secs:.2} s: {:.0} batches/s; writer CPU {cpu:.2} s ({:.1} µs/batch), \
         checkpointer {checkpoint:.2} s",
        batches as f64 / secs,
        cpu * 1e6 / batches as f64
    );
    store.close().await;
}
