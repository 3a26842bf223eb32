//! Pieces: how a chunk is stored. A chunk (named by the BLAKE3 of its bytes) is one zstd frame,
//! either alone or compressed against a *base* chunk the store already holds:
//!
//! - [`Kind::Alone`]: the frame is the chunk (every chunk of store format 1 is one).
//! - [`Kind::Extends`]: the chunk is the base's bytes followed by the frame's, and the frame was
//!   compressed with the base's end as its prefix. An append re-cuts the file's last chunk; this
//!   stores only what the append added.
//! - [`Kind::Follows`]: the chunk is the frame's bytes, compressed with the base's end as its
//!   prefix (the base is the chunk before it in the file), so a new chunk costs what the
//!   preceding text does not already say.
//! - [`Kind::Appends`] (format 3): like `Extends`, but the prefix is the end of a *context*
//!   chunk (the chunk before the base in the file) followed by the base's bytes, so an append
//!   to a short last chunk (one just cut) is compressed knowing the text before it. The store
//!   takes one only when its base already decodes through the context (the base follows the
//!   context, or appends in it), so reading it decodes nothing more than an extension would.
//! - [`Kind::Grouped`] (format 3): the chunk is a slice of a group, one frame of several chunks
//!   back to back (at most [`hoover_types::MAX_GROUP_BYTES`]), which a first sync sends so that
//!   its chunks share one compression context. Reading it decodes the group.
//!
//! Reading a chunk walks back to a piece that stands alone (or to a chunk already decoded) and
//! decodes forward. Every piece's chain is bounded when it is stored: at most [`MAX_HOPS`]
//! pieces and [`MAX_DECODE_BYTES`] bytes decoded to read any chunk; a piece past either bound is
//! stored alone instead.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use hoover_types::{ChunkId, MAX_CHUNK_SIZE};

use crate::{Result, Store, StoreError, VersionAt};

pub use hoover_types::PieceKind as Kind;

/// The most pieces read to decode one chunk.
pub const MAX_HOPS: u32 = 256;
/// The most bytes decoded to read one chunk (its own and its bases'): room for a group (up to
/// [`hoover_types::MAX_GROUP_BYTES`]) and a chain of pieces after it (2 MiB; format 3 allowed
/// 2 MiB in all, with groups of 1 MiB).
pub const MAX_DECODE_BYTES: u64 = hoover_types::MAX_GROUP_BYTES as u64 + (2 << 20);

/// What reading a stored piece costs: pieces read and bytes decoded, its own included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cost {
    pub hops: u32,
    pub bytes: u64,
}

impl Cost {
    pub(crate) fn alone(len: u64) -> Cost {
        Cost {
            hops: 1,
            bytes: len,
        }
    }

    /// A chunk of a group of `len` bytes: reading it decodes the whole group.
    pub(crate) fn grouped(len: u64) -> Cost {
        Cost::alone(len)
    }

    /// The cost of a piece of `kind` and length `len` on a base of length `base_len` that
    /// costs `self`.
    pub(crate) fn on(self, kind: Kind, len: u64, base_len: u64) -> Cost {
        match kind {
            Kind::Alone => Cost::alone(len),
            Kind::Grouped => Cost::grouped(len),
            // The base's bytes are the start of this chunk: only the rest is decoded anew (an
            // appending piece's context is decoded on the way to its base).
            Kind::Extends | Kind::Appends => Cost {
                hops: self.hops + 1,
                bytes: self.bytes + len.saturating_sub(base_len),
            },
            Kind::Follows => Cost {
                hops: self.hops + 1,
                bytes: self.bytes + len,
            },
        }
    }

    pub(crate) fn within_bounds(self) -> bool {
        self.hops <= MAX_HOPS && self.bytes <= MAX_DECODE_BYTES
    }
}

