//! Making a prepared message fit the upstream, as Postfix does instead of
//! refusing it: 8-bit MIME parts become quoted-printable (text) or base64
//! when the server lacks 8BITMIME (RFC 6152), parts with lines over 998
//! octets are re-encoded the same way, and raw UTF-8 in header fields
//! becomes RFC 2047 encoded-words (display names, unstructured fields) or
//! A-label domains when the server lacks SMTPUTF8 (RFC 6531).
//!
//! The MIME walk is written here (boundary lines, one entity at a time,
//! everything not converted copied byte for byte); parsing a part's header
//! block is left to `mail-parser`, encoding to `quoted_printable`, `base64`
//! and `email-encoding`. A full MIME library would re-serialise the whole
//! message, and a DKIM signature or a signed part must survive when nothing
//! in it needs to change.
//!
//! What cannot be converted is an error naming the reason: a UTF-8 local
//! part without SMTPUTF8, and any change inside `multipart/signed` or
//! `multipart/encrypted` (it would break the signature).

use std::borrow::Cow;

use base64::Engine as _;
use mail_parser::MimeHeaders as _;

use super::raw::{HeaderSection, MAX_LINE};
use crate::error::{Error, Result};

/// What the upstream takes, from its EHLO reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// It offers 8BITMIME: 8-bit bodies go as they are.
    pub eight_bit_mime: bool,
    /// It offers SMTPUTF8: UTF-8 header fields go as they are.
    pub smtputf8: bool,
}

/// The first address of a top-level address field (From, To, ...) with a
/// non-ASCII local part: the one 8-bit header text that cannot be encoded
/// for a server without SMTPUTF8. Reads the header section only, so that
/// such a message can be refused before it is queued.
pub fn non_ascii_header_address(message: &[u8]) -> Option<String> {
    let section = HeaderSection::parse(message);
    section.fields.iter().find_map(|field| {
        let bytes = &message[field.start..field.end];
        if bytes.is_ascii() || !ADDRESS_FIELDS.iter().any(|n| field.is(n)) {
            return None;
        }
        let value = unfolded_value(bytes);
        super::split_addresses(&value).into_iter().find_map(|item| {
            let (_, address) = split_mailbox(item.trim());
            let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
            (!local.is_ascii()).then(|| address.to_owned())
        })
    })
}

/// Deepest MIME nesting walked; deeper entities are copied as they are
/// (a hostile message must not exhaust the stack).
const MAX_DEPTH: usize = 32;

/// `message` as `upstream` takes it: borrowed when it fits already, which
/// is the usual case and costs one scan. Its line ends are CRLF, or bare LF
/// as sendmail's callers write them (the wire makes them CRLF; a
/// re-encoded text part gets CRLF line breaks).
pub fn fit(message: &[u8], upstream: Upstream) -> Result<Cow<'_, [u8]>> {
    let eight_bit = !message.is_ascii();
    let needs = Needs {
        body_8bit: eight_bit && !upstream.eight_bit_mime,
        header_8bit: eight_bit && !upstream.smtputf8,
    };
    if !needs.body_8bit && !needs.header_8bit && !has_long_line(message) {
        return Ok(Cow::Borrowed(message));
    }
    let mut out = Vec::with_capacity(message.len() + message.len() / 3 + 256);
    convert_entity(message, &needs, 0, None, true, &mut out)?;
    // What was copied as it is (an opaque header field, a hostile part
    // header) may still be too long: refused, never sent broken.
    if has_long_line(&out) {
        return Err(refusal(&format!(
            "a header line would stay over {MAX_LINE} octets after conversion"
        )));
    }
    Ok(Cow::Owned(out))
}

