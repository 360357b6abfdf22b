//! The PostgreSQL store's heartbeats, against a real PostgreSQL 15
//! ([`PgServer`]): a worker unheard for its timeout gives its messages back
//! at once, a beating one keeps them, and its row goes when it ends.

use mailgate_outbox::testing as conformance;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mailgate_core::outbox::OutboxStore;
use mailgate_integration_tests::PgServer;
use mailgate_outbox::PgOutbox;

const LEASE: Duration = Duration::from_secs(300);

fn store(url: &str) -> Arc<dyn OutboxStore> {
    Arc::new(PgOutbox::open(url).unwrap())
}

fn ids(claimed: &[mailgate_core::outbox::Claimed]) -> Vec<i64> {
    claimed.iter().map(|c| c.message.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unheard_worker_s_messages_are_due_at_once_and_a_beating_one_s_stay() {
    let server = PgServer::start();
    let s = store(&server.url());
    for i in 0..5 {
        s.enqueue(conformance::message(i)).await.unwrap();
    }
    let now = SystemTime::now();

    // A short timeout, kept alive by its beats (every 250 ms).
    let beating = s
        .announce_worker("beating-1", Duration::from_secs(1))
        .await
        .unwrap()
        .expect("a PostgreSQL outbox tells live workers apart");
    let held = ids(&s.claim("beating-1", LEASE, 2, now).await.unwrap());
    assert_eq!(held.len(), 2);

    // A worker last heard 10 s ago, with a 1 s timeout: dead.
    let ghost = ids(&s.claim("ghost-2", LEASE, 2, now).await.unwrap());
    server.psql(
        server.database(),
        "INSERT INTO mailgate_workers (id, last_seen, timeout_ms) \
         VALUES ('ghost-2', now() - interval '10 seconds', 1000)",
    );
    // An older mailgate's worker: no row, so it is never taken for dead.
    assert_eq!(s.claim("orphan-9", LEASE, 1, now).await.unwrap().len(), 1);

    let other = s
        .announce_worker("other-3", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(s.live_workers().await.unwrap(), 2, "the ghost is not alive");
    // Longer than the beating worker's timeout: its beats keep it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(s.reclaim_dead("other-3", now).await.unwrap(), 2);
    assert_eq!(
        server.psql(
            server.database(),
            "SELECT string_agg(id, ',' ORDER BY id) FROM mailgate_workers"
        ),
        "beating-1,other-3",
        "the dead worker's row is gone"
    );
    let taken = ids(&s.claim("other-3", LEASE, 10, now).await.unwrap());
    assert_eq!(taken, ghost, "exactly the dead worker's messages");
    assert_eq!(s.reclaim_dead("other-3", now).await.unwrap(), 0);

    // A worker that ends removes its row before `end` returns.
    beating.end().await;
    assert_eq!(s.live_workers().await.unwrap(), 1);
    // One that is dropped, soon after.
    drop(other);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.live_workers().await.unwrap() != 0 {
        assert!(
            Instant::now() < deadline,
            "the row of a dropped worker goes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It ended cleanly: its leases stay with their lease (none were left
    // in a real worker, which gives its batch back first).
    assert_eq!(
        s.reclaim_dead("other-3", SystemTime::now()).await.unwrap(),
        0
    );
    assert_eq!(held.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_table_is_a_migration() {
    let server = PgServer::start();
    store(&server.url()).stats().await.unwrap();
    assert_eq!(
        server.psql(
            server.database(),
            "SELECT to_regclass('mailgate_workers') IS NOT NULL, \
                    count(*) = max(version) FROM mailgate_schema"
        ),
        "t|t"
    );
}
