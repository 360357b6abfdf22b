//! `mailgate demo` (cargo feature `demo`): the real binary starts its dev
//! servers, sends one message per strategy and exits 0 only if each arrived
//! as expected; `--serve` reports what arrives and removes its folder (key
//! files included) on SIGTERM and SIGHUP as on Ctrl-C.

#![cfg(feature = "demo")]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn demo_delivers_with_all_three_strategies() {
    let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("demo")
        // Global flags do not apply to the demo; a stray config folder
        // must not matter either.
        .env("MAILGATE_CONFIG_DIR", "/nonexistent/mailgate-config")
        .stdin(Stdio::null())
        .output()
        .expect("mailgate runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // One section per strategy, each chosen by its rule and delivered.
    for (strategy, rule, auth, tls) in [
        ("open", "no-auth-flag", "AUTH none", "TLS no"),
        (
            "basic",
            "basic-only",
            "AUTH PLAIN as alm@example.com",
            "TLS yes",
        ),
        (
            "oauth",
            "oauth-only",
            "AUTH XOAUTH2 as alm@example.com",
            "TLS yes",
        ),
    ] {
        let section = stdout
            .split("\n\n")
            .find(|s| s.starts_with(&format!("{strategy}: ")))
            .unwrap_or_else(|| panic!("no {strategy} section in:\n{stdout}"));
        assert!(
            section.contains(&format!("strategy    {strategy}\n")),
            "{section}"
        );
        assert!(
            section.contains(&format!("rule        {rule}: ")),
            "{section}"
        );
        assert!(section.contains(tls), "{section}");
        assert!(section.contains(auth), "{section}");
        assert!(
            section.contains(&format!("Subject \"mailgate demo: {strategy}\"")),
            "{section}"
        );
        let tokens = if strategy == "oauth" { 1 } else { 0 };
        assert!(
            section.contains(&format!("tokens      {tokens} fetched")),
            "{section}"
        );
        assert!(
            section.contains("result      delivered as expected"),
            "{section}"
        );
    }
    assert!(
        stdout.contains("demo ok: open, basic and oauth all delivered as expected"),
        "{stdout}"
    );
    // Secrets are stored encrypted, so loading them warns about nothing.
    assert!(!stderr.contains("plain text"), "{stderr}");
    assert!(!stdout.contains("demo-Passw0rd") && !stderr.contains("demo-Passw0rd"));
    assert!(!stdout.contains("demo-client-secret") && !stderr.contains("demo-client-secret"));
}

#[test]
fn demo_removes_its_config_folders() {
    let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("demo")
        .stdin(Stdio::null())
        .output()
        .expect("mailgate runs");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let root = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("config folders"))
        .and_then(|rest| rest.trim().strip_suffix("/{open,basic,oauth}"))
        .unwrap_or_else(|| panic!("no config folder line in:\n{stdout}"));
    assert!(
        !std::path::Path::new(root).exists(),
        "{root} is left behind"
    );
}

#[test]
fn demo_help_says_the_config_options_do_not_apply() {
    let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .args(["demo", "--help"])
        .output()
        .expect("mailgate runs");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    // clap lists the global options; the help says which ones the demo ignores.
    assert!(help.contains("--config-dir <DIR>"), "{help}");
    assert!(
        help.contains(
            "The demo ignores --config-dir, --is, --security, --key-file and MAILGATE_CONFIG_DIR"
        ),
        "{help}"
    );
}

/// A `mailgate demo --serve` running, its stdout lines arriving on a channel.
struct Serving {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Serving {
    fn start() -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .args(["demo", "--serve"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mailgate runs");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serving {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line holding `text` (waiting up to 60 s for it).
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no line with {text:?} in:\n{}", self.seen.join("\n"));
                }
            }
        }
    }

    /// The temporary folder holding the config folders.
    fn root(&mut self) -> PathBuf {
        let line = self.wait_for("  config folders   ");
        let root = line
            .trim()
            .strip_prefix("config folders")
            .and_then(|rest| rest.trim().strip_suffix("/{open,basic,oauth}"))
            .unwrap_or_else(|| panic!("odd line {line:?}"));
        PathBuf::from(root)
    }

    /// Sends `signal` and waits (up to 30 s) for the exit code.
    fn stop(mut self, signal: i32) -> Option<i32> {
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running 30 s after signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve_until(signal: i32) {
    let mut serving = Serving::start();
    let root = serving.root();
    serving.wait_for("serving until Ctrl-C");
    assert!(
        root.join("basic/mailgate.key").exists(),
        "{}",
        root.display()
    );
    // The report loop follows arrivals: a hand-made send is reported.
    let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("--config-dir")
        .arg(root.join("open"))
        .args([
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "by hand",
            "--body",
            "b",
        ])
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("mailgate runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = serving.wait_for("received on the relay server");
    assert!(line.contains("Subject \"by hand\""), "{line}");
    assert_eq!(serving.stop(signal), Some(0), "serving ends as on Ctrl-C");
    assert!(!root.exists(), "{} is left behind", root.display());
}

#[test]
fn serve_removes_its_folder_on_sigterm() {
    serve_until(libc::SIGTERM);
}

#[test]
fn serve_removes_its_folder_on_sighup() {
    serve_until(libc::SIGHUP);
}

#[test]
fn serve_removes_its_folder_on_ctrl_c() {
    serve_until(libc::SIGINT);
}
