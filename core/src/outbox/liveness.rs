//! Whether a worker is alive, so that a crashed worker's messages come back
//! in seconds instead of when their lease runs out.
//!
//! A store proves a worker alive its own way: a lock the worker holds for
//! its life (a store in a local file), or a heartbeat row the worker keeps
//! fresh (a shared database). Before each claim a worker announces itself (once) and
//! ends the leases of the workers that are no longer alive, so their
//! `sending` messages are claimed at once. The lease stays the last resort
//! (a worker the store cannot see, an older mailgate).
//!
//! The at-least-once bound holds: a message is reclaimed only from a worker
//! that is dead in the store's eyes, and a worker whose heartbeat has gone
//! stale starts no further message of its batch, so the others can only
//! double the message in hand on each of its connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::OutboxStore;
use crate::error::Result;

/// Dead workers are looked for at most this often per worker: the look
/// costs a query (and, for a store of lock files, a lock attempt per worker
/// file).
const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// A worker's standing on its store, from
/// [`OutboxStore::announce_worker`]: the worker counts as alive while this
/// is held, and dropping it ends that (releases the lock, stops the
/// heartbeat).
pub struct Presence {
    state: Arc<BeatState>,
    _hold: Box<dyn Send + Sync>,
    end: Option<EndFn>,
}

