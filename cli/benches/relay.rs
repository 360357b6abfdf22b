//! `mailgate relay`, measured from outside with Postfix's `smtp-source` as
//! the client (the Debian package `postfix`; only `/usr/sbin/smtp-source`
//! is used, the Postfix daemon is never started):
//!
//! 1. accepted messages/s into the relay, with its default synchronous
//!    durability (each message fsynced in the outbox before its 250), the
//!    upstream silent (it takes the connection and never answers) so that
//!    only accepting is measured: 1 and 8 sessions, a connection per
//!    message (smtp-source's default) and one connection per session (`-d`);
//! 2. end to end: N messages submitted to the relay (8 sessions) until the
//!    dev SMTP server has all of them, against the same N sent directly
//!    through one pooled `Mailer` (4 connections, 4 tasks).
//!
//! Each row is also run against a private Postfix instance (`postfix -c
//! DIR start-fg`, its default durability: each queue file fsynced before
//! the 250) with the same client and upstream, and the ratio printed: the
//! anchor. That needs root and the `postfix` package; the system's own
//! Postfix is not touched.
//!
//! ```sh
//! cargo bench -p mailgate-cli --bench relay
//! MAILGATE_BENCH_MESSAGES=5000 cargo bench -p mailgate-cli --bench relay
//! ```

mod postfix;
#[path = "../tests/relay_support/mod.rs"]
mod relay_support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate::{Mailer, OutgoingMessage};
use mailgate_devserver::DevSmtpServer;
use mailgate_integration_tests::unused_port;
use postfix::PostfixRelay;
use relay_support::{Relay, relay_folder};

const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";
/// smtp-source's payload per message (`-l`), and the direct send's body.
const PAYLOAD: usize = 1024;

