//! Messages mailgate composes from parts: valid on the wire whatever they
//! hold, built in time linear in their size.

use lettre::Message;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0,
};
use lettre::message::{Attachment as LettreAttachment, Body, Mailbox, MultiPart, SinglePart};

use super::address::{ascii_domain, parse_mailbox, shown, split_addresses};
use super::raw::{MAX_LINE, SOFT_LINE, fold_header_lines, message_id};
use crate::error::{Error, Result};

/// Longest subject accepted, in bytes.
pub const MAX_SUBJECT: usize = 16 * 1024;

/// Headers set by mailgate itself, never through [`OutgoingMessage::headers`].
const RESERVED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Bcc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Sender",
];

/// A file attached to a message.
#[derive(Clone)]
pub struct Attachment {
    /// The name the recipient sees.
    pub filename: String,
    /// Its MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// Its bytes, sent as they are (base64 on the wire).
    pub content: Vec<u8>,
}

/// A message described by its parts; [`OutgoingMessage::build`] validates
/// them and builds the message.
///
/// Every message built carries Date, Message-ID (`<random@domain>`, the
/// domain of the sender or [`OutgoingMessage::message_id_domain`]) and
/// MIME-Version; its header lines are folded at 78 octets where they have
/// whitespace (address lists between addresses; a long subject becomes
/// several encoded-words) and never exceed 998; its text arrives as given,
/// with CRLF line ends (LF and lone CR become CRLF, in one pass). A
/// single-part text that does not end in a line break gains one (SMTP data
/// ends with a line end); one that does gains nothing; an empty text stays
/// empty.
#[derive(Clone, Debug, Default)]
pub struct OutgoingMessage {
    /// Sender; `None` uses the default sender given to `build`.
    pub from: Option<String>,
    /// Recipients; each entry may be a comma-separated list.
    pub to: Vec<String>,
    /// Carbon copies.
    pub cc: Vec<String>,
    /// Blind carbon copies (envelope only).
    pub bcc: Vec<String>,
    /// Reply-To addresses.
    pub reply_to: Vec<String>,
    /// Subject (one line).
    pub subject: String,
    /// Body text (HTML when `html` is set).
    pub body: String,
    /// The body is HTML.
    pub html: bool,
    /// An HTML version of a text body: the message becomes
    /// multipart/alternative (text first).
    pub html_alternative: Option<String>,
    /// Extra header fields (`X-Build: 42`); the ones mailgate sets itself
    /// (From, To, Subject, Content-Type, ...) are refused.
    pub headers: Vec<(String, String)>,
    /// Files attached (multipart/mixed).
    pub attachments: Vec<Attachment>,
    /// Domain of the Message-ID; default: the sender's.
    pub message_id_domain: Option<String>,
}

impl OutgoingMessage {
    /// Validates and builds the message, every part encoded so that any
    /// server takes it (7bit, quoted-printable or base64).
    ///
    /// CR or LF in a header field, a control or invisible character in an
    /// address, a bad address or no recipient is [`Error::InvalidMessage`]
    /// (exit 65); no sender at all is [`Error::Usage`].
    pub fn build(&self, default_from: Option<&Mailbox>) -> Result<Message> {
        self.build_with(default_from, false)
    }

    /// [`OutgoingMessage::build`], with text sent as 8-bit (RFC 6152) when
    /// `eight_bit` and it has no line over 998 octets and no NUL: for a
    /// server that offers 8BITMIME.
    pub fn build_with(&self, default_from: Option<&Mailbox>, eight_bit: bool) -> Result<Message> {
        self.build_inner(
            self.body.clone(),
            self.html_alternative.clone(),
            default_from,
            eight_bit,
        )
    }

    /// The envelope (sender and recipients), with every header checked, without
    /// building the body: cheap whatever the body's size.
    pub fn envelope(&self, default_from: Option<&Mailbox>) -> Result<lettre::address::Envelope> {
        let light = OutgoingMessage {
            from: self.from.clone(),
            to: self.to.clone(),
            cc: self.cc.clone(),
            bcc: self.bcc.clone(),
            reply_to: self.reply_to.clone(),
            subject: self.subject.clone(),
            headers: self.headers.clone(),
            message_id_domain: self.message_id_domain.clone(),
            ..OutgoingMessage::default()
        };
        for a in &self.attachments {
            attachment_part(&a.clone_without_content())?;
        }
        Ok(light
            .build_inner(String::new(), None, default_from, false)?
            .envelope()
            .clone())
    }

