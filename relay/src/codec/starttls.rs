//! STARTTLS (RFC 3207): offered, after EHLO, outside a transaction; after
//! the `220` nothing received before the handshake is acted on (the
//! STARTTLS command injection, section 6), and the session starts over.

use super::reply::Answer;
use super::session::{Codec, Event, Mode};

impl Codec {
    /// STARTTLS: checks it may start.
    pub(super) fn starttls(&mut self) -> Event {
        let refusal = if !self.config.extensions.starttls {
            Answer::StartTlsUnavailable
        } else if self.tls {
            Answer::TlsActive
        } else if self.greeting.is_none() {
            Answer::StartTlsNeedsHelo
        } else if self.envelope.is_some() {
            Answer::StartTlsInTransaction
        } else {
            return Event::StartTls;
        };
        self.refuse(refusal)
    }

    /// The `220` was written: drops the input received so far (returns
    /// its size), and forgets the greeting, the authentication and the
    /// transaction (RFC 3207 4.2). TLS counts as active from here; the
    /// server does the handshake next.
    pub fn start_tls(&mut self) -> usize {
        let dropped = self.input.clear();
        self.tls = true;
        self.greeting = None;
        self.authenticated = false;
        self.envelope = None;
        self.mode = Mode::Command;
        dropped
    }
}
