//! Feeding the index from the store: the indexer thread, and catching up after a restart.
//!
//! The store is the source of truth. The indexer thread learns of committed versions from the
//! store's commit bus and indexes each file's versions in order, reading only what a version appended
//! when it extends the indexed one. At start, and whenever it may have missed something, it
//! compares each file's indexed progress with the store and indexes what is missing, oldest
//! commit first, so a message copied into a later file points at its first occurrence.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hoover_index::{
    Index, IndexOptions, Indexed, Opened, VersionMeta, Writer, BULK_COMMIT_INTERVAL,
};
use hoover_store::{Committed, Store, StoreError};
use hoover_types::{Key, VersionInfo};

/// Where a store keeps its index: a derived view, safe to delete.
pub fn index_dir(store: &Path) -> PathBuf {
    store.join("index")
}

enum Event {
    Committed(Vec<(Key, u64)>),
    Stop,
}

/// What the indexer is doing, for logs and the status API.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IndexStatus {
    /// True until the first catch-up with the store has finished.
    pub catching_up: bool,
    pub versions_indexed: u64,
    pub bytes_indexed: u64,
    /// The last error, if indexing is failing.
    pub error: Option<String>,
}

/// The indexer thread's handle.
#[derive(Clone)]
pub struct Indexer {
    tx: mpsc::Sender<Event>,
    index: Arc<OnceLock<Index>>,
    status: Arc<Mutex<IndexStatus>>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// Set by [`Indexer::stop`]: the thread stops after the version at hand, however many
    /// are queued (the index is derived; the next start catches up from the store).
    stopping: Arc<AtomicBool>,
}

impl Indexer {
    /// Opens (or rebuilds) the index in `dir`, then starts the indexer thread, which catches
    /// up with the store and then indexes versions as they are committed. Blocks while the
    /// index opens (reading its counters); call it off the async runtime. When the index cannot
    /// be opened the server still runs: searches say why they are unavailable.
    ///
    /// `writer` is the store the server commits to: the indexer subscribes to its commits,
    /// and reads through `store`, opened to read.
    pub fn start(writer: &Store, store: Store, dir: PathBuf, options: IndexOptions) -> Indexer {
        let (tx, rx) = mpsc::channel();
        // Versions received from now on reach the indexer as commit events (it subscribes
        // before the server accepts anyone): the catch-up leaves them to those.
        let running_since = jiff::Timestamp::now().as_nanosecond() as i64;
        let index = Arc::new(OnceLock::new());
        let status = Arc::new(Mutex::new(IndexStatus {
            catching_up: true,
            ..IndexStatus::default()
        }));
        // The index opens on its own thread, so that the writer's threads, which tantivy starts
        // there, inherit its lower priority.
        let (opened_tx, opened_rx) = mpsc::sync_channel(1);
        let thread_status = status.clone();
        let stopping = Arc::new(AtomicBool::new(false));
        let thread_stopping = stopping.clone();
        let open_dir = dir.clone();
        let thread = std::thread::Builder::new()
            .name("indexer".into())
            .spawn(move || {
                lower_priority(INDEX_NICE);
                match Index::open(&open_dir, options) {
                    Ok((opened_index, writer, opened)) => {
                        let _ = opened_tx.send(Ok((opened_index, opened)));
                        run(
                            store,
                            writer,
                            rx,
                            thread_status,
                            &thread_stopping,
                            running_since,
                        );
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e.to_string()));
                    }
                }
            })
            .expect("spawn the indexer thread");
        match opened_rx.recv() {
            Ok(Ok((opened_index, opened))) => {
                match &opened {
                    Opened::Existing => tracing::debug!("index opened at {}", dir.display()),
                    Opened::Created => {
                        tracing::info!("building the search index at {}", dir.display())
                    }
                    Opened::Rebuilt { reason } => tracing::warn!(
                        "rebuilding the search index at {} from the store: {reason}",
                        dir.display()
                    ),
                }
                let _ = index.set(opened_index);
            }
            Ok(Err(e)) => {
                let e = format!(
                    "search is unavailable: cannot open the index at {}: {e}",
                    dir.display()
                );
                tracing::error!("{e}");
                status.lock().expect("status lock").error = Some(e);
            }
            Err(_) => {
                status.lock().expect("status lock").error =
                    Some("search is unavailable: the indexer thread stopped while opening".into());
            }
        }
        let thread = Some(thread);
        let bus = tx.clone();
        on_new_chats(writer, move |new| bus.send(Event::Committed(new)).is_ok());
        Indexer {
            tx,
            index,
            status,
            thread: Arc::new(Mutex::new(thread)),
            stopping,
        }
    }

    /// The index, once it is open.
    pub fn index(&self) -> Option<&Index> {
        self.index.get()
    }

    /// The index to search, or why searches cannot be answered.
    pub fn searchable(indexer: Option<&Indexer>) -> Result<Index, String> {
        let Some(i) = indexer else {
            return Err("this server keeps no search index (it runs with --no-index)".into());
        };
        i.index().cloned().ok_or_else(|| {
            i.status()
                .error
                .unwrap_or_else(|| "the search index is not open".into())
        })
    }

    pub fn status(&self) -> IndexStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// Commits what is done and stops the thread, within one version's work: versions still
    /// queued are left to the next start's catch-up.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Event::Stop);
        if let Some(t) = self.thread.lock().expect("thread lock").take() {
            let _ = t.join();
        }
    }
}

