//! `mailgate sendmail` and the binary called `sendmail` (a symlink) end to
//! end: the real binary against the in-process dev server (an open relay),
//! driven as sendmail's callers drive it: options, a message on stdin, and
//! Python's `subprocess` as cron runs it. The real caller programs (mailx,
//! mutt, PHP, git send-email, ...) compared with msmtp: `callers.rs`.
//!
//! Needs `python3` on the PATH (Debian: python3); without it its test
//! fails, naming it.

mod support;

use std::path::Path;
use std::process::Command;

use support::{
    Input, SENDER, TempFiles, addresses, assert_intact, assert_nothing_sent, config, count_fields,
    crlf, lf, mime_type, only_message, parse, relay, run, sendmail_symlink, which,
};

/// A message for `-t`: To, Cc and Bcc, custom headers (one folded), a
/// multipart/alternative body with a dot-leading line; From, Subject and
/// MIME-Version but no Date or Message-ID. CRLF line ends, so that it can
/// be compared byte for byte.
const WITH_BCC: &str = "From: ALM Server <alm@example.com>\r\n\
To: To One <to1@example.com>\r\n\
Cc: cc1@example.com, \"Two, Cc\" <cc2@example.com>\r\n\
Bcc: hidden@example.com\r\n\
Subject: sendmail -t\r\n\
X-Custom: kept as it is\r\n\
X-Folded: a long value\r\n\tcontinued on a second line\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"=_alt\"\r\n\
\r\n\
--=_alt\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
plain text\r\n\
.starts with a dot\r\n\
--=_alt\r\n\
Content-Type: text/html; charset=us-ascii\r\n\
\r\n\
<p>html</p>\r\n\
--=_alt--\r\n";

/// [`WITH_BCC`] as it must arrive: without its Bcc line.
fn without_bcc() -> String {
    WITH_BCC.replacen("Bcc: hidden@example.com\r\n", "", 1)
}

/// `mailgate --config-dir DIR sendmail ARGS...`
async fn sendmail(dir: &Path, args: &[&str], message: &str) -> support::Run {
    let mut all = vec!["sendmail"];
    all.extend_from_slice(args);
    run(support::mailgate_cmd(dir, &all), Input::text(message)).await
}

// ---------------------------------------------------------------------------
// Options

#[tokio::test]
async fn dash_t_sends_to_to_cc_and_bcc_and_removes_the_bcc_header() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let out = sendmail(dir.path(), &["-t"], WITH_BCC).await;
    out.assert_code(0);
    assert_eq!(out.stdout(), "", "silent on success, like sendmail");
    assert_eq!(out.stderr(), "");
    let received = only_message(&server);
    assert_eq!(
        received.rcpt_to,
        [
            "to1@example.com",
            "cc1@example.com",
            "cc2@example.com",
            "hidden@example.com"
        ]
    );
    assert_eq!(received.mail_from, SENDER);
    assert!(received.header("Bcc").is_none());
    assert!(
        !received.data_str().contains("hidden@"),
        "{}",
        received.data_str()
    );
    // Byte for byte, but for the Date and Message-ID added in front.
    assert_intact(&received, &without_bcc(), &["Date", "Message-ID"]);
    let parsed = parse(&received);
    assert_eq!(mime_type(&parsed), "multipart/alternative");
    // The line end before a boundary belongs to the boundary (RFC 2046).
    assert_eq!(
        lf(&parsed.body_text(0).expect("text")),
        "plain text\n.starts with a dot"
    );
    assert_eq!(lf(&parsed.body_html(0).expect("html")), "<p>html</p>");
}

#[tokio::test]
async fn dash_f_sets_the_envelope_sender() {
    let server = relay().await;
    let dir = config(&server, &[]);
    for args in [
        &["-f", "bounces@example.com", "dev@example.com"][..],
        &["-fbounces@example.com", "dev@example.com"][..],
        &["-r", "bounces@example.com", "dev@example.com"][..],
    ] {
        let out = sendmail(dir.path(), args, "Subject: envelope\n\nbody\n").await;
        out.assert_code(0);
    }
    let messages = server.messages();
    assert_eq!(messages.len(), 3);
    for received in &messages {
        assert_eq!(received.mail_from, "bounces@example.com");
        assert_eq!(received.rcpt_to, ["dev@example.com"]);
        // A message without From gets the envelope sender as its From.
        assert_eq!(addresses(parse(received).from()), ["bounces@example.com"]);
    }
}

