//! Message fidelity: what mailgate sends is what arrives.
//!
//! Messages go through the library API (`send_message`, `sendmail`,
//! `send_raw`, `send`) to two real third-party servers, Nodemailer's
//! `smtp-server` and Python's `aiosmtpd`, which record the DATA bytes exactly
//! as received (after their dot-unstuffing). A real MIME parser
//! (`mail-parser`) reads them, and each case compares what arrived with what
//! was sent:
//!
//! - the decoded text byte for byte, against the text given with its line
//!   ends made CRLF (LF and lone CR become CRLF: the documented contract);
//! - the wire: CRLF line ends only (no bare LF, no bare CR), no line over 998
//!   octets, no NUL octet in a composed message;
//! - Date, Message-ID, MIME-Version and From present.
//!
//! Both servers offer 8BITMIME and SMTPUTF8 (smtp-server always; aiosmtpd
//! with `decode_data=False` and `enable_SMTPUTF8=True`). mailgate's own dev
//! server offers 8BITMIME but no SMTPUTF8: it stands in for a server without
//! SMTPUTF8 in the IDN case.

#![cfg(feature = "open")]

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use mail_parser::{Message as Parsed, MessageParser, MimeHeaders};
use mailgate::{Attachment, Envelope, Mailer, OutgoingMessage};
use mailgate_devserver::DevSmtpServer;
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerKind, ReceivedMessage, SmtpPeer};

const FROM: &str = "alm@example.com";
const TO: &str = "dev@example.com";
const WAIT: Duration = Duration::from_secs(60);
/// RFC 5322 §2.1.1: no line may be longer, CRLF excluded.
const MAX_LINE: usize = 998;
const IDN: &str = "bücher.example";
const IDN_ACE: &str = "xn--bcher-kva.example";

// ---------------------------------------------------------------------------
// Set-up

fn config(port: u16) -> ConfigDir {
    let port = port.to_string();
    ConfigDir::with_properties(
        &[
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", &port),
            ("mksis.logging.email.from", FROM),
            ("mailgate.smtp.timeoutSeconds", "60"),
        ],
        &[],
    )
}

fn mailer(dir: &ConfigDir) -> Mailer {
    Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .expect("mailer builds")
}

/// A third-party peer (open relay, plain SMTP) and a mailer that sends to it.
struct Target {
    peer: SmtpPeer,
    mailer: Mailer,
    _dir: ConfigDir,
    received: usize,
}

impl Target {
    fn start(kind: PeerKind) -> Target {
        let peer = SmtpPeer::start(kind, PeerConfig::new());
        let dir = config(peer.port());
        Target {
            mailer: mailer(&dir),
            peer,
            _dir: dir,
            received: 0,
        }
    }

    fn kind(&self) -> PeerKind {
        self.peer.kind()
    }

    /// The message the peer accepted for the last send (exactly one per send).
    fn next(&mut self) -> ReceivedMessage {
        self.received += 1;
        let mut messages = self.peer.wait_for_messages(self.received, WAIT);
        assert_eq!(
            messages.len(),
            self.received,
            "{}: one message per send",
            self.kind()
        );
        let message = messages.pop().expect("a message");
        // The peer's lossy text and its exact bytes agree.
        if let Ok(text) = std::str::from_utf8(&message.raw) {
            assert_eq!(
                text,
                message.data,
                "{}: `raw` and `data` differ",
                self.kind()
            );
        }
        message
    }

    async fn send_message(&mut self, message: OutgoingMessage) -> ReceivedMessage {
        self.mailer
            .send_message(message)
            .await
            .unwrap_or_else(|e| panic!("{}: send_message: {e}", self.kind()));
        self.next()
    }

    async fn send_raw(&mut self, envelope: &Envelope, message: &[u8]) -> ReceivedMessage {
        self.mailer
            .send_raw(envelope, message)
            .await
            .unwrap_or_else(|e| panic!("{}: send_raw: {e}", self.kind()));
        self.next()
    }

    async fn send(&mut self, message: &lettre::Message) -> ReceivedMessage {
        self.mailer
            .send(message)
            .await
            .unwrap_or_else(|e| panic!("{}: send: {e}", self.kind()));
        self.next()
    }

    async fn close(self) {
        self.mailer.close().await;
    }
}

fn text_message(body: &str) -> OutgoingMessage {
    OutgoingMessage {
        from: Some(FROM.into()),
        to: vec![TO.into()],
        subject: "fidelity".into(),
        body: body.into(),
        ..OutgoingMessage::default()
    }
}

fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope::new(
        Some(from.parse().expect("from address")),
        to.iter().map(|a| a.parse().expect("to address")).collect(),
    )
    .expect("envelope")
}

// ---------------------------------------------------------------------------
// Checks

/// The text with every line end as CRLF: CRLF stays, LF and lone CR become
/// CRLF (mailgate's documented contract), computed independently.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n")
}

/// What a text that is the whole message (a single part) decodes to: the
/// text with CRLF line ends. SMTP ends the message data with a line end, so
/// a text whose last line has none gains exactly one CRLF there; a text that
/// ends in a line break gains nothing (no blank line), and an empty text
/// stays empty.
fn single_part_text(text: &str) -> String {
    let mut expected = crlf(text);
    if !expected.is_empty() && !expected.ends_with("\r\n") {
        expected.push_str("\r\n");
    }
    expected
}

/// The wire rules every message follows: CRLF only, no line over 998 octets.
/// `raw` is the DATA content after dot-unstuffing, which changes no line end
/// and only shortens lines.
fn assert_wire(kind: impl std::fmt::Display, raw: &[u8]) {
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            assert!(
                i > 0 && raw[i - 1] == b'\r',
                "{kind}: bare LF at byte {i}: {}",
                around(raw, i)
            );
        }
        if b == b'\r' {
            assert_eq!(
                raw.get(i + 1),
                Some(&b'\n'),
                "{kind}: bare CR at byte {i}: {}",
                around(raw, i)
            );
        }
    }
    if !raw.is_empty() {
        assert!(
            raw.ends_with(b"\r\n"),
            "{kind}: the data does not end with CRLF"
        );
    }
    let mut offset = 0;
    for (n, line) in raw.split(|&b| b == b'\n').enumerate() {
        let len = line.strip_suffix(b"\r").unwrap_or(line).len();
        assert!(
            len <= MAX_LINE,
            "{kind}: line {} is {len} octets (max {MAX_LINE}): {}",
            n + 1,
            around(raw, offset)
        );
        offset += line.len() + 1;
    }
}

/// [`assert_wire`], and no NUL octet: RFC 5322 text (and 7bit/8bit MIME
/// data) holds none, so a composed message encodes it.
fn assert_composed_wire(kind: impl std::fmt::Display, raw: &[u8]) {
    assert_wire(&kind, raw);
    if let Some(i) = raw.iter().position(|&b| b == 0) {
        panic!(
            "{kind}: NUL octet on the wire at byte {i}: {}",
            around(raw, i)
        );
    }
}

/// A few bytes around `i`, escaped, for failure messages.
fn around(bytes: &[u8], i: usize) -> String {
    let start = i.saturating_sub(40);
    let end = (i + 40).min(bytes.len());
    format!("{:?}", String::from_utf8_lossy(&bytes[start..end]))
}

/// Parses the message with mail-parser and checks Date, Message-ID,
/// MIME-Version and From.
fn parse<'a>(kind: impl std::fmt::Display, raw: &'a [u8]) -> Parsed<'a> {
    let parsed = MessageParser::default()
        .parse(raw)
        .unwrap_or_else(|| panic!("{kind}: mail-parser cannot read the message"));
    assert!(parsed.date().is_some(), "{kind}: no (valid) Date");
    assert!(parsed.message_id().is_some(), "{kind}: no Message-ID");
    assert!(
        parsed
            .header_raw("MIME-Version")
            .is_some_and(|v| v.trim() == "1.0"),
        "{kind}: no MIME-Version: 1.0"
    );
    assert!(
        parsed.from().and_then(|f| f.first()).is_some(),
        "{kind}: no From"
    );
    parsed
}

/// Checks the wire and parses a message mailgate composed.
fn composed<'a>(kind: impl std::fmt::Display, msg: &'a ReceivedMessage) -> Parsed<'a> {
    assert_composed_wire(&kind, &msg.raw);
    parse(kind, &msg.raw)
}

/// The decoded contents of the first text body.
fn text_body<'a>(kind: impl std::fmt::Display, parsed: &'a Parsed<'_>) -> &'a [u8] {
    parsed
        .text_part(0)
        .unwrap_or_else(|| panic!("{kind}: no text part"))
        .contents()
}

/// Byte equality with a short report (the bodies can be megabytes).
fn assert_bytes(kind: impl std::fmt::Display, what: &str, actual: &[u8], expected: &[u8]) {
    if actual == expected {
        return;
    }
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{kind}: {what} differs: {} bytes arrived, {} expected; first difference at byte {first}\n  arrived:  {}\n  expected: {}",
        actual.len(),
        expected.len(),
        around(actual, first),
        around(expected, first),
    );
}

