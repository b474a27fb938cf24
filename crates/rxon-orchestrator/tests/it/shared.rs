//! A Redis storage for the tests: one `redis-server` per test thread (stopped when
//! the thread ends, with its test), a fresh key prefix per orchestrator.

use rxon_orchestrator::Storage;
use rxon_testing::redis::RedisServer;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static SERVER: RefCell<Option<RedisServer>> = const { RefCell::new(None) };
}

/// The URL of this thread's server, started on first use.
pub(crate) fn url() -> String {
    SERVER.with(|s| {
        let mut s = s.borrow_mut();
        s.get_or_insert_with(|| RedisServer::start().expect("a Redis server for the tests"))
            .url()
    })
}

/// A Redis storage no other orchestrator uses.
pub(crate) fn storage() -> Storage {
    static N: AtomicU64 = AtomicU64::new(0);
    Storage::redis(url())
        .and_then(|s| s.with_prefix(format!("t{}", N.fetch_add(1, Ordering::Relaxed))))
        .expect("a valid storage")
}

/// Kills this thread's server and starts it again from its append-only file.
pub(crate) fn restart_server() {
    SERVER.with(|s| {
        s.borrow_mut()
            .as_mut()
            .expect("a started server")
            .restart()
            .expect("the server restarts")
    });
}
