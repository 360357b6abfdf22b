//! One SMTP client connection over tokio and rustls: connect, greeting,
//! EHLO, STARTTLS or implicit TLS, and bounded, deadline-bound command and
//! reply exchange.
//!
//! Every stage (connect, TLS, AUTH, envelope, data) has one deadline, taken
//! when it starts: a server that trickles bytes cannot stretch it, because
//! the deadline covers the whole stage, not each read. Every reply is framed
//! by [`ReplyReader`] within [`ReplyLimits`]. After the `220` to STARTTLS
//! not one byte may be buffered: anything there was sent (or injected on the
//! path) before the handshake and is refused, never read after it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::capabilities::Capabilities;
use super::redact::Redactor;
use super::reply::{Reply, ReplyLimits, ReplyReader};
use crate::error::{Error, Result, Stage};
use crate::settings::{ServerSettings, TlsMode};

/// How much is read from the socket at once.
const READ_CHUNK: usize = 8 * 1024;

/// Bound on QUIT and on the NOOP that probes an idle pooled connection.
pub(crate) const SHORT_EXCHANGE: Duration = Duration::from_secs(5);

/// This process's instance id: 16 random hex digits, the same for the
/// whole life of the process. `mailgate relay` shows it in its EHLO reply;
/// a connection whose EHLO reply carries it is talking to its own process,
/// and refuses to deliver ([`Error::MailLoop`]) instead of looping the mail.
pub fn instance_id() -> &'static str {
    use std::hash::{BuildHasher as _, Hasher as _};
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        // RandomState is seeded from the OS's randomness.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(now.as_nanos());
        }
        format!("{:016x}", h.finish())
    })
}

/// Whether a greeting line (EHLO or HELO reply) names `id` as a word of
/// its own, bracketed or not.
fn names_instance(line: &str, id: &str) -> bool {
    line.split_ascii_whitespace()
        .any(|w| w.trim_matches(|c| c == '[' || c == ']') == id)
}

/// What every connection to one server shares: where, how, and the secrets
/// to mask in whatever the server says.
pub(crate) struct Peer {
    pub(crate) server: ServerSettings,
    /// `host:port`, for messages.
    pub(crate) address: String,
    /// The EHLO name.
    pub(crate) hello: String,
    pub(crate) limits: ReplyLimits,
    redactor: Mutex<Redactor>,
    /// Built on first use: loading the system roots costs tens of
    /// milliseconds that `check`, `server` and `token` never need.
    tls: OnceCell<Arc<rustls::ClientConfig>>,
    /// What the last connection's EHLO (after TLS) said of SMTPUTF8, so that
    /// a message the server can never take is refused before it is queued.
    smtputf8: Mutex<Option<bool>>,
    /// When a connection was last opened only to learn the above.
    last_probe: Mutex<Option<Instant>>,
}

impl Peer {
    pub(crate) fn new(server: ServerSettings) -> Self {
        Self {
            address: server.address(),
            hello: server.helo_name.clone().unwrap_or_else(default_hello),
            server,
            limits: ReplyLimits::default(),
            redactor: Mutex::new(Redactor::new()),
            tls: OnceCell::new(),
            smtputf8: Mutex::new(None),
            last_probe: Mutex::new(None),
        }
    }

    /// Whether the server offered SMTPUTF8 on the last connection this
    /// process opened; `None` before the first.
    pub(crate) fn offers_smtputf8(&self) -> Option<bool> {
        *lock(&self.smtputf8)
    }

    /// Whether a connection only to learn the server's extensions may be
    /// opened now: at most one per `interval`, so that a server that is down
    /// costs one connect timeout a while, not one per message.
    pub(crate) fn may_probe(&self, interval: Duration) -> bool {
        let mut last = lock(&self.last_probe);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < interval) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Masks `secret` in everything later shown from this server.
    pub(crate) fn protect(&self, secret: &str) {
        lock(&self.redactor).protect(secret);
    }

    /// Server text made fit to show: secrets masked, controls escaped.
    pub(crate) fn clean(&self, text: &str) -> String {
        lock(&self.redactor).clean(text)
    }

