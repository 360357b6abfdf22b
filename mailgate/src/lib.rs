//! mailgate sends notification e-mail the way a PTC RV&S (Integrity) server
//! does: it reads the server's `is.properties` and `security.properties`,
//! chooses open relay, SMTP basic AUTH or an OAuth 2.0 client-credentials
//! token (XOAUTH2/OAUTHBEARER) by the vendor's flag precedence, and speaks TLS
//! with custom CAs.
//!
//! # Quick start: settings in code
//!
//! The typed builder sets the same properties the files would (as set in
//! code: `mailgate check`-style explanations name the builder), and the
//! vendor's precedence table chooses the strategy as it does for the files.
//!
//! ```no_run
//! # async fn run() -> mailgate::Result<()> {
//! # let password = String::new();
//! let mailer = mailgate::Mailer::builder()
//!     .server("smtp.office365.com", 587)
//!     .starttls()
//!     .basic("alm@example.com", password) // a String or SecretString
//!     .timeout(std::time::Duration::from_secs(10))
//!     .build()?;
//! mailer.sendmail("alm@example.com", "dev@example.com", "Build 42", "passed").await?;
//! # Ok(()) }
//! ```
//!
//! `.open()` (no AUTH, e.g. a local relay with `.no_tls()`),
//! `.oauth_client_credentials(user, `[`ClientCredentials::microsoft_365`]`(..))`,
//! `.implicit_tls()`, `.sender(..)`, `.ca_file(..)` and `.helo_name(..)` are
//! the others; `.property(key, value)` sets any key. Environment variables
//! (`MKSIS_*`, `MAILGATE_*`) are ignored unless
//! [`env_overrides(true)`](MailerBuilder::env_overrides).
//!
//! # Quick start, blocking
//!
//! No runtime needed: [`blocking::Mailer`] runs its own, from the
//! properties files of an RV&S config folder here.
//!
//! ```no_run
//! fn main() -> mailgate::Result<()> {
//!     let mailer = mailgate::blocking::Mailer::from_config_dir("config")?;
//!     println!("sending through {}:{}", mailer.smtp_server(), mailer.smtp_port());
//!     mailer.sendmail("alm@example.com", "dev@example.com, qa@example.com", "Build 42", "passed")?;
//!     mailer.close();
//!     Ok(())
//! }
//! ```
//!
//! # Quick start, async
//!
//! ```no_run
//! # async fn run() -> mailgate::Result<()> {
//! let mailer = mailgate::Mailer::from_config_dir("config")?;
//! println!("sending through {}", mailer.mail_hostname_and_port());
//! mailer.sendmail("alm@example.com", "dev@example.com, qa@example.com", "Build 42", "passed").await?;
//! mailer.close().await;
//! # Ok(()) }
//! ```
//!
//! # A message with an attachment
//!
//! Messages are lettre's; [`Mailer`] and [`blocking::Mailer`] implement
//! lettre's `AsyncTransport` and `Transport`, so code written against lettre
//! sends through mailgate unchanged.
//!
//! ```no_run
//! use mailgate::lettre::message::{Attachment, MultiPart, SinglePart, header::ContentType};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let message = mailgate::Message::builder()
//!     .from("alm@example.com".parse()?)
//!     .to("dev@example.com".parse()?)
//!     .subject("Build 42 report")
//!     .multipart(
//!         MultiPart::mixed()
//!             .singlepart(SinglePart::plain("The report is attached.".to_owned()))
//!             .singlepart(
//!                 Attachment::new("report.csv".to_owned())
//!                     .body(b"test,result\nlogin,passed\n".to_vec(), ContentType::parse("text/csv")?),
//!             ),
//!     )?;
//! let mailer = mailgate::blocking::Mailer::from_config_dir("config")?;
//! let delivery = mailer.send(&message)?;
//! println!("accepted for {} recipient(s): {}", delivery.recipients, delivery.reply);
//! # Ok(()) }
//! ```
//!
//! Errors say what failed and how to treat it: [`Error::is_transient`]
//! (retry later), [`Error::status`] (the SMTP reply code), [`Error::stage`]
//! (connect, TLS, AUTH, MAIL, RCPT, DATA), [`Error::exit_code`] (sysexits),
//! and `std::error::Error::source` for the cause.
//!
//! # Features
//!
//! Each strategy is its own crate, listed by [`default_registry`] when its
//! feature is on (all are by default):
//!
//! | feature | strategy | vendor mode | crate |
//! | --- | --- | --- | --- |
//! | `open`  | `open`: no AUTH | open mail relay | `mailgate-auth-open` |
//! | `basic` | `basic`: AUTH PLAIN / LOGIN | SMTP basic authentication | `mailgate-auth-basic` |
//! | `oauth` | `oauth`: client credentials, XOAUTH2 / OAUTHBEARER | OAuth token authentication | `mailgate-auth-oauth` |
//!
//! The default features are these three: a default build holds no SQL
//! driver and needs Rust 1.88. The outbox stores are features of their own:
//!
//! | feature | descriptor | `mailgate.outbox.url` | crate | minimum Rust |
//! | --- | --- | --- | --- | --- |
//! | `outbox-sqlite` | `mailgate_outbox::SQLITE` | `sqlite:PATH`: one file, embedded (default `sqlite:mailgate-outbox.db`) | `mailgate-outbox` (sqlx) | 1.94 |
//! | `outbox-postgres` | `mailgate_outbox::POSTGRES` | `postgres://...`: several workers | `mailgate-outbox` (sqlx) | 1.94 |
//!
//! [`default_registry`] lists the stores of the features that are on, as it
//! lists strategies, and a mailer built with a registry that lists stores
//! has an outbox: the store whose scheme `mailgate.outbox.url` names
//! (`cargo add mailgate --features outbox-sqlite`):
//!
//! ```no_run
//! # #[cfg(feature = "outbox-sqlite")]
//! # async fn run() -> mailgate::Result<()> {
//! let mailer = mailgate::Mailer::builder()
//!     .config_dir("config")
//!     .build()?;
//! let id = mailer
//!     .enqueue_message(mailgate::OutgoingMessage {
//!         to: vec!["dev@example.com".into()],
//!         subject: "Build 42".into(),
//!         body: "passed".into(),
//!         ..Default::default()
//!     })
//!     .await?;
//! // A worker on the host's runtime delivers it (and everything else due).
//! let worker = mailgate::outbox::Worker::new(&mailer)?;
//! tokio::spawn(async move { worker.run(std::future::pending()).await });
//! # let _ = id; Ok(()) }
//! ```
//!
//! A store of your own is a crate that exports an
//! [`OutboxDescriptor`]: register it with
//! `mailgate::default_registry()?.with_store(&its_crate::DESCRIPTOR)?`
//! (the workspace's `examples/outbox-memory` is one), or hand the builder a
//! store directly ([`MailerBuilder::outbox_store`]).
//!
//! # Strategies of your own
//!
//! A configuration that resolves to a strategy left out of the build fails
//! with an error naming the feature that adds it. A third-party strategy is
//! a crate that depends on `mailgate-core` and exports a
//! [`StrategyDescriptor`]; register it with the builder
//! (`.registry(mailgate::default_registry()?.with(&its_crate::DESCRIPTOR)?)`)
//! and ship a `mailgate` binary with it through `mailgate_cli::run`. The
//! workspace's `examples/auth-command` is a complete one, and
//! `ARCHITECTURE.md` lists the steps.

