//! Connection pooling, measured: N messages through one `Mailer` (one
//! connection, one STARTTLS handshake, one AUTH) against the baseline of a
//! new `Mailer` per message (config read, connect, STARTTLS, AUTH PLAIN,
//! send, QUIT each time), both against the same mailgate-devserver with
//! STARTTLS required and AUTH PLAIN.
//!
//! ```sh
//! cargo bench -p mailgate-integration-tests --bench send_pool
//! MAILGATE_BENCH_MESSAGES=1000 cargo bench -p mailgate-integration-tests --bench send_pool
//! ```
//!
//! Prints messages/s of each, the ratio, the connections the server saw, the
//! CPU time per message of the pooled run (user + system of this process,
//! which also runs the dev server) and the process's peak RSS (VmHWM).

use std::time::{Duration, Instant};

use mailgate::Mailer;
use mailgate_devserver::{DevSmtpServer, Mechanism};
use mailgate_integration_tests::ConfigDir;

const USER: &str = "alm@example.com";
const PASSWORD: &str = "bench-password";
const TO: &str = "dev@example.com";
const BODY: &str = "Build 42 passed.\n\nThis is a typical notification body of a few lines.\n";

fn main() {
    let n: usize = std::env::var("MAILGATE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench(n));
}

async fn bench(n: usize) {
    let server = DevSmtpServer::builder()
        .starttls_required()
        .mechanisms([Mechanism::Plain])
        .user(USER, PASSWORD)
        .start()
        .await
        .expect("dev server starts");
    let dir = ConfigDir::new();
    server
        .ca()
        .write_ca_pem(dir.path().join("ca.pem"))
        .expect("CA written");
    let port = server.port().to_string();
    dir.write_is(&[
        ("mksis.smtp.authentication", "true"),
        ("mksis.smtp.ssl.enabled", "true"),
        ("mksis.logging.email.from", USER),
        ("mksis.logging.emailfrom.password", PASSWORD),
        ("mksis.logging.email.server.hostname", "localhost"),
        ("mksis.logging.email.server.port", &port),
        ("mailgate.smtp.ssl.caFile", "ca.pem"),
    ]);
    dir.write_security(&[]);
    let build = || {
        Mailer::builder()
            .config_dir(dir.path())
            .env_overrides(false)
            .build()
            .expect("mailer builds")
    };

    // Warm-up: first TLS handshake, page faults, the runtime's threads.
    let warm = build();
    warm.sendmail(USER, TO, "warm-up", BODY)
        .await
        .expect("warm-up sent");
    warm.close().await;
    server.clear();
    let connections_before = server.connection_count();

    // Pooled: one Mailer for all messages.
    let cpu_before = cpu_time();
    let start = Instant::now();
    let mailer = build();
    for i in 0..n {
        mailer
            .sendmail(USER, TO, &format!("pooled {i}"), BODY)
            .await
            .expect("pooled send");
    }
    mailer.close().await;
    let pooled = start.elapsed();
    let pooled_cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let pooled_connections = server.connection_count() - connections_before;
    let pooled_auths = server.auth_attempts().len();
    let rss_after_pooled = peak_rss_kib();
    server.clear();

    // Baseline: a new Mailer (connection, STARTTLS, AUTH) per message.
    let start = Instant::now();
    for i in 0..n {
        let mailer = build();
        mailer
            .sendmail(USER, TO, &format!("fresh {i}"), BODY)
            .await
            .expect("baseline send");
        mailer.close().await;
    }
    let fresh = start.elapsed();
    let fresh_connections = server.connection_count() - connections_before - pooled_connections;
    let fresh_auths = server.auth_attempts().len();
    let rss_after_fresh = peak_rss_kib();
    let fresh_messages = server.messages().len();
    assert_eq!(fresh_messages, n, "every baseline message arrived");

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("send_pool: {n} messages, STARTTLS + AUTH PLAIN, mailgate-devserver on loopback");
    println!(
        "{:<34} {:>10} {:>12} {:>12} {:>6}",
        "", "total", "messages/s", "connections", "AUTHs"
    );
    println!(
        "{:<34} {:>8.0}ms {:>12.0} {:>12} {:>6}",
        "pooled (one Mailer)",
        pooled.as_secs_f64() * 1e3,
        rate(pooled),
        pooled_connections,
        pooled_auths
    );
    println!(
        "{:<34} {:>8.0}ms {:>12.0} {:>12} {:>6}",
        "baseline (new Mailer per message)",
        fresh.as_secs_f64() * 1e3,
        rate(fresh),
        fresh_connections,
        fresh_auths
    );
    println!(
        "pooled / baseline: {:.1}x the throughput",
        rate(pooled) / rate(fresh)
    );
    if let Some(cpu) = pooled_cpu {
        println!(
            "pooled CPU (user + system, client and dev server): {:.0} us per message",
            cpu.as_secs_f64() * 1e6 / n as f64
        );
    }
    match (rss_after_pooled, rss_after_fresh) {
        (Some(a), Some(b)) => println!(
            "peak RSS (VmHWM): {:.1} MiB after the pooled run, {:.1} MiB after the baseline",
            a as f64 / 1024.0,
            b as f64 / 1024.0
        ),
        _ => println!("peak RSS: /proc/self/status not available"),
    }
    server.shutdown().await;
}

/// VmHWM of this process, KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis((utime + stime) * 10))
}
