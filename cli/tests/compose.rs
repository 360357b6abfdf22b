//! `mailgate send` end to end: the real binary against the in-process dev
//! server (an open relay: no TLS, no AUTH; it offers PIPELINING and
//! 8BITMIME, not SMTPUTF8), and what the server recorded parsed with
//! `mail-parser`.
//!
//! Composed messages (attachments, Reply-To, extra headers, HTML, bodies
//! from files and stdin, `--json`, `-q`, size and address limits, duplicate
//! recipients) and prepared ones (`--raw FILE`, `--raw -`).

mod support;

use std::time::Duration;

use mail_parser::MimeHeaders as _;
use support::{
    Input, SENDER, TempFiles, addresses, assert_intact, assert_nothing_sent, config, lf, mailgate,
    mime_type, only_message, parse, relay, s,
};

// ---------------------------------------------------------------------------
// Composed messages

#[tokio::test]
async fn attachments_arrive_with_guessed_types_and_their_exact_bytes() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let files = TempFiles::new();
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let blob = files.write("all-bytes.bin", &all_bytes);
    let mut pdf_bytes = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    pdf_bytes.extend((0..=255u8).rev());
    pdf_bytes.extend_from_slice(b"\n%%EOF\n");
    let pdf = files.write("report.pdf", &pdf_bytes);
    let png_bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let png = files.write("chart.png", &png_bytes);

    let out = mailgate(
        &dir,
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "attachments",
            "--body",
            "see attached\n",
            "--attach",
            s(&blob),
            "--attach",
            s(&pdf),
            "--attach",
            s(&png),
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(0);

    let received = only_message(&server);
    let parsed = parse(&received);
    assert_eq!(mime_type(&parsed), "multipart/mixed");
    assert_eq!(
        lf(&parsed.body_text(0).expect("a text body")),
        "see attached\n"
    );
    let attachments: Vec<(String, String, Vec<u8>)> = parsed
        .attachments()
        .map(|a| {
            (
                a.attachment_name().unwrap_or_default().to_owned(),
                mime_type(a),
                a.contents().to_vec(),
            )
        })
        .collect();
    assert_eq!(
        attachments,
        [
            (
                "all-bytes.bin".to_owned(),
                "application/octet-stream".to_owned(),
                all_bytes
            ),
            (
                "report.pdf".to_owned(),
                "application/pdf".to_owned(),
                pdf_bytes
            ),
            ("chart.png".to_owned(), "image/png".to_owned(), png_bytes),
        ]
    );
    // Binary data travels encoded: the message itself is 7-bit clean.
    assert!(received.data.is_ascii(), "{}", received.data_str());
}

#[tokio::test]
async fn reply_to_and_a_custom_header_arrive() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let out = mailgate(
        &dir,
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "headers",
            "--body",
            "b",
            "--reply-to",
            "Help Desk <help@example.com>",
            "--reply-to",
            "ops@example.com",
            "--header",
            "X-Build: 42",
            "--header",
            "X-Pipeline:   nightly  ",
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    let parsed = parse(&received);
    assert_eq!(
        addresses(parsed.reply_to()),
        ["help@example.com", "ops@example.com"]
    );
    assert_eq!(
        parsed.reply_to().and_then(|a| a.first()?.name()),
        Some("Help Desk")
    );
    assert_eq!(received.header("X-Build"), Some("42"));
    assert_eq!(received.header_all("X-Build").count(), 1);
    assert_eq!(received.header("X-Pipeline"), Some("nightly"));
}

