//! The SQLite store: the conformance suite, file mode, and the errors an
//! operator meets (a file that is not a database, a newer schema).

#![cfg(feature = "sqlite")]

mod conformance;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use mailgate_core::outbox::OutboxStore;
use mailgate_outbox::SqliteOutbox;

fn store(dir: &tempfile::TempDir) -> Arc<dyn OutboxStore> {
    Arc::new(SqliteOutbox::open(&dir.path().join("outbox.db")).unwrap())
}

#[tokio::test]
async fn lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    conformance::lifecycle(store(&dir)).await;
}

#[tokio::test]
async fn per_recipient() {
    let dir = tempfile::tempdir().unwrap();
    conformance::per_recipient(store(&dir)).await;
}

#[tokio::test]
async fn delay_reports_are_recipient_state() {
    let dir = tempfile::tempdir().unwrap();
    conformance::delay_reports_are_recipient_state(store(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_are_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    conformance::concurrent_claims_are_exclusive(store(&dir), 200, 4).await;
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
