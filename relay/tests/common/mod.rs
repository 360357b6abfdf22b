//! Helpers shared by the relay's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailgate_relay::{MessageSink, Rejection, RelayConfig, RelayHandle, RelayServer, Submission};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A sink that records what it stores; it can fail the first N calls and
/// take its time. The relay's own Received field is kept apart (in
/// `traces`): `messages` holds the data as the client sent it.
#[derive(Default)]
pub struct RecordingSink {
    pub messages: Mutex<Vec<(Submission, Vec<u8>)>>,
    pub traces: Mutex<Vec<String>>,
    pub fail_first: AtomicUsize,
    pub calls: AtomicUsize,
    pub delay: Mutex<Option<Duration>>,
}

impl RecordingSink {
    pub fn new() -> Arc<RecordingSink> {
        Arc::new(RecordingSink::default())
    }

    pub fn failing_first(n: usize) -> Arc<RecordingSink> {
        let sink = RecordingSink::default();
        sink.fail_first.store(n, Ordering::SeqCst);
        Arc::new(sink)
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn get(&self, i: usize) -> (Submission, Vec<u8>) {
        self.messages.lock().unwrap()[i].clone()
    }
}

#[mailgate_relay::async_trait]
impl MessageSink for RecordingSink {
    async fn accept(&self, envelope: Submission, data: Vec<u8>) -> Result<String, Rejection> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if call < self.fail_first.load(Ordering::SeqCst) {
            return Err(Rejection::Temporary("disk full (test)".to_owned()));
        }
        let (trace, data) = split_trace(&data);
        self.traces.lock().unwrap().push(trace);
        let mut messages = self.messages.lock().unwrap();
        messages.push((envelope, data));
        Ok(format!("TEST{}", messages.len()))
    }
}

/// The relay's Received field (the first field, unfolded lines joined) and
/// the rest; panics when the data does not start with one.
pub fn split_trace(data: &[u8]) -> (String, Vec<u8>) {
    assert!(
        data.starts_with(b"Received: from "),
        "no Received field first: {:?}",
        String::from_utf8_lossy(&data[..data.len().min(200)])
    );
    let mut end = 0;
    loop {
        let eol = data[end..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("the Received field ends in CRLF")
            + end
            + 2;
        end = eol;
        if !matches!(data.get(end), Some(b' ' | b'\t')) {
            break;
        }
    }
    let field = String::from_utf8(data[..end].to_vec()).expect("an ASCII Received field");
    (field, data[end..].to_vec())
}

/// A relay running in the background.
pub struct Running {
    pub addr: SocketAddr,
    pub handle: RelayHandle,
    pub sink: Arc<RecordingSink>,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Starts the shutdown (run returns once every session ended).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn test_config() -> RelayConfig {
    RelayConfig {
        hostname: "relay.test".to_owned(),
        idle_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(20),
        auth_failure_delay: Duration::from_millis(100),
        ..RelayConfig::default()
    }
}

pub async fn start(config: RelayConfig) -> Running {
    start_with(config, RecordingSink::new()).await
}

pub async fn start_with(config: RelayConfig, sink: Arc<RecordingSink>) -> Running {
    let server = RelayServer::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind");
    let addr = server.local_addr();
    let handle = server.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let dyn_sink: Arc<dyn MessageSink> = sink.clone();
    let task = tokio::spawn(server.run(dyn_sink, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        handle,
        sink,
        stop: Some(stop),
        task,
    }
}

/// A raw SMTP client over any stream.
pub struct Client<S> {
    pub stream: BufReader<S>,
}

pub async fn connect(addr: SocketAddr) -> Client<TcpStream> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    Client {
        stream: BufReader::new(stream),
    }
}

impl<S: AsyncRead + Unpin> Client<S> {
    pub fn new(stream: S) -> Client<S> {
        Client {
            stream: BufReader::new(stream),
        }
    }

    /// One reply: its code and its lines' text joined with '\n'. Panics
    /// after 10 s or at EOF.
    pub async fn reply(&mut self) -> (u16, String) {
        self.reply_within(Duration::from_secs(10))
            .await
            .expect("a reply")
    }

    /// One reply, or None at EOF / on timeout.
    pub async fn reply_within(&mut self, limit: Duration) -> Option<(u16, String)> {
        tokio::time::timeout(limit, async {
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                let n = self.stream.read_line(&mut line).await.ok()?;
                if n == 0 {
                    return None;
                }
                assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
                let code: u16 = line.get(..3)?.parse().ok()?;
                let more = line.as_bytes().get(3) == Some(&b'-');
                lines.push(line.get(4..).unwrap_or("").trim_end().to_owned());
                if !more {
                    return Some((code, lines.join("\n")));
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Whether the server closed the connection (EOF within `limit`).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut rest = String::new();
        matches!(
            tokio::time::timeout(limit, self.stream.read_line(&mut rest)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub async fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.expect("write");
        self.stream.get_mut().flush().await.expect("flush");
    }

    /// Writes, ignoring errors (the server may have closed already).
    pub async fn try_send(&mut self, text: &str) {
        let _ = self.stream.get_mut().write_all(text.as_bytes()).await;
        let _ = self.stream.get_mut().flush().await;
    }

    pub async fn cmd(&mut self, text: &str) -> (u16, String) {
        self.send(&format!("{text}\r\n")).await;
        self.reply().await
    }

    /// Sends a command and checks the reply code.
    pub async fn expect(&mut self, text: &str, code: u16) -> String {
        let (got, reply) = self.cmd(text).await;
        assert_eq!(got, code, "{text:?} answered {got} {reply:?}");
        reply
    }
}

/// A CA and a server certificate for 127.0.0.1 / localhost, as files
/// (for Python) and as configs (for the relay and a Rust client).
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_path: PathBuf,
    pub ca_der: CertificateDer<'static>,
    pub server: Arc<rustls::ServerConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn make_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(DnType::CommonName, "mailgate relay test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    CertifiedIssuer::self_signed(params, key).expect("CA certificate")
}

pub fn pki() -> Pki {
    let ca = make_ca();
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server names");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca).expect("server certificate");

    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server TLS config");
    Pki {
        dir,
        ca_path,
        ca_der: ca.der().clone(),
        server: Arc::new(server),
    }
}

impl Pki {
    /// A TLS client connector trusting the test CA.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add CA");
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    pub fn server_name() -> ServerName<'static> {
        ServerName::try_from("localhost").expect("name")
    }
}

/// Runs `python3 -c script args...`; returns (exit code, stdout, stderr).
pub async fn python(script: &str, args: &[String]) -> (i32, String, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python3 finished in time")
    .expect("python3 runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `\0user\0password`, base64.
pub fn plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

pub fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
