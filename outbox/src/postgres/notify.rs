//! New work announced with `LISTEN`/`NOTIFY`: an enqueue (in the same
//! statement), a retry by hand and a batch given back notify the channel
//! `mailgate_outbox`; an idle worker listens on a connection of its own and
//! wakes at once instead of at its next look. Notifications are per
//! database, so outboxes in different databases of one server do not wake
//! each other's workers. One lost (the listening connection dropped) is
//! made up for: the watch then wakes the worker anyway, and it still looks
//! now and then.

use std::time::Duration;

use async_trait::async_trait;
use mailgate_core::outbox::WorkWatch;
use mailgate_core::{Error, Result};
use sqlx::postgres::{PgListener, PgPoolOptions};

use super::PgOutbox;

/// The channel new work is announced on.
const CHANNEL: &str = "mailgate_outbox";

/// Announces new work; in a statement of its own, delivered when it commits.
const NOTIFY: &str = "SELECT pg_notify('mailgate_outbox', '')";

/// A connection listening on [`CHANNEL`].
struct PgWatch {
    listener: PgListener,
    /// The URL without password, for errors.
    shown: String,
    secrets: Vec<String>,
}

#[async_trait]
impl WorkWatch for PgWatch {
    async fn changed(&mut self) -> Result<()> {
        match self.listener.try_recv().await {
            Ok(Some(_)) => {
                // A burst of enqueues is one wake-up.
                while self.listener.next_buffered().is_some() {}
                Ok(())
            }
            // The connection was lost and made again: what was announced
            // meanwhile went unheard, so look.
            Ok(None) => Ok(()),
            Err(e) => Err(Error::Outbox {
                location: format!("postgres {}", self.shown),
                reason: super::scrub(&format!("listening for new messages: {e}"), &self.secrets),
            }),
        }
    }
}

impl PgOutbox {
    /// [`mailgate_core::outbox::OutboxStore::watch`]: a connection of its
    /// own (not one of the pool's), listening.
    pub(super) async fn listen(&self) -> Result<Option<Box<dyn WorkWatch>>> {
        // The schema first: a database that cannot be reached says so at
        // once, with its cause.
        self.pool().await?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(super::CONNECT_TIMEOUT)
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .connect_lazy_with(self.options.clone());
        let mut listener = self.run(PgListener::connect_with(&pool)).await?;
        self.run(listener.listen(CHANNEL)).await?;
        Ok(Some(Box::new(PgWatch {
            listener,
            shown: self.shown.clone(),
            secrets: self.secrets.clone(),
        })))
    }

    /// Announces new work (a retry by hand, a batch given back), when there
    /// is some; a failure only costs the listeners their wake-up.
    pub(super) async fn announce(&self, changed: u64) {
        if changed == 0 {
            return;
        }
        if let Ok(pool) = self.pool().await
            && let Err(e) = sqlx::query(NOTIFY).execute(pool).await
        {
            tracing::debug!(
                "outbox postgres {}: announcing new work: {}",
                self.shown,
                super::scrub(&e.to_string(), &self.secrets)
            );
        }
    }
}
