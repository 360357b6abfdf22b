//! PIPELINING (RFC 2920) end to end: against Nodemailer's smtp-server (which
//! advertises it), aiosmtpd told to advertise it, aiosmtpd and the dev server
//! without it; what the client wrote is seen through a recording proxy. A
//! mixed RCPT result (one 452 or 550 among three) delivers to the other two
//! and names the refused address; with `all_or_nothing` it sends nothing,
//! and the next message on the same Mailer goes through.

#![cfg(feature = "open")]

use std::time::Duration;

use mailgate::{Error, ErrorKind, Mailer};
use mailgate_devserver::{DelayProxy, DevSmtpServer};
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerKind, SmtpPeer};

const FROM: &str = "alm@example.com";
const TO: [&str; 3] = ["a@example.com", "b@example.com", "c@example.com"];
const WAIT: Duration = Duration::from_secs(10);

fn open_mailer(port: u16) -> (ConfigDir, Mailer) {
    open_mailer_with(port, false)
}

fn open_mailer_with(port: u16, all_or_nothing: bool) -> (ConfigDir, Mailer) {
    let port = port.to_string();
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", &port),
            ("mksis.logging.email.from", FROM),
            ("mailgate.smtp.timeoutSeconds", "10"),
        ],
        &[],
    );
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .all_or_nothing(all_or_nothing)
        .build()
        .expect("mailer builds");
    (dir, mailer)
}

async fn send_to_three(mailer: &Mailer, subject: &str) -> Result<mailgate::Delivery, Error> {
    mailer
        .sendmail(FROM, &TO.join(", "), subject, "pipelined?")
        .await
}

/// Whether one chunk the client wrote holds MAIL, every RCPT and DATA.
fn envelope_in_one_write(proxy: &DelayProxy) -> bool {
    proxy.client_chunks().iter().any(|chunk| {
        let text = String::from_utf8_lossy(&chunk.bytes);
        text.contains("MAIL FROM:<")
            && TO
                .iter()
                .all(|to| text.contains(&format!("RCPT TO:<{to}>")))
            && text.ends_with("DATA\r\n")
    })
}

/// Whether MAIL went out in a chunk of its own.
fn mail_alone(proxy: &DelayProxy) -> bool {
    proxy.client_chunks().iter().any(|chunk| {
        let text = String::from_utf8_lossy(&chunk.bytes);
        text.starts_with("MAIL FROM:<") && !text.contains("RCPT")
    })
}

