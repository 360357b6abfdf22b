//! OAuth 2.0 token authentication for mailgate: the `oauth` strategy.
//!
//! The strategy gets an access token from the token endpoint with the
//! client-credentials grant (RFC 6749 §4.4) and authenticates each new SMTP
//! connection with it over SASL `XOAUTH2` (what Microsoft 365 and Gmail
//! speak) or RFC 7628 `OAUTHBEARER`. It is chosen when
//! `mksis.smtp.oauth.authentication=true` and `mksis.smtp.authentication=false`
//! (or with `mailgate.smtp.auth.strategy=oauth`).
//!
//! # Pieces
//!
//! - [`TokenClient`]: one POST to the token endpoint, built from a
//!   [`TokenClientConfig`]. Client authentication is `client_secret_post`
//!   (id and secret in the form, what Microsoft documents) or
//!   `client_secret_basic` (HTTP Basic with the form-urlencoded id and
//!   secret, RFC 6749 §2.3.1). Redirects are not followed, so the secret
//!   only ever goes to the configured URL. Its parts, in their own
//!   modules: which endpoint URLs are accepted and how one is shown
//!   (`endpoint.rs`); reading the answer into a [`Token`] or a
//!   [`TokenError`] with a hint at the key to check (`response.rs`); masking
//!   the client secret and cleaning endpoint text (`redaction.rs`).
//! - [`TokenProvider`]: where a cache gets tokens; [`TokenClient`]
//!   implements it, another source of bearer tokens can too
//!   ([`Token::new`], [`TokenError::new`]).
//! - [`TokenCache`]: shared by every connection of one strategy instance
//!   (one `Mailer`), over a [`TokenProvider`] (by default the
//!   [`TokenClient`]). It reuses a token until a margin before it expires, lets
//!   one fetch run at a time however many tasks wait (they all take that
//!   fetch's result), runs the fetch in its own task so a caller that gives
//!   up does not cancel it for the others, backs off after a failed fetch,
//!   and drops a token the SMTP server refused ([`TokenCache::refused`]).
//! - [`OAuthStrategy`]: the [`AuthStrategy`](mailgate_core::AuthStrategy),
//!   built from [`Settings`](mailgate_core::Settings) and registered under
//!   the name `oauth`. It answers the server's `334` error challenge (empty
//!   line for XOAUTH2, `AQ==` for OAUTHBEARER), keeps the challenge's
//!   decoded status in the error, and lets core's
//!   [`SmtpSession::finish_auth`](mailgate_core::SmtpSession::finish_auth)
//!   classify the final reply: `235` is success; `530`, `534`, `535`, `538`
//!   are a refusal (see [Refusals](#refusals)); a further `334` is
//!   cancelled with `*` (a protocol error); anything else (a `4xx`, a `554`)
//!   is an SMTP error that leaves the token alone.
//! - [`sasl`]: the initial-response encodings; they refuse a user with
//!   control characters and a token outside the RFC 6750 `b64token` charset.
//!
//! Neither the client secret nor a token appears in any `Display`, `Debug`
//! or log line: they are [`secrecy`] types, the types holding them have a
//! hand-written `Debug`, and text from the token endpoint is cleaned before
//! it goes into an error: tags stripped, control characters dropped,
//! truncated, and the secret masked as configured, form-urlencoded, base64,
//! and inside base64 HTTP Basic credentials. A form of the secret shorter
//! than 4 characters is not masked (that would mangle every word): text
//! containing it is withheld. The token endpoint is only ever shown as
//! `scheme://host[:port]/path`: never `user:password@`, the query or the
//! fragment.
//!
//! # Keys
//!
//! Vendor keys, in `security.properties` unless noted:
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `mksis.security.smtp.oauth.tokenEndpointURL` | required | token endpoint; `https://`, plain `http://` only on loopback (127.0.0.0/8, `::1`, `localhost`) |
//! | `mksis.security.smtp.oauth.clientID` | required | client id |
//! | `mksis.security.smtp.oauth.clientSecret` | required | client secret (may be `ENC(...)`) |
//! | `mksis.security.smtp.oauth.scope` | required | e.g. `https://outlook.office365.com/.default` |
//! | `mksis.logging.email.from` (is) | | SASL user when `mailgate.oauth.user` is unset (its address part) |
//!
//! Extensions, in `is.properties` ([`keys`]):
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `mailgate.oauth.user` | address of `mksis.logging.email.from` | SASL user (the mailbox) |
//! | `mailgate.oauth.mechanism` | `xoauth2` | `xoauth2` or `oauthbearer` |
//! | `mailgate.oauth.clientAuth` | `post` | `post` (client_secret_post) or `basic` (client_secret_basic) |
//! | `mailgate.oauth.timeoutSeconds` | `mailgate.smtp.timeoutSeconds` (30) | limit for each token request, from connect to the last byte of the response |
//! | `mailgate.oauth.refreshMarginSeconds` | 60 | fetch a new token this long before the old one expires |
//!
//! # Lifetimes and back-off
//!
//! - A token is valid for its `expires_in` from the moment the request was
//!   sent; without `expires_in` it counts as valid for
//!   [`DEFAULT_TOKEN_LIFETIME`] (300 s).
//! - It is replaced [`DEFAULT_REFRESH_MARGIN`] (60 s) before it expires; the
//!   margin is at most half the token's lifetime
//!   ([`MAX_MARGIN_FRACTION`]), so a 30 s token is reused for 15 s.
//! - While a refresh is running, callers whose current token has more than
//!   [`CachePolicy::min_remaining_lifetime`] ([`MIN_REMAINING_LIFETIME`],
//!   5 s) left get it without waiting; the others wait for the refresh and
//!   take its result, token or error, without fetching again (also for a
//!   token that is due again the moment it arrives, `expires_in` 0).
//! - If the refresh fails while the old token still has more than that
//!   left, the old token is used.
//! - After a failed fetch the endpoint is not asked again for
//!   [`MIN_BACKOFF`] (1 s), doubling with each further failure up to
//!   [`MAX_BACKOFF`] (60 s), or for as long as a `Retry-After` asks (delay
//!   in seconds or an HTTP date; at most [`MAX_BACKOFF`]); meanwhile callers
//!   get the last error. The failure is logged once, when it happens. When
//!   the last failure is more than [`QUIET_RESET_FACTOR`] × `max_backoff`
//!   (2 min) ago, the back-off starts again from [`MIN_BACKOFF`].
//!
//! # Refusals
//!
//! When the SMTP server refuses the token (`530`, `534`, `535`, `538`, also
//! after the `334` error challenge), the token is dropped and core retries
//! once, on a new connection with a fresh token. If a refused token was
//! already dropped within [`CachePolicy::refusal_backoff`]
//! ([`REFUSAL_BACKOFF`], 60 s), the refusal is final instead: the token is
//! kept, no token is requested, and there is no retry. A second refusal
//! that soon is about something a new token does not fix (`535 5.7.139`
//! SMTP AUTH disabled, `535 5.7.3` missing mailbox permissions), so a
//! `Mailer` that sends often asks the token endpoint for at most one token
//! per back-off instead of two per message. A refusal of a token that was
//! already replaced retries with the current one.
//!
//! # Exit codes of token endpoint failures
//!
//! | failure | [`ErrorKind`](mailgate_core::ErrorKind) |
//! | --- | --- |
//! | `invalid_client`, `unauthorized_client`, `invalid_grant`, other 401/403 | `AuthRefused` (77) |
//! | `invalid_scope`, `invalid_request`, `unsupported_grant_type`, other 4xx, HTML instead of JSON | `Config` (78) |
//! | 5xx, 408, 429, connection errors, timeouts | `Temporary` (75) |
//! | untrusted certificate, a token that is not `Bearer`, an `access_token` outside the RFC 6750 charset | `Unavailable` (69) |
//!
//! # Enabling it
//!
//! ```properties
//! # is.properties
//! mksis.smtp.oauth.authentication=true
//! mksis.smtp.authentication=false
//! mksis.smtp.ssl.enabled=true
//! mksis.logging.email.server.hostname=smtp.office365.com
//! mksis.logging.email.server.port=587
//! mksis.logging.email.from=alm@example.com
//!
//! # security.properties
//! mksis.security.smtp.oauth.clientID=00000000-0000-0000-0000-000000000000
//! mksis.security.smtp.oauth.clientSecret=ENC(...)
//! mksis.security.smtp.oauth.tokenEndpointURL=https://login.microsoftonline.com/TENANT/oauth2/v2.0/token
//! mksis.security.smtp.oauth.scope=https://outlook.office365.com/.default
//! ```
//!
//! A program registers [`DESCRIPTOR`] (the `mailgate` facade's
//! `default_registry()` does under its `oauth` feature):
//!
//! ```
//! let registry = mailgate_core::Registry::new()
//!     .with(&mailgate_auth_oauth::DESCRIPTOR)
//!     .unwrap();
//! assert_eq!(registry.secret_keys(), [mailgate_auth_oauth::keys::CLIENT_SECRET]);
//! ```
//!
//! The token client and cache also work on their own:
//!
//! ```no_run
//! use mailgate_auth_oauth::{TokenCache, TokenClient, TokenClientConfig};
//! use mailgate_core::secrecy::{ExposeSecret, SecretString};
//!
//! # async fn run() -> mailgate_core::Result<()> {
//! let config = TokenClientConfig::new(
//!     "https://login.microsoftonline.com/TENANT/oauth2/v2.0/token",
//!     "client-id",
//!     SecretString::from("client-secret"),
//!     Some("https://outlook.office365.com/.default".to_owned()),
//! );
//! let cache = TokenCache::new(TokenClient::new(config)?);
//! let token = cache.token().await?; // fetched once, then reused
//! # let _ = token.expose_secret();
//! # Ok(())
//! # }
//! ```

