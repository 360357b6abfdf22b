//! Delivering what the outbox holds: one message now, every due message, or
//! a long-running loop that stops between messages.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use lettre::address::Envelope;

use super::delay::{Deferrals, delay_warnings, still_due};
use super::dsn::DsnWriter;
use super::observer::{
    DeliveryObserver, OutcomeCounts, OutcomeLog, RecipientCounts, RecipientEvent,
};
use super::outcome::DeliveryOutcome;
use super::wake::Wake;
use super::{
    Claimed, Completion, MessageId, OutboxSettings, OutboxStore, QueuedMessage, RecipientRecord,
    Status, backoff,
};
use crate::error::{Error, RecipientRefusal, Result};
use crate::mailer::Mailer;

/// Messages claimed at once per connection: one claim for many deliveries.
const BATCH_PER_CONNECTION: usize = 64;

/// Sent messages past their keep time are deleted at most this often.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// What a worker has done since it started (for metrics); `+=` adds the
/// counts of another (a replaced worker's, say).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Messages the server accepted.
    pub delivered: u64,
    /// Temporary failures: left queued for later.
    pub deferred: u64,
    /// Messages that became dead.
    pub dead: u64,
    /// Delivery attempts timed, and their total time in microseconds.
    pub attempts: u64,
    /// Total time of the timed attempts, microseconds.
    pub attempt_micros: u64,
    /// Recipients by outcome (a message of three recipients counts three).
    pub recipients: RecipientCounts,
}

impl std::ops::AddAssign<&WorkerStats> for WorkerStats {
    fn add_assign(&mut self, other: &WorkerStats) {
        self.delivered += other.delivered;
        self.deferred += other.deferred;
        self.dead += other.dead;
        self.attempts += other.attempts;
        self.attempt_micros += other.attempt_micros;
        self.recipients += &other.recipients;
    }
}

#[derive(Default)]
struct Counters {
    delivered: std::sync::atomic::AtomicU64,
    deferred: std::sync::atomic::AtomicU64,
    dead: std::sync::atomic::AtomicU64,
    attempts: std::sync::atomic::AtomicU64,
    attempt_micros: std::sync::atomic::AtomicU64,
}

/// What `queue flush` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Messages sent.
    pub sent: u64,
    /// Messages that failed for now and stay queued.
    pub requeued: u64,
    /// Messages that became dead.
    pub dead: u64,
}

/// Delivers outbox messages through one pooled [`Mailer`].
///
/// Several workers (tasks, processes, machines on one shared database) may
/// run at once: each message is leased to one of them at a time.
#[derive(Clone)]
pub struct Worker {
    mailer: Mailer,
    store: Arc<dyn OutboxStore>,
    settings: OutboxSettings,
    id: String,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    last_purge: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// The stop flags of the batches in progress.
    stop_flags: Arc<std::sync::Mutex<Vec<std::sync::Weak<AtomicBool>>>>,
    counters: Arc<Counters>,
    wake: Arc<tokio::sync::Notify>,
    observers: Arc<Vec<Arc<dyn DeliveryObserver>>>,
    /// The recipient counts of [`Worker::stats`], one of the observers.
    outcome_counts: Arc<OutcomeCounts>,
    /// Announced on first claim; its messages come back at once if it dies.
    liveness: Arc<super::liveness::Liveness>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker for `mailer`'s outbox. It sends a delivery status
    /// notification for each message whose recipients die ([`DsnWriter`])
    /// unless `mailgate.outbox.bounces=false`.
    pub fn new(mailer: &Mailer) -> Result<Self> {
        let store = Arc::clone(mailer.outbox()?);
        let dsn = DsnWriter::from_settings(mailer.settings(), Arc::clone(&store))?
            .map(|w| Arc::new(w.waking(mailer.outbox_wake())) as Arc<dyn DeliveryObserver>);
        // Logs, metrics and DSNs hear each recipient's outcome the same way.
        let outcome_counts = Arc::new(OutcomeCounts::default());
        let observers: Vec<Arc<dyn DeliveryObserver>> = [
            Arc::new(OutcomeLog) as Arc<dyn DeliveryObserver>,
            Arc::clone(&outcome_counts) as Arc<dyn DeliveryObserver>,
        ]
        .into_iter()
        .chain(dsn)
        .collect();
        Ok(Self {
            settings: mailer.settings().outbox().clone(),
            mailer: mailer.clone(),
            store,
            id: worker_id(),
            clock: Arc::new(SystemTime::now),
            last_purge: Arc::default(),
            stop_flags: Arc::default(),
            counters: Arc::default(),
            wake: mailer.outbox_wake(),
            observers: Arc::new(observers),
            outcome_counts,
            liveness: Arc::new(super::liveness::Liveness::new(
                mailer.settings().outbox().worker_timeout,
            )),
        })
    }

