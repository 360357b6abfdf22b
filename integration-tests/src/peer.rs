//! Real SMTP servers as test peers, in child processes.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};

use crate::install::{ensure_installed, peers_dir};
use crate::pki::TestPki;

/// How long [`SmtpPeer::start`] waits for the peer's `LISTENING` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which third-party SMTP server runs the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// Nodemailer's `smtp-server` (npm), `peers/node/smtp-peer.mjs`.
    /// AUTH PLAIN, LOGIN, XOAUTH2 (and CRAM-MD5); no OAUTHBEARER.
    Node,
    /// Python's `aiosmtpd` (PyPI), `peers/python/smtp_peer.py`.
    /// AUTH PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER.
    Python,
}

impl PeerKind {
    /// Both kinds, for tests that run against each.
    pub const ALL: [PeerKind; 2] = [PeerKind::Node, PeerKind::Python];

    pub(crate) fn install_arg(self) -> &'static str {
        match self {
            PeerKind::Node => "node",
            PeerKind::Python => "python",
        }
    }
}

impl fmt::Display for PeerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerKind::Node => "Node (smtp-server)",
            PeerKind::Python => "Python (aiosmtpd)",
        })
    }
}

/// A peer failed to install or start. The message includes the peer's
/// stderr or the installer's output.
#[derive(Debug, Clone)]
pub struct PeerError(String);

impl PeerError {
    pub(crate) fn new(message: String) -> PeerError {
        PeerError(message)
    }
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerError {}

/// What the peer server does. Serialised as the JSON config both peer
/// scripts take (camelCase field names); the default is an open relay on
/// plain SMTP that advertises no AUTH.
///
/// Builder methods set one thing each:
/// `PeerConfig::new().starttls(&pki).auth(&["PLAIN"]).user("u", "p")`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerConfig {
    /// Port to listen on; 0 (default) picks a free one.
    pub port: u16,
    /// Implicit TLS (SMTPS, like port 465).
    pub secure: bool,
    /// PEM key file for TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// PEM certificate file for TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Offer STARTTLS (when false it is neither advertised nor accepted).
    pub starttls: bool,
    /// Refuse mail with 530 until STARTTLS is done (Node: MAIL FROM;
    /// Python: every command but EHLO/HELO/NOOP/QUIT/STARTTLS).
    pub require_starttls: bool,
    /// AUTH mechanisms offered, e.g. `["PLAIN", "LOGIN", "XOAUTH2"]`; empty
    /// means no AUTH at all (open relay). When non-empty AUTH is required
    /// unless `auth_optional`.
    pub auth_methods: Vec<String>,
    /// AUTH offered but not required.
    pub auth_optional: bool,
    /// Accept AUTH before STARTTLS even though STARTTLS is offered.
    pub allow_insecure_auth: bool,
    /// user -> password, for PLAIN and LOGIN.
    pub users: BTreeMap<String, String>,
    /// user -> accepted access tokens, for XOAUTH2 and OAUTHBEARER.
    pub tokens: BTreeMap<String, Vec<String>>,
    /// Scope named in the OAuth error challenge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Refuse the first n otherwise valid AUTH attempts (counted over the
    /// peer's life, all connections).
    pub refuse_first_auth: u32,
    /// Close connections idle this long (Node peer only; default 60 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_timeout_ms: Option<u64>,
    /// Reply code for every MAIL FROM (e.g. 451, 550).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_mail: Option<u16>,
    /// Reply code for every RCPT TO.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_rcpt: Option<u16>,
    /// Reply code after DATA (the message is then not recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_data: Option<u16>,
    /// Reply code for RCPT TO of these addresses only.
    pub fail_rcpt_for: BTreeMap<String, u16>,
    /// Python peer: advertise PIPELINING (aiosmtpd handles pipelined
    /// commands in order but does not advertise it by itself). Nodemailer's
    /// smtp-server always advertises it.
    pub pipelining: bool,
    /// Do not advertise 8BITMIME (RFC 6152): a 7-bit server.
    #[serde(rename = "hide8bitmime")]
    pub hide_8bitmime: bool,
    /// Do not advertise SMTPUTF8 (RFC 6531).
    pub hide_smtputf8: bool,
}

impl PeerConfig {
    /// An open relay on plain SMTP, no AUTH advertised.
    pub fn new() -> PeerConfig {
        PeerConfig::default()
    }

