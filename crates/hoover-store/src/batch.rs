//! Ingest: a batch of new chunks and versions, verified, then committed together.
//!
//! Every chunk is checked against its name when it arrives and appended to the batch's pack in
//! `tmp/`. Every version is checked before commit: its base is the latest version, its chunks
//! are present, its size adds up, and its chunks reassemble to its claimed BLAKE3. On commit the
//! pack is made durable before the single SQLite transaction that records its chunks and the
//! versions: a small one appended to the growing pack past its committed length (fsync), a
//! large one installed as a file of its own (fsync, rename into `packs/`, fsync dir). So a
//! killed server leaves either a whole batch or none of it, plus bytes no row names (a pack, or
//! a growing pack's tail), which the next writer removes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hoover_types::{
    ChunkId, ChunkRef, Committed, Key, MAX_CHUNK_SIZE, MAX_GROUP_BYTES, MAX_GROUP_CHUNKS,
};
use rusqlite::params;

use crate::pack::{self, Bases, Group, PackWriter, PACK_MAGIC};
use crate::piece::{self, Cost, Kind, Record};
use crate::{
    db, fsutil, now_ns, HasherState, Result, Store, StoreCounts, StoreError, VersionAt,
    HASHER_CACHE_MAX,
};

/// Raw bytes of staged chunks kept in memory for version hashing; past this they are re-read.
const RAW_CACHE_LIMIT: usize = 64 * 1024 * 1024;
/// Past that, the staged chunks last decoded are kept up to this many bytes: more than a
/// chain's bound ([`crate::MAX_DECODE_BYTES`]).
const REREAD_CACHE_LIMIT: usize = 2 * crate::MAX_DECODE_BYTES as usize;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

pub use hoover_types::NewVersion;

struct Staged {
    /// Offset of the chunk's frame in the batch's pack.
    offset: u64,
    len: u32,
    stored_len: u64,
    /// Its kind code, as its record says it (a grouped chunk's: its group's).
    code: i64,
    kind: Kind,
    bases: Bases,
    /// The version whose row holds the base, when it has no `chunks` row (format 8: the base
    /// is a file's latest last chunk).
    base_held: Option<VersionAt>,
    cost: Cost,
    raw: Option<Arc<Vec<u8>>>,
    /// For a grouped chunk: where it lies in its group.
    in_group: Option<InGroup>,
}

/// Where a staged chunk lies in its group.
#[derive(Clone, Copy)]
struct InGroup {
    /// Where it starts in the group's bytes.
    at: u64,
    /// The chunk before it there.
    before: Option<ChunkId>,
}

struct Prepared {
    version: NewVersion,
    /// The latest seq when the version was checked: the new one is `latest + 1`.
    latest: Option<u64>,
    /// `Some(seq)` when the content equals that version: nothing to add.
    unchanged: Option<u64>,
    prefix_bytes: u64,
    hasher: Option<blake3::Hasher>,
}

/// The default for [`Batch::with_limit`]: about 100 MB of memory at most, and room for a
/// single new file of 16 GB (chunks average 32 KiB; the file's chunks count twice, once
/// staged and once named by its version).
pub const MAX_BATCH_ITEMS: usize = 1 << 20;

/// New chunks and versions that are committed together or not at all.
pub struct Batch {
    store: Store,
    pack: Option<PackWriter>,
    staged: HashMap<ChunkId, Staged>,
    raw_cached: usize,
    prepared: Vec<Prepared>,
    keys: HashSet<Key>,
    /// Staged chunks, plus versions and the chunks they name: what the batch holds in memory.
    items: usize,
    limit: usize,
    /// Decodes stored chunks for this batch, remembering the last few: a file's chunks are
    /// read in order, and each piece's base is usually the chunk just read.
    decoder: piece::Decoder,
    /// The same for chunks staged past [`RAW_CACHE_LIMIT`]: the last few staged or read back,
    /// so that reading a chain of them in order decodes each piece once, not its whole chain.
    reread: piece::Recent,
    /// The staged group read back last (its frame's offset and its bytes): a file's grouped
    /// chunks are read in order, so each group is decoded once, not once per chunk.
    reread_group: Option<(u64, Arc<Vec<u8>>)>,
    /// Chunks this batch's versions name that a version row holds (format 8: a file's latest
    /// last chunk), with that version: each gets its `chunks` row at commit, as a version's
    /// entry names it by id.
    named_held: HashMap<ChunkId, VersionAt>,
    /// Pieces not taken because the store does not hold their base (or context) by that name:
    /// an older last chunk held by its version row (format 8), which only a client whose
    /// record of the file is behind the server's names. A version that names one is told its
    /// base is stale, and pushes its whole chunk list.
    not_taken: HashSet<ChunkId>,
}

impl Batch {
    pub(crate) fn new(store: Store) -> Self {
        Batch {
            decoder: piece::Decoder::for_ingest(&store),
            store,
            pack: None,
            staged: HashMap::new(),
            raw_cached: 0,
            prepared: Vec::new(),
            keys: HashSet::new(),
            items: 0,
            limit: MAX_BATCH_ITEMS,
            reread: piece::Recent::new(REREAD_CACHE_LIMIT),
            reread_group: None,
            named_held: HashMap::new(),
            not_taken: HashSet::new(),
        }
    }

    /// Caps the chunks, versions and chunk references the batch may hold (each costs memory
    /// until commit); past it, [`StoreError::BatchTooLarge`].
    pub fn with_limit(mut self, items: usize) -> Self {
        self.limit = items.max(1);
        self
    }

