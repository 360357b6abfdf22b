//! The store contract: [`OutboxStore`], what every outbox store does, and
//! [`WorkWatch`], how one announces work other processes stored.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Claimed, Completion, MessageId, NewMessage, Presence, QueuedMessage, Stats, Status};
use crate::error::Result;

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
    /// The messages' sizes add up to at most [`CLAIM_MAX_BYTES`](super::CLAIM_MAX_BYTES) (the
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
