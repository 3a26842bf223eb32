//! `hoover status`: the agent's state, read from the file it keeps up to date.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use hoover_client::watch::AgentStatus;

use crate::cli::StatusArgs;
use crate::commands::watch::find_status_file;

pub async fn run(args: StatusArgs) -> Result<ExitCode> {
    let path = match args.status_file {
        Some(p) => p,
        None => find_status_file()?,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // No agent has run as this user: not an error of `status`, an answer (exit 3).
            if args.json {
                writeln!(
                    super::stdout(),
                    "{}",
                    serde_json::json!({"running": false, "state_file": path.display().to_string()})
                )?;
            } else {
                writeln!(
                    super::stdout(),
                    "agent: not running (no state at {}): start `hoover watch` or `hoover up`, or install the agent with scripts/install-agent.sh",
                    path.display()
                )?;
            }
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let status: AgentStatus = serde_json::from_str(&text)
        .with_context(|| format!("bad agent state in {}", path.display()))?;
    let running = process_alive(status.pid);
    let mut out = super::stdout();
    if args.json {
        let mut value = serde_json::to_value(&status)?;
        value["running"] = serde_json::Value::Bool(running);
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "agent: {} (pid {}), {} to {}",
            if running { "running" } else { "not running" },
            status.pid,
            if status.connected {
                "connected"
            } else {
                "not connected"
            },
            status.server
        )?;
        writeln!(
            out,
            "files known: {}, pending: {}",
            status.files_known, status.pending
        )?;
        writeln!(
            out,
            "last push: {}, versions shipped: {}, bytes on the wire today: {}",
            status.last_push.as_deref().unwrap_or("never"),
            status.versions_shipped,
            status.wire_bytes_today
        )?;
        if let Some(e) = &status.last_error {
            writeln!(out, "last error: {e}")?;
        }
    }
    Ok(if running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Whether process `pid` is running.
pub fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}
