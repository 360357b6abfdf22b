//! Prepared RFC 5322 messages: their header section found byte for byte,
//! missing Date, Message-ID, MIME-Version and From added, header lines folded
//! so none exceeds 998 octets, Bcc removed, recipients read from the headers.
//! Everything else is left exactly as it came.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use lettre::message::Mailbox;

use super::address::{ascii_domain, is_forbidden_char, shown};
use crate::error::{Error, Result};

/// RFC 5322 §2.1.1: no line may be longer, CRLF excluded.
pub const MAX_LINE: usize = 998;

/// Where lines are folded in messages mailgate composes (RFC 5322 §2.1.1's
/// "SHOULD"); a line is only folded where it has whitespace.
pub const SOFT_LINE: usize = 78;

/// One header field: its name as written and its bytes, continuation lines
/// and line ends included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderField {
    /// The name, as written.
    pub name: String,
    /// Offset of its first byte.
    pub start: usize,
    /// Offset after its last line end.
    pub end: usize,
}

impl HeaderField {
    /// Whether it is called `name` (case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// Its value in `message` (the one it was parsed from): the bytes after
    /// the colon, line ends and continuation lines included. Unlike
    /// `name.len() + 1`, right also for the obsolete `Name :` form.
    pub fn value<'a>(&self, message: &'a [u8]) -> &'a [u8] {
        let raw = message.get(self.start..self.end).unwrap_or_default();
        raw.iter()
            .position(|&b| b == b':')
            .map_or(&raw[raw.len()..], |colon| &raw[colon + 1..])
    }
}

/// The header section of a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderSection {
    /// The fields, in order.
    pub fields: Vec<HeaderField>,
    /// Offset of the body: after the empty line, or where the first line
    /// that is not a header field starts (then there is no empty line).
    pub body_start: usize,
    /// Whether an empty line separates header and body.
    pub has_separator: bool,
}

impl HeaderSection {
    /// Finds the header section of `message`, in one pass.
    pub fn parse(message: &[u8]) -> Self {
        let mut section = HeaderSection::default();
        let mut pos = 0;
        while pos < message.len() {
            let end = message[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(message.len(), |n| pos + n + 1);
            let line = &message[pos..end];
            let content = line
                .strip_suffix(b"\n")
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .unwrap_or(line);
            if content.is_empty() {
                section.body_start = end;
                section.has_separator = true;
                return section;
            }
            if matches!(content[0], b' ' | b'\t') {
                match section.fields.last_mut() {
                    Some(field) => field.end = end,
                    None => break,
                }
            } else {
                let Some(colon) = content.iter().position(|&b| b == b':') else {
                    break;
                };
                // RFC 5322 4.5.6: white space may stand between the name
                // and the colon (`From : x`); it is not part of the name.
                let name = content[..colon].trim_ascii_end();
                if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
                    break;
                }
                section.fields.push(HeaderField {
                    name: String::from_utf8_lossy(name).into_owned(),
                    start: pos,
                    end,
                });
            }
            pos = end;
        }
        section.body_start = pos;
        section
    }

    /// Whether a field called `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.is(name))
    }

    /// The offset after the trace fields (`Return-Path`, `Received`) that
    /// open the header; 0 when there are none. Fields mailgate adds go
    /// here: trace fields stay on top (RFC 5321 4.4, RFC 5322 3.6.7).
    pub fn trace_end(&self) -> usize {
        self.fields
            .iter()
            .take_while(|f| f.is("Received") || f.is("Return-Path"))
            .last()
            .map_or(0, |f| f.end)
    }
}

/// What [`complete`] may add to a prepared message.
#[derive(Clone, Debug, Default)]
pub struct Completion<'a> {
    /// The From to add when the message has none.
    pub from: Option<&'a Mailbox>,
    /// The domain for a Message-ID, when the message has none.
    pub message_id_domain: &'a str,
}

