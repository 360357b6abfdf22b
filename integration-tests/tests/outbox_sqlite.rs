//! The outbox through the library on SQLite, with an injected clock: the
//! back-off between attempts, the maximum age, permanent failures, and the
//! library API (`Mailer::enqueue*`, `Worker`).

#![cfg(all(feature = "open", feature = "outbox"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use mailgate::outbox::{DeliveryOutcome, Status, Worker};
use mailgate::{Mailer, OutgoingMessage};
use mailgate_devserver::{DevSmtpServer, Fault, Stage};
use mailgate_integration_tests::{ConfigDir, unused_port};

fn open_mailer(dir: &ConfigDir) -> Mailer {
    Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .expect("mailer builds")
}

fn folder(port: u16, extra: &[(&str, &str)]) -> ConfigDir {
    let port = port.to_string();
    let mut is = vec![
        ("mksis.logging.email.from", "alm@example.com"),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
        ("mksis.logging.email.server.port", port.as_str()),
        ("mailgate.smtp.timeoutSeconds", "5"),
    ];
    is.extend_from_slice(extra);
    ConfigDir::with_properties(&is, &[])
}

fn message(subject: &str) -> OutgoingMessage {
    OutgoingMessage {
        to: vec!["dev@example.com".into()],
        subject: subject.into(),
        body: "outbox body\n".into(),
        ..OutgoingMessage::default()
    }
}

/// A clock the test moves: the real time at start plus an offset.
#[derive(Clone)]
struct Clock {
    start: SystemTime,
    offset_ms: Arc<AtomicU64>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            start: SystemTime::now(),
            offset_ms: Arc::new(AtomicU64::new(0)),
        }
    }
    fn now(&self) -> SystemTime {
        self.start + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
    fn set(&self, offset: Duration) {
        self.offset_ms
            .store(offset.as_millis() as u64, Ordering::SeqCst);
    }
    fn worker(&self, mailer: &Mailer) -> Worker {
        let clock = self.clone();
        Worker::new(mailer).unwrap().with_clock(move || clock.now())
    }
}

