//! mailgate's SMTP client: the connection (tokio + rustls), its bounded reply
//! reader, the EHLO capabilities, one mail transaction (pipelined when
//! offered), the connection pool, and the redaction every server text goes
//! through before anyone sees it.
//!
//! lettre builds the messages; the connection is ours, because a mail
//! library must hold against hostile servers and network paths: no byte
//! read before a TLS handshake survives it, every reply is bounded in lines,
//! bytes and time, and no input makes it panic.

pub(crate) mod connection;
mod pool;
mod session;
mod transaction;

pub mod capabilities;
pub mod data;
pub mod redact;
pub mod reply;

pub use capabilities::Capabilities;
pub use connection::instance_id;
pub use data::encode_data;
pub(crate) use pool::SmtpTransport;
pub use pool::{ConnectReport, Delivery, PoolConfig};
pub use redact::{Redactor, escape_controls};
pub use reply::{Reply, ReplyError, ReplyLimits, ReplyReader};
pub use session::SmtpSession;
pub use transaction::RecipientPolicy;
