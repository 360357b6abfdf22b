//! Round trips for both secret properties: whatever Java decodes from the
//! plaintext line is exactly what decrypts from the ENC value, and only the
//! value bytes change.

mod common;

use std::fs;

use common::*;
use mailgate_secrets::{decrypt_value, encrypt_file, plaintext_secrets};
use secrecy::ExposeSecret;

/// (raw value bytes as written in the file, what Java decodes)
fn cases() -> Vec<(Vec<u8>, String)> {
    let mut v: Vec<(Vec<u8>, String)> = vec![
        (br"p\=a\:s\ s".to_vec(), "p=a:s s".into()),
        (br"secret\ ".to_vec(), "secret ".into()),
        (br"trailing  ".to_vec(), "trailing  ".into()),
        (
            br"\u00e9t\u00E9\u20ac".to_vec(),
            "\u{e9}t\u{e9}\u{20ac}".into(),
        ),
        (br"a\\b\\\\c".to_vec(), r"a\b\\c".into()),
        (br"\#not-a-comment".to_vec(), "#not-a-comment".into()),
        (b"#hash!bang".to_vec(), "#hash!bang".into()),
        (br"\  leading-space".to_vec(), "  leading-space".into()),
        (br"tab\there\nnl".to_vec(), "tab\there\nnl".into()),
        (b"b=c:d e".to_vec(), "b=c:d e".into()),
        (b"ENCx(not-enc".to_vec(), "ENCx(not-enc".into()),
        (
            b"\"quoted\" 'single'".to_vec(),
            "\"quoted\" 'single'".into(),
        ),
        (
            "\u{43f}\u{430}\u{440}\u{43e}\u{43b}\u{44c}\u{20ac}\u{1f511}"
                .as_bytes()
                .to_vec(),
            "\u{43f}\u{430}\u{440}\u{43e}\u{43b}\u{44c}\u{20ac}\u{1f511}".into(),
        ),
        (b"x".repeat(2000), "x".repeat(2000)),
    ];
    // ISO-8859-1 bytes, not valid UTF-8: é, and 0x80, which Java reads as
    // U+0080 (not windows-1252's €).
    v.push((b"caf\xe9 \x80".to_vec(), "caf\u{e9} \u{80}".into()));
    v
}

#[test]
fn both_secrets_all_values_all_separators_and_line_endings() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(3);
    let mut n = 0;
    for prop in SECRET_KEYS {
        for (raw, expected) in cases() {
            for sep in [&b"="[..], b" = ", b":", b" ", b"\t:\t"] {
                for eol in [&b"\n"[..], b"\r\n", b"\r"] {
                    n += 1;
                    let mut before = Vec::new();
                    before.extend_from_slice(b"# header");
                    before.extend_from_slice(eol);
                    before.extend_from_slice(b"other = 1");
                    before.extend_from_slice(eol);
                    let prefix_len = before.len() + prop.len() + sep.len();
                    before.extend_from_slice(prop.as_bytes());
                    before.extend_from_slice(sep);
                    before.extend_from_slice(&raw);
                    let suffix_start = before.len();
                    before.extend_from_slice(eol);
                    before.extend_from_slice(b"after:2");
                    before.extend_from_slice(eol);
                    let ctx = format!(
                        "{prop} {:?} sep {:?} eol {:?}",
                        String::from_utf8_lossy(&raw),
                        sep,
                        eol
                    );
                    assert_eq!(
                        java_get(&before, prop).as_deref(),
                        Some(&expected[..]),
                        "{ctx}"
                    );

                    let path = write(dir.path(), &format!("f{n}.properties"), &before);
                    let report = encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
                    assert_eq!(report.changed.len(), 1, "{ctx}");
                    assert_eq!(report.changed[0].line, 3, "{ctx}");
                    let after = fs::read(&path).unwrap();

                    // Exactly the value bytes replaced.
                    let enc = enc_values(&after);
                    assert_eq!(enc.len(), 1, "{ctx}");
                    let mut expect = before[..prefix_len].to_vec();
                    expect.extend_from_slice(enc[0].as_bytes());
                    expect.extend_from_slice(&before[suffix_start..]);
                    assert_eq!(after, expect, "{ctx}");

                    // Java reads the ENC value; it decrypts to the plaintext.
                    let value = java_get(&after, prop).unwrap();
                    assert_eq!(value, enc[0], "{ctx}");
                    let plain = decrypt_value(&key, prop, &value).unwrap();
                    assert_eq!(plain.expose_secret(), expected, "{ctx}");
                    assert_eq!(java_get(&after, "other").as_deref(), Some("1"));
                    assert_eq!(java_get(&after, "after").as_deref(), Some("2"));

                    // Idempotent.
                    assert!(
                        !encrypt_file(&path, &SECRET_KEYS, &key).unwrap().written,
                        "{ctx}"
                    );
                    assert_eq!(fs::read(&path).unwrap(), after);
                }
            }
        }
    }
}