    fn take_items(&mut self, n: usize) -> Result<()> {
        match self.items.checked_add(n) {
            Some(total) if total <= self.limit => {
                self.items = total;
                Ok(())
            }
            _ => Err(StoreError::BatchTooLarge(self.limit)),
        }
    }

    /// Checks a compressed chunk (one zstd frame that decodes on its own) against its name and
    /// length and stages it in `tmp/`.
    pub fn add_chunk(&mut self, id: ChunkId, len: u32, compressed: &[u8]) -> Result<()> {
        if self.staged.contains_key(&id) {
            return Ok(());
        }
        self.take_items(1)?;
        let raw = hoover_chunk::open_verified(&id, len as u64, compressed)
            .map_err(|e| StoreError::Refused(format!("chunk {id}: {e}")))?;
        self.stage(
            id,
            raw,
            Kind::Alone,
            (Bases::default(), None),
            Cost::alone(len as u64),
            compressed,
        )
    }

    /// Checks a piece (a frame compressed against `base`, a chunk the store holds or this batch
    /// staged, and for [`Kind::Appends`] against the end of `context` too; see [`Kind`]) against
    /// its name and length and stages it in `tmp/`. A piece that appends in a context its base
    /// does not decode through is stored as a plain extension; one whose chain of bases would
    /// be longer than the bounds ([`crate::MAX_HOPS`], [`crate::MAX_DECODE_BYTES`]) is stored
    /// on its own instead. A piece on a base (or context) the store does not hold by that name
    /// is not taken, and a version that names it is refused as stale ([`StoreError::StaleBase`]:
    /// push the whole chunk list), which is what a client whose record of the file is behind
    /// the server's does.
    pub fn add_piece(
        &mut self,
        id: ChunkId,
        len: u32,
        kind: Kind,
        base: ChunkId,
        context: Option<ChunkId>,
        frame: &[u8],
    ) -> Result<()> {
        if kind == Kind::Alone {
            return self.add_chunk(id, len, frame);
        }
        if self.staged.contains_key(&id) {
            return Ok(());
        }
        if (kind == Kind::Appends) != context.is_some() {
            return Err(StoreError::Refused(format!(
                "chunk {id}: a piece names a context if and only if it appends"
            )));
        }
        self.take_items(1)?;
        let Some((base_len, base_cost, base_held)) = self.held(&base)? else {
            self.not_taken.insert(id);
            return Ok(());
        };
        let base_bytes = self.bytes_of(&base, base_len, base_held)?;
        let context_bytes = match context {
            Some(c) => {
                let Some((context_len, _, context_held)) = self.held(&c)? else {
                    self.not_taken.insert(id);
                    return Ok(());
                };
                Some(self.bytes_of(&c, context_len, context_held)?)
            }
            None => None,
        };
        let raw = piece::apply(
            kind,
            Some(&base_bytes),
            context_bytes.as_deref().map(|c| c.as_slice()),
            frame,
            len as u64,
        )
        .map_err(|e| StoreError::Refused(format!("chunk {id}: {e}")))?;
        let actual = ChunkId::of(&raw);
        if actual != id {
            return Err(StoreError::Refused(format!(
                "chunk {id}: its bytes hash to {actual}, not to their name"
            )));
        }
        let cost = base_cost.on(kind, len as u64, base_len);
        if !cost.within_bounds() {
            // Past the bounds: the chain starts again here.
            let alone = hoover_chunk::compress_against(&[], &raw, hoover_chunk::PIECE_LEVEL);
            return self.stage(
                id,
                raw,
                Kind::Alone,
                (Bases::default(), None),
                Cost::alone(len as u64),
                &alone,
            );
        }
        let bases = Bases {
            base: Some(base),
            context,
        };
        if context.is_some() && self.decoded_after(&base, base_held)? != context {
            // Reading the base would not decode the context on the way: reading this piece
            // would cost more than its bound says. Stored as an extension of the base alone.
            let plain = hoover_chunk::piece(&raw, Some((base, &base_bytes)), None, false);
            let bases = Bases {
                base: Some(base),
                context: None,
            };
            return self.stage(id, raw, plain.kind, (bases, base_held), cost, &plain.frame);
        }
        self.stage(id, raw, kind, (bases, base_held), cost, frame)
    }

    /// The length and cost of a chunk a piece names as its base or context, staged by this
    /// batch or held by the store (and the version whose row holds it, when one does); `None`
    /// when neither.
    fn held(&self, base: &ChunkId) -> Result<Option<(u64, Cost, Option<VersionAt>)>> {
        Ok(match self.staged.get(base) {
            Some(s) => Some((s.len as u64, s.cost, None)),
            None => self
                .store
                .piece_at(base, None)?
                .map(|(row, cost)| (row.raw_len, cost, row.held_by)),
        })
    }

    /// See [`Store::decoded_after`]; also for the chunks this batch staged.
    fn decoded_after(&self, id: &ChunkId, held: Option<VersionAt>) -> Result<Option<ChunkId>> {
        match self.staged.get(id) {
            Some(s) => Ok(match s.kind {
                Kind::Follows => s.bases.base,
                Kind::Appends => s.bases.context,
                Kind::Grouped => s.in_group.and_then(|g| g.before),
                Kind::Alone | Kind::Extends => None,
            }),
            None => self.store.decoded_after(id, held),
        }
    }

