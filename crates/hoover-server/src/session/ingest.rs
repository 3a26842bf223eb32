//! Ingest: chunks, groups and versions checked here, then verified and staged by the
//! connection's ingest thread, which owns the open [`Batch`] and commits it.

use super::*;

/// Work for a connection's ingest thread, which owns the open [`Batch`].
pub(super) enum IngestCmd {
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
pub(super) struct Ingest {
    tx: mpsc::Sender<(IngestCmd, Option<tokio::sync::OwnedSemaphorePermit>)>,
    /// Frame bytes the queue may hold: a command's permit is let go once the thread is done
    /// with it.
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    /// The first refused chunk, reported as soon as it is found; `None` once reported.
    chunk_error: Option<oneshot::Receiver<StoreError>>,
}

pub(super) const INGEST_QUEUE: usize = 32;
/// The most frame bytes queued for a connection's ingest thread (a group's frame is up to
/// about 9 MiB).
pub(super) const INGEST_QUEUE_BYTES: usize = 32 << 20;
const _: () = assert!(hoover_proto::MAX_FRAME <= INGEST_QUEUE_BYTES);

/// How a piece decodes: its kind, its base, and for one that appends, its context.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PieceOf {
    pub(super) kind: hoover_types::PieceKind,
    pub(super) base: ChunkId,
    pub(super) context: Option<ChunkId>,
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
pub(super) fn refusal(e: StoreError, err_tx: &mut Option<oneshot::Sender<StoreError>>) -> String {
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

/// The most bytes a compressed chunk can take: zstd's worst case for [`MAX_CHUNK_SIZE`]
/// bytes is a little over that; anything bigger is refused before it is queued.
pub(super) const MAX_COMPRESSED_CHUNK: usize = most_compressed(MAX_CHUNK_SIZE);

/// More than zstd's worst case for `n` bytes (a little over `n`).
pub(super) const fn most_compressed(n: usize) -> usize {
    n + n / 128 + 1024
}

/// What the ingest thread reports on its own.
pub(super) enum IngestEvent {
    /// A chunk was refused: the connection ends.
    BadChunk(StoreError),
    /// The thread is gone (it panicked): its batch is lost; the connection goes on.
    Gone,
}

/// Waits for the ingest thread's report, if there is an ingest thread. The receiver is polled
/// to completion once only (a oneshot panics if polled again).
pub(super) async fn ingest_event(ingest: &mut Option<Ingest>) -> IngestEvent {
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

pub(super) fn ingest_gone() -> Failure {
    Failure {
        code: ErrorCode::Internal,
        message: "the server's ingest thread stopped (its log says why); nothing of this batch was recorded: sync again".into(),
    }
}

pub(super) fn new_version(mut push: VersionPush) -> Result<NewVersion, Failure> {
    let key = parse_key(std::mem::take(&mut push.key))?;
    Ok(push.with_key(key))
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn send_ingest(&mut self, cmd: IngestCmd) {
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

    /// A chunk or a piece: checked for size here, verified and staged by the ingest thread.
    pub(super) async fn chunk(
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
    pub(super) async fn ingest(&mut self, ids: &[ChunkId], cmd: IngestCmd) {
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
    pub(super) async fn group(
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
    pub(super) async fn version(
        &mut self,
        push: VersionPush<Run>,
    ) -> Result<Result<(), Failure>, ProtoError> {
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
}
