//! `hoover watch`: the agent.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use hoover_client::watch::{self, WatchOptions};
use tokio_util::sync::CancellationToken;

use crate::cli::WatchArgs;
use crate::commands::client_settings;
use crate::commands::serve::stop_signal;
use crate::commands::sync::sync_options;
use crate::config;

pub async fn run(args: WatchArgs) -> Result<ExitCode> {
    let file = config::load(args.client.config.as_deref())?;
    let settings = client_settings(&args.client, &file)?;
    let sync = sync_options(&args.what, &file)?;
    for root in &sync.roots {
        if !root.dir.is_dir() {
            tracing::warn!(root = %root.dir.display(), "root does not exist yet; it is watched once it appears");
        }
    }
    let mut options = WatchOptions::new(
        sync,
        settings.server.clone(),
        settings.identity.clone(),
        settings.known_hosts.clone(),
        settings.state_dir.clone(),
    );
    options.status_file = Some(
        args.status_file
            .clone()
            .unwrap_or_else(|| default_status_file().unwrap_or_default()),
    );
    options.rescan_every = Duration::from_secs(args.rescan_secs.max(1));
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let stop = stop_signal()?;
    tokio::spawn(async move {
        stop.await;
        tracing::info!("stopping after the push in flight");
        token.cancel();
    });
    watch::run(options, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

pub fn default_status_file() -> Result<std::path::PathBuf> {
    Ok(config::dirs()?.data.join("agent.json"))
}

/// The state file of the agent that ran last as this user: `hoover watch`'s
/// (`<data dir>/agent.json`) or `hoover up`'s (`<data dir>/up/agent.json`), whichever was
/// written most recently; `hoover watch`'s path when neither exists.
pub fn find_status_file() -> Result<std::path::PathBuf> {
    let data = config::dirs()?.data;
    let candidates = [data.join("agent.json"), data.join("up").join("agent.json")];
    let newest = candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p.clone());
    Ok(newest.unwrap_or_else(|| candidates[0].clone()))
}
