//! Delivery status notifications (RFC 3464) end to end: a recipient that
//! dies gets its envelope sender a DSN from the null sender, through the
//! same outbox and upstream; the DSN is parsed with a real MIME parser and
//! checked field by field. A null-sender message never gets one, a DSN
//! that fails goes to the postmaster once, and `bounces=false` turns them
//! off.

#![cfg(all(feature = "open", feature = "outbox"))]

mod outbox_support;

use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders as _, PartType};
use mailgate::outbox::{Status, Worker};
use mailgate::{Envelope, Mailer};
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerKind, ReceivedMessage, SmtpPeer};

const WAIT: Duration = Duration::from_secs(10);
const APP: &str = "app@example.org";
const GOOD: &str = "good@example.com";
const BAD: &str = "bad@example.com";

fn mailer_for(port: u16, extra: &[(&str, &str)]) -> (ConfigDir, Mailer) {
    let mut keys = vec![("mailgate.smtp.heloName", "relay.example.net")];
    keys.extend_from_slice(extra);
    outbox_support::outbox_mailer(port, &keys)
}

fn envelope(from: Option<&str>, to: &[&str]) -> Envelope {
    Envelope::new(
        from.map(|f| f.parse().unwrap()),
        to.iter().map(|t| t.parse().unwrap()).collect(),
    )
    .unwrap()
}

const ORIGINAL: &str = "From: Build server <app@example.org>\r\nTo: good@example.com, bad@example.com\r\nSubject: Nightly build 42\r\n\r\nThe build passed.\r\n";

/// Delivers until nothing is due (the DSN is stored during the first pass).
async fn drain(worker: &Worker) {
    for _ in 0..5 {
        if worker.deliver_due().await.unwrap() == 0 {
            break;
        }
    }
}

fn dsns(messages: &[ReceivedMessage]) -> Vec<&ReceivedMessage> {
    messages.iter().filter(|m| m.from.is_empty()).collect()
}

