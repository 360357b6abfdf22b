//! MAIL (RFC 5321 4.1.1.2): after the greeting, over TLS and after AUTH
//! when the server requires them, outside a transaction, with the
//! parameters of the extensions offered.

use super::command::Path;
use super::params::{self, MailParams};
use super::reply::Answer;
use super::session::{Codec, Envelope, Event};

impl Codec {
    /// MAIL: checks its place and its parameters.
    pub(super) fn mail(&mut self, path: Path, params: &str) -> Event {
        let Some(extended) = self.greeting else {
            return self.refuse(Answer::NeedHelo);
        };
        let refusal = if self.config.require_tls_for_mail && !self.tls {
            Some(Answer::TlsRequired)
        } else if self.envelope.is_some() {
            Some(Answer::NestedMail)
        } else if self.config.require_auth && !self.authenticated {
            // AUTH exists but is not offered before STARTTLS.
            Some(
                if self.config.extensions.auth.is_some() && !self.auth_offered() {
                    Answer::TlsRequired
                } else {
                    Answer::AuthRequired
                },
            )
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return self.refuse(refusal);
        }
        match params::mail_params(params, &self.offered(extended)) {
            Ok(params) => Event::Mail { path, params },
            Err(answer) => self.refuse(answer),
        }
    }

    /// Opens the transaction: the sender as the server keeps it.
    pub fn accept_mail(&mut self, from: String, params: MailParams) {
        self.envelope = Some(Envelope {
            from,
            params,
            to: Vec::new(),
            rcpt_params: Vec::new(),
        });
    }
}
