//! Every real caller of `/usr/sbin/sendmail`, against mailgate and against
//! msmtp. Each test gives a caller the same input twice: once with its
//! sendmail pointed at mailgate (a symlink called `sendmail` to the binary
//! under test) and once at msmtp configured as the system's sendmail (as
//! Debian's msmtp-mta makes it), each delivering into its own recording dev
//! server. It then compares the two deliveries:
//!
//! - the command line the caller ran (the same for both, and the one the
//!   README's callers table lists: the assertion keeps the table honest);
//! - the envelope (MAIL FROM, every RCPT TO);
//! - the header fields that matter (From, To, Cc, Subject) and no Bcc;
//! - what each sendmail changed in the message it was given: header fields
//!   added or removed (Received is ignored; Date and Message-ID are
//!   expected only where the caller wrote none, and then both add them),
//!   and the body bytes;
//! - the decoded MIME parts, across the two runs.
//!
//! Where mailgate differs from msmtp on purpose the test asserts the
//! difference: a bare `-f root` is qualified with `mailgate.sendmail.domain`
//! (msmtp sends `MAIL FROM:<root>`), and a line over 998 bytes is
//! re-encoded (msmtp sends it as it is).
//!
//! bsd-mailx, GNU mailutils' `mail`, mutt, PHP's `mail()` and
//! `git send-email` run for real. Debian's cron and cronie are daemons and
//! logwatch reads its mailer only from /etc, so their command lines and
//! messages are replayed as their sources write them (checked against
//! Debian's cron 3.0pl1-162 binary, cronie's do_command.c and a logwatch 7.7
//! run).
//!
//! Each sendmail is reached through a small recording script called
//! `sendmail` that writes down its argv and stdin and then execs the real
//! one (mailgate's symlink, or `msmtp -C FILE`): that is how the argv is
//! observed. Every caller gets its sendmail path explicitly and a HOME in a
//! temporary folder, so nothing reaches the host's MTA or reads the
//! developer's dotfiles.
//!
//! Needs bsd-mailx, mailutils, mutt, php-cli, msmtp, and git with
//! git send-email (`.ci/run` installs them); a missing program fails its
//! test naming the Debian package.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use mailgate_devserver::{DevSmtpServer, ReceivedMessage};
use mailgate_integration_tests::ConfigDir;
use support::{Input, Run, SENDER, TempFiles, bin, config, crlf, relay, run, which};

/// The path of `program`, or a failure naming the Debian package to install.
#[track_caller]
fn program(name: &str, package: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!(
            "{name} is not installed: apt-get install {package} \
             (.ci/run's set-up installs it)"
        )
    })
}

/// How long a caller's message may take to arrive once the caller exited
/// (they all wait for their sendmail; this is a margin, not a pause).
const ARRIVAL: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The two sendmails

/// Which sendmail a [`Side`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mailgate,
    Msmtp,
}

/// One sendmail as a caller sees it: a folder with `bin/sendmail` (the
/// recording script), a HOME, the calls recorded so far, and the server
/// its messages reach.
struct Side {
    kind: Kind,
    server: DevSmtpServer,
    folder: PathBuf,
}

impl Side {
    /// What the caller runs as its sendmail.
    fn sendmail(&self) -> PathBuf {
        self.folder.join("bin").join("sendmail")
    }

    /// The caller's HOME (empty: no dotfiles).
    fn home(&self) -> PathBuf {
        self.folder.join("home")
    }

    /// Writes a file for the caller (a mailrc, a muttrc) in this side's folder.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.folder.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    fn calls_dir(&self) -> PathBuf {
        self.folder.join("calls")
    }

    /// The calls recorded so far, in order: argv (without argv[0]) and stdin.
    fn calls(&self) -> Vec<(Vec<String>, Vec<u8>)> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.calls_dir())
            .expect("calls folder")
            .map(|e| e.expect("call").path())
            .collect();
        dirs.sort();
        dirs.iter()
            .map(|dir| {
                let argv = std::fs::read(dir.join("argv")).expect("argv recorded");
                let argv = argv
                    .split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8(a.to_vec()).expect("UTF-8 argv"))
                    .collect();
                let stdin = std::fs::read(dir.join("stdin")).expect("stdin recorded");
                (argv, stdin)
            })
            .collect()
    }
}

/// The recording script: each call gets a folder under `calls/` with its
/// argv (NUL-separated) and its stdin; then `exec_line` runs with the
/// same arguments and that stdin.
fn recording_script(calls: &Path, exec_line: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # Records this call, then runs the sendmail under test.\n\
         calls='{calls}'\n\
         n=$(ls \"$calls\" | wc -l)\n\
         call=$(printf '%s/%03d' \"$calls\" $((n)))\n\
         mkdir \"$call\" || exit 75\n\
         for arg in \"$@\"; do printf '%s\\000' \"$arg\"; done > \"$call/argv\"\n\
         cat > \"$call/stdin\" || exit 75\n\
         {exec_line} \"$@\" < \"$call/stdin\"\n",
        calls = calls.display()
    )
}

fn make_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("script written");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// mailgate and msmtp side by side, each with its own server and folders.
struct Pair {
    _files: TempFiles,
    /// mailgate's config folder (kept while the pair lives): an open relay
    /// to its server, the outbox a SQLite file in the folder (sendmail
    /// stores the message, then tries it once before it exits).
    _config: ConfigDir,
    mailgate: Side,
    msmtp: Side,
}

