//! The shared outbox: one PostgreSQL database, several workers.
//!
//! Claims take due rows with `FOR UPDATE SKIP LOCKED` and lease them to the
//! worker (`lease_owner`, `lease_until`): workers on any number of machines
//! never get the same message at once, and a worker that dies releases its
//! messages once its heartbeat is stale (see `liveness`), at the latest
//! when the lease runs out. Every change is
//! one autocommitted statement, durable when it returns (the server's
//! `synchronous_commit`, on by default).
//!
//! The schema is created or migrated on first use, versioned in a
//! `mailgate_schema` table, in one transaction that holds a
//! `pg_advisory_xact_lock`: workers starting together take turns, and the
//! second finds the work done. A database whose schema is newer than this
//! mailgate knows is refused. A role without `CREATE` works once the owner
//! has created the tables (run mailgate once as the owner, then grant
//! `SELECT, INSERT, UPDATE, DELETE` on `outbox_messages` and
//! `mailgate_workers` and `USAGE` on its sequence).
//!
//! Whether a message is due and whether a lease is alive are judged by the
//! database's clock (`now()`), and a claim's lease ends by it: the `now` a
//! worker passes is ignored there, so a worker whose clock runs minutes
//! ahead never takes a live lease, and one whose clock runs behind still
//! finds what is due. What a worker computes (a retry's next attempt, the
//! time a message was sent, the start of a message's age on `retry`) is
//! kept as given.
//!
//! Times are milliseconds since the epoch in `BIGINT` columns, as in SQLite;
//! the recipients are a JSON array in a `TEXT` column, the same encoding as
//! SQLite: it is only ever read back whole (never searched in SQL, so
//! `JSONB`'s operators and indexes would buy nothing), and both stores then
//! share one row format.
//!
//! The password (in the URL, or from `PGPASSWORD` / `~/.pgpass` as libpq
//! reads them) is never shown: not in [`OutboxStore::describe`], not in
//! `Debug`, not in errors.

use std::future::Future;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mailgate_core::outbox::{
    Claimed, Completion, MessageId, NewMessage, OutboxStore, OutboxUrl, QueuedMessage, Stats,
    Status,
};
use mailgate_core::{Error, Origin, Result, Settings};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use tokio::sync::OnceCell;

use crate::migrate::{Dialect, MigrateError};
use crate::row::{self, encode_dsn, from_ms, summary_columns, to_ms};

mod liveness;
mod notify;

/// Opens `postgres://...` ([`crate::POSTGRES`]).
pub(crate) fn open_url(url: &OutboxUrl, settings: &Settings) -> Result<Arc<dyn OutboxStore>> {
    Ok(Arc::new(
        PgOutbox::parse(url)?.keep_sent_bodies(settings.outbox().keep_sent_bodies),
    ))
}

/// Versioned schema: each entry moves the database one version up (see
/// [`crate::migrate`]).
const MIGRATIONS: &[&str] = &[
    // 1: the messages.
    "CREATE TABLE outbox_messages (
        id BIGSERIAL PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'dead')),
        created_at BIGINT NOT NULL,
        age_from BIGINT NOT NULL,
        next_attempt_at BIGINT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        lease_owner TEXT,
        lease_until BIGINT,
        sent_at BIGINT,
        mail_from TEXT NOT NULL,
        recipients TEXT NOT NULL,
        subject TEXT NOT NULL,
        message_id TEXT,
        size BIGINT NOT NULL,
        message BYTEA NOT NULL
    );
    CREATE INDEX outbox_due ON outbox_messages (status, next_attempt_at);
    CREATE INDEX outbox_lease ON outbox_messages (status, lease_until);",
    // 2: the recipients that are done while others are not (JSON, see
    // `encode_state`); NULL while all share the message's status.
    "ALTER TABLE outbox_messages ADD COLUMN recipient_state TEXT;",
    // 3: the workers' heartbeats.
    liveness::WORKERS_TABLE,
    // 4: what the sender asked of DSNs (JSON, see `encode_dsn`), if it asked.
    "ALTER TABLE outbox_messages ADD COLUMN dsn_request TEXT;",
    // 5: true once a sent message's body was dropped (`message` holds its
    // header section, `size` stays the whole message's).
    "ALTER TABLE outbox_messages ADD COLUMN body_dropped BOOLEAN NOT NULL DEFAULT false;",
];

