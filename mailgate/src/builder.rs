//! The facade's own [`MailerBuilder`]: core's builder with
//! [`default_registry`](crate::default_registry) as its start and the
//! enabled strategies' typed methods as inherent methods, so that
//! `mailgate::Mailer::builder().basic(..)` needs no trait import and this
//! page lists every method (an alias into `mailgate_core` would not).

use std::path::PathBuf;
use std::sync::Arc;

use mailgate_core::outbox::OutboxStore;
use mailgate_core::properties::ConfigFiles;
use mailgate_core::secrecy::SecretString;
use mailgate_core::{
    ConfigError, FromMailer, Registry, Result, Settings, SettingsBuilder, VendorMode,
};

use crate::Mailer;

/// Builds a [`Mailer`] (or, from [`blocking::Mailer::builder`](crate::blocking::Mailer::builder),
/// a blocking one): the strategies of [`default_registry`](crate::default_registry),
/// the properties files, typed settings and overrides. Each typed method
/// sets the property the files would set, so the vendor's precedence table
/// chooses the strategy as it does for the files.
///
/// ```no_run
/// # async fn run() -> mailgate::Result<()> {
/// # let password = String::new();
/// let mailer = mailgate::Mailer::builder()
///     .server("smtp.office365.com", 587)
///     .starttls()
///     .basic("alm@example.com", password)
///     .build()?;
/// # Ok(()) }
/// ```
///
/// The details of each setting are on [`mailgate_core::MailerBuilder`],
/// which this wraps.
#[must_use]
pub struct MailerBuilder<M = Mailer>(mailgate_core::MailerBuilder<M>);

impl<M: FromMailer> Default for MailerBuilder<M> {
    /// Starts from [`default_registry`](crate::default_registry); a registry
    /// that fails to assemble is reported by [`build`](Self::build).
    fn default() -> Self {
        Self(mailgate_core::MailerBuilder::default().try_registry(crate::default_registry()))
    }
}

impl<M> std::fmt::Debug for MailerBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<M: FromMailer> From<mailgate_core::MailerBuilder<M>> for MailerBuilder<M> {
    fn from(builder: mailgate_core::MailerBuilder<M>) -> Self {
        Self(builder)
    }
}

