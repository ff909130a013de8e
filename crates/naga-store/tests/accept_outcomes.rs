//! Every outcome of accepting a batch, on every backend, from one table of
//! cases: SQLite decides them in its writer (`sqlite/tasks.rs`), PostgreSQL
//! in `naga_accept_one` (`postgres/functions.sql`); both must answer alike.

mod common;

use common::{backends, echo_task, task_end};
use naga_core::config::SessionPolicy;
use naga_store::{Inserted, NewTask, Store, StoreError};

/// What the store answers a batch.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Stored: `started` (running, held by its node) and `ready`.
    New { started: bool, ready: bool },
    /// The request id was known for this very batch: its first answer.
    Existing,
    /// The request id was known for another batch: refused.
    Reused,
    /// An identical batch (same fingerprint) is active: the answer of `id`.
    Duplicate { id: &'static str },
    /// A `reject` batch, its session busy: refused.
    Busy,
    /// The analysis session belongs to another session: refused.
    Conflict,
}

/// What is in the store before the batch: batches of session `s` (or `t`)
/// accepted, some ended.
#[derive(Clone, Copy)]
enum Before {
    Nothing,
    /// `first` of session `s`, running (fingerprint `fp`).
    Running,
    /// `first` of session `s`, ended.
    Ended,
    /// `first` of session `t`, with the analysis session `analysis_s`.
    OtherSessionsAnalysis,
}

struct Case {
    name: &'static str,
    before: Before,
    batch: fn() -> NewTask,
    expect: Outcome,
}

fn batch() -> NewTask {
    let mut t = echo_task("second", "s", "A", 1_000_000);
    t.fingerprint = Some("other".into());
    t
}

const CASES: &[Case] = &[
    Case {
        name: "an idle session's batch starts on the node that accepted it",
        before: Before::Nothing,
        batch,
        expect: Outcome::New {
            started: true,
            ready: true,
        },
    },
    Case {
        name: "an idle session's batch not asked to start waits, ready",
        before: Before::Nothing,
        batch: || NewTask {
            started: false,
            ..batch()
        },
        expect: Outcome::New {
            started: false,
            ready: true,
        },
    },
    Case {
        name: "a batch whose session's batch before it has ended starts",
        before: Before::Ended,
        batch,
        expect: Outcome::New {
            started: true,
            ready: true,
        },
    },
    Case {
        name: "a busy session's batch waits its turn (enqueue)",
        before: Before::Running,
        batch,
        expect: Outcome::New {
            started: false,
            ready: false,
        },
    },
    Case {
        name: "a busy session's parallel batch starts at once",
        before: Before::Running,
        batch: || NewTask {
            policy: SessionPolicy::Parallel,
            ..batch()
        },
        expect: Outcome::New {
            started: true,
            ready: true,
        },
    },
    Case {
        name: "a busy session's reject batch is refused",
        before: Before::Running,
        batch: || NewTask {
            policy: SessionPolicy::Reject,
            ..batch()
        },
        expect: Outcome::Busy,
    },
    Case {
        name: "a busy session's batch sent again under reject is its first answer",
        before: Before::Running,
        batch: || NewTask {
            policy: SessionPolicy::Reject,
            ..first()
        },
        expect: Outcome::Existing,
    },
    Case {
        name: "a batch sent again is its first answer",
        before: Before::Running,
        batch: first,
        expect: Outcome::Existing,
    },
    Case {
        name: "another batch under a known request id is refused",
        before: Before::Running,
        batch: || NewTask {
            calls: "[{\"tool_name\":\"other\"}]".into(),
            ..first()
        },
        expect: Outcome::Reused,
    },
    Case {
        name: "an identical batch while the first is active answers as the first",
        before: Before::Running,
        batch: || NewTask {
            fingerprint: Some("fp".into()),
            ..batch()
        },
        expect: Outcome::Duplicate { id: "first" },
    },
    Case {
        name: "an identical batch once the first ended is stored",
        before: Before::Ended,
        batch: || NewTask {
            fingerprint: Some("fp".into()),
            ..batch()
        },
        expect: Outcome::New {
            started: true,
            ready: true,
        },
    },
    Case {
        name: "an analysis session of another session is refused",
        before: Before::OtherSessionsAnalysis,
        batch,
        expect: Outcome::Conflict,
    },
];

/// The batch in the store before: `first` of session `s`, fingerprint `fp`.
fn first() -> NewTask {
    let mut t = echo_task("first", "s", "A", 1_000_000);
    t.fingerprint = Some("fp".into());
    t
}

async fn prepare(store: &Store, before: Before) {
    let seq = match before {
        Before::Nothing => return,
        Before::OtherSessionsAnalysis => {
            let mut t = echo_task("first", "t", "A", 1_000_000);
            t.analysis_session_id = Some("analysis_s".into());
            store.insert_task(t).await.unwrap();
            return;
        }
        Before::Running | Before::Ended => match store.insert_task(first()).await.unwrap() {
            Inserted::New {
                seq, started: true, ..
            } => seq,
            other => panic!("the first batch was not started: {other:?}"),
        },
    };
    if let Before::Ended = before {
        store.finish_task(task_end("first", seq)).await.unwrap();
    }
}

fn outcome(result: Result<Inserted, StoreError>) -> Outcome {
    match result {
        Ok(Inserted::New { started, ready, .. }) => Outcome::New { started, ready },
        Ok(Inserted::Existing(_)) => Outcome::Existing,
        Ok(Inserted::Reused(_)) => Outcome::Reused,
        Ok(Inserted::Duplicate(first)) if first.id == "first" => Outcome::Duplicate { id: "first" },
        Ok(Inserted::Duplicate(first)) => panic!("a duplicate of `{}`", first.id),
        Ok(Inserted::Busy) => Outcome::Busy,
        // (Retention's own tests: tests/retention.rs.)
        Ok(Inserted::Pruned(p)) => panic!("`{}` pruned: no case prunes", p.id),
        Err(StoreError::Conflict(_)) => Outcome::Conflict,
        Err(e) => panic!("the store failed: {e}"),
    }
}

#[tokio::test]
async fn every_accept_outcome_is_the_same_on_every_backend() {
    for case in CASES {
        for b in backends().await {
            prepare(&b.store, case.before).await;
            let batch = (case.batch)();
            let id = batch.id.clone();
            let before = b.store.task(&id).await.unwrap();
            let got = outcome(b.store.insert_task(batch).await);
            assert_eq!(got, case.expect, "{}: {}", b.name, case.name);
            let after = b.store.task(&id).await.unwrap();
            match got {
                // Stored: the row is there, as the outcome says.
                Outcome::New { started, .. } => {
                    let row =
                        after.unwrap_or_else(|| panic!("{}: {}: not stored", b.name, case.name));
                    let status = if started { "running" } else { "queued" };
                    assert_eq!(row.status.as_str(), status, "{}: {}", b.name, case.name);
                }
                // Answered or refused: the store holds what it held.
                _ => assert_eq!(
                    after.map(|r| (r.id, r.seq, r.calls_count)),
                    before.map(|r| (r.id, r.seq, r.calls_count)),
                    "{}: {}: the store changed",
                    b.name,
                    case.name
                ),
            }
            b.store.close().await;
        }
    }
}