#[tokio::test]
async fn a_header_mailgate_sets_is_refused_and_a_malformed_one_is_a_usage_error() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let base = [
        "send",
        "--to",
        "dev@example.com",
        "--subject",
        "s",
        "--body",
        "b",
        "--header",
    ];
    for (header, code, says) in [
        ("Subject: x", 65, "Subject"),
        ("bcc: spy@example.com", 65, "bcc"),
        ("nocolon", 64, "nocolon"),
        (": no name", 64, "Name: value"),
    ] {
        let mut args = base.to_vec();
        args.push(header);
        let out = mailgate(&dir, &args, Input::Empty).await;
        out.assert_code(code);
        assert!(out.stderr().contains(says), "{header}: {}", out.stderr());
        assert!(out.stdout().is_empty(), "{}", out.stdout());
    }
    assert_nothing_sent(&server);
}

#[tokio::test]
async fn html_file_with_a_text_body_is_multipart_alternative() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let files = TempFiles::new();
    let html = "<html><body><p>Build <b>42</b> passed — grün.</p></body></html>\n";
    let html_file = files.write("body.html", html);
    let text = "Build 42 passed — grün.\n";
    let out = mailgate(
        &dir,
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "alternative",
            "--body",
            text,
            "--html-file",
            s(&html_file),
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    let parsed = parse(&received);
    assert_eq!(mime_type(&parsed), "multipart/alternative");
    assert_eq!(parsed.text_body_count(), 1);
    assert_eq!(parsed.html_body_count(), 1);
    assert_eq!(parsed.attachment_count(), 0);
    let text_part = parsed.text_part(0).expect("text part");
    let html_part = parsed.html_part(0).expect("html part");
    assert_eq!(mime_type(text_part), "text/plain");
    assert_eq!(mime_type(html_part), "text/html");
    assert_eq!(lf(text_part.text_contents().expect("text")), text);
    assert_eq!(lf(html_part.text_contents().expect("html")), html);
    // Text first, then HTML (RFC 2046: the preferred version last).
    let data = received.data_str();
    assert!(
        data.find("text/plain").unwrap() < data.find("text/html").unwrap(),
        "{data}"
    );
}

#[tokio::test]
async fn html_alone_is_a_text_html_message() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let html = "<p>only <i>HTML</i></p>\n";
    let out = mailgate(
        &dir,
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "html",
            "--html",
            "--body",
            html,
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    let parsed = parse(&received);
    assert_eq!(mime_type(&parsed), "text/html");
    assert_eq!(parsed.html_body_count(), 1);
    assert_eq!(lf(&parsed.body_html(0).expect("html body")), html);
}

#[tokio::test]
async fn body_from_stdin_and_from_a_file() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let piped = "from stdin\nsecond line — ünïcode\n";
    let out = mailgate(
        &dir,
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "stdin",
            "--body-file",
            "-",
        ],
        Input::Bytes(piped.as_bytes().to_vec()),
    )
    .await;
    out.assert_code(0);

    let files = TempFiles::new();
    let in_file = "from a file\n\nwith an empty line\n";
    let body = files.write("body.txt", in_file);
    let out = mailgate(
        &dir,
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "file",
            "--body-file",
            s(&body),
        ],
        // A body file wins over whatever is on stdin.
        Input::Bytes(b"not this\n".to_vec()),
    )
    .await;
    out.assert_code(0);

    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    let first = parse(&messages[0]);
    assert_eq!(first.subject(), Some("stdin"));
    assert_eq!(lf(&first.body_text(0).expect("body")), piped);
    let second = parse(&messages[1]);
    assert_eq!(second.subject(), Some("file"));
    assert_eq!(lf(&second.body_text(0).expect("body")), in_file);
}