/// Checks what [`fit`] checks without building the converted message:
/// `Ok` when `message` can be made to fit `upstream`, the error [`fit`]
/// would give otherwise. What is converted is only measured, never kept,
/// so a big message costs at most one converted part at a time.
pub fn check_fits(message: &[u8], upstream: Upstream) -> Result<()> {
    let eight_bit = !message.is_ascii();
    let needs = Needs {
        body_8bit: eight_bit && !upstream.eight_bit_mime,
        header_8bit: eight_bit && !upstream.smtputf8,
    };
    if !needs.body_8bit && !needs.header_8bit && !has_long_line(message) {
        return Ok(());
    }
    let mut lines = LineCheck::default();
    convert_entity(message, &needs, 0, None, true, &mut lines)?;
    if lines.long() {
        return Err(refusal(&format!(
            "a header line would stay over {MAX_LINE} octets after conversion"
        )));
    }
    Ok(())
}

/// Where converted bytes go: the new message ([`fit`]) or only a line
/// count ([`check_fits`]).
trait Out {
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Keeps nothing but whether a line over [`MAX_LINE`] octets (CR LF not
/// counted) went through, as [`has_long_line`] would find it.
#[derive(Default)]
struct LineCheck {
    /// Octets of the current line so far, a final CR included.
    current: usize,
    last_cr: bool,
    seen_long: bool,
}

impl LineCheck {
    fn long(&self) -> bool {
        self.seen_long || self.current > MAX_LINE
    }
}

impl Out for LineCheck {
    fn put(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let mut line = self.current + i;
            let cr = if i > 0 {
                rest[i - 1] == b'\r'
            } else {
                self.last_cr
            };
            if cr {
                line -= 1;
            }
            if line > MAX_LINE {
                self.seen_long = true;
            }
            self.current = 0;
            self.last_cr = false;
            rest = &rest[i + 1..];
        }
        if let Some(&last) = rest.last() {
            self.current += rest.len();
            self.last_cr = last == b'\r';
        }
    }
}

#[derive(Clone, Copy)]
struct Needs {
    /// 8-bit body bytes must be encoded.
    body_8bit: bool,
    /// 8-bit header bytes must be encoded.
    header_8bit: bool,
}

impl Needs {
    /// Whether `body` (an entity's body, no sub-entities) must change.
    fn body_changes(&self, body: &[u8]) -> bool {
        (self.body_8bit && !body.is_ascii()) || has_long_line(body)
    }

    fn head_changes(&self, head: &[u8]) -> bool {
        self.header_8bit && !head.is_ascii()
    }
}

fn has_long_line(bytes: &[u8]) -> bool {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            let line = &bytes[start..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_LINE {
                return true;
            }
            start = i + 1;
        }
    }
    bytes.len() - start > MAX_LINE
}

/// The content type of an entity and what matters of its header.
struct Kind {
    /// `text`, `multipart`, ... (lower case).
    ctype: String,
    /// `plain`, `signed`, ... (lower case).
    subtype: String,
    boundary: Option<String>,
    /// `7bit`, `8bit`, `binary`, `quoted-printable`, `base64` (lower case), if given.
    encoding: Option<String>,
    /// It has a Content-Type field at all.
    typed: bool,
}

fn kind_of(head: &[u8], parent_digest: bool) -> Kind {
    // Only the two fields read here: parsing a long trace costs more.
    let head = super::raw::only_fields(head, &["Content-Type", "Content-Transfer-Encoding"]);
    let parsed = mail_parser::MessageParser::new().parse_headers(&head);
    let content_type = parsed.as_ref().and_then(|m| m.content_type());
    let encoding = parsed.as_ref().and_then(|m| {
        m.header_raw("Content-Transfer-Encoding")
            .map(|v| v.trim().to_ascii_lowercase())
    });
    // RFC 2046 §5.1.5: in multipart/digest the default is message/rfc822.
    let (default_type, default_sub) = if parent_digest {
        ("message", "rfc822")
    } else {
        ("text", "plain")
    };
    match content_type {
        Some(ct) => Kind {
            ctype: ct.ctype().to_ascii_lowercase(),
            subtype: ct
                .subtype()
                .map(str::to_ascii_lowercase)
                .unwrap_or_default(),
            boundary: ct.attribute("boundary").map(str::to_owned),
            encoding,
            typed: true,
        },
        None => Kind {
            ctype: default_type.into(),
            subtype: default_sub.into(),
            boundary: None,
            encoding,
            typed: false,
        },
    }
}

