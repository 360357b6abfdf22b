//! One mail transaction: MAIL, RCPT, DATA and the message.
//!
//! With PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write
//! and their replies are read in order; the message and the end-of-data line
//! go in one more. That is two round trips per message. Without it, one
//! command per round trip.
//!
//! Per recipient by default, as Postfix and Nodemailer do: a refused RCPT
//! leaves that recipient out and the message goes to the others; the result
//! lists who was accepted and who was refused with the server's reply. Only
//! when every recipient is refused is the transaction an error.
//!
//! [`RecipientPolicy::AllOrNothing`] sends to no one if any recipient is
//! refused. When the server has already answered the pipelined DATA with
//! 354, the only way to abandon the transaction is to drop the connection
//! before the end-of-data line (RFC 5321 §4.1.1.4: no delivery without it).

use lettre::address::Envelope;

use super::connection::{Connection, Io};
use super::data::encode_data;
use super::reply::Reply;
use crate::error::{Error, RecipientRefusal, Result, Stage};
use crate::message::address::{ascii_domain, recipient_key};
use crate::message::convert;
use crate::message::raw::HeaderSection;
use crate::smtp::Capabilities;

/// What a transaction delivered.
#[derive(Debug)]
pub(crate) struct Sent {
    /// The final reply's text, cleaned.
    pub(crate) reply: String,
    /// Distinct recipients the server accepted.
    pub(crate) recipients: usize,
    /// The envelope's recipients the server accepted, as given.
    pub(crate) accepted: Vec<String>,
    /// The envelope's recipients the server refused, with its replies.
    pub(crate) refused: Vec<RecipientRefusal>,
}

/// What a transaction does when some recipients are refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecipientPolicy {
    /// Deliver to the accepted recipients and report the refused ones
    /// (Postfix, Nodemailer); an error only when all are refused.
    #[default]
    PerRecipient,
    /// Deliver to no one if any recipient is refused.
    AllOrNothing,
}

/// A message ready for the DATA phase, encoded once however often it is
/// sent (a pooled connection found closed means a second attempt).
pub(crate) struct WireMessage {
    /// Dot-stuffed, CRLF only, with the end-of-data line.
    data: Vec<u8>,
    /// The message has 8-bit bytes.
    eight_bit: bool,
    /// Its header section has 8-bit bytes (UTF-8 addresses: needs SMTPUTF8).
    eight_bit_headers: bool,
    /// The Message-ID field's value.
    pub(crate) message_id: Option<String>,
    /// Sent as given: a refusal points to the converting send instead.
    exact: bool,
}

impl WireMessage {
    /// `message` converted where `caps` require it ([`convert::fit`]).
    pub(crate) fn for_server(message: &[u8], caps: &Capabilities) -> Result<Self> {
        let upstream = convert::Upstream {
            eight_bit_mime: caps.eight_bit_mime(),
            smtputf8: caps.smtputf8(),
        };
        Ok(Self::new(&convert::fit(message, upstream)?))
    }

    pub(crate) fn new(message: &[u8]) -> Self {
        let section = HeaderSection::parse(message);
        let eight_bit = !message.is_ascii();
        Self {
            data: encode_data(message),
            eight_bit,
            eight_bit_headers: eight_bit && !message[..section.body_start].is_ascii(),
            message_id: message_id_of(message, &section),
            exact: false,
        }
    }

    /// `message` exactly as given, for a server that must take it as it is
    /// (8-bit data without 8BITMIME is refused at MAIL, not converted).
    pub(crate) fn exact(message: &[u8]) -> Self {
        Self {
            exact: true,
            ..Self::new(message)
        }
    }

