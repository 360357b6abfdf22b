//! Cost of loading settings from a realistic, large `is.properties`, against
//! the bare parse of the same bytes (`mailgate_properties::parse`) as the
//! baseline: what validation, merging and the "did you mean" check add.
//!
//! `cargo bench -p mailgate-core --bench settings_load`

use std::hint::black_box;
use std::time::{Duration, Instant};

use mailgate_core::properties::ConfigFiles;
use mailgate_core::settings::{LoadOptions, Settings};

const ROUNDS: u32 = 300;

/// An is.properties like a production server's: hundreds of unrelated keys.
fn realistic_is_properties() -> String {
    let mut s = String::from("# RV&S server properties\n");
    let areas = [
        "im",
        "si",
        "logging",
        "server",
        "db",
        "cache",
        "trigger",
        "ui",
        "api",
        "licensing",
    ];
    for i in 0..600 {
        let area = areas[i % areas.len()];
        s.push_str(&format!(
            "mksis.{area}.setting{i}.value = some value {i} \\\n    continued\n"
        ));
        if i % 25 == 0 {
            s.push_str("\n# section comment\n");
        }
    }
    s.push_str("mksis.smtp.authentication=true\nmksis.smtp.ssl.enabled=true\n");
    s.push_str("mksis.logging.email.from=alm@example.com\n");
    s.push_str("mksis.logging.email.server.hostname=smtp.example.com\nmksis.logging.email.server.port=587\n");
    s
}

fn time(mut f: impl FnMut()) -> Duration {
    f(); // warm the page cache and allocator
    let start = Instant::now();
    for _ in 0..ROUNDS {
        f();
    }
    start.elapsed() / ROUNDS
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("is.properties");
    std::fs::write(&path, realistic_is_properties()).unwrap();

    let baseline = time(|| {
        let bytes = std::fs::read(&path).unwrap();
        black_box(mailgate_properties::parse(&bytes).unwrap());
    });
    let ours = time(|| {
        black_box(
            Settings::load(LoadOptions {
                files: ConfigFiles::in_dir(dir.path()),
                ..LoadOptions::default()
            })
            .unwrap(),
        );
    });
    println!("is.properties with 600 unrelated keys, {ROUNDS} rounds each");
    println!("baseline  mailgate_properties::parse: {baseline:>10.2?} per load");
    println!("mailgate  Settings::load:            {ours:>10.2?} per load");
    println!(
        "ratio     {:.2}x the bare parse",
        ours.as_secs_f64() / baseline.as_secs_f64()
    );
}
