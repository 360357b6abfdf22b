//! The conformance cases every server on the codec passes: SMTP smuggling
//! variants, limits, dot transparency, pipelining, STARTTLS injection.
//!
//! A case is a script of what a client sends and the classes of the
//! replies it must get (the wording is each server's), and the data of
//! the messages the server must have taken (without a trace field it
//! adds). Every session starts after the `220` greeting; servers under
//! test are configured with the limits below ([`MAX_LINE`], ...), offer
//! STARTTLS, and take any sender and recipient.
//!
//! The relay runs them over TCP (`relay/tests/codec_suite.rs`), the dev
//! server too (`devserver/tests/codec_suite.rs`), and [`Reference`], a
//! minimal server on the codec, runs them without I/O, in one piece and
//! cut into small chunks.

use super::auth::SaslResponse;
use super::session::{Close, Codec, CodecConfig, DataStart, Event, Extensions};

/// The longest command line and data line the cases assume, CRLF
/// included.
pub const MAX_LINE: usize = 1000;
/// The largest message the cases assume.
pub const MAX_MESSAGE: usize = 4096;
/// The most recipients per message the cases assume.
pub const MAX_RECIPIENTS: usize = 3;
/// The error replies after which the cases expect `421` and a close.
pub const MAX_ERRORS: usize = 20;

/// The class of a reply: its first digit (RFC 5321 4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx.
    Positive,
    /// 3xx.
    Intermediate,
    /// 4xx.
    Transient,
    /// 5xx.
    Permanent,
}

impl Class {
    /// The class of `code`; `None` outside 200..=599.
    pub fn of(code: u16) -> Option<Class> {
        match code / 100 {
            2 => Some(Class::Positive),
            3 => Some(Class::Intermediate),
            4 => Some(Class::Transient),
            5 => Some(Class::Permanent),
            _ => None,
        }
    }
}