    fn stage(
        &mut self,
        id: ChunkId,
        raw: Vec<u8>,
        kind: Kind,
        (bases, base_held): (Bases, Option<VersionAt>),
        cost: Cost,
        frame: &[u8],
    ) -> Result<()> {
        let len = raw.len() as u32;
        let written = self.pack()?.append(len, kind, frame)?;
        crate::fault::crash_point("store-chunk-staged");
        let staged = Staged {
            offset: written.offset,
            len,
            stored_len: written.stored_len,
            code: written.code,
            kind,
            bases,
            base_held,
            cost,
            raw: None,
            in_group: None,
        };
        self.keep(id, staged, raw);
        Ok(())
    }

    /// The batch's pack in `tmp/`, created by the first chunk.
    fn pack(&mut self) -> Result<&mut PackWriter> {
        if self.pack.is_none() {
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let seed = format!(
                "{}/{}/{n}/{}",
                now_ns(),
                std::process::id(),
                self.store.id()
            );
            let name = blake3::hash(seed.as_bytes()).to_hex()[..32].to_string();
            self.pack = Some(PackWriter::create(&self.store.root().join("tmp"), name)?);
        }
        Ok(self.pack.as_mut().expect("pack was just created"))
    }

    /// Records a staged chunk, keeping its bytes in memory while the cache has room.
    fn keep(&mut self, id: ChunkId, mut staged: Staged, raw: Vec<u8>) {
        staged.raw = if self.raw_cached + raw.len() <= RAW_CACHE_LIMIT {
            self.raw_cached += raw.len();
            Some(Arc::new(raw))
        } else {
            // The next piece is most likely to follow this chunk.
            self.reread.put(id, Arc::new(raw));
            None
        };
        self.staged.insert(id, staged);
    }

    /// Checks a group (one zstd frame of `chunks` back to back, at most
    /// [`hoover_types::MAX_GROUP_BYTES`]) against the chunks' names and lengths and stages it
    /// in `tmp/`: one record, and each chunk a slice of it.
    pub fn add_group(&mut self, chunks: &[ChunkRef], frame: &[u8]) -> Result<()> {
        let lens: Vec<u32> = chunks.iter().map(|c| c.len).collect();
        self.stage_group(&lens, Some(chunks), frame).map(|_| ())
    }

    /// Stages a group like [`Batch::add_group`] whose chunks are given by length only: each is
    /// named by the BLAKE3 of its bytes. Returns the chunks, in order.
    pub fn add_unnamed_group(&mut self, lens: &[u32], frame: &[u8]) -> Result<Vec<ChunkRef>> {
        self.stage_group(lens, None, frame)
    }

