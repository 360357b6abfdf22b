//! One SMTP session (RFC 5321, 3207 STARTTLS, 4954 AUTH, 1870 SIZE,
//! 2920 PIPELINING, 6152 8BITMIME, 6531 SMTPUTF8), on any byte stream.
//!
//! Bounds: the input buffer has a fixed size (`max_line` plus a little,
//! at least 16 KiB) and is never grown; a command line longer than
//! `max_line` is discarded up to its LF; message data goes through
//! [`DataReader`], capped at `max_message_bytes`; replies are flushed
//! before every read that would wait, and at 16 KiB. Every read and write
//! has a deadline.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::budget::DataBudget;
use crate::command::{self, Body, Command, Path, Refusal};
use crate::config::RelayConfig;
use crate::data::{DataOutcome, DataReader};
use crate::sasl;
use crate::sink::{DsnRequest, MessageSink, RecipientDsn, Rejection, Submission};
use crate::stats::{Counters, bump};
use crate::trace::{self, Trace};

/// Replies are written once this much is waiting, even mid-pipeline.
const OUT_FLUSH: usize = 16 * 1024;

/// Password checks running at once, in the whole process.
static VERIFY_SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(4)));

/// The smallest input buffer.
const MIN_BUFFER: usize = 16 * 1024;

/// Buffer space kept free beyond a message's data for the trace field
/// and what the store adds (Date, Message-ID, a From): more than they
/// take, so that none of them needs a second buffer. Not counted in the
/// memory budget (a constant per session, like the input buffer).
const HEADROOM: usize = 4096;

/// What a message whose size was not declared (`SIZE=`) first reserves
/// of the memory budget; its share grows as its data does.
const FIRST_SHARE: usize = 64 * 1024;

/// The longest wait for a farewell (421) to be taken, and for the
/// connection to close.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything a session needs from its server.
pub(crate) struct SessionContext {
    pub id: u64,
    pub client: SocketAddr,
    pub config: Arc<RelayConfig>,
    pub sink: Arc<dyn MessageSink>,
    pub counters: Arc<Counters>,
    pub shutdown: watch::Receiver<bool>,
    /// The relay-wide memory for message data.
    pub budget: Arc<DataBudget>,
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// QUIT answered.
    Quit,
    /// The client closed the connection.
    Closed,
    /// The client was too slow: 421 4.4.2 is still to be sent.
    Timeout,
    /// The server shuts down: 421 4.3.2 is still to be sent.
    Shutdown,
    /// A closing reply was sent already: 421 (limits), or 554 after
    /// improper pipelining.
    Sent421,
    /// Not an SMTP client (an HTTP request line, ...): closed silently.
    ForeignProtocol,
    /// The TLS handshake failed.
    Tls(io::Error),
    /// Reading or writing failed.
    Io(io::Error),
}

type Result<T> = std::result::Result<T, End>;

fn io_end(e: io::Error) -> End {
    match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => End::Closed,
        _ => End::Io(e),
    }
}

/// The connection, before and after STARTTLS.
enum Stream<IO> {
    Plain(IO),
    Tls(Box<TlsStream<IO>>),
    /// During the handshake.
    Gone,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// A line read in command mode.
enum Line {
    /// A CRLF-terminated line without its CRLF: printable, valid UTF-8.
    Text(String),
    /// Longer than `max_line`; consumed up to its LF.
    TooLong,
    /// Ended by a bare LF.
    BareLf,
    /// Holds a control character (a bare CR, NUL, TAB, ...) or is not
    /// UTF-8.
    BadBytes,
}

/// How a wait for input treats the server's shutdown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Between transactions: shutdown ends the wait (421 4.3.2).
    Idle,
    /// Inside a transaction: shutdown lets it go on, until `data_timeout`
    /// after the shutdown began.
    Transaction,
}

/// The envelope being built.
struct Transaction {
    from: String,
    size: Option<u64>,
    body: Option<Body>,
    smtputf8: bool,
    to: Vec<String>,
    /// RET, ENVID, and one NOTIFY/ORCPT per entry of `to`.
    dsn: DsnRequest,
}

