//! `hoover sync`: one pass over the roots.

use std::process::ExitCode;

use anyhow::Result;
use hoover_client::scan::Root;
use hoover_client::state::ClientState;
use hoover_client::sync::{sync, SyncOptions};

use crate::cli::{RootArgs, SyncArgs};
use crate::commands::{client_settings, connect, print_json};
use crate::config::{self, ConfigFile};
use crate::progress::Bar;

/// Resolves what to sync from flags, then the config file, then the defaults.
pub fn sync_options(what: &RootArgs, file: &ConfigFile) -> Result<SyncOptions> {
    let (source, roots, includes) = (&what.source, &what.roots, &what.includes);
    let source = source
        .clone()
        .or(file.source.clone())
        .unwrap_or_else(config::host_name);
    let roots = if !roots.is_empty() {
        roots.to_vec()
    } else if let Some(r) = &file.roots {
        r.clone()
    } else {
        vec![format!(
            "claude={}",
            config::claude_projects_dir()?.display()
        )]
    };
    let roots = roots
        .iter()
        .map(|r| {
            let mut root = Root::parse(r)?;
            root.dir = config::expand(&root.dir);
            Ok(root)
        })
        .collect::<Result<Vec<_>>>()?;
    let includes = if !includes.is_empty() {
        includes.to_vec()
    } else {
        file.include
            .clone()
            .unwrap_or_else(|| vec!["**/*.jsonl".into()])
    };
    if source.contains('/') {
        anyhow::bail!(
            "bad --source {source:?}: a source is one name without '/', such as the laptop's name"
        );
    }
    Ok(SyncOptions {
        source: hoover_types::Key::new(source.clone())
            .map_err(|e| anyhow::anyhow!("bad --source {source:?}: {e}"))?
            .to_string(),
        roots,
        includes,
    })
}

pub async fn run(args: SyncArgs) -> Result<ExitCode> {
    let file = config::load(args.client.config.as_deref())?;
    let settings = client_settings(&args.client, &file)?;
    let options = sync_options(&args.what, &file)?;
    let mut conn = connect(&settings).await?;
    // What was sent is remembered per server store, so a new or replaced store gets everything.
    let state_path = settings
        .state_dir
        .join(format!("{}.db", conn.remote.store_id));
    let state = ClientState::open(&state_path).await?;
    let bar = Bar::new(!args.json);
    let report = sync(&mut conn.remote, &state, &options, &bar).await;
    conn.close().await;
    let report = report.map_err(|e| {
        if e.chain().any(|c| c.is::<hoover_proto::ProtoError>()) {
            e.context("the sync stopped part-way; what the server confirmed is kept and nothing half-done is recorded there: run it again, and it sends only what is missing")
        } else {
            e
        }
    })?;
    for w in &report.warnings {
        eprintln!("hoover: warning: {w}");
    }
    if args.json {
        print_json(&report)?;
    } else {
        use super::{count, human_bytes};
        eprintln!(
            "hoover: {} scanned, {} changed, {}, {} recorded, {} sent ({} raw, {} compressed), {} on the wire",
            count(report.files_scanned, "file", "files"),
            report.files_changed,
            count(report.versions_new, "new version", "new versions"),
            count(report.files_deleted, "deletion", "deletions"),
            count(report.chunks_sent, "chunk", "chunks"),
            human_bytes(report.bytes_new),
            human_bytes(report.bytes_compressed),
            human_bytes(report.wire_bytes_sent + report.wire_bytes_received)
        );
    }
    Ok(if report.files_failed > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