/// Runs `mailgate --config-dir DIR ARGS...` from Python with fd 0 on
/// /dev/null opened read-write, as `subprocess.DEVNULL` and daemon(3) do;
/// returns the exit code and stderr.
fn with_dev_null_read_write(
    dir: &mailgate_integration_tests::ConfigDir,
    args: &[&str],
) -> (i32, String) {
    const SCRIPT: &str = r#"
import fcntl, json, os, subprocess, sys
null = os.open(os.devnull, os.O_RDWR)
assert fcntl.fcntl(null, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
env = dict(os.environ)
env.pop("MAILGATE_CONFIG_DIR", None)
r = subprocess.run(sys.argv[1:], stdin=null, capture_output=True, env=env, timeout=60)
print(json.dumps({"code": r.returncode, "stderr": r.stderr.decode(errors="replace")}))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(support::bin())
        .arg("--config-dir")
        .arg(dir.path())
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the script's JSON report");
    (
        report["code"].as_i64().unwrap_or(-1) as i32,
        report["stderr"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_on_dev_null_is_an_empty_body_whether_read_only_read_write_or_closed() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let send = ["send", "--to", "dev@example.com", "--subject", "empty"];
    // Read-write, as Python's subprocess.DEVNULL gives it: composed (body
    // from stdin, implied or `-`) and sendmail.
    for extra in [&[][..], &["--body-file", "-"][..]] {
        let args: Vec<&str> = send.iter().chain(extra).copied().collect();
        let (code, stderr) = tokio::task::block_in_place(|| with_dev_null_read_write(&dir, &args));
        assert_eq!(code, 0, "{args:?}: {stderr}");
    }
    let (code, stderr) = tokio::task::block_in_place(|| {
        with_dev_null_read_write(&dir, &["sendmail", "dev@example.com"])
    });
    assert_eq!(code, 0, "sendmail: {stderr}");
    // Closed: Rust's runtime reopens fd 0 on /dev/null, read-write.
    let out = mailgate(&dir, &send, Input::Closed).await;
    out.assert_code(0);
    // Read-only (`< /dev/null`).
    let out = mailgate(&dir, &send, Input::Empty).await;
    out.assert_code(0);

    let messages = server.messages();
    assert_eq!(messages.len(), 5, "{messages:#?}");
    for (i, received) in messages.iter().enumerate() {
        let parsed = parse(received);
        if i != 2 {
            assert_eq!(parsed.subject(), Some("empty"));
        }
        assert!(received.body().is_empty(), "{:?}", received.data_str());
    }
}

#[tokio::test]
async fn json_is_one_object_whose_message_id_is_the_one_received() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let out = mailgate(
        &dir,
        &[
            "send",
            "--to",
            "dev@example.com, ops@example.com",
            "--subject",
            "json",
            "--body",
            "b",
            "--json",
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(0);
    let value = out.json();
    let object = value.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["accepted", "message_id", "recipients", "refused", "status"],
        "{value}"
    );
    assert_eq!(value["status"], "sent");
    assert_eq!(value["recipients"], 2);
    assert_eq!(
        value["accepted"],
        serde_json::json!(["dev@example.com", "ops@example.com"])
    );
    assert_eq!(value["refused"], serde_json::json!([]));
    let id = value["message_id"]
        .as_str()
        .expect("message_id is a string");
    let inner = id
        .strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or_else(|| panic!("message_id {id} is not <...>"));
    let (left, right) = inner.split_once('@').expect("an @ in the message_id");
    assert!(!left.is_empty() && !right.is_empty(), "{id}");
    assert_eq!(out.stdout().lines().count(), 1, "{}", out.stdout());
    assert!(out.stderr().is_empty(), "{}", out.stderr());

    let received = only_message(&server);
    assert_eq!(received.header("Message-ID"), Some(id));
    assert_eq!(parse(&received).message_id(), Some(inner));
}

#[tokio::test]
async fn quiet_prints_nothing_at_all_on_success() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let out = mailgate(
        &dir,
        &[
            "-q",
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "quiet",
            "--body",
            "b",
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(0);
    assert_eq!(out.stdout(), "");
    assert_eq!(out.stderr(), "");
    assert_eq!(
        parse(&only_message(&server)).subject(),
        Some("quiet"),
        "it was sent"
    );
}

#[tokio::test]
async fn a_body_over_max_message_bytes_is_refused_before_anything_is_sent() {
    let server = relay().await;
    let dir = config(&server, &[("mailgate.smtp.maxMessageBytes", "1000")]);
    let files = TempFiles::new();
    let big = files.write("big.txt", "0123456789\n".repeat(200));
    let small = files.write("small.txt", "short\n");
    let out = mailgate(
        &dir,
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "big",
            "--body-file",
            s(&big),
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(65);
    assert!(
        out.stderr().contains("mailgate.smtp.maxMessageBytes"),
        "{}",
        out.stderr()
    );
    assert!(out.stdout().is_empty());
    // The same limit for an attachment and a prepared message.
    for args in [
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "big",
            "--body",
            "b",
            "--attach",
            s(&big),
        ][..],
        &["send", "--raw", s(&big), "--to", "dev@example.com"][..],
    ] {
        let out = mailgate(&dir, args, Input::Empty).await;
        out.assert_code(65);
        assert!(
            out.stderr().contains("mailgate.smtp.maxMessageBytes"),
            "{}",
            out.stderr()
        );
    }
    assert_nothing_sent(&server);
    // Under the limit it goes.
    let out = mailgate(
        &dir,
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "small",
            "--body-file",
            s(&small),
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(0);
    assert_eq!(parse(&only_message(&server)).subject(), Some("small"));
}

/// Linux takes at most 128 KiB in one argument (MAX_ARG_STRLEN), so the
/// longest address a command line can carry is just under that; an 8 MB
/// one can only come in a message (see the next test).
const LONGEST_ARGUMENT: usize = 128 * 1024 - 1;

#[tokio::test]
async fn a_huge_address_on_the_command_line_is_refused_quickly_and_briefly() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let domain = "@example.com";
    let huge = format!("{}{domain}", "a".repeat(LONGEST_ARGUMENT - domain.len()));
    assert_eq!(huge.len(), LONGEST_ARGUMENT);
    for field in ["--to", "--cc", "--from", "--reply-to"] {
        let mut args = vec!["send", "--subject", "huge", "--body", "b"];
        if field != "--to" {
            args.extend(["--to", "dev@example.com"]);
        }
        args.extend([field, huge.as_str()]);
        let out = mailgate(&dir, &args, Input::Empty).await;
        out.assert_code(65);
        out.assert_quick();
        // Nothing to read but the arguments: within a second on the clock too.
        assert!(
            out.elapsed < Duration::from_secs(1),
            "{field}: {:?}",
            out.elapsed
        );
        assert!(
            out.output.stderr.len() < 500,
            "{field}: {} bytes of error",
            out.output.stderr.len()
        );
    }
    assert_nothing_sent(&server);
}

#[tokio::test]
async fn an_8_mb_address_in_a_prepared_message_is_refused_quickly_and_briefly() {
    let server = relay().await;
    let dir = config(&server, &[("mailgate.smtp.maxMessageBytes", "33554432")]);
    let huge = format!("{}@example.com", "a".repeat(8 * 1024 * 1024));
    let message = format!("To: {huge}\r\nSubject: huge\r\n\r\nbody\r\n");
    let out = mailgate(
        &dir,
        &["send", "--raw", "-"],
        Input::Bytes(message.into_bytes()),
    )
    .await;
    out.assert_code(65);
    out.assert_quick();
    assert!(
        out.output.stderr.len() < 500,
        "{} bytes of error",
        out.output.stderr.len()
    );
    assert_nothing_sent(&server);
}

#[tokio::test]
async fn an_address_with_a_bidi_override_is_refused() {
    let server = relay().await;
    let dir = config(&server, &[]);
    for (field, value) in [
        ("--to", "evil\u{202e}moc.elpmaxe@example.com"),
        ("--cc", "Name \u{202e} <cc@example.com>"),
        ("--from", "alm\u{202e}@example.com"),
    ] {
        let mut args = vec!["send", "--subject", "bidi", "--body", "b"];
        if field != "--to" {
            args.extend(["--to", "dev@example.com"]);
        }
        args.extend([field, value]);
        let out = mailgate(&dir, &args, Input::Empty).await;
        out.assert_code(65);
        let err = out.stderr();
        assert!(err.contains("U+202E"), "{field}: {err}");
        assert!(!err.contains('\u{202e}'), "echoed as is: {err:?}");
    }
    assert_nothing_sent(&server);
}

#[tokio::test]
async fn duplicate_recipients_get_one_rcpt_each_domains_without_case() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let out = mailgate(
        &dir,
        &[
            "send",
            "--to",
            "a@example.com",
            "--cc",
            "a@EXAMPLE.com",
            "--bcc",
            "Alias <a@Example.Com>, A@example.com",
            "--to",
            "b@example.com, a@example.com",
            "--subject",
            "dups",
            "--body",
            "b",
            "--json",
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    // Local parts are case-sensitive (RFC 5321 §2.4): A@ is someone else;
    // the first spelling of each is the one used.
    let mut rcpts = received.rcpt_to.clone();
    rcpts.sort_unstable();
    assert_eq!(rcpts, ["A@example.com", "a@example.com", "b@example.com"]);
    let json = out.json();
    assert_eq!(json["recipients"], 3);
    let rcpt_commands = server
        .commands()
        .into_iter()
        .filter(|c| c.verb == "RCPT")
        .count();
    assert_eq!(rcpt_commands, 3);
    assert!(received.header("Bcc").is_none(), "{}", received.data_str());
}

// ---------------------------------------------------------------------------
// Prepared messages: --raw

/// A prepared message: custom headers, a folded one, a multipart body with
/// a preamble, a dot-leading line and an epilogue; no Date, Message-ID or
/// MIME-Version.
const PREPARED: &str = "From: Build Server <builds@example.com>\r\n\
To: Dev One <dev1@example.com>, dev2@example.com\r\n\
Cc: \"Lead, Team\" <lead@example.com>\r\n\
Subject: nightly build 42\r\n\
X-Build: 42\r\n\
X-Folded: first part\r\n  second part\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
This is a preamble.\r\n\
--b1\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Build 42 passed.\r\n\
.a line that starts with a dot\r\n\
\r\n\
--b1\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"log.bin\"\r\n\
\r\n\
AAECAwQF\r\n\
--b1--\r\n\
epilogue\r\n";

#[tokio::test]
async fn raw_file_takes_recipients_from_to_and_cc_and_arrives_as_it_is() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let files = TempFiles::new();
    let eml = files.write("message.eml", PREPARED);
    let out = mailgate(&dir, &["send", "--raw", s(&eml)], Input::Empty).await;
    out.assert_code(0);
    let received = only_message(&server);
    assert_eq!(
        received.rcpt_to,
        ["dev1@example.com", "dev2@example.com", "lead@example.com"]
    );
    assert_eq!(received.mail_from, SENDER);
    assert_intact(&received, PREPARED, &["Date", "Message-ID", "MIME-Version"]);
    let parsed = parse(&received);
    assert_eq!(parsed.subject(), Some("nightly build 42"));
    assert_eq!(addresses(parsed.from()), ["builds@example.com"]);
    assert!(parsed.date().is_some(), "a valid Date");
    let id = parsed.message_id().expect("a Message-ID");
    assert!(id.ends_with("@example.com"), "{id}");
    let attachment = parsed.attachment(0).expect("the attachment");
    assert_eq!(attachment.contents(), [0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn raw_stdin_keeps_its_own_message_id_date_and_mime_version() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let own = format!(
        "Date: Mon, 01 Jan 2024 10:00:00 +0100\r\n\
Message-ID: <own-id-1@build.example.com>\r\n\
MIME-Version: 1.0\r\n{PREPARED}"
    );
    let out = mailgate(
        &dir,
        &["send", "--raw", "-", "--json"],
        Input::Bytes(own.clone().into_bytes()),
    )
    .await;
    out.assert_code(0);
    let json = out.json();
    assert_eq!(json["message_id"], "<own-id-1@build.example.com>");
    assert_eq!(json["recipients"], 3);
    let received = only_message(&server);
    assert_eq!(received.data_str(), own, "byte for byte");
    assert_intact(&received, &own, &[]);
}

#[tokio::test]
async fn raw_with_to_sends_only_to_the_options_recipients() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let files = TempFiles::new();
    let eml = files.write("message.eml", PREPARED);
    let out = mailgate(
        &dir,
        &[
            "send",
            "--raw",
            s(&eml),
            "--to",
            "other@example.com",
            "--from",
            "bounces@example.com",
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    assert_eq!(received.rcpt_to, ["other@example.com"]);
    assert_eq!(received.mail_from, "bounces@example.com");
    assert_intact(&received, PREPARED, &["Date", "Message-ID", "MIME-Version"]);
}

#[tokio::test]
async fn raw_with_recipients_from_a_bcc_header_removes_the_bcc_header() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let bcc_line = "Bcc: Hidden <hidden@example.com>\r\n";
    let with_bcc = PREPARED.replacen("Subject:", &format!("{bcc_line}Subject:"), 1);
    let out = mailgate(
        &dir,
        &["send", "--raw", "-"],
        Input::Bytes(with_bcc.into_bytes()),
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    assert_eq!(
        received.rcpt_to,
        [
            "dev1@example.com",
            "dev2@example.com",
            "lead@example.com",
            "hidden@example.com"
        ]
    );
    // A blind copy stays blind: the other recipients do not see it.
    assert!(
        !received.data_str().contains("hidden@"),
        "{}",
        received.data_str()
    );
    assert_intact(&received, PREPARED, &["Date", "Message-ID", "MIME-Version"]);
}

#[tokio::test]
async fn a_prepared_message_piped_into_a_composed_send_becomes_its_body() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let own = format!("Message-ID: <own-id-2@build.example.com>\r\n{PREPARED}");
    let out = mailgate(
        &dir,
        &["send", "--to", "x@example.com", "--subject", "y", "--json"],
        Input::Bytes(own.clone().into_bytes()),
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    assert_eq!(received.rcpt_to, ["x@example.com"]);
    let parsed = parse(&received);
    assert_eq!(parsed.subject(), Some("y"));
    assert_eq!(mime_type(&parsed), "text/plain");
    assert_ne!(parsed.message_id(), Some("own-id-2@build.example.com"));
    let json = out.json();
    assert_eq!(
        received.header("Message-ID"),
        json["message_id"].as_str(),
        "a new Message-ID"
    );
    assert!(
        received.header("X-Build").is_none(),
        "{}",
        received.data_str()
    );
    assert_eq!(addresses(parsed.to()), ["x@example.com"]);
    // The whole prepared message, its headers included, is the text.
    assert_eq!(
        parsed.body_text(0).as_deref().map(lf),
        Some(lf(&own)),
        "{}",
        received.data_str()
    );
}

// ---------------------------------------------------------------------------
// Prepared messages sent as they are: --raw --as-is

/// A message as a DKIM signer leaves it: a signature over its headers and
/// body, no Date, Message-ID or MIME-Version, a Bcc field, an 8-bit body, a
/// line that starts with a dot and one of exactly 998 octets. `send --raw`
/// would add fields and drop the Bcc; `--as-is` must change nothing.
fn signed_message() -> Vec<u8> {
    let mut m = b"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=example.com;\r\n s=sel1; h=from:to:subject:bcc; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n b=dGVzdA==\r\n\
From: Build Server <builds@example.com>\r\n\
To: dev1@example.com\r\n\
Bcc: hidden@example.com\r\n\
Subject: signed build 42\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n\
.a line that starts with a dot\r\n"
        .to_vec();
    m.extend(std::iter::repeat_n(b'x', 998));
    m.extend_from_slice(b"\r\n");
    m
}

#[tokio::test]
async fn raw_as_is_arrives_byte_for_byte_with_its_bcc_field() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let message = signed_message();
    let out = mailgate(
        &dir,
        &["send", "--raw", "-", "--as-is", "--json"],
        Input::Bytes(message.clone()),
    )
    .await;
    out.assert_code(0);
    // The message has no Message-ID and none is added.
    assert_eq!(out.json()["message_id"], serde_json::Value::Null);
    let received = only_message(&server);
    assert_eq!(received.mail_from, SENDER);
    assert_eq!(received.rcpt_to, ["dev1@example.com", "hidden@example.com"]);
    assert!(
        received.data == message,
        "byte for byte:\n{}",
        received.data_str()
    );
}

#[tokio::test]
async fn raw_as_is_refuses_a_bare_lf_and_sends_nothing() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let files = TempFiles::new();
    let eml = files.write(
        "lf.eml",
        "From: builds@example.com\nTo: dev@example.com\nSubject: lf\n\nbody\n",
    );
    let out = mailgate(&dir, &["send", "--raw", s(&eml), "--as-is"], Input::Empty).await;
    out.assert_code(65);
    assert!(
        out.stderr().contains("line 1 ends in a bare LF")
            && out.stderr().contains("without --as-is"),
        "{}",
        out.stderr()
    );
    assert_nothing_sent(&server);
    // Without --as-is the same file is normalised and sent.
    mailgate(&dir, &["send", "--raw", s(&eml)], Input::Empty)
        .await
        .assert_code(0);
}

#[tokio::test]
async fn raw_as_is_refuses_a_line_over_998_octets() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let mut message =
        b"From: builds@example.com\r\nTo: dev@example.com\r\nSubject: long\r\n\r\n".to_vec();
    message.extend(std::iter::repeat_n(b'x', 1000));
    message.extend_from_slice(b"\r\n");
    let out = mailgate(
        &dir,
        &["send", "--raw", "-", "--as-is"],
        Input::Bytes(message),
    )
    .await;
    out.assert_code(65);
    assert!(
        out.stderr().contains("line 5 is 1000 octets long"),
        "{}",
        out.stderr()
    );
    assert_nothing_sent(&server);
}

#[tokio::test]
async fn raw_as_is_needs_raw_and_is_not_queued() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let out = mailgate(
        &dir,
        &[
            "send",
            "--as-is",
            "--to",
            "dev@example.com",
            "--subject",
            "s",
            "--body",
            "b",
        ],
        Input::Empty,
    )
    .await;
    out.assert_code(64);
    assert!(out.stderr().contains("--raw"), "{}", out.stderr());
    let out = mailgate(
        &dir,
        &["send", "--raw", "-", "--as-is", "--queue"],
        Input::Bytes(signed_message()),
    )
    .await;
    out.assert_code(64);
    assert!(out.stderr().contains("--queue"), "{}", out.stderr());
    assert_nothing_sent(&server);
}

/// A server without 8BITMIME gets the 8-bit message refused with the
/// reason, not converted to quoted-printable.
#[tokio::test]
async fn raw_as_is_refuses_8bit_for_a_7bit_server_instead_of_converting() {
    use mailgate_integration_tests::{PeerConfig, PeerKind, SmtpPeer};
    let peer = SmtpPeer::start(PeerKind::Python, PeerConfig::new().seven_bit());
    let dir = support::config_for_port(peer.port(), &[]);
    let out = mailgate(
        &dir,
        &["send", "--raw", "-", "--as-is"],
        Input::Bytes(signed_message()),
    )
    .await;
    out.assert_code(65);
    assert!(
        out.stderr().contains("8BITMIME") && out.stderr().contains("never converted"),
        "{}",
        out.stderr()
    );
    assert!(peer.messages().is_empty(), "{:?}", peer.messages());
}
