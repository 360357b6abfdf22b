//! SMTP replies (RFC 5321 §4.2): line framing with bounds, and a parser that
//! never panics, whatever the bytes.
//!
//! Hand-written rather than taken from a parser crate: the framing and its
//! bounds have to be ours anyway (they decide memory and time), and the
//! grammar that is left is three digits, a separator and text. Stalwart's
//! `smtp-proto` was tried: it refuses a code-only `250` EHLO reply (allowed by
//! RFC 5321 §4.2.1), keeps a CR in the text of `334 \r\n`, reads
//! `SIZE 99999999999999999999999` as 999 and caps a whole reply at 4096 bytes.

use std::fmt;

/// Bounds on what one reply may hold. Anything beyond is an error naming the
/// limit, found as soon as the bytes arrive (no waiting for a newline that
/// may never come).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest line, terminator included (RFC 5321 allows 512; servers send more).
    pub max_line: usize,
    /// Most lines in one reply (EHLO replies have about 15).
    pub max_lines: usize,
    /// Most bytes in one reply, terminators included.
    pub max_bytes: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            max_line: 4096,
            max_lines: 256,
            max_bytes: 64 * 1024,
        }
    }
}

/// A server reply: its code and the text of each line (without code or
/// separator). The text is kept as received (lossy UTF-8); anything shown to
/// a person goes through [`crate::smtp::Redactor::clean`] first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text lines, without the code.
    pub lines: Vec<String>,
}

impl Reply {
    /// The text lines joined with spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// Why bytes from the server are not a reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line did not end within the limit.
    #[error("the server sent a reply line longer than {limit} bytes")]
    LineTooLong {
        /// [`ReplyLimits::max_line`].
        limit: usize,
    },
    /// A reply went on for too many lines.
    #[error("the server sent a reply of more than {limit} lines")]
    TooManyLines {
        /// [`ReplyLimits::max_lines`].
        limit: usize,
    },
    /// A reply went on for too many bytes.
    #[error("the server sent a reply larger than {limit} bytes")]
    TooLarge {
        /// [`ReplyLimits::max_bytes`].
        limit: usize,
    },
    /// A line is not `CODE[SP|-]text`.
    #[error("the server sent a line that is not an SMTP reply: {excerpt:?}")]
    Malformed {
        /// The start of the line, lossy UTF-8 (shown only after cleaning).
        excerpt: String,
    },
    /// The lines of one reply carry different codes.
    #[error("the lines of one reply carry different codes ({first}, then {then})")]
    CodeMismatch {
        /// The code of the first line.
        first: u16,
        /// The code that differed.
        then: u16,
    },
}

/// At most this many bytes of a malformed line are kept for the error.
const EXCERPT: usize = 60;

/// Turns a byte stream into replies, one complete reply at a time.
///
/// Feed it what the connection reads ([`ReplyReader::extend`]) and take
/// replies out ([`ReplyReader::next_reply`]); bytes after a reply stay
/// buffered for the next one (pipelining), and [`ReplyReader::buffered`]
/// tells whether any are left (STARTTLS must find none). Work is linear in
/// the bytes received: each byte is scanned for a newline once.
#[derive(Debug)]
pub struct ReplyReader {
    limits: ReplyLimits,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    start: usize,
    /// Bytes from `start` already known to hold no newline.
    scanned: usize,
    partial: Partial,
}

/// The reply being assembled.
#[derive(Debug, Default)]
struct Partial {
    code: Option<u16>,
    lines: Vec<String>,
    bytes: usize,
}

impl Default for ReplyReader {
    fn default() -> Self {
        Self::new(ReplyLimits::default())
    }
}

impl ReplyReader {
    /// A reader with these bounds.
    pub fn new(limits: ReplyLimits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            partial: Partial::default(),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> ReplyLimits {
        self.limits
    }

    /// Appends bytes read from the server.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a returned reply.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether a reply has started but not ended.
    pub fn in_reply(&self) -> bool {
        self.partial.code.is_some() || self.buffered() > 0
    }

    /// The next complete reply, `Ok(None)` when more bytes are needed.
    ///
    /// An error leaves the reader unusable for this connection: the stream
    /// is out of step and must be closed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let pending = &self.buf[self.start..];
            let Some(offset) = pending[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = pending.len();
                if pending.len() >= self.limits.max_line {
                    return Err(ReplyError::LineTooLong {
                        limit: self.limits.max_line,
                    });
                }
                return Ok(None);
            };
            let end = self.scanned + offset + 1;
            if end > self.limits.max_line {
                return Err(ReplyError::LineTooLong {
                    limit: self.limits.max_line,
                });
            }
            let line_start = self.start;
            self.start += end;
            self.scanned = 0;
            let raw = &self.buf[line_start..line_start + end];
            if let Some(reply) = self.partial.push(raw, &self.limits)? {
                return Ok(Some(reply));
            }
        }
    }
}

