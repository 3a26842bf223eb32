//! Messages for a live feed, read from each newly committed version on their own, apart from the
//! index: the feed does not wait for the indexer (which runs at a low priority and may be busy
//! catching up), and a server without an index has one too.
//!
//! A [`LiveReader`] follows each file it is shown: how far its complete lines go and how many
//! there are, so that a version that extends the one before costs only its new bytes, and the
//! line numbers it gives are the file's. A file it has not followed yet is read from its start
//! once (its lines counted, not parsed). Only the last [`LIVE_WINDOW`] bytes of what a version
//! added are parsed: a first sync of a big file shows its latest messages, not all of them, and
//! costs a bounded amount of parsing. A message seen before (a resumed session's copies of
//! earlier ones) is not shown again.

use std::collections::{HashMap, HashSet};

use hoover_transcript::tally;
use hoover_transcript::{Line, LineReader};

use crate::source::{self, Source};
use crate::{query, redact, stats, IndexOptions, Record, StoredMessage, VersionMeta};

/// A message for a live feed: the message as a session page would show it, its text cut at
/// [`ADDED_TEXT_MAX`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Added {
    #[serde(flatten)]
    pub message: StoredMessage,
    /// True when `message.text` was cut.
    pub truncated: bool,
}

/// The most text an [`Added`] message carries.
pub const ADDED_TEXT_MAX: usize = 4096;

/// The most bytes of one version's new lines that are parsed for the feed (the lines that end
/// in its last `LIVE_WINDOW` bytes).
pub const LIVE_WINDOW: u64 = 1 << 20;

/// How far a file's lines have been followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Followed {
    pub seq: u64,
    pub size: u64,
    /// The offset after its last complete line.
    pub done: u64,
    /// Its complete lines.
    pub lines: u64,
}

/// Where reading a version starts, and which of its lines are new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadFrom {
    /// Read from this offset, the end of line number `lines` (0, 0: the start).
    pub offset: u64,
    pub lines: u64,
    /// Lines that end past this offset are new.
    pub new_after: u64,
}

/// Turns newly committed versions into messages for a live feed.
#[derive(Default)]
pub struct LiveReader {
    options: IndexOptions,
    files: HashMap<String, Followed>,
    /// Every message identity shown or passed, so a copy is not shown again.
    seen: HashSet<u64>,
    /// The tool each call named, so its result can say it too.
    tool_names: HashMap<u64, String>,
}

impl LiveReader {
    pub fn new(options: IndexOptions) -> LiveReader {
        LiveReader {
            options,
            ..LiveReader::default()
        }
    }

    /// How far `key` has been followed.
    pub fn followed(&self, key: &str) -> Option<Followed> {
        self.files.get(key).copied()
    }

    /// Reads version `v` of a file from `from` (its bytes from `from.offset` on, in `pieces`)
    /// and returns its new messages, oldest first.
    pub fn read_version<E: std::fmt::Display>(
        &mut self,
        v: &VersionMeta<'_>,
        from: ReadFrom,
        pieces: impl IntoIterator<Item = Result<Vec<u8>, E>>,
    ) -> Result<Vec<Added>, String> {
        let source = Source::for_key(v.key);
        let mut out = Vec::new();
        let mut reader = LineReader::resume(from.offset, from.lines);
        if source != Source::Opaque {
            // Lines are parsed from the last window of the new bytes on; the lines before it
            // are only counted (and followed by the text redactor, for a key block that spans).
            let parse_from = from.new_after.max(v.size.saturating_sub(LIVE_WINDOW));
            let mut redactor = redact::LineRedactor::default();
            let redact_text = self.options.redact && source == Source::Text;
            for piece in pieces {
                let piece = piece.map_err(|e| e.to_string())?;
                reader.feed(&piece, |line| {
                    let Line::Text {
                        number,
                        offset,
                        bytes,
                    } = line
                    else {
                        return;
                    };
                    let end = offset + bytes.len() as u64 + 1;
                    if end <= parse_from {
                        if redact_text {
                            redactor.pass(&String::from_utf8_lossy(&bytes));
                        }
                        return;
                    }
                    if let Ok(Some(mut r)) = source::record(source, &bytes, number, offset) {
                        if redact_text {
                            r.text = redactor.redact(&r.text).into_owned();
                        }
                        self.add(v, source, &bytes, r, &mut out);
                    }
                });
            }
            // A JSONL record without its newline yet: shown once it parses whole (its
            // identity keeps it from being shown again when the next version completes it).
            if let (Source::Jsonl, Some((number, at, partial))) = (source, reader.unfinished()) {
                if let Ok(Some(r)) = source::record(source, partial, number, at) {
                    let partial = partial.to_vec();
                    self.add(v, source, &partial, r, &mut out);
                }
            }
        }
        let done = match source {
            Source::Opaque => v.size,
            _ => reader.done(),
        };
        self.files.insert(
            v.key.to_string(),
            Followed {
                seq: v.seq,
                size: v.size,
                done,
                lines: reader.lines(),
            },
        );
        Ok(out)
    }

