//! A thin SQLite VFS for the writer's connection that writes each commit's
//! WAL frames in a few large `pwrite`s instead of two per frame.
//!
//! SQLite appends a frame as two writes (its 24-byte header, then the page),
//! and a group commit of the writer appends 15–40 frames: over a third of
//! the writer's CPU went to those system calls and to the kernel's
//! per-write work on each 4 KiB page they straddle. This VFS wraps the platform's
//! ("unix") and, for the WAL file only, gathers appended frames in memory and
//! hands them to the kernel in a few large writes (64 KiB each) **inside the
//! write of the commit frame's page**, so that:
//! - a commit's frames are in the file before SQLite publishes the commit in
//!   the shared WAL index (which it does after its last frame write): readers
//!   and the checkpointer never see a committed frame that is not written,
//!   and a failed write fails the commit, as before;
//! - nothing else changes: reads, syncs, truncation and size queries of the
//!   WAL write out what is gathered first; writes that are not appends (a
//!   frame's checksum rewritten in place, the WAL header on a restart) go
//!   straight through; frames still gathered when the connection releases
//!   the WAL's write lock (a rolled-back transaction's) are dropped.
//!
//! One more thing, for either file: a truncation to the size the file
//! already has is skipped (ext4 still runs its whole truncate path; see
//! `truncate`).
//!
//! Durability is unchanged: a frame in this buffer belongs to a commit that
//! has not returned, exactly like a frame whose `write` has not happened yet.
//!
//! This module and `stmts` are the store's only `unsafe` code (the crate
//! denies `unsafe_op_in_unsafe_fn`: each unsafe function's body is one
//! block with its own `SAFETY` note). What covers it: the tests below (every
//! commit in the files when it returns, rolled-back frames dropped, size
//! changes), and `crates/naga/tests/torture.rs`, which kills the real naga
//! with -9 at random moments under load thirty times and checks the file's
//! integrity and every acknowledged batch after each restart.

use rusqlite::ffi;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

/// The name to open the writer's connection with.
pub(crate) const NAME: &CStr = c"naga-wal";

/// Frames gathered beyond this are written out even before their commit
/// (a very large transaction); 8 MiB is 2,000 frames of 4 KiB.
const MAX_GATHER: usize = 8 << 20;

/// The most the platform VFS writes in one call (it masks a length to 17
/// bits): gathered frames go out in pieces of this size.
const MAX_WRITE: usize = 64 << 10;

/// Size of a WAL frame header (SQLite's `WAL_FRAME_HDRSIZE`).
const FRAME_HEADER: usize = 24;

/// Registers the VFS once; later calls return the first outcome.
pub(crate) fn register() -> Result<(), c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    // SAFETY: runs once (`OnceLock`). `sqlite3_vfs_find(NULL)` answers the
    // default VFS, which SQLite keeps for the process; it is copied, not
    // changed; the copy is leaked, so it outlives every connection, as
    // `sqlite3_vfs_register` requires; `NAME` is a static C string.
    *REGISTERED.get_or_init(|| unsafe {
        let real = ffi::sqlite3_vfs_find(std::ptr::null());
        if real.is_null() {
            return Err(ffi::SQLITE_ERROR);
        }
        // The wrapper is the platform VFS with a larger file object and its
        // own xOpen; every other entry (paths, access, time…) is the platform's.
        let mut vfs: ffi::sqlite3_vfs = *real;
        vfs.szOsFile = std::mem::size_of::<File>() as c_int;
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = NAME.as_ptr();
        vfs.xOpen = Some(open);
        REAL.set(Platform(real)).ok();
        let vfs = Box::leak(Box::new(vfs));
        match ffi::sqlite3_vfs_register(vfs, 0) {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(rc),
        }
    })
}

/// The platform VFS, wrapped.
struct Platform(*mut ffi::sqlite3_vfs);
// SAFETY: SQLite's VFS objects are immutable once registered and
// thread-safe by contract.
unsafe impl Send for Platform {}
unsafe impl Sync for Platform {}
static REAL: OnceLock<Platform> = OnceLock::new();

