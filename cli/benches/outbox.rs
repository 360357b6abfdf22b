//! The outbox, measured against sending directly, side by side:
//!
//! 1. `mailgate send --queue`, one process per message (server down: stored,
//!    tried once, left queued), against `mailgate send` of the same message
//!    to the dev server;
//! 2. one `Mailer` enqueueing in a loop (every message its own fsynced
//!    transaction), SQLite and PostgreSQL;
//! 3. `deliver`'s drain rate: N queued messages to the dev server through
//!    one `Worker`, against the same N sent directly through one pooled
//!    `Mailer` with as many tasks as connections (goal: at least 0.8x);
//! 4. PostgreSQL: the same drain with 1 and 3 `mailgate deliver` processes.
//!
//! ```sh
//! cargo bench -p mailgate-cli --bench outbox
//! MAILGATE_BENCH_MESSAGES=10000 cargo bench -p mailgate-cli --bench outbox
//! # only some sections (4's ratio needs 3):
//! MAILGATE_BENCH_SECTIONS=3,3b cargo bench -p mailgate-cli --bench outbox
//! ```

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate::outbox::Worker;
use mailgate::{Mailer, OutgoingMessage};
use mailgate_devserver::DevSmtpServer;
use mailgate_integration_tests::{ConfigDir, PgServer, run_mailgate, unused_port};

const BODY: &str = "Build 42 passed.\n\nA typical notification body of a few lines.\n";

