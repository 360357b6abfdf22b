//! OAuth end to end through the library API: a wiremock token endpoint on
//! loopback http and Nodemailer's `smtp-server` speaking STARTTLS and XOAUTH2.
//! The peer accepts only the tokens the test's endpoint issues.
//!
//! Covers: success, one token shared by many concurrent sends, the retry with
//! a fresh token after a 535, a server that always refuses, refresh of a token
//! near expiry, and token endpoint failures (nothing is authenticated or sent).

#![cfg(feature = "oauth")]

use std::collections::BTreeSet;
use std::time::Duration;

use mailgate::secrecy::ExposeSecret;
use mailgate::{Error, Mailer};
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerKind, SmtpPeer, TestPki};
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const USER: &str = "alm-notify@example.com";
const CLIENT_ID: &str = "5f0c1d2e-node-4e2e-9abc-0a1b2c3d4e5f";
const SECRET: &str = "NodeE2E~ClientSecret+x/Y=z";
const SCOPE: &str = "https://outlook.office365.com/.default";
const TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.node-e2e-ACCESS-TOKEN-aaaa";
const TOKEN_2: &str = "eyJ0eXAiOiJKV1QifQ.node-e2e-ACCESS-TOKEN-bbbb";
const TOKEN_PATH: &str = "/e2e-tenant/oauth2/v2.0/token";
const WAIT: Duration = Duration::from_secs(10);

/// application/x-www-form-urlencoded, as reqwest sends the form.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn token_response(token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": token,
    }))
}

fn error_response(status: u16, error: &str, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": error,
        "error_description": description,
        "error_codes": [7000215],
        "trace_id": "0f1e2d3c-e2e",
    }))
}

/// A client-credentials request as mailgate must send it (client_secret_post).
fn token_request() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(format!(
            "client_id={}",
            form_encode(CLIENT_ID)
        )))
        .and(body_string_contains(format!(
            "client_secret={}",
            form_encode(SECRET)
        )))
        .and(body_string_contains(format!(
            "scope={}",
            form_encode(SCOPE)
        )))
}

async fn token_requests(idp: &MockServer) -> usize {
    idp.received_requests()
        .await
        .expect("request recording is on")
        .len()
}

/// A Node peer on STARTTLS offering XOAUTH2 that accepts `tokens` for [`USER`].
fn node_peer(pki: &TestPki, tokens: &[&str], refuse_first: u32) -> SmtpPeer {
    let mut cfg = PeerConfig::new()
        .starttls(pki)
        .auth(&["XOAUTH2"])
        .scope(SCOPE)
        .refuse_first_auth(refuse_first);
    for token in tokens {
        cfg = cfg.token(USER, token);
    }
    SmtpPeer::start(PeerKind::Node, cfg)
}

/// is.properties and security.properties for OAuth over STARTTLS to
/// `localhost:port` and the token endpoint of `idp`, plus `extra` (is) keys.
fn config(pki: &TestPki, port: u16, idp: &MockServer, extra: &[(&str, &str)]) -> ConfigDir {
    let port = port.to_string();
    let ca = pki.ca_cert_path().display().to_string();
    let endpoint = format!("{}{TOKEN_PATH}", idp.uri());
    let mut is = vec![
        ("mksis.smtp.oauth.authentication", "true"),
        ("mksis.smtp.authentication", "false"),
        ("mksis.smtp.ssl.enabled", "true"),
        ("mksis.logging.email.server.hostname", "localhost"),
        ("mksis.logging.email.server.port", port.as_str()),
        ("mksis.logging.email.from", USER),
        ("mailgate.smtp.ssl.caFile", ca.as_str()),
        ("mailgate.smtp.timeoutSeconds", "10"),
        ("mailgate.oauth.timeoutSeconds", "5"),
    ];
    is.extend_from_slice(extra);
    ConfigDir::with_properties(
        &is,
        &[
            ("mksis.security.smtp.oauth.clientID", CLIENT_ID),
            ("mksis.security.smtp.oauth.clientSecret", SECRET),
            ("mksis.security.smtp.oauth.tokenEndpointURL", &endpoint),
            ("mksis.security.smtp.oauth.scope", SCOPE),
        ],
    )
}

fn mailer(dir: &ConfigDir) -> Mailer {
    Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .expect("mailer builds")
}