/// One step of decoding: a piece's frame applied to what its base (and, for
/// [`Kind::Appends`], its context) decoded to.
pub(crate) fn apply(
    kind: Kind,
    base: Option<&[u8]>,
    context: Option<&[u8]>,
    frame: &[u8],
    len: u64,
) -> std::result::Result<Vec<u8>, String> {
    if len > MAX_CHUNK_SIZE as u64 {
        return Err(format!("a chunk of {len} bytes is over the limit"));
    }
    let out = match (kind, base) {
        (Kind::Alone, _) => hoover_chunk::decompress(frame).map_err(|e| e.to_string())?,
        (Kind::Extends | Kind::Appends, Some(base)) => {
            let rest = len
                .checked_sub(base.len() as u64)
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!(
                        "extends a base of {} bytes but is only {len} bytes long",
                        base.len()
                    )
                })?;
            let prefix = match (kind, context) {
                (Kind::Appends, Some(context)) => hoover_chunk::context_window(context, base),
                (Kind::Appends, None) => {
                    return Err("a piece that appends in a context was decoded without it".into())
                }
                _ => std::borrow::Cow::Borrowed(base),
            };
            let tail = hoover_chunk::decompress_against(&prefix, frame, rest as usize)
                .map_err(|e| e.to_string())?;
            let mut out = Vec::with_capacity(len as usize);
            out.extend_from_slice(base);
            out.extend_from_slice(&tail);
            out
        }
        (Kind::Follows, Some(base)) => hoover_chunk::decompress_against(base, frame, len as usize)
            .map_err(|e| e.to_string())?,
        (Kind::Grouped, _) => return Err("a chunk of a group is read from its group".into()),
        (_, None) => return Err("a piece with a base was decoded without it".into()),
    };
    if out.len() as u64 != len {
        return Err(format!(
            "decodes to {} bytes, {len} were recorded",
            out.len()
        ));
    }
    Ok(out)
}

/// The flag a chunk row's `kind` code carries when the piece's pack record is *compact*
/// (format 6): it names neither the chunk itself nor an appending piece's context, only the
/// base. The chunk's name is its row's key (and the BLAKE3 of what it decodes to); the context
/// of a piece that appends is what its base decodes just before its own pieces (ingest refuses
/// any other), so both were said twice.
pub(crate) const COMPACT: i64 = 0x10;

/// The flag a `kind` code carries when the piece's pack record is *bare* (format 8): its
/// lengths and kind, no id at all. Its base is in its `chunks` row, or, for an append's piece
/// that a version row holds, the chunk at its position in the version before.
pub(crate) const BARE: i64 = 0x20;

/// The flag a `kind` code carries when the piece's frame is stored without zstd's 4-byte magic
/// number (format 9: every frame starts with the same four bytes), which a reader puts back.
/// Only on bare records.
pub(crate) const LEAN: i64 = 0x40;

/// What every zstd frame starts with.
pub(crate) const ZSTD_MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();

/// Whether a `kind` code says its frame's magic number is left out ([`LEAN`]).
pub(crate) fn is_lean(code: i64) -> bool {
    code & LEAN != 0
}

/// How a piece's pack record is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// Formats 2 to 5: the chunk's id, its lengths and kind, the context's and the base's ids.
    Full,
    /// Format 6: the lengths and kind, and the base's id.
    Compact,
    /// Format 8: the lengths and kind.
    Bare,
}

/// A chunk row's `kind` code: the piece kind, and its record's layout.
pub(crate) fn kind_code(kind: Kind, record: Record) -> i64 {
    kind as u8 as i64
        | match record {
            Record::Full => 0,
            Record::Compact => COMPACT,
            Record::Bare => BARE,
        }
}

/// The piece kind and record layout a chunk row's `kind` code names; `None` for a code this
/// store does not know (a group's record is its own).
pub(crate) fn from_kind_code(code: i64) -> Option<(Kind, Record)> {
    let lean = is_lean(code);
    let code = code & !LEAN;
    let record = match code & (COMPACT | BARE) {
        0 => Record::Full,
        COMPACT => Record::Compact,
        BARE => Record::Bare,
        _ => return None,
    };
    let kind = Kind::from_code(code & !(COMPACT | BARE))?;
    (!(record != Record::Full && kind == Kind::Grouped) && (!lean || record == Record::Bare))
        .then_some((kind, record))
}

