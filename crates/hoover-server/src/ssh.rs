//! The SSH endpoint: public-key auth against an OpenSSH authorized_keys file, and the `hoover`
//! exec command or subsystem on a session channel, handed to the protocol engine as a stream.
//!
//! Only public-key authentication is offered; password, keyboard-interactive and "none" are
//! refused. The authorized_keys file is re-read on every attempt, so edits apply at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hoover_store::Store;
use russh::keys::ssh_key::{rand_core::OsRng, LineEnding, PublicKey};
use russh::keys::{Algorithm, PrivateKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};

use crate::authkeys::{read_checked, AuthorizedKey, KeyFile};
use crate::session::{serve_connection, Peer};

/// Loads the host key, creating an ed25519 key (mode 0600) when the file is missing.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None)
            .with_context(|| format!("cannot read the host key {}", path.display()));
    }
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .context("cannot generate an ed25519 host key")?;
    write_private_key(&key, path)?;
    tracing::info!(path = %path.display(), "created a new host key");
    Ok(key)
}

/// Writes an OpenSSH private key file readable only by its owner.
pub fn write_private_key(key: &PrivateKey, path: &Path) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the private key")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create the key file {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The authorized_keys file, read on every login attempt (so edits apply at once), and parsed
/// again, with each refused line logged once, whenever its text changes.
pub struct KeyCache {
    path: PathBuf,
    loaded: Mutex<Option<(String, Arc<KeyFile>)>>,
}

impl KeyCache {
    pub fn new(path: PathBuf) -> KeyCache {
        KeyCache {
            path,
            loaded: Mutex::new(None),
        }
    }

    /// The keys as the file holds them now. An error (unreadable, or writable by others)
    /// refuses every key.
    pub fn load(&self) -> Result<Arc<KeyFile>> {
        let text = read_checked(&self.path)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, file)) = loaded.as_ref() {
            if *seen == text {
                return Ok(file.clone());
            }
        }
        let file = Arc::new(crate::authkeys::parse(&text));
        for r in &file.refused {
            tracing::warn!(
                "{}:{}: refused this line: {}",
                self.path.display(),
                r.line,
                r.why
            );
        }
        *loaded = Some((text, file.clone()));
        Ok(file)
    }
}

/// The SSH server settings.
#[derive(Clone)]
pub struct SshSettings {
    pub host_key: PrivateKey,
    pub authorized_keys: Arc<KeyCache>,
    pub store: Store,
    pub indexer: Option<crate::indexing::Indexer>,
    pub limits: crate::session::Limits,
    pub conns: Arc<crate::ConnCounters>,
}

/// The algorithms the server accepts: russh's defaults without SHA-1 (no `ssh-rsa` signatures,
/// no `hmac-sha1`) and without SSH-level compression (chunks are already zstd-compressed).
/// `docs/protocol.md` lists them.
fn preferred() -> russh::Preferred {
    use std::borrow::Cow;
    let defaults = russh::Preferred::DEFAULT;
    russh::Preferred {
        key: Cow::Owned(
            defaults
                .key
                .iter()
                .filter(|a| !matches!(a, Algorithm::Rsa { hash: None }))
                .cloned()
                .collect(),
        ),
        mac: Cow::Owned(
            defaults
                .mac
                .iter()
                .filter(|m| !m.as_ref().contains("sha1"))
                .cloned()
                .collect(),
        ),
        compression: Cow::Borrowed(&[russh::compression::NONE]),
        ..defaults
    }
}

pub(crate) fn russh_config(host_key: PrivateKey) -> Arc<russh::server::Config> {
    Arc::new(russh::server::Config {
        preferred: preferred(),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        keys: vec![host_key],
        inactivity_timeout: Some(Duration::from_secs(3600)),
        keepalive_interval: Some(Duration::from_secs(30)),
        window_size: 16 * 1024 * 1024,
        channel_buffer_size: 256,
        nodelay: true,
        ..Default::default()
    })
}

/// One SSH connection's handler.
pub(crate) struct Connection {
    pub(crate) settings: Arc<SshSettings>,
    pub(crate) peer_addr: String,
    pub(crate) peer_ip: IpAddr,
    pub(crate) peer: Option<Peer>,
    pub(crate) channels: HashMap<ChannelId, Channel<Msg>>,
    /// Set when the protocol starts on a channel: the login deadline no longer applies.
    pub(crate) started: Arc<std::sync::atomic::AtomicBool>,
    /// This connection's place among its address's connections that have not logged in;
    /// given back at login or when the connection ends.
    pub(crate) preauth: Option<PreAuthSlot>,
    /// Channels running hoover's protocol on this connection now.
    pub(crate) active_channels: Arc<std::sync::atomic::AtomicUsize>,
}