/// The assignments that drop a message's body, keeping its header section
/// up to and including the blank line (a message without one is all
/// header and is kept). Every stored message has header fields (mailgate
/// adds Date, Message-ID, MIME-Version), so its first CRLF CRLF ends them.
macro_rules! drop_body {
    () => {
        "message = CASE WHEN position('\\x0d0a0d0a'::bytea IN message) > 0
                        THEN substring(message FROM 1
                                       FOR position('\\x0d0a0d0a'::bytea IN message) + 3)
                        ELSE message END,
         body_dropped = body_dropped
                        OR (position('\\x0d0a0d0a'::bytea IN message) > 0
                            AND position('\\x0d0a0d0a'::bytea IN message) + 3
                                < octet_length(message))"
    };
}

/// The database's clock, in milliseconds since the epoch as the columns
/// keep times: `now()`, the start of the statement's transaction (every
/// change here is one statement, its own transaction, and none waits for
/// the time it reads). Whether a message is due and whether a lease is
/// alive are judged by it, and leases end by it: the workers' clocks may
/// disagree by minutes, the database's is one. Times a worker computes
/// (a retry's next attempt, when a message was sent) are kept as it gives
/// them.
macro_rules! db_now_ms {
    () => {
        "(floor(extract(epoch FROM now()) * 1000)::bigint)"
    };
}

/// How long a new connection may take (TCP, TLS, authentication).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long an operation waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections per store: a worker claims a batch and completes its
/// messages concurrently.
const MAX_CONNECTIONS: u32 = 8;

/// How PostgreSQL spells what [`crate::migrate`] needs.
const DIALECT: Dialect = Dialect {
    begin: "BEGIN",
    // Held until commit or rollback: workers starting together take turns.
    // The key is "mailgate" in ASCII (0x6d61696c67617465); advisory locks
    // are per database, so outboxes in different databases of one server
    // do not wait for each other.
    lock: Some("SELECT pg_advisory_xact_lock(7881696737186903141)"),
    has_schema_table: "SELECT (to_regclass('mailgate_schema') IS NOT NULL)::int::bigint",
};

/// An outbox in a PostgreSQL database (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`).
pub struct PgOutbox {
    /// Made on first use, inside the async runtime (a pool spawns its
    /// maintenance task when made), once the schema is current: the
    /// durable pool and the workers' pool (`synchronous_commit=off`: a
    /// claim or completion lost with the server sends that message again,
    /// which at-least-once allows).
    pool: OnceCell<(PgPool, PgPool)>,
    /// For the pool, the connection that migrates the schema and for
    /// diagnosing a pool that cannot connect. Holds the password: never shown.
    options: PgConnectOptions,
    /// The URL without password and query.
    shown: String,
    /// The password as written in the URL (raw and decoded), removed from
    /// any text shown.
    secrets: Vec<String>,
    /// Sent messages keep their body (`mailgate.outbox.keepSentBodies`).
    keep_sent_bodies: bool,
}

