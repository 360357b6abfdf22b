//! `mailgate demo` out of the box: the real binary starts its dev servers,
//! sends one message per strategy and exits 0 only if each arrived as
//! expected. Also the CLI side of `integration-tests/tests/faults.rs`: a
//! fault case through the binary (only this package can name it).

#![cfg(feature = "demo")]

use std::process::{Command, Stdio};

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
        ("open", "neither", "AUTH none", "TLS no"),
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

mod fault {
    //! A fault case through the real binary: the devserver refuses, the
    //! exit code says what kind of failure it was.

    use std::time::{Duration, Instant};

    use mailgate_devserver::{DevSmtpServer, Fault, Mechanism, Stage};
    use mailgate_integration_tests::ConfigDir;

    const USER: &str = "alm@example.com";
    const PASSWORD: &str = "cli-fault-pw";

    async fn server_and_config(fault: Fault, timeout: &str) -> (DevSmtpServer, ConfigDir) {
        let server = DevSmtpServer::builder()
            .starttls_required()
            .mechanisms([Mechanism::Plain])
            .user(USER, PASSWORD)
            .fault(fault)
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
            ("mailgate.smtp.timeoutSeconds", timeout),
        ]);
        dir.write_security(&[]);
        (server, dir)
    }

    async fn send(dir: &ConfigDir) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .arg("--config-dir")
            .arg(dir.path())
            .args(["send", "--to", "dev@example.com", "--subject", "fault"])
            .args(["--body", "b"])
            .env_remove("MAILGATE_CONFIG_DIR")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("mailgate runs")
    }

    #[tokio::test]
    async fn greylisting_451_at_rcpt_exits_75() {
        let (server, dir) =
            server_and_config(Fault::reply(Stage::Rcpt, 451, "4.7.1 Greylisted"), "10").await;
        let out = send(&dir).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{stderr}");
        assert!(
            stderr.contains("refused 1 of 1 recipient(s): <dev@example.com> 451"),
            "{stderr}"
        );
        assert!(stderr.contains("Greylisted"), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing printed as sent");
        assert!(server.messages().is_empty());
        assert_eq!(server.auth_attempts().len(), 1);
    }

    #[tokio::test]
    async fn slow_server_exits_75_within_the_timeout() {
        let (server, dir) =
            server_and_config(Fault::delay(Stage::Mail, Duration::from_secs(3)), "1").await;
        let start = Instant::now();
        let out = send(&dir).await;
        let elapsed = start.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{stderr}");
        assert!(stderr.contains("mailgate.smtp.timeoutSeconds"), "{stderr}");
        assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
        assert!(server.messages().is_empty());
    }
}
