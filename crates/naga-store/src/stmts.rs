//! The writer's connection with its statements prepared once and found by
//! the address of their SQL text.
//!
//! rusqlite's `prepare_cached` finds a statement by its SQL text: it trims
//! and hashes the whole text (SipHash, a few hundred bytes) when the
//! statement is taken and again when it goes back, and keeps an LRU list:
//! ~4% of the writer's time under load (perf). The writer's statements are
//! string literals, so their address names them: [`Db::cached`] takes a
//! `&'static str` and keys on its address and length. A literal's text never
//! changes and its address is never reused, so a key can never name other
//! SQL (the same text at two addresses just gets two statements).

use rusqlite::{Connection, Statement};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Deref, DerefMut};

/// A connection and its cached statements. Derefs to the connection.
pub struct Db {
    // Declared before `conn`, so dropped first: they borrow it.
    cache: RefCell<HashMap<(usize, usize), Statement<'static>, BuildHasherDefault<AddressHasher>>>,
    // Boxed: the statements point at the connection, which must not move.
    conn: Box<Connection>,
}

impl Db {
    pub fn new(conn: Connection) -> Self {
        Self {
            cache: RefCell::default(),
            conn: Box::new(conn),
        }
    }

    /// The statement for `sql`, prepared at its first use. While it is out
    /// (a nested use of the same SQL), another is prepared.
    pub fn cached(&self, sql: &'static str) -> rusqlite::Result<Cached<'_>> {
        let key = (sql.as_ptr() as usize, sql.len());
        let stmt = match self.cache.borrow_mut().remove(&key) {
            Some(stmt) => stmt,
            None => self.conn.prepare(sql)?,
        };
        Ok(Cached {
            db: self,
            key,
            stmt: Some(stmt),
        })
    }
}

impl Deref for Db {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// A statement out of the cache; it goes back when dropped.
pub struct Cached<'db> {
    db: &'db Db,
    key: (usize, usize),
    stmt: Option<Statement<'db>>,
}

impl<'db> Deref for Cached<'db> {
    type Target = Statement<'db>;
    fn deref(&self) -> &Statement<'db> {
        self.stmt.as_ref().expect("present until dropped")
    }
}

impl DerefMut for Cached<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.stmt.as_mut().expect("present until dropped")
    }
}

impl Drop for Cached<'_> {
    fn drop(&mut self) {
        let Some(stmt) = self.stmt.take() else { return };
        // SAFETY: the statement borrows `*self.db.conn`, which is boxed (it
        // never moves) and outlives the cache (dropped first, see `Db`).
        let stmt: Statement<'static> = unsafe { std::mem::transmute(stmt) };
        self.db.cache.borrow_mut().entry(self.key).or_insert(stmt);
    }
}

/// Hashes a key of two addresses/lengths by mixing them once (they are
/// distinct already; no need for SipHash).
#[derive(Default)]
pub struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    const EVENS: &str = "SELECT n FROM t WHERE n % 2 = 0 AND n >= ?1 ORDER BY n";

    fn db() -> Db {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (n INTEGER PRIMARY KEY);
             WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 10)
             INSERT INTO t SELECT n FROM k;",
        )
        .unwrap();
        Db::new(c)
    }

    fn evens(db: &Db, from: i64) -> Vec<i64> {
        let mut st = db.cached(EVENS).unwrap();
        let rows = st.query_map(params![from], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// A statement goes back reset and is bound afresh at its next use; one
    /// still out (mid-iteration) is not handed out twice.
    #[test]
    fn statements_are_reused_and_never_shared_while_out() {
        let db = db();
        assert_eq!(evens(&db, 1), [2, 4, 6, 8, 10]);
        assert_eq!(evens(&db, 7), [8, 10]);
        let mut outer = db.cached(EVENS).unwrap();
        let mut rows = outer.query(params![5]).unwrap();
        let first: i64 = rows.next().unwrap().unwrap().get(0).unwrap();
        // The same SQL while the first is mid-iteration: its own statement.
        assert_eq!(evens(&db, 9), [10]);
        let second: i64 = rows.next().unwrap().unwrap().get(0).unwrap();
        assert_eq!((first, second), (6, 8));
        drop(rows);
        drop(outer);
        assert_eq!(evens(&db, 0), [2, 4, 6, 8, 10]);
        assert_eq!(db.cache.borrow().len(), 1);
    }
}
