//! Named crash points: the server aborts at each point of the ingest path in turn (reading a
//! chunk off the wire, staging it in a pack, installing the pack or appending it to the
//! growing one, writing the version rows,
//! after the commit, adding to the index, after the index commit; `hoover_store::fault`), is
//! restarted, and must lose nothing: the store verifies clean, the next sync sends exactly the
//! chunks the store lacks, every file restores byte for byte, and the index holds every message
//! once. Where `crash_many.rs` kills at random moments, this reaches each phase for certain.

use std::time::{Duration, Instant};

use hoover_testkit::{corpus, count_lines, http_get, wait_until, World};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");

/// The points, and which hit of each to crash on (a later hit lands mid-batch). The push is
/// a new session of 2 MB and two appends, whose pack (~0.5 MB) is appended to the growing
/// pack; for `store-pack-installed`, a session of 8 MB, whose pack is too big to be appended
/// (`docs/store.md`) and is installed as a file of its own.
const POINTS: [(&str, u32); 8] = [
    ("ingest-chunk", 5),
    ("store-chunk-staged", 5),
    ("store-pack-installed", 1),
    ("store-pack-appended", 1),
    ("store-rows-written", 1),
    ("store-committed", 1),
    ("index-added", 1),
    ("index-committed", 1),
];

fn indexed_messages(world: &World) -> u64 {
    http_get(world.server.http_port, "/api/stats")
        .ok()
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["index"]["messages"].as_u64())
        .unwrap_or(0)
}

/// One point: returns the versions verified at the end.
fn crash_at(point: &str, nth: u32, seed: u64) -> u64 {
    let mut world = World::new(BIN);
    let root = world.path().join("projects");
    corpus::write_tree(&root, 3, 6, 3_000_000);
    let spec = format!("c={}", root.display());
    world.ok(&["sync", "--source", "lap", "--root", &spec]);

    // New work: a new session, and appends to two old ones.
    let new_session = if point == "store-pack-installed" {
        8_000_000
    } else {
        2_000_000
    };
    corpus::grow(
        &root,
        &mut corpus::Rng::new(seed),
        0,
        seed,
        new_session,
        500_000,
    );

    // The server, armed, takes the push and dies at the point.
    world.restart_server_with(|o| {
        o.env = vec![("HOOVER_CRASH_AT".into(), format!("{point}:{nth}"))]
    });
    let _ = world.run(&["sync", "--source", "lap", "--root", &spec]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while world.server.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the server did not reach {point}:\n{}",
            world.server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = world.server.log();
    assert!(
        log.contains(&format!("crash point {point} reached")),
        "{point}: {log}"
    );

    // A pack installed but never recorded is left over, named by `verify`, and so are the
    // bytes of a batch appended to the growing pack but never recorded; the restarted server
    // removes the one and cuts off the other.
    let report = world.verify();
    assert_eq!(report["clean"], true, "{point}: {report}");
    let leftover = report["unreferenced_packs"].as_u64().unwrap();
    assert_eq!(
        leftover,
        (point == "store-pack-installed") as u64,
        "{point}"
    );
    let uncommitted = report["uncommitted_bytes"].as_u64().unwrap();
    assert_eq!(
        uncommitted > 0,
        matches!(point, "store-pack-appended" | "store-rows-written"),
        "{point}: {report}"
    );

    // Restarted: nothing lost, nothing half-recorded, nothing confirmed sent again.
    world.restart_server();
    let before = world.verify();
    assert_eq!(before["unreferenced_packs"], 0, "{point}: {before}");
    assert_eq!(before["uncommitted_bytes"], 0, "{point}: {before}");
    let before = before["chunks_checked"].as_u64().unwrap();
    let report = world.json(&["sync", "--source", "lap", "--root", &spec]);
    let after = world.verify();
    assert_eq!(
        report["chunks_sent"].as_u64().unwrap(),
        after["chunks_checked"].as_u64().unwrap() - before,
        "{point}: {report}"
    );
    world.check_restored_tree(&root, "lap/c");
    let messages = count_lines(&root);
    wait_until(
        &format!("{point}: every message indexed once"),
        Duration::from_secs(60),
        || indexed_messages(&world) == messages,
    );
    after["versions_checked"].as_u64().unwrap()
}

#[test]
fn every_crash_point_of_the_ingest_path_loses_nothing() {
    let mut versions = 0;
    for (i, (point, nth)) in POINTS.iter().enumerate() {
        versions += crash_at(point, *nth, 7_000 + i as u64 * 10);
    }
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "crash_points",
        serde_json::json!({
            "points": POINTS.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            "versions_checked": versions,
        }),
    );
}
