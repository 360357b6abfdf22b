//! The command line's contract: output, exit codes, and no secret in any
//! output at any log level. Runs the real binary against Nodemailer's `smtp-server`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use mailgate_integration_tests::{
    ConfigDir, PeerConfig, PeerKind, SmtpPeer, TestPki, exit_code as code, output_text as text,
    run_mailgate, unused_port,
};

const USER: &str = "alm@example.com";
const PASSWORD: &str = "Sup3r-Secret-Pa55";
const WAIT: Duration = Duration::from_secs(10);

fn mailgate(dir: &Path, args: &[&str]) -> Output {
    run_mailgate(env!("CARGO_BIN_EXE_mailgate"), dir, args)
}

/// Every form the password could leak in: plain, and inside AUTH PLAIN/LOGIN payloads.
fn assert_no_secret(out: &Output) {
    let (stdout, stderr) = text(out);
    let b64 = base64::engine::general_purpose::STANDARD;
    let forms = [
        PASSWORD.to_owned(),
        b64.encode(PASSWORD),
        b64.encode(format!("\0{USER}\0{PASSWORD}")),
    ];
    for form in &forms {
        assert!(!stdout.contains(form), "secret in stdout:\n{stdout}");
        assert!(!stderr.contains(form), "secret in stderr:\n{stderr}");
    }
}

fn basic_dir(port: u16, pki: &TestPki) -> ConfigDir {
    ConfigDir::basic_over_starttls(
        port,
        USER,
        PASSWORD,
        pki.ca_cert_pem(),
        &[("mailgate.smtp.timeoutSeconds", "10")],
    )
}

fn basic_peer(pki: &TestPki, password: &str) -> SmtpPeer {
    SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(pki)
            .auth(&["PLAIN", "LOGIN"])
            .user(USER, password),
    )
}

