//! The hostile-server kit: raw, appended, flooding and trickling replies,
//! PIPELINING, the command log and STARTTLS hygiene, driven over raw TCP so
//! every byte and every read is visible.

mod common;

use std::time::{Duration, Instant};

use common::{TIMEOUT, client_config, plain};
use mailgate_devserver::{DevSmtpServer, Fault, ReceivedCommand, Stage};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A client that keeps what it read beyond the reply it asked for.
struct Conn<S> {
    io: S,
    buf: Vec<u8>,
}

impl Conn<TcpStream> {
    async fn connect(server: &DevSmtpServer) -> Self {
        let io = TcpStream::connect(server.addr()).await.expect("connect");
        io.set_nodelay(true).unwrap();
        Conn {
            io,
            buf: Vec::new(),
        }
    }

    /// The TLS handshake; anything read but unused before it is an error.
    async fn tls(self, server: &DevSmtpServer) -> Conn<tokio_rustls::client::TlsStream<TcpStream>> {
        assert!(self.buf.is_empty(), "left over: {:?}", self.buf);
        let connector = TlsConnector::from(client_config(server.ca_cert_pem()));
        let name = ServerName::try_from("localhost").unwrap();
        let io = connector.connect(name, self.io).await.expect("handshake");
        Conn {
            io,
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn write(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
    }

    /// One read: what arrived, empty at the end of the stream.
    async fn read_once(&mut self) -> Vec<u8> {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(TIMEOUT, self.io.read(&mut chunk))
            .await
            .expect("read timed out")
            .unwrap_or(0);
        chunk.truncate(n);
        chunk
    }

    /// Reads until `n` bytes are buffered (or the stream ends); takes them.
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let more = self.read_once().await;
            if more.is_empty() {
                break;
            }
            self.buf.extend_from_slice(&more);
        }
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    /// Reads one reply: its code and its last line's text.
    async fn reply(&mut self) -> (u16, String) {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                let line = String::from_utf8_lossy(&line[..end]).into_owned();
                if line.as_bytes().get(3) == Some(&b'-') {
                    continue;
                }
                let code = line[..3].parse().expect("reply code");
                return (code, line.get(4..).unwrap_or("").to_owned());
            }
            let more = self.read_once().await;
            assert!(!more.is_empty(), "closed; have {:?}", self.buf);
            self.buf.extend_from_slice(&more);
        }
    }

    /// Reads one reply, all its lines.
    async fn reply_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                let line = String::from_utf8_lossy(&line[..end]).into_owned();
                let last = line.as_bytes().get(3) != Some(&b'-');
                lines.push(line);
                if last {
                    return lines;
                }
                continue;
            }
            let more = self.read_once().await;
            assert!(!more.is_empty(), "closed; have {:?}", self.buf);
            self.buf.extend_from_slice(&more);
        }
    }

    async fn cmd(&mut self, line: &str, code: u16) {
        self.write(format!("{line}\r\n").as_bytes()).await;
        let (got, text) = self.reply().await;
        assert_eq!(got, code, "{line} -> {got} {text}");
    }

    /// True when the server closes without sending more.
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.read_once().await.is_empty()
    }
}

/// Waits until the server has no session running.
async fn wait_sessions_closed(server: &DevSmtpServer, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if server.open_connections() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// `(verb, arg, pipelined)` of a connection's commands.
fn log(commands: &[ReceivedCommand]) -> Vec<(String, String, bool)> {
    commands
        .iter()
        .map(|c| (c.verb.clone(), c.arg.clone(), c.pipelined))
        .collect()
}

fn entry(verb: &str, arg: &str, pipelined: bool) -> (String, String, bool) {
    (verb.to_owned(), arg.to_owned(), pipelined)
}

#[tokio::test]
async fn raw_replaces_the_reply_byte_for_byte() {
    let greeting: &[u8] = b"220-first\r\n\x1b[31;1mred\x1b[0m \xff\xfe\r\n220 done\r\n";
    let server = DevSmtpServer::builder()
        .fault(Fault::raw(Stage::Greeting, greeting).times(1))
        .fault(Fault::raw(Stage::Mail, "250 no line end"))
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    assert_eq!(c.take(greeting.len()).await, greeting);
    // Then the session goes on as if the usual 220 had been sent.
    c.cmd("EHLO client.test", 250).await;
    c.write(b"MAIL FROM:<a@b>\r\n").await;
    assert_eq!(c.take(15).await, b"250 no line end");
    // Taken as accepted: RCPT works, and its reply follows at once.
    c.write(b"RCPT TO:<c@d>\r\n").await;
    assert_eq!(c.take(14).await, b"250 2.1.5 Ok\r\n");
    assert_eq!(server.faults_fired(Stage::Greeting), 1);
    assert_eq!(server.faults_fired(Stage::Mail), 1);
    assert_eq!(server.faults_fired(Stage::Rcpt), 0);

    // Fired once: the next greeting is the normal one.
    let mut c = Conn::connect(&server).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 220);
    assert!(text.contains("ESMTP"), "{text}");
    assert_eq!(server.faults_fired(Stage::Greeting), 1);
}

