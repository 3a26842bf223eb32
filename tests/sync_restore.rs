//! End to end: the real `hoover` binary, a real server over SSH on loopback, real files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hoover_testkit::{corpus, World};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files")
}

/// Copies the shared corpus and some generated transcripts into `dir`.
fn make_tree(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let src = corpus_dir();
    for entry in walk(&src) {
        let rel = entry.strip_prefix(&src).unwrap();
        let dest = dir.join("shared").join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &dest).unwrap();
        files.push(dest);
    }
    assert!(
        files.len() > 100,
        "the shared corpus should be beside the project"
    );
    files.extend(corpus::write_tree(
        &dir.join("generated"),
        42,
        20,
        6_000_000,
    ));
    files
}

/// The transcripts under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    hoover_testkit::files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect()
}

fn key_of(root: &Path, path: &Path) -> String {
    format!(
        "laptop/claude/{}",
        path.strip_prefix(root).unwrap().to_str().unwrap()
    )
}

fn sync(world: &World, root: &Path) -> serde_json::Value {
    world.json(&[
        "sync",
        "--source",
        "laptop",
        "--root",
        &format!("claude={}", root.display()),
    ])
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn every_version_of_every_file_restores_byte_for_byte() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    let files = make_tree(&root);
    // Every version the server should hold, per key, oldest first.
    let mut history: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let record = |files: &[PathBuf], history: &mut BTreeMap<String, Vec<Vec<u8>>>| {
        for f in files {
            if !f.exists() {
                continue;
            }
            let data = std::fs::read(f).unwrap();
            let versions = history.entry(key_of(&root, f)).or_default();
            if versions.last() != Some(&data) {
                versions.push(data);
            }
        }
    };

    let first = sync(&world, &root);
    record(&files, &mut history);
    assert_eq!(first["files_scanned"], files.len() as u64);
    assert_eq!(first["versions_new"], files.len() as u64);
    assert!(first["chunks_sent"].as_u64().unwrap() > 0);

    // A second sync with no change sends no chunk and makes no version.
    let again = sync(&world, &root);
    assert_eq!(again["chunks_sent"], 0, "{again}");
    assert_eq!(again["versions_new"], 0, "{again}");
    assert_eq!(again["files_changed"], 0, "{again}");

    // Append to some files, change one in the middle, delete one.
    // The largest generated files first, so that appends land on files much bigger than a chunk.
    let mut generated: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.starts_with(root.join("generated")))
        .collect();
    generated.sort_by_key(|f| std::cmp::Reverse(f.metadata().unwrap().len()));
    let mut session = corpus::Session::new(7);
    for f in generated.iter().take(5) {
        append(f, session.next_line().as_bytes());
    }
    let middle = generated[6];
    let mut data = std::fs::read(middle).unwrap();
    let at = data.len() / 2;
    data[at..at + 5].copy_from_slice(b"XXXXX");
    std::fs::write(middle, &data).unwrap();
    let deleted = generated[7].clone();
    std::fs::remove_file(&deleted).unwrap();

    let second = sync(&world, &root);
    record(&files, &mut history);
    assert_eq!(second["versions_new"], 6, "{second}");
    // An append resends only the tail: far fewer bytes than the files hold.
    let appended_bytes: u64 = generated
        .iter()
        .take(5)
        .map(|f| f.metadata().unwrap().len())
        .sum();
    let sent = second["bytes_new"].as_u64().unwrap();
    assert!(
        sent < appended_bytes / 4 && sent < 7 * hoover_types::CHUNK_MAX as u64,
        "sent {} raw bytes for appends to {} bytes of files",
        second["bytes_new"],
        appended_bytes
    );

    // Append twice more to one file so it has several versions.
    for _ in 0..2 {
        append(generated[0], session.next_line().as_bytes());
        sync(&world, &root);
        record(&files, &mut history);
    }

    // Every version of every file, byte for byte, including the deleted file's.
    let out = world.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut restored = 0;
    for (key, versions) in &history {
        let listed = world.json(&["versions", key]);
        assert_eq!(
            listed.as_array().unwrap().len(),
            versions.len(),
            "{key}: {listed}"
        );
        for (i, expected) in versions.iter().enumerate() {
            let n = (i + 1).to_string();
            let path = out.join(format!("v{restored}"));
            world.ok(&[
                "restore",
                key,
                "--version",
                &n,
                "-o",
                path.to_str().unwrap(),
            ]);
            assert!(
                std::fs::read(&path).unwrap() == *expected,
                "{key} version {n} differs"
            );
            restored += 1;
        }
    }
    assert!(restored > files.len());

    // `-o -` writes the bytes to stdout.
    let key = key_of(&root, generated[0]);
    let stdout = world.ok(&["restore", &key, "--version", "1", "-o", "-"]);
    assert!(stdout == history[&key][0]);

    // `-o` onto a file that differs is refused without --force, as with --to; a file that
    // already holds the version is left as it is.
    let mine = out.join("mine");
    std::fs::write(&mine, b"my own notes").unwrap();
    let restore_to_mine = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            key.as_str(),
            "--version",
            "1",
            "-o",
            mine.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        world.run(&args)
    };
    let refused = restore_to_mine(&[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read(&mine).unwrap(), b"my own notes");
    assert!(restore_to_mine(&["--force"]).status.success());
    assert!(std::fs::read(&mine).unwrap() == history[&key][0]);
    let again = restore_to_mine(&[]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    // A version that does not exist is named as the user wrote it.
    let missing = world.run(&["restore", &key, "--version", "99", "-o", "-"]);
    let why = String::from_utf8_lossy(&missing.stderr);
    assert!(
        why.contains("has no version 99") && !why.contains("Seq("),
        "{why}"
    );

    // A date alone means the end of that day here: today's date restores the latest version.
    let today = jiff::Zoned::now().date().to_string();
    let latest = world.ok(&["restore", &key, "--at", &today, "-o", "-"]);
    assert!(latest == *history[&key].last().unwrap(), "--at {today}");

    // A whole tree comes back, the deleted file included, and nothing local is overwritten.
    let tree = world.path().join("tree");
    world.ok(&["restore", "laptop/claude", "--to", tree.to_str().unwrap()]);
    for (key, versions) in &history {
        let rel = key.strip_prefix("laptop/claude/").unwrap();
        assert!(
            std::fs::read(tree.join(rel)).unwrap() == *versions.last().unwrap(),
            "{key}"
        );
    }
    let victim = tree.join(deleted.strip_prefix(&root).unwrap());
    std::fs::write(&victim, b"local edit").unwrap();
    let refused = world.run(&["restore", "laptop/claude", "--to", tree.to_str().unwrap()]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read(&victim).unwrap(), b"local edit");
    world.ok(&[
        "restore",
        "laptop/claude",
        "--to",
        tree.to_str().unwrap(),
        "--force",
    ]);
    assert!(std::fs::read(&victim).unwrap() == *history[&key_of(&root, &deleted)].last().unwrap());

    // `ls --json` lists every key with its version count.
    let listing = world.json(&["ls", "laptop/"]);
    assert_eq!(listing.as_array().unwrap().len(), history.len());
    for item in listing.as_array().unwrap() {
        let key = item["key"].as_str().unwrap();
        assert_eq!(item["versions"], history[key].len() as u64, "{key}");
        assert_eq!(item["size"], history[key].last().unwrap().len() as u64);
    }

    // The store verifies clean.
    let verify = world.json(&["verify", "--store", world.server.store.to_str().unwrap()]);
    assert_eq!(verify["clean"], true, "{verify}");
    assert_eq!(
        verify["versions_checked"],
        history.values().map(|v| v.len() as u64).sum::<u64>()
    );
}

#[test]
fn restore_at_a_time_brings_back_the_tree_as_it_was() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    let files = corpus::write_tree(&root, 9, 3, 300_000);
    let old: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    // Version 1 has an mtime in the past; version 2 is written now.
    let past = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for f in &files {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(past)
            .unwrap();
    }
    sync(&world, &root);
    let mut session = corpus::Session::new(3);
    for f in &files {
        append(f, session.next_line().as_bytes());
    }
    sync(&world, &root);
    let tree = world.path().join("then");
    world.ok(&[
        "restore",
        "laptop",
        "--to",
        tree.to_str().unwrap(),
        "--at",
        "2024-01-01T00:00:00Z",
    ]);
    for (f, data) in files.iter().zip(&old) {
        let rel = format!("claude/{}", f.strip_prefix(&root).unwrap().display());
        assert!(std::fs::read(tree.join(rel)).unwrap() == *data);
    }
    // Before any version existed there is nothing to restore for a single file.
    let key = key_of(&root, &files[0]);
    let early = world.run(&[
        "restore",
        &key,
        "--at",
        "2020-01-01",
        "-o",
        world.path().join("x").to_str().unwrap(),
    ]);
    assert!(!early.status.success());
    let why = String::from_utf8_lossy(&early.stderr);
    assert!(
        why.contains("has no version modified at or before "),
        "{why}"
    );
    assert!(!world.path().join("x").exists());
}

