//! Where packs live. The store reads every chunk through [`PackStore`], and the off-site copy
//! and recovery move pack bytes through it; the local directory (`packs/XX/NAME.pack`,
//! [`LocalPacks`]) is one implementation, an object store (`hoover_replica::ObjectPacks`)
//! another. Nothing outside this crate knows a pack's path.
//!
//! Packs only grow: a byte below a pack's committed length is never written again, and
//! nothing is ever deleted through this seam (a server removes only the packs no committed row
//! names, in its own directory, at start).

use std::path::{Path, PathBuf};

use crate::{fsutil, PackExtent, Result, StoreError};

/// Where packs live: put, get a range, list; no delete.
pub trait PackStore: Send + Sync {
    /// Bytes `offset..offset + len` of pack `name`.
    fn get(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Writes `bytes` at `offset` of pack `name`, creating it, durably by the time it returns.
    fn put(&self, name: &str, offset: u64, bytes: &[u8]) -> Result<()>;
    /// Every pack held, and how many bytes of it are held from its start.
    fn list(&self) -> Result<Vec<PackExtent>>;
    /// Where pack `name` is, for messages.
    fn describe(&self, name: &str) -> String;
}

/// Packs as files in a directory: `DIR/XX/NAME.pack`, `XX` the name's first two characters.
#[derive(Clone, Debug)]
pub struct LocalPacks {
    dir: PathBuf,
}

impl LocalPacks {
    /// The packs of the store at `root` (its `packs/` directory).
    pub fn of_store(root: &Path) -> LocalPacks {
        LocalPacks {
            dir: root.join("packs"),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir
            .join(&name[..2.min(name.len())])
            .join(format!("{name}.pack"))
    }

    /// Every `.pack` file in the directory, by its name (the file name without `.pack`, which
    /// need not be a pack name) and path; nothing is read or stat'ed but the directories.
    pub(crate) fn files(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut files = Vec::new();
        let shards = match std::fs::read_dir(&self.dir) {
            Ok(shards) => shards,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(e) => return Err(StoreError::io(&self.dir, e)),
        };
        for shard in shards {
            let shard = shard.map_err(|e| StoreError::io(&self.dir, e))?.path();
            if !shard.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&shard).map_err(|e| StoreError::io(&shard, e))? {
                let path = entry.map_err(|e| StoreError::io(&shard, e))?.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".pack"))
                else {
                    continue;
                };
                files.push((name.to_string(), path));
            }
        }
        Ok(files)
    }

    /// Makes every pack and directory durable (after a run of [`PackStore::put`]s that each
    /// were; a recovery calls it once more before the store's `FORMAT` is written).
    pub(crate) fn sync_all(&self) -> Result<()> {
        for dir in std::fs::read_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))? {
            let dir = dir.map_err(|e| StoreError::io(&self.dir, e))?.path();
            fsutil::sync_dir(&dir)?;
        }
        fsutil::sync_dir(&self.dir)
    }
}

impl PackStore for LocalPacks {
    fn get(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if !crate::is_pack_name(name) {
            return Err(StoreError::NotFound(format!("no pack {name:?}")));
        }
        crate::pack::read_at(&self.path(name), offset, len)
    }

    fn put(&self, name: &str, offset: u64, bytes: &[u8]) -> Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        if !crate::is_pack_name(name) {
            return Err(StoreError::NotFound(format!("no pack {name:?}")));
        }
        let path = self.path(name);
        let dir = path.parent().expect("a pack's path has a directory");
        let new_dir = !dir.exists();
        fsutil::create_dir_all(dir)?;
        let new_file = !path.exists();
        let io = |e| StoreError::io(&path, e);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_data().map_err(io)?;
        if new_file {
            fsutil::sync_dir(dir)?;
        }
        if new_dir {
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<PackExtent>> {
        let mut out = Vec::new();
        for (name, path) in self.files()? {
            if !crate::is_pack_name(&name) {
                continue;
            }
            let len = std::fs::metadata(&path)
                .map_err(|e| StoreError::io(&path, e))?
                .len();
            out.push(PackExtent { name, len });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn describe(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// Bytes a pack's records are read from: a pack where packs live ([`InPack`]), or a batch's
/// pack still in `tmp/` (its [`PathBuf`]).
pub(crate) trait Source {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// What to call it in a message.
    fn shown(&self) -> String;
}

impl Source for PathBuf {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        crate::pack::read_at(self, offset, len)
    }

    fn shown(&self) -> String {
        self.display().to_string()
    }
}

/// Pack `1` of the packs `0`.
pub(crate) struct InPack<'a>(pub &'a dyn PackStore, pub &'a str);

impl Source for InPack<'_> {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.0.get(self.1, offset, len)
    }

    fn shown(&self) -> String {
        self.0.describe(self.1)
    }
}
