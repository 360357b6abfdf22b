//! The store conformance suite (cargo feature `testing`): what every outbox
//! store must do, for any store registered through an
//! [`OutboxDescriptor`]. A store's crate runs it from its tests with a
//! [`Backend`]: how to give the store fresh outboxes, and, for a store that
//! judges leases and due times by a clock of its own, how to let time pass.
//! The stores are opened as a program opens them: through a
//! [`Registry`] that lists the descriptor, from `mailgate.outbox.url`.
//!
//! ```no_run
//! use mailgate_outbox::testing::{Backend, run_all};
//! # use std::sync::Arc;
//! # use mailgate_core::outbox::{OutboxDescriptor, OutboxStore, OutboxUrl};
//! # fn open(_: &OutboxUrl, _: &mailgate_core::Settings)
//! #     -> mailgate_core::Result<Arc<dyn OutboxStore>> { unimplemented!() }
//! static DESCRIPTOR: OutboxDescriptor =
//!     OutboxDescriptor::new("memory", &["memory"], open, module_path!());
//!
//! struct Memory;
//!
//! #[mailgate_core::async_trait]
//! impl Backend for Memory {
//!     fn descriptor(&self) -> &'static OutboxDescriptor {
//!         &DESCRIPTOR
//!     }
//!     async fn new_url(&self) -> String {
//!         "memory:".into()
//!     }
//! }
//!
//! # async fn test() {
//! // In a #[tokio::test(flavor = "multi_thread")]:
//! run_all(&Memory).await;
//! # }
//! ```

use std::sync::Arc;
use std::time::SystemTime;

use mailgate_core::outbox::{OutboxDescriptor, OutboxStore};
use mailgate_core::properties::Properties;
use mailgate_core::settings::LoadOptions;
use mailgate_core::{Origin, Registry, Settings, async_trait, keys};

mod checks;

pub use checks::{
    claims_are_bounded_in_bytes, concurrent_claims_are_exclusive,
    delay_reports_are_recipient_state, lifecycle, message, per_recipient,
    sent_messages_keep_their_headers_only,
};

/// A store under test: its descriptor and how to make outboxes of it.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The store's descriptor, as a program registers it.
    fn descriptor(&self) -> &'static OutboxDescriptor;

    /// The `mailgate.outbox.url` of a new, empty outbox (an absolute path
    /// for a store in a file: the suite's config folder is the current one).
    async fn new_url(&self) -> String;

    /// Makes `t` (a `now` the suite passes a claim) the present for the
    /// outbox at `url`, for a store that judges leases and due times by a
    /// clock of its own (a database's) instead of the `now` it is given:
    /// what it holds is moved back by the time to `t`. The default does
    /// nothing: the store goes by the `now` it is given.
    async fn reach(&self, url: &str, t: SystemTime) {
        let _ = (url, t);
    }

    /// How many messages [`concurrent_claims_are_exclusive`] stores
    /// (default 200).
    fn concurrent_messages(&self) -> usize {
        200
    }
}

/// An outbox of the backend under test, opened through a registry that
/// lists only its descriptor.
pub struct Outbox<'b> {
    backend: &'b dyn Backend,
    url: String,
}

impl<'b> Outbox<'b> {
    /// A new, empty outbox of `backend`.
    pub async fn new(backend: &'b dyn Backend) -> Self {
        let url = backend.new_url().await;
        Self { backend, url }
    }

    /// Its `mailgate.outbox.url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on it, as a program opens one.
    pub fn store(&self) -> Arc<dyn OutboxStore> {
        self.open(false)
    }

    /// A store on it opened with `mailgate.outbox.keepSentBodies=true`.
    pub fn store_keeping_bodies(&self) -> Arc<dyn OutboxStore> {
        self.open(true)
    }

    /// See [`Backend::reach`].
    pub async fn reach(&self, t: SystemTime) {
        self.backend.reach(&self.url, t).await;
    }

    fn open(&self, keep_sent_bodies: bool) -> Arc<dyn OutboxStore> {
        let descriptor = self.backend.descriptor();
        let registry = Registry::new()
            .with_store(descriptor)
            .expect("one descriptor cannot clash");
        let mut overrides = Properties::default();
        for (key, value) in [
            (keys::SERVER_HOSTNAME, "localhost"),
            (keys::OUTBOX_URL, self.url.as_str()),
            (
                keys::OUTBOX_KEEP_SENT_BODIES,
                if keep_sent_bodies { "true" } else { "false" },
            ),
        ] {
            overrides.set(key.to_owned(), value.to_owned(), Origin::Builder);
        }
        let settings = Settings::load(LoadOptions {
            overrides,
            strategy_keys: registry.keys().copied().collect(),
            ..LoadOptions::default()
        })
        .expect("the suite's settings load");
        registry
            .open_store(&settings)
            .unwrap_or_else(|e| panic!("store `{}` opens {}: {e}", descriptor.name, self.url))
    }
}

/// Runs every check on `backend`, each on a new outbox, in one test (use a
/// multi-threaded runtime: one check claims from several tasks at once).
/// A failing check panics; the log names the store and the check first.
pub async fn run_all(backend: &dyn Backend) {
    let name = backend.descriptor().name;
    macro_rules! check {
        ($check:ident $(, $arg:expr)*) => {{
            eprintln!("conformance: store `{name}`: {}", stringify!($check));
            $check(&Outbox::new(backend).await $(, $arg)*).await;
        }};
    }
    check!(lifecycle);
    check!(per_recipient);
    check!(delay_reports_are_recipient_state);
    check!(sent_messages_keep_their_headers_only);
    check!(claims_are_bounded_in_bytes);
    check!(
        concurrent_claims_are_exclusive,
        backend.concurrent_messages(),
        4
    );
}

/// The SQLite store under test: each outbox a new file in a temporary
/// folder, removed with the backend.
#[cfg(feature = "sqlite")]
pub struct SqliteBackend {
    dir: tempfile::TempDir,
    made: std::sync::atomic::AtomicUsize,
}

#[cfg(feature = "sqlite")]
impl SqliteBackend {
    /// A backend with its own temporary folder.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary folder"),
            made: Default::default(),
        }
    }
}

#[cfg(feature = "sqlite")]
impl Default for SqliteBackend {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "sqlite")]
#[async_trait]
impl Backend for SqliteBackend {
    fn descriptor(&self) -> &'static OutboxDescriptor {
        &crate::SQLITE
    }

    async fn new_url(&self) -> String {
        let n = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!(
            "sqlite://{}",
            self.dir.path().join(format!("outbox-{n}.db")).display()
        )
    }
}