    fn stage_group(
        &mut self,
        lens: &[u32],
        names: Option<&[ChunkRef]>,
        frame: &[u8],
    ) -> Result<Vec<ChunkRef>> {
        let total: u64 = lens.iter().map(|l| *l as u64).sum();
        if lens.is_empty()
            || lens.len() > MAX_GROUP_CHUNKS
            || total > MAX_GROUP_BYTES as u64
            || lens.iter().any(|l| *l == 0 || *l as usize > MAX_CHUNK_SIZE)
        {
            return Err(StoreError::Refused(format!(
                "a group of {} chunks and {total} bytes; a group holds 1 to {MAX_GROUP_CHUNKS} chunks of 1 to {MAX_CHUNK_SIZE} bytes, at most {MAX_GROUP_BYTES} in all",
                lens.len()
            )));
        }
        self.take_items(lens.len())?;
        // The ingest thread decodes group after group: into memory it keeps (a fresh buffer of
        // up to 8 MiB for each costs page faults).
        thread_local! {
            static RAW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        RAW.with(|raw| {
            let mut raw = raw.borrow_mut();
            hoover_chunk::decompress_exact_into(frame, total as usize, &mut raw).map_err(|e| {
                StoreError::Refused(format!("a group of {} chunks: {e}", lens.len()))
            })?;
            self.stage_decoded_group(lens, names, frame, &raw)
        })
    }

    /// [`Batch::stage_group`] once its frame decoded to `raw`.
    fn stage_decoded_group(
        &mut self,
        lens: &[u32],
        names: Option<&[ChunkRef]>,
        frame: &[u8],
        raw: &[u8],
    ) -> Result<Vec<ChunkRef>> {
        let total = raw.len() as u64;
        let mut chunks = Vec::with_capacity(lens.len());
        let mut at = 0usize;
        for (i, len) in lens.iter().enumerate() {
            let bytes = &raw[at..at + *len as usize];
            let actual = ChunkId::of(bytes);
            if let Some(named) = names {
                if actual != named[i].id {
                    return Err(StoreError::Refused(format!(
                        "chunk {}: its bytes in a group hash to {actual}, not to their name",
                        named[i].id
                    )));
                }
            }
            chunks.push(ChunkRef {
                id: actual,
                len: *len,
            });
            at += *len as usize;
        }
        let list = chunks.iter().map(|c| (c.id, c.len)).collect();
        let group = Group::of(list, frame.len() as u64);
        let offset = self.pack()?.append_group(&group, frame)?;
        crate::fault::crash_point("store-chunk-staged");
        let mut at = 0u64;
        let mut before = None;
        for (c, share) in chunks.iter().zip(group.shares()) {
            let start = at as usize;
            at += c.len as u64;
            let in_group = Some(InGroup {
                at: start as u64,
                before,
            });
            before = Some(c.id);
            if self.staged.contains_key(&c.id) {
                continue;
            }
            let staged = Staged {
                offset,
                len: c.len,
                stored_len: share,
                code: piece::kind_code(Kind::Grouped, Record::Full),
                kind: Kind::Grouped,
                bases: Bases::default(),
                base_held: None,
                cost: Cost::grouped(total),
                raw: None,
                in_group,
            };
            self.keep(c.id, staged, raw[start..start + c.len as usize].to_vec());
        }
        Ok(chunks)
    }

    /// The bytes of a chunk this batch staged or the store holds (`held`: the version whose
    /// row may hold it).
    fn bytes_of(
        &mut self,
        id: &ChunkId,
        len: u64,
        held: Option<VersionAt>,
    ) -> Result<Arc<Vec<u8>>> {
        let Some(staged) = self.staged.get(id) else {
            return self.decoder.chunk_in(id, Some(len), held);
        };
        if let Some(raw) = &staged.raw {
            return Ok(raw.clone());
        }
        if let Some(raw) = self.reread.get(id) {
            return Ok(raw);
        }
        // Past the memory cache: read the frame back from the staged pack and decode it (its
        // base first, which the bounds on chains keep short).
        let (offset, stored_len, kind, bases, base_held, in_group) = (
            staged.offset,
            staged.stored_len,
            staged.kind,
            staged.bases,
            staged.base_held,
            staged.in_group,
        );
        let pack = self.pack.as_mut().expect("a staged chunk has a pack");
        pack.flush()?;
        let tmp = pack.tmp.clone();
        if let Some(InGroup { at, .. }) = in_group {
            // Its group, decoded again (once for a run of its chunks): the bytes were checked
            // when it arrived.
            let bytes = match &self.reread_group {
                Some((o, bytes)) if *o == offset => bytes.clone(),
                _ => {
                    let (group, frame) = crate::pack::read_group_frame(&tmp, offset)?;
                    let bytes = Arc::new(
                        group
                            .decode(&frame)
                            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", tmp.display())))?,
                    );
                    self.reread_group = Some((offset, bytes.clone()));
                    bytes
                }
            };
            let raw = bytes
                .get(at as usize..(at + len) as usize)
                .map(|b| Arc::new(b.to_vec()))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("{}: a group reads back short", tmp.display()))
                })?;
            self.reread.put(*id, raw.clone());
            return Ok(raw);
        }
        let frame = crate::pack::read_at(&tmp, offset, stored_len)?;
        let mut read = |b: Option<ChunkId>, held| -> Result<Option<Arc<Vec<u8>>>> {
            let Some(b) = b else {
                return Ok(None);
            };
            let (base_len, held) = match self.staged.get(&b) {
                Some(s) => (s.len as u64, None),
                None => match self.store.piece_at(&b, held)? {
                    Some((row, _)) => (row.raw_len, row.held_by),
                    None => (0, None),
                },
            };
            self.bytes_of(&b, base_len, held).map(Some)
        };
        let context_bytes = read(bases.context, None)?;
        let base_bytes = read(bases.base, base_held)?;
        let raw = piece::apply(
            kind,
            base_bytes.as_deref().map(|b| b.as_slice()),
            context_bytes.as_deref().map(|b| b.as_slice()),
            &frame,
            len,
        )
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", tmp.display())))?;
        if ChunkId::of(&raw) != *id {
            return Err(StoreError::Corrupt(format!(
                "{}: chunk {id} reads back different",
                tmp.display()
            )));
        }
        let raw = Arc::new(raw);
        self.reread.put(*id, raw.clone());
        Ok(raw)
    }

    /// The bytes of a chunk a new version names.
    fn chunk_bytes(&mut self, chunk: &ChunkRef) -> Result<Arc<Vec<u8>>> {
        let held = self.named_held.get(&chunk.id).copied();
        self.bytes_of(&chunk.id, chunk.len as u64, held)
    }

    /// Checks a version completely; it is recorded by [`Batch::commit`].
    pub fn add_version(&mut self, version: NewVersion) -> Result<()> {
        if !self.keys.insert(version.key.clone()) {
            return Err(StoreError::Refused(format!(
                "{} appears twice in one batch; commit between versions of one file",
                version.key
            )));
        }
        let key = version.key.clone();
        let items = 1 + version.chunks.len();
        if let Err(e) = self.take_items(items) {
            self.keys.remove(&key);
            return Err(e);
        }
        match self.check_version(version) {
            Ok(prepared) => {
                self.prepared.push(prepared);
                Ok(())
            }
            Err(e) => {
                // Refused: it holds nothing, so its room is given back.
                self.items -= items;
                self.keys.remove(&key);
                Err(e)
            }
        }
    }

    fn check_version(&mut self, version: NewVersion) -> Result<Prepared> {
        let key = &version.key;
        let (file_id, latest) = {
            let conn = self.store.reader();
            let file_id = db::file_id(&conn, key)?;
            let latest = match file_id {
                Some(id) => db::latest_by_id(&conn, id)?,
                None => None,
            };
            (file_id, latest)
        };
        if let Some(l) = &latest {
            if l.size == version.size && l.blake3 == version.blake3 {
                return Ok(Prepared {
                    latest: Some(l.seq),
                    unchanged: Some(l.seq),
                    prefix_bytes: 0,
                    hasher: None,
                    version,
                });
            }
        }
        match (version.base, &latest) {
            (None, _) if version.kept != 0 => {
                return Err(StoreError::Refused(format!(
                    "{key}: a version without a base cannot keep {} chunks",
                    version.kept
                )))
            }
            (None, _) => {}
            (Some(base), Some(l)) if base == l.seq => {
                if version.kept > l.chunk_count {
                    return Err(StoreError::Refused(format!(
                        "{key}: keeps {} chunks of version {base}, which has {}",
                        version.kept, l.chunk_count
                    )));
                }
            }
            (Some(base), Some(l)) => {
                return Err(StoreError::StaleBase(format!(
                    "{key}: version {base} is not the latest (the server has {}); push the whole chunk list",
                    l.seq
                )))
            }
            (Some(base), None) => {
                return Err(StoreError::StaleBase(format!(
                    "{key}: the server has no version {base}; push the whole chunk list"
                )))
            }
        }
        for chunk in &version.chunks {
            if chunk.len as usize > MAX_CHUNK_SIZE || chunk.len == 0 {
                return Err(StoreError::Refused(format!(
                    "{key}: chunk {} has length {}, outside 1..={MAX_CHUNK_SIZE}",
                    chunk.id, chunk.len
                )));
            }
        }
        let unknown: Vec<ChunkRef> = version
            .chunks
            .iter()
            .filter(|c| !self.staged.contains_key(&c.id))
            .copied()
            .collect();
        if let Some(c) = unknown.iter().find(|c| self.not_taken.contains(&c.id)) {
            return Err(StoreError::StaleBase(format!(
                "{key}: chunk {} was sent on a chunk this server does not hold by that name (the client's record of the file is behind the server's); push the whole chunk list",
                c.id
            )));
        }
        // One lookup per chunk answers both questions: is it stored, and at what length. A
        // file's latest last chunk that its version row holds (format 8) is named here by id,
        // so it gets its `chunks` row at commit.
        let mut stored: Vec<Option<u64>> = Vec::with_capacity(unknown.len());
        for c in &unknown {
            let found = self.store.chunk_len_held(&c.id)?;
            if let Some((_, Some(held))) = found {
                self.named_held.insert(c.id, held);
            }
            stored.push(found.map(|(len, _)| len));
        }
        if let Some((missing, _)) = unknown.iter().zip(&stored).find(|(_, len)| len.is_none()) {
            return Err(StoreError::Refused(format!(
                "{key}: names chunk {} that was neither sent nor stored",
                missing.id
            )));
        }
        for (chunk, len) in unknown.iter().zip(&stored) {
            if let Some(len) = *len {
                if len != chunk.len as u64 {
                    return Err(StoreError::Refused(format!(
                        "{key}: chunk {} is {len} bytes, not {}",
                        chunk.id, chunk.len
                    )));
                }
            }
        }
        for chunk in version.chunks.iter() {
            if let Some(staged) = self.staged.get(&chunk.id) {
                if staged.len != chunk.len {
                    return Err(StoreError::Refused(format!(
                        "{key}: chunk {} was sent as {} bytes, named as {}",
                        chunk.id, staged.len, chunk.len
                    )));
                }
            }
        }
        let (prefix_bytes, hasher) = match (version.base, file_id) {
            (Some(base), Some(file_id)) => {
                let prefix_bytes = {
                    let conn = self.store.reader();
                    db::prefix_bytes(&conn, self.store.tails(), file_id, base, version.kept)?
                };
                let hasher = match self.hash_append(file_id, base, prefix_bytes, &version)? {
                    Some(h) => h,
                    None => self.hash_full(Some((file_id, base)), &version)?,
                };
                (prefix_bytes, hasher)
            }
            _ => (0, self.hash_full(None, &version)?),
        };
        let new_bytes: u64 = version.chunks.iter().map(|c| c.len as u64).sum();
        if prefix_bytes + new_bytes != version.size {
            return Err(StoreError::Refused(format!(
                "{key}: chunks add up to {} bytes, but the version claims {}",
                prefix_bytes + new_bytes,
                version.size
            )));
        }
        let actual = *hasher.finalize().as_bytes();
        if actual != version.blake3 {
            return Err(StoreError::Refused(format!(
                "{key}: chunks reassemble to BLAKE3 {}, not the claimed {}",
                hex::encode(actual),
                hex::encode(version.blake3)
            )));
        }
        Ok(Prepared {
            latest: latest.map(|l| l.seq),
            unchanged: None,
            prefix_bytes,
            hasher: Some(hasher),
            version,
        })
    }

    /// Hashes the whole content: the base's kept chunks, then the new ones.
    fn hash_full(
        &mut self,
        base: Option<VersionAt>,
        version: &NewVersion,
    ) -> Result<blake3::Hasher> {
        let mut hasher = blake3::Hasher::new();
        if let Some((file_id, seq)) = base {
            let prefix = {
                let conn = self.store.reader();
                db::chunks_in_range(&conn, self.store.tails(), file_id, seq, 0, version.kept)?
            };
            for (_, chunk) in prefix {
                let len = Some(chunk.len as u64);
                hasher.update(
                    &self
                        .decoder
                        .chunk_in(&chunk.id, len, Some((file_id, seq)))?,
                );
            }
        }
        for chunk in &version.chunks {
            hasher.update(&self.chunk_bytes(chunk)?);
        }
        Ok(hasher)
    }

    /// When the base's hash state is cached and the new content starts with the base's whole
    /// content, hashes only the appended bytes: O(new bytes), not O(file size).
    fn hash_append(
        &mut self,
        file_id: i64,
        base: u64,
        prefix_bytes: u64,
        version: &NewVersion,
    ) -> Result<Option<blake3::Hasher>> {
        let (old_size, mut hasher) = {
            let cache = self.store.hashers();
            match cache.get(&file_id) {
                Some(state) if state.seq == base => (state.size, state.hasher.clone()),
                _ => return Ok(None),
            }
        };
        if old_size < prefix_bytes || old_size > version.size {
            return Ok(None);
        }
        // The base's bytes after the kept chunks must reappear unchanged at the same offset.
        let old_tail = {
            let conn = self.store.reader();
            let count = db::version(&conn, file_id, base)?
                .map(|l| l.chunk_count)
                .unwrap_or(0);
            db::chunks_in_range(
                &conn,
                self.store.tails(),
                file_id,
                base,
                version.kept,
                count,
            )?
        };
        let mut old_bytes = Vec::new();
        for (_, chunk) in old_tail {
            let len = Some(chunk.len as u64);
            old_bytes.extend_from_slice(&self.decoder.chunk_in(
                &chunk.id,
                len,
                Some((file_id, base)),
            )?);
        }
        let mut compared = 0usize;
        for chunk in &version.chunks {
            let data = self.chunk_bytes(chunk)?;
            let mut data: &[u8] = &data;
            if compared < old_bytes.len() {
                let n = data.len().min(old_bytes.len() - compared);
                if data[..n] != old_bytes[compared..compared + n] {
                    return Ok(None);
                }
                compared += n;
                data = &data[n..];
            }
            hasher.update(data);
        }
        if compared != old_bytes.len() {
            return Ok(None);
        }
        Ok(Some(hasher))
    }

    /// Makes the pack durable, then records its chunks and every checked version in one
    /// transaction.
    pub fn commit(mut self) -> Result<Vec<Committed>> {
        let staged: Vec<(ChunkId, Staged)> = self.staged.drain().collect();
        let pack = self.pack.take();
        let mut conn = self.store.conn();
        let placed = match pack {
            Some(pack) if !staged.is_empty() => Some(place(&self.store, pack)?),
            Some(pack) => {
                let _ = std::fs::remove_file(&pack.tmp);
                None
            }
            None => None,
        };
        let received_at = now_ns();
        let mut tx = conn.transaction()?;
        // The appends whose last chunk their version row holds (format 8): no `chunks` row.
        let held = self.held_tails(&tx, &staged)?;
        // What this batch adds to the store's totals, applied once it is committed.
        let mut delta = StoreCounts::default();
        let mut latest_bytes: i64 = 0;
        let mut pack_id = None;
        // How far the batch's records moved: appended to the growing pack, they start later.
        let mut shift = 0;
        if let Some(placed) = &placed {
            let id;
            (id, shift) = match placed {
                Placed::Appended { id, shift, size } => {
                    tx.prepare_cached("UPDATE packs SET size = ?2 WHERE id = ?1")?
                        .execute(params![id, *size as i64])?;
                    (*id, *shift)
                }
                Placed::Installed { name, size } => {
                    tx.prepare_cached("INSERT INTO packs(name, size) VALUES(?1, ?2)")?
                        .execute(params![name, *size as i64])?;
                    (tx.last_insert_rowid(), 0)
                }
            };
            pack_id = Some(id);
            delta.pack_bytes += match placed {
                Placed::Appended { size, shift, .. } => size - shift - PACK_MAGIC.len() as u64,
                Placed::Installed { size, .. } => *size,
            };
            for (chunk, s) in &staged {
                if held.contains(chunk) || insert_chunk(&tx, chunk, id, shift, s)? {
                    delta.chunks += 1;
                    delta.chunk_raw_bytes += s.len as u64;
                    delta.chunk_stored_bytes += s.stored_len;
                }
            }
            // A piece whose `chunks` row names its base by id, where a version row holds the
            // base (a file's latest last chunk): the base gets its `chunks` row too. (A held
            // last chunk's base is found through the version before it instead.)
            for (chunk, s) in &staged {
                if let (false, Some((file_id, seq)), Some(base)) =
                    (held.contains(chunk), s.base_held, s.bases.base)
                {
                    db::materialize_tail(&tx, file_id, seq, &base)?;
                }
            }
        }
        // So does one a version names among its chunks (an entry names it by id).
        for (id, (file_id, seq)) in &self.named_held {
            db::materialize_tail(&tx, *file_id, *seq, id)?;
        }
        // The versions go in a savepoint: when one turns out stale (another client committed a
        // version of its file since it was checked), none of them is recorded, but the chunks
        // are: they are verified, and a client that overlaps batches (`hoover sync`) may
        // already have left them out of its next batch as held.
        let chunks_only = delta.clone();
        let mut sp = tx.savepoint()?;
        let mut out = Vec::new();
        let mut new_states = Vec::new();
        let mut stale = None;
        let mut tips = Vec::new();
        let staged_by_id: HashMap<&ChunkId, &Staged> = staged.iter().map(|(c, s)| (c, s)).collect();
        for p in &self.prepared {
            let v = &p.version;
            if let Some(seq) = p.unchanged {
                out.push(Committed {
                    key: v.key.clone(),
                    seq,
                    new: false,
                });
                continue;
            }
            let file_id = db::file_id_or_create(&sp, &v.key)?;
            let previous = db::latest_by_id(&sp, file_id)?;
            let latest = previous.as_ref().map(|l| l.seq);
            // A doctor's probe is stored but not counted as a file or a version.
            if !v.key.is_probe() {
                delta.versions += 1;
                delta.version_bytes += v.size;
                match &previous {
                    Some(l) => latest_bytes += v.size as i64 - l.size as i64,
                    None => {
                        delta.files += 1;
                        latest_bytes += v.size as i64;
                    }
                }
            }
            if latest != p.latest {
                stale = Some(format!(
                    "{}: another client added a version meanwhile; push again",
                    v.key
                ));
                break;
            }
            let seq = latest.unwrap_or(0) + 1;
            let chunk_count = v.kept + v.chunks.len() as u64;
            if let Some(latest) = latest {
                // The version before names its last chunk in its row; this one may keep it.
                db::keep_tail(&sp, self.store.tails(), file_id, latest, v.kept)?;
                // Unless something named it by now, the last chunk it holds is no longer
                // named by anyone: its id goes (format 9).
                db::forget_tail(&sp, file_id, seq)?;
            }
            // A version that adds one chunk, its last (an append), names it in its row: one
            // row less per message (format 7); and holds its piece there, when it is the
            // append's new piece (format 8): no `chunks` row either.
            let tail = match &v.chunks[..] {
                [only] => Some(only.id),
                _ => None,
            };
            let piece = tail
                .filter(|id| held.contains(id))
                .and_then(|id| staged_by_id.get(&id).copied())
                .zip(pack_id);
            let held_at = piece.map(|(s, _)| s.offset + shift);
            sp.prepare_cached(
                "INSERT INTO versions(file_id, seq, size, blake3, mtime_ns, received_at_ns, chunk_count, kept, tail,
                                      tail_pack, tail_offset, tail_len, tail_stored, tail_kind, tail_hops, tail_cost)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?
            .execute(params![
                file_id,
                seq as i64,
                v.size as i64,
                &v.blake3[..],
                db::stored_mtime(v.mtime_ns, received_at),
                received_at,
                chunk_count as i64,
                v.kept as i64,
                tail.as_ref().map(|id| &id.0[..]),
                piece.map(|(_, pack)| pack),
                held_at.map(|at| at as i64),
                piece.map(|(s, _)| s.len as i64),
                piece.map(|(s, _)| s.stored_len as i64),
                piece.map(|(s, _)| s.code),
                piece.map(|(s, _)| s.cost.hops as i64),
                piece.map(|(s, _)| s.cost.bytes as i64),
            ])?;
            tips.push((file_id, seq, tail.filter(|_| piece.is_some())));
            let mut insert_entry = sp.prepare_cached(
                "INSERT INTO entries(file_id, pos, seq, chunk, offset, len) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let entries: &[ChunkRef] = match tail {
                Some(_) => &[],
                None => &v.chunks,
            };
            let mut offset = p.prefix_bytes;
            for (i, chunk) in entries.iter().enumerate() {
                insert_entry.execute(params![
                    file_id,
                    (v.kept + i as u64) as i64,
                    seq as i64,
                    &chunk.id.0[..],
                    offset as i64,
                    chunk.len as i64
                ])?;
                offset += chunk.len as u64;
            }
            if let Some(h) = &p.hasher {
                new_states.push((file_id, seq, v.size, h.clone()));
            }
            out.push(Committed {
                key: v.key.clone(),
                seq,
                new: true,
            });
        }
        if let Some(message) = stale {
            sp.rollback()?;
            drop(sp);
            // No version holds the appends' pieces: they get their `chunks` rows after all,
            // and so do their bases, which those rows name by id.
            if let Some(pack_id) = pack_id {
                for (chunk, s) in &staged {
                    if held.contains(chunk) {
                        insert_chunk(&tx, chunk, pack_id, shift, s)?;
                        if let (Some((file_id, seq)), Some(base)) = (s.base_held, s.bases.base) {
                            db::materialize_tail(&tx, file_id, seq, &base)?;
                        }
                    }
                }
            }
            tx.commit()?;
            grown(&self.store, placed, pack_id);
            self.store.add_to_counts(&chunks_only, 0);
            return Err(StoreError::StaleBase(message));
        }
        sp.commit()?;
        crate::fault::crash_point("store-rows-written");
        crate::fault::slow_point("store-rows-written");
        tx.commit()?;
        grown(&self.store, placed, pack_id);
        crate::fault::crash_point("store-committed");
        {
            let mut held_tips = self.store.tips();
            for (file_id, seq, tip) in tips {
                held_tips.set(file_id, seq, tip);
            }
        }
        self.store.add_to_counts(&delta, latest_bytes);
        {
            // The newest chunks are the likely bases of the next pieces.
            let mut recent = self.store.recent();
            for (id, s) in &staged {
                if let Some(raw) = &s.raw {
                    recent.put(*id, raw.clone());
                }
            }
        }
        self.store.publish_commit(&out);
        drop(conn);
        let mut cache = self.store.hashers();
        for (file_id, seq, size, hasher) in new_states {
            if cache.len() >= HASHER_CACHE_MAX && !cache.contains_key(&file_id) {
                // Any entry will do: a miss only costs one full hash of that file.
                if let Some(victim) = cache.keys().next().copied() {
                    cache.remove(&victim);
                }
            }
            cache.insert(file_id, HasherState { seq, size, hasher });
        }
        Ok(out)
    }
}

