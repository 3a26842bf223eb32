//! An off-site copy of a store in an S3-compatible object store, kept up to date while the
//! server runs ([`Replicator`]), and a store built again from it on a new machine ([`recover`]).
//!
//! The copy, under its prefix:
//! - `HOOVER-COPY`: `hoover-copy 1` and the store's id, so that two stores never mix in one
//!   prefix and a recovery knows it found a copy;
//! - `packs/NAME/OFFSET` (OFFSET in 16 hex digits): the pack's committed bytes from OFFSET on.
//!   Committed bytes never change, so each is uploaded once, in as many objects as the pack
//!   grew in between uploads (a pack written whole is one object), and once more when the
//!   pack is sealed, as one object that replaces its pieces;
//! - `log/TIME.db.zst` (TIME in nanoseconds, 20 digits): a consistent snapshot of the version
//!   log (SQLite's `VACUUM INTO`), zstd-compressed, uploaded only after every pack byte it
//!   names, so the newest snapshot always describes bytes the copy holds. The newest
//!   [`KEEP_SNAPSHOTS`] are kept.
//!
//! The packs are reached through the store's seam for where packs live: [`ObjectPacks`] is a
//! [`PackStore`] as the store's own directory is.
//!
//! Nothing is kept on the server about the copy: at start the replicator lists what the copy
//! holds, so a restart (or a crash mid-upload: an object store's put is all or nothing)
//! re-uploads nothing already there.

use std::collections::HashMap;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::TryStreamExt;
use hoover_store::{PackExtent, PackStore, Rebuild, Store, StoreError};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Snapshots of the version log kept in the copy (the newest).
pub const KEEP_SNAPSHOTS: usize = 3;
/// The most bytes of a pack in one object.
const SEGMENT_MAX: u64 = 64 << 20;
/// The parts a big object (a log snapshot) is uploaded in.
pub const PART_BYTES: usize = 8 << 20;
/// Pack bytes waiting for the copy that start an upload before the snapshot is due (a first
/// sync, a big batch): the copy keeps up with them instead of taking them all at once.
const EAGER_BYTES: u64 = 8 << 20;
const MARKER: &str = "HOOVER-COPY";
const MARKER_MAGIC: &str = "hoover-copy 1";

