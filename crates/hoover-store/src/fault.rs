//! Crash points: a seam for crash-consistency tests, as SQLite has.
//!
//! When the environment variable `HOOVER_CRASH_AT` is `NAME` or `NAME:N`, the process kills
//! itself with SIGKILL (no destructors, no flushes, as in the kill tests) the
//! first, or the Nth, time it reaches the point named `NAME`. Unset — always, outside tests —
//! a point costs one environment read per process and then a load and a compare.
//!
//! The points, in the order a push meets them (`docs/reliability.md` lists what each shows):
//! `ingest-chunk` (the server has read a chunk off the wire), `store-chunk-staged` (a chunk is
//! written to the batch's pack in `tmp/`), `store-pack-installed` (the pack is renamed into
//! `packs/`, no row names it yet), `store-pack-appended` (instead, for a small batch: its pack
//! is appended to the growing pack and made durable, no row names it yet),
//! `store-rows-written` (the version rows are written inside the open transaction),
//! `store-committed` (the transaction is committed, the client not yet told), `index-added`
//! (messages added to the index writer, not committed), `index-committed` (the index commit is
//! done); and on the off-site copy's way, `copy-piece-uploaded` (the object store confirmed a
//! piece of a pack, the replicator has not counted it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Aborts the process here if `HOOVER_CRASH_AT` names this point (see the module docs).
pub fn crash_point(name: &str) {
    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        let spec = std::env::var("HOOVER_CRASH_AT").ok()?;
        Some(match spec.split_once(':') {
            Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        })
    });
    let Some((point, nth)) = at else { return };
    if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        eprintln!("hoover: crash point {name} reached (HOOVER_CRASH_AT); killing this process");
        // SIGKILL, as the kill tests use (and never a core file); abort if `kill` is missing.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
}

/// Sleeps here if `HOOVER_SLOW_AT` is `NAME:MS` for this point: a seam for tests of what a
/// slow stage does to the rest (a backlog the indexer has not worked through, a stop that must
/// not wait for it). Unset, as always outside tests, it costs one environment read per process.
pub fn slow_point(name: &str) {
    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    let at = AT.get_or_init(|| {
        let spec = std::env::var("HOOVER_SLOW_AT").ok()?;
        let (point, ms) = spec.split_once(':')?;
        Some((point.to_string(), ms.parse().ok()?))
    });
    if let Some((point, ms)) = at {
        if point == name {
            eprintln!("hoover: slow point {name} reached (HOOVER_SLOW_AT); waiting {ms} ms");
            std::thread::sleep(std::time::Duration::from_millis(*ms));
        }
    }
}

/// Panics here the first time it is reached if `HOOVER_PANIC_AT` names this point: a seam for
/// tests of what a bug in one thread does to the rest (the server must answer, not abort).
pub fn panic_point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    static HIT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let at = AT.get_or_init(|| std::env::var("HOOVER_PANIC_AT").ok());
    if at.as_deref() == Some(name) && !HIT.swap(true, Ordering::SeqCst) {
        panic!("panic point {name} reached (HOOVER_PANIC_AT)");
    }
}