/// One step of a case.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// The client writes these bytes (in one write).
    Send(&'static [u8]),
    /// The client writes these bytes this many times over (in one write).
    Repeat(&'static [u8], usize),
    /// The client reads replies of these classes, in order.
    Expect(&'static [Class]),
    /// The client does the TLS handshake (after `220` to STARTTLS).
    Tls,
    /// The server closes the connection without another reply.
    Closed,
}

/// A message the server must have taken, by its data.
#[derive(Debug, Clone, Copy)]
pub enum Stored {
    /// These bytes exactly.
    Exactly(&'static [u8]),
    /// This many bytes.
    Len(usize),
}

impl Stored {
    /// Whether `data` is what was expected.
    pub fn matches(&self, data: &[u8]) -> bool {
        match self {
            Stored::Exactly(bytes) => data == *bytes,
            Stored::Len(n) => data.len() == *n,
        }
    }
}

/// One conformance case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Its name.
    pub name: &'static str,
    /// The script.
    pub steps: &'static [Step],
    /// The messages taken, in order.
    pub stored: &'static [Stored],
    /// The case depends on what the server has received at once (bytes
    /// pipelined behind STARTTLS or a refused DATA): each write must
    /// arrive whole, not cut into chunks.
    pub whole: bool,
}

impl Case {
    /// Checks the messages a server took.
    pub fn check_stored(&self, stored: &[Vec<u8>]) -> Result<(), String> {
        let fits = stored.len() == self.stored.len()
            && self.stored.iter().zip(stored).all(|(e, d)| e.matches(d));
        if fits {
            Ok(())
        } else {
            let got: Vec<String> = stored
                .iter()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .collect();
            Err(format!(
                "{}: stored {got:?}, expected {:?}",
                self.name, self.stored
            ))
        }
    }
}

const POS: Class = Class::Positive;
const MID: Class = Class::Intermediate;
const TMP: Class = Class::Transient;
const ERR: Class = Class::Permanent;

const HELLO: Step = Step::Send(b"EHLO client.example\r\n");
const HELLO_OK: Step = Step::Expect(&[POS]);
/// MAIL, RCPT, DATA in one write.
const ENVELOPE: Step = Step::Send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
const ENVELOPE_OK: Step = Step::Expect(&[POS, POS, MID]);
const NOOP: Step = Step::Send(b"NOOP\r\n");
const ONE_POS: Step = Step::Expect(&[POS]);
const ONE_ERR: Step = Step::Expect(&[ERR]);

/// A message whose data is `$data`, refused; the session goes on.
macro_rules! refused_data {
    ($name:expr, $data:expr) => {
        Case {
            name: $name,
            steps: &[
                HELLO,
                HELLO_OK,
                ENVELOPE,
                ENVELOPE_OK,
                Step::Send($data),
                ONE_ERR,
                NOOP,
                ONE_POS,
            ],
            stored: &[],
            whole: false,
        }
    };
}

/// A message whose data is `$data`, taken as `$stored`.
macro_rules! taken_data {
    ($name:expr, $data:expr, $stored:expr) => {
        Case {
            name: $name,
            steps: &[
                HELLO,
                HELLO_OK,
                ENVELOPE,
                ENVELOPE_OK,
                Step::Send($data),
                ONE_POS,
                NOOP,
                ONE_POS,
            ],
            stored: &[Stored::Exactly($stored)],
            whole: false,
        }
    };
}

/// Every case.
pub const CASES: &[Case] = &[
    taken_data!(
        "plain message",
        b"Subject: x\r\n\r\nhi\r\n.\r\n",
        b"Subject: x\r\n\r\nhi\r\n"
    ),
    taken_data!("empty message", b".\r\n", b""),
    taken_data!(
        "dot transparency",
        b"..a\r\n.b\r\n...\r\n..\r\n.\r\n",
        b".a\r\nb\r\n..\r\n.\r\n"
    ),
    taken_data!(
        "commands inside the data are data",
        b"MAIL FROM:<x@y.example>\r\nRCPT TO:<z@y.example>\r\nDATA\r\nQUIT\r\n.\r\n",
        b"MAIL FROM:<x@y.example>\r\nRCPT TO:<z@y.example>\r\nDATA\r\nQUIT\r\n"
    ),
    taken_data!(
        "a dot and a space is data",
        b"a\r\n. \r\n.\r\n",
        b"a\r\n \r\n"
    ),
    taken_data!("NUL is data", b"a\0b\r\n\0.\r\n.\r\n", b"a\0b\r\n\0.\r\n"),
    refused_data!(
        "<LF>.<LF> does not end the data",
        b"a\n.\nMAIL FROM:<e@x.example>\r\n.\r\n"
    ),
    refused_data!(
        "<CR><LF>.<LF> does not end the data",
        b"a\r\n.\nRSET\r\n.\r\n"
    ),
    refused_data!(
        "<LF>.<CR><LF> does not end the data",
        b"a\n.\r\nRSET\r\n.\r\n"
    ),
    refused_data!("<CR>.<CR> does not end the data", b"a\r.\rRSET\r\n.\r\n"),
    refused_data!(
        "<CR><LF>.<CR><CR><LF> does not end the data",
        b"a\r\n.\r\r\nRSET\r\n.\r\n"
    ),
    refused_data!("a bare CR in a line", b"a\rb\r\n.\r\n"),
    refused_data!("a bare LF in a line", b"a\nb\r\n.\r\n"),
    Case {
        name: "a data line over the limit",
        steps: &[
            HELLO,
            HELLO_OK,
            ENVELOPE,
            ENVELOPE_OK,
            Step::Repeat(b"y", MAX_LINE),
            Step::Send(b"\r\n.\r\n"),
            ONE_ERR,
            NOOP,
            ONE_POS,
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "the stuffing dot is not part of the line",
        steps: &[
            HELLO,
            HELLO_OK,
            ENVELOPE,
            ENVELOPE_OK,
            Step::Send(b"."),
            Step::Repeat(b"y", MAX_LINE - 2),
            Step::Send(b"\r\n.\r\n"),
            ONE_POS,
        ],
        stored: &[Stored::Len(MAX_LINE)],
        whole: false,
    },
    Case {
        name: "a message over the size limit",
        steps: &[
            HELLO,
            HELLO_OK,
            ENVELOPE,
            ENVELOPE_OK,
            Step::Repeat(b"0123456789012345678901234567890123456789\r\n", 100),
            Step::Send(b".\r\n"),
            ONE_ERR,
            NOOP,
            ONE_POS,
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "SIZE over the limit",
        steps: &[
            HELLO,
            HELLO_OK,
            Step::Send(b"MAIL FROM:<a@b.example> SIZE=5000\r\n"),
            ONE_ERR,
            Step::Send(b"MAIL FROM:<a@b.example> SIZE=4000\r\n"),
            ONE_POS,
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "a command line over the limit",
        steps: &[
            HELLO,
            HELLO_OK,
            Step::Send(b"NOOP "),
            Step::Repeat(b"x", MAX_LINE),
            Step::Send(b"\r\n"),
            ONE_ERR,
            NOOP,
            ONE_POS,
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "a bare LF ends no command",
        steps: &[Step::Send(b"NOOP\nNOOP\r\n"), Step::Expect(&[ERR, POS])],
        stored: &[],
        whole: false,
    },
    Case {
        name: "a bare CR in a command",
        steps: &[Step::Send(b"NO\rOP\r\nNOOP\r\n"), Step::Expect(&[ERR, POS])],
        stored: &[],
        whole: false,
    },
    Case {
        name: "NUL in a command",
        steps: &[
            Step::Send(b"NOOP\0\r\nMAIL FROM:<a\0@b.example>\r\nNOOP\r\n"),
            Step::Expect(&[ERR, ERR, POS]),
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "content pipelined after a refused DATA never runs",
        steps: &[
            HELLO,
            HELLO_OK,
            Step::Send(
                b"MAIL FROM:<a@b.example>\r\nDATA\r\nSubject: x\r\n\r\nRSET\r\nQUIT\r\n.\r\n",
            ),
            Step::Expect(&[POS, ERR, ERR]),
            Step::Closed,
        ],
        stored: &[],
        whole: true,
    },
    Case {
        name: "a refused DATA with nothing behind it",
        steps: &[
            HELLO,
            HELLO_OK,
            Step::Send(b"DATA\r\n"),
            ONE_ERR,
            Step::Send(b"MAIL FROM:<a@b.example>\r\n"),
            ONE_POS,
            Step::Send(b"DATA\r\n"),
            ONE_ERR,
            NOOP,
            ONE_POS,
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "commands pipelined after STARTTLS are dropped",
        steps: &[
            Step::Send(b"EHLO client.example\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\n"),
            Step::Expect(&[POS, POS]),
            Step::Tls,
            Step::Send(b"RCPT TO:<c@d.example>\r\n"),
            ONE_ERR,
            HELLO,
            HELLO_OK,
            Step::Send(b"STARTTLS\r\n"),
            ONE_ERR,
            ENVELOPE,
            ENVELOPE_OK,
            Step::Send(b"hi\r\n.\r\n"),
            ONE_POS,
        ],
        stored: &[Stored::Exactly(b"hi\r\n")],
        whole: true,
    },
    Case {
        name: "a pipelined group and the next transaction behind the data",
        steps: &[
            Step::Send(
                b"EHLO client.example\r\nMAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n\
                  RCPT TO:<c@d.example>\r\nRCPT TO:<bad address@d.example>\r\n\
                  RCPT TO:<e@d.example>\r\nDATA\r\n",
            ),
            Step::Expect(&[POS, POS, POS, ERR, POS, MID]),
            Step::Send(b"one\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n"),
            Step::Expect(&[POS, POS, POS, MID]),
            Step::Send(b"two\r\n.\r\nQUIT\r\n"),
            Step::Expect(&[POS, POS]),
            Step::Closed,
        ],
        stored: &[Stored::Exactly(b"one\r\n"), Stored::Exactly(b"two\r\n")],
        whole: false,
    },
    Case {
        name: "sequence",
        steps: &[
            Step::Send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"),
            Step::Expect(&[ERR, ERR]),
            HELLO,
            HELLO_OK,
            Step::Send(
                b"RCPT TO:<c@d.example>\r\nMAIL FROM:<a@b.example>\r\n\
                  MAIL FROM:<a@b.example>\r\nRSET\r\nRCPT TO:<c@d.example>\r\n",
            ),
            Step::Expect(&[ERR, POS, ERR, POS, ERR]),
            Step::Send(b"VRFY someone\r\nHELP\r\nNOOP\r\nRSET\r\n"),
            Step::Expect(&[POS, POS, POS, POS]),
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "parameters and addresses",
        steps: &[
            Step::Send(b"HELO client.example\r\nMAIL FROM:<a@b.example> SIZE=10\r\n"),
            Step::Expect(&[POS, ERR]),
            HELLO,
            HELLO_OK,
            Step::Send(
                b"MAIL FROM:<a@b.example> XFOO=1\r\nMAIL FROM:<a@b.example> SIZE=1 SIZE=2\r\n\
                  MAIL FROM:<a b@c.example>\r\nMAIL FROM:<a@b.example>x\r\n\
                  MAIL FROM:<\"x>\"@b.example>\r\nMAIL FROM:<a@b.example> SIZE=10\r\n\
                  RCPT TO:<>\r\nRCPT TO:<a..b@d.example>\r\nRCPT TO:<c@d.example> XFOO=1\r\n",
            ),
            Step::Expect(&[ERR, ERR, ERR, ERR, ERR, POS, ERR, ERR, ERR]),
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "too many recipients",
        steps: &[
            HELLO,
            HELLO_OK,
            Step::Send(
                b"MAIL FROM:<a@b.example>\r\nRCPT TO:<r1@d.example>\r\nRCPT TO:<r2@d.example>\r\n\
                  RCPT TO:<r3@d.example>\r\nRCPT TO:<r4@d.example>\r\n",
            ),
            Step::Expect(&[POS, POS, POS, POS, TMP]),
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "too many errors close the session",
        steps: &[
            Step::Repeat(b"BOGUS\r\n", MAX_ERRORS),
            Step::Expect(&[ERR; MAX_ERRORS]),
            Step::Expect(&[TMP]),
            Step::Closed,
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "BDAT is not offered",
        steps: &[
            HELLO,
            HELLO_OK,
            Step::Send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 4 LAST\r\n"),
            Step::Expect(&[POS, POS, ERR]),
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "an HTTP request closes the connection",
        steps: &[
            Step::Send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Step::Closed,
        ],
        stored: &[],
        whole: false,
    },
    Case {
        name: "QUIT",
        steps: &[Step::Send(b"QUIT\r\n"), ONE_POS, Step::Closed],
        stored: &[],
        whole: false,
    },
];

/// The codec as the cases assume it: their limits, STARTTLS and the
/// usual extensions offered, the relay's wording.
pub fn codec_config() -> CodecConfig {
    CodecConfig {
        max_line: MAX_LINE,
        max_data_line: MAX_LINE,
        max_message_bytes: MAX_MESSAGE,
        max_errors: MAX_ERRORS,
        extensions: Extensions {
            pipelining: true,
            size: true,
            eight_bit_mime: true,
            enhanced_status_codes: true,
            starttls: true,
            ..Extensions::default()
        },
        ..CodecConfig::default()
    }
}

/// A minimal server on the codec, without I/O: takes any sender and
/// recipient (at most [`MAX_RECIPIENTS`]), stores the messages that have
/// nothing wrong, "does" STARTTLS by dropping what was received, and
/// takes any AUTH response (when AUTH is offered). For the conformance
/// cases and fuzzing.
#[derive(Debug)]
pub struct Reference {
    codec: Codec,
    stored: Vec<Vec<u8>>,
    closed: bool,
    events: usize,
    /// STARTTLS dropped input, or a refused DATA had input behind it.
    chunking_matters: bool,
}

impl Reference {
    /// A session whose `220` greeting is written.
    pub fn new(config: CodecConfig) -> Reference {
        let mut codec = Codec::new(config);
        codec.reply(220, "reference ESMTP");
        Reference {
            codec,
            stored: Vec::new(),
            closed: false,
            events: 0,
            chunking_matters: false,
        }
    }

    /// Receives `bytes` and acts on everything they complete; stops taking
    /// bytes once the session is closed.
    pub fn receive(&mut self, mut bytes: &[u8]) {
        loop {
            self.run();
            if self.closed || bytes.is_empty() {
                return;
            }
            let space = self.codec.read_buffer();
            let n = space.len().min(bytes.len());
            if n == 0 {
                // A full buffer with nothing to act on: cannot happen (lines
                // are bounded, data is consumed); never spin on it.
                return;
            }
            space[..n].copy_from_slice(&bytes[..n]);
            self.codec.filled(n);
            bytes = &bytes[n..];
        }
    }

    /// Takes what the server wrote.
    pub fn take_output(&mut self) -> Vec<u8> {
        let out = self.codec.output().to_vec();
        self.codec.clear_output();
        out
    }

    /// The messages taken.
    pub fn stored(&self) -> &[Vec<u8>] {
        &self.stored
    }

    /// Whether the session is over.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Events acted on so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Whether what the session did depended on how its input was cut
    /// into reads: STARTTLS dropped what was received after it, or a
    /// refused DATA closed the session for the input behind it. Otherwise
    /// the same input gives the same output however it arrives.
    pub fn chunking_matters(&self) -> bool {
        self.chunking_matters
    }

    /// The codec.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    fn run(&mut self) {
        while !self.closed {
            let Some(event) = self.codec.next_event() else {
                return;
            };
            self.events += 1;
            self.act(event);
        }
    }

    fn act(&mut self, event: Event) {
        let codec = &mut self.codec;
        match event {
            Event::Helo { extended, .. } => codec.accept_helo("reference", extended),
            Event::StartTls => {
                codec.reply(220, "2.0.0 Ready to start TLS");
                codec.start_tls();
                self.chunking_matters = true;
            }
            // Any response is taken, after one challenge if none came.
            Event::Auth {
                initial: Some(response),
                ..
            }
            | Event::SaslResponse(response) => match response {
                SaslResponse::Data(_) => {
                    codec.authenticated();
                    codec.reply(235, "2.7.0 OK");
                }
                _ => codec.error(501, "5.7.0 Cancelled"),
            },
            Event::Auth { initial: None, .. } => codec.challenge(""),
            Event::Mail { path, params } => {
                let max = codec.config().max_message_bytes as u64;
                if params.size.is_some_and(|s| s > max) {
                    codec.error(552, "5.3.4 Too big");
                } else {
                    codec.accept_mail(path.address, params);
                    codec.reply(250, "2.1.0 OK");
                }
            }
            Event::Rcpt { path, params } => {
                if codec.envelope().map_or(0, |e| e.to.len()) >= MAX_RECIPIENTS {
                    codec.reply(452, "4.5.3 Too many recipients");
                } else {
                    codec.accept_rcpt(path.address, params);
                    codec.reply(250, "2.1.5 OK");
                }
            }
            Event::Data => {
                codec.start_data(DataStart::default());
                codec.reply(354, "Go ahead");
            }
            Event::DataMemory { need } => codec.data_allow(need),
            Event::DataCut => self.closed = true,
            Event::Message(message) => {
                let data = message.data;
                if data.bare_lf || data.bare_cr || data.long_line || data.over_budget {
                    codec.error(550, "5.6.0 Refused");
                } else if data.too_big.is_some() {
                    codec.error(552, "5.3.4 Too big");
                } else {
                    self.stored.push(data.data);
                    codec.reply(250, "2.0.0 Stored");
                }
            }
            Event::Rset => codec.reply(250, "2.0.0 OK"),
            Event::Quit => {
                codec.reply(221, "2.0.0 Bye");
                self.closed = true;
            }
            Event::Close(close) => {
                self.closed = true;
                if matches!(close, Close::ImproperPipelining(_)) {
                    self.chunking_matters = true;
                }
            }
            Event::Line(_) | Event::Replied => {}
        }
    }
}

/// Runs `case` on a [`Reference`], each write cut into chunks of at most
/// `chunk` bytes (`usize::MAX`: whole).
pub fn run_reference(case: &Case, chunk: usize) -> Result<(), String> {
    let mut server = Reference::new(codec_config());
    let mut replies = Replies::default();
    replies.push(&server.take_output());
    if replies.next_class() != Some(Class::Positive) {
        return Err(format!("{}: no greeting", case.name));
    }
    for (i, step) in case.steps.iter().enumerate() {
        let here = |what: String| format!("{}, step {i}: {what}", case.name);
        match *step {
            Step::Send(bytes) => {
                for part in bytes.chunks(chunk.max(1)) {
                    server.receive(part);
                }
            }
            Step::Repeat(bytes, times) => {
                let all = bytes.repeat(times);
                for part in all.chunks(chunk.max(1)) {
                    server.receive(part);
                }
            }
            Step::Expect(classes) => {
                replies.push(&server.take_output());
                for expected in classes {
                    let got = replies.next_class();
                    if got != Some(*expected) {
                        return Err(here(format!("expected {expected:?}, got {got:?}")));
                    }
                }
            }
            Step::Tls => {}
            Step::Closed => {
                replies.push(&server.take_output());
                if !server.closed() || replies.next_class().is_some() {
                    return Err(here("not closed, or more replies".to_owned()));
                }
            }
        }
    }
    case.check_stored(server.stored())
}

/// Reply lines as they come, taken a reply at a time.
#[derive(Debug, Default)]
struct Replies {
    pending: Vec<u8>,
}

impl Replies {
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The class of the next whole reply, if one is there.
    fn next_class(&mut self) -> Option<Class> {
        loop {
            let end = self.pending.windows(2).position(|w| w == b"\r\n")?;
            let line: Vec<u8> = self.pending.drain(..end + 2).collect();
            let code = std::str::from_utf8(line.get(..3)?).ok()?.parse().ok()?;
            if line.get(3) != Some(&b'-') {
                return Class::of(code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_on_the_codec_in_one_piece() {
        for case in CASES {
            run_reference(case, usize::MAX).unwrap();
        }
    }

    #[test]
    fn every_case_on_the_codec_in_chunks() {
        for case in CASES.iter().filter(|c| !c.whole) {
            for chunk in [1, 2, 3, 7, 64] {
                run_reference(case, chunk).unwrap_or_else(|e| panic!("chunks of {chunk}: {e}"));
            }
        }
    }
}
