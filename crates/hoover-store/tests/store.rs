//! The store on its own: versions round-trip, appends keep old chunks, every edit shape
//! reassembles, bad versions are refused, and corruption is found and named.

use hoover_chunk::{common_prefix, cut, Cut};
use hoover_store::{NewVersion, Store, StoreError, VerifyProblem};
use hoover_types::{ChunkRef, Key};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        // Text-like bytes so that zstd and CDC behave as on transcripts.
        (0..n)
            .map(|_| b"abcdefghij {}\":,\n"[(self.next() % 17) as usize])
            .collect()
    }
}

/// Pushes `data` as the next version of `key`, the way the client does: offering only the
/// chunks after the prefix shared with `prev`.
fn push(
    store: &Store,
    key: &Key,
    data: &[u8],
    prev: Option<(u64, &[ChunkRef])>,
) -> (u64, Vec<ChunkRef>) {
    let cuts = cut(data, 0);
    let refs: Vec<ChunkRef> = cuts.iter().map(Cut::chunk_ref).collect();
    let (base, kept) = match prev {
        Some((seq, old)) => (Some(seq), common_prefix(old, &refs)),
        None => (None, 0),
    };
    let mut batch = store.batch();
    for c in &cuts[kept..] {
        batch
            .add_chunk(c.id, c.len, &hoover_chunk::compress(c.slice(data)))
            .unwrap();
    }
    batch
        .add_version(NewVersion {
            key: key.clone(),
            size: data.len() as u64,
            blake3: *blake3::hash(data).as_bytes(),
            mtime_ns: 1,
            base,
            kept: kept as u64,
            chunks: refs[kept..].to_vec(),
        })
        .unwrap();
    let committed = batch.commit().unwrap();
    (committed[0].seq, refs)
}

fn read(store: &Store, key: &Key, seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    store.read_version(key, seq, &mut out).unwrap();
    out
}

#[test]
fn every_edit_shape_reassembles_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("m/r/session.jsonl").unwrap();
    let mut rng = Rng(99);
    let mut data = rng.bytes(300_000);
    let mut history = vec![data.clone()];
    let (mut seq, mut refs) = push(&store, &key, &data, None);
    for step in 0..40 {
        match step % 5 {
            0..=2 => {
                let n = 1 + (rng.next() % 5000) as usize;
                data.extend(rng.bytes(n))
            }
            3 => {
                let at = (rng.next() as usize) % data.len();
                data[at] ^= 0x55;
            }
            _ => {
                let keep = data.len() * 3 / 4;
                data.truncate(keep);
            }
        }
        let (s, r) = push(&store, &key, &data, Some((seq, &refs)));
        assert_eq!(s, seq + 1);
        seq = s;
        refs = r;
        history.push(data.clone());
    }
    for (i, expected) in history.iter().enumerate() {
        assert!(
            read(&store, &key, i as u64 + 1) == *expected,
            "version {}",
            i + 1
        );
    }
    // Reopening the store (and so losing the in-memory hash states) changes nothing.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    for (i, expected) in history.iter().enumerate() {
        assert!(read(&store, &key, i as u64 + 1) == *expected);
    }
    let report = store.verify(|_, _, _| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.versions_checked, history.len() as u64);
}

#[test]
fn an_append_adds_only_its_new_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("m/r/big.jsonl").unwrap();
    let mut rng = Rng(5);
    let mut data = rng.bytes(4_000_000);
    let (seq, refs) = push(&store, &key, &data, None);
    let before = store.counts().unwrap();
    data.extend(rng.bytes(1000));
    let (seq2, refs2) = push(&store, &key, &data, Some((seq, &refs)));
    let after = store.counts().unwrap();
    assert_eq!(seq2, 2);
    let kept = common_prefix(&refs, &refs2);
    assert!(kept + 3 >= refs.len(), "kept {kept} of {}", refs.len());
    assert!(after.chunks - before.chunks <= 3, "{before:?} -> {after:?}");
    assert!(read(&store, &key, 2) == data);
}

#[test]
fn identical_content_is_not_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("m/r/x").unwrap();
    let data = Rng(1).bytes(10_000);
    let (seq, refs) = push(&store, &key, &data, None);
    let mut batch = store.batch();
    batch
        .add_version(NewVersion {
            key: key.clone(),
            size: data.len() as u64,
            blake3: *blake3::hash(&data).as_bytes(),
            mtime_ns: 2,
            base: Some(seq),
            kept: refs.len() as u64,
            chunks: vec![],
        })
        .unwrap();
    let c = batch.commit().unwrap();
    assert!(!c[0].new);
    assert_eq!(store.versions(&key).unwrap().len(), 1);
}

#[test]
fn a_stale_base_is_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("m/r/x").unwrap();
    let mut rng = Rng(2);
    let a = rng.bytes(10_000);
    let (seq, refs) = push(&store, &key, &a, None);
    let mut b = a.clone();
    b.extend(rng.bytes(10));
    push(&store, &key, &b, Some((seq, &refs)));
    let mut batch = store.batch();
    let err = batch
        .add_version(NewVersion {
            key: key.clone(),
            size: 5,
            blake3: [0; 32],
            mtime_ns: 0,
            base: Some(1),
            kept: 0,
            chunks: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::StaleBase(_)), "{err}");
}

/// Two batches checked on the same base: the one committed second is stale. None of its
/// versions is recorded, but its chunks are (verified, and possibly left out of a later batch
/// of the same client as held), and the store's totals count just them.
#[test]
fn a_commit_that_turns_stale_records_its_chunks_and_no_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("m/r/x").unwrap();
    let mut rng = Rng(3);
    let a = rng.bytes(10_000);
    let (seq, _) = push(&store, &key, &a, None);
    let version_of = |data: &[u8], cuts: &[Cut]| NewVersion {
        key: key.clone(),
        size: data.len() as u64,
        blake3: *blake3::hash(data).as_bytes(),
        mtime_ns: 1,
        base: Some(seq),
        kept: 0,
        chunks: cuts.iter().map(Cut::chunk_ref).collect(),
    };
    let (b, c) = (rng.bytes(300_000), rng.bytes(300_000));
    let (b_cuts, c_cuts) = (cut(&b, 0), cut(&c, 0));
    let mut first = store.batch();
    let mut second = store.batch();
    for (batch, data, cuts) in [(&mut first, &b, &b_cuts), (&mut second, &c, &c_cuts)] {
        for piece in cuts {
            batch
                .add_chunk(
                    piece.id,
                    piece.len,
                    &hoover_chunk::compress(piece.slice(data)),
                )
                .unwrap();
        }
        batch.add_version(version_of(data, cuts)).unwrap();
    }
    assert_eq!(first.commit().unwrap()[0].seq, seq + 1);
    let before = store.counts().unwrap();
    let err = second.commit().unwrap_err();
    assert!(matches!(err, StoreError::StaleBase(_)), "{err}");
    assert_eq!(store.versions(&key).unwrap().len(), 2);
    let ids: Vec<_> = c_cuts.iter().map(|c| c.id).collect();
    assert!(store.has_chunks(&ids).unwrap().iter().all(|h| *h));
    let after = store.counts().unwrap();
    assert_eq!(after.versions, before.versions);
    assert_eq!(after.chunks, before.chunks + c_cuts.len() as u64);
    assert!(store.verify(|_, _, _| {}).unwrap().is_clean());
}

