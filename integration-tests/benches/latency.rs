//! Pooled sending over a slow network path: messages/s through a loopback
//! proxy that delays each direction by a fixed time (RTT 20 ms by default),
//! for mailgate (one `Mailer`, PIPELINING) and Nodemailer's pooled transport
//! side by side, over 1 and 4 connections, against the same dev server, and
//! against the theoretical limit of a pipelining client: two round trips per
//! message and connection, 1/(2·RTT).
//!
//! ```sh
//! bash integration-tests/peers/install.sh node
//! cargo bench -p mailgate-integration-tests --bench latency
//! MAILGATE_BENCH_RTT_MS=40 MAILGATE_BENCH_MESSAGES=100 cargo bench -p mailgate-integration-tests --bench latency
//! ```
//!
//! Nodemailer runs twice: as shipped (Nagle on) and with TCP_NODELAY on its
//! sockets (`noDelay`), since Nagle and delayed ACKs, not the protocol, can
//! decide its figure.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate::Mailer;
use mailgate_devserver::{DelayProxy, DevSmtpServer};
use mailgate_integration_tests::{ConfigDir, ensure_installed, peers_dir};

const FROM: &str = "bench@example.com";
const TO: &str = "sink@example.com";
const BODY: &str = "Build 42 passed.\n\nA typical notification body of a few lines.\n";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn main() {
    let rtt = Duration::from_millis(env_number("MAILGATE_BENCH_RTT_MS", 20));
    let per_connection = env_number("MAILGATE_BENCH_MESSAGES", 100) as usize;
    ensure_installed(mailgate_integration_tests::PeerKind::Node).expect("node peer installed");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench(rtt, per_connection));
}

async fn bench(rtt: Duration, per_connection: usize) {
    let server = DevSmtpServer::builder().start().await.expect("dev server");
    let upstream = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = DelayProxy::start(upstream, rtt / 2)
        .await
        .expect("delay proxy");
    let measured = measured_rtt(proxy.port()).await;
    println!(
        "latency: dev server behind a proxy adding {} ms each way (RTT {} ms; NOOP round trip through it measures {:.1} ms), {per_connection} messages per connection",
        (rtt / 2).as_millis(),
        rtt.as_millis(),
        measured.as_secs_f64() * 1e3
    );
    println!(
        "{:<40} {:>5} {:>10} {:>12} {:>12} {:>14}",
        "", "conns", "messages/s", "per conn", "of 1/(2RTT)", "of measured"
    );
    let ideal_per_conn = 1.0 / (2.0 * rtt.as_secs_f64());
    let measured_per_conn = 1.0 / (2.0 * measured.as_secs_f64());
    for connections in [1usize, 4] {
        let n = per_connection * connections;
        let mut rows = Vec::new();
        server.clear();
        let rate = mailgate_rate(proxy.port(), connections, n).await;
        // The warm-up sent one message per connection.
        assert_eq!(
            server.messages().len(),
            n + connections,
            "every mailgate message arrived"
        );
        rows.push(("mailgate (pipelining)", rate));
        for (label, no_delay) in [
            ("Nodemailer pooled, as shipped", false),
            ("Nodemailer pooled, TCP_NODELAY", true),
        ] {
            server.clear();
            let rate = nodemailer_rate(proxy.port(), connections, n, no_delay).await;
            assert_eq!(
                server.messages().len(),
                n,
                "every Nodemailer message arrived"
            );
            rows.push((label, rate));
        }
        for (label, rate) in &rows {
            let per_conn = rate / connections as f64;
            println!(
                "{label:<40} {connections:>5} {rate:>10.1} {per_conn:>12.1} {:>11.2}x {:>13.2}x",
                per_conn / ideal_per_conn,
                per_conn / measured_per_conn
            );
        }
        println!(
            "{:<40} {connections:>5} {:>10.1} {ideal_per_conn:>12.1} {:>11.2}x {:>13.2}x",
            "theoretical 1/(2RTT) per connection",
            ideal_per_conn * connections as f64,
            1.0,
            ideal_per_conn / measured_per_conn
        );
        println!(
            "mailgate / Nodemailer as shipped: {:.2}x, / Nodemailer TCP_NODELAY: {:.2}x",
            rows[0].1 / rows[1].1,
            rows[0].1 / rows[2].1
        );
    }
    proxy.shutdown().await;
    server.shutdown().await;
}

/// The median NOOP round trip through the proxy: the RTT a client really
/// sees (the proxy's timers round each delay up a little).
async fn measured_rtt(port: u16) -> Duration {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect through the proxy");
    stream.set_nodelay(true).expect("nodelay");
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await.expect("greeting");
    let mut samples = Vec::new();
    for _ in 0..9 {
        let start = Instant::now();
        stream.get_mut().write_all(b"NOOP\r\n").await.expect("NOOP");
        line.clear();
        stream.read_line(&mut line).await.expect("NOOP reply");
        samples.push(start.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

/// Messages/s of one `Mailer` with `connections` connections and as many
/// tasks sending in a loop; the connections are opened before the clock starts.
async fn mailgate_rate(port: u16, connections: usize, n: usize) -> f64 {
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", &port.to_string()),
            ("mksis.logging.email.from", FROM),
            ("mailgate.smtp.maxConnections", &connections.to_string()),
        ],
        &[],
    );
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .expect("mailer builds");
    let mailer = Arc::new(mailer);
    // Warm-up: one message per connection, at once, so the pool is full.
    run_tasks(&mailer, connections, connections).await;
    let start = Instant::now();
    run_tasks(&mailer, connections, n).await;
    let elapsed = start.elapsed();
    mailer.close().await;
    n as f64 / elapsed.as_secs_f64()
}

async fn run_tasks(mailer: &Arc<Mailer>, tasks: usize, n: usize) {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let mailer = Arc::clone(mailer);
        let count = n / tasks + usize::from(t < n % tasks);
        handles.push(tokio::spawn(async move {
            for i in 0..count {
                mailer
                    .sendmail(FROM, TO, &format!("latency {t}/{i}"), BODY)
                    .await
                    .expect("mailgate send");
            }
        }));
    }
    for h in handles {
        h.await.expect("sender task");
    }
}

/// Messages/s of `pooled-send.mjs`, as it measures them (pool setup included).
async fn nodemailer_rate(port: u16, connections: usize, n: usize, no_delay: bool) -> f64 {
    let script = peers_dir().join("node").join("pooled-send.mjs");
    let config = serde_json::json!({
        "host": "127.0.0.1",
        "port": port,
        "connections": connections,
        "messages": n,
        "from": FROM,
        "to": TO,
        "subject": "latency",
        "text": BODY,
        "noDelay": no_delay,
    });
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(config.to_string())
            .output()
            .expect("node runs")
    })
    .await
    .expect("node thread");
    assert!(
        output.status.success(),
        "pooled-send failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("pooled-send prints one JSON line");
    assert_eq!(line["errors"], 0, "{line}");
    let seconds = line["seconds"].as_f64().expect("seconds");
    n as f64 / seconds
}