    /// The deadline of a stage that starts now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.server.timeout
    }

    pub(crate) fn timeout_error(&self, stage: Stage) -> Error {
        Error::Timeout {
            server: self.address.clone(),
            stage,
            after: self.server.timeout,
        }
    }

    pub(crate) fn smtp_error(&self, stage: Stage, reply: &Reply) -> Error {
        Error::Smtp {
            server: self.address.clone(),
            stage,
            code: reply.code,
            reply: self.clean(&reply.text()),
        }
    }

    fn protocol_error(&self, stage: Stage, reason: impl AsRef<str>) -> Error {
        Error::Protocol {
            server: self.address.clone(),
            stage,
            reason: self.clean(reason.as_ref()),
            source: None,
        }
    }

    /// A [`Self::protocol_error`] caused by `e`, kept as the source.
    fn io_error(&self, stage: Stage, what: &str, e: io::Error) -> Error {
        Error::Protocol {
            server: self.address.clone(),
            stage,
            reason: self.clean(&format!("{what}: {e}")),
            source: Some(e),
        }
    }

    /// System roots plus the configured CA files; the host name is verified.
    async fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        self.tls
            .get_or_try_init(|| async { tls_config(&self.server).map(Arc::new) })
            .await
            .cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one cannot leave a half-built value behind: the
    // redactor's `protect` rebuilds its forms before returning, and the
    // others are plain values.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// This host's name when it is a usable EHLO domain, else an address literal.
pub(crate) fn default_hello() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "[127.0.0.1]".to_owned())
}

