//! The full-text index of every chat: a tantivy index derived from the store.
//!
//! [`Index::open`] opens (or creates) the index directory and hands out one [`Writer`], which is
//! fed the bytes of stored versions and commits them in batches ([`Writer::commit_due`]), and
//! any number of searches ([`Index::search`]) and counter snapshots ([`Index::counters`]).
//!
//! The index is a derived view: it never holds anything the store does not, and a missing,
//! corrupt or older-schema index is wiped and rebuilt by feeding the store's versions again.
//! Each stored file has a progress record (the version and byte offset indexed so far) committed
//! together with its messages, so an appended version costs only its new lines. A message seen
//! again (the same `uuid` in a resumed session, a rewritten file) is indexed once, where it was
//! first seen. This crate must never know the store, SSH or HTTP.

mod query;
pub mod redact;
mod schema;
pub mod source;
mod stats;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tantivy::collector::DocSetCollector;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

pub use query::{
    Hit, SearchRequest, SearchResults, SessionBrief, Sort, StoredMessage, MAX_LIMIT,
    MAX_QUERY_BYTES, MAX_QUERY_TERMS, MAX_WINDOW,
};
pub use schema::SCHEMA_VERSION;
pub use source::{Record, Source};
pub use stats::{Counters, HourCount, TokenDay};

use schema::Fields;
use stats::{Counted, Stats};

/// How long new messages may wait before a commit makes them searchable.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(1000);
/// How often a bulk rebuild (catch-up, `hoover reindex`) commits: fewer, larger segments.
pub const BULK_COMMIT_INTERVAL: Duration = Duration::from_secs(10);
/// Index writer memory, split across its threads.
const WRITER_MEMORY: usize = 256 * 1024 * 1024;
const WRITER_THREADS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("index query: {0}")]
    Query(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another process holds the index's writer lock.
    #[error("the index at {0} is in use by another process (is `hoover serve` running on this store?); stop it first")]
    Busy(PathBuf),
    /// Reading the version to index failed (the caller's error, as text).
    #[error("{0}")]
    Source(String),
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// What [`Index::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// An index of this schema; feed it only what it lacks.
    Existing,
    /// There was no index: feed it everything.
    Created,
    /// The index was unreadable or of another schema; it was wiped, feed it everything.
    Rebuilt { reason: String },
}

/// Options that change what is indexed.
#[derive(Clone, Copy, Debug)]
pub struct IndexOptions {
    /// Replace well-known secret shapes in the index text (default on).
    pub redact: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions { redact: true }
    }
}

/// How far one stored file has been indexed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The last version indexed.
    pub seq: u64,
    /// Its size.
    pub size: u64,
    /// Bytes up to the end of its last complete line: the next version resumes here.
    pub done: u64,
    /// Complete lines up to `done`.
    pub lines: u64,
    /// Malformed lines seen in this file so far.
    pub malformed: u64,
}

impl Progress {
    fn encode(&self, key: &str) -> String {
        format!(
            "{} {} {} {} {}\t{key}",
            self.seq, self.size, self.done, self.lines, self.malformed
        )
    }

    fn decode(text: &str) -> Option<(String, Progress)> {
        let (nums, key) = text.split_once('\t')?;
        let n: Vec<u64> = nums
            .split(' ')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let [seq, size, done, lines, malformed] = n[..] else {
            return None;
        };
        Some((
            key.to_string(),
            Progress {
                seq,
                size,
                done,
                lines,
                malformed,
            },
        ))
    }
}

/// One stored version, described for the index.
#[derive(Clone, Debug)]
pub struct VersionMeta<'a> {
    pub key: &'a str,
    pub seq: u64,
    pub size: u64,
    /// Stands in for records without a timestamp.
    pub mtime_ms: i64,
}

/// What indexing one version did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Indexed {
    pub records: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub bytes: u64,
}

/// An open index: searches and counters. Cheap to clone.
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

struct Inner {
    index: tantivy::Index,
    reader: IndexReader,
    fields: Fields,
    stats: Mutex<Stats>,
}

const MARKER: &str = "HOOVER_INDEX";