fn main() {
    let n: usize = std::env::var("MAILGATE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(2000);
    if !std::path::Path::new(SMTP_SOURCE).is_file() {
        panic!(
            "{SMTP_SOURCE} is missing: echo \"postfix postfix/main_mailer_type select No configuration\" | debconf-set-selections; DEBIAN_FRONTEND=noninteractive apt-get install -y postfix (the daemon need not run)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench(n));
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// `smtp-source -s SESSIONS -m N -l 1024 [-d] ...` against `port`; its
/// wall time. Panics unless it succeeded.
fn smtp_source(port: u16, sessions: usize, n: usize, reuse: bool) -> Duration {
    let mut cmd = Command::new(SMTP_SOURCE);
    cmd.args(["-s", &sessions.to_string(), "-m", &n.to_string()])
        .args(["-l", &PAYLOAD.to_string()])
        .args(["-f", "bench@example.com", "-t", "sink@example.com"]);
    if reuse {
        cmd.arg("-d");
    }
    cmd.arg(format!("127.0.0.1:{port}"));
    let t = Instant::now();
    let out = cmd.output().expect("smtp-source runs");
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "smtp-source failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// How many messages the outbox of `dir` holds (any state).
fn stored(dir: &std::path::Path) -> u64 {
    let out = relay_support::mailgate(dir, &["queue", "stats", "--json"]);
    out.assert_ok();
    let s = out.json();
    ["queued", "sending", "sent", "dead"]
        .iter()
        .map(|k| s[k].as_u64().unwrap_or(0))
        .sum()
}

fn body() -> String {
    let line = "La la la la la la la la la la la la la la la la la la la la la la la la.\n";
    line.repeat(PAYLOAD / line.len() + 1)[..PAYLOAD].to_owned()
}

async fn bench(n: usize) {
    let tmp = std::env::temp_dir();
    let fs = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&tmp)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "relay bench: {n} messages of {PAYLOAD} bytes per run, smtp-source as the client, outboxes in {} ({fs}), {} cores shared by everything",
        tmp.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Rows: what, mailgate's rate, Postfix's rate for the same.
    let mut rows: Vec<(String, f64, Option<f64>)> = Vec::new();
    // Postfix's user must be able to enter its queue folder.
    let postfix_parent = tmp.join(format!("mailgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&postfix_parent).expect("a folder for Postfix");
    std::fs::set_permissions(
        &postfix_parent,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod 755");

    // 1. Accepting only: the upstream takes the connection and never says
    // a word, so the worker's first claims wait on it and it writes nothing
    // more to the outbox. A fresh outbox (and Postfix queue) per row.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a silent upstream");
    let silent_port = silent.local_addr().expect("its port").port();
    for (sessions, reuse) in [(1, false), (8, false), (1, true), (8, true)] {
        let dir = relay_folder(
            0,
            &[
                ("mksis.logging.email.server.port", &silent_port.to_string()),
                ("mailgate.smtp.timeoutSeconds", "600"),
            ],
        );
        let relay = Relay::start(dir.path());
        let elapsed = tokio::task::block_in_place(|| smtp_source(relay.port(), sessions, n, reuse));
        drop(relay);
        assert_eq!(stored(dir.path()), n as u64, "every 250 is in the outbox");

        let postfix = PostfixRelay::start(&postfix_parent, unused_port(), silent_port);
        let postfix_elapsed =
            tokio::task::block_in_place(|| smtp_source(postfix.port, sessions, n, reuse));
        assert_eq!(postfix.queued(), n, "every 250 is in Postfix's queue");
        drop(postfix);
        let label = format!(
            "accept, {sessions} session{}, {}",
            if sessions > 1 { "s" } else { "" },
            if reuse {
                "one connection per session (-d)"
            } else {
                "a connection per message"
            }
        );
        rows.push((label, rate(n, elapsed), Some(rate(n, postfix_elapsed))));
    }

    // 2. End to end against direct, alternately, three times each: medians.
    let server = DevSmtpServer::builder().start().await.expect("dev server");
    let dir = relay_folder(server.port(), &[("mailgate.smtp.maxConnections", "4")]);
    let relay = Relay::start(dir.path());
    let mailer = Arc::new(
        Mailer::builder()
            .config_dir(dir.path())
            .env_overrides(false)
            .build()
            .expect("mailer builds"),
    );
    let postfix = PostfixRelay::start(&postfix_parent, unused_port(), server.port());
    let (mut e2e, mut direct, mut postfix_e2e) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        server.clear();
        let t = Instant::now();
        let port = relay.port();
        let submitted = tokio::task::block_in_place(|| smtp_source(port, 8, n, true));
        let all = server.wait_for_messages(n, Duration::from_secs(600)).await;
        let elapsed = t.elapsed();
        assert_eq!(all.len(), n, "every message arrived");
        e2e.push((rate(n, elapsed), rate(n, submitted)));

        server.clear();
        let t = Instant::now();
        let port = postfix.port;
        let submitted = tokio::task::block_in_place(|| smtp_source(port, 8, n, true));
        let all = server.wait_for_messages(n, Duration::from_secs(600)).await;
        let elapsed = t.elapsed();
        assert_eq!(all.len(), n, "every message arrived through Postfix");
        postfix_e2e.push((rate(n, elapsed), rate(n, submitted)));

        server.clear();
        let t = Instant::now();
        let tasks = 4;
        let mut handles = Vec::new();
        for k in 0..tasks {
            let mailer = Arc::clone(&mailer);
            let count = n / tasks + usize::from(k < n % tasks);
            handles.push(tokio::spawn(async move {
                for i in 0..count {
                    let message = OutgoingMessage {
                        to: vec!["sink@example.com".into()],
                        subject: format!("direct {k} {i}"),
                        body: body(),
                        ..OutgoingMessage::default()
                    };
                    mailer.send_message(message).await.expect("sent");
                }
            }));
        }
        for h in handles {
            h.await.expect("a send task");
        }
        direct.push(rate(n, t.elapsed()));
        assert_eq!(server.messages().len(), n);
    }
    drop(relay);
    drop(postfix);
    drop(silent);
    let _ = std::fs::remove_dir_all(&postfix_parent);
    mailer.close().await;
    e2e.sort_by(|a, b| a.0.total_cmp(&b.0));
    postfix_e2e.sort_by(|a, b| a.0.total_cmp(&b.0));
    direct.sort_by(|a, b| a.total_cmp(b));
    let (e2e, submit) = e2e[1];
    let (postfix_e2e, postfix_submit) = postfix_e2e[1];
    let direct = direct[1];
    rows.push((
        "end to end: relay -> dev server (8 sessions in, 4 connections out)".into(),
        e2e,
        Some(postfix_e2e),
    ));
    rows.push((
        "  of which submitting to the relay".into(),
        submit,
        Some(postfix_submit),
    ));
    rows.push((
        "direct pooled send (one Mailer, 4 tasks)".into(),
        direct,
        None,
    ));
    server.shutdown().await;

    let base = rows[0].1;
    println!();
    println!(
        "{:<68} {:>12} {:>14} {:>12} {:>12} {:>11}",
        "measurement", "messages/s", "vs 1 session", "vs direct", "Postfix", "vs Postfix"
    );
    for (label, r, postfix) in &rows {
        let (pf, ratio) = match postfix {
            Some(p) => (format!("{p:.1}"), format!("{:.2}x", r / p)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{label:<68} {r:>12.1} {:>13.2}x {:>11.2}x {pf:>12} {ratio:>11}",
            r / base,
            r / direct
        );
    }
    println!(
        "\nend to end / direct: {:.2}x (medians of 3; the relay's worker looks at the outbox at least every 2 s)",
        e2e / direct
    );
}
