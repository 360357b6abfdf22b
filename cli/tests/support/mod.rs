//! Shared by `compose.rs`, `sendmail.rs`, `callers.rs` and others: an
//! open-relay dev server and its config folder, running a command with a
//! given stdin (piped bytes, empty, or closed), reading what the server
//! received, and the `sendmail` symlink real callers are pointed at.

// Each test file uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mail_parser::{Message, MessageParser, MimeHeaders};
use mailgate_devserver::{DevSmtpServer, ReceivedMessage};
use mailgate_integration_tests::ConfigDir;

/// `mksis.logging.email.from` in these tests.
pub const SENDER: &str = "alm@example.com";
/// A run that takes longer is killed and fails the test.
pub const KILL_AFTER: Duration = Duration::from_secs(60);

/// The dev server as an open relay: no TLS, no AUTH.
pub async fn relay() -> DevSmtpServer {
    DevSmtpServer::builder()
        .start()
        .await
        .expect("dev server starts")
}

/// An open-relay config folder for `server`, plus `extra` keys.
pub fn config(server: &DevSmtpServer, extra: &[(&str, &str)]) -> ConfigDir {
    config_for_port(server.port(), extra)
}

/// An open-relay config folder for any SMTP server on loopback `port`
/// (a Nodemailer or aiosmtpd peer), plus `extra` keys.
pub fn config_for_port(port: u16, extra: &[(&str, &str)]) -> ConfigDir {
    let port = port.to_string();
    let mut is = vec![
        ("mksis.smtp.oauth.authentication", "false"),
        ("mksis.smtp.authentication", "false"),
        ("mksis.smtp.ssl.enabled", "false"),
        ("mksis.logging.email.from", SENDER),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
        ("mksis.logging.email.server.port", port.as_str()),
        ("mailgate.smtp.timeoutSeconds", "10"),
    ];
    is.extend_from_slice(extra);
    ConfigDir::with_properties(&is, &[])
}

pub use mailgate_integration_tests::{Input, Run};

/// Runs `cmd` with `input` in a blocking thread (the dev server runs on the
/// test's runtime), measuring its wall and CPU time; a run longer than
/// [`KILL_AFTER`] is killed and fails.
pub async fn run(cmd: Command, input: Input) -> Run {
    tokio::task::spawn_blocking(move || {
        mailgate_integration_tests::run_command(
            cmd,
            input,
            mailgate_integration_tests::RunOptions {
                kill_after: KILL_AFTER,
                sample_rss: false,
            },
        )
    })
    .await
    .expect("runner thread")
}

/// The `mailgate` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailgate")
}

/// `mailgate --config-dir DIR ARGS...`, without `MAILGATE_CONFIG_DIR`.
pub fn mailgate_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--config-dir")
        .arg(dir)
        .args(args)
        .env_remove("MAILGATE_CONFIG_DIR");
    cmd
}

/// `mailgate --config-dir DIR ARGS...` with `input` on stdin.
pub async fn mailgate(dir: &ConfigDir, args: &[&str], input: Input) -> Run {
    run(mailgate_cmd(dir.path(), args), input).await
}

/// The one message the server received.
#[track_caller]
pub fn only_message(server: &DevSmtpServer) -> ReceivedMessage {
    let mut messages = server.messages();
    assert_eq!(messages.len(), 1, "messages received: {messages:#?}");
    messages.remove(0)
}

/// Neither a transaction nor a message reached the server.
#[track_caller]
pub fn assert_nothing_sent(server: &DevSmtpServer) {
    assert!(server.messages().is_empty(), "{:#?}", server.messages());
    let verbs: Vec<String> = server.commands().into_iter().map(|c| c.verb).collect();
    for verb in ["MAIL", "RCPT", "DATA"] {
        assert!(
            !verbs.iter().any(|v| v == verb),
            "{verb} was sent: {verbs:?}"
        );
    }
}

/// The received message, parsed.
#[track_caller]
pub fn parse(message: &ReceivedMessage) -> Message<'_> {
    MessageParser::default()
        .parse(&message.data)
        .unwrap_or_else(|| panic!("mail-parser cannot read:\n{}", message.data_str()))
}

/// `type/subtype` of a message or part, lower-case.
#[track_caller]
pub fn mime_type<'x>(part: &impl MimeHeaders<'x>) -> String {
    let ct = part.content_type().expect("a Content-Type");
    format!(
        "{}/{}",
        ct.ctype().to_ascii_lowercase(),
        ct.subtype().unwrap_or_default().to_ascii_lowercase()
    )
}

/// The addresses of an address header, in order.
pub fn addresses(address: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|a| a.address().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The header section of received data, up to the empty line.
pub fn head_of(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    text.split("\r\n\r\n").next().unwrap_or_default().to_owned()
}

/// The names of the header fields of `head`, in order.
pub fn field_names(head: &str) -> Vec<String> {
    head.split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_owned()))
        .collect()
}

/// How many header fields of `data` are called `name` (case-insensitive).
pub fn count_fields(data: &[u8], name: &str) -> usize {
    field_names(&head_of(data))
        .iter()
        .filter(|f| f.eq_ignore_ascii_case(name))
        .count()
}

/// The received data is `original` with exactly the fields `added` put in
/// front of it, and nothing else changed; it has one Date, one Message-ID
/// and one MIME-Version.
#[track_caller]
pub fn assert_intact(received: &ReceivedMessage, original: &str, added: &[&str]) {
    let data = received.data_str();
    let prefix = data.strip_suffix(original).unwrap_or_else(|| {
        panic!("the message changed; expected it to end with\n{original}\ngot\n{data}")
    });
    let mut names = field_names(prefix);
    names.sort_unstable();
    let mut want: Vec<String> = added.iter().map(|s| (*s).to_owned()).collect();
    want.sort_unstable();
    assert_eq!(names, want, "added in front:\n{prefix}");
    for name in ["Date", "Message-ID", "MIME-Version"] {
        assert_eq!(
            count_fields(&received.data, name),
            1,
            "{name} fields:\n{}",
            head_of(&received.data)
        );
    }
}

/// `text` with CRLF line ends turned into LF.
pub fn lf(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// `text` with LF line ends turned into CRLF.
pub fn crlf(text: &str) -> String {
    lf(text).replace('\n', "\r\n")
}

/// A temporary folder for input files, symlinks and repositories.
pub struct TempFiles(tempfile::TempDir);

impl TempFiles {
    pub fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, bytes).expect("file written");
        path
    }
}

/// A path as an argument.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A folder holding a symlink called `sendmail` to the binary under test.
pub fn sendmail_symlink() -> (TempFiles, PathBuf) {
    let files = TempFiles::new();
    let link = files.path().join("sendmail");
    std::os::unix::fs::symlink(bin(), &link).expect("symlink created");
    (files, link)
}

/// Where `program` is on the PATH, if it is.
pub fn which(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
