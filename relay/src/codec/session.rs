//! The session state machine: bytes in, [`Event`]s and replies out.
//!
//! greeting → EHLO/HELO → \[STARTTLS → EHLO\] → \[AUTH\] → MAIL → RCPT* →
//! DATA → ..., with RSET, NOOP, VRFY, HELP and QUIT anywhere. The codec
//! checks each command's syntax and its place in the sequence, and
//! answers what it refuses by itself; the server decides the rest (who
//! may send, which addresses, where a message goes) on the events.

use std::borrow::Cow;

use super::auth::{self, SaslResponse};
use super::command::{self, Command, Path};
use super::data::{DataEnd, DataReader};
use super::line::{Frame, Input};
use super::params::{MailParams, Offered, RcptParams};
use super::reply::{Answer, Dialect, Standard, push_reply};

/// The smallest input buffer.
const MIN_BUFFER: usize = 16 * 1024;

/// The output buffer is given back beyond this size once written.
const OUT_KEEP: usize = 64 * 1024;

/// The extensions a server offers in its EHLO reply, in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `PIPELINING` (RFC 2920). Pipelined commands are served either way.
    pub pipelining: bool,
    /// `SIZE max_message_bytes` (RFC 1870) and MAIL's `SIZE=`.
    pub size: bool,
    /// `8BITMIME` (RFC 6152) and MAIL's `BODY=`.
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531) and MAIL's `SMTPUTF8`.
    pub smtputf8: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `DSN` (RFC 3461): MAIL's `RET=` and `ENVID=`, RCPT's `NOTIFY=` and
    /// `ORCPT=`.
    pub dsn: bool,
    /// `STARTTLS` (RFC 3207), offered until TLS is active.
    pub starttls: bool,
    /// `AUTH` with these mechanisms (`PLAIN LOGIN`), offered when TLS is
    /// active or not required for AUTH; `None`: no AUTH.
    pub auth: Option<String>,
}

/// What a server tells the codec: its limits, the extensions it offers,
/// what it requires, and how it words the codec's own replies.
#[derive(Clone)]
pub struct CodecConfig {
    /// The longest command line (and SASL response), CRLF included;
    /// longer ones get `500`.
    pub max_line: usize,
    /// The longest line of message data after dot-unstuffing, CRLF
    /// included ([`DataEnd::long_line`]).
    pub max_data_line: usize,
    /// The most message data kept ([`DataEnd::too_big`]); advertised as
    /// `SIZE`.
    pub max_message_bytes: usize,
    /// Error replies (5xx) per session; at this many the codec answers
    /// `421` and closes.
    pub max_errors: usize,
    /// Command lines (SASL responses excluded) per session, or since
    /// [`Codec::reset_command_count`]; the one beyond gets `421` and
    /// closes.
    pub max_commands: usize,
    /// A bare LF ends a command line (the dev server's
    /// `reject_bare_lf(false)`); by default such a line gets `500`.
    pub bare_lf_ends_line: bool,
    /// A MAIL or RCPT address may be a local part alone (`root`), as
    /// msmtp sends an unqualified sender; the dev server takes them, the
    /// relay, which passes addresses on, does not.
    pub unqualified_addresses: bool,
    /// Each line read is reported ([`Event::Line`]) before it is acted
    /// on, and the codec returns after each command it answers by itself
    /// ([`Event::Replied`]), so that a server can write each reply at
    /// once and record what came pipelined.
    pub report_lines: bool,
    /// What EHLO offers.
    pub extensions: Extensions,
    /// AUTH only after STARTTLS.
    pub require_tls_for_auth: bool,
    /// MAIL only after STARTTLS.
    pub require_tls_for_mail: bool,
    /// MAIL only after AUTH.
    pub require_auth: bool,
    /// The wording of the codec's own replies.
    pub dialect: &'static dyn Dialect,
}