    /// What the caller can do about data this server cannot take.
    fn remedy(&self, converted: &'static str) -> &'static str {
        if self.exact {
            "it is sent as is, never converted: use send_raw (`send --raw` without --as-is), which converts it"
        } else {
            converted
        }
    }
}

/// The Message-ID field's value, for the caller's records.
fn message_id_of(message: &[u8], section: &HeaderSection) -> Option<String> {
    let field = section.fields.iter().find(|f| f.is("Message-ID"))?;
    let value = String::from_utf8_lossy(field.value(message));
    let value: String = value.split_whitespace().collect();
    (!value.is_empty()).then_some(value)
}

/// Sends the message to the envelope's distinct recipients.
pub(crate) async fn send<IO: Io>(
    conn: &mut Connection<IO>,
    envelope: &Envelope,
    message: &WireMessage,
    policy: RecipientPolicy,
) -> Result<Sent> {
    let data = &message.data;
    let paths = Paths::for_server(conn, envelope, message)?;
    let mail = mail_command(conn, &paths, message, data.len())?;
    let rcpts: Vec<String> = paths
        .to
        .iter()
        .map(|to| format!("RCPT TO:<{to}>"))
        .collect();

    let deadline = conn.peer().deadline();
    let envelope_replies = if conn.caps().pipelining() {
        pipelined_envelope(conn, &mail, &rcpts, deadline).await?
    } else {
        stepwise_envelope(conn, &mail, &rcpts, policy, deadline).await?
    };
    let (data_reply, outcome) = envelope_replies.check(conn, envelope, &paths, policy)?;
    if let Some(data_reply) = data_reply
        && data_reply.code != 354
    {
        return Err(conn.peer().smtp_error(Stage::Data, &data_reply));
    }

    tracing::debug!(target: "mailgate::smtp", "C: <message, {} bytes on the wire>", data.len());
    let deadline = conn.peer().deadline();
    conn.write_all(data, Stage::Data, deadline).await?;
    let reply = conn.read_reply(Stage::Data, deadline).await?;
    tracing::debug!(target: "mailgate::smtp", "S: {}", conn.peer().clean(&reply.to_string()));
    if reply.code != 250 {
        if reply.code == 421 {
            conn.poison();
        }
        return Err(conn.peer().smtp_error(Stage::Data, &reply));
    }
    Ok(Sent {
        reply: conn.peer().clean(&reply.text()),
        recipients: outcome.distinct_accepted,
        accepted: outcome.accepted,
        refused: outcome.refused,
    })
}

/// The envelope as this server takes it: one path per distinct recipient
/// (domains compared without case), international domains as A-labels
/// unless the server offers SMTPUTF8.
struct Paths {
    from: String,
    to: Vec<String>,
    /// For each of the envelope's recipients, its path in `to`.
    of: Vec<usize>,
    /// Some path needs SMTPUTF8 (a non-ASCII local part, with a server that offers it).
    utf8: bool,
}

impl Paths {
    fn for_server<IO: Io>(
        conn: &Connection<IO>,
        envelope: &Envelope,
        message: &WireMessage,
    ) -> Result<Self> {
        let smtputf8 = conn.caps().smtputf8();
        let mut utf8 = false;
        let mut path = |address: &lettre::Address| -> Result<String> {
            let text = addr(address);
            if text.is_ascii() {
                return Ok(text.to_owned());
            }
            if smtputf8 {
                utf8 = true;
                return Ok(text.to_owned());
            }
            if address.user().is_ascii() {
                return Ok(addr(&ascii_domain("address", address)?).to_owned());
            }
            Err(Error::invalid_message(
                "address",
                format!(
                    "`{}` has a non-ASCII local part, which needs SMTPUTF8, and {} does not offer it; nothing was sent",
                    conn.peer().clean(text),
                    conn.peer().address
                ),
            ))
        };
        let from = envelope
            .from()
            .map(&mut path)
            .transpose()?
            .unwrap_or_default();
        let mut seen = std::collections::HashMap::new();
        let mut to = Vec::with_capacity(envelope.to().len());
        let mut of = Vec::with_capacity(envelope.to().len());
        for address in envelope.to() {
            let p = path(address)?;
            let index = *seen.entry(recipient_key(&p)).or_insert_with(|| {
                to.push(p);
                to.len() - 1
            });
            of.push(index);
        }
        // UTF-8 in the headers (an address written as is) needs SMTPUTF8 too.
        if smtputf8 && message.eight_bit_headers {
            utf8 = true;
        }
        Ok(Self { from, to, of, utf8 })
    }
}

/// The address as it goes in the envelope (no copy, no formatting).
fn addr(address: &lettre::Address) -> &str {
    AsRef::<str>::as_ref(address)
}

/// `MAIL FROM:<addr>` with the parameters the message needs and the server offers.
fn mail_command<IO: Io>(
    conn: &Connection<IO>,
    paths: &Paths,
    message: &WireMessage,
    wire_size: usize,
) -> Result<String> {
    let caps = conn.caps();
    let peer = conn.peer();
    let mut line = format!("MAIL FROM:<{}>", paths.from);
    if paths.utf8 {
        line.push_str(" SMTPUTF8");
    }
    if message.eight_bit_headers && !paths.utf8 {
        // RFC 6532: UTF-8 in header fields only with SMTPUTF8.
        return Err(Error::invalid_message(
            "message",
            format!(
                "its header fields hold 8-bit (UTF-8) text, which needs SMTPUTF8, and {} does not offer it; {}; nothing was sent",
                peer.address,
                message.remedy("encode them (RFC 2047) or use A-label domains")
            ),
        ));
    }
    if message.eight_bit {
        if caps.eight_bit_mime() {
            line.push_str(" BODY=8BITMIME");
        } else if !paths.utf8 {
            return Err(Error::invalid_message(
                "message",
                format!(
                    "it holds 8-bit data but {} offers no 8BITMIME (RFC 6152); {}; nothing was sent",
                    peer.address,
                    message.remedy("send it encoded (quoted-printable or base64)")
                ),
            ));
        }
    }
    if caps.supports("SIZE") {
        if let Some(limit) = caps.size_limit()
            && wire_size as u64 > limit
        {
            return Err(Error::invalid_message(
                "message",
                format!(
                    "{wire_size} bytes exceed the {limit}-byte SIZE limit {} announced; nothing was sent",
                    peer.address
                ),
            ));
        }
        line.push_str(&format!(" SIZE={wire_size}"));
    }
    Ok(line)
}

/// The replies to MAIL, each RCPT and (when it was sent) DATA.
struct EnvelopeReplies {
    mail: Reply,
    rcpts: Vec<Reply>,
    data: Option<Reply>,
}

/// Who the envelope replies accepted.
struct RecipientOutcome {
    distinct_accepted: usize,
    accepted: Vec<String>,
    refused: Vec<RecipientRefusal>,
}

impl EnvelopeReplies {
    /// The reply to DATA (when it was sent) and who was accepted, when the
    /// transaction goes on; else the error, with the connection poisoned
    /// where it is out of step.
    fn check<IO: Io>(
        self,
        conn: &mut Connection<IO>,
        envelope: &Envelope,
        paths: &Paths,
        policy: RecipientPolicy,
    ) -> Result<(Option<Reply>, RecipientOutcome)> {
        let peer = conn.peer().clone();
        let data_started = self.data.as_ref().is_some_and(|r| r.code == 354);
        let closing = std::iter::once(&self.mail)
            .chain(&self.rcpts)
            .chain(&self.data)
            .any(|r| r.code == 421);
        let any_accepted = self.rcpts.iter().any(Reply::is_positive);
        let goes_on = match policy {
            RecipientPolicy::PerRecipient => any_accepted,
            RecipientPolicy::AllOrNothing => self.all_accepted(),
        };
        if closing || (data_started && !(self.mail.is_positive() && goes_on)) {
            conn.poison();
        }
        if !self.mail.is_positive() {
            return Err(peer.smtp_error(Stage::Mail, &self.mail));
        }
        if let Some(closing) = self.rcpts.iter().find(|r| r.code == 421) {
            return Err(peer.smtp_error(Stage::Rcpt, closing));
        }
        let mut outcome = RecipientOutcome {
            distinct_accepted: self.rcpts.iter().filter(|r| r.is_positive()).count(),
            accepted: Vec::new(),
            refused: Vec::new(),
        };
        for (index, (address, path)) in envelope.to().iter().zip(&paths.of).enumerate() {
            // A stepwise envelope stops at the first 421; it was caught above.
            let Some(reply) = self.rcpts.get(*path) else {
                continue;
            };
            if reply.is_positive() {
                outcome.accepted.push(addr(address).to_owned());
            } else {
                outcome.refused.push(RecipientRefusal {
                    address: peer.clean(addr(address)),
                    code: reply.code,
                    reply: peer.clean(&reply.text()),
                    index,
                });
            }
        }
        if !outcome.refused.is_empty() && !goes_on {
            return Err(Error::Recipients {
                server: peer.address.clone(),
                total: envelope.to().len(),
                refused: outcome.refused,
            });
        }
        Ok((self.data, outcome))
    }

