//! One SMTP session (RFC 5321, RFC 3207 STARTTLS, RFC 4954 AUTH).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::message::{AuthAttempt, AuthInfo, ReceivedCommand, ReceivedMessage, bare_line_endings};
use super::sasl;
use super::{Mechanism, Replacement, ServerState, Stage, StageFaults, TlsMode};

/// Replies with a code of 500 or more, after which the session is closed.
const MAX_ERRORS: u32 = 20;

/// Size of one write of a flood fault: large, so hundreds of MB go fast.
const FLOOD_BLOCK: usize = 64 * 1024;

/// How much unprocessed input the session reads ahead while a trickle
/// fault writes (it reads only to notice a client that hangs up).
const READ_AHEAD: usize = 64 * 1024;

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client sent QUIT.
    Quit,
    /// The client closed the connection.
    Closed,
    /// The server sent a 421 and closes.
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

type Result<T> = std::result::Result<T, End>;

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

impl AsyncRead for Stream {
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

impl AsyncWrite for Stream {
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

/// A command line or SASL response.
enum Line {
    /// The line without its CRLF (or, when bare LF is allowed, its LF).
    Text(Vec<u8>),
    /// Longer than the limit; consumed up to its end.
    TooLong,
    /// Ended in a bare LF while bare LF is refused; the line without it.
    BareLf(Vec<u8>),
}

/// A line as received.
enum RawLine {
    /// The bytes up to and including the LF.
    Line(Vec<u8>),
    /// Longer than the limit; consumed up to its end. `crlf`: whether it
    /// ended in CRLF.
    TooLong { crlf: bool },
}

/// A SASL client response.
enum SaslInput {
    Data(Vec<u8>),
    Cancel,
    Bad,
}

struct Session {
    id: u64,
    state: Arc<ServerState>,
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    shutdown: watch::Receiver<()>,
    tls: bool,
    /// A HELO or EHLO was answered 250.
    greeted: bool,
    /// The last greeting that was answered 250 was EHLO: extensions (AUTH,
    /// MAIL parameters) may be used.
    extended: bool,
    rejecting: bool,
    auth: Option<AuthInfo>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    errors: u32,
    accepted: u64,
    /// Bytes read into `buf` since the connection (or TLS) started.
    received: u64,
    /// `received` when the last write to the client finished.
    received_at_reply: u64,
    /// Where (in `received` terms) the last line read ended.
    line_end: u64,
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
        state,
        stream: Stream::Plain(stream),
        buf: Vec::with_capacity(8 * 1024),
        pos: 0,
        shutdown,
        tls: false,
        greeted: false,
        extended: false,
        rejecting: false,
        auth: None,
        mail_from: None,
        rcpt_to: Vec::new(),
        errors: 0,
        accepted: 0,
        received: 0,
        received_at_reply: 0,
        line_end: 0,
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
        let _ = tokio::time::timeout(Duration::from_secs(1), session.write_reply(421, text)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), session.stream.shutdown()).await;
}

fn is_cmd(verb: &str, name: &str) -> bool {
    verb.eq_ignore_ascii_case(name)
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

/// `code text` as reply lines: `code-line` for all but the last line.
fn format_reply(code: u16, text: &str) -> Vec<u8> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    if lines.is_empty() {
        out.push_str(&format!("{code} \r\n"));
    }
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{sep}{line}\r\n"));
    }
    out.into_bytes()
}

impl Session {
    fn config(&self) -> &super::Config {
        &self.state.config
    }

