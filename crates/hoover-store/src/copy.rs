//! What an off-site copy of the store needs from it, and how a store is built again from one.
//!
//! A copy is the packs' committed bytes and a consistent snapshot of the version log. Committed
//! bytes never change (a pack only grows past its committed length, format 5), so a copy can
//! take any pack's bytes in pieces, each once, and a snapshot of the log names only bytes that
//! were committed when it was taken. The store does not know where the copy lives (an object
//! store, another disk): `hoover-replica` moves the bytes.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::{
    db, fsutil, LocalPacks, PackStore, Result, Store, StoreError, OLDEST_SUPPORTED_FORMAT,
    STORE_FORMAT_VERSION,
};

/// A pack and how many of its bytes are committed (what the version log may name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackExtent {
    pub name: String,
    pub len: u64,
}

/// Whether `name` can be a pack's name: what the store writes (lower-case hex and `-`), so that
/// a name read from a copy never leads out of the packs directory.
pub fn is_pack_name(name: &str) -> bool {
    (2..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}

impl Store {
    /// Every recorded pack and its committed length, as the log says now.
    pub fn pack_extents(&self) -> Result<Vec<PackExtent>> {
        let packs = db::packs(&self.reader())?;
        self.extents(packs)
    }

    fn extents(&self, packs: Vec<(String, Option<u64>)>) -> Result<Vec<PackExtent>> {
        packs
            .into_iter()
            .map(|(name, size)| {
                let len = self.committed_len(&name, size)?;
                Ok(PackExtent { name, len })
            })
            .collect()
    }

    /// The pack small batches may still be appended to (the newest, while under its target
    /// length), if any. Every other pack is sealed: its committed length is final.
    pub fn open_pack(&self) -> Result<Option<String>> {
        let growing = db::growing_pack(&self.reader(), crate::pack::PACK_TARGET)?;
        Ok(growing.map(|(_, name, _)| name))
    }

    /// Writes a consistent copy of the version log to `dest` (SQLite's `VACUUM INTO`, on a
    /// connection of its own, so that no reader or writer waits for it) and returns the packs
    /// it names with their committed lengths as of that copy.
    pub fn snapshot_log(&self, dest: &Path) -> Result<Vec<PackExtent>> {
        let _ = std::fs::remove_file(dest);
        // Not a query-only connection: SQLite counts `VACUUM INTO` as a write (of `dest`).
        let conn = rusqlite::Connection::open(self.root().join("versions.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute("VACUUM INTO ?1", [dest.to_string_lossy()])?;
        drop(conn);
        let copy = db::open_reader(dest)?;
        let packs = db::packs(&copy)?;
        drop(copy);
        self.extents(packs)
    }

    /// Bytes `from..to` of pack `name`, which must be committed bytes (below its length in
    /// [`Store::pack_extents`]).
    pub fn read_pack(&self, name: &str, from: u64, to: u64) -> Result<Vec<u8>> {
        if to < from {
            return Err(StoreError::NotFound(format!(
                "no pack {name:?} bytes {from}..{to}"
            )));
        }
        self.packs().get(name, from, to - from)
    }
}

/// A store being built again from a copy: the version log first, then each pack's bytes, and
/// its `FORMAT` file last, so that a directory left half-built is never taken for a store.
pub struct Rebuild {
    root: PathBuf,
    format: u32,
    packs: Vec<PackExtent>,
}

impl Rebuild {
    /// Starts a store in `root` (missing or empty) from the version log snapshot at `log`,
    /// which is moved into place. Returns the packs the log names, with the committed length
    /// each must have.
    pub fn begin(root: &Path, log: &Path) -> Result<Rebuild> {
        fsutil::create_dir_all(root)?;
        fsutil::make_private(root);
        let non_empty = std::fs::read_dir(root)
            .map_err(|e| StoreError::io(root, e))?
            .next()
            .is_some();
        if non_empty {
            return Err(StoreError::Format {
                path: root.to_path_buf(),
                found: "a directory that is not empty (recover into a new one)".into(),
            });
        }
        let conn = db::open_reader(log)?;
        let format = db::format(&conn)?;
        if !(OLDEST_SUPPORTED_FORMAT..=STORE_FORMAT_VERSION).contains(&format) {
            return Err(StoreError::Format {
                path: log.to_path_buf(),
                found: format!("a version log of format {format}"),
            });
        }
        let named = db::packs(&conn)?;
        drop(conn);
        let mut packs = Vec::with_capacity(named.len());
        for (name, size) in named {
            if !is_pack_name(&name) {
                return Err(StoreError::Corrupt(format!(
                    "the copy's version log names a pack {name:?}, which is no pack name"
                )));
            }
            // A pack of format 4 or older records no length: all of the copy's bytes.
            packs.push(PackExtent {
                name,
                len: size.unwrap_or(u64::MAX),
            });
        }
        let dest = root.join("versions.db");
        std::fs::copy(log, &dest).map_err(|e| StoreError::io(&dest, e))?;
        File::open(&dest)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::io(&dest, e))?;
        fsutil::create_dir_all(&root.join("packs"))?;
        Ok(Rebuild {
            root: root.to_path_buf(),
            format,
            packs,
        })
    }

    /// The packs to fetch, each with the length it must have (`u64::MAX`: a pack of format 4
    /// or older, whose length the log does not record: all the copy has).
    pub fn packs(&self) -> &[PackExtent] {
        &self.packs
    }

    /// Writes `bytes` at `offset` of pack `name` (one the log names, below the length it
    /// gives), durably.
    pub fn put(&self, name: &str, offset: u64, bytes: &[u8]) -> Result<()> {
        let Some(pack) = self.packs.iter().find(|p| p.name == name) else {
            return Err(StoreError::NotFound(format!(
                "the copy's log names no pack {name}"
            )));
        };
        if offset.saturating_add(bytes.len() as u64) > pack.len {
            return Err(StoreError::Corrupt(format!(
                "pack {name} bytes {offset}..{} are past the {} the copy's log commits",
                offset + bytes.len() as u64,
                pack.len
            )));
        }
        LocalPacks::of_store(&self.root).put(name, offset, bytes)
    }

    /// Makes the packs durable and writes `FORMAT`: the directory is a store from here on.
    pub fn finish(self) -> Result<PathBuf> {
        LocalPacks::of_store(&self.root).sync_all()?;
        fsutil::write_durable(
            &self.root,
            "FORMAT",
            format!("hoover-store {}\n", self.format).as_bytes(),
        )?;
        Ok(self.root)
    }
}
