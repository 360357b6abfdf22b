//! The token cache shared by every connection of one strategy instance.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgate_core::{Error, ErrorKind, TokenSource, async_trait};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

pub use crate::backoff::{MAX_BACKOFF, MIN_BACKOFF};
use crate::client::TokenClient;
use crate::response::{Token, TokenError};

/// A token is replaced this long before it expires (`mailgate.oauth.refreshMarginSeconds`).
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The refresh margin is at most `lifetime / MAX_MARGIN_FRACTION`, so a
/// short-lived token (30 s) is still reused for a while (15 s).
pub const MAX_MARGIN_FRACTION: u32 = 2;

/// Default of [`CachePolicy::min_remaining_lifetime`]: while a refresh is
/// running or after it failed, the old token is still used if it has more
/// than this long left.
pub const MIN_REMAINING_LIFETIME: Duration = Duration::from_secs(5);

/// Default of [`CachePolicy::refusal_backoff`]: after a token the SMTP server
/// refused was dropped, another refusal within this long is final.
pub const REFUSAL_BACKOFF: Duration = Duration::from_secs(60);

/// The back-off starts again from `min_backoff` when the last failed fetch
/// is longer ago than this many `max_backoff`s.
pub const QUIET_RESET_FACTOR: u32 = 2;

/// How long tokens are reused and how failures are spaced out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Replace a token this long before it expires (capped, see [`MAX_MARGIN_FRACTION`]).
    pub refresh_margin: Duration,
    /// While a refresh runs, or after it failed, the old token is used if it
    /// has more than this long left; otherwise callers wait for the refresh
    /// or get its error.
    pub min_remaining_lifetime: Duration,
    /// Back-off after the first failure.
    pub min_backoff: Duration,
    /// Longest back-off. After [`QUIET_RESET_FACTOR`] times this without a
    /// failed fetch, the back-off starts again from `min_backoff`.
    pub max_backoff: Duration,
    /// After a token the SMTP server refused was dropped
    /// ([`TokenCache::refused`]), a refusal within this long keeps the token
    /// and is final: no new token, no retry.
    pub refusal_backoff: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            min_remaining_lifetime: MIN_REMAINING_LIFETIME,
            min_backoff: MIN_BACKOFF,
            max_backoff: MAX_BACKOFF,
            refusal_backoff: REFUSAL_BACKOFF,
        }
    }
}

/// What [`TokenCache::refused`] did with a token the SMTP server refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The token was dropped: the next connection gets a fresh one.
    Dropped,
    /// The token was no longer the cached one (another connection already
    /// dropped it, or it was refreshed): the next connection uses the current one.
    Replaced,
    /// The token was kept: a token was dropped `ago` earlier, within
    /// [`CachePolicy::refusal_backoff`], so the refusal is probably not
    /// about the token (e.g. SMTP AUTH disabled, missing permissions).
    Kept {
        /// How long ago the last token was dropped.
        ago: Duration,
    },
}

impl Refusal {
    /// Whether one more attempt on a new connection may help.
    pub fn retry(self) -> bool {
        !matches!(self, Refusal::Kept { .. })
    }
}

/// Where a [`TokenCache`] gets new tokens: the [`TokenClient`], or anything
/// else that issues bearer tokens (a managed identity, a sidecar, a test).
///
/// The cache calls [`fetch`](Self::fetch) at most once at a time, in a task
/// of its own, and only when it needs a new token; the provider needs no
/// caching or locking of its own.
///
/// ```
/// use std::time::Duration;
///
/// use mailgate_auth_oauth::{Token, TokenCache, TokenError, TokenProvider};
/// use mailgate_core::async_trait;
/// use mailgate_core::secrecy::SecretString;
///
/// #[derive(Debug)]
/// struct Fixed;
///
/// #[async_trait]
/// impl TokenProvider for Fixed {
///     async fn fetch(&self) -> Result<Token, TokenError> {
///         let secret = SecretString::from("token".to_owned());
///         Ok(Token::new(secret, Some(Duration::from_secs(3600))))
///     }
/// }
///
/// let cache = TokenCache::new(Fixed);
/// assert_eq!(cache.fetch_count(), 0);
/// ```
#[async_trait]
pub trait TokenProvider: Send + Sync + fmt::Debug + 'static {
    /// Gets a new token. Errors reach the callers of
    /// [`TokenCache::token`] and start its back-off
    /// ([`TokenError::with_retry_after`] can lengthen it).
    async fn fetch(&self) -> Result<Token, TokenError>;
}