#[test]
fn file_without_final_newline_and_key_with_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(4);
    // The key spelled with an escape decodes to the secret's name.
    let path = write(
        dir.path(),
        "a.properties",
        b"a=1\nmksis.logging.emailfrom\\.password=pw",
    );
    let r = encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    assert_eq!(r.changed.len(), 1);
    let after = fs::read(&path).unwrap();
    assert!(after.starts_with(b"a=1\nmksis.logging.emailfrom\\.password=ENC(v1:"));
    assert!(after.ends_with(b")"));
    let v = java_get(&after, PASSWORD).unwrap();
    assert_eq!(
        decrypt_value(&key, PASSWORD, &v).unwrap().expose_secret(),
        "pw"
    );
}

#[test]
fn duplicates_all_encrypted_last_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(5);
    let text = "mksis.logging.emailfrom.password=old\nx=1\nmksis.logging.emailfrom.password=new\n";
    let path = write(dir.path(), "d.properties", text.as_bytes());
    let check = plaintext_secrets(&path, &SECRET_KEYS).unwrap();
    assert_eq!(check.iter().map(|o| o.line).collect::<Vec<_>>(), [1, 3]);
    let r = encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    assert_eq!(r.changed.iter().map(|o| o.line).collect::<Vec<_>>(), [1, 3]);
    let after = fs::read(&path).unwrap();
    let values: Vec<_> = java_pairs(&after)
        .into_iter()
        .filter(|(k, _)| k == PASSWORD)
        .map(|(_, v)| {
            decrypt_value(&key, PASSWORD, &v)
                .unwrap()
                .expose_secret()
                .to_owned()
        })
        .collect();
    assert_eq!(values, ["old", "new"]);
    let effective = java_get(&after, PASSWORD).unwrap();
    assert_eq!(
        decrypt_value(&key, PASSWORD, &effective)
            .unwrap()
            .expose_secret(),
        "new"
    );
    assert!(plaintext_secrets(&path, &SECRET_KEYS).unwrap().is_empty());
}

#[test]
fn empty_values_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let text = "mksis.logging.emailfrom.password=\nmksis.security.smtp.oauth.clientSecret =   \n";
    let path = write(dir.path(), "e.properties", text.as_bytes());
    let r = encrypt_file(&path, &SECRET_KEYS, &key(1)).unwrap();
    assert!(!r.written);
    assert_eq!(r.empty.len(), 2);
    assert!(plaintext_secrets(&path, &SECRET_KEYS).unwrap().is_empty());
    assert_eq!(fs::read(&path).unwrap(), text.as_bytes());
}

#[test]
fn only_listed_keys_are_touched() {
    let dir = tempfile::tempdir().unwrap();
    let text = "mksis.logging.emailfrom.password=a\nmksis.security.smtp.oauth.clientSecret=b\n";
    let path = write(dir.path(), "o.properties", text.as_bytes());
    let r = encrypt_file(&path, &[CLIENT_SECRET], &key(1)).unwrap();
    assert_eq!(r.changed.len(), 1);
    let after = fs::read(&path).unwrap();
    assert_eq!(java_get(&after, PASSWORD).as_deref(), Some("a"));
    assert!(
        java_get(&after, CLIENT_SECRET)
            .unwrap()
            .starts_with("ENC(v1:")
    );
}

#[cfg(unix)]
#[test]
fn permissions_kept_and_symlink_followed() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let real = write(
        dir.path(),
        "real.properties",
        b"mksis.logging.emailfrom.password=pw\n",
    );
    chmod(&real, 0o640);
    let link = dir.path().join("link.properties");
    symlink(&real, &link).unwrap();
    encrypt_file(&link, &SECRET_KEYS, &key(2)).unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(mode(&real), 0o640);
    assert!(fs::read_to_string(&real).unwrap().contains("ENC(v1:"));
    // No temporary file left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn dangling_backslash_at_end_of_file() {
    // Java reads `pw` (the dangling backslash is dropped); so do we.
    let dir = tempfile::tempdir().unwrap();
    let key = key(6);
    let path = write(
        dir.path(),
        "z.properties",
        b"x=1\nmksis.logging.emailfrom.password=pw\\",
    );
    assert_eq!(plaintext_secrets(&path, &SECRET_KEYS).unwrap().len(), 1);
    encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    let after = fs::read(&path).unwrap();
    assert!(after.starts_with(b"x=1\nmksis.logging.emailfrom.password=ENC(v1:"));
    assert!(after.ends_with(b")"));
    let v = java_get(&after, PASSWORD).unwrap();
    assert_eq!(
        decrypt_value(&key, PASSWORD, &v).unwrap().expose_secret(),
        "pw"
    );
    // An unrelated key with a dangling backslash does not get in the way.
    let path = write(
        dir.path(),
        "y.properties",
        b"mksis.logging.emailfrom.password=pw\nx=1\\",
    );
    encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    assert!(fs::read(&path).unwrap().ends_with(b")\nx=1\\"));
}

