//! DATA (RFC 5321 4.1.1.4, 4.5.2): the command, and the message data
//! after `354`, read strictly.
//!
//! - Only `<CR><LF>.<CR><LF>` ends the data. A bare LF never ends a line,
//!   so `<LF>.<LF>`, `<LF>.<CR><LF>` and `<CR><LF>.<LF>` are data (the SMTP
//!   smuggling patterns), and the message holding them is refused.
//! - A bare LF or bare CR anywhere is reported ([`DataEnd`]); the relay
//!   refuses the message (read to its end, never stored): a next hop may
//!   see a line ending where this relay saw none. Bare line endings are
//!   kept as they came, never rewritten (a dev server that lets them
//!   through records them).
//! - A leading dot of a line ended by CRLF is removed (dot-unstuffing); a
//!   line ended by a bare LF keeps it (it is no line to SMTP).
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

use super::reply::Answer;
use super::session::{Close, Codec, DataStart, DataState, Event, Message, Mode};

/// What the data of one message turned out to be, at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataEnd {
    /// The data, dot-unstuffed, without the final `.` line; empty when
    /// too big or over the memory granted.
    pub data: Vec<u8>,
    /// An LF without a CR before it occurred.
    pub bare_lf: bool,
    /// A CR without an LF after it occurred.
    pub bare_cr: bool,
    /// More than `max_message_bytes`: the size seen, saturated.
    pub too_big: Option<u64>,
    /// A line longer than `max_data_line` (after dot-unstuffing).
    pub long_line: bool,
    /// More than the memory granted ([`Codec::data_allow`](super::Codec::data_allow)).
    pub over_budget: bool,
}

impl DataEnd {
    /// The relay's reading: a bare line ending first, then the size, the
    /// line length, the memory budget.
    pub fn outcome(self) -> DataOutcome {
        if self.bare_lf || self.bare_cr {
            DataOutcome::BareLineEnding
        } else if let Some(total) = self.too_big {
            DataOutcome::TooBig { total }
        } else if self.long_line {
            DataOutcome::LineTooLong
        } else if self.over_budget {
            DataOutcome::OverBudget
        } else {
            DataOutcome::Message(self.data)
        }
    }
}