/// Decrements the active session count when the session ends, however.
pub(crate) struct ActiveGuard(Arc<Counters>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a session as active until the returned guard is dropped.
pub(crate) fn count_active(counters: &Arc<Counters>) -> ActiveGuard {
    counters.active_sessions.fetch_add(1, Ordering::Relaxed);
    ActiveGuard(Arc::clone(counters))
}

struct Session<IO> {
    ctx: SessionContext,
    stream: Stream<IO>,
    /// Input: `buf[start..end]` is received and not yet processed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Replies not yet written.
    out: Vec<u8>,
    tls: bool,
    /// `Some(extended)` once HELO (false) or EHLO (true) was answered.
    greeting: Option<bool>,
    /// The name the client gave in its last EHLO or HELO, for the trace
    /// field (hostile: cleaned where it is written).
    helo: String,
    auth_user: Option<String>,
    txn: Option<Transaction>,
    commands: usize,
    errors: usize,
    auth_failures: usize,
    /// Set when a shutdown began while a transaction was open: the end of
    /// the grace period.
    drain_deadline: Option<Instant>,
}

/// Serves one connection to its end. The allow list was checked by the
/// caller.
pub(crate) async fn run<IO>(io: IO, ctx: SessionContext)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let buffer = (ctx.config.max_line + 2).max(MIN_BUFFER);
    let mut session = Session {
        stream: Stream::Plain(io),
        buf: vec![0; buffer],
        start: 0,
        end: 0,
        out: Vec::with_capacity(1024),
        tls: false,
        greeting: None,
        helo: String::new(),
        auth_user: None,
        txn: None,
        commands: 0,
        errors: 0,
        auth_failures: 0,
        drain_deadline: None,
        ctx,
    };
    tracing::debug!(id = session.ctx.id, client = %session.ctx.client, "relay session started");
    let end = session.serve().await.err();
    let farewell = match &end {
        Some(End::Timeout) => {
            bump(&session.ctx.counters.timeouts);
            Some((421, "4.4.2 Timeout, closing the connection"))
        }
        Some(End::Shutdown) => Some((421, "4.3.2 Service shutting down, try again later")),
        Some(End::ForeignProtocol) => {
            bump(&session.ctx.counters.closed_for_abuse);
            None
        }
        _ => None,
    };
    match &end {
        Some(End::Io(e) | End::Tls(e)) => tracing::debug!(
            id = session.ctx.id,
            client = %session.ctx.client,
            error = %e,
            commands = session.commands,
            "relay session failed"
        ),
        other => tracing::debug!(
            id = session.ctx.id,
            client = %session.ctx.client,
            end = ?other,
            commands = session.commands,
            "relay session ended"
        ),
    }
    let stream = &mut session.stream;
    let out = &mut session.out;
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        // Replies still waiting (the 250 of a transaction that finished
        // during a shutdown) go first.
        if let Some((code, text)) = farewell {
            push_reply(out, code, text);
        }
        if !out.is_empty() {
            stream.write_all(out).await?;
            stream.flush().await?;
        }
        stream.shutdown().await
    })
    .await;
}

/// Appends `code text` (lines of `text` split at `\n`) in reply format.
fn push_reply(out: &mut Vec<u8>, code: u16, text: &str) {
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let sep = if lines.peek().is_some() { '-' } else { ' ' };
        out.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
    }
}

/// A queue id fit for a reply: printable ASCII, at most 64 characters.
/// A sink's text as a reply may carry it: printable ASCII, cut short.
fn reply_text(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .take(200)
        .collect()
}

fn sanitize_id(id: &str) -> String {
    let clean: String = id
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if clean.is_empty() {
        "(no id)".to_owned()
    } else {
        clean
    }
}

