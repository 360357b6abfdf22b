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
