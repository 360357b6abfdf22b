//! Convert, don't refuse, end to end: prepared messages (what `sendmail`,
//! PHP `mail()` and the relay hand over) reach Nodemailer's smtp-server and
//! aiosmtpd with 8BITMIME and SMTPUTF8 switched off, and with one 2.6 KB
//! HTML line; the bytes on the wire are 7-bit with lines of at most 998
//! octets, and a real MIME parser reads back the original text.

#![cfg(all(feature = "open", feature = "outbox"))]

mod outbox_support;

use std::time::Duration;

use mail_parser::MessageParser;
use mailgate::outbox::{Status, Worker};
use mailgate::{Envelope, Mailer};
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerKind, ReceivedMessage, SmtpPeer};

const WAIT: Duration = Duration::from_secs(10);
const KINDS: [PeerKind; 2] = [PeerKind::Node, PeerKind::Python];

fn mailer_for(port: u16) -> (ConfigDir, Mailer) {
    outbox_support::outbox_mailer(port, &[])
}

fn envelope() -> Envelope {
    Envelope::new(
        Some("alm@example.com".parse().unwrap()),
        vec!["dev@example.com".parse().unwrap()],
    )
    .unwrap()
}

/// CRLF only, no line over 998 octets.
fn assert_wire_rules(kind: PeerKind, m: &ReceivedMessage) {
    let text = String::from_utf8_lossy(&m.raw);
    for (i, line) in text.split("\r\n").enumerate() {
        assert!(
            line.len() <= 998,
            "{kind}: line {i} is {} octets",
            line.len()
        );
        assert!(
            !line.contains(['\r', '\n']),
            "{kind}: bare line end in line {i}"
        );
    }
}

fn only(kind: PeerKind, peer: &SmtpPeer) -> ReceivedMessage {
    let mut messages = peer.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1, "{kind}");
    messages.remove(0)
}

/// Text with LF line ends, to compare decoded bodies.
fn lf(text: &str) -> String {
    text.replace("\r\n", "\n")
}

