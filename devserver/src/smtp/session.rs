//! One SMTP session: the I/O loop around the relay's codec
//! ([`mailgate_relay::codec`], which frames, parses and sequences the
//! commands and reads the data) and the dev server's policy: its faults,
//! its recording, its limits and its wording.
//!
//! Each reply is written at once (never batched), so that the command
//! log can tell what a client sent without waiting for a reply.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use mailgate_relay::codec::{
    Answer, Close, Codec, CodecConfig, DataStart, Dialect, Event, Extensions, LineInfo, MailParams,
    Message, Path, RcptParams,
};
use mailgate_relay::stream::ServerStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::message::{AuthInfo, ReceivedCommand, ReceivedMessage};
use super::{Replacement, ServerState, Stage, StageFaults, TlsMode};

/// Replies with a code of 500 or more, after which the session is closed.
const MAX_ERRORS: usize = 20;

/// Size of one write of a flood fault: large, so hundreds of MB go fast.
const FLOOD_BLOCK: usize = 64 * 1024;

/// Why a session ended.
#[derive(Debug)]
pub(super) enum End {
    /// The client sent QUIT.
    Quit,
    /// The client closed the connection.
    Closed,
    /// The server sent a 421 (or the codec's closing reply) and closes.
    Sent421,
    /// The server is shutting down.
    Shutdown,
    /// The client was silent for too long.
    Timeout,
    /// A fault closed the connection.
    FaultDisconnect,
    /// The server shut down while a fault was writing: no farewell, the
    /// client is in the middle of a reply already.
    ShutdownDuringFault,
    /// Reading, writing or the TLS handshake failed.
    Io(io::Error),
}

pub(super) type Result<T> = std::result::Result<T, End>;

/// Postfix's wording, which the dev server has always used.
struct Postfix;

impl Dialect for Postfix {
    fn reply(&self, answer: &Answer) -> (u16, Cow<'static, str>) {
        let fixed = |code, text: &'static str| (code, Cow::Borrowed(text));
        match answer {
            Answer::LineTooLong => fixed(500, "5.5.2 Error: line too long"),
            Answer::BareLf => fixed(500, "5.5.2 Error: bare <LF> received"),
            Answer::BadBytes | Answer::Unknown | Answer::NotImplemented => {
                fixed(500, "5.5.2 Error: command not recognized")
            }
            Answer::UnsupportedParam(key) => {
                (555, Cow::Owned(format!("5.5.4 Unsupported option: {key}")))
            }
            Answer::ParamAfterHelo(key) => (
                555,
                Cow::Owned(format!(
                    "5.5.4 Unsupported option: {key} (send EHLO, not HELO)"
                )),
            ),
            Answer::UnsupportedBody => fixed(501, "5.5.4 Bad BODY parameter"),
            Answer::NeedHelo => fixed(503, "5.5.1 Error: send HELO/EHLO first"),
            Answer::NeedEhlo => fixed(503, "5.5.1 Error: send EHLO first"),
            Answer::NestedMail => fixed(503, "5.5.1 Error: nested MAIL command"),
            Answer::NeedMail => fixed(503, "5.5.1 Error: need MAIL command"),
            Answer::NeedRcpt => fixed(554, "5.5.1 Error: no valid recipients"),
            Answer::StartTlsUnavailable => fixed(502, "5.5.1 Error: command not implemented"),
            Answer::TlsActive => fixed(503, "5.5.1 Error: TLS already active"),
            Answer::AuthUnavailable => fixed(504, "5.5.4 Error: unrecognized authentication type"),
            Answer::AlreadyAuthenticated => fixed(503, "5.5.1 Error: already authenticated"),
            Answer::AuthInTransaction => fixed(
                503,
                "5.5.1 Error: AUTH not permitted during a mail transaction",
            ),
            Answer::TooManyErrors => fixed(421, "4.7.0 Error: too many errors"),
            Answer::Rejecting => fixed(503, "5.5.1 Error: bad sequence of commands"),
            Answer::Noop => fixed(250, "2.0.0 Ok"),
            Answer::Vrfy => fixed(252, "2.0.0 Cannot VRFY user"),
            Answer::Help => fixed(214, "2.0.0 mailgate-devserver: see RFC 5321"),
            other => other.standard(),
        }
    }
}

