//! The authentication plug-in point: [`AuthStrategy`], its registration
//! ([`StrategyDescriptor`]) and the connection it works on ([`SmtpSession`]).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use tokio::time::Instant;

use crate::error::{Error, Result, Stage};
use crate::settings::Settings;
use crate::smtp::Reply;
use crate::smtp::connection::Connection;

/// Authenticates an SMTP connection that is already open (and TLS'd where configured).
///
/// Called once for every new connection, so a strategy can fetch a fresh
/// credential each time. Implementations drive the SASL exchange themselves
/// through [`SmtpSession::auth_command`], which never logs the payload.
#[async_trait]
pub trait AuthStrategy: Send + Sync + fmt::Debug {
    /// Whether this strategy sends credentials; such strategies are refused on
    /// unencrypted connections unless `mailgate.smtp.allowPlaintextAuth=true`.
    fn sends_credentials(&self) -> bool {
        true
    }

    /// Runs before each new connection is opened: a strategy that fetches
    /// credentials does it here, so a failing credential source never leaves
    /// a half-open SMTP session behind.
    async fn prepare(&self) -> Result<()> {
        Ok(())
    }

    /// Authenticates `session`. A refusal is [`Error::AuthRefused`]; set its
    /// `retry_on_new_connection` to get one more call on a fresh connection.
    async fn authenticate(&self, session: &mut SmtpSession<'_>) -> Result<()>;

    /// The sender address the server will insist on (the auth user), if any.
    fn required_sender(&self) -> Option<&str> {
        None
    }

    /// Where the strategy gets access tokens, if it uses them.
    fn token_source(&self) -> Option<&dyn TokenSource> {
        None
    }

    /// Facts safe to show an operator (`mailgate check`); never a secret.
    fn describe(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// A source of OAuth access tokens (the trigger API's `getOAuthAccessToken`).
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A currently valid access token.
    async fn access_token(&self) -> Result<SecretString>;

    /// Requests sent to the token endpoint so far, where the source counts
    /// them (for metrics).
    fn fetch_count(&self) -> Option<u64> {
        None
    }
}

/// Builds a strategy from the settings; errors name the missing or bad keys.
pub type BuildFn = fn(&Settings) -> Result<Arc<dyn AuthStrategy>>;

/// A strategy's registration, submitted with `inventory::submit!` by its crate.
///
/// Only constant data: the registry sorts by name and never depends on link order.
pub struct StrategyDescriptor {
    /// The name used by the resolver and `mailgate.smtp.auth.strategy`.
    pub name: &'static str,
    /// Property keys the strategy reads (for "did you mean" warnings and env overrides).
    pub keys: &'static [&'static str],
    /// Builds the strategy.
    pub build: BuildFn,
    /// `module_path!()` of the registering crate, to name it in errors.
    pub module_path: &'static str,
}

impl fmt::Debug for StrategyDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrategyDescriptor")
            .field("name", &self.name)
            .field("module_path", &self.module_path)
            .finish_non_exhaustive()
    }
}

inventory::collect!(StrategyDescriptor);

/// An open SMTP connection as a strategy sees it, during the AUTH stage
/// (one deadline for the whole exchange).
pub struct SmtpSession<'a> {
    conn: &'a mut Connection,
    deadline: Instant,
}

impl<'a> SmtpSession<'a> {
    pub(crate) fn new(conn: &'a mut Connection) -> Self {
        let deadline = conn.peer().deadline();
        Self { conn, deadline }
    }

    /// `host:port` of the server, for error messages.
    pub fn server(&self) -> &str {
        &self.conn.peer().address
    }

    /// Whether the connection is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.conn.is_encrypted()
    }

    /// Whether the server's EHLO reply lists `mechanism` (e.g. `PLAIN`, `OAUTHBEARER`).
    pub async fn offers_auth(&mut self, mechanism: &str) -> Result<bool> {
        Ok(self.conn.caps().offers_auth(mechanism))
    }

    /// The mechanisms the server offers, as it spelled them.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.conn.caps().auth_mechanisms().to_vec()
    }

    /// Masks `secret` (and its base64 and URL-encoded forms) in everything
    /// shown from this server from now on: errors, logs, stdout. Strategies
    /// call it with each password or token before sending it.
    pub fn protect(&mut self, secret: &str) {
        self.conn.peer().protect(secret);
    }

    /// Server text made fit to show: every protected secret masked, control
    /// characters escaped, length bounded.
    pub fn clean(&self, text: &str) -> String {
        self.conn.peer().clean(text)
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
            });
        }
        if line != shown {
            let shown_words: Vec<&str> = shown.split_whitespace().collect();
            for word in line.split_whitespace() {
                if !shown_words.contains(&word) {
                    self.conn.peer().protect(word);
                }
            }
        }
        self.conn
            .command_shown(line, shown, Stage::Auth, self.deadline)
            .await
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
                })
            }
            _ => Err(self.conn.peer().smtp_error(Stage::Auth, reply)),
        }
    }
}
