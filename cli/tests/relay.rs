//! `mailgate relay` end to end: the real binary, real clients (Python's
//! smtplib, swaks, a raw socket) and real upstream servers (Nodemailer's
//! smtp-server, the dev SMTP server and token endpoint).
//!
//! What it must keep: every message a client got 250 for arrives upstream
//! (also across `kill -9`), authenticated as configured; a message it cannot
//! store gets 451 and is not stored; the allow list, local AUTH and the
//! limits hold; reloads take effect or are refused keeping the old
//! settings; SIGTERM loses nothing half-way; rewriteFrom and the metrics
//! say what happened.

mod relay_support;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::time::{Duration, Instant};

use mailgate_devserver::{
    AuthInfo, DevSmtpServer, DevTokenEndpoint, Fault, Mechanism, ReceivedMessage, Stage,
};
use mailgate_integration_tests::{ConfigDir, PeerConfig, PeerKind, SmtpPeer, TestPki, unused_port};
use relay_support::{
    Client, Relay, SENDER, WAIT, blocking, mailgate, mailgate_cmd, message, poll, queue_all,
    queued_subjects, relay_folder, relay_properties, run, smtplib, submit, swaks, swaks_codes,
    write_is,
};

const PASSWORD: &str = "Upstream-Passw0rd!";
const CLIENT_ID: &str = "relay-client-id";
const CLIENT_SECRET: &str = "relay~client+secret";
const SCOPE: &str = "https://outlook.office365.com/.default";

/// Starts a dev SMTP server: an open relay, no TLS, no AUTH.
async fn dev_server() -> DevSmtpServer {
    DevSmtpServer::builder()
        .start()
        .await
        .expect("the dev SMTP server starts")
}

/// The sorted subjects of `messages`.
fn subjects(messages: &[ReceivedMessage]) -> Vec<String> {
    let mut s: Vec<String> = messages
        .iter()
        .map(|m| m.subject().unwrap_or_default())
        .collect();
    s.sort();
    s
}

/// `"{prefix} 0"` .. `"{prefix} {n-1}"`, sorted as strings.
fn numbered(prefix: &str, n: usize) -> Vec<String> {
    let mut s: Vec<String> = (0..n).map(|i| format!("{prefix} {i}")).collect();
    s.sort();
    s
}

/// Waits until the outbox holds `n` messages, all `sent`.
fn wait_all_sent(dir: &ConfigDir, n: usize) {
    poll(
        &format!("{n} messages sent in the outbox"),
        WAIT,
        || {
            let all = queue_all(dir.path());
            (all.len() == n && all.iter().all(|m| m["status"] == "sent")).then_some(())
        },
        || format!("{:#?}", queue_all(dir.path())),
    );
}

// ---------------------------------------------------------------------------
// 1. Real clients in, authenticated upstream out

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_and_swaks_arrive_authenticated_at_a_starttls_plain_upstream() {
    let pki = TestPki::new();
    let peer = blocking(|| {
        SmtpPeer::start(
            PeerKind::Node,
            PeerConfig::new()
                .starttls(&pki)
                .require_starttls()
                .auth(&["PLAIN"])
                .user(SENDER, PASSWORD),
        )
    });
    let dir = relay_folder(
        peer.port(),
        &[
            ("mksis.smtp.authentication", "true"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.emailfrom.password", PASSWORD),
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mailgate.smtp.ssl.caFile", "ca.pem"),
        ],
    );
    dir.write_file("ca.pem", pki.ca_cert_pem());
    let relay = Relay::start(dir.path());

    submit(relay.port(), "via smtplib", 3);
    let ran = swaks(
        relay.port(),
        &[
            "--from",
            SENDER,
            "--to",
            "qa@example.com,ops@example.com",
            "--header",
            "Subject: via swaks",
            "--body",
            "hello from swaks",
        ],
    );
    assert!(ran.status.success(), "swaks:\n{}", ran.stdout);
    let codes = swaks_codes(&ran);
    assert_eq!(
        codes,
        [220, 250, 250, 250, 250, 354, 250, 221],
        "swaks transcript:\n{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("queued as"), "{}", ran.stdout);

    let messages = blocking(|| peer.wait_for_messages(4, WAIT));
    assert_eq!(messages.len(), 4, "{messages:#?}");
    for m in &messages {
        assert!(m.secure, "delivered over TLS: {m:?}");
        assert_eq!(m.user.as_deref(), Some(SENDER), "authenticated: {m:?}");
        assert_eq!(m.method.as_deref(), Some("PLAIN"));
        assert_eq!(m.from, SENDER);
    }
    let mut got: Vec<String> = messages
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    got.sort();
    let mut want = numbered("via smtplib", 3);
    want.push("via swaks".into());
    want.sort();
    assert_eq!(got, want);
    let swaked = messages
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("via swaks"))
        .unwrap();
    assert_eq!(swaked.to, ["qa@example.com", "ops@example.com"]);
    assert!(swaked.body().contains("hello from swaks"), "{swaked:?}");
    let smtplibbed = messages
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("via smtplib 0"))
        .unwrap();
    assert_eq!(smtplibbed.to, ["dev@example.com"]);
    assert!(
        smtplibbed.body().contains("line 0 of the body"),
        "{smtplibbed:?}"
    );
    wait_all_sent(&dir, 4);
    let auths = peer.auth_attempts();
    assert!(
        !auths.is_empty() && auths.iter().all(|a| a.ok),
        "no refused AUTH: {auths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_upstream_twenty_messages_cost_one_token_fetch() {
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], unused_port()));
    let endpoint = DevTokenEndpoint::builder()
        .client(CLIENT_ID, CLIENT_SECRET)
        .allowed_scopes([SCOPE])
        .start()
        .await
        .expect("the token endpoint starts");
    let server = DevSmtpServer::builder()
        .starttls_required()
        .mechanisms([Mechanism::XOAuth2])
        .token_registry(endpoint.registry())
        .oauth_scope(SCOPE)
        .start()
        .await
        .expect("the dev SMTP server starts");
    let dir = relay_folder(
        server.port(),
        &[
            ("mksis.smtp.oauth.authentication", "true"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mailgate.smtp.ssl.caFile", "ca.pem"),
            ("mailgate.relay.metrics", &metrics_addr.to_string()),
        ],
    );
    server
        .ca()
        .write_ca_pem(dir.path().join("ca.pem"))
        .expect("the CA file");
    dir.write_security(&[
        ("mksis.security.smtp.oauth.clientID", CLIENT_ID),
        ("mksis.security.smtp.oauth.clientSecret", CLIENT_SECRET),
        (
            "mksis.security.smtp.oauth.tokenEndpointURL",
            &endpoint.url(),
        ),
        ("mksis.security.smtp.oauth.scope", SCOPE),
    ]);
    let relay = Relay::start(dir.path());
    // An operator looks at it: no reload, no new token cache.
    assert!(relay_line(&dir).contains("settings current"));
    mailgate(dir.path(), &["queue", "stats"]).assert_ok();

    submit(relay.port(), "oauth batch", 20);
    let messages = server.wait_for_messages(20, WAIT).await;
    assert_eq!(subjects(&messages), numbered("oauth batch", 20));
    for m in &messages {
        assert!(m.tls, "over TLS: {m:?}");
        assert_eq!(
            m.auth,
            Some(AuthInfo {
                mechanism: Mechanism::XOAuth2,
                user: SENDER.into()
            }),
            "{m:?}"
        );
        assert_eq!(m.mail_from, SENDER);
    }
    wait_all_sent(&dir, 20);
    assert_eq!(
        endpoint.request_count(),
        1,
        "one token request for the batch: {:?}",
        endpoint.requests()
    );
    assert_eq!(endpoint.issued_count(), 1);
    let (status, page) = blocking(|| http_get(metrics_addr, "/metrics"));
    assert_eq!(status, 200);
    assert_eq!(
        metric(&page, "mailgate_relay_token_fetches_total"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "mailgate_relay_delivered_total"),
        Some(20.0),
        "{page}"
    );
    assert!(
        server.auth_attempts().iter().all(|a| a.success),
        "{:?}",
        server.auth_attempts()
    );
    drop(relay);
    server.shutdown().await;
    endpoint.shutdown().await;
}

