//! Core of mailgate: settings, the authentication strategy plug-in point, the
//! strategy registry and resolver, and the SMTP transport behind [`Mailer`].
//!
//! Library users normally depend on the `mailgate` facade crate, which links
//! the strategy crates through cargo features.

#![warn(missing_docs)]

pub mod error;
mod lettre_transport;
mod mailer;
pub mod message;
pub mod outbox;
pub mod properties;
pub mod registry;
pub mod resolver;
pub mod sasl;
mod secret;
pub mod settings;
pub mod smtp;
pub mod strategy;
pub mod testing;
pub mod transport;

pub use error::{ConfigError, Error, ErrorKind, Origin, RecipientRefusal, Result, Stage};
pub use mailer::{DEFAULT_MAX_CONNECTIONS, FromMailer, Mailer, MailerBuilder, SettingsBuilder};
pub use message::{Attachment, OutgoingMessage};
pub use outbox::{OutboxDescriptor, OutboxUrl};
pub use registry::Registry;
pub use resolver::{AuthFlags, Choice, Resolution, Rule, VendorMode, precedence};
pub use settings::{Settings, TlsMode, key_file_path, keys};
pub use smtp::{ConnectReport, Delivery, PoolConfig, RecipientPolicy, Reply};
pub use strategy::{
    AuthStrategy, KeyFile, KeySpec, ScriptedServer, SharedStrategy, SmtpSession,
    StrategyDescriptor, Submitted, TokenSource,
};
pub use transport::MailTransport;

/// Re-exported for strategy implementations.
pub use async_trait::async_trait;
/// Re-exported so strategy crates submit descriptors with the same `inventory`.
pub use inventory;
/// Re-exported: messages are built with lettre's builder.
pub use lettre::{self, Message, address::Envelope, message::Mailbox};
/// Encryption of secrets at rest (`ENC(...)` values, key files).
pub use mailgate_secrets as secrets;
/// Re-exported: secrets are `secrecy` types.
pub use secrecy;
