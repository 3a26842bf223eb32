//! Claude Code transcripts: JSONL lines in, searchable messages out. The first "source".
//!
//! [`LineReader`] turns the new bytes of a version into complete lines, holding back a
//! half-written last line until it is finished. [`parse_line`] turns one line into a
//! [`Message`]: user and assistant messages (string or block content: text, thinking, tool_use
//! with its name and input, tool_result with its content and error flag, images as a
//! placeholder), summaries, system and meta records, sidechain records, file-history snapshots,
//! and any other record kind as a generic record of its string values, so a new Claude Code
//! version never stops ingestion. A line that is not a JSON object, not UTF-8, or too long is a
//! [`LineError`] naming its line number; the caller counts it and goes on.
//!
//! [`tally`] counts messages, sessions, tool calls, responses and tokens as
//! `../shared/corpus/truth.py` defines them; [`prices`] estimates what the tokens cost.
//!
//! This crate is the one place that knows Claude Code's format: the index, the counters and
//! the transcript page all read transcripts through it. It does no I/O and never changes a
//! byte of what is stored: the raw line stays in the store, the message is a derived view.

pub mod lines;
pub mod prices;
pub mod session;
pub mod tally;

pub use lines::{Line, LineReader};

use serde_json::{Map, Value};

/// Lines longer than this are not parsed (the store keeps them whole).
pub const MAX_LINE: usize = 16 * 1024 * 1024;
/// Strings longer than this with no space in them (base64, minified blobs) are not searchable
/// text; a placeholder stands for them.
const MAX_WORDLESS: usize = 2048;

/// One searchable record of a transcript.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// 1-based line number in the file.
    pub line: u64,
    /// The record's `type` (`user`, `assistant`, `summary`, `system`, ... or an unknown kind).
    pub kind: String,
    /// `message.role` when there is one.
    pub role: Option<String>,
    pub session: Option<String>,
    pub uuid: Option<String>,
    pub parent_uuid: Option<String>,
    /// The API response this line belongs to (`message.id`): several lines can share one.
    pub message_id: Option<String>,
    /// The request that produced it (`requestId`, as its JSON text: any JSON value keys it).
    /// A response is the pair of `message_id` and this.
    pub request_id: Option<String>,
    /// Every `tool_use` block of an assistant message: `(id, name)`.
    pub tool_calls: Vec<(String, String)>,
    /// The subagent a Task/Agent call started (`toolUseResult.agentId`, Claude Code 2.1): its
    /// transcript is `<session>/subagents/agent-<id>.jsonl`.
    pub agent_id: Option<String>,
    /// The tool called (`tool_use`) or answered (`tool_result` keeps the id in `tool_use_id`).
    pub tool: Option<String>,
    pub tool_use_id: Option<String>,
    pub is_error: bool,
    pub is_sidechain: bool,
    pub is_meta: bool,
    /// The working directory: the project.
    pub project: Option<String>,
    pub git_branch: Option<String>,
    pub model: Option<String>,
    pub timestamp: Option<String>,
    /// Token usage, when the record carries a `usage` object: input, output, cache read, cache
    /// write, each `None` when that field is missing or not a count.
    pub usage: Option<Usage>,
    /// The text to search, blocks separated by blank lines.
    pub text: String,
    /// What the message holds, for display: the type of its first content block (`text`,
    /// `thinking`, `tool_use`, `tool_result`, `image`, ...), `text` for plain string content,
    /// `None` for records without message content.
    pub content: Option<String>,
}

/// Token counts of one line, as Claude Code wrote them: `input_tokens`, `output_tokens`,
/// `cache_read_input_tokens`, `cache_creation_input_tokens`.
pub type Usage = [Option<u64>; 4];

impl Message {
    /// Whether this record is a message of the conversation: a `user` or `assistant` record
    /// with a `uuid`. Progress, snapshots, queue operations, system, summary and unknown
    /// records are not (`../shared/corpus/truth.py` has the same definition).
    pub fn is_message(&self) -> bool {
        matches!(self.kind.as_str(), "user" | "assistant") && self.uuid.is_some()
    }