#[tokio::test]
async fn positional_recipients_and_no_headers_read_without_dash_t() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let out = sendmail(
        dir.path(),
        &[
            "one@example.com",
            "two@example.com,three@example.com",
            "--",
            "-dash@example.com",
        ],
        WITH_BCC,
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    // Without -t the message's To, Cc and Bcc are not recipients.
    assert_eq!(
        received.rcpt_to,
        [
            "one@example.com",
            "two@example.com",
            "three@example.com",
            "-dash@example.com"
        ]
    );
}

#[tokio::test]
async fn without_dash_i_a_lone_dot_ends_the_message_with_it_it_does_not() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let message = "Subject: dots\n\nbefore\n.\nafter the dot\n";
    let out = sendmail(dir.path(), &["dev@example.com"], message).await;
    out.assert_code(0);
    let received = only_message(&server);
    assert_eq!(received.body(), b"before\r\n", "{}", received.data_str());
    assert!(!received.data_str().contains("after the dot"));

    server.clear();
    for flag in ["-i", "-oi"] {
        let out = sendmail(dir.path(), &[flag, "dev@example.com"], message).await;
        out.assert_code(0);
        let received = only_message(&server);
        assert_eq!(
            received.body(),
            b"before\r\n.\r\nafter the dot\r\n",
            "{flag}: {}",
            received.data_str()
        );
        server.clear();
    }
}

#[tokio::test]
async fn dash_capital_f_names_the_from_the_message_lacks() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let out = sendmail(
        dir.path(),
        &["-F", "Cron Daemon", "dev@example.com"],
        "Subject: no From\n\nbody\n",
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    let parsed = parse(&received);
    let from = parsed.from().and_then(|f| f.first()).expect("a From");
    assert_eq!(from.name(), Some("Cron Daemon"));
    assert_eq!(from.address(), Some(SENDER));
    assert_eq!(count_fields(&received.data, "From"), 1);

    // A message with its own From keeps it.
    server.clear();
    let out = sendmail(
        dir.path(),
        &["-FCron Daemon", "dev@example.com"],
        "From: Someone <someone@example.com>\nSubject: own From\n\nbody\n",
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    let parsed = parse(&received);
    let from = parsed.from().and_then(|f| f.first()).expect("a From");
    assert_eq!(from.name(), Some("Someone"));
    assert_eq!(from.address(), Some("someone@example.com"));
    assert_eq!(count_fields(&received.data, "From"), 1);

    // No header field at all, only the empty line: the From is added and
    // the body gains no blank line.
    server.clear();
    let out = sendmail(
        dir.path(),
        &["-FCron Daemon", "dev@example.com"],
        "\nbody line\n",
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    let parsed = parse(&received);
    assert_eq!(
        parsed.from().and_then(|f| f.first()).and_then(|a| a.name()),
        Some("Cron Daemon")
    );
    assert_eq!(
        parsed.body_text(0).as_deref().map(str::trim_end),
        Some("body line")
    );
}

#[tokio::test]
async fn ignored_options_are_accepted() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let out = sendmail(
        dir.path(),
        &[
            "-oem",
            "-odi",
            "-bm",
            "-B8BITMIME",
            "-B",
            "7BIT",
            "-N",
            "never",
            "-v",
            "-oi",
            "dev@example.com",
        ],
        "Subject: ignored options\n\nbody\n",
    )
    .await;
    out.assert_code(0);
    let received = only_message(&server);
    assert_eq!(received.rcpt_to, ["dev@example.com"]);
    assert_eq!(parse(&received).subject(), Some("ignored options"));
}

#[tokio::test]
async fn unsupported_modes_and_no_recipient_are_usage_errors() {
    let server = relay().await;
    let dir = config(&server, &[]);
    for (args, says) in [
        (&["-bp"][..], "-bp"),
        (&["-bs"][..], "-bs"),
        (&["-Q", "dev@example.com"][..], "-Q"),
        (&[][..], "no recipient"),
        (&["-i"][..], "no recipient"),
        // -t with a message that names nobody.
        (&["-t"][..], "no recipient"),
    ] {
        let out = sendmail(dir.path(), args, "Subject: nobody\n\nbody\n").await;
        out.assert_code(64);
        assert!(out.stderr().contains(says), "{args:?}: {}", out.stderr());
    }
    assert_nothing_sent(&server);
    assert_eq!(server.connection_count(), 0, "nothing connected");
}

#[tokio::test]
async fn a_huge_address_in_a_dash_t_message_is_refused_quickly_and_briefly() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let huge = format!("{}@example.com", "a".repeat(8 * 1024 * 1024));
    let message = format!("To: {huge}\nSubject: huge\n\nbody\n");
    let out = sendmail(dir.path(), &["-t", "-i"], &message).await;
    out.assert_code(65);
    out.assert_quick();
    assert!(out.output.stderr.len() < 500, "{}", out.stderr());
    assert_nothing_sent(&server);
}

