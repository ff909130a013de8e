//! Writes in groups on PostgreSQL: the batches accepted and the ends of
//! calls and of tasks that arrive together, from any number of batches, are
//! written by one statement each (the accepts by `naga_accept_group`, see
//! `accept.rs`; the ends by arrays taken apart with `unnest`), one round
//! trip and one commit for the group, as the SQLite writer's group commit
//! does. Then the sessions whose batch ended have their next batch
//! readied, by one more statement for the group (`ready_next`, after the
//! commit: see there).
//!
//! A few writers take what is queued when they are free, so a quiet node
//! writes each at once and a busy one writes many at a time. A group that
//! fails as a whole (a deadlock, a row the statement refuses) is written
//! again one at a time, each getting its own answer.

use super::{
    accept_group, accept_one, finish_call, finish_task, unreachable_error, Accept, Accepted, Reach,
};
use crate::sql::unfinished;
use crate::{
    commands::{CallFinish, Finished, NewStep, TaskFinish},
    rows::HandedTask,
    StoreError,
};
use sqlx::PgPool;
use std::{collections::HashMap, sync::Arc};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Writers working at once (each one group, one connection).
const WRITERS: usize = 4;
/// Most jobs in one group.
const MOST: usize = 256;

enum Job {
    End(End),
    /// A batch to store (`accept.rs`): answered with what the database
    /// decided, and the batch handed back. (Written apart from the ends.)
    Accept(Box<Accept>, oneshot::Sender<AcceptAnswer>),
}

/// The end of a call, or of a task (a group holds one per task).
enum End {
    Call(Arc<CallFinish>, oneshot::Sender<Result<(), StoreError>>),
    Task(
        Arc<TaskFinish>,
        oneshot::Sender<Result<Finished, StoreError>>,
    ),
}

type AcceptAnswer = (Result<Accepted, StoreError>, Box<Accept>);

impl End {
    fn task_seq(&self) -> i64 {
        match self {
            End::Call(f, _) => f.task_seq,
            End::Task(f, _) => f.task_seq,
        }
    }
}

impl Job {
    /// The task an end is of (none for a batch to store).
    fn task_seq(&self) -> Option<i64> {
        match self {
            Job::End(end) => Some(end.task_seq()),
            Job::Accept(..) => None,
        }
    }
}

/// The handle of a node's group writers.
#[derive(Clone)]
pub(crate) struct Grouped {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Grouped {
    /// Starts the writers on `pool`; they stop with `stop`. `reach` is
    /// [`Pg::reach`]: while the database is down, batches are refused at
    /// once; a group that finds it down says so before it answers, so the
    /// next group (of any writer) does not wait for a connection again.
    pub fn start(
        pool: PgPool,
        reach: Arc<Reach>,
        stop: CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WRITERS {
            let (rx, pool, stop) = (rx.clone(), pool.clone(), stop.clone());
            let reach = reach.clone();
            tracker.spawn(async move {
                // A job of a task already in the group waits for the next.
                let mut held: Option<Job> = None;
                loop {
                    let group = match held.take() {
                        // (Not waiting for the queue: another writer may be
                        // waiting there for a job that never comes.)
                        Some(first) => match rx.try_lock() {
                            Ok(mut rx) => gather(&mut rx, first, &mut held),
                            Err(_) => vec![first],
                        },
                        None => {
                            let mut rx = tokio::select! {
                                rx = rx.lock() => rx,
                                _ = stop.cancelled() => return,
                            };
                            let first = tokio::select! {
                                job = rx.recv() => job,
                                _ = stop.cancelled() => None,
                            };
                            let Some(first) = first else { return };
                            gather(&mut rx, first, &mut held)
                        }
                    };
                    write_group(&pool, &reach, group).await;
                }
            });
        }
        Self { jobs }
    }

    pub async fn finish_call(&self, f: Arc<CallFinish>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::End(End::Call(f, tx)))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    pub async fn finish_task(&self, f: Arc<TaskFinish>) -> Result<Finished, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::End(End::Task(f, tx)))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    pub async fn accept(&self, a: Accept) -> Result<(Accepted, Box<Accept>), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Accept(Box::new(a), tx))
            .map_err(|_| closed())?;
        let (accepted, a) = rx.await.map_err(|_| closed())?;
        Ok((accepted?, a))
    }
}

