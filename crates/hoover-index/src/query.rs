//! Queries: words, `"phrases"`, `-exclusions` and the filters `project:`, `session:`, `role:`,
//! `tool:`, `kind:`, `key:`, `after:` and `before:`, sorted by relevance or time, with
//! snippets. Progress, snapshot and queue records are found only with `kind:`.

use std::ops::Bound;
use std::time::Instant;

pub use hoover_types::SearchHit;
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Order, Searcher, TantivyDocument, Term};

use crate::schema::{self, Fields};
use crate::{Index, IndexError, Result};

/// Result order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    #[default]
    Relevance,
    Newest,
    Oldest,
}

impl std::str::FromStr for Sort {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "relevance" => Ok(Sort::Relevance),
            "newest" | "time" => Ok(Sort::Newest),
            "oldest" => Ok(Sort::Oldest),
            other => Err(format!(
                "unknown sort {other:?}: use relevance, newest or oldest"
            )),
        }
    }
}

/// A search: the query text, and which page of hits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub query: String,
    pub limit: usize,
    #[serde(default)]
    pub offset: usize,
    #[serde(default)]
    pub sort: Sort,
}

/// A page of hits and the total number of matches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    pub total: u64,
    pub hits: Vec<SearchHit>,
    pub took_ms: f64,
}

/// The largest page a search returns.
pub const MAX_LIMIT: usize = 1000;
/// The deepest hit a search pages to (`offset + limit`): collecting the top N reserves
/// memory for N hits, so an unbounded offset is a request to allocate without bound.
pub const MAX_WINDOW: usize = 10_000;
/// The longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 2048;
/// The most words, phrases and filters one query may hold (each is a posting list to walk).
pub const MAX_QUERY_TERMS: usize = 32;
const SNIPPET_CHARS: usize = 240;

/// Record types left out of searches unless a `kind:` filter asks for them: Claude Code's
/// bookkeeping, not conversation.
pub const HIDDEN_KINDS: [&str; 3] = ["progress", "file-history-snapshot", "queue-operation"];

/// The record type a `kind:` filter names; `snapshot` and `queue` are short for the long ones.
fn record_type(word: &str) -> String {
    match word.to_ascii_lowercase().as_str() {
        "snapshot" => "file-history-snapshot".into(),
        "queue" => "queue-operation".into(),
        other => other.to_string(),
    }
}

/// Splits a query into terms, keeping quoted phrases together: `(negated, field, text, quoted)`.
fn lex(q: &str) -> Vec<(bool, Option<String>, String, bool)> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let negated = first == '-';
        if negated {
            chars.next();
        }
        let mut word = String::new();
        let mut field = None;
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                chars.next();
                quoted = true;
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    word.push(c);
                }
                break;
            }
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == ':' && field.is_none() && is_filter(&word) {
                field = Some(std::mem::take(&mut word).to_ascii_lowercase());
                continue;
            }
            word.push(c);
        }
        if !word.is_empty() {
            out.push((negated, field, word, quoted));
        }
    }
    out
}

fn is_filter(word: &str) -> bool {
    matches!(
        word.to_ascii_lowercase().as_str(),
        "project" | "session" | "role" | "tool" | "kind" | "key" | "after" | "before"
    )
}

/// Terms of `text` as the named tokenizer makes them.
fn tokens(index: &Index, tokenizer: &str, text: &str) -> Vec<String> {
    let mut analyzer = index
        .inner
        .index
        .tokenizers()
        .get(tokenizer)
        .expect("registered tokenizer");
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while let Some(t) = stream.next() {
        out.push(t.text.clone());
    }
    out
}

/// One word or a phrase in the English field. A phrase is looked up by its adjacent word
/// pairs: one term for two words; for longer phrases, every adjacent pair must occur.
fn words_query(f: &Fields, words: Vec<String>) -> Option<Box<dyn Query>> {
    let term = |field: Field, w: &str| -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, w),
            IndexRecordOption::WithFreqs,
        ))
    };
    match words.len() {
        0 => None,
        1 => Some(term(f.text, &words[0])),
        2 => Some(term(f.text, &schema::pair_terms(&words)[0])),
        _ => Some(Box::new(BooleanQuery::new(
            schema::pair_terms(&words)
                .iter()
                .map(|p| (Occur::Must, term(f.text, p)))
                .collect(),
        ))),
    }
}

fn all_of(field: Field, words: Vec<String>) -> Option<Box<dyn Query>> {
    if words.is_empty() {
        return None;
    }
    Some(Box::new(BooleanQuery::new(
        words
            .into_iter()
            .map(|w| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(field, &w),
                    IndexRecordOption::Basic,
                ));
                (Occur::Must, q)
            })
            .collect(),
    )))
}

