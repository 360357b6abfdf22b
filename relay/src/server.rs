//! The listener: accepts connections, applies the allow list and the
//! connection limit, runs sessions, shuts down gracefully.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::budget::DataBudget;
use crate::config::{ConfigError, RelayConfig};
use crate::session::{self, SessionContext};
use crate::sink::MessageSink;
use crate::stats::{Counters, RelayStats, bump};

/// Connections waiting for their refusal (`554`/`421`); beyond this many
/// they are closed without a word.
const REFUSAL_QUEUE: usize = 128;

/// How long a refused client gets to take its one-line answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// A bound SMTP listener, not yet serving; see [`RelayServer::run`].
pub struct RelayServer {
    listener: TcpListener,
    handle: RelayHandle,
}

/// A handle on a relay, usable while [`RelayServer::run`] owns the
/// server: reload the settings, read the counters.
#[derive(Clone)]
pub struct RelayHandle {
    shared: Arc<Shared>,
}

struct Shared {
    config: RwLock<Arc<RelayConfig>>,
    /// The memory for message data; replaced when a reload changes its
    /// size (sessions keep the one they started with).
    budget: RwLock<Arc<DataBudget>>,
    counters: Arc<Counters>,
    local_addr: SocketAddr,
    next_id: AtomicU64,
}

impl std::fmt::Debug for RelayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayServer")
            .field("local_addr", &self.handle.shared.local_addr)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle")
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

fn log_warnings(config: &RelayConfig) {
    for warning in config.warnings() {
        tracing::warn!("relay: {warning}");
    }
}

