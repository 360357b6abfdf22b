//! The CLI side of `integration-tests/tests/faults.rs`: a fault case
//! through the binary (only this package can name it).

#![cfg(feature = "basic")]

mod fault {
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
        let dir = ConfigDir::basic_over_starttls(
            server.port(),
            USER,
            PASSWORD,
            server.ca_cert_pem(),
            &[("mailgate.smtp.timeoutSeconds", timeout)],
        );
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
