//! One sync pass: scan the roots, find changed files, and push their new versions.
//!
//! An unchanged file (same device, inode, size and mtime as last recorded) costs a stat. A
//! changed file is read, cut into chunks and hashed; its chunk list is compared with the one
//! recorded after its last push, so only the chunks after the shared prefix are offered to the
//! server, and only those the server lacks are sent. Files are pushed in batches that the server
//! commits together.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use hoover_chunk::Cut;
use hoover_proto::{Committed, ErrorCode, IntoRuns, Request, VersionPush};
use hoover_types::{ChunkId, ChunkRef, Key};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::remote::Remote;
use crate::scan::{scan, Includes, Root};
use crate::state::{ClientState, FileState, Record, Stat};
use crate::track::Track;
use crate::{Progress, ServerError};

/// What to sync.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub source: String,
    pub roots: Vec<Root>,
    pub includes: Vec<String>,
}

/// What a sync pass did. `--json` prints this.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SyncReport {
    pub files_scanned: u64,
    pub files_changed: u64,
    pub versions_new: u64,
    pub chunks_sent: u64,
    /// Raw (uncompressed) bytes of the chunks sent.
    pub bytes_new: u64,
    /// Compressed bytes of the chunks sent.
    pub bytes_compressed: u64,
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
    /// Files this machine's state knew that are gone: each recorded on the server as a
    /// deletion (nothing there is removed).
    pub files_deleted: u64,
    /// Files that could not be pushed this time; the next pass retries them.
    pub files_failed: u64,
    pub warnings: Vec<String>,
}

/// Consecutive new chunks compressed one against the other before one goes alone: under the
/// store's bound on what reading a chunk decodes (2 MiB in store format 3, with groups of up
/// to 1 MiB; 10 MiB from format 4, with groups of up to 8 MiB), with room for the chain (or
/// the group) the first new chunk continues.
const CLIENT_CHAIN_BYTES: u64 = 768 << 10;

/// Raw bytes compressed at a time, per core, while the part before is sent (see
/// `send_wanted`): a group each.
const ENCODE_PART_BYTES: u64 = hoover_types::MAX_GROUP_BYTES as u64;

/// At most this many new chunks are sent without a have/want exchange (see `Offer`).
const SPECULATIVE_CHUNKS: usize = 4;

/// How long a batch whose chunks are sent waits for the next one before its versions and
/// commit go on their own (see `Pipeline`).
const OPEN_BATCH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Raw bytes gathered before a batch is pushed.
const BATCH_BYTES: usize = 32 * 1024 * 1024;
const BATCH_FILES: usize = 512;