    async fn serve(&mut self) -> Result<()> {
        if self.config().tls == TlsMode::Implicit {
            self.start_tls().await?;
        }
        let greeting = format!("{} ESMTP mailgate-devserver", self.config().hostname);
        let code = self.respond(Stage::Greeting, 220, &greeting).await?;
        self.rejecting = code != 220;
        loop {
            let line = match self.read_line().await? {
                Line::Text(line) => line,
                Line::TooLong => {
                    self.log_command("<TOO-LONG>", "");
                    self.error(500, "5.5.2 Error: line too long").await?;
                    continue;
                }
                Line::BareLf(line) => {
                    let text = String::from_utf8_lossy(&line);
                    let (verb, arg) = split_command(&text);
                    self.log_command(verb, arg);
                    self.error(500, "5.5.2 Error: bare <LF> received").await?;
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&line).into_owned();
            let (verb, arg) = split_command(&text);
            self.log_command(verb, arg);
            tracing::trace!(id = self.id, verb, "dev SMTP command");
            if is_cmd(verb, "QUIT") {
                self.respond(Stage::Quit, 221, "2.0.0 Bye").await?;
                return Err(End::Quit);
            }
            if self.rejecting {
                self.error(503, "5.5.1 Error: bad sequence of commands")
                    .await?;
                continue;
            }
            match verb.to_ascii_uppercase().as_str() {
                "EHLO" => self.ehlo(arg, true).await?,
                "HELO" => self.ehlo(arg, false).await?,
                "STARTTLS" => self.starttls(arg).await?,
                "AUTH" => self.auth(arg).await?,
                "MAIL" => self.mail(arg).await?,
                "RCPT" => self.rcpt(arg).await?,
                "DATA" => self.data(arg).await?,
                "RSET" => {
                    self.reset_transaction();
                    self.respond(Stage::Rset, 250, "2.0.0 Ok").await?;
                }
                "NOOP" => self.write_reply(250, "2.0.0 Ok").await?,
                "VRFY" => self.write_reply(252, "2.0.0 Cannot VRFY user").await?,
                "HELP" => {
                    self.write_reply(214, "2.0.0 mailgate-devserver: see RFC 5321")
                        .await?
                }
                "" => self.error(500, "5.5.2 Error: bad syntax").await?,
                _ => {
                    self.error(500, "5.5.2 Error: command not recognized")
                        .await?
                }
            }
        }
    }

    // ----- commands -------------------------------------------------------

    async fn ehlo(&mut self, arg: &str, extended: bool) -> Result<()> {
        if arg.is_empty() {
            let verb = if extended { "EHLO" } else { "HELO" };
            return self
                .error(501, &format!("5.5.4 Syntax: {verb} hostname"))
                .await;
        }
        self.reset_transaction();
        let config = self.config();
        let text = if extended {
            let mut lines = vec![
                format!("{} greets {arg}", config.hostname),
                format!("SIZE {}", config.max_message_size),
                "8BITMIME".to_owned(),
                "ENHANCEDSTATUSCODES".to_owned(),
            ];
            if config.pipelining {
                // Listed where Postfix lists it.
                lines.insert(1, "PIPELINING".to_owned());
            }
            if matches!(config.tls, TlsMode::StartTls { .. }) && !self.tls {
                lines.push("STARTTLS".to_owned());
            }
            if self.auth_allowed() && !config.mechanisms.is_empty() {
                let names: Vec<&str> = config.mechanisms.iter().map(|m| m.as_str()).collect();
                lines.push(format!("AUTH {}", names.join(" ")));
            }
            lines.join("\n")
        } else {
            config.hostname.clone()
        };
        if self.respond(Stage::Ehlo, 250, &text).await? == 250 {
            self.greeted = true;
            self.extended = extended;
        }
        Ok(())
    }

    async fn starttls(&mut self, arg: &str) -> Result<()> {
        if !matches!(self.config().tls, TlsMode::StartTls { .. }) {
            return self
                .error(502, "5.5.1 Error: command not implemented")
                .await;
        }
        if self.tls {
            return self.error(503, "5.5.1 Error: TLS already active").await;
        }
        if !arg.is_empty() {
            return self.error(501, "5.5.4 Syntax: STARTTLS").await;
        }
        if self
            .respond(Stage::StartTls, 220, "2.0.0 Ready to start TLS")
            .await?
            == 220
        {
            // RFC 3207: forget everything, including input pipelined after
            // STARTTLS (the "STARTTLS command injection" defence): such
            // bytes are never run as commands after the handshake.
            let pending = self.buf.len() - self.pos;
            if pending > 0 {
                tracing::debug!(
                    id = self.id,
                    bytes = pending,
                    "plaintext after STARTTLS discarded"
                );
                self.state.record_discarded_before_tls(pending);
            }
            self.buf.clear();
            self.pos = 0;
            self.received = 0;
            self.received_at_reply = 0;
            self.line_end = 0;
            self.start_tls().await?;
            self.greeted = false;
            self.extended = false;
            self.auth = None;
            self.reset_transaction();
        }
        Ok(())
    }

    async fn auth(&mut self, arg: &str) -> Result<()> {
        // AUTH is an extension (RFC 4954): not after HELO.
        if !self.extended {
            return self.error(503, "5.5.1 Error: send EHLO first").await;
        }
        if !self.auth_allowed() {
            return self
                .error(530, "5.7.0 Must issue a STARTTLS command first")
                .await;
        }
        if self.auth.is_some() {
            return self.error(503, "5.5.1 Error: already authenticated").await;
        }
        if self.mail_from.is_some() {
            return self
                .error(
                    503,
                    "5.5.1 Error: AUTH not permitted during a mail transaction",
                )
                .await;
        }
        let (name, initial) = match arg.split_once(' ') {
            Some((n, i)) => (n, Some(i.trim().to_owned())),
            None => (arg, None),
        };
        let mechanism = match Mechanism::from_name(name) {
            Some(m) if self.config().mechanisms.contains(&m) => m,
            _ => {
                return self
                    .error(504, "5.5.4 Error: unrecognized authentication type")
                    .await;
            }
        };
        match mechanism {
            Mechanism::Plain => self.auth_plain(initial).await,
            Mechanism::Login => self.auth_login(initial).await,
            Mechanism::XOAuth2 | Mechanism::OAuthBearer => {
                self.auth_bearer(mechanism, initial).await
            }
        }
    }

    async fn auth_plain(&mut self, initial: Option<String>) -> Result<()> {
        let mech = Mechanism::Plain;
        let bytes = match self.initial_or_prompt(initial, "").await? {
            SaslInput::Data(b) => b,
            other => return self.sasl_abort(mech, other, None, None).await,
        };
        let Some(plain) = sasl::parse_plain(&bytes) else {
            return self
                .auth_reply(
                    mech,
                    None,
                    None,
                    501,
                    "5.5.2 Error: malformed PLAIN response",
                )
                .await;
        };
        let ok = !self.state.refuse_auth()
            && (plain.authzid.is_empty() || plain.authzid == plain.user)
            && self.state.check_password(&plain.user, &plain.password);
        self.password_result(mech, plain.user, plain.password, ok)
            .await
    }

    async fn auth_login(&mut self, initial: Option<String>) -> Result<()> {
        let mech = Mechanism::Login;
        let user = match self.initial_or_prompt(initial, "VXNlcm5hbWU6").await? {
            SaslInput::Data(b) => b,
            other => return self.sasl_abort(mech, other, None, None).await,
        };
        let Ok(user) = String::from_utf8(user) else {
            return self
                .auth_reply(
                    mech,
                    None,
                    None,
                    501,
                    "5.5.2 Error: malformed LOGIN response",
                )
                .await;
        };
        let password = match self.prompt("UGFzc3dvcmQ6").await? {
            SaslInput::Data(b) => b,
            other => return self.sasl_abort(mech, other, Some(user), None).await,
        };
        let Ok(password) = String::from_utf8(password) else {
            return self
                .auth_reply(
                    mech,
                    Some(user),
                    None,
                    501,
                    "5.5.2 Error: malformed LOGIN response",
                )
                .await;
        };
        let ok = !self.state.refuse_auth() && self.state.check_password(&user, &password);
        self.password_result(mech, user, password, ok).await
    }

    async fn password_result(
        &mut self,
        mech: Mechanism,
        user: String,
        password: String,
        ok: bool,
    ) -> Result<()> {
        if ok {
            self.auth_success(mech, user, password).await
        } else {
            self.auth_final(
                mech,
                Some(user),
                Some(password),
                535,
                "5.7.8 Error: authentication failed: authentication credentials invalid",
            )
            .await
            .map(drop)
        }
    }

    async fn auth_bearer(&mut self, mech: Mechanism, initial: Option<String>) -> Result<()> {
        let bytes = match self.initial_or_prompt(initial, "").await? {
            SaslInput::Data(b) => b,
            other => return self.sasl_abort(mech, other, None, None).await,
        };
        let parsed = match mech {
            Mechanism::XOAuth2 => sasl::parse_xoauth2(&bytes),
            _ => sasl::parse_oauthbearer(&bytes),
        };
        let Some(bearer) = parsed else {
            let text = format!("5.5.2 Error: malformed {mech} response");
            return self.auth_reply(mech, None, None, 501, &text).await;
        };
        let ok = !self.state.refuse_auth() && self.state.check_token(&bearer.user, &bearer.token);
        if ok {
            return self.auth_success(mech, bearer.user, bearer.token).await;
        }
        // The error challenge; the client must answer it before the 535.
        let scope = &self.config().oauth_scope;
        let (challenge, expected): (String, &[u8]) = match mech {
            Mechanism::XOAuth2 => (sasl::xoauth2_error_challenge(scope), b""),
            _ => (sasl::oauthbearer_error_challenge(scope), b"\x01"),
        };
        let (user, token) = (Some(bearer.user), Some(bearer.token));
        match self.prompt(&challenge).await? {
            SaslInput::Data(answer) if answer == expected => {
                let text = match mech {
                    Mechanism::XOAuth2 => "5.7.8 Username and Password not accepted",
                    _ => "5.7.8 Error: authentication failed: invalid token",
                };
                self.auth_final(mech, user, token, 535, text)
                    .await
                    .map(drop)
            }
            SaslInput::Data(_) => {
                let text = match mech {
                    Mechanism::XOAuth2 => {
                        "5.5.2 Error: expected an empty response to the XOAUTH2 error challenge"
                    }
                    _ => "5.5.2 Error: expected AQ== (%x01) after the OAUTHBEARER error challenge",
                };
                self.auth_reply(mech, user, token, 501, text).await
            }
            other => self.sasl_abort(mech, other, user, token).await,
        }
    }

    async fn auth_success(&mut self, mech: Mechanism, user: String, secret: String) -> Result<()> {
        let code = self
            .auth_final(
                mech,
                Some(user.clone()),
                Some(secret),
                235,
                "2.7.0 Authentication successful",
            )
            .await?;
        if code == 235 {
            self.auth = Some(AuthInfo {
                mechanism: mech,
                user,
            });
        }
        Ok(())
    }

    /// The final reply of an exchange, subject to [`Stage::Auth`] faults;
    /// returns the code sent.
    async fn auth_final(
        &mut self,
        mech: Mechanism,
        user: Option<String>,
        secret: Option<String>,
        code: u16,
        text: &str,
    ) -> Result<u16> {
        let faults = self.apply_faults(Stage::Auth).await?;
        // Raw bytes or a trickle stand for the normal reply; another reply
        // is what the client gets.
        let taken = match &faults.replace {
            Some(Replacement::Reply { code, .. }) => *code,
            _ => code,
        };
        self.record_auth(mech, user, secret, taken);
        let sent = self.deliver(faults, code, text).await?;
        if sent >= 500 {
            self.count_error().await?;
        }
        Ok(sent)
    }

    fn record_auth(
        &self,
        mechanism: Mechanism,
        user: Option<String>,
        secret: Option<String>,
        code: u16,
    ) {
        self.state.record_auth(AuthAttempt {
            connection_id: self.id,
            mechanism,
            user,
            secret,
            success: code == 235,
            tls: self.tls,
            reply_code: code,
        });
    }

    /// Records the attempt and sends `code text`.
    async fn auth_reply(
        &mut self,
        mechanism: Mechanism,
        user: Option<String>,
        secret: Option<String>,
        code: u16,
        text: &str,
    ) -> Result<()> {
        self.record_auth(mechanism, user, secret, code);
        if code >= 500 {
            self.error(code, text).await
        } else {
            self.send(code, text).await
        }
    }

    async fn sasl_abort(
        &mut self,
        mech: Mechanism,
        input: SaslInput,
        user: Option<String>,
        secret: Option<String>,
    ) -> Result<()> {
        let text = match input {
            SaslInput::Cancel => "5.7.0 Error: authentication aborted",
            _ => "5.5.2 Error: invalid base64 data",
        };
        self.auth_reply(mech, user, secret, 501, text).await
    }

    async fn initial_or_prompt(
        &mut self,
        initial: Option<String>,
        challenge: &str,
    ) -> Result<SaslInput> {
        match initial {
            Some(line) => Ok(Self::sasl_input(line.as_bytes())),
            None => self.prompt(challenge).await,
        }
    }

    /// Sends `334 challenge` and reads the client's response.
    async fn prompt(&mut self, challenge: &str) -> Result<SaslInput> {
        self.write_line(&format!("334 {challenge}")).await?;
        let line = self.read_line().await?;
        self.log_command("<SASL>", "");
        match line {
            Line::Text(line) => Ok(Self::sasl_input(&line)),
            Line::TooLong | Line::BareLf(_) => Ok(SaslInput::Bad),
        }
    }

    fn sasl_input(line: &[u8]) -> SaslInput {
        let Ok(text) = std::str::from_utf8(line) else {
            return SaslInput::Bad;
        };
        if text.trim() == "*" {
            return SaslInput::Cancel;
        }
        sasl::decode_response(text).map_or(SaslInput::Bad, SaslInput::Data)
    }

    async fn mail(&mut self, arg: &str) -> Result<()> {
        if !self.greeted {
            return self.error(503, "5.5.1 Error: send HELO/EHLO first").await;
        }
        if !self.auth_allowed() {
            return self
                .error(530, "5.7.0 Must issue a STARTTLS command first")
                .await;
        }
        if self.config().require_auth && self.auth.is_none() {
            return self.error(530, "5.7.0 Authentication required").await;
        }
        if self.mail_from.is_some() {
            return self.error(503, "5.5.1 Error: nested MAIL command").await;
        }
        let Some((address, params)) = strip_keyword(arg, "FROM:").and_then(parse_path) else {
            return self.error(501, "5.5.4 Syntax: MAIL FROM:<address>").await;
        };
        for param in params.split_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            // Only what the EHLO reply advertised (RFC 5321 4.1.1.11: 555
            // for parameters not recognized or not implemented).
            let key = param_name(key);
            match key.as_str() {
                _ if !self.extended => {
                    let text = format!("5.5.4 Unsupported option: {key} (send EHLO, not HELO)");
                    return self.error(555, &text).await;
                }
                "SIZE" => match value.parse::<u64>() {
                    Ok(size) if size > self.config().max_message_size as u64 => {
                        return self
                            .error(552, "5.3.4 Message size exceeds fixed limit")
                            .await;
                    }
                    Ok(_) => {}
                    Err(_) => return self.error(501, "5.5.4 Bad SIZE parameter").await,
                },
                "BODY" => {
                    if !value.eq_ignore_ascii_case("7BIT")
                        && !value.eq_ignore_ascii_case("8BITMIME")
                    {
                        return self.error(501, "5.5.4 Bad BODY parameter").await;
                    }
                }
                // RFC 4954 section 5, when AUTH was advertised.
                "AUTH" if self.auth_advertised() && !value.is_empty() => {}
                _ => {
                    let text = format!("5.5.4 Unsupported option: {key}");
                    return self.error(555, &text).await;
                }
            }
        }
        if self.respond(Stage::Mail, 250, "2.1.0 Ok").await? == 250 {
            self.mail_from = Some(address);
        }
        Ok(())
    }

