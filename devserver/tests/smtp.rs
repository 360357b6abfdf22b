//! The dev SMTP server driven over raw TCP and TLS.

mod common;

use std::time::{Duration, Instant};

use common::{Client, MESSAGE, b64, oauthbearer, plain, unb64, xoauth2};
use mailgate_devserver::{
    AuthInfo, DevCa, DevSmtpServer, DevTokenEndpoint, Fault, Mechanism, Stage, TlsMode,
    TokenRegistry,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn open_relay_records_the_message() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    assert_eq!(server.host(), "127.0.0.1");
    let mut c = Client::connect(server.addr()).await;
    let ehlo = c.hello().await;
    assert!(ehlo.lines[0].starts_with("localhost greets client.test"));
    assert!(!ehlo.text().contains("AUTH"), "{ehlo:?}");
    assert!(!ehlo.text().contains("STARTTLS"), "{ehlo:?}");
    assert!(ehlo.lines.iter().any(|l| l.starts_with("SIZE ")));

    let done = c
        .send_mail(
            "alice@example.com",
            &["bob@example.com", "carol@example.com"],
            MESSAGE,
        )
        .await;
    assert_eq!(done.code, 250);
    assert!(
        done.last().starts_with("2.0.0 Ok: queued as DEV1X1"),
        "{done:?}"
    );
    c.ok("QUIT", 221).await;
    assert!(c.closed().await);

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.connection_id, 1);
    assert_eq!(m.queue_id, "DEV1X1");
    assert_eq!(m.mail_from, "alice@example.com");
    assert_eq!(m.rcpt_to, ["bob@example.com", "carol@example.com"]);
    assert_eq!(m.subject().as_deref(), Some("Hello Wörld"));
    assert_eq!(m.header("to"), Some("bob@example.com"));
    assert_eq!(m.header("From"), Some("Alice <alice@example.com>"));
    assert_eq!(m.body(), b"Hi Bob,\r\n.this line was dot-stuffed\r\n");
    assert!(m.data_str().starts_with("From: Alice"));
    assert!(!m.tls);
    assert_eq!(m.auth, None);
    assert_eq!(server.connection_count(), 1);
}

#[tokio::test]
async fn transaction_rules_and_bad_input() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.reply().await;
    c.ok("MAIL FROM:<a@b>", 503).await;
    c.ok("EHLO", 501).await;
    c.ok("HELO client.test", 250).await;
    c.ok("RCPT TO:<x@y>", 503).await;
    c.ok("DATA", 503).await;
    // ESMTP parameters need EHLO (see tests/strict.rs).
    c.ok("EHLO client.test", 250).await;
    c.ok("MAIL FROM:<a@b> SIZE=100 BODY=8BITMIME", 250).await;
    c.ok("MAIL FROM:<a@b>", 503).await;
    c.ok("DATA", 554).await;
    c.ok("RCPT TO:<>", 501).await;
    c.ok("RCPT TO:missing-brackets@y", 250).await;
    c.ok("RSET", 250).await;
    c.ok("RCPT TO:<x@y>", 503).await;
    c.ok("MAIL FROM:<>", 250).await;
    c.ok("RSET", 250).await;
    c.ok("MAIL FROM:<a b@c>", 501).await;
    c.ok("NOOP", 250).await;
    c.ok("VRFY bob", 252).await;
    c.ok("STARTTLS", 502).await;
    c.ok("AUTH PLAIN", 504).await;
    c.ok("FOO bar", 500).await;
    c.ok("", 500).await;
    // Bytes that are not UTF-8, NULs and lone CRs do not hurt.
    c.write(b"\xff\xfe\x00\rMAIL\r\n").await;
    assert_eq!(c.reply().await.code, 500);
    c.ok("NOOP", 250).await;
    c.ok("QUIT", 221).await;
}

#[tokio::test]
async fn too_many_errors_close_the_connection() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.reply().await;
    for _ in 0..19 {
        c.ok("BOGUS", 500).await;
    }
    c.send("BOGUS").await;
    assert_eq!(c.reply().await.code, 500);
    assert_eq!(c.reply().await.code, 421);
    assert!(c.closed().await);
}