    /// The record's UTC day as it wrote it: the first ten characters of its `timestamp`.
    pub fn day(&self) -> Option<&str> {
        let ts = self.timestamp.as_deref()?;
        let end = ts
            .char_indices()
            .nth(10)
            .map(|(i, _)| i)
            .unwrap_or(ts.len());
        (ts[..end].chars().count() == 10).then(|| &ts[..end])
    }

    /// The model named for this response; `unknown` when none is given.
    pub fn model_or_unknown(&self) -> &str {
        self.model
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or("unknown")
    }
}

/// Why a line was not parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    #[error("line {line}: not valid UTF-8")]
    Utf8 { line: u64 },
    #[error("line {line}: not JSON ({reason})")]
    Json { line: u64, reason: String },
    #[error("line {line}: JSON but not an object")]
    NotObject { line: u64 },
    #[error("line {line}: {len} bytes, over the {MAX_LINE}-byte limit")]
    TooLong { line: u64, len: usize },
}

/// Parses one line (without its newline). Blank lines give `Ok(None)`.
pub fn parse_line(bytes: &[u8], line: u64) -> Result<Option<Message>, LineError> {
    Ok(parse_record(bytes, line)?.map(|record| message(&record, line)))
}

/// One line (without its newline) as the JSON object it holds, read as leniently as the index
/// reads it (a byte-order mark and a CRLF ending are tolerated). Blank lines give `Ok(None)`.
pub fn parse_record(bytes: &[u8], line: u64) -> Result<Option<Map<String, Value>>, LineError> {
    if bytes.len() > MAX_LINE {
        return Err(LineError::TooLong {
            line,
            len: bytes.len(),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| LineError::Utf8 { line })?;
    let text = text.trim_start_matches('\u{feff}').trim_end_matches('\r');
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| LineError::Json {
        line,
        reason: e.to_string(),
    })?;
    let Value::Object(record) = value else {
        return Err(LineError::NotObject { line });
    };
    Ok(Some(record))
}

fn str_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn message(r: &Map<String, Value>, line: u64) -> Message {
    let kind = str_of(r.get("type")).unwrap_or_else(|| "unknown".into());
    let msg = r.get("message").and_then(Value::as_object);
    let mut m = Message {
        line,
        role: msg.and_then(|m| str_of(m.get("role"))),
        session: str_of(r.get("sessionId")),
        uuid: str_of(r.get("uuid")),
        parent_uuid: str_of(r.get("parentUuid")),
        message_id: msg.and_then(|m| str_of(m.get("id"))),
        request_id: r
            .get("requestId")
            .filter(|v| !v.is_null())
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        is_sidechain: r
            .get("isSidechain")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        is_meta: r.get("isMeta").and_then(Value::as_bool).unwrap_or(false),
        project: str_of(r.get("cwd")),
        git_branch: str_of(r.get("gitBranch")).filter(|b| !b.is_empty()),
        model: msg.and_then(|m| str_of(m.get("model"))),
        timestamp: str_of(r.get("timestamp")),
        usage: msg.and_then(|m| m.get("usage")).and_then(usage),
        kind: kind.clone(),
        ..Default::default()
    };
    let mut parts: Vec<String> = Vec::new();
    match kind.as_str() {
        "user" | "assistant" => {
            if let Some(content) = msg.and_then(|m| m.get("content")) {
                m.content = match content {
                    Value::Array(blocks) => blocks
                        .first()
                        .and_then(|b| b.get("type"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    _ => Some("text".into()),
                };
                content_text(content, &mut m, &mut parts);
            }
            if let Some(result) = r.get("toolUseResult").and_then(Value::as_object) {
                tool_use_result(result, &mut m, &mut parts);
            }
        }
        "summary" => parts.extend(str_of(r.get("summary"))),
        "system" => {
            parts.extend(str_of(r.get("content")));
            if parts.is_empty() {
                parts.extend(str_of(r.get("subtype")));
            }
        }
        "file-history-snapshot" => {
            if let Some(files) = r
                .get("snapshot")
                .and_then(|s| s.get("trackedFileBackups"))
                .and_then(Value::as_object)
            {
                parts.extend(files.keys().cloned());
            }
        }
        _ => {
            let mut all = Vec::new();
            strings(&Value::Object(r.clone()), &mut all);
            parts = all;
        }
    }
    m.text = parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    m
}

/// The four counts of a `usage` object; a field counts when it is a whole number (a JSON
/// `true`/`false` counts 1/0, as Python's `isinstance(v, int)` has it).
pub(crate) fn usage(u: &Value) -> Option<Usage> {
    let u = u.as_object()?;
    let n = |k: &str| match u.get(k) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::Bool(b)) => Some(u64::from(*b)),
        _ => None,
    };
    Some([
        n("input_tokens"),
        n("output_tokens"),
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    ])
}

fn searchable(s: &str) -> String {
    if s.len() > MAX_WORDLESS && !s.contains(char::is_whitespace) {
        format!("[{} bytes of data]", s.len())
    } else {
        s.to_string()
    }
}

fn content_text(content: &Value, m: &mut Message, parts: &mut Vec<String>) {
    match content {
        Value::String(s) => parts.push(searchable(s)),
        Value::Array(blocks) => {
            for block in blocks {
                block_text(block, m, parts);
            }
        }
        other => {
            let mut all = Vec::new();
            strings(other, &mut all);
            parts.extend(all);
        }
    }
}

fn block_text(block: &Value, m: &mut Message, parts: &mut Vec<String>) {
    let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" => parts.extend(str_of(block.get("text")).map(|t| searchable(&t))),
        "thinking" => parts.extend(str_of(block.get("thinking")).map(|t| searchable(&t))),
        "redacted_thinking" => parts.push("[redacted thinking]".into()),
        "image" | "document" => parts.push(format!("[{kind}]")),
        "tool_use" => {
            let name = str_of(block.get("name")).unwrap_or_default();
            m.tool.get_or_insert(name.clone());
            m.tool_use_id
                .get_or_insert_with(|| str_of(block.get("id")).unwrap_or_default());
            if m.kind == "assistant" {
                if let Some(id) = block.get("id").and_then(tool_id) {
                    m.tool_calls.push((id, name.clone()));
                }
            }
            let mut input = Vec::new();
            if let Some(i) = block.get("input") {
                fields(i, &mut input);
            }
            parts.push(format!("{name} {}", input.join(" ")).trim().to_string());
        }
        "tool_result" => {
            if let Some(id) = str_of(block.get("tool_use_id")) {
                m.tool_use_id.get_or_insert(id);
            }
            if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                m.is_error = true;
            }
            if let Some(c) = block.get("content") {
                content_text(c, m, parts);
            }
        }
        "tool_reference" => parts.extend(str_of(block.get("tool_name"))),
        _ => {
            let mut all = Vec::new();
            strings(block, &mut all);
            parts.extend(all);
        }
    }
}

