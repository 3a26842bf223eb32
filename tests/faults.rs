//! Faults: connections cut at random byte offsets, and two laptops pushing the same chunks at
//! the same moment. Nothing half-done is recorded, nothing confirmed is sent twice, and every
//! version the server holds restores byte for byte.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hoover_testkit::{corpus, files_under, http_get, make_key, World};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hoover");

/// A TCP proxy on loopback that forwards to `target` and cuts each connection after the client
/// has sent `limit` bytes. Returns its port, and a count of the connections it cut.
fn cutting_proxy(target: u16, limit: u64) -> (u16, Arc<AtomicU64>) {
    let cut_count = Arc::new(AtomicU64::new(0));
    let cuts = cut_count.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let sent = Arc::new(AtomicU64::new(0));
            let cuts = cuts.clone();
            let pipe = |mut from: TcpStream, mut to: TcpStream, counted: Option<Arc<AtomicU64>>| {
                let cuts = cuts.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut n = n as u64;
                        let mut cut = false;
                        if let Some(c) = &counted {
                            let before = c.fetch_add(n, Ordering::SeqCst);
                            if before + n >= limit {
                                n = limit.saturating_sub(before);
                                cut = true;
                            }
                        }
                        if to.write_all(&buf[..n as usize]).is_err() {
                            break;
                        }
                        if cut {
                            cuts.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                });
            };
            pipe(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                Some(sent),
            );
            pipe(server, client, None);
        }
    });
    (port, cut_count)
}

fn stats(world: &World) -> Value {
    let (_, body) = http_get(world.server.http_port, "/api/stats").unwrap();
    serde_json::from_str(&body).unwrap()
}

/// Every version of every file on the server restores to a hash the server recorded, and the
/// latest of each equals the local file.
#[test]
fn cut_connections_record_nothing_half_done_and_resend_nothing_confirmed() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    corpus::write_tree(&root, 7, 40, 12_000_000);
    let root_arg = format!("c={}", root.display());
    // Each round brings new work (a new transcript, and an append to an old one), and the
    // connection is cut at a random offset within it: the handshake, have/want, chunks,
    // versions or the commit.
    let mut rng = corpus::Rng::new(99);
    let mut cut = 0;
    let rounds = 16;
    let old = files_under(&root);
    for round in 0..rounds {
        let fresh = root.join(format!("round-{round}.jsonl"));
        std::fs::write(&fresh, corpus::Session::new(1000 + round).bytes(600_000)).unwrap();
        let target = &old[round as usize % old.len()];
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(target)
            .unwrap();
        f.write_all(&corpus::Session::new(2000 + round).bytes(200_000))
            .unwrap();
        let limit = 200 + rng.below(250_000);
        let (proxy, cuts) = cutting_proxy(world.server.ssh_port, limit);
        // Through the proxy: not `World::hoover`, which points at the server itself.
        let mut cmd = std::process::Command::new(BIN);
        world.client_home.apply(&mut cmd);
        // The client may reconnect and finish, or give up: either way it was cut.
        cmd.args(["sync", "--source", "lap", "--root", &root_arg, "--json"])
            .arg("--server")
            .arg(format!("127.0.0.1:{proxy}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        if cuts.load(Ordering::SeqCst) > 0 {
            cut += 1;
        }
        // Whatever the cut, the store is consistent: every recorded version is whole.
        let verify = world.json(&[
            "verify",
            "--store",
            &world.server.store.display().to_string(),
        ]);
        assert_eq!(
            verify["clean"], true,
            "after a cut at {limit} bytes: {verify}"
        );
    }
    println!("{cut} of {rounds} syncs were cut");
    assert!(
        cut >= rounds / 2,
        "the proxy cut too late to test anything ({cut} of {rounds} were cut)"
    );
    // The full sync sends exactly the chunks the server still lacks.
    let before = stats(&world)["chunks"].as_u64().unwrap();
    let report = world.json(&["sync", "--source", "lap", "--root", &root_arg]);
    let after = stats(&world)["chunks"].as_u64().unwrap();
    assert_eq!(
        report["chunks_sent"].as_u64().unwrap(),
        after - before,
        "chunks the server had were sent again: {report}"
    );
    world.check_restores(&root, "lap/c");
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "connection_cuts",
        serde_json::json!({
            "syncs": rounds,
            "syncs_cut": cut,
            "files_restored": files_under(&root).len(),
        }),
    );
}