    fn add(
        &mut self,
        v: &VersionMeta<'_>,
        source: Source,
        line: &[u8],
        r: Record,
        out: &mut Vec<Added>,
    ) {
        for (id, name) in &r.tool_calls {
            self.tool_names
                .insert(tally::tool_call_id(id), name.to_string());
        }
        if !self.seen.insert(crate::record_uid(&r, source, v.key, line)) {
            return;
        }
        // The feed shows conversation, not Claude Code's bookkeeping (as searches do).
        if query::HIDDEN_KINDS.contains(&r.rtype.as_str()) {
            return;
        }
        let tool = r.tool.clone().or_else(|| {
            r.tool_use_id
                .as_deref()
                .and_then(|id| self.tool_names.get(&tally::tool_call_id(id)).cloned())
        });
        let text = match self.options.redact && source != Source::Text {
            true => redact::redact(&r.text),
            false => std::borrow::Cow::Borrowed(r.text.as_str()),
        };
        let cut = (text.len() > ADDED_TEXT_MAX).then(|| {
            let mut end = ADDED_TEXT_MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            end
        });
        let ts = r.timestamp_ms.unwrap_or(v.mtime_ms);
        out.push(Added {
            message: StoredMessage {
                key: v.key.to_string(),
                session: r.session,
                uuid: r.uuid,
                parent_uuid: r.parent_uuid,
                role: r.role,
                kind: r.kind,
                tool,
                project: r.project,
                git_branch: r.git_branch,
                model: r.model,
                timestamp: stats::ms_to_rfc3339(ts),
                seq: v.seq,
                line: r.line,
                text: text[..cut.unwrap_or(text.len())].to_string(),
            },
            truncated: cut.is_some(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uuid: &str, text: &str) -> String {
        format!(
            r#"{{"type":"user","sessionId":"s","uuid":"{uuid}","timestamp":"2025-06-01T10:00:00Z","message":{{"role":"user","content":"{text}"}}}}"#
        ) + "\n"
    }

    /// Reads `bytes` as version `seq` of `key` from `from`, in pieces of 7 bytes.
    fn read(
        r: &mut LiveReader,
        key: &str,
        seq: u64,
        bytes: &str,
        from: ReadFrom,
    ) -> Vec<(u64, String)> {
        let v = VersionMeta {
            key,
            seq,
            size: bytes.len() as u64,
            mtime_ms: 0,
        };
        let pieces: Vec<Result<Vec<u8>, String>> = bytes.as_bytes()[from.offset as usize..]
            .chunks(7)
            .map(|c| Ok(c.to_vec()))
            .collect();
        r.read_version(&v, from, pieces)
            .unwrap()
            .into_iter()
            .map(|a| (a.message.line, a.message.text))
            .collect()
    }

    const START: ReadFrom = ReadFrom {
        offset: 0,
        lines: 0,
        new_after: 0,
    };

    #[test]
    fn an_append_shows_only_its_new_lines_numbered_as_in_the_file() {
        let mut r = LiveReader::default();
        let one = user("a", "first") + &user("b", "second");
        assert_eq!(
            read(&mut r, "s/p/x.jsonl", 1, &one, START),
            vec![(1, "first".into()), (2, "second".into())]
        );
        let f = r.followed("s/p/x.jsonl").unwrap();
        assert_eq!((f.seq, f.done, f.lines), (1, one.len() as u64, 2));
        // The next version, its last line not finished yet: shown once it parses.
        let third = user("c", "third");
        let two = one.clone() + &third[..third.len() - 10];
        let from = ReadFrom {
            offset: f.done,
            lines: f.lines,
            new_after: f.done,
        };
        assert!(read(&mut r, "s/p/x.jsonl", 2, &two, from).is_empty());
        let three = one.clone() + &third + &user("d", "fourth");
        let f = r.followed("s/p/x.jsonl").unwrap();
        assert_eq!(
            f.done,
            one.len() as u64,
            "the unfinished line is read again"
        );
        let from = ReadFrom {
            offset: f.done,
            lines: f.lines,
            new_after: f.done,
        };
        assert_eq!(
            read(&mut r, "s/p/x.jsonl", 3, &three, from),
            vec![(3, "third".into()), (4, "fourth".into())]
        );
    }

    #[test]
    fn a_file_first_seen_late_is_counted_not_shown_and_copies_are_not_shown_again() {
        let mut r = LiveReader::default();
        let old = user("a", "old one") + &user("b", "old two");
        let new = old.clone() + &user("c", "new");
        let from = ReadFrom {
            new_after: old.len() as u64,
            ..START
        };
        assert_eq!(
            read(&mut r, "s/p/x.jsonl", 7, &new, from),
            vec![(3, "new".into())]
        );
        // A resumed session: a new file that starts with copies of those messages.
        let resumed = user("c", "new") + &user("e", "after the resume");
        assert_eq!(
            read(&mut r, "s/p/y.jsonl", 1, &resumed, START),
            vec![(2, "after the resume".into())]
        );
    }

    #[test]
    fn only_the_last_window_of_a_big_version_is_parsed_and_a_key_block_across_it_stays_hidden() {
        let mut r = LiveReader::new(IndexOptions { redact: true });
        let filler = "x".repeat(1000) + "\n";
        let mut text = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
        while text.len() < (LIVE_WINDOW + 4096) as usize {
            text.push_str(&filler);
        }
        text.push_str("-----END OPENSSH PRIVATE KEY-----\nvisible after the key\n");
        let shown = read(&mut r, "s/p/notes.txt", 1, &text, START);
        let lines = text.lines().count() as u64;
        assert!(shown.len() < 1100, "{} lines shown", shown.len());
        assert!(
            shown
                .iter()
                .all(|(_, t)| t == "[REDACTED:private-key]" || t == "visible after the key"),
            "{:?}",
            shown.iter().find(|(_, t)| !t.starts_with('['))
        );
        assert_eq!(
            shown.last().unwrap(),
            &(lines, "visible after the key".to_string())
        );
    }
}
