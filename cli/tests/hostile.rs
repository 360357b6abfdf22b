//! The `mailgate` binary against a hostile SMTP server (mailgate-devserver's
//! fault kit): injected bytes after STARTTLS, odd and garbage EHLO lines,
//! endless lines, huge replies, trickling replies, code-only replies, echoed
//! AUTH payloads, terminal escapes, 530/535 variants.
//!
//! Every case checks the exit code and what the server recorded (nothing sent
//! that must not be), and every failing case the time to the error against
//! the configured timeout (at most 1.5x) and the process's peak memory
//! (under 64 MiB).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailgate_devserver::{DevSmtpServer, Fault, Mechanism, Stage};
use mailgate_integration_tests::{ConfigDir, MeasuredRun, run_mailgate_measured};

const USER: &str = "alm@example.com";
const PASSWORD: &str = "Hostile~Pass w0rd!";
/// `mailgate.smtp.timeoutSeconds` in these tests.
const TIMEOUT: Duration = Duration::from_secs(2);
const MAX_RSS_KIB: u64 = 64 * 1024;

async fn server(faults: Vec<Fault>) -> DevSmtpServer {
    let mut builder = DevSmtpServer::builder()
        .starttls_required()
        .mechanisms([Mechanism::Plain, Mechanism::Login])
        .user(USER, PASSWORD);
    for fault in faults {
        builder = builder.fault(fault);
    }
    builder.start().await.expect("dev server starts")
}

fn config(server: &DevSmtpServer) -> ConfigDir {
    ConfigDir::basic_over_starttls(
        server.port(),
        USER,
        PASSWORD,
        server.ca_cert_pem(),
        &[(
            "mailgate.smtp.timeoutSeconds",
            &TIMEOUT.as_secs().to_string(),
        )],
    )
}

/// `mailgate [extra] send ...` in a blocking thread (the dev server runs on
/// this test's runtime).
async fn send(dir: &ConfigDir, extra: &[&str]) -> MeasuredRun {
    let path = dir.path().to_owned();
    let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    args.extend(
        [
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "hostile",
            "--body",
            "b",
        ]
        .map(str::to_owned),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_mailgate_measured(
            env!("CARGO_BIN_EXE_mailgate"),
            &path,
            &args,
            Duration::from_secs(60),
        )
    })
    .await
    .expect("runner thread")
}

fn stderr(run: &MeasuredRun) -> String {
    String::from_utf8_lossy(&run.output.stderr).into_owned()
}

/// Exit code, a bounded time to the error and bounded memory.
fn assert_failed(run: &MeasuredRun, code: i32) {
    let err = stderr(run);
    assert_eq!(run.output.status.code(), Some(code), "{err}");
    assert!(
        run.elapsed <= TIMEOUT.mul_f32(1.5),
        "took {:?} against a {TIMEOUT:?} timeout: {err}",
        run.elapsed
    );
    assert!(
        run.peak_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB: {err}",
        run.peak_rss_kib
    );
    assert!(run.output.stdout.is_empty(), "nothing reported as sent");
}

/// Neither credentials nor mail crossed the connection.
fn assert_nothing_sent(server: &DevSmtpServer) {
    let verbs: Vec<String> = server.commands().into_iter().map(|c| c.verb).collect();
    for forbidden in ["AUTH", "<SASL>", "MAIL", "RCPT", "DATA"] {
        assert!(
            !verbs.iter().any(|v| v == forbidden),
            "{forbidden} was sent: {verbs:?}"
        );
    }
    assert!(server.auth_attempts().is_empty());
    assert!(server.messages().is_empty());
}

fn assert_delivered(run: &MeasuredRun, server: &DevSmtpServer) {
    assert_eq!(run.output.status.code(), Some(0), "{}", stderr(run));
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].subject().as_deref(), Some("hostile"));
    assert!(run.peak_rss_kib < MAX_RSS_KIB, "{} KiB", run.peak_rss_kib);
}

// ---------------------------------------------------------------------------
// STARTTLS response injection

#[tokio::test]
async fn injected_capabilities_after_starttls_are_refused() {
    let server = server(vec![Fault::append(
        Stage::StartTls,
        b"250-evil.example\r\n250 AUTH PLAIN\r\n".to_vec(),
    )])
    .await;
    let run = send(&config(&server), &[]).await;
    assert_failed(&run, 69);
    let err = stderr(&run);
    assert!(err.contains("before the TLS handshake"), "{err}");
    assert!(err.contains("response injection"), "{err}");
    assert_nothing_sent(&server);
}

