//! hoover's wire protocol: frames, the handshake, and the request and response messages.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of a postcard-encoded
//! message; a length over [`MAX_FRAME`] is refused before anything is allocated. The first frame
//! each way is the handshake ([`Hello`], [`HelloReply`]), whose layout never changes, so that a
//! peer of another major version gets a clear message instead of garbage. Everything is
//! specified in `docs/protocol.md` (version [`PROTOCOL_MAJOR`].[`PROTOCOL_MINOR`]).
//!
//! [`Conn`] runs over any `AsyncRead + AsyncWrite`: an SSH channel in production, an in-memory
//! duplex in tests. This crate must never know about SSH or the store.

use hoover_types::{ChunkId, ChunkRef, Deletion, VersionInfo};
pub use hoover_types::{Committed, FileSummary, SearchHit};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Major protocol version: a peer with another major is refused at the handshake.
pub const PROTOCOL_MAJOR: u16 = 1;
/// Minor protocol version: additions that older peers of the same major can ignore.
pub const PROTOCOL_MINOR: u16 = 5;
/// The largest frame either side accepts, in bytes: room for a group of
/// `hoover_types::MAX_GROUP_BYTES` at zstd's worst case and its list of chunks (protocol 1.5;
/// 8 MiB before, which a peer of 1.4 or older still enforces).
pub const MAX_FRAME: usize = hoover_types::MAX_GROUP_BYTES + 1024 * 1024;
/// The most chunk ids in one `Have`.
pub const MAX_HAVE: usize = 65_536;
/// The most files in one `List` reply.
pub const MAX_LIST: u32 = 10_000;
/// Bytes that open every `Hello`.
pub const MAGIC: [u8; 8] = *b"hoover\r\n";

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

/// A version the client asks the server to record. Its new chunks are named one by one
/// (`Request::Version`), or from protocol 1.4 as runs of the chunks this batch received
/// (`VersionPush<Run>`, `Request::VersionRuns`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionPush<C = ChunkRef> {
    /// The file's key. Sent as a plain string and validated by the server, so that a bad key
    /// gets an error that says what is wrong with it.
    pub key: String,
    pub size: u64,
    pub blake3: [u8; 32],
    pub mtime_ns: i64,
    /// The latest version the client knows the server has, which this one extends.
    pub base: Option<u64>,
    /// How many leading chunks of `base` this version keeps.
    pub kept: u64,
    /// The chunks after the kept ones, in order.
    pub chunks: Vec<C>,
}

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

impl<C> VersionPush<C> {
    /// The same version with its chunks given another way.
    fn with_chunks<D>(self, chunks: Vec<D>) -> VersionPush<D> {
        VersionPush {
            key: self.key,
            size: self.size,
            blake3: self.blake3,
            mtime_ns: self.mtime_ns,
            base: self.base,
            kept: self.kept,
            chunks,
        }
    }
}

impl VersionPush<Run> {
    /// The version with each run resolved against the chunks its batch `received`, in order;
    /// refused when a run names chunks the batch did not receive, or when the version would
    /// name more than `max` chunks (checked before anything is allocated).
    pub fn resolve(self, received: &[ChunkRef], max: usize) -> Result<VersionPush, String> {
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

impl VersionPush {
    /// The same version with its chunks as runs: those whose name `received` maps to their
    /// place in the batch's received chunks become runs of consecutive places, the rest stay
    /// named.
    pub fn runs(self, received: impl Fn(&ChunkId) -> Option<u32>) -> VersionPush<Run> {
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

/// What can go wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The I/O error is in the message, not a `source`, so that error chains say it once.
    #[error("connection: {0}")]
    Io(std::io::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    FrameTooLarge(u64),
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("{0}")]
    Handshake(String),
    /// The peer went quiet in the middle of something (see [`Conn::recv_within`]).
    #[error("{0}")]
    TimedOut(String),
}

impl From<std::io::Error> for ProtoError {
    fn from(e: std::io::Error) -> Self {
        ProtoError::Io(e)
    }
}

/// Reads one frame's payload. Refuses an oversize length before reading on, and allocates as
/// the bytes arrive, so a peer that announces a large frame and stalls holds little memory.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, ProtoError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ProtoError::Closed),
        Err(e) => return Err(e.into()),
    }
    read_payload(r, u32::from_be_bytes(len) as u64).await
}

/// Reads a payload of `len` bytes whose length prefix has been read.
async fn read_payload<R: AsyncRead + Unpin>(r: &mut R, len: u64) -> Result<Vec<u8>, ProtoError> {
    if len > MAX_FRAME as u64 {
        return Err(ProtoError::FrameTooLarge(len));
    }
    let mut buf = Vec::with_capacity((len as usize).min(READ_STEP));
    let got = (&mut *r).take(len).read_to_end(&mut buf).await?;
    if (got as u64) < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the frame ended after {got} of its {len} bytes"),
        )
        .into());
    }
    Ok(buf)
}

