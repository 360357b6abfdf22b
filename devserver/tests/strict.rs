//! Strictness: bare LF / bare CR and the end of DATA (SMTP smuggling), HELO
//! versus EHLO, MAIL/RCPT parameters, tokens bound to users.

mod common;

use std::time::Duration;

use common::{Client, oauthbearer, xoauth2};
use mailgate_devserver::{DevSmtpServer, DevTokenEndpoint, TokenRegistry};

/// MAIL, RCPT, DATA, then `raw` as is; returns the reply after it.
async fn send_raw(c: &mut Client, raw: &[u8]) -> common::Reply {
    c.ok("MAIL FROM:<a@b>", 250).await;
    c.ok("RCPT TO:<c@d>", 250).await;
    c.ok("DATA", 354).await;
    c.write(raw).await;
    c.reply().await
}

/// A message with a `<LF>.<LF>` and an `<LF>.<CR><LF>` followed by a second,
/// smuggled transaction, then the real end.
const SMUGGLING: &[u8] = b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@x>\r\n\
RCPT TO:<victim@y>\r\nDATA\r\nSubject: smuggled\r\n\n.\r\nQUIT\r\n\r\n.\r\n";

#[tokio::test]
async fn bare_lf_end_of_data_is_not_the_end_and_is_refused_by_default() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    let r = send_raw(&mut c, SMUGGLING).await;
    assert_eq!(r.code, 550, "{r:?}");
    assert_eq!(r.last(), "5.5.2 Error: bare <LF> received");
    // Nothing of the smuggled transaction was taken as commands: the next
    // reply is the one to this VRFY.
    c.ok("VRFY x", 252).await;
    assert!(server.messages().is_empty());

    // <CR><LF>.<LF> does not end the data either.
    let r = send_raw(&mut c, b"Subject: two\r\n\r\nx\r\n.\nVRFY y\r\n.\r\n").await;
    assert_eq!(r.code, 550, "{r:?}");
    c.ok("NOOP", 250).await;

    // A bare CR is refused too.
    let r = send_raw(&mut c, b"Subject: three\r\n\r\na\rb\r\n.\r\n").await;
    assert_eq!(r.code, 550, "{r:?}");
    assert_eq!(r.last(), "5.5.2 Error: bare <CR> received");

    // A clean message still goes through.
    let r = send_raw(&mut c, b"Subject: four\r\n\r\nfine\r\n.\r\n").await;
    assert_eq!(r.code, 250, "{r:?}");
    let m = &server.messages()[0];
    assert_eq!(m.subject().as_deref(), Some("four"));
    assert!(!m.bare_lf && !m.bare_cr);
    assert_eq!(m.data, b"Subject: four\r\n\r\nfine\r\n");
}

#[tokio::test]
async fn bare_lf_commands_and_sasl_responses_are_refused_by_default() {
    let server = DevSmtpServer::builder()
        .accept_token("tok")
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.reply().await;
    c.write(b"EHLO client.test\n").await;
    let r = c.reply().await;
    assert_eq!((r.code, r.last()), (500, "5.5.2 Error: bare <LF> received"));
    c.ok("EHLO client.test", 250).await;
    c.ok("AUTH XOAUTH2", 334).await;
    c.write(format!("{}\n", xoauth2("u", "tok")).as_bytes())
        .await;
    assert_eq!(c.reply().await.code, 501);
    assert_eq!(server.auth_attempts()[0].reply_code, 501);
}