/// No secret or token in an error's text or Debug.
fn assert_clean(err: &Error) {
    for shown in [err.to_string(), format!("{err:?}")] {
        for secret in [SECRET, TOKEN, TOKEN_2, &form_encode(SECRET)] {
            assert!(!shown.contains(secret), "secret in error: {shown}");
        }
    }
}

#[tokio::test]
async fn xoauth2_over_starttls_delivers() {
    let pki = TestPki::new();
    let peer = node_peer(&pki, &[TOKEN], 0);
    let idp = MockServer::start().await;
    token_request()
        .respond_with(token_response(TOKEN, 3600))
        .expect(1)
        .mount(&idp)
        .await;
    let dir = config(&pki, peer.port(), &idp, &[]);
    let mailer = mailer(&dir);
    assert_eq!(mailer.resolution().strategy, "oauth");
    assert_eq!(mailer.resolution().rule.id(), "oauth-only");

    let delivery = mailer
        .sendmail(USER, "dev@example.com", "OAuth e2e", "via XOAUTH2")
        .await
        .expect("sent");
    assert!(!delivery.reused_connection);
    mailer.close().await;

    let msgs = peer.wait_for_messages(1, WAIT);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].secure, "STARTTLS must be on before AUTH");
    assert_eq!(msgs[0].method.as_deref(), Some("XOAUTH2"));
    assert_eq!(msgs[0].user.as_deref(), Some(USER));
    assert_eq!(msgs[0].from, USER);
    assert_eq!(msgs[0].header("Subject").as_deref(), Some("OAuth e2e"));
    let attempts = peer.auth_attempts();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(attempts[0].ok);
    assert_eq!(token_requests(&idp).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_messages_from_eight_tasks_share_one_token() {
    const MESSAGES: usize = 100;
    const TASKS: usize = 8;
    let pki = TestPki::new();
    let peer = node_peer(&pki, &[TOKEN], 0);
    let idp = MockServer::start().await;
    token_request()
        .respond_with(token_response(TOKEN, 3600))
        .expect(1)
        .mount(&idp)
        .await;
    let dir = config(&pki, peer.port(), &idp, &[]);
    let mailer = mailer(&dir);

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let mailer = mailer.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..MESSAGES).step_by(TASKS) {
                mailer
                    .sendmail(USER, "dev@example.com", &format!("message {i}"), "b")
                    .await
                    .unwrap_or_else(|e| panic!("message {i}: {e}"));
            }
        }));
    }
    for task in tasks {
        task.await.expect("send task");
    }
    mailer.close().await;

    let msgs = peer.wait_for_messages(MESSAGES, WAIT);
    let subjects: BTreeSet<String> = msgs.iter().filter_map(|m| m.header("Subject")).collect();
    let wanted: BTreeSet<String> = (0..MESSAGES).map(|i| format!("message {i}")).collect();
    assert_eq!(msgs.len(), MESSAGES);
    assert_eq!(subjects, wanted, "every message delivered once");
    assert!(
        msgs.iter()
            .all(|m| m.secure && m.method.as_deref() == Some("XOAUTH2"))
    );

    let requests = token_requests(&idp).await;
    let connections = peer.connections();
    let attempts = peer.auth_attempts();
    println!(
        "{MESSAGES} messages from {TASKS} tasks: {requests} token request(s), \
         {connections} SMTP connection(s), {} AUTH XOAUTH2",
        attempts.len()
    );
    assert_eq!(requests, 1, "one token for every connection");
    assert!(
        (1..=mailgate::DEFAULT_MAX_CONNECTIONS).contains(&connections),
        "{connections} connections"
    );
    assert_eq!(attempts.len(), connections, "one AUTH per connection");
    assert!(attempts.iter().all(|a| a.ok));
}

#[tokio::test]
async fn refused_token_is_replaced_once_on_a_new_connection() {
    let pki = TestPki::new();
    let peer = node_peer(&pki, &[TOKEN], 1);
    let idp = MockServer::start().await;
    token_request()
        .respond_with(token_response(TOKEN, 3600))
        .expect(2)
        .mount(&idp)
        .await;
    let dir = config(&pki, peer.port(), &idp, &[]);
    let mailer = mailer(&dir);

    let delivery = mailer
        .sendmail(USER, "dev@example.com", "after retry", "b")
        .await
        .expect("the retry with a fresh token succeeds");
    assert!(!delivery.reused_connection);
    mailer.close().await;

    let msgs = peer.wait_for_messages(1, WAIT);
    assert_eq!(msgs.len(), 1);
    assert_eq!(peer.connections(), 2, "the retry uses a new connection");
    let attempts = peer.auth_attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(!attempts[0].ok);
    assert_eq!(attempts[0].reason.as_deref(), Some("refuseFirstAuth"));
    assert!(attempts[1].ok);
    assert_ne!(attempts[0].conn, attempts[1].conn);
    assert_eq!(msgs[0].conn, attempts[1].conn);
    assert_eq!(
        token_requests(&idp).await,
        2,
        "the refused token is not reused"
    );
}

