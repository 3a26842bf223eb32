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
//! `packs/`, no row names it yet), `store-rows-written` (the version rows are written inside
//! the open transaction), `store-committed` (the transaction is committed, the client not yet
//! told), `index-added` (messages added to the index writer, not committed),
//! `index-committed` (the index commit is done).

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