#[test]
fn corruption_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("m/r/x").unwrap();
    let data = Rng(3).bytes(200_000);
    let (_, refs) = push(&store, &key, &data, None);
    // Flip a byte near the end of the pack: inside the last chunk's frame, which ends it.
    let [(pack, len)] = &pack_files(dir.path())[..] else {
        panic!("one pack expected")
    };
    let mut bytes = std::fs::read(pack).unwrap();
    bytes[*len as usize - 10] ^= 0xff;
    std::fs::write(pack, bytes).unwrap();
    // A second batch in its own pack (too big to be appended to the first), which then goes
    // missing.
    let key2 = Key::new("m/r/y").unwrap();
    let other = Rng(4).bytes(2_500_000);
    let (_, refs2) = push(&store, &key2, &other, None);
    let packs = pack_files(dir.path());
    assert_eq!(packs.len(), 2);
    let (pack2, _) = packs.iter().find(|(p, _)| p != pack).unwrap();
    std::fs::remove_file(pack2).unwrap();
    let report = store.verify(|_, _, _| {}).unwrap();
    assert!(!report.is_clean());
    let last = refs.last().unwrap().id;
    assert!(report
        .problems
        .iter()
        .any(|p| matches!(p, VerifyProblem::ChunkCorrupt { id, .. } if *id == last)));
    assert!(report
        .problems
        .iter()
        .any(|p| matches!(p, VerifyProblem::ChunkMissing { id, .. } if *id == refs2[0].id)));
    assert!(report.problems.iter().any(
        |p| matches!(p, VerifyProblem::VersionBroken { key: k, seq: 1, .. } if k == key.as_str())
    ));
    // Reading the damaged version fails loudly rather than returning wrong bytes.
    let mut out = Vec::new();
    assert!(matches!(
        store.read_version(&key, 1, &mut out),
        Err(StoreError::Corrupt(_))
    ));
}

/// The pack files under a store's `packs/`, with their lengths.
fn pack_files(root: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(root.join("packs")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            let len = std::fs::metadata(&path).unwrap().len();
            out.push((path, len));
        }
    }
    out
}

/// Appends a message of 1,000 bytes to `m/r/chat.jsonl` and pushes it as the next version on
/// `prev` (which it then becomes), in a batch of its own; returns its seq.
fn message(
    store: &Store,
    rng: &mut Rng,
    data: &mut Vec<u8>,
    prev: &mut Option<(u64, Vec<ChunkRef>)>,
) -> u64 {
    data.extend_from_slice(&rng.bytes(1_000));
    let key = Key::new("m/r/chat.jsonl").unwrap();
    let base = prev.as_ref().map(|(s, r)| (*s, &r[..]));
    let (seq, refs) = push(store, &key, data, base);
    *prev = Some((seq, refs));
    seq
}

#[test]
fn small_batches_share_a_pack_and_an_unfinished_append_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new("m/r/chat.jsonl").unwrap();
    let mut data = Vec::new();
    let mut prev: Option<(u64, Vec<ChunkRef>)> = None;
    let mut rng = Rng(11);
    {
        let store = Store::open(dir.path()).unwrap();
        // A message per batch, as `hoover watch` sends them: one pack file, not one each.
        for _ in 0..30 {
            message(&store, &mut rng, &mut data, &mut prev);
        }
        assert_eq!(pack_files(dir.path()).len(), 1);
        // A batch too big to be appended gets a pack of its own.
        let big = Rng(12).bytes(2_500_000);
        push(&store, &Key::new("m/r/big").unwrap(), &big, None);
        assert_eq!(pack_files(dir.path()).len(), 2);
        // ... and the batches after it are appended to that one.
        message(&store, &mut rng, &mut data, &mut prev);
        assert_eq!(pack_files(dir.path()).len(), 2);
    }
    // A writer killed between appending a batch and committing its rows leaves bytes past the
    // growing pack's committed end: counted, not a problem, and cut off by the next writer.
    let (growing, len) = pack_files(dir.path())
        .into_iter()
        .max_by_key(|(p, _)| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    let mut bytes = std::fs::read(&growing).unwrap();
    bytes.extend_from_slice(&Rng(13).bytes(5_000));
    std::fs::write(&growing, &bytes).unwrap();
    let report = Store::open_to_read(dir.path())
        .unwrap()
        .verify(|_, _, _| {})
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.uncommitted_bytes, 5_000);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&growing).unwrap().len(), len);
    let seq = message(&store, &mut rng, &mut data, &mut prev);
    assert_eq!(seq, 32);
    assert!(std::fs::metadata(&growing).unwrap().len() > len);
    assert_eq!(read(&store, &key, seq), data);
    let report = store.verify(|_, _, _| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.uncommitted_bytes, 0);
    assert_eq!(report.versions_checked, 33);
}

#[test]
fn unknown_formats_and_foreign_dirs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("FORMAT"), "hoover-store 99\n").unwrap();
    let err = Store::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("upgrade hoover"), "{err}");
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("precious.txt"), "x").unwrap();
    let err = Store::open(other.path()).err().unwrap();
    assert!(err.to_string().contains("without a FORMAT file"), "{err}");
}

#[test]
fn byte_ranges_read_only_what_they_ask_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("l/c/range.jsonl").unwrap();
    let mut rng = Rng(11);
    let v1 = rng.bytes(900_000);
    let (s1, refs1) = push(&store, &key, &v1, None);
    let mut v2 = v1.clone();
    v2.extend_from_slice(&rng.bytes(70_000));
    let (s2, _) = push(&store, &key, &v2, Some((s1, &refs1)));
    let range = |seq: u64, from: u64, to: Option<u64>| -> Vec<u8> {
        let mut out = Vec::new();
        for piece in store.read_range(&key, seq, from, to).unwrap() {
            out.extend_from_slice(&piece.unwrap());
        }
        out
    };
    for (from, to) in [
        (0, None),
        (1, Some(2)),
        (123_457, Some(654_321)),
        (899_999, None),
    ] {
        let end = to.unwrap_or(v2.len() as u64) as usize;
        assert_eq!(
            range(s2, from, to),
            v2[from as usize..end],
            "{from}..{to:?}"
        );
    }
    assert_eq!(range(s1, 800_000, None), v1[800_000..]);
    assert!(range(s2, v2.len() as u64, None).is_empty());
    assert_eq!(range(s2, 10, Some(5_000_000)), v2[10..]);
    // The append kept all but the last chunk or so of version 1, byte for byte.
    let kept = store.kept_bytes(&key, s2).unwrap();
    assert!(kept > 700_000 && kept <= v1.len() as u64, "kept {kept}");
    assert_eq!(store.kept_bytes(&key, s1).unwrap(), 0);
    assert!(store.extends_previous(&key, s2, v1.len() as u64).unwrap());
    let mut v3 = v2.clone();
    v3[v1.len() - 10] ^= 1;
    v3.extend_from_slice(b"more");
    let (s3, _) = push(&store, &key, &v3, None);
    assert!(!store.extends_previous(&key, s3, v2.len() as u64).unwrap());
    assert!(store
        .extends_previous(&key, s3, v1.len() as u64 - 10)
        .unwrap());
    assert_eq!(
        store.version(&key, s2).unwrap().unwrap().size,
        v2.len() as u64
    );
    assert!(store.version(&key, 9).unwrap().is_none());
}

#[test]
fn totals_kept_in_memory_match_a_recount() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let before = store.counts().unwrap();
    assert_eq!(before.files, 0);
    let mut rng = Rng(5);
    let a = Key::new("l/c/a.jsonl").unwrap();
    let b = Key::new("l/c/b.jsonl").unwrap();
    let v1 = rng.bytes(300_000);
    let (s1, r1) = push(&store, &a, &v1, None);
    let mut v2 = v1.clone();
    v2.extend_from_slice(&rng.bytes(50_000));
    push(&store, &a, &v2, Some((s1, &r1)));
    push(&store, &b, &v1, None); // every chunk already stored
    let (s3, r3) = push(&store, &b, &v2[..1000], None);
    push(&store, &b, &v2[..500], Some((s3, &r3))); // shrinks
    let cached = store.counts().unwrap();
    let recounted = Store::open_to_read(dir.path()).unwrap().counts().unwrap();
    assert_eq!(cached, recounted);
    assert_eq!((cached.files, cached.versions), (2, 5));
    // The packs' bytes are what their files hold, batches appended to one and all.
    let on_disk: u64 = pack_files(dir.path()).iter().map(|(_, len)| len).sum();
    assert_eq!(cached.pack_bytes, on_disk);
    assert_eq!(cached.latest_bytes, v2.len() as u64 + 500);
    let sources = store.sources().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(
        (
            sources[0].name.as_str(),
            sources[0].files,
            sources[0].versions
        ),
        ("l", 2, 5)
    );
}