mod backoff;
mod builder;
mod cache;
mod client;
mod config;
mod endpoint;
mod redaction;
mod response;
pub mod sasl;
mod strategy;

pub use builder::{ClientCredentials, MICROSOFT_365_SCOPE, OAuthBuilderExt};
pub use cache::{
    CachePolicy, DEFAULT_REFRESH_MARGIN, MAX_BACKOFF, MAX_MARGIN_FRACTION, MIN_BACKOFF,
    MIN_REMAINING_LIFETIME, QUIET_RESET_FACTOR, REFUSAL_BACKOFF, Refusal, TokenCache,
    TokenProvider,
};
pub use client::{ClientAuth, TokenClient, TokenClientConfig};
pub use config::OAuthConfig;
pub use redaction::EXCERPT_LEN;
pub use response::{DEFAULT_TOKEN_LIFETIME, Token, TokenError};
pub use sasl::{Mechanism, SaslError};
pub use strategy::OAuthStrategy;

/// The name the strategy is registered under.
pub const STRATEGY_NAME: &str = "oauth";

/// The `mailgate.oauth.*` keys this crate reads (the vendor's keys are in
/// [`mailgate_core::keys`]).
pub mod keys {
    use mailgate_core::KeySpec;

    /// OAuth client id (`security.properties`).
    pub const CLIENT_ID: &str = "mksis.security.smtp.oauth.clientID";
    /// OAuth client secret (`security.properties`; may be `ENC(...)`).
    pub const CLIENT_SECRET: &str = "mksis.security.smtp.oauth.clientSecret";
    /// Token endpoint URL (`security.properties`).
    pub const TOKEN_ENDPOINT: &str = "mksis.security.smtp.oauth.tokenEndpointURL";
    /// Scope (`security.properties`).
    pub const SCOPE: &str = "mksis.security.smtp.oauth.scope";
    /// SASL user; default: the address of `mksis.logging.email.from`.
    pub const USER: &str = "mailgate.oauth.user";
    /// `xoauth2` (default) or `oauthbearer`.
    pub const MECHANISM: &str = "mailgate.oauth.mechanism";
    /// `post` (client_secret_post, default) or `basic` (client_secret_basic).
    pub const CLIENT_AUTH: &str = "mailgate.oauth.clientAuth";
    /// Limit for each token request in seconds; default `mailgate.smtp.timeoutSeconds`.
    pub const TIMEOUT_SECONDS: &str = "mailgate.oauth.timeoutSeconds";
    /// Seconds before expiry a token is replaced; default 60.
    pub const REFRESH_MARGIN_SECONDS: &str = "mailgate.oauth.refreshMarginSeconds";

