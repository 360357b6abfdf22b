//! Server faults through the real `Mailer` against mailgate-devserver: each
//! test asserts the error variant, its exit code (sysexits) and what the
//! server recorded. Plus OAuth (XOAUTH2 and OAUTHBEARER) over STARTTLS with
//! the devserver's token endpoint, as a second real client-server check.
//!
//! The CLI run of a fault case is in `cli/tests/demo.rs`: only the CLI
//! package's own tests can name its binary (`CARGO_BIN_EXE_mailgate`).

#![cfg(feature = "basic")]

use std::time::{Duration, Instant};

use mailgate::{Error, ErrorKind, Mailer, Stage as ClientStage};
use mailgate_devserver::{DevSmtpServer, Fault, Mechanism, Stage};
use mailgate_integration_tests::ConfigDir;

const USER: &str = "alm@example.com";
const PASSWORD: &str = "fault-test-pw";
const TO: &str = "dev@example.com";

/// A submission server: STARTTLS required, AUTH PLAIN and LOGIN, `faults`.
async fn submission(faults: impl IntoIterator<Item = Fault>) -> DevSmtpServer {
    let mut builder = DevSmtpServer::builder()
        .starttls_required()
        .mechanisms([Mechanism::Plain, Mechanism::Login])
        .user(USER, PASSWORD);
    for fault in faults {
        builder = builder.fault(fault);
    }
    builder.start().await.expect("dev server starts")
}

/// A config folder for basic AUTH over STARTTLS to `server`, trusting its CA.
fn basic_config(server: &DevSmtpServer, timeout_seconds: &str) -> ConfigDir {
    ConfigDir::basic_over_starttls(
        server.port(),
        USER,
        PASSWORD,
        server.ca_cert_pem(),
        &[("mailgate.smtp.timeoutSeconds", timeout_seconds)],
    )
}

fn mailer(dir: &ConfigDir) -> Mailer {
    Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .expect("mailer builds")
}

async fn send(mailer: &Mailer, subject: &str) -> Result<mailgate::Delivery, Error> {
    mailer
        .sendmail(USER, TO, subject, "fault injection test\n")
        .await
}

/// The refused send must have authenticated (the fault struck after AUTH)
/// and left no message behind.
fn assert_authenticated_but_nothing_recorded(server: &DevSmtpServer) {
    let auths = server.auth_attempts();
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert!(auths[0].success && auths[0].tls, "{auths:?}");
    assert!(server.messages().is_empty(), "{:?}", server.messages());
}

fn assert_smtp(err: &Error, stage: ClientStage, code: u16) {
    match err {
        Error::Smtp {
            stage: s, code: c, ..
        } => {
            assert_eq!((*s, *c), (stage, code), "{err}");
        }
        other => panic!("expected Error::Smtp at {stage} with {code}, got {other:?}"),
    }
}

/// The error lists exactly `address` as refused with `code`.
fn assert_refused(err: &Error, address: &str, code: u16) {
    match err {
        Error::Recipients { refused, total, .. } => {
            assert_eq!(*total, 1, "{err}");
            assert_eq!(refused.len(), 1, "{err}");
            assert_eq!(
                (refused[0].address.as_str(), refused[0].code),
                (address, code),
                "{err}"
            );
            assert_eq!(err.status(), Some(code));
            assert_eq!(err.stage(), Some(ClientStage::Rcpt));
        }
        other => panic!("expected Error::Recipients with {address} {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn reply_421_at_mail_is_temporary_and_the_next_send_reconnects() {
    let server =
        submission([Fault::reply(Stage::Mail, 421, "4.3.2 Service shutting down").times(1)]).await;
    let dir = basic_config(&server, "10");
    let mailer = mailer(&dir);

    let err = send(&mailer, "first").await.unwrap_err();
    assert_smtp(&err, ClientStage::Mail, 421);
    assert_eq!(err.kind(), ErrorKind::Temporary);
    assert_eq!(err.exit_code(), 75);
    assert!(err.is_transient());
    assert!(err.to_string().contains("Service shutting down"), "{err}");
    assert_authenticated_but_nothing_recorded(&server);

    // The server closed that connection; the same Mailer opens a new one.
    let delivery = send(&mailer, "second").await.expect("sent after the 421");
    assert!(!delivery.reused_connection);
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].subject().as_deref(), Some("second"));
    assert_eq!(server.connection_count(), 2);
    mailer.close().await;
}