#[tokio::test]
async fn raw_at_starttls_and_data_end_then_carries_on() {
    let server = DevSmtpServer::builder()
        .starttls()
        .fault(Fault::raw(Stage::StartTls, "220 go ahead\r\n"))
        .fault(Fault::raw(Stage::DataEnd, "250 fine\r\n"))
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.cmd("EHLO client.test", 250).await;
    c.write(b"STARTTLS\r\n").await;
    assert_eq!(c.take(14).await, b"220 go ahead\r\n");
    // The handshake follows as after the normal 220.
    let mut c = c.tls(&server).await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("MAIL FROM:<a@b>", 250).await;
    c.cmd("RCPT TO:<c@d>", 250).await;
    c.cmd("DATA", 354).await;
    c.write(b"Subject: x\r\n\r\nhi\r\n.\r\n").await;
    assert_eq!(c.take(10).await, b"250 fine\r\n");
    // The message counts as accepted.
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].tls);
}

#[tokio::test]
async fn append_arrives_with_the_starttls_220_in_one_read() {
    let injected: &[u8] = b"250-fake\r\n250 AUTH PLAIN\r\n235 2.7.0 ok\r\n";
    let server = DevSmtpServer::builder()
        .starttls_required()
        .user("alice", "pw")
        .fault(Fault::append(Stage::StartTls, injected))
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.cmd("EHLO client.test", 250).await;
    c.write(b"STARTTLS\r\n").await;
    // One read holds the 220 and the injected plaintext: a client that
    // keeps reading after the 220 would take them for replies.
    let got = c.read_once().await;
    let mut expected = b"220 2.0.0 Ready to start TLS\r\n".to_vec();
    expected.extend_from_slice(injected);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
    // The server does the handshake as usual and took nothing from it.
    let mut c = c.tls(&server).await;
    let ehlo = {
        c.write(b"EHLO client.test\r\n").await;
        c.reply_lines().await
    };
    assert!(ehlo.iter().any(|l| l.contains("AUTH PLAIN")), "{ehlo:?}");
    c.cmd("MAIL FROM:<a@b>", 530).await;
    c.cmd(&format!("AUTH PLAIN {}", plain("alice", "pw")), 235)
        .await;
    assert_eq!(server.faults_fired(Stage::StartTls), 1);
    assert_eq!(server.discarded_before_tls(), 0);
}

#[tokio::test]
async fn append_goes_with_a_replacing_reply_too() {
    let server = DevSmtpServer::builder()
        .fault(Fault::reply(Stage::Ehlo, 250, "tiny").times(1))
        .fault(Fault::append(Stage::Ehlo, "250 extra\r\n").times(1))
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.write(b"EHLO client.test\r\n").await;
    assert_eq!(c.read_once().await, b"250 tiny\r\n250 extra\r\n");
    assert_eq!(server.faults_fired(Stage::Ehlo), 2);
    // Both spent: the normal reply, alone.
    c.write(b"EHLO client.test\r\n").await;
    let lines = c.reply_lines().await;
    assert!(lines[0].starts_with("250-localhost greets"), "{lines:?}");
    assert!(c.buf.is_empty());
    assert_eq!(server.faults_fired(Stage::Ehlo), 2);
}

#[tokio::test]
async fn flood_of_50_mb_arrives_whole() {
    const TOTAL: usize = 50_000_000;
    let server = DevSmtpServer::builder()
        .fault(Fault::flood(Stage::Greeting, "A", TOTAL as u64))
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    let start = Instant::now();
    let mut total = 0usize;
    loop {
        let chunk = c.read_once().await;
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.iter().all(|&b| b == b'A'));
        total += chunk.len();
    }
    assert_eq!(total, TOTAL);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert!(wait_sessions_closed(&server, Duration::from_secs(5)).await);
    assert_eq!(server.faults_fired(Stage::Greeting), 1);
}

#[tokio::test]
async fn flood_stops_when_the_client_leaves() {
    // An 800 MB reply of 250- lines that a client gives up on after 1 MB.
    let server = DevSmtpServer::builder()
        .fault(Fault::flood(Stage::Ehlo, "250-X\r\n", 800_000_000))
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.write(b"EHLO client.test\r\n").await;
    let head = c.take(1024 * 1024).await;
    assert!(head.starts_with(b"250-X\r\n250-X\r\n"));
    // Whole chunks, cut at 1 MiB.
    assert!(head.chunks(7).all(|l| b"250-X\r\n".starts_with(l)));
    assert_eq!(server.open_connections(), 1);
    drop(c);
    assert!(
        wait_sessions_closed(&server, Duration::from_secs(5)).await,
        "the flood went on"
    );
    // The server is fine: a shutdown is prompt.
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .unwrap();
}

