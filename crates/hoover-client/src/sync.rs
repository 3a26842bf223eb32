//! One sync pass: scan the roots, find changed files, and push their new versions.
//!
//! An unchanged file (same device, inode, size and mtime as last recorded) costs a stat. A
//! changed file is read, cut into chunks and hashed; its chunk list is compared with the one
//! recorded after its last push, so only the chunks after the shared prefix are offered to the
//! server, and only those the server lacks are sent. Files are pushed in batches that the server
//! commits together.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use hoover_chunk::Cut;
use hoover_proto::{ErrorCode, VersionPush};
use hoover_types::{ChunkId, ChunkRef, Key};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::remote::Remote;
use crate::scan::{scan, Includes, Root};
use crate::state::{ClientState, FileState, Stat};
use crate::Progress;

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
    /// Files that could not be pushed this time; the next pass retries them.
    pub files_failed: u64,
    pub warnings: Vec<String>,
}

/// Raw bytes gathered before a batch is pushed.
const BATCH_BYTES: usize = 32 * 1024 * 1024;
const BATCH_FILES: usize = 512;

struct Pending {
    key: Key,
    stat: Stat,
    data: Arc<Vec<u8>>,
    cuts: Vec<Cut>,
    blake3: [u8; 32],
    base: Option<u64>,
    kept: u64,
}

impl Pending {
    fn new_cuts(&self) -> &[Cut] {
        &self.cuts[self.kept as usize..]
    }
}

/// Runs one pass over the roots.
pub async fn sync<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    state: &mut ClientState,
    options: &SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncReport> {
    let includes = Includes::new(&options.includes)?;
    let (source, roots) = (options.source.clone(), options.roots.clone());
    let (found, warnings) =
        tokio::task::spawn_blocking(move || scan(&source, &roots, &includes)).await?;
    let mut report = SyncReport {
        files_scanned: found.len() as u64,
        warnings,
        ..Default::default()
    };
    let sent0 = (remote.bytes_sent(), remote.bytes_received());

    // Stat every file; only changed ones are read.
    let mut changed = Vec::new();
    for f in found {
        let meta = match std::fs::metadata(&f.path) {
            Ok(m) => m,
            Err(e) => {
                report
                    .warnings
                    .push(format!("{}: {e}; skipped (vanished?)", f.path.display()));
                continue;
            }
        };
        let stat = Stat::of(&meta);
        let prior = state.get(f.key.as_str())?;
        if prior.as_ref().map(|p| p.stat) == Some(stat) {
            continue;
        }
        changed.push((f.key, f.path, prior, stat.size));
    }
    let total_bytes = changed.iter().map(|c| c.3).sum();
    progress.begin(changed.len() as u64, total_bytes);

    let mut batch: Vec<Pending> = Vec::new();
    let mut batch_bytes = 0usize;
    for (key, path, prior, size) in changed {
        let prepared = prepare(key.clone(), path.clone(), prior.clone(), state).await;
        progress.advance(size);
        let pending = match prepared {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
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
                state.touch(key.as_str(), &pending.stat)?;
                continue;
            }
        }
        report.files_changed += 1;
        batch_bytes += pending.data.len();
        batch.push(pending);
        if batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_FILES {
            push_batch(remote, state, std::mem::take(&mut batch), &mut report).await?;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        push_batch(remote, state, batch, &mut report).await?;
    }
    progress.finish();
    report.wire_bytes_sent = remote.bytes_sent() - sent0.0;
    report.wire_bytes_received = remote.bytes_received() - sent0.1;
    Ok(report)
}

/// Reads a changed file, cuts and hashes it, and works out what the server already has.
/// Returns `None` when the file vanished.
async fn prepare(
    key: Key,
    path: PathBuf,
    prior: Option<FileState>,
    state: &ClientState,
) -> Result<Option<Pending>> {
    let read = tokio::task::spawn_blocking(move || read_stable(&path)).await??;
    let Some((stat, data)) = read else {
        return Ok(None);
    };
    let data = Arc::new(data);
    let d = data.clone();
    let (cuts, blake3) = tokio::task::spawn_blocking(move || {
        let cuts = hoover_chunk::cut(&d, 0);
        (cuts, *blake3::hash(&d).as_bytes())
    })
    .await?;
    let (base, kept) = match &prior {
        Some(p) => {
            let old = state.chunks(key.as_str())?;
            let new: Vec<ChunkRef> = cuts.iter().map(Cut::chunk_ref).collect();
            (Some(p.seq), hoover_chunk::common_prefix(&old, &new) as u64)
        }
        None => (None, 0),
    };
    Ok(Some(Pending {
        key,
        stat,
        data,
        cuts,
        blake3,
        base,
        kept,
    }))
}