fn retry_at(outcome: Option<DeliveryOutcome>) -> SystemTime {
    match outcome {
        Some(DeliveryOutcome::Retry { next_attempt, .. }) => next_attempt,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[tokio::test]
async fn back_off_doubles_with_jitter_and_waits_its_time() {
    // initial 30 s, max 100 s: 15-30, 30-60, 50-100, 50-100 s (half to whole).
    let dir = folder(
        unused_port(),
        &[
            ("mailgate.outbox.retry.initialSeconds", "30"),
            ("mailgate.outbox.retry.maxSeconds", "100"),
        ],
    );
    let mailer = open_mailer(&dir);
    let store = Arc::clone(mailer.outbox().unwrap());
    let clock = Clock::new();
    let worker = clock.worker(&mailer);
    let id = mailer.enqueue_message(message("backoff")).await.unwrap();

    let mut tried_at = clock.now();
    let mut next = retry_at(worker.deliver_id(id).await.unwrap());
    for (attempt, (lo, hi)) in [(15, 30), (30, 60), (50, 100), (50, 100)]
        .into_iter()
        .enumerate()
    {
        let delay = next.duration_since(tried_at).unwrap();
        assert!(
            delay >= Duration::from_secs(lo) - Duration::from_millis(5)
                && delay <= Duration::from_secs(hi) + Duration::from_millis(5),
            "after attempt {}: delay {delay:?} not in {lo}-{hi} s",
            attempt + 1
        );
        // Not due a moment before its time; due at it.
        clock.set(next.duration_since(clock.start).unwrap() - Duration::from_millis(500));
        assert_eq!(worker.deliver_due().await.unwrap(), 0, "not due yet");
        clock.set(next.duration_since(clock.start).unwrap() + Duration::from_millis(1));
        tried_at = clock.now();
        assert_eq!(worker.deliver_due().await.unwrap(), 1, "due");
        next = store.list(false).await.unwrap()[0].next_attempt.unwrap();
    }
    let m = &store.list(false).await.unwrap()[0];
    assert_eq!(m.attempts, 5);
    assert!(m.last_error.as_deref().unwrap().contains("cannot connect"));
}

#[tokio::test]
async fn too_old_is_dead_and_a_permanent_failure_is_dead_at_once() {
    let dir = folder(unused_port(), &[("mailgate.outbox.maxAgeHours", "1")]);
    let mailer = open_mailer(&dir);
    let clock = Clock::new();
    let worker = clock.worker(&mailer);
    let id = mailer.enqueue_message(message("old")).await.unwrap();
    clock.set(Duration::from_secs(3600));
    match worker.deliver_id(id).await.unwrap() {
        Some(DeliveryOutcome::Dead { error, exit_code }) => {
            assert!(error.contains("maxAgeHours"), "{error}");
            assert_eq!(exit_code, 75);
        }
        other => panic!("expected dead, got {other:?}"),
    }

    let server = DevSmtpServer::builder()
        .fault(Fault::reply(Stage::Mail, 553, "5.7.1 Sender rejected"))
        .start()
        .await
        .unwrap();
    let dir = folder(server.port(), &[]);
    let mailer = open_mailer(&dir);
    let id = mailer.enqueue_message(message("refused")).await.unwrap();
    let worker = Worker::new(&mailer).unwrap();
    match worker.deliver_id(id).await.unwrap() {
        Some(DeliveryOutcome::Dead { error, exit_code }) => {
            assert!(
                error.contains("553") && error.contains("Sender rejected"),
                "{error}"
            );
            assert_eq!(exit_code, 77);
        }
        other => panic!("expected dead, got {other:?}"),
    }
    let m = &mailer.outbox().unwrap().list(false).await.unwrap()[0];
    assert_eq!(m.status, Status::Dead);
    assert_eq!(m.attempts, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn enqueue_keeps_the_message_as_it_will_be_sent() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let dir = folder(server.port(), &[]);
    let mailer = open_mailer(&dir);
    let store = Arc::clone(mailer.outbox().unwrap());
    let id = mailer.enqueue_message(message("kept")).await.unwrap();
    let listed = store.list(false).await.unwrap();
    let stored_id = listed[0]
        .message_id
        .clone()
        .expect("a Message-ID is fixed at enqueue");
    assert_eq!(listed[0].subject, "kept");
    let worker = Worker::new(&mailer).unwrap();
    assert!(matches!(
        worker.deliver_id(id).await.unwrap(),
        Some(DeliveryOutcome::Sent(_))
    ));
    let received = server.wait_for_messages(1, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&received[0].data).into_owned();
    assert!(text.contains(&format!("Message-ID: {stored_id}")), "{text}");

    // A lettre message and a prepared one go the same way.
    let lettre_message = mailgate::Message::builder()
        .from("alm@example.com".parse().unwrap())
        .to("qa@example.com".parse().unwrap())
        .subject("lettre")
        .body("hello".to_owned())
        .unwrap();
    mailer.enqueue(&lettre_message).await.unwrap();
    let envelope = mailgate::Envelope::new(
        Some("alm@example.com".parse().unwrap()),
        vec!["ops@example.com".parse().unwrap()],
    )
    .unwrap();
    mailer
        .enqueue_raw(&envelope, b"Subject: prepared\r\n\r\nbody\r\n")
        .await
        .unwrap();
    assert_eq!(worker.deliver_due().await.unwrap(), 2);
    let received = server.wait_for_messages(3, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 3);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.sent, stats.queued), (3, 0));
    server.shutdown().await;
}

/// The SQLite store with a slow `claim`, and a signal when one begins;
/// or, with `announce`, one that announces new work as a shared database
/// does ([`OutboxStore::watch`](mailgate::outbox::OutboxStore::watch)): a
/// watch that fails first, then wakes on each `announce`.
#[derive(Debug)]
struct SlowClaim {
    inner: Arc<dyn mailgate::outbox::OutboxStore>,
    claiming: Arc<tokio::sync::Notify>,
    slow: bool,
    announce: Option<Arc<tokio::sync::Notify>>,
    watches: Arc<AtomicU64>,
}

/// The watch [`SlowClaim`] gives: its first `changed` fails (a lost
/// connection), the others wait for `announce`.
struct Announced {
    announce: Arc<tokio::sync::Notify>,
    first: bool,
}

#[mailgate::async_trait]
impl mailgate::outbox::WorkWatch for Announced {
    async fn changed(&mut self) -> mailgate::Result<()> {
        if std::mem::take(&mut self.first) {
            return Err(mailgate::Error::Usage(
                "the listening connection dropped".into(),
            ));
        }
        self.announce.notified().await;
        Ok(())
    }
}

#[mailgate::async_trait]
impl mailgate::outbox::OutboxStore for SlowClaim {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn enqueue(
        &self,
        m: mailgate::outbox::NewMessage,
    ) -> mailgate::Result<mailgate::outbox::MessageId> {
        self.inner.enqueue(m).await
    }
    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        limit: usize,
        now: SystemTime,
    ) -> mailgate::Result<Vec<mailgate::outbox::Claimed>> {
        self.claiming.notify_one();
        if self.slow {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.inner.claim(worker, lease, limit, now).await
    }
    async fn claim_one(
        &self,
        id: mailgate::outbox::MessageId,
        worker: &str,
        lease: Duration,
        now: SystemTime,
    ) -> mailgate::Result<Option<mailgate::outbox::Claimed>> {
        self.inner.claim_one(id, worker, lease, now).await
    }
    async fn complete(
        &self,
        id: mailgate::outbox::MessageId,
        worker: &str,
        completion: mailgate::outbox::Completion,
        now: SystemTime,
    ) -> mailgate::Result<bool> {
        self.inner.complete(id, worker, completion, now).await
    }
    async fn release(
        &self,
        ids: &[mailgate::outbox::MessageId],
        worker: &str,
    ) -> mailgate::Result<u64> {
        self.inner.release(ids, worker).await
    }
    async fn list(&self, all: bool) -> mailgate::Result<Vec<mailgate::outbox::QueuedMessage>> {
        self.inner.list(all).await
    }
    async fn queued_ids(&self) -> mailgate::Result<Vec<mailgate::outbox::MessageId>> {
        self.inner.queued_ids().await
    }
    async fn retry(
        &self,
        id: mailgate::outbox::MessageId,
        now: SystemTime,
    ) -> mailgate::Result<bool> {
        self.inner.retry(id, now).await
    }
    async fn retry_dead(&self, now: SystemTime) -> mailgate::Result<u64> {
        self.inner.retry_dead(now).await
    }
    async fn delete(&self, id: mailgate::outbox::MessageId) -> mailgate::Result<bool> {
        self.inner.delete(id).await
    }
    async fn stats(&self) -> mailgate::Result<mailgate::outbox::Stats> {
        self.inner.stats().await
    }
    async fn purge_sent(&self, before: SystemTime) -> mailgate::Result<u64> {
        self.inner.purge_sent(before).await
    }
    async fn next_due(&self) -> mailgate::Result<Option<SystemTime>> {
        self.inner.next_due().await
    }
    async fn watch(&self) -> mailgate::Result<Option<Box<dyn mailgate::outbox::WorkWatch>>> {
        let n = self.watches.fetch_add(1, Ordering::SeqCst);
        Ok(self.announce.clone().map(|announce| {
            Box::new(Announced {
                announce,
                first: n == 0,
            }) as Box<dyn mailgate::outbox::WorkWatch>
        }))
    }
}

#[tokio::test]
async fn a_stop_while_the_batch_is_being_claimed_sends_nothing_of_it() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let dir = folder(server.port(), &[]);
    let claiming = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&claiming);
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .outbox(move |settings| {
            let inner = mailgate::open_outbox(settings)?;
            Ok(Arc::new(SlowClaim {
                inner,
                claiming: notify,
                slow: true,
                announce: None,
                watches: Arc::default(),
            }) as Arc<dyn mailgate::outbox::OutboxStore>)
        })
        .build()
        .unwrap();
    for i in 0..5 {
        mailer
            .enqueue_message(message(&format!("held {i}")))
            .await
            .unwrap();
    }
    let worker = Worker::new(&mailer).unwrap();
    // The stop comes while the first batch is still being claimed.
    let shutdown = async move { claiming.notified().await };
    tokio::time::timeout(Duration::from_secs(20), worker.run(shutdown))
        .await
        .expect("the worker stopped")
        .unwrap();
    assert!(
        server.messages().is_empty(),
        "nothing of the batch was sent"
    );
    let stats = mailer.outbox().unwrap().stats().await.unwrap();
    assert_eq!(stats.queued, 5, "{stats:?}");
    server.shutdown().await;
}

