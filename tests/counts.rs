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
