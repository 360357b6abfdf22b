//! The SQLite store's worker locks: a dead worker's messages are due at
//! once, a live worker's never; the files of dead workers are removed.

#![cfg(feature = "sqlite")]

use mailgate_outbox::testing as conformance;

use std::path::Path;
use std::time::{Duration, SystemTime};

use mailgate_core::outbox::{Completion, OutboxStore};
use mailgate_outbox::SqliteOutbox;

const LEASE: Duration = Duration::from_secs(300);
const TIMEOUT: Duration = Duration::from_secs(30);

fn lock_files(outbox: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(outbox.with_extension("db.workers"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn a_dead_worker_s_messages_are_due_at_once_and_a_live_one_s_stay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let s = SqliteOutbox::open(&path).unwrap();
    assert_eq!(s.live_workers().await.unwrap(), 0, "nothing created yet");
    for i in 0..5 {
        s.enqueue(conformance::message(i)).await.unwrap();
    }
    let now = SystemTime::now();

    let alive = s.announce_worker("alive-1", TIMEOUT).await.unwrap();
    assert!(alive.is_some(), "a SQLite outbox tells live workers apart");
    assert_eq!(s.live_workers().await.unwrap(), 1);
    let held = s.claim("alive-1", LEASE, 2, now).await.unwrap();
    assert_eq!(held.len(), 2);

    // A worker killed with -9 leaves its file behind, unlocked.
    std::fs::write(path.with_extension("db.workers").join("ghost-2.lock"), "").unwrap();
    let ghost: Vec<i64> = s
        .claim("ghost-2", LEASE, 2, now)
        .await
        .unwrap()
        .iter()
        .map(|c| c.message.id)
        .collect();
    assert_eq!(ghost.len(), 2);
    // An older mailgate's worker: no file, so it is never taken for dead.
    let orphan = s.claim("orphan-9", LEASE, 1, now).await.unwrap();
    assert_eq!(orphan.len(), 1);
    assert!(
        s.claim("other-3", LEASE, 10, now).await.unwrap().is_empty(),
        "all leased for 300 s"
    );

    let _other = s.announce_worker("other-3", TIMEOUT).await.unwrap();
    assert_eq!(s.live_workers().await.unwrap(), 2, "the ghost is not alive");
    assert_eq!(s.reclaim_dead("other-3", now).await.unwrap(), 2);
    assert_eq!(
        lock_files(&path),
        ["alive-1.lock", "other-3.lock"],
        "the dead worker's file is gone"
    );
    let taken: Vec<i64> = s
        .claim("other-3", LEASE, 10, now)
        .await
        .unwrap()
        .iter()
        .map(|c| c.message.id)
        .collect();
    assert_eq!(taken, ghost, "exactly the dead worker's messages");
    assert_eq!(s.reclaim_dead("other-3", now).await.unwrap(), 0);

    // The live worker still holds its lease.
    let sent = Completion::Sent {
        reply: "250 ok".into(),
    };
    assert!(
        s.complete(held[0].message.id, "alive-1", sent, now)
            .await
            .unwrap()
    );
    // A worker that ends removes its file, and counts no more.
    drop(alive);
    assert_eq!(lock_files(&path), ["other-3.lock"]);
    assert_eq!(s.live_workers().await.unwrap(), 1);
}

#[tokio::test]
async fn a_killed_process_s_lock_is_free_at_once() {
    // A real process holds the lock (flock, as `deliver` does) and is killed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let s = SqliteOutbox::open(&path).unwrap();
    s.enqueue(conformance::message(1)).await.unwrap();
    let folder = path.with_extension("db.workers");
    std::fs::create_dir(&folder).unwrap();
    let file = folder.join("child-7.lock");
    std::fs::write(&file, "").unwrap();
    // The shell's own descriptor, locked by flock(1), kept across the exec:
    // the one process that holds the lock is the one killed.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec 9>\"$0\"; flock -x 9; exec sleep 30")
        .arg(&file)
        .spawn()
        .expect("sh runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.live_workers().await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "flock takes the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now = SystemTime::now();
    assert_eq!(s.claim("child-7", LEASE, 1, now).await.unwrap().len(), 1);
    assert_eq!(s.reclaim_dead("me-8", now).await.unwrap(), 0, "alive");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if s.reclaim_dead("me-8", SystemTime::now()).await.unwrap() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the lock is freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!file.exists());
}
