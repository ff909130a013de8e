//! The SQLite backend (the embedded default): one writer thread commits
//! many requests in one transaction (group commit, `writer`), through
//! prepared statements it keeps (`stmts`) and a VFS that gathers each
//! commit's WAL writes into one (`wal_vfs`); reads use a pool of their own
//! beside it (WAL). Its commands, one file an entity as on PostgreSQL:
//! `tasks`, `leases`, `outbox`, `memory`, `conversations`.

mod backend;
pub(crate) mod conversations;
pub(crate) mod leases;
pub(crate) mod memory;
pub(crate) mod outbox;
pub(crate) mod push_configs;
pub(crate) mod retention;
#[allow(unsafe_code)]
pub(crate) mod stmts;
pub(crate) mod tasks;
#[allow(unsafe_code)]
pub(crate) mod wal_vfs;
pub(crate) mod writer;

pub(crate) use backend::Sqlite;

use crate::StoreError;
use naga_core::config::{StoreConfig, Synchronous};
use std::time::Duration;

/// Column `i` of a row the writer read back, decoded into its enum (a
/// status, kind or policy); a value outside the set is an error.
pub(crate) fn decoded<T>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T: TryFrom<String, Error = naga_core::UnknownStored>,
{
    T::try_from(r.get::<_, String>(i)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The writer thread (and its checkpointer) on the database at `url`.
pub(crate) fn writer(url: &str, config: &StoreConfig) -> Result<writer::Writer, StoreError> {
    let checkpoints = writer_connection(url, config.synchronous)?;
    Ok(writer::Writer::spawn(
        writer_connection(url, config.synchronous)?,
        checkpoints,
        config.max_batch.max(1),
    ))
}

/// The file of an `sqlite:` URL.
pub(crate) fn path(url: &str) -> &str {
    url.trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default()
}

/// The writer's page cache, in KiB (`cache_size` = minus this). 8 MiB holds
/// the hot index pages of a store of 200,000 batches as well as 32 MiB did
/// (`write_load`: 46–49 µs per batch either way), costs 3–5 µs less per batch
/// on a small store (SQLite walks its whole page cache at each commit where a
/// b-tree rebalanced), and is 24 MiB less resident memory.
const WRITER_CACHE_KIB: u32 = 8192;

/// The WAL file is cut back to this size when the log restarts: well above
/// the largest it reaches between restarts (the writer's restart bound is
/// 16,384 frames, ~68 MB, plus what arrives while the checkpointer catches
/// up), so that it is not cut in steady state. Cutting it at 64 MiB (below
/// that size) cost every restart a truncate of 8–19 ms on the writer (ext4
/// frees and discards the blocks), and the blocks were then allocated again.
const WAL_KEEP_BYTES: u64 = 256 << 20;

/// The writer's own connection (rusqlite), with the same pragmas.
fn writer_connection(
    url: &str,
    synchronous: Synchronous,
) -> Result<rusqlite::Connection, StoreError> {
    let path = path(url);
    wal_vfs::register().map_err(|rc| {
        StoreError::Unsupported(format!(
            "the WAL-gathering VFS could not be registered (SQLite code {rc})"
        ))
    })?;
    let conn = rusqlite::Connection::open_with_flags_and_vfs(
        path,
        rusqlite::OpenFlags::default(),
        wal_vfs::NAME.to_str().unwrap_or_default(),
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let sync = match synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    // Checkpoints run on their own thread (see writer.rs), not in commits.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = 0;
         PRAGMA journal_size_limit = {WAL_KEEP_BYTES};"
    ))?;
    Ok(conn)
}
