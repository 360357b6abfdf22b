//! The embedded outbox: one SQLite file.
//!
//! Durability: WAL journal with `synchronous=FULL` for enqueues and the
//! operator's changes, so they are in the WAL and fsynced before they
//! return: an acknowledged message survives a crash and a power loss.
//! Claims and completions go through connections with `synchronous=NORMAL`:
//! they survive the process (the WAL is written before the call returns)
//! and are fsynced at the next checkpoint; one lost with the machine makes
//! that message go out again, which at-least-once allows, and spares the
//! worker an fsync per message. The file is created with mode 0600 (the
//! WAL and shared-memory files SQLite creates take the same mode). Several
//! processes on one machine may share it (WAL: readers never wait; writers
//! wait up to 30 s for each other).

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mailgate_core::outbox::{
    Claimed, Completion, MessageId, NewMessage, OutboxStore, OutboxUrl, QueuedMessage, Stats,
    Status,
};
use mailgate_core::{Error, Result, Settings};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::OnceCell;

use crate::migrate::{Dialect, MigrateError};
use crate::row::{self, encode_dsn, from_ms, summary_columns, to_ms};

mod liveness;

/// Opens `sqlite:PATH` ([`crate::SQLITE`]): the file, relative to the
/// config folder.
pub(crate) fn open_url(url: &OutboxUrl, settings: &Settings) -> Result<Arc<dyn OutboxStore>> {
    let path = url.rest().trim_start_matches("//");
    if path.is_empty() || path.contains('?') {
        return Err(url
            .invalid("`sqlite:PATH` (a file, relative to the config folder)")
            .into());
    }
    Ok(Arc::new(
        SqliteOutbox::open(&settings.base_dir().join(path))?
            .keep_sent_bodies(settings.outbox().keep_sent_bodies),
    ))
}

/// Versioned schema: each entry moves the database one version up (see
/// [`crate::migrate`]).
const MIGRATIONS: &[&str] = &[
    // 1: the messages.
    "CREATE TABLE outbox_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'dead')),
        created_at INTEGER NOT NULL,
        age_from INTEGER NOT NULL,
        next_attempt_at INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        lease_owner TEXT,
        lease_until INTEGER,
        sent_at INTEGER,
        mail_from TEXT NOT NULL,
        recipients TEXT NOT NULL,
        subject TEXT NOT NULL,
        message_id TEXT,
        size INTEGER NOT NULL,
        message BLOB NOT NULL
    );
    CREATE INDEX outbox_due ON outbox_messages (status, next_attempt_at);
    CREATE INDEX outbox_lease ON outbox_messages (status, lease_until);",
    // 2: the recipients that are done while others are not (JSON, see
    // `encode_state`); NULL while all share the message's status.
    "ALTER TABLE outbox_messages ADD COLUMN recipient_state TEXT;",
    // 3: what the sender asked of DSNs (JSON, see `encode_dsn`), if it asked.
    "ALTER TABLE outbox_messages ADD COLUMN dsn_request TEXT;",
    // 4: 1 once a sent message's body was dropped (`message` holds its
    // header section, `size` stays the whole message's).
    "ALTER TABLE outbox_messages ADD COLUMN body_dropped INTEGER NOT NULL DEFAULT 0;",
];

/// The assignments that drop a message's body, keeping its header section
/// up to and including the blank line (a message without one is all
/// header and is kept). Every stored message has header fields (mailgate
/// adds Date, Message-ID, MIME-Version), so its first CRLF CRLF ends them.
macro_rules! drop_body {
    () => {
        "message = CASE WHEN instr(message, X'0D0A0D0A') > 0
                        THEN substr(message, 1, instr(message, X'0D0A0D0A') + 3)
                        ELSE message END,
         body_dropped = CASE WHEN instr(message, X'0D0A0D0A') > 0
                                  AND instr(message, X'0D0A0D0A') + 3 < length(message)
                             THEN 1 ELSE body_dropped END"
    };
}

