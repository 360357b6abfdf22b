//! The relay's DSN extension end to end (RFC 3461 in, RFC 3464 out): a
//! client's NOTIFY, RET, ENVID and ORCPT decide which delivery status
//! notifications its sender gets and what they carry; aiosmtpd upstream
//! refuses some recipients; the reports are parsed with mail-parser.

mod relay_support;

use mail_parser::{MessageParser, MimeHeaders as _, PartType};
use mailgate_integration_tests::{PeerConfig, PeerKind, ReceivedMessage, SmtpPeer};
use relay_support::{Client, Relay, WAIT, blocking, poll, queue_all, relay_folder};

const APP: &str = "app@example.org";

/// The `message/delivery-status` fields of a DSN, and its parts' types.
fn report(m: &ReceivedMessage) -> (String, Vec<String>) {
    let parsed = MessageParser::default().parse(&m.raw).expect("parses");
    let ct = parsed.content_type().expect("content type");
    assert_eq!(
        (ct.ctype(), ct.subtype(), ct.attribute("report-type")),
        ("multipart", Some("report"), Some("delivery-status"))
    );
    let mut fields = String::new();
    let mut types = Vec::new();
    for part in parsed.parts.iter().skip(1) {
        let ct = part.content_type().unwrap();
        types.push(format!(
            "{}/{}",
            ct.ctype(),
            ct.subtype().unwrap_or_default()
        ));
        if ct.subtype() == Some("delivery-status") {
            fields = match &part.body {
                PartType::Text(t) => t.to_string(),
                PartType::Binary(b) | PartType::InlineBinary(b) => {
                    String::from_utf8_lossy(b).into_owned()
                }
                PartType::Message(m) => String::from_utf8_lossy(m.raw_message()).into_owned(),
                other => panic!("{other:?}"),
            };
        }
    }
    (fields, types)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ret_envid_and_orcpt_shape_the_reports() {
    let peer = SmtpPeer::start(
        PeerKind::Python,
        PeerConfig::new()
            .fail_rcpt_for("bad@example.com", 550)
            .fail_rcpt_for("never@example.com", 550),
    );
    let dir = relay_folder(peer.port(), &[]);
    let relay = Relay::start(dir.path());
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        let ehlo = c.expect("EHLO client.example", 250);
        assert!(ehlo.lines().any(|l| l == "DSN"), "{ehlo}");
        c.expect(&format!("MAIL FROM:<{APP}> RET=FULL ENVID=build+2B42"), 250);
        c.expect(
            "RCPT TO:<good@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;team+2Bgood@example.com",
            250,
        );
        c.expect(
            "RCPT TO:<bad@example.com> NOTIFY=FAILURE ORCPT=rfc822;bad@example.com",
            250,
        );
        c.expect("RCPT TO:<never@example.com> NOTIFY=NEVER", 250);
        c.expect("DATA", 354);
        c.send(b"From: app@example.org\r\nSubject: nightly\r\n\r\nthe full body\r\n")
            .unwrap();
        let (code, text) = c.cmd(".");
        assert_eq!(code, 250, "{text}");
        c.expect("QUIT", 221);
    });
    // The message, a failure report and a success report.
    let messages = peer.wait_for_messages(3, WAIT);
    assert_eq!(messages.len(), 3, "{:#?}", queue_all(dir.path()));
    let original: Vec<_> = messages.iter().filter(|m| m.from == APP).collect();
    assert_eq!(original[0].to, ["good@example.com"]);
    let dsns: Vec<_> = messages.iter().filter(|m| m.from.is_empty()).collect();
    assert_eq!(dsns.len(), 2);
    let (failed, relayed): (Vec<_>, Vec<_>) = dsns
        .into_iter()
        .map(report)
        .partition(|(fields, _)| fields.contains("Action: failed"));
    let (fields, types) = &failed[0];
    assert!(
        fields.contains("Original-Envelope-Id: build+42\r\n"),
        "{fields}"
    );
    assert!(
        fields.contains("Final-Recipient: rfc822; bad@example.com"),
        "{fields}"
    );
    assert!(
        fields.contains("Original-Recipient: rfc822; bad@example.com"),
        "{fields}"
    );
    assert!(
        !fields.contains("never@example.com"),
        "NOTIFY=NEVER: {fields}"
    );
    assert_eq!(fields.matches("Final-Recipient").count(), 1, "{fields}");
    // RET=FULL: the whole message comes back.
    assert_eq!(
        types,
        &["text/plain", "message/delivery-status", "message/rfc822"]
    );
    let failed_raw = &messages
        .iter()
        .find(|m| m.from.is_empty() && String::from_utf8_lossy(&m.raw).contains("Action: failed"))
        .unwrap()
        .raw;
    assert!(String::from_utf8_lossy(failed_raw).contains("the full body"));
    let (fields, _) = &relayed[0];
    assert!(fields.contains("Action: relayed"), "{fields}");
    assert!(fields.contains("Status: 2.0.0"), "{fields}");
    assert!(
        fields.contains("Final-Recipient: rfc822; good@example.com"),
        "{fields}"
    );
    assert!(
        fields.contains("Original-Recipient: rfc822; team+good@example.com"),
        "{fields}"
    );
    poll(
        "everything done",
        WAIT,
        || {
            queue_all(dir.path())
                .iter()
                .all(|m| m["status"] == "sent" || m["status"] == "dead")
                .then_some(())
        },
        || format!("{:#?}", queue_all(dir.path())),
    );
    drop(relay);
}