/// Writes `entity` converted into `out`. `signed` names the enclosing
/// signed or encrypted multipart, in which nothing may change.
fn convert_entity(
    entity: &[u8],
    needs: &Needs,
    depth: usize,
    signed: Option<&str>,
    top: bool,
    out: &mut dyn Out,
) -> Result<()> {
    convert_entity_in(entity, needs, depth, signed, top, false, out)
}

fn convert_entity_in(
    entity: &[u8],
    needs: &Needs,
    depth: usize,
    signed: Option<&str>,
    top: bool,
    parent_digest: bool,
    out: &mut dyn Out,
) -> Result<()> {
    let section = HeaderSection::parse(entity);
    let (head, body) = entity.split_at(section.body_start);
    if depth > MAX_DEPTH {
        // Too deep to walk: as it is, unless it must change.
        if needs.head_changes(head) || needs.body_changes(body) {
            return Err(refusal(
                "its MIME structure is nested too deeply to convert",
            ));
        }
        out.put(entity);
        return Ok(());
    }
    let kind = kind_of(head, parent_digest);
    let is_multipart = kind.ctype == "multipart" && kind.boundary.is_some();
    let is_message =
        kind.ctype == "message" && matches!(kind.subtype.as_str(), "rfc822" | "global");
    if let Some(signed) = signed
        && (needs.head_changes(head) || needs.body_changes(body))
    {
        return Err(refusal(&format!(
            "a part inside {signed} holds 8-bit data or lines over {MAX_LINE} octets that this server cannot take, and re-encoding it would break the signature; send it through a server that offers 8BITMIME, or sign an encoded message"
        )));
    }
    let head_changes = needs.head_changes(head);
    if is_multipart {
        let signed_here = matches!(kind.subtype.as_str(), "signed" | "encrypted")
            .then(|| format!("multipart/{}", kind.subtype));
        write_head(head, needs, head_changes, None, out)?;
        let boundary = kind.boundary.as_deref().unwrap_or_default();
        let digest = kind.subtype == "digest";
        return convert_multipart(
            body,
            boundary,
            needs,
            depth,
            signed_here.as_deref().or(signed),
            digest,
            out,
        );
    }
    if is_message
        && matches!(
            kind.encoding.as_deref(),
            None | Some("7bit" | "8bit" | "binary")
        )
    {
        write_head(head, needs, head_changes, None, out)?;
        return convert_entity(body, needs, depth + 1, signed, false, out);
    }
    if !needs.body_changes(body) {
        write_head(head, needs, head_changes, None, out)?;
        out.put(body);
        return Ok(());
    }
    // A leaf to re-encode.
    let raw = match kind.encoding.as_deref() {
        Some("base64") => base64_decode_lenient(body),
        Some("quoted-printable") => {
            quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
                .unwrap_or_else(|_| body.to_vec())
        }
        _ => body.to_vec(),
    };
    let text = kind.ctype == "text";
    let (encoding, encoded) = if text {
        // Text's line breaks are CRLF (RFC 2046 §4.1.1): a bare LF or a
        // lone CR (a message with LF line ends, as sendmail's callers write
        // them, or text decoded from base64) becomes a hard line break, as
        // the wire makes it in a part that is not re-encoded, never `=0A`.
        ("quoted-printable", qp_encode(&crlf_line_breaks(&raw)))
    } else {
        ("base64", base64_lines(&raw))
    };
    let content_type = (!kind.typed && top).then(|| {
        if std::str::from_utf8(&raw).is_ok() {
            "text/plain; charset=utf-8"
        } else {
            // RFC 1428: 8-bit text in an unknown character set.
            "text/plain; charset=unknown-8bit"
        }
    });
    write_head(
        head,
        needs,
        head_changes,
        Some((encoding, content_type)),
        out,
    )?;
    out.put(&encoded);
    Ok(())
}

