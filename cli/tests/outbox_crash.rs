//! A `mailgate deliver` (or `relay`) killed with -9 mid-batch, against a
//! slow upstream: its messages come back in seconds, not when their 300 s
//! lease runs out.
//! On SQLite a restarted worker takes them at once (the dead worker's lock
//! is free); on PostgreSQL the other workers take them once its heartbeat
//! is older than `mailgate.outbox.workerTimeoutSeconds`. Nothing is lost,
//! and at most one message per connection of the killed worker is doubled.

#![cfg(all(
    feature = "outbox-sqlite",
    feature = "outbox-postgres",
    feature = "open"
))]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailgate::{Mailer, OutgoingMessage};
use mailgate_devserver::{DevSmtpServer, Fault, Stage};
use mailgate_integration_tests::{ConfigDir, PgServer};

/// Connections per worker: the bound on duplicates after a kill.
const CONNECTIONS: usize = 2;

fn folder(port: u16, extra: &[(&str, &str)]) -> ConfigDir {
    let port = port.to_string();
    let connections = CONNECTIONS.to_string();
    let mut is = vec![
        ("mksis.logging.email.from", "alm@example.com"),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
        ("mksis.logging.email.server.port", port.as_str()),
        ("mailgate.smtp.maxConnections", connections.as_str()),
        // The default lease: what comes back early is not the lease's doing.
        ("mailgate.outbox.leaseSeconds", "300"),
        // The tests start and kill their own workers.
        ("mailgate.outbox.autoDeliver", "false"),
    ];
    is.extend_from_slice(extra);
    ConfigDir::with_properties(&is, &[])
}

async fn enqueue(dir: &ConfigDir, n: usize) {
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .outbox(mailgate::open_outbox)
        .build()
        .expect("mailer builds");
    for i in 0..n {
        mailer
            .enqueue_message(OutgoingMessage {
                to: vec!["dev@example.com".into()],
                subject: format!("crash {i}"),
                body: "killed mid-batch\n".into(),
                ..OutgoingMessage::default()
            })
            .await
            .expect("enqueued");
    }
}

fn deliver(dir: &Path) -> Child {
    worker(dir, "deliver")
}

/// `mailgate COMMAND` (`deliver` or `relay`) in the background.
fn worker(dir: &Path, command: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("--config-dir")
        .arg(dir)
        .arg(command)
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mailgate deliver starts")
}

