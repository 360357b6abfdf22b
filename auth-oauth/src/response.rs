//! What the token endpoint answers: a [`Token`], or a [`TokenError`] that
//! says what went wrong and which key to check.

use std::time::{Duration, Instant, SystemTime};

use mailgate_core::{Error, ErrorKind};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use secrecy::SecretString;
use serde_json::Value;
use url::Url;

use crate::STRATEGY_NAME;
use crate::backoff::MAX_BACKOFF;
use crate::endpoint::host_port;
use crate::keys as oauth_keys;
use crate::redaction::{SecretMask, describe_content_type, looks_like_html};

/// How long a token without `expires_in` counts as valid: short, so a token
/// of unknown lifetime is not used long after the endpoint revoked it.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Limit for an `error_description` (Microsoft's carry trace and correlation ids).
const DESCRIPTION_LEN: usize = 400;

/// The scope Microsoft 365 SMTP wants with client credentials.
const M365_SCOPE: &str = "https://outlook.office365.com/.default";

/// Lifetimes beyond this are capped (avoids `Instant` overflow on absurd values).
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// An access token and when it was issued.
#[derive(Clone)]
pub struct Token {
    secret: SecretString,
    issued_at: Instant,
    lifetime: Duration,
    lifetime_known: bool,
}

impl Token {
    /// A token issued now, for a [`TokenProvider`](crate::TokenProvider)
    /// other than [`TokenClient`](crate::TokenClient). `expires_in` is the
    /// lifetime the issuer gave (capped at 366 days); `None` means it gave
    /// none, and the token counts as valid for [`DEFAULT_TOKEN_LIFETIME`].
    pub fn new(secret: SecretString, expires_in: Option<Duration>) -> Self {
        Self::issued(secret, Instant::now(), expires_in)
    }

    /// A token whose lifetime counts from `issued_at` (when the request was sent).
    pub(crate) fn issued(
        secret: SecretString,
        issued_at: Instant,
        expires_in: Option<Duration>,
    ) -> Self {
        Self {
            secret,
            issued_at,
            lifetime: expires_in.map_or(DEFAULT_TOKEN_LIFETIME, |d| d.min(MAX_LIFETIME)),
            lifetime_known: expires_in.is_some(),
        }
    }

    /// The access token.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// When the request that got it was sent (its lifetime counts from here).
    pub fn issued_at(&self) -> Instant {
        self.issued_at
    }

    /// `expires_in`, or [`DEFAULT_TOKEN_LIFETIME`] when the endpoint gave none.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Whether the endpoint said how long the token lives.
    pub fn lifetime_known(&self) -> bool {
        self.lifetime_known
    }

    /// When the token expires.
    pub fn expires_at(&self) -> Instant {
        self.issued_at
            .checked_add(self.lifetime)
            .unwrap_or(self.issued_at + MAX_LIFETIME)
    }

    pub(crate) fn into_secret(self) -> SecretString {
        self.secret
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .field("lifetime_known", &self.lifetime_known)
            .finish_non_exhaustive()
    }
}

/// A token endpoint failure. Its text never holds the secret or a token.
///
/// Converts into [`mailgate_core::Error::Strategy`] with strategy `oauth`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
}

impl TokenError {
    /// A failure of `kind` (it decides the exit code), e.g. from a
    /// [`TokenProvider`](crate::TokenProvider).
    ///
    /// `message` goes as it is into errors and log lines: it must hold no
    /// secret (no client secret, no token, no credentials or query of a URL).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same failure, asking not to be asked again for `delay` (at most
    /// [`MAX_BACKOFF`]): a [`TokenCache`](crate::TokenCache)
    /// backs off at least this long.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay.min(MAX_BACKOFF));
        self
    }

    /// How to treat the failure (decides the exit code).
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The endpoint's `Retry-After` (delay in seconds or an HTTP date), when
    /// it sent one with a 429 or 503; at most [`MAX_BACKOFF`].
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    pub(crate) fn with_note(&self, note: &str) -> Self {
        Self {
            message: format!("{} ({note})", self.message),
            ..self.clone()
        }
    }
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Self {
        Error::Strategy {
            strategy: STRATEGY_NAME.to_owned(),
            kind: e.kind,
            source: Box::new(e),
        }
    }
}

/// Who was asked for what: named in messages and hints. The client's
/// secret stays with the [`SecretMask`].
pub(crate) struct Sent<'a> {
    /// The endpoint URL.
    pub(crate) endpoint: &'a Url,
    /// The endpoint as shown: `scheme://host[:port]/path`.
    pub(crate) shown: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) scope: Option<&'a str>,
    /// Masks the client secret in the endpoint's text.
    pub(crate) mask: &'a SecretMask,
}

