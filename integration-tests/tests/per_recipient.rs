//! Per-recipient delivery end to end, against Nodemailer's smtp-server and
//! aiosmtpd refusing some recipients at RCPT: the outbox sends to the
//! accepted ones, keeps a state per recipient, retries only the recipients
//! still due, and tells an observer what became of each.

#![cfg(all(feature = "open", feature = "outbox"))]

mod outbox_support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mailgate::outbox::{
    DeliveryObserver, DeliveryOutcome, QueuedMessage, RecipientEvent, Status, Worker,
};
use mailgate::{Mailer, OutgoingMessage};
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerKind, SmtpPeer};

const WAIT: Duration = Duration::from_secs(10);
const GOOD1: &str = "good1@example.com";
const BAD: &str = "bad@example.com";
const LATER: &str = "later@example.com";
const GOOD2: &str = "good2@example.com";

fn mailer_for(port: u16, outbox: &Path) -> (ConfigDir, Mailer) {
    let url = format!("sqlite:{}", outbox.display());
    outbox_support::outbox_mailer(port, &[("mailgate.outbox.url", url.as_str())])
}

#[derive(Default)]
struct Recorder(Mutex<Vec<RecipientEvent>>);

#[mailgate::async_trait]
impl DeliveryObserver for Recorder {
    async fn on_attempt(
        &self,
        _message: &QueuedMessage,
        _original: &[u8],
        events: &[RecipientEvent],
    ) {
        self.0.lock().unwrap().extend_from_slice(events);
    }
}

fn listed(m: &[QueuedMessage], id: i64) -> QueuedMessage {
    m.iter().find(|m| m.id == id).expect("listed").clone()
}

