//! Content-defined chunking, BLAKE3 naming and capped zstd: pure functions over byte slices.
//!
//! The chunker cuts with FastCDC (sizes in `hoover_types`), so an append or a local edit changes
//! only the chunks around it. `decompress` never allocates past [`MAX_CHUNK_SIZE`], so a zstd
//! bomb is an error, not an out-of-memory. This crate must never touch files or async.

use hoover_types::{ChunkId, ChunkRef, PieceKind, CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, MAX_CHUNK_SIZE};

/// A cut chunk: where it lies in the input, and its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub offset: u64,
    pub len: u32,
    pub id: ChunkId,
}

impl Cut {
    pub fn chunk_ref(&self) -> ChunkRef {
        ChunkRef {
            id: self.id,
            len: self.len,
        }
    }

    /// The bytes of this chunk within the buffer it was cut from.
    pub fn slice<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        let start = self.offset as usize;
        &data[start..start + self.len as usize]
    }
}

/// Cuts `data` into content-defined chunks and names each by BLAKE3. `base_offset` is added to
/// every offset, so a tail can be cut on its own and still carry file offsets.
pub fn cut(data: &[u8], base_offset: u64) -> Vec<Cut> {
    if data.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(data, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
        .map(|c| {
            let bytes = &data[c.offset..c.offset + c.length];
            Cut {
                offset: base_offset + c.offset as u64,
                len: c.length as u32,
                id: ChunkId::of(bytes),
            }
        })
        .collect()
}

/// The zstd level used for chunks: fast, and most of the gain on JSON text.
pub const ZSTD_LEVEL: i32 = 1;

thread_local! {
    // Contexts are reused per thread: creating one costs about as much as compressing a chunk.
    static COMPRESSOR: std::cell::RefCell<zstd::bulk::Compressor<'static>> = std::cell::RefCell::new(
        zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd compression context"),
    );
    static DECOMPRESSOR: std::cell::RefCell<zstd::bulk::Decompressor<'static>> = std::cell::RefCell::new(
        zstd::bulk::Decompressor::new().expect("zstd decompression context"),
    );
}

/// Compresses one chunk.
pub fn compress(data: &[u8]) -> Vec<u8> {
    COMPRESSOR.with(|c| {
        c.borrow_mut()
            .compress(data)
            .expect("zstd compression of an in-memory buffer")
    })
}

/// How much of a base chunk a piece is compressed against: its last bytes, up to this many.
pub const PREFIX_WINDOW: usize = 64 * 1024;

/// The zstd level of pieces (store format 2): 3, fast enough for a first sync.
pub const PIECE_LEVEL: i32 = 3;

/// The zstd level of every piece of a change ([`piece`]: what an append adds to a file's last
/// chunk, and the chunks after it). A first sync's groups stay at [`PIECE_LEVEL`], where the
/// client compresses at 200-250 MB/s per core; a change is mostly one message. Measured on
/// the real sessions, each line compressed against the 64 KiB before it: the lines under
/// 16 KiB (3,900 of them) take 0.35 ms each at 9 and 4-5 ms from 11 up (loading the prefix
/// into the slower match finders), for 3% less at 19; the 142 lines of 16 KiB and more
/// (7.5 MB, half the corpus) store 3.0% less at 9 than at 3 (77 KB) for 1.5 ms each (35 MB/s),
/// 1.0% less again at 19 for 14 ms.
pub const CHANGE_LEVEL: i32 = 9;

/// The part of a base a piece is compressed against: its last [`PREFIX_WINDOW`] bytes, as
/// zstd raw content. (A window that began with zstd's dictionary magic would be read as a
/// formatted dictionary; it starts one byte later instead, on both sides.)
fn window(prefix: &[u8]) -> &[u8] {
    const DICTIONARY_MAGIC: [u8; 4] = 0xEC30_A437u32.to_le_bytes();
    let w = &prefix[prefix.len().saturating_sub(PREFIX_WINDOW)..];
    if w.starts_with(&DICTIONARY_MAGIC) {
        &w[1..]
    } else {
        w
    }
}

thread_local! {
    static PIECE_COMPRESSOR: std::cell::RefCell<zstd::zstd_safe::CCtx<'static>> =
        std::cell::RefCell::new(zstd::zstd_safe::CCtx::create());
    static PIECE_DECOMPRESSOR: std::cell::RefCell<zstd::zstd_safe::DCtx<'static>> =
        std::cell::RefCell::new(zstd::zstd_safe::DCtx::create());
}