impl std::fmt::Debug for PgOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOutbox")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl PgOutbox {
    /// The outbox in the database `url` names. Nothing is connected until
    /// first use, when the schema is created or migrated; a URL that cannot
    /// be parsed is a configuration error (`mailgate.outbox.url`) shown
    /// without its password.
    ///
    /// As with libpq, what the URL leaves out comes from the `PG*`
    /// environment variables (`PGPASSWORD`, `PGSSLMODE`, ...) and
    /// `~/.pgpass`; TLS is used when the server offers it
    /// (`?sslmode=require` or `verify-full` to insist).
    pub fn open(url: &str) -> Result<Self> {
        Self::parse(&OutboxUrl::new(url, Origin::Builder))
    }

    /// [`Self::open`] for `url`, whose origin its errors name.
    fn parse(url: &OutboxUrl) -> Result<Self> {
        let secrets = url_secrets(url.as_str());
        let mut options = PgConnectOptions::from_str(url.as_str()).map_err(|e| {
            Error::from(url.invalid(scrub(
                &format!(
                    "a PostgreSQL URL `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` ({})",
                    config_reason(&e)
                ),
                &secrets,
            )))
        })?;
        if options.get_application_name().is_none() {
            options = options.application_name("mailgate");
        }
        Ok(Self {
            pool: OnceCell::new(),
            options,
            shown: url.shown(),
            secrets,
            keep_sent_bodies: false,
        })
    }

    /// With `true`, sent messages keep their body until they are purged
    /// (`mailgate.outbox.keepSentBodies`); by default only their header
    /// section is kept once they are sent.
    pub fn keep_sent_bodies(mut self, keep: bool) -> Self {
        self.keep_sent_bodies = keep;
        self
    }

    /// The URL as it may be shown: no password, no query.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// Closes the pooled connections (they are also closed when the store
    /// is dropped, less politely).
    pub async fn close(&self) {
        if let Some((durable, worker)) = self.pool.get() {
            durable.close().await;
            worker.close().await;
        }
    }

    /// The pool, once the schema is current. The first call connects
    /// directly (not through the pool, which would retry a refused
    /// connection until its timeout) so that a wrong URL is reported at
    /// once with its cause.
    async fn pool(&self) -> Result<&PgPool> {
        Ok(&self.pools().await?.0)
    }

    /// The pool for claims and completions: commits without waiting for
    /// the WAL flush.
    async fn worker_pool(&self) -> Result<&PgPool> {
        Ok(&self.pools().await?.1)
    }

    async fn pools(&self) -> Result<&(PgPool, PgPool)> {
        self.pool
            .get_or_try_init(|| async {
                self.migrate().await?;
                let pool = |options: PgConnectOptions| {
                    PgPoolOptions::new()
                        .max_connections(MAX_CONNECTIONS)
                        .min_connections(0)
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .idle_timeout(Some(Duration::from_secs(300)))
                        .connect_lazy_with(options)
                };
                let worker = self
                    .options
                    .clone()
                    .options([("synchronous_commit", "off")]);
                Ok::<_, Error>((pool(self.options.clone()), pool(worker)))
            })
            .await
    }

    /// One connection outside the pool, with a timeout.
    async fn connect(&self) -> std::result::Result<PgConnection, sqlx::Error> {
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.options)).await
        {
            Ok(result) => result,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            ))),
        }
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.run(self.connect()).await?;
        let result =
            crate::migrate::migrate::<sqlx::Postgres>(&mut conn, &DIALECT, MIGRATIONS).await;
        let _ = conn.close().await;
        match result {
            Ok(()) => Ok(()),
            Err(MigrateError::Sql(e)) => Err(self.error(e).await),
            Err(newer) => Err(self.error_with(newer.to_string())),
        }
    }

    /// Awaits a database call, turning its error into an outbox error.
    async fn run<T>(
        &self,
        call: impl Future<Output = std::result::Result<T, sqlx::Error>>,
    ) -> Result<T> {
        match call.await {
            Ok(value) => Ok(value),
            Err(e) => Err(self.error(e).await),
        }
    }

    /// What went wrong, for an operator: the cause and what to do.
    async fn error(&self, e: sqlx::Error) -> Error {
        let reason = match e {
            // The pool retries refused connections until its timeout and
            // then says only that it timed out: ask the server once more,
            // directly, to name the cause.
            sqlx::Error::PoolTimedOut => {
                let waited = format!(
                    "no database connection within {} s",
                    ACQUIRE_TIMEOUT.as_secs()
                );
                match self.connect().await {
                    Ok(conn) => {
                        let _ = conn.close().await;
                        format!(
                            "{waited}: all {MAX_CONNECTIONS} connections of this process stayed busy; try again"
                        )
                    }
                    Err(cause) => format!("{waited}: {}", self.describe_error(&cause)),
                }
            }
            other => self.describe_error(&other),
        };
        self.error_with(reason)
    }

    fn error_with(&self, reason: String) -> Error {
        Error::Outbox {
            location: format!("postgres {}", self.shown),
            reason: scrub(&reason, &self.secrets),
        }
    }

    /// `host:port`, or the socket path.
    fn server(&self) -> String {
        match self.options.get_socket() {
            Some(dir) => format!(
                "the socket {}/.s.PGSQL.{}",
                dir.display(),
                self.options.get_port()
            ),
            None => {
                let host = self.options.get_host();
                if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]:{}", self.options.get_port())
                } else {
                    format!("{host}:{}", self.options.get_port())
                }
            }
        }
    }

    fn describe_error(&self, e: &sqlx::Error) -> String {
        let user = self.options.get_username();
        let database = self.options.get_database().unwrap_or(user);
        let server = self.server();
        match e {
            sqlx::Error::Database(db) => {
                let message = db.message();
                let code = db.code().unwrap_or_default();
                match code.as_ref() {
                    "28P01" => format!(
                        "authentication failed for user `{user}` at {server}: the password is wrong or missing (the server said: {message}); check the password in `mailgate.outbox.url`"
                    ),
                    "28000" => format!(
                        "authentication failed for user `{user}` at {server}: {message}; the server's pg_hba.conf does not let this user in from here, or the role cannot log in"
                    ),
                    "3D000" => format!(
                        "database `{database}` does not exist on {server}; create it (`createdb -O {user} {database}`) or fix the database name in `mailgate.outbox.url`"
                    ),
                    "42501" => format!(
                        "{}; grant user `{user}` CREATE on the schema, or have the database owner run mailgate once to create the tables and grant `{user}` SELECT, INSERT, UPDATE, DELETE on outbox_messages and mailgate_workers and USAGE on its sequence",
                        if message.starts_with("permission denied") {
                            message.to_owned()
                        } else {
                            format!("permission denied: {message}")
                        }
                    ),
                    "42P01" => format!(
                        "{message}: the outbox tables are missing although mailgate_schema says they exist; restore them, or drop mailgate_schema to have them created afresh"
                    ),
                    "53300" => format!(
                        "the server at {server} has no connection left ({message}); raise max_connections or run fewer workers"
                    ),
                    "53100" => {
                        format!("the server's disk is full ({message}); nothing was written")
                    }
                    "25006" => format!(
                        "{message}: the server at {server} is a read-only standby; point `mailgate.outbox.url` at the primary"
                    ),
                    "57P01" | "57P02" | "57P03" => format!(
                        "the server at {server} is shutting down or starting up ({message}); try again"
                    ),
                    "" => message.to_owned(),
                    code => format!("{message} (SQLSTATE {code})"),
                }
            }
            sqlx::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => format!(
                    "connection refused by {server}: is PostgreSQL running there, listening on that address and port (listen_addresses, port)?"
                ),
                std::io::ErrorKind::NotFound if self.options.get_socket().is_some() => format!(
                    "there is no {server}: is PostgreSQL running, with unix_socket_directories set to that folder?"
                ),
                std::io::ErrorKind::TimedOut => {
                    format!("cannot reach {server}: {io}; check the host name, port and firewall")
                }
                std::io::ErrorKind::PermissionDenied => {
                    format!("cannot connect to {server}: {io}")
                }
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                    format!(
                        "{server} closed the connection ({io}); is it a PostgreSQL server, and is it running?"
                    )
                }
                _ => format!("cannot reach {server}: {io}; check the host name and port"),
            },
            sqlx::Error::Tls(tls) => format!(
                "TLS with {server} failed: {tls}; check `sslmode` and `sslrootcert` in `mailgate.outbox.url`"
            ),
            sqlx::Error::Configuration(_) => config_reason(e),
            sqlx::Error::PoolClosed => "the store was closed".into(),
            other => other.to_string(),
        }
    }
}

