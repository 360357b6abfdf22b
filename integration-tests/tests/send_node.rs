//! End to end through the library API against Nodemailer's `smtp-server`:
//! open relay, basic PLAIN/LOGIN, STARTTLS and implicit TLS with a CA made at
//! test time, refusals, and connection reuse.

#![cfg(all(feature = "open", feature = "basic"))]

use std::time::Duration;

use mailgate::{Error, Mailer};
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerKind, SmtpPeer, TestPki, unused_port};

const USER: &str = "alm@example.com";
const PASSWORD: &str = "p4ss:w=rd\u{e9}!";
const WAIT: Duration = Duration::from_secs(10);

fn server_props(port: u16) -> Vec<(&'static str, String)> {
    vec![
        (
            "mksis.logging.email.server.hostname",
            "localhost".to_owned(),
        ),
        ("mksis.logging.email.server.port", port.to_string()),
        ("mksis.logging.email.from", USER.to_owned()),
        ("mailgate.smtp.timeoutSeconds", "10".to_owned()),
    ]
}

fn config(props: Vec<(&'static str, String)>) -> ConfigDir {
    let pairs: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ConfigDir::with_properties(&pairs, &[])
}

fn basic_props(port: u16) -> Vec<(&'static str, String)> {
    let mut p = server_props(port);
    p.push(("mksis.smtp.authentication", "true".to_owned()));
    p.push(("mksis.logging.emailfrom.password", PASSWORD.to_owned()));
    p
}

fn tls_props(mut p: Vec<(&'static str, String)>, pki: &TestPki) -> Vec<(&'static str, String)> {
    p.push(("mksis.smtp.ssl.enabled", "true".to_owned()));
    p.push((
        "mailgate.smtp.ssl.caFile",
        pki.ca_cert_path().display().to_string(),
    ));
    p
}

fn mailer(dir: &ConfigDir) -> Mailer {
    Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .expect("mailer builds")
}

#[tokio::test]
async fn open_relay_sends_no_auth() {
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new());
    let dir = config(server_props(peer.port()));
    let mailer = mailer(&dir);
    assert_eq!(mailer.resolution().strategy, "open");
    mailer
        .sendmail(
            USER,
            "dev@example.com, qa@example.com",
            "Build 42",
            "passed",
        )
        .await
        .expect("sent");
    let msgs = peer.wait_for_messages(1, WAIT);
    assert_eq!(msgs[0].from, USER);
    assert_eq!(msgs[0].to, ["dev@example.com", "qa@example.com"]);
    assert_eq!(msgs[0].header("Subject").as_deref(), Some("Build 42"));
    assert!(msgs[0].body().contains("passed"));
    assert_eq!(msgs[0].user, None);
    assert!(peer.auth_attempts().is_empty(), "open relay must not AUTH");
}

async fn basic_over_starttls(mechanism: &str) {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(&pki)
            .auth(&[mechanism])
            .user(USER, PASSWORD),
    );
    let dir = config(tls_props(basic_props(peer.port()), &pki));
    let mailer = mailer(&dir);
    assert_eq!(mailer.resolution().strategy, "basic");
    mailer
        .sendmail(USER, "dev@example.com", "basic", "body")
        .await
        .expect("sent");
    let msgs = peer.wait_for_messages(1, WAIT);
    assert!(msgs[0].secure, "STARTTLS must be on");
    assert_eq!(msgs[0].user.as_deref(), Some(USER));
    assert_eq!(msgs[0].method.as_deref(), Some(mechanism));
}

#[tokio::test]
async fn basic_plain_over_starttls() {
    basic_over_starttls("PLAIN").await;
}

#[tokio::test]
async fn basic_login_over_starttls() {
    basic_over_starttls("LOGIN").await;
}

#[tokio::test]
async fn basic_prefers_plain_when_both_are_offered() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(&pki)
            .auth(&["LOGIN", "PLAIN"])
            .user(USER, PASSWORD),
    );
    let dir = config(tls_props(basic_props(peer.port()), &pki));
    mailer(&dir)
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap();
    assert_eq!(
        peer.wait_for_messages(1, WAIT)[0].method.as_deref(),
        Some("PLAIN")
    );
}

#[tokio::test]
async fn implicit_tls_with_test_ca() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .implicit_tls(&pki)
            .auth(&["PLAIN"])
            .user(USER, PASSWORD),
    );
    let mut props = tls_props(basic_props(peer.port()), &pki);
    props.push(("mailgate.smtp.ssl.mode", "implicit".to_owned()));
    let dir = config(props);
    let mailer = mailer(&dir);
    mailer
        .sendmail(USER, "dev@example.com", "implicit", "body")
        .await
        .expect("sent");
    let msgs = peer.wait_for_messages(1, WAIT);
    assert!(msgs[0].secure);
    assert_eq!(msgs[0].user.as_deref(), Some(USER));
}

