//! The token cache shared by every connection of one strategy instance.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mailgate_core::{Error, TokenSource, async_trait};
use secrecy::{ExposeSecret, SecretString};

use crate::client::{Token, TokenClient, TokenError};

/// A token is replaced this long before it expires (`mailgate.oauth.refreshMarginSeconds`).
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The refresh margin is at most `lifetime / MAX_MARGIN_FRACTION`, so a
/// short-lived token (30 s) is still reused for a while (15 s).
pub const MAX_MARGIN_FRACTION: u32 = 2;

/// When a refresh fails, the old token is still used if it has this long left.
pub const MIN_REMAINING_LIFETIME: Duration = Duration::from_secs(5);

/// Back-off after the first failed fetch; doubles with each further failure.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);

/// Longest back-off after failed fetches.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How long tokens are reused and how failures are spaced out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Replace a token this long before it expires (capped, see [`MAX_MARGIN_FRACTION`]).
    pub refresh_margin: Duration,
    /// Back-off after the first failure.
    pub min_backoff: Duration,
    /// Longest back-off.
    pub max_backoff: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            min_backoff: MIN_BACKOFF,
            max_backoff: MAX_BACKOFF,
        }
    }
}

struct Cached {
    secret: SecretString,
    refresh_at: Instant,
    expires_at: Instant,
}

struct Failure {
    error: TokenError,
    at: Instant,
    backoff: Duration,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    failure: Option<Failure>,
    fetches: u64,
}

/// Reuses tokens of one [`TokenClient`] until a margin before expiry.
///
/// - Single flight: however many tasks ask at once, one fetch runs; the
///   others wait for it and take its token (checked again under the lock,
///   as object_store's `TokenCache` does).
/// - After a failed fetch, callers get that error without the endpoint being
///   asked again until the back-off has passed (1 s, doubling to 60 s by default).
/// - [`invalidate`](Self::invalidate) drops a token the SMTP server refused.
pub struct TokenCache {
    client: TokenClient,
    policy: CachePolicy,
    state: Mutex<State>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("TokenCache")
            .field("client", &self.client)
            .field("policy", &self.policy)
            .field("has_token", &state.token.is_some())
            .field("failing", &state.failure.is_some())
            .finish()
    }
}

impl TokenCache {
    /// A cache with the default [`CachePolicy`].
    pub fn new(client: TokenClient) -> Self {
        Self::with_policy(client, CachePolicy::default())
    }

    /// A cache with `policy`.
    pub fn with_policy(client: TokenClient, policy: CachePolicy) -> Self {
        Self {
            client,
            policy,
            state: Mutex::new(State::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The client.
    pub fn client(&self) -> &TokenClient {
        &self.client
    }

    /// The policy.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// How many requests went to the token endpoint so far.
    pub fn fetch_count(&self) -> u64 {
        self.lock().fetches
    }

    /// A valid token: the cached one, or a new one. Errors are
    /// [`Error::Strategy`] with strategy `oauth`.
    pub async fn token(&self) -> Result<SecretString, Error> {
        self.try_token().await.map_err(Error::from)
    }

    /// Like [`token`](Self::token), with the crate's error type.
    pub async fn try_token(&self) -> Result<SecretString, TokenError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _flight = self.fetch_lock.lock().await;
        // Another task may have fetched while this one waited.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        if let Some(error) = self.backing_off() {
            return self.fallback(error);
        }
        let result = self.client.fetch().await;
        let mut state = self.lock();
        state.fetches += 1;
        match result {
            Ok(token) => {
                state.failure = None;
                let cached = self.cached(token);
                let secret = cached.secret.clone();
                state.token = Some(cached);
                Ok(secret)
            }
            Err(error) => {
                let backoff = match &state.failure {
                    None => self.policy.min_backoff,
                    Some(f) => (f.backoff * 2).min(self.policy.max_backoff),
                }
                .max(error.retry_after().unwrap_or_default())
                .min(self.policy.max_backoff.max(self.policy.min_backoff));
                tracing::warn!(
                    target: "mailgate::oauth",
                    "token request failed; not retried for {}s: {error}",
                    backoff.as_secs_f32()
                );
                state.failure = Some(Failure {
                    error: error.clone(),
                    at: Instant::now(),
                    backoff,
                });
                drop(state);
                self.fallback(error)
            }
        }
    }

    /// Drops `token` if it is still the cached one (the server refused it).
    /// Returns whether it was dropped.
    pub fn invalidate(&self, token: &SecretString) -> bool {
        let mut state = self.lock();
        let current = state
            .token
            .as_ref()
            .is_some_and(|c| c.secret.expose_secret() == token.expose_secret());
        if current {
            state.token = None;
            tracing::debug!(target: "mailgate::oauth", "dropped a token the server refused");
        }
        current
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, token: Token) -> Cached {
        let lifetime = token.lifetime();
        let margin = self
            .policy
            .refresh_margin
            .min(lifetime / MAX_MARGIN_FRACTION);
        let expires_at = token.expires_at();
        let refresh_at = expires_at.checked_sub(margin).unwrap_or(token.issued_at());
        Cached {
            secret: token.into_secret(),
            refresh_at,
            expires_at,
        }
    }

    fn fresh(&self) -> Option<SecretString> {
        let state = self.lock();
        state
            .token
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.secret.clone())
    }

