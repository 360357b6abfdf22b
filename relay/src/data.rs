//! Reading message data after `354` (RFC 5321 4.1.1.4, 4.5.2), strictly.
//!
//! - Only `<CR><LF>.<CR><LF>` ends the data. A bare LF never ends a line,
//!   so `<LF>.<LF>`, `<LF>.<CR><LF>` and `<CR><LF>.<LF>` are data (the SMTP
//!   smuggling patterns), and the message holding them is refused.
//! - A bare LF or bare CR anywhere refuses the message (read to its end,
//!   never stored): a next hop may see a line ending where this relay saw
//!   none.
//! - A leading dot of a line is removed (dot-unstuffing).
//! - What is kept is capped at `max_message_bytes`: past it nothing more is
//!   kept (the buffer is freed) and the message is refused at its end; the
//!   buffer's capacity never exceeds the cap.
//! - With a memory budget ([`DataReader::allow`]), the data never
//!   outgrows what the session was granted: past it nothing more is kept
//!   and the message is answered `452` at its end (unless refused for
//!   good). A few KiB of headroom ([`DataReader::with_headroom`]) are
//!   kept free at the end of the buffer, so that the trace field and the
//!   fields the store adds fit without a second buffer.
//! - A line longer than `max_data_line` (CRLF included) after
//!   dot-unstuffing refuses the message: the transparency dot is not part
//!   of the line (RFC 5321 4.5.3.1.6), so a 998-octet line that starts
//!   with a dot (999 on the wire) is accepted.
//!
//! The reader is fed arbitrary chunks; the result does not depend on where
//! the chunks split.

/// How a message's data ended up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// Acceptable: the message, dot-unstuffed, CRLF line endings.
    Message(Vec<u8>),
    /// A bare LF or CR occurred.
    BareLineEnding,
    /// More than `max_message_bytes` (`total`: the size seen, saturated).
    TooBig { total: u64 },
    /// A line longer than `max_data_line`.
    LineTooLong,
    /// More than the memory granted ([`DataReader::allow`]).
    OverBudget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or right after DATA).
    LineStart,
    /// Inside a line.
    Text,
    /// After a CR inside a line.
    Cr,
    /// After a dot at the start of a line.
    Dot,
    /// After `.` CR at the start of a line.
    DotCr,
}

/// The DATA state machine; see the module documentation.
#[derive(Debug)]
pub(crate) struct DataReader {
    max_message: usize,
    max_line: usize,
    state: State,
    line_len: usize,
    data: Vec<u8>,
    total: u64,
    oversize: bool,
    bare: bool,
    long_line: bool,
    /// The most bytes the buffer may take (its capacity), headroom
    /// included; unlimited unless [`allow`](Self::allow)ed.
    allowed: usize,
    /// Capacity kept free beyond the data.
    headroom: usize,
    over_budget: bool,
}

impl DataReader {
    pub(crate) fn new(max_message: usize, max_line: usize, size_hint: Option<u64>) -> DataReader {
        // A modest start: the declared SIZE is a hint from the client, not
        // a reason to allocate the maximum at once.
        let start = size_hint
            .and_then(|s| usize::try_from(s).ok())
            .unwrap_or(0)
            .clamp(0, 64 * 1024)
            .min(max_message);
        DataReader {
            max_message,
            max_line,
            state: State::LineStart,
            line_len: 0,
            data: Vec::with_capacity(start),
            total: 0,
            oversize: false,
            bare: false,
            long_line: false,
            allowed: usize::MAX,
            headroom: 0,
            over_budget: false,
        }
    }

    /// Keeps `bytes` of capacity free beyond the data (counted in what is
    /// [`allow`](Self::allow)ed).
    pub(crate) fn with_headroom(mut self, bytes: usize) -> DataReader {
        self.headroom = bytes;
        self
    }

    /// The data bytes kept once `more` input bytes are fed, at most
    /// (output never exceeds input); 0 once nothing more is kept.
    pub(crate) fn need(&self, more: usize) -> usize {
        if self.oversize || self.over_budget {
            return 0;
        }
        self.data.len().saturating_add(more).min(self.max_message)
    }

