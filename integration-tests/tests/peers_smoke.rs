//! Proves the test harness itself: the third-party SMTP peers install,
//! start, speak plain SMTP, STARTTLS and implicit TLS with the test PKI,
//! judge AUTH as configured, and record what they saw. The client here is
//! lettre (or a raw socket for the SASL error exchange), never mailgate.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mailgate_integration_tests::{PeerConfig, PeerEvent, PeerKind, SmtpPeer, TestPki};

const WAIT: Duration = Duration::from_secs(15);
const FROM: &str = "alice@example.com";
const TO: &str = "bob@example.org";
const PASSWORD: &str = "s3cret pass";

fn tls(ca_pem: &str) -> TlsParameters {
    TlsParameters::builder("localhost".to_owned())
        .add_root_certificate(Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"))
        .build_rustls()
        .expect("TLS parameters")
}

fn transport(
    peer: &SmtpPeer,
    tls: Tls,
    auth: Option<Mechanism>,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(peer.host())
        .port(peer.port())
        .timeout(Some(Duration::from_secs(10)))
        .tls(tls);
    if let Some(mechanism) = auth {
        builder = builder
            .credentials(Credentials::new(FROM.to_owned(), PASSWORD.to_owned()))
            .authentication(vec![mechanism]);
    }
    builder.build()
}

fn message(subject: &str) -> Message {
    Message::builder()
        .from(FROM.parse::<Mailbox>().unwrap())
        .to(TO.parse::<Mailbox>().unwrap())
        .subject(subject)
        .body(String::from("Hello from the harness smoke test.\n"))
        .unwrap()
}

/// The checks every successful send shares.
fn assert_one_message(peer: &SmtpPeer, subject: &str, secure: bool, auth: Option<&str>) {
    let messages = peer.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let m = &messages[0];
    assert_eq!(m.from, FROM);
    assert_eq!(m.to, vec![TO.to_owned()]);
    assert_eq!(m.secure, secure, "secure flag");
    assert_eq!(m.user.as_deref(), auth.map(|_| FROM));
    assert_eq!(m.method.as_deref(), auth);
    assert_eq!(m.header("Subject").as_deref(), Some(subject));
    assert!(m.body().contains("Hello from the harness"), "{:?}", m.data);

    // lettre (no pool) quits after each send: exactly one connection.
    assert_eq!(peer.wait_for_closed_connections(1, WAIT), 1);
    assert_eq!(peer.connections(), 1);
    let auths = peer.auth_attempts();
    match auth {
        Some(method) => {
            assert_eq!(auths.len(), 1, "{auths:#?}");
            assert_eq!(auths[0].method, method);
            assert_eq!(auths[0].user.as_deref(), Some(FROM));
            assert!(auths[0].ok);
        }
        None => assert!(auths.is_empty(), "{auths:#?}"),
    }
    let tls_events = peer
        .events()
        .iter()
        .filter(|e| matches!(e, PeerEvent::Tls { .. }))
        .count();
    assert_eq!(tls_events, usize::from(secure));
}

fn basic_auth_config(method: &str) -> PeerConfig {
    PeerConfig::new().auth(&[method]).user(FROM, PASSWORD)
}

#[tokio::test]
async fn node_plain_with_auth_plain() {
    let peer = SmtpPeer::start(PeerKind::Node, basic_auth_config("PLAIN"));
    transport(&peer, Tls::None, Some(Mechanism::Plain))
        .send(message("node plain"))
        .await
        .expect("send");
    assert_one_message(&peer, "node plain", false, Some("PLAIN"));
}

#[tokio::test]
async fn node_starttls_with_auth_plain() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(PeerKind::Node, basic_auth_config("PLAIN").starttls(&pki));
    transport(
        &peer,
        Tls::Required(tls(pki.ca_cert_pem())),
        Some(Mechanism::Plain),
    )
    .send(message("node starttls"))
    .await
    .expect("send");
    assert_one_message(&peer, "node starttls", true, Some("PLAIN"));
}

#[tokio::test]
async fn node_implicit_tls_with_auth_plain() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Node,
        basic_auth_config("PLAIN").implicit_tls(&pki),
    );
    transport(
        &peer,
        Tls::Wrapper(tls(pki.ca_cert_pem())),
        Some(Mechanism::Plain),
    )
    .send(message("node implicit"))
    .await
    .expect("send");
    assert_one_message(&peer, "node implicit", true, Some("PLAIN"));
    assert!(matches!(
        peer.events()[0],
        PeerEvent::Connect { secure: true, .. }
    ));
}

#[tokio::test]
async fn node_open_relay_takes_mail_without_auth() {
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new());
    transport(&peer, Tls::None, None)
        .send(message("node open"))
        .await
        .expect("send");
    assert_one_message(&peer, "node open", false, None);
}

#[tokio::test]
async fn node_refuses_a_wrong_password_and_records_it() {
    let peer = SmtpPeer::start(
        PeerKind::Node,
        PeerConfig::new().auth(&["PLAIN"]).user(FROM, "other"),
    );
    let err = transport(&peer, Tls::None, Some(Mechanism::Plain))
        .send(message("refused"))
        .await
        .expect_err("a wrong password must be refused");
    assert!(err.is_permanent(), "{err:?}");
    let auths = peer.wait_for_auth_attempts(1, WAIT);
    assert!(!auths[0].ok);
    assert_eq!(auths[0].reason.as_deref(), Some("invalid"));
    assert!(peer.messages().is_empty());
}

#[tokio::test]
async fn client_trusting_the_other_ca_rejects_the_server() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(PeerKind::Node, PeerConfig::new().starttls(&pki));
    let err = transport(&peer, Tls::Required(tls(pki.other_ca_cert_pem())), None)
        .send(message("wrong CA"))
        .await
        .expect_err("an untrusted server certificate must fail");
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "{err:?}"
    );
    assert!(peer.messages().is_empty());
}

