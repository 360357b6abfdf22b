//! The token endpoint client: sends one client-credentials request
//! (RFC 6749 §4.4); `response.rs` reads the answer.

use std::fmt;
use std::time::{Duration, Instant};

use mailgate_core::{ConfigError, Error, ErrorKind, Origin, keys};
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::endpoint::{check_endpoint, host_port, is_loopback, redact_endpoint, shown_url};
use crate::keys as oauth_keys;
use crate::redaction::{SecretMask, error_chain, form_encode};
use crate::response::{RawResponse, Sent, Token, TokenError, interpret};

/// The largest response body read; token responses are a few kilobytes.
const MAX_BODY: usize = 256 * 1024;

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
    mask: SecretMask,
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
        let mask = SecretMask::new(&client_id, &client_secret);
        Ok(Self {
            http,
            shown: shown_url(&url),
            endpoint: url,
            client_id,
            client_secret,
            scope,
            client_auth,
            timeout,
            mask,
        })
    }

    /// `host[:port]` of the endpoint.
    pub fn endpoint_host(&self) -> String {
        host_port(&self.endpoint)
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
        let response = match tokio::time::timeout(self.timeout, self.exchange()).await {
            Ok(r) => r?,
            Err(_) => return Err(self.timeout_error()),
        };
        let token = interpret(&self.sent(), &response, issued_at)?;
        tracing::debug!(
            target: "mailgate::oauth",
            "got a token from {} valid for {}s{}",
            self.shown,
            token.lifetime().as_secs(),
            if token.lifetime_known() { "" } else { " (no expires_in: assumed)" }
        );
        Ok(token)
    }

    /// The client secret, for strategies that mask it in SMTP output too.
    pub(crate) fn client_secret(&self) -> &SecretString {
        &self.client_secret
    }

    /// What a response is read against.
    fn sent(&self) -> Sent<'_> {
        Sent {
            endpoint: &self.endpoint,
            shown: &self.shown,
            client_id: &self.client_id,
            scope: self.scope.as_deref(),
            mask: &self.mask,
        }
    }

    /// Sends the request and reads the response, at most [`MAX_BODY`] of its body.
    async fn exchange(&self) -> Result<RawResponse, TokenError> {
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
        let mut raw = RawResponse::head(response.status(), response.headers());
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            let room = MAX_BODY.saturating_sub(raw.body.len());
            raw.body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if raw.body.len() >= MAX_BODY {
                break;
            }
        }
        Ok(raw)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_client_show_the_endpoint_without_user_info_or_query() {
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
}