/// How SQLite spells what [`crate::migrate`] needs.
const DIALECT: Dialect = Dialect {
    // IMMEDIATE: two processes starting at once take turns.
    begin: "BEGIN IMMEDIATE",
    lock: None,
    has_schema_table: "SELECT COUNT(*) FROM sqlite_master \
                       WHERE type = 'table' AND name = 'mailgate_schema'",
};

/// An outbox in one SQLite file.
pub struct SqliteOutbox {
    options: SqliteConnectOptions,
    path: PathBuf,
    /// Sent messages keep their body (`mailgate.outbox.keepSentBodies`).
    keep_sent_bodies: bool,
    /// Made on first use (sqlx needs a running tokio runtime for it), with
    /// the file and its schema: the durable pool, and the workers' pool.
    pools: OnceCell<Pools>,
}

struct Pools {
    /// `synchronous=FULL`: enqueues and the operator's changes.
    durable: SqlitePool,
    /// `synchronous=NORMAL`: claims and completions.
    worker: SqlitePool,
}

impl std::fmt::Debug for SqliteOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteOutbox")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteOutbox {
    /// The outbox in `path`. The file is created (mode 0600) and its schema
    /// on first use; a file that is not a SQLite database is then refused.
    pub fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| outbox_error(path, format!("bad options: {e}")))?
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        Ok(Self {
            options,
            path: path.to_owned(),
            keep_sent_bodies: false,
            pools: OnceCell::new(),
        })
    }

    /// With `true`, sent messages keep their body until they are purged
    /// (`mailgate.outbox.keepSentBodies`); by default only their header
    /// section is kept once they are sent, and the space of the body is
    /// reused by the next messages.
    pub fn keep_sent_bodies(mut self, keep: bool) -> Self {
        self.keep_sent_bodies = keep;
        self
    }

    /// Whether the file exists yet (it is created on first use).
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn pools(&self) -> Result<&Pools> {
        self.pools
            .get_or_try_init(|| async {
                create_file(&self.path)?;
                // Creation, the switch to WAL and the migration run under
                // one file lock: two processes starting on a new outbox at
                // once would otherwise see "database is locked" at once
                // (SQLite does not wait on those locks).
                let _lock = self.setup_lock().await?;
                let pool = |options: SqliteConnectOptions| {
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .acquire_timeout(Duration::from_secs(60))
                        .connect_lazy_with(options)
                };
                let durable = pool(self.options.clone());
                self.migrate(&durable).await?;
                let worker = pool(self.options.clone().synchronous(SqliteSynchronous::Normal));
                Ok(Pools { durable, worker })
            })
            .await
    }

    /// Holds `<file>.lock` exclusively (waiting up to 30 s for another
    /// process setting the outbox up). A lock file beside the database, not
    /// the database itself: closing another descriptor of the database
    /// would drop SQLite's own POSIX locks.
    /// `None` when the lock file cannot be made (a read-only folder): then
    /// nothing can be created or migrated either, and opening the database
    /// says why.
    async fn setup_lock(&self) -> Result<Option<std::fs::File>> {
        use std::io::ErrorKind;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        // Never a symlink planted to point elsewhere; read access is
        // enough for a lock.
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
        };
        let opened = match open() {
            Err(e) if e.kind() == ErrorKind::NotFound => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .or_else(|e| {
                    if e.kind() == ErrorKind::AlreadyExists {
                        open()
                    } else {
                        Err(e)
                    }
                }),
            other => other,
        };
        let file = match opened {
            Ok(file) => file,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(outbox_error(
                    &self.path,
                    format!(
                        "cannot open its lock file {}: {e}; check that its folder is writable",
                        path.display()
                    ),
                ));
            }
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(outbox_error(
                        &self.path,
                        "another process held it for 30 s while setting it up; try again".into(),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(outbox_error(
                        &self.path,
                        format!("cannot lock {}: {e}", path.display()),
                    ));
                }
            }
        }
    }

    /// The pool whose commits are fsynced before they return.
    async fn pool(&self) -> Result<&SqlitePool> {
        Ok(&self.pools().await?.durable)
    }

    /// The pool for claims and completions.
    async fn worker_pool(&self) -> Result<&SqlitePool> {
        Ok(&self.pools().await?.worker)
    }

    async fn migrate(&self, pool: &SqlitePool) -> Result<()> {
        let mut conn = pool.acquire().await.map_err(|e| self.err(e))?;
        match crate::migrate::migrate::<sqlx::Sqlite>(&mut conn, &DIALECT, MIGRATIONS).await {
            Ok(()) => Ok(()),
            Err(MigrateError::Sql(e)) => Err(self.err(e)),
            Err(newer) => Err(outbox_error(&self.path, newer.to_string())),
        }
    }

    fn err(&self, e: sqlx::Error) -> Error {
        outbox_error(&self.path, describe(&e))
    }
}

