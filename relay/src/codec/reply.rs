//! The reply writer, and the replies the codec gives by itself
//! ([`Answer`]) with their texts, which a server may change through its
//! [`Dialect`].

use std::borrow::Cow;

/// A reply the codec gives without asking the server: a refusal (syntax,
/// sequence, a line it cannot take), a closing `421`/`554`, or the answer
/// to NOOP, VRFY and HELP.
///
/// [`Answer::standard`] is the relay's wording; a [`Dialect`] may say
/// something else (the dev server keeps Postfix's wording).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// A command line longer than `max_line`.
    LineTooLong,
    /// A command line ended by a bare LF.
    BareLf,
    /// A command line holding a control character or invalid UTF-8.
    BadBytes,
    /// An unknown verb (or an empty line).
    Unknown,
    /// A known SMTP verb this codec does not implement (EXPN, BDAT, ...).
    NotImplemented,
    /// A syntax error in a command's arguments.
    Syntax {
        /// 501 mostly.
        code: u16,
        /// The reply text, enhanced status code first.
        text: String,
    },
    /// A MAIL or RCPT parameter that was not offered (RFC 5321 4.1.1.11).
    UnsupportedParam(String),
    /// A MAIL parameter after HELO (no extension exists then).
    ParamAfterHelo(String),
    /// `BODY=` with a value other than `7BIT` or `8BITMIME`.
    UnsupportedBody,
    /// MAIL before HELO or EHLO.
    NeedHelo,
    /// AUTH after HELO (or before any greeting).
    NeedEhlo,
    /// MAIL inside a transaction.
    NestedMail,
    /// RCPT or DATA without MAIL.
    NeedMail,
    /// DATA without an accepted recipient.
    NeedRcpt,
    /// STARTTLS when it is not offered.
    StartTlsUnavailable,
    /// STARTTLS under TLS.
    TlsActive,
    /// STARTTLS before EHLO or HELO.
    StartTlsNeedsHelo,
    /// STARTTLS inside a transaction.
    StartTlsInTransaction,
    /// AUTH when no mechanism is configured.
    AuthUnavailable,
    /// AUTH before STARTTLS when TLS is required for it.
    AuthNeedsTls,
    /// A second AUTH.
    AlreadyAuthenticated,
    /// AUTH inside a transaction.
    AuthInTransaction,
    /// MAIL without AUTH when AUTH is required.
    AuthRequired,
    /// MAIL before STARTTLS when TLS is required.
    TlsRequired,
    /// Input after a refused DATA: closes the connection.
    ImproperPipelining,
    /// `max_errors` error replies: closes the connection.
    TooManyErrors,
    /// `max_commands` commands: closes the connection.
    TooManyCommands,
    /// Any command but QUIT after a refused greeting (RFC 5321 3.1).
    Rejecting,
    /// The answer to NOOP.
    Noop,
    /// The answer to VRFY.
    Vrfy,
    /// The answer to HELP.
    Help,
}

