//! The `oauth` [`AuthStrategy`].

use std::fmt;
use std::sync::Arc;

use mailgate_core::{
    AuthStrategy, Error, ErrorKind, Reply, Result, Settings, SmtpSession, TokenSource, async_trait,
};
use secrecy::{ExposeSecret, SecretString};

use crate::STRATEGY_NAME;
use crate::cache::{Refusal, TokenCache};
use crate::client::TokenClient;
use crate::config::OAuthConfig;
use crate::sasl::{self, Mechanism, SaslError};

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
        Self::with_cache(Arc::new(cache), config.user, config.mechanism)
    }

    /// A strategy using an existing cache (e.g. one shared with other code).
    ///
    /// The user is trimmed; a blank one, or one with control characters
    /// (which would break the SASL message), is an [`Error::Usage`].
    pub fn with_cache(cache: Arc<TokenCache>, user: String, mechanism: Mechanism) -> Result<Self> {
        let user = user.trim();
        if !sasl::valid_user(user) {
            return Err(Error::Usage(format!(
                "the OAuth SASL user `{}` is blank or contains control characters (`{}`)",
                user.escape_debug(),
                crate::keys::USER
            )));
        }
        Ok(Self {
            cache,
            user: user.to_owned(),
            mechanism,
        })
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

    /// Turns the final reply into the result with core's
    /// [`SmtpSession::finish_auth`]; on a refusal, asks the cache what to do
    /// with the token ([`TokenCache::refused`]) and retries on a new
    /// connection only if it was dropped or already replaced.
    async fn finish(
        &self,
        session: &mut SmtpSession<'_>,
        token: &SecretString,
        reply: &Reply,
    ) -> Result<()> {
        match session.finish_auth(STRATEGY_NAME, reply, true).await {
            Err(Error::AuthRefused {
                strategy,
                server,
                reply,
                ..
            }) => {
                let refusal = self.cache.refused(token);
                let reply = match refusal {
                    Refusal::Kept { ago } => format!(
                        "{reply} (no new token: one was already refused {:.0}s ago; the next refusal after {}s gets a fresh token)",
                        ago.as_secs_f32(),
                        self.cache.policy().refusal_backoff.as_secs_f32()
                    ),
                    Refusal::Dropped | Refusal::Replaced => reply,
                };
                Err(Error::AuthRefused {
                    strategy,
                    server,
                    reply,
                    retry_on_new_connection: refusal.retry(),
                })
            }
            other => other,
        }
    }
}

fn sasl_error(e: SaslError) -> Error {
    match e {
        SaslError::InvalidUser => Error::Usage(format!("{e} (`{}`)", crate::keys::USER)),
        _ => Error::Strategy {
            strategy: STRATEGY_NAME.to_owned(),
            kind: ErrorKind::Unavailable,
            source: Box::new(e),
        },
    }
}

#[async_trait]
impl AuthStrategy for OAuthStrategy {
    /// The access token this connection authenticates with.
    type Credential = SecretString;

    /// Gets the token before connecting: a failing token endpoint then
    /// never costs an SMTP session, and the connection uses exactly the
    /// token that was checked.
    async fn prepare(&self) -> Result<SecretString> {
        self.cache.token().await
    }

    async fn authenticate(&self, session: &mut SmtpSession<'_>, token: SecretString) -> Result<()> {
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

        // Whatever the server echoes later, neither the token nor the client secret shows.
        session.protect(token.expose_secret());
        session.protect(self.cache.client().client_secret().expose_secret());
        let payload = mech
            .initial_response(&self.user, token.expose_secret())
            .map_err(sasl_error)?;
        let line = SecretString::from(format!("AUTH {mech} {}", payload.expose_secret()));
        let shown = format!("AUTH {mech} <redacted>");
        let reply = session.auth_command(line.expose_secret(), &shown).await?;
        drop(line);

        if reply.code != 334 {
            return self.finish(session, &token, &reply).await;
        }
        // The error challenge: answer it so the server sends its final reply.
        let challenge = sasl::describe_challenge(&reply.text());
        let answer = mech.challenge_answer();
        let shown = if answer.is_empty() {
            "(empty line: answer to the error challenge)".to_owned()
        } else {
            answer.to_owned()
        };
        let mut last = session.auth_command(answer, &shown).await?;
        // Keep the challenge's decoded status in whatever the reply becomes.
        if last.code != 334 && !challenge.is_empty() {
            last.lines
                .push(format!("(error challenge from the server: {challenge})"));
        }
        self.finish(session, &token, &last).await
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

    fn fetch_count(&self) -> Option<u64> {
        Some(self.cache.fetch_count())
    }
}
