//! A blocking [`Mailer`] for programs without an async runtime: a plain
//! `fn main`, a build script, a trigger-like script runner.
//!
//! ```no_run
//! fn main() -> mailgate::Result<()> {
//!     let mailer = mailgate::blocking::Mailer::from_config_dir("config")?;
//!     println!("sending through {}", mailer.mail_hostname_and_port());
//!     mailer.sendmail("alm@example.com", "dev@example.com", "Build 42", "passed")?;
//!     mailer.close();
//!     Ok(())
//! }
//! ```
//!
//! Each mailer runs the async [`mailgate_core::Mailer`] on a runtime of its
//! own, on one thread named `mailgate-blocking`; a call hands its work to
//! that thread and waits for the result. So it also works when called from
//! inside an async runtime (it never panics there, and dropping it there is
//! fine), but the call then blocks a thread of that runtime, and on a
//! current-thread runtime stops everything else until it returns. Async code
//! should use [`mailgate_core::Mailer`] itself, or call this one from
//! `tokio::task::spawn_blocking`.
//!
//! It implements [`lettre::Transport`], so code written against lettre's
//! blocking transport can send through it.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc;

use mailgate_core::lettre;
use mailgate_core::secrecy::SecretString;
use mailgate_core::{
    ConnectReport, Delivery, Envelope, Error, ErrorKind, Message, OutgoingMessage, Result,
};
use tokio::runtime::{Handle, Runtime};

/// Sends mail with the settings of an RV&S config folder, blocking the
/// calling thread until each call is done; see the [module](self) docs.
///
/// Share it between threads by reference (it is `Sync`) or through an `Arc`:
/// calls from several threads run concurrently, sharing one connection pool
/// and one token cache. Dropping it closes the pooled connections abruptly;
/// [`Mailer::close`] says QUIT first.
pub struct Mailer {
    inner: mailgate_core::Mailer,
    /// Where the calls run; also reachable after [`Drop`] took the runtime
    /// (a call can no longer be made then).
    handle: Handle,
    /// `Some` until dropped: [`Drop`] takes it to shut it down without
    /// blocking, which dropping a runtime inside an async context would do
    /// (and panic).
    runtime: Option<Runtime>,
}

impl fmt::Debug for Mailer {
    /// The inner mailer's: server and strategy, never a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::Mailer")
            .field(&self.inner)
            .finish()
    }
}

