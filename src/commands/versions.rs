//! `hoover versions KEY`.

use std::process::ExitCode;

use std::io::Write;

use anyhow::{bail, Result};
use hoover_types::Key;
use serde_json::json;

use crate::cli::VersionsArgs;
use crate::commands::{client_settings, connect, hex, print_json, rfc3339};
use crate::config;

pub async fn run(args: VersionsArgs) -> Result<ExitCode> {
    let key = Key::new(args.key.clone()).map_err(|e| anyhow::anyhow!("bad key: {e}"))?;
    let file = config::load(args.client.config.as_deref())?;
    let settings = client_settings(&args.client, &file)?;
    let mut conn = connect(&settings).await?;
    let history = conn.remote.history(&key).await;
    conn.close().await;
    let (versions, deletions) = history?;
    let deleted_after = |seq: u64| {
        deletions
            .iter()
            .find(|d| d.after_seq == seq)
            .map(|d| rfc3339(d.at_ns))
    };
    if versions.is_empty() {
        bail!("the server has no file {key}; `hoover ls` lists the keys");
    }
    if args.json {
        let out: Vec<_> = versions
            .iter()
            .map(|v| {
                json!({
                    "version": v.seq,
                    "size": v.size,
                    "blake3": hex(&v.blake3),
                    "mtime": rfc3339(v.mtime_ns),
                    "received_at": rfc3339(v.received_at_ns),
                    "deleted_at": deleted_after(v.seq),
                })
            })
            .collect();
        print_json(&out)?;
    } else {
        writeln!(
            super::stdout(),
            "version  {:>12}  {:<30}  {:<30}  blake3",
            "size",
            "mtime",
            "received"
        )?;
        for v in &versions {
            writeln!(
                super::stdout(),
                "{:>7}  {:>12}  {:<30}  {:<30}  {}",
                v.seq,
                v.size,
                rfc3339(v.mtime_ns),
                rfc3339(v.received_at_ns),
                &hex(&v.blake3)[..16]
            )?;
            if let Some(at) = deleted_after(v.seq) {
                writeln!(super::stdout(), "         deleted on the source at {at}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