/// A worker's goodbye, awaited by [`Presence::end`].
type EndFn = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("fresh_for", &self.state.fresh_for)
            .field("lapses", &self.state.lapses.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

struct BeatState {
    /// `None`: proven by a lock, which cannot lapse while `hold` lives.
    fresh_for: Option<Duration>,
    /// When the last beat that the store recorded was sent.
    last_beat: Mutex<Instant>,
    /// Times the others may have taken this worker for dead.
    lapses: AtomicU64,
    /// Said goodbye: starts nothing more.
    ended: AtomicBool,
}

impl Presence {
    /// Alive for as long as `hold` (a held lock) lives.
    pub fn held(hold: impl Send + Sync + 'static) -> Self {
        Self {
            state: Arc::new(BeatState {
                fresh_for: None,
                last_beat: Mutex::new(Instant::now()),
                lapses: AtomicU64::new(0),
                ended: AtomicBool::new(false),
            }),
            _hold: Box::new(hold),
            end: None,
        }
    }

    /// With `end` run (and awaited) by [`Presence::end`]: a goodbye that
    /// cannot wait for `Drop` (a database row to delete before the process
    /// exits).
    pub fn with_end<F, Fut>(mut self, end: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.end = Some(Box::new(move || Box::pin(end())));
        self
    }

    /// The worker stops: it starts nothing more and says goodbye, so that
    /// it no longer counts as alive.
    pub async fn end(&self) {
        if self.state.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(end) = &self.end {
            end().await;
        }
    }

    /// A mark to take before a claim: the claimed messages may be started
    /// while [`Presence::holds`] the mark.
    pub fn mark(&self) -> u64 {
        self.state.lapses.load(Ordering::SeqCst)
    }

    /// Whether no other worker can have taken this one for dead since
    /// `mark`, with half the timeout left to finish a message: always for
    /// a lock; for a heartbeat, no lapse since and the last recorded beat
    /// sent less than half the timeout ago.
    pub fn holds(&self, mark: u64) -> bool {
        if self.state.ended.load(Ordering::SeqCst)
            || self.state.lapses.load(Ordering::SeqCst) != mark
        {
            return false;
        }
        match self.state.fresh_for {
            None => true,
            Some(timeout) => self.state.last_beat().elapsed() < timeout / 2,
        }
    }
}

impl BeatState {
    fn last_beat(&self) -> Instant {
        *self.last_beat.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a heartbeat task reports to: made when the first beat is recorded,
/// turned into the worker's [`Presence`] by [`Heartbeat::presence`].
#[derive(Clone)]
pub struct Heartbeat {
    state: Arc<BeatState>,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("timeout", &self.state.fresh_for)
            .finish_non_exhaustive()
    }
}

impl Heartbeat {
    /// A worker that the others take for dead once unheard for `timeout`;
    /// its first beat, sent at `sent`, is recorded.
    pub fn started(timeout: Duration, sent: Instant) -> Self {
        Self {
            state: Arc::new(BeatState {
                fresh_for: Some(timeout),
                last_beat: Mutex::new(sent),
                lapses: AtomicU64::new(0),
                ended: AtomicBool::new(false),
            }),
        }
    }

    /// How often to beat: a quarter of the timeout, at most every 5 s, so
    /// that a late beat does not stop the worker (it stops starting
    /// messages at half the timeout).
    pub fn interval(&self) -> Duration {
        let timeout = self.state.fresh_for.unwrap_or(Duration::from_secs(30));
        (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// A beat sent at `sent` was recorded; `lost` when the worker's row was
    /// gone (the others took it for dead and reclaimed its messages).
    pub fn beat(&self, sent: Instant, lost: bool) {
        let mut last = self
            .state
            .last_beat
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let half = self.state.fresh_for.unwrap_or(Duration::MAX) / 2;
        // A gap over half the timeout: a batch claimed before it must not
        // start more messages, even though the worker is fresh again.
        if lost || sent.saturating_duration_since(*last) >= half {
            self.state.lapses.fetch_add(1, Ordering::SeqCst);
        }
        *last = sent;
    }

    /// The worker's presence, alive while `hold` (the heartbeat task's
    /// guard) lives.
    pub fn presence(&self, hold: impl Send + Sync + 'static) -> Presence {
        Presence {
            state: Arc::clone(&self.state),
            _hold: Box::new(hold),
            end: None,
        }
    }
}

/// A worker's side: its presence (announced on first use) and when it last
/// looked for dead workers.
pub(crate) struct Liveness {
    presence: tokio::sync::OnceCell<Option<Presence>>,
    last_reclaim: Mutex<Option<Instant>>,
    timeout: Duration,
}

impl Liveness {
    /// For a worker that the others take for dead once unheard for `timeout`
    /// (`mailgate.outbox.workerTimeoutSeconds`).
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            presence: tokio::sync::OnceCell::new(),
            last_reclaim: Mutex::new(None),
            timeout,
        }
    }

    /// Before a claim: announces `worker` (the first time), ends the
    /// leases of dead workers (at most once a second) and returns the mark
    /// for [`Liveness::holds`].
    pub(crate) async fn before_claim(
        &self,
        store: &dyn OutboxStore,
        worker: &str,
        now: SystemTime,
    ) -> Result<u64> {
        let presence = self
            .presence
            .get_or_try_init(|| store.announce_worker(worker, self.timeout))
            .await?;
        let due = {
            let mut last = self.last_reclaim.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= RECLAIM_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            let n = store.reclaim_dead(worker, now).await?;
            if n > 0 {
                tracing::warn!(
                    "outbox: {n} message(s) of a worker that died are due again (its lease ended early)"
                );
            }
        }
        Ok(presence.as_ref().map_or(0, Presence::mark))
    }

    /// The worker stops (see [`Presence::end`]).
    pub(crate) async fn end(&self) {
        if let Some(Some(presence)) = self.presence.get() {
            presence.end().await;
        }
    }

    /// Whether messages claimed after `mark` may still be started.
    pub(crate) fn holds(&self, mark: u64) -> bool {
        match self.presence.get() {
            Some(Some(presence)) => presence.holds(mark),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lock_holds_until_the_worker_ends() {
        let ended = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&ended);
        let p = Presence::held(()).with_end(move || {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let mark = p.mark();
        assert!(p.holds(mark));
        p.end().await;
        p.end().await;
        assert!(!p.holds(mark));
        assert_eq!(ended.load(Ordering::SeqCst), 1, "one goodbye");
    }

    #[test]
    fn a_heartbeat_holds_while_fresh_and_never_again_after_a_lapse() {
        let timeout = Duration::from_millis(200);
        let start = Instant::now();
        let beat = Heartbeat::started(timeout, start);
        let p = beat.presence(());
        let mark = p.mark();
        assert!(p.holds(mark));
        assert_eq!(beat.interval(), Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(120));
        assert!(!p.holds(mark), "stale after half the timeout");
        // The beat comes back: the old batch stays stopped, a new one may go.
        beat.beat(Instant::now(), false);
        assert!(!p.holds(mark));
        assert!(p.holds(p.mark()));
        // Lost (the row was deleted by the others): a lapse too.
        let mark = p.mark();
        beat.beat(Instant::now(), true);
        assert!(!p.holds(mark));
    }

    #[test]
    fn regular_beats_keep_the_mark() {
        let beat = Heartbeat::started(Duration::from_secs(30), Instant::now());
        let p = beat.presence(());
        let mark = p.mark();
        beat.beat(Instant::now(), false);
        beat.beat(Instant::now(), false);
        assert!(p.holds(mark));
        assert_eq!(beat.interval(), Duration::from_secs(5));
    }
}
