//! Complete lines out of the pieces of a version, as they are read from the store: each with
//! its 1-based number and byte offset in the file, without copying a line that lies within one
//! piece. A line longer than [`MAX_LINE`] is reported by its length and not kept in memory.
//! Reading can resume where an earlier version's complete lines ended.

use std::borrow::Cow;

use crate::MAX_LINE;

/// One complete line (its newline not included).
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Text {
        number: u64,
        offset: u64,
        bytes: Cow<'a, [u8]>,
    },
    /// Over [`MAX_LINE`] bytes: skipped.
    TooLong { number: u64, offset: u64, len: u64 },
}

/// Splits successive pieces into lines.
#[derive(Debug, Default)]
pub struct LineReader {
    /// Bytes of the unfinished line (empty once it is over the limit).
    partial: Vec<u8>,
    /// Length of the unfinished line, which may be more than `partial` holds.
    partial_len: u64,
    /// Offset just after the last complete line.
    done: u64,
    /// Complete lines so far.
    lines: u64,
}

impl LineReader {
    /// Starts at `offset`, the end of line number `lines`.
    pub fn resume(offset: u64, lines: u64) -> LineReader {
        LineReader {
            done: offset,
            lines,
            ..LineReader::default()
        }
    }

    /// Feeds the next piece; calls `each` for every line it completes.
    pub fn feed(&mut self, piece: &[u8], mut each: impl FnMut(Line<'_>)) {
        let mut rest = piece;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.lines += 1;
            let (number, offset) = (self.lines, self.done);
            let len = self.partial_len + i as u64;
            self.done += len + 1;
            if len > MAX_LINE as u64 {
                each(Line::TooLong {
                    number,
                    offset,
                    len,
                });
            } else if self.partial_len == 0 {
                each(Line::Text {
                    number,
                    offset,
                    bytes: Cow::Borrowed(&rest[..i]),
                });
            } else {
                self.partial.extend_from_slice(&rest[..i]);
                each(Line::Text {
                    number,
                    offset,
                    bytes: Cow::Owned(std::mem::take(&mut self.partial)),
                });
            }
            self.partial.clear();
            self.partial_len = 0;
            rest = &rest[i + 1..];
        }
        self.partial_len += rest.len() as u64;
        if self.partial_len > MAX_LINE as u64 {
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(rest);
        }
    }

    /// The unfinished last line, if any and not over the limit: `(number, offset, bytes)`.
    /// A writer may still be writing it; it is read again, whole, with the next version.
    pub fn unfinished(&self) -> Option<(u64, u64, &[u8])> {
        (self.partial_len > 0 && self.partial_len as usize == self.partial.len()).then_some((
            self.lines + 1,
            self.done,
            &self.partial[..],
        ))
    }

    /// The offset after the last complete line: where the next version resumes.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Complete lines so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Bytes of an unfinished last line, not yet handed out.
    pub fn pending(&self) -> u64 {
        self.partial_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(pieces: &[&[u8]]) -> (Vec<(u64, u64, Vec<u8>)>, LineReader) {
        let mut r = LineReader::default();
        let mut out = Vec::new();
        for p in pieces {
            r.feed(p, |l| match l {
                Line::Text {
                    number,
                    offset,
                    bytes,
                } => out.push((number, offset, bytes.into_owned())),
                Line::TooLong { .. } => panic!("not too long"),
            });
        }
        (out, r)
    }

    #[test]
    fn half_written_lines_wait_for_their_newline() {
        let (lines, r) = collect(&[b"{\"a\":", b"1}\n{\"b\":2}\n{\"c\"", b":3}\n"]);
        assert_eq!(
            lines,
            vec![
                (1, 0, b"{\"a\":1}".to_vec()),
                (2, 8, b"{\"b\":2}".to_vec()),
                (3, 16, b"{\"c\":3}".to_vec())
            ]
        );
        assert_eq!((r.done(), r.lines(), r.unfinished()), (24, 3, None));
        let (_, r) = collect(&[b"{\"a\":1}\n{\"b\""]);
        assert_eq!(r.unfinished(), Some((2, 8, &b"{\"b\""[..])));
        assert_eq!(r.pending(), 4);
    }

    #[test]
    fn a_line_over_the_limit_is_reported_not_kept() {
        let mut r = LineReader::resume(100, 9);
        let big = vec![b'x'; MAX_LINE / 2 + 1];
        let mut seen = Vec::new();
        for _ in 0..3 {
            r.feed(&big, |l| seen.push(format!("{l:?}")));
        }
        assert!(
            r.partial.capacity() <= MAX_LINE + 1,
            "the long line is not kept"
        );
        r.feed(b"\nok\n", |l| match l {
            Line::TooLong {
                number,
                offset,
                len,
            } => seen.push(format!("long {number} {offset} {len}")),
            Line::Text { number, bytes, .. } => {
                seen.push(format!("{number} {}", String::from_utf8_lossy(&bytes)))
            }
        });
        let len = 3 * (MAX_LINE as u64 / 2 + 1);
        assert_eq!(seen, [format!("long 10 100 {len}"), "11 ok".to_string()]);
        assert_eq!(r.done(), 100 + len + 1 + 3);
    }
}