impl Pair {
    async fn start() -> Pair {
        let msmtp = program("msmtp", "msmtp");
        let files = TempFiles::new();
        let side = |kind: Kind, server: DevSmtpServer, name: &str| {
            let folder = files.path().join(name);
            for sub in ["bin", "home", "calls"] {
                std::fs::create_dir_all(folder.join(sub)).expect("side folder");
            }
            Side {
                kind,
                server,
                folder,
            }
        };

        let mailgate = side(Kind::Mailgate, relay().await, "mailgate");
        let config = config(&mailgate.server, &[]);
        // The symlink called `sendmail`: the binary runs as sendmail.
        let link = mailgate.folder.join("symlink").join("sendmail");
        std::fs::create_dir_all(link.parent().expect("parent")).expect("symlink folder");
        std::os::unix::fs::symlink(bin(), &link).expect("symlink created");
        make_executable(
            &mailgate.sendmail(),
            &recording_script(
                &mailgate.calls_dir(),
                &format!(
                    "MAILGATE_CONFIG_DIR='{}'; export MAILGATE_CONFIG_DIR\nexec '{}'",
                    config.path().display(),
                    link.display()
                ),
            ),
        );

        let msmtp_side = side(Kind::Msmtp, relay().await, "msmtp");
        // msmtp's counterpart of mailgate's qualifying of bare names (the
        // domain of mksis.logging.email.from, example.com): an aliases
        // file. It covers recipients only: msmtp has no way to qualify a
        // bare `-f root` (see the cronie test).
        let aliases = msmtp_side.write("aliases", "root: root@example.com\n");
        let rc = msmtp_side.write(
            "msmtprc",
            &format!(
                "# msmtp as the system's sendmail, for the comparison\n\
                 defaults\n\
                 auth off\n\
                 tls off\n\
                 aliases {aliases}\n\
                 account default\n\
                 host 127.0.0.1\n\
                 port {port}\n\
                 from {SENDER}\n",
                aliases = aliases.display(),
                port = msmtp_side.server.port(),
            ),
        );
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        make_executable(
            &msmtp_side.sendmail(),
            &recording_script(
                &msmtp_side.calls_dir(),
                &format!("exec '{}' -C '{}'", msmtp.display(), rc.display()),
            ),
        );
        Pair {
            _files: files,
            _config: config,
            mailgate,
            msmtp: msmtp_side,
        }
    }

    /// Runs the caller `command(side)` once per side with `stdin`, and
    /// returns what each sendmail was given and delivered. The caller
    /// must exit 0, call its sendmail exactly once and one message arrive.
    async fn send(&self, command: impl Fn(&Side) -> Command, stdin: &[u8]) -> Both {
        let mut deliveries = Vec::with_capacity(2);
        for side in [&self.mailgate, &self.msmtp] {
            let calls_before = side.calls().len();
            let seen = side.server.message_count();
            let mut cmd = command(side);
            cmd.env("HOME", side.home())
                .env_remove("MAILGATE_CONFIG_DIR");
            let caller = run(cmd, Input::Bytes(stdin.to_vec())).await;
            assert_eq!(
                caller.code(),
                Some(0),
                "the caller with {:?}'s sendmail failed:\nstdout:\n{}\nstderr:\n{}",
                side.kind,
                caller.stdout(),
                caller.stderr()
            );
            let mut calls = side.calls();
            assert_eq!(
                calls.len(),
                calls_before + 1,
                "{:?}: the caller ran its sendmail {} times",
                side.kind,
                calls.len() - calls_before
            );
            let (argv, input) = calls.remove(calls_before);
            let mut messages = side.server.wait_for_messages_after(seen, ARRIVAL).await;
            assert_eq!(
                messages.len(),
                1,
                "{:?}: messages received: {messages:#?}",
                side.kind
            );
            deliveries.push(Delivery {
                kind: side.kind,
                argv,
                input,
                message: messages.remove(0),
                caller,
            });
        }
        let msmtp = deliveries.pop().expect("msmtp's");
        let mailgate = deliveries.pop().expect("mailgate's");
        Both { mailgate, msmtp }
    }
}

// ---------------------------------------------------------------------------
// Comparing

/// What a caller gave one sendmail and what arrived.
struct Delivery {
    kind: Kind,
    /// The arguments the caller passed (without argv[0]).
    argv: Vec<String>,
    /// What the caller wrote on the sendmail's stdin.
    input: Vec<u8>,
    message: ReceivedMessage,
    /// The caller's own run (exit status, output).
    caller: Run,
}

/// `bytes` with every LF that lacks a CR before it made CRLF.
fn crlf_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The header section and the body of CRLF data.
fn split_message(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (&data[..at + 2], &data[at + 4..]),
        None => (data, &[]),
    }
}

/// The header fields of a CRLF header section, each as its raw text
/// (continuation lines included), but Received.
fn raw_fields(head: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<String> = Vec::new();
    for line in text.split_inclusive("\r\n") {
        match fields.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => fields.push(line.to_owned()),
        }
    }
    fields.retain(|f| !field_name(f).eq_ignore_ascii_case("Received"));
    fields
}

fn field_name(field: &str) -> &str {
    field.split_once(':').map_or(field, |(name, _)| name.trim())
}

/// The names of the fields in `a` that are not in `b` (as multisets of
/// raw fields), sorted.
fn missing_from(a: &[String], b: &[String]) -> Vec<String> {
    let mut rest: Vec<&String> = b.iter().collect();
    let mut names = Vec::new();
    for field in a {
        match rest.iter().position(|r| *r == field) {
            Some(at) => {
                rest.remove(at);
            }
            None => names.push(field_name(field).to_owned()),
        }
    }
    names.sort();
    names
}