/// The facade's registry opens the outbox by itself: with
/// `mailgate.outbox.url` unset, the SQLite file `mailgate-outbox.db` in the
/// config folder (created on first use); a relative `sqlite:` path is
/// relative to the folder too.
#[tokio::test]
async fn the_default_registry_opens_the_default_outbox_in_the_config_folder() {
    let dir = folder(unused_port(), &[]);
    let mailer = open_mailer(&dir);
    let store = mailer.outbox().expect("an outbox without `.outbox(..)`");
    let file = dir.path().join("mailgate-outbox.db");
    assert_eq!(store.local_file(), Some(file.as_path()));
    assert!(!store.created() && !file.exists(), "nothing created yet");
    mailer.enqueue_message(message("default")).await.unwrap();
    assert!(file.exists());

    let dir = folder(unused_port(), &[("mailgate.outbox.url", "sqlite:spool.db")]);
    let mailer = open_mailer(&dir);
    let store = mailer.outbox().unwrap();
    assert_eq!(
        store.local_file(),
        Some(dir.path().join("spool.db").as_path())
    );
    assert!(
        store.describe().starts_with("sqlite "),
        "{}",
        store.describe()
    );
}

/// A store that announces new work wakes an idle worker at once (here: a
/// message stored behind the mailer's back, which alone would wait for the
/// worker's next look, 10 s away when it listens); a watch that fails is
/// dropped and asked for again.
#[tokio::test]
async fn a_store_that_announces_new_work_wakes_an_idle_worker_at_once() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let dir = folder(server.port(), &[]);
    let announce = Arc::new(tokio::sync::Notify::new());
    let watches = Arc::new(AtomicU64::new(0));
    let (a, w) = (Arc::clone(&announce), Arc::clone(&watches));
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .outbox(move |settings| {
            Ok(Arc::new(SlowClaim {
                inner: mailgate::open_outbox(settings)?,
                claiming: Arc::default(),
                slow: false,
                announce: Some(a),
                watches: w,
            }) as Arc<dyn mailgate::outbox::OutboxStore>)
        })
        .build()
        .unwrap();
    let worker = Worker::new(&mailer).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    // The first watch fails at once; the worker asks for another.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while watches.load(Ordering::SeqCst) < 2 {
        assert!(std::time::Instant::now() < deadline, "a second watch");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Stored as another process would: not through this mailer.
    let other = mailgate::outbox::NewMessage {
        from: "alm@example.com".into(),
        to: vec!["dev@example.com".into()],
        subject: "announced".into(),
        message_id: Some("<announced@example.com>".into()),
        bytes: b"Subject: announced\r\nMessage-ID: <announced@example.com>\r\n\r\nbody\r\n"
            .to_vec(),
        dsn: None,
    };
    mailer.outbox().unwrap().enqueue(other).await.unwrap();
    let started = std::time::Instant::now();
    announce.notify_one();
    let received = server.wait_for_messages(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "woken by the announcement: {:?}",
        started.elapsed()
    );
    assert_eq!(watches.load(Ordering::SeqCst), 2, "the live watch is kept");
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    server.shutdown().await;
}