/// The parts of a multipart body converted one by one; the delimiter lines,
/// preamble and epilogue copied (their 8-bit bytes and long lines made
/// safe: readers ignore them).
fn convert_multipart(
    body: &[u8],
    boundary: &str,
    needs: &Needs,
    depth: usize,
    signed: Option<&str>,
    digest: bool,
    out: &mut dyn Out,
) -> Result<()> {
    let delimiter = format!("--{boundary}");
    // Each delimiter line: (start of the line break before it, end of the line).
    let mut delimiters: Vec<(usize, usize, bool)> = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let end = body[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| start + i + 1);
        let line = trim_line_end(&body[start..end]);
        if let Some(rest) = line.strip_prefix(delimiter.as_bytes()) {
            let (close, rest) = match rest.strip_prefix(b"--") {
                Some(rest) => (true, rest),
                None => (false, rest),
            };
            if rest.iter().all(|&b| b == b' ' || b == b'\t') {
                let before = if start >= 2 && &body[start - 2..start] == b"\r\n" {
                    start - 2
                } else if start >= 1 && body[start - 1] == b'\n' {
                    start - 1
                } else {
                    start
                };
                // An empty part: that line break ended the previous delimiter.
                let previous_end = delimiters.last().map_or(0, |d| d.1);
                let before = before.max(previous_end);
                delimiters.push((before, end, close));
                if close {
                    break;
                }
            }
        }
        start = end;
    }
    let Some(&(first, _, _)) = delimiters.first() else {
        // No delimiter: not really multipart; its bytes as a leaf would go.
        if needs.body_changes(body) {
            return Err(refusal(
                "a multipart entity without its boundary lines holds 8-bit data or over-long lines",
            ));
        }
        out.put(body);
        return Ok(());
    };
    safe_filler(&body[..first], needs, out);
    for (i, &(before, line_end, close)) in delimiters.iter().enumerate() {
        out.put(&body[before..line_end]);
        if close {
            safe_filler(&body[line_end..], needs, out);
            return Ok(());
        }
        // An unclosed multipart: the rest is its last part.
        let part_end = delimiters.get(i + 1).map_or(body.len(), |d| d.0);
        convert_entity_in(
            &body[line_end..part_end],
            needs,
            depth + 1,
            signed,
            false,
            digest,
            out,
        )?;
    }
    Ok(())
}

