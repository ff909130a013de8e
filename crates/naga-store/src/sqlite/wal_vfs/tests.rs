//! The VFS against real files: every commit in the files when it returns,
//! rolled-back frames never written, size changes kept.

use super::*;
use rusqlite::{params, Connection, OpenFlags};
use std::path::Path;

fn open_gathering(path: &Path, cache_pages: i64) -> Connection {
    register().unwrap();
    let conn =
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME.to_str().unwrap())
            .unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = {cache_pages};
         CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS t_by_v ON t(v);"
    ))
    .unwrap();
    conn
}

/// What another process would find if this one died now: the database
/// and its WAL copied as they are in the file system (no shared-memory
/// index: the copy recovers from the WAL alone), opened with the
/// platform VFS.
fn as_found_after_a_crash(path: &Path) -> (i64, i64, String) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    std::fs::copy(path, &copy).unwrap();
    let wal = path.with_extension("db-wal");
    if wal.exists() {
        std::fs::copy(&wal, dir.path().join("copy.db-wal")).unwrap();
    }
    let conn = Connection::open(&copy).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let (n, sum) = conn
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(k * length(v)), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    (n, sum, check)
}

/// Rows `ks`, each with a blob of `len` bytes.
fn insert(c: &Connection, ks: std::ops::Range<i64>, len: usize) {
    for k in ks {
        c.execute(
            "INSERT INTO t (k, v) VALUES (?1, ?2)",
            params![k, blob(k, len)],
        )
        .unwrap();
    }
}

fn blob(k: i64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (k as usize * 31 + i * 7) as u8).collect()
}

#[test]
fn every_commit_is_in_the_files_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("naga.db");
    let mut conn = open_gathering(&path, 2000);
    let (mut rows, mut sum) = (0i64, 0i64);
    for commit in 0..60i64 {
        let tx = conn.transaction().unwrap();
        // Random-ish keys: many pages per commit, as a group commit has.
        for j in 0..40i64 {
            let k = (commit * 40 + j) * 7919 % 100_003;
            let len = 100 + (k % 700) as usize;
            tx.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                params![k, blob(k, len)],
            )
            .unwrap();
            rows += 1;
            sum += k * len as i64;
        }
        tx.commit().unwrap();
        if commit % 6 == 5 {
            // The log starts over from its header, as the writer's
            // restarts make it.
            conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                .unwrap();
        }
        assert_eq!(as_found_after_a_crash(&path), (rows, sum, "ok".into()));
    }
}

#[test]
fn spilled_rewritten_and_rolled_back_frames_leave_only_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("naga.db");
    // A cache of 10 pages: a large transaction spills frames into the
    // WAL before its commit and then changes those pages again (SQLite
    // rewrites such frames in place and their checksums at the commit).
    let mut conn = open_gathering(&path, 10);
    let tx = conn.transaction().unwrap();
    insert(&tx, 0..3000, 300);
    tx.execute("UPDATE t SET v = ?1 WHERE k % 3 = 0", params![blob(1, 250)])
        .unwrap();
    tx.commit().unwrap();
    // Checked before this connection reads anything (a read would write
    // out whatever it still held).
    let sum = |ks: std::ops::Range<i64>| -> i64 {
        ks.map(|k| k * if k % 3 == 0 { 250 } else { 300 }).sum()
    };
    let expected = (3000, sum(0..3000));
    assert_eq!(
        as_found_after_a_crash(&path),
        (expected.0, expected.1, "ok".into())
    );

    // A spilled transaction that rolls back leaves nothing, and the next
    // commit overwrites its frames.
    let tx = conn.transaction().unwrap();
    insert(&tx, 3000..6000, 300);
    tx.rollback().unwrap();
    assert_eq!(
        as_found_after_a_crash(&path),
        (expected.0, expected.1, "ok".into())
    );
    conn.execute("DELETE FROM t WHERE k < 100", []).unwrap();
    assert_eq!(
        as_found_after_a_crash(&path),
        (2900, sum(100..3000), "ok".into())
    );
}

#[test]
fn frames_of_a_rolled_back_transaction_are_never_written_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("naga.db");
    let mut ours = open_gathering(&path, 10);
    ours.execute_batch("CREATE TABLE u (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        .unwrap();
    let fill = |c: &Connection, ks: std::ops::Range<i64>| {
        for k in ks {
            c.execute(
                "INSERT INTO u (k, v) VALUES (?1, ?2)",
                params![k, blob(k, 3000)],
            )
            .unwrap();
        }
    };
    fill(&ours, 0..10);
    // Appends that spill out of a 10-page cache without reading back:
    // gathered frames of a transaction that then rolls back.
    let tx = ours.transaction().unwrap();
    fill(&tx, 10..200);
    tx.rollback().unwrap();
    // Another connection (another process, say) commits over the same
    // stretch of the WAL.
    let other = Connection::open(&path).unwrap();
    fill(&other, 1000..1100);
    // Ours reads again: nothing it held may land on the other's frames.
    let count = |c: &Connection| -> (i64, i64) {
        c.query_row("SELECT COUNT(*), SUM(k) FROM u", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    let expected = (110, (0..10).sum::<i64>() + (1000..1100).sum::<i64>());
    assert_eq!(count(&ours), expected);
    drop(other);
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for f in ["naga.db", "naga.db-wal"] {
        std::fs::copy(dir.path().join(f), copy.join(f)).unwrap();
    }
    let found = Connection::open(copy.join("naga.db")).unwrap();
    let check: String = found
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!((count(&found), check), (expected, "ok".into()));
}

#[test]
fn truncations_that_change_the_size_still_happen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("naga.db");
    let conn = open_gathering(&path, 2000);
    insert(&conn, 0..2000, 900);
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let wal = path.with_extension("db-wal");
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        0,
        "the WAL is cut to nothing"
    );
    let full = std::fs::metadata(&path).unwrap().len();
    conn.execute("DELETE FROM t WHERE k >= 100", []).unwrap();
    conn.execute_batch("VACUUM").unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let vacuumed = std::fs::metadata(&path).unwrap().len();
    assert!(
        vacuumed * 5 < full,
        "the database shrank: {full} → {vacuumed} bytes"
    );
    assert_eq!(as_found_after_a_crash(&path).0, 100);
}

#[test]
fn a_reader_on_the_platform_vfs_sees_each_commit_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("naga.db");
    let writer = open_gathering(&path, 2000);
    let reader = Connection::open(&path).unwrap();
    for k in 0..200i64 {
        writer
            .execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                params![k, blob(k, 900)],
            )
            .unwrap();
        let seen: i64 = reader
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, k + 1);
    }
}