/// Where a copy lives: an object store and a prefix in it.
#[derive(Clone)]
pub struct Target {
    objects: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Target {
    /// The copy at `url` (`s3://BUCKET/PREFIX`), through `endpoint` (or `AWS_ENDPOINT_URL`,
    /// else AWS itself), with the credentials and region of the standard `AWS_*` variables. A
    /// plain `http://` endpoint is refused unless `AWS_ALLOW_HTTP=true`.
    pub fn s3(url: &str, endpoint: Option<&str>) -> Result<Target, String> {
        Target::s3_with(url, endpoint, &[])
    }

    /// As [`Target::s3`], with `settings` (`AWS_*` names and values) taking the place of the
    /// environment's.
    pub fn s3_with(
        url: &str,
        endpoint: Option<&str>,
        settings: &[(&str, &str)],
    ) -> Result<Target, String> {
        let var = |name: &str| {
            settings
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .or_else(|| std::env::var(name).ok())
        };
        // One TLS provider for the process (ring, as request signing uses); already set is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            format!("{url:?} is not an S3 address: give s3://BUCKET or s3://BUCKET/PREFIX")
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?} names no bucket: give s3://BUCKET/PREFIX"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(format!("{url:?}: a prefix may not hold . or .. parts"));
        }
        let endpoint = endpoint
            .map(str::to_string)
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .filter(|e| !e.is_empty());
        let allow_http = var("AWS_ALLOW_HTTP").is_some_and(|v| v == "true");
        let mut builder = AmazonS3Builder::from_env();
        for (name, value) in settings {
            let key = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>();
            if let Ok(key) = key {
                builder = builder.with_config(key, *value);
            }
        }
        let mut builder = builder
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(300)),
            );
        if var("AWS_REGION").is_none() && var("AWS_DEFAULT_REGION").is_none() {
            builder = builder.with_region("us-east-1");
        }
        if let Some(endpoint) = &endpoint {
            if endpoint.starts_with("http://") && !allow_http {
                return Err(format!(
                    "the endpoint {endpoint} is plain http: set AWS_ALLOW_HTTP=true to allow it (only for a test server on loopback), or use https"
                ));
            }
            builder = builder.with_endpoint(endpoint).with_allow_http(allow_http);
        }
        let objects = builder
            .build()
            .map_err(|e| format!("cannot use {url}: {e}"))?;
        Ok(Target {
            objects: Arc::new(objects),
            prefix: prefix.to_string(),
            url: url.to_string(),
        })
    }

    /// The address the copy was given by.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, rel: &str) -> ObjPath {
        match self.prefix.is_empty() {
            true => ObjPath::from(rel),
            false => ObjPath::from(format!("{}/{rel}", self.prefix)),
        }
    }

    /// The part of `path` after the prefix and `dir/`.
    fn under<'p>(&self, path: &'p str, dir: &str) -> Option<&'p str> {
        let rest = match self.prefix.is_empty() {
            true => path,
            false => path.strip_prefix(&self.prefix)?.strip_prefix('/')?,
        };
        rest.strip_prefix(dir)?.strip_prefix('/')
    }

    /// Uploads the file at `file` as the object `rel` (under the prefix), in parts when it is
    /// big: at most a few parts of [`PART_BYTES`] are held in memory, whatever its size. A
    /// failed upload is aborted, so no half-written object or dangling parts are left.
    pub async fn put_file(&self, rel: &str, file: &Path) -> Result<(), String> {
        use std::io::Read;
        use tokio::io::AsyncWriteExt;
        let shown = file.display().to_string();
        let mut reader = std::fs::File::open(file).map_err(|e| format!("{shown}: {e}"))?;
        let mut writer = object_store::buffered::BufWriter::with_capacity(
            self.objects.clone(),
            self.path(rel),
            PART_BYTES,
        )
        .with_max_concurrency(2);
        let sent: Result<(), String> = async {
            loop {
                let (back, piece) = tokio::task::spawn_blocking(move || {
                    let mut piece = Vec::with_capacity(PART_BYTES);
                    let read = (&mut reader)
                        .take(PART_BYTES as u64)
                        .read_to_end(&mut piece);
                    read.map(|_| (reader, piece))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{shown}: {e}"))?;
                reader = back;
                if piece.is_empty() {
                    break;
                }
                writer
                    .write_all(&piece)
                    .await
                    .map_err(|e| format!("{}: {e}", self.url))?;
            }
            writer
                .shutdown()
                .await
                .map_err(|e| format!("{}: {e}", self.url))
        }
        .await;
        if sent.is_err() {
            let _ = writer.abort().await;
        }
        sent
    }

    /// The store id the copy's marker names, if it has one.
    async fn marker(&self) -> Result<Option<String>, String> {
        match self.objects.get(&self.path(MARKER)).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| self.says(e))?;
                let text = String::from_utf8_lossy(&bytes);
                let mut lines = text.lines();
                if lines.next() != Some(MARKER_MAGIC) {
                    return Err(format!(
                        "{} holds a {MARKER} this hoover does not understand; give another prefix",
                        self.url
                    ));
                }
                Ok(lines
                    .find_map(|l| l.strip_prefix("store "))
                    .map(str::to_string))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.says(e)),
        }
    }

    /// Makes the copy this store's: writes its marker, or checks the one there.
    async fn claim(&self, store_id: &str) -> Result<(), String> {
        match self.marker().await? {
            Some(id) if id == store_id => Ok(()),
            Some(id) => Err(format!(
                "{} holds the copy of another store (store {id}; this one is {store_id}); give --replicate-to another prefix",
                self.url
            )),
            None => {
                let text = format!("{MARKER_MAGIC}\nstore {store_id}\n");
                self.objects
                    .put(&self.path(MARKER), PutPayload::from(text.into_bytes()))
                    .await
                    .map_err(|e| self.says(e))?;
                Ok(())
            }
        }
    }

    /// Every object under `dir/`: its path after `dir/`, and its size.
    async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, String> {
        let prefix = self.path(dir);
        let metas: Vec<object_store::ObjectMeta> = self
            .objects
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.says(e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let rel = self.under(m.location.as_ref(), dir)?.to_string();
                Some((rel, m.size))
            })
            .collect())
    }

    /// Each pack's segments in the copy: (offset, size), by offset.
    async fn segments(&self) -> Result<Pieces, String> {
        let mut packs: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for (rel, size) in self.list("packs").await? {
            let Some((name, offset)) = rel.split_once('/') else {
                continue;
            };
            let Ok(offset) = u64::from_str_radix(offset, 16) else {
                continue;
            };
            if hoover_store::is_pack_name(name) {
                packs
                    .entry(name.to_string())
                    .or_default()
                    .push((offset, size));
            }
        }
        for segs in packs.values_mut() {
            segs.sort_unstable();
        }
        Ok(packs)
    }

    /// The log snapshots in the copy, oldest first: (name, time taken).
    async fn snapshots(&self) -> Result<Vec<(String, i64)>, String> {
        let mut found: Vec<(String, i64)> = self
            .list("log")
            .await?
            .into_iter()
            .filter_map(|(rel, _)| {
                let ns = rel.strip_suffix(".db.zst")?.parse().ok()?;
                Some((rel, ns))
            })
            .collect();
        found.sort_by_key(|(_, ns)| *ns);
        Ok(found)
    }

    fn says(&self, e: object_store::Error) -> String {
        let bucket = self.url["s3://".len()..].split('/').next().unwrap_or("");
        match e {
            object_store::Error::NotFound { .. } => format!(
                "{}: not found (does the bucket {bucket} exist?): {e}",
                self.url
            ),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => format!(
                "{}: the object store refused the credentials (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and the bucket's permissions): {e}",
                self.url
            ),
            e if e.to_string().contains("NoSuchBucket") => {
                format!("{}: there is no bucket {bucket}; create it first: {e}", self.url)
            }
            e => format!("{}: {e}", self.url),
        }
    }
}

