//! The README's search examples, run as written against a server holding a transcript that
//! each of them should find: every `hoover search` line exits 0 with at least one hit, every
//! `curl` line answers 200.

use std::path::Path;
use std::time::Duration;

use hoover_testkit::{http_get, wait_until, World};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hoover");
const DEADLINE: Duration = Duration::from_secs(60);

/// Splits a shell line into words: single and double quotes, no escapes, `#` comments.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, '#') if word.is_none() => break,
            (None, c) if c.is_whitespace() => out.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    out
}

/// The commands of the README's `### Search` section's first `sh` block.
fn readme_search_examples() -> Vec<Vec<String>> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("### Search").expect("a Search section")..];
    let block = &section[section.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    block.lines().map(words).filter(|w| !w.is_empty()).collect()
}

fn line(fields: &str, role: &str, content: &str) -> String {
    format!(
        r#"{{"type":"{role}","sessionId":"readme-session",{fields},"cwd":"/home/dev/src/hoover","message":{{"role":"{role}","content":{content}}}}}"#
    ) + "\n"
}

#[test]
fn every_search_example_in_the_readme_runs() {
    let examples = readme_search_examples();
    assert!(examples.len() >= 5, "{examples:?}");
    let world = World::new(BIN);
    let root = world.path().join("projects/-home-dev-src-hoover");
    std::fs::create_dir_all(&root).unwrap();
    let ts = |i: u32| format!(r#""uuid":"r{i}","timestamp":"2026-10-0{i}T10:00:00Z""#);
    let text = |t: &str| serde_json::to_string(t).unwrap();
    let transcript = [
        line(&ts(1), "user", &text("the tokio runtime timeouts after a while")),
        line(&ts(2), "assistant", &text("a \"connection refused\" from the server: parse_snake_case in src/main.rs")),
        line(&ts(3), "assistant", &text("thread main panicked: a panic in the parser")),
        line(
            &(ts(4) + r#","requestId":"q1""#),
            "assistant",
            r#"[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"cargo test --workspace"}}]"#,
        ),
        line(
            &ts(5),
            "user",
            r#"[{"type":"tool_result","tool_use_id":"toolu_1","content":"test result: ok"}]"#,
        ),
        r#"{"type":"progress","sessionId":"readme-session","uuid":"p6","timestamp":"2026-10-06T10:00:00Z","data":{"type":"hook_progress","hookName":"PostToolUse hook"}}"#.to_string() + "\n",
    ]
    .concat();
    std::fs::write(root.join("readme-session.jsonl"), transcript).unwrap();
    world.sync_dir("laptop", &world.path().join("projects"));
    let http = world.server.http_port;
    wait_until("the transcript is searchable", DEADLINE, || {
        http_get(http, "/api/stats").is_ok_and(|(_, body)| {
            serde_json::from_str::<Value>(&body).is_ok_and(|v| {
                v["transcripts"]["messages"] == 5 && v["indexer"]["catching_up"] == false
            })
        }) && http_get(http, "/api/search?q=tokio").is_ok_and(|(_, b)| b.contains("\"total\":1"))
    });
    let mut ran = 0;
    for example in &examples {
        let args: Vec<&str> = example.iter().map(String::as_str).collect();
        match args[0] {
            "hoover" => {
                assert_eq!(args[1], "search", "{args:?}");
                let out = world.run(&args[1..]);
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                if args.contains(&"--json") {
                    let v: Value = serde_json::from_str(&stdout).unwrap();
                    assert!(v["total"].as_u64().unwrap() >= 1, "{args:?}: {v}");
                } else {
                    assert!(
                        stdout.contains("readme-session"),
                        "{args:?} found nothing:\n{stdout}"
                    );
                }
            }
            "curl" => {
                let url = args[1];
                let path = &url[url.find("/api/").unwrap()..];
                let (status, body) = http_get(http, path).unwrap();
                assert_eq!(status, 200, "{url}: {body}");
            }
            other => panic!("an example that is neither hoover nor curl: {other}"),
        }
        ran += 1;
    }
    assert_eq!(ran, examples.len());
}

/// Every `hoover SUBCOMMAND --flag` the README writes exists: each subcommand's `--help`
/// succeeds and lists each flag written after it.
#[test]
fn every_command_and_flag_the_readme_names_exists() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut checked = 0;
    // `hoover WORD ...` in code blocks and in backticks, up to the end of the command.
    for piece in readme.split('`').chain(readme.lines()) {
        let Some(at) = piece.find("hoover ") else {
            continue;
        };
        let command = &piece[at + "hoover ".len()..];
        let command = command.split('#').next().unwrap_or("");
        let words = words(command);
        let Some(sub) = words.first() else { continue };
        if !sub.chars().all(|c| c.is_ascii_lowercase()) || sub == "hoovers" {
            continue;
        }
        let known = [
            "up", "serve", "sync", "watch", "status", "doctor", "ls", "versions", "restore",
            "verify", "search", "reindex", "recover",
        ];
        if !known.contains(&sub.as_str()) {
            // Prose such as "hoover keeps"; a real subcommand the README misspells would be
            // caught by the list below.
            continue;
        }
        let help = std::process::Command::new(BIN)
            .args([sub.as_str(), "--help"])
            .output()
            .unwrap();
        assert!(help.status.success(), "hoover {sub} --help failed");
        let text = String::from_utf8_lossy(&help.stdout);
        for flag in words.iter().skip(1).filter(|w| w.starts_with("--")) {
            let flag = flag
                .split('=')
                .next()
                .unwrap()
                .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            assert!(
                text.contains(flag),
                "the README writes `hoover {sub} {flag}`, which --help lacks"
            );
            checked += 1;
        }
        for short in words
            .iter()
            .skip(1)
            .filter(|w| w.len() == 2 && w.starts_with('-'))
        {
            assert!(
                text.contains(&format!("{short},")),
                "the README writes `hoover {sub} {short}`"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} flags found in the README");
}
