//! Every file of the shared corpus parses: no panics, every line accounted for, and the record
//! kinds the corpus documents come out with their fields.

use std::collections::BTreeMap;
use std::path::Path;

use hoover_transcript::{parse_line, Line, LineReader};

#[test]
fn the_whole_corpus_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/files");
    let files = jsonl_files(&dir);
    assert!(files.len() > 100);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let (mut lines, mut bad, mut tools, mut with_usage) = (0u64, 0u64, 0u64, 0u64);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let mut reader = LineReader::default();
        let mut split = Vec::new();
        // Feed in uneven pieces, as appends arrive.
        for piece in bytes.chunks(7919) {
            reader.feed(piece, |l| {
                if let Line::Text { number, bytes, .. } = l {
                    split.push((number, bytes.into_owned()));
                }
            });
        }
        for (n, line) in split {
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

/// Every `.jsonl` file under `dir`, sorted by path.
fn jsonl_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
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
    files.sort();
    files
}

/// The tally over the whole corpus equals the independent reference count (`truth.py`), with
/// the files fed in reverse order: the counts must not depend on which file arrives first.
#[test]
fn the_tally_equals_truth_py() {
    use hoover_transcript::tally::{Line, Tally};
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    let truth = std::process::Command::new("python3")
        .arg(corpus.join("truth.py"))
        .arg(corpus.join("files"))
        .output()
        .expect("python3 runs truth.py");
    assert!(
        truth.status.success(),
        "{}",
        String::from_utf8_lossy(&truth.stderr)
    );
    let truth: serde_json::Value = serde_json::from_slice(&truth.stdout).unwrap();
    let mut tally = Tally::default();
    for f in jsonl_files(&corpus.join("files")).iter().rev() {
        let bytes = std::fs::read(f).unwrap();
        let name = f.to_string_lossy();
        let mut offset = 0u64;
        for (n, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            if let Ok(Some(m)) = parse_line(text, n as u64 + 1) {
                if let Some(l) = Line::of(&m, &name, offset, None) {
                    tally.add(&l);
                }
            }
            offset += line.len() as u64;
        }
    }
    let ours = serde_json::to_value(tally.totals()).unwrap();
    assert_eq!(ours, truth);
}
