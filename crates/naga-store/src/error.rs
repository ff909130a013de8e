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
