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

pub mod live;
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

pub use live::{Added, LiveReader, ADDED_TEXT_MAX};
pub use query::{
    SearchHit, SearchRequest, SearchResults, SessionBrief, Sort, StoredMessage, MAX_LIMIT,
    MAX_QUERY_BYTES, MAX_QUERY_TERMS, MAX_WINDOW,
};
pub use schema::SCHEMA_VERSION;
pub use source::{Record, Source};
pub use stats::{Counters, HourCount, TokenDay};

use hoover_transcript::tally::{self, ResponseLine};
use hoover_transcript::{Line, LineReader};
use schema::{Fields, FLAG_MESSAGE};
use stats::Stats;

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
            tool_names: HashMap::new(),
            pending_since: None,
            logged_malformed: HashSet::new(),
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
    /// The tool each call named, by [`tally::tool_call_id`], so its result can say it too.
    tool_names: HashMap<u64, String>,
    pending_since: Option<Instant>,
    logged_malformed: HashSet<String>,
}

use hoover_transcript::tally::hash64;

/// A record's identity: its `uuid`'s, or for a record without one its line's (JSONL) or its
/// file's and line's (text), so that a record seen again is recognised.
pub(crate) fn record_uid(r: &Record, source: Source, key: &str, line: &[u8]) -> u64 {
    match (&r.uuid, source) {
        (Some(uuid), _) => tally::message_id(uuid),
        (None, Source::Jsonl) => hash64(&[b"line", line]),
        (None, _) => hash64(&[b"text", key.as_bytes(), line]),
    }
}

/// The first value of a text column at `doc`, read into `buf`.
fn first_str<'b>(
    col: &Option<tantivy::columnar::StrColumn>,
    doc: u32,
    buf: &'b mut String,
) -> Option<&'b str> {
    let col = col.as_ref()?;
    let ord = col.term_ords(doc).next()?;
    buf.clear();
    col.ord_to_str(ord, buf).ok()?.then_some(buf.as_str())
}

