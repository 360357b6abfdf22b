//! [`Mailer`]: the library API, including the trigger scripts' functions.

use std::path::PathBuf;
use std::sync::Arc;

use lettre::Message;
use lettre::address::Envelope;
use lettre::message::Mailbox;
use secrecy::SecretString;

use crate::error::{Error, Result};
use crate::message::{self, OutgoingMessage, raw};
use crate::outbox::{DsnRequest, MessageId, NewMessage, OutboxStore};
use crate::resolver::Resolution;
use crate::settings::Settings;
use crate::smtp::{ConnectReport, Delivery, RecipientPolicy};
use crate::strategy::SharedStrategy;
use crate::strategy::TokenSource;
use crate::transport::{MailTransport, Payload};

pub use crate::settings::DEFAULT_MAX_CONNECTIONS;

mod builder;

pub use builder::{FromMailer, MailerBuilder, SettingsBuilder};

struct Inner {
    settings: Settings,
    resolution: Resolution,
    strategy: SharedStrategy,
    transport: Arc<dyn MailTransport>,
    outbox: Option<Arc<dyn OutboxStore>>,
    /// Wakes this mailer's idle workers when it stores a message, so that
    /// in-process delivery does not wait for the next poll.
    outbox_wake: Arc<tokio::sync::Notify>,
    /// What a direct send does when some recipients are refused.
    policy: RecipientPolicy,
    /// The worker [`MailerBuilder::deliver_in_background`] started: its stop
    /// signal and task.
    #[allow(clippy::type_complexity)]
    background: std::sync::Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    >,
}