impl Delivery {
    /// The caller's input in CRLF: what arrives when nothing is changed.
    fn input_crlf(&self) -> Vec<u8> {
        crlf_bytes(&self.input)
    }

    /// The names of the header fields this sendmail added and removed.
    fn changes(&self) -> (Vec<String>, Vec<String>) {
        let input = self.input_crlf();
        let given = raw_fields(split_message(&input).0);
        let sent = raw_fields(split_message(&self.message.data).0);
        (missing_from(&sent, &given), missing_from(&given, &sent))
    }

    /// Whether the body arrived byte for byte as the caller wrote it (in CRLF).
    fn body_unchanged(&self) -> bool {
        let input = self.input_crlf();
        split_message(&input).1 == split_message(&self.message.data).1
    }

    /// Every MIME part, decoded: type, charset, disposition, file name,
    /// contents (text as UTF-8).
    fn parts(&self) -> Vec<Part> {
        let parsed = MessageParser::default()
            .parse(&self.message.data)
            .unwrap_or_else(|| {
                panic!(
                    "{:?}: mail-parser cannot read:\n{}",
                    self.kind,
                    self.message.data_str()
                )
            });
        parsed
            .parts
            .iter()
            .map(|part| {
                let ct = part.content_type();
                Part {
                    content_type: ct.map_or("text/plain".into(), |ct| {
                        format!(
                            "{}/{}",
                            ct.ctype().to_ascii_lowercase(),
                            ct.subtype().unwrap_or_default().to_ascii_lowercase()
                        )
                    }),
                    charset: ct
                        .and_then(|ct| ct.attribute("charset"))
                        .map(str::to_ascii_lowercase),
                    disposition: part
                        .content_disposition()
                        .map(|d| d.ctype().to_ascii_lowercase()),
                    file_name: part.attachment_name().map(str::to_owned),
                    contents: part.contents().to_vec(),
                }
            })
            .collect()
    }

    /// The message as it arrived, for failure messages.
    fn show(&self) -> String {
        format!(
            "{:?}: MAIL FROM:<{}> RCPT TO:{:?}\n{}",
            self.kind,
            self.message.mail_from,
            self.message.rcpt_to,
            self.message.data_str()
        )
    }
}

/// A MIME part, decoded (see [`Delivery::parts`]).
#[derive(Debug, PartialEq, Eq)]
struct Part {
    content_type: String,
    charset: Option<String>,
    disposition: Option<String>,
    file_name: Option<String>,
    contents: Vec<u8>,
}

/// The same caller, once through mailgate and once through msmtp.
struct Both {
    mailgate: Delivery,
    msmtp: Delivery,
}

impl Both {
    fn each(&self) -> [&Delivery; 2] {
        [&self.mailgate, &self.msmtp]
    }

    fn show(&self) -> String {
        format!("{}\n\n{}", self.mailgate.show(), self.msmtp.show())
    }

    /// The caller passed `expected` to both sendmails, and the README's
    /// callers table lists it in the row of `test`.
    #[track_caller]
    fn assert_argv(&self, test: &str, expected: &[&str]) {
        for d in self.each() {
            assert_eq!(d.argv, expected, "{:?}'s argv", d.kind);
        }
        assert_listed(test, &self.mailgate.argv);
    }

    /// The same MAIL FROM and the same RCPT TOs. Their order may differ
    /// with `-t`: mailgate takes To, then Cc, then Bcc; msmtp takes the
    /// fields in the order the message has them.
    #[track_caller]
    fn assert_same_envelope(&self) {
        let (mg, ms) = (&self.mailgate.message, &self.msmtp.message);
        assert_eq!(mg.mail_from, ms.mail_from, "MAIL FROM\n{}", self.show());
        let sorted = |r: &[String]| {
            let mut r = r.to_vec();
            r.sort();
            r
        };
        assert_eq!(
            sorted(&mg.rcpt_to),
            sorted(&ms.rcpt_to),
            "RCPT TO\n{}",
            self.show()
        );
    }

    /// The envelope mailgate sent (`sender`, `recipients`), and the same
    /// from msmtp.
    #[track_caller]
    fn assert_envelope(&self, sender: &str, recipients: &[&str]) {
        assert_eq!(self.mailgate.message.mail_from, sender, "{}", self.show());
        assert_eq!(self.mailgate.message.rcpt_to, recipients, "{}", self.show());
        self.assert_same_envelope();
    }

    /// From, To, Cc and Subject arrive the same from both (every
    /// occurrence, raw), From and Subject present; no Bcc in either.
    #[track_caller]
    fn assert_same_fields(&self) {
        for name in ["From", "To", "Cc", "Subject"] {
            let mg: Vec<&str> = self.mailgate.message.header_all(name).collect();
            let ms: Vec<&str> = self.msmtp.message.header_all(name).collect();
            assert_eq!(mg, ms, "{name}\n{}", self.show());
        }
        for d in self.each() {
            for name in ["From", "Subject"] {
                assert!(
                    d.message.header(name).is_some(),
                    "{:?}: no {name}\n{}",
                    d.kind,
                    d.show()
                );
            }
            assert!(
                d.message.header("Bcc").is_none(),
                "{:?} sent a Bcc\n{}",
                d.kind,
                d.show()
            );
        }
    }

    /// Each sendmail added exactly the fields `added` to what the caller
    /// wrote and removed exactly `removed` (names, any order).
    #[track_caller]
    fn assert_changes(&self, added: &[&str], removed: &[&str]) {
        for d in self.each() {
            assert_changes(d, added, removed);
        }
    }

