//! The durable outbox: messages stored before they are sent, retried with
//! back-off while the server is down, kept when they cannot be delivered.
//!
//! A message moves `queued -> sending -> sent | dead`. It is marked `sent`
//! only after the server's final 250 (at-least-once: a crash between that
//! reply and the mark sends that one message again, nothing else is lost or
//! doubled). Temporary failures (exit 75: refused connections, timeouts,
//! 4xx, token endpoint 5xx) are retried with exponential back-off and jitter
//! until `mailgate.outbox.maxAgeHours`; permanent ones make it `dead` at once
//! with the server's reply kept.
//!
//! Each recipient has its own state too ([`RecipientState`]): a recipient
//! the server refuses for good (5xx at RCPT) is dead while the message goes
//! to the others; one refused for now (4xx) waits for the next attempt,
//! which goes only to the recipients still due. A message is `queued` while
//! any recipient is due, then `dead` if any recipient is dead, else `sent`.
//!
//! Core defines the store ([`OutboxStore`]), how a store is registered
//! ([`OutboxDescriptor`], opened from `mailgate.outbox.url`, an
//! [`OutboxUrl`] core does not parse), the policy and the delivery loop
//! ([`Worker`]). The stores themselves are other crates' (the
//! `mailgate-outbox` crate's, each behind a cargo feature), listed by the
//! program's [`Registry`](crate::Registry) as strategies are.

mod delay;
mod descriptor;
mod dsn;
mod liveness;
mod observer;
mod outcome;
mod store;
mod wake;
mod worker;

use std::fmt;
use std::time::{Duration, SystemTime};

pub use descriptor::{OpenStoreFn, OutboxDescriptor, OutboxUrl};
pub use dsn::DsnWriter;

/// Most bytes of message bodies one [`OutboxStore::claim`] returns (the
/// first message always, whatever its size): 64 MiB.
pub const CLAIM_MAX_BYTES: i64 = 64 * 1024 * 1024;
pub use liveness::{Heartbeat, Presence};
pub use observer::{DeliveryObserver, OutcomeCounts, OutcomeLog, RecipientCounts, RecipientEvent};
pub use outcome::DeliveryOutcome;
pub use store::{OutboxStore, WorkWatch};
pub use worker::{FlushReport, Worker, WorkerStats};

/// A message's id in the outbox.
pub type MessageId = i64;

/// Where a message is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Waiting for its next attempt.
    Queued,
    /// Leased by a worker that is sending it.
    Sending,
    /// The server accepted it (kept `mailgate.outbox.keepSentHours` for audit).
    Sent,
    /// It cannot be delivered: a permanent failure, or too old.
    Dead,
}

impl Status {
    /// Every status, in order.
    pub const ALL: [Status; 4] = [Status::Queued, Status::Sending, Status::Sent, Status::Dead];

    /// `queued`, `sending`, `sent` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Dead => "dead",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the sender asked of delivery status notifications (RFC 3461: the
/// relay's `RET`, `ENVID`, `NOTIFY` and `ORCPT`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DsnRequest {
    /// `RET=FULL`: a DSN carries the whole message, not only its header.
    pub ret_full: bool,
    /// `ENVID`, repeated in each DSN as `Original-Envelope-Id`.
    pub envid: Option<String>,
    /// What each recipient asked; a recipient not listed asked nothing.
    pub recipients: Vec<RecipientRequest>,
}

impl DsnRequest {
    /// What `address` asked, if anything.
    pub fn recipient(&self, address: &str) -> Option<&RecipientRequest> {
        self.recipients.iter().find(|r| r.address == address)
    }
}

/// One recipient's `NOTIFY` and `ORCPT`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecipientRequest {
    /// The address, as in the envelope.
    pub address: String,
    /// `NOTIFY`: `None` when not given (a DSN on failure, the default);
    /// all false for `NEVER`.
    pub notify: Option<Notify>,
    /// `ORCPT`, repeated in a DSN as `Original-Recipient`.
    pub orcpt: Option<String>,
}

/// The conditions of `NOTIFY`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// `SUCCESS`: a DSN once it is relayed.
    pub success: bool,
    /// `FAILURE`: a DSN when it is dead.
    pub failure: bool,
    /// `DELAY`: a DSN when it waits long.
    pub delay: bool,
}

/// A message to store: the bytes exactly as they will be sent (Message-ID
/// fixed), and its envelope.
#[derive(Clone)]
pub struct NewMessage {
    /// Envelope sender (empty: the null sender).
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The Subject, for listings.
    pub subject: String,
    /// The Message-ID, for listings and logs.
    pub message_id: Option<String>,
    /// The RFC 5322 bytes.
    pub bytes: Vec<u8>,
    /// What the sender asked of DSNs, if it asked (the relay's clients).
    pub dsn: Option<DsnRequest>,
}

