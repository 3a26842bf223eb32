//! Replays `fuzz/regressions/{frame,message}`: inputs that fuzzing found (or that were written
//! to seed it) run through the same harnesses as the fuzz targets, which must not panic.

use std::path::Path;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!out.is_empty(), "no regression inputs in {}", dir.display());
    out.sort();
    out
}

#[test]
fn frame_regressions_are_errors_not_panics() {
    for input in inputs("frame") {
        hoover_proto::fuzzing::read_all_requests(&input);
    }
}

#[test]
fn message_regressions_are_errors_not_panics() {
    for input in inputs("message") {
        hoover_proto::fuzzing::decode_every_message(&input);
    }
}
