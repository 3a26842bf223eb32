//! `hoover restore`: one version to a file or stdout, or a tree to a directory.

use std::process::ExitCode;

use std::io::Write;

use anyhow::{bail, Result};
use hoover_client::restore::{pick, restore_file, restore_stdout, restore_tree, Selector};
use hoover_types::Key;
use serde_json::json;

use crate::cli::RestoreArgs;
use crate::commands::{client_settings, connect, parse_time, print_json, rfc3339};
use crate::config;

pub async fn run(args: RestoreArgs) -> Result<ExitCode> {
    let selector = match (&args.version, &args.at) {
        (Some(n), _) => Selector::Seq(*n),
        (None, Some(t)) => Selector::At(parse_time(t)?),
        (None, None) => Selector::Latest,
    };
    let file = config::load(args.client.config.as_deref())?;
    let settings = client_settings(&args.client, &file)?;
    let mut conn = connect(&settings).await?;
    let result = match (&args.output, &args.to) {
        (Some(out), None) => one(&mut conn, &args, selector, out).await,
        (None, Some(dir)) => {
            if args.version.is_some() {
                bail!("--version picks one file's version; with --to use --at TIME");
            }
            tree(&mut conn, &args, selector, dir).await
        }
        _ => bail!("give -o PATH (one file) or --to DIR (a tree)"),
    };
    conn.close().await;
    result
}

async fn one(
    conn: &mut hoover_client::Connection,
    args: &RestoreArgs,
    selector: Selector,
    out: &std::path::Path,
) -> Result<ExitCode> {
    let key = Key::new(args.key.clone()).map_err(|e| anyhow::anyhow!("bad key: {e}"))?;
    let versions = conn.remote.versions(&key).await?;
    if versions.is_empty() {
        bail!("the server has no file {key}; `hoover ls` lists the keys");
    }
    let Some(v) = pick(&versions, selector) else {
        bail!(
            "{key} has no {selector}; it has versions 1 to {}, the first modified at {}",
            versions.len(),
            rfc3339(versions[0].mtime_ns)
        );
    };
    let seq = v.seq;
    // Like --to: a local file that differs is left alone unless --force says otherwise.
    if out.as_os_str() != "-" && out.exists() {
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(out)?)?;
        if hasher.finalize().as_bytes() == &v.blake3 {
            eprintln!(
                "hoover: {} already holds {key} version {seq}; nothing to do",
                out.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if !args.force {
            bail!(
                "{} exists and differs from {key} version {seq}; add --force to overwrite it, or give another -o",
                out.display()
            );
        }
    }
    let info = if out.as_os_str() == "-" {
        restore_stdout(&mut conn.remote, &key, seq, &mut super::stdout()).await?
    } else {
        restore_file(&mut conn.remote, &key, seq, out).await?
    };
    if args.json {
        writeln!(
            super::stdout(),
            "{}",
            json!({"key": key.as_str(), "version": info.seq, "size": info.size, "output": out.display().to_string()})
        )?;
    } else if out.as_os_str() != "-" {
        eprintln!(
            "hoover: restored {key} version {} (modified {}, {}) to {}",
            info.seq,
            rfc3339(info.mtime_ns),
            super::human_bytes(info.size),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn tree(
    conn: &mut hoover_client::Connection,
    args: &RestoreArgs,
    selector: Selector,
    dir: &std::path::Path,
) -> Result<ExitCode> {
    let report = restore_tree(&mut conn.remote, &args.key, dir, selector, args.force).await?;
    if args.json {
        print_json(&report)?;
    } else {
        eprintln!(
            "hoover: {} restored, {} already identical, {} with no version at that time, {} left alone, {} skipped",
            report.restored.len(),
            report.unchanged.len(),
            report.not_yet.len(),
            report.kept_local.len(),
            report.skipped.len(),
        );
    }
    for p in &report.kept_local {
        eprintln!(
            "hoover: warning: {} differs from the server's version; left alone (use --force to overwrite)",
            super::terminal_safe(p, false)
        );
    }
    for s in &report.skipped {
        eprintln!(
            "hoover: warning: skipped {}: {}",
            super::terminal_safe(&s.key, false),
            super::terminal_safe(&s.reason, false)
        );
    }
    if !report.kept_local.is_empty() || !report.skipped.is_empty() {
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