impl<IO> Session<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn config(&self) -> &RelayConfig {
        &self.ctx.config
    }

    fn shutting_down(&self) -> bool {
        *self.ctx.shutdown.borrow() || self.drain_deadline.is_some()
    }

    async fn serve(&mut self) -> Result<()> {
        let greeting = format!("{} ESMTP mailgate relay ready", self.config().hostname);
        self.reply(220, &greeting).await?;
        loop {
            if self.txn.is_none() && self.shutting_down() {
                return Err(End::Shutdown);
            }
            let wait = if self.txn.is_some() {
                Wait::Transaction
            } else {
                Wait::Idle
            };
            let line = self.read_line(wait).await?;
            self.commands += 1;
            if self.commands > self.config().max_commands {
                bump(&self.ctx.counters.closed_for_abuse);
                self.reply(421, "4.7.0 Too many commands, closing the connection")
                    .await?;
                self.flush().await?;
                return Err(End::Sent421);
            }
            match line {
                Line::Text(text) => self.command(&text).await?,
                Line::TooLong => self.error(500, "5.5.2 Line too long").await?,
                Line::BareLf => {
                    self.error(500, "5.5.2 Bare LF not allowed: end lines with CRLF")
                        .await?
                }
                Line::BadBytes => {
                    self.error(
                        500,
                        "5.5.2 Control characters and invalid UTF-8 not allowed",
                    )
                    .await?
                }
            }
        }
    }

    async fn command(&mut self, line: &str) -> Result<()> {
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(refusal) => return self.refuse(refusal).await,
        };
        match command {
            Command::Quit => {
                self.reply(221, "2.0.0 Bye").await?;
                self.flush().await?;
                Err(End::Quit)
            }
            Command::Ehlo(host) => self.ehlo(host, true).await,
            Command::Helo(host) => self.ehlo(host, false).await,
            Command::StartTls => self.starttls().await,
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await,
            Command::Mail { path, params } => self.mail(path, params).await,
            Command::Rcpt { path, params } => self.rcpt(path, params).await,
            Command::Data => self.data().await,
            Command::Rset => {
                self.txn = None;
                self.reply(250, "2.0.0 OK").await
            }
            Command::Noop => self.reply(250, "2.0.0 OK").await,
            Command::Vrfy => {
                self.reply(
                    252,
                    "2.5.0 Cannot VRFY user, but will accept the message and attempt delivery",
                )
                .await
            }
            Command::Help => {
                self.reply(
                    214,
                    "2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
                )
                .await
            }
            Command::NotImplemented => self.error(502, "5.5.1 Command not implemented").await,
            Command::ForeignProtocol => {
                tracing::info!(
                    id = self.ctx.id,
                    client = %self.ctx.client,
                    "not an SMTP client (HTTP or similar request): connection closed"
                );
                Err(End::ForeignProtocol)
            }
            Command::Unknown => self.error(500, "5.5.2 Command not recognized").await,
        }
    }

    // ----- commands -----------------------------------------------------

    async fn ehlo(&mut self, host: &str, extended: bool) -> Result<()> {
        tracing::debug!(id = self.ctx.id, helo = ?host, extended, "relay greeting");
        self.txn = None;
        self.helo = host.to_owned();
        let config = self.config();
        // The instance id lets a mailgate client in this process see that
        // it is talking to itself (a loop), see `RelayConfig::instance_id`.
        let first = match &config.instance_id {
            Some(id) => format!("{} mailgate ready [{id}]", config.hostname),
            None => config.hostname.clone(),
        };
        let text = if extended {
            let mut lines = vec![
                first,
                "PIPELINING".to_owned(),
                format!("SIZE {}", config.max_message_bytes),
                "8BITMIME".to_owned(),
                "SMTPUTF8".to_owned(),
                "ENHANCEDSTATUSCODES".to_owned(),
                "DSN".to_owned(),
            ];
            if config.tls.is_some() && !self.tls {
                lines.push("STARTTLS".to_owned());
            }
            if self.auth_available() {
                lines.push("AUTH PLAIN LOGIN".to_owned());
            }
            lines.join("\n")
        } else {
            first
        };
        self.greeting = Some(extended);
        self.reply(250, &text).await
    }

    async fn starttls(&mut self) -> Result<()> {
        let Some(tls) = self.config().tls.clone() else {
            return self.error(502, "5.5.1 STARTTLS not available").await;
        };
        if self.tls {
            return self.error(503, "5.5.1 TLS already active").await;
        }
        if self.greeting.is_none() {
            return self.error(503, "5.5.1 Send EHLO first").await;
        }
        if self.txn.is_some() {
            return self
                .error(503, "5.5.1 STARTTLS not allowed during a mail transaction")
                .await;
        }
        self.reply(220, "2.0.0 Ready to start TLS").await?;
        self.flush().await?;
        // RFC 3207 section 6: nothing received before the handshake is
        // acted upon after it (the STARTTLS command injection).
        let pending = self.end - self.start;
        if pending > 0 {
            bump(&self.ctx.counters.starttls_injections);
            tracing::warn!(
                id = self.ctx.id,
                client = %self.ctx.client,
                bytes = pending,
                "plaintext sent after STARTTLS before the TLS handshake: discarded (command injection attempt?)"
            );
        }
        self.start = 0;
        self.end = 0;
        let Stream::Plain(io) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(End::Io(io::Error::other("TLS already active")));
        };
        let accept = TlsAcceptor::from(tls).accept(io);
        let tls_stream = match tokio::time::timeout(self.config().idle_timeout, accept).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(End::Tls(e)),
            Err(_) => return Err(End::Timeout),
        };
        self.stream = Stream::Tls(Box::new(tls_stream));
        self.tls = true;
        // Forget everything learnt before (RFC 3207 4.2).
        self.greeting = None;
        self.auth_user = None;
        self.txn = None;
        tracing::debug!(id = self.ctx.id, "relay session: TLS started");
        Ok(())
    }

    /// AUTH is possible: users are set, and TLS is active or not required.
    fn auth_available(&self) -> bool {
        let config = self.config();
        config.users.is_some() && (self.tls || config.tls.is_none() || !config.require_tls_for_auth)
    }

    async fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Result<()> {
        if self.config().users.is_none() {
            return self.error(502, "5.5.1 AUTH not available").await;
        }
        if self.greeting != Some(true) {
            return self.error(503, "5.5.1 Send EHLO first").await;
        }
        if !self.auth_available() {
            return self
                .error(530, "5.7.0 Must issue a STARTTLS command first")
                .await;
        }
        if self.auth_user.is_some() {
            return self.error(503, "5.5.1 Already authenticated").await;
        }
        if self.txn.is_some() {
            return self
                .error(503, "5.5.1 AUTH not allowed during a mail transaction")
                .await;
        }
        let credentials = if mechanism.eq_ignore_ascii_case("PLAIN") {
            let response = match initial {
                Some(text) => sasl::decode(text),
                None => self.challenge("").await?,
            };
            let bytes = match self.sasl_data(response).await? {
                Some(bytes) => bytes,
                None => return Ok(()),
            };
            match sasl::parse_plain(&bytes) {
                Some(c) => c,
                None => return self.error(501, "5.5.2 Malformed PLAIN response").await,
            }
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            let response = match initial {
                Some(text) => sasl::decode(text),
                None => self.challenge("VXNlcm5hbWU6").await?,
            };
            let Some(user) = self.sasl_data(response).await? else {
                return Ok(());
            };
            let response = self.challenge("UGFzc3dvcmQ6").await?;
            let Some(password) = self.sasl_data(response).await? else {
                return Ok(());
            };
            match (sasl::login_text(&user), sasl::login_text(&password)) {
                (Some(user), Some(password)) if !user.is_empty() => sasl::Credentials {
                    user: user.to_string(),
                    password,
                },
                _ => return self.error(501, "5.5.2 Malformed LOGIN response").await,
            }
        } else {
            return self
                .error(504, "5.5.4 Unrecognized authentication mechanism")
                .await;
        };
        let config = Arc::clone(&self.ctx.config);
        let sasl::Credentials { user, password } = credentials;
        let name = user.clone();
        // Each check takes an Argon2 hash's memory (19 MiB by default):
        // a few at a time, whatever the number of sessions.
        // The permit moves into the blocking task: it is held while the
        // hash runs, even if this session is dropped meanwhile.
        let verified = match Arc::clone(&VERIFY_SLOTS).acquire_owned().await {
            Ok(slot) => tokio::task::spawn_blocking(move || {
                let _slot = slot;
                config
                    .users
                    .as_ref()
                    .is_some_and(|users| users.verify(&name, &password))
            })
            .await
            .unwrap_or(false),
            Err(_) => false,
        };
        if verified {
            tracing::debug!(id = self.ctx.id, user = ?user, "relay AUTH succeeded");
            self.auth_user = Some(user);
            return self.reply(235, "2.7.0 Authentication successful").await;
        }
        // Neither the name (it may be a mistyped password) nor the
        // password is logged.
        self.auth_failures += 1;
        bump(&self.ctx.counters.auth_failures);
        tracing::info!(
            id = self.ctx.id,
            client = %self.ctx.client,
            failures = self.auth_failures,
            "relay AUTH failed"
        );
        self.flush().await?;
        let delay = self.config().auth_failure_delay;
        let mut shutdown = self.ctx.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return Err(End::Shutdown),
        }
        if self.auth_failures >= self.config().max_auth_failures {
            bump(&self.ctx.counters.closed_for_abuse);
            self.reply(535, "5.7.8 Authentication credentials invalid")
                .await?;
            self.reply(
                421,
                "4.7.0 Too many failed authentications, closing the connection",
            )
            .await?;
            self.flush().await?;
            return Err(End::Sent421);
        }
        self.error(535, "5.7.8 Authentication credentials invalid")
            .await
    }

    /// Sends `334 challenge` and reads the client's response line.
    async fn challenge(&mut self, challenge: &str) -> Result<sasl::Response> {
        self.out
            .extend_from_slice(format!("334 {challenge}\r\n").as_bytes());
        match self.read_line(Wait::Idle).await? {
            Line::Text(text) => Ok(sasl::decode(&text)),
            _ => Ok(sasl::Response::Invalid),
        }
    }

    /// The decoded response, or `None` after answering a cancel or bad
    /// base64.
    async fn sasl_data(
        &mut self,
        response: sasl::Response,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        match response {
            sasl::Response::Data(bytes) => Ok(Some(bytes)),
            sasl::Response::Cancel => {
                self.error(501, "5.7.0 Authentication cancelled").await?;
                Ok(None)
            }
            sasl::Response::Invalid => {
                self.error(501, "5.5.2 Invalid base64 in the AUTH response")
                    .await?;
                Ok(None)
            }
        }
    }

    async fn mail(&mut self, path: Path, params: &str) -> Result<()> {
        if self.greeting.is_none() {
            return self.error(503, "5.5.1 Send EHLO or HELO first").await;
        }
        if self.txn.is_some() {
            return self.error(503, "5.5.1 Nested MAIL command").await;
        }
        if self.config().users.is_some() && self.auth_user.is_none() {
            return if self.auth_available() {
                self.error(530, "5.7.0 Authentication required").await
            } else {
                self.error(530, "5.7.0 Must issue a STARTTLS command first")
                    .await
            };
        }
        let extended = self.greeting == Some(true);
        let auth_offered = extended && self.auth_available();
        let params = match command::mail_params(params, extended, auth_offered) {
            Ok(p) => p,
            Err(refusal) => return self.refuse(refusal).await,
        };
        let max = self.config().max_message_bytes as u64;
        if params.size.is_some_and(|s| s > max) {
            bump(&self.ctx.counters.refused_too_big);
            return self
                .error(
                    552,
                    "5.3.4 Message size exceeds the fixed maximum message size",
                )
                .await;
        }
        if path.utf8 && !params.smtputf8 {
            return self
                .error(553, "5.6.7 Non-ASCII address without SMTPUTF8")
                .await;
        }
        let from = if path.address.is_empty() {
            path.address
        } else {
            match self.ctx.sink.check_sender(&path.address) {
                Ok(from) => from,
                Err(why) => {
                    return self
                        .error(553, &format!("5.1.7 {}", reply_text(&why)))
                        .await;
                }
            }
        };
        self.txn = Some(Transaction {
            from,
            size: params.size,
            body: params.body,
            smtputf8: params.smtputf8,
            to: Vec::new(),
            dsn: DsnRequest {
                ret_full: params.ret_full,
                envid: params.envid,
                recipients: Vec::new(),
            },
        });
        self.reply(250, "2.1.0 Sender OK").await
    }

    async fn rcpt(&mut self, path: Path, params: &str) -> Result<()> {
        let max = self.config().max_recipients;
        let Some(txn) = &self.txn else {
            return self.error(503, "5.5.1 Need MAIL command first").await;
        };
        let rcpt_dsn = match command::rcpt_params(params) {
            Ok(p) => RecipientDsn {
                notify: p.notify,
                orcpt: p.orcpt,
            },
            Err(refusal) => return self.refuse(refusal).await,
        };
        if path.utf8 && !txn.smtputf8 {
            return self
                .error(553, "5.6.7 Non-ASCII address without SMTPUTF8")
                .await;
        }
        let address = match self.ctx.sink.check_recipient(&path.address) {
            Ok(address) => address,
            Err(why) => {
                return self
                    .error(553, &format!("5.1.3 {}", reply_text(&why)))
                    .await;
            }
        };
        let duplicate = txn.to.contains(&address);
        if !duplicate && txn.to.len() >= max {
            return self.reply(452, "4.5.3 Too many recipients").await;
        }
        if let Some(txn) = &mut self.txn
            && !duplicate
        {
            txn.to.push(address);
            txn.dsn.recipients.push(rcpt_dsn);
        }
        self.reply(250, "2.1.5 Recipient OK").await
    }

    async fn data(&mut self) -> Result<()> {
        let refusal = match &self.txn {
            None => Some("5.5.1 Need MAIL command first"),
            Some(txn) if txn.to.is_empty() => Some("5.5.1 Need RCPT command first"),
            Some(_) => None,
        };
        if let Some(text) = refusal {
            self.error(503, text).await?;
            return self.improper_pipelining().await;
        }
        let config = Arc::clone(&self.ctx.config);
        let size_hint = self.txn.as_ref().and_then(|t| t.size);
        let mut reader = DataReader::new(config.max_message_bytes, config.max_data_line, size_hint)
            .with_headroom(HEADROOM);
        // The memory for the data, before the 354: a client told 452 keeps
        // its message and tries again later.
        let first = size_hint
            .and_then(|s| usize::try_from(s).ok())
            .unwrap_or(FIRST_SHARE);
        let mut grant = self.ctx.budget.empty();
        if !grant
            .grow(reader.need(first), config.data_memory_wait)
            .await
        {
            bump(&self.ctx.counters.refused_memory);
            tracing::warn!(
                id = self.ctx.id,
                client = %self.ctx.client,
                wanted = reader.need(first),
                budget = config.max_data_memory,
                "DATA answered 452: the memory budget for message data is used up (mailgate.relay.maxDataMemoryMB)"
            );
            self.reply(452, "4.3.1 Insufficient system storage, try again later")
                .await?;
            return self.improper_pipelining().await;
        }
        reader.allow(grant.bytes());
        self.reply(354, "End data with <CR><LF>.<CR><LF>").await?;
        let data_deadline = Instant::now() + config.data_timeout;
        let started = Instant::now();
        let mut received: u64 = 0;
        loop {
            let pending = self.end - self.start;
            let need = reader.need(pending);
            if need > grant.bytes() {
                // Twice the share at a time: few waits on the budget.
                let more = need
                    .max(grant.bytes().saturating_mul(2))
                    .min(reader.need(config.max_message_bytes));
                if grant.grow(more, config.data_memory_wait).await {
                    reader.allow(grant.bytes());
                } else {
                    // Read to its end and answered 452; others may use
                    // the memory meanwhile.
                    reader.refuse_for_memory();
                    grant.release();
                }
            }
            if let Some(n) = reader.feed(&self.buf[self.start..self.end]) {
                self.start += n;
                break;
            }
            received += (self.end - self.start) as u64;
            self.start = self.end;
            let mut deadline = (Instant::now() + config.idle_timeout).min(data_deadline);
            if config.min_data_rate > 0 {
                // The data so far buys time at the minimum rate: a trickle
                // cannot stretch the DATA phase to `data_timeout`.
                let earned = Duration::from_secs_f64(received as f64 / config.min_data_rate as f64);
                deadline = deadline.min(started + config.idle_timeout + earned);
            }
            self.fill(deadline, Wait::Transaction).await?;
        }
        let Some(txn) = self.txn.take() else {
            return Ok(());
        };
        let data = match reader.finish() {
            DataOutcome::Message(data) => data,
            DataOutcome::BareLineEnding => {
                bump(&self.ctx.counters.refused_bare_line_ending);
                tracing::info!(
                    id = self.ctx.id,
                    client = %self.ctx.client,
                    from = ?txn.from,
                    "message refused: bare LF or CR in the data (SMTP smuggling?)"
                );
                return self
                    .error(550, "5.5.2 bare LF/CR not allowed (SMTP smuggling)")
                    .await;
            }
            DataOutcome::TooBig { total } => {
                bump(&self.ctx.counters.refused_too_big);
                tracing::info!(
                    id = self.ctx.id,
                    client = %self.ctx.client,
                    from = ?txn.from,
                    size = total,
                    max = config.max_message_bytes,
                    "message refused: too big"
                );
                return self
                    .error(
                        552,
                        "5.3.4 Message size exceeds the fixed maximum message size",
                    )
                    .await;
            }
            DataOutcome::OverBudget => {
                bump(&self.ctx.counters.refused_memory);
                tracing::warn!(
                    id = self.ctx.id,
                    client = %self.ctx.client,
                    from = ?txn.from,
                    budget = config.max_data_memory,
                    "message answered 452: the memory budget for message data is used up (mailgate.relay.maxDataMemoryMB)"
                );
                return self
                    .reply(452, "4.3.1 Insufficient system storage, try again later")
                    .await;
            }
            DataOutcome::LineTooLong => {
                bump(&self.ctx.counters.refused_line_too_long);
                tracing::info!(
                    id = self.ctx.id,
                    client = %self.ctx.client,
                    from = ?txn.from,
                    "message refused: a line is too long"
                );
                let text = format!(
                    "5.6.0 Message has a line longer than {} characters",
                    config.max_data_line.saturating_sub(2)
                );
                return self.error(550, &text).await;
            }
        };
        // The grant is held until the sink has stored the message.
        let stored = self.store(txn, data).await;
        drop(grant);
        stored
    }

    /// After a refused DATA: bytes the client sent already (DATA ends a
    /// pipelined group, RFC 2920 3.1) are message content it sent without
    /// waiting for the 354, and must not run as commands. As Postfix does:
    /// `554 5.5.0` and close.
    async fn improper_pipelining(&mut self) -> Result<()> {
        if self.start == self.end {
            return Ok(());
        }
        bump(&self.ctx.counters.closed_for_abuse);
        tracing::info!(
            id = self.ctx.id,
            client = %self.ctx.client,
            bytes = self.end - self.start,
            "relay session closed: input after a refused DATA (improper pipelining)"
        );
        self.start = self.end;
        self.reply(
            554,
            "5.5.0 Improper use of SMTP command pipelining: data sent after a refused DATA, closing the connection",
        )
        .await?;
        self.flush().await?;
        Err(End::Sent421)
    }

    async fn store(&mut self, txn: Transaction, data: Vec<u8>) -> Result<()> {
        let hops = trace::count_received(&data);
        if hops > self.config().max_hops {
            tracing::info!(
                id = self.ctx.id,
                client = %self.ctx.client,
                from = ?txn.from,
                hops,
                max = self.config().max_hops,
                "message refused: too many Received fields (a mail loop?)"
            );
            return self.error(554, "5.4.6 Too many hops").await;
        }
        let trace_id = trace::new_id();
        let received = Trace {
            helo: &self.helo,
            extended: self.greeting == Some(true),
            ip: self.ctx.client.ip(),
            by: &self.ctx.config.hostname,
            tls: self.tls,
            authenticated: self.auth_user.is_some(),
            id: &trace_id,
            to: &txn.to,
            at: std::time::SystemTime::now(),
        }
        .field();
        // In front of the data, in the same buffer (its headroom).
        let mut data = data;
        data.reserve_exact(received.len());
        data.splice(0..0, received.bytes());
        let size = data.len();
        let submission = Submission {
            from: txn.from,
            to: txn.to,
            auth_user: self.auth_user.clone(),
            client: self.ctx.client,
            tls: self.tls,
            smtputf8: txn.smtputf8,
            eight_bit_mime: txn.body == Some(Body::EightBitMime),
            dsn: txn.dsn,
        };
        let from = submission.from.clone();
        let recipients = submission.to.len();
        let timeout = self.config().data_timeout;
        let stored = tokio::time::timeout(timeout, self.ctx.sink.accept(submission, data)).await;
        match stored {
            Ok(Ok(id)) => {
                let id = sanitize_id(&id);
                bump(&self.ctx.counters.accepted);
                // `max_commands` bounds a session between messages.
                self.commands = 0;
                // The sink logs the stored message at info (one line per
                // message); this is the protocol side.
                tracing::debug!(
                    client = %self.ctx.client,
                    from = ?from,
                    recipients,
                    size,
                    queue_id = %id,
                    trace_id = %trace_id,
                    tls = self.tls,
                    user = ?self.auth_user,
                    "relay message queued"
                );
                self.reply(250, &format!("2.0.0 queued as {id}")).await
            }
            Ok(Err(Rejection::Temporary(reason))) => {
                bump(&self.ctx.counters.temp_failed);
                tracing::warn!(
                    client = %self.ctx.client,
                    from = ?from,
                    recipients,
                    size,
                    reason = ?reason,
                    "relay message not queued: the store failed (client told to retry)"
                );
                self.reply(451, "4.3.0 Message not queued, try again later")
                    .await
            }
            Ok(Err(Rejection::Permanent {
                client_text,
                reason,
            })) => {
                tracing::warn!(
                    client = %self.ctx.client,
                    from = ?from,
                    recipients,
                    size,
                    reason = ?reason,
                    "relay message refused for good"
                );
                let text: String = client_text
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect();
                self.reply(554, &format!("5.7.0 {text}")).await
            }
            Err(_) => {
                bump(&self.ctx.counters.temp_failed);
                tracing::warn!(
                    client = %self.ctx.client,
                    from = ?from,
                    recipients,
                    size,
                    timeout = ?timeout,
                    "relay message not queued: the store took too long (client told to retry)"
                );
                self.reply(451, "4.3.0 Message not queued in time, try again later")
                    .await
            }
        }
    }

    // ----- replies --------------------------------------------------------

    async fn reply(&mut self, code: u16, text: &str) -> Result<()> {
        push_reply(&mut self.out, code, text);
        if self.out.len() >= OUT_FLUSH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn refuse(&mut self, refusal: Refusal) -> Result<()> {
        self.error(refusal.code, &refusal.text).await
    }

    /// Sends an error reply; after `max_errors` of them, 421 and close.
    async fn error(&mut self, code: u16, text: &str) -> Result<()> {
        self.reply(code, text).await?;
        self.errors += 1;
        if self.errors >= self.config().max_errors {
            bump(&self.ctx.counters.closed_for_abuse);
            tracing::info!(
                id = self.ctx.id,
                client = %self.ctx.client,
                errors = self.errors,
                "relay session closed: too many errors"
            );
            self.reply(421, "4.7.0 Too many errors, closing the connection")
                .await?;
            self.flush().await?;
            return Err(End::Sent421);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let timeout = self.config().idle_timeout;
        let stream = &mut self.stream;
        let out = &self.out;
        let written = tokio::time::timeout(timeout, async {
            stream.write_all(out).await?;
            stream.flush().await
        })
        .await;
        self.out.clear();
        if self.out.capacity() > 4 * OUT_FLUSH {
            self.out.shrink_to(1024);
        }
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_end(e)),
            Err(_) => Err(End::Timeout),
        }
    }

    // ----- input ------------------------------------------------------------

    /// Reads one command (or SASL response) line; the whole line must
    /// arrive within `idle_timeout`.
    async fn read_line(&mut self, wait: Wait) -> Result<Line> {
        let max = self.config().max_line;
        let deadline = Instant::now() + self.config().idle_timeout;
        let mut discarding = false;
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let raw = &pending[..=i];
                self.start += i + 1;
                if discarding || raw.len() > max {
                    return Ok(Line::TooLong);
                }
                let Some(body) = raw.strip_suffix(b"\r\n") else {
                    return Ok(Line::BareLf);
                };
                if body.iter().any(|&b| b < 0x20 || b == 0x7f) {
                    return Ok(Line::BadBytes);
                }
                return Ok(match std::str::from_utf8(body) {
                    Ok(text) => Line::Text(text.to_owned()),
                    Err(_) => Line::BadBytes,
                });
            }
            if pending.len() >= max {
                // Too long already: drop what is here, and the rest of
                // the line as it comes.
                discarding = true;
                self.start = self.end;
            }
            self.fill(deadline, wait).await?;
        }
    }

    /// Waits for more input (after writing the replies waiting), until
    /// `deadline`.
    async fn fill(&mut self, deadline: Instant, wait: Wait) -> Result<()> {
        self.flush().await?;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            let limit = self.drain_deadline.map_or(deadline, |d| d.min(deadline));
            let draining = self.drain_deadline.is_some();
            let grace = self.ctx.config.data_timeout;
            let Session {
                stream,
                buf,
                end,
                ctx,
                ..
            } = self;
            let read = tokio::select! {
                biased;
                r = tokio::time::timeout_at(limit, stream.read(&mut buf[*end..])) => r,
                _ = ctx.shutdown.wait_for(|s| *s), if !draining => {
                    if wait == Wait::Idle {
                        return Err(End::Shutdown);
                    }
                    self.drain_deadline = Some(Instant::now() + grace);
                    continue;
                }
            };
            return match read {
                Ok(Ok(0)) => Err(End::Closed),
                Ok(Ok(n)) => {
                    self.end += n;
                    Ok(())
                }
                Ok(Err(e)) => Err(io_end(e)),
                Err(_) if self.drain_deadline.is_some_and(|d| d <= Instant::now()) => {
                    Err(End::Shutdown)
                }
                Err(_) => Err(End::Timeout),
            };
        }
    }
}
