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
mod worker;

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

pub use descriptor::{OpenStoreFn, OutboxDescriptor, OutboxUrl};
pub use dsn::DsnWriter;

/// Most bytes of message bodies one [`OutboxStore::claim`] returns (the
/// first message always, whatever its size): 64 MiB.
pub const CLAIM_MAX_BYTES: i64 = 64 * 1024 * 1024;
pub use liveness::{Heartbeat, Presence};
pub use observer::{DeliveryObserver, RecipientEvent};
pub use worker::{DeliveryOutcome, FlushReport, Worker, WorkerStats};

use crate::error::Result;

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

/// A store of outbox messages. An enqueue is durable before it returns (it
/// survives a power loss); claims and completions need only survive the
/// process (a completion lost with the machine sends that message again,
/// which at-least-once allows), so stores may commit them without waiting
/// for the disk. Claims are leased, so that a worker that dies releases its
/// messages when the lease runs out.
#[async_trait]
pub trait OutboxStore: Send + Sync + fmt::Debug {
    /// The store's name and its location, without any password (`check`
    /// and errors show it).
    fn describe(&self) -> String;

    /// Whether the store exists yet (a store kept in a file may create it
    /// on first use); `check` reads nothing from one that does not.
    fn created(&self) -> bool {
        true
    }

    /// The local file the outbox lives in, when it is one: the command line
    /// keeps its lock and status files beside it, and a worker stops when
    /// it is removed. `None` (the default) for any other store.
    fn local_file(&self) -> Option<&Path> {
        None
    }

    /// Stores a message as `queued`, due now; returns its id once durable.
    async fn enqueue(&self, message: NewMessage) -> Result<MessageId>;

