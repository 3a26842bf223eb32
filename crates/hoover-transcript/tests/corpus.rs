//! Every file of the shared corpus parses: no panics, every line accounted for, and the record
//! kinds the corpus documents come out with their fields.

use std::collections::BTreeMap;
use std::path::Path;

use hoover_transcript::{parse_line, LineSplitter};

#[test]
fn the_whole_corpus_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/files");
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("../shared/corpus beside the project") {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 100);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let (mut lines, mut bad, mut tools, mut with_usage) = (0u64, 0u64, 0u64, 0u64);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let mut splitter = LineSplitter::default();
        // Feed in uneven pieces, as appends arrive.
        for piece in bytes.chunks(7919) {
            for (n, line) in splitter.feed(piece) {
                lines += 1;
                match parse_line(&line, n) {
                    Ok(Some(m)) => {
                        *kinds.entry(m.kind.clone()).or_default() += 1;
                        tools += m.tool.is_some() as u64;
                        with_usage += m.usage.is_some() as u64;
                        assert!(
                            m.text.len() <= line.len() + 64,
                            "{}:{n}: text longer than its line",
                            f.display()
                        );
                    }
                    Ok(None) => {}
                    Err(e) => {
                        bad += 1;
                        let name = f.file_name().unwrap().to_string_lossy();
                        assert!(
                            name.contains("edge")
                                || name.contains("drift")
                                || name.contains("malformed"),
                            "{}: {e}",
                            f.display()
                        );
                    }
                }
            }
        }
    }
    for kind in [
        "user",
        "assistant",
        "summary",
        "system",
        "file-history-snapshot",
    ] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} records: {kinds:?}"
        );
    }
    assert!(
        tools > 100 && with_usage > 100,
        "tools {tools}, usage {with_usage}"
    );
    assert!(bad < lines / 100, "{bad} bad of {lines} lines");
}
