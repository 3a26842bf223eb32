//! The protocol engine: one connection's requests against the store.
//!
//! Runs over any `AsyncRead + AsyncWrite` (an SSH channel, or a duplex in tests). Store work runs
//! on the blocking pool. Protocol violations and bad chunks end the connection after an `Error`
//! frame; a refused version is answered and the connection goes on. Nothing a connection sends is
//! recorded before its `Commit`, and then all of it or none.

use hoover_index::{SearchRequest, Sort};
use hoover_proto::{
    server_handshake, Access, Conn, ErrorCode, ProtoError, Request, Response, Run, VersionPush,
    MAX_HAVE, MAX_LIST,
};

use crate::indexing::Indexer;
use std::collections::HashSet;

use hoover_store::{Batch, Committed, NewVersion, Store, StoreError};
use hoover_types::{ChunkId, MAX_CHUNK_SIZE};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

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

/// Work for a connection's ingest thread, which owns the open [`Batch`].
enum IngestCmd {
    /// A chunk's frame; `base` when it is a piece compressed against another chunk (and a
    /// context).
    Chunk {
        id: ChunkId,
        len: u32,
        base: Option<PieceOf>,
        data: Vec<u8>,
    },
    /// A group of chunks: one frame of their bytes back to back, of `lens`; `names` when the
    /// client named them (`Group`), else the ingest thread names them (`Grouped`).
    Group {
        names: Option<Vec<hoover_types::ChunkRef>>,
        lens: Vec<u32>,
        data: Vec<u8>,
    },
    /// A version, its runs resolved against the chunks the batch received.
    Version(
        Box<VersionPush<Run>>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    Commit(oneshot::Sender<Result<Vec<Committed>, StoreError>>),
}

/// A connection's ingest thread: chunks are verified and staged there, off the async runtime,
/// while the connection goes on reading. A queue bounded in commands and in bytes caps the
/// memory a connection can hold.
struct Ingest {
    tx: mpsc::Sender<(IngestCmd, Option<tokio::sync::OwnedSemaphorePermit>)>,
    /// Frame bytes the queue may hold: a command's permit is let go once the thread is done
    /// with it.
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    /// The first refused chunk, reported as soon as it is found; `None` once reported.
    chunk_error: Option<oneshot::Receiver<StoreError>>,
}

const INGEST_QUEUE: usize = 32;
/// The most frame bytes queued for a connection's ingest thread (a group's frame is up to
/// about 9 MiB).
const INGEST_QUEUE_BYTES: usize = 32 << 20;
const _: () = assert!(hoover_proto::MAX_FRAME <= INGEST_QUEUE_BYTES);

/// How a piece decodes: its kind, its base, and for one that appends, its context.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PieceOf {
    kind: hoover_types::PieceKind,
    base: ChunkId,
    context: Option<ChunkId>,
}

