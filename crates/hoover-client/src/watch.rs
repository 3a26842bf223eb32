//! The agent behind `hoover watch`: ships every change within a second over one long-lived
//! connection, and keeps working through sleep, network loss and server restarts.
//!
//! Between events it waits: file events come from the notify crate (inotify, FSEvents); the only
//! timers are a slow safety rescan and a coarse tick that notices the machine slept. Changed
//! paths are collected in a dirty set and debounced, so a burst of appends becomes one version.
//! While the server is unreachable the dirty set keeps growing and the agent retries with capped
//! exponential backoff and jitter, logging one line when it goes offline and one when it is back;
//! the latest content of every file is then shipped (intermediate versions that existed only
//! while offline are coalesced). A deleted file is reported as a deletion event and nothing on
//! the server is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use hoover_types::Key;
use notify::{RecursiveMode, Watcher};
use rand::Rng;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::scan::{key_for, scan, Includes, Root};
use crate::state::{ClientState, Stat};
use crate::sync::{prepare_with_track, push_batch, Changed, SyncOptions, SyncReport};
use crate::track::Track;
use crate::{Connection, ServerAddr};

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub sync: SyncOptions,
    pub server: ServerAddr,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    /// Client state lives here, one database per server store.
    pub state_dir: PathBuf,
    /// Where the agent reports its state for `hoover status`.
    pub status_file: Option<PathBuf>,
    /// Quiet time after the last event before pushing.
    pub debounce: Duration,
    /// The longest an event waits while a burst goes on.
    pub max_delay: Duration,
    /// The safety-net full scan.
    pub rescan_every: Duration,
}

impl WatchOptions {
    pub fn new(
        sync: SyncOptions,
        server: ServerAddr,
        identity: PathBuf,
        known_hosts: PathBuf,
        state_dir: PathBuf,
    ) -> Self {
        WatchOptions {
            sync,
            server,
            identity,
            known_hosts,
            state_dir,
            status_file: None,
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            rescan_every: Duration::from_secs(300),
        }
    }
}

/// What `hoover status` shows; written by the agent as JSON.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct AgentStatus {
    pub pid: u32,
    pub server: String,
    pub connected: bool,
    pub files_known: u64,
    pub pending: u64,
    pub last_push: Option<String>,
    pub versions_shipped: u64,
    /// Chunks sent since the agent started (the server asked for each).
    #[serde(default)]
    pub chunks_sent: u64,
    pub wire_bytes_today: u64,
    pub day: String,
    pub last_error: Option<String>,
    pub updated: String,
}

/// A catch-up is prepared and pushed this many files, or bytes, at a time.
const GROUP_FILES: usize = 128;
const GROUP_BYTES: u64 = 8 * 1024 * 1024;
/// Tracks kept for the append path (about 2 KB each, most of it the BLAKE3 state).
const MAX_TRACKS: usize = 512;
/// Appends whose unread tail is at most this many bytes are prepared on the agent's thread.
const INLINE_APPEND_BYTES: u64 = 512 * 1024;
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A tick that only notices that the machine slept (the wall clock jumped past it).
const WAKE_TICK: Duration = Duration::from_secs(10);

struct Agent {
    opts: WatchOptions,
    includes: Includes,
    conn: Option<Connection>,
    state: Option<ClientState>,
    tracks: std::collections::HashMap<Key, Track>,
    /// Changed paths waiting to be pushed, by key.
    dirty: BTreeMap<Key, PathBuf>,
    full_scan: bool,
    status: AgentStatus,
    watched: Vec<PathBuf>,
    /// Directories created or moved in since the last push: watched and scanned before it.
    new_dirs: std::collections::BTreeSet<PathBuf>,
    /// When the status file was last written: at most once a second while busy.
    status_written: Option<Instant>,
    /// A write was skipped by that limit and is owed.
    status_stale: bool,
    /// The status last written (without its timestamp), to skip writing the same again.
    status_last: Option<Vec<u8>>,
    /// Roots found missing (and said so in the log) and not seen back since.
    missing_roots: std::collections::BTreeSet<String>,
}

