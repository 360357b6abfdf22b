//! A TCP proxy that adds latency, for benchmarks: what a client gains from
//! pipelining or from reusing connections only shows when a round trip
//! costs time, and loopback round trips cost almost none.

use std::fmt;
use std::future::pending;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::shared::lock;

/// Client-to-upstream bytes recorded per connection; the rest is forwarded
/// but not kept.
pub const RECORD_LIMIT: usize = 1024 * 1024;

/// Largest single read.
const READ_SIZE: usize = 64 * 1024;

/// Bytes read but not yet written, per direction. Bounds memory, not
/// bandwidth: 16 MiB per one-way delay is 1.6 GB/s at 10 ms.
const IN_FLIGHT: usize = 16 * 1024 * 1024;

/// One read from a client, as forwarded upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyChunk {
    /// The connection (1 for the first one the proxy accepted).
    pub connection: u64,
    /// The bytes of that read.
    pub bytes: Vec<u8>,
}

struct ProxyState {
    connections: AtomicU64,
    client_chunks: Mutex<Vec<ProxyChunk>>,
}

/// A TCP proxy on 127.0.0.1 that forwards each connection to an upstream
/// server with a fixed one-way delay in each direction: every chunk read
/// from one side is written to the other `one_way` after it was read, in
/// order, however many chunks are on their way (a pipe with latency, not a
/// bandwidth limit). A request and its answer thus take `2 × one_way` more
/// than they would directly. Setting up a connection is not delayed: the
/// upstream server's first bytes (an SMTP greeting) reach the client
/// `one_way` after it sent them. TCP_NODELAY is set on both sides. An end
/// of stream is passed on with the same delay.
///
/// It records what clients send ([`DelayProxy::client_chunks`]), one chunk
/// per read, so a test can see whether a client pipelined (MAIL, RCPT and
/// DATA in one chunk). Dropping it stops it and closes every connection.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use mailgate_devserver::{DelayProxy, DevSmtpServer};
/// use std::time::Duration;
/// let server = DevSmtpServer::builder().start().await?;
/// // 20 ms round trips, like a server in another region.
/// let proxy = DelayProxy::start(server.addr(), Duration::from_millis(10)).await?;
/// // point the client at proxy.port() ...
/// let first = proxy.client_chunks_on(1);
/// # Ok(()) }
/// ```
pub struct DelayProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    one_way: Duration,
    state: Arc<ProxyState>,
    shutdown: Option<watch::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for DelayProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("one_way", &self.one_way)
            .finish_non_exhaustive()
    }
}