#[tokio::test]
async fn flood_is_stopped_by_shutdown() {
    let server = DevSmtpServer::builder()
        .fault(Fault::flood(Stage::Greeting, "A", 800_000_000))
        .start()
        .await
        .unwrap();
    // A client that reads nothing: the server's writes block.
    let c = Conn::connect(&server).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.open_connections(), 1);
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    drop(c);
}

#[tokio::test]
async fn trickle_delivers_bytes_one_by_one() {
    let interval = Duration::from_millis(30);
    let greeting: &[u8] = b"220 slow\r\n";
    let server = DevSmtpServer::builder()
        .fault(Fault::trickle(Stage::Greeting, greeting, interval))
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    let start = Instant::now();
    let mut got = Vec::new();
    let mut reads = Vec::new();
    while got.len() < greeting.len() {
        let chunk = c.read_once().await;
        assert!(!chunk.is_empty(), "closed after {got:?}");
        reads.push((chunk.len(), start.elapsed()));
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, greeting);
    // Nine pauses between ten bytes.
    let elapsed = start.elapsed();
    assert!(elapsed >= interval * 9, "{elapsed:?}");
    // Byte by byte, over time (a busy machine may let a few pile up).
    assert!(reads.len() >= greeting.len() / 2, "{reads:?}");
    assert!(reads[0].1 + interval * 5 <= elapsed, "{reads:?}");
    // Then as after the normal greeting.
    c.cmd("EHLO client.test", 250).await;
}

#[tokio::test]
async fn trickle_keeps_what_the_client_pipelines_meanwhile() {
    let server = DevSmtpServer::builder()
        .fault(Fault::trickle(
            Stage::Ehlo,
            "250 s\r\n",
            Duration::from_millis(20),
        ))
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.write(b"EHLO client.test\r\n").await;
    assert_eq!(c.take(1).await, b"2");
    // NOOP and QUIT arrive while the EHLO reply is still trickling.
    c.write(b"NOOP\r\nQUIT\r\n").await;
    assert_eq!(c.take(6).await, b"50 s\r\n");
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 221);
    assert!(c.closed().await);
    assert_eq!(
        log(&server.commands()),
        [
            entry("EHLO", "client.test", false),
            entry("NOOP", "", true),
            entry("QUIT", "", true),
        ]
    );
}

#[tokio::test]
async fn trickle_forever_stops_when_the_client_closes() {
    let pattern: &[u8] = b"250-still coming\r\n";
    let server = DevSmtpServer::builder()
        .fault(Fault::trickle_forever(
            Stage::Ehlo,
            pattern,
            Duration::from_millis(5),
        ))
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.write(b"EHLO client.test\r\n").await;
    // More than one round of the pattern: it starts over.
    let got = c.take(pattern.len() + 5).await;
    assert!(got.starts_with(pattern), "{got:?}");
    assert!(got[pattern.len()..].starts_with(&pattern[..5]));
    drop(c);
    assert!(
        wait_sessions_closed(&server, Duration::from_secs(5)).await,
        "still trickling"
    );

    // And a server shutdown ends it too, without a 421 in the middle.
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.write(b"EHLO client.test\r\n").await;
    c.take(3).await;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .unwrap();
    let mut rest = Vec::new();
    loop {
        let chunk = c.read_once().await;
        if chunk.is_empty() {
            break;
        }
        rest.extend_from_slice(&chunk);
    }
    assert!(!String::from_utf8_lossy(&rest).contains("421"), "{rest:?}");
}

#[tokio::test]
async fn pipelining_advertised_by_default() {
    let server = DevSmtpServer::builder().start().await.unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.write(b"EHLO client.test\r\n").await;
    let lines = c.reply_lines().await;
    assert_eq!(lines[1], "250-PIPELINING", "{lines:?}");
}

#[tokio::test]
async fn pipelining_off_is_not_advertised_but_tolerated() {
    let server = DevSmtpServer::builder()
        .pipelining(false)
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    // Everything in one write, not waiting for any reply.
    c.write(
        b"EHLO client.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n\
          Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    )
    .await;
    let ehlo = c.reply_lines().await;
    assert!(!ehlo.iter().any(|l| l.contains("PIPELINING")), "{ehlo:?}");
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 354);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 221);
    assert!(c.closed().await);
    assert_eq!(server.messages().len(), 1);
    assert_eq!(server.messages()[0].body(), b"body\r\n");
}

