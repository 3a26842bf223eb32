//! The SSH transport: connect, check the host key like OpenSSH's `accept-new`, authenticate
//! with a private key file, and open the `hoover` command as a byte stream.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};

/// See `channel_buffer_size` in [`SshSession::connect`]: eight times a batch's files.
const CHANNEL_BUFFER_MESSAGES: usize = 4096;

/// `[USER@]HOST[:PORT]`, port 2222 by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    pub user: String,
    pub host: String,
    pub port: u16,
}

/// The port `hoover serve` listens on by default.
pub const DEFAULT_PORT: u16 = 2222;

impl ServerAddr {
    pub fn parse(s: &str) -> Result<ServerAddr> {
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) => (u.to_string(), r),
            None => (default_user(), s),
        };
        let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
            let (host, after) = stripped
                .split_once(']')
                .with_context(|| format!("bad server address {s:?}: missing ']'"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().with_context(|| format!("bad port in {s:?}"))?,
                None => DEFAULT_PORT,
            };
            (host.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (
                    h.to_string(),
                    p.parse().with_context(|| format!("bad port in {s:?}"))?,
                ),
                _ => (rest.to_string(), DEFAULT_PORT),
            }
        };
        if host.is_empty() {
            bail!("bad server address {s:?}: no host; use [USER@]HOST[:PORT]");
        }
        Ok(ServerAddr { user, host, port })
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

fn default_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "hoover".into())
}

struct HostKeyCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    problem: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKey) -> Result<bool, Self::Error> {
        let verdict = check_host_key(&self.host, self.port, key, &self.known_hosts);
        match verdict {
            Ok(()) => Ok(true),
            Err(message) => {
                *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
                Ok(false)
            }
        }
    }
}

/// `accept-new`: a host seen for the first time is recorded; a changed key is refused.
fn check_host_key(
    host: &str,
    port: u16,
    key: &PublicKey,
    known_hosts: &Path,
) -> Result<(), String> {
    let fingerprint = key.fingerprint(Default::default());
    if known_hosts.exists() {
        match russh::keys::check_known_hosts_path(host, port, key, known_hosts) {
            Ok(true) => return Ok(()),
            Ok(false) => {
                // russh reports a changed key only within one key type: a server that now
                // shows a key of another type (ECDSA where ed25519 was recorded) is just as
                // much a stranger, and is refused the same way.
                let recorded = russh::keys::known_hosts::known_host_keys_path(
                    host,
                    port,
                    known_hosts,
                )
                .map_err(|e| format!("cannot read {}: {e}", known_hosts.display()))?;
                if let Some((line, old)) = recorded_other(&recorded, key) {
                    return Err(format!(
                        "the host key of {host}:{port} has CHANGED (now {} {fingerprint}, recorded {} on line {line}); refusing to connect. \
                         If the server was reinstalled on purpose, delete line {line} of {} and try again",
                        key.algorithm(),
                        old.algorithm(),
                        known_hosts.display()
                    ));
                }
            }
            Err(russh::keys::Error::KeyChanged { line }) => {
                return Err(format!(
                    "the host key of {host}:{port} has CHANGED (now {fingerprint}); refusing to connect. \
                     If the server was reinstalled on purpose, delete line {line} of {} and try again",
                    known_hosts.display()
                ))
            }
            Err(e) => return Err(format!("cannot read {}: {e}", known_hosts.display())),
        }
    }
    russh::keys::known_hosts::learn_known_hosts_path(host, port, key, known_hosts).map_err(
        |e| {
            format!(
                "cannot record the host key in {}: {e}",
                known_hosts.display()
            )
        },
    )?;
    tracing::info!(%host, port, %fingerprint, known_hosts = %known_hosts.display(), "recorded a new host key");
    Ok(())
}

/// The first key recorded for a host that is not `key`, when none of them is `key`. A host
/// that russh found no entry for can have one by the time the entries are read: another
/// hoover (the agent and a command run beside it, both meeting the server for the first
/// time) recorded the same key meanwhile, which is no change.
fn recorded_other<'a>(
    recorded: &'a [(usize, PublicKey)],
    key: &PublicKey,
) -> Option<&'a (usize, PublicKey)> {
    if recorded.iter().any(|(_, old)| old == key) {
        return None;
    }
    recorded.first()
}

/// An authenticated SSH connection to a hoover server.
pub struct SshSession {
    handle: client::Handle<HostKeyCheck>,
}

