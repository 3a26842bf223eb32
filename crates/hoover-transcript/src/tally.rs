//! The counts of a tree of transcripts, defined as `../shared/corpus/truth.py` defines them,
//! kept up to date one line at a time in any order the lines arrive.
//!
//! - a **message** is a `user` or `assistant` record with a `uuid`, counted once per uuid
//!   (a resumed session copies earlier lines into its new file);
//! - **sessions** are the distinct `sessionId`s of messages (a subagent's file carries its
//!   parent's id);
//! - **tool calls** are the distinct ids of `tool_use` blocks in assistant messages;
//! - a **response** is one API response, the distinct `(message.id, requestId)` of assistant
//!   messages: Claude Code writes it as several lines, one per content block;
//! - **tokens** are summed over responses, each taking the usage of its *last* line (earlier
//!   lines carry a partial `output_tokens`), last meaning greatest `(file, byte offset)`, so the
//!   answer does not depend on which file arrived first;
//! - **by day** counts messages per UTC day of their own `timestamp`;
//! - **projects** are the project directories under a root that hold messages.
//!
//! The tally takes hashes ([`hash64`]) rather than strings for what it only compares, so the
//! index can rebuild it from its columns without keeping the strings.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::{Message, Usage};

/// A 64-bit name for a string (or a tuple of them): BLAKE3, length-prefixed parts.
pub fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let bytes = h.finalize();
    let n = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"));
    n.max(1)
}

/// The id of a response: its `message.id` and `requestId` together.
pub fn response_id(message_id: &str, request_id: Option<&str>) -> u64 {
    match request_id {
        Some(r) => hash64(&[b"resp", message_id.as_bytes(), b"r", r.as_bytes()]),
        None => hash64(&[b"resp", message_id.as_bytes()]),
    }
}

/// The id of a message: its uuid.
pub fn message_id(uuid: &str) -> u64 {
    hash64(&[b"uuid", uuid.as_bytes()])
}

/// The id of a tool call.
pub fn tool_call_id(id: &str) -> u64 {
    hash64(&[b"tool", id.as_bytes()])
}

/// The id of a session or a project: its name.
pub fn name_id(name: &str) -> u64 {
    hash64(&[name.as_bytes()])
}

/// What one message line contributes.
#[derive(Clone, Debug, Default)]
pub struct Line<'a> {
    /// [`message_id`] of its uuid.
    pub uuid: u64,
    /// [`name_id`] of its `sessionId`.
    pub session: Option<u64>,
    /// [`name_id`] of its project directory.
    pub project: Option<u64>,
    /// Its `timestamp`'s first ten characters.
    pub day: Option<&'a str>,
    /// Its `timestamp` in milliseconds, when it parses.
    pub time_ms: Option<i64>,
    /// [`tool_call_id`]s of its `tool_use` blocks.
    pub tool_calls: Vec<u64>,
    /// For an assistant line with a `message.id`: the response it belongs to.
    pub response: Option<ResponseLine<'a>>,
    /// Where the line is: its file (the store's key) and byte offset. Of the lines with one
    /// uuid the first counts; of the lines of one response the last one's usage counts.
    pub file: &'a str,
    pub offset: u64,
}

/// An assistant line's part of its response.
#[derive(Clone, Debug)]
pub struct ResponseLine<'a> {
    /// [`response_id`].
    pub id: u64,
    pub model: &'a str,
    pub usage: Usage,
}

impl<'a> Line<'a> {
    /// The line's facts from a parsed message, or `None` if it is not a message.
    pub fn of(
        m: &'a Message,
        file: &'a str,
        offset: u64,
        project: Option<&str>,
    ) -> Option<Line<'a>> {
        if !m.is_message() {
            return None;
        }
        let assistant = m.kind == "assistant";
        Some(Line {
            uuid: message_id(m.uuid.as_deref()?),
            session: m.session.as_deref().map(name_id),
            project: project.map(name_id),
            day: m.day(),
            time_ms: m.timestamp.as_deref().and_then(parse_time_ms),
            tool_calls: if assistant {
                m.tool_calls
                    .iter()
                    .map(|(id, _)| tool_call_id(id))
                    .collect()
            } else {
                Vec::new()
            },
            response: match (&m.message_id, assistant) {
                (Some(mid), true) => Some(ResponseLine {
                    id: response_id(mid, m.request_id.as_deref()),
                    model: m.model_or_unknown(),
                    usage: m.usage.unwrap_or_default(),
                }),
                _ => None,
            },
            file,
            offset,
        })
    }
}

