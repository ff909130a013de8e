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

use rusqlite::{ffi, Connection, Statement};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

type ByAddress<T> = RefCell<HashMap<(usize, usize), T, BuildHasherDefault<AddressHasher>>>;

/// A connection and its cached statements. Derefs to the connection.
pub struct Db {
    // Declared before `conn`, so dropped first: they borrow it.
    cache: ByAddress<Statement<'static>>,
    borrowing: ByAddress<RawStatement>,
    // Boxed: the statements point at the connection, which must not move.
    conn: Box<Connection>,
}

/// One parameter of [`Db::execute_borrowing`].
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Self::Text(s)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(Self::Null, Self::Text)
    }
}

impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(n: Option<i64>) -> Self {
        n.map_or(Self::Null, Self::Int)
    }
}

impl Db {
    pub fn new(conn: Connection) -> Self {
        Self {
            cache: RefCell::default(),
            borrowing: RefCell::default(),
            conn: Box::new(conn),
        }
    }

    /// Runs `sql` (a statement that returns no rows) with `args` bound in
    /// place: their text is not copied, as rusqlite always does
    /// (`SQLITE_TRANSIENT`; rusqlite issue #164). SQLite reads bound text
    /// only while the statement steps, which happens inside this call, and
    /// the bindings are cleared before it returns, so nothing keeps a
    /// pointer into `args` (`SQLITE_STATIC`'s contract). For the writer's
    /// largest INSERTs: their text copies were ~5% of its instructions.
    /// Returns the rows changed; errors as rusqlite reports them.
    pub fn execute_borrowing(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> rusqlite::Result<usize> {
        let key = (sql.as_ptr() as usize, sql.len());
        let mut borrowing = self.borrowing.borrow_mut();
        let stmt = match borrowing.get(&key) {
            Some(stmt) => stmt.0,
            None => {
                let stmt = self.prepare_raw(sql)?;
                borrowing.insert(key, RawStatement(stmt));
                stmt
            }
        };
        // Not reentrant (nothing runs SQL from inside a step), but the
        // borrow is released before stepping all the same.
        drop(borrowing);
        let db = self.db();
        let stmt = stmt.as_ptr();
        // SAFETY: `stmt` is a live statement of this connection (finalized
        // only when `Db` drops); each pointer bound with SQLITE_STATIC
        // points into `args`, which outlives this call, and the bindings are
        // cleared before it returns.
        unsafe {
            let mut rc = ffi::SQLITE_OK;
            if ffi::sqlite3_bind_parameter_count(stmt) as usize != args.len() {
                rc = ffi::SQLITE_RANGE;
            }
            for (i, arg) in args.iter().enumerate() {
                if rc != ffi::SQLITE_OK {
                    break;
                }
                let at = (i + 1) as c_int;
                rc = match *arg {
                    Arg::Null => ffi::sqlite3_bind_null(stmt, at),
                    Arg::Int(n) => ffi::sqlite3_bind_int64(stmt, at, n),
                    Arg::Text(t) => ffi::sqlite3_bind_text64(
                        stmt,
                        at,
                        t.as_ptr().cast(),
                        t.len() as u64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                };
            }
            let result = match rc {
                ffi::SQLITE_OK => match ffi::sqlite3_step(stmt) {
                    ffi::SQLITE_DONE => Ok(ffi::sqlite3_changes64(db) as usize),
                    ffi::SQLITE_ROW => Err(rusqlite::Error::ExecuteReturnedResults),
                    _ => Err(error(db)),
                },
                ffi::SQLITE_RANGE => Err(rusqlite::Error::InvalidParameterCount(
                    args.len(),
                    ffi::sqlite3_bind_parameter_count(stmt) as usize,
                )),
                _ => Err(error(db)),
            };
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
            result
        }
    }

    fn db(&self) -> *mut ffi::sqlite3 {
        // SAFETY: the handle is only used while `self.conn` lives, on the
        // thread that owns it.
        unsafe { self.conn.handle() }
    }

    fn prepare_raw(&self, sql: &str) -> rusqlite::Result<NonNull<ffi::sqlite3_stmt>> {
        let db = self.db();
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `sql` is valid for its length; SQLite copies what it keeps.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast(),
                sql.len() as c_int,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        match (rc, NonNull::new(stmt)) {
            (ffi::SQLITE_OK, Some(stmt)) => Ok(stmt),
            (ffi::SQLITE_OK, None) => Err(rusqlite::Error::InvalidQuery),
            _ => Err(error(db)),
        }
    }

    /// The statement for `sql`, prepared at its first use. While it is out
    /// (a nested use of the same SQL), another is prepared.
    pub fn cached(&self, sql: &'static str) -> rusqlite::Result<Cached<'_>> {
        let key = (sql.as_ptr() as usize, sql.len());
        let stmt = match self.cache.borrow_mut().remove(&key) {
            Some(stmt) => stmt,
            None => numbered_in_order(sql, self.conn.prepare(sql)?)?,
        };
        Ok(Cached {
            db: self,
            key,
            stmt: Some(stmt),
        })
    }
}

/// Refuses a statement whose placeholders would not bind by position: a
/// `$N` (a statement written once for both backends, `sql.rs`) is a named
/// parameter to SQLite, numbered by first appearance, so `$N` must first
/// appear N-th.
fn numbered_in_order<'c>(sql: &str, stmt: Statement<'c>) -> rusqlite::Result<Statement<'c>> {
    for i in 1..=stmt.parameter_count() {
        match stmt.parameter_name(i) {
            Some(name) if name != format!("?{i}") && name != format!("${i}") => {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "{name} is parameter {i} of `{sql}`: number them in order"
                )));
            }
            _ => {}
        }
    }
    Ok(stmt)
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