    /// Leases up to `limit` due messages to `worker` until `now + lease`:
    /// `queued` ones whose next attempt has come, and `sending` ones whose
    /// lease ran out (their worker died). Each claim counts as an attempt.
    /// `now` is the worker's clock; a store shared by several machines may
    /// judge by a clock of its own (its database's) instead, so that
    /// workers whose clocks disagree never take each other's live leases.
    /// The messages' sizes add up to at most [`CLAIM_MAX_BYTES`] (the
    /// first one whatever its size): a worker holds the bodies it claimed,
    /// and a queue of big messages must not take the machine's memory.
    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        limit: usize,
        now: SystemTime,
    ) -> Result<Vec<Claimed>>;

    /// Leases message `id` to `worker` if it is `queued` (due or not):
    /// `send --queue`'s immediate attempt and `queue flush`.
    async fn claim_one(
        &self,
        id: MessageId,
        worker: &str,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Option<Claimed>>;

    /// Ends `worker`'s lease on `id`. A lease that was lost (expired and
    /// taken by another worker) changes nothing and returns `false`.
    async fn complete(
        &self,
        id: MessageId,
        worker: &str,
        completion: Completion,
        now: SystemTime,
    ) -> Result<bool>;

    /// [`OutboxStore::complete`] for several messages of `worker`: the sent
    /// ones through [`OutboxStore::complete_sent`], the others one by one;
    /// whether each lease was still held.
    async fn complete_many(
        &self,
        worker: &str,
        completions: &[(MessageId, Completion)],
        now: SystemTime,
    ) -> Result<Vec<bool>> {
        // The sent ones (nearly all) in one write; failures are rare.
        let sent: Vec<MessageId> = completions
            .iter()
            .filter(|(_, c)| matches!(c, Completion::Sent { .. }))
            .map(|(id, _)| *id)
            .collect();
        let mut kept: std::collections::HashSet<MessageId> = if sent.is_empty() {
            Default::default()
        } else {
            self.complete_sent(worker, &sent, now)
                .await?
                .into_iter()
                .collect()
        };
        for (id, completion) in completions {
            if !matches!(completion, Completion::Sent { .. })
                && self.complete(*id, worker, completion.clone(), now).await?
            {
                kept.insert(*id);
            }
        }
        Ok(completions
            .iter()
            .map(|(id, _)| kept.contains(id))
            .collect())
    }

    /// Marks `worker`'s messages `ids` sent; returns those whose lease it
    /// still held. A store overrides it to do this in one write.
    async fn complete_sent(
        &self,
        worker: &str,
        ids: &[MessageId],
        now: SystemTime,
    ) -> Result<Vec<MessageId>> {
        let mut kept = Vec::with_capacity(ids.len());
        for id in ids {
            let sent = Completion::Sent {
                reply: String::new(),
            };
            if self.complete(*id, worker, sent, now).await? {
                kept.push(*id);
            }
        }
        Ok(kept)
    }

    /// Gives back messages `worker` claimed but did not start (it is
    /// stopping): `queued` again, due as before, the claim's attempt not
    /// counted. How many.
    async fn release(&self, ids: &[MessageId], worker: &str) -> Result<u64>;

    /// Messages, oldest first; `sent` ones only with `include_sent`.
    async fn list(&self, include_sent: bool) -> Result<Vec<QueuedMessage>>;

    /// Ids of the `queued` messages, oldest first. The default picks them
    /// from [`OutboxStore::list`]; a store overrides it to ask for the ids
    /// alone.
    async fn queued_ids(&self) -> Result<Vec<MessageId>> {
        let listed = self.list(false).await?;
        Ok(listed
            .into_iter()
            .filter(|m| m.status == Status::Queued)
            .map(|m| m.id)
            .collect())
    }

    /// Makes `id` (`queued` or `dead`) due now as `queued`, with its
    /// attempts and its maximum age counted afresh; its dead recipients are
    /// due again, the sent ones stay sent. False if there is no such message
    /// in those states.
    async fn retry(&self, id: MessageId, now: SystemTime) -> Result<bool>;

    /// [`OutboxStore::retry`] for every `dead` message; how many. The
    /// default retries them one by one; a store overrides it to do so in
    /// one write.
    async fn retry_dead(&self, now: SystemTime) -> Result<u64> {
        let mut retried = 0;
        for m in self.list(false).await? {
            if m.status == Status::Dead && self.retry(m.id, now).await? {
                retried += 1;
            }
        }
        Ok(retried)
    }

    /// Deletes `id` whatever its status, unless it is being sent; false if
    /// there is no such message (or it is being sent).
    async fn delete(&self, id: MessageId) -> Result<bool>;

    /// Counts per status. The default counts what [`OutboxStore::list`]
    /// returns ([`Stats::of`]); a store overrides it to count with a query.
    async fn stats(&self) -> Result<Stats> {
        Ok(Stats::of(&self.list(true).await?))
    }

    /// Deletes `sent` messages sent before `before`; how many.
    async fn purge_sent(&self, before: SystemTime) -> Result<u64>;

    /// The earliest next attempt of a `queued` message and the earliest
    /// lease end of a `sending` one, for a worker to sleep until.
    async fn next_due(&self) -> Result<Option<SystemTime>>;

    /// Announces `worker` as alive for as long as the returned [`Presence`]
    /// is held, before it claims anything; the others take it for dead
    /// once it is unheard for `timeout` (a heartbeat store), or at once
    /// when its lock is free (a lock store). `None`: this store cannot
    /// tell, and the worker's messages wait for their lease if it dies.
    async fn announce_worker(&self, worker: &str, timeout: Duration) -> Result<Option<Presence>> {
        let _ = (worker, timeout);
        Ok(None)
    }

    /// Ends now the leases of the workers other than `worker` that are no
    /// longer alive, so that their `sending` messages are claimed at once,
    /// and forgets those workers; how many messages. Never touches a
    /// worker the store cannot prove dead.
    async fn reclaim_dead(&self, worker: &str, now: SystemTime) -> Result<u64> {
        let _ = (worker, now);
        Ok(0)
    }

    /// How many workers are alive on this outbox now (0 when the store
    /// cannot tell): whether anything will deliver what is queued.
    async fn live_workers(&self) -> Result<u64> {
        Ok(0)
    }

    /// Starts listening for work that other processes store (an enqueue,
    /// a retry by hand), so that an idle worker wakes at once instead of
    /// at its next look. `None` (the default): the store cannot tell; a
    /// worker is woken by its own [`Mailer`](crate::Mailer)'s enqueues and
    /// looks again every 2 s for the others'.
    async fn watch(&self) -> Result<Option<Box<dyn WorkWatch>>> {
        Ok(None)
    }
}

/// Work stored by other processes, as a store announces it
/// ([`OutboxStore::watch`]).
#[async_trait]
pub trait WorkWatch: Send {
    /// Returns once new work may have been stored. A return with nothing
    /// new is allowed (after a lost connection, say: what was announced
    /// meanwhile is unheard, so the worker looks). An error: the watch is
    /// lost; the worker drops it and asks the store for a new one.
    async fn changed(&mut self) -> Result<()>;
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
mod tests {
    use super::*;

