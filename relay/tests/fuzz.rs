//! Hostile input: random commands, bytes and chunking fed to a session
//! over an in-memory stream. No panic, well-formed replies, a session that
//! ends, nothing malformed stored, and memory bounded (measured with a
//! counting allocator).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailgate_relay::{
    MessageSink, Rejection, RelayConfig, Submission, Users, hash_password, serve_connection,
};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One test at a time: the allocation counters are process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

const MAX_MESSAGE: usize = 64 * 1024;

/// Checks what it is given, stores nothing.
#[derive(Default)]
struct CheckingSink {
    accepted: AtomicUsize,
}

#[mailgate_relay::async_trait]
impl MessageSink for CheckingSink {
    async fn accept(&self, envelope: Submission, data: Vec<u8>) -> Result<String, Rejection> {
        assert!(data.len() <= MAX_MESSAGE);
        assert!(!envelope.to.is_empty());
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && data[i - 1] == b'\r', "bare LF stored");
            }
            if b == b'\r' {
                assert_eq!(data.get(i + 1), Some(&b'\n'), "bare CR stored");
            }
        }
        for address in envelope.to.iter().chain([&envelope.from]) {
            assert!(
                !address
                    .chars()
                    .any(|c| c.is_control() || c == '<' || c == '>')
            );
        }
        let n = self.accepted.fetch_add(1, Ordering::Relaxed);
        if n % 3 == 2 {
            return Err(Rejection::Temporary("sometimes failing".to_owned()));
        }
        Ok(format!("F{n}\r\n250 injected"))
    }
}

fn config(users: Option<Users>) -> Arc<RelayConfig> {
    Arc::new(RelayConfig {
        max_message_bytes: MAX_MESSAGE,
        max_line: 512,
        max_recipients: 5,
        max_commands: 200,
        max_errors: 50,
        idle_timeout: Duration::from_secs(2),
        data_timeout: Duration::from_secs(3),
        tls: Some(common::pki().server),
        require_tls_for_auth: false,
        users,
        auth_failure_delay: Duration::ZERO,
        max_auth_failures: 2,
        ..RelayConfig::default()
    })
}

/// Runs one session on `chunks`; returns (what the session wrote, the
/// peak heap growth during it).
fn run_session(config: Arc<RelayConfig>, chunks: Vec<Vec<u8>>) -> (Vec<u8>, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sink: Arc<dyn MessageSink> = Arc::new(CheckingSink::default());
    let client_addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
    runtime.block_on(async move {
        let (client, server) = tokio::io::duplex(16 * 1024);
        let baseline = CURRENT.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        let session = tokio::spawn(serve_connection(server, client_addr, config, sink));
        let (mut reader, mut writer) = tokio::io::split(client);
        let write = async move {
            for chunk in chunks {
                if writer.write_all(&chunk).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let _ = writer.shutdown().await;
            writer
        };
        // Keeps at most the first 64 KiB of output, to check its form.
        let read = async move {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out.len() < 64 * 1024 {
                            out.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
            out
        };
        let (writer, out) =
            tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(write, read) })
                .await
                .expect("the session ended");
        drop(writer);
        let joined = tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .expect("the session task ended");
        assert!(joined.is_ok(), "the session panicked: {joined:?}");
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
        (out, peak)
    })
}