/// Where one stored piece lies and how it decodes.
#[derive(Clone, Debug)]
pub(crate) struct PieceRow {
    /// The pack's name.
    pub pack: String,
    pub offset: u64,
    pub stored_len: u64,
    pub raw_len: u64,
    pub kind: Kind,
    /// Its pack record's layout: a compact one (format 6) names the base only, a bare one
    /// (format 8) nothing.
    pub record: Record,
    /// Whether its frame is stored without its magic number ([`LEAN`], format 9).
    pub lean: bool,
    /// Its base, when its record is bare (from its `chunks` row, or the version before).
    pub base: Option<ChunkId>,
    /// The version (file id, seq) whose row holds it, when it has no `chunks` row (format 8:
    /// an append's last chunk). Its base is then the chunk at its position in the version
    /// before, which may be held by that version's row in turn.
    pub held_by: Option<VersionAt>,
}

impl PieceRow {
    /// Where its base may be held: the version before the one that holds this piece (a held
    /// piece's base is the chunk at its position there); `None` for a piece with a `chunks`
    /// row that no version held.
    pub(crate) fn base_held(&self) -> Option<VersionAt> {
        self.held_by
            .map(|(file_id, seq)| (file_id, seq.saturating_sub(1)))
    }
}

/// Decoded chunks, the newest last, within a byte budget.
pub(crate) struct Recent {
    chunks: VecDeque<(ChunkId, Arc<Vec<u8>>)>,
    bytes: usize,
    limit: usize,
}