    fn settings() -> OutboxSettings {
        OutboxSettings {
            url: None,
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(1800),
            max_age: Duration::from_secs(72 * 3600),
            keep_sent: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(300),
            worker_timeout: Duration::from_secs(30),
            delay_warning: Some(Duration::from_secs(4 * 3600)),
            keep_sent_bodies: false,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let s = settings();
        assert_eq!(backoff(&s, 1, 1.0), Duration::from_secs(30));
        assert_eq!(backoff(&s, 2, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(&s, 3, 1.0), Duration::from_secs(120));
        assert_eq!(backoff(&s, 7, 1.0), Duration::from_secs(1800));
        assert_eq!(backoff(&s, 1000, 1.0), Duration::from_secs(1800));
        assert_eq!(backoff(&s, 1, 0.0), Duration::from_secs(15));
        assert_eq!(backoff(&s, 0, 0.5), Duration::from_secs_f64(22.5));
    }

    #[test]
    fn postgres_urls_are_shown_without_password_or_query() {
        assert_eq!(
            shown_url(
                "postgres://mg:s3cret@db.example.com:5432/mailgate?sslmode=require&password=x"
            ),
            "postgres://mg@db.example.com:5432/mailgate"
        );
        assert_eq!(
            shown_url("postgresql://db/mailgate"),
            "postgresql://db/mailgate"
        );
        assert_eq!(shown_url("postgres://:pw@db/x"), "postgres://db/x");
        assert_eq!(shown_url("sqlite:outbox.db"), "sqlite:outbox.db");
        // A pasted password with unencoded delimiters.
        for url in [
            "postgres://mg:ab#cd@db/mail",
            "postgres://mg:ab?cd@db/mail",
            "postgres://mg:ab/cd@db/mail",
        ] {
            assert_eq!(shown_url(url), "postgres://mg@db/mail", "{url}");
        }
        assert_eq!(
            format!(
                "{:?}",
                OutboxUrl::new("postgres://a:b@h/d", crate::Origin::Builder)
            ),
            "OutboxUrl { url: \"postgres://a@h/d\", origin: Builder }"
        );
    }

    fn listed(status: Status, to: &[&str], finished: Vec<RecipientRecord>) -> QueuedMessage {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + to.len() as u64);
        QueuedMessage {
            id: 1,
            status,
            attempts: 1,
            last_error: Some("451 earlier".into()),
            next_attempt: Some(t),
            created: t,
            age_from: t,
            sent_at: None,
            from: "a@example.com".into(),
            to: to.iter().map(|a| (*a).to_owned()).collect(),
            subject: String::new(),
            message_id: None,
            size: 10,
            finished,
            dsn: None,
            delay_warned: vec!["c@example.com".into()],
            body_dropped: false,
        }
    }

    fn record(address: &str, status: Status) -> RecipientRecord {
        RecipientRecord {
            address: address.into(),
            status,
            reply: Some("reply".into()),
            attempts: 1,
        }
    }

    #[test]
    fn a_completion_sets_what_the_stores_record() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(5000);
        let later = now + Duration::from_secs(60);
        let to = ["b@example.com", "c@example.com"];
        let mut m = listed(Status::Sending, &to, Vec::new());
        Completion::Sent {
            reply: "250".into(),
        }
        .apply(&mut m, now);
        assert_eq!(
            (m.status, m.sent_at, m.next_attempt),
            (Status::Sent, Some(now), None)
        );
        assert_eq!(m.last_error.as_deref(), Some("451 earlier"), "kept");
        assert_eq!(m.delay_warned, ["c@example.com"], "kept");

        let mut m = listed(Status::Sending, &to, Vec::new());
        let retry = Completion::Retry {
            error: "421 busy".into(),
            next_attempt: later,
        };
        retry.apply(&mut m, now);
        assert_eq!(
            (m.status, m.sent_at, m.next_attempt),
            (Status::Queued, None, Some(later))
        );
        assert_eq!(m.last_error.as_deref(), Some("421 busy"));

        let mut m = listed(Status::Sending, &to, Vec::new());
        Completion::Dead {
            error: "550 no".into(),
        }
        .apply(&mut m, now);
        assert_eq!((m.status, m.next_attempt), (Status::Dead, None));

        let mut m = listed(Status::Sending, &to, Vec::new());
        let finished = vec![record("b@example.com", Status::Sent)];
        let some_due = Completion::Recipients {
            finished: finished.clone(),
            next_attempt: Some(later),
            error: "452 full".into(),
            delay_warned: vec!["b@example.com".into(), "c@example.com".into()],
        };
        some_due.apply(&mut m, now);
        assert_eq!((m.status, m.next_attempt), (Status::Queued, Some(later)));
        assert_eq!(m.finished, finished);
        assert_eq!(m.delay_warned, ["c@example.com"], "only the due ones");
        let all_done = Completion::Recipients {
            finished: vec![
                record("b@example.com", Status::Sent),
                record("c@example.com", Status::Dead),
            ],
            next_attempt: None,
            error: "550 no".into(),
            delay_warned: Vec::new(),
        };
        all_done.apply(&mut m, now);
        assert_eq!(
            (m.status, m.sent_at, m.next_attempt),
            (Status::Dead, None, None)
        );
        assert!(m.delay_warned.is_empty());
    }