/// A changed file, read, cut, hashed, and its new chunks compressed, ready to push.
pub(crate) struct Pending {
    pub(crate) key: Key,
    pub(crate) path: PathBuf,
    pub(crate) stat: Stat,
    pub(crate) size: u64,
    /// Chunks in the whole new version.
    chunk_count: u64,
    /// The chunks after the kept prefix, with file offsets.
    new: Vec<Cut>,
    pub(crate) blake3: [u8; 32],
    base: Option<u64>,
    kept: u64,
    /// What the next append needs, installed once this version is committed.
    track: Track,
    /// The file's bytes from `new[0]` on (at file offset `bytes_at`): compressed only once
    /// the server has said which chunks it lacks.
    bytes: Arc<Vec<u8>>,
    bytes_at: u64,
    /// The chunk the server's base version ends with: the first new chunk usually extends it.
    last: Option<ChunkRef>,
    /// The chunk before `new[0]` and its bytes: the first new chunk is compressed knowing it.
    before: Option<(ChunkId, Arc<Vec<u8>>)>,
    /// Which new chunks start a chain (see `chain_restarts_at`), worked out once.
    restarts: std::sync::OnceLock<Vec<bool>>,
    /// Its share of the prepare-ahead budget, given back when it is dropped.
    budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Pending {
    /// Raw bytes held until the push.
    fn held_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Lets go of what only sending the chunks needed: the file's bytes and their share of
    /// the read-ahead budget.
    fn sent(&mut self) {
        self.bytes = Arc::default();
        self.before = None;
        self.budget = None;
    }

    fn new_cuts(&self) -> &[Cut] {
        &self.new
    }

    /// Whether this file's new chunks go in groups: the server holds nothing they could be
    /// compressed against (no version of the file, no chunk before them).
    fn groups(&self) -> bool {
        self.last.is_none() && self.before.is_none()
    }

    fn chunk_bytes(&self, i: usize) -> &[u8] {
        let c = &self.new[i];
        let start = (c.offset - self.bytes_at) as usize;
        &self.bytes[start..start + c.len as usize]
    }

    /// Whether new chunk `i` starts a new chain (is sent alone): every
    /// [`CLIENT_CHAIN_BYTES`] of consecutive new chunks, so that the server, which bounds what
    /// reading a chunk decodes, need not compress any of them again.
    fn chain_restarts_at(&self, i: usize) -> bool {
        let restarts = self.restarts.get_or_init(|| {
            let mut run = 0u64;
            self.new
                .iter()
                .map(|c| {
                    run += c.len as u64;
                    let restart = run > CLIENT_CHAIN_BYTES;
                    if restart {
                        run = c.len as u64;
                    }
                    restart
                })
                .collect()
        });
        restarts[i]
    }

    /// New chunk `i` as a piece for a server that takes pieces: the first extends the base
    /// version's last chunk (when it begins with that chunk's bytes, checked by hash; in the
    /// context of the chunk before it when `appends`), or follows the chunk before it; the
    /// others follow the new chunk before them.
    fn piece(&self, i: usize, appends: bool) -> hoover_chunk::Piece {
        let data = self.chunk_bytes(i);
        if self.chain_restarts_at(i) {
            return hoover_chunk::piece(data, None, None, false);
        }
        if i > 0 {
            return hoover_chunk::piece(
                data,
                None,
                Some((self.new[i - 1].id, self.chunk_bytes(i - 1))),
                false,
            );
        }
        let last = self.last.and_then(|last| {
            let prefix = data.get(..last.len as usize)?;
            (ChunkId::of(prefix) == last.id).then_some((last.id, prefix))
        });
        let before = self.before.as_ref().map(|(id, b)| (*id, b.as_slice()));
        hoover_chunk::piece(data, last, before, appends)
    }
}

/// A changed file as the scan found it, with what the last push recorded.
pub(crate) struct Changed {
    pub(crate) key: Key,
    pub(crate) path: PathBuf,
    pub(crate) prior: Option<FileState>,
    pub(crate) old_chunks: Vec<ChunkRef>,
    pub(crate) size: u64,
}

/// What the preparing thread hands to the pusher.
enum Prepared {
    Ready(Box<Pending>),
    /// Gone since the scan (deleted or renamed); the next pass sees it as it is.
    Vanished,
    Failed(PathBuf, anyhow::Error),
}

/// Bytes read ahead of the pusher (in KiB): two batches' worth, enough to keep reading and
/// hashing while the previous batch is on the wire and being committed, and a bound on the
/// memory that takes.
const PREPARE_AHEAD_KIB: u32 = 64 * 1024;

/// The most of that budget one file takes, however big it is. The pusher waits for more files
/// only while its batch holds under [`BATCH_BYTES`] in under [`BATCH_FILES`] files (each
/// taking at most 1 KiB more than its bytes); a file may then take at most what is surely
/// free, or the reader would wait for the pusher and the pusher for the reader.
const FILE_AHEAD_KIB: u32 = PREPARE_AHEAD_KIB - (BATCH_BYTES / 1024 + BATCH_FILES) as u32;
const _: () = assert!(BATCH_BYTES / 1024 + BATCH_FILES < PREPARE_AHEAD_KIB as usize);

/// Runs one pass over the roots.
pub async fn sync<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    state: &ClientState,
    options: &SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncReport> {
    let includes = Includes::new(&options.includes)?;
    let scan_includes = includes.clone();
    let (source, roots) = (options.source.clone(), options.roots.clone());
    let (found, warnings) =
        tokio::task::spawn_blocking(move || scan(&source, &roots, &scan_includes)).await?;
    let mut report = SyncReport {
        files_scanned: found.len() as u64,
        warnings,
        ..Default::default()
    };
    let sent0 = (remote.bytes_sent(), remote.bytes_received());
    let present: HashSet<Key> = found.iter().map(|f| f.key.clone()).collect();
    record_deletions(remote, state, options, &includes, &present, &mut report).await?;

    // Stat every file; only changed ones are read. One trip to the state's thread for all.
    let (changed, vanished) = state
        .call(move |db| {
            let mut changed = Vec::new();
            let mut vanished = Vec::new();
            for f in found {
                let meta = match std::fs::metadata(&f.path) {
                    Ok(m) => m,
                    Err(e) => {
                        vanished.push(format!("{}: {e}; skipped (vanished?)", f.path.display()));
                        continue;
                    }
                };
                let stat = Stat::of(&meta);
                let prior = db.get(f.key.as_str())?;
                if prior.as_ref().map(|p| p.stat) == Some(stat) {
                    continue;
                }
                let old_chunks = match &prior {
                    Some(_) => db.chunks(f.key.as_str())?,
                    None => Vec::new(),
                };
                changed.push(Changed {
                    key: f.key,
                    path: f.path,
                    prior,
                    old_chunks,
                    size: stat.size,
                });
            }
            Ok((changed, vanished))
        })
        .await?;
    report.warnings.extend(vanished);
    let total_bytes = changed.iter().map(|c| c.size).sum();
    progress.begin(changed.len() as u64, total_bytes);

    // A thread reads, cuts and hashes changed files ahead of the pusher, within a budget of
    // bytes held that the pusher gives back as it sends.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Prepared, u64, Option<FileState>)>();
    let budget = Arc::new(tokio::sync::Semaphore::new(PREPARE_AHEAD_KIB as usize));
    let producer_budget = budget.clone();
    let runtime = tokio::runtime::Handle::current();
    let producer = tokio::task::spawn_blocking(move || {
        for c in changed {
            let prepared = match prepare(&c) {
                Ok(Some(mut p)) => {
                    let kib = (p.held_bytes() / 1024).clamp(1, FILE_AHEAD_KIB as u64) as u32;
                    match runtime.block_on(producer_budget.clone().acquire_many_owned(kib)) {
                        Ok(permit) => p.budget = Some(permit),
                        Err(_) => return,
                    }
                    Prepared::Ready(Box::new(p))
                }
                Ok(None) => Prepared::Vanished,
                Err(e) => Prepared::Failed(c.path.clone(), e),
            };
            if tx.send((prepared, c.size, c.prior)).is_err() {
                return;
            }
        }
    });

    let mut batch: Vec<Pending> = Vec::new();
    let mut batch_bytes = 0u64;
    let mut pipeline = Pipeline::default();
    loop {
        let next = if pipeline.open.is_some() {
            // The open batch's versions wait for the next batch's have/want, but not for a
            // slow read: the server drops a batch left open too long (`--stall-timeout`).
            match tokio::time::timeout(OPEN_BATCH_WAIT, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::debug!("the next batch is slow to read; committing the open one");
                    pipeline.commit_open(remote, state, &mut report).await?;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some((prepared, size, prior)) = next else {
            break;
        };
        progress.advance(size);
        let pending = match prepared {
            Prepared::Ready(p) => *p,
            Prepared::Vanished => continue,
            Prepared::Failed(path, e) => {
                report
                    .warnings
                    .push(format!("{}: {e:#}; will retry next pass", path.display()));
                report.files_failed += 1;
                continue;
            }
        };
        if let Some(p) = &prior {
            if p.blake3 == pending.blake3 && p.stat.size == pending.stat.size {
                // Touched, not changed: remember the new stat so the next pass skips it.
                state.touch(pending.key.as_str(), pending.stat).await?;
                continue;
            }
        }
        report.files_changed += 1;
        batch_bytes += pending.new_cuts().iter().map(|c| c.len as u64).sum::<u64>();
        batch.push(pending);
        if batch_bytes >= BATCH_BYTES as u64 || batch.len() >= BATCH_FILES {
            pipeline
                .push(remote, state, std::mem::take(&mut batch), &mut report)
                .await?;
            batch_bytes = 0;
        }
    }
    producer.await?;
    drop(budget);
    if !batch.is_empty() {
        pipeline.push(remote, state, batch, &mut report).await?;
    }
    pipeline.finish(remote, state, &mut report).await?;
    progress.finish();
    report.wire_bytes_sent = remote.bytes_sent() - sent0.0;
    report.wire_bytes_received = remote.bytes_received() - sent0.1;
    Ok(report)
}

/// Records on the server, as deletions, the files this machine's state knew under the synced
/// roots that are gone (Claude Code's 30-day clean-up, a rename's old name), as `watch` does,
/// with the time this pass noticed. A root that is not there at all (an unmounted disk) is no
/// evidence of anything and is left alone; so is a file the include patterns no longer take.
async fn record_deletions<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    state: &ClientState,
    options: &SyncOptions,
    includes: &Includes,
    present: &HashSet<Key>,
    report: &mut SyncReport,
) -> Result<()> {
    let roots: Vec<(String, &Root)> = options
        .roots
        .iter()
        .filter(|r| r.dir.is_dir())
        .map(|r| (format!("{}/{}/", options.source, r.name), r))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    for key in state.keys().await? {
        let Some((rel, root)) = roots
            .iter()
            .find_map(|(prefix, root)| Some((key.strip_prefix(prefix.as_str())?, *root)))
        else {
            continue;
        };
        let Ok(parsed) = Key::new(key.clone()) else {
            continue;
        };
        if present.contains(&parsed) || !includes.matches(std::path::Path::new(rel)) {
            continue;
        }
        let path = root.dir.join(rel);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // There, but not a file the scan takes (a link now, say): not a deletion.
            _ => continue,
        }
        remote.deleted(&parsed, now).await?;
        state.forget(&key).await?;
        report.files_deleted += 1;
    }
    Ok(())
}

/// Reads a changed file, cuts and hashes it, and works out the prefix the server already has.
/// Returns `None` when the file vanished.
pub(crate) fn prepare(c: &Changed) -> Result<Option<Pending>> {
    let Some((stat, mut data)) = read_stable(&c.path)? else {
        return Ok(None);
    };
    let cuts = hoover_chunk::cut(&data, 0);
    let (blake3, track) = Track::of_full(&stat, &data, &cuts, c.prior.as_ref().map(|p| p.seq));
    let (base, kept) = match &c.prior {
        Some(p) => {
            let new: Vec<ChunkRef> = cuts.iter().map(Cut::chunk_ref).collect();
            (
                Some(p.seq),
                hoover_chunk::common_prefix(&c.old_chunks, &new) as u64,
            )
        }
        None => (None, 0),
    };
    let kept_n = kept as usize;
    let new = cuts[kept_n..].to_vec();
    let before = kept_n
        .checked_sub(1)
        .map(|i| (cuts[i].id, Arc::new(cuts[i].slice(&data).to_vec())));
    let last = base.and_then(|_| c.old_chunks.get(kept_n).copied());
    let size = data.len() as u64;
    // Only the new part is kept for the push.
    let bytes_at = new.first().map(|c| c.offset).unwrap_or(size);
    data.drain(..bytes_at as usize);
    Ok(Some(Pending {
        key: c.key.clone(),
        path: c.path.clone(),
        stat,
        size,
        chunk_count: cuts.len() as u64,
        new,
        blake3,
        track,
        base,
        kept,
        bytes: Arc::new(data),
        bytes_at,
        last,
        before,
        restarts: std::sync::OnceLock::new(),
        budget: None,
    }))
}

/// Like [`prepare`], but reads only the appended bytes when `track` still describes the
/// version the server has; falls back to a full read otherwise.
pub(crate) fn prepare_with_track(c: &Changed, track: Option<&Track>) -> Result<Option<Pending>> {
    let usable = match (track, &c.prior) {
        (Some(t), Some(p)) => t.seq == Some(p.seq) && t.stable_count < p.chunk_count.max(1),
        _ => false,
    };
    let (Some(track), Some(prior), true) = (track, &c.prior, usable) else {
        return prepare(c);
    };
    let Some(appended) = crate::track::read_append(&c.path, track)? else {
        return prepare(c);
    };
    Ok(Some(Pending {
        key: c.key.clone(),
        path: c.path.clone(),
        stat: appended.stat,
        size: appended.size,
        chunk_count: track.stable_count + appended.new.len() as u64,
        new: appended.new,
        blake3: appended.blake3,
        base: Some(prior.seq),
        kept: track.stable_count,
        track: appended.track,
        bytes: Arc::new(appended.tail),
        bytes_at: track.stable_end,
        last: track.last,
        before: appended.before.map(|(id, b)| (id, Arc::new(b))),
        restarts: std::sync::OnceLock::new(),
        budget: None,
    }))
}

/// Reads a file whole, making sure it did not change while being read.
fn read_stable(path: &std::path::Path) -> Result<Option<(Stat, Vec<u8>)>> {
    use std::io::Read;
    for _ in 0..3 {
        let mut file = match crate::scan::open_regular(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let before = Stat::of(&file.metadata()?);
        let mut data = Vec::with_capacity(before.size as usize);
        file.read_to_end(&mut data)?;
        let after = Stat::of(&std::fs::symlink_metadata(path)?);
        if before == after && after.size == data.len() as u64 {
            return Ok(Some((after, data)));
        }
    }
    anyhow::bail!("kept changing while being read")
}

/// Pushes one batch and waits for its commit; files whose base went stale meanwhile are
/// pushed again on the new base. Returns the tracks of the versions committed, for the next
/// append.
pub(crate) async fn push_batch<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    state: &ClientState,
    batch: Vec<Pending>,
    report: &mut SyncReport,
) -> Result<Vec<(Key, Track)>> {
    let mut pipeline = Pipeline::keeping_tracks();
    pipeline.push(remote, state, batch, report).await?;
    pipeline.finish(remote, state, report).await
}

/// Pushes again, with their whole chunk lists, the files whose base was not the server's
/// latest version (another client, or a restored server); chunks it has are still not resent.
/// A file whose base is stale again is left for the next pass.
async fn push_again<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    state: &ClientState,
    retry: Vec<Pending>,
    keep_tracks: bool,
    report: &mut SyncReport,
) -> Result<Vec<(Key, Track)>> {
    if retry.is_empty() {
        return Ok(Vec::new());
    }
    let mut again = Vec::new();
    for p in retry {
        state.forget(p.key.as_str()).await?;
        let changed = Changed {
            key: p.key.clone(),
            path: p.path.clone(),
            prior: None,
            old_chunks: Vec::new(),
            size: p.size,
        };
        match tokio::task::spawn_blocking(move || prepare(&changed)).await? {
            Ok(Some(p)) => again.push(p),
            Ok(None) => {}
            Err(e) => {
                report.files_failed += 1;
                report
                    .warnings
                    .push(format!("{}: {e:#}; will retry next pass", p.path.display()));
            }
        }
    }
    let mut pipeline = Pipeline {
        tracks: keep_tracks.then(Vec::new),
        ..Pipeline::default()
    };
    pipeline.push(remote, state, again, report).await?;
    let (tracks, still) = pipeline.drain(remote, state, report).await?;
    for p in still {
        report.files_failed += 1;
        report
            .warnings
            .push(format!("{}: base still stale; will retry next pass", p.key));
    }
    Ok(tracks)
}

