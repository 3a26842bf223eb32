//! The web page over real HTTP: every route's status and content type, chat content escaped
//! and secrets redacted everywhere it is shown, byte-exact downloads, and the token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hoover_testkit::{wait_until, ServerProcess, World};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");
const DEADLINE: Duration = Duration::from_secs(60);

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    // A test's own Host header replaces the default.
    let host = if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        ""
    } else {
        "Host: 127.0.0.1\r\n"
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\n{host}Connection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

const HOSTILE: &str = "<script>alert('owned')</script> and AKIAIOSFODNN7EXAMPLE in a zebu message";

fn line(uuid: &str, role: &str, text: &str) -> String {
    let text = serde_json::to_string(text).unwrap();
    format!(
        r#"{{"type":"{role}","sessionId":"sess-web","uuid":"{uuid}","cwd":"/home/dev/src/zoo","timestamp":"2025-06-01T10:00:00Z","message":{{"role":"{role}","content":{text}}}}}"#
    ) + "\n"
}

#[test]
fn every_page_escapes_redacts_and_downloads_exactly() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("web.jsonl");
    let v1 = line("w1", "user", HOSTILE);
    std::fs::write(&file, &v1).unwrap();
    let root_arg = format!("c={}", root.display());
    let sync = || {
        world.ok(&[
            "sync",
            "--source",
            "lap",
            "--root",
            &root_arg,
            "--include",
            "**/*.jsonl",
            "--include",
            "**/*.md",
        ]);
    };
    sync();
    // A key block in a notes file, changed between two versions; a password given to a tool
    // as a structured field.
    let notes = root.join("notes.md");
    let pem = |n: u32| {
        format!("intro\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAsecretmiddle{n}\nMIIEpAIBAAKCAQEAsecretmiddle{n}\n-----END RSA PRIVATE KEY-----\noutro {n}\n")
    };
    std::fs::write(&notes, pem(1)).unwrap();
    sync();
    let tool_call = r#"{"type":"assistant","sessionId":"sess-web","uuid":"w3","parentUuid":"w2","timestamp":"2025-06-01T10:00:02Z","message":{"id":"m3","role":"assistant","content":[{"type":"tool_use","id":"toolu_pw","name":"mcp__db__connect","input":{"host":"db.internal","password":"hunter2structured"}}]}}"#;
    let v2 =
        v1.clone() + &line("w2", "assistant", "a calm answer about the zebu") + tool_call + "\n";
    std::fs::write(&file, &v2).unwrap();
    std::fs::write(&notes, pem(2)).unwrap();
    sync();
    let port = world.server.http_port;
    let key = "lap/c/web.jsonl";
    wait_until("both messages are searchable", DEADLINE, || {
        get(port, "/search?q=zebu", &[])
            .text()
            .contains("2 matches")
    });

    let pages = [
        "/".to_string(),
        "/live".to_string(),
        "/search?q=zebu".to_string(),
        "/sessions/sess-web".to_string(),
        format!("/files/{key}"),
        format!("/diff/{key}?a=1&b=2"),
        "/diff/lap/c/notes.md?a=1&b=2".to_string(),
        "/sources".to_string(),
    ];
    for path in &pages {
        let r = get(port, path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        let body = r.text();
        assert!(!body.contains("<script>alert"), "{path} shows raw markup");
        for secret in ["AKIAIOSFODNN7EXAMPLE", "hunter2structured", "secretmiddle"] {
            assert!(!body.contains(secret), "{path} shows {secret}:\n{body}");
        }
        let shows_messages = ["/live", "/search", "/sessions", "/diff/lap/c/web"]
            .iter()
            .any(|p| path.starts_with(p));
        if shows_messages {
            assert!(
                body.contains("&lt;script&gt;") || body.contains("&#60;script&#62;"),
                "{path} lacks the escaped message:\n{body}"
            );
        }
    }
    assert!(get(port, "/search?q=zebu", &[])
        .text()
        .contains("<mark>zebu</mark>"));
    // The redacted diff still shows what changed around the key block.
    let notes_diff = get(port, "/diff/lap/c/notes.md?a=1&b=2", &[]).text();
    assert!(
        notes_diff.contains("outro 2") && notes_diff.contains("[REDACTED:private-key]"),
        "{notes_diff}"
    );
    // The structured password is not searchable either.
    wait_until("the tool call is indexed", DEADLINE, || {
        get(port, "/api/search?q=db.internal", &[])
            .text()
            .contains("\"total\":1")
    });
    assert!(get(port, "/api/search?q=hunter2structured", &[])
        .text()
        .contains("\"total\":0"));
    let file_page = get(port, &format!("/files/{key}"), &[]).text();
    assert!(file_page.contains(&format!("/download/2/{key}")));
    assert!(
        file_page.contains("2 versions. Every one is kept"),
        "{file_page}"
    );
    assert!(get(port, "/sources", &[]).text().contains("<td>lap</td>"));

    // Downloads are the stored bytes, exactly (secrets included: it is a restore).
    let one = get(port, &format!("/download/1/{key}"), &[]);
    assert_eq!(one.status, 200);
    assert_eq!(one.body, v1.as_bytes());
    assert!(one
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    assert_eq!(
        get(port, &format!("/download/2/{key}"), &[]).body,
        v2.as_bytes()
    );

    // Static files and the APIs.
    let js = get(port, "/static/app.js", &[]);
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(get(port, "/static/app.css", &[])
        .header("content-type")
        .unwrap()
        .starts_with("text/css"));
    let stats = get(port, "/api/stats", &[]);
    assert!(stats
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    // Missing things are 404 pages that say what is missing.
    for path in [
        "/files/lap/c/none.jsonl".to_string(),
        format!("/download/9/{key}"),
        "/sessions/no-such-session".to_string(),
    ] {
        let r = get(port, &path, &[]);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    assert_eq!(get(port, "/files/..%2Fetc%2Fpasswd", &[]).status, 400);
}

#[test]
fn a_token_guards_everything_but_healthz_and_is_required_off_loopback() {
    let world = World::new(BIN);
    let token = "0123456789abcdef0123";
    let mut opts = world.server_options(0);
    opts.store = world.server_home.dir.join("store2");
    opts.extra_args = vec!["--http-token".into(), token.into()];
    let server = ServerProcess::start(&opts);
    let port = server.http_port;
    for path in [
        "/",
        "/live",
        "/api/search?q=x",
        "/api/stats",
        "/api/live",
        "/metrics",
    ] {
        let r = get(port, path, &[]);
        assert_eq!(r.status, 401, "{path} without a token");
        let wrong = format!("Bearer {}x", &token[1..]);
        assert_eq!(
            get(port, path, &[("Authorization", &wrong)]).status,
            401,
            "{path} wrong token"
        );
    }
    assert_eq!(get(port, "/healthz", &[]).status, 200);
    let bearer = format!("Bearer {token}");
    assert_eq!(get(port, "/", &[("Authorization", &bearer)]).status, 200);
    // A login link sets a cookie and drops the token from the address.
    let login = get(port, &format!("/search?q=a&token={token}"), &[]);
    assert_eq!(login.status, 303, "{}", login.headers);
    assert_eq!(login.header("location").as_deref(), Some("/search?q=a"));
    let cookie = login.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    assert_eq!(get(port, "/search?q=a", &[("Cookie", &pair)]).status, 200);
    assert_eq!(get(port, &format!("/?token={token}x"), &[]).status, 401);
    drop(server);

    // Listening beyond loopback without a token is refused at start, with the fix.
    let out = world
        .hoover(&[
            "serve",
            "--store",
            &world.path().join("store3").display().to_string(),
            "--ssh-listen",
            "127.0.0.1:0",
            "--http-listen",
            "0.0.0.0:0",
            "--authorized-keys",
            &world
                .server_home
                .dir
                .join("authorized_keys")
                .display()
                .to_string(),
            "--host-key",
            &world.path().join("hk").display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--http-token"), "{err}");
}

/// A page on another site that rebinds its name to 127.0.0.1 sends its own Host: without a
/// token the server answers loopback names only.
#[test]
fn without_a_token_only_loopback_host_names_are_answered() {
    let world = World::new(BIN);
    let port = world.server.http_port;
    for host in ["evil.example", &format!("evil.example:{port}"), "10.0.0.1"] {
        let r = get(port, "/api/search?q=x", &[("Host", host)]);
        assert_eq!(r.status, 403, "{host}: {}", r.text());
        assert!(r.text().contains("loopback names"), "{}", r.text());
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(get(port, "/", &[("Host", &host)]).status, 200, "{host}");
    }
}

/// Keys with `#`, `?`, `%`, spaces and `%2e%2e` link to themselves; a token login redirects
/// only to a path on this server; weak tokens are refused at start.
#[test]
fn links_encode_keys_and_logins_stay_on_this_server() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let names = ["a b#c?d.jsonl", "%2e%2e.jsonl", "100%.jsonl"];
    for (i, name) in names.iter().enumerate() {
        std::fs::write(root.join(name), line(&format!("u{i}"), "user", "hello")).unwrap();
    }
    // Another file that `%2e%2e.jsonl`, decoded twice, would reach.
    std::fs::write(root.join("other.jsonl"), line("o", "user", "other")).unwrap();
    let root_arg = format!("c={}", root.display());
    world.ok(&["sync", "--source", "lap", "--root", &root_arg]);
    let port = world.server.http_port;
    wait_until("the session lists every file", DEADLINE, || {
        let page = get(port, "/sessions/sess-web", &[]).text();
        names.iter().all(|n| page.contains(&format!(">lap/c/{n}<")))
    });
    let session = get(port, "/sessions/sess-web", &[]).text();
    for name in names {
        let key = format!("lap/c/{name}");
        let href = session
            .split("href=\"")
            .filter_map(|h| h.split('"').next())
            .find(|h| {
                h.starts_with("/files/") && {
                    let page = get(port, h, &[]);
                    page.status == 200 && page.text().contains(&format!("<code>{key}</code>"))
                }
            });
        assert!(
            href.is_some(),
            "no working link to {key} in the session page:\n{session}"
        );
        let page = get(port, href.unwrap(), &[]).text();
        let download = page
            .split("href=\"")
            .filter_map(|h| h.split('"').next())
            .find(|h| h.starts_with("/download/1/"))
            .unwrap()
            .to_string();
        let r = get(port, &download, &[]);
        assert_eq!(r.status, 200, "{download}");
        assert_eq!(
            r.body,
            std::fs::read(root.join(name)).unwrap(),
            "{download}"
        );
    }

    let token = "0123456789abcdef0123";
    let mut opts = world.server_options(0);
    opts.store = world.server_home.dir.join("store2");
    opts.extra_args = vec!["--http-token".into(), token.into()];
    let server = ServerProcess::start(&opts);
    for path in [
        format!("//evil.example/?token={token}"),
        format!("/\\evil.example/?token={token}"),
    ] {
        let login = get(server.http_port, &path, &[]);
        assert_eq!(login.status, 303, "{path}");
        let location = login.header("location").unwrap();
        assert!(
            location.starts_with('/')
                && !location.starts_with("//")
                && !location.starts_with("/\\"),
            "{path} redirects to {location}"
        );
    }
    drop(server);
    for weak in [
        "                    ",
        "aaaaaaaaaaaaaaaaaaaaaaaa",
        "1234123412341234",
    ] {
        let mut args: Vec<String> = world
            .server_options(0)
            .serve_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        args.push("--http-token".into());
        args.push(weak.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = world.run(&args);
        assert!(!out.status.success(), "{weak:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("HTTP token"), "{err}");
    }
}

/// Paging past the first 10,000 hits is refused with a message, over HTTP and SSH alike:
/// today's main let `offset=1000000000000` abort the whole server.
#[test]
fn deep_pages_are_refused_and_the_server_stays_up() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.jsonl"), line("u1", "user", "a zebu")).unwrap();
    world.sync_dir("lap", &root);
    let port = world.server.http_port;
    wait_until("searchable", DEADLINE, || {
        get(port, "/search?q=zebu", &[]).text().contains("1 match")
    });
    for sort in ["relevance", "newest"] {
        let r = get(
            port,
            &format!("/api/search?q=zebu&sort={sort}&offset=1000000000000"),
            &[],
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("not served"), "{}", r.text());
        let r = get(
            port,
            &format!("/search?q=zebu&sort={sort}&offset=1000000000000"),
            &[],
        );
        assert_eq!(r.status, 200);
        assert!(r.text().contains("not served"), "{}", r.text());
    }
    let r = get(port, &format!("/api/search?q={}", "a%20".repeat(40)), &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    let out = world.run(&["search", "zebu", "--offset", "4000000000"]);
    assert!(!out.status.success());
    let out = world.run(&["search", "zebu", "--offset", "100000", "--limit", "5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not served"), "{err}");
    // A query with nothing to look for is refused with why, never every message.
    let out = world.run(&["search", "!!"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing to search for"), "{err}");
    let r = get(port, "/api/search?q=%21%21", &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    // `-word` on the command line is an exclusion, as the README writes it, flags after it.
    assert_eq!(world.json(&["search", "zebu", "-flaky"])["total"], 1);
    assert_eq!(
        world.json(&["search", "zebu", "-zebu", "--sort", "newest"])["total"],
        0
    );
    // Still up, still answering.
    assert_eq!(get(port, "/healthz", &[]).status, 200);
    assert_eq!(world.json(&["search", "zebu"])["total"], 1);
    hoover_testkit::report(
        env!("CARGO_TARGET_TMPDIR"),
        "deep_pages",
        serde_json::json!({ "refused": 7, "server_up_after": true }),
    );
}

/// A diff too large for a page is refused with what to do; diffs run off the async runtime,
/// so the health check answers while they compute; downloads stream.
#[test]
fn large_diffs_are_bounded_and_downloads_stream() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("big.jsonl");
    let root_arg = format!("c={}", root.display());
    // Two versions of 30,000 lines each that differ on every line: the hard case for a diff.
    let lines = |tag: &str| -> String {
        (0..30_000)
            .map(|i| format!("{{\"n\":{i},\"t\":\"{tag}-{}\"}}\n", (i * 7919) % 30_011))
            .collect()
    };
    std::fs::write(&file, lines("a")).unwrap();
    world.ok(&["sync", "--source", "lap", "--root", &root_arg]);
    std::fs::write(&file, lines("b")).unwrap();
    world.ok(&["sync", "--source", "lap", "--root", &root_arg]);
    let port = world.server.http_port;
    let key = "lap/c/big.jsonl";
    let diffs: Vec<_> = (0..3)
        .map(|_| {
            let path = format!("/diff/{key}?a=1&b=2");
            std::thread::spawn(move || get(port, &path, &[]))
        })
        .collect();
    // While three diffs compute, the health check is answered (each diff stops at 2 s).
    let health = get(port, "/healthz", &[]);
    assert_eq!(health.status, 200);
    for d in diffs {
        let r = d.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("lines added"));
    }
    let download = get(port, &format!("/download/2/{key}"), &[]);
    assert_eq!(download.body, std::fs::read(&file).unwrap());
    // Versions too large to compare on a page: refused, with what to do instead.
    let huge = root.join("huge.jsonl");
    let block = lines("h").repeat(10);
    std::fs::write(&huge, &block).unwrap();
    world.ok(&["sync", "--source", "lap", "--root", &root_arg]);
    std::fs::write(&huge, block.repeat(2)).unwrap();
    world.ok(&["sync", "--source", "lap", "--root", &root_arg]);
    let r = get(port, "/diff/lap/c/huge.jsonl?a=1&b=2", &[]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("Download both"), "{}", r.text());
    assert!(
        r.text().contains("href=\"/download/2/lap/c/huge.jsonl\""),
        "{}",
        r.text()
    );
    assert_eq!(
        download.header("content-length").as_deref(),
        Some(download.body.len().to_string().as_str())
    );
}