#[tokio::test]
async fn bare_line_endings_allowed_are_kept_raw_and_flagged() {
    let server = DevSmtpServer::builder()
        .reject_bare_lf(false)
        .reject_bare_cr(false)
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.reply().await;
    // A bare LF ends a command line when allowed.
    c.write(b"EHLO client.test\n").await;
    assert_eq!(c.reply().await.code, 250);

    let r = send_raw(&mut c, SMUGGLING).await;
    assert_eq!(r.code, 250, "{r:?}");
    c.ok("VRFY x", 252).await;
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "one message, nothing smuggled");
    let m = &messages[0];
    // Kept byte for byte: only the final <CR><LF>.<CR><LF> ended it.
    assert_eq!(m.data, &SMUGGLING[..SMUGGLING.len() - 3]);
    assert!(m.bare_lf);
    assert!(!m.bare_cr);
    assert_eq!(m.mail_from, "a@b");
    assert_eq!(m.subject().as_deref(), Some("one"));

    // Dot-stuffing is undone on complete (CRLF) lines only; a bare CR is
    // kept and flagged.
    let r = send_raw(&mut c, b"S: x\r\n\r\n..a\r\n..b\n..c\ra\r\n.\r\n").await;
    assert_eq!(r.code, 250, "{r:?}");
    let m = &server.messages()[1];
    assert_eq!(m.data, b"S: x\r\n\r\n.a\r\n..b\n..c\ra\r\n");
    assert!(m.bare_lf && m.bare_cr);

    // A CRLF-only message carries no flag.
    let r = send_raw(&mut c, b"S: y\r\n\r\nok\r\n.\r\n").await;
    assert_eq!(r.code, 250, "{r:?}");
    let m = &server.messages()[2];
    assert!(!m.bare_lf && !m.bare_cr);
}

#[tokio::test]
async fn a_too_long_data_line_keeps_track_of_line_starts() {
    let server = DevSmtpServer::builder()
        .max_line_length(100)
        .reject_bare_lf(false)
        .start()
        .await
        .unwrap();
    let long = "x".repeat(300);
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    // The long line ends in a bare LF, so the ".\r\n" after it is data and
    // the NOOP too; the data ends at the second dot line.
    let raw = format!("{long}\n.\r\nNOOP\r\n.\r\n");
    let r = send_raw(&mut c, raw.as_bytes()).await;
    assert_eq!(r.code, 500, "{r:?}");
    c.ok("VRFY x", 252).await;
    // Ending in CRLF, the dot line after it ends the data.
    let raw = format!("{long}\r\n.\r\n");
    let r = send_raw(&mut c, raw.as_bytes()).await;
    assert_eq!(r.code, 500, "{r:?}");
    c.ok("VRFY x", 252).await;
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn helo_allows_no_extensions() {
    let server = DevSmtpServer::builder()
        .accept_token("tok")
        .require_auth(false)
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.reply().await;
    c.ok("HELO client.test", 250).await;
    let r = c
        .ok(&format!("AUTH XOAUTH2 {}", xoauth2("u", "tok")), 503)
        .await;
    assert_eq!(r.last(), "5.5.1 Error: send EHLO first");
    let r = c.ok("MAIL FROM:<a@b> SIZE=10", 555).await;
    assert!(r.last().starts_with("5.5.4 "), "{r:?}");
    c.ok("MAIL FROM:<a@b> BODY=8BITMIME", 555).await;
    c.ok("MAIL FROM:<a@b>", 250).await;
    c.ok("RSET", 250).await;

    // After EHLO they work; a later HELO takes them away again.
    c.ok("EHLO client.test", 250).await;
    c.ok("MAIL FROM:<a@b> SIZE=10", 250).await;
    c.ok("RSET", 250).await;
    c.ok("HELO client.test", 250).await;
    c.ok("MAIL FROM:<a@b> SIZE=10", 555).await;
    c.ok(&format!("AUTH XOAUTH2 {}", xoauth2("u", "tok")), 503)
        .await;
    c.ok("EHLO client.test", 250).await;
    c.ok(&format!("AUTH XOAUTH2 {}", xoauth2("u", "tok")), 235)
        .await;
}

#[tokio::test]
async fn unadvertised_parameters_get_555() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let mut c = Client::connect(server.addr()).await;
    let ehlo = c.hello().await;
    assert!(!ehlo.text().contains("SMTPUTF8"), "{ehlo:?}");
    let r = c.ok("MAIL FROM:<a@b> SMTPUTF8", 555).await;
    assert_eq!(r.last(), "5.5.4 Unsupported option: SMTPUTF8");
    c.ok("MAIL FROM:<a@b> RET=HDRS", 555).await;
    c.ok("MAIL FROM:<a@b> XFOO=1", 555).await;
    // AUTH= is not advertised here (no AUTH offered).
    c.ok("MAIL FROM:<a@b> AUTH=<>", 555).await;
    c.ok("MAIL FROM:<a@b> BODY=BINARYMIME", 501).await;
    c.ok("MAIL FROM:<a@b> body=7bit size=5", 250).await;
    let r = c.ok("RCPT TO:<c@d> NOTIFY=NEVER", 555).await;
    assert_eq!(r.last(), "5.5.4 Unsupported option: NOTIFY");
    c.ok("RCPT TO:<c@d>", 250).await;

    // With AUTH advertised, MAIL's AUTH= parameter (RFC 4954) is known.
    let server = DevSmtpServer::builder()
        .accept_token("tok")
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok(&format!("AUTH XOAUTH2 {}", xoauth2("u", "tok")), 235)
        .await;
    c.ok("MAIL FROM:<a@b> AUTH=<>", 250).await;
}

