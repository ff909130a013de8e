//! The scheduler on its own: a real SQLite store in a temporary folder, a
//! [`ManualClock`](crate::clock::ManualClock) and an executor whose calls
//! end only when the test lets them (no server, no agent).

use super::*;
use crate::{
    agents::{CallContext, CallOutcome},
    clock::ManualClock,
};
use futures::future::BoxFuture;
use naga_core::{config::StoreConfig, wire::RawJson};
use naga_store::{Inserted, NewStep, NewTask};
use tokio::sync::{mpsc, Notify};

/// Each call reports `task_id#index` when it starts, then waits until the
/// test opens its gate (`open`); it succeeds with its own name.
#[derive(Default)]
struct Gated {
    started: Mutex<Option<mpsc::UnboundedSender<String>>>,
    gates: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Gated {
    fn gate(&self, call: &str) -> Arc<Notify> {
        self.gates
            .lock()
            .unwrap()
            .entry(call.to_owned())
            .or_default()
            .clone()
    }

    fn open(&self, call: &str) {
        self.gate(call).notify_one();
    }
}

impl Executor for Gated {
    fn run<'a>(
        &'a self,
        _call: &'a CallPayload,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, CallOutcome> {
        let name = format!("{}#{}", ctx.task_id, ctx.index);
        Box::pin(async move {
            let gate = self.gate(&name);
            if let Some(tx) = &*self.started.lock().unwrap() {
                let _ = tx.send(name.clone());
            }
            gate.notified().await;
            CallOutcome::ok(name)
        })
    }

    fn command(&self, _call: &CallPayload) -> String {
        "gated".into()
    }

    fn result_entry(&self, _index: usize, _call: &CallPayload, outcome: &CallOutcome) -> RawJson {
        naga_core::wire::raw_json(outcome)
    }
}

struct Fixture {
    scheduler: Scheduler,
    store: Store,
    clock: Arc<ManualClock>,
    executor: Arc<Gated>,
    started: mpsc::UnboundedReceiver<String>,
    _dir: tempfile::TempDir,
}

const NODE: &str = "node-a";

async fn fixture(workers: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, &StoreConfig::default()).await.unwrap();
    let clock = Arc::new(ManualClock::at(1_000_000));
    let stop = CancellationToken::new();
    let callbacks = Callbacks::new(
        store.clone(),
        NODE.into(),
        Default::default(),
        clock.clone(),
        stop.clone(),
        Default::default(),
    )
    .unwrap();
    let executor = Arc::new(Gated::default());
    let (tx, started) = mpsc::unbounded_channel();
    *executor.started.lock().unwrap() = Some(tx);
    let config = SchedulerConfig {
        workers,
        ..Default::default()
    };
    let scheduler = Scheduler::new(
        store.clone(),
        callbacks,
        clock.clone(),
        config,
        executor.clone(),
        Default::default(),
        NODE.into(),
        stop,
        Default::default(),
    );
    // (The claimer, the heartbeat: what `Engine::start` spawns.)
    scheduler.spawn_maintenance();
    Fixture {
        scheduler,
        store,
        clock,
        executor,
        started,
        _dir: dir,
    }
}

impl Fixture {
    /// Stores a batch of `calls` calls held by `owner` until `until`, and
    /// its spec as the scheduler runs it.
    /// (`started`: asked to be held by `owner`; returns whether it is, and
    /// whether it is ready.)
    #[allow(clippy::too_many_arguments)]
    async fn stored(
        &self,
        id: &str,
        session: &str,
        policy: SessionPolicy,
        calls: usize,
        owner: &str,
        until: i64,
        started: bool,
    ) -> (TaskSpec, bool, bool) {
        let texts: Vec<Box<str>> = (0..calls)
            .map(|i| format!("{{\"instruction\":\"{id} {i}\"}}").into_boxed_str())
            .collect();
        let Inserted::New {
            seq,
            started,
            ready,
            ..
        } = self
            .store
            .insert_task(NewTask {
                id: id.into(),
                kind: TaskKind::Agent,
                session_id: session.into(),
                analysis_session_id: None,
                query: None,
                callback_url: None,
                policy,
                fingerprint: None,
                calls: format!("[{}]", texts.join(",")),
                calls_count: calls,
                response: "{}".into(),
                accepted_at: self.clock.now_ms(),
                lease: Lease {
                    owner: owner.into(),
                    until,
                },
                started,
                clock: None,
            })
            .await
            .unwrap()
        else {
            panic!("{id}: not stored as new")
        };
        let spec = TaskSpec {
            id: id.into(),
            seq,
            kind: TaskKind::Agent,
            session_id: session.into(),
            analysis_session_id: None,
            callback_url: None,
            policy,
            calls: Calls::new(texts),
            done: vec![None; calls],
        };
        (spec, started, ready)
    }

