//! RCPT (RFC 5321 4.1.1.3): inside a transaction, with the DSN parameters
//! when DSN is offered. Which recipients are taken, and how many, is the
//! server's.

use super::command::Path;
use super::params::{self, RcptParams};
use super::reply::Answer;
use super::session::{Codec, Event};

impl Codec {
    /// RCPT: checks its place and its parameters.
    pub(super) fn rcpt(&mut self, path: Path, params: &str) -> Event {
        if self.envelope.is_none() {
            return self.refuse(Answer::NeedMail);
        }
        let extended = self.greeting.unwrap_or(false);
        match params::rcpt_params(params, &self.offered(extended)) {
            Ok(params) => Event::Rcpt { path, params },
            Err(answer) => self.refuse(answer),
        }
    }

    /// Adds a recipient to the transaction.
    pub fn accept_rcpt(&mut self, address: String, params: RcptParams) {
        if let Some(envelope) = &mut self.envelope {
            envelope.to.push(address);
            envelope.rcpt_params.push(params);
        }
    }
}