/// Reads a file whole, making sure it did not change while being read.
fn read_stable(path: &std::path::Path) -> Result<Option<(Stat, Vec<u8>)>> {
    for _ in 0..3 {
        let before = match std::fs::metadata(path) {
            Ok(m) => Stat::of(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let after = Stat::of(&std::fs::metadata(path)?);
        if before == after && after.size == data.len() as u64 {
            return Ok(Some((after, data)));
        }
    }
    anyhow::bail!("kept changing while being read")
}

async fn push_batch<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    state: &mut ClientState,
    batch: Vec<Pending>,
    report: &mut SyncReport,
) -> Result<()> {
    let mut retry = Vec::new();
    push_once(remote, state, batch, report, &mut retry).await?;
    if !retry.is_empty() {
        // The server's latest version differs from what this client recorded (another client,
        // or a restored server): send the whole chunk list; chunks it has are still not resent.
        let mut again = Vec::new();
        for mut p in retry {
            state.forget(p.key.as_str())?;
            p.base = None;
            p.kept = 0;
            again.push(p);
        }
        let mut still = Vec::new();
        push_once(remote, state, again, report, &mut still).await?;
        for p in still {
            report.files_failed += 1;
            report
                .warnings
                .push(format!("{}: base still stale; will retry next pass", p.key));
        }
    }
    Ok(())
}

async fn push_once<S: AsyncRead + AsyncWrite + Unpin>(
    remote: &mut Remote<S>,
    state: &mut ClientState,
    batch: Vec<Pending>,
    report: &mut SyncReport,
    retry: &mut Vec<Pending>,
) -> Result<()> {
    // Offer each new chunk once.
    let mut seen = HashSet::new();
    let mut offered: Vec<(usize, usize)> = Vec::new();
    let mut ids: Vec<ChunkId> = Vec::new();
    for (fi, p) in batch.iter().enumerate() {
        for (ci, cut) in p.new_cuts().iter().enumerate() {
            if seen.insert(cut.id) {
                offered.push((fi, ci));
                ids.push(cut.id);
            }
        }
    }
    let wanted = remote.want(&ids).await?;
    let to_send: Vec<(Arc<Vec<u8>>, Cut)> = offered
        .iter()
        .zip(&wanted)
        .filter(|(_, w)| **w)
        .map(|((fi, ci), _)| (batch[*fi].data.clone(), batch[*fi].new_cuts()[*ci]))
        .collect();
    let compressed = tokio::task::spawn_blocking(move || compress_all(to_send)).await?;
    for (cut, data) in compressed {
        report.chunks_sent += 1;
        report.bytes_new += cut.len as u64;
        report.bytes_compressed += data.len() as u64;
        remote.send_chunk(cut.id, cut.len, data).await?;
    }
    let pushes = batch
        .iter()
        .map(|p| VersionPush {
            key: p.key.to_string(),
            size: p.data.len() as u64,
            blake3: p.blake3,
            mtime_ns: p.stat.mtime_ns,
            base: p.base,
            kept: p.kept,
            chunks: p.new_cuts().iter().map(Cut::chunk_ref).collect(),
        })
        .collect();
    let checked = remote.versions_checked(pushes).await?;
    let committed = remote.commit().await?;
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
                    chunk_count: p.cuts.len() as u64,
                };
                state.record(p.key.as_str(), &file_state, p.kept, &new)?;
            }
            Err(e) if e.code == ErrorCode::StaleBase => retry.push(p),
            Err(e) => {
                report.files_failed += 1;
                report.warnings.push(format!("{}: {}", p.key, e.message));
            }
        }
    }
    Ok(())
}

fn compress_all(items: Vec<(Arc<Vec<u8>>, Cut)>) -> Vec<(Cut, Vec<u8>)> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    if items.len() < 4 || threads == 1 {
        return items
            .iter()
            .map(|(data, cut)| (*cut, hoover_chunk::compress(cut.slice(data))))
            .collect();
    }
    let per = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(data, cut)| (*cut, hoover_chunk::compress(cut.slice(data))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("compression worker panicked"))
            .collect()
    })
}