/// What only the tool's structured result holds: a shell's output (Claude Code cuts long
/// output from the `tool_result` text but keeps it here) and the subagent a Task/Agent call
/// started. Whole-file copies (`originalFile`, Read's `file.content`) are left out: the
/// transcript already holds that text where the tool read or wrote it.
fn tool_use_result(result: &Map<String, Value>, m: &mut Message, parts: &mut Vec<String>) {
    m.agent_id = str_of(result.get("agentId"));
    for field in ["stdout", "stderr"] {
        if let Some(out) = result.get(field).and_then(Value::as_str) {
            let out = out.trim();
            if !out.is_empty() && !parts.iter().any(|p| p.contains(out)) {
                parts.push(searchable(out));
            }
        }
    }
}

/// A `tool_use` id as Python's truthiness has it: a non-empty string, or any other non-empty,
/// non-zero JSON value by its text.
fn tool_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::String(_) | Value::Null | Value::Bool(false) => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Object(o) if o.is_empty() => None,
        other => Some(other.to_string()),
    }
}

/// Every string value under `v` as `name: value` (the innermost field's name), so that what a
/// tool was given keeps the names a reader, a search and the redaction rules go by
/// (`password: hunter2` is redacted where a bare `hunter2` could not be).
fn fields(v: &Value, out: &mut Vec<String>) {
    fn walk(name: Option<&str>, v: &Value, out: &mut Vec<String>, depth: usize) {
        if depth > 64 {
            return;
        }
        match v {
            Value::String(s) => out.push(match name {
                Some(n) => format!("{n}: {}", searchable(s)),
                None => searchable(s),
            }),
            Value::Array(a) => a.iter().for_each(|x| walk(name, x, out, depth + 1)),
            Value::Object(o) => o.iter().for_each(|(k, x)| walk(Some(k), x, out, depth + 1)),
            _ => {}
        }
    }
    walk(None, v, out, 0)
}

