//! A raw SMTP client for driving the dev server byte by byte.

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// The XOAUTH2 initial response for `user` and `token`, base64.
pub fn xoauth2(user: &str, token: &str) -> String {
    b64(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

/// The OAUTHBEARER (RFC 7628) initial response for `user` and `token`, base64.
pub fn oauthbearer(user: &str, token: &str) -> String {
    b64(format!(
        "n,a={user},\x01host=localhost\x01port=587\x01auth=Bearer {token}\x01\x01"
    ))
}

/// The AUTH PLAIN response for `user` and `password`, base64.
pub fn plain(user: &str, password: &str) -> String {
    b64(format!("\0{user}\0{password}"))
}

pub fn unb64(s: &str) -> Vec<u8> {
    STANDARD.decode(s).expect("server sent valid base64")
}

/// A client config trusting only the CA given as PEM, as a mailgate
/// `caFile` would.
pub fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("valid PEM")).expect("valid CA");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// All text lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    pub fn last(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.code, self.lines)
    }
}

pub struct Client {
    stream: Stream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Self {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
        }
    }

    pub async fn connect_tls(addr: SocketAddr, ca_pem: &str) -> Self {
        let mut client = Self::connect(addr).await;
        client.handshake(ca_pem).await.expect("TLS handshake");
        client
    }

    pub async fn handshake(&mut self, ca_pem: &str) -> io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            panic!("not a plain stream");
        };
        let connector = TlsConnector::from(client_config(ca_pem));
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await?;
        self.stream = Stream::Tls(Box::new(tls));
        self.buf.clear();
        Ok(())
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => s.write_all(bytes).await,
            Stream::Gone => panic!("gone"),
        };
        r.expect("write");
    }

    pub async fn send(&mut self, line: &str) {
        self.write(format!("{line}\r\n").as_bytes()).await;
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let read = async {
            match &mut self.stream {
                Stream::Plain(s) => s.read(&mut chunk).await,
                Stream::Tls(s) => s.read(&mut chunk).await,
                Stream::Gone => panic!("gone"),
            }
        };
        let n = tokio::time::timeout(TIMEOUT, read)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..i]).into_owned()));
            }
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads one reply; None when the server closed the connection first.
    pub async fn try_reply(&mut self) -> io::Result<Option<Reply>> {
        let mut lines = Vec::new();
        loop {
            let Some(line) = self.line().await? else {
                assert!(lines.is_empty(), "connection closed inside a reply");
                return Ok(None);
            };
            assert!(line.len() >= 3, "short reply line {line:?}");
            let code: u16 = line[..3].parse().expect("reply code");
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if !more {
                return Ok(Some(Reply { code, lines }));
            }
        }
    }

    pub async fn reply(&mut self) -> Reply {
        self.try_reply()
            .await
            .expect("read reply")
            .expect("connection closed")
    }

    /// Sends a command line and reads the reply.
    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.send(line).await;
        self.reply().await
    }

    /// Sends a command and asserts the reply code.
    pub async fn ok(&mut self, line: &str, code: u16) -> Reply {
        let reply = self.cmd(line).await;
        assert_eq!(reply.code, code, "{line} -> {reply:?}");
        reply
    }

    /// True when the server closed the connection (EOF or reset) without
    /// sending anything more.
    pub async fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match self.fill().await {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::TimedOut,
        }
    }

    /// Reads the greeting and says EHLO.
    pub async fn hello(&mut self) -> Reply {
        let greeting = self.reply().await;
        assert_eq!(greeting.code, 220, "{greeting:?}");
        self.ok("EHLO client.test", 250).await
    }

    /// MAIL, RCPT and DATA with `message` (CRLF lines, no final dot).
    pub async fn send_mail(&mut self, from: &str, to: &[&str], message: &str) -> Reply {
        self.ok(&format!("MAIL FROM:<{from}>"), 250).await;
        for rcpt in to {
            self.ok(&format!("RCPT TO:<{rcpt}>"), 250).await;
        }
        self.ok("DATA", 354).await;
        self.write(message.as_bytes()).await;
        self.cmd(".").await
    }
}

pub const MESSAGE: &str = "From: Alice <alice@example.com>\r\n\
To: bob@example.com\r\n\
Subject: =?utf-8?b?SGVsbG8gV8O2cmxk?=\r\n\
\r\n\
Hi Bob,\r\n\
..this line was dot-stuffed\r\n";