/// Tells the indexer about newly committed versions; false once it has stopped listening.
/// Tells `tell` each commit's new versions of chats, as `(key, seq)`, in commit order; the
/// indexer and the live feed derive their views from these. Doctor probes are not chats: not
/// indexed, not on the live page. `tell` answers `false` once its listener is gone.
pub(crate) fn on_new_chats(
    writer: &hoover_store::Store,
    tell: impl Fn(Vec<(Key, u64)>) -> bool + Send + Sync + 'static,
) {
    writer.on_commit(move |committed: &[Committed]| {
        let new: Vec<(Key, u64)> = committed
            .iter()
            .filter(|c| !c.key.is_probe())
            .map(|c| (c.key.clone(), c.seq))
            .collect();
        new.is_empty() || tell(new)
    });
}

/// The nice value of the indexer's threads. The index is derived and can wait; a sync on a
/// busy machine should not. When the machine is idle the priority makes no difference.
const INDEX_NICE: i32 = 19;

/// Lowers this thread's CPU priority to `nice`, and so that of the threads it starts (Linux
/// keeps a nice value per thread, inherited by new threads). Elsewhere it does nothing.
pub(crate) fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::debug!("cannot lower a thread's priority: {e}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

fn run(
    store: Store,
    mut writer: Writer,
    rx: mpsc::Receiver<Event>,
    status: Arc<Mutex<IndexStatus>>,
    stopping: &AtomicBool,
    running_since: i64,
) {
    let stop_asked = || stopping.load(Ordering::SeqCst);
    let set_error = |e: String| {
        tracing::error!("{e}");
        status.lock().expect("status lock").error = Some(e);
    };
    let started = Instant::now();
    let record = |done: &Indexed| {
        let mut s = status.lock().expect("status lock");
        s.versions_indexed += 1;
        s.bytes_indexed += done.bytes;
    };
    let go_on = |_, _| match stop_asked() {
        true => ControlFlow::Break(()),
        false => ControlFlow::Continue(()),
    };
    match catch_up(&store, &mut writer, go_on, &record, Some(running_since)) {
        Ok(n) if n > 0 => tracing::info!(
            "search index caught up: {n} versions in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Ok(_) => {}
        Err(e) => set_error(format!("indexing stopped while catching up: {e}")),
    }
    if let Err(e) = writer.commit() {
        set_error(format!("cannot commit the index: {e}"));
    }
    status.lock().expect("status lock").catching_up = false;
    loop {
        let event = match writer.commit_due() {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        match event {
            Ok(Event::Committed(versions)) => {
                for (key, seq) in versions {
                    if stop_asked() {
                        break;
                    }
                    if let Err(e) = index_up_to(&store, &mut writer, &key, seq, &record) {
                        set_error(format!("cannot index {key} version {seq}: {e}"));
                    }
                    hoover_store::fault::crash_point("index-added");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Event::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if stop_asked() {
            break;
        }
        if writer.commit_due().is_some_and(|d| d <= Instant::now()) {
            if let Err(e) = writer.commit() {
                set_error(format!("cannot commit the index: {e}"));
                std::thread::sleep(Duration::from_secs(1));
            }
            hoover_store::fault::crash_point("index-committed");
        }
    }
    if let Err(e) = writer.commit() {
        tracing::error!("cannot commit the index at shutdown: {e}");
    }
}

/// Indexes every stored version the index lacks, oldest commit first. Returns how many.
/// `progress` is told (versions done, versions to do) as it goes, and stops the work early
/// when it answers `Break` (what is done is kept; the rest waits for the next catch-up).
///
/// With `before_ns`, versions the store received at or after that time are left out: they
/// arrived while the server runs, and its commit events index them.
pub fn catch_up(
    store: &Store,
    writer: &mut Writer,
    mut progress: impl FnMut(u64, u64) -> ControlFlow<()>,
    record: &dyn Fn(&Indexed),
    before_ns: Option<i64>,
) -> Result<u64, StoreError> {
    let mut todo: Vec<(i64, usize, u64)> = Vec::new();
    let mut keys: Vec<Key> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list("", after.as_deref(), 1000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.to_string());
        for file in page {
            let done = writer
                .progress(file.key.as_str())
                .map(|p| p.seq)
                .unwrap_or(0);
            if done >= file.latest.seq {
                continue;
            }
            let versions = store.versions(&file.key)?;
            let k = keys.len();
            let history = |v: &hoover_types::VersionInfo| {
                v.seq > done && before_ns.is_none_or(|t| v.received_at_ns < t)
            };
            for v in versions.into_iter().filter(history) {
                todo.push((v.received_at_ns, k, v.seq));
            }
            keys.push(file.key);
        }
    }
    todo.sort_unstable();
    let total = todo.len() as u64;
    let mut last_commit = Instant::now();
    for (n, (_, k, seq)) in todo.into_iter().enumerate() {
        let key = &keys[k];
        if let Err(e) = index_up_to(store, writer, key, seq, record) {
            tracing::warn!("cannot index {key} version {seq}: {e}; skipped");
        }
        if progress(n as u64 + 1, total).is_break() {
            tracing::info!(
                "stopped indexing with {} of {total} versions still to index; the next start catches up",
                total - (n as u64 + 1)
            );
            return Ok(n as u64 + 1);
        }
        if last_commit.elapsed() >= BULK_COMMIT_INTERVAL {
            writer
                .commit()
                .map_err(|e| StoreError::Corrupt(format!("index commit: {e}")))?;
            last_commit = Instant::now();
        }
    }
    Ok(total)
}

/// Indexes the versions of `key` after its indexed progress, up to `seq`.
fn index_up_to(
    store: &Store,
    writer: &mut Writer,
    key: &Key,
    seq: u64,
    record: &dyn Fn(&Indexed),
) -> Result<(), Box<dyn std::error::Error>> {
    let first = writer
        .progress(key.as_str())
        .map(|p| p.seq + 1)
        .unwrap_or(1);
    for s in first..=seq {
        hoover_store::fault::slow_point("index-version");
        let Some(info) = store.version(key, s)? else {
            continue;
        };
        let done = index_version(store, writer, key, &info)?;
        record(&done);
    }
    Ok(())
}

/// Indexes one version: only its new bytes when it extends the indexed version.
fn index_version(
    store: &Store,
    writer: &mut Writer,
    key: &Key,
    info: &VersionInfo,
) -> Result<Indexed, Box<dyn std::error::Error>> {
    let resume = match writer.progress(key.as_str()) {
        Some(p) if p.seq + 1 == info.seq && info.size >= p.size => {
            store.extends_previous(key, info.seq, p.done)?
        }
        _ => false,
    };
    let from = if resume {
        writer.progress(key.as_str()).map(|p| p.done).unwrap_or(0)
    } else {
        0
    };
    let meta = VersionMeta {
        key: key.as_str(),
        seq: info.seq,
        size: info.size,
        mtime_ms: info.mtime_ns / 1_000_000,
    };
    let pieces = store.read_range(key, info.seq, from, None)?;
    Ok(writer.add_version(&meta, resume, pieces)?)
}
