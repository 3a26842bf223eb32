//! The web page in a real browser: headless Chromium, driven over the DevTools protocol, opens
//! `/live`; a message with a fresh word is appended to a file that `hoover watch` is watching;
//! the message appears on the page. Screenshots of `/`, `/live` and a transcript are written to
//! `target/tmp/screenshots/` and their paths printed.
//!
//! Needs `chromium` (Debian) or `$HOOVER_CHROMIUM`; `.ci/run` installs it. Chromium is kept
//! off the network: every host name fails to resolve and everything but loopback goes to a
//! dead proxy on loopback.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use hoover_testkit::{http_get, wait_until, World};
use serde_json::{json, Value};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

const BIN: &str = env!("CARGO_BIN_EXE_hoover");
const DEADLINE: Duration = Duration::from_secs(60);

/// How every Chromium here runs: headless, and off the network (every host name fails to
/// resolve, everything but loopback goes to a dead proxy).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--window-size=1280,900",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
];

fn chromium() -> String {
    std::env::var("HOOVER_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// A screenshot as a screenshot tool takes one: `chromium --screenshot` with a virtual-time
/// budget, which only runs out once the page has no request pending. Fails if the page never
/// lets go of the network.
fn screenshot_when_idle(url: &str, name: &str) -> PathBuf {
    let profile = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    let mut child = Command::new(chromium())
        .args(CHROMIUM_FLAGS)
        .arg("--virtual-time-budget=1000")
        .arg(format!("--screenshot={}", path.display()))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.is_some_and(|s| s.success()) && path.exists(),
        "chromium --screenshot of {url} never finished: the page keeps a request open"
    );
    println!("screenshot of {name}: {}", path.display());
    path
}

struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium's helper processes outlive its main one and go on writing to the profile,
        // which then cannot be removed: kill its whole process group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn launch() -> Browser {
        let exe = chromium();
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&exe)
            .args(CHROMIUM_FLAGS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {exe} ({e}): install Debian's chromium, or set HOOVER_CHROMIUM"
                )
            });
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://127.0.0.1:") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(DEADLINE)
            .expect("chromium printed its DevTools address");
        let port: u16 = browser_ws["ws://127.0.0.1:".len()..]
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let targets = devtools_targets(port);
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = format!(
            "ws://127.0.0.1:{port}/devtools/page/{}",
            page["id"].as_str().unwrap()
        );
        let (ws, _) = tungstenite::connect(url.as_str()).unwrap();
        Browser {
            child,
            ws,
            next_id: 1,
            _profile: profile,
        }
    }

    /// One DevTools command; events in between are skipped.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(request.to_string())).unwrap();
        loop {
            let Message::Text(text) = self.ws.read().unwrap() else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        let started = Instant::now();
        while self.eval("document.readyState") != "complete" || self.eval("location.href") != url {
            assert!(started.elapsed() < DEADLINE, "{url} did not load");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&mut self, what: &str, expression: &str) {
        let started = Instant::now();
        while self.eval(expression) != true {
            assert!(started.elapsed() < DEADLINE, "the page never showed {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot of {name}: {}", path.display());
        path
    }
}

/// `GET /json/list` of the DevTools HTTP endpoint, which keeps connections open: the body is
/// read by its Content-Length.
fn devtools_targets(port: u16) -> Value {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header == "\r\n" {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn line(uuid: &str, role: &str, text: &str) -> String {
    let text = serde_json::to_string(text).unwrap();
    format!(
        r#"{{"type":"{role}","sessionId":"sess-browser","uuid":"{uuid}","cwd":"/home/dev/src/zoo","timestamp":"2025-06-01T10:00:00Z","message":{{"role":"{role}","content":{text}}}}}"#
    ) + "\n"
}

/// Appends `text` to `file`, as Claude Code does.
fn append(file: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

#[test]
fn a_message_appended_to_a_watched_file_appears_on_the_live_page() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("browser.jsonl");
    std::fs::write(
        &file,
        line(
            "b1",
            "user",
            "<script>document.title='owned'</script> why is the build red?",
        ) + &line(
            "b2",
            "assistant",
            "The linker cannot find `libssl`; install libssl-dev.",
        ),
    )
    .unwrap();
    // Killed on drop, so a failing step (no Chromium, say) leaves no agent running.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _watch = KillOnDrop(
        world
            .hoover(&[
                "watch",
                "--source",
                "lap",
                "--root",
                &format!("c={}", root.display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = world.server.http_port;
    wait_until("the first messages are indexed", DEADLINE, || {
        http_get(http, "/api/search?q=linker")
            .map(|(_, body)| body.contains("\"total\":1"))
            .unwrap_or(false)
    });

    let mut browser = Browser::launch();
    let base = format!("http://127.0.0.1:{http}");
    browser.open(&format!("{base}/live"));
    browser.wait_for(
        "the live stream connected",
        "document.getElementById('live-status').textContent === 'live'",
    );

    let fresh = "quetzalcoatlus";
    append(
        &file,
        &line("b3", "user", &format!("a {fresh} flies over the live page")),
    );
    browser.wait_for(
        "the appended message",
        &format!("document.getElementById('feed').innerText.includes('{fresh}')"),
    );
    // Markup in a chat is text on the page, never a script.
    assert_eq!(browser.eval("document.title"), "live · hoover");
    browser.screenshot("live");

    // Paused, the page lets go of the stream; resumed, it shows what arrived meanwhile.
    browser.eval("document.getElementById('live-pause').click()");
    browser.wait_for(
        "the paused state",
        "document.getElementById('live-status').textContent === 'paused' && location.search === '?paused=1'",
    );
    let later = "archaeopteryx";
    append(
        &file,
        &line("b4", "user", &format!("an {later} arrives while paused")),
    );
    wait_until("the message sent while paused is indexed", DEADLINE, || {
        http_get(http, &format!("/api/search?q={later}"))
            .map(|(_, body)| body.contains("\"total\":1"))
            .unwrap_or(false)
    });
    browser.eval("document.getElementById('live-pause').click()");
    browser.wait_for(
        "the message that arrived while paused",
        &format!("document.getElementById('feed').innerText.includes('{later}')"),
    );
    assert_eq!(browser.eval("location.search"), "");
    // A paused live page goes idle, so a screenshot tool that waits for that finishes.
    screenshot_when_idle(&format!("{base}/live?paused=1"), "live-paused");

    browser.open(&format!("{base}/"));
    browser.wait_for(
        "the dashboard's counters",
        "document.querySelector('[data-stat=messages]').textContent.trim() === '4'",
    );
    browser.screenshot("dashboard");
    // The transcript comes from the index: wait for the commit that makes the message visible.
    wait_until("the appended message is indexed", DEADLINE, || {
        http_get(http, &format!("/api/search?q={fresh}"))
            .map(|(_, body)| body.contains("\"total\":1"))
            .unwrap_or(false)
    });
    browser.open(&format!("{base}/sessions/sess-browser"));
    browser.wait_for(
        "the transcript",
        &format!("document.body.innerText.includes('{fresh}')"),
    );
    assert!(browser
        .eval("document.body.innerText")
        .as_str()
        .unwrap()
        .contains("<script>document.title='owned'</script>"));
    browser.screenshot("transcript");
}

/// The shared corpus's real sessions in their real layout under one root:
/// `<owner>__<repo>__real_projects~<dir>~<file>` becomes `<root>/<dir>/<file>` (subagents under
/// `<session>/subagents/`, 2.0 agents beside their session).
fn real_layout(root: &Path) {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
    for e in std::fs::read_dir(&corpus).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let Some(rest) = name.splitn(3, "__").nth(2) else {
            continue;
        };
        let rest = rest.replace('~', "/");
        let Some(rel) = rest
            .strip_prefix("real_projects/")
            .or_else(|| rest.strip_prefix("projects/"))
        else {
            continue;
        };
        let to = root.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&p, &to).unwrap();
    }
}

/// Real sessions read from the store in a real browser: a 2.1 session with six subagents under
/// `<session>/subagents/`, a 2.0 session with its agent beside it, and a 1.0 session with a
/// pasted screenshot. Results sit under their calls, subagents are nested (folded, but in the
/// page), bookkeeping is hidden until asked for, the screenshot shows. Screenshots of each.
#[test]
fn real_sessions_read_as_conversations() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    real_layout(&root);
    let root_arg = format!("claude={}", root.display());
    world.ok(&["sync", "--source", "laptop", "--root", &root_arg]);
    let http = world.server.http_port;
    let sessions = [
        "ef958aa1-0e93-49f0-bb71-150f63befcd1",
        "cb2e607c-c758-415a-8b45-c49e4631906a",
        "0d3a8e6f-290f-4105-a327-a2496e5e2a83",
    ];
    wait_until("the sessions are indexed", DEADLINE, || {
        sessions
            .iter()
            .all(|s| http_get(http, &format!("/sessions/{s}")).is_ok_and(|(st, _)| st == 200))
    });
    let mut browser = Browser::launch();
    let base = format!("http://127.0.0.1:{http}");
    let count = |b: &mut Browser, selector: &str| -> u64 {
        b.eval(&format!("document.querySelectorAll('{selector}').length"))
            .as_u64()
            .unwrap()
    };

    // 2.1: every subagent at the Task call that started it, every result under its call.
    browser.open(&format!("{base}/sessions/{}", sessions[0]));
    assert_eq!(count(&mut browser, ".call details.subagent"), 6);
    assert_eq!(count(&mut browser, ".unlinked"), 0);
    assert_eq!(
        count(&mut browser, "article.role-tool"),
        0,
        "no result apart from its call"
    );
    assert!(count(&mut browser, ".call > details.result") >= 100);
    assert_eq!(count(&mut browser, ".hidden-record"), 0);
    // A subagent's words are in the page while folded, so find-in-page finds them.
    let folded = browser.eval(
        "[...document.querySelectorAll('details.subagent')].every(d => !d.open && d.querySelector('.nested article') !== null)",
    );
    assert_eq!(folded, true);
    browser.screenshot("session-2.1-top");
    browser.eval(
        "(() => { const d = document.querySelector('.call details.subagent'); d.open = true; d.closest('.call').scrollIntoView(); })()",
    );
    browser.screenshot("session-2.1-subagent");
    // Every record, on request.
    browser.open(&format!("{base}/sessions/{}?all=1", sessions[0]));
    assert!(count(&mut browser, ".hidden-record") > 0);

    // 2.0: the agent file beside the session, nested at its Task call.
    browser.open(&format!("{base}/sessions/{}", sessions[1]));
    assert_eq!(count(&mut browser, ".call details.subagent"), 1);
    browser.screenshot("session-2.0");

    // 1.0: a pasted screenshot shows as a thumbnail (the page's CSP allows data: images).
    browser.open(&format!("{base}/sessions/{}", sessions[2]));
    browser.wait_for(
        "the pasted image",
        "[...document.querySelectorAll('a.thumb img')].some(i => i.complete && i.naturalWidth > 0)",
    );
    assert!(count(&mut browser, ".md") > 0, "assistant text as Markdown");
    browser.eval("document.querySelector('a.thumb').scrollIntoView()");
    browser.screenshot("session-1.0-image");

    // The dashboard over real sessions: tokens per day and model, with an estimated cost.
    browser.open(&format!("{base}/"));
    browser.wait_for(
        "the token table",
        "document.querySelectorAll('table tr').length > 5",
    );
    let cost = browser.eval("document.querySelector('[data-stat=cost]').textContent.trim()");
    assert!(
        cost.as_str()
            .is_some_and(|c| c.starts_with('$') && c != "$0.00"),
        "{cost}"
    );
    browser.screenshot("dashboard-real");
    // The counters read the same before and after the script refreshes them.
    let (_, html) = http_get(http, "/").unwrap();
    let served: Vec<(String, String)> = html
        .split("data-stat=\"")
        .skip(1)
        .map(|rest| {
            let name = rest.split('"').next().unwrap().to_string();
            let value = rest
                .split('>')
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .to_string();
            (name, value)
        })
        .collect();
    assert!(served.len() >= 10, "{served:?}");
    browser.wait_for(
        "a refresh",
        "document.querySelector('[data-stat=ingest_rate]').textContent.endsWith('/min')",
    );
    for (name, value) in served {
        if name == "ingest_rate" {
            continue;
        }
        let shown = browser.eval(&format!(
            "document.querySelector('[data-stat={name}]').textContent.trim()"
        ));
        assert_eq!(
            shown.as_str(),
            Some(value.trim()),
            "{name} changed format on refresh"
        );
    }
}

/// A user line at `ms` (milliseconds since the epoch).
fn line_at(uuid: &str, ms: i64, text: &str) -> String {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap();
    format!(
        r#"{{"type":"user","sessionId":"sess-week","uuid":"{uuid}","cwd":"/home/dev/src/zoo","timestamp":"{ts}","message":{{"role":"user","content":"{text}"}}}}"#
    ) + "\n"
}

/// The dashboard's charts with one hour of messages and then with a week: time axes with a
/// tick per day, the busiest hour named, thin bars where the hours are, the weekday × hour
/// heatmap. Screenshots of both.
#[test]
fn the_dashboard_charts_an_hour_and_a_week() {
    let world = World::new(BIN);
    let root = world.path().join("projects");
    std::fs::create_dir_all(&root).unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    let hour: String = (0..30)
        .map(|i| line_at(&format!("h{i}"), now - i * 60_000, "within the hour"))
        .collect();
    std::fs::write(root.join("hour.jsonl"), hour).unwrap();
    world.sync_dir("laptop", &root);
    let http = world.server.http_port;
    wait_until("the hour's messages are counted", DEADLINE, || {
        http_get(http, "/api/stats").is_ok_and(|(_, b)| b.contains("\"messages\":30"))
    });
    let mut browser = Browser::launch();
    let base = format!("http://127.0.0.1:{http}");
    browser.open(&format!("{base}/"));
    let bars = |b: &mut Browser| {
        b.eval("document.querySelectorAll('svg.chart')[0].querySelectorAll('rect').length")
            .as_u64()
            .unwrap()
    };
    // One busy hour is one or two bars (the half hour may straddle an hour), not a block.
    assert!(
        (1..=2).contains(&bars(&mut browser)),
        "{}",
        bars(&mut browser)
    );
    assert!(browser
        .eval("document.querySelectorAll('svg.chart')[0].querySelectorAll('text.tick').length >= 6")
        .as_bool()
        .unwrap());
    browser.screenshot("dashboard-one-hour");

    // A week: a message every 20 minutes, busier in the afternoon.
    let week: String = (0..(7 * 72))
        .filter(|i| (i / 3) % 24 >= 8)
        .map(|i| line_at(&format!("w{i}"), now - i * 20 * 60_000, "over the week"))
        .collect();
    std::fs::write(root.join("week.jsonl"), &week).unwrap();
    world.sync_dir("laptop", &root);
    // All of them: the index takes them in more than one commit, and a page drawn after only
    // some were counted shows fewer hours.
    let all = 30 + week.lines().count() as u64;
    wait_until("the week's messages are counted", DEADLINE, || {
        http_get(http, "/api/stats").is_ok_and(|(_, b)| {
            serde_json::from_str::<Value>(&b)
                .is_ok_and(|v| v["transcripts"]["messages"].as_u64() == Some(all))
        })
    });
    browser.open(&format!("{base}/"));
    assert!(bars(&mut browser) > 100, "{}", bars(&mut browser));
    let lit = browser
        .eval("[...document.querySelectorAll('svg.heatmap rect')].filter(r => r.getAttribute('fill-opacity') !== '0').length")
        .as_u64()
        .unwrap();
    assert!(lit > 50, "{lit} heatmap cells lit");
    browser.screenshot("dashboard-week");
    browser.eval("document.querySelector('svg.heatmap').scrollIntoView()");
    browser.screenshot("dashboard-week-heatmap");
}