/// Pushes batches one behind the other: a batch's versions and commit are sent once the next
/// batch's have/want is answered, so the server makes one batch durable while the client
/// compresses and sends the next (the answers come in order: the commit's first). Without it
/// the client sat idle for every commit, about a sixth of a first sync. A single batch
/// (`push_batch`) goes have/want, chunks, versions and commit, as before.
#[derive(Default)]
struct Pipeline {
    /// Chunks sent, versions not yet.
    open: Option<Sent>,
    /// Versions and commit sent, answers not read yet.
    committing: Option<(Vec<Pending>, usize)>,
    /// Files whose base went stale: pushed again at the end.
    retry: Vec<Pending>,
    /// The tracks of the versions committed, when the caller keeps them (`watch`, for its
    /// next appends; a whole `sync` pass would hold about 2 KB per file for nothing).
    tracks: Option<Vec<(Key, Track)>>,
    scratch: Arc<Scratch>,
}

impl Pipeline {
    fn keeping_tracks() -> Pipeline {
        Pipeline {
            tracks: Some(Vec::new()),
            ..Pipeline::default()
        }
    }

    async fn push<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        remote: &mut Remote<S>,
        state: &ClientState,
        batch: Vec<Pending>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let offer = Offer::of(remote, &batch, self.open.as_ref());
        if offer.ask {
            // The server answers once it has the open batch's chunks, which count as held.
            remote.send_have(&offer.ids).await?;
        }
        self.settle_committing(remote, state, report).await?;
        let wanted = if offer.ask {
            remote.recv_want(offer.ids.len()).await?
        } else {
            vec![true; offer.ids.len()]
        };
        self.commit_open(remote, state, report).await?;
        let scratch = self.scratch.clone();
        self.open = Some(send_wanted(remote, batch, &offer, &wanted, &scratch, report).await?);
        Ok(())
    }

    /// Sends the open batch's versions and commit (after reading the answers to the commit
    /// before, if still unread: one commit in flight at a time, or answers would be lost).
    async fn commit_open<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        remote: &mut Remote<S>,
        state: &ClientState,
        report: &mut SyncReport,
    ) -> Result<()> {
        self.settle_committing(remote, state, report).await?;
        if let Some(open) = self.open.take() {
            let n = remote
                .send_versions_and_commit(pushes(&open, remote.minor))
                .await?;
            self.committing = Some((open.batch, n));
        }
        Ok(())
    }

    async fn settle_committing<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        remote: &mut Remote<S>,
        state: &ClientState,
        report: &mut SyncReport,
    ) -> Result<()> {
        if let Some((batch, n)) = self.committing.take() {
            let (checked, committed) = remote.recv_commit(n).await?;
            let (tracks, records) = settle(batch, checked, committed, report, &mut self.retry)?;
            state.record(records).await?;
            if let Some(kept) = &mut self.tracks {
                kept.extend(tracks);
            }
        }
        Ok(())
    }

    /// Commits what is still open; returns the tracks kept and the files whose base was stale.
    async fn drain<S: AsyncRead + AsyncWrite + Unpin>(
        mut self,
        remote: &mut Remote<S>,
        state: &ClientState,
        report: &mut SyncReport,
    ) -> Result<(Vec<(Key, Track)>, Vec<Pending>)> {
        self.commit_open(remote, state, report).await?;
        self.settle_committing(remote, state, report).await?;
        Ok((self.tracks.unwrap_or_default(), self.retry))
    }

    /// Commits what is still open and pushes the stale files again; returns the tracks kept.
    async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        remote: &mut Remote<S>,
        state: &ClientState,
        report: &mut SyncReport,
    ) -> Result<Vec<(Key, Track)>> {
        let keep_tracks = self.tracks.is_some();
        let (mut tracks, retry) = self.drain(remote, state, report).await?;
        tracks.extend(push_again(remote, state, retry, keep_tracks, report).await?);
        Ok(tracks)
    }
}