#[async_trait]
impl TokenProvider for TokenClient {
    async fn fetch(&self) -> Result<Token, TokenError> {
        // The inherent method: one request to the endpoint.
        TokenClient::fetch(self).await
    }
}

/// The result of one fetch, shared by everyone waiting for it.
type Outcome = Result<SecretString, TokenError>;

/// Where a fetch's [`Outcome`] appears; every waiter holds a copy.
type Slot = watch::Receiver<Option<Outcome>>;

/// What a new fetch is spawned with.
type Start<P> = (tokio::runtime::Handle, Flight<P>);

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
    /// Requests sent to the endpoint (counted when sent).
    fetches: u64,
    /// The running fetch: its result slot, which every waiter holds.
    flight: Option<Slot>,
    /// When a refused token was last dropped.
    last_drop: Option<Instant>,
}

struct Inner<P> {
    provider: P,
    policy: CachePolicy,
    state: Mutex<State>,
}

/// Reuses tokens of one [`TokenProvider`] (by default a [`TokenClient`])
/// until a margin before expiry.
///
/// - Single flight: however many tasks ask at once, one fetch runs. Each
///   fetch has its own result slot; a caller that queued while it ran takes
///   that fetch's result, token or error, and never starts another fetch,
///   even when the token is already due for refresh again (`expires_in` 0,
///   or a fetch slower than half the lifetime).
/// - The fetch runs in its own task: a caller that gives up (a timeout,
///   `select!`, Ctrl-C) does not cancel it for the others, and the cache
///   gets its token. [`fetch_count`](Self::fetch_count) counts requests as
///   they are sent.
/// - While a refresh runs, callers get the current token without waiting if
///   it has more than [`CachePolicy::min_remaining_lifetime`] left.
/// - After a failed fetch, callers get that error (or the current token, if
///   it still has more than `min_remaining_lifetime` left) without the
///   endpoint being asked again until the back-off has passed (1 s,
///   doubling to 60 s by default; a `Retry-After` lengthens it). The failure
///   is logged once, when it happens. After `2 × max_backoff` without a
///   failed fetch the back-off starts from `min_backoff` again.
/// - [`refused`](Self::refused) drops a token the SMTP server refused, at
///   most once per [`CachePolicy::refusal_backoff`];
///   [`invalidate`](Self::invalidate) drops it unconditionally.
///
/// Fetches are spawned on the current Tokio runtime.
pub struct TokenCache<P: TokenProvider = TokenClient> {
    inner: Arc<Inner<P>>,
}

impl<P: TokenProvider> fmt::Debug for TokenCache<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("TokenCache")
            .field("provider", &self.inner.provider)
            .field("policy", &self.inner.policy)
            .field("has_token", &state.token.is_some())
            .field("failing", &state.failure.is_some())
            .field("fetching", &state.flight.is_some())
            .finish()
    }
}

impl<P: TokenProvider> TokenCache<P> {
    /// A cache with the default [`CachePolicy`].
    pub fn new(provider: P) -> Self {
        Self::with_policy(provider, CachePolicy::default())
    }