/// A lease's length in milliseconds, added to the database's clock.
fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// The password as the URL writes it (raw and percent-decoded, in the
/// user info or as `?password=`), to be removed from anything shown.
fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(parsed) = url::Url::parse(url) {
        if let Some(password) = parsed.password() {
            out.push(password.to_owned());
            out.push(percent_decode(password));
        }
        for (key, value) in parsed.query_pairs() {
            if key == "password" {
                out.push(value.into_owned());
            }
        }
    }
    // Also the raw text between `user:` and `@`, should the URL not parse.
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let password = authority
            .rsplit_once('@')
            .and_then(|(auth, _)| auth.split_once(':'))
            .map(|(_, password)| password);
        if let Some(password) = password {
            out.push(password.to_owned());
            out.push(percent_decode(password));
        }
    }
    // And with unencoded delimiters in it (`mg:ab#cd@db`).
    if let Some((_, userinfo, _)) = mailgate_core::settings::url_userinfo(url)
        && let Some((_, password)) = userinfo.split_once(':')
    {
        out.push(password.to_owned());
        out.push(percent_decode(password));
    }
    out.retain(|s| !s.is_empty());
    // Longest first, so that a secret containing another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `%XX` escapes decoded (invalid UTF-8 replaced).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every secret replaced by `***`.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// A parse error of the URL, without sqlx's "error with configuration" prefix.