/// The Content-Transfer-Encoding of the first text part, lower-case.
fn text_encoding(parsed: &Parsed<'_>) -> Option<String> {
    parsed
        .text_part(0)?
        .content_transfer_encoding()
        .map(str::to_ascii_lowercase)
}

fn has_option(msg: &ReceivedMessage, option: &str) -> bool {
    msg.mail_options
        .iter()
        .any(|o| o.eq_ignore_ascii_case(option))
}

/// Sends `body` as a plain-text message to both peers and checks that it
/// decodes to `expected`; returns what arrived, per peer.
async fn text_round_trip(body: &str, expected: &str) -> Vec<ReceivedMessage> {
    let mut out = Vec::new();
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        let msg = t.send_message(text_message(body)).await;
        let parsed = composed(kind, &msg);
        assert_bytes(
            kind,
            "decoded body",
            text_body(kind, &parsed),
            expected.as_bytes(),
        );
        t.close().await;
        out.push(msg);
    }
    out
}

// ---------------------------------------------------------------------------
// Cases. Each runs against both peers unless it says otherwise.

#[tokio::test]
async fn dot_lines_arrive_intact() {
    let body = ".\n..\n.x\n...dots\nmiddle . dot\n. space\n.\n\n.";
    let expected = single_part_text(body);
    for msg in text_round_trip(body, &expected).await {
        // The lone `.` lines came through as content, not as the end of data.
        assert!(
            msg.raw.windows(5).any(|w| w == b"\r\n.\r\n"),
            "lone dot line"
        );
    }
    // A prepared message's dot lines, byte for byte.
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        let prepared = prepared_head("dots").to_owned() + "\r\n.\r\n..\r\n.x\r\n.\r\nend\r\n";
        let msg = t
            .send_raw(&envelope(FROM, &[TO]), prepared.as_bytes())
            .await;
        assert_wire(kind, &msg.raw);
        assert_bytes(kind, "prepared message", &msg.raw, prepared.as_bytes());
        t.close().await;
    }
}

#[tokio::test]
async fn bare_cr_and_lf_become_crlf() {
    let body = "lf\nthen cr\rthen crlf\r\nlf cr\n\rcr cr\r\rend";
    let expected = single_part_text(body);
    assert_eq!(
        expected,
        "lf\r\nthen cr\r\nthen crlf\r\nlf cr\r\n\r\ncr cr\r\n\r\nend\r\n"
    );
    text_round_trip(body, &expected).await;
    // The trigger API's sendmail() takes the same path.
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        t.mailer
            .sendmail(FROM, TO, "sendmail", "a\rb\nc\r\n")
            .await
            .expect("sendmail");
        let msg = t.next();
        let parsed = composed(kind, &msg);
        assert_bytes(
            kind,
            "decoded body",
            text_body(kind, &parsed),
            b"a\r\nb\r\nc\r\n",
        );
        t.close().await;
    }
}

#[tokio::test]
async fn nul_bytes_arrive_encoded_and_decode_intact() {
    // ASCII with a NUL, and 8-bit text with a NUL.
    for body in ["before\0after\nline two\n", "Grüße\0日本\n"] {
        text_round_trip(body, &single_part_text(body)).await;
    }
}

#[tokio::test]
async fn eight_bit_text_goes_as_8bit_with_body_8bitmime() {
    // Short lines, and a realistic paragraph line over 76 octets (but far
    // under 998): 8-bit MIME allows both as they are.
    let body = "Grüße aus Köln, café crème, naïve Zoë\n\
                😀🎉🚀 emoji\n\
                日本語のテキスト、中文文本、한국어 텍스트\n\
                Ein längerer Absatz mit Umlauten: Die Bücher über Äpfel und Öl lagen auf dem Tisch, während draußen der Schnee fiel.\n";
    let expected = single_part_text(body);
    for msg in text_round_trip(body, &expected).await {
        let parsed = parse("8-bit", &msg.raw);
        assert_eq!(
            text_encoding(&parsed).as_deref(),
            Some("8bit"),
            "the text goes as 8bit to a server offering 8BITMIME"
        );
        assert!(
            has_option(&msg, "BODY=8BITMIME"),
            "MAIL FROM carries BODY=8BITMIME: {:?}",
            msg.mail_options
        );
        assert!(
            !has_option(&msg, "SMTPUTF8"),
            "nothing here needs SMTPUTF8: {:?}",
            msg.mail_options
        );
    }
}