/// The codec as the dev server speaks it. Where it differs from the
/// relay: Postfix's wording, no SMTPUTF8 or DSN offered, its own
/// PIPELINING and TLS settings, MAIL too needs STARTTLS when STARTTLS is
/// required, a bare LF may end a command line, an address may lack its
/// domain, each line is reported.
fn codec_config(config: &super::Config) -> CodecConfig {
    let tls_required = config.tls == (TlsMode::StartTls { required: true });
    let mechanisms: Vec<&str> = config.mechanisms.iter().map(|m| m.as_str()).collect();
    CodecConfig {
        max_line: config.max_line_length,
        max_data_line: config.max_line_length,
        max_message_bytes: config.max_message_size,
        max_errors: MAX_ERRORS,
        max_commands: usize::MAX,
        bare_lf_ends_line: !config.reject_bare_lf,
        // msmtp sends `MAIL FROM:<root>` (cli/tests/callers.rs).
        unqualified_addresses: true,
        report_lines: true,
        extensions: Extensions {
            pipelining: config.pipelining,
            size: true,
            eight_bit_mime: true,
            smtputf8: false,
            enhanced_status_codes: true,
            dsn: false,
            starttls: matches!(config.tls, TlsMode::StartTls { .. }),
            auth: (!mechanisms.is_empty()).then(|| mechanisms.join(" ")),
        },
        require_tls_for_auth: tls_required,
        require_tls_for_mail: tls_required,
        require_auth: config.require_auth,
        dialect: &Postfix,
    }
}

pub(super) struct Session {
    pub(super) id: u64,
    pub(super) state: Arc<ServerState>,
    pub(super) stream: ServerStream<TcpStream>,
    pub(super) codec: Codec,
    pub(super) shutdown: watch::Receiver<()>,
    pub(super) auth: Option<AuthInfo>,
    accepted: u64,
    /// Bytes received (the codec's count) when the last write to the
    /// client finished.
    received_at_reply: u64,
}

/// Counts a session as open while it lives, even if its task is dropped.
struct OpenGuard(Arc<ServerState>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .open_connections
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub(crate) async fn run(
    stream: TcpStream,
    id: u64,
    state: Arc<ServerState>,
    shutdown: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    // The accept loop counted the session as open.
    let _open = OpenGuard(Arc::clone(&state));
    let mut session = Session {
        id,
        codec: Codec::new(codec_config(&state.config)),
        state,
        stream: ServerStream::Plain(stream),
        shutdown,
        auth: None,
        accepted: 0,
        received_at_reply: 0,
    };
    let end = session.serve().await;
    match &end {
        Err(End::Io(e)) => tracing::debug!(id, error = %e, "dev SMTP session failed"),
        other => tracing::debug!(id, end = ?other, "dev SMTP session ended"),
    }
    let farewell = match end {
        Err(End::Shutdown) => Some("4.3.2 Service shutting down"),
        Err(End::Timeout) => Some("4.4.2 Error: timeout exceeded"),
        _ => None,
    };
    if let Some(text) = farewell {
        session.codec.reply(421, text);
        let _ = tokio::time::timeout(Duration::from_secs(1), session.flush()).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), session.stream.shutdown()).await;
}

/// Splits a command line into its verb and trimmed argument.
fn split_command(text: &str) -> (&str, &str) {
    match text.split_once(' ') {
        Some((v, a)) => (v, a.trim()),
        None => (text, ""),
    }
}

