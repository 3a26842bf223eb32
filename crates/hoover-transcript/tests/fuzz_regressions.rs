//! Replays `fuzz/regressions/transcript_line`: nasty transcripts (and anything fuzzing found)
//! through the fuzz target's harness, which must not panic.

use std::path::Path;

#[test]
fn transcript_regressions_are_errors_not_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/transcript_line");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let input = std::fs::read(entry.unwrap().path()).unwrap();
        hoover_transcript::fuzzing::split_and_parse(&input);
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}
