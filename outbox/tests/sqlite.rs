//! The SQLite store: file mode, and the errors an operator meets (a file
//! that is not a database, a newer schema). The conformance suite runs on
//! it with every registered store (integration-tests/tests/outbox_conformance.rs).

#![cfg(feature = "sqlite")]

use mailgate_outbox::testing as conformance;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use mailgate_core::outbox::OutboxStore;
use mailgate_outbox::SqliteOutbox;

fn store(dir: &tempfile::TempDir) -> Arc<dyn OutboxStore> {
    Arc::new(SqliteOutbox::open(&dir.path().join("outbox.db")).unwrap())
}

#[tokio::test]
async fn two_stores_on_one_file_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(&dir);
    let b = store(&dir);
    let id = a.enqueue(conformance::message(1)).await.unwrap();
    assert_eq!(b.queued_ids().await.unwrap(), [id]);
}

#[tokio::test]
async fn created_with_mode_0600_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let s = SqliteOutbox::open(&path).unwrap();
    assert!(!s.exists(), "nothing is created before first use");
    s.stats().await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let s = SqliteOutbox::open(&path).unwrap();
    let err = s.enqueue(conformance::message(1)).await.unwrap_err();
    assert_eq!(err.exit_code(), 74, "{err}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("not a SQLite database"), "{text}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![0x42u8; 8192],
        "left untouched"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    SqliteOutbox::open(&path).unwrap().stats().await.unwrap();
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("INSERT INTO mailgate_schema (version) VALUES (99)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let err = SqliteOutbox::open(&path)
        .unwrap()
        .stats()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("version 99, newer"), "{err}");
}

#[tokio::test]
async fn a_folder_is_not_an_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteOutbox::open(dir.path())
        .unwrap()
        .stats()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn opening_needs_no_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteOutbox::open(&dir.path().join("outbox.db")).unwrap();
    assert!(!store.exists());
}

/// The bytes stored for message `id`, read behind the store's back.
async fn stored_bytes(path: &std::path::Path, id: i64) -> Vec<u8> {
    use sqlx::ConnectOptions as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    sqlx::query_scalar("SELECT message FROM outbox_messages WHERE id = ?")
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_sent_message_keeps_its_header_section_to_the_blank_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let store = SqliteOutbox::open(&path).unwrap();
    let mut new = conformance::message(1);
    let header = b"Subject: x\r\nMessage-ID: <x@example.org>\r\n\r\n".to_vec();
    new.bytes = [header.clone(), b"body\r\n\r\nmore body\r\n".to_vec()].concat();
    let id = store.enqueue(new.clone()).await.unwrap();
    let now = std::time::SystemTime::now();
    store
        .claim_one(id, "w", std::time::Duration::from_secs(60), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.complete_sent("w", &[id], now).await.unwrap(), [id]);
    assert_eq!(stored_bytes(&path, id).await, header);
    let listed = store.list(true).await.unwrap();
    assert_eq!(listed[0].size, new.bytes.len() as u64);
    assert!(listed[0].body_dropped);
}

/// Sizes of the database and its WAL after `rounds` rounds of `per_round`
/// messages of `size` bytes, each round stored, then sent.
async fn file_sizes_after(
    store: &SqliteOutbox,
    rounds: usize,
    per_round: usize,
    size: usize,
) -> (u64, u64) {
    use std::time::{Duration, SystemTime};
    let mut body = Vec::with_capacity(size);
    while body.len() < size {
        body.extend_from_slice(
            b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n",
        );
    }
    for _ in 0..rounds {
        let mut ids = Vec::new();
        for n in 0..per_round {
            let mut new = conformance::message(n);
            new.bytes = [b"Subject: big\r\n\r\n".as_slice(), &body].concat();
            ids.push(store.enqueue(new).await.unwrap());
        }
        let now = SystemTime::now() + Duration::from_secs(1);
        let claimed = store
            .claim("w", Duration::from_secs(60), per_round, now)
            .await
            .unwrap();
        assert_eq!(claimed.len(), per_round);
        assert_eq!(
            store.complete_sent("w", &ids, now).await.unwrap().len(),
            ids.len()
        );
    }
    let size_of = |suffix: &str| {
        let mut name = store.path().as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(std::path::PathBuf::from(name)).map_or(0, |m| m.len())
    };
    (size_of(""), size_of("-wal"))
}

/// 100 messages of 1 MB sent one after another: with the bodies dropped,
/// the file stays at a few MB (the pages of each body are reused by the
/// next one); kept, it holds them all. Stored in bursts of 20, it grows to
/// one burst and stays there.
#[tokio::test]
async fn the_space_of_dropped_bodies_is_reused() {
    const MB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let dropping = SqliteOutbox::open(&dir.path().join("dropping.db")).unwrap();
    let keeping = SqliteOutbox::open(&dir.path().join("keeping.db"))
        .unwrap()
        .keep_sent_bodies(true);
    let bursts = SqliteOutbox::open(&dir.path().join("bursts.db")).unwrap();
    let (drop_db, drop_wal) = file_sizes_after(&dropping, 100, 1, MB).await;
    let (keep_db, keep_wal) = file_sizes_after(&keeping, 100, 1, MB).await;
    let (burst_db, burst_wal) = file_sizes_after(&bursts, 5, 20, MB).await;
    eprintln!(
        "100 x 1 MiB sent one by one: bodies dropped: db {drop_db} B, wal {drop_wal} B; \
         bodies kept: db {keep_db} B, wal {keep_wal} B; 5 bursts of 20, dropped: db {burst_db} B, wal {burst_wal} B"
    );
    assert!(keep_db > 100 * MB as u64, "{keep_db}");
    assert!(drop_db < 4 * MB as u64, "{drop_db}");
    assert!(burst_db < 24 * MB as u64, "{burst_db}");
}

/// An `attempts` value out of the listing's range (a hand-edited row) is
/// clamped, as on every store: below zero is 0, above `u32::MAX` is
/// `u32::MAX`.
#[tokio::test]
async fn an_attempts_count_out_of_range_is_clamped() {
    use sqlx::ConnectOptions as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let store = SqliteOutbox::open(&path).unwrap();
    let id = store.enqueue(conformance::message(1)).await.unwrap();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    for (stored, listed) in [(-5_i64, 0_u32), (1 << 40, u32::MAX), (7, 7)] {
        sqlx::query("UPDATE outbox_messages SET attempts = ? WHERE id = ?")
            .bind(stored)
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
        let m = &store.list(false).await.unwrap()[0];
        assert_eq!(m.attempts, listed, "stored {stored}");
    }
    // A claim reads it the same way (one more attempt).
    let claimed = store
        .claim_one(
            id,
            "w",
            std::time::Duration::from_secs(60),
            std::time::SystemTime::now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.message.attempts, 8);
}