    fn all_accepted(&self) -> bool {
        self.mail.is_positive() && self.rcpts.iter().all(Reply::is_positive)
    }
}

async fn pipelined_envelope<IO: Io>(
    conn: &mut Connection<IO>,
    mail: &str,
    rcpts: &[String],
    deadline: tokio::time::Instant,
) -> Result<EnvelopeReplies> {
    let mut batch = String::with_capacity(mail.len() + rcpts.len() * 48 + 16);
    for line in std::iter::once(mail)
        .chain(rcpts.iter().map(String::as_str))
        .chain(["DATA"])
    {
        tracing::debug!(target: "mailgate::smtp", "C: {line}");
        batch.push_str(line);
        batch.push_str("\r\n");
    }
    conn.write_all(batch.as_bytes(), Stage::Mail, deadline)
        .await?;
    let mail = read_logged(conn, Stage::Mail, deadline, None).await?;
    let mut first_refusal = (!mail.is_positive()).then(|| (Stage::Mail, mail.clone()));
    let mut replies = Vec::with_capacity(rcpts.len());
    for _ in rcpts {
        let reply = read_logged(conn, Stage::Rcpt, deadline, first_refusal.as_ref()).await?;
        if !reply.is_positive() && first_refusal.is_none() {
            first_refusal = Some((Stage::Rcpt, reply.clone()));
        }
        replies.push(reply);
    }
    let data = read_logged(conn, Stage::Data, deadline, first_refusal.as_ref()).await?;
    Ok(EnvelopeReplies {
        mail,
        rcpts: replies,
        data: Some(data),
    })
}

/// Reads one pipelined reply. When the stream breaks after the server has
/// already refused something (a 421 and then the close, say), that refusal
/// is the error, not the broken stream.
async fn read_logged<IO: Io>(
    conn: &mut Connection<IO>,
    stage: Stage,
    deadline: tokio::time::Instant,
    earlier_refusal: Option<&(Stage, Reply)>,
) -> Result<Reply> {
    match conn.read_reply(stage, deadline).await {
        Ok(reply) => {
            tracing::debug!(target: "mailgate::smtp", "S: {}", conn.peer().clean(&reply.to_string()));
            Ok(reply)
        }
        Err(e) => match earlier_refusal {
            Some((stage, reply)) => Err(conn.peer().smtp_error(*stage, reply)),
            None => Err(e),
        },
    }
}

async fn stepwise_envelope<IO: Io>(
    conn: &mut Connection<IO>,
    mail: &str,
    rcpts: &[String],
    policy: RecipientPolicy,
    deadline: tokio::time::Instant,
) -> Result<EnvelopeReplies> {
    let mail_reply = conn.command(mail, Stage::Mail, deadline).await?;
    if !mail_reply.is_positive() {
        return Ok(EnvelopeReplies {
            mail: mail_reply,
            rcpts: Vec::new(),
            data: None,
        });
    }
    let mut replies = Vec::with_capacity(rcpts.len());
    for rcpt in rcpts {
        let reply = conn.command(rcpt, Stage::Rcpt, deadline).await?;
        let closing = reply.code == 421;
        replies.push(reply);
        if closing {
            break;
        }
    }
    let complete = replies.len() == rcpts.len();
    let goes_on = match policy {
        RecipientPolicy::PerRecipient => replies.iter().any(Reply::is_positive),
        RecipientPolicy::AllOrNothing => replies.iter().all(Reply::is_positive),
    };
    let data = if complete && goes_on {
        Some(conn.command("DATA", Stage::Data, deadline).await?)
    } else {
        None
    };
    Ok(EnvelopeReplies {
        mail: mail_reply,
        rcpts: replies,
        data,
    })
}

#[cfg(test)]
mod tests;