// ---------------------------------------------------------------------------
// 2. Durability

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_accepted_while_upstream_is_down_survive_kill_9() {
    let lease = [("mailgate.outbox.leaseSeconds", "2")];
    let dir = relay_folder(unused_port(), &lease);
    let mut relay = Relay::start(dir.path());
    // Each of the 50 got its own 250 (submit asserts it).
    submit(relay.port(), "durable", 50);
    // Killed once the worker has been at them (claims, failures recorded).
    poll(
        "the worker to try every message once",
        WAIT,
        || {
            let all = queue_all(dir.path());
            (all.len() == 50 && all.iter().all(|m| m["attempts"].as_u64() >= Some(1))).then_some(())
        },
        || format!("{:#?}", queue_all(dir.path())),
    );
    relay.kill9();
    drop(relay);
    // All stored, none delivered (there was nowhere to deliver to).
    let stored = queue_all(dir.path());
    assert_eq!(stored.len(), 50, "{stored:#?}");
    assert!(stored.iter().all(|m| m["status"] != "sent"), "{stored:#?}");

    // The upstream comes up on another port; the relay restarts with it.
    let server = dev_server().await;
    write_is(&dir, &relay_properties(server.port(), &lease));
    let _relay = Relay::start(dir.path());
    let messages = server.wait_for_messages(50, WAIT).await;
    assert_eq!(subjects(&messages), numbered("durable", 50));
    wait_all_sent(&dir, 50);
    assert_eq!(server.message_count(), 50, "none sent twice");
    server.shutdown().await;
}