impl Index {
    /// Opens the index in `dir`, creating it, or wiping and recreating it when it is unreadable
    /// or of another schema version. Returns the index, its only writer, and what was found.
    pub fn open(dir: &Path, options: IndexOptions) -> Result<(Index, Writer, Opened)> {
        let marker = dir.join(MARKER);
        let want = format!("hoover-index {SCHEMA_VERSION}\n");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IndexError::Io { path, source }
        };
        let mut opened = Opened::Existing;
        match std::fs::read_to_string(&marker) {
            Ok(found) if found == want => {}
            Ok(found) => {
                opened = Opened::Rebuilt {
                    reason: format!(
                        "the index is {:?}, this hoover writes {:?}",
                        found.trim(),
                        want.trim()
                    ),
                }
            }
            Err(_) if dir.exists() && dir.read_dir().map_err(io(dir))?.next().is_some() => {
                opened = Opened::Rebuilt {
                    reason: "the index has no schema marker".into(),
                }
            }
            Err(_) => opened = Opened::Created,
        }
        if opened == Opened::Existing {
            match Self::open_existing(dir, options) {
                Ok(x) => return Ok((x.0, x.1, Opened::Existing)),
                Err(IndexError::Tantivy(tantivy::TantivyError::LockFailure(..))) => {
                    return Err(IndexError::Busy(dir.to_path_buf()))
                }
                Err(e) => {
                    opened = Opened::Rebuilt {
                        reason: format!("the index could not be opened ({e})"),
                    }
                }
            }
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (schema, _) = schema::build();
        tantivy::Index::create_in_dir(dir, schema)?;
        std::fs::write(&marker, want).map_err(io(&marker))?;
        let (index, writer) = Self::open_existing(dir, options)?;
        Ok((index, writer, opened))
    }

    fn open_existing(dir: &Path, options: IndexOptions) -> Result<(Index, Writer)> {
        let index = tantivy::Index::open_in_dir(dir)?;
        let (want_schema, fields) = schema::build();
        if index.schema() != want_schema {
            return Err(IndexError::Query("the index schema differs".into()));
        }
        schema::register_tokenizers(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let writer: IndexWriter<TantivyDocument> =
            index.writer_with_num_threads(WRITER_THREADS, WRITER_MEMORY)?;
        let inner = Arc::new(Inner {
            index,
            reader,
            fields,
            stats: Mutex::new(Stats::default()),
        });
        let index = Index { inner };
        let mut w = Writer {
            index: index.clone(),
            writer,
            options,
            progress: HashMap::new(),
            dirty: HashSet::new(),
            seen: HashSet::new(),
            message_ids: HashSet::new(),
            pending_since: None,
            logged_malformed: HashSet::new(),
            added: None,
        };
        w.load()?;
        Ok((index, w))
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        let now = jiff::Timestamp::now().as_millisecond();
        self.inner.stats.lock().expect("stats lock").snapshot(now)
    }

    /// Runs a query; see [`SearchRequest`] for the syntax.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResults> {
        query::search(self, request)
    }

    /// Messages and progress records committed and visible to searches.
    pub fn num_docs(&self) -> u64 {
        self.inner.reader.searcher().num_docs()
    }
}

/// The index's only writer. Feed it versions in the order the store committed them.
pub struct Writer {
    index: Index,
    writer: IndexWriter<TantivyDocument>,
    options: IndexOptions,
    progress: HashMap<String, Progress>,
    dirty: HashSet<String>,
    /// Every indexed record's identity, so a record seen again is skipped.
    seen: HashSet<u64>,
    /// API responses whose token usage has been counted.
    message_ids: HashSet<u64>,
    pending_since: Option<Instant>,
    logged_malformed: HashSet<String>,
    /// Messages added since the last [`Writer::take_added`], when capturing (the live feed).
    added: Option<Vec<Added>>,
}

/// A message just added to the index, for a live feed: the message as a session page would
/// show it, its text cut at [`ADDED_TEXT_MAX`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Added {
    #[serde(flatten)]
    pub message: StoredMessage,
    /// True when `message.text` was cut.
    pub truncated: bool,
}

