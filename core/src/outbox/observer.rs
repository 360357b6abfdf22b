//! What becomes of each recipient: the seam that DSNs, metrics and logs
//! hang on.

use std::time::SystemTime;

use async_trait::async_trait;

use super::outcome::DeliveryOutcome;
use super::{QueuedMessage, Status};

/// What one delivery attempt did for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientEvent {
    /// The server took the message for `recipient`.
    Delivered {
        /// The address, as in the envelope.
        recipient: String,
        /// The server's reply.
        reply: String,
    },
    /// Not this time; tried again at `next_attempt`.
    Deferred {
        /// The address.
        recipient: String,
        /// Why.
        error: String,
        /// When it is tried again.
        next_attempt: SystemTime,
    },
    /// Not this time either, and it has waited longer than
    /// `mailgate.outbox.delayWarningHours` since the message was stored
    /// (or last retried by hand):
    /// its sender may be told (once per recipient; later attempts are
    /// [`RecipientEvent::Deferred`] again).
    Delayed {
        /// The address.
        recipient: String,
        /// Why (the server's reply for it, or why the attempt failed).
        error: String,
        /// When it is tried again.
        next_attempt: SystemTime,
        /// When mailgate gives up on it (`mailgate.outbox.maxAgeHours`).
        will_retry_until: SystemTime,
    },
    /// It will never get the message.
    Dead {
        /// The address.
        recipient: String,
        /// Why (the server's reply, or the reason mailgate gave up).
        error: String,
    },
}

impl RecipientEvent {
    /// The recipient's address.
    pub fn recipient(&self) -> &str {
        match self {
            RecipientEvent::Delivered { recipient, .. }
            | RecipientEvent::Deferred { recipient, .. }
            | RecipientEvent::Delayed { recipient, .. }
            | RecipientEvent::Dead { recipient, .. } => recipient,
        }
    }

    /// One event per distinct recipient of `due` (the recipients the
    /// attempt was for), from its outcome.
    pub(crate) fn of(
        message: &QueuedMessage,
        due: &[String],
        outcome: &DeliveryOutcome,
    ) -> Vec<RecipientEvent> {
        let mut seen = std::collections::HashSet::new();
        due.iter()
            .filter(|r| seen.insert(r.as_str()))
            .map(|recipient| {
                let recipient = recipient.clone();
                match outcome {
                    DeliveryOutcome::Sent(reply) => RecipientEvent::Delivered {
                        recipient,
                        reply: reply.clone(),
                    },
                    DeliveryOutcome::Retry {
                        error,
                        next_attempt,
                    } => RecipientEvent::Deferred {
                        recipient,
                        error: error.clone(),
                        next_attempt: *next_attempt,
                    },
                    DeliveryOutcome::Dead { error, .. } => RecipientEvent::Dead {
                        recipient,
                        error: error.clone(),
                    },
                    DeliveryOutcome::Recipients {
                        finished,
                        next_attempt,
                        error,
                        ..
                    } => {
                        // Records that were there before this attempt are
                        // not in `due`, so a record here is this attempt's.
                        match finished.iter().find(|r| r.address == recipient) {
                            Some(r) if r.status == Status::Sent => RecipientEvent::Delivered {
                                recipient,
                                reply: r.reply.clone().unwrap_or_default(),
                            },
                            Some(r) => RecipientEvent::Dead {
                                recipient,
                                error: r.reply.clone().unwrap_or_default(),
                            },
                            None => RecipientEvent::Deferred {
                                recipient,
                                error: error.clone(),
                                next_attempt: next_attempt.unwrap_or(message.created),
                            },
                        }
                    }
                }
            })
            .collect()
    }
}

/// Hears what becomes of each recipient of each outbox delivery attempt
/// ([`Worker::observe`](super::Worker::observe)). Each method has a default
/// that does nothing; [`on_attempt`](Self::on_attempt) calls the three
/// per-recipient methods, and an observer that wants one attempt whole (a
/// DSN lists every dead recipient of a message) overrides it.
#[async_trait]
pub trait DeliveryObserver: Send + Sync {
    /// The server took `message` for `recipient`.
    async fn on_delivered(&self, _message: &QueuedMessage, _recipient: &str, _reply: &str) {}

    /// `recipient` waits for the next attempt.
    async fn on_deferred(
        &self,
        _message: &QueuedMessage,
        _recipient: &str,
        _error: &str,
        _next_attempt: SystemTime,
    ) {
    }

    /// `recipient` is still deferred long after `message` was stored (see
    /// [`RecipientEvent::Delayed`]); by default a deferral like any other.
    async fn on_delayed(
        &self,
        message: &QueuedMessage,
        recipient: &str,
        error: &str,
        next_attempt: SystemTime,
        _will_retry_until: SystemTime,
    ) {
        self.on_deferred(message, recipient, error, next_attempt)
            .await;
    }