#[test]
fn check_prints_strategy_rule_server_tls_and_files() {
    let pki = TestPki::new();
    let dir = basic_dir(2525, &pki);
    let out = mailgate(dir.path(), &["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(stdout.contains("strategy: basic"), "{stdout}");
    assert!(stdout.contains("basic-only"), "{stdout}");
    assert!(stdout.contains("localhost:2525"), "{stdout}");
    assert!(stdout.contains("tls:      starttls"), "{stdout}");
    assert!(stdout.contains("is.properties"), "{stdout}");
    assert_no_secret(&out);
}

#[test]
fn check_json_has_the_contract_fields() {
    let pki = TestPki::new();
    let dir = basic_dir(2525, &pki);
    let out = mailgate(dir.path(), &["check", "--json"]);
    assert_eq!(code(&out), 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["strategy"], "basic");
    assert_eq!(v["rule"], "basic-only");
    assert_eq!(v["server"], "localhost:2525");
    assert_eq!(v["tls"], "starttls");
    assert_no_secret(&out);
}

#[test]
fn server_prints_host_and_port() {
    let pki = TestPki::new();
    let dir = basic_dir(2525, &pki);
    let out = mailgate(dir.path(), &["server"]);
    assert_eq!(code(&out), 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "localhost:2525\n");
}

#[test]
fn send_succeeds_and_logs_no_secret_at_any_level() {
    let pki = TestPki::new();
    let peer = basic_peer(&pki, PASSWORD);
    let dir = basic_dir(peer.port(), &pki);
    for level in ["-q", "-v", "-vv"] {
        let subject = format!("level {level}");
        let out = mailgate(
            dir.path(),
            &[
                level,
                "send",
                "--to",
                "dev@example.com",
                "--subject",
                &subject,
                "--body",
                "hello",
            ],
        );
        let (_, stderr) = text(&out);
        assert_eq!(code(&out), 0, "{stderr}");
        assert_no_secret(&out);
        if level == "-v" {
            assert!(
                stderr.contains("AUTH PLAIN <redacted>"),
                "the conversation is logged:\n{stderr}"
            );
            assert!(stderr.contains("MAIL FROM:<alm@example.com>"), "{stderr}");
        }
    }
    let msgs = peer.wait_for_messages(3, WAIT);
    assert!(
        msgs.iter()
            .all(|m| m.secure && m.user.as_deref() == Some(USER))
    );
}

#[test]
fn check_connect_authenticates_without_sending() {
    let pki = TestPki::new();
    let peer = basic_peer(&pki, PASSWORD);
    let dir = basic_dir(peer.port(), &pki);
    let out = mailgate(dir.path(), &["-vv", "check", "--connect"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(stdout.contains("connect:  ok"), "{stdout}");
    assert!(stdout.contains("encrypted"), "{stdout}");
    assert_no_secret(&out);
    let attempts = peer.wait_for_auth_attempts(1, WAIT);
    assert!(attempts[0].ok);
    assert!(peer.messages().is_empty());
}

#[test]
fn refused_password_exits_77_without_the_secret() {
    let pki = TestPki::new();
    let peer = basic_peer(&pki, "another-password");
    let dir = basic_dir(peer.port(), &pki);
    for level in ["-v", "-vv"] {
        let out = mailgate(
            dir.path(),
            &[
                level,
                "send",
                "--to",
                "dev@example.com",
                "--subject",
                "s",
                "--body",
                "b",
            ],
        );
        let (_, stderr) = text(&out);
        assert_eq!(code(&out), 77, "{stderr}");
        assert!(stderr.contains("refused basic authentication"), "{stderr}");
        assert_no_secret(&out);
    }
    assert!(peer.messages().is_empty());
}

#[test]
fn nothing_listening_is_temporary_75() {
    let pki = TestPki::new();
    let dir = basic_dir(unused_port(), &pki);
    let out = mailgate(
        dir.path(),
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "s",
            "--body",
            "b",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 75, "{stderr}");
    assert!(stderr.contains("cannot connect to SMTP server"), "{stderr}");
}

#[test]
fn unknown_host_exits_68_naming_the_key() {
    let dir = ConfigDir::with_properties(
        &[
            (
                "mksis.logging.email.server.hostname",
                "no-such-host.mailgate.invalid",
            ),
            ("mksis.logging.email.from", USER),
        ],
        &[],
    );
    let out = mailgate(
        dir.path(),
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "s",
            "--body",
            "b",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 68, "{stderr}");
    assert!(
        stderr.contains("`no-such-host.mailgate.invalid` does not resolve")
            && stderr.contains("mksis.logging.email.server.hostname"),
        "{stderr}"
    );
}

#[test]
fn header_injection_exits_65_and_sends_nothing() {
    let pki = TestPki::new();
    let peer = basic_peer(&pki, PASSWORD);
    let dir = basic_dir(peer.port(), &pki);
    let out = mailgate(
        dir.path(),
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "hi\r\nBcc: victim@example.com",
            "--body",
            "b",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 65, "{stderr}");
    assert!(stderr.contains("subject"), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(peer.connections(), 0);
}

#[test]
fn body_from_stdin_and_file() {
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new());
    let port = peer.port().to_string();
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", &port),
            ("mksis.logging.email.from", USER),
        ],
        &[],
    );
    let body_file = dir.write_file("body.txt", "from a file\n");
    let out = mailgate(
        dir.path(),
        &[
            "send",
            "--to",
            "a@example.com",
            "--subject",
            "f",
            "--body-file",
            body_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out).1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("--config-dir")
        .arg(dir.path())
        .args([
            "send",
            "--to",
            "a@example.com",
            "--cc",
            "c@example.com",
            "--bcc",
            "b@example.com",
            "--subject",
            "s",
            "--html",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"<p>from stdin</p>")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out).1);
    let msgs = peer.wait_for_messages(2, WAIT);
    assert!(msgs[0].body().contains("from a file"));
    assert!(msgs[1].body().contains("from stdin"));
    assert_eq!(msgs[1].to.len(), 3, "to, cc and bcc are recipients");
    assert!(
        msgs[1]
            .header("Content-Type")
            .unwrap()
            .contains("text/html")
    );
    assert!(msgs[1].header("Bcc").is_none(), "Bcc is not a header");
}

#[test]
fn config_errors_exit_78_and_name_the_key() {
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mksis.smtp.authentication", "true"),
            ("mksis.logging.email.from", USER),
        ],
        &[],
    );
    let out = mailgate(dir.path(), &["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 78, "{stderr}");
    assert!(
        stderr.contains("mksis.logging.emailfrom.password"),
        "{stderr}"
    );
    assert!(stderr.contains("basic strategy"), "{stderr}");
}

#[test]
fn usage_errors_exit_64() {
    let dir = ConfigDir::with_properties(&[("mksis.logging.email.server.hostname", "h")], &[]);
    let out = mailgate(dir.path(), &["send", "--subject", "no recipient"]);
    assert_eq!(code(&out), 64);
    let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .args(["check"])
        .current_dir(dir.path().parent().unwrap())
        .env_remove("MAILGATE_CONFIG_DIR")
        .output()
        .unwrap();
    assert_eq!(code(&out), 64, "no config folder is a usage error");
}

#[test]
fn config_dir_from_the_environment() {
    let dir =
        ConfigDir::with_properties(&[("mksis.logging.email.server.hostname", "envhost")], &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("server")
        .env("MAILGATE_CONFIG_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "envhost:25\n");
}

#[test]
fn server_needs_only_the_settings() {
    let pki = TestPki::new();
    let dir = basic_dir(2525, &pki);
    // The password encrypted, then its key file gone: the mailer cannot be
    // built (check exits 78), but the server's address is still known.
    let out = mailgate(dir.path(), &["encrypt"]);
    assert_eq!(code(&out), 0, "{}", text(&out).1);
    dir.remove_file("mailgate.key");
    let out = mailgate(dir.path(), &["check"]);
    assert_eq!(code(&out), 78, "{}", text(&out).1);
    let out = mailgate(dir.path(), &["server"]);
    assert_eq!(code(&out), 0, "{}", text(&out).1);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "localhost:2525\n");

    // A strategy key missing (basic without a password) does not matter either.
    let bare = ConfigDir::with_properties(
        &[
            ("mksis.smtp.authentication", "true"),
            ("mksis.logging.email.server.hostname", "bare.example.com"),
        ],
        &[],
    );
    let out = mailgate(bare.path(), &["server"]);
    assert_eq!(code(&out), 0, "{}", text(&out).1);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bare.example.com:25\n"
    );

    // The environment still overrides the files.
    let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("--config-dir")
        .arg(dir.path())
        .arg("server")
        .env("MKSIS_LOGGING_EMAIL_SERVER_PORT", "2600")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out).1);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "localhost:2600\n");
}