/// `2025-06-01` (midnight UTC) or a full RFC 3339 time, in milliseconds.
fn parse_when(text: &str) -> Result<i64> {
    if let Some(ms) = crate::source::parse_time_ms(text) {
        return Ok(ms);
    }
    let date: jiff::civil::Date = text.parse().map_err(|_| {
        IndexError::Query(format!(
            "{text:?} is not a date: use YYYY-MM-DD or an RFC 3339 time"
        ))
    })?;
    let ts = date
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map_err(|e| IndexError::Query(e.to_string()))?
        .timestamp();
    Ok(ts.as_millisecond())
}

/// A query ready to run.
struct Built {
    query: Box<dyn Query>,
    /// English terms to highlight in snippets.
    highlight: Vec<String>,
    /// Phrases of three or more words: the index finds messages holding each adjacent pair;
    /// the stored text of each hit is checked for the whole phrase.
    long_phrases: Vec<Vec<String>>,
}

/// Builds the tantivy query for `q`.
fn build(index: &Index, q: &str) -> Result<Built> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(IndexError::Query(format!(
            "the query is {} bytes long; the limit is {MAX_QUERY_BYTES}",
            q.len()
        )));
    }
    let terms = lex(q);
    if terms.len() > MAX_QUERY_TERMS {
        return Err(IndexError::Query(format!(
            "the query has {} terms; the limit is {MAX_QUERY_TERMS}",
            terms.len()
        )));
    }
    let mut highlight = Vec::new();
    let mut long_phrases = Vec::new();
    let f: Fields = index.inner.fields;
    // Progress records match no word or filter, so a query with something to look for never
    // finds them; a query with nothing to look for is refused below.
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let mut positive = false;
    let mut asked_kind = false;
    for (negated, field, word, quoted) in terms {
        let occur = if negated { Occur::MustNot } else { Occur::Must };
        let query: Option<Box<dyn Query>> = match field.as_deref() {
            Some("project") => all_of(f.project, tokens(index, schema::PATH, &word)),
            Some("role") => all_of(f.role, vec![word.to_lowercase()]),
            Some("tool") => all_of(f.tool, vec![word.to_lowercase()]),
            Some("kind") => {
                if !negated {
                    asked_kind = true;
                }
                all_of(f.rtype, vec![record_type(&word)])
            }
            Some("session") => all_of(f.session, vec![word]),
            Some("key") => all_of(f.key, vec![word]),
            Some(bound @ ("after" | "before")) => {
                let ms = parse_when(&word)?;
                let term = Term::from_field_i64(f.ts, ms);
                let q = if bound == "after" {
                    RangeQuery::new(Bound::Included(term), Bound::Unbounded)
                } else {
                    RangeQuery::new(Bound::Unbounded, Bound::Excluded(term))
                };
                Some(Box::new(q))
            }
            _ => {
                let words: Vec<String> = schema::english_tokens(&word)
                    .into_iter()
                    .map(|(_, _, w)| w)
                    .collect();
                if !negated {
                    highlight.extend(words.iter().cloned());
                    if words.len() > 2 {
                        long_phrases.push(words.clone());
                    }
                }
                let english = words_query(&f, words);
                let code: Vec<String> = if quoted {
                    Vec::new()
                } else {
                    schema::code_tokens(&word)
                        .into_iter()
                        .map(|(_, _, w)| w)
                        .collect()
                };
                let code = (code.len() == 1).then(|| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(f.code, &code[0]),
                        IndexRecordOption::WithFreqs,
                    ));
                    q
                });
                if !negated && (english.is_some() || code.is_some()) {
                    positive = true;
                }
                match (english, code) {
                    (Some(e), Some(c)) => Some(Box::new(BooleanQuery::new(vec![
                        (Occur::Should, e),
                        (Occur::Should, c),
                    ]))),
                    (e, c) => e.or(c),
                }
            }
        };
        if let Some(query) = query {
            if field.is_some() && !negated {
                positive = true;
            }
            clauses.push((occur, query));
        }
    }
    if !positive {
        // Nothing to look for would match every message: say why instead.
        return Err(IndexError::Query(if clauses.is_empty() {
            format!(
                "nothing to search for: {q:?} has no word hoover indexes (punctuation alone is not searchable)"
            )
        } else {
            "-word only excludes: add a word, a \"phrase\" or a filter (project:, session:, role:, tool:, kind:, key:, after:, before:) to look for".to_string()
        }));
    }
    // Messages only (not the counters' copies), and records that are not conversation
    // (progress, snapshots, queue operations) only when a `kind:` asks for them.
    let term = |field: Field, text: &str| -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, text),
            IndexRecordOption::Basic,
        ))
    };
    clauses.push((Occur::Must, term(f.doc, "msg")));
    if !asked_kind {
        for hidden in HIDDEN_KINDS {
            clauses.push((Occur::MustNot, term(f.rtype, hidden)));
        }
    }
    let query = Box::new(BooleanQuery::new(clauses));
    Ok(Built {
        query,
        highlight,
        long_phrases,
    })
}