/// One open file: SQLite's header first (it allocates `szOsFile` bytes and
/// casts), then the platform's file, then the WAL's gathered frames.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// `Some` for a WAL file only.
    wal: Option<Box<Gather>>,
    /// The other file of the pair: a database file's open WAL, a WAL's
    /// database file (null when none). A database file drops its WAL's
    /// gathered frames when the write lock is released (see `shm_lock`).
    pair: *mut File,
}

/// Appended WAL bytes not yet written, from `offset` on.
#[derive(Default)]
struct Gather {
    offset: i64,
    bytes: Vec<u8>,
    /// The end of the furthest write since the WAL header was last written:
    /// a write below it rewrites a frame and goes straight through.
    high_water: i64,
    /// The last gathered write was a commit frame's header: its page ends
    /// the commit.
    commit_header: bool,
}

impl Gather {
    fn end(&self) -> i64 {
        self.offset + self.bytes.len() as i64
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

unsafe fn this<'a>(f: *mut ffi::sqlite3_file) -> &'a mut File {
    // SAFETY: SQLite passes every method the `sqlite3_file` it allocated for this file (`szOsFile` bytes of ours) after `open` wrote a `File` there (its first field is that header); during a method call nothing else refers to it.
    unsafe { &mut *(f as *mut File) }
}

/// The platform file's method `$m`, called with `$args`.
macro_rules! real {
    ($file:expr, $m:ident $(, $arg:expr)*) => {{
        // SAFETY: `$file` is a `File` that SQLite opened through `open` and
        // has not closed (SQLite calls a file's methods only then): its
        // `real` is the platform's open file, whose method table lives as
        // long as it; the arguments are the ones SQLite passed to us.
        unsafe {
            let real = $file.real;
            match (*(*real).pMethods).$m {
                Some(m) => m(real $(, $arg)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    }};
}

/// Writes out what the WAL has gathered, then calls the platform's method:
/// whatever reads, syncs or measures the file sees every write made so far.
macro_rules! flushed_then {
    ($f:expr, $m:ident $(, $arg:expr)*) => {{
        // SAFETY: `$f` is a file SQLite opened through `open` (see `real!`).
        let file = unsafe { this($f) };
        // SAFETY: `file` is that open file; `flush` writes through its `real`.
        match unsafe { flush(file) } {
            ffi::SQLITE_OK => real!(file, $m $(, $arg)*),
            rc => rc,
        }
    }};
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls `open` with `file` pointing at `szOsFile` (our `File`'s size) bytes it allocated, a name and an out-pointer valid for the call. `REAL` is the platform VFS found at registration, which SQLite keeps for the process; the platform file allocated here is zeroed before its `xOpen` and freed on failure, or in `close`. `sqlite3_database_file_object` is given the WAL's name as SQLite passed it (which it documents for VFS `xOpen` of a WAL), and its answer is used only when it is one of our files.
    unsafe {
        (*file).pMethods = std::ptr::null();
        let Some(Platform(real_vfs)) = REAL.get() else {
            return ffi::SQLITE_ERROR;
        };
        let size = (**real_vfs).szOsFile as u64;
        let real = ffi::sqlite3_malloc64(size) as *mut ffi::sqlite3_file;
        if real.is_null() {
            return ffi::SQLITE_NOMEM;
        }
        std::ptr::write_bytes(real as *mut u8, 0, size as usize);
        let Some(real_open) = (**real_vfs).xOpen else {
            ffi::sqlite3_free(real as *mut c_void);
            return ffi::SQLITE_ERROR;
        };
        let rc = real_open(*real_vfs, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
            // On failure SQLite does not call xClose: nothing of ours is left.
            if !(*real).pMethods.is_null() {
                if let Some(close) = (*(*real).pMethods).xClose {
                    close(real);
                }
            }
            ffi::sqlite3_free(real as *mut c_void);
            return if rc == ffi::SQLITE_OK {
                ffi::SQLITE_ERROR
            } else {
                rc
            };
        }
        let is_wal = flags & ffi::SQLITE_OPEN_WAL != 0;
        let pair = if is_wal {
            let db = ffi::sqlite3_database_file_object(name) as *mut File;
            // Ours only (the same connection opens both through this VFS).
            if !db.is_null() && std::ptr::eq((*db).base.pMethods, &METHODS) {
                db
            } else {
                std::ptr::null_mut()
            }
        } else {
            std::ptr::null_mut()
        };
        let ours = file as *mut File;
        std::ptr::write(
            ours,
            File {
                base: ffi::sqlite3_file { pMethods: &METHODS },
                real,
                wal: is_wal.then(Box::<Gather>::default),
                pair,
            },
        );
        if !pair.is_null() {
            (*pair).pair = ours;
        }
        ffi::SQLITE_OK
    }
}

/// Writes out what is gathered; the gathered bytes are dropped either way
/// (a failed write fails the SQLite call that asked for it).
unsafe fn flush(file: &mut File) -> c_int {
    let Some(gather) = file.wal.as_mut() else {
        return ffi::SQLITE_OK;
    };
    gather.commit_header = false;
    if gather.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let bytes = std::mem::take(&mut gather.bytes);
    let mut rc = ffi::SQLITE_OK;
    for (i, chunk) in bytes.chunks(MAX_WRITE).enumerate() {
        let at = gather_offset(file) + (i * MAX_WRITE) as i64;
        rc = real!(
            file,
            xWrite,
            chunk.as_ptr() as *const c_void,
            chunk.len() as c_int,
            at
        );
        if rc != ffi::SQLITE_OK {
            break;
        }
    }
    if let Some(gather) = file.wal.as_mut() {
        // The allocation is kept for the next commit.
        gather.bytes = bytes;
        gather.bytes.clear();
    }
    rc
}

fn gather_offset(file: &File) -> i64 {
    file.wal.as_ref().map_or(0, |g| g.offset)
}

/// Closing a WAL drops what it gathered: every commit's frames are written
/// by the end of the commit, so anything left belongs to none.
// (`real!` carries its own `unsafe` block, redundant inside this one.)
#[allow(unused_unsafe)]
unsafe extern "C" fn close(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once, after its last use: `file` is still the `File` `open` wrote, `pair` is null or the other file of the pair (it unpairs itself here before it is freed), `real` was allocated with `sqlite3_malloc64` in `open`, and the `File` is dropped in place once and never used again (SQLite frees its bytes).
    unsafe {
        let file = this(f);
        if !file.pair.is_null() {
            (*file.pair).pair = std::ptr::null_mut();
        }
        let rc = real!(file, xClose);
        ffi::sqlite3_free(file.real as *mut c_void);
        std::ptr::drop_in_place(file as *mut File);
        rc
    }
}

unsafe extern "C" fn read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    flushed_then!(f, xRead, buf, amt, off)
}

// (`real!` carries its own `unsafe` block, redundant inside this one.)
#[allow(unused_unsafe)]
unsafe extern "C" fn write(
    f: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    // SAFETY: `f` is an open `File` (see `this`); SQLite passes `buf` holding `amt` bytes for this call.
    unsafe {
        let file = this(f);
        let Some(gather) = file.wal.as_mut() else {
            return real!(file, xWrite, buf, amt, off);
        };
        let data = std::slice::from_raw_parts(buf as *const u8, amt.max(0) as usize);
        let appends = if gather.bytes.is_empty() {
            off > 0 && off >= gather.high_water
        } else {
            off == gather.end()
        };
        if !appends {
            // The WAL header (a new cycle of the log) or a rewrite in place.
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let rc = real!(file, xWrite, buf, amt, off);
            if let Some(gather) = file.wal.as_mut() {
                gather.high_water = if off == 0 {
                    off + amt as i64
                } else {
                    gather.high_water.max(off + amt as i64)
                };
            }
            return rc;
        }
        if gather.bytes.is_empty() {
            gather.offset = off;
        }
        gather.bytes.extend_from_slice(data);
        gather.high_water = gather.high_water.max(off + amt as i64);
        let ends_commit = gather.commit_header && data.len() != FRAME_HEADER;
        // A frame header's bytes 4..8 are the database size after a commit,
        // non-zero only on a commit's last frame.
        gather.commit_header = data.len() == FRAME_HEADER && data[4..8] != [0, 0, 0, 0];
        if ends_commit || gather.bytes.len() >= MAX_GATHER {
            return flush(file);
        }
        ffi::SQLITE_OK
    }
}

/// A truncation to the size the file already has is skipped: SQLite asks
/// for one at the end of every complete checkpoint, and ext4 still runs its
/// truncate path, which held the writer for 10–15 ms at each
/// WAL restart.
// (`real!` carries its own `unsafe` block, redundant inside this one.)
#[allow(unused_unsafe)]
unsafe extern "C" fn truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: `f` is an open `File` (see `this`); its platform file is reached through `real!`.
    unsafe {
        let file = this(f);
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let mut current: i64 = -1;
        if real!(file, xFileSize, &mut current) == ffi::SQLITE_OK && current == size {
            return ffi::SQLITE_OK;
        }
        real!(file, xTruncate, size)
    }
}

unsafe extern "C" fn sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flushed_then!(f, xSync, flags)
}

unsafe extern "C" fn file_size(f: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    flushed_then!(f, xFileSize, size)
}

unsafe extern "C" fn lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    real!(this(f), xLock, level)
}

unsafe extern "C" fn unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    real!(this(f), xUnlock, level)
}

unsafe extern "C" fn check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    real!(this(f), xCheckReservedLock, out)
}