/// Creates the file with mode 0600 when it is missing (SQLite would use the
/// umask), refusing anything but a regular file.
fn create_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => return Ok(()),
        Ok(_) => {
            return Err(outbox_error(
                path,
                "it is not a regular file; point `mailgate.outbox.url` at a file".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(outbox_error(path, format!("cannot read it: {e}"))),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(outbox_error(
                    path,
                    format!("cannot create it: {e}; check that its folder exists and is writable"),
                ))
            }
        })
}

fn outbox_error(path: &Path, reason: String) -> Error {
    Error::Outbox {
        location: format!("sqlite {}", path.display()),
        reason,
    }
}

/// What went wrong, and what to do, from SQLite's result code.
fn describe(e: &sqlx::Error) -> String {
    if let sqlx::Error::Database(db) = e {
        let code: i64 = db.code().and_then(|c| c.parse().ok()).unwrap_or(-1);
        return describe_code(code, db.message());
    }
    match e {
        sqlx::Error::PoolTimedOut => {
            "no connection to the database within 60 s; another process holds it".into()
        }
        other => other.to_string(),
    }
}

/// SQLite's message for result `code`, with what to do about it.
fn describe_code(code: i64, message: &str) -> String {
    let hint = match code & 0xff {
        13 => "the disk is full; free space and try again (nothing was written)",
        8 => {
            "the database is read-only for this process; check the file's and its folder's owner and permissions"
        }
        26 => {
            "the file is not a SQLite database (or is damaged); move it aside and a new outbox is created, or point `mailgate.outbox.url` elsewhere"
        }
        11 => {
            "the database is damaged; move it aside (keep it for recovery) and a new outbox is created"
        }
        5 | 6 => "the database stayed locked by another process for 30 s; try again",
        14 => "cannot open the file; check that its folder exists and is writable",
        10 => {
            "writing failed; check that the disk has room (and the file size limit) and is healthy; nothing was written"
        }
        _ => "",
    };
    if hint.is_empty() {
        message.to_owned()
    } else {
        format!("{message}: {hint}")
    }
}

/// A connection of the durable pool in a transaction of the store's own
/// (`BEGIN IMMEDIATE` ... `COMMIT` as statements, not sqlx's
/// `Transaction`: when SQLite rolls a transaction back by itself after a
/// write error, sqlx's count of open transactions would stay up and that
/// connection refuse every later `BEGIN`). Dropped before its commit (an
/// error, a caller that gave up), the connection is closed, which rolls
/// the transaction back, instead of going back to the pool.
struct Writing {
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    committed: bool,
}

impl Drop for Writing {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}

/// Messages up to this size are bound to the INSERT as they are (SQLite
/// copies them, which costs nothing at this size); bigger ones are written
/// into a zero blob piece by piece, so that the store holds no copy.
const BOUND_AT_ONCE: usize = 256 * 1024;

mod blob;

#[async_trait]
impl OutboxStore for SqliteOutbox {
    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    fn created(&self) -> bool {
        self.exists()
    }

    fn local_file(&self) -> Option<&Path> {
        Some(&self.path)
    }

    async fn announce_worker(
        &self,
        worker: &str,
        _timeout: Duration,
    ) -> Result<Option<mailgate_core::outbox::Presence>> {
        self.lock_worker(worker)
    }

