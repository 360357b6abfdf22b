//! Delay notices: which recipients of an attempt are reported as delayed
//! (`mailgate.outbox.delayWarningHours`), and how the observers hear it.

use std::time::{Duration, SystemTime};

use super::observer::RecipientEvent;
use super::outcome::DeliveryOutcome;
use super::{QueuedMessage, RecipientRecord};

/// What the observers hear of the recipients deferred by one attempt
/// beyond the outcome itself.
pub(crate) struct Deferrals<'a> {
    /// Each recipient refused for now at RCPT, with its own reply.
    pub(crate) own_replies: &'a [(String, String)],
    /// The recipients whose delay is reported now.
    pub(crate) delayed: &'a [String],
    /// When the message is given up (`mailgate.outbox.maxAgeHours`).
    pub(crate) will_retry_until: SystemTime,
}

impl Deferrals<'_> {
    /// `event` with the recipient's own reply, and as
    /// [`RecipientEvent::Delayed`] when its delay is reported now.
    pub(crate) fn refine(&self, event: RecipientEvent) -> RecipientEvent {
        let RecipientEvent::Deferred {
            recipient,
            error,
            next_attempt,
        } = event
        else {
            return event;
        };
        let error = self
            .own_replies
            .iter()
            .find(|(a, _)| *a == recipient)
            .map_or(error, |(_, reply)| reply.clone());
        if self.delayed.contains(&recipient) {
            RecipientEvent::Delayed {
                recipient,
                error,
                next_attempt,
                will_retry_until: self.will_retry_until,
            }
        } else {
            RecipientEvent::Deferred {
                recipient,
                error,
                next_attempt,
            }
        }
    }
}

/// The distinct recipients of `due` that `outcome` leaves due (none once
/// the message is sent or dead).
pub(crate) fn still_due(due: &[String], outcome: &DeliveryOutcome) -> Vec<String> {
    let finished: &[RecipientRecord] = match outcome {
        DeliveryOutcome::Retry { .. } => &[],
        DeliveryOutcome::Recipients {
            finished,
            next_attempt: Some(_),
            ..
        } => finished,
        _ => return Vec::new(),
    };
    let mut out: Vec<String> = Vec::new();
    for address in due {
        if !finished.iter().any(|r| &r.address == address) && !out.contains(address) {
            out.push(address.clone());
        }
    }
    out
}