#[tokio::test]
async fn a_whole_faked_session_after_starttls_is_refused() {
    let fake = b"250-evil.example\r\n250-AUTH PLAIN\r\n250 PIPELINING\r\n235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as FAKE\r\n221 Bye\r\n";
    let server = server(vec![Fault::append(Stage::StartTls, fake.to_vec())]).await;
    let run = send(&config(&server), &["-v"]).await;
    assert_failed(&run, 69);
    let err = stderr(&run);
    assert!(!err.contains("queued as FAKE"), "{err}");
    assert_nothing_sent(&server);
}

// ---------------------------------------------------------------------------
// EHLO lines a parser must survive

#[tokio::test]
async fn whitespace_and_garbage_ehlo_lines_are_harmless() {
    let replies: [&[u8]; 3] = [
        b"250-localhost\r\n250- \r\n250-\t\r\n250-\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
        b"250-localhost greets\r\n250-\x00\x01 garbage ~~~\r\n250-X-UNKNOWN a b c\r\n250-AUTH=LOGIN\r\n250-STARTTLS\r\n250-SIZE abc\r\n250 SIZE 99999999999999999999999\r\n",
        b"250 \r\n",
    ];
    for (i, reply) in replies.into_iter().enumerate() {
        // Only the first EHLO (before TLS) is replaced: the last reply offers
        // no STARTTLS, so that case must fail cleanly instead.
        let server = server(vec![Fault::raw(Stage::Ehlo, reply.to_vec()).times(1)]).await;
        let run = send(&config(&server), &[]).await;
        if i < 2 {
            assert_delivered(&run, &server);
        } else {
            assert_failed(&run, 69);
            assert!(
                stderr(&run).contains("does not offer STARTTLS"),
                "{}",
                stderr(&run)
            );
            assert_nothing_sent(&server);
        }
    }
}

// ---------------------------------------------------------------------------
// Bounds

#[tokio::test]
async fn an_endless_line_ends_at_the_line_limit() {
    let server = server(vec![Fault::flood(
        Stage::Greeting,
        b"A".to_vec(),
        800 << 20,
    )])
    .await;
    let run = send(&config(&server), &[]).await;
    assert_failed(&run, 75);
    assert!(
        stderr(&run).contains("longer than 4096 bytes"),
        "{}",
        stderr(&run)
    );
    assert_nothing_sent(&server);
}

#[tokio::test]
async fn a_huge_multiline_reply_ends_at_the_line_count() {
    let server = server(vec![Fault::flood(
        Stage::Ehlo,
        b"250-X\r\n".to_vec(),
        200_000 * 7,
    )])
    .await;
    let run = send(&config(&server), &[]).await;
    assert_failed(&run, 75);
    assert!(
        stderr(&run).contains("more than 256 lines"),
        "{}",
        stderr(&run)
    );
    assert_nothing_sent(&server);
}

#[tokio::test]
async fn a_trickling_reply_hits_the_stage_deadline() {
    // A byte every 50 ms never completes a line within the 2 s deadline,
    // however long the server keeps it up.
    for (stage, bytes) in [
        (Stage::Greeting, b"220-still here, ".to_vec()),
        (Stage::Ehlo, b"250-X\r\n".to_vec()),
    ] {
        let server = server(vec![Fault::trickle_forever(
            stage,
            bytes,
            Duration::from_millis(50),
        )])
        .await;
        let run = send(&config(&server), &[]).await;
        assert_failed(&run, 75);
        assert!(run.elapsed >= TIMEOUT, "{:?}", run.elapsed);
        assert!(
            stderr(&run).contains("mailgate.smtp.timeoutSeconds"),
            "{}",
            stderr(&run)
        );
        assert_nothing_sent(&server);
        server.shutdown().await;
    }
}

// ---------------------------------------------------------------------------
// Valid but unusual replies

#[tokio::test]
async fn code_only_replies_are_accepted() {
    let server = server(vec![
        Fault::raw(Stage::Mail, b"250\r\n".to_vec()),
        Fault::raw(Stage::Rcpt, b"250\r\n".to_vec()),
        Fault::raw(Stage::DataEnd, b"250\r\n".to_vec()),
    ])
    .await;
    let run = send(&config(&server), &[]).await;
    assert_delivered(&run, &server);
}

