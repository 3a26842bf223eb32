//! Reads: searches and restores, for keys with read rights.

use super::*;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn search(
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

    pub(super) async fn restore(
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
                let (chunks, reader) = s.version_frames(&k, seq)?;
                Ok((info, chunks, reader))
            })
            .await;
        let (info, chunks, reader) = match found {
            Ok(x) => x,
            Err(f) => return Ok(Err(f)),
        };
        self.send_part(&Response::RestoreBegin { info }).await?;
        let mut reader = Some(reader);
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
