//! The protocol client: typed requests over a [`Conn`].

use anyhow::{bail, Context, Result};
use hoover_proto::{
    client_handshake, Access, Committed, Conn, ErrorCode, FileSummary, Request, Response,
    SearchHit, MAX_HAVE, MAX_LIST,
};
use hoover_types::{ChunkId, Deletion, Key, VersionInfo};
use tokio::io::{AsyncRead, AsyncWrite};

/// An error the server reported.
#[derive(Debug, thiserror::Error)]
#[error("server: {message}")]
pub struct ServerError {
    pub code: ErrorCode,
    pub message: String,
}

/// A hoover protocol session over some byte stream.
pub struct Remote<S> {
    conn: Conn<S>,
    /// The server's protocol minor version.
    pub minor: u16,
    pub access: Access,
    /// The server store's name: client state is kept per store.
    pub store_id: String,
    /// Batches committed on this connection.
    pub commits: u64,
}

fn unexpected(what: &str, got: Response) -> anyhow::Error {
    match got {
        Response::Error { code, message } => ServerError { code, message }.into(),
        other => anyhow::anyhow!("protocol error: expected {what}, got {other:?}"),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Remote<S> {
    /// Performs the handshake.
    pub async fn start(stream: S) -> Result<Remote<S>> {
        let mut conn = Conn::new(stream);
        let info = client_handshake(&mut conn, &format!("hoover {}", env!("CARGO_PKG_VERSION")))
            .await
            .context("handshake with the server failed")?;
        if info.store_id.is_empty() || !info.store_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!(
                "protocol error: the server sent a bad store id {:?}",
                info.store_id
            );
        }
        Ok(Remote {
            conn,
            minor: info.minor,
            access: info.access,
            store_id: info.store_id,
            commits: 0,
        })
    }

    pub fn bytes_sent(&self) -> u64 {
        self.conn.bytes_sent
    }

    pub fn bytes_received(&self) -> u64 {
        self.conn.bytes_received
    }

    async fn recv(&mut self) -> Result<Response> {
        self.conn
            .recv::<Response>()
            .await
            .context("lost the connection to the server")
    }

    /// Which of `ids` the server lacks.
    pub async fn want(&mut self, ids: &[ChunkId]) -> Result<Vec<bool>> {
        self.send_have(ids).await?;
        self.recv_want(ids.len()).await
    }

    /// Asks which of `ids` the server lacks; [`Remote::recv_want`] reads the answer, after the
    /// answers to whatever was sent before.
    pub async fn send_have(&mut self, ids: &[ChunkId]) -> Result<()> {
        for part in ids.chunks(MAX_HAVE) {
            self.conn
                .send(&Request::Have { ids: part.to_vec() })
                .await?;
        }
        self.conn.flush().await?;
        Ok(())
    }

    /// Reads the answer to [`Remote::send_have`] of `count` ids.
    pub async fn recv_want(&mut self, count: usize) -> Result<Vec<bool>> {
        let mut wanted = vec![false; count];
        for part in wanted.chunks_mut(MAX_HAVE) {
            match self.recv().await? {
                Response::Want { missing } => {
                    for i in missing {
                        let i = i as usize;
                        if i >= part.len() {
                            bail!("protocol error: server wants chunk {i} of {}", part.len());
                        }
                        part[i] = true;
                    }
                }
                other => return Err(unexpected("Want", other)),
            }
        }
        Ok(wanted)
    }

    /// Sends one compressed chunk (no answer unless the server refuses it).
    pub async fn send_chunk(&mut self, id: ChunkId, len: u32, data: Vec<u8>) -> Result<()> {
        self.conn.send(&Request::Chunk { id, len, data }).await?;
        Ok(())
    }

    /// Sends chunks as a group (protocol 1.3): one zstd frame of their bytes back to back,
    /// named by the server from 1.4 (only their lengths are sent).
    pub async fn send_group(
        &mut self,
        chunks: Vec<hoover_types::ChunkRef>,
        data: Vec<u8>,
    ) -> Result<()> {
        let request = if self.minor >= 4 {
            let lens = chunks.iter().map(|c| c.len).collect();
            Request::Grouped { lens, data }
        } else {
            Request::Group { chunks, data }
        };
        self.conn.send(&request).await?;
        Ok(())
    }

    /// Sends a chunk as a piece (protocol 1.2; one that appends in a context, 1.3), or as a
    /// plain chunk when it stands alone.
    pub async fn send_piece(
        &mut self,
        id: ChunkId,
        len: u32,
        piece: hoover_chunk::Piece,
    ) -> Result<()> {
        match (piece.base, piece.context) {
            (Some(base), Some(context)) if piece.kind == hoover_types::PieceKind::Appends => {
                self.conn
                    .send(&Request::Appends {
                        id,
                        len,
                        base,
                        context,
                        data: piece.frame,
                    })
                    .await?
            }
            (Some(base), None) if piece.kind != hoover_types::PieceKind::Alone => {
                self.conn
                    .send(&Request::Piece {
                        id,
                        len,
                        kind: piece.kind,
                        base,
                        data: piece.frame,
                    })
                    .await?
            }
            _ => self.send_chunk(id, len, piece.frame).await?,
        }
        Ok(())
    }

    /// Sends versions and a commit in one go, then reads one answer per version, in order, and
    /// the commit's: one round trip for the whole batch.
    pub async fn versions_and_commit(
        &mut self,
        pushes: Vec<Request>,
    ) -> Result<(Vec<Result<(), ServerError>>, Vec<Committed>)> {
        let n = self.send_versions_and_commit(pushes).await?;
        self.recv_commit(n).await
    }

    /// Sends versions (`Version` or `VersionRuns` requests) and a commit;
    /// [`Remote::recv_commit`] reads the answers. Returns how many versions were sent.
    pub async fn send_versions_and_commit(&mut self, pushes: Vec<Request>) -> Result<usize> {
        let n = pushes.len();
        for p in pushes {
            self.conn.send(&p).await?;
        }
        self.conn.send(&Request::Commit).await?;
        self.conn.flush().await?;
        Ok(n)
    }

    /// Reads the answers to [`Remote::send_versions_and_commit`] of `n` versions.
    pub async fn recv_commit(
        &mut self,
        n: usize,
    ) -> Result<(Vec<Result<(), ServerError>>, Vec<Committed>)> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            match self.recv().await? {
                Response::Accepted => out.push(Ok(())),
                Response::Error { code, message } if !code.is_fatal() => {
                    out.push(Err(ServerError { code, message }))
                }
                other => return Err(unexpected("Accepted", other)),
            }
        }
        match self.recv().await? {
            Response::Committed { versions } => {
                self.commits += 1;
                Ok((out, versions))
            }
            // Another client committed a version of one of these files between our versions
            // and our commit (a `sync` beside `watch`): no version of the batch was recorded, and
            // every version it accepted is stale. The caller pushes them again on the new base.
            Response::Error {
                code: ErrorCode::StaleBase,
                message,
            } => {
                let stale = out
                    .into_iter()
                    .map(|verdict| {
                        verdict.and(Err(ServerError {
                            code: ErrorCode::StaleBase,
                            message: message.clone(),
                        }))
                    })
                    .collect();
                Ok((stale, Vec::new()))
            }
            other => Err(unexpected("Committed", other)),
        }
    }

    /// Every file under `prefix`, in key order.
    pub async fn list(&mut self, prefix: &str) -> Result<Vec<FileSummary>> {
        let mut out: Vec<FileSummary> = Vec::new();
        loop {
            let after = out.last().map(|f| f.key.to_string());
            self.conn
                .send(&Request::List {
                    prefix: prefix.to_string(),
                    after,
                    limit: MAX_LIST,
                })
                .await?;
            self.conn.flush().await?;
            match self.recv().await? {
                Response::Listing { files, more } => {
                    out.extend(files);
                    if !more {
                        return Ok(out);
                    }
                }
                other => return Err(unexpected("Listing", other)),
            }
        }
    }

    /// Every version of `key`, oldest first, with the recorded deletions.
    pub async fn history(&mut self, key: &Key) -> Result<(Vec<VersionInfo>, Vec<Deletion>)> {
        self.conn
            .send(&Request::Versions {
                key: key.to_string(),
            })
            .await?;
        self.conn.flush().await?;
        match self.recv().await? {
            Response::VersionList {
                versions,
                deletions,
            } => Ok((versions, deletions)),
            other => Err(unexpected("VersionList", other)),
        }
    }

    pub async fn versions(&mut self, key: &Key) -> Result<Vec<VersionInfo>> {
        Ok(self.history(key).await?.0)
    }

    /// A full-text search of the server's index (protocol 1.1).
    pub async fn search(
        &mut self,
        query: &str,
        limit: u32,
        offset: u32,
        sort: &str,
    ) -> Result<(u64, Vec<SearchHit>)> {
        if self.minor < 1 {
            anyhow::bail!(
                "the server speaks protocol 1.{}, which has no search; upgrade hoover on the server",
                self.minor
            );
        }
        self.conn
            .send(&Request::Search {
                query: query.to_string(),
                limit,
                offset,
                sort: sort.to_string(),
            })
            .await?;
        self.conn.flush().await?;
        match self.recv().await? {
            Response::SearchResults { total, hits } => Ok((total, hits)),
            other => Err(unexpected("SearchResults", other)),
        }
    }

    /// Records that `key` was deleted on this machine. Nothing on the server is removed.
    pub async fn deleted(&mut self, key: &Key, at_ns: i64) -> Result<()> {
        self.conn
            .send(&Request::Deleted {
                key: key.to_string(),
                at_ns,
            })
            .await?;
        self.conn.flush().await?;
        match self.recv().await? {
            Response::Accepted => Ok(()),
            other => Err(unexpected("Accepted", other)),
        }
    }

    /// Streams one version's chunks to `sink`, verifying each chunk and the whole hash.
    pub async fn restore(
        &mut self,
        key: &Key,
        seq: u64,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<VersionInfo> {
        self.conn
            .send(&Request::Restore {
                key: key.to_string(),
                seq,
            })
            .await?;
        self.conn.flush().await?;
        let info = match self.recv().await? {
            Response::RestoreBegin { info } => info,
            other => return Err(unexpected("RestoreBegin", other)),
        };
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        // The chunk before, which a `PieceData` frame is compressed against.
        let mut previous: Vec<u8> = Vec::new();
        // The group sent last, which `FromGroup` takes chunks from.
        let mut group: Vec<u8> = Vec::new();
        loop {
            match self.recv().await? {
                Response::ChunkData { id, len, data } => {
                    let raw = hoover_chunk::open_verified(&id, len as u64, &data)
                        .with_context(|| format!("restoring {key} version {seq}"))?;
                    hasher.update(&raw);
                    size += raw.len() as u64;
                    sink(&raw)?;
                    previous = raw;
                }
                Response::PieceData { id, len, data } => {
                    let raw = hoover_chunk::decompress_against(&previous, &data, len as usize)
                        .map_err(anyhow::Error::from)
                        .and_then(|raw| {
                            let actual = ChunkId::of(&raw);
                            if raw.len() != len as usize || actual != id {
                                bail!("chunk {id} decoded to different bytes ({actual})");
                            }
                            Ok(raw)
                        })
                        .with_context(|| format!("restoring {key} version {seq}"))?;
                    hasher.update(&raw);
                    size += raw.len() as u64;
                    sink(&raw)?;
                    previous = raw;
                }
                Response::GroupData { len, data } => {
                    if len as usize > hoover_types::MAX_GROUP_BYTES {
                        bail!("restoring {key} version {seq}: the server sent a group of {len} bytes, over the {} limit", hoover_types::MAX_GROUP_BYTES);
                    }
                    group = hoover_chunk::decompress_exact(&data, len as usize)
                        .with_context(|| format!("restoring {key} version {seq}: a group"))?;
                }
                Response::FromGroup { id, len, at } => {
                    let raw = group
                        .get(at as usize..at as usize + len as usize)
                        .filter(|raw| ChunkId::of(raw) == id)
                        .map(<[u8]>::to_vec)
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "restoring {key} version {seq}: chunk {id} is not bytes {at}..+{len} of the group sent"
                            )
                        })?;
                    hasher.update(&raw);
                    size += raw.len() as u64;
                    sink(&raw)?;
                    previous = raw;
                }
                Response::RestoreEnd => break,
                other => return Err(unexpected("ChunkData", other)),
            }
        }
        if size != info.size || *hasher.finalize().as_bytes() != info.blake3 {
            bail!("{key} version {seq} did not reassemble to its recorded size and BLAKE3; run `hoover verify` on the server");
        }
        Ok(info)
    }

    pub async fn close(mut self) -> Result<()> {
        let _ = self.conn.shutdown().await;
        Ok(())
    }
}