#[tokio::test]
async fn a_5000_character_line_arrives_intact_in_short_wire_lines() {
    let ascii: String = (0..5000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let body = format!("first\n{ascii}\nlast\n");
    text_round_trip(&body, &single_part_text(&body)).await;
    // The same for 8-bit text: too long a line for 8bit, so it is encoded.
    let utf8: String = "é日😀".repeat(5000 / 3 + 1).chars().take(5000).collect();
    let body = format!("{utf8}\n");
    for msg in text_round_trip(&body, &single_part_text(&body)).await {
        let parsed = parse("long utf-8", &msg.raw);
        assert_ne!(text_encoding(&parsed).as_deref(), Some("8bit"));
    }
}

#[tokio::test]
async fn empty_body_stays_empty() {
    text_round_trip("", "").await;
}

#[tokio::test]
async fn trailing_line_break_adds_no_blank_line() {
    // A single part: the final CRLF of the data is the text's own.
    text_round_trip("a\n", "a\r\n").await;
    text_round_trip("a\r\n", "a\r\n").await;
    text_round_trip("a\n\n", "a\r\n\r\n").await;
    text_round_trip("\n", "\r\n").await;
    // Without a line break the data still ends with one (SMTP needs it).
    text_round_trip("a", "a\r\n").await;
    // In a multipart the CRLF before a boundary belongs to the boundary
    // (RFC 2046), so there the text arrives exactly as given.
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        for (text, expected) in [("a", "a"), ("a\n", "a\r\n"), ("a\n\n", "a\r\n\r\n")] {
            let mut m = text_message(text);
            m.html_alternative = Some(format!("<p>{text}</p>"));
            let msg = t.send_message(m).await;
            let parsed = composed(kind, &msg);
            assert_bytes(
                kind,
                "text part",
                text_body(kind, &parsed),
                expected.as_bytes(),
            );
        }
        t.close().await;
    }
}

#[tokio::test]
async fn twenty_megabytes_of_text() {
    const SIZE: usize = 20 * 1024 * 1024;
    let mut body = String::with_capacity(SIZE + 80);
    let mut n = 0u64;
    while body.len() < SIZE {
        n += 1;
        body.push_str(&format!(
            "line {n:08} of a twenty megabyte message, plain ASCII text ........\n"
        ));
    }
    let expected = single_part_text(&body);
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        let msg = t.send_message(text_message(&body)).await;
        let parsed = composed(kind, &msg);
        assert_eq!(text_encoding(&parsed).as_deref(), Some("7bit"));
        assert_bytes(
            kind,
            "decoded body",
            text_body(kind, &parsed),
            expected.as_bytes(),
        );
        t.close().await;
    }
}

#[tokio::test]
async fn unicode_subject_and_display_names() {
    let subject = "Über 日本語 🎉 Grüße, naïve café — ".repeat(4);
    let subject = subject.trim();
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        let mut m = text_message("body\n");
        m.from = Some("Ålm Sërver <alm@example.com>".into());
        m.to = vec!["Zoë Ünïcode <z@example.com>, 山田 太郎 <yamada@example.com>".into()];
        m.subject = subject.into();
        let msg = t.send_message(m).await;
        let parsed = composed(kind, &msg);
        assert_eq!(parsed.subject(), Some(subject), "{kind}");
        let from = parsed.from().and_then(|f| f.first()).expect("From");
        assert_eq!(from.name(), Some("Ålm Sërver"), "{kind}");
        assert_eq!(from.address(), Some("alm@example.com"), "{kind}");
        let to: Vec<(Option<&str>, Option<&str>)> = parsed
            .to()
            .expect("To")
            .iter()
            .map(|a| (a.name(), a.address()))
            .collect();
        assert_eq!(
            to,
            [
                (Some("Zoë Ünïcode"), Some("z@example.com")),
                (Some("山田 太郎"), Some("yamada@example.com")),
            ],
            "{kind}"
        );
        assert_eq!(msg.to, ["z@example.com", "yamada@example.com"], "{kind}");
        t.close().await;
    }
}