#[test]
fn one_writer_at_a_time_and_readers_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path()).unwrap();
    // A second writer (a second server on the same store) is refused, naming the store.
    match Store::open(dir.path()) {
        Err(e @ StoreError::InUse(_)) => {
            assert!(
                e.to_string().contains(&dir.path().display().to_string()),
                "{e}"
            )
        }
        other => panic!("expected InUse, got {:?}", other.map(|_| ())),
    }
    // A reader opened in the middle of a batch leaves the batch's staged pack alone, and its
    // check is clean; the batch then commits.
    let mut rng = Rng(9);
    let key = Key::new("l/c/a.jsonl").unwrap();
    let data = rng.bytes(200_000);
    let cuts = cut(&data, 0);
    let mut batch = writer.batch();
    for c in &cuts {
        batch
            .add_chunk(c.id, c.len, &hoover_chunk::compress(c.slice(&data)))
            .unwrap();
    }
    let reader = Store::open_to_read(dir.path()).unwrap();
    assert!(reader.verify(|_, _, _| {}).unwrap().is_clean());
    batch
        .add_version(NewVersion {
            key: key.clone(),
            size: data.len() as u64,
            blake3: *blake3::hash(&data).as_bytes(),
            mtime_ns: 1,
            base: None,
            kept: 0,
            chunks: cuts.iter().map(Cut::chunk_ref).collect(),
        })
        .unwrap();
    batch.commit().unwrap();
    let report = reader.verify(|_, _, _| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.versions_checked, 1);
    // Once the writer is gone, another may open the store.
    drop(writer);
    drop(reader);
    assert!(Store::open(dir.path()).is_ok());
    // A reader needs a store to read.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Store::open_to_read(empty.path()),
        Err(StoreError::Format { .. })
    ));
}

#[test]
fn a_batch_past_its_limit_is_refused_and_a_refused_version_gives_its_room_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let parts: Vec<Vec<u8>> = (0..4).map(|i| format!("part {i}\n").into_bytes()).collect();
    let refs: Vec<ChunkRef> = parts
        .iter()
        .map(|p| ChunkRef {
            id: hoover_types::ChunkId::of(p),
            len: p.len() as u32,
        })
        .collect();
    let version = |key: &str, refs: &[ChunkRef], base: Option<u64>| {
        let data: Vec<u8> = parts[..refs.len()].concat();
        NewVersion {
            key: Key::new(key).unwrap(),
            size: data.len() as u64,
            blake3: *blake3::hash(&data).as_bytes(),
            mtime_ns: 1,
            base,
            kept: 0,
            chunks: refs.to_vec(),
        }
    };
    // Room for 7: three chunks (3), then a version of them (4 more).
    let mut batch = store.batch().with_limit(7);
    for (p, r) in parts[..3].iter().zip(&refs) {
        batch
            .add_chunk(r.id, r.len, &hoover_chunk::compress(p))
            .unwrap();
    }
    // A version refused for another reason (a base the store lacks) takes no room...
    let stale = batch.add_version(version("a/x", &refs[..3], Some(9)));
    assert!(matches!(stale, Err(StoreError::StaleBase(_))), "{stale:?}");
    batch.add_version(version("a/x", &refs[..3], None)).unwrap();
    // ...and now the batch is full: one more chunk is refused, saying what to do.
    let err = batch
        .add_chunk(refs[3].id, refs[3].len, &hoover_chunk::compress(&parts[3]))
        .unwrap_err();
    assert!(matches!(err, StoreError::BatchTooLarge(7)), "{err:?}");
    assert!(err.to_string().contains("commit more often"), "{err}");
    // What fitted commits.
    assert_eq!(batch.commit().unwrap().len(), 1);
    // References count: a version naming 7 stored chunks needs 8.
    let mut batch = store.batch().with_limit(7);
    let seven: Vec<ChunkRef> = refs[..3].iter().cycle().take(7).copied().collect();
    let mut v = version("a/y", &refs[..3], None);
    v.chunks = seven;
    let err = batch.add_version(v).unwrap_err();
    assert!(matches!(err, StoreError::BatchTooLarge(7)), "{err:?}");
}

/// Commits `data` as a new version made of `kept` chunks of `base` and `chunks`.
/// Stores `chunk`, encoded as `piece` on `base`, in a batch of its own; returns its id and the
/// kind the store keeps it as.
fn store_piece(
    store: &Store,
    chunk: &[u8],
    piece: &hoover_chunk::Piece,
    base: hoover_types::ChunkId,
) -> (hoover_types::ChunkId, hoover_store::Kind) {
    let id = hoover_types::ChunkId::of(chunk);
    let mut batch = store.batch();
    batch
        .add_piece(
            id,
            chunk.len() as u32,
            piece.kind,
            base,
            piece.context,
            &piece.frame,
        )
        .unwrap();
    batch.commit().unwrap();
    (id, store.chunk_piece(&id).unwrap().unwrap().0)
}

fn commit_version(
    store: &Store,
    key: &Key,
    data: &[u8],
    base: Option<u64>,
    kept: u64,
    chunks: Vec<ChunkRef>,
) -> u64 {
    let mut batch = store.batch();
    batch
        .add_version(NewVersion {
            key: key.clone(),
            size: data.len() as u64,
            blake3: *blake3::hash(data).as_bytes(),
            mtime_ns: 1,
            base,
            kept,
            chunks,
        })
        .unwrap();
    batch.commit().unwrap()[0].seq
}

