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
        for f in &files {
            writeln!(
                super::stdout(),
                "{:>5}  {:>12}  {}  {}",
                f.versions,
                f.latest.size,
                rfc3339(f.latest.received_at_ns),
                super::terminal_safe(f.key.as_str(), false)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