/// International domains with a server that offers SMTPUTF8 (both peers).
#[tokio::test]
async fn idn_domains_with_smtputf8() {
    let to_u = format!("user@{IDN}");
    let to_a = format!("user@{IDN_ACE}");
    let from_u = format!("alm@{IDN}");
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);

        // Composed: mailgate writes domains as A-labels (headers and
        // envelope), which needs no SMTPUTF8.
        let mut m = text_message("idn\n");
        m.from = Some(format!("Ålm <{from_u}>"));
        m.to = vec![format!("Jöhn <{to_u}>")];
        let msg = t.send_message(m).await;
        let parsed = composed(kind, &msg);
        let to = parsed.to().and_then(|a| a.first()).expect("To");
        assert_eq!(to.address(), Some(to_a.as_str()), "{kind}");
        assert_eq!(to.name(), Some("Jöhn"), "{kind}");
        assert!(
            !has_option(&msg, "SMTPUTF8"),
            "{kind}: {:?}",
            msg.mail_options
        );
        match kind {
            // aiosmtpd records the path as sent.
            PeerKind::Python => {
                assert_eq!(msg.to, [to_a.as_str()]);
                assert_eq!(msg.from, format!("alm@{IDN_ACE}"));
            }
            // smtp-server turns every domain into a U-label when it records it.
            PeerKind::Node => assert_eq!(msg.to, [to_u.as_str()]),
        }

        // Prepared, with a U-label envelope and UTF-8 headers (RFC 6532):
        // the envelope goes as it is, with SMTPUTF8.
        let prepared =
            format!("From: Ålm <{from_u}>\r\nTo: Jöhn <{to_u}>\r\nSubject: idn\r\n\r\nGrüße\r\n");
        let msg = t
            .send_raw(&envelope(&from_u, &[&to_u]), prepared.as_bytes())
            .await;
        assert_wire(kind, &msg.raw);
        assert!(
            has_option(&msg, "SMTPUTF8"),
            "{kind}: {:?}",
            msg.mail_options
        );
        assert!(
            has_option(&msg, "BODY=8BITMIME"),
            "{kind}: {:?}",
            msg.mail_options
        );
        assert_eq!(msg.to, [to_u.as_str()], "{kind}");
        assert_eq!(msg.from, from_u, "{kind}");
        assert!(
            msg.raw.ends_with(prepared.as_bytes()),
            "{kind}: prepared message changed"
        );
        let parsed = parse(kind, &msg.raw);
        assert_eq!(
            parsed
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some(to_u.as_str())
        );

        // A lettre message with a U-label address, through send().
        let message = lettre::Message::builder()
            .from(FROM.parse().unwrap())
            .to(Mailbox::new(Some("Jöhn".into()), to_u.parse().unwrap()))
            .subject("idn via send")
            .body(String::from("idn\n"))
            .unwrap();
        let msg = t.send(&message).await;
        assert_wire(kind, &msg.raw);
        parse(kind, &msg.raw);
        assert!(
            has_option(&msg, "SMTPUTF8"),
            "{kind}: {:?}",
            msg.mail_options
        );
        assert_eq!(msg.to, [to_u.as_str()], "{kind}");
        t.close().await;
    }
}