// ---------------------------------------------------------------------------
// Output hygiene

#[tokio::test]
async fn echoed_auth_payloads_never_reach_the_output() {
    let plain = STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
    let login = STANDARD.encode(PASSWORD);
    let echoes = [
        (535, format!("5.7.8 Bad credentials: {plain}")),
        (535, format!("5.7.8 you said {PASSWORD} and {login}")),
        (
            454,
            format!("4.7.0 Temporary failure for AUTH PLAIN {plain}"),
        ),
        (334, plain.clone()),
    ];
    for (code, text) in echoes {
        for verbosity in [&["-q"][..], &[], &["-v"], &["-vv"]] {
            let server = server(vec![Fault::reply(Stage::Auth, code, text.clone())]).await;
            let run = send(&config(&server), verbosity).await;
            let err = stderr(&run);
            let expected = match code {
                535 => 77,
                454 => 75,
                _ => 75,
            };
            assert_failed(&run, expected);
            for secret in [PASSWORD, &plain, &login, "Hostile~Pass"] {
                assert!(
                    !err.contains(secret),
                    "{code} {verbosity:?} leaked {secret:?}:\n{err}"
                );
            }
            assert!(err.contains("<redacted>"), "{code} {verbosity:?}: {err}");
            assert!(server.messages().is_empty());
        }
    }
}

#[tokio::test]
async fn terminal_escapes_from_the_server_are_escaped() {
    let server = server(vec![
        Fault::raw(
            Stage::Greeting,
            b"220 localhost \x1b]0;pwned\x07\x1b[2J ready\r\n".to_vec(),
        ),
        Fault::reply(
            Stage::Mail,
            554,
            "5.7.1 \x1b[31mdenied\x1b[0m\x07 \u{202e}txt",
        ),
    ])
    .await;
    for verbosity in [&[][..], &["-v"]] {
        let run = send(&config(&server), verbosity).await;
        assert_failed(&run, 77);
        let err = stderr(&run);
        assert!(
            !err.contains('\u{1b}') && !err.contains('\u{7}') && !err.contains('\u{202e}'),
            "raw control characters reached the terminal: {err:?}"
        );
        assert!(err.contains("\\u{1b}[31mdenied"), "{err}");
        assert!(server.messages().is_empty());
    }
}

// ---------------------------------------------------------------------------
// 530 / 535 classification

#[tokio::test]
async fn authentication_replies_exit_77_with_or_without_enhanced_codes() {
    let cases = [
        (Stage::Mail, 530, "Authentication required"),
        (
            Stage::Mail,
            530,
            "5.7.0 Must issue a STARTTLS command first",
        ),
        (Stage::Rcpt, 530, "Authentication required"),
        (Stage::Auth, 535, "Authentication failed"),
        (
            Stage::Auth,
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled",
        ),
        (Stage::Auth, 535, "5.7.3 Authentication unsuccessful"),
    ];
    for (stage, code, text) in cases {
        let server = server(vec![Fault::reply(stage, code, text)]).await;
        let run = send(&config(&server), &[]).await;
        assert_failed(&run, 77);
        assert!(stderr(&run).contains(text), "{}", stderr(&run));
        assert!(server.messages().is_empty());
    }
}

// ---------------------------------------------------------------------------
// Nothing to talk to

#[tokio::test]
async fn refused_connection_is_75_and_unknown_host_68() {
    for (host, port, code, says) in [
        (
            "127.0.0.1",
            mailgate_integration_tests::unused_port(),
            75,
            "cannot connect to SMTP server",
        ),
        ("no-such-host.mailgate.invalid", 25, 68, "does not resolve"),
    ] {
        let dir = ConfigDir::with_properties(
            &[
                ("mksis.logging.email.server.hostname", host),
                ("mksis.logging.email.server.port", &port.to_string()),
                ("mksis.logging.email.from", USER),
                (
                    "mailgate.smtp.timeoutSeconds",
                    &TIMEOUT.as_secs().to_string(),
                ),
            ],
            &[],
        );
        let run = send(&dir, &[]).await;
        assert_failed(&run, code);
        assert!(stderr(&run).contains(says), "{}", stderr(&run));
    }
}
