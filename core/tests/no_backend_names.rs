//! Core names no outbox backend: the stores are other crates', registered
//! through their descriptors (`OutboxDescriptor`) like strategies. Core's
//! sources outside its tests must not mention one, so that a new store
//! needs no change here.

use std::path::{Path, PathBuf};

/// The backends the workspace ships, by the words their names take.
const BACKENDS: &[&str] = &["sqlite", "postgres", "pg_", "mysql"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The part of a source file that is not a test: all of it up to its
/// `#[cfg(test)]` module (at the end of each file, as everywhere here);
/// nothing of a file that is a test module itself.
fn non_test_part(path: &Path, text: &str) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

#[test]
fn no_module_of_core_names_a_backend() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "core's sources found: {files:?}");
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in non_test_part(&path, &text).lines().enumerate() {
            let lower = line.to_ascii_lowercase();
            if BACKENDS.iter().any(|b| lower.contains(b)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "core names a backend:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_finds_a_name_where_there_is_one() {
    let text = "fn a() {}\n// kept in SQLite\n#[cfg(test)]\nmod tests { const U: &str = \"postgres://\"; }\n";
    let part = non_test_part(Path::new("x.rs"), text);
    assert!(part.to_ascii_lowercase().contains("sqlite"));
    assert!(!part.contains("postgres"));
    assert!(non_test_part(Path::new("tests.rs"), text).is_empty());
}
