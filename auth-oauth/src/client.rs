//! The token endpoint client: one client-credentials request (RFC 6749 §4.4).

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailgate_core::smtp::Redactor;
use mailgate_core::{ConfigError, Error, ErrorKind, Origin, keys};
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::STRATEGY_NAME;
use crate::keys as oauth_keys;

/// How long a token without `expires_in` counts as valid: short, so a token
/// of unknown lifetime is not used long after the endpoint revoked it.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// At most this many characters of an endpoint's text go into an error.
pub const EXCERPT_LEN: usize = 120;

/// Limit for an `error_description` (Microsoft's carry trace and correlation ids).
const DESCRIPTION_LEN: usize = 400;

/// The largest response body read; token responses are a few kilobytes.
const MAX_BODY: usize = 256 * 1024;

/// The scope Microsoft 365 SMTP wants with client credentials.
const M365_SCOPE: &str = "https://outlook.office365.com/.default";

/// Lifetimes beyond this are capped (avoids `Instant` overflow on absurd values).
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// A form of the client secret shorter than this is not masked inside
/// endpoint text (that would mangle it): text containing it is withheld.
const MIN_MASK_LEN: usize = 4;

/// What replaces endpoint text that contains a form of a client secret too
/// short to mask.
const WITHHELD: &str = "(text withheld: it contains the client secret)";

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body (what Microsoft documents).
    #[default]
    Post,
    /// HTTP Basic with the form-urlencoded id and secret.
    Basic,
}

impl ClientAuth {
    /// `client_secret_post` or `client_secret_basic`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Post => "client_secret_post",
            ClientAuth::Basic => "client_secret_basic",
        }
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a [`TokenClient`] needs.
#[derive(Clone)]
pub struct TokenClientConfig {
    /// The token endpoint; `https://`, or `http://` on loopback only.
    pub endpoint: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// The scope, sent when `Some`.
    pub scope: Option<String>,
    /// How the client authenticates.
    pub client_auth: ClientAuth,
    /// Limit for each request, from connect to the last byte of the response.
    pub timeout: Duration,
    /// PEM certificates trusted in addition to the system's roots.
    pub extra_root_certs: Vec<Vec<u8>>,
}

impl TokenClientConfig {
    /// A configuration with `client_secret_post`, a 30 s timeout and the system's roots.
    pub fn new(
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        scope: Option<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            client_id: client_id.into(),
            client_secret,
            scope,
            client_auth: ClientAuth::Post,
            timeout: Duration::from_secs(30),
            extra_root_certs: Vec::new(),
        }
    }
}

impl fmt::Debug for TokenClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClientConfig")
            .field("endpoint", &redact_endpoint(&self.endpoint))
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .field("client_auth", &self.client_auth)
            .field("timeout", &self.timeout)
            .field("extra_root_certs", &self.extra_root_certs.len())
            .finish()
    }
}

/// An access token and when it was issued.
#[derive(Clone)]
pub struct Token {
    secret: SecretString,
    issued_at: Instant,
    lifetime: Duration,
    lifetime_known: bool,
}

impl Token {
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

