//! `hoover up`: server, watcher and (later) web page in one process on loopback, with zero
//! configuration. Keys are made on first run under `<data dir>/up`; with `--demo`, or when there
//! are no Claude Code transcripts, a demo tree is written there and grows by a message every few
//! seconds so the live parts visibly move.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use hoover_client::scan::Root;
use hoover_client::sync::SyncOptions;
use hoover_client::watch::{self, WatchOptions};
use hoover_client::ServerAddr;
use hoover_server::{Server, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::cli::UpArgs;
use crate::commands::serve::stop_signal;
use crate::config;

pub async fn run(args: UpArgs) -> Result<ExitCode> {
    let stop = stop_signal()?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => config::dirs()?.data.join("up"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let identity = dir.join("client_key");
    let authorized = dir.join("authorized_keys");
    if !identity.exists() {
        make_client_key(&identity, &authorized)?;
    }
    let projects = config::claude_projects_dir()?;
    let demo = args.demo || !has_transcripts(&projects);
    let why_demo = if args.demo {
        "--demo".to_string()
    } else if projects.is_dir() {
        format!("{} holds no .jsonl transcripts yet", projects.display())
    } else {
        format!("there is no {}", projects.display())
    };
    let (root_dir, source) = if demo {
        let tree = dir.join("demo").join("projects");
        demo::write_tree(&tree)?;
        (tree, "demo".to_string())
    } else {
        (projects.clone(), config::host_name())
    };

    let config = ServerConfig {
        store: dir.join("store"),
        ssh_listen: args.ssh_listen,
        http_listen: args.http_listen,
        authorized_keys: authorized,
        host_key: dir.join("host_key"),
        max_connections: 16,
        index: true,
        redact: true,
        http_token: args.http_token.clone(),
        login_timeout: ServerConfig::LOGIN_TIMEOUT,
        stall_timeout: ServerConfig::STALL_TIMEOUT,
        max_batch_chunks: hoover_store::MAX_BATCH_ITEMS,
        max_http_connections: ServerConfig::MAX_HTTP_CONNECTIONS,
        http_header_timeout: ServerConfig::HTTP_HEADER_TIMEOUT,
        replicate: None,
    };
    let server = Server::bind(&config).await.with_context(|| {
        "hoover up could not start its server; if a port is taken, move it with --ssh-listen / --http-listen"
    })?;
    let ssh = server.ssh_addr();
    let http = server.http_addr();
    let shutdown = CancellationToken::new();
    let server_task = tokio::spawn(server.run(shutdown.clone()));

    let server_addr = ServerAddr {
        user: "hoover".into(),
        host: ssh.ip().to_string(),
        port: ssh.port(),
    };
    let options_source = source.clone();
    let mut options = WatchOptions::new(
        SyncOptions {
            source,
            roots: vec![Root {
                name: "claude".into(),
                dir: root_dir.clone(),
            }],
            includes: vec!["**/*.jsonl".into()],
        },
        server_addr,
        identity.clone(),
        dir.join("known_hosts"),
        dir.join("client-state"),
    );
    options.status_file = Some(dir.join("agent.json"));
    let agent_shutdown = CancellationToken::new();
    let agent_task = tokio::spawn(watch::run(options, agent_shutdown.clone()));

    let client_flags = format!(
        "--server {ssh} --identity {} --known-hosts {}",
        identity.display(),
        dir.join("known_hosts").display()
    );
    let text = |s: String| toml::Value::String(s);
    let written = config::write_up_client_config(&[
        ("server", text(ssh.to_string())),
        ("identity", text(identity.display().to_string())),
        (
            "known_hosts",
            text(dir.join("known_hosts").display().to_string()),
        ),
        ("source", text(options_source.clone())),
        (
            "roots",
            toml::Value::Array(vec![text(format!("claude={}", root_dir.display()))]),
        ),
    ]);
    eprintln!("hoover: listening ssh={ssh} http={http}");
    let login = match &config.http_token {
        Some(t) => format!("?token={t}"),
        None => String::new(),
    };
    eprintln!(
        "hoover up: server on {ssh} (store {}), web page at http://{http}/{login}",
        config.store.display()
    );
    if demo {
        eprintln!(
            "hoover up: watching {}, a demo tree that grows every few seconds ({why_demo}; your own transcripts are used once there are some)",
            root_dir.display()
        );
    } else {
        eprintln!("hoover up: watching {}", root_dir.display());
    }
    match &written {
        Ok(path) => {
            eprintln!(
                "hoover up: client settings in {}: from another terminal try  hoover ls,  hoover search WORDS,  hoover status,  hoover doctor",
                path.display()
            );
        }
        Err(why) => {
            eprintln!("hoover up: client settings not written ({why}); from another terminal try");
            eprintln!("hoover up:      hoover ls {client_flags}");
            eprintln!("hoover up:      hoover search WORDS {client_flags}");
        }
    }
    let auth = match &config.http_token {
        Some(_) => "-H 'Authorization: Bearer TOKEN' ",
        None => "",
    };
    eprintln!("hoover up:      curl {auth}'http://{http}/api/search?q=WORDS'  and  curl {auth}http://{http}/api/stats");
    eprintln!("hoover up: Ctrl-C stops everything cleanly");

    let demo_shutdown = CancellationToken::new();
    let appender = demo.then(|| {
        let tree = root_dir.clone();
        let every = Duration::from_secs(args.demo_every.max(1));
        let token = demo_shutdown.clone();
        tokio::spawn(async move { demo::keep_appending(&tree, every, token).await })
    });

    stop.await;
    tracing::info!("stopping: pushing the last changes");
    // The demo stops writing first, then the agent pushes what changed, then the server stops.
    demo_shutdown.cancel();
    if let Some(a) = appender {
        let _ = a.await;
    }
    agent_shutdown.cancel();
    if let Ok(Err(e)) = agent_task.await {
        tracing::warn!("agent: {e:#}");
    }
    shutdown.cancel();
    server_task.await??;
    eprintln!("hoover up: stopped");
    Ok(ExitCode::SUCCESS)
}

fn make_client_key(identity: &Path, authorized: &Path) -> Result<()> {
    use russh::keys::ssh_key::rand_core::OsRng;
    let key = russh::keys::PrivateKey::random(&mut OsRng, russh::keys::Algorithm::Ed25519)
        .context("cannot generate a key")?;
    hoover_server::write_private_key(&key, identity)?;
    let public = key
        .public_key()
        .to_openssh()
        .context("cannot encode the public key")?;
    std::fs::write(authorized, format!("{public} hoover-up\n"))
        .with_context(|| format!("cannot write {}", authorized.display()))?;
    Ok(())
}

fn has_transcripts(dir: &Path) -> bool {
    walk_any_jsonl(dir, 0)
}

fn walk_any_jsonl(dir: &Path, depth: usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            depth < 4 && walk_any_jsonl(&p, depth + 1)
        } else {
            p.extension().is_some_and(|x| x == "jsonl")
        }
    })
}

