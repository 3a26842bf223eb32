//! Shared vocabulary of hoover: file keys, chunk ids and size limits.
//!
//! This crate is tiny on purpose. It holds only what both ends of the wire and the store must
//! agree on, validated at construction so that no other crate has to re-check a key or an id.
//! It must never do I/O or depend on an async runtime.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest chunk, uncompressed, that the chunker cuts and the server accepts.
pub const MAX_CHUNK_SIZE: usize = 256 * 1024;
/// Content-defined chunking sizes (see `docs/store.md` for how they were chosen).
pub const CHUNK_MIN: u32 = 8 * 1024;
/// Average chunk size aimed at by the chunker.
pub const CHUNK_AVG: u32 = 32 * 1024;
/// Hard upper bound the chunker cuts at.
pub const CHUNK_MAX: u32 = 128 * 1024;
/// The most uncompressed bytes in one group of chunks (a first sync's chunks, back to back in
/// one zstd frame), that the client sends and the server accepts (protocol 1.5, store format
/// 4; see `docs/store.md` for how it was chosen).
pub const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// The most a group held in protocol 1.3 and 1.4: what a peer of those versions accepts.
pub const MAX_GROUP_BYTES_1_4: usize = 1024 * 1024;

/// The outcome of one version in a committed batch: the store's answer to a commit and the
/// wire's (`Response::Committed`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub key: Key,
    pub seq: u64,
    /// False when the content equalled the latest version, so no version was added.
    pub new: bool,
}

/// A new version of a file as a client describes it, which the store records at commit: the
/// store's (`Batch::add_version`: a checked [`Key`], every chunk named) and the wire's
/// (`Request::Version` and `VersionRuns`, `hoover_proto::VersionPush`: the key as the client
/// sent it, so that the server can say what is wrong with a bad one, and from protocol 1.4 the
/// chunks as runs of those the batch received).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVersion<K = Key, C = ChunkRef> {
    pub key: K,
    pub size: u64,
    /// Of the whole content.
    pub blake3: [u8; 32],
    pub mtime_ns: i64,
    /// The latest version the client knows the server has, which this one extends (must be
    /// the latest), or `None` for a full chunk list.
    pub base: Option<u64>,
    /// How many leading chunks of `base` this version keeps.
    pub kept: u64,
    /// The chunks after the kept ones, in order.
    pub chunks: Vec<C>,
}

impl<K, C> NewVersion<K, C> {
    /// The same version with its chunks given another way.
    pub fn with_chunks<D>(self, chunks: Vec<D>) -> NewVersion<K, D> {
        NewVersion {
            key: self.key,
            size: self.size,
            blake3: self.blake3,
            mtime_ns: self.mtime_ns,
            base: self.base,
            kept: self.kept,
            chunks,
        }
    }

    /// The same version with its key given another way (the wire's string, checked).
    pub fn with_key<L>(self, key: L) -> NewVersion<L, C> {
        NewVersion {
            key,
            size: self.size,
            blake3: self.blake3,
            mtime_ns: self.mtime_ns,
            base: self.base,
            kept: self.kept,
            chunks: self.chunks,
        }
    }
}

/// One stored file and its latest version: a store listing and the wire's
/// (`Response::Listing`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub key: Key,
    pub versions: u64,
    pub latest: VersionInfo,
}

/// One message a search found: the index's answer, the page's and the wire's
/// (`Response::SearchResults`). Its text is redacted unless the server turned redaction off.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub key: String,
    pub session: Option<String>,
    pub uuid: Option<String>,
    pub role: String,
    pub kind: String,
    pub tool: Option<String>,
    pub project: Option<String>,
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// The version where the message was first seen, and its line there.
    pub seq: u64,
    pub line: u64,
    pub score: f32,
    /// A piece of the (redacted) text around the matched words.
    pub snippet: String,
    /// Byte ranges of `snippet` that matched.
    pub highlights: Vec<[u32; 2]>,
}