pub(crate) fn search(index: &Index, request: &SearchRequest) -> Result<SearchResults> {
    let started = Instant::now();
    let limit = request.limit.clamp(1, MAX_LIMIT);
    if request.offset.saturating_add(limit) > MAX_WINDOW {
        return Err(IndexError::Query(format!(
            "results past the first {MAX_WINDOW} are not served (offset {} + limit {limit}); narrow the query instead",
            request.offset
        )));
    }
    let f = index.inner.fields;
    let Built {
        query,
        highlight,
        long_phrases,
    } = build(index, &request.query)?;
    let searcher: Searcher = index.inner.reader.searcher();
    // With long phrases some candidates fail the check: fetch more, then page.
    let (fetch, skip) = if long_phrases.is_empty() {
        (limit, request.offset)
    } else {
        ((request.offset + limit) * 4 + 20, 0)
    };
    let top = TopDocs::with_limit(fetch).and_offset(skip);
    let (mut total, mut addrs): (usize, Vec<(f32, DocAddress)>) = match request.sort {
        Sort::Relevance => searcher.search(&query, &(Count, top))?,
        Sort::Newest | Sort::Oldest => {
            let order = if request.sort == Sort::Newest {
                Order::Desc
            } else {
                Order::Asc
            };
            let (n, docs) = searcher.search(
                &query,
                &(Count, top.order_by_fast_field::<i64>("ts", order)),
            )?;
            (n, docs.into_iter().map(|(_, a)| (0.0, a)).collect())
        }
    };
    if !long_phrases.is_empty() {
        let fetched = addrs.len();
        let mut kept = Vec::with_capacity(fetched);
        for (score, addr) in addrs {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let text = doc.get_first(f.text).and_then(|v| v.as_str()).unwrap_or("");
            let stems: Vec<String> = schema::english_tokens(text)
                .into_iter()
                .map(|(_, _, w)| w)
                .collect();
            if long_phrases
                .iter()
                .all(|p| stems.windows(p.len()).any(|w| w == p.as_slice()))
            {
                kept.push((score, addr));
            }
        }
        // Candidates past the ones checked are counted as the checked ones fared.
        let rejected = fetched - kept.len();
        total = total
            - rejected
            - ((total - fetched) * rejected)
                .checked_div(fetched)
                .unwrap_or(0);
        addrs = kept.into_iter().skip(request.offset).take(limit).collect();
    }
    // Snippets highlight the query's English terms; this query is never run, only read.
    let highlight_query = BooleanQuery::new(
        highlight
            .iter()
            .map(|w| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(f.text, w),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, q)
            })
            .collect(),
    );
    let mut snippets = SnippetGenerator::create(&searcher, &highlight_query, f.text)?;
    snippets.set_max_num_chars(SNIPPET_CHARS);
    let mut hits = Vec::with_capacity(addrs.len());
    for (score, addr) in addrs {
        let doc: TantivyDocument = searcher.doc(addr)?;
        let text_of = |field: Field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let u64_of = |field: Field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
        let snippet = snippets.snippet_from_doc(&doc);
        let (snippet, highlights) = if snippet.fragment().is_empty() {
            let text = text_of(f.text).unwrap_or_default();
            (truncate(&text, SNIPPET_CHARS), Vec::new())
        } else {
            (
                snippet.fragment().to_string(),
                snippet
                    .highlighted()
                    .iter()
                    .map(|r| [r.start as u32, r.end as u32])
                    .collect(),
            )
        };
        let ts = doc.get_first(f.ts).and_then(|v| v.as_i64()).unwrap_or(0);
        hits.push(SearchHit {
            key: text_of(f.key).unwrap_or_default(),
            session: text_of(f.session),
            uuid: text_of(f.uuid),
            role: text_of(f.role).unwrap_or_default(),
            kind: text_of(f.kind).unwrap_or_default(),
            tool: text_of(f.tool),
            project: text_of(f.project),
            timestamp: crate::stats::ms_to_rfc3339(ts),
            seq: u64_of(f.seq),
            line: u64_of(f.line),
            score,
            snippet,
            highlights,
        });
    }
    Ok(SearchResults {
        total: total as u64,
        hits,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexing_keeps_phrases_filters_and_exclusions() {
        let got = lex(r#"tokio "error handling" -flaky project:hoover std::io after:2025-01-01"#);
        let want = vec![
            (false, None, "tokio".to_string(), false),
            (false, None, "error handling".to_string(), true),
            (true, None, "flaky".to_string(), false),
            (
                false,
                Some("project".to_string()),
                "hoover".to_string(),
                false,
            ),
            (false, None, "std::io".to_string(), false),
            (
                false,
                Some("after".to_string()),
                "2025-01-01".to_string(),
                false,
            ),
        ];
        assert_eq!(got, want);
    }
}

/// A message as stored in the index, for showing a whole session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub key: String,
    pub session: Option<String>,
    pub uuid: Option<String>,
    pub parent_uuid: Option<String>,
    pub role: String,
    pub kind: String,
    pub tool: Option<String>,
    pub project: Option<String>,
    pub git_branch: Option<String>,
    pub model: Option<String>,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub seq: u64,
    pub line: u64,
    /// The (redacted) searchable text.
    pub text: String,
}

/// A session seen lately.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionBrief {
    pub session: String,
    pub project: Option<String>,
    pub key: String,
    pub last_timestamp: String,
}