/// How much of a frame is allocated ahead of its bytes arriving.
const READ_STEP: usize = 64 * 1024;

/// Encodes a message as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    let body = postcard::to_extend(msg, Vec::new()).expect("postcard encoding into a Vec");
    out.extend_from_slice(&body);
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Decodes a frame's payload.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtoError> {
    postcard::from_bytes(payload).map_err(|e| ProtoError::Decode(e.to_string()))
}

/// A framed connection over any byte stream, counting bytes each way.
pub struct Conn<S> {
    stream: S,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Conn {
            stream,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ProtoError> {
        let frame = encode(msg);
        if frame.len() - 4 > MAX_FRAME {
            return Err(ProtoError::FrameTooLarge(frame.len() as u64 - 4));
        }
        self.stream.write_all(&frame).await?;
        self.bytes_sent += frame.len() as u64;
        Ok(())
    }

    /// Sends raw bytes as they are (tests use it to send broken frames).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ProtoError> {
        self.stream.write_all(bytes).await?;
        self.bytes_sent += bytes.len() as u64;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), ProtoError> {
        self.stream.flush().await?;
        Ok(())
    }

    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ProtoError> {
        let payload = read_frame(&mut self.stream).await?;
        self.bytes_received += payload.len() as u64 + 4;
        decode(&payload)
    }

    /// Receives one message with deadlines: its first byte must come within `wait` (`None`:
    /// wait as long as it takes, as for an idle agent), and the rest of the frame within
    /// `stall` of that first byte. A peer that misses either gets [`ProtoError::TimedOut`].
    pub async fn recv_within<T: DeserializeOwned>(
        &mut self,
        wait: Option<Duration>,
        stall: Duration,
    ) -> Result<T, ProtoError> {
        let mut first = [0u8; 1];
        let read = self.stream.read(&mut first);
        let n = match wait {
            None => read.await?,
            Some(w) => tokio::time::timeout(w, read).await.map_err(|_| {
                ProtoError::TimedOut(format!("the peer sent nothing for {} s", w.as_secs()))
            })??,
        };
        if n == 0 {
            return Err(ProtoError::Closed);
        }
        let stream = &mut self.stream;
        let rest = async move {
            let mut more = [0u8; 3];
            stream.read_exact(&mut more).await?;
            let len = u32::from_be_bytes([first[0], more[0], more[1], more[2]]) as u64;
            read_payload(stream, len).await
        };
        let payload = tokio::time::timeout(stall, rest).await.map_err(|_| {
            ProtoError::TimedOut(format!(
                "a frame was begun but not finished within {} s",
                stall.as_secs()
            ))
        })??;
        self.bytes_received += payload.len() as u64 + 4;
        decode(&payload)
    }

    /// Sends one message and flushes it, giving up after `stall` (a peer that does not read).
    pub async fn send_within<T: Serialize>(
        &mut self,
        msg: &T,
        stall: Duration,
    ) -> Result<(), ProtoError> {
        let send = async {
            self.send(msg).await?;
            self.flush().await
        };
        tokio::time::timeout(stall, send).await.map_err(|_| {
            ProtoError::TimedOut(format!(
                "the peer read nothing of a reply for {} s",
                stall.as_secs()
            ))
        })?
    }

    pub async fn shutdown(&mut self) -> Result<(), ProtoError> {
        self.stream.shutdown().await?;
        Ok(())
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

/// The client side of the handshake.
/// What the server said of itself at the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's protocol minor version: requests newer than it must not be sent.
    pub minor: u16,
    pub access: Access,
    pub store_id: String,
    pub agent: String,
}

pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    agent: &str,
) -> Result<ServerInfo, ProtoError> {
    conn.send(&Hello {
        magic: MAGIC,
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        agent: agent.to_string(),
    })
    .await?;
    conn.flush().await?;
    match conn.recv::<HelloReply>().await? {
        HelloReply::Welcome {
            major,
            minor,
            access,
            store_id,
            agent,
        } if major == PROTOCOL_MAJOR => Ok(ServerInfo {
            minor,
            access,
            store_id,
            agent,
        }),
        HelloReply::Welcome { major, minor, .. } => Err(ProtoError::Handshake(format!(
            "client speaks protocol {PROTOCOL_MAJOR}.x, server speaks {major}.{minor}; upgrade the older side"
        ))),
        HelloReply::Refused { message } => Err(ProtoError::Handshake(message)),
    }
}

