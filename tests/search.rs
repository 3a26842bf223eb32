//! End to end: sync real transcripts, search them over SSH and HTTP, append and find the new
//! words, lose the index and get the same answers back, and see resumed sessions once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hoover_testkit::{http_get, wait_until, World};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hoover");
const DEADLINE: Duration = Duration::from_secs(60);

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files")
}

/// Identifiers with two or more underscores in a file's message text: matched whole by the
/// code field, never stemmed.
fn identifiers(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.matches('_').count() >= 2
                && (12..=40).contains(&w.len())
                && w.starts_with(|c: char| c.is_ascii_alphabetic())
                && !w.ends_with('_')
                && !w.contains("__")
        })
        .map(str::to_ascii_lowercase)
        .collect()
}

fn message_text(raw: &[u8]) -> String {
    let mut text = String::new();
    for (i, line) in raw.split(|&b| b == b'\n').enumerate() {
        if let Ok(Some(m)) = hoover_transcript::parse_line(line, i as u64 + 1) {
            text.push_str(&m.text);
            text.push('\n');
        }
    }
    text
}

/// For some corpus files, a word found in that file and in no other: `(file name, word)`.
fn unique_words(files: &[PathBuf]) -> Vec<(String, String)> {
    let raws: Vec<String> = files
        .iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).to_ascii_lowercase())
        .collect();
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let words = identifiers(&message_text(&std::fs::read(f).unwrap()));
        let unique = words.into_iter().find(|w| {
            let spaced = w.replace('_', " ");
            raws.iter()
                .enumerate()
                .all(|(j, r)| j == i || (!r.contains(w.as_str()) && !r.contains(&spaced)))
        });
        if let Some(w) = unique {
            out.push((f.file_name().unwrap().to_string_lossy().into_owned(), w));
        }
        if out.len() == 4 {
            break;
        }
    }
    out
}

fn search(world: &World, query: &str) -> Value {
    world.json(&["search", query, "--limit", "50"])
}

fn keys_of(v: &Value) -> BTreeSet<String> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["key"].as_str().unwrap().to_string())
        .collect()
}

