//! `hoover serve`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use hoover_server::{Server, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::config;

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let file = config::load(args.config.as_deref())?;
    let dirs = config::dirs()?;
    let s = &file.serve;
    let parse = |v: &Option<String>, what: &str| -> Result<Option<std::net::SocketAddr>> {
        v.as_deref()
            .map(|a| {
                a.parse()
                    .with_context(|| format!("bad {what} {a:?} in the config file"))
            })
            .transpose()
    };
    let config = ServerConfig {
        store: config::expand(
            &args
                .store
                .or(s.store.clone())
                .unwrap_or_else(|| dirs.data.join("store")),
        ),
        ssh_listen: args
            .ssh_listen
            .or(parse(&s.ssh_listen, "ssh_listen")?)
            .unwrap_or_else(|| "127.0.0.1:2222".parse().expect("static address")),
        http_listen: args
            .http_listen
            .or(parse(&s.http_listen, "http_listen")?)
            .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("static address")),
        authorized_keys: config::expand(
            &args
                .authorized_keys
                .or(s.authorized_keys.clone())
                .unwrap_or_else(|| dirs.config.join("authorized_keys")),
        ),
        host_key: config::expand(
            &args
                .host_key
                .or(s.host_key.clone())
                .unwrap_or_else(|| dirs.data.join("host_key")),
        ),
        max_connections: args.max_connections,
        index: !args.no_index && s.index.unwrap_or(true),
        redact: !args.no_redact && s.redact.unwrap_or(true),
        http_token: args.http_token.or(s.http_token.clone()),
        login_timeout: std::time::Duration::from_secs(args.login_timeout.max(1)),
        stall_timeout: std::time::Duration::from_secs(args.stall_timeout.max(1)),
        max_batch_chunks: args.max_batch_chunks.max(1),
        max_http_connections: args.max_http_connections.max(2),
        http_header_timeout: std::time::Duration::from_secs(args.http_timeout.max(1)),
        replicate: args.replicate_to.or(s.replicate_to.clone()).map(|url| {
            hoover_server::ReplicateConfig {
                url,
                endpoint: args.s3_endpoint.or(s.s3_endpoint.clone()),
                interval: std::time::Duration::from_secs(args.replicate_every.max(1)),
            }
        }),
    };
    let stop = stop_signal()?;
    let server = Server::bind(&config).await?;
    tracing::info!(
        ssh = %server.ssh_addr(),
        http = %server.http_addr(),
        store = %config.store.display(),
        "hoover serve is listening"
    );
    // Tests and scripts read this line to learn the bound ports.
    eprintln!(
        "hoover: listening ssh={} http={}",
        server.ssh_addr(),
        server.http_addr()
    );
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("shutting down");
        token.cancel();
    });
    server.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM, with the handlers installed when this is called, not when the future is
/// first polled: a signal that arrives between start-up and the first poll must stop the process
/// cleanly, not kill it with the default action (a test that sent SIGTERM right after
/// "listening" saw exactly that).
pub fn stop_signal() -> Result<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(Box::pin(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }))
    }
    #[cfg(not(unix))]
    Ok(Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
    }))
}
