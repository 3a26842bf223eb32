//! The protocol engine: one connection's requests against the store.
//!
//! Runs over any `AsyncRead + AsyncWrite` (an SSH channel, or a duplex in tests). Store work runs
//! on the blocking pool. Protocol violations and bad chunks end the connection after an `Error`
//! frame; a refused version is answered and the connection goes on. Nothing a connection sends is
//! recorded before its `Commit`, and then all of it or none.
//!
//! This module runs a connection (handshake, request loop, dispatch); `ingest` takes chunks,
//! groups and versions to the connection's ingest thread; `reads` answers searches and
//! restores.

use hoover_index::{SearchRequest, Sort};
use hoover_proto::{
    server_handshake, Access, Conn, ErrorCode, IntoRuns, ProtoError, Request, ResolveRuns,
    Response, Run, VersionPush, MAX_HAVE, MAX_LIST,
};

use crate::indexing::Indexer;
use std::collections::HashSet;

use hoover_store::{Batch, Committed, NewVersion, Store, StoreError};
use hoover_types::{ChunkId, MAX_CHUNK_SIZE};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

mod ingest;
mod reads;

use ingest::{ingest_event, ingest_gone, Ingest, IngestCmd, IngestEvent, PieceOf};

/// Who is on the other end, for logs and access checks.
#[derive(Clone, Debug)]
pub struct Peer {
    pub name: String,
    pub access: Access,
    /// The sources this peer may push under (`hoover-source`); `None`: any.
    pub sources: Option<Vec<String>>,
}

