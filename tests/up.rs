//! `hoover up`: zero configuration, demo data when there are no transcripts, live appends
//! reaching the store, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use hoover_testkit::{http_get, wait_until, Home};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");

/// `hoover up` on port 0 with no Claude Code transcripts (so with the demo tree), its stderr
/// piped.
fn spawn_up(home: &Home, tmp: &std::path::Path, args: &[&str]) -> std::process::Child {
    let empty_claude = tmp.join("claude");
    std::fs::create_dir_all(empty_claude.join("projects")).unwrap();
    let mut cmd = Command::new(BIN);
    home.apply(&mut cmd);
    cmd.args([
        "up",
        "--ssh-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ])
    .args(args)
    .env("CLAUDE_CONFIG_DIR", &empty_claude)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

#[test]
fn up_runs_server_watcher_and_a_live_demo_then_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::new(tmp.path(), "home");
    let mut child = spawn_up(&home, tmp.path(), &["--demo-every", "1"]);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let mut ssh = None;
    while ssh.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("hoover up printed its address");
        if let Some(rest) = line.strip_prefix("hoover: listening ssh=") {
            ssh = rest.split_whitespace().next().map(str::to_string);
        }
        lines.push(line);
    }
    let ssh = ssh.unwrap();
    let data = home.dir.join(".local/share/hoover/up");
    let client = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        home.apply(&mut cmd);
        cmd.args(args)
            .args(["--server", &ssh, "--identity"])
            .arg(data.join("client_key"))
            .arg("--known-hosts")
            .arg(data.join("known_hosts"))
            .output()
            .unwrap()
    };
    let session = "demo/claude/-home-demo-src-hoover/5e55a0e0-0000-4000-8000-000000000001.jsonl";
    // The demo tree arrives, and keeps growing: versions go up.
    wait_until(
        "three demo versions of the session",
        Duration::from_secs(60),
        || {
            let out = client(&["versions", session, "--json"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v.as_array().map(|a| a.len()))
                .is_some_and(|n| n >= 3)
        },
    );
    let listing: serde_json::Value =
        serde_json::from_slice(&client(&["ls", "--json"]).stdout).unwrap();
    assert_eq!(listing.as_array().unwrap().len(), 3, "{listing}");
    // The demo chats are searchable.
    wait_until("the demo is searchable", Duration::from_secs(60), || {
        let out = client(&["search", "borrow checker", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .is_some_and(|v| {
                v["total"].as_u64().unwrap_or(0) > 0 && v["hits"][0]["role"] == "assistant"
            })
    });

    // `up` left a client behind: from another process, plain commands reach its server, and
    // `status` and `doctor` find its agent.
    let plain = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        home.apply(&mut cmd);
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "plain `hoover {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(plain(&["ls"]).contains("5e55a0e0-0000-4000-8000-000000000001.jsonl"));
    assert!(plain(&["search", "borrow", "checker"]).contains("demo/claude"));
    assert!(plain(&["status"]).contains("agent: running"));
    let doctor = plain(&["doctor"]);
    assert!(!doctor.contains("FAIL"), "{doctor}");
    // It said why it chose the demo, and where the client settings are.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
        lines.push(line);
    }
    let said = lines.join("\n");
    assert!(said.contains("holds no .jsonl transcripts yet"), "{said}");
    assert!(said.contains("client settings in"), "{said}");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "hoover up exited with {status}");
    let verify = Command::new(BIN)
        .args(["verify", "--json", "--store"])
        .arg(data.join("store"))
        .output()
        .unwrap();
    let verify: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(verify["clean"], true, "{verify}");
    assert!(
        verify["versions_checked"].as_u64().unwrap() >= 5,
        "{verify}"
    );
    // The last demo message written before the stop was flushed to the server: the store's
    // latest version equals the file.
    let local =
        data.join("demo/projects/-home-demo-src-hoover/5e55a0e0-0000-4000-8000-000000000001.jsonl");
    let out = tmp.path().join("restored");
    let mut cmd = Command::new(BIN);
    home.apply(&mut cmd);
    let mut server = cmd
        .args([
            "serve",
            "--ssh-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--store",
        ])
        .arg(data.join("store"))
        .arg("--authorized-keys")
        .arg(data.join("authorized_keys"))
        .arg("--host-key")
        .arg(data.join("host_key"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server_lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let line = server_lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("hoover: listening"))
        .unwrap();
    // Keep reading the server's log so that it never writes to a closed pipe.
    std::thread::spawn(move || server_lines.map_while(Result::ok).for_each(drop));
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ssh="))
        .unwrap()
        .to_string();
    let mut cmd = Command::new(BIN);
    home.apply(&mut cmd);
    let restored = cmd
        .args(["restore", session, "-o"])
        .arg(&out)
        .args(["--server", &addr, "--identity"])
        .arg(data.join("client_key"))
        .arg("--known-hosts")
        .arg(data.join("known_hosts"))
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&local).unwrap());
}

/// `hoover up --http-token`: the page asks for the token, and `up` prints the login link.
#[test]
fn up_with_a_token_guards_its_page_and_prints_the_login_link() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::new(tmp.path(), "home");
    let token = "up-test-token-0123456789";
    let mut child = spawn_up(&home, tmp.path(), &["--http-token", token]);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut http: Option<u16> = None;
    let mut link = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("hoover: listening ") {
            http = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("http="))
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                .map(|a| a.port());
        }
        if line.contains("web page at") {
            link = Some(line);
            break;
        }
    }
    // Keep draining its log so that it never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let port = http.expect("hoover up printed its HTTP address");
    let link = link.expect("hoover up printed its web page");
    assert!(link.contains(&format!("/?token={token}")), "{link}");
    let (status, _) = http_get(port, "/api/stats").unwrap();
    assert_eq!(status, 401, "without the token");
    let (status, _) = http_get(port, &format!("/?token={token}")).unwrap();
    assert_eq!(status, 303, "the login link sets a cookie");
    let (status, _) = http_get(port, "/healthz").unwrap();
    assert_eq!(status, 200);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
