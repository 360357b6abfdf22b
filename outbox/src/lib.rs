//! The outbox stores of mailgate (see `mailgate_core::outbox` for the
//! lifecycle, the policy and the delivery loop), each registered through
//! its [`OutboxDescriptor`] as strategies are:
//!
//! | feature | descriptor | store | `mailgate.outbox.url` |
//! | --- | --- | --- | --- |
//! | `sqlite` (default) | [`SQLITE`] | [`SqliteOutbox`]: one file, WAL, `synchronous=FULL` | `sqlite:PATH` (relative to the config folder) |
//! | `postgres` | [`POSTGRES`] | [`PgOutbox`]: `FOR UPDATE SKIP LOCKED` claims with leases, for several workers | `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (or `postgresql://`) |
//!
//! Both create or migrate their schema on first use (versioned, in one
//! transaction: one runner, each store giving its DDL) and make every
//! enqueue durable before returning. They share one row format and one
//! mapping of rows to [`QueuedMessage`](mailgate_core::outbox::QueuedMessage)s.
//!
//! ```no_run
//! # fn run() -> mailgate_core::Result<()> {
//! let registry = mailgate_core::Registry::new()
//!     .with_store(&mailgate_outbox::SQLITE)?
//!     .default_outbox_url("sqlite:mailgate-outbox.db");
//! let mailer = mailgate_core::Mailer::builder()
//!     .registry(registry)
//!     .config_dir("config")
//!     .build()?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use mailgate_core::outbox::OutboxDescriptor;
use mailgate_core::outbox::{
    Completion, DsnRequest, Notify, RecipientRecord, RecipientRequest, Stats, Status,
};

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::PgOutbox;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteOutbox;

/// The SQLite store: `sqlite:PATH`, a file relative to the config folder
/// (`sqlite:///abs/path` for an absolute one), created on first use.
#[cfg(feature = "sqlite")]
pub static SQLITE: OutboxDescriptor =
    OutboxDescriptor::new("sqlite", &["sqlite"], sqlite::open_url, module_path!());

/// The PostgreSQL store: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
/// (`postgresql://` too), connected on first use.
#[cfg(feature = "postgres")]
pub static POSTGRES: OutboxDescriptor = OutboxDescriptor::new(
    "postgres",
    &["postgres", "postgresql"],
    postgres::open_url,
    module_path!(),
);

/// The columns a completion writes: status, last error (kept when `None`),
/// next attempt and sent time in milliseconds, and the finished recipients.
pub(crate) struct Columns<'a> {
    pub(crate) status: Status,
    pub(crate) error: Option<&'a str>,
    pub(crate) next_attempt: Option<i64>,
    pub(crate) sent_at: Option<i64>,
    /// The new `recipient_state`, when the completion replaces it.
    pub(crate) finished: Option<String>,
}

pub(crate) fn completion_columns(completion: &Completion, now: SystemTime) -> Columns<'_> {
    let status = completion.status();
    let sent_at = (status == Status::Sent).then(|| to_ms(now));
    match completion {
        Completion::Sent { .. } => Columns {
            status,
            error: None,
            next_attempt: None,
            sent_at,
            finished: None,
        },
        Completion::Retry {
            error,
            next_attempt,
        } => Columns {
            status,
            error: Some(error.as_str()),
            next_attempt: Some(to_ms(*next_attempt)),
            sent_at,
            finished: None,
        },
        Completion::Dead { error } => Columns {
            status,
            error: Some(error.as_str()),
            next_attempt: None,
            sent_at,
            finished: None,
        },
        Completion::Recipients {
            finished,
            next_attempt,
            error,
            delay_warned,
        } => Columns {
            status,
            error: Some(error.as_str()),
            next_attempt: next_attempt.map(to_ms),
            sent_at,
            finished: Some(encode_state(finished, delay_warned)),
        },
    }
}

/// How a recipient's own state is kept in the `recipient_state` column (a
/// JSON array): a finished one (`sent` or `dead`, with its reply), or one
/// still due whose delay was reported (`queued` with `delay_warned`).
/// Versions that know only finished records skip the others.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRecord {
    address: String,
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply: Option<String>,
    #[serde(default)]
    attempts: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    delay_warned: bool,
}

/// The `recipient_state` column of `finished` and of the recipients still
/// due whose delay was reported.
pub(crate) fn encode_state(finished: &[RecipientRecord], delay_warned: &[String]) -> String {
    let stored: Vec<StoredRecord> = finished
        .iter()
        .map(|r| StoredRecord {
            address: r.address.clone(),
            status: r.status.as_str().to_owned(),
            reply: r.reply.clone(),
            attempts: r.attempts,
            delay_warned: false,
        })
        .chain(
            delay_warned
                .iter()
                .filter(|a| !finished.iter().any(|r| &r.address == *a))
                .map(|address| StoredRecord {
                    address: address.clone(),
                    status: Status::Queued.as_str().to_owned(),
                    reply: None,
                    attempts: 0,
                    delay_warned: true,
                }),
        )
        .collect();
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".into())
}

