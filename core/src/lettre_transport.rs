//! [`lettre::AsyncTransport`] for [`Mailer`], so that code written against
//! lettre's transport trait can send through mailgate.

use lettre::address::Envelope;
use lettre::{AsyncTransport, Message};

use crate::error::Error;
use crate::mailer::Mailer;
use crate::smtp::Delivery;

/// Sends as the inherent methods of the same names do: [`Mailer::send`]
/// (with mailgate's completion and line-length checks, not lettre's plain
/// formatting) and [`Mailer::send_raw`]. `shutdown` is [`Mailer::close`]:
/// QUIT on the pooled connections, and later sends fail.
///
/// ```no_run
/// # async fn run() -> mailgate_core::Result<()> {
/// use mailgate_core::lettre::AsyncTransport;
///
/// // Written against lettre's trait, knowing nothing of mailgate.
/// async fn notify<T>(t: &T, m: mailgate_core::Message) -> Result<T::Ok, T::Error>
/// where
///     T: AsyncTransport + Sync,
/// {
///     t.send(m).await
/// }
///
/// let mailer = mailgate_core::Mailer::from_config_dir("config")?;
/// let message = mailgate_core::Message::builder()
///     .from("alm@example.com".parse().unwrap())
///     .to("dev@example.com".parse().unwrap())
///     .subject("Build 42")
///     .body("passed".to_owned())
///     .unwrap();
/// let delivery = notify(&mailer, message).await?;
/// # let _ = delivery; Ok(()) }
/// ```
#[async_trait::async_trait]
impl AsyncTransport for Mailer {
    type Ok = Delivery;
    type Error = Error;

    async fn send(&self, message: Message) -> Result<Delivery, Error> {
        Mailer::send(self, &message).await
    }

    async fn send_raw(&self, envelope: &Envelope, email: &[u8]) -> Result<Delivery, Error> {
        Mailer::send_raw(self, envelope, email).await
    }

    async fn shutdown(&self) {
        self.close().await;
    }
}
