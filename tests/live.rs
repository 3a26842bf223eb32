//! The live feed over real HTTP: `/api/live` streams each new message as it arrives (before the
//! index commit), a reconnect with `Last-Event-ID` resumes without gaps or duplicates, and
//! `/metrics` and `/api/stats` count what is stored.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hoover_testkit::{http_get, wait_until, World};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hoover");
const DEADLINE: Duration = Duration::from_secs(60);

/// Opens `/api/live` and sends each event `(id, data)` down the channel as it arrives.
fn subscribe(port: u16, query: &str, last_id: Option<u64>) -> mpsc::Receiver<(u64, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let resume = last_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /api/live{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let mut chunked = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line
                .to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
            {
                chunked = true;
            }
            if line == "\r\n" {
                break;
            }
        }
        // The body: de-chunked, then split into SSE events at blank lines.
        let mut body = String::new();
        let mut id = None;
        loop {
            let piece = if chunked {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let Ok(size) = usize::from_str_radix(line.trim(), 16) else {
                    return;
                };
                let mut buf = vec![0; size + 2];
                if reader.read_exact(&mut buf).is_err() {
                    return;
                }
                buf.truncate(size);
                String::from_utf8(buf).unwrap()
            } else {
                let mut buf = [0; 4096];
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                }
            };
            body.push_str(&piece);
            while let Some(end) = body.find('\n') {
                let l: String = body.drain(..=end).collect();
                let l = l.trim_end();
                if let Some(v) = l.strip_prefix("id:") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = l.strip_prefix("data:") {
                    let data: Value = serde_json::from_str(v.trim()).unwrap();
                    if tx.send((id.expect("an id before the data"), data)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn next_event(rx: &mpsc::Receiver<(u64, Value)>, what: &str) -> (u64, Value) {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("no live event: {what}"))
}

fn user_line(session: &str, uuid: &str, text: &str) -> String {
    format!(
        r#"{{"type":"user","sessionId":"{session}","uuid":"{uuid}","cwd":"/home/dev/src/zoo","timestamp":"2025-06-01T10:00:00Z","message":{{"role":"user","content":"{text}"}}}}"#
    ) + "\n"
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

#[test]
fn live_events_arrive_and_a_reconnect_resumes_exactly() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("s1.jsonl");
    append(&file, &user_line("s1", "u0", "before anyone listened"));
    let root_arg = format!("c={}", root.display());
    let sync = || {
        world.ok(&["sync", "--source", "l", "--root", &root_arg]);
    };
    sync();
    let port = world.server.http_port;
    // The first message has reached the feed (it is history for the subscribers below).
    wait_until("the first message is in the feed", DEADLINE, || {
        http_get(port, "/live").is_ok_and(|(_, page)| page.contains("before anyone listened"))
    });
    let all = subscribe(port, "", None);
    let assistants = subscribe(port, "?role=assistant", None);
    // Subscribers are registered once the server answers; the next versions reach them.
    let started = Instant::now();
    let mut n = 0;
    let first = loop {
        n += 1;
        append(
            &file,
            &user_line("s1", &format!("u{n}"), &format!("first aardwolf {n}")),
        );
        sync();
        if let Ok(event) = all.recv_timeout(Duration::from_millis(500)) {
            break event;
        }
        assert!(started.elapsed() < DEADLINE, "no live event arrived");
    };
    assert_eq!(first.1["session"], "s1");
    assert_eq!(first.1["role"], "user");
    assert!(
        first.1["text"].as_str().unwrap().contains("aardwolf"),
        "{}",
        first.1
    );
    for field in ["key", "uuid", "timestamp"] {
        assert!(
            first.1.get(field).is_some(),
            "event lacks {field}: {}",
            first.1
        );
    }
    let _ = all.try_iter().count();

    // Three more messages, one of them from the assistant and holding markup.
    let markup = "<script>alert(1)</script> from the assistant";
    let assistant = format!(
        r#"{{"type":"assistant","sessionId":"s1","uuid":"a1","timestamp":"2025-06-01T10:00:01Z","message":{{"role":"assistant","content":[{{"type":"text","text":"{markup}"}}]}}}}"#
    ) + "\n";
    append(
        &file,
        &(user_line("s1", "m1", "second") + &assistant + &user_line("s1", "m3", "third")),
    );
    sync();
    let got: Vec<(u64, Value)> = (0..3)
        .map(|_| next_event(&all, "the three new messages"))
        .collect();
    let texts: Vec<&str> = got
        .iter()
        .map(|(_, v)| v["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["second", markup, "third"]);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "ids grow");
    let (_, only) = next_event(&assistants, "the assistant's message");
    assert_eq!(only["text"], markup, "the role filter");

    // A client that saw only "second" reconnects: it gets exactly what followed.
    let resumed = subscribe(port, "", Some(got[0].0));
    let replay: Vec<u64> = (0..2)
        .map(|_| next_event(&resumed, "the replay").0)
        .collect();
    assert_eq!(replay, vec![got[1].0, got[2].0]);
    assert!(
        resumed.recv_timeout(Duration::from_millis(300)).is_err(),
        "no duplicates"
    );

    // Counters over HTTP.
    let (status, body) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("# TYPE hoover_versions_total counter"),
        "{body}"
    );
    let versions: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("hoover_versions_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(versions >= 3, "{body}");
    let (_, stats) = http_get(port, "/api/stats").unwrap();
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["versions"].as_u64().unwrap(), versions);
    assert_eq!(stats["files"], 1);
}

/// The feed's events after id 0 (all it keeps), once `text` is among them.
fn kept_events(port: u16, text: &str) -> Vec<Value> {
    wait_until(&format!("{text} is on the live page"), DEADLINE, || {
        http_get(port, "/live").is_ok_and(|(_, page)| page.contains(text))
    });
    let rx = subscribe(port, "", Some(0));
    let mut events = vec![next_event(&rx, "the kept events").1];
    while let Ok((_, e)) = rx.recv_timeout(Duration::from_millis(300)) {
        events.push(e);
    }
    events
}

#[test]
fn the_feed_goes_on_without_an_index_and_does_not_wait_for_the_indexer() {
    let mut world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("s2.jsonl");
    append(
        &file,
        &(user_line("s2", "u1", "one") + &user_line("s2", "u2", "two")),
    );
    let root_arg = format!("c={}", root.display());
    let sync = |world: &World| {
        world.ok(&["sync", "--source", "l", "--root", &root_arg]);
    };
    sync(&world);

    // A server without an index: its feed shows what arrives. It has not seen this file, so it
    // reads it whole once, and shows only the new line, numbered as in the file.
    world.restart_server_with(|o| o.extra_args = vec!["--no-index".into()]);
    append(&file, &user_line("s2", "u3", "walrus without an index"));
    sync(&world);
    let events = kept_events(world.server.http_port, "walrus without an index");
    let shown: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (e["text"].as_str().unwrap(), e["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(shown, vec![("walrus without an index", 3)]);

    // An indexer stuck on its first version (catching up with the one above) does not hold
    // the feed back.
    world.restart_server_with(|o| {
        o.env = vec![("HOOVER_SLOW_AT".into(), "index-version:600000".into())]
    });
    append(&file, &user_line("s2", "u4", "narwhal ahead of the index"));
    sync(&world);
    let port = world.server.http_port;
    let events = kept_events(port, "narwhal ahead of the index");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["line"], 4);
    let (_, stats) = http_get(port, "/api/stats").unwrap();
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["indexer"]["catching_up"], true, "{stats}");
    assert_eq!(stats["indexer"]["versions_indexed"], 0, "{stats}");
}