/// Each pack's pieces in a copy: (offset, size), by offset.
type Pieces = HashMap<String, Vec<(u64, u64)>>;

/// A copy's packs, through the store's seam for where packs live ([`PackStore`]): pack NAME's
/// bytes from OFFSET on are the object `packs/NAME/OFFSET`. A pack is read only from pieces as
/// the listing gave them, each at most 64 MiB, and a piece that holds more or
/// less than listed is refused: a damaged or hostile copy cannot make a reader hold more
/// than what it asked for. Its calls wait on the runtime it was made on: call them from a
/// blocking thread (`spawn_blocking`), never from a task.
#[derive(Clone)]
pub struct ObjectPacks {
    target: Target,
    runtime: tokio::runtime::Handle,
    /// Each pack's pieces, (offset, size) by offset: listed once, then kept up to date by
    /// this handle's puts.
    pieces: Arc<Mutex<Option<Pieces>>>,
}

impl ObjectPacks {
    /// The packs of the copy at `target`, on the current runtime.
    pub fn new(target: Target) -> ObjectPacks {
        ObjectPacks {
            target,
            runtime: tokio::runtime::Handle::current(),
            pieces: Arc::new(Mutex::new(None)),
        }
    }

    fn wait<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, String>>,
    ) -> hoover_store::Result<T> {
        self.runtime.block_on(f).map_err(StoreError::Packs)
    }

    /// Makes a sealed pack (one never appended to again) of `len` bytes one object: its
    /// `bytes` (all of them, from byte 0) put over its first piece, then its other pieces
    /// deleted, so that the copy holds the whole pack at every moment (a reader of the
    /// listing in between finds pieces that overlap, which reads as the same bytes). When the
    /// first piece already holds it all (a compaction cut short), only the deletes are left.
    /// Returns how many bytes were uploaded.
    pub fn compact(
        &self,
        name: &str,
        len: u64,
        bytes: impl FnOnce() -> hoover_store::Result<Vec<u8>>,
    ) -> hoover_store::Result<u64> {
        let pieces = self.pieces_of(name)?;
        if pieces.len() <= 1 {
            return Ok(0);
        }
        let mut uploaded = 0;
        if pieces[0] != (0, len) {
            let bytes = bytes()?;
            if bytes.len() as u64 != len {
                return Err(StoreError::Corrupt(format!(
                    "pack {name}: {} bytes to compact, not its {len}",
                    bytes.len()
                )));
            }
            self.put(name, 0, &bytes)?;
            uploaded = len;
        }
        for &(offset, _) in &pieces {
            if offset == 0 {
                continue;
            }
            let path = self.target.path(&format!("packs/{name}/{offset:016x}"));
            self.wait(async {
                match self.target.objects.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.target.says(e)),
                }
            })?;
        }
        if let Some(listed) = self.pieces.lock().expect("pieces lock").as_mut() {
            listed.insert(name.to_string(), vec![(0, len)]);
        }
        Ok(uploaded)
    }

    /// How many pieces pack `name` is held in.
    pub fn piece_count(&self, name: &str) -> hoover_store::Result<usize> {
        Ok(self.pieces_of(name)?.len())
    }

    /// The pieces of pack `name`, listing the copy if it was not yet.
    fn pieces_of(&self, name: &str) -> hoover_store::Result<Vec<(u64, u64)>> {
        let mut pieces = self.pieces.lock().expect("pieces lock");
        if pieces.is_none() {
            *pieces = Some(self.wait(self.target.segments())?);
        }
        let listed = pieces.as_ref().expect("listed");
        Ok(listed.get(name).cloned().unwrap_or_default())
    }
}

