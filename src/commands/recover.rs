//! `hoover recover --from s3://BUCKET/PREFIX --store DIR`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use hoover_store::Store;
use serde_json::json;

use crate::cli::RecoverArgs;

pub async fn run(args: RecoverArgs) -> Result<ExitCode> {
    let target = hoover_replica::Target::s3(&args.from, args.s3_endpoint.as_deref())
        .map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let started = std::time::Instant::now();
    let json = args.json;
    let recovered = hoover_replica::recover(&target, &args.store, |done, all| {
        if !json && (done == all || done % 100 == 0) {
            eprintln!("hoover: {done} of {all} packs fetched");
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("cannot recover from {}: {e}", args.from))?;
    let dir = recovered.store.clone();
    let (report, counts, newest) = tokio::task::spawn_blocking(move || -> Result<_> {
        let store = Store::open_to_read(&dir)
            .with_context(|| format!("cannot open the recovered store {}", dir.display()))?;
        Ok((
            store.verify(|_, _, _| {})?,
            store.counts()?,
            store.newest_received()?,
        ))
    })
    .await??;
    let taken = super::rfc3339(recovered.snapshot_ns);
    let newest = newest.map(super::rfc3339);
    let checked = super::Checked(&report);
    if json {
        writeln!(
            super::stdout(),
            "{}",
            json!({
                "store": recovered.store,
                "clean": report.is_clean(),
                "snapshot_taken": taken,
                "newest_version": newest,
                "files": counts.files,
                "versions": counts.versions,
                "packs": recovered.packs,
                "pack_bytes": recovered.pack_bytes,
                "seconds": started.elapsed().as_secs_f64(),
                "problems": checked.problems(),
            })
        )?;
    } else {
        checked.print_problems()?;
        eprintln!(
            "hoover: recovered {} files, {} versions ({} packs, {} bytes; the newest version received {}, the copy's log as of {taken}) into {}: {}",
            counts.files,
            counts.versions,
            recovered.packs,
            recovered.pack_bytes,
            newest.as_deref().unwrap_or("never"),
            recovered.store.display(),
            checked.verdict(
                "every chunk checked, clean; start a server on it with `hoover serve --store DIR`"
            )
        );
    }
    Ok(checked.exit_code())
}
