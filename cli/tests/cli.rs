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
    let port = port.to_string();
    let ca = pki.ca_cert_path().display().to_string();
    ConfigDir::with_properties(
        &[
            ("mksis.smtp.oauth.authentication", "false"),
            ("mksis.smtp.authentication", "true"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.from", USER),
            ("mksis.logging.emailfrom.password", PASSWORD),
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mksis.logging.email.server.port", &port),
            ("mailgate.smtp.ssl.caFile", &ca),
            ("mailgate.smtp.timeoutSeconds", "10"),
        ],
        &[],
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
fn nothing_listening_exits_69() {
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
    assert_eq!(code(&out), 69, "{}", text(&out).1);
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