/// A statement prepared through the C API, finalized when dropped (before
/// its connection: see `Db`).
struct RawStatement(NonNull<ffi::sqlite3_stmt>);

impl Drop for RawStatement {
    fn drop(&mut self) {
        // SAFETY: prepared by `prepare_raw`, finalized once, here.
        unsafe {
            ffi::sqlite3_finalize(self.0.as_ptr());
        }
    }
}

/// The connection's last error, as rusqlite reports errors.
fn error(db: *mut ffi::sqlite3) -> rusqlite::Error {
    // SAFETY: `db` is a live connection; the message is copied at once.
    unsafe {
        let code = ffi::sqlite3_extended_errcode(db);
        let msg = std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(db))
            .to_string_lossy()
            .into_owned();
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(msg))
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

    #[test]
    fn dollar_placeholders_bind_by_position_only_when_numbered_in_order() {
        let db = db();
        // `$N` first appearing N-th: the same positions as on PostgreSQL.
        let mut st = db
            .cached("SELECT n FROM t WHERE n >= $1 AND n <= $2 AND n <> $1")
            .unwrap();
        let rows: Vec<i64> = st
            .query_map(params![3, 5], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [4, 5]);
        drop(st);
        // `$2` first would bind the first value: refused.
        let refused = db.cached("SELECT n FROM t WHERE n >= $2 AND n <= $1").err();
        assert!(
            matches!(refused, Some(rusqlite::Error::InvalidParameterName(_))),
            "{refused:?}"
        );
    }

    const PUT: &str = "INSERT INTO kv (k, v, n) VALUES (?1, ?2, ?3)";

    fn kv() -> Db {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT, n INTEGER NOT NULL)")
            .unwrap();
        Db::new(c)
    }

    fn row(db: &Db, k: &str) -> (Option<String>, i64) {
        db.query_row("SELECT v, n FROM kv WHERE k = ?1", [k], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    }

    /// Texts bound in place are stored whole (empty, multi-byte, NULL) from
    /// buffers freed right after each call, through one reused statement.
    /// (That no pointer into them stays bound is `sqlite3_clear_bindings`
    /// in `execute_borrowing`, which no query could observe.)
    #[test]
    fn borrowed_texts_are_stored_whole_through_one_statement() {
        let db = kv();
        for (k, v, n) in [("a", Some("一二三"), 1), ("b", Some(""), 2), ("c", None, 3)] {
            let (k, v) = (k.to_owned(), v.map(str::to_owned));
            let args = [k.as_str().into(), v.as_deref().into(), Arg::Int(n)];
            assert_eq!(db.execute_borrowing(PUT, &args).unwrap(), 1);
        }
        assert_eq!(row(&db, "a"), (Some("一二三".into()), 1));
        assert_eq!(row(&db, "b"), (Some(String::new()), 2));
        assert_eq!(row(&db, "c"), (None, 3));
    }

    /// Errors come back as rusqlite reports them, nothing is written, and
    /// the statement works again afterwards.
    #[test]
    fn borrowed_execution_reports_errors_and_recovers() {
        let db = kv();
        let args = |k: &'static str, n: Option<i64>| [Arg::Text(k), Arg::Null, n.into()];
        db.execute_borrowing(PUT, &args("a", Some(1))).unwrap();
        match db.execute_borrowing(PUT, &args("a", Some(2))) {
            Err(rusqlite::Error::SqliteFailure(e, Some(m))) => {
                assert_eq!(e.extended_code, ffi::SQLITE_CONSTRAINT_PRIMARYKEY);
                assert!(m.contains("kv.k"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        match db.execute_borrowing(PUT, &args("b", None)) {
            Err(rusqlite::Error::SqliteFailure(e, Some(m))) => {
                assert_eq!(e.extended_code, ffi::SQLITE_CONSTRAINT_NOTNULL);
                assert!(m.contains("kv.n"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            db.execute_borrowing(PUT, &[Arg::Text("c")]),
            Err(rusqlite::Error::InvalidParameterCount(1, 3))
        ));
        assert!(matches!(
            db.execute_borrowing("SELECT k FROM kv", &[]),
            Err(rusqlite::Error::ExecuteReturnedResults)
        ));
        db.execute_borrowing(PUT, &args("b", Some(2))).unwrap();
        let keys: i64 = db
            .query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))
            .unwrap();
        assert_eq!(keys, 2);
        assert_eq!(row(&db, "a"), (None, 1));
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
