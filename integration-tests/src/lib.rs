//! Test support for mailgate's end-to-end tests.
//!
//! Nothing here calls mailgate: it provides the world a test talks to.
//!
//! - [`SmtpPeer`]: a real, third-party SMTP server in a child process, either
//!   Nodemailer's `smtp-server` ([`PeerKind::Node`]) or Python's `aiosmtpd`
//!   ([`PeerKind::Python`]), configured by a [`PeerConfig`] (TLS, STARTTLS,
//!   AUTH PLAIN/LOGIN/XOAUTH2/OAUTHBEARER, scripted refusals). It records every
//!   connection, AUTH attempt and message as a [`PeerEvent`].
//! - [`ensure_installed`]: installs the peers' npm/PyPI dependencies the first
//!   time a peer is started (file-locked, so parallel test processes are safe).
//!   [`SmtpPeer::start`] calls it, so `cargo test` works on a fresh clone.
//! - [`TestPki`]: a CA, a `localhost`/`127.0.0.1` server certificate signed by
//!   it and an unrelated second CA, made with `rcgen` and written as PEM files.
//! - [`ConfigDir`]: a temporary config folder holding `is.properties` and
//!   `security.properties`, written with Java `.properties` escaping.
//! - [`unused_port`]: a loopback port nothing listens on.
//! - [`PgServer`]: a throwaway PostgreSQL server (`initdb`, `pg_ctl`) on a
//!   free loopback port, run as `nobody` when the tests run as root, with a
//!   password role and a database; stopped and removed on drop.
//!
//! ```no_run
//! use std::time::Duration;
//! use mailgate_integration_tests::{PeerConfig, PeerKind, SmtpPeer, TestPki};
//!
//! let pki = TestPki::new();
//! let peer = SmtpPeer::start(
//!     PeerKind::Node,
//!     PeerConfig::new().starttls(&pki).auth(&["PLAIN"]).user("alice@example.com", "secret"),
//! );
//! // ... send through 127.0.0.1:peer.port() trusting pki.ca_cert_pem() ...
//! let messages = peer.wait_for_messages(1, Duration::from_secs(10));
//! assert!(messages[0].secure);
//! assert_eq!(messages[0].user.as_deref(), Some("alice@example.com"));
//! ```

mod cli;
mod config_dir;
mod install;
mod net;
mod peer;
mod pki;
mod postgres;

pub use cli::{
    Input, MeasuredRun, Run, RunOptions, as_other_user, exit_code, output_text, run_command,
    run_mailgate, run_mailgate_measured, runnable_by_others,
};
pub use config_dir::{ConfigDir, IS_PROPERTIES, SECURITY_PROPERTIES, properties_text};
pub use install::{ensure_installed, peers_dir};
pub use net::unused_port;
pub use peer::{
    AuthAttempt, PeerConfig, PeerError, PeerEvent, PeerKind, ReceivedMessage, SmtpPeer,
};
pub use pki::TestPki;
pub use postgres::PgServer;