/// `(key, uuid, session)` of every hit, to compare runs.
fn identity(v: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap_or_default().to_string(),
                h["uuid"].as_str().unwrap_or_default().to_string(),
                h["session"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn user_line(session: &str, uuid: &str, text: &str) -> String {
    format!(
        r#"{{"type":"user","sessionId":"{session}","uuid":"{uuid}","parentUuid":null,"cwd":"/home/dev/src/zoo","timestamp":"2025-06-01T10:00:00Z","message":{{"role":"user","content":"{text}"}}}}"#
    ) + "\n"
}

#[test]
fn search_finds_known_sessions_new_words_and_survives_losing_the_index() {
    let mut world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(
        files.len() > 20,
        "the shared corpus should be beside the project"
    );
    for f in &files {
        std::fs::copy(f, root.join(f.file_name().unwrap())).unwrap();
    }
    // A session, and a later one that resumes it: its first line is a copy.
    let first = user_line(
        "s-orig",
        "u-shared",
        "the okapi_resumed_marker appears once",
    );
    std::fs::write(root.join("zz-original.jsonl"), &first).unwrap();
    let root_arg = format!("c={}", root.display());
    let sync = |world: &World| {
        world.ok(&["sync", "--source", "laptop", "--root", &root_arg]);
    };
    sync(&world);
    let resumed = first.clone() + &user_line("s-resumed", "u-new", "and a tapir follows");
    std::fs::write(root.join("zz-resumed.jsonl"), &resumed).unwrap();
    sync(&world);

    let words = unique_words(&files);
    assert!(words.len() >= 3, "too few distinct words found: {words:?}");
    // Both syncs' versions are searchable within the commit window.
    wait_until("the corpus is searchable", DEADLINE, || {
        words
            .iter()
            .map(|(_, w)| w.as_str())
            .chain(["okapi_resumed_marker", "tapir"])
            .all(|w| search(&world, w)["total"].as_u64().unwrap_or(0) > 0)
    });
    let mut answers = BTreeMap::new();
    for (file, word) in &words {
        let found = search(&world, word);
        assert_eq!(
            keys_of(&found),
            BTreeSet::from([format!("laptop/c/{file}")]),
            "searching {word:?}"
        );
        for hit in found["hits"].as_array().unwrap() {
            for field in ["key", "session", "uuid", "role", "timestamp", "snippet"] {
                assert!(hit.get(field).is_some(), "hit lacks {field}: {hit}");
            }
        }
        answers.insert(word.clone(), identity(&found));
    }

    // The copied message is indexed once, where it was first seen.
    let dup = search(&world, "okapi_resumed_marker");
    assert_eq!(dup["total"], 1, "{dup}");
    assert_eq!(dup["hits"][0]["key"], "laptop/c/zz-original.jsonl");
    assert_eq!(dup["hits"][0]["session"], "s-orig");
    assert_eq!(search(&world, "tapir")["hits"][0]["session"], "s-resumed");

    // A fresh word appended to a session is found after the next sync.
    let target = root.join(files[0].file_name().unwrap());
    let mut content = std::fs::read(&target).unwrap();
    content.extend_from_slice(
        user_line("s-fresh", "u-fresh", "zyzzyva_fresh_word arrives").as_bytes(),
    );
    std::fs::write(&target, &content).unwrap();
    sync(&world);
    wait_until("the appended word is searchable", DEADLINE, || {
        search(&world, "zyzzyva_fresh_word")["total"] == 1
    });

    // The same search over HTTP.
    let (status, body) = http_get(
        world.server.http_port,
        "/api/search?q=zyzzyva_fresh_word&limit=5",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 1);
    assert_eq!(v["hits"][0]["session"], "s-fresh");
    assert!(v["hits"][0]["snippet"]
        .as_str()
        .unwrap()
        .contains("zyzzyva"));
    let (status, body) = http_get(world.server.http_port, "/api/search?q=after:notadate").unwrap();
    assert_eq!(status, 400, "{body}");
    let (status, body) = http_get(world.server.http_port, "/api/stats").unwrap();
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert!(
        stats["index"]["messages"].as_u64().unwrap() > 100,
        "{stats}"
    );
    assert!(stats["index"]["sessions"].as_u64().unwrap() > 10, "{stats}");
    assert!(
        stats["versions"].as_u64().unwrap() > files.len() as u64,
        "{stats}"
    );

    // Lose the index: the restarted server rebuilds it and answers the same.
    world.server.kill();
    std::fs::remove_dir_all(world.server.store.join("index")).unwrap();
    world.restart_server();
    wait_until("the rebuilt index answers", DEADLINE, || {
        search(&world, "zyzzyva_fresh_word")["total"] == 1
    });
    for (word, before) in &answers {
        assert_eq!(
            &identity(&search(&world, word)),
            before,
            "after the rebuild: {word:?}"
        );
    }
    let dup = search(&world, "okapi_resumed_marker");
    assert_eq!(dup["total"], 1, "{dup}");
    assert_eq!(dup["hits"][0]["key"], "laptop/c/zz-original.jsonl");

    // `hoover reindex` on the stopped server's store does the same.
    world.server.kill();
    let store = world.server.store.display().to_string();
    let summary = world.json(&["reindex", "--store", &store]);
    assert!(summary["messages"].as_u64().unwrap() > 100, "{summary}");
    world.restart_server();
    for (word, before) in &answers {
        assert_eq!(
            &identity(&search(&world, word)),
            before,
            "after reindex: {word:?}"
        );
    }
}

#[test]
fn reindex_refuses_a_store_in_use_and_a_non_store() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.jsonl"), user_line("s", "u", "hello")).unwrap();
    world.ok(&[
        "sync",
        "--source",
        "l",
        "--root",
        &format!("c={}", root.display()),
    ]);
    let store = world.server.store.display().to_string();
    wait_until("the index exists", DEADLINE, || {
        world
            .server
            .store
            .join("index")
            .join("HOOVER_INDEX")
            .exists()
    });
    let out = world.run(&["reindex", "--store", &store]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    let out = world.run(&["reindex", "--store", &world.path().display().to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a hoover store"));
}

#[test]
fn a_push_only_key_can_push_but_not_search() {
    let world = World::new(BIN);
    let authorized = world.server_home.dir.join("authorized_keys");
    let line = std::fs::read_to_string(&authorized).unwrap();
    std::fs::write(
        &authorized,
        format!("hoover-allow=\"push\",hoover-source=\"l\" {line}"),
    )
    .unwrap();
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.jsonl"), user_line("s", "u", "a secret plan")).unwrap();
    world.ok(&[
        "sync",
        "--source",
        "l",
        "--root",
        &format!("c={}", root.display()),
    ]);
    for args in [
        vec!["search", "plan"],
        vec!["ls"],
        vec!["versions", "l/c/a.jsonl"],
        vec!["restore", "l/c/a.jsonl", "-o", "-"],
    ] {
        let out = world.run(&args);
        assert!(!out.status.success(), "{args:?} was allowed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("may only push"), "{args:?}: {err}");
    }
    // A second key without the option reads everything the push-only laptop sent.
    let reader = world.path().join("reader/.ssh/id_ed25519");
    let public = hoover_testkit::make_key(&reader);
    let mut keys = std::fs::read_to_string(&authorized).unwrap();
    keys.push_str(&format!("{public}\n"));
    std::fs::write(&authorized, keys).unwrap();
    let reader = reader.display().to_string();
    let listing = world.json(&["ls", "--identity", &reader]);
    assert_eq!(listing[0]["key"], "l/c/a.jsonl", "{listing}");
    wait_until("the pushed message is searchable", DEADLINE, || {
        world.json(&["search", "plan", "--identity", &reader])["total"] == 1
    });
}