// ---------------------------------------------------------------------------
// Called `sendmail`

#[tokio::test]
async fn a_symlink_called_sendmail_is_mailgate_sendmail() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let (_files, link) = sendmail_symlink();

    // The config folder from the environment.
    let mut cmd = Command::new(&link);
    cmd.args(["-t", "-i"])
        .env("MAILGATE_CONFIG_DIR", dir.path());
    let out = run(cmd, Input::text(WITH_BCC)).await;
    out.assert_code(0);
    assert_eq!(out.stdout(), "");
    let received = only_message(&server);
    assert_eq!(
        received.rcpt_to,
        [
            "to1@example.com",
            "cc1@example.com",
            "cc2@example.com",
            "hidden@example.com"
        ]
    );
    assert_intact(&received, &without_bcc(), &["Date", "Message-ID"]);

    // The config folder from -C, with no MAILGATE_CONFIG_DIR.
    server.clear();
    let mut cmd = Command::new(&link);
    cmd.arg("-C")
        .arg(dir.path())
        .args(["-f", "cron@example.com", "dev@example.com"])
        .env_remove("MAILGATE_CONFIG_DIR");
    let out = run(cmd, Input::text("Subject: via -C\n\nbody\n")).await;
    out.assert_code(0);
    let received = only_message(&server);
    assert_eq!(received.mail_from, "cron@example.com");
    assert_eq!(received.rcpt_to, ["dev@example.com"]);
    assert_eq!(parse(&received).subject(), Some("via -C"));

    // And -C wins over the environment.
    server.clear();
    let elsewhere = TempFiles::new();
    let mut cmd = Command::new(&link);
    cmd.arg(format!("-C{}", dir.path().display()))
        .arg("dev@example.com")
        .env("MAILGATE_CONFIG_DIR", elsewhere.path());
    let out = run(cmd, Input::text("Subject: -C wins\n\nbody\n")).await;
    out.assert_code(0);
    assert_eq!(parse(&only_message(&server)).subject(), Some("-C wins"));

    // As sendmail, its own options: -bp is refused as by `mailgate sendmail`.
    let mut cmd = Command::new(&link);
    cmd.arg("-bp").env("MAILGATE_CONFIG_DIR", dir.path());
    let out = run(cmd, Input::Empty).await;
    out.assert_code(64);
}

// ---------------------------------------------------------------------------
// Real callers

/// cron's message (cronie): LF line ends, UTF-8 text, its X-Cron-Env lines;
/// no From, so that -F names it.
const CRON_MESSAGE: &str = "To: root@example.com\n\
Subject: Cron <root@host> run-parts --report /etc/cron.daily\n\
MIME-Version: 1.0\n\
Content-Type: text/plain; charset=UTF-8\n\
Content-Transfer-Encoding: 8bit\n\
X-Cron-Env: <SHELL=/bin/sh>\n\
X-Cron-Env: <HOME=/root>\n\
X-Cron-Env: <PATH=/usr/bin:/bin>\n\
X-Cron-Env: <LOGNAME=root>\n\
\n\
/etc/cron.daily/logrotate:\n\
error: Grüße — rotation of /var/log/app.log failed\n\
.\n\
run-parts: /etc/cron.daily/logrotate exited with return code 1\n";

/// What cron does: popen the MTA with its options, write the message,
/// check the exit status.
const CRON_PY: &str = r#"
import subprocess, sys
sendmail, message = sys.argv[1], sys.argv[2]
with open(message, "rb") as f:
    data = f.read()