#[test]
fn two_laptops_push_the_same_chunks_at_once_and_they_are_stored_once() {
    let world = World::new(BIN);
    // A second laptop with its own key.
    let second_home = world.path().join("second");
    let second_key = second_home.join(".ssh/id_ed25519");
    let public = make_key(&second_key);
    let authorized = world.server_home.dir.join("authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).unwrap();
    keys.push_str(&format!("{public}\n"));
    std::fs::write(&authorized, keys).unwrap();

    // The same transcripts on both laptops (a shared project, copied).
    let one = world.path().join("one");
    let two = world.path().join("two");
    corpus::write_tree(&one, 11, 20, 8_000_000);
    for path in files_under(&one) {
        let dest = two.join(path.strip_prefix(&one).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&path, &dest).unwrap();
    }
    let raw: u64 = files_under(&one)
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    let spawn = |source: &str, root: &Path, identity: Option<&Path>| {
        let mut cmd = world.hoover(&[
            "sync",
            "--source",
            source,
            "--root",
            &format!("c={}", root.display()),
            "--json",
        ]);
        if let Some(id) = identity {
            cmd.arg("--identity").arg(id);
        }
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("laptop-a", &one, None);
    let b = spawn("laptop-b", &two, Some(&second_key));
    for (name, child) in [("a", a), ("b", b)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "laptop {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = stats(&world);
    let files = files_under(&one).len() as u64;
    assert_eq!(s["files"].as_u64().unwrap(), 2 * files, "{s}");
    assert_eq!(s["versions"].as_u64().unwrap(), 2 * files, "{s}");
    assert!(
        s["unique_bytes"].as_u64().unwrap() <= raw,
        "shared chunks were stored twice: {s} for {raw} bytes of transcripts"
    );
    world.check_restores(&one, "laptop-a/c");
    world.check_restores(&two, "laptop-b/c");
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "two_laptops",
        serde_json::json!({
            "files_each": files,
            "unique_bytes": s["unique_bytes"],
            "transcript_bytes_each": raw,
        }),
    );
}

#[test]
fn a_full_disk_refuses_new_data_keeps_the_old_and_recovers() {
    let mut world = World::new(BIN);
    // The server's store sees a full disk while this file exists (the store's fault seam).
    let full = world.path().join("disk-is-full");
    world.restart_server_with(|o| {
        o.env = vec![("HOOVER_FAULT_DISK_FULL".into(), full.display().to_string())]
    });

    let root = world.path().join("projects");
    corpus::write_tree(&root, 21, 10, 3_000_000);
    let root_arg = format!("c={}", root.display());
    world.ok(&["sync", "--source", "lap", "--root", &root_arg]);
    let store = world.server.store.display().to_string();
    let versions = world.json(&["verify", "--store", &store])["versions_checked"].clone();

    // The disk fills up; new work is refused with a message that says so.
    std::fs::write(&full, b"").unwrap();
    let target = &files_under(&root)[0];
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(target)
        .unwrap();
    f.write_all(&corpus::Session::new(31).bytes(300_000))
        .unwrap();
    std::fs::write(
        root.join("new.jsonl"),
        corpus::Session::new(32).bytes(300_000),
    )
    .unwrap();
    let out = world.run(&["sync", "--source", "lap", "--root", &root_arg]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("disk is full"), "{err}");
    // What it had is intact, and nothing half-done was added.
    let verify = world.json(&["verify", "--store", &store]);
    assert_eq!(verify["clean"], true, "{verify}");
    assert_eq!(verify["versions_checked"], versions, "{verify}");

    // Space returns: the same server takes the work.
    std::fs::remove_file(&full).unwrap();
    world.ok(&["sync", "--source", "lap", "--root", &root_arg]);
    world.check_restores(&root, "lap/c");
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "disk_full",
        serde_json::json!({
            "refused_saying": "the server's disk is full",
            "versions_kept": versions,
            "files_restored_after": files_under(&root).len(),
        }),
    );
}

/// `hoover serve` on `store`, run so that file permissions bind it; it must exit by itself.
/// Returns its exit code and stderr.
fn serve_without_override(world: &World, store: &Path) -> (Option<i32>, String) {
    let mut opts = world.server_options(0);
    opts.store = store.to_path_buf();
    let (code, _, err) = run_without_override(world, &opts.serve_args());
    (code, err)
}

/// `hoover ARGS` run so that file permissions bind it: as root, without the capabilities that
/// let root write anywhere (util-linux `setpriv`). Returns its exit code, stdout and stderr;
/// it must exit by itself.
fn run_without_override(
    world: &World,
    args: &[std::ffi::OsString],
) -> (Option<i32>, String, String) {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--bounding-set=-dac_override,-dac_read_search,-fowner",
            "--",
        ])
        .arg(BIN);
        c
    } else {
        std::process::Command::new(BIN)
    };
    world.server_home.apply(&mut cmd);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn hoover (and setpriv when root)");
    // Its output is small: read after it exits. (A pipe holds far more than it says.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("hoover {args:?} did not exit by itself");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), out, err)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_read_only_store_fails_fast_naming_the_dir_and_loses_nothing() {
    let mut world = World::new(BIN);
    let root = world.path().join("projects");
    corpus::write_tree(&root, 4, 3, 300_000);
    let root_arg = format!("c={}", root.display());
    world.ok(&["sync", "--source", "lap", "--root", &root_arg]);
    world.server.kill();
    let store = world.server.store.clone();

    // The store's directory is read-only.
    set_mode(&store, 0o555);
    let (code, err) = serve_without_override(&world, &store);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&store.display().to_string()), "{err}");
    assert!(err.contains("cannot be written"), "{err}");
    assert!(err.contains("read-only"), "{err}");

    // A read-only copy can still be checked. Here a killed server left changes in SQLite's
    // write-ahead log, which a reader that cannot write cannot fold in: `verify` says so and
    // what to do instead.
    let verify_args = vec![
        "verify".into(),
        "--json".into(),
        "--store".into(),
        store.clone().into_os_string(),
    ];
    let wal = store.join("versions.db-wal");
    let log_files = ["versions.db", "versions.db-wal", "versions.db-shm"].map(|f| store.join(f));
    let read_only = |yes: bool| {
        for f in log_files.iter().filter(|f| f.exists()) {
            set_mode(f, if yes { 0o444 } else { 0o644 });
        }
    };
    assert!(std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0));
    read_only(true);
    let (code, _, err) = run_without_override(&world, &verify_args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("versions.db-wal"), "{err}");
    assert!(err.contains("writable copy"), "{err}");
    read_only(false);
    // Once a writer has folded it in (a clean stop does), the read-only copy checks clean.
    set_mode(&store, 0o755);
    let versions = world.verify()["versions_checked"].clone();
    assert!(
        !wal.exists(),
        "the last connection folds in and removes the WAL"
    );
    set_mode(&store, 0o555);
    read_only(true);
    let (code, out, err) = run_without_override(&world, &verify_args);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["versions_checked"], versions, "{report}");
    read_only(false);
    set_mode(&store, 0o755);

    // Only its version log is read-only (SQLite would otherwise open it read-only, quietly).
    let db = store.join("versions.db");
    set_mode(&db, 0o444);
    let (code, err) = serve_without_override(&world, &store);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("cannot be written"), "{err}");
    set_mode(&db, 0o644);

    // Writable again: everything is there.
    world.restart_server();
    // A second server on the same store is refused while the first runs.
    let (code, err) = serve_without_override(&world, &store);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("in use by another hoover server"), "{err}");
    world.check_restores(&root, "lap/c");
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "read_only",
        serde_json::json!({
            "refused_saying": "the store directory … cannot be written",
            "cases": 2,
            "read_only_versions_verified": versions,
            "files_restored_after": files_under(&root).len(),
        }),
    );
}

