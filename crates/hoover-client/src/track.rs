//! What the agent remembers of a file between versions so that an append costs O(new bytes).
//!
//! After pushing a version, the agent keeps the file's identity (device, inode, a hash of its
//! first bytes), where its last stable chunk boundary is (the start of the final chunk, which was
//! cut by the end of the file rather than by content), the BLAKE3 state after the bytes before
//! that boundary, and the last stable chunk. On growth it checks that identity and that chunk
//! (one chunk read, not the whole prefix), then reads, cuts and hashes only from the boundary.
//! FastCDC's cut points depend only on the bytes since the previous cut, so cutting from a
//! boundary gives exactly the chunks a full re-chunk would. Anything else (the file shrank, its
//! inode changed, its first bytes or that chunk changed) falls back to a full read.
//!
//! A track is trusted only for the version it was made from (`seq`), and only in memory: after
//! a restart the first change of each file is read in full once.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Result;
use hoover_chunk::Cut;
use hoover_types::{ChunkId, ChunkRef};

use crate::state::Stat;

/// Bytes at the head of a file that identify it (with device and inode).
pub const HEAD_LEN: u64 = 4096;

#[derive(Clone)]
pub struct Track {
    /// The server version this track describes, once committed.
    pub seq: Option<u64>,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Modification time when the track was made: the agent keeps the newest tracks.
    pub mtime_ns: i64,
    /// BLAKE3 of the first `min(size, HEAD_LEN)` bytes.
    pub head: [u8; 32],
    /// Chunks before the final one, and where they end.
    pub stable_count: u64,
    pub stable_end: u64,
    /// The last chunk before `stable_end`, checked before trusting the prefix.
    pub last_stable: Option<(u64, ChunkRef)>,
    /// The final chunk (from `stable_end` to the end of the file): the next version's first
    /// new chunk usually extends it.
    pub last: Option<ChunkRef>,
    /// BLAKE3 state after `[0, stable_end)`.
    pub hasher: blake3::Hasher,
}

impl Track {
    /// Builds the track of a whole file just cut, and returns the file's BLAKE3 with it, in one
    /// hashing pass.
    pub fn of_full(stat: &Stat, data: &[u8], cuts: &[Cut], seq: Option<u64>) -> ([u8; 32], Track) {
        let stable_count = cuts.len().saturating_sub(1);
        let stable_end = cuts.get(stable_count).map(|c| c.offset).unwrap_or(0);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&data[..stable_end as usize]);
        let at_stable = hasher.clone();
        hasher.update(&data[stable_end as usize..]);
        let head_len = (data.len() as u64).min(HEAD_LEN) as usize;
        let track = Track {
            seq,
            dev: stat.dev,
            ino: stat.ino,
            size: data.len() as u64,
            mtime_ns: stat.mtime_ns,
            head: *blake3::hash(&data[..head_len]).as_bytes(),
            stable_count: stable_count as u64,
            stable_end,
            last_stable: stable_count
                .checked_sub(1)
                .map(|i| (cuts[i].offset, cuts[i].chunk_ref())),
            last: cuts.last().map(Cut::chunk_ref),
            hasher: at_stable,
        };
        (*hasher.finalize().as_bytes(), track)
    }
}

/// The result of an append read: the new chunks after the stable prefix, their bytes, the
/// file's new BLAKE3, and the next track.
pub struct Appended {
    pub stat: Stat,
    pub size: u64,
    /// Bytes from the old `stable_end` to the end of the file.
    pub tail: Vec<u8>,
    /// The chunk before the old `stable_end` and its bytes (read to check the prefix).
    pub before: Option<(ChunkId, Vec<u8>)>,
    pub new: Vec<Cut>,
    pub blake3: [u8; 32],
    pub track: Track,
}