    /// Listen on this port instead of an ephemeral one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Use this certificate and key (PEM files) for TLS.
    pub fn tls_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }

    /// Implicit TLS with `pki`'s server certificate.
    pub fn implicit_tls(self, pki: &TestPki) -> Self {
        let mut cfg = self.tls_files(pki.server_cert_path(), pki.server_key_path());
        cfg.secure = true;
        cfg
    }

    /// Offer STARTTLS with `pki`'s server certificate.
    pub fn starttls(self, pki: &TestPki) -> Self {
        let mut cfg = self.tls_files(pki.server_cert_path(), pki.server_key_path());
        cfg.starttls = true;
        cfg
    }

    /// Refuse mail until STARTTLS is done (needs [`starttls`](Self::starttls)).
    pub fn require_starttls(mut self) -> Self {
        self.require_starttls = true;
        self
    }

    /// Offer (and require) these AUTH mechanisms.
    pub fn auth(mut self, methods: &[&str]) -> Self {
        self.auth_methods = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        self
    }

    /// Make AUTH optional.
    pub fn auth_optional(mut self) -> Self {
        self.auth_optional = true;
        self
    }

    /// Accept AUTH on a plain connection even when STARTTLS is offered.
    pub fn allow_insecure_auth(mut self) -> Self {
        self.allow_insecure_auth = true;
        self
    }

    /// Accept `user` with `password` (PLAIN, LOGIN).
    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.users.insert(user.to_owned(), password.to_owned());
        self
    }

    /// Accept `token` for `user` (XOAUTH2, OAUTHBEARER); may be repeated.
    pub fn token(mut self, user: &str, token: &str) -> Self {
        self.tokens
            .entry(user.to_owned())
            .or_default()
            .push(token.to_owned());
        self
    }

    /// Scope named in the OAuth error challenge.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_owned());
        self
    }

    /// Close connections that stay idle for `after` (Node peer only).
    pub fn idle_timeout(mut self, after: std::time::Duration) -> Self {
        self.socket_timeout_ms = Some(after.as_millis() as u64);
        self
    }

    /// Refuse the first `n` otherwise valid AUTH attempts.
    pub fn refuse_first_auth(mut self, n: u32) -> Self {
        self.refuse_first_auth = n;
        self
    }

    /// Answer every MAIL FROM with `code`.
    pub fn fail_mail(mut self, code: u16) -> Self {
        self.fail_mail = Some(code);
        self
    }

    /// Answer every RCPT TO with `code`.
    pub fn fail_rcpt(mut self, code: u16) -> Self {
        self.fail_rcpt = Some(code);
        self
    }

    /// Answer RCPT TO of `address` (only) with `code`.
    pub fn fail_rcpt_for(mut self, address: &str, code: u16) -> Self {
        self.fail_rcpt_for.insert(address.to_owned(), code);
        self
    }

    /// Advertise neither 8BITMIME nor SMTPUTF8: a 7-bit, ASCII-only server.
    pub fn seven_bit(mut self) -> Self {
        self.hide_8bitmime = true;
        self.hide_smtputf8 = true;
        self
    }

    /// Advertise 8BITMIME but not SMTPUTF8.
    pub fn no_smtputf8(mut self) -> Self {
        self.hide_smtputf8 = true;
        self
    }

    /// Python peer: advertise PIPELINING.
    pub fn pipelining(mut self) -> Self {
        self.pipelining = true;
        self
    }

    /// Answer the end of DATA with `code`.
    pub fn fail_data(mut self, code: u16) -> Self {
        self.fail_data = Some(code);
        self
    }

    /// The JSON the peer scripts take as their argument.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("PeerConfig serialises")
    }
}

/// One AUTH attempt the peer judged (passwords and tokens are never recorded).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuthAttempt {
    /// Connection number (1, 2, ... in accept order).
    pub conn: u64,
    /// `PLAIN`, `LOGIN`, `XOAUTH2`, `OAUTHBEARER`, ...
    pub method: String,
    /// The user name the client sent.
    pub user: Option<String>,
    /// Accepted?
    pub ok: bool,
    /// Why refused: `"invalid"` (wrong credentials) or `"refuseFirstAuth"`.
    pub reason: Option<String>,
}

