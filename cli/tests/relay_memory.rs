//! The relay's memory: four clients sending a 25 MiB 8-bit message each
//! at the same time keep `mailgate relay` under 300 MB of peak resident
//! set (issue 17: it took 552-669 MB), every one of them stored whole;
//! beyond `mailgate.relay.maxDataMemoryMB` a client is told 452 and its
//! retry goes through.

mod relay_support;

use std::time::{Duration, Instant};

use relay_support::memory::{concurrent_big_messages, occupy_the_worker, silent_upstream_folder};
use relay_support::{Client, Relay, queue_all};

/// The size of each message on the wire: just under the default
/// `maxMessageBytes` (25 MiB).
const SIZE: usize = 25 * 1024 * 1024 - 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_25_mib_messages_stay_under_300_mb() {
    let (dir, _silent) = silent_upstream_folder(&[]);
    let relay = Relay::start(dir.path());
    relay_support::blocking(|| occupy_the_worker(&relay, dir.path()));
    let run = relay_support::blocking(|| concurrent_big_messages(&relay, 4, SIZE, true));
    eprintln!(
        "relay peak RSS: {} KiB before, {} KiB after 4 x {} bytes in {:?}",
        run.before_kib, run.peak_kib, run.size, run.elapsed
    );
    for (code, text) in &run.replies {
        assert_eq!(*code, 250, "{text}");
    }
    // Stored whole: the trace field and the completion only add.
    let stored = queue_all(dir.path());
    let big: Vec<u64> = stored
        .iter()
        .filter(|m| m["subject"] == "big")
        .map(|m| m["size"].as_u64().expect("a size"))
        .collect();
    assert_eq!(big.len(), 4, "{stored:?}");
    for size in big {
        // The wire form ends with `.CRLF`, which is not stored.
        assert!(
            size > (run.size - 3) as u64 && size < (run.size + 2048) as u64,
            "{size}"
        );
    }
    assert!(
        run.peak_kib * 1024 < 300_000_000,
        "peak RSS {} KiB, over 300 MB (before the messages: {} KiB)",
        run.peak_kib,
        run.before_kib
    );
}

/// An ASCII message of about `n` bytes: a Subject, then lines of 78.
fn ascii_message(subject: &str, n: usize) -> (String, String) {
    let head = format!(
        "From: Build Bot <{}>\r\nTo: dev@example.com\r\nSubject: {subject}\r\n\r\n",
        relay_support::SENDER
    );
    let mut body = String::new();
    let mut i = 0;
    while head.len() + body.len() + 80 <= n {
        body.push_str(&format!("{subject} {i:08} {}\r\n", "x".repeat(66)));
        i += 1;
    }
    (format!("{head}{body}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_data_memory_data_gets_452_and_what_is_stored_is_whole() {
    let server = mailgate_devserver::DevSmtpServer::builder()
        .start()
        .await
        .expect("dev server");
    let dir = relay_support::relay_folder(
        server.port(),
        &[
            ("mailgate.relay.maxDataMemoryMB", "1"),
            ("mailgate.relay.maxMessageBytes", "700000"),
        ],
    );
    let relay = Relay::start(dir.path());
    let (a_text, a_body) = ascii_message("a", 600_000);
    let (b_text, b_body) = ascii_message("b", 600_000);
    let log_from = relay.log().len();
    relay_support::blocking(|| {
        let sender = relay_support::SENDER;
        let begin = |text: &str| {
            let mut c = Client::greeted(relay.addr);
            c.expect("EHLO client.example", 250);
            c.expect(&format!("MAIL FROM:<{sender}> SIZE={}", text.len()), 250);
            c.expect("RCPT TO:<dev@example.com>", 250);
            c
        };
        // A holds 600 kB of the 1 MiB from its DATA on.
        let mut a = begin(&a_text);
        a.expect("DATA", 354);
        a.send(&a_text.as_bytes()[..300_000]).expect("send");
        // B finds no room, waits two seconds for it, and is told to retry.
        let mut b = begin(&b_text);
        let asked = Instant::now();
        let (code, text) = b.cmd("DATA");
        assert_eq!(code, 452, "{text}");
        assert!(
            text.starts_with("4.3.1 Insufficient system storage"),
            "{text}"
        );
        assert!(
            asked.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            asked.elapsed()
        );
        a.send(&a_text.as_bytes()[300_000..]).expect("send");
        a.expect(".", 250);
        // The retry: A's share is back.
        b.expect("RSET", 250);
        b.expect(&format!("MAIL FROM:<{sender}> SIZE={}", b_text.len()), 250);
        b.expect("RCPT TO:<dev@example.com>", 250);
        b.expect("DATA", 354);
        b.send(b_text.as_bytes()).expect("send");
        b.expect(".", 250);
    });
    relay.wait_log(log_from, "memory budget for message data is used up");
    let got = server.wait_for_messages(2, relay_support::WAIT).await;
    assert_eq!(got.len(), 2);
    for (subject, body) in [("a", &a_body), ("b", &b_body)] {
        let message = got
            .iter()
            .find(|m| {
                m.headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("subject") && v == subject)
            })
            .unwrap_or_else(|| panic!("message {subject} arrived"));
        let text = String::from_utf8_lossy(&message.data);
        let (_, arrived_body) = text.split_once("\r\n\r\n").expect("a header and a body");
        assert!(
            arrived_body == body.as_str(),
            "the body of {subject} arrived changed"
        );
    }
    server.shutdown().await;
}

#[test]
fn a_budget_below_max_message_bytes_is_a_configuration_error() {
    let dir = relay_support::relay_folder(25, &[("mailgate.relay.maxDataMemoryMB", "1")]);
    let ran = relay_support::mailgate(dir.path(), &["relay"]);
    assert_eq!(ran.status.code(), Some(78), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("mailgate.relay.maxDataMemoryMB"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("mailgate.relay.maxMessageBytes"),
        "{}",
        ran.stderr
    );
}
