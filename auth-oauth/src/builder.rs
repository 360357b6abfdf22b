//! The typed builder method for the client-credentials grant, beside the
//! properties. It lives here, not in core, because the token endpoint,
//! client id, secret and scope keys are this crate's; the `mailgate` facade
//! re-exports it in `mailgate::prelude` (feature `oauth`).

use std::fmt;

use mailgate_core::SettingsBuilder;
use mailgate_core::resolver::VendorMode;
use secrecy::SecretString;

use crate::keys;

/// An application's client-credentials registration: where to get tokens,
/// as whom, and for what. The client secret is a [`SecretString`]; `Debug`
/// shows the endpoint, id and scope only.
#[derive(Clone)]
pub struct ClientCredentials {
    token_endpoint: String,
    client_id: String,
    client_secret: SecretString,
    scope: String,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .finish()
    }
}

/// The scope Exchange Online's SMTP takes with the client-credentials grant.
pub const MICROSOFT_365_SCOPE: &str = "https://outlook.office365.com/.default";

impl ClientCredentials {
    /// Any token endpoint (`https://`, plain `http://` only on loopback)
    /// and scope. A malformed endpoint fails the builder's `build`, naming
    /// `mksis.security.smtp.oauth.tokenEndpointURL`.
    pub fn new(
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
        scope: impl Into<String>,
    ) -> Self {
        Self {
            token_endpoint: token_endpoint.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: scope.into(),
        }
    }

    /// Microsoft 365: the tenant's v2.0 token endpoint
    /// (`https://login.microsoftonline.com/TENANT/oauth2/v2.0/token`) and
    /// the scope [`MICROSOFT_365_SCOPE`]. `tenant` is the directory
    /// (tenant) id or a verified domain.
    pub fn microsoft_365(
        tenant: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        Self::new(
            format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
            client_id,
            client_secret,
            MICROSOFT_365_SCOPE,
        )
    }
}

/// The typed builder method for OAuth 2.0 token authentication.
pub trait OAuthBuilderExt: Sized {
    /// OAuth 2.0 with the client-credentials grant, authenticating each
    /// connection as the mailbox `user`: sets
    /// `mksis.smtp.oauth.authentication=true`,
    /// `mksis.smtp.authentication=false`, `mksis.logging.email.from` (the
    /// SASL user and default sender, as the vendor has it) and the four
    /// `mksis.security.smtp.oauth.*` keys, each as set in code.
    ///
    /// ```no_run
    /// use mailgate_auth_oauth::{ClientCredentials, OAuthBuilderExt as _};
    /// # async fn run() -> mailgate_core::Result<()> {
    /// let secret = std::env::var("OAUTH_CLIENT_SECRET").unwrap_or_default();
    /// let mailer = mailgate_core::Mailer::builder()
    ///     .registry(mailgate_core::Registry::new().with(&mailgate_auth_oauth::DESCRIPTOR)?)
    ///     .server("smtp.office365.com", 587)
    ///     .starttls()
    ///     .oauth_client_credentials(
    ///         "alm@contoso.com",
    ///         ClientCredentials::microsoft_365("contoso.onmicrosoft.com", "CLIENT-ID", secret),
    ///     )
    ///     .build()?;
    /// mailer.sendmail("alm@contoso.com", "dev@contoso.com", "Build 42", "passed").await?;
    /// # Ok(()) }
    /// ```
    fn oauth_client_credentials(self, user: impl Into<String>, client: ClientCredentials) -> Self;
}

impl<B: SettingsBuilder> OAuthBuilderExt for B {
    fn oauth_client_credentials(self, user: impl Into<String>, client: ClientCredentials) -> Self {
        let ClientCredentials {
            token_endpoint,
            client_id,
            client_secret,
            scope,
        } = client;
        self.vendor_mode(VendorMode::OAuth)
            .sender(user)
            .property(keys::TOKEN_ENDPOINT, token_endpoint)
            .property(keys::CLIENT_ID, client_id)
            .secret_property(keys::CLIENT_SECRET, client_secret)
            .property(keys::SCOPE, scope)
    }
}