/// International domains with a server that does not offer SMTPUTF8:
/// mailgate's dev server (it offers 8BITMIME but not SMTPUTF8). The envelope
/// must carry A-labels and no SMTPUTF8.
#[tokio::test]
async fn idn_domains_without_smtputf8_use_a_labels() {
    let server = DevSmtpServer::builder().start().await.expect("dev server");
    let dir = config(server.port());
    let mailer = mailer(&dir);
    let to_u = format!("user@{IDN}");
    let to_a = format!("user@{IDN_ACE}");
    let from_u = format!("alm@{IDN}");
    let from_a = format!("alm@{IDN_ACE}");

    let mut m = text_message("idn\n");
    m.from = Some(from_u.clone());
    m.to = vec![format!("Jöhn <{to_u}>")];
    mailer.send_message(m).await.expect("send_message");

    let prepared = format!("To: <{to_a}>\r\nSubject: idn\r\n\r\nbody\r\n");
    mailer
        .send_raw(&envelope(&from_u, &[&to_u]), prepared.as_bytes())
        .await
        .expect("send_raw");

    let messages = server.wait_for_messages(2, WAIT).await;
    for msg in &messages {
        assert_eq!(msg.mail_from, from_a);
        assert_eq!(msg.rcpt_to, [to_a.as_str()]);
        assert_wire("dev server", &msg.data);
        // Without SMTPUTF8 the header section is ASCII (RFC 6532 needs it
        // for anything else); the Message-ID mailgate adds uses the A-label.
        let head_end = msg
            .data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        assert!(msg.data[..head_end].is_ascii(), "{}", msg.data_str());
        let parsed = parse("dev server", &msg.data);
        assert_eq!(
            parsed
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some(from_a.as_str())
        );
        assert_eq!(
            parsed
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some(to_a.as_str())
        );
    }
    assert!(messages[1].data.ends_with(prepared.as_bytes()));

    // A prepared message whose header holds UTF-8 (a display name, a
    // U-label domain) is converted for a server without SMTPUTF8: the name
    // as encoded-words, the domain as A-labels.
    let utf8_head = format!("To: Jöhn <{to_u}>\r\nSubject: idn\r\n\r\nbody\r\n");
    mailer
        .send_raw(&envelope(&from_u, &[&to_u]), utf8_head.as_bytes())
        .await
        .expect("converted and sent");
    let messages = server.wait_for_messages(3, WAIT).await;
    let converted = &messages[2];
    let head_end = converted
        .data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    assert!(
        converted.data[..head_end].is_ascii(),
        "{}",
        converted.data_str()
    );
    let parsed = parse("dev server", &converted.data);
    let to = parsed.to().and_then(|a| a.first()).expect("a To");
    assert_eq!(to.name(), Some("Jöhn"));
    assert_eq!(to.address(), Some(to_a.as_str()));

    let commands = server.commands();
    let envelope_lines: Vec<String> = commands
        .iter()
        .filter(|c| c.verb == "MAIL" || c.verb == "RCPT")
        .map(|c| format!("{} {}", c.verb, c.arg))
        .collect();
    assert_eq!(envelope_lines.len(), 6, "{envelope_lines:?}");
    for line in &envelope_lines {
        assert!(line.is_ascii(), "{line}");
        assert!(!line.to_ascii_uppercase().contains("SMTPUTF8"), "{line}");
        assert!(line.contains(IDN_ACE), "{line}");
    }
    mailer.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn five_hundred_recipients_in_one_message() {
    let recipients: Vec<String> = (0..500)
        .map(|i| format!("user{i:03}@example.com"))
        .collect();
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        let mut m = text_message("to many\n");
        m.to = vec![recipients.join(", ")];
        let msg = t.send_message(m).await;
        assert_eq!(msg.to, recipients, "{kind}: one RCPT each, in order");
        let parsed = composed(kind, &msg);
        let to: Vec<&str> = parsed
            .to()
            .expect("To")
            .iter()
            .filter_map(|a| a.address())
            .collect();
        assert_eq!(to, recipients, "{kind}");
        // The To header is folded (at 78 octets, between addresses).
        let head_end = msg
            .raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let head = std::str::from_utf8(&msg.raw[..head_end]).expect("ASCII header");
        let to_lines: Vec<&str> = head
            .split("\r\n")
            .skip_while(|l| !l.starts_with("To:"))
            .take_while(|l| l.starts_with("To:") || l.starts_with([' ', '\t']))
            .collect();
        assert!(
            to_lines.len() > 100,
            "{kind}: To is folded: {}",
            to_lines.len()
        );
        for line in &to_lines {
            assert!(line.len() <= 78, "{kind}: {} octets: {line}", line.len());
        }
        t.close().await;
    }
}

#[tokio::test]
async fn duplicate_recipients_get_one_rcpt_each() {
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        let mut m = text_message("dups\n");
        m.to = vec![
            "dup@example.com, dup@EXAMPLE.com".into(),
            "Dup@example.com".into(),
        ];
        m.cc = vec!["dup@Example.Com".into(), "other@example.com".into()];
        m.bcc = vec!["other@EXAMPLE.COM".into(), "hidden@example.com".into()];
        let msg = t.send_message(m).await;
        // Domains compare without case, local parts with it (RFC 5321 §2.4).
        assert_eq!(
            msg.to,
            [
                "dup@example.com",
                "Dup@example.com",
                "other@example.com",
                "hidden@example.com"
            ],
            "{kind}"
        );
        let parsed = composed(kind, &msg);
        assert!(parsed.bcc().is_none(), "{kind}: Bcc is envelope only");
        assert!(!msg.data.contains("hidden@"), "{kind}: Bcc leaked");
        t.close().await;
    }
}

