//! `mailgate::blocking::Mailer` against the development SMTP server: from a
//! plain `fn`, from inside both kinds of tokio runtime, through lettre's
//! `Transport` and `AsyncTransport` traits, and failing.
//!
//! The server runs on a runtime of its own, so that a test blocking its
//! thread (or having no runtime at all) does not stop it.

use std::net::{Ipv4Addr, TcpListener};
use std::ops::Deref;
use std::path::Path;

use mailgate::lettre::message::header::ContentType;
use mailgate::lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use mailgate::lettre::{self, Message};
use mailgate::{Error, Stage, blocking};
use mailgate_devserver::{DevSmtpServer, DevSmtpServerBuilder, Fault, Stage as ServerStage};
use tokio::runtime::Runtime;

const FROM: &str = "alm@example.com";

/// A dev server (open relay unless configured otherwise) on its own runtime.
struct Server {
    smtp: Option<DevSmtpServer>,
    runtime: Option<Runtime>,
}

impl Server {
    fn start() -> Self {
        Self::start_with(|b| b)
    }

    fn start_with(
        configure: impl FnOnce(DevSmtpServerBuilder) -> DevSmtpServerBuilder + Send + 'static,
    ) -> Self {
        // On a thread of its own: `block_on` panics inside a runtime.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("dev-smtp-server")
                .enable_all()
                .build()
                .expect("server runtime");
            let smtp = runtime
                .block_on(configure(DevSmtpServer::builder()).start())
                .expect("dev server starts");
            Server {
                smtp: Some(smtp),
                runtime: Some(runtime),
            }
        })
        .join()
        .expect("server thread")
    }
}

impl Deref for Server {
    type Target = DevSmtpServer;

    fn deref(&self) -> &DevSmtpServer {
        self.smtp.as_ref().expect("running")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.smtp.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A config folder for an open relay (neither AUTH flag) at `port`.
fn config(port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write_is(dir.path(), port);
    dir
}

fn write_is(dir: &Path, port: u16) {
    let is = format!(
        "mksis.logging.email.from={FROM}\n\
         mksis.logging.email.server.hostname=127.0.0.1\n\
         mksis.logging.email.server.port={port}\n\
         mailgate.smtp.timeoutSeconds=10\n"
    );
    std::fs::write(dir.join("is.properties"), is).expect("is.properties written");
}

/// The async mailer for `dir` (the facade's: every strategy of the
/// build), without environment overrides.
fn async_mailer(dir: &Path) -> mailgate::Mailer {
    mailgate::Mailer::builder()
        .config_dir(dir)
        .env_overrides(false)
        .build()
        .expect("mailer builds")
}

fn blocking_mailer(dir: &Path) -> blocking::Mailer {
    blocking::Mailer::new(async_mailer(dir).into_inner()).expect("runtime starts")
}

fn unused_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A lettre message with a CSV attachment.
fn with_attachment(subject: &str) -> Message {
    let csv = Attachment::new("build-42-report.csv".to_owned()).body(
        "test,result\nsmoke,passed\n".to_owned(),
        ContentType::parse("text/csv").expect("content type"),
    );
    Message::builder()
        .from(FROM.parse::<Mailbox>().expect("from"))
        .to("dev@example.com".parse::<Mailbox>().expect("to"))
        .subject(subject)
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain("report attached".to_owned()))
                .singlepart(csv),
        )
        .expect("message builds")
}

/// Code written against lettre's blocking transport, knowing nothing of mailgate.
fn deliver<T: lettre::Transport>(transport: &T, message: &Message) -> Result<T::Ok, T::Error> {
    transport.send(message)
}

/// Code written against lettre's async transport.
async fn deliver_async<T>(transport: &T, message: Message) -> Result<T::Ok, T::Error>
where
    T: lettre::AsyncTransport + Sync,
{
    transport.send(message).await
}

