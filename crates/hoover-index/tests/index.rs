//! The index on its own: versions in, searches and counters out, across reopen.

use std::convert::Infallible;

use hoover_index::{Index, IndexOptions, Opened, SearchRequest, Sort, VersionMeta};

fn line(session: &str, uuid: &str, role: &str, text: &str, ts: &str) -> String {
    let text = serde_json::to_string(text).unwrap();
    format!(
        r#"{{"type":"{role}","sessionId":"{session}","uuid":"{uuid}","parentUuid":null,"cwd":"/home/dev/src/zoo","gitBranch":"main","timestamp":"{ts}","message":{{"role":"{role}","content":{text}}}}}"#
    ) + "\n"
}

fn feed(w: &mut hoover_index::Writer, key: &str, seq: u64, content: &[u8], resume: bool) {
    let from = if resume {
        w.progress(key).map(|p| p.done as usize).unwrap_or(0)
    } else {
        0
    };
    let meta = VersionMeta {
        key,
        seq,
        size: content.len() as u64,
        mtime_ms: 0,
    };
    // Feed in uneven pieces, like chunks.
    let pieces: Vec<Result<Vec<u8>, Infallible>> =
        content[from..].chunks(7).map(|c| Ok(c.to_vec())).collect();
    w.add_version(&meta, resume, pieces).unwrap();
}

fn sessions(index: &Index, q: &str) -> Vec<String> {
    let mut s: Vec<String> = index
        .search(&SearchRequest {
            query: q.into(),
            limit: 100,
            ..Default::default()
        })
        .unwrap()
        .hits
        .into_iter()
        .filter_map(|h| h.session)
        .collect();
    s.sort();
    s.dedup();
    s
}

