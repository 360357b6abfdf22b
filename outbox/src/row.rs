//! The row format every SQL store shares, and its one mapping: a row of
//! `outbox_messages` to a [`QueuedMessage`] or a [`Claimed`] message, the
//! rows of a `stats` query to [`Stats`], a [`Completion`] to the columns it
//! writes. Each store writes its own SQL; what the columns mean is decided
//! here once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailgate_core::outbox::{
    Claimed, Completion, DsnRequest, Notify, QueuedMessage, RecipientRecord, RecipientRequest,
    Stats, Status,
};
use sqlx::{ColumnIndex, Decode, Row, Type};

/// The columns a listing reads (never the message bytes, `message`), one
/// list for every store's `outbox_messages`, as a literal for `concat!`.
/// `attempts` is widened to `BIGINT` (PostgreSQL keeps an `INTEGER`) so
/// that one mapping reads it everywhere.
macro_rules! summary_columns {
    () => {
        "id, status, CAST(attempts AS BIGINT) AS attempts, last_error, next_attempt_at, \
         created_at, age_from, sent_at, mail_from, recipients, subject, message_id, size, \
         recipient_state, dsn_request, body_dropped"
    };
}
pub(crate) use summary_columns;

/// A stored `attempts` count as the listing's `u32`: a value below zero
/// (never written, but a hand-edited row may hold one) is 0, one above
/// `u32::MAX` is `u32::MAX`. Clamped, not reset: a count too big to hold
/// still means many attempts, so back-off stays at its longest instead of
/// starting again at its shortest.
pub(crate) fn attempts(stored: i64) -> u32 {
    u32::try_from(stored.max(0)).unwrap_or(u32::MAX)
}

/// A listing's message from a row holding [`summary_columns!`]. Times are
/// milliseconds since the epoch; the recipients, the finished records and
/// the DSN request are JSON text; `body_dropped` a boolean (or 0/1).
pub(crate) fn summary<R>(row: &R) -> Result<QueuedMessage, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let status: String = row.try_get("status")?;
    let recipients: String = row.try_get("recipients")?;
    let (finished, delay_warned) = decode_state(
        row.try_get::<Option<String>, _>("recipient_state")?
            .as_deref(),
    );
    Ok(QueuedMessage {
        id: row.try_get("id")?,
        status: Status::parse(&status).unwrap_or(Status::Dead),
        attempts: attempts(row.try_get("attempts")?),
        last_error: row.try_get("last_error")?,
        next_attempt: row
            .try_get::<Option<i64>, _>("next_attempt_at")?
            .map(from_ms),
        created: from_ms(row.try_get("created_at")?),
        age_from: from_ms(row.try_get("age_from")?),
        sent_at: row.try_get::<Option<i64>, _>("sent_at")?.map(from_ms),
        from: row.try_get("mail_from")?,
        to: serde_json::from_str(&recipients).unwrap_or_default(),
        subject: row.try_get("subject")?,
        message_id: row.try_get("message_id")?,
        size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
        finished,
        dsn: decode_dsn(row.try_get::<Option<String>, _>("dsn_request")?.as_deref()),
        delay_warned,
        body_dropped: row.try_get("body_dropped")?,
    })
}

/// A claimed message from a row holding [`summary_columns!`] and `message`.
pub(crate) fn claimed<R>(row: &R) -> Result<Claimed, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Claimed {
        message: summary(row)?,
        bytes: row.try_get("message")?,
    })
}

/// [`Stats`] from the rows of a store's stats query, each a label and a
/// number: a status name and how many messages have it; `oldest` and the
/// creation time of the oldest `queued` or `sending` message; and
/// `recipients:STATUS` and how many recipients have it (those without a
/// finished record share their message's status).
pub(crate) fn stats(rows: impl IntoIterator<Item = (String, Option<i64>)>) -> Stats {
    let mut stats = Stats::default();
    for (label, n) in rows {
        let count = u64::try_from(n.unwrap_or(0)).unwrap_or(0);
        if let Some(status) = label.strip_prefix("recipients:") {
            let counter = match Status::parse(status) {
                Some(Status::Queued | Status::Sending) => &mut stats.recipients.queued,
                Some(Status::Sent) => &mut stats.recipients.sent,
                Some(Status::Dead) => &mut stats.recipients.dead,
                None => continue,
            };
            *counter += count;
            continue;
        }
        match (label.as_str(), Status::parse(&label)) {
            ("oldest", _) => stats.oldest_waiting = n.map(from_ms),
            (_, Some(Status::Queued)) => stats.queued = count,
            (_, Some(Status::Sending)) => stats.sending = count,
            (_, Some(Status::Sent)) => stats.sent = count,
            (_, Some(Status::Dead)) => stats.dead = count,
            (_, None) => {}
        }
    }
    stats
}

/// The label and number of a stats row (see [`stats`]).
pub(crate) fn stats_row<R>(row: &R) -> Result<(String, Option<i64>), sqlx::Error>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok((row.try_get("label")?, row.try_get("n")?))
}

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

/// Milliseconds since the epoch, as the stores keep times.
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`to_ms`].
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempts_count_out_of_range_is_clamped() {
        assert_eq!(attempts(-5), 0);
        assert_eq!(attempts(i64::MIN), 0);
        assert_eq!(attempts(0), 0);
        assert_eq!(attempts(7), 7);
        assert_eq!(attempts(i64::from(u32::MAX)), u32::MAX);
        assert_eq!(attempts(1 << 40), u32::MAX);
        assert_eq!(attempts(i64::MAX), u32::MAX);
    }

    #[test]
    fn stats_rows_are_read_by_their_labels() {
        let rows = [
            ("queued", Some(3)),
            ("sending", Some(1)),
            ("sent", Some(2)),
            ("dead", Some(4)),
            ("oldest", Some(1_700_000_000_000)),
            ("recipients:queued", Some(5)),
            ("recipients:sending", Some(1)),
            ("recipients:sent", Some(2)),
            ("recipients:dead", Some(6)),
            ("recipients:", Some(9)),
            ("unknown", Some(9)),
        ]
        .map(|(label, n)| (label.to_owned(), n));
        let stats = stats(rows);
        assert_eq!(
            (stats.queued, stats.sending, stats.sent, stats.dead),
            (3, 1, 2, 4)
        );
        assert_eq!(stats.oldest_waiting, Some(from_ms(1_700_000_000_000)));
        let r = &stats.recipients;
        assert_eq!((r.queued, r.sent, r.dead), (6, 2, 6));
        assert_eq!(
            super::stats([("oldest".to_owned(), None)]),
            Stats::default()
        );
    }

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
