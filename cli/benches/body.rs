//! Message building in linear time: `mailgate send --body-file F` with LF and
//! CRLF bodies of 1, 10 and 100 MB to the dev server, seconds, seconds per
//! MB (against the 1 MB run of the same kind) and the process's peak RSS
//! (against the body size).
//!
//! ```sh
//! cargo bench -p mailgate-cli --bench body
//! MAILGATE_BENCH_SIZES_MB=1,4 MAILGATE_BENCH_BASELINE_BIN=/path/to/older/mailgate cargo bench -p mailgate-cli --bench body
//! ```
//!
//! With `MAILGATE_BENCH_BASELINE_BIN` the same runs are made with that
//! binary too, side by side (an older build took quadratic time on LF
//! bodies: keep its sizes small).

use std::io::Write as _;
use std::time::Duration;

use mailgate_devserver::DevSmtpServer;
use mailgate_integration_tests::{ConfigDir, MeasuredRun, run_mailgate_measured};

const LINE: &str = "The quick brown fox jumps over the lazy dog; build 42 passed all 1234 tests.";

fn main() {
    let sizes: Vec<u64> = std::env::var("MAILGATE_BENCH_SIZES_MB")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 10, 100]);
    let baseline = std::env::var("MAILGATE_BENCH_BASELINE_BIN").ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let largest = sizes.iter().max().copied().unwrap_or(1);
    let server = runtime.block_on(async {
        DevSmtpServer::builder()
            .max_message_size(((largest + 8) * 1024 * 1024) as usize)
            .start()
            .await
            .expect("dev server")
    });
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            (
                "mksis.logging.email.server.port",
                &server.port().to_string(),
            ),
            ("mksis.logging.email.from", "bench@example.com"),
            ("mailgate.smtp.timeoutSeconds", "600"),
            (
                "mailgate.smtp.maxMessageBytes",
                &((largest + 8) * 1024 * 1024).to_string(),
            ),
        ],
        &[],
    );
    let mut binaries = vec![("mailgate", env!("CARGO_BIN_EXE_mailgate").to_owned())];
    if let Some(b) = baseline {
        binaries.push(("baseline", b));
    }
    println!("body: mailgate send --body-file F to the dev server (ASCII lines of 77 characters)");
    println!(
        "{:<10} {:<5} {:>6} {:>10} {:>9} {:>12} {:>11} {:>10}",
        "binary", "ends", "MB", "seconds", "s/MB", "s/MB vs 1st", "peak RSS", "RSS/body"
    );
    for (label, bin) in &binaries {
        for ending in ["LF", "CRLF"] {
            let mut first_per_mb = None;
            for &mb in &sizes {
                let body = body_file(dir.path(), mb, ending);
                server.clear();
                let run = send(bin, dir.path(), &body);
                assert_eq!(
                    run.output.status.code(),
                    Some(0),
                    "{label} {ending} {mb} MB: {}",
                    String::from_utf8_lossy(&run.output.stderr)
                );
                assert_eq!(server.messages().len(), 1, "the message arrived");
                let secs = run.elapsed.as_secs_f64();
                let per_mb = secs / mb as f64;
                let base = *first_per_mb.get_or_insert(per_mb);
                let rss_mb = run.peak_rss_kib as f64 / 1024.0;
                println!(
                    "{label:<10} {ending:<5} {mb:>6} {secs:>10.3} {per_mb:>9.4} {:>11.2}x {:>9.1}MB {:>9.2}x",
                    per_mb / base,
                    rss_mb,
                    rss_mb / mb as f64
                );
                std::fs::remove_file(&body).ok();
            }
        }
    }
    runtime.block_on(server.shutdown());
}

fn body_file(dir: &std::path::Path, mb: u64, ending: &str) -> std::path::PathBuf {
    let path = dir.join(format!("body-{mb}-{ending}.txt"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("body file"));
    let line_end = if ending == "LF" { "\n" } else { "\r\n" };
    let target = mb * 1024 * 1024;
    let mut written = 0;
    while written < target {
        file.write_all(LINE.as_bytes()).unwrap();
        file.write_all(line_end.as_bytes()).unwrap();
        written += (LINE.len() + line_end.len()) as u64;
    }
    file.flush().unwrap();
    path
}

fn send(bin: &str, dir: &std::path::Path, body: &std::path::Path) -> MeasuredRun {
    run_mailgate_measured(
        bin,
        dir,
        &[
            "send",
            "--to",
            "sink@example.com",
            "--subject",
            "body bench",
            "--body-file",
            &body.display().to_string(),
        ],
        Duration::from_secs(1800),
    )
}