mod demo {
    //! A small demo tree in the shape Claude Code writes: sessions in project directories, one
    //! subagent transcript, lines with uuid/parentUuid chains, and a message appended every few
    //! seconds.

    use super::*;
    use serde_json::json;

    const PROMPTS: &[&str] = &[
        "Why does `cargo test` fail with `error[E0502]: cannot borrow as mutable`?",
        "Add a --json flag to the sync command and print one object per run.",
        "The restore writes a partial file when the connection drops. Fix it.",
        "Explain how content-defined chunking keeps appends cheap.",
        "Write a test that kills the server in the middle of a sync.",
    ];
    const ANSWERS: &[&str] = &[
        "The borrow checker sees two live mutable borrows of `state`; move the second use after the first ends.",
        "I'll add `#[arg(long)] json: bool` to `SyncArgs` and serialize the report with serde_json.",
        "Write to a temporary file beside the destination and rename it only after the BLAKE3 matches.",
        "Cut points depend only on the bytes since the previous cut, so an append changes only the last chunk.",
        "The test waits for the first committed batch, sends SIGKILL, restarts, and checks `hoover verify`.",
    ];

    fn line(session: &str, cwd: &str, n: usize, parent: Option<&str>) -> (String, String) {
        let uuid = format!("{:08x}-0000-4000-8000-{:012x}", n as u32 ^ 0x5eed, n);
        let ts = jiff::Timestamp::now().to_string();
        let record = if n.is_multiple_of(2) {
            json!({"parentUuid": parent, "isSidechain": false, "userType": "external", "cwd": cwd,
                "sessionId": session, "version": "2.1.0", "gitBranch": "main", "type": "user",
                "message": {"role": "user", "content": PROMPTS[(n / 2) % PROMPTS.len()]},
                "uuid": uuid, "timestamp": ts})
        } else {
            json!({"parentUuid": parent, "isSidechain": false, "userType": "external", "cwd": cwd,
                "sessionId": session, "version": "2.1.0", "gitBranch": "main", "type": "assistant",
                "message": {"id": format!("msg_demo{n:06}"), "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": ANSWERS[(n / 2) % ANSWERS.len()]}],
                    "usage": {"input_tokens": 1200 + n, "output_tokens": 300 + n}},
                "uuid": uuid, "timestamp": ts})
        };
        (format!("{record}\n"), uuid)
    }

    fn session_file(tree: &Path) -> PathBuf {
        tree.join("-home-demo-src-hoover")
            .join("5e55a0e0-0000-4000-8000-000000000001.jsonl")
    }

    /// Writes the demo tree unless it is already there.
    pub fn write_tree(tree: &Path) -> Result<()> {
        let main = session_file(tree);
        if main.exists() {
            return Ok(());
        }
        let session = "5e55a0e0-0000-4000-8000-000000000001";
        let cwd = "/home/demo/src/hoover";
        std::fs::create_dir_all(main.parent().expect("session file has a parent"))?;
        let mut text = String::new();
        let mut parent: Option<String> = None;
        for n in 0..6 {
            let (l, uuid) = line(session, cwd, n, parent.as_deref());
            text.push_str(&l);
            parent = Some(uuid);
        }
        std::fs::write(&main, text)?;
        let sub = tree
            .join("-home-demo-src-hoover")
            .join(session)
            .join("subagents")
            .join("agent-demo01.jsonl");
        std::fs::create_dir_all(sub.parent().expect("subagent file has a parent"))?;
        std::fs::write(&sub, line(session, cwd, 1000, None).0)?;
        let other = tree
            .join("-home-demo-src-notes")
            .join("5e55a0e0-0000-4000-8000-000000000002.jsonl");
        std::fs::create_dir_all(other.parent().expect("session file has a parent"))?;
        std::fs::write(
            &other,
            line(
                "5e55a0e0-0000-4000-8000-000000000002",
                "/home/demo/src/notes",
                0,
                None,
            )
            .0,
        )?;
        Ok(())
    }

    /// Appends a message to the demo session every `every` until `token` is cancelled.
    pub async fn keep_appending(tree: &Path, every: Duration, token: CancellationToken) {
        let path = session_file(tree);
        let mut n = std::fs::read_to_string(&path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let (l, _) = line(
                "5e55a0e0-0000-4000-8000-000000000001",
                "/home/demo/src/hoover",
                n,
                None,
            );
            use std::io::Write;
            let appended = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(l.as_bytes()));
            if let Err(e) = appended {
                tracing::warn!(path = %path.display(), "demo append failed: {e}");
            }
            n += 1;
        }
    }
}