    /// Both delivered the body exactly as the caller wrote it (in CRLF).
    #[track_caller]
    fn assert_bodies_unchanged(&self) {
        for d in self.each() {
            assert!(
                d.body_unchanged(),
                "{:?} changed the body; the caller wrote\n{}\n\n{}",
                d.kind,
                String::from_utf8_lossy(&d.input),
                d.show()
            );
        }
    }

    /// The same MIME parts, decoded, from both runs.
    #[track_caller]
    fn assert_same_parts(&self) -> Vec<Part> {
        let parts = self.mailgate.parts();
        assert_eq!(parts, self.msmtp.parts(), "{}", self.show());
        parts
    }

    /// All of the above, for a caller whose message both deliver
    /// unchanged but for `added` / `removed` header fields.
    #[track_caller]
    fn assert_alike(&self, added: &[&str], removed: &[&str]) -> Vec<Part> {
        self.assert_same_envelope();
        self.assert_same_fields();
        self.assert_changes(added, removed);
        self.assert_bodies_unchanged();
        self.assert_same_parts()
    }
}

// The one header field only mailgate adds: MIME-Version, to a message
// that lacks it (PHP's plain mail(), cronie's, with or without a
// Content-Type), as `send --raw` completes a message (README: a missing
// Date, Message-ID, MIME-Version and From). msmtp adds Date and Message-ID
// (and From) only. Harmless: without it a reader takes the same defaults.

/// `d`'s sendmail added exactly `added` and removed exactly `removed`.
#[track_caller]
fn assert_changes(d: &Delivery, added: &[&str], removed: &[&str]) {
    let mut want_added: Vec<String> = added.iter().map(|s| (*s).to_owned()).collect();
    let mut want_removed: Vec<String> = removed.iter().map(|s| (*s).to_owned()).collect();
    want_added.sort();
    want_removed.sort();
    let (got_added, got_removed) = d.changes();
    assert_eq!(
        (got_added, got_removed),
        (want_added, want_removed),
        "{:?}: (added, removed) header fields; the caller wrote\n{}\n\n{}",
        d.kind,
        String::from_utf8_lossy(&d.input),
        d.show()
    );
}

/// The command lines the README's callers table gives in the row that
/// names `test`: each `sendmail ...` in its argv column, split on blanks,
/// without `sendmail`.
#[track_caller]
fn readme_argv(test: &str) -> Vec<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let row = readme
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with('|') && l.contains(&format!("`{test}`")))
        .unwrap_or_else(|| panic!("README.md's callers table has no row naming `{test}`"));
    let argv_column = row.split(" | ").nth(1).expect("an argv column");
    argv_column
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|code| code.starts_with("sendmail "))
        .map(|code| code.split_whitespace().skip(1).map(str::to_owned).collect())
        .collect()
}

/// Whether `argv` is what `pattern` (a README argv) describes: `ADDR` and
/// `USER@HOST` stand for one address, `ADDR...` for the remaining ones.
fn argv_matches(pattern: &[String], argv: &[String]) -> bool {
    match pattern.split_first() {
        None => argv.is_empty(),
        Some((p, rest)) => match p.as_str() {
            "ADDR..." => {
                rest.is_empty() && !argv.is_empty() && argv.iter().all(|a| a.contains('@'))
            }
            "ADDR" | "USER@HOST" => {
                argv.first().is_some_and(|a| a.contains('@')) && argv_matches(rest, &argv[1..])
            }
            _ => argv.first() == Some(p) && argv_matches(rest, &argv[1..]),
        },
    }
}

/// The README's callers table lists `argv` in the row of `test`.
#[track_caller]
fn assert_listed(test: &str, argv: &[String]) {
    let listed = readme_argv(test);
    assert!(
        listed.iter().any(|pattern| argv_matches(pattern, argv)),
        "the README's callers table gives {listed:?} for `{test}`; the caller passed {argv:?}"
    );
}

#[test]
fn readme_argv_patterns_match_as_documented() {
    let v = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_owned).collect() };
    assert!(argv_matches(
        &v("-oem -oi -- ADDR..."),
        &v("-oem -oi -- a@x b@x")
    ));
    assert!(!argv_matches(&v("-oem -oi -- ADDR..."), &v("-oem -oi --")));
    assert!(!argv_matches(
        &v("-oem -oi -- ADDR..."),
        &v("-oi -oem -- a@x")
    ));
    assert!(argv_matches(
        &v("-oi -f USER@HOST -t"),
        &v("-oi -f root@build -t")
    ));
    assert!(!argv_matches(
        &v("-oi -f USER@HOST -t"),
        &v("-oi -f root -t")
    ));
    assert!(!argv_matches(&v("-t -i"), &v("-t -i -f a@x")));
    assert_eq!(
        readme_argv("php_mail_arrives_as_through_msmtp"),
        [v("-t -i"), v("-t -i -f ADDR")]
    );
}

/// The part holding `file_name`.
#[track_caller]
fn attachment<'a>(parts: &'a [Part], file_name: &str) -> &'a Part {
    parts
        .iter()
        .find(|p| p.file_name.as_deref() == Some(file_name))
        .unwrap_or_else(|| panic!("no part {file_name}: {parts:#?}"))
}

/// A small binary attachment: every byte value, so that it must travel
/// encoded.
fn binary_attachment() -> Vec<u8> {
    (0..=255u8).cycle().take(700).collect()
}

// ---------------------------------------------------------------------------
// bsd-mailx

