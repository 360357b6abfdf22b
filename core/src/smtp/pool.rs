//! The pool of authenticated connections behind a `Mailer`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::address::Envelope;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::connection::{Connection, Peer};
use super::transaction::{self, RecipientPolicy, WireMessage};
use crate::error::{Error, RecipientRefusal, Result, Stage};
use crate::settings::{ServerSettings, TlsMode};
use crate::strategy::{SharedStrategy, SmtpSession};
use crate::transport::{MailTransport, Payload};

/// The connection pool's time limits. The defaults suit public submission
/// servers, which drop an idle client after a minute or so; a server that
/// drops idle clients sooner wants a shorter `max_idle_age`
/// ([`MailerBuilder::pool`](crate::MailerBuilder::pool)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Idle connections older than this are not reused (default 60 s).
    pub max_idle_age: Duration,
    /// A pooled connection idle longer than this is probed with NOOP before
    /// reuse; a fresher one is used at once (if the server closed it anyway,
    /// MAIL fails before anything is accepted and the message goes out on a
    /// new connection). Default 5 s.
    pub probe_after_idle: Duration,
    /// At most one connection per this interval only to learn the server's
    /// extensions (default 60 s).
    pub capability_probe_interval: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_idle_age: Duration::from_secs(60),
            probe_after_idle: Duration::from_secs(5),
            capability_probe_interval: Duration::from_secs(60),
        }
    }
}

impl PoolConfig {
    /// Sets [`PoolConfig::max_idle_age`].
    pub fn max_idle_age(mut self, age: Duration) -> Self {
        self.max_idle_age = age;
        self
    }

    /// Sets [`PoolConfig::probe_after_idle`].
    pub fn probe_after_idle(mut self, idle: Duration) -> Self {
        self.probe_after_idle = idle;
        self
    }

    /// Sets [`PoolConfig::capability_probe_interval`].
    pub fn capability_probe_interval(mut self, interval: Duration) -> Self {
        self.capability_probe_interval = interval;
        self
    }
}

/// What happened on a successful delivery: the server took the message for
/// the [`accepted`](Delivery::accepted) recipients. Recipients it refused at
/// RCPT are in [`refused`](Delivery::refused) (see
/// [`Delivery::refusal`]); with
/// [`MailerBuilder::all_or_nothing`](crate::MailerBuilder::all_or_nothing)
/// a refusal is an error instead and this list is always empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The server's reply to the end of DATA (usually a queue id), cleaned for display.
    pub reply: String,
    /// Whether a pooled connection was reused.
    pub reused_connection: bool,
    /// The Message-ID of the message sent, when it has one.
    pub message_id: Option<String>,
    /// How many distinct recipients the server accepted.
    pub recipients: usize,
    /// The envelope's recipients the server accepted, as given.
    pub accepted: Vec<String>,
    /// The envelope's recipients the server refused, with its replies; they
    /// did not get the message.
    pub refused: Vec<RecipientRefusal>,
    /// The server, host:port.
    pub server: String,
}

impl Delivery {
    /// Whether every recipient got the message.
    pub fn is_complete(&self) -> bool {
        self.refused.is_empty()
    }

    /// The refused recipients as an error ([`Error::PartlyDelivered`],
    /// classified like a refusal at RCPT), `None` when all were accepted.
    pub fn refusal(&self) -> Option<Error> {
        (!self.refused.is_empty()).then(|| Error::PartlyDelivered {
            server: self.server.clone(),
            total: self.accepted.len() + self.refused.len(),
            refused: self.refused.clone(),
        })
    }
}

/// What `check --connect` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectReport {
    /// host:port
    pub server: String,
    /// The server's EHLO name, cleaned for display.
    pub server_name: String,
    /// Whether the session was encrypted.
    pub encrypted: bool,
    /// The strategy that authenticated.
    pub strategy: String,
    /// The extensions the server offered (after TLS), upper-cased.
    pub extensions: Vec<String>,
    /// Time from connect to authenticated.
    pub elapsed: Duration,
}

struct Idle {
    conn: Connection,
    since: Instant,
}