impl NewMessage {
    /// The message as a store keeps it once stored as `id` at `now`:
    /// `queued`, due at once, no attempt yet, its age counted from `now`;
    /// and its bytes. What every store records for an enqueue (the SQL
    /// stores in their columns).
    pub fn into_queued(self, id: MessageId, now: SystemTime) -> (QueuedMessage, Vec<u8>) {
        let message = QueuedMessage {
            id,
            status: Status::Queued,
            attempts: 0,
            last_error: None,
            next_attempt: Some(now),
            created: now,
            age_from: now,
            sent_at: None,
            from: self.from,
            to: self.to,
            subject: self.subject,
            message_id: self.message_id,
            size: self.bytes.len() as u64,
            finished: Vec::new(),
            dsn: self.dsn,
            delay_warned: Vec::new(),
            body_dropped: false,
        };
        (message, self.bytes)
    }
}

/// How much of a sent message is kept when bodies are dropped
/// (`mailgate.outbox.keepSentBodies=false`): its header section, up to and
/// including the blank line that ends it. `None` when nothing follows (no
/// blank line, or no body): the message is kept as it is.
pub fn header_section_len(message: &[u8]) -> Option<usize> {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    (end < message.len()).then_some(end)
}

impl fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMessage")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("message_id", &self.message_id)
            .field("bytes", &self.bytes.len())
            .field("dsn", &self.dsn)
            .finish()
    }
}

/// What a listing shows of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its id.
    pub id: MessageId,
    /// Its status.
    pub status: Status,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last failure (the server's reply, cleaned), if any.
    pub last_error: Option<String>,
    /// When it will be tried next (queued messages only).
    pub next_attempt: Option<SystemTime>,
    /// When it was stored.
    pub created: SystemTime,
    /// Where its `mailgate.outbox.maxAgeHours` counts from: when it was
    /// stored, or when an operator last retried it by hand.
    pub age_from: SystemTime,
    /// When it was sent.
    pub sent_at: Option<SystemTime>,
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Message-ID.
    pub message_id: Option<String>,
    /// Size of the stored message in bytes.
    pub size: u64,
    /// The recipients that are done (sent or dead) while others were not;
    /// empty while all recipients share the message's status.
    pub finished: Vec<RecipientRecord>,
    /// What the sender asked of DSNs, if it asked.
    pub dsn: Option<DsnRequest>,
    /// The recipients still due whose delay was reported: they were still
    /// deferred after `mailgate.outbox.delayWarningHours`, and a delay
    /// notice went out if their `NOTIFY` asked for one. Never twice.
    pub delay_warned: Vec<String>,
    /// The stored bytes are the header section only: the body was dropped
    /// once the message was sent (`mailgate.outbox.keepSentBodies=false`);
    /// [`QueuedMessage::size`] is still the size of the whole message.
    pub body_dropped: bool,
}

/// A recipient that is done: the server took the message for it, or it is dead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientRecord {
    /// The address, as in the envelope.
    pub address: String,
    /// [`Status::Sent`] or [`Status::Dead`].
    pub status: Status,
    /// The server's reply: the acceptance, or why it is dead.
    pub reply: Option<String>,
    /// Delivery attempts that included it.
    pub attempts: u32,
}

/// One recipient of a stored message as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientState {
    /// The address.
    pub address: String,
    /// `queued` or `sending` while it is due, then `sent` or `dead`.
    pub status: Status,
    /// The last failure for it (or the acceptance, once sent).
    pub last_error: Option<String>,
    /// Delivery attempts that included it.
    pub attempts: u32,
}

impl QueuedMessage {
    /// Each envelope recipient with its own state: a recipient that is done
    /// has its record; the others share the message's status.
    pub fn recipients(&self) -> Vec<RecipientState> {
        self.to
            .iter()
            .map(|address| match self.finished_record(address) {
                Some(done) => RecipientState {
                    address: address.clone(),
                    status: done.status,
                    last_error: done.reply.clone(),
                    attempts: done.attempts,
                },
                None => RecipientState {
                    address: address.clone(),
                    status: self.status,
                    last_error: match self.status {
                        Status::Sent => None,
                        _ => self.last_error.clone(),
                    },
                    attempts: self.attempts,
                },
            })
            .collect()
    }

    /// The recipients still due: none once the message is sent or dead,
    /// else those without a record (in envelope order, duplicates kept, as
    /// the transaction sends each distinct one once).
    pub fn due(&self) -> Vec<String> {
        if matches!(self.status, Status::Sent | Status::Dead) {
            return Vec::new();
        }
        self.to
            .iter()
            .filter(|a| self.finished_record(a).is_none())
            .cloned()
            .collect()
    }

