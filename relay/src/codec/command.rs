//! Parsing of SMTP command lines (RFC 5321 section 4.1, RFC 1870, 6152,
//! 6531, 4954), strict and bounded.
//!
//! The session frames lines itself (CRLF only, at most `max_line` bytes,
//! no other control character, valid UTF-8) and hands each line, without
//! its CRLF, to [`parse`]. Nothing here allocates more than a copy of
//! (part of) the line, and nothing panics: every index is checked.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::reply::Answer;

/// Longest address accepted (RFC 5321 4.5.3.1.3: a path is at most 256
/// octets with its angle brackets).
const MAX_ADDRESS: usize = 254;

/// Longest domain accepted (RFC 5321 4.5.3.1.2).
const MAX_DOMAIN: usize = 255;

/// Longest label of a domain (RFC 1035).
const MAX_LABEL: usize = 63;

/// A syntax error: the reply that refuses the line.
pub(crate) fn syntax(code: u16, text: impl Into<String>) -> Answer {
    Answer::Syntax {
        code,
        text: text.into(),
    }
}

/// A command line, parsed as far as it can be without session state.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    Ehlo(&'a str),
    Helo(&'a str),
    /// `MAIL FROM:` with the reverse-path and the raw parameters.
    Mail {
        path: Path,
        params: &'a str,
    },
    /// `RCPT TO:` with the forward-path and the raw parameters.
    Rcpt {
        path: Path,
        params: &'a str,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth {
        mechanism: &'a str,
        initial: Option<&'a str>,
    },
    /// A known SMTP command this relay does not implement.
    NotImplemented,
    /// An HTTP request line (or another protocol's verb) sent to the SMTP
    /// port: the session closes at once (cross-protocol requests).
    ForeignProtocol,
    /// Anything else.
    Unknown,
}

/// An address taken from a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The mailbox, without angle brackets or source route; empty for the
    /// null path `<>`. Quoted local parts stay quoted.
    pub address: String,
    /// The address holds non-ASCII characters (needs SMTPUTF8).
    pub utf8: bool,
}

/// Parses one command line (without CRLF). `Err` is the reply that
/// refuses it (a syntax error). `unqualified`: a MAIL or RCPT address
/// may be a local part alone (`root`), as some clients send it.
pub(crate) fn parse(line: &str, unqualified: bool) -> Result<Command<'_>, Answer> {
    let (verb, args) = match line.split_once(' ') {
        Some((verb, args)) => (verb, args.trim_matches(' ')),
        None => (line, ""),
    };
    if verb.is_empty() || verb.len() > 16 || !verb.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Ok(Command::Unknown);
    }
    let verb = verb.to_ascii_uppercase();
    let no_args = |command: Command<'static>, form: &str| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(syntax(501, format!("5.5.4 Syntax: {form}")))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let Some(host) = args.split(' ').next().filter(|h| !h.is_empty()) else {
                return Err(syntax(501, format!("5.5.4 Syntax: {verb} hostname")));
            };
            if host.len() > MAX_DOMAIN {
                return Err(syntax(501, "5.5.4 Hostname too long"));
            }
            Ok(if verb == "EHLO" {
                Command::Ehlo(host)
            } else {
                Command::Helo(host)
            })
        }
        "MAIL" => {
            let Some(rest) = strip_keyword(args, "FROM:") else {
                return Err(syntax(501, "5.5.4 Syntax: MAIL FROM:<address>"));
            };
            let (path, params) = parse_path(rest, false, unqualified)
                .map_err(|e| syntax(501, format!("5.1.7 Bad sender address: {e}")))?;
            Ok(Command::Mail { path, params })
        }
        "RCPT" => {
            let Some(rest) = strip_keyword(args, "TO:") else {
                return Err(syntax(501, "5.5.4 Syntax: RCPT TO:<address>"));
            };
            let (path, params) = parse_path(rest, true, unqualified)
                .map_err(|e| syntax(501, format!("5.1.3 Bad recipient address: {e}")))?;
            Ok(Command::Rcpt { path, params })
        }
        "DATA" => no_args(Command::Data, "DATA"),
        "RSET" => no_args(Command::Rset, "RSET"),
        "QUIT" => no_args(Command::Quit, "QUIT"),
        "STARTTLS" => no_args(Command::StartTls, "STARTTLS"),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => {
            if args.is_empty() {
                Err(syntax(501, "5.5.4 Syntax: VRFY address"))
            } else {
                Ok(Command::Vrfy)
            }
        }
        "AUTH" => {
            let mut words = args.split(' ').filter(|w| !w.is_empty());
            let Some(mechanism) = words.next() else {
                return Err(syntax(
                    501,
                    "5.5.4 Syntax: AUTH mechanism [initial-response]",
                ));
            };
            let initial = words.next();
            if words.next().is_some() {
                return Err(syntax(
                    501,
                    "5.5.4 Syntax: AUTH mechanism [initial-response]",
                ));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        "EXPN" | "TURN" | "ETRN" | "ATRN" | "BDAT" | "BURL" | "LHLO" | "SEND" | "SOML" | "SAML"
        | "VERB" | "ONEX" | "XCLIENT" | "XFORWARD" => Ok(Command::NotImplemented),
        "GET" | "POST" | "PUT" | "HEAD" | "CONNECT" | "OPTIONS" | "DELETE" | "PATCH" | "TRACE"
        | "USER" | "PASS" => Ok(Command::ForeignProtocol),
        _ => Ok(Command::Unknown),
    }
}

