//! A queued message always has a deliverer: `sendmail` and `send --queue`
//! that leave a message queued with no worker alive start one detached
//! `mailgate deliver --until-empty`, which sends it and exits once nothing
//! is queued; none is started while a worker runs, or with
//! `mailgate.outbox.autoDeliver=false`; `check` says whether a worker is
//! alive.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use mailgate_devserver::{DevSmtpServer, Fault, Stage};
use mailgate_integration_tests::ConfigDir;
use support::{Input, config, mailgate, mailgate_cmd};

/// A dev server that answers the first MAIL with 451: the first attempt
/// leaves the message queued.
async fn busy_once() -> DevSmtpServer {
    DevSmtpServer::builder()
        .fault(Fault::reply(Stage::Mail, 451, "4.3.2 Busy, try again").times(1))
        .start()
        .await
        .expect("dev server starts")
}

fn folder(server: &DevSmtpServer, extra: &[(&str, &str)]) -> ConfigDir {
    let mut keys = vec![
        ("mailgate.outbox.retry.initialSeconds", "1"),
        ("mailgate.outbox.retry.maxSeconds", "1"),
    ];
    keys.extend_from_slice(extra);
    config(server, &keys)
}

/// Processes running `deliver --until-empty` on `dir`.
fn started_workers(dir: &Path) -> usize {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("--until-empty") && c.contains(&needle))
        .count()
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sendmail(dir: &ConfigDir, subject: &str) {
    let out = mailgate(
        dir,
        &["sendmail", "dev@example.com"],
        Input::text(&format!("Subject: {subject}\n\nbody\n")),
    )
    .await;
    out.assert_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendmail_with_the_server_busy_starts_a_worker_that_delivers_and_exits() {
    let server = busy_once().await;
    let dir = folder(&server, &[]);
    sendmail(&dir, "auto").await;
    // Left queued by sendmail (its next attempt is at least 0.5 s away).
    let list = mailgate(&dir, &["queue", "list", "--json"], Input::Empty).await;
    assert_eq!(list.json()[0]["status"], "queued", "{}", list.stdout());
    assert!(server.messages().is_empty());
    // The message arrives with nothing else started by hand.
    wait_until("the message delivered", Duration::from_secs(20), || {
        server.messages().len() == 1
    })
    .await;
    // The started worker leaves once nothing is queued.
    wait_until("the worker gone", Duration::from_secs(10), || {
        started_workers(dir.path()) == 0
    })
    .await;
    let list = mailgate(&dir, &["queue", "list", "--all", "--json"], Input::Empty).await;
    assert_eq!(list.json()[0]["status"], "sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_worker_is_started_with_auto_deliver_off_and_check_says_so() {
    let server = busy_once().await;
    let dir = folder(&server, &[("mailgate.outbox.autoDeliver", "false")]);
    sendmail(&dir, "manual").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(started_workers(dir.path()), 0);
    assert!(server.messages().is_empty());
    let check = mailgate(&dir, &["check"], Input::Empty).await;
    assert!(
        check
            .stdout()
            .contains("workers: none alive, 1 message(s) waiting"),
        "{}",
        check.stdout()
    );
    let json = mailgate(&dir, &["check", "--json"], Input::Empty)
        .await
        .json();
    assert_eq!(json["outbox"]["workers"], 0);
    assert_eq!(json["outbox"]["queued"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_means_none_is_started() {
    let server = busy_once().await;
    let dir = folder(&server, &[]);
    let mut deliver = mailgate_cmd(dir.path(), &["deliver"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("deliver starts");
    // Until the worker has announced itself.
    let started = Instant::now();
    loop {
        let json = mailgate(&dir, &["check", "--json"], Input::Empty)
            .await
            .json();
        if json["outbox"]["workers"] == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{json}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let check = mailgate(&dir, &["check"], Input::Empty).await;
    assert!(
        check.stdout().contains("workers: 1 alive"),
        "{}",
        check.stdout()
    );
    sendmail(&dir, "with a worker").await;
    assert_eq!(started_workers(dir.path()), 0, "none started beside it");
    wait_until("the message delivered", Duration::from_secs(20), || {
        server.messages().len() == 1
    })
    .await;
    // SAFETY: kill with a pid this test started.
    unsafe { libc::kill(deliver.id() as i32, libc::SIGTERM) };
    assert!(deliver.wait().unwrap().success());
}