/// Parses an RFC 3339 timestamp to milliseconds since the epoch.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Token counts, named as the API names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

impl Tokens {
    fn from_array(a: [u64; 4]) -> Tokens {
        Tokens {
            input_tokens: a[0],
            output_tokens: a[1],
            cache_read_input_tokens: a[2],
            cache_creation_input_tokens: a[3],
        }
    }

    pub fn total(&self) -> u64 {
        self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens
    }
}

/// The counts, in `truth.py`'s shape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub messages: u64,
    pub sessions: u64,
    pub tool_calls: u64,
    pub responses: u64,
    pub tokens: Tokens,
    pub by_model: BTreeMap<String, Tokens>,
    pub by_day: BTreeMap<String, u64>,
}

/// One line of a response, as tallied.
#[derive(Clone, Copy)]
struct ResponsePart {
    file: u32,
    offset: u64,
    model: u32,
    day: u32,
    usage: [u64; 4],
    /// Which of `usage`'s fields the line had.
    present: u8,
}

const NONE: u32 = u32::MAX;

/// The line counted for a uuid (the first in `(file, offset)` order) and what it added.
struct Counted {
    file: u32,
    offset: u64,
    session: u32,
    project: u32,
    day: u32,
    hour: Option<i64>,
    tool_calls: Box<[u64]>,
    response: Option<u64>,
}

#[derive(Default)]
struct ModelTotals {
    tokens: [u64; 4],
    /// Responses of this model with at least one count: a model is listed when it has one.
    counted: u64,
}

/// The running counts. Every uuid's counted line is the first in `(file, offset)` order of
/// the lines seen with it, whatever order they arrived in; when an earlier copy arrives late,
/// the later one's contribution is taken back. Memory: about 100 bytes per message.
#[derive(Default)]
pub struct Tally {
    counted: HashMap<u64, Counted>,
    sessions: HashMap<u32, u64>,
    projects: HashMap<u32, u64>,
    tool_calls: HashMap<u64, u64>,
    responses: HashMap<u64, Vec<ResponsePart>>,
    by_day: HashMap<u32, u64>,
    per_hour: BTreeMap<i64, u64>,
    tokens: [u64; 4],
    by_model: HashMap<u32, ModelTotals>,
    /// Tokens by the day of each response's counted line, and model.
    day_model: BTreeMap<(u32, u32), [u64; 4]>,
    names: Names,
    /// Sessions and projects by hash, interned.
    hashes: HashMap<u64, u32>,
}

/// Strings interned to small numbers, and back.
#[derive(Default)]
struct Names {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        if id == NONE {
            ""
        } else {
            &self.names[id as usize]
        }
    }

    /// `(file a, offset a) < (file b, offset b)`.
    fn before(&self, a: (u32, u64), b: (u32, u64)) -> bool {
        match self.name(a.0).cmp(self.name(b.0)) {
            std::cmp::Ordering::Equal => a.1 < b.1,
            other => other.is_lt(),
        }
    }
}

const MS_PER_HOUR: i64 = 3_600_000;

fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u64>, key: K, add: bool) {
    if add {
        *map.entry(key).or_default() += 1;
    } else if let MapEntry::Occupied(mut o) = map.entry(key) {
        *o.get_mut() -= 1;
        if *o.get() == 0 {
            o.remove();
        }
    }
}