pub use mailgate_core::*;

pub mod blocking;

/// The strategies' typed builder methods as traits, for code that builds
/// with [`mailgate_core::MailerBuilder`] or is generic over
/// [`SettingsBuilder`] (`use mailgate::prelude::*;`). [`MailerBuilder`] has
/// them as its own methods; each lives in its strategy's crate, as its
/// keys do, and is here when its feature is on.
pub mod prelude {
    #[cfg(feature = "basic")]
    pub use mailgate_auth_basic::BasicBuilderExt;
    #[cfg(feature = "oauth")]
    pub use mailgate_auth_oauth::{ClientCredentials, OAuthBuilderExt};
}

/// The OAuth client for [`MailerBuilder::oauth_client_credentials`]
/// (feature `oauth`).
#[cfg(feature = "oauth")]
pub use mailgate_auth_oauth::ClientCredentials;

// The strategy crates, for their types and key constants.
#[cfg(feature = "basic")]
pub use mailgate_auth_basic as basic;
#[cfg(feature = "oauth")]
pub use mailgate_auth_oauth as oauth;
#[cfg(feature = "open")]
pub use mailgate_auth_open as open;

/// The strategies and outbox stores compiled into this build, by feature,
/// plus the strategies that third-party crates submit through `inventory`.
/// A strategy or store whose feature is off is recorded as absent, so
/// choosing it names the feature. The outbox URL defaults to
/// [`DEFAULT_OUTBOX_URL`]; a mailer built with a registry that lists stores
/// has an outbox.
///
/// ```
/// let registry = mailgate::default_registry().unwrap();
/// # #[cfg(all(feature = "open", feature = "basic", feature = "oauth"))]
/// assert_eq!(registry.names(), ["basic", "oauth", "open"]);
/// # #[cfg(not(any(feature = "outbox-sqlite", feature = "outbox-postgres")))]
/// assert!(registry.store_names().is_empty());
/// ```
pub fn default_registry() -> std::result::Result<Registry, ConfigError> {
    let registry = Registry::new();
    #[cfg(feature = "open")]
    let registry = registry.with(&mailgate_auth_open::DESCRIPTOR)?;
    #[cfg(not(feature = "open"))]
    let registry = registry.absent(
        "open",
        Some(VendorMode::OpenRelay),
        "the cargo feature `open` of the `mailgate` crate (or `mailgate-cli`)",
    );
    #[cfg(feature = "basic")]
    let registry = registry.with(&mailgate_auth_basic::DESCRIPTOR)?;
    #[cfg(not(feature = "basic"))]
    let registry = registry.absent(
        "basic",
        Some(VendorMode::BasicAuth),
        "the cargo feature `basic` of the `mailgate` crate (or `mailgate-cli`)",
    );
    #[cfg(feature = "oauth")]
    let registry = registry.with(&mailgate_auth_oauth::DESCRIPTOR)?;
    #[cfg(not(feature = "oauth"))]
    let registry = registry.absent(
        "oauth",
        Some(VendorMode::OAuth),
        "the cargo feature `oauth` of the `mailgate` crate (or `mailgate-cli`)",
    );
    #[cfg(feature = "outbox-sqlite")]
    let registry = registry.with_store(&mailgate_outbox::SQLITE)?;
    #[cfg(not(feature = "outbox-sqlite"))]
    let registry = registry.absent_store(
        "sqlite",
        &["sqlite"],
        "the cargo feature `outbox-sqlite` of the `mailgate` crate (or `mailgate-cli`)",
    );
    #[cfg(feature = "outbox-postgres")]
    let registry = registry.with_store(&mailgate_outbox::POSTGRES)?;
    #[cfg(not(feature = "outbox-postgres"))]
    let registry = registry.absent_store(
        "postgres",
        &["postgres", "postgresql"],
        "the cargo feature `outbox-postgres` of the `mailgate` crate (or `mailgate-cli`)",
    );
    registry
        .default_outbox_url(DEFAULT_OUTBOX_URL)
        .with_inventory()
}

