//! The trace field the relay prepends to every message it accepts (RFC 5321
//! 4.4), and the hop count that stops mail loops.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Lines are folded to this length where the field has a space to fold at
/// (RFC 5322 2.1.1's "SHOULD"); no part of the field is longer than 998.
const SOFT_LINE: usize = 78;

/// What a Received field says about one message.
pub(crate) struct Trace<'a> {
    /// The EHLO/HELO name, as the client sent it (hostile).
    pub helo: &'a str,
    /// Whether EHLO (ESMTP) rather than HELO (SMTP) was used.
    pub extended: bool,
    /// The client's address, from the connection.
    pub ip: IpAddr,
    /// The relay's own name.
    pub by: &'a str,
    /// TLS was active.
    pub tls: bool,
    /// The client authenticated.
    pub authenticated: bool,
    /// The trace id of this message.
    pub id: &'a str,
    /// The recipients (hostile): named only when there is exactly one.
    pub to: &'a [String],
    /// When the message was accepted.
    pub at: SystemTime,
}

impl Trace<'_> {
    /// `Received: from HELO (HOST [IP]) by NAME (mailgate) with PROTOCOL id
    /// ID for <rcpt>; DATE` with CRLF, folded at its clauses.
    ///
    /// HOST is `localhost` for a loopback client and `unknown` otherwise,
    /// as Postfix writes a client without a reverse name: the relay looks
    /// no name up (a client's DNS must not slow or block a session).
    pub(crate) fn field(&self) -> String {
        let protocol = match (self.extended, self.tls, self.authenticated) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let host = if self.ip.is_loopback() {
            "localhost"
        } else {
            "unknown"
        };
        let literal = match self.ip {
            IpAddr::V4(a) => format!("[{a}]"),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => format!("[{v4}]"),
                None => format!("[IPv6:{a}]"),
            },
        };
        let mut clauses = vec![
            format!("from {}", clean(self.helo, false)),
            format!("({host} {literal})"),
            format!("by {}", clean(self.by, false)),
            "(mailgate)".to_owned(),
            format!("with {protocol}"),
            format!("id {}", clean(self.id, false)),
        ];
        match self.to {
            [one] => clauses.push(format!("for <{}>;", clean(one, true))),
            _ => {
                if let Some(last) = clauses.last_mut() {
                    last.push(';');
                }
            }
        }
        clauses.push(rfc5322_date(self.at));
        fold("Received:", &clauses)
    }
}

/// `text` fit for the field: printable ASCII only, without the characters
/// that would open or close a comment or end the clause (`(`, `)`, `\`,
/// `;`, `<`, `>`) and, unless `spaces`, without spaces; everything else
/// becomes `?`. At most 255 characters.
fn clean(text: &str, spaces: bool) -> String {
    let clean: String = text
        .chars()
        .take(255)
        .map(|c| match c {
            '(' | ')' | '\\' | ';' | '<' | '>' => '?',
            ' ' if spaces => ' ',
            c if c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect();
    if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    }
}

/// `name` and the clauses, one line while it fits in [`SOFT_LINE`], then a
/// new line (CRLF TAB) before the clause that would not fit.
fn fold(name: &str, clauses: &[String]) -> String {
    let mut out = String::from(name);
    let mut line = name.len();
    for clause in clauses {
        if line + 1 + clause.len() > SOFT_LINE && line > name.len() {
            out.push_str("\r\n\t");
            line = 1;
        } else {
            out.push(' ');
            line += 1;
        }
        out.push_str(clause);
        line += clause.len();
    }
    out.push_str("\r\n");
    out
}

/// A date as RFC 5322 writes it, in UTC: `Tue, 01 Dec 2026 20:30:42 +0000`.
fn rfc5322_date(at: SystemTime) -> String {
    let http = httpdate::fmt_http_date(at);
    match http.strip_suffix(" GMT") {
        Some(rest) => format!("{rest} +0000"),
        None => http,
    }
}

/// A fresh trace id: 16 hex digits from a per-process random seed, the
/// time and a counter.
pub(crate) fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        h.write_u128(now.as_nanos());
    }
    format!("{:016X}", h.finish())
}

/// The Received fields in the header section of `data` (CRLF or LF line
/// ends; the section ends at the empty line, or at the first line that is
/// not a header field). Obsolete syntax counts too: `Received :`.
pub(crate) fn count_received(data: &[u8]) -> usize {
    let mut count = 0;
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            break;
        };
        let name = line[..colon].trim_ascii_end();
        if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
            break;
        }
        if name.eq_ignore_ascii_case(b"Received") {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn trace<'a>(helo: &'a str, to: &'a [String]) -> Trace<'a> {
        Trace {
            helo,
            extended: true,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            by: "relay.example",
            tls: false,
            authenticated: false,
            id: "0123456789ABCDEF",
            to,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_field_reads_as_rfc_5321_writes_it() {
        let one = ["dev@example.com".to_owned()];
        assert_eq!(
            trace("client.example", &one).field(),
            "Received: from client.example (localhost [127.0.0.1]) by relay.example\r\n\t(mailgate) with ESMTP id 0123456789ABCDEF for <dev@example.com>;\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
        let two = ["a@x".to_owned(), "b@x".to_owned()];
        let mut t = trace("c", &two);
        t.tls = true;
        t.authenticated = true;
        t.ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));
        let f = t.field();
        assert!(
            f.starts_with("Received: from c (unknown [IPv6:2001:db8::7]) by relay.example")
                && f.contains("with ESMTPSA id 0123456789ABCDEF;")
                && !f.contains(" for "),
            "{f}"
        );
        t.extended = false;
        assert!(t.field().contains("with SMTP id"));
        t.extended = true;
        t.tls = false;
        assert!(t.field().contains("with ESMTPA id"));
    }

    #[test]
    fn hostile_names_cannot_break_the_field() {
        let to = ["\"x) (y; z\"@example.com".to_owned()];
        let f = trace("evil\r\nBcc: a@b(;)\u{7f}ü", &to).field();
        assert!(
            f.starts_with("Received: from evil??Bcc:?a@b????? (localhost"),
            "{f}"
        );
        assert!(f.contains("for <\"x? ?y? z\"@example.com>;"), "{f}");
        assert_eq!(f.matches("\r\n").count(), f.matches("\r\n\t").count() + 1);
        let long = "h".repeat(300);
        let f = trace(&long, &to).field();
        assert!(f.split("\r\n").all(|l| l.len() <= 998), "{f}");
        assert!(f.split("\r\n").filter(|l| l.len() > SOFT_LINE).count() == 1);
    }

    #[test]
    fn received_fields_are_counted_in_the_header_only() {
        assert_eq!(count_received(b""), 0);
        assert_eq!(
            count_received(
                b"Received: a\r\n\tb\r\nreceived : c\r\nSubject: s\r\nRECEIVED:d\r\n\r\nReceived: body\r\n"
            ),
            3
        );
        assert_eq!(count_received(b"not a header\r\nReceived: x\r\n"), 0);
        assert_ne!(new_id(), new_id());
    }
}
