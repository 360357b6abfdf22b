//! The outbox stores of mailgate (see `mailgate_core::outbox` for the
//! lifecycle, the policy and the delivery loop), each registered through
//! its [`OutboxDescriptor`] as strategies are:
//!
//! | feature | descriptor | store | `mailgate.outbox.url` |
//! | --- | --- | --- | --- |
//! | `sqlite` (default) | [`SQLITE`] | [`SqliteOutbox`]: one file, WAL, `synchronous=FULL` | `sqlite:PATH` (relative to the config folder) |
//! | `postgres` | [`POSTGRES`] | [`PgOutbox`]: `FOR UPDATE SKIP LOCKED` claims with leases, for several workers | `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (or `postgresql://`) |
//!
//! Both create or migrate their schema on first use (versioned, in one
//! transaction: one runner, each store giving its DDL) and make every
//! enqueue durable before returning. They share one row format and one
//! mapping of rows to [`QueuedMessage`](mailgate_core::outbox::QueuedMessage)s.
//!
//! ```no_run
//! # fn run() -> mailgate_core::Result<()> {
//! let registry = mailgate_core::Registry::new()
//!     .with_store(&mailgate_outbox::SQLITE)?
//!     .default_outbox_url("sqlite:mailgate-outbox.db");
//! let mailer = mailgate_core::Mailer::builder()
//!     .registry(registry)
//!     .config_dir("config")
//!     .build()?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use mailgate_core::outbox::OutboxDescriptor;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod migrate;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "postgres")]
pub use postgres::PgOutbox;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteOutbox;

/// The SQLite store: `sqlite:PATH`, a file relative to the config folder
/// (`sqlite:///abs/path` for an absolute one), created on first use.
#[cfg(feature = "sqlite")]
pub static SQLITE: OutboxDescriptor =
    OutboxDescriptor::new("sqlite", &["sqlite"], sqlite::open_url, module_path!());

/// The PostgreSQL store: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
/// (`postgresql://` too), connected on first use.
#[cfg(feature = "postgres")]
pub static POSTGRES: OutboxDescriptor = OutboxDescriptor::new(
    "postgres",
    &["postgres", "postgresql"],
    postgres::open_url,
    module_path!(),
);
