//! The SMTP client: connect, TLS, authenticate through the strategy, pool
//! connections, and speak MAIL/RCPT/DATA with every reply bounded by the timeout.
//!
//! lettre supplies the connection and the command codecs; the conversation is
//! driven here so that each step is logged (never a payload) and timed, and so
//! that authentication belongs to the strategy rather than to credentials fixed
//! into a lettre transport.

use std::error::Error as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

use crate::error::{ConfigError, Error, Origin, Result, Stage};
use crate::settings::{ServerSettings, TlsMode, keys};
use crate::strategy::{AuthStrategy, SmtpSession, error_text};

/// Idle connections older than this are not reused (servers drop idle clients).
const MAX_IDLE_AGE: Duration = Duration::from_secs(60);
/// A pooled connection idle longer than this is probed with NOOP before reuse;
/// a fresher one is used at once (if the server closed it anyway, MAIL fails
/// before anything is accepted and the message goes out on a new connection).
const PROBE_AFTER_IDLE: Duration = Duration::from_secs(5);
/// Bound on that probe, so a dead pool costs seconds, not the full timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What happened on a successful delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The server's reply to the end of DATA (usually a queue id).
    pub reply: String,
    /// Whether a pooled connection was reused.
    pub reused_connection: bool,
}

/// What `check --connect` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectReport {
    /// host:port
    pub server: String,
    /// The server's EHLO name.
    pub server_name: String,
    /// Whether the session was encrypted.
    pub encrypted: bool,
    /// The strategy that authenticated.
    pub strategy: String,
    /// Time from connect to authenticated.
    pub elapsed: Duration,
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

pub(crate) struct Transport {
    server: ServerSettings,
    address: String,
    /// Built on first use: loading the system roots costs tens of milliseconds
    /// that `check`, `server` and `token` never need.
    tls: OnceCell<TlsParameters>,
    hello: ClientId,
    strategy: Arc<dyn AuthStrategy>,
    strategy_name: String,
    idle: Mutex<Vec<Idle>>,
    /// Bounds simultaneous connections; as many are kept idle. Closed by `close`.
    permits: Semaphore,
    max_connections: usize,
}

