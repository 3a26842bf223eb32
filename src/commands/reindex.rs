//! `hoover reindex --store DIR`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use hoover_index::{Index, IndexOptions};
use hoover_server::indexing::{catch_up, index_dir};
use hoover_store::Store;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::ReindexArgs;

pub async fn run(args: ReindexArgs) -> Result<ExitCode> {
    let dir = args.store.dir()?;
    let json = args.json;
    let options = IndexOptions {
        redact: !args.no_redact,
    };
    let summary = tokio::task::spawn_blocking(move || -> Result<_> {
        if !dir.join("FORMAT").exists() {
            anyhow::bail!(
                "{} is not a hoover store (no FORMAT file); give the server's store with --store DIR",
                dir.display()
            );
        }
        let store = Store::open(&dir)
            .with_context(|| format!("cannot open the store {}", dir.display()))?;
        let index_path = index_dir(&dir);
        // Opening takes the index's writer lock: this fails while a server uses the index.
        if index_path.exists() {
            drop(Index::open(&index_path, options)?);
            std::fs::remove_dir_all(&index_path)
                .with_context(|| format!("cannot remove {}", index_path.display()))?;
        }
        let (index, mut writer, _) = Index::open(&index_path, options)?;
        let bar = if !json && std::io::stderr().is_terminal() {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} indexing [{bar:30}] {pos}/{len} versions eta {eta}",
            )
            .expect("static progress template")
            .progress_chars("=> "),
        );
        let started = Instant::now();
        let bytes = std::cell::Cell::new(0u64);
        let versions = catch_up(
            &store,
            &mut writer,
            |done, total| {
                bar.set_length(total);
                bar.set_position(done);
                std::ops::ControlFlow::Continue(())
            },
            &|d| bytes.set(bytes.get() + d.bytes),
            None,
        )?;
        writer.finish()?;
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        Ok((versions, bytes.get(), secs, index.counters()))
    })
    .await??;
    let (versions, bytes, secs, counters) = summary;
    if args.json {
        writeln!(
            super::stdout(),
            "{}",
            json!({
                "versions": versions,
                "bytes": bytes,
                "seconds": secs,
                "messages": counters.messages,
                "sessions": counters.sessions,
                "malformed_lines": counters.malformed_lines,
            })
        )?;
    } else {
        eprintln!(
            "hoover: indexed {versions} versions ({:.1} MB) in {secs:.1} s: {} messages, {} sessions, {} malformed lines skipped",
            bytes as f64 / 1e6,
            counters.messages,
            counters.sessions,
            counters.malformed_lines
        );
    }
    Ok(ExitCode::SUCCESS)
}
