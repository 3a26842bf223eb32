//! `hoover watch` end to end: the real agent and server over SSH on loopback, real files.
//! Every wait is on a condition with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use hoover_testkit::{corpus, wait_until, World};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");
const DEADLINE: Duration = Duration::from_secs(60);

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(world: &World, root: &Path) -> Agent {
        let log = world.path().join(format!("watch-{}.log", rand_suffix()));
        let child = world
            .hoover(&[
                "watch",
                "--source",
                "laptop",
                "--root",
                &format!("claude={}", root.display()),
                "--status-file",
                world.path().join("agent.json").to_str().unwrap(),
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn hash(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

/// The server's latest BLAKE3 for each key.
fn server_hashes(world: &World) -> std::collections::BTreeMap<String, String> {
    let out = world.run(&["ls", "--json"]);
    if !out.status.success() {
        return Default::default();
    }
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    listing
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["key"].as_str().unwrap().to_string(),
                        f["blake3"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for_content(world: &World, agent: &Agent, key: &str, path: &Path) {
    let want = hash(path);
    let what = format!("{key} to reach the server with the local content");
    let deadline = std::time::Instant::now() + DEADLINE;
    while server_hashes(world).get(key) != Some(&want) {
        if std::time::Instant::now() > deadline || agent.log().contains("hoover: error") {
            panic!(
                "timed out waiting for {what}\nagent log:\n{}\nserver log:\n{}",
                agent.log(),
                world.server.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn versions(world: &World, key: &str) -> Vec<serde_json::Value> {
    let out = world.run(&["versions", key, "--json"]);
    if !out.status.success() {
        return Vec::new();
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn deleted(world: &World, key: &str) -> bool {
    versions(world, key)
        .last()
        .is_some_and(|v| !v["deleted_at"].is_null())
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn watch_ships_appends_new_dirs_renames_truncations_and_deletions() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    let a = root.join("p/a.jsonl");
    let mut session = corpus::Session::new(1);
    std::fs::write(&a, session.bytes(200_000)).unwrap();
    let mut agent = Agent::start(&world, &root);
    wait_for_content(&world, &agent, "laptop/claude/p/a.jsonl", &a);

    // Appends become new versions.
    append(&a, session.next_line().as_bytes());
    wait_for_content(&world, &agent, "laptop/claude/p/a.jsonl", &a);
    assert!(versions(&world, "laptop/claude/p/a.jsonl").len() >= 2);

    // A new directory with a subagent transcript in it.
    std::fs::create_dir_all(root.join("p/s1/subagents")).unwrap();
    let sub = root.join("p/s1/subagents/agent-1.jsonl");
    std::fs::write(&sub, session.next_line()).unwrap();
    wait_for_content(
        &world,
        &agent,
        "laptop/claude/p/s1/subagents/agent-1.jsonl",
        &sub,
    );

    // A rename is a new key, and the old key's deletion is recorded.
    let b = root.join("p/b.jsonl");
    std::fs::rename(&a, &b).unwrap();
    wait_for_content(&world, &agent, "laptop/claude/p/b.jsonl", &b);
    wait_until("the rename's deletion", DEADLINE, || {
        deleted(&world, "laptop/claude/p/a.jsonl")
    });

    // A truncated file is a new version.
    std::fs::write(&b, b"{\"type\":\"user\",\"message\":\"rewritten\"}\n").unwrap();
    wait_for_content(&world, &agent, "laptop/claude/p/b.jsonl", &b);

    // A deleted file stays on the server, with every version restorable.
    std::fs::remove_file(&b).unwrap();
    wait_until("b's deletion", DEADLINE, || {
        deleted(&world, "laptop/claude/p/b.jsonl")
    });
    let history = versions(&world, "laptop/claude/p/b.jsonl");
    assert_eq!(history.len(), 2);
    let out = world.path().join("b-restored");
    world.ok(&[
        "restore",
        "laptop/claude/p/b.jsonl",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"{\"type\":\"user\",\"message\":\"rewritten\"}\n"
    );

    // `hoover status` reads the agent's state (written at most once a second while busy).
    let status_of = || {
        let status_file = world.path().join("agent.json");
        let out = world.run(&[
            "status",
            "--json",
            "--status-file",
            status_file.to_str().unwrap(),
        ]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    wait_until("the status file to catch up", DEADLINE, || {
        status_of()["versions_shipped"]
            .as_u64()
            .is_some_and(|n| n >= 5)
    });
    let status = status_of();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["connected"], true, "{status}");

    // SIGTERM: exit 0.
    let code = agent.terminate();
    assert!(code.success(), "watch exited with {code}: {}", agent.log());
}

#[test]
fn writes_made_while_the_server_is_down_arrive_when_it_returns() {
    let mut world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let a = root.join("a.jsonl");
    let mut session = corpus::Session::new(2);
    std::fs::write(&a, session.bytes(50_000)).unwrap();
    let agent = Agent::start(&world, &root);
    wait_for_content(&world, &agent, "laptop/claude/a.jsonl", &a);

    let port = world.server.ssh_port;
    world.server.kill();
    for _ in 0..20 {
        append(&a, session.next_line().as_bytes());
    }
    let c = root.join("c.jsonl");
    std::fs::write(&c, session.next_line()).unwrap();
    wait_until("the agent to notice it is offline", DEADLINE, || {
        agent.log().contains("working offline")
    });
    world.server = hoover_testkit::ServerProcess::start(&world.server_options(port));
    wait_for_content(&world, &agent, "laptop/claude/a.jsonl", &a);
    wait_for_content(&world, &agent, "laptop/claude/c.jsonl", &c);
    assert!(agent.log().contains("connected again"), "{}", agent.log());
    // One line when going offline, not one per event or retry.
    assert_eq!(
        agent.log().matches("working offline").count(),
        1,
        "{}",
        agent.log()
    );
}

#[test]
fn an_agent_killed_mid_push_ships_what_is_missing_on_restart() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    let files = corpus::write_tree(&root, 21, 30, 80_000_000);
    let mut agent = Agent::start(&world, &root);
    let http = world.server.http_port;
    wait_until("the first committed batch", DEADLINE, || {
        hoover_testkit::http_get(http, "/healthz")
            .ok()
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["versions"].as_u64())
            .is_some_and(|n| n > 0)
    });
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let agent = Agent::start(&world, &root);
    for f in &files {
        let key = format!("laptop/claude/{}", f.strip_prefix(&root).unwrap().display());
        wait_for_content(&world, &agent, &key, f);
    }
    let verify = world.json(&["verify", "--store", world.server.store.to_str().unwrap()]);
    assert_eq!(verify["clean"], true, "{verify}");
    // Nothing was stored twice: one version per file.
    assert_eq!(verify["versions_checked"], files.len() as u64, "{verify}");
}

#[test]
fn a_burst_of_appends_coalesces_and_the_final_content_is_exact() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let a = root.join("burst.jsonl");
    let mut session = corpus::Session::new(3);
    std::fs::write(&a, session.next_line()).unwrap();
    let agent = Agent::start(&world, &root);
    wait_for_content(&world, &agent, "laptop/claude/burst.jsonl", &a);
    for _ in 0..1000 {
        append(&a, session.next_line().as_bytes());
    }
    wait_for_content(&world, &agent, "laptop/claude/burst.jsonl", &a);
    let n = versions(&world, "laptop/claude/burst.jsonl").len();
    assert!(n < 100, "1,000 appends made {n} versions");
    let out = world.path().join("restored");
    world.ok(&[
        "restore",
        "laptop/claude/burst.jsonl",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&a).unwrap());
}

/// `watch` never follows a symbolic link, as `sync` never does: a link to a file outside the
/// root (`/etc/passwd`, say) or to a whole other tree, made while it runs, is not uploaded.
#[test]
fn watch_never_follows_symbolic_links() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    let a = root.join("p/a.jsonl");
    std::fs::write(&a, b"{\"type\":\"user\"}\n").unwrap();
    let agent = Agent::start(&world, &root);
    wait_for_content(&world, &agent, "laptop/claude/p/a.jsonl", &a);

    let outside = world.path().join("outside");
    std::fs::create_dir_all(outside.join("tree")).unwrap();
    std::fs::write(outside.join("secret.jsonl"), b"{\"secret\":1}\n").unwrap();
    std::fs::write(outside.join("tree/x.jsonl"), b"{\"x\":1}\n").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.jsonl"), root.join("p/evil.jsonl")).unwrap();
    std::os::unix::fs::symlink(outside.join("tree"), root.join("linked")).unwrap();
    // A real file made after the links: once it is on the server, the links' events were
    // handled in the same push or an earlier one.
    let after = root.join("p/after.jsonl");
    std::fs::write(&after, b"{\"after\":1}\n").unwrap();
    wait_for_content(&world, &agent, "laptop/claude/p/after.jsonl", &after);
    // A change to a linked file's target, then another real change.
    append(&outside.join("tree/x.jsonl"), b"{\"x\":2}\n");
    append(&a, b"{\"type\":\"user\",\"n\":2}\n");
    wait_for_content(&world, &agent, "laptop/claude/p/a.jsonl", &a);
    let keys: Vec<String> = server_hashes(&world).into_keys().collect();
    assert_eq!(
        keys,
        vec!["laptop/claude/p/a.jsonl", "laptop/claude/p/after.jsonl"],
        "agent log:\n{}",
        agent.log()
    );
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "watch_links",
        serde_json::json!({ "links_made": 2, "uploaded_through_links": 0 }),
    );
}

/// inotify watches a directory only once notify has seen it made, so a file written into a
/// freshly made directory tree can come before any watch on it. Every such file must still
/// arrive, without waiting for the periodic rescan (five minutes by default).
#[test]
fn files_written_into_freshly_made_directories_all_arrive() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    let first = root.join("p/first.jsonl");
    let mut session = corpus::Session::new(7);
    std::fs::write(&first, session.next_line()).unwrap();
    let agent = Agent::start(&world, &root);
    wait_for_content(&world, &agent, "laptop/claude/p/first.jsonl", &first);

    let mut written = Vec::new();
    for i in 0..40 {
        let dir = root.join(format!("p/s{i}/subagents"));
        std::fs::create_dir_all(&dir).unwrap();
        for path in [
            root.join(format!("p/s{i}.jsonl")),
            root.join(format!("p/s{i}/notes.jsonl")),
            dir.join("agent-1.jsonl"),
        ] {
            std::fs::write(&path, session.next_line()).unwrap();
            let key = format!(
                "laptop/claude/{}",
                path.strip_prefix(&root).unwrap().display()
            );
            written.push((key, hash(&path)));
        }
    }
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let have = server_hashes(&world);
        let missing: Vec<&String> = written
            .iter()
            .filter(|(key, want)| have.get(key) != Some(want))
            .map(|(key, _)| key)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never shipped: {missing:?}\nagent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A root that goes away as a whole (an unmounted disk, a moved folder) is no evidence that its
/// files were deleted: the agent says so once and records no deletion (as `sync` does), and
/// when the root returns its files are watched again.
#[test]
fn a_root_that_vanishes_as_a_whole_records_no_deletions() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(root.join("p")).unwrap();
    let a = root.join("p/a.jsonl");
    let key = "laptop/claude/p/a.jsonl";
    let mut session = corpus::Session::new(3);
    std::fs::write(&a, session.bytes(20_000)).unwrap();
    let agent = Agent::start(&world, &root);
    wait_for_content(&world, &agent, key, &a);

    let away = world.path().join("unmounted");
    std::fs::rename(&root, &away).unwrap();
    hoover_testkit::wait_until("the agent to notice the root is gone", DEADLINE, || {
        agent.log().contains("the root is not there")
    });
    assert!(!deleted(&world, key), "agent log:\n{}", agent.log());
    assert!(
        !agent.log().contains("deleted on this machine"),
        "{}",
        agent.log()
    );

    std::fs::rename(&away, &root).unwrap();
    append(&a, session.next_line().as_bytes());
    wait_for_content(&world, &agent, key, &a);
    let versions = versions(&world, key);
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(
        versions.iter().all(|v| v["deleted_at"].is_null()),
        "{versions:?}"
    );
}