/// The most text an [`Added`] message carries.
pub const ADDED_TEXT_MAX: usize = 4096;

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let bytes = h.finalize();
    let n = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"));
    n.max(1)
}

impl Writer {
    /// Rebuilds progress, identities and counters from what is committed.
    fn load(&mut self) -> Result<()> {
        let f = self.index.inner.fields;
        let searcher = self.index.inner.reader.searcher();
        let progress_docs = searcher.search(
            &TermQuery::new(
                Term::from_field_text(f.doc, "progress"),
                IndexRecordOption::Basic,
            ),
            &DocSetCollector,
        )?;
        for addr in progress_docs {
            let doc: TantivyDocument = searcher.doc(addr)?;
            if let Some((key, p)) = doc
                .get_first(f.progress)
                .and_then(|v| v.as_str())
                .and_then(Progress::decode)
            {
                self.progress.insert(key, p);
            }
        }
        let mut stats = Stats::default();
        stats.indexed_files = self.progress.len() as u64;
        stats.malformed_lines = self.progress.values().map(|p| p.malformed).sum();
        for segment in searcher.segment_readers() {
            let ff = segment.fast_fields();
            let uid = ff.u64("uid")?;
            let msgid = ff.u64("msgid")?;
            let session_h = ff.u64("session_h")?;
            let project_h = ff.u64("project_h")?;
            let ts = ff.i64("ts")?;
            let usage = [
                ff.u64("usage_input")?,
                ff.u64("usage_output")?,
                ff.u64("usage_cache_read")?,
                ff.u64("usage_cache_write")?,
            ];
            let model = ff.str("model")?;
            let mut model_name = String::new();
            for doc in 0..segment.max_doc() {
                if segment.is_deleted(doc) {
                    continue;
                }
                let Some(u) = uid.first(doc) else { continue };
                self.seen.insert(u);
                let m = msgid.first(doc).unwrap_or(0);
                let counted_usage = if m != 0 {
                    self.message_ids.insert(m);
                    Some(usage.each_ref().map(|c| c.first(doc).unwrap_or(0)))
                } else {
                    None
                };
                model_name.clear();
                let has_model = match &model {
                    Some(col) => match col.term_ords(doc).next() {
                        Some(ord) => col.ord_to_str(ord, &mut model_name).unwrap_or(false),
                        None => false,
                    },
                    None => false,
                };
                stats.count(Counted {
                    ts_ms: ts.first(doc).unwrap_or(0),
                    session_h: session_h.first(doc).unwrap_or(0),
                    project_h: project_h.first(doc).unwrap_or(0),
                    model: has_model.then_some(model_name.as_str()),
                    usage: counted_usage,
                });
            }
        }
        *self.index.inner.stats.lock().expect("stats lock") = stats;
        Ok(())
    }

    /// Starts (or stops) keeping the messages added, for [`Writer::take_added`].
    pub fn capture_added(&mut self, on: bool) {
        self.added = on.then(Vec::new);
    }