impl std::fmt::Debug for CodecConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodecConfig")
            .field("max_line", &self.max_line)
            .field("max_data_line", &self.max_data_line)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_errors", &self.max_errors)
            .field("max_commands", &self.max_commands)
            .field("bare_lf_ends_line", &self.bare_lf_ends_line)
            .field("unqualified_addresses", &self.unqualified_addresses)
            .field("report_lines", &self.report_lines)
            .field("extensions", &self.extensions)
            .field("require_tls_for_auth", &self.require_tls_for_auth)
            .field("require_tls_for_mail", &self.require_tls_for_mail)
            .field("require_auth", &self.require_auth)
            .finish_non_exhaustive()
    }
}

impl Default for CodecConfig {
    /// RFC 5321's minimums and the relay's wording; no extension offered.
    fn default() -> Self {
        CodecConfig {
            max_line: 512,
            max_data_line: 1000,
            max_message_bytes: 10 * 1024 * 1024,
            max_errors: 10,
            max_commands: 1000,
            bare_lf_ends_line: false,
            unqualified_addresses: false,
            report_lines: false,
            extensions: Extensions::default(),
            require_tls_for_auth: false,
            require_tls_for_mail: false,
            require_auth: false,
            dialect: &Standard,
        }
    }
}

/// A line as read, reported before it is acted on (with
/// [`CodecConfig::report_lines`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInfo {
    /// The line without its line end, invalid UTF-8 replaced; empty when
    /// too long.
    pub text: String,
    /// Longer than `max_line` (and dropped).
    pub too_long: bool,
    /// A response to a `334` challenge, not a command.
    pub sasl: bool,
    /// Where the line ends, in bytes received ([`Codec::received`]).
    pub end: u64,
}

/// Why the codec closes the session. Its reply (if any) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// QUIT: the server answers it and closes.
    Quit,
    /// `max_errors` reached: `421` written.
    TooManyErrors,
    /// `max_commands` exceeded: `421` written.
    TooManyCommands,
    /// This many bytes came after a refused DATA (message content sent
    /// without waiting for the `354`): `554` written, the bytes dropped.
    ImproperPipelining(usize),
    /// An HTTP request line (or another protocol's): nothing written.
    ForeignProtocol,
}

/// The envelope of the transaction: MAIL's sender and parameters, the
/// accepted recipients with theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path as the server kept it; empty for `<>`.
    pub from: String,
    /// MAIL's parameters.
    pub params: MailParams,
    /// The accepted forward-paths, in order.
    pub to: Vec<String>,
    /// RCPT's parameters, one per entry of `to`.
    pub rcpt_params: Vec<RcptParams>,
}

/// A message at the end of its data: the envelope it came with and what
/// the data turned out to be. The transaction is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// MAIL and RCPT.
    pub envelope: Envelope,
    /// The data and what was wrong with it.
    pub data: DataEnd,
}