/// A batch's new chunks, each offered once, and whether to ask the server which it lacks.
struct Offer {
    /// (file, chunk) of each offered chunk.
    at: Vec<(usize, usize)>,
    ids: Vec<ChunkId>,
    ask: bool,
}

impl Offer {
    /// The chunks of `batch` to offer: each once, and none that `open`, the batch sent but not
    /// committed yet, holds (its commit comes first; the server does not count the chunks of
    /// a group it names as held before then).
    fn of<S>(remote: &Remote<S>, batch: &[Pending], open: Option<&Sent>) -> Offer {
        let mut seen = HashSet::new();
        let (mut at, mut ids) = (Vec::new(), Vec::new());
        for (fi, p) in batch.iter().enumerate() {
            for (ci, cut) in p.new_cuts().iter().enumerate() {
                let in_open = open.is_some_and(|o| o.order.contains_key(&cut.id));
                if !in_open && seen.insert(cut.id) {
                    at.push((fi, ci));
                    ids.push(cut.id);
                }
            }
        }
        // A small append to a file the server has is new content: its few chunks are sent
        // without asking first, which saves a round trip per version. Anything else asks, and
        // so does the first batch on a connection: after a drop, the server may hold more than
        // we know.
        let small_append = remote.commits > 0
            && ids.len() <= SPECULATIVE_CHUNKS
            && batch.iter().all(|p| p.base.is_some());
        Offer {
            at,
            ids,
            ask: !small_append,
        }
    }
}