impl PackStore for ObjectPacks {
    fn get(&self, name: &str, offset: u64, len: u64) -> hoover_store::Result<Vec<u8>> {
        let Some(end) = offset.checked_add(len) else {
            return Err(StoreError::NotFound(format!(
                "pack {name} has no bytes {offset}..{offset}+{len}"
            )));
        };
        let mut out = Vec::with_capacity(len.min(SEGMENT_MAX) as usize);
        let mut at = offset;
        for (start, size) in self.pieces_of(name)? {
            if at >= end || start > at {
                break;
            }
            // A listing is the copy's word: offsets near the top of u64 must not wrap.
            let piece_end = start.saturating_add(size);
            if piece_end <= at {
                continue;
            }
            if size > SEGMENT_MAX {
                return Err(StoreError::Corrupt(format!(
                    "{}: pack {name} has a piece of {size} bytes at {start}, more than hoover writes ({SEGMENT_MAX}); this is not a copy hoover made",
                    self.target.url()
                )));
            }
            let to = end.min(piece_end);
            let path = self.target.path(&format!("packs/{name}/{start:016x}"));
            let range = (at - start)..(to - start);
            let bytes = self.wait(async {
                self.target
                    .objects
                    .get_range(&path, range)
                    .await
                    .map_err(|e| self.target.says(e))
            })?;
            if bytes.len() as u64 != to - at {
                return Err(StoreError::Corrupt(format!(
                    "{}: pack {name} piece at {start} was listed with {size} bytes but gave {} of bytes {}..{}; this copy is damaged",
                    self.target.url(),
                    bytes.len(),
                    at - start,
                    to - start
                )));
            }
            out.extend_from_slice(&bytes);
            at = to;
        }
        if at < end {
            return Err(StoreError::Corrupt(format!(
                "the copy holds pack {name} only up to byte {at}, not {end}: it is incomplete (was its server stopped before it caught up?)"
            )));
        }
        Ok(out)
    }

    fn put(&self, name: &str, offset: u64, bytes: &[u8]) -> hoover_store::Result<()> {
        let path = self.target.path(&format!("packs/{name}/{offset:016x}"));
        let payload = PutPayload::from(bytes.to_vec());
        self.wait(async {
            self.target
                .objects
                .put(&path, payload)
                .await
                .map_err(|e| self.target.says(e))
        })?;
        if let Some(listed) = self.pieces.lock().expect("pieces lock").as_mut() {
            let pieces = listed.entry(name.to_string()).or_default();
            pieces.retain(|&(o, _)| o != offset);
            pieces.push((offset, bytes.len() as u64));
            pieces.sort_unstable();
        }
        Ok(())
    }