impl Partial {
    /// Adds one line (terminator included); returns the reply on its last line.
    fn push(&mut self, raw: &[u8], limits: &ReplyLimits) -> Result<Option<Reply>, ReplyError> {
        self.bytes += raw.len();
        if self.bytes > limits.max_bytes {
            return Err(ReplyError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        if self.lines.len() >= limits.max_lines {
            return Err(ReplyError::TooManyLines {
                limit: limits.max_lines,
            });
        }
        let line = strip_terminator(raw);
        let (code, last, text) = parse_line(line)?;
        match self.code {
            None => self.code = Some(code),
            Some(first) if first != code => {
                return Err(ReplyError::CodeMismatch { first, then: code });
            }
            Some(_) => {}
        }
        self.lines.push(String::from_utf8_lossy(text).into_owned());
        if !last {
            return Ok(None);
        }
        let reply = Reply {
            code,
            lines: std::mem::take(&mut self.lines),
        };
        *self = Partial::default();
        Ok(Some(reply))
    }
}

/// The line without its LF and a CR before it (a bare LF is accepted as a
/// line end, as most clients do).
fn strip_terminator(raw: &[u8]) -> &[u8] {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `CODE`, `CODE SP text` or `CODE-text`: the code, whether it is the last
/// line, and the text. The first digit is 2 to 5 (RFC 5321 §4.2.1); a
/// code-only line is a last line with no text.
pub fn parse_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let malformed = || ReplyError::Malformed {
        excerpt: String::from_utf8_lossy(&line[..line.len().min(EXCERPT)]).into_owned(),
    };
    let (digits, rest) = match line {
        [a @ b'2'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9', rest @ ..] => ([*a, *b, *c], rest),
        _ => return Err(malformed()),
    };
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match rest {
        [] => Ok((code, true, rest)),
        [b' ', text @ ..] => Ok((code, true, text)),
        [b'-', text @ ..] => Ok((code, false, text)),
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(input: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut reader = ReplyReader::default();
        reader.extend(input);
        let mut out = Vec::new();
        while let Some(r) = reader.next_reply()? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn single_multi_and_code_only() {
        let got =
            replies(b"220 mx ready\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n250\r\n354 \r\n")
                .unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].code, 220);
        assert_eq!(got[0].lines, ["mx ready"]);
        assert_eq!(got[1].lines, ["mx", "PIPELINING", "SIZE 10"]);
        assert_eq!(
            got[2],
            Reply {
                code: 250,
                lines: vec![String::new()]
            }
        );
        assert_eq!(got[2].to_string(), "250");
        assert_eq!(got[3].lines, [""]);
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_replies() {
        let input = b"250-mx.example\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n535 5.7.8 no\n";
        let whole = replies(input).unwrap();
        for split in 0..input.len() {
            let mut reader = ReplyReader::default();
            let mut got = Vec::new();
            for part in [&input[..split], &input[split..]] {
                reader.extend(part);
                while let Some(r) = reader.next_reply().unwrap() {
                    got.push(r);
                }
            }
            assert_eq!(got, whole, "split at {split}");
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn leftover_bytes_stay_buffered() {
        let mut reader = ReplyReader::default();
        reader.extend(b"220 go ahead\r\n250-injected\r\n");
        assert_eq!(reader.next_reply().unwrap().unwrap().code, 220);
        assert_eq!(reader.buffered(), "250-injected\r\n".len());
        assert!(reader.next_reply().unwrap().is_none());
    }

    #[test]
    fn malformed_lines() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"2500 x\r\n",
            b"250x\r\n",
            b"650 x\r\n",
            b"150 x\r\n",
            b"\r\n",
            b" 250 x\r\n",
        ] {
            assert!(
                matches!(replies(bad), Err(ReplyError::Malformed { .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            replies(b"250-a\r\n550 b\r\n"),
            Err(ReplyError::CodeMismatch {
                first: 250,
                then: 550
            })
        );
    }

    #[test]
    fn limits_are_enforced_early() {
        let limits = ReplyLimits {
            max_line: 16,
            max_lines: 3,
            max_bytes: 40,
        };
        let mut reader = ReplyReader::new(limits);
        reader.extend(&[b'A'; 16]);
        assert_eq!(
            reader.next_reply(),
            Err(ReplyError::LineTooLong { limit: 16 })
        );

        let mut reader = ReplyReader::new(limits);
        reader.extend(b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n");
        assert_eq!(
            reader.next_reply(),
            Err(ReplyError::TooManyLines { limit: 3 })
        );

        let mut reader = ReplyReader::new(limits);
        reader.extend(b"250-aaaaaaaaa\r\n250-bbbbbbbbb\r\n250 ccccc\r\n");
        assert_eq!(reader.next_reply(), Err(ReplyError::TooLarge { limit: 40 }));
    }

    #[test]
    fn buffer_stays_bounded_while_lines_stream() {
        let mut reader = ReplyReader::default();
        let line = b"250-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n";
        let mut err = None;
        for _ in 0..10_000 {
            reader.extend(line);
            if let Err(e) = reader.next_reply() {
                err = Some(e);
                break;
            }
            assert!(reader.buf.len() < 2 * 4096 + line.len());
        }
        assert_eq!(err, Some(ReplyError::TooManyLines { limit: 256 }));
    }

    #[test]
    fn text_keeps_controls_and_invalid_utf8_for_the_cleaner() {
        let got = replies(b"554 \x1b[31mred\x07 \xff\r\n").unwrap();
        assert_eq!(got[0].lines, ["\u{1b}[31mred\u{7} \u{fffd}"]);
    }
}