fn stored_message(f: &Fields, doc: &TantivyDocument) -> StoredMessage {
    let text_of = |field: Field| {
        doc.get_first(field)
            .and_then(|v| v.as_str().map(str::to_string))
    };
    let u64_of = |field: Field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
    let ts = doc.get_first(f.ts).and_then(|v| v.as_i64()).unwrap_or(0);
    StoredMessage {
        key: text_of(f.key).unwrap_or_default(),
        session: text_of(f.session),
        uuid: text_of(f.uuid),
        parent_uuid: text_of(f.parent),
        role: text_of(f.role).unwrap_or_default(),
        kind: text_of(f.kind).unwrap_or_default(),
        tool: text_of(f.tool),
        project: text_of(f.project),
        git_branch: text_of(f.branch),
        model: text_of(f.model),
        timestamp: crate::stats::ms_to_rfc3339(ts),
        seq: u64_of(f.seq),
        line: u64_of(f.line),
        text: text_of(f.text).unwrap_or_default(),
    }
}

impl Index {
    /// The stored files holding records of `session`, sorted: the session's own file, files
    /// that resumed it, and its subagents' (they carry their parent's session id).
    pub fn session_keys(&self, session: &str) -> Result<Vec<String>> {
        let f = self.inner.fields;
        let searcher = self.inner.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(f.session, session),
            IndexRecordOption::Basic,
        );
        let docs = searcher.search(&query, &tantivy::collector::DocSetCollector)?;
        let mut keys = std::collections::BTreeSet::new();
        let mut buf = String::new();
        let mut columns = std::collections::HashMap::new();
        for addr in docs {
            let column = match columns.entry(addr.segment_ord) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(
                    searcher
                        .segment_reader(addr.segment_ord)
                        .fast_fields()
                        .str("key")?,
                ),
            };
            let Some(col) = column.as_ref() else { continue };
            if let Some(ord) = col.term_ords(addr.doc_id).next() {
                buf.clear();
                if col.ord_to_str(ord, &mut buf).unwrap_or(false) {
                    keys.insert(buf.clone());
                }
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Sessions with the newest messages, newest first, at most `n`.
    pub fn recent_sessions(&self, n: usize) -> Result<Vec<SessionBrief>> {
        let f = self.inner.fields;
        let searcher = self.inner.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(f.doc, "msg"),
            IndexRecordOption::Basic,
        );
        let docs = searcher.search(
            &query,
            &TopDocs::with_limit(n * 50).order_by_fast_field::<i64>("ts", Order::Desc),
        )?;
        let mut out: Vec<SessionBrief> = Vec::new();
        for (_, addr) in docs {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let m = stored_message(&f, &doc);
            let Some(session) = m.session else { continue };
            if out.iter().any(|s| s.session == session) {
                continue;
            }
            out.push(SessionBrief {
                session,
                project: m.project,
                key: m.key,
                last_timestamp: m.timestamp,
            });
            if out.len() == n {
                break;
            }
        }
        Ok(out)
    }
}
