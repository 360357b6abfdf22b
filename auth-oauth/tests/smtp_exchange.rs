//! The SASL exchange against a scripted SMTP server: how the final reply
//! after the `334` error challenge is classified, and how refusals affect
//! the token cache. The server is plain text (`allowPlaintextAuth`) and
//! answers each AUTH-phase line with the next scripted reply.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use mailgate_core::{Error, Mailer, Registry, Stage};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<String>>,
    /// AUTH-phase lines received, with the connection number.
    auth_lines: Mutex<Vec<(usize, String)>>,
    connections: Mutex<usize>,
}

impl Script {
    fn auth_lines(&self) -> Vec<(usize, String)> {
        self.auth_lines.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// Starts the server; returns its port.
fn smtp_server(replies: &[&str]) -> (u16, Arc<Script>) {
    let script = Arc::new(Script::default());
    script
        .replies
        .lock()
        .unwrap()
        .extend(replies.iter().map(|r| (*r).to_owned()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let shared = Arc::clone(&script);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let script = Arc::clone(&shared);
            let conn = {
                let mut n = script.connections.lock().unwrap();
                *n += 1;
                *n
            };
            std::thread::spawn(move || serve(stream, conn, &script));
        }
    });
    (port, script)
}

fn serve(stream: TcpStream, conn: usize, script: &Script) {
    let mut out = stream.try_clone().unwrap();
    let mut reply = |text: &str| out.write_all(format!("{text}\r\n").as_bytes());
    if reply("220 scripted ESMTP").is_err() {
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        let upper = line.to_ascii_uppercase();
        let answer = if upper.starts_with("EHLO") {
            "250-scripted\r\n250-AUTH XOAUTH2 OAUTHBEARER\r\n250 8BITMIME".to_owned()
        } else if upper.starts_with("QUIT") {
            let _ = reply("221 bye");
            return;
        } else if upper.starts_with("NOOP") || upper.starts_with("RSET") {
            "250 ok".to_owned()
        } else if line == "*" {
            script.auth_lines.lock().unwrap().push((conn, line));
            "501 5.7.0 authentication cancelled".to_owned()
        } else {
            script.auth_lines.lock().unwrap().push((conn, line));
            script
                .replies
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| "535 5.7.8 script exhausted".to_owned())
        };
        if reply(&answer).is_err() {
            return;
        }
    }
}

/// The `334` error challenge Gmail sends.
fn challenge() -> String {
    format!(
        "334 {}",
        STANDARD
            .encode(r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#)
    )
}

async fn token_endpoint(expected: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token_response(TOKEN, 3600))
        .expect(expected)
        .mount(&server)
        .await;
    server
}

fn mailer(dir: &tempfile::TempDir, smtp_port: u16, idp: &MockServer) -> Mailer {
    let is = format!(
        "mksis.smtp.oauth.authentication=true\n\
         mksis.smtp.authentication=false\n\
         mksis.smtp.ssl.enabled=false\n\
         mksis.logging.email.server.hostname=127.0.0.1\n\
         mksis.logging.email.server.port={smtp_port}\n\
         mksis.logging.email.from=alm@example.com\n\
         mailgate.smtp.allowPlaintextAuth=true\n\
         mailgate.smtp.timeoutSeconds=5\n\
         mailgate.oauth.timeoutSeconds=5\n"
    );
    std::fs::write(dir.path().join("is.properties"), is).unwrap();
    std::fs::write(
        dir.path().join("security.properties"),
        security_properties(&format!("{}/token", idp.uri()), ""),
    )
    .unwrap();
    Mailer::builder()
        .registry(
            Registry::new()
                .with(&mailgate_auth_oauth::DESCRIPTOR)
                .unwrap(),
        )
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .expect("mailer builds")
}

/// No secret or token in an error's text or Debug.
fn assert_clean(err: &Error) {
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");
    }
}