#[tokio::test]
async fn a_server_that_always_refuses_is_exit_77() {
    let pki = TestPki::new();
    let peer = node_peer(&pki, &["a-token-nobody-issued"], 0);
    let idp = MockServer::start().await;
    token_request()
        .respond_with(token_response(TOKEN, 3600))
        .expect(1..=2)
        .mount(&idp)
        .await;
    let dir = config(&pki, peer.port(), &idp, &[]);
    let err = mailer(&dir)
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
    assert!(text.contains("refused oauth authentication"), "{text}");
    assert!(text.contains("535"), "{text}");
    assert!(
        text.contains("Username and Password not accepted"),
        "the server's text: {text}"
    );
    assert!(text.contains("status 401"), "the decoded challenge: {text}");
    assert_clean(&err);

    let attempts = peer.wait_for_auth_attempts(2, WAIT);
    assert_eq!(attempts.len(), 2, "one retry, no more: {attempts:?}");
    assert!(attempts.iter().all(|a| !a.ok));
    assert!(token_requests(&idp).await <= 2);
    assert!(peer.messages().is_empty());
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed_before_a_new_connection_uses_it() {
    let pki = TestPki::new();
    // The server drops idle clients after 300 ms, so the second send needs a
    // new connection, and with it a token.
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new()
            .starttls(&pki)
            .auth(&["XOAUTH2"])
            .scope(SCOPE)
            .token(USER, TOKEN)
            .token(USER, TOKEN_2)
            .idle_timeout(Duration::from_millis(300)),
    );
    let idp = MockServer::start().await;
    // expires_in 2 s with a 1 s margin: reused for 1 s, then replaced.
    token_request()
        .respond_with(token_response(TOKEN, 2))
        .up_to_n_times(1)
        .expect(1)
        .mount(&idp)
        .await;
    token_request()
        .respond_with(token_response(TOKEN_2, 3600))
        .expect(1)
        .mount(&idp)
        .await;
    let dir = config(
        &pki,
        peer.port(),
        &idp,
        &[("mailgate.oauth.refreshMarginSeconds", "1")],
    );
    let mailer = mailer(&dir);

    mailer
        .sendmail(USER, "dev@example.com", "first", "b")
        .await
        .expect("first");
    assert_eq!(
        mailer.oauth_access_token().await.unwrap().expose_secret(),
        TOKEN
    );
    assert_eq!(token_requests(&idp).await, 1, "still fresh: reused");
    peer.wait_for_closed_connections(1, WAIT);
    // Past the refresh point (issued + 2 s - 1 s margin); the token has not expired.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let delivery = mailer
        .sendmail(USER, "dev@example.com", "second", "b")
        .await
        .expect("second");
    assert!(!delivery.reused_connection, "a new connection");
    assert_eq!(token_requests(&idp).await, 2, "refreshed before use");
    assert_eq!(
        mailer.oauth_access_token().await.unwrap().expose_secret(),
        TOKEN_2,
        "the refreshed token is cached"
    );
    mailer.close().await;

    let msgs = peer.wait_for_messages(2, WAIT);
    assert_eq!(msgs.len(), 2);
    assert_ne!(msgs[0].conn, msgs[1].conn);
    assert!(peer.auth_attempts().iter().all(|a| a.ok));
    assert_eq!(token_requests(&idp).await, 2);
}