impl Batch {
    /// The staged pieces that the version rows will hold (format 8): each the one new chunk of
    /// a version that re-cuts its file's last chunk (the usual append), extending that chunk
    /// (so that reading it finds its base at the same position of the version before), and
    /// named by nothing else in the batch. Any other is a `chunks` row, as before.
    fn held_tails(
        &self,
        conn: &rusqlite::Connection,
        staged: &[(ChunkId, Staged)],
    ) -> Result<HashSet<ChunkId>> {
        let mut held = HashSet::new();
        if self.store.tails() != db::Tails::Held {
            return Ok(held);
        }
        let mut named: HashMap<ChunkId, u32> = HashMap::new();
        let versions = self.prepared.iter().filter(|p| p.unchanged.is_none());
        for c in versions.flat_map(|p| &p.version.chunks) {
            *named.entry(c.id).or_default() += 1;
        }
        for (_, s) in staged {
            for b in [s.bases.base, s.bases.context].into_iter().flatten() {
                *named.entry(b).or_default() += 1;
            }
        }
        let staged: HashMap<&ChunkId, &Staged> = staged.iter().map(|(c, s)| (c, s)).collect();
        for p in self.prepared.iter().filter(|p| p.unchanged.is_none()) {
            let v = &p.version;
            let ([only], Some(base)) = (&v.chunks[..], v.base) else {
                continue;
            };
            let Some(s) = staged.get(&only.id) else {
                continue;
            };
            if !matches!(s.kind, Kind::Extends | Kind::Appends) || named[&only.id] != 1 {
                continue;
            }
            let Some(file_id) = db::file_id(conn, &v.key)? else {
                continue;
            };
            let Some(before) = db::version(conn, file_id, base)? else {
                continue;
            };
            if before.chunk_count != v.kept + 1 {
                continue;
            }
            let last =
                db::chunks_in_range(conn, self.store.tails(), file_id, base, v.kept, v.kept + 1)?;
            if s.bases.base == Some(last[0].1.id) {
                held.insert(only.id);
            }
        }
        Ok(held)
    }
}

