//! The `oauth` [`AuthStrategy`].

use std::fmt;
use std::sync::Arc;

use mailgate_core::{
    AuthStrategy, Error, Reply, Result, Settings, SmtpSession, Stage, TokenSource, async_trait,
};
use secrecy::{ExposeSecret, SecretString};

use crate::STRATEGY_NAME;
use crate::cache::TokenCache;
use crate::client::TokenClient;
use crate::config::OAuthConfig;
use crate::sasl::{self, Mechanism};

/// OAuth 2.0 client credentials, then SASL XOAUTH2 or OAUTHBEARER.
///
/// One instance (one `Mailer`) shares one [`TokenCache`] across all its connections.
pub struct OAuthStrategy {
    cache: Arc<TokenCache>,
    user: String,
    mechanism: Mechanism,
}

impl fmt::Debug for OAuthStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthStrategy")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("cache", &self.cache)
            .finish()
    }
}

impl OAuthStrategy {
    /// Builds the strategy from the settings; errors name the missing or bad key.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        Self::new(OAuthConfig::from_settings(settings)?)
    }

    /// Builds the strategy from a configuration.
    pub fn new(config: OAuthConfig) -> Result<Self> {
        let cache = TokenCache::with_policy(TokenClient::new(config.token)?, config.cache);
        Ok(Self::with_cache(
            Arc::new(cache),
            config.user,
            config.mechanism,
        ))
    }

    /// A strategy using an existing cache (e.g. one shared with other code).
    pub fn with_cache(cache: Arc<TokenCache>, user: String, mechanism: Mechanism) -> Self {
        Self {
            cache,
            user,
            mechanism,
        }
    }

    /// The token cache.
    pub fn cache(&self) -> &Arc<TokenCache> {
        &self.cache
    }

    /// The SASL user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The SASL mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn refused(&self, session: &SmtpSession<'_>, token: &SecretString, reply: String) -> Error {
        self.cache.invalidate(token);
        Error::AuthRefused {
            strategy: STRATEGY_NAME.to_owned(),
            server: session.server().to_owned(),
            reply,
            retry_on_new_connection: true,
        }
    }
}

fn smtp_error(session: &SmtpSession<'_>, reply: &Reply) -> Error {
    Error::Smtp {
        server: session.server().to_owned(),
        stage: Stage::Auth,
        code: reply.code,
        reply: reply.text(),
    }
}

#[async_trait]
impl AuthStrategy for OAuthStrategy {
    fn sends_credentials(&self) -> bool {
        true
    }

    /// Has a token ready before connecting: a failing token endpoint then
    /// never costs an SMTP session.
    async fn prepare(&self) -> Result<()> {
        self.cache.token().await.map(drop)
    }

    async fn authenticate(&self, session: &mut SmtpSession<'_>) -> Result<()> {
        let mech = self.mechanism;
        if !session.offers_auth(mech.name()).await? {
            let other = mech.other();
            let wanted = if session.offers_auth(other.name()).await? {
                format!(
                    "{mech}; it offers {other}: set `{}={}`",
                    crate::keys::MECHANISM,
                    other.key_value()
                )
            } else {
                mech.name().to_owned()
            };
            return Err(Error::NoMechanism {
                strategy: STRATEGY_NAME.to_owned(),
                server: session.server().to_owned(),
                wanted,
            });
        }

        let token = self.cache.token().await?;
        let payload = mech.initial_response(&self.user, token.expose_secret());
        let line = SecretString::from(format!("AUTH {mech} {}", payload.expose_secret()));
        let shown = format!("AUTH {mech} <redacted>");
        let reply = session.auth_command(line.expose_secret(), &shown).await?;
        drop(line);

        match reply.code {
            235 => Ok(()),
            334 => {
                // The error challenge: answer it so the server sends its final reply.
                let challenge = sasl::describe_challenge(&reply.text());
                let answer = mech.challenge_answer();
                let shown = if answer.is_empty() {
                    "(empty line: answer to the error challenge)".to_owned()
                } else {
                    answer.to_owned()
                };
                let last = session.auth_command(answer, &shown).await?;
                match last.code {
                    235 => Ok(()),
                    400..=499 => Err(smtp_error(session, &last)),
                    _ => Err(self.refused(
                        session,
                        &token,
                        format!("{last} (error challenge from the server: {challenge})"),
                    )),
                }
            }
            400..=499 => Err(smtp_error(session, &reply)),
            534 | 535 => Err(self.refused(session, &token, reply.to_string())),
            500..=599 => Err(smtp_error(session, &reply)),
            _ => Err(Error::Protocol {
                server: session.server().to_owned(),
                stage: Stage::Auth,
                reason: format!("unexpected reply to AUTH {mech}: {reply}"),
            }),
        }
    }

    fn required_sender(&self) -> Option<&str> {
        None
    }

    fn token_source(&self) -> Option<&dyn TokenSource> {
        Some(self)
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let client = self.cache.client();
        vec![
            ("token endpoint", client.endpoint_host()),
            ("scope", client.scope().unwrap_or_default().to_owned()),
            ("mechanism", self.mechanism.name().to_owned()),
            ("user", self.user.clone()),
            ("client auth", client.client_auth().as_str().to_owned()),
        ]
    }
}

#[async_trait]
impl TokenSource for OAuthStrategy {
    async fn access_token(&self) -> Result<SecretString> {
        self.cache.token().await
    }
}