impl Recent {
    pub(crate) fn new(limit: usize) -> Recent {
        Recent {
            chunks: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    pub(crate) fn get(&self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        self.chunks
            .iter()
            .rev()
            .find(|(r, _)| r == id)
            .map(|(_, d)| d.clone())
    }

    pub(crate) fn put(&mut self, id: ChunkId, data: Arc<Vec<u8>>) {
        if self.chunks.back().is_some_and(|(r, _)| *r == id) {
            return;
        }
        self.bytes += data.len();
        self.chunks.push_back((id, data));
        while self.bytes > self.limit && self.chunks.len() > 1 {
            if let Some((_, old)) = self.chunks.pop_front() {
                self.bytes -= old.len();
            }
        }
    }
}

/// Decodes chunks, remembering the last few so that a chain reaching one of them stops there
/// (a file's chunks are read in order, and each usually follows the one before), and using the
/// store's lately committed chunks the same way.
pub(crate) struct Decoder {
    store: Store,
    recent: Recent,
    /// Ingest may use the store's lately committed chunks (verified when they arrived);
    /// reads and `verify` always go to the disk.
    committed: bool,
    /// The groups `verify` decoded lately, from the disk itself; `None` for reads, which share
    /// the groups the store's readers decoded lately ([`DecodedGroups`]).
    own: Option<DecodedGroups>,
    /// The group decoded last (its pack and frame offset, list and bytes): a file's grouped
    /// chunks are read one after another.
    group: Option<Arc<DecodedGroup>>,
    /// The memory of a group no one reads any more, for the next group to decode into.
    spare: Vec<u8>,
}

/// A group a [`Decoder`] decoded: where its frame lies, its list and its bytes.
pub(crate) struct DecodedGroup {
    pack: String,
    offset: u64,
    group: crate::pack::Group,
    bytes: Vec<u8>,
}

/// The groups the store's readers decoded last, shared: a group holds the chunks of many small
/// files (up to [`hoover_types::MAX_GROUP_BYTES`]), and each file is read on its own (by the
/// indexer, a page, a restore), so without this each would decode the whole group again.
pub(crate) struct DecodedGroups(VecDeque<Arc<DecodedGroup>>);

/// How many decoded groups the store keeps for its readers (at most 8 MiB each).
const SHARED_GROUPS: usize = 2;

impl DecodedGroups {
    pub(crate) fn new() -> DecodedGroups {
        DecodedGroups(VecDeque::with_capacity(SHARED_GROUPS))
    }

    fn get(&self, pack: &str, offset: u64) -> Option<Arc<DecodedGroup>> {
        self.0
            .iter()
            .find(|g| g.pack == pack && g.offset == offset)
            .cloned()
    }

    /// Keeps `group`; returns the one it no longer keeps.
    fn put(&mut self, group: Arc<DecodedGroup>) -> Option<Arc<DecodedGroup>> {
        let evicted = (self.0.len() == SHARED_GROUPS)
            .then(|| self.0.pop_front())
            .flatten();
        self.0.push_back(group);
        evicted
    }
}

/// One piece of a chain being decoded: its record, its frame, its base and context (for a
/// piece that appends: as its record names it, or derived from its base), and the context's
/// bytes when its record named it.
struct Step {
    id: ChunkId,
    row: PieceRow,
    frame: Vec<u8>,
    base: Option<ChunkId>,
    /// The version whose row may hold the base (see [`PieceRow::held_by`]).
    base_held: Option<VersionAt>,
    context_id: Option<ChunkId>,
    context: Option<Arc<Vec<u8>>>,
}

/// Decoded bytes a [`Decoder`] remembers.
const RECENT_BYTES: usize = 4 << 20;

impl Decoder {
    pub(crate) fn new(store: &Store) -> Decoder {
        Decoder {
            store: store.clone(),
            recent: Recent::new(RECENT_BYTES),
            committed: false,
            own: None,
            group: None,
            spare: Vec::new(),
        }
    }

    /// A decoder for `verify`, which decodes every group from the disk.
    pub(crate) fn for_verify(store: &Store) -> Decoder {
        Decoder {
            own: Some(DecodedGroups::new()),
            ..Decoder::new(store)
        }
    }

    /// A decoder for ingest, which also uses the chunks the store committed lately.
    pub(crate) fn for_ingest(store: &Store) -> Decoder {
        Decoder {
            committed: true,
            ..Decoder::new(store)
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    fn remembered(&self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        self.recent.get(id).or_else(|| {
            self.committed
                .then(|| self.store.recent().get(id))
                .flatten()
        })
    }

    pub(crate) fn remember(&mut self, id: ChunkId, data: Arc<Vec<u8>>) {
        self.recent.put(id, data);
    }

    /// The bytes of a committed chunk, checked against its name (and `len`, when given).
    pub(crate) fn chunk(&mut self, id: &ChunkId, len: Option<u64>) -> Result<Arc<Vec<u8>>> {
        self.chunk_within(id, len, None, 0)
    }

    /// [`Decoder::chunk`] for a chunk of version `held` (file id, seq), whose row may hold it
    /// (format 8: an append's last chunk has no `chunks` row).
    pub(crate) fn chunk_in(
        &mut self,
        id: &ChunkId,
        len: Option<u64>,
        held: Option<VersionAt>,
    ) -> Result<Arc<Vec<u8>>> {
        self.chunk_within(id, len, held, 0)
    }

    /// [`Decoder::chunk`], `depth` contexts deep: an appending piece reads its context first
    /// (which ingest made sure its chain reaches anyway), so this recursion is as deep as a
    /// chain is long; a damaged store that loops is caught by the bound.
    fn chunk_within(
        &mut self,
        id: &ChunkId,
        len: Option<u64>,
        held: Option<VersionAt>,
        depth: u32,
    ) -> Result<Arc<Vec<u8>>> {
        if let Some(d) = self.remembered(id) {
            return Ok(d);
        }
        if depth > MAX_HOPS {
            return Err(StoreError::Corrupt(format!(
                "chunk {id}: its contexts nest deeper than {MAX_HOPS} pieces"
            )));
        }
        let asked = held;
        // Each piece's record is read once: its bases (from the pack) and its frame.
        let mut chain: Vec<Step> = Vec::new();
        let mut at = *id;
        let mut held = held;
        let mut start = None;
        loop {
            if chain.len() as u32 > MAX_HOPS {
                return Err(StoreError::Corrupt(format!(
                    "chunk {id}: its chain of bases is longer than {MAX_HOPS} pieces"
                )));
            }
            let (row, _) = self.store.piece_at(&at, held)?.ok_or_else(|| {
                if at == *id {
                    StoreError::Corrupt(format!("chunk {id} is named but not recorded"))
                } else {
                    StoreError::Corrupt(format!("chunk {id}: its base {at} is not recorded"))
                }
            })?;
            if row.kind == Kind::Grouped {
                start = Some(self.grouped(&at, &row)?);
                break;
            }
            let (bases, frame) = self.store.read_piece(&at, &row)?;
            // The context first: once remembered, the walk down the base's chain stops there.
            let context = match bases.context {
                Some(c) => Some(self.chunk_within(&c, None, None, depth + 1)?),
                None => None,
            };
            held = row.base_held();
            chain.push(Step {
                id: at,
                row,
                frame,
                base: bases.base,
                base_held: held,
                context_id: bases.context,
                context,
            });
            let Some(base) = bases.base else {
                break;
            };
            if let Some(d) = self.remembered(&base) {
                start = Some(d);
                break;
            }
            at = base;
        }
        // A compact record (format 6) of a piece that appends names no context: it is what the
        // piece's base decodes just before its own pieces, found from the bottom of the chain up.
        let mut needed: HashSet<ChunkId> = HashSet::new();
        let mut below: Option<Option<ChunkId>> = None;
        for step in chain.iter_mut().rev() {
            if step.row.kind == Kind::Appends && step.context_id.is_none() {
                step.context_id = match (below, step.base) {
                    (Some(after), _) => after,
                    (None, Some(base)) => self.store.decoded_after(&base, step.base_held)?,
                    (None, None) => None,
                };
                needed.extend(step.context_id);
            }
            below = Some(match step.row.kind {
                Kind::Follows => step.base,
                Kind::Appends => step.context_id,
                _ => None,
            });
        }
        // The derived contexts decoded on the way up (most are: a context is the chunk the
        // chain decodes just before the piece's base).
        let mut decoded_here: HashMap<ChunkId, Arc<Vec<u8>>> = HashMap::new();
        if let (Some(d), Some(base)) = (&start, chain.last().and_then(|s| s.base)) {
            if needed.contains(&base) {
                decoded_here.insert(base, d.clone());
            }
        }
        let mut data: Option<Arc<Vec<u8>>> = start;
        for Step {
            id: piece_id,
            row,
            frame,
            context_id,
            context,
            ..
        } in chain.into_iter().rev()
        {
            let context = match (context, context_id) {
                (Some(c), _) => Some(c),
                (None, Some(c)) if row.kind == Kind::Appends => match decoded_here.get(&c) {
                    Some(d) => Some(d.clone()),
                    None => Some(self.chunk_within(&c, None, None, depth + 1)?),
                },
                _ => None,
            };
            let out = apply(
                row.kind,
                data.as_deref().map(|d| d.as_slice()),
                context.as_deref().map(|d| d.as_slice()),
                &frame,
                row.raw_len,
            )
            .map_err(|e| StoreError::Corrupt(format!("chunk {piece_id}: {e}")))?;
            let out = Arc::new(out);
            if needed.contains(&piece_id) {
                decoded_here.insert(piece_id, out.clone());
            }
            data = Some(out);
        }
        let data = data.expect("a chain ends in a piece or a group");
        if let Some(len) = len {
            if data.len() as u64 != len {
                return Err(StoreError::Corrupt(format!(
                    "chunk {id} is {} bytes, named as {len}",
                    data.len()
                )));
            }
        }
        let actual = ChunkId::of(&data);
        // A held chunk its row no longer names (format 9) has no name to check against: the
        // reader of a whole version checks its BLAKE3.
        let unnamed = asked.is_some_and(|at| *id == crate::db::unnamed(at));
        if actual != *id && !unnamed {
            return Err(StoreError::Corrupt(format!(
                "chunk {id} decodes to bytes that hash to {actual}"
            )));
        }
        self.remember(*id, data.clone());
        Ok(data)
    }

    /// Keeps a group's memory for the next decode, when no one else reads the group.
    fn recycle(&mut self, group: Option<Arc<DecodedGroup>>) {
        if self.spare.capacity() == 0 {
            if let Some(g) = group.and_then(|g| Arc::try_unwrap(g).ok()) {
                self.spare = g.bytes;
            }
        }
    }

    /// A grouped chunk's bytes: its slice of its group, decoded (once for a run of reads, and
    /// once for the store's readers of one group's files one after another).
    fn grouped(&mut self, id: &ChunkId, row: &PieceRow) -> Result<Arc<Vec<u8>>> {
        let cached = self
            .group
            .as_ref()
            .filter(|g| g.pack == row.pack && g.offset == row.offset)
            .cloned()
            .or_else(|| match &self.own {
                Some(own) => own.get(&row.pack, row.offset),
                None => self.store.decoded_groups().get(&row.pack, row.offset),
            });
        let decoded = match cached {
            Some(g) => g,
            None => {
                let (group, frame) =
                    crate::pack::read_group_frame(&self.store.pack(&row.pack), row.offset)?;
                let corrupt = |what: String| {
                    StoreError::Corrupt(format!(
                        "chunk {id}: its group at {} of {} {what}",
                        row.offset,
                        self.store.packs().describe(&row.pack)
                    ))
                };
                if group.share(id) != Some(row.stored_len) {
                    return Err(corrupt("is not what the chunk index says".into()));
                }
                let mut bytes = std::mem::take(&mut self.spare);
                group.decode_into(&frame, &mut bytes).map_err(corrupt)?;
                let decoded = Arc::new(DecodedGroup {
                    pack: row.pack.clone(),
                    offset: row.offset,
                    group,
                    bytes,
                });
                let evicted = match &mut self.own {
                    Some(own) => own.put(decoded.clone()),
                    None => self.store.decoded_groups().put(decoded.clone()),
                };
                self.recycle(evicted);
                decoded
            }
        };
        let previous = self.group.replace(decoded.clone());
        self.recycle(previous);
        match decoded.group.find(id) {
            Some((at, len, _)) if len as u64 == row.raw_len => {
                let at = at as usize;
                Ok(Arc::new(decoded.bytes[at..at + len as usize].to_vec()))
            }
            _ => Err(StoreError::Corrupt(format!(
                "chunk {id}: its group in {} does not list it",
                self.store.packs().describe(&row.pack)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{from_kind_code, kind_code, Kind, Record, BARE, COMPACT, LEAN};

    #[test]
    fn a_kind_code_reads_back_and_a_code_no_hoover_writes_is_not_read() {
        let kinds = [
            Kind::Alone,
            Kind::Extends,
            Kind::Follows,
            Kind::Appends,
            Kind::Grouped,
        ];
        for kind in kinds {
            for record in [Record::Full, Record::Compact, Record::Bare] {
                let code = kind_code(kind, record);
                // A group's record is its own: it is never compact or bare.
                let written = kind != Kind::Grouped || record == Record::Full;
                assert_eq!(
                    from_kind_code(code),
                    written.then_some((kind, record)),
                    "{code:#x}"
                );
                // A frame without its magic number only under a bare record (format 9).
                assert_eq!(
                    from_kind_code(code | LEAN),
                    (written && record == Record::Bare).then_some((kind, record)),
                    "{:#x}",
                    code | LEAN
                );
            }
        }
        // Both record layouts at once, a kind after the last, a flag no format has.
        for code in [COMPACT | BARE, 5, 5 | BARE, 0x80, 0x80 | BARE | LEAN, -1] {
            assert_eq!(from_kind_code(code), None, "{code:#x}");
        }
    }
}
