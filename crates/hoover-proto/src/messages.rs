//! The messages: the handshake's, the client's requests and the server's responses.

use super::*;

// BEGIN MESSAGES: a change between these markers must be reflected in docs/protocol.md.

/// The first frame from the client. Its layout is frozen for every protocol version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 8],
    pub major: u16,
    pub minor: u16,
    /// Free text naming the client program, e.g. `hoover 0.1.0`.
    pub agent: String,
}

/// The server's answer to [`Hello`]. Its layout is frozen for every protocol version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Welcome {
        major: u16,
        minor: u16,
        agent: String,
        /// What the connecting key may do.
        access: Access,
        /// The store's name, fixed when it was created.
        store_id: String,
    },
    Refused {
        message: String,
    },
}

/// What a connection may do, from the key's authorized_keys options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// Push new versions and read everything.
    Full,
    /// Push new versions only.
    PushOnly,
}

/// A version the client asks the server to record: `hoover_types::NewVersion` with the key as
/// the client sent it (a plain string, validated by the server, so that a bad key gets an error
/// that says what is wrong with it). Its new chunks are named one by one (`Request::Version`),
/// or from protocol 1.4 as runs of the chunks this batch received (`VersionPush<Run>`,
/// `Request::VersionRuns`). Fields, in order: key, size, blake3 (of the whole content),
/// mtime_ns, base (the latest version the client knows the server has, which this one
/// extends), kept (how many leading chunks of `base` this version keeps), chunks (the chunks
/// after the kept ones, in order).
pub type VersionPush<C = ChunkRef> = hoover_types::NewVersion<String, C>;

/// Some of a version's chunks (protocol 1.4): one named, or a run of those the batch
/// received, so that a new file's chunks, just sent, cost a few bytes instead of 36 each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Run {
    /// One chunk, by name (one the server holds, or was sent before in this batch).
    Chunk(ChunkRef),
    /// `count` chunks in the order the batch received them, from its `first` on (counting
    /// from 0 every chunk of every `Chunk`, `Piece`, `Appends`, `Group` and `Grouped` since the
    /// last `Commit`, in order of arrival).
    Received { first: u32, count: u32 },
}

