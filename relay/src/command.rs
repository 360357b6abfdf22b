//! Parsing of SMTP command lines (RFC 5321 section 4.1, RFC 1870, 6152,
//! 6531, 4954), strict and bounded.
//!
//! The session frames lines itself (CRLF only, at most `max_line` bytes,
//! no other control character, valid UTF-8) and hands each line, without
//! its CRLF, to [`parse`]. Nothing here allocates more than a copy of
//! (part of) the line, and nothing panics: every index is checked.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest address accepted (RFC 5321 4.5.3.1.3: a path is at most 256
/// octets with its angle brackets).
pub(crate) const MAX_ADDRESS: usize = 254;

/// Longest domain accepted (RFC 5321 4.5.3.1.2).
const MAX_DOMAIN: usize = 255;

/// Longest label of a domain (RFC 1035).
const MAX_LABEL: usize = 63;

/// A reply to send instead of acting on a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: u16,
    pub text: String,
}

impl Refusal {
    pub(crate) fn new(code: u16, text: impl Into<String>) -> Refusal {
        Refusal {
            code,
            text: text.into(),
        }
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
pub(crate) struct Path {
    /// The mailbox, without angle brackets or source route; empty for the
    /// null path `<>`. Quoted local parts stay quoted.
    pub address: String,
    /// The address holds non-ASCII characters (needs SMTPUTF8).
    pub utf8: bool,
}

/// Parses one command line (without CRLF). `Err` is the reply that
/// refuses it (a syntax error).
pub(crate) fn parse(line: &str) -> Result<Command<'_>, Refusal> {
    let (verb, args) = match line.split_once(' ') {
        Some((verb, args)) => (verb, args.trim_matches(' ')),
        None => (line, ""),
    };
    if verb.is_empty() || verb.len() > 16 || !verb.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Ok(Command::Unknown);
    }
    let verb = verb.to_ascii_uppercase();
    let no_args = |command: Command<'static>, syntax: &str| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(Refusal::new(501, format!("5.5.4 Syntax: {syntax}")))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let Some(host) = args.split(' ').next().filter(|h| !h.is_empty()) else {
                return Err(Refusal::new(501, format!("5.5.4 Syntax: {verb} hostname")));
            };
            if host.len() > MAX_DOMAIN {
                return Err(Refusal::new(501, "5.5.4 Hostname too long"));
            }
            Ok(if verb == "EHLO" {
                Command::Ehlo(host)
            } else {
                Command::Helo(host)
            })
        }
        "MAIL" => {
            let Some(rest) = strip_keyword(args, "FROM:") else {
                return Err(Refusal::new(501, "5.5.4 Syntax: MAIL FROM:<address>"));
            };
            let (path, params) = parse_path(rest, false)
                .map_err(|e| Refusal::new(501, format!("5.1.7 Bad sender address: {e}")))?;
            Ok(Command::Mail { path, params })
        }
        "RCPT" => {
            let Some(rest) = strip_keyword(args, "TO:") else {
                return Err(Refusal::new(501, "5.5.4 Syntax: RCPT TO:<address>"));
            };
            let (path, params) = parse_path(rest, true)
                .map_err(|e| Refusal::new(501, format!("5.1.3 Bad recipient address: {e}")))?;
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
                Err(Refusal::new(501, "5.5.4 Syntax: VRFY address"))
            } else {
                Ok(Command::Vrfy)
            }
        }
        "AUTH" => {
            let mut words = args.split(' ').filter(|w| !w.is_empty());
            let Some(mechanism) = words.next() else {
                return Err(Refusal::new(
                    501,
                    "5.5.4 Syntax: AUTH mechanism [initial-response]",
                ));
            };
            let initial = words.next();
            if words.next().is_some() {
                return Err(Refusal::new(
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
fn parse_path(s: &str, rcpt: bool) -> Result<(Path, &str), &'static str> {
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
    check_mailbox(mailbox)?;
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
fn check_mailbox(mailbox: &str) -> Result<(), &'static str> {
    let (local, domain) = if mailbox.starts_with('"') {
        let end = quoted_end(mailbox).ok_or("unterminated quoted local part")?;
        let (local, rest) = mailbox.split_at(end);
        let domain = rest
            .strip_prefix('@')
            .ok_or("no '@' after the local part")?;
        check_quoted(local)?;
        (local, domain)
    } else {
        let at = mailbox
            .rfind('@')
            .ok_or("no '@domain' (use a full address)")?;
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

/// The `BODY=` value of MAIL (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    SevenBit,
    EightBitMime,
}

/// The parameters of a MAIL command.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct MailParams {
    /// `SIZE=`, saturated at `u64::MAX`.
    pub size: Option<u64>,
    pub body: Option<Body>,
    pub smtputf8: bool,
    /// `AUTH=` was given (RFC 4954 section 5); its value is ignored.
    pub auth: bool,
    /// `RET=FULL` (true) or `RET=HDRS` (RFC 3461 §4.3).
    pub ret_full: Option<bool>,
    /// `ENVID=`, decoded from xtext (RFC 3461 §4.4).
    pub envid: Option<String>,
}

/// The DSN parameters of one RCPT (RFC 3461 §4.1, §4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RcptParams {
    /// `NOTIFY=`: `None` when not given; `Some(vec![])` for NEVER; else
    /// some of `SUCCESS`, `FAILURE`, `DELAY`.
    pub notify: Option<Vec<String>>,
    /// `ORCPT=addr-type;address`, the address decoded from xtext.
    pub orcpt: Option<String>,
}

/// Longest ENVID (RFC 3461 §4.4: 100 characters) and ORCPT we keep.
const MAX_ENVID: usize = 100;
const MAX_ORCPT: usize = 500;

/// Decodes xtext (RFC 3461 §4): `+XX` is a byte in upper-case hex; `+`
/// and `=` are otherwise not allowed. The result must be printable ASCII.
fn xtext(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex
                .iter()
                .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h))
            {
                return None;
            }
            let decoded = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if !(32..=126).contains(&decoded) {
                return None;
            }
            out.push(char::from(decoded));
            i += 3;
        } else if (33..=126).contains(&b) && b != b'=' {
            out.push(char::from(b));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Splits parameters into `(KEYWORD, value)`; checks the syntax of
/// RFC 5321 4.1.2 (esmtp-keyword, esmtp-value).
fn split_params(params: &str) -> Result<Vec<(String, Option<&str>)>, Refusal> {
    let mut out = Vec::new();
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        let key_ok = !key.is_empty()
            && key.len() <= 64
            && key.as_bytes()[0].is_ascii_alphanumeric()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !key_ok {
            return Err(Refusal::new(501, "5.5.4 Bad parameter syntax"));
        }
        let key = key.to_ascii_uppercase();
        if let Some(v) = value
            && (v.is_empty() || !v.bytes().all(|b| (33..=126).contains(&b) && b != b'='))
        {
            return Err(Refusal::new(501, format!("5.5.4 Bad {key} value")));
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(Refusal::new(
                501,
                format!("5.5.4 Duplicate {key} parameter"),
            ));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Parses the parameters of MAIL. `extended`: the session greeted with
/// EHLO (after HELO no parameter exists); `auth_offered`: AUTH was in the
/// EHLO reply (then `AUTH=` is accepted and ignored).
pub(crate) fn mail_params(
    params: &str,
    extended: bool,
    auth_offered: bool,
) -> Result<MailParams, Refusal> {
    let mut out = MailParams::default();
    for (key, value) in split_params(params)? {
        if !extended {
            return Err(Refusal::new(
                555,
                format!("5.5.4 {key} not supported after HELO (use EHLO)"),
            ));
        }
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => {
                if !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Refusal::new(501, "5.5.4 Bad SIZE value"));
                }
                // Saturating: a number too large for u64 is just too large.
                let size = v.bytes().fold(0u64, |acc, b| {
                    acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
                });
                out.size = Some(size);
            }
            ("BODY", Some(v)) => {
                out.body = Some(if v.eq_ignore_ascii_case("7BIT") {
                    Body::SevenBit
                } else if v.eq_ignore_ascii_case("8BITMIME") {
                    Body::EightBitMime
                } else {
                    return Err(Refusal::new(555, "5.5.4 Unsupported BODY value"));
                });
            }
            ("SMTPUTF8", None) => out.smtputf8 = true,
            ("RET", Some(v)) if v.eq_ignore_ascii_case("FULL") => out.ret_full = Some(true),
            ("RET", Some(v)) if v.eq_ignore_ascii_case("HDRS") => out.ret_full = Some(false),
            ("ENVID", Some(v)) => {
                match xtext(v).filter(|e| !e.is_empty() && e.len() <= MAX_ENVID) {
                    Some(envid) => out.envid = Some(envid),
                    None => return Err(Refusal::new(501, "5.5.4 Bad ENVID value")),
                }
            }
            ("AUTH", Some(_)) if auth_offered => out.auth = true,
            ("SIZE" | "BODY" | "SMTPUTF8" | "RET" | "ENVID", _) => {
                return Err(Refusal::new(501, format!("5.5.4 Bad {key} parameter")));
            }
            ("AUTH", None) if auth_offered => {
                return Err(Refusal::new(501, "5.5.4 Bad AUTH parameter"));
            }
            _ => {
                return Err(Refusal::new(
                    555,
                    format!("5.5.4 Unsupported parameter {key}"),
                ));
            }
        }
    }
    Ok(out)
}

