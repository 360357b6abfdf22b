//! What the SMTP server records: messages and authentication attempts.

use base64::Engine as _;

use super::Mechanism;
use super::sasl::BASE64_LENIENT;

/// Who authenticated a connection, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    /// The SASL mechanism used.
    pub mechanism: Mechanism,
    /// The user name (authentication identity); empty when an OAUTHBEARER
    /// client named none.
    pub user: String,
}

/// One AUTH exchange, successful or not.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    /// The connection it happened on (1 for the first connection).
    pub connection_id: u64,
    /// The mechanism the client asked for.
    pub mechanism: Mechanism,
    /// The user name the client sent, if it got that far.
    pub user: Option<String>,
    /// The password or bearer token the client sent, if it got that far.
    pub secret: Option<String>,
    /// Whether the server answered 235.
    pub success: bool,
    /// Whether TLS was active.
    pub tls: bool,
    /// The final reply code sent (235, 535, 501, a fault's code, ...).
    pub reply_code: u16,
}

impl std::fmt::Debug for AuthAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthAttempt")
            .field("connection_id", &self.connection_id)
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("success", &self.success)
            .field("tls", &self.tls)
            .field("reply_code", &self.reply_code)
            .finish()
    }
}

/// One command line as the server received it, for checking what a client
/// sent and whether it pipelined ([`crate::DevSmtpServer::commands`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedCommand {
    /// The connection it came on (1 for the first connection).
    pub connection: u64,
    /// The command verb, upper-case (`EHLO`, `MAIL`, ...; empty for an
    /// empty line). Two pseudo verbs: `<SASL>` for a line answering an AUTH
    /// prompt or challenge (LOGIN user name and password, the answer to an
    /// error challenge), and `<TOO-LONG>` for a line over the length limit.
    pub verb: String,
    /// The rest of the line, trimmed, invalid UTF-8 replaced. For AUTH only
    /// the mechanism, never an initial response; empty for `<SASL>` and
    /// `<TOO-LONG>`.
    pub arg: String,
    /// Whether TLS was active.
    pub tls: bool,
    /// Whether the whole line was already in the server's read buffer when
    /// the server finished writing its previous reply on this connection
    /// (the greeting, for the first command): the client sent it without
    /// waiting for that reply. Only what the server had read counts, so a
    /// pipelining client whose line arrived a moment later is not caught;
    /// a client that waits is never taken for one that pipelines.
    pub pipelined: bool,
}

/// A message the server accepted (answered 250 after the final dot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The connection it came on (1 for the first connection).
    pub connection_id: u64,
    /// The queue id given in the 250 reply.
    pub queue_id: String,
    /// `MAIL FROM` address, without angle brackets (empty for `<>`).
    pub mail_from: String,
    /// `RCPT TO` addresses, without angle brackets, in order.
    pub rcpt_to: Vec<String>,
    /// The message data as received: without the terminating `.` line, and
    /// with the leading dot of each dot-stuffed line removed (a line being
    /// what follows the DATA command's CRLF or a CRLF of the data), and
    /// otherwise untouched: a bare LF or bare CR the client sent is still
    /// there (see [`ReceivedMessage::bare_lf`]), never rewritten to CRLF.
    pub data: Vec<u8>,
    /// Header fields in order, unfolded, values trimmed and not decoded.
    pub headers: Vec<(String, String)>,
    /// Whether TLS was active when the message was sent.
    pub tls: bool,
    /// Who had authenticated the connection, if anyone.
    pub auth: Option<AuthInfo>,
    /// Whether the data holds an LF without a CR before it. Only possible
    /// when the server was built with
    /// [`reject_bare_lf(false)`](crate::DevSmtpServerBuilder::reject_bare_lf).
    pub bare_lf: bool,
    /// Whether the data holds a CR without an LF after it. Only possible
    /// when the server was built with
    /// [`reject_bare_cr(false)`](crate::DevSmtpServerBuilder::reject_bare_cr).
    pub bare_cr: bool,
}

impl ReceivedMessage {
    pub(crate) fn new(
        connection_id: u64,
        queue_id: String,
        mail_from: String,
        rcpt_to: Vec<String>,
        data: Vec<u8>,
        tls: bool,
        auth: Option<AuthInfo>,
    ) -> Self {
        let headers = parse_headers(&data);
        let (bare_lf, bare_cr) = bare_line_endings(&data);
        Self {
            connection_id,
            queue_id,
            mail_from,
            rcpt_to,
            data,
            headers,
            tls,
            auth,
            bare_lf,
            bare_cr,
        }
    }

