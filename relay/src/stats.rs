//! Counters of a running relay.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A snapshot of a relay's counters, since it was bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// TCP connections accepted (allowed or not).
    pub connections: u64,
    /// Connections refused at once because the client's address is not in
    /// the allow list (`554 5.7.1`).
    pub rejected_clients: u64,
    /// Connections refused at once because `max_connections` sessions were
    /// being served (`421 4.7.0`).
    pub busy: u64,
    /// Sessions being served now.
    pub active_sessions: usize,
    /// Messages the sink stored (answered 250).
    pub accepted: u64,
    /// Messages the sink failed to store, or did not store in time
    /// (answered 451: the client retries).
    pub temp_failed: u64,
    /// Messages answered `452 4.3.1` (at DATA, or at the end of the
    /// data) because the memory budget for message data had no room
    /// (`max_data_memory`); the client retries later.
    pub refused_memory: u64,
    /// Messages refused for good, per reason.
    pub refused: RefusedStats,
    /// Failed AUTH attempts.
    pub auth_failures: u64,
    /// Sessions closed because the client was too slow (idle, DATA or
    /// write timeout).
    pub timeouts: u64,
    /// Sessions closed for too many errors, commands or AUTH failures, or
    /// for speaking another protocol (HTTP).
    pub closed_for_abuse: u64,
    /// STARTTLS commands after which plaintext bytes were already waiting
    /// (and were discarded unread: the STARTTLS command injection).
    pub starttls_injections: u64,
}

/// Messages refused with a permanent error, per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusedStats {
    /// Larger than `max_message_bytes`, by `SIZE=` at MAIL or by the data
    /// received (`552 5.3.4`).
    pub too_big: u64,
    /// A bare LF or CR in the data (`550 5.5.2`, SMTP smuggling).
    pub bare_line_ending: u64,
    /// A data line longer than `max_data_line` (`550 5.6.0`).
    pub line_too_long: u64,
}

/// The live counters behind [`RelayStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    pub rejected_clients: AtomicU64,
    pub busy: AtomicU64,
    pub active_sessions: AtomicUsize,
    pub accepted: AtomicU64,
    pub temp_failed: AtomicU64,
    pub refused_memory: AtomicU64,
    pub refused_too_big: AtomicU64,
    pub refused_bare_line_ending: AtomicU64,
    pub refused_line_too_long: AtomicU64,
    pub auth_failures: AtomicU64,
    pub timeouts: AtomicU64,
    pub closed_for_abuse: AtomicU64,
    pub starttls_injections: AtomicU64,
}

/// Adds one.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> RelayStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RelayStats {
            connections: get(&self.connections),
            rejected_clients: get(&self.rejected_clients),
            busy: get(&self.busy),
            active_sessions: self.active_sessions.load(Ordering::Relaxed),
            accepted: get(&self.accepted),
            temp_failed: get(&self.temp_failed),
            refused_memory: get(&self.refused_memory),
            refused: RefusedStats {
                too_big: get(&self.refused_too_big),
                bare_line_ending: get(&self.refused_bare_line_ending),
                line_too_long: get(&self.refused_line_too_long),
            },
            auth_failures: get(&self.auth_failures),
            timeouts: get(&self.timeouts),
            closed_for_abuse: get(&self.closed_for_abuse),
            starttls_injections: get(&self.starttls_injections),
        }
    }
}