    /// A cache with `policy`.
    pub fn with_policy(provider: P, policy: CachePolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                provider,
                policy,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Where tokens come from.
    pub fn provider(&self) -> &P {
        &self.inner.provider
    }

    /// The provider, by its older name ([`provider`](Self::provider)).
    pub fn client(&self) -> &P {
        &self.inner.provider
    }

    /// The policy.
    pub fn policy(&self) -> &CachePolicy {
        &self.inner.policy
    }

    /// How many fetches were started so far (a request to the token
    /// endpoint is counted when it is sent, whether or not anyone still
    /// waits for it).
    pub fn fetch_count(&self) -> u64 {
        self.inner.lock().fetches
    }

    /// A valid token: the cached one, or a new one. Errors are
    /// [`Error::Strategy`] with strategy `oauth`.
    pub async fn token(&self) -> Result<SecretString, Error> {
        self.try_token().await.map_err(Error::from)
    }

    /// Like [`token`](Self::token), with the crate's error type.
    pub async fn try_token(&self) -> Result<SecretString, TokenError> {
        let (mut slot, start) = {
            let mut state = self.inner.lock();
            let now = Instant::now();
            if let Some(c) = state.token.as_ref().filter(|c| now < c.refresh_at) {
                return Ok(c.secret.clone());
            }
            match state.flight.clone() {
                Some(slot) => {
                    // A refresh is running: no need to wait while the
                    // current token has a while to live.
                    if let Some(secret) = self.inner.usable(&state, now) {
                        return Ok(secret);
                    }
                    (slot, None)
                }
                None => {
                    if let Some(error) = self.inner.backing_off(&state, now) {
                        return self.inner.fallback(&state, error);
                    }
                    let (slot, start) = Inner::prepare(&self.inner, &mut state)?;
                    (slot, Some(start))
                }
            }
        };
        // Spawned outside the state lock (a runtime shutting down drops the
        // task at once, and `Flight::drop` takes the lock).
        if let Some((runtime, flight)) = start {
            runtime.spawn(async move {
                let result = flight.inner.provider.fetch().await;
                flight.finish(result);
            });
        }
        let outcome = match slot.wait_for(Option::is_some).await {
            Ok(slot) => slot.clone().unwrap_or_else(|| Err(abandoned())),
            Err(_) => Err(abandoned()),
        };
        match outcome {
            Ok(secret) => Ok(secret),
            Err(error) => {
                let state = self.inner.lock();
                self.inner.fallback(&state, error)
            }
        }
    }

    /// Records that the SMTP server refused `token` and decides what the
    /// next connection does:
    ///
    /// - the token is the cached one and no token was dropped within
    ///   [`CachePolicy::refusal_backoff`]: it is dropped ([`Refusal::Dropped`]);
    /// - it is no longer the cached one ([`Refusal::Replaced`]);
    /// - a token was dropped within the back-off: it is kept
    ///   ([`Refusal::Kept`]). Two refused tokens in a row point at something
    ///   a new token does not fix (SMTP AUTH disabled, missing mailbox
    ///   permissions), so no more tokens are requested for a while.
    pub fn refused(&self, token: &SecretString) -> Refusal {
        let mut state = self.inner.lock();
        if !is_current(&state, token) {
            return Refusal::Replaced;
        }
        let now = Instant::now();
        if let Some(at) = state.last_drop {
            let ago = now.saturating_duration_since(at);
            if ago < self.inner.policy.refusal_backoff {
                tracing::debug!(
                    target: "mailgate::oauth",
                    "kept a token the server refused: one was already dropped {:.1}s ago",
                    ago.as_secs_f32()
                );
                return Refusal::Kept { ago };
            }
        }
        state.token = None;
        state.last_drop = Some(now);
        tracing::debug!(target: "mailgate::oauth", "dropped a token the server refused");
        Refusal::Dropped
    }

    /// Drops `token` if it is still the cached one, whatever
    /// [`refused`](Self::refused) would decide (the drop starts its
    /// back-off all the same). Returns whether it was dropped.
    pub fn invalidate(&self, token: &SecretString) -> bool {
        let mut state = self.inner.lock();
        let current = is_current(&state, token);
        if current {
            state.token = None;
            state.last_drop = Some(Instant::now());
            tracing::debug!(target: "mailgate::oauth", "dropped a token the server refused");
        }
        current
    }

    #[cfg(test)]
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock()
    }

    #[cfg(test)]
    fn cached(&self, token: Token) -> Cached {
        self.inner.cached(token)
    }
}

fn is_current(state: &State, token: &SecretString) -> bool {
    state
        .token
        .as_ref()
        .is_some_and(|c| c.secret.expose_secret() == token.expose_secret())
}

fn abandoned() -> TokenError {
    TokenError::new(
        ErrorKind::Temporary,
        "the token request was abandoned before it finished (the runtime is shutting down)",
    )
}