fn tls_config(server: &ServerSettings) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for ca in &server.ca_files {
        for cert in &ca.certs {
            // Checked when the settings were loaded.
            let _ = roots.add(cert.clone());
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            server: server.address(),
            reason: e.to_string(),
            source: None,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// What a connection runs on: a TCP socket in use, any byte stream in
/// tests (`tokio::io::duplex`).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The stream, before or after TLS.
enum Stream<IO> {
    Plain(IO),
    Tls(Box<TlsStream<IO>>),
}

impl<IO: Io> AsyncRead for Stream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<IO: Io> AsyncWrite for Stream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open, greeted (and, where configured, encrypted) SMTP connection.
pub(crate) struct Connection<IO = TcpStream> {
    peer: Arc<Peer>,
    stream: Stream<IO>,
    reader: ReplyReader,
    caps: Capabilities,
    encrypted: bool,
    /// Out of step with the server (a reply is owed, bytes were refused, the
    /// stream broke): never reused, never sent another command.
    poisoned: bool,
}

impl Connection {
    /// TCP, TLS as configured, greeting and EHLO (again after STARTTLS).
    pub(crate) async fn open(peer: &Arc<Peer>) -> Result<Connection> {
        let deadline = peer.deadline();
        tracing::debug!(
            "connecting to {} (TLS: {})",
            peer.address,
            peer.server.tls.as_str()
        );
        let tcp = connect_tcp(peer, deadline).await?;
        Connection::over(peer, tcp, deadline).await
    }
}

impl<IO: Io> Connection<IO> {
    /// TLS as configured, greeting and EHLO (again after STARTTLS) on a
    /// stream that is connected already.
    pub(crate) async fn over(peer: &Arc<Peer>, io: IO, deadline: Instant) -> Result<Self> {
        let (stream, encrypted) = if peer.server.tls == TlsMode::Implicit {
            let tls = handshake(peer, io, deadline).await?;
            (Stream::Tls(Box::new(tls)), true)
        } else {
            (Stream::Plain(io), false)
        };
        let mut conn = Connection {
            peer: Arc::clone(peer),
            stream,
            reader: ReplyReader::new(peer.limits),
            caps: Capabilities::default(),
            encrypted,
            poisoned: false,
        };
        let greeting = conn.read_reply(Stage::Connect, deadline).await?;
        tracing::debug!(target: "mailgate::smtp", "S: {}", conn.peer.clean(&greeting.to_string()));
        if greeting.code != 220 {
            conn.poisoned = true;
            return Err(conn.peer.smtp_error(Stage::Connect, &greeting));
        }
        conn.ehlo(Stage::Connect, deadline).await?;
        if peer.server.tls == TlsMode::StartTls {
            conn = conn.starttls().await?;
        }
        // Only the EHLO after TLS counts: the one before could be forged.
        *lock(&peer.smtputf8) = Some(conn.caps.smtputf8());
        Ok(conn)
    }

    /// EHLO, falling back to HELO when the server does not know EHLO.
    async fn ehlo(&mut self, stage: Stage, deadline: Instant) -> Result<()> {
        let hello = self.peer.hello.clone();
        let reply = self
            .command(&format!("EHLO {hello}"), stage, deadline)
            .await?;
        if reply.code == 250 {
            self.refuse_own_instance(&reply)?;
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if matches!(reply.code, 500 | 502) {
            let helo = self
                .command(&format!("HELO {hello}"), stage, deadline)
                .await?;
            if helo.code == 250 {
                self.refuse_own_instance(&helo)?;
                self.caps = Capabilities::default();
                return Ok(());
            }
            return Err(self.peer.smtp_error(stage, &helo));
        }
        Err(self.peer.smtp_error(stage, &reply))
    }

    /// A greeting that names this process's instance id: the server is our
    /// own relay, and delivering there would loop.
    fn refuse_own_instance(&mut self, reply: &Reply) -> Result<()> {
        let id = instance_id();
        if reply.lines.first().is_some_and(|l| names_instance(l, id)) {
            // Not out of step, but never to be used: QUIT is not worth it.
            self.poisoned = true;
            return Err(Error::MailLoop {
                server: self.peer.address.clone(),
                instance: id.to_owned(),
            });
        }
        Ok(())
    }

    async fn starttls(mut self) -> Result<Self> {
        if !self.caps.starttls() {
            let server = self.peer.address.clone();
            self.quit().await;
            return Err(Error::StartTlsUnavailable { server });
        }
        let deadline = self.peer.deadline();
        let reply = self.command("STARTTLS", Stage::Tls, deadline).await?;
        if reply.code != 220 {
            let e = self.peer.smtp_error(Stage::Tls, &reply);
            self.quit().await;
            return Err(e);
        }
        if self.reader.buffered() > 0 {
            // RFC 3207 §6: whatever arrived with the 220 came before TLS, so
            // anyone on the path could have written it.
            return Err(Error::StartTlsInjection {
                server: self.peer.address.clone(),
                bytes: self.reader.buffered(),
            });
        }
        let Stream::Plain(tcp) = self.stream else {
            return Err(self
                .peer
                .protocol_error(Stage::Tls, "STARTTLS on an encrypted connection"));
        };
        let tls = handshake(&self.peer, tcp, deadline).await?;
        let mut conn = Connection {
            peer: self.peer,
            stream: Stream::Tls(Box::new(tls)),
            reader: ReplyReader::new(self.reader.limits()),
            caps: Capabilities::default(),
            encrypted: true,
            poisoned: false,
        };
        conn.ehlo(Stage::Tls, deadline).await?;
        tracing::debug!(target: "mailgate::smtp", "TLS established; capabilities read again");
        Ok(conn)
    }

    /// What the server offered in its last EHLO reply.
    pub(crate) fn caps(&self) -> &Capabilities {
        &self.caps
    }

    pub(crate) fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }

    pub(crate) fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// Whether the connection is out of step and must be dropped.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Marks the connection as unusable (e.g. a transaction was abandoned
    /// after the server said 354).
    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Sends one command line (logged as `shown`) and reads its reply,
    /// whatever the code.
    pub(crate) async fn command(
        &mut self,
        line: &str,
        stage: Stage,
        deadline: Instant,
    ) -> Result<Reply> {
        self.command_shown(line, line, stage, deadline).await
    }

    /// [`Connection::command`], logging `shown` in place of the line.
    pub(crate) async fn command_shown(
        &mut self,
        line: &str,
        shown: &str,
        stage: Stage,
        deadline: Instant,
    ) -> Result<Reply> {
        tracing::debug!(target: "mailgate::smtp", "C: {shown}");
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let written = self.write_all(&bytes, stage, deadline).await;
        zeroize::Zeroize::zeroize(&mut bytes);
        written?;
        let reply = self.read_reply(stage, deadline).await?;
        tracing::debug!(target: "mailgate::smtp", "S: {}", self.peer.clean(&reply.to_string()));
        Ok(reply)
    }

    /// Writes `bytes` (one or more commands, or the message) in one go.
    pub(crate) async fn write_all(
        &mut self,
        bytes: &[u8],
        stage: Stage,
        deadline: Instant,
    ) -> Result<()> {
        if self.poisoned {
            return Err(self
                .peer
                .protocol_error(stage, "the connection is out of step with the server"));
        }
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.poisoned = true;
                Err(self.peer.io_error(stage, "writing to the server failed", e))
            }
            Err(_) => {
                self.poisoned = true;
                Err(self.peer.timeout_error(stage))
            }
        }
    }

    /// Reads the next reply, within the deadline and the reply limits.
    pub(crate) async fn read_reply(&mut self, stage: Stage, deadline: Instant) -> Result<Reply> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match self.reader.next_reply() {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => {
                    self.poisoned = true;
                    return Err(self.peer.protocol_error(stage, e.to_string()));
                }
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match read {
                Ok(Ok(0)) => {
                    self.poisoned = true;
                    return Err(self
                        .peer
                        .protocol_error(stage, "the server closed the connection"));
                }
                Ok(Ok(n)) => self.reader.extend(&chunk[..n]),
                Ok(Err(e)) => {
                    self.poisoned = true;
                    return Err(self
                        .peer
                        .io_error(stage, "reading from the server failed", e));
                }
                Err(_) => {
                    self.poisoned = true;
                    return Err(self.peer.timeout_error(stage));
                }
            }
        }
    }

    /// NOOP within a short bound: whether the server still answers 250.
    pub(crate) async fn probe(&mut self) -> bool {
        let deadline = Instant::now() + self.peer.server.timeout.min(SHORT_EXCHANGE);
        matches!(
            self.command("NOOP", Stage::Other, deadline).await,
            Ok(Reply { code: 250, .. })
        )
    }

    /// RSET: whether the connection is clean for the next transaction.
    pub(crate) async fn reset(&mut self) -> bool {
        let deadline = self.peer.deadline();
        matches!(
            self.command("RSET", Stage::Other, deadline).await,
            Ok(Reply { code: 250, .. })
        )
    }

    /// QUIT within a short bound; an out-of-step connection is only dropped.
    pub(crate) async fn quit(mut self) {
        if self.poisoned {
            return;
        }
        let deadline = Instant::now() + self.peer.server.timeout.min(SHORT_EXCHANGE);
        if self.command("QUIT", Stage::Other, deadline).await.is_err() {
            tracing::debug!("QUIT to {} got no reply", self.peer.address);
        }
    }
}

