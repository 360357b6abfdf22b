//! Where accepted messages go: the [`MessageSink`] (the outbox, in
//! `mailgate relay`).

use std::net::SocketAddr;

use async_trait::async_trait;

/// The envelope of a message a client submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The reverse-path of `MAIL FROM`, without the angle brackets; empty
    /// for the null sender `<>`. A quoted local part stays quoted, as sent.
    pub from: String,
    /// The forward-paths of the accepted `RCPT TO`s, in order, without
    /// duplicates; at least one.
    pub to: Vec<String>,
    /// The user the session authenticated as, if any.
    pub auth_user: Option<String>,
    /// The client's address.
    pub client: SocketAddr,
    /// Whether the message came over TLS (after STARTTLS).
    pub tls: bool,
    /// The client asked for SMTPUTF8 (RFC 6531): the addresses or headers
    /// may hold UTF-8; delivery upstream needs a server offering SMTPUTF8.
    pub smtputf8: bool,
    /// The client declared `BODY=8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// What the client asked of delivery status notifications (RFC 3461).
    pub dsn: DsnRequest,
}

/// The DSN parameters a client gave (RFC 3461): `RET` and `ENVID` of MAIL,
/// `NOTIFY` and `ORCPT` of each RCPT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnRequest {
    /// `RET=FULL` (true) or `RET=HDRS` (false); `None` when not given.
    pub ret_full: Option<bool>,
    /// `ENVID`, decoded (printable ASCII).
    pub envid: Option<String>,
    /// One entry per recipient of [`Submission::to`], in the same order.
    pub recipients: Vec<RecipientDsn>,
}

/// The DSN parameters of one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientDsn {
    /// `NOTIFY`: `None` when not given, empty for `NEVER`, else some of
    /// `SUCCESS`, `FAILURE`, `DELAY` (upper case).
    pub notify: Option<Vec<String>>,
    /// `ORCPT`'s address, decoded.
    pub orcpt: Option<String>,
}

/// Why a sink did not store a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Storing failed for now: answered `451 4.3.0`, the sender keeps its
    /// copy and retries. The reason is logged (warn), not sent to the client.
    Temporary(String),
    /// The message can never be relayed as it is (e.g. a sender the
    /// upstream will refuse): answered `554 5.7.0` with `client_text`
    /// (short, printable; control characters are removed), the full
    /// `reason` logged.
    Permanent {
        /// What the client is told.
        client_text: String,
        /// What the log says.
        reason: String,
    },
}

/// Stores accepted messages durably.
///
/// The relay calls [`accept`](MessageSink::accept) once per message, after
/// the whole message was received and checked, and answers the client
/// only when it returns: `Ok(queue id)` is answered `250 2.0.0 queued as
/// ID`; an `Err` as its [`Rejection`] says.
/// The call is bounded by the relay's `data_timeout`: when it takes longer
/// its future is dropped and the client gets 451, so a sink must not treat
/// a dropped future as stored (and should tolerate the retry that follows:
/// delivery is at least once).
#[async_trait]
pub trait MessageSink: Send + Sync + 'static {
    /// Stores `data` (the message as received, CRLF line endings, dot-
    /// unstuffed, without the final `.` line, with the relay's `Received:`
    /// field prepended) for `envelope`; returns the
    /// queue id (printable ASCII, shown to the client) or why it failed.
    async fn accept(&self, envelope: Submission, data: Vec<u8>) -> Result<String, Rejection>;

    /// Checks the sender of `MAIL FROM` (never the null sender) before it is
    /// accepted, so that what the relay accepts can be delivered: `Ok` with
    /// the address to keep, or `Err` with the reason, answered
    /// `553 5.1.7` (printable text, cut short). The default keeps it.
    fn check_sender(&self, address: &str) -> Result<String, String> {
        Ok(address.to_owned())
    }

    /// The same for each `RCPT TO`, answered `553 5.1.3`; `postmaster`
    /// (RFC 5321 §4.5.1) comes bare, for the sink to qualify.
    fn check_recipient(&self, address: &str) -> Result<String, String> {
        Ok(address.to_owned())
    }
}
