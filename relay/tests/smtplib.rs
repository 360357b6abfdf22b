//! Python's smtplib as a real client: plain submission, several
//! recipients, STARTTLS, AUTH PLAIN and LOGIN.

mod common;

use std::sync::Arc;

use common::{pki, python, start, test_config};
use mailgate_relay::{RelayConfig, Users, hash_password};

const MESSAGE: &str = "From: alm@example.com\r\nTo: dev@example.com\r\nSubject: relay test\r\n\r\nfirst line\r\n.leading dot\r\n..two dots\r\nlast line\r\n";

/// The submission script: argv = port, mode, [cafile, user, password].
const SCRIPT: &str = r#"
import smtplib, ssl, sys
port = int(sys.argv[1]); mode = sys.argv[2]
msg = ("From: alm@example.com\r\nTo: dev@example.com\r\nSubject: relay test\r\n\r\n"
       "first line\r\n.leading dot\r\n..two dots\r\nlast line\r\n")
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
code, _ = s.ehlo("client.example")
assert code == 250
feats = s.esmtp_features
for f in ("pipelining", "size", "8bitmime", "enhancedstatuscodes"):
    assert f in feats, (f, feats)
rcpts = ["dev@example.com"]
if mode == "plain":
    assert "starttls" not in feats and "auth" not in feats, feats
if mode == "many":
    rcpts = ["a@example.com", "b@example.com", "c@example.org", "a@example.com"]
if mode.startswith("tls"):
    assert "starttls" in feats, feats
    assert "auth" not in feats, "AUTH offered before STARTTLS"
    ctx = ssl.create_default_context(cafile=sys.argv[3])
    s.starttls(context=ctx)
    s.ehlo("client.example")
    assert "starttls" not in s.esmtp_features
    assert s.esmtp_features.get("auth", "").split() == ["PLAIN", "LOGIN"], s.esmtp_features
    user, password = sys.argv[4], sys.argv[5]
    if mode == "tls-plain":
        s.login(user, password)
    elif mode == "tls-plain-prompted":
        s.user, s.password = user, password
        s.auth("PLAIN", s.auth_plain, initial_response_ok=False)
    elif mode == "tls-login":
        s.user, s.password = user, password
        s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    elif mode == "tls-wrong":
        try:
            s.login(user, password + "x")
        except smtplib.SMTPAuthenticationError as e:
            print("AUTHFAIL", e.smtp_code, e.smtp_error.decode())
            s.quit()
            sys.exit(0)
        sys.exit("wrong password accepted")
refused = s.sendmail("alm@example.com", rcpts, msg)
assert refused == {}, refused
code, text = s.noop()
print("NOOP", code)
s.quit()
print("SENT")
"#;

async fn run_script(port: u16, mode: &str, extra: &[String]) -> String {
    let mut args = vec![port.to_string(), mode.to_owned()];
    args.extend_from_slice(extra);
    let (code, out, err) = python(SCRIPT, &args).await;
    assert_eq!(code, 0, "python failed: {out}\n{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_submission() {
    let relay = start(test_config()).await;
    let out = run_script(relay.addr.port(), "plain", &[]).await;
    assert!(out.contains("SENT"), "{out}");
    assert_eq!(relay.sink.count(), 1);
    let (envelope, data) = relay.sink.get(0);
    assert_eq!(envelope.from, "alm@example.com");
    assert_eq!(envelope.to, vec!["dev@example.com"]);
    assert_eq!(envelope.auth_user, None);
    assert!(!envelope.tls);
    assert_eq!(envelope.client.ip(), relay.addr.ip());
    // smtplib dot-stuffed the lines starting with '.'; the relay undid it.
    assert_eq!(String::from_utf8(data).unwrap(), MESSAGE);
    let stats = relay.handle.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_recipients() {
    let relay = start(test_config()).await;
    let out = run_script(relay.addr.port(), "many", &[]).await;
    assert!(out.contains("SENT"), "{out}");
    let (envelope, _) = relay.sink.get(0);
    // The duplicate is accepted and stored once.
    assert_eq!(
        envelope.to,
        vec!["a@example.com", "b@example.com", "c@example.org"]
    );
}

fn tls_auth_config(pki: &common::Pki) -> RelayConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    std::fs::write(&path, format!("printer:{}\n", hash_password("pr1nter pw"))).unwrap();
    RelayConfig {
        tls: Some(Arc::clone(&pki.server)),
        users: Some(Users::load(&path).unwrap()),
        ..test_config()
    }
}

async fn tls_submission(mode: &str) {
    let pki = pki();
    let relay = start(tls_auth_config(&pki)).await;
    let args = [
        pki.ca_path.display().to_string(),
        "printer".to_owned(),
        "pr1nter pw".to_owned(),
    ];
    let out = run_script(relay.addr.port(), mode, &args).await;
    assert!(out.contains("SENT"), "{out}");
    let (envelope, data) = relay.sink.get(0);
    assert!(envelope.tls);
    assert_eq!(envelope.auth_user.as_deref(), Some("printer"));
    assert_eq!(String::from_utf8(data).unwrap(), MESSAGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_then_auth_plain() {
    tls_submission("tls-plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_then_auth_plain_prompted() {
    tls_submission("tls-plain-prompted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_then_auth_login() {
    tls_submission("tls-login").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_then_wrong_password() {
    let pki = pki();
    let relay = start(tls_auth_config(&pki)).await;
    let args = [
        pki.ca_path.display().to_string(),
        "printer".to_owned(),
        "pr1nter pw".to_owned(),
    ];
    let out = run_script(relay.addr.port(), "tls-wrong", &args).await;
    assert!(out.contains("AUTHFAIL 535 5.7.8"), "{out}");
    assert_eq!(relay.sink.count(), 0);
    // smtplib's login() tries each offered mechanism: PLAIN, then LOGIN.
    assert_eq!(relay.handle.stats().auth_failures, 2);
}