async fn peer_behind_proxy(kind: PeerKind, config: PeerConfig) -> (SmtpPeer, DelayProxy) {
    let peer = SmtpPeer::start(kind, config);
    let upstream = format!("127.0.0.1:{}", peer.port()).parse().unwrap();
    let proxy = DelayProxy::start(upstream, Duration::from_millis(1))
        .await
        .expect("proxy starts");
    (peer, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_against_servers_that_offer_it() {
    for (kind, config) in [
        (PeerKind::Node, PeerConfig::new()),
        (PeerKind::Python, PeerConfig::new().pipelining()),
    ] {
        let (peer, proxy) = peer_behind_proxy(kind, config).await;
        let (_dir, mailer) = open_mailer(proxy.port());
        send_to_three(&mailer, "pipelined").await.expect("sent");
        let messages = peer.wait_for_messages(1, WAIT);
        assert_eq!(messages[0].to, TO, "{kind}");
        assert!(messages[0].body().contains("pipelined?"), "{kind}");
        assert!(
            envelope_in_one_write(&proxy),
            "{kind}: MAIL, RCPT x3 and DATA in one write: {:?}",
            proxy.client_chunks()
        );
        mailer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_per_round_trip_without_it() {
    let (peer, proxy) = peer_behind_proxy(PeerKind::Python, PeerConfig::new()).await;
    let (_dir, mailer) = open_mailer(proxy.port());
    send_to_three(&mailer, "stepwise").await.expect("sent");
    assert_eq!(peer.wait_for_messages(1, WAIT)[0].to, TO);
    assert!(!envelope_in_one_write(&proxy));
    assert!(mail_alone(&proxy), "{:?}", proxy.client_chunks());
    mailer.close().await;

    let server = DevSmtpServer::builder()
        .pipelining(false)
        .start()
        .await
        .expect("dev server");
    let (_dir, mailer) = open_mailer(server.port());
    send_to_three(&mailer, "stepwise").await.expect("sent");
    assert_eq!(server.messages().len(), 1);
    assert!(server.commands().iter().all(|c| !c.pipelined));
    mailer.close().await;
}

#[tokio::test]
async fn the_dev_server_sees_the_envelope_pipelined() {
    let server = DevSmtpServer::builder().start().await.expect("dev server");
    let (_dir, mailer) = open_mailer(server.port());
    send_to_three(&mailer, "pipelined").await.expect("sent");
    let commands = server.commands();
    let pipelined: Vec<&str> = commands
        .iter()
        .filter(|c| c.pipelined)
        .map(|c| c.verb.as_str())
        .collect();
    assert_eq!(pipelined, ["RCPT", "RCPT", "RCPT", "DATA"], "{commands:?}");
    mailer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_among_three_goes_to_the_other_two() {
    for (kind, config, code) in [
        (PeerKind::Node, PeerConfig::new(), 550),
        (PeerKind::Python, PeerConfig::new().pipelining(), 452),
        (PeerKind::Python, PeerConfig::new(), 550),
    ] {
        let config = config.fail_rcpt_for(TO[1], code);
        let (peer, proxy) = peer_behind_proxy(kind, config).await;
        let (_dir, mailer) = open_mailer(proxy.port());
        let delivery = send_to_three(&mailer, "mixed").await.expect("sent to two");
        assert_eq!(delivery.accepted, [TO[0], TO[2]], "{kind}");
        assert_eq!(delivery.recipients, 2, "{kind}");
        assert_eq!(delivery.refused.len(), 1, "{kind}");
        let refused = &delivery.refused[0];
        assert_eq!(
            (refused.address.as_str(), refused.code, refused.index),
            (TO[1], code, 1),
            "{kind}"
        );
        assert!(!delivery.is_complete());
        let err = delivery.refusal().expect("a refusal");
        assert_eq!(err.exit_code(), if code == 452 { 75 } else { 65 }, "{kind}");
        let text = err.to_string();
        assert!(
            text.contains("<b@example.com>") && text.contains("sent to the other 2"),
            "{text}"
        );
        let messages = peer.wait_for_messages(1, WAIT);
        assert_eq!(messages.len(), 1, "{kind}");
        assert_eq!(messages[0].to, [TO[0], TO[2]], "{kind}");
        assert_eq!(messages[0].header("Subject").as_deref(), Some("mixed"));
        mailer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_or_nothing_one_452_among_three_sends_nothing_and_names_the_address() {
    for (kind, config) in [
        (PeerKind::Node, PeerConfig::new()),
        (PeerKind::Python, PeerConfig::new().pipelining()),
        (PeerKind::Python, PeerConfig::new()),
    ] {
        let config = config.fail_rcpt_for(TO[1], 452);
        let (peer, proxy) = peer_behind_proxy(kind, config).await;
        let (_dir, mailer) = open_mailer_with(proxy.port(), true);
        let err = send_to_three(&mailer, "mixed").await.unwrap_err();
        match &err {
            Error::Recipients { total, refused, .. } => {
                assert_eq!(*total, 3, "{kind}: {err}");
                assert_eq!(refused.len(), 1, "{kind}: {err}");
                assert_eq!(refused[0].address, TO[1], "{kind}: {err}");
                assert_eq!(refused[0].code, 452, "{kind}: {err}");
            }
            other => panic!("{kind}: expected Error::Recipients, got {other:?}"),
        }
        assert_eq!(err.kind(), ErrorKind::Temporary, "{kind}");
        assert_eq!(err.exit_code(), 75);
        assert!(err.to_string().contains("<b@example.com> 452"), "{err}");

        // The next message (without the refused address) goes through on
        // the same Mailer, and only it arrives.
        mailer
            .sendmail(FROM, TO[0], "after", "next")
            .await
            .expect("next message sent");
        let messages = peer.wait_for_messages(1, WAIT);
        assert_eq!(
            messages.len(),
            1,
            "{kind}: the refused message went nowhere"
        );
        assert_eq!(messages[0].to, [TO[0]], "{kind}");
        assert_eq!(messages[0].header("Subject").as_deref(), Some("after"));
        mailer.close().await;
    }
}
