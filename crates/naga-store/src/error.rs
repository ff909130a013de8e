#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("the write was not committed: the store's writer stopped or failed")]
    NotCommitted,
    /// A write that contradicts what is stored (not retried, not a fault).
    #[error("{0}")]
    Conflict(String),
    /// The task is no longer held by this node (its lease expired and
    /// another took it over, or it ended).
    #[error("task `{0}` is no longer held by this node")]
    LeaseLost(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

/// SQLite's primary result codes that say the storage, not the request,
/// is at fault: busy, locked, out of memory, I/O error, disk full, cannot
/// open. The same write may succeed later.
const TRANSIENT_CODES: [i32; 6] = [5, 6, 7, 10, 13, 14];

/// PostgreSQL's SQLSTATEs that say the database, not the request, is at
/// fault: connection failures (08), serialization failures and deadlocks
/// (40001, 40P01: the transaction may simply be tried again), insufficient
/// resources such as a full disk (53), the server shutting down or starting
/// (57P01–57P03), system and I/O errors (58).
fn postgres_transient(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
        || ["08", "53", "58"]
            .iter()
            .any(|class| code.starts_with(class))
}

/// SQLite's primary result codes that say the database file is damaged
/// (corrupt, not a database): no retry helps; a backup does.
const DAMAGE_CODES: [i32; 2] = [11, 26];

impl StoreError {
    /// Whether the store's file is damaged (SQLite found a malformed page):
    /// the request is not at fault, and trying again will not help.
    pub fn is_damage(&self) -> bool {
        let code = match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => Some(e.extended_code),
            Self::Db(sqlx::Error::Database(e))
                if e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_none() =>
            {
                e.code().and_then(|c| c.parse::<i32>().ok())
            }
            _ => None,
        };
        code.is_some_and(|c| DAMAGE_CODES.contains(&(c & 0xff)))
    }

    /// Whether the database could not be reached at all (a connection
    /// refused or lost, no connection within the pool's wait): nothing of
    /// the command was decided, and the next command would fare the same.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Db(
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    // (A server going down or coming up may answer a new
                    // connection with bytes that are not its protocol.)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::WorkerCrashed
            )
        )
    }

    /// Whether what is stored cannot be read back (damaged, or not what
    /// it should be): trying again will not help. What a task is
    /// quarantined for; any other failure to read it is tried again.
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            Self::Corrupt(_) | Self::Db(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_))
        ) || self.is_damage()
    }

    /// The same unreachable database, as an error of its own (to answer
    /// each of several commands one statement carried).
    pub(crate) fn unreachable_again(&self) -> Option<Self> {
        self.is_unreachable().then(|| {
            Self::Db(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                self.to_string(),
            )))
        })
    }

    /// Whether the write may succeed when tried again: the disk was full,
    /// an I/O failed, the database was locked. A fault of the storage, not
    /// of the request: callers retry it with backoff and clients get 503.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Commit(_) => true,
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                TRANSIENT_CODES.contains(&(e.extended_code & 0xff))
            }
            Self::Db(sqlx::Error::Database(e)) => {
                match e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    Some(pg) => postgres_transient(pg.code()),
                    None => e
                        .code()
                        .and_then(|c| c.parse::<i32>().ok())
                        .is_some_and(|c| TRANSIENT_CODES.contains(&(c & 0xff))),
                }
            }
            Self::Db(_) if self.is_unreachable() => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server going down or coming up can answer a new connection with
    /// bytes that are not its protocol: the database is unreachable, not
    /// the task damaged (a task read so was quarantined as unreadable).
    #[test]
    fn a_garbled_connection_is_unreachable_not_unreadable() {
        let garbled = StoreError::Db(sqlx::Error::Protocol(
            "unexpected response from SSLRequest: 0x00".into(),
        ));
        assert!(garbled.is_unreachable() && garbled.is_transient());
        assert!(!garbled.is_unreadable());
        let corrupt = StoreError::Corrupt("calls are not an array".into());
        assert!(corrupt.is_unreadable() && !corrupt.is_transient());
        assert!(!StoreError::Conflict("a request's own".into()).is_unreadable());
    }

    #[test]
    fn a_damaged_file_is_damage_not_transient() {
        let failure = |code| {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        for code in [11, 26] {
            assert!(failure(code).is_damage() && !failure(code).is_transient());
        }
        assert!(!failure(13).is_damage(), "a full disk is not damage");
    }

    #[test]
    fn a_full_disk_is_transient_a_constraint_is_not() {
        let failure = |code| {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        assert!(failure(rusqlite::ffi::SQLITE_FULL).is_transient());
        assert!(failure(rusqlite::ffi::SQLITE_IOERR_WRITE).is_transient());
        assert!(failure(rusqlite::ffi::SQLITE_BUSY).is_transient());
        assert!(!failure(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE).is_transient());
        assert!(StoreError::Commit("disk I/O error".into()).is_transient());
        assert!(!StoreError::NotCommitted.is_transient());
        assert!(!StoreError::LeaseLost("t".into()).is_transient());
        assert!(!StoreError::Corrupt("x".into()).is_transient());
        assert!(postgres_transient("53100"), "disk full");
        assert!(postgres_transient("40P01"), "deadlock");
        assert!(postgres_transient("08006"), "connection failure");
        assert!(!postgres_transient("23505"), "unique violation");
        assert!(!postgres_transient("22P02"), "invalid text");
    }
}
