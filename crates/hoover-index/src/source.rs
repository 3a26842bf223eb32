//! Sources: how a stored file's lines become searchable records.
//!
//! This is the seam where later sources plug in (images, audio, a knowledge-graph extractor):
//! each is a [`Source`] variant that turns one complete line of a version into at most one
//! [`Record`]. Files of no known source are stored and versioned but not indexed.

use hoover_transcript::{parse_line, LineError};

/// How a file is read for the index, chosen from its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// JSONL: Claude Code transcripts, and any other JSONL (every string value of a line is
    /// indexed, through the transcript parser's generic-record path).
    Jsonl,
    /// Plain text: each non-blank line is a record.
    Text,
    /// Stored and versioned, not indexed.
    Opaque,
}

impl Source {
    pub fn for_key(key: &str) -> Source {
        let name = key.rsplit('/').next().unwrap_or(key);
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "jsonl" | "ndjson" => Source::Jsonl,
            "txt" | "md" | "log" | "text" | "markdown" => Source::Text,
            _ => Source::Opaque,
        }
    }
}

/// One searchable record: a message of a transcript, a generic JSONL record or a text line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// 1-based line number of its first occurrence.
    pub line: u64,
    /// Byte offset of that line in the version.
    pub offset: u64,
    /// What the record is: for messages the type of their first content block (`text`,
    /// `thinking`, `tool_use`, `tool_result`, ...), otherwise the record's type (`summary`,
    /// `system`, `file-history-snapshot`, ...), or `line` for text files.
    pub kind: String,
    /// `user`, `assistant`, or the record kind when there is no role (`summary`, `system`).
    pub role: String,
    pub session: Option<String>,
    pub uuid: Option<String>,
    pub parent_uuid: Option<String>,
    pub message_id: Option<String>,
    pub request_id: Option<String>,
    pub tool: Option<String>,
    /// A tool result: the call it answers.
    pub tool_use_id: Option<String>,
    /// `(id, name)` of each tool call.
    pub tool_calls: Vec<(String, String)>,
    /// The record's `type` as written (`user`, `progress`, ...; `line` for text files).
    pub rtype: String,
    /// A `user` or `assistant` record with a `uuid`: what the counters count.
    pub is_message: bool,
    /// The first ten characters of its `timestamp`.
    pub day: Option<String>,
    pub project: Option<String>,
    pub git_branch: Option<String>,
    pub model: Option<String>,
    /// Milliseconds since the Unix epoch, when the record says.
    pub timestamp_ms: Option<i64>,
    pub usage: Option<hoover_transcript::Usage>,
    pub text: String,
}

/// Turns one complete line (without its newline) into a record. `Ok(None)`: nothing to index.
pub fn record(
    source: Source,
    bytes: &[u8],
    line: u64,
    offset: u64,
) -> Result<Option<Record>, LineError> {
    match source {
        Source::Opaque => Ok(None),
        Source::Text => {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim_end_matches('\r');
            if text.trim().is_empty() {
                return Ok(None);
            }
            Ok(Some(Record {
                line,
                offset,
                kind: "line".into(),
                role: "line".into(),
                rtype: "line".into(),
                text: text.to_string(),
                ..Record::default()
            }))
        }
        Source::Jsonl => {
            let Some(m) = parse_line(bytes, line)? else {
                return Ok(None);
            };
            let timestamp_ms = m.timestamp.as_deref().and_then(parse_time_ms);
            let is_message = m.is_message();
            let day = m.day().map(str::to_string);
            let model = if m.kind == "assistant" && m.message_id.is_some() {
                Some(m.model_or_unknown().to_string())
            } else {
                m.model
            };
            Ok(Some(Record {
                rtype: m.kind.clone(),
                is_message,
                day,
                request_id: m.request_id,
                tool_use_id: m.tool_use_id.filter(|_| m.tool.is_none()),
                tool_calls: m.tool_calls,
                line,
                offset,
                role: m.role.clone().unwrap_or_else(|| m.kind.clone()),
                kind: m.content.unwrap_or(m.kind),
                session: m.session,
                uuid: m.uuid,
                parent_uuid: m.parent_uuid,
                message_id: m.message_id,
                tool: m.tool,
                project: m.project,
                git_branch: m.git_branch,
                model,
                timestamp_ms,
                usage: m.usage,
                text: m.text,
            }))
        }
    }
}

pub use hoover_transcript::tally::parse_time_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_the_extension() {
        assert_eq!(Source::for_key("mac/claude/p/abc.jsonl"), Source::Jsonl);
        assert_eq!(Source::for_key("mac/notes/TODO.md"), Source::Text);
        assert_eq!(Source::for_key("mac/pics/cat.png"), Source::Opaque);
        assert_eq!(Source::for_key("mac/noext"), Source::Opaque);
    }

    #[test]
    fn generic_jsonl_indexes_its_string_values() {
        let r = record(
            Source::Jsonl,
            br#"{"event":"deploy","target":"frobnicator"}"#,
            1,
            0,
        )
        .unwrap()
        .unwrap();
        assert!(r.text.contains("frobnicator"), "{r:?}");
    }

    #[test]
    fn transcript_lines_keep_their_metadata() {
        let line = br#"{"type":"user","sessionId":"s1","uuid":"u1","parentUuid":null,"cwd":"/w/p","timestamp":"2025-06-01T10:00:00.000Z","message":{"role":"user","content":"hello zebra"}}"#;
        let r = record(Source::Jsonl, line, 7, 100).unwrap().unwrap();
        assert_eq!(r.role, "user");
        assert_eq!(r.session.as_deref(), Some("s1"));
        assert_eq!(r.project.as_deref(), Some("/w/p"));
        assert_eq!(r.timestamp_ms, Some(1_748_772_000_000));
        assert_eq!((r.line, r.offset), (7, 100));
        assert!(r.text.contains("zebra"));
    }
}