/// `message` with the Date, Message-ID, MIME-Version and From it lacks added
/// at the top (below the trace fields that open it), its Bcc fields removed (no copy may show the blind
/// recipients; Postfix's cleanup does the same), every header line folded
/// to at most 998 octets (at whitespace), and CRLF line ends in the added
/// lines. Nothing else changes.
///
/// Errors (exit 65) when a header line cannot be folded or a body line is
/// longer than 998 octets: a server would refuse it after the recipients
/// were accepted.
pub fn complete(message: &[u8], completion: &Completion<'_>) -> Result<Vec<u8>> {
    complete_owned(message.to_vec(), completion)
}

/// [`complete`] on a message the caller hands over: only the header
/// section is rebuilt and put in place of the old one, the body is never
/// copied (a big message costs its own size, not twice that). Room for
/// the added fields should be reserved in `message` by its producer
/// (a few hundred bytes); otherwise the buffer grows once.
pub fn complete_owned(mut message: Vec<u8>, completion: &Completion<'_>) -> Result<Vec<u8>> {
    let body_start = HeaderSection::parse(&message).body_start;
    let has_body = message.len() > body_start;
    let head = complete_head(&message[..body_start], has_body, completion)?;
    replace_head(&mut message, body_start, &head);
    // Long body lines are re-encoded when the message is sent; only those
    // that no upstream could be given (inside a signed part) are refused now.
    super::convert::check_fits(
        &message,
        super::convert::Upstream {
            eight_bit_mime: true,
            smtputf8: true,
        },
    )?;
    Ok(message)
}

/// The completed header section of [`complete`], from `head` (the header
/// section of a message as [`HeaderSection::parse`] finds it, the empty
/// line included when there is one).
fn complete_head(head: &[u8], has_body: bool, completion: &Completion<'_>) -> Result<Vec<u8>> {
    let mut section = HeaderSection::parse(head);
    let without_bcc;
    let head = if section.has("Bcc") {
        without_bcc = remove_fields_in(head, &section, "Bcc");
        section = HeaderSection::parse(&without_bcc);
        &without_bcc[..]
    } else {
        head
    };
    let mut added = String::new();
    if !section.has("Date") {
        added.push_str(&format!("Date: {}\r\n", rfc5322_date(SystemTime::now())));
    }
    if !section.has("Message-ID") {
        added.push_str(&format!(
            "Message-ID: {}\r\n",
            message_id(completion.message_id_domain)
        ));
    }
    if !section.has("MIME-Version") {
        added.push_str("MIME-Version: 1.0\r\n");
    }
    if !section.has("From")
        && let Some(from) = completion.from
    {
        let from = Mailbox::new(from.name.clone(), ascii_domain("from", &from.email)?);
        added.push_str(&format!("From: {from}\r\n"));
    }
    let mut out = Vec::with_capacity(head.len() + added.len() + 2);
    let trace_end = section.trace_end();
    out.extend_from_slice(&head[..trace_end]);
    out.extend_from_slice(added.as_bytes());
    if section.fields.is_empty() && !section.has_separator && has_body {
        // No header at all: what came is all body.
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&head[trace_end..]);
    fold_header_lines(out, None)
}

/// Puts `head` in place of the first `old_len` bytes of `message`: the
/// body moves within the buffer (grown exactly when it must), never into
/// a second one.
fn replace_head(message: &mut Vec<u8>, old_len: usize, head: &[u8]) {
    if head.len() > old_len {
        message.reserve_exact(head.len() - old_len);
    }
    message.splice(..old_len, head.iter().copied());
}

