//! `hoover ls`.

use std::process::ExitCode;

use std::io::Write;

use anyhow::Result;
use serde_json::json;

use crate::cli::LsArgs;
use crate::commands::{client_settings, connect, hex, print_json, rfc3339};
use crate::config;

pub async fn run(args: LsArgs) -> Result<ExitCode> {
    let file = config::load(args.client.config.as_deref())?;
    let settings = client_settings(&args.client, &file)?;
    let mut conn = connect(&settings).await?;
    let files = conn.remote.list(&args.prefix).await;
    conn.close().await;
    let files = files?;
    if args.json {
        let out: Vec<_> = files
            .iter()
            .map(|f| {
                json!({
                    "key": f.key.as_str(),
                    "versions": f.versions,
                    "size": f.latest.size,
                    "blake3": hex(&f.latest.blake3),
                    "updated": rfc3339(f.latest.received_at_ns),
                })
            })
            .collect();
        print_json(&out)?;
    } else {
        let mut out = super::stdout();
        if files.is_empty() {
            eprintln!(
                "hoover: no files{}",
                if args.prefix.is_empty() {
                    " on the server yet".to_string()
                } else {
                    format!(" under {}", super::terminal_safe(&args.prefix, false))
                }
            );
            return Ok(ExitCode::SUCCESS);
        }
        writeln!(
            out,
            "{:>8}  {:>9}  {:<20}  KEY",
            "VERSIONS", "SIZE", "UPDATED (UTC)"
        )?;
        for f in &files {
            let updated = rfc3339(f.latest.received_at_ns);
            writeln!(
                out,
                "{:>8}  {:>9}  {:<20}  {}",
                f.versions,
                super::human_bytes(f.latest.size),
                updated
                    .get(..19)
                    .map(|t| t.replace('T', " "))
                    .unwrap_or(updated),
                super::terminal_safe(f.key.as_str(), false)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
