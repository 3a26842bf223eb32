//! Upgrading keeps every version: stores written by hoover's store formats 1 to 8 (the
//! committed fixtures `tests/fixtures/store-v1` to `store-v8`, see the README
//! beside them) are each checked as they are, then served by today's server, which migrates
//! them to today's format; every old version restores byte for byte, new versions go on top as
//! pieces, and `verify` finds the store clean.

use std::path::{Path, PathBuf};

use hoover_testkit::{copy_dir, World};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every version the fixture holds, with its content, from the files it was made of.
fn expected() -> Vec<(&'static str, u64, Vec<u8>)> {
    let dir = fixtures().join("store-v1-expected");
    let a = std::fs::read(dir.join("a.jsonl")).unwrap();
    vec![
        ("fx/r/a.jsonl", 1, a[..306_883].to_vec()),
        ("fx/r/a.jsonl", 2, a[..310_662].to_vec()),
        ("fx/r/a.jsonl", 3, a.clone()),
        (
            "fx/r/c.jsonl",
            1,
            std::fs::read(dir.join("c.jsonl.1")).unwrap(),
        ),
        (
            "fx/r/c.jsonl",
            2,
            std::fs::read(dir.join("c.jsonl.2")).unwrap(),
        ),
    ]
}

fn verify(store: &Path) -> serde_json::Value {
    let out = std::process::Command::new(BIN)
        .args(["verify", "--json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn restore(world: &World, key: &str, seq: u64) -> Vec<u8> {
    let out = world
        .path()
        .join(format!("restored-{}-{seq}", key.replace('/', "_")));
    let _ = std::fs::remove_file(&out);
    world.ok(&[
        "restore",
        key,
        "--version",
        &seq.to_string(),
        "-o",
        out.to_str().unwrap(),
    ]);
    std::fs::read(&out).unwrap()
}

#[test]
fn a_format_1_store_keeps_every_version_after_the_upgrade() {
    upgrade_keeps_every_version(1);
}

#[test]
fn a_format_2_store_keeps_every_version_after_the_upgrade() {
    upgrade_keeps_every_version(2);
}

#[test]
fn a_format_3_store_keeps_every_version_after_the_upgrade() {
    upgrade_keeps_every_version(3);
}

#[test]
fn a_format_4_store_keeps_every_version_after_the_upgrade() {
    upgrade_keeps_every_version(4);
}

#[test]
fn a_format_5_store_keeps_every_version_after_the_upgrade() {
    upgrade_keeps_every_version(5);
}

#[test]
fn a_format_6_store_keeps_every_version_after_the_upgrade() {
    upgrade_keeps_every_version(6);
}

#[test]
fn a_format_7_store_keeps_every_version_after_the_upgrade() {
    upgrade_keeps_every_version(7);
}

#[test]
fn a_format_8_store_keeps_every_version_after_the_upgrade() {
    upgrade_keeps_every_version(8);
}

/// The fixture of store format `format`: opened as it is, then upgraded by today's server.
fn upgrade_keeps_every_version(format: u32) {
    let mut world = World::new(BIN);
    let store = world.server_home.dir.join("store");
    let fixture = fixtures().join(format!("store-v{format}"));

    // As it is on disk, before any server touched it: `verify` reads it and changes nothing.
    let untouched = world.path().join("untouched");
    copy_dir(&fixture, &untouched);
    let report = verify(&untouched);
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["versions_checked"], 5, "{report}");
    assert_eq!(
        std::fs::read_to_string(untouched.join("FORMAT")).unwrap(),
        format!("hoover-store {format}\n")
    );

    // Today's server opens it and migrates it.
    world.server.kill();
    std::fs::remove_dir_all(&store).unwrap();
    copy_dir(&fixture, &store);
    world.restart_server();
    assert_eq!(
        std::fs::read_to_string(store.join("FORMAT")).unwrap(),
        format!("hoover-store {}\n", hoover_store::STORE_FORMAT_VERSION)
    );
    for (key, seq, content) in expected() {
        assert!(
            restore(&world, key, seq) == content,
            "{key} version {seq} does not restore byte for byte after the upgrade"
        );
    }

    // New versions go on top: the session grows, and its new chunks are sent as pieces
    // against the chunks the old store holds.
    let tree = world.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let mut a = std::fs::read(fixtures().join("store-v1-expected/a.jsonl")).unwrap();
    let line = "{\"type\":\"user\",\"uuid\":\"u-after-upgrade\",\"message\":{\"role\":\"user\",\"content\":\"after the upgrade\"}}\n";
    let mut grown = Vec::new();
    for _ in 0..3 {
        for _ in 0..40 {
            a.extend_from_slice(line.as_bytes());
        }
        std::fs::write(tree.join("a.jsonl"), &a).unwrap();
        grown.push(a.clone());
        world.ok(&[
            "sync",
            "--source",
            "fx",
            "--root",
            &format!("r={}", tree.display()),
        ]);
    }
    let versions: serde_json::Value =
        serde_json::from_slice(&world.ok(&["versions", "fx/r/a.jsonl", "--json"])).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 6, "{versions}");
    // Versions 4 and 5, no longer the latest, forgot their last chunks' ids if their rows hold
    // their appends' pieces (format 9): a restore names such a chunk by hashing it, and the
    // client checks every chunk against its name.
    for (seq, content) in (4..).zip(&grown) {
        assert!(
            restore(&world, "fx/r/a.jsonl", seq) == *content,
            "version {seq}"
        );
    }
    for (key, seq, content) in expected() {
        assert!(restore(&world, key, seq) == content, "{key} version {seq}");
    }

    // Old pieces and new ones check out, beside the running server and after it stops.
    let report = verify(&store);
    assert_eq!(report["clean"], true, "{report}");
    world.server.kill();
    let report = verify(&store);
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["versions_checked"], 8, "{report}");
}