    /// Lets the buffer take `bytes` of data (and its headroom), and
    /// reserves them at once: one allocation for a message whose size was
    /// declared. The headroom is not counted: a small constant per
    /// session, like its input buffer.
    pub(crate) fn allow(&mut self, bytes: usize) {
        self.allowed = bytes.saturating_add(self.headroom);
        let want = self
            .allowed
            .min(self.max_message.saturating_add(self.headroom));
        if want > self.data.capacity() && !self.oversize && !self.over_budget {
            self.data.reserve_exact(want - self.data.len());
        }
    }

    /// Keeps nothing more: the memory budget has no room for this message.
    pub(crate) fn refuse_for_memory(&mut self) {
        if !self.oversize {
            self.over_budget = true;
            self.data = Vec::new();
        }
    }

    /// Consumes bytes of `input`. Returns `Some(n)` when the data ended
    /// within `input`, `n` being the bytes consumed (the rest belongs to
    /// the commands after); `None` when all of `input` was consumed.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            // Fast path: a run of ordinary bytes inside a line.
            if self.state == State::Text {
                let run = input[i..]
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(input.len() - i);
                if run > 0 {
                    self.count_line(run);
                    self.emit(&input[i..i + run]);
                    i += run;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            // The stuffing dot is not part of the line.
            if !(self.state == State::LineStart && b == b'.') {
                self.count_line(1);
            }
            match (self.state, b) {
                (State::LineStart, b'.') => self.state = State::Dot,
                (State::LineStart | State::Text, b'\r') => self.state = State::Cr,
                (State::LineStart | State::Text, b'\n') => {
                    self.bare = true;
                    self.emit(b"\n");
                    self.state = State::Text;
                }
                (State::LineStart | State::Text, other) => {
                    self.emit(&[other]);
                    self.state = State::Text;
                }
                (State::Cr, b'\n') => {
                    self.emit(b"\r\n");
                    self.state = State::LineStart;
                    self.line_len = 0;
                }
                (State::Cr, b'\r') => {
                    self.bare = true;
                    self.emit(b"\r");
                }
                (State::Cr, other) => {
                    self.bare = true;
                    self.emit(&[b'\r', other]);
                    self.state = State::Text;
                }
                // The stuffing dot is dropped; the byte after it counts as
                // inside the line.
                (State::Dot, b'\r') => self.state = State::DotCr,
                (State::Dot, b'\n') => {
                    self.bare = true;
                    self.emit(b"\n");
                    self.state = State::Text;
                }
                (State::Dot, other) => {
                    self.emit(&[other]);
                    self.state = State::Text;
                }
                (State::DotCr, b'\n') => return Some(i),
                (State::DotCr, b'\r') => {
                    self.bare = true;
                    self.emit(b"\r");
                    self.state = State::Cr;
                }
                (State::DotCr, other) => {
                    self.bare = true;
                    self.emit(&[b'\r', other]);
                    self.state = State::Text;
                }
            }
        }
        None
    }

    /// The outcome, once [`feed`](Self::feed) reported the end.
    pub(crate) fn finish(self) -> DataOutcome {
        if self.bare {
            DataOutcome::BareLineEnding
        } else if self.oversize {
            DataOutcome::TooBig { total: self.total }
        } else if self.long_line {
            DataOutcome::LineTooLong
        } else if self.over_budget {
            DataOutcome::OverBudget
        } else {
            DataOutcome::Message(self.data)
        }
    }