/// Preamble and epilogue: ignored by readers, so 8-bit bytes become `?`
/// and long lines are broken rather than refused.
fn safe_filler(bytes: &[u8], needs: &Needs, out: &mut dyn Out) {
    if !needs.body_changes(bytes) {
        out.put(bytes);
        return;
    }
    let mut column = 0;
    for &b in bytes {
        let b = if needs.body_8bit && !b.is_ascii() {
            b'?'
        } else {
            b
        };
        if b == b'\n' {
            column = 0;
        } else {
            if column >= 76 && b != b'\r' {
                out.put(b"\r\n");
                column = 0;
            }
            column += 1;
        }
        out.put(&[b]);
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The header block, its 8-bit fields encoded when `convert`, and with
/// `encoding` replacing any Content-Transfer-Encoding (and a Content-Type
/// added when the entity had none and gets one).
fn write_head(
    head: &[u8],
    needs: &Needs,
    convert: bool,
    encoding: Option<(&str, Option<&str>)>,
    out: &mut dyn Out,
) -> Result<()> {
    if !convert && encoding.is_none() {
        out.put(head);
        return Ok(());
    }
    let section = HeaderSection::parse(head);
    let mut last = 0;
    for field in &section.fields {
        out.put(&head[last..field.start]);
        last = field.end;
        let bytes = &head[field.start..field.end];
        if encoding.is_some() && field.is("Content-Transfer-Encoding") {
            continue;
        }
        if convert && needs.header_8bit && !bytes.is_ascii() {
            encode_field(&field.name, bytes, out)?;
        } else {
            out.put(bytes);
        }
    }
    // Where the fields end: before the blank line, if there is one.
    let end_of_fields = section.fields.last().map_or(0, |f| f.end);
    out.put(&head[last..end_of_fields]);
    if let Some((encoding, content_type)) = encoding {
        if let Some(ct) = content_type
            && !section.has("Content-Type")
        {
            out.put(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        out.put(format!("Content-Transfer-Encoding: {encoding}\r\n").as_bytes());
    }
    let rest = &head[end_of_fields..];
    if rest.is_empty() {
        // An entity without a blank line: its body starts here.
        out.put(b"\r\n");
    } else {
        out.put(rest);
    }
    Ok(())
}

const ADDRESS_FIELDS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Bcc",
    "Reply-To",
    "Sender",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "Resent-Bcc",
    "Resent-Sender",
];

/// Fields whose 8-bit bytes cannot be encoded-words (identifiers, trace,
/// signatures): such bytes become `?`.
const OPAQUE_FIELDS: &[&str] = &[
    "Message-ID",
    "In-Reply-To",
    "References",
    "Received",
    "Return-Path",
    "Date",
    "DKIM-Signature",
    "Content-ID",
];

/// One header field (`Name: value`, possibly folded, with its CRLF) with
/// its 8-bit text made ASCII.
fn encode_field(name: &str, field: &[u8], out: &mut dyn Out) -> Result<()> {
    let value = unfolded_value(field);
    let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(name));
    let mut line = format!("{name}:");
    // A long field name: the value starts on a continuation line, so that
    // no line of the field exceeds 998 octets.
    let used = if name.len() > 60 {
        line.push_str("\r\n ");
        1
    } else {
        line.push(' ');
        name.len() + 2
    };
    if is(ADDRESS_FIELDS) {
        let mut first = true;
        for item in super::split_addresses(&value) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            if !first {
                line.push_str(",\r\n ");
            }
            first = false;
            line.push_str(&encode_mailbox(name, item)?);
        }
    } else if is(OPAQUE_FIELDS) {
        line.extend(value.chars().map(|c| if c.is_ascii() { c } else { '?' }));
    } else if name.to_ascii_lowercase().starts_with("content-") {
        line.push_str(&encode_parameters(&value));
    } else {
        line.push_str(&encoded_words(&value, used));
    }
    line.push_str("\r\n");
    out.put(line.as_bytes());
    Ok(())
}

/// A header field's value, unfolded, without its name and line end.
fn unfolded_value(field: &[u8]) -> String {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let value = String::from_utf8_lossy(&field[(colon + 1).min(field.len())..]);
    value
        .replace("\r\n", "")
        .replace('\n', "")
        .trim()
        .to_owned()
}

/// `Name <address>` as its display name (if any) and address.
fn split_mailbox(item: &str) -> (Option<&str>, &str) {
    match (item.rfind('<'), item.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            (Some(item[..open].trim()), item[open + 1..close].trim())
        }
        _ => (None, item),
    }
}

/// `Name <local@domain>` or `local@domain` with a non-ASCII display name
/// as encoded-words and a non-ASCII domain as A-labels.
fn encode_mailbox(field: &str, item: &str) -> Result<String> {
    if item.is_ascii() {
        return Ok(item.to_owned());
    }
    let (phrase, address) = split_mailbox(item);
    let address = ascii_address(field, address)?;
    Ok(match phrase {
        Some(phrase) if !phrase.is_empty() => {
            let phrase = phrase
                .strip_prefix('"')
                .and_then(|p| p.strip_suffix('"'))
                .unwrap_or(phrase);
            let phrase = if phrase.is_ascii() {
                format!("\"{phrase}\"")
            } else {
                encoded_words(phrase, field.len() + 2)
            };
            format!("{phrase} <{address}>")
        }
        Some(_) => format!("<{address}>"),
        None => address,
    })
}