    /// What [`OutboxStore::retry`] makes of this message at `now` when it
    /// is `queued` or `dead`: `queued` and due now, its attempts and its age
    /// counted afresh, its dead recipients due again (the sent ones stay
    /// sent, a reported delay stays reported). False, and unchanged, in
    /// another state.
    pub fn retry(&mut self, now: SystemTime) -> bool {
        if !matches!(self.status, Status::Queued | Status::Dead) {
            return false;
        }
        self.status = Status::Queued;
        self.next_attempt = Some(now);
        self.age_from = now;
        self.attempts = 0;
        self.finished.retain(|r| r.status != Status::Dead);
        true
    }

    /// What a `sent` message keeps of its `bytes` when bodies are dropped
    /// (`mailgate.outbox.keepSentBodies=false`): the header section
    /// ([`header_section_len`]), and [`QueuedMessage::body_dropped`] set.
    /// Nothing changes for a message in another state, or one with no
    /// body.
    pub fn drop_sent_body(&mut self, bytes: &mut Vec<u8>) {
        if let Some(header) = header_section_len(bytes).filter(|_| self.status == Status::Sent) {
            bytes.truncate(header);
            self.body_dropped = true;
        }
    }

    fn finished_record(&self, address: &str) -> Option<&RecipientRecord> {
        self.finished.iter().find(|r| r.address == address)
    }
}

/// A message leased to a worker, with its bytes.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// What the listing shows.
    pub message: QueuedMessage,
    /// The bytes to send.
    pub bytes: Vec<u8>,
}

/// Recipients per status, over all stored messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecipientStats {
    /// Recipients still due (their message `queued` or `sending`).
    pub queued: u64,
    /// Recipients the server took the message for (still kept).
    pub sent: u64,
    /// Recipients that cannot be delivered.
    pub dead: u64,
}

/// Messages per status, and the age of the oldest waiting one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `queued` messages.
    pub queued: u64,
    /// `sending` messages (leased).
    pub sending: u64,
    /// `sent` messages still kept.
    pub sent: u64,
    /// `dead` messages.
    pub dead: u64,
    /// When the oldest `queued` or `sending` message was stored.
    pub oldest_waiting: Option<SystemTime>,
    /// The same per recipient.
    pub recipients: RecipientStats,
}

impl Stats {
    /// The counts of `messages` (every stored message, `sent` ones too):
    /// per status, the oldest waiting one, and per recipient (a recipient
    /// without a finished record shares its message's status). What
    /// [`OutboxStore::stats`] reports unless a store counts with a query of
    /// its own.
    pub fn of<'m>(messages: impl IntoIterator<Item = &'m QueuedMessage>) -> Stats {
        let mut stats = Stats::default();
        for m in messages {
            *match m.status {
                Status::Queued => &mut stats.queued,
                Status::Sending => &mut stats.sending,
                Status::Sent => &mut stats.sent,
                Status::Dead => &mut stats.dead,
            } += 1;
            if matches!(m.status, Status::Queued | Status::Sending) {
                stats.oldest_waiting =
                    Some(stats.oldest_waiting.map_or(m.created, |t| t.min(m.created)));
            }
            for r in m.recipients() {
                *match r.status {
                    Status::Queued | Status::Sending => &mut stats.recipients.queued,
                    Status::Sent => &mut stats.recipients.sent,
                    Status::Dead => &mut stats.recipients.dead,
                } += 1;
            }
        }
        stats
    }
}

/// How a claim ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The server said 250; the reply text.
    Sent {
        /// The final reply.
        reply: String,
    },
    /// Try again at `next_attempt`.
    Retry {
        /// Why it failed.
        error: String,
        /// When to try again.
        next_attempt: SystemTime,
    },
    /// Give up: permanent failure or too old.
    Dead {
        /// Why.
        error: String,
    },
    /// The recipients ended differently. `finished` replaces the message's
    /// [`QueuedMessage::finished`] (the earlier records and the new ones);
    /// the message is `queued` until `next_attempt` when some recipients
    /// are still due, else `dead` if any recipient is, else `sent`.
    Recipients {
        /// Every recipient that is done.
        finished: Vec<RecipientRecord>,
        /// When the recipients still due are tried again; `None` if none is.
        next_attempt: Option<SystemTime>,
        /// The message's last failure, for listings.
        error: String,
        /// The recipients still due whose delay was reported (replaces
        /// [`QueuedMessage::delay_warned`]).
        delay_warned: Vec<String>,
    },
}

