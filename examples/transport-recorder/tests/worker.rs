//! The recorder as a mailer's transport: direct sends and the outbox worker
//! deliver through it, per recipient, and a refused recipient's delivery
//! status notification goes back to the sender through it too. Nothing
//! here touches SMTP.

use std::sync::Arc;

use mailgate::outbox::Worker;
use mailgate::{Mailer, OutgoingMessage};
use mailgate_transport_recorder::Recorder;

const SENDER: &str = "alm@example.com";
const CI: &str = "ci@example.com";

fn mailer(recorder: &Recorder, dir: &std::path::Path) -> Mailer {
    Mailer::builder()
        // The settings still name a server; the transport does not use it.
        .server("smtp.invalid", 25)
        .no_tls()
        .sender(SENDER)
        .open()
        .property(
            "mailgate.outbox.url",
            format!("sqlite:{}", dir.join("outbox.db").display()),
        )
        .outbox(mailgate::open_outbox)
        .transport(Arc::new(recorder.clone()))
        .build()
        .expect("mailer builds")
}

#[tokio::test]
async fn a_direct_send_goes_through_the_transport_per_recipient() {
    let dir = tempfile::tempdir().expect("temp dir");
    let recorder = Recorder::new().refusing("nobody@example.com");
    let mailer = mailer(&recorder, dir.path());

    let delivery = mailer
        .send_message(OutgoingMessage {
            to: vec!["dev@example.com".into(), "nobody@example.com".into()],
            subject: "Build 42".into(),
            body: "passed, grüße".into(),
            ..Default::default()
        })
        .await
        .expect("sent to the accepted recipient");
    assert_eq!(delivery.accepted, ["dev@example.com"]);
    assert_eq!(delivery.refused.len(), 1);
    assert_eq!(delivery.refused[0].address, "nobody@example.com");
    assert_eq!(delivery.server, "recorder");

    let got = recorder.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, SENDER);
    assert_eq!(got[0].to, ["dev@example.com"]);
    let text = String::from_utf8_lossy(&got[0].bytes);
    assert!(text.contains("Subject: Build 42"), "{text}");
    // Composed for a destination that takes 8-bit text as it is.
    assert!(text.contains("grüße"), "{text}");

    // All or nothing: no one gets it.
    let strict = Mailer::builder()
        .server("smtp.invalid", 25)
        .no_tls()
        .sender(SENDER)
        .open()
        .all_or_nothing(true)
        .transport(Arc::new(recorder.clone()))
        .build()
        .expect("mailer builds");
    let err = strict
        .sendmail(SENDER, "dev@example.com, nobody@example.com", "x", "y")
        .await
        .expect_err("refused");
    assert_eq!(err.exit_code(), 65, "{err}");
    assert_eq!(recorder.delivered().len(), 1);
}

#[tokio::test]
async fn the_outbox_worker_delivers_through_the_transport_and_bounces_through_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let recorder = Recorder::new().refusing("nobody@example.com");
    let mailer = mailer(&recorder, dir.path());

    let id = mailer
        .enqueue_message(OutgoingMessage {
            // Not the configured sender: mailgate's own notifications get no DSN.
            from: Some(CI.into()),
            to: vec!["dev@example.com".into(), "nobody@example.com".into()],
            subject: "Nightly".into(),
            body: "report".into(),
            ..Default::default()
        })
        .await
        .expect("queued");
    assert!(
        recorder.delivered().is_empty(),
        "nothing sent before a worker runs"
    );

    let worker = Worker::new(&mailer).expect("worker");
    // The message, then the DSN the refusal produced (queued by the first round).
    while worker.deliver_due().await.expect("delivered") > 0 {}

    let got = recorder.delivered();
    let envelopes: Vec<(&str, &[String])> = got
        .iter()
        .map(|r| (r.from.as_str(), r.to.as_slice()))
        .collect();
    assert_eq!(got.len(), 2, "{envelopes:?}");
    assert_eq!(got[0].to, ["dev@example.com"]);
    assert!(String::from_utf8_lossy(&got[0].bytes).contains("Subject: Nightly"));
    // The delivery status notification: from the null sender, to the
    // message's sender, naming the refused recipient and the reply.
    assert_eq!(got[1].from, "");
    assert_eq!(got[1].to, [CI]);
    let dsn = String::from_utf8_lossy(&got[1].bytes);
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; nobody@example.com"),
        "{dsn}"
    );
    assert!(dsn.contains("5.1.1"), "{dsn}");
    assert!(dsn.contains("Reporting-MTA"), "{dsn}");

    let stats = mailer
        .outbox()
        .expect("outbox")
        .stats()
        .await
        .expect("stats");
    assert_eq!(stats.queued, 0, "{stats:?}");
    let _ = id;
    mailer.close().await;
}
