//! Test support for strategy crates: an SMTP server that answers from a
//! script, so an AUTH exchange is tested with no network.

use std::fmt;

use crate::error::{Error, Result, Stage};
use crate::smtp::{Reply, SmtpSession};

/// A stand-in SMTP server for unit tests of a strategy: it offers the
/// mechanisms it is told, answers each AUTH line with the next scripted
/// reply, and records what the strategy sent. No network, no runtime
/// beyond the test's own.
///
/// ```
/// # use mailgate_core::ScriptedServer;
/// let mut server = ScriptedServer::new()
///     .offering(&["PLAIN"])
///     .reply("235 2.7.0 Authentication successful");
/// let session = server.session();
/// // strategy.authenticate(&mut session, credential).await?;
/// # drop(session);
/// assert_eq!(server.unused_replies(), 1);
/// ```
pub struct ScriptedServer {
    pub(crate) address: String,
    pub(crate) encrypted: bool,
    pub(crate) mechanisms: Vec<String>,
    pub(crate) replies: std::collections::VecDeque<Reply>,
    pub(crate) sent: Vec<String>,
    pub(crate) shown: Vec<String>,
    pub(crate) redactor: crate::smtp::Redactor,
}

impl fmt::Debug for ScriptedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // What the strategy sent may hold secrets: show only what the log shows.
        f.debug_struct("ScriptedServer")
            .field("address", &self.address)
            .field("mechanisms", &self.mechanisms)
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Default for ScriptedServer {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedServer {
    /// An encrypted connection to `scripted.test:587` that offers no AUTH
    /// mechanism and has no reply scripted.
    pub fn new() -> Self {
        Self {
            address: "scripted.test:587".to_owned(),
            encrypted: true,
            mechanisms: Vec::new(),
            replies: Default::default(),
            sent: Vec::new(),
            shown: Vec::new(),
            redactor: crate::smtp::Redactor::new(),
        }
    }

    /// The mechanisms the EHLO reply lists.
    pub fn offering(mut self, mechanisms: &[&str]) -> Self {
        self.mechanisms = mechanisms.iter().map(|m| (*m).to_owned()).collect();
        self
    }

    /// Whether the connection counts as encrypted (default true).
    pub fn encrypted(mut self, encrypted: bool) -> Self {
        self.encrypted = encrypted;
        self
    }

    /// Appends the reply to the next line the strategy sends:
    /// `"235 2.7.0 ok"`, `"334 "`; lines of a multi-line reply are
    /// separated by `\n`. A malformed code reads as 500.
    pub fn reply(mut self, reply: &str) -> Self {
        let code = reply
            .get(..3)
            .and_then(|c| c.parse().ok())
            .filter(|c| (200..600).contains(c))
            .unwrap_or(500);
        let lines = reply
            .get(3..)
            .unwrap_or("")
            .split('\n')
            .map(|l| l.trim_start_matches([' ', '-']).to_owned())
            .collect();
        self.replies.push_back(Reply { code, lines });
        self
    }

    /// A session on this server, for [`AuthStrategy::authenticate`](crate::AuthStrategy::authenticate).
    pub fn session(&mut self) -> SmtpSession<'_> {
        SmtpSession::scripted(self)
    }

    /// The lines the strategy sent, as sent (payloads included).
    pub fn sent(&self) -> &[String] {
        &self.sent
    }

    /// The lines as the log shows them (payloads redacted).
    pub fn shown(&self) -> &[String] {
        &self.shown
    }

    /// Scripted replies no line has used.
    pub fn unused_replies(&self) -> usize {
        self.replies.len()
    }

    /// `text` as this server's errors would show it: every secret the
    /// strategy protected masked.
    pub fn clean(&self, text: &str) -> String {
        self.redactor.clean(text)
    }

    pub(crate) fn answer(&mut self, line: &str, shown: &str) -> Result<Reply> {
        self.sent.push(line.to_owned());
        self.shown.push(shown.to_owned());
        self.replies.pop_front().ok_or_else(|| Error::Protocol {
            server: self.address.clone(),
            stage: Stage::Auth,
            reason: format!("the scripted server has no reply left for `{shown}`"),
            source: None,
        })
    }
}
