//! `Mailer::send_raw_exact` against Nodemailer's smtp-server and aiosmtpd:
//! a signed message arrives byte for byte (the peers record the DATA bytes
//! after unstuffing), and what SMTP cannot carry as it is (bare line ends,
//! long lines, 8-bit data for a 7-bit server, UTF-8 headers without
//! SMTPUTF8) is refused with exit 65 and never converted.

#![cfg(feature = "open")]

use std::time::Duration;

use mailgate::{Envelope, Error, Mailer};
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerEvent, PeerKind, SmtpPeer};

const WAIT: Duration = Duration::from_secs(10);
const KINDS: [PeerKind; 2] = [PeerKind::Node, PeerKind::Python];

fn mailer_for(port: u16) -> (ConfigDir, Mailer) {
    let port = port.to_string();
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.smtp.oauth.authentication", "false"),
            ("mksis.smtp.authentication", "false"),
            ("mksis.smtp.ssl.enabled", "false"),
            ("mksis.logging.email.from", "alm@example.com"),
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", port.as_str()),
            ("mailgate.smtp.timeoutSeconds", "10"),
        ],
        &[],
    );
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .expect("mailer builds");
    (dir, mailer)
}

fn envelope(to: &[&str]) -> Envelope {
    Envelope::new(
        Some("alm@example.com".parse().unwrap()),
        to.iter().map(|a| a.parse().unwrap()).collect(),
    )
    .unwrap()
}

/// As a DKIM signer leaves it: no Date, Message-ID or MIME-Version, a Bcc
/// field, an 8-bit body, a dot-leading line and a line of 998 octets.
fn signed() -> Vec<u8> {
    let mut m = b"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=example.com;\r\n s=sel1; h=from:to:subject:bcc; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n b=dGVzdA==\r\n\
From: Build Server <alm@example.com>\r\n\
To: dev@example.com\r\n\
Bcc: hidden@example.com\r\n\
Subject: signed build 42\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n\
.a line that starts with a dot\r\n\
..two dots\r\n"
        .to_vec();
    m.extend(std::iter::repeat_n(b'x', 998));
    m.extend_from_slice(b"\r\n");
    m
}

fn refusal(kind: PeerKind, result: mailgate::Result<mailgate::Delivery>) -> String {
    match result {
        Err(e @ Error::InvalidMessage { .. }) => {
            assert_eq!(e.exit_code(), 65, "{kind}");
            e.to_string()
        }
        other => panic!("{kind}: expected a refusal, got {other:?}"),
    }
}

fn connections(peer: &SmtpPeer) -> usize {
    peer.events()
        .iter()
        .filter(|e| matches!(e, PeerEvent::Connect { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_message_arrives_byte_for_byte() {
    for kind in KINDS {
        let peer = SmtpPeer::start(kind, PeerConfig::new());
        let (_dir, mailer) = mailer_for(peer.port());
        let message = signed();
        let delivery = mailer
            .send_raw_exact(
                &envelope(&["dev@example.com", "hidden@example.com"]),
                &message,
            )
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(delivery.recipients, 2, "{kind}");
        assert_eq!(delivery.message_id, None, "{kind}: none added");
        let mut received = peer.wait_for_messages(1, WAIT);
        assert_eq!(received.len(), 1, "{kind}");
        let m = received.remove(0);
        assert_eq!(m.to, ["dev@example.com", "hidden@example.com"], "{kind}");
        assert!(
            m.mail_options.iter().any(|o| o == "BODY=8BITMIME"),
            "{kind}: {:?}",
            m.mail_options
        );
        assert!(m.raw == message, "{kind}: byte for byte:\n{}", m.data);

        // send_raw on the same message completes it: the contrast.
        mailer
            .send_raw(&envelope(&["dev@example.com"]), &message)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let completed = peer.wait_for_messages(2, WAIT).remove(1);
        assert!(completed.header("Message-ID").is_some(), "{kind}");
        assert!(completed.header("Bcc").is_none(), "{kind}");
        mailer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bit_data_for_a_seven_bit_server_is_refused_not_converted() {
    for kind in KINDS {
        let peer = SmtpPeer::start(kind, PeerConfig::new().seven_bit());
        let (_dir, mailer) = mailer_for(peer.port());
        let text = refusal(
            kind,
            mailer
                .send_raw_exact(&envelope(&["dev@example.com"]), &signed())
                .await,
        );
        assert!(
            text.contains("8BITMIME") && text.contains("never converted"),
            "{kind}: {text}"
        );
        assert!(peer.messages().is_empty(), "{kind}: nothing sent");
        mailer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_header_fields_without_smtputf8_are_refused_not_encoded() {
    for kind in KINDS {
        let peer = SmtpPeer::start(kind, PeerConfig::new().no_smtputf8());
        let (_dir, mailer) = mailer_for(peer.port());
        let message = "From: alm@example.com\r\nTo: dev@example.com\r\nSubject: Gr\u{fc}\u{df}e\r\n\r\nbody\r\n";
        let text = refusal(
            kind,
            mailer
                .send_raw_exact(&envelope(&["dev@example.com"]), message.as_bytes())
                .await,
        );
        assert!(
            text.contains("SMTPUTF8") && text.contains("never converted"),
            "{kind}: {text}"
        );
        assert!(peer.messages().is_empty(), "{kind}: nothing sent");
        mailer.close().await;
    }
}

/// Bare line ends, long lines and a bad envelope are refused before any
/// connection is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_smtp_cannot_carry_as_is_is_refused_before_connecting() {
    let kind = PeerKind::Python;
    let peer = SmtpPeer::start(kind, PeerConfig::new());
    let (_dir, mailer) = mailer_for(peer.port());
    let to = envelope(&["dev@example.com"]);

    let text = refusal(
        kind,
        mailer
            .send_raw_exact(&to, b"Subject: a\r\n\r\nline one\nline two\r\n")
            .await,
    );
    assert!(text.contains("line 3 ends in a bare LF"), "{text}");
    assert!(text.contains("send_raw"), "{text}");

    let text = refusal(
        kind,
        mailer
            .send_raw_exact(&to, b"Subject: a\r\n\r\nline one\rline two\r\n")
            .await,
    );
    assert!(text.contains("line 3 ends in a CR without LF"), "{text}");

    let mut long = b"Subject: a\r\n\r\n".to_vec();
    long.extend(std::iter::repeat_n(b'y', 1000));
    long.extend_from_slice(b"\r\n");
    let text = refusal(kind, mailer.send_raw_exact(&to, &long).await);
    assert!(text.contains("line 3 is 1000 octets long"), "{text}");

    // The same grammar as every other send: lettre takes this local part
    // (a zero-width space in it), mailgate refuses it everywhere.
    let bad = Envelope::new(
        Some("alm@example.com".parse().unwrap()),
        vec!["a\u{200b}b@example.com".parse().expect("lettre takes it")],
    )
    .unwrap();
    let text = refusal(
        kind,
        mailer
            .send_raw_exact(&bad, b"Subject: a\r\n\r\nb\r\n")
            .await,
    );
    assert!(text.contains("control or invisible"), "{text}");

    assert_eq!(connections(&peer), 0, "{:?}", peer.events());
    assert!(peer.messages().is_empty());
    mailer.close().await;
}
