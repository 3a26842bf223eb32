//! `hoover versions KEY`.

use std::process::ExitCode;

use std::io::Write;

use anyhow::{bail, Result};
use hoover_types::Key;
use serde_json::json;

use crate::cli::VersionsArgs;
use crate::commands::{client_settings, connect, hex, rfc3339};
use crate::config;

pub async fn run(args: VersionsArgs) -> Result<ExitCode> {
    let key = Key::new(args.key.clone()).map_err(|e| anyhow::anyhow!("bad key: {e}"))?;
    let file = config::load(args.client.config.as_deref())?;
    let settings = client_settings(&args.client, &file)?;
    let mut conn = connect(&settings).await?;
    let versions = conn.remote.versions(&key).await;
    conn.close().await;
    let versions = versions?;
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
                })
            })
            .collect();
        writeln!(std::io::stdout().lock(), "{}", serde_json::to_string(&out)?)?;
    } else {
        writeln!(
            std::io::stdout().lock(),
            "version  {:>12}  {:<30}  {:<30}  blake3",
            "size",
            "mtime",
            "received"
        )?;
        for v in &versions {
            writeln!(
                std::io::stdout().lock(),
                "{:>7}  {:>12}  {:<30}  {:<30}  {}",
                v.seq,
                v.size,
                rfc3339(v.mtime_ns),
                rfc3339(v.received_at_ns),
                &hex(&v.blake3)[..16]
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