#[tokio::test]
async fn quoted_display_names_with_commas() {
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        let mut m = text_message("quoted\n");
        m.from = Some("\"Server, ALM\" <alm@example.com>".into());
        m.to = vec!["\"Doe, John\" <j@example.com>, a@example.com".into()];
        m.cc = vec!["\"Roe, \\\"Rick\\\"\" <r@example.com>".into()];
        let msg = t.send_message(m).await;
        assert_eq!(
            msg.to,
            ["j@example.com", "a@example.com", "r@example.com"],
            "{kind}"
        );
        let parsed = composed(kind, &msg);
        let to: Vec<(Option<&str>, Option<&str>)> = parsed
            .to()
            .expect("To")
            .iter()
            .map(|a| (a.name(), a.address()))
            .collect();
        assert_eq!(
            to,
            [
                (Some("Doe, John"), Some("j@example.com")),
                (None, Some("a@example.com"))
            ],
            "{kind}"
        );
        let cc = parsed.cc().and_then(|a| a.first()).expect("Cc");
        assert_eq!(cc.name(), Some("Roe, \"Rick\""), "{kind}");
        let from = parsed.from().and_then(|a| a.first()).expect("From");
        assert_eq!(from.name(), Some("Server, ALM"), "{kind}");

        // The trigger API: sendmail() with a comma-separated list.
        t.mailer
            .sendmail(
                FROM,
                "\"Doe, John\" <j@example.com>, a@example.com",
                "s",
                "b",
            )
            .await
            .expect("sendmail");
        let msg = t.next();
        assert_eq!(msg.to, ["j@example.com", "a@example.com"], "{kind}");
        let parsed = composed(kind, &msg);
        assert_eq!(
            parsed.to().and_then(|a| a.first()).and_then(|a| a.name()),
            Some("Doe, John")
        );
        t.close().await;
    }
}

#[tokio::test]
async fn attachments_decode_to_their_bytes() {
    let binary: Vec<u8> = (0..=255u8).cycle().take(256 * 5 + 17).collect();
    // ASCII bytes with bare LF, lone CR and NUL: sent as they are, not
    // rewritten as text.
    let texty = b"line one\nline two\rline three\r\n.\n\0end".to_vec();
    let empty = Vec::new();
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        let mut m = text_message("see attached\n");
        m.attachments = vec![
            Attachment {
                filename: "all-bytes.bin".into(),
                content_type: "application/octet-stream".into(),
                content: binary.clone(),
            },
            Attachment {
                filename: "Grüße notes.txt".into(),
                content_type: "text/plain".into(),
                content: texty.clone(),
            },
            Attachment {
                filename: "empty.dat".into(),
                content_type: "application/octet-stream".into(),
                content: empty.clone(),
            },
        ];
        let msg = t.send_message(m).await;
        let parsed = composed(kind, &msg);
        assert_bytes(kind, "text", text_body(kind, &parsed), b"see attached\r\n");
        let attachments: Vec<_> = parsed.attachments().collect();
        assert_eq!(attachments.len(), 3, "{kind}");
        for (part, (name, content)) in attachments.iter().zip([
            ("all-bytes.bin", &binary),
            ("Grüße notes.txt", &texty),
            ("empty.dat", &empty),
        ]) {
            assert_eq!(part.attachment_name(), Some(name), "{kind}");
            assert_bytes(kind, name, part.contents(), content);
        }
        t.close().await;
    }
}

#[tokio::test]
async fn multipart_alternative_text_and_html() {
    let text = "Plain ü\nsecond line\r\n.\nend";
    let html = "<p>HTML ü</p>\n<p>.</p>\n";
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        let mut m = text_message(text);
        m.html_alternative = Some(html.into());
        let msg = t.send_message(m).await;
        let parsed = composed(kind, &msg);
        assert!(
            parsed
                .content_type()
                .is_some_and(|c| c.ctype() == "multipart" && c.subtype() == Some("alternative")),
            "{kind}: {:?}",
            parsed.content_type()
        );
        assert_bytes(
            kind,
            "text part",
            text_body(kind, &parsed),
            crlf(text).as_bytes(),
        );
        let html_part = parsed.html_part(0).expect("html part");
        assert_bytes(
            kind,
            "html part",
            html_part.contents(),
            crlf(html).as_bytes(),
        );

        // With an attachment: multipart/mixed holding the alternative.
        let mut m = text_message(text);
        m.html_alternative = Some(html.into());
        m.attachments = vec![Attachment {
            filename: "a.bin".into(),
            content_type: "application/octet-stream".into(),
            content: vec![0, 1, 2, 255],
        }];
        let msg = t.send_message(m).await;
        let parsed = composed(kind, &msg);
        assert_bytes(
            kind,
            "text part",
            text_body(kind, &parsed),
            crlf(text).as_bytes(),
        );
        let html_part = parsed.html_part(0).expect("html part");
        assert_bytes(
            kind,
            "html part",
            html_part.contents(),
            crlf(html).as_bytes(),
        );
        let attachment = parsed.attachment(0).expect("attachment");
        assert_bytes(kind, "attachment", attachment.contents(), &[0, 1, 2, 255]);
        t.close().await;
    }
}