impl<P> Inner<P> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new fetch; returns its result slot, and the runtime and
    /// [`Flight`] to spawn it with.
    fn prepare(inner: &Arc<Self>, state: &mut State) -> Result<(Slot, Start<P>), TokenError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            TokenError::new(
                ErrorKind::Usage,
                "the token cache needs a Tokio runtime to fetch a token",
            )
        })?;
        let (tx, rx) = watch::channel(None);
        state.flight = Some(rx.clone());
        state.fetches += 1;
        let flight = Flight {
            inner: Arc::clone(inner),
            tx: Some(tx),
        };
        Ok((rx, (runtime, flight)))
    }

    /// Stores a fetch's result; returns what its waiters get.
    fn complete(&self, result: Result<Token, TokenError>) -> Outcome {
        let mut state = self.lock();
        state.flight = None;
        match result {
            Ok(token) => {
                state.failure = None;
                let cached = self.cached(token);
                let secret = cached.secret.clone();
                state.token = Some(cached);
                Ok(secret)
            }
            Err(error) => {
                let now = Instant::now();
                let policy = &self.policy;
                let ceiling = policy.max_backoff.max(policy.min_backoff);
                let quiet = ceiling.saturating_mul(QUIET_RESET_FACTOR);
                let backoff = match &state.failure {
                    Some(f) if now.saturating_duration_since(f.at) <= quiet => {
                        f.backoff.saturating_mul(2)
                    }
                    _ => policy.min_backoff,
                }
                .max(error.retry_after().unwrap_or_default())
                .min(ceiling);
                // Logged here, once per failure; callers during the back-off are not.
                match self.usable(&state, now).and(state.token.as_ref()) {
                    Some(c) => tracing::warn!(
                        target: "mailgate::oauth",
                        "refreshing the token failed; the current one ({:.0}s left) is used meanwhile; not retried for {}s: {error}",
                        c.expires_at.saturating_duration_since(now).as_secs_f32(),
                        backoff.as_secs_f32()
                    ),
                    None => tracing::warn!(
                        target: "mailgate::oauth",
                        "token request failed; not retried for {}s: {error}",
                        backoff.as_secs_f32()
                    ),
                }
                state.failure = Some(Failure {
                    error: error.clone(),
                    at: now,
                    backoff,
                });
                Err(error)
            }
        }
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

    /// The current token if it has more than `min_remaining_lifetime` left.
    fn usable(&self, state: &State, now: Instant) -> Option<SecretString> {
        state
            .token
            .as_ref()
            .filter(|c| {
                c.expires_at.saturating_duration_since(now) > self.policy.min_remaining_lifetime
            })
            .map(|c| c.secret.clone())
    }

    /// The last error, while its back-off lasts.
    fn backing_off(&self, state: &State, now: Instant) -> Option<TokenError> {
        let f = state.failure.as_ref()?;
        let ago = now.saturating_duration_since(f.at);
        let left = f.backoff.checked_sub(ago)?;
        if left.is_zero() {
            return None;
        }
        Some(f.error.with_note(&format!(
            "last attempt {:.1}s ago; the token endpoint is asked again in {:.1}s",
            ago.as_secs_f32(),
            left.as_secs_f32()
        )))
    }

    /// After a failed refresh: the current token if it still has a while to
    /// live, else `error`. Not logged: the failure was, when it happened.
    fn fallback(&self, state: &State, error: TokenError) -> Result<SecretString, TokenError> {
        match self.usable(state, Instant::now()) {
            Some(secret) => {
                tracing::debug!(
                    target: "mailgate::oauth",
                    "using the current token, as refreshing it failed: {error}"
                );
                Ok(secret)
            }
            None => Err(error),
        }
    }
}

/// A running fetch. If its task ends without a result (the runtime shut
/// down), dropping it clears the slot so the next caller starts a new fetch.
struct Flight<P> {
    inner: Arc<Inner<P>>,
    tx: Option<watch::Sender<Option<Outcome>>>,
}

impl<P> Flight<P> {
    fn finish(mut self, result: Result<Token, TokenError>) {
        let outcome = self.inner.complete(result);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(outcome));
        }
    }
}

impl<P> Drop for Flight<P> {
    fn drop(&mut self) {
        if self.tx.take().is_some() {
            self.inner.lock().flight = None;
        }
    }
}