/// The outbox files of `dir`.
fn outbox_files(dir: &ConfigDir) -> Vec<std::path::PathBuf> {
    [
        "mailgate-outbox.db",
        "mailgate-outbox.db-wal",
        "mailgate-outbox.db-shm",
    ]
    .iter()
    .map(|n| dir.path().join(n))
    .filter(|p| p.exists())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_outbox_refuses_to_start_and_loses_nothing() {
    let dir = relay_folder(unused_port(), &[]);
    // One message stored while the outbox is writable.
    let mut relay = Relay::start(dir.path());
    submit(relay.port(), "kept", 1);
    relay.signal(libc::SIGTERM);
    assert!(relay.wait_exit().success(), "{}", relay.log());
    drop(relay);

    // The folder and the database are root's, readable by all, writable by
    // none; the relay runs as nobody (root would ignore the modes).
    for f in outbox_files(&dir) {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    /// Gives the folder back on every way out of the test.
    struct Writable<'a>(&'a ConfigDir);
    impl Drop for Writable<'_> {
        fn drop(&mut self) {
            let _ = std::fs::set_permissions(self.0.path(), std::fs::Permissions::from_mode(0o755));
            for f in outbox_files(self.0) {
                let _ = std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    let writable = Writable(&dir);
    let mut cmd = mailgate_cmd(dir.path(), &["relay"]);
    // SAFETY: geteuid is always safe.
    if unsafe { libc::geteuid() } == 0 {
        // A copy of the binary nobody can reach, wherever the checkout is.
        cmd = mailgate_integration_tests::as_other_user(&cmd, 65534);
    }
    // A relay that could only answer 451 does not start: exit 74 (EX_IOERR),
    // naming the file and the cause, before it listens.
    let ran = run(cmd, b"");
    assert_eq!(ran.status.code(), Some(74), "{}", ran.stderr);
    assert!(ran.stderr.contains("mailgate-outbox.db"), "{}", ran.stderr);
    assert!(ran.stderr.contains("read-only"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("listening"), "{}", ran.stderr);
    drop(writable);

    assert_eq!(queued_subjects(dir.path()), ["kept 0"], "nothing lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_that_is_not_a_database_refuses_to_start_and_is_left_alone() {
    let dir = relay_folder(unused_port(), &[]);
    let garbage = b"this is not a database at all, not even close; ".repeat(200);
    let db = dir.write_file("mailgate-outbox.db", &garbage);
    let ran = mailgate(dir.path(), &["relay"]);
    assert_eq!(ran.status.code(), Some(74), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("not a SQLite database"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("move it aside"), "{}", ran.stderr);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the file is left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_451_for_that_message_and_keeps_serving() {
    let dir = relay_folder(unused_port(), &[]);
    // Writes beyond 512 KiB per file fail, as on a full disk (SIGXFSZ ignored).
    let mut cmd = mailgate_cmd(dir.path(), &["relay"]);
    // SAFETY: setrlimit and signal are async-signal-safe; in the child
    // before exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 512 * 1024,
                rlim_max: 512 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let relay = Relay::spawn(cmd);
    submit(relay.port(), "small before", 1);
    // About 1.5 MB: its WAL frames cannot be written.
    let report = smtplib(serde_json::json!({
        "port": relay.port(), "count": 1, "subject": "too big for the disk",
        "from": SENDER, "to": ["dev@example.com"], "body_lines": 75_000,
    }));
    assert_eq!(report.results, [451], "{report:?}");
    submit(relay.port(), "small after", 1);
    let log = relay.wait_log(0, "not queued");
    assert!(log.contains("mailgate-outbox.db"), "{log}");
    drop(relay);
    assert_eq!(
        queued_subjects(dir.path()),
        ["small after 0", "small before 0"]
    );
}

// ---------------------------------------------------------------------------
// 3. Allow list and AUTH

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_outside_the_allow_list_gets_554_at_connect() {
    let server = dev_server().await;
    let dir = relay_folder(server.port(), &[("mailgate.relay.allow", "10.0.0.0/8")]);
    let relay = Relay::start(dir.path());
    blocking(|| {
        let (mut client, (code, text)) = Client::connect(relay.addr);
        assert_eq!(code, 554, "{text}");
        assert!(text.contains("5.7.1"), "{text}");
        assert!(
            client.closed_within(Duration::from_secs(5)),
            "closed after the 554"
        );
    });
    let report = smtplib(serde_json::json!({
        "port": relay.port(), "count": 1, "subject": "refused",
        "from": SENDER, "to": ["dev@example.com"],
    }));
    let error = report.connect_error.unwrap_or_default();
    assert!(error.contains("554"), "smtplib refused at connect: {error}");
    let ran = swaks(relay.port(), &["--from", SENDER, "--to", "dev@example.com"]);
    assert!(!ran.status.success());
    assert_eq!(swaks_codes(&ran), [554], "{}", ran.stdout);
    drop(relay);
    assert!(queue_all(dir.path()).is_empty());
    assert_eq!(server.message_count(), 0);
    server.shutdown().await;
}

/// Adds `name` with `password` through `mailgate relay-user add`.
fn add_user(dir: &ConfigDir, name: &str, password: &str) {
    let ran = run(
        mailgate_cmd(dir.path(), &["relay-user", "add", name]),
        format!("{password}\n").as_bytes(),
    );
    ran.assert_ok();
    assert!(
        ran.stdout.contains(&format!("added user `{name}`")),
        "{}",
        ran.stdout
    );
    let file = dir.path().join("relay-users");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the users file is private");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("{name}:$argon2")), "{text}");
    assert!(!text.contains(password), "no password in the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_auth_without_tls_refuses_wrong_and_missing_credentials() {
    let server = dev_server().await;
    let dir = relay_folder(
        server.port(),
        &[("mailgate.relay.usersFile", "relay-users")],
    );
    add_user(&dir, "printer", "printer-Secret-1");
    let relay = Relay::start(dir.path());
    let spec = |user: Option<&str>, password: &str, subject: &str| {
        serde_json::json!({
            "port": relay.port(), "count": 1, "subject": subject,
            "from": SENDER, "to": ["dev@example.com"],
            "user": user, "password": password,
        })
    };

    // No TLS configured: AUTH is offered on the plain connection.
    let none = smtplib(spec(None, "", "no auth"));
    assert_eq!(none.auth_offered, "PLAIN LOGIN");
    assert_eq!(none.results, [530], "MAIL without AUTH: {none:?}");
    let wrong = smtplib(spec(Some("printer"), "printer-Secret-X", "wrong"));
    assert_eq!(wrong.auth, Some(535), "{wrong:?}");
    assert_eq!(wrong.results, [530], "{wrong:?}");
    let right = smtplib(spec(Some("printer"), "printer-Secret-1", "authenticated"));
    assert_eq!(right.auth, Some(235), "{right:?}");
    assert_eq!(right.results, [250], "{right:?}");
    let ran = swaks(
        relay.port(),
        &[
            "--from",
            SENDER,
            "--to",
            "dev@example.com",
            "--header",
            "Subject: swaks login",
            "--auth",
            "LOGIN",
            "--auth-user",
            "printer",
            "--auth-password",
            "printer-Secret-1",
        ],
    );
    assert!(ran.status.success(), "{}", ran.stdout);
    assert!(swaks_codes(&ran).contains(&235), "{}", ran.stdout);

    // A user added while it runs can log in: the users file is watched.
    add_user(&dir, "late", "late-Secret-3");
    poll(
        "the relay to take the new user",
        WAIT,
        || {
            (smtplib(spec(Some("late"), "late-Secret-3", "late user")).results == [250])
                .then_some(())
        },
        || relay.log(),
    );

    let messages = server.wait_for_messages(3, WAIT).await;
    assert_eq!(
        subjects(&messages),
        [
            "authenticated 0".to_owned(),
            "late user 0".to_owned(),
            "swaks login".to_owned()
        ]
    );
    wait_all_sent(&dir, 3);
    let log = relay.log();
    for secret in ["printer-Secret-1", "printer-Secret-X", "late-Secret-3"] {
        assert!(!log.contains(secret), "no password in the log:\n{log}");
    }
    drop(relay);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_auth_after_starttls_with_the_relays_certificate() {
    let pki = TestPki::new();
    let server = dev_server().await;
    let dir = relay_folder(
        server.port(),
        &[
            ("mailgate.relay.usersFile", "relay-users"),
            ("mailgate.relay.tls.certFile", "relay-cert.pem"),
            ("mailgate.relay.tls.keyFile", "relay-key.pem"),
        ],
    );
    dir.write_file("relay-cert.pem", pki.server_cert_pem());
    dir.write_file("relay-key.pem", pki.server_key_pem());
    add_user(&dir, "printer", "printer-Secret-1");
    let relay = Relay::start(dir.path());
    let ca = pki.ca_cert_path().display().to_string();

    // Before STARTTLS: no AUTH offered, AUTH and MAIL refused.
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        let ehlo = c.expect("EHLO client.example", 250);
        assert!(ehlo.contains("STARTTLS"), "{ehlo}");
        assert!(!ehlo.contains("AUTH"), "no AUTH before TLS: {ehlo}");
        let (code, text) = c.cmd("AUTH PLAIN AHByaW50ZXIAcHJpbnRlci1TZWNyZXQtMQ==");
        assert_eq!(code, 530, "{text}");
        let (code, text) = c.cmd(&format!("MAIL FROM:<{SENDER}>"));
        assert_eq!(code, 530, "{text}");
        assert!(text.contains("STARTTLS"), "{text}");
        c.expect("QUIT", 221);
    });
    let plain = smtplib(serde_json::json!({
        "port": relay.port(), "count": 1, "subject": "plain",
        "from": SENDER, "to": ["dev@example.com"],
        "user": "printer", "password": "printer-Secret-1",
    }));
    assert_eq!(
        plain.auth,
        Some(0),
        "AUTH not offered without TLS: {plain:?}"
    );
    assert_eq!(plain.results, [530], "{plain:?}");

    let tls = smtplib(serde_json::json!({
        "port": relay.port(), "count": 1, "subject": "after starttls",
        "from": SENDER, "to": ["dev@example.com"],
        "starttls": true, "cafile": ca,
        "user": "printer", "password": "printer-Secret-1",
    }));
    assert_eq!(tls.auth_offered, "");
    assert_eq!(tls.auth_offered_tls.as_deref(), Some("PLAIN LOGIN"));
    assert_eq!(tls.auth, Some(235), "{tls:?}");
    assert_eq!(tls.results, [250], "{tls:?}");
    let wrong = smtplib(serde_json::json!({
        "port": relay.port(), "count": 1, "subject": "wrong",
        "from": SENDER, "to": ["dev@example.com"],
        "starttls": true, "cafile": ca,
        "user": "printer", "password": "nope",
    }));
    assert_eq!(wrong.auth, Some(535), "{wrong:?}");
    assert_eq!(wrong.results, [530], "{wrong:?}");
    let ran = swaks(
        relay.port(),
        &[
            "--from",
            SENDER,
            "--to",
            "dev@example.com",
            "--header",
            "Subject: swaks tls",
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            &ca,
            "--auth",
            "PLAIN",
            "--auth-user",
            "printer",
            "--auth-password",
            "printer-Secret-1",
        ],
    );
    assert!(ran.status.success(), "{}", ran.stdout);
    assert!(swaks_codes(&ran).contains(&235), "{}", ran.stdout);

    let messages = server.wait_for_messages(2, WAIT).await;
    assert_eq!(
        subjects(&messages),
        ["after starttls 0".to_owned(), "swaks tls".to_owned()]
    );
    wait_all_sent(&dir, 2);
    drop(relay);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// 4. Limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_gets_552_and_is_not_stored() {
    let server = dev_server().await;
    let dir = relay_folder(server.port(), &[("mailgate.relay.maxMessageBytes", "2048")]);
    let relay = Relay::start(dir.path());
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        let ehlo = c.expect("EHLO client.example", 250);
        assert!(ehlo.lines().any(|l| l == "SIZE 2048"), "{ehlo}");
        // Declared too big: refused at MAIL.
        let (code, text) = c.cmd(&format!("MAIL FROM:<{SENDER}> SIZE=4096"));
        assert_eq!(code, 552, "{text}");
        // Undeclared: read to its end, then refused.
        c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
        c.expect("RCPT TO:<dev@example.com>", 250);
        c.expect("DATA", 354);
        // 10 KiB in lines of 64 characters (too big, each line fine).
        let big = message(
            "too big",
            &format!("{}\r\n", "0123456789abcdef".repeat(4)).repeat(160),
        );
        c.send(big.as_bytes()).unwrap();
        let (code, text) = c.cmd(".");
        assert_eq!(code, 552, "{text}");
        // The session goes on: a small one on the same connection.
        c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
        c.expect("RCPT TO:<dev@example.com>", 250);
        c.expect("DATA", 354);
        c.send(message("small", "fits").as_bytes()).unwrap();
        let (code, text) = c.cmd(".");
        assert_eq!(code, 250, "{text}");
        c.expect("QUIT", 221);
    });
    // smtplib declares SIZE: 552 at MAIL.
    let report = smtplib(serde_json::json!({
        "port": relay.port(), "count": 1, "subject": "too big smtplib",
        "from": SENDER, "to": ["dev@example.com"], "body_lines": 200,
    }));
    assert_eq!(report.results, [552], "{report:?}");
    let messages = server.wait_for_messages(1, WAIT).await;
    assert_eq!(subjects(&messages), ["small"]);
    wait_all_sent(&dir, 1);
    drop(relay);
    server.shutdown().await;
}

/// Writes `bytes` one per 200 ms from a thread until a write fails or
/// `stop` is set.
fn trickle(
    mut client_write: TcpStream,
    bytes: Vec<u8>,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<usize>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        let mut sent = 0;
        for b in bytes {
            if stopped.load(Ordering::Relaxed) || client_write.write_all(&[b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        sent
    });
    (stop, handle)
}

/// Trickles `bytes` (one per 200 ms) on `client`; the relay must answer
/// 421 4.4.2 and close within a few idle periods, while bytes still come.
fn assert_dropped_while_trickling(client: &mut Client, bytes: &[u8], idle: Duration) {
    let writer = client.try_clone_stream();
    let started = Instant::now();
    let (stop, handle) = trickle(writer, bytes.to_vec());
    client.set_read_timeout(Duration::from_secs(20));
    let (code, text) = client.reply();
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = handle.join().unwrap();
    assert_eq!(code, 421, "dropped with 421: {text}");
    assert!(text.contains("4.4.2"), "{text}");
    assert!(
        elapsed >= idle.mul_f32(0.9) && elapsed < idle * 5,
        "dropped after {elapsed:?} (idle {idle:?})"
    );
    assert!(sent < bytes.len(), "dropped while still trickling");
    assert!(client.closed_within(Duration::from_secs(5)), "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_session_of_many_messages_is_served_to_its_end() {
    // 400 messages over one connection: some 1200 commands, beyond the
    // relay's commands-per-session bound (1000), each transaction useful.
    let dir = relay_folder(unused_port(), &[]);
    let relay = Relay::start(dir.path());
    submit(relay.port(), "long session", 400);
    drop(relay);
    assert_eq!(queued_subjects(dir.path()).len(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_is_dropped_after_idle_seconds() {
    let server = dev_server().await;
    let dir = relay_folder(server.port(), &[("mailgate.relay.idleSeconds", "1")]);
    let relay = Relay::start(dir.path());
    let idle = Duration::from_secs(1);
    blocking(|| {
        // A command line trickling in (it would take 10 s).
        let mut c = Client::greeted(relay.addr);
        assert_dropped_while_trickling(
            &mut c,
            format!("EHLO {}\r\n", "x".repeat(45)).as_bytes(),
            idle,
        );
        // Message data trickling in, with and without line ends.
        for data in [vec![b'x'; 60], b"x\r\n".repeat(20)] {
            let mut c = Client::greeted(relay.addr);
            c.expect("EHLO client.example", 250);
            c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
            c.expect("RCPT TO:<dev@example.com>", 250);
            c.expect("DATA", 354);
            assert_dropped_while_trickling(&mut c, &data, idle);
        }
        // A silent client.
        let mut c = Client::greeted(relay.addr);
        c.set_read_timeout(Duration::from_secs(10));
        let started = Instant::now();
        let (code, text) = c.reply();
        assert_eq!(code, 421, "{text}");
        assert!(started.elapsed() < idle * 5, "{:?}", started.elapsed());
    });
    // Still serving; nothing of the trickles was stored.
    submit(relay.port(), "after the loris", 1);
    let messages = server.wait_for_messages(1, WAIT).await;
    assert_eq!(subjects(&messages), ["after the loris 0"]);
    wait_all_sent(&dir, 1);
    drop(relay);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_data_rate_is_a_property_and_zero_turns_it_off() {
    let server = dev_server().await;
    // No minimum: data trickling at 5 bytes/s, each byte within the idle
    // second, is taken to its end (with the default 500 it is dropped, see
    // the slow-loris test).
    let dir = relay_folder(
        server.port(),
        &[
            ("mailgate.relay.idleSeconds", "1"),
            ("mailgate.relay.minDataRate", "0"),
        ],
    );
    let relay = Relay::start(dir.path());
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        c.expect("EHLO client.example", 250);
        c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
        c.expect("RCPT TO:<dev@example.com>", 250);
        c.expect("DATA", 354);
        let data = b"Subject: trickled\r\n\r\nslow\r\n.\r\n".to_vec();
        let (_, handle) = trickle(c.try_clone_stream(), data.clone());
        c.set_read_timeout(Duration::from_secs(30));
        let (code, text) = c.reply();
        assert_eq!(handle.join().unwrap(), data.len(), "all of it was sent");
        assert_eq!(code, 250, "{text}");
    });
    let messages = server.wait_for_messages(1, WAIT).await;
    assert_eq!(subjects(&messages), ["trickled"]);
    drop(relay);
    server.shutdown().await;

    // A value that is not a rate, an allow list that allows nobody: exit 78
    // naming the key, before listening.
    for (key, value) in [
        ("mailgate.relay.minDataRate", "fast"),
        ("mailgate.relay.allow", " , "),
    ] {
        let dir = relay_folder(unused_port(), &[(key, value)]);
        let ran = run(mailgate_cmd(dir.path(), &["relay"]), b"");
        assert_eq!(ran.status.code(), Some(78), "{}", ran.stderr);
        assert!(ran.stderr.contains(key), "{}", ran.stderr);
        assert!(!ran.stderr.contains("listening"), "{}", ran.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_is_bounded_by_max_connections() {
    let server = dev_server().await;
    let dir = relay_folder(
        server.port(),
        &[
            ("mailgate.relay.maxConnections", "10"),
            ("mailgate.relay.idleSeconds", "20"),
        ],
    );
    let relay = Relay::start(dir.path());
    // Warm up: the outbox pools and the upstream connection exist.
    submit(relay.port(), "warm up", 1);
    server.wait_for_messages(1, WAIT).await;
    wait_all_sent(&dir, 1);
    let (threads_before, fds_before) = (relay.threads(), relay.fds());

    let (served, refused, silent, threads_during, fds_during) = blocking(|| {
        let mut clients: Vec<Client> = (0..200).map(|_| Client::connect_only(relay.addr)).collect();
        let mut served = Vec::new();
        let (mut refused, mut silent) = (0, 0);
        for (i, c) in clients.iter_mut().enumerate() {
            c.set_read_timeout(Duration::from_secs(10));
            match c.reply() {
                (220, _) => served.push(i),
                (421, text) => {
                    assert!(text.contains("4.7.0"), "{text}");
                    refused += 1;
                }
                (0, _) => silent += 1,
                (code, text) => panic!("connection {i}: {code} {text}"),
            }
        }
        let during = (relay.threads(), relay.fds());
        // The served sessions work, side by side.
        for &i in &served {
            clients[i].expect("NOOP", 250);
        }
        drop(clients);
        (served.len(), refused, silent, during.0, during.1)
    });
    eprintln!(
        "flood: {served} served, {refused} refused (421), {silent} closed silently; threads {threads_before} -> {threads_during}, fds {fds_before} -> {fds_during}"
    );
    assert_eq!(served, 10, "exactly maxConnections sessions at once");
    assert_eq!(served + refused + silent, 200);
    assert!(
        refused >= 100,
        "refused with 421: {refused}, silently closed: {silent}"
    );
    assert!(
        threads_during <= threads_before + 2,
        "threads {threads_before} -> {threads_during}"
    );
    assert!(
        fds_during <= fds_before + 10 + 128 + 8,
        "fds {fds_before} -> {fds_during}"
    );
    // Back to where it was once the clients are gone.
    poll(
        "the relay's fds back to their level before the flood",
        WAIT,
        || (relay.fds() <= fds_before + 2).then_some(()),
        || format!("{} fds, {fds_before} before", relay.fds()),
    );
    assert!(relay.threads() <= threads_before + 2);
    // And it still serves.
    submit(relay.port(), "after the flood", 1);
    let messages = server.wait_for_messages(2, WAIT).await;
    assert_eq!(
        subjects(&messages),
        ["after the flood 0".to_owned(), "warm up 0".to_owned()]
    );
    drop(relay);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// 5. Reload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_after_an_upstream_change_sends_later_mail_to_the_new_upstream() {
    let first = dev_server().await;
    let second = dev_server().await;
    let dir = relay_folder(first.port(), &[]);
    let relay = Relay::start_verbose(dir.path());
    submit(relay.port(), "to the first", 2);
    first.wait_for_messages(2, WAIT).await;
    wait_all_sent(&dir, 2);

    let mark = relay.log().len();
    write_is(&dir, &relay_properties(second.port(), &[]));
    relay.signal(libc::SIGHUP);
    relay.wait_log(mark, "settings reloaded");
    submit(relay.port(), "to the second", 3);
    let messages = second.wait_for_messages(3, WAIT).await;
    assert_eq!(subjects(&messages), numbered("to the second", 3));
    wait_all_sent(&dir, 5);
    assert_eq!(
        subjects(&first.messages()),
        numbered("to the first", 2),
        "nothing more to the old upstream"
    );
    drop(relay);
    first.shutdown().await;
    second.shutdown().await;
}

/// How many reloads the (verbose) log shows from byte `from` on.
fn reloads(relay: &Relay, from: usize) -> usize {
    relay.log()[from..]
        .matches("relay: settings reloaded")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_config_is_not_a_change_and_a_change_reloads_without_looping() {
    let server = dev_server().await;
    let dir = relay_folder(server.port(), &[]);
    let relay = Relay::start_verbose(dir.path());
    // Every command reads the folder; none of that is a change.
    assert!(relay_line(&dir).contains("settings current"));
    mailgate(dir.path(), &["queue", "list"]).assert_ok();
    let quiet = Duration::from_millis(1500);
    blocking(|| std::thread::sleep(quiet));
    assert_eq!(
        reloads(&relay, 0),
        0,
        "reloaded on a read:\n{}",
        relay.log()
    );

    // A change reloads, and the reload's own reading does not start another.
    let mark = relay.log().len();
    write_is(
        &dir,
        &relay_properties(server.port(), &[("mailgate.relay.maxRecipients", "7")]),
    );
    relay.wait_log(mark, "relay: settings reloaded");
    let settled = reloads(&relay, mark);
    blocking(|| std::thread::sleep(quiet));
    assert_eq!(
        reloads(&relay, mark),
        settled,
        "reloads go on by themselves:\n{}",
        &relay.log()[mark..]
    );
    submit(relay.port(), "after the change", 1);
    server.wait_for_messages(1, WAIT).await;
    drop(relay);
    server.shutdown().await;
}

/// `mailgate check`'s `relay:` line.
fn relay_line(dir: &ConfigDir) -> String {
    let ran = mailgate(dir.path(), &["check"]);
    ran.stdout
        .lines()
        .find(|l| l.starts_with("relay:"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "no relay: line ({})\nstdout:\n{}\nstderr:\n{}",
                ran.status, ran.stdout, ran.stderr
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_keeps_the_old_settings_and_check_says_so() {
    let server = dev_server().await;
    let dir = relay_folder(server.port(), &[("mailgate.relay.maxRecipients", "5")]);
    let relay = Relay::start(dir.path());
    let line = relay_line(&dir);
    assert!(
        line.contains(&format!("running (pid {})", relay.pid)) && line.contains("settings current"),
        "{line}"
    );

    let mark = relay.log().len();
    write_is(
        &dir,
        &relay_properties(server.port(), &[("mailgate.relay.maxRecipients", "abc")]),
    );
    relay.signal(libc::SIGHUP);
    let log = relay.wait_log(mark, "mailgate.relay.maxRecipients");
    assert!(log.contains("reload"), "{log}");
    assert!(
        log.contains("is.properties") && log.contains("`abc`"),
        "{log}"
    );
    assert!(log.contains("old settings"), "{log}");
    let line = poll(
        "check to report the failed reload",
        WAIT,
        || {
            let line = relay_line(&dir);
            line.contains("FAILED").then_some(line)
        },
        || relay_line(&dir),
    );
    assert!(line.contains("mailgate.relay.maxRecipients"), "{line}");

    // The old settings serve: at most 5 recipients, and mail goes through.
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        c.expect("EHLO client.example", 250);
        c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
        for i in 0..5 {
            c.expect(&format!("RCPT TO:<r{i}@example.com>"), 250);
        }
        let (code, text) = c.cmd("RCPT TO:<r5@example.com>");
        assert_eq!(code, 452, "the old limit holds: {text}");
        c.expect("DATA", 354);
        c.send(message("old settings", "still served").as_bytes())
            .unwrap();
        c.expect(".", 250);
        c.expect("QUIT", 221);
    });
    let messages = server.wait_for_messages(1, WAIT).await;
    assert_eq!(messages[0].rcpt_to.len(), 5);

    // Fixed: current again, with the new value.
    let mark = relay.log().len();
    write_is(
        &dir,
        &relay_properties(server.port(), &[("mailgate.relay.maxRecipients", "2")]),
    );
    relay.signal(libc::SIGHUP);
    poll(
        "check to report current settings",
        WAIT,
        || relay_line(&dir).contains("settings current").then_some(()),
        || format!("{}\n{}", relay_line(&dir), relay.log()),
    );
    assert!(
        !relay.log()[mark..].contains("failed"),
        "{}",
        &relay.log()[mark..]
    );
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        c.expect("EHLO client.example", 250);
        c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
        c.expect("RCPT TO:<a@example.com>", 250);
        c.expect("RCPT TO:<b@example.com>", 250);
        let (code, text) = c.cmd("RCPT TO:<c@example.com>");
        assert_eq!(code, 452, "the new limit holds: {text}");
        c.expect("QUIT", 221);
    });
    drop(relay);
    let line = relay_line(&dir);
    assert!(line.contains("not running"), "{line}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_a_reload_is_pending_until_the_relay_has_reloaded() {
    let server = dev_server().await;
    let dir = relay_folder(server.port(), &[]);
    let relay = Relay::start(dir.path());
    assert!(relay_line(&dir).contains("settings current"));
    // Stopped, it cannot reload; the change lands in a later second than
    // its last load (check compares whole seconds).
    relay.signal(libc::SIGSTOP);
    /// Lets it go on whatever happens.
    struct Cont(i32);
    impl Drop for Cont {
        fn drop(&mut self) {
            // SAFETY: kill(2) on the test's own child.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    let cont = Cont(relay.pid);
    let status: serde_json::Value =
        serde_json::from_str(&dir.read_file("mailgate-relay.status")).unwrap();
    let loaded = status["loaded"].as_u64().expect("loaded");
    poll(
        "a second later than the relay's load",
        WAIT,
        || {
            // A margin: file times come from a coarser clock.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            (now > u128::from(loaded + 1) * 1000 + 100).then_some(())
        },
        String::new,
    );
    write_is(
        &dir,
        &relay_properties(server.port(), &[("mailgate.relay.maxRecipients", "9")]),
    );
    let line = relay_line(&dir);
    assert!(line.contains("reload pending"), "{line}");
    drop(cont);
    poll(
        "check to report current settings",
        WAIT,
        || relay_line(&dir).contains("settings current").then_some(()),
        || relay_line(&dir),
    );
    drop(relay);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_delivery_in_hand_and_exits_0() {
    // Each delivery takes 1.5 s at the end of DATA upstream.
    let server = DevSmtpServer::builder()
        .fault(Fault::delay(Stage::DataEnd, Duration::from_millis(1500)))
        .start()
        .await
        .expect("the dev SMTP server starts");
    let dir = relay_folder(server.port(), &[("mailgate.smtp.maxConnections", "1")]);
    let mut relay = Relay::start(dir.path());
    submit(relay.port(), "in hand", 1);
    poll(
        "the delivery to reach DATA upstream",
        WAIT,
        || {
            server
                .commands()
                .iter()
                .any(|c| c.verb == "DATA")
                .then_some(())
        },
        || relay.log(),
    );
    relay.signal(libc::SIGTERM);
    let status = relay.wait_exit();
    assert!(status.success(), "{status}\n{}", relay.log());
    assert_eq!(
        server.message_count(),
        1,
        "the delivery in hand was finished"
    );
    let stored = queue_all(dir.path());
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["status"], "sent", "and recorded: not sent again");
    server.shutdown().await;
}

/// A key file with a fresh random key, mode 0600.
fn new_key_file(path: &std::path::Path) -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("random bytes");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(path, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    hex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_is_picked_up_and_mail_still_authenticates() {
    let server = DevSmtpServer::builder()
        .starttls_required()
        .mechanisms([Mechanism::Plain, Mechanism::Login])
        .user(SENDER, PASSWORD)
        .start()
        .await
        .expect("the dev SMTP server starts");
    let dir = relay_folder(
        server.port(),
        &[
            ("mksis.smtp.authentication", "true"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.emailfrom.password", PASSWORD),
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mailgate.smtp.ssl.caFile", "ca.pem"),
        ],
    );
    server
        .ca()
        .write_ca_pem(dir.path().join("ca.pem"))
        .expect("the CA file");
    mailgate(dir.path(), &["encrypt"]).assert_ok();
    let is_before = dir.read_file("is.properties");
    assert!(is_before.contains("ENC("), "{is_before}");
    assert!(!is_before.contains(PASSWORD));
    let key_before = dir.read_file("mailgate.key");

    let relay = Relay::start_verbose(dir.path());
    submit(relay.port(), "before rotation", 1);
    server.wait_for_messages(1, WAIT).await;

    let mark = relay.log().len();
    let new_key = dir.path().join("new.key");
    let hex = new_key_file(&new_key);
    let ran = mailgate(
        dir.path(),
        &["encrypt", "--rotate-key", new_key.to_str().unwrap()],
    );
    ran.assert_ok();
    let is_after = dir.read_file("is.properties");
    let key_after = dir.read_file("mailgate.key");
    assert_ne!(is_after, is_before, "re-encrypted");
    assert!(is_after.contains("ENC(") && !is_after.contains(PASSWORD));
    assert_ne!(key_after, key_before, "the key file holds the new key");
    assert!(key_after.contains(&hex));
    // The relay reloads on the change (no SIGHUP) and its settings are
    // current once the rotation is done.
    relay.wait_log(mark, "settings reloaded");
    poll(
        "the relay's settings current after the rotation",
        WAIT,
        || {
            let log = relay.log();
            let tail = &log[mark..];
            let last_ok = tail.rfind("settings reloaded");
            let last_failed = tail.rfind("reload (");
            (last_ok > last_failed && relay_line(&dir).contains("settings current")).then_some(())
        },
        || format!("{}\n{}", relay_line(&dir), &relay.log()[mark..]),
    );
    // The old key is gone: a folder that still decrypted with it would be
    // refused by a fresh `check`; the relay's settings come from the new one.
    mailgate(dir.path(), &["check"]).assert_ok();
    submit(relay.port(), "after rotation", 1);
    let messages = server.wait_for_messages(2, WAIT).await;
    assert_eq!(
        subjects(&messages),
        [
            "after rotation 0".to_owned(),
            "before rotation 0".to_owned()
        ]
    );
    for m in &messages {
        let auth = m.auth.as_ref().expect("authenticated");
        assert_eq!(auth.user, SENDER);
        assert!(m.tls);
    }
    assert!(
        server.auth_attempts().iter().all(|a| a.success),
        "{:?}",
        server.auth_attempts()
    );
    drop(relay);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// 6. SIGTERM

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_data_stores_all_of_the_message_or_nothing() {
    let server = dev_server().await;
    let dir = relay_folder(server.port(), &[]);
    let mut relay = Relay::start(dir.path());
    let addr = relay.addr;
    let (reply, idle_reply) = blocking(|| {
        let mut idle = Client::greeted(addr);
        idle.expect("EHLO idle.example", 250);
        let mut c = Client::greeted(addr);
        c.expect("EHLO client.example", 250);
        c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
        c.expect("RCPT TO:<dev@example.com>", 250);
        c.expect("DATA", 354);
        let whole = message("half and half", "first half\r\nsecond half");
        let (first, second) = whole.split_at(whole.find("second half").unwrap());
        c.send(first.as_bytes()).unwrap();
        // The relay has the first half (a NOOP would be data now: wait for
        // the listener to close instead, which says the SIGTERM arrived).
        std::thread::sleep(Duration::from_millis(200));
        relay.signal(libc::SIGTERM);
        poll(
            "the listener to close after SIGTERM",
            WAIT,
            || TcpStream::connect(addr).is_err().then_some(()),
            || relay.log(),
        );
        c.send(second.as_bytes()).unwrap();
        let reply = c.cmd(".");
        let idle_reply = idle.reply();
        (reply, idle_reply)
    });
    let status = relay.wait_exit();
    assert!(
        status.success(),
        "exit 0 after SIGTERM: {status}\n{}",
        relay.log()
    );
    assert!(
        relay.log().contains("mailgate relay: stopped"),
        "{}",
        relay.log()
    );
    assert_eq!(idle_reply.0, 421, "an idle session is told: {idle_reply:?}");
    assert!(idle_reply.1.contains("4.3.2"), "{idle_reply:?}");

    let stored = queue_all(dir.path());
    eprintln!("SIGTERM mid-DATA: the client got {reply:?}");
    match reply.0 {
        250 => {
            // Stored whole: in the outbox, and upstream if it went out.
            assert_eq!(stored.len(), 1, "{stored:#?}");
            assert_eq!(stored[0]["subject"], "half and half");
            for m in server.messages() {
                let data = m.data_str();
                assert!(
                    data.contains("first half\r\nsecond half"),
                    "whole upstream: {data}"
                );
            }
            // A restarted relay delivers what is left.
            let _relay = Relay::start(dir.path());
            let messages = server.wait_for_messages(1, WAIT).await;
            assert_eq!(subjects(&messages), ["half and half"]);
        }
        code => {
            assert!(
                stored.is_empty(),
                "no 250 ({code}), nothing stored: {stored:#?}"
            );
            assert_eq!(server.message_count(), 0);
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_right_after_the_listening_line_are_handled() {
    let dir = relay_folder(unused_port(), &[]);
    for _ in 0..3 {
        // SIGTERM the moment it says it listens: a clean stop.
        let mut relay = Relay::start(dir.path());
        relay.signal(libc::SIGTERM);
        let status = relay.wait_exit();
        assert!(status.success(), "{status}\n{}", relay.log());
        // SIGHUP the moment it says it listens: a reload, not the end.
        let mut relay = Relay::start(dir.path());
        relay.signal(libc::SIGHUP);
        blocking(|| std::thread::sleep(Duration::from_millis(500)));
        assert_eq!(
            relay.try_status(),
            None,
            "SIGHUP killed it:\n{}",
            relay.log()
        );
        Client::greeted(relay.addr).expect("QUIT", 221);
        relay.signal(libc::SIGTERM);
        let status = relay.wait_exit();
        assert!(status.success(), "{status}\n{}", relay.log());
    }
}

// ---------------------------------------------------------------------------
// 7. rewriteFrom

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_from_sends_as_the_configured_sender_with_the_author_in_reply_to() {
    let server = dev_server().await;
    let dir = relay_folder(server.port(), &[("mailgate.relay.rewriteFrom", "true")]);
    let relay = Relay::start(dir.path());
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        c.expect("EHLO printer.example", 250);
        c.expect("MAIL FROM:<scanner@legacy.example>", 250);
        c.expect("RCPT TO:<dev@example.com>", 250);
        c.expect("DATA", 354);
        c.send(
            b"From: Floor 3 Scanner <scanner@legacy.example>\r\nTo: dev@example.com\r\nSubject: scanned\r\n\r\nyour scan\r\n",
        )
        .unwrap();
        c.expect(".", 250);
        c.expect("QUIT", 221);
    });
    let m = &server.wait_for_messages(1, WAIT).await[0];
    assert_eq!(m.mail_from, SENDER, "envelope sender");
    let from: Vec<&str> = m.header_all("From").collect();
    assert_eq!(from.len(), 1, "one From: {from:?}");
    assert!(from[0].contains(SENDER), "{from:?}");
    assert!(!from[0].contains("legacy.example"), "{from:?}");
    let reply_to: Vec<&str> = m.header_all("Reply-To").collect();
    assert_eq!(reply_to, ["Floor 3 Scanner <scanner@legacy.example>"]);
    assert_eq!(m.header("Subject"), Some("scanned"));
    assert!(
        m.data_str().ends_with("\r\n\r\nyour scan\r\n"),
        "{}",
        m.data_str()
    );
    let stored = queue_all(dir.path());
    assert_eq!(stored[0]["from"], SENDER);
    drop(relay);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_from_leaves_one_from_and_one_reply_to_whatever_the_syntax() {
    let server = dev_server().await;
    let dir = relay_folder(server.port(), &[("mailgate.relay.rewriteFrom", "true")]);
    let relay = Relay::start(dir.path());
    let messages: [&[u8]; 2] = [
        // Obsolete syntax (RFC 5322 4.5.6): white space before the colon.
        b"From : CEO <ceo@legacy.example>\r\nTo: dev@example.com\r\nSubject: obsolete\r\n\r\nbody\r\n",
        // Two From fields.
        b"From: Scanner <scanner@legacy.example>\r\nTo: dev@example.com\r\nFrom: Printer <printer@legacy.example>\r\nSubject: two\r\n\r\nbody\r\n",
    ];
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        c.expect("EHLO printer.example", 250);
        for data in messages {
            c.expect("MAIL FROM:<scanner@legacy.example>", 250);
            c.expect("RCPT TO:<dev@example.com>", 250);
            c.expect("DATA", 354);
            c.send(data).unwrap();
            c.expect(".", 250);
        }
        c.expect("QUIT", 221);
    });
    let received = server.wait_for_messages(2, WAIT).await;
    let mut authors = Vec::new();
    for m in &received {
        // Read by a real parser, which takes the obsolete form as a From.
        let parsed = mail_parser::MessageParser::new()
            .parse(&m.data)
            .expect("a message");
        let fields = |name: &str| -> Vec<String> {
            parsed
                .headers_raw()
                .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
                .collect()
        };
        let from = fields("From");
        assert_eq!(from, [SENDER], "one From, the sender's:\n{}", m.data_str());
        let reply_to = fields("Reply-To");
        assert_eq!(reply_to.len(), 1, "one Reply-To:\n{}", m.data_str());
        authors.push(reply_to[0].replace("\r\n", ""));
    }
    authors.sort();
    assert_eq!(
        authors,
        [
            "CEO <ceo@legacy.example>",
            "Scanner <scanner@legacy.example>, Printer <printer@legacy.example>"
        ]
    );
    drop(relay);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// 8. Metrics

/// `GET path` on `addr`: status code and body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("the HTTP response");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of `name` in a Prometheus text page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    // The first MAIL upstream is deferred (451), the first RCPT refused for
    // good (550): of 4 messages, 3 delivered, 1 dead, 1 deferral.
    let server = DevSmtpServer::builder()
        .fault(Fault::reply(Stage::Mail, 451, "4.3.0 try later").times(1))
        .fault(Fault::reply(Stage::Rcpt, 550, "5.1.1 no such user").times(1))
        .start()
        .await
        .expect("the dev SMTP server starts");
    let metrics_port = unused_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let dir = relay_folder(
        server.port(),
        &[
            ("mailgate.relay.metrics", &metrics_addr),
            ("mailgate.relay.maxMessageBytes", "2048"),
        ],
    );
    let relay = Relay::start(dir.path());
    let addr: std::net::SocketAddr = metrics_addr.parse().unwrap();
    let page = poll(
        "the metrics endpoint",
        WAIT,
        || {
            let s = TcpStream::connect(addr).ok()?;
            drop(s);
            Some(blocking(|| http_get(addr, "/metrics")))
        },
        || relay.log(),
    );
    assert_eq!(page.0, 200);
    assert_eq!(
        metric(&page.1, "mailgate_relay_accepted_total"),
        Some(0.0),
        "{}",
        page.1
    );
    assert!(
        page.1
            .contains("# TYPE mailgate_relay_accepted_total counter"),
        "{}",
        page.1
    );

    submit(relay.port(), "counted", 4);
    // Refused ones are not accepted.
    let big = smtplib(serde_json::json!({
        "port": relay.port(), "count": 1, "subject": "too big",
        "from": SENDER, "to": ["dev@example.com"], "body_lines": 200,
    }));
    assert_eq!(big.results, [552]);
    server.wait_for_messages(3, WAIT).await;
    let page = poll(
        "the metrics to settle: 3 delivered, 1 dead, none queued",
        WAIT,
        || {
            let (_, page) = blocking(|| http_get(addr, "/metrics"));
            (metric(&page, "mailgate_relay_delivered_total") == Some(3.0)
                && metric(&page, "mailgate_relay_dead_total") == Some(1.0)
                && metric(&page, "mailgate_relay_queue_depth") == Some(0.0))
            .then_some(page)
        },
        || blocking(|| http_get(addr, "/metrics")).1,
    );
    for (name, want) in [
        ("mailgate_relay_accepted_total", 4.0),
        ("mailgate_relay_delivered_total", 3.0),
        ("mailgate_relay_deferred_total", 1.0),
        ("mailgate_relay_dead_total", 1.0),
        // One recipient a message: the recipient counts (from the worker's
        // outcome observer) equal the message counts.
        ("mailgate_relay_recipients_delivered_total", 3.0),
        ("mailgate_relay_recipients_deferred_total", 1.0),
        ("mailgate_relay_recipients_dead_total", 1.0),
        ("mailgate_relay_queue_depth", 0.0),
        ("mailgate_relay_dead_messages", 1.0),
        ("mailgate_relay_upstream_seconds_count", 5.0),
    ] {
        assert_eq!(metric(&page, name), Some(want), "{name}:\n{page}");
    }
    let upstream = metric(&page, "mailgate_relay_upstream_seconds_sum").expect("upstream time");
    assert!(upstream > 0.0 && upstream < 60.0, "{page}");
    assert!(
        metric(&page, "mailgate_relay_token_fetches_total").is_none(),
        "no tokens without OAuth:\n{page}"
    );
    let stats = mailgate(dir.path(), &["queue", "stats", "--json"]);
    let stats = stats.json();
    assert_eq!(
        (stats["sent"].as_u64(), stats["dead"].as_u64()),
        (Some(3), Some(1))
    );
    let (status, _) = blocking(|| http_get(addr, "/other"));
    assert_eq!(status, 404);
    drop(relay);
    server.shutdown().await;
}

/// Every test above goes through these; a typo in one would hide a bug.
#[test]
fn the_helpers_read_what_they_should() {
    assert_eq!(
        metric("# HELP a_total x\na_total 4\nab_total 5\n", "a_total"),
        Some(4.0)
    );
    assert_eq!(metric("a_total_sum 4\n", "a_total"), None);
    let set: BTreeSet<String> = numbered("x", 12).into_iter().collect();
    assert_eq!(set.len(), 12);
}

// ---------------------------------------------------------------------------
// 9. Trace fields and loops

/// A message with `hops` Received fields of earlier relays above its own.
fn with_hops(hops: usize, subject: &str) -> String {
    let mut data = String::new();
    for i in 0..hops {
        data.push_str(&format!(
            "Received: from hop{i}.example (hop{i}.example [192.0.2.{}])\r\n\tby next.example (Postfix) with ESMTP id H{i}; Mon, 07 Dec 2026 12:00:00 +0000\r\n",
            i % 250 + 1
        ));
    }
    data.push_str(&message(subject, "body"));
    data.push_str(".\r\n");
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_field_is_added_and_more_than_max_hops_are_refused() {
    let server = dev_server().await;
    let dir = relay_folder(server.port(), &[]);
    let relay = Relay::start(dir.path());
    blocking(|| {
        let mut c = Client::greeted(relay.addr);
        c.expect("EHLO printer.example", 250);
        for (hops, code) in [(50, 250), (51, 554)] {
            c.expect("MAIL FROM:<scanner@legacy.example>", 250);
            c.expect("RCPT TO:<dev@example.com>", 250);
            c.expect("DATA", 354);
            c.send(with_hops(hops, &format!("hops {hops}")).as_bytes())
                .unwrap();
            let (got, text) = c.reply();
            assert_eq!(got, code, "{hops} hops: {text}");
            if code == 554 {
                assert_eq!(text, "5.4.6 Too many hops");
            }
        }
        c.expect("QUIT", 221);
    });
    let m = &server.wait_for_messages(1, WAIT).await[0];
    assert_eq!(m.subject().as_deref(), Some("hops 50"));
    let parsed = mail_parser::MessageParser::new()
        .parse(&m.data)
        .expect("a message");
    assert_eq!(parsed.received_all().count(), 51);
    let first = parsed
        .received_all()
        .next()
        .expect("a Received field first");
    assert_eq!(
        first.from,
        Some(mail_parser::Host::Name("printer.example".into())),
        "{first:?}"
    );
    assert_eq!(first.from_ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(first.with, Some(mail_parser::Protocol::ESMTP));
    assert_eq!(first.for_.as_deref(), Some("dev@example.com"));
    assert!(first.by.is_some() && first.id.is_some(), "{first:?}");
    let date = first.date.as_ref().expect("a date");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((date.to_timestamp() - now).abs() < 300, "{date:?}");
    // The raw field: first, folded to 78 columns, naming this relay.
    let text = m.data_str();
    let field_end = text
        .find("\r\nReceived: from hop0")
        .expect("the older fields follow");
    let field = &text[..field_end];
    assert!(
        field.starts_with("Received: from printer.example (localhost [127.0.0.1]) by "),
        "{field}"
    );
    let unfolded = field.replace("\r\n\t", " ");
    assert!(unfolded.contains(" (mailgate) with ESMTP id "), "{field}");
    assert!(unfolded.contains(" for <dev@example.com>; "), "{field}");
    assert!(field.split("\r\n").all(|l| l.len() <= 78), "{field}");
    // Only the accepted one was stored.
    assert_eq!(queued_subjects(dir.path()), ["hops 50"]);
    drop(relay);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_the_relays_own_listener_is_refused_at_load() {
    let port = unused_port().to_string();
    for (host, listen, extra) in [
        ("127.0.0.1", "127.0.0.1", None),
        ("localhost", "127.0.0.1", None),
        (
            "127.0.0.1",
            "0.0.0.0",
            Some(("mailgate.relay.allow", "127.0.0.1")),
        ),
    ] {
        let listen = format!("{listen}:{port}");
        let mut keys = vec![
            ("mksis.logging.email.server.hostname", host),
            ("mailgate.relay.listen", listen.as_str()),
        ];
        keys.extend(extra);
        let dir = relay_folder(port.parse().unwrap(), &keys);
        let ran = mailgate(dir.path(), &["relay"]);
        assert_eq!(
            ran.status.code(),
            Some(78),
            "{host} -> {listen}: {}",
            ran.stderr
        );
        for key in [
            "mksis.logging.email.server.hostname",
            "mksis.logging.email.server.port",
            "mailgate.relay.listen",
        ] {
            assert!(ran.stderr.contains(key), "{key}: {}", ran.stderr);
        }
        assert!(ran.stderr.contains("loop"), "{}", ran.stderr);
    }
}

/// A TCP forwarder (Python) from a free port to `target`; killed on drop.
struct Forwarder {
    child: std::process::Child,
    port: u16,
}

impl Forwarder {
    fn start(target: u16) -> Forwarder {
        const SCRIPT: &str = r#"
import socket, sys, threading
target = int(sys.argv[1])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    client, _ = srv.accept()
    upstream = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
"#;
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(target.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the forwarder");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("piped stdout")),
            &mut line,
        )
        .expect("the forwarder's port");
        let port = line.trim().parse().expect("a port number");
        Forwarder { child, port }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sender other than the relay's configured one: its dead messages get a DSN.
const OTHER_SENDER: &str = "printer@example.com";

fn submit_as(port: u16, from: &str, subject: &str) {
    let report = smtplib(serde_json::json!({
        "port": port,
        "count": 1,
        "subject": subject,
        "from": from,
        "to": ["dev@example.com"],
    }));
    assert_eq!(report.results, [250], "{:?}", report.last_error);
}

/// The outbox entries of a loop: the copies of the submitted message and
/// the DSNs (null sender), each group with its distinct Message-IDs.
fn loop_census(all: &[serde_json::Value]) -> (usize, usize, std::collections::BTreeSet<String>) {
    let dsn = |m: &&serde_json::Value| m["from"] == "";
    let copies = all.iter().filter(|m| !dsn(m)).count();
    let dsns: Vec<_> = all.iter().filter(dsn).collect();
    let ids = dsns
        .iter()
        .map(|m| m["message_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    (copies, dsns.len(), ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_upstream_greets_with_its_own_instance_id_does_not_loop() {
    // The relay's listener, reached through a forwarder: the addresses
    // differ, only the EHLO reply tells the worker it is talking to itself.
    let port = unused_port();
    let forwarder = blocking(|| Forwarder::start(port));
    let listen = format!("127.0.0.1:{port}");
    let dir = relay_folder(forwarder.port, &[("mailgate.relay.listen", &listen)]);
    let relay = Relay::start(dir.path());
    submit_as(relay.port(), OTHER_SENDER, "to myself");
    // The message dies with a loop error; its DSN (to the sender, through
    // the same upstream) dies the same way and, sent by no one, ends there.
    let all = poll(
        "the message and its DSN dead with a loop error",
        WAIT,
        || {
            let all = queue_all(dir.path());
            (all.len() == 2 && all.iter().all(|m| m["status"] == "dead")).then_some(all)
        },
        || format!("{:#?}", queue_all(dir.path())),
    );
    for m in &all {
        let error = m["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("is this mailgate relay itself") && error.contains("loop"),
            "{error}"
        );
    }
    let (copies, dsns, _) = loop_census(&all);
    assert_eq!((copies, dsns), (1, 1), "{all:#?}");
    // Nothing more comes of it.
    blocking(|| std::thread::sleep(Duration::from_millis(1500)));
    assert_eq!(queue_all(dir.path()).len(), 2);
    drop(relay);
    drop(forwarder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_pointed_at_each_other_stop_the_loop_within_max_hops() {
    const MAX_HOPS: usize = 10;
    let (port_a, port_b) = (unused_port(), unused_port());
    let folder = |listen: u16, upstream: u16| {
        relay_folder(
            upstream,
            &[
                ("mailgate.relay.listen", &format!("127.0.0.1:{listen}")),
                ("mailgate.relay.maxHops", &MAX_HOPS.to_string()),
            ],
        )
    };
    let (dir_a, dir_b) = (folder(port_a, port_b), folder(port_b, port_a));
    let relay_a = Relay::start(dir_a.path());
    let relay_b = Relay::start(dir_b.path());
    submit_as(relay_a.port(), OTHER_SENDER, "round and round");
    let both = || {
        let mut all = queue_all(dir_a.path());
        all.extend(queue_all(dir_b.path()));
        all
    };
    // Every copy was stored with one more Received field: 1 to MAX_HOPS
    // + 1; the last is refused by the next relay and becomes dead. Its DSN
    // (a new message, null sender) loops the same way and dies unanswered.
    // The two outboxes are read one after the other: a copy handed from
    // one to the other in between can be missed, so the end is two
    // settled reads in a row that agree.
    let settled = |all: &[serde_json::Value]| {
        let dead = all.iter().filter(|m| m["status"] == "dead").count();
        let sent = all.iter().filter(|m| m["status"] == "sent").count();
        dead == 2 && dead + sent == all.len()
    };
    let all = poll(
        "the loop and its DSN's loop to end",
        WAIT,
        || {
            let first = both();
            let second = both();
            (settled(&first) && first.len() == second.len()).then_some(second)
        },
        || format!("{:#?}", both()),
    );
    let (copies, dsns, dsn_ids) = loop_census(&all);
    assert_eq!(copies, MAX_HOPS + 1, "{all:#?}");
    // The DSN's first entry is the one the outbox wrote (no Received
    // field yet); then it travels as far as the message did.
    assert_eq!(dsns, MAX_HOPS + 2, "{all:#?}");
    assert_eq!(dsn_ids.len(), 1, "one DSN, relayed: {dsn_ids:?}");
    for dead in all.iter().filter(|m| m["status"] == "dead") {
        let error = dead["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("554") && error.contains("5.4.6"), "{error}");
    }
    // Nothing grows afterwards: both outboxes stay as they are for longer
    // than a retry interval (1 s here).
    blocking(|| std::thread::sleep(Duration::from_millis(1500)));
    assert_eq!(both().len(), 2 * MAX_HOPS + 3);
    drop(relay_a);
    drop(relay_b);
}
