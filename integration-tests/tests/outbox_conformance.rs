//! The store conformance suite (`mailgate_outbox::testing`) on every
//! outbox store `mailgate::default_registry()` lists, each opened through
//! the registry from its URL: SQLite in a temporary folder, PostgreSQL 15
//! on a server of its own ([`PgServer`], a new database per check). A
//! store registered without a backend here fails the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use mailgate::OutboxDescriptor;
use mailgate_integration_tests::PgServer;
use mailgate_outbox::testing::{self, Backend, Outbox, SqliteBackend};

/// PostgreSQL under test: a new database of `server` per outbox. The store
/// judges leases and due times by the database's clock, so letting time
/// pass moves the stored due times and lease ends back.
struct PgBackend<'s> {
    server: &'s PgServer,
    made: AtomicUsize,
}

impl PgBackend<'_> {
    /// The database an outbox URL names (the last segment of its path).
    fn database<'u>(&self, url: &'u str) -> &'u str {
        url.rsplit('/').next().unwrap_or_default()
    }
}

#[mailgate::async_trait]
impl Backend for PgBackend<'_> {
    fn descriptor(&self) -> &'static OutboxDescriptor {
        &mailgate_outbox::POSTGRES
    }

    async fn new_url(&self) -> String {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        self.server.create_database(&format!("conformance_{n}"))
    }

    async fn reach(&self, url: &str, t: SystemTime) {
        let Ok(ahead) = t.duration_since(SystemTime::now()) else {
            return;
        };
        let ms = ahead.as_millis();
        self.server.psql(
            self.database(url),
            &format!(
                "UPDATE outbox_messages SET next_attempt_at = next_attempt_at - {ms}, \
                 lease_until = lease_until - {ms}"
            ),
        );
    }

    fn concurrent_messages(&self) -> usize {
        1000
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_registered_store_passes_the_conformance_suite() {
    let registry = mailgate::default_registry().unwrap();
    assert_eq!(
        registry.store_names(),
        ["postgres", "sqlite"],
        "the features this crate enables"
    );
    let server = PgServer::start();
    for descriptor in registry.stores() {
        let backend: Box<dyn Backend + '_> = match descriptor.name {
            "sqlite" => Box::new(SqliteBackend::new()),
            "postgres" => Box::new(PgBackend {
                server: &server,
                made: AtomicUsize::new(0),
            }),
            other => panic!("the store `{other}` is registered but has no backend in this test"),
        };
        assert!(std::ptr::eq(backend.descriptor(), descriptor));
        testing::run_all(backend.as_ref()).await;
    }
}

/// What is left of a sent message in PostgreSQL: its header section to the
/// blank line (`body_dropped`, the size of the whole message kept); a store
/// that keeps bodies keeps it whole.
#[tokio::test]
async fn postgres_keeps_a_sent_message_s_header_section_to_the_blank_line() {
    let server = PgServer::start();
    let backend = PgBackend {
        server: &server,
        made: AtomicUsize::new(0),
    };
    let outbox = Outbox::new(&backend).await;
    testing::sent_messages_keep_their_headers_only(&outbox).await;
    let rows = server.psql(
        backend.database(outbox.url()),
        "SELECT body_dropped, octet_length(message), size,
                position('\\x0d0a0d0a'::bytea IN message) + 3 = octet_length(message)
           FROM outbox_messages WHERE status = 'sent' ORDER BY id",
    );
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), 5, "{rows:?}");
    for row in &rows[..4] {
        let cols: Vec<&str> = row.split('|').collect();
        assert_eq!(cols[0], "t", "{row}");
        assert_eq!(cols[3], "t", "ends at the blank line: {row}");
        assert!(cols[1].parse::<u64>().unwrap() < 200, "{row}");
        assert!(cols[2].parse::<u64>().unwrap() > 70_000, "{row}");
    }
    let kept: Vec<&str> = rows[4].split('|').collect();
    assert_eq!((kept[0], kept[1] == kept[2]), ("f", true), "{rows:?}");
}