/// The largest group a peer of protocol 1.`minor` takes, in bytes (none before 1.3).
pub fn max_group_bytes(minor: u16) -> usize {
    match minor {
        0..=2 => 0,
        3 | 4 => MAX_GROUP_BYTES_1_4,
        _ => MAX_GROUP_BYTES,
    }
}
/// The most chunks in one group.
pub const MAX_GROUP_CHUNKS: usize = 1024;
/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// The BLAKE3 hash of a chunk's uncompressed bytes; a chunk's name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Names `data` by its BLAKE3 hash.
    pub fn of(data: &[u8]) -> Self {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ChunkId(out))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is empty")]
    Empty,
    #[error("key is {0} bytes long; the limit is {MAX_KEY_LEN}")]
    TooLong(usize),
    #[error("key {0:?} contains a NUL or control character")]
    Control(String),
    #[error("key {0:?} starts with '/'; keys are relative names like source/root/path")]
    Absolute(String),
    #[error("key {0:?} has an empty, '.' or '..' component")]
    BadComponent(String),
    #[error("key {0:?} contains a backslash")]
    Backslash(String),
}

/// A file's name on the server: `<source>/<root name>/<path relative to the root>`.
///
/// A key is a name, never a server path: it is validated to hold only non-empty components
/// separated by `/`, none of them `.` or `..`, with no NUL, control characters or backslashes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(String);

impl Key {
    /// Validates `s` as a key.
    pub fn new(s: impl Into<String>) -> Result<Self, KeyError> {
        let s = s.into();
        validate_key(&s)?;
        Ok(Key(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first component: the machine the file came from.
    pub fn source(&self) -> &str {
        self.0.split('/').next().unwrap_or("")
    }

    /// Whether this is a probe `hoover doctor` pushed ([`PROBE_SOURCE`]): stored like any file,
    /// but not listed, counted, indexed or shown as a source.
    pub fn is_probe(&self) -> bool {
        self.source() == PROBE_SOURCE
    }

    /// The probe key of `source`: `.hoover-probe/doctor/SOURCE.txt`.
    pub fn probe_for(source: &str) -> Result<Key, KeyError> {
        Key::new(format!("{PROBE_SOURCE}/doctor/{source}.txt"))
    }

    /// The source a probe key is for (`SOURCE` of `.hoover-probe/doctor/SOURCE.txt`), so that a
    /// key bound to its sources may probe for those and no others.
    pub fn probe_of(&self) -> Option<&str> {
        self.0
            .strip_prefix(PROBE_SOURCE)?
            .strip_prefix("/doctor/")?
            .strip_suffix(".txt")
            .filter(|s| !s.is_empty() && !s.contains('/'))
    }
}

/// Bytes for people: `812 B`, `96.6 KB`, `1.2 GB` (decimal units), as the web page and the
/// command line both show them.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The source reserved for `hoover doctor`'s test pushes.
pub const PROBE_SOURCE: &str = ".hoover-probe";

fn validate_key(s: &str) -> Result<(), KeyError> {
    if s.is_empty() {
        return Err(KeyError::Empty);
    }
    if s.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(s.len()));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(KeyError::Control(s.escape_debug().to_string()));
    }
    if s.starts_with('/') {
        return Err(KeyError::Absolute(s.to_string()));
    }
    if s.contains('\\') {
        return Err(KeyError::Backslash(s.to_string()));
    }
    if s.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(KeyError::BadComponent(s.to_string()));
    }
    Ok(())
}

impl TryFrom<String> for Key {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        Key::new(s)
    }
}

