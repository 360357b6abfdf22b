//! The relay-wide bound on memory held for message data: a semaphore of
//! KiB. A session takes a [`Grant`] before it answers `354` and grows it
//! as the data grows; the grant goes back when the message is stored or
//! refused, and when the session ends however it ends (the permits are
//! released on drop, so a timeout or a dropped future frees them too).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes per permit.
const UNIT: usize = 1024;

/// The memory all sessions together may hold for message data.
#[derive(Debug)]
pub(crate) struct DataBudget {
    permits: Arc<Semaphore>,
    /// All permits: a request for more can never be granted.
    total: usize,
}

/// Memory a session holds for one message's data.
#[derive(Debug)]
pub(crate) struct Grant {
    permits: Arc<Semaphore>,
    total: usize,
    held: Option<OwnedSemaphorePermit>,
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

impl DataBudget {
    /// A budget of `bytes` (rounded up to whole KiB).
    pub(crate) fn new(bytes: usize) -> Arc<DataBudget> {
        let total = units(bytes).min(Semaphore::MAX_PERMITS);
        Arc::new(DataBudget {
            permits: Arc::new(Semaphore::new(total)),
            total,
        })
    }

    /// An empty grant, to [`grow`](Grant::grow).
    pub(crate) fn empty(&self) -> Grant {
        Grant {
            permits: Arc::clone(&self.permits),
            total: self.total,
            held: None,
        }
    }
}

impl Grant {
    /// The bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, |p| p.num_permits().saturating_mul(UNIT))
    }

    /// Grows the grant to at least `bytes`, waiting at most `wait` for
    /// other sessions to give memory back; `false` (and nothing more held)
    /// when the budget has no room for it in that time, at once when it
    /// could never have.
    pub(crate) async fn grow(&mut self, bytes: usize, wait: Duration) -> bool {
        let held = self.held.as_ref().map_or(0, |p| p.num_permits());
        let wanted = units(bytes);
        if wanted <= held {
            return true;
        }
        if wanted > self.total {
            return false;
        }
        // At most u32::MAX permits per call; `total` keeps it far below.
        let Ok(more) = u32::try_from(wanted - held) else {
            return false;
        };
        let permits = Arc::clone(&self.permits);
        let acquired = match permits.clone().try_acquire_many_owned(more) {
            Ok(p) => Some(p),
            Err(_) if wait.is_zero() => None,
            Err(_) => tokio::time::timeout(wait, permits.acquire_many_owned(more))
                .await
                .ok()
                .and_then(Result::ok),
        };
        match (acquired, &mut self.held) {
            (None, _) => false,
            (Some(new), Some(held)) => {
                held.merge(new);
                true
            }
            (Some(new), slot @ None) => {
                *slot = Some(new);
                true
            }
        }
    }

    /// Gives everything back.
    pub(crate) fn release(&mut self) {
        self.held = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grants_grow_within_the_budget_and_go_back_on_drop() {
        let budget = DataBudget::new(10 * 1024);
        let mut a = budget.empty();
        assert!(a.grow(4000, Duration::ZERO).await);
        assert_eq!(a.bytes(), 4096);
        assert!(a.grow(6 * 1024, Duration::ZERO).await);
        assert_eq!(a.bytes(), 6 * 1024);
        let mut b = budget.empty();
        assert!(!b.grow(5 * 1024, Duration::from_millis(20)).await);
        assert_eq!(b.bytes(), 0);
        assert!(!b.grow(11 * 1024, Duration::from_secs(60)).await, "never");
        // Waits for the room another grant gives back.
        let waiting = tokio::spawn(async move {
            let ok = b.grow(5 * 1024, Duration::from_secs(10)).await;
            (ok, b.bytes())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        assert_eq!(waiting.await.unwrap(), (true, 5 * 1024));
        assert_eq!(budget.permits.available_permits(), 10);
    }
}
