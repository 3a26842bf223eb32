//! `hoover doctor`: checks the set-up in order, one verdict line each, with the fix.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use hoover_client::watch::AgentStatus;
use hoover_types::Key;

use crate::cli::DoctorArgs;
use crate::commands::status::process_alive;
use crate::commands::{client_settings, sync::sync_options, watch::find_status_file};
use crate::config;

/// Printed when a LAN host is unreachable from launchd but not from a terminal (macOS 15+).
const LOCAL_NETWORK_FIX: &str = "macOS blocks background agents from the local network until allowed: \
open System Settings > Privacy & Security > Local Network and turn on hoover (it appears after the agent's \
first attempt); or run the server on a host reached through a non-local route (a VPN or Tailscale address), \
or start `hoover watch` from a terminal session";

struct Report {
    failed: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl std::fmt::Display) {
        let _ = writeln!(super::stdout(), "ok    {what}: {detail}");
    }
    fn warn(&mut self, what: &str, detail: impl std::fmt::Display) {
        let _ = writeln!(super::stdout(), "warn  {what}: {detail}");
    }
    fn fail(&mut self, what: &str, detail: impl std::fmt::Display, fix: &str) {
        self.failed += 1;
        let _ = writeln!(super::stdout(), "FAIL  {what}: {detail}\n      fix: {fix}");
    }
}

pub async fn run(args: DoctorArgs) -> Result<ExitCode> {
    let mut r = Report { failed: 0 };
    let done = |r: &Report| {
        Ok(if r.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    };

    // 1. Config.
    let file = match config::load(args.client.config.as_deref()) {
        Ok(f) => {
            r.ok("config", "found and valid (or defaults)");
            f
        }
        Err(e) => {
            r.fail(
                "config",
                format!("{e:#}"),
                "fix the named file; `hoover sync --help` lists the settings",
            );
            return done(&r);
        }
    };
    // 2. Roots.
    match sync_options(&args.what, &file) {
        Ok(opts) => {
            for root in &opts.roots {
                match std::fs::read_dir(&root.dir) {
                    Ok(_) => r.ok(
                        "root",
                        format!("{}={} is readable", root.name, root.dir.display()),
                    ),
                    Err(e) => r.fail(
                        "root",
                        format!("{}={}: {e}", root.name, root.dir.display()),
                        "create it, fix its permissions, or pass --root NAME=DIR",
                    ),
                }
            }
        }
        Err(e) => r.fail("roots", format!("{e:#}"), "check --root and --source"),
    }
    // 3. Identity.
    let settings = match client_settings(&args.client, &file) {
        Ok(s) => s,
        Err(e) => {
            r.fail(
                "client settings",
                format!("{e:#}"),
                "set `server` (and `identity`) in the config file or pass --server",
            );
            return done(&r);
        }
    };
    match russh::keys::load_secret_key(&settings.identity, None) {
        Ok(_) => r.ok("identity", settings.identity.display()),
        Err(e) => {
            r.fail(
                "identity",
                format!("{}: {e}", settings.identity.display()),
                "point --identity at an unencrypted OpenSSH private key (ssh-keygen -t ed25519 -N '')",
            );
            return done(&r);
        }
    }
    // 4. TCP.
    let addr = (settings.server.host.as_str(), settings.server.port);
    let tcp =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await;
    match tcp {
        Ok(Ok(_)) => r.ok(
            "network",
            format!("{}:{} answers", settings.server.host, settings.server.port),
        ),
        Ok(Err(e)) => {
            let fix = if e.raw_os_error() == Some(65) || e.to_string().contains("No route to host")
            {
                LOCAL_NETWORK_FIX
            } else {
                "start `hoover serve` there, check the address and port, and any firewall"
            };
            r.fail(
                "network",
                format!("{}:{}: {e}", settings.server.host, settings.server.port),
                fix,
            );
            return done(&r);
        }
        Err(_) => {
            r.fail(
                "network",
                "no answer in 5 s",
                "check the address, that the server is up, and any firewall",
            );
            return done(&r);
        }
    }
    // 5-7. Host key, authentication, protocol: one SSH connection, its failure classified.
    let known_before = std::fs::read_to_string(&settings.known_hosts).unwrap_or_default();
    let mut conn = match hoover_client::connect(
        &settings.server,
        &settings.identity,
        &settings.known_hosts,
    )
    .await
    {
        Ok(c) => {
            let known_after = std::fs::read_to_string(&settings.known_hosts).unwrap_or_default();
            if known_after != known_before {
                r.ok(
                    "host key",
                    format!("new, recorded in {}", settings.known_hosts.display()),
                );
            } else {
                r.ok("host key", "known and unchanged");
            }
            r.ok("authentication", "accepted");
            r.ok(
                "protocol",
                format!("compatible (store {})", c.remote.store_id),
            );
            c
        }
        Err(e) => {
            let msg = format!("{e:#}");
            if msg.contains("CHANGED") {
                r.fail("host key", &msg, "if the server was reinstalled, delete the named line; otherwise do not connect");
            } else if msg.contains("refused the key") {
                r.ok("host key", "known or new");
                r.fail(
                    "authentication",
                    &msg,
                    "append your public key (.pub) to the server's authorized_keys",
                );
            } else if msg.contains("handshake") {
                r.ok("host key", "known or new");
                r.ok("authentication", "accepted");
                r.fail(
                    "protocol",
                    &msg,
                    "run the same hoover version on both sides",
                );
            } else {
                r.fail(
                    "ssh",
                    &msg,
                    "check that the address is a hoover server (`hoover serve`)",
                );
            }
            return done(&r);
        }
    };
    // 8. A round trip: a small fixed probe pushed and read back.
    let source = args
        .what
        .source
        .clone()
        .or(file.source.clone())
        .unwrap_or_else(config::host_name);
    match probe(&mut conn, &source).await {
        Ok(()) => r.ok("test push", "a probe file was stored and read back byte for byte"),
        Err(e) => r.fail(
            "test push",
            format!("{e:#}"),
            "a push-only key cannot read back (expected for such keys); otherwise see the server log",
        ),
    }
    conn.close().await;
    // 9. The agent.
    let status_file = match args.status_file.clone() {
        Some(p) => p,
        None => find_status_file()?,
    };
    match std::fs::read_to_string(&status_file)
        .ok()
        .and_then(|t| serde_json::from_str::<AgentStatus>(&t).ok())
    {
        None => r.fail(
            "agent",
            format!("no agent state at {}", status_file.display()),
            "start `hoover watch` (or `hoover up`), or install the agent: scripts/install-agent.sh (launchd on macOS, systemd --user on Linux)",
        ),
        Some(st) => {
            let alive = process_alive(st.pid);
            let no_route = st
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("No route to host") || e.contains("os error 65"));
            if alive && st.connected {
                r.ok("agent", format!("running (pid {}), connected", st.pid));
            } else if alive && no_route {
                // The terminal reached the server a moment ago; the agent cannot.
                r.fail("agent", "running but cannot reach the server: No route to host", LOCAL_NETWORK_FIX);
            } else if alive {
                r.warn("agent", format!("running (pid {}) but not connected: {}", st.pid, st.last_error.unwrap_or_default()));
            } else {
                r.fail("agent", "not running", "start it: scripts/install-agent.sh, or `hoover watch`");
            }
        }
    }
    done(&r)
}

