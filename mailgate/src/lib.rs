//! mailgate sends notification e-mail the way a PTC RV&S (Integrity) server
//! does: it reads the server's `is.properties` and `security.properties`,
//! chooses open relay, SMTP basic AUTH or an OAuth 2.0 client-credentials
//! token (XOAUTH2/OAUTHBEARER) by the vendor's flag precedence, and speaks TLS
//! with custom CAs.
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
//! # Features
//!
//! Each strategy is its own crate, linked by one feature (all on by default):
//!
//! | feature | strategy | crate |
//! | --- | --- | --- |
//! | `open`  | `open`: open mail relay, no AUTH | `mailgate-auth-open` |
//! | `basic` | `basic`: AUTH PLAIN / LOGIN | `mailgate-auth-basic` |
//! | `oauth` | `oauth`: OAuth 2.0 client credentials, XOAUTH2 / OAUTHBEARER | `mailgate-auth-oauth` |
//!
//! The outbox stores are features too:
//!
//! | feature | `mailgate.outbox.url` | crate |
//! | --- | --- | --- |
//! | `outbox-sqlite` (default) | `sqlite:PATH`: one file, embedded | `mailgate-outbox` |
//! | `outbox-postgres` | `postgres://...`: several workers | `mailgate-outbox` |
//!
//! ```no_run
//! # async fn run() -> mailgate::Result<()> {
//! let mailer = mailgate::Mailer::builder()
//!     .config_dir("config")
//!     .outbox(mailgate::open_outbox)
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
//! A configuration that resolves to a strategy left out of the build fails
//! with an error naming the feature that adds it. The strategies a binary
//! holds, built-in and third-party, are [`Registry::collect`]`()?.names()`.
//! Third-party strategies are crates that submit a [`StrategyDescriptor`]
//! and are named by the binary (`use my_strategy as _;`), see
//! `examples/custom_strategy.rs`.

pub use mailgate_core::*;

// Naming each strategy crate links it, and with it its `inventory`
// registration; a crate that is only a Cargo dependency is not linked.
#[cfg(feature = "basic")]
pub use mailgate_auth_basic as basic;
#[cfg(feature = "oauth")]
pub use mailgate_auth_oauth as oauth;
#[cfg(feature = "open")]
pub use mailgate_auth_open as open;

/// Opens the outbox store named by `mailgate.outbox.url`, for
/// [`MailerBuilder::outbox`]: SQLite (feature `outbox-sqlite`) or PostgreSQL
/// (feature `outbox-postgres`). A backend left out of the build is a
/// configuration error naming its feature.
#[cfg(any(feature = "outbox-sqlite", feature = "outbox-postgres"))]
pub fn open_outbox(
    settings: &outbox::OutboxSettings,
) -> Result<std::sync::Arc<dyn outbox::OutboxStore>> {
    mailgate_outbox::open(settings)
}

/// The outbox stores compiled into this build (`sqlite`, `postgres`).
#[cfg(any(feature = "outbox-sqlite", feature = "outbox-postgres"))]
pub fn outbox_backends() -> Vec<&'static str> {
    mailgate_outbox::compiled()
}