#[tokio::test]
async fn bsd_mailx_with_cc_and_bcc_arrives_as_through_msmtp() {
    let mailx = program("bsd-mailx", "bsd-mailx");
    let pair = Pair::start().await;
    let body = "Disk usage on build is at 91%.\n.\nGrüße, the build host\n";
    let both = pair
        .send(
            |side| {
                // mailx reads $MAILRC after /etc/mail.rc, which -n skips.
                let rc = side.write(
                    "mailrc",
                    &format!("set sendmail={}\n", side.sendmail().display()),
                );
                let mut cmd = Command::new(&mailx);
                cmd.args([
                    "-n",
                    "-s",
                    "disk usage",
                    "-c",
                    "cc@example.com",
                    "-b",
                    "bcc@example.com",
                    "to@example.com",
                ])
                .env("MAILRC", rc);
                cmd
            },
            body.as_bytes(),
        )
        .await;
    // Debian's bsd-mailx hands the recipients over in the header (-t).
    both.assert_argv(
        "bsd_mailx_with_cc_and_bcc_arrives_as_through_msmtp",
        &["-i", "-t"],
    );
    both.assert_envelope(
        SENDER,
        &["to@example.com", "cc@example.com", "bcc@example.com"],
    );
    // mailx writes no From, Date or Message-ID: each sendmail adds them
    // (the From from the envelope sender); both remove the Bcc.
    let parts = both.assert_alike(&["Date", "From", "Message-ID"], &["Bcc"]);
    assert_eq!(parts.len(), 1, "{parts:#?}");
    assert_eq!(String::from_utf8_lossy(&parts[0].contents), crlf(body));
    for d in both.each() {
        let from = d.message.header("From").expect("From");
        assert!(from.contains(SENDER), "{:?}: From: {from}", d.kind);
    }
}

// ---------------------------------------------------------------------------
// GNU mailutils

#[tokio::test]
async fn mailutils_mail_with_an_attachment_arrives_as_through_msmtp() {
    let mail = program("mail.mailutils", "mailutils");
    let pair = Pair::start().await;
    let files = TempFiles::new();
    let attached = files.write("report.bin", binary_attachment());
    let body = "The nightly report is attached.\n";
    let both = pair
        .send(
            |side| {
                let mut cmd = Command::new(&mail);
                // No mailutils.conf (--no-config), no /etc/mail.rc (-n).
                cmd.args(["--no-config", "-n", "-E"])
                    .arg(format!(
                        "set sendmail=sendmail://{}",
                        side.sendmail().display()
                    ))
                    .args([
                        "-s",
                        "nightly report",
                        "-a",
                        "Cc: cc@example.com",
                        "-a",
                        "Bcc: bcc@example.com",
                        "-A",
                    ])
                    .arg(&attached)
                    .arg("to@example.com");
                cmd
            },
            body.as_bytes(),
        )
        .await;
    // mailutils gives its user's address (USER@HOST) as the sender.
    let sender = both.mailgate.message.mail_from.clone();
    assert!(sender.contains('@'), "{sender}");
    both.assert_argv(
        "mailutils_mail_with_an_attachment_arrives_as_through_msmtp",
        &["-oi", "-f", &sender, "-t"],
    );
    // mailutils writes Cc and Bcc before To: msmtp follows that order.
    both.assert_envelope(
        &sender,
        &["to@example.com", "cc@example.com", "bcc@example.com"],
    );
    assert_eq!(
        both.msmtp.message.rcpt_to,
        ["cc@example.com", "bcc@example.com", "to@example.com"]
    );
    // mailutils writes a Date but no From or Message-ID.
    let parts = both.assert_alike(&["From", "Message-ID"], &["Bcc"]);
    assert_eq!(
        parts
            .iter()
            .map(|p| p.content_type.as_str())
            .collect::<Vec<_>>(),
        ["multipart/mixed", "text/plain", "application/octet-stream"]
    );
    assert_eq!(parts[1].contents, crlf(body).as_bytes());
    let file = attachment(&parts, "report.bin");
    assert_eq!(file.contents, binary_attachment());
    assert_eq!(file.disposition.as_deref(), Some("attachment"));
}

// ---------------------------------------------------------------------------
// mutt

#[tokio::test]
async fn mutt_with_an_attachment_arrives_as_through_msmtp() {
    let mutt = program("mutt", "mutt");
    let pair = Pair::start().await;
    let files = TempFiles::new();
    let attached = files.write("report.bin", binary_attachment());
    let body = "Grüße from the build host: the report is attached.\n";
    let both = pair
        .send(
            |side| {
                // mutt's own default is `sendmail="/usr/sbin/sendmail -oem -oi"`:
                // the same options, another path.
                let muttrc = side.write(
                    "muttrc",
                    &format!(
                        "set sendmail=\"{} -oem -oi\"\n\
                         set from=\"ALM Server <alm@example.com>\"\n\
                         set hostname=build.example.com\n\
                         set record=\"\"\n\
                         set charset=utf-8\n",
                        side.sendmail().display()
                    ),
                );
                let mut cmd = Command::new(&mutt);
                cmd.arg("-n")
                    .arg("-F")
                    .arg(muttrc)
                    .args([
                        "-s",
                        "nightly report",
                        "-c",
                        "cc@example.com",
                        "-b",
                        "bcc@example.com",
                        "-a",
                    ])
                    .arg(&attached)
                    .args(["--", "to@example.com"]);
                cmd
            },
            body.as_bytes(),
        )
        .await;
    // mutt names every recipient on the command line (and writes no Bcc).
    both.assert_argv(
        "mutt_with_an_attachment_arrives_as_through_msmtp",
        &[
            "-oem",
            "-oi",
            "--",
            "to@example.com",
            "cc@example.com",
            "bcc@example.com",
        ],
    );
    both.assert_envelope(
        SENDER,
        &["to@example.com", "cc@example.com", "bcc@example.com"],
    );
    // mutt writes Date and Message-ID itself: nothing is added.
    let parts = both.assert_alike(&[], &[]);
    assert_eq!(
        parts
            .iter()
            .map(|p| p.content_type.as_str())
            .collect::<Vec<_>>(),
        ["multipart/mixed", "text/plain", "application/octet-stream"]
    );
    assert_eq!(String::from_utf8_lossy(&parts[1].contents), crlf(body));
    assert_eq!(
        attachment(&parts, "report.bin").contents,
        binary_attachment()
    );
}

