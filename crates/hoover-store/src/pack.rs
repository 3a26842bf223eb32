//! Pack files: the chunks of one committed batch, back to back.
//!
//! A pack starts with [`PACK_MAGIC`]; then each chunk is a record followed by its zstd frame.
//! A piece's record, as store format 8 writes it (*bare*): its uncompressed and stored lengths
//! (u32, little-endian) and its kind code (one byte, [`crate::piece::BARE`] set); its base is
//! named by its chunk row, or found through the version that holds it. Formats 6 and 7 wrote a
//! *compact* record: the same ([`crate::piece::COMPACT`] set) and, unless the piece stands
//! alone, its base's 32-byte id. Formats 2 to 5 wrote a *full* record:
//! the chunk's own 32-byte id, the two lengths, the kind, for a piece that appends in a context
//! (format 3) the context chunk's 32-byte id, and the base's id unless the piece stands alone.
//! In both the base's id is the 32 bytes just before the frame, and which layout a record has
//! is said by its chunk row (the flag on its kind code), so packs of every layout, and a pack
//! grown past an upgrade with several, read alike. A group of chunks (format 3) is one record:
//! the id and length (u32) of each chunk in it, their count, their total length, the frame's
//! length (u32 each), the kind, then the one frame that decodes to the chunks back to back.
//! Format-1 packs ([`PACK_MAGIC_V1`]) have no kind and no base: every chunk stands alone. The
//! version log records each chunk's pack and the offset of its frame, and `verify` checks each
//! record against it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use hoover_types::ChunkId;

use crate::packs::Source;
use crate::piece::{Kind, Record};
use crate::{Result, StoreError};

/// The first bytes of every pack file this code writes.
pub(crate) const PACK_MAGIC: &[u8; 14] = b"hoover-pack 2\n";
/// The first bytes of a pack of store format 1.
pub(crate) const PACK_MAGIC_V1: &[u8; 14] = b"hoover-pack 1\n";
/// Bytes before each chunk's frame in a format-1 pack: id, raw length, stored length.
pub(crate) const RECORD_HEADER_V1: u64 = 32 + 4 + 4;

/// Bytes before a piece's frame: for a full record (formats 2 to 5) id, raw length, stored
/// length, kind, the context's id for a piece that appends in one, and the base's id unless
/// the piece stands alone; for a compact one (format 6) the lengths, the kind and the base's id
/// unless it stands alone; for a bare one (format 8) the lengths and the kind.
pub(crate) fn record_header_len(kind: Kind, record: Record) -> u64 {
    match record {
        Record::Full => RECORD_HEADER_V1 + 1 + 32 * ids_before_frame(kind, record),
        _ => COMPACT_HEADER + 32 * ids_before_frame(kind, record),
    }
}

/// A compact record's bytes before the base's id: raw length, stored length, kind code.
const COMPACT_HEADER: u64 = 4 + 4 + 1;

/// How many chunk ids a record names just before its frame: the base's, and in a full record
/// of a piece that appends ([`Kind::Appends`]) the context's before it.
pub(crate) fn ids_before_frame(kind: Kind, record: Record) -> u64 {
    match (kind, record) {
        (Kind::Alone | Kind::Grouped, _) | (_, Record::Bare) => 0,
        (Kind::Extends | Kind::Follows, _) | (Kind::Appends, Record::Compact) => 1,
        (Kind::Appends, Record::Full) => 2,
    }
}

/// Bytes just before a group's frame: the count of its chunks, their total length and the
/// frame's length (u32 each), and the kind.
pub(crate) const GROUP_TAIL: u64 = 4 + 4 + 4 + 1;
/// Bytes of one chunk in a group's list: its id and its length.
const GROUP_ENTRY: u64 = 32 + 4;

/// The chunks of a group as its record lists them: each chunk's id and length, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Group {
    pub chunks: Vec<(ChunkId, u32)>,
    /// Their total length: what the frame decodes to.
    pub len: u64,
    pub stored_len: u64,
}

impl Group {
    /// The group of `chunks` (id and length each, in order) whose frame is `stored_len` long.
    pub(crate) fn of(chunks: Vec<(ChunkId, u32)>, stored_len: u64) -> Group {
        let len = chunks.iter().map(|(_, l)| *l as u64).sum();
        Group {
            chunks,
            len,
            stored_len,
        }
    }

    /// The group's bytes: its frame decoded, exactly as long as its chunks add up to.
    pub(crate) fn decode(&self, frame: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.decode_into(frame, &mut out)?;
        Ok(out)
    }