/// Compresses `parts`, back to back, as one zstd frame at `level` (a group of chunks): the
/// frame [`compress_against`] makes of their concatenation with no prefix. They are gathered
/// in `scratch`, which the caller keeps from group to group: a group is up to 8 MiB, and a fresh
/// buffer that size for each costs page faults (110,000 more in a first sync of 1.1 GB). (Streaming
/// them through a zstd context instead needs no buffer, but its window slides in steps and
/// the frames came out 0.8% larger.)
pub fn compress_parts(parts: &[&[u8]], level: i32, scratch: &mut Vec<u8>) -> Vec<u8> {
    scratch.clear();
    for part in parts {
        scratch.extend_from_slice(part);
    }
    compress_against(&[], scratch, level)
}

/// Compresses `data` as one zstd frame that may refer back into `prefix` (the bytes that
/// precede it: the end of the chunk it extends, or of the chunk before it in the file); only
/// what `prefix` does not already hold costs. The frame decodes only with the same prefix
/// ([`decompress_against`]). An empty prefix is plain compression.
pub fn compress_against(prefix: &[u8], data: &[u8], level: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
    PIECE_COMPRESSOR.with(|c| {
        c.borrow_mut()
            .compress_using_dict(&mut out, data, window(prefix), level)
            .expect("zstd compression into a buffer of compress_bound bytes")
    });
    out
}

/// Decompresses a frame made by [`compress_against`] with the same `prefix`, never producing
/// more than `max` bytes (a bomb or a frame that is not what it claims is an error).
pub fn decompress_against(prefix: &[u8], frame: &[u8], max: usize) -> Result<Vec<u8>, ChunkError> {
    let mut out = Vec::with_capacity(max);
    decompress_into(prefix, frame, &mut out)?;
    Ok(out)
}

/// Decompresses `frame` (made with `prefix`) into `out`, which it fills from the start and
/// never past its capacity: the caller's bound.
fn decompress_into(prefix: &[u8], frame: &[u8], out: &mut Vec<u8>) -> Result<(), ChunkError> {
    PIECE_DECOMPRESSOR.with(|d| {
        d.borrow_mut()
            .decompress_using_dict(out, frame, window(prefix))
            .map(drop)
            .map_err(|code| {
                ChunkError::Decompress(zstd::zstd_safe::get_error_name(code).to_string())
            })
    })
}

/// Decompresses a frame that stands alone and must decode to exactly `len` bytes (a group of
/// chunks); never produces more.
pub fn decompress_exact(frame: &[u8], len: usize) -> Result<Vec<u8>, ChunkError> {
    let mut out = Vec::new();
    decompress_exact_into(frame, len, &mut out)?;
    Ok(out)
}

/// [`decompress_exact`] into `out` (cleared first), whose memory is reused: a group is up to
/// 8 MiB, and a fresh buffer that size for each costs page faults (glibc gives the top of its
/// heap back to the system and takes it again). Never produces more than `out`'s capacity
/// once it holds `len` bytes.
pub fn decompress_exact_into(
    frame: &[u8],
    len: usize,
    out: &mut Vec<u8>,
) -> Result<(), ChunkError> {
    out.clear();
    out.reserve_exact(len);
    decompress_into(&[], frame, out)?;
    if out.len() != len {
        return Err(ChunkError::Length {
            claimed: len as u64,
            actual: out.len() as u64,
        });
    }
    Ok(())
}

/// The prefix of a piece that [`PieceKind::Appends`] to `base` in `context`: the last
/// [`PREFIX_WINDOW`] bytes of the context chunk's bytes followed by the base's (just the base's
/// when it alone fills the window).
pub fn context_window<'a>(context: &[u8], base: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    if base.len() >= PREFIX_WINDOW {
        return std::borrow::Cow::Borrowed(base);
    }
    let from = context.len().saturating_sub(PREFIX_WINDOW - base.len());
    std::borrow::Cow::Owned([&context[from..], base].concat())
}

/// A chunk as it goes on the wire: how its frame decodes, the base (and, for
/// [`PieceKind::Appends`], the context) it needs, the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub kind: PieceKind,
    pub base: Option<ChunkId>,
    pub context: Option<ChunkId>,
    pub frame: Vec<u8>,
}