#[test]
fn pieces_decode_against_their_bases_and_bad_ones_are_refused() {
    use hoover_store::Kind;
    use hoover_types::ChunkId;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("lap/c/p.jsonl").unwrap();
    let mut rng = Rng(11);
    let first = rng.bytes(20_000);
    let first_id = ChunkId::of(&first);
    let mut batch = store.batch();
    batch
        .add_chunk(
            first_id,
            first.len() as u32,
            &hoover_chunk::compress(&first),
        )
        .unwrap();
    batch.commit().unwrap();
    let r1 = ChunkRef {
        id: first_id,
        len: first.len() as u32,
    };
    let v1 = commit_version(&store, &key, &first, None, 0, vec![r1]);

    // An append: the new last chunk extends the old one, and only the new bytes are sent.
    let mut grown = first.clone();
    grown.extend_from_slice(&rng.bytes(1_000));
    let p = hoover_chunk::piece(&grown, Some((first_id, &first)), None, true);
    assert_eq!(p.kind, Kind::Extends);
    assert!(
        p.frame.len() < 1_000,
        "an append of 1,000 bytes took {}",
        p.frame.len()
    );
    let grown_id = ChunkId::of(&grown);
    // A next chunk that follows it.
    let next = rng.bytes(9_000);
    let next_id = ChunkId::of(&next);
    let q = hoover_chunk::piece(&next, None, Some((grown_id, &grown)), true);
    assert_eq!(q.kind, Kind::Follows);
    let mut batch = store.batch();
    batch
        .add_piece(
            grown_id,
            grown.len() as u32,
            p.kind,
            first_id,
            None,
            &p.frame,
        )
        .unwrap();
    batch
        .add_piece(next_id, next.len() as u32, q.kind, grown_id, None, &q.frame)
        .unwrap();
    batch.commit().unwrap();
    let mut content = grown.clone();
    content.extend_from_slice(&next);
    let v2 = commit_version(
        &store,
        &key,
        &content,
        Some(v1),
        0,
        vec![
            ChunkRef {
                id: grown_id,
                len: grown.len() as u32,
            },
            ChunkRef {
                id: next_id,
                len: next.len() as u32,
            },
        ],
    );
    assert_eq!(read(&store, &key, v1), first);
    assert_eq!(read(&store, &key, v2), content);
    assert_eq!(
        store.chunk_piece(&next_id).unwrap().unwrap().0,
        Kind::Follows
    );
    assert!(store.verify(|_, _, _| {}).unwrap().is_clean());

    // A piece on a base nobody sent is not taken, and the version that names it is told to
    // push its whole chunk list (what a client whose record is behind the server's does).
    let stranger = ChunkId::of(b"never sent");
    let mut batch = store.batch();
    let orphan = ChunkId::of(&grown[..100]);
    batch
        .add_piece(orphan, 100, Kind::Follows, stranger, None, &q.frame)
        .unwrap();
    let e = batch
        .add_version(NewVersion {
            key: Key::new("m/r/orphan").unwrap(),
            size: 100,
            blake3: *blake3::hash(&grown[..100]).as_bytes(),
            mtime_ns: 1,
            base: None,
            kept: 0,
            chunks: vec![ChunkRef {
                id: orphan,
                len: 100,
            }],
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::StaleBase(_)), "{e}");
    assert!(e.to_string().contains("push the whole chunk list"), "{e}");
    assert_eq!(store.has_chunks(&[orphan]).unwrap(), vec![false]);
    // Refused, and nothing of it kept: bytes that are not what the piece is named, and an
    // "extension" no longer than its base.
    let e = batch
        .add_piece(
            ChunkId::of(b"a lie"),
            grown.len() as u32,
            Kind::Extends,
            first_id,
            None,
            &p.frame,
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e}");
    let e = batch
        .add_piece(
            first_id,
            first.len() as u32,
            Kind::Extends,
            grown_id,
            None,
            &p.frame,
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e}");
}

#[test]
fn a_chain_of_appends_starts_again_within_its_bounds() {
    chain_of_appends(false);
}

/// The same, each append's piece and version in one batch, as a client sends them: the
/// version rows hold the pieces (format 8), and bound their chains the same way.
#[test]
fn a_chain_of_held_appends_starts_again_within_its_bounds() {
    chain_of_appends(true);
}

fn chain_of_appends(one_batch: bool) {
    use hoover_store::{Kind, MAX_DECODE_BYTES, MAX_HOPS};
    use hoover_types::ChunkId;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("lap/c/grow.jsonl").unwrap();
    let mut rng = Rng(5);
    let mut data = rng.bytes(100);
    let mut last = ChunkId::of(&data);
    let mut batch = store.batch();
    batch
        .add_chunk(last, data.len() as u32, &hoover_chunk::compress(&data))
        .unwrap();
    batch.commit().unwrap();
    let mut seq = commit_version(
        &store,
        &key,
        &data,
        None,
        0,
        vec![ChunkRef {
            id: last,
            len: data.len() as u32,
        }],
    );
    let mut alone_again = 0;
    // 300 appends of 10 bytes, each re-cutting the one chunk: more than MAX_HOPS pieces.
    for _ in 0..300 {
        let before = data.clone();
        data.extend_from_slice(&rng.bytes(10));
        let p = hoover_chunk::piece(&data, Some((last, &before)), None, true);
        let id = ChunkId::of(&data);
        let chunks = vec![ChunkRef {
            id,
            len: data.len() as u32,
        }];
        if one_batch {
            seq = held_append(&store, &key, &data, seq, 0, chunks, &p, last);
        } else {
            store_piece(&store, &data, &p, last);
            seq = commit_version(&store, &key, &data, Some(seq), 0, chunks);
        }
        let (kind, hops, bytes) = store.chunk_piece(&id).unwrap().unwrap();
        assert!(hops <= MAX_HOPS && bytes <= MAX_DECODE_BYTES);
        if kind == Kind::Alone {
            alone_again += 1;
        }
        last = id;
    }
    assert_eq!(alone_again, 1, "the chain started again once, at its bound");
    assert_eq!(read(&store, &key, seq), data);
    assert_eq!(read(&store, &key, 150), data[..100 + 149 * 10]);
    assert!(store.verify(|_, _, _| {}).unwrap().is_clean());
    drop(store);
    let store = Store::open_to_read(dir.path()).unwrap();
    assert_eq!(read(&store, &key, 200), data[..100 + 199 * 10]);
}

/// Commits `data` as the version after `seq` that keeps `kept` chunks and adds `chunks`, the
/// first of them sent as `piece` on `base`, all in one batch (as a client sends an append).
#[allow(clippy::too_many_arguments)]
fn held_append(
    store: &Store,
    key: &Key,
    data: &[u8],
    seq: u64,
    kept: u64,
    chunks: Vec<ChunkRef>,
    piece: &hoover_chunk::Piece,
    base: hoover_types::ChunkId,
) -> u64 {
    let mut batch = store.batch();
    let first = chunks[0];
    batch
        .add_piece(
            first.id,
            first.len,
            piece.kind,
            base,
            piece.context,
            &piece.frame,
        )
        .unwrap();
    batch
        .add_version(NewVersion {
            key: key.clone(),
            size: data.len() as u64,
            blake3: *blake3::hash(data).as_bytes(),
            mtime_ns: 1,
            base: Some(seq),
            kept,
            chunks,
        })
        .unwrap();
    batch.commit().unwrap()[0].seq
}