    /// [`Group::decode`] into `out`, reusing its memory.
    pub(crate) fn decode_into(
        &self,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        hoover_chunk::decompress_exact_into(frame, self.len as usize, out)
            .map_err(|e| e.to_string())
    }

    /// What each listed chunk's row records as its stored length: its share of the frame, in
    /// proportion to its length (the last takes the rest), so that the stored lengths of the
    /// chunks add up to what the store holds.
    pub(crate) fn shares(&self) -> Vec<u64> {
        let total = self.len.max(1);
        let mut shares: Vec<u64> = self
            .chunks
            .iter()
            .map(|(_, l)| (self.stored_len as u128 * *l as u128 / total as u128) as u64)
            .collect();
        let given: u64 = shares.iter().sum();
        if let Some(last) = shares.last_mut() {
            *last += self.stored_len - given;
        }
        shares
    }

    /// The stored length a row of chunk `id` records (see [`Group::shares`]).
    pub(crate) fn share(&self, id: &ChunkId) -> Option<u64> {
        let i = self.chunks.iter().position(|(c, _)| c == id)?;
        Some(self.shares()[i])
    }

    /// Where chunk `id` lies in the group's bytes, and the chunk listed before it.
    pub(crate) fn find(&self, id: &ChunkId) -> Option<(u64, u32, Option<ChunkId>)> {
        let mut at = 0u64;
        let mut before = None;
        for (c, len) in &self.chunks {
            if c == id {
                return Some((at, *len, before));
            }
            at += *len as u64;
            before = Some(*c);
        }
        None
    }
}

/// Reads the list of the group whose frame starts at `offset`.
pub(crate) fn read_group(src: &dyn Source, offset: u64) -> Result<Group> {
    let bad = |what: &str| {
        StoreError::Corrupt(format!(
            "{}: the group record before offset {offset} {what}",
            src.shown()
        ))
    };
    if offset < PACK_MAGIC.len() as u64 + GROUP_TAIL {
        return Err(bad("does not fit in the pack"));
    }
    let start = offset - GROUP_TAIL;
    let tail = src.read_at(start, GROUP_TAIL)?;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let (count, len, stored) = (u32_at(&tail, 0) as u64, u32_at(&tail, 4), u32_at(&tail, 8));
    if tail[12] != Kind::Grouped as u8 {
        return Err(bad("is not a group"));
    }
    if count == 0 || count > hoover_types::MAX_GROUP_CHUNKS as u64 {
        return Err(bad("lists no chunks or too many"));
    }
    let list_at = start
        .checked_sub(count * GROUP_ENTRY)
        .filter(|at| *at >= PACK_MAGIC.len() as u64)
        .ok_or_else(|| bad("lists more chunks than fit in the pack"))?;
    let list = src.read_at(list_at, count * GROUP_ENTRY)?;
    let chunks: Vec<(ChunkId, u32)> = list
        .chunks(GROUP_ENTRY as usize)
        .map(|e| {
            (
                ChunkId(e[..32].try_into().expect("32 bytes")),
                u32_at(e, 32),
            )
        })
        .collect();
    let group = Group::of(chunks, stored as u64);
    if group.len != len as u64 {
        return Err(bad("has lengths that do not add up"));
    }
    if group.len > hoover_types::MAX_GROUP_BYTES as u64 {
        return Err(bad("is longer than a group may be"));
    }
    Ok(group)
}

/// Reads the group whose frame starts at `offset`: its list, and its frame.
pub(crate) fn read_group_frame(src: &dyn Source, offset: u64) -> Result<(Group, Vec<u8>)> {
    let group = read_group(src, offset)?;
    let frame = src.read_at(offset, group.stored_len)?;
    Ok((group, frame))
}

/// The chunks a piece decodes against, as its record names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bases {
    pub base: Option<ChunkId>,
    /// For [`Kind::Appends`]: the chunk before the base, whose end is part of the prefix.
    pub context: Option<ChunkId>,
}

impl Bases {
    /// Reads the ids in front of a frame (`ids`: the bytes of [`ids_before_frame`] ids).
    pub(crate) fn parse(ids: &[u8]) -> Bases {
        let id = |b: &[u8]| ChunkId(b.try_into().expect("32 bytes"));
        match ids.len() {
            32 => Bases {
                base: Some(id(ids)),
                context: None,
            },
            64 => Bases {
                base: Some(id(&ids[32..])),
                context: Some(id(&ids[..32])),
            },
            _ => Bases::default(),
        }
    }
}