/// The recipients of `still_due` whose delay is to be reported now:
/// `message` was stored (or last retried by hand, where its
/// `mailgate.outbox.maxAgeHours` counts from too) at least `delay_warning`
/// before `now` (`mailgate.outbox.delayWarningHours`; `None`: never), and
/// their delay was not reported before. Whether a notice goes out is the
/// [`DsnWriter`]'s decision (the sender's `NOTIFY`); the delay counts as
/// reported either way, as Postfix's `delay_warning_time` fires once.
pub(crate) fn delay_warnings(
    delay_warning: Option<Duration>,
    message: &QueuedMessage,
    still_due: &[String],
    now: SystemTime,
) -> Vec<String> {
    let Some(after) = delay_warning else {
        return Vec::new();
    };
    // From `age_from`, not `created`: a dead message retried by hand gets
    // its full time again before its sender hears of a delay.
    let waited = now.duration_since(message.age_from).unwrap_or_default();
    if waited < after {
        return Vec::new();
    }
    still_due
        .iter()
        .filter(|a| !message.delay_warned.contains(a))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Completion, Status};

    fn message(created: SystemTime) -> QueuedMessage {
        QueuedMessage {
            id: 1,
            status: Status::Sending,
            attempts: 3,
            last_error: None,
            next_attempt: None,
            created,
            age_from: created,
            sent_at: None,
            from: "app@example.org".into(),
            to: vec!["a@example.com".into(), "b@example.com".into()],
            subject: String::new(),
            message_id: None,
            size: 10,
            finished: Vec::new(),
            dsn: None,
            delay_warned: Vec::new(),
            body_dropped: false,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_delay_is_reported_once_after_the_warning_time_for_the_recipients_still_due() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut m = message(t0);
        let due = vec!["a@example.com".to_owned(), "b@example.com".to_owned()];
        // Younger than the warning time: nothing yet.
        assert!(delay_warnings(Some(4 * HOUR), &m, &due, t0 + 3 * HOUR).is_empty());
        // Past it: every recipient still due.
        assert_eq!(delay_warnings(Some(4 * HOUR), &m, &due, t0 + 4 * HOUR), due);
        // Never twice: the recorded ones are left out.
        m.delay_warned = vec!["a@example.com".into()];
        assert_eq!(
            delay_warnings(Some(4 * HOUR), &m, &due, t0 + 5 * HOUR),
            ["b@example.com"]
        );
        // Turned off, or a clock before the message.
        assert!(delay_warnings(None, &m, &due, t0 + 100 * HOUR).is_empty());
        assert!(delay_warnings(Some(4 * HOUR), &m, &due, t0 - HOUR).is_empty());
        // Retried by hand an hour ago: counted from then.
        let mut retried = message(t0);
        retried.age_from = t0 + 9 * HOUR;
        assert!(delay_warnings(Some(4 * HOUR), &retried, &due, t0 + 10 * HOUR).is_empty());
        assert_eq!(
            delay_warnings(Some(4 * HOUR), &retried, &due, t0 + 13 * HOUR),
            due
        );
        // Fractions of an hour count.
        let m = message(t0);
        assert_eq!(
            delay_warnings(
                Some(Duration::from_secs_f64(0.0003 * 3600.0)),
                &m,
                &due,
                t0 + Duration::from_secs(2)
            ),
            due
        );
    }

    #[test]
    fn only_deferred_recipients_are_still_due() {
        let due = vec![
            "a@example.com".to_owned(),
            "b@example.com".to_owned(),
            "a@example.com".to_owned(),
        ];
        let retry = DeliveryOutcome::Retry {
            error: "421 busy".into(),
            next_attempt: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(still_due(&due, &retry), ["a@example.com", "b@example.com"]);
        let record = RecipientRecord {
            address: "a@example.com".into(),
            status: Status::Sent,
            reply: Some("250 ok".into()),
            attempts: 1,
        };
        let some = DeliveryOutcome::Recipients {
            finished: vec![record.clone()],
            next_attempt: Some(SystemTime::UNIX_EPOCH),
            error: "451 later".into(),
            exit_code: 75,
        };
        assert_eq!(still_due(&due, &some), ["b@example.com"]);
        let done = DeliveryOutcome::Recipients {
            finished: vec![record],
            next_attempt: None,
            error: String::new(),
            exit_code: 0,
        };
        assert!(still_due(&due, &done).is_empty());
        assert!(still_due(&due, &DeliveryOutcome::Sent("250".into())).is_empty());
    }

    #[test]
    fn a_reported_delay_is_recorded_with_the_deferral_and_dropped_when_done() {
        let mut m = message(SystemTime::UNIX_EPOCH);
        m.delay_warned = vec!["b@example.com".into()];
        let next = SystemTime::UNIX_EPOCH + HOUR;
        let retry = DeliveryOutcome::Retry {
            error: "connection refused".into(),
            next_attempt: next,
        };
        match retry.completion_of(&m) {
            Completion::Recipients {
                finished,
                next_attempt,
                delay_warned,
                ..
            } => {
                assert!(finished.is_empty());
                assert_eq!(next_attempt, Some(next));
                assert_eq!(delay_warned, ["b@example.com"]);
            }
            other => panic!("{other:?}"),
        }
        // Without reported delays a deferral stays a plain retry.
        m.delay_warned.clear();
        assert!(matches!(retry.completion_of(&m), Completion::Retry { .. }));
        // Once no recipient is due, nothing is kept of delays.
        m.delay_warned = vec!["b@example.com".into()];
        let done = DeliveryOutcome::Recipients {
            finished: Vec::new(),
            next_attempt: None,
            error: String::new(),
            exit_code: 0,
        };
        match done.completion_of(&m) {
            Completion::Recipients { delay_warned, .. } => assert!(delay_warned.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
