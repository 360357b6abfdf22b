//! The outbox stores of mailgate (see `mailgate_core::outbox` for the
//! lifecycle, the policy and the delivery loop).
//!
//! | feature | store | `mailgate.outbox.url` |
//! | --- | --- | --- |
//! | `sqlite` (default) | [`SqliteOutbox`]: one file, WAL, `synchronous=FULL` | `sqlite:PATH` (relative to the config folder; default `sqlite:mailgate-outbox.db`) |
//! | `postgres` | [`PgOutbox`]: `FOR UPDATE SKIP LOCKED` claims with leases, for several workers | `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` |
//!
//! Both create or migrate their schema on first use (versioned, in one
//! transaction) and make every change durable before returning.
//!
//! ```no_run
//! # fn run() -> mailgate_core::Result<()> {
//! let mailer = mailgate_core::Mailer::builder()
//!     .config_dir("config")
//!     .outbox(mailgate_outbox::open)
//!     .build()?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailgate_core::outbox::{Completion, OutboxLocation, OutboxSettings, OutboxStore, Status};
use mailgate_core::{ConfigError, Error, Origin, Result, keys};

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::PgOutbox;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteOutbox;

/// Opens the store `settings` names, for [`mailgate_core::MailerBuilder::outbox`].
///
/// A backend left out of the build is a configuration error naming the
/// cargo feature that adds it. Nothing is read or created until the store
/// is first used.
pub fn open(settings: &OutboxSettings) -> Result<Arc<dyn OutboxStore>> {
    match &settings.location {
        #[cfg(feature = "sqlite")]
        OutboxLocation::Sqlite(path) => Ok(Arc::new(SqliteOutbox::open(path)?)),
        #[cfg(feature = "postgres")]
        OutboxLocation::Postgres(url) => Ok(Arc::new(PgOutbox::open(url)?)),
        #[allow(unreachable_patterns)]
        other => Err(not_compiled(other)),
    }
}

#[allow(dead_code)]
fn not_compiled(location: &OutboxLocation) -> Error {
    ConfigError::Invalid {
        key: keys::OUTBOX_URL.to_owned(),
        origin: Origin::Builder,
        value: Some(location.shown()),
        expected: format!(
            "a backend compiled into this build: {} (enable the cargo feature `{}` of mailgate-outbox, or `outbox-{}` of the mailgate crate)",
            compiled().join(", "),
            location.scheme(),
            location.scheme()
        ),
    }
    .into()
}

/// The backends compiled into this build.
pub fn compiled() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "sqlite") {
        out.push("sqlite");
    }
    if cfg!(feature = "postgres") {
        out.push("postgres");
    }
    out
}

/// Milliseconds since the epoch, as the stores keep times.
#[allow(dead_code)]
/// The columns a completion writes: status, last error (kept when `None`),
/// next attempt and sent time, in milliseconds.
pub(crate) fn completion_columns(
    completion: &Completion,
    now: SystemTime,
) -> (Status, Option<&str>, Option<i64>, Option<i64>) {
    match completion {
        Completion::Sent { .. } => (Status::Sent, None, None, Some(to_ms(now))),
        Completion::Retry {
            error,
            next_attempt,
        } => (
            Status::Queued,
            Some(error.as_str()),
            Some(to_ms(*next_attempt)),
            None,
        ),
        Completion::Dead { error } => (Status::Dead, Some(error.as_str()), None, None),
    }
}

pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`to_ms`].
#[allow(dead_code)]
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