#[test]
fn sends_from_a_plain_fn_without_a_runtime() {
    let server = Server::start();
    let dir = config(server.port());
    let mailer = blocking::Mailer::from_config_dir(dir.path()).expect("mailer builds");
    assert_eq!(mailer.as_async().resolution().strategy, "open");
    assert_eq!(mailer.smtp_server(), "127.0.0.1");
    assert_eq!(mailer.smtp_port(), server.port());
    assert_eq!(
        mailer.mail_hostname_and_port(),
        format!("127.0.0.1:{}", server.port())
    );
    let debug = format!("{mailer:?}");
    assert!(debug.starts_with("blocking::Mailer(Mailer {"), "{debug}");

    let delivery = mailer
        .sendmail(
            FROM,
            "dev@example.com, qa@example.com",
            "Build 42",
            "passed",
        )
        .expect("sent");
    assert_eq!(delivery.recipients, 2);
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].mail_from, FROM);
    assert_eq!(messages[0].rcpt_to, ["dev@example.com", "qa@example.com"]);
    assert_eq!(messages[0].subject().as_deref(), Some("Build 42"));
    assert!(messages[0].data_str().contains("passed"));
    assert!(messages[0].auth.is_none(), "an open relay gets no AUTH");

    // The next call reuses the pooled connection; close says QUIT on it.
    let delivery = mailer
        .send_message(mailgate::OutgoingMessage {
            to: vec!["ops@example.com".into()],
            subject: "Build 43".into(),
            body: "failed".into(),
            ..Default::default()
        })
        .expect("sent");
    assert!(delivery.reused_connection);
    assert_eq!(server.message_count(), 2);
    assert_eq!(
        server.messages()[1].mail_from,
        FROM,
        "the configured sender"
    );
    assert_eq!(server.messages()[1].rcpt_to, ["ops@example.com"]);
    assert!(!server.commands().iter().any(|c| c.verb == "QUIT"));
    mailer.close();
    assert!(server.commands().iter().any(|c| c.verb == "QUIT"));
}

#[test]
fn from_files_reads_the_named_files() {
    let server = Server::start();
    let dir = config(server.port());
    let security = dir.path().join("security.properties");
    std::fs::write(&security, "").expect("security.properties written");
    let mailer =
        blocking::Mailer::from_files(dir.path().join("is.properties"), &security).expect("builds");
    assert_eq!(mailer.smtp_port(), server.port());
    let err = blocking::Mailer::from_files(dir.path().join("is.properties"), dir.path().join("x"))
        .expect_err("a named security file must exist");
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(!err.to_string().contains("--"), "no CLI flags: {err}");
}

#[tokio::test]
async fn works_and_drops_inside_a_current_thread_runtime() {
    let server = Server::start();
    let dir = config(server.port());
    let mailer = blocking_mailer(dir.path());
    mailer
        .sendmail(FROM, "dev@example.com", "from current_thread", "b")
        .expect("sent");
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].subject().as_deref(),
        Some("from current_thread")
    );
    // The test's own runtime keeps working around the blocking calls.
    let echoed = tokio::spawn(async { 7 }).await.expect("task runs");
    assert_eq!(echoed, 7);
    // Dropped here, with a pooled connection, inside the async context.
    drop(mailer);
    tokio::task::yield_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_and_drops_inside_a_multi_thread_runtime() {
    let server = Server::start();
    let dir = config(server.port());
    let mailer = std::sync::Arc::new(blocking_mailer(dir.path()));
    mailer
        .sendmail(FROM, "dev@example.com", "on a worker", "b")
        .expect("sent on a worker thread");
    let on_blocking_thread = std::sync::Arc::clone(&mailer);
    tokio::task::spawn_blocking(move || {
        on_blocking_thread.sendmail(FROM, "qa@example.com", "in spawn_blocking", "b")
    })
    .await
    .expect("no panic")
    .expect("sent from spawn_blocking");
    let subjects: Vec<_> = server
        .messages()
        .iter()
        .map(|m| (m.subject().unwrap_or_default(), m.rcpt_to.clone()))
        .collect();
    assert_eq!(
        subjects,
        [
            ("on a worker".to_owned(), vec!["dev@example.com".to_owned()]),
            (
                "in spawn_blocking".to_owned(),
                vec!["qa@example.com".to_owned()]
            ),
        ]
    );
    drop(mailer);
}

#[test]
fn lettre_transport_sends_a_message_with_an_attachment() {
    let server = Server::start();
    let dir = config(server.port());
    let mailer = blocking_mailer(dir.path());
    let delivery = deliver(&mailer, &with_attachment("report")).expect("sent");
    assert_eq!(delivery.recipients, 1);
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].rcpt_to, ["dev@example.com"]);
    assert_eq!(messages[0].subject().as_deref(), Some("report"));
    let data = messages[0].data_str();
    assert!(
        data.contains("multipart/mixed") && data.contains("filename=\"build-42-report.csv\""),
        "{data}"
    );
    // mailgate's completion, not lettre's plain formatting: a Message-ID.
    assert!(messages[0].header("Message-ID").is_some(), "{data}");

    // send_raw through the trait; then shutdown says QUIT and closes it.
    let envelope = lettre::address::Envelope::new(
        Some(FROM.parse().expect("from")),
        vec!["qa@example.com".parse().expect("to")],
    )
    .expect("envelope");
    lettre::Transport::send_raw(
        &mailer,
        &envelope,
        b"Subject: raw\r\nFrom: alm@example.com\r\n\r\nraw body\r\n",
    )
    .expect("raw sent");
    let subjects: Vec<_> = server
        .messages()
        .iter()
        .filter_map(|m| m.subject())
        .collect();
    assert_eq!(subjects, ["report", "raw"]);
    assert_eq!(server.messages()[1].rcpt_to, ["qa@example.com"]);
    assert!(server.messages()[1].data_str().contains("raw body"));

    lettre::Transport::shutdown(&mailer);
    assert!(server.commands().iter().any(|c| c.verb == "QUIT"));
    let err = deliver(&mailer, &with_attachment("after shutdown")).expect_err("closed");
    assert!(matches!(err, Error::Usage(_)), "{err:?}");
    assert_eq!(server.message_count(), 2);
}