    #[test]
    fn stats_count_messages_and_recipients() {
        let two = ["a@example.com", "b@example.com"];
        let messages = [
            listed(
                Status::Queued,
                &two,
                vec![record("a@example.com", Status::Sent)],
            ),
            listed(Status::Sending, &["c@example.com"], Vec::new()),
            listed(Status::Sent, &two, Vec::new()),
            listed(
                Status::Dead,
                &two,
                vec![record("a@example.com", Status::Dead)],
            ),
        ];
        let stats = Stats::of(&messages);
        assert_eq!(
            (stats.queued, stats.sending, stats.sent, stats.dead),
            (1, 1, 1, 1)
        );
        assert_eq!(
            stats.oldest_waiting,
            Some(messages[1].created),
            "the older waiting one"
        );
        let r = &stats.recipients;
        assert_eq!((r.queued, r.sent, r.dead), (2, 3, 2));
        assert_eq!(Stats::of(&[]), Stats::default());
    }

    #[test]
    fn a_new_message_is_stored_queued_and_due_at_once() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(7);
        let new = NewMessage {
            from: "a@example.com".into(),
            to: vec!["b@example.com".into()],
            subject: "s".into(),
            message_id: Some("<m@example.com>".into()),
            bytes: b"Subject: s\r\n\r\nbody".to_vec(),
            dsn: Some(DsnRequest::default()),
        };
        let (m, bytes) = new.clone().into_queued(42, now);
        assert_eq!(bytes, new.bytes);
        assert_eq!(
            (m.id, m.status, m.attempts, m.size),
            (42, Status::Queued, 0, 18)
        );
        assert_eq!(
            (m.next_attempt, m.created, m.age_from),
            (Some(now), now, now)
        );
        assert_eq!((m.from, m.to, m.dsn), (new.from, new.to, new.dsn));
        assert!(m.finished.is_empty() && !m.body_dropped && m.sent_at.is_none());
    }

    #[test]
    fn the_header_section_ends_at_the_first_blank_line() {
        assert_eq!(header_section_len(b"A: 1\r\n\r\nbody\r\n\r\nmore"), Some(8));
        assert_eq!(header_section_len(b"A: 1\r\n\r\n"), None, "no body");
        assert_eq!(
            header_section_len(b"A: 1\r\nB: 2\r\n"),
            None,
            "no blank line"
        );
        assert_eq!(header_section_len(b"A: 1\n\nbody"), None, "CRLF only");
    }

    #[test]
    fn a_retry_makes_queued_and_dead_messages_due_with_their_dead_recipients() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(9000);
        let finished = vec![
            record("a@example.com", Status::Sent),
            record("b@example.com", Status::Dead),
        ];
        let mut m = listed(Status::Dead, &["a@example.com", "b@example.com"], finished);
        m.attempts = 5;
        assert!(m.retry(now));
        assert_eq!(
            (m.status, m.next_attempt, m.age_from, m.attempts),
            (Status::Queued, Some(now), now, 0)
        );
        assert_eq!(m.finished, [record("a@example.com", Status::Sent)]);
        assert_eq!(
            m.delay_warned,
            ["c@example.com"],
            "a reported delay stays reported"
        );
        for status in [Status::Sending, Status::Sent] {
            let mut m = listed(status, &["a@example.com"], Vec::new());
            let before = m.clone();
            assert!(!m.retry(now));
            assert_eq!(m, before);
        }
    }

    #[test]
    fn statuses_round_trip() {
        for st in Status::ALL {
            assert_eq!(Status::parse(st.as_str()), Some(st));
        }
        assert_eq!(Status::parse("nope"), None);
    }
}