#[tokio::test]
async fn a_temporary_failure_after_the_challenge_keeps_the_token() {
    let (port, script) = smtp_server(&[&challenge(), "454 4.7.0 Temporary authentication failure"]);
    let idp = token_endpoint(1).await;
    let dir = tempfile::tempdir().unwrap();
    let err = mailer(&dir, port, &idp)
        .check_connection()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Smtp {
                code: 454,
                stage: Stage::Auth,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 75);
    let text = err.to_string();
    assert!(text.contains("status 401"), "the decoded challenge: {text}");
    assert_clean(&err);
    let lines = script.auth_lines();
    assert_eq!(lines.len(), 2, "AUTH and the answer, no retry: {lines:?}");
    assert!(lines[0].1.starts_with("AUTH XOAUTH2 "), "{lines:?}");
    assert_eq!(
        lines[1].1, "",
        "XOAUTH2 answers the challenge with an empty line"
    );
    assert_eq!(script.connections(), 1);
    idp.verify().await;
}

#[tokio::test]
async fn a_non_refusal_5xx_after_the_challenge_is_not_a_refused_token() {
    let (port, script) = smtp_server(&[
        &challenge(),
        "554 5.7.0 Transaction failed",
        "235 2.7.0 Accepted",
    ]);
    let idp = token_endpoint(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mailer = mailer(&dir, port, &idp);
    let err = mailer.check_connection().await.unwrap_err();
    assert!(matches!(err, Error::Smtp { code: 554, .. }), "{err:?}");
    assert!(err.to_string().contains("status 401"), "{err}");
    assert_clean(&err);
    assert_eq!(script.auth_lines().len(), 2, "no retry");
    assert_eq!(script.connections(), 1);
    // The token was not dropped: the next connection reuses it.
    mailer.check_connection().await.expect("accepted");
    assert_eq!(script.auth_lines().len(), 3);
    idp.verify().await;
}

#[tokio::test]
async fn a_second_334_is_cancelled_and_reported() {
    let (port, script) = smtp_server(&[&challenge(), "334 more?"]);
    let idp = token_endpoint(1).await;
    let dir = tempfile::tempdir().unwrap();
    let err = mailer(&dir, port, &idp)
        .check_connection()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol {
                stage: Stage::Auth,
                ..
            }
        ),
        "{err:?}"
    );
    assert_clean(&err);
    let lines: Vec<String> = script.auth_lines().into_iter().map(|(_, l)| l).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[2], "*", "the exchange is cancelled");
    assert_eq!(script.connections(), 1);
    idp.verify().await;
}

#[tokio::test]
async fn a_refusal_after_the_challenge_gets_one_retry_with_a_fresh_token() {
    let (port, script) = smtp_server(&[
        &challenge(),
        "535 5.7.8 Username and Password not accepted",
        "235 2.7.0 Accepted",
    ]);
    let idp = token_endpoint(2).await;
    let dir = tempfile::tempdir().unwrap();
    mailer(&dir, port, &idp)
        .check_connection()
        .await
        .expect("the retry succeeds");
    let lines = script.auth_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[2].0, 2, "the retry is on a new connection");
    idp.verify().await;
}

#[tokio::test]
async fn a_refusal_unrelated_to_the_token_costs_no_more_tokens_within_the_back_off() {
    const DISABLED: &str = "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.";
    let (port, script) = smtp_server(&[DISABLED; 8]);
    // Two requests in all: the first token, and one fresh token for the retry.
    let idp = token_endpoint(2).await;
    let dir = tempfile::tempdir().unwrap();
    let mailer = mailer(&dir, port, &idp);

    let first = mailer.check_connection().await.unwrap_err();
    assert!(
        matches!(
            first,
            Error::AuthRefused {
                retry_on_new_connection: false,
                ..
            }
        ),
        "{first:?}"
    );
    assert_eq!(first.exit_code(), 77);
    assert!(first.to_string().contains("5.7.139"), "{first}");
    assert_eq!(script.auth_lines().len(), 2, "one retry");
    assert_eq!(script.connections(), 2);

    // Within the back-off: the refusal is final at once, no new token.
    for attempt in 0..2 {
        let again = mailer.check_connection().await.unwrap_err();
        assert!(
            matches!(
                again,
                Error::AuthRefused {
                    retry_on_new_connection: false,
                    ..
                }
            ),
            "{again:?}"
        );
        let text = again.to_string();
        assert!(text.contains("5.7.139"), "{text}");
        assert!(text.contains("no new token"), "{text}");
        assert_clean(&again);
        assert_eq!(script.auth_lines().len(), 3 + attempt, "no retry");
    }
    idp.verify().await;
}