/// A response as read off the wire.
pub(crate) struct RawResponse {
    pub(crate) status: StatusCode,
    pub(crate) content_type: String,
    /// `Retry-After`, whatever the status.
    pub(crate) retry_after: Option<Duration>,
    /// At most the client's body limit.
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    /// The status and headers; the body is read after.
    pub(crate) fn head(status: StatusCode, headers: &HeaderMap) -> Self {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            status,
            content_type: header(CONTENT_TYPE).unwrap_or_default().to_owned(),
            retry_after: header(RETRY_AFTER).and_then(|v| parse_retry_after(v, SystemTime::now())),
            body: Vec::new(),
        }
    }
}

/// The token in `response`, or what went wrong.
pub(crate) fn interpret(
    sent: &Sent<'_>,
    response: &RawResponse,
    issued_at: Instant,
) -> Result<Token, TokenError> {
    let RawResponse {
        status,
        content_type,
        body,
        ..
    } = response;
    let json = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object);
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let error_code = field("error");

    if status.is_success() && error_code.is_none() {
        let Some(json) = &json else {
            // Never show a 2xx body that is not HTML: it may hold a token
            // in another format (e.g. form-encoded).
            let what = if looks_like_html(content_type, body) {
                format!(": {}", sent.mask.excerpt(body))
            } else {
                format!(" ({} bytes)", body.len())
            };
            return Err(TokenError::new(
                ErrorKind::Config,
                format!(
                    "the token endpoint {} answered HTTP {} with {} instead of a JSON token response{what}; check `{}`",
                    sent.shown,
                    status.as_u16(),
                    describe_content_type(content_type),
                    oauth_keys::TOKEN_ENDPOINT
                ),
            ));
        };
        return token_from(sent, json, issued_at);
    }

    let retry_after = response
        .retry_after
        .filter(|_| matches!(status.as_u16(), 429 | 503))
        .map(|d| d.min(MAX_BACKOFF));
    let error = match error_code {
        None => status_error(sent, response, json.is_some(), retry_after),
        Some(error) => oauth_error(sent, *status, error.trim(), field("error_description")),
    };
    Err(match retry_after {
        Some(d) => error.with_retry_after(d),
        None => error,
    })
}

/// A failure without an OAuth `error` code: classified by the status.
fn status_error(
    sent: &Sent<'_>,
    response: &RawResponse,
    is_json: bool,
    retry_after: Option<Duration>,
) -> TokenError {
    let RawResponse {
        status,
        content_type,
        body,
        ..
    } = response;
    let code = status.as_u16();
    let excerpt = if body.is_empty() {
        String::new()
    } else {
        format!(": {}", sent.mask.excerpt(body))
    };
    let (kind, hint) = match code {
        500..=599 | 408 | 429 => (ErrorKind::Temporary, String::new()),
        401 | 403 => (
            ErrorKind::AuthRefused,
            format!(
                "; check `{}` and `{}`",
                oauth_keys::CLIENT_ID,
                oauth_keys::CLIENT_SECRET
            ),
        ),
        300..=399 => (
            ErrorKind::Config,
            format!(
                "; redirects are not followed: put the final URL in `{}`",
                oauth_keys::TOKEN_ENDPOINT
            ),
        ),
        _ => (
            ErrorKind::Config,
            format!("; check `{}`", oauth_keys::TOKEN_ENDPOINT),
        ),
    };
    let what = if is_json {
        "a JSON body without `error`".to_owned()
    } else if body.is_empty() {
        "an empty body".to_owned()
    } else {
        describe_content_type(content_type)
    };
    let retry = retry_after
        .map(|d| format!(" (Retry-After {}s)", d.as_secs()))
        .unwrap_or_default();
    TokenError::new(
        kind,
        format!(
            "the token endpoint {} answered HTTP {code}{retry} with {what}{excerpt}{hint}",
            sent.shown
        ),
    )
}

/// A failure with an OAuth `error` code (RFC 6749 §5.2), classified on the
/// code as sent and shown cleaned.
fn oauth_error(
    sent: &Sent<'_>,
    status: StatusCode,
    error: &str,
    description: Option<String>,
) -> TokenError {
    let description = description
        .map(|d| sent.mask.clean(&d, DESCRIPTION_LEN))
        .filter(|d| !d.is_empty());
    let shown_error = sent.mask.clean(error, 60);
    let said = match &description {
        Some(d) => format!("{shown_error}: {d}"),
        None => shown_error,
    };
    let (kind, hint) = classify(sent, status, error);
    let verb = match kind {
        ErrorKind::AuthRefused => "refused the client credentials",
        ErrorKind::Temporary => "failed",
        _ => "rejected the request",
    };
    TokenError::new(
        kind,
        format!(
            "the token endpoint {} {verb} (HTTP {}, {said}){hint}",
            sent.shown,
            status.as_u16()
        ),
    )
}

