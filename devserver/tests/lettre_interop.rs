//! A real client (lettre) against the dev server: STARTTLS required, the CA
//! from PEM, AUTH PLAIN and LOGIN.

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism as LettreMechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mailgate_devserver::{DevSmtpServer, Fault, Mechanism, Stage};

async fn send(server: &DevSmtpServer, tls: Tls, mechanism: LettreMechanism) -> Result<(), String> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(server.port())
        .tls(tls)
        .credentials(Credentials::new("alice@example.com".into(), "pw".into()))
        .authentication(vec![mechanism])
        .build();
    let message = Message::builder()
        .from("alice@example.com".parse::<Mailbox>().unwrap())
        .to("bob@example.com".parse::<Mailbox>().unwrap())
        .subject("Grüße from lettre")
        .body(String::from("Hello.\r\n.leading dot\r\n"))
        .unwrap();
    transport
        .send(message)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

fn tls_params(server: &DevSmtpServer) -> TlsParameters {
    TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(server.ca_cert_pem().as_bytes()).unwrap())
        .build_rustls()
        .unwrap()
}

#[tokio::test]
async fn lettre_starttls_plain_and_login() {
    let server = DevSmtpServer::builder()
        .starttls_required()
        .mechanisms([Mechanism::Plain, Mechanism::Login])
        .user("alice@example.com", "pw")
        .start()
        .await
        .unwrap();
    for mechanism in [LettreMechanism::Plain, LettreMechanism::Login] {
        send(&server, Tls::Required(tls_params(&server)), mechanism)
            .await
            .unwrap();
    }
    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    for (m, mech) in messages.iter().zip([Mechanism::Plain, Mechanism::Login]) {
        assert!(m.tls);
        assert_eq!(m.auth.as_ref().unwrap().mechanism, mech);
        assert_eq!(m.subject().as_deref(), Some("Grüße from lettre"));
        assert_eq!(m.rcpt_to, ["bob@example.com"]);
    }
}

#[tokio::test]
async fn lettre_implicit_tls_and_faults() {
    let server = DevSmtpServer::builder()
        .implicit_tls()
        .user("alice@example.com", "pw")
        .fault(Fault::reply(Stage::Mail, 451, "4.3.0 Try later").times(1))
        .start()
        .await
        .unwrap();
    let err = send(
        &server,
        Tls::Wrapper(tls_params(&server)),
        LettreMechanism::Plain,
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("451") || err.to_lowercase().contains("transient"),
        "{err}"
    );
    send(
        &server,
        Tls::Wrapper(tls_params(&server)),
        LettreMechanism::Plain,
    )
    .await
    .unwrap();
    assert_eq!(server.messages().len(), 1);
}
