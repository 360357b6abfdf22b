//! A mailgate outbox store that keeps messages in memory
//! (`mailgate.outbox.url=memory:`), built on `mailgate-core` alone: the
//! template for a store of your own. What it holds is lost with the
//! process, so it suits tests and demos, not mail that must not be lost.
//!
//! ```no_run
//! # fn run() -> mailgate_core::Result<()> {
//! let registry = mailgate_core::Registry::new().with_store(&mailgate_outbox_memory::DESCRIPTOR)?;
//! let mailer = mailgate_core::Mailer::builder()
//!     .registry(registry)
//!     .property("mailgate.outbox.url", "memory:")
//!     .build()?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use mailgate_core::outbox::{
    CLAIM_MAX_BYTES, Claimed, Completion, MessageId, NewMessage, OutboxDescriptor, OutboxStore,
    OutboxUrl, QueuedMessage, Status,
};
use mailgate_core::{Result, Settings, async_trait};

/// The store's registration: `memory:` URLs.
pub static DESCRIPTOR: OutboxDescriptor =
    OutboxDescriptor::new("memory", &["memory"], open, module_path!());

/// Opens `memory:` (nothing may follow the colon): a new, empty outbox.
fn open(url: &OutboxUrl, settings: &Settings) -> Result<Arc<dyn OutboxStore>> {
    if !url.rest().is_empty() {
        return Err(url.invalid("`memory:`, nothing after the colon").into());
    }
    let keep_sent_bodies = settings.outbox().keep_sent_bodies;
    Ok(Arc::new(MemoryOutbox {
        keep_sent_bodies,
        ..MemoryOutbox::default()
    }))
}

/// An outbox in this process's memory, shared by the clones of its `Arc`
/// (`MemoryOutbox::default()`, or `open` from `memory:`).
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    /// Sent messages keep their body (`mailgate.outbox.keepSentBodies`).
    pub keep_sent_bodies: bool,
    /// The last id given: ids are never used twice.
    last_id: AtomicI64,
    /// The messages by id, oldest first.
    rows: Mutex<BTreeMap<MessageId, Row>>,
}

/// A stored message: what a listing shows, its bytes, and while it is
/// `sending` (only then), its worker and when the lease ends.
#[derive(Debug)]
struct Row {
    m: QueuedMessage,
    bytes: Vec<u8>,
    lease: Option<(String, SystemTime)>,
}

impl Row {
    /// When a claim may take it: when its lease ends while it is leased
    /// (`sending`), at its next attempt while it is `queued`; never else.
    fn due(&self) -> Option<SystemTime> {
        let m = &self.m;
        let queued = m.next_attempt.filter(|_| m.status == Status::Queued);
        self.lease.as_ref().map(|(_, until)| *until).or(queued)
    }

    fn leased_to(&self, worker: &str) -> bool {
        matches!(&self.lease, Some((owner, _)) if owner == worker)
    }

    fn lease(&mut self, worker: &str, until: SystemTime) -> Claimed {
        (self.m.status, self.m.attempts) = (Status::Sending, self.m.attempts + 1);
        self.lease = Some((worker.to_owned(), until));
        let (message, bytes) = (self.m.clone(), self.bytes.clone());
        Claimed { message, bytes }
    }
}

impl MemoryOutbox {
    fn rows(&self) -> MutexGuard<'_, BTreeMap<MessageId, Row>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl OutboxStore for MemoryOutbox {
    fn describe(&self) -> String {
        "memory (this process)".into()
    }

    async fn enqueue(&self, new: NewMessage) -> Result<MessageId> {
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (m, bytes) = new.into_queued(id, SystemTime::now());
        let lease = None;
        self.rows().insert(id, Row { m, bytes, lease });
        Ok(id)
    }

    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        limit: usize,
        now: SystemTime,
    ) -> Result<Vec<Claimed>> {
        let (mut rows, mut claimed, mut held) = (self.rows(), Vec::new(), 0);
        let due = |r: &&mut Row| r.due().is_some_and(|t| t <= now);
        for row in rows.values_mut().filter(due) {
            // The bodies held at once stay bounded (the first, whatever its size).
            held += row.bytes.len();
            if claimed.len() == limit || (held as i64 > CLAIM_MAX_BYTES && !claimed.is_empty()) {
                break;
            }
            claimed.push(row.lease(worker, now + lease));
        }
        Ok(claimed)
    }

    async fn claim_one(
        &self,
        id: MessageId,
        worker: &str,
        lease: Duration,
        now: SystemTime,
    ) -> Result<Option<Claimed>> {
        let mut rows = self.rows();
        let queued = rows.get_mut(&id).filter(|r| r.m.status == Status::Queued);
        Ok(queued.map(|row| row.lease(worker, now + lease)))
    }

    async fn complete(
        &self,
        id: MessageId,
        worker: &str,
        completion: Completion,
        now: SystemTime,
    ) -> Result<bool> {
        let mut rows = self.rows();
        let Some(row) = rows.get_mut(&id).filter(|r| r.leased_to(worker)) else {
            return Ok(false); // The lease was lost.
        };
        row.lease = None;
        completion.apply(&mut row.m, now);
        if !self.keep_sent_bodies {
            row.m.drop_sent_body(&mut row.bytes);
        }
        Ok(true)
    }

    async fn release(&self, ids: &[MessageId], worker: &str) -> Result<u64> {
        let mut released = 0;
        for row in self.rows().values_mut() {
            if ids.contains(&row.m.id) && row.leased_to(worker) {
                (row.m.status, row.lease) = (Status::Queued, None);
                row.m.attempts = row.m.attempts.saturating_sub(1);
                released += 1;
            }
        }
        Ok(released)
    }

    async fn list(&self, include_sent: bool) -> Result<Vec<QueuedMessage>> {
        let rows = self.rows();
        let listed = rows.values().map(|r| &r.m);
        let shown = listed.filter(|m| include_sent || m.status != Status::Sent);
        Ok(shown.cloned().collect())
    }

    async fn retry(&self, id: MessageId, now: SystemTime) -> Result<bool> {
        Ok(self.rows().get_mut(&id).is_some_and(|r| r.m.retry(now)))
    }

    async fn delete(&self, id: MessageId) -> Result<bool> {
        let mut rows = self.rows();
        let idle = rows.get(&id).is_some_and(|r| r.m.status != Status::Sending);
        Ok(idle && rows.remove(&id).is_some())
    }

    async fn purge_sent(&self, before: SystemTime) -> Result<u64> {
        let mut rows = self.rows();
        let held = rows.len();
        rows.retain(|_, r| r.m.status != Status::Sent || r.m.sent_at >= Some(before));
        Ok((held - rows.len()) as u64)
    }

    async fn next_due(&self) -> Result<Option<SystemTime>> {
        Ok(self.rows().values().filter_map(Row::due).min())
    }
}
