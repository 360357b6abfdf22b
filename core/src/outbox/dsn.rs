//! Delivery status notifications (RFC 3464): when a recipient of a message
//! mailgate accepted becomes dead, or is still deferred after
//! `mailgate.outbox.delayWarningHours`, its envelope sender is told, by a
//! `multipart/report` from the null sender that goes out through the same
//! outbox, upstream and strategy.
//!
//! Written here rather than with lettre's builder: a DSN's second part is
//! `message/delivery-status` and its third `text/rfc822-headers`, which are
//! fields and raw header bytes, not MIME text lettre would re-encode.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::observer::{DeliveryObserver, RecipientEvent};
use super::{NewMessage, OutboxStore, QueuedMessage};
use crate::message::raw::{self, HeaderSection};
use crate::settings::{Settings, keys};

/// The original header section attached to a DSN is cut at this size.
const MAX_ATTACHED_HEADERS: usize = 64 * 1024;
/// A diagnostic longer than this is cut (a DSN field must stay well under 998).
const MAX_DIAGNOSTIC: usize = 400;

/// Writes a DSN to the envelope sender for the dead recipients of each
/// attempt ([`Worker::observe`](super::Worker::observe); `Worker::new` adds
/// it unless `mailgate.outbox.bounces=false`), and a delay notice
/// (`Action: delayed`) for the recipients whose delay the worker reports
/// ([`RecipientEvent::Delayed`]: still deferred after
/// `mailgate.outbox.delayWarningHours`, once per recipient) where their
/// `NOTIFY` has `DELAY` or is absent (RFC 3461 §4.1 leaves that case to
/// the MTA; mailgate does as Postfix with `delay_warning_time` set).
/// A delay notice carries the original's header section whatever `RET`
/// says (RET applies to failure reports, RFC 3461 §4.3).
///
/// No DSN answers a message from the null sender (a DSN itself): when one
/// of those dies, `mailgate.outbox.postmaster` gets a notice if it is set,
/// else only the log says so. Messages whose envelope sender is the
/// configured sender (`mksis.logging.email.from`, mailgate's own
/// notifications) get none either: their caller learns of the failure from
/// `send` and `queue`, and a DSN would only go back to the same mailbox.
pub struct DsnWriter {
    store: Arc<dyn OutboxStore>,
    reporting_mta: String,
    own_sender: Option<String>,
    postmaster: Option<String>,
    wake: Option<Arc<tokio::sync::Notify>>,
}

impl std::fmt::Debug for DsnWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsnWriter")
            .field("reporting_mta", &self.reporting_mta)
            .field("postmaster", &self.postmaster)
            .finish_non_exhaustive()
    }
}

impl DsnWriter {
    /// A writer that stores its DSNs in `store`, with the settings' names;
    /// `None` when `mailgate.outbox.bounces=false`.
    pub fn from_settings(
        settings: &Settings,
        store: Arc<dyn OutboxStore>,
    ) -> crate::Result<Option<Self>> {
        if !settings.flag_or(keys::OUTBOX_BOUNCES, true)? {
            return Ok(None);
        }
        let postmaster = settings
            .optional_mailbox(keys::OUTBOX_POSTMASTER)?
            .map(|m| m.email.to_string());
        Ok(Some(Self {
            store,
            reporting_mta: settings
                .server()
                .helo_name
                .clone()
                .unwrap_or_else(crate::smtp::connection::default_hello),
            own_sender: settings.sender().map(|m| m.email.to_string()),
            postmaster,
            wake: None,
        }))
    }

    /// Wakes `wake` after a DSN is stored, so that a worker sends it now.
    pub fn waking(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    async fn store(&self, message: NewMessage) {
        let to = message.to.join(", ");
        match self.store.enqueue(message).await {
            Ok(id) => {
                tracing::info!(id, "outbox: delivery status notification to {to} queued");
                if let Some(wake) = &self.wake {
                    wake.notify_one();
                }
            }
            Err(e) => tracing::error!(
                "outbox: the delivery status notification to {to} could not be stored: {e}"
            ),
        }
    }
}

/// Which kind of event a DSN reports.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `Action: failed`.
    Failed,
    /// `Action: relayed` (`NOTIFY=SUCCESS`; the upstream is told nothing of
    /// DSNs, so "relayed", not "delivered", RFC 3464 §2.3.3).
    Relayed,
    /// `Action: delayed` (`NOTIFY=DELAY`, or no `NOTIFY`).
    Delayed,
}