#[tokio::test]
async fn tls_required_but_starttls_not_offered_sends_nothing() {
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .auth(&["PLAIN"])
            .allow_insecure_auth()
            .user(USER, PASSWORD),
    );
    let pki = TestPki::new();
    let dir = config(tls_props(basic_props(peer.port()), &pki));
    let err = mailer(&dir)
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StartTlsUnavailable { .. }), "{err}");
    assert_eq!(err.exit_code(), 69);
    assert!(err.to_string().contains("does not offer STARTTLS"), "{err}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        peer.auth_attempts().is_empty(),
        "no credentials may be sent"
    );
    assert!(peer.messages().is_empty());
}

#[tokio::test]
async fn wrong_ca_sends_nothing() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(&pki)
            .auth(&["PLAIN"])
            .user(USER, PASSWORD),
    );
    let mut props = basic_props(peer.port());
    props.push(("mksis.smtp.ssl.enabled", "true".to_owned()));
    props.push((
        "mailgate.smtp.ssl.caFile",
        pki.other_ca_cert_path().display().to_string(),
    ));
    let dir = config(props);
    let err = mailer(&dir)
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    assert_eq!(err.exit_code(), 69);
    std::thread::sleep(Duration::from_millis(200));
    assert!(peer.auth_attempts().is_empty());
    assert!(peer.messages().is_empty());
}

#[tokio::test]
async fn wrong_ca_with_implicit_tls_is_a_tls_error() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new().implicit_tls(&pki));
    let mut props = server_props(peer.port());
    props.push(("mksis.smtp.ssl.enabled", "true".to_owned()));
    props.push(("mailgate.smtp.ssl.mode", "implicit".to_owned()));
    props.push((
        "mailgate.smtp.ssl.caFile",
        pki.other_ca_cert_path().display().to_string(),
    ));
    let dir = config(props);
    let err = mailer(&dir)
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    assert!(peer.messages().is_empty());
}

#[tokio::test]
async fn system_roots_alone_do_not_trust_the_test_ca() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new().starttls(&pki));
    let mut props = server_props(peer.port());
    props.push(("mksis.smtp.ssl.enabled", "true".to_owned()));
    let dir = config(props);
    let err = mailer(&dir)
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
}

#[tokio::test]
async fn refused_password_is_exit_77() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(&pki)
            .auth(&["PLAIN"])
            .user(USER, "the-right-one"),
    );
    let dir = config(tls_props(basic_props(peer.port()), &pki));
    let err = mailer(&dir)
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthRefused { .. }), "{err}");
    assert_eq!(err.exit_code(), 77);
    assert!(err.to_string().contains("535"), "{err}");
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    assert!(!format!("{err:?}").contains(PASSWORD));
    let attempts = peer.wait_for_auth_attempts(1, WAIT);
    assert_eq!(attempts.len(), 1, "basic auth is not retried");
    assert!(peer.messages().is_empty());
}

#[tokio::test]
async fn credentials_never_cross_plaintext() {
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .auth(&["PLAIN"])
            .allow_insecure_auth()
            .user(USER, PASSWORD),
    );
    let dir = config(basic_props(peer.port()));
    // Refused when the mailer is built, before any connection.
    let err = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::PlaintextAuth { .. }), "{err}");
    assert_eq!(err.exit_code(), 78);
    assert!(
        err.to_string().contains("mksis.smtp.ssl.enabled=true"),
        "{err}"
    );
    assert_eq!(peer.connections(), 0);

    // Allowed explicitly, it works.
    let mut props = basic_props(peer.port());
    props.push(("mailgate.smtp.allowPlaintextAuth", "true".to_owned()));
    let dir = config(props);
    mailer(&dir)
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .expect("plaintext auth when allowed");
    assert_eq!(
        peer.wait_for_messages(1, WAIT)[0].user.as_deref(),
        Some(USER)
    );
}

#[tokio::test]
async fn nothing_listening_is_temporary_exit_75() {
    let dir = config(server_props(unused_port()));
    let err = mailer(&dir)
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert_eq!(err.exit_code(), 75);
    assert!(err.is_transient());
}

