//! One relay session (mailgate relay's SMTP listener) fed arbitrary client
//! bytes in chunks whose sizes come from the input: no panic, the session
//! ends, and every reply line it writes is a well-formed SMTP reply.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mailgate_relay::{MessageSink, Rejection, RelayConfig, Submission, serve_connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Accepting;

#[mailgate_relay::async_trait]
impl MessageSink for Accepting {
    async fn accept(&self, _: Submission, data: Vec<u8>) -> Result<String, Rejection> {
        assert!(!data.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "bare LF stored");
        Ok("queued".to_owned())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(seed) + 1;
    let config = Arc::new(RelayConfig {
        max_message_bytes: 4096,
        max_line: 256,
        max_recipients: 4,
        max_commands: 64,
        idle_timeout: Duration::from_millis(200),
        data_timeout: Duration::from_millis(500),
        auth_failure_delay: Duration::ZERO,
        ..RelayConfig::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client_addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
    let out = runtime.block_on(async move {
        let (client, server) = tokio::io::duplex(8 * 1024);
        let session = tokio::spawn(serve_connection(
            server,
            client_addr,
            config,
            Arc::new(Accepting),
        ));
        let (mut reader, mut writer) = tokio::io::split(client);
        let input = bytes.to_vec();
        let write = async move {
            for part in input.chunks(chunk) {
                if writer.write_all(part).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        };
        let read = async move {
            let mut out = Vec::new();
            let _ = (&mut reader).take(256 * 1024).read_to_end(&mut out).await;
            out
        };
        let (_, out) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(write, read)
        })
        .await
        .expect("the session ended");
        let joined = tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("the session task ended");
        assert!(joined.is_ok(), "the session panicked");
        out
    });
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").expect("CRLF only");
        assert!(line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(matches!(line.get(3), None | Some(b' ') | Some(b'-')), "{line:?}");
    }
});