#[tokio::test]
async fn reply_451_at_rcpt_is_temporary() {
    let server = submission([Fault::reply(
        Stage::Rcpt,
        451,
        "4.7.1 Greylisted, try later",
    )])
    .await;
    let dir = basic_config(&server, "10");
    let err = send(&mailer(&dir), "greylisted").await.unwrap_err();
    assert_refused(&err, TO, 451);
    assert_eq!(err.exit_code(), 75);
    assert!(err.is_transient());
    assert_authenticated_but_nothing_recorded(&server);
}

#[tokio::test]
async fn reply_451_at_end_of_data_is_temporary_and_nothing_is_recorded() {
    let server = submission([Fault::reply(Stage::DataEnd, 451, "4.3.0 Queue full")]).await;
    let dir = basic_config(&server, "10");
    let err = send(&mailer(&dir), "queue full").await.unwrap_err();
    assert_smtp(&err, ClientStage::Data, 451);
    assert_eq!(err.exit_code(), 75);
    assert!(err.is_transient());
    assert_authenticated_but_nothing_recorded(&server);
}

#[tokio::test]
async fn reply_550_at_rcpt_is_permanent_bad_input() {
    // core/src/error.rs: a 5xx at MAIL or RCPT is the address's fault
    // (ErrorKind::InvalidInput, EX_DATAERR 65), not retried.
    let server = submission([Fault::reply(Stage::Rcpt, 550, "5.1.1 No such user")]).await;
    let dir = basic_config(&server, "10");
    let err = send(&mailer(&dir), "unknown user").await.unwrap_err();
    assert_refused(&err, TO, 550);
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.exit_code(), 65);
    assert!(err.is_permanent());
    assert!(err.to_string().contains("No such user"), "{err}");
    assert_authenticated_but_nothing_recorded(&server);
    assert_eq!(
        server.connection_count(),
        1,
        "a permanent error is not retried"
    );
}

#[tokio::test]
async fn connection_reset_in_the_middle_of_data_is_temporary() {
    let server = submission([Fault::disconnect_during_data(64)]).await;
    let dir = basic_config(&server, "10");
    let mailer = mailer(&dir);
    let body = "a line of the message body that is long enough\n".repeat(200);
    let err = mailer
        .sendmail(USER, TO, "cut off", &body)
        .await
        .unwrap_err();
    match &err {
        Error::Protocol { stage, .. } => assert_eq!(*stage, ClientStage::Data, "{err}"),
        other => panic!("expected Error::Protocol during DATA, got {other:?}"),
    }
    assert_eq!(err.exit_code(), 75);
    assert!(err.is_transient());
    assert_authenticated_but_nothing_recorded(&server);
    assert_eq!(
        server.connection_count(),
        1,
        "DATA may have been partly accepted: never resent automatically"
    );
}

#[tokio::test]
async fn slow_reply_hits_the_configured_timeout() {
    let server = submission([Fault::delay(Stage::Mail, Duration::from_secs(3))]).await;
    let dir = basic_config(&server, "1");
    let mailer = mailer(&dir);
    let start = Instant::now();
    let err = send(&mailer, "slow").await.unwrap_err();
    let elapsed = start.elapsed();
    match &err {
        Error::Timeout { stage, after, .. } => {
            assert_eq!(*stage, ClientStage::Mail, "{err}");
            assert_eq!(*after, Duration::from_secs(1));
        }
        other => panic!("expected Error::Timeout at MAIL FROM, got {other:?}"),
    }
    assert_eq!(err.exit_code(), 75);
    // Bounded by the 1 s timeout: the connection is dropped, not QUIT
    // politely (which would wait for the late reply).
    assert!(
        elapsed < Duration::from_millis(2000),
        "returned after {elapsed:?}, the reply was 3 s late"
    );
    assert!(
        err.to_string().contains("mailgate.smtp.timeoutSeconds"),
        "{err}"
    );
    assert_authenticated_but_nothing_recorded(&server);
}