/// The project a stored file belongs to: the directory under its root
/// (`SOURCE/ROOT/DIR/...` gives `ROOT/DIR`, the same for every machine), or the root itself
/// for a file directly in it. Claude Code names that directory after the working directory.
pub fn project_of_key(key: &str) -> Option<&str> {
    let mut parts = key.splitn(4, '/');
    let source = parts.next()?;
    let root = parts.next()?;
    let start = source.len() + 1;
    match (parts.next(), parts.next()) {
        (Some(dir), Some(_)) => Some(&key[start..start + root.len() + 1 + dir.len()]),
        _ => Some(&key[start..start + root.len()]),
    }
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
        let mut stats = Stats {
            indexed_files: self.progress.len() as u64,
            malformed_lines: self.progress.values().map(|p| p.malformed).sum(),
            ..Stats::default()
        };
        for segment in searcher.segment_readers() {
            let ff = segment.fast_fields();
            let uid = ff.u64("uid")?;
            let flags = ff.u64("flags")?;
            let msgid = ff.u64("msgid")?;
            let session_h = ff.u64("session_h")?;
            let project_h = ff.u64("project_h")?;
            let own_ts = ff.i64("own_ts")?;
            let offset = ff.u64("offset")?;
            let usage = [
                ff.u64("usage_input")?,
                ff.u64("usage_output")?,
                ff.u64("usage_cache_read")?,
                ff.u64("usage_cache_write")?,
            ];
            let (model, day, key, calls) = (
                ff.str("model")?,
                ff.str("day")?,
                ff.str("key")?,
                ff.str("calls")?,
            );
            let (mut model_s, mut day_s, mut key_s, mut call_s) =
                (String::new(), String::new(), String::new(), String::new());
            for doc in 0..segment.max_doc() {
                if segment.is_deleted(doc) {
                    continue;
                }
                let Some(u) = uid.first(doc) else { continue };
                self.seen.insert(u);
                let mut tool_calls = Vec::new();
                if let Some(col) = &calls {
                    for ord in col.term_ords(doc) {
                        call_s.clear();
                        if !col.ord_to_str(ord, &mut call_s).unwrap_or(false) {
                            continue;
                        }
                        let Some((h, name)) = call_s.split_once(' ') else {
                            continue;
                        };
                        if let Ok(h) = u64::from_str_radix(h, 16) {
                            self.tool_names.insert(h, name.to_string());
                            tool_calls.push(h);
                        }
                    }
                }
                if flags.first(doc).unwrap_or(0) & FLAG_MESSAGE == 0 {
                    continue;
                }
                let model = first_str(&model, doc, &mut model_s);
                let day = first_str(&day, doc, &mut day_s);
                let file = first_str(&key, doc, &mut key_s).unwrap_or_default();
                let response = msgid.first(doc).filter(|&m| m != 0).map(|id| ResponseLine {
                    id,
                    model: model.unwrap_or("unknown"),
                    usage: usage
                        .each_ref()
                        .map(|c| c.first(doc).filter(|&n| n > 0).map(|n| n - 1)),
                });
                stats.tally.add(&tally::Line {
                    uuid: u,
                    session: session_h.first(doc).filter(|&h| h != 0),
                    project: project_h.first(doc).filter(|&h| h != 0),
                    day,
                    time_ms: own_ts.first(doc),
                    tool_calls,
                    response,
                    file,
                    offset: offset.first(doc).unwrap_or(0),
                });
            }
        }
        *self.index.inner.stats.lock().expect("stats lock") = stats;
        Ok(())
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
            let mut reader = LineReader::resume(offset, lines);
            let mut text_redactor = redact::LineRedactor::default();
            let redact_lines = self.options.redact && source == Source::Text;
            let mut failed = None;
            for piece in pieces {
                let piece = piece.map_err(|e| IndexError::Source(e.to_string()))?;
                out.bytes += piece.len() as u64;
                reader.feed(&piece, |line| {
                    if failed.is_some() {
                        return;
                    }
                    let result = match line {
                        Line::TooLong { number, .. } => {
                            self.malformed(v.key, &mut malformed, &mut out, || {
                                format!("line {number}: over {} bytes", hoover_transcript::MAX_LINE)
                            });
                            Ok(())
                        }
                        Line::Text {
                            number,
                            offset,
                            bytes,
                        } => match source::record(source, &bytes, number, offset) {
                            Ok(Some(mut r)) => {
                                if redact_lines {
                                    r.text = text_redactor.redact(&r.text).into_owned();
                                }
                                self.add_record(v, source, &bytes, r, &mut out)
                            }
                            Ok(None) => Ok(()),
                            Err(e) => {
                                self.malformed(v.key, &mut malformed, &mut out, || e.to_string());
                                Ok(())
                            }
                        },
                    };
                    if let Err(e) = result {
                        failed = Some(e);
                    }
                });
                if let Some(e) = failed.take() {
                    return Err(e);
                }
            }
            // A JSONL file whose last record has no newline yet: a whole JSON object is
            // indexed now (a cut-off one does not parse), but `done` stays before it, so the
            // next version reads it again; its identity keeps it from being indexed twice.
            if let (Source::Jsonl, Some((number, at, partial))) = (source, reader.unfinished()) {
                if let Ok(Some(r)) = source::record(source, partial, number, at) {
                    self.add_record(v, source, partial, r, &mut out)?;
                }
            }
            offset = reader.done();
            lines = reader.lines();
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
        let uid = record_uid(&r, source, v.key, line);
        let f = self.index.inner.fields;
        let calls: Vec<(u64, &str)> = r
            .tool_calls
            .iter()
            .map(|(id, name)| (tally::tool_call_id(id), name.as_str()))
            .collect();
        let counted = r.uuid.as_deref().filter(|_| r.is_message).map(|_| {
            let session = r.session.as_deref().map(tally::name_id);
            let project = project_of_key(v.key).map(tally::name_id);
            let response = r.message_id.as_deref().and_then(|mid| {
                r.model.as_deref().map(|model| ResponseLine {
                    id: tally::response_id(mid, r.request_id.as_deref()),
                    model,
                    usage: r.usage.unwrap_or_default(),
                })
            });
            tally::Line {
                uuid: uid,
                session,
                project,
                day: r.day.as_deref(),
                time_ms: r.timestamp_ms,
                tool_calls: calls.iter().map(|c| c.0).collect(),
                response,
                file: v.key,
                offset: r.offset,
            }
        });
        // What the counters need, on the message's document or on a copy's (which has
        // nothing else, so it also carries where it is and the model).
        let facts = |doc: &mut TantivyDocument, copy: bool| {
            doc.add_u64(f.uid, uid);
            for (h, name) in &calls {
                doc.add_text(f.calls, format!("{h:016x} {name}"));
            }
            let Some(line) = &counted else { return };
            doc.add_u64(f.flags, FLAG_MESSAGE);
            if copy {
                doc.add_text(f.key, v.key);
                doc.add_u64(f.offset, r.offset);
                if let Some(model) = &r.model {
                    doc.add_text(f.model, model);
                }
            }
            if let Some(ms) = line.time_ms {
                doc.add_i64(f.own_ts, ms);
            }
            if let Some(day) = line.day {
                doc.add_text(f.day, day);
            }
            doc.add_u64(f.session_h, line.session.unwrap_or(0));
            doc.add_u64(f.project_h, line.project.unwrap_or(0));
            if let Some(resp) = &line.response {
                doc.add_u64(f.msgid, resp.id);
                for (field, n) in f.usage.iter().zip(resp.usage) {
                    doc.add_u64(*field, n.map_or(0, |n| n.saturating_add(1)));
                }
            }
        };
        for (h, name) in &calls {
            self.tool_names.insert(*h, name.to_string());
        }
        if !self.seen.insert(uid) {
            out.duplicates += 1;
            if let Some(line) = &counted {
                // A copy (a resumed session's, or an earlier line arriving late): not searched
                // again, but the counters decide which copy counts.
                let mut doc = TantivyDocument::new();
                doc.add_text(f.doc, "copy");
                facts(&mut doc, true);
                self.writer.add_document(doc)?;
                self.count(line);
            }
            return Ok(());
        }
        out.records += 1;
        let ts = r.timestamp_ms.unwrap_or(v.mtime_ms);
        // A tool's result is found by the tool's name too.
        let tool = r.tool.clone().or_else(|| {
            r.tool_use_id
                .as_deref()
                .and_then(|id| self.tool_names.get(&tally::tool_call_id(id)).cloned())
        });
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
            (f.tool, &tool),
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
        doc.add_text(f.rtype, &r.rtype);
        facts(&mut doc, false);
        self.writer.add_document(doc)?;
        if let Some(line) = &counted {
            self.count(line);
        }
        Ok(())
    }

    /// Adds a message line (its document just added) to the counters.
    fn count(&self, line: &tally::Line<'_>) {
        self.index
            .inner
            .stats
            .lock()
            .expect("stats lock")
            .tally
            .add(line);
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