impl Answer {
    /// The relay's code and text.
    pub fn standard(&self) -> (u16, Cow<'static, str>) {
        let fixed = |code, text: &'static str| (code, Cow::Borrowed(text));
        match self {
            Answer::LineTooLong => fixed(500, "5.5.2 Line too long"),
            Answer::BareLf => fixed(500, "5.5.2 Bare LF not allowed: end lines with CRLF"),
            Answer::BadBytes => fixed(
                500,
                "5.5.2 Control characters and invalid UTF-8 not allowed",
            ),
            Answer::Unknown => fixed(500, "5.5.2 Command not recognized"),
            Answer::NotImplemented => fixed(502, "5.5.1 Command not implemented"),
            Answer::Syntax { code, text } => (*code, Cow::Owned(text.clone())),
            Answer::UnsupportedParam(key) => (
                555,
                Cow::Owned(format!("5.5.4 Unsupported parameter {key}")),
            ),
            Answer::ParamAfterHelo(key) => (
                555,
                Cow::Owned(format!("5.5.4 {key} not supported after HELO (use EHLO)")),
            ),
            Answer::UnsupportedBody => fixed(555, "5.5.4 Unsupported BODY value"),
            Answer::NeedHelo => fixed(503, "5.5.1 Send EHLO or HELO first"),
            Answer::NeedEhlo | Answer::StartTlsNeedsHelo => fixed(503, "5.5.1 Send EHLO first"),
            Answer::NestedMail => fixed(503, "5.5.1 Nested MAIL command"),
            Answer::NeedMail => fixed(503, "5.5.1 Need MAIL command first"),
            Answer::NeedRcpt => fixed(503, "5.5.1 Need RCPT command first"),
            Answer::StartTlsUnavailable => fixed(502, "5.5.1 STARTTLS not available"),
            Answer::TlsActive => fixed(503, "5.5.1 TLS already active"),
            Answer::StartTlsInTransaction => {
                fixed(503, "5.5.1 STARTTLS not allowed during a mail transaction")
            }
            Answer::AuthUnavailable => fixed(502, "5.5.1 AUTH not available"),
            Answer::AuthNeedsTls | Answer::TlsRequired => {
                fixed(530, "5.7.0 Must issue a STARTTLS command first")
            }
            Answer::AlreadyAuthenticated => fixed(503, "5.5.1 Already authenticated"),
            Answer::AuthInTransaction => {
                fixed(503, "5.5.1 AUTH not allowed during a mail transaction")
            }
            Answer::AuthRequired => fixed(530, "5.7.0 Authentication required"),
            Answer::ImproperPipelining => fixed(
                554,
                "5.5.0 Improper use of SMTP command pipelining: data sent after a refused DATA, closing the connection",
            ),
            Answer::TooManyErrors => fixed(421, "4.7.0 Too many errors, closing the connection"),
            Answer::TooManyCommands => {
                fixed(421, "4.7.0 Too many commands, closing the connection")
            }
            Answer::Rejecting => fixed(503, "5.5.1 Bad sequence of commands"),
            Answer::Noop => fixed(250, "2.0.0 OK"),
            Answer::Vrfy => fixed(
                252,
                "2.5.0 Cannot VRFY user, but will accept the message and attempt delivery",
            ),
            Answer::Help => fixed(
                214,
                "2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
            ),
        }
    }

    /// The relay's code (for tests and logs).
    pub fn code(&self) -> u16 {
        self.standard().0
    }
}

/// How a server words the codec's own replies: the codes and texts of
/// [`Answer`]s. The default method keeps [`Answer::standard`].
pub trait Dialect: Send + Sync {
    /// The code and text for `answer`.
    fn reply(&self, answer: &Answer) -> (u16, Cow<'static, str>) {
        answer.standard()
    }
}

/// The relay's wording: [`Answer::standard`] throughout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Standard;

impl Dialect for Standard {}

/// Appends `code text` in reply format: one line per line of `text`
/// (split at LF, a CR before it dropped), `code-` on all but the last.
/// An empty text is one line, `code ` alone.
pub fn push_reply(out: &mut Vec<u8>, code: u16, text: &str) {
    let code = code.min(999);
    let mut lines = text.lines().peekable();
    if lines.peek().is_none() {
        out.extend_from_slice(format!("{code} \r\n").as_bytes());
        return;
    }
    while let Some(line) = lines.next() {
        let sep = if lines.peek().is_some() { '-' } else { ' ' };
        out.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> String {
        let mut out = Vec::new();
        push_reply(&mut out, code, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_and_continuations() {
        assert_eq!(reply(250, "2.0.0 OK"), "250 2.0.0 OK\r\n");
        assert_eq!(reply(250, "a\nb\nc"), "250-a\r\n250-b\r\n250 c\r\n");
        assert_eq!(reply(554, "x\r\ny\n"), "554-x\r\n554 y\r\n");
        assert_eq!(reply(334, ""), "334 \r\n");
    }
}
