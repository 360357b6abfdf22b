//! The outbox through the binary, on SQLite: `send --queue`, `queue ...`,
//! `deliver`, `sendmail` into the outbox, and what an operator meets: a
//! server that is down, a permanent refusal, a killed worker, SIGTERM, a
//! full disk, a read-only or damaged database.

mod support;

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailgate_devserver::{DevSmtpServer, Fault, Stage};
use mailgate_integration_tests::{ConfigDir, unused_port};
use support::{Input, mailgate_cmd, run};

const WAIT: Duration = Duration::from_secs(20);

/// An open-relay config folder pointing at `port`, with `extra` keys.
fn folder(port: u16, extra: &[(&str, &str)]) -> ConfigDir {
    let port = port.to_string();
    let mut is = vec![
        ("mksis.logging.email.from", support::SENDER),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
        ("mksis.logging.email.server.port", port.as_str()),
        ("mailgate.smtp.timeoutSeconds", "5"),
        // These tests run their own workers (cli/tests/auto_deliver.rs
        // tests the one sendmail starts).
        ("mailgate.outbox.autoDeliver", "false"),
    ];
    is.extend_from_slice(extra);
    ConfigDir::with_properties(&is, &[])
}

/// Points the folder at another port (the config is read by every command).
fn repoint(dir: &ConfigDir, port: u16, extra: &[(&str, &str)]) {
    let port = port.to_string();
    let mut is = vec![
        ("mksis.logging.email.from", support::SENDER),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
        ("mksis.logging.email.server.port", port.as_str()),
        ("mailgate.smtp.timeoutSeconds", "5"),
        // These tests run their own workers (cli/tests/auto_deliver.rs
        // tests the one sendmail starts).
        ("mailgate.outbox.autoDeliver", "false"),
    ];
    is.extend_from_slice(extra);
    dir.write_is(&is);
}

async fn mailgate(dir: &ConfigDir, args: &[&str]) -> support::Run {
    run(mailgate_cmd(dir.path(), args), Input::Empty).await
}

async fn queue_one(dir: &ConfigDir, subject: &str, extra: &[&str]) -> support::Run {
    let mut args = vec![
        "send",
        "--queue",
        "--to",
        "dev@example.com",
        "--subject",
        subject,
        "--body",
        "queued body",
    ];
    args.extend_from_slice(extra);
    mailgate(dir, &args).await
}

async fn list(dir: &ConfigDir, all: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["queue", "list", "--json"];
    if all {
        args.push("--all");
    }
    let run = mailgate(dir, &args).await;
    run.assert_code(0);
    run.json().as_array().expect("a JSON array").clone()
}

#[tokio::test]
async fn queued_while_the_server_is_down_then_delivered_once() {
    let dir = folder(unused_port(), &[]);
    let run = queue_one(&dir, "down", &[]).await;
    run.assert_code(0);
    assert_eq!(
        run.stdout().lines().last(),
        Some("queued 1"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stderr().contains("will be tried again"),
        "{}",
        run.stderr()
    );

    let run = queue_one(&dir, "down 2", &["--json"]).await;
    run.assert_code(0);
    assert_eq!(run.json(), serde_json::json!({"id": 2, "status": "queued"}));

    let listed = list(&dir, false).await;
    assert_eq!(listed.len(), 2);
    let m = &listed[0];
    assert_eq!(m["id"], 1);
    assert_eq!(m["status"], "queued");
    assert_eq!(m["attempts"], 1);
    assert!(
        m["last_error"].as_str().unwrap().contains("cannot connect"),
        "{m}"
    );
    assert!(m["next_attempt"].as_str().unwrap().ends_with('Z'), "{m}");
    assert_eq!(m["from"], support::SENDER);
    assert_eq!(m["to"], serde_json::json!(["dev@example.com"]));
    assert_eq!(m["subject"], "down");

    // The server comes up; flush sends each exactly once.
    let server = DevSmtpServer::builder().start().await.unwrap();
    repoint(&dir, server.port(), &[]);
    let run = mailgate(&dir, &["-v", "queue", "flush"]).await;
    run.assert_code(0);
    assert!(
        run.stdout().contains("2 sent, 0 still queued, 0 dead"),
        "{}",
        run.stdout()
    );
    // One log line per recipient and attempt (the worker's outcome log).
    assert_eq!(
        run.stderr()
            .matches("outbox: delivered to dev@example.com: ")
            .count(),
        2,
        "{}",
        run.stderr()
    );
    let messages = server.wait_for_messages(2, WAIT).await;
    assert_eq!(messages.len(), 2);
    let again = mailgate(&dir, &["queue", "flush"]).await;
    again.assert_code(0);
    assert_eq!(server.messages().len(), 2, "nothing sent twice");

    assert!(list(&dir, false).await.is_empty(), "sent ones are left out");
    let all = list(&dir, true).await;
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .all(|m| m["status"] == "sent" && m["next_attempt"].is_null())
    );

    let stats = mailgate(&dir, &["queue", "stats", "--json"]).await;
    stats.assert_code(0);
    let s = stats.json();
    assert_eq!(
        (s["queued"].clone(), s["sent"].clone(), s["dead"].clone()),
        (0.into(), 2.into(), 0.into())
    );
    assert!(s["outbox"].as_str().unwrap().starts_with("sqlite "), "{s}");
    server.shutdown().await;
}