    /// The message as it goes on the wire, taking the text by value so that
    /// a large body is not copied: [`OutgoingMessage::build_with`],
    /// formatted, header lines folded at 78 octets where they have
    /// whitespace.
    pub fn into_wire(mut self, default_from: Option<&Mailbox>, eight_bit: bool) -> Result<Vec<u8>> {
        let body = std::mem::take(&mut self.body);
        let html = self.html_alternative.take();
        let message = self.build_inner(body, html, default_from, eight_bit)?;
        let formatted = message.formatted();
        drop(message);
        fold_header_lines(formatted, Some(SOFT_LINE))
    }

    fn build_inner(
        &self,
        body: String,
        html_alternative: Option<String>,
        default_from: Option<&Mailbox>,
        eight_bit: bool,
    ) -> Result<Message> {
        let from = match &self.from {
            Some(from) => parse_mailbox("from", from)?,
            None => default_from
                .map(|m| {
                    Ok::<_, Error>(Mailbox::new(
                        m.name.clone(),
                        ascii_domain("from", &m.email)?,
                    ))
                })
                .transpose()?
                .ok_or_else(|| {
                    Error::Usage(
                        "no sender: give one, or set mksis.logging.email.from in is.properties"
                            .into(),
                    )
                })?,
        };
        let mut builder = Message::builder().from(from.clone());
        builder = builder.raw_header(subject_header(&self.subject)?);
        let mut recipients = 0;
        for (field, list) in [("to", &self.to), ("cc", &self.cc), ("bcc", &self.bcc)] {
            for mbox in mailboxes(field, list)? {
                recipients += 1;
                builder = match field {
                    "to" => builder.to(mbox),
                    "cc" => builder.cc(mbox),
                    _ => builder.bcc(mbox),
                };
            }
        }
        if recipients == 0 {
            return Err(Error::invalid_message("to", "no recipient given"));
        }
        for mbox in mailboxes("reply-to", &self.reply_to)? {
            builder = builder.reply_to(mbox);
        }
        for (name, value) in &self.headers {
            builder = builder.raw_header(custom_header(name, value)?);
        }
        let domain = self
            .message_id_domain
            .clone()
            .unwrap_or_else(|| from.email.domain().to_owned());
        builder = builder.message_id(Some(message_id(&domain)));

        let has_alternative = html_alternative.is_some();
        let text = normalize_crlf(body);
        let main = if let Some(html) = html_alternative {
            let html = normalize_crlf(html);
            MultiPart::alternative()
                .singlepart(text_part(ContentType::TEXT_PLAIN, text, eight_bit))
                .singlepart(text_part(ContentType::TEXT_HTML, html, eight_bit))
        } else {
            let kind = if self.html {
                ContentType::TEXT_HTML
            } else {
                ContentType::TEXT_PLAIN
            };
            if self.attachments.is_empty() && text.is_empty() {
                // lettre ends a single part with CRLF: after an empty text
                // that is a blank line, so an empty body goes as a raw one.
                return builder
                    .header(MIME_VERSION_1_0)
                    .header(kind)
                    .header(ContentTransferEncoding::SevenBit)
                    .body(Vec::new())
                    .map_err(|e| Error::invalid_message("message", e.to_string()));
            }
            if self.attachments.is_empty() {
                return builder
                    .singlepart(top_level_text_part(kind, text, eight_bit))
                    .map_err(|e| Error::invalid_message("message", e.to_string()));
            }
            MultiPart::mixed().singlepart(text_part(kind, text, eight_bit))
        };
        let body = if self.attachments.is_empty() {
            main
        } else {
            let mut mixed = if has_alternative {
                MultiPart::mixed().multipart(main)
            } else {
                main
            };
            for a in &self.attachments {
                mixed = mixed.singlepart(attachment_part(a)?);
            }
            mixed
        };
        builder
            .multipart(body)
            .map_err(|e| Error::invalid_message("message", e.to_string()))
    }

