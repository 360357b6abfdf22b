//! The input buffer and the framing of command lines: CRLF only (a bare
//! LF only when the server allows it), at most `max_line` bytes, no other
//! control character, valid UTF-8.
//!
//! The buffer has a fixed size and is never grown: a line longer than
//! `max_line` is dropped as it comes, up to its LF.

/// A line taken in command (or SASL) mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A CRLF-terminated line without its CRLF: printable, valid UTF-8.
    Text(String),
    /// Longer than `max_line`; consumed up to its LF.
    TooLong,
    /// Ended by a bare LF (the line without it, lossy).
    BareLf(String),
    /// Holds a control character (a bare CR, NUL, TAB, ...) or is not
    /// UTF-8 (the line, lossy).
    BadBytes(String),
}

impl Frame {
    /// The line as text (lossy), without its line end; empty when too long.
    pub(crate) fn text(&self) -> &str {
        match self {
            Frame::Text(t) | Frame::BareLf(t) | Frame::BadBytes(t) => t,
            Frame::TooLong => "",
        }
    }
}

/// The bytes received and not yet processed.
#[derive(Debug)]
pub(crate) struct Input {
    buf: Box<[u8]>,
    /// `buf[start..end]` is received and not yet processed.
    start: usize,
    end: usize,
    /// Inside a line longer than the limit: dropped up to its LF.
    discarding: bool,
    /// Bytes received since the start (or since STARTTLS).
    received: u64,
}

impl Input {
    pub(crate) fn new(size: usize) -> Input {
        Input {
            buf: vec![0; size].into_boxed_slice(),
            start: 0,
            end: 0,
            discarding: false,
            received: 0,
        }
    }

    /// Free space to read into; never empty while nothing is pending.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`space`](Self::space).
    pub(crate) fn filled(&mut self, n: usize) {
        let n = n.min(self.buf.len() - self.end);
        self.end += n;
        self.received += n as u64;
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Whether more bytes fit (a read would not find the buffer full).
    pub(crate) fn has_room(&self) -> bool {
        self.start > 0 || self.end < self.buf.len()
    }

    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Drops everything pending and starts counting afresh; returns the
    /// bytes dropped.
    pub(crate) fn clear(&mut self) -> usize {
        let dropped = self.end - self.start;
        self.start = 0;
        self.end = 0;
        self.discarding = false;
        self.received = 0;
        dropped
    }

    /// Takes the next line, or `None` when it has not arrived whole yet.
    /// The second value is where the line ends, in bytes received.
    pub(crate) fn frame(&mut self, max: usize, lf_ends_line: bool) -> Option<(Frame, u64)> {
        let pending = &self.buf[self.start..self.end];
        let Some(i) = pending.iter().position(|&b| b == b'\n') else {
            if pending.len() >= max {
                // Too long already: drop what is here, and the rest of
                // the line as it comes.
                self.discarding = true;
                self.start = self.end;
            }
            return None;
        };
        let raw = &pending[..=i];
        self.start += i + 1;
        let at = self.received - (self.end - self.start) as u64;
        if std::mem::take(&mut self.discarding) || raw.len() > max {
            return Some((Frame::TooLong, at));
        }
        let body = match raw.strip_suffix(b"\r\n") {
            Some(body) => body,
            None if lf_ends_line => &raw[..i],
            None => {
                let line = String::from_utf8_lossy(&raw[..i]).into_owned();
                return Some((Frame::BareLf(line), at));
            }
        };
        if body.iter().any(|&b| b < 0x20 || b == 0x7f) {
            let line = String::from_utf8_lossy(body).into_owned();
            return Some((Frame::BadBytes(line), at));
        }
        let frame = match std::str::from_utf8(body) {
            Ok(text) => Frame::Text(text.to_owned()),
            Err(_) => Frame::BadBytes(String::from_utf8_lossy(body).into_owned()),
        };
        Some((frame, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(input: &mut Input, bytes: &[u8]) {
        let space = input.space();
        space[..bytes.len()].copy_from_slice(bytes);
        input.filled(bytes.len());
    }

    #[test]
    fn lines_end_in_crlf_only() {
        let mut input = Input::new(64);
        feed(&mut input, b"NOOP\r\nA\nB\rC\r\n\xff\r\nrest");
        assert_eq!(
            input.frame(20, false),
            Some((Frame::Text("NOOP".into()), 6))
        );
        assert_eq!(input.frame(20, false), Some((Frame::BareLf("A".into()), 8)));
        assert_eq!(
            input.frame(20, false),
            Some((Frame::BadBytes("B\rC".into()), 13))
        );
        assert!(matches!(
            input.frame(20, false),
            Some((Frame::BadBytes(_), 16))
        ));
        assert_eq!(input.frame(20, false), None);
        assert_eq!(input.pending(), b"rest");
        let mut lenient = Input::new(64);
        feed(&mut lenient, b"EHLO x\n");
        assert_eq!(
            lenient.frame(20, true),
            Some((Frame::Text("EHLO x".into()), 7))
        );
    }

    #[test]
    fn long_lines_are_dropped_as_they_come() {
        let mut input = Input::new(64);
        feed(&mut input, &[b'x'; 32]);
        assert_eq!(input.frame(16, false), None);
        assert!(input.pending().is_empty());
        feed(&mut input, b"yyy\r\nNOOP\r\n");
        assert_eq!(input.frame(16, false), Some((Frame::TooLong, 37)));
        assert_eq!(
            input.frame(16, false),
            Some((Frame::Text("NOOP".into()), 43))
        );
        // Exactly the limit, CRLF included, is fine; one more is not.
        feed(&mut input, b"12345678901234\r\n123456789012345\r\n");
        assert!(matches!(input.frame(16, false), Some((Frame::Text(_), _))));
        assert!(matches!(input.frame(16, false), Some((Frame::TooLong, _))));
    }
}