/// The kind of an OAuth error code, and a hint at the key to check.
fn classify(sent: &Sent<'_>, status: StatusCode, error: &str) -> (ErrorKind, String) {
    match error {
        _ if status.is_server_error() => (ErrorKind::Temporary, String::new()),
        "invalid_client" => (
            ErrorKind::AuthRefused,
            format!(
                "; check `{}` and `{}`",
                oauth_keys::CLIENT_ID,
                oauth_keys::CLIENT_SECRET
            ),
        ),
        "unauthorized_client" => (
            ErrorKind::AuthRefused,
            format!(
                "; the client `{}` (`{}`) may not use the client-credentials grant",
                sent.client_id,
                oauth_keys::CLIENT_ID
            ),
        ),
        "invalid_grant" => (ErrorKind::AuthRefused, String::new()),
        "invalid_scope" => (
            ErrorKind::Config,
            match sent.scope {
                Some(M365_SCOPE) => {
                    format!("; check `{}` (now `{M365_SCOPE}`)", oauth_keys::SCOPE)
                }
                Some(s) => format!(
                    "; check `{}` (now `{s}`; Microsoft 365 wants `{M365_SCOPE}`)",
                    oauth_keys::SCOPE
                ),
                None => format!("; set `{}`", oauth_keys::SCOPE),
            },
        ),
        "invalid_request" | "unsupported_grant_type" => (
            ErrorKind::Config,
            format!(
                "; check `{}` (the tenant in the URL) and `{}`",
                oauth_keys::TOKEN_ENDPOINT,
                oauth_keys::CLIENT_AUTH
            ),
        ),
        "temporarily_unavailable" | "server_error" | "slow_down" => {
            (ErrorKind::Temporary, String::new())
        }
        _ => match status.as_u16() {
            401 | 403 => (ErrorKind::AuthRefused, String::new()),
            408 | 429 => (ErrorKind::Temporary, String::new()),
            _ => (ErrorKind::Config, String::new()),
        },
    }
}

/// The token in a successful JSON response (RFC 6749 §5.1).
fn token_from(sent: &Sent<'_>, json: &Value, issued_at: Instant) -> Result<Token, TokenError> {
    let fail = |what: &str| {
        TokenError::new(
            ErrorKind::Unavailable,
            format!("the token endpoint {} answered with {what}", sent.shown),
        )
    };
    let secret = match json.get("access_token").and_then(Value::as_str) {
        Some(t) if !t.trim().is_empty() => t.trim(),
        _ => return Err(fail("no `access_token`")),
    };
    if !crate::sasl::valid_token(secret) {
        // Never shown: it may be a real token in an odd wrapping.
        return Err(TokenError::new(
            ErrorKind::Unavailable,
            format!(
                "the token endpoint {} answered with an `access_token` that is not an RFC 6750 bearer token (only A-Z a-z 0-9 - . _ ~ + / and trailing =; no spaces or control characters), which cannot go into SMTP AUTH",
                host_port(sent.endpoint)
            ),
        ));
    }
    let secret = SecretString::from(secret.to_owned());
    match json.get("token_type").and_then(Value::as_str) {
        Some(t) if t.trim().eq_ignore_ascii_case("bearer") => {}
        Some(t) => {
            return Err(fail(&format!(
                "a token of type `{}`; SMTP needs a `Bearer` token",
                sent.mask.clean(t, 40)
            )));
        }
        None => {
            return Err(fail(
                "no `token_type` (RFC 6749 §5.1 requires it; SMTP needs `Bearer`)",
            ));
        }
    }
    let expires_in = match json.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        // Some endpoints (Azure AD v1) send it as a string.
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    // Clamped before converting: `from_secs_f64` panics on huge values.
    let lifetime = expires_in
        .filter(|s| s.is_finite())
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, MAX_LIFETIME.as_secs_f64())));
    Ok(Token::issued(secret, issued_at, lifetime))
}