/// A write or read error that only means the client went away.
fn io_end(e: io::Error) -> End {
    match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => End::Closed,
        _ => End::Io(e),
    }
}

impl Session {
    pub(super) fn config(&self) -> &super::Config {
        &self.state.config
    }

    async fn serve(&mut self) -> Result<()> {
        if self.config().tls == TlsMode::Implicit {
            self.start_tls().await?;
            self.codec.set_tls();
        }
        let greeting = format!("{} ESMTP mailgate-devserver", self.config().hostname);
        if self.respond(Stage::Greeting, 220, &greeting).await? != 220 {
            self.codec.greeting_refused();
        }
        loop {
            let Some(event) = self.codec.next_event() else {
                self.fill().await?;
                continue;
            };
            // What the codec answered by itself goes out at once.
            self.flush().await?;
            self.event(event).await?;
        }
    }

    async fn event(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Line(line) => self.log_line(&line),
            Event::Close(close) => return Err(self.close(close)),
            Event::Quit => {
                self.respond(Stage::Quit, 221, "2.0.0 Bye").await?;
                return Err(End::Quit);
            }
            Event::Helo { host, extended } => self.ehlo(&host, extended).await?,
            Event::StartTls => self.starttls().await?,
            Event::Auth { mechanism, initial } => self.auth(&mechanism, initial).await?,
            Event::Mail { path, params } => self.mail(path, params).await?,
            Event::Rcpt { path, params } => self.rcpt(path, params).await?,
            Event::Data => self.data().await?,
            Event::DataCut => return Err(End::FaultDisconnect),
            Event::Message(message) => self.message(*message).await?,
            Event::Rset => {
                self.respond(Stage::Rset, 250, "2.0.0 Ok").await?;
            }
            Event::Replied | Event::SaslResponse(_) | Event::DataMemory { .. } => {}
        }
        self.flush().await
    }

    /// The codec closed the session; its reply went out with the flush.
    fn close(&self, close: Close) -> End {
        tracing::debug!(id = self.id, ?close, "dev SMTP session closed by the codec");
        match close {
            Close::Quit => End::Quit,
            _ => End::Sent421,
        }
    }

    // ----- commands -------------------------------------------------------

    async fn ehlo(&mut self, host: &str, extended: bool) -> Result<()> {
        let first = if extended {
            format!("{} greets {host}", self.config().hostname)
        } else {
            self.config().hostname.clone()
        };
        let text = self.codec.ehlo_text(&first, extended);
        if self.respond(Stage::Ehlo, 250, &text).await? == 250 {
            self.codec.greeted(extended);
        }
        Ok(())
    }

    async fn starttls(&mut self) -> Result<()> {
        if self
            .respond(Stage::StartTls, 220, "2.0.0 Ready to start TLS")
            .await?
            != 220
        {
            return Ok(());
        }
        // RFC 3207: forget everything, including input pipelined after
        // STARTTLS (the "STARTTLS command injection" defence): such bytes
        // are never run as commands after the handshake.
        let pending = self.codec.start_tls();
        if pending > 0 {
            tracing::debug!(
                id = self.id,
                bytes = pending,
                "plaintext after STARTTLS discarded"
            );
            self.state.record_discarded_before_tls(pending);
        }
        self.received_at_reply = 0;
        self.auth = None;
        self.start_tls().await
    }

    async fn mail(&mut self, path: Path, params: MailParams) -> Result<()> {
        if params
            .size
            .is_some_and(|size| size > self.config().max_message_size as u64)
        {
            self.codec
                .error(552, "5.3.4 Message size exceeds fixed limit");
            return Ok(());
        }
        if self.respond(Stage::Mail, 250, "2.1.0 Ok").await? == 250 {
            self.codec.accept_mail(path.address, params);
        }
        Ok(())
    }

    async fn rcpt(&mut self, path: Path, params: RcptParams) -> Result<()> {
        let count = self.codec.envelope().map_or(0, |e| e.to.len());
        if count >= self.config().max_recipients {
            self.codec.reply(452, "4.5.3 Error: too many recipients");
            return Ok(());
        }
        if self.respond(Stage::Rcpt, 250, "2.1.5 Ok").await? == 250 {
            self.codec.accept_rcpt(path.address, params);
        }
        Ok(())
    }

    async fn data(&mut self) -> Result<()> {
        if self
            .respond(Stage::Data, 354, "End data with <CR><LF>.<CR><LF>")
            .await?
            != 354
        {
            self.codec.data_refused();
            return Ok(());
        }
        self.codec.start_data(DataStart {
            cut_after: self.state.data_disconnect().map(|n| n as u64),
            ..DataStart::default()
        });
        Ok(())
    }

    /// The end of the data: the dev server's checks, in its order, then
    /// the [`Stage::DataEnd`] faults, then the record.
    async fn message(&mut self, message: Message) -> Result<()> {
        let Message { envelope, data } = message;
        if data.long_line {
            self.codec
                .error(500, "5.5.2 Error: line too long in message data");
            return Ok(());
        }
        if data.too_big.is_some() {
            self.codec
                .error(552, "5.3.4 Message size exceeds fixed limit");
            return Ok(());
        }
        if data.bare_lf && self.config().reject_bare_lf {
            tracing::debug!(id = self.id, "bare LF in message data");
            self.codec.error(550, "5.5.2 Error: bare <LF> received");
            return Ok(());
        }
        if data.bare_cr && self.config().reject_bare_cr {
            tracing::debug!(id = self.id, "bare CR in message data");
            self.codec.error(550, "5.5.2 Error: bare <CR> received");
            return Ok(());
        }
        let faults = self.apply_faults(Stage::DataEnd).await?;
        if let Some(Replacement::Reply { code, text }) = &faults.replace {
            // A reply in place of the 250 refuses the message.
            let (code, text) = (*code, text.clone());
            return self.deliver(faults, code, &text).await.map(drop);
        }
        self.accepted += 1;
        let queue_id = format!("DEV{}X{}", self.id, self.accepted);
        let reply = format!("2.0.0 Ok: queued as {queue_id}");
        self.state.record_message(ReceivedMessage::new(
            self.id,
            queue_id,
            envelope.from,
            envelope.to,
            data.data,
            self.codec.is_tls(),
            self.auth.clone(),
        ));
        self.deliver(faults, 250, &reply).await.map(drop)
    }

    // ----- recording ------------------------------------------------------

    /// Records a line (see [`ReceivedCommand`]).
    pub(super) fn log_line(&self, line: &LineInfo) {
        let (verb, arg) = if line.sasl {
            ("<SASL>".to_owned(), "")
        } else if line.too_long {
            ("<TOO-LONG>".to_owned(), "")
        } else {
            let (verb, arg) = split_command(&line.text);
            let verb = verb.to_ascii_uppercase();
            // Never an AUTH initial response: it holds the credentials.
            let arg = if verb == "AUTH" {
                arg.split_whitespace().next().unwrap_or("")
            } else {
                arg
            };
            (verb, arg)
        };
        tracing::trace!(id = self.id, verb, "dev SMTP command");
        self.state.record_command(ReceivedCommand {
            connection: self.id,
            verb,
            arg: arg.to_owned(),
            tls: self.codec.is_tls(),
            pipelined: line.end <= self.received_at_reply,
        });
    }

    // ----- faults ---------------------------------------------------------

    /// Waits and applies the delay and disconnect faults of `stage`;
    /// returns what replaces or accompanies the normal reply.
    pub(super) async fn apply_faults(&mut self, stage: Stage) -> Result<StageFaults> {
        let faults = self.state.stage_faults(stage);
        if !faults.delay.is_zero() {
            tracing::debug!(id = self.id, ?stage, delay = ?faults.delay, "fault: delay");
            tokio::select! {
                _ = tokio::time::sleep(faults.delay) => {}
                _ = self.shutdown.changed() => return Err(End::Shutdown),
            }
        }
        if faults.disconnect {
            tracing::debug!(id = self.id, ?stage, "fault: disconnect");
            return Err(End::FaultDisconnect);
        }
        Ok(faults)
    }

    /// Sends the normal reply for `stage`, or what the faults put in its
    /// place; returns the code the client is taken to have received.
    pub(super) async fn respond(&mut self, stage: Stage, code: u16, text: &str) -> Result<u16> {
        let faults = self.apply_faults(stage).await?;
        self.deliver(faults, code, text).await
    }

    /// Sends the normal reply `code text` as `faults` say; returns the code
    /// the client is taken to have received: a replacing reply's, else
    /// `code` (raw bytes and trickles stand for the normal reply).
    pub(super) async fn deliver(
        &mut self,
        faults: StageFaults,
        code: u16,
        text: &str,
    ) -> Result<u16> {
        self.flush().await?;
        let plain = faults.replace.is_none() && faults.append.is_empty();
        let sent = match faults.replace {
            None => {
                self.codec.reply(code, text);
                code
            }
            Some(Replacement::Reply { code, text }) => {
                tracing::debug!(id = self.id, code, "fault: reply");
                self.codec.reply(code, &text);
                code
            }
            Some(Replacement::Raw(bytes)) => {
                tracing::debug!(id = self.id, bytes = bytes.len(), "fault: raw reply");
                self.codec.write_raw(&bytes);
                code
            }
            Some(Replacement::Flood { chunk, total }) => {
                self.flood(&chunk, total).await?;
                return Err(End::FaultDisconnect);
            }
            Some(Replacement::Trickle {
                bytes,
                interval,
                forever,
            }) => {
                self.trickle(&bytes, interval, forever).await?;
                return Ok(code);
            }
        };
        if plain {
            self.flush().await?;
        } else {
            if !faults.append.is_empty() {
                tracing::debug!(
                    id = self.id,
                    bytes = faults.append.len(),
                    "fault: bytes appended to the reply"
                );
            }
            // One buffer, one write: reply and extra bytes leave together.
            self.codec.write_raw(&faults.append);
            let out = self.codec.output().to_vec();
            self.codec.clear_output();
            self.write_fault_bytes(&out).await?;
        }
        if sent == 421 {
            return Err(End::Sent421);
        }
        Ok(sent)
    }

    /// Writes `chunk` over and over, `total` bytes in all, in large writes;
    /// a client that hangs up ends it early, which is fine.
    async fn flood(&mut self, chunk: &[u8], total: u64) -> Result<()> {
        tracing::debug!(id = self.id, chunk = chunk.len(), total, "fault: flood");
        if chunk.is_empty() {
            return Ok(());
        }
        let block = chunk.repeat((FLOOD_BLOCK / chunk.len()).max(1));
        let mut written = 0u64;
        while written < total {
            // `block` holds whole chunks, so each write starts a chunk.
            let n = (total - written).min(block.len() as u64) as usize;
            match self.write_fault_bytes(&block[..n]).await {
                Ok(()) => written += n as u64,
                Err(End::Closed | End::Io(_)) => {
                    tracing::debug!(id = self.id, written, "flood: client went away");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes `bytes` one byte per `interval` (the first one at once);
    /// `forever`: starts over at the end until the client leaves.
    async fn trickle(&mut self, bytes: &[u8], interval: Duration, forever: bool) -> Result<()> {
        tracing::debug!(
            id = self.id,
            bytes = bytes.len(),
            ?interval,
            forever,
            "fault: trickle"
        );
        if bytes.is_empty() {
            if !forever {
                return Ok(());
            }
            loop {
                self.pause(Duration::from_secs(3600)).await?;
            }
        }
        let mut next = 0;
        loop {
            self.write_fault_bytes(&bytes[next..next + 1]).await?;
            next += 1;
            if next == bytes.len() {
                if !forever {
                    return Ok(());
                }
                next = 0;
            }
            self.pause(interval).await?;
        }
    }

    /// Waits `interval` while watching the connection: a client that hangs
    /// up ends the wait (and the session); what it sends meanwhile is kept
    /// for later, as far as the codec's buffer takes it.
    async fn pause(&mut self, interval: Duration) -> Result<()> {
        let sleep = tokio::time::sleep(interval);
        tokio::pin!(sleep);
        loop {
            let room = self.codec.has_room();
            let Session {
                stream,
                codec,
                shutdown,
                ..
            } = self;
            let read = tokio::select! {
                _ = &mut sleep => return Ok(()),
                _ = shutdown.changed() => return Err(End::ShutdownDuringFault),
                read = stream.read(codec.read_buffer()), if room => read,
            };
            match read {
                Ok(0) => return Err(End::Closed),
                Ok(n) => self.codec.filled(n),
                Err(e) => return Err(io_end(e)),
            }
        }
    }

    // ----- I/O ------------------------------------------------------------

    /// Writes the replies waiting.
    pub(super) async fn flush(&mut self) -> Result<()> {
        if self.codec.output().is_empty() {
            return Ok(());
        }
        let timeout = self.config().idle_timeout;
        let Session { stream, codec, .. } = self;
        let write = async {
            stream.write_all(codec.output()).await?;
            stream.flush().await
        };
        let written = tokio::time::timeout(timeout, write).await;
        self.codec.clear_output();
        match written {
            Ok(Ok(())) => {
                self.received_at_reply = self.codec.received();
                Ok(())
            }
            Ok(Err(e)) => Err(io_end(e)),
            Err(_) => Err(End::Timeout),
        }
    }

    /// Like `flush`, for what a fault writes: may take long (a flood, a
    /// client that does not read), so server shutdown interrupts it.
    async fn write_fault_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let timeout = self.config().idle_timeout;
        let stream = &mut self.stream;
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        tokio::select! {
            r = tokio::time::timeout(timeout, write) => match r {
                Ok(Ok(())) => {
                    self.received_at_reply = self.codec.received();
                    Ok(())
                }
                Ok(Err(e)) => Err(io_end(e)),
                Err(_) => Err(End::Timeout),
            },
            _ = self.shutdown.changed() => Err(End::ShutdownDuringFault),
        }
    }

    /// Waits for more input, at most `idle_timeout`.
    pub(super) async fn fill(&mut self) -> Result<()> {
        self.flush().await?;
        let timeout = self.config().idle_timeout;
        let Session {
            stream,
            codec,
            shutdown,
            ..
        } = self;
        let n = tokio::select! {
            read = stream.read(codec.read_buffer()) => read.map_err(io_end)?,
            _ = shutdown.changed() => return Err(End::Shutdown),
            _ = tokio::time::sleep(timeout) => return Err(End::Timeout),
        };
        if n == 0 {
            return Err(End::Closed);
        }
        self.codec.filled(n);
        Ok(())
    }

    async fn start_tls(&mut self) -> Result<()> {
        let Some(config) = self.config().tls_config.clone() else {
            return Err(End::Io(io::Error::other("no TLS configuration")));
        };
        let Some(tcp) = self.stream.take_plain() else {
            return Err(End::Io(io::Error::other("TLS already active")));
        };
        let timeout = self.config().idle_timeout;
        let tls = tokio::select! {
            r = tokio::time::timeout(timeout, TlsAcceptor::from(config).accept(tcp)) => match r {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(id = self.id, error = %e, "TLS handshake failed");
                    return Err(End::Io(e));
                }
                Err(_) => return Err(End::Timeout),
            },
            _ = self.shutdown.changed() => return Err(End::Shutdown),
        };
        self.stream = ServerStream::Tls(Box::new(tls));
        Ok(())
    }
}