/// Folds header lines longer than `soft` (when given) or [`MAX_LINE`] at
/// their last whitespace within the limit. A line over [`MAX_LINE`] without
/// such whitespace is an error naming the header; one over `soft` only
/// stays as it is. Only the header section is rewritten: the body is not
/// copied.
pub fn fold_header_lines(mut message: Vec<u8>, soft: Option<usize>) -> Result<Vec<u8>> {
    let section = HeaderSection::parse(&message);
    let limit = soft.unwrap_or(MAX_LINE).min(MAX_LINE);
    let too_long = section
        .fields
        .iter()
        .any(|f| lines(&message[f.start..f.end]).any(|l| l.len() > limit));
    if !too_long {
        return Ok(message);
    }
    let Some(last) = section.fields.last() else {
        return Ok(message);
    };
    let mut head = Vec::with_capacity(last.end + 64);
    for field in &section.fields {
        for line in lines(&message[field.start..field.end]) {
            fold_line(line, limit, &field.name, &mut head)?;
            head.extend_from_slice(b"\r\n");
        }
    }
    message.splice(..last.end, head);
    Ok(message)
}

/// The lines of a header field without their line ends.
fn lines(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    field
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
}

fn fold_line(mut line: &[u8], limit: usize, name: &str, out: &mut Vec<u8>) -> Result<()> {
    while line.len() > limit {
        // The whitespace stays as the start of the continuation line; never
        // fold right after the field name or at the very start.
        let min = name.len() + 2;
        let fold_point = |within: usize| {
            line[..=within.min(line.len() - 1)]
                .iter()
                .rposition(|&b| b == b' ' || b == b'\t')
                .filter(|&i| i > min && line[..i].iter().any(|&b| b != b' ' && b != b'\t'))
        };
        // Within the soft limit if possible, else anywhere within 998.
        let at = fold_point(limit).or_else(|| fold_point(MAX_LINE));
        match at {
            Some(i) => {
                out.extend_from_slice(&line[..i]);
                out.extend_from_slice(b"\r\n");
                line = &line[i..];
            }
            None if line.len() <= MAX_LINE => break,
            None => {
                return Err(Error::invalid_message(
                    "message",
                    format!(
                        "the `{}` header has a line of {} octets with no space to fold it at; a line may hold {MAX_LINE} (RFC 5322); nothing was sent",
                        shown(name),
                        line.len()
                    ),
                ));
            }
        }
    }
    out.extend_from_slice(line);
    Ok(())
}

/// Refuses a body line longer than [`MAX_LINE`] octets (servers refuse it
/// at the end of DATA, after the recipients were accepted).
pub fn check_body_lines(message: &[u8]) -> Result<()> {
    check_body(&message[HeaderSection::parse(message).body_start..])
}