impl DelayProxy {
    /// Binds 127.0.0.1 on an ephemeral port and forwards every connection
    /// to `upstream`, `one_way` late in each direction. Needs a tokio
    /// runtime.
    pub async fn start(upstream: SocketAddr, one_way: Duration) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProxyState {
            connections: AtomicU64::new(0),
            client_chunks: Mutex::new(Vec::new()),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            one_way,
            Arc::clone(&state),
            shutdown_rx,
        ));
        tracing::debug!(%addr, %upstream, ?one_way, "delay proxy listening");
        Ok(DelayProxy {
            addr,
            upstream,
            one_way,
            state,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The delay added in each direction.
    pub fn one_way(&self) -> Duration {
        self.one_way
    }

    /// How many connections were accepted.
    pub fn connection_count(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// What clients sent, one entry per read, in the order read (the
    /// chunks of different connections interleaved), at most the first
    /// [`RECORD_LIMIT`] bytes of each connection.
    pub fn client_chunks(&self) -> Vec<ProxyChunk> {
        lock(&self.state.client_chunks).clone()
    }

    /// What the client of one connection (1 for the first) sent, one entry
    /// per read.
    pub fn client_chunks_on(&self, connection: u64) -> Vec<Vec<u8>> {
        lock(&self.state.client_chunks)
            .iter()
            .filter(|c| c.connection == connection)
            .map(|c| c.bytes.clone())
            .collect()
    }

    /// Forgets the recorded chunks (not the connection count).
    pub fn clear(&self) {
        lock(&self.state.client_chunks).clear();
    }

    /// Stops accepting, closes every forwarded connection and waits until
    /// that is done.
    pub async fn shutdown(mut self) {
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        // Dropping the sender ends the accept loop, which ends the relays.
        self.shutdown.take();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    one_way: Duration,
    state: Arc<ProxyState>,
    mut shutdown: watch::Receiver<()>,
) {
    let mut relays = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let id = state.connections.fetch_add(1, Ordering::SeqCst) + 1;
                    tracing::debug!(id, %peer, "delay proxy connection");
                    let recorder = Recorder {
                        state: Arc::clone(&state),
                        connection: id,
                        left: RECORD_LIMIT,
                    };
                    relays.spawn(relay(client, upstream, one_way, recorder));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "delay proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = relays.join_next(), if !relays.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // Aborting a relay drops its sockets, which closes them.
    relays.shutdown().await;
}

/// Keeps the first bytes a client sends.
struct Recorder {
    state: Arc<ProxyState>,
    connection: u64,
    left: usize,
}

impl Recorder {
    fn record(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(self.left);
        if take == 0 {
            return;
        }
        self.left -= take;
        lock(&self.state.client_chunks).push(ProxyChunk {
            connection: self.connection,
            bytes: bytes[..take].to_vec(),
        });
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, one_way: Duration, recorder: Recorder) {
    let id = recorder.connection;
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(e) => {
            // Dropping the client's socket tells it.
            tracing::debug!(id, error = %e, "delay proxy: upstream connect failed");
            return;
        }
    };
    // Without NODELAY, Nagle would hold small writes back for an ACK and
    // add latency of its own.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pipe(client_read, server_write, one_way, Some(recorder)),
        pipe(server_read, client_write, one_way, None),
    );
    tracing::debug!(id, "delay proxy connection done");
}

/// Waits until `due` to within tens of microseconds. tokio's timer has
/// millisecond ticks and rounds up, which alone would add about a
/// millisecond to every delay (a 20 ms RTT would measure 22 ms): sleep to a
/// millisecond before, then yield until the time has come.
async fn wait_until(due: Instant) {
    if let Some(early) = due.checked_sub(Duration::from_millis(1)) {
        tokio::time::sleep_until(early).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// What the reader hands the writer: bytes (holding their share of the
/// in-flight budget) or the end of the stream.
type Item = Option<(Vec<u8>, OwnedSemaphorePermit)>;

/// Forwards `from` to `to`, each chunk `one_way` after it was read. Ends
/// when the end of the stream was passed on or `to` failed.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    one_way: Duration,
    mut recorder: Option<Recorder>,
) {
    // Unbounded by count, bounded by bytes: the reader never waits for the
    // writer's sleeps, only for a writer that cannot get rid of 16 MiB.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Item)>();
    let budget = Arc::new(Semaphore::new(IN_FLIGHT));
    let reading = async move {
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let due = Instant::now() + one_way;
            if let Some(recorder) = recorder.as_mut() {
                recorder.record(&buf[..n]);
            }
            // n <= READ_SIZE, far below u32::MAX.
            let Ok(permit) = Arc::clone(&budget).acquire_many_owned(n as u32).await else {
                break;
            };
            if tx.send((due, Some((buf[..n].to_vec(), permit)))).is_err() {
                break;
            }
        }
        // The end of the stream travels with the same delay.
        let _ = tx.send((Instant::now() + one_way, None));
        // Done; the writer decides when the pipe ends.
        pending::<()>().await;
    };
    let writing = async move {
        while let Some((due, item)) = rx.recv().await {
            wait_until(due).await;
            let Some((bytes, _permit)) = item else {
                break;
            };
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::select! {
        _ = writing => {}
        _ = reading => {}
    }
}