impl DsnWriter {
    /// Whether the sender of `message` wants to hear `outcome` for
    /// `recipient`: as its `NOTIFY` says; without one, failures and delays
    /// only, and not for mailgate's own notifications.
    fn wants(&self, message: &QueuedMessage, recipient: &str, outcome: Outcome) -> bool {
        wants(self.own_sender.as_deref(), message, recipient, outcome)
    }
}

/// [`DsnWriter::wants`], with `own_sender` the configured sender.
fn wants(
    own_sender: Option<&str>,
    message: &QueuedMessage,
    recipient: &str,
    outcome: Outcome,
) -> bool {
    let asked = message
        .dsn
        .as_ref()
        .and_then(|d| d.recipient(recipient))
        .and_then(|r| r.notify);
    match (asked, outcome) {
        (Some(n), Outcome::Failed) => n.failure,
        (Some(n), Outcome::Relayed) => n.success,
        (Some(n), Outcome::Delayed) => n.delay,
        (None, Outcome::Relayed) => false,
        (None, Outcome::Failed | Outcome::Delayed) => {
            !own_sender.is_some_and(|own| own.eq_ignore_ascii_case(&message.from))
        }
    }
}

#[async_trait]
impl DeliveryObserver for DsnWriter {
    async fn on_attempt(
        &self,
        message: &QueuedMessage,
        original: &[u8],
        events: &[RecipientEvent],
    ) {
        let pick = |outcome: Outcome| -> Vec<(&str, &str)> {
            events
                .iter()
                .filter_map(|e| match (e, outcome) {
                    (RecipientEvent::Dead { recipient, error }, Outcome::Failed)
                    | (
                        RecipientEvent::Delayed {
                            recipient, error, ..
                        },
                        Outcome::Delayed,
                    ) => Some((recipient.as_str(), error.as_str())),
                    (RecipientEvent::Delivered { recipient, reply }, Outcome::Relayed) => {
                        Some((recipient.as_str(), reply.as_str()))
                    }
                    _ => None,
                })
                .collect()
        };
        // All recipients delayed in one attempt share one retry limit.
        let will_retry_until = events.iter().find_map(|e| match e {
            RecipientEvent::Delayed {
                will_retry_until, ..
            } => Some(*will_retry_until),
            _ => None,
        });
        let dead = pick(Outcome::Failed);
        if message.from.is_empty() {
            if dead.is_empty() {
                return;
            }
            // A DSN (or another null-sender message) died: never a DSN for it.
            let already_postmaster = self
                .postmaster
                .as_deref()
                .is_some_and(|p| message.to.iter().any(|t| t.eq_ignore_ascii_case(p)));
            match &self.postmaster {
                Some(postmaster) if !already_postmaster => {
                    let notice = build(&Report {
                        reporting_mta: &self.reporting_mta,
                        to: postmaster,
                        message,
                        original,
                        outcome: Outcome::Failed,
                        entries: &dead,
                        will_retry_until: None,
                    });
                    self.store(notice).await;
                }
                _ => tracing::error!(
                    id = message.id,
                    "outbox: a message from the null sender (a delivery status notification) could not be delivered to {}; set mailgate.outbox.postmaster to be told by mail",
                    dead.iter().map(|(r, _)| *r).collect::<Vec<_>>().join(", ")
                ),
            }
            return;
        }
        for outcome in [Outcome::Failed, Outcome::Delayed, Outcome::Relayed] {
            let entries: Vec<(&str, &str)> = pick(outcome)
                .into_iter()
                .filter(|(recipient, _)| self.wants(message, recipient, outcome))
                .collect();
            if entries.is_empty() {
                continue;
            }
            let dsn = build(&Report {
                reporting_mta: &self.reporting_mta,
                to: &message.from,
                message,
                original,
                outcome,
                entries: &entries,
                will_retry_until,
            });
            self.store(dsn).await;
        }
    }
}

/// What one DSN reports.
struct Report<'a> {
    reporting_mta: &'a str,
    /// Who it goes to.
    to: &'a str,
    message: &'a QueuedMessage,
    original: &'a [u8],
    outcome: Outcome,
    /// The recipients and the reply (why dead or delayed, or the acceptance).
    entries: &'a [(&'a str, &'a str)],
    /// When mailgate gives up on the delayed recipients.
    will_retry_until: Option<SystemTime>,
}

/// With `RET=FULL`, the whole original is returned up to this size; a
/// larger one gets its header section only (RFC 3461 §4.3 allows it).
const MAX_RETURNED: usize = 10 * 1024 * 1024;

