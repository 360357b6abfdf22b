//! Transactions against a scripted server on an in-memory stream
//! (`tokio::io::duplex`): what the client writes, in which groups, and
//! what it makes of each reply, with no socket.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::{Address, Envelope};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::task::JoinHandle;

use super::*;
use crate::settings::{ServerSettings, TlsMode};
use crate::smtp::connection::Peer;

fn peer() -> Arc<Peer> {
    Arc::new(Peer::new(ServerSettings {
        host: "scripted.test".into(),
        port: 25,
        tls: TlsMode::None,
        ca_files: Vec::new(),
        timeout: Duration::from_secs(2),
        helo_name: Some("client.test".into()),
        allow_plaintext_auth: false,
        max_connections: 1,
    }))
}

fn envelope(to: &[&str]) -> Envelope {
    Envelope::new(
        Some("alm@example.com".parse::<Address>().unwrap()),
        to.iter().map(|t| t.parse::<Address>().unwrap()).collect(),
    )
    .unwrap()
}

/// A server that greets, answers EHLO with `extensions`, then for each
/// step reads `lines` lines (all of them before it answers, so a client
/// that waits for a reply in the middle of a group stalls and the step
/// fails) and writes `reply`. Returns every line it read.
fn server(
    io: DuplexStream,
    extensions: &'static [&'static str],
    steps: Vec<(usize, &'static str)>,
) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let (read, mut write) = tokio::io::split(io);
        let mut read = BufReader::new(read);
        let mut seen = Vec::new();
        let mut line = String::new();
        write
            .write_all(b"220 scripted.test ESMTP\r\n")
            .await
            .unwrap();
        read.read_line(&mut line).await.unwrap();
        seen.push(line.trim_end().to_owned());
        let mut ehlo = String::from("250-scripted.test\r\n");
        for (i, ext) in extensions.iter().enumerate() {
            let sep = if i + 1 == extensions.len() { ' ' } else { '-' };
            ehlo.push_str(&format!("250{sep}{ext}\r\n"));
        }
        write.write_all(ehlo.as_bytes()).await.unwrap();
        for (lines, reply) in steps {
            for _ in 0..lines {
                line.clear();
                let read_one = read.read_line(&mut line);
                tokio::time::timeout(Duration::from_secs(1), read_one)
                    .await
                    .unwrap_or_else(|_| panic!("the client stopped writing after {seen:?}"))
                    .unwrap();
                seen.push(line.trim_end().to_owned());
            }
            write.write_all(reply.as_bytes()).await.unwrap();
        }
        seen
    })
}

async fn connect(io: DuplexStream) -> Connection<DuplexStream> {
    let peer = peer();
    let deadline = peer.deadline();
    Connection::over(&peer, io, deadline)
        .await
        .expect("greeted")
}

const MESSAGE: &[u8] = b"Subject: t\r\n\r\nbody\r\n";
/// `MESSAGE` on the wire, ended by the lone dot.
const MESSAGE_LINES: [&str; 4] = ["Subject: t", "", "body", "."];

#[tokio::test]
async fn a_pipelined_group_goes_in_one_write_and_a_refused_rcpt_fails_only_itself() {
    let (client, far) = tokio::io::duplex(64 * 1024);
    let server = server(
        far,
        &["PIPELINING", "8BITMIME"],
        vec![
            // MAIL, both RCPTs and DATA before any reply.
            (
                4,
                "250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n354 go on\r\n",
            ),
            (4, "250 2.0.0 queued as 42\r\n"),
        ],
    );
    let mut conn = connect(client).await;
    let message = WireMessage::for_server(MESSAGE, conn.caps()).unwrap();
    let sent = send(
        &mut conn,
        &envelope(&["dev@example.com", "nobody@example.com"]),
        &message,
        RecipientPolicy::PerRecipient,
    )
    .await
    .expect("sent to the accepted recipient");
    assert_eq!(sent.accepted, ["dev@example.com"]);
    assert_eq!(sent.refused.len(), 1);
    assert_eq!(sent.refused[0].address, "nobody@example.com");
    assert_eq!(sent.refused[0].code, 550);
    assert_eq!(sent.reply, "2.0.0 queued as 42");
    assert!(!conn.is_poisoned());
    let seen = server.await.unwrap();
    assert_eq!(seen[0], "EHLO client.test");
    assert!(
        seen[1].starts_with("MAIL FROM:<alm@example.com>"),
        "{seen:?}"
    );
    assert_eq!(
        seen[2..5],
        [
            "RCPT TO:<dev@example.com>",
            "RCPT TO:<nobody@example.com>",
            "DATA"
        ]
    );
    assert_eq!(seen[5..], MESSAGE_LINES);
}

#[tokio::test]
async fn without_pipelining_all_or_nothing_stops_at_the_refused_rcpt() {
    let (client, far) = tokio::io::duplex(64 * 1024);
    let server = server(
        far,
        &["8BITMIME"],
        vec![
            (1, "250 ok\r\n"),
            (1, "250 ok\r\n"),
            (1, "550 5.1.1 no such user\r\n"),
        ],
    );
    let mut conn = connect(client).await;
    let message = WireMessage::for_server(MESSAGE, conn.caps()).unwrap();
    let err = send(
        &mut conn,
        &envelope(&["dev@example.com", "nobody@example.com"]),
        &message,
        RecipientPolicy::AllOrNothing,
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, Error::Recipients { .. }), "{err}");
    // One command a step, and no DATA after the refusal.
    let seen = server.await.unwrap();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[3], "RCPT TO:<nobody@example.com>");
}

#[tokio::test]
async fn a_421_at_the_end_of_data_poisons_the_connection() {
    let (client, far) = tokio::io::duplex(64 * 1024);
    let server = server(
        far,
        &["PIPELINING"],
        vec![
            (3, "250 ok\r\n250 ok\r\n354 go on\r\n"),
            (4, "421 4.3.0 closing\r\n"),
        ],
    );
    let mut conn = connect(client).await;
    let message = WireMessage::for_server(MESSAGE, conn.caps()).unwrap();
    let err = send(
        &mut conn,
        &envelope(&["dev@example.com"]),
        &message,
        RecipientPolicy::PerRecipient,
    )
    .await
    .expect_err("421");
    assert!(err.is_transient(), "{err}");
    assert!(
        conn.is_poisoned(),
        "a connection the server closes is never reused"
    );
    server.await.unwrap();
}