/// Strips `FROM:` / `TO:` (ASCII case-insensitive) and the spaces after it
/// (RFC 5321 has none, but many clients send one).
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| args[keyword.len()..].trim_start_matches(' '))
}

/// Parses `<path> params` (or, leniently, a bare address up to the first
/// space); returns the path and the rest (the parameters, trimmed).
/// `rcpt`: a forward-path (not empty; `<postmaster>` allowed).
fn parse_path(s: &str, rcpt: bool, unqualified: bool) -> Result<(Path, &str), &'static str> {
    let (inner, rest, bracketed) = if let Some(after) = s.strip_prefix('<') {
        let end = closing_bracket(after).ok_or("missing '>'")?;
        (&after[..end], &after[end + 1..], true)
    } else {
        let end = s.find(' ').unwrap_or(s.len());
        (&s[..end], &s[end..], false)
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err("text after the address");
    }
    let rest = rest.trim_matches(' ');
    // A source route (`@a,@b:mailbox`) is accepted and dropped (RFC 5321
    // 4.1.1.3, appendix C).
    let mailbox = if inner.starts_with('@') {
        let (route, mailbox) = inner.split_once(':').ok_or("bad source route")?;
        for hop in route.split(',') {
            let domain = hop.strip_prefix('@').ok_or("bad source route")?;
            check_domain(domain).map_err(|_| "bad source route")?;
        }
        mailbox
    } else {
        inner
    };
    if mailbox.is_empty() {
        if rcpt {
            return Err("empty address");
        }
        if !bracketed {
            return Err("empty address");
        }
        return Ok((
            Path {
                address: String::new(),
                utf8: false,
            },
            rest,
        ));
    }
    if mailbox.len() > MAX_ADDRESS {
        return Err("address longer than 254 octets");
    }
    if rcpt && mailbox.eq_ignore_ascii_case("postmaster") {
        return Ok((
            Path {
                address: mailbox.to_owned(),
                utf8: false,
            },
            rest,
        ));
    }
    check_mailbox(mailbox, unqualified)?;
    Ok((
        Path {
            address: mailbox.to_owned(),
            utf8: !mailbox.is_ascii(),
        },
        rest,
    ))
}

/// The index of the `>` closing a path, skipping quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Checks `local-part "@" domain` (RFC 5321 4.1.2; UTF-8 per RFC 6531).
/// Angle brackets are refused even inside a quoted local part, so that no
/// accepted address can cut a path short at a less careful next hop.
/// `unqualified`: a local part alone passes too.
fn check_mailbox(mailbox: &str, unqualified: bool) -> Result<(), &'static str> {
    let (local, domain) = if mailbox.starts_with('"') {
        let end = quoted_end(mailbox).ok_or("unterminated quoted local part")?;
        let (local, rest) = mailbox.split_at(end);
        if unqualified && rest.is_empty() {
            return check_quoted(local);
        }
        let domain = rest
            .strip_prefix('@')
            .ok_or("no '@' after the local part")?;
        check_quoted(local)?;
        (local, domain)
    } else {
        let Some(at) = mailbox.rfind('@') else {
            if unqualified {
                return check_dot_string(mailbox);
            }
            return Err("no '@domain' (use a full address)");
        };
        let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
        check_dot_string(local)?;
        (local, domain)
    };
    if local.is_empty() {
        return Err("empty local part");
    }
    check_domain(domain)
}

/// The end (exclusive) of the quoted string at the start of `s`.
fn quoted_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'"' => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn check_quoted(quoted: &str) -> Result<(), &'static str> {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .ok_or("bad quoted local part")?;
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => {
                let next = *bytes.get(i + 1).ok_or("bad quoted local part")?;
                if !(32..=126).contains(&next) || next == b'<' || next == b'>' {
                    return Err("bad character in the local part");
                }
                i += 1;
            }
            b'<' | b'>' => return Err("'<' or '>' in the local part"),
            32..=126 | 0x80.. if b != b'"' => {}
            _ => return Err("bad character in the local part"),
        }
        i += 1;
    }
    Ok(())
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