/// Writes a staged chunk's `chunks` row (its records moved by `shift` in pack `pack_id`);
/// false when the store has one already.
fn insert_chunk(
    conn: &rusqlite::Connection,
    id: &ChunkId,
    pack_id: i64,
    shift: u64,
    s: &Staged,
) -> Result<bool> {
    let added = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO chunks(id, pack, offset, raw_len, stored_len, kind, hops, cost, base)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            &id.0[..],
            pack_id,
            (s.offset + shift) as i64,
            s.len as i64,
            s.stored_len as i64,
            s.code,
            s.cost.hops as i64,
            s.cost.bytes as i64,
            s.bases.base.as_ref().map(|b| &b.0[..]),
        ])?;
    Ok(added > 0)
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(pack) = self.pack.take() {
            let _ = std::fs::remove_file(&pack.tmp);
        }
    }
}

/// Where a batch's pack went: appended to the growing pack, or installed as a file of its own.
enum Placed {
    /// Appended to pack `id` (its records moved by `shift` bytes), which is now `size` long.
    Appended { id: i64, shift: u64, size: u64 },
    /// Installed as pack `name`, `size` bytes long.
    Installed { name: String, size: u64 },
}

/// Makes a batch's pack durable where it goes: a small one at the end of the growing pack
/// (format 5), a large one (or one that would take the growing pack past
/// [`pack::PACK_TARGET`]) as a file of its own. Called under the writer's connection.
fn place(store: &Store, mut pack: PackWriter) -> Result<Placed> {
    let growing = store.growing();
    let added = pack.len() - PACK_MAGIC.len() as u64;
    if let Some(g) = growing.as_ref() {
        if pack.len() <= pack::APPEND_MAX && g.size + added <= pack::PACK_TARGET {
            let appended = pack.flush().and_then(|()| g.append(&pack.tmp));
            let _ = std::fs::remove_file(&pack.tmp);
            let shift = appended?;
            crate::fault::crash_point("store-pack-appended");
            return Ok(Placed::Appended {
                id: g.id,
                shift,
                size: g.size + added,
            });
        }
    }
    let (name, size) = (pack.name.clone(), pack.len());
    let tmp = pack.finish()?;
    let dest = store.pack_path(&name);
    install(store, &tmp, &dest)?;
    crate::fault::crash_point("store-pack-installed");
    Ok(Placed::Installed { name, size })
}