/// Runs the agent until `shutdown`; the push in flight is finished first.
pub async fn run(opts: WatchOptions, shutdown: CancellationToken) -> Result<()> {
    let includes = Includes::new(&opts.sync.includes)?;
    let (tx, mut events) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    // Links are never followed: a link made inside a root to /etc or to a whole other tree
    // must not be watched, scanned or uploaded (as `sync` never follows them).
    let mut watcher = notify::RecommendedWatcher::new(
        move |event| {
            let _ = tx.send(event);
        },
        notify::Config::default().with_follow_symlinks(false),
    )
    .context("cannot start watching files")?;
    let mut agent = Agent {
        status: AgentStatus {
            pid: std::process::id(),
            server: opts.server.to_string(),
            ..Default::default()
        },
        opts,
        includes,
        conn: None,
        state: None,
        tracks: Default::default(),
        dirty: BTreeMap::new(),
        full_scan: true,
        watched: Vec::new(),
        new_dirs: Default::default(),
        status_written: None,
        status_stale: false,
        status_last: None,
        missing_roots: Default::default(),
    };
    agent.watch_roots(&mut watcher);
    let mut backoff = BACKOFF_START;
    let mut offline_since: Option<Instant> = None;
    let mut rescan = tokio::time::interval(agent.opts.rescan_every);
    rescan.tick().await;
    let mut wake = tokio::time::interval(WAKE_TICK);
    wake.tick().await;
    let mut last_wall = SystemTime::now();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        if agent.conn.is_none() {
            match agent.connect().await {
                Ok(()) => {
                    if let Some(since) = offline_since.take() {
                        tracing::warn!(server = %agent.opts.server, offline_for = ?since.elapsed(), "connected again; catching up");
                    } else {
                        tracing::info!(server = %agent.opts.server, "connected");
                    }
                    backoff = BACKOFF_START;
                    agent.full_scan = true;
                }
                Err(e) => {
                    if offline_since.is_none() {
                        offline_since = Some(Instant::now());
                        tracing::warn!(
                            server = %agent.opts.server,
                            "cannot reach the server ({e:#}); working offline and retrying with backoff up to {}s",
                            BACKOFF_MAX.as_secs()
                        );
                    }
                    agent.status.last_error = Some(format!("{e:#}"));
                    agent.write_status().await;
                    let jitter = rand::rng().random_range(0.5..1.5);
                    let wait = backoff.mul_f64(jitter);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    // Keep collecting events while offline, so nothing is lost.
                    let deadline = tokio::time::sleep(wait);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = &mut deadline => break,
                            Some(ev) = events.recv() => agent.on_event(ev),
                        }
                    }
                    continue;
                }
            }
        }
        if agent.full_scan {
            agent.watch_roots(&mut watcher);
            if let Err(e) = agent.scan_all().await {
                tracing::warn!("scan failed: {e:#}");
            }
        }
        agent.settle_new_dirs(&mut watcher);
        if !agent.dirty.is_empty() {
            if let Err(e) = agent.push_dirty().await {
                tracing::warn!(server = %agent.opts.server, "lost the connection: {e:#}");
                agent.status.last_error = Some(format!("{e:#}"));
                agent.disconnect().await;
                continue;
            }
        }
        agent.write_status().await;
        // Idle until something happens.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(ev) = events.recv() => {
                agent.on_event(ev);
                agent.debounce(&mut events, &shutdown).await;
            }
            _ = rescan.tick() => agent.full_scan = true,
            _ = tokio::time::sleep(Duration::from_secs(1)), if agent.status_stale => {
                agent.status_written = None;
                agent.write_status().await;
            }
            _ = wake.tick() => {
                let now = SystemTime::now();
                let gap = now.duration_since(last_wall).unwrap_or_default();
                last_wall = now;
                if gap > WAKE_TICK * 3 {
                    tracing::info!(gap = ?gap, "the machine was asleep; reconnecting and rescanning");
                    agent.disconnect().await;
                    agent.full_scan = true;
                }
            }
        }
    }
    // Flush what changed since the last push, so a clean stop loses nothing.
    if agent.conn.is_some() {
        let flush = async {
            if let Err(e) = agent.mark_found().await {
                tracing::warn!("could not look for the last changes before stopping: {e:#}");
            }
            if !agent.dirty.is_empty() {
                if let Err(e) = agent.push_dirty().await {
                    tracing::warn!("could not push the last changes before stopping: {e:#}");
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), flush).await;
    }
    agent.disconnect().await;
    agent.status.connected = false;
    agent.write_status().await;
    Ok(())
}