/// A batch whose chunks are sent: its files, and the place of each chunk sent in the order
/// the server received them, which its versions' runs name (protocol 1.4).
struct Sent {
    batch: Vec<Pending>,
    order: HashMap<ChunkId, u32>,
}

/// Compresses and sends the wanted chunks of a batch (only what the server lacks), a group at
/// a time while the group before is on the wire; then lets go of the batch's file bytes and
/// read-ahead budget, which the versions and their commit do not need.
async fn send_wanted<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    batch: Vec<Pending>,
    offer: &Offer,
    wanted: &[bool],
    scratch: &Arc<Scratch>,
    report: &mut SyncReport,
) -> Result<Sent> {
    let wanted: Vec<(usize, usize)> = offer
        .at
        .iter()
        .zip(wanted)
        .filter(|(_, w)| **w)
        .map(|(o, _)| *o)
        .collect();
    let minor = remote.minor;
    let shared = Arc::new(batch);
    // The server verifies and stages what arrives meanwhile, so the two sides work at once.
    let per_part = ENCODE_PART_BYTES * encode_threads() as u64;
    let mut parts: Vec<Vec<Unit>> = Vec::new();
    let mut part_bytes = 0u64;
    for unit in plan(&shared, &wanted, minor) {
        if parts.is_empty() || part_bytes >= per_part {
            parts.push(Vec::new());
            part_bytes = 0;
        }
        part_bytes += unit.bytes(&shared);
        parts.last_mut().expect("a part was just pushed").push(unit);
    }
    let start = |list: Vec<Unit>| {
        let (shared, scratch) = (shared.clone(), scratch.clone());
        tokio::task::spawn_blocking(move || encode(&shared, &list, minor, &scratch))
    };
    let mut parts = parts.into_iter();
    let mut next = parts.next().map(start);
    let mut order = HashMap::new();
    let mut received = 0u32;
    while let Some(task) = next.take() {
        let encoded = task.await?;
        next = parts.next().map(start);
        for e in encoded {
            let (chunks, compressed) = match &e {
                Encoded::Piece(c, piece) => (std::slice::from_ref(c), piece.frame.len()),
                Encoded::Group(chunks, frame) => (&chunks[..], frame.len()),
            };
            for c in chunks {
                order.entry(c.id).or_insert(received);
                received += 1;
            }
            report.chunks_sent += chunks.len() as u64;
            report.bytes_new += chunks.iter().map(|c| c.len as u64).sum::<u64>();
            report.bytes_compressed += compressed as u64;
            match e {
                Encoded::Piece(c, piece) => remote.send_piece(c.id, c.len, piece).await?,
                Encoded::Group(chunks, frame) => remote.send_group(chunks, frame).await?,
            }
        }
    }
    let mut batch = Arc::try_unwrap(shared)
        .map_err(|_| anyhow::anyhow!("internal error: the encoder kept the batch"))?;
    for p in &mut batch {
        p.sent();
    }
    Ok(Sent { batch, order })
}

