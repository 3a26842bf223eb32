//! The hoover server: an SSH endpoint in front of the store, and an HTTP listener.
//!
//! Main entry: [`Server::bind`] then [`Server::run`] with a cancellation token. Listeners are
//! bound first so tests can use port 0. Each SSH connection is capped by a semaphore, logged,
//! and never fatal to the accept loop. This crate must never know about clap or the terminal.

pub mod authkeys;
mod http;
pub mod indexing;
pub mod live;
pub mod session;
pub mod ssh;
mod transcript;
mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hoover_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use authkeys::read_authorized_keys;
pub use ssh::{load_or_create_host_key, write_private_key};

/// Where the server keeps its state and listens.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub store: PathBuf,
    pub ssh_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub authorized_keys: PathBuf,
    pub host_key: PathBuf,
    pub max_connections: usize,
    /// Keep a search index (in `<store>/index`) and answer searches.
    pub index: bool,
    /// Redact well-known secret shapes from the index and from what the server shows.
    pub redact: bool,
    /// The web page's token. Required when `http_listen` is not a loopback address.
    pub http_token: Option<String>,
    /// How long a new connection has to authenticate and start the protocol.
    pub login_timeout: Duration,
    /// How long a connection may stall mid-frame, mid-batch or on a reply ([`session::Limits`]).
    pub stall_timeout: Duration,
    /// Most chunks (and chunk references) one uncommitted batch may hold
    /// ([`hoover_store::MAX_BATCH_ITEMS`] by default).
    pub max_batch_chunks: usize,
    /// Most HTTP connections open at once; half of them at most may hold a live stream.
    pub max_http_connections: usize,
    /// How long an HTTP client has to send a request's headers (idle keep-alive included).
    pub http_header_timeout: Duration,
    /// Keep an off-site copy of the store there.
    pub replicate: Option<ReplicateConfig>,
}

/// Where and how often the store is copied off-site.
#[derive(Clone, Debug)]
pub struct ReplicateConfig {
    /// `s3://BUCKET/PREFIX`.
    pub url: String,
    /// The S3 endpoint (else `AWS_ENDPOINT_URL`, else AWS).
    pub endpoint: Option<String>,
    /// The longest the copy's snapshot of the version log may trail a commit.
    pub interval: Duration,
}

impl ServerConfig {
    /// The default time-outs: 30 s to log in, 120 s for a stall.
    pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
    pub const STALL_TIMEOUT: Duration = Duration::from_secs(120);
    /// The default HTTP bounds: 256 connections, 10 s to send a request's headers.
    pub const MAX_HTTP_CONNECTIONS: usize = 256;
    pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
}

/// Connection counts, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct ConnCounters {
    pub open: AtomicU64,
    /// Refused because `max_connections` were open.
    pub refused: AtomicU64,
    /// Closed for missing the login deadline or stalling.
    pub timed_out: AtomicU64,
    /// Refused before login because this peer address had too many connections logging in.
    pub refused_preauth: AtomicU64,
    /// HTTP connections open now, and refused because `max_http_connections` were open.
    pub http_open: AtomicU64,
    pub http_refused: AtomicU64,
    /// Live streams (`/api/live`) open now.
    pub live_streams: AtomicU64,
}

/// Refuses a web token that is easy to guess: shorter than 16 characters, holding whitespace,
/// or with less than 56 bits by a count of its characters (`aaaa…`, `12341234…`).
pub fn check_http_token(token: &str) -> Result<()> {
    const HINT: &str = "make one with `openssl rand -hex 16`";
    if token.chars().any(char::is_whitespace) {
        anyhow::bail!("the HTTP token holds whitespace (a stray newline from a file?); {HINT}");
    }
    if token.chars().count() < 16 {
        anyhow::bail!("the HTTP token is too short: use at least 16 characters; {HINT}");
    }
    let mut counts = HashMap::new();
    for c in token.chars() {
        *counts.entry(c).or_insert(0u32) += 1;
    }
    let n = token.chars().count() as f64;
    let bits: f64 = counts
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2() * n
        })
        .sum();
    if bits < 56.0 {
        anyhow::bail!(
            "the HTTP token is too easy to guess (about {bits:.0} bits; at least 56 are needed); {HINT}"
        );
    }
    Ok(())
}

/// A server with its listeners bound and its store open.
pub struct Server {
    ssh: TcpListener,
    http: TcpListener,
    settings: Arc<ssh::SshSettings>,
    live: live::LiveFeed,
    http_token: Option<Arc<str>>,
    redact: bool,
    max_connections: usize,
    login_timeout: Duration,
    http_bounds: http::Bounds,
    conns: Arc<ConnCounters>,
    copy: Option<(hoover_replica::Target, Duration)>,
}