impl Transport {
    pub(crate) fn new(
        server: ServerSettings,
        strategy: Arc<dyn AuthStrategy>,
        strategy_name: String,
        max_connections: usize,
    ) -> Result<Self> {
        // Refuse at build time what every connection would refuse, so `check` says so.
        if strategy.sends_credentials()
            && server.tls == TlsMode::None
            && !server.allow_plaintext_auth
        {
            return Err(Error::PlaintextAuth {
                strategy: strategy_name,
                server: server.address(),
            });
        }
        let max_connections = max_connections.max(1);
        let hello = match &server.helo_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        Ok(Self {
            address: server.address(),
            server,
            tls: OnceCell::new(),
            hello,
            strategy,
            strategy_name,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max_connections),
            max_connections,
        })
    }

    pub(crate) fn strategy(&self) -> &Arc<dyn AuthStrategy> {
        &self.strategy
    }

    /// Sends one message, reusing a pooled connection when one is alive.
    pub(crate) async fn send(&self, envelope: &Envelope, body: &[u8]) -> Result<Delivery> {
        let _permit = self.permit().await?;
        let (mut conn, reused) = self.checkout().await?;
        match self.transaction(&mut conn, envelope, body).await {
            Ok(reply) => {
                self.checkin(conn);
                Ok(Delivery {
                    reply,
                    reused_connection: reused,
                })
            }
            // The server closed a pooled connection (or is closing it: 421) before
            // MAIL: nothing was accepted yet, so a fresh connection is safe and
            // invisible to the caller.
            Err(e) if reused && stale_connection(&e) => {
                tracing::debug!(
                    "pooled connection to {} is gone ({e}); reconnecting",
                    self.address
                );
                drop(conn);
                let mut conn = self.open().await?;
                let reply = self.transaction(&mut conn, envelope, body).await;
                self.finish(conn, reply).await.map(|reply| Delivery {
                    reply,
                    reused_connection: false,
                })
            }
            Err(e) => {
                self.recover(conn, &e).await;
                Err(e)
            }
        }
    }

    async fn finish(&self, conn: AsyncSmtpConnection, result: Result<String>) -> Result<String> {
        match result {
            Ok(reply) => {
                self.checkin(conn);
                Ok(reply)
            }
            Err(e) => {
                self.recover(conn, &e).await;
                Err(e)
            }
        }
    }

    /// After a failed transaction: a connection still in step is reset (RSET)
    /// and pooled again; any other is dropped.
    async fn recover(&self, mut conn: AsyncSmtpConnection, e: &Error) {
        if in_sync(e) && self.command(&mut conn, Stage::Other, Rset).await.is_ok() {
            self.checkin(conn);
        } else {
            drop(conn);
        }
    }

    /// Ends a connection after a failure. lettre's `abort` sends QUIT and
    /// waits for the reply without a bound of its own: when the stream is out
    /// of step (a reply is still owed after a timeout, or it broke) the
    /// connection is only dropped; otherwise QUIT gets the usual timeout.
    async fn abort(&self, mut conn: AsyncSmtpConnection, in_sync: bool) {
        if !in_sync {
            drop(conn);
            return;
        }
        if tokio::time::timeout(self.server.timeout, conn.abort())
            .await
            .is_err()
        {
            tracing::debug!("QUIT to {} timed out", self.address);
        }
    }

    /// Connects, negotiates TLS, authenticates and quits without sending.
    pub(crate) async fn check(&self) -> Result<ConnectReport> {
        let start = Instant::now();
        let conn = self.open().await?;
        let report = ConnectReport {
            server: self.address.clone(),
            server_name: conn.server_info().name().to_owned(),
            encrypted: conn.is_encrypted(),
            strategy: self.strategy_name.clone(),
            elapsed: start.elapsed(),
        };
        self.quit(conn).await;
        Ok(report)
    }

    /// Quits every idle connection; later sends fail with a usage error.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        for Idle { conn, .. } in idle {
            self.quit(conn).await;
        }
    }

    async fn quit(&self, mut conn: AsyncSmtpConnection) {
        tracing::debug!(target: "mailgate::smtp", "C: QUIT");
        if tokio::time::timeout(self.server.timeout, conn.quit())
            .await
            .is_err()
        {
            tracing::debug!("QUIT to {} timed out", self.address);
        }
    }

    async fn permit(&self) -> Result<SemaphorePermit<'_>> {
        self.permits
            .acquire()
            .await
            .map_err(|_| Error::Usage("the mailer is closed".into()))
    }

    /// A pooled connection (probed with NOOP when it has been idle a while),
    /// else a new one.
    async fn checkout(&self) -> Result<(AsyncSmtpConnection, bool)> {
        loop {
            let idle = self.idle.lock().expect("pool lock").pop();
            let Some(Idle { mut conn, since }) = idle else {
                return Ok((self.open().await?, false));
            };
            let age = since.elapsed();
            let alive = age < MAX_IDLE_AGE
                && (age < PROBE_AFTER_IDLE
                    || tokio::time::timeout(
                        self.server.timeout.min(PROBE_TIMEOUT),
                        conn.test_connected(),
                    )
                    .await
                    .unwrap_or(false));
            if alive {
                tracing::debug!("reusing pooled connection to {}", self.address);
                return Ok((conn, true));
            }
            tracing::debug!("pooled connection to {} is gone; dropping it", self.address);
            drop(conn);
        }
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < self.max_connections && !self.permits.is_closed() {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// A new, authenticated connection. A strategy's refusal that asks for a
    /// retry gets exactly one more attempt on a new connection.
    async fn open(&self) -> Result<AsyncSmtpConnection> {
        self.strategy.prepare().await?;
        let mut conn = self.connect().await?;
        match self.authenticate(&mut conn).await {
            Ok(()) => Ok(conn),
            Err(Error::AuthRefused {
                retry_on_new_connection: true,
                reply,
                ..
            }) => {
                tracing::info!(
                    "{} refused authentication ({reply}); retrying once on a new connection",
                    self.address
                );
                self.abort(conn, true).await;
                self.strategy.prepare().await?;
                let mut conn = self.connect().await?;
                match self.authenticate(&mut conn).await {
                    Ok(()) => Ok(conn),
                    Err(e) => {
                        self.abort(conn, in_sync(&e)).await;
                        Err(final_refusal(e))
                    }
                }
            }
            Err(e) => {
                self.abort(conn, in_sync(&e)).await;
                Err(e)
            }
        }
    }

    async fn authenticate(&self, conn: &mut AsyncSmtpConnection) -> Result<()> {
        if self.strategy.sends_credentials()
            && !conn.is_encrypted()
            && !self.server.allow_plaintext_auth
        {
            return Err(Error::PlaintextAuth {
                strategy: self.strategy_name.clone(),
                server: self.address.clone(),
            });
        }
        let mut session = SmtpSession::new(conn, &self.address, self.server.timeout, &self.hello);
        self.strategy.authenticate(&mut session).await
    }

    /// TCP, greeting, EHLO, and TLS as configured.
    async fn connect(&self) -> Result<AsyncSmtpConnection> {
        let implicit = match self.server.tls {
            TlsMode::Implicit => Some(self.tls().await?),
            _ => None,
        };
        tracing::debug!(
            "connecting to {} (TLS: {})",
            self.address,
            self.server.tls.as_str()
        );
        let stage = if implicit.is_some() {
            Stage::Tls
        } else {
            Stage::Connect
        };
        let mut conn = self
            .timed(
                stage,
                AsyncSmtpConnection::connect_tokio1(
                    (self.server.host.as_str(), self.server.port),
                    Some(self.server.timeout),
                    &self.hello,
                    implicit,
                    None,
                ),
            )
            .await?
            .map_err(|e| self.connect_error(e))?;
        tracing::debug!(target: "mailgate::smtp", "S: {}", conn.server_info());
        if self.server.tls == TlsMode::StartTls {
            if !conn.can_starttls() {
                self.quit(conn).await;
                return Err(Error::StartTlsUnavailable {
                    server: self.address.clone(),
                });
            }
            tracing::debug!(target: "mailgate::smtp", "C: STARTTLS");
            let tls = self.tls().await?;
            let upgraded = self
                .timed(Stage::Tls, conn.starttls(tls, &self.hello))
                .await?;
            if let Err(e) = upgraded {
                // After a failed handshake lettre's stream is gone: writing QUIT
                // would panic inside lettre, so the connection is only dropped.
                drop(conn);
                return Err(match e.status() {
                    Some(code) => Error::Smtp {
                        server: self.address.clone(),
                        stage: Stage::Tls,
                        code: code.into(),
                        reply: error_text(&e),
                    },
                    None => Error::Tls {
                        server: self.address.clone(),
                        reason: chain(&e),
                    },
                });
            }
            tracing::debug!(target: "mailgate::smtp", "S: {} (after STARTTLS)", conn.server_info());
        }
        Ok(conn)
    }

    /// System roots plus the configured CA files, built once.
    async fn tls(&self) -> Result<TlsParameters> {
        self.tls
            .get_or_try_init(|| async { tls_parameters(&self.server) })
            .await
            .cloned()
    }

    fn connect_error(&self, e: lettre::transport::smtp::Error) -> Error {
        if let Some(code) = e.status() {
            return Error::Smtp {
                server: self.address.clone(),
                stage: Stage::Connect,
                code: code.into(),
                reply: error_text(&e),
            };
        }
        if self.server.tls == TlsMode::Implicit && is_tls_failure(&e) {
            return Error::Tls {
                server: self.address.clone(),
                reason: chain(&e),
            };
        }
        // The TCP connection stood but the greeting or EHLO broke off: a
        // broken conversation (75), not an unreachable server (69). lettre
        // tells "network error" apart from "Connection error" only in text.
        if e.is_response() || e.to_string().starts_with("network error") {
            return Error::Protocol {
                server: self.address.clone(),
                stage: Stage::Connect,
                reason: chain(&e),
            };
        }
        Error::Connect {
            server: self.address.clone(),
            reason: chain(&e),
        }
    }

    /// MAIL, RCPT, DATA and the message; returns the final reply's text.
    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<String> {
        let mut params = Vec::new();
        if envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !a.to_string().is_ascii())
        {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(Error::invalid_message(
                    "address",
                    "it has non-ASCII characters but the server does not support SMTPUTF8",
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.command(
            conn,
            Stage::Mail,
            Mail::new(envelope.from().cloned(), params),
        )
        .await?;
        for to in envelope.to() {
            self.command(conn, Stage::Rcpt, Rcpt::new(to.clone(), vec![]))
                .await?;
        }
        self.command(conn, Stage::Data, Data).await?;
        tracing::debug!(target: "mailgate::smtp", "C: <message, {} bytes>", body.len());
        // One write for body and terminator: lettre's `message` writes them
        // apart, and on a connection without TCP_NODELAY the small second write
        // waits for the server's delayed ACK (about 40 ms per message).
        let sent = match std::str::from_utf8(body) {
            Ok(text) => {
                self.timed(Stage::Data, conn.command(DataPayload(text)))
                    .await?
            }
            Err(_) => self.timed(Stage::Data, conn.message(body)).await?,
        };
        let response = sent.map_err(|e| self.command_error(Stage::Data, e))?;
        let reply = response.message().collect::<Vec<_>>().join(" ");
        tracing::debug!(target: "mailgate::smtp", "S: {} {reply}", response.code());
        Ok(reply)
    }

    async fn command<C: std::fmt::Display>(
        &self,
        conn: &mut AsyncSmtpConnection,
        stage: Stage,
        command: C,
    ) -> Result<Response> {
        let line = command.to_string();
        tracing::debug!(target: "mailgate::smtp", "C: {}", line.trim_end());
        let response = self
            .timed(stage, conn.command(line))
            .await?
            .map_err(|e| self.command_error(stage, e))?;
        tracing::debug!(
            target: "mailgate::smtp",
            "S: {} {}",
            response.code(),
            response.message().collect::<Vec<_>>().join(" ")
        );
        Ok(response)
    }

    fn command_error(&self, stage: Stage, e: lettre::transport::smtp::Error) -> Error {
        match e.status() {
            Some(code) => {
                tracing::debug!(target: "mailgate::smtp", "S: {code} {}", error_text(&e));
                Error::Smtp {
                    server: self.address.clone(),
                    stage,
                    code: code.into(),
                    reply: error_text(&e),
                }
            }
            None => Error::Protocol {
                server: self.address.clone(),
                stage,
                reason: chain(&e),
            },
        }
    }

    async fn timed<T>(&self, stage: Stage, fut: impl Future<Output = T>) -> Result<T> {
        tokio::time::timeout(self.server.timeout, fut)
            .await
            .map_err(|_| Error::Timeout {
                server: self.address.clone(),
                stage,
                after: self.server.timeout,
            })
    }
}

/// A message body, dot-stuffed (RFC 5321 4.5.2) and followed by the
/// end-of-data line, as one `Display` so lettre writes it at once.
struct DataPayload<'a>(&'a str);

impl std::fmt::Display for DataPayload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Lines end with CRLF; a line that starts with '.' gets one more.
        let mut rest = self.0;
        if rest.starts_with('.') {
            f.write_str(".")?;
        }
        while let Some(i) = rest.find("\r\n.") {
            f.write_str(&rest[..i + 2])?;
            f.write_str(".")?;
            rest = &rest[i + 2..];
        }
        f.write_str(rest)?;
        f.write_str("\r\n.\r\n")
    }
}