/// A piece as [`PackWriter::append`] wrote it.
pub(crate) struct Appended {
    /// Where its frame starts.
    pub(crate) offset: u64,
    /// Its frame's length as written.
    pub(crate) stored_len: u64,
    /// Its kind code, as its record and its row say it.
    pub(crate) code: i64,
}

/// A pack being written in `tmp/`.
pub(crate) struct PackWriter {
    pub(crate) name: String,
    pub(crate) tmp: PathBuf,
    file: BufWriter<File>,
    len: u64,
}

impl PackWriter {
    pub(crate) fn create(tmp_dir: &Path, name: String) -> Result<PackWriter> {
        let tmp = tmp_dir.join(format!("{name}.pack"));
        let file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let mut w = PackWriter {
            name,
            tmp,
            file: BufWriter::with_capacity(1 << 20, file),
            len: 0,
        };
        w.write(PACK_MAGIC)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        crate::fsutil::injected_full_disk()
            .and_then(|()| self.file.write_all(bytes))
            .map_err(|e| StoreError::io(&self.tmp, e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Appends one piece with a bare record (its lengths and kind: its base is named by its
    /// `chunks` row, or found through its version, and an appending piece's context is what
    /// its base decodes just before its own pieces, which the caller has checked). Format 9: a
    /// frame that starts with zstd's magic number is written without it (the record's kind
    /// code says so, [`crate::piece::LEAN`]). Returns where the frame starts, how long it is as
    /// written, and its kind code.
    pub(crate) fn append(&mut self, raw_len: u32, kind: Kind, frame: &[u8]) -> Result<Appended> {
        let mut code = crate::piece::kind_code(kind, Record::Bare);
        let frame = match frame.strip_prefix(&crate::piece::ZSTD_MAGIC) {
            Some(rest) => {
                code |= crate::piece::LEAN;
                rest
            }
            None => frame,
        };
        let mut header = Vec::with_capacity(record_header_len(kind, Record::Bare) as usize);
        header.extend_from_slice(&raw_len.to_le_bytes());
        header.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        header.push(code as u8);
        self.write(&header)?;
        let offset = self.len;
        self.write(frame)?;
        Ok(Appended {
            offset,
            stored_len: frame.len() as u64,
            code,
        })
    }

    /// Appends a group: its list of chunks, then its frame; returns the offset of the frame.
    pub(crate) fn append_group(&mut self, group: &Group, frame: &[u8]) -> Result<u64> {
        let mut header =
            Vec::with_capacity(group.chunks.len() * GROUP_ENTRY as usize + GROUP_TAIL as usize);
        for (id, len) in &group.chunks {
            header.extend_from_slice(&id.0);
            header.extend_from_slice(&len.to_le_bytes());
        }
        for n in [group.chunks.len() as u64, group.len, frame.len() as u64] {
            header.extend_from_slice(&(n as u32).to_le_bytes());
        }
        header.push(Kind::Grouped as u8);
        self.write(&header)?;
        let offset = self.len;
        self.write(frame)?;
        Ok(offset)
    }

    /// How long the pack is so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Pushes buffered bytes to the file, so they can be read back.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| StoreError::io(&self.tmp, e))
    }

    /// Flushes and fsyncs; returns the temporary path, ready to be renamed into place.
    pub(crate) fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| StoreError::io(&self.tmp, e))?;
        Ok(self.tmp.clone())
    }
}

/// How long the pack that small batches are appended to may grow (format 5); past it, the
/// next batch starts a new pack.
pub(crate) const PACK_TARGET: u64 = 16 << 20;
/// A batch whose pack in `tmp/` is at most this long is appended to the growing pack instead
/// of being installed as a file of its own (format 5): most batches are a message or two, and
/// a file each cost a disk block (4 KiB) and an inode, plus a directory fsync, per version.
pub(crate) const APPEND_MAX: u64 = 1 << 20;

/// The pack small batches are appended to (format 5): the newest, while under
/// [`PACK_TARGET`].
pub(crate) struct GrowingPack {
    pub(crate) id: i64,
    pub(crate) path: PathBuf,
    /// Its committed length, as the version log records it. Bytes past it are an append
    /// whose commit did not finish: no row names them, and the next append overwrites them.
    pub(crate) size: u64,
}

impl GrowingPack {
    /// Appends the records of a batch's pack in `tmp/` (its bytes after the magic) at the
    /// committed end, cutting off what an unfinished append left there, and makes them
    /// durable. Returns how far every offset of the batch's pack moves: the records start at
    /// `size` here where they started after the magic there.
    pub(crate) fn append(&self, batch_pack: &Path) -> Result<u64> {
        use std::io::{Seek, SeekFrom};
        let records = std::fs::read(batch_pack).map_err(|e| StoreError::io(batch_pack, e))?;
        if !records.starts_with(PACK_MAGIC) {
            return Err(StoreError::Corrupt(format!(
                "{} does not start like a pack",
                batch_pack.display()
            )));
        }
        let io = |e| StoreError::io(&self.path, e);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size < self.size {
            return Err(StoreError::Corrupt(format!(
                "{} is {size} bytes long, shorter than the {} the version log records",
                self.path.display(),
                self.size
            )));
        }
        file.set_len(self.size).map_err(io)?;
        file.seek(SeekFrom::Start(self.size)).map_err(io)?;
        crate::fsutil::injected_full_disk()
            .and_then(|()| file.write_all(&records[PACK_MAGIC.len()..]))
            .map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(self.size - PACK_MAGIC.len() as u64)
    }