/// Format 3: an append to a short last chunk is compressed knowing the chunk before it (its
/// context). The store takes such a piece when reading its base decodes the context anyway,
/// stores it as a plain extension when not, and refuses a context nobody sent.
#[test]
fn appending_pieces_decode_through_their_context() {
    use hoover_store::Kind;
    use hoover_types::ChunkId;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("lap/c/cut.jsonl").unwrap();
    let mut rng = Rng(9);
    // The text before the cut, and a short last chunk just cut after it.
    let before = rng.bytes(40_000);
    let last = rng.bytes(3_000);
    let (before_id, last_id) = (ChunkId::of(&before), ChunkId::of(&last));
    let follows = hoover_chunk::piece(&last, None, Some((before_id, &before)), true);
    let mut batch = store.batch();
    batch
        .add_chunk(
            before_id,
            before.len() as u32,
            &hoover_chunk::compress(&before),
        )
        .unwrap();
    batch
        .add_piece(
            last_id,
            last.len() as u32,
            follows.kind,
            before_id,
            None,
            &follows.frame,
        )
        .unwrap();
    batch.commit().unwrap();
    let refs = |chunks: &[&[u8]]| -> Vec<ChunkRef> {
        chunks
            .iter()
            .map(|c| ChunkRef {
                id: ChunkId::of(c),
                len: c.len() as u32,
            })
            .collect()
    };
    let mut seq = commit_version(
        &store,
        &key,
        &[&before[..], &last[..]].concat(),
        None,
        0,
        refs(&[&before, &last]),
    );

    // Two appends that repeat the text before the cut: each costs little, in its context.
    let mut tail = last.clone();
    let mut tail_id = last_id;
    for (n, from) in [(4_000, 10_000), (2_000, 30_000)] {
        let grown = [&tail[..], &before[from..from + n]].concat();
        let p = hoover_chunk::piece(
            &grown,
            Some((tail_id, &tail)),
            Some((before_id, &before)),
            true,
        );
        assert_eq!(p.kind, Kind::Appends);
        assert!(
            p.frame.len() < n / 10,
            "{} bytes for {n} repeated",
            p.frame.len()
        );
        let packs_before: u64 = pack_files(dir.path()).iter().map(|(_, n)| n).sum();
        let (grown_id, kind) = store_piece(&store, &grown, &p, tail_id);
        assert_eq!(kind, Kind::Appends);
        // Format 8: its record is its two lengths and its kind; its base is named by its row
        // (format 6 named it in the record), the context is found through the base, the
        // chunk's name is its row's. Format 9: the frame goes without zstd's magic number.
        let packs_after: u64 = pack_files(dir.path()).iter().map(|(_, n)| n).sum();
        assert!(p.frame.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
        assert_eq!(
            packs_after - packs_before,
            p.frame.len() as u64 - 4 + 4 + 4 + 1
        );
        let content = [&before[..], &grown[..]].concat();
        seq = commit_version(&store, &key, &content, Some(seq), 1, refs(&[&grown]));
        assert_eq!(read(&store, &key, seq), content);
        (tail, tail_id) = (grown, grown_id);
    }

    // A context the base does not decode through (another stored chunk): the piece is taken
    // and stored as an extension of its base alone, so reading it decodes nothing more.
    let grown = [&tail[..], &before[..500]].concat();
    let p = hoover_chunk::piece(&grown, Some((tail_id, &tail)), Some((last_id, &last)), true);
    let (grown_id, kind) = store_piece(&store, &grown, &p, tail_id);
    assert_eq!(kind, Kind::Extends);
    let content = [&before[..], &grown[..]].concat();
    seq = commit_version(&store, &key, &content, Some(seq), 1, refs(&[&grown]));

    // A context nobody sent: the piece is not taken, and its version is sent back as stale
    // (push the whole chunk list). Refused: a context on a piece that does not append, and an
    // appending piece without one.
    let more = [&grown[..], b"more"].concat();
    let q = hoover_chunk::piece(
        &more,
        Some((grown_id, &grown)),
        Some((before_id, &before)),
        true,
    );
    let mut batch = store.batch();
    let stranger = Some(ChunkId::of(b"never sent"));
    let more_id = ChunkId::of(&more);
    batch
        .add_piece(
            more_id,
            more.len() as u32,
            Kind::Appends,
            grown_id,
            stranger,
            &q.frame,
        )
        .unwrap();
    let whole = [&before[..], &more[..]].concat();
    let e = batch
        .add_version(NewVersion {
            key: key.clone(),
            size: whole.len() as u64,
            blake3: *blake3::hash(&whole).as_bytes(),
            mtime_ns: 1,
            base: Some(seq),
            kept: 1,
            chunks: refs(&[&more]),
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::StaleBase(_)), "{e}");
    for (kind, context) in [(Kind::Extends, Some(before_id)), (Kind::Appends, None)] {
        let e = batch
            .add_piece(
                ChunkId::of(&more),
                more.len() as u32,
                kind,
                grown_id,
                context,
                &q.frame,
            )
            .unwrap_err();
        assert!(matches!(e, StoreError::Refused(_)), "{e}");
    }
    drop(batch);

    // Read cold by a new process's store, and checked by verify.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read(&store, &key, seq), content);
    assert_eq!(
        read(&store, &key, 2),
        [&before[..], &last[..], &before[10_000..14_000]].concat()
    );
    assert!(store.verify(|_, _, _| {}).unwrap().is_clean());
}

/// Format 6: an appending piece's record leaves its context out; it is what the piece's base
/// decodes just before its own pieces, found through the chain of appends under it. A long
/// chain of appends in one context reads back cold (a new store, nothing remembered), takes
/// one more append checked against that chain, and verifies.
#[test]
fn a_long_chain_of_appends_finds_its_context_through_its_bases() {
    use hoover_store::Kind;
    use hoover_types::ChunkId;
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new("lap/c/long.jsonl").unwrap();
    let mut rng = Rng(13);
    let before = rng.bytes(30_000);
    let before_id = ChunkId::of(&before);
    let mut tail = rng.bytes(2_000);
    let mut tail_id = ChunkId::of(&tail);
    let append = |store: &Store, tail: &[u8], tail_id: ChunkId, seq: u64, n: usize| {
        let grown = [tail, &before[n..n + 700]].concat();
        let p = hoover_chunk::piece(
            &grown,
            Some((tail_id, tail)),
            Some((before_id, &before)),
            true,
        );
        assert_eq!(p.kind, Kind::Appends);
        let (grown_id, kind) = store_piece(store, &grown, &p, tail_id);
        assert_eq!(kind, Kind::Appends, "append {n}: taken in its context");
        let content = [&before[..], &grown[..]].concat();
        let grown_ref = ChunkRef {
            id: grown_id,
            len: grown.len() as u32,
        };
        let seq = commit_version(store, &key, &content, Some(seq), 1, vec![grown_ref]);
        (grown, grown_id, seq, content)
    };
    let mut contents = Vec::new();
    let mut seq;
    {
        let store = Store::open(dir.path()).unwrap();
        let follows = hoover_chunk::piece(&tail, None, Some((before_id, &before)), true);
        let mut batch = store.batch();
        batch
            .add_chunk(before_id, 30_000, &hoover_chunk::compress(&before))
            .unwrap();
        batch
            .add_piece(
                tail_id,
                2_000,
                follows.kind,
                before_id,
                None,
                &follows.frame,
            )
            .unwrap();
        batch.commit().unwrap();
        let both = vec![
            ChunkRef {
                id: before_id,
                len: 30_000,
            },
            ChunkRef {
                id: tail_id,
                len: 2_000,
            },
        ];
        let content = [&before[..], &tail[..]].concat();
        seq = commit_version(&store, &key, &content, None, 0, both);
        contents.push(content);
        for n in 0..40 {
            let content;
            (tail, tail_id, seq, content) = append(&store, &tail, tail_id, seq, n * 700);
            contents.push(content);
        }
    }
    // Cold: every version reads back, and the next append is checked against a chain of 40
    // appending pieces whose context no record names.
    let store = Store::open(dir.path()).unwrap();
    for (i, content) in contents.iter().enumerate().rev() {
        assert!(
            read(&store, &key, i as u64 + 1) == *content,
            "version {}",
            i + 1
        );
    }
    drop(store);
    let store = Store::open_to_read(dir.path()).unwrap();
    assert!(read(&store, &key, seq) == contents[40]);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let (_, _, seq, content) = append(&store, &tail, tail_id, seq, 28_000);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(read(&store, &key, seq) == content);
    assert!(store.verify(|_, _, _| {}).unwrap().is_clean());
}

/// Format 3: a first sync's chunks of several files arrive as one group, one frame of their
/// bytes back to back. Each reads back on its own, pieces go on top of them (an append in the
/// context of the chunk before it in the group), and a group that lies about its chunks is
/// refused with nothing of it kept.
#[test]
fn a_group_of_chunks_of_several_files_reads_back_and_takes_pieces_on_top() {
    use hoover_store::Kind;
    use hoover_types::{ChunkId, MAX_GROUP_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = Rng(17);
    let a = rng.bytes(150_000);
    let b = rng.bytes(60_000);
    let (ka, kb) = (
        Key::new("lap/c/a.jsonl").unwrap(),
        Key::new("lap/c/b.jsonl").unwrap(),
    );
    let refs = |data: &[u8]| -> Vec<ChunkRef> {
        hoover_chunk::cut(data, 0)
            .iter()
            .map(|c| c.chunk_ref())
            .collect()
    };
    let (ra, rb) = (refs(&a), refs(&b));
    assert!(ra.len() >= 3 && rb.len() >= 2, "{} {}", ra.len(), rb.len());
    let all: Vec<ChunkRef> = ra.iter().chain(&rb).copied().collect();
    let bytes = [&a[..], &b[..]].concat();
    let frame = hoover_chunk::compress_against(&[], &bytes, hoover_chunk::PIECE_LEVEL);

    // Refused, and nothing of it kept: a chunk named wrongly, lengths that do not add up to
    // what the frame decodes to, and more than a group may hold.
    let mut batch = store.batch();
    let mut lying = all.clone();
    lying[1].id = ChunkId::of(b"a lie");
    let e = batch.add_group(&lying, &frame).unwrap_err();
    assert!(e.to_string().contains("hash"), "{e}");
    let mut short = all.clone();
    short.pop();
    let e = batch.add_group(&short, &frame).unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e}");
    let big = vec![
        ChunkRef {
            id: ChunkId::of(b"x"),
            len: 200_000
        };
        MAX_GROUP_BYTES / 200_000 + 1
    ];
    let e = batch.add_group(&big, &frame).unwrap_err();
    assert!(e.to_string().contains("a group holds"), "{e}");
    drop(batch);
    assert!(!store.has_chunks(&[all[0].id]).unwrap()[0]);

    let mut batch = store.batch();
    batch.add_group(&all, &frame).unwrap();
    batch.commit().unwrap();
    assert!(
        (frame.len() as f64) < 0.6 * bytes.len() as f64,
        "one frame for all"
    );
    let va = commit_version(&store, &ka, &a, None, 0, ra.clone());
    let vb = commit_version(&store, &kb, &b, None, 0, rb.clone());
    assert_eq!(read(&store, &ka, va), a);
    assert_eq!(read(&store, &kb, vb), b);
    for c in &all {
        assert_eq!(store.chunk_piece(&c.id).unwrap().unwrap().0, Kind::Grouped);
    }
    // The counters see the group's frame once, not once per chunk, the same live and counted
    // afresh from the log.
    let counts = store.counts().unwrap();
    assert_eq!(counts.chunk_stored_bytes, frame.len() as u64);
    assert_eq!(counts.chunk_raw_bytes, bytes.len() as u64);

    // An append to b's last chunk, in the context of the chunk before it in the group: stored
    // as an appending piece, since reading the base decodes its group anyway.
    let last = *rb.last().unwrap();
    let before = rb[rb.len() - 2];
    let last_at = (b.len() - last.len as usize, b.len());
    let before_at = last_at.0 - before.len as usize;
    let grown = [&b[last_at.0..], &b[before_at..before_at + 3000]].concat();
    let p = hoover_chunk::piece(
        &grown,
        Some((last.id, &b[last_at.0..])),
        Some((before.id, &b[before_at..last_at.0])),
        true,
    );
    assert_eq!(p.kind, Kind::Appends);
    let (grown_id, kind) = store_piece(&store, &grown, &p, last.id);
    assert_eq!(kind, Kind::Appends);
    let b2 = [&b[..], &b[before_at..before_at + 3000]].concat();
    let kept = rb.len() as u64 - 1;
    let grown_ref = ChunkRef {
        id: grown_id,
        len: grown.len() as u32,
    };
    let vb2 = commit_version(&store, &kb, &b2, Some(vb), kept, vec![grown_ref]);

    // Read cold, through a restore's frames, and by verify.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let stored = store.counts().unwrap().chunk_stored_bytes;
    // The piece's frame is stored without its magic number (format 9), the group's whole.
    assert_eq!(stored, frame.len() as u64 + p.frame.len() as u64 - 4);
    assert_eq!(read(&store, &kb, vb2), b2);
    assert_eq!(read(&store, &ka, va), a);
    let mut frames = store.frame_reader();
    let mut sent_groups = 0;
    for c in &ra {
        if let hoover_store::Frame::FromGroup { group, .. } = frames.frame(c, 3).unwrap() {
            sent_groups += group.is_some() as usize;
        } else {
            panic!("a grouped chunk goes to a 1.3 client as a slice of its group");
        }
    }
    assert_eq!(
        sent_groups, 1,
        "the group goes once for a run of its chunks"
    );
    assert!(matches!(
        store.frame_reader().frame(&ra[0], 2).unwrap(),
        hoover_store::Frame::Alone(_)
    ));
    let report = store.verify(|_, _, _| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// A file of many groups in one batch, more than the batch keeps in memory (64 MiB, and the
/// last 20 MiB of what it staged past that): checking
/// its version reads the chunks past that back from the batch's pack, a group decoded once
/// for a run of its chunks; every chunk reads back right, there and after the commit.
#[test]
fn a_file_of_many_groups_past_the_batch_memory_checks_and_reads_back() {
    use hoover_types::{MAX_GROUP_BYTES, MAX_GROUP_CHUNKS};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("lap/c/big.jsonl").unwrap();
    let data = Rng(29).bytes(110 << 20);
    let cuts = cut(&data, 0);
    let mut batch = store.batch();
    let mut groups = 0;
    let mut rest = &cuts[..];
    while !rest.is_empty() {
        let mut bytes = 0usize;
        let n = rest
            .iter()
            .take(MAX_GROUP_CHUNKS)
            .take_while(|c| {
                bytes += c.len as usize;
                bytes <= MAX_GROUP_BYTES
            })
            .count();
        let (group, after) = rest.split_at(n);
        let parts: Vec<&[u8]> = group.iter().map(|c| c.slice(&data)).collect();
        let refs: Vec<ChunkRef> = group.iter().map(Cut::chunk_ref).collect();
        let frame =
            hoover_chunk::compress_parts(&parts, hoover_chunk::PIECE_LEVEL, &mut Vec::new());
        batch.add_group(&refs, &frame).unwrap();
        groups += 1;
        rest = after;
    }
    assert!(groups >= 10, "{groups} groups");
    batch
        .add_version(NewVersion {
            key: key.clone(),
            size: data.len() as u64,
            blake3: *blake3::hash(&data).as_bytes(),
            mtime_ns: 1,
            base: None,
            kept: 0,
            chunks: cuts.iter().map(Cut::chunk_ref).collect(),
        })
        .unwrap();
    assert_eq!(batch.commit().unwrap()[0].seq, 1);
    let mut out = Vec::new();
    store.read_version(&key, 1, &mut out).unwrap();
    assert!(out == data, "the version reads back byte for byte");
}

#[test]
fn subscribers_hear_each_new_version_in_commit_order_until_they_stop_listening() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, b) = (Key::new("m/r/a").unwrap(), Key::new("m/r/b").unwrap());
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let all = heard.clone();
    store.on_commit(move |c| {
        all.lock()
            .unwrap()
            .extend(c.iter().map(|c| (c.key.clone(), c.seq, c.new)));
        true
    });
    let once = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = once.clone();
    store.on_commit(move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        false
    });
    let (_, first) = push(&store, &a, b"one", None);
    push(&store, &b, b"other", None);
    // The same content again adds no version: nothing to tell.
    push(&store, &a, b"one", Some((1, &first)));
    push(&store, &a, b"one, two", Some((1, &first)));
    assert_eq!(
        *heard.lock().unwrap(),
        vec![
            (a.clone(), 1, true),
            (b.clone(), 1, true),
            (a.clone(), 2, true)
        ]
    );
    assert_eq!(once.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Stores `chunk` alone, in a batch of its own; returns how a version names it.
fn store_chunk(store: &Store, chunk: &[u8]) -> ChunkRef {
    let (id, len) = (hoover_types::ChunkId::of(chunk), chunk.len() as u32);
    let mut batch = store.batch();
    batch
        .add_chunk(id, len, &hoover_chunk::compress(chunk))
        .unwrap();
    batch.commit().unwrap();
    ChunkRef { id, len }
}

#[test]
fn a_version_that_adds_its_last_chunk_names_it_in_its_row_until_the_next_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("m/r/tails.jsonl").unwrap();
    let mut rng = Rng(7);
    let [a, b, b2, c, d, e, f] = std::array::from_fn(|_| rng.bytes(3000));
    // Each version: how many chunks of the one before it keeps, what it adds.
    let steps: [(u64, Vec<&[u8]>); 8] = [
        (0, vec![&a]),     // 1: a
        (1, vec![&b]),     // 2: a b       (keeps 1's last chunk)
        (1, vec![&b2]),    // 3: a b2      (re-cuts 2's last chunk)
        (2, vec![&c]),     // 4: a b2 c    (keeps 3's)
        (3, vec![&d, &e]), // 5: a b2 c d e (keeps 4's, adds two)
        (1, vec![]),       // 6: a         (cut back)
        (1, vec![&f]),     // 7: a f
        (2, vec![&b]),     // 8: a f b     (keeps 7's; a chunk the store holds)
    ];
    let mut history: Vec<Vec<u8>> = Vec::new();
    let mut chunks: Vec<&[u8]> = Vec::new();
    for (kept, new) in &steps {
        chunks.truncate(*kept as usize);
        chunks.extend(new.iter().copied());
        let data = chunks.concat();
        let base = (!history.is_empty()).then_some(history.len() as u64);
        let refs = new.iter().map(|c| store_chunk(&store, c)).collect();
        let seq = commit_version(&store, &key, &data, base, *kept, refs);
        assert_eq!(seq, history.len() as u64 + 1);
        history.push(data);
    }
    let check = |store: &Store| {
        for (i, data) in history.iter().enumerate() {
            assert!(
                read(store, &key, i as u64 + 1) == *data,
                "version {}",
                i + 1
            );
        }
        // Version 4's bytes across its kept chunk and the one its row names.
        let range: Vec<u8> = store
            .read_range(&key, 4, 5000, Some(7000))
            .unwrap()
            .flat_map(Result::unwrap)
            .collect();
        assert!(range == history[3][5000..7000]);
        assert_eq!(store.kept_bytes(&key, 8).unwrap(), 6000);
    };
    check(&store);
    let report = store.verify(|_, _, _| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.versions_checked, 8);

    // One entry per chunk a later version keeps from a version that named it in its row
    // (a, b2, c, f), and one for each chunk of a version that added two (d, e): 6, not the
    // 10 chunks the versions added.
    let log = rusqlite::Connection::open(dir.path().join("versions.db")).unwrap();
    let count = |sql: &str| -> i64 { log.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM entries"), 6);
    assert_eq!(
        count("SELECT COUNT(*) FROM versions WHERE tail IS NOT NULL"),
        6
    );
    drop(store);
    check(&Store::open(dir.path()).unwrap());
    check(&Store::open_to_read(dir.path()).unwrap());

    // A damaged log (a version naming a last chunk of none) is an error, not a subtraction.
    log.execute("UPDATE versions SET chunk_count = 0 WHERE seq = 7", [])
        .unwrap();
    drop(log);
    let store = Store::open(dir.path()).unwrap();
    let err = store.read_version(&key, 7, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(read(&store, &key, 8) == history[7]);
}

/// Format 8: an append sent as a client sends it (its piece and its version in one batch) is
/// held by its version row, with no `chunks` row, until something names it by id: another
/// version naming it, a later version keeping it, a piece stored on it. Every version reads
/// back in the writer, after reopening (the next append's base found in the log) and
/// read-only; a restore's frames, totals and `verify` count held chunks too.
#[test]
fn an_appends_last_chunk_is_held_by_its_version_row_until_something_names_it() {
    use hoover_store::Kind;
    use hoover_types::ChunkId;
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new("m/r/held.jsonl").unwrap();
    let mut rng = Rng(17);
    let before = rng.bytes(30_000);
    let before_id = ChunkId::of(&before);
    let text = rng.bytes(200_000);
    let mut history: Vec<Vec<u8>> = Vec::new();
    let mut tail = text[..2_000].to_vec();
    let mut at = 2_000;
    let store = Store::open(dir.path()).unwrap();
    {
        let follows = hoover_chunk::piece(&tail, None, Some((before_id, &before)), true);
        let mut batch = store.batch();
        batch
            .add_chunk(before_id, 30_000, &hoover_chunk::compress(&before))
            .unwrap();
        let tail_id = ChunkId::of(&tail);
        batch
            .add_piece(
                tail_id,
                2_000,
                follows.kind,
                before_id,
                None,
                &follows.frame,
            )
            .unwrap();
        batch.commit().unwrap();
        let content = [&before[..], &tail[..]].concat();
        let both = vec![
            ChunkRef {
                id: before_id,
                len: 30_000,
            },
            ChunkRef {
                id: tail_id,
                len: 2_000,
            },
        ];
        commit_version(&store, &key, &content, None, 0, both);
        history.push(content);
    }
    // Appends 700 bytes to the last chunk, in the context of the chunk before it.
    let mut append = |store: &Store, tail: &mut Vec<u8>, history: &mut Vec<Vec<u8>>| {
        let grown = [&tail[..], &text[at..at + 700]].concat();
        at += 700;
        let p = hoover_chunk::piece(
            &grown,
            Some((ChunkId::of(tail), tail)),
            Some((before_id, &before)),
            true,
        );
        assert_eq!(p.kind, Kind::Appends);
        let content = [&before[..], &grown[..]].concat();
        let grown_ref = ChunkRef {
            id: ChunkId::of(&grown),
            len: grown.len() as u32,
        };
        let seq = history.len() as u64;
        let base = ChunkId::of(tail);
        let new = held_append(store, &key, &content, seq, 1, vec![grown_ref], &p, base);
        assert_eq!(new, seq + 1);
        history.push(content);
        *tail = grown;
        grown_ref
    };
    let log = rusqlite::Connection::open(dir.path().join("versions.db")).unwrap();
    let count = |sql: &str| -> i64 { log.query_row(sql, [], |r| r.get(0)).unwrap() };
    let has_row = |id: ChunkId| -> bool {
        log.query_row(
            "SELECT COUNT(*) FROM chunks WHERE id = ?1",
            [&id.0[..]],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    };
    let mut appended = Vec::new();
    for _ in 0..10 {
        appended.push(append(&store, &mut tail, &mut history));
    }
    // Versions 2 to 11 hold their pieces; only version 1's two chunks have rows.
    assert_eq!(
        count("SELECT COUNT(*) FROM versions WHERE tail_pack IS NOT NULL"),
        10
    );
    assert_eq!(count("SELECT COUNT(*) FROM chunks"), 2);
    // Format 9: only the latest's row names its chunk; versions 2 to 10 forgot theirs.
    assert_eq!(
        count("SELECT COUNT(*) FROM versions WHERE tail_pack IS NOT NULL AND tail IS NULL"),
        9
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM versions WHERE tail_pack IS NOT NULL AND tail IS NOT NULL AND seq = 11"),
        1
    );
    // The latest is what a client may name (its next append's base); older ones are not.
    let (latest, older) = (appended[9].id, appended[8].id);
    assert_eq!(
        store.has_chunks(&[latest, older]).unwrap(),
        vec![true, false]
    );
    assert_eq!(
        store.chunk_piece(&latest).unwrap().unwrap().0,
        Kind::Appends
    );

    let sixth = appended[4];
    let check = |store: &Store, history: &[Vec<u8>]| {
        for (i, data) in history.iter().enumerate() {
            let seq = i as u64 + 1;
            assert!(read(store, &key, seq) == *data, "version {seq}");
        }
        // Bytes across the chunk before and a held last chunk.
        let range: Vec<u8> = store
            .read_range(&key, 5, 29_000, Some(32_500))
            .unwrap()
            .flat_map(Result::unwrap)
            .collect();
        assert!(range == history[4][29_000..32_500]);
        // A restore's frames: each decodes to its chunk. Version 6's row forgot its last
        // chunk's id; the list names it anyway (a client checks what it restores by name).
        let (chunks, mut frames) = store.version_frames(&key, 6).unwrap();
        let named = vec![
            ChunkRef {
                id: before_id,
                len: 30_000,
            },
            sixth,
        ];
        assert_eq!(chunks, named);
        assert_eq!(store.version_chunks(&key, 6).unwrap(), named);
        let mut restored = Vec::new();
        for chunk in &chunks {
            match frames.frame(chunk, 5).unwrap() {
                hoover_store::Frame::Alone(f) => {
                    restored.extend(hoover_chunk::decompress(&f).unwrap());
                }
                _ => panic!("chunks stored alone or on a base are sent alone"),
            }
        }
        assert!(restored == history[5]);
        let report = store.verify(|_, _, _| {}).unwrap();
        assert!(report.is_clean(), "{report:?}");
        let others = store
            .versions(&Key::new("m/r/copy.jsonl").unwrap())
            .unwrap();
        let all = history.len() + others.len();
        assert_eq!(report.versions_checked, all as u64);
    };
    check(&store, &history);
    let counted = store.counts().unwrap();
    assert_eq!(counted.chunks, 12);
    drop(store);

    // After a restart the next append's base (held by the latest version) is found in the log.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.counts().unwrap(), counted);
    for _ in 0..5 {
        appended.push(append(&store, &mut tail, &mut history));
    }
    check(&store, &history);
    assert_eq!(count("SELECT COUNT(*) FROM chunks"), 2);

    // Another file names the latest by id, without sending it: it gets its `chunks` row.
    let other = Key::new("m/r/copy.jsonl").unwrap();
    let named = appended[14];
    assert_eq!(store.has_chunks(&[named.id]).unwrap(), vec![true]);
    commit_version(&store, &other, &tail, None, 0, vec![named]);
    assert!(has_row(named.id));
    assert!(read(&store, &other, 1) == tail);

    // A version that keeps the last chunk and adds one after it (a content boundary at the
    // old end), its new chunk a piece on the held one: both name it by id.
    let kept = append(&store, &mut tail, &mut history);
    assert!(!has_row(kept.id));
    let next = text[at..at + 3_000].to_vec();
    let follows = hoover_chunk::piece(&next, None, Some((kept.id, &tail)), true);
    assert_eq!(follows.kind, Kind::Follows);
    let content = [&history.last().unwrap()[..], &next[..]].concat();
    let next_ref = ChunkRef {
        id: ChunkId::of(&next),
        len: 3_000,
    };
    let seq = history.len() as u64;
    let new = held_append(
        &store,
        &key,
        &content,
        seq,
        2,
        vec![next_ref],
        &follows,
        kept.id,
    );
    assert_eq!(new, seq + 1);
    history.push(content);
    assert!(has_row(kept.id) && has_row(next_ref.id));
    check(&store, &history);
    let totals = store.counts().unwrap();
    drop(store);
    check(&Store::open_to_read(dir.path()).unwrap(), &history);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.counts().unwrap(), totals);
    check(&store, &history);

    // A damaged version row (its held piece not whole) is an error, not a guess.
    log.execute("UPDATE versions SET tail_stored = NULL WHERE seq = 5", [])
        .unwrap();
    let err = store.read_version(&key, 5, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(read(&store, &key, 4) == history[3]);

    // So is a `chunks` row that names a bare record's base wrongly, or not as an id.
    let last = history.len() as u64;
    for base in [&before_id.0[..], &[0u8][..]] {
        log.execute(
            "UPDATE chunks SET base = ?1 WHERE id = ?2",
            rusqlite::params![base, &next_ref.id.0[..]],
        )
        .unwrap();
        let err = store.read_version(&key, last, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }
    let report = store.verify(|_, _, _| {}).unwrap();
    assert!(!report.is_clean());
}

/// A batch whose version turns out stale (another client committed first) keeps its chunks:
/// an append's piece that its version row would have held gets its `chunks` row instead, and
/// so does its base, held by the version before (that row names it by id).
#[test]
fn a_held_append_whose_version_turns_stale_keeps_its_piece_as_a_chunk() {
    use hoover_types::ChunkId;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = Key::new("m/r/race.jsonl").unwrap();
    let mut rng = Rng(23);
    let zero = rng.bytes(4_000);
    let zero_ref = store_chunk(&store, &zero);
    commit_version(&store, &key, &zero, None, 0, vec![zero_ref]);
    // Version 2 holds its piece: the base of both racing appends has no `chunks` row.
    let first = [&zero[..], &rng.bytes(1_000)[..]].concat();
    let first_ref = ChunkRef {
        id: ChunkId::of(&first),
        len: first.len() as u32,
    };
    let p = hoover_chunk::piece(&first, Some((zero_ref.id, &zero)), None, true);
    held_append(&store, &key, &first, 1, 0, vec![first_ref], &p, zero_ref.id);
    let log = rusqlite::Connection::open(dir.path().join("versions.db")).unwrap();
    let rows = |id: ChunkId| -> i64 {
        log.query_row(
            "SELECT COUNT(*) FROM chunks WHERE id = ?1",
            [&id.0[..]],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(rows(first_ref.id), 0);
    let mut batches = Vec::new();
    let mut grown_all = Vec::new();
    for _ in 0..2 {
        let grown = [&first[..], &rng.bytes(800)[..]].concat();
        let p = hoover_chunk::piece(&grown, Some((first_ref.id, &first)), None, true);
        let grown_ref = ChunkRef {
            id: ChunkId::of(&grown),
            len: grown.len() as u32,
        };
        let mut batch = store.batch();
        batch
            .add_piece(
                grown_ref.id,
                grown_ref.len,
                p.kind,
                first_ref.id,
                None,
                &p.frame,
            )
            .unwrap();
        batch
            .add_version(NewVersion {
                key: key.clone(),
                size: grown.len() as u64,
                blake3: *blake3::hash(&grown).as_bytes(),
                mtime_ns: 1,
                base: Some(2),
                kept: 0,
                chunks: vec![grown_ref],
            })
            .unwrap();
        batches.push(batch);
        grown_all.push((grown, grown_ref));
    }
    let second = batches.pop().unwrap();
    batches.pop().unwrap().commit().unwrap();
    // Version 2 is no longer the latest: its row forgot its chunk's id (format 9).
    let named_2 = || -> (bool, bool) {
        log.query_row(
            "SELECT tail IS NOT NULL, tail_hops IS NOT NULL FROM versions WHERE seq = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    assert_eq!(named_2(), (false, false));
    let err = second.commit().unwrap_err();
    assert!(matches!(err, StoreError::StaleBase(_)), "{err}");
    // The loser's piece names it by id: it is named again, and has its `chunks` row.
    assert_eq!(named_2(), (true, true));
    assert_eq!(
        rows(grown_all[1].1.id),
        1,
        "the stale batch's piece is a chunk"
    );
    assert_eq!(rows(first_ref.id), 1, "and so is its base");
    assert_eq!(rows(grown_all[0].1.id), 0, "the winner's is held");
    assert_eq!(read(&store, &key, 3), grown_all[0].0);
    // The second client pushes again on the new base: its chunk is stored already.
    assert_eq!(store.has_chunks(&[grown_all[1].1.id]).unwrap(), vec![true]);
    let again = commit_version(
        &store,
        &key,
        &grown_all[1].0,
        Some(3),
        0,
        vec![grown_all[1].1],
    );
    assert_eq!(read(&store, &key, again), grown_all[1].0);
    let report = store.verify(|_, _, _| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
    drop(store);
    let store = Store::open_to_read(dir.path()).unwrap();
    for (seq, data) in [(2, &first), (3, &grown_all[0].0), (4, &grown_all[1].0)] {
        assert!(read(&store, &key, seq) == *data, "version {seq}");
    }
}
