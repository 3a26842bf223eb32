//! The content-addressed store: every version of every file, forever.
//!
//! Layout (see `docs/store.md`, format version [`STORE_FORMAT_VERSION`]):
//! `FORMAT` names the format; `packs/<2 hex>/<32 hex>.pack` hold chunks, each a zstd frame named
//! by the BLAKE3 of its uncompressed bytes, a large batch's pieces in a pack of their own and
//! small batches appended to the newest pack, up to 16 MiB (format 5); `tmp/` holds
//! the pack being received; `versions.db` (SQLite, WAL) is the version log and chunk index. A version is stored as its parent's first `kept` chunks plus
//! the chunks it adds, so a version costs O(new chunks), never O(file size).
//!
//! Main type: [`Store`]; new data arrives through a [`Batch`], which verifies every chunk and
//! version before anything is committed and makes chunks durable before the version rows that
//! name them. This crate must never know about SSH, HTTP or the terminal.

mod batch;
mod bus;
mod copy;
mod db;
pub mod fault;
mod packs;
use packs::Source;
mod fsutil;
mod pack;
mod piece;
mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hoover_types::{ChunkId, ChunkRef, Key, VersionInfo};
use rusqlite::Connection;

pub use batch::{Batch, NewVersion, MAX_BATCH_ITEMS};
pub use copy::{is_pack_name, PackExtent, Rebuild};
pub use hoover_types::{Committed, FileSummary};
pub use packs::{LocalPacks, PackStore};
pub use piece::{Kind, MAX_DECODE_BYTES, MAX_HOPS};
pub use verify::{VerifyProblem, VerifyReport};

/// The on-disk format this code writes. Older stores (format 1: every chunk a frame of its
/// own; format 2: no appending pieces and no groups; format 3: groups of at most 1 MiB;
/// format 4: a pack per batch; format 5: full pack records, naming each piece and an
/// appending piece's context; format 6: every chunk of a version an `entries` row; format 7:
/// an append's last chunk a `chunks` row) are
/// migrated to it when a writer opens them; see `docs/store.md`.
pub const STORE_FORMAT_VERSION: u32 = 9;
/// A version, by its file's id and its seq: where a chunk its row holds (format 8) is found.
pub(crate) type VersionAt = (i64, u64);

/// The oldest on-disk format this code reads.
pub const OLDEST_SUPPORTED_FORMAT: u32 = 1;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("version log: {0}")]
    Db(#[from] rusqlite::Error),
    /// The client sent something the store refuses to record; nothing of it was kept.
    #[error("{0}")]
    Refused(String),
    /// The store itself is damaged at the named place.
    #[error("store corruption: {0}")]
    Corrupt(String),
    #[error("{0}")]
    NotFound(String),
    /// Where the packs live (an object store) could not be reached or refused the request.
    #[error("{0}")]
    Packs(String),
    /// The client built its version on a base that is no longer the latest; it should push the
    /// whole chunk list again.
    #[error("{0}")]
    StaleBase(String),
    /// Another process (a running `hoover serve`) holds the store's write lock.
    #[error("the store at {0} is in use by another hoover server (it holds the lock on its LOCK file): stop that one first; `hoover verify` and restores work while it runs")]
    InUse(PathBuf),
    /// The store's directory (or a file in it) cannot be written: read-only mount, owner.
    #[error("the store directory {dir} cannot be written ({path}: {cause}); the server must write there: check the directory's owner and permissions against the user hoover runs as, and whether its disk is mounted read-only")]
    NotWritable {
        dir: PathBuf,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("store at {path} has format {found}; this hoover reads formats {OLDEST_SUPPORTED_FORMAT} to {STORE_FORMAT_VERSION}: upgrade hoover")]
    Format { path: PathBuf, found: String },
    /// The batch would hold more chunks and chunk references than its limit (each costs
    /// memory until commit); nothing of it is recorded.
    #[error("the batch would hold more than {0} chunks and chunk references, the most one uncommitted batch may hold; nothing of it was recorded: commit more often (hoover's client commits every 32 MB or 512 files), or raise the server's --max-batch-chunks")]
    BatchTooLarge(usize),
    /// A store that cannot be written here, whose version log has changes still in SQLite's
    /// write-ahead log: reading them needs write access.
    #[error("the store's version log cannot be written here, and {0} holds changes not yet folded into it, which SQLite cannot read without writing: check a writable copy (`cp -a` the store elsewhere), or run this where the store can be written (the write-ahead log is folded in when a server stops cleanly)")]
    ReadOnlyWithLog(PathBuf),
}