impl Server {
    /// Opens the store, loads (or creates) the host key, and binds both listeners.
    pub async fn bind(config: &ServerConfig) -> Result<Server> {
        if !config.http_listen.ip().is_loopback() && config.http_token.is_none() {
            anyhow::bail!(
                "the web page would listen on {}, beyond this machine, without a token: set --http-token (or http_token under [serve]), or listen on 127.0.0.1",
                config.http_listen
            );
        }
        if let Some(token) = config.http_token.as_deref() {
            check_http_token(token)?;
        }
        if !config.authorized_keys.exists() {
            anyhow::bail!(
                "the authorized keys file {} does not exist; add the client's public key (e.g. ~/.ssh/id_ed25519.pub) to it",
                config.authorized_keys.display()
            );
        }
        let authorized_keys = Arc::new(ssh::KeyCache::new(config.authorized_keys.clone()));
        let keys = authorized_keys.load()?;
        if keys.keys.is_empty() {
            tracing::warn!(
                "{} has no usable key; no client can log in until one is added",
                config.authorized_keys.display()
            );
        }
        // A copy's address that cannot be used stops the start; one that cannot be reached
        // (down, wrong credentials, no bucket) is reported and retried while ingest goes on.
        let copy = match &config.replicate {
            Some(r) => Some((
                hoover_replica::Target::s3(&r.url, r.endpoint.as_deref())
                    .map_err(|e| anyhow::anyhow!("--replicate-to: {e}"))?,
                r.interval,
            )),
            None => None,
        };
        let store_dir = config.store.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&store_dir))
            .await?
            .with_context(|| format!("cannot open the store at {}", config.store.display()))?;
        let host_key = ssh::load_or_create_host_key(&config.host_key)?;
        let ssh = TcpListener::bind(config.ssh_listen)
            .await
            .with_context(|| format!("cannot listen for SSH on {}", config.ssh_listen))?;
        let http = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
        let live_feed = live::LiveFeed::new();
        let options = hoover_index::IndexOptions {
            redact: config.redact,
        };
        let conns = Arc::new(ConnCounters::default());
        let indexer = if config.index {
            // The indexer reads the store through a connection of its own: at its lower
            // priority it must never hold a lock that ingest waits for.
            let root = config.store.clone();
            let store_to_read = tokio::task::spawn_blocking(move || Store::open_to_read(&root))
                .await?
                .context("cannot open the store for the indexer")?;
            let dir = indexing::index_dir(&config.store);
            let writer = store.clone();
            Some(
                tokio::task::spawn_blocking(move || {
                    indexing::Indexer::start(&writer, store_to_read, dir, options)
                })
                .await?,
            )
        } else {
            None
        };
        // The live feed reads new versions through a connection of its own too.
        let root = config.store.clone();
        let to_read = tokio::task::spawn_blocking(move || Store::open_to_read(&root))
            .await?
            .context("cannot open the store for the live feed")?;
        live::follow(&store, to_read, live_feed.clone(), options);
        Ok(Server {
            ssh,
            http,
            settings: Arc::new(ssh::SshSettings {
                host_key,
                authorized_keys,
                store,
                indexer,
                limits: session::Limits {
                    stall: config.stall_timeout,
                    batch_items: config.max_batch_chunks,
                },
                conns: conns.clone(),
            }),
            live: live_feed,
            http_token: config.http_token.as_deref().map(Arc::from),
            redact: config.redact,
            max_connections: config.max_connections,
            login_timeout: config.login_timeout,
            http_bounds: http::Bounds {
                connections: config.max_http_connections.max(2),
                header_timeout: config.http_header_timeout,
            },
            conns,
            copy,
        })
    }

    pub fn ssh_addr(&self) -> SocketAddr {
        self.ssh
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn store(&self) -> &Store {
        &self.settings.store
    }

    /// Serves until `shutdown` is cancelled, then drains connections for up to five seconds.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let config = ssh::russh_config(self.settings.host_key.clone());
        // The copy stops after the SSH and HTTP sides, with a last snapshot of the log.
        let copy_stop = CancellationToken::new();
        let copy = self.copy.take().map(|(target, interval)| {
            tracing::info!(copy = %target.url(), "keeping an off-site copy of the store");
            hoover_replica::Replicator::start(
                self.settings.store.clone(),
                target,
                interval,
                copy_stop.clone(),
            )
        });
        let app = http::router(
            web::Web {
                store: self.settings.store.clone(),
                indexer: self.settings.indexer.clone(),
                live: self.live.clone(),
                redact: self.redact,
                conns: self.conns.clone(),
                max_live_streams: self.http_bounds.connections / 2,
                copy: copy.as_ref().map(|(c, _)| c.clone()),
                diffs: Arc::new(Semaphore::new(web::DIFFS_AT_ONCE)),
            },
            self.http_token.clone(),
        );
        let http = tokio::spawn(http::serve(
            self.http,
            app,
            self.http_bounds,
            self.conns.clone(),
            shutdown.clone(),
        ));
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let preauth = ssh::PreAuth::default();
        let mut tasks = tokio::task::JoinSet::new();
        let refused = |addr: SocketAddr| {
            self.conns.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%addr, "refused a connection: {} connections are open (--max-connections)", self.max_connections);
        };
        while let Some((stream, addr, permit)) =
            accept_within(&self.ssh, &limit, &shutdown, refused).await
        {
            let Some(slot) = preauth.take(addr.ip()) else {
                self.conns.refused_preauth.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%addr, "refused a connection: {} from this address are already logging in", ssh::MAX_PREAUTH_PER_ADDRESS);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handler = ssh::Connection {
                preauth: Some(slot),
                active_channels: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
                settings: self.settings.clone(),
                peer_addr: addr.to_string(),
                peer_ip: addr.ip(),
                peer: None,
                channels: HashMap::new(),
                started: Arc::new(AtomicBool::new(false)),
            };
            let (config, token, login) = (config.clone(), shutdown.clone(), self.login_timeout);
            tasks.spawn(async move {
                let _permit = permit;
                let conns = handler.settings.conns.clone();
                conns.open.fetch_add(1, Ordering::Relaxed);
                serve_ssh(config, stream, handler, addr, token, login).await;
                conns.open.fetch_sub(1, Ordering::Relaxed);
            });
            while tasks.try_join_next().is_some() {}
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        // The HTTP side bounds its own shutdown (`http::serve`).
        let _ = http.await;
        if let Some(indexer) = self.settings.indexer.clone() {
            let _ = tokio::task::spawn_blocking(move || indexer.stop()).await;
        }
        if let Some((_, task)) = copy {
            copy_stop.cancel();
            if tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .is_err()
            {
                tracing::warn!("stopped without a last snapshot in the off-site copy (it took over 30 s); the copy is as of the one before");
            }
        }
        Ok(())
    }
}

