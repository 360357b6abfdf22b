//! Several `mailgate deliver` processes sharing one PostgreSQL outbox (a
//! real server started by the test): every message arrives exactly once,
//! and the messages a killed worker held are delivered by the others once
//! its lease runs out.

#![cfg(all(feature = "outbox-postgres", feature = "open"))]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailgate::{Mailer, OutgoingMessage};
use mailgate_devserver::{DevSmtpServer, Fault, Stage};
use mailgate_integration_tests::{ConfigDir, PgServer};

fn folder(port: u16, url: &str, extra: &[(&str, &str)]) -> ConfigDir {
    let port = port.to_string();
    let mut is = vec![
        ("mksis.logging.email.from", "alm@example.com"),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
        ("mksis.logging.email.server.port", port.as_str()),
        ("mailgate.outbox.url", url),
    ];
    is.extend_from_slice(extra);
    ConfigDir::with_properties(&is, &[])
}

async fn enqueue(dir: &ConfigDir, n: usize) {
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .outbox(mailgate::open_outbox)
        .build()
        .expect("mailer builds");
    for i in 0..n {
        mailer
            .enqueue_message(OutgoingMessage {
                to: vec!["dev@example.com".into()],
                subject: format!("pg {i}"),
                body: "shared outbox\n".into(),
                ..OutgoingMessage::default()
            })
            .await
            .expect("enqueued");
    }
}

fn deliver(dir: &ConfigDir) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("--config-dir")
        .arg(dir.path())
        .arg("deliver")
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mailgate deliver starts")
}

fn stop(mut worker: Child) {
    // SAFETY: the pid is our child, not yet reaped.
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = worker.try_wait().unwrap() {
            assert!(status.success(), "deliver exits 0 on SIGTERM: {status:?}");
            return;
        }
        assert!(Instant::now() < deadline, "deliver stops after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How often each subject arrived.
fn arrivals(server: &DevSmtpServer) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in server.messages() {
        *counts.entry(m.subject().unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

async fn wait_for(server: &DevSmtpServer, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while arrivals(server).len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} distinct messages arrived",
            arrivals(server).len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_deliver_a_thousand_messages_exactly_once() {
    let pg = PgServer::start();
    let server = DevSmtpServer::builder().start().await.unwrap();
    let dir = folder(server.port(), &pg.url(), &[]);
    enqueue(&dir, 1000).await;
    let workers: Vec<Child> = (0..3).map(|_| deliver(&dir)).collect();
    wait_for(&server, 1000, Duration::from_secs(120)).await;
    for w in workers {
        stop(w);
    }
    let counts = arrivals(&server);
    assert_eq!(counts.len(), 1000);
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "delivered twice: {doubled:?}");
    // All three took part.
    assert!(
        server.connection_count() >= 3,
        "{}",
        server.connection_count()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_messages_go_out_through_the_others() {
    let pg = PgServer::start();
    let server = DevSmtpServer::builder()
        .fault(Fault::delay(Stage::DataEnd, Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let extra = [
        ("mailgate.outbox.leaseSeconds", "2"),
        ("mailgate.smtp.maxConnections", "2"),
    ];
    let dir = folder(server.port(), &pg.url(), &extra);
    enqueue(&dir, 60).await;
    let mut victim = deliver(&dir);
    // Let the victim hold messages, then kill it mid-delivery.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.messages().len() < 6 {
        assert!(Instant::now() < deadline, "the first worker delivers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let held = pg.psql(
        pg.database(),
        "SELECT count(*) FROM outbox_messages WHERE status = 'sending'",
    );
    let others: Vec<Child> = (0..2).map(|_| deliver(&dir)).collect();
    wait_for(&server, 60, Duration::from_secs(60)).await;
    for w in others {
        stop(w);
    }
    let counts = arrivals(&server);
    assert_eq!(counts.len(), 60, "every message arrived");
    let doubled: usize = counts.values().map(|n| n - 1).sum();
    // Only a message whose 250 came back before the kill but was not yet
    // marked can come twice: at most one per connection of the victim.
    assert!(doubled <= 2, "{doubled} duplicates (held at kill: {held})");
    let sending = pg.psql(
        pg.database(),
        "SELECT count(*) FROM outbox_messages WHERE status <> 'sent'",
    );
    assert_eq!(sending.trim(), "0", "nothing left leased or queued");
    server.shutdown().await;
}
