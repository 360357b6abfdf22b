//! The relay's memory: four clients sending a 25 MiB 8-bit message each
//! at the same time keep `mailgate relay` under 300 MB of peak resident
//! set (issue 17: it took 552-669 MB), every one of them stored whole.

mod relay_support;

use relay_support::memory::{concurrent_big_messages, occupy_the_worker, silent_upstream_folder};
use relay_support::{Relay, queue_all};

/// The size of each message on the wire: just under the default
/// `maxMessageBytes` (25 MiB).
const SIZE: usize = 25 * 1024 * 1024 - 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_25_mib_messages_stay_under_300_mb() {
    let (dir, _silent) = silent_upstream_folder(&[]);
    let relay = Relay::start(dir.path());
    relay_support::blocking(|| occupy_the_worker(&relay, dir.path()));
    let run = relay_support::blocking(|| concurrent_big_messages(&relay, 4, SIZE, true));
    eprintln!(
        "relay peak RSS: {} KiB before, {} KiB after 4 x {} bytes in {:?}",
        run.before_kib, run.peak_kib, run.size, run.elapsed
    );
    for (code, text) in &run.replies {
        assert_eq!(*code, 250, "{text}");
    }
    // Stored whole: the trace field and the completion only add.
    let stored = queue_all(dir.path());
    let big: Vec<u64> = stored
        .iter()
        .filter(|m| m["subject"] == "big")
        .map(|m| m["size"].as_u64().expect("a size"))
        .collect();
    assert_eq!(big.len(), 4, "{stored:?}");
    for size in big {
        // The wire form ends with `.CRLF`, which is not stored.
        assert!(
            size > (run.size - 3) as u64 && size < (run.size + 2048) as u64,
            "{size}"
        );
    }
    assert!(
        run.peak_kib * 1024 < 300_000_000,
        "peak RSS {} KiB, over 300 MB (before the messages: {} KiB)",
        run.peak_kib,
        run.before_kib
    );
}