/// Inherent methods that hand their arguments to core's method of the same
/// name, each with a one-line summary and a link to the full text there.
macro_rules! delegate {
    ($( #[doc = $doc:literal] $name:ident ( $( $arg:ident : $ty:ty ),* ); )*) => {
        $(
            #[doc = $doc]
            #[doc = ""]
            #[doc = concat!("Details: [`mailgate_core::MailerBuilder::", stringify!($name), "`].")]
            pub fn $name(self $(, $arg: $ty)*) -> Self {
                Self(self.0.$name($($arg),*))
            }
        )*
    };
}

impl<M: FromMailer> MailerBuilder<M> {
    delegate! {
        /// The strategies to choose from, instead of [`default_registry`](crate::default_registry).
        registry(registry: Registry);
        /// [`Self::registry`] for a registry that may have failed to assemble.
        try_registry(registry: std::result::Result<Registry, ConfigError>);
        /// Reads `is.properties` and `security.properties` (optional) from `dir`.
        config_dir(dir: impl Into<PathBuf>);
        /// Reads the properties files named in `files`.
        files(files: ConfigFiles);
        /// Reads this file as `is.properties` (then it must exist).
        is_file(path: impl Into<PathBuf>);
        /// Reads this file as `security.properties` (then it must exist).
        security_file(path: impl Into<PathBuf>);
        /// Sets a property; wins over the files and the environment.
        property(key: impl Into<String>, value: impl Into<String>);
        /// Sets a secret property, never shown by `Debug`.
        secret_property(key: impl Into<String>, value: impl Into<SecretString>);
        /// The SMTP server's host and port.
        server(host: impl Into<String>, port: u16);
        /// Plain connect, then STARTTLS, required (port 587's usual mode).
        starttls();
        /// TLS from the first byte (SMTPS, port 465's usual mode).
        implicit_tls();
        /// No TLS: for a relay on loopback or a trusted network.
        no_tls();
        /// Whether credentials may cross an unencrypted connection (default false).
        allow_plaintext_auth(allowed: bool);
        /// Trusts the CA certificates (PEM) in `path` besides the system's.
        ca_file(path: impl Into<PathBuf>);
        /// The sender address: default From and envelope sender.
        sender(address: impl Into<String>);
        /// Limit for connect, TLS and each reply (default 30 s).
        timeout(timeout: std::time::Duration);
        /// The name sent in EHLO (default this host's name).
        helo_name(name: impl Into<String>);
        /// The vendor's open mail relay: no AUTH (feature `open`).
        open();
        /// Sets the vendor's authentication flags for `mode`.
        vendor_mode(mode: VendorMode);
        /// Chooses a registered strategy by name, over the flags.
        strategy(name: impl Into<String>);
        /// Whether `MKSIS_*` / `MAILGATE_*` environment variables override the files (default off).
        env_overrides(enabled: bool);
        /// The key file for `ENC(...)` values.
        key_file(path: impl Into<PathBuf>);
        /// Bound on simultaneous SMTP connections (default 4).
        max_connections(n: usize);
        /// Delivers through this transport instead of the settings' SMTP server.
        transport(transport: Arc<dyn mailgate_core::MailTransport>);
        /// The connection pool's time limits (idle age, NOOP probe).
        pool(config: mailgate_core::PoolConfig);
        /// With `true`, a message any recipient of which is refused goes to no one.
        all_or_nothing(enabled: bool);
        /// With `true` and an outbox, `build` starts a delivering worker on the current runtime.
        deliver_in_background(enabled: bool);
        /// Keeps messages in the outbox `open` returns, instead of the one the registry's stores open (features `outbox-sqlite`, `outbox-postgres`).
        outbox(open: impl FnOnce(&Settings) -> Result<Arc<dyn OutboxStore>> + Send + 'static);
        /// Keeps messages in `store`, a store already open.
        outbox_store(store: Arc<dyn OutboxStore>);
    }

    /// SMTP basic AUTH as `user` with `password` (feature `basic`); pair it
    /// with [`starttls`](Self::starttls) or [`implicit_tls`](Self::implicit_tls).
    ///
    /// Details: [`mailgate_auth_basic::BasicBuilderExt::basic`].
    #[cfg(feature = "basic")]
    pub fn basic(self, user: impl Into<String>, password: impl Into<SecretString>) -> Self {
        mailgate_auth_basic::BasicBuilderExt::basic(self, user, password)
    }

    /// OAuth 2.0 with the client-credentials grant, as the mailbox `user`
    /// (feature `oauth`).
    ///
    /// Details: [`mailgate_auth_oauth::OAuthBuilderExt::oauth_client_credentials`].
    #[cfg(feature = "oauth")]
    pub fn oauth_client_credentials(
        self,
        user: impl Into<String>,
        client: mailgate_auth_oauth::ClientCredentials,
    ) -> Self {
        mailgate_auth_oauth::OAuthBuilderExt::oauth_client_credentials(self, user, client)
    }

    /// Reads and validates the settings and builds the chosen strategy.
    ///
    /// Details: [`mailgate_core::MailerBuilder::build`].
    pub fn build(self) -> Result<M> {
        self.0.build()
    }

    /// Core's builder inside, for an extension trait implemented on it alone.
    pub fn into_inner(self) -> mailgate_core::MailerBuilder<M> {
        self.0
    }
}

/// Strategy crates' typed methods (including third parties') apply to this
/// builder as to core's.
impl<M: FromMailer> SettingsBuilder for MailerBuilder<M> {
    fn property(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        MailerBuilder::property(self, key, value)
    }

    fn secret_property(self, key: impl Into<String>, value: impl Into<SecretString>) -> Self {
        MailerBuilder::secret_property(self, key, value)
    }

    fn vendor_mode(self, mode: VendorMode) -> Self {
        MailerBuilder::vendor_mode(self, mode)
    }

    fn sender(self, address: impl Into<String>) -> Self {
        MailerBuilder::sender(self, address)
    }
}