    async fn reclaim_dead(&self, worker: &str, now: SystemTime) -> Result<u64> {
        self.reclaim_unlocked(worker, now).await
    }

    async fn live_workers(&self) -> Result<u64> {
        self.count_locked()
    }

    async fn enqueue(&self, message: NewMessage) -> Result<MessageId> {
        let pool = self.pool().await?;
        let now = to_ms(SystemTime::now());
        let recipients = serde_json::to_string(&message.to).unwrap_or_else(|_| "[]".into());
        let size = i64::try_from(message.bytes.len()).unwrap_or(i64::MAX);
        if message.bytes.len() <= BOUND_AT_ONCE {
            // One statement, one round trip to the connection's thread: the
            // usual message, for which a copy or two cost nothing.
            return sqlx::query_scalar(
                "INSERT INTO outbox_messages
                   (status, created_at, age_from, next_attempt_at, attempts, mail_from,
                    recipients, subject, message_id, size, message, dsn_request)
                 VALUES ('queued', ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)
                 RETURNING id",
            )
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(&message.from)
            .bind(recipients)
            .bind(&message.subject)
            .bind(&message.message_id)
            .bind(size)
            .bind(&message.bytes)
            .bind(encode_dsn(message.dsn.as_ref()))
            // All rows, not `fetch_one`: the commit of a statement outside
            // a transaction happens when it is stepped to its end, and an
            // error there (SQLITE_FULL while the WAL is written) would
            // otherwise be lost, the id returned for a row never stored.
            .fetch_all(pool)
            .await
            .map_err(|e| self.err(e))?
            .into_iter()
            .next()
            .ok_or_else(|| outbox_error(&self.path, "the insert returned no id".into()));
        }
        // A big one: the row with a zero blob of the message's size, then the bytes
        // written into it piece by piece (incremental blob I/O), in one
        // transaction: a bound blob would be copied by SQLite and again
        // into the record, three times the message in memory at once.
        // IMMEDIATE: the write lock is taken (or waited for) at once.
        let mut writing = Writing {
            conn: pool.acquire().await.map_err(|e| self.err(e))?,
            committed: false,
        };
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *writing.conn)
            .await
            .map_err(|e| self.err(e))?;
        let id: MessageId = sqlx::query_scalar(
            "INSERT INTO outbox_messages
               (status, created_at, age_from, next_attempt_at, attempts, mail_from, recipients,
                subject, message_id, size, message, dsn_request)
             VALUES ('queued', ?, ?, ?, 0, ?, ?, ?, ?, ?, zeroblob(?), ?)
             RETURNING id",
        )
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(&message.from)
        .bind(recipients)
        .bind(&message.subject)
        .bind(&message.message_id)
        .bind(size)
        .bind(size)
        .bind(encode_dsn(message.dsn.as_ref()))
        .fetch_all(&mut *writing.conn)
        .await
        .map_err(|e| self.err(e))?
        .into_iter()
        .next()
        .ok_or_else(|| outbox_error(&self.path, "the insert returned no id".into()))?;
        if !message.bytes.is_empty() {
            let mut handle = writing.conn.lock_handle().await.map_err(|e| self.err(e))?;
            blob::write(handle.as_raw_handle(), id, &message.bytes)
                .map_err(|(code, text)| outbox_error(&self.path, describe_code(code, &text)))?;
        }
        drop(message);
        // The commit is where a full disk shows (SQLITE_FULL while the WAL
        // is written): an error here means nothing was stored.
        sqlx::query("COMMIT")
            .execute(&mut *writing.conn)
            .await
            .map_err(|e| self.err(e))?;
        writing.committed = true;
        Ok(id)
    }

    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        limit: usize,
        now: SystemTime,
    ) -> Result<Vec<Claimed>> {
        let pool = self.worker_pool().await?;
        let now_ms = to_ms(now);
        let rows = sqlx::query(concat!(
            "UPDATE outbox_messages
                SET status = 'sending', lease_owner = ?, lease_until = ?, attempts = attempts + 1
              WHERE id IN (SELECT id FROM (
                             SELECT id, size, SUM(size) OVER (ORDER BY id) AS running,
                                    ROW_NUMBER() OVER (ORDER BY id) AS n
                               FROM outbox_messages
                              WHERE (status = 'queued' AND next_attempt_at <= ?)
                                 OR (status = 'sending' AND lease_until <= ?)
                              ORDER BY id LIMIT ?)
                            -- The bodies held at once stay bounded.
                            WHERE n = 1 OR running <= ?)
              RETURNING ",
            summary_columns!(),
            ", message"
        ))
        .bind(worker)
        .bind(to_ms(now + lease))
        .bind(now_ms)
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(mailgate_core::outbox::CLAIM_MAX_BYTES)
        .fetch_all(pool)
        .await
        .map_err(|e| self.err(e))?;
        let mut out = rows
            .iter()
            .map(row::claimed)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
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
        let pool = self.worker_pool().await?;
        let rows = sqlx::query(concat!(
            "UPDATE outbox_messages
                SET status = 'sending', lease_owner = ?, lease_until = ?, attempts = attempts + 1
              WHERE id = ? AND status = 'queued'
              RETURNING ",
            summary_columns!(),
            ", message"
        ))
        .bind(worker)
        .bind(to_ms(now + lease))
        .bind(id)
        // All rows (at most one), not `fetch_optional`: see `enqueue`.
        .fetch_all(pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.first()
            .map(row::claimed)
            .transpose()
            .map_err(|e| self.err(e))
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
                    SET status = ?, last_error = COALESCE(?, last_error), next_attempt_at = ?,
                        sent_at = ?, recipient_state = COALESCE(?, recipient_state),
                        lease_owner = NULL, lease_until = NULL, ",
                drop_body!(),
                " WHERE id = ? AND status = 'sending' AND lease_owner = ?"
            )
        } else {
            "UPDATE outbox_messages
                SET status = ?, last_error = COALESCE(?, last_error), next_attempt_at = ?,
                    sent_at = ?, recipient_state = COALESCE(?, recipient_state),
                    lease_owner = NULL, lease_until = NULL
              WHERE id = ? AND status = 'sending' AND lease_owner = ?"
        };
        let done = sqlx::query(sql)
            .bind(columns.status.as_str())
            .bind(columns.error)
            .bind(columns.next_attempt)
            .bind(columns.sent_at)
            .bind(columns.finished)
            .bind(id)
            .bind(worker)
            .execute(pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete_sent(
        &self,
        worker: &str,
        ids: &[MessageId],
        now: SystemTime,
    ) -> Result<Vec<MessageId>> {
        let pool = self.worker_pool().await?;
        // One statement for all of them: atomic on its own.
        let sql = if self.keep_sent_bodies {
            "UPDATE outbox_messages
                SET status = 'sent', sent_at = ?, next_attempt_at = NULL,
                    lease_owner = NULL, lease_until = NULL
              WHERE id IN (SELECT value FROM json_each(?))
                AND status = 'sending' AND lease_owner = ?
              RETURNING id"
        } else {
            concat!(
                "UPDATE outbox_messages
                    SET status = 'sent', sent_at = ?, next_attempt_at = NULL,
                        lease_owner = NULL, lease_until = NULL, ",
                drop_body!(),
                " WHERE id IN (SELECT value FROM json_each(?))
                    AND status = 'sending' AND lease_owner = ?
                  RETURNING id"
            )
        };
        sqlx::query_scalar(sql)
            .bind(to_ms(now))
            .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
            .bind(worker)
            .fetch_all(pool)
            .await
            .map_err(|e| self.err(e))
    }

    async fn release(&self, ids: &[MessageId], worker: &str) -> Result<u64> {
        let pool = self.worker_pool().await?;
        let done = sqlx::query(
            "UPDATE outbox_messages
                SET status = 'queued', lease_owner = NULL, lease_until = NULL,
                    attempts = MAX(attempts - 1, 0)
              WHERE id IN (SELECT value FROM json_each(?))
                AND status = 'sending' AND lease_owner = ?",
        )
        .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
        .bind(worker)
        .execute(pool)
        .await
        .map_err(|e| self.err(e))?;
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
        let rows = sqlx::query(sql)
            .fetch_all(pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(row::summary)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))
    }

    async fn queued_ids(&self) -> Result<Vec<MessageId>> {
        let pool = self.pool().await?;
        sqlx::query_scalar("SELECT id FROM outbox_messages WHERE status = 'queued' ORDER BY id")
            .fetch_all(pool)
            .await
            .map_err(|e| self.err(e))
    }

    async fn retry(&self, id: MessageId, now: SystemTime) -> Result<bool> {
        let pool = self.pool().await?;
        let now = to_ms(now);
        let done = sqlx::query(
            "UPDATE outbox_messages
                SET status = 'queued', next_attempt_at = ?, age_from = ?, attempts = 0,
                    recipient_state = (SELECT json_group_array(json(value))
                                         FROM json_each(outbox_messages.recipient_state)
                                        WHERE json_extract(value, '$.status') <> 'dead')
              WHERE id = ? AND status IN ('queued', 'dead')",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn retry_dead(&self, now: SystemTime) -> Result<u64> {
        let pool = self.pool().await?;
        let now = to_ms(now);
        let done = sqlx::query(
            "UPDATE outbox_messages
                SET status = 'queued', next_attempt_at = ?, age_from = ?, attempts = 0,
                    recipient_state = (SELECT json_group_array(json(value))
                                         FROM json_each(outbox_messages.recipient_state)
                                        WHERE json_extract(value, '$.status') <> 'dead')
              WHERE status = 'dead'",
        )
        .bind(now)
        .bind(now)
        .execute(pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected())
    }

    async fn delete(&self, id: MessageId) -> Result<bool> {
        let pool = self.pool().await?;
        let done = sqlx::query("DELETE FROM outbox_messages WHERE id = ? AND status <> 'sending'")
            .bind(id)
            .execute(pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn stats(&self) -> Result<Stats> {
        let pool = self.pool().await?;
        // One statement, one snapshot; labelled rows as `row::stats` reads
        // them. The recipients without a finished record (`sent` or
        // `dead`) share their message's status.
        let rows = sqlx::query(
            "SELECT status AS label, COUNT(*) AS n FROM outbox_messages GROUP BY status
             UNION ALL
             SELECT 'oldest', MIN(created_at) FROM outbox_messages
              WHERE status IN ('queued', 'sending')
             UNION ALL
             SELECT 'recipients:' || COALESCE(s, ''), SUM(n) FROM (
                SELECT status AS s,
                       json_array_length(recipients)
                         - (SELECT COUNT(*) FROM json_each(recipient_state) r
                             WHERE json_extract(r.value, '$.status') IN ('sent', 'dead')) AS n
                  FROM outbox_messages
                UNION ALL
                SELECT json_extract(r.value, '$.status') AS s, 1 AS n
                  FROM outbox_messages m, json_each(m.recipient_state) r
                 WHERE json_extract(r.value, '$.status') IN ('sent', 'dead'))
             GROUP BY s",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| self.err(e))?;
        let rows = rows
            .iter()
            .map(row::stats_row)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(row::stats(rows))
    }

    async fn purge_sent(&self, before: SystemTime) -> Result<u64> {
        let pool = self.worker_pool().await?;
        let done = sqlx::query("DELETE FROM outbox_messages WHERE status = 'sent' AND sent_at < ?")
            .bind(to_ms(before))
            .execute(pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected())
    }

    async fn next_due(&self) -> Result<Option<SystemTime>> {
        let pool = self.pool().await?;
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(t) FROM (
                SELECT MIN(next_attempt_at) AS t FROM outbox_messages WHERE status = 'queued'
                UNION ALL
                SELECT MIN(lease_until) AS t FROM outbox_messages WHERE status = 'sending')",
        )
        .fetch_one(pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(next.map(from_ms))
    }
}