/// Client to server, after the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Which of these chunks does the server lack? Answered by `Want`.
    Have { ids: Vec<ChunkId> },
    /// One chunk's bytes, zstd-compressed. No answer unless it is refused.
    Chunk {
        id: ChunkId,
        len: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Check a version; answered by `Accepted` or `Error`. Recorded at `Commit`.
    Version(VersionPush),
    /// Make the chunks and versions sent so far durable; answered by `Committed`.
    Commit,
    /// Files whose key starts with `prefix`, after the key `after`; answered by `Listing`.
    List {
        prefix: String,
        after: Option<String>,
        limit: u32,
    },
    /// Every version of one file; answered by `VersionList`.
    Versions { key: String },
    /// One version's content; answered by `RestoreBegin`, `ChunkData`..., `RestoreEnd`.
    Restore { key: String, seq: u64 },
    /// The file was deleted on the source; answered by `Accepted`. Nothing is removed.
    Deleted { key: String, at_ns: i64 },
    /// A full-text search (protocol 1.1); answered by `SearchResults`. `sort` is `relevance`,
    /// `newest` or `oldest`.
    Search {
        query: String,
        limit: u32,
        offset: u32,
        sort: String,
    },
    /// One chunk as a piece compressed against a base chunk the server holds or was sent
    /// before in this batch (protocol 1.2): `kind` says how `data` decodes against the base's
    /// bytes. No answer unless it is refused.
    Piece {
        id: ChunkId,
        len: u32,
        kind: hoover_types::PieceKind,
        base: ChunkId,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// One chunk as a piece that appends to `base` in `context` (protocol 1.3,
    /// `PieceKind::Appends`): the chunk is the base's bytes followed by the frame's, and the
    /// frame was compressed with the last 64 KiB of the context's bytes followed by the base's
    /// as its prefix. No answer unless it is refused.
    Appends {
        id: ChunkId,
        len: u32,
        base: ChunkId,
        context: ChunkId,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Chunks as a group (protocol 1.3): one zstd frame of their bytes back to back, at most
    /// `hoover_types::MAX_GROUP_BYTES` (to a server of 1.4 or older, `MAX_GROUP_BYTES_1_4`)
    /// and `MAX_GROUP_CHUNKS` of them. No answer unless it is refused.
    Group {
        chunks: Vec<ChunkRef>,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Chunks as a group the server names (protocol 1.4): like `Group`, with only each chunk's
    /// length; each is named by the BLAKE3 of its bytes. No answer unless it is refused.
    Grouped {
        lens: Vec<u32>,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Check a version whose chunks are runs (protocol 1.4); answered like `Version`.
    VersionRuns(VersionPush<Run>),
}

/// Server to client, after the handshake.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Indices into the `Have` list of the chunks the server lacks.
    Want {
        missing: Vec<u32>,
    },
    Accepted,
    Committed {
        versions: Vec<Committed>,
    },
    Listing {
        files: Vec<FileSummary>,
        more: bool,
    },
    VersionList {
        versions: Vec<VersionInfo>,
        deletions: Vec<Deletion>,
    },
    RestoreBegin {
        info: VersionInfo,
    },
    ChunkData {
        id: ChunkId,
        len: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    RestoreEnd,
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The answer to `Search` (protocol 1.1): the total number of matches and one page of hits.
    SearchResults {
        total: u64,
        hits: Vec<SearchHit>,
    },
    /// A restored chunk as stored (protocol 1.2, to clients of minor version 2 or later): one
    /// zstd frame compressed with the previous chunk of this restore (its last 64 KiB) as its
    /// prefix.
    PieceData {
        id: ChunkId,
        len: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A group of chunks as stored, in a restore (protocol 1.3, to clients of minor version 3
    /// or later): one zstd frame that decodes to `len` bytes (at most
    /// `hoover_types::MAX_GROUP_BYTES`; to a client of 1.4 or older, `MAX_GROUP_BYTES_1_4`),
    /// the chunks the next `FromGroup`s take.
    GroupData {
        len: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A restored chunk (protocol 1.3): bytes `at..at + len` of the last `GroupData`.
    FromGroup {
        id: ChunkId,
        len: u32,
        at: u32,
    },
}

/// Why a request failed. `fatal` codes close the connection after the `Error` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A frame or message could not be decoded, or came out of order. Fatal.
    Protocol,
    /// A chunk did not match its name, or decompressed past the limit. Fatal.
    BadChunk,
    /// A version was refused (missing chunks, wrong size, wrong hash). The rest goes on.
    Refused,
    /// A version's base is not the latest: push the whole chunk list again.
    StaleBase,
    NotFound,
    /// The key may not do this (see authorized_keys options).
    Forbidden,
    /// The server failed (disk full, I/O error); nothing of the request was recorded.
    Internal,
}

// END MESSAGES

/// A version whose chunks are runs (protocol 1.4).
pub trait ResolveRuns {
    /// The version with each run resolved against the chunks its batch `received`, in order;
    /// refused when a run names chunks the batch did not receive, or when the version would
    /// name more than `max` chunks (checked before anything is allocated).
    fn resolve(self, received: &[ChunkRef], max: usize) -> Result<VersionPush, String>;
}

impl ResolveRuns for VersionPush<Run> {
    /// The version with each run resolved against the chunks its batch `received`, in order;
    /// refused when a run names chunks the batch did not receive, or when the version would
    /// name more than `max` chunks (checked before anything is allocated).
    fn resolve(self, received: &[ChunkRef], max: usize) -> Result<VersionPush, String> {
        let mut total = 0usize;
        for run in &self.chunks {
            let n = match *run {
                Run::Chunk(_) => 1,
                Run::Received { first, count } => {
                    let end = first as u64 + count as u64;
                    if end > received.len() as u64 {
                        return Err(format!(
                            "{}: a run names chunks {first}..{end} of this batch, which has received {}",
                            self.key,
                            received.len()
                        ));
                    }
                    count as usize
                }
            };
            total = total.saturating_add(n);
        }
        if total > max {
            return Err(format!(
                "{}: the version names {total} chunks; at most {max} fit in a batch",
                self.key
            ));
        }
        let mut chunks = Vec::with_capacity(total);
        for run in &self.chunks {
            match *run {
                Run::Chunk(c) => chunks.push(c),
                Run::Received { first, count } => {
                    chunks.extend_from_slice(&received[first as usize..][..count as usize])
                }
            }
        }
        Ok(self.with_chunks(chunks))
    }
}

/// A version whose chunks are named.
pub trait IntoRuns {
    /// The same version with its chunks as runs: those whose name `received` maps to their
    /// place in the batch's received chunks become runs of consecutive places, the rest stay
    /// named.
    fn runs(self, received: impl Fn(&ChunkId) -> Option<u32>) -> VersionPush<Run>;
}

impl IntoRuns for VersionPush {
    fn runs(self, received: impl Fn(&ChunkId) -> Option<u32>) -> VersionPush<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for c in &self.chunks {
            let at = received(&c.id);
            if let (Some(at), Some(Run::Received { first, count })) = (at, runs.last_mut()) {
                if *first as u64 + *count as u64 == at as u64 {
                    *count += 1;
                    continue;
                }
            }
            runs.push(match at {
                Some(at) => Run::Received {
                    first: at,
                    count: 1,
                },
                None => Run::Chunk(*c),
            });
        }
        self.with_chunks(runs)
    }
}

impl ErrorCode {
    /// Whether the server closes the connection after sending this error.
    pub fn is_fatal(self) -> bool {
        matches!(self, ErrorCode::Protocol | ErrorCode::BadChunk)
    }
}