/// A group: `first`, and what is queued behind it (at most [`MOST`]); a
/// job of a task already in the group is `held` for the next.
fn gather(rx: &mut mpsc::UnboundedReceiver<Job>, first: Job, held: &mut Option<Job>) -> Vec<Job> {
    let mut seqs: std::collections::HashSet<i64> = first.task_seq().into_iter().collect();
    let mut group = vec![first];
    while group.len() < MOST {
        let Ok(job) = rx.try_recv() else { break };
        if job.task_seq().is_some_and(|seq| !seqs.insert(seq)) {
            *held = Some(job);
            break;
        }
        group.push(job);
    }
    group
}

/// The writers stopped (the store is closing): not written.
fn closed() -> StoreError {
    StoreError::NotCommitted
}

/// One group: the batches to store by one statement, the ends by another.
/// Batches queued while a group found the database unreachable are
/// refused at once, not after another wait for a connection: a client
/// waits for its answer, a task's end is retried by the scheduler anyway.
async fn write_group(pool: &PgPool, reach: &Reach, group: Vec<Job>) {
    let began = Began {
        reach,
        seen: reach.seen(),
    };
    let (mut accepts, mut ends) = (Vec::new(), Vec::new());
    for job in group {
        match job {
            Job::Accept(a, tx) => accepts.push((a, tx)),
            Job::End(end) => ends.push(end),
        }
    }
    tokio::join!(
        write_accepts(pool, began, accepts),
        write_ends(pool, began, ends)
    );
}

/// When a group began: a failure to reach the database it meets is told
/// to [`Reach`] before it is answered, so that a writer taking the next
/// group (at once, before the callers have noted the answer) refuses its
/// batches rather than waiting for a connection again.
#[derive(Clone, Copy)]
struct Began<'a> {
    reach: &'a Reach,
    seen: u64,
}

impl Began<'_> {
    fn note<T>(self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            if e.is_unreachable() {
                self.reach.failed_since(self.seen, true);
            }
        }
        result
    }

    /// Refused at once: the database was unreachable a moment ago.
    fn refused(self) -> Option<StoreError> {
        let down = self.reach.is_down();
        down.then(|| unreachable_error("a group a moment ago could not reach it"))
    }
}

/// Batches to store: by one statement (a lone one by its own); a group
/// the database refuses as a whole (a deadlock between two nodes' groups)
/// is stored again one batch at a time, each with its own answer.
async fn write_accepts(
    pool: &PgPool,
    began: Began<'_>,
    jobs: Vec<(Box<Accept>, oneshot::Sender<AcceptAnswer>)>,
) {
    if jobs.len() > 1 && !began.reach.is_down() {
        let batches: Vec<&Accept> = jobs.iter().map(|(a, _)| &**a).collect();
        match began.note(accept_group(pool, &batches).await) {
            Ok(answers) => {
                for ((a, tx), answer) in jobs.into_iter().zip(answers) {
                    let _ = tx.send((Ok(answer), a));
                }
                return;
            }
            // Unreachable: refused at once below (stored one by one only
            // when the database was reached again since the group began).
            Err(e) if e.is_unreachable() => {}
            Err(e) => tracing::debug!(error = %e, batches = jobs.len(),
                "a group of batches failed as a whole: stored one by one"),
        }
    }
    for (a, tx) in jobs {
        let answer = match began.refused() {
            Some(e) => Err(e),
            None => began.note(accept_one(pool, &a).await),
        };
        let _ = tx.send((answer, a));
    }
}