// ---------------------------------------------------------------------------
// PHP

/// PHP's `mail()` with `sendmail_path` as php.ini sets it, without (`-n`)
/// the host's php.ini.
fn php_mail(php: &Path, side: &Side, code: &str) -> Command {
    let mut cmd = Command::new(php);
    cmd.arg("-n")
        .arg("-d")
        .arg(format!("sendmail_path={} -t -i", side.sendmail().display()))
        .arg("-r")
        .arg(format!("var_export({code});"));
    cmd
}

#[tokio::test]
async fn php_mail_arrives_as_through_msmtp() {
    let php = program("php", "php-cli");
    let pair = Pair::start().await;
    let both = pair
        .send(
            |side| {
                php_mail(
                    &php,
                    side,
                    r#"mail("to@example.com", "Order 1042 shipped", "Your order has shipped.\n.\nThanks!\n", ["From" => "Shop <shop@example.com>", "Cc" => "cc@example.com", "Bcc" => "bcc@example.com"])"#,
                )
            },
            b"",
        )
        .await;
    for d in both.each() {
        assert_eq!(d.caller.stdout(), "true", "{:?}: mail() returned", d.kind);
    }
    both.assert_argv("php_mail_arrives_as_through_msmtp", &["-t", "-i"]);
    both.assert_envelope(
        SENDER,
        &["to@example.com", "cc@example.com", "bcc@example.com"],
    );
    // PHP writes its header in CRLF and the body as given (LF), then a
    // CRLF: both sendmails make every line end CRLF.
    let input = &both.mailgate.input;
    assert!(
        input.starts_with(b"To: to@example.com\r\n") && input.ends_with(b"Thanks!\n\r\n"),
        "{}",
        String::from_utf8_lossy(input)
    );
    both.assert_same_envelope();
    both.assert_same_fields();
    // Neither has MIME-Version: mailgate adds it (see assert_changes).
    assert_changes(
        &both.mailgate,
        &["Date", "MIME-Version", "Message-ID"],
        &["Bcc"],
    );
    assert_changes(&both.msmtp, &["Date", "Message-ID"], &["Bcc"]);
    both.assert_bodies_unchanged();
    let parts = both.assert_same_parts();
    assert_eq!(
        String::from_utf8_lossy(&parts[0].contents),
        "Your order has shipped.\r\n.\r\nThanks!\r\n\r\n"
    );

    // The fifth argument sets the envelope sender (`-f`).
    let both = pair
        .send(
            |side| {
                php_mail(
                    &php,
                    side,
                    r#"mail("to@example.com", "Bounce address", "body\n", "From: Shop <shop@example.com>", "-f bounces@example.com")"#,
                )
            },
            b"",
        )
        .await;
    both.assert_argv(
        "php_mail_arrives_as_through_msmtp",
        &["-t", "-i", "-f", "bounces@example.com"],
    );
    both.assert_envelope("bounces@example.com", &["to@example.com"]);
    both.assert_same_fields();
    assert_changes(&both.mailgate, &["Date", "MIME-Version", "Message-ID"], &[]);
    assert_changes(&both.msmtp, &["Date", "Message-ID"], &[]);
    both.assert_bodies_unchanged();
    both.assert_same_parts();
}

// ---------------------------------------------------------------------------
// git send-email

/// Debian packages for the Perl modules `git send-email` may miss.
const PERL_PACKAGES: &[(&str, &str)] = &[
    ("Authen/SASL", "libauthen-sasl-perl"),
    ("Net/SMTP/SSL", "libnet-smtp-ssl-perl"),
    ("IO/Socket/SSL", "libio-socket-ssl-perl"),
    ("Email/Valid", "libemail-valid-perl"),
    ("Mail/Address", "libmailtools-perl"),
    ("Term/ReadLine/Gnu", "libterm-readline-gnu-perl"),
    ("MIME/QuotedPrint", "perl"),
    ("Net/Domain", "perl"),
];