/// The versions of a batch whose chunks are sent, for a server of protocol 1.`minor`: from
/// 1.4 the chunks sent in this batch are named as runs of what it received.
fn pushes(sent: &Sent, minor: u16) -> Vec<Request> {
    sent.batch
        .iter()
        .map(|p| {
            let push = VersionPush {
                key: p.key.to_string(),
                size: p.size,
                blake3: p.blake3,
                mtime_ns: p.stat.mtime_ns,
                base: p.base,
                kept: p.kept,
                chunks: p.new_cuts().iter().map(Cut::chunk_ref).collect(),
            };
            if minor >= 4 {
                Request::VersionRuns(push.runs(|id| sent.order.get(id).copied()))
            } else {
                Request::Version(push)
            }
        })
        .collect()
}

/// The tracks of committed versions, per file, for the next appends.
type Tracks = Vec<(Key, Track)>;

/// What the server committed of a batch: the tracks for the next appends and what to record
/// in the client state; stale files go to `retry`.
fn settle(
    batch: Vec<Pending>,
    checked: Vec<Result<(), ServerError>>,
    committed: Vec<Committed>,
    report: &mut SyncReport,
    retry: &mut Vec<Pending>,
) -> Result<(Tracks, Vec<Record>)> {
    tracing::debug!(files = batch.len(), "pushed a batch");
    let mut tracks = Vec::new();
    let mut records = Vec::new();
    let mut committed = committed.into_iter();
    for (p, verdict) in batch.into_iter().zip(checked) {
        match verdict {
            Ok(()) => {
                let Some(c) = committed.next() else {
                    anyhow::bail!(
                        "protocol error: the server committed fewer versions than it accepted"
                    );
                };
                if c.key != p.key {
                    anyhow::bail!("protocol error: commit answered {} for {}", c.key, p.key);
                }
                if c.new {
                    report.versions_new += 1;
                }
                let new: Vec<ChunkRef> = p.new_cuts().iter().map(Cut::chunk_ref).collect();
                let file_state = FileState {
                    stat: p.stat,
                    blake3: p.blake3,
                    seq: c.seq,
                    chunk_count: p.chunk_count,
                };
                records.push(Record {
                    key: p.key.as_str().to_string(),
                    state: file_state,
                    kept: p.kept,
                    new,
                });
                let mut track = p.track;
                track.seq = Some(c.seq);
                tracks.push((p.key, track));
            }
            Err(e) if e.code == ErrorCode::StaleBase => retry.push(p),
            Err(e) => {
                report.files_failed += 1;
                report.warnings.push(format!("{}: {}", p.key, e.message));
            }
        }
    }
    Ok((tracks, records))
}