impl Peer {
    /// Whether this peer may add versions or deletions under `key`.
    fn may_write(&self, key: &hoover_types::Key) -> Result<(), Failure> {
        // A doctor probe (stored apart: not listed, counted or indexed) is under the source it
        // is for; any other key under its first part.
        let source = if key.is_probe() {
            key.probe_of().unwrap_or(hoover_types::PROBE_SOURCE)
        } else {
            key.source()
        };
        match &self.sources {
            Some(sources) if !sources.iter().any(|s| s == source) => Err(Failure {
                code: ErrorCode::Forbidden,
                message: format!(
                    "this key may write only under the sources {} (hoover-source in the server's authorized_keys); {key} is under {source:?}",
                    sources.join(", "),
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// How long a connection may stall (`ServerConfig::stall_timeout`). An agent may sit idle between requests as long as it
/// likes (SSH keep-alives find a vanished peer); what it may not do is hold server resources
/// while silent: a begun frame must be finished, an open batch continued, and a reply read,
/// each within `stall`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub stall: std::time::Duration,
    /// Most chunks, versions and chunk references one uncommitted batch may hold
    /// ([`hoover_store::Batch::with_limit`]).
    pub batch_items: usize,
}

/// What a connection did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub chunks_received: u64,
    pub versions_committed: u64,
}

/// Serves one connection until the client closes it or breaks the protocol.
pub async fn serve_connection<S>(
    stream: S,
    store: Store,
    indexer: Option<Indexer>,
    peer: Peer,
    limits: Limits,
) -> Result<SessionStats, ProtoError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut conn = Conn::new(stream);
    let hello = server_handshake(&mut conn, &agent(), peer.access, store.id()).await?;
    tracing::debug!(peer = %peer.name, agent = %hello.agent, "handshake done");
    let mut session = Session {
        conn,
        client_minor: hello.minor,
        store,
        indexer,
        peer,
        ingest: None,
        sent: HashSet::new(),
        batch_open: false,
        batch_lost: false,
        limits,
        stats: SessionStats::default(),
    };
    let result = session.run().await;
    let stats = session.stats.clone();
    match result {
        Ok(()) | Err(ProtoError::Closed) => Ok(stats),
        Err(e) => Err(e),
    }
}

fn agent() -> String {
    format!("hoover {}", env!("CARGO_PKG_VERSION"))
}

struct Session<S> {
    conn: Conn<S>,
    /// The client's protocol minor version: what it can be sent.
    client_minor: u16,
    store: Store,
    indexer: Option<Indexer>,
    peer: Peer,
    ingest: Option<Ingest>,
    /// Chunks sent by name in the current batch, so `Have` does not ask for them twice (those
    /// of a `Grouped` group are named by the ingest thread and count once committed).
    sent: HashSet<ChunkId>,
    /// Chunks or versions were sent since the last `Commit`.
    batch_open: bool,
    /// The ingest thread died in this batch: its versions and commit are refused, and the
    /// next batch starts a new thread.
    batch_lost: bool,
    limits: Limits,
    stats: SessionStats,
}

/// A failed request: what to tell the client.
struct Failure {
    code: ErrorCode,
    message: String,
}

fn disk_full_message(e: &StoreError) -> String {
    format!(
        "the server's disk is full ({e}); nothing of this batch was recorded and everything stored before is intact: free space on the server, then sync again"
    )
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        if e.is_disk_full() {
            return Failure {
                code: ErrorCode::Internal,
                message: disk_full_message(&e),
            };
        }
        let code = match &e {
            StoreError::Refused(_) | StoreError::BatchTooLarge(_) => ErrorCode::Refused,
            StoreError::StaleBase(_) => ErrorCode::StaleBase,
            StoreError::NotFound(_) => ErrorCode::NotFound,
            _ => ErrorCode::Internal,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn run(&mut self) -> Result<(), ProtoError> {
        loop {
            let received = tokio::select! {
                biased;
                event = ingest_event(&mut self.ingest) => match event {
                    IngestEvent::BadChunk(e) => {
                        let message = e.to_string();
                        tracing::warn!(peer = %self.peer.name, "refused a chunk: {message}");
                        self.fail(ErrorCode::BadChunk, message.clone()).await?;
                        return Err(ProtoError::Handshake(message));
                    }
                    IngestEvent::Gone => {
                        tracing::error!(peer = %self.peer.name, "the ingest thread stopped; this batch is lost and will be refused");
                        self.ingest = None;
                        self.batch_lost = true;
                        continue;
                    }
                },
                r = self.conn.recv_within::<Request>(
                    self.batch_open.then_some(self.limits.stall),
                    self.limits.stall,
                ) => r,
            };
            let request = match received {
                Ok(r) => r,
                Err(ProtoError::Closed) => return Ok(()),
                Err(e @ (ProtoError::Decode(_) | ProtoError::FrameTooLarge(_))) => {
                    self.fail(ErrorCode::Protocol, e.to_string()).await?;
                    return Err(e);
                }
                Err(ProtoError::TimedOut(why)) => {
                    let why = match self.batch_open {
                        true => format!("{why} in the middle of a batch; the batch was dropped"),
                        false => why,
                    };
                    // Say why, if the peer still reads; it is closed either way.
                    let _ = self.fail(ErrorCode::Protocol, why.clone()).await;
                    return Err(ProtoError::TimedOut(why));
                }
                Err(e) => return Err(e),
            };
            let outcome = self.handle(request).await?;
            if let Err(f) = outcome {
                tracing::warn!(peer = %self.peer.name, code = ?f.code, "{}", f.message);
                self.fail(f.code, f.message.clone()).await?;
                if f.code.is_fatal() {
                    return Err(ProtoError::Handshake(f.message));
                }
            }
        }
    }

    async fn fail(&mut self, code: ErrorCode, message: String) -> Result<(), ProtoError> {
        self.conn
            .send_within(&Response::Error { code, message }, self.limits.stall)
            .await
    }

    /// Sends one frame of a longer reply, giving up on a peer that reads none of it in time.
    async fn send_part(&mut self, response: &Response) -> Result<(), ProtoError> {
        let stall = self.limits.stall;
        tokio::time::timeout(stall, self.conn.send(response))
            .await
            .map_err(|_| {
                ProtoError::TimedOut(format!(
                    "the peer read nothing of a restore for {} s",
                    stall.as_secs()
                ))
            })?
    }

    async fn reply(&mut self, response: Response) -> Result<Result<(), Failure>, ProtoError> {
        self.conn.send_within(&response, self.limits.stall).await?;
        Ok(Ok(()))
    }

    fn require_read(&self) -> Result<(), Failure> {
        match self.peer.access {
            Access::Full => Ok(()),
            Access::PushOnly => Err(Failure {
                code: ErrorCode::Forbidden,
                message:
                    "this key may only push; reading needs a key without hoover-allow=\"push\""
                        .into(),
            }),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Failure> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| Failure {
                code: ErrorCode::Internal,
                message: format!("store task failed: {e}"),
            })?
            .map_err(Failure::from)
    }

    async fn handle(&mut self, request: Request) -> Result<Result<(), Failure>, ProtoError> {
        match request {
            Request::Have { ids } => {
                if ids.len() > MAX_HAVE {
                    return Ok(Err(Failure {
                        code: ErrorCode::Protocol,
                        message: format!("Have lists {} ids; the limit is {MAX_HAVE}", ids.len()),
                    }));
                }
                let staged: Vec<bool> = ids.iter().map(|id| self.sent.contains(id)).collect();
                let have = match self.blocking(move |s| s.has_chunks(&ids)).await {
                    Ok(h) => h,
                    Err(f) => return Ok(Err(f)),
                };
                let missing = have
                    .iter()
                    .zip(&staged)
                    .enumerate()
                    .filter(|(_, (h, s))| !**h && !**s)
                    .map(|(i, _)| i as u32)
                    .collect();
                self.reply(Response::Want { missing }).await
            }
            Request::Chunk { id, len, data } => self.chunk(id, len, None, data).await,
            Request::Piece {
                id,
                len,
                kind,
                base,
                data,
            } => {
                let of = PieceOf {
                    kind,
                    base,
                    context: None,
                };
                self.chunk(id, len, Some(of), data).await
            }
            Request::Group { chunks, data } => {
                let lens = chunks.iter().map(|c| c.len).collect();
                self.group(Some(chunks), lens, data).await
            }
            Request::Grouped { lens, data } => self.group(None, lens, data).await,
            Request::Appends {
                id,
                len,
                base,
                context,
                data,
            } => {
                let of = PieceOf {
                    kind: hoover_types::PieceKind::Appends,
                    base,
                    context: Some(context),
                };
                self.chunk(id, len, Some(of), data).await
            }
            Request::Version(push) => self.version(push.runs(|_| None)).await,
            Request::VersionRuns(push) => self.version(push).await,
            Request::Commit => {
                self.sent.clear();
                self.batch_open = false;
                if std::mem::take(&mut self.batch_lost) {
                    return Ok(Err(ingest_gone()));
                }
                let (tx, rx) = oneshot::channel();
                self.send_ingest(IngestCmd::Commit(tx)).await;
                let committed = match rx.await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return Ok(Err(e.into())),
                    Err(_) => {
                        // Gone mid-commit: the next batch gets a new thread.
                        self.ingest = None;
                        return Ok(Err(ingest_gone()));
                    }
                };
                let new = committed.iter().filter(|v| v.new).count();
                self.stats.versions_committed += new as u64;
                if new > 0 {
                    tracing::info!(peer = %self.peer.name, new, "committed versions");
                }
                self.reply(Response::Committed {
                    versions: committed,
                })
                .await
            }
            Request::List {
                prefix,
                after,
                limit,
            } => {
                if let Err(f) = self.require_read() {
                    return Ok(Err(f));
                }
                let limit = limit.clamp(1, MAX_LIST) as usize;
                let listed = self
                    .blocking(move |s| s.list(&prefix, after.as_deref(), limit + 1))
                    .await;
                match listed {
                    Ok(mut files) => {
                        let more = files.len() > limit;
                        files.truncate(limit);
                        self.reply(Response::Listing { files, more }).await
                    }
                    Err(f) => Ok(Err(f)),
                }
            }
            Request::Versions { key } => {
                if let Err(f) = self.require_read() {
                    return Ok(Err(f));
                }
                let key = match parse_key(key) {
                    Ok(k) => k,
                    Err(f) => return Ok(Err(f)),
                };
                let found = self
                    .blocking(move |s| Ok((s.versions(&key)?, s.deletions(&key)?)))
                    .await;
                match found {
                    Ok((versions, deletions)) => {
                        self.reply(Response::VersionList {
                            versions,
                            deletions,
                        })
                        .await
                    }
                    Err(f) => Ok(Err(f)),
                }
            }
            Request::Deleted { key, at_ns } => {
                let key = match parse_key(key) {
                    Ok(k) => k,
                    Err(f) => return Ok(Err(f)),
                };
                if let Err(f) = self.peer.may_write(&key) {
                    return Ok(Err(f));
                }
                let k = key.clone();
                match self.blocking(move |s| s.record_deletion(&k, at_ns)).await {
                    Ok(added) => {
                        if added {
                            tracing::info!(peer = %self.peer.name, %key, "recorded a deletion on the source");
                        }
                        self.reply(Response::Accepted).await
                    }
                    Err(f) => Ok(Err(f)),
                }
            }
            Request::Restore { key, seq } => {
                if let Err(f) = self.require_read() {
                    return Ok(Err(f));
                }
                let key = match parse_key(key) {
                    Ok(k) => k,
                    Err(f) => return Ok(Err(f)),
                };
                self.restore(key, seq).await
            }
            Request::Search {
                query,
                limit,
                offset,
                sort,
            } => {
                if let Err(f) = self.require_read() {
                    return Ok(Err(f));
                }
                match self.search(query, limit, offset, sort).await {
                    Ok(r) => self.reply(r).await,
                    Err(f) => Ok(Err(f)),
                }
            }
        }
    }
}

fn parse_key(key: String) -> Result<hoover_types::Key, Failure> {
    hoover_types::Key::new(key).map_err(|e| Failure {
        code: ErrorCode::Refused,
        message: format!("bad key: {e}"),
    })
}

#[cfg(test)]
mod rights_tests {
    use super::*;
    use hoover_types::Key;

    #[test]
    fn a_bound_key_writes_and_probes_only_for_its_sources() {
        let peer = Peer {
            name: "lap".into(),
            access: Access::PushOnly,
            sources: Some(vec!["lap".into()]),
        };
        let ok = |k: &str| peer.may_write(&Key::new(k).unwrap()).is_ok();
        assert!(ok("lap/claude/a.jsonl"));
        assert!(ok(".hoover-probe/doctor/lap.txt"));
        assert!(!ok("desk/claude/a.jsonl"));
        assert!(
            !ok(".hoover-probe/doctor/desk.txt"),
            "another source's probe"
        );
        assert!(!ok(".hoover-probe/anything/else.bin"), "not a probe key");
    }
}
