//! The command line itself: help text, the config file and its precedence, and /healthz.

use hoover_testkit::{http_get, World};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");

#[test]
fn help_explains_every_subcommand() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["serve", "sync", "ls", "versions", "restore", "verify"] {
        assert!(text.contains(sub), "--help lacks {sub}:\n{text}");
    }
    let out = std::process::Command::new(BIN)
        .args(["sync", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--server",
        "--identity",
        "--known-hosts",
        "--config",
        "--source",
        "--root",
        "--include",
        "--json",
    ] {
        assert!(text.contains(flag), "sync --help lacks {flag}:\n{text}");
    }
}

#[test]
fn settings_come_from_the_config_file_and_flags_win() {
    let world = World::new(BIN);
    let root = world.path().join("notes");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.jsonl"), b"{}\n").unwrap();
    let config = world.path().join("hoover.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{}\"\nidentity = \"{}\"\nsource = \"from-config\"\nroots = [\"n={}\"]\n",
            world.server_addr(),
            world.identity.display(),
            root.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(BIN);
        world.client_home.apply(&mut cmd);
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let config_arg = config.to_str().unwrap();
    run(&["sync", "--config", config_arg, "--json"]);
    run(&[
        "sync",
        "--config",
        config_arg,
        "--json",
        "--source",
        "from-flag",
    ]);
    // HOOVER_CONFIG is read when --config is absent.
    let mut cmd = std::process::Command::new(BIN);
    world.client_home.apply(&mut cmd);
    let out = cmd
        .env("HOOVER_CONFIG", &config)
        .args(["ls", "--json"])
        .output()
        .unwrap();
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["from-config/n/a.jsonl", "from-flag/n/a.jsonl"]);
    // A config file with a typo is an error that names the file.
    std::fs::write(&config, "sever = \"x\"\n").unwrap();
    let mut cmd = std::process::Command::new(BIN);
    world.client_home.apply(&mut cmd);
    let out = cmd.args(["ls", "--config", config_arg]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hoover.toml"));
}

#[test]
fn no_server_is_a_clear_error() {
    let world = World::new(BIN);
    let mut cmd = std::process::Command::new(BIN);
    world.client_home.apply(&mut cmd);
    let out = cmd.args(["ls"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server"));
    // A server that is not there: the error names the address.
    let mut cmd = std::process::Command::new(BIN);
    world.client_home.apply(&mut cmd);
    let out = cmd
        .args(["ls", "--server", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}

#[test]
fn healthz_answers_with_counts() {
    let world = World::new(BIN);
    let (status, body) = http_get(world.server.http_port, "/healthz").unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["versions"], 0);
}

/// A failing index is a failing server to a monitor: 503, with why (today's main said 200).
#[test]
fn healthz_is_503_when_the_index_cannot_open() {
    let mut world = World::new(BIN);
    world.server.kill();
    let index = world.server.store.join("index");
    std::fs::remove_dir_all(&index).ok();
    std::fs::write(&index, b"not a directory").unwrap();
    world.restart_server();
    let (status, body) = http_get(world.server.http_port, "/healthz").unwrap();
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["index"]
            .as_str()
            .unwrap()
            .contains("search is unavailable"),
        "{v}"
    );
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    // Regression: `hoover ls | head -1` panicked with "failed printing to stdout".
    let world = World::new(BIN);
    let root = world.path().join("p");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.jsonl"), b"{}\n").unwrap();
    world.json(&["sync", "--root", &format!("r={}", root.display())]);
    let mut child = world
        .hoover(&["ls"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_sync_whose_server_dies_fails_and_says_so() {
    // Regression: a broken pipe to a server killed mid-push was taken for `hoover ls | head`
    // and the sync exited 0 with nothing printed. The server here dies when the first chunk
    // arrives (a crash point), while the client is still sending.
    let mut world = World::new(BIN);
    world.restart_server_with(|o| o.env = vec![("HOOVER_CRASH_AT".into(), "ingest-chunk".into())]);
    let root = world.path().join("p");
    hoover_testkit::corpus::write_tree(&root, 2, 10, 20_000_000);
    let out = world.run(&["sync", "--root", &format!("r={}", root.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("hoover: error"), "{stderr}");
    assert!(stderr.contains("stopped part-way"), "{stderr}");
    assert!(stderr.contains("run it again"), "{stderr}");
}

/// By default the server's log holds hoover's own lines, not its dependencies' INFO chatter
/// (tantivy logs every commit and merge), and no terminal colours when it goes to a file.
#[test]
fn the_default_log_is_for_people() {
    let mut world = World::new(BIN);
    // The first server logs at RUST_LOG=info into the same file: look past its lines.
    let before = world.server.log().len();
    world.restart_server_with(|o| o.env.push(("RUST_LOG".into(), String::new())));
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..3 {
        std::fs::write(
            root.join(format!("s{i}.jsonl")),
            format!(
                "{{\"type\":\"user\",\"sessionId\":\"s{i}\",\"uuid\":\"u{i}\",\"message\":{{\"role\":\"user\",\"content\":\"a wombat_{i} appears\"}}}}\n"
            ),
        )
        .unwrap();
    }
    world.sync_dir("laptop", &root);
    hoover_testkit::wait_until(
        "the messages are searchable (the index has committed)",
        std::time::Duration::from_secs(60),
        || {
            http_get(world.server.http_port, "/api/search?q=wombat_2")
                .is_ok_and(|(_, b)| b.contains("\"total\":1"))
        },
    );
    let log = world.server.log()[before..].to_string();
    assert!(
        log.contains("hoover_server"),
        "hoover's own INFO lines are kept:\n{log}"
    );
    assert!(
        !log.contains("tantivy"),
        "dependency INFO lines by default:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "terminal colours in a log file:\n{log}"
    );
}

#[test]
fn version_names_the_formats() {
    let out = std::process::Command::new(BIN)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("hoover ")
            && text.contains("protocol 1.")
            && text.contains(&format!(
                "store format {}",
                hoover_store::STORE_FORMAT_VERSION
            ))
            && text.contains("index schema"),
        "{text}"
    );
}

/// What people read: `ls` has a header and sizes in units, a sync's summary counts in the
/// right number; `--json` stays as it was.
#[test]
fn listings_and_summaries_read_well() {
    let world = World::new(BIN);
    let root = world.path().join("p");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.jsonl"), "{}\n".repeat(1000)).unwrap();
    let sync = world.run(&["sync", "--root", &format!("r={}", root.display())]);
    let summary = String::from_utf8_lossy(&sync.stderr);
    assert!(
        summary.contains("1 file scanned") && summary.contains("1 new version,"),
        "{summary}"
    );
    let ls = String::from_utf8(world.ok(&["ls"])).unwrap();
    let mut lines = ls.lines();
    let header = lines.next().unwrap();
    assert!(
        header.trim_start().starts_with("VERSIONS") && header.ends_with("KEY"),
        "{ls}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains("3.0 KB") && row.ends_with("/r/a.jsonl"),
        "{ls}"
    );
    let json = world.json(&["ls"]);
    assert_eq!(json[0]["size"], 3000);
}

/// `verify` and `reindex` find the store as `serve` does: from the config file's `[serve]`
/// when no `--store` is given.
#[test]
fn verify_finds_the_store_as_serve_does() {
    let world = World::new(BIN);
    let config = world.path().join("server.toml");
    std::fs::write(
        &config,
        format!("[serve]\nstore = \"{}\"\n", world.server.store.display()),
    )
    .unwrap();
    let report = world.json(&["verify", "--config", config.to_str().unwrap()]);
    assert_eq!(report["clean"], true, "{report}");
    let missing = world.run(&["verify", "--store", world.path().to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--store DIR"));
}

/// `status` with no agent ever run: an answer, not an error, with the documented exit 3.
#[test]
fn status_without_an_agent_exits_3_and_says_how_to_start_one() {
    let world = World::new(BIN);
    let out = world.run(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("not running") && said.contains("hoover watch"),
        "{said}"
    );
    assert!(
        !said.contains("hoover service"),
        "names a command that does not exist: {said}"
    );
    let json = world.run(&["status", "--json"]);
    assert_eq!(json.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["running"], false);
}
