//! Delay notices (RFC 3464 `Action: delayed`) end to end: a recipient the
//! upstream keeps refusing for now (451 at RCPT) gets its sender one delay
//! notice once the message is older than `mailgate.outbox.delayWarningHours`,
//! where its NOTIFY asks for DELAY or says nothing; never a second one,
//! not after a restart either; none for NOTIFY=NEVER or FAILURE alone. The
//! notice is parsed with mail-parser and checked field by field.

#![cfg(all(feature = "open", feature = "outbox"))]

mod outbox_support;

use std::time::{Duration, SystemTime};

use mail_parser::{DateTime, MessageParser, MimeHeaders as _, PartType};
use mailgate::outbox::{DsnRequest, Notify, RecipientRequest, Worker};
use mailgate::{Envelope, Mailer};
use mailgate_integration_tests::{PeerConfig, PeerKind, ReceivedMessage, SmtpPeer};

const WAIT: Duration = Duration::from_secs(10);
const APP: &str = "app@example.org";
const GOOD: &str = "good@example.com";
/// NOTIFY=DELAY,FAILURE with an ORCPT.
const ASKED: &str = "asked@example.com";
/// No NOTIFY: the MTA's choice, a delay notice.
const SILENT: &str = "silent@example.com";
/// NOTIFY=NEVER.
const NEVER: &str = "never@example.com";
/// NOTIFY=FAILURE: failures only.
const FAILURE_ONLY: &str = "failure-only@example.com";

/// 0.0003 hours: about a second.
const WARNING_HOURS: &str = "0.0003";

const ORIGINAL: &str = "From: Build server <app@example.org>\r\nTo: team@example.com\r\nSubject: Nightly build 43\r\n\r\nThe build passed; the body stays out of a delay notice.\r\n";

fn request() -> DsnRequest {
    let notify = |failure, delay| {
        Some(Notify {
            success: false,
            failure,
            delay,
        })
    };
    DsnRequest {
        // RET=FULL is for failure reports: a delay notice has headers only.
        ret_full: true,
        envid: Some("nightly-43".into()),
        recipients: vec![
            RecipientRequest {
                address: ASKED.into(),
                notify: notify(true, true),
                orcpt: Some("team+asked@example.com".into()),
            },
            RecipientRequest {
                address: NEVER.into(),
                notify: notify(false, false),
                orcpt: None,
            },
            RecipientRequest {
                address: FAILURE_ONLY.into(),
                notify: notify(true, false),
                orcpt: None,
            },
        ],
    }
}

fn envelope() -> Envelope {
    Envelope::new(
        Some(APP.parse().unwrap()),
        [GOOD, ASKED, SILENT, NEVER, FAILURE_ONLY]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect(),
    )
    .unwrap()
}

/// A second mailer on the same configuration: a restarted process.
fn restarted(dir: &std::path::Path) -> Mailer {
    Mailer::builder()
        .config_dir(dir)
        .env_overrides(false)
        .build()
        .expect("mailer builds")
}

/// Delivers until nothing is due (a DSN stored during a pass is sent by the next).
async fn drain(worker: &Worker) {
    for _ in 0..5 {
        if worker.deliver_due().await.unwrap() == 0 {
            break;
        }
    }
}

/// The `message/delivery-status` part's text of `dsn`, after checking the
/// report's structure.
fn delivery_status(dsn: &ReceivedMessage) -> String {
    let parsed = MessageParser::default()
        .parse(dsn.raw.as_slice())
        .expect("parses");
    let ct = parsed.content_type().expect("content type");
    assert_eq!(
        (ct.ctype(), ct.subtype(), ct.attribute("report-type")),
        ("multipart", Some("report"), Some("delivery-status"))
    );
    assert_eq!(parsed.subject(), Some("Delayed Mail (still being retried)"));
    assert_eq!(
        parsed.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    let parts: Vec<_> = parsed.parts.iter().skip(1).collect();
    assert_eq!(parts.len(), 3, "{}", dsn.data);
    let human = parsed.body_text(0).expect("a human-readable part");
    assert!(human.contains("still being retried"), "{human}");
    let ct = parts[1].content_type().unwrap();
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("message", Some("delivery-status"))
    );
    let headers = parts[2].content_type().unwrap();
    assert_eq!(
        (headers.ctype(), headers.subtype()),
        ("text", Some("rfc822-headers")),
        "headers only, whatever RET says"
    );
    let text = String::from_utf8_lossy(parts[2].contents());
    assert!(text.contains("Subject: Nightly build 43"), "{text}");
    assert!(!text.contains("The build passed"), "{text}");
    match &parts[1].body {
        PartType::Text(t) => t.to_string(),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b).into_owned(),
        PartType::Message(m) => String::from_utf8_lossy(m.raw_message()).into_owned(),
        other => panic!("delivery-status body: {other:?}"),
    }
}