#[test]
fn include_globs_and_named_roots_make_keys() {
    let world = World::new(BIN);
    let a = world.path().join("a");
    std::fs::create_dir_all(a.join("sub")).unwrap();
    std::fs::write(a.join("sub/x.jsonl"), b"{}\n").unwrap();
    std::fs::write(a.join("notes.txt"), b"hello\n").unwrap();
    std::fs::write(a.join("img.png"), [0u8, 1, 2, 255]).unwrap();
    let report = world.json(&[
        "sync",
        "--source",
        "mac",
        "--root",
        &format!("docs={}", a.display()),
    ]);
    assert_eq!(report["files_scanned"], 1);
    let report = world.json(&[
        "sync",
        "--source",
        "mac",
        "--root",
        &format!("docs={}", a.display()),
        "--include",
        "**/*",
    ]);
    assert_eq!(report["files_scanned"], 3);
    assert_eq!(report["versions_new"], 2);
    let keys: Vec<String> = world
        .json(&["ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "mac/docs/img.png",
            "mac/docs/notes.txt",
            "mac/docs/sub/x.jsonl"
        ]
    );
    let out = world.path().join("img");
    world.ok(&["restore", "mac/docs/img.png", "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(out).unwrap(), [0u8, 1, 2, 255]);
}

#[test]
fn a_replaced_server_store_gets_every_file_again() {
    let mut world = World::new(BIN);
    let root = world.path().join("projects");
    let files = corpus::write_tree(&root, 5, 4, 400_000);
    sync(&world, &root);
    // The server loses its store (a new disk) but keeps its host key.
    world.server.kill();
    std::fs::remove_dir_all(world.server_home.dir.join("store")).unwrap();
    world.restart_server();
    append(
        &files[0],
        b"{\"type\":\"user\",\"message\":\"after the loss\"}\n",
    );
    let report = sync(&world, &root);
    assert_eq!(report["versions_new"], files.len() as u64, "{report}");
    for (i, f) in files.iter().enumerate() {
        let out = world.path().join(format!("check-{i}"));
        world.ok(&["restore", &key_of(&root, f), "-o", out.to_str().unwrap()]);
        assert!(std::fs::read(&out).unwrap() == std::fs::read(f).unwrap());
    }
}

/// `hoover sync` records deletions as `watch` does: a file its state knew that is gone (Claude
/// Code's 30-day clean-up, the old name of a rename) is marked deleted on the server, which
/// keeps every version. A root that is missing altogether records nothing.
#[test]
fn sync_records_deletions_and_renames_and_keeps_every_version() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    std::fs::write(root.join("p/a.jsonl"), b"{\"a\":1}\n").unwrap();
    std::fs::write(root.join("p/b.jsonl"), b"{\"b\":1}\n").unwrap();
    let report = sync(&world, &root);
    assert_eq!(report["files_deleted"], 0, "{report}");
    std::fs::remove_file(root.join("p/a.jsonl")).unwrap();
    std::fs::rename(root.join("p/b.jsonl"), root.join("p/c.jsonl")).unwrap();
    let report = sync(&world, &root);
    assert_eq!(report["files_deleted"], 2, "{report}");
    assert_eq!(report["versions_new"], 1, "{report}");
    for key in ["laptop/claude/p/a.jsonl", "laptop/claude/p/b.jsonl"] {
        let versions = world.json(&["versions", key]);
        let last = versions.as_array().unwrap().last().unwrap().clone();
        assert!(!last["deleted_at"].is_null(), "{key}: {versions}");
    }
    // Nothing is lost: the deleted file restores as it was.
    let out = world.path().join("a-restored.jsonl");
    world.ok(&[
        "restore",
        "laptop/claude/p/a.jsonl",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), b"{\"a\":1}\n");
    // Once recorded, not again.
    assert_eq!(sync(&world, &root)["files_deleted"], 0);
    // A root that is not there (an unmounted disk) is no evidence of deletion.
    std::fs::rename(&root, world.path().join("elsewhere")).unwrap();
    let report = sync(&world, &root);
    assert_eq!(report["files_deleted"], 0, "{report}");
    let versions = world.json(&["versions", "laptop/claude/p/c.jsonl"]);
    assert!(versions[0]["deleted_at"].is_null(), "{versions}");
}

/// The client reads files ahead of the pusher within a budget of bytes held, and the pusher
/// sends a batch once it holds 32 MiB. A big file read right after a batch's worth of small
/// ones once asked for more budget than the unsent batch left free, while the batch waited for
/// that file: the sync hung for ever (a 1.1 GB benchmark corpus found it). The big file is
/// also more than the server keeps decoded in one batch (64 MiB): its version check reads the
/// rest back from the staged pack, each piece once. Then more batches follow: the client
/// writes a batch's chunks before reading the answers to the commit before, which hung when
/// those answers (one per file) overflowed russh's buffer of unread messages.
#[test]
fn a_big_file_after_a_batch_of_small_ones_does_not_stall_the_sync_and_batches_pipeline() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    // Keys sort the small files ("a/…", 30 MB, under one batch) before the big one.
    corpus::write_tree(&root.join("a"), 5, 40, 30_000_000);
    std::fs::create_dir_all(root.join("z")).unwrap();
    std::fs::write(
        root.join("z/big.jsonl"),
        corpus::Session::new(6).bytes(80_000_000),
    )
    .unwrap();
    // Then two more batches (over 512 files): the client sends a batch's versions and commit
    // once the next batch's have/want is answered, so each batch is committed while the next
    // is on the wire.
    corpus::write_tree(&root.join("zz"), 7, 600, 40_000_000);
    let mut sync = world
        .hoover(&[
            "sync",
            "--source",
            "laptop",
            "--root",
            &format!("claude={}", root.display()),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = None;
    hoover_testkit::wait_until(
        "the sync to finish (about 5 s here)",
        std::time::Duration::from_secs(180),
        || {
            status = sync.try_wait().unwrap();
            status.is_some()
        },
    );
    assert!(status.unwrap().success());
    assert_eq!(world.check_restored_tree(&root, "laptop/claude"), 641);
    world.verify();
}

/// A chunk two files share is sent once, for the first file of the batch. When that file is
/// new, the chunk goes in a group (protocol 1.3), and the other file's next chunk is a piece
/// compressed against it: the group must reach the server before that piece does.
#[test]
fn a_piece_whose_base_is_in_a_group_of_the_same_batch_arrives_after_the_group() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    // Runs of one byte have no content-defined cut: chunks end at the 128 KiB maximum, so the
    // chunks below are known. b.jsonl first holds q; then a.jsonl (new) is q + r, and b.jsonl
    // grows to q + r + s.
    let (q, r, s) = (
        vec![b'a'; 130 << 10],
        vec![b'b'; 200 << 10],
        vec![b'c'; 10 << 10],
    );
    let a = [&q[..], &r[..]].concat();
    let b = [&a[..], &s[..]].concat();
    let (cq, ca, cb) = (
        hoover_chunk::cut(&q, 0),
        hoover_chunk::cut(&a, 0),
        hoover_chunk::cut(&b, 0),
    );
    // a: q's first chunk (stored), then two new ones; b: a's chunks but its last, then one
    // that follows a's second new chunk. Three chunks to send: encoded on one thread, in order.
    assert_eq!((cq.len(), ca.len(), cb.len()), (2, 3, 3));
    assert_eq!(ca[0].id, cq[0].id);
    assert_eq!(cb[1].id, ca[1].id);
    assert_ne!(cb[2].id, ca[2].id);
    std::fs::write(root.join("p/b.jsonl"), &q).unwrap();
    sync(&world, &root);
    std::fs::write(root.join("p/a.jsonl"), &a).unwrap();
    std::fs::write(root.join("p/b.jsonl"), &b).unwrap();
    let report = sync(&world, &root);
    assert_eq!(report["versions_new"], 2, "{report}");
    assert_eq!(report["chunks_sent"], 3, "{report}");
    for (name, content) in [("p/a.jsonl", &a), ("p/b.jsonl", &b)] {
        let out = world.path().join(name.replace('/', "_"));
        world.ok(&[
            "restore",
            &format!("laptop/claude/{name}"),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(std::fs::read(&out).unwrap() == **content, "{name}");
    }
}

/// A chunk that files of two batches share is sent once, though the first batch is still open
/// (its versions and commit go once the next batch's have/want is answered) when the second
/// asks: the server names the chunks of a group itself (protocol 1.4) and counts them as held
/// only once committed, so the client does not ask about what it sent in the open batch.
#[test]
fn a_chunk_shared_by_files_of_pipelined_batches_is_sent_once() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    // Each file: 128 KiB of one byte (no content-defined cut: one chunk at the maximum, the
    // same in every file), then a short tail of its own. 300 files, 39 MB: two batches.
    let shared = vec![b'a'; 128 << 10];
    for i in 0..300 {
        let tail = format!("{{\"file\":{i}}}\n");
        std::fs::write(
            root.join(format!("p/{i:03}.jsonl")),
            [&shared[..], tail.as_bytes()].concat(),
        )
        .unwrap();
    }
    let first = hoover_chunk::cut(&std::fs::read(root.join("p/000.jsonl")).unwrap(), 0);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].len as usize, shared.len());
    let report = sync(&world, &root);
    assert_eq!(report["versions_new"], 300, "{report}");
    assert_eq!(report["chunks_sent"], 301, "{report}");
    assert_eq!(world.check_restored_tree(&root, "laptop/claude"), 300);
    world.verify();
}