    /// The messages added since the last call, oldest first (empty unless capturing).
    pub fn take_added(&mut self) -> Vec<Added> {
        self.added.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// How far `key` has been indexed.
    pub fn progress(&self, key: &str) -> Option<Progress> {
        self.progress.get(key).copied()
    }

    /// Every file with progress, for catching up with the store.
    pub fn progress_all(&self) -> &HashMap<String, Progress> {
        &self.progress
    }

    /// Indexes one version. With `resume`, `pieces` must yield the version's bytes from
    /// `progress(key).done` on (the version extends the indexed one); otherwise from byte 0.
    /// Only complete lines are indexed; a half-written last line waits for the next version.
    pub fn add_version<E: std::fmt::Display>(
        &mut self,
        v: &VersionMeta<'_>,
        resume: bool,
        pieces: impl IntoIterator<Item = Result<Vec<u8>, E>>,
    ) -> Result<Indexed> {
        let source = Source::for_key(v.key);
        let previous = self.progress.get(v.key).copied();
        let (mut offset, mut lines, mut malformed) = match (resume, previous) {
            (true, Some(p)) => (p.done, p.lines, p.malformed),
            _ => (0, 0, previous.map(|p| p.malformed).unwrap_or(0)),
        };
        let mut out = Indexed::default();
        if source != Source::Opaque {
            let mut partial: Vec<u8> = Vec::new();
            let mut too_long = false;
            for piece in pieces {
                let piece = piece.map_err(|e| IndexError::Source(e.to_string()))?;
                out.bytes += piece.len() as u64;
                let mut rest = &piece[..];
                while let Some(i) = rest.iter().position(|&b| b == b'\n') {
                    lines += 1;
                    let line_start = offset;
                    let line_len = partial.len() as u64 + i as u64;
                    offset += line_len + 1;
                    if too_long {
                        self.malformed(v.key, &mut malformed, &mut out, || {
                            format!("line {lines}: over {} bytes", hoover_transcript::MAX_LINE)
                        });
                    } else {
                        let line: std::borrow::Cow<'_, [u8]> = if partial.is_empty() {
                            std::borrow::Cow::Borrowed(&rest[..i])
                        } else {
                            partial.extend_from_slice(&rest[..i]);
                            std::borrow::Cow::Owned(std::mem::take(&mut partial))
                        };
                        match source::record(source, &line, lines, line_start) {
                            Ok(Some(r)) => self.add_record(v, source, &line, r, &mut out)?,
                            Ok(None) => {}
                            Err(e) => {
                                self.malformed(v.key, &mut malformed, &mut out, || e.to_string())
                            }
                        }
                    }
                    partial.clear();
                    too_long = false;
                    rest = &rest[i + 1..];
                }
                if !too_long {
                    partial.extend_from_slice(rest);
                    if partial.len() > hoover_transcript::MAX_LINE {
                        too_long = true;
                        partial = Vec::new();
                    }
                }
            }
            // A JSONL file whose last record has no newline yet: a whole JSON object is
            // indexed now (a cut-off one does not parse), but `done` stays before it, so the
            // next version reads it again; its identity keeps it from being indexed twice.
            if source == Source::Jsonl && !partial.is_empty() {
                if let Ok(Some(r)) = source::record(source, &partial, lines + 1, offset) {
                    self.add_record(v, source, &partial, r, &mut out)?;
                }
            }
        }
        let done = if source == Source::Opaque {
            v.size
        } else {
            offset
        };
        if previous.is_none() {
            self.index
                .inner
                .stats
                .lock()
                .expect("stats lock")
                .indexed_files += 1;
        }
        self.progress.insert(
            v.key.to_string(),
            Progress {
                seq: v.seq,
                size: v.size,
                done,
                lines,
                malformed,
            },
        );
        self.dirty.insert(v.key.to_string());
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(out)
    }

    fn malformed(
        &mut self,
        key: &str,
        count: &mut u64,
        out: &mut Indexed,
        why: impl FnOnce() -> String,
    ) {
        *count += 1;
        out.malformed += 1;
        self.index
            .inner
            .stats
            .lock()
            .expect("stats lock")
            .malformed_lines += 1;
        if self.logged_malformed.insert(key.to_string()) {
            tracing::warn!(
                "{key}: {}; skipped (the store keeps it byte for byte; further bad lines of this file are counted, not logged)",
                why()
            );
        }
    }

