//! Runs a conformance case of `mailgate_relay::codec::suite` against a
//! server over TCP: the relay's test and the dev server's include this
//! file, so that both servers meet the same client.

use std::net::SocketAddr;
use std::time::Duration;

use mailgate_relay::codec::suite::{Case, Class, Step};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const WAIT: Duration = Duration::from_secs(10);

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

struct Client {
    conn: Conn,
    buf: Vec<u8>,
}

impl Client {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let written = match &mut self.conn {
            Conn::Plain(s) => s.write_all(bytes).await,
            Conn::Tls(s) => s.write_all(bytes).await,
        };
        written.map_err(|e| format!("write: {e}"))
    }

    /// One read; `Ok(0)` at the end of the stream.
    async fn read_more(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let read = async {
            match &mut self.conn {
                Conn::Plain(s) => s.read(&mut chunk).await,
                Conn::Tls(s) => s.read(&mut chunk).await,
            }
        };
        let n = tokio::time::timeout(WAIT, read)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The code of the next reply.
    async fn reply(&mut self) -> Result<u16, String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&line);
                let code = text
                    .get(..3)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| format!("not a reply line: {text:?}"))?;
                if line.get(3) != Some(&b'-') {
                    return Ok(code);
                }
                continue;
            }
            match self.read_more().await {
                Ok(0) => return Err("closed before a reply".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Whether the server closed without sending more.
    async fn closed(&mut self) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!(
                "more from the server: {:?}",
                String::from_utf8_lossy(&self.buf)
            ));
        }
        match self.read_more().await {
            Ok(0) => Ok(()),
            Ok(_) => Err(format!(
                "more from the server: {:?}",
                String::from_utf8_lossy(&self.buf)
            )),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err("the server did not close".to_owned())
            }
            // A reset: closed with our bytes unread.
            Err(_) => Ok(()),
        }
    }
}

/// Runs `case` against the server at `addr`, doing TLS with `tls`.
/// Checks the replies and the close, not what was stored.
pub async fn run_case(addr: SocketAddr, tls: &TlsConnector, case: &Case) -> Result<(), String> {
    let fail = |i: usize, what: String| format!("{}, step {i}: {what}", case.name);
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{}: connect: {e}", case.name))?;
    tcp.set_nodelay(true).ok();
    let mut client = Client {
        conn: Conn::Plain(tcp),
        buf: Vec::new(),
    };
    let greeting = client.reply().await.map_err(|e| fail(0, e))?;
    if Class::of(greeting) != Some(Class::Positive) {
        return Err(fail(0, format!("greeting {greeting}")));
    }
    for (i, step) in case.steps.iter().enumerate() {
        match *step {
            Step::Send(bytes) => client.write(bytes).await.map_err(|e| fail(i, e))?,
            Step::Repeat(bytes, times) => client
                .write(&bytes.repeat(times))
                .await
                .map_err(|e| fail(i, e))?,
            Step::Expect(classes) => {
                for expected in classes {
                    let code = client.reply().await.map_err(|e| fail(i, e))?;
                    if Class::of(code) != Some(*expected) {
                        return Err(fail(i, format!("expected {expected:?}, got {code}")));
                    }
                }
            }
            Step::Tls => {
                if !client.buf.is_empty() {
                    return Err(fail(i, "bytes after the 220".to_owned()));
                }
                let Conn::Plain(tcp) = client.conn else {
                    return Err(fail(i, "TLS twice".to_owned()));
                };
                let name = ServerName::try_from("localhost").expect("a name");
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| fail(i, format!("handshake: {e}")))?;
                client.conn = Conn::Tls(Box::new(stream));
            }
            Step::Closed => client.closed().await.map_err(|e| fail(i, e))?,
        }
    }
    Ok(())
}
