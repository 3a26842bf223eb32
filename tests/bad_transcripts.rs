//! Nasty transcripts through the whole pipeline: a session file with a BOM, CRLF endings,
//! invalid UTF-8, JSON that is not an object, 100,000-deep nesting, raw and escaped NUL bytes,
//! broken JSON, a 50 MB line and a half-written last line is synced, stored byte for byte,
//! indexed as far as it can be (every bad line counted), searched, and shown on the web page.

use hoover_testkit::{http_get, wait_until, World};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_hoover");
const SESSION: &str = "5e55107a-bad0-4bad-8bad-000000000001";

fn good(n: u32, text: &str) -> String {
    let message = serde_json::json!({
        "type": "user",
        "sessionId": SESSION,
        "uuid": format!("00000000-0000-4000-8000-{n:012}"),
        "timestamp": format!("2026-11-01T10:00:{n:02}Z"),
        "cwd": "/home/dev/nasty",
        "message": { "role": "user", "content": text },
    });
    message.to_string()
}

fn stats(world: &World) -> serde_json::Value {
    http_get(world.server.http_port, "/api/stats")
        .ok()
        .and_then(|(_, b)| serde_json::from_str(&b).ok())
        .unwrap_or_default()
}

#[test]
fn nasty_lines_are_kept_exactly_indexed_where_possible_and_shown() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    let dir = root.join("-home-dev-nasty");
    std::fs::create_dir_all(&dir).unwrap();

    let mut bytes: Vec<u8> = Vec::new();
    let mut line = |b: &[u8]| {
        bytes.extend_from_slice(b);
    };
    // Indexed: a BOM before the first line, a CRLF ending, an escaped NUL, markup.
    line(format!("\u{feff}{}\n", good(1, "bomword opens the file")).as_bytes());
    line(format!("{}\r\n", good(2, "crlfword ends in CR LF")).as_bytes());
    line(format!("{}\n", good(3, "nulword holds \u{0} escaped")).as_bytes());
    line(format!("{}\n", good(4, "markupword <script>alert(1)</script>")).as_bytes());
    // Malformed, each counted: invalid UTF-8, not objects, deep nesting, a raw NUL inside a
    // string, broken JSON, a 50 MB line.
    let mut bad = 0;
    let mut malformed = |b: &[u8]| {
        bad += 1;
        line(b);
    };
    malformed(b"{\"type\":\"user\",\"x\":\"\xff\xfe\xfd\"}\n");
    malformed(b"[1,2,3]\n");
    malformed(b"42\n");
    malformed(b"\"just a string\"\n");
    malformed(format!("{}1{}\n", "[".repeat(100_000), "]".repeat(100_000)).as_bytes());
    malformed(b"{\"type\":\"user\",\"message\":{\"content\":\"raw\x00nul\"}}\n");
    malformed(b"{not json at all\n");
    let huge = good(5, &"hugeword ".repeat(50 * 1024 * 1024 / 9));
    malformed(format!("{huge}\n").as_bytes());
    let bad = bad;
    line(format!("{}\n", good(6, "lastword after the storm")).as_bytes());
    // A half-written last line: waits for its newline, neither message nor malformed.
    line(b"{\"type\":\"user\",\"message\":{\"content\":\"halfword");
    let path = dir.join(format!("{SESSION}.jsonl"));
    std::fs::write(&path, &bytes).unwrap();
    // A second file that is garbage from end to end.
    std::fs::write(dir.join("garbage.jsonl"), b"\x00\x01\x02\xff\n\xfe\n").unwrap();

    let spec = format!("claude={}", root.display());
    world.ok(&["sync", "--source", "lap", "--root", &spec]);

    // The store keeps every byte.
    let key = format!("lap/claude/-home-dev-nasty/{SESSION}.jsonl");
    let restored = world.ok(&["restore", &key, "-o", "-"]);
    assert!(restored == bytes, "the nasty file restores byte for byte");
    let restored = world.ok(&[
        "restore",
        "lap/claude/-home-dev-nasty/garbage.jsonl",
        "-o",
        "-",
    ]);
    assert_eq!(restored, b"\x00\x01\x02\xff\n\xfe\n");

    // The index takes the five good lines and counts every bad one (two in the garbage file).
    wait_until("the nasty files indexed", Duration::from_secs(60), || {
        stats(&world)["index"]["indexed_files"] == 2
    });
    // Counters move as lines are read; searches see them at the next commit (about 1 s).
    wait_until("the nasty file searchable", Duration::from_secs(60), || {
        world.json(&["search", "lastword"])["total"] == 1
    });
    let s = stats(&world);
    assert_eq!(s["index"]["messages"], 5, "{s}");
    assert_eq!(s["index"]["malformed_lines"], bad + 2, "{s}");
    for word in ["bomword", "crlfword", "nulword", "markupword", "lastword"] {
        let hits = world.json(&["search", word]);
        assert_eq!(hits["total"], 1, "{word}: {hits}");
    }
    let hits = world.json(&["search", "halfword"]);
    assert_eq!(hits["total"], 0, "{hits}");

    // The web page shows what could be read, escaped.
    let port = world.server.http_port;
    let (status, page) = http_get(port, &format!("/sessions/{SESSION}")).unwrap();
    assert_eq!(status, 200, "{page}");
    for word in ["bomword", "crlfword", "nulword", "markupword", "lastword"] {
        assert!(page.contains(word), "{word} missing from the session page");
    }
    let i = page.find("markupword").unwrap();
    let shown = &page[i..i + 100];
    assert!(
        shown.contains("&#60;script&#62;alert(1)") || shown.contains("&lt;script&gt;alert(1)"),
        "{shown}"
    );
    assert!(!page.contains("<script>alert(1)"));
    let (status, page) = http_get(port, &format!("/files/{key}")).unwrap();
    assert_eq!(status, 200, "{page}");
    let (status, _) = http_get(port, "/files/lap/claude/-home-dev-nasty/garbage.jsonl").unwrap();
    assert_eq!(status, 200);
    let (status, page) = http_get(port, "/search?q=crlfword").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains(SESSION), "the search page links the session");
    let (status, _) = http_get(port, "/").unwrap();
    assert_eq!(status, 200);
    let log = world.server.log();
    assert!(
        log.contains("line 5: not valid UTF-8; skipped (the store keeps it byte for byte"),
        "the server names the first bad line of each file: {log}"
    );

    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "bad_transcripts",
        serde_json::json!({
            "nasty_lines": bad + 2 + 1,
            "malformed_counted": bad + 2,
            "messages_indexed": 5,
            "bytes_restored_exactly": bytes.len(),
        }),
    );
}