/// What the server must act on. Every command event wants a reply from
/// the server (through [`Codec::reply`] or [`Codec::error`]) and, when it
/// accepts, the matching call (`greeted`, `start_tls`, `accept_mail`,
/// ...).
#[derive(Debug)]
pub enum Event {
    /// A line was read ([`CodecConfig::report_lines`]); it is acted on at
    /// the next call.
    Line(LineInfo),
    /// The codec answered a command by itself (a refusal, NOOP, ...).
    Replied,
    /// EHLO (`extended`) or HELO; the transaction is reset. Accept with
    /// [`Codec::accept_helo`] (or [`Codec::ehlo_text`] and
    /// [`Codec::greeted`]).
    Helo {
        /// The client's name (hostile: clean it before use).
        host: String,
        /// EHLO rather than HELO.
        extended: bool,
    },
    /// STARTTLS, allowed here: answer `220`, write it, call
    /// [`Codec::start_tls`], then do the handshake.
    StartTls,
    /// AUTH, allowed here: run the mechanism with [`Codec::challenge`];
    /// on success call [`Codec::authenticated`].
    Auth {
        /// As the client wrote it.
        mechanism: String,
        /// The initial response, decoded.
        initial: Option<SaslResponse>,
    },
    /// The client's answer to a challenge.
    SaslResponse(SaslResponse),
    /// MAIL, in sequence, with valid parameters. Accept with
    /// [`Codec::accept_mail`].
    Mail {
        /// The reverse-path.
        path: Path,
        /// Its parameters.
        params: MailParams,
    },
    /// RCPT inside a transaction, with valid parameters. Accept with
    /// [`Codec::accept_rcpt`].
    Rcpt {
        /// The forward-path.
        path: Path,
        /// Its parameters.
        params: RcptParams,
    },
    /// DATA with a sender and a recipient: [`Codec::start_data`] and `354`,
    /// or a refusal and [`Codec::data_refused`].
    Data,
    /// The data needs more memory than allowed: [`Codec::data_allow`] at
    /// least `need`, or [`Codec::data_refuse_memory`].
    DataMemory {
        /// The bytes of data the input at hand would take.
        need: usize,
    },
    /// [`DataStart::cut_after`] bytes of data were read: the server
    /// drops the connection.
    DataCut,
    /// The end of the data.
    Message(Box<Message>),
    /// RSET; the transaction is reset.
    Rset,
    /// QUIT: answer and close.
    Quit,
    /// The session is over; its reply, if any, is written.
    Close(Close),
}

/// How the data of one message is read.
#[derive(Debug, Clone, Default)]
pub struct DataStart {
    /// The size MAIL declared: the buffer's first capacity (up to 64 KiB).
    pub size_hint: Option<u64>,
    /// Capacity kept free beyond the data (for a trace field).
    pub headroom: usize,
    /// Stop at the first line end after this many bytes of data
    /// ([`Event::DataCut`]), for fault injection.
    pub cut_after: Option<u64>,
}

/// What the codec reads.
#[derive(Debug)]
pub(super) enum Mode {
    Command,
    /// The next line answers a challenge.
    Sasl,
    Data(Box<DataState>),
}

#[derive(Debug)]
pub(super) struct DataState {
    pub reader: DataReader,
    pub cut_after: Option<u64>,
    /// Bytes of data read so far.
    pub consumed: u64,
    /// The last byte read was an LF (or none was read).
    pub at_line_end: bool,
    /// The largest need reported: reported once.
    pub asked: usize,
}