/// One version restored over a raw protocol session that said it speaks 1.`minor`: its bytes,
/// each chunk checked against its name, and the lengths of the groups the server sent as
/// stored.
async fn restore_as<S>(conn: &mut hoover_proto::Conn<S>, key: &str) -> (Vec<u8>, Vec<u32>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use hoover_proto::{Request, Response};
    use hoover_types::ChunkId;
    conn.send(&Request::Restore {
        key: key.to_string(),
        seq: 1,
    })
    .await
    .unwrap();
    conn.flush().await.unwrap();
    match conn.recv::<Response>().await.unwrap() {
        Response::RestoreBegin { .. } => {}
        other => panic!("{key}: expected RestoreBegin, got {other:?}"),
    }
    let (mut out, mut groups) = (Vec::new(), Vec::new());
    let (mut previous, mut group) = (Vec::new(), Vec::new());
    loop {
        let chunk = match conn.recv::<Response>().await.unwrap() {
            Response::ChunkData { id, len, data } => {
                hoover_chunk::open_verified(&id, len as u64, &data).unwrap()
            }
            Response::PieceData { id, len, data } => {
                let raw = hoover_chunk::decompress_against(&previous, &data, len as usize).unwrap();
                assert_eq!(ChunkId::of(&raw), id, "{key}: a piece");
                raw
            }
            Response::GroupData { len, data } => {
                group = hoover_chunk::decompress_exact(&data, len as usize).unwrap();
                groups.push(len);
                continue;
            }
            Response::FromGroup { id, len, at } => {
                let raw = group[at as usize..(at + len) as usize].to_vec();
                assert_eq!(ChunkId::of(&raw), id, "{key}: a slice of a group");
                raw
            }
            Response::RestoreEnd => return (out, groups),
            other => panic!("{key}: unexpected {other:?}"),
        };
        out.extend_from_slice(&chunk);
        previous = chunk;
    }
}