#[test]
fn bom_and_a_latin1_byte_encrypt_what_loading_reads() {
    // A BOM, then ISO-8859-1: é is one byte 0xE9. mailgate-core reads "café"
    // (mailgate-properties), so that is what must be encrypted, not U+FFFD.
    let dir = tempfile::tempdir().unwrap();
    let key = key(10);
    let before = b"\xEF\xBB\xBF# c\nmksis.logging.emailfrom.password=caf\xe9\nname=Ren\xe9\n";
    let path = write(dir.path(), "b.properties", before);
    let r = encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    assert_eq!(r.changed.len(), 1);
    let after = fs::read(&path).unwrap();
    assert!(after.starts_with(b"\xEF\xBB\xBF# c\nmksis.logging.emailfrom.password=ENC(v1:"));
    assert!(after.ends_with(b")\nname=Ren\xe9\n"));
    let v = java_get(&after, PASSWORD).unwrap();
    assert_eq!(
        decrypt_value(&key, PASSWORD, &v).unwrap().expose_secret(),
        "caf\u{e9}"
    );
    assert_eq!(java_get(&after, "name").as_deref(), Some("Ren\u{e9}"));
}

#[test]
fn continuation_into_an_empty_line_keeps_every_other_byte() {
    // `pw\` continues into the empty line, which ends the value: only
    // `pw\` is replaced; the empty line and both terminators stay.
    let dir = tempfile::tempdir().unwrap();
    let key = key(11);
    for (before, prefix, suffix) in [
        (
            &b"mksis.logging.emailfrom.password=pw\\\n\nx=1\n"[..],
            &b"mksis.logging.emailfrom.password="[..],
            &b"\n\nx=1\n"[..],
        ),
        (
            b"mksis.logging.emailfrom.password = pw\\\r\n   \r\nx=1",
            b"mksis.logging.emailfrom.password = ",
            b"\r\n   \r\nx=1",
        ),
    ] {
        let path = write(dir.path(), "c.properties", before);
        assert_eq!(java_get(before, PASSWORD).as_deref(), Some("pw"));
        encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
        let after = fs::read(&path).unwrap();
        let enc = enc_values(&after);
        let mut expect = prefix.to_vec();
        expect.extend_from_slice(enc[0].as_bytes());
        expect.extend_from_slice(suffix);
        assert_eq!(after, expect);
        assert_eq!(java_get(&after, "x").as_deref(), Some("1"));
        let v = java_get(&after, PASSWORD).unwrap();
        assert_eq!(
            decrypt_value(&key, PASSWORD, &v).unwrap().expose_secret(),
            "pw"
        );
    }
}

#[cfg(unix)]
#[test]
fn hard_links_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "h.properties",
        b"mksis.logging.emailfrom.password=pw\n",
    );
    let other = dir.path().join("backup.properties");
    fs::hard_link(&path, &other).unwrap();
    let r = encrypt_file(&path, &SECRET_KEYS, &key(12)).unwrap();
    assert!(r.written);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("2 hard links"), "{:?}", r.warnings);
    assert!(!r.warnings[0].contains("pw\n"));
    // What the warning is about: the other name still has the plaintext.
    assert_eq!(
        java_get(&fs::read(&other).unwrap(), PASSWORD).as_deref(),
        Some("pw")
    );
    // A file with one link: no warning.
    let r = encrypt_file(&other, &SECRET_KEYS, &key(12)).unwrap();
    assert!(r.written && r.warnings.is_empty(), "{:?}", r.warnings);
}

#[cfg(unix)]
#[test]
fn owner_and_group_are_kept_where_allowed() {
    use std::os::unix::fs::{MetadataExt, chown};
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "o.properties",
        b"mksis.logging.emailfrom.password=pw\n",
    );
    let me = fs::metadata(&path).unwrap();
    // As root, give the file away and see it kept; as a user, the file
    // stays ours and nothing is to be kept.
    let want = if me.uid() == 0 {
        chown(&path, Some(4321), Some(8765)).unwrap();
        (4321, 8765)
    } else {
        (me.uid(), me.gid())
    };
    let r = encrypt_file(&path, &SECRET_KEYS, &key(13)).unwrap();
    assert!(r.written && r.warnings.is_empty(), "{:?}", r.warnings);
    let after = fs::metadata(&path).unwrap();
    assert_eq!((after.uid(), after.gid()), want);
}