fn config_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

fn rows_to<T>(
    rows: &[PgRow],
    f: impl Fn(&PgRow) -> std::result::Result<T, sqlx::Error>,
) -> std::result::Result<Vec<T>, sqlx::Error> {
    rows.iter().map(f).collect()
}

#[async_trait]
impl OutboxStore for PgOutbox {
    fn describe(&self) -> String {
        format!("postgres {}", self.shown)
    }

    async fn announce_worker(
        &self,
        worker: &str,
        timeout: Duration,
    ) -> Result<Option<mailgate_core::outbox::Presence>> {
        self.start_heartbeat(worker, timeout).await
    }

    async fn reclaim_dead(&self, worker: &str, now: SystemTime) -> Result<u64> {
        self.reclaim_unheard(worker, now).await
    }

    async fn live_workers(&self) -> Result<u64> {
        self.count_heard().await
    }

    async fn watch(&self) -> Result<Option<Box<dyn mailgate_core::outbox::WorkWatch>>> {
        self.listen().await
    }

    async fn enqueue(&self, message: NewMessage) -> Result<MessageId> {
        let pool = self.pool().await?;
        let recipients = serde_json::to_string(&message.to).unwrap_or_else(|_| "[]".into());
        self.run(
            // Stored and due at the database's now (not this machine's:
            // a clock behind would keep it from being due for as long).
            // Idle workers listening hear of it when it commits (`notify`).
            sqlx::query_scalar(concat!(
                "WITH new AS (
                   INSERT INTO outbox_messages
                     (status, created_at, age_from, next_attempt_at, attempts, mail_from,
                      recipients, subject, message_id, size, message, dsn_request)
                   SELECT 'queued', t, t, t, 0, $1, $2, $3, $4, $5, $6, $7
                     FROM (SELECT ",
                db_now_ms!(),
                " AS t) AS clock
                   RETURNING id)
                 SELECT new.id FROM new, (SELECT pg_notify('mailgate_outbox', '')) AS announced"
            ))
            .bind(&message.from)
            .bind(recipients)
            .bind(&message.subject)
            .bind(&message.message_id)
            .bind(i64::try_from(message.bytes.len()).unwrap_or(i64::MAX))
            // Moved, not borrowed: encoded into the query's buffer and
            // freed, so the message is not held twice while it is sent.
            .bind(message.bytes)
            .bind(encode_dsn(message.dsn.as_ref()))
            .fetch_one(pool),
        )
        .await
    }

    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        limit: usize,
        now: SystemTime,
    ) -> Result<Vec<Claimed>> {
        let _ = now; // The database's clock decides, not the worker's.
        let pool = self.worker_pool().await?;
        // SKIP LOCKED: rows another worker is claiming right now are left
        // to it; a row it claimed and committed meanwhile is re-checked
        // (no longer due) and left out too.
        let rows = self
            .run(
                sqlx::query(concat!(
                    "UPDATE outbox_messages
                        SET status = 'sending', lease_owner = $1,
                            lease_until = ",
                    db_now_ms!(),
                    " + $2,
                            attempts = attempts + 1
                      WHERE id IN (SELECT id FROM (
                                     SELECT id, size, SUM(size) OVER (ORDER BY id) AS running,
                                    ROW_NUMBER() OVER (ORDER BY id) AS n
                                       FROM (SELECT id, size FROM outbox_messages
                                              WHERE (status = 'queued' AND next_attempt_at <= ",
                    db_now_ms!(),
                    ")
                                                 OR (status = 'sending' AND lease_until <= ",
                    db_now_ms!(),
                    ")
                                              ORDER BY id LIMIT $3
                                              FOR UPDATE SKIP LOCKED) AS due) AS sized
                                    -- The bodies held at once stay bounded.
                                    WHERE n = 1 OR running <= $4)
                      RETURNING ",
                    summary_columns!(),
                    ", message"
                ))
                .bind(worker)
                .bind(lease_ms(lease))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(mailgate_core::outbox::CLAIM_MAX_BYTES)
                .fetch_all(pool),
            )
            .await?;
        let mut out = self.run(async { rows_to(&rows, row::claimed) }).await?;
        out.sort_by_key(|c| c.message.id);
        Ok(out)
    }

    async fn claim_one(
        &self,
        id: MessageId,
        worker: &str,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Option<Claimed>> {
        let _ = now; // The lease ends by the database's clock.
        let pool = self.worker_pool().await?;
        let row = self
            .run(
                sqlx::query(concat!(
                    "UPDATE outbox_messages
                        SET status = 'sending', lease_owner = $1,
                            lease_until = ",
                    db_now_ms!(),
                    " + $2,
                            attempts = attempts + 1
                      WHERE id = $3 AND status = 'queued'
                      RETURNING ",
                    summary_columns!(),
                    ", message"
                ))
                .bind(worker)
                .bind(lease_ms(lease))
                .bind(id)
                .fetch_optional(pool),
            )
            .await?;
        self.run(async { row.as_ref().map(row::claimed).transpose() })
            .await
    }

    async fn complete(
        &self,
        id: MessageId,
        worker: &str,
        completion: Completion,
        now: SystemTime,
    ) -> Result<bool> {
        let pool = self.worker_pool().await?;
        let columns = row::completion_columns(&completion, now);
        let sql = if columns.status == Status::Sent && !self.keep_sent_bodies {
            concat!(
                "UPDATE outbox_messages
                    SET status = $1, last_error = COALESCE($2, last_error),
                        next_attempt_at = $3, sent_at = $4,
                        recipient_state = COALESCE($7, recipient_state),
                        lease_owner = NULL, lease_until = NULL, ",
                drop_body!(),
                " WHERE id = $5 AND status = 'sending' AND lease_owner = $6"
            )
        } else {
            "UPDATE outbox_messages
                SET status = $1, last_error = COALESCE($2, last_error),
                    next_attempt_at = $3, sent_at = $4,
                    recipient_state = COALESCE($7, recipient_state),
                    lease_owner = NULL, lease_until = NULL
              WHERE id = $5 AND status = 'sending' AND lease_owner = $6"
        };
        let done = self
            .run(
                sqlx::query(sql)
                    .bind(columns.status.as_str())
                    .bind(columns.error)
                    .bind(columns.next_attempt)
                    .bind(columns.sent_at)
                    .bind(id)
                    .bind(worker)
                    .bind(columns.finished)
                    .execute(pool),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete_sent(
        &self,
        worker: &str,
        ids: &[MessageId],
        now: SystemTime,
    ) -> Result<Vec<MessageId>> {
        let pool = self.worker_pool().await?;
        let sql = if self.keep_sent_bodies {
            "UPDATE outbox_messages
                SET status = 'sent', sent_at = $1, next_attempt_at = NULL,
                    lease_owner = NULL, lease_until = NULL
              WHERE id = ANY($2) AND status = 'sending' AND lease_owner = $3
              RETURNING id"
        } else {
            concat!(
                "UPDATE outbox_messages
                    SET status = 'sent', sent_at = $1, next_attempt_at = NULL,
                        lease_owner = NULL, lease_until = NULL, ",
                drop_body!(),
                " WHERE id = ANY($2) AND status = 'sending' AND lease_owner = $3
                  RETURNING id"
            )
        };
        self.run(
            sqlx::query_scalar(sql)
                .bind(to_ms(now))
                .bind(ids)
                .bind(worker)
                .fetch_all(pool),
        )
        .await
    }

    async fn release(&self, ids: &[MessageId], worker: &str) -> Result<u64> {
        let pool = self.worker_pool().await?;
        let done = self
            .run(
                sqlx::query(
                    "UPDATE outbox_messages
                        SET status = 'queued', lease_owner = NULL, lease_until = NULL,
                            attempts = GREATEST(attempts - 1, 0)
                      WHERE id = ANY($1) AND status = 'sending' AND lease_owner = $2",
                )
                .bind(ids)
                .bind(worker)
                .execute(pool),
            )
            .await?;
        // Due again: another worker may take them now.
        self.announce(done.rows_affected()).await;
        Ok(done.rows_affected())
    }

    async fn list(&self, include_sent: bool) -> Result<Vec<QueuedMessage>> {
        let pool = self.pool().await?;
        let sql = if include_sent {
            concat!(
                "SELECT ",
                summary_columns!(),
                " FROM outbox_messages ORDER BY id"
            )
        } else {
            concat!(
                "SELECT ",
                summary_columns!(),
                " FROM outbox_messages WHERE status <> 'sent' ORDER BY id"
            )
        };
        let rows = self.run(sqlx::query(sql).fetch_all(pool)).await?;
        self.run(async { rows_to(&rows, row::summary) }).await
    }

    async fn queued_ids(&self) -> Result<Vec<MessageId>> {
        let pool = self.pool().await?;
        self.run(
            sqlx::query_scalar(
                "SELECT id FROM outbox_messages WHERE status = 'queued' ORDER BY id",
            )
            .fetch_all(pool),
        )
        .await
    }

    async fn retry(&self, id: MessageId, now: SystemTime) -> Result<bool> {
        let pool = self.pool().await?;
        let done = self
            .run(
                // Due now by the database's clock; its age counts from the
                // caller's now, as the worker measures it.
                sqlx::query(concat!(
                    "UPDATE outbox_messages
                        SET status = 'queued', next_attempt_at = ",
                    db_now_ms!(),
                    ", age_from = $1, attempts = 0,
                            recipient_state = (SELECT jsonb_agg(r)::text
                                                 FROM jsonb_array_elements(
                                                        COALESCE(recipient_state, '[]')::jsonb) r
                                                WHERE r->>'status' <> 'dead')
                      WHERE id = $2 AND status IN ('queued', 'dead')"
                ))
                .bind(to_ms(now))
                .bind(id)
                .execute(pool),
            )
            .await?;
        self.announce(done.rows_affected()).await;
        Ok(done.rows_affected() == 1)
    }

    async fn retry_dead(&self, now: SystemTime) -> Result<u64> {
        let pool = self.pool().await?;
        let done = self
            .run(
                sqlx::query(concat!(
                    "UPDATE outbox_messages
                        SET status = 'queued', next_attempt_at = ",
                    db_now_ms!(),
                    ", age_from = $1, attempts = 0,
                            recipient_state = (SELECT jsonb_agg(r)::text
                                                 FROM jsonb_array_elements(
                                                        COALESCE(recipient_state, '[]')::jsonb) r
                                                WHERE r->>'status' <> 'dead')
                      WHERE status = 'dead'"
                ))
                .bind(to_ms(now))
                .execute(pool),
            )
            .await?;
        self.announce(done.rows_affected()).await;
        Ok(done.rows_affected())
    }

    async fn delete(&self, id: MessageId) -> Result<bool> {
        let pool = self.pool().await?;
        let done = self
            .run(
                sqlx::query("DELETE FROM outbox_messages WHERE id = $1 AND status <> 'sending'")
                    .bind(id)
                    .execute(pool),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn stats(&self) -> Result<Stats> {
        let pool = self.pool().await?;
        let rows = self
            .run(
                sqlx::query(
                    "SELECT status AS label, COUNT(*) AS n FROM outbox_messages GROUP BY status
                     UNION ALL
                     SELECT 'oldest', MIN(created_at) FROM outbox_messages
                      WHERE status IN ('queued', 'sending')
                     UNION ALL
                     SELECT 'recipients:' || COALESCE(s, ''), SUM(n)::BIGINT FROM (
                        SELECT status AS s,
                               jsonb_array_length(recipients::jsonb)
                                 - (SELECT COUNT(*)
                                      FROM jsonb_array_elements(
                                             COALESCE(recipient_state, '[]')::jsonb) r
                                     WHERE r->>'status' IN ('sent', 'dead')) AS n
                          FROM outbox_messages
                        UNION ALL
                        SELECT r->>'status' AS s, 1 AS n
                          FROM outbox_messages m,
                               jsonb_array_elements(COALESCE(m.recipient_state, '[]')::jsonb) r
                         WHERE r->>'status' IN ('sent', 'dead')
                     ) AS per_recipient GROUP BY s",
                )
                .fetch_all(pool),
            )
            .await?;
        let rows = self.run(async { rows_to(&rows, row::stats_row) }).await?;
        Ok(row::stats(rows))
    }

    async fn purge_sent(&self, before: SystemTime) -> Result<u64> {
        let pool = self.worker_pool().await?;
        let done = self
            .run(
                sqlx::query("DELETE FROM outbox_messages WHERE status = 'sent' AND sent_at < $1")
                    .bind(to_ms(before))
                    .execute(pool),
            )
            .await?;
        Ok(done.rows_affected())
    }

    async fn next_due(&self) -> Result<Option<SystemTime>> {
        let pool = self.pool().await?;
        let next: Option<i64> = self
            .run(
                sqlx::query_scalar(
                    "SELECT MIN(t) FROM (
                        SELECT MIN(next_attempt_at) AS t FROM outbox_messages
                         WHERE status = 'queued'
                        UNION ALL
                        SELECT MIN(lease_until) AS t FROM outbox_messages
                         WHERE status = 'sending') AS due",
                )
                .fetch_one(pool),
            )
            .await?;
        Ok(next.map(from_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::ConfigError;

    #[test]
    fn secrets_are_found_in_every_form() {
        let s = url_secrets("postgres://mg:p%40ss%20w@db.example.com:5432/mail?password=q2");
        assert!(s.contains(&"p%40ss%20w".to_owned()), "{s:?}");
        assert!(s.contains(&"p@ss w".to_owned()), "{s:?}");
        assert!(s.contains(&"q2".to_owned()), "{s:?}");
        assert_eq!(
            scrub("user mg:p@ss w failed, p%40ss%20w", &s),
            "user mg:*** failed, ***"
        );
        assert!(url_secrets("postgres://mg@db/mail").is_empty());
        // A pasted password with an unencoded `#`: the URL does not parse,
        // the password is found all the same.
        let s = url_secrets("postgres://mg:ab#cd@db/mail");
        assert!(s.contains(&"ab#cd".to_owned()), "{s:?}");
        assert_eq!(scrub("auth ab#cd refused", &s), "auth *** refused");
    }

    #[test]
    fn open_is_lazy_and_shows_no_password() {
        let store = PgOutbox::open("postgres://mg:hunter2@127.0.0.1:1/mail").unwrap();
        assert_eq!(store.describe(), "postgres postgres://mg@127.0.0.1:1/mail");
        assert!(!format!("{store:?}").contains("hunter2"));
    }

    #[test]
    fn a_malformed_url_is_a_configuration_error_without_password() {
        let err = PgOutbox::open("postgres://mg:hunter2@db.example.com:notaport/mail").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("mailgate.outbox.url"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            matches!(err, Error::Config(ConfigError::Invalid { .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_named_at_once() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let store =
            PgOutbox::open(&format!("postgres://mg:hunter2@127.0.0.1:{port}/mail")).unwrap();
        let started = std::time::Instant::now();
        let err = store.stats().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{err}");
        assert_eq!(err.exit_code(), 74);
        let text = err.to_string();
        assert!(text.contains("refused"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
