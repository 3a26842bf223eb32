//! Offline verification: every chunk re-hashed, every version reassembled and its hash checked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use hoover_types::{ChunkId, ChunkRef};

use crate::{db, pack, Result, Store, StoreError};

/// One thing found wrong, naming the place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyProblem {
    ChunkMissing {
        id: ChunkId,
        path: String,
    },
    ChunkCorrupt {
        id: ChunkId,
        path: String,
        error: String,
    },
    VersionBroken {
        key: String,
        seq: u64,
        error: String,
    },
}

impl std::fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyProblem::ChunkMissing { id, path } => {
                write!(f, "chunk {id} is recorded but its pack {path} is missing")
            }
            VerifyProblem::ChunkCorrupt { id, path, error } => {
                write!(f, "chunk {id} in {path} is corrupt: {error}")
            }
            VerifyProblem::VersionBroken { key, seq, error } => {
                write!(f, "{key} version {seq} is broken: {error}")
            }
        }
    }
}

/// What `verify` checked and found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub chunks_checked: u64,
    pub files_checked: u64,
    pub versions_checked: u64,
    pub bytes_checked: u64,
    pub problems: Vec<VerifyProblem>,
    /// Pack files no row names, and their bytes: batches whose writer was killed between
    /// installing the pack and committing its rows. Not a problem (nothing refers to them);
    /// the server removes them when it next starts ([`Store::open`]).
    pub unreferenced_packs: u64,
    pub unreferenced_bytes: u64,
    /// Bytes past a pack's committed length (format 5): a batch appended to it whose writer
    /// was killed before its rows committed. Not a problem either; the server cuts them off
    /// when it next starts, or its next append overwrites them.
    pub uncommitted_bytes: u64,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Pack files that no `packs` row names, with their sizes: left by a writer killed between
    /// installing a batch's pack and committing its rows. The files are listed before the rows
    /// are read, and a pack is installed before its rows are written, so a pack committed
    /// meanwhile is not among them (one whose commit is in progress may be, beside a server).
    pub(crate) fn unreferenced_packs(&self) -> Result<Vec<(PathBuf, u64)>> {
        let files = self.local_packs().files()?;
        let named = db::pack_names(&self.reader())?;
        // Only the few unnamed ones are looked at further (this runs at every server start).
        files
            .into_iter()
            .filter(|(name, _)| !named.contains(name))
            .map(|(_, path)| {
                let len = std::fs::metadata(&path)
                    .map_err(|e| StoreError::io(&path, e))?
                    .len();
                Ok((path, len))
            })
            .collect()
    }

    /// Bytes past the committed length of packs that record one (format 5). A pack shorter
    /// than that is not counted here: its chunks past the end are found missing.
    fn uncommitted_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for (name, size) in db::packs(&self.reader())? {
            let Some(size) = size else { continue };
            let path = self.pack_path(&name);
            if let Ok(meta) = std::fs::metadata(&path) {
                total += meta.len().saturating_sub(size);
            }
        }
        Ok(total)
    }

    /// Checks the whole store and reports every problem, not just the first.
    ///
    /// It may run while a server commits: the versions are listed first and the chunks after.
    /// The store only grows, and a version's chunks are committed with it or before, so every
    /// chunk a listed version names is in the chunk list; versions committed meanwhile are left
    /// for the next check.
    pub fn verify(&self, mut progress: impl FnMut(&str, u64, u64)) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for (_, bytes) in self.unreferenced_packs()? {
            report.unreferenced_packs += 1;
            report.unreferenced_bytes += bytes;
        }
        report.uncommitted_bytes = self.uncommitted_bytes()?;
        let files: Vec<(i64, String)> = {
            let conn = self.reader();
            let mut stmt = conn.prepare("SELECT id, key FROM files ORDER BY key")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut listed = Vec::with_capacity(files.len());
        for (file_id, key) in files {
            let versions = db::versions_by_id(&self.reader(), file_id)?;
            listed.push((file_id, key, versions));
        }
        let chunk_rows = db::chunks_in_pack_order(&self.reader(), self.has_pieces(), self.tails())?;
        let total = chunk_rows.len() as u64;
        let mut good: HashMap<ChunkId, bool> = HashMap::new();
        // In pack order a piece's base was usually checked just before: the decoder keeps it.
        let mut decoder = crate::piece::Decoder::for_verify(self);
        for (i, row) in chunk_rows.into_iter().enumerate() {
            let Ok(id) = <[u8; 32]>::try_from(row.id) else {
                continue;
            };
            let id = ChunkId(id);
            let path = self.pack_path(&row.pack);
            let shown = path.display().to_string();
            let (offset, raw_len, stored_len) = (row.offset, row.raw_len, row.stored_len);
            let ok = if !path.exists() {
                report
                    .problems
                    .push(VerifyProblem::ChunkMissing { id, path: shown });
                false
            } else {
                let kind = crate::piece::from_kind_code(row.kind)
                    .ok_or_else(|| format!("unknown piece kind {}", row.kind));
                // A bare record's base is named by its row (format 8).
                let row_base = row.base.and_then(|b| <[u8; 32]>::try_from(b).ok());
                let checked = kind.and_then(|kind| {
                    let lean = crate::piece::is_lean(row.kind);
                    let bases =
                        pack::check_header(&path, &id, offset, raw_len, stored_len, kind, lean)?;
                    let base = bases.base.or(row_base.map(ChunkId));
                    for (what, base) in [("base", base), ("context", bases.context)] {
                        if let Some(base) = base {
                            if good.get(&base) == Some(&false) {
                                return Err(format!("its {what} {base} is damaged"));
                            }
                        }
                    }
                    decoder
                        .chunk(&id, Some(raw_len))
                        .map(drop)
                        .map_err(|e| e.to_string())
                });
                match checked {
                    Ok(()) => true,
                    Err(error) => {
                        report.problems.push(VerifyProblem::ChunkCorrupt {
                            id,
                            path: format!("{shown} at offset {offset}"),
                            error,
                        });
                        false
                    }
                }
            };
            good.insert(id, ok);
            report.chunks_checked += 1;
            progress("chunks", i as u64 + 1, total);
        }
        let total = listed.len() as u64;
        // One decoder for every version: files synced together share groups, and it keeps the
        // group it decoded last.
        for (i, (file_id, key, versions)) in listed.into_iter().enumerate() {
            report.files_checked += 1;
            // Decompressed chunks of the previous version, reused by the next one.
            let mut cache: HashMap<ChunkId, Arc<Vec<u8>>> = HashMap::new();
            for v in versions {
                report.versions_checked += 1;
                let chunks = {
                    let conn = self.reader();
                    db::chunks_in_range(&conn, self.tails(), file_id, v.seq, 0, v.chunk_count)
                };
                let result = chunks.map_err(|e| e.to_string()).and_then(|chunks| {
                    self.check_version(&chunks, &good, &mut cache, &mut decoder, file_id, &v)
                });
                match result {
                    Ok(bytes) => report.bytes_checked += bytes,
                    Err(error) => report.problems.push(VerifyProblem::VersionBroken {
                        key: key.clone(),
                        seq: v.seq,
                        error,
                    }),
                }
            }
            progress("files", i as u64 + 1, total);
        }
        Ok(report)
    }

    fn check_version(
        &self,
        chunks: &[(u64, ChunkRef)],
        good: &HashMap<ChunkId, bool>,
        cache: &mut HashMap<ChunkId, Arc<Vec<u8>>>,
        decoder: &mut crate::piece::Decoder,
        file_id: i64,
        v: &hoover_types::VersionInfo,
    ) -> std::result::Result<u64, String> {
        let (size, blake3) = (v.size, &v.blake3);
        let mut hasher = blake3::Hasher::new();
        let mut next_cache = HashMap::new();
        let mut at = 0u64;
        for (offset, chunk) in chunks {
            if *offset != at {
                return Err(format!("chunk at offset {offset} where {at} was expected"));
            }
            // A chunk with no `chunks` row is an append's last chunk, held by its version's
            // row (format 8): checked here, by decoding it (and its version's hash below).
            let held = match good.get(&chunk.id) {
                None => Some((file_id, v.seq)),
                Some(false) => return Err(format!("uses damaged chunk {}", chunk.id)),
                Some(true) => None,
            };
            let data = match cache.get(&chunk.id) {
                Some(d) => d.clone(),
                None => decoder
                    .chunk_in(&chunk.id, Some(chunk.len as u64), held)
                    .map_err(|e| e.to_string())?,
            };
            hasher.update(&data);
            at += data.len() as u64;
            next_cache.insert(chunk.id, data);
        }
        *cache = next_cache;
        if at != size {
            return Err(format!(
                "reassembles to {at} bytes, recorded size is {size}"
            ));
        }
        if hasher.finalize().as_bytes() != blake3 {
            return Err("reassembles to a different BLAKE3 than recorded".into());
        }
        Ok(at)
    }
}
