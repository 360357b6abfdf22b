//! Per-recipient results through the binary: `send` to three recipients of
//! which the server refuses one delivers to the other two and exits with
//! the refusal's class; `--all-or-nothing` sends nothing; `send --queue`
//! keeps a state per recipient that `queue list --json` and `queue stats`
//! show.

mod support;

use mailgate_devserver::{DevSmtpServer, Fault, Stage};
use support::{Input, config, mailgate};

const BAD: &str = "bad@example.com";
const GOOD1: &str = "good1@example.com";
const GOOD2: &str = "good2@example.com";

/// The dev server refusing the first RCPT it sees (the test sends `bad` first).
async fn refusing_first(code: u16, text: &str) -> DevSmtpServer {
    DevSmtpServer::builder()
        .fault(Fault::reply(Stage::Rcpt, code, text).times(1))
        .start()
        .await
        .expect("dev server starts")
}

fn send_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "send",
        "--to",
        BAD,
        "--to",
        GOOD1,
        "--to",
        GOOD2,
        "--subject",
        "three",
        "--body",
        "b",
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn one_refused_recipient_gets_no_message_and_the_others_do() {
    let server = refusing_first(550, "5.1.1 No such user").await;
    let dir = config(&server, &[]);
    let run = mailgate(&dir, &send_args(&[]), Input::Empty).await;
    run.assert_code(65);
    let stderr = run.stderr();
    assert!(
        stderr.contains("refused 1 of 3") && stderr.contains("<bad@example.com> 550"),
        "{stderr}"
    );
    assert!(stderr.contains("sent to the other 2"), "{stderr}");
    assert!(stderr.contains(GOOD1) && stderr.contains(GOOD2), "{stderr}");
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].rcpt_to, [GOOD1, GOOD2]);
}

#[tokio::test]
async fn json_lists_accepted_and_refused() {
    let server = refusing_first(452, "4.2.2 Mailbox full").await;
    let dir = config(&server, &[]);
    let run = mailgate(&dir, &send_args(&["--json"]), Input::Empty).await;
    run.assert_code(75);
    let json = run.json();
    assert_eq!(json["status"], "partly sent");
    assert_eq!(json["accepted"], serde_json::json!([GOOD1, GOOD2]));
    assert_eq!(json["refused"][0]["address"], BAD);
    assert_eq!(json["refused"][0]["code"], 452);
    assert_eq!(json["recipients"], 2);
}

#[tokio::test]
async fn all_or_nothing_sends_to_no_one() {
    let server = refusing_first(550, "5.1.1 No such user").await;
    let dir = config(&server, &[]);
    let run = mailgate(&dir, &send_args(&["--all-or-nothing"]), Input::Empty).await;
    run.assert_code(65);
    assert!(
        run.stderr().contains("nothing was sent"),
        "{}",
        run.stderr()
    );
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn queued_recipients_have_their_own_state() {
    let server = refusing_first(550, "5.1.1 No such user").await;
    let dir = config(&server, &[]);
    let run = mailgate(&dir, &send_args(&["--queue", "--json"]), Input::Empty).await;
    // Stored, sent to two, and one recipient will never get it: the
    // caller learns it now, with the refusal's class.
    run.assert_code(65);
    let json = run.json();
    assert_eq!(json["status"], "dead");
    let recipients = json["recipients"].as_array().expect("recipients");
    let status = |a: &str| {
        recipients
            .iter()
            .find(|r| r["address"] == a)
            .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(status(BAD).as_deref(), Some("dead"));
    assert_eq!(status(GOOD1).as_deref(), Some("sent"));
    assert_eq!(status(GOOD2).as_deref(), Some("sent"));
    assert!(
        run.stderr().contains("bad@example.com will never get it"),
        "{}",
        run.stderr()
    );
    assert_eq!(server.messages()[0].rcpt_to, [GOOD1, GOOD2]);

    let list = mailgate(&dir, &["queue", "list", "--json"], Input::Empty).await;
    list.assert_code(0);
    let listed = list.json();
    let bad = listed[0]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == BAD)
        .unwrap()
        .clone();
    assert_eq!(bad["status"], "dead");
    assert!(
        bad["last_error"].as_str().unwrap().contains("No such user"),
        "{bad}"
    );
    let stats = mailgate(&dir, &["queue", "stats", "--json"], Input::Empty).await;
    let stats = stats.json();
    assert_eq!(stats["recipients"]["dead"], 1);
    assert_eq!(stats["recipients"]["sent"], 2);
}