pub(crate) struct SmtpTransport {
    peer: Arc<Peer>,
    strategy: SharedStrategy,
    strategy_name: String,
    idle: Mutex<Vec<Idle>>,
    /// Bounds simultaneous connections; as many are kept idle. Closed by `close`.
    permits: Semaphore,
    max_connections: usize,
    limits: PoolConfig,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("server", &self.peer.address)
            .field("strategy", &self.strategy_name)
            .field("max_connections", &self.max_connections)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl SmtpTransport {
    pub(crate) fn new(
        server: ServerSettings,
        strategy: SharedStrategy,
        strategy_name: String,
        max_connections: usize,
        limits: PoolConfig,
    ) -> Result<Self> {
        // Refuse at build time what every connection would refuse, so `check` says so.
        if strategy.get().sends_credentials()
            && server.tls == TlsMode::None
            && !server.allow_plaintext_auth
        {
            return Err(Error::PlaintextAuth {
                strategy: strategy_name,
                server: server.address(),
            });
        }
        let max_connections = max_connections.max(1);
        Ok(Self {
            peer: Arc::new(Peer::new(server)),
            strategy,
            strategy_name,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max_connections),
            max_connections,
            limits,
        })
    }

    /// Sends one message, reusing a pooled connection when one is alive.
    pub(crate) async fn send(
        &self,
        envelope: &Envelope,
        payload: Payload<'_>,
        policy: RecipientPolicy,
    ) -> Result<Delivery> {
        let _permit = self.permit().await?;
        let (mut conn, reused) = self.checkout().await?;
        // Encoded once; a composed message's bytes are dropped right after.
        // Made to fit this server (8-bit, long lines, UTF-8 headers).
        let message = match payload {
            Payload::Ready(bytes) => WireMessage::for_server(bytes, conn.caps()),
            Payload::Exact(bytes) => Ok(WireMessage::exact(bytes)),
            Payload::Compose(build) => build(conn.caps().eight_bit_mime())
                .and_then(|bytes| WireMessage::for_server(&bytes, conn.caps())),
        };
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                self.checkin(conn);
                return Err(e);
            }
        };
        let message = &message;
        let message_id = message.message_id.clone();
        let delivered = |sent: transaction::Sent, reused_connection| Delivery {
            reply: sent.reply,
            reused_connection,
            message_id: message_id.clone(),
            recipients: sent.recipients,
            accepted: sent.accepted,
            refused: sent.refused,
            server: self.peer.address.clone(),
        };
        match transaction::send(&mut conn, envelope, message, policy).await {
            Ok(sent) => {
                self.checkin(conn);
                Ok(delivered(sent, reused))
            }
            // The server closed a pooled connection (or is closing it: 421) before
            // MAIL: nothing was accepted yet, so a fresh connection is safe and
            // invisible to the caller.
            Err(e) if reused && stale_connection(&e) => {
                tracing::debug!(
                    "pooled connection to {} is gone ({e}); reconnecting",
                    self.peer.address
                );
                drop(conn);
                let mut conn = self.open().await?;
                let result = transaction::send(&mut conn, envelope, message, policy).await;
                self.finish(conn, result)
                    .await
                    .map(|sent| delivered(sent, false))
            }
            Err(e) => {
                self.recover(conn, &e).await;
                Err(e)
            }
        }
    }

    async fn finish(
        &self,
        conn: Connection,
        result: Result<transaction::Sent>,
    ) -> Result<transaction::Sent> {
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
    async fn recover(&self, mut conn: Connection, e: &Error) {
        if !conn.is_poisoned() && in_sync(e) && conn.reset().await {
            self.checkin(conn);
        }
    }

    /// Connects, negotiates TLS, authenticates and quits without sending.
    pub(crate) async fn check(&self) -> Result<ConnectReport> {
        let start = std::time::Instant::now();
        let conn = self.open().await?;
        let report = ConnectReport {
            server: self.peer.address.clone(),
            server_name: self.peer.clean(conn.caps().domain()),
            encrypted: conn.is_encrypted(),
            strategy: self.strategy_name.clone(),
            extensions: conn.caps().keywords().map(|k| self.peer.clean(k)).collect(),
            elapsed: start.elapsed(),
        };
        conn.quit().await;
        Ok(report)
    }

    /// Whether the server takes SMTPUTF8: what the last connection saw, else
    /// what one EHLO now says (not authenticated; at most one such probe a
    /// minute). `None` when that is not known (the server is unreachable).
    pub(crate) async fn offers_smtputf8(&self) -> Option<bool> {
        if let Some(known) = self.peer.offers_smtputf8() {
            return Some(known);
        }
        if !self.peer.may_probe(self.limits.capability_probe_interval) {
            return None;
        }
        match Connection::open(&self.peer).await {
            Ok(conn) => {
                conn.quit().await;
                self.peer.offers_smtputf8()
            }
            Err(e) => {
                tracing::debug!(
                    "could not learn whether {} offers SMTPUTF8: {e}",
                    self.peer.address
                );
                None
            }
        }
    }

    /// What [`SmtpTransport::offers_smtputf8`] knows without connecting.
    pub(crate) fn known_smtputf8(&self) -> Option<bool> {
        self.peer.offers_smtputf8()
    }

    /// Quits every idle connection; later sends fail with a usage error.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for Idle { conn, .. } in idle {
            conn.quit().await;
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
    async fn checkout(&self) -> Result<(Connection, bool)> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(Idle { mut conn, since }) = idle else {
                return Ok((self.open().await?, false));
            };
            let age = since.elapsed();
            let alive = age < self.limits.max_idle_age
                && (age < self.limits.probe_after_idle || conn.probe().await);
            if alive {
                tracing::debug!("reusing pooled connection to {}", self.peer.address);
                return Ok((conn, true));
            }
            tracing::debug!(
                "pooled connection to {} is gone; dropping it",
                self.peer.address
            );
        }
    }

    fn checkin(&self, conn: Connection) {
        if conn.is_poisoned() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_connections && !self.permits.is_closed() {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// A new, authenticated connection. A strategy's refusal that asks for a
    /// retry gets exactly one more attempt on a new connection.
    async fn open(&self) -> Result<Connection> {
        let credential = self.strategy.get().prepare().await?;
        let mut conn = Connection::open(&self.peer).await?;
        match self.authenticate(&mut conn, credential).await {
            Ok(()) => Ok(conn),
            Err(Error::AuthRefused {
                retry_on_new_connection: true,
                reply,
                ..
            }) => {
                tracing::info!(
                    "{} refused authentication ({reply}); retrying once on a new connection",
                    self.peer.address
                );
                conn.quit().await;
                let credential = self.strategy.get().prepare().await?;
                let mut conn = Connection::open(&self.peer).await?;
                match self.authenticate(&mut conn, credential).await {
                    Ok(()) => Ok(conn),
                    Err(e) => {
                        conn.quit().await;
                        Err(final_refusal(e))
                    }
                }
            }
            Err(e) => {
                conn.quit().await;
                Err(e)
            }
        }
    }

    async fn authenticate(
        &self,
        conn: &mut Connection,
        credential: Box<dyn std::any::Any + Send>,
    ) -> Result<()> {
        let strategy = self.strategy.get();
        if strategy.sends_credentials()
            && !conn.is_encrypted()
            && !self.peer.server.allow_plaintext_auth
        {
            return Err(Error::PlaintextAuth {
                strategy: self.strategy_name.clone(),
                server: self.peer.address.clone(),
            });
        }
        let mut session = SmtpSession::new(conn);
        strategy.authenticate(&mut session, credential).await
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

/// mailgate's SMTP client as the mailer's transport.
#[async_trait::async_trait]
impl MailTransport for SmtpTransport {
    fn name(&self) -> &str {
        "smtp"
    }

    fn destination(&self) -> String {
        self.peer.address.clone()
    }

    async fn deliver(
        &self,
        envelope: &Envelope,
        message: Payload<'_>,
        policy: RecipientPolicy,
    ) -> Result<Delivery> {
        self.send(envelope, message, policy).await
    }

    fn max_parallel(&self) -> usize {
        self.max_connections
    }

    async fn takes_utf8_local_parts(&self) -> Option<bool> {
        self.offers_smtputf8().await
    }

    fn known_utf8_local_parts(&self) -> Option<bool> {
        self.known_smtputf8()
    }

    async fn check(&self) -> Result<ConnectReport> {
        SmtpTransport::check(self).await
    }

    async fn close(&self) {
        SmtpTransport::close(self).await;
    }
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