/// Sends through a mailer whose token endpoint answers `response`; checks
/// that exactly one token request was made and nothing was authenticated or sent.
async fn endpoint_failure(response: ResponseTemplate, extra: &[(&str, &str)]) -> Error {
    let pki = TestPki::new();
    let peer = node_peer(&pki, &[TOKEN], 0);
    let idp = MockServer::start().await;
    token_request()
        .respond_with(response)
        .expect(1)
        .mount(&idp)
        .await;
    let dir = config(&pki, peer.port(), &idp, extra);
    let mailer = mailer(&dir);
    let err = mailer
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Strategy { ref strategy, .. } if strategy == "oauth"),
        "{err:?}"
    );
    assert_clean(&err);
    // Within the back-off (1 s) the endpoint is not asked again.
    let again = mailer.oauth_access_token().await.unwrap_err();
    assert_eq!(again.exit_code(), err.exit_code(), "{again}");
    assert!(again.to_string().contains("asked again in"), "{again}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        peer.auth_attempts().is_empty(),
        "no AUTH without a token: {:?}",
        peer.auth_attempts()
    );
    assert!(peer.messages().is_empty());
    assert_eq!(
        peer.connections(),
        0,
        "the token is fetched before connecting: no SMTP session without one"
    );
    assert_eq!(token_requests(&idp).await, 1);
    err
}

#[tokio::test]
async fn token_endpoint_500_is_exit_75() {
    let err = endpoint_failure(
        ResponseTemplate::new(500).set_body_string("upstream token service exploded"),
        &[],
    )
    .await;
    assert_eq!(err.exit_code(), 75, "{err}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.contains("HTTP 500"), "{text}");
    assert!(text.contains("upstream token service exploded"), "{text}");
}

#[tokio::test]
async fn token_endpoint_timeout_is_exit_75() {
    let err = endpoint_failure(
        token_response(TOKEN, 3600).set_delay(Duration::from_secs(3)),
        &[("mailgate.oauth.timeoutSeconds", "1")],
    )
    .await;
    assert_eq!(err.exit_code(), 75, "{err}");
    let text = err.to_string();
    assert!(text.contains("did not answer within 1s"), "{text}");
    assert!(text.contains("mailgate.oauth.timeoutSeconds"), "{text}");
}

#[tokio::test]
async fn token_endpoint_html_is_an_error_with_status_and_excerpt() {
    let html = "<!DOCTYPE html><html><head><title>Sign in to continue</title>\
                <script>var x = 1;</script></head><body><p>Proxy authentication required</p></body></html>";
    let err = endpoint_failure(
        ResponseTemplate::new(200).set_body_raw(html, "text/html; charset=utf-8"),
        &[],
    )
    .await;
    assert_eq!(err.exit_code(), 78, "{err}");
    let text = err.to_string();
    assert!(text.contains("HTTP 200"), "{text}");
    assert!(text.contains("text/html"), "{text}");
    assert!(
        text.contains("Sign in to continue Proxy authentication required"),
        "{text}"
    );
    assert!(!text.contains("<p>") && !text.contains("var x"), "{text}");
    assert!(
        text.contains("mksis.security.smtp.oauth.tokenEndpointURL"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_client_is_exit_77_with_the_description() {
    let err = endpoint_failure(
        error_response(
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent \
             in the request is the client secret value, not the client secret ID",
        ),
        &[],
    )
    .await;
    assert_eq!(err.exit_code(), 77, "{err}");
    let text = err.to_string();
    assert!(text.contains("invalid_client"), "{text}");
    assert!(
        text.contains("AADSTS7000215: Invalid client secret provided"),
        "{text}"
    );
    assert!(
        text.contains("mksis.security.smtp.oauth.clientSecret"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_scope_is_exit_78_naming_the_scope_key() {
    let err = endpoint_failure(
        error_response(
            400,
            "invalid_scope",
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
        ),
        &[],
    )
    .await;
    assert_eq!(err.exit_code(), 78, "{err}");
    let text = err.to_string();
    assert!(text.contains("invalid_scope"), "{text}");
    assert!(text.contains("AADSTS70011"), "{text}");
    assert!(text.contains("mksis.security.smtp.oauth.scope"), "{text}");
}

#[tokio::test]
async fn oauthbearer_against_a_server_with_only_xoauth2_names_the_key() {
    let pki = TestPki::new();
    let peer = node_peer(&pki, &[TOKEN], 0);
    let idp = MockServer::start().await;
    // The token is made ready before connecting (one fetch); then the
    // mechanism check fails.
    token_request()
        .respond_with(token_response(TOKEN, 3600))
        .expect(1)
        .mount(&idp)
        .await;
    let dir = config(
        &pki,
        peer.port(),
        &idp,
        &[("mailgate.oauth.mechanism", "oauthbearer")],
    );
    let err = mailer(&dir)
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoMechanism { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 69);
    let text = err.to_string();
    assert!(
        text.contains("it offers XOAUTH2: set `mailgate.oauth.mechanism=xoauth2`"),
        "{text}"
    );
    assert!(peer.auth_attempts().is_empty());
}
