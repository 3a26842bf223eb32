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
//!
//! Modules: `messages` (every message; its definitions are hashed by a test against
//! `docs/protocol.md`), `frame` (frames and [`Conn`]), `handshake`; this file holds the
//! versions, the limits and the errors.

use hoover_types::{ChunkId, ChunkRef, Deletion, VersionInfo};
pub use hoover_types::{Committed, FileSummary, SearchHit};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod frame;
mod handshake;
mod messages;

pub use frame::{decode, encode, read_frame, Conn};
pub use handshake::{client_handshake, server_handshake, ServerInfo};
pub use messages::*;

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
        let src = include_str!("messages.rs");
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