/// The server side of the handshake: reads `Hello`, answers, and returns it when accepted.
pub async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    agent: &str,
    access: Access,
    store_id: &str,
) -> Result<Hello, ProtoError> {
    let hello: Hello = conn.recv().await?;
    if hello.magic != MAGIC {
        let message = "not a hoover client (bad magic in the first frame)".to_string();
        conn.send(&HelloReply::Refused {
            message: message.clone(),
        })
        .await?;
        conn.flush().await?;
        return Err(ProtoError::Handshake(message));
    }
    if hello.major != PROTOCOL_MAJOR {
        let (older, fix) = if hello.major > PROTOCOL_MAJOR {
            ("server", "upgrade the server")
        } else {
            ("client", "upgrade the client")
        };
        let message = format!(
            "client speaks protocol {}.x, server speaks {PROTOCOL_MAJOR}.x; the {older} is older: {fix}",
            hello.major
        );
        conn.send(&HelloReply::Refused {
            message: message.clone(),
        })
        .await?;
        conn.flush().await?;
        return Err(ProtoError::Handshake(message));
    }
    conn.send(&HelloReply::Welcome {
        major: PROTOCOL_MAJOR,
        minor: PROTOCOL_MINOR,
        agent: agent.to_string(),
        access,
        store_id: store_id.to_string(),
    })
    .await?;
    conn.flush().await?;
    Ok(hello)
}

