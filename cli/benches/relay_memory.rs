//! `mailgate relay`'s peak resident set (`VmHWM`) while several clients
//! send a big 8-bit message each at the same time, into a SQLite outbox,
//! the upstream silent so that only accepting is measured. The relay is
//! the binary this bench is built with (`target/release/mailgate` under
//! `cargo bench`).
//!
//! ```sh
//! cargo bench -p mailgate-cli --bench relay_memory
//! cargo bench -p mailgate-cli --bench relay_memory --profile dev   # the debug build's figures
//! MAILGATE_BENCH_CLIENTS=8 MAILGATE_BENCH_MIB=10 cargo bench -p mailgate-cli --bench relay_memory
//! ```

#[path = "../tests/relay_support/mod.rs"]
mod relay_support;

use relay_support::Relay;
use relay_support::memory::{concurrent_big_messages, occupy_the_worker, silent_upstream_folder};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn main() {
    let clients = env("MAILGATE_BENCH_CLIENTS", 4);
    let mib = env("MAILGATE_BENCH_MIB", 25);
    // Just under maxMessageBytes, whatever the size asked for.
    let size = mib * 1024 * 1024 - 64 * 1024;
    let max = (mib * 1024 * 1024).to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        for declare_size in [true, false] {
            let (dir, _silent) =
                silent_upstream_folder(&[("mailgate.relay.maxMessageBytes", &max)]);
            let relay = Relay::start(dir.path());
            relay_support::blocking(|| occupy_the_worker(&relay, dir.path()));
            let run = relay_support::blocking(|| {
                concurrent_big_messages(&relay, clients, size, declare_size)
            });
            let codes: Vec<u16> = run.replies.iter().map(|r| r.0).collect();
            println!(
                "{clients} x {} bytes{}: relay VmHWM {:.1} MB after (before: {:.1} MB), {:.1} s, replies {codes:?}",
                run.size,
                if declare_size { " with SIZE=" } else { " without SIZE=" },
                run.peak_kib as f64 * 1024.0 / 1e6,
                run.before_kib as f64 * 1024.0 / 1e6,
                run.elapsed.as_secs_f64(),
            );
        }
    });
}