/// Every line the server wrote is a reply line: `ddd` then ` ` or `-`,
/// CRLF-terminated, printable.
fn check_replies(out: &[u8]) {
    let cut = out.len().min(64 * 1024);
    let text = &out[..cut];
    let complete = match text.iter().rposition(|&b| b == b'\n') {
        Some(i) => &text[..=i],
        None => return,
    };
    for line in complete.split_inclusive(|&b| b == b'\n') {
        assert!(
            line.ends_with(b"\r\n"),
            "{:?}",
            String::from_utf8_lossy(line)
        );
        let body = &line[..line.len() - 2];
        assert!(body.len() >= 3, "{:?}", String::from_utf8_lossy(line));
        assert!(
            body[..3].iter().all(u8::is_ascii_digit),
            "{:?}",
            String::from_utf8_lossy(line)
        );
        assert!(body.len() == 3 || body[3] == b' ' || body[3] == b'-');
        assert!(
            body.iter().all(|&b| (0x20..0x7f).contains(&b)),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let commands = prop::sample::select(vec![
        "EHLO fuzz.example",
        "HELO fuzz",
        "MAIL FROM:<a@b.example>",
        "MAIL FROM:<>",
        "MAIL FROM:<a@b.example> SIZE=70000",
        "MAIL FROM:<a@b.example> BODY=8BITMIME SMTPUTF8",
        "MAIL FROM:<\"q u\"@b.example>",
        "RCPT TO:<c@d.example>",
        "RCPT TO:<postmaster>",
        "RCPT TO:<x@[127.0.0.1]>",
        "DATA",
        "RSET",
        "NOOP",
        "VRFY x",
        "HELP",
        "STARTTLS",
        "AUTH PLAIN",
        "AUTH LOGIN",
        "AUTH PLAIN AHVzZXIAcGFzcw==",
        "dXNlcg==",
        "*",
        "=",
        ".",
        "..",
        "Subject: x",
        "",
        "QUIT",
        "MAIL FROM:<a@b.example> FOO=1",
        "GET / HTTP/1.1",
    ]);
    let ending = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r", ""]);
    prop_oneof![
        6 => (commands, ending.clone()).prop_map(|(c, e)| format!("{c}{e}").into_bytes()),
        2 => ("[ -~]{0,80}", ending).prop_map(|(c, e)| format!("{c}{e}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (0usize..3000).prop_map(|n| vec![b'A'; n]),
        1 => Just(b"\r\n.\r\n".to_vec()),
    ]
}

fn chunked(input: Vec<u8>, sizes: Vec<usize>) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut rest = &input[..];
    let mut sizes = sizes.into_iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        chunks.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    chunks
}

/// Heap growth allowed for one session: buffers, a capped message, TLS
/// state, the runtime; far below what the inputs could make it.
const MEMORY_BOUND: usize = 256 * 1024;

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_sessions(
        fragments in prop::collection::vec(fragment(), 0..80),
        sizes in prop::collection::vec(1usize..600, 1..8),
    ) {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let input: Vec<u8> = fragments.concat();
        let (out, peak) = run_session(config(None), chunked(input, sizes));
        check_replies(&out);
        prop_assert!(out.starts_with(b"220 "));
        prop_assert!(peak < MEMORY_BOUND, "peak heap growth {peak}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// With users: AUTH exchanges (each attempt costs an Argon2 hash).
    #[test]
    fn random_sessions_with_auth(
        fragments in prop::collection::vec(fragment(), 0..40),
        sizes in prop::collection::vec(1usize..600, 1..8),
    ) {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let users = Users::parse(format!("user:{}\n", hash_password("pass")).as_bytes(), "users".as_ref()).unwrap();
        let input: Vec<u8> = [b"EHLO x\r\n".to_vec(), fragments.concat()].concat();
        let (out, _) = run_session(config(Some(users)), chunked(input, sizes));
        check_replies(&out);
    }
}

#[test]
fn a_flood_without_line_ends_stays_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let chunk = vec![b'x'; 64 * 1024];
    let chunks: Vec<Vec<u8>> = std::iter::once(b"EHLO x\r\n".to_vec())
        .chain(std::iter::repeat_n(chunk, 320)) // 20 MiB
        .collect();
    let (out, peak) = run_session(config(None), chunks);
    check_replies(&out);
    assert!(
        peak < MEMORY_BOUND,
        "peak heap growth {peak} for a 20 MiB line"
    );
}

#[test]
fn oversized_data_stays_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let line = format!("{}\r\n", "y".repeat(998));
    let block = line.repeat(64).into_bytes(); // 64 000 bytes
    let mut chunks =
        vec![b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n".to_vec()];
    chunks.extend(std::iter::repeat_n(block, 320)); // 20 MB of data, cap 64 KiB
    chunks.push(b".\r\nQUIT\r\n".to_vec());
    let (out, peak) = run_session(config(None), chunks);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("\r\n552 5.3.4 "), "{text}");
    assert!(text.ends_with("221 2.0.0 Bye\r\n"), "{text}");
    assert!(
        peak < MEMORY_BOUND,
        "peak heap growth {peak} for 20 MB of data"
    );
}

#[test]
fn queue_ids_cannot_inject_replies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let chunks = vec![b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n".to_vec()];
    let (out, _) = run_session(config(None), chunks);
    let text = String::from_utf8_lossy(&out);
    check_replies(&out);
    assert!(
        text.contains("250 2.0.0 queued as F0__250_injected\r\n"),
        "{text}"
    );
}