    /// Every key above, as the descriptor declares them.
    pub const ALL: &[KeySpec] = &[
        KeySpec::new(CLIENT_ID).in_security_file(),
        KeySpec::secret(CLIENT_SECRET).in_security_file(),
        KeySpec::new(TOKEN_ENDPOINT)
            .in_security_file()
            .url()
            .max_len(2048),
        KeySpec::new(SCOPE).in_security_file().max_len(2048),
        KeySpec::new(USER),
        KeySpec::new(MECHANISM).max_len(64),
        KeySpec::new(CLIENT_AUTH).max_len(64),
        KeySpec::new(TIMEOUT_SECONDS).max_len(64),
        KeySpec::new(REFRESH_MARGIN_SECONDS).max_len(64),
    ];
}

fn build(
    settings: &mailgate_core::Settings,
) -> mailgate_core::Result<mailgate_core::SharedStrategy> {
    Ok(mailgate_core::SharedStrategy::new(
        OAuthStrategy::from_settings(settings)?,
    ))
}

/// The registration: name `oauth`, the vendor's OAuth mode, and [`keys::ALL`]
/// (the client secret declared secret).
pub static DESCRIPTOR: mailgate_core::StrategyDescriptor =
    mailgate_core::StrategyDescriptor::new(STRATEGY_NAME, build, module_path!())
        .provides(mailgate_core::VendorMode::OAuth)
        .keys(keys::ALL);