    /// The last error, while its back-off lasts.
    fn backing_off(&self) -> Option<TokenError> {
        let state = self.lock();
        let f = state.failure.as_ref()?;
        let left = f.backoff.checked_sub(f.at.elapsed())?;
        if left.is_zero() {
            return None;
        }
        Some(f.error.with_note(&format!(
            "last attempt {:.1}s ago; the token endpoint is asked again in {:.1}s",
            f.at.elapsed().as_secs_f32(),
            left.as_secs_f32()
        )))
    }

    /// After a failed refresh: the old token if it still has a while to live, else `error`.
    fn fallback(&self, error: TokenError) -> Result<SecretString, TokenError> {
        let state = self.lock();
        match &state.token {
            Some(c)
                if c.expires_at.saturating_duration_since(Instant::now())
                    > MIN_REMAINING_LIFETIME =>
            {
                tracing::warn!(
                    target: "mailgate::oauth",
                    "using the current token until it expires, as refreshing it failed: {error}"
                );
                Ok(c.secret.clone())
            }
            _ => Err(error),
        }
    }
}

#[async_trait]
impl TokenSource for TokenCache {
    async fn access_token(&self) -> Result<SecretString, Error> {
        self.token().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::TokenClientConfig;

    fn unreachable_cache() -> TokenCache {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = TokenClientConfig::new(
            format!("http://127.0.0.1:{port}/token"),
            "id",
            SecretString::from("secret".to_owned()),
            None,
        );
        TokenCache::new(TokenClient::new(config).unwrap())
    }

    #[tokio::test]
    async fn failed_refresh_keeps_a_still_valid_token() {
        let cache = unreachable_cache();
        let now = Instant::now();
        cache.lock().token = Some(Cached {
            secret: SecretString::from("old".to_owned()),
            refresh_at: now,
            expires_at: now + Duration::from_secs(30),
        });
        assert_eq!(cache.try_token().await.unwrap().expose_secret(), "old");
        assert_eq!(cache.fetch_count(), 1);
        // Within the back-off: still the old token, no new request.
        assert_eq!(cache.try_token().await.unwrap().expose_secret(), "old");
        assert_eq!(cache.fetch_count(), 1);
    }

    #[tokio::test]
    async fn failed_refresh_of_an_almost_expired_token_is_an_error() {
        let cache = unreachable_cache();
        let now = Instant::now();
        cache.lock().token = Some(Cached {
            secret: SecretString::from("old".to_owned()),
            refresh_at: now,
            expires_at: now + Duration::from_secs(2),
        });
        let err = cache.try_token().await.unwrap_err();
        assert_eq!(err.kind(), mailgate_core::ErrorKind::Temporary);
    }

    #[test]
    fn margin_is_capped_for_short_lifetimes() {
        let cache = unreachable_cache();
        let token = |secs| Token::for_tests(Duration::from_secs(secs));
        let c = cache.cached(token(30));
        assert_eq!(c.expires_at - c.refresh_at, Duration::from_secs(15));
        let c = cache.cached(token(3600));
        assert_eq!(c.expires_at - c.refresh_at, DEFAULT_REFRESH_MARGIN);
        let c = cache.cached(token(0));
        assert_eq!(c.expires_at, c.refresh_at);
    }
}