/// Every string value under `v`, depth-first, long wordless ones replaced by a placeholder.
/// Depth is bounded, so a deeply nested line cannot exhaust the stack.
fn strings(v: &Value, out: &mut Vec<String>) {
    fn walk(v: &Value, out: &mut Vec<String>, depth: usize) {
        if depth > 64 {
            return;
        }
        match v {
            Value::String(s) => out.push(searchable(s)),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out, depth + 1)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out, depth + 1)),
            _ => {}
        }
    }
    walk(v, out, 0)
}

/// Harnesses shared by the fuzz targets (`fuzz/`) and the tests that replay what fuzzing found
/// (`fuzz/regressions/`). Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Reads `data` as the index, the counters and the transcript page do: split into lines by
    /// [`LineReader`] fed in uneven pieces (which must give the lines it gives fed whole), each
    /// line parsed, each message counted twice (the second time must change nothing), and the
    /// session model built from it. Must never panic.
    pub fn split_and_parse(data: &[u8]) {
        /// Lines as `(number, offset, bytes or None when too long)`.
        type Lines = Vec<(u64, u64, Option<Vec<u8>>)>;
        fn read(pieces: &[&[u8]]) -> (Lines, u64, Option<Vec<u8>>) {
            let mut r = LineReader::default();
            let mut out = Vec::new();
            for p in pieces {
                r.feed(p, |l| match l {
                    Line::Text {
                        number,
                        offset,
                        bytes,
                    } => out.push((number, offset, Some(bytes.into_owned()))),
                    Line::TooLong { number, offset, .. } => out.push((number, offset, None)),
                });
            }
            let rest = r.unfinished().map(|(_, _, b)| b.to_vec());
            (out, r.done(), rest)
        }
        let whole = read(&[data]);
        let (a, rest) = data.split_at(data.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        assert_eq!(
            read(&[a, b, c]),
            whole,
            "lines depend on how the bytes were cut"
        );
        let messages: Vec<(u64, Message)> = whole
            .0
            .iter()
            .filter_map(|(n, offset, bytes)| {
                let m = parse_line(bytes.as_deref()?, *n).ok()??;
                Some((*offset, m))
            })
            .collect();
        let mut tally = tally::Tally::default();
        for _ in 0..2 {
            for (offset, m) in &messages {
                if let Some(line) = tally::Line::of(m, "f.jsonl", *offset, Some("p")) {
                    tally.add(&line);
                }
            }
        }
        let counted = messages.iter().filter(|(_, m)| m.is_message()).count() as u64;
        assert!(tally.totals().messages <= counted);
        let _ = parse_line(data, 1);
        // The transcript page's model of the same bytes, as one file and split in two.
        let (a, b) = data.split_at(data.len() / 2);
        let _ = session::build(&[session::File {
            key: "s.jsonl",
            bytes: data,
        }]);
        let _ = session::build(&[
            session::File {
                key: "s.jsonl",
                bytes: a,
            },
            session::File {
                key: "s/subagents/agent-x.jsonl",
                bytes: b,
            },
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_named_errors() {
        assert_eq!(parse_line(b"\xff\xfe", 3), Err(LineError::Utf8 { line: 3 }));
        assert!(matches!(
            parse_line(b"{not json", 4),
            Err(LineError::Json { line: 4, .. })
        ));
        assert_eq!(parse_line(b"42", 5), Err(LineError::NotObject { line: 5 }));
        assert_eq!(parse_line(b"[1]", 6), Err(LineError::NotObject { line: 6 }));
        assert_eq!(parse_line(b"   ", 7), Ok(None));
        // A BOM and a CRLF ending are tolerated.
        assert!(parse_line("\u{feff}{\"type\":\"x\"}\r".as_bytes(), 8)
            .unwrap()
            .is_some());
        // Nesting is fine to a depth, and an error (not a stack overflow) past it.
        let nested = |n: usize| {
            format!(
                "{{\"type\":\"x\",\"v\":{}1{}}}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(parse_line(nested(100).as_bytes(), 9).unwrap().is_some());
        assert!(matches!(
            parse_line(nested(100_000).as_bytes(), 10),
            Err(LineError::Json { line: 10, .. })
        ));
    }

    #[test]
    fn content_says_what_a_message_holds() {
        let content = |line: &str| parse_line(line.as_bytes(), 1).unwrap().unwrap().content;
        assert_eq!(
            content(r#"{"type":"user","message":{"role":"user","content":"hi"}}"#).as_deref(),
            Some("text")
        );
        assert_eq!(
            content(r#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"thinking","thinking":"hmm"}]}}"#).as_deref(),
            Some("thinking")
        );
        assert_eq!(
            content(r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"ok"}]}}"#).as_deref(),
            Some("tool_result")
        );
        assert_eq!(content(r#"{"type":"summary","summary":"s"}"#), None);
    }

    #[test]
    fn blocks_become_text_and_fields() {
        let line = r#"{"type":"assistant","sessionId":"s","uuid":"u2","parentUuid":"u1","cwd":"/p","gitBranch":"main","timestamp":"2025-01-01T00:00:00Z","message":{"id":"msg_1","role":"assistant","model":"claude-x","content":[{"type":"thinking","thinking":"hmm snake_case_name"},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"cargo test"}}],"usage":{"input_tokens":5,"output_tokens":7,"cache_read_input_tokens":11,"cache_creation_input_tokens":13}}}"#;
        let m = parse_line(line.as_bytes(), 1).unwrap().unwrap();
        assert_eq!(m.kind, "assistant");
        assert_eq!(m.tool.as_deref(), Some("Bash"));
        assert_eq!(m.message_id.as_deref(), Some("msg_1"));
        assert_eq!(m.model.as_deref(), Some("claude-x"));
        assert_eq!(m.usage, Some([Some(5), Some(7), Some(11), Some(13)]));
        assert!(
            m.text.contains("snake_case_name") && m.text.contains("cargo test"),
            "{}",
            m.text
        );
        let image = format!(
            r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"image","source":{{"type":"base64","data":"{}"}}}},{{"type":"tool_result","tool_use_id":"t","is_error":true,"content":"Error: nope"}}]}}}}"#,
            "A".repeat(100_000)
        );
        let m = parse_line(image.as_bytes(), 2).unwrap().unwrap();
        assert!(m.is_error);
        assert_eq!(m.text, "[image]\n\nError: nope");
        // An unknown kind keeps its strings, but not base64 blobs.
        let odd = format!(
            r#"{{"type":"future-kind","note":"hello there","blob":"{}"}}"#,
            "Q".repeat(5000)
        );
        let m = parse_line(odd.as_bytes(), 3).unwrap().unwrap();
        assert_eq!(m.kind, "future-kind");
        assert!(m.text.contains("hello there") && m.text.contains("[5000 bytes of data]"));
    }
}
