//! End to end through the library API against a second real server,
//! Python's `aiosmtpd`: open relay, basic AUTH PLAIN and LOGIN over STARTTLS
//! with a CA made at test time, and XOAUTH2 with a wiremock token endpoint
//! whose token the peer accepts.

#![cfg(all(feature = "open", feature = "basic"))]

use std::time::Duration;

use mailgate::Mailer;
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerKind, SmtpPeer, TestPki};

const USER: &str = "alm@example.com";
const PASSWORD: &str = "py:p4ss=w\u{f6}rd!";
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

fn tls_props(mut p: Vec<(&'static str, String)>, pki: &TestPki) -> Vec<(&'static str, String)> {
    p.push(("mksis.smtp.ssl.enabled", "true".to_owned()));
    p.push((
        "mailgate.smtp.ssl.caFile",
        pki.ca_cert_path().display().to_string(),
    ));
    p
}

fn config(is: &[(&'static str, String)], security: &[(&'static str, String)]) -> ConfigDir {
    let is: Vec<(&str, &str)> = is.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let security: Vec<(&str, &str)> = security.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ConfigDir::with_properties(&is, &security)
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
    let peer = SmtpPeer::start(PeerKind::Python, PeerConfig::new());
    let dir = config(&server_props(peer.port()), &[]);
    let mailer = mailer(&dir);
    assert_eq!(mailer.resolution().strategy, "open");
    mailer
        .sendmail(
            USER,
            "dev@example.com, qa@example.com",
            "Build 42 (aiosmtpd)",
            "passed\n.leading dot survives\n",
        )
        .await
        .expect("sent");
    mailer.close().await;
    let msgs = peer.wait_for_messages(1, WAIT);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].from, USER);
    assert_eq!(msgs[0].to, ["dev@example.com", "qa@example.com"]);
    assert_eq!(
        msgs[0].header("Subject").as_deref(),
        Some("Build 42 (aiosmtpd)")
    );
    assert!(msgs[0].body().contains("passed"), "{}", msgs[0].data);
    assert!(
        msgs[0].body().contains(".leading dot survives"),
        "{}",
        msgs[0].data
    );
    assert!(!msgs[0].secure);
    assert_eq!(msgs[0].user, None);
    assert!(peer.auth_attempts().is_empty(), "open relay must not AUTH");
}

async fn basic_over_starttls(mechanism: &str) {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Python,
        PeerConfig::new()
            .starttls(&pki)
            .require_starttls()
            .auth(&[mechanism])
            .user(USER, PASSWORD),
    );
    let mut is = tls_props(server_props(peer.port()), &pki);
    is.push(("mksis.smtp.authentication", "true".to_owned()));
    is.push(("mksis.logging.emailfrom.password", PASSWORD.to_owned()));
    let dir = config(&is, &[]);
    let mailer = mailer(&dir);
    assert_eq!(mailer.resolution().strategy, "basic");
    for i in 0..2 {
        mailer
            .sendmail(USER, "dev@example.com", &format!("basic {i}"), "body")
            .await
            .unwrap_or_else(|e| panic!("{mechanism} send {i}: {e}"));
    }
    mailer.close().await;
    let msgs = peer.wait_for_messages(2, WAIT);
    for m in &msgs {
        assert!(m.secure, "STARTTLS must be on");
        assert_eq!(m.user.as_deref(), Some(USER));
        assert_eq!(m.method.as_deref(), Some(mechanism));
        assert_eq!(m.from, USER);
        assert_eq!(m.to, ["dev@example.com"]);
    }
    let attempts = peer.auth_attempts();
    assert_eq!(attempts.len(), 1, "one AUTH for the pooled connection");
    assert!(attempts[0].ok);
    assert_eq!(attempts[0].method, mechanism);
    assert_eq!(peer.connections(), 1);
}

#[tokio::test]
async fn basic_plain_over_starttls() {
    basic_over_starttls("PLAIN").await;
}

#[tokio::test]
async fn basic_login_over_starttls() {
    basic_over_starttls("LOGIN").await;
}

#[cfg(feature = "oauth")]
#[tokio::test]
async fn xoauth2_with_a_wiremock_token_endpoint() {
    use serde_json::json;
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const CLIENT_ID: &str = "send-python-client";
    const SECRET: &str = "send~python+secret/=";
    const SCOPE: &str = "https://outlook.office365.com/.default";
    const TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.send-python-ACCESS-TOKEN";
    const TOKEN_PATH: &str = "/tenant/oauth2/v2.0/token";

    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=send-python-client"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "access_token": TOKEN,
        })))
        .expect(1)
        .mount(&idp)
        .await;

    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Python,
        PeerConfig::new()
            .starttls(&pki)
            .require_starttls()
            .auth(&["XOAUTH2"])
            .scope(SCOPE)
            .token(USER, TOKEN),
    );
    let mut is = tls_props(server_props(peer.port()), &pki);
    is.push(("mksis.smtp.oauth.authentication", "true".to_owned()));
    is.push(("mksis.smtp.authentication", "false".to_owned()));
    let security = [
        ("mksis.security.smtp.oauth.clientID", CLIENT_ID.to_owned()),
        ("mksis.security.smtp.oauth.clientSecret", SECRET.to_owned()),
        (
            "mksis.security.smtp.oauth.tokenEndpointURL",
            format!("{}{TOKEN_PATH}", idp.uri()),
        ),
        ("mksis.security.smtp.oauth.scope", SCOPE.to_owned()),
    ];
    let dir = config(&is, &security);
    let mailer = mailer(&dir);
    assert_eq!(mailer.resolution().strategy, "oauth");
    for i in 0..2 {
        mailer
            .sendmail(USER, "dev@example.com", &format!("oauth {i}"), "body")
            .await
            .unwrap_or_else(|e| panic!("XOAUTH2 send {i}: {e}"));
    }
    mailer.close().await;

    let msgs = peer.wait_for_messages(2, WAIT);
    for m in &msgs {
        assert!(m.secure);
        assert_eq!(m.method.as_deref(), Some("XOAUTH2"));
        assert_eq!(m.user.as_deref(), Some(USER));
    }
    let attempts = peer.auth_attempts();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(attempts[0].ok, "{attempts:?}");
    // `.expect(1)`: one token for both messages (verified when idp drops).
    idp.verify().await;
}