#[tokio::test]
async fn line_and_message_size_limits() {
    let server = DevSmtpServer::builder()
        .max_line_length(100)
        .max_message_size(300)
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    let ehlo = c.hello().await;
    assert!(ehlo.text().contains("SIZE 300"));
    let long = "N".repeat(5000);
    let r = c.cmd(&format!("NOOP {long}")).await;
    assert_eq!(r.code, 500);
    assert!(r.last().contains("line too long"));
    c.ok("NOOP", 250).await;

    c.ok("MAIL FROM:<a@b> SIZE=301", 552).await;
    c.ok("MAIL FROM:<a@b> SIZE=x", 501).await;

    // A message over the size limit.
    c.ok("MAIL FROM:<a@b>", 250).await;
    c.ok("RCPT TO:<c@d>", 250).await;
    c.ok("DATA", 354).await;
    for _ in 0..10 {
        c.send(&"x".repeat(60)).await;
    }
    let r = c.cmd(".").await;
    assert_eq!(r.code, 552, "{r:?}");

    // A data line over the line limit.
    c.ok("MAIL FROM:<a@b>", 250).await;
    c.ok("RCPT TO:<c@d>", 250).await;
    c.ok("DATA", 354).await;
    c.send(&long).await;
    let r = c.cmd(".").await;
    assert_eq!(r.code, 500, "{r:?}");

    // The session still works, and nothing was recorded.
    let r = c
        .send_mail("a@b", &["c@d"], "Subject: ok\r\n\r\nsmall\r\n")
        .await;
    assert_eq!(r.code, 250);
    assert_eq!(server.messages().len(), 1);
    assert_eq!(server.messages()[0].subject().as_deref(), Some("ok"));
}

#[tokio::test]
async fn auth_plain_success_and_refusal() {
    let server = DevSmtpServer::builder()
        .user("alice@example.com", "s3cret")
        .mechanisms([Mechanism::Plain])
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    let ehlo = c.hello().await;
    assert!(ehlo.lines.contains(&"AUTH PLAIN".to_owned()), "{ehlo:?}");
    // Credentials are configured, so AUTH is required.
    c.ok("MAIL FROM:<alice@example.com>", 530).await;

    let r = c
        .ok(
            &format!("AUTH PLAIN {}", plain("alice@example.com", "wrong")),
            535,
        )
        .await;
    assert_eq!(r.last().split(' ').next(), Some("5.7.8"));
    // Without an initial response: an empty 334 challenge.
    let r = c.ok("AUTH PLAIN", 334).await;
    assert_eq!(r.lines, [""]);
    c.ok("*", 501).await;
    c.ok("AUTH PLAIN", 334).await;
    c.ok("!!notbase64", 501).await;
    c.ok(&format!("AUTH PLAIN {}", b64("no-nul-here")), 501)
        .await;
    c.ok("AUTH PLAIN", 334).await;
    c.ok(&plain("alice@example.com", "s3cret"), 235).await;
    c.ok(
        &format!("AUTH PLAIN {}", plain("alice@example.com", "s3cret")),
        503,
    )
    .await;
    assert_eq!(
        c.send_mail("alice@example.com", &["bob@example.com"], MESSAGE)
            .await
            .code,
        250
    );

    let m = &server.messages()[0];
    assert_eq!(
        m.auth,
        Some(AuthInfo {
            mechanism: Mechanism::Plain,
            user: "alice@example.com".into()
        })
    );
    let attempts = server.auth_attempts();
    let codes: Vec<u16> = attempts.iter().map(|a| a.reply_code).collect();
    assert_eq!(codes, [535, 501, 501, 501, 235]);
    assert_eq!(attempts[0].secret.as_deref(), Some("wrong"));
    assert!(attempts[4].success);
    assert!(!format!("{:?}", attempts[4]).contains("s3cret"));
}

#[tokio::test]
async fn auth_login_success_and_refusal() {
    let server = DevSmtpServer::builder()
        .user("bob", "pw")
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    let ehlo = c.hello().await;
    assert!(
        ehlo.lines
            .contains(&"AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER".to_owned()),
        "{ehlo:?}"
    );
    let r = c.ok("AUTH LOGIN", 334).await;
    assert_eq!(unb64(r.last()), b"Username:");
    let r = c.ok(&b64("bob"), 334).await;
    assert_eq!(unb64(r.last()), b"Password:");
    let r = c.ok(&b64("nope"), 535).await;
    assert!(r.last().starts_with("5.7.8 "));

    // Initial response carries the user name.
    let r = c.ok(&format!("AUTH LOGIN {}", b64("bob")), 334).await;
    assert_eq!(unb64(r.last()), b"Password:");
    c.ok("*", 501).await;

    c.ok(&format!("AUTH LOGIN {}", b64("bob")), 334).await;
    c.ok(&b64("pw"), 235).await;
    assert_eq!(c.send_mail("bob@x", &["c@d"], MESSAGE).await.code, 250);
    let auth = server.messages()[0].auth.clone().unwrap();
    assert_eq!(auth.mechanism, Mechanism::Login);
    assert_eq!(auth.user, "bob");
}

