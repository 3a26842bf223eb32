//! `hoover verify --store DIR`.

use std::process::ExitCode;

use std::io::Write;

use anyhow::{Context, Result};
use hoover_store::Store;
use serde_json::json;

use crate::cli::VerifyArgs;

pub async fn run(args: VerifyArgs) -> Result<ExitCode> {
    let dir = args.store.dir()?;
    let report = tokio::task::spawn_blocking(move || -> Result<_> {
        if !dir.join("FORMAT").exists() {
            anyhow::bail!(
                "{} is not a hoover store (no FORMAT file); give the server's store with --store DIR",
                dir.display()
            );
        }
        // Beside a running server too: no lock, nothing created or cleared.
        let store = Store::open_to_read(&dir)
            .with_context(|| format!("cannot open the store {}", dir.display()))?;
        Ok(store.verify(|_, _, _| {})?)
    })
    .await??;
    let checked = super::Checked(&report);
    if args.json {
        writeln!(
            super::stdout(),
            "{}",
            json!({
                "clean": report.is_clean(),
                "chunks_checked": report.chunks_checked,
                "files_checked": report.files_checked,
                "versions_checked": report.versions_checked,
                "bytes_checked": report.bytes_checked,
                "unreferenced_packs": report.unreferenced_packs,
                "unreferenced_bytes": report.unreferenced_bytes,
                "uncommitted_bytes": report.uncommitted_bytes,
                "problems": checked.problems(),
            })
        )?;
    } else {
        checked.print_problems()?;
        if report.unreferenced_packs > 0 {
            eprintln!(
                "hoover: {} packs ({} bytes) are not named by the version log: batches whose server was stopped mid-commit; nothing refers to them, and the server removes them when it next starts",
                report.unreferenced_packs, report.unreferenced_bytes
            );
        }
        if report.uncommitted_bytes > 0 {
            eprintln!(
                "hoover: {} bytes at the end of packs are past what the version log records: a batch whose server was stopped mid-commit; nothing refers to them, and the server cuts them off when it next starts",
                report.uncommitted_bytes
            );
        }
        eprintln!(
            "hoover: checked {} chunks, {} files, {} versions ({} bytes): {}",
            report.chunks_checked,
            report.files_checked,
            report.versions_checked,
            report.bytes_checked,
            checked.verdict("clean")
        );
    }
    Ok(checked.exit_code())
}