/// Checks the parameters of RCPT: none is supported (no DSN).
pub(crate) fn rcpt_params(params: &str) -> Result<RcptParams, Refusal> {
    let mut out = RcptParams::default();
    for (key, value) in split_params(params)? {
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) => {
                let words: Vec<String> = v.split(',').map(str::to_ascii_uppercase).collect();
                let never = words.len() == 1 && words[0] == "NEVER";
                let known = words
                    .iter()
                    .all(|w| matches!(w.as_str(), "SUCCESS" | "FAILURE" | "DELAY"));
                let mut unique = words.clone();
                unique.sort();
                unique.dedup();
                if !never && (!known || unique.len() != words.len()) {
                    return Err(Refusal::new(501, "5.5.4 Bad NOTIFY value"));
                }
                out.notify = Some(if never { Vec::new() } else { words });
            }
            ("ORCPT", Some(v)) => {
                let decoded = v.split_once(';').and_then(|(kind, address)| {
                    let kind_ok =
                        kind.eq_ignore_ascii_case("rfc822") || kind.eq_ignore_ascii_case("utf-8");
                    kind_ok.then(|| xtext(address)).flatten()
                });
                match decoded.filter(|a| !a.is_empty() && a.len() <= MAX_ORCPT) {
                    Some(address) => out.orcpt = Some(address),
                    None => return Err(Refusal::new(501, "5.5.4 Bad ORCPT value")),
                }
            }
            ("NOTIFY" | "ORCPT", None) => {
                return Err(Refusal::new(501, format!("5.5.4 Bad {key} parameter")));
            }
            _ => {
                return Err(Refusal::new(
                    555,
                    format!("5.5.4 Unsupported parameter {key}"),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Result<String, &'static str> {
        parse_path(s, true).map(|(p, _)| p.address)
    }

    #[test]
    fn dsn_parameters_rfc_3461() {
        let m = mail_params("RET=HDRS ENVID=QQ314159+2Bx", true, false).unwrap();
        assert_eq!(m.ret_full, Some(false));
        assert_eq!(m.envid.as_deref(), Some("QQ314159+x"));
        assert!(mail_params("RET=ALL", true, false).is_err());
        assert!(
            mail_params("ENVID=a+0D+0Ab", true, false).is_err(),
            "no CR LF"
        );
        assert!(mail_params(&format!("ENVID={}", "x".repeat(101)), true, false).is_err());
        let r = rcpt_params("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@example.com").unwrap();
        assert_eq!(
            r.notify,
            Some(vec!["SUCCESS".to_owned(), "FAILURE".to_owned()])
        );
        assert_eq!(r.orcpt.as_deref(), Some("a+b@example.com"));
        assert_eq!(rcpt_params("NOTIFY=never").unwrap().notify, Some(vec![]));
        for bad in [
            "NOTIFY=NEVER,SUCCESS",
            "NOTIFY=SOMETIMES",
            "NOTIFY=DELAY,DELAY",
            "ORCPT=x400;abc",
            "ORCPT=rfc822;",
            "ORCPT=rfc822;a+zz",
            "NOTIFY",
        ] {
            assert!(rcpt_params(bad).is_err(), "{bad}");
        }
        assert_eq!(rcpt_params("").unwrap(), RcptParams::default());
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
        let (p, _) = parse_path("<jö@bü.example>", true).unwrap();
        assert!(p.utf8);
    }

    #[test]
    fn parameters() {
        let p = mail_params("SIZE=100 BODY=8bitmime SMTPUTF8", true, false).unwrap();
        assert_eq!(p.size, Some(100));
        assert_eq!(p.body, Some(Body::EightBitMime));
        assert!(p.smtputf8);
        assert_eq!(
            mail_params("SIZE=99999999999999999999999999", true, false)
                .unwrap()
                .size,
            Some(u64::MAX)
        );
        assert_eq!(
            mail_params("SIZE=1 SIZE=2", true, false).unwrap_err().code,
            501
        );
        assert_eq!(mail_params("SIZE=x", true, false).unwrap_err().code, 501);
        assert_eq!(mail_params("SIZE", true, false).unwrap_err().code, 501);
        assert_eq!(mail_params("FOO=bar", true, false).unwrap_err().code, 555);
        assert_eq!(mail_params("RET=ALL", true, false).unwrap_err().code, 501);
        assert_eq!(
            mail_params("MT-PRIORITY=0", true, false).unwrap_err().code,
            555
        );
        assert_eq!(
            mail_params("BODY=BINARYMIME", true, false)
                .unwrap_err()
                .code,
            555
        );
        assert_eq!(mail_params("AUTH=<>", true, false).unwrap_err().code, 555);
        assert!(mail_params("AUTH=<>", true, true).unwrap().auth);
        assert_eq!(mail_params("SIZE=1", false, false).unwrap_err().code, 555);
        assert_eq!(
            mail_params("SMTPUTF8=yes", true, false).unwrap_err().code,
            501
        );
        assert_eq!(mail_params("=x", true, false).unwrap_err().code, 501);
        assert!(rcpt_params("").is_ok());
        assert_eq!(rcpt_params("FOO=1").unwrap_err().code, 555);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(line in "\\PC{0,300}") {
            if let Ok(Command::Mail { params, .. }) = parse(&line) {
                let _ = mail_params(params, true, true);
            }
            if let Ok(Command::Rcpt { params, .. }) = parse(&line) {
                let _ = rcpt_params(params);
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
