//! Messages for a live feed, read from each newly committed version on their own, apart from the
//! index: the feed does not wait for the indexer (which runs at a low priority and may be busy
//! catching up), and a server without an index has one too.
//!
//! A [`LiveReader`] follows each file it is shown: how far its complete lines go, and how many
//! there are when it has read the file from its start, so that a version that extends the one
//! before costs only its new bytes. The caller reads at most the last [`LIVE_WINDOW`] bytes of
//! what a version added, starting mid-line if need be ([`ReadFrom::lines`] is then unknown, and
//! so are the line numbers of the messages, given as 0): a first sync of a big file shows its
//! latest messages and costs a bounded read, never the whole file. A message seen before (a
//! resumed session's copies of earlier ones) is not shown again.

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

/// The most bytes of one version that are read for the feed: the end of what it added.
pub const LIVE_WINDOW: u64 = 1 << 20;

/// How far a file's lines have been followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Followed {
    pub seq: u64,
    pub size: u64,
    /// The offset after its last complete line.
    pub done: u64,
    /// Its complete lines, when it was read from its start.
    pub lines: Option<u64>,
}

/// Where reading a version starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadFrom {
    /// Read from this offset: a line's start, the end of line number `lines` when that is
    /// known (0 and 0: the file's start), or with `mid_line` anywhere in a line, which is
    /// skipped (lines start after its newline, their numbers not known).
    pub offset: u64,
    pub lines: Option<u64>,
    pub mid_line: bool,
    /// Lines that end at or before this offset are read (counted) but not shown.
    pub show_after: u64,
}

impl ReadFrom {
    /// The start of the file.
    pub const START: ReadFrom = ReadFrom {
        offset: 0,
        lines: Some(0),
        mid_line: false,
        show_after: 0,
    };