/// The finished records and the reported delays of a `recipient_state`
/// column. A record this version cannot read is left out: its recipient
/// counts as due again (at-least-once), or its delay as not reported.
pub(crate) fn decode_state(column: Option<&str>) -> (Vec<RecipientRecord>, Vec<String>) {
    let Some(text) = column else {
        return (Vec::new(), Vec::new());
    };
    let stored: Vec<StoredRecord> = serde_json::from_str(text).unwrap_or_default();
    let mut finished = Vec::new();
    let mut delay_warned = Vec::new();
    for r in stored {
        match Status::parse(&r.status) {
            Some(status @ (Status::Sent | Status::Dead)) => finished.push(RecipientRecord {
                address: r.address,
                status,
                reply: r.reply,
                attempts: r.attempts,
            }),
            Some(Status::Queued) if r.delay_warned => delay_warned.push(r.address),
            _ => {}
        }
    }
    (finished, delay_warned)
}

/// How a DSN request is kept in the `dsn_request` column (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredDsn {
    #[serde(default)]
    ret_full: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    envid: Option<String>,
    #[serde(default)]
    recipients: Vec<StoredRecipientDsn>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRecipientDsn {
    address: String,
    /// Absent: not given; else the conditions (empty: NEVER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notify: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    orcpt: Option<String>,
}

/// The `dsn_request` column of `request`.
pub(crate) fn encode_dsn(request: Option<&DsnRequest>) -> Option<String> {
    let request = request?;
    let stored = StoredDsn {
        ret_full: request.ret_full,
        envid: request.envid.clone(),
        recipients: request
            .recipients
            .iter()
            .map(|r| StoredRecipientDsn {
                address: r.address.clone(),
                notify: r.notify.map(|n| {
                    [
                        (n.success, "SUCCESS"),
                        (n.failure, "FAILURE"),
                        (n.delay, "DELAY"),
                    ]
                    .into_iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, name)| name.to_owned())
                    .collect()
                }),
                orcpt: r.orcpt.clone(),
            })
            .collect(),
    };
    serde_json::to_string(&stored).ok()
}

/// The request of a `dsn_request` column; one this version cannot read is
/// none (DSNs on failure, the default).
pub(crate) fn decode_dsn(column: Option<&str>) -> Option<DsnRequest> {
    let stored: StoredDsn = serde_json::from_str(column?).ok()?;
    Some(DsnRequest {
        ret_full: stored.ret_full,
        envid: stored.envid,
        recipients: stored
            .recipients
            .into_iter()
            .map(|r| RecipientRequest {
                address: r.address,
                notify: r.notify.map(|words| Notify {
                    success: words.iter().any(|w| w == "SUCCESS"),
                    failure: words.iter().any(|w| w == "FAILURE"),
                    delay: words.iter().any(|w| w == "DELAY"),
                }),
                orcpt: r.orcpt,
            })
            .collect(),
    })
}

/// Adds `n` recipients of status `status` to `stats`.
pub(crate) fn count_recipients(stats: &mut Stats, status: Option<&str>, n: Option<i64>) {
    let n = u64::try_from(n.unwrap_or(0)).unwrap_or(0);
    let counter = match status.and_then(Status::parse) {
        Some(Status::Queued | Status::Sending) => &mut stats.recipients.queued,
        Some(Status::Sent) => &mut stats.recipients.sent,
        Some(Status::Dead) => &mut stats.recipients.dead,
        None => return,
    };
    *counter += n;
}

/// Milliseconds since the epoch, as the stores keep times.
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`to_ms`].
#[allow(dead_code)]
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_state_keeps_records_and_reported_delays_and_reads_old_rows() {
        let finished = vec![RecipientRecord {
            address: "a@example.com".into(),
            status: Status::Dead,
            reply: Some("550 5.1.1 no".into()),
            attempts: 2,
        }];
        let warned = vec!["b@example.com".to_owned(), "a@example.com".to_owned()];
        let column = encode_state(&finished, &warned);
        assert_eq!(
            decode_state(Some(&column)),
            (finished.clone(), vec!["b@example.com".to_owned()]),
            "{column}"
        );
        // A row written before delay notices existed.
        let old =
            r#"[{"address":"a@example.com","status":"dead","reply":"550 5.1.1 no","attempts":2}]"#;
        assert_eq!(decode_state(Some(old)), (finished, Vec::new()));
        // What an older version reads of a new row: its finished records only.
        assert!(column.contains(r#""status":"queued""#), "{column}");
        assert_eq!(decode_state(Some("not json")), (Vec::new(), Vec::new()));
        assert_eq!(decode_state(None), (Vec::new(), Vec::new()));
    }
}