#[tokio::test]
async fn delivered_at_once_when_the_server_is_up() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let dir = folder(server.port(), &[]);
    let run = queue_one(&dir, "up", &[]).await;
    run.assert_code(0);
    assert_eq!(run.stdout().trim(), "sent 1");
    assert_eq!(server.wait_for_messages(1, WAIT).await.len(), 1);
    let run = queue_one(&dir, "up", &["-q"]).await;
    run.assert_code(0);
    assert_eq!(run.stdout(), "", "-q prints nothing on success");
    let check = mailgate(&dir, &["check", "--json"]).await;
    check.assert_code(0);
    assert_eq!(check.json()["outbox"]["sent"], 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_sent_message_is_listed_with_its_size_and_says_its_body_was_dropped() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let body = "a line of a long report\n".repeat(2000);
    for (keep, dropped) in [(None, true), (Some("true"), false)] {
        let extra: Vec<(&str, &str)> = keep
            .map(|k| vec![("mailgate.outbox.keepSentBodies", k)])
            .unwrap_or_default();
        let dir = folder(server.port(), &extra);
        let run = mailgate(
            &dir,
            &[
                "send",
                "--queue",
                "--to",
                "dev@example.com",
                "--subject",
                "big",
                "--body",
                &body,
            ],
        )
        .await;
        run.assert_code(0);
        assert_eq!(run.stdout().trim(), "sent 1");
        let listed = list(&dir, true).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["status"], "sent");
        assert_eq!(
            listed[0]["body_dropped"], dropped,
            "{keep:?}: {:#}",
            listed[0]
        );
        let size = listed[0]["size"].as_u64().unwrap();
        assert!(size > body.len() as u64, "the whole message's size: {size}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_with_the_reply_then_retry_and_delete() {
    let server = DevSmtpServer::builder()
        .fault(Fault::reply(Stage::Rcpt, 550, "5.1.1 No such user here").times(1))
        .start()
        .await
        .unwrap();
    let dir = folder(server.port(), &[]);
    let run = queue_one(&dir, "refused", &[]).await;
    run.assert_code(65);
    assert_eq!(run.stdout().trim(), "dead 1");
    assert!(
        run.stderr().contains("No such user here"),
        "{}",
        run.stderr()
    );
    let m = &list(&dir, false).await[0];
    assert_eq!(m["status"], "dead");
    assert!(
        m["last_error"]
            .as_str()
            .unwrap()
            .contains("550 5.1.1 No such user here"),
        "{m}"
    );
    assert!(m["next_attempt"].is_null());

    // The fault fired once: retried by hand, it goes through.
    mailgate(&dir, &["queue", "retry", "1"])
        .await
        .assert_code(0);
    assert_eq!(list(&dir, false).await[0]["status"], "queued");
    mailgate(&dir, &["queue", "flush"]).await.assert_code(0);
    assert_eq!(server.wait_for_messages(1, WAIT).await.len(), 1);

    // retry --dead, delete, and unknown ids.
    queue_one(&dir, "x", &[]).await.assert_code(0);
    mailgate(&dir, &["queue", "delete", "2"])
        .await
        .assert_code(0);
    let gone = mailgate(&dir, &["queue", "delete", "2"]).await;
    gone.assert_code(64);
    mailgate(&dir, &["queue", "retry", "99"])
        .await
        .assert_code(64);
    let dead = mailgate(&dir, &["queue", "retry", "--dead"]).await;
    dead.assert_code(0);
    assert!(
        dead.stdout().contains("0 dead message(s)"),
        "{}",
        dead.stdout()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn flush_exit_codes_say_what_is_left() {
    // 69: some became dead, none left queued.
    let server = DevSmtpServer::builder()
        .fault(Fault::reply(Stage::Rcpt, 550, "5.1.1 unknown"))
        .start()
        .await
        .unwrap();
    let dir = folder(unused_port(), &[]);
    queue_one(&dir, "a", &[]).await.assert_code(0);
    repoint(&dir, server.port(), &[]);
    let run = mailgate(&dir, &["queue", "flush"]).await;
    run.assert_code(69);
    assert!(
        run.stdout().contains("0 sent, 0 still queued, 1 dead"),
        "{}",
        run.stdout()
    );
    // 75: some remain queued.
    repoint(&dir, unused_port(), &[]);
    queue_one(&dir, "b", &[]).await.assert_code(0);
    mailgate(&dir, &["queue", "flush"]).await.assert_code(75);
    server.shutdown().await;
}

/// `mailgate deliver` in the background.
fn deliver(dir: &Path) -> Child {
    mailgate_cmd(dir, &["deliver"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mailgate deliver starts")
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mailgate deliver did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_killed_mid_run_loses_nothing_and_duplicates_at_most_one() {
    // Each message takes 150 ms at the end of DATA, so the kill lands mid-run.
    let server = DevSmtpServer::builder()
        .fault(Fault::delay(Stage::DataEnd, Duration::from_millis(150)))
        .start()
        .await
        .unwrap();
    // Short lease and back-off: the queued messages are due at once.
    let lease = [
        ("mailgate.outbox.leaseSeconds", "2"),
        ("mailgate.smtp.maxConnections", "1"),
        ("mailgate.outbox.retry.initialSeconds", "1"),
        ("mailgate.outbox.retry.maxSeconds", "1"),
    ];
    let dir = folder(unused_port(), &lease);
    for i in 0..30 {
        queue_one(&dir, &format!("m{i}"), &["-q"])
            .await
            .assert_code(0);
    }
    repoint(&dir, server.port(), &lease);
    let mut worker = deliver(dir.path());
    let deadline = Instant::now() + WAIT;
    while server.messages().len() < 8 {
        assert!(Instant::now() < deadline, "the worker delivers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: no chance to finish or release anything.
    worker.kill().unwrap();
    worker.wait().unwrap();
    let delivered_before = server.messages().len();
    assert!(delivered_before < 30, "killed mid-run");

    let mut worker = deliver(dir.path());
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let stats = mailgate(&dir, &["queue", "stats", "--json"]).await.json();
        if stats["sent"] == 30 {
            break;
        }
        assert!(Instant::now() < deadline, "all 30 delivered: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM: finishes and exits 0.
    // SAFETY: the pid is our running child.
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    assert!(wait_exit(&mut worker, Duration::from_secs(10)).success());

    let mut subjects: Vec<String> = server
        .messages()
        .iter()
        .map(|m| m.subject().unwrap_or_default())
        .collect();
    let total = subjects.len();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 30, "every message arrived");
    assert!(total - 30 <= 1, "at most one duplicate, got {}", total - 30);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_message_in_hand() {
    let server = DevSmtpServer::builder()
        .fault(Fault::delay(Stage::DataEnd, Duration::from_millis(1500)))
        .start()
        .await
        .unwrap();
    let extra = [
        ("mailgate.smtp.maxConnections", "1"),
        ("mailgate.outbox.retry.initialSeconds", "1"),
        ("mailgate.outbox.retry.maxSeconds", "1"),
    ];
    let dir = folder(unused_port(), &extra);
    queue_one(&dir, "slow", &["-q"]).await.assert_code(0);
    repoint(&dir, server.port(), &extra);
    let mut worker = deliver(dir.path());
    // Wait until the message is being transferred, then ask the worker to stop.
    let deadline = Instant::now() + WAIT;
    while !server.commands().iter().any(|c| c.verb == "DATA") {
        assert!(Instant::now() < deadline, "the worker started DATA");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SAFETY: the pid is our running child.
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut worker, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert_eq!(
        server.messages().len(),
        1,
        "the message in hand was finished"
    );
    let all = list(&dir, true).await;
    assert_eq!(all[0]["status"], "sent", "{all:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn sendmail_stores_then_sends_and_keeps_what_it_cannot_send() {
    let dir = folder(unused_port(), &[]);
    let run = run(
        mailgate_cmd(dir.path(), &["sendmail", "-i", "dev@example.com"]),
        Input::text("Subject: via sendmail\n\nbody\n"),
    )
    .await;
    run.assert_code(0);
    assert_eq!(run.stdout(), "", "sendmail is silent");
    let listed = list(&dir, false).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["subject"], "via sendmail");
    assert_eq!(listed[0]["status"], "queued");
}

#[tokio::test]
async fn sendmail_with_queue_off_sends_at_once_and_never_opens_the_outbox() {
    // The Debian package's /etc/mailgate: every caller sends directly, so
    // no caller creates outbox files the services' user cannot open.
    let queue_off = [("mailgate.sendmail.queue", "false")];
    let outbox_files = |dir: &ConfigDir| -> Vec<String> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("mailgate-outbox"))
            .collect()
    };
    // Server down: a temporary failure for the caller (75), nothing stored.
    let dir = folder(unused_port(), &queue_off);
    let down = run(
        mailgate_cmd(dir.path(), &["sendmail", "-i", "dev@example.com"]),
        Input::text("Subject: not queued\n\nbody\n"),
    )
    .await;
    down.assert_code(75);
    assert_eq!(outbox_files(&dir), Vec::<String>::new());
    // Server up: delivered, silent, and still no outbox.
    let server = DevSmtpServer::builder().start().await.unwrap();
    let dir = folder(server.port(), &queue_off);
    let up = run(
        mailgate_cmd(dir.path(), &["sendmail", "-i", "dev@example.com"]),
        Input::text("Subject: at once\n\nbody\n"),
    )
    .await;
    up.assert_code(0);
    assert_eq!(up.stdout(), "");
    assert_eq!(up.stderr(), "", "no warning about the outbox");
    assert_eq!(server.messages().len(), 1);
    assert_eq!(outbox_files(&dir), Vec::<String>::new());
    // Anything but true or false is a configuration error naming the key.
    let dir = folder(server.port(), &[("mailgate.sendmail.queue", "no")]);
    let bad = run(
        mailgate_cmd(dir.path(), &["sendmail", "-i", "dev@example.com"]),
        Input::text("Subject: bad flag\n\nbody\n"),
    )
    .await;
    bad.assert_code(78);
    assert!(
        bad.stderr().contains("mailgate.sendmail.queue"),
        "{}",
        bad.stderr()
    );
    assert_eq!(server.messages().len(), 1);
    server.shutdown().await;
}

/// Runs `cmd` with writes limited to `max_bytes` per file (RLIMIT_FSIZE)
/// and SIGXFSZ ignored, so a write past it fails as on a full disk.
fn with_file_size_limit(mut cmd: Command, max_bytes: u64) -> Command {
    // SAFETY: setrlimit and signal are async-signal-safe; this runs in the
    // child before exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: max_bytes,
                rlim_max: max_bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    cmd
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_loses_nothing_stored() {
    let dir = folder(unused_port(), &[]);
    for i in 0..3 {
        queue_one(&dir, &format!("kept {i}"), &["-q"])
            .await
            .assert_code(0);
    }
    let db = std::fs::metadata(dir.path().join("mailgate-outbox.db"))
        .unwrap()
        .len();
    let wal = std::fs::metadata(dir.path().join("mailgate-outbox.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    let body = dir.path().join("big.txt");
    std::fs::write(&body, "x".repeat(76).repeat(30_000).as_bytes()).unwrap();
    let body = body.display().to_string();
    let cmd = mailgate_cmd(
        dir.path(),
        &[
            "send",
            "--queue",
            "--to",
            "dev@example.com",
            "--subject",
            "too big",
            "--body-file",
            &body,
        ],
    );
    let run = run(
        with_file_size_limit(cmd, db.max(wal) + 64 * 1024),
        Input::Empty,
    )
    .await;
    run.assert_code(74);
    let err = run.stderr();
    assert!(err.contains("mailgate-outbox.db"), "names the file: {err}");
    // RLIMIT_FSIZE makes SQLite see an I/O error (a full disk: SQLITE_FULL).
    assert!(
        err.contains("disk has room") || err.contains("disk is full"),
        "{err}"
    );
    let listed = list(&dir, false).await;
    let subjects: Vec<&str> = listed
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        ["kept 0", "kept 1", "kept 2"],
        "nothing stored was lost, nothing half-written"
    );
}

#[tokio::test]
async fn a_database_this_process_cannot_write_is_a_clear_error() {
    let dir = folder(unused_port(), &[]);
    queue_one(&dir, "kept", &["-q"]).await.assert_code(0);
    // Run as an unprivileged user (root ignores file modes): the folder and
    // the database are root's, readable by all, writable by none.
    use std::os::unix::fs::PermissionsExt as _;
    for name in [
        "mailgate-outbox.db",
        "mailgate-outbox.db-wal",
        "mailgate-outbox.db-shm",
    ] {
        let path = dir.path().join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut cmd = mailgate_cmd(
        dir.path(),
        &[
            "send",
            "--queue",
            "--to",
            "dev@example.com",
            "--subject",
            "ro",
            "--body",
            "b",
        ],
    );
    // SAFETY: getuid is always safe.
    if unsafe { libc::geteuid() } == 0 {
        // As nobody, from a copy of the binary nobody can reach (the
        // checkout may be in a folder only its owner can enter).
        cmd = mailgate_integration_tests::as_other_user(&cmd, 65534);
    }
    let run = run(cmd, Input::Empty).await;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    run.assert_code(74);
    let err = run.stderr();
    assert!(err.contains("mailgate-outbox.db"), "{err}");
    assert!(
        err.contains("read-only") || err.contains("cannot open") || err.contains("writable"),
        "{err}"
    );
    for name in [
        "mailgate-outbox.db",
        "mailgate-outbox.db-wal",
        "mailgate-outbox.db-shm",
    ] {
        let path = dir.path().join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let listed = list(&dir, false).await;
    assert_eq!(listed.len(), 1, "the stored message is still there");
}

#[tokio::test]
async fn a_damaged_database_is_refused_naming_the_file() {
    let dir = folder(unused_port(), &[]);
    std::fs::write(
        dir.path().join("mailgate-outbox.db"),
        b"this is not a database at all, not even close; ".repeat(200),
    )
    .unwrap();
    let run = queue_one(&dir, "x", &[]).await;
    run.assert_code(74);
    let err = run.stderr();
    assert!(err.contains("mailgate-outbox.db"), "{err}");
    assert!(err.contains("not a SQLite database"), "{err}");
    let check = mailgate(&dir, &["check"]).await;
    check.assert_code(74);
    assert!(
        check.stdout().contains("outbox:") && check.stdout().contains("FAILED"),
        "{}",
        check.stdout()
    );
}

#[tokio::test]
async fn check_shows_the_outbox_without_creating_it() {
    let dir = folder(
        unused_port(),
        &[("mailgate.outbox.url", "sqlite:spool/outbox.db")],
    );
    std::fs::create_dir(dir.path().join("spool")).unwrap();
    let run = mailgate(&dir, &["check"]).await;
    run.assert_code(0);
    assert!(
        run.stdout().contains("spool/outbox.db (not created yet"),
        "{}",
        run.stdout()
    );
    assert!(!dir.path().join("spool/outbox.db").exists());
    let bad = folder(
        unused_port(),
        &[("mailgate.outbox.url", "mysql://user:pw@db/x")],
    );
    let run = mailgate(&bad, &["check"]).await;
    run.assert_code(78);
    assert!(
        run.stderr().contains("mailgate.outbox.url"),
        "{}",
        run.stderr()
    );
    assert!(
        !run.stderr().contains("pw@"),
        "no password shown: {}",
        run.stderr()
    );
}