/// How a message's data ended up, as the relay reads a [`DataEnd`].
#[derive(Debug, PartialEq, Eq)]
pub enum DataOutcome {
    /// Acceptable: the message, dot-unstuffed, CRLF line endings.
    Message(Vec<u8>),
    /// A bare LF or CR occurred.
    BareLineEnding,
    /// More than `max_message_bytes`.
    TooBig {
        /// The size seen, saturated.
        total: u64,
    },
    /// A line longer than `max_data_line`.
    LineTooLong,
    /// More than the memory granted ([`Codec::data_allow`](super::Codec::data_allow)).
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
    bare_lf: bool,
    bare_cr: bool,
    long_line: bool,
    /// Where in `data` the current line's stuffing dot was dropped: put
    /// back if the line ends in a bare LF.
    dot_at: Option<usize>,
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
            bare_lf: false,
            bare_cr: false,
            long_line: false,
            dot_at: None,
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
                (State::LineStart, b'.') => {
                    self.dot_at = Some(self.data.len());
                    self.state = State::Dot;
                }
                (State::LineStart | State::Text, b'\r') => self.state = State::Cr,
                (State::LineStart | State::Text | State::Dot, b'\n') => self.bare_lf(),
                (State::LineStart | State::Text, other) => {
                    self.emit(&[other]);
                    self.state = State::Text;
                }
                (State::Cr, b'\n') => {
                    self.emit(b"\r\n");
                    self.state = State::LineStart;
                    self.line_len = 0;
                    self.dot_at = None;
                }
                (State::Cr, b'\r') => {
                    self.bare_cr = true;
                    self.emit(b"\r");
                }
                (State::Cr, other) => {
                    self.bare_cr = true;
                    self.emit(&[b'\r', other]);
                    self.state = State::Text;
                }
                // The stuffing dot is dropped; the byte after it counts as
                // inside the line.
                (State::Dot, b'\r') => self.state = State::DotCr,
                (State::Dot, other) => {
                    self.emit(&[other]);
                    self.state = State::Text;
                }
                (State::DotCr, b'\n') => return Some(i),
                (State::DotCr, b'\r') => {
                    self.bare_cr = true;
                    self.emit(b"\r");
                    self.state = State::Cr;
                }
                (State::DotCr, other) => {
                    self.bare_cr = true;
                    self.emit(&[b'\r', other]);
                    self.state = State::Text;
                }
            }
        }
        None
    }

    /// What the data was, once [`feed`](Self::feed) reported the end.
    pub(crate) fn finish(self) -> DataEnd {
        DataEnd {
            data: self.data,
            bare_lf: self.bare_lf,
            bare_cr: self.bare_cr,
            too_big: self.oversize.then_some(self.total),
            long_line: self.long_line,
            over_budget: self.over_budget,
        }
    }

    /// A bare LF: kept, it ends no line (the next byte does not start
    /// one), but the line's length starts afresh, and a stuffing dot the
    /// line started with is put back, as a line ended by a bare LF is not
    /// unstuffed.
    fn bare_lf(&mut self) {
        self.bare_lf = true;
        if let Some(at) = self.dot_at.take()
            && !self.oversize
            && !self.over_budget
            && at <= self.data.len()
        {
            self.emit(b".");
            if at < self.data.len() {
                self.data[at..].rotate_right(1);
            }
        }
        self.emit(b"\n");
        self.state = State::Text;
        self.line_len = 0;
    }

    /// The memory allowed for data (without the headroom);
    /// `usize::MAX` until [`allow`](Self::allow)ed.
    pub(crate) fn allowed(&self) -> usize {
        self.allowed.saturating_sub(self.headroom)
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

impl Codec {
    /// DATA: a sender and a recipient first. A refused DATA with input
    /// behind it closes the session (see [`Codec::data_refused`]).
    pub(super) fn data(&mut self) -> Event {
        let refusal = match &self.envelope {
            None => Answer::NeedMail,
            Some(envelope) if envelope.to.is_empty() => Answer::NeedRcpt,
            Some(_) => return Event::Data,
        };
        let event = self.refuse(refusal);
        if self.closing.is_some() {
            return event;
        }
        self.data_refused();
        match self.closing {
            Some(close) => Event::Close(close),
            None => event,
        }
    }

    /// DATA was refused (the server wrote why). Bytes the client sent
    /// already (DATA ends a pipelined group, RFC 2920 3.1) are message
    /// content it sent without waiting for the `354`, and must not run as
    /// commands: as Postfix does, `554 5.5.0` and close.
    pub fn data_refused(&mut self) {
        let pending = self.input.pending().len();
        if pending > 0 && self.closing.is_none() {
            self.input.consume(pending);
            self.close_with(
                Answer::ImproperPipelining,
                Close::ImproperPipelining(pending),
            );
        }
    }

    /// Reads message data from here on; the server answers `354`.
    pub fn start_data(&mut self, start: DataStart) {
        let reader = DataReader::new(
            self.config.max_message_bytes,
            self.config.max_data_line,
            start.size_hint,
        )
        .with_headroom(start.headroom);
        self.mode = Mode::Data(Box::new(DataState {
            reader,
            cut_after: start.cut_after,
            consumed: 0,
            at_line_end: true,
            asked: 0,
        }));
    }

    /// Lets the data take `bytes` of memory (and reserves them).
    pub fn data_allow(&mut self, bytes: usize) {
        if let Mode::Data(state) = &mut self.mode {
            state.reader.allow(bytes);
        }
    }

    /// Keeps no more data: the memory budget has no room
    /// ([`DataEnd::over_budget`]).
    pub fn data_refuse_memory(&mut self) {
        if let Mode::Data(state) = &mut self.mode {
            state.reader.refuse_for_memory();
        }
    }

    /// The data bytes kept once `more` input bytes are read, at most.
    pub fn data_need(&self, more: usize) -> usize {
        match &self.mode {
            Mode::Data(state) => state.reader.need(more),
            _ => 0,
        }
    }

    /// Bytes of data read so far in this DATA.
    pub fn data_received(&self) -> u64 {
        match &self.mode {
            Mode::Data(state) => state.consumed,
            _ => 0,
        }
    }

    /// Reads data from the input; the event at its end.
    pub(super) fn data_event(&mut self) -> Option<Event> {
        loop {
            let Mode::Data(state) = &mut self.mode else {
                return None;
            };
            if let Some(cut) = state.cut_after
                && state.consumed >= cut
                && state.at_line_end
            {
                return Some(Event::DataCut);
            }
            let pending = self.input.pending();
            if pending.is_empty() {
                return None;
            }
            let need = state.reader.need(pending.len());
            if need > state.reader.allowed() && need > state.asked {
                state.asked = need;
                return Some(Event::DataMemory { need });
            }
            // With a cut: no further than the first line end past it.
            let take = match state.cut_after {
                Some(cut) => {
                    let short = usize::try_from(cut.saturating_sub(state.consumed))
                        .unwrap_or(usize::MAX)
                        .saturating_sub(1)
                        .min(pending.len());
                    pending[short..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(pending.len(), |i| short + i + 1)
                }
                None => pending.len(),
            };
            if let Some(n) = state.reader.feed(&pending[..take]) {
                self.input.consume(n);
                return Some(self.end_data());
            }
            state.consumed = state.consumed.saturating_add(take as u64);
            state.at_line_end = pending[take - 1] == b'\n';
            self.input.consume(take);
        }
    }

    /// The end of the data: the transaction is over.
    fn end_data(&mut self) -> Event {
        let data = match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::Data(state) => state.reader.finish(),
            _ => DataEnd::default(),
        };
        let envelope = self.envelope.take().unwrap_or_default();
        Event::Message(Box::new(Message { envelope, data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (DataOutcome, usize) {
        let mut r = DataReader::new(1000, 100, None);
        let n = r.feed(input).expect("end of data");
        (r.finish().outcome(), n)
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
        assert_eq!(r.finish().outcome(), DataOutcome::TooBig { total: 5002 });

        let mut r = DataReader::new(100, 10, None);
        assert!(r.feed(b"12345678\r\n.\r\n").is_some());
        assert_eq!(r.finish().outcome(), msg(b"12345678\r\n"));
        let mut r = DataReader::new(100, 10, None);
        assert!(r.feed(b"123456789\r\n.\r\n").is_some());
        assert_eq!(r.finish().outcome(), DataOutcome::LineTooLong);
        // A stuffing dot does not count: 11 octets on the wire, 10 after
        // unstuffing.
        let mut r = DataReader::new(100, 10, None);
        assert!(r.feed(b"..2345678\r\n.\r\n").is_some());
        assert_eq!(r.finish().outcome(), msg(b".2345678\r\n"));
        let mut r = DataReader::new(100, 10, None);
        assert!(r.feed(b"..23456789\r\n.\r\n").is_some());
        assert_eq!(r.finish().outcome(), DataOutcome::LineTooLong);
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
        assert!(matches!(r.finish().outcome(), DataOutcome::Message(m) if m.len() == 9900));
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
        assert_eq!(r.finish().outcome(), DataOutcome::OverBudget);
        // A permanent refusal wins over the budget.
        let mut r = DataReader::new(100, 1000, None);
        r.allow(0);
        assert!(r.feed(&[b'x'; 200]).is_none());
        assert!(r.feed(b"\r\n.\r\n").is_some());
        assert!(matches!(r.finish().outcome(), DataOutcome::TooBig { .. }));
        let mut r = DataReader::new(100, 1000, None);
        r.refuse_for_memory();
        assert!(r.feed(b"a\r\n.\r\n").is_some());
        assert_eq!(r.finish().outcome(), DataOutcome::OverBudget);
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
                if let DataOutcome::Message(m) = a.outcome() {
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