/// A message the peer accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReceivedMessage {
    /// Connection number it came on.
    pub conn: u64,
    /// Envelope sender (MAIL FROM); empty for the null sender.
    #[serde(deserialize_with = "null_as_empty")]
    pub from: String,
    /// Envelope recipients (RCPT TO), in order.
    pub to: Vec<String>,
    /// Was the connection encrypted (implicit TLS or after STARTTLS)?
    pub secure: bool,
    /// Authenticated user, if any.
    pub user: Option<String>,
    /// AUTH mechanism used, if any.
    pub method: Option<String>,
    /// MAIL FROM parameters as the server parsed them, keys upper-case:
    /// `KEY=value` or `KEY` (e.g. `["BODY=8BITMIME", "SMTPUTF8", "SIZE=312"]`),
    /// in the order sent (Python) or first-seen order (Node).
    #[serde(default)]
    pub mail_options: Vec<String>,
    /// The full message text (headers and body) as sent after DATA, with
    /// dot-stuffing removed, as UTF-8 text: lossy (U+FFFD) for 8-bit bytes
    /// that are not UTF-8. [`raw`](Self::raw) has the exact bytes.
    pub data: String,
    /// The message exactly as the server received it after DATA: with
    /// dot-stuffing removed and without the terminating `.` line, every
    /// other byte as it came (the peers send it as base64).
    #[serde(default, deserialize_with = "base64_bytes")]
    pub raw: Vec<u8>,
}

impl ReceivedMessage {
    /// The header section (before the first empty line).
    pub fn headers(&self) -> &str {
        self.split().0
    }

    /// The body (after the first empty line).
    pub fn body(&self) -> &str {
        self.split().1
    }

    /// The first header named `name` (case-insensitive), unfolded, without
    /// the name. Encoded words are not decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut found: Option<String> = None;
        for line in self.headers().lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = found.as_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.trim().eq_ignore_ascii_case(name)
            {
                found = Some(v.trim().to_owned());
            }
        }
        found
    }

    fn split(&self) -> (&str, &str) {
        for sep in ["\r\n\r\n", "\n\n"] {
            if let Some(i) = self.data.find(sep) {
                return (&self.data[..i], &self.data[i + sep.len()..]);
            }
        }
        (&self.data, "")
    }
}

/// The null sender as both peers report it (Node: null, aiosmtpd: `<>`).
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let from = Option::<String>::deserialize(d)?.unwrap_or_default();
    Ok(if from == "<>" { String::new() } else { from })
}

fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    use base64::Engine as _;
    let text = Option::<String>::deserialize(d)?.unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(serde::de::Error::custom)
}

/// One line of the peer's event log (its stdout).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum PeerEvent {
    /// A client connected (`secure`: implicit TLS).
    Connect {
        /// Connection number.
        conn: u64,
        /// Implicit TLS?
        secure: bool,
    },
    /// TLS is up on the connection (after STARTTLS, or implicit TLS).
    Tls {
        /// Connection number.
        conn: u64,
    },
    /// An AUTH attempt was judged.
    Auth(AuthAttempt),
    /// A message was accepted.
    Message(ReceivedMessage),
    /// The connection closed.
    Close {
        /// Connection number.
        conn: u64,
    },
    /// The server reported an error (e.g. a failed TLS handshake).
    Error {
        /// Connection number, when known.
        conn: Option<u64>,
        /// The server's error text.
        message: String,
    },
}

