//! One strict SMTP server codec, without I/O: the relay and the dev server
//! both run on it, and only their policies differ.
//!
//! Bytes go in ([`Codec::read_buffer`], [`Codec::filled`]); [`Event`]s
//! and replies come out ([`Codec::next_event`], [`Codec::output`]). The
//! codec frames command lines, parses them, keeps the session's state
//! (greeting → EHLO → \[STARTTLS → EHLO\] → \[AUTH\] → MAIL → RCPT* → DATA →
//! ...), answers what is out of syntax or sequence by itself, and reads
//! message data. What a server accepts (a sender, a recipient, a
//! password, a message) it decides on the events, with any I/O it needs
//! (a store, a password hash, a fault to inject); its limits, the
//! extensions it offers and the wording of the codec's replies are its
//! [`CodecConfig`].
//!
//! One file per command group, as in Stalwart's inbound session:
//! `session` (the state machine), `ehlo`, `starttls`, `auth`,
//! `mail`, `rcpt`, `data`; below them `line` (framing), `command` (the
//! parser), `params` (MAIL and RCPT parameters) and `reply` (the reply
//! writer and the codec's own replies).
//!
//! What the codec holds to, whatever the server:
//!
//! - Command lines end in CRLF only (a bare LF only with
//!   [`CodecConfig::bare_lf_ends_line`]); a control character or invalid
//!   UTF-8 in a command is `500`; a line longer than `max_line` is dropped
//!   as it comes and answered `500`. The input buffer never grows.
//! - Only `<CR><LF>.<CR><LF>` ends the data; bare LF and bare CR in it
//!   are reported ([`DataEnd`]), never taken for line ends.
//! - A refused DATA with input behind it closes the session: that input
//!   is message content and never runs as commands.
//! - After STARTTLS's `220`, what was received is dropped unread
//!   ([`Codec::start_tls`]).
//! - MAIL and RCPT parameters are those of the extensions offered, each
//!   once; addresses are RFC 5321 mailboxes, without control characters
//!   or angle brackets even quoted.
//! - BDAT (CHUNKING) is not offered: `502`.
//!
//! [`suite`] holds the conformance cases every server on the codec passes.

mod auth;
mod command;
mod data;
mod ehlo;
mod line;
mod mail;
mod params;
mod rcpt;
mod reply;
mod session;
mod starttls;
pub mod suite;

pub use auth::{Credentials, Plain, SaslResponse, decode, login_text, parse_plain, plain};
pub use command::Path;
pub use data::{DataEnd, DataOutcome};
pub use params::{Body, MailParams, RcptParams};
pub use reply::{Answer, Dialect, Standard, push_reply};
pub use session::{
    Close, Codec, CodecConfig, DataStart, Envelope, Event, Extensions, LineInfo, Message,
};