/// Fails with what to install when git or `git send-email` cannot run.
#[track_caller]
fn explain_git_failure(out: &Run) {
    let err = out.stderr();
    if err.contains("is not a git command") {
        panic!("`git send-email` is not installed (Debian: git-email):\n{err}");
    }
    if let Some(at) = err.find("Can't locate ") {
        let module = err[at + "Can't locate ".len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches(".pm");
        let package = PERL_PACKAGES
            .iter()
            .find(|(m, _)| *m == module)
            .map_or("the package that provides it", |(_, p)| *p);
        panic!(
            "`git send-email` needs the Perl module {} (Debian: {package}):\n{err}",
            module.replace('/', "::")
        );
    }
}

/// `git ARGS` in `repo`, with no system or global config and fixed
/// identities and dates.
fn git(repo: &Path, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(repo)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Alm Dev")
        .env("GIT_AUTHOR_EMAIL", "alm@example.com")
        .env("GIT_COMMITTER_NAME", "Alm Dev")
        .env("GIT_COMMITTER_EMAIL", "alm@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-01T10:00:00+00:00")
        .env("GIT_COMMITTER_DATE", "2024-01-01T10:00:00+00:00")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        // Nothing may wait for an editor.
        .env("GIT_EDITOR", "false");
    cmd
}

#[tokio::test]
async fn git_send_email_arrives_as_through_msmtp() {
    program("git", "git");
    let pair = Pair::start().await;
    let files = TempFiles::new();
    let repo = files.path().join("repo");
    let home = files.path().join("home");
    for dir in [&repo, &home] {
        std::fs::create_dir(dir).expect("folder");
    }
    run(
        git(&repo, &home, &["init", "-q", "-b", "main"]),
        Input::Empty,
    )
    .await
    .assert_code(0);
    std::fs::write(repo.join("notify.txt"), "notification rules\n.\nend\n").expect("file");
    for args in [
        &["add", "notify.txt"][..],
        &["commit", "-q", "-m", "Add the notification rules"][..],
    ] {
        run(git(&repo, &home, args), Input::Empty)
            .await
            .assert_code(0);
    }
    // A dry run first, to explain a missing git-email or Perl module.
    let probe = run(
        git(
            &repo,
            &home,
            &[
                "send-email",
                "--dry-run",
                "--to=dev@example.com",
                "--confirm=never",
                "--quiet",
                "-1",
            ],
        ),
        Input::Empty,
    )
    .await;
    explain_git_failure(&probe);

    let both = pair
        .send(
            |side| {
                git(
                    &repo,
                    &side.home(),
                    &[
                        "send-email",
                        &format!("--sendmail-cmd={}", side.sendmail().display()),
                        "--to=dev@example.com",
                        "--from=Alm Dev <alm@example.com>",
                        "--confirm=never",
                        // Else git adds the patch's author (alm@) as a Cc.
                        "--suppress-cc=all",
                        "--no-validate",
                        "--quiet",
                        "-1",
                    ],
                )
            },
            b"",
        )
        .await;
    both.assert_argv(
        "git_send_email_arrives_as_through_msmtp",
        &["-i", "dev@example.com"],
    );
    both.assert_envelope(SENDER, &["dev@example.com"]);
    // git writes Date and Message-ID: nothing is added.
    let parts = both.assert_alike(&[], &[]);
    for d in both.each() {
        assert_eq!(d.message.header("To"), Some("dev@example.com"));
        assert_eq!(d.message.header("From"), Some("Alm Dev <alm@example.com>"));
        let id = d.message.header("Message-ID").expect("git's Message-ID");
        // git writes <STAMP.PID-SERIAL-SENDER>.
        assert!(id.ends_with("-1-alm@example.com>"), "{:?}: {id}", d.kind);
        assert_eq!(
            d.message.subject().as_deref(),
            Some("[PATCH] Add the notification rules")
        );
    }
    let text = String::from_utf8_lossy(&parts[0].contents).replace("\r\n", "\n");
    assert!(text.contains("+notification rules\n+.\n+end\n"), "{text}");
    assert!(text.contains("notify.txt"), "{text}");
}

// ---------------------------------------------------------------------------
// Debian's cron and cronie (replayed)

/// A cron job's mail as Debian's cron 3.0pl1 writes it (MAILTO unset: to
/// the crontab's owner, root): header fields in its order, its
/// X-Cron-Env lines, UTF-8 output with a lone dot line.
const DEBIAN_CRON_MAIL: &str = "From: root (Cron Daemon)\n\
To: root\n\
Subject: Cron <root@build> /usr/local/bin/nightly\n\
MIME-Version: 1.0\n\
Content-Type: text/plain; charset=UTF-8\n\
Content-Transfer-Encoding: 8bit\n\
X-Cron-Env: <SHELL=/bin/sh>\n\
X-Cron-Env: <HOME=/root>\n\
X-Cron-Env: <PATH=/usr/bin:/bin>\n\
X-Cron-Env: <LOGNAME=root>\n\
\n\
nightly: rotation of /var/log/app.log failed — Grüße\n\
.\n\
nightly: exited with 1\n";

/// Runs `sendmail ARGV` with `message` on stdin, as cron does: its own
/// argv split on blanks, no shell.
fn replay<'a>(argv: &'a [&'a str]) -> impl Fn(&Side) -> Command + 'a {
    move |side: &Side| {
        let mut cmd = Command::new(side.sendmail());
        cmd.args(argv);
        cmd
    }
}

#[tokio::test]
async fn debian_cron_to_root_arrives_as_through_msmtp() {
    let pair = Pair::start().await;
    let argv = ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"];
    let both = pair.send(replay(&argv), DEBIAN_CRON_MAIL.as_bytes()).await;
    both.assert_argv("debian_cron_to_root_arrives_as_through_msmtp", &argv);
    // `root`: mailgate adds @ and the sender's domain; msmtp's aliases
    // file maps it to the same address.
    both.assert_envelope(SENDER, &["root@example.com"]);
    let parts = both.assert_alike(&["Date", "Message-ID"], &[]);
    assert_eq!(
        String::from_utf8_lossy(&parts[0].contents),
        crlf(DEBIAN_CRON_MAIL.split_once("\n\n").expect("body").1)
    );
    for d in both.each() {
        assert_eq!(d.caller.stdout(), "", "{:?} is silent", d.kind);
        assert_eq!(d.caller.stderr(), "", "{:?} is silent", d.kind);
    }
}

/// A cron job's mail as cronie writes it (MAILTO unset: to root).
const CRONIE_MAIL: &str = "From: root (Cron Daemon)\n\
To: root\n\
Subject: Cron <root@build> /usr/local/bin/nightly\n\
Content-Type: text/plain; charset=UTF-8\n\
Auto-Submitted: auto-generated\n\
X-Cron-Env: <SHELL=/bin/sh>\n\
X-Cron-Env: <HOME=/root>\n\
X-Cron-Env: <LOGNAME=root>\n\
X-Cron-Env: <USER=root>\n\
\n\
nightly: 3 files rotated\n";

#[tokio::test]
async fn cronie_from_root_to_root_arrives_as_through_msmtp_but_the_sender_is_qualified() {
    let pair = Pair::start().await;
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
    let both = pair.send(replay(&argv), CRONIE_MAIL.as_bytes()).await;
    both.assert_argv(
        "cronie_from_root_to_root_arrives_as_through_msmtp_but_the_sender_is_qualified",
        &argv,
    );
    // The documented difference: mailgate qualifies the bare `-f root`
    // with mailgate.sendmail.domain (here the sender's domain); msmtp has
    // no such option (its aliases are for recipients) and sends it bare.
    assert_eq!(both.mailgate.message.mail_from, "root@example.com");
    assert_eq!(both.msmtp.message.mail_from, "root");
    // The To: root recipient: qualified by mailgate, aliased by msmtp.
    for d in both.each() {
        assert_eq!(d.message.rcpt_to, ["root@example.com"], "{}", d.show());
    }
    both.assert_same_fields();
    // cronie writes a Content-Type without MIME-Version: mailgate adds it
    // (see assert_changes).
    assert_changes(&both.mailgate, &["Date", "MIME-Version", "Message-ID"], &[]);
    assert_changes(&both.msmtp, &["Date", "Message-ID"], &[]);
    both.assert_bodies_unchanged();
    both.assert_same_parts();
}

// ---------------------------------------------------------------------------
// logwatch (replayed)

/// The mail logwatch 7.7 writes through its `mailer` (`sendmail -t`, set in
/// /etc/logwatch/conf only): its header fields as a real run wrote them,
/// and a report with an unmatched log line of `long` bytes.
fn logwatch_mail(long: usize) -> String {
    let unmatched = format!("kernel: audit: {}", "x".repeat(long));
    format!(
        "To: root\n\
         From: root\n\
         Subject: Logwatch for build (Linux)\n\
         Auto-Submitted: auto-generated\n\
         Precedence: bulk\n\
         MIME-Version: 1.0\n\
         Content-Transfer-Encoding: 8bit\n\
         Content-Type: text/plain; charset=\"UTF-8\"\n\
         \n \n \
         ################### Logwatch 7.7 (07/22/22) #################### \n        \
         Processing Initiated: Tue Jan  2 03:10:01 2024\n        \
         Date Range Processed: yesterday\n        \
         Detail Level of Output: 10\n        \
         Type of Output/Format: mail / text\n        \
         Logfiles for Host: build\n \
         ################################################################## \n \n \
         --------------------- Kernel Begin ------------------------ \n\n \
         **Unmatched Entries**\n \
         {unmatched} : 1 Time\n \n \
         ---------------------- Kernel End ------------------------- \n\n \n \
         ###################### Logwatch End ######################### \n\n"
    )
}

#[tokio::test]
async fn logwatch_s_long_line_is_re_encoded_by_mailgate_and_sent_as_it_is_by_msmtp() {
    let pair = Pair::start().await;
    let message = logwatch_mail(1200);
    let longest = |data: &[u8]| {
        data.split(|&b| b == b'\n')
            .map(<[u8]>::len)
            .max()
            .unwrap_or(0)
    };
    assert!(longest(message.as_bytes()) > 1200);
    let argv = ["-t"];
    let both = pair.send(replay(&argv), message.as_bytes()).await;
    both.assert_argv(
        "logwatch_s_long_line_is_re_encoded_by_mailgate_and_sent_as_it_is_by_msmtp",
        &argv,
    );
    both.assert_envelope(SENDER, &["root@example.com"]);
    both.assert_same_fields();
    // The same text once decoded.
    let parts = both.assert_same_parts();
    assert_eq!(
        String::from_utf8_lossy(&parts[0].contents),
        crlf(message.split_once("\n\n").expect("body").1)
    );

    // msmtp sends the 1,200-byte line as it is (over RFC 5322's 998: a
    // strict server refuses it), adding only Date and Message-ID.
    assert!(longest(&both.msmtp.message.data) > 1200);
    assert!(both.msmtp.body_unchanged());
    assert_changes(&both.msmtp, &["Date", "Message-ID"], &[]);
    // mailgate re-encodes the body so that no line is longer than 998
    // bytes: its Content-Transfer-Encoding changes with it.
    assert!(
        longest(&both.mailgate.message.data) <= 1000,
        "{}",
        both.mailgate.show()
    );
    assert!(!both.mailgate.body_unchanged());
    assert_changes(
        &both.mailgate,
        &["Content-Transfer-Encoding", "Date", "Message-ID"],
        &["Content-Transfer-Encoding"],
    );
    assert_eq!(
        both.mailgate.message.header("Content-Transfer-Encoding"),
        Some("quoted-printable")
    );
}
