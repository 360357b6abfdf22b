//! `mailgate encrypt` end to end: secrets encrypted in place, then `check`, a
//! basic send and an OAuth send still work against real SMTP servers.

#![cfg(all(feature = "basic", feature = "oauth"))]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use mailgate_integration_tests::{
    ConfigDir, PeerConfig, PeerKind, SmtpPeer, TestPki, run_mailgate,
};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const USER: &str = "alm@example.com";
const PASSWORD: &str = "Basic-Pa55:w=rd\u{e9}";
const CLIENT_SECRET: &str = "Client-S3cret-Value";
const TOKEN: &str = "Token-For-Encrypt-Test";
const WAIT: Duration = Duration::from_secs(10);

fn mailgate(dir: &Path, args: &[&str]) -> Output {
    run_mailgate(env!("CARGO_BIN_EXE_mailgate"), dir, args)
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {stderr}\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn send(dir: &Path) -> Output {
    mailgate(
        dir,
        &[
            "-v",
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "after encrypt",
            "--body",
            "b",
        ],
    )
}

/// 1-based line of `key` in a properties text.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(key))
        .expect("key present")
        + 1
}

fn basic_dir(port: u16, pki: &TestPki) -> ConfigDir {
    ConfigDir::basic_over_starttls(port, USER, PASSWORD, pki.ca_cert_pem(), &[])
}

#[test]
fn basic_send_works_after_encrypt() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(&pki)
            .auth(&["PLAIN"])
            .user(USER, PASSWORD),
    );
    let dir = basic_dir(peer.port(), &pki);

    let before = mailgate(dir.path(), &["check"]);
    ok(&before);
    assert!(
        stderr(&before).contains("`mksis.logging.emailfrom.password`")
            && stderr(&before).contains("mailgate encrypt"),
        "a plain-text secret loads with a warning naming the key and the command: {}",
        stderr(&before)
    );

    let out = mailgate(dir.path(), &["encrypt"]);
    let stdout = ok(&out);
    assert!(
        stdout.contains("encrypted mksis.logging.emailfrom.password"),
        "{stdout}"
    );
    let key = dir.path().join("mailgate.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode");
    let is = dir.read_file("is.properties");
    assert!(
        is.contains("mksis.logging.emailfrom.password=ENC(v1:"),
        "{is}"
    );
    assert!(!is.contains("Basic-Pa55"), "{is}");

    let after = mailgate(dir.path(), &["check"]);
    ok(&after);
    assert!(!stderr(&after).contains("plain text"), "{}", stderr(&after));
    let out = send(dir.path());
    ok(&out);
    let msgs = peer.wait_for_messages(1, WAIT);
    assert_eq!(
        msgs[0].user.as_deref(),
        Some(USER),
        "the decrypted password authenticated"
    );
    assert!(!stderr(&out).contains("Basic-Pa55"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_send_works_after_encrypt() {
    let endpoint = MockServer::start().await;
    // Only the decrypted secret gets a token.
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains(format!(
            "client_secret={CLIENT_SECRET}"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600
        })))
        .expect(1)
        .mount(&endpoint)
        .await;
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(&pki)
            .auth(&["XOAUTH2"])
            .token(USER, TOKEN),
    );
    let port = peer.port().to_string();
    let ca = pki.ca_cert_path().display().to_string();
    let token_url = format!("{}/token", endpoint.uri());
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.smtp.oauth.authentication", "true"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.from", USER),
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mksis.logging.email.server.port", &port),
            ("mailgate.smtp.ssl.caFile", &ca),
        ],
        &[
            ("mksis.security.smtp.oauth.clientID", "client-id"),
            ("mksis.security.smtp.oauth.clientSecret", CLIENT_SECRET),
            ("mksis.security.smtp.oauth.tokenEndpointURL", &token_url),
            (
                "mksis.security.smtp.oauth.scope",
                "https://outlook.office365.com/.default",
            ),
        ],
    );
    let out = mailgate(dir.path(), &["encrypt"]);
    let stdout = ok(&out);
    assert!(
        stdout.contains("encrypted mksis.security.smtp.oauth.clientSecret"),
        "{stdout}"
    );
    let security = dir.read_file("security.properties");
    assert!(!security.contains(CLIENT_SECRET), "{security}");
    let out = send(dir.path());
    ok(&out);
    let msgs = peer.wait_for_messages(1, WAIT);
    assert_eq!(msgs[0].method.as_deref(), Some("XOAUTH2"));
    assert!(!stderr(&out).contains(CLIENT_SECRET) && !stderr(&out).contains(TOKEN));
}

