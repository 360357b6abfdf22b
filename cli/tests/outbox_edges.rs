//! The outbox's own edges through the binary: two processes creating a new
//! SQLite outbox at the same moment (with fsync slowed by strace), `deliver`
//! on damaged files, a file-size limit, and how `check` shows the outbox.

mod support;

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use mailgate_integration_tests::{ConfigDir, unused_port};
use support::{Input, mailgate, mailgate_cmd, run};

/// A folder whose upstream is down: `send --queue` stores and exits 0.
fn folder() -> ConfigDir {
    let port = unused_port().to_string();
    ConfigDir::with_properties(
        &[
            ("mksis.logging.email.from", "alm@example.com"),
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", port.as_str()),
            ("mailgate.smtp.timeoutSeconds", "5"),
            // No worker started beside: `strace -f` would wait for it.
            ("mailgate.outbox.autoDeliver", "false"),
        ],
        &[],
    )
}

const QUEUE: &[&str] = &[
    "-q",
    "send",
    "--queue",
    "--to",
    "dev@example.com",
    "--subject",
    "s",
    "--body",
    "b",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_first_uses_at_once_both_store_their_message() {
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "strace is needed (.ci/run installs it)"
    );
    for trial in 0..40 {
        let dir = folder();
        let spawn = || {
            // fsync and fdatasync each take 20 ms longer: a slow disk.
            let mut cmd = Command::new("strace");
            cmd.args([
                "-f",
                "-qq",
                "-o",
                "/dev/null",
                "-e",
                "trace=fsync,fdatasync",
            ])
            .args(["-e", "inject=fsync,fdatasync:delay_exit=20000"])
            .arg(support::bin())
            .arg("--config-dir")
            .arg(dir.path())
            .args(QUEUE)
            .env_remove("MAILGATE_CONFIG_DIR");
            run(cmd, Input::Empty)
        };
        let (a, b) = tokio::join!(spawn(), spawn());
        a.assert_code(0);
        b.assert_code(0);
        let list = mailgate(&dir, &["queue", "list", "--json"], Input::Empty).await;
        list.assert_code(0);
        assert_eq!(
            list.json().as_array().map(Vec::len),
            Some(2),
            "trial {trial}: both stored"
        );
    }
}

/// Five kinds of damage; `deliver` names the file and exits 74 at once.
#[tokio::test]
async fn deliver_on_a_damaged_outbox_exits_74_naming_the_file() {
    let healthy = folder();
    mailgate(&healthy, QUEUE, Input::Empty).await.assert_code(0);
    let db = std::fs::read(healthy.path().join("mailgate-outbox.db")).expect("a database");
    let mut with_bad_pages = db.clone();
    for b in with_bad_pages.iter_mut().skip(100) {
        *b = 0xA5;
    }
    let kinds: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("zeros", vec![0; 8192]),
        ("a text file", b"this is not a database\n".repeat(200)),
        // Its header kept, the rest of its first page gone.
        ("a database cut after its header", {
            let mut cut = db[..100].to_vec();
            cut.resize(8192, 0);
            cut
        }),
        ("a database with damaged pages", with_bad_pages),
    ];
    for (kind, bytes) in kinds {
        let dir = folder();
        let file = dir.path().join("mailgate-outbox.db");
        std::fs::write(&file, &bytes).unwrap();
        let out = mailgate(&dir, &["deliver"], Input::Empty).await;
        out.assert_code(74);
        out.assert_quick();
        assert!(
            out.stderr().contains(&file.display().to_string()),
            "{kind}: {}",
            out.stderr()
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            bytes,
            "{kind}: left as it was"
        );
    }
}

#[tokio::test]
async fn a_file_size_limit_is_exit_74_not_a_signal() {
    let dir = folder();
    // The outbox exists (schema written) before the limit applies.
    mailgate(&dir, QUEUE, Input::Empty).await.assert_code(0);
    let body = "0123456789abcdef\n".repeat(64 * 1024);
    let mut cmd = mailgate_cmd(
        dir.path(),
        &[
            "send",
            "--queue",
            "--to",
            "dev@example.com",
            "--subject",
            "big",
            "--body-file",
            "-",
        ],
    );
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256 * 1024,
                rlim_max: 256 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run(cmd, Input::text(&body)).await;
    out.assert_code(74);
    assert!(
        out.stderr().contains("mailgate-outbox.db"),
        "{}",
        out.stderr()
    );
    let list = mailgate(&dir, &["queue", "list", "--json"], Input::Empty).await;
    let subjects: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(subjects, ["s"], "the refused message was not stored");
}

#[tokio::test]
async fn check_shows_a_sqlite_outbox_as_it_is_written() {
    let dir = folder();
    let mut is = std::fs::read_to_string(dir.path().join("is.properties")).unwrap();
    is.push_str("mailgate.outbox.url=sqlite:queue/outbox.db\n");
    std::fs::write(dir.path().join("is.properties"), is).unwrap();
    let out = mailgate(&dir, &["check"], Input::Empty).await;
    let text = format!("{}{}", out.stdout(), out.stderr());
    assert!(text.contains("sqlite:queue/outbox.db"), "{text}");
    assert!(!text.contains("postgres://sqlite"), "{text}");
}