fn check_dot_string(local: &str) -> Result<(), &'static str> {
    if local.is_empty() {
        return Err("empty local part");
    }
    for atom in local.split('.') {
        if atom.is_empty() {
            return Err("misplaced '.' in the local part");
        }
        if !atom.bytes().all(is_atext) {
            return Err("bad character in the local part (quote it)");
        }
    }
    Ok(())
}

/// A domain name or an address literal.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() {
        return Err("empty domain");
    }
    if domain.len() > MAX_DOMAIN {
        return Err("domain longer than 255 octets");
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal.strip_suffix(']').ok_or("bad address literal")?;
        return check_literal(literal);
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err("misplaced '.' in the domain");
        }
        if label.len() > MAX_LABEL {
            return Err("domain label longer than 63 octets");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("domain label starting or ending with '-'");
        }
        // Letters, digits, hyphens; underscores (seen in internal host
        // names); UTF-8 (U-labels, with SMTPUTF8).
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80)
        {
            return Err("bad character in the domain");
        }
    }
    Ok(())
}

fn check_literal(literal: &str) -> Result<(), &'static str> {
    if let Some(v6) = literal
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("IPv6:"))
        .map(|_| &literal[5..])
    {
        return v6
            .parse::<Ipv6Addr>()
            .map(drop)
            .map_err(|_| "bad IPv6 address literal");
    }
    if literal.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    // General-address-literal: Standardized-tag ":" 1*dcontent.
    let (tag, content) = literal.split_once(':').ok_or("bad address literal")?;
    let tag_ok = !tag.is_empty()
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !tag.ends_with('-');
    let content_ok = !content.is_empty()
        && content
            .bytes()
            .all(|b| (33..=90).contains(&b) || (94..=126).contains(&b));
    if tag_ok && content_ok {
        Ok(())
    } else {
        Err("bad address literal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::params::{Offered, mail_params, rcpt_params};

    /// The relay's parse: addresses with a domain.
    fn parse(line: &str) -> Result<Command<'_>, Answer> {
        super::parse(line, false)
    }

    fn path(s: &str) -> Result<String, &'static str> {
        parse_path(s, true, false).map(|(p, _)| p.address)
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse("EHLO client.example"),
            Ok(Command::Ehlo("client.example"))
        );
        assert_eq!(parse("ehlo [127.0.0.1]"), Ok(Command::Ehlo("[127.0.0.1]")));
        assert!(parse("EHLO").is_err());
        assert!(parse("HELO ").is_err());
        assert_eq!(parse("DATA"), Ok(Command::Data));
        assert!(parse("DATA x").is_err());
        assert!(parse("STARTTLS now").is_err());
        assert_eq!(parse("noop anything"), Ok(Command::Noop));
        assert_eq!(parse("GET / HTTP/1.1"), Ok(Command::ForeignProtocol));
        assert_eq!(parse("EXPN list"), Ok(Command::NotImplemented));
        assert_eq!(parse("FOO"), Ok(Command::Unknown));
        assert_eq!(parse(""), Ok(Command::Unknown));
        assert_eq!(parse("MAIL1 x"), Ok(Command::Unknown));
        assert_eq!(
            parse("AUTH PLAIN AGEAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN",
                initial: Some("AGEAYg==")
            })
        );
        assert!(parse("AUTH").is_err());
        assert!(parse("AUTH PLAIN a b").is_err());
    }

    #[test]
    fn mail_and_rcpt() {
        let Ok(Command::Mail { path, params }) = parse("MAIL FROM:<a@b.example> SIZE=10") else {
            panic!("not parsed");
        };
        assert_eq!(path.address, "a@b.example");
        assert_eq!(params, "SIZE=10");
        let Ok(Command::Mail { path, .. }) = parse("mail from: <>") else {
            panic!("null path");
        };
        assert_eq!(path.address, "");
        assert!(parse("RCPT TO:<>").is_err());
        assert!(parse("MAIL FROM:").is_err());
        assert!(parse("MAIL TO:<a@b>").is_err());
        assert!(parse("MAIL FROM:<a@b>x").is_err());
        let Ok(Command::Rcpt { path, params }) = parse("RCPT TO:a@b NOTIFY=NEVER") else {
            panic!("bare address");
        };
        assert_eq!(path.address, "a@b");
        assert_eq!(params, "NOTIFY=NEVER");
    }

    #[test]
    fn paths() {
        assert_eq!(path("<a@b>"), Ok("a@b".into()));
        assert_eq!(path("<@r1,@r2:a@b>"), Ok("a@b".into()));
        assert_eq!(path("<Postmaster>"), Ok("Postmaster".into()));
        assert_eq!(path("<\"a b\"@c>"), Ok("\"a b\"@c".into()));
        assert_eq!(path("<\"a\\\"b\"@c>"), Ok("\"a\\\"b\"@c".into()));
        assert!(path("<\"x>\"@b>").is_err());
        assert!(path("<a@b").is_err());
        assert!(path("<root>").is_err());
        assert!(path("<a..b@c>").is_err());
        assert!(path("<.a@c>").is_err());
        assert!(path("<a@-b>").is_err());
        assert!(path("<a@b.>").is_err());
        assert!(path("<a@b\u{7f}>").is_err());
        assert!(path("<a b@c>").is_err());
        assert!(path(&format!("<{}@b>", "a".repeat(260))).is_err());
        assert_eq!(path("<a@[127.0.0.1]>"), Ok("a@[127.0.0.1]".into()));
        assert_eq!(path("<a@[IPv6:::1]>"), Ok("a@[IPv6:::1]".into()));
        assert!(path("<a@[999.1.1.1]>").is_err());
        let (p, _) = parse_path("<jö@bü.example>", true, false).unwrap();
        assert!(p.utf8);
    }

    #[test]
    fn unqualified_addresses_when_allowed() {
        let path =
            |s: &str, unqualified: bool| parse_path(s, false, unqualified).map(|(p, _)| p.address);
        assert!(path("<root>", false).is_err());
        assert_eq!(path("<root>", true), Ok("root".into()));
        assert_eq!(path("<\"a b\">", true), Ok("\"a b\"".into()));
        assert!(path("<a..b>", true).is_err());
        assert!(path("<a b>", true).is_err());
        assert!(path("<\"x>\">", true).is_err());
        assert!(path("<a@b..c>", true).is_err());
        assert_eq!(path("<a@b.c>", true), Ok("a@b.c".into()));
    }

    /// The dev server's own path parser went; what its test asserted
    /// holds of the codec's.
    #[test]
    fn dev_server_paths() {
        let mail = |line: &str| match parse(line) {
            Ok(Command::Mail { path, params }) => Some((path.address, params.to_owned())),
            _ => None,
        };
        assert_eq!(
            mail("MAIL FROM:<a@b> SIZE=10"),
            Some(("a@b".into(), "SIZE=10".into()))
        );
        assert_eq!(
            mail("MAIL FROM: <a@b>"),
            Some(("a@b".into(), String::new()))
        );
        assert_eq!(mail("MAIL FROM:<>"), Some((String::new(), String::new())));
        assert_eq!(
            mail("MAIL FROM:a@b BODY=8BITMIME"),
            Some(("a@b".into(), "BODY=8BITMIME".into()))
        );
        assert_eq!(
            mail("MAIL FROM:<@relay:a@b>"),
            Some(("a@b".into(), String::new()))
        );
        assert_eq!(mail("MAIL FROM:<a b>"), None);
        assert_eq!(mail("MAIL FROM:<a@b"), None);
        assert_eq!(mail("MAIL FROM:"), None);
        assert_eq!(mail("mail from:<x@y>"), Some(("x@y".into(), String::new())));
        assert_eq!(mail("MAIL FR"), None);
        assert_eq!(mail("MAIL FRÖM:<x@y>"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(line in "\\PC{0,300}") {
            let all = Offered {
                extended: true,
                size: true,
                eight_bit_mime: true,
                smtputf8: true,
                dsn: true,
                auth: true,
            };
            if let Ok(Command::Mail { params, .. }) = parse(&line) {
                let _ = mail_params(params, &all);
            }
            if let Ok(Command::Rcpt { params, .. }) = parse(&line) {
                let _ = rcpt_params(params, &all);
            }
        }

        #[test]
        fn accepted_addresses_are_safe(line in "(MAIL FROM:|RCPT TO:)[<>\"\\\\@a-z.\\[\\]: ,é]{0,40}") {
            match parse(&line) {
                Ok(Command::Mail { path, .. }) | Ok(Command::Rcpt { path, .. }) => {
                    proptest::prop_assert!(!path.address.contains(['<', '>', ' ']) || path.address.starts_with('"'));
                    proptest::prop_assert!(!path.address.contains(['<', '>']));
                    proptest::prop_assert!(path.address.len() <= MAX_ADDRESS);
                }
                _ => {}
            }
        }
    }
}