/// The next connection on `listener` that fits under `limit`, with its permit; `None` once
/// `shutdown` is cancelled. A connection over the limit is closed at once and reported to
/// `refused`; a failing accept (out of file descriptors, most likely) is retried after 50 ms
/// rather than spun on. SSH and HTTP both accept through this.
pub(crate) async fn accept_within(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
    shutdown: &CancellationToken,
    refused: impl Fn(SocketAddr),
) -> Option<(
    tokio::net::TcpStream,
    SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
)> {
    loop {
        let (stream, addr) = tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match limit.clone().try_acquire_owned() {
            Ok(permit) => return Some((stream, addr, permit)),
            Err(_) => refused(addr),
        }
    }
}

/// Runs one SSH connection until it ends, the server shuts down, or it misses the login
/// deadline (authenticated, with the protocol started on a channel, within `login`).
async fn serve_ssh(
    config: Arc<russh::server::Config>,
    stream: tokio::net::TcpStream,
    handler: ssh::Connection,
    addr: SocketAddr,
    token: CancellationToken,
    login: Duration,
) {
    let (started, conns) = (handler.started.clone(), handler.settings.conns.clone());
    let deadline = tokio::time::Instant::now() + login;
    let late = || {
        conns.timed_out.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%addr, "closed a connection that did not log in within {} s", login.as_secs());
    };
    let running = tokio::select! {
        r = russh::server::run_stream(config, stream, handler) => match r {
            Ok(running) => running,
            Err(e) => return tracing::debug!(%addr, "ssh handshake failed: {e:#}"),
        },
        _ = tokio::time::sleep_until(deadline) => return late(),
        _ = token.cancelled() => return,
    };
    let handle = running.handle();
    let disconnect = |why: &str| {
        let why = why.to_string();
        let handle = handle.clone();
        async move {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, why, "en".into())
                .await;
        }
    };
    tokio::pin!(running);
    let login_due = tokio::time::sleep_until(deadline);
    tokio::pin!(login_due);
    let mut logging_in = true;
    loop {
        tokio::select! {
            r = &mut running => {
                if let Err(e) = r {
                    tracing::debug!(%addr, "ssh session ended: {e:#}");
                }
                return;
            }
            _ = &mut login_due, if logging_in => {
                if started.load(Ordering::SeqCst) {
                    logging_in = false;
                } else {
                    late();
                    disconnect("no login in time").await;
                    return;
                }
            }
            _ = token.cancelled() => {
                disconnect("server shutting down").await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod token_tests {
    #[test]
    fn weak_tokens_are_refused() {
        for weak in [
            "short",
            "                    ",
            "0123456789abcdef0123\n",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "1234123412341234",
            "abababababababababababababababab",
        ] {
            assert!(super::check_http_token(weak).is_err(), "{weak:?}");
        }
        for strong in ["0123456789abcdef0123", "9f86d081884c7d659a2feaa0c55ad015"] {
            super::check_http_token(strong).unwrap();
        }
    }
}