/// Sends mail with the settings of an RV&S config folder. Cheap to clone;
/// clones share one connection pool and one token cache.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.mail_hostname_and_port())
            .field("strategy", &self.inner.resolution.strategy)
            .field("strategy_impl", &self.inner.strategy.get())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A builder.
    pub fn builder() -> MailerBuilder {
        MailerBuilder::default()
    }

    /// A mailer for the config folder holding `is.properties` and
    /// `security.properties`, choosing among the strategies submitted
    /// through `inventory` ([`Registry::collect`](crate::Registry::collect)); the `mailgate` facade's
    /// `Mailer::from_config_dir` chooses among the built-in ones too.
    pub fn from_config_dir(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::builder().config_dir(dir).build()
    }

    /// A mailer for two named files.
    pub fn from_files(is: impl Into<PathBuf>, security: impl Into<PathBuf>) -> Result<Self> {
        Self::builder().is_file(is).security_file(security).build()
    }

    /// The loaded settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The chosen strategy and the rule that chose it.
    pub fn resolution(&self) -> &Resolution {
        &self.inner.resolution
    }

    /// Facts about the strategy that are safe to show (never a secret).
    pub fn describe_strategy(&self) -> Vec<(&'static str, String)> {
        self.inner.strategy.get().describe()
    }

    /// The SMTP server's host (trigger API `getSMTPServer()`).
    pub fn smtp_server(&self) -> &str {
        &self.inner.settings.server().host
    }

    /// The SMTP port (trigger API `getSMTPPort()`).
    pub fn smtp_port(&self) -> u16 {
        self.inner.settings.server().port
    }

    /// `host:port`.
    pub fn mail_hostname_and_port(&self) -> String {
        self.inner.settings.server().address()
    }

    /// An OAuth access token (trigger API `getOAuthAccessToken()`), from the
    /// same cache the connections use.
    pub async fn oauth_access_token(&self) -> Result<SecretString> {
        match self.inner.strategy.get().token_source() {
            Some(source) => source.access_token().await,
            None => Err(Error::Usage(format!(
                "the `{}` strategy uses no OAuth tokens (chosen because {}); set mksis.smtp.oauth.authentication=true and mksis.smtp.authentication=false to use OAuth",
                self.inner.resolution.strategy, self.inner.resolution.rule
            ))),
        }
    }

    /// Sends a message built with lettre's builder, as lettre formats it,
    /// with header lines folded to at most 998 octets and what it lacks of
    /// Message-ID and MIME-Version added (lettre adds neither to a message
    /// built with `body()`, nor a Message-ID to any). A body line over 998
    /// octets is refused (exit 65).
    ///
    /// With a strategy that authenticates as a user (basic), the envelope
    /// sender must be that user; this is checked before anything is sent.
    pub async fn send(&self, message: &Message) -> Result<Delivery> {
        let envelope = message.envelope();
        self.check_sender(envelope)?;
        let domain = message_id_domain(self.inner.settings.message_id_domain(), envelope);
        let bytes = lettre_wire(message, &domain)?;
        self.inner
            .transport
            .deliver(envelope, Payload::Ready(&bytes), self.inner.policy)
            .await
    }

    /// Composes and sends `message`: its text goes as 8-bit when the server
    /// offers 8BITMIME, quoted-printable or base64 otherwise. The sender
    /// defaults to `mksis.logging.email.from`, the Message-ID domain to
    /// `mailgate.smtp.messageIdDomain`, else the sender's.
    pub async fn send_message(&self, message: OutgoingMessage) -> Result<Delivery> {
        // Everything but the body is checked and the envelope found before
        // any connection is opened; the bytes are built once, for the
        // server's capabilities, after it has been greeted.
        let (message, default_from, envelope) = self.prepare(message)?;
        let compose = move |eight_bit: bool| message.into_wire(default_from.as_ref(), eight_bit);
        self.inner
            .transport
            .deliver(
                &envelope,
                Payload::Compose(Box::new(compose)),
                self.inner.policy,
            )
            .await
    }

    /// Sends a prepared RFC 5322 message to `envelope` as it is, adding only
    /// what it lacks of Date, Message-ID, MIME-Version and From (the
    /// envelope sender) and folding header lines longer than 998 octets.
    /// A body line over 998 octets is refused (exit 65).
    pub async fn send_raw(&self, envelope: &Envelope, message: &[u8]) -> Result<Delivery> {
        self.send_raw_named(envelope, None, message).await
    }

    /// [`Mailer::send_raw`], with `sender_name` as the display name of a
    /// From the message lacks (`sendmail -F`).
    pub async fn send_raw_named(
        &self,
        envelope: &Envelope,
        sender_name: Option<&str>,
        message: &[u8],
    ) -> Result<Delivery> {
        self.check_sender(envelope)?;
        let bytes = self.complete_raw(envelope, sender_name, message.to_vec())?;
        self.inner
            .transport
            .deliver(envelope, Payload::Ready(&bytes), self.inner.policy)
            .await
    }

    /// Sends a prepared RFC 5322 message to `envelope` exactly as given:
    /// nothing is added (no Date, Message-ID, MIME-Version or From), no Bcc
    /// field is removed and nothing is converted (no quoted-printable for a
    /// server without 8BITMIME, no RFC 2047, no folding), so a message
    /// signed with DKIM arrives with its signature intact. Only the
    /// transport touches it: lines that start with `.` are dot-stuffed on
    /// the wire and unstuffed by the server, and a last line without CRLF
    /// is ended by the end-of-data line.
    ///
    /// Checked before anything is sent, refused with
    /// [`Error::InvalidMessage`] (exit 65): a bare LF or a lone CR (SMTP
    /// needs CRLF; [`Mailer::send_raw`] normalises them), a line over 998
    /// octets, and an envelope address outside the grammar every other
    /// send uses. Refused once the server has answered EHLO, before MAIL:
    /// 8-bit data when it offers no 8BITMIME, 8-bit header fields when it
    /// offers no SMTPUTF8. Recipients and the [`Delivery`] are as for
    /// [`Mailer::send_raw`].
    pub async fn send_raw_exact(&self, envelope: &Envelope, message: &[u8]) -> Result<Delivery> {
        self.check_sender(envelope)?;
        check_envelope(envelope)?;
        raw::check_exact(message)?;
        self.inner
            .transport
            .deliver(envelope, Payload::Exact(message), self.inner.policy)
            .await
    }

    /// A prepared message with what it lacks added
    /// ([`raw::complete_owned`]: in its own buffer).
    fn complete_raw(
        &self,
        envelope: &Envelope,
        sender_name: Option<&str>,
        message: Vec<u8>,
    ) -> Result<Vec<u8>> {
        check_envelope(envelope)?;
        let from = envelope
            .from()
            .map(|a| Mailbox::new(sender_name.map(str::to_owned), a.clone()));
        let domain = message_id_domain(self.inner.settings.message_id_domain(), envelope);
        raw::complete_owned(
            message,
            &raw::Completion {
                from: from.as_ref(),
                message_id_domain: &domain,
            },
        )
    }

    /// With a strategy that authenticates as a user (basic), the envelope
    /// sender must be that user.
    fn check_sender(&self, envelope: &Envelope) -> Result<()> {
        if let (Some(user), Some(from)) =
            (self.inner.strategy.get().required_sender(), envelope.from())
            && !from.to_string().eq_ignore_ascii_case(user)
        {
            return Err(Error::invalid_message(
                "from",
                format!(
                    "`{from}` is not the authenticated user `{user}`; with {} authentication the sender must be the user set in mksis.logging.email.from",
                    self.inner.resolution.strategy
                ),
            ));
        }
        Ok(())
    }

    /// The trigger API's `sendmail(from, to, subject, message)`: a plain-text
    /// message; `to` may be a comma-separated list.
    pub async fn sendmail(
        &self,
        from: &str,
        to: &str,
        subject: &str,
        message: &str,
    ) -> Result<Delivery> {
        self.send_message(OutgoingMessage {
            from: Some(from.to_owned()),
            to: vec![to.to_owned()],
            subject: subject.to_owned(),
            body: message.to_owned(),
            ..OutgoingMessage::default()
        })
        .await
    }

    /// Connects, negotiates TLS and authenticates, then quits without sending.
    pub async fn check_connection(&self) -> Result<ConnectReport> {
        self.inner.transport.check().await
    }

    /// Token endpoint requests so far, with a strategy that uses tokens.
    pub fn token_fetches(&self) -> Option<u64> {
        self.inner
            .strategy
            .get()
            .token_source()
            .and_then(TokenSource::fetch_count)
    }

    /// Bound on simultaneous SMTP connections.
    pub fn max_connections(&self) -> usize {
        self.inner.transport.max_parallel()
    }

    /// The outbox this mailer was built with ([`MailerBuilder::outbox`]).
    pub fn outbox(&self) -> Result<&Arc<dyn OutboxStore>> {
        self.inner.outbox.as_ref().ok_or_else(|| {
            Error::Usage(
                "this mailer has no outbox: register an outbox store (`Registry::with_store`; the `mailgate` crate's `outbox-*` features list theirs) or give one to `MailerBuilder::outbox_store`".into(),
            )
        })
    }

    /// Stores a message built with lettre in the outbox, complete (Date,
    /// Message-ID, MIME-Version) as it will be sent; returns its id once it
    /// is durable.
    ///
    /// What sends it: the worker of
    /// [`MailerBuilder::deliver_in_background`], a [`Worker`](crate::outbox::Worker) the program
    /// runs, `mailgate deliver` or `mailgate relay` on the same outbox.
    /// With none of these it waits in the outbox (`mailgate check` says
    /// when no worker is alive).
    pub async fn enqueue(&self, message: &Message) -> Result<MessageId> {
        self.enqueue_raw(message.envelope(), &message.formatted())
            .await
    }

    /// Composes `message` (every part encoded so that any server takes it)
    /// and stores it in the outbox; returns its id once it is durable.
    pub async fn enqueue_message(&self, message: OutgoingMessage) -> Result<MessageId> {
        let (message, default_from, envelope) = self.prepare(message)?;
        let bytes = message.into_wire(default_from.as_ref(), false)?;
        self.store(&envelope, bytes, None).await
    }

    /// Stores a prepared message in the outbox, completed as
    /// [`Mailer::send_raw`] completes it; returns its id once it is durable.
    ///
    /// The outbox has no counterpart of [`Mailer::send_raw_exact`]: a
    /// stored message is converted to fit the server at delivery, and it
    /// records no flag that would forbid that.
    pub async fn enqueue_raw(&self, envelope: &Envelope, message: &[u8]) -> Result<MessageId> {
        self.enqueue_raw_named(envelope, None, message).await
    }

    /// [`Mailer::enqueue_raw`], with `sender_name` as the display name of a
    /// From the message lacks (`sendmail -F`).
    pub async fn enqueue_raw_named(
        &self,
        envelope: &Envelope,
        sender_name: Option<&str>,
        message: &[u8],
    ) -> Result<MessageId> {
        self.check_sender(envelope)?;
        let bytes = self.complete_raw(envelope, sender_name, message.to_vec())?;
        self.store(envelope, bytes, None).await
    }

    /// [`Mailer::enqueue_raw`] for a message whose sender asked for delivery
    /// status notifications its own way (the relay's `RET`, `ENVID`,
    /// `NOTIFY`, `ORCPT`): the DSNs follow `dsn`.
    pub async fn enqueue_raw_with_dsn(
        &self,
        envelope: &Envelope,
        message: &[u8],
        dsn: DsnRequest,
    ) -> Result<MessageId> {
        self.enqueue_raw_owned(envelope, message.to_vec(), Some(dsn))
            .await
    }

    /// [`Mailer::enqueue_raw`] (with the DSN request of
    /// [`Mailer::enqueue_raw_with_dsn`], if any) for a message the caller
    /// hands over: it is completed and stored without a copy of its body,
    /// so a big message costs about its own size here, not a multiple
    /// (`mailgate relay` stores each message this way). A few hundred
    /// bytes of spare capacity in `message` spare it a reallocation.
    pub async fn enqueue_raw_owned(
        &self,
        envelope: &Envelope,
        message: Vec<u8>,
        dsn: Option<DsnRequest>,
    ) -> Result<MessageId> {
        self.check_sender(envelope)?;
        let bytes = self.complete_raw(envelope, None, message)?;
        self.store(envelope, bytes, dsn).await
    }

    /// `message` with the settings' defaults (Message-ID domain, sender),
    /// the default sender, and its envelope, checked against the strategy.
    fn prepare(
        &self,
        mut message: OutgoingMessage,
    ) -> Result<(OutgoingMessage, Option<Mailbox>, Envelope)> {
        if message.message_id_domain.is_none() {
            message.message_id_domain = self.inner.settings.message_id_domain().map(str::to_owned);
        }
        let default_from = self.inner.settings.sender().cloned();
        let envelope = message.envelope(default_from.as_ref())?;
        self.check_sender(&envelope)?;
        Ok((message, default_from, envelope))
    }

    async fn store(
        &self,
        envelope: &Envelope,
        bytes: Vec<u8>,
        dsn: Option<DsnRequest>,
    ) -> Result<MessageId> {
        let store = self.outbox()?;
        self.refuse_what_upstream_cannot_take(envelope, &bytes)
            .await?;
        let (subject, message_id) = raw::subject_and_message_id(&bytes);
        let new = NewMessage {
            from: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
            to: envelope.to().iter().map(ToString::to_string).collect(),
            subject,
            message_id,
            bytes,
            dsn,
        };
        let id = store.enqueue(new).await?;
        self.inner.outbox_wake.notify_one();
        Ok(id)
    }

    /// Refuses, before it is queued, a message the upstream can never take:
    /// a non-ASCII local part (in the envelope or an address field) for a
    /// server known not to offer SMTPUTF8. Everything else 8-bit is
    /// converted at delivery. When the server's answer is not known (it is
    /// unreachable), the message is queued, and a refusal at delivery
    /// reaches its sender as a DSN.
    async fn refuse_what_upstream_cannot_take(
        &self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<()> {
        let utf8_path = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .find(|a| !a.user().is_ascii());
        let head_end = raw::HeaderSection::parse(bytes)
            .fields
            .last()
            .map_or(0, |f| f.end);
        let offending = match utf8_path {
            Some(address) => Some(("address", address.to_string())),
            None if !bytes[..head_end].is_ascii() => {
                message::convert::non_ascii_header_address(&bytes[..head_end])
                    .map(|address| ("header", address))
            }
            None => None,
        };
        let Some((field, address)) = offending else {
            return Ok(());
        };
        if self.inner.transport.takes_utf8_local_parts().await != Some(false) {
            return Ok(());
        }
        Err(Error::invalid_message(
            field,
            format!(
                "`{}` has a non-ASCII local part, which needs SMTPUTF8, and {} does not offer it; nothing was queued",
                crate::smtp::escape_controls(&address, 200),
                self.mail_hostname_and_port()
            ),
        ))
    }

    /// Whether the upstream takes SMTPUTF8 (RFC 6531), as far as this
    /// mailer knows without connecting: what the last connection's EHLO
    /// said, `None` before the first. The relay uses it to refuse a
    /// non-ASCII local part at RCPT when the upstream cannot take it.
    pub fn upstream_offers_smtputf8(&self) -> Option<bool> {
        self.inner.transport.known_utf8_local_parts()
    }

    /// [`Mailer::upstream_offers_smtputf8`], learning it with one EHLO
    /// (no authentication) when no connection has been opened yet.
    pub async fn learn_upstream_smtputf8(&self) -> Option<bool> {
        self.inner.transport.takes_utf8_local_parts().await
    }

    /// What a worker of this mailer waits on besides its poll timer.
    pub(crate) fn outbox_wake(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.inner.outbox_wake)
    }

    /// Sends bytes that are complete already (the outbox's), as they are,
    /// to each recipient the server accepts.
    pub(crate) async fn send_prepared(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Delivery> {
        self.check_sender(envelope)?;
        self.inner
            .transport
            .deliver(
                envelope,
                Payload::Ready(message),
                RecipientPolicy::PerRecipient,
            )
            .await
    }

    /// Politely closes the pooled connections (QUIT). Dropping the mailer closes them too, abruptly.
    pub async fn close(&self) {
        let background = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((stop, task)) = background {
            // The deliveries in hand are finished first.
            let _ = stop.send(());
            let _ = task.await;
        }
        self.inner.transport.close().await;
    }
}

