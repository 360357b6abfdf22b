//! Workers killed with -9 again and again over 1,000 messages: `deliver`
//! on SQLite, `relay` on SQLite while clients submit, and three relays on
//! one PostgreSQL outbox killed in turn. Every message a client got a 250
//! for arrives; duplicates stay within one per connection (and per
//! in-flight submission) per kill; what a killed worker held arrives
//! within 30 s of its restart (SQLite) or `workerTimeoutSeconds` + 10 s of
//! its death (PostgreSQL). Each test prints its figures (`--nocapture`).

#![cfg(all(
    feature = "outbox-sqlite",
    feature = "outbox-postgres",
    feature = "open"
))]

mod relay_support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgate::{Mailer, OutgoingMessage};
use mailgate_devserver::{DevSmtpServer, Fault, Stage};
use mailgate_integration_tests::{ConfigDir, PgServer, unused_port};
use relay_support::{Relay, blocking, queue_all, relay_folder};

const MESSAGES: usize = 1000;
/// Connections per worker: one possible duplicate each per kill.
const CONNECTIONS: usize = 2;
const CONNECTIONS_TEXT: &str = "2";

/// When each subject first arrived upstream, recorded as it happens.
struct Arrivals {
    first: Arc<Mutex<BTreeMap<String, Instant>>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Arrivals {
    fn watch(server: &Arc<DevSmtpServer>) -> Arrivals {
        let first = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (server, first, stop) = (Arc::clone(server), Arc::clone(&first), Arc::clone(&stop));
            async move {
                let mut seen = 0;
                while !stop.load(Ordering::Relaxed) {
                    let new = server.messages_after(seen);
                    let now = Instant::now();
                    seen += new.len();
                    {
                        let mut first = first.lock().unwrap();
                        for m in new {
                            first.entry(m.subject().unwrap_or_default()).or_insert(now);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        Arrivals {
            first,
            stop,
            task: Some(task),
        }
    }

    fn distinct(&self) -> usize {
        self.first.lock().unwrap().len()
    }

    fn at(&self, subject: &str) -> Option<Instant> {
        self.first.lock().unwrap().get(subject).copied()
    }

    /// Waits until `n` distinct subjects arrived.
    fn wait_for(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        blocking(|| {
            while self.distinct() < n {
                assert!(
                    Instant::now() < deadline,
                    "only {} of {n} distinct messages arrived within {within:?}",
                    self.distinct()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }

    async fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// Every subject arrived; the duplicates, asserted within `bound`.
fn assert_complete(server: &DevSmtpServer, subjects: &[String], bound: usize, what: &str) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in server.messages() {
        *counts.entry(m.subject().unwrap_or_default()).or_default() += 1;
    }
    let missing: Vec<_> = subjects
        .iter()
        .filter(|s| !counts.contains_key(*s))
        .collect();
    assert!(missing.is_empty(), "{what}: lost {missing:?}");
    let doubled: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "{what}: {} messages, 0 lost, {doubled} duplicate(s) (bound {bound})",
        subjects.len()
    );
    assert!(
        doubled <= bound,
        "{what}: {doubled} duplicates, bound {bound}"
    );
}

/// Every subject of `held` arrived by `deadline` (or before the kill: a
/// copy the victim sent but did not mark); waits for them until then.
fn assert_held_arrived_by(arrivals: &Arrivals, held: &[String], deadline: Instant, what: &str) {
    blocking(|| {
        while held.iter().any(|s| arrivals.at(s).is_none()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    for subject in held {
        let at = arrivals
            .at(subject)
            .unwrap_or_else(|| panic!("{what}: {subject} never arrived"));
        assert!(at <= deadline, "{what}: {subject} arrived too late");
    }
}

fn subjects(prefix: &str) -> Vec<String> {
    (0..MESSAGES).map(|i| format!("{prefix} {i}")).collect()
}

// ---------------------------------------------------------------------------
// deliver on SQLite

fn deliver(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("--config-dir")
        .arg(dir)
        .arg("deliver")
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mailgate deliver starts")
}

/// The subjects `queue list` shows leased (`sending`): the killed worker's.
fn leased(dir: &Path) -> Vec<String> {
    queue_all(dir)
        .iter()
        .filter(|m| m["status"] == "sending")
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_deliver_killed_ten_times_over_1000_messages() {
    const KILLS: usize = 10;
    let server = Arc::new(
        DevSmtpServer::builder()
            .fault(Fault::delay(Stage::DataEnd, Duration::from_millis(3)))
            .start()
            .await
            .unwrap(),
    );
    let port = server.port().to_string();
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.logging.email.from", "alm@example.com"),
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", port.as_str()),
            ("mailgate.smtp.maxConnections", CONNECTIONS_TEXT),
            // The default lease: what comes back early is not its doing.
            ("mailgate.outbox.leaseSeconds", "300"),
            ("mailgate.outbox.autoDeliver", "false"),
        ],
        &[],
    );
    let all = subjects("deliver loop");
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .outbox(mailgate::open_outbox)
        .build()
        .unwrap();
    for subject in &all {
        mailer
            .enqueue_message(OutgoingMessage {
                to: vec!["dev@example.com".into()],
                subject: subject.clone(),
                body: "killed again and again\n".into(),
                ..OutgoingMessage::default()
            })
            .await
            .unwrap();
    }
    let arrivals = Arrivals::watch(&server);
    let mut worker = deliver(dir.path());
    let mut held_total = 0;
    let mut slowest = Duration::ZERO;
    for kill in 1..=KILLS {
        // Killed at evenly spread points of the run, mid-delivery.
        arrivals.wait_for(kill * MESSAGES / (KILLS + 2), Duration::from_secs(60));
        blocking(|| {
            worker.kill().unwrap();
            worker.wait().unwrap();
        });
        let held = blocking(|| leased(dir.path()));
        held_total += held.len();
        let restarted = Instant::now();
        worker = deliver(dir.path());
        let deadline = restarted + Duration::from_secs(30);
        assert_held_arrived_by(&arrivals, &held, deadline, &format!("kill {kill}"));
        if let Some(last) = held.iter().filter_map(|s| arrivals.at(s)).max() {
            slowest = slowest.max(last.saturating_duration_since(restarted));
        }
    }
    arrivals.wait_for(MESSAGES, Duration::from_secs(60));
    blocking(|| {
        worker.kill().unwrap();
        worker.wait().unwrap();
    });
    assert!(held_total > 0, "the kills came mid-batch");
    eprintln!(
        "sqlite deliver: {KILLS} kills, {held_total} leased messages taken back, the slowest arrived {:.2} s after its restart",
        slowest.as_secs_f64()
    );
    arrivals.finish().await;
    assert_complete(&server, &all, KILLS * CONNECTIONS, "sqlite deliver");
}

// ---------------------------------------------------------------------------
// relays while clients submit

/// One SMTP submission on a new connection; true only on the final 250.
/// Any failure (refused, closed, timed out) is false: the client retries.
fn submit_once(addr: SocketAddr, subject: &str) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let mut reply = || -> std::io::Result<u16> {
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(0);
                }
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok(line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0));
                }
            }
        };
        let mut step = |line: &str, want: u16| -> std::io::Result<bool> {
            if !line.is_empty() {
                writer.write_all(line.as_bytes())?;
            }
            Ok(reply()? == want)
        };
        Ok(step("", 220)?
            && step("EHLO client.example\r\n", 250)?
            && step("MAIL FROM:<alm@example.com>\r\n", 250)?
            && step("RCPT TO:<dev@example.com>\r\n", 250)?
            && step("DATA\r\n", 354)?
            && step(
                &format!(
                    "From: alm@example.com\r\nTo: dev@example.com\r\nSubject: {subject}\r\n\r\nsubmitted while the relay dies\r\n.\r\n"
                ),
                250,
            )?)
    };
    attempt().unwrap_or(false)
}

/// Clients submitting `subjects` over `threads` connections at a time,
/// each retrying (on any of `addrs`, in turn) until it gets its 250.
struct Submitters {
    acknowledged: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Submitters {
    fn start(addrs: Vec<SocketAddr>, subjects: &[String], threads: usize) -> Submitters {
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let threads = (0..threads)
            .map(|t| {
                let mine: Vec<String> = subjects.iter().skip(t).step_by(threads).cloned().collect();
                let (addrs, acknowledged) = (addrs.clone(), Arc::clone(&acknowledged));
                std::thread::spawn(move || {
                    let mut next = t;
                    for subject in mine {
                        let deadline = Instant::now() + Duration::from_secs(120);
                        while !submit_once(addrs[next % addrs.len()], &subject) {
                            assert!(Instant::now() < deadline, "{subject}: no 250 in 120 s");
                            next += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Submitters {
            acknowledged,
            threads,
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::Relaxed)
    }

    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.acknowledged() < n {
            assert!(Instant::now() < deadline, "{n} submissions acknowledged");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn join(self) {
        for t in self.threads {
            t.join().expect("a submitter panicked");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_relay_killed_ten_times_while_1000_are_submitted() {
    const KILLS: usize = 10;
    const CLIENTS: usize = 2;
    let server = Arc::new(
        DevSmtpServer::builder()
            .fault(Fault::delay(Stage::DataEnd, Duration::from_millis(3)))
            .start()
            .await
            .unwrap(),
    );
    let listen = format!("127.0.0.1:{}", unused_port());
    let dir = relay_folder(
        server.port(),
        &[
            ("mailgate.relay.listen", &listen),
            ("mailgate.smtp.maxConnections", CONNECTIONS_TEXT),
            ("mailgate.outbox.leaseSeconds", "300"),
        ],
    );
    let all = subjects("relay loop");
    let arrivals = Arrivals::watch(&server);
    let mut relay = Relay::start(dir.path());
    let submitters = Submitters::start(vec![relay.addr], &all, CLIENTS);
    let mut held_total = 0;
    let mut slowest = Duration::ZERO;
    for kill in 1..=KILLS {
        blocking(|| submitters.wait_for(kill * MESSAGES / (KILLS + 1)));
        relay.kill9();
        let held = blocking(|| leased(dir.path()));
        held_total += held.len();
        let restarted = Instant::now();
        relay = Relay::start(dir.path());
        let deadline = restarted + Duration::from_secs(30);
        assert_held_arrived_by(&arrivals, &held, deadline, &format!("relay kill {kill}"));
        if let Some(last) = held.iter().filter_map(|s| arrivals.at(s)).max() {
            slowest = slowest.max(last.saturating_duration_since(restarted));
        }
    }
    blocking(|| submitters.join());
    arrivals.wait_for(MESSAGES, Duration::from_secs(60));
    eprintln!(
        "sqlite relay: {KILLS} kills, {held_total} leased messages taken back, the slowest arrived {:.2} s after its restart",
        slowest.as_secs_f64()
    );
    drop(relay);
    arrivals.finish().await;
    // Per kill: each client's submission in flight (stored, 250 lost), and
    // each connection's message sent but not marked.
    assert_complete(
        &server,
        &all,
        KILLS * (CLIENTS + CONNECTIONS),
        "sqlite relay",
    );
}

// ---------------------------------------------------------------------------
// three relays on one PostgreSQL outbox

/// The process id in a worker id `HOST-PID-RANDOM`.
fn pid_of(worker: &str) -> Option<u32> {
    worker.rsplit('-').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_relays_killed_in_turn_while_1000_are_submitted() {
    const KILLS: usize = 6;
    const CLIENTS: usize = 3;
    const TIMEOUT_SECONDS: u64 = 3;
    let pg = PgServer::start();
    let server = Arc::new(
        DevSmtpServer::builder()
            .fault(Fault::delay(Stage::DataEnd, Duration::from_millis(3)))
            .start()
            .await
            .unwrap(),
    );
    let url = pg.url();
    let timeout = TIMEOUT_SECONDS.to_string();
    let dirs: Vec<ConfigDir> = (0..3)
        .map(|_| {
            relay_folder(
                server.port(),
                &[
                    (
                        "mailgate.relay.listen",
                        &format!("127.0.0.1:{}", unused_port()),
                    ),
                    ("mailgate.outbox.url", &url),
                    ("mailgate.outbox.workerTimeoutSeconds", &timeout),
                    ("mailgate.smtp.maxConnections", CONNECTIONS_TEXT),
                    ("mailgate.outbox.leaseSeconds", "300"),
                ],
            )
        })
        .collect();
    let all = subjects("pg loop");
    let arrivals = Arrivals::watch(&server);
    let mut relays: Vec<Relay> = dirs.iter().map(|d| Relay::start(d.path())).collect();
    let addrs = relays.iter().map(|r| r.addr).collect();
    let submitters = Submitters::start(addrs, &all, CLIENTS);
    let mut held_total = 0;
    let mut slowest = Duration::ZERO;
    for kill in 1..=KILLS {
        blocking(|| submitters.wait_for(kill * MESSAGES / (KILLS + 1)));
        let victim = kill % relays.len();
        let pid = relays[victim].pid;
        relays[victim].kill9();
        let killed = Instant::now();
        let held: Vec<String> = pg
            .psql(
                pg.database(),
                "SELECT lease_owner || ' ' || subject FROM outbox_messages WHERE status = 'sending'",
            )
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(owner, _)| pid_of(owner) == Some(pid as u32))
            .map(|(_, subject)| subject.to_owned())
            .collect();
        held_total += held.len();
        relays[victim] = Relay::start(dirs[victim].path());
        let deadline = killed + Duration::from_secs(TIMEOUT_SECONDS + 10);
        assert_held_arrived_by(&arrivals, &held, deadline, &format!("pg kill {kill}"));
        if let Some(last) = held.iter().filter_map(|s| arrivals.at(s)).max() {
            slowest = slowest.max(last.saturating_duration_since(killed));
        }
    }
    blocking(|| submitters.join());
    arrivals.wait_for(MESSAGES, Duration::from_secs(60));
    eprintln!(
        "postgres, 3 relays: {KILLS} kills, {held_total} leased messages taken back, the slowest arrived {:.2} s after its worker died (workerTimeoutSeconds {TIMEOUT_SECONDS})",
        slowest.as_secs_f64()
    );
    drop(relays);
    arrivals.finish().await;
    assert_complete(
        &server,
        &all,
        KILLS * (CLIENTS + CONNECTIONS),
        "postgres relays",
    );
    assert_eq!(
        pg.psql(
            pg.database(),
            "SELECT count(*) FROM outbox_messages WHERE status NOT IN ('sent', 'sending')"
        ),
        "0"
    );
}