    fn add_record(
        &mut self,
        v: &VersionMeta<'_>,
        source: Source,
        line: &[u8],
        r: Record,
        out: &mut Indexed,
    ) -> Result<()> {
        let uid = match (&r.uuid, source) {
            (Some(uuid), _) => hash64(&[b"uuid", uuid.as_bytes()]),
            (None, Source::Jsonl) => hash64(&[b"line", line]),
            (None, _) => hash64(&[b"text", v.key.as_bytes(), line]),
        };
        if !self.seen.insert(uid) {
            out.duplicates += 1;
            return Ok(());
        }
        out.records += 1;
        let f = self.index.inner.fields;
        let ts = r.timestamp_ms.unwrap_or(v.mtime_ms);
        let msgid = r
            .message_id
            .as_deref()
            .map(|m| hash64(&[b"msg", m.as_bytes()]))
            .unwrap_or(0);
        let usage = match (msgid, r.usage) {
            (0, u) => u,
            (m, u) if self.message_ids.insert(m) => u,
            _ => None,
        };
        let session_h = r
            .session
            .as_deref()
            .map(|s| hash64(&[s.as_bytes()]))
            .unwrap_or(0);
        let project_h = r
            .project
            .as_deref()
            .map(|s| hash64(&[s.as_bytes()]))
            .unwrap_or(0);
        let text = if self.options.redact {
            redact::redact(&r.text)
        } else {
            std::borrow::Cow::Borrowed(r.text.as_str())
        };
        let mut doc = TantivyDocument::new();
        doc.add_text(f.doc, "msg");
        doc.add_text(f.key, v.key);
        doc.add_text(f.role, &r.role);
        doc.add_text(f.kind, &r.kind);
        let optional = [
            (f.session, &r.session),
            (f.uuid, &r.uuid),
            (f.parent, &r.parent_uuid),
            (f.tool, &r.tool),
            (f.project, &r.project),
            (f.branch, &r.git_branch),
            (f.model, &r.model),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                doc.add_text(field, value);
            }
        }
        doc.add_i64(f.ts, ts);
        doc.add_u64(f.seq, v.seq);
        doc.add_u64(f.line, r.line);
        doc.add_u64(f.offset, r.offset);
        doc.add_text(f.text, &text);
        doc.add_text(f.code, &text);
        doc.add_u64(f.uid, uid);
        doc.add_u64(f.msgid, msgid);
        doc.add_u64(f.session_h, session_h);
        doc.add_u64(f.project_h, project_h);
        let u = usage.unwrap_or_default();
        for (field, n) in f.usage.iter().zip(u) {
            doc.add_u64(*field, n);
        }
        self.writer.add_document(doc)?;
        if let Some(added) = &mut self.added {
            let cut = if text.len() > ADDED_TEXT_MAX {
                let mut end = ADDED_TEXT_MAX;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                Some(end)
            } else {
                None
            };
            added.push(Added {
                message: StoredMessage {
                    key: v.key.to_string(),
                    session: r.session.clone(),
                    uuid: r.uuid.clone(),
                    parent_uuid: r.parent_uuid.clone(),
                    role: r.role.clone(),
                    kind: r.kind.clone(),
                    tool: r.tool.clone(),
                    project: r.project.clone(),
                    git_branch: r.git_branch.clone(),
                    model: r.model.clone(),
                    timestamp: stats::ms_to_rfc3339(ts),
                    seq: v.seq,
                    line: r.line,
                    text: text[..cut.unwrap_or(text.len())].to_string(),
                },
                truncated: cut.is_some(),
            });
        }
        self.index
            .inner
            .stats
            .lock()
            .expect("stats lock")
            .count(Counted {
                ts_ms: ts,
                session_h,
                project_h,
                model: r.model.as_deref(),
                usage,
            });
        Ok(())
    }

    /// When the next commit is due, if anything waits for one.
    pub fn commit_due(&self) -> Option<Instant> {
        self.pending_since.map(|t| t + COMMIT_INTERVAL)
    }

    /// Makes everything added so far durable and searchable.
    pub fn commit(&mut self) -> Result<()> {
        if self.pending_since.is_none() {
            return Ok(());
        }
        let f = self.index.inner.fields;
        for key in self.dirty.drain() {
            let Some(p) = self.progress.get(&key) else {
                continue;
            };
            self.writer.delete_term(Term::from_field_text(f.pkey, &key));
            let mut doc = TantivyDocument::new();
            doc.add_text(f.doc, "progress");
            doc.add_text(f.pkey, &key);
            doc.add_text(f.progress, p.encode(&key));
            self.writer.add_document(doc)?;
        }
        self.writer.commit()?;
        self.index.inner.reader.reload()?;
        self.pending_since = None;
        Ok(())
    }

    /// Waits for background merges to finish (for a clean shutdown or a benchmark).
    pub fn finish(mut self) -> Result<()> {
        self.commit()?;
        self.writer.wait_merging_threads()?;
        Ok(())
    }

    pub fn index(&self) -> &Index {
        &self.index
    }
}