impl StoreError {
    /// True when the disk under the store is full: nothing of the batch was recorded, and
    /// the same push works once there is space.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => {
                source.raw_os_error() == Some(28)
                    || source.kind() == std::io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The hash state after a file's latest version, so that an append is verified by hashing only
/// the new bytes.
pub(crate) struct HasherState {
    pub(crate) seq: u64,
    pub(crate) size: u64,
    pub(crate) hasher: blake3::Hasher,
}

pub(crate) const HASHER_CACHE_MAX: usize = 4096;

/// Decoded bytes of lately committed chunks kept in memory (see `StoreInner::recent`).
const RECENT_COMMITTED_BYTES: usize = 32 << 20;

/// How many of [`Store::decoded_after`]'s answers are kept (about 80 bytes each).
const DECODED_AFTER_KEPT: usize = 16_384;

/// An open store directory. Cheap to clone: clones share one open store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    root: PathBuf,
    id: String,
    /// The writer's connection: commits, migrations.
    db: Mutex<Connection>,
    /// Reads go through their own connection, so that a commit (and its fsync) does not stall
    /// the pages, `Have` lookups and ingest's checks; `None` for a store opened to read, whose
    /// one connection only reads.
    reader: Option<Mutex<Connection>>,
    hashers: Mutex<HashMap<i64, HasherState>>,
    /// The version log has the piece columns (format 2); a format-1 log opened only to be
    /// read has not, and every chunk in it stands alone.
    pieces: bool,
    /// The versions name their last chunk in their own row (format 7) and hold an append's
    /// piece there (format 8); a format-6 log opened only to be read has no such column, and
    /// every chunk in it is an entry.
    tails: db::Tails,
    /// The writer's map of each file's latest last chunk held by its version row (format 8),
    /// by id: the base the file's next append names.
    tips: Mutex<Tips>,
    /// The pack small batches are appended to (format 5), `None` until a batch starts one;
    /// taken only under the writer's connection.
    growing: Mutex<Option<pack::GrowingPack>>,
    /// Chunks committed lately, decoded: the next append's piece is decoded against one of
    /// them without walking its chain of bases.
    recent: Mutex<piece::Recent>,
    /// Groups the store's readers decoded lately.
    decoded_groups: Mutex<piece::DecodedGroups>,
    /// [`Store::decoded_after`]'s answers lately (a row never changes, so neither do they):
    /// an append's piece is checked against its base's, which otherwise walks the base's
    /// chain of compact appending pieces.
    decoded_after: Mutex<HashMap<ChunkId, Option<ChunkId>>>,
    /// The totals, counted once from the version log and then kept up to date by each commit.
    counts: Mutex<Option<StoreCounts>>,
    /// Who is told of each commit.
    bus: bus::CommitBus,
    /// Where the packs are.
    packs: LocalPacks,
    /// The lengths of packs of format 4 and older (the log has no length for them; they never
    /// change), read from their files once.
    old_pack_lens: Mutex<HashMap<String, u64>>,
    /// The open `LOCK` file whose exclusive lock makes this the store's one writer (`None`
    /// for a store opened to read beside a running server).
    _lock: Option<std::fs::File>,
}

