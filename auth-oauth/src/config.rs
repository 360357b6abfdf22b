//! The strategy's configuration, read from [`Settings`].

use std::time::Duration;

use mailgate_core::{ConfigError, Origin, Settings, keys};

use crate::STRATEGY_NAME;
use crate::cache::CachePolicy;
use crate::client::{ClientAuth, TokenClientConfig};
use crate::endpoint::{check_endpoint, redact_endpoint};
use crate::keys as oauth_keys;
use crate::sasl::{self, Mechanism};

/// Everything the `oauth` strategy needs.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// The token endpoint and client credentials.
    pub token: TokenClientConfig,
    /// Token reuse and back-off.
    pub cache: CachePolicy,
    /// The SASL user (the mailbox).
    pub user: String,
    /// The SASL mechanism.
    pub mechanism: Mechanism,
}

impl OAuthConfig {
    /// Reads the keys listed in the crate docs. Errors name the key and its file.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let needed_by = STRATEGY_NAME;
        let endpoint = settings.require(oauth_keys::TOKEN_ENDPOINT, needed_by)?;
        // Not `settings.invalid`: that shows the value as written, and a URL
        // may carry `user:password@` or a signed query.
        check_endpoint(endpoint).map_err(|expected| {
            invalid_shown(
                settings,
                oauth_keys::TOKEN_ENDPOINT,
                redact_endpoint(endpoint),
                expected,
            )
        })?;
        let client_id = settings
            .require(oauth_keys::CLIENT_ID, needed_by)?
            .to_owned();
        let scope = settings.require(oauth_keys::SCOPE, needed_by)?.to_owned();
        let client_secret = settings.require_secret(oauth_keys::CLIENT_SECRET, needed_by)?;

        let client_auth = match settings.value(oauth_keys::CLIENT_AUTH) {
            None => ClientAuth::Post,
            Some(v)
                if v.eq_ignore_ascii_case("post")
                    || v.eq_ignore_ascii_case("client_secret_post") =>
            {
                ClientAuth::Post
            }
            Some(v)
                if v.eq_ignore_ascii_case("basic")
                    || v.eq_ignore_ascii_case("client_secret_basic") =>
            {
                ClientAuth::Basic
            }
            Some(_) => return Err(settings.invalid(oauth_keys::CLIENT_AUTH, "`post` or `basic`")),
        };
        let mechanism = match settings.value(oauth_keys::MECHANISM) {
            None => Mechanism::Xoauth2,
            Some(v) if v.eq_ignore_ascii_case("xoauth2") => Mechanism::Xoauth2,
            Some(v) if v.eq_ignore_ascii_case("oauthbearer") => Mechanism::OAuthBearer,
            Some(_) => {
                return Err(settings.invalid(oauth_keys::MECHANISM, "`xoauth2` or `oauthbearer`"));
            }
        };
        let timeout = match settings.value(oauth_keys::TIMEOUT_SECONDS) {
            None => settings.server().timeout,
            Some(_) => seconds(settings, oauth_keys::TIMEOUT_SECONDS, false)?,
        };
        let refresh_margin = match settings.value(oauth_keys::REFRESH_MARGIN_SECONDS) {
            None => crate::DEFAULT_REFRESH_MARGIN,
            Some(_) => seconds(settings, oauth_keys::REFRESH_MARGIN_SECONDS, true)?,
        };
        let user = match settings.value(oauth_keys::USER).map(str::trim) {
            Some(u) if sasl::valid_user(u) => u.to_owned(),
            Some(u) => {
                return Err(invalid_shown(
                    settings,
                    oauth_keys::USER,
                    u.escape_debug().to_string(),
                    "a mailbox name without control characters",
                ));
            }
            None => {
                settings.require(keys::EMAIL_FROM, needed_by)?;
                match settings.sender() {
                    Some(m) => m.email.to_string(),
                    None => {
                        return Err(settings.invalid(
                            keys::EMAIL_FROM,
                            "an e-mail address such as alm@example.com",
                        ));
                    }
                }
            }
        };
        Ok(Self {
            token: TokenClientConfig {
                endpoint: endpoint.to_owned(),
                client_id,
                client_secret,
                scope: Some(scope),
                client_auth,
                timeout,
                extra_root_certs: settings
                    .server()
                    .ca_files
                    .iter()
                    .map(|c| c.pem.clone())
                    .collect(),
            },
            cache: CachePolicy {
                refresh_margin,
                ..CachePolicy::default()
            },
            user,
            mechanism,
        })
    }
}

/// [`ConfigError::Invalid`] for `key` showing `shown` instead of the raw value.
fn invalid_shown(settings: &Settings, key: &str, shown: String, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        origin: settings.origin(key).cloned().unwrap_or(Origin::Builder),
        value: Some(shown),
        expected: expected.to_owned(),
    }
}

/// A number of seconds, above 0 (or 0 when `zero_ok`), at most 3600.
fn seconds(settings: &Settings, key: &str, zero_ok: bool) -> Result<Duration, ConfigError> {
    settings
        .value(key)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && (*s > 0.0 || (zero_ok && *s == 0.0)) && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            settings.invalid(
                key,
                if zero_ok {
                    "a number of seconds from 0 to 3600"
                } else {
                    "a number of seconds above 0, at most 3600"
                },
            )
        })
}