impl From<Key> for String {
    fn from(k: Key) -> String {
        k.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One chunk of a version's content, in order: its id and uncompressed length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// How a chunk's frame decodes (on the wire and in the store): on its own, or against a base
/// chunk, whose last bytes (up to 64 KiB) are the frame's zstd prefix. The numbers are the codes
/// on disk and on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum PieceKind {
    /// The frame is the whole chunk.
    Alone = 0,
    /// The chunk is the base's bytes followed by the frame's: what an append to a file's last
    /// chunk costs is the appended bytes.
    Extends = 1,
    /// The chunk is the frame's bytes, compressed knowing the base (the chunk before it in the
    /// file): a new chunk costs what the text before it does not already say.
    Follows = 2,
    /// Like `Extends`, but the frame was compressed with the end of a *context* chunk (the
    /// chunk before the base in the file) and the base's bytes as its prefix (store format 3):
    /// an append just after a cut, whose base is short, still costs what the text before it
    /// does not already say.
    Appends = 3,
    /// The chunk is a slice of a *group*: one zstd frame of several chunks back to back (store
    /// format 3), which a first sync sends so that its chunks, of one file or several, share
    /// one compression context instead of each paying for its own.
    Grouped = 4,
}

impl PieceKind {
    pub fn from_code(code: i64) -> Option<PieceKind> {
        match code {
            0 => Some(PieceKind::Alone),
            1 => Some(PieceKind::Extends),
            2 => Some(PieceKind::Follows),
            3 => Some(PieceKind::Appends),
            4 => Some(PieceKind::Grouped),
            _ => None,
        }
    }
}

/// What the server knows of one stored version of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// 1 for the first version of a key, then 2, 3, ...
    pub seq: u64,
    pub size: u64,
    pub blake3: [u8; 32],
    /// The file's modification time on the source, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// When the server committed this version, nanoseconds since the Unix epoch.
    pub received_at_ns: i64,
    pub chunk_count: u64,
}

/// A file deleted on its source after version `after_seq`. Nothing on the server is removed:
/// the deletion is a recorded event, and every version stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub after_seq: u64,
    /// When the source noticed the deletion, nanoseconds since the Unix epoch.
    pub at_ns: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_key_names_its_source() {
        let k = Key::probe_for("lap").unwrap();
        assert_eq!(k.as_str(), ".hoover-probe/doctor/lap.txt");
        assert!(k.is_probe());
        assert_eq!(k.probe_of(), Some("lap"));
        for other in [
            ".hoover-probe/x/lap.txt",
            ".hoover-probe/doctor/a/lap.txt",
            "lap/doctor/lap.txt",
        ] {
            assert_eq!(Key::new(other).unwrap().probe_of(), None, "{other}");
        }
    }

    #[test]
    fn good_keys_pass() {
        for k in [
            "laptop/claude/-home-a/x.jsonl",
            "a",
            "a/b c/d.e",
            "m/ü/名前.jsonl",
        ] {
            assert!(Key::new(k).is_ok(), "{k}");
        }
    }

    #[test]
    fn hostile_keys_are_refused() {
        let long = "a/".repeat(3000);
        type Check = fn(&KeyError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, KeyError::Empty)),
            ("/etc/passwd", |e| matches!(e, KeyError::Absolute(_))),
            ("a/../../etc", |e| matches!(e, KeyError::BadComponent(_))),
            ("..", |e| matches!(e, KeyError::BadComponent(_))),
            ("a/./b", |e| matches!(e, KeyError::BadComponent(_))),
            ("a//b", |e| matches!(e, KeyError::BadComponent(_))),
            ("a/b/", |e| matches!(e, KeyError::BadComponent(_))),
            ("a\0b", |e| matches!(e, KeyError::Control(_))),
            ("a\nb", |e| matches!(e, KeyError::Control(_))),
            ("a\\..\\b", |e| matches!(e, KeyError::Backslash(_))),
            (&long, |e| matches!(e, KeyError::TooLong(_))),
        ];
        for (k, check) in cases {
            let err = Key::new(*k).unwrap_err();
            assert!(check(&err), "{k:?} gave {err:?}");
        }
    }

    #[test]
    fn conversion_from_string_validates() {
        assert!(Key::try_from("../x".to_string()).is_err());
        assert!(Key::try_from("a/b".to_string()).is_ok());
    }

    #[test]
    fn chunk_id_hex_round_trip() {
        let id = ChunkId::of(b"hello");
        assert_eq!(ChunkId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(ChunkId::from_hex("zz"), None);
    }
}