impl Store {
    /// Opens the store at `root` as its one writer, creating it when the directory is missing
    /// or empty. Fails fast, naming the directory, when it cannot be written or when another
    /// process (a running server) has it open for writing; clears what a killed writer left
    /// in `tmp/`.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        fsutil::create_dir_all(&root)?;
        fsutil::make_private(&root);
        fsutil::check_writable(&root, &root)?;
        let format_path = root.join("FORMAT");
        match std::fs::read_to_string(&format_path) {
            Ok(text) => {
                let found = text.trim();
                let version = found
                    .strip_prefix("hoover-store ")
                    .and_then(|v| v.parse::<u32>().ok());
                match version {
                    Some(v) if (OLDEST_SUPPORTED_FORMAT..=STORE_FORMAT_VERSION).contains(&v) => {}
                    _ => {
                        return Err(StoreError::Format {
                            path: root,
                            found: found.to_string(),
                        })
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let non_empty = std::fs::read_dir(&root)
                    .map_err(|e| StoreError::io(&root, e))?
                    .next()
                    .is_some();
                if non_empty {
                    return Err(StoreError::Format {
                        path: root,
                        found: "a non-empty directory without a FORMAT file".into(),
                    });
                }
                fsutil::write_durable(
                    &root,
                    "FORMAT",
                    format!("hoover-store {STORE_FORMAT_VERSION}\n").as_bytes(),
                )?;
            }
            Err(e) => return Err(StoreError::io(&format_path, e)),
        }
        fsutil::create_dir_all(&root.join("packs"))?;
        let db_path = root.join("versions.db");
        for place in [root.join("packs"), db_path.clone()] {
            fsutil::check_writable(&root, &place)?;
        }
        let lock_path = root.join("LOCK");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::InUse(root)),
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(&lock_path, e)),
        }
        let tmp = root.join("tmp");
        // Chunks left in tmp/ by a killed writer were never committed: nothing names them.
        // (No other writer can be at work here: this one holds the lock.)
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        }
        fsutil::create_dir_all(&tmp)?;
        fsutil::check_writable(&root, &tmp)?;
        let mut conn = db::open(&db_path)?;
        let from = db::migrate(&mut conn)?;
        if from < STORE_FORMAT_VERSION {
            // The version log first: a FORMAT file that still names the old format is read
            // (and the log found migrated) by the next open.
            fsutil::write_durable(
                &root,
                "FORMAT",
                format!("hoover-store {STORE_FORMAT_VERSION}\n").as_bytes(),
            )?;
            tracing::info!(
                store = %root.display(),
                from,
                to = STORE_FORMAT_VERSION,
                "upgraded the store's format; every version stays readable"
            );
        }
        let reader = db::open_reader(&db_path)?;
        let store = Store::with_conn(root, conn, Some(lock), Some(reader))?;
        store.remove_unreferenced_packs()?;
        store.resume_growing_pack()?;
        store.load_tips()?;
        Ok(store)
    }

    /// Removes the packs of batches that never committed (see
    /// [`VerifyReport::unreferenced_packs`]). Only a writer holding the lock may: no other
    /// writer can be between installing a pack and committing it.
    fn remove_unreferenced_packs(&self) -> Result<()> {
        let (mut count, mut bytes) = (0u64, 0u64);
        for (path, len) in self.unreferenced_packs()? {
            std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            count += 1;
            bytes += len;
        }
        if count > 0 {
            tracing::info!(
                count,
                bytes,
                "removed the packs of batches that never committed (a writer was stopped mid-commit)"
            );
        }
        Ok(())
    }

    /// Finds the pack the last writer appended batches to, and cuts off what an unfinished
    /// append left past its committed end (the bytes of a batch whose rows never committed).
    fn resume_growing_pack(&self) -> Result<()> {
        let found = db::growing_pack(&self.conn(), pack::PACK_TARGET)?;
        let Some((id, name, size)) = found else {
            return Ok(());
        };
        let path = self.pack_path(&name);
        let on_disk = std::fs::metadata(&path)
            .map_err(|e| StoreError::io(&path, e))?
            .len();
        if on_disk < size {
            // Damaged: `verify` names what is lost. New batches go to a new pack.
            tracing::warn!(
                pack = %path.display(),
                on_disk,
                size,
                "the newest pack is shorter than the version log records; new batches go to a new pack"
            );
            return Ok(());
        }
        let growing = pack::GrowingPack { id, path, size };
        let cut = growing.trim()?;
        if cut > 0 {
            tracing::info!(
                pack = %growing.path.display(),
                bytes = cut,
                "cut off the bytes of a batch that never committed (a writer was stopped mid-commit)"
            );
        }
        *self.growing() = Some(growing);
        Ok(())
    }

    pub(crate) fn growing(&self) -> MutexGuard<'_, Option<pack::GrowingPack>> {
        self.inner.growing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens an existing store to read it, also while a server writes to it (`hoover verify`,
    /// `hoover reindex`): no lock is taken, nothing is created or cleared. Commits through a
    /// store opened this way are not for use beside a running server.
    ///
    /// A store this process cannot write (a backup copy, a read-only mount) is opened
    /// read-only, provided its version log has no write-ahead log to fold in
    /// ([`StoreError::ReadOnlyWithLog`]).
    pub fn open_to_read(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        if !root.join("FORMAT").exists() {
            return Err(StoreError::Format {
                path: root,
                found: "no FORMAT file (not a hoover store)".into(),
            });
        }
        let db_path = root.join("versions.db");
        let conn = match db::open(&db_path) {
            Ok(conn) => conn,
            Err(e) => {
                let writable = fsutil::check_writable(&root, &root)
                    .and_then(|()| fsutil::check_writable(&root, &db_path))
                    .is_ok();
                if writable {
                    return Err(e);
                }
                db::open_read_only(&db_path)?
            }
        };
        Store::with_conn(root, conn, None, None)
    }

    fn with_conn(
        root: PathBuf,
        conn: Connection,
        lock: Option<std::fs::File>,
        reader: Option<Connection>,
    ) -> Result<Store> {
        let id = db::store_id(&conn)?;
        let format = db::format(&conn)?;
        let (pieces, tails) = (format >= 2, db::Tails::of_format(format));
        let packs = LocalPacks::of_store(&root);
        Ok(Store {
            inner: Arc::new(StoreInner {
                root,
                id,
                db: Mutex::new(conn),
                reader: reader.map(Mutex::new),
                hashers: Mutex::new(HashMap::new()),
                decoded_after: Mutex::new(HashMap::new()),
                pieces,
                tails,
                tips: Mutex::new(Tips::default()),
                growing: Mutex::new(None),
                recent: Mutex::new(piece::Recent::new(RECENT_COMMITTED_BYTES)),
                decoded_groups: Mutex::new(piece::DecodedGroups::new()),
                counts: Mutex::new(None),
                bus: bus::CommitBus::default(),
                packs,
                old_pack_lens: Mutex::new(HashMap::new()),
                _lock: lock,
            }),
        })
    }

    /// This store's random name, fixed at creation: a client's record of what it sent is kept
    /// per store, so a replaced store gets everything again.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Calls `f` with the new versions of every batch this store commits from now on, in
    /// commit order, until `f` answers `false`. `f` runs on the committing thread while the
    /// writer's lock is held: it must only hand the news on (a channel send), never wait.
    pub fn on_commit(&self, f: impl Fn(&[Committed]) -> bool + Send + Sync + 'static) {
        self.inner.bus.subscribe(Box::new(f));
    }

    pub(crate) fn publish_commit(&self, committed: &[Committed]) {
        self.inner.bus.publish(committed);
    }

    /// The writer's connection.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.inner.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection for reads (see `StoreInner::reader`).
    pub(crate) fn reader(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .reader
            .as_ref()
            .unwrap_or(&self.inner.db)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Where the store's packs live; every chunk is read through it.
    pub fn packs(&self) -> &dyn PackStore {
        &self.inner.packs
    }

    /// The store's packs as files, for the writer and `verify`.
    pub(crate) fn local_packs(&self) -> &LocalPacks {
        &self.inner.packs
    }

    /// Pack `name`, to read its records.
    pub(crate) fn pack<'a>(&'a self, name: &'a str) -> packs::InPack<'a> {
        packs::InPack(&self.inner.packs, name)
    }

    /// The path of a pack file, for the writer (which stages, installs and appends packs as
    /// files) and for `verify`'s walk of the directory.
    pub(crate) fn pack_path(&self, name: &str) -> PathBuf {
        self.inner.packs.path(name)
    }

    /// Whether the version log has format 2's piece columns.
    pub(crate) fn has_pieces(&self) -> bool {
        self.inner.pieces
    }

    /// Which tail columns the version log has (formats 7 and 8).
    pub(crate) fn tails(&self) -> db::Tails {
        self.inner.tails
    }

    pub(crate) fn tips(&self) -> MutexGuard<'_, Tips> {
        self.inner.tips.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills the writer's map of files' latest held last chunks from the version log.
    fn load_tips(&self) -> Result<()> {
        if self.inner.tails != db::Tails::Held {
            return Ok(());
        }
        let held = db::held_tips(&self.reader())?;
        let mut tips = self.tips();
        for (id, file_id, seq) in held {
            tips.set(file_id, seq, Some(id));
        }
        Ok(())
    }

    /// How a committed chunk is stored and what reading it costs: its `chunks` row, or the
    /// version row that holds it (format 8: an append's last chunk), looked for in version
    /// `at` (the version being read, or the next one in its chain of appends) and among the
    /// files' latest versions (the writer's map).
    pub(crate) fn piece_at(
        &self,
        id: &ChunkId,
        at: Option<VersionAt>,
    ) -> Result<Option<(piece::PieceRow, piece::Cost)>> {
        // (The reader's lock is let go before the row is looked at: a held base is read too.)
        let found = db::chunk(&self.reader(), id, self.inner.pieces, self.inner.tails)?;
        if let Some(row) = found {
            let (kind, record) = Self::kind_of(id, row.kind)?;
            let cost = piece::Cost {
                hops: row.hops,
                bytes: row.cost,
            };
            let base = match (record, kind, row.base, row.held_by) {
                (piece::Record::Bare, Kind::Alone, _, _) => None,
                (piece::Record::Bare, _, Some(base), _) => {
                    Some(db::chunk_id(base, || format!("chunk {id}: its base"))?)
                }
                (piece::Record::Bare, _, None, Some(held)) => Some(self.held_base(id, held, None)?),
                (piece::Record::Bare, _, None, None) => {
                    return Err(StoreError::Corrupt(format!(
                        "chunk {id}: neither its record nor its row names its base"
                    )))
                }
                _ => None,
            };
            let row = piece::PieceRow {
                pack: row.pack,
                offset: row.offset,
                stored_len: row.stored_len,
                raw_len: row.raw_len,
                kind,
                record,
                lean: piece::is_lean(row.kind),
                base,
                held_by: row.held_by,
            };
            return Ok(Some((row, cost)));
        }
        if self.inner.tails != db::Tails::Held {
            return Ok(None);
        }
        let tip = self.tips().get(id);
        for (file_id, seq) in [at, tip].into_iter().flatten() {
            let tail = db::version_tail(&self.reader(), self.inner.tails, file_id, seq)?;
            let Some((tail, held)) = tail.and_then(|t| t.piece.clone().map(|p| (t, p))) else {
                continue;
            };
            // A row that forgot its chunk's id (format 9) is read where a reader says the
            // chunk is (its version); the writer's record of a file's latest names it.
            let here = at == Some((file_id, seq));
            if !tail.id.map_or(here, |named| named == *id) {
                continue;
            }
            let (kind, record) = Self::kind_of(id, held.kind)?;
            let cost = piece::Cost {
                hops: held.hops,
                bytes: held.cost,
            };
            let base = match (record, kind) {
                (piece::Record::Bare, Kind::Extends | Kind::Appends) => {
                    Some(self.held_base(id, (file_id, seq), Some(tail.pos))?)
                }
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "file {file_id} version {seq}: its row holds a piece of kind {}",
                        held.kind
                    )))
                }
            };
            let row = piece::PieceRow {
                pack: held.pack,
                offset: held.offset,
                stored_len: held.stored_len,
                raw_len: tail.len,
                kind,
                record,
                lean: piece::is_lean(held.kind),
                base,
                held_by: Some((file_id, seq)),
            };
            return Ok(Some((row, cost)));
        }
        Ok(None)
    }

    /// The base of a piece that version `held` held in its row (format 8): the chunk at its
    /// position (`pos`, the version's last, read when not given) in the version before.
    fn held_base(
        &self,
        id: &ChunkId,
        (file_id, seq): VersionAt,
        pos: Option<u64>,
    ) -> Result<ChunkId> {
        let conn = self.reader();
        let pos = match pos {
            Some(pos) => pos,
            None => match db::version_tail(&conn, self.inner.tails, file_id, seq)? {
                Some(t) if t.id.is_none_or(|named| named == *id) => t.pos,
                _ => {
                    return Err(StoreError::Corrupt(format!(
                    "chunk {id}: held by file {file_id} version {seq}, whose row does not name it"
                )))
                }
            },
        };
        let before = seq.checked_sub(1).filter(|s| *s > 0).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "chunk {id}: held by a first version, it has no base"
            ))
        })?;
        let found = db::chunks_in_range(&conn, self.inner.tails, file_id, before, pos, pos + 1)?;
        Ok(found[0].1.id)
    }

    fn kind_of(id: &ChunkId, code: i64) -> Result<(Kind, piece::Record)> {
        piece::from_kind_code(code).ok_or_else(|| {
            StoreError::Corrupt(format!("chunk {id} has an unknown piece kind {code}"))
        })
    }

    /// How a committed chunk is stored: its piece kind, and the pieces and bytes decoded to
    /// read it (at most [`MAX_HOPS`] and [`MAX_DECODE_BYTES`]).
    pub fn chunk_piece(&self, id: &ChunkId) -> Result<Option<(Kind, u32, u64)>> {
        Ok(self
            .piece_at(id, None)?
            .map(|(row, cost)| (row.kind, cost.hops, cost.bytes)))
    }

    /// Reads one stored piece in one read: the bases its pack record names (in the 32 or 64
    /// bytes before its frame; none when it stands alone; a compact record of a piece that
    /// appends names no context: see [`Store::decoded_after`]) and its frame.
    pub(crate) fn read_piece(
        &self,
        id: &ChunkId,
        row: &piece::PieceRow,
    ) -> Result<(pack::Bases, Vec<u8>)> {
        let ids_len = 32 * pack::ids_before_frame(row.kind, row.record);
        let mut bytes = self
            .packs()
            .get(
                &row.pack,
                row.offset.saturating_sub(ids_len),
                ids_len + row.stored_len,
            )
            .map_err(|e| match e {
                StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    StoreError::Corrupt(format!(
                        "chunk {id}: its pack {} is missing",
                        self.packs().describe(&row.pack)
                    ))
                }
                other => other,
            })?;
        let mut frame = bytes.split_off(ids_len as usize);
        if row.lean {
            // Format 9: stored without zstd's magic number, which every frame starts with.
            frame.splice(0..0, piece::ZSTD_MAGIC);
        }
        let bases = match row.record {
            piece::Record::Bare => pack::Bases {
                base: row.base,
                context: None,
            },
            _ => pack::Bases::parse(&bytes),
        };
        Ok((bases, frame))
    }

    /// The chunk whose bytes a committed chunk's chain decodes just before its own pieces: the
    /// base of a piece that follows, the context of one that appends, the chunk before it in
    /// its group; `None` otherwise. An appending piece may name a chunk as context only if its
    /// base has that one here, so a compact record (format 6) leaves its context out and it is
    /// found here, through the base (and the base's base, while they append too).
    /// `held`: the version whose row may hold the chunk (see [`Store::piece_at`]).
    pub(crate) fn decoded_after(
        &self,
        id: &ChunkId,
        held: Option<VersionAt>,
    ) -> Result<Option<ChunkId>> {
        let mut at = *id;
        let mut held = held;
        let mut hops = 0;
        let found = loop {
            // The base's answer, when known, is this one's (an append on an append).
            if let Some(found) = self.decoded_after_known().get(&at).copied() {
                break found;
            }
            let Some((row, _)) = self.piece_at(&at, held)? else {
                // Not (yet) committed: nothing to remember.
                return Ok(None);
            };
            held = row.base_held();
            if row.kind == piece::Kind::Grouped {
                // Reading it decodes its group, the chunk listed before it included.
                let group = pack::read_group(&self.pack(&row.pack), row.offset)?;
                break group.find(&at).and_then(|(_, _, before)| before);
            }
            if !matches!(row.kind, piece::Kind::Follows | piece::Kind::Appends) {
                break None;
            }
            let (bases, _) = self.read_piece(
                &at,
                &piece::PieceRow {
                    stored_len: 0,
                    ..row.clone()
                },
            )?;
            match (row.kind, bases.base, bases.context) {
                (piece::Kind::Follows, base, _) => break base,
                (_, _, Some(context)) => break Some(context),
                (_, Some(base), None) if hops < piece::MAX_HOPS => {
                    // What this piece's base decodes just before its own pieces.
                    at = base;
                    hops += 1;
                }
                _ => {
                    return Err(StoreError::Corrupt(format!(
                    "chunk {id}: the context of its appending pieces is not found within {} pieces",
                    piece::MAX_HOPS
                )))
                }
            }
        };
        let mut known = self.decoded_after_known();
        if known.len() >= DECODED_AFTER_KEPT {
            known.clear();
        }
        known.insert(*id, found);
        Ok(found)
    }

    /// Reads committed chunks as zstd frames that decode on their own (what a restore sends),
    /// remembering recent chunks so that a file read in order decodes each piece once.
    pub fn frame_reader(&self) -> FrameReader {
        FrameReader {
            decoder: piece::Decoder::new(self),
            version: None,
            named: None,
            previous: None,
            group: None,
        }
    }

    /// One version's ordered chunk list, and a [`FrameReader`] for them (which finds an
    /// append's last chunk where the version's row holds it).
    pub fn version_frames(&self, key: &Key, seq: u64) -> Result<(Vec<ChunkRef>, FrameReader)> {
        let (file_id, mut chunks) = self.version_chunks_of(key, seq)?;
        let mut reader = self.frame_reader();
        reader.version = Some((file_id, seq));
        reader.named = self.name_unnamed(&mut reader.decoder, (file_id, seq), &mut chunks)?;
        Ok((chunks, reader))
    }

    /// Names the held chunk of version `at` whose row no longer names it (format 9: its key is
    /// [`db::unnamed`]), in `chunks`, its chunk list, by decoding and hashing it: a client
    /// checks what it restores against real names. Returns (name, key) when there was one.
    fn name_unnamed(
        &self,
        decoder: &mut piece::Decoder,
        at: VersionAt,
        chunks: &mut [ChunkRef],
    ) -> Result<Option<(ChunkId, ChunkId)>> {
        let key = db::unnamed(at);
        let Some(last) = chunks.last_mut().filter(|c| c.id == key) else {
            return Ok(None);
        };
        let data = decoder.chunk_in(&key, Some(last.len as u64), Some(at))?;
        last.id = ChunkId::of(&data);
        Ok(Some((last.id, key)))
    }

    /// Reads a committed chunk and checks it against its name and length.
    pub fn read_chunk(&self, chunk: &ChunkRef) -> Result<Vec<u8>> {
        let data = piece::Decoder::new(self).chunk(&chunk.id, Some(chunk.len as u64))?;
        Ok(Arc::unwrap_or_clone(data))
    }

    /// Starts a batch of new chunks and versions, committed together.
    pub fn batch(&self) -> Batch {
        Batch::new(self.clone())
    }

    pub(crate) fn recent(&self) -> MutexGuard<'_, piece::Recent> {
        self.inner.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn decoded_groups(&self) -> MutexGuard<'_, piece::DecodedGroups> {
        self.inner
            .decoded_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn hashers(&self) -> MutexGuard<'_, HashMap<i64, HasherState>> {
        self.inner.hashers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decoded_after_known(&self) -> MutexGuard<'_, HashMap<ChunkId, Option<ChunkId>>> {
        self.inner
            .decoded_after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Which of `ids` the store holds (committed and durable): a chunk with a `chunks` row, or
    /// a file's latest last chunk held by its version row (format 8), which a client may name.
    pub fn has_chunks(&self, ids: &[ChunkId]) -> Result<Vec<bool>> {
        let mut found = db::has_chunks(&self.reader(), ids)?;
        let tips = self.tips();
        for (f, id) in found.iter_mut().zip(ids) {
            *f = *f || tips.get(id).is_some();
        }
        Ok(found)
    }

    /// The uncompressed length of a committed chunk.
    pub fn chunk_len(&self, id: &ChunkId) -> Result<Option<u64>> {
        Ok(self.chunk_len_held(id)?.map(|(len, _)| len))
    }

    /// The uncompressed length of a committed chunk, and the version whose row holds it when
    /// it has no `chunks` row (a file's latest last chunk, format 8).
    pub(crate) fn chunk_len_held(&self, id: &ChunkId) -> Result<Option<(u64, Option<VersionAt>)>> {
        if let Some(len) = db::chunk_len(&self.reader(), id)? {
            return Ok(Some((len, None)));
        }
        Ok(self
            .piece_at(id, None)?
            .map(|(row, _)| (row.raw_len, row.held_by)))
    }

    /// The latest version of `key`, if any.
    pub fn latest(&self, key: &Key) -> Result<Option<VersionInfo>> {
        let conn = self.reader();
        db::latest(&conn, key)
    }

    /// Every version of `key`, oldest first.
    pub fn versions(&self, key: &Key) -> Result<Vec<VersionInfo>> {
        let conn = self.reader();
        db::versions(&conn, key)
    }

    /// The ordered chunk list of one version.
    pub fn version_chunks(&self, key: &Key, seq: u64) -> Result<Vec<ChunkRef>> {
        let (file_id, mut chunks) = self.version_chunks_of(key, seq)?;
        let mut decoder = piece::Decoder::new(self);
        self.name_unnamed(&mut decoder, (file_id, seq), &mut chunks)?;
        Ok(chunks)
    }

    /// The file's id and the ordered chunk list of one version.
    fn version_chunks_of(&self, key: &Key, seq: u64) -> Result<(i64, Vec<ChunkRef>)> {
        let conn = self.reader();
        let file_id = db::file_id(&conn, key)?
            .ok_or_else(|| StoreError::NotFound(format!("no file with key {key}")))?;
        let info = db::version(&conn, file_id, seq)?.ok_or_else(|| {
            StoreError::NotFound(format!("{key} has no version {seq}; see `hoover versions`"))
        })?;
        let chunks =
            db::chunks_in_range(&conn, self.inner.tails, file_id, seq, 0, info.chunk_count)?;
        Ok((file_id, chunks.into_iter().map(|(_, c)| c).collect()))
    }

    /// Records that `key` was deleted on its source after its latest version. Returns false
    /// when the key is unknown or its deletion is already recorded. Nothing is removed.
    pub fn record_deletion(&self, key: &Key, at_ns: i64) -> Result<bool> {
        let conn = self.conn();
        let Some(file_id) = db::file_id(&conn, key)? else {
            return Ok(false);
        };
        let Some(latest) = db::latest_by_id(&conn, file_id)? else {
            return Ok(false);
        };
        db::record_deletion(&conn, file_id, latest.seq, at_ns, now_ns())
    }

    /// Every recorded deletion of `key`, oldest first.
    pub fn deletions(&self, key: &Key) -> Result<Vec<hoover_types::Deletion>> {
        let conn = self.reader();
        match db::file_id(&conn, key)? {
            Some(file_id) => db::deletions(&conn, file_id),
            None => Ok(Vec::new()),
        }
    }

    /// Files whose key starts with `prefix`, in key order, after `after`, at most `limit`.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FileSummary>> {
        let conn = self.reader();
        db::list(&conn, prefix, after, limit)
    }

    /// Reassembles one version into `out`, checking every chunk and the whole-content hash.
    pub fn read_version(&self, key: &Key, seq: u64, out: &mut impl std::io::Write) -> Result<()> {
        let info = self
            .versions(key)?
            .into_iter()
            .find(|v| v.seq == seq)
            .ok_or_else(|| StoreError::NotFound(format!("{key} has no version {seq}")))?;
        let mut hasher = blake3::Hasher::new();
        let mut decoder = piece::Decoder::new(self);
        let (file_id, chunks) = self.version_chunks_of(key, seq)?;
        for chunk in chunks {
            let data = decoder.chunk_in(&chunk.id, Some(chunk.len as u64), Some((file_id, seq)))?;
            hasher.update(&data);
            out.write_all(&data)
                .map_err(|e| StoreError::io(Path::new("<output>"), e))?;
        }
        if *hasher.finalize().as_bytes() != info.blake3 {
            return Err(StoreError::Corrupt(format!(
                "{key} version {seq} does not reassemble to its recorded hash"
            )));
        }
        Ok(())
    }

    /// Every source (the first part of the keys: one per laptop) with its totals, by name.
    /// One pass over the version log; the web page's `/sources`.
    pub fn sources(&self) -> Result<Vec<SourceSummary>> {
        db::sources(&self.reader())
    }

    /// One version of `key`, if it exists.
    pub fn version(&self, key: &Key, seq: u64) -> Result<Option<VersionInfo>> {
        let conn = self.reader();
        match db::file_id(&conn, key)? {
            Some(id) => db::version(&conn, id, seq),
            None => Ok(None),
        }
    }

    /// How many leading bytes version `seq` shares, chunk for chunk, with version `seq - 1`.
    pub fn kept_bytes(&self, key: &Key, seq: u64) -> Result<u64> {
        let conn = self.reader();
        let file_id = db::file_id(&conn, key)?
            .ok_or_else(|| StoreError::NotFound(format!("no file with key {key}")))?;
        let kept = db::kept(&conn, file_id, seq)?
            .ok_or_else(|| StoreError::NotFound(format!("{key} has no version {seq}")))?;
        db::prefix_bytes(&conn, self.inner.tails, file_id, seq, kept)
    }

    /// Whether version `seq` begins with the first `len` bytes of version `seq - 1` (an
    /// append, as far as `len` goes). The chunks the two share say most of it; the rest,
    /// usually part of one chunk that the append re-cut, is compared byte for byte.
    pub fn extends_previous(&self, key: &Key, seq: u64, len: u64) -> Result<bool> {
        if seq < 2 {
            return Ok(false);
        }
        let kept = self.kept_bytes(key, seq)?;
        if kept >= len {
            return Ok(true);
        }
        let read = |seq: u64| -> Result<Vec<u8>> {
            let mut out = Vec::new();
            for piece in self.read_range(key, seq, kept, Some(len))? {
                out.extend_from_slice(&piece?);
            }
            Ok(out)
        };
        let (old, new) = (read(seq - 1)?, read(seq)?);
        Ok(old.len() as u64 == len - kept && old == new)
    }

    /// The bytes `from..to` (`to` = the end when `None`) of one version, a chunk at a time, each
    /// chunk checked against its name. Only the chunks holding those bytes are read, so reading
    /// the appended tail of a big file costs the tail.
    pub fn read_range(
        &self,
        key: &Key,
        seq: u64,
        from: u64,
        to: Option<u64>,
    ) -> Result<RangeReader> {
        let conn = self.reader();
        let file_id = db::file_id(&conn, key)?
            .ok_or_else(|| StoreError::NotFound(format!("no file with key {key}")))?;
        let info = db::version(&conn, file_id, seq)?
            .ok_or_else(|| StoreError::NotFound(format!("{key} has no version {seq}")))?;
        let to = to.unwrap_or(info.size).min(info.size);
        if from >= to {
            return Ok(RangeReader {
                decoder: piece::Decoder::new(self),
                version: (file_id, seq),
                chunks: Vec::new(),
                next: 0,
                from,
                to,
            });
        }
        // Binary search for the chunk holding byte `from`: the last position whose offset <= from.
        let (mut lo, mut hi) = (0u64, info.chunk_count);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let (offset, _) =
                db::chunks_in_range(&conn, self.inner.tails, file_id, seq, mid, mid + 1)?[0];
            if offset <= from {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let mut chunks = Vec::new();
        let mut pos = lo;
        // Fetch in pages so a read of a huge version does not hold its whole chunk list.
        while pos < info.chunk_count {
            let page = db::chunks_in_range(
                &conn,
                self.inner.tails,
                file_id,
                seq,
                pos,
                (pos + 256).min(info.chunk_count),
            )?;
            pos += page.len() as u64;
            let mut past = false;
            for (offset, chunk) in page {
                if offset >= to {
                    past = true;
                    break;
                }
                chunks.push((offset, chunk));
            }
            if past {
                break;
            }
        }
        Ok(RangeReader {
            decoder: piece::Decoder::new(self),
            version: (file_id, seq),
            chunks,
            next: 0,
            from,
            to,
        })
    }

    /// Totals over the store: files, versions, chunks, bytes. The first call counts them from
    /// the version log; later calls are answered from memory, kept current by every commit.
    pub fn counts(&self) -> Result<StoreCounts> {
        if let Some(c) = &*self.inner.counts.lock().expect("counts lock") {
            return Ok(c.clone());
        }
        // Counted once, with the writer's lock first, as commits take it: no commit runs
        // while counting, so none is missed or counted twice.
        let conn = self.conn();
        let mut cached = self.inner.counts.lock().expect("counts lock");
        if let Some(c) = &*cached {
            return Ok(c.clone());
        }
        let mut c = db::counts(&conn)?;
        c.pack_bytes = self.pack_bytes(&conn)?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// The committed bytes of every pack: the log's record of each (format 5), or the pack
    /// file's length (older packs, each written once; a missing one counts nothing). Stats
    /// the old packs once, when the totals are first counted.
    fn pack_bytes(&self, conn: &Connection) -> Result<u64> {
        let mut total = 0;
        for (name, size) in db::packs(conn)? {
            // A missing pack file counts nothing here; `verify` is the one that reports it.
            total += self.committed_len(&name, size).unwrap_or(0);
        }
        Ok(total)
    }

    /// How many bytes of pack `name` are committed, given its length in the log: that length,
    /// or for a pack of format 4 or older (never appended to, no length in the log) all of its
    /// file, read once and then remembered.
    pub(crate) fn committed_len(&self, name: &str, logged: Option<u64>) -> Result<u64> {
        if let Some(len) = logged {
            return Ok(len);
        }
        let mut lens = self.inner.old_pack_lens.lock().expect("pack lengths lock");
        if let Some(&len) = lens.get(name) {
            return Ok(len);
        }
        let path = self.pack_path(name);
        let len = std::fs::metadata(&path)
            .map_err(|e| StoreError::io(&path, e))?
            .len();
        lens.insert(name.to_string(), len);
        Ok(len)
    }

    /// When the newest version was received (ns since the epoch); `None` for an empty store.
    pub fn newest_received(&self) -> Result<Option<i64>> {
        db::newest_received(&self.reader())
    }

    /// The totals, and what the store takes on disk.
    pub fn size(&self) -> Result<StoreSize> {
        let counts = self.counts()?;
        // The version log: `versions.db` and its write-ahead log.
        let log_bytes = ["versions.db", "versions.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(self.root().join(f)).ok())
            .map(|m| m.len())
            .sum();
        Ok(StoreSize { counts, log_bytes })
    }

    /// Adds a committed batch to the cached totals. Called with the version log locked.
    pub(crate) fn add_to_counts(&self, delta: &StoreCounts, latest_bytes: i64) {
        if let Some(c) = &mut *self.inner.counts.lock().expect("counts lock") {
            c.files += delta.files;
            c.versions += delta.versions;
            c.chunks += delta.chunks;
            c.chunk_raw_bytes += delta.chunk_raw_bytes;
            c.chunk_stored_bytes += delta.chunk_stored_bytes;
            c.pack_bytes += delta.pack_bytes;
            c.version_bytes += delta.version_bytes;
            c.latest_bytes = c.latest_bytes.saturating_add_signed(latest_bytes);
        }
    }
}

/// See [`Store::frame_reader`].
pub struct FrameReader {
    decoder: piece::Decoder,
    /// The version read (file id, seq), when known: where an append's last chunk is held.
    version: Option<VersionAt>,
    /// The version's held last chunk that its row no longer names: its name, and the key it
    /// is read by (format 9).
    named: Option<(ChunkId, ChunkId)>,
    /// The chunk read before, in this stream.
    previous: Option<ChunkId>,
    /// The group sent last in this stream (its pack, frame offset and list).
    group: Option<(String, u64, pack::Group)>,
}

/// A chunk as a restore sends it.
pub enum Frame {
    /// A zstd frame that decodes on its own.
    Alone(Vec<u8>),
    /// A zstd frame compressed with the previous chunk of the stream as its prefix.
    FollowsPrevious(Vec<u8>),
    /// A slice of a group: of this group's frame (whose bytes are `len` long), sent first when
    /// the chunk is not in the group sent before in this stream.
    FromGroup {
        group: Option<(u32, Vec<u8>)>,
        at: u32,
    },
}

impl FrameReader {
    /// The next chunk of a stream for a client of protocol 1.`minor`: as stored when its piece
    /// stands alone, or (from 1.2) when it follows the chunk read before, or (from 1.3) as a
    /// slice of its group, sent as stored when the client takes a group that long (a group
    /// over 1 MiB only from 1.5); else decoded and compressed anew.
    pub fn frame(&mut self, chunk: &ChunkRef, minor: u16) -> Result<Frame> {
        let follows_ok = minor >= 2;
        let previous = self.previous.replace(chunk.id);
        let chunk = &match self.named {
            Some((name, key)) if name == chunk.id => ChunkRef { id: key, ..*chunk },
            _ => *chunk,
        };
        let store = self.decoder.store().clone();
        let (row, _) = store.piece_at(&chunk.id, self.version)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "chunk {} is named by a version but not recorded",
                chunk.id
            ))
        })?;
        let group_limit = hoover_types::max_group_bytes(minor) as u64;
        let group = if row.kind == piece::Kind::Grouped && minor >= 3 {
            let same = self
                .group
                .as_ref()
                .filter(|(pack, offset, _)| *pack == row.pack && *offset == row.offset);
            match same {
                Some((_, _, group)) => Some((group.clone(), None)),
                None => {
                    let src = store.pack(&row.pack);
                    let group = pack::read_group(&src, row.offset)?;
                    if group.len <= group_limit {
                        let frame = src.read_at(row.offset, group.stored_len)?;
                        let len = group.len as u32;
                        Some((group, Some((len, frame))))
                    } else {
                        None
                    }
                }
            }
        } else {
            None
        };
        if let Some((group, frame)) = group {
            let (at, len, _) = group.find(&chunk.id).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "chunk {}: its group in {} does not list it",
                    chunk.id,
                    store.packs().describe(&row.pack)
                ))
            })?;
            if len != chunk.len {
                return Err(StoreError::Corrupt(format!(
                    "chunk {} is {len} bytes in its group, named as {}",
                    chunk.id, chunk.len
                )));
            }
            self.group = Some((row.pack.clone(), row.offset, group));
            return Ok(Frame::FromGroup {
                group: frame,
                at: at as u32,
            });
        }
        let follows = row.kind == piece::Kind::Follows && follows_ok;
        if row.kind == piece::Kind::Alone || follows {
            let (bases, frame) = store.read_piece(&chunk.id, &row)?;
            if row.kind == piece::Kind::Alone {
                return Ok(Frame::Alone(frame));
            }
            if bases.base.is_some() && bases.base == previous {
                return Ok(Frame::FollowsPrevious(frame));
            }
        }
        // Any other piece (a grouped chunk, for an older client or one whose limit the group
        // is over, from its group, decoded once for a run of its chunks): decoded and
        // compressed anew.
        let len = Some(chunk.len as u64);
        let data = self.decoder.chunk_in(&chunk.id, len, self.version)?;
        Ok(Frame::Alone(hoover_chunk::compress(&data)))
    }
}