#[tokio::test]
async fn xoauth2_success_and_error_challenge() {
    let server = DevSmtpServer::builder()
        .accept_token("good-token")
        .mechanisms([Mechanism::XOAuth2])
        .oauth_scope("https://outlook.office365.com/.default")
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    let ehlo = c.hello().await;
    assert!(ehlo.lines.contains(&"AUTH XOAUTH2".to_owned()), "{ehlo:?}");
    c.ok(&format!("AUTH PLAIN {}", plain("a", "b")), 504).await;

    // A refused token: the error challenge, then 535 after the empty line.
    let r = c
        .ok(
            &format!("AUTH XOAUTH2 {}", xoauth2("u@x", "bad-token")),
            334,
        )
        .await;
    let json: serde_json::Value = serde_json::from_slice(&unb64(r.last())).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "status": "401",
            "schemes": "bearer",
            "scope": "https://outlook.office365.com/.default"
        })
    );
    let r = c.ok("", 535).await;
    assert!(r.last().starts_with("5.7.8 "), "{r:?}");

    // Anything but the empty line after the challenge is a protocol error.
    c.ok(
        &format!("AUTH XOAUTH2 {}", xoauth2("u@x", "bad-token")),
        334,
    )
    .await;
    c.ok("AQ==", 501).await;
    c.ok(
        &format!("AUTH XOAUTH2 {}", xoauth2("u@x", "bad-token")),
        334,
    )
    .await;
    c.ok("*", 501).await;

    // Malformed responses.
    c.ok(&format!("AUTH XOAUTH2 {}", b64("user=u\x01")), 501)
        .await;

    // Without an initial response.
    let r = c.ok("AUTH XOAUTH2", 334).await;
    assert_eq!(r.lines, [""]);
    c.ok(&xoauth2("u@x", "good-token"), 235).await;
    assert_eq!(c.send_mail("u@x", &["c@d"], MESSAGE).await.code, 250);
    let m = &server.messages()[0];
    assert_eq!(
        m.auth,
        Some(AuthInfo {
            mechanism: Mechanism::XOAuth2,
            user: "u@x".into()
        })
    );
    let attempts = server.auth_attempts();
    assert_eq!(attempts[0].secret.as_deref(), Some("bad-token"));
    assert_eq!(
        attempts.last().unwrap().secret.as_deref(),
        Some("good-token")
    );
}

#[tokio::test]
async fn oauthbearer_success_and_error_challenge() {
    let server = DevSmtpServer::builder()
        .token_validator(|user, token| user == "u@x" && token == "t1")
        .mechanisms([Mechanism::OAuthBearer])
        .oauth_scope("scope-a")
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    let ehlo = c.hello().await;
    assert!(ehlo.lines.contains(&"AUTH OAUTHBEARER".to_owned()));

    // The validator sees the user: right token, wrong user.
    let r = c
        .ok(
            &format!("AUTH OAUTHBEARER {}", oauthbearer("v@x", "t1")),
            334,
        )
        .await;
    let json: serde_json::Value = serde_json::from_slice(&unb64(r.last())).unwrap();
    assert_eq!(json["status"], "invalid_token");
    assert_eq!(json["scope"], "scope-a");
    // RFC 7628: the client answers with %x01, base64 "AQ==".
    let r = c.ok("AQ==", 535).await;
    assert!(r.last().starts_with("5.7.8 "));

    c.ok(
        &format!("AUTH OAUTHBEARER {}", oauthbearer("u@x", "t2")),
        334,
    )
    .await;
    c.ok("", 501).await;

    c.ok(
        &format!("AUTH OAUTHBEARER {}", b64("n,a=u@x,\x01\x01")),
        501,
    )
    .await;

    c.ok("AUTH OAUTHBEARER", 334).await;
    c.ok(&oauthbearer("u@x", "t1"), 235).await;
    assert_eq!(c.send_mail("u@x", &["c@d"], MESSAGE).await.code, 250);
    assert_eq!(
        server.messages()[0].auth.as_ref().unwrap().mechanism,
        Mechanism::OAuthBearer
    );
}