/// SIGTERM stops the server within a version's work however long the indexer's backlog (a
/// first sync, a catch-up after an upgrade): the index is derived, and the next start
/// catches up. Today's main indexed the whole backlog first, so systemd killed it.
#[test]
fn sigterm_does_not_wait_for_the_indexers_backlog() {
    let mut world = World::new(BIN);
    world.restart_server_with(|o| o.extra_args = vec!["--no-index".into()]);
    let root = world.path().join("projects");
    corpus::write_tree(&root, 11, 40, 400_000);
    world.sync_dir("lap", &root);
    // Indexing now takes half a second a version: a backlog of some 20 s.
    world.restart_server_with(|o| {
        o.env = vec![("HOOVER_SLOW_AT".into(), "index-version:500".into())];
    });
    let started = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &world.server.child.id().to_string()])
        .status()
        .unwrap();
    let status = world.server.child.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    world.server.wait_for_log("stopped indexing with");
    world.server.wait_for_log("still to index");
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "sigterm_backlog",
        serde_json::json!({ "versions_in_backlog": 40, "stop_ms": took.as_millis() as u64 }),
    );
    // The next start catches up: every message is found.
    world.restart_server();
    let lines = hoover_testkit::count_lines(&root);
    let stats = || -> Value {
        let (_, body) = http_get(world.server.http_port, "/api/stats").unwrap();
        serde_json::from_str(&body).unwrap()
    };
    hoover_testkit::wait_until(
        "the index caught up",
        std::time::Duration::from_secs(120),
        || stats()["indexer"]["catching_up"] == false,
    );
    assert_eq!(stats()["index"]["messages"], lines);
}