/// Reads only what was appended since `track`, or returns `None` when the file is not simply
/// longer with the same beginning (the caller then reads it in full).
pub fn read_append(path: &Path, track: &Track) -> Result<Option<Appended>> {
    let mut file = match crate::scan::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let before = Stat::of(&file.metadata()?);
    if before.dev != track.dev || before.ino != track.ino || before.size <= track.size {
        return Ok(None);
    }
    let head_len = track.size.min(HEAD_LEN);
    let mut head = vec![0u8; head_len as usize];
    file.read_exact(&mut head)?;
    if *blake3::hash(&head).as_bytes() != track.head {
        return Ok(None);
    }
    let mut before_chunk = None;
    if let Some((offset, chunk)) = &track.last_stable {
        let mut bytes = vec![0u8; chunk.len as usize];
        file.seek(SeekFrom::Start(*offset))?;
        file.read_exact(&mut bytes)?;
        if ChunkId::of(&bytes) != chunk.id {
            return Ok(None);
        }
        before_chunk = Some((chunk.id, bytes));
    }
    file.seek(SeekFrom::Start(track.stable_end))?;
    let mut tail = Vec::with_capacity((before.size - track.stable_end) as usize);
    file.read_to_end(&mut tail)?;
    let after = Stat::of(&file.metadata()?);
    if after != before || track.stable_end + tail.len() as u64 != after.size {
        // Still being written: the next event brings it back.
        anyhow::bail!("changed while being read");
    }
    let new = hoover_chunk::cut(&tail, track.stable_end);
    let mut hasher = track.hasher.clone();
    let new_stable = new.len().saturating_sub(1);
    let new_stable_end = new
        .get(new_stable)
        .map(|c| c.offset)
        .unwrap_or(track.stable_end);
    hasher.update(&tail[..(new_stable_end - track.stable_end) as usize]);
    let at_stable = hasher.clone();
    hasher.update(&tail[(new_stable_end - track.stable_end) as usize..]);
    let last_stable = match new_stable.checked_sub(1) {
        Some(i) => Some((new[i].offset, new[i].chunk_ref())),
        None => track.last_stable,
    };
    let next = Track {
        seq: None,
        dev: after.dev,
        ino: after.ino,
        size: after.size,
        mtime_ns: after.mtime_ns,
        head: if track.size >= HEAD_LEN {
            track.head
        } else {
            let mut head = vec![0u8; after.size.min(HEAD_LEN) as usize];
            file.seek(SeekFrom::Start(0))?;
            file.read_exact(&mut head)?;
            *blake3::hash(&head).as_bytes()
        },
        stable_count: track.stable_count + new_stable as u64,
        stable_end: new_stable_end,
        last_stable,
        last: new.last().map(Cut::chunk_ref).or(track.last),
        hasher: at_stable,
    };
    Ok(Some(Appended {
        stat: after,
        size: after.size,
        tail,
        before: before_chunk,
        new,
        blake3: *hasher.finalize().as_bytes(),
        track: next,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"abcdefgh {}:,\"\n"[(x % 15) as usize]
            })
            .collect()
    }

    fn full(path: &Path) -> ([u8; 32], Vec<Cut>, Track) {
        let data = std::fs::read(path).unwrap();
        let stat = Stat::of(&std::fs::metadata(path).unwrap());
        let cuts = hoover_chunk::cut(&data, 0);
        let (hash, track) = Track::of_full(&stat, &data, &cuts, Some(1));
        (hash, cuts, track)
    }

    #[test]
    fn appends_give_exactly_the_full_rechunk_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, text(1_000_000, 1)).unwrap();
        let (_, _, mut track) = full(&path);
        for step in 0..30u64 {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(&text(1 + (step as usize * 997) % 20_000, step + 2))
                .unwrap();
            drop(f);
            let appended = read_append(&path, &track).unwrap().expect("a pure append");
            let (hash, cuts, _) = full(&path);
            assert_eq!(appended.blake3, hash);
            let kept = track.stable_count as usize;
            assert_eq!(&cuts[kept..], &appended.new[..], "step {step}");
            // Only the tail was read.
            assert!(appended.tail.len() as u64 <= appended.size - track.stable_end);
            track = appended.track;
        }
    }

    #[test]
    fn other_changes_fall_back_to_a_full_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, text(300_000, 3)).unwrap();
        let (_, _, track) = full(&path);
        // Same length: not an append.
        assert!(read_append(&path, &track).unwrap().is_none());
        // A changed head.
        let mut data = std::fs::read(&path).unwrap();
        data[10] ^= 1;
        data.extend_from_slice(b"more\n");
        std::fs::write(&path, &data).unwrap();
        assert!(read_append(&path, &track).unwrap().is_none());
        // A changed byte inside the last stable chunk.
        let (_, _, track) = full(&path);
        let (offset, _) = track.last_stable.unwrap();
        data[offset as usize + 5] ^= 1;
        data.extend_from_slice(b"more\n");
        std::fs::write(&path, &data).unwrap();
        assert!(read_append(&path, &track).unwrap().is_none());
        // A shorter file, and a new inode.
        let (_, _, track) = full(&path);
        std::fs::write(&path, &data[..1000]).unwrap();
        assert!(read_append(&path, &track).unwrap().is_none());
        std::fs::remove_file(&path).unwrap();
        data.extend_from_slice(b"again\n");
        std::fs::write(dir.path().join("other"), b"x").unwrap();
        std::fs::write(&path, &data).unwrap();
        let fresh = Stat::of(&std::fs::metadata(&path).unwrap());
        if fresh.ino != track.ino {
            assert!(read_append(&path, &track).unwrap().is_none());
        }
    }
}
