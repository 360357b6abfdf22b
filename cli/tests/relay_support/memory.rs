//! The relay's memory under big messages: `mailgate relay` on a SQLite
//! outbox, several clients sending a big 8-bit message each at the same
//! time, and the relay's peak resident set (`VmHWM` of
//! `/proc/PID/status`). Used by `tests/relay_memory.rs` (the bound) and
//! `benches/relay_memory.rs` (the figures).
//!
//! Only acceptance is measured: the upstream takes the connection and
//! never greets, and a first small message is left in the worker's hands
//! on it, so the worker claims nothing more while the big ones arrive.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mailgate_integration_tests::ConfigDir;

use super::{Client, Relay, SENDER, WAIT, message, poll, queue_all, relay_folder};

/// `VmHWM` (peak resident set) or `VmRSS` of process `pid`, in KiB.
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} line in /proc/{pid}/status"))
}

/// An 8-bit text message of about `size` bytes (lines of 78 octets and
/// CRLF, UTF-8), as a client sends it after DATA: dot-stuffed (no line
/// starts with a dot anyway), ending with `CRLF.CRLF`.
pub fn big_message(subject: &str, size: usize) -> Vec<u8> {
    let head = format!(
        "From: Build Bot <{SENDER}>\r\nTo: dev@example.com\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n"
    );
    let mut out = Vec::with_capacity(size + 128);
    out.extend_from_slice(head.as_bytes());
    let mut n = 0u64;
    while out.len() + 80 <= size {
        // 78 octets: ä, ö and ü are two octets each.
        let line =
            format!("Grüße aus Köln, Zeile {n:010}: the quick brown fox jumps over the lazy d\r\n");
        debug_assert_eq!(line.len(), 80);
        out.extend_from_slice(line.as_bytes());
        n += 1;
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// What one run measured.
#[derive(Debug)]
pub struct MemoryRun {
    /// The relay's peak resident set before the big messages, KiB.
    pub before_kib: u64,
    /// Its peak resident set after them, KiB.
    pub peak_kib: u64,
    /// The final reply to each big message, in client order.
    pub replies: Vec<(u16, String)>,
    /// From the first DATA to the last reply.
    pub elapsed: Duration,
    /// The size of each big message on the wire.
    pub size: usize,
}

/// A relay folder whose upstream never greets: what the worker takes, it
/// holds for `timeoutSeconds` (600). `extra` as for [`relay_folder`].
pub fn silent_upstream_folder(extra: &[(&str, &str)]) -> (ConfigDir, TcpListener) {
    // Bound, never accepted: connections complete in the backlog and
    // wait for a greeting that never comes.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a silent upstream");
    let port = silent.local_addr().expect("its port").port();
    let mut props = vec![("mailgate.smtp.timeoutSeconds", "600")];
    props.extend_from_slice(extra);
    (relay_folder(port, &props), silent)
}

/// Submits one small message and waits until the relay's worker took it
/// (status `sending`): from then on it waits on the silent upstream and
/// claims nothing more.
pub fn occupy_the_worker(relay: &Relay, dir: &Path) {
    let mut c = Client::greeted(relay.addr);
    c.expect("EHLO client.example", 250);
    c.expect(&format!("MAIL FROM:<{SENDER}>"), 250);
    c.expect("RCPT TO:<dev@example.com>", 250);
    c.expect("DATA", 354);
    c.send(message("occupy the worker", "first").as_bytes())
        .expect("send");
    c.expect(".", 250);
    c.expect("QUIT", 221);
    poll(
        "the worker to take the first message",
        WAIT,
        || {
            queue_all(dir)
                .iter()
                .any(|m| m["status"] == "sending")
                .then_some(())
        },
        || format!("{:?}", queue_all(dir)),
    );
}

/// `clients` sessions at once, each sending a message of `size` bytes
/// (with `SIZE=` when `declare_size`), all DATA phases running together;
/// the relay's peak resident set before and after.
pub fn concurrent_big_messages(
    relay: &Relay,
    clients: usize,
    size: usize,
    declare_size: bool,
) -> MemoryRun {
    let before_kib = proc_status_kib(relay.pid, "VmHWM");
    let data: Arc<Vec<u8>> = Arc::new(big_message("big", size));
    let ready = Arc::new(Barrier::new(clients + 1));
    let addr = relay.addr;
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let data = Arc::clone(&data);
            let ready = Arc::clone(&ready);
            std::thread::spawn(move || {
                let mut c = Client::greeted(addr);
                c.set_read_timeout(Duration::from_secs(300));
                c.expect("EHLO client.example", 250);
                let size_param = if declare_size {
                    format!(" SIZE={}", data.len())
                } else {
                    String::new()
                };
                c.expect(
                    &format!("MAIL FROM:<{SENDER}> BODY=8BITMIME{size_param}"),
                    250,
                );
                c.expect("RCPT TO:<dev@example.com>", 250);
                ready.wait();
                let (code, text) = c.cmd("DATA");
                if code != 354 {
                    return (code, text);
                }
                let mut stream = c.try_clone_stream();
                for chunk in data.chunks(64 * 1024) {
                    if let Err(e) = stream.write_all(chunk) {
                        return (0, format!("write failed: {e}"));
                    }
                }
                let reply = c.reply();
                let _ = c.cmd("QUIT");
                reply
            })
        })
        .collect();
    ready.wait();
    let started = Instant::now();
    let replies: Vec<(u16, String)> = handles
        .into_iter()
        .map(|h| h.join().expect("a client thread"))
        .collect();
    let elapsed = started.elapsed();
    MemoryRun {
        before_kib,
        peak_kib: proc_status_kib(relay.pid, "VmHWM"),
        replies,
        elapsed,
        size: data.len(),
    }
}