    /// Where to read a version of `size` bytes whose new lines start at `new_from` (the end of
    /// line number `lines`, if known): there, or the last [`LIVE_WINDOW`] bytes if it added more.
    pub fn new_bytes(new_from: u64, lines: Option<u64>, size: u64) -> ReadFrom {
        match size.saturating_sub(LIVE_WINDOW) {
            window if window > new_from => ReadFrom {
                offset: window,
                lines: None,
                mid_line: true,
                show_after: 0,
            },
            _ => ReadFrom {
                offset: new_from,
                lines: if new_from == 0 { Some(0) } else { lines },
                mid_line: false,
                show_after: 0,
            },
        }
    }
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
        // Started mid-line: skip to the first line start.
        let mut skipping = from.mid_line && from.offset > 0;
        let mut at = from.offset;
        let mut reader = LineReader::resume(from.offset, from.lines.unwrap_or(0));
        if source != Source::Opaque {
            let mut redactor = redact::LineRedactor::default();
            let redact_text = self.options.redact && source == Source::Text;
            for piece in pieces {
                let piece = piece.map_err(|e| e.to_string())?;
                let mut rest = &piece[..];
                if skipping {
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            skipping = false;
                            at += i as u64 + 1;
                            reader = LineReader::resume(at, 0);
                            rest = &rest[i + 1..];
                        }
                        None => {
                            at += rest.len() as u64;
                            continue;
                        }
                    }
                }
                reader.feed(rest, |line| {
                    let Line::Text {
                        number,
                        offset,
                        bytes,
                    } = line
                    else {
                        return;
                    };
                    if offset + (bytes.len() as u64) < from.show_after {
                        return;
                    }
                    let number = if from.lines.is_some() { number } else { 0 };
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
                let number = if from.lines.is_some() { number } else { 0 };
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
        let lines = from
            .lines
            .filter(|_| !from.mid_line)
            .map(|_| reader.lines());
        let done = if skipping { v.size } else { done };
        self.files.insert(
            v.key.to_string(),
            Followed {
                seq: v.seq,
                size: v.size,
                done,
                lines,
            },
        );
        Ok(out)
    }

    /// Stops following `key`: its next version is read as one never seen (after a version the
    /// feed left out).
    pub fn forget(&mut self, key: &str) {
        self.files.remove(key);
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

    /// Where the next version of `key` is read from, as the server does when it extends.
    fn next(r: &LiveReader, key: &str, size: usize) -> ReadFrom {
        let f = r.followed(key).unwrap();
        ReadFrom::new_bytes(f.done, f.lines, size as u64)
    }

    #[test]
    fn an_append_shows_only_its_new_lines_numbered_as_in_the_file() {
        let mut r = LiveReader::default();
        let key = "s/p/x.jsonl";
        let one = user("a", "first") + &user("b", "second");
        assert_eq!(
            read(&mut r, key, 1, &one, ReadFrom::START),
            vec![(1, "first".into()), (2, "second".into())]
        );
        let f = r.followed(key).unwrap();
        assert_eq!((f.seq, f.done, f.lines), (1, one.len() as u64, Some(2)));
        // The next version, its last line not finished yet: shown once it parses.
        let third = user("c", "third");
        let two = one.clone() + &third[..third.len() - 10];
        let from = next(&r, key, two.len());
        assert!(read(&mut r, key, 2, &two, from).is_empty());
        assert_eq!(
            r.followed(key).unwrap().done,
            one.len() as u64,
            "read again"
        );
        let three = one.clone() + &third + &user("d", "fourth");
        let from = next(&r, key, three.len());
        assert_eq!(
            read(&mut r, key, 3, &three, from),
            vec![(3, "third".into()), (4, "fourth".into())]
        );
    }

    #[test]
    fn a_big_version_is_read_from_its_last_window_and_copies_are_not_shown_again() {
        let mut r = LiveReader::default();
        let mut old = String::new();
        let mut n = 0;
        while old.len() < 3 * LIVE_WINDOW as usize {
            old.push_str(&user(&format!("old{n}"), &format!("old message {n}")));
            n += 1;
        }
        let big = old.clone() + &user("new", "the newest");
        let from = ReadFrom::new_bytes(0, None, big.len() as u64);
        assert!(from.offset > 0 && from.mid_line);
        let shown = read(&mut r, "s/p/x.jsonl", 1, &big, from);
        // About a window's worth of the newest messages, line numbers not known.
        let per_line = user("old0", "old message 0").len();
        assert!(
            shown.len() < LIVE_WINDOW as usize / per_line + 2,
            "{} shown",
            shown.len()
        );
        assert_eq!(shown.last().unwrap(), &(0, "the newest".to_string()));
        assert!(shown.iter().all(|(line, t)| *line == 0 && t.contains(' ')));
        // A small file not followed yet: read from its start, only what follows the previous
        // version's bytes shown, numbered as in the file.
        let small = user("s1", "earlier") + &user("s2", "newer");
        let from = ReadFrom {
            show_after: user("s1", "earlier").len() as u64,
            ..ReadFrom::START
        };
        assert_eq!(
            read(&mut r, "s/p/z.jsonl", 4, &small, from),
            vec![(2, "newer".into())]
        );
        // A resumed session: a new file that starts with copies of the newest of them.
        let resumed = user("new", "the newest") + &user("after", "after the resume");
        assert_eq!(
            read(&mut r, "s/p/y.jsonl", 1, &resumed, ReadFrom::START),
            vec![(2, "after the resume".into())]
        );
        // The big file's next version resumes where its lines ended, still without numbers.
        let more = big.clone() + &user("more", "one more");
        let from = next(&r, "s/p/x.jsonl", more.len());
        assert_eq!(
            read(&mut r, "s/p/x.jsonl", 2, &more, from),
            vec![(0, "one more".into())]
        );
    }

    #[test]
    fn a_key_block_cut_by_the_window_stays_hidden() {
        let mut r = LiveReader::new(IndexOptions { redact: true });
        let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun";
        let mut text = String::from("-----BEGIN RSA PRIVATE KEY-----\n");
        let mut n = 0;
        while text.len() < 2 * LIVE_WINDOW as usize {
            // Each line its own (identical lines of a text file are one record).
            text.push_str(&format!("{}{n:08}\n", &body[8..]));
            n += 1;
        }
        text.push_str("-----END RSA PRIVATE KEY-----\nvisible after the key\n");
        let from = ReadFrom::new_bytes(0, None, text.len() as u64);
        let shown = read(&mut r, "s/p/notes.txt", 1, &text, from);
        assert!(shown.len() > 100);
        assert!(
            shown.iter().all(|(_, t)| t.starts_with("[REDACTED:")
                || t.starts_with("-----END")
                || t == "visible after the key"),
            "{:?}",
            shown.iter().find(|(_, t)| !t.starts_with('['))
        );
        assert_eq!(shown.last().unwrap().1, "visible after the key");
    }
}