/// SIGTERM, then the exit status within 20 s.
fn stop(mut worker: Child) {
    // SAFETY: the pid is our child, not yet reaped.
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = worker.try_wait().unwrap() {
            assert!(status.success(), "deliver exits 0 on SIGTERM: {status:?}");
            return;
        }
        if Instant::now() > deadline {
            let _ = worker.kill();
            panic!("deliver did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How often each subject arrived.
fn arrivals(server: &DevSmtpServer) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in server.messages() {
        *counts.entry(m.subject().unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

/// Waits until at least `n` messages arrived (copies counted), in bounded
/// steps.
async fn wait_for_copies(server: &DevSmtpServer, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while server.messages().len() < n {
        assert!(Instant::now() < deadline, "{n} messages arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until all `n` distinct messages arrived; how long it took.
async fn wait_for_all(server: &DevSmtpServer, n: usize, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = arrivals(server).len();
        if got >= n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "only {got} of {n} distinct messages arrived within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every message arrived, and at most `bound` of them twice.
fn assert_none_lost(server: &DevSmtpServer, n: usize, bound: usize) {
    let counts = arrivals(server);
    assert_eq!(counts.len(), n, "every message arrived: {counts:?}");
    let doubled: usize = counts.values().map(|c| c - 1).sum();
    eprintln!("{n} messages, {doubled} duplicate(s), bound {bound}");
    assert!(
        doubled <= bound,
        "{doubled} duplicates, at most {bound} (one per connection)"
    );
}

fn lock_files(outbox: &Path) -> Vec<String> {
    let mut folder = outbox.as_os_str().to_owned();
    folder.push(".workers");
    std::fs::read_dir(folder)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_restarted_worker_takes_a_killed_one_s_batch_at_once() {
    // 150 ms per message, two connections: 30 messages take about 2.3 s.
    let server = DevSmtpServer::builder()
        .fault(Fault::delay(Stage::DataEnd, Duration::from_millis(150)))
        .start()
        .await
        .unwrap();
    let dir = folder(server.port(), &[]);
    enqueue(&dir, 30).await;
    let outbox = dir.path().join("mailgate-outbox.db");

    let mut victim = deliver(dir.path());
    wait_for_copies(&server, 6, Duration::from_secs(30)).await;
    // SIGKILL: no chance to finish, release or remove anything.
    victim.kill().unwrap();
    victim.wait().unwrap();
    let delivered_before = arrivals(&server).len();
    assert!(delivered_before < 30, "killed mid-batch");
    assert_eq!(lock_files(&outbox).len(), 1, "the dead worker's file stays");

    let restarted = Instant::now();
    let worker = deliver(dir.path());
    let took = wait_for_all(&server, 30, Duration::from_secs(30)).await;
    eprintln!(
        "sqlite: killed after {delivered_before} of 30; the restarted worker delivered the other {} in {:.2} s (lease 300 s)",
        30 - delivered_before,
        took.as_secs_f64()
    );
    assert!(restarted.elapsed() < Duration::from_secs(30));
    // The dead worker's file is gone; the live one's stays while it runs.
    assert_eq!(lock_files(&outbox).len(), 1, "{:?}", lock_files(&outbox));
    stop(worker);
    assert!(lock_files(&outbox).is_empty(), "{:?}", lock_files(&outbox));
    assert_none_lost(&server, 30, CONNECTIONS);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_restarted_relay_takes_a_killed_one_s_batch_at_once() {
    let server = DevSmtpServer::builder()
        .fault(Fault::delay(Stage::DataEnd, Duration::from_millis(150)))
        .start()
        .await
        .unwrap();
    let dir = folder(server.port(), &[("mailgate.relay.listen", "127.0.0.1:0")]);
    // What the relay accepted earlier, waiting in its outbox.
    enqueue(&dir, 30).await;

    let mut victim = worker(dir.path(), "relay");
    wait_for_copies(&server, 6, Duration::from_secs(30)).await;
    victim.kill().unwrap();
    victim.wait().unwrap();
    let delivered_before = arrivals(&server).len();
    assert!(delivered_before < 30, "killed mid-batch");

    let relay = worker(dir.path(), "relay");
    let took = wait_for_all(&server, 30, Duration::from_secs(30)).await;
    eprintln!(
        "sqlite relay: killed after {delivered_before} of 30; the restarted relay delivered the other {} in {:.2} s (lease 300 s)",
        30 - delivered_before,
        took.as_secs_f64()
    );
    stop(relay);
    assert_none_lost(&server, 30, CONNECTIONS);
    server.shutdown().await;
}

/// The process id in a worker id `HOST-PID-RANDOM`.
fn pid_of(worker: &str) -> Option<u32> {
    worker.rsplit('-').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_others_take_a_killed_worker_s_batch_after_its_timeout() {
    const TIMEOUT_SECONDS: u64 = 3;
    let pg = PgServer::start();
    let server = DevSmtpServer::builder()
        .fault(Fault::delay(Stage::DataEnd, Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let url = pg.url();
    let timeout = TIMEOUT_SECONDS.to_string();
    let dir = folder(
        server.port(),
        &[
            ("mailgate.outbox.url", url.as_str()),
            ("mailgate.outbox.workerTimeoutSeconds", timeout.as_str()),
        ],
    );
    enqueue(&dir, 60).await;
    let mut workers: Vec<Child> = (0..3).map(|_| deliver(dir.path())).collect();
    wait_for_copies(&server, 6, Duration::from_secs(30)).await;

    // The worker holding the most messages now is the victim.
    let owner = pg.psql(
        pg.database(),
        "SELECT lease_owner FROM outbox_messages WHERE status = 'sending' \
         GROUP BY lease_owner ORDER BY count(*) DESC LIMIT 1",
    );
    let pid = pid_of(&owner).unwrap_or_else(|| panic!("a worker holds messages: {owner:?}"));
    let at = workers
        .iter()
        .position(|w| w.id() == pid)
        .expect("the owner is one of our workers");
    let mut victim = workers.remove(at);
    victim.kill().unwrap();
    let killed = Instant::now();
    victim.wait().unwrap();
    let held: usize = pg
        .psql(
            pg.database(),
            &format!(
                "SELECT count(*) FROM outbox_messages \
                 WHERE status = 'sending' AND lease_owner = '{owner}'"
            ),
        )
        .parse()
        .unwrap();
    let delivered_before = arrivals(&server).len();

    let within = Duration::from_secs(TIMEOUT_SECONDS + 10);
    assert!(held > 0, "killed mid-batch");
    wait_for_all(&server, 60, within).await;
    let since_kill = killed.elapsed();
    eprintln!(
        "postgres: the victim held {held} when killed ({delivered_before} of 60 delivered); all 60 arrived {:.2} s after the kill (workerTimeoutSeconds {TIMEOUT_SECONDS}, lease 300 s)",
        since_kill.as_secs_f64()
    );
    assert!(since_kill < within, "{since_kill:?}");
    assert_eq!(
        pg.psql(
            pg.database(),
            &format!("SELECT count(*) FROM mailgate_workers WHERE id = '{owner}'")
        ),
        "0",
        "the dead worker's heartbeat row is gone"
    );
    for w in workers {
        stop(w);
    }
    assert_eq!(
        pg.psql(pg.database(), "SELECT count(*) FROM mailgate_workers"),
        "0",
        "workers that stop say goodbye"
    );
    // So does `send --queue`'s one-message worker.
    let sent = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("--config-dir")
        .arg(dir.path())
        .args(["send", "--queue", "--to", "dev@example.com"])
        .args(["--subject", "crash 60", "--body", "after\n"])
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("mailgate send runs");
    assert!(sent.status.success(), "{sent:?}");
    assert_eq!(
        pg.psql(pg.database(), "SELECT count(*) FROM mailgate_workers"),
        "0",
        "send --queue says goodbye"
    );
    assert_none_lost(&server, 61, CONNECTIONS);
    assert_eq!(
        pg.psql(
            pg.database(),
            "SELECT count(*) FROM outbox_messages WHERE status <> 'sent'"
        ),
        "0"
    );
    server.shutdown().await;
}