    /// Accepts a batch as the engine does (committed as running here when
    /// a worker is free and its session idle, else waiting in the store),
    /// and returns what tells its end.
    async fn submit(&self, id: &str, session: &str, policy: SessionPolicy) -> Ending {
        let worker = self.scheduler.reserve();
        let (spec, started, ready) = self
            .stored(id, session, policy, 1, NODE, i64::MAX, worker.is_some())
            .await;
        match worker.filter(|_| started) {
            Some(worker) => self.scheduler.start(spec, worker),
            None => self.scheduler.parked(&spec, ready),
        }
        Ending(self.store.clone(), id.into())
    }

    /// The next call that starts.
    /// The next call to start once the claimer polls: the clock moves half
    /// a second at a time (at most 5 s) until one does. (A claim already
    /// under way when the clock moved may have been stamped before.)
    async fn start_on_a_poll(&mut self, waiting_for: &str) -> String {
        for _ in 0..10 {
            self.clock.advance(Duration::from_millis(500));
            let started = tokio::time::timeout(Duration::from_millis(500), self.started.recv());
            if let Ok(call) = started.await {
                return call.expect("the executor is alive");
            }
        }
        panic!("no call started within 10 polls: {waiting_for}")
    }

    async fn next_start(&mut self, waiting_for: &str) -> String {
        tokio::time::timeout(Duration::from_secs(10), self.started.recv())
            .await
            .unwrap_or_else(|_| panic!("no call started within 10 s: {waiting_for}"))
            .expect("the executor is alive")
    }
}

/// A task's end, as the store tells it.
struct Ending(Store, String);