impl Mailer {
    /// Wraps an async mailer (a [`crate::Mailer`] through its
    /// `into_inner()`), starting the runtime its calls run on (one thread).
    ///
    /// Give it a mailer that is not used from other runtimes as well: a
    /// pooled connection belongs to the runtime that opened it, and a call
    /// here that picks one opened on a current-thread runtime blocked in
    /// that very call makes no progress until `mailgate.smtp.timeoutSeconds`
    /// runs out.
    pub fn new(inner: impl Into<mailgate_core::Mailer>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mailgate-blocking")
            .enable_all()
            .build()
            .map_err(runtime_error)?;
        Ok(Self {
            inner: inner.into(),
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// A builder whose registry is [`crate::default_registry`]; its
    /// `build()` returns a blocking mailer.
    ///
    /// ```no_run
    /// let mailer = mailgate::blocking::Mailer::builder()
    ///     .config_dir("config")
    ///     .property("mailgate.smtp.timeoutSeconds", "10")
    ///     .build()?;
    /// # Ok::<(), mailgate::Error>(())
    /// ```
    pub fn builder() -> crate::MailerBuilder<Mailer> {
        crate::MailerBuilder::default()
    }

    /// A mailer for the config folder holding `is.properties` and
    /// `security.properties` ([`crate::Mailer::from_config_dir`]).
    pub fn from_config_dir(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::new(crate::Mailer::from_config_dir(dir)?.into_inner())
    }

    /// A mailer for two named files ([`crate::Mailer::from_files`]).
    pub fn from_files(is: impl Into<PathBuf>, security: impl Into<PathBuf>) -> Result<Self> {
        Self::new(crate::Mailer::from_files(is, security)?.into_inner())
    }

    /// The async mailer this one runs, e.g. for its settings or resolution.
    /// Calls made through it run on the caller's runtime, with the same
    /// connection pool (see [`Mailer::new`]).
    pub fn as_async(&self) -> &mailgate_core::Mailer {
        &self.inner
    }

    /// The SMTP server's host (trigger API `getSMTPServer()`).
    pub fn smtp_server(&self) -> &str {
        self.inner.smtp_server()
    }

    /// The SMTP port (trigger API `getSMTPPort()`).
    pub fn smtp_port(&self) -> u16 {
        self.inner.smtp_port()
    }

    /// `host:port`.
    pub fn mail_hostname_and_port(&self) -> String {
        self.inner.mail_hostname_and_port()
    }

    /// An OAuth access token (trigger API `getOAuthAccessToken()`), from the
    /// same cache the connections use ([`mailgate_core::Mailer::oauth_access_token`]).
    pub fn oauth_access_token(&self) -> Result<SecretString> {
        let inner = self.inner.clone();
        self.run(async move { inner.oauth_access_token().await })
    }

    /// Sends a message built with lettre's builder, completed as
    /// [`mailgate_core::Mailer::send`] completes it.
    pub fn send(&self, message: &Message) -> Result<Delivery> {
        let inner = self.inner.clone();
        let message = message.clone();
        self.run(async move { inner.send(&message).await })
    }

    /// Composes and sends `message` ([`mailgate_core::Mailer::send_message`]).
    pub fn send_message(&self, message: OutgoingMessage) -> Result<Delivery> {
        let inner = self.inner.clone();
        self.run(async move { inner.send_message(message).await })
    }

    /// Sends a prepared RFC 5322 message to `envelope`
    /// ([`mailgate_core::Mailer::send_raw`]).
    pub fn send_raw(&self, envelope: &Envelope, message: &[u8]) -> Result<Delivery> {
        let inner = self.inner.clone();
        let envelope = envelope.clone();
        let message = message.to_vec();
        self.run(async move { inner.send_raw(&envelope, &message).await })
    }

    /// Sends a prepared RFC 5322 message to `envelope` exactly as given:
    /// no completion, no Bcc removal, no conversion; bare line ends, lines
    /// over 998 octets and 8-bit data the server cannot take are refused
    /// ([`mailgate_core::Mailer::send_raw_exact`]).
    pub fn send_raw_exact(&self, envelope: &Envelope, message: &[u8]) -> Result<Delivery> {
        let inner = self.inner.clone();
        let envelope = envelope.clone();
        let message = message.to_vec();
        self.run(async move { inner.send_raw_exact(&envelope, &message).await })
    }

    /// The trigger API's `sendmail(from, to, subject, message)`: a plain-text
    /// message; `to` may be a comma-separated list
    /// ([`mailgate_core::Mailer::sendmail`]).
    pub fn sendmail(&self, from: &str, to: &str, subject: &str, message: &str) -> Result<Delivery> {
        let inner = self.inner.clone();
        let (from, to, subject, message) = (
            from.to_owned(),
            to.to_owned(),
            subject.to_owned(),
            message.to_owned(),
        );
        self.run(async move { inner.sendmail(&from, &to, &subject, &message).await })
    }

    /// Connects, negotiates TLS and authenticates, then quits without
    /// sending ([`mailgate_core::Mailer::check_connection`]).
    pub fn check_connection(&self) -> Result<ConnectReport> {
        let inner = self.inner.clone();
        self.run(async move { inner.check_connection().await })
    }

    /// Politely closes the pooled connections (QUIT) and stops the runtime.
    /// Clones of [`Mailer::as_async`] are closed too: their sends fail.
    pub fn close(self) {
        self.quit_pooled();
    }

    /// QUIT on every pooled connection; later sends fail
    /// ([`mailgate_core::Mailer::close`]).
    fn quit_pooled(&self) {
        let inner = self.inner.clone();
        // Fails only if the runtime is gone, and then so are the connections.
        let _ = self.run(async move {
            inner.close().await;
            Ok(())
        });
    }

    /// Runs `future` on this mailer's runtime and waits for its output on a
    /// std channel: unlike `Handle::block_on` or a oneshot's
    /// `blocking_recv`, waiting that way does not panic inside a runtime.
    /// A panic of the future resumes in the caller.
    fn run<T, F>(&self, future: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let task = self.handle.spawn(future);
        self.handle.spawn(async move {
            let _ = tx.send(task.await);
        });
        match rx.recv() {
            Ok(Ok(output)) => output,
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled, or never run: the runtime was shut down.
            Ok(Err(_)) | Err(mpsc::RecvError) => Err(runtime_error(std::io::Error::other(
                "the runtime has shut down",
            ))),
        }
    }
}

/// Errors of the runtime itself: starting it fails only when the operating
/// system refuses a thread or an I/O driver (epoll, kqueue), for lack of
/// resources that may be back later. No [`Error`] variant names such a local
/// failure; [`Error::Strategy`] is the one that keeps the cause as its
/// [`source`](std::error::Error::source) and takes a kind: temporary (exit
/// 75, [`Error::is_transient`]), since nothing about the settings or the
/// message is wrong and retrying may succeed.
fn runtime_error(source: std::io::Error) -> Error {
    Error::Strategy {
        strategy: "the blocking mailer's runtime".to_owned(),
        kind: ErrorKind::Temporary,
        source: Box::new(source),
    }
}

impl mailgate_core::FromMailer for Mailer {
    fn from_mailer(mailer: mailgate_core::Mailer) -> Result<Self> {
        Self::new(mailer)
    }
}

impl Drop for Mailer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so never panics inside an async context.
            runtime.shutdown_background();
        }
    }
}

/// Sends as the inherent methods of the same names do: [`Mailer::send`]
/// (with mailgate's completion and line-length checks, not lettre's plain
/// formatting) and [`Mailer::send_raw`]. `shutdown` closes the mailer as
/// [`Mailer::close`] does (QUIT on the pooled connections) but keeps its
/// runtime until it is dropped; sends after it fail with [`Error::Usage`].
impl lettre::Transport for Mailer {
    type Ok = Delivery;
    type Error = Error;

    fn send(&self, message: &Message) -> Result<Delivery> {
        Mailer::send(self, message)
    }

    fn send_raw(&self, envelope: &Envelope, email: &[u8]) -> Result<Delivery> {
        Mailer::send_raw(self, envelope, email)
    }

    fn shutdown(&self) {
        self.quit_pooled();
    }
}