/// Ends of calls and tasks: by one statement, then each one's answer.
async fn write_ends(pool: &PgPool, began: Began<'_>, group: Vec<End>) {
    if group.len() <= 1 {
        // Alone: the statements of one end (the same round trips).
        return write_alone(pool, began, group).await;
    }
    let written = match began.note(record_ends(pool, &group).await) {
        Ok(written) => written,
        // Unreachable: one by one would wait for a connection each.
        Err(e) if e.is_unreachable() => {
            for end in group {
                let again = || e.unreachable_again().unwrap_or(closed());
                match end {
                    End::Call(_, tx) => drop(tx.send(Err(again()))),
                    End::Task(_, tx) => drop(tx.send(Err(again()))),
                }
            }
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e, ends = group.len(),
                "a group of ends failed as a whole: written one by one");
            return write_alone(pool, began, group).await;
        }
    };
    // The sessions whose batch ended: their next batch readied.
    let ends: Vec<&TaskFinish> = group
        .iter()
        .filter_map(|end| match end {
            End::Task(f, _) => Some(&**f),
            End::Call(..) => None,
        })
        .collect();
    let session_of = |f: &TaskFinish| written.get(&f.task_seq).map(|w| w.0.clone());
    let readied = began.note(ready_sessions(pool, &ends, session_of).await);
    let mut readied = readied.unwrap_or_else(|e| {
        // Ended all the same; the node's repair readies them (`ready_heads`).
        tracing::warn!(error = %e, "cannot ready the next batches of sessions whose batch ended");
        HashMap::new()
    });
    for end in group {
        match end {
            End::Call(f, tx) => {
                let _ = tx.send(match written.contains_key(&f.task_seq) {
                    true => Ok(()),
                    false => Err(StoreError::LeaseLost(f.step.task_id.clone())),
                });
            }
            End::Task(f, tx) => {
                let answer = match written.get(&f.task_seq) {
                    None => match f.last_call {
                        // As alone: a last call that cannot be recorded is a
                        // lost lease.
                        Some(_) => Err(StoreError::LeaseLost(f.task_id.clone())),
                        None => Ok(Finished::AlreadyEnded),
                    },
                    Some((session, callback)) => {
                        // (A session's readied head is told once, and
                        // handed to the end that asked for it.)
                        let r = readied.get_mut(session.as_str());
                        let (woke, next) = match r {
                            Some(r) => {
                                (std::mem::take(&mut r.woke), r.next.take_if(|_| f.take_next))
                            }
                            None => (false, None),
                        };
                        Ok(Finished::Ended {
                            callback: match (&f.callback, callback) {
                                (Some((url, _)), Some((seq, body))) => {
                                    Some(f.pending_callback(url, *seq, body.clone()))
                                }
                                _ => None,
                            },
                            woke,
                            next,
                        })
                    }
                };
                let _ = tx.send(answer);
            }
        }
    }
}

/// Each end by its own statements, each with its own answer.
async fn write_alone(pool: &PgPool, began: Began<'_>, ends: Vec<End>) {
    for end in ends {
        match end {
            End::Call(f, tx) => {
                let _ = tx.send(began.note(finish_call(pool, &f).await));
            }
            End::Task(f, tx) => {
                let _ = tx.send(began.note(finish_task(pool, &f).await));
            }
        }
    }
}

/// What the group's statement wrote, by task: its session, and its
/// callback's `seq` and body.
type Written = HashMap<i64, (String, Option<(i64, String)>)>;