/// The DSN as a message for the outbox, from the null sender.
fn build(report: &Report<'_>) -> NewMessage {
    let domain = report
        .to
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| d.is_ascii() && !d.is_empty())
        .unwrap_or("localhost");
    let message_id = raw::message_id(domain);
    let boundary = format!(
        "mailgate-dsn-{}",
        message_id.trim_matches(['<', '>']).replace('@', ".")
    );
    let now = raw::rfc5322_date(SystemTime::now());
    let m = report.message;
    let request = m.dsn.as_ref();
    let subject = match report.outcome {
        Outcome::Failed => "Undelivered Mail Returned to Sender",
        Outcome::Relayed => "Successful Mail Delivery Report",
        Outcome::Delayed => "Delayed Mail (still being retried)",
    };
    let mut out = String::with_capacity(4096);
    let mut line = |s: &str| {
        out.push_str(s);
        out.push_str("\r\n");
    };
    line(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{}>",
        ascii(report.reporting_mta)
    ));
    line(&format!("To: <{}>", ascii(report.to)));
    line(&format!("Subject: {subject}"));
    line(&format!("Date: {now}"));
    line(&format!("Message-ID: {message_id}"));
    line("MIME-Version: 1.0");
    // RFC 3834: no auto-reply to this.
    line("Auto-Submitted: auto-replied");
    line(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\""
    ));
    line("");
    line("This is a MIME-encapsulated message.");
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: text/plain; charset=us-ascii");
    line("Content-Description: Notification");
    line("");
    line(&format!(
        "This is the mail system at {}.",
        ascii(report.reporting_mta)
    ));
    line("");
    line(match report.outcome {
        Outcome::Failed => "Your message could not be delivered to one or more recipients.",
        Outcome::Relayed => {
            "Your message was passed on to the next mail server for these recipients (as you asked); no further notice will follow from there."
        }
        Outcome::Delayed => {
            "Your message could not be delivered yet to one or more recipients; it is still being retried. This is a warning only: you do not need to send the message again."
        }
    });
    if let (Outcome::Delayed, Some(until)) = (report.outcome, report.will_retry_until) {
        line(&format!(
            "It will be retried until {}; you will be told if it cannot be delivered by then.",
            raw::rfc5322_date(until)
        ));
    }
    if let Some(subject) = Some(&m.subject).filter(|s| !s.is_empty()) {
        line(&format!("Its subject: {}", cut(&ascii(subject), 200)));
    }
    line("");
    for (recipient, error) in report.entries {
        line(&format!(
            "<{}>: {}",
            ascii(recipient),
            cut(&ascii(error), MAX_DIAGNOSTIC)
        ));
    }
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: message/delivery-status");
    line("Content-Description: Delivery report");
    line("");
    if let Some(envid) = request.and_then(|r| r.envid.as_deref()) {
        line(&format!("Original-Envelope-Id: {}", ascii(envid)));
    }
    line(&format!(
        "Reporting-MTA: dns; {}",
        ascii(report.reporting_mta)
    ));
    line(&format!("X-Mailgate-Queue-ID: {}", m.id));
    line(&format!("Arrival-Date: {}", raw::rfc5322_date(m.created)));
    for (recipient, error) in report.entries {
        line("");
        if let Some(orcpt) = request
            .and_then(|r| r.recipient(recipient))
            .and_then(|r| r.orcpt.as_deref())
        {
            line(&format!("Original-Recipient: rfc822; {}", ascii(orcpt)));
        }
        line(&format!("Final-Recipient: rfc822; {}", ascii(recipient)));
        match report.outcome {
            Outcome::Failed => {
                line("Action: failed");
                line(&format!("Status: {}", status_code(error)));
            }
            Outcome::Relayed => {
                line("Action: relayed");
                line("Status: 2.0.0");
            }
            Outcome::Delayed => {
                line("Action: delayed");
                line(&format!("Status: {}", delay_status_code(error)));
            }
        }
        let error = cut(&ascii(error), MAX_DIAGNOSTIC);
        if report.outcome == Outcome::Relayed {
            // The next server's acceptance, for the record.
            line(&format!("X-Mailgate-Reply: {error}"));
        } else if starts_with_reply_code(&error) {
            line(&format!("Diagnostic-Code: smtp; {error}"));
        } else {
            line(&format!("Diagnostic-Code: X-mailgate; {error}"));
        }
        line(&format!("Last-Attempt-Date: {now}"));
        if let (Outcome::Delayed, Some(until)) = (report.outcome, report.will_retry_until) {
            line(&format!("Will-Retry-Until: {}", raw::rfc5322_date(until)));
        }
    }
    line("");
    line(&format!("--{boundary}"));
    // RET asks for the content of failure reports (RFC 3461 §4.3); a
    // delay notice carries the header section, as Postfix's do.
    let full = request.is_some_and(|r| r.ret_full)
        && report.outcome != Outcome::Delayed
        && report.original.len() <= MAX_RETURNED;
    if full {
        line("Content-Type: message/rfc822");
        line("Content-Description: Undelivered Message");
        line("");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(report.original);
        if !bytes.ends_with(b"\r\n") {
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        return finish(report, subject, message_id, bytes);
    }
    line("Content-Type: text/rfc822-headers");
    line("Content-Description: Undelivered Message Headers");
    line("");
    let headers = &report.original[..HeaderSection::parse(report.original).body_start];
    let headers = &headers[..headers.len().min(MAX_ATTACHED_HEADERS)];
    let mut bytes = out.into_bytes();
    // The original's header lines as they are (CRLF, at most 998 octets:
    // the outbox stores only such messages), cut at a line end.
    let cut_at = headers
        .windows(2)
        .rposition(|w| w == b"\r\n")
        .map_or(0, |i| i + 2);
    bytes.extend_from_slice(&headers[..cut_at]);
    if !bytes.ends_with(b"\r\n\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    finish(report, subject, message_id, bytes)
}

fn finish(report: &Report<'_>, subject: &str, message_id: String, bytes: Vec<u8>) -> NewMessage {
    NewMessage {
        from: String::new(),
        to: vec![report.to.to_owned()],
        subject: subject.to_owned(),
        message_id: Some(message_id),
        bytes,
        dsn: None,
    }
}

/// Printable ASCII only: anything else (from a server, a hostile client)
/// becomes `?`, so no field can be broken or smuggled.
fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

fn starts_with_reply_code(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit) && matches!(b[0], b'4' | b'5')
}