impl Ingest {
    fn start(store: Store, batch_items: usize) -> Ingest {
        let (tx, mut rx) = mpsc::channel(INGEST_QUEUE);
        let (err_tx, chunk_error) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut err_tx = Some(err_tx);
            let mut batch: Option<Batch> = None;
            let mut failed: Option<String> = None;
            // The chunks this batch received, in order, for the runs of its versions: at most
            // as many as a batch may hold (one that received more is refused anyway).
            let mut received: Vec<hoover_types::ChunkRef> = Vec::new();
            let receive = |received: &mut Vec<hoover_types::ChunkRef>, chunks: &[_]| {
                let room = batch_items.saturating_sub(received.len());
                received.extend(chunks.iter().take(room));
            };
            let new_batch = || store.batch().with_limit(batch_items);
            while let Some((cmd, _permit)) = rx.blocking_recv() {
                match cmd {
                    IngestCmd::Chunk {
                        id,
                        len,
                        base,
                        data,
                    } => {
                        if failed.is_some() {
                            continue;
                        }
                        receive(&mut received, &[hoover_types::ChunkRef { id, len }]);
                        let b = batch.get_or_insert_with(new_batch);
                        let added = match base {
                            Some(p) => b.add_piece(id, len, p.kind, p.base, p.context, &data),
                            None => b.add_chunk(id, len, &data),
                        };
                        if let Err(e) = added {
                            failed = Some(refusal(e, &mut err_tx));
                        }
                    }
                    IngestCmd::Group { names, lens, data } => {
                        if failed.is_some() {
                            continue;
                        }
                        let b = batch.get_or_insert_with(new_batch);
                        let staged = match names {
                            Some(names) => b.add_group(&names, &data).map(|()| names),
                            None => b.add_unnamed_group(&lens, &data),
                        };
                        match staged {
                            Ok(chunks) => receive(&mut received, &chunks),
                            Err(e) => failed = Some(refusal(e, &mut err_tx)),
                        }
                    }
                    IngestCmd::Version(version, reply) => {
                        let result = match &failed {
                            Some(f) => Err(StoreError::Refused(f.clone())),
                            None => version
                                .resolve(&received, batch_items)
                                .map_err(StoreError::Refused)
                                .and_then(|v| {
                                    new_version(v).map_err(|f| StoreError::Refused(f.message))
                                })
                                .and_then(|v| batch.get_or_insert_with(new_batch).add_version(v)),
                        };
                        if let Err(e @ StoreError::BatchTooLarge(_)) = &result {
                            failed = Some(e.to_string());
                        }
                        let _ = reply.send(result);
                    }
                    IngestCmd::Commit(reply) => {
                        hoover_store::fault::panic_point("ingest-commit");
                        hoover_store::fault::slow_point("ingest-commit");
                        // A failed batch ends here: the next one starts clean.
                        received.clear();
                        let result = match (failed.take(), batch.take()) {
                            (Some(f), _) => Err(StoreError::Refused(f)),
                            (None, Some(b)) => b.commit(),
                            (None, None) => Ok(Vec::new()),
                        };
                        let _ = reply.send(result);
                    }
                }
            }
        });
        Ingest {
            tx,
            budget: std::sync::Arc::new(tokio::sync::Semaphore::new(INGEST_QUEUE_BYTES)),
            chunk_error: Some(chunk_error),
        }
    }
}

