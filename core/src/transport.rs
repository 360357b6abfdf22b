//! The delivery seam: how a prepared message reaches its recipients.
//!
//! [`Mailer`](crate::Mailer) and the outbox [`Worker`](crate::outbox::Worker)
//! hand every message to a [`MailTransport`] and read back, per recipient,
//! who took it ([`Delivery::accepted`]) and who refused it
//! ([`Delivery::refused`]). mailgate's SMTP client is the transport a
//! mailer is built with; [`MailerBuilder::transport`](crate::MailerBuilder::transport)
//! puts another in its place (an HTTP mail API, or a recorder in tests)
//! without touching core.

use std::fmt;

use async_trait::async_trait;
use lettre::address::Envelope;

use crate::error::Result;
use crate::smtp::{ConnectReport, Delivery, RecipientPolicy};

/// Builds a message for its destination: the argument says whether the
/// destination takes 8-bit text as it is (SMTP's 8BITMIME; an HTTP API
/// that takes MIME does). Called at most once per delivery.
pub type Compose<'a> = Box<dyn FnOnce(bool) -> Result<Vec<u8>> + Send + 'a>;

/// The message a transport is handed.
pub enum Payload<'a> {
    /// A complete RFC 5322 message, which the transport may convert to fit
    /// its destination (8-bit text to quoted-printable for an SMTP server
    /// without 8BITMIME, long lines re-encoded).
    Ready(&'a [u8]),
    /// A message built once the destination's abilities are known
    /// ([`Compose`]); a retry on a new connection reuses the bytes.
    Compose(Compose<'a>),
    /// A complete RFC 5322 message sent exactly as given: never converted;
    /// what the destination cannot take is refused
    /// ([`Mailer::send_raw_exact`](crate::Mailer::send_raw_exact)).
    Exact(&'a [u8]),
}

impl fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Ready(bytes) => write!(f, "Ready({} bytes)", bytes.len()),
            Payload::Compose(_) => f.write_str("Compose"),
            Payload::Exact(bytes) => write!(f, "Exact({} bytes)", bytes.len()),
        }
    }
}

/// Delivers one message at a time to the recipients of its envelope.
///
/// A transport reports per recipient: [`Delivery::accepted`] got the
/// message, [`Delivery::refused`] did not (each with the reply that says
/// why; a refusal whose status is 5xx is final, 4xx is tried again by the
/// outbox). An `Err` means no recipient got it; its
/// [`is_transient`](crate::Error::is_transient) decides whether the outbox
/// tries again. With [`RecipientPolicy::AllOrNothing`] a transport that
/// cannot deliver to every recipient delivers to none and returns
/// [`Error::Recipients`](crate::Error::Recipients).
///
/// ```
/// use mailgate_core::transport::{MailTransport, Payload};
/// use mailgate_core::{Delivery, RecipientPolicy, Result, async_trait};
/// use mailgate_core::lettre::address::Envelope;
///
/// /// Takes every message and forgets it.
/// #[derive(Debug)]
/// struct Discard;
///
/// #[async_trait]
/// impl MailTransport for Discard {
///     fn name(&self) -> &str {
///         "discard"
///     }
///
///     fn destination(&self) -> String {
///         "nowhere".into()
///     }
///
///     async fn deliver(
///         &self,
///         envelope: &Envelope,
///         _message: Payload<'_>,
///         _policy: RecipientPolicy,
///     ) -> Result<Delivery> {
///         let accepted: Vec<String> = envelope.to().iter().map(ToString::to_string).collect();
///         Ok(Delivery {
///             reply: "250 discarded".into(),
///             reused_connection: false,
///             message_id: None,
///             recipients: accepted.len(),
///             accepted,
///             refused: Vec::new(),
///             server: self.destination(),
///         })
///     }
/// }
/// ```
#[async_trait]
pub trait MailTransport: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and `check`: `smtp`, `graph`, ...
    fn name(&self) -> &str;

    /// Where it delivers, for logs and errors (`host:port`, an API's
    /// address); never a secret.
    fn destination(&self) -> String;

    /// Delivers `message` to the recipients of `envelope`.
    async fn deliver(
        &self,
        envelope: &Envelope,
        message: Payload<'_>,
        policy: RecipientPolicy,
    ) -> Result<Delivery>;

    /// How many deliveries may run at once; the outbox worker runs as many
    /// (an SMTP pool's connection bound). Default 1.
    fn max_parallel(&self) -> usize {
        1
    }

    /// Whether the destination takes an address with a UTF-8 local part
    /// (SMTPUTF8), learning it if it can (at most once a minute); `None`
    /// when not known. A message that needs it is refused before it is
    /// queued when this says `Some(false)`. Default `None`.
    async fn takes_utf8_local_parts(&self) -> Option<bool> {
        None
    }

    /// [`MailTransport::takes_utf8_local_parts`] as far as known without
    /// asking the destination. Default `None`.
    fn known_utf8_local_parts(&self) -> Option<bool> {
        None
    }

    /// `check --connect`: reaches the destination and authenticates, then
    /// lets go without sending. Default: an error saying this transport
    /// cannot be checked that way.
    async fn check(&self) -> Result<ConnectReport> {
        Err(crate::Error::Usage(format!(
            "the `{}` transport has no connection check",
            self.name()
        )))
    }

    /// Lets go of what it holds open (connections, sessions); deliveries
    /// after it fail. Default: nothing to close.
    async fn close(&self) {}
}