#[tokio::test]
async fn token_user_restricts_every_token_source() {
    let server = DevSmtpServer::builder()
        .accept_token("tok")
        .token_user("alice@example.com")
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok(
        &format!("AUTH XOAUTH2 {}", xoauth2("bob@example.com", "tok")),
        334,
    )
    .await;
    c.ok("", 535).await;
    c.ok(&format!("AUTH OAUTHBEARER {}", oauthbearer("", "tok")), 334)
        .await;
    c.ok("AQ==", 535).await;
    c.ok(
        &format!("AUTH XOAUTH2 {}", xoauth2("Alice@Example.com", "tok")),
        235,
    )
    .await;
}

#[tokio::test]
async fn registry_tokens_bound_to_a_user() {
    let registry = TokenRegistry::new();
    registry.insert_for_user("bound", "alice@example.com", Duration::from_secs(60));
    registry.insert("free", Duration::from_secs(60));
    assert!(registry.is_valid("bound"));
    assert!(registry.is_valid_for("bound", "alice@example.com"));
    assert!(!registry.is_valid_for("bound", "bob@example.com"));
    assert!(registry.is_valid_for("free", "bob@example.com"));
    assert_eq!(
        registry.issued()[0].user.as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(registry.issued()[1].user, None);

    let server = DevSmtpServer::builder()
        .token_registry(registry)
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok(
        &format!("AUTH XOAUTH2 {}", xoauth2("bob@example.com", "bound")),
        334,
    )
    .await;
    c.ok("", 535).await;
    c.ok(
        &format!("AUTH OAUTHBEARER {}", oauthbearer("", "bound")),
        334,
    )
    .await;
    c.ok("AQ==", 535).await;
    // An unbound token goes with any user (the default).
    c.ok(
        &format!("AUTH XOAUTH2 {}", xoauth2("bob@example.com", "free")),
        235,
    )
    .await;
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok(
        &format!("AUTH XOAUTH2 {}", xoauth2("alice@example.com", "bound")),
        235,
    )
    .await;
}

#[tokio::test]
async fn endpoint_binds_a_clients_tokens_to_its_user() {
    let endpoint = DevTokenEndpoint::builder()
        .client("cid", "csecret")
        .client_user("cid", "alice@example.com")
        .client("other", "osecret")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut tokens = Vec::new();
    for (id, secret) in [("cid", "csecret"), ("other", "osecret")] {
        let json: serde_json::Value = http
            .post(endpoint.url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("scope", "https://outlook.office365.com/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(json["access_token"].as_str().unwrap().to_owned());
    }
    let issued = endpoint.registry().issued();
    assert_eq!(issued[0].user.as_deref(), Some("alice@example.com"));
    assert_eq!(issued[1].user, None);

    let server = DevSmtpServer::builder()
        .token_registry(endpoint.registry())
        .start()
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    let bound = &tokens[0];
    c.ok(
        &format!("AUTH XOAUTH2 {}", xoauth2("bob@example.com", bound)),
        334,
    )
    .await;
    c.ok("", 535).await;
    c.ok(
        &format!("AUTH XOAUTH2 {}", xoauth2("alice@example.com", bound)),
        235,
    )
    .await;
    let mut c = Client::connect(server.addr()).await;
    c.hello().await;
    c.ok(
        &format!("AUTH XOAUTH2 {}", xoauth2("bob@example.com", &tokens[1])),
        235,
    )
    .await;
}