/// Checks an RFC 3464 report field by field; returns its per-recipient fields.
fn assert_dsn(dsn: &ReceivedMessage, to: &str, dead: &str, status: &str, diagnostic: &str) {
    assert_eq!(dsn.from, "", "a DSN comes from the null sender");
    assert_eq!(dsn.to, [to]);
    let parsed = MessageParser::default()
        .parse(dsn.raw.as_slice())
        .expect("parses");
    let ct = parsed.content_type().expect("content type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(
        parsed.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert!(parsed.message_id().is_some());
    assert!(parsed.date().is_some());
    let parts: Vec<_> = parsed.parts.iter().skip(1).collect();
    assert_eq!(parts.len(), 3, "{:?}", dsn.data);
    assert_eq!(parts[0].content_type().unwrap().ctype(), "text");
    let human = parsed.body_text(0).expect("a human-readable part");
    assert!(human.contains(dead), "{human}");
    let status_part = parts[1];
    let ct = status_part.content_type().unwrap();
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("message", Some("delivery-status"))
    );
    let fields = match &status_part.body {
        PartType::Text(t) => t.to_string(),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b).into_owned(),
        PartType::Message(m) => String::from_utf8_lossy(m.raw_message()).into_owned(),
        other => panic!("delivery-status body: {other:?}"),
    };
    let field = |name: &str| -> Vec<String> {
        fields
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        field("Reporting-MTA"),
        ["dns; relay.example.net"],
        "{fields}"
    );
    assert_eq!(field("Arrival-Date").len(), 1, "{fields}");
    assert_eq!(
        field("Final-Recipient"),
        [format!("rfc822; {dead}")],
        "{fields}"
    );
    assert_eq!(field("Action"), ["failed"], "{fields}");
    assert_eq!(field("Status"), [status], "{fields}");
    let diag = field("Diagnostic-Code");
    assert_eq!(diag.len(), 1, "{fields}");
    assert!(
        diag[0].starts_with("smtp; ") && diag[0].contains(diagnostic),
        "{fields}"
    );
    assert_eq!(field("Last-Attempt-Date").len(), 1, "{fields}");
    let headers = parts[2];
    let ct = headers.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("rfc822-headers")));
    let text = String::from_utf8_lossy(headers.contents());
    assert!(text.contains("Subject: Nightly build 42"), "{text}");
    assert!(!text.contains("The build passed"), "headers only: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_recipient_gets_its_sender_a_dsn_the_others_the_message() {
    for kind in [PeerKind::Node, PeerKind::Python] {
        let peer = SmtpPeer::start(kind, PeerConfig::new().fail_rcpt_for(BAD, 550));
        let (_dir, mailer) = mailer_for(peer.port(), &[]);
        let worker = Worker::new(&mailer).unwrap();
        mailer
            .enqueue_raw(&envelope(Some(APP), &[GOOD, BAD]), ORIGINAL.as_bytes())
            .await
            .unwrap();
        drain(&worker).await;
        let messages = peer.wait_for_messages(2, WAIT);
        assert_eq!(messages.len(), 2, "{kind}: the message and one DSN");
        let original: Vec<_> = messages.iter().filter(|m| m.from == APP).collect();
        assert_eq!(original.len(), 1, "{kind}");
        assert_eq!(original[0].to, [GOOD], "{kind}");
        let dsn = dsns(&messages);
        assert_eq!(dsn.len(), 1, "{kind}");
        // The peers refuse without an enhanced code: the class of the reply stands.
        assert_dsn(dsn[0], APP, BAD, "5.0.0", "550");
        let stats = mailer.outbox().unwrap().stats().await.unwrap();
        let all = mailer.outbox().unwrap().list(true).await.unwrap();
        assert_eq!(stats.sent, 1, "{kind}: the DSN was sent: {all:#?}");
        assert_eq!(stats.dead, 1, "{kind}: the message has a dead recipient");
        mailer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_550_at_the_end_of_data_bounces_once_and_the_failed_dsn_goes_to_the_postmaster_once() {
    // Everything the server is given fails: the message, its DSN, and the
    // postmaster's notice; the outbox stops after those three.
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new().fail_data(550));
    let (_dir, mailer) = mailer_for(
        peer.port(),
        &[("mailgate.outbox.postmaster", "postmaster@example.net")],
    );
    let worker = Worker::new(&mailer).unwrap();
    mailer
        .enqueue_raw(&envelope(Some(APP), &[GOOD]), ORIGINAL.as_bytes())
        .await
        .unwrap();
    drain(&worker).await;
    let store = mailer.outbox().unwrap();
    let all = store.list(true).await.unwrap();
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all.iter().all(|m| m.status == Status::Dead), "{all:#?}");
    assert_eq!(all[0].from, APP);
    assert_eq!(
        (all[1].from.as_str(), all[1].to.as_slice()),
        ("", [APP.to_owned()].as_slice())
    );
    assert_eq!(
        (all[2].from.as_str(), all[2].to.as_slice()),
        ("", ["postmaster@example.net".to_owned()].as_slice())
    );
    assert_eq!(
        worker.deliver_due().await.unwrap(),
        0,
        "nothing more is due"
    );
    assert!(peer.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_dsn_for_the_null_sender_its_own_sender_or_with_bounces_off() {
    let peer = SmtpPeer::start(PeerKind::Python, PeerConfig::new().fail_rcpt_for(BAD, 550));
    for (from, extra) in [
        (None, vec![]),
        (Some("alm@example.com"), vec![]),
        (Some(APP), vec![("mailgate.outbox.bounces", "false")]),
    ] {
        let (_dir, mailer) = mailer_for(peer.port(), &extra);
        let worker = Worker::new(&mailer).unwrap();
        mailer
            .enqueue_raw(&envelope(from, &[BAD]), ORIGINAL.as_bytes())
            .await
            .unwrap();
        drain(&worker).await;
        let all = mailer.outbox().unwrap().list(true).await.unwrap();
        assert_eq!(all.len(), 1, "{from:?} {extra:?}: no DSN stored: {all:#?}");
        assert_eq!(all[0].status, Status::Dead);
    }
    assert!(peer.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_report_with_ret_full_returns_the_body_the_outbox_then_drops() {
    use mailgate::outbox::{DsnRequest, Notify, RecipientRequest};
    let peer = SmtpPeer::start(PeerKind::Python, PeerConfig::new());
    let (_dir, mailer) = mailer_for(peer.port(), &[]);
    let worker = Worker::new(&mailer).unwrap();
    let request = DsnRequest {
        ret_full: true,
        envid: None,
        recipients: vec![RecipientRequest {
            address: GOOD.into(),
            notify: Some(Notify {
                success: true,
                failure: true,
                delay: false,
            }),
            orcpt: None,
        }],
    };
    let id = mailer
        .enqueue_raw_with_dsn(&envelope(Some(APP), &[GOOD]), ORIGINAL.as_bytes(), request)
        .await
        .unwrap();
    drain(&worker).await;
    let messages = peer.wait_for_messages(2, WAIT);
    let dsn = dsns(&messages);
    assert_eq!(dsn.len(), 1, "{messages:#?}");
    // The report is written before the message is marked sent: whole.
    let parsed = MessageParser::default()
        .parse(dsn[0].raw.as_slice())
        .unwrap();
    let returned = parsed
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|ct| ct.ctype() == "message" && ct.subtype() == Some("rfc822"))
        })
        .expect("RET=FULL returns the message");
    let PartType::Message(returned) = &returned.body else {
        panic!("message/rfc822 part: {:?}", returned.body);
    };
    assert!(
        String::from_utf8_lossy(returned.raw_message()).contains("The build passed."),
        "{:?}",
        dsn[0].data
    );
    let listed = mailer.outbox().unwrap().list(true).await.unwrap();
    let original = listed.iter().find(|m| m.id == id).unwrap();
    assert_eq!(original.status, Status::Sent);
    assert!(
        original.body_dropped,
        "then only its header section is kept"
    );
    assert!(original.size >= ORIGINAL.len() as u64);
    mailer.close().await;
}