#[tokio::test]
async fn command_log_marks_pipelined_commands() {
    let server = DevSmtpServer::builder().start().await.unwrap();

    // Connection 1 pipelines MAIL, RCPT and DATA after the EHLO reply.
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.cmd("EHLO client.test", 250).await;
    c.write(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        .await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 354);
    c.write(b"Subject: s\r\n\r\nMAIL FROM:<not@a.command>\r\n.\r\n")
        .await;
    assert_eq!(c.reply().await.0, 250);
    c.cmd("quit", 221).await;

    // Connection 2 waits for every reply.
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("MAIL FROM:<a@b>", 250).await;
    c.cmd("RCPT TO:<c@d>", 250).await;
    c.cmd("DATA", 354).await;
    c.cmd("Subject: s\r\n\r\nhi\r\n.", 250).await;

    assert_eq!(
        log(&server.commands_on(1)),
        [
            entry("EHLO", "client.test", false),
            entry("MAIL", "FROM:<a@b>", false),
            entry("RCPT", "TO:<c@d>", true),
            entry("DATA", "", true),
            entry("QUIT", "", false),
        ]
    );
    assert_eq!(
        log(&server.commands_on(2)),
        [
            entry("EHLO", "client.test", false),
            entry("MAIL", "FROM:<a@b>", false),
            entry("RCPT", "TO:<c@d>", false),
            entry("DATA", "", false),
        ]
    );
    let all = server.commands();
    assert_eq!(all.len(), 9);
    assert!(all.iter().all(|c| !c.tls));
    assert_eq!(all.iter().filter(|c| c.connection == 1).count(), 5);
    server.clear();
    assert!(server.commands().is_empty());
}

#[tokio::test]
async fn command_log_keeps_sasl_secrets_out() {
    let server = DevSmtpServer::builder()
        .starttls()
        .user("alice", "s3cret")
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("STARTTLS", 220).await;
    let mut c = c.tls(&server).await;
    c.cmd("EHLO client.test", 250).await;
    let initial = plain("alice", "wrong");
    c.cmd(&format!("AUTH PLAIN {initial}"), 535).await;
    c.cmd("AUTH LOGIN", 334).await;
    c.cmd(&common::b64("alice"), 334).await;
    c.cmd(&common::b64("s3cret"), 235).await;
    let commands = server.commands();
    assert_eq!(
        log(&commands),
        [
            entry("EHLO", "client.test", false),
            entry("STARTTLS", "", false),
            entry("EHLO", "client.test", false),
            entry("AUTH", "PLAIN", false),
            entry("AUTH", "LOGIN", false),
            entry("<SASL>", "", false),
            entry("<SASL>", "", false),
        ]
    );
    let tls: Vec<bool> = commands.iter().map(|c| c.tls).collect();
    assert_eq!(tls, [false, false, true, true, true, true, true]);
    let dump = format!("{commands:?}");
    assert!(!dump.contains(&initial) && !dump.contains(&common::b64("s3cret")));
}

#[tokio::test]
async fn command_log_records_bad_lines() {
    let server = DevSmtpServer::builder()
        .max_line_length(100)
        .start()
        .await
        .unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.write(b"NOOP bare\n").await;
    assert_eq!(c.reply().await.0, 500);
    c.cmd(&format!("NOOP {}", "x".repeat(200)), 500).await;
    c.cmd("", 500).await;
    c.cmd("vrfy Bob", 252).await;
    assert_eq!(
        log(&server.commands()),
        [
            entry("NOOP", "bare", false),
            entry("<TOO-LONG>", "", false),
            entry("", "", false),
            entry("VRFY", "Bob", false),
        ]
    );
}

#[tokio::test]
async fn starttls_with_trailing_bytes_discards_them() {
    let server = DevSmtpServer::builder().starttls().start().await.unwrap();
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.cmd("EHLO client.test", 250).await;
    // The command injection attack: plaintext a man in the middle added
    // after STARTTLS must not run inside the TLS session.
    let injected = b"MAIL FROM:<evil@example.com>\r\n";
    let mut write = b"STARTTLS\r\n".to_vec();
    write.extend_from_slice(injected);
    c.write(&write).await;
    assert_eq!(c.reply().await.0, 220);
    let mut c = c.tls(&server).await;
    c.cmd("EHLO client.test", 250).await;
    // The injected MAIL did not happen.
    c.cmd("RCPT TO:<c@d>", 503).await;
    assert_eq!(server.discarded_before_tls(), 1);
    assert_eq!(server.discarded_bytes_before_tls(), injected.len() as u64);
    assert!(!server.commands().iter().any(|c| c.verb == "MAIL"));

    // A client that waits for the 220 loses nothing.
    let mut c = Conn::connect(&server).await;
    c.reply().await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("STARTTLS", 220).await;
    let mut c = c.tls(&server).await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("MAIL FROM:<a@b>", 250).await;
    assert_eq!(server.discarded_before_tls(), 1);
}