/// Harnesses shared by the fuzz targets (`fuzz/`) and the tests that replay what fuzzing found
/// (`fuzz/regressions/`). Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Reads frames from `data` as a server reads a connection, decoding each as a `Request`
    /// (and the first as a `Hello`), until the first error. Must never panic.
    pub fn read_all_requests(data: &[u8]) {
        let mut reader = data;
        let mut first = true;
        loop {
            let mut read = std::pin::pin!(read_frame(&mut reader));
            let mut cx = Context::from_waker(Waker::noop());
            match read.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(payload)) => {
                    if first {
                        let _ = decode::<Hello>(&payload);
                        first = false;
                    }
                    let _ = decode::<Request>(&payload);
                }
                Poll::Ready(Err(_)) => return,
                Poll::Pending => unreachable!("a byte slice is always ready"),
            }
        }
    }

    /// Decodes `data` as every message type; whatever decodes must encode and decode back to
    /// the same encoding (compared as bytes, so a NaN score counts as itself).
    pub fn decode_every_message(data: &[u8]) {
        fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) {
            if let Ok(m) = decode::<T>(data) {
                let bytes = encode(&m);
                let again: T = decode(&bytes[4..]).expect("an encoded message decodes");
                assert_eq!(encode(&again), bytes, "a message re-encodes the same");
            }
        }
        round_trip::<Hello>(data);
        round_trip::<HelloReply>(data);
        round_trip::<Request>(data);
        round_trip::<Response>(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a over the message definitions, ignoring whitespace, so that a change to a message
    /// fails this test until `docs/protocol.md` is updated with it.
    fn messages_hash() -> String {
        let src = include_str!("lib.rs");
        let start = src.find("// BEGIN MESSAGES").unwrap();
        let end = src.find("// END MESSAGES").unwrap();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in src[start..end].bytes().filter(|b| !b.is_ascii_whitespace()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        format!("{h:016x}")
    }

    #[test]
    fn protocol_doc_matches_the_messages() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/protocol.md"
        ))
        .unwrap();
        let hash = messages_hash();
        assert!(
            doc.contains(&format!("Message source hash: `{hash}`")),
            "the wire messages changed: update docs/protocol.md (and PROTOCOL_MINOR or PROTOCOL_MAJOR), then set its last line to: Message source hash: `{hash}`"
        );
        assert!(doc.contains(&format!(
            "**Protocol version {PROTOCOL_MAJOR}.{PROTOCOL_MINOR}**"
        )));
    }

    #[tokio::test]
    async fn round_trip_over_duplex() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut a = Conn::new(a);
        let mut b = Conn::new(b);
        let msg = Request::Have {
            ids: vec![ChunkId::of(b"x")],
        };
        a.send(&msg).await.unwrap();
        assert_eq!(b.recv::<Request>().await.unwrap(), msg);
        assert_eq!(a.bytes_sent, b.bytes_received);
    }

    #[tokio::test]
    async fn oversize_frame_is_refused_before_allocation() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut a = Conn::new(a);
        let mut b = Conn::new(b);
        a.send_raw(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            b.recv::<Request>().await,
            Err(ProtoError::FrameTooLarge(n)) if n == u32::MAX as u64
        ));
    }

    #[tokio::test]
    async fn garbage_is_a_decode_error() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut a = Conn::new(a);
        let mut b = Conn::new(b);
        a.send_raw(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await.unwrap();
        assert!(matches!(
            b.recv::<Request>().await,
            Err(ProtoError::Decode(_))
        ));
    }

    /// The server's refusal of `hello`, read after the server's side has gone (only a
    /// flushed reply arrives).
    async fn refusal_for(hello: Hello) -> String {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut client = Conn::new(a);
        let mut server = Conn::new(b);
        let server_task =
            tokio::spawn(
                async move { server_handshake(&mut server, "test", Access::Full, "s").await },
            );
        client.send(&hello).await.unwrap();
        client.flush().await.unwrap();
        assert!(server_task.await.unwrap().is_err());
        match client.recv::<HelloReply>().await.unwrap() {
            HelloReply::Refused { message } => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn other_major_is_refused_with_the_fix() {
        let message = refusal_for(Hello {
            magic: MAGIC,
            major: PROTOCOL_MAJOR + 1,
            minor: 0,
            agent: "future".into(),
        })
        .await;
        assert!(message.contains("upgrade the server"), "{message}");
    }

    #[tokio::test]
    async fn bad_magic_is_refused_with_a_reply_that_arrives() {
        let message = refusal_for(Hello {
            magic: *b"NOTHOOVR",
            major: PROTOCOL_MAJOR,
            minor: 0,
            agent: "stranger".into(),
        })
        .await;
        assert!(message.contains("bad magic"), "{message}");
    }

    fn refs(n: u8) -> Vec<ChunkRef> {
        (0..n)
            .map(|i| ChunkRef {
                id: ChunkId::of(&[i]),
                len: 1,
            })
            .collect()
    }

    fn push(chunks: Vec<ChunkRef>) -> VersionPush {
        VersionPush {
            key: "s/a.jsonl".into(),
            size: chunks.len() as u64,
            blake3: [0; 32],
            mtime_ns: 0,
            base: None,
            kept: 0,
            chunks,
        }
    }

    #[test]
    fn runs_name_received_chunks_in_few_bytes_and_resolve_to_the_same_version() {
        let received = refs(10);
        let held = ChunkRef {
            id: ChunkId::of(b"held"),
            len: 4,
        };
        // Chunks 2..6 of the batch, one the server held, 6..8, then 1 (out of order).
        let mut chunks = received[2..6].to_vec();
        chunks.push(held);
        chunks.extend_from_slice(&received[6..8]);
        chunks.push(received[1]);
        let version = push(chunks);
        let place = |id: &ChunkId| received.iter().position(|c| c.id == *id).map(|i| i as u32);
        let runs = version.clone().runs(place);
        assert_eq!(
            runs.chunks,
            vec![
                Run::Received { first: 2, count: 4 },
                Run::Chunk(held),
                Run::Received { first: 6, count: 2 },
                Run::Received { first: 1, count: 1 },
            ]
        );
        assert!(
            encode(&Request::VersionRuns(runs.clone())).len()
                < encode(&Request::Version(version.clone())).len() / 3
        );
        assert_eq!(runs.resolve(&received, 100), Ok(version));
    }

    #[test]
    fn a_run_past_what_the_batch_received_or_past_the_bound_is_refused_before_allocating() {
        let received = refs(4);
        let runs = |chunks: Vec<Run>| VersionPush {
            key: "s/a.jsonl".into(),
            size: 0,
            blake3: [0; 32],
            mtime_ns: 0,
            base: None,
            kept: 0,
            chunks,
        };
        let past = runs(vec![Run::Received { first: 3, count: 2 }]);
        let e = past.resolve(&received, 100).unwrap_err();
        assert!(
            e.contains("chunks 3..5 of this batch, which has received 4"),
            "{e}"
        );
        let wraps = runs(vec![Run::Received {
            first: u32::MAX,
            count: u32::MAX,
        }]);
        assert!(wraps.resolve(&received, 100).is_err());
        // A few bytes that would expand to billions of chunk names.
        let bomb = runs(vec![Run::Received { first: 0, count: 4 }; 1_000_000]);
        let e = bomb.resolve(&received, 1 << 20).unwrap_err();
        assert!(e.contains("names 4000000 chunks; at most 1048576"), "{e}");
    }

    #[test]
    fn server_keys_in_responses_are_validated_on_decode() {
        // Committed { versions: [Committed { key: "../x", seq: 1, new: true }] }
        let bad = postcard::to_allocvec(&(2u8, 1u8, "../x".to_string(), 1u64, true)).unwrap();
        assert!(decode::<Response>(&bad).is_err());
        let good = postcard::to_allocvec(&(2u8, 1u8, "a/x".to_string(), 1u64, true)).unwrap();
        assert!(decode::<Response>(&good).is_ok());
    }
}
