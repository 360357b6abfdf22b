//! The SMTP connection as an authentication strategy sees it.

use secrecy::{ExposeSecret as _, SecretString};
use tokio::time::Instant;

use crate::error::{Error, Result, Stage};
use crate::smtp::Reply;
use crate::smtp::connection::Connection;
use crate::testing::ScriptedServer;

/// An open SMTP connection as a strategy sees it, during the AUTH stage
/// (one deadline for the whole exchange). In unit tests it comes from a
/// [`ScriptedServer`], with no network.
pub struct SmtpSession<'a> {
    wire: Wire<'a>,
}

enum Wire<'a> {
    Live {
        conn: &'a mut Connection,
        deadline: Instant,
    },
    Scripted(&'a mut ScriptedServer),
}

impl<'a> SmtpSession<'a> {
    /// A session on a scripted server, for tests ([`ScriptedServer::session`]).
    pub(crate) fn scripted(server: &'a mut ScriptedServer) -> Self {
        Self {
            wire: Wire::Scripted(server),
        }
    }

    pub(crate) fn new(conn: &'a mut Connection) -> Self {
        let deadline = conn.peer().deadline();
        Self {
            wire: Wire::Live { conn, deadline },
        }
    }

    /// `host:port` of the server, for error messages.
    pub fn server(&self) -> &str {
        match &self.wire {
            Wire::Live { conn, .. } => &conn.peer().address,
            Wire::Scripted(s) => &s.address,
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_encrypted(&self) -> bool {
        match &self.wire {
            Wire::Live { conn, .. } => conn.is_encrypted(),
            Wire::Scripted(s) => s.encrypted,
        }
    }

    /// Whether the server's EHLO reply lists `mechanism` (e.g. `PLAIN`, `OAUTHBEARER`).
    pub async fn offers_auth(&mut self, mechanism: &str) -> Result<bool> {
        Ok(match &self.wire {
            Wire::Live { conn, .. } => conn.caps().offers_auth(mechanism),
            Wire::Scripted(s) => s
                .mechanisms
                .iter()
                .any(|m| m.eq_ignore_ascii_case(mechanism)),
        })
    }

    /// The mechanisms the server offers, as it spelled them.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        match &self.wire {
            Wire::Live { conn, .. } => conn.caps().auth_mechanisms().to_vec(),
            Wire::Scripted(s) => s.mechanisms.clone(),
        }
    }

    /// Masks `secret` (and its base64 and URL-encoded forms) in everything
    /// shown from this server from now on: errors, logs, stdout. Strategies
    /// call it with each password or token before sending it.
    pub fn protect(&mut self, secret: &str) {
        match &mut self.wire {
            Wire::Live { conn, .. } => conn.peer().protect(secret),
            Wire::Scripted(s) => s.redactor.protect(secret),
        }
    }

    /// Server text made fit to show: every protected secret masked, control
    /// characters escaped, length bounded.
    pub fn clean(&self, text: &str) -> String {
        match &self.wire {
            Wire::Live { conn, .. } => conn.peer().clean(text),
            Wire::Scripted(s) => s.redactor.clean(text),
        }
    }

    /// Sends one line of the SASL exchange and reads the reply, within the
    /// AUTH stage's deadline.
    ///
    /// `shown` is what the log says was sent: pass the command with the
    /// payload replaced (e.g. `AUTH PLAIN <redacted>`); every word of `line`
    /// that `shown` leaves out is masked in later output too. A 4xx/5xx reply
    /// comes back as `Ok(reply)` so the strategy can interpret it.
    pub async fn auth_command(&mut self, line: &str, shown: &str) -> Result<Reply> {
        if line.contains(['\r', '\n']) {
            // A line break would let the payload smuggle a second command.
            return Err(Error::Protocol {
                server: self.server().to_owned(),
                stage: Stage::Auth,
                reason: format!("refusing to send an AUTH line with a line break ({shown})"),
                source: None,
            });
        }
        if line != shown {
            let shown_words: Vec<&str> = shown.split_whitespace().collect();
            for word in line.split_whitespace() {
                if !shown_words.contains(&word) {
                    self.protect(word);
                }
            }
        }
        match &mut self.wire {
            Wire::Live { conn, deadline } => {
                conn.command_shown(line, shown, Stage::Auth, *deadline)
                    .await
            }
            Wire::Scripted(s) => s.answer(line, shown),
        }
    }

    /// A whole `AUTH PLAIN` exchange for `user` and `password` (protected
    /// first, sent redacted), ended by [`Self::finish_auth`] without a retry.
    pub async fn auth_plain(
        &mut self,
        strategy: &str,
        user: &str,
        password: &SecretString,
    ) -> Result<()> {
        self.protect(password.expose_secret());
        let payload = crate::sasl::plain(user, password).map_err(|e| Error::Protocol {
            server: self.server().to_owned(),
            stage: Stage::Auth,
            reason: format!("{strategy}: {e}"),
            source: None,
        })?;
        let line = SecretString::from(format!("AUTH PLAIN {}", payload.expose_secret()));
        let reply = self
            .auth_command(line.expose_secret(), "AUTH PLAIN <redacted>")
            .await?;
        self.finish_auth(strategy, &reply, false).await
    }

    /// Ends an AUTH exchange from its final reply, the same way for every
    /// strategy: 235 is success; 530, 534, 535 and 538 are a refusal
    /// ([`Error::AuthRefused`], exit 77) carrying `retry_on_new_connection`;
    /// a 334 (the server wants more) is cancelled with `*` and reported as a
    /// protocol failure; anything else is an [`Error::Smtp`] at the AUTH stage.
    pub async fn finish_auth(
        &mut self,
        strategy: &str,
        reply: &Reply,
        retry_on_new_connection: bool,
    ) -> Result<()> {
        match reply.code {
            235 => Ok(()),
            530 | 534 | 535 | 538 => Err(Error::AuthRefused {
                strategy: strategy.to_owned(),
                server: self.server().to_owned(),
                reply: self.clean(&reply.to_string()),
                retry_on_new_connection,
            }),
            334 => {
                let cancel = self.auth_command("*", "*").await?;
                Err(Error::Protocol {
                    server: self.server().to_owned(),
                    stage: Stage::Auth,
                    reason: format!(
                        "the server asked for more ({}) after the {strategy} exchange; cancelled ({})",
                        self.clean(&reply.to_string()),
                        self.clean(&cancel.to_string())
                    ),
                    source: None,
                })
            }
            _ => Err(match &self.wire {
                Wire::Live { conn, .. } => conn.peer().smtp_error(Stage::Auth, reply),
                Wire::Scripted(s) => Error::Smtp {
                    server: s.address.clone(),
                    stage: Stage::Auth,
                    code: reply.code,
                    reply: s.redactor.clean(&reply.text()),
                },
            }),
        }
    }
}