    /// The bytes kept so far and the buffer's capacity (for tests).
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.data.len(), self.data.capacity())
    }

    fn count_line(&mut self, n: usize) {
        self.line_len = self.line_len.saturating_add(n);
        if self.line_len > self.max_line {
            self.long_line = true;
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len() as u64);
        if self.oversize {
            return;
        }
        let needed = self.data.len() + bytes.len();
        if needed > self.max_message {
            self.oversize = true;
            // Nothing of it will be stored: free it now.
            self.data = Vec::new();
            return;
        }
        if self.over_budget {
            return;
        }
        if needed + self.headroom > self.data.capacity() {
            if needed + self.headroom > self.allowed {
                self.refuse_for_memory();
                return;
            }
            let target = (self.data.capacity() * 2)
                .max(needed + self.headroom)
                .max(4096)
                .min(self.max_message + self.headroom)
                .min(self.allowed);
            self.data.reserve_exact(target - self.data.len());
        }
        self.data.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (DataOutcome, usize) {
        let mut r = DataReader::new(1000, 100, None);
        let n = r.feed(input).expect("end of data");
        (r.finish(), n)
    }

    fn msg(v: &[u8]) -> DataOutcome {
        DataOutcome::Message(v.to_vec())
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        assert_eq!(run(b".\r\n"), (msg(b""), 3));
        assert_eq!(run(b"a\r\n.\r\nQUIT\r\n"), (msg(b"a\r\n"), 6));
        assert_eq!(run(b"a\r\n..b\r\n.\r\n"), (msg(b"a\r\n.b\r\n"), 11));
        assert_eq!(run(b"a\r\n.b\r\n.\r\n").0, msg(b"a\r\nb\r\n"));
        // Smuggling patterns: never an end, always a refusal.
        assert_eq!(run(b"a\n.\nb\r\n.\r\n").0, DataOutcome::BareLineEnding);
        assert_eq!(run(b"a\n.\r\nb\r\n.\r\n").0, DataOutcome::BareLineEnding);
        assert_eq!(run(b"a\r\n.\nb\r\n.\r\n").0, DataOutcome::BareLineEnding);
        assert_eq!(run(b"a\r\n.\r\rb\r\n.\r\n").0, DataOutcome::BareLineEnding);
        assert_eq!(run(b"a\r\n.\r\r\n.\r\n").0, DataOutcome::BareLineEnding);
        assert_eq!(run(b"a\rb\r\n.\r\n").0, DataOutcome::BareLineEnding);
        assert_eq!(run(b"a\r\r\n.\r\n").0, DataOutcome::BareLineEnding);
        let mut r = DataReader::new(1000, 100, None);
        assert_eq!(r.feed(b"a\n.\n"), None);
        assert_eq!(r.feed(b"a\r.\r"), None);
    }

    #[test]
    fn limits() {
        let mut r = DataReader::new(10, 1000, Some(u64::MAX));
        assert_eq!(r.feed(&[b'x'; 5000]), None);
        assert_eq!(r.held(), (0, 0));
        assert!(r.feed(b"\r\n.\r\n").is_some());
        assert_eq!(r.finish(), DataOutcome::TooBig { total: 5002 });

        let mut r = DataReader::new(100, 10, None);
        assert!(r.feed(b"12345678\r\n.\r\n").is_some());
        assert_eq!(r.finish(), msg(b"12345678\r\n"));
        let mut r = DataReader::new(100, 10, None);
        assert!(r.feed(b"123456789\r\n.\r\n").is_some());
        assert_eq!(r.finish(), DataOutcome::LineTooLong);
        // A stuffing dot does not count: 11 octets on the wire, 10 after
        // unstuffing.
        let mut r = DataReader::new(100, 10, None);
        assert!(r.feed(b"..2345678\r\n.\r\n").is_some());
        assert_eq!(r.finish(), msg(b".2345678\r\n"));
        let mut r = DataReader::new(100, 10, None);
        assert!(r.feed(b"..23456789\r\n.\r\n").is_some());
        assert_eq!(r.finish(), DataOutcome::LineTooLong);
    }

    #[test]
    fn capacity_never_exceeds_the_cap() {
        let mut r = DataReader::new(10_000, 1000, None);
        for _ in 0..99 {
            assert_eq!(r.feed(&[b'y'; 98]), None);
            assert_eq!(r.feed(b"\r\n"), None);
            assert!(r.held().1 <= 10_000);
        }
        assert!(r.feed(b".\r\n").is_some());
        assert!(matches!(r.finish(), DataOutcome::Message(m) if m.len() == 9900));
    }

    #[test]
    fn the_buffer_keeps_within_what_is_allowed_and_its_headroom() {
        let mut r = DataReader::new(10_000, 1000, Some(5000)).with_headroom(100);
        assert_eq!(r.need(5000), 5000);
        assert_eq!(r.need(50_000), 10_000);
        r.allow(5000);
        assert!(r.held().1 >= 5100);
        let at = r.data.as_ptr();
        for _ in 0..50 {
            assert_eq!(r.feed(&[b'y'; 98]), None);
            assert_eq!(r.feed(b"\r\n"), None);
        }
        // One buffer from the start: the declared size and the headroom.
        assert_eq!(r.data.as_ptr(), at);
        assert!(r.held().1 - r.held().0 >= 100);
        assert_eq!(r.need(100), 5100);
        // One byte more than allowed: nothing more is kept.
        assert_eq!(r.feed(b"z"), None);
        assert_eq!(r.held(), (0, 0));
        assert_eq!(r.need(1), 0);
        assert!(r.feed(b"\r\n.\r\n").is_some());
        assert_eq!(r.finish(), DataOutcome::OverBudget);
        // A permanent refusal wins over the budget.
        let mut r = DataReader::new(100, 1000, None);
        r.allow(0);
        assert!(r.feed(&[b'x'; 200]).is_none());
        assert!(r.feed(b"\r\n.\r\n").is_some());
        assert!(matches!(r.finish(), DataOutcome::TooBig { .. }));
        let mut r = DataReader::new(100, 1000, None);
        r.refuse_for_memory();
        assert!(r.feed(b"a\r\n.\r\n").is_some());
        assert_eq!(r.finish(), DataOutcome::OverBudget);
    }

    proptest::proptest! {
        #[test]
        fn chunking_does_not_matter(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::bytes_regex("[a.]{0,3}").unwrap(),
                    proptest::strategy::Just(b"\r\n".to_vec()),
                    proptest::strategy::Just(b"\r".to_vec()),
                    proptest::strategy::Just(b"\n".to_vec()),
                    proptest::strategy::Just(b".".to_vec()),
                    proptest::strategy::Just(b"\r\n.\r\n".to_vec()),
                ],
                0..40,
            ),
            cuts in proptest::collection::vec(0usize..200, 0..10),
        ) {
            let input: Vec<u8> = parts.concat();
            let mut whole = DataReader::new(50, 20, None);
            let whole_end = whole.feed(&input);
            let mut pieces = DataReader::new(50, 20, None);
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= input.len()).collect();
            cuts.push(0);
            cuts.push(input.len());
            cuts.sort_unstable();
            cuts.dedup();
            let mut piece_end = None;
            for w in cuts.windows(2) {
                if let Some(n) = pieces.feed(&input[w[0]..w[1]]) {
                    piece_end = Some(w[0] + n);
                    break;
                }
            }
            proptest::prop_assert_eq!(whole_end, piece_end);
            if whole_end.is_some() {
                let (a, b) = (whole.finish(), pieces.finish());
                proptest::prop_assert_eq!(&a, &b);
                if let DataOutcome::Message(m) = a {
                    // What is accepted has CRLF line endings only.
                    for (k, &byte) in m.iter().enumerate() {
                        if byte == b'\n' {
                            proptest::prop_assert!(k > 0 && m[k - 1] == b'\r');
                        }
                        if byte == b'\r' {
                            proptest::prop_assert_eq!(m.get(k + 1), Some(&b'\n'));
                        }
                    }
                    proptest::prop_assert!(m.len() <= 50);
                }
                // The end is a CRLF.CRLF at a line start.
                let end = whole_end.unwrap();
                proptest::prop_assert!(end >= 3 && &input[end - 3..end] == b".\r\n");
            }
        }
    }
}
