//! End to end: the counters of a server that holds real transcripts equal an independent count
//! of the same files (`../shared/corpus/truth.py`), while they arrive and after a restart.

use std::path::Path;
use std::time::Duration;

use hoover_testkit::{http_get, wait_until, World};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hoover");
const DEADLINE: Duration = Duration::from_secs(60);

fn truth(dir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/truth.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python3 runs truth.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stats(world: &World) -> Value {
    let (status, body) = http_get(world.server.http_port, "/api/stats").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn transcripts_counters_equal_truth_py_on_the_whole_corpus() {
    let mut world = World::new(BIN);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
    let want = truth(&corpus);
    assert!(want["messages"].as_u64().unwrap() > 3000, "{want}");
    let root = format!("files={}", corpus.display());
    world.ok(&["sync", "--source", "laptop", "--root", &root]);
    wait_until("the counters reach truth.py's messages", DEADLINE, || {
        stats(&world)["transcripts"]["messages"] == want["messages"]
    });
    let got = stats(&world);
    assert_eq!(got["transcripts"], want, "live");
    // The dashboard's own numbers are the same counts.
    assert_eq!(got["index"]["messages"], want["messages"]);
    assert_eq!(got["index"]["sessions"], want["sessions"]);
    // Project directories under the root: the flat corpus has its files in `files/` and
    // `files/synthetic/`.
    assert_eq!(got["index"]["projects"], 2);
    let output: u64 = got["index"]["tokens_per_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["output"].as_u64().unwrap())
        .sum();
    assert_eq!(output, want["tokens"]["output_tokens"].as_u64().unwrap());

    // Rebuilt at start from the index, and from the store for what the index had not
    // committed yet.
    world.restart_server();
    wait_until("the restarted server has caught up", DEADLINE, || {
        http_get(world.server.http_port, "/api/stats").is_ok_and(|(s, body)| {
            s == 200
                && serde_json::from_str::<Value>(&body)
                    .is_ok_and(|v| v["indexer"]["catching_up"] == false)
        })
    });
    assert_eq!(stats(&world)["transcripts"], want, "after a restart");
}

/// The bytes of the files under `dir`, walked.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            bytes_under(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[test]
fn the_store_size_on_the_page_is_what_its_files_take() {
    let world = World::new(BIN);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
    let mut sessions: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    sessions.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let tree = world.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let root = format!("c={}", tree.display());
    // A first sync of a few sessions, then one of them a message at a time, as `watch`
    // sends them: batches appended to one pack.
    for s in &sessions[..3] {
        std::fs::copy(s, tree.join(s.file_name().unwrap())).unwrap();
    }
    world.ok(&["sync", "--source", "laptop", "--root", &root]);
    // Counted now, the totals are then kept up to date by each commit.
    assert_eq!(stats(&world)["versions"], 3);
    let text = std::fs::read_to_string(sessions.last().unwrap()).unwrap();
    assert!(text.lines().count() >= 12);
    let mut grown = String::new();
    for line in text.lines().take(12) {
        grown.push_str(line);
        grown.push('\n');
        std::fs::write(tree.join("growing.jsonl"), &grown).unwrap();
        world.ok(&["sync", "--source", "laptop", "--root", &root]);
    }
    let got = stats(&world);
    let store = &world.server.store;
    let packs = bytes_under(&store.join("packs"));
    let log: u64 = ["versions.db", "versions.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(store.join(f)).ok())
        .map(|m| m.len())
        .sum();
    assert_eq!(got["pack_bytes"], packs, "{got}");
    assert_eq!(got["log_bytes"], log, "{got}");
    assert_eq!(got["store_bytes"], packs + log, "{got}");
    assert_eq!(got["versions"], 3 + 12, "{got}");
}
