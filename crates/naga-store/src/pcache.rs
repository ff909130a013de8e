//! SQLite's own page cache, wrapped so that a commit does not walk it.
//!
//! At the end of every write transaction SQLite drops the cached pages past
//! the database's size (`xTruncate`). Its page cache (pcache1) knows the
//! largest page number it ever held and walks only the hash slots between
//! the size and that number, unless they are more than the table has: then
//! it walks the whole table. A b-tree rebalance that reorders its pages
//! swaps two page numbers through the lock-byte page (page 262,145 with
//! 4 KiB pages, never a real page) as a temporary key, so after any such
//! rebalance pcache1's largest key is that page, and every later commit
//! walks the whole cache: ~2,000 pages of the writer's 8 MiB, ~4% of its
//! time under load (perf), for nothing, since no page past the size exists.
//!
//! The wrapper forwards every call and keeps its own bound on the page
//! numbers in use (pages created, and the targets of renumbering except
//! that temporary one, which is always renumbered away within the same
//! rebalance). A truncation at or past that bound has nothing to drop and
//! is skipped; any other goes through unchanged (after a rollback, say).
//! The bound only grows between truncations, so it is never below a page
//! in use: nothing that should be dropped stays.

use rusqlite::ffi;
use std::ffi::{c_int, c_uint};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// One cache: the real one and the bound on its page numbers.
struct Cache {
    real: *mut ffi::sqlite3_pcache,
    /// No page numbered above this is in the cache.
    bound: AtomicU32,
    /// The page SQLite uses as a temporary key when it swaps two page
    /// numbers (`PENDING_BYTE / page size + 1`); never a database page.
    lock_page: u32,
}

/// pcache1's methods, as SQLite had them before the wrapper.
struct Real(ffi::sqlite3_pcache_methods2);
// SAFETY: a table of C function pointers and an argument SQLite never
// changes once configured.
unsafe impl Send for Real {}
unsafe impl Sync for Real {}
static REAL: OnceLock<Real> = OnceLock::new();

/// Installs the wrapper, once per process, before SQLite is first used
/// (`sqlite3_config` refuses after that: then SQLite keeps its own cache
/// and nothing else changes). Returns whether the wrapper is in place.
/// [`crate::Store::open`] calls it; like any `sqlite3_config`, it must not
/// race another thread's first use of SQLite.
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| unsafe {
        let mut real: ffi::sqlite3_pcache_methods2 = std::mem::zeroed();
        if ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_GETPCACHE2,
            &mut real as *mut ffi::sqlite3_pcache_methods2,
        ) != ffi::SQLITE_OK
            || real.xCreate.is_none()
        {
            return false;
        }
        let _ = REAL.set(Real(real));
        let wrapped = ffi::sqlite3_pcache_methods2 {
            iVersion: real.iVersion,
            pArg: real.pArg,
            xInit: real.xInit,
            xShutdown: real.xShutdown,
            // Each method is wrapped only where the real cache has one (a
            // missing one stays missing: nothing is ever called that is not).
            xCreate: Some(create),
            xCachesize: real.xCachesize.and(Some(cachesize)),
            xPagecount: real.xPagecount.and(Some(pagecount)),
            xFetch: real.xFetch.and(Some(fetch)),
            xUnpin: real.xUnpin.and(Some(unpin)),
            xRekey: real.xRekey.and(Some(rekey)),
            xTruncate: real.xTruncate.and(Some(truncate)),
            xDestroy: real.xDestroy.and(Some(destroy)),
            xShrink: real.xShrink.and(Some(shrink)),
        };
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_PCACHE2,
            &wrapped as *const ffi::sqlite3_pcache_methods2,
        ) == ffi::SQLITE_OK
    })
}

fn real() -> &'static ffi::sqlite3_pcache_methods2 {
    // Only reachable through methods installed after REAL was set.
    &REAL.get().expect("the real page cache is recorded first").0
}

/// SQLite's lock byte (`PENDING_BYTE`): the page holding it is never used.
const PENDING_BYTE: u32 = 0x4000_0000;

impl Cache {
    /// Raises the bound to `key`. A cache is only ever used by its own
    /// connection, one call at a time (SQLite holds the connection's mutex):
    /// a plain load and store suffice, no read-modify-write on every fetch.
    fn raise(&self, key: u32) {
        if key > self.bound.load(Ordering::Relaxed) {
            self.bound.store(key, Ordering::Relaxed);
        }
    }
}

unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a Cache {
    &*(p as *const Cache)
}

unsafe extern "C" fn create(
    page: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let real = (real().xCreate.unwrap())(page, extra, purgeable);
    if real.is_null() {
        return real;
    }
    Box::into_raw(Box::new(Cache {
        real,
        bound: AtomicU32::new(0),
        lock_page: PENDING_BYTE / (page.max(1) as u32) + 1,
    })) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, n: c_int) {
    (real().xCachesize.unwrap())(cache(p).real, n)
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    (real().xPagecount.unwrap())(cache(p).real)
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let c = cache(p);
    let page = (real().xFetch.unwrap())(c.real, key, create);
    if create != 0 && !page.is_null() {
        c.raise(key);
    }
    page
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    (real().xUnpin.unwrap())(cache(p).real, page, discard)
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let c = cache(p);
    if new != c.lock_page {
        c.raise(new);
    }
    (real().xRekey.unwrap())(c.real, page, old, new)
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let c = cache(p);
    if limit > c.bound.load(Ordering::Relaxed) {
        return;
    }
    (real().xTruncate.unwrap())(c.real, limit);
    c.bound.store(limit.saturating_sub(1), Ordering::Relaxed);
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    let c = Box::from_raw(p as *mut Cache);
    (real().xDestroy.unwrap())(c.real)
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    (real().xShrink.unwrap())(cache(p).real)
}
