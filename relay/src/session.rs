//! One relay session: the I/O loop around the [`Codec`] (which speaks
//! SMTP: RFC 5321, 3207 STARTTLS, 4954 AUTH, 1870 SIZE, 2920 PIPELINING,
//! 6152 8BITMIME, 6531 SMTPUTF8, 3461 DSN) and the relay's policy: who may
//! submit, which addresses the sink takes, the memory budget, the trace
//! field, the store.
//!
//! Bounds: the codec's input buffer has a fixed size; message data is
//! capped at `max_message_bytes` and by the memory budget; replies are
//! flushed before every read that would wait, and at 16 KiB. Every read
//! and write has a deadline.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use crate::budget::DataBudget;
use crate::codec::{
    self, Body, Close, Codec, CodecConfig, DataOutcome, DataStart, Envelope, Event, Extensions,
    MailParams, Message, Path, RcptParams, SaslResponse, Standard,
};
use crate::config::RelayConfig;
use crate::sink::{DsnRequest, MessageSink, RecipientDsn, Rejection, Submission};
use crate::stats::{Counters, bump};
use crate::stream::ServerStream;
use crate::trace::{self, Trace};

/// Replies are written once this much is waiting, even mid-pipeline.
const OUT_FLUSH: usize = 16 * 1024;

/// Password checks running at once, in the whole process.
static VERIFY_SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(4)));

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

/// How a wait for input treats the server's shutdown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Between transactions: shutdown ends the wait (421 4.3.2).
    Idle,
    /// Inside a transaction: shutdown lets it go on, until `data_timeout`
    /// after the shutdown began.
    Transaction,
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

/// The codec as this relay speaks it.
fn codec_config(config: &RelayConfig) -> CodecConfig {
    CodecConfig {
        max_line: config.max_line,
        max_data_line: config.max_data_line,
        max_message_bytes: config.max_message_bytes,
        max_errors: config.max_errors,
        max_commands: config.max_commands,
        bare_lf_ends_line: false,
        unqualified_addresses: false,
        report_lines: false,
        extensions: Extensions {
            pipelining: true,
            size: true,
            eight_bit_mime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            dsn: true,
            starttls: config.tls.is_some(),
            auth: config.users.is_some().then(|| "PLAIN LOGIN".to_owned()),
        },
        require_tls_for_auth: config.tls.is_some() && config.require_tls_for_auth,
        require_tls_for_mail: false,
        require_auth: config.users.is_some(),
        dialect: &Standard,
    }
}

struct Session<IO> {
    ctx: SessionContext,
    stream: ServerStream<IO>,
    codec: Codec,
    /// The name the client gave in its last EHLO or HELO, for the trace
    /// field (hostile: cleaned where it is written).
    helo: String,
    auth_user: Option<String>,
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
    let mut session = Session {
        stream: ServerStream::Plain(io),
        codec: Codec::new(codec_config(&ctx.config)),
        helo: String::new(),
        auth_user: None,
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
            commands = session.codec.commands(),
            "relay session failed"
        ),
        other => tracing::debug!(
            id = session.ctx.id,
            client = %session.ctx.client,
            end = ?other,
            commands = session.codec.commands(),
            "relay session ended"
        ),
    }
    // Replies still waiting (the 250 of a transaction that finished
    // during a shutdown) go first.
    if let Some((code, text)) = farewell {
        session.codec.reply(code, text);
    }
    let Session { stream, codec, .. } = &mut session;
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
        if !codec.output().is_empty() {
            stream.write_all(codec.output()).await?;
            stream.flush().await?;
        }
        stream.shutdown().await
    })
    .await;
}

/// A sink's text as a reply may carry it: printable ASCII, cut short.
fn reply_text(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .take(200)
        .collect()
}

