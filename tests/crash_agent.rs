//! The agent killed: `hoover watch` gets SIGKILL at a random moment of its work, many times,
//! while transcripts grow, and is started again. After each kill the store verifies clean; at
//! the end the restarted agent ships exactly the chunks the server lacks (its count of chunks
//! sent equals the chunks the store gained), and every file restores byte for byte.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hoover_testkit::{corpus, files_under, World};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");
const KILLS: u64 = 25;
const DEADLINE: Duration = Duration::from_secs(120);

fn start_agent(world: &World, root: &Path, n: u64) -> Child {
    world
        .hoover(&[
            "watch",
            "--source",
            "lap",
            "--root",
            &format!("c={}", root.display()),
            "--status-file",
            world.path().join("agent.json").to_str().unwrap(),
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(world.path().join(format!("agent-{n}.log"))).unwrap())
        .spawn()
        .unwrap()
}

/// Local files whose content the server does not hold as the latest version of their key.
fn behind(world: &World, root: &Path) -> Vec<String> {
    let out = world.run(&["ls", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let server: std::collections::HashMap<String, String> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap().to_string(),
                f["blake3"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    files_under(root)
        .into_iter()
        .filter_map(|f| {
            let key = format!("lap/c/{}", f.strip_prefix(root).unwrap().display());
            let local = blake3::hash(&std::fs::read(&f).unwrap())
                .to_hex()
                .to_string();
            (server.get(&key) != Some(&local)).then_some(key)
        })
        .collect()
}

fn wait_caught_up(world: &World, root: &Path) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let late = behind(world, root);
        if late.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not catch up; behind: {late:?}\nserver log:\n{}",
            world.server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Verifies the store (it must be clean) and returns its chunk and version counts.
fn stored(world: &World) -> (u64, u64) {
    let verify = world.verify();
    (
        verify["chunks_checked"].as_u64().unwrap(),
        verify["versions_checked"].as_u64().unwrap(),
    )
}

#[test]
fn an_agent_killed_at_random_moments_loses_nothing_and_resends_nothing() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    corpus::write_tree(&root, 4, 12, 6_000_000);
    let mut rng = corpus::Rng::new(4242);
    // New work: a new session, and appends to two old ones.
    let mut add_work =
        |round: u64| corpus::grow(&root, &mut rng, round, 50_000, 1_500_000, 400_000);

    // How long a fresh agent takes to start and ship one round of work here, so that the
    // kills land across it.
    let mut agent = start_agent(&world, &root, 1000);
    wait_caught_up(&world, &root);
    agent.kill().unwrap();
    agent.wait().unwrap();
    // The fastest of three rounds: each is measured by polling the server with CLI calls, which
    // a loaded machine slows, and a window stretched by that lets most kills land too late.
    let mut span_ms = u64::MAX;
    for i in 0..3 {
        add_work(KILLS + i);
        let started = Instant::now();
        let mut agent = start_agent(&world, &root, 1001 + i);
        wait_caught_up(&world, &root);
        span_ms = span_ms.min(started.elapsed().as_millis() as u64);
        agent.kill().unwrap();
        agent.wait().unwrap();
    }
    let span_ms = span_ms.max(50);
    println!("a fresh agent ships a round in {span_ms} ms");

    let mut delays = corpus::Rng::new(99);
    let mut interrupted = 0;
    let mut mid_push = 0;
    for round in 0..KILLS {
        let (_, versions_before) = stored(&world);
        add_work(round);
        let mut agent = start_agent(&world, &root, round);
        // The fault: SIGKILL at a random moment of the agent's start and push (a fault injected
        // at a time, not a wait for anything).
        std::thread::sleep(Duration::from_millis(delays.below(span_ms)));
        agent.kill().unwrap();
        agent.wait().unwrap();
        let unshipped = !behind(&world, &root).is_empty();
        let (_, versions_after) = stored(&world);
        if unshipped {
            interrupted += 1;
            if versions_after > versions_before {
                mid_push += 1;
            }
        }
    }
    println!("{interrupted} of {KILLS} kills left work unshipped, {mid_push} of them mid-push");
    assert!(
        interrupted >= KILLS / 5,
        "too few kills landed before the agent finished ({interrupted} of {KILLS})"
    );

    // A last start ships exactly what is missing.
    let (before, _) = stored(&world);
    let status_path = world.path().join("agent.json");
    let _ = std::fs::remove_file(&status_path);
    let mut agent = start_agent(&world, &root, KILLS);
    wait_caught_up(&world, &root);
    let gained = stored(&world).0 - before;
    let deadline = Instant::now() + DEADLINE;
    let sent = loop {
        let status: serde_json::Value = std::fs::read(&status_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let sent = status["chunks_sent"].as_u64().unwrap_or(0);
        if sent == gained && status["pending"] == 0 {
            break sent;
        }
        assert!(
            Instant::now() < deadline,
            "the agent sent {sent} chunks; the store gained {gained}: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    agent.kill().unwrap();
    agent.wait().unwrap();

    // Every file restores byte for byte.
    let files = world.check_restored_tree(&root, "lap/c");
    let store = world.server.store.display().to_string();
    let verify = world.json(&["verify", "--store", &store]);
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "agent_kills",
        serde_json::json!({
            "kills": KILLS,
            "interrupted": interrupted,
            "mid_push": mid_push,
            "chunks_sent_after": sent,
            "chunks_missing_after": gained,
            "versions_checked": verify["versions_checked"],
            "files_restored": files,
        }),
    );
}
