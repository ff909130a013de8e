//! Out of file descriptors (slow clients may hold every one), the store
//! still reads: its reader connections are opened at start and kept, so a
//! read never needs a descriptor of its own.

mod common;

use naga_core::config::StoreConfig;
use naga_store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_when_every_file_descriptor_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, &StoreConfig::default()).await.unwrap();
    store
        .insert_task(common::echo_task("t", "s", "A", i64::MAX))
        .await
        .unwrap();

    // Every descriptor this process may open is taken (under a limit of
    // 512, so that taking them is quick).
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only `limit`.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let lowered = libc::rlimit {
        rlim_cur: limit.rlim_cur.min(512),
        rlim_max: limit.rlim_max,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
    let mut taken = Vec::new();
    let exhausted = loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => taken.push(f),
            Err(e) => break e,
        }
    };
    assert_eq!(exhausted.raw_os_error(), Some(libc::EMFILE), "{exhausted}");

    // Many reads at once, more than the store has readers.
    let reads = futures::future::join_all((0..16).map(|_| store.task("t"))).await;
    let listed = store.calls("t").await;
    drop(taken);
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    for read in reads {
        assert_eq!(
            read.expect("a read with no descriptor free").unwrap().id,
            "t"
        );
    }
    assert_eq!(listed.expect("a read with no descriptor free").len(), 1);
}