unsafe extern "C" fn file_control(f: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    flushed_then!(f, xFileControl, op, arg)
}

unsafe extern "C" fn sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `f` is an open `File`; its `real` and the platform's method table live as long as it (see `real!`).
    unsafe {
        let file = this(f);
        match (*(*file.real).pMethods).xSectorSize {
            Some(m) => m(file.real),
            None => 4096,
        }
    }
}

unsafe extern "C" fn device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `f` is an open `File`; its `real` and the platform's method table live as long as it (see `real!`).
    unsafe {
        let file = this(f);
        match (*(*file.real).pMethods).xDeviceCharacteristics {
            Some(m) => m(file.real),
            None => 0,
        }
    }
}

unsafe extern "C" fn shm_map(
    f: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    real!(this(f), xShmMap, region, size, extend, out)
}

/// SQLite's `WAL_WRITE_LOCK`, the first lock of the WAL index.
const WAL_WRITE_LOCK: c_int = 0;

/// When this connection gives up the WAL's write lock, its transaction has
/// committed (and its frames are written) or rolled back: frames still
/// gathered then are a rolled-back transaction's and are dropped, so that
/// they can never land later on frames another connection has committed.
// (`real!` carries its own `unsafe` block, redundant inside this one.)
#[allow(unused_unsafe)]
unsafe extern "C" fn shm_lock(
    f: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: `f` is an open `File` (see `this`); `pair` is null or the open database or WAL file of the same connection, which unpairs itself in `close` before it goes.
    unsafe {
        let file = this(f);
        let rc = real!(file, xShmLock, offset, n, flags);
        let releases_write =
            offset == WAL_WRITE_LOCK && flags == ffi::SQLITE_SHM_UNLOCK | ffi::SQLITE_SHM_EXCLUSIVE;
        if releases_write && !file.pair.is_null() {
            if let Some(gather) = (*file.pair).wal.as_mut() {
                gather.bytes.clear();
                gather.commit_header = false;
            }
        }
        rc
    }
}

unsafe extern "C" fn shm_barrier(f: *mut ffi::sqlite3_file) {
    // SAFETY: `f` is an open `File`; its `real` and the platform's method table live as long as it (see `real!`).
    unsafe {
        let file = this(f);
        if let Some(m) = (*(*file.real).pMethods).xShmBarrier {
            m(file.real)
        }
    }
}

unsafe extern "C" fn shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    real!(this(f), xShmUnmap, delete)
}

unsafe extern "C" fn fetch(
    f: *mut ffi::sqlite3_file,
    off: i64,
    amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    flushed_then!(f, xFetch, off, amt, out)
}

unsafe extern "C" fn unfetch(f: *mut ffi::sqlite3_file, off: i64, p: *mut c_void) -> c_int {
    real!(this(f), xUnfetch, off, p)
}

#[cfg(test)]
mod tests;