impl Ending {
    async fn status(self, what: &str) -> TaskStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.0.task(&self.1).await.unwrap().expect("stored");
            if t.status.is_terminal() {
                return t.status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} did not end within 10 s (still {})",
                t.status
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn a_sessions_batches_run_one_at_a_time_in_order_other_sessions_beside_them() {
    let mut f = fixture(4).await;
    let a1 = f.submit("a1", "a", SessionPolicy::Enqueue).await;
    let a2 = f.submit("a2", "a", SessionPolicy::Enqueue).await;
    let b1 = f.submit("b1", "b", SessionPolicy::Enqueue).await;
    let mut first = [f.next_start("a1, b1").await, f.next_start("a1, b1").await];
    first.sort();
    assert_eq!(first, ["a1#0", "b1#0"], "each session's first batch runs");
    // b1 ending lets nothing of session a start: a2 is behind a1 only.
    f.executor.open("b1#0");
    assert_eq!(b1.status("b1").await, TaskStatus::Succeeded);
    let c1 = f.submit("c1", "c", SessionPolicy::Enqueue).await;
    assert_eq!(f.next_start("c1").await, "c1#0", "a2 did not overtake a1");
    f.executor.open("a1#0");
    assert_eq!(a1.status("a1").await, TaskStatus::Succeeded);
    assert_eq!(f.next_start("a2").await, "a2#0", "a2 starts once a1 ended");
    f.executor.open("a2#0");
    f.executor.open("c1#0");
    assert_eq!(a2.status("a2").await, TaskStatus::Succeeded);
    assert_eq!(c1.status("c1").await, TaskStatus::Succeeded);
    let a2 = f.store.task("a2").await.unwrap().unwrap();
    let a1 = f.store.task("a1").await.unwrap().unwrap();
    assert!(a2.started_at >= a1.finished_at, "a2 started after a1 ended");
}

#[tokio::test]
async fn parallel_batches_of_a_session_run_at_once_within_the_workers() {
    let mut f = fixture(2).await;
    let p1 = f.submit("p1", "s", SessionPolicy::Parallel).await;
    let p2 = f.submit("p2", "s", SessionPolicy::Parallel).await;
    let p3 = f.submit("p3", "s", SessionPolicy::Parallel).await;
    let mut first = [f.next_start("p1, p2").await, f.next_start("p1, p2").await];
    first.sort();
    assert_eq!(first, ["p1#0", "p2#0"], "two workers: two batches at once");
    f.executor.open("p2#0");
    assert_eq!(p2.status("p2").await, TaskStatus::Succeeded);
    assert_eq!(f.next_start("p3").await, "p3#0", "a freed worker takes p3");
    f.executor.open("p1#0");
    f.executor.open("p3#0");
    assert_eq!(p1.status("p1").await, TaskStatus::Succeeded);
    assert_eq!(p3.status("p3").await, TaskStatus::Succeeded);
}

#[tokio::test]
async fn a_queued_batch_cancelled_never_runs_and_its_session_goes_on() {
    let mut f = fixture(4).await;
    let a1 = f.submit("a1", "a", SessionPolicy::Enqueue).await;
    let a2 = f.submit("a2", "a", SessionPolicy::Enqueue).await;
    let a3 = f.submit("a3", "a", SessionPolicy::Enqueue).await;
    assert_eq!(f.next_start("a1").await, "a1#0");
    assert_eq!(
        f.scheduler.cancel("a2").await.unwrap(),
        TaskStatus::Cancelled
    );
    assert_eq!(a2.status("a2").await, TaskStatus::Cancelled);
    f.executor.open("a1#0");
    assert_eq!(a1.status("a1").await, TaskStatus::Succeeded);
    assert_eq!(
        f.next_start("a3").await,
        "a3#0",
        "a3 follows a1: a2 never ran"
    );
    f.executor.open("a3#0");
    assert_eq!(a3.status("a3").await, TaskStatus::Succeeded);
    let a2 = f.store.task("a2").await.unwrap().unwrap();
    assert_eq!((a2.status, a2.started_at), (TaskStatus::Cancelled, None));
}

#[tokio::test]
async fn a_dead_node_s_task_is_taken_over_on_the_clock_and_resumes_at_its_first_unfinished_call() {
    let mut f = fixture(4).await;
    let now = f.clock.now_ms();
    let lease_ms = SchedulerConfig::default().lease_ms as i64;
    let beat = SchedulerConfig::default().heartbeat_ms;
    let (spec, started, _) = f
        .stored(
            "t",
            "s",
            SessionPolicy::Enqueue,
            2,
            "node-b",
            now + lease_ms,
            true,
        )
        .await;
    assert!(started, "held by node-b");
    f.store.node_heartbeat("node-b", now, true).await.unwrap();
    // node-b ended the first call, then died.
    f.store
        .finish_call(naga_store::CallFinish {
            task_seq: spec.seq,
            owner: "node-b".into(),
            idx: 0,
            result: serde_json::to_string(&CallOutcome::ok("t#0 on node-b")).unwrap(),
            started_at: now,
            step: NewStep {
                task_id: "t".into(),
                call_idx: Some(0),
                success: true,
                output: Some("t#0 on node-b".into()),
                created_at: now,
                ..Default::default()
            },
        })
        .await
        .unwrap();
    f.scheduler.record_heartbeat(now, true).await;
    assert_eq!(
        f.scheduler.pull().await.unwrap(),
        0,
        "node-b beats and its lease runs"
    );
    // Its lease still runs, but it has been silent for three beats while
    // this node beat: the claimer's next poll takes its task.
    for _ in 0..=DEAD_AFTER_BEATS {
        f.clock.advance(Duration::from_millis(beat));
        f.scheduler.record_heartbeat(f.clock.now_ms(), false).await;
    }
    assert!(now + lease_ms > f.clock.now_ms());
    assert_eq!(
        f.start_on_a_poll("t#1").await,
        "t#1",
        "node-b is dead: taken, and call 0 ended on node-b"
    );
    f.executor.open("t#1");
    assert_eq!(
        Ending(f.store.clone(), "t".into()).status("t").await,
        TaskStatus::Succeeded
    );
    let calls = f.store.calls("t").await.unwrap();
    let results: Vec<Option<&str>> = calls.iter().map(|c| c.result.as_deref()).collect();
    assert!(
        results[0].is_some_and(|r| r.contains("on node-b"))
            && results[1].is_some_and(|r| r.contains("t#1")),
        "each call's result is the one of the node that ran it: {results:?}"
    );
}

/// A backlog waits in the store, not in memory: with one worker and one
/// session's long batch running, every later batch is stored unheld, and
/// the node holds only what runs; they run in order once it ends.
#[tokio::test]
async fn a_backlog_waits_in_the_store_and_drains_in_each_session_s_order() {
    let mut f = fixture(1).await;
    let long = f.submit("long", "a", SessionPolicy::Enqueue).await;
    assert_eq!(f.next_start("long").await, "long#0");
    let mut later = Vec::new();
    for i in 0..20 {
        let session = if i % 2 == 0 { "a" } else { "b" };
        let id = format!("{session}{i}");
        later.push((
            id.clone(),
            f.submit(&id, session, SessionPolicy::Enqueue).await,
        ));
    }
    assert_eq!(
        f.scheduler.held(TaskKind::Agent),
        1,
        "only the running one is held"
    );
    f.executor.open("long#0");
    assert_eq!(long.status("long").await, TaskStatus::Succeeded);
    let mut order = Vec::new();
    for _ in 0..20 {
        let call = f.next_start("the backlog").await;
        f.executor.open(&call);
        order.push(call.trim_end_matches("#0").to_owned());
    }
    for (id, ending) in later {
        assert_eq!(ending.status(&id).await, TaskStatus::Succeeded);
    }
    let of = |s: &str| -> Vec<usize> {
        order
            .iter()
            .filter(|id| id.starts_with(s))
            .map(|id| id[1..].parse().unwrap())
            .collect()
    };
    let (a, b) = (of("a"), of("b"));
    assert!(
        a.windows(2).all(|w| w[0] < w[1]),
        "session a in order: {order:?}"
    );
    assert!(
        b.windows(2).all(|w| w[0] < w[1]),
        "session b in order: {order:?}"
    );
    assert_eq!(a.len() + b.len(), 20);
}

/// A task running here whose lease lapsed (the store could not renew it in
/// time) is claimable again, by this node's claimer too: it is left to the
/// run it has, and its call does not start a second time.
#[tokio::test]
async fn a_task_claimed_again_while_it_runs_here_does_not_run_twice() {
    let mut f = fixture(4).await;
    let now = f.clock.now_ms();
    let worker = f.scheduler.reserve().expect("a free worker");
    let (spec, started, _) = f
        .stored("t", "s", SessionPolicy::Enqueue, 1, NODE, now + 100, true)
        .await;
    assert!(started, "held here");
    f.scheduler.start(spec, worker);
    assert_eq!(f.next_start("t#0").await, "t#0");
    // Its lease lapses before any renewal (every lease/3) comes.
    f.clock.advance(Duration::from_millis(200));
    assert_eq!(
        f.scheduler.pull().await.unwrap(),
        0,
        "claimed again (its lease lapsed) but not started again"
    );
    assert_eq!(f.scheduler.held(TaskKind::Agent), 1, "held once");
    f.executor.open("t#0");
    assert_eq!(
        Ending(f.store.clone(), "t".into()).status("t").await,
        TaskStatus::Succeeded
    );
    assert!(
        f.started.try_recv().is_err(),
        "t#0 started once: {:?}",
        f.started.try_recv()
    );
}

/// After an outage of the store every node's heartbeat is stale and
/// leases have lapsed, though the nodes live: a node back in touch takes
/// nothing another node holds until its own heartbeats have run steadily
/// for three beats, by when a live holder has beaten again (and renewed);
/// a holder still silent then is dead, and its task is taken.
#[tokio::test]
async fn back_from_an_outage_a_node_judges_no_other_until_it_has_beaten_steadily() {
    let mut f = fixture(4).await;
    let now = f.clock.now_ms();
    let beat = SchedulerConfig::default().heartbeat_ms;
    for (id, holder) in [("b-task", "node-b"), ("c-task", "node-c")] {
        let (_, started, _) = f
            .stored(id, id, SessionPolicy::Enqueue, 1, holder, now + 1_000, true)
            .await;
        assert!(started, "held by {holder}");
        f.store.node_heartbeat(holder, now, true).await.unwrap();
    }
    f.scheduler.record_heartbeat(now, true).await;
    // The store is out for far longer than the leases and three beats
    // (this node's beats fail meanwhile).
    f.scheduler.inner.contact.beat_failed();
    f.clock.advance(Duration::from_millis(beat * 10));
    let back = f.clock.now_ms();
    f.scheduler.record_heartbeat(back, false).await;
    f.scheduler.pull().await.unwrap();
    let nodes = f.store.nodes(10).await.unwrap();
    assert!(
        nodes.iter().all(|n| n.id != NODE || n.tasks == 0),
        "just back: node-b and node-c may live, cut off as this node was"
    );
    // node-b beats (and renews) again; node-c stays silent.
    for i in 1..=DEAD_AFTER_BEATS {
        f.clock.advance(Duration::from_millis(beat));
        let at = f.clock.now_ms();
        f.store.node_heartbeat("node-b", at, false).await.unwrap();
        let renew = naga_store::Holding {
            tasks: vec![f.store.task("b-task").await.unwrap().unwrap().seq],
            ..Default::default()
        };
        let until = at + (beat * 10) as i64;
        f.store.renew_leases("node-b", until, renew).await.unwrap();
        f.scheduler.record_heartbeat(at, false).await;
        if i < DEAD_AFTER_BEATS {
            f.scheduler.pull().await.unwrap();
            let nodes = f.store.nodes(10).await.unwrap();
            let mine = nodes.iter().find(|n| n.id == NODE).map_or(0, |n| n.tasks);
            assert_eq!(mine, 0, "beat {i}: too early to judge, nothing taken");
        }
    }
    assert_eq!(
        f.start_on_a_poll("c-task#0").await,
        "c-task#0",
        "node-c is dead: taken"
    );
    let nodes = f.store.nodes(10).await.unwrap();
    let held = |id: &str| nodes.iter().find(|n| n.id == id).map(|n| n.tasks);
    assert_eq!(
        (held("node-b"), held(NODE)),
        (Some(1), Some(1)),
        "node-b lives: its task stays with it"
    );
}

/// A call that ended is never run again, even when its stored result
/// cannot be read back: the task is quarantined (failed, with the reason)
/// instead of resuming as if that call had not run.
#[tokio::test]
async fn a_finished_call_whose_result_cannot_be_read_is_not_run_again() {
    let mut f = fixture(4).await;
    let now = f.clock.now_ms();
    let (spec, started, _) = f
        .stored(
            "t",
            "s",
            SessionPolicy::Enqueue,
            2,
            "node-b",
            now + 1_000,
            true,
        )
        .await;
    assert!(started, "held by node-b");
    f.store
        .finish_call(naga_store::CallFinish {
            task_seq: spec.seq,
            owner: "node-b".into(),
            idx: 0,
            result: "{\"success\": tru".into(),
            started_at: now,
            step: NewStep {
                task_id: "t".into(),
                call_idx: Some(0),
                success: true,
                output: Some("t#0 on node-b".into()),
                created_at: now,
                ..Default::default()
            },
        })
        .await
        .unwrap();
    // node-b let its lease lapse (stopped) before its second call.
    f.store.release_lease("t", "node-b").await.unwrap();
    f.scheduler.record_heartbeat(now, true).await;
    f.scheduler.pull().await.unwrap();
    let status = Ending(f.store.clone(), "t".into()).status("t").await;
    assert_eq!(status, TaskStatus::Failed, "quarantined");
    let task = f.store.task("t").await.unwrap().unwrap();
    assert!(
        task.error
            .as_deref()
            .is_some_and(|e| e.contains("cannot be read back")),
        "{:?}",
        task.error
    );
    assert!(
        f.started.try_recv().is_err(),
        "no call of the task ran again on this node"
    );
}