#[test]
fn appends_half_lines_duplicates_filters_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let (index, mut w, opened) = Index::open(&path, IndexOptions::default()).unwrap();
    assert_eq!(opened, Opened::Created);

    let key = "laptop/claude/zoo/s1.jsonl";
    let mut content = line(
        "s1",
        "u1",
        "user",
        "the aardvark eats ants",
        "2025-06-01T10:00:00Z",
    );
    content += &line(
        "s1",
        "u2",
        "assistant",
        "call parse_snake_case in src/zoo/keeper.rs",
        "2025-06-01T10:00:05Z",
    );
    let half = line(
        "s1",
        "u3",
        "user",
        "a quokka smiles",
        "2025-06-02T10:00:00Z",
    );
    let mut v1 = content.clone().into_bytes();
    v1.extend_from_slice(&half.as_bytes()[..20]);
    feed(&mut w, key, 1, &v1, false);
    w.commit().unwrap();
    assert_eq!(sessions(&index, "aardvark"), vec!["s1"]);
    assert_eq!(
        sessions(&index, "quokka"),
        Vec::<String>::new(),
        "half line indexed"
    );
    // Code-friendly terms and stemming.
    assert_eq!(sessions(&index, "parse_snake_case"), vec!["s1"]);
    assert_eq!(sessions(&index, "src/zoo/keeper.rs"), vec!["s1"]);
    assert_eq!(sessions(&index, "eating"), vec!["s1"]);

    // The half line completes in the next version: only the new bytes are fed.
    content += &half;
    let before = w.progress(key).unwrap();
    assert_eq!(before.lines, 2);
    feed(&mut w, key, 2, content.as_bytes(), true);
    w.commit().unwrap();
    assert_eq!(sessions(&index, "quokka"), vec!["s1"]);
    assert_eq!(w.progress(key).unwrap().lines, 3);

    // A resumed session copies earlier messages into a new file: they are indexed once.
    let key2 = "laptop/claude/zoo/s2.jsonl";
    let mut resumed = line(
        "s1",
        "u1",
        "user",
        "the aardvark eats ants",
        "2025-06-01T10:00:00Z",
    );
    resumed += &line(
        "s2",
        "u9",
        "user",
        "a narwhal appears",
        "2025-06-03T10:00:00Z",
    );
    resumed += "{not json\n";
    resumed += &String::from_utf8_lossy(b"\xff\n");
    feed(&mut w, key2, 1, resumed.as_bytes(), false);
    w.commit().unwrap();
    let r = index
        .search(&SearchRequest {
            query: "aardvark".into(),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.total, 1, "{r:?}");
    assert_eq!(r.hits[0].key, key, "the first occurrence is the one kept");
    assert!(r.hits[0].snippet.contains("aardvark"));
    assert!(!r.hits[0].highlights.is_empty());
    assert_eq!(sessions(&index, "narwhal"), vec!["s2"]);
    assert_eq!(w.progress(key2).unwrap().malformed, 2);

    // Filters, phrases, exclusion, time.
    assert_eq!(sessions(&index, "role:assistant"), vec!["s1"]);
    assert_eq!(sessions(&index, "project:zoo narwhal"), vec!["s2"]);
    assert_eq!(
        sessions(&index, "project:elsewhere narwhal"),
        Vec::<String>::new()
    );
    assert_eq!(sessions(&index, "\"eats ants\""), vec!["s1"]);
    assert_eq!(sessions(&index, "\"ants eats\""), Vec::<String>::new());
    assert_eq!(sessions(&index, "\"the aardvark eats\""), vec!["s1"]);
    assert_eq!(sessions(&index, "\"aardvark eats ants\""), vec!["s1"]);
    assert_eq!(sessions(&index, "quokka -smiles"), Vec::<String>::new());
    assert_eq!(sessions(&index, "after:2025-06-03"), vec!["s2"]);
    assert_eq!(sessions(&index, "before:2025-06-02 aardvark"), vec!["s1"]);
    assert_eq!(sessions(&index, "session:s2"), vec!["s2"]);
    let newest = index
        .search(&SearchRequest {
            query: "project:zoo".into(),
            limit: 1,
            sort: Sort::Newest,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(newest.hits[0].session.as_deref(), Some("s2"));
    assert_eq!(newest.total, 4);

    let counters = index.counters();
    assert_eq!(counters.messages, 4);
    assert_eq!(counters.sessions, 2);
    assert_eq!(counters.projects, 1);
    assert_eq!(counters.malformed_lines, 2);

    // Reopen: the same answers, the same progress, the same counters; duplicates still skipped.
    drop(w);
    drop(index);
    let (index, mut w, opened) = Index::open(&path, IndexOptions::default()).unwrap();
    assert_eq!(opened, Opened::Existing);
    assert_eq!(sessions(&index, "quokka"), vec!["s1"]);
    assert_eq!(w.progress(key).unwrap().lines, 3);
    assert_eq!(index.counters(), counters);
    feed(&mut w, key2, 1, resumed.as_bytes(), false);
    w.commit().unwrap();
    assert_eq!(index.counters().messages, 4);
}

#[test]
fn secrets_are_not_searchable_and_another_schema_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let (index, mut w, _) = Index::open(&path, IndexOptions::default()).unwrap();
    let content = line(
        "s1",
        "u1",
        "user",
        "my key is AKIAIOSFODNN7EXAMPLE keep it safe",
        "2025-06-01T10:00:00Z",
    );
    let content = content
        + &line(
            "s2",
            "u2",
            "user",
            "a red fox and the fox jumps",
            "2025-06-01T10:00:00Z",
        );
    feed(&mut w, "l/c/s1.jsonl", 1, content.as_bytes(), false);
    w.commit().unwrap();
    assert!(sessions(&index, "AKIAIOSFODNN7EXAMPLE").is_empty());
    // Every adjacent pair of a long phrase occurs, but not the phrase: no match.
    assert!(sessions(&index, "\"red fox jumps\"").is_empty());
    assert_eq!(sessions(&index, "\"the fox jumps\""), vec!["s2"]);
    let hit = &index
        .search(&SearchRequest {
            query: "safe".into(),
            limit: 1,
            ..Default::default()
        })
        .unwrap()
        .hits[0];
    assert!(hit.snippet.contains("[REDACTED:aws-key]"), "{hit:?}");
    drop(w);
    drop(index);

    std::fs::write(path.join("HOOVER_INDEX"), "hoover-index 0\n").unwrap();
    let (index, _w, opened) = Index::open(&path, IndexOptions::default()).unwrap();
    assert!(matches!(opened, Opened::Rebuilt { .. }), "{opened:?}");
    assert_eq!(index.counters().messages, 0);

    // Garbage where the index was: rebuilt, not an error.
    drop(_w);
    drop(index);
    std::fs::write(path.join("meta.json"), "garbage").unwrap();
    let (_index, _w, opened) = Index::open(&path, IndexOptions::default()).unwrap();
    assert!(matches!(opened, Opened::Rebuilt { .. }), "{opened:?}");
}

fn assistant_line(uuid: &str, msg_id: &str, text: &str) -> String {
    format!(
        r#"{{"type":"assistant","sessionId":"s1","uuid":"{uuid}","timestamp":"2025-06-01T10:00:00Z","message":{{"id":"{msg_id}","role":"assistant","model":"claude-test-1","content":[{{"type":"text","text":"{text}"}}],"usage":{{"input_tokens":10,"output_tokens":20,"cache_read_input_tokens":30,"cache_creation_input_tokens":40}}}}}}"#
    ) + "\n"
}

#[test]
fn tokens_count_once_per_response_and_other_sources_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let (index, mut w, _) =
        Index::open(&dir.path().join("index"), IndexOptions::default()).unwrap();
    // One API response written as two lines sharing message.id: its usage counts once.
    let content = assistant_line("a1", "msg_1", "thinking about walruses")
        + &assistant_line("a2", "msg_1", "and then a tool call")
        + &assistant_line("a3", "msg_2", "second response");
    feed(&mut w, "l/c/s1.jsonl", 1, content.as_bytes(), false);
    // A line over the parser's limit is counted and skipped; the next line is indexed.
    let mut huge = vec![b'x'; hoover_transcript::MAX_LINE + 10];
    huge.push(b'\n');
    huge.extend_from_slice(user_line_bytes("after the huge line: capybara").as_slice());
    feed(&mut w, "l/c/huge.jsonl", 1, &huge, false);
    // A last JSONL record without its newline is indexed once it is a whole object, and
    // once only when the newline arrives.
    let unterminated = line("s5", "u5", "user", "an ocelot", "2025-06-01T10:00:00Z");
    let unterminated = unterminated.trim_end();
    feed(
        &mut w,
        "l/c/s5.jsonl",
        1,
        &unterminated.as_bytes()[..30],
        false,
    );
    feed(&mut w, "l/c/s5.jsonl", 2, unterminated.as_bytes(), true);
    feed(
        &mut w,
        "l/c/s5.jsonl",
        3,
        format!("{unterminated}\n").as_bytes(),
        true,
    );
    // Text files are indexed by line; other files are stored but not indexed.
    feed(
        &mut w,
        "l/notes/todo.md",
        1,
        b"remember the manatee\n",
        false,
    );
    feed(&mut w, "l/pics/cat.png", 1, b"\x89PNG manatee\n", false);
    w.commit().unwrap();

    let c = index.counters();
    assert_eq!(c.tokens_per_day.len(), 1, "{c:?}");
    let t = &c.tokens_per_day[0];
    assert_eq!(
        (t.day.as_str(), t.model.as_str()),
        ("2025-06-01", "claude-test-1")
    );
    assert_eq!(
        (t.input, t.output, t.cache_read, t.cache_write),
        (20, 40, 60, 80)
    );
    assert_eq!(w.progress("l/c/huge.jsonl").unwrap().malformed, 1);
    assert_eq!(sessions(&index, "capybara"), vec!["s9"]);
    let manatee = index
        .search(&SearchRequest {
            query: "manatee".into(),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(manatee.total, 1);
    assert_eq!(manatee.hits[0].key, "l/notes/todo.md");
    assert_eq!(w.progress("l/pics/cat.png").unwrap().seq, 1);
    let ocelot = index
        .search(&SearchRequest {
            query: "ocelot".into(),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ocelot.total, 1, "{ocelot:?}");
    assert_eq!(w.progress("l/c/s5.jsonl").unwrap().lines, 1);
    // Filters by tool, and the redaction switch.
    drop(w);
    drop(index);
    let dir = tempfile::tempdir().unwrap();
    let (index, mut w, _) =
        Index::open(&dir.path().join("index"), IndexOptions { redact: false }).unwrap();
    let tool = r#"{"type":"assistant","sessionId":"s7","uuid":"t1","message":{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"export KEY=AKIAIOSFODNN7EXAMPLE"}}]}}"#;
    feed(
        &mut w,
        "l/c/s7.jsonl",
        1,
        format!("{tool}\n").as_bytes(),
        false,
    );
    w.commit().unwrap();
    assert_eq!(sessions(&index, "tool:bash"), vec!["s7"]);
    assert_eq!(sessions(&index, "tool:read"), Vec::<String>::new());
    assert_eq!(
        sessions(&index, "AKIAIOSFODNN7EXAMPLE"),
        vec!["s7"],
        "redaction is off"
    );
}

fn user_line_bytes(text: &str) -> Vec<u8> {
    line("s9", "u-huge", "user", text, "2025-06-01T10:00:00Z").into_bytes()
}

/// An index holding one message, "a fox".
fn one_fox(dir: &std::path::Path) -> (Index, hoover_index::Writer) {
    let (index, mut w, _) = Index::open(&dir.join("index"), IndexOptions::default()).unwrap();
    let content = line("s1", "u1", "user", "a fox", "2025-06-01T10:00:00Z");
    feed(&mut w, "l/c/s1.jsonl", 1, content.as_bytes(), false);
    w.commit().unwrap();
    (index, w)
}

#[test]
fn deep_pages_long_queries_and_many_terms_are_refused_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _w) = one_fox(dir.path());
    let search = |query: String, limit: usize, offset: usize, sort: Sort| {
        index.search(&SearchRequest {
            query,
            limit,
            offset,
            sort,
        })
    };
    // Today's main reserved room for offset + limit hits: 10^12 aborted the process.
    for sort in [Sort::Relevance, Sort::Newest] {
        for (limit, offset) in [(20, 1_000_000_000_000), (1000, 9_001), (1, usize::MAX)] {
            let e = search("fox".into(), limit, offset, sort).unwrap_err();
            assert!(e.to_string().contains("not served"), "{e}");
        }
        // A long phrase fetches four times the window: refused the same way.
        let e = search("\"a b c fox\"".into(), 20, 9_990, sort).unwrap_err();
        assert!(e.to_string().contains("not served"), "{e}");
        let page = search("fox".into(), 1000, 9_000, sort).unwrap();
        assert_eq!((page.total, page.hits.len()), (1, 0));
    }
    let e = search("fox ".repeat(600), 20, 0, Sort::Relevance).unwrap_err();
    assert!(e.to_string().contains("bytes long"), "{e}");
    let e = search("a ".repeat(33), 20, 0, Sort::Relevance).unwrap_err();
    assert!(e.to_string().contains("33 terms"), "{e}");
    assert_eq!(
        search("fox ".repeat(32), 20, 0, Sort::Relevance)
            .unwrap()
            .total,
        1
    );
}

#[test]
fn a_query_with_nothing_to_look_for_is_refused_not_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _w) = one_fox(dir.path());
    let search = |q: &str| {
        index.search(&SearchRequest {
            query: q.into(),
            limit: 10,
            ..Default::default()
        })
    };
    for (q, says) in [
        ("!!", "nothing to search for"),
        ("-fox", "only excludes"),
        ("  ", "nothing"),
    ] {
        let e = search(q).unwrap_err().to_string();
        assert!(e.contains(says), "{q:?}: {e}");
    }
    assert_eq!(search("fox").unwrap().total, 1);
    assert_eq!(search("role:user -cat").unwrap().total, 1);
}

