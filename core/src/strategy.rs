//! The authentication plug-in point: [`AuthStrategy`], its registration
//! ([`StrategyDescriptor`]) and the connection it works on ([`SmtpSession`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Mechanism;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use secrecy::SecretString;

use crate::error::{Error, Result, Stage};
use crate::settings::Settings;

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

/// A server reply during authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text lines, without the code.
    pub lines: Vec<String>,
}

impl Reply {
    /// The text lines joined with spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// An open SMTP connection as a strategy sees it.
pub struct SmtpSession<'a> {
    conn: &'a mut AsyncSmtpConnection,
    server: &'a str,
    timeout: Duration,
    hello: &'a ClientId,
    ehlo_keywords: Option<Vec<String>>,
}

impl<'a> SmtpSession<'a> {
    pub(crate) fn new(
        conn: &'a mut AsyncSmtpConnection,
        server: &'a str,
        timeout: Duration,
        hello: &'a ClientId,
    ) -> Self {
        Self {
            conn,
            server,
            timeout,
            hello,
            ehlo_keywords: None,
        }
    }

    /// `host:port` of the server, for error messages.
    pub fn server(&self) -> &str {
        self.server
    }

    /// Whether the connection is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.conn.is_encrypted()
    }

    /// Whether the server's EHLO reply lists `mechanism` (e.g. `PLAIN`, `OAUTHBEARER`).
    pub async fn offers_auth(&mut self, mechanism: &str) -> Result<bool> {
        let known = match mechanism.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            "XOAUTH2" => Some(Mechanism::Xoauth2),
            _ => None,
        };
        if let Some(known) = known {
            return Ok(self.conn.server_info().supports_auth_mechanism(known));
        }
        // lettre keeps only the mechanisms it implements: ask again for the rest.
        if self.ehlo_keywords.is_none() {
            let reply = self
                .command(&format!("EHLO {}", self.hello), Stage::Connect)
                .await?;
            self.ehlo_keywords = Some(auth_mechanisms(&reply.lines));
        }
        let wanted = mechanism.to_ascii_uppercase();
        Ok(self
            .ehlo_keywords
            .as_ref()
            .is_some_and(|k| k.contains(&wanted)))
    }

    /// Sends one line of the SASL exchange and reads the reply, bounded by the timeout.
    ///
    /// `shown` is what the log says was sent: pass the command with the
    /// payload replaced (e.g. `AUTH PLAIN <redacted>`). A 4xx/5xx reply comes
    /// back as `Ok(reply)` so the strategy can interpret it.
    pub async fn auth_command(&mut self, line: &str, shown: &str) -> Result<Reply> {
        if line.contains(['\r', '\n']) {
            // A line break would let the payload smuggle a second command.
            return Err(Error::Protocol {
                server: self.server.to_owned(),
                stage: Stage::Auth,
                reason: format!("refusing to send an AUTH line with a line break ({shown})"),
            });
        }
        tracing::debug!(target: "mailgate::smtp", "C: {shown}");
        self.exchange(line).await
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
                server: self.server.to_owned(),
                reply: reply.to_string(),
                retry_on_new_connection,
            }),
            334 => {
                let cancel = self.auth_command("*", "*").await?;
                Err(Error::Protocol {
                    server: self.server.to_owned(),
                    stage: Stage::Auth,
                    reason: format!(
                        "the server asked for more after the {strategy} exchange; cancelled ({cancel})"
                    ),
                })
            }
            code => Err(Error::Smtp {
                server: self.server.to_owned(),
                stage: Stage::Auth,
                code,
                reply: reply.text(),
            }),
        }
    }

    async fn command(&mut self, line: &str, stage: Stage) -> Result<Reply> {
        tracing::debug!(target: "mailgate::smtp", "C: {line}");
        let reply = self.exchange(line).await?;
        if reply.code >= 400 {
            return Err(Error::Smtp {
                server: self.server.to_owned(),
                stage,
                code: reply.code,
                reply: reply.text(),
            });
        }
        Ok(reply)
    }

    async fn exchange(&mut self, line: &str) -> Result<Reply> {
        let fut = self.conn.command(RawLine(line));
        let reply = match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => {
                return Err(Error::Timeout {
                    server: self.server.to_owned(),
                    stage: Stage::Auth,
                    after: self.timeout,
                });
            }
            Ok(result) => reply_from(result, self.server, Stage::Auth)?,
        };
        tracing::debug!(target: "mailgate::smtp", "S: {reply}");
        Ok(reply)
    }
}

/// The mechanisms of the EHLO reply's `AUTH` lines, in either the standard
/// form (`AUTH PLAIN LOGIN`) or the old `AUTH=PLAIN LOGIN` one.
fn auth_mechanisms(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| {
            let upper = line.to_ascii_uppercase();
            let rest = upper
                .strip_prefix("AUTH ")
                .or_else(|| upper.strip_prefix("AUTH="))?;
            Some(
                rest.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect()
}

/// Turns lettre's result into a [`Reply`], keeping 4xx/5xx replies as values.
pub(crate) fn reply_from(
    result: std::result::Result<
        lettre::transport::smtp::response::Response,
        lettre::transport::smtp::Error,
    >,
    server: &str,
    stage: Stage,
) -> Result<Reply> {
    match result {
        Ok(response) => Ok(Reply {
            code: u16::from(response.code()),
            lines: response.message().map(str::to_owned).collect(),
        }),
        Err(e) => match e.status() {
            Some(code) => Ok(Reply {
                code: u16::from(code),
                lines: vec![error_text(&e)],
            }),
            None => Err(Error::Protocol {
                server: server.to_owned(),
                stage,
                reason: e.to_string(),
            }),
        },
    }
}

/// The server's text from a lettre code error ("permanent error (535): text" -> "text").
pub(crate) fn error_text(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error as _;
    e.source().map(|s| s.to_string()).unwrap_or_default()
}

/// A line sent verbatim, terminated with CRLF.
struct RawLine<'a>(&'a str);

impl fmt::Display for RawLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\r\n", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::auth_mechanisms;

    #[test]
    fn auth_lines_in_both_forms() {
        let lines = [
            "mail.example.com",
            "AUTH PLAIN OAUTHBEARER",
            "auth=LOGIN",
            "SIZE 1000",
        ]
        .map(str::to_owned);
        assert_eq!(auth_mechanisms(&lines), ["PLAIN", "OAUTHBEARER", "LOGIN"]);
    }
}
