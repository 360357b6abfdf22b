//! The latency proxy: delay, order, integrity, and what it records.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mailgate_devserver::{DelayProxy, DevSmtpServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A server that sends back whatever it reads.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn connect(proxy: &DelayProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

async fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut buf))
        .await
        .expect("read timed out")
        .expect("read");
    buf
}

#[tokio::test]
async fn round_trip_takes_twice_the_one_way_delay() {
    let one_way = Duration::from_millis(25);
    let proxy = DelayProxy::start(echo_server().await, one_way)
        .await
        .unwrap();
    assert_eq!(proxy.one_way(), one_way);
    assert_eq!(proxy.addr().ip().to_string(), "127.0.0.1");
    assert_eq!(proxy.port(), proxy.addr().port());
    let mut c = connect(&proxy).await;
    let mut rtts = Vec::new();
    for i in 0..7u8 {
        let start = Instant::now();
        c.write_all(&[b'a' + i; 10]).await.unwrap();
        assert_eq!(read_exactly(&mut c, 10).await, [b'a' + i; 10]);
        rtts.push(start.elapsed());
    }
    // Never faster than the delay; usually within 15 ms of it (the median,
    // so that one hiccup of a busy 2-core machine does not fail the test).
    assert!(rtts.iter().all(|rtt| *rtt >= one_way * 2), "{rtts:?}");
    rtts.sort();
    assert!(
        rtts[3] <= one_way * 2 + Duration::from_millis(15),
        "{rtts:?}"
    );
}

#[tokio::test]
async fn chunks_in_flight_are_not_delayed_further() {
    let one_way = Duration::from_millis(40);
    let proxy = DelayProxy::start(echo_server().await, one_way)
        .await
        .unwrap();
    let mut c = connect(&proxy).await;
    // Ten messages 5 ms apart: with a pipe with latency, the last one is
    // back 2 × one_way after it was sent, not after ten round trips.
    let start = Instant::now();
    let mut last_sent = Duration::ZERO;
    for i in 0..10u8 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        c.write_all(&[i]).await.unwrap();
        last_sent = start.elapsed();
    }
    let first = read_exactly(&mut c, 1).await;
    let first_at = start.elapsed();
    let rest = read_exactly(&mut c, 9).await;
    let last_at = start.elapsed();
    assert_eq!(first, [0]);
    assert_eq!(rest, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert!(first_at >= one_way * 2, "{first_at:?}");
    // (`last_sent` is taken a moment after the write: a little tolerance
    // below.)
    let since_last_sent = last_at - last_sent;
    assert!(
        since_last_sent + Duration::from_millis(5) >= one_way * 2 && since_last_sent < one_way * 3,
        "sent until {last_sent:?}, first back at {first_at:?}, last at {last_at:?}"
    );
}

#[tokio::test]
async fn five_megabytes_arrive_intact_and_in_order() {
    const SIZE: usize = 5 * 1024 * 1024;
    let proxy = DelayProxy::start(echo_server().await, Duration::from_millis(5))
        .await
        .unwrap();
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
    let c = connect(&proxy).await;
    let (mut r, mut w) = c.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(SIZE);
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut back))
        .await
        .expect("timed out")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), SIZE);
    assert!(back == data, "bytes differ");
    // The record keeps the first MiB of what the client sent, in order.
    let recorded: Vec<u8> = proxy.client_chunks_on(1).concat();
    assert_eq!(recorded.len(), mailgate_devserver::proxy::RECORD_LIMIT);
    assert!(recorded[..] == data[..recorded.len()]);
    assert!(proxy.client_chunks().iter().all(|c| c.connection == 1));
    assert_eq!(proxy.connection_count(), 1);
}

#[tokio::test]
async fn records_whether_a_client_pipelined() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let proxy = DelayProxy::start(server.addr(), Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(proxy.upstream(), server.addr());
    let mut c = connect(&proxy).await;
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"220 "));
    c.write_all(b"EHLO client.test\r\n").await.unwrap();
    // The EHLO reply ends with its `250 ` line.
    let mut got = String::new();
    while !(got.contains("\n250 ") && got.ends_with("\r\n")) {
        let n = c.read(&mut buf).await.unwrap();
        assert!(n > 0, "{got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let pipelined = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n";
    c.write_all(pipelined).await.unwrap();
    let replies = read_exactly(&mut c, b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n".len()).await;
    assert_eq!(replies, b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
    let chunks = proxy.client_chunks_on(1);
    assert_eq!(
        chunks,
        [b"EHLO client.test\r\n".to_vec(), pipelined.to_vec()]
    );
    // The server saw it the same way.
    let flags: Vec<(String, bool)> = server
        .commands()
        .into_iter()
        .map(|c| (c.verb, c.pipelined))
        .collect();
    assert_eq!(
        flags,
        [
            ("EHLO".to_owned(), false),
            ("MAIL".to_owned(), false),
            ("RCPT".to_owned(), true),
            ("DATA".to_owned(), true),
        ]
    );
    proxy.clear();
    assert!(proxy.client_chunks().is_empty());
}

#[tokio::test]
async fn shutdown_closes_forwarded_connections() {
    let proxy = DelayProxy::start(echo_server().await, Duration::from_millis(5))
        .await
        .unwrap();
    let addr = proxy.addr();
    let mut c = connect(&proxy).await;
    c.write_all(b"x").await.unwrap();
    assert_eq!(read_exactly(&mut c, 1).await, b"x");
    tokio::time::timeout(Duration::from_secs(5), proxy.shutdown())
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(TIMEOUT, c.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn upstream_down_closes_the_client() {
    // A port nobody listens on (bound, then released).
    let upstream = TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = DelayProxy::start(upstream, Duration::from_millis(5))
        .await
        .unwrap();
    let mut c = connect(&proxy).await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(TIMEOUT, c.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
}