impl Tally {
    /// Counts one message line. Returns whether it is now its uuid's counted line.
    pub fn add(&mut self, line: &Line<'_>) -> bool {
        let (file, offset) = (self.names.id(line.file), line.offset);
        if let Some(old) = self.counted.get(&line.uuid) {
            if !self.names.before((file, offset), (old.file, old.offset)) {
                return false;
            }
            let old = self.counted.remove(&line.uuid).expect("present");
            self.contribute(&old, false);
        }
        let mut intern = |h: Option<u64>| {
            h.map(|h| {
                let next = self.hashes.len() as u32;
                *self.hashes.entry(h).or_insert(next)
            })
            .unwrap_or(NONE)
        };
        let (session, project) = (intern(line.session), intern(line.project));
        let c = Counted {
            file,
            offset,
            session,
            project,
            day: line.day.map(|d| self.names.id(d)).unwrap_or(NONE),
            hour: line.time_ms.map(|ms| ms.div_euclid(MS_PER_HOUR)),
            tool_calls: line.tool_calls.clone().into_boxed_slice(),
            response: line.response.as_ref().map(|r| r.id),
        };
        if let Some(r) = &line.response {
            let part = ResponsePart {
                file,
                offset,
                model: self.names.id(r.model),
                day: c.day,
                usage: r.usage.map(|n| n.unwrap_or(0)),
                present: r
                    .usage
                    .iter()
                    .enumerate()
                    .fold(0, |bits, (i, n)| bits | (u8::from(n.is_some()) << i)),
            };
            self.change_response(r.id, |parts| parts.push(part));
        }
        self.contribute(&c, true);
        self.counted.insert(line.uuid, c);
        true
    }

    /// Adds (or takes back) what a counted line adds, but its response part.
    fn contribute(&mut self, c: &Counted, add: bool) {
        if c.session != NONE {
            bump(&mut self.sessions, c.session, add);
        }
        if c.project != NONE {
            bump(&mut self.projects, c.project, add);
        }
        if c.day != NONE {
            bump(&mut self.by_day, c.day, add);
        }
        if let Some(h) = c.hour {
            if add {
                *self.per_hour.entry(h).or_default() += 1;
            } else if let Some(n) = self.per_hour.get_mut(&h) {
                *n -= 1;
                if *n == 0 {
                    self.per_hour.remove(&h);
                }
            }
        }
        for &t in c.tool_calls.iter() {
            bump(&mut self.tool_calls, t, add);
        }
        if !add {
            if let Some(id) = c.response {
                let at = (c.file, c.offset);
                self.change_response(id, |parts| {
                    parts.retain(|p| (p.file, p.offset) != at);
                });
            }
        }
    }

    /// Changes a response's lines, keeping the token totals on its last line.
    fn change_response(&mut self, id: u64, change: impl FnOnce(&mut Vec<ResponsePart>)) {
        let parts = self.responses.entry(id).or_default();
        let last = |parts: &[ResponsePart], names: &Names| {
            parts.iter().copied().reduce(|a, b| {
                if names.before((a.file, a.offset), (b.file, b.offset)) {
                    b
                } else {
                    a
                }
            })
        };
        let before = last(parts, &self.names);
        change(parts);
        let after = last(parts, &self.names);
        if parts.is_empty() {
            self.responses.remove(&id);
        }
        for (part, add) in [(before, false), (after, true)] {
            if let Some(p) = part {
                apply(
                    &mut self.tokens,
                    &mut self.by_model,
                    &mut self.day_model,
                    &p,
                    add,
                );
            }
        }
    }

    /// The counts in `truth.py`'s shape.
    pub fn totals(&self) -> Totals {
        Totals {
            messages: self.counted.len() as u64,
            sessions: self.sessions.len() as u64,
            tool_calls: self.tool_calls.len() as u64,
            responses: self.responses.len() as u64,
            tokens: Tokens::from_array(self.tokens),
            by_model: self
                .by_model
                .iter()
                .filter(|(_, m)| m.counted > 0)
                .map(|(&id, m)| {
                    (
                        self.names.name(id).to_string(),
                        Tokens::from_array(m.tokens),
                    )
                })
                .collect(),
            by_day: self
                .by_day
                .iter()
                .map(|(&d, &n)| (self.names.name(d).to_string(), n))
                .collect(),
        }
    }

    /// Project directories holding messages.
    pub fn projects(&self) -> u64 {
        self.projects.len() as u64
    }

    /// Messages per hour (milliseconds of the hour's start), from their own timestamps.
    pub fn per_hour(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        self.per_hour.iter().map(|(&h, &n)| (h * MS_PER_HOUR, n))
    }