/// Encodes a new chunk as a piece: extending `last` (the chunk the previous version ended with,
/// when it starts where `chunk` starts and `chunk` begins with it), else following `before`
/// (the chunk before it in the file), else alone. An extension of a `last` shorter than the
/// window is compressed knowing `before` too ([`PieceKind::Appends`]) when `appends` (the
/// server reads such pieces). The caller vouches that each base's bytes are what its id names.
pub fn piece(
    chunk: &[u8],
    last: Option<(ChunkId, &[u8])>,
    before: Option<(ChunkId, &[u8])>,
    appends: bool,
) -> Piece {
    if let Some((id, bytes)) = last {
        if chunk.len() > bytes.len() && chunk.starts_with(bytes) {
            let rest = &chunk[bytes.len()..];
            if let Some((context, context_bytes)) =
                before.filter(|_| appends && bytes.len() < PREFIX_WINDOW)
            {
                return Piece {
                    kind: PieceKind::Appends,
                    base: Some(id),
                    context: Some(context),
                    frame: compress_against(
                        &context_window(context_bytes, bytes),
                        rest,
                        CHANGE_LEVEL,
                    ),
                };
            }
            return Piece {
                kind: PieceKind::Extends,
                base: Some(id),
                context: None,
                frame: compress_against(bytes, rest, CHANGE_LEVEL),
            };
        }
    }
    match before {
        Some((id, bytes)) => Piece {
            kind: PieceKind::Follows,
            base: Some(id),
            context: None,
            frame: compress_against(bytes, chunk, CHANGE_LEVEL),
        },
        None => Piece {
            kind: PieceKind::Alone,
            base: None,
            context: None,
            frame: compress_against(&[], chunk, CHANGE_LEVEL),
        },
    }
}

/// Why a compressed chunk was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk does not decompress within {MAX_CHUNK_SIZE} bytes (corrupt data or a zstd bomb): {0}")]
    Decompress(String),
    #[error("chunk claims {claimed} bytes but decompresses to {actual}")]
    Length { claimed: u64, actual: u64 },
    #[error("chunk bytes hash to {actual}, not to their name {claimed}")]
    Hash { claimed: ChunkId, actual: ChunkId },
    #[error("chunk of {0} bytes is over the {MAX_CHUNK_SIZE}-byte limit")]
    TooLarge(u64),
}

/// Decompresses a chunk, never producing more than [`MAX_CHUNK_SIZE`] bytes.
pub fn decompress(compressed: &[u8]) -> Result<Vec<u8>, ChunkError> {
    DECOMPRESSOR.with(|d| {
        d.borrow_mut()
            .decompress(compressed, MAX_CHUNK_SIZE)
            .map_err(|e| ChunkError::Decompress(e.to_string()))
    })
}

/// Decompresses a chunk and checks it against its claimed name and length.
pub fn open_verified(id: &ChunkId, len: u64, compressed: &[u8]) -> Result<Vec<u8>, ChunkError> {
    if len > MAX_CHUNK_SIZE as u64 {
        return Err(ChunkError::TooLarge(len));
    }
    let data = decompress(compressed)?;
    if data.len() as u64 != len {
        return Err(ChunkError::Length {
            claimed: len,
            actual: data.len() as u64,
        });
    }
    let actual = ChunkId::of(&data);
    if actual != *id {
        return Err(ChunkError::Hash {
            claimed: *id,
            actual,
        });
    }
    Ok(data)
}

