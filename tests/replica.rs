//! The off-site copy against a real S3 server on loopback (`s3s-fs`, installed by `.ci/run`;
//! `HOOVER_S3S_FS` names another binary): the disaster drill (sync, lose the store, recover,
//! serve the recovered store: every version restores byte for byte, searches find what they
//! found) and what goes wrong on the way (an unreachable copy, wrong credentials, no bucket).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hoover_testkit::{corpus, files_under, http_get, wait_until, World};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hoover");
const DEADLINE: Duration = Duration::from_secs(120);
const ACCESS_KEY: &str = "hooverTestAccessKey";
const SECRET_KEY: &str = "hooverTestSecretKey0123456789";

/// An S3 server on a loopback port, serving the directory `root` (each subdirectory a bucket;
/// it starts with the one the tests copy to, `offsite`).
struct S3 {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl S3 {
    fn start(root: &Path, port: u16) -> S3 {
        let bin = std::env::var("HOOVER_S3S_FS").unwrap_or_else(|_| "s3s-fs".into());
        std::fs::create_dir_all(root.join("offsite")).unwrap();
        let port = if port == 0 {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        } else {
            port
        };
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the S3 server {bin:?} ({e}): install it with `cargo install s3s-fs --version 0.14.1 --features binary --locked` (.ci/run does), or name it in HOOVER_S3S_FS")
            });
        wait_until("the S3 server listens", DEADLINE, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        S3 {
            child,
            port,
            root: root.to_path_buf(),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `hoover serve` arguments and environment for a copy at `url` through `s3`.
fn replicate(s3: &S3, url: &str, secret: &str) -> (Vec<String>, Vec<(String, String)>) {
    let args = vec![
        "--replicate-to".into(),
        url.into(),
        "--s3-endpoint".into(),
        s3.endpoint(),
        "--replicate-every".into(),
        "1".into(),
    ];
    (args, s3_env(secret))
}

/// Restarts the server with the arguments and environment [`replicate`] gave.
fn restart_copying(world: &mut World, args: &[String], env: &[(String, String)]) {
    world.restart_server_with(|o| {
        o.extra_args = args.to_vec();
        o.env = env.to_vec();
    });
}

fn s3_env(secret: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
    ]
}

fn stats(world: &World) -> Value {
    let (status, body) = http_get(world.server.http_port, "/api/stats").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until the copy holds every committed byte and a snapshot of the log as it is now.
fn caught_up(world: &World) -> Value {
    let mut last = Value::Null;
    wait_until("the copy catches up", DEADLINE, || {
        last = stats(world)["copy"].clone();
        last["bytes_behind"] == 0 && last["log_behind"] == false && last["error"].is_null()
    });
    assert!(last["snapshot_seconds"].as_f64().is_some(), "{last}");
    last
}

fn search_total(world: &World, query: &str) -> u64 {
    world.json(&["search", query, "--limit", "1"])["total"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_disaster_drill_recovers_every_version_from_the_copy() {
    let mut world = World::new(BIN);
    let s3 = S3::start(&world.path().join("s3"), 0);
    let url = "s3://offsite/laptops/hoover";
    let (args, env) = replicate(&s3, url, SECRET_KEY);
    restart_copying(&mut world, &args, &env);

    // Twenty sessions, then one of them growing a message at a time: versions that share
    // packs, appended to the growing pack between uploads.
    let root = world.path().join("projects");
    let files = corpus::write_tree(&root, 41, 20, 3_000_000);
    world.sync_dir("lap", &root);
    let growing = &files[3];
    let mut versions = vec![std::fs::read(growing).unwrap()];
    let mut session = corpus::Session::new(99);
    for _ in 0..5 {
        let line = session.next_line();
        std::fs::OpenOptions::new()
            .append(true)
            .open(growing)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()))
            .unwrap();
        versions.push(std::fs::read(growing).unwrap());
        world.sync_dir("lap", &root);
    }
    let copy = caught_up(&world);
    assert!(copy["bytes_copied"].as_u64().unwrap() > 0, "{copy}");
    // A clean restart commits the index, so the search below counts every message.
    restart_copying(&mut world, &args, &env);
    caught_up(&world);
    let indexed = |world: &World| stats(world)["indexer"]["catching_up"] == false;
    wait_until("the index has caught up", DEADLINE, || indexed(&world));
    let word = "tokio";
    let found = search_total(&world, word);
    let before = stats(&world);
    // The growing session was synced last: its newest version is the store's newest.
    let rel = growing.strip_prefix(&root).unwrap().display().to_string();
    let key = format!("lap/c/{rel}");
    let listed = world.json(&["versions", &key]);
    let newest = listed.as_array().unwrap().last().unwrap()["received_at"].clone();

    // The disk dies.
    world.server.kill();
    std::fs::remove_dir_all(&world.server.store).unwrap();

    let recovered = world.path().join("new-machine").join("store");
    let out = recover(&world, &s3, url, &recovered);
    assert!(
        out.status.success(),
        "recover failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["versions"], before["versions"], "{report}");
    assert_eq!(report["files"], before["files"], "{report}");
    assert_eq!(report["newest_version"], newest, "{report}");

    // A server on the recovered store: every version of every file, byte for byte.
    world.restart_server_with(|o| o.store = recovered.clone());
    world.verify();
    for (i, want) in versions.iter().enumerate() {
        let seq = (i + 1).to_string();
        let got = world.ok(&["restore", &key, "--version", &seq, "-o", "-"]);
        assert!(&got == want, "{key} version {seq} restores byte for byte");
    }
    assert_eq!(files_under(&root).len(), 20);
    world.check_restores(&root, "lap/c");
    // The index is rebuilt from the recovered store: the same search finds the same.
    wait_until("the index is rebuilt", DEADLINE, || indexed(&world));
    assert!(found > 0);
    assert_eq!(search_total(&world, word), found);

    // A copy damaged where it is kept (one byte of a pack changed): recovery says so, names
    // the chunk and fails, rather than handing over a store that looks whole.
    let mut pieces = files_under(&s3.root.join("offsite/laptops/hoover/packs"));
    pieces.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() == 16)
    });
    let biggest = pieces
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("the copy holds pack pieces");
    let mut bytes = std::fs::read(biggest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(biggest, bytes).unwrap();
    let out = recover(
        &world,
        &s3,
        url,
        &world.path().join("damaged").join("store"),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clean"], false, "{report}");
    let problems = report["problems"].to_string();
    assert!(problems.contains("corrupt"), "{report}");

    // A hostile copy: its newest "snapshot of the log" is 64 MiB of zeros in a few kilobytes.
    // Recovery stops at a bound on what a log may inflate to (64 times its compressed size)
    // and says why, instead of writing until the disk is full.
    let bomb = hoover_chunk::compress_against(&[], &vec![0u8; 64 << 20], 19);
    assert!(bomb.len() < 16 << 10, "{} bytes", bomb.len());
    std::fs::write(
        s3.root
            .join("offsite/laptops/hoover/log/09000000000000000000.db.zst"),
        &bomb,
    )
    .unwrap();
    let into = world.path().join("bombed");
    let out = recover(&world, &s3, url, &into.join("store"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not a version log hoover wrote"),
        "{stderr}"
    );
    let written: u64 = files_under(&into)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(written < 8 << 20, "{written} bytes left behind");
}

/// `hoover recover --json` from the copy at `url` into `store`.
fn recover(world: &World, s3: &S3, url: &str, store: &Path) -> std::process::Output {
    world
        .hoover(&[
            "recover",
            "--from",
            url,
            "--store",
            store.to_str().unwrap(),
            "--s3-endpoint",
            &s3.endpoint(),
            "--json",
        ])
        .envs(s3_env(SECRET_KEY))
        .output()
        .unwrap()
}

#[test]
fn ingest_goes_on_while_the_copy_cannot_be_written_and_the_copy_catches_up() {
    let mut world = World::new(BIN);
    let mut s3 = S3::start(&world.path().join("s3"), 0);
    let root = world.path().join("projects");
    corpus::write_tree(&root, 42, 5, 400_000);

    // Wrong credentials: the server starts, says why the copy fails, and takes pushes.
    let url = "s3://offsite/hoover";
    let (args, env) = replicate(&s3, url, "not-the-secret-key-at-all");
    restart_copying(&mut world, &args, &env);
    world.sync_dir("lap", &root);
    let mut copy = Value::Null;
    wait_until("the copy reports its error", DEADLINE, || {
        copy = stats(&world)["copy"].clone();
        copy["error"].is_string()
    });
    assert!(copy["bytes_behind"].as_u64().unwrap() > 0, "{copy}");
    let (_, metrics) = http_get(world.server.http_port, "/metrics").unwrap();
    assert!(metrics.contains("hoover_copy_failing 1"), "{metrics}");
    assert!(
        metrics.contains("hoover_copy_snapshot_milliseconds "),
        "{metrics}"
    );

    // A bucket that does not exist: named in the error.
    let (args, env) = replicate(&s3, "s3://no-such-bucket/hoover", SECRET_KEY);
    restart_copying(&mut world, &args, &env);
    wait_until("the missing bucket is reported", DEADLINE, || {
        stats(&world)["copy"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-bucket"))
    });

    // The right credentials: the copy catches up.
    let (args, env) = replicate(&s3, url, SECRET_KEY);
    restart_copying(&mut world, &args, &env);
    let copy = caught_up(&world);
    let uploaded = copy["bytes_copied"].as_u64().unwrap();
    assert!(uploaded > 0, "{copy}");

    // A restart re-uploads nothing the copy already holds.
    restart_copying(&mut world, &args, &env);
    let copy = caught_up(&world);
    assert_eq!(copy["bytes_copied"], 0, "{copy}");

    // The object store goes away: pushes still work, and the copy says it is behind.
    let port = s3.port;
    s3.stop();
    corpus::write_tree(&root.join("more"), 43, 3, 200_000);
    world.sync_dir("lap", &root);
    wait_until("the copy reports it is behind", DEADLINE, || {
        let copy = stats(&world)["copy"].clone();
        copy["error"].is_string() && copy["bytes_behind"].as_u64().unwrap_or(0) > 0
    });
    // It comes back: the copy catches up by itself.
    let _s3 = S3::start(&s3.root, port);
    caught_up(&world);
    let (_, page) = http_get(world.server.http_port, "/").unwrap();
    assert!(
        page.contains("off-site copy"),
        "the dashboard shows the copy"
    );
}

#[test]
fn a_server_killed_mid_copy_resumes_where_the_copy_stopped_and_loses_nothing() {
    let mut world = World::new(BIN);
    let s3 = S3::start(&world.path().join("s3"), 0);
    let url = "s3://offsite/hoover";
    // A store of three packs (one per sync), written before the copy is asked for.
    let root = world.path().join("projects");
    for (i, seed) in [51u64, 52, 53].into_iter().enumerate() {
        corpus::write_tree(&root.join(format!("p{i}")), seed, 4, 12_000_000);
        world.sync_dir("lap", &root);
    }
    let before = stats(&world);
    let packs_dir = world.server.store.join("packs");
    assert_eq!(files_under(&packs_dir).len(), 3);

    // The server dies (SIGKILL) right after the object store confirmed the second piece.
    let (args, mut env) = replicate(&s3, url, SECRET_KEY);
    env.push(("HOOVER_CRASH_AT".into(), "copy-piece-uploaded:2".into()));
    restart_copying(&mut world, &args, &env);
    world
        .server
        .wait_for_log("crash point copy-piece-uploaded reached");
    let status = world.server.child.wait().unwrap();
    assert!(!status.success(), "{status:?}");
    let pieces_dir = s3.root.join("offsite/hoover/packs");
    let confirmed: Vec<(PathBuf, Vec<u8>)> = files_under(&pieces_dir)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(confirmed.len(), 2, "{confirmed:?}");
    assert!(
        files_under(&s3.root.join("offsite/hoover/log")).is_empty(),
        "no snapshot of the log before every byte it names"
    );

    // Restarted, the copy goes on from what the object store holds: the two pieces it
    // confirmed are not sent again, the third is, and nothing is left out.
    let (args, env) = replicate(&s3, url, SECRET_KEY);
    restart_copying(&mut world, &args, &env);
    let copy = caught_up(&world);
    let again: u64 = confirmed.iter().map(|(_, b)| b.len() as u64).sum();
    let all: u64 = files_under(&packs_dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(
        copy["bytes_copied"].as_u64().unwrap(),
        all - again,
        "{copy}"
    );
    for (path, bytes) in &confirmed {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }
    // Each pack's pieces follow one another from its first byte to its last, once each.
    for pack in files_under(&packs_dir) {
        let name = pack.file_stem().unwrap().to_str().unwrap();
        let mut end = 0;
        for piece in files_under(&pieces_dir.join(name)) {
            let offset = u64::from_str_radix(piece.file_name().unwrap().to_str().unwrap(), 16);
            assert_eq!(offset.unwrap(), end, "{}", piece.display());
            end += std::fs::metadata(&piece).unwrap().len();
        }
        assert_eq!(end, std::fs::metadata(&pack).unwrap().len(), "{name}");
    }

    // And the copy recovers the whole store.
    let recovered = world.path().join("new-machine");
    let out = recover(&world, &s3, url, &recovered);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["versions"], before["versions"], "{report}");
}

/// The two places packs live answer alike through the store's seam: a pack put in two pieces
/// reads back across them, lists at its full length, and a read past what is held fails.
#[test]
fn packs_in_the_object_store_behave_as_packs_on_disk() {
    use hoover_store::{LocalPacks, PackStore};
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start(&dir.path().join("s3"), 0);
    let env = s3_env(SECRET_KEY);
    let settings: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let target =
        hoover_replica::Target::s3_with("s3://offsite/seam", Some(&s3.endpoint()), &settings)
            .unwrap();
    let object = runtime.block_on(async { hoover_replica::ObjectPacks::new(target) });
    let local = LocalPacks::of_store(&dir.path().join("store"));
    let name = "0123456789abcdef0123456789abcdef";
    let (a, b): (Vec<u8>, Vec<u8>) = ((0..5000).map(|i| i as u8).collect(), vec![7; 3000]);
    for packs in [&local as &dyn PackStore, &object] {
        assert!(packs.list().unwrap().is_empty());
        packs.put(name, 0, &a).unwrap();
        packs.put(name, a.len() as u64, &b).unwrap();
        let listed = packs.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].name.as_str(), listed[0].len), (name, 8000));
        let across = packs.get(name, 4990, 20).unwrap();
        assert_eq!(&across[..10], &a[4990..]);
        assert_eq!(&across[10..], &b[..10]);
        assert_eq!(packs.get(name, 0, 8000).unwrap(), [&a[..], &b[..]].concat());
        assert!(
            packs.get(name, 7990, 20).is_err(),
            "{}",
            packs.describe(name)
        );
        assert!(packs.get("ffffffffffffffffffffffffffffffff", 0, 1).is_err());
    }
    // A listing from a hostile copy: a piece placed where its end would pass 2^64, another
    // that does not start at 0. Nothing wraps: the pack is held from nowhere, reads of what
    // no piece holds fail, and what a piece holds reads as listed.
    let odd = "fedcba9876543210fedcba9876543210";
    let dir_of = s3.root.join("offsite/seam/packs").join(odd);
    std::fs::create_dir_all(&dir_of).unwrap();
    std::fs::write(dir_of.join("ffffffffffffff00"), vec![1u8; 4096]).unwrap();
    std::fs::write(dir_of.join("0000000000000010"), vec![2u8; 16]).unwrap();
    let listed = object.list().unwrap();
    let held = listed.iter().find(|e| e.name == odd).expect("listed");
    assert_eq!(held.len, 0, "nothing from byte 0 on");
    assert!(object.get(odd, 0, 1).is_err());
    assert_eq!(
        object.get(odd, 0xffff_ffff_ffff_ff10, 16).unwrap(),
        [1u8; 16]
    );
    assert!(
        object.get(odd, u64::MAX - 8, 16).is_err(),
        "past what any piece holds"
    );

    // A big file (a log snapshot of a big store) goes up in parts, and arrives whole.
    let big = dir.path().join("big");
    let body: Vec<u8> = (0..(2 * hoover_replica::PART_BYTES + 12345))
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(&big, &body).unwrap();
    let target =
        hoover_replica::Target::s3_with("s3://offsite/seam", Some(&s3.endpoint()), &settings)
            .unwrap();
    runtime.block_on(target.put_file("log/big", &big)).unwrap();
    assert!(std::fs::read(s3.root.join("offsite/seam/log/big")).unwrap() == body);
}

/// A growing pack is copied a piece per upload round; once sealed (a newer pack started), the
/// copy holds it as one object: the same bytes, read back whole by a recovery.
#[test]
fn a_sealed_pack_becomes_one_object_in_the_copy() {
    let mut world = World::new(BIN);
    let s3 = S3::start(&world.path().join("s3"), 0);
    let url = "s3://offsite/hoover";
    let (args, env) = replicate(&s3, url, SECRET_KEY);
    restart_copying(&mut world, &args, &env);
    let pieces_dir = s3.root.join("offsite/hoover/packs");
    let pieces_of = |name: &str| files_under(&pieces_dir.join(name));
    let packs_dir = world.server.store.join("packs");

    // A first sync (its own pack, which then grows), then small appends, each copied in a
    // round of its own.
    let root = world.path().join("projects");
    let files = corpus::write_tree(&root, 61, 2, 2_000_000);
    world.sync_dir("lap", &root);
    caught_up(&world);
    let mut session = corpus::Session::new(7);
    for _ in 0..3 {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&files[0])
            .and_then(|mut f| std::io::Write::write_all(&mut f, session.next_line().as_bytes()))
            .unwrap();
        world.sync_dir("lap", &root);
        caught_up(&world);
    }
    let packs = files_under(&packs_dir);
    assert_eq!(packs.len(), 1, "{packs:?}");
    let first = packs[0].file_stem().unwrap().to_str().unwrap().to_string();
    assert!(pieces_of(&first).len() >= 2, "{:?}", pieces_of(&first));

    // A big batch starts a new pack: the first is sealed, and becomes one object.
    corpus::write_tree(&root.join("more"), 62, 4, 12_000_000);
    world.sync_dir("lap", &root);
    let mut copy = Value::Null;
    wait_until("the sealed pack is one object", DEADLINE, || {
        copy = caught_up(&world);
        pieces_of(&first).len() == 1
    });
    let whole = std::fs::read(&packs[0]).unwrap();
    assert_eq!(
        copy["bytes_compacted"].as_u64().unwrap(),
        whole.len() as u64,
        "{copy}"
    );
    let piece = &pieces_of(&first)[0];
    assert!(piece.ends_with("0000000000000000"), "{}", piece.display());
    assert!(
        std::fs::read(piece).unwrap() == whole,
        "the object is the pack, byte for byte"
    );
    assert_eq!(files_under(&packs_dir).len(), 2);

    // And a recovery reads it back.
    let before = stats(&world);
    let out = recover(&world, &s3, url, &world.path().join("new-machine"));
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["versions"], before["versions"], "{report}");
}