impl RelayServer {
    /// Checks `config` and binds the listening socket. An invalid config
    /// is an error of kind [`io::ErrorKind::InvalidInput`] wrapping the
    /// [`ConfigError`].
    pub async fn bind(addr: SocketAddr, config: RelayConfig) -> io::Result<RelayServer> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        log_warnings(&config);
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        tracing::info!(address = %local_addr, "relay listening");
        Ok(RelayServer {
            listener,
            handle: RelayHandle {
                shared: Arc::new(Shared {
                    budget: RwLock::new(DataBudget::new(config.max_data_memory)),
                    config: RwLock::new(Arc::new(config)),
                    counters: Arc::new(Counters::default()),
                    local_addr,
                    next_id: AtomicU64::new(1),
                }),
            },
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// A handle for reloading and counters while [`run`](Self::run) owns
    /// the server.
    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// See [`RelayHandle::set_config`].
    pub fn set_config(&self, config: RelayConfig) -> Result<(), ConfigError> {
        self.handle.set_config(config)
    }

    /// See [`RelayHandle::stats`].
    pub fn stats(&self) -> RelayStats {
        self.handle.stats()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully:
    ///
    /// - the listener is closed at once (new connections are refused by
    ///   the operating system);
    /// - a session waiting for a command outside a transaction gets
    ///   `421 4.3.2` and is closed at once;
    /// - a session inside a transaction (after MAIL, during DATA, while
    ///   the sink stores) may finish it, for at most `data_timeout` from
    ///   the shutdown, then gets `421 4.3.2`;
    /// - returns when every session has ended.
    ///
    /// Each message is handed to `sink` before the client is answered.
    /// Errors accepting a connection (too many open files, ...) are logged
    /// and retried after a short pause; they do not end the relay.
    pub async fn run(
        self,
        sink: Arc<dyn MessageSink>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let RelayServer { listener, handle } = self;
        let shared = handle.shared;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (refuse_tx, refuse_rx) = mpsc::channel(REFUSAL_QUEUE);
        let refuser = tokio::spawn(refuse_loop(refuse_rx));
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while let Some(done) = sessions.try_join_next() {
                log_join(done);
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = sessions.join_next(), if !sessions.is_empty() => log_join(done),
                accepted = listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::warn!(error = %e, "relay: accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let counters = &shared.counters;
                    bump(&counters.connections);
                    let config = shared.config();
                    if !config.allows(peer.ip()) {
                        bump(&counters.rejected_clients);
                        tracing::info!(client = %peer, "relay: client not in the allow list, refused");
                        let text = format!("554 5.7.1 {} Access denied\r\n", config.hostname);
                        let _ = refuse_tx.try_send((socket, text));
                        continue;
                    }
                    if sessions.len() >= config.max_connections {
                        bump(&counters.busy);
                        tracing::warn!(
                            client = %peer,
                            max_connections = config.max_connections,
                            "relay: too many connections, refused"
                        );
                        let text = format!(
                            "421 4.7.0 {} Too many connections, try again later\r\n",
                            config.hostname
                        );
                        let _ = refuse_tx.try_send((socket, text));
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    let ctx = SessionContext {
                        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
                        client: peer,
                        config,
                        sink: Arc::clone(&sink),
                        counters: Arc::clone(counters),
                        shutdown: shutdown_rx.clone(),
                        budget: shared.budget(),
                    };
                    let active = session::count_active(counters);
                    sessions.spawn(async move {
                        let _active = active;
                        session::run(socket, ctx).await;
                    });
                }
            }
        }
        drop(listener);
        tracing::info!(
            sessions = sessions.len(),
            "relay shutting down: listener closed, waiting for sessions"
        );
        let _ = shutdown_tx.send(true);
        drop(refuse_tx);
        while let Some(done) = sessions.join_next().await {
            log_join(done);
        }
        let _ = refuser.await;
        tracing::info!("relay stopped");
        Ok(())
    }
}

impl RelayHandle {
    /// The address the listener is bound to (fixed for the server's life).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The settings in force.
    pub fn config(&self) -> Arc<RelayConfig> {
        self.shared.config()
    }

    /// Replaces the settings (a reload): sessions that start afterwards
    /// use them; running sessions keep theirs. An invalid config is
    /// refused and the old one stays.
    pub fn set_config(&self, config: RelayConfig) -> Result<(), ConfigError> {
        config.validate()?;
        log_warnings(&config);
        if config.max_data_memory != self.shared.config().max_data_memory {
            *self
                .shared
                .budget
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                DataBudget::new(config.max_data_memory);
        }
        let mut slot = self
            .shared
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(config);
        tracing::info!("relay settings reloaded");
        Ok(())
    }

    /// The counters, now.
    pub fn stats(&self) -> RelayStats {
        self.shared.counters.snapshot()
    }
}

impl Shared {
    fn budget(&self) -> Arc<DataBudget> {
        Arc::clone(
            &self
                .budget
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn config(&self) -> Arc<RelayConfig> {
        Arc::clone(
            &self
                .config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "relay session panicked");
    }
}

/// Answers refused connections one after the other: one line, then close.
async fn refuse_loop(mut queue: mpsc::Receiver<(TcpStream, String)>) {
    while let Some((mut socket, text)) = queue.recv().await {
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
            socket.write_all(text.as_bytes()).await?;
            socket.shutdown().await
        })
        .await;
    }
}

/// Serves one SMTP session on an already accepted connection (a stream
/// from another listener, socket activation, or a test), with `config`,
/// storing into `sink`; returns when the session ends.
///
/// The allow list is applied to `client` (`554 5.7.1` and close when it
/// is not allowed). There is no connection limit and no shutdown signal
/// here: drop the future to abort the session. The memory budget
/// (`max_data_memory`) is this connection's own.
pub async fn serve_connection<IO>(
    mut io: IO,
    client: SocketAddr,
    config: Arc<RelayConfig>,
    sink: Arc<dyn MessageSink>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if !config.allows(client.ip()) {
        let text = format!("554 5.7.1 {} Access denied\r\n", config.hostname);
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
            io.write_all(text.as_bytes()).await?;
            io.shutdown().await
        })
        .await;
        return;
    }
    // Kept alive for the whole session: the session never sees a shutdown.
    let (_shutdown_tx, shutdown_rx) = watch::channel(false);
    let counters = Arc::new(Counters::default());
    let _active = session::count_active(&counters);
    let ctx = SessionContext {
        id: 0,
        client,
        budget: DataBudget::new(config.max_data_memory),
        config,
        sink,
        counters,
        shutdown: shutdown_rx,
    };
    session::run(io, ctx).await;
}