/// A queue id fit for a reply: printable ASCII, at most 64 characters.
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
        self.codec.reply(220, &greeting);
        // The whole of a command line must arrive within `idle_timeout`.
        let mut deadline = None;
        loop {
            if !self.codec.in_transaction() && self.shutting_down() {
                return Err(End::Shutdown);
            }
            let Some(event) = self.codec.next_event() else {
                let wait = if self.codec.in_transaction() {
                    Wait::Transaction
                } else {
                    Wait::Idle
                };
                let idle = self.config().idle_timeout;
                let at = *deadline.get_or_insert_with(|| Instant::now() + idle);
                self.fill(at, wait).await?;
                continue;
            };
            deadline = None;
            self.event(event).await?;
            if self.codec.output().len() >= OUT_FLUSH {
                self.flush().await?;
            }
        }
    }

    async fn event(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Close(close) => Err(self.close(close).await),
            Event::Quit => {
                self.codec.reply(221, "2.0.0 Bye");
                self.flush().await?;
                Err(End::Quit)
            }
            Event::Helo { host, extended } => {
                self.ehlo(host, extended);
                Ok(())
            }
            Event::StartTls => self.starttls().await,
            Event::Auth { mechanism, initial } => self.auth(&mechanism, initial).await,
            Event::Mail { path, params } => {
                self.mail(path, params);
                Ok(())
            }
            Event::Rcpt { path, params } => {
                self.rcpt(path, params);
                Ok(())
            }
            Event::Data => self.data().await,
            Event::Rset => {
                self.codec.reply(250, "2.0.0 OK");
                Ok(())
            }
            // Answered by the codec, or met only inside AUTH and DATA.
            Event::Replied
            | Event::Line(_)
            | Event::SaslResponse(_)
            | Event::DataMemory { .. }
            | Event::DataCut
            | Event::Message(_) => Ok(()),
        }
    }

    /// The codec closes the session: its reply is written out.
    async fn close(&mut self, close: Close) -> End {
        match close {
            Close::Quit => return End::Quit,
            Close::ForeignProtocol => {
                tracing::info!(
                    id = self.ctx.id,
                    client = %self.ctx.client,
                    "not an SMTP client (HTTP or similar request): connection closed"
                );
                return End::ForeignProtocol;
            }
            Close::TooManyErrors => tracing::info!(
                id = self.ctx.id,
                client = %self.ctx.client,
                errors = self.codec.errors(),
                "relay session closed: too many errors"
            ),
            Close::TooManyCommands => {}
            Close::ImproperPipelining(bytes) => tracing::info!(
                id = self.ctx.id,
                client = %self.ctx.client,
                bytes,
                "relay session closed: input after a refused DATA (improper pipelining)"
            ),
        }
        bump(&self.ctx.counters.closed_for_abuse);
        match self.flush().await {
            Ok(()) => End::Sent421,
            Err(end) => end,
        }
    }

    // ----- commands -----------------------------------------------------

    fn ehlo(&mut self, host: String, extended: bool) {
        tracing::debug!(id = self.ctx.id, helo = ?host, extended, "relay greeting");
        let config = &self.ctx.config;
        // The instance id lets a mailgate client in this process see that
        // it is talking to itself (a loop), see `RelayConfig::instance_id`.
        let first = match &config.instance_id {
            Some(id) => format!("{} mailgate ready [{id}]", config.hostname),
            None => config.hostname.clone(),
        };
        self.helo = host;
        self.codec.accept_helo(&first, extended);
    }

    async fn starttls(&mut self) -> Result<()> {
        let Some(tls) = self.config().tls.clone() else {
            self.codec.error(502, "5.5.1 STARTTLS not available");
            return Ok(());
        };
        self.codec.reply(220, "2.0.0 Ready to start TLS");
        self.flush().await?;
        // RFC 3207 section 6: nothing received before the handshake is
        // acted upon after it (the STARTTLS command injection).
        let pending = self.codec.start_tls();
        if pending > 0 {
            bump(&self.ctx.counters.starttls_injections);
            tracing::warn!(
                id = self.ctx.id,
                client = %self.ctx.client,
                bytes = pending,
                "plaintext sent after STARTTLS before the TLS handshake: discarded (command injection attempt?)"
            );
        }
        self.auth_user = None;
        let Some(io) = self.stream.take_plain() else {
            return Err(End::Io(io::Error::other("TLS already active")));
        };
        let accept = TlsAcceptor::from(tls).accept(io);
        let tls_stream = match tokio::time::timeout(self.config().idle_timeout, accept).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(End::Tls(e)),
            Err(_) => return Err(End::Timeout),
        };
        self.stream = ServerStream::Tls(Box::new(tls_stream));
        tracing::debug!(id = self.ctx.id, "relay session: TLS started");
        Ok(())
    }

    async fn auth(&mut self, mechanism: &str, initial: Option<SaslResponse>) -> Result<()> {
        let credentials = if mechanism.eq_ignore_ascii_case("PLAIN") {
            let response = match initial {
                Some(response) => response,
                None => self.challenge("").await?,
            };
            let Some(bytes) = self.sasl_data(response) else {
                return Ok(());
            };
            match codec::parse_plain(&bytes) {
                Some(c) => c,
                None => {
                    self.codec.error(501, "5.5.2 Malformed PLAIN response");
                    return Ok(());
                }
            }
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            let response = match initial {
                Some(response) => response,
                None => self.challenge("VXNlcm5hbWU6").await?,
            };
            let Some(user) = self.sasl_data(response) else {
                return Ok(());
            };
            let response = self.challenge("UGFzc3dvcmQ6").await?;
            let Some(password) = self.sasl_data(response) else {
                return Ok(());
            };
            match (codec::login_text(&user), codec::login_text(&password)) {
                (Some(user), Some(password)) if !user.is_empty() => codec::Credentials {
                    user: user.to_string(),
                    password,
                },
                _ => {
                    self.codec.error(501, "5.5.2 Malformed LOGIN response");
                    return Ok(());
                }
            }
        } else {
            self.codec
                .error(504, "5.5.4 Unrecognized authentication mechanism");
            return Ok(());
        };
        let config = Arc::clone(&self.ctx.config);
        let codec::Credentials { user, password } = credentials;
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
            self.codec.authenticated();
            self.codec.reply(235, "2.7.0 Authentication successful");
            return Ok(());
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
            self.codec
                .reply(535, "5.7.8 Authentication credentials invalid");
            self.codec.reply(
                421,
                "4.7.0 Too many failed authentications, closing the connection",
            );
            self.flush().await?;
            return Err(End::Sent421);
        }
        self.codec
            .error(535, "5.7.8 Authentication credentials invalid");
        Ok(())
    }

    /// Sends `334 challenge` and reads the client's response line; the
    /// whole line must arrive within `idle_timeout`.
    async fn challenge(&mut self, challenge: &str) -> Result<SaslResponse> {
        self.codec.challenge(challenge);
        let deadline = Instant::now() + self.config().idle_timeout;
        loop {
            match self.codec.next_event() {
                Some(Event::SaslResponse(response)) => return Ok(response),
                Some(Event::Close(close)) => return Err(self.close(close).await),
                Some(_) => {}
                None => self.fill(deadline, Wait::Idle).await?,
            }
        }
    }

    /// The decoded response, or `None` after answering a cancel or bad
    /// base64.
    fn sasl_data(&mut self, response: SaslResponse) -> Option<Zeroizing<Vec<u8>>> {
        match response {
            SaslResponse::Data(bytes) => Some(bytes),
            SaslResponse::Cancel => {
                self.codec.error(501, "5.7.0 Authentication cancelled");
                None
            }
            SaslResponse::Invalid => {
                self.codec
                    .error(501, "5.5.2 Invalid base64 in the AUTH response");
                None
            }
        }
    }

    fn mail(&mut self, path: Path, params: MailParams) {
        let max = self.config().max_message_bytes as u64;
        if params.size.is_some_and(|s| s > max) {
            bump(&self.ctx.counters.refused_too_big);
            self.codec.error(
                552,
                "5.3.4 Message size exceeds the fixed maximum message size",
            );
            return;
        }
        if path.utf8 && !params.smtputf8 {
            self.codec
                .error(553, "5.6.7 Non-ASCII address without SMTPUTF8");
            return;
        }
        let from = if path.address.is_empty() {
            path.address
        } else {
            match self.ctx.sink.check_sender(&path.address) {
                Ok(from) => from,
                Err(why) => {
                    self.codec
                        .error(553, &format!("5.1.7 {}", reply_text(&why)));
                    return;
                }
            }
        };
        self.codec.accept_mail(from, params);
        self.codec.reply(250, "2.1.0 Sender OK");
    }

    fn rcpt(&mut self, path: Path, params: RcptParams) {
        let max = self.config().max_recipients;
        let Some(envelope) = self.codec.envelope() else {
            return;
        };
        if path.utf8 && !envelope.params.smtputf8 {
            self.codec
                .error(553, "5.6.7 Non-ASCII address without SMTPUTF8");
            return;
        }
        let address = match self.ctx.sink.check_recipient(&path.address) {
            Ok(address) => address,
            Err(why) => {
                self.codec
                    .error(553, &format!("5.1.3 {}", reply_text(&why)));
                return;
            }
        };
        let to = self.codec.envelope().map_or(&[][..], |e| &e.to[..]);
        let duplicate = to.contains(&address);
        if !duplicate && to.len() >= max {
            self.codec.reply(452, "4.5.3 Too many recipients");
            return;
        }
        if !duplicate {
            self.codec.accept_rcpt(address, params);
        }
        self.codec.reply(250, "2.1.5 Recipient OK");
    }

    async fn data(&mut self) -> Result<()> {
        let config = Arc::clone(&self.ctx.config);
        let size_hint = self.codec.envelope().and_then(|e| e.params.size);
        // The memory for the data, before the 354: a client told 452 keeps
        // its message and tries again later.
        let first = size_hint
            .and_then(|s| usize::try_from(s).ok())
            .unwrap_or(FIRST_SHARE)
            .min(config.max_message_bytes);
        let mut grant = self.ctx.budget.empty();
        if !grant.grow(first, config.data_memory_wait).await {
            bump(&self.ctx.counters.refused_memory);
            tracing::warn!(
                id = self.ctx.id,
                client = %self.ctx.client,
                wanted = first,
                budget = config.max_data_memory,
                "DATA answered 452: the memory budget for message data is used up (mailgate.relay.maxDataMemoryMB)"
            );
            self.codec
                .reply(452, "4.3.1 Insufficient system storage, try again later");
            self.codec.data_refused();
            return Ok(());
        }
        self.codec.start_data(DataStart {
            size_hint,
            headroom: HEADROOM,
            cut_after: None,
        });
        self.codec.data_allow(grant.bytes());
        self.codec.reply(354, "End data with <CR><LF>.<CR><LF>");
        let data_deadline = Instant::now() + config.data_timeout;
        let started = Instant::now();
        let message = loop {
            match self.codec.next_event() {
                Some(Event::Message(message)) => break message,
                Some(Event::DataMemory { need }) => {
                    // Twice the share at a time: few waits on the budget.
                    let more = need
                        .max(grant.bytes().saturating_mul(2))
                        .min(self.codec.data_need(config.max_message_bytes));
                    if grant.grow(more, config.data_memory_wait).await {
                        self.codec.data_allow(grant.bytes());
                    } else {
                        // Read to its end and answered 452; others may use
                        // the memory meanwhile.
                        self.codec.data_refuse_memory();
                        grant.release();
                    }
                }
                Some(Event::Close(close)) => return Err(self.close(close).await),
                Some(_) => {}
                None => {
                    let received = self.codec.data_received();
                    let mut deadline = (Instant::now() + config.idle_timeout).min(data_deadline);
                    if config.min_data_rate > 0 {
                        // The data so far buys time at the minimum rate: a
                        // trickle cannot stretch the DATA phase to
                        // `data_timeout`.
                        let earned =
                            Duration::from_secs_f64(received as f64 / config.min_data_rate as f64);
                        deadline = deadline.min(started + config.idle_timeout + earned);
                    }
                    self.fill(deadline, Wait::Transaction).await?;
                }
            }
        };
        let Message { envelope, data } = *message;
        let data = match data.outcome() {
            DataOutcome::Message(data) => data,
            DataOutcome::BareLineEnding => {
                bump(&self.ctx.counters.refused_bare_line_ending);
                tracing::info!(
                    id = self.ctx.id,
                    client = %self.ctx.client,
                    from = ?envelope.from,
                    "message refused: bare LF or CR in the data (SMTP smuggling?)"
                );
                self.codec
                    .error(550, "5.5.2 bare LF/CR not allowed (SMTP smuggling)");
                return Ok(());
            }
            DataOutcome::TooBig { total } => {
                bump(&self.ctx.counters.refused_too_big);
                tracing::info!(
                    id = self.ctx.id,
                    client = %self.ctx.client,
                    from = ?envelope.from,
                    size = total,
                    max = config.max_message_bytes,
                    "message refused: too big"
                );
                self.codec.error(
                    552,
                    "5.3.4 Message size exceeds the fixed maximum message size",
                );
                return Ok(());
            }
            DataOutcome::OverBudget => {
                bump(&self.ctx.counters.refused_memory);
                tracing::warn!(
                    id = self.ctx.id,
                    client = %self.ctx.client,
                    from = ?envelope.from,
                    budget = config.max_data_memory,
                    "message answered 452: the memory budget for message data is used up (mailgate.relay.maxDataMemoryMB)"
                );
                self.codec
                    .reply(452, "4.3.1 Insufficient system storage, try again later");
                return Ok(());
            }
            DataOutcome::LineTooLong => {
                bump(&self.ctx.counters.refused_line_too_long);
                tracing::info!(
                    id = self.ctx.id,
                    client = %self.ctx.client,
                    from = ?envelope.from,
                    "message refused: a line is too long"
                );
                let text = format!(
                    "5.6.0 Message has a line longer than {} characters",
                    config.max_data_line.saturating_sub(2)
                );
                self.codec.error(550, &text);
                return Ok(());
            }
        };
        // The grant is held until the sink has stored the message.
        let stored = self.store(envelope, data).await;
        drop(grant);
        stored
    }

    async fn store(&mut self, envelope: Envelope, data: Vec<u8>) -> Result<()> {
        let hops = trace::count_received(&data);
        if hops > self.config().max_hops {
            tracing::info!(
                id = self.ctx.id,
                client = %self.ctx.client,
                from = ?envelope.from,
                hops,
                max = self.config().max_hops,
                "message refused: too many Received fields (a mail loop?)"
            );
            self.codec.error(554, "5.4.6 Too many hops");
            return Ok(());
        }
        let tls = self.codec.is_tls();
        let trace_id = trace::new_id();
        let received = Trace {
            helo: &self.helo,
            extended: self.codec.greeting() == Some(true),
            ip: self.ctx.client.ip(),
            by: &self.ctx.config.hostname,
            tls,
            authenticated: self.auth_user.is_some(),
            id: &trace_id,
            to: &envelope.to,
            at: std::time::SystemTime::now(),
        }
        .field();
        // In front of the data, in the same buffer (its headroom).
        let mut data = data;
        data.reserve_exact(received.len());
        data.splice(0..0, received.bytes());
        let size = data.len();
        let Envelope {
            from,
            params,
            to,
            rcpt_params,
        } = envelope;
        let submission = Submission {
            from,
            to,
            auth_user: self.auth_user.clone(),
            client: self.ctx.client,
            tls,
            smtputf8: params.smtputf8,
            eight_bit_mime: params.body == Some(Body::EightBitMime),
            dsn: DsnRequest {
                ret_full: params.ret_full,
                envid: params.envid,
                recipients: rcpt_params
                    .into_iter()
                    .map(|p| RecipientDsn {
                        notify: p.notify,
                        orcpt: p.orcpt,
                    })
                    .collect(),
            },
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
                self.codec.reset_command_count();
                // The sink logs the stored message at info (one line per
                // message); this is the protocol side.
                tracing::debug!(
                    client = %self.ctx.client,
                    from = ?from,
                    recipients,
                    size,
                    queue_id = %id,
                    trace_id = %trace_id,
                    tls,
                    user = ?self.auth_user,
                    "relay message queued"
                );
                self.codec.reply(250, &format!("2.0.0 queued as {id}"));
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
                self.codec
                    .reply(451, "4.3.0 Message not queued, try again later");
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
                self.codec.reply(554, &format!("5.7.0 {text}"));
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
                self.codec
                    .reply(451, "4.3.0 Message not queued in time, try again later");
            }
        }
        Ok(())
    }

    // ----- I/O ------------------------------------------------------------

    async fn flush(&mut self) -> Result<()> {
        if self.codec.output().is_empty() {
            return Ok(());
        }
        let timeout = self.config().idle_timeout;
        let Session { stream, codec, .. } = self;
        let written = tokio::time::timeout(timeout, async {
            stream.write_all(codec.output()).await?;
            stream.flush().await
        })
        .await;
        self.codec.clear_output();
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_end(e)),
            Err(_) => Err(End::Timeout),
        }
    }

    /// Waits for more input (after writing the replies waiting), until
    /// `deadline`.
    async fn fill(&mut self, deadline: Instant, wait: Wait) -> Result<()> {
        self.flush().await?;
        loop {
            let limit = self.drain_deadline.map_or(deadline, |d| d.min(deadline));
            let draining = self.drain_deadline.is_some();
            let grace = self.ctx.config.data_timeout;
            let Session {
                stream, codec, ctx, ..
            } = self;
            let read = tokio::select! {
                biased;
                r = tokio::time::timeout_at(limit, stream.read(codec.read_buffer())) => r,
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
                    self.codec.filled(n);
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