#[tokio::test]
async fn header_injection_is_exit_65_and_sends_nothing() {
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new());
    let dir = config(server_props(peer.port()));
    let mailer = mailer(&dir);
    for (to, subject) in [
        ("dev@example.com", "hi\r\nBcc: victim@example.com"),
        ("dev@example.com\r\nBcc: victim@example.com", "hi"),
        ("dev@example.com", "hi\nX-Injected: 1"),
    ] {
        let err = mailer.sendmail(USER, to, subject, "b").await.unwrap_err();
        assert_eq!(err.exit_code(), 65, "{err}");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(peer.connections(), 0, "nothing may be sent");
}

#[tokio::test]
async fn basic_sender_must_be_the_auth_user() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(&pki)
            .auth(&["PLAIN"])
            .user(USER, PASSWORD),
    );
    let dir = config(tls_props(basic_props(peer.port()), &pki));
    let err = mailer(&dir)
        .sendmail("someone.else@example.com", "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 65);
    assert!(err.to_string().contains(USER), "{err}");
    assert_eq!(peer.connections(), 0);
}

#[tokio::test]
async fn many_messages_reuse_one_connection() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(&pki)
            .auth(&["PLAIN"])
            .user(USER, PASSWORD),
    );
    let dir = config(tls_props(basic_props(peer.port()), &pki));
    let mailer = mailer(&dir);
    for i in 0..20 {
        let delivery = mailer
            .sendmail(USER, "dev@example.com", &format!("message {i}"), "b")
            .await
            .expect("sent");
        assert_eq!(delivery.reused_connection, i > 0);
    }
    mailer.close().await;
    let msgs = peer.wait_for_messages(20, WAIT);
    assert_eq!(msgs.len(), 20);
    assert_eq!(peer.connections(), 1, "the server sees one connection");
    assert_eq!(peer.auth_attempts().len(), 1, "one AUTH for the connection");
    assert!(msgs.iter().all(|m| m.conn == msgs[0].conn));
}

#[tokio::test]
async fn trigger_api_reports_server_and_port() {
    let dir = config(server_props(2525));
    let mailer = mailer(&dir);
    assert_eq!(mailer.smtp_server(), "localhost");
    assert_eq!(mailer.smtp_port(), 2525);
    assert_eq!(mailer.mail_hostname_and_port(), "localhost:2525");
    let err = mailer.oauth_access_token().await.unwrap_err();
    assert!(err.to_string().contains("uses no OAuth tokens"), "{err}");
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_replaced() {
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new().idle_timeout(Duration::from_millis(300)),
    );
    let dir = config(server_props(peer.port()));
    let mailer = mailer(&dir);
    mailer
        .sendmail(USER, "dev@example.com", "first", "b")
        .await
        .expect("first");
    // The server drops the idle connection; the next send must not notice.
    peer.wait_for_closed_connections(1, WAIT);
    let delivery = mailer
        .sendmail(USER, "dev@example.com", "second", "b")
        .await
        .expect("second goes through on a new connection");
    assert!(!delivery.reused_connection);
    let msgs = peer.wait_for_messages(2, WAIT);
    assert_ne!(msgs[0].conn, msgs[1].conn);
    assert_eq!(peer.connections(), 2);
}

#[tokio::test]
async fn debug_output_holds_no_secret() {
    let mut props = basic_props(2525);
    props.push(("mailgate.smtp.allowPlaintextAuth", "true".to_owned()));
    let dir = config(props);
    let mailer = mailer(&dir);
    let dbg = format!(
        "{mailer:?} {:?} {:?}",
        mailer.settings(),
        mailer.describe_strategy()
    );
    assert!(dbg.contains(USER), "{dbg}");
    assert!(!dbg.contains(PASSWORD), "{dbg}");
    assert!(!dbg.contains("p4ss"), "{dbg}");
}

#[tokio::test]
async fn a_refused_recipient_resets_and_keeps_the_connection() {
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new().fail_rcpt(550));
    let dir = config(server_props(peer.port()));
    let mailer = mailer(&dir);
    for _ in 0..2 {
        let err = mailer
            .sendmail(USER, "nobody@example.com", "s", "b")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Recipients { .. }), "{err}");
        assert_eq!(err.status(), Some(550), "{err}");
    }
    assert_eq!(peer.connections(), 1, "RSET, then the connection is reused");
}

#[tokio::test]
async fn sends_after_close_are_refused() {
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new());
    let dir = config(server_props(peer.port()));
    let mailer = mailer(&dir);
    mailer
        .sendmail(USER, "a@example.com", "s", "b")
        .await
        .unwrap();
    mailer.close().await;
    let err = mailer
        .sendmail(USER, "a@example.com", "s", "b")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 64, "{err}");
    assert!(err.to_string().contains("closed"), "{err}");
    peer.wait_for_closed_connections(1, WAIT);
    assert_eq!(peer.messages().len(), 1);
}
