//! [`DeliveryOutcome`]: what one delivery attempt did, and what the store records of it.

use std::time::SystemTime;

use super::{Completion, QueuedMessage, RecipientRecord, Status};

/// What became of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Sent; the server's final reply.
    Sent(String),
    /// Left queued for `next_attempt`; why it failed.
    Retry {
        /// The failure.
        error: String,
        /// When it will be tried again.
        next_attempt: SystemTime,
    },
    /// Dead: the failure (permanent, or the message is too old).
    Dead {
        /// The failure.
        error: String,
        /// The exit code of the failure (sysexits).
        exit_code: u8,
    },
    /// The recipients ended differently: some were refused (and are dead,
    /// or wait for `next_attempt`), the others got it.
    Recipients {
        /// Every recipient of the message that is done, with its reply.
        finished: Vec<RecipientRecord>,
        /// When the recipients still due are tried again; `None` if none is.
        next_attempt: Option<SystemTime>,
        /// The refusals.
        error: String,
        /// The exit code of the refusals (sysexits).
        exit_code: u8,
    },
}

impl DeliveryOutcome {
    /// The message's status after this outcome.
    pub fn status(&self) -> Status {
        self.completion().status()
    }

    /// The completion that records this outcome of `message`, whose
    /// [`QueuedMessage::delay_warned`] is what this attempt leaves.
    pub(crate) fn completion_of(&self, message: &QueuedMessage) -> Completion {
        match self {
            // A deferral that keeps reported delays rewrites the
            // recipient state, so that no later attempt reports them again.
            DeliveryOutcome::Retry {
                error,
                next_attempt,
            } if !message.delay_warned.is_empty() => Completion::Recipients {
                finished: message.finished.clone(),
                next_attempt: Some(*next_attempt),
                error: error.clone(),
                delay_warned: message.delay_warned.clone(),
            },
            DeliveryOutcome::Recipients {
                finished,
                next_attempt,
                error,
                ..
            } => Completion::Recipients {
                finished: finished.clone(),
                next_attempt: *next_attempt,
                error: error.clone(),
                delay_warned: match next_attempt {
                    Some(_) => message
                        .delay_warned
                        .iter()
                        .filter(|a| !finished.iter().any(|r| &&r.address == a))
                        .cloned()
                        .collect(),
                    None => Vec::new(),
                },
            },
            other => other.completion(),
        }
    }

    fn completion(&self) -> Completion {
        match self {
            DeliveryOutcome::Sent(reply) => Completion::Sent {
                reply: reply.clone(),
            },
            DeliveryOutcome::Retry {
                error,
                next_attempt,
            } => Completion::Retry {
                error: error.clone(),
                next_attempt: *next_attempt,
            },
            DeliveryOutcome::Dead { error, .. } => Completion::Dead {
                error: error.clone(),
            },
            DeliveryOutcome::Recipients {
                finished,
                next_attempt,
                error,
                ..
            } => Completion::Recipients {
                finished: finished.clone(),
                next_attempt: *next_attempt,
                error: error.clone(),
                delay_warned: Vec::new(),
            },
        }
    }
}
