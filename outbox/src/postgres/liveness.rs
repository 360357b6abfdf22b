//! Which workers of a PostgreSQL outbox are alive: each keeps a row in
//! `mailgate_workers` fresh (`last_seen`, the database's `now()`, so that
//! the clocks of the workers' machines do not matter) from a task that
//! beats every few seconds. A worker unheard for its own timeout
//! (`mailgate.outbox.workerTimeoutSeconds`, kept in its row) is dead: the
//! next worker about to claim deletes its row and ends the leases of its
//! `sending` messages, which it then claims. A lease owner without a row
//! (an older mailgate) is never taken for dead: its messages wait for
//! their lease.
//!
//! A worker that was taken for dead (its beats failed, its row was
//! deleted) learns it at its next beat and starts no further message of
//! the batch it held: only the message in hand on each connection can go
//! out twice.

use std::time::{Duration, Instant, SystemTime};

use mailgate_core::Result;
use mailgate_core::outbox::{Heartbeat, Presence};
use sqlx::postgres::PgPool;

use super::PgOutbox;

/// Migration 3: the workers' heartbeats.
pub(super) const WORKERS_TABLE: &str = "CREATE TABLE mailgate_workers (
        id TEXT PRIMARY KEY,
        last_seen TIMESTAMPTZ NOT NULL,
        timeout_ms BIGINT NOT NULL
    );";

/// One beat: the row made fresh, or made again; whether it had to be made
/// (gone: the others took the worker for dead).
async fn beat(
    pool: &PgPool,
    worker: &str,
    timeout: Duration,
) -> std::result::Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO mailgate_workers (id, last_seen, timeout_ms) VALUES ($1, now(), $2)
         ON CONFLICT (id) DO UPDATE SET last_seen = now(), timeout_ms = EXCLUDED.timeout_ms
         RETURNING (xmax = 0)",
    )
    .bind(worker)
    .bind(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX))
    .fetch_one(pool)
    .await
}

/// A request to stop beating, answered once the row is deleted.
type Bye = tokio::sync::oneshot::Sender<()>;

impl PgOutbox {
    /// [`mailgate_core::outbox::OutboxStore::announce_worker`]: the first
    /// beat, then a task that beats until the presence ends or is dropped,
    /// and then deletes the row (beats and the delete in one task: no beat
    /// can bring the row back).
    pub(super) async fn start_heartbeat(
        &self,
        worker: &str,
        timeout: Duration,
    ) -> Result<Option<Presence>> {
        let pool = self.worker_pool().await?.clone();
        let sent = Instant::now();
        self.run(beat(&pool, worker, timeout)).await?;
        let heartbeat = Heartbeat::started(timeout, sent);
        let (bye_tx, mut bye_rx) = tokio::sync::mpsc::channel::<Bye>(1);
        {
            let (worker, heartbeat) = (worker.to_owned(), heartbeat.clone());
            let (shown, secrets) = (self.shown.clone(), self.secrets.clone());
            tokio::spawn(async move {
                loop {
                    let bye = tokio::select! {
                        () = tokio::time::sleep(heartbeat.interval()) => None,
                        // `None` too when the presence was dropped.
                        bye = bye_rx.recv() => Some(bye),
                    };
                    if let Some(bye) = bye {
                        let gone = sqlx::query("DELETE FROM mailgate_workers WHERE id = $1")
                            .bind(&worker)
                            .execute(&pool);
                        let _ = tokio::time::timeout(timeout, gone).await;
                        if let Some(reply) = bye {
                            let _ = reply.send(());
                        }
                        return;
                    }
                    let sent = Instant::now();
                    match tokio::time::timeout(timeout, beat(&pool, &worker, timeout)).await {
                        Ok(Ok(lost)) => {
                            if lost {
                                tracing::warn!(
                                    "outbox postgres {shown}: worker {worker} was unheard for {} s and taken for dead; the others took over its messages",
                                    timeout.as_secs()
                                );
                            }
                            heartbeat.beat(sent, lost);
                        }
                        Ok(Err(e)) => tracing::warn!(
                            "outbox postgres {shown}: heartbeat of worker {worker}: {}",
                            super::scrub(&e.to_string(), &secrets)
                        ),
                        Err(_) => tracing::warn!(
                            "outbox postgres {shown}: heartbeat of worker {worker}: no answer within {} s",
                            timeout.as_secs()
                        ),
                    }
                }
            });
        }
        let bye = bye_tx.clone();
        Ok(Some(heartbeat.presence(bye_tx).with_end(move || {
            let bye = bye.clone();
            async move {
                let (reply, done) = tokio::sync::oneshot::channel();
                if bye.send(reply).await.is_ok() {
                    let _ = tokio::time::timeout(timeout, done).await;
                }
            }
        })))
    }

    /// [`mailgate_core::outbox::OutboxStore::reclaim_dead`]: the rows of
    /// the workers unheard for their timeout are deleted and the leases of
    /// their messages end now (the database's now), in one statement.
    pub(super) async fn reclaim_unheard(&self, worker: &str, now: SystemTime) -> Result<u64> {
        let _ = now;
        let pool = self.worker_pool().await?;
        let done = self
            .run(
                sqlx::query(
                    "WITH dead AS (
                        DELETE FROM mailgate_workers
                         WHERE id <> $1
                           AND last_seen < now() - make_interval(secs => timeout_ms::float8 / 1000)
                        RETURNING id)
                     UPDATE outbox_messages
                        SET lease_until = LEAST(lease_until,
                                                floor(extract(epoch FROM now()) * 1000)::bigint)
                      WHERE status = 'sending' AND lease_owner IN (SELECT id FROM dead)",
                )
                .bind(worker)
                .execute(pool),
            )
            .await?;
        Ok(done.rows_affected())
    }

    /// [`mailgate_core::outbox::OutboxStore::live_workers`]: the rows heard
    /// from within their timeout.
    pub(super) async fn count_heard(&self) -> Result<u64> {
        let pool = self.pool().await?;
        let n: i64 = self
            .run(
                sqlx::query_scalar(
                    "SELECT count(*) FROM mailgate_workers
                      WHERE last_seen >= now() - make_interval(secs => timeout_ms::float8 / 1000)",
                )
                .fetch_one(pool),
            )
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
