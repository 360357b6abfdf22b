//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use mailgate_secrets::SecretKey;
use sha2::{Digest, Sha256};

pub const PASSWORD: &str = "mksis.logging.emailfrom.password";
pub const CLIENT_SECRET: &str = "mksis.security.smtp.oauth.clientSecret";

pub fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// The file as Java (and mailgate-core) reads it: every pair, in order.
/// (`mailgate-properties` is checked against Java itself in its tests.)
pub fn java_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    mailgate_properties::parse(bytes)
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.key, e.value.to_string()))
        .collect()
}

/// The effective value of `key` (Java: the last occurrence wins).
pub fn java_get(bytes: &[u8], key: &str) -> Option<String> {
    java_pairs(bytes)
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces every `ENC(v1:<base64url>)` by `ENC(*)`.
pub fn normalize_enc(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"ENC(v1:") {
            let mut j = i + 7;
            while j < bytes.len()
                && (bytes[j].is_ascii_alphanumeric() || matches!(bytes[j], b'-' | b'_'))
            {
                j += 1;
            }
            assert_eq!(bytes.get(j), Some(&b')'), "unterminated ENC value");
            out.extend_from_slice(b"ENC(*)");
            i = j + 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// All `ENC(v1:...)` values in the bytes, in order.
pub fn enc_values(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut rest = &text[..];
    while let Some(i) = rest.find("ENC(v1:") {
        let j = rest[i..].find(')').unwrap() + i;
        out.push(rest[i..=j].to_owned());
        rest = &rest[j + 1..];
    }
    out
}

pub fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes([b; 32])
}

#[cfg(unix)]
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
pub fn chmod(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

/// The secret keys mailgate's built-in strategies declare.
pub const SECRET_KEYS: [&str; 2] = [
    "mksis.logging.emailfrom.password",
    "mksis.security.smtp.oauth.clientSecret",
];