/// The whole shared corpus, fed in reverse key order and in two versions per file (the first
/// cut mid-line): `transcripts` equals the independent count (`truth.py`) live, and again after
/// the index is reopened and its counters rebuilt from its columns alone.
#[test]
fn counters_equal_truth_py_live_and_after_reopen() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    let truth = std::process::Command::new("python3")
        .arg(corpus.join("truth.py"))
        .arg(corpus.join("files"))
        .output()
        .expect("python3 runs truth.py");
    assert!(truth.status.success());
    let truth: serde_json::Value = serde_json::from_slice(&truth.stdout).unwrap();
    let mut files = Vec::new();
    let mut stack = vec![corpus.join("files")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                files.push(p);
            }
        }
    }
    // Keys sort as the paths do: one source, one root, the path below it.
    let mut keyed: Vec<(String, std::path::PathBuf)> = files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(corpus.join("files")).unwrap();
            (format!("lab/files/{}", rel.to_string_lossy()), p)
        })
        .collect();
    keyed.sort();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    {
        let (index, mut w, _) = Index::open(&path, IndexOptions::default()).unwrap();
        for (key, p) in keyed.iter().rev() {
            let bytes = std::fs::read(p).unwrap();
            let cut = bytes.len() / 2;
            feed(&mut w, key, 1, &bytes[..cut], false);
            feed(&mut w, key, 2, &bytes, true);
        }
        w.commit().unwrap();
        let live = serde_json::to_value(index.counters().transcripts).unwrap();
        assert_eq!(live, truth, "live counters");
        w.finish().unwrap();
    }
    let (index, _w, opened) = Index::open(&path, IndexOptions::default()).unwrap();
    assert_eq!(opened, Opened::Existing);
    let reopened = serde_json::to_value(index.counters().transcripts).unwrap();
    assert_eq!(reopened, truth, "counters rebuilt at open");
    let c = index.counters();
    assert_eq!(c.messages, truth["messages"].as_u64().unwrap());
    // Every file of the flat corpus lies directly in its root: one project per top directory.
    assert_eq!(c.projects, 2, "files/ and files/synthetic/");
}