/// A `Retry-After` value: a delay in seconds, or an HTTP date (RFC 9110
/// §10.2.3) turned into the time left until then (zero when it is past).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An HTTP date in any of the three forms RFC 9110 §5.6.7 says a recipient
/// accepts (IMF-fixdate, RFC 850, asctime), parsed by `httpdate`.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    match httpdate::parse_http_date(value) {
        Ok(at) => Some(at),
        // RFC 9110 allows a leap second, which httpdate refuses: read `:60` as
        // `:59` plus one second. Seconds are the only field followed by a space.
        Err(_) if value.contains(":60 ") => {
            httpdate::parse_http_date(&value.replacen(":60 ", ":59 ", 1))
                .ok()
                .map(|at| at + Duration::from_secs(1))
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::endpoint::shown_url;

    /// What a client for `secret` would read responses against.
    struct Fixture {
        url: Url,
        shown: String,
        mask: SecretMask,
    }

    impl Fixture {
        fn new(secret: &str) -> Self {
            let url = Url::parse("https://login.example.com/tenant/oauth2/v2.0/token").unwrap();
            Self {
                shown: shown_url(&url),
                url,
                mask: SecretMask::new("my client", &SecretString::from(secret.to_owned())),
            }
        }

        fn sent(&self) -> Sent<'_> {
            Sent {
                endpoint: &self.url,
                shown: &self.shown,
                client_id: "my client",
                scope: None,
                mask: &self.mask,
            }
        }
    }

    fn lifetime_of(expires_in: Value) -> Result<Duration, TokenError> {
        let json = serde_json::json!({
            "access_token": "tok", "token_type": "Bearer", "expires_in": expires_in
        });
        token_from(&Fixture::new("secret").sent(), &json, Instant::now()).map(|t| t.lifetime())
    }

    #[test]
    fn absurd_expires_in_is_clamped_not_a_panic() {
        for huge in [
            serde_json::json!(1e20),
            serde_json::json!(1.7e308),
            serde_json::json!(u64::MAX),
            serde_json::json!("1e20"),
            serde_json::json!("18446744073709551616"),
        ] {
            assert_eq!(lifetime_of(huge).unwrap(), MAX_LIFETIME);
        }
        for negative in [serde_json::json!(-5), serde_json::json!(-1e20)] {
            assert_eq!(lifetime_of(negative).unwrap(), Duration::ZERO);
        }
        assert_eq!(
            lifetime_of(serde_json::json!(0.5)).unwrap(),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn access_token_must_be_a_b64token() {
        let fixture = Fixture::new("secret");
        let sent = fixture.sent();
        for bad in [
            "has space",
            "a\u{1}auth=Bearer x",
            "tök",
            "a\tb",
            "x=y",
            "quote\"d",
        ] {
            let json = serde_json::json!({"access_token": bad, "token_type": "Bearer"});
            let err = token_from(&sent, &json, Instant::now()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{bad:?}");
            let msg = err.to_string();
            assert!(msg.contains("login.example.com"), "{msg}");
            assert!(msg.contains("RFC 6750"), "{msg}");
            assert!(!msg.contains(bad), "{msg}");
        }
        // Surrounding whitespace is trimmed, as before.
        let json = serde_json::json!({"access_token": " a.b-c_d~e+f/g== ", "token_type": "Bearer"});
        let token = token_from(&sent, &json, Instant::now()).unwrap();
        assert_eq!(token.secret().expose_secret(), "a.b-c_d~e+f/g==");
    }

    #[test]
    fn error_codes_are_classified_as_sent() {
        // The secret equals the error code: the code is withheld from the
        // message but still decides the kind.
        let fixture = Fixture::new("invalid_client");
        let response = RawResponse {
            status: StatusCode::BAD_REQUEST,
            content_type: "application/json".to_owned(),
            retry_after: None,
            body: br#"{"error":"invalid_client"}"#.to_vec(),
        };
        let err = interpret(&fixture.sent(), &response, Instant::now()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthRefused);
        assert!(!err.to_string().contains("invalid_client"), "{err}");
    }

    #[test]
    fn tokens_from_other_providers() {
        let token = Token::new(SecretString::from("t".to_owned()), None);
        assert_eq!(token.lifetime(), DEFAULT_TOKEN_LIFETIME);
        assert!(!token.lifetime_known());
        let token = Token::new(
            SecretString::from("t".to_owned()),
            Some(Duration::from_secs(u64::MAX)),
        );
        assert_eq!(token.lifetime(), MAX_LIFETIME);
        assert!(token.lifetime_known());
        assert!(token.expires_at() > Instant::now());

        let err = TokenError::new(ErrorKind::Temporary, "busy")
            .with_retry_after(Duration::from_secs(3600));
        assert_eq!(err.retry_after(), Some(MAX_BACKOFF));
        assert_eq!(err.to_string(), "busy");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(form), Some(date), "{form}");
        }
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:60 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_835_481_600))
        );
        for bad in [
            "",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 99999 08:49:37 GMT",
            "Sun, 06-Nov-1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }

        let now = date;
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: no wait"
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("in a while", now), None);
    }
}