#[tokio::test]
async fn lettre_async_transport_sends_through_the_async_mailer() {
    let server = Server::start();
    let dir = config(server.port());
    let mailer = async_mailer(dir.path());
    // The facade's mailer derefs to the core one, which implements the trait.
    let delivery = deliver_async(&*mailer, with_attachment("async report"))
        .await
        .expect("sent");
    assert_eq!(delivery.recipients, 1);
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].subject().as_deref(), Some("async report"));
    assert!(
        messages[0]
            .data_str()
            .contains("filename=\"build-42-report.csv\"")
    );
    lettre::AsyncTransport::shutdown(&*mailer).await;
    assert!(server.commands().iter().any(|c| c.verb == "QUIT"));
}

#[test]
fn nothing_listening_is_transient_at_connect() {
    let dir = config(unused_port());
    let mailer = blocking_mailer(dir.path());
    let err = mailer
        .sendmail(FROM, "dev@example.com", "s", "b")
        .expect_err("nothing listens");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.exit_code(), 75);
    assert_eq!(err.stage(), Some(Stage::Connect));
    assert_eq!(err.status(), None);
    // The socket error is kept as the source, not only as text.
    let source = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the io::Error is the source");
    assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
    // Through lettre's trait, the same error.
    let err = deliver(&mailer, &with_attachment("s")).expect_err("nothing listens");
    assert_eq!(err.stage(), Some(Stage::Connect));
}

#[test]
fn a_4xx_reply_is_transient_and_a_retry_succeeds() {
    let server = Server::start_with(|b| {
        b.fault(Fault::reply(ServerStage::Mail, 451, "4.3.0 Try again later").times(1))
    });
    let dir = config(server.port());
    let mailer = blocking_mailer(dir.path());
    let err = mailer
        .sendmail(FROM, "dev@example.com", "later", "b")
        .expect_err("451 at MAIL FROM");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.stage(), Some(Stage::Mail));
    assert_eq!(err.status(), Some(451));
    assert_eq!(err.enhanced_status(), Some((4, 3, 0)));
    assert!(server.messages().is_empty());

    mailer
        .sendmail(FROM, "dev@example.com", "later", "b")
        .expect("the retry goes through");
    assert_eq!(server.message_count(), 1);
}

#[test]
fn a_5xx_recipient_refusal_is_permanent_at_rcpt() {
    let server =
        Server::start_with(|b| b.fault(Fault::reply(ServerStage::Rcpt, 550, "5.1.1 User unknown")));
    let dir = config(server.port());
    let mailer = blocking_mailer(dir.path());
    let err = mailer
        .sendmail(FROM, "nobody@example.com", "s", "b")
        .expect_err("550 at RCPT TO");
    assert!(matches!(err, Error::Recipients { .. }), "{err:?}");
    assert!(err.is_permanent(), "{err}");
    assert_eq!(err.stage(), Some(Stage::Rcpt));
    assert_eq!(err.status(), Some(550));
    assert_eq!(err.enhanced_status(), Some((5, 1, 1)));
    assert!(server.messages().is_empty());
}

/// `send_raw_exact` from a plain `fn`: a signed message with a Bcc field
/// arrives byte for byte; a bare LF is refused with 65 and nothing is sent.
#[test]
fn send_raw_exact_from_a_plain_fn_keeps_every_byte() {
    let server = Server::start();
    let dir = config(server.port());
    let mailer = blocking_mailer(dir.path());
    let message = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s1;\r\n b=dGVzdA==\r\nFrom: alm@example.com\r\nTo: dev@example.com\r\nBcc: hidden@example.com\r\nSubject: signed\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n.dot\r\n";
    let envelope = lettre::address::Envelope::new(
        Some(FROM.parse().expect("from")),
        vec!["dev@example.com".parse().expect("to")],
    )
    .expect("envelope");
    let delivery = mailer
        .send_raw_exact(&envelope, message)
        .expect("sent as is");
    assert_eq!(delivery.message_id, None);
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].data, message, "byte for byte");

    let err = mailer
        .send_raw_exact(&envelope, b"Subject: lf\n\nbody\n")
        .expect_err("a bare LF is refused");
    assert_eq!(err.exit_code(), 65, "{err}");
    assert!(err.to_string().contains("bare LF"), "{err}");
    assert_eq!(server.messages().len(), 1, "nothing more sent");
    mailer.close();
}
