//! The protocol engine: one connection's requests against the store.
//!
//! Runs over any `AsyncRead + AsyncWrite` (an SSH channel, or a duplex in tests). Store work runs
//! on the blocking pool. Protocol violations and bad chunks end the connection after an `Error`
//! frame; a refused version is answered and the connection goes on. Nothing a connection sends is
//! recorded before its `Commit`, and then all of it or none.

use hoover_proto::{
    server_handshake, Access, CommittedVersion, Conn, ErrorCode, FileEntry, ProtoError, Request,
    Response, VersionPush, MAX_HAVE, MAX_LIST,
};
use hoover_store::{Batch, NewVersion, Store, StoreError};
use hoover_types::MAX_CHUNK_SIZE;
use tokio::io::{AsyncRead, AsyncWrite};

/// Who is on the other end, for logs and access checks.
#[derive(Clone, Debug)]
pub struct Peer {
    pub name: String,
    pub access: Access,
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
    peer: Peer,
) -> Result<SessionStats, ProtoError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut conn = Conn::new(stream);
    let hello = server_handshake(&mut conn, &agent(), peer.access).await?;
    tracing::debug!(peer = %peer.name, agent = %hello.agent, "handshake done");
    let mut session = Session {
        conn,
        store,
        peer,
        batch: None,
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
    store: Store,
    peer: Peer,
    batch: Option<Batch>,
    stats: SessionStats,
}

/// A failed request: what to tell the client.
struct Failure {
    code: ErrorCode,
    message: String,
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::Refused(_) => ErrorCode::Refused,
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
            let request = match self.conn.recv::<Request>().await {
                Ok(r) => r,
                Err(ProtoError::Closed) => return Ok(()),
                Err(e @ (ProtoError::Decode(_) | ProtoError::FrameTooLarge(_))) => {
                    self.fail(ErrorCode::Protocol, e.to_string()).await?;
                    return Err(e);
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
        self.conn.send(&Response::Error { code, message }).await?;
        self.conn.flush().await
    }

    async fn reply(&mut self, response: Response) -> Result<Result<(), Failure>, ProtoError> {
        self.conn.send(&response).await?;
        self.conn.flush().await?;
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

    /// Runs `f` with the connection's batch on the blocking pool.
    async fn with_batch<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Batch) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Failure> {
        let mut batch = self.batch.take().unwrap_or_else(|| self.store.batch());
        let (batch, result) = tokio::task::spawn_blocking(move || {
            let r = f(&mut batch);
            (batch, r)
        })
        .await
        .map_err(|e| Failure {
            code: ErrorCode::Internal,
            message: format!("ingest task failed: {e}"),
        })?;
        self.batch = Some(batch);
        result.map_err(Failure::from)
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
                let staged: Vec<bool> = match &self.batch {
                    Some(b) => ids.iter().map(|id| b.has_staged(id)).collect(),
                    None => vec![false; ids.len()],
                };
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
            Request::Chunk { id, len, data } => {
                if len as usize > MAX_CHUNK_SIZE {
                    return Ok(Err(Failure {
                        code: ErrorCode::BadChunk,
                        message: format!(
                            "chunk {id} claims {len} bytes; the limit is {MAX_CHUNK_SIZE}"
                        ),
                    }));
                }
                match self.with_batch(move |b| b.add_chunk(id, len, &data)).await {
                    Ok(()) => {
                        self.stats.chunks_received += 1;
                        Ok(Ok(()))
                    }
                    Err(f) => Ok(Err(Failure {
                        code: if f.code == ErrorCode::Refused {
                            ErrorCode::BadChunk
                        } else {
                            f.code
                        },
                        message: f.message,
                    })),
                }
            }
            Request::Version(push) => {
                let version = match new_version(push) {
                    Ok(v) => v,
                    Err(f) => return Ok(Err(f)),
                };
                match self.with_batch(move |b| b.add_version(version)).await {
                    Ok(()) => self.reply(Response::Accepted).await,
                    Err(f) => Ok(Err(f)),
                }
            }
            Request::Commit => {
                let Some(batch) = self.batch.take() else {
                    return self
                        .reply(Response::Committed {
                            versions: Vec::new(),
                        })
                        .await;
                };
                let committed = tokio::task::spawn_blocking(move || batch.commit()).await;
                let committed = match committed {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return Ok(Err(e.into())),
                    Err(e) => {
                        return Ok(Err(Failure {
                            code: ErrorCode::Internal,
                            message: format!("commit task failed: {e}"),
                        }))
                    }
                };
                let versions: Vec<CommittedVersion> = committed
                    .into_iter()
                    .map(|c| CommittedVersion {
                        key: c.key,
                        seq: c.seq,
                        new: c.new,
                    })
                    .collect();
                let new = versions.iter().filter(|v| v.new).count();
                self.stats.versions_committed += new as u64;
                if new > 0 {
                    tracing::info!(peer = %self.peer.name, new, "committed versions");
                }
                self.reply(Response::Committed { versions }).await
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
                        let files = files
                            .into_iter()
                            .map(|f| FileEntry {
                                key: f.key,
                                versions: f.versions,
                                latest: f.latest,
                            })
                            .collect();
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
                match self.blocking(move |s| s.versions(&key)).await {
                    Ok(versions) => self.reply(Response::VersionList { versions }).await,
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
        }
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
        self.conn.send(&Response::RestoreBegin { info }).await?;
        for chunk in chunks {
            let id = chunk.id;
            let data = match self.blocking(move |s| s.read_chunk_compressed(&id)).await {
                Ok(d) => d,
                Err(f) => return Ok(Err(f)),
            };
            self.conn
                .send(&Response::ChunkData {
                    id: chunk.id,
                    len: chunk.len,
                    data,
                })
                .await?;
        }
        self.reply(Response::RestoreEnd).await
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
