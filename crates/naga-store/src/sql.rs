//! SQL written once for both backends: the predicates every command and
//! query shares, as `concat!`-able literals (`unfinished!()` in a
//! statement's text). The take-over predicate is `unheld!`, with each
//! backend's placeholder sign.

/// A task that has not ended (queued or running): `unfinished!()`, or
/// `unfinished!("t")` for a table named `t` in the statement.
macro_rules! unfinished {
    () => {
        "status IN ('queued', 'running')"
    };
    ($table:literal) => {
        concat!($table, ".status IN ('queued', 'running')")
    };
}
pub(crate) use unfinished;

/// A task that has ended (succeeded, failed, cancelled, timed out):
/// `ended!()`, or `ended!("t")`.
macro_rules! ended {
    () => {
        "status NOT IN ('queued', 'running')"
    };
    ($table:literal) => {
        concat!($table, ".status NOT IN ('queued', 'running')")
    };
}
pub(crate) use ended;

/// Who may take a task or a pending callback over: nobody holds it, its
/// lease lapsed (before `$lapsed`), or its holder stopped beating
/// (heartbeat before parameter 4; parameter 1 the claimant). `$p` is the
/// backend's placeholder sign: `"?"` (SQLite) or `"$"` (PostgreSQL).
macro_rules! unheld {
    ($p:literal, $lapsed:literal) => {
        concat!(
            "(lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < ",
            $lapsed,
            " OR lease_owner IN (SELECT id FROM nodes WHERE heartbeat_at < ",
            $p,
            "4 AND id <> ",
            $p,
            "1))"
        )
    };
}
pub(crate) use unheld;