/// The outbox when `mailgate.outbox.url` is not set: a SQLite file in the
/// config folder (feature `outbox-sqlite`), as [`default_registry`] sets it.
pub const DEFAULT_OUTBOX_URL: &str = "sqlite:mailgate-outbox.db";

mod builder;
pub use builder::MailerBuilder;

/// Sends mail with the settings of an RV&S config folder, choosing among
/// the strategies of [`default_registry`] (or the builder's
/// [`registry`](MailerBuilder::registry)). Every method of
/// [`mailgate_core::Mailer`] is available through `Deref`. Cheap to clone.
#[derive(Clone)]
pub struct Mailer(mailgate_core::Mailer);

impl Mailer {
    /// A builder whose registry is [`default_registry`].
    pub fn builder() -> MailerBuilder {
        MailerBuilder::default()
    }

    /// A mailer for the config folder holding `is.properties` and `security.properties`.
    pub fn from_config_dir(dir: impl Into<std::path::PathBuf>) -> Result<Self> {
        Self::builder().config_dir(dir).build()
    }

    /// A mailer for two named files.
    pub fn from_files(
        is: impl Into<std::path::PathBuf>,
        security: impl Into<std::path::PathBuf>,
    ) -> Result<Self> {
        Self::builder().is_file(is).security_file(security).build()
    }

    /// The core mailer inside.
    pub fn into_inner(self) -> mailgate_core::Mailer {
        self.0
    }
}

impl std::ops::Deref for Mailer {
    type Target = mailgate_core::Mailer;

    fn deref(&self) -> &mailgate_core::Mailer {
        &self.0
    }
}

impl AsRef<mailgate_core::Mailer> for Mailer {
    fn as_ref(&self) -> &mailgate_core::Mailer {
        &self.0
    }
}

impl From<mailgate_core::Mailer> for Mailer {
    fn from(mailer: mailgate_core::Mailer) -> Self {
        Self(mailer)
    }
}

impl From<Mailer> for mailgate_core::Mailer {
    fn from(mailer: Mailer) -> Self {
        mailer.0
    }
}

impl FromMailer for Mailer {
    fn from_mailer(mailer: mailgate_core::Mailer) -> Result<Self> {
        Ok(Self(mailer))
    }
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// As for [`mailgate_core::Mailer`]: code written against lettre's async
/// transport sends through mailgate.
#[async_trait]
impl lettre::AsyncTransport for Mailer {
    type Ok = Delivery;
    type Error = Error;

    async fn send(&self, message: Message) -> Result<Delivery> {
        self.0.send(&message).await
    }

    async fn send_raw(&self, envelope: &Envelope, email: &[u8]) -> Result<Delivery> {
        self.0.send_raw(envelope, email).await
    }

    async fn shutdown(&self) {
        self.0.close().await;
    }
}

/// Opens the outbox store `mailgate.outbox.url` names among those of
/// [`default_registry`], for [`MailerBuilder::outbox`] (a mailer built with
/// the default registry opens it by itself). A store left out of the build
/// is a configuration error naming its feature.
pub fn open_outbox(settings: &Settings) -> Result<std::sync::Arc<dyn outbox::OutboxStore>> {
    default_registry()?.open_store(settings)
}

/// The outbox stores compiled into this build (`postgres`, `sqlite`).
pub fn outbox_backends() -> Vec<&'static str> {
    default_registry()
        .map(|r| r.store_names())
        .unwrap_or_default()
}