/// The per-recipient field groups of a delivery-status text (the first
/// group is the per-message one).
fn groups(fields: &str) -> Vec<Vec<(String, String)>> {
    fields
        .split("\r\n\r\n")
        .flat_map(|g| g.split("\n\n"))
        .filter(|g| !g.trim().is_empty())
        .map(|g| {
            g.lines()
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                .collect()
        })
        .collect()
}

fn get<'a>(group: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    group
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_recipient_gets_its_sender_one_delay_notice_where_notify_allows() {
    for kind in [PeerKind::Node, PeerKind::Python] {
        let mut peer_config = PeerConfig::new();
        for deferred in [ASKED, SILENT, NEVER, FAILURE_ONLY] {
            peer_config = peer_config.fail_rcpt_for(deferred, 451);
        }
        let peer = SmtpPeer::start(kind, peer_config);
        let (dir, mailer) = outbox_support::outbox_mailer(
            peer.port(),
            &[
                ("mailgate.smtp.heloName", "relay.example.net"),
                ("mailgate.outbox.delayWarningHours", WARNING_HOURS),
            ],
        );
        let store = mailer.outbox().unwrap();
        let worker = Worker::new(&mailer).unwrap();
        let id = mailer
            .enqueue_raw_with_dsn(&envelope(), ORIGINAL.as_bytes(), request())
            .await
            .unwrap();

        // First attempt, younger than the warning time: deferred, no notice.
        drain(&worker).await;
        let messages = peer.wait_for_messages(1, WAIT);
        assert_eq!(messages.len(), 1, "{kind}");
        assert_eq!(
            (messages[0].from.as_str(), messages[0].to.as_slice()),
            (APP, [GOOD.to_owned()].as_slice())
        );
        assert_eq!(
            store.list(true).await.unwrap().len(),
            1,
            "{kind}: no notice yet"
        );

        // Past it: one notice for the two recipients whose NOTIFY allows.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        worker.deliver_id(id).await.unwrap().expect("still queued");
        drain(&worker).await;
        let messages = peer.wait_for_messages(2, WAIT);
        assert_eq!(messages.len(), 2, "{kind}: {messages:#?}");
        let dsn = &messages[1];
        assert_eq!(dsn.from, "", "{kind}: from the null sender");
        assert_eq!(dsn.to, [APP], "{kind}");
        let fields = delivery_status(dsn);
        let groups = groups(&fields);
        assert_eq!(
            groups.len(),
            3,
            "{kind}: per message + two recipients: {fields}"
        );
        assert_eq!(
            get(&groups[0], "Original-Envelope-Id"),
            ["nightly-43"],
            "{fields}"
        );
        assert_eq!(
            get(&groups[0], "Reporting-MTA"),
            ["dns; relay.example.net"],
            "{fields}"
        );
        let listed = store.list(false).await.unwrap();
        let m = listed.iter().find(|m| m.id == id).expect("still queued");
        for (group, recipient, orcpt) in [
            (&groups[1], ASKED, Some("rfc822; team+asked@example.com")),
            (&groups[2], SILENT, None),
        ] {
            assert_eq!(
                get(group, "Final-Recipient"),
                [format!("rfc822; {recipient}")],
                "{kind}: {fields}"
            );
            assert_eq!(
                get(group, "Original-Recipient"),
                orcpt.into_iter().collect::<Vec<_>>(),
                "{fields}"
            );
            assert_eq!(get(group, "Action"), ["delayed"], "{fields}");
            // The peer's 451 carries no enhanced code: the class of a delay.
            assert_eq!(get(group, "Status"), ["4.0.0"], "{fields}");
            let diag = get(group, "Diagnostic-Code");
            assert_eq!(diag.len(), 1, "{fields}");
            assert!(
                diag[0].starts_with("smtp; 451 ")
                    && diag[0].contains(&format!("RCPT refused by test peer for {recipient}")),
                "{kind}: the recipient's own reply: {fields}"
            );
            assert_eq!(get(group, "Last-Attempt-Date").len(), 1, "{fields}");
            let until = get(group, "Will-Retry-Until");
            assert_eq!(until.len(), 1, "{fields}");
            let until = DateTime::parse_rfc822(until[0])
                .expect("an RFC 5322 date")
                .to_timestamp();
            let expected = (m.age_from + Duration::from_secs(72 * 3600))
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            assert!(
                (until - expected).abs() <= 1,
                "{kind}: {until} vs {expected} (maxAgeHours 72)"
            );
        }
        // Every deferred recipient's delay counts as reported, asked or not.
        let mut warned = m.delay_warned.clone();
        warned.sort();
        let mut expected = vec![ASKED, SILENT, NEVER, FAILURE_ONLY];
        expected.sort();
        assert_eq!(warned, expected, "{kind}");

        // Another attempt, by a restarted process: no second notice.
        mailer.close().await;
        let again = restarted(dir.path());
        let worker = Worker::new(&again).unwrap();
        worker.deliver_id(id).await.unwrap().expect("still queued");
        drain(&worker).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(peer.messages().len(), 2, "{kind}: never a second notice");
        let all = again.outbox().unwrap().list(true).await.unwrap();
        assert_eq!(all.len(), 2, "{kind}: the message and one notice: {all:#?}");
        again.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_delay_notice_for_never_failure_only_or_when_turned_off() {
    let peer = SmtpPeer::start(
        PeerKind::Python,
        PeerConfig::new()
            .fail_rcpt_for(NEVER, 451)
            .fail_rcpt_for(FAILURE_ONLY, 451)
            .fail_rcpt_for(SILENT, 451),
    );
    for (to, warning) in [
        (vec![NEVER, FAILURE_ONLY], WARNING_HOURS),
        // No NOTIFY, but delay notices turned off.
        (vec![SILENT], "0"),
    ] {
        let (_dir, mailer) = outbox_support::outbox_mailer(
            peer.port(),
            &[("mailgate.outbox.delayWarningHours", warning)],
        );
        let worker = Worker::new(&mailer).unwrap();
        let envelope = Envelope::new(
            Some(APP.parse().unwrap()),
            to.iter().map(|t| t.parse().unwrap()).collect(),
        )
        .unwrap();
        let id = mailer
            .enqueue_raw_with_dsn(&envelope, ORIGINAL.as_bytes(), request())
            .await
            .unwrap();
        drain(&worker).await;
        tokio::time::sleep(Duration::from_millis(1300)).await;
        worker.deliver_id(id).await.unwrap().expect("still queued");
        drain(&worker).await;
        let all = mailer.outbox().unwrap().list(true).await.unwrap();
        assert_eq!(all.len(), 1, "{to:?} {warning}: no notice stored: {all:#?}");
        assert_eq!(all[0].attempts, 2);
        mailer.close().await;
    }
    assert!(peer.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stays_down_gets_the_sender_one_delay_notice() {
    // Nothing listens: every attempt fails to connect, for all recipients.
    let port = mailgate_integration_tests::unused_port();
    let (_dir, mailer) = outbox_support::outbox_mailer(
        port,
        &[("mailgate.outbox.delayWarningHours", WARNING_HOURS)],
    );
    let store = mailer.outbox().unwrap();
    let worker = Worker::new(&mailer).unwrap();
    let to = Envelope::new(Some(APP.parse().unwrap()), vec![GOOD.parse().unwrap()]).unwrap();
    let id = mailer.enqueue_raw(&to, ORIGINAL.as_bytes()).await.unwrap();
    worker.deliver_id(id).await.unwrap().expect("queued");
    assert_eq!(store.list(true).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for _ in 0..3 {
        worker.deliver_id(id).await.unwrap().expect("still queued");
    }
    let all = store.list(true).await.unwrap();
    assert_eq!(all.len(), 2, "one notice for three late attempts: {all:#?}");
    assert_eq!(all[0].delay_warned, [GOOD]);
    let notice = &all[1];
    assert_eq!(
        (notice.from.as_str(), notice.to.as_slice()),
        ("", [APP.to_owned()].as_slice())
    );
    // Read it as the next worker would send it.
    let claimed = store
        .claim_one(
            notice.id,
            "reader",
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .await
        .unwrap()
        .expect("the notice is queued");
    let parsed = MessageParser::default()
        .parse(claimed.bytes.as_slice())
        .unwrap();
    let fields = match &parsed.parts[2].body {
        PartType::Text(t) => t.to_string(),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b).into_owned(),
        PartType::Message(m) => String::from_utf8_lossy(m.raw_message()).into_owned(),
        other => panic!("{other:?}"),
    };
    let groups = groups(&fields);
    assert_eq!(groups.len(), 2, "{fields}");
    assert_eq!(
        get(&groups[1], "Final-Recipient"),
        [format!("rfc822; {GOOD}")]
    );
    assert_eq!(get(&groups[1], "Action"), ["delayed"], "{fields}");
    assert_eq!(get(&groups[1], "Status"), ["4.0.0"], "{fields}");
    let diag = get(&groups[1], "Diagnostic-Code");
    assert!(
        diag.len() == 1 && diag[0].starts_with("X-mailgate; "),
        "{fields}"
    );
    assert_eq!(get(&groups[1], "Will-Retry-Until").len(), 1, "{fields}");
    mailer.close().await;
}