/// Progress records are found only when asked for; a tool's result is found by the tool's
/// name and by the output kept only in `toolUseResult`.
#[test]
fn kinds_tool_results_and_tool_output() {
    let dir = tempfile::tempdir().unwrap();
    let (index, mut w, _) =
        Index::open(&dir.path().join("index"), IndexOptions::default()).unwrap();
    let lines = [
        r#"{"type":"assistant","sessionId":"s","uuid":"a1","timestamp":"2025-06-01T10:00:00Z","requestId":"r","message":{"id":"m","role":"assistant","model":"claude-x","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls -R"}}]}}"#,
        r#"{"type":"progress","sessionId":"s","uuid":"p1","timestamp":"2025-06-01T10:00:01Z","data":{"type":"bash_progress","output":"zanzibar quokka"}}"#,
        r#"{"type":"user","sessionId":"s","uuid":"u1","timestamp":"2025-06-01T10:00:02Z","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"src/\n[output cut]"}]},"toolUseResult":{"stdout":"src/\nzanzibar.rs\nquokka.rs","stderr":"","interrupted":false}}"#,
    ];
    let content = lines.join("\n") + "\n";
    feed(&mut w, "lab/claude/p/s.jsonl", 1, content.as_bytes(), false);
    w.commit().unwrap();
    let hits = |q: &str| {
        index
            .search(&SearchRequest {
                query: q.into(),
                limit: 10,
                ..Default::default()
            })
            .map(|r| {
                r.hits
                    .into_iter()
                    .map(|h| h.uuid.unwrap_or_default())
                    .collect::<Vec<_>>()
            })
    };
    assert_eq!(
        hits("quokka").unwrap(),
        ["u1"],
        "toolUseResult stdout, progress left out"
    );
    assert_eq!(hits("quokka kind:progress").unwrap(), ["p1"]);
    assert_eq!(
        hits("tool:Bash quokka").unwrap(),
        ["u1"],
        "the result carries its call's tool"
    );
    let mut bash = hits("tool:bash").unwrap();
    bash.sort();
    assert_eq!(bash, ["a1", "u1"]);
    assert!(hits("-quokka").is_err());
    let c = index.counters().transcripts;
    assert_eq!((c.messages, c.tool_calls, c.responses), (2, 1, 1));
}