/// The ends of a group in one statement: each task's row takes its step's
/// number (only while its holder holds it unfinished: fencing), and a
/// task's end also ends the row and writes its callback with the next
/// sequence number; the steps and failed-attempt counts of all of them.
async fn record_ends(pool: &PgPool, group: &[End]) -> Result<Written, StoreError> {
    let mut a = Arrays::default();
    for job in group {
        // (Borrowed, not copied: a step's content and output can be large.)
        let (call, end, task_id, owner, seq) = match job {
            End::Call(f, _) => (Some(&**f), None, &f.step.task_id, &f.owner, f.task_seq),
            End::Task(f, _) => (
                f.last_call.as_ref(),
                Some(&**f),
                &f.task_id,
                &f.owner,
                f.task_seq,
            ),
        };
        let step = call.map(|c| &c.step);
        let callback = end.and_then(|e| e.callback.as_ref());
        a.task_seq.push(seq);
        a.task_id.push(task_id);
        a.owner.push(owner);
        a.ends.push(end.is_some());
        a.status.push(end.map(|e| e.status.as_str()));
        a.error.push(end.and_then(|e| e.error.as_deref()));
        a.finished_at.push(end.map(|e| e.finished_at));
        a.summary.push(end.and_then(|e| e.summary.as_deref()));
        a.has_call.push(call.is_some());
        a.call_idx.push(step.and_then(|s| s.call_idx));
        a.purpose.push(step.and_then(|s| s.purpose.as_deref()));
        a.content.push(step.and_then(|s| s.content.as_deref()));
        a.output.push(step.and_then(|s| s.output.as_deref()));
        a.analysis.push(step.and_then(|s| s.analysis.as_deref()));
        a.success.push(step.is_some_and(|s| s.success));
        a.step_error.push(step.and_then(|s| s.error.as_deref()));
        a.step_at.push(step.map(|s| s.created_at));
        a.result.push(call.map(|c| c.result.as_str()));
        a.started_at.push(call.map(|c| c.started_at));
        a.command.push(step.map(NewStep::command));
        a.callback_id.push(end.map(|e| e.callback_id.as_str()));
        a.cb_url.push(callback.map(|c| c.0.as_str()));
        a.cb_head.push(callback.map(|c| c.1.as_str()));
        a.lease_until.push(end.map(|e| e.lease_until));
    }
    let rows: Vec<(i64, String, Option<i64>, Option<String>)> = sqlx::query_as(RECORD_ENDS)
        .bind(a.task_seq)
        .bind(a.task_id)
        .bind(a.owner)
        .bind(a.ends)
        .bind(a.status)
        .bind(a.error)
        .bind(a.finished_at)
        .bind(a.summary)
        .bind(a.has_call)
        .bind(a.call_idx)
        .bind(a.purpose)
        .bind(a.content)
        .bind(a.output)
        .bind(a.analysis)
        .bind(a.success)
        .bind(a.step_error)
        .bind(a.step_at)
        .bind(a.result)
        .bind(a.started_at)
        .bind(a.command)
        .bind(a.callback_id)
        .bind(a.cb_url)
        .bind(a.cb_head)
        .bind(a.lease_until)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, session, cb_seq, body)| (seq, (session, cb_seq.zip(body))))
        .collect())
}

/// The group's columns, one array each.
#[derive(Default)]
struct Arrays<'a> {
    task_seq: Vec<i64>,
    task_id: Vec<&'a str>,
    owner: Vec<&'a str>,
    ends: Vec<bool>,
    status: Vec<Option<&'static str>>,
    error: Vec<Option<&'a str>>,
    finished_at: Vec<Option<i64>>,
    summary: Vec<Option<&'a str>>,
    has_call: Vec<bool>,
    call_idx: Vec<Option<i64>>,
    purpose: Vec<Option<&'a str>>,
    content: Vec<Option<&'a str>>,
    output: Vec<Option<&'a str>>,
    analysis: Vec<Option<&'a str>>,
    success: Vec<bool>,
    step_error: Vec<Option<&'a str>>,
    step_at: Vec<Option<i64>>,
    result: Vec<Option<&'a str>>,
    started_at: Vec<Option<i64>>,
    command: Vec<Option<&'a str>>,
    callback_id: Vec<Option<&'a str>>,
    cb_url: Vec<Option<&'a str>>,
    cb_head: Vec<Option<&'a str>>,
    lease_until: Vec<Option<i64>>,
}