    #[cfg(test)]
    pub(crate) fn for_tests(lifetime: Duration) -> Self {
        Self {
            secret: SecretString::from("t".to_owned()),
            issued_at: Instant::now(),
            lifetime,
            lifetime_known: true,
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// How to treat the failure (decides the exit code).
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The endpoint's `Retry-After` (delay in seconds or an HTTP date), when
    /// it sent one with a 429 or 503; at most [`MAX_BACKOFF`](crate::MAX_BACKOFF).
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

/// Fetches access tokens from one endpoint with the client-credentials grant.
pub struct TokenClient {
    http: reqwest::Client,
    endpoint: Url,
    shown: String,
    client_id: String,
    client_secret: SecretString,
    scope: Option<String>,
    client_auth: ClientAuth,
    timeout: Duration,
    /// Masks the client secret in every form an endpoint might echo.
    redactor: Redactor,
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient")
            .field("endpoint", &self.shown)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .field("client_auth", &self.client_auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why an endpoint URL is unacceptable, or the parsed URL.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<Url, &'static str> {
    const EXPECTED: &str = "an https:// URL of the token endpoint (http:// only on loopback: 127.0.0.0/8, ::1, localhost)";
    let url = Url::parse(endpoint.trim()).map_err(|_| EXPECTED)?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        _ => return Err(EXPECTED),
    }
    if url.host().is_none() {
        return Err(EXPECTED);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "an https:// URL without user:password@ (the client credentials go in clientID and clientSecret)",
        );
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `scheme://host[:port]/path`: the URL without user info, query or
/// fragment, for messages (a query may carry a signature or key).
fn shown_url(url: &Url) -> String {
    let host = match url.host() {
        Some(h) => h.to_string(),
        None => String::new(),
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}{}", url.scheme(), url.path())
}

/// The endpoint as it may be shown anywhere (errors, `Debug`):
/// `scheme://host[:port]/path`, never `user:password@`, the query or the
/// fragment. Text that is not a URL is cut at `?`/`#` and loses everything
/// up to an `@` before the path.
pub(crate) fn redact_endpoint(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    if let Some(url) = Url::parse(endpoint).ok().filter(|u| u.host().is_some()) {
        return shown_url(&url);
    }
    let cut = endpoint.find(['?', '#']).unwrap_or(endpoint.len());
    let text = &endpoint[..cut];
    let (scheme, rest) = match text.find("://") {
        Some(at) => text.split_at(at + 3),
        None => ("", text),
    };
    let path_at = rest.find(['/', '\\']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_at);
    let authority = authority.rsplit('@').next().unwrap_or_default();
    truncate(
        &collapse(&format!("{scheme}{authority}{path}")),
        EXCERPT_LEN,
    )
}

/// application/x-www-form-urlencoded, as RFC 6749 §2.3.1 asks for HTTP Basic.
/// The redactor for one client's secret and its HTTP Basic credentials.
fn secret_redactor(client_id: &str, secret: &str) -> Redactor {
    let mut redactor = Redactor::new();
    if !secret.is_empty() {
        redactor.protect(secret);
        redactor.protect(&collapse(secret));
        redactor.protect(&format!(
            "{}:{}",
            form_encode(client_id),
            form_encode(secret)
        ));
        redactor.protect(&format!("{client_id}:{secret}"));
    }
    redactor
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl TokenClient {
    /// A client for `config`. A bad endpoint URL is a [`ConfigError`] naming
    /// `mksis.security.smtp.oauth.tokenEndpointURL`.
    pub fn new(config: TokenClientConfig) -> Result<Self, Error> {
        let TokenClientConfig {
            endpoint,
            client_id,
            client_secret,
            scope,
            client_auth,
            timeout,
            extra_root_certs,
        } = config;
        let url = check_endpoint(&endpoint).map_err(|expected| ConfigError::Invalid {
            key: oauth_keys::TOKEN_ENDPOINT.to_owned(),
            origin: Origin::Builder,
            value: Some(redact_endpoint(&endpoint)),
            expected: expected.to_owned(),
        })?;
        // No reqwest timeouts: `fetch` bounds the whole exchange (connect,
        // TLS, request, headers and body) with one `tokio::time::timeout`.
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("mailgate/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if is_loopback(&url) {
            builder = builder.no_proxy();
        }
        let mut certs = Vec::new();
        for pem in &extra_root_certs {
            certs.extend(reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                TokenError::new(
                    ErrorKind::Config,
                    format!(
                        "a CA file from `{}` is unusable for HTTPS: {e}",
                        keys::SSL_CA_FILE
                    ),
                )
            })?);
        }
        if !certs.is_empty() {
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| {
            TokenError::new(
                ErrorKind::Unavailable,
                format!("cannot set up the HTTPS client: {}", error_chain(&e)),
            )
        })?;
        let redactor = secret_redactor(&client_id, client_secret.expose_secret());
        Ok(Self {
            http,
            shown: shown_url(&url),
            endpoint: url,
            client_id,
            client_secret,
            scope,
            client_auth,
            timeout,
            redactor,
        })
    }

    /// `host[:port]` of the endpoint.
    pub fn endpoint_host(&self) -> String {
        let host = self.endpoint.host_str().unwrap_or_default();
        match self.endpoint.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }

    /// The endpoint URL as shown in messages: `scheme://host[:port]/path`.
    pub fn endpoint(&self) -> &str {
        &self.shown
    }

    /// The scope sent.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The client authentication method.
    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// The limit for each request, from connect to the last byte of the body.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Requests a new token. Every call goes to the endpoint: use a
    /// [`TokenCache`](crate::TokenCache) to reuse tokens.
    pub async fn fetch(&self) -> Result<Token, TokenError> {
        let issued_at = Instant::now();
        tracing::debug!(
            target: "mailgate::oauth",
            "requesting a token from {} ({}, scope {:?})",
            self.shown,
            self.client_auth,
            self.scope
        );
        let exchange = self.exchange();
        let (status, content_type, retry_after, body) =
            match tokio::time::timeout(self.timeout, exchange).await {
                Ok(r) => r?,
                Err(_) => return Err(self.timeout_error()),
            };
        let token = self.interpret(status, &content_type, retry_after, &body, issued_at)?;
        tracing::debug!(
            target: "mailgate::oauth",
            "got a token from {} valid for {}s{}",
            self.shown,
            token.lifetime.as_secs(),
            if token.lifetime_known { "" } else { " (no expires_in: assumed)" }
        );
        Ok(token)
    }

    async fn exchange(
        &self,
    ) -> Result<(reqwest::StatusCode, String, Option<Duration>, Vec<u8>), TokenError> {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header(ACCEPT, "application/json");
        match self.client_auth {
            ClientAuth::Post => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", self.client_secret.expose_secret()));
            }
            ClientAuth::Basic => {
                request = request.basic_auth(
                    form_encode(&self.client_id),
                    Some(form_encode(self.client_secret.expose_secret())),
                );
            }
        }
        let mut response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            let room = MAX_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY {
                break;
            }
        }
        Ok((status, content_type, retry_after, body))
    }

    fn timeout_error(&self) -> TokenError {
        TokenError::new(
            ErrorKind::Temporary,
            format!(
                "the token endpoint {} did not answer within {}s (`{}`, default `{}`)",
                self.shown,
                self.timeout.as_secs_f32(),
                oauth_keys::TIMEOUT_SECONDS,
                keys::TIMEOUT_SECONDS
            ),
        )
    }

    fn transport_error(&self, e: reqwest::Error) -> TokenError {
        if e.is_timeout() {
            return self.timeout_error();
        }
        let chain = error_chain(&e.without_url());
        if chain.to_ascii_lowercase().contains("certificate") {
            return TokenError::new(
                ErrorKind::Unavailable,
                format!(
                    "TLS with the token endpoint {} failed: {chain}; if it uses a private CA, list its PEM file in `{}`",
                    self.shown,
                    keys::SSL_CA_FILE
                ),
            );
        }
        TokenError::new(
            ErrorKind::Temporary,
            format!("cannot reach the token endpoint {}: {chain}", self.shown),
        )
    }

    fn interpret(
        &self,
        status: reqwest::StatusCode,
        content_type: &str,
        retry_after: Option<Duration>,
        body: &[u8],
        issued_at: Instant,
    ) -> Result<Token, TokenError> {
        let code = status.as_u16();
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
                    format!(": {}", self.excerpt(body))
                } else {
                    format!(" ({} bytes)", body.len())
                };
                return Err(TokenError::new(
                    ErrorKind::Config,
                    format!(
                        "the token endpoint {} answered HTTP {code} with {} instead of a JSON token response{what}; check `{}`",
                        self.shown,
                        describe_content_type(content_type),
                        oauth_keys::TOKEN_ENDPOINT
                    ),
                ));
            };
            return self.token_from(json, issued_at);
        }

        let description = field("error_description")
            .map(|d| self.clean(&d, DESCRIPTION_LEN))
            .filter(|d| !d.is_empty());
        let retry_after = retry_after
            .filter(|_| code == 429 || code == 503)
            .map(|d| d.min(crate::MAX_BACKOFF));
        let with_retry = |mut e: TokenError| {
            e.retry_after = retry_after;
            e
        };

        let Some(error) = error_code else {
            let excerpt = if body.is_empty() {
                String::new()
            } else {
                format!(": {}", self.excerpt(body))
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
            let what = if json.is_some() {
                "a JSON body without `error`".to_owned()
            } else if body.is_empty() {
                "an empty body".to_owned()
            } else {
                describe_content_type(content_type)
            };
            let retry = retry_after
                .map(|d| format!(" (Retry-After {}s)", d.as_secs()))
                .unwrap_or_default();
            return Err(with_retry(TokenError::new(
                kind,
                format!(
                    "the token endpoint {} answered HTTP {code}{retry} with {what}{excerpt}{hint}",
                    self.shown
                ),
            )));
        };

        // Classify on the code as sent; show it cleaned.
        let error = error.trim();
        let shown_error = self.clean(error, 60);
        let said = match &description {
            Some(d) => format!("{shown_error}: {d}"),
            None => shown_error,
        };
        let (kind, hint) = match error {
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
                    self.client_id,
                    oauth_keys::CLIENT_ID
                ),
            ),
            "invalid_grant" => (ErrorKind::AuthRefused, String::new()),
            "invalid_scope" => (
                ErrorKind::Config,
                match self.scope.as_deref() {
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
            _ => match code {
                401 | 403 => (ErrorKind::AuthRefused, String::new()),
                408 | 429 => (ErrorKind::Temporary, String::new()),
                _ => (ErrorKind::Config, String::new()),
            },
        };
        let verb = match kind {
            ErrorKind::AuthRefused => "refused the client credentials",
            ErrorKind::Temporary => "failed",
            _ => "rejected the request",
        };
        Err(with_retry(TokenError::new(
            kind,
            format!(
                "the token endpoint {} {verb} (HTTP {code}, {said}){hint}",
                self.shown
            ),
        )))
    }

    fn token_from(&self, json: &Value, issued_at: Instant) -> Result<Token, TokenError> {
        let fail = |what: &str| {
            TokenError::new(
                ErrorKind::Unavailable,
                format!("the token endpoint {} answered with {what}", self.shown),
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
                    self.endpoint_host()
                ),
            ));
        }
        let secret = SecretString::from(secret.to_owned());
        match json.get("token_type").and_then(Value::as_str) {
            Some(t) if t.trim().eq_ignore_ascii_case("bearer") => {}
            Some(t) => {
                return Err(fail(&format!(
                    "a token of type `{}`; SMTP needs a `Bearer` token",
                    self.clean(t, 40)
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
        let (lifetime, lifetime_known) = match expires_in {
            // Clamped before converting: `from_secs_f64` panics on huge values.
            Some(s) if s.is_finite() => (
                Duration::from_secs_f64(s.clamp(0.0, MAX_LIFETIME.as_secs_f64())),
                true,
            ),
            _ => (DEFAULT_TOKEN_LIFETIME, false),
        };
        Ok(Token {
            secret,
            issued_at,
            lifetime,
            lifetime_known,
        })
    }

    /// Endpoint text made safe for an error: every form of the secret
    /// masked by core's [`Redactor`] (as configured, collapsed, raw and
    /// form-encoded HTTP Basic credentials; each raw, base64 at any
    /// alignment and percent-encoded with `~` either way), control characters
    /// and runs of whitespace collapsed, truncated to `limit` characters.
    ///
    /// A form shorter than 4 characters is not masked (that would mangle
    /// the text): text containing it is withheld altogether.
    fn clean(&self, text: &str, limit: usize) -> String {
        let short: Vec<String> = self
            .secret_forms()
            .into_iter()
            .filter(|f| f.chars().count() < MIN_MASK_LEN)
            .collect();
        let holds_short = |t: &str| short.iter().any(|f| t.contains(f.as_str()));
        // Masked before collapsing (a secret with runs of spaces) and after.
        let masked = self.redactor.mask(text);
        let masked = self.redactor.mask(&collapse(&masked));
        if holds_short(&masked) {
            return WITHHELD.to_owned();
        }
        truncate(&masked, limit)
    }

    /// The client secret, for strategies that mask it in SMTP output too.
    pub(crate) fn client_secret(&self) -> &SecretString {
        &self.client_secret
    }

    /// The forms in which the client secret may come back in an endpoint's
    /// text: as configured, with whitespace collapsed, form-urlencoded (as
    /// sent with `client_secret_post`), base64 on its own, and the base64
    /// HTTP Basic credentials (`id:secret`, form-urlencoded as sent with
    /// `client_secret_basic`, and raw), with and without padding. Longest first.
    fn secret_forms(&self) -> Vec<String> {
        let secret = self.client_secret.expose_secret();
        if secret.is_empty() {
            return Vec::new();
        }
        let id = &self.client_id;
        let mut forms = vec![
            secret.to_owned(),
            collapse(secret),
            form_encode(secret),
            url::form_urlencoded::byte_serialize(secret.as_bytes())
                .collect::<String>()
                .replace('+', "%20"),
        ];
        for raw in [
            secret.to_owned(),
            format!("{}:{}", form_encode(id), form_encode(secret)),
            format!("{id}:{secret}"),
        ] {
            let encoded = STANDARD.encode(raw);
            forms.push(encoded.trim_end_matches('=').to_owned());
            forms.push(encoded);
        }
        forms.retain(|f| !f.is_empty());
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        forms
    }

    fn excerpt(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let text = if text.contains('<') {
            strip_tags(&text)
        } else {
            text.into_owned()
        };
        let cleaned = self.clean(&text, EXCERPT_LEN);
        if cleaned.is_empty() {
            "(no text)".to_owned()
        } else {
            format!("\"{cleaned}\"")
        }
    }
}

fn looks_like_html(content_type: &str, body: &[u8]) -> bool {
    let start = String::from_utf8_lossy(&body[..body.len().min(64)])
        .trim_start()
        .to_ascii_lowercase();
    content_type.to_ascii_lowercase().contains("html")
        || start.starts_with("<!doctype html")
        || start.starts_with("<html")
}

fn describe_content_type(content_type: &str) -> String {
    let ct = content_type.split(';').next().unwrap_or_default().trim();
    if ct.is_empty() {
        "a body without content type".to_owned()
    } else {
        format!("`{}`", truncate(&collapse(ct), 60))
    }
}

/// Drops `<script>`/`<style>` blocks, comments and tags; decodes a few entities.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let rest = &lower[i..];
        if rest.starts_with('<') {
            let skip_to = |end: &str| rest.find(end).map(|p| i + p + end.len());
            let next = if rest.starts_with("<script") {
                skip_to("</script>")
            } else if rest.starts_with("<style") {
                skip_to("</style>")
            } else if rest.starts_with("<!--") {
                skip_to("-->")
            } else {
                skip_to(">")
            };
            out.push(' ');
            match next {
                Some(n) => i = n,
                None => break,
            }
        } else {
            let end = rest.find('<').map_or(html.len(), |p| i + p);
            out.push_str(&html[i..end]);
            i = end;
        }
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Control characters dropped, whitespace runs collapsed to one space.
pub(crate) fn collapse(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `limit` characters (cut on a character boundary), `…` when cut.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
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

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        assert!(check_endpoint("https://login.example.com/t/oauth2/v2.0/token").is_ok());
        for ok in [
            "http://127.0.0.1:8080/token",
            "http://127.1.2.3/token",
            "http://[::1]:9/token",
            "http://localhost/token",
            "http://LOCALHOST:1/token",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://login.example.com/token",
            "http://10.0.0.1/token",
            "ftp://localhost/x",
            "login.example.com/token",
            "",
            "https://user:pw@login.example.com/token",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn html_is_stripped() {
        let html = "<!DOCTYPE html><html><head><title>Sign in</title><style>p{x:1}</style>\
                    <script>var s='x';</script></head><body><!-- c --><p>Bad&nbsp;gateway &amp; more</p></body></html>";
        assert_eq!(collapse(&strip_tags(html)), "Sign in Bad gateway & more");
    }

    #[test]
    fn truncation_respects_chars() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c+/é"), "a+b%3Ac%2B%2F%C3%A9");
    }

    fn client(secret: &str) -> TokenClient {
        TokenClient::new(TokenClientConfig::new(
            "https://login.example.com/tenant/oauth2/v2.0/token",
            "my client",
            SecretString::from(secret.to_owned()),
            None,
        ))
        .unwrap()
    }

    fn lifetime_of(expires_in: Value) -> Result<Duration, TokenError> {
        let json = serde_json::json!({
            "access_token": "tok", "token_type": "Bearer", "expires_in": expires_in
        });
        client("secret")
            .token_from(&json, Instant::now())
            .map(|t| t.lifetime())
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
        let c = client("secret");
        for bad in [
            "has space",
            "a\u{1}auth=Bearer x",
            "tök",
            "a\tb",
            "x=y",
            "quote\"d",
        ] {
            let json = serde_json::json!({"access_token": bad, "token_type": "Bearer"});
            let err = c.token_from(&json, Instant::now()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{bad:?}");
            let msg = err.to_string();
            assert!(msg.contains("login.example.com"), "{msg}");
            assert!(msg.contains("RFC 6750"), "{msg}");
            assert!(!msg.contains(bad), "{msg}");
        }
        // Surrounding whitespace is trimmed, as before.
        let json = serde_json::json!({"access_token": " a.b-c_d~e+f/g== ", "token_type": "Bearer"});
        let token = c.token_from(&json, Instant::now()).unwrap();
        assert_eq!(token.secret().expose_secret(), "a.b-c_d~e+f/g==");
    }

    #[test]
    fn endpoints_are_shown_without_user_info_or_query() {
        for (raw, shown) in [
            (
                "https://user:pa55word@login.example.com/t/token?sig=QSECRET#frag",
                "https://login.example.com/t/token",
            ),
            (
                "https://login.example.com:8443/token?code=QSECRET",
                "https://login.example.com:8443/token",
            ),
            ("http://[::1]:9/token", "http://[::1]:9/token"),
            ("https://login.example.com", "https://login.example.com/"),
            (
                "https://user:pa55word@login.example.com:99999/token?x=QSECRET",
                "https://login.example.com:99999/token",
            ),
            (
                "user:pa55word@login.example.com/token?QSECRET",
                "login.example.com/token",
            ),
            ("login.example.com/token", "login.example.com/token"),
            ("ftp://u:pa55word@h/x", "ftp://h/x"),
        ] {
            let got = redact_endpoint(raw);
            assert_eq!(got, shown, "{raw}");
            assert!(!got.contains("pa55word") && !got.contains("QSECRET"));
        }
        let url = Url::parse("https://u:pa55word@h.example.com/p?q=QSECRET").unwrap();
        assert_eq!(shown_url(&url), "https://h.example.com/p");

        let mut config = TokenClientConfig::new(
            "https://u:pa55word@h.example.com/p?q=QSECRET",
            "id",
            SecretString::from("secret".to_owned()),
            None,
        );
        let debug = format!("{config:?}");
        assert!(debug.contains("https://h.example.com/p"), "{debug}");
        assert!(
            !debug.contains("pa55word") && !debug.contains("QSECRET"),
            "{debug}"
        );
        let err = TokenClient::new(config.clone()).unwrap_err();
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(
                !text.contains("pa55word") && !text.contains("QSECRET"),
                "{text}"
            );
            assert!(text.contains("https://h.example.com/p"), "{text}");
        }
        config.endpoint = "https://h.example.com/p?q=QSECRET".to_owned();
        let c = TokenClient::new(config).unwrap();
        assert_eq!(c.endpoint(), "https://h.example.com/p");
        assert!(!format!("{c:?}").contains("QSECRET"));
    }

    #[test]
    fn every_form_of_the_secret_is_masked() {
        let secret = "s3cr3t~Value+with/odd=chars&é  two";
        let c = client(secret);
        let basic = STANDARD.encode(format!("my+client:{}", form_encode(secret)));
        let basic_raw = STANDARD.encode(format!("my client:{secret}"));
        for echoed in [
            secret.to_owned(),
            collapse(secret),
            form_encode(secret),
            form_encode(secret).replace('+', "%20"),
            // RFC 3986 style: `~` left literal, spaces as %20.
            form_encode(secret).replace('+', "%20").replace("%7E", "~"),
            form_encode(secret).replace("%7E", "~"),
            STANDARD.encode(secret),
            basic.clone(),
            basic.trim_end_matches('=').to_owned(),
            format!("Basic {basic_raw}"),
        ] {
            let text = format!("bad credentials [{echoed}] trace 1b2c");
            let cleaned = c.clean(&text, 400);
            assert!(cleaned.contains("<redacted>"), "{echoed}: {cleaned}");
            assert!(cleaned.starts_with("bad credentials ["), "{cleaned}");
            assert!(cleaned.ends_with("] trace 1b2c"), "{cleaned}");
            for form in c.secret_forms() {
                assert!(!cleaned.contains(&form), "{form} in {cleaned}");
            }
        }
    }

    #[test]
    fn a_short_secret_withholds_text_that_contains_it() {
        let c = client("ab");
        assert_eq!(
            c.clean("invalid client secret", 100),
            "invalid client secret"
        );
        assert_eq!(c.clean("the secret sent was ab.", 100), WITHHELD);
        // Its longer forms (base64 Basic credentials) are masked as usual.
        let basic = STANDARD.encode("my+client:ab");
        assert_eq!(
            c.clean(&format!("header {basic} rejected"), 100),
            "header <redacted> rejected"
        );
        // An empty secret masks nothing.
        let c = client("");
        assert_eq!(c.clean("nothing  to\r\nmask", 100), "nothing to mask");
    }

    #[test]
    fn error_codes_are_classified_as_sent() {
        // The secret equals the error code: the code is withheld from the
        // message but still decides the kind.
        let c = client("invalid_client");
        let body = br#"{"error":"invalid_client"}"#;
        let err = c
            .interpret(
                reqwest::StatusCode::BAD_REQUEST,
                "application/json",
                None,
                body,
                Instant::now(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthRefused);
        assert!(!err.to_string().contains("invalid_client"), "{err}");
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