#[async_trait]
impl<P: TokenProvider> TokenSource for TokenCache<P> {
    async fn access_token(&self) -> Result<SecretString, Error> {
        self.token().await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::*;

    /// A provider that plays a script: each fetch is counted, waits
    /// `delay`, then takes the next result. A fetch the script did not
    /// expect gets a `Usage` error (and shows in [`calls`](Self::calls)).
    #[derive(Debug, Default)]
    struct Scripted {
        results: Mutex<VecDeque<Result<Token, TokenError>>>,
        delay: Duration,
        calls: AtomicU64,
    }

    impl Scripted {
        fn new(results: impl IntoIterator<Item = Result<Token, TokenError>>) -> Self {
            Self {
                results: Mutex::new(results.into_iter().collect()),
                ..Self::default()
            }
        }

        fn delayed(self, delay: Duration) -> Self {
            Self { delay, ..self }
        }

        fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl TokenProvider for Scripted {
        async fn fetch(&self) -> Result<Token, TokenError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let next = self.results.lock().unwrap().pop_front();
            next.unwrap_or_else(|| {
                Err(TokenError::new(
                    ErrorKind::Usage,
                    "the script has no more results",
                ))
            })
        }
    }

    /// A token valid for an hour.
    fn token(secret: &str) -> Result<Token, TokenError> {
        Ok(Token::new(
            SecretString::from(secret.to_owned()),
            Some(Duration::from_secs(3600)),
        ))
    }

    /// What an endpoint nobody listens on gives.
    fn unreachable() -> Result<Token, TokenError> {
        Err(TokenError::new(
            ErrorKind::Temporary,
            "cannot reach the token endpoint http://127.0.0.1:9/token: connection refused",
        ))
    }

    /// A cached token due for refresh now, expiring in `left`.
    fn due<P: TokenProvider>(cache: &TokenCache<P>, secret: &str, left: Duration) {
        let now = Instant::now();
        cache.lock().token = Some(Cached {
            secret: SecretString::from(secret.to_owned()),
            refresh_at: now,
            expires_at: now + left,
        });
    }

    /// Counts WARN events of target `mailgate::oauth`.
    struct CountWarnings(Arc<AtomicUsize>);

    impl tracing::Subscriber for CountWarnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let m = event.metadata();
            if *m.level() == tracing::Level::WARN && m.target() == "mailgate::oauth" {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[tokio::test]
    async fn a_running_refresh_does_not_hold_up_callers_with_a_usable_token() {
        let script = Scripted::new([token("new")]).delayed(Duration::from_millis(400));
        let cache = Arc::new(TokenCache::new(script));
        due(&cache, "old", Duration::from_secs(30));
        let first = tokio::spawn({
            let cache = Arc::clone(&cache);
            async move { cache.try_token().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            cache.lock().flight.is_some(),
            "the first caller is fetching"
        );
        let started = Instant::now();
        for _ in 0..5 {
            assert_eq!(cache.try_token().await.unwrap().expose_secret(), "old");
        }
        assert!(started.elapsed() < Duration::from_millis(200), "no waiting");
        // The caller that started the refresh waits for it.
        assert_eq!(first.await.unwrap().unwrap().expose_secret(), "new");
        assert_eq!(cache.try_token().await.unwrap().expose_secret(), "new");
        assert_eq!(cache.fetch_count(), 1);
        assert_eq!(cache.provider().calls(), 1);
    }

    #[tokio::test]
    async fn a_running_refresh_is_awaited_when_the_token_is_almost_expired() {
        let script = Scripted::new([token("new")]).delayed(Duration::from_millis(200));
        let cache = Arc::new(TokenCache::new(script));
        // 3 s left: not more than the 5 s minimum.
        due(&cache, "old", Duration::from_secs(3));
        let first = tokio::spawn({
            let cache = Arc::clone(&cache);
            async move { cache.try_token().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(cache.try_token().await.unwrap().expose_secret(), "new");
        assert_eq!(first.await.unwrap().unwrap().expose_secret(), "new");
        assert_eq!(cache.fetch_count(), 1);
        assert_eq!(cache.provider().calls(), 1);
    }

    #[tokio::test]
    async fn min_remaining_lifetime_is_part_of_the_policy() {
        let policy = CachePolicy {
            min_remaining_lifetime: Duration::from_secs(1),
            ..CachePolicy::default()
        };
        assert_eq!(
            CachePolicy::default().min_remaining_lifetime,
            MIN_REMAINING_LIFETIME
        );
        let cache = TokenCache::with_policy(Scripted::new([unreachable()]), policy);
        // 3 s left: an error with the default 5 s, usable with 1 s.
        due(&cache, "old", Duration::from_secs(3));
        assert_eq!(cache.try_token().await.unwrap().expose_secret(), "old");
        assert_eq!(cache.fetch_count(), 1);
        assert_eq!(cache.provider().calls(), 1);
    }

    #[tokio::test]
    async fn a_failure_is_logged_once_not_on_every_call_during_the_back_off() {
        let count = Arc::new(AtomicUsize::new(0));
        let _guard = tracing::subscriber::set_default(CountWarnings(Arc::clone(&count)));
        let warnings = || count.load(Ordering::SeqCst);

        // With a still usable token: the token is used, one warning.
        let cache = TokenCache::new(Scripted::new([unreachable()]));
        due(&cache, "old", Duration::from_secs(30));
        for _ in 0..10 {
            assert_eq!(cache.try_token().await.unwrap().expose_secret(), "old");
        }
        assert_eq!(cache.fetch_count(), 1);
        assert_eq!(cache.provider().calls(), 1);
        assert_eq!(warnings(), 1);

        // Without one: ten errors, one warning.
        let cache = TokenCache::new(Scripted::new([unreachable()]));
        for _ in 0..10 {
            cache.try_token().await.unwrap_err();
        }
        assert_eq!(cache.fetch_count(), 1);
        assert_eq!(cache.provider().calls(), 1);
        assert_eq!(warnings(), 2);
    }

    #[tokio::test]
    async fn back_off_starts_over_after_a_quiet_period() {
        let cache = TokenCache::with_policy(
            Scripted::new(std::iter::repeat_with(unreachable).take(4)),
            CachePolicy {
                min_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(100),
                ..CachePolicy::default()
            },
        );
        let backoff = |cache: &TokenCache<Scripted>| cache.lock().failure.as_ref().unwrap().backoff;
        cache.try_token().await.unwrap_err();
        assert_eq!(backoff(&cache), Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(70)).await;
        cache.try_token().await.unwrap_err();
        assert_eq!(backoff(&cache), Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(120)).await;
        cache.try_token().await.unwrap_err();
        assert_eq!(backoff(&cache), Duration::from_millis(100), "capped");
        // Quiet for more than 2 x max_backoff (200 ms): from the start again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cache.try_token().await.unwrap_err();
        assert_eq!(backoff(&cache), Duration::from_millis(50));
        assert_eq!(cache.fetch_count(), 4);
        assert_eq!(cache.provider().calls(), 4);
    }

    #[tokio::test]
    async fn failed_refresh_keeps_a_still_valid_token() {
        let cache = TokenCache::new(Scripted::new([unreachable()]));
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
        assert_eq!(cache.provider().calls(), 1);
    }

    #[tokio::test]
    async fn failed_refresh_of_an_almost_expired_token_is_an_error() {
        let cache = TokenCache::new(Scripted::new([unreachable()]));
        let now = Instant::now();
        cache.lock().token = Some(Cached {
            secret: SecretString::from("old".to_owned()),
            refresh_at: now,
            expires_at: now + Duration::from_secs(2),
        });
        let err = cache.try_token().await.unwrap_err();
        assert_eq!(err.kind(), mailgate_core::ErrorKind::Temporary);
        assert_eq!(cache.provider().calls(), 1);
    }

    #[test]
    fn margin_is_capped_for_short_lifetimes() {
        let cache = TokenCache::new(Scripted::default());
        let token = |secs| {
            Token::new(
                SecretString::from("t".to_owned()),
                Some(Duration::from_secs(secs)),
            )
        };
        let c = cache.cached(token(30));
        assert_eq!(c.expires_at - c.refresh_at, Duration::from_secs(15));
        let c = cache.cached(token(3600));
        assert_eq!(c.expires_at - c.refresh_at, DEFAULT_REFRESH_MARGIN);
        let c = cache.cached(token(0));
        assert_eq!(c.expires_at, c.refresh_at);
        assert_eq!(cache.provider().calls(), 0);
    }
}