/// The statement of [`record_ends`]. Failed attempts of one session and
/// command in one group are counted together (a statement may change a
/// row once), in key order (two groups lock them in the same order).
const RECORD_ENDS: &str = concat!(
    "
    WITH d AS (
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bool[], $5::text[],
                             $6::text[], $7::bigint[], $8::text[], $9::bool[], $10::bigint[],
                             $11::text[], $12::text[], $13::text[], $14::text[], $15::bool[],
                             $16::text[], $17::bigint[], $18::text[], $19::bigint[], $20::text[],
                             $21::text[], $22::text[], $23::text[], $24::bigint[])
            AS d(task_seq, task_id, owner, ends, status, error, finished_at, summary,
                 has_call, call_idx, purpose, content, output, analysis, success, step_error,
                 step_at, result, started_at, command, callback_id, cb_url, cb_head,
                 lease_until)),
    t AS (
        UPDATE tasks SET
            last_step_no = tasks.last_step_no + CASE WHEN d.has_call THEN 1 ELSE 0 END,
            status = CASE WHEN d.ends THEN d.status ELSE tasks.status END,
            error = CASE WHEN d.ends THEN d.error ELSE tasks.error END,
            finished_at = CASE WHEN d.ends THEN d.finished_at ELSE tasks.finished_at END,
            summary = CASE WHEN d.ends THEN d.summary ELSE tasks.summary END,
            lease_owner = CASE WHEN d.ends THEN NULL ELSE tasks.lease_owner END,
            lease_expires_at = CASE WHEN d.ends THEN NULL ELSE tasks.lease_expires_at END
        FROM d
        WHERE tasks.seq = d.task_seq AND tasks.id = d.task_id AND tasks.lease_owner = d.owner
          AND ",
    unfinished!("tasks"),
    "
        RETURNING tasks.seq, tasks.session_id, tasks.last_step_no, tasks.callback_url),
    e AS (SELECT t.seq, t.session_id, t.last_step_no, t.callback_url AS kept_url, d.*
          FROM t JOIN d ON d.task_seq = t.seq),
    step AS (
        INSERT INTO steps (task_seq, step_no, task_id, session_id, call_idx, purpose, content,
                           output, analysis, success, error, created_at, result, started_at)
        SELECT seq, last_step_no, task_id, session_id, call_idx, purpose, content, output,
               analysis, success, step_error, step_at, result, started_at
        FROM e WHERE has_call),
    fail AS (
        INSERT INTO failed_attempts (session_id, command, count, last_error, last_task_id,
                                     updated_at)
        SELECT session_id, command, COUNT(*),
               (array_agg(step_error ORDER BY step_at DESC, seq DESC))[1],
               (array_agg(task_id ORDER BY step_at DESC, seq DESC))[1], MAX(step_at)
        FROM e WHERE has_call AND NOT success
        GROUP BY session_id, command ORDER BY session_id, command
        ON CONFLICT (session_id, command) DO UPDATE SET
            count = failed_attempts.count + EXCLUDED.count,
            last_error = EXCLUDED.last_error, last_task_id = EXCLUDED.last_task_id,
            updated_at = EXCLUDED.updated_at),
    cb AS (
        INSERT INTO callbacks (seq, id, task_id, url, body, status, attempts, next_attempt_at,
                               created_at, lease_owner, lease_expires_at)
        SELECT n.cseq, n.callback_id, n.task_id, n.cb_url, n.cb_head || n.cseq || '}',
               'pending', 0, n.finished_at, n.finished_at, n.owner, n.lease_until
        FROM (SELECT nextval('callbacks_seq_seq') AS cseq, e.* FROM e
              WHERE ends AND cb_url IS NOT NULL AND kept_url IS NOT NULL) n
        RETURNING task_id, seq, body)
    SELECT e.seq, e.session_id, cb.seq, cb.body FROM e LEFT JOIN cb ON cb.task_id = e.task_id"
);

/// What readying a session's next batch came to.
#[derive(Debug, Default)]
pub(crate) struct Readied {
    /// It waits unheld: a free worker should claim it now.
    pub woke: bool,
    /// It was claimed for the ending node (its end asked `take_next`).
    pub next: Option<Box<HandedTask>>,
}

