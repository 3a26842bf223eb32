//! The hoover client: scan roots, push new versions over SSH, list and restore.
//!
//! Entry points: [`connect`] opens an authenticated SSH session and the protocol on it;
//! [`sync::sync`] runs one pass; [`restore`] brings versions back. Progress is reported through
//! the small [`Progress`] trait, so only the binary knows about terminals. This crate must never
//! know about clap or indicatif.

pub mod remote;
pub mod restore;
pub mod scan;
pub mod ssh;
pub mod state;
pub mod sync;
pub mod track;
pub mod watch;

use std::path::Path;

use anyhow::Result;

pub use remote::{Remote, ServerError};
pub use ssh::{ServerAddr, SshSession};

/// Progress of a long operation; the binary draws it, tests ignore it.
pub trait Progress: Send + Sync {
    /// Work is about to start: `items` items of `bytes` bytes in total.
    fn begin(&self, _items: u64, _bytes: u64) {}
    /// One item of `bytes` bytes is done.
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

/// A progress sink that shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// The stream type of a hoover session over SSH.
pub type SshStream = russh::ChannelStream<russh::client::Msg>;

/// An authenticated connection: the SSH session and the protocol session on it.
pub struct Connection {
    pub ssh: SshSession,
    pub remote: Remote<SshStream>,
}

/// Connects to `addr`, checks its host key against `known_hosts`, authenticates with
/// `identity`, and performs the protocol handshake.
pub async fn connect(addr: &ServerAddr, identity: &Path, known_hosts: &Path) -> Result<Connection> {
    let ssh = SshSession::connect(addr, identity, known_hosts).await?;
    let stream = ssh.open_stream().await?;
    let remote = Remote::start(stream).await?;
    Ok(Connection { ssh, remote })
}

/// How long closing a connection may take. After an error the server may be waiting for us
/// to read answers while our last writes wait for it to read: closing must not hang on that.
const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

impl Connection {
    pub async fn close(self) {
        let Connection { ssh, remote } = self;
        let _ = tokio::time::timeout(CLOSE_WITHIN, remote.close()).await;
        let _ = tokio::time::timeout(CLOSE_WITHIN, ssh.close()).await;
    }
}