/// After the commit of a batch whose pack went to pack `id`: the growing pack is that one,
/// now longer, or the one just installed when it is under [`pack::PACK_TARGET`].
fn grown(store: &Store, placed: Option<Placed>, id: Option<i64>) {
    let (Some(placed), Some(id)) = (placed, id) else {
        return;
    };
    let mut growing = store.growing();
    match placed {
        Placed::Appended { size, .. } => {
            if let Some(g) = growing.as_mut() {
                g.size = size;
            }
        }
        Placed::Installed { name, size } => {
            *growing = (size < pack::PACK_TARGET).then(|| pack::GrowingPack {
                id,
                path: store.pack_path(&name),
                size,
            });
        }
    }
}

/// Moves a durable pack from `tmp/` into `packs/`, and makes the new name durable.
fn install(store: &Store, tmp: &std::path::Path, dest: &std::path::Path) -> Result<()> {
    let dir = dest.parent().expect("pack path has a parent");
    let new_dir = !dir.exists();
    if new_dir {
        fsutil::create_dir_all(dir)?;
    }
    std::fs::rename(tmp, dest).map_err(|e| StoreError::io(dest, e))?;
    fsutil::sync_dir(dir)?;
    if new_dir {
        fsutil::sync_dir(&store.root().join("packs"))?;
    }
    Ok(())
}
