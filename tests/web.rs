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
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n"
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
    world.ok(&["sync", "--source", "lap", "--root", &root_arg]);
    let v2 = v1.clone() + &line("w2", "assistant", "a calm answer about the zebu");
    std::fs::write(&file, &v2).unwrap();
    world.ok(&["sync", "--source", "lap", "--root", &root_arg]);
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
        assert!(
            !body.contains("AKIAIOSFODNN7EXAMPLE"),
            "{path} shows a secret"
        );
        let shows_messages = ["/live", "/search", "/sessions", "/diff"]
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
    assert!(get(port, &format!("/files/{key}"), &[])
        .text()
        .contains(&format!("/download/2/{key}")));
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