/// `sync` beside `watch` (here: two syncs with their own client state) for the same files:
/// both have their versions accepted on the same base, one commits first, and the other's
/// commit is stale. The loser pushes again on the new base instead of failing (today's main
/// failed it with "expected Committed").
#[test]
fn a_sync_that_loses_a_commit_race_pushes_again_on_the_new_base() {
    let mut world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    let file = root.join("p/a.jsonl");
    std::fs::write(&file, b"{\"n\":1}\n").unwrap();
    let root_arg = format!("c={}", root.display());
    let other = hoover_testkit::Home::new(world.path(), "other-client");
    // The server keeps its port across restarts.
    let (addr, identity) = (world.server_addr(), world.identity.clone());
    let sync_in = |home: &hoover_testkit::Home| {
        let mut cmd = std::process::Command::new(BIN);
        home.apply(&mut cmd);
        cmd.args(["sync", "--json", "--source", "lap", "--root", &root_arg])
            .args(["--server", &addr])
            .arg("--identity")
            .arg(&identity);
        cmd
    };
    for home in [&world.client_home, &other] {
        let out = sync_in(home).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Both clients now hold version 1 as their base. The file grows; each commit takes two
    // seconds, so both batches are accepted on base 1 before either commits.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(b"{\"n\":2}\n").unwrap();
    drop(f);
    world.restart_server_with(|o| {
        o.env = vec![("HOOVER_SLOW_AT".into(), "ingest-commit:2000".into())];
    });
    let children: Vec<_> = [&world.client_home, &other]
        .into_iter()
        .map(|home| {
            sync_in(home)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            world.server.log()
        );
    }
    // That the race happened: the commit that lost it was refused.
    world
        .server
        .wait_for_log("another client added a version meanwhile");
    let versions = world.json(&["versions", "lap/c/p/a.jsonl"]);
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");
    world.check_restores(&root, "lap/c");
}

/// A client whose record of a file is behind the server's (its state restored from an older
/// backup) sends an append's piece on a last chunk the server no longer holds by that name
/// (store format 8 keeps an append's piece in its version's row, found by id only while it is
/// the file's latest). The piece is not taken and the version is sent back as stale; the
/// client pushes the whole chunk list again, and nothing is lost or failed.
#[test]
fn a_client_whose_record_is_behind_the_server_pushes_again_and_loses_nothing() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    let file = root.join("p/a.jsonl");
    let line = |n: u32| {
        format!(
            "{{\"type\":\"user\",\"n\":{n},\"text\":\"{}\"}}\n",
            "x".repeat(300)
        )
    };
    std::fs::write(&file, line(0)).unwrap();
    let sync = || {
        world.json(&[
            "sync",
            "--source",
            "lap",
            "--root",
            &format!("c={}", root.display()),
        ])
    };
    let grow = |n: u32| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(line(n).as_bytes()).unwrap();
    };
    sync();
    grow(1);
    sync();
    // The client's record after version 2, kept aside; version 3 makes it stale.
    let state = world.client_home.dir.join(".local/share/hoover");
    let saved = world.path().join("state-after-2");
    hoover_testkit::copy_dir(&state, &saved);
    grow(2);
    sync();
    std::fs::remove_dir_all(&state).unwrap();
    hoover_testkit::copy_dir(&saved, &state);
    grow(3);
    let report = sync();
    assert_eq!(report["files_failed"], 0, "{report}");
    assert_eq!(report["versions_new"], 1, "{report}");
    let versions = world.json(&["versions", "lap/c/p/a.jsonl"]);
    assert_eq!(versions.as_array().unwrap().len(), 4, "{versions}");
    world.check_restores(&root, "lap/c");
    world.verify();
}

/// Reads do not wait for a commit. While a batch's commit holds the version log (its rows
/// written, its transaction open, held for a minute by a test seam), another client lists the
/// files and the page reads the counters: each answers from what was committed before, and the
/// held sync is still waiting when they have. (With one connection for reads and writes, the
/// list waited for the commit and then showed its version.)
#[test]
fn reads_answer_while_a_commit_holds_the_version_log() {
    let mut world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("a.jsonl");
    std::fs::write(&file, b"{\"n\":1}\n").unwrap();
    world.sync_dir("lap", &root);
    world.restart_server_with(|o| {
        o.env = vec![("HOOVER_SLOW_AT".into(), "store-rows-written:60000".into())];
    });
    // The counters are counted once, under the writer's lock; from then on they come from memory.
    assert_eq!(stats(&world)["versions"], 1);

    std::fs::write(&file, b"{\"n\":1}\n{\"n\":2}\n").unwrap();
    let mut held = world
        .hoover(&[
            "sync",
            "--source",
            "lap",
            "--root",
            &format!("c={}", root.display()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    world
        .server
        .wait_for_log("slow point store-rows-written reached");

    let listed = world.json(&["ls"]);
    let files = listed.as_array().unwrap();
    assert_eq!(files.len(), 1, "{listed}");
    assert_eq!(
        files[0]["versions"], 1,
        "the list shows what was committed: {listed}"
    );
    let versions = world.json(&["versions", "lap/c/a.jsonl"]);
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    assert_eq!(stats(&world)["versions"], 1);
    assert!(
        held.try_wait().unwrap().is_none(),
        "the reads answered while the commit was still held"
    );
    world.server.kill();
    let _ = held.wait();
}
