//! The token endpoint client: one client-credentials request (RFC 6749 §4.4).

use std::fmt;
use std::time::{Duration, Instant};

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
    /// Limit for each request, connect included.
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
            .field("endpoint", &self.endpoint)
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

    /// The endpoint's `Retry-After`, when it sent one with a 429 or 503.
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

/// `scheme://host[:port]/path`: the URL without query or fragment, for messages.
fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// application/x-www-form-urlencoded, as RFC 6749 §2.3.1 asks for HTTP Basic.
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
            key: keys::OAUTH_TOKEN_ENDPOINT.to_owned(),
            origin: Origin::Builder,
            value: Some(endpoint.clone()),
            expected: expected.to_owned(),
        })?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("mailgate/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout);
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
        Ok(Self {
            http,
            shown: shown_url(&url),
            endpoint: url,
            client_id,
            client_secret,
            scope,
            client_auth,
            timeout,
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

    /// The endpoint URL without query, as shown in messages.
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

    /// The request limit.
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
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
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
                        keys::OAUTH_TOKEN_ENDPOINT
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
                        keys::OAUTH_CLIENT_ID,
                        keys::OAUTH_CLIENT_SECRET
                    ),
                ),
                300..=399 => (
                    ErrorKind::Config,
                    format!(
                        "; redirects are not followed: put the final URL in `{}`",
                        keys::OAUTH_TOKEN_ENDPOINT
                    ),
                ),
                _ => (
                    ErrorKind::Config,
                    format!("; check `{}`", keys::OAUTH_TOKEN_ENDPOINT),
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

        let error = self.clean(&error, 60);
        let said = match &description {
            Some(d) => format!("{error}: {d}"),
            None => error.clone(),
        };
        let (kind, hint) = match error.as_str() {
            _ if status.is_server_error() => (ErrorKind::Temporary, String::new()),
            "invalid_client" => (
                ErrorKind::AuthRefused,
                format!(
                    "; check `{}` and `{}`",
                    keys::OAUTH_CLIENT_ID,
                    keys::OAUTH_CLIENT_SECRET
                ),
            ),
            "unauthorized_client" => (
                ErrorKind::AuthRefused,
                format!(
                    "; the client `{}` (`{}`) may not use the client-credentials grant",
                    self.client_id,
                    keys::OAUTH_CLIENT_ID
                ),
            ),
            "invalid_grant" => (ErrorKind::AuthRefused, String::new()),
            "invalid_scope" => (
                ErrorKind::Config,
                match self.scope.as_deref() {
                    Some(M365_SCOPE) => {
                        format!("; check `{}` (now `{M365_SCOPE}`)", keys::OAUTH_SCOPE)
                    }
                    Some(s) => format!(
                        "; check `{}` (now `{s}`; Microsoft 365 wants `{M365_SCOPE}`)",
                        keys::OAUTH_SCOPE
                    ),
                    None => format!("; set `{}`", keys::OAUTH_SCOPE),
                },
            ),
            "invalid_request" | "unsupported_grant_type" => (
                ErrorKind::Config,
                format!(
                    "; check `{}` (the tenant in the URL) and `{}`",
                    keys::OAUTH_TOKEN_ENDPOINT,
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
            Some(t) if !t.trim().is_empty() => SecretString::from(t.trim().to_owned()),
            _ => return Err(fail("no `access_token`")),
        };
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
            Some(s) if s.is_finite() => {
                (Duration::from_secs_f64(s.max(0.0)).min(MAX_LIFETIME), true)
            }
            _ => (DEFAULT_TOKEN_LIFETIME, false),
        };
        Ok(Token {
            secret,
            issued_at,
            lifetime,
            lifetime_known,
        })
    }

    /// Endpoint text made safe for an error: tags stripped, the secret masked, truncated.
    fn clean(&self, text: &str, limit: usize) -> String {
        let secret = self.client_secret.expose_secret();
        let mut text = collapse(text);
        if secret.len() >= 4 {
            text = text.replace(secret, "<redacted>");
        }
        truncate(&text, limit)
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
fn collapse(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncate(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
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
}