#[tokio::test]
async fn greeting_421_is_temporary_and_sends_no_credentials() {
    let server = submission([Fault::reply(
        Stage::Greeting,
        421,
        "4.3.2 Too busy, try later",
    )])
    .await;
    let dir = basic_config(&server, "10");
    let err = send(&mailer(&dir), "busy").await.unwrap_err();
    assert_smtp(&err, ClientStage::Connect, 421);
    assert_eq!(err.exit_code(), 75);
    assert!(err.is_transient());
    assert!(server.auth_attempts().is_empty());
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn slow_greeting_hits_the_configured_timeout() {
    let server = submission([Fault::delay(Stage::Greeting, Duration::from_secs(3))]).await;
    let dir = basic_config(&server, "1");
    let start = Instant::now();
    let err = send(&mailer(&dir), "slow greeting").await.unwrap_err();
    let elapsed = start.elapsed();
    match &err {
        Error::Timeout { stage, after, .. } => {
            assert_eq!(*stage, ClientStage::Connect, "{err}");
            assert_eq!(*after, Duration::from_secs(1));
        }
        other => panic!("expected Error::Timeout at connect, got {other:?}"),
    }
    assert_eq!(err.exit_code(), 75);
    assert!(
        elapsed < Duration::from_millis(2000),
        "returned after {elapsed:?}, the greeting was 3 s late"
    );
    assert!(server.auth_attempts().is_empty());
    assert!(server.messages().is_empty());
}

#[cfg(feature = "oauth")]
mod oauth {
    use mailgate_devserver::{ClientAuthMethod, DevTokenEndpoint};

    use super::*;

    const CLIENT_ID: &str = "fault-tests-client";
    const CLIENT_SECRET: &str = "fault-tests-secret";
    const SCOPE: &str = "https://outlook.office365.com/.default";

    async fn oauth_over_starttls(mechanism: Mechanism, setting: &str) {
        let endpoint = DevTokenEndpoint::builder()
            .client(CLIENT_ID, CLIENT_SECRET)
            .allowed_scopes([SCOPE])
            .start()
            .await
            .expect("token endpoint starts");
        let server = DevSmtpServer::builder()
            .starttls_required()
            .mechanisms([mechanism])
            .token_registry(endpoint.registry())
            .oauth_scope(SCOPE)
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
            ("mksis.smtp.oauth.authentication", "true"),
            ("mksis.smtp.authentication", "false"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.from", USER),
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mksis.logging.email.server.port", &port),
            ("mailgate.smtp.ssl.caFile", "ca.pem"),
            ("mailgate.smtp.timeoutSeconds", "10"),
            ("mailgate.oauth.mechanism", setting),
        ]);
        let url = endpoint.url();
        dir.write_security(&[
            ("mksis.security.smtp.oauth.clientID", CLIENT_ID),
            ("mksis.security.smtp.oauth.clientSecret", CLIENT_SECRET),
            ("mksis.security.smtp.oauth.tokenEndpointURL", &url),
            ("mksis.security.smtp.oauth.scope", SCOPE),
        ]);
        let mailer = mailer(&dir);
        assert_eq!(mailer.resolution().strategy, "oauth");

        for i in 0..3 {
            send(&mailer, &format!("oauth {i}"))
                .await
                .unwrap_or_else(|e| panic!("send {i} with {mechanism}: {e}"));
        }
        mailer.close().await;

        let messages = server.messages();
        assert_eq!(messages.len(), 3);
        for m in &messages {
            assert!(m.tls, "sent before STARTTLS");
            let auth = m.auth.as_ref().expect("authenticated");
            assert_eq!(auth.mechanism, mechanism);
            assert_eq!(auth.user, USER);
            assert_eq!(m.mail_from, USER);
            assert_eq!(m.rcpt_to, [TO]);
        }
        // One pooled connection, one token, fetched the client_secret_post way.
        assert_eq!(server.connection_count(), 1);
        assert_eq!(endpoint.issued_count(), 1);
        let requests = endpoint.requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(requests[0].status, 200);
        assert_eq!(requests[0].client_auth, Some(ClientAuthMethod::Post));
        assert_eq!(requests[0].client_id.as_deref(), Some(CLIENT_ID));
        assert_eq!(
            requests[0].grant_type.as_deref(),
            Some("client_credentials")
        );
        assert_eq!(requests[0].scope.as_deref(), Some(SCOPE));
        let auths = server.auth_attempts();
        assert_eq!(auths.len(), 1, "{auths:?}");
        assert!(auths[0].success && auths[0].tls);
        assert_eq!(
            auths[0].secret.as_deref(),
            endpoint.issued_tokens().first().map(String::as_str),
            "the server got the token the endpoint issued"
        );
    }

    #[tokio::test]
    async fn xoauth2_over_starttls_with_the_dev_token_endpoint() {
        oauth_over_starttls(Mechanism::XOAuth2, "xoauth2").await;
    }

    #[tokio::test]
    async fn oauthbearer_over_starttls_with_the_dev_token_endpoint() {
        oauth_over_starttls(Mechanism::OAuthBearer, "oauthbearer").await;
    }
}