/// The number of leading chunks two chunk lists share.
pub fn common_prefix(a: &[ChunkRef], b: &[ChunkRef]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 251) as u8
            })
            .collect()
    }

    #[test]
    fn parts_compress_to_one_frame_of_their_bytes_back_to_back() {
        // Text that repeats across parts, and parts of every size (one empty), twice with one
        // scratch buffer, which must start clean.
        let line = |i: usize| format!("{{\"type\":\"user\",\"n\":{i},\"text\":\"hello\"}}\n");
        let text: Vec<u8> = (0..200_000)
            .flat_map(|i| line(i % 977).into_bytes())
            .collect();
        let noise = pseudo_random(300_000, 3);
        let parts: Vec<&[u8]> = vec![&text[..100], &[], &noise, &text[100..], &noise[..10]];
        let whole: Vec<u8> = parts.concat();
        let mut scratch = Vec::new();
        for _ in 0..2 {
            let frame = compress_parts(&parts, PIECE_LEVEL, &mut scratch);
            assert_eq!(decompress_exact(&frame, whole.len()).unwrap(), whole);
            assert!(frame == compress_against(&[], &whole, PIECE_LEVEL));
        }
        assert_eq!(
            decompress_exact(&compress_parts(&[], 3, &mut scratch), 0).unwrap(),
            b""
        );
    }

    #[test]
    fn chunks_cover_input_exactly() {
        let data = pseudo_random(1_000_000, 7);
        let cuts = cut(&data, 0);
        let mut at = 0u64;
        for c in &cuts {
            assert_eq!(c.offset, at);
            assert!(c.len <= CHUNK_MAX);
            assert_eq!(c.id, ChunkId::of(c.slice(&data)));
            at += c.len as u64;
        }
        assert_eq!(at, data.len() as u64);
    }

    #[test]
    fn append_keeps_all_but_the_last_chunk() {
        let mut data = pseudo_random(2_000_000, 3);
        let before: Vec<_> = cut(&data, 0).iter().map(Cut::chunk_ref).collect();
        data.extend_from_slice(&pseudo_random(1000, 9));
        let after: Vec<_> = cut(&data, 0).iter().map(Cut::chunk_ref).collect();
        assert!(common_prefix(&before, &after) >= before.len() - 1);
    }

    #[test]
    fn compress_round_trip_and_verify() {
        let data = pseudo_random(100_000, 5);
        let id = ChunkId::of(&data);
        let z = compress(&data);
        assert_eq!(open_verified(&id, data.len() as u64, &z).unwrap(), data);
        let other = ChunkId::of(b"x");
        assert!(matches!(
            open_verified(&other, data.len() as u64, &z),
            Err(ChunkError::Hash { .. })
        ));
        assert!(matches!(
            open_verified(&id, 5, &z),
            Err(ChunkError::Length { .. })
        ));
    }

    #[test]
    fn zstd_bomb_is_refused() {
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let bomb = zstd::bulk::compress(&zeros, 19).unwrap();
        assert!(bomb.len() < 64 * 1024);
        assert!(matches!(decompress(&bomb), Err(ChunkError::Decompress(_))));
    }

    #[test]
    fn pieces_round_trip_against_their_base() {
        let base = pseudo_random(50_000, 21);
        let mut grown = base.clone();
        grown.extend_from_slice(&pseudo_random(700, 22));
        let p = piece(&grown, Some((ChunkId::of(&base), &base)), None, true);
        assert_eq!(p.kind, PieceKind::Extends);
        let tail = decompress_against(&base, &p.frame, 700).unwrap();
        assert_eq!([&base[..], &tail[..]].concat(), grown);
        // Not a continuation: compressed knowing the chunk before instead.
        let next = [&base[1000..9000], &pseudo_random(2000, 23)[..]].concat();
        let q = piece(
            &next,
            Some((ChunkId::of(&grown), &grown)),
            Some((ChunkId::of(&base), &base)),
            true,
        );
        assert_eq!(q.kind, PieceKind::Follows);
        assert!(
            q.frame.len() < compress(&next).len() / 2,
            "the base's text is not paid again"
        );
        assert_eq!(
            decompress_against(&base, &q.frame, next.len()).unwrap(),
            next
        );
        // A base whose window starts with zstd's dictionary magic is still raw text.
        let mut magic = 0xEC30_A437u32.to_le_bytes().to_vec();
        magic.extend_from_slice(&pseudo_random(5000, 24));
        let r = piece(&next, None, Some((ChunkId::of(&magic), &magic)), true);
        assert_eq!(
            decompress_against(&magic, &r.frame, next.len()).unwrap(),
            next
        );
        // The wrong base, or too small a limit, is an error, not wrong bytes or a big buffer.
        assert!(decompress_against(&magic, &q.frame, next.len()).map_or(true, |d| d != next));
        assert!(decompress_against(&base, &q.frame, 100).is_err());
    }

    #[test]
    fn an_append_to_a_short_base_is_compressed_knowing_the_chunk_before() {
        // The text before the cut, then a short last chunk, then an append that repeats what
        // the text before the cut said.
        let before = pseudo_random(40_000, 31);
        let last = pseudo_random(3_000, 32);
        let mut grown = last.clone();
        grown.extend_from_slice(&before[10_000..14_000]);
        let (b, l) = (
            (ChunkId::of(&before), &before[..]),
            (ChunkId::of(&last), &last[..]),
        );
        let p = piece(&grown, Some(l), Some(b), true);
        assert_eq!(p.kind, PieceKind::Appends);
        assert_eq!((p.base, p.context), (Some(l.0), Some(b.0)));
        let plain = piece(&grown, Some(l), Some(b), false);
        assert_eq!(plain.kind, PieceKind::Extends);
        assert!(
            p.frame.len() * 4 < plain.frame.len(),
            "the chunk before is context: {} against {}",
            p.frame.len(),
            plain.frame.len()
        );
        let tail = decompress_against(&context_window(&before, &last), &p.frame, 4_000).unwrap();
        assert_eq!(tail, &before[10_000..14_000]);
        // Only the base when it fills the window itself: no dependency on the chunk before.
        let long = pseudo_random(PREFIX_WINDOW + 10, 33);
        let grown = [&long[..], b"more"].concat();
        let q = piece(&grown, Some((ChunkId::of(&long), &long)), Some(b), true);
        assert_eq!((q.kind, q.context), (PieceKind::Extends, None));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(decompress(b"not zstd at all").is_err());
    }
}