    /// The first header field called `name` (case-insensitive), raw.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All header fields called `name` (case-insensitive), raw.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The Subject, with RFC 2047 encoded words (UTF-8, US-ASCII and
    /// ISO-8859-1; B and Q) decoded.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject").map(decode_rfc2047)
    }

    /// The body: everything after the blank line that ends the header, not
    /// transfer-decoded.
    pub fn body(&self) -> &[u8] {
        let data = &self.data[..];
        if let Some(i) = find(data, b"\r\n\r\n") {
            &data[i + 4..]
        } else if let Some(i) = find(data, b"\n\n") {
            &data[i + 2..]
        } else {
            &[]
        }
    }

    /// The whole message data as (lossy) UTF-8.
    pub fn data_str(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Whether `data` holds a bare LF (no CR before it) and a bare CR (no LF
/// after it).
pub(crate) fn bare_line_endings(data: &[u8]) -> (bool, bool) {
    let mut bare_lf = false;
    let mut bare_cr = false;
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'\n' if i == 0 || data[i - 1] != b'\r' => bare_lf = true,
            b'\r' if data.get(i + 1) != Some(&b'\n') => bare_cr = true,
            _ => {}
        }
    }
    (bare_lf, bare_cr)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses the header block (up to the first empty line), unfolding
/// continuation lines. Lines that are not fields are skipped.
pub(crate) fn parse_headers(data: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(data);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim_end();
            if !name.is_empty() && !name.contains(' ') {
                headers.push((name.to_owned(), value.trim().to_owned()));
            }
        }
    }
    headers
}

/// Decodes RFC 2047 encoded words; whitespace between two adjacent encoded
/// words is dropped. Words in charsets it does not know are left alone.
pub(crate) fn decode_rfc2047(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut pending_space = String::new();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some((decoded, consumed)) = rest.strip_prefix("=?").and_then(|_| decode_word(rest)) {
            if !last_was_word {
                out.push_str(&pending_space);
            }
            pending_space.clear();
            out.push_str(&decoded);
            rest = &rest[consumed..];
            last_was_word = true;
            continue;
        }
        let mut chars = rest.chars();
        let c = chars.next().unwrap_or_default();
        if c == ' ' || c == '\t' {
            pending_space.push(c);
        } else {
            out.push_str(&pending_space);
            pending_space.clear();
            out.push(c);
            last_was_word = false;
        }
        rest = chars.as_str();
    }
    out.push_str(&pending_space);
    out
}

/// Decodes one `=?charset?enc?text?=` at the start of `s`; returns the text
/// and the number of bytes consumed.
fn decode_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let text = &inner[..end];
    if text.contains([' ', '\t']) || encoding.len() != 1 {
        return None;
    }
    let consumed = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    let bytes = match encoding {
        "B" | "b" => BASE64_LENIENT.decode(text).ok()?,
        "Q" | "q" => decode_q(text)?,
        _ => return None,
    };
    // RFC 2231 language suffix: charset*lang
    let charset = charset.split('*').next().unwrap_or(charset);
    let decoded = match charset.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => String::from_utf8_lossy(&bytes).into_owned(),
        "iso-8859-1" | "latin1" | "latin-1" => bytes.iter().map(|&b| b as char).collect(),
        _ => return None,
    };
    Some((decoded, consumed))
}

fn decode_q(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_unfolded() {
        let h = parse_headers(b"Subject: a\r\n  long\r\nFrom: x@y\r\n\r\nBody: no\r\n");
        assert_eq!(
            h,
            vec![
                ("Subject".to_owned(), "a long".to_owned()),
                ("From".to_owned(), "x@y".to_owned())
            ]
        );
    }

    #[test]
    fn bare_line_ending_detection() {
        assert_eq!(bare_line_endings(b""), (false, false));
        assert_eq!(bare_line_endings(b"a\r\nb\r\n"), (false, false));
        assert_eq!(bare_line_endings(b"\n"), (true, false));
        assert_eq!(bare_line_endings(b"a\r\n.\n"), (true, false));
        assert_eq!(bare_line_endings(b"a\rb\r\n"), (false, true));
        assert_eq!(bare_line_endings(b"a\r"), (false, true));
        assert_eq!(bare_line_endings(b"\r\r\n\n"), (true, true));
    }

    #[test]
    fn encoded_words() {
        assert_eq!(
            decode_rfc2047("=?utf-8?b?SGVsbG8g?= =?utf-8?b?V8O2cmxk?="),
            "Hello Wörld"
        );
        assert_eq!(decode_rfc2047("=?UTF-8?Q?caf=C3=A9_ok?= x"), "café ok x");
        assert_eq!(decode_rfc2047("plain  text"), "plain  text");
        assert_eq!(decode_rfc2047("a =?iso-8859-1?q?=E9?="), "a é");
        assert_eq!(decode_rfc2047("=?bad"), "=?bad");
        assert_eq!(
            decode_rfc2047("=?x-unknown?b?QQ==?="),
            "=?x-unknown?b?QQ==?="
        );
        assert_eq!(decode_rfc2047("=?utf-8?q?=ZZ?="), "=?utf-8?q?=ZZ?=");
        assert_eq!(decode_rfc2047("ü=?"), "ü=?");
    }
}