fn main() {
    let n: usize = std::env::var("MAILGATE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench(n));
}

fn folder(port: u16, extra: &[(&str, &str)]) -> ConfigDir {
    let port = port.to_string();
    let mut is = vec![
        ("mksis.logging.email.from", "bench@example.com"),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
        ("mksis.logging.email.server.port", port.as_str()),
        ("mailgate.smtp.maxConnections", "4"),
        ("mailgate.outbox.retry.initialSeconds", "1"),
        ("mailgate.outbox.retry.maxSeconds", "1"),
    ];
    is.extend_from_slice(extra);
    ConfigDir::with_properties(&is, &[])
}

fn mailer(dir: &ConfigDir) -> Mailer {
    Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .outbox(mailgate::open_outbox)
        .build()
        .expect("mailer builds")
}

fn message(i: usize) -> OutgoingMessage {
    OutgoingMessage {
        to: vec!["sink@example.com".into()],
        subject: format!("outbox bench {i}"),
        body: BODY.into(),
        ..OutgoingMessage::default()
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Whether section `name` runs: all of them unless `MAILGATE_BENCH_SECTIONS`
/// lists some (e.g. `3,3b`).
fn section(name: &str) -> bool {
    std::env::var("MAILGATE_BENCH_SECTIONS")
        .map(|v| v.split(',').any(|s| s.trim() == name))
        .unwrap_or(true)
}

async fn bench(n: usize) {
    let server = DevSmtpServer::builder().start().await.expect("dev server");
    println!("outbox bench: {n} messages for the loops, dev server on loopback, 4 connections");
    let mut direct = f64::NAN;

    // 1. One process per message.
    if section("1") {
        let per_process = 50;
        let down = folder(unused_port(), &[]);
        let up = folder(server.port(), &[]);
        let args = [
            "send",
            "--to",
            "sink@example.com",
            "--subject",
            "p",
            "--body",
            "b",
        ];
        let queued_args = [
            "send",
            "--queue",
            "-q",
            "--to",
            "sink@example.com",
            "--subject",
            "p",
            "--body",
            "b",
        ];
        let t = Instant::now();
        for _ in 0..per_process {
            let out = run_mailgate(env!("CARGO_BIN_EXE_mailgate"), down.path(), &queued_args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let queued = rate(per_process, t.elapsed());
        server.clear();
        let t = Instant::now();
        for _ in 0..per_process {
            let out = run_mailgate(env!("CARGO_BIN_EXE_mailgate"), up.path(), &args);
            assert_eq!(out.status.code(), Some(0));
        }
        let direct = rate(per_process, t.elapsed());
        println!(
            "1. one process per message:        send --queue (server down) {queued:>8.1}/s   send (server up) {direct:>8.1}/s   ratio {:.2}x",
            queued / direct
        );
    }

    // 2. Enqueue in a loop, SQLite.
    if section("2") {
        let dir = folder(unused_port(), &[]);
        let m = mailer(&dir);
        let t = Instant::now();
        for i in 0..n {
            m.enqueue_message(message(i)).await.expect("enqueued");
        }
        let sqlite_enqueue = rate(n, t.elapsed());
        println!(
            "2. one Mailer enqueueing (SQLite):  {sqlite_enqueue:>8.1} messages/s stored durably (fsync each)"
        );
    }

    // 3. Drain: deliver N queued vs send N directly, alternately, three
    // times each (the dev server shares the two cores): medians.
    if section("3") {
        let dir = folder(server.port(), &[]);
        let m = mailer(&dir);
        let worker = Worker::new(&m).expect("worker");
        let (mut drains, mut directs) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            for i in 0..n {
                m.enqueue_message(message(i)).await.expect("enqueued");
            }
            server.clear();
            let t = Instant::now();
            while worker.deliver_due().await.expect("delivered") > 0 {}
            drains.push(rate(n, t.elapsed()));
            assert_eq!(server.messages().len(), n, "every queued message arrived");
            server.clear();
            directs.push(direct_rate(&m, n).await);
            assert_eq!(server.messages().len(), n);
        }
        let drained = median(&mut drains);
        direct = median(&mut directs);
        println!(
            "3. drain N queued (SQLite worker):  {drained:>8.1}/s   direct pooled send {direct:>8.1}/s   ratio {:.2}x (medians of 3)",
            drained / direct
        );
    }

    // 3b. The same over a 20 ms round trip (a real server's distance):
    // the outbox's own work hides behind the network.
    if section("3b") {
        let proxy = mailgate_devserver::DelayProxy::start(
            format!("127.0.0.1:{}", server.port()).parse().unwrap(),
            Duration::from_millis(10),
        )
        .await
        .expect("delay proxy");
        let far = 400;
        let dir = folder(proxy.port(), &[]);
        let m = mailer(&dir);
        let worker = Worker::new(&m).expect("worker");
        for i in 0..far {
            m.enqueue_message(message(i)).await.expect("enqueued");
        }
        let t = Instant::now();
        while worker.deliver_due().await.expect("delivered") > 0 {}
        let drained_far = rate(far, t.elapsed());
        let direct_far = direct_rate(&m, far).await;
        println!(
            "3b. the same over a 20 ms RTT:      {drained_far:>8.1}/s   direct pooled send {direct_far:>8.1}/s   ratio {:.2}x",
            drained_far / direct_far
        );
        proxy.shutdown().await;
    }

    // 2 and 4 on PostgreSQL.
    if !section("4") {
        server.shutdown().await;
        return;
    }
    let pg = PgServer::start();
    let url = pg.create_database("bench_enqueue");
    let dir = folder(unused_port(), &[("mailgate.outbox.url", url.as_str())]);
    let m = mailer(&dir);
    let t = Instant::now();
    for i in 0..n {
        m.enqueue_message(message(i)).await.expect("enqueued");
    }
    println!(
        "2. one Mailer enqueueing (Postgres): {:>8.1} messages/s stored durably",
        rate(n, t.elapsed())
    );
    for workers in [1usize, 3] {
        let url = pg.create_database(&format!("bench_drain_{workers}"));
        let dir = folder(server.port(), &[("mailgate.outbox.url", url.as_str())]);
        let m = mailer(&dir);
        for i in 0..n {
            m.enqueue_message(message(i)).await.expect("enqueued");
        }
        server.clear();
        let t = Instant::now();
        let mut children: Vec<Child> = (0..workers).map(|_| deliver(&dir)).collect();
        while server.messages().len() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = t.elapsed();
        for c in &mut children {
            // SAFETY: the pid is our running child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        assert_eq!(server.messages().len(), n, "each message exactly once");
        println!(
            "4. drain N queued (Postgres, {workers} mailgate deliver): {:>8.1}/s   ratio to direct {:.2}x",
            rate(n, elapsed),
            rate(n, elapsed) / direct
        );
    }
    server.shutdown().await;
}

fn deliver(dir: &ConfigDir) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("--config-dir")
        .arg(dir.path())
        .arg("deliver")
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mailgate deliver starts")
}

/// N messages sent directly through one pooled Mailer, one task per connection.
async fn direct_rate(m: &Mailer, n: usize) -> f64 {
    let tasks = m.max_connections();
    let m = Arc::new(m.clone());
    let t = Instant::now();
    let mut handles = Vec::new();
    for k in 0..tasks {
        let m = Arc::clone(&m);
        let count = n / tasks + usize::from(k < n % tasks);
        handles.push(tokio::spawn(async move {
            for i in 0..count {
                m.send_message(message(i)).await.expect("sent");
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    rate(n, t.elapsed())
}