    /// Messages whose own timestamp is at or after `ms`.
    pub fn messages_since(&self, ms: i64) -> u64 {
        self.per_hour
            .range(ms.div_euclid(MS_PER_HOUR)..)
            .map(|(_, n)| n)
            .sum()
    }

    /// Tokens per day (of each response's counted line; `""` when it has none) and model,
    /// oldest day first.
    pub fn tokens_by_day_and_model(&self) -> Vec<(&str, &str, Tokens)> {
        let mut out: Vec<(&str, &str, Tokens)> = self
            .day_model
            .iter()
            .filter(|(_, t)| t.iter().any(|&n| n > 0))
            .map(|(&(day, model), t)| {
                (
                    self.names.name(day),
                    self.names.name(model),
                    Tokens::from_array(*t),
                )
            })
            .collect();
        out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out
    }
}

fn apply(
    tokens: &mut [u64; 4],
    by_model: &mut HashMap<u32, ModelTotals>,
    day_model: &mut BTreeMap<(u32, u32), [u64; 4]>,
    r: &ResponsePart,
    add: bool,
) {
    let model = by_model.entry(r.model).or_default();
    let slot = day_model.entry((r.day, r.model)).or_default();
    for i in 0..4 {
        let n = r.usage[i];
        if add {
            tokens[i] += n;
            model.tokens[i] += n;
            slot[i] += n;
        } else {
            tokens[i] -= n;
            model.tokens[i] -= n;
            slot[i] -= n;
        }
    }
    if r.present != 0 {
        if add {
            model.counted += 1;
        } else {
            model.counted -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_line;

    fn tally(files: &[(&str, &str)]) -> Tally {
        let mut t = Tally::default();
        for (file, text) in files {
            let mut offset = 0;
            for (n, line) in text.split_inclusive('\n').enumerate() {
                if let Ok(Some(m)) = parse_line(line.trim_end().as_bytes(), n as u64 + 1) {
                    if let Some(l) = Line::of(&m, file, offset, Some("p")) {
                        t.add(&l);
                    }
                }
                offset += line.len() as u64;
            }
        }
        t
    }

    const RESPONSE: &str = concat!(
        r#"{"type":"assistant","uuid":"a1","sessionId":"s","timestamp":"2025-06-01T10:00:00Z","requestId":"r1","message":{"id":"m1","model":"claude-x","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"output_tokens":1}}}"#,
        "\n",
        r#"{"type":"assistant","uuid":"a2","sessionId":"s","timestamp":"2025-06-01T10:00:01Z","requestId":"r1","message":{"id":"m1","model":"claude-x","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{}}],"usage":{"input_tokens":3,"output_tokens":40}}}"#,
        "\n",
    );

    #[test]
    fn a_response_counts_the_usage_of_its_last_line() {
        let t = tally(&[("k/a.jsonl", RESPONSE)]).totals();
        assert_eq!((t.messages, t.responses, t.tool_calls), (2, 1, 1));
        assert_eq!((t.tokens.input_tokens, t.tokens.output_tokens), (3, 40));
        assert_eq!(t.by_day["2025-06-01"], 2);
    }

    #[test]
    fn the_answer_does_not_depend_on_arrival_order() {
        // The same two lines, each in its own file: the later file's line is the last line.
        let (first, second) = RESPONSE.split_at(RESPONSE.find('\n').unwrap() + 1);
        let forward = tally(&[("k/a.jsonl", first), ("k/b.jsonl", second)]).totals();
        let backward = tally(&[("k/b.jsonl", second), ("k/a.jsonl", first)]).totals();
        assert_eq!(forward, backward);
        assert_eq!(forward.tokens.output_tokens, 40);
    }

    #[test]
    fn copies_and_non_messages_are_not_counted() {
        let resumed = format!(
            "{RESPONSE}{}\n{}\n",
            r#"{"type":"progress","uuid":"p1","sessionId":"s2","timestamp":"2025-06-02T00:00:00Z"}"#,
            r#"{"type":"user","sessionId":"s3","message":{"content":"no uuid"}}"#
        );
        let t = tally(&[("k/a.jsonl", RESPONSE), ("k/b.jsonl", &resumed)]).totals();
        assert_eq!((t.messages, t.sessions), (2, 1));
        assert_eq!(t.by_day.len(), 1);
    }
}