/// The RFC 3463 status of a failure: the enhanced code in the reply where
/// there is one (a 4.x.x the server gave counts as permanent once mailgate
/// gave up), 4.4.7 when the message grew too old, else 5.0.0.
fn status_code(error: &str) -> String {
    if let Some(code) = error.split_whitespace().find_map(enhanced) {
        return code;
    }
    if error.contains("maxAgeHours") {
        return "4.4.7".into();
    }
    "5.0.0".into()
}

/// The RFC 3463 status of a delay: the enhanced code in the reply where it
/// is a temporary one (4.x.x), else 4.0.0 (a refused connection, a reply
/// without an enhanced code).
fn delay_status_code(error: &str) -> String {
    error
        .split_whitespace()
        .find_map(enhanced)
        .filter(|code| code.starts_with("4."))
        .unwrap_or_else(|| "4.0.0".into())
}

fn enhanced(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let ok = matches!(class, "2" | "4" | "5")
        && parts.next().is_none()
        && [subject, detail]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{DsnRequest, Notify, RecipientRequest, Status};

    fn queued() -> QueuedMessage {
        QueuedMessage {
            id: 7,
            status: Status::Sending,
            attempts: 1,
            last_error: None,
            next_attempt: None,
            created: SystemTime::UNIX_EPOCH,
            age_from: SystemTime::UNIX_EPOCH,
            sent_at: None,
            from: "app@example.org".into(),
            to: vec!["bad@example.com".into()],
            subject: "Report \u{e9}\r\nBcc: x@y".into(),
            message_id: None,
            size: 10,
            finished: Vec::new(),
            dsn: None,
            delay_warned: Vec::new(),
            body_dropped: false,
        }
    }

    #[test]
    fn status_codes_come_from_the_reply() {
        assert_eq!(status_code("550 5.1.1 No such user"), "5.1.1");
        assert_eq!(status_code("552 Mailbox full"), "5.0.0");
        assert_eq!(
            status_code("451 4.3.0 later (given up: older than mailgate.outbox.maxAgeHours)"),
            "4.3.0"
        );
        assert_eq!(
            status_code("refused (given up: older than mailgate.outbox.maxAgeHours)"),
            "4.4.7"
        );
        assert_eq!(status_code("version 1.2.3.4 of 5.x.1"), "5.0.0");
    }

    #[test]
    fn a_dsn_is_from_the_null_sender_and_no_outside_text_breaks_its_fields() {
        let m = queued();
        let original = b"Subject: Report\r\nFrom: app@example.org\r\n\r\nbody\r\n";
        let dead = [("bad@example.com", "550 5.1.1 No such user\r\nInjected: yes")];
        let dsn = build(&Report {
            reporting_mta: "relay.example.net",
            to: "app@example.org",
            message: &m,
            original,
            outcome: Outcome::Failed,
            entries: &dead,
            will_retry_until: None,
        });
        assert_eq!(dsn.from, "");
        assert_eq!(dsn.to, ["app@example.org"]);
        let text = String::from_utf8(dsn.bytes).unwrap();
        assert!(!text.contains("\nInjected"), "{text}");
        assert!(!text.contains("\nBcc"), "{text}");
        assert!(
            text.contains("Final-Recipient: rfc822; bad@example.com\r\n"),
            "{text}"
        );
        assert!(text.contains("Status: 5.1.1\r\n"), "{text}");
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 No such user??Injected: yes\r\n"));
        assert!(text.contains("Subject: Report\r\nFrom: app@example.org\r\n\r\n--mailgate-dsn-"));
        assert!(text.lines().all(|l| l.len() <= 998));
        assert!(
            text.split("\r\n")
                .all(|l| !l.contains('\n') && !l.contains('\r'))
        );
    }

    fn asking(notify: Option<Notify>) -> QueuedMessage {
        let mut m = queued();
        m.dsn = Some(DsnRequest {
            ret_full: true,
            envid: None,
            recipients: vec![RecipientRequest {
                address: "bad@example.com".into(),
                notify,
                orcpt: None,
            }],
        });
        m
    }

    #[test]
    fn a_delay_is_reported_where_notify_has_delay_or_is_absent() {
        let delay = Outcome::Delayed;
        let r = "bad@example.com";
        let own = Some("alm@example.com");
        // No NOTIFY: the MTA's choice (RFC 3461 §4.1): a delay notice.
        assert!(wants(own, &queued(), r, delay));
        assert!(wants(own, &asking(None), r, delay));
        let notify = |success, failure, delay| {
            Some(Notify {
                success,
                failure,
                delay,
            })
        };
        assert!(wants(own, &asking(notify(false, false, true)), r, delay));
        assert!(wants(own, &asking(notify(true, true, true)), r, delay));
        // NEVER, and lists without DELAY.
        assert!(!wants(own, &asking(notify(false, false, false)), r, delay));
        assert!(!wants(own, &asking(notify(false, true, false)), r, delay));
        assert!(!wants(own, &asking(notify(true, false, false)), r, delay));
        // mailgate's own notifications: only when asked.
        let mut mine = queued();
        mine.from = "ALM@example.com".into();
        assert!(!wants(own, &mine, r, delay));
        mine.dsn = asking(notify(false, false, true)).dsn;
        assert!(wants(own, &mine, r, delay));
        // Failures keep their rules.
        assert!(wants(own, &queued(), r, Outcome::Failed));
        assert!(!wants(own, &queued(), r, Outcome::Relayed));
    }

    #[test]
    fn a_delay_notice_says_delayed_with_a_temporary_status_and_the_retry_limit() {
        let m = asking(Some(Notify {
            success: false,
            failure: true,
            delay: true,
        }));
        let original = b"Subject: Report\r\nFrom: app@example.org\r\n\r\nsecret body\r\n";
        let until = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let delayed = [("bad@example.com", "451 4.2.1 try later")];
        let dsn = build(&Report {
            reporting_mta: "relay.example.net",
            to: "app@example.org",
            message: &m,
            original,
            outcome: Outcome::Delayed,
            entries: &delayed,
            will_retry_until: Some(until),
        });
        assert_eq!(dsn.from, "");
        let text = String::from_utf8(dsn.bytes).unwrap();
        assert!(
            text.contains("Subject: Delayed Mail (still being retried)\r\n"),
            "{text}"
        );
        assert!(text.contains("Action: delayed\r\n"), "{text}");
        assert!(text.contains("Status: 4.2.1\r\n"), "{text}");
        assert!(
            text.contains("Diagnostic-Code: smtp; 451 4.2.1 try later\r\n"),
            "{text}"
        );
        let until = raw::rfc5322_date(until);
        assert!(
            text.contains(&format!("Will-Retry-Until: {until}\r\n")),
            "{text}"
        );
        // RET=FULL is for failures: the body stays out of a delay notice.
        assert!(text.contains("Content-Type: text/rfc822-headers"), "{text}");
        assert!(!text.contains("secret body"), "{text}");
    }

    #[test]
    fn a_delay_status_is_temporary_whatever_the_reply() {
        assert_eq!(delay_status_code("451 4.3.0 busy"), "4.3.0");
        assert_eq!(delay_status_code("451 busy"), "4.0.0");
        assert_eq!(delay_status_code("connection refused"), "4.0.0");
        // A permanent enhanced code in a temporary reply is not taken.
        assert_eq!(delay_status_code("452 5.2.2 full"), "4.0.0");
    }
}