fn ascii_address(field: &str, address: &str) -> Result<String> {
    if address.is_ascii() {
        return Ok(address.to_owned());
    }
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    if !local.is_ascii() {
        return Err(Error::invalid_message(
            field,
            format!(
                "`{}` has a non-ASCII local part in the {field} field, which needs SMTPUTF8, and the server does not offer it; nothing was sent",
                crate::smtp::escape_controls(address, 200)
            ),
        ));
    }
    let domain = idna::domain_to_ascii(domain).map_err(|_| {
        Error::invalid_message(
            field,
            format!(
                "`{}` in the {field} field has a domain that is not a valid international domain name",
                crate::smtp::escape_controls(address, 200)
            ),
        )
    })?;
    Ok(format!("{local}@{domain}"))
}

/// Content-* fields: each parameter value with 8-bit text becomes
/// encoded-words in quotes, as mail clients write file names.
fn encode_parameters(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for (i, piece) in value.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        if piece.is_ascii() {
            out.push_str(piece);
            continue;
        }
        match piece.split_once('=') {
            Some((name, v)) => {
                let v = v.trim().trim_matches('"');
                out.push_str(name);
                out.push_str("=\"");
                out.push_str(&encoded_words(v, 0).replace("\r\n ", " "));
                out.push('"');
            }
            None => out.extend(piece.chars().map(|c| if c.is_ascii() { c } else { '?' })),
        }
    }
    out
}

/// `text` as RFC 2047 encoded-words (UTF-8, base64), folded so that no
/// line exceeds 78 characters; `used` is how much of the first line the
/// field name already takes.
fn encoded_words(text: &str, used: usize) -> String {
    let mut out = String::new();
    {
        let mut writer =
            email_encoding::headers::writer::EmailWriter::new(&mut out, used, 0, false);
        // Writing to a String cannot fail.
        let _ = email_encoding::headers::rfc2047::encode(text, &mut writer);
    }
    out
}

/// `text` with every bare LF and lone CR made CRLF; borrowed when it has
/// none.
fn crlf_line_breaks(text: &[u8]) -> Cow<'_, [u8]> {
    let bare = |i: usize, b: u8| {
        (b == b'\n' && (i == 0 || text[i - 1] != b'\r'))
            || (b == b'\r' && text.get(i + 1) != Some(&b'\n'))
    };
    if !text.iter().enumerate().any(|(i, &b)| bare(i, b)) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len() + text.len() / 32 + 2);
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\r' if text.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// Quoted-printable with CRLF kept as line breaks, lines of at most 76.
/// No line break is added at the end: in a multipart the one before the
/// delimiter is the delimiter's, and an added one would change the text.
fn qp_encode(raw: &[u8]) -> Vec<u8> {
    quoted_printable::encode(raw)
}

/// Base64 in lines of 76.
fn base64_lines(raw: &[u8]) -> Vec<u8> {
    let text = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut out = Vec::with_capacity(text.len() + text.len() / 38 + 2);
    for chunk in text.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Base64 as readers take it: whitespace and stray bytes skipped.
fn base64_decode_lenient(body: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
        .collect();
    // A lone trailing character cannot be decoded; it is dropped.
    let usable = clean.len() - usize::from(clean.len() % 4 == 1);
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&clean[..usable])
        .unwrap_or_else(|_| body.to_vec())
}

fn refusal(reason: &str) -> Error {
    Error::invalid_message("message", format!("{reason}; nothing was sent"))
}

#[cfg(test)]
mod tests;