#[tokio::test]
async fn python_plain_with_auth_login() {
    let peer = SmtpPeer::start(PeerKind::Python, basic_auth_config("LOGIN"));
    transport(&peer, Tls::None, Some(Mechanism::Login))
        .send(message("python plain"))
        .await
        .expect("send");
    assert_one_message(&peer, "python plain", false, Some("LOGIN"));
}

#[tokio::test]
async fn python_starttls_with_auth_plain() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(
        PeerKind::Python,
        basic_auth_config("PLAIN").starttls(&pki).require_starttls(),
    );
    transport(
        &peer,
        Tls::Required(tls(pki.ca_cert_pem())),
        Some(Mechanism::Plain),
    )
    .send(message("python starttls"))
    .await
    .expect("send");
    assert_one_message(&peer, "python starttls", true, Some("PLAIN"));
}

#[tokio::test]
async fn python_implicit_tls_open_relay() {
    let pki = TestPki::new();
    let peer = SmtpPeer::start(PeerKind::Python, PeerConfig::new().implicit_tls(&pki));
    transport(&peer, Tls::Wrapper(tls(pki.ca_cert_pem())), None)
        .send(message("python implicit"))
        .await
        .expect("send");
    assert_one_message(&peer, "python implicit", true, None);
}

#[tokio::test]
async fn xoauth2_accepts_a_listed_token() {
    for kind in PeerKind::ALL {
        let peer = SmtpPeer::start(
            kind,
            PeerConfig::new().auth(&["XOAUTH2"]).token(FROM, "tok-1"),
        );
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(peer.host())
            .port(peer.port())
            .tls(Tls::None)
            .credentials(Credentials::new(FROM.to_owned(), "tok-1".to_owned()))
            .authentication(vec![Mechanism::Xoauth2])
            .build()
            .send(message("xoauth2"))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let m = &peer.wait_for_messages(1, WAIT)[0];
        assert_eq!(m.method.as_deref(), Some("XOAUTH2"), "{kind}");
        assert_eq!(m.user.as_deref(), Some(FROM), "{kind}");
    }
}

/// A minimal line-based SMTP client for the SASL exchanges lettre can't do.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(peer: &SmtpPeer) -> Raw {
        let stream = TcpStream::connect(peer.addr()).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        raw.reply(); // greeting
        raw.cmd("EHLO client.test");
        raw
    }

    /// Reads one (possibly multi-line) reply; returns (code, last line text).
    fn reply(&mut self) -> (u16, String) {
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed while waiting for a reply");
            let code: u16 = line[..3].parse().unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return (code, line.get(4..).unwrap_or("").trim_end().to_owned());
            }
        }
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn xoauth2_refusal_sends_the_error_challenge_then_535_and_refuse_first_auth_works() {
    for kind in PeerKind::ALL {
        let peer = SmtpPeer::start(
            kind,
            PeerConfig::new()
                .auth(&["XOAUTH2"])
                .token(FROM, "good")
                .scope("https://outlook.office365.com/.default")
                .refuse_first_auth(1),
        );
        let mut raw = Raw::connect(&peer);
        let ir =
            |token: &str| b64(format!("user={FROM}\x01auth=Bearer {token}\x01\x01").as_bytes());

        // Wrong token: 334 + base64 JSON error, the client answers an empty line, then 535.
        let (code, challenge) = raw.cmd(&format!("AUTH XOAUTH2 {}", ir("bad")));
        assert_eq!(code, 334, "{kind}");
        assert!(!challenge.is_empty(), "{kind}: error challenge is empty");
        assert_eq!(raw.cmd("").0, 535, "{kind}");

        // Right token, but refuseFirstAuth(1): refused the same way once ...
        assert_eq!(
            raw.cmd(&format!("AUTH XOAUTH2 {}", ir("good"))).0,
            334,
            "{kind}"
        );
        assert_eq!(raw.cmd("").0, 535, "{kind}");
        // ... then accepted.
        assert_eq!(
            raw.cmd(&format!("AUTH XOAUTH2 {}", ir("good"))).0,
            235,
            "{kind}"
        );
        raw.cmd("QUIT");

        let auths = peer.wait_for_auth_attempts(3, WAIT);
        let verdicts: Vec<_> = auths.iter().map(|a| (a.ok, a.reason.as_deref())).collect();
        assert_eq!(
            verdicts,
            vec![
                (false, Some("invalid")),
                (false, Some("refuseFirstAuth")),
                (true, None)
            ],
            "{kind}"
        );
    }
}

#[test]
fn python_oauthbearer_refusal_reads_the_client_ack_then_535() {
    let peer = SmtpPeer::start(
        PeerKind::Python,
        PeerConfig::new().auth(&["OAUTHBEARER"]).token(FROM, "good"),
    );
    let mut raw = Raw::connect(&peer);
    let ir = |token: &str| {
        b64(
            format!("n,a={FROM},\x01host=localhost\x01port=25\x01auth=Bearer {token}\x01\x01")
                .as_bytes(),
        )
    };
    assert_eq!(raw.cmd(&format!("AUTH OAUTHBEARER {}", ir("bad"))).0, 334);
    assert_eq!(raw.cmd(&b64(b"\x01")).0, 535);
    assert_eq!(raw.cmd(&format!("AUTH OAUTHBEARER {}", ir("good"))).0, 235);
    raw.cmd("QUIT");
    let auths = peer.wait_for_auth_attempts(2, WAIT);
    assert_eq!(auths[1].method, "OAUTHBEARER");
    assert_eq!(auths[1].user.as_deref(), Some(FROM));
    assert!(auths[1].ok);
}
