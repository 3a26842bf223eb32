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
    assert!(world
        .server
        .log()
        .contains("refused a key not in authorized_keys"));
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
    let addr = ServerAddr::parse(&world.server_addr()).unwrap();
    let known = world.path().join("raw_known_hosts");
    let ssh = SshSession::connect(&addr, &world.identity, &known)
        .await
        .unwrap();
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
    let mut c = raw(&world).await;
    c.send(&Request::Chunk {
        id: ChunkId::of(b"something else"),
        len: good.len() as u32,
        data: hoover_chunk::compress(&good),
    })
    .await
    .unwrap();
    let m = expect_error(&mut c, ErrorCode::BadChunk).await;
    assert!(m.contains("hash"), "{m}");
    expect_closed(&mut c).await;

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
    let mut c = raw(&world).await;
    c.send(&Request::Chunk {
        id: ChunkId::of(&zeros[..1000]),
        len: 1000,
        data: zstd_bomb(&zeros),
    })
    .await
    .unwrap();
    let m = expect_error(&mut c, ErrorCode::BadChunk).await;
    assert!(m.contains("zstd bomb") || m.contains("decompress"), "{m}");
    expect_closed(&mut c).await;

    // A "compressed" chunk bigger than any real chunk can compress to: refused before it is
    // queued, so a connection's queue holds at most a few MB.
    let mut c = raw(&world).await;
    c.send(&Request::Chunk {
        id: ChunkId::of(&good),
        len: good.len() as u32,
        data: vec![0x55; 4 << 20],
    })
    .await
    .unwrap();
    let m = expect_error(&mut c, ErrorCode::BadChunk).await;
    assert!(m.contains("compressed"), "{m}");
    expect_closed(&mut c).await;

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
    c.send(&Request::Commit).await.unwrap();
    c.flush().await.unwrap();
    assert_eq!(
        c.recv::<Response>().await.unwrap(),
        Response::Committed { versions: vec![] }
    );
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

fn zstd_bomb(zeros: &[u8]) -> Vec<u8> {
    let bomb = hoover_chunk::compress(zeros);
    assert!(bomb.len() < 64 * 1024);
    bomb
}
