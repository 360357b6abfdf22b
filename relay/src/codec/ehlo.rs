//! EHLO and HELO (RFC 5321 4.1.1.1): the greeting of the client and the
//! extensions offered in reply.

use super::session::{Codec, Event};

impl Codec {
    /// EHLO or HELO: any transaction is reset; the server answers.
    pub(super) fn helo(&mut self, host: &str, extended: bool) -> Event {
        self.envelope = None;
        Event::Helo {
            host: host.to_owned(),
            extended,
        }
    }

    /// The text of the `250` reply: `first`, then (for EHLO) the
    /// extensions offered now, one per line.
    pub fn ehlo_text(&self, first: &str, extended: bool) -> String {
        if !extended {
            return first.to_owned();
        }
        let ext = &self.config.extensions;
        let mut lines = vec![first.to_owned()];
        if ext.pipelining {
            lines.push("PIPELINING".to_owned());
        }
        if ext.size {
            lines.push(format!("SIZE {}", self.config.max_message_bytes));
        }
        if ext.eight_bit_mime {
            lines.push("8BITMIME".to_owned());
        }
        if ext.smtputf8 {
            lines.push("SMTPUTF8".to_owned());
        }
        if ext.enhanced_status_codes {
            lines.push("ENHANCEDSTATUSCODES".to_owned());
        }
        if ext.dsn {
            lines.push("DSN".to_owned());
        }
        if ext.starttls && !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        if let Some(mechanisms) = ext.auth.as_ref().filter(|_| self.auth_offered()) {
            lines.push(format!("AUTH {mechanisms}"));
        }
        lines.join("\n")
    }

    /// The client was told `250` to its EHLO (`extended`) or HELO.
    pub fn greeted(&mut self, extended: bool) {
        self.greeting = Some(extended);
    }

    /// Answers EHLO or HELO with `250`, `first` and the extensions.
    pub fn accept_helo(&mut self, first: &str, extended: bool) {
        let text = self.ehlo_text(first, extended);
        self.greeted(extended);
        self.reply(250, &text);
    }
}