/// The most connections one peer address may have open before logging in (as sshd's
/// MaxStartups): a scanner or a flood from one address cannot take every slot.
pub const MAX_PREAUTH_PER_ADDRESS: usize = 8;
/// The most channels one connection may hold at once (each runs an ingest thread with its own
/// batch): hoover's client uses one.
pub const MAX_CHANNELS_PER_CONNECTION: usize = 4;

/// Connections not yet logged in, per peer address.
#[derive(Clone, Default)]
pub(crate) struct PreAuth(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One place in [`PreAuth`]'s count.
pub(crate) struct PreAuthSlot {
    table: PreAuth,
    ip: IpAddr,
}

impl PreAuth {
    /// A place for a new connection from `ip`, unless it has too many logging in already.
    pub(crate) fn take(&self, ip: IpAddr) -> Option<PreAuthSlot> {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = table.entry(ip).or_insert(0);
        if *n >= MAX_PREAUTH_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(PreAuthSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for PreAuthSlot {
    fn drop(&mut self) {
        let mut table = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = table.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

impl Connection {
    fn start(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), anyhow::Error> {
        let (Some(peer), Some(ch)) = (self.peer.clone(), self.channels.remove(&channel)) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        self.started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let active = self.active_channels.clone();
        active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let store = self.settings.store.clone();
        let indexer = self.settings.indexer.clone();
        let (limits, conns) = (self.settings.limits, self.settings.conns.clone());
        let handle = session.handle();
        tokio::spawn(async move {
            let name = peer.name.clone();
            let result = serve_connection(ch.into_stream(), store, indexer, peer, limits).await;
            active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            let code = match result {
                Ok(stats) => {
                    tracing::debug!(peer = %name, ?stats, "connection done");
                    0
                }
                Err(e @ hoover_proto::ProtoError::TimedOut(_)) => {
                    // The whole SSH connection goes, so it frees its slot.
                    conns
                        .timed_out
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(peer = %name, "closed a stalled connection: {e}");
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            format!("stalled: {e}"),
                            "en".into(),
                        )
                        .await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(peer = %name, "connection ended: {e}");
                    1
                }
            };
            let _ = handle.exit_status_request(channel, code).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}

impl russh::server::Handler for Connection {
    type Error = anyhow::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(reject())
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        tracing::warn!(peer = %self.peer_addr, user, "refused a password attempt");
        Ok(reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.authorized(key) {
            Some(_) => Auth::Accept,
            None => {
                tracing::warn!(peer = %self.peer_addr, user, fingerprint = %key.fingerprint(Default::default()), "refused a key not in authorized_keys");
                reject()
            }
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        match self.authorized(key) {
            Some(found) => {
                let fingerprint = key.fingerprint(Default::default());
                tracing::info!(peer = %self.peer_addr, user, %fingerprint, comment = %found.comment, "authenticated");
                self.preauth = None;
                self.peer = Some(Peer {
                    name: format!("{user}@{} ({fingerprint})", self.peer_addr),
                    access: found.access,
                    sources: found.sources.clone(),
                });
                Ok(Auth::Accept)
            }
            None => {
                tracing::warn!(peer = %self.peer_addr, user, fingerprint = %key.fingerprint(Default::default()), "refused a key not in authorized_keys");
                Ok(reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if self.peer.is_none() {
            return Ok(false);
        }
        let active = self
            .active_channels
            .load(std::sync::atomic::Ordering::SeqCst);
        if self.channels.len() + active >= MAX_CHANNELS_PER_CONNECTION {
            tracing::warn!(peer = %self.peer_addr, "refused a channel: {MAX_CHANNELS_PER_CONNECTION} are open on this connection");
            return Ok(false);
        }
        self.channels.insert(channel.id(), channel);
        Ok(true)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data);
        if command.trim() == "hoover" || command.trim() == "hoover serve --stdio" {
            self.start(channel, session)
        } else {
            tracing::warn!(peer = %self.peer_addr, %command, "refused an exec request");
            session.channel_failure(channel)?;
            Ok(())
        }
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "hoover" {
            self.start(channel, session)
        } else {
            session.channel_failure(channel)?;
            Ok(())
        }
    }
}

impl Connection {
    /// The entry for `key`, if the file has a usable one and this peer's address may use it.
    fn authorized(&self, key: &PublicKey) -> Option<AuthorizedKey> {
        let file = match self.settings.authorized_keys.load() {
            Ok(file) => file,
            Err(e) => {
                tracing::error!("{e:#}");
                return None;
            }
        };
        let found = file
            .keys
            .iter()
            .find(|k| k.key.key_data() == key.key_data())?;
        if !found.allows_address(self.peer_ip) {
            tracing::warn!(
                peer = %self.peer_addr,
                line = found.line,
                "refused a key: the peer address does not match its from= patterns"
            );
            return None;
        }
        Some(found.clone())
    }
}

fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
        partial_success: false,
    }
}
