//! Keeping the copy up to date while the server runs: the pack bytes as they commit, a
//! snapshot of the version log after them, and how far behind the copy is.

use super::*;

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
            claimed: false,
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
    /// The copy has been listed and claimed for this store: what it holds is known (through
    /// `packs`) and may be added to.
    claimed: bool,
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
        let (mut packs, mut bytes) = (0, 0);
        for e in &self.extents {
            let have = if self.claimed {
                self.packs.held(&e.name).unwrap_or(0)
            } else {
                0
            };
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
        if !self.claimed {
            // Listing first: a bucket that does not exist is an error here, where a put might
            // create it on some servers.
            let packs = self.packs.clone();
            tokio::task::spawn_blocking(move || packs.list())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            self.target.claim(self.store.id()).await?;
            let newest = self.target.snapshots().await?.last().map(|(_, ns)| *ns);
            self.set(|s| s.snapshot_ns = newest);
            self.claimed = true;
        }
        let started = std::time::Instant::now();
        // Which pack is open, before the lengths are read (below): a pack sealed after they
        // were read would otherwise be taken for whole at a length it has outgrown.
        let store = self.store.clone();
        let open = tokio::task::spawn_blocking(move || store.open_pack())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read the store's packs: {e}"))?;
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
        self.compact_sealed(open).await?;
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
    /// sealed pack. `open` is the pack that was open before this round's lengths were read.
    async fn compact_sealed(&mut self, open: Option<String>) -> Result<(), String> {
        let (store, packs) = (self.store.clone(), self.packs.clone());
        let extents = self.extents.clone();
        let compacted = tokio::task::spawn_blocking(move || {
            let mut uploaded = 0;
            for e in extents {
                if Some(&e.name) == open.as_ref() || e.len > SEGMENT_MAX {
                    continue;
                }
                // Only a pack the copy holds all of.
                if packs.held(&e.name) != Some(e.len)
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
        let mut have = self
            .packs
            .held(&extent.name)
            .expect("listed before copying");
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
            self.status.lock().expect("copy status lock").bytes_copied += to - have;
            have = to;
            self.show_lag();
        }
        Ok(())
    }
}