/// Wanted chunks, encoded.
enum Encoded {
    /// One chunk as a piece.
    Piece(ChunkRef, hoover_chunk::Piece),
    /// Several chunks as a group: one zstd frame of their bytes back to back.
    Group(Vec<ChunkRef>, Vec<u8>),
}

/// Wanted chunks, to encode: (file, chunk) of a batch.
enum Unit {
    /// Chunks of files the server holds nothing of, back to back in one frame.
    Group(Vec<(usize, usize)>),
    /// One chunk, against the chunks before it.
    Piece(usize, usize),
}

impl Unit {
    fn bytes(&self, batch: &[Pending]) -> u64 {
        let len = |&(fi, ci): &(usize, usize)| batch[fi].new_cuts()[ci].len as u64;
        match self {
            Unit::Group(chunks) => chunks.iter().map(len).sum(),
            Unit::Piece(fi, ci) => len(&(*fi, *ci)),
        }
    }
}

/// How the wanted chunks of a batch go, in order, to a server of protocol 1.`minor`: from 1.3
/// the chunks of files the server holds nothing of go in groups (up to 1 MiB, from 1.5 up to
/// 8 MiB: a group's chunks share one compression context across chunks and files, and a
/// larger one compresses a first sync of many small sessions about 3% smaller; see
/// `docs/store.md`); the others go as pieces.
fn plan(batch: &[Pending], wanted: &[(usize, usize)], minor: u16) -> Vec<Unit> {
    let limit = hoover_types::max_group_bytes(minor);
    let mut out = Vec::new();
    let mut group: Vec<(usize, usize)> = Vec::new();
    let mut group_bytes = 0usize;
    for &(fi, ci) in wanted {
        let len = batch[fi].new_cuts()[ci].len as usize;
        if limit > 0 && batch[fi].groups() {
            if group_bytes + len > limit || group.len() == hoover_types::MAX_GROUP_CHUNKS {
                out.push(Unit::Group(std::mem::take(&mut group)));
                group_bytes = 0;
            }
            group.push((fi, ci));
            group_bytes += len;
            continue;
        }
        // A piece's base may be in the group so far (a chunk two files share is sent once,
        // for the first): the group goes first.
        if !group.is_empty() {
            out.push(Unit::Group(std::mem::take(&mut group)));
            group_bytes = 0;
        }
        out.push(Unit::Piece(fi, ci));
    }
    if !group.is_empty() {
        out.push(Unit::Group(group));
    }
    out
}