/// The chunks of a byte range of one version; yields the range's bytes, a chunk at a time.
pub struct RangeReader {
    decoder: piece::Decoder,
    /// The file's id and the version's seq.
    version: VersionAt,
    chunks: Vec<(u64, ChunkRef)>,
    next: usize,
    from: u64,
    to: u64,
}

impl Iterator for RangeReader {
    type Item = Result<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        let (offset, chunk) = *self.chunks.get(self.next)?;
        self.next += 1;
        let len = Some(chunk.len as u64);
        let data = match self.decoder.chunk_in(&chunk.id, len, Some(self.version)) {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        let start = self.from.saturating_sub(offset).min(data.len() as u64) as usize;
        let end = (self.to - offset).min(data.len() as u64) as usize;
        Some(Ok(if start == 0 && end == data.len() {
            Arc::unwrap_or_clone(data)
        } else {
            data[start..end].to_vec()
        }))
    }
}

/// One source's totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSummary {
    pub name: String,
    pub files: u64,
    pub versions: u64,
    pub version_bytes: u64,
    /// When its latest version arrived, nanoseconds since the Unix epoch.
    pub last_received_ns: i64,
}

/// Totals over the whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub files: u64,
    pub versions: u64,
    pub chunks: u64,
    pub chunk_raw_bytes: u64,
    /// The chunks' frames: what the pieces take, without their pack records.
    pub chunk_stored_bytes: u64,
    /// The packs' committed bytes: frames and pack records. With the version log's
    /// ([`Store::size`]), what the store takes on disk (its search index aside).
    pub pack_bytes: u64,
    /// The sizes of every version added up: what keeping each version whole would take.
    pub version_bytes: u64,
    /// The sizes of each file's latest version added up.
    pub latest_bytes: u64,
}

