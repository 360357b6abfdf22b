//! Golden tests: realistic `is.properties` (CRLF, ISO-8859-1, comments,
//! continuation lines, dozens of unrelated keys) and `security.properties`
//! (LF, UTF-8, secret value starting on a continuation line).

mod common;

use std::fs;

use common::*;
use mailgate_secrets::{Occurrence, decrypt_value, encrypt_file, plaintext_secrets};
use secrecy::ExposeSecret;

fn line_split(b: &[u8]) -> Vec<&[u8]> {
    b.split(|&c| c == b'\n').collect()
}

#[test]
fn is_properties_only_the_secret_value_changes() {
    let dir = tempfile::tempdir().unwrap();
    let original = fixture("is.properties");
    let path = write(dir.path(), "is.properties", &original);
    let key = key(7);

    assert_eq!(
        plaintext_secrets(&path, &SECRET_KEYS).unwrap(),
        [Occurrence {
            key: PASSWORD.into(),
            line: 42
        }]
    );
    let report = encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    assert!(report.written);
    assert_eq!(
        report.changed,
        [Occurrence {
            key: PASSWORD.into(),
            line: 42
        }]
    );
    assert!(report.unchanged.is_empty() && report.empty.is_empty());
    assert_eq!(report.missing, [CLIENT_SECRET]);

    let after = fs::read(&path).unwrap();
    // Golden: byte for byte, with the random ciphertext masked.
    assert_eq!(normalize_enc(&after), fixture("is.properties.golden"));
    // Byte diff: same line count, CRLF kept everywhere, only line 42
    // differs, and it keeps its key and separator bytes.
    let (a, b) = (line_split(&original), line_split(&after));
    assert_eq!(a.len(), b.len());
    for (n, (x, y)) in a.iter().zip(&b).enumerate() {
        if n + 1 == 42 {
            assert!(y.starts_with(b"mksis.logging.emailfrom.password = ENC(v1:"));
            assert!(y.ends_with(b")\r"));
        } else {
            assert_eq!(x, y, "line {} changed", n + 1);
        }
    }
    // Still ISO-8859-1 (the Latin-1 bytes elsewhere are untouched).
    assert!(std::str::from_utf8(&after).is_err());

    // Every other key decodes as before; the secret decrypts to what Java
    // read from the plaintext.
    let (before_pairs, after_pairs) = (java_pairs(&original), java_pairs(&after));
    assert_eq!(before_pairs.len(), after_pairs.len());
    assert!(before_pairs.len() >= 45, "dozens of keys");
    for ((kb, vb), (ka, va)) in before_pairs.iter().zip(&after_pairs) {
        assert_eq!(kb, ka);
        if kb == PASSWORD {
            assert_eq!(vb, "P\u{e4}ss=w0rd:x\\y\u{e9} ");
            let plain = decrypt_value(&key, PASSWORD, va).unwrap();
            assert_eq!(plain.expose_secret(), vb);
        } else {
            assert_eq!(vb, va, "{kb}");
        }
    }
    assert!(plaintext_secrets(&path, &SECRET_KEYS).unwrap().is_empty());
}

#[test]
fn second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "is.properties", &fixture("is.properties"));
    let key = key(7);
    encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    let hash = sha256(&fs::read(&path).unwrap());
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    let ino = inode(&path);

    let report = encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    assert!(!report.written);
    assert!(report.changed.is_empty());
    assert_eq!(report.unchanged.len(), 1);
    assert_eq!(sha256(&fs::read(&path).unwrap()), hash);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    assert_eq!(inode(&path), ino, "file must not be rewritten");
}

#[test]
fn security_properties_value_on_a_continuation_line() {
    let dir = tempfile::tempdir().unwrap();
    let original = fixture("security.properties");
    let path = write(dir.path(), "security.properties", &original);
    let key = key(9);
    let report = encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    assert_eq!(
        report.changed,
        [Occurrence {
            key: CLIENT_SECRET.into(),
            line: 5
        }]
    );
    assert_eq!(report.missing, [PASSWORD]);
    let after = fs::read(&path).unwrap();
    assert_eq!(normalize_enc(&after), fixture("security.properties.golden"));
    let enc = java_get(&after, CLIENT_SECRET).unwrap();
    assert_eq!(
        decrypt_value(&key, CLIENT_SECRET, &enc)
            .unwrap()
            .expose_secret(),
        "Xy7~Q\u{e9}\u{20ac}\u{e4}_abc=def.ghi"
    );
    assert_eq!(
        java_get(&original, CLIENT_SECRET).unwrap(),
        "Xy7~Q\u{e9}\u{20ac}\u{e4}_abc=def.ghi"
    );
    // Other keys unchanged.
    let other = |b: &[u8]| {
        java_pairs(b)
            .into_iter()
            .filter(|(k, _)| k != CLIENT_SECRET)
            .collect::<Vec<_>>()
    };
    assert_eq!(other(&original), other(&after));
    // Idempotent.
    let hash = sha256(&after);
    assert!(!encrypt_file(&path, &SECRET_KEYS, &key).unwrap().written);
    assert_eq!(sha256(&fs::read(&path).unwrap()), hash);
}

#[cfg(unix)]
fn inode(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).unwrap().ino()
}

#[cfg(not(unix))]
fn inode(_p: &std::path::Path) -> u64 {
    0
}
