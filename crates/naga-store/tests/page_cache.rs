//! The page-cache wrapper (`pcache.rs`) sits under every page SQLite reads
//! or writes, and skips the truncations it knows have nothing to drop. This
//! drives growth, shrinking, rebalances (which renumber pages through the
//! lock-byte page) and rollbacks of grown transactions through it, and
//! checks every committed row against a model after each transaction.
//! (One test in its own binary: the wrapper must be installed before
//! anything else in the process uses SQLite.)

use rusqlite::{params, Connection};
use std::collections::BTreeMap;

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn value(key: i64, len: usize, salt: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (key as u64 ^ salt ^ i as u64) as u8)
        .collect()
}

fn check(c: &Connection, model: &BTreeMap<i64, Vec<u8>>, round: usize) {
    let mut st = c.prepare_cached("SELECT k, v FROM t ORDER BY k").unwrap();
    let rows: BTreeMap<i64, Vec<u8>> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), model.len(), "round {round}: row count");
    for (k, v) in model {
        assert_eq!(rows.get(k), Some(v), "round {round}: row {k}");
    }
}

#[test]
fn grown_rolled_back_and_rebalanced_pages_never_come_back_stale() {
    assert!(
        naga_store::wrap_page_cache(),
        "the wrapper installs in a fresh process"
    );
    let dir = tempfile::tempdir().unwrap();
    let c = Connection::open(dir.path().join("p.db")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA cache_size = -1024;
         CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);
         CREATE INDEX t_by_v ON t (v);",
    )
    .unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut model = BTreeMap::new();
    let mut rolled_back_growth = 0;
    for round in 0..400 {
        let before: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        c.execute_batch("BEGIN").unwrap();
        let mut pending = model.clone();
        for _ in 0..rng.below(60) + 1 {
            let key = rng.below(3000) as i64;
            match rng.below(4) {
                // Deletes free pages, which later rebalances reuse out of order.
                0 => {
                    c.execute("DELETE FROM t WHERE k = ?1", params![key])
                        .unwrap();
                    pending.remove(&key);
                }
                _ => {
                    let v = value(key, rng.below(3000) as usize + 1, rng.next());
                    c.execute(
                        "INSERT INTO t (k, v) VALUES (?1, ?2)
                         ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                        params![key, v],
                    )
                    .unwrap();
                    pending.insert(key, v);
                }
            }
        }
        let during: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        if rng.below(3) == 0 {
            c.execute_batch("ROLLBACK").unwrap();
            rolled_back_growth += usize::from(during > before);
        } else {
            c.execute_batch("COMMIT").unwrap();
            model = pending;
        }
        check(&c, &model, round);
    }
    assert!(
        rolled_back_growth > 10,
        "rollbacks of grown transactions: {rolled_back_growth}"
    );
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}