impl Agent {
    async fn connect(&mut self) -> Result<()> {
        let conn = crate::connect(
            &self.opts.server,
            &self.opts.identity,
            &self.opts.known_hosts,
        )
        .await?;
        let path = self
            .opts
            .state_dir
            .join(format!("{}.db", conn.remote.store_id));
        self.state = Some(ClientState::open(&path).await?);
        self.conn = Some(conn);
        self.status.connected = true;
        self.status.last_error = None;
        self.status_written = None;
        Ok(())
    }

    async fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        self.status.connected = false;
        self.status_written = None;
    }

    /// Watches every root that exists and is not watched yet (a root may appear later).
    fn watch_roots(&mut self, watcher: &mut notify::RecommendedWatcher) {
        for root in &self.opts.sync.roots {
            if self.watched.contains(&root.dir) || !root.dir.is_dir() {
                continue;
            }
            match watcher.watch(&root.dir, RecursiveMode::Recursive) {
                Ok(()) => self.watched.push(root.dir.clone()),
                Err(e) => tracing::warn!(root = %root.dir.display(), "cannot watch: {e}"),
            }
        }
    }

    fn key_of(&self, path: &Path) -> Option<Key> {
        let root: &Root = self
            .opts
            .sync
            .roots
            .iter()
            .filter(|r| path.starts_with(&r.dir))
            .max_by_key(|r| r.dir.as_os_str().len())?;
        let rel = path.strip_prefix(&root.dir).ok()?;
        if !self.includes.matches(rel) {
            return None;
        }
        key_for(&self.opts.sync.source, root, rel).ok()
    }

    fn on_event(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                // Overflow and other watcher errors: nothing is trusted, everything is rescanned.
                tracing::info!("watcher error ({e}); rescanning");
                self.full_scan = true;
                return;
            }
        };
        use notify::EventKind;
        if event.need_rescan() {
            self.full_scan = true;
        }
        // Reads (our own scans among them) are not changes: acting on them would loop.
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        tracing::trace!(?event, "file event");
        for path in event.paths {
            let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if is_dir {
                // A new or moved-in directory: its files may predate the watch on it.
                self.new_dirs.insert(path);
            } else if let Some(key) = self.key_of(&path) {
                self.dirty.insert(key, path);
            } else if !path.exists() && self.watched.iter().any(|w| path.starts_with(w)) {
                // A removed or moved-away directory: rescan to see what went with it.
                if path.extension().is_none() {
                    self.full_scan = true;
                }
            }
        }
    }

    /// Waits until events stop for `debounce`, or `max_delay` after the first.
    async fn debounce(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
        shutdown: &CancellationToken,
    ) {
        let hard = tokio::time::Instant::now() + self.opts.max_delay;
        loop {
            let quiet = tokio::time::Instant::now() + self.opts.debounce;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(quiet.min(hard)) => return,
                Some(ev) = events.recv() => self.on_event(ev),
            }
        }
    }

    /// Scans the directories that appeared since the last push, once each is surely watched.
    ///
    /// inotify watches directory by directory: notify reports a new directory first and adds
    /// the watches on it and its subdirectories after, so a file written in between gives no
    /// event, and a scan made on the report can run before it is written. Watching the
    /// directory here (a synchronous round trip to notify's thread, which merges with its own
    /// watch) and scanning after closes that gap: a file is either there for the scan or
    /// written under a watch. FSEvents watches the whole tree at once and needs none of this.
    fn settle_new_dirs(&mut self, watcher: &mut notify::RecommendedWatcher) {
        for dir in std::mem::take(&mut self.new_dirs) {
            if !under_root_without_links(&self.opts.sync.roots, &dir) {
                continue;
            }
            #[cfg(not(target_os = "macos"))]
            if let Err(e) = watcher.watch(&dir, RecursiveMode::Recursive) {
                // Gone again, or out of watches: the scan still finds what it holds now.
                tracing::debug!(dir = %dir.display(), "cannot watch a new directory: {e}");
            }
            #[cfg(target_os = "macos")]
            let _ = &watcher;
            self.scan_dir(&dir);
        }
    }

    fn scan_dir(&mut self, dir: &Path) {
        let walk = walkdir::WalkDir::new(dir)
            .follow_links(false)
            .follow_root_links(false);
        for entry in walk.into_iter().flatten() {
            if entry.file_type().is_file() {
                if let Some(key) = self.key_of(entry.path()) {
                    self.dirty.insert(key, entry.path().to_path_buf());
                }
            }
        }
    }

    /// Marks every file as possibly changed, and every recorded file that is gone as deleted,
    /// except under a root that is not there at all (as `sync` does).
    async fn scan_all(&mut self) -> Result<()> {
        self.full_scan = false;
        let present = self.mark_found().await?;
        let prefixes: Vec<String> = self
            .opts
            .sync
            .roots
            .iter()
            .filter(|r| root_is_there(&mut self.missing_roots, r))
            .map(|r| format!("{}/{}/", self.opts.sync.source, r.name))
            .collect();
        if let Some(state) = &self.state {
            for key in state.keys().await? {
                if !prefixes.iter().any(|p| key.starts_with(p)) {
                    continue;
                }
                let Ok(key) = Key::new(key) else { continue };
                if !present.contains(&key) {
                    // The path no longer exists: push_dirty records the deletion.
                    let path = self.path_of(&key);
                    self.dirty.insert(key, path);
                }
            }
        }
        Ok(())
    }

    /// Marks every file the roots hold as possibly changed (a stat decides); returns their keys.
    /// Before stopping this alone catches what still-queued events would have said. The walk
    /// runs off the runtime's one thread (a large tree takes a while), which keeps answering
    /// the connection meanwhile.
    async fn mark_found(&mut self) -> Result<std::collections::HashSet<Key>> {
        let (source, roots, includes) = (
            self.opts.sync.source.clone(),
            self.opts.sync.roots.clone(),
            self.includes.clone(),
        );
        let (found, warnings) =
            tokio::task::spawn_blocking(move || scan(&source, &roots, &includes)).await?;
        for w in warnings {
            tracing::debug!("{w}");
        }
        let mut present = std::collections::HashSet::new();
        for f in found {
            present.insert(f.key.clone());
            self.dirty.insert(f.key, f.path);
        }
        Ok(present)
    }

    fn path_of(&self, key: &Key) -> PathBuf {
        let mut parts = key.as_str().splitn(3, '/');
        let (_, root, rel) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        self.opts
            .sync
            .roots
            .iter()
            .find(|r| r.name == root)
            .map(|r| r.dir.join(rel))
            .unwrap_or_default()
    }

    /// Pushes every dirty file. On a connection error the unpushed files stay dirty.
    async fn push_dirty(&mut self) -> Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        let result = self.push_items(&dirty).await;
        if result.is_err() {
            for (k, p) in dirty {
                self.dirty.entry(k).or_insert(p);
            }
        }
        result
    }

    async fn push_items(&mut self, items: &BTreeMap<Key, PathBuf>) -> Result<()> {
        let (Some(conn), Some(state)) = (self.conn.as_mut(), self.state.as_ref()) else {
            anyhow::bail!("not connected");
        };
        let mut changed = Vec::new();
        for (key, path) in items {
            let prior = state.get(key.as_str()).await?;
            if !under_root_without_links(&self.opts.sync.roots, path) {
                tracing::debug!(path = %path.display(), "a symbolic link on the way; not followed");
                continue;
            }
            match std::fs::symlink_metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // A file under a root that is gone as a whole is left alone.
                    let root_name = key.as_str().split('/').nth(1);
                    let root = self
                        .opts
                        .sync
                        .roots
                        .iter()
                        .find(|r| Some(r.name.as_str()) == root_name);
                    let root_there = root.is_none_or(|r| root_is_there(&mut self.missing_roots, r));
                    if prior.is_some() && root_there {
                        let at = SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map(|d| d.as_nanos() as i64)
                            .unwrap_or(0);
                        conn.remote.deleted(key, at).await?;
                        state.forget(key.as_str()).await?;
                        self.tracks.remove(key);
                        tracing::info!(%key, "deleted on this machine; the server keeps every version");
                    }
                }
                Err(e) => tracing::warn!(path = %path.display(), "cannot stat: {e}"),
                Ok(meta) if meta.is_file() => {
                    let stat = Stat::of(&meta);
                    if prior.as_ref().map(|p| p.stat) == Some(stat) {
                        continue;
                    }
                    let old_chunks = match &prior {
                        // With a usable track the old chunk list is not needed.
                        Some(p) if self.tracks.get(key).and_then(|t| t.seq) == Some(p.seq) => {
                            Vec::new()
                        }
                        Some(_) => state.chunks(key.as_str()).await?,
                        None => Vec::new(),
                    };
                    changed.push(Changed {
                        key: key.clone(),
                        path: path.clone(),
                        prior,
                        old_chunks,
                        size: stat.size,
                    });
                }
                Ok(_) => {}
            }
        }
        // A big catch-up (first start, a long time offline) goes in groups, so memory stays
        // bounded by one group's new bytes.
        let mut groups = Vec::new();
        let mut group = Vec::new();
        let mut bytes = 0u64;
        for c in changed {
            bytes += c.size;
            group.push(c);
            if group.len() >= GROUP_FILES || bytes >= GROUP_BYTES {
                groups.push(std::mem::take(&mut group));
                bytes = 0;
            }
        }
        groups.push(group);
        for group in groups {
            self.push_group(group).await?;
        }
        Ok(())
    }

    async fn push_group(&mut self, changed: Vec<Changed>) -> Result<()> {
        if changed.is_empty() {
            return Ok(());
        }
        let (Some(conn), Some(state)) = (self.conn.as_mut(), self.state.as_ref()) else {
            anyhow::bail!("not connected");
        };
        let tracks = Arc::new(
            changed
                .iter()
                .map(|c| self.tracks.get(&c.key).cloned())
                .collect::<Vec<_>>(),
        );
        // A small append (the common case) is read and hashed right here: it is well under a
        // millisecond, and handing it to another thread cost more than the work. Anything
        // bigger goes to the blocking pool.
        let small = changed.iter().zip(tracks.iter()).all(|(c, t)| {
            t.as_ref().is_some_and(|t| {
                c.prior.as_ref().map(|p| p.seq) == t.seq
                    && c.size >= t.size
                    && c.size - t.stable_end <= INLINE_APPEND_BYTES
            })
        });
        let prepare_all = move || {
            changed
                .into_iter()
                .zip(tracks.iter())
                .map(|(c, t)| {
                    (
                        c.path.clone(),
                        c.key.clone(),
                        c.prior.clone(),
                        prepare_with_track(&c, t.as_ref()),
                    )
                })
                .collect::<Vec<_>>()
        };
        let prepared = if small {
            prepare_all()
        } else {
            tokio::task::spawn_blocking(prepare_all).await?
        };
        let mut batch = Vec::new();
        for (path, key, prior, result) in prepared {
            match result {
                Ok(Some(p)) => {
                    if let Some(prior) = &prior {
                        if prior.blake3 == p.blake3 && prior.stat.size == p.size {
                            state.touch(key.as_str(), p.stat).await?;
                            continue;
                        }
                    }
                    batch.push(p)
                }
                Ok(None) => {
                    // Vanished between the stat and the read: the next event or scan decides.
                    self.dirty.insert(key, path);
                }
                Err(e) => {
                    tracing::debug!(path = %path.display(), "not pushed yet: {e:#}");
                    self.dirty.insert(key, path);
                }
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut report = SyncReport::default();
        let sent0 = conn.remote.bytes_sent() + conn.remote.bytes_received();
        let tracks = push_batch(&mut conn.remote, state, batch, &mut report).await?;
        let wire = conn.remote.bytes_sent() + conn.remote.bytes_received() - sent0;
        for w in &report.warnings {
            tracing::warn!("{w}");
        }
        tracing::debug!(
            versions = report.versions_new,
            chunks = report.chunks_sent,
            wire,
            "pushed"
        );
        for (key, track) in tracks {
            self.tracks.insert(key, track);
            // Only the files written to lately (the live sessions) need the append path; an
            // older one pays a single full read if it ever grows again.
            if self.tracks.len() > MAX_TRACKS {
                let oldest = self
                    .tracks
                    .iter()
                    .min_by_key(|(_, t)| t.mtime_ns)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.tracks.remove(&oldest);
                }
            }
        }
        let today = today();
        if self.status.day != today {
            self.status.day = today;
            self.status.wire_bytes_today = 0;
        }
        self.status.wire_bytes_today += wire;
        self.status.versions_shipped += report.versions_new;
        self.status.chunks_sent += report.chunks_sent;
        self.status.last_push = Some(now_rfc3339());
        Ok(())
    }

    async fn write_status(&mut self) {
        let Some(path) = self.opts.status_file.clone() else {
            return;
        };
        self.status.pending = self.dirty.len() as u64;
        if let Some(state) = &self.state {
            if let Ok(n) = state.count().await {
                self.status.files_known = n;
            }
        }
        // Nothing to say when nothing changed: an idle agent writes nothing.
        self.status.updated.clear();
        let Ok(unchanged) = serde_json::to_vec(&self.status) else {
            return;
        };
        if self.status_last.as_deref() == Some(&unchanged[..]) {
            self.status_stale = false;
            return;
        }
        if self
            .status_written
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.status_stale = true;
            return;
        }
        self.status_written = Some(Instant::now());
        self.status_stale = false;
        self.status_last = Some(unchanged);
        self.status.updated = now_rfc3339();
        let Ok(json) = serde_json::to_vec_pretty(&self.status) else {
            return;
        };
        let tmp = path.with_extension("json.tmp");
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

fn today() -> String {
    jiff::Timestamp::now().to_string()[..10].to_string()
}

/// Whether `root` is a directory, keeping `missing` (the roots found missing and not seen back
/// since). One that is not (an unmounted disk, a moved folder) is no evidence that its files
/// were deleted: they are left as they are on the server until it returns, and the log says so
/// once.
fn root_is_there(missing: &mut std::collections::BTreeSet<String>, root: &Root) -> bool {
    if root.dir.is_dir() {
        if missing.remove(&root.name) {
            tracing::info!(root = %root.dir.display(), "the root is back");
        }
        return true;
    }
    if missing.insert(root.name.clone()) {
        tracing::warn!(
            root = %root.dir.display(),
            "the root is not there (an unmounted disk, a moved folder?); its files are not recorded as deleted, and are watched again when it returns"
        );
    }
    false
}

/// Whether `path` is reached from its root through real directories only.
fn under_root_without_links(roots: &[Root], path: &Path) -> bool {
    roots
        .iter()
        .filter(|r| path.starts_with(&r.dir))
        .max_by_key(|r| r.dir.as_os_str().len())
        .is_some_and(|r| crate::scan::no_links_below(&r.dir, path))
}