impl SshSession {
    /// Connects, checks the host key and authenticates with `identity`.
    pub async fn connect(
        addr: &ServerAddr,
        identity: &Path,
        known_hosts: &Path,
    ) -> Result<SshSession> {
        let key = russh::keys::load_secret_key(identity, None).with_context(|| {
            format!(
                "cannot load the identity {} (hoover needs an unencrypted OpenSSH private key; pass another with --identity)",
                identity.display()
            )
        })?;
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 4,
            window_size: 16 * 1024 * 1024,
            // Messages received and not yet read: past this, russh stops reading the socket,
            // and with it sending ours. `sync` writes a batch's chunks before it reads the
            // answers to the commit before (up to one per file of a batch, plus the commit's,
            // each a message when the server flushes each), so this must hold them all.
            channel_buffer_size: CHANNEL_BUFFER_MESSAGES,
            nodelay: true,
            ..Default::default()
        });
        let problem = Arc::new(Mutex::new(None));
        let handler = HostKeyCheck {
            host: addr.host.clone(),
            port: addr.port,
            known_hosts: known_hosts.to_path_buf(),
            problem: problem.clone(),
        };
        let connect = client::connect(config, (addr.host.as_str(), addr.port), handler);
        let mut handle = match tokio::time::timeout(Duration::from_secs(20), connect).await {
            Err(_) => bail!("timed out connecting to {addr}; is `hoover serve` running there?"),
            Ok(Err(e)) => {
                if let Some(message) = problem.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    bail!(message);
                }
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot connect to {addr}; is `hoover serve` running there?"
                )));
            }
            Ok(Ok(h)) => h,
        };
        let hash = handle.best_supported_rsa_hash().await?.flatten();
        let auth = handle
            .authenticate_publickey(
                addr.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .with_context(|| format!("authentication with {addr} failed"))?;
        if !auth.success() {
            bail!(
                "{addr} refused the key {}: add its .pub line to the server's authorized_keys file",
                identity.display()
            );
        }
        Ok(SshSession { handle })
    }

    /// Opens the `hoover` command on a new channel, as a byte stream.
    pub async fn open_stream(&self) -> Result<russh::ChannelStream<client::Msg>> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, "hoover").await?;
        Ok(channel.into_stream())
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::rand_core::OsRng;
    use russh::keys::{Algorithm, EcdsaCurve, PrivateKey};

    fn public(algorithm: Algorithm) -> PublicKey {
        PrivateKey::random(&mut OsRng, algorithm)
            .unwrap()
            .public_key()
            .clone()
    }

    #[test]
    fn a_host_key_of_another_type_is_refused_like_a_changed_one() {
        let dir = tempfile::tempdir().unwrap();
        let known = dir.path().join("known_hosts");
        let ed = public(Algorithm::Ed25519);
        check_host_key("127.0.0.1", 2222, &ed, &known).unwrap();
        check_host_key("127.0.0.1", 2222, &ed, &known).unwrap();
        let before = std::fs::read_to_string(&known).unwrap();
        let ecdsa = public(Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        });
        let e = check_host_key("127.0.0.1", 2222, &ecdsa, &known).unwrap_err();
        assert!(
            e.contains("CHANGED") && e.contains("recorded ssh-ed25519"),
            "{e}"
        );
        let other_ed = public(Algorithm::Ed25519);
        let e = check_host_key("127.0.0.1", 2222, &other_ed, &known).unwrap_err();
        assert!(e.contains("CHANGED"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&known).unwrap(),
            before,
            "nothing learnt"
        );
        // Another port is another host: learnt.
        check_host_key("127.0.0.1", 2223, &ecdsa, &known).unwrap();
    }

    #[test]
    fn a_key_another_process_recorded_meanwhile_is_no_change() {
        let ed = public(Algorithm::Ed25519);
        let other = public(Algorithm::Ed25519);
        // Found between russh's check (no entry) and the read of the entries: the same key.
        assert!(recorded_other(&[(2, ed.clone())], &ed).is_none());
        assert!(recorded_other(&[(1, other.clone()), (2, ed.clone())], &ed).is_none());
        // Only other keys: a change, reported with the first.
        assert_eq!(
            recorded_other(&[(3, other.clone())], &ed).map(|r| r.0),
            Some(3)
        );
        assert!(recorded_other(&[], &ed).is_none());
    }

    #[test]
    fn first_connections_at_once_all_accept_the_same_new_key() {
        // The agent and a command meet a new server at the same moment: each records or finds
        // the key, none calls it changed. (Found by the agent crash test on a loaded machine.)
        let ed = public(Algorithm::Ed25519);
        for round in 0..30 {
            let dir = tempfile::tempdir().unwrap();
            let known = dir.path().join("known_hosts");
            std::fs::write(&known, "").unwrap();
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (known, ed) = (known.clone(), ed.clone());
                    std::thread::spawn(move || check_host_key("127.0.0.1", 2222, &ed, &known))
                })
                .collect();
            for t in threads {
                t.join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            check_host_key("127.0.0.1", 2222, &ed, &known).unwrap();
        }
    }
}
