//! The PostgreSQL outbox against a real PostgreSQL 15 of its own
//! ([`PgServer`]): claims by workers with their own stores, the schema
//! migrated once by stores starting together, and the errors an operator
//! meets, none showing the password. The conformance suite every store
//! passes runs in `outbox_conformance.rs`.

use mailgate_outbox::testing as conformance;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mailgate_core::Error;
use mailgate_core::outbox::{Completion, OutboxStore, shown_url};
use mailgate_integration_tests::{ConfigDir, PgServer, unused_port};
use mailgate_outbox::PgOutbox;

fn store(url: &str) -> Arc<dyn OutboxStore> {
    Arc::new(PgOutbox::open(url).unwrap())
}

/// The error of the first use of the store at `url`.
async fn first_use_error(url: &str) -> Error {
    let store = PgOutbox::open(url).expect("open is lazy: it connects to nothing");
    let err = store
        .stats()
        .await
        .expect_err("the store should not be usable");
    eprintln!("{err}");
    err
}

#[test]
fn a_server_starts_in_seconds() {
    let started = Instant::now();
    let server = PgServer::start();
    let took = started.elapsed();
    eprintln!("PgServer::start took {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(
        server.psql(server.database(), "SELECT current_user"),
        "postgres"
    );
    assert_eq!(
        server.url(),
        format!(
            "postgres://mailgate:{}@127.0.0.1:{}/mailgate",
            server.password(),
            server.port()
        )
    );
}