    /// `recipient` will never get `message`.
    async fn on_dead(&self, _message: &QueuedMessage, _recipient: &str, _error: &str) {}

    /// One attempt of `message` (whose stored bytes are `original`), every
    /// recipient it was for.
    async fn on_attempt(
        &self,
        message: &QueuedMessage,
        _original: &[u8],
        events: &[RecipientEvent],
    ) {
        for event in events {
            match event {
                RecipientEvent::Delivered { recipient, reply } => {
                    self.on_delivered(message, recipient, reply).await;
                }
                RecipientEvent::Deferred {
                    recipient,
                    error,
                    next_attempt,
                } => {
                    self.on_deferred(message, recipient, error, *next_attempt)
                        .await;
                }
                RecipientEvent::Delayed {
                    recipient,
                    error,
                    next_attempt,
                    will_retry_until,
                } => {
                    self.on_delayed(message, recipient, error, *next_attempt, *will_retry_until)
                        .await;
                }
                RecipientEvent::Dead { recipient, error } => {
                    self.on_dead(message, recipient, error).await;
                }
            }
        }
    }
}

/// The log line of each recipient of each attempt (`tracing`, target
/// `mailgate::outbox`): delivered and deferred at info, delayed and dead at
/// warn, with the message's id. Every worker has one.
#[derive(Debug, Default)]
pub struct OutcomeLog;

#[async_trait]
impl DeliveryObserver for OutcomeLog {
    async fn on_delivered(&self, message: &QueuedMessage, recipient: &str, reply: &str) {
        tracing::info!(
            id = message.id,
            from = %message.from,
            size = message.size,
            attempts = message.attempts,
            "outbox: delivered to {recipient}: {reply}"
        );
    }

    async fn on_deferred(
        &self,
        message: &QueuedMessage,
        recipient: &str,
        error: &str,
        next_attempt: SystemTime,
    ) {
        tracing::info!(
            id = message.id,
            attempts = message.attempts,
            "outbox: deferred for {recipient} until {}: {error}",
            crate::message::raw::rfc5322_date(next_attempt)
        );
    }

    async fn on_delayed(
        &self,
        message: &QueuedMessage,
        recipient: &str,
        error: &str,
        next_attempt: SystemTime,
        will_retry_until: SystemTime,
    ) {
        tracing::warn!(
            id = message.id,
            attempts = message.attempts,
            "outbox: delayed for {recipient} (tried until {}), next attempt {}: {error}",
            crate::message::raw::rfc5322_date(will_retry_until),
            crate::message::raw::rfc5322_date(next_attempt)
        );
    }

    async fn on_dead(&self, message: &QueuedMessage, recipient: &str, error: &str) {
        tracing::warn!(
            id = message.id,
            attempts = message.attempts,
            "outbox: dead for {recipient}: {error}"
        );
    }
}

/// Recipients by what became of them, as counted by [`OutcomeCounts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecipientCounts {
    /// Recipients the server took the message for.
    pub delivered: u64,
    /// Recipient attempts deferred (delayed ones included).
    pub deferred: u64,
    /// Recipients that will never get the message.
    pub dead: u64,
}

impl std::ops::AddAssign<&RecipientCounts> for RecipientCounts {
    fn add_assign(&mut self, other: &RecipientCounts) {
        self.delivered += other.delivered;
        self.deferred += other.deferred;
        self.dead += other.dead;
    }
}

/// Counts recipients by outcome, for metrics (`mailgate relay`'s
/// `/metrics`). Every worker has one ([`Worker::stats`](super::Worker::stats)).
#[derive(Debug, Default)]
pub struct OutcomeCounts {
    delivered: std::sync::atomic::AtomicU64,
    deferred: std::sync::atomic::AtomicU64,
    dead: std::sync::atomic::AtomicU64,
}

impl OutcomeCounts {
    /// The counts so far.
    pub fn snapshot(&self) -> RecipientCounts {
        use std::sync::atomic::Ordering::Relaxed;
        RecipientCounts {
            delivered: self.delivered.load(Relaxed),
            deferred: self.deferred.load(Relaxed),
            dead: self.dead.load(Relaxed),
        }
    }
}

#[async_trait]
impl DeliveryObserver for OutcomeCounts {
    async fn on_delivered(&self, _message: &QueuedMessage, _recipient: &str, _reply: &str) {
        self.delivered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn on_deferred(
        &self,
        _message: &QueuedMessage,
        _recipient: &str,
        _error: &str,
        _next_attempt: SystemTime,
    ) {
        self.deferred
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn on_dead(&self, _message: &QueuedMessage, _recipient: &str, _error: &str) {
        self.dead.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}
