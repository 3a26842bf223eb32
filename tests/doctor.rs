//! `hoover doctor` names the first thing that is wrong, with its fix, and passes a good set-up.

use std::process::Stdio;

use hoover_testkit::{make_key, wait_until, World};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");

fn doctor(world: &World, extra: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(BIN);
    world.client_home.apply(&mut cmd);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let status = world.path().join("agent.json");
    let out = cmd
        .args([
            "doctor",
            "--root",
            &format!("c={}", root.display()),
            "--source",
            "laptop",
        ])
        .arg("--status-file")
        .arg(&status)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn doctor_passes_a_good_setup_and_names_each_failure() {
    let mut world = World::new(BIN);
    let server = world.server_addr();
    // No agent yet: everything up to the test push passes, the agent check fails.
    let (code, text) = doctor(&world, &["--server", &server]);
    assert_eq!(code, 1, "{text}");
    for line in [
        "ok    identity",
        "ok    network",
        "ok    host key: new",
        "ok    authentication",
        "ok    protocol",
        "ok    test push",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("FAIL  agent"), "{text}");
    // The test push leaves no trace among the chats: not listed, counted, shown as a source
    // or searchable; it is there for whoever asks for it by name.
    assert_eq!(world.json(&["ls"]), serde_json::json!([]));
    let (_, stats) = hoover_testkit::http_get(world.server.http_port, "/api/stats").unwrap();
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        (stats["files"].as_u64(), stats["versions"].as_u64()),
        (Some(0), Some(0)),
        "{stats}"
    );
    let (_, sources) = hoover_testkit::http_get(world.server.http_port, "/sources").unwrap();
    assert!(!sources.contains("hoover-probe"), "{sources}");
    let probes = world.json(&["ls", ".hoover-probe/"]);
    assert_eq!(probes.as_array().map(Vec::len), Some(1), "{probes}");

    // With the agent running and connected, all pass.
    let root = world.path().join("projects");
    let mut agent = world
        .hoover(&[
            "watch",
            "--root",
            &format!("c={}", root.display()),
            "--status-file",
            world.path().join("agent.json").to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = world.path().join("agent.json");
    wait_until(
        "the agent to connect",
        std::time::Duration::from_secs(60),
        || std::fs::read_to_string(&status).is_ok_and(|t| t.contains("\"connected\": true")),
    );
    let (code, text) = doctor(&world, &["--server", &server]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ok    host key: known"), "{text}");
    assert!(text.contains("ok    agent: running"), "{text}");
    let _ = agent.kill();
    let _ = agent.wait();

    // A key the server does not know.
    let stranger = world.path().join("stranger");
    make_key(&stranger);
    let (code, text) = doctor(
        &world,
        &[
            "--server",
            &server,
            "--identity",
            stranger.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(text.contains("FAIL  authentication"), "{text}");
    assert!(text.contains("authorized_keys"), "{text}");

    // No server.
    world.server.kill();
    let (code, text) = doctor(&world, &["--server", &server]);
    assert_eq!(code, 1);
    assert!(text.contains("FAIL  network"), "{text}");
    assert!(text.contains("fix: start `hoover serve`"), "{text}");
}
