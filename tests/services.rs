//! The service files parse: systemd units with `systemd-analyze verify` (the binary path
//! pointed at the built hoover, since verify checks that it exists), and the launchd plist with
//! Python's plistlib (plutil is macOS-only).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hoover");

fn verify_unit(name: &str, exec_placeholder: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("systemd").join(name)).unwrap();
    assert!(
        text.contains(exec_placeholder),
        "{name} should run {exec_placeholder}"
    );
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join(name);
    std::fs::write(&unit, text.replace(exec_placeholder, BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed; .ci/run installs it");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {stderr}");
    // verify only warns about unknown keys; a warning about our unit is a failure here.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
    assert!(ours.is_empty(), "{name}: {ours:?}");
}

#[test]
fn the_server_unit_parses_and_is_hardened() {
    verify_unit("hoover-serve.service", "/usr/local/bin/hoover");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hoover-serve.service"),
    )
    .unwrap();
    for needed in [
        "User=hoover",
        "StateDirectory=hoover",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(text.contains(needed), "missing {needed}");
    }
}

#[test]
fn the_agent_user_unit_parses() {
    verify_unit("hoover-watch.service", "%h/.local/bin/hoover");
}

#[test]
fn the_launchd_plist_parses_with_keepalive_and_logs() {
    let plist = Path::new(env!("CARGO_MANIFEST_DIR")).join("launchd/com.github.hoover.watch.plist");
    let script =
        "import plistlib, sys, json; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&plist)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Label"], "com.github.hoover.watch");
    assert_eq!(v["KeepAlive"], true);
    assert_eq!(v["ProgramArguments"][1], "watch");
    assert!(v["StandardErrorPath"]
        .as_str()
        .unwrap()
        .ends_with("/Library/Logs/hoover/watch.log"));
}
