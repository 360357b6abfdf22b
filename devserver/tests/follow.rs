//! Following arrivals (`mailgate demo --serve`'s report loop): each wait
//! returns only the messages after those already seen, in order, none twice.

mod common;

use std::time::Duration;

use common::Client;
use mailgate_devserver::DevSmtpServer;

fn message(i: usize) -> String {
    format!("Subject: m{i}\r\n\r\nbody {i}\r\n")
}

#[tokio::test]
async fn waiting_after_what_was_seen_returns_only_the_new_messages() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    assert_eq!(server.message_count(), 0);
    // Nothing new: the wait times out empty.
    assert!(
        server
            .wait_for_messages_after(0, Duration::from_millis(50))
            .await
            .is_empty()
    );

    let sender = {
        let addr = server.addr();
        tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.hello().await;
            for i in 0..50 {
                let reply = c
                    .send_mail("a@example.com", &["b@example.com"], &message(i))
                    .await;
                assert_eq!(reply.code, 250, "{reply:?}");
            }
        })
    };
    let mut seen = 0;
    let mut subjects = Vec::new();
    while seen < 50 {
        let new = server
            .wait_for_messages_after(seen, Duration::from_secs(10))
            .await;
        assert!(!new.is_empty(), "no progress after {seen}");
        seen += new.len();
        subjects.extend(new.iter().map(|m| m.subject().unwrap_or_default()));
    }
    sender.await.unwrap();
    let expected: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(subjects, expected);
    assert_eq!(server.message_count(), 50);
    assert_eq!(server.messages_after(48).len(), 2);
    assert_eq!(
        server.messages_after(48)[0].subject().as_deref(),
        Some("m48")
    );
    assert!(server.messages_after(50).is_empty());
    // After `clear` the count starts again; a stale `seen` gets nothing.
    server.clear();
    assert!(server.messages_after(50).is_empty());
}
