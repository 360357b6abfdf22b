//! OAuth end to end through the library API against Python's `aiosmtpd`
//! (STARTTLS): XOAUTH2, and RFC 7628 OAUTHBEARER (accepted and refused).
//! The token endpoint is wiremock on loopback http; the peer accepts only the
//! token it issues.

#![cfg(feature = "oauth")]

use std::time::Duration;

use mailgate::{Error, Mailer};
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerKind, SmtpPeer, TestPki};
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const USER: &str = "alm-python@example.com";
const CLIENT_ID: &str = "9e8d7c6b-pyth-4e2e-9abc-0a1b2c3d4e5f";
const SECRET: &str = "PyE2E~ClientSecret+q/W=r";
const SCOPE: &str = "https://outlook.office365.com/.default";
const TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.python-e2e-ACCESS-TOKEN-cccc";
const TOKEN_PATH: &str = "/py-tenant/oauth2/v2.0/token";
const WAIT: Duration = Duration::from_secs(10);

/// A wiremock token endpoint issuing [`TOKEN`], expecting `requests` requests.
async fn token_endpoint(requests: u64) -> MockServer {
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "access_token": TOKEN,
        })))
        .expect(requests)
        .mount(&idp)
        .await;
    idp
}

fn python_peer(pki: &TestPki, mechanisms: &[&str], token: &str) -> SmtpPeer {
    SmtpPeer::start(
        PeerKind::Python,
        PeerConfig::new()
            .starttls(pki)
            .auth(mechanisms)
            .scope(SCOPE)
            .token(USER, token),
    )
}

fn mailer(pki: &TestPki, port: u16, idp: &MockServer, mechanism: &str) -> (ConfigDir, Mailer) {
    let port = port.to_string();
    let ca = pki.ca_cert_path().display().to_string();
    let endpoint = format!("{}{TOKEN_PATH}", idp.uri());
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.smtp.oauth.authentication", "true"),
            ("mksis.smtp.authentication", "false"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mksis.logging.email.server.port", &port),
            ("mksis.logging.email.from", USER),
            ("mailgate.smtp.ssl.caFile", &ca),
            ("mailgate.smtp.timeoutSeconds", "10"),
            ("mailgate.oauth.mechanism", mechanism),
        ],
        &[
            ("mksis.security.smtp.oauth.clientID", CLIENT_ID),
            ("mksis.security.smtp.oauth.clientSecret", SECRET),
            ("mksis.security.smtp.oauth.tokenEndpointURL", &endpoint),
            ("mksis.security.smtp.oauth.scope", SCOPE),
        ],
    );
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .expect("mailer builds");
    (dir, mailer)
}

async fn delivers_with(mechanism: &str) {
    let pki = TestPki::new();
    let peer = python_peer(&pki, &["XOAUTH2", "OAUTHBEARER"], TOKEN);
    let idp = token_endpoint(1).await;
    let (_dir, mailer) = mailer(&pki, peer.port(), &idp, mechanism);
    assert_eq!(mailer.resolution().strategy, "oauth");
    mailer
        .sendmail(USER, "dev@example.com", mechanism, "body")
        .await
        .expect("sent");
    mailer.close().await;
    let msgs = peer.wait_for_messages(1, WAIT);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].secure);
    assert_eq!(msgs[0].user.as_deref(), Some(USER));
    assert_eq!(
        msgs[0].method.as_deref(),
        Some(mechanism.to_ascii_uppercase().as_str())
    );
    let attempts = peer.auth_attempts();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(attempts[0].ok);
}

#[tokio::test]
async fn xoauth2_delivers() {
    delivers_with("xoauth2").await;
}

#[tokio::test]
async fn oauthbearer_delivers() {
    delivers_with("oauthbearer").await;
}

#[tokio::test]
async fn oauthbearer_refusal_is_exit_77() {
    let pki = TestPki::new();
    let peer = python_peer(&pki, &["OAUTHBEARER"], "a-token-nobody-issued");
    let idp = token_endpoint(2).await;
    let (_dir, mailer) = mailer(&pki, peer.port(), &idp, "oauthbearer");
    let err = mailer
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::AuthRefused {
                retry_on_new_connection: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 77);
    let text = err.to_string();
    assert!(text.contains("535"), "{text}");
    assert!(
        text.contains("Authentication credentials invalid"),
        "{text}"
    );
    assert!(
        text.contains("status invalid_token"),
        "the decoded RFC 7628 challenge: {text}"
    );
    for shown in [text, format!("{err:?}")] {
        assert!(!shown.contains(TOKEN) && !shown.contains(SECRET), "{shown}");
    }
    let attempts = peer.wait_for_auth_attempts(2, WAIT);
    assert_eq!(attempts.len(), 2, "one retry: {attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|a| !a.ok && a.method == "OAUTHBEARER" && a.user.as_deref() == Some(USER))
    );
    assert!(peer.messages().is_empty());
}