/// One SMTP server session without I/O. The server reads into
/// [`read_buffer`](Self::read_buffer), calls [`filled`](Self::filled),
/// takes [`next_event`](Self::next_event)s until it returns `None` (more
/// input needed), and writes [`output`](Self::output) before it waits for
/// input.
pub struct Codec {
    pub(super) config: CodecConfig,
    pub(super) input: Input,
    pub(super) out: Vec<u8>,
    pub(super) mode: Mode,
    /// `Some(extended)` once HELO (false) or EHLO (true) was answered.
    pub(super) greeting: Option<bool>,
    pub(super) tls: bool,
    pub(super) authenticated: bool,
    /// The greeting was a refusal: only QUIT is served (RFC 5321 3.1).
    pub(super) rejecting: bool,
    pub(super) envelope: Option<Envelope>,
    errors: usize,
    commands: usize,
    pub(super) closing: Option<Close>,
    /// A line reported and not yet acted on; `true` for a SASL response.
    held: Option<(Frame, bool)>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("greeting", &self.greeting)
            .field("tls", &self.tls)
            .field("authenticated", &self.authenticated)
            .field("in_transaction", &self.envelope.is_some())
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A session before its greeting; the input buffer takes
    /// `max_line` plus a little (at least 16 KiB) and never grows.
    pub fn new(config: CodecConfig) -> Codec {
        let size = config.max_line.saturating_add(2).max(MIN_BUFFER);
        Codec {
            input: Input::new(size),
            out: Vec::with_capacity(1024),
            mode: Mode::Command,
            greeting: None,
            tls: false,
            authenticated: false,
            rejecting: false,
            envelope: None,
            errors: 0,
            commands: 0,
            closing: None,
            held: None,
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &CodecConfig {
        &self.config
    }

    // ----- input ---------------------------------------------------------

    /// Free space for the next read (compacting what is pending); never
    /// empty while [`next_event`](Self::next_event) returns `None`.
    pub fn read_buffer(&mut self) -> &mut [u8] {
        self.input.space()
    }

    /// `n` bytes were read into [`read_buffer`](Self::read_buffer).
    pub fn filled(&mut self, n: usize) {
        self.input.filled(n);
    }

    /// Bytes received and not yet processed.
    pub fn pending_input(&self) -> usize {
        self.input.pending().len()
    }

    /// Whether a read has room in the buffer.
    pub fn has_room(&self) -> bool {
        self.input.has_room()
    }

    /// Bytes received since the start (or since STARTTLS).
    pub fn received(&self) -> u64 {
        self.input.received()
    }

    // ----- output --------------------------------------------------------

    /// Replies not yet written.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// The output was written.
    pub fn clear_output(&mut self) {
        self.out.clear();
        if self.out.capacity() > OUT_KEEP {
            self.out.shrink_to(1024);
        }
    }

    /// Appends a reply (`text` may hold lines separated by LF).
    pub fn reply(&mut self, code: u16, text: &str) {
        push_reply(&mut self.out, code, text);
    }

    /// Appends bytes as they are (a server's own fault injection).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Appends an error reply and counts it: at `max_errors`, `421` follows
    /// and the session closes.
    pub fn error(&mut self, code: u16, text: &str) {
        self.reply(code, text);
        self.count_error();
    }

    /// Counts an error reply the server wrote itself.
    pub fn count_error(&mut self) {
        self.errors += 1;
        if self.errors >= self.config.max_errors && self.closing.is_none() {
            self.close_with(Answer::TooManyErrors, Close::TooManyErrors);
        }
    }

    /// Error replies so far.
    pub fn errors(&self) -> usize {
        self.errors
    }

    /// Starts the command count afresh (`max_commands` bounds a session
    /// between messages).
    pub fn reset_command_count(&mut self) {
        self.commands = 0;
    }

    /// Command lines read so far (since the last reset).
    pub fn commands(&self) -> usize {
        self.commands
    }

    // ----- state ---------------------------------------------------------

    /// `Some(extended)` once HELO (`false`) or EHLO (`true`) was accepted.
    pub fn greeting(&self) -> Option<bool> {
        self.greeting
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// TLS from the first byte (implicit TLS): no STARTTLS.
    pub fn set_tls(&mut self) {
        self.tls = true;
    }

    /// The greeting refused the client: only QUIT is served from now on.
    pub fn greeting_refused(&mut self) {
        self.rejecting = true;
    }

    /// The transaction, once MAIL was accepted.
    pub fn envelope(&self) -> Option<&Envelope> {
        self.envelope.as_ref()
    }

    /// Inside a transaction (MAIL accepted, through the end of its data).
    pub fn in_transaction(&self) -> bool {
        self.envelope.is_some()
    }

    /// Reading message data.
    pub fn in_data(&self) -> bool {
        matches!(self.mode, Mode::Data(_))
    }

    /// Whether the session is closing.
    pub fn closing(&self) -> Option<Close> {
        self.closing
    }

    /// The parameters MAIL and RCPT may carry now.
    pub(super) fn offered(&self, extended: bool) -> Offered {
        let ext = &self.config.extensions;
        Offered {
            extended,
            size: ext.size,
            eight_bit_mime: ext.eight_bit_mime,
            smtputf8: ext.smtputf8,
            dsn: ext.dsn,
            auth: extended && self.auth_offered(),
        }
    }

    // ----- events --------------------------------------------------------

    /// The next thing to act on, or `None` when more input is needed.
    pub fn next_event(&mut self) -> Option<Event> {
        if let Some(close) = self.closing {
            return Some(Event::Close(close));
        }
        if matches!(self.mode, Mode::Data(_)) {
            return self.data_event();
        }
        let (frame, sasl) = match self.held.take() {
            Some(held) => held,
            None => {
                let (frame, end) = self
                    .input
                    .frame(self.config.max_line, self.config.bare_lf_ends_line)?;
                let sasl = matches!(self.mode, Mode::Sasl);
                if !sasl {
                    self.commands += 1;
                    if self.commands > self.config.max_commands {
                        return Some(
                            self.close_with(Answer::TooManyCommands, Close::TooManyCommands),
                        );
                    }
                }
                if self.config.report_lines {
                    let info = LineInfo {
                        text: frame.text().to_owned(),
                        too_long: frame == Frame::TooLong,
                        sasl,
                        end,
                    };
                    self.held = Some((frame, sasl));
                    return Some(Event::Line(info));
                }
                (frame, sasl)
            }
        };
        if sasl {
            self.mode = Mode::Command;
            return Some(Event::SaslResponse(auth::response(&frame)));
        }
        Some(self.command(frame))
    }

    fn command(&mut self, frame: Frame) -> Event {
        let line = match frame {
            Frame::Text(line) => line,
            Frame::TooLong => return self.refuse(Answer::LineTooLong),
            Frame::BareLf(_) => return self.refuse(Answer::BareLf),
            Frame::BadBytes(_) => return self.refuse(Answer::BadBytes),
        };
        let command = command::parse(&line, self.config.unqualified_addresses);
        if self.rejecting && command != Ok(Command::Quit) {
            return self.refuse(Answer::Rejecting);
        }
        let command = match command {
            Ok(command) => command,
            Err(answer) => return self.refuse(answer),
        };
        match command {
            Command::Ehlo(host) => self.helo(host, true),
            Command::Helo(host) => self.helo(host, false),
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
            Command::Mail { path, params } => self.mail(path, params),
            Command::Rcpt { path, params } => self.rcpt(path, params),
            Command::Data => self.data(),
            Command::Rset => {
                self.envelope = None;
                Event::Rset
            }
            Command::Quit => {
                self.closing = Some(Close::Quit);
                Event::Quit
            }
            Command::Noop => self.answer(Answer::Noop),
            Command::Vrfy => self.answer(Answer::Vrfy),
            Command::Help => self.answer(Answer::Help),
            Command::NotImplemented => self.refuse(Answer::NotImplemented),
            Command::Unknown => self.refuse(Answer::Unknown),
            Command::ForeignProtocol => {
                self.closing = Some(Close::ForeignProtocol);
                Event::Close(Close::ForeignProtocol)
            }
        }
    }

    /// The dialect's code and text for `answer`.
    pub fn wording(&self, answer: &Answer) -> (u16, Cow<'static, str>) {
        self.config.dialect.reply(answer)
    }

    /// Answers by itself (not an error).
    pub(super) fn answer(&mut self, answer: Answer) -> Event {
        let (code, text) = self.wording(&answer);
        self.reply(code, &text);
        Event::Replied
    }

    /// Refuses by itself (an error reply).
    pub(super) fn refuse(&mut self, answer: Answer) -> Event {
        let (code, text) = self.wording(&answer);
        self.error(code, &text);
        match self.closing {
            Some(close) => Event::Close(close),
            None => Event::Replied,
        }
    }

    /// Writes a closing reply and closes.
    pub(super) fn close_with(&mut self, answer: Answer, close: Close) -> Event {
        let (code, text) = self.wording(&answer);
        self.reply(code, &text);
        self.closing = Some(close);
        Event::Close(close)
    }
}
