//! What wakes an idle worker: its own `Mailer` storing a message, the store
//! announcing one another process stored ([`OutboxStore::watch`]), or the
//! time for its next look.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{OutboxStore, WorkWatch};
use crate::error::Error;

/// A worker sleeps at most this long between looks at the outbox, so that
/// messages another process stored are seen without a signal.
const POLL: Duration = Duration::from_secs(2);

/// The longest sleep between looks when the store announces new work: the
/// looks are then only for what no announcement covers (a dead worker's
/// heartbeat going stale), so they come every half
/// `mailgate.outbox.workerTimeoutSeconds`, from [`POLL`] up to this.
const POLL_WATCHED: Duration = Duration::from_secs(10);

/// A store that could not start announcing new work is asked again after this.
const WATCH_RETRY: Duration = Duration::from_secs(60);

/// How long a store may take to start announcing new work.
const WATCH_START: Duration = Duration::from_secs(5);

/// One worker loop's wake-ups.
pub(super) struct Wake {
    /// Notified by the worker's `Mailer` when it stores a message.
    local: Arc<tokio::sync::Notify>,
    /// The store's announcements, while it makes them.
    watch: Option<Box<dyn WorkWatch>>,
    /// False once the store said it cannot announce.
    watchable: bool,
    /// When starting a watch last failed.
    failed: Option<Instant>,
}

impl Wake {
    pub(super) fn new(local: Arc<tokio::sync::Notify>) -> Self {
        Self {
            local,
            watch: None,
            watchable: true,
            failed: None,
        }
    }

    /// Starts listening to the store's announcements, if it makes them and
    /// no watch runs. Called before each look, so that nothing stored after
    /// the look goes unheard.
    pub(super) async fn listen(&mut self, store: &dyn OutboxStore) {
        let retry_due = self.failed.is_none_or(|at| at.elapsed() >= WATCH_RETRY);
        if self.watch.is_some() || !self.watchable || !retry_due {
            return;
        }
        let started = tokio::time::timeout(WATCH_START, store.watch())
            .await
            .unwrap_or_else(|_| {
                Err(Error::Outbox {
                    location: store.describe(),
                    reason: format!(
                        "listening for new messages: no answer within {} s",
                        WATCH_START.as_secs()
                    ),
                })
            });
        match started {
            Ok(Some(watch)) => (self.watch, self.failed) = (Some(watch), None),
            Ok(None) => self.watchable = false,
            Err(e) => {
                if self.failed.is_none() {
                    tracing::warn!(
                        "outbox: cannot listen for new messages: {e}; looking every {} s meanwhile",
                        POLL.as_secs()
                    );
                }
                self.failed = Some(Instant::now());
            }
        }
    }

    /// The longest sleep between looks, for a worker whose dead peers are
    /// seen after `worker_timeout`.
    pub(super) fn poll(&self, worker_timeout: Duration) -> Duration {
        match self.watch {
            Some(_) => (worker_timeout / 2).clamp(POLL, POLL_WATCHED),
            None => POLL,
        }
    }

    /// Sleeps for `pause`, or less when woken. A watch that fails is
    /// dropped (and started again at the next look).
    pub(super) async fn sleep(&mut self, pause: Duration) {
        let heard = async {
            match self.watch.as_mut() {
                Some(watch) => watch.changed().await.err(),
                None => std::future::pending().await,
            }
        };
        let lost = tokio::select! {
            () = tokio::time::sleep(pause) => None,
            // The mailer stored a message: look now, not at the next poll.
            () = self.local.notified() => None,
            // Another process did.
            lost = heard => lost,
        };
        if let Some(e) = lost {
            tracing::warn!("outbox: stopped listening for new messages: {e}; listening again");
            self.watch = None;
        }
    }
}