fn status_of(m: &QueuedMessage, address: &str) -> Status {
    m.recipients()
        .into_iter()
        .find(|r| r.address == address)
        .expect("a recipient")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recipient_does_not_stop_the_others_and_a_retry_goes_only_to_the_due() {
    for kind in [PeerKind::Node, PeerKind::Python] {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = tmp.path().join("outbox.db");
        let refusing = SmtpPeer::start(
            kind,
            PeerConfig::new()
                .fail_rcpt_for(BAD, 550)
                .fail_rcpt_for(LATER, 451),
        );
        let (_dir, mailer) = mailer_for(refusing.port(), &outbox);
        let recorder = Arc::new(Recorder::default());
        let worker = Worker::new(&mailer)
            .unwrap()
            .observe(Arc::clone(&recorder) as Arc<dyn DeliveryObserver>);
        let id = mailer
            .enqueue_message(OutgoingMessage {
                to: vec![GOOD1.into(), BAD.into(), LATER.into(), GOOD2.into()],
                subject: "four recipients".into(),
                body: "per recipient\n".into(),
                ..OutgoingMessage::default()
            })
            .await
            .unwrap();

        let outcome = worker.deliver_id(id).await.unwrap().expect("attempted");
        assert!(
            matches!(outcome, DeliveryOutcome::Recipients { .. }),
            "{kind}: {outcome:?}"
        );
        assert_eq!(outcome.status(), Status::Queued, "{kind}");
        let received = refusing.wait_for_messages(1, WAIT);
        assert_eq!(received.len(), 1, "{kind}");
        assert_eq!(received[0].to, [GOOD1, GOOD2], "{kind}");

        let store = mailer.outbox().unwrap();
        let m = listed(&store.list(false).await.unwrap(), id);
        assert_eq!(m.status, Status::Queued, "{kind}");
        assert_eq!(status_of(&m, GOOD1), Status::Sent);
        assert_eq!(status_of(&m, GOOD2), Status::Sent);
        assert_eq!(status_of(&m, BAD), Status::Dead);
        assert_eq!(status_of(&m, LATER), Status::Queued);
        let bad = m
            .recipients()
            .into_iter()
            .find(|r| r.address == BAD)
            .unwrap();
        assert!(
            bad.last_error
                .as_deref()
                .unwrap_or_default()
                .starts_with("550"),
            "{kind}: {bad:?}"
        );
        // The worker's own counts come from the same events (its
        // `OutcomeCounts` observer): what `mailgate relay`'s metrics show.
        let counted = worker.stats().recipients;
        assert_eq!(
            (counted.delivered, counted.deferred, counted.dead),
            (2, 1, 1),
            "{kind}"
        );
        let stats = store.stats().await.unwrap();
        assert_eq!(
            (
                stats.recipients.queued,
                stats.recipients.sent,
                stats.recipients.dead
            ),
            (1, 2, 1),
            "{kind}"
        );
        {
            let events = recorder.0.lock().unwrap();
            let kinds: Vec<(&str, &str)> = events
                .iter()
                .map(|e| {
                    let what = match e {
                        RecipientEvent::Delivered { .. } => "delivered",
                        RecipientEvent::Deferred { .. } => "deferred",
                        RecipientEvent::Delayed { .. } => "delayed",
                        RecipientEvent::Dead { .. } => "dead",
                    };
                    (e.recipient(), what)
                })
                .collect();
            assert_eq!(
                kinds,
                [
                    (GOOD1, "delivered"),
                    (BAD, "dead"),
                    (LATER, "deferred"),
                    (GOOD2, "delivered")
                ],
                "{kind}"
            );
        }

        // The upstream takes everyone now: the retry goes to `later` alone,
        // and the message ends dead (one recipient is) with every record kept.
        let accepting = SmtpPeer::start(kind, PeerConfig::new());
        let (_dir2, mailer2) = mailer_for(accepting.port(), &outbox);
        let worker2 = Worker::new(&mailer2).unwrap();
        assert!(store.retry(id, SystemTime::now()).await.unwrap());
        let m = listed(&store.list(false).await.unwrap(), id);
        assert_eq!(
            m.due(),
            [BAD, LATER],
            "{kind}: retry makes the dead recipient due again, never the sent ones"
        );
        let outcome = worker2.deliver_id(id).await.unwrap().expect("attempted");
        assert_eq!(outcome.status(), Status::Sent, "{kind}: {outcome:?}");
        let received = accepting.wait_for_messages(1, WAIT);
        assert_eq!(received.len(), 1, "{kind}");
        assert_eq!(received[0].to, [BAD, LATER], "{kind}");
        let m = listed(&store.list(true).await.unwrap(), id);
        assert_eq!(m.status, Status::Sent);
        for address in [GOOD1, BAD, LATER, GOOD2] {
            assert_eq!(status_of(&m, address), Status::Sent, "{kind}: {address}");
        }
        mailer.close().await;
        mailer2.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_refused_for_good_with_others_delivered_makes_the_message_dead_after_its_last_retry()
 {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox.db");
    let refusing = SmtpPeer::start(PeerKind::Node, PeerConfig::new().fail_rcpt_for(LATER, 451));
    let (_dir, mailer) = mailer_for(refusing.port(), &outbox);
    let worker = Worker::new(&mailer).unwrap();
    let id = mailer
        .enqueue_message(OutgoingMessage {
            to: vec![GOOD1.into(), LATER.into()],
            subject: "later dies".into(),
            body: "x\n".into(),
            ..OutgoingMessage::default()
        })
        .await
        .unwrap();
    let outcome = worker.deliver_id(id).await.unwrap().unwrap();
    assert_eq!(outcome.status(), Status::Queued);
    // Now the server refuses `later` for good: it is dead, the message too,
    // and good1 was never sent twice.
    let refusing_for_good =
        SmtpPeer::start(PeerKind::Node, PeerConfig::new().fail_rcpt_for(LATER, 550));
    let (_dir2, mailer2) = mailer_for(refusing_for_good.port(), &outbox);
    let store = mailer.outbox().unwrap();
    assert!(store.retry(id, SystemTime::now()).await.unwrap());
    let outcome = Worker::new(&mailer2)
        .unwrap()
        .deliver_id(id)
        .await
        .unwrap()
        .unwrap();
    match &outcome {
        DeliveryOutcome::Recipients {
            finished,
            next_attempt,
            exit_code,
            ..
        } => {
            assert_eq!(*next_attempt, None);
            assert_eq!(*exit_code, 65);
            assert_eq!(finished.len(), 2, "{finished:?}");
        }
        other => panic!("expected per-recipient outcome, got {other:?}"),
    }
    assert_eq!(outcome.status(), Status::Dead);
    assert_eq!(refusing.wait_for_messages(1, WAIT).len(), 1);
    assert!(refusing_for_good.messages().is_empty());
    let m = listed(&store.list(false).await.unwrap(), id);
    assert_eq!(m.status, Status::Dead);
    assert_eq!(status_of(&m, GOOD1), Status::Sent);
    assert_eq!(status_of(&m, LATER), Status::Dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailer_can_deliver_its_outbox_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox.db");
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new());
    let (dir, _) = mailer_for(peer.port(), &outbox);
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .deliver_in_background(true)
        .build()
        .expect("mailer builds");
    for i in 0..3 {
        mailer
            .enqueue_message(OutgoingMessage {
                to: vec![GOOD1.into()],
                subject: format!("background {i}"),
                body: "b\n".into(),
                ..OutgoingMessage::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(peer.wait_for_messages(3, WAIT).len(), 3);
    // close() stops the worker after what it has in hand.
    mailer.close().await;
    let stats = mailer.outbox().unwrap().stats().await.unwrap();
    assert_eq!(stats.sent, 3);
}

#[test]
fn deliver_in_background_needs_a_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async { mailer_for(1, &tmp.path().join("o.db")) })
    };
    let err = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .deliver_in_background(true)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