    /// [`OutgoingMessage::into_wire`] of a copy.
    pub fn to_wire(&self, default_from: Option<&Mailbox>, eight_bit: bool) -> Result<Vec<u8>> {
        self.clone().into_wire(default_from, eight_bit)
    }
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("bytes", &self.content.len())
            .finish()
    }
}

impl Attachment {
    fn clone_without_content(&self) -> Attachment {
        Attachment {
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
            content: Vec::new(),
        }
    }
}

fn mailboxes(field: &str, lists: &[String]) -> Result<Vec<Mailbox>> {
    let mut out = Vec::new();
    for list in lists {
        for addr in split_addresses(list)
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            out.push(parse_mailbox(field, addr)?);
        }
    }
    Ok(out)
}

fn reject_line_breaks(field: &str, value: &str) -> Result<()> {
    if value.contains(['\r', '\n']) {
        return Err(Error::invalid_message(
            field,
            "it contains a line break (CR or LF), which could inject headers; nothing was sent",
        ));
    }
    Ok(())
}

/// The Subject field: lettre's encoding (it folds at spaces and writes
/// non-ASCII as encoded-words), except for ASCII with a word too long to
/// fold, which becomes several encoded-words (RFC 2047) that can be.
fn subject_header(subject: &str) -> Result<HeaderValue> {
    reject_line_breaks("subject", subject)?;
    if subject.len() > MAX_SUBJECT {
        return Err(Error::invalid_message(
            "subject",
            format!(
                "it is {} bytes long; a subject may have at most {MAX_SUBJECT}",
                subject.len()
            ),
        ));
    }
    let name = HeaderName::new_from_ascii_str("Subject");
    let long_word = subject.split(' ').any(|w| w.len() > 60);
    if subject.is_ascii() && long_word {
        Ok(HeaderValue::dangerous_new_pre_encoded(
            name,
            subject.to_owned(),
            encoded_words(subject),
        ))
    } else {
        Ok(HeaderValue::new(name, subject.to_owned()))
    }
}

/// `=?utf-8?b?...?=` words of at most 75 characters, separated by folding
/// whitespace, never splitting a character.
fn encoded_words(text: &str) -> String {
    use base64::Engine as _;
    // 42 bytes -> 56 base64 characters, + 12 for `=?utf-8?b?` and `?=`:
    // 77 octets on the first line with `Subject: `, at most 69 after.
    const CHUNK: usize = 42;
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + CHUNK).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        words.push(format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(&text[start..end])
        ));
        start = end;
    }
    words.join("\r\n ")
}

fn custom_header(name: &str, value: &str) -> Result<HeaderValue> {
    let field = format!("header `{}`", shown(name));
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(Error::invalid_message(
            &field,
            "a header name is printable ASCII without spaces or colons (e.g. X-Build)",
        ));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(Error::invalid_message(
            &field,
            "mailgate sets this header itself from the message's own fields (from, to, cc, reply-to, subject, attachments, ...); set it through them instead",
        ));
    }
    reject_line_breaks(&field, value)?;
    if value.len() > MAX_SUBJECT {
        return Err(Error::invalid_message(&field, "the value is too long"));
    }
    let name = HeaderName::new_from_ascii(name.to_owned())
        .map_err(|e| Error::invalid_message(&field, e.to_string()))?;
    Ok(HeaderValue::new(name, value.trim().to_owned()))
}

/// A text part: 8-bit when asked and possible, else lettre's choice of
/// 7bit, quoted-printable or base64.
fn text_part(kind: ContentType, text: String, eight_bit: bool) -> SinglePart {
    SinglePart::builder()
        .header(kind)
        .body(text_body(text, eight_bit))
}

