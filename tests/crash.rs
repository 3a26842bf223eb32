//! A server killed (SIGKILL) in the middle of a sync: on restart the store verifies clean, and
//! the next sync completes without resending the chunks the server already committed.

use std::time::Duration;

use hoover_testkit::{corpus, wait_until, World};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");

#[test]
fn server_killed_mid_sync_recovers_with_complete_data() {
    let mut world = World::new(BIN);
    let root = world.path().join("projects");
    // Enough data that the sync is still running when its first batch is committed, even on a
    // fast machine (120 MB once finished before the kill could land).
    let files = corpus::write_tree(&root, 11, 40, 250_000_000);
    let spec = format!("claude={}", root.display());
    let sync = world
        .hoover(&["sync", "--json", "--source", "laptop", "--root", &spec])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once some chunks are committed, while the client is still sending.
    let http = world.server.http_port;
    wait_until(
        "the first committed chunks",
        Duration::from_secs(120),
        || {
            hoover_testkit::http_get(http, "/healthz")
                .ok()
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|v| v["chunks"].as_u64())
                .is_some_and(|n| n > 0)
        },
    );
    world.server.kill();
    let out = sync.wait_with_output().unwrap();
    assert!(!out.status.success(), "the interrupted sync must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connection"),
        "the error should say the connection was lost: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Restart on the same store: it verifies clean.
    world.restart_server();
    let store = world.server.store.to_str().unwrap().to_string();
    let before = world.json(&["verify", "--store", &store]);
    assert_eq!(before["clean"], true, "{before}");
    let committed_before = before["chunks_checked"].as_u64().unwrap();
    assert!(committed_before > 0);

    // The next sync completes and sends only what the server lacks.
    let report = world.json(&["sync", "--source", "laptop", "--root", &spec]);
    let after = world.json(&["verify", "--store", &store]);
    assert_eq!(after["clean"], true, "{after}");
    let total = after["chunks_checked"].as_u64().unwrap();
    assert_eq!(
        report["chunks_sent"].as_u64().unwrap(),
        total - committed_before,
        "chunks committed before the crash were resent: {report}"
    );
    assert_eq!(after["files_checked"], files.len() as u64);

    // Every file is on the server, byte for byte.
    world.check_restored_tree(&root, "laptop/claude");
}