async fn connect_tcp(peer: &Peer, deadline: Instant) -> Result<TcpStream> {
    let server = &peer.server;
    let lookup = tokio::net::lookup_host((server.host.as_str(), server.port));
    let addrs = match tokio::time::timeout_at(deadline, lookup).await {
        Err(_) => return Err(peer.timeout_error(Stage::Connect)),
        Ok(Err(e)) if is_temporary_dns_failure(&e) => {
            return Err(Error::Connect {
                server: peer.address.clone(),
                reason: format!("looking up `{}` failed: {e}", server.host),
                source: Some(e),
            });
        }
        Ok(Err(e)) => {
            return Err(Error::UnknownHost {
                server: peer.address.clone(),
                host: server.host.clone(),
                reason: e.to_string(),
            });
        }
        Ok(Ok(addrs)) => addrs,
    };
    let mut failures = Vec::new();
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(peer.timeout_error(Stage::Connect)),
            Ok(Ok(tcp)) => {
                // Commands and the message are written whole; Nagle would
                // only hold small writes back for the server's delayed ACK.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e)) => failures.push((addr, e)),
        }
    }
    let reason = match failures.as_slice() {
        [] => format!("`{}` has no address", server.host),
        [(_, e)] => e.to_string(),
        many => many
            .iter()
            .map(|(addr, e)| format!("{addr}: {e}"))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let source = match failures.len() {
        1 => failures.pop().map(|(_, e)| e),
        _ => None,
    };
    Err(Error::Connect {
        server: peer.address.clone(),
        reason,
        source,
    })
}

/// getaddrinfo's EAI_AGAIN: the resolver could not answer now; every other
/// lookup failure means the name does not resolve. std reports only the text.
fn is_temporary_dns_failure(e: &io::Error) -> bool {
    e.to_string()
        .contains("Temporary failure in name resolution")
}

async fn handshake<IO: Io>(peer: &Peer, io: IO, deadline: Instant) -> Result<TlsStream<IO>> {
    let config = peer.tls_config().await?;
    let name = ServerName::try_from(peer.server.host.clone()).map_err(|e| Error::Tls {
        server: peer.address.clone(),
        reason: format!("`{}` is not a name TLS can verify: {e}", peer.server.host),
        source: None,
    })?;
    let connect = TlsConnector::from(config).connect(name, io);
    match tokio::time::timeout_at(deadline, connect).await {
        Err(_) => Err(peer.timeout_error(Stage::Tls)),
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(Error::Tls {
            server: peer.address.clone(),
            reason: peer.clean(&tls_reason(&e)),
            source: Some(e),
        }),
    }
}

/// The rustls error inside tokio-rustls's I/O error, or the I/O error.
fn tls_reason(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_id_is_stable_and_found_only_as_a_word() {
        let id = instance_id();
        assert_eq!(id, instance_id());
        assert_eq!(id.len(), 16);
        assert!(names_instance(
            &format!("relay.example mailgate ready [{id}]"),
            id
        ));
        assert!(names_instance(&format!("relay.example {id}"), id));
        assert!(
            !names_instance("relay.example mailgate ready [0123456789abcdef]", id)
                || id == "0123456789abcdef"
        );
        assert!(!names_instance(&format!("relay.example x{id}"), id));
    }
}
