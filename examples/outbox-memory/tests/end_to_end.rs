//! The in-memory store in a program: registered beside the built-in
//! strategies and stores, chosen by `mailgate.outbox.url=memory:`, and
//! delivered from by the outbox worker.

use std::time::Duration;

use mailgate::outbox::Worker;
use mailgate::{Mailer, OutgoingMessage, Registry};
use mailgate_devserver::DevSmtpServer;

fn registry() -> Registry {
    mailgate::default_registry()
        .and_then(|r| r.with_store(&mailgate_outbox_memory::DESCRIPTOR))
        .expect("no other store takes `memory:`")
}

fn builder(port: u16, url: &str) -> mailgate::MailerBuilder {
    Mailer::builder()
        .registry(registry())
        .server("127.0.0.1", port)
        .no_tls()
        .open()
        .sender("alm@example.com")
        .property("mailgate.outbox.url", url)
}

#[tokio::test]
async fn a_message_enqueued_in_memory_is_delivered_by_the_worker() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let mailer = builder(server.port(), "memory:").build().unwrap();
    assert!(registry().store_names().contains(&"memory"));
    let store = mailer.outbox().unwrap();
    assert_eq!(store.describe(), "memory (this process)");
    let id = mailer
        .enqueue_message(OutgoingMessage {
            to: vec!["dev@example.com".into()],
            subject: "Build 42".into(),
            body: "kept in memory\n".into(),
            ..OutgoingMessage::default()
        })
        .await
        .unwrap();
    assert_eq!(store.queued_ids().await.unwrap(), [id]);
    let worker = Worker::new(&mailer).unwrap();
    assert_eq!(worker.deliver_due().await.unwrap(), 1);
    let received = server.wait_for_messages(1, Duration::from_secs(10)).await;
    assert_eq!(received[0].subject().as_deref(), Some("Build 42"));
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.queued, stats.sent, stats.recipients.sent), (0, 1, 1));
    assert!(store.list(true).await.unwrap()[0].body_dropped);
    server.shutdown().await;
}

#[test]
fn a_memory_url_with_more_after_the_colon_names_the_key() {
    let err = builder(25, "memory:named").build().unwrap_err();
    assert_eq!(err.exit_code(), 78, "{err}");
    let text = err.to_string();
    assert!(text.contains("mailgate.outbox.url"), "{text}");
    assert!(
        text.contains("`memory:`, nothing after the colon"),
        "{text}"
    );
}