fn check_body(body: &[u8]) -> Result<()> {
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_LINE {
            return Err(Error::invalid_message(
                "message",
                format!(
                    "body line {} is {} octets long; a line may hold {MAX_LINE} (RFC 5322): encode the body (quoted-printable or base64) or wrap it; nothing was sent",
                    n + 1,
                    line.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks what SMTP itself needs of a message sent exactly as given
/// ([`crate::Mailer::send_raw_exact`]): every line ends in CRLF (a bare LF
/// or a lone CR would have to be rewritten, which breaks a DKIM signature
/// over the body or headers) and no line is longer than [`MAX_LINE`]
/// octets, headers included. Nothing is converted; a failure names the
/// line (1-based) and what is wrong with it.
pub fn check_exact(message: &[u8]) -> Result<()> {
    let mut line_start = 0;
    let mut line = 1usize;
    while line_start < message.len() {
        let rest = &message[line_start..];
        let end = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        if end > MAX_LINE {
            return Err(Error::invalid_message(
                "message",
                format!(
                    "line {line} is {end} octets long; a line may hold {MAX_LINE} (RFC 5322 \u{a7}2.1.1) and sending as is cannot fold or re-encode it: use send_raw (`send --raw` without --as-is), which does; nothing was sent"
                ),
            ));
        }
        let terminator = &rest[end..];
        if terminator.is_empty() {
            // The last line without an end: the end-of-data line supplies
            // the CRLF (RFC 5321 \u{a7}4.1.1.4), nothing in the message changes.
            break;
        }
        if !terminator.starts_with(b"\r\n") {
            let what = if terminator[0] == b'\n' {
                "a bare LF"
            } else {
                "a CR without LF"
            };
            return Err(Error::invalid_message(
                "message",
                format!(
                    "line {line} ends in {what} (at octet {}); SMTP needs CRLF line ends and sending as is will not rewrite them: convert the message to CRLF, or use send_raw (`send --raw` without --as-is), which does; nothing was sent",
                    line_start + end
                ),
            ));
        }
        line_start += end + 2;
        line += 1;
    }
    Ok(())
}

/// `message` without any field called `name` (e.g. Bcc for `sendmail -t`).
pub fn remove_fields(message: &[u8], name: &str) -> Vec<u8> {
    remove_fields_in(message, &HeaderSection::parse(message), name)
}

fn remove_fields_in(message: &[u8], section: &HeaderSection, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut copied = 0;
    for field in section.fields.iter().filter(|f| f.is(name)) {
        out.extend_from_slice(&message[copied..field.start]);
        copied = field.end;
    }
    out.extend_from_slice(&message[copied..]);
    out
}

/// The addresses of the `To`, `Cc` and `Bcc` fields (every occurrence,
/// groups included), as `sendmail -t` takes them; malformed ones are errors
/// naming the field.
pub fn header_recipients(message: &[u8]) -> Result<Vec<String>> {
    use mail_parser::{HeaderName, HeaderValue, MessageParser};
    let section = HeaderSection::parse(message);
    let header_bytes = &message[..section.body_start];
    let parsed = MessageParser::new()
        .parse_headers(header_bytes)
        .ok_or_else(|| Error::invalid_message("message", "its header section cannot be read"))?;
    let mut out = Vec::new();
    for (name, field) in [
        (HeaderName::To, "To"),
        (HeaderName::Cc, "Cc"),
        (HeaderName::Bcc, "Bcc"),
    ] {
        for value in parsed.header_values(name) {
            let HeaderValue::Address(list) = value else {
                if matches!(value, HeaderValue::Empty) {
                    continue;
                }
                return Err(Error::invalid_message(
                    field,
                    "the header holds no address list that can be read",
                ));
            };
            for addr in list.iter() {
                // `To: root`: a bare local name reads as a display name
                // without an address; it is a recipient (sendmail `-t`
                // qualifies it, as Postfix and msmtp do).
                let local = match (&addr.address, addr.name.as_deref()) {
                    (None, Some(name)) if is_local_name(name) => Some(name),
                    _ => None,
                };
                if let Some(address) = addr.address.as_deref().or(local) {
                    if address.chars().any(is_forbidden_char) {
                        return Err(Error::invalid_message(
                            field,
                            format!(
                                "`{}` contains a control or invisible character",
                                shown(address)
                            ),
                        ));
                    }
                    out.push(address.to_owned());
                }
            }
        }
    }
    Ok(out)
}

/// A bare local name (`root`, `www-data`): one word, no `@`.
fn is_local_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
}

/// `message` sent as `sender` (a relay whose upstream only takes its own
/// user, as Microsoft 365 does for an app identity): every From field
/// (obsolete `From :` syntax included) is replaced by one From of
/// `sender`, below the trace fields, and the original authors go to one
/// Reply-To unless the message has one, so that answers still reach them.
/// Several Reply-To fields become one. A message without From gets one.
/// Nothing else changes.
pub fn rewrite_from(message: &[u8], sender: &Mailbox) -> Vec<u8> {
    rewrite_from_owned(message.to_vec(), sender)
}

/// [`rewrite_from`] on a message the caller hands over: only the header
/// section is rewritten, the body stays in its buffer.
pub fn rewrite_from_owned(mut message: Vec<u8>, sender: &Mailbox) -> Vec<u8> {
    let body_start = HeaderSection::parse(&message).body_start;
    let head = rewrite_head(&message[..body_start], sender);
    replace_head(&mut message, body_start, &head);
    message
}

/// [`rewrite_from`] of a header section (or of a whole message).
fn rewrite_head(message: &[u8], sender: &Mailbox) -> Vec<u8> {
    let section = HeaderSection::parse(message);
    let from_fields: Vec<&HeaderField> = section.fields.iter().filter(|f| f.is("From")).collect();
    let reply_fields: Vec<&HeaderField> =
        section.fields.iter().filter(|f| f.is("Reply-To")).collect();
    let mut removed = from_fields.clone();
    let mut head = format!("From: {sender}\r\n").into_bytes();
    // One Reply-To: the authors when there was none, the union of several.
    let reply_sources = match reply_fields.len() {
        0 => from_fields.as_slice(),
        1 => &[],
        _ => {
            removed.extend(&reply_fields);
            reply_fields.as_slice()
        }
    };
    let values: Vec<&[u8]> = reply_sources
        .iter()
        .map(|f| trim_line_end(f.value(message)))
        .filter(|v| !v.trim_ascii().is_empty())
        .collect();
    if !values.is_empty() {
        head.extend_from_slice(b"Reply-To:");
        head.extend_from_slice(&values.join(&b","[..]));
        head.extend_from_slice(b"\r\n");
    }
    removed.sort_by_key(|f| f.start);
    let trace_end = section.trace_end();
    let mut out = Vec::with_capacity(message.len() + head.len() + 2);
    out.extend_from_slice(&message[..trace_end]);
    out.extend_from_slice(&head);
    if section.fields.is_empty() && !section.has_separator {
        out.extend_from_slice(b"\r\n");
    }
    let mut copied = trace_end;
    for field in removed {
        out.extend_from_slice(&message[copied..field.start]);
        copied = field.end;
    }
    out.extend_from_slice(&message[copied..]);
    out
}

/// `value` without the line end of its last line.
fn trim_line_end(value: &[u8]) -> &[u8] {
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    value.strip_suffix(b"\r").unwrap_or(value)
}

/// The header fields of `message` named `names` (in their order, folded
/// as they are), ended by an empty line: what a header parser needs to
/// read just those.
pub(crate) fn only_fields(message: &[u8], names: &[&str]) -> Vec<u8> {
    let section = HeaderSection::parse(message);
    let mut head = Vec::new();
    for field in section
        .fields
        .iter()
        .filter(|f| names.iter().any(|n| f.is(n)))
    {
        head.extend_from_slice(&message[field.start..field.end]);
        if !head.ends_with(b"\n") {
            head.extend_from_slice(b"\r\n");
        }
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The decoded Subject (empty when there is none) and the Message-ID of a
/// message, for listings.
pub fn subject_and_message_id(message: &[u8]) -> (String, Option<String>) {
    // Only these two fields are parsed: a relayed message's Received
    // fields cost more to parse than the rest of the header together.
    let head = only_fields(message, &["Subject", "Message-ID"]);
    let Some(parsed) = mail_parser::MessageParser::new().parse_headers(&head) else {
        return (String::new(), None);
    };
    let subject = parsed.subject().unwrap_or_default().to_owned();
    let message_id = parsed.message_id().map(|id| format!("<{id}>"));
    (subject, message_id)
}

/// A date as RFC 5322 writes it, in UTC: `Tue, 01 Dec 2026 20:30:42 +0000`.
pub fn rfc5322_date(at: SystemTime) -> String {
    let http = httpdate::fmt_http_date(at);
    match http.strip_suffix(" GMT") {
        Some(rest) => format!("{rest} +0000"),
        None => http,
    }
}

/// `<random@domain>`: 128 bits from a per-process random seed, the time
/// and a counter, so two calls never give the same id.
pub fn message_id(domain: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = RandomState::new();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut halves = [0u64; 2];
    for (i, half) in halves.iter_mut().enumerate() {
        let mut h = seed.build_hasher();
        h.write_u128(now);
        h.write_u64(count);
        h.write_u32(std::process::id());
        h.write_usize(i);
        *half = h.finish();
    }
    let domain = if domain.is_empty() {
        "localhost"
    } else {
        domain
    };
    format!("<{:016x}{:016x}@{domain}>", halves[0], halves[1])
}

#[cfg(test)]
mod tests;