const GERMAN: &str = "Gr\u{fc}\u{df}e aus K\u{f6}ln, \u{e0} bient\u{f4}t\r\nZweite Zeile\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8bit_body_reaches_a_7bit_server_as_quoted_printable() {
    for kind in KINDS {
        let peer = SmtpPeer::start(kind, PeerConfig::new().seven_bit());
        let (_dir, mailer) = mailer_for(peer.port());
        let message = format!(
            "From: alm@example.com\r\nTo: dev@example.com\r\nSubject: 8-bit\r\n\r\n{GERMAN}"
        );
        mailer
            .send_raw(&envelope(), message.as_bytes())
            .await
            .expect("sent");
        let m = only(kind, &peer);
        assert!(m.raw.is_ascii(), "{kind}: 7-bit on the wire");
        assert!(
            !m.mail_options.iter().any(|o| o.contains("8BITMIME")),
            "{kind}: {:?}",
            m.mail_options
        );
        assert_wire_rules(kind, &m);
        let parsed = MessageParser::default().parse(&m.raw).unwrap();
        assert_eq!(lf(&parsed.body_text(0).unwrap()), lf(GERMAN), "{kind}");
        mailer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_long_html_line_arrives_re_encoded() {
    let html = format!("<html><body>{}</body></html>", "<td>cell</td>".repeat(200));
    assert!(html.len() > 2600);
    for kind in KINDS {
        let peer = SmtpPeer::start(kind, PeerConfig::new());
        let (_dir, mailer) = mailer_for(peer.port());
        let message = format!(
            "To: dev@example.com\r\nSubject: report\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n{html}\r\n"
        );
        mailer
            .send_raw(&envelope(), message.as_bytes())
            .await
            .expect("sent");
        let m = only(kind, &peer);
        assert_wire_rules(kind, &m);
        let parsed = MessageParser::default().parse(&m.raw).unwrap();
        assert_eq!(parsed.body_html(0).unwrap().trim_end(), html, "{kind}");
        mailer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_utf8_subject_becomes_encoded_words_without_smtputf8() {
    for kind in KINDS {
        let peer = SmtpPeer::start(kind, PeerConfig::new().no_smtputf8());
        let (_dir, mailer) = mailer_for(peer.port());
        let message = "From: Z\u{fc}rich Build <alm@example.com>\r\nTo: dev@example.com\r\nSubject: Build f\u{fc}r Z\u{fc}rich \u{2713}\r\n\r\nbody\r\n";
        mailer
            .send_raw(&envelope(), message.as_bytes())
            .await
            .expect("sent");
        let m = only(kind, &peer);
        let head_end = m.raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        assert!(m.raw[..head_end].is_ascii(), "{kind}: ASCII header");
        assert!(!m.mail_options.iter().any(|o| o == "SMTPUTF8"), "{kind}");
        let parsed = MessageParser::default().parse(&m.raw).unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Build f\u{fc}r Z\u{fc}rich \u{2713}"),
            "{kind}"
        );
        assert_eq!(
            parsed.from().unwrap().first().unwrap().name(),
            Some("Z\u{fc}rich Build"),
            "{kind}"
        );
        mailer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_converts_for_the_server_it_meets() {
    // Stored as it came (8-bit, a long line); converted at delivery.
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new().seven_bit());
    let (_dir, mailer) = mailer_for(peer.port());
    let long = "x".repeat(1500);
    let message = format!("To: dev@example.com\r\nSubject: queued\r\n\r\n{GERMAN}{long}\r\n");
    let id = mailer
        .enqueue_raw(&envelope(), message.as_bytes())
        .await
        .expect("stored: a long line is converted, not refused");
    let outcome = Worker::new(&mailer)
        .unwrap()
        .deliver_id(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.status(), Status::Sent, "{outcome:?}");
    let m = only(PeerKind::Node, &peer);
    assert!(m.raw.is_ascii());
    assert_wire_rules(PeerKind::Node, &m);
    let parsed = MessageParser::default().parse(&m.raw).unwrap();
    assert_eq!(
        lf(&parsed.body_text(0).unwrap()),
        lf(&format!("{GERMAN}{long}\r\n"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_part_that_would_have_to_change_is_refused_clearly() {
    let peer = SmtpPeer::start(PeerKind::Python, PeerConfig::new().seven_bit());
    let (_dir, mailer) = mailer_for(peer.port());
    let message = "To: dev@example.com\r\nSubject: signed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; boundary=s; protocol=\"application/pgp-signature\"\r\n\r\n--s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nsign\u{e9}\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nSIG\r\n--s--\r\n";
    let err = mailer
        .send_raw(&envelope(), message.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 65);
    let text = err.to_string();
    assert!(
        text.contains("multipart/signed") && text.contains("8BITMIME"),
        "{text}"
    );
    assert!(peer.messages().is_empty());
}

/// A non-ASCII local part is the one thing no conversion can fix for a
/// server without SMTPUTF8: it is refused before it is queued (exit 65),
/// never accepted and then dead. Queued when the server does offer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf8_local_part_is_refused_before_it_is_queued() {
    for kind in KINDS {
        let peer = SmtpPeer::start(kind, PeerConfig::new().no_smtputf8());
        let (_dir, mailer) = mailer_for(peer.port());
        let store = mailer.outbox().unwrap().clone();
        let utf8_to = Envelope::new(
            Some("alm@example.com".parse().unwrap()),
            vec!["j\u{fc}rgen@example.com".parse().unwrap()],
        )
        .unwrap();
        let err = mailer
            .enqueue_raw(&utf8_to, b"Subject: envelope\r\n\r\nhi\r\n")
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 65, "{kind}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("j\u{fc}rgen@example.com")
                && text.contains("SMTPUTF8")
                && text.contains(&peer.port().to_string())
                && text.contains("nothing was queued"),
            "{kind}: {text}"
        );
        // The same in a header field, with an ASCII envelope.
        let err = mailer
            .enqueue_raw(
                &envelope(),
                "Cc: \"J\u{fc}rgen\" <j\u{fc}rgen@example.com>\r\nSubject: header\r\n\r\nhi\r\n"
                    .as_bytes(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 65, "{kind}: {err}");
        assert!(err.to_string().contains("j\u{fc}rgen@example.com"), "{err}");
        // A UTF-8 display name or subject is converted, not refused.
        mailer
            .enqueue_raw(
                &envelope(),
                "Cc: \"J\u{fc}rgen\" <juergen@example.com>\r\nSubject: Gr\u{fc}\u{df}e\r\n\r\nhi\r\n"
                    .as_bytes(),
            )
            .await
            .expect("a UTF-8 display name is encoded at delivery");
        assert_eq!(
            store.list(true).await.unwrap().len(),
            1,
            "{kind}: only the convertible message is queued"
        );
    }
    // A server that offers SMTPUTF8 takes it.
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new());
    let (_dir, mailer) = mailer_for(peer.port());
    let utf8_to = Envelope::new(
        Some("alm@example.com".parse().unwrap()),
        vec!["j\u{fc}rgen@example.com".parse().unwrap()],
    )
    .unwrap();
    mailer
        .enqueue_raw(&utf8_to, b"Subject: envelope\r\n\r\nhi\r\n")
        .await
        .expect("queued for a server with SMTPUTF8");
    assert_eq!(mailer.upstream_offers_smtputf8(), Some(true));
}