/// The totals, and what the store takes on disk ([`Store::size`]).
#[derive(Clone, Debug, Default)]
pub struct StoreSize {
    pub counts: StoreCounts,
    /// The version log's bytes: `versions.db` and its write-ahead log.
    pub log_bytes: u64,
}

impl StoreSize {
    /// What the store takes on disk, its search index aside: packs and version log.
    pub fn store_bytes(&self) -> u64 {
        self.counts.pack_bytes + self.log_bytes
    }

    /// Every version whole over the store on disk, or `None` for an empty store.
    pub fn kept_ratio(&self) -> Option<f64> {
        let store = self.store_bytes();
        (store > 0).then(|| self.counts.version_bytes as f64 / store as f64)
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Each file's latest last chunk that its version row holds (format 8), both ways: a new
/// piece names its base by id, and each commit replaces its file's entry.
#[derive(Default)]
pub(crate) struct Tips {
    by_id: HashMap<ChunkId, VersionAt>,
    by_file: HashMap<i64, ChunkId>,
}

impl Tips {
    /// The file and version whose row holds chunk `id`, when it is a file's latest.
    pub(crate) fn get(&self, id: &ChunkId) -> Option<VersionAt> {
        self.by_id.get(id).copied()
    }

    /// Version `seq`, now the file's latest, holds `held` (or nothing) in its row.
    pub(crate) fn set(&mut self, file_id: i64, seq: u64, held: Option<ChunkId>) {
        if let Some(old) = self.by_file.remove(&file_id) {
            if self.by_id.get(&old).is_some_and(|(f, _)| *f == file_id) {
                self.by_id.remove(&old);
            }
        }
        if let Some(id) = held {
            self.by_file.insert(file_id, id);
            self.by_id.insert(id, (file_id, seq));
        }
    }
}