#[tokio::test]
async fn token_registry_shared_with_the_endpoint() {
    let registry = TokenRegistry::new();
    registry.insert("manual", Duration::from_secs(60));
    registry.insert("expired", Duration::ZERO);
    let server = DevSmtpServer::builder()
        .token_registry(registry.clone())
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok(&format!("AUTH XOAUTH2 {}", xoauth2("u", "expired")), 334)
        .await;
    c.ok("", 535).await;
    c.ok(&format!("AUTH XOAUTH2 {}", xoauth2("u", "manual")), 235)
        .await;
    c.ok("QUIT", 221).await;

    // Revoked tokens stop working.
    registry.revoke("manual");
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok(&format!("AUTH XOAUTH2 {}", xoauth2("u", "manual")), 334)
        .await;
    c.ok("", 535).await;
    assert_eq!(server.connection_count(), 2);
}

#[tokio::test]
async fn starttls_required() {
    let server = DevSmtpServer::builder()
        .starttls_required()
        .user("alice", "pw")
        .start()
        .await
        .unwrap();
    assert_eq!(server.tls_mode(), TlsMode::StartTls { required: true });
    let mut c = Client::connect(server.addr()).await;
    let ehlo = c.hello().await;
    assert!(ehlo.lines.contains(&"STARTTLS".to_owned()), "{ehlo:?}");
    assert!(!ehlo.text().contains("AUTH"), "{ehlo:?}");
    c.ok(&format!("AUTH PLAIN {}", plain("alice", "pw")), 530)
        .await;
    c.ok("MAIL FROM:<alice@x>", 530).await;
    c.ok("STARTTLS extra", 501).await;
    // A command pipelined after STARTTLS is discarded, not run after the
    // handshake (RFC 3207 section 4.2).
    c.write(b"STARTTLS\r\nNOOP\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 220, "{r:?}");
    c.handshake(server.ca_cert_pem()).await.unwrap();
    // The session starts over: AUTH needs EHLO again.
    c.ok(&format!("AUTH PLAIN {}", plain("alice", "pw")), 503)
        .await;
    let ehlo = c.ok("EHLO client.test", 250).await;
    assert!(!ehlo.text().contains("STARTTLS"), "{ehlo:?}");
    assert!(ehlo.text().contains("AUTH PLAIN"), "{ehlo:?}");
    c.ok("STARTTLS", 503).await;
    c.ok(&format!("AUTH PLAIN {}", plain("alice", "pw")), 235)
        .await;
    assert_eq!(c.send_mail("alice@x", &["b@y"], MESSAGE).await.code, 250);
    c.ok("QUIT", 221).await;
    let m = &server.messages()[0];
    assert!(m.tls);
    assert!(server.auth_attempts().last().unwrap().tls);
}

#[tokio::test]
async fn starttls_optional_and_shared_ca() {
    let ca = DevCa::generate().unwrap();
    let dir = std::env::temp_dir().join(format!("devserver-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    ca.write_ca_pem(&ca_file).unwrap();
    let ca_pem = std::fs::read_to_string(&ca_file).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let server = DevSmtpServer::builder()
        .starttls()
        .ca(ca.clone())
        .user("alice", "pw")
        .start()
        .await
        .unwrap();
    assert_eq!(server.ca_cert_pem(), ca.ca_cert_pem());
    // Plaintext AUTH is allowed when STARTTLS is optional.
    let mut c = Client::connect(server.addr()).await;
    let ehlo = c.hello().await;
    assert!(ehlo.text().contains("STARTTLS") && ehlo.text().contains("AUTH"));
    c.ok(&format!("AUTH PLAIN {}", plain("alice", "pw")), 235)
        .await;
    assert_eq!(c.send_mail("a@x", &["b@y"], MESSAGE).await.code, 250);
    assert!(!server.messages()[0].tls);

    // The CA file is what the client trusts.
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok("STARTTLS", 220).await;
    c.handshake(&ca_pem).await.unwrap();
    c.ok("EHLO again", 250).await;

    // Another CA is not trusted.
    let other = DevCa::generate().unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok("STARTTLS", 220).await;
    assert!(c.handshake(other.ca_cert_pem()).await.is_err());
}

#[tokio::test]
async fn implicit_tls() {
    let server = DevSmtpServer::builder()
        .implicit_tls()
        .user("alice", "pw")
        .start()
        .await
        .unwrap();
    let mut c = Client::connect_tls(server.addr(), server.ca_cert_pem()).await;
    let ehlo = c.hello().await;
    assert!(!ehlo.text().contains("STARTTLS"));
    c.ok("STARTTLS", 502).await;
    c.ok(&format!("AUTH PLAIN {}", plain("alice", "pw")), 235)
        .await;
    assert_eq!(c.send_mail("a@x", &["b@y"], MESSAGE).await.code, 250);
    c.ok("QUIT", 221).await;
    let m = &server.messages()[0];
    assert!(m.tls);
    assert_eq!(m.auth.as_ref().unwrap().user, "alice");

    // A plaintext client gets no greeting (at most a TLS alert), then EOF.
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(b"EHLO plain\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("220"), "{out:?}");
}

#[tokio::test]
async fn fault_421_at_mail_once_closes_the_connection() {
    let server = DevSmtpServer::builder()
        .fault(Fault::reply(Stage::Mail, 421, "4.3.2 Try again later").times(1))
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    let r = c.ok("MAIL FROM:<a@b>", 421).await;
    assert_eq!(r.last(), "4.3.2 Try again later");
    assert!(c.closed().await);

    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    assert_eq!(c.send_mail("a@b", &["c@d"], MESSAGE).await.code, 250);
    assert_eq!(server.messages()[0].connection_id, 2);
}

#[tokio::test]
async fn fault_451_at_rcpt_and_data_end() {
    let server = DevSmtpServer::builder()
        .fault(Fault::reply(Stage::Rcpt, 451, "4.3.0 Temporary lookup failure").times(1))
        .fault(Fault::reply(Stage::DataEnd, 451, "4.3.0 Queue write failed").times(1))
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok("MAIL FROM:<a@b>", 250).await;
    c.ok("RCPT TO:<c@d>", 451).await;
    c.ok("DATA", 554).await;
    c.ok("RCPT TO:<c@d>", 250).await;
    c.ok("DATA", 354).await;
    c.write(MESSAGE.as_bytes()).await;
    let r = c.cmd(".").await;
    assert_eq!(r.code, 451);
    assert!(server.messages().is_empty());
    // The connection stays usable; the second try is accepted.
    assert_eq!(c.send_mail("a@b", &["c@d"], MESSAGE).await.code, 250);
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn fault_multiline_reply_and_greeting_rejection() {
    let server = DevSmtpServer::builder()
        .fault(Fault::reply(Stage::Greeting, 554, "5.3.2 No service\nGo away").times(1))
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    let r = c.reply().await;
    assert_eq!(r.code, 554);
    assert_eq!(r.lines, ["5.3.2 No service", "Go away"]);
    c.ok("EHLO x", 503).await;
    c.ok("QUIT", 221).await;
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
}

#[tokio::test]
async fn fault_disconnect_during_data() {
    let server = DevSmtpServer::builder()
        .fault(Fault::disconnect_during_data(10).times(1))
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok("MAIL FROM:<a@b>", 250).await;
    c.ok("RCPT TO:<c@d>", 250).await;
    c.ok("DATA", 354).await;
    c.send("Subject: cut off").await;
    assert!(c.closed().await);
    assert!(server.messages().is_empty());

    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    assert_eq!(c.send_mail("a@b", &["c@d"], MESSAGE).await.code, 250);
}

#[tokio::test]
async fn fault_disconnect_at_stage() {
    let server = DevSmtpServer::builder()
        .fault(Fault::disconnect(Stage::DataEnd).times(1))
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok("MAIL FROM:<a@b>", 250).await;
    c.ok("RCPT TO:<c@d>", 250).await;
    c.ok("DATA", 354).await;
    c.write(MESSAGE.as_bytes()).await;
    c.send(".").await;
    assert!(c.closed().await);
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn fault_delay_before_reply() {
    let delay = Duration::from_millis(300);
    let server = DevSmtpServer::builder()
        .fault(Fault::delay(Stage::Greeting, delay))
        .fault(Fault::delay(Stage::DataEnd, delay).times(1))
        .start()
        .await
        .unwrap();
    let start = Instant::now();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    assert!(start.elapsed() >= delay);
    let start = Instant::now();
    assert_eq!(c.send_mail("a@b", &["c@d"], MESSAGE).await.code, 250);
    assert!(start.elapsed() >= delay);
}

#[tokio::test]
async fn fault_refuse_first_auth_attempts() {
    let server = DevSmtpServer::builder()
        .user("alice", "pw")
        .accept_token("tok")
        .fault(Fault::refuse_auth(2))
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok(&format!("AUTH PLAIN {}", plain("alice", "pw")), 535)
        .await;
    // A refused token gets the XOAUTH2 error challenge as usual.
    c.ok(&format!("AUTH XOAUTH2 {}", xoauth2("alice", "tok")), 334)
        .await;
    c.ok("", 535).await;
    c.ok(&format!("AUTH XOAUTH2 {}", xoauth2("alice", "tok")), 235)
        .await;
    let codes: Vec<u16> = server
        .auth_attempts()
        .iter()
        .map(|a| a.reply_code)
        .collect();
    assert_eq!(codes, [535, 535, 235]);
}

#[tokio::test]
async fn fault_at_auth_and_added_at_runtime() {
    let server = DevSmtpServer::builder()
        .user("alice", "pw")
        .start()
        .await
        .unwrap();
    server.add_fault(
        Fault::reply(Stage::Auth, 454, "4.7.0 Temporary authentication failure").times(1),
    );
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok(&format!("AUTH PLAIN {}", plain("alice", "pw")), 454)
        .await;
    c.ok(&format!("AUTH PLAIN {}", plain("alice", "pw")), 235)
        .await;
    server.add_fault(Fault::reply(
        Stage::Mail,
        452,
        "4.3.1 Insufficient system storage",
    ));
    c.ok("MAIL FROM:<a@b>", 452).await;
    c.ok("MAIL FROM:<a@b>", 452).await;
    server.clear_faults();
    c.ok("MAIL FROM:<a@b>", 250).await;
}

#[tokio::test]
async fn shutdown_on_drop_says_421() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let addr = server.addr();
    let mut c = Client::connect(addr).await;
    c.hello().await;
    drop(server);
    let r = c.reply().await;
    assert_eq!(r.code, 421);
    assert!(r.last().starts_with("4.3.2"));
    assert!(c.closed().await);
    // The listener goes away too.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused);
}

#[tokio::test]
async fn explicit_shutdown_waits_for_sessions() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let addr = server.addr();
    let mut c = Client::connect(addr).await;
    c.hello().await;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .unwrap();
    assert_eq!(c.reply().await.code, 421);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn idle_timeout() {
    let server = DevSmtpServer::builder()
        .idle_timeout(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.reply().await;
    let r = c.reply().await;
    assert_eq!(r.code, 421);
    assert!(r.last().starts_with("4.4.2"));
}

#[tokio::test]
async fn wait_for_messages_and_clear() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let addr = server.addr();
    let sender = tokio::spawn(async move {
        for _ in 0..3 {
            let mut c = Client::connect(addr).await;
            c.hello().await;
            assert_eq!(c.send_mail("a@b", &["c@d"], MESSAGE).await.code, 250);
            c.ok("QUIT", 221).await;
        }
    });
    let messages = server.wait_for_messages(3, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 3);
    sender.await.unwrap();
    let ids: Vec<u64> = messages.iter().map(|m| m.connection_id).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(server.connection_count(), 3);
    server.clear();
    assert!(server.messages().is_empty());
    let none = server.wait_for_messages(1, Duration::from_millis(50)).await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn end_to_end_with_the_token_endpoint() {
    let endpoint = DevTokenEndpoint::builder()
        .client("cid", "csecret")
        .start()
        .await
        .unwrap();
    let server = DevSmtpServer::builder()
        .implicit_tls()
        .token_registry(endpoint.registry())
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let json: serde_json::Value = http
        .post(endpoint.url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "cid"),
            ("client_secret", "csecret"),
            ("scope", "https://outlook.office365.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = json["access_token"].as_str().unwrap();

    let mut c = Client::connect_tls(server.addr(), server.ca_cert_pem()).await;
    c.hello().await;
    c.ok(
        &format!("AUTH OAUTHBEARER {}", oauthbearer("u@x", "made-up")),
        334,
    )
    .await;
    c.ok("AQ==", 535).await;
    c.ok(
        &format!("AUTH OAUTHBEARER {}", oauthbearer("u@x", token)),
        235,
    )
    .await;
    assert_eq!(c.send_mail("u@x", &["c@d"], MESSAGE).await.code, 250);
}