/// Workers in separate processes have separate stores (pools): each claims
/// from its own, and still no message goes to two of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_with_their_own_stores_claim_each_message_once() {
    let server = PgServer::start();
    let feeder = store(&server.url());
    let n = 1000;
    for i in 0..n {
        feeder.enqueue(conformance::message(i)).await.unwrap();
    }
    let now = SystemTime::now() + Duration::from_secs(1);
    let mut tasks = Vec::new();
    for w in 0..3 {
        let store = store(&server.url());
        tasks.push(tokio::spawn(async move {
            let me = format!("worker{w}");
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim(&me, Duration::from_secs(60), 10, now)
                    .await
                    .unwrap();
                if got.is_empty() {
                    break;
                }
                for c in got {
                    mine.push(c.message.id);
                    let done = Completion::Sent {
                        reply: "250 ok".into(),
                    };
                    assert!(store.complete(c.message.id, &me, done, now).await.unwrap());
                }
            }
            mine
        }));
    }
    let mut per_worker = Vec::new();
    let mut all = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        per_worker.push(mine.len());
        all.extend(mine);
    }
    all.sort();
    let claimed = all.len();
    all.dedup();
    assert_eq!(claimed, all.len(), "a message was claimed twice");
    assert_eq!(
        all.len(),
        n,
        "every message claimed (per worker: {per_worker:?})"
    );
    let stats = feeder.stats().await.unwrap();
    assert_eq!((stats.queued, stats.sending, stats.sent), (0, 0, n as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_schema_is_migrated_once_when_four_stores_start_together() {
    let server = PgServer::start();
    let url = server.create_database("fresh");
    let stores: Vec<_> = (0..4).map(|_| store(&url)).collect();
    let mut tasks = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let s = Arc::clone(s);
        tasks.push(tokio::spawn(async move {
            s.enqueue(conformance::message(i)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every store starts");
    }
    assert_eq!(
        server.psql(
            "fresh",
            "SELECT count(*) = max(version), count(DISTINCT version) = count(*) \
             FROM mailgate_schema"
        ),
        "t|t",
        "each migration recorded once"
    );
    assert_eq!(stores[0].stats().await.unwrap().queued, 4);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let server = PgServer::start();
    store(&server.url()).stats().await.unwrap();
    server.psql(
        server.database(),
        "INSERT INTO mailgate_schema (version) VALUES (99)",
    );
    let err = first_use_error(&server.url()).await;
    assert_eq!(err.exit_code(), 74, "{err}");
    assert!(err.to_string().contains("version 99, newer"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_says_authentication_failed_without_either_password() {
    let server = PgServer::start();
    let wrong = "not-the-Pa55word";
    let url = server.url_for(server.user(), wrong, server.database());
    let err = first_use_error(&url).await;
    assert_eq!(err.exit_code(), 74, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "names the server: {text}"
    );
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains("mailgate"), "names the user: {text}");
    assert!(!text.contains(wrong), "shows the password: {text}");
    assert!(!text.contains(server.password()), "{text}");
    assert!(!format!("{err:?}").contains(wrong), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_refused_at_once() {
    let port = unused_port();
    let url = format!("postgres://mailgate:Secr3t-pw@127.0.0.1:{port}/mailgate");
    let started = Instant::now();
    let err = first_use_error(&url).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}: {err}",
        started.elapsed()
    );
    assert_eq!(err.exit_code(), 74, "{err}");
    let text = err.to_string();
    assert!(text.contains("refused"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("Secr3t-pw"), "{text}");
}

#[tokio::test]
async fn a_database_that_does_not_exist_is_named() {
    let server = PgServer::start();
    let url = server.url_for(server.user(), server.password(), "no_such_db");
    let err = first_use_error(&url).await;
    assert_eq!(err.exit_code(), 74, "{err}");
    let text = err.to_string();
    assert!(text.contains("no_such_db"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(!text.contains(server.password()), "{text}");
}

#[tokio::test]
async fn a_role_without_rights_gets_permission_denied_then_works_once_granted() {
    let server = PgServer::start();
    server.psql("postgres", "CREATE ROLE clerk LOGIN PASSWORD 'clerk-Pw-42'");
    let url = server.url_for("clerk", "clerk-Pw-42", server.database());

    // PostgreSQL 15: no CREATE on the public schema for other roles.
    let err = first_use_error(&url).await;
    assert_eq!(err.exit_code(), 74, "{err}");
    let text = err.to_string();
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains("clerk"), "names the user: {text}");
    assert!(!text.contains("clerk-Pw-42"), "{text}");

    // The owner creates the schema; table rights are then enough.
    store(&server.url()).stats().await.unwrap();
    server.psql(
        server.database(),
        "GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_messages, mailgate_schema TO clerk; \
         GRANT USAGE ON SEQUENCE outbox_messages_id_seq TO clerk",
    );
    let clerk = store(&url);
    let id = clerk.enqueue(conformance::message(1)).await.unwrap();
    assert_eq!(clerk.queued_ids().await.unwrap(), [id]);
}

#[tokio::test]
async fn describe_and_debug_show_no_password() {
    let server = PgServer::start();
    let s = PgOutbox::open(&server.url()).unwrap();
    s.stats().await.unwrap();
    let expected = format!(
        "postgres postgres://mailgate@127.0.0.1:{}/mailgate",
        server.port()
    );
    assert_eq!(s.describe(), expected);
    assert!(!format!("{s:?}").contains(server.password()), "{s:?}");
    assert!(!s.describe().contains(server.password()));
}

#[tokio::test]
async fn the_registry_opens_a_postgres_url_with_pg_outbox() {
    let server = PgServer::start();
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mailgate.outbox.url", &server.url()),
        ],
        &[],
    );
    let settings = mailgate_core::Settings::load(mailgate_core::settings::LoadOptions {
        files: mailgate_core::properties::ConfigFiles::in_dir(dir.path()),
        ..Default::default()
    })
    .unwrap();
    let registry = mailgate_core::Registry::new()
        .with_store(&mailgate_outbox::SQLITE)
        .unwrap()
        .with_store(&mailgate_outbox::POSTGRES)
        .unwrap();
    let s = registry.open_store(&settings).unwrap();
    assert_eq!(
        s.describe(),
        format!("postgres {}", shown_url(&server.url()))
    );
    let id = s.enqueue(conformance::message(7)).await.unwrap();
    let claimed = s
        .claim_one(id, "w", Duration::from_secs(60), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(claimed.unwrap().bytes, conformance::message(7).bytes);
}

#[test]
fn a_malformed_url_is_a_configuration_error_without_password() {
    let err = PgOutbox::open("postgres://mailgate:Hidden-pw@127.0.0.1:99999/mailgate").unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("mailgate.outbox.url"), "{text}");
    assert!(!text.contains("Hidden-pw"), "{text}");
    assert!(!format!("{err:?}").contains("Hidden-pw"), "{err:?}");
}

/// An `attempts` value out of the listing's range (a hand-edited row) is
/// clamped, as on every store: below zero is 0 (the column holds no value
/// above `u32::MAX`).
#[tokio::test]
async fn an_attempts_count_out_of_range_is_clamped() {
    let server = PgServer::start();
    let s = store(&server.url());
    let id = s.enqueue(conformance::message(1)).await.unwrap();
    for (stored, listed) in [(-5_i64, 0_u32), (2_147_483_647, 2_147_483_647), (7, 7)] {
        server.psql(
            server.database(),
            &format!("UPDATE outbox_messages SET attempts = {stored} WHERE id = {id}"),
        );
        let m = &s.list(false).await.unwrap()[0];
        assert_eq!(m.attempts, listed, "stored {stored}");
    }
    let claimed = s
        .claim_one(id, "w", Duration::from_secs(60), SystemTime::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.message.attempts, 8);
}

/// Leases and due times are the database's: a worker whose clock runs 10
/// minutes behind still finds what was just stored and leases it until
/// the database's now plus the lease; one whose clock runs 10 minutes
/// ahead does not take that live lease. Once the lease has run out by the
/// database's clock, anyone takes the message, whatever its own clock says.
#[tokio::test]
async fn leases_and_due_times_are_judged_by_the_database_clock() {
    let server = PgServer::start();
    let s = store(&server.url());
    let a = s.enqueue(conformance::message(1)).await.unwrap();
    let b = s.enqueue(conformance::message(2)).await.unwrap();
    let skew = Duration::from_secs(600);
    let lease = Duration::from_secs(60);
    let ids = |claimed: Vec<mailgate_core::outbox::Claimed>| -> Vec<i64> {
        claimed.iter().map(|c| c.message.id).collect()
    };

    let behind = s
        .claim("behind", lease, 1, SystemTime::now() - skew)
        .await
        .unwrap();
    assert_eq!(ids(behind), [a], "due by the database's clock");
    let lease_left_ms: i64 = server
        .psql(
            server.database(),
            &format!(
                "SELECT lease_until - floor(extract(epoch FROM now()) * 1000)::bigint \
                 FROM outbox_messages WHERE id = {a}"
            ),
        )
        .parse()
        .unwrap();
    assert!(
        (55_000..=60_000).contains(&lease_left_ms),
        "the lease ends 60 s after the database's now: {lease_left_ms} ms left"
    );

    let ahead = s
        .claim("ahead", lease, 10, SystemTime::now() + skew)
        .await
        .unwrap();
    assert_eq!(ids(ahead), [b], "the live lease on {a} is not taken");
    assert!(
        s.claim("ahead-more", lease, 10, SystemTime::now() + 10 * skew)
            .await
            .unwrap()
            .is_empty()
    );

    // The database's clock passes the lease's end (moved back 61 s).
    server.psql(
        server.database(),
        &format!("UPDATE outbox_messages SET lease_until = lease_until - 61000 WHERE id = {a}"),
    );
    let late = s
        .claim("third", lease, 10, SystemTime::now() - skew)
        .await
        .unwrap();
    assert_eq!(ids(late), [a], "an ended lease is taken, by any clock");
    assert!(
        !s.complete(
            a,
            "behind",
            Completion::Sent {
                reply: "250".into()
            },
            SystemTime::now()
        )
        .await
        .unwrap(),
        "the first worker lost it"
    );
}

/// LISTEN/NOTIFY: a message another process stores (a mailer of its own,
/// with its own connections) wakes an idle worker at once, not at its next
/// look (every 2 s at the most often; 10 s when it listens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_wakes_at_once_for_a_message_another_process_stores() {
    use mailgate::outbox::Worker;
    use mailgate::{Mailer, OutgoingMessage};
    let server = PgServer::start();
    let smtp = mailgate_devserver::DevSmtpServer::builder()
        .start()
        .await
        .unwrap();
    let port = smtp.port().to_string();
    let url = server.url();
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.logging.email.from", "alm@example.com"),
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", &port),
            ("mailgate.outbox.url", &url),
        ],
        &[],
    );
    let build = || {
        Mailer::builder()
            .config_dir(dir.path())
            .env_overrides(false)
            .build()
            .expect("a mailer with the PostgreSQL outbox")
    };
    let (delivering, storing) = (build(), build());
    assert!(
        delivering
            .outbox()
            .unwrap()
            .describe()
            .starts_with("postgres ")
    );
    let worker = Worker::new(&delivering).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    let mut took = Vec::new();
    for i in 0..5 {
        // Idle: it found nothing and sleeps, at a different point of its
        // look cycle each round.
        tokio::time::sleep(Duration::from_millis(400 + 170 * i)).await;
        let started = Instant::now();
        storing
            .enqueue_message(OutgoingMessage {
                to: vec!["dev@example.com".into()],
                subject: format!("woken {i}"),
                body: "stored by another process\n".into(),
                ..OutgoingMessage::default()
            })
            .await
            .unwrap();
        while smtp.messages().len() <= i as usize {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "message {i} was not delivered"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took.push(started.elapsed());
    }
    eprintln!("from enqueue to delivery: {took:?}");
    assert!(
        took.iter().all(|t| *t < Duration::from_millis(700)),
        "each well under the 2 s look: {took:?}"
    );
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    smtp.shutdown().await;
}