#[test]
fn check_flag_lists_plain_secrets_and_second_run_changes_nothing() {
    let pki = TestPki::new();
    let dir = basic_dir(2525, &pki);
    dir.write_security(&[("mksis.security.smtp.oauth.clientSecret", CLIENT_SECRET)]);

    let out = mailgate(dir.path(), &["encrypt", "--check"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let is_line = line_of(
        &dir.read_file("is.properties"),
        "mksis.logging.emailfrom.password",
    );
    let sec_line = line_of(
        &dir.read_file("security.properties"),
        "mksis.security.smtp.oauth.clientSecret",
    );
    assert!(
        stdout.contains(&format!(
            "is.properties:{is_line}: mksis.logging.emailfrom.password is in plain text"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("security.properties:{sec_line}: mksis.security.smtp.oauth.clientSecret is in plain text")), "{stdout}");

    ok(&mailgate(dir.path(), &["encrypt"]));
    let first = (
        dir.read_file("is.properties"),
        dir.read_file("security.properties"),
    );
    let stdout = ok(&mailgate(dir.path(), &["encrypt"]));
    assert!(stdout.contains("unchanged"), "{stdout}");
    assert_eq!(
        first,
        (
            dir.read_file("is.properties"),
            dir.read_file("security.properties")
        )
    );
    ok(&mailgate(dir.path(), &["encrypt", "--check"]));
}

#[test]
fn rotation_moves_values_to_the_new_key() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(&pki)
            .auth(&["PLAIN"])
            .user(USER, PASSWORD),
    );
    let dir = basic_dir(peer.port(), &pki);
    ok(&mailgate(dir.path(), &["encrypt"]));
    let key_file = dir.path().join("mailgate.key");
    let old_key = std::fs::read(&key_file).unwrap();
    let stdout = ok(&mailgate(dir.path(), &["encrypt", "--rotate-key"]));
    assert!(
        stdout.contains("re-encrypted mksis.logging.emailfrom.password"),
        "{stdout}"
    );
    assert!(stdout.contains("now holds the new key"), "{stdout}");
    // The new key took the old one's place: nothing to point anywhere.
    assert_ne!(std::fs::read(&key_file).unwrap(), old_key);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode");
    ok(&mailgate(dir.path(), &["check"]));

    // The old key no longer reads the values.
    let old = dir.path().join("old.key");
    std::fs::write(&old, &old_key).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = mailgate(dir.path(), &["--key-file", old.to_str().unwrap(), "check"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("another key"), "{}", stderr(&out));

    let out = send(dir.path());
    ok(&out);
    assert_eq!(peer.wait_for_messages(1, WAIT).len(), 1);
}

#[test]
fn tampered_value_and_open_key_file_are_refused() {
    let pki = TestPki::new();
    let dir = basic_dir(2525, &pki);
    ok(&mailgate(dir.path(), &["encrypt"]));
    let is = dir.read_file("is.properties");
    // A byte inside the ciphertext, well past the header.
    let start = is.find("ENC(v1:").unwrap() + 60;
    let mut tampered = is.clone().into_bytes();
    tampered[start] = if tampered[start] == b'A' { b'B' } else { b'A' };
    dir.write_file("is.properties", &tampered);
    let out = mailgate(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    let line = line_of(&is, "mksis.logging.emailfrom.password");
    assert!(
        err.contains("mksis.logging.emailfrom.password")
            && err.contains(&format!("is.properties:{line}")),
        "{err}"
    );
    assert!(err.contains("altered or corrupted"), "{err}");
    let value = &String::from_utf8_lossy(&tampered)[start - 20..start + 10];
    assert!(!err.contains(value), "the value is never printed: {err}");

    dir.write_file("is.properties", is.as_bytes());
    ok(&mailgate(dir.path(), &["check"]));
    let key = dir.path().join("mailgate.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = mailgate(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}