/// Protocol 1.5 and store format 4: a first sync of many small sessions goes in groups of up
/// to 8 MiB. A restore sends such a group as stored to a client of 1.5, and to a client of
/// 1.4 (which takes groups of at most 1 MiB) each of its chunks on its own; every file comes
/// back byte for byte either way.
#[tokio::test(flavor = "multi_thread")]
async fn groups_over_1_mib_restore_to_clients_old_and_new() {
    let world = World::new(BIN);
    let root = world.path().join("claude");
    let files = make_tree(&root);
    let raw_total: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(raw_total > 8 << 20, "the tree fills a group of 8 MiB");
    let sync = sync(&world, &root);
    assert_eq!(sync["versions_new"], files.len());

    let addr = hoover_client::ServerAddr::parse(&world.server_addr()).unwrap();
    let mut biggest = [0u32; 2];
    for (i, minor) in [4u16, hoover_proto::PROTOCOL_MINOR].into_iter().enumerate() {
        let known = world.path().join(format!("known_hosts_{minor}"));
        let ssh = hoover_client::SshSession::connect(&addr, &world.identity, &known)
            .await
            .unwrap();
        let mut conn = hoover_proto::Conn::new(ssh.open_stream().await.unwrap());
        conn.send(&hoover_proto::Hello {
            magic: hoover_proto::MAGIC,
            major: hoover_proto::PROTOCOL_MAJOR,
            minor,
            agent: format!("a client of 1.{minor}"),
        })
        .await
        .unwrap();
        conn.flush().await.unwrap();
        match conn.recv::<hoover_proto::HelloReply>().await.unwrap() {
            hoover_proto::HelloReply::Welcome { .. } => {}
            other => panic!("expected a welcome, got {other:?}"),
        }
        for f in &files {
            let key = key_of(&root, f);
            let (bytes, groups) = restore_as(&mut conn, &key).await;
            assert!(
                bytes == std::fs::read(f).unwrap(),
                "{key} restores byte for byte to a client of 1.{minor}"
            );
            biggest[i] = biggest[i].max(groups.into_iter().max().unwrap_or(0));
        }
    }
    let one_mib = hoover_types::MAX_GROUP_BYTES_1_4 as u32;
    assert!(
        biggest[0] <= one_mib,
        "a client of 1.4 got a group of {} bytes",
        biggest[0]
    );
    assert!(
        biggest[1] > one_mib && biggest[1] as usize <= hoover_types::MAX_GROUP_BYTES,
        "the first sync's groups are over 1 MiB and within 8 MiB: the largest sent was {} bytes",
        biggest[1]
    );
    world.verify();
}