/// The encoded text (`text` has CRLF line ends already). 8-bit when asked
/// and every line fits in [`MAX_LINE`] octets, as RFC 6152 allows: lettre's
/// own check refuses 8bit from 76 octets on, which would send an ordinary
/// paragraph base64. A NUL is never sent as it is (RFC 5322 text and RFC
/// 2045 7bit/8bit data hold none, and lettre would send it so):
/// quoted-printable writes it `=00`.
fn text_body(text: String, eight_bit: bool) -> Body {
    if text.contains('\0') {
        return Body::new_with_encoding(text, ContentTransferEncoding::QuotedPrintable)
            .unwrap_or_else(Body::new);
    }
    if eight_bit && !text.is_ascii() && text.split("\r\n").all(|l| l.len() <= MAX_LINE) {
        return Body::dangerous_pre_encoded(text.into_bytes(), ContentTransferEncoding::EightBit);
    }
    Body::new(text)
}

/// A text part that is the whole message. lettre ends a single part with
/// CRLF (in a multipart that CRLF belongs to the boundary); so that a text
/// ending in a line break gains no blank line, the encoded body's own last
/// CRLF is dropped where the encoding is line-based (7bit, 8bit, a
/// quoted-printable hard break). Base64 ignores line breaks: kept.
fn top_level_text_part(kind: ContentType, text: String, eight_bit: bool) -> SinglePart {
    let body = text_body(text, eight_bit);
    let encoding = body.encoding();
    let mut body = body.into_vec();
    let line_based = !matches!(encoding, ContentTransferEncoding::Base64);
    if line_based && body.ends_with(b"\r\n") && !body.ends_with(b"=\r\n") {
        body.truncate(body.len() - 2);
    }
    SinglePart::builder()
        .header(kind)
        .body(Body::dangerous_pre_encoded(body, encoding))
}

fn attachment_part(a: &Attachment) -> Result<SinglePart> {
    let field = format!("attachment `{}`", shown(&a.filename));
    reject_line_breaks(&field, &a.filename)?;
    let content_type = ContentType::parse(&a.content_type).map_err(|e| {
        Error::invalid_message(
            &field,
            format!("bad content type `{}`: {e}", shown(&a.content_type)),
        )
    })?;
    // Base64 whatever the bytes: lettre would send ASCII bytes as 7bit,
    // and their bare LF or CR would become CRLF on the wire.
    let body = Body::new_with_encoding(a.content.clone(), ContentTransferEncoding::Base64)
        .unwrap_or_else(Body::new);
    Ok(LettreAttachment::new(a.filename.clone()).body(body, content_type))
}