/// Encodes one unit for a server of protocol 1.`minor`: a group as one zstd frame; a piece
/// against the chunks before it (appending ones from 1.3); to a 1.1 server each chunk alone.
fn encode_unit(batch: &[Pending], unit: &Unit, minor: u16, scratch: &Scratch) -> Encoded {
    match *unit {
        Unit::Group(ref group) => {
            let parts: Vec<&[u8]> = group
                .iter()
                .map(|&(fi, ci)| batch[fi].chunk_bytes(ci))
                .collect();
            let chunks = group
                .iter()
                .map(|&(fi, ci)| batch[fi].new_cuts()[ci].chunk_ref())
                .collect();
            let mut buf = scratch.take();
            let frame = hoover_chunk::compress_parts(&parts, hoover_chunk::PIECE_LEVEL, &mut buf);
            scratch.give(buf);
            Encoded::Group(chunks, frame)
        }
        Unit::Piece(fi, ci) => {
            let p = &batch[fi];
            let piece = if minor >= 2 {
                p.piece(ci, minor >= 3)
            } else {
                hoover_chunk::Piece {
                    kind: hoover_types::PieceKind::Alone,
                    base: None,
                    context: None,
                    frame: hoover_chunk::compress(p.chunk_bytes(ci)),
                }
            };
            Encoded::Piece(p.new_cuts()[ci].chunk_ref(), piece)
        }
    }
}

/// Buffers a group's chunks are gathered in to be compressed, reused from group to group for
/// the life of a pass and let go with it: a fresh 8 MiB buffer for each group cost page faults
/// (110,000 more in a first sync of 1.1 GB), and buffers kept per thread stayed with an idle
/// agent (27 MB).
#[derive(Default)]
struct Scratch(std::sync::Mutex<Vec<Vec<u8>>>);

impl Scratch {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn give(&self, buf: Vec<u8>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(buf);
    }
}

/// Threads that compress at once.
fn encode_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}

/// Encodes units on all cores when there are several (each thread takes the next unit), in
/// their order.
fn encode(batch: &[Pending], units: &[Unit], minor: u16, scratch: &Scratch) -> Vec<Encoded> {
    let threads = encode_threads().min(units.len());
    if threads <= 1 {
        return units
            .iter()
            .map(|u| encode_unit(batch, u, minor, scratch))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Encoded)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(unit) = units.get(i) else {
                            return out;
                        };
                        out.push((i, encode_unit(batch, unit, minor, scratch)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("compression worker panicked"))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, e)| e).collect()
}