/// Why a chunk was not staged, as the batch's versions and commit are then refused; a chunk
/// that lies (not disk trouble, not a batch past its limit) is also reported at once, and
/// closes the connection.
fn refusal(e: StoreError, err_tx: &mut Option<oneshot::Sender<StoreError>>) -> String {
    if e.is_disk_full() {
        // The server's trouble, not the client's: the batch's versions and commit are refused
        // with the reason; the connection stays.
        disk_full_message(&e)
    } else if let StoreError::BatchTooLarge(_) = e {
        // Too much at once, not a lie: refused the same way.
        e.to_string()
    } else {
        let message = e.to_string();
        if let Some(tx) = err_tx.take() {
            let _ = tx.send(e);
        }
        message
    }
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

    async fn send_ingest(&mut self, cmd: IngestCmd) {
        let (store, items) = (self.store.clone(), self.limits.batch_items);
        let ingest = self
            .ingest
            .get_or_insert_with(|| Ingest::start(store, items));
        let bytes = match &cmd {
            IngestCmd::Chunk { data, .. } | IngestCmd::Group { data, .. } => data.len(),
            IngestCmd::Version(..) | IngestCmd::Commit(..) => 0,
        };
        // At most a frame's bytes, under the budget; the semaphore is never closed.
        let permit = match bytes {
            0 => None,
            n => ingest
                .budget
                .clone()
                .acquire_many_owned(n.min(INGEST_QUEUE_BYTES) as u32)
                .await
                .ok(),
        };
        // The thread only stops when this sender is dropped, so this cannot fail.
        let _ = ingest.tx.send((cmd, permit)).await;
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

    /// A chunk or a piece: checked for size here, verified and staged by the ingest thread.
    async fn chunk(
        &mut self,
        id: ChunkId,
        len: u32,
        base: Option<PieceOf>,
        data: Vec<u8>,
    ) -> Result<Result<(), Failure>, ProtoError> {
        if len as usize > MAX_CHUNK_SIZE {
            return Ok(Err(Failure {
                code: ErrorCode::BadChunk,
                message: format!("chunk {id} claims {len} bytes; the limit is {MAX_CHUNK_SIZE}"),
            }));
        }
        if data.len() > MAX_COMPRESSED_CHUNK {
            return Ok(Err(Failure {
                code: ErrorCode::BadChunk,
                message: format!(
                    "chunk {id} is {} bytes compressed, more than any chunk of at most {MAX_CHUNK_SIZE} bytes can be ({MAX_COMPRESSED_CHUNK})",
                    data.len()
                ),
            }));
        }
        let cmd = IngestCmd::Chunk {
            id,
            len,
            base,
            data,
        };
        self.ingest(&[id], cmd).await;
        Ok(Ok(()))
    }

    /// Queues chunks that passed the size checks for the ingest thread, counting them as sent
    /// in this batch.
    async fn ingest(&mut self, ids: &[ChunkId], cmd: IngestCmd) {
        hoover_store::fault::crash_point("ingest-chunk");
        self.batch_open = true;
        for id in ids {
            // Past the batch's limit the batch is refused anyway; the set stays bounded.
            if self.sent.len() < self.limits.batch_items {
                self.sent.insert(*id);
            }
        }
        self.stats.chunks_received += ids.len() as u64;
        if !self.batch_lost {
            self.send_ingest(cmd).await;
        }
    }

    /// A group of chunks, named (`Group`) or not (`Grouped`, only `lens`): checked for size
    /// here, verified (or named) and staged by the ingest thread.
    async fn group(
        &mut self,
        chunks: Option<Vec<hoover_types::ChunkRef>>,
        lens: Vec<u32>,
        data: Vec<u8>,
    ) -> Result<Result<(), Failure>, ProtoError> {
        use hoover_types::{MAX_GROUP_BYTES, MAX_GROUP_CHUNKS};
        let total: u64 = lens.iter().map(|l| *l as u64).sum();
        let bound = most_compressed(MAX_GROUP_BYTES);
        if lens.is_empty()
            || lens.len() > MAX_GROUP_CHUNKS
            || total > MAX_GROUP_BYTES as u64
            || data.len() > bound
        {
            return Ok(Err(Failure {
                code: ErrorCode::BadChunk,
                message: format!(
                    "a group of {} chunks, {total} bytes, {} compressed; a group holds 1 to {MAX_GROUP_CHUNKS} chunks of at most {MAX_GROUP_BYTES} bytes in all, at most {bound} compressed",
                    lens.len(),
                    data.len()
                ),
            }));
        }
        // Unnamed chunks are named by the ingest thread: `Have` counts them as held once
        // committed.
        let ids: Vec<ChunkId> = chunks.iter().flatten().map(|c| c.id).collect();
        let unnamed = if chunks.is_none() { lens.len() } else { 0 };
        let cmd = IngestCmd::Group {
            names: chunks,
            lens,
            data,
        };
        self.ingest(&ids, cmd).await;
        self.stats.chunks_received += unnamed as u64;
        Ok(Ok(()))
    }

    /// A version: checked for rights here, resolved, checked and staged by the ingest thread.
    async fn version(&mut self, push: VersionPush<Run>) -> Result<Result<(), Failure>, ProtoError> {
        let key = match parse_key(push.key.clone()) {
            Ok(k) => k,
            Err(f) => return Ok(Err(f)),
        };
        if let Err(f) = self.peer.may_write(&key) {
            return Ok(Err(f));
        }
        self.batch_open = true;
        if self.batch_lost {
            return Ok(Err(ingest_gone()));
        }
        let (tx, rx) = oneshot::channel();
        self.send_ingest(IngestCmd::Version(Box::new(push), tx))
            .await;
        match rx.await {
            Ok(Ok(())) => self.reply(Response::Accepted).await,
            Ok(Err(e)) => Ok(Err(e.into())),
            Err(_) => {
                self.ingest = None;
                self.batch_lost = true;
                Ok(Err(ingest_gone()))
            }
        }
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
                if let Some(indexer) = &self.indexer {
                    indexer.notify(&committed);
                }
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

    async fn search(
        &self,
        query: String,
        limit: u32,
        offset: u32,
        sort: String,
    ) -> Result<Response, Failure> {
        let failure = |code, message: String| Failure { code, message };
        let sort: Sort = sort
            .parse()
            .map_err(|e: String| failure(ErrorCode::Refused, e))?;
        let index = Indexer::searchable(self.indexer.as_ref())
            .map_err(|why| failure(ErrorCode::Internal, why))?;
        let request = SearchRequest {
            query,
            limit: limit as usize,
            offset: offset as usize,
            sort,
        };
        let results = tokio::task::spawn_blocking(move || index.search(&request))
            .await
            .map_err(|e| failure(ErrorCode::Internal, format!("search task failed: {e}")))?
            .map_err(|e| match e {
                hoover_index::IndexError::Query(m) => failure(ErrorCode::Refused, m),
                e => failure(ErrorCode::Internal, e.to_string()),
            })?;
        Ok(Response::SearchResults {
            total: results.total,
            hits: results.hits,
        })
    }

    async fn restore(
        &mut self,
        key: hoover_types::Key,
        seq: u64,
    ) -> Result<Result<(), Failure>, ProtoError> {
        let k = key.clone();
        let found = self
            .blocking(move |s| {
                let info = s
                    .versions(&k)?
                    .into_iter()
                    .find(|v| v.seq == seq)
                    .ok_or_else(|| {
                        StoreError::NotFound(format!(
                            "{k} has no version {seq}; `hoover versions {k}` lists them"
                        ))
                    })?;
                let chunks = s.version_chunks(&k, seq)?;
                Ok((info, chunks))
            })
            .await;
        let (info, chunks) = match found {
            Ok(x) => x,
            Err(f) => return Ok(Err(f)),
        };
        self.send_part(&Response::RestoreBegin { info }).await?;
        let mut reader = Some(self.store.frame_reader());
        for chunk in chunks {
            let mut r = reader
                .take()
                .expect("the reader comes back with each chunk");
            let minor = self.client_minor;
            let read = self
                .blocking(move |_| r.frame(&chunk, minor).map(|frame| (r, frame)))
                .await;
            let frame = match read {
                Ok((r, frame)) => {
                    reader = Some(r);
                    frame
                }
                Err(f) => return Ok(Err(f)),
            };
            let (id, len) = (chunk.id, chunk.len);
            let response = match frame {
                hoover_store::Frame::Alone(data) => Response::ChunkData { id, len, data },
                hoover_store::Frame::FollowsPrevious(data) => Response::PieceData { id, len, data },
                hoover_store::Frame::FromGroup { group, at } => {
                    if let Some((len, data)) = group {
                        self.send_part(&Response::GroupData { len, data }).await?;
                    }
                    Response::FromGroup { id, len, at }
                }
            };
            self.send_part(&response).await?;
        }
        self.reply(Response::RestoreEnd).await
    }
}

/// The most bytes a compressed chunk can take: zstd's worst case for [`MAX_CHUNK_SIZE`]
/// bytes is a little over that; anything bigger is refused before it is queued.
const MAX_COMPRESSED_CHUNK: usize = most_compressed(MAX_CHUNK_SIZE);

/// More than zstd's worst case for `n` bytes (a little over `n`).
const fn most_compressed(n: usize) -> usize {
    n + n / 128 + 1024
}

/// What the ingest thread reports on its own.
enum IngestEvent {
    /// A chunk was refused: the connection ends.
    BadChunk(StoreError),
    /// The thread is gone (it panicked): its batch is lost; the connection goes on.
    Gone,
}

/// Waits for the ingest thread's report, if there is an ingest thread. The receiver is polled
/// to completion once only (a oneshot panics if polled again).
async fn ingest_event(ingest: &mut Option<Ingest>) -> IngestEvent {
    let Some(rx) = ingest.as_mut().and_then(|i| i.chunk_error.as_mut()) else {
        return std::future::pending().await;
    };
    let event = match rx.await {
        Ok(e) => IngestEvent::BadChunk(e),
        Err(_) => IngestEvent::Gone,
    };
    if let Some(i) = ingest.as_mut() {
        i.chunk_error = None;
    }
    event
}

fn ingest_gone() -> Failure {
    Failure {
        code: ErrorCode::Internal,
        message: "the server's ingest thread stopped (its log says why); nothing of this batch was recorded: sync again".into(),
    }
}

fn parse_key(key: String) -> Result<hoover_types::Key, Failure> {
    hoover_types::Key::new(key).map_err(|e| Failure {
        code: ErrorCode::Refused,
        message: format!("bad key: {e}"),
    })
}

fn new_version(push: VersionPush) -> Result<NewVersion, Failure> {
    Ok(NewVersion {
        key: parse_key(push.key)?,
        size: push.size,
        blake3: push.blake3,
        mtime_ns: push.mtime_ns,
        base: push.base,
        kept: push.kept,
        chunks: push.chunks,
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
