//! A mailgate transport that records what it is handed instead of sending
//! it: the smallest complete [`MailTransport`], and a test double for code
//! that sends through a [`Mailer`](mailgate_core::Mailer) or runs the
//! outbox worker.
//!
//! ```
//! # async fn run() -> mailgate_core::Result<()> {
//! use std::sync::Arc;
//! use mailgate_transport_recorder::Recorder;
//!
//! let recorder = Recorder::new().refusing("nobody@example.com");
//! let mailer = mailgate_core::Mailer::builder()
//!     .transport(Arc::new(recorder.clone()))
//!     // ... settings and a strategy, as for SMTP
//! #   ;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};

use mailgate_core::transport::{MailTransport, Payload};
use mailgate_core::{
    Delivery, Envelope, Error, RecipientPolicy, RecipientRefusal, Result, async_trait,
};

/// One message as the transport was handed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The envelope sender (empty for the null sender).
    pub from: String,
    /// The recipients that took it.
    pub to: Vec<String>,
    /// The message.
    pub bytes: Vec<u8>,
}

/// Records deliveries; refuses the recipients named with
/// [`Recorder::refusing`] with `550 5.1.1`. Clones share one record.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    refused: Arc<Vec<String>>,
    record: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    /// Takes every recipient.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses `address` (compared without regard to case) from now on.
    pub fn refusing(mut self, address: &str) -> Self {
        Arc::make_mut(&mut self.refused).push(address.to_ascii_lowercase());
        self
    }

    /// What was delivered so far, in order.
    pub fn delivered(&self) -> Vec<Recorded> {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl MailTransport for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn destination(&self) -> String {
        "recorder".into()
    }

    async fn deliver(
        &self,
        envelope: &Envelope,
        message: Payload<'_>,
        policy: RecipientPolicy,
    ) -> Result<Delivery> {
        let (mut accepted, mut refused) = (Vec::new(), Vec::new());
        for (index, to) in envelope.to().iter().enumerate() {
            let to = to.to_string();
            if self.refused.contains(&to.to_ascii_lowercase()) {
                refused.push(RecipientRefusal {
                    address: to,
                    code: 550,
                    reply: "5.1.1 no such mailbox here".into(),
                    index,
                });
            } else {
                accepted.push(to);
            }
        }
        let server = self.destination();
        if accepted.is_empty() || (policy == RecipientPolicy::AllOrNothing && !refused.is_empty()) {
            return Err(Error::Recipients {
                server,
                total: envelope.to().len(),
                refused,
            });
        }
        let bytes = match message {
            Payload::Ready(bytes) | Payload::Exact(bytes) => bytes.to_vec(),
            // Takes 8-bit text as it is.
            Payload::Compose(build) => build(true)?,
        };
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Recorded {
                from: envelope.from().map(ToString::to_string).unwrap_or_default(),
                to: accepted.clone(),
                bytes,
            });
        Ok(Delivery {
            reply: "250 2.0.0 recorded".into(),
            reused_connection: false,
            message_id: None,
            recipients: accepted.len(),
            accepted,
            refused,
            server,
        })
    }
}