#[derive(Default)]
struct State {
    port: Option<u16>,
    events: Vec<PeerEvent>,
    /// stdout lines that were neither `LISTENING` nor an event
    unparsed: Vec<String>,
    stderr: String,
    stdout_closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking reader thread must not hide the log from the test.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// A running third-party SMTP server on 127.0.0.1, killed on drop.
///
/// Everything it does is recorded from its stdout event log by a background
/// thread, so right after a client call the latest events may still be in
/// flight: use the `wait_for_*` methods, which block until enough events
/// arrived (they block the calling thread; call them once the client is
/// done, also from async tests). The snapshot methods (`messages`,
/// `auth_attempts`, `connections`) then give exact counts.
///
/// If the test panics while a peer is alive, the peer's log and stderr are
/// printed when it is dropped.
pub struct SmtpPeer {
    kind: PeerKind,
    port: u16,
    child: Child,
    // Held open: the peer exits when this pipe closes, so it never outlives
    // the test process even if that is killed.
    _stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    config_json: String,
}

impl SmtpPeer {
    /// Installs the peer if needed, starts it with `config`, and waits until
    /// it listens. Panics (with the peer's stderr) if any of that fails.
    pub fn start(kind: PeerKind, config: PeerConfig) -> SmtpPeer {
        SmtpPeer::try_start(kind, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`start`](Self::start), returning the failure instead of panicking.
    pub fn try_start(kind: PeerKind, config: PeerConfig) -> Result<SmtpPeer, PeerError> {
        ensure_installed(kind)?;
        let config_json = config.to_json();
        let mut value: serde_json::Value =
            serde_json::from_str(&config_json).expect("config JSON round-trips");
        value["watchStdin"] = serde_json::Value::Bool(true);
        let arg = value.to_string();

        let peers = peers_dir();
        let mut cmd = match kind {
            PeerKind::Node => {
                let dir = peers.join("node");
                let mut cmd = Command::new(env_or("MAILGATE_TEST_NODE", "node"));
                cmd.arg(dir.join("smtp-peer.mjs")).current_dir(dir);
                cmd
            }
            PeerKind::Python => {
                let dir = peers.join("python");
                let mut cmd = Command::new(env_or("MAILGATE_TEST_PYTHON", "python3"));
                cmd.arg(dir.join("smtp_peer.py"))
                    .env("PYTHONPATH", dir.join(".deps"))
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .env("PYTHONNOUSERSITE", "1")
                    .current_dir(dir);
                cmd
            }
        };
        cmd.arg(&arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| PeerError::new(format!("cannot start the {kind} SMTP peer: {e}")))?;

        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_stdout_reader(stdout, shared.clone());
        spawn_stderr_reader(stderr, shared.clone());

        let deadline = Instant::now() + START_TIMEOUT;
        let mut state = shared.lock();
        loop {
            if let Some(port) = state.port {
                drop(state);
                return Ok(SmtpPeer {
                    kind,
                    port,
                    _stdin: child.stdin.take(),
                    child,
                    shared,
                    config_json,
                });
            }
            let now = Instant::now();
            if state.stdout_closed || now >= deadline {
                let why = if state.stdout_closed {
                    "exited before listening"
                } else {
                    "did not listen in time"
                };
                drop(state);
                let _ = child.kill();
                let status = child.wait().ok();
                // Let the stderr reader catch the last words.
                thread::sleep(Duration::from_millis(50));
                let state = shared.lock();
                return Err(PeerError::new(format!(
                    "the {kind} SMTP peer {why} (exit: {status:?})\nconfig: {arg}\n\
                     --- stderr ---\n{}\n--- stdout ---\n{}",
                    state.stderr,
                    state.unparsed.join("\n"),
                )));
            }
            state = shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Which server this is.
    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    /// The address it listens on: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The JSON config it was started with.
    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<PeerEvent> {
        self.shared.lock().events.clone()
    }

    /// Messages accepted so far.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        messages_of(&self.shared.lock().events)
    }

    /// AUTH attempts judged so far.
    pub fn auth_attempts(&self) -> Vec<AuthAttempt> {
        auths_of(&self.shared.lock().events)
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        count(&self.shared.lock().events, |e| {
            matches!(e, PeerEvent::Connect { .. })
        })
    }

    /// Number of connections closed so far.
    pub fn closed_connections(&self) -> usize {
        count(&self.shared.lock().events, |e| {
            matches!(e, PeerEvent::Close { .. })
        })
    }

    /// What the peer wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.shared.lock().stderr.clone()
    }

    /// Waits until at least `n` messages were accepted; returns all of them.
    /// Panics with the peer's log on timeout.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        messages_of(&self.wait_until(&format!("{n} message(s)"), timeout, |ev| {
            messages_of(ev).len() >= n
        }))
    }

    /// Waits until at least `n` AUTH attempts were judged; returns all of them.
    pub fn wait_for_auth_attempts(&self, n: usize, timeout: Duration) -> Vec<AuthAttempt> {
        auths_of(
            &self.wait_until(&format!("{n} AUTH attempt(s)"), timeout, |ev| {
                auths_of(ev).len() >= n
            }),
        )
    }

    /// Waits until at least `n` connections were closed (e.g. after a client
    /// sent QUIT); returns the number of connections accepted.
    pub fn wait_for_closed_connections(&self, n: usize, timeout: Duration) -> usize {
        let events = self.wait_until(&format!("{n} closed connection(s)"), timeout, |ev| {
            count(ev, |e| matches!(e, PeerEvent::Close { .. })) >= n
        });
        count(&events, |e| matches!(e, PeerEvent::Connect { .. }))
    }

    /// Waits until `done(events)` holds; returns the events. Panics with
    /// `what`, the peer's log and its stderr on timeout.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[PeerEvent]) -> bool,
    ) -> Vec<PeerEvent> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if done(&state.events) {
                return state.events.clone();
            }
            let now = Instant::now();
            if now >= deadline || state.stdout_closed {
                let why = if state.stdout_closed {
                    "the peer exited"
                } else {
                    "timed out"
                };
                let report = report(self.kind, &state);
                drop(state);
                panic!(
                    "waiting for {what} from the {} SMTP peer: {why}\n{report}",
                    self.kind
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl fmt::Debug for SmtpPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpPeer")
            .field("kind", &self.kind)
            .field("port", &self.port)
            .field("config", &self.config_json)
            .finish_non_exhaustive()
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("{}", report(self.kind, &self.shared.lock()));
        }
    }
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