    async fn rcpt(&mut self, arg: &str) -> Result<()> {
        if self.mail_from.is_none() {
            return self.error(503, "5.5.1 Error: need MAIL command").await;
        }
        let Some((address, params)) = strip_keyword(arg, "TO:").and_then(parse_path) else {
            return self.error(501, "5.5.4 Syntax: RCPT TO:<address>").await;
        };
        // No RCPT parameter (DSN, ...) is advertised.
        if let Some(param) = params.split_whitespace().next() {
            let key = param.split_once('=').map_or(param, |(k, _)| k);
            let text = format!("5.5.4 Unsupported option: {}", param_name(key));
            return self.error(555, &text).await;
        }
        if address.is_empty() {
            return self.error(501, "5.1.3 Bad recipient address syntax").await;
        }
        if self.rcpt_to.len() >= self.config().max_recipients {
            return self.send(452, "4.5.3 Error: too many recipients").await;
        }
        if self.respond(Stage::Rcpt, 250, "2.1.5 Ok").await? == 250 {
            self.rcpt_to.push(address);
        }
        Ok(())
    }

    async fn data(&mut self, arg: &str) -> Result<()> {
        if self.mail_from.is_none() {
            return self.error(503, "5.5.1 Error: need MAIL command").await;
        }
        if self.rcpt_to.is_empty() {
            return self.error(554, "5.5.1 Error: no valid recipients").await;
        }
        if !arg.is_empty() {
            return self.error(501, "5.5.4 Syntax: DATA").await;
        }
        if self
            .respond(Stage::Data, 354, "End data with <CR><LF>.<CR><LF>")
            .await?
            != 354
        {
            return Ok(());
        }
        let cut_after = self.state.data_disconnect();
        let max_size = self.config().max_message_size;
        let mut data = Vec::new();
        let mut received = 0usize;
        let mut too_long = false;
        let mut oversize = false;
        // Whether the next byte starts a line: after the CRLF of DATA or of
        // a data line. A bare LF does not end a line, so only
        // <CR><LF>.<CR><LF> ends the data, never <LF>.<LF> or <LF>.<CR><LF>
        // (the SMTP smuggling patterns).
        let mut line_start = true;
        loop {
            if cut_after.is_some_and(|n| received >= n) {
                return Err(End::FaultDisconnect);
            }
            let line = match self.read_raw_line().await? {
                RawLine::Line(line) => line,
                RawLine::TooLong { crlf } => {
                    too_long = true;
                    line_start = crlf;
                    received += self.config().max_line_length;
                    continue;
                }
            };
            received += line.len();
            let crlf = line.ends_with(b"\r\n");
            if line_start && line == b".\r\n" {
                break;
            }
            // Undo dot-stuffing (RFC 5321 4.5.2) of a complete line only.
            let kept = match line.strip_prefix(b".") {
                Some(rest) if line_start && crlf => rest,
                _ => &line[..],
            };
            line_start = crlf;
            if data.len() + kept.len() > max_size {
                oversize = true;
            } else if !oversize {
                data.extend_from_slice(kept);
            }
        }
        let mail_from = self.mail_from.take().unwrap_or_default();
        let rcpt_to = std::mem::take(&mut self.rcpt_to);
        if too_long {
            return self
                .error(500, "5.5.2 Error: line too long in message data")
                .await;
        }
        if oversize {
            return self
                .error(552, "5.3.4 Message size exceeds fixed limit")
                .await;
        }
        let (bare_lf, bare_cr) = bare_line_endings(&data);
        if bare_lf && self.config().reject_bare_lf {
            tracing::debug!(id = self.id, "bare LF in message data");
            return self.error(550, "5.5.2 Error: bare <LF> received").await;
        }
        if bare_cr && self.config().reject_bare_cr {
            tracing::debug!(id = self.id, "bare CR in message data");
            return self.error(550, "5.5.2 Error: bare <CR> received").await;
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
            mail_from,
            rcpt_to,
            data,
            self.tls,
            self.auth.clone(),
        ));
        self.deliver(faults, 250, &reply).await.map(drop)
    }

    // ----- helpers --------------------------------------------------------

    fn auth_allowed(&self) -> bool {
        self.tls || self.config().tls != (TlsMode::StartTls { required: true })
    }

    /// Whether the EHLO reply listed AUTH.
    fn auth_advertised(&self) -> bool {
        self.extended && self.auth_allowed() && !self.config().mechanisms.is_empty()
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }

    /// Records a command line (see [`ReceivedCommand`]).
    fn log_command(&self, verb: &str, arg: &str) {
        let verb = verb.to_ascii_uppercase();
        // Never an AUTH initial response: it holds the credentials.
        let arg = if verb == "AUTH" {
            arg.split_whitespace().next().unwrap_or("")
        } else {
            arg
        };
        self.state.record_command(ReceivedCommand {
            connection: self.id,
            verb,
            arg: arg.to_owned(),
            tls: self.tls,
            pipelined: self.line_end <= self.received_at_reply,
        });
    }

    /// Waits and applies the delay and disconnect faults of `stage`;
    /// returns what replaces or accompanies the normal reply.
    async fn apply_faults(&mut self, stage: Stage) -> Result<StageFaults> {
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
    async fn respond(&mut self, stage: Stage, code: u16, text: &str) -> Result<u16> {
        let faults = self.apply_faults(stage).await?;
        self.deliver(faults, code, text).await
    }

    /// Sends the normal reply `code text` as `faults` say; returns the code
    /// the client is taken to have received: a replacing reply's, else
    /// `code` (raw bytes and trickles stand for the normal reply).
    async fn deliver(&mut self, faults: StageFaults, code: u16, text: &str) -> Result<u16> {
        let plain = faults.replace.is_none() && faults.append.is_empty();
        let (mut out, sent) = match faults.replace {
            None => (format_reply(code, text), code),
            Some(Replacement::Reply { code, text }) => {
                tracing::debug!(id = self.id, code, "fault: reply");
                (format_reply(code, &text), code)
            }
            Some(Replacement::Raw(bytes)) => {
                tracing::debug!(id = self.id, bytes = bytes.len(), "fault: raw reply");
                (bytes, code)
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
            self.write_raw(&out).await?;
        } else {
            if !faults.append.is_empty() {
                tracing::debug!(
                    id = self.id,
                    bytes = faults.append.len(),
                    "fault: bytes appended to the reply"
                );
            }
            // One buffer, one write: reply and extra bytes leave together.
            out.extend_from_slice(&faults.append);
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
    /// for later, up to [`READ_AHEAD`] bytes.
    async fn pause(&mut self, interval: Duration) -> Result<()> {
        let sleep = tokio::time::sleep(interval);
        tokio::pin!(sleep);
        loop {
            let room = self.buf.len() - self.pos < READ_AHEAD;
            if room {
                self.buf.reserve(8 * 1024);
            }
            tokio::select! {
                _ = &mut sleep => return Ok(()),
                _ = self.shutdown.changed() => return Err(End::ShutdownDuringFault),
                read = self.stream.read_buf(&mut self.buf), if room => match read {
                    Ok(0) => return Err(End::Closed),
                    Ok(n) => self.received += n as u64,
                    Err(e) => return Err(io_end(e)),
                },
            }
        }
    }

    async fn send(&mut self, code: u16, text: &str) -> Result<()> {
        self.write_reply(code, text).await
    }

    /// Sends an error reply and closes after too many of them.
    async fn error(&mut self, code: u16, text: &str) -> Result<()> {
        self.write_reply(code, text).await?;
        self.count_error().await
    }

    /// Counts an error reply sent; after too many, says 421 and closes.
    async fn count_error(&mut self) -> Result<()> {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.write_reply(421, "4.7.0 Error: too many errors")
                .await?;
            return Err(End::Sent421);
        }
        Ok(())
    }

    async fn write_reply(&mut self, code: u16, text: &str) -> Result<()> {
        self.write_raw(&format_reply(code, text)).await
    }

    async fn write_line(&mut self, line: &str) -> Result<()> {
        self.write_raw(format!("{line}\r\n").as_bytes()).await
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let timeout = self.config().idle_timeout;
        let stream = &mut self.stream;
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => {
                self.received_at_reply = self.received;
                Ok(())
            }
            Ok(Err(e)) => Err(io_end(e)),
            Err(_) => Err(End::Timeout),
        }
    }

    /// Like `write_raw`, for what a fault writes: may take long (a flood,
    /// a client that does not read), so server shutdown interrupts it.
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
                    self.received_at_reply = self.received;
                    Ok(())
                }
                Ok(Err(e)) => Err(io_end(e)),
                Err(_) => Err(End::Timeout),
            },
            _ = self.shutdown.changed() => Err(End::ShutdownDuringFault),
        }
    }

    /// Reads one command line or SASL response, without its CRLF. A line
    /// ending in a bare LF is refused, or (when bare LF is allowed) taken
    /// without its LF. A line longer than the limit is consumed up to its
    /// end and reported as too long.
    async fn read_line(&mut self) -> Result<Line> {
        let mut line = match self.read_raw_line().await? {
            RawLine::Line(line) => line,
            RawLine::TooLong { .. } => return Ok(Line::TooLong),
        };
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        } else if self.config().reject_bare_lf {
            return Ok(Line::BareLf(line));
        }
        Ok(Line::Text(line))
    }

    /// Reads the bytes up to and including the next LF, as received.
    async fn read_raw_line(&mut self) -> Result<RawLine> {
        let max = self.config().max_line_length;
        let mut discarding = false;
        let mut last_discarded = 0u8;
        loop {
            if let Some(n) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let start = self.pos;
                let end = start + n + 1;
                self.pos = end;
                self.line_end = self.received - (self.buf.len() - end) as u64;
                if discarding || n + 1 > max {
                    let before = if n > 0 {
                        self.buf[end - 2]
                    } else {
                        last_discarded
                    };
                    return Ok(RawLine::TooLong {
                        crlf: before == b'\r',
                    });
                }
                return Ok(RawLine::Line(self.buf[start..end].to_vec()));
            }
            if self.buf.len() - self.pos > max {
                discarding = true;
                last_discarded = self.buf.last().copied().unwrap_or(0);
                self.buf.clear();
                self.pos = 0;
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<()> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(8 * 1024);
        let timeout = self.config().idle_timeout;
        let n = tokio::select! {
            read = self.stream.read_buf(&mut self.buf) => read.map_err(io_end)?,
            _ = self.shutdown.changed() => return Err(End::Shutdown),
            _ = tokio::time::sleep(timeout) => return Err(End::Timeout),
        };
        if n == 0 {
            return Err(End::Closed);
        }
        self.received += n as u64;
        Ok(())
    }

    async fn start_tls(&mut self) -> Result<()> {
        let Some(config) = self.config().tls_config.clone() else {
            return Err(End::Io(io::Error::other("no TLS configuration")));
        };
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
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
        self.stream = Stream::Tls(Box::new(tls));
        self.tls = true;
        Ok(())
    }
}