/// Whether the connection is still in step with the server after `e`: no
/// reply is owed, the stream works and the server is not closing it (421).
fn in_sync(e: &Error) -> bool {
    !matches!(
        e,
        Error::Timeout { .. } | Error::Protocol { .. } | Error::Smtp { code: 421, .. }
    )
}

/// A pooled connection the server has dropped or is dropping, seen at MAIL.
fn stale_connection(e: &Error) -> bool {
    matches!(
        e,
        Error::Protocol {
            stage: Stage::Mail,
            ..
        } | Error::Smtp {
            stage: Stage::Mail,
            code: 421,
            ..
        }
    )
}

/// A second refusal is final, whatever the strategy asked for.
fn final_refusal(e: Error) -> Error {
    match e {
        Error::AuthRefused {
            strategy,
            server,
            reply,
            ..
        } => Error::AuthRefused {
            strategy,
            server,
            reply,
            retry_on_new_connection: false,
        },
        other => other,
    }
}

/// System roots plus the configured CA files; the host name is verified.
fn tls_parameters(server: &ServerSettings) -> Result<TlsParameters> {
    let mut builder = TlsParameters::builder(server.host.clone());
    for ca in &server.ca_files {
        let cert = Certificate::from_pem(&ca.pem).map_err(|e| ConfigError::CaFile {
            path: ca.path.clone(),
            origin: ca.origin.clone(),
            reason: e.to_string(),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| {
        ConfigError::Invalid {
            key: keys::SERVER_HOSTNAME.to_owned(),
            origin: Origin::Builder,
            value: Some(server.host.clone()),
            expected: format!("a name TLS can verify ({e})"),
        }
        .into()
    })
}

/// tokio-rustls reports handshake failures as `InvalidData` I/O errors.
fn is_tls_failure(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::DataPayload;

    #[test]
    fn data_payload_stuffs_dots_at_line_starts_only() {
        let cases = [
            ("a\r\nb", "a\r\nb\r\n.\r\n"),
            (".x\r\n.\r\ny.z\r\n..", "..x\r\n..\r\ny.z\r\n...\r\n.\r\n"),
            ("a\n.b", "a\n.b\r\n.\r\n"),
            ("", "\r\n.\r\n"),
        ];
        for (body, wire) in cases {
            assert_eq!(DataPayload(body).to_string(), wire, "{body:?}");
        }
    }
}
