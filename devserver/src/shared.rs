//! Helpers shared by the SMTP server and the token endpoint.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: the servers' state stays usable after a
/// panicking test thread held a lock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A configured fault with its firing budget.
#[derive(Debug)]
pub(crate) struct FaultSlot<F> {
    pub fault: F,
    times: Option<u64>,
    fired: u64,
}

impl<F> FaultSlot<F> {
    /// A slot for `fault` that fires at most `times` times (no limit for
    /// `None`).
    pub fn new(fault: F, times: Option<u64>) -> Self {
        Self {
            fault,
            times,
            fired: 0,
        }
    }

    /// Consumes one firing if the fault still has any.
    pub fn fire(&mut self) -> bool {
        match self.times {
            Some(n) if self.fired >= n => false,
            _ => {
                self.fired += 1;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_slot_budget() {
        let mut limited = FaultSlot::new((), Some(2));
        assert!(limited.fire());
        assert!(limited.fire());
        assert!(!limited.fire());
        assert!(!limited.fire());
        let mut unlimited = FaultSlot::new((), None);
        assert!((0..100).all(|_| unlimited.fire()));
        let mut never = FaultSlot::new((), Some(0));
        assert!(!never.fire());
    }

    #[test]
    fn lock_survives_poisoning() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = std::sync::Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let _guard = m2.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