/// Checks the envelope's addresses with the grammar the relay and the
/// outbox share: what is accepted here can be delivered.
fn check_envelope(envelope: &Envelope) -> Result<()> {
    if let Some(from) = envelope.from() {
        message::address::envelope_address("from", from.as_ref())?;
    }
    for to in envelope.to() {
        message::address::envelope_address("to", to.as_ref())?;
    }
    Ok(())
}

/// The domain of a Message-ID mailgate adds: the configured one, else the
/// envelope sender's as an A-label (a header is ASCII unless the server
/// takes SMTPUTF8, and a msg-id is ASCII in any case). Empty when there is
/// neither (then `localhost`).
fn message_id_domain(configured: Option<&str>, envelope: &Envelope) -> String {
    if let Some(domain) = configured {
        return domain.to_owned();
    }
    envelope
        .from()
        .and_then(|a| message::address::ascii_domain("from", a).ok())
        .map(|a| a.domain().to_owned())
        .unwrap_or_default()
}

/// A lettre message as [`Mailer::send`] sends it: completed like a prepared
/// message ([`raw::complete`]; lettre always writes Date and From).
fn lettre_wire(message: &Message, message_id_domain: &str) -> Result<Vec<u8>> {
    raw::complete_owned(
        message.formatted(),
        &raw::Completion {
            from: None,
            message_id_domain,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::SinglePart;

    fn head_of(wire: &[u8]) -> String {
        let text = String::from_utf8(wire.to_vec()).unwrap();
        text.split("\r\n\r\n").next().unwrap().to_owned()
    }

    #[test]
    fn lettre_messages_get_a_message_id_and_mime_version() {
        let m = Message::builder()
            .from("alm@example.com".parse().unwrap())
            .to("dev@example.com".parse().unwrap())
            .subject("s")
            .body(String::from("hi"))
            .unwrap();
        let wire = lettre_wire(&m, "example.org").unwrap();
        let head = head_of(&wire);
        assert_eq!(head.matches("Message-ID: <").count(), 1, "{head}");
        assert!(head.contains("@example.org>"), "{head}");
        assert_eq!(head.matches("MIME-Version: 1.0").count(), 1, "{head}");
        assert_eq!(head.matches("Date: ").count(), 1, "{head}");
        assert!(wire.ends_with(b"\r\n\r\nhi"));

        // What a message has is kept, not doubled.
        let m = Message::builder()
            .from("alm@example.com".parse().unwrap())
            .to("dev@example.com".parse().unwrap())
            .message_id(Some("<own@example.com>".into()))
            .singlepart(SinglePart::plain(String::from("hi")))
            .unwrap();
        let head = head_of(&lettre_wire(&m, "example.org").unwrap());
        assert_eq!(head.matches("Message-ID:").count(), 1, "{head}");
        assert!(head.contains("Message-ID: <own@example.com>"), "{head}");
        assert_eq!(head.matches("MIME-Version: 1.0").count(), 1, "{head}");
    }

    #[test]
    fn message_id_domains_are_ascii() {
        let envelope = Envelope::new(
            Some("alm@bücher.example".parse().unwrap()),
            vec!["dev@example.com".parse().unwrap()],
        )
        .unwrap();
        assert_eq!(message_id_domain(None, &envelope), "xn--bcher-kva.example");
        assert_eq!(
            message_id_domain(Some("mail.example.org"), &envelope),
            "mail.example.org"
        );
        let no_sender = Envelope::new(None, vec!["dev@example.com".parse().unwrap()]).unwrap();
        assert_eq!(message_id_domain(None, &no_sender), "");
    }
}