/// A parameter name, upper-cased, fit to echo in a reply: printable ASCII
/// only, at most 64 characters.
fn param_name(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_graphic)
        .take(64)
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Strips `FROM:` / `TO:` (case-insensitive).
fn strip_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &arg[keyword.len()..])
}

/// Parses `<address> params` (or a bare address); drops a source route.
fn parse_path(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    let (address, params) = if let Some(rest) = s.strip_prefix('<') {
        let end = rest.find('>')?;
        (&rest[..end], &rest[end + 1..])
    } else {
        let end = s.find(' ').unwrap_or(s.len());
        (&s[..end], &s[end..])
    };
    let address = if address.starts_with('@') {
        address.split_once(':')?.1
    } else {
        address
    };
    if address
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return None;
    }
    if s.starts_with('<') || !address.is_empty() {
        Some((address.to_owned(), params.trim()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("<a@b> SIZE=10"), Some(("a@b".into(), "SIZE=10")));
        assert_eq!(parse_path(" <a@b>"), Some(("a@b".into(), "")));
        assert_eq!(parse_path("<>"), Some((String::new(), "")));
        assert_eq!(
            parse_path("a@b BODY=8BITMIME"),
            Some(("a@b".into(), "BODY=8BITMIME"))
        );
        assert_eq!(parse_path("<@relay:a@b>"), Some(("a@b".into(), "")));
        assert_eq!(parse_path("<a b>"), None);
        assert_eq!(parse_path("<a@b"), None);
        assert_eq!(parse_path(""), None);
        assert_eq!(strip_keyword("from:<x>", "FROM:"), Some("<x>"));
        assert_eq!(strip_keyword("fr", "FROM:"), None);
        assert_eq!(strip_keyword("fröm:<x>", "FROM:"), None);
        assert_eq!(param_name("smtputf8"), "SMTPUTF8");
        assert_eq!(param_name("x\ry\u{e9}z"), "XYZ");
        assert_eq!(param_name(&"a".repeat(100)).len(), 64);
    }
}