    /// Cuts off what an unfinished append left past the committed end (at start-up, by the
    /// store's one writer); returns how many bytes that was.
    pub(crate) fn trim(&self) -> Result<u64> {
        let io = |e| StoreError::io(&self.path, e);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size <= self.size {
            return Ok(0);
        }
        file.set_len(self.size).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(size - self.size)
    }
}

/// Reads `len` bytes at `offset` of a file.
pub(crate) fn read_at(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    // Nothing is allocated for bytes the file does not have (a damaged log's length).
    let size = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(StoreError::Corrupt(format!(
            "{}: ends before offset {offset} + {len}",
            path.display()
        )));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| StoreError::io(path, e))?;
    let mut buf = vec![0u8; len as usize];
    file.read_exact(&mut buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            StoreError::Corrupt(format!(
                "{}: ends before offset {} + {len}",
                path.display(),
                offset
            ))
        } else {
            StoreError::io(path, e)
        }
    })?;
    Ok(buf)
}

/// Checks the record header in front of a piece's frame against what the chunk index says
/// (`record`: its layout); returns the bases it names (a compact record names no context, a
/// bare one nothing).
pub(crate) fn check_header(
    src: &dyn Source,
    id: &ChunkId,
    offset: u64,
    raw_len: u64,
    stored_len: u64,
    (kind, record): (Kind, Record),
    lean: bool,
) -> std::result::Result<Bases, String> {
    let magic = src
        .read_at(0, PACK_MAGIC.len() as u64)
        .map_err(|e| e.to_string())?;
    if kind == Kind::Grouped {
        if magic != PACK_MAGIC {
            return Err(format!("{} holds no groups", src.shown()));
        }
        let group = read_group(src, offset).map_err(|e| e.to_string())?;
        return match group.find(id) {
            Some((_, len, _)) if len as u64 == raw_len && group.share(id) == Some(stored_len) => {
                Ok(Bases::default())
            }
            _ => Err(format!(
                "the group record before offset {offset} of {} does not list the chunk as the chunk index does",
                src.shown()
            )),
        };
    }
    let header_len = if magic == PACK_MAGIC_V1 {
        if kind != Kind::Alone || record != Record::Full {
            return Err(format!(
                "{} is a format-1 pack, which holds no pieces with a base",
                src.shown()
            ));
        }
        RECORD_HEADER_V1
    } else if magic == PACK_MAGIC {
        record_header_len(kind, record)
    } else {
        return Err(format!("{} does not start like a pack", src.shown()));
    };
    if offset < PACK_MAGIC.len() as u64 + header_len {
        return Err(format!("offset {offset} is inside the pack header"));
    }
    let header = src
        .read_at(offset - header_len, header_len)
        .map_err(|e| e.to_string())?;
    let (own, rest) = match record {
        Record::Full => (Some(&header[..32]), &header[32..]),
        _ => (None, &header[..]),
    };
    let raw = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as u64;
    let stored = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as u64;
    let mut ok = own.is_none_or(|own| own == id.0) && raw == raw_len && stored == stored_len;
    let mut bases = Bases::default();
    if rest.len() > 8 {
        let lean = if lean { crate::piece::LEAN } else { 0 };
        ok &= rest[8] as i64 == crate::piece::kind_code(kind, record) | lean;
        bases = Bases::parse(&rest[9..]);
    }
    if !ok {
        return Err(format!(
            "the record header at {} of {} does not match the chunk index",
            offset - header_len,
            src.shown()
        ));
    }
    Ok(bases)
}