/// `text` with every LF and lone CR turned into CRLF, in one pass (lettre
/// would insert each CR with `String::insert`: quadratic on LF text). A
/// text that already has only CRLF is returned as it is, without copying.
pub fn normalize_crlf(text: String) -> String {
    let bytes = text.as_bytes();
    let already = !bytes.iter().enumerate().any(|(i, &b)| {
        (b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
            || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
    });
    if already {
        return text;
    }
    let mut out = String::with_capacity(text.len() + text.len() / 32 + 2);
    let mut rest = text.as_str();
    while let Some(i) = rest.find(['\r', '\n']) {
        out.push_str(&rest[..i]);
        out.push_str("\r\n");
        rest = if rest[i..].starts_with("\r\n") {
            &rest[i + 2..]
        } else {
            &rest[i + 1..]
        };
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(to: &[&str], subject: &str) -> OutgoingMessage {
        OutgoingMessage {
            from: Some("alm@example.com".into()),
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            subject: subject.into(),
            body: "hello".into(),
            ..OutgoingMessage::default()
        }
    }

    fn wire(m: &OutgoingMessage) -> String {
        String::from_utf8(m.to_wire(None, false).unwrap()).unwrap()
    }

    #[test]
    fn header_injection_in_subject_is_rejected() {
        let err = msg(&["a@example.com"], "hi\r\nBcc: victim@example.com")
            .build(None)
            .unwrap_err();
        assert_eq!(err.exit_code(), 65);
        assert!(err.to_string().contains("subject"), "{err}");
    }

    #[test]
    fn header_injection_in_address_is_rejected() {
        let err = msg(&["a@example.com\nBcc: x@example.com"], "s")
            .build(None)
            .unwrap_err();
        assert_eq!(err.exit_code(), 65);
        assert!(err.to_string().contains("invalid to"), "{err}");
    }

    #[test]
    fn comma_separated_recipients_and_quoted_names() {
        let m = msg(
            &[
                "a@example.com, b@example.com",
                "\"Doe, John\" <j@example.com>",
            ],
            "s",
        )
        .build(None)
        .unwrap();
        let to: Vec<String> = m.envelope().to().iter().map(ToString::to_string).collect();
        assert_eq!(to, ["a@example.com", "b@example.com", "j@example.com"]);
    }

    #[test]
    fn no_recipient_and_default_sender() {
        assert_eq!(msg(&[" , "], "s").build(None).unwrap_err().exit_code(), 65);
        let mut m = msg(&["a@example.com"], "s");
        m.from = None;
        assert_eq!(m.build(None).unwrap_err().exit_code(), 64);
        let from: Mailbox = "alm@example.com".parse().unwrap();
        let built = m.build(Some(&from)).unwrap();
        assert_eq!(
            built.envelope().from().unwrap().to_string(),
            "alm@example.com"
        );
    }

    #[test]
    fn every_message_has_date_message_id_and_mime_version() {
        let text = wire(&msg(&["a@example.com"], "s"));
        let head = text.split("\r\n\r\n").next().unwrap();
        assert!(
            head.contains("\r\nDate: ") || head.starts_with("Date: "),
            "{head}"
        );
        assert!(head.contains("MIME-Version: 1.0"), "{head}");
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .expect("Message-ID");
        assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
        let mut m = msg(&["a@example.com"], "s");
        m.message_id_domain = Some("mail.example.org".into());
        assert!(wire(&m).contains("@mail.example.org>"));
    }

    #[test]
    fn headers_are_folded_at_78_and_never_over_998() {
        let many: Vec<String> = (0..55).map(|i| format!("user{i}@example.com")).collect();
        let mut m = msg(&[&many.join(", ")], &"x".repeat(2000));
        m.cc = vec![
            (0..40)
                .map(|i| format!("\"Name, {i}\" <c{i}@example.com>"))
                .collect::<Vec<_>>()
                .join(", "),
        ];
        let text = wire(&m);
        let head = text.split("\r\n\r\n").next().unwrap();
        for line in head.split("\r\n") {
            assert!(line.len() <= 78, "{} octets: {line}", line.len());
        }
        let parsed = mail_parser::MessageParser::new()
            .parse(text.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject(), Some("x".repeat(2000).as_str()));
        assert_eq!(parsed.to().unwrap().iter().count(), 55);
        assert_eq!(parsed.cc().unwrap().iter().count(), 40);
    }

    #[test]
    fn unicode_subject_and_names_round_trip() {
        let mut m = msg(
            &["Zoë Ünïcode <z@bücher.example>"],
            "Über 日本語 🎉 ".repeat(20).trim(),
        );
        m.from = Some("Ålm Sërver <alm@example.com>".into());
        let text = wire(&m);
        assert!(text.is_ascii(), "headers are ASCII");
        let parsed = mail_parser::MessageParser::new()
            .parse(text.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject(), Some("Über 日本語 🎉 ".repeat(20).trim()));
        let to = parsed.to().unwrap().first().unwrap();
        assert_eq!(to.name(), Some("Zoë Ünïcode"));
        assert_eq!(to.address(), Some("z@xn--bcher-kva.example"));
    }

    #[test]
    fn custom_headers_are_checked() {
        let mut m = msg(&["a@example.com"], "s");
        m.headers = vec![("X-Build".into(), "42".into())];
        assert!(wire(&m).contains("X-Build: 42\r\n"));
        for (name, value) in [
            ("X Bad", "v"),
            ("Subject", "v"),
            ("X-A", "a\r\nBcc: x@y"),
            ("", "v"),
        ] {
            let mut m = msg(&["a@example.com"], "s");
            m.headers = vec![(name.into(), value.into())];
            assert_eq!(m.build(None).unwrap_err().exit_code(), 65, "{name:?}");
        }
    }

    #[test]
    fn eight_bit_when_asked_else_encoded() {
        let mut m = msg(&["a@example.com"], "s");
        m.body = "Grüße, 日本\n".into();
        let seven = wire(&m);
        assert!(seven.is_ascii());
        let eight = String::from_utf8(m.to_wire(None, true).unwrap()).unwrap();
        assert!(eight.contains("Content-Transfer-Encoding: 8bit"), "{eight}");
        assert!(eight.ends_with("Grüße, 日本\r\n"), "{eight:?}");
    }

    #[test]
    fn eight_bit_up_to_998_octets_a_line() {
        let paragraph = format!("{}\n", "Bücher über Äpfel. ".repeat(40));
        let mut m = msg(&["a@example.com"], "s");
        m.body = paragraph.clone();
        let eight = String::from_utf8(m.to_wire(None, true).unwrap()).unwrap();
        assert!(eight.contains("Content-Transfer-Encoding: 8bit"), "{eight}");
        assert!(
            eight.ends_with(&paragraph.replace('\n', "\r\n")),
            "{eight:?}"
        );
        // Over 998 octets: encoded, with short lines.
        m.body = "ü".repeat(500);
        let long = m.to_wire(None, true).unwrap();
        assert!(long.is_ascii());
        assert!(long.split(|&b| b == b'\n').all(|l| l.len() <= 999));
    }

    #[test]
    fn a_nul_is_never_sent_as_it_is() {
        for (body, eight_bit) in [("a\0b\n", false), ("a\0b\n", true), ("ü\0\n", true)] {
            let mut m = msg(&["a@example.com"], "s");
            m.body = body.into();
            let wire = m.to_wire(None, eight_bit).unwrap();
            assert!(
                !wire.contains(&0),
                "{body:?}: {:?}",
                String::from_utf8_lossy(&wire)
            );
            let parsed = mail_parser::MessageParser::new().parse(&wire).unwrap();
            let text = parsed.text_part(0).unwrap().contents();
            assert_eq!(text, body.replace('\n', "\r\n").as_bytes(), "{body:?}");
        }
    }

    #[test]
    fn attachments_are_base64_whatever_their_bytes() {
        let mut m = msg(&["a@example.com"], "s");
        let texty = b"one\ntwo\rthree\0".to_vec();
        m.attachments = vec![Attachment {
            filename: "t.txt".into(),
            content_type: "text/plain".into(),
            content: texty.clone(),
        }];
        let wire = m.to_wire(None, false).unwrap();
        let parsed = mail_parser::MessageParser::new().parse(&wire).unwrap();
        let part = parsed.attachment(0).unwrap();
        assert_eq!(
            mail_parser::MimeHeaders::content_transfer_encoding(part),
            Some("base64")
        );
        assert_eq!(part.contents(), texty);
    }

    #[test]
    fn an_empty_text_is_an_empty_body() {
        for html in [false, true] {
            let mut m = msg(&["a@example.com"], "s");
            m.body = String::new();
            m.html = html;
            let text = wire(&m);
            assert!(text.ends_with("\r\n\r\n"), "{text:?}");
            assert!(!text.ends_with("\r\n\r\n\r\n"), "a blank line: {text:?}");
            let head = text.split("\r\n\r\n").next().unwrap();
            assert_eq!(head.matches("MIME-Version: 1.0").count(), 1, "{head}");
            let kind = if html { "text/html" } else { "text/plain" };
            assert!(head.contains(&format!("Content-Type: {kind}")), "{head}");
            assert!(head.contains("Content-Transfer-Encoding: 7bit"), "{head}");
            let parsed = mail_parser::MessageParser::new()
                .parse(text.as_bytes())
                .unwrap();
            assert_eq!(parsed.subject(), Some("s"));
        }
        // One line break is a body of one empty line, as before.
        let mut m = msg(&["a@example.com"], "s");
        m.body = "\n".into();
        assert!(wire(&m).ends_with("\r\n\r\n\r\n"));
    }

    #[test]
    fn normalize_crlf_in_one_pass() {
        let n = |s: &str| normalize_crlf(s.to_owned());
        assert_eq!(n("a\nb\r\nc\rd\r"), "a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(n("\n\n"), "\r\n\r\n");
        assert_eq!(n("x\r\n"), "x\r\n");
        assert_eq!(n(""), "");
    }
}