/// Readies the next batch of each session (see [`ready_next`]), in one
/// statement; one waiting unheld is claimed at once, running, for the
/// node whose end asked for it (`take_next`) instead of told to all.
pub(crate) async fn ready_sessions(
    pool: &PgPool,
    ends: &[&TaskFinish],
    session_of: impl Fn(&TaskFinish) -> Option<String>,
) -> Result<HashMap<String, Readied>, StoreError> {
    let mut by_session: HashMap<String, &TaskFinish> = HashMap::new();
    for f in ends {
        if let Some(session) = session_of(f) {
            let kept = by_session.entry(session).or_insert(f);
            if f.take_next && !kept.take_next {
                *kept = f;
            }
        }
    }
    if by_session.is_empty() {
        return Ok(HashMap::new());
    }
    let mut sessions: Vec<(&String, &&TaskFinish)> = by_session.iter().collect();
    sessions.sort_unstable_by_key(|(s, _)| s.as_str());
    match ready_heads_of(pool, &sessions).await {
        Ok(readied) => Ok(readied),
        // (Two groups readying the same heads at once can deadlock: one at
        // a time then.)
        Err(_) => {
            let mut readied = HashMap::new();
            for one in sessions.chunks(1) {
                readied.extend(ready_heads_of(pool, one).await?);
            }
            Ok(readied)
        }
    }
}

/// [`ready_sessions`]' statement: the heads readied, those claimed with
/// their rows and calls (one round trip).
async fn ready_heads_of(
    pool: &PgPool,
    sessions: &[(&String, &&TaskFinish)],
) -> Result<HashMap<String, Readied>, StoreError> {
    let ids: Vec<&str> = sessions.iter().map(|(s, _)| s.as_str()).collect();
    let take: Vec<bool> = sessions.iter().map(|(_, f)| f.take_next).collect();
    let owner: Vec<&str> = sessions.iter().map(|(_, f)| f.owner.as_str()).collect();
    let until: Vec<i64> = sessions.iter().map(|(_, f)| f.lease_until).collect();
    let at: Vec<i64> = sessions.iter().map(|(_, f)| f.finished_at).collect();
    let rows: Vec<ReadyRow> = sqlx::query_as(READY_HEADS)
        .bind(&ids)
        .bind(&take)
        .bind(&owner)
        .bind(&until)
        .bind(&at)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let session = r.handed.task.session_id.clone();
            let next = r.taken.then(|| Box::new(r.handed));
            (session, Readied { woke: r.woke, next })
        })
        .collect())
}

/// A head [`READY_HEADS`] readied: as it is now, with its calls.
#[derive(sqlx::FromRow)]
struct ReadyRow {
    woke: bool,
    taken: bool,
    #[sqlx(flatten)]
    handed: HandedTask,
}

/// Each session's earliest unfinished batch, when not ready: readied, and
/// claimed (running, leased) for the ending node that asked, when it
/// waits unheld; other nodes are told of one left unheld.
const READY_HEADS: &str = concat!(
    "
    WITH s AS (
        SELECT * FROM unnest($1::text[], $2::bool[], $3::text[], $4::bigint[], $5::bigint[])
            AS s(id, take, owner, until, at)),
    heads AS (
        SELECT t.seq, t.lease_owner IS NULL AS unheld, s.take, s.owner, s.until, s.at
        FROM s JOIN tasks t ON t.seq = (SELECT seq FROM tasks WHERE session_id = s.id
                                          AND ",
    unfinished!(),
    "
                                        ORDER BY seq LIMIT 1)
        WHERE NOT t.ready
        ORDER BY t.seq
        FOR UPDATE OF t),
    r AS (
        UPDATE tasks SET ready = TRUE,
            lease_owner = CASE WHEN h.unheld AND h.take THEN h.owner ELSE tasks.lease_owner END,
            lease_expires_at = CASE WHEN h.unheld AND h.take THEN h.until
                                    ELSE tasks.lease_expires_at END,
            status = CASE WHEN h.unheld AND h.take THEN 'running' ELSE tasks.status END,
            started_at = CASE WHEN h.unheld AND h.take THEN COALESCE(tasks.started_at, h.at)
                              ELSE tasks.started_at END
        FROM heads h WHERE tasks.seq = h.seq
        RETURNING tasks.*, h.unheld AND NOT h.take AS woke, h.unheld AND h.take AS taken,
                  (SELECT COUNT(*) FROM steps WHERE task_seq = tasks.seq) AS steps_count),
    told AS (
        SELECT pg_notify('naga_work', '{\"ready\":true}') FROM r WHERE woke LIMIT 1)
    SELECT * FROM r WHERE (SELECT COUNT(*) FROM told) >= 0"
);
