//! What the relay accepts at MAIL and RCPT, the outbox delivers: quoted
//! local parts, address literals, `<postmaster>` (qualified with the
//! configured domain) and local parts over 64 octets reach the upstream;
//! a form that cannot be delivered is refused at RCPT with 553, and the
//! other recipients of the message still get it.

mod relay_support;

use mailgate_devserver::DevSmtpServer;
use mailgate_integration_tests::{PeerConfig, PeerKind, SmtpPeer};
use relay_support::{
    Client, Relay, SENDER, WAIT, blocking, message, poll, queue_all, relay_folder,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc_5321_forms_accepted_at_rcpt_are_delivered() {
    // aiosmtpd upstream: it takes every RFC 5321 form (smtp-server refuses
    // a quoted local part with a space at MAIL).
    let peer = SmtpPeer::start(PeerKind::Python, PeerConfig::new());
    let dir = relay_folder(peer.port(), &[]);
    let relay = Relay::start(dir.path());
    let long_local = format!("{}@example.com", "l".repeat(65));
    let accepted = [
        "\"john doe\"@example.com",
        "a@[192.0.2.7]",
        "a@[IPv6:2001:db8::7]",
        long_local.as_str(),
        "dev@example.com",
    ];
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        c.expect("EHLO client.example", 250);
        c.expect("MAIL FROM:<\"build bot\"@example.com>", 250);
        for to in accepted {
            c.expect(&format!("RCPT TO:<{to}>"), 250);
        }
        c.expect("RCPT TO:<postmaster>", 250);
        c.expect("DATA", 354);
        c.send(message("forms", "every form").as_bytes()).unwrap();
        let (code, text) = c.cmd(".");
        assert_eq!(code, 250, "{text}");
        c.expect("QUIT", 221);
    });
    poll(
        "the message tried",
        WAIT,
        || {
            queue_all(dir.path())
                .iter()
                .all(|m| m["status"] != "queued" && m["status"] != "sending")
                .then_some(())
        },
        || format!("{:#?}", queue_all(dir.path())),
    );
    let messages = peer.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1, "{:#?}", queue_all(dir.path()));
    let mut expected: Vec<String> = accepted.iter().map(|s| s.to_string()).collect();
    // The configured sender's domain.
    expected.push(format!("postmaster@{}", SENDER.rsplit_once('@').unwrap().1));
    assert_eq!(messages[0].to, expected);
    assert_eq!(messages[0].from, "\"build bot\"@example.com");
    poll(
        "the message sent",
        WAIT,
        || {
            queue_all(dir.path())
                .iter()
                .all(|m| m["status"] == "sent")
                .then_some(())
        },
        || format!("{:#?}", queue_all(dir.path())),
    );
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_that_cannot_be_delivered_is_refused_at_rcpt_not_after_data() {
    let server = DevSmtpServer::builder().start().await.expect("dev server");
    let dir = relay_folder(server.port(), &[]);
    let relay = Relay::start(dir.path());
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        c.expect("EHLO client.example", 250);
        c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
        c.expect("RCPT TO:<dev@example.com>", 250);
        // Syntax the listener reads, but no server could be given.
        for bad in ["a@[999.1.1.1]", "a@[IPv6:nope]", "a@-bad-.example"] {
            let (code, text) = c.cmd(&format!("RCPT TO:<{bad}>"));
            assert!(code == 553 || code == 501, "{bad}: {code} {text}");
        }
        c.expect("DATA", 354);
        c.send(message("good one", "still sent").as_bytes())
            .unwrap();
        let (code, text) = c.cmd(".");
        assert_eq!(code, 250, "{text}");
        c.expect("QUIT", 221);
    });
    let messages = server.wait_for_messages(1, WAIT).await;
    assert_eq!(messages[0].rcpt_to, ["dev@example.com"]);
    drop(relay);
    server.shutdown().await;
}

/// An upstream without SMTPUTF8 can never take a non-ASCII local part: the
/// relay refuses it at RCPT (553) once it knows the upstream's extensions
/// (it asks at start), or at the end of DATA (554) for one in a header
/// field, never with a 250 that ends in a dead message. The other
/// recipients still get theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf8_local_part_is_refused_before_the_yes_without_smtputf8_upstream() {
    let peer = SmtpPeer::start(PeerKind::Python, PeerConfig::new().no_smtputf8());
    let dir = relay_folder(peer.port(), &[]);
    let relay = Relay::start(dir.path());
    let utf8 = "j\u{fc}rgen@example.com";
    // The relay learns the upstream's EHLO in the background at start.
    poll(
        "RCPT refused with 553",
        WAIT,
        || {
            let mut c = Client::greeted(relay.addr);
            c.expect("EHLO client.example", 250);
            c.expect(&format!("MAIL FROM:<{SENDER}> SMTPUTF8"), 250);
            let (code, text) = c.cmd(&format!("RCPT TO:<{utf8}>"));
            assert!(code == 250 || code == 553, "{code} {text}");
            (code == 553).then(|| assert!(text.contains("SMTPUTF8"), "{text}"))
        },
        || relay.log(),
    );
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        c.expect("EHLO client.example", 250);
        c.expect(&format!("MAIL FROM:<{SENDER}> SMTPUTF8"), 250);
        c.expect(&format!("RCPT TO:<{utf8}>"), 553);
        c.expect("RCPT TO:<dev@example.com>", 250);
        c.expect("DATA", 354);
        c.send(message("ascii only", "delivered").as_bytes())
            .unwrap();
        c.expect(".", 250);
        // In a header field it is seen at the end of DATA: 554, not 250.
        c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
        c.expect("RCPT TO:<dev@example.com>", 250);
        c.expect("DATA", 354);
        let header = format!("Cc: {utf8}\r\n{}", message("utf-8 cc", "refused"));
        c.send(header.as_bytes()).unwrap();
        let (code, text) = c.cmd(".");
        assert_eq!(code, 554, "{text}");
        assert!(text.contains("SMTPUTF8"), "{text}");
        c.expect("QUIT", 221);
    });
    let messages = peer.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].to, ["dev@example.com"]);
    assert_eq!(
        queue_all(dir.path()).len(),
        1,
        "only the deliverable one was queued"
    );
}