/// The header section of a complete prepared message, without the empty line.
fn prepared_head(subject: &str) -> String {
    format!(
        "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\
         Message-ID: <prepared.{subject}@example.com>\r\n\
         MIME-Version: 1.0\r\n\
         From: \"Server, ALM\" <alm@example.com>\r\n\
         To: dev@example.com\r\n\
         Subject: {subject}\r\n"
    )
}

const PREPARED_BODY: &str = "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
X-Custom: kept as is\r\n\
X-Folded: first part\r\n\
\tsecond part\r\n\
\r\n\
preamble\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Gr=C3=BC=C3=9Fe\r\n\
.\r\n\
..two\r\n\
--b1\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"x.bin\"\r\n\
\r\n\
AAEC/w==\r\n\
--b1--\r\n\
epilogue\r\n";

#[tokio::test]
async fn prepared_message_arrives_unchanged() {
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        // Complete: nothing is added, the message arrives byte for byte.
        let prepared = prepared_head("complete") + PREPARED_BODY;
        let msg = t
            .send_raw(&envelope(FROM, &[TO]), prepared.as_bytes())
            .await;
        assert_wire(kind, &msg.raw);
        assert_bytes(kind, "prepared message", &msg.raw, prepared.as_bytes());
        let parsed = parse(kind, &msg.raw);
        assert_eq!(
            parsed.header_raw("X-Custom").map(str::trim),
            Some("kept as is")
        );
        assert_bytes(
            kind,
            "text part",
            text_body(kind, &parsed),
            "Grüße\r\n.\r\n..two".as_bytes(),
        );
        assert_bytes(
            kind,
            "attachment",
            parsed.attachment(0).expect("attachment").contents(),
            &[0, 1, 2, 255],
        );

        // Without Date, Message-ID and MIME-Version: exactly those are added
        // in front, the rest arrives byte for byte.
        let prepared = format!(
            "From: alm@example.com\r\nTo: dev@example.com\r\nSubject: bare\r\n{PREPARED_BODY}"
        );
        let msg = t
            .send_raw(&envelope(FROM, &[TO]), prepared.as_bytes())
            .await;
        assert_wire(kind, &msg.raw);
        assert!(
            msg.raw.ends_with(prepared.as_bytes()),
            "{kind}: {}",
            msg.data
        );
        let added = std::str::from_utf8(&msg.raw[..msg.raw.len() - prepared.len()]).unwrap();
        let names: Vec<&str> = added
            .split_terminator("\r\n")
            .map(|l| l.split_once(':').expect("a header field").0)
            .collect();
        assert_eq!(
            names,
            ["Date", "Message-ID", "MIME-Version"],
            "{kind}: {added}"
        );
        parse(kind, &msg.raw);

        // LF line ends: the documented contract makes them CRLF, nothing else changes.
        let lf = prepared.replace("\r\n", "\n");
        let msg = t.send_raw(&envelope(FROM, &[TO]), lf.as_bytes()).await;
        assert_wire(kind, &msg.raw);
        assert!(
            msg.raw.ends_with(prepared.as_bytes()),
            "{kind}: {}",
            msg.data
        );
        t.close().await;
    }
}

#[tokio::test]
async fn lettre_messages_through_send() {
    for kind in PeerKind::ALL {
        let mut t = Target::start(kind);
        // A plain body as lettre's builder makes it.
        let message = lettre::Message::builder()
            .from(FROM.parse().unwrap())
            .to(TO.parse().unwrap())
            .subject("via send")
            .body(String::from("plain\n.\nbody"))
            .unwrap();
        let msg = t.send(&message).await;
        let parsed = composed(kind, &msg);
        assert_bytes(
            kind,
            "decoded body",
            text_body(kind, &parsed),
            single_part_text("plain\n.\nbody").as_bytes(),
        );

        // A multipart one.
        let message = lettre::Message::builder()
            .from(FROM.parse().unwrap())
            .to(TO.parse().unwrap())
            .subject("multipart via send")
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(String::from("text ü\n")),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(String::from("<b>html ü</b>")),
                    ),
            )
            .unwrap();
        let msg = t.send(&message).await;
        let parsed = composed(kind, &msg);
        assert_bytes(
            kind,
            "text part",
            text_body(kind, &parsed),
            "text ü\r\n".as_bytes(),
        );
        assert_bytes(
            kind,
            "html part",
            parsed.html_part(0).expect("html").contents(),
            "<b>html ü</b>".as_bytes(),
        );
        t.close().await;
    }
}
