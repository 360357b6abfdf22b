//! Raw SMTP against the relay: limits, refusals, smuggling, STARTTLS
//! injection, timeouts, connection limit, sink failures, shutdown, AUTH.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, RecordingSink, b64, connect, pki, plain, start, start_with, test_config};
use mailgate_relay::{RelayConfig, Users, hash_password};

async fn greeted(addr: std::net::SocketAddr) -> Client<tokio::net::TcpStream> {
    let mut c = connect(addr).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 220, "{text}");
    assert!(text.starts_with("relay.test "), "{text}");
    c.expect("EHLO client.example", 250).await;
    c
}

/// MAIL, RCPT, DATA, the data, the final reply.
async fn submit(c: &mut Client<tokio::net::TcpStream>, data: &str) -> (u16, String) {
    c.expect("MAIL FROM:<alm@example.com>", 250).await;
    c.expect("RCPT TO:<dev@example.com>", 250).await;
    c.expect("DATA", 354).await;
    c.send(data).await;
    c.reply().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_clients_outside_the_allow_list() {
    let config = RelayConfig {
        allow: vec!["10.0.0.0/8".parse().unwrap()],
        ..test_config()
    };
    let relay = start(config).await;
    let mut c = connect(relay.addr).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 554, "{text}");
    assert!(text.starts_with("5.7.1"), "{text}");
    // Nothing else: the connection is closed, commands go nowhere.
    c.try_send("EHLO x\r\nMAIL FROM:<a@b.example>\r\n").await;
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert_eq!(relay.sink.count(), 0);
    let stats = relay.handle.stats();
    assert_eq!(stats.rejected_clients, 1);
    assert_eq!(stats.active_sessions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ehlo_advertises_the_extensions() {
    let relay = start(test_config()).await;
    let mut c = connect(relay.addr).await;
    c.reply().await;
    let ehlo = c.expect("EHLO client.example", 250).await;
    let lines: Vec<&str> = ehlo.lines().collect();
    assert_eq!(
        lines,
        vec![
            "relay.test",
            "PIPELINING",
            &format!("SIZE {}", 10 * 1024 * 1024),
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "DSN"
        ]
    );
    c.expect("HELO client.example", 250).await;
    c.expect("NOOP", 250).await;
    c.expect("VRFY someone", 252).await;
    c.expect("HELP", 214).await;
    c.expect("RSET", 250).await;
    c.expect("EXPN list", 502).await;
    c.expect("BOGUS", 500).await;
    c.expect("STARTTLS", 502).await;
    c.expect("AUTH PLAIN AGEAYg==", 502).await;
    c.expect("QUIT", 221).await;
    assert!(c.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_submission() {
    let relay = start(test_config()).await;
    let mut c = connect(relay.addr).await;
    c.reply().await;
    // One write, as a PIPELINING client sends it (RFC 2920).
    c.send(concat!(
        "EHLO client.example\r\n",
        "MAIL FROM:<alm@example.com> SIZE=100 BODY=8BITMIME\r\n",
        "RCPT TO:<a@example.com>\r\n",
        "RCPT TO:<b@example.com>\r\n",
        "RCPT TO:<bad address@example.com>\r\n",
        "RCPT TO:<c@example.com>\r\n",
        "DATA\r\n",
    ))
    .await;
    let codes: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..7 {
            v.push(c.reply().await.0);
        }
        v
    };
    assert_eq!(codes, vec![250, 250, 250, 250, 501, 250, 354]);
    // The data, the final dot and the next transaction in one write.
    c.send(concat!(
        "Subject: pipelined\r\n\r\nbody\r\n.\r\n",
        "MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n",
    ))
    .await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(text, "2.0.0 queued as TEST1");
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 354);
    c.send("x\r\n.\r\nQUIT\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 221);

    let (envelope, data) = relay.sink.get(0);
    assert_eq!(
        envelope.to,
        vec!["a@example.com", "b@example.com", "c@example.com"]
    );
    assert!(envelope.eight_bit_mime);
    assert_eq!(data, b"Subject: pipelined\r\n\r\nbody\r\n");
    let (envelope, data) = relay.sink.get(1);
    assert_eq!(envelope.from, "");
    assert_eq!(envelope.to, vec!["postmaster"]);
    assert_eq!(data, b"x\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_is_refused_by_size_and_by_data() {
    let config = RelayConfig {
        max_message_bytes: 1000,
        ..test_config()
    };
    let relay = start(config).await;
    let mut c = greeted(relay.addr).await;
    let text = c.expect("MAIL FROM:<a@example.com> SIZE=1001", 552).await;
    assert!(text.starts_with("5.3.4"), "{text}");
    c.expect(
        "MAIL FROM:<a@example.com> SIZE=99999999999999999999999999",
        552,
    )
    .await;
    c.expect("MAIL FROM:<a@example.com> SIZE=1000", 250).await;
    c.expect("RCPT TO:<b@example.com>", 250).await;
    c.expect("DATA", 354).await;
    // 20 lines of 100 bytes: 2000 bytes, read to the end and refused.
    let line = format!("{}\r\n", "x".repeat(98));
    c.send(&line.repeat(20)).await;
    c.send(".\r\n").await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 552, "{text}");
    assert!(text.starts_with("5.3.4"), "{text}");
    assert_eq!(relay.sink.count(), 0);
    // The session goes on: a message within the limit passes.
    let (code, _) = submit(&mut c, &format!("{}.\r\n", line.repeat(9))).await;
    assert_eq!(code, 250);
    assert_eq!(relay.sink.count(), 1);
    assert_eq!(relay.handle.stats().refused.too_big, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_smuggling_is_refused_and_nothing_stored() {
    let relay = start(test_config()).await;
    let mut c = greeted(relay.addr).await;
    // The classic smuggling payload: "<LF>.<LF>" then commands for a
    // second, forged message. Only one reply may come: the refusal.
    let payload = concat!(
        "From: alm@example.com\r\nSubject: hi\r\n\r\nhello\n.\n",
        "MAIL FROM:<ceo@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n",
        "Subject: forged\r\n\r\nsmuggled\r\n.\r\n",
    );
    let (code, text) = submit(&mut c, payload).await;
    assert_eq!(code, 550, "{text}");
    assert_eq!(text, "5.5.2 bare LF/CR not allowed (SMTP smuggling)");
    // The embedded commands were data: the next reply answers NOOP.
    c.expect("NOOP", 250).await;
    for payload in [
        "a\r\n.\nMAIL FROM:<x@example.com>\r\n.\r\n",
        "a\n.\r\nb\r\n.\r\n",
        "a\r.\r\nb\r\n.\r\n",
        "a\r\n.\r\r\nb\r\n.\r\n",
        "bare\rcr\r\n.\r\n",
    ] {
        let (code, text) = submit(&mut c, payload).await;
        assert_eq!(code, 550, "{payload:?}: {text}");
        c.expect("NOOP", 250).await;
    }
    assert_eq!(relay.sink.count(), 0);
    assert_eq!(relay.handle.stats().refused.bare_line_ending, 6);
    // Errors count towards max_errors (10): the session is still usable.
    let (code, _) = submit(&mut c, "clean\r\n.\r\n").await;
    assert_eq!(code, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_data_lines_are_refused() {
    let relay = start(test_config()).await;
    let mut c = greeted(relay.addr).await;
    let ok = format!("{}\r\n.\r\n", "y".repeat(998));
    assert_eq!(submit(&mut c, &ok).await.0, 250);
    let long = format!("{}\r\n.\r\n", "y".repeat(999));
    let (code, text) = submit(&mut c, &long).await;
    assert_eq!(code, 550, "{text}");
    assert!(text.starts_with("5.6.0"), "{text}");
    assert_eq!(relay.sink.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_syntax_and_limits() {
    let config = RelayConfig {
        max_recipients: 2,
        max_errors: 12,
        ..test_config()
    };
    let relay = start(config).await;
    let mut c = greeted(relay.addr).await;
    // A command line over max_line (2048) is refused, the session goes on.
    c.send(&format!("NOOP {}\r\n", "z".repeat(5000))).await;
    assert_eq!(c.reply().await.0, 500);
    c.expect("NOOP", 250).await;
    // Bare LF, bare CR, NUL in commands.
    c.send("NOOP\n").await;
    assert_eq!(c.reply().await.0, 500);
    c.send("NO\rOP\r\n").await;
    assert_eq!(c.reply().await.0, 500);
    c.send("NOOP \0\r\n").await;
    assert_eq!(c.reply().await.0, 500);
    c.expect("RCPT TO:<a@example.com>", 503).await;
    c.expect("DATA", 503).await;
    c.expect("MAIL FROM:<a@example.com> FOO=BAR", 555).await;
    let text = c
        .expect("MAIL FROM:<a@example.com> MT-PRIORITY=1", 555)
        .await;
    assert!(text.contains("MT-PRIORITY"), "{text}");
    c.expect("MAIL FROM:<a@example.com> SIZE=1 SIZE=2", 501)
        .await;
    c.expect("MAIL FROM:<\"x>\"@example.com>", 501).await;
    c.expect("MAIL FROM:<jö@example.com>", 553).await;
    // Errors so far: 11 (of 12). A good command does not reset the count.
    c.expect("MAIL FROM:<jö@example.com> SMTPUTF8", 250).await;
    c.expect("MAIL FROM:<a@example.com>", 503).await;
    // That was the 12th error: 421 and close.
    let (code, text) = c.reply().await;
    assert_eq!(code, 421, "{text}");
    assert!(c.closed_within(Duration::from_secs(5)).await);

    let mut c = greeted(relay.addr).await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.expect("RCPT TO:<r1@example.com> NOTIFY=SOMETIMES", 501)
        .await;
    // Control characters (the whole line is refused) and over-long
    // addresses (over 254 octets).
    c.send("RCPT TO:<r\x01@example.com>\r\n").await;
    assert_eq!(c.reply().await.0, 500);
    c.send("RCPT TO:<r\x7f@example.com>\r\n").await;
    assert_eq!(c.reply().await.0, 500);
    let long = format!("RCPT TO:<{}@example.com>", "l".repeat(243));
    let text = c.expect(&long, 501).await;
    assert!(text.starts_with("5.1.3"), "{text}");
    c.expect(&format!("RCPT TO:<{}@example.com>", "l".repeat(242)), 250)
        .await;
    c.expect("RSET", 250).await;
    c.expect("MAIL FROM:<a@example.com>", 250).await;
    c.expect("RCPT TO:<r1@example.com>", 250).await;
    c.expect("RCPT TO:<r2@example.com>", 250).await;
    let text = c.expect("RCPT TO:<r3@example.com>", 452).await;
    assert!(text.starts_with("4.5.3"), "{text}");
    c.expect("RCPT TO:<r1@example.com>", 250).await;
    c.expect("DATA", 354).await;
    c.send("x\r\n.\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(
        relay.sink.get(0).0.to,
        vec!["r1@example.com", "r2@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_commands_close_the_session() {
    let config = RelayConfig {
        max_commands: 5,
        ..test_config()
    };
    let relay = start(config).await;
    let mut c = greeted(relay.addr).await; // 1
    for _ in 0..4 {
        c.expect("NOOP", 250).await; // 2..5
    }
    let (code, _) = c.cmd("NOOP").await;
    assert_eq!(code, 421);
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert_eq!(relay.handle.stats().closed_for_abuse, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_are_closed_at_once() {
    let relay = start(test_config()).await;
    let mut c = connect(relay.addr).await;
    c.reply().await;
    c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(c.reply_within(Duration::from_secs(5)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_discards_injected_plaintext() {
    let pki = pki();
    let config = RelayConfig {
        tls: Some(Arc::clone(&pki.server)),
        ..test_config()
    };
    let relay = start(config).await;
    let mut c = greeted(relay.addr).await;
    // STARTTLS and, in the same segment, commands that must never run:
    // after TLS they would look like the client's own.
    c.send(
        "STARTTLS\r\nRSET\r\nMAIL FROM:<injected@example.com>\r\nRCPT TO:<victim@example.com>\r\n",
    )
    .await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 220, "{text}");
    // Nothing else was answered in plaintext.
    assert!(c.stream.buffer().is_empty());
    let tcp = c.stream.into_inner();
    let tls = pki
        .connector()
        .connect(common::Pki::server_name(), tcp)
        .await
        .expect("TLS handshake");
    let mut c = Client::new(tls);
    // The first reply after the handshake answers our EHLO (not RSET,
    // MAIL or RCPT), and no transaction exists.
    let ehlo = c.expect("EHLO client.example", 250).await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    c.expect("RCPT TO:<victim@example.com>", 503).await;
    c.expect("DATA", 503).await;
    c.expect("MAIL FROM:<alm@example.com>", 250).await;
    c.expect("RCPT TO:<dev@example.com>", 250).await;
    c.expect("DATA", 354).await;
    c.send("over TLS\r\n.\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    c.expect("STARTTLS", 503).await;
    c.expect("QUIT", 221).await;
    let (envelope, _) = relay.sink.get(0);
    assert!(envelope.tls);
    assert_eq!(envelope.from, "alm@example.com");
    assert_eq!(relay.handle.stats().starttls_injections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_requires_a_new_ehlo() {
    let pki = pki();
    let config = RelayConfig {
        tls: Some(Arc::clone(&pki.server)),
        ..test_config()
    };
    let relay = start(config).await;
    let mut c = greeted(relay.addr).await;
    c.expect("MAIL FROM:<alm@example.com>", 250).await;
    c.expect("STARTTLS", 503).await;
    c.expect("RSET", 250).await;
    c.expect("STARTTLS", 220).await;
    let tcp = c.stream.into_inner();
    let tls = pki
        .connector()
        .connect(common::Pki::server_name(), tcp)
        .await
        .unwrap();
    let mut c = Client::new(tls);
    c.expect("MAIL FROM:<alm@example.com>", 503).await;
    c.expect("EHLO again", 250).await;
    c.expect("MAIL FROM:<alm@example.com>", 250).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_gets_421_after_the_idle_timeout() {
    let config = RelayConfig {
        idle_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let relay = start(config).await;
    let c = greeted(relay.addr).await;
    let started = Instant::now();
    // One byte every 100 ms: each read is quick, the line never ends.
    let mut writer_stream = c.stream.into_inner();
    let (read_half, mut write_half) = writer_stream.split();
    let trickle = async {
        use tokio::io::AsyncWriteExt as _;
        for byte in b"NOOP ".iter().chain(b"x".repeat(100).iter()) {
            if write_half.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let read = async {
        let mut c = Client::new(read_half);
        c.reply_within(Duration::from_secs(5)).await
    };
    let reply = tokio::select! {
        r = read => r,
        () = trickle => None,
    };
    let (code, text) = reply.expect("a 421 while still trickling");
    assert_eq!(code, 421, "{text}");
    assert!(text.starts_with("4.4.2"), "{text}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    drop(writer_stream);
    assert_eq!(relay.handle.stats().timeouts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_timeout_bounds_the_whole_data_phase() {
    let config = RelayConfig {
        idle_timeout: Duration::from_millis(500),
        data_timeout: Duration::from_millis(1500),
        ..test_config()
    };
    let relay = start(config).await;
    let mut c = greeted(relay.addr).await;
    c.expect("MAIL FROM:<alm@example.com>", 250).await;
    c.expect("RCPT TO:<dev@example.com>", 250).await;
    c.expect("DATA", 354).await;
    let started = Instant::now();
    let mut stream = c.stream.into_inner();
    let (read_half, mut write_half) = stream.split();
    let trickle = async {
        use tokio::io::AsyncWriteExt as _;
        for _ in 0..100 {
            if write_half.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let read = async {
        Client::new(read_half)
            .reply_within(Duration::from_secs(6))
            .await
    };
    let reply = tokio::select! {
        r = read => r,
        () = trickle => None,
    };
    let (code, text) = reply.expect("a 421 while data still trickles");
    assert_eq!(code, 421, "{text}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert_eq!(relay.sink.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_is_enforced_and_tasks_stay_bounded() {
    let max = 5;
    let config = RelayConfig {
        max_connections: max,
        ..test_config()
    };
    let relay = start(config).await;
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let mut served = Vec::new();
    let mut refused = 0;
    let mut max_tasks = 0;
    for _ in 0..200 {
        let mut c = connect(relay.addr).await;
        let (code, text) = c.reply().await;
        match code {
            220 => served.push(c),
            421 => {
                assert!(text.starts_with("4.7.0"), "{text}");
                assert!(c.closed_within(Duration::from_secs(5)).await, "not closed");
                refused += 1;
            }
            other => panic!("unexpected {other} {text}"),
        }
        max_tasks = max_tasks.max(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        );
    }
    assert_eq!(served.len(), max);
    assert_eq!(refused, 200 - max);
    // The relay's run task, the refusal task and the sessions.
    assert!(
        max_tasks <= baseline + max + 1,
        "tasks: {max_tasks} (baseline {baseline})"
    );
    let stats = relay.handle.stats();
    assert_eq!(stats.busy, (200 - max) as u64);
    assert_eq!(stats.active_sessions, max);
    // A slot frees up when a session ends.
    let mut first = served.remove(0);
    first.expect("QUIT", 221).await;
    assert!(first.closed_within(Duration::from_secs(5)).await);
    let mut again = None;
    for _ in 0..50 {
        let mut c = connect(relay.addr).await;
        if c.reply().await.0 == 220 {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = again.expect("a free slot after QUIT");
    c.expect("EHLO x", 250).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_failure_is_451_and_the_client_can_retry() {
    let relay = start_with(test_config(), RecordingSink::failing_first(1)).await;
    let mut c = greeted(relay.addr).await;
    let (code, text) = submit(&mut c, "Subject: retry\r\n\r\nbody\r\n.\r\n").await;
    assert_eq!(code, 451, "{text}");
    assert!(text.starts_with("4.3.0"), "{text}");
    assert!(
        !text.contains("disk full"),
        "the sink's reason stays in the log"
    );
    assert_eq!(relay.sink.count(), 0);
    // Same session, same message: now it is stored.
    let (code, text) = submit(&mut c, "Subject: retry\r\n\r\nbody\r\n.\r\n").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(relay.sink.count(), 1);
    let stats = relay.handle.stats();
    assert_eq!((stats.temp_failed, stats.accepted), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sink_is_bounded_by_data_timeout() {
    let sink = RecordingSink::new();
    *sink.delay.lock().unwrap() = Some(Duration::from_secs(30));
    let config = RelayConfig {
        data_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let relay = start_with(config, sink).await;
    let mut c = greeted(relay.addr).await;
    let (code, text) = submit(&mut c, "x\r\n.\r\n").await;
    assert_eq!(code, 451, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_transactions_finish_and_closes_idle_sessions() {
    let sink = RecordingSink::new();
    *sink.delay.lock().unwrap() = Some(Duration::from_millis(300));
    let mut relay = start_with(test_config(), sink).await;
    let mut busy = greeted(relay.addr).await;
    busy.expect("MAIL FROM:<alm@example.com>", 250).await;
    busy.expect("RCPT TO:<dev@example.com>", 250).await;
    busy.expect("DATA", 354).await;
    busy.send("Subject: during shutdown\r\n\r\nfirst half\r\n")
        .await;
    let mut idle = greeted(relay.addr).await;
    let mut in_mail = greeted(relay.addr).await;
    in_mail.expect("MAIL FROM:<alm@example.com>", 250).await;

    relay.shutdown();
    // The idle session is told at once.
    let (code, text) = idle
        .reply_within(Duration::from_secs(3))
        .await
        .expect("421 for the idle session");
    assert_eq!(
        (code, text.as_str()),
        (421, "4.3.2 Service shutting down, try again later")
    );
    assert!(idle.closed_within(Duration::from_secs(3)).await);
    // New connections are refused: the listener is closed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = tokio::net::TcpStream::connect(relay.addr).await;
    assert!(refused.is_err(), "listener still accepting");

    // The transaction in DATA finishes: 250, then 421.
    tokio::time::sleep(Duration::from_millis(200)).await;
    busy.send("second half\r\n.\r\n").await;
    let (code, text) = busy.reply().await;
    assert_eq!(code, 250, "{text}");
    let (code, text) = busy.reply().await;
    assert_eq!(code, 421, "{text}");
    assert!(busy.closed_within(Duration::from_secs(3)).await);

    // The one after MAIL may go on too, and RSET ends its transaction.
    in_mail.expect("RCPT TO:<dev@example.com>", 250).await;
    in_mail.expect("RSET", 250).await;
    let (code, _) = in_mail.reply().await;
    assert_eq!(code, 421);

    let ended = tokio::time::timeout(Duration::from_secs(5), &mut relay.task)
        .await
        .expect("run returned after the last session")
        .expect("run task");
    ended.expect("run result");
    assert_eq!(relay.sink.count(), 1);
    let (_, data) = relay.sink.get(0);
    assert!(
        String::from_utf8(data)
            .unwrap()
            .ends_with("first half\r\nsecond half\r\n")
    );
}

fn users_config() -> RelayConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    std::fs::write(&path, format!("printer:{}\n", hash_password("right"))).unwrap();
    RelayConfig {
        users: Some(Users::load(&path).unwrap()),
        auth_failure_delay: Duration::from_millis(300),
        ..test_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_and_checked() {
    // No TLS configured: AUTH works on the plain (loopback) connection.
    let relay = start(users_config()).await;
    let mut c = connect(relay.addr).await;
    c.reply().await;
    c.expect("HELO client.example", 250).await;
    c.expect(&format!("AUTH PLAIN {}", plain("printer", "right")), 503)
        .await;
    let ehlo = c.expect("EHLO client.example", 250).await;
    assert!(ehlo.lines().any(|l| l == "AUTH PLAIN LOGIN"), "{ehlo}");
    let text = c.expect("MAIL FROM:<alm@example.com>", 530).await;
    assert!(text.starts_with("5.7.0"), "{text}");

    let started = Instant::now();
    let text = c
        .expect(&format!("AUTH PLAIN {}", plain("printer", "wrong")), 535)
        .await;
    assert!(text.starts_with("5.7.8"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(290), "no delay");
    c.expect(&format!("AUTH PLAIN {}", plain("nobody", "right")), 535)
        .await;
    c.expect("AUTH PLAIN !!!", 501).await;
    c.expect("AUTH CRAM-MD5", 504).await;
    // Cancel in the middle of LOGIN.
    let (code, text) = c.cmd("AUTH LOGIN").await;
    assert_eq!((code, text.as_str()), (334, "VXNlcm5hbWU6"));
    c.expect("*", 501).await;
    // LOGIN with the right password.
    assert_eq!(c.cmd("AUTH LOGIN").await.0, 334);
    assert_eq!(
        c.cmd(&b64("printer")).await,
        (334, "UGFzc3dvcmQ6".to_owned())
    );
    c.expect(&b64("right"), 235).await;
    c.expect(&format!("AUTH PLAIN {}", plain("printer", "right")), 503)
        .await;
    c.expect("MAIL FROM:<alm@example.com> AUTH=<>", 250).await;
    c.expect("RCPT TO:<dev@example.com>", 250).await;
    c.expect("DATA", 354).await;
    c.send("authenticated\r\n.\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(relay.sink.get(0).0.auth_user.as_deref(), Some("printer"));
    assert_eq!(relay.handle.stats().auth_failures, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_limited() {
    let relay = start(users_config()).await;
    let mut c = greeted(relay.addr).await;
    for _ in 0..2 {
        c.expect(&format!("AUTH PLAIN {}", plain("printer", "guess")), 535)
            .await;
    }
    // PLAIN without an initial response: prompted with an empty 334.
    let (code, text) = c.cmd("AUTH PLAIN").await;
    assert_eq!((code, text.as_str()), (334, ""));
    c.expect(&plain("printer", "guess"), 535).await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 421, "{text}");
    assert!(c.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_waits_for_starttls_when_tls_is_configured() {
    let pki = pki();
    let config = RelayConfig {
        tls: Some(Arc::clone(&pki.server)),
        ..users_config()
    };
    let relay = start(config).await;
    let mut c = greeted(relay.addr).await;
    let text = c.expect("MAIL FROM:<alm@example.com>", 530).await;
    assert!(text.contains("STARTTLS"), "{text}");
    c.expect(&format!("AUTH PLAIN {}", plain("printer", "right")), 530)
        .await;
    let ehlo = c.expect("EHLO again", 250).await;
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_to_new_sessions_and_keeps_the_old_config_when_invalid() {
    let relay = start(test_config()).await;
    let mut old = greeted(relay.addr).await;
    let invalid = RelayConfig {
        max_line: 10,
        ..test_config()
    };
    let err = relay.handle.set_config(invalid).unwrap_err();
    assert_eq!(err.field, "max_line");
    assert_eq!(relay.handle.config().max_line, 2048);
    relay
        .handle
        .set_config(RelayConfig {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            ..test_config()
        })
        .unwrap();
    let mut c = connect(relay.addr).await;
    assert_eq!(c.reply().await.0, 554);
    // The running session keeps its settings.
    old.expect("NOOP", 250).await;
}

#[test]
fn config_validation() {
    assert!(RelayConfig::default().validate().is_ok());
    let bad = |c: RelayConfig| c.validate().unwrap_err().field;
    assert_eq!(
        bad(RelayConfig {
            hostname: "a b".into(),
            ..Default::default()
        }),
        "hostname"
    );
    assert_eq!(
        bad(RelayConfig {
            allow: vec![],
            ..Default::default()
        }),
        "allow"
    );
    assert_eq!(
        bad(RelayConfig {
            max_data_line: 999,
            ..Default::default()
        }),
        "max_data_line"
    );
    assert_eq!(
        bad(RelayConfig {
            max_connections: 0,
            ..Default::default()
        }),
        "max_connections"
    );
    assert_eq!(
        bad(RelayConfig {
            idle_timeout: Duration::ZERO,
            ..Default::default()
        }),
        "idle_timeout"
    );
    let open = RelayConfig {
        allow: vec!["0.0.0.0/0".parse().unwrap()],
        ..Default::default()
    };
    assert!(
        open.warnings().iter().any(|w| w.contains("anybody")),
        "{:?}",
        open.warnings()
    );
}

/// A message with `hops` Received fields above its own header.
fn with_hops(hops: usize, subject: &str) -> String {
    let mut data = String::new();
    for i in 0..hops {
        data.push_str(&format!(
            "Received: from hop{i}.example (hop{i}.example [192.0.2.{}])\r\n\tby next.example; Mon, 07 Dec 2026 12:00:00 +0000\r\n",
            i % 250
        ));
    }
    data.push_str(&format!("Subject: {subject}\r\n\r\nbody\r\n.\r\n"));
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_field_is_prepended_and_too_many_hops_are_refused() {
    let config = RelayConfig {
        instance_id: Some("0123abcd".to_owned()),
        ..test_config()
    };
    let relay = start(config).await;
    let mut c = connect(relay.addr).await;
    c.reply().await;
    let ehlo = c.expect("EHLO client.example", 250).await;
    assert_eq!(
        ehlo.lines().next(),
        Some("relay.test mailgate ready [0123abcd]")
    );
    let (code, text) = submit(&mut c, &with_hops(50, "fifty")).await;
    assert_eq!(code, 250, "{text}");
    let (code, text) = submit(&mut c, &with_hops(51, "fifty-one")).await;
    assert_eq!((code, text.as_str()), (554, "5.4.6 Too many hops"));
    // The session goes on.
    let (code, text) = submit(&mut c, "Subject: zero\r\n\r\nx\r\n.\r\n").await;
    assert_eq!(code, 250, "{text}");
    c.expect("QUIT", 221).await;

    assert_eq!(relay.sink.count(), 2);
    let (_, data) = relay.sink.get(0);
    assert!(data.starts_with(b"Received: from hop0.example"));
    let traces = relay.sink.traces.lock().unwrap().clone();
    for trace in &traces {
        assert!(
            trace
                .starts_with("Received: from client.example (localhost [127.0.0.1]) by relay.test"),
            "{trace}"
        );
        assert!(
            trace.contains(" (mailgate)") && trace.contains("with ESMTP id "),
            "{trace}"
        );
        assert!(trace.contains("for <dev@example.com>;"), "{trace}");
        assert!(trace.ends_with(" +0000\r\n"), "{trace}");
        assert!(trace.split("\r\n").all(|l| l.len() <= 78), "{trace}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_pipelined_after_a_refused_data_is_not_run_as_commands() {
    let relay = start(test_config()).await;
    let mut c = greeted(relay.addr).await;
    // No valid recipient, DATA refused, and the message right behind it:
    // its lines must not become commands.
    c.send(concat!(
        "MAIL FROM:<alm@example.com>\r\n",
        "RCPT TO:<bad address@example.com>\r\n",
        "DATA\r\n",
        "RSET\r\n",
        "MAIL FROM:<evil@example.com>\r\n",
        "RCPT TO:<victim@example.com>\r\n",
        "DATA\r\n",
        "Subject: smuggled\r\n\r\nx\r\n.\r\n",
    ))
    .await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 501);
    assert_eq!(c.reply().await.0, 503);
    let (code, text) = c.reply().await;
    assert_eq!(code, 554, "{text}");
    assert!(text.starts_with("5.5.0 "), "{text}");
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert_eq!(relay.sink.count(), 0);

    // A refused DATA with nothing behind it is only refused.
    let mut c = greeted(relay.addr).await;
    c.expect("DATA", 503).await;
    c.expect("NOOP", 250).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_limit_counts_the_line_after_dot_unstuffing() {
    let relay = start(test_config()).await;
    let mut c = greeted(relay.addr).await;
    // 998 octets starting with a dot: 999 on the wire.
    let line = format!(".{}", "x".repeat(997));
    let (code, text) = submit(&mut c, &format!("Subject: dot\r\n\r\n.{line}\r\n.\r\n")).await;
    assert_eq!(code, 250, "{text}");
    // 999 after unstuffing.
    let (code, text) = submit(&mut c, &format!("Subject: dot\r\n\r\n.{line}x\r\n.\r\n")).await;
    assert_eq!(code, 550, "{text}");
    assert!(text.starts_with("5.6.0 "), "{text}");
    assert_eq!(relay.sink.count(), 1);
    let (_, data) = relay.sink.get(0);
    assert!(data.ends_with(format!("\r\n\r\n{line}\r\n").as_bytes()));
}

/// `n` bytes of message: a Subject, then lines of 78 octets.
fn sized_message(subject: &str, n: usize) -> String {
    let mut m = format!("Subject: {subject}\r\n\r\n");
    let line = format!("{}\r\n", "m".repeat(78));
    while m.len() + line.len() <= n {
        m.push_str(&line);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_answers_452_beyond_it_and_frees_what_sessions_held() {
    let wait = Duration::from_millis(300);
    let config = RelayConfig {
        max_message_bytes: 100_000,
        // 186 KiB: one declared 100 kB message (98 KiB) and the first
        // share of an undeclared one (64 KiB), neither a second declared
        // one nor the undeclared one grown to 98 KiB.
        max_data_memory: 190_000,
        data_memory_wait: wait,
        ..test_config()
    };
    let relay = start(config).await;
    let a_text = sized_message("a", 90_000);
    let b_text = sized_message("b", 90_000);

    // A: declared, holds its 100 kB (and headroom) from DATA on.
    let mut a = greeted(relay.addr).await;
    a.expect("MAIL FROM:<a@example.com> SIZE=100000", 250).await;
    a.expect("RCPT TO:<dev@example.com>", 250).await;
    a.expect("DATA", 354).await;
    a.send(&a_text[..40_000]).await;

    // C: undeclared, gets its first share, then outgrows the budget: read
    // to its end and answered 452.
    let mut c = greeted(relay.addr).await;
    c.expect("MAIL FROM:<c@example.com>", 250).await;
    c.expect("RCPT TO:<dev@example.com>", 250).await;
    c.expect("DATA", 354).await;

    // B: declared, no room: 452 at DATA after waiting `wait`.
    let mut b = greeted(relay.addr).await;
    b.expect("MAIL FROM:<b@example.com> SIZE=100000", 250).await;
    b.expect("RCPT TO:<dev@example.com>", 250).await;
    let asked = Instant::now();
    let (code, text) = b.cmd("DATA").await;
    assert_eq!(
        (code, text.as_str()),
        (452, "4.3.1 Insufficient system storage, try again later")
    );
    assert!(
        asked.elapsed() >= wait - Duration::from_millis(50),
        "{:?}",
        asked.elapsed()
    );

    c.send(&sized_message("c", 90_000)).await;
    c.send(".\r\n").await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 452, "{text}");
    assert!(text.starts_with("4.3.1"), "{text}");
    // The session goes on.
    c.expect("NOOP", 250).await;

    // A finishes: stored, whole.
    a.send(&a_text[40_000..]).await;
    a.send(".\r\n").await;
    let (code, text) = a.reply().await;
    assert_eq!(code, 250, "{text}");

    // B tries again: the memory is back.
    b.expect("RSET", 250).await;
    let (code, text) = submit(&mut b, &format!("{b_text}.\r\n")).await;
    assert_eq!(code, 250, "{text}");

    // A session that dies in the middle of its data gives its share back.
    let mut d = greeted(relay.addr).await;
    d.expect("MAIL FROM:<d@example.com> SIZE=100000", 250).await;
    d.expect("RCPT TO:<dev@example.com>", 250).await;
    d.expect("DATA", 354).await;
    d.send(&a_text[..10_000]).await;
    drop(d);
    let mut e = greeted(relay.addr).await;
    e.expect("MAIL FROM:<e@example.com> SIZE=100000", 250).await;
    e.expect("RCPT TO:<dev@example.com>", 250).await;
    // Both declared shares do not fit: this waits for D's to come back.
    e.expect("DATA", 354).await;
    e.send(&a_text).await;
    let (code, text) = e.cmd(".").await;
    assert_eq!(code, 250, "{text}");

    assert_eq!(relay.sink.count(), 3);
    assert_eq!(relay.sink.get(0).1, a_text.as_bytes());
    assert_eq!(relay.sink.get(1).1, b_text.as_bytes());
    assert_eq!(relay.sink.get(2).1, a_text.as_bytes());
    assert_eq!(relay.handle.stats().refused_memory, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_smaller_than_a_message_is_refused() {
    let config = RelayConfig {
        max_message_bytes: 100_000,
        max_data_memory: 99_999,
        ..test_config()
    };
    let err = config.validate().unwrap_err();
    assert_eq!(err.field, "max_data_memory");
    assert!(RelayConfig::default().validate().is_ok());
}