    fn list(&self) -> hoover_store::Result<Vec<PackExtent>> {
        let listed = self.wait(self.target.segments())?;
        *self.pieces.lock().expect("pieces lock") = Some(listed.clone());
        let mut out: Vec<PackExtent> = listed
            .into_iter()
            .map(|(name, pieces)| {
                // The bytes held from the start on, without a gap.
                let mut len = 0;
                for (offset, size) in pieces {
                    if offset <= len {
                        len = len.max(offset.saturating_add(size));
                    }
                }
                PackExtent { name, len }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn describe(&self, name: &str) -> String {
        format!("{}/packs/{name}", self.target.url().trim_end_matches('/'))
    }
}

/// How far the copy is behind, for `/api/stats`, `/metrics` and the dashboard.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CopyStatus {
    /// The copy's address.
    pub target: String,
    /// Packs with committed bytes the copy does not hold yet, and those bytes.
    pub packs_behind: u64,
    pub bytes_behind: u64,
    /// Pack bytes uploaded since the server started.
    pub bytes_copied: u64,
    /// Bytes uploaded again to make a sealed pack's pieces one object, since the server
    /// started.
    pub bytes_compacted: u64,
    /// When the newest snapshot of the version log in the copy was taken (ns since the epoch).
    pub snapshot_ns: Option<i64>,
    /// True while the version log has commits the copy's newest snapshot does not have.
    pub log_behind: bool,
    /// Why the copy is not keeping up, while it is not.
    pub error: Option<String>,
    /// How long the last snapshot of the version log took (taken, compressed, uploaded).
    pub snapshot_seconds: Option<f64>,
}

/// How long after a snapshot that took `took` the next may start. A snapshot copies the
/// whole log, whatever changed since the last, so its cost grows with the store's age: the
/// gap keeps snapshots to at most a tenth of the time (a log of a few MB takes milliseconds,
/// and `--replicate-every` rules; one that takes 30 s is copied at most every 5 minutes).
/// Pack bytes are copied as they commit either way.
fn snapshot_gap(took: Duration) -> Duration {
    took * SNAPSHOT_DUTY
}

/// See [`snapshot_gap`].
const SNAPSHOT_DUTY: u32 = 9;

/// Keeps the copy up to date. Cheap to clone.
#[derive(Clone)]
pub struct Replicator {
    status: Arc<Mutex<CopyStatus>>,
}

impl Replicator {
    /// Starts copying `store` to `target` on the current runtime: every commit's pack bytes
    /// (at once when many are waiting), and a snapshot of the version log at most `interval`
    /// after a commit, and at `shutdown`. The returned handle ends after the final snapshot.
    pub fn start(
        store: Store,
        target: Target,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> (Replicator, tokio::task::JoinHandle<()>) {
        let status = Arc::new(Mutex::new(CopyStatus {
            target: target.url().to_string(),
            log_behind: true,
            ..CopyStatus::default()
        }));
        let wake = Arc::new(Notify::new());
        let woken = wake.clone();
        store.on_commit(move |_| {
            woken.notify_one();
            true
        });
        let worker = Worker {
            store,
            packs: ObjectPacks::new(target.clone()),
            target,
            status: status.clone(),
            copied: None,
            extents: Vec::new(),
        };
        let task = tokio::spawn(worker.run(interval, wake, shutdown));
        (Replicator { status }, task)
    }

    pub fn status(&self) -> CopyStatus {
        self.status.lock().expect("copy status lock").clone()
    }
}

struct Worker {
    store: Store,
    target: Target,
    /// The copy's packs.
    packs: ObjectPacks,
    status: Arc<Mutex<CopyStatus>>,
    /// How many leading bytes of each pack the copy holds; `None` until it has been listed.
    copied: Option<HashMap<String, u64>>,
    /// The packs' committed lengths, as last read.
    extents: Vec<PackExtent>,
}

impl Worker {
    async fn run(mut self, interval: Duration, wake: Arc<Notify>, shutdown: CancellationToken) {
        // A snapshot at start: the copy then has what this server starts from.
        let mut log_dirty = true;
        let mut due = tokio::time::Instant::now();
        let mut backoff = Duration::from_secs(1);
        let mut last_error: Option<String> = None;
        // The next snapshot waits at least until then (see `snapshot_gap`).
        let mut not_before = tokio::time::Instant::now();
        loop {
            let stopping = shutdown.is_cancelled();
            let snapshot = log_dirty && (stopping || tokio::time::Instant::now() >= due);
            match self.round(snapshot).await {
                Ok(took) => {
                    if let Some(took) = took {
                        log_dirty = false;
                        not_before = tokio::time::Instant::now() + snapshot_gap(took);
                    }
                    backoff = Duration::from_secs(1);
                    if last_error.take().is_some() {
                        tracing::info!(copy = %self.target.url(), "the off-site copy is reachable again");
                    }
                    self.set(|s| s.error = None);
                }
                Err(e) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        tracing::error!("the off-site copy is not keeping up: {e}; ingest goes on, and the copy catches up when it can");
                    }
                    self.set(|s| s.error = Some(e.clone()));
                    last_error = Some(e);
                }
            }
            if stopping {
                return;
            }
            let failed = last_error.is_some();
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(backoff), if failed => {
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
                _ = tokio::time::sleep_until(due), if log_dirty && !failed => {}
                _ = wake.notified() => {
                    if !log_dirty {
                        log_dirty = true;
                        due = (tokio::time::Instant::now() + interval).max(not_before);
                    }
                    self.set(|s| s.log_behind = true);
                    // Many bytes waiting (a first sync): copy them now, not all at the snapshot.
                    if self.refresh().await.is_ok() && self.behind().1 < EAGER_BYTES {
                        continue;
                    }
                }
            }
        }
    }

    fn set(&self, f: impl FnOnce(&mut CopyStatus)) {
        f(&mut self.status.lock().expect("copy status lock"));
    }

    /// Reads the packs' committed lengths and updates how far behind the copy is.
    async fn refresh(&mut self) -> Result<(), String> {
        let store = self.store.clone();
        self.extents = tokio::task::spawn_blocking(move || store.pack_extents())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read the store's packs: {e}"))?;
        self.show_lag();
        Ok(())
    }

    /// (packs, bytes) committed that the copy lacks.
    fn behind(&self) -> (u64, u64) {
        let copied = self.copied.as_ref();
        let (mut packs, mut bytes) = (0, 0);
        for e in &self.extents {
            let have = copied.and_then(|c| c.get(&e.name)).copied().unwrap_or(0);
            if e.len > have {
                packs += 1;
                bytes += e.len - have;
            }
        }
        (packs, bytes)
    }

    fn show_lag(&self) {
        let (packs, bytes) = self.behind();
        self.set(|s| {
            s.packs_behind = packs;
            s.bytes_behind = bytes;
        });
    }

    /// One round: the pack bytes the copy lacks, then (with `snapshot`) a snapshot of the log.
    /// Returns how long the snapshot took (taking, compressing and uploading it), if one was
    /// taken.
    async fn round(&mut self, snapshot: bool) -> Result<Option<Duration>, String> {
        if self.copied.is_none() {
            // Listing first: a bucket that does not exist is an error here, where a put might
            // create it on some servers.
            let packs = self.packs.clone();
            let held = tokio::task::spawn_blocking(move || packs.list())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            self.target.claim(self.store.id()).await?;
            let copied = held.into_iter().map(|e| (e.name, e.len)).collect();
            let newest = self.target.snapshots().await?.last().map(|(_, ns)| *ns);
            self.set(|s| s.snapshot_ns = newest);
            self.copied = Some(copied);
        }
        let started = std::time::Instant::now();
        let taken = if snapshot {
            let store = self.store.clone();
            let dest = self.store.root().join("tmp").join("copy-of-versions.db");
            let at = jiff::Timestamp::now().as_nanosecond() as i64;
            let compressed = dest.with_extension("db.zst");
            let to = compressed.clone();
            let extents = tokio::task::spawn_blocking(move || {
                let extents = store.snapshot_log(&dest).map_err(|e| e.to_string())?;
                // Compressed to disk, not memory: a log may be large (`snapshot_gap`).
                let compressed = std::fs::File::open(&dest).and_then(|from| {
                    let out = std::fs::File::create(&to)?;
                    zstd::stream::copy_encode(std::io::BufReader::new(from), &out, 3)?;
                    out.sync_data()
                });
                let _ = std::fs::remove_file(&dest);
                compressed.map_err(|e| format!("{}: {e}", to.display()))?;
                Ok::<_, String>(extents)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot take a snapshot of the version log: {e}"))?;
            self.extents = extents;
            Some((at, compressed, started.elapsed()))
        } else {
            self.refresh().await?;
            None
        };
        for extent in self.extents.clone() {
            self.copy_pack(&extent).await?;
        }
        self.show_lag();
        self.compact_sealed().await?;
        let Some((at, compressed, took)) = taken else {
            return Ok(None);
        };
        let uploading = std::time::Instant::now();
        {
            let name = format!("log/{at:020}.db.zst");
            let put = self.target.put_file(&name, &compressed).await;
            let _ = std::fs::remove_file(&compressed);
            put?;
            let took = took + uploading.elapsed();
            self.set(|s| {
                s.snapshot_ns = Some(at);
                s.log_behind = false;
                s.snapshot_seconds = Some(took.as_secs_f64());
            });
            let snapshots = self.target.snapshots().await?;
            let old = snapshots.len().saturating_sub(KEEP_SNAPSHOTS);
            for (old, _) in &snapshots[..old] {
                let _ = self
                    .target
                    .objects
                    .delete(&self.target.path(&format!("log/{old}")))
                    .await;
            }
        }
        Ok(Some(took + uploading.elapsed()))
    }

    /// Makes each sealed pack that the copy holds in several pieces one object (a growing
    /// pack gets a piece per upload round, about one per active minute, and a recovery reads
    /// one request per piece). Each byte is uploaded twice at most: as a piece, and in its
    /// sealed pack.
    async fn compact_sealed(&mut self) -> Result<(), String> {
        let (store, packs) = (self.store.clone(), self.packs.clone());
        let copied = self.copied.clone().unwrap_or_default();
        let compacted = tokio::task::spawn_blocking(move || {
            // Which pack is open, then the lengths: a pack sealed after the lengths were read
            // would be taken for whole at a length it has outgrown.
            let open = store.open_pack().map_err(|e| e.to_string())?;
            let extents = store.pack_extents().map_err(|e| e.to_string())?;
            let mut uploaded = 0;
            for e in extents {
                if Some(&e.name) == open.as_ref() || e.len > SEGMENT_MAX {
                    continue;
                }
                // Only a pack the copy holds all of.
                if copied.get(&e.name) != Some(&e.len)
                    || packs.piece_count(&e.name).map_err(|e| e.to_string())? <= 1
                {
                    continue;
                }
                uploaded += packs
                    .compact(&e.name, e.len, || store.read_pack(&e.name, 0, e.len))
                    .map_err(|err| format!("cannot compact pack {}: {err}", e.name))?;
            }
            Ok::<_, String>(uploaded)
        })
        .await
        .map_err(|e| e.to_string())??;
        if compacted > 0 {
            self.set(|s| s.bytes_compacted += compacted);
        }
        Ok(())
    }

    /// Uploads the committed bytes of one pack that the copy lacks.
    async fn copy_pack(&mut self, extent: &PackExtent) -> Result<(), String> {
        let copied = self.copied.as_mut().expect("listed before copying");
        let mut have = copied.get(&extent.name).copied().unwrap_or(0);
        while have < extent.len {
            let to = extent.len.min(have + SEGMENT_MAX);
            let (store, packs, name) =
                (self.store.clone(), self.packs.clone(), extent.name.clone());
            tokio::task::spawn_blocking(move || {
                let bytes = store
                    .read_pack(&name, have, to)
                    .map_err(|e| format!("cannot read pack {name}: {e}"))?;
                packs.put(&name, have, &bytes).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
            hoover_store::fault::crash_point("copy-piece-uploaded");
            let copied = self.copied.as_mut().expect("listed before copying");
            copied.insert(extent.name.clone(), to);
            self.status.lock().expect("copy status lock").bytes_copied += to - have;
            have = to;
            self.show_lag();
        }
        Ok(())
    }
}

/// What a recovery found in the copy and wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Recovered {
    pub store: PathBuf,
    /// When the snapshot of the version log it used was taken (ns since the epoch).
    pub snapshot_ns: i64,
    pub packs: u64,
    pub pack_bytes: u64,
}

/// Builds a store in `root` (missing or empty) from the copy at `target`: its newest snapshot
/// of the version log and every pack byte that snapshot names. `progress` is told each pack as
/// it is written (packs done, packs in all). Check the result with `Store::verify`.
pub async fn recover(
    target: &Target,
    root: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Recovered, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if target.marker().await?.is_none() {
        return Err(format!(
            "{} holds no hoover copy (no {MARKER}); check the bucket and prefix",
            target.url()
        ));
    }
    let Some((name, snapshot_ns)) = target.snapshots().await?.pop() else {
        return Err(format!(
            "{} holds no snapshot of a version log yet (a server uploads one within a minute of its first commit)",
            target.url()
        ));
    };
    let parent = root
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let temp = || {
        tempfile::NamedTempFile::new_in(parent)
            .map_err(|e| format!("cannot write beside {}: {e}", root.display()))
    };
    // The snapshot goes to disk as it arrives and is decompressed from there: memory stays
    // bounded whatever size the copy says it is.
    let mut compressed = temp()?;
    let mut body = target
        .objects
        .get(&target.path(&format!("log/{name}")))
        .await
        .map_err(|e| target.says(e))?
        .into_stream();
    while let Some(part) = body.try_next().await.map_err(|e| target.says(e))? {
        compressed
            .write_all(&part)
            .map_err(|e| format!("{}: {e}", compressed.path().display()))?;
    }
    compressed
        .rewind()
        .map_err(|e| format!("{}: {e}", compressed.path().display()))?;
    let mut log = temp()?;
    zstd::stream::copy_decode(std::io::BufReader::new(compressed.as_file()), &mut log)
        .map_err(|e| format!("the copy's snapshot {name} does not decompress: {e}"))?;
    drop(compressed);
    log.flush().map_err(|e| e.to_string())?;
    let rebuild = Arc::new(Rebuild::begin(root, log.path()).map_err(|e| e.to_string())?);
    let copy = ObjectPacks::new(target.clone());
    let lister = copy.clone();
    let held: HashMap<String, u64> = tokio::task::spawn_blocking(move || lister.list())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|e| (e.name, e.len))
        .collect();
    let total = rebuild.packs().len() as u64;
    let mut pack_bytes = 0;
    for (n, pack) in rebuild.packs().to_vec().into_iter().enumerate() {
        // A pack of format 4 or older: the log gives no length; all the copy holds of it.
        let len = match pack.len {
            u64::MAX => held.get(&pack.name).copied().unwrap_or(0),
            len => len,
        };
        let (copy, rebuild) = (copy.clone(), rebuild.clone());
        tokio::task::spawn_blocking(move || {
            let mut at = 0;
            while at < len {
                let n = (len - at).min(SEGMENT_MAX);
                let bytes = copy.get(&pack.name, at, n)?;
                rebuild.put(&pack.name, at, &bytes)?;
                at += n;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        pack_bytes += len;
        progress(n as u64 + 1, total);
    }
    let rebuild = Arc::into_inner(rebuild).expect("every copy of the rebuild is done");
    let store = rebuild.finish().map_err(|e| e.to_string())?;
    Ok(Recovered {
        store,
        snapshot_ns,
        packs: total,
        pack_bytes,
    })
}