/// Pushes a small fixed file to `.hoover-probe/doctor/SOURCE.txt` and reads it back. The probe
/// source is reserved: the server stores it like any file but does not list, count, index or
/// show it, so a check leaves no trace among the chats.
async fn probe(conn: &mut hoover_client::Connection, source: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let body = b"hoover doctor probe: a fixed small file, pushed and read back\n";
    let root_dir = dir.path().join("doctor");
    std::fs::create_dir_all(&root_dir)?;
    let name = format!("{source}.txt");
    std::fs::write(root_dir.join(&name), body)?;
    let options = hoover_client::sync::SyncOptions {
        source: hoover_types::PROBE_SOURCE.to_string(),
        roots: vec![hoover_client::scan::Root {
            name: "doctor".into(),
            dir: root_dir,
        }],
        includes: vec![name.clone()],
    };
    let state = hoover_client::state::ClientState::open(&dir.path().join("state.db")).await?;
    let report = hoover_client::sync::sync(
        &mut conn.remote,
        &state,
        &options,
        &hoover_client::NoProgress,
    )
    .await?;
    if report.files_failed > 0 {
        anyhow::bail!("the server refused the probe: {:?}", report.warnings);
    }
    let key = Key::probe_for(source)?;
    let versions = conn.remote.versions(&key).await?;
    let latest = versions
        .last()
        .ok_or_else(|| anyhow::anyhow!("the probe is not listed"))?;
    let mut back = Vec::new();
    conn.remote
        .restore(&key, latest.seq, |b| {
            back.extend_from_slice(b);
            Ok(())
        })
        .await?;
    if back != body {
        anyhow::bail!("the probe came back different");
    }
    Ok(())
}