fn messages_of(events: &[PeerEvent]) -> Vec<ReceivedMessage> {
    events
        .iter()
        .filter_map(|e| match e {
            PeerEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn auths_of(events: &[PeerEvent]) -> Vec<AuthAttempt> {
    events
        .iter()
        .filter_map(|e| match e {
            PeerEvent::Auth(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

fn count(events: &[PeerEvent], pred: impl Fn(&PeerEvent) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

fn report(kind: PeerKind, state: &State) -> String {
    let mut out = format!("--- {kind} SMTP peer events ---\n");
    for e in &state.events {
        out.push_str(&format!("{e:?}\n"));
    }
    if !state.unparsed.is_empty() {
        out.push_str("--- other stdout ---\n");
        out.push_str(&state.unparsed.join("\n"));
        out.push('\n');
    }
    out.push_str("--- stderr ---\n");
    out.push_str(&state.stderr);
    out
}

fn spawn_stdout_reader(stdout: impl Read + Send + 'static, shared: Arc<Shared>) {
    thread::spawn(move || {
        let reader = BufReader::new(stdout);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            shared.update(|state| {
                if let Some(port) = line.strip_prefix("LISTENING ") {
                    match port.trim().parse() {
                        Ok(port) => state.port = Some(port),
                        Err(_) => state.unparsed.push(line),
                    }
                } else {
                    match serde_json::from_str::<PeerEvent>(&line) {
                        Ok(event) => state.events.push(event),
                        Err(_) => state.unparsed.push(line),
                    }
                }
            });
        }
        shared.update(|state| state.stdout_closed = true);
    });
}

fn spawn_stderr_reader(stderr: impl Read + Send + 'static, shared: Arc<Shared>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    shared.update(|state| state.stderr.push_str(&String::from_utf8_lossy(&buf)))
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_uses_the_peer_field_names() {
        let json = PeerConfig::new()
            .auth(&["plain", "XOAUTH2"])
            .user("u", "p")
            .token("u", "t1")
            .token("u", "t2")
            .refuse_first_auth(2)
            .fail_rcpt(550)
            .to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["authMethods"], serde_json::json!(["PLAIN", "XOAUTH2"]));
        assert_eq!(v["users"]["u"], "p");
        assert_eq!(v["tokens"]["u"], serde_json::json!(["t1", "t2"]));
        assert_eq!(v["refuseFirstAuth"], 2);
        assert_eq!(v["failRcpt"], 550);
        assert_eq!(v["starttls"], false);
        assert!(v.get("failMail").is_none());
    }

    #[test]
    fn parses_events() {
        let e: PeerEvent = serde_json::from_str(
            r#"{"event":"message","conn":2,"from":null,"to":["b@x"],"secure":true,
                "user":"u","method":"PLAIN","data":"Subject: a\r\n b\r\nTo: x\r\n\r\nhi\r\n"}"#,
        )
        .unwrap();
        let PeerEvent::Message(m) = e else {
            panic!("not a message")
        };
        assert_eq!(m.from, "");
        assert_eq!(m.header("subject").as_deref(), Some("a b"));
        assert_eq!(m.header("To").as_deref(), Some("x"));
        assert_eq!(m.body(), "hi\r\n");
        assert!(m.raw.is_empty() && m.mail_options.is_empty());
        let e: PeerEvent = serde_json::from_str(
            r#"{"event":"message","conn":1,"from":"a@x","to":["b@x"],"secure":false,
                "user":null,"method":null,"mail_options":["BODY=8BITMIME","SMTPUTF8"],
                "data":"X: \ufffd\r\n\r\n","raw":"WDog/w0KDQo="}"#,
        )
        .unwrap();
        let PeerEvent::Message(m) = e else {
            panic!("not a message")
        };
        assert_eq!(m.raw, b"X: \xff\r\n\r\n");
        assert_eq!(m.mail_options, ["BODY=8BITMIME", "SMTPUTF8"]);
        let e: PeerEvent = serde_json::from_str(
            r#"{"event":"auth","conn":1,"method":"XOAUTH2","user":"u","ok":false,"reason":"invalid"}"#,
        )
        .unwrap();
        assert!(matches!(e, PeerEvent::Auth(AuthAttempt { ok: false, .. })));
    }
}