    /// Tells `observer` what becomes of each recipient (delivered, deferred,
    /// dead), after each attempt and before the outcome is recorded: after
    /// a crash in between, an observer may hear of one attempt twice, never
    /// of none.
    pub fn observe(mut self, observer: Arc<dyn DeliveryObserver>) -> Self {
        Arc::make_mut(&mut self.observers).push(observer);
        self
    }

    /// Uses `clock` instead of the system time (tests of back-off).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// What this worker (and its clones) did so far.
    pub fn stats(&self) -> WorkerStats {
        let c = &self.counters;
        WorkerStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            deferred: c.deferred.load(Ordering::Relaxed),
            dead: c.dead.load(Ordering::Relaxed),
            attempts: c.attempts.load(Ordering::Relaxed),
            attempt_micros: c.attempt_micros.load(Ordering::Relaxed),
            recipients: self.outcome_counts.snapshot(),
        }
    }

    /// This worker's lease owner name: host, process and a random part.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Tries message `id` now if it is queued, whatever its back-off;
    /// `None` if it is not queued (sent, dead, leased, or unknown).
    pub async fn deliver_id(&self, id: MessageId) -> Result<Option<DeliveryOutcome>> {
        let now = (self.clock)();
        self.liveness
            .before_claim(self.store.as_ref(), &self.id, now)
            .await?;
        match self
            .store
            .claim_one(id, &self.id, self.settings.lease, now)
            .await?
        {
            Some(claimed) => self.deliver(claimed).await.map(Some),
            None => Ok(None),
        }
    }

    /// Delivers the messages due now (and ones whose lease ran out): claims
    /// a batch and sends it, as many at once as the mailer has
    /// connections; how many were tried.
    pub async fn deliver_due(&self) -> Result<usize> {
        self.deliver_batch().await
    }

    /// One claimed batch. When [`Self::stop_batches`] is called, the
    /// messages not started yet are given back (queued, due) and only those
    /// in hand are finished.
    async fn deliver_batch(&self) -> Result<usize> {
        // Registered before the first await: a stop that comes while the
        // batch is still being claimed reaches it too.
        let stopping = Arc::new(AtomicBool::new(false));
        {
            let mut flags = self.stop_flags.lock().unwrap_or_else(|p| p.into_inner());
            flags.retain(|f| f.strong_count() > 0);
            flags.push(Arc::downgrade(&stopping));
        }
        let now = (self.clock)();
        self.purge(now).await?;
        let mark = self
            .liveness
            .before_claim(self.store.as_ref(), &self.id, now)
            .await?;
        let connections = self.mailer.max_connections().max(1);
        let claimed = self
            .store
            .claim(
                &self.id,
                self.settings.lease,
                connections * BATCH_PER_CONNECTION,
                now,
            )
            .await?;
        let n = claimed.len();
        // A message is started only in the first half of the lease, so that
        // its delivery ends before another worker may take it over; the
        // rest of the batch is given back.
        let start_by = std::time::Instant::now() + self.settings.lease / 2;
        let queue = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
            claimed,
        )));
        // A writer records the outcomes that arrive while it writes in one
        // write (group commit) and then lets their connections go on.
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..connections.min(n) {
            let worker = self.clone();
            let queue = Arc::clone(&queue);
            let stopping = Arc::clone(&stopping);
            let done_tx = done_tx.clone();
            tasks.spawn(async move {
                // A worker the others may take for dead starts nothing more.
                while !stopping.load(Ordering::SeqCst)
                    && std::time::Instant::now() < start_by
                    && worker.liveness.holds(mark)
                {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some(claimed) = next else { break };
                    let outcome = worker.attempt(claimed).await;
                    // The next message waits until this one is recorded:
                    // a crash doubles at most one message per connection.
                    let (recorded_tx, recorded_rx) = tokio::sync::oneshot::channel();
                    if done_tx.send((outcome, recorded_tx)).is_err() {
                        break;
                    }
                    if recorded_rx.await.is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let writer = async {
            let mut first_error = None;
            while let Some(first) = done_rx.recv().await {
                let mut group = vec![first];
                while let Ok(more) = done_rx.try_recv() {
                    group.push(more);
                }
                let (outcomes, acks): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                match self.record(outcomes).await {
                    Ok(()) => {
                        for ack in acks {
                            let _ = ack.send(());
                        }
                    }
                    // Unacknowledged, the senders stop: nothing more is sent
                    // that could not be recorded.
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            first_error
        };
        let joiner = async {
            let mut first_error = None;
            while let Some(done) = tasks.join_next().await {
                if let Err(e) = done {
                    first_error.get_or_insert(Error::Usage(format!("a delivery task failed: {e}")));
                }
            }
            first_error
        };
        let (write_error, join_error) = tokio::join!(writer, joiner);
        let first_error = write_error.or(join_error);
        let left: Vec<MessageId> = queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .map(|c| c.message.id)
            .collect();
        if !left.is_empty() {
            self.store.release(&left, &self.id).await?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(n - left.len()),
        }
    }

    /// Deletes sent messages past `mailgate.outbox.keepSentHours`, at most
    /// once a minute.
    async fn purge(&self, now: SystemTime) -> Result<()> {
        {
            let mut last = self.last_purge.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < PURGE_EVERY) {
                return Ok(());
            }
            *last = Some(std::time::Instant::now());
        }
        let keep = now.checked_sub(self.settings.keep_sent).unwrap_or(now);
        self.store.purge_sent(keep).await.map(drop)
    }

    /// Asks the batches in progress to stop after the messages in hand.
    fn stop_batches(&self) {
        for flag in self
            .stop_flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            if let Some(flag) = flag.upgrade() {
                flag.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Tries every queued message now, whatever its back-off, one after
    /// another; `progress(done, total)` after each.
    pub async fn flush(&self, mut progress: impl FnMut(usize, usize)) -> Result<FlushReport> {
        let ids = self.store.queued_ids().await?;
        let mut report = FlushReport::default();
        for (i, id) in ids.iter().enumerate() {
            match self.deliver_id(*id).await? {
                Some(DeliveryOutcome::Sent(_)) => report.sent += 1,
                Some(DeliveryOutcome::Retry { .. }) => report.requeued += 1,
                Some(DeliveryOutcome::Dead { .. }) => report.dead += 1,
                Some(outcome @ DeliveryOutcome::Recipients { .. }) => match outcome.status() {
                    Status::Sent => report.sent += 1,
                    Status::Dead => report.dead += 1,
                    _ => report.requeued += 1,
                },
                None => {}
            }
            progress(i + 1, ids.len());
        }
        Ok(report)
    }

    /// Delivers due messages until `shutdown` completes. Deliveries in hand
    /// (at most one per connection) are finished first: `shutdown` is only
    /// looked at between batches and while waiting. Store errors are logged
    /// and retried after a pause (a database restarting must not stop the
    /// worker).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let result = self.run_until(shutdown).await;
        self.retire().await;
        result
    }

    /// Ends this worker's presence on the outbox: it no longer counts as
    /// alive and starts nothing more. [`Worker::run`] does it when it
    /// returns; a worker used only for [`Worker::deliver_id`] or
    /// [`Worker::flush`] calls it before the process exits (dropped, it
    /// says goodbye only if the runtime still runs).
    pub async fn retire(&self) {
        self.liveness.end().await;
    }

    async fn run_until(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        let mut wake = Wake::new(Arc::clone(&self.wake));
        loop {
            // Polled here first so that a signal handler behind it is in place.
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                () = std::future::ready(()) => {}
            }
            wake.listen(self.store.as_ref()).await;
            let batch = self.deliver_due();
            tokio::pin!(batch);
            let result = tokio::select! {
                biased;
                result = &mut batch => result,
                () = &mut shutdown => {
                    // Finish the messages in hand, give the others back.
                    self.stop_batches();
                    let _ = batch.await;
                    return Ok(());
                }
            };
            let pause = match result {
                Ok(n) if n > 0 => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    let poll = wake.poll(self.settings.worker_timeout);
                    self.until_next_due(poll).await
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!("outbox: {e}; trying again");
                    Duration::from_secs(1u64 << failures.min(5))
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                () = wake.sleep(pause) => {}
            }
        }
    }

    /// How long to sleep: until the next message is due, at most `poll`.
    async fn until_next_due(&self, poll: Duration) -> Duration {
        let now = (self.clock)();
        match self.store.next_due().await {
            Ok(Some(at)) => at.duration_since(now).unwrap_or(Duration::ZERO).min(poll),
            _ => poll,
        }
    }

    /// Sends one claimed message and records the outcome.
    async fn deliver(&self, claimed: Claimed) -> Result<DeliveryOutcome> {
        let (message, outcome) = self.attempt(claimed).await;
        self.record(vec![(message, outcome.clone())]).await?;
        Ok(outcome)
    }

    /// Sends one claimed message to its recipients still due; what became
    /// of it, told to the observers (nothing recorded yet).
    async fn attempt(&self, claimed: Claimed) -> (QueuedMessage, DeliveryOutcome) {
        let Claimed { mut message, bytes } = claimed;
        let started = std::time::Instant::now();
        let due = message.due();
        // Each recipient refused for now, with its own reply (the delay
        // notice quotes it rather than the summary of all refusals).
        let mut own_replies: Vec<(String, String)> = Vec::new();
        let mut note_refusals = |refused: &[RecipientRefusal]| {
            for r in refused.iter().filter(|r| r.is_transient()) {
                if let Some(address) = due.get(r.index) {
                    own_replies.push((address.clone(), format!("{} {}", r.code, r.reply)));
                }
            }
        };
        let outcome = match envelope_of(&message.from, &due) {
            Err(e) => DeliveryOutcome::Dead {
                error: e.to_string(),
                exit_code: e.exit_code(),
            },
            Ok(envelope) => match self.mailer.send_prepared(&envelope, &bytes).await {
                Ok(delivery) if delivery.refused.is_empty() => {
                    DeliveryOutcome::Sent(delivery.reply)
                }
                Ok(delivery) => {
                    note_refusals(&delivery.refused);
                    let error = delivery.refusal().map(|e| (e.to_string(), e.exit_code()));
                    self.per_recipient(
                        &message,
                        &due,
                        Some(&delivery.reply),
                        &delivery.refused,
                        error,
                    )
                }
                Err(e) if !e.refused_recipients().is_empty() => {
                    note_refusals(e.refused_recipients());
                    let error = Some((e.to_string(), e.exit_code()));
                    self.per_recipient(&message, &due, None, e.refused_recipients(), error)
                }
                Err(e) => {
                    let (next, too_old) = self.next_attempt(&message);
                    if !e.is_transient() {
                        DeliveryOutcome::Dead {
                            error: e.to_string(),
                            exit_code: e.exit_code(),
                        }
                    } else if too_old {
                        DeliveryOutcome::Dead {
                            error: format!(
                                "{e} (given up: older than mailgate.outbox.maxAgeHours)"
                            ),
                            exit_code: e.exit_code(),
                        }
                    } else {
                        DeliveryOutcome::Retry {
                            error: e.to_string(),
                            next_attempt: next,
                        }
                    }
                }
            },
        };
        let outcome = self.with_earlier_records(&message, &due, outcome);
        let now = (self.clock)();
        let still_due = still_due(&due, &outcome);
        let newly_delayed = delay_warnings(self.settings.delay_warning, &message, &still_due, now);
        // What is recorded: the reported delays of the recipients still due.
        message.delay_warned = still_due
            .iter()
            .filter(|a| message.delay_warned.contains(a) || newly_delayed.contains(a))
            .cloned()
            .collect();
        let will_retry_until = message
            .age_from
            .checked_add(self.settings.max_age)
            .unwrap_or(message.age_from);
        self.tell_observers(
            &message,
            &bytes,
            &due,
            &outcome,
            &Deferrals {
                own_replies: &own_replies,
                delayed: &newly_delayed,
                will_retry_until,
            },
        )
        .await;
        let c = &self.counters;
        c.attempts.fetch_add(1, Ordering::Relaxed);
        c.attempt_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match outcome.status() {
            Status::Sent => &c.delivered,
            Status::Dead => &c.dead,
            Status::Queued | Status::Sending => &c.deferred,
        }
        .fetch_add(1, Ordering::Relaxed);
        (message, outcome)
    }

    /// A message some of whose recipients were done before this attempt
    /// keeps their records: its status is that of all its recipients (dead
    /// if any is dead), not of this attempt's alone.
    fn with_earlier_records(
        &self,
        message: &QueuedMessage,
        due: &[String],
        outcome: DeliveryOutcome,
    ) -> DeliveryOutcome {
        // Reported delays are recipient state too: the final outcome
        // replaces them.
        if message.finished.is_empty() && message.delay_warned.is_empty() {
            return outcome;
        }
        match outcome {
            DeliveryOutcome::Sent(reply) => {
                self.per_recipient(message, due, Some(&reply), &[], None)
            }
            DeliveryOutcome::Dead { error, exit_code } => {
                let mut finished = message.finished.clone();
                for address in due {
                    if !finished.iter().any(|r| &r.address == address) {
                        finished.push(RecipientRecord {
                            address: address.clone(),
                            status: Status::Dead,
                            reply: Some(error.clone()),
                            attempts: message.attempts,
                        });
                    }
                }
                DeliveryOutcome::Recipients {
                    finished,
                    next_attempt: None,
                    error,
                    exit_code,
                }
            }
            other => other,
        }
    }

    /// When the next attempt would be, and whether that is past the
    /// message's `mailgate.outbox.maxAgeHours`.
    fn next_attempt(&self, message: &QueuedMessage) -> (SystemTime, bool) {
        let now = (self.clock)();
        let next = now + backoff(&self.settings, message.attempts, jitter());
        let too_old = message
            .age_from
            .checked_add(self.settings.max_age)
            .is_some_and(|limit| next > limit);
        (next, too_old)
    }

    /// The outcome when the server refused some of the recipients `due`
    /// (`refused`, by position) and, with `reply`, took the message for
    /// the others: a permanent refusal makes that recipient dead, a
    /// temporary one leaves it due (dead once the message is too old).
    fn per_recipient(
        &self,
        message: &QueuedMessage,
        due: &[String],
        reply: Option<&str>,
        refused: &[RecipientRefusal],
        error: Option<(String, u8)>,
    ) -> DeliveryOutcome {
        let (next, too_old) = self.next_attempt(message);
        let mut finished = message.finished.clone();
        let mut still_due = false;
        for (index, address) in due.iter().enumerate() {
            if finished.iter().any(|r| &r.address == address) {
                continue; // a duplicate of one just recorded
            }
            let record = |status, reply: String| RecipientRecord {
                address: address.clone(),
                status,
                reply: Some(reply),
                attempts: message.attempts,
            };
            match refused.iter().find(|r| r.index == index) {
                None => match reply {
                    Some(reply) => finished.push(record(Status::Sent, reply.to_owned())),
                    // Not refused and not sent: the transaction stopped first.
                    None => still_due = true,
                },
                Some(r) if r.is_transient() && !too_old => still_due = true,
                Some(r) if r.is_transient() => finished.push(record(
                    Status::Dead,
                    format!(
                        "{} {} (given up: older than mailgate.outbox.maxAgeHours)",
                        r.code, r.reply
                    ),
                )),
                Some(r) => finished.push(record(Status::Dead, format!("{} {}", r.code, r.reply))),
            }
        }
        // Without refusals this attempt only completes earlier records.
        let (error, exit_code) =
            error.unwrap_or_else(|| (message.last_error.clone().unwrap_or_default(), 0));
        DeliveryOutcome::Recipients {
            finished,
            next_attempt: still_due.then_some(next),
            error,
            exit_code,
        }
    }

    /// Tells the observers what became of each recipient of this attempt.
    async fn tell_observers(
        &self,
        message: &QueuedMessage,
        original: &[u8],
        due: &[String],
        outcome: &DeliveryOutcome,
        deferrals: &Deferrals<'_>,
    ) {
        if self.observers.is_empty() {
            return;
        }
        let events = RecipientEvent::of(message, due, outcome)
            .into_iter()
            .map(|event| deferrals.refine(event))
            .collect::<Vec<_>>();
        for observer in self.observers.iter() {
            observer.on_attempt(message, original, &events).await;
        }
    }

    /// Records outcomes in the store, all in one write (the observers have
    /// logged and counted them).
    async fn record(&self, outcomes: Vec<(QueuedMessage, DeliveryOutcome)>) -> Result<()> {
        let completions: Vec<(MessageId, Completion)> = outcomes
            .iter()
            .map(|(message, outcome)| (message.id, outcome.completion_of(message)))
            .collect();
        let now = (self.clock)();
        let kept = self
            .store
            .complete_many(&self.id, &completions, now)
            .await?;
        for ((message, _), kept) in outcomes.iter().zip(kept) {
            if !kept {
                tracing::warn!(
                    "outbox: the lease on message {} ran out during delivery; another worker may send it again",
                    message.id
                );
            }
        }
        Ok(())
    }
}

fn envelope_of(from: &str, to: &[String]) -> Result<Envelope> {
    use crate::message::address::envelope_address;
    let from = if from.is_empty() {
        None
    } else {
        Some(envelope_address("from", from)?)
    };
    let to = to
        .iter()
        .map(|t| envelope_address("to", t))
        .collect::<Result<Vec<_>>>()?;
    Envelope::new(from, to)
        .map_err(|e| Error::invalid_message("to", format!("stored envelope: {e}")))
}

/// A number in [0, 1), different in every call.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn worker_id() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    let id = crate::message::raw::message_id("x");
    // The random hex of a fresh Message-ID: unique across restarts.
    let random = id.trim_start_matches('<').get(..12).unwrap_or("0");
    format!("{host}-{}-{random}", std::process::id())
}