/// Single-quotes `s` for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn send_without_a_body_on_a_terminal_exits_64_with_a_hint() {
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            (
                "mksis.logging.email.server.port",
                &unused_port().to_string(),
            ),
            ("mksis.logging.email.from", USER),
        ],
        &[],
    );
    // util-linux `script` runs the command on a pseudo-terminal: its stdin
    // is a terminal, as when someone types the command and forgets --body.
    let command = format!(
        "{} --config-dir {} send --to dev@example.com --subject s",
        sh_quote(env!("CARGO_BIN_EXE_mailgate")),
        sh_quote(&dir.path().display().to_string()),
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs (it provides the terminal)");
    let deadline = std::time::Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("mailgate send waited for a body on the terminal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let (terminal, _) = text(&out);
    assert_eq!(code(&out), 64, "{terminal}");
    for hint in ["--body", "--body-file", "--raw", "pipe it on stdin"] {
        assert!(terminal.contains(hint), "{terminal}");
    }
}

#[test]
fn check_connect_prints_a_failure_once() {
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            (
                "mksis.logging.email.server.port",
                &unused_port().to_string(),
            ),
            ("mksis.logging.email.from", USER),
        ],
        &[],
    );
    let out = mailgate(dir.path(), &["check", "--connect"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 75, "{stderr}");
    assert!(stdout.contains("strategy: open"), "{stdout}");
    assert!(
        stdout.contains("connect:  FAILED (exit 75; the error is on stderr)"),
        "{stdout}"
    );
    let both = format!("{stdout}{stderr}");
    assert_eq!(
        both.matches("cannot connect").count(),
        1,
        "the error once:\n{both}"
    );
    assert!(stderr.starts_with("mailgate: cannot connect"), "{stderr}");

    let out = mailgate(dir.path(), &["check", "--connect", "--json"]);
    assert_eq!(code(&out), 75, "{}", text(&out).1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["connect"]["ok"], false);
    assert_eq!(v["connect"]["exit_code"], 75);
    assert!(
        v["connect"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{v}"
    );
}

#[test]
fn verbose_logs_the_smtp_conversation_and_core_debug_lines() {
    let pki = TestPki::new();
    let peer = basic_peer(&pki, PASSWORD);
    let dir = basic_dir(peer.port(), &pki);
    let out = mailgate(dir.path(), &["-v", "check", "--connect"]);
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stderr}");
    // Target `mailgate_core::mailer`: covered by the `mailgate` directive.
    assert!(stderr.contains("strategy `basic` chosen"), "{stderr}");
    // Target `mailgate::smtp`.
    assert!(stderr.contains("C: STARTTLS"), "{stderr}");
    assert!(stderr.contains("AUTH PLAIN <redacted>"), "{stderr}");
    assert_no_secret(&out);

    let out = mailgate(dir.path(), &["check", "--connect"]);
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(!stderr.contains("chosen"), "no debug without -v: {stderr}");
    assert!(!stderr.contains("C: "), "no debug without -v: {stderr}");
}

/// Runs mailgate with its stdout already closed by the reader (EPIPE on write).
fn with_closed_stdout(dir: &Path, args: &[&str]) -> Output {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    let (reader, writer) = UnixStream::pair().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_mailgate"))
        .arg("--config-dir")
        .arg(dir)
        .args(args)
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(writer)))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn server_with_a_closed_stdout_exits_74_quietly() {
    let pki = TestPki::new();
    let dir = basic_dir(2525, &pki);
    let out = with_closed_stdout(dir.path(), &["-q", "server"]);
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 74, "not a panic (101): {stderr}");
    assert_eq!(stderr, "", "quiet");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_with_a_closed_stdout_exits_74_quietly() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let endpoint = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "access_token": "closed-pipe-token",
        })))
        .expect(1)
        .mount(&endpoint)
        .await;
    let url = format!("{}/token", endpoint.uri());
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.smtp.oauth.authentication", "true"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.from", USER),
            ("mksis.logging.email.server.hostname", "localhost"),
        ],
        &[
            ("mksis.security.smtp.oauth.clientID", "id"),
            ("mksis.security.smtp.oauth.clientSecret", "secret"),
            ("mksis.security.smtp.oauth.tokenEndpointURL", &url),
            (
                "mksis.security.smtp.oauth.scope",
                "https://x.example/.default",
            ),
        ],
    );
    let out = tokio::task::spawn_blocking(move || with_closed_stdout(dir.path(), &["-q", "token"]))
        .await
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 74, "not a panic (101): {stderr}");
    assert_eq!(stderr, "", "quiet");
}