r = subprocess.run(
    [sendmail, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root@example.com"],
    input=data, capture_output=True, timeout=30,
)
sys.stdout.write(r.stdout.decode(errors="replace"))
sys.stderr.write(r.stderr.decode(errors="replace"))
if r.returncode != 0:
    sys.stderr.write("sendmail exited with %d\n" % r.returncode)
    sys.exit(1)
"#;

#[tokio::test]
async fn cron_through_python_subprocess() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let (files, link) = sendmail_symlink();
    let message = files.write("cron.eml", CRON_MESSAGE);
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(CRON_PY)
        .arg(&link)
        .arg(&message)
        .env("MAILGATE_CONFIG_DIR", dir.path());
    assert!(
        which("python3").is_some(),
        "python3 is not on the PATH: install it (Debian: python3) to run this test"
    );
    let out = run(cmd, Input::Empty).await;
    out.assert_code(0);
    assert_eq!(out.stdout(), "", "sendmail is silent on success");

    let received = only_message(&server);
    assert_eq!(received.rcpt_to, ["root@example.com"]);
    assert_eq!(received.mail_from, SENDER);
    // UTF-8 text, 8BITMIME offered: declared as 8-bit in MAIL FROM.
    let mail = server
        .commands()
        .into_iter()
        .find(|c| c.verb == "MAIL")
        .expect("MAIL");
    assert!(mail.arg.contains("BODY=8BITMIME"), "{}", mail.arg);
    let parsed = parse(&received);
    assert_eq!(
        parsed.subject(),
        Some("Cron <root@host> run-parts --report /etc/cron.daily")
    );
    let from = parsed.from().and_then(|f| f.first()).expect("a From");
    assert_eq!(from.name(), Some("CronDaemon"));
    assert_eq!(from.address(), Some(SENDER));
    assert_eq!(
        received.header_all("X-Cron-Env").collect::<Vec<_>>(),
        [
            "<SHELL=/bin/sh>",
            "<HOME=/root>",
            "<PATH=/usr/bin:/bin>",
            "<LOGNAME=root>"
        ]
    );
    assert_eq!(count_fields(&received.data, "MIME-Version"), 1);
    // The whole text, the lone dot line included (-i), in CRLF.
    let body = CRON_MESSAGE.split_once("\n\n").expect("a body").1;
    assert_eq!(received.body(), crlf(body).as_bytes());
    assert_eq!(lf(&parsed.body_text(0).expect("text")), body);
    // Everything else arrived as cron wrote it (in CRLF).
    let data = received.data_str();
    assert!(data.ends_with(&crlf(CRON_MESSAGE)), "{data}");
}

/// PHP `mail()` with one 2.6 KB HTML line: sent (re-encoded), not exit 65.
#[tokio::test]
async fn a_long_html_line_is_sent_re_encoded() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let html = format!(
        "<table>{}</table>",
        "<tr><td>build 42</td></tr>".repeat(100)
    );
    assert!(html.len() > 2600);
    let message = format!(
        "To: dev@example.com\nSubject: report\nMIME-Version: 1.0\nContent-Type: text/html; charset=UTF-8\n\n{html}\n"
    );
    let out = sendmail(dir.path(), &["-t", "-i"], &message).await;
    out.assert_code(0);
    let received = only_message(&server);
    assert!(received.data.split(|&b| b == b'\n').all(|l| l.len() <= 999));
    let parsed = parse(&received);
    assert_eq!(
        parsed.body_html(0).as_deref().map(str::trim_end),
        Some(html.as_str())
    );
}

/// A non-ASCII local part cannot reach a server without SMTPUTF8, so
/// `sendmail` says so (exit 65) instead of exit 0 and a dead message.
#[tokio::test]
async fn a_utf8_recipient_for_a_server_without_smtputf8_is_refused_not_queued() {
    use mailgate_integration_tests::{PeerConfig, PeerKind, SmtpPeer};
    let peer = SmtpPeer::start(PeerKind::Python, PeerConfig::new().no_smtputf8());
    let dir = support::config_for_port(peer.port(), &[("mailgate.outbox.autoDeliver", "false")]);
    let out = sendmail(
        dir.path(),
        &["j\u{fc}rgen@example.com"],
        "Subject: hi\n\nhi\n",
    )
    .await;
    out.assert_code(65);
    assert!(
        out.stderr().contains("SMTPUTF8") && out.stderr().contains("nothing was queued"),
        "{}",
        out.stderr()
    );
    let listed = support::mailgate(&dir, &["queue", "list", "--all", "--json"], Input::Empty).await;
    listed.assert_code(0);
    assert_eq!(listed.stdout().trim(), "[]", "nothing queued");
    assert!(peer.messages().is_empty());
}

// ---------------------------------------------------------------------------
// Every caller