impl Completion {
    /// The status the message has after this completion.
    pub fn status(&self) -> Status {
        match self {
            Completion::Sent { .. } => Status::Sent,
            Completion::Retry { .. } => Status::Queued,
            Completion::Dead { .. } => Status::Dead,
            Completion::Recipients {
                finished,
                next_attempt,
                ..
            } => {
                if next_attempt.is_some() {
                    Status::Queued
                } else if finished.iter().any(|r| r.status == Status::Dead) {
                    Status::Dead
                } else {
                    Status::Sent
                }
            }
        }
    }

    /// What this completion makes of `message` at `now`, as every store
    /// records it: the status, the last failure (kept when the completion
    /// brings none), the next attempt, when it was sent, and for
    /// [`Completion::Recipients`] the finished recipients and the reported
    /// delays (of the recipients still due). The SQL stores write the same
    /// into their columns; a store that keeps [`QueuedMessage`]s calls this.
    /// The lease and the message's bytes are the store's to handle.
    pub fn apply(self, message: &mut QueuedMessage, now: SystemTime) {
        message.status = self.status();
        message.sent_at = (message.status == Status::Sent).then_some(now);
        match self {
            Completion::Sent { .. } => message.next_attempt = None,
            Completion::Retry {
                error,
                next_attempt,
            } => {
                message.last_error = Some(error);
                message.next_attempt = Some(next_attempt);
            }
            Completion::Dead { error } => {
                message.last_error = Some(error);
                message.next_attempt = None;
            }
            Completion::Recipients {
                finished,
                next_attempt,
                error,
                mut delay_warned,
            } => {
                delay_warned.retain(|a| !finished.iter().any(|r| &r.address == a));
                message.finished = finished;
                message.next_attempt = next_attempt;
                message.last_error = Some(error);
                message.delay_warned = delay_warned;
            }
        }
    }
}

/// The outbox settings (`mailgate.outbox.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxSettings {
    /// Where the messages are kept (`mailgate.outbox.url`), as set; `None`
    /// when the key is not set, and the program's default applies
    /// ([`Registry::default_outbox_url`](crate::Registry::default_outbox_url)).
    pub url: Option<OutboxUrl>,
    /// First retry delay (`mailgate.outbox.retry.initialSeconds`, 30).
    pub retry_initial: Duration,
    /// Longest retry delay (`mailgate.outbox.retry.maxSeconds`, 1800).
    pub retry_max: Duration,
    /// A message older than this is dead (`mailgate.outbox.maxAgeHours`, 72).
    pub max_age: Duration,
    /// Sent messages are kept this long (`mailgate.outbox.keepSentHours`, 24).
    pub keep_sent: Duration,
    /// A claim's lease (`mailgate.outbox.leaseSeconds`, 300): a worker that
    /// dies releases its messages after this.
    pub lease: Duration,
    /// A worker unheard for this long is dead and its messages are claimed
    /// by the others (`mailgate.outbox.workerTimeoutSeconds`, 30; for a
    /// store whose workers keep a heartbeat).
    pub worker_timeout: Duration,
    /// A recipient still deferred this long after its message was stored
    /// (or retried by hand) gets its sender one delay notice, where
    /// `NOTIFY` allows (`mailgate.outbox.delayWarningHours`, 4; `None` for
    /// 0: never).
    pub delay_warning: Option<Duration>,
    /// Sent messages keep their body (`mailgate.outbox.keepSentBodies`,
    /// false: only the header section, the envelope, the size and the
    /// replies are kept once a message is sent).
    pub keep_sent_bodies: bool,
}

/// `scheme://user@host:port/db`: password, query and fragment left out. A
/// URL without `://` (`scheme:PATH`) holds no password and is shown as it is.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // A password with an unencoded `?` or `#` must not survive the cut below.
    let rest = match crate::smtp::redact::url_userinfo(url) {
        Some((_, userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            return shown_url(&format!("{scheme}://{user}@{host}"));
        }
        None => rest,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (Some(auth), host),
        None => (None, rest),
    };
    let user = auth.map(|a| a.split(':').next().unwrap_or_default());
    match user {
        Some(user) if !user.is_empty() => format!("{scheme}://{user}@{host}"),
        _ => format!("{scheme}://{host}"),
    }
}

/// The delay before attempt `attempts + 1` after `attempts` failures:
/// `initial * 2^(attempts-1)`, at most `max`, then a random half to whole
/// of it ("equal jitter"), so that workers retrying together spread out.
pub fn backoff(settings: &OutboxSettings, attempts: u32, jitter: f64) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let base = settings
        .retry_initial
        .saturating_mul(1u32 << exp)
        .min(settings.retry_max);
    let jitter = jitter.clamp(0.0, 1.0);
    base.mul_f64(0.5 + 0.5 * jitter)
}

#[cfg(test)]
mod tests;