/// A cron job's mail as cronie writes it (MAILTO unset: to root).
const CRON_MAIL: &str = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@build> /usr/local/bin/nightly\nContent-Type: text/plain; charset=UTF-8\n\nnightly: 3 files rotated\n";

/// cronie (RHEL, Fedora, Arch) runs `sendmail -FCronDaemon -i -odi -oem
/// -oi -t -f root`: the bare `root` is qualified with the sender's domain,
/// as envelope sender and as the To recipient.
#[tokio::test]
async fn cronie_s_command_line_with_a_bare_root_is_delivered() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let argv = [
        "-FCronDaemon",
        "-i",
        "-odi",
        "-oem",
        "-oi",
        "-t",
        "-f",
        "root",
    ];
    let out = sendmail(dir.path(), &argv, CRON_MAIL).await;
    out.assert_code(0);
    assert_eq!(out.stdout(), "");
    let received = only_message(&server);
    let domain = SENDER.rsplit_once('@').unwrap().1;
    assert_eq!(received.mail_from, format!("root@{domain}"));
    assert_eq!(received.rcpt_to, [format!("root@{domain}")]);
    let parsed = parse(&received);
    assert_eq!(
        parsed.subject(),
        Some("Cron <root@build> /usr/local/bin/nightly")
    );
    assert_eq!(
        parsed.body_text(0).as_deref().map(str::trim_end),
        Some("nightly: 3 files rotated")
    );

    // mailgate.sendmail.domain names another domain; an aliases file sends
    // root's mail to the operators and everything local to `default`.
    server.clear();
    let dir = config(
        &server,
        &[
            ("mailgate.sendmail.domain", "build.example.net"),
            ("mailgate.sendmail.aliases", "aliases"),
        ],
    );
    dir.write_file(
        "aliases",
        "# msmtp's format\nroot: ops@example.com, oncall\ndefault: it@example.com\n",
    );
    let out = sendmail(dir.path(), &argv, CRON_MAIL).await;
    out.assert_code(0);
    let received = only_message(&server);
    assert_eq!(received.mail_from, "root@build.example.net");
    assert_eq!(
        received.rcpt_to,
        ["ops@example.com", "oncall@build.example.net"]
    );
    server.clear();
    let out = sendmail(dir.path(), &["-i", "www-data"], "Subject: web\n\nhi\n").await;
    out.assert_code(0);
    assert_eq!(only_message(&server).rcpt_to, ["it@example.com"]);

    // A broken aliases file: exit 78 naming the key, the file and the line.
    dir.write_file("aliases", "root ops@example.com\n");
    let out = sendmail(dir.path(), &argv, CRON_MAIL).await;
    out.assert_code(78);
    let err = out.stderr();
    assert!(
        err.contains("mailgate.sendmail.aliases") && err.contains("line 1"),
        "{err}"
    );
}

/// `-f '<>'` and `-f ''` send with the null sender (bounce and vacation
/// tools), as msmtp and Postfix do.
#[tokio::test]
async fn dash_f_empty_or_angle_brackets_is_the_null_sender() {
    let server = relay().await;
    let dir = config(&server, &[]);
    for sender in ["<>", ""] {
        server.clear();
        let out = sendmail(
            dir.path(),
            &["-i", "-f", sender, "dev@example.com"],
            "Subject: auto-reply\n\nout of office\n",
        )
        .await;
        out.assert_code(0);
        let received = only_message(&server);
        assert_eq!(received.mail_from, "", "-f {sender:?}");
        assert_eq!(received.rcpt_to, ["dev@example.com"]);
    }
}

/// `--help` and `--version` work under both names, print on stdout and
/// exit 0 without reading stdin or the config.
#[tokio::test]
async fn help_and_version_under_both_names() {
    let (_files, link) = sendmail_symlink();
    let missing = std::path::Path::new("/nonexistent/mailgate-config");
    for (args, expected) in [
        (&["--help"][..], "Usage: sendmail"),
        (&["--version"][..], "mailgate "),
    ] {
        let mut all = vec!["sendmail"];
        all.extend_from_slice(args);
        let out = run(support::mailgate_cmd(missing, &all), Input::Empty).await;
        out.assert_code(0);
        assert!(out.stdout().starts_with(expected), "{}", out.stdout());

        let mut cmd = Command::new(&link);
        cmd.args(args).env_remove("MAILGATE_CONFIG_DIR");
        let out = run(cmd, Input::Empty).await;
        out.assert_code(0);
        assert!(out.stdout().starts_with(expected), "{}", out.stdout());
    }
}
