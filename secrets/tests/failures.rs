//! Failure modes (tampering, a value moved to another key, another key
//! file, a wrong old key on rotation) and `--check`/rotation behaviour. No
//! error or Debug output may contain a secret.

mod common;

use std::fs;

use common::*;
use mailgate_secrets::{
    Error, Occurrence, SecretKey, ValueState, decrypt_value, encrypt_file, encrypt_files,
    find_secrets, plaintext_secrets, rotate_file, rotate_files,
};
use secrecy::ExposeSecret;

const PW: &str = "Tr0ub4dor&3-horse";
const CS: &str = "client~secret~value~42";

fn setup() -> (tempfile::TempDir, std::path::PathBuf, SecretKey) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "# test\r\nmksis.logging.email.from=a@example.com\r\n\
         mksis.logging.emailfrom.password={PW}\r\n\
         mksis.security.smtp.oauth.clientSecret = {CS}\r\n"
    );
    let path = write(dir.path(), "is.properties", text.as_bytes());
    let key = SecretKey::create(dir.path().join("mailgate.key")).unwrap();
    encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    (dir, path, key)
}

/// Asserts the text shows no secret.
fn clean(what: &str, text: &str) {
    for s in [PW, CS, "Tr0ub4dor", "horse", "client~secret"] {
        assert!(!text.contains(s), "{what} leaks {s:?}: {text}");
    }
}

fn check_error(e: &Error) {
    clean("error", &e.to_string());
    clean("error Debug", &format!("{e:?}"));
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        clean("error source", &s.to_string());
        src = s.source();
    }
}

#[test]
fn tampered_ciphertext_fails() {
    let (_d, path, key) = setup();
    let bytes = fs::read(&path).unwrap();
    let v = java_get(&bytes, PASSWORD).unwrap();
    // Change one base64 character in the middle of the ciphertext.
    let mid = v.len() / 2 + 10;
    let c = v.as_bytes()[mid];
    let repl = if c == b'A' { "B" } else { "A" };
    let bad = format!("{}{}{}", &v[..mid], repl, &v[mid + 1..]);
    let e = decrypt_value(&key, PASSWORD, &bad).unwrap_err();
    assert!(matches!(e, Error::Tampered { .. }), "{e}");
    check_error(&e);

    // In the file, encrypt refuses to go on, naming the file and line, and
    // leaves the file alone.
    let text = String::from_utf8(bytes).unwrap().replace(&v, &bad);
    fs::write(&path, &text).unwrap();
    let e = encrypt_file(&path, &SECRET_KEYS, &key).unwrap_err();
    assert!(matches!(e, Error::Tampered { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!("{}:3", path.display())),
        "{e}"
    );
    assert!(e.to_string().contains(PASSWORD), "{e}");
    check_error(&e);
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    // Truncated value: malformed.
    let e = decrypt_value(&key, PASSWORD, &format!("{})", &v[..20])).unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "{e}");
    check_error(&e);
}

#[test]
fn value_moved_to_another_key_fails() {
    let (_d, path, key) = setup();
    let bytes = fs::read(&path).unwrap();
    let pw_enc = java_get(&bytes, PASSWORD).unwrap();
    let e = decrypt_value(&key, CLIENT_SECRET, &pw_enc).unwrap_err();
    assert!(matches!(e, Error::WrongProperty { .. }), "{e}");
    assert!(e.to_string().contains(CLIENT_SECRET));
    check_error(&e);

    // Swap the two values in the file: both fail.
    let cs_enc = java_get(&bytes, CLIENT_SECRET).unwrap();
    let text = String::from_utf8(bytes)
        .unwrap()
        .replace(&pw_enc, "@@PW@@")
        .replace(&cs_enc, &pw_enc)
        .replace("@@PW@@", &cs_enc);
    fs::write(&path, &text).unwrap();
    let e = encrypt_file(&path, &SECRET_KEYS, &key).unwrap_err();
    assert!(matches!(e, Error::WrongProperty { .. }), "{e}");
    check_error(&e);
}

#[test]
fn another_key_file_fails() {
    let (d, path, key) = setup();
    let other = SecretKey::create(d.path().join("other.key")).unwrap();
    let bytes = fs::read(&path).unwrap();
    let v = java_get(&bytes, PASSWORD).unwrap();
    let e = decrypt_value(&other, PASSWORD, &v).unwrap_err();
    match &e {
        Error::WrongKey { found, key: k, .. } => {
            assert_eq!(found, &key.id());
            assert_eq!(k.id, other.id());
        }
        _ => panic!("{e}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("other.key") && msg.contains(&key.id()) && msg.contains(&other.id()),
        "{msg}"
    );
    check_error(&e);

    // encrypt with the other key refuses to mix keys in one file.
    let e = encrypt_file(&path, &SECRET_KEYS, &other).unwrap_err();
    assert!(matches!(e, Error::WrongKey { .. }), "{e}");
    check_error(&e);
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn check_lists_plaintext_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let text = "a=1\n\nmksis.logging.emailfrom.password = pw\nb=\\\n  2\nmksis.security.smtp.oauth.clientSecret=ENC(v1:AAAA)\n";
    let path = write(dir.path(), "c.properties", text.as_bytes());
    let found = plaintext_secrets(&path, &SECRET_KEYS).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].key.as_str(), found[0].line), (PASSWORD, 3));
    let dbg = format!("{found:?}");
    assert!(!dbg.contains("pw\""), "{dbg}");
    // Missing file.
    let e = plaintext_secrets(dir.path().join("none"), &SECRET_KEYS).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
}

#[test]
fn parse_errors_name_file_and_line_not_value() {
    let dir = tempfile::tempdir().unwrap();
    let text = "a=1\nmksis.logging.emailfrom.password=Tr0ub4dor\\uXYZW\n";
    let path = write(dir.path(), "p.properties", text.as_bytes());
    let e = encrypt_file(&path, &SECRET_KEYS, &common::key(1)).unwrap_err();
    assert!(matches!(e, Error::Parse { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("p.properties:2"), "{e}");
    check_error(&e);
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn rotate_reencrypts_everything_and_is_rerunnable() {
    let (d, path, old) = setup();
    let new = SecretKey::create(d.path().join("new.key")).unwrap();
    // A plaintext duplicate is reported, not touched.
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str("mksis.logging.emailfrom.password=\n");
    fs::write(&path, &text).unwrap();

    let r = rotate_file(&path, &SECRET_KEYS, &old, &new).unwrap();
    assert!(r.written);
    assert_eq!(r.changed.len(), 2);
    assert_eq!(r.empty.len(), 1);
    let after = fs::read(&path).unwrap();
    let pairs = java_pairs(&after);
    let pw = &pairs.iter().find(|(k, _)| k == PASSWORD).unwrap().1;
    assert_eq!(
        decrypt_value(&new, PASSWORD, pw).unwrap().expose_secret(),
        PW
    );
    let cs = java_get(&after, CLIENT_SECRET).unwrap();
    assert_eq!(
        decrypt_value(&new, CLIENT_SECRET, &cs)
            .unwrap()
            .expose_secret(),
        CS
    );
    assert!(matches!(
        decrypt_value(&old, CLIENT_SECRET, &cs),
        Err(Error::WrongKey { .. })
    ));
    // Only the ENC values changed.
    assert_eq!(normalize_enc(&after), normalize_enc(text.as_bytes()));

    // Run again: nothing to do, file untouched.
    let hash = sha256(&after);
    let r = rotate_file(&path, &SECRET_KEYS, &old, &new).unwrap();
    assert!(!r.written);
    assert_eq!(r.unchanged.len(), 2);
    assert_eq!(sha256(&fs::read(&path).unwrap()), hash);

    // Plaintext is reported, not encrypted, by rotate.
    fs::write(&path, "mksis.logging.emailfrom.password=plain\n").unwrap();
    let r = rotate_file(&path, &SECRET_KEYS, &old, &new).unwrap();
    assert_eq!(r.plaintext.len(), 1);
    assert!(!r.written);
}

#[test]
fn rotate_with_wrong_old_key_writes_nothing() {
    let (d, path, old) = setup();
    let new = SecretKey::create(d.path().join("new.key")).unwrap();
    let wrong = SecretKey::create(d.path().join("wrong.key")).unwrap();
    let before = fs::read(&path).unwrap();
    let e = rotate_file(&path, &SECRET_KEYS, &wrong, &new).unwrap_err();
    assert!(matches!(e, Error::WrongKey { .. }), "{e}");
    check_error(&e);
    assert_eq!(fs::read(&path).unwrap(), before);

    // First value fine, second damaged: still nothing written.
    let cs = java_get(&before, CLIENT_SECRET).unwrap();
    let damaged = format!("{}A)", &cs[..cs.len() - 2]);
    let damaged = if damaged == cs {
        format!("{}B)", &cs[..cs.len() - 2])
    } else {
        damaged
    };
    let text = String::from_utf8(before).unwrap().replace(&cs, &damaged);
    fs::write(&path, &text).unwrap();
    let e = rotate_file(&path, &SECRET_KEYS, &old, &new).unwrap_err();
    assert!(
        matches!(e, Error::Tampered { .. } | Error::Format { .. }),
        "{e}"
    );
    assert!(e.to_string().contains(":4"), "{e}");
    check_error(&e);
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    let _ = old;
}

#[test]
fn reports_and_debug_hold_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "mksis.logging.emailfrom.password={PW}\nmksis.security.smtp.oauth.clientSecret={CS}\n"
    );
    let path = write(dir.path(), "r.properties", text.as_bytes());
    let key = common::key(8);
    clean(
        "check",
        &format!("{:?}", plaintext_secrets(&path, &SECRET_KEYS).unwrap()),
    );
    let r = encrypt_file(&path, &SECRET_KEYS, &key).unwrap();
    clean("report", &format!("{r:?}"));
    let after = fs::read(&path).unwrap();
    let s = decrypt_value(&key, PASSWORD, &java_get(&after, PASSWORD).unwrap()).unwrap();
    clean("SecretString Debug", &format!("{s:?}"));
    clean("key Debug", &format!("{key:?}"));
    clean("file", &String::from_utf8(after).unwrap());
}

#[test]
fn mixed_encoding_file_is_refused_not_corrupted() {
    // The only non-UTF-8 byte is in the password; `name` holds UTF-8 bytes
    // that, in this ISO-8859-1 file, read as "Ã©". Encrypting would make
    // the file valid UTF-8 and `name` read as "é": refused, file untouched.
    let dir = tempfile::tempdir().unwrap();
    let text = b"name=caf\xc3\xa9\nmksis.logging.emailfrom.password=p\xe4ss\n";
    let path = write(dir.path(), "m.properties", text);
    let e = encrypt_file(&path, &SECRET_KEYS, &common::key(1)).unwrap_err();
    assert!(matches!(e, Error::Parse { line: 1, .. }), "{e}");
    assert!(e.to_string().contains("one encoding"), "{e}");
    check_error(&e);
    assert_eq!(fs::read(&path).unwrap(), text);
}

#[test]
fn undecodable_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for text in [
        // A lone surrogate escape: Java keeps it, a Rust string cannot.
        &b"a=1\nmksis.logging.emailfrom.password=Tr0ub\\uD800dor\n"[..],
        // A UTF-8 file holding U+FFFD: an earlier bad conversion.
        "a=1\nmksis.logging.emailfrom.password=Tr0ub\u{fffd}dor\n".as_bytes(),
    ] {
        let path = write(dir.path(), "u.properties", text);
        let e = encrypt_file(&path, &SECRET_KEYS, &common::key(1)).unwrap_err();
        assert!(matches!(e, Error::Undecodable { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(PASSWORD) && msg.contains("u.properties:2") && msg.contains("U+FFFD"),
            "{msg}"
        );
        check_error(&e);
        assert_eq!(fs::read(&path).unwrap(), text);
    }
}

#[test]
fn encrypt_files_writes_nothing_when_any_file_fails() {
    let (d, second, key) = setup();
    // The second file holds a value under another key: the first file,
    // named before it, must stay plaintext.
    let other = SecretKey::create(d.path().join("other.key")).unwrap();
    let text = format!("mksis.logging.emailfrom.password={PW}\n");
    let first = write(d.path(), "first.properties", text.as_bytes());
    let before = fs::read(&second).unwrap();
    let e = encrypt_files(&[&first, &second], &SECRET_KEYS, &other).unwrap_err();
    assert!(matches!(e, Error::WrongKey { .. }), "{e}");
    check_error(&e);
    assert_eq!(fs::read_to_string(&first).unwrap(), text);
    assert_eq!(fs::read(&second).unwrap(), before);

    // With the right key both are done, and a file named twice once.
    let reports = encrypt_files(&[&first, &second, &first], &SECRET_KEYS, &key).unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports[0].written && !reports[1].written);
    assert!(plaintext_secrets(&first, &SECRET_KEYS).unwrap().is_empty());
}

#[test]
fn rotate_files_writes_nothing_when_any_file_fails() {
    let (d, first, old) = setup();
    let new = SecretKey::create(d.path().join("new.key")).unwrap();
    let second = d.path().join("second.properties");
    fs::copy(&first, &second).unwrap();
    // Damage a value in the second file.
    let text = fs::read_to_string(&second).unwrap();
    let cs = java_get(text.as_bytes(), CLIENT_SECRET).unwrap();
    let bad = format!(
        "{}{})",
        &cs[..cs.len() - 3],
        if cs.ends_with("A)") { "BB" } else { "AA" }
    );
    fs::write(&second, text.replace(&cs, &bad)).unwrap();
    let before = (fs::read(&first).unwrap(), fs::read(&second).unwrap());
    let e = rotate_files(&[&first, &second], &SECRET_KEYS, &old, &new).unwrap_err();
    assert!(
        matches!(e, Error::Tampered { .. } | Error::Format { .. }),
        "{e}"
    );
    check_error(&e);
    assert_eq!(
        (fs::read(&first).unwrap(), fs::read(&second).unwrap()),
        before
    );
    // The first file still decrypts with the old key.
    let v = java_get(&before.0, PASSWORD).unwrap();
    assert_eq!(
        decrypt_value(&old, PASSWORD, &v).unwrap().expose_secret(),
        PW
    );

    fs::write(&second, &text).unwrap();
    let reports = rotate_files(&[&first, &second], &SECRET_KEYS, &old, &new).unwrap();
    assert!(reports.iter().all(|r| r.written && r.changed.len() == 2));
}

#[test]
fn find_secrets_tells_the_states_apart() {
    let dir = tempfile::tempdir().unwrap();
    let text = "mksis.logging.emailfrom.password=\nx=1\nmksis.logging.emailfrom.password=pw\n\
                mksis.security.smtp.oauth.clientSecret=ENC(v1:AAAA)\n";
    let path = write(dir.path(), "f.properties", text.as_bytes());
    let found = find_secrets(&path, &SECRET_KEYS).unwrap();
    let occ = |key: &str, line| Occurrence {
        key: key.into(),
        line,
    };
    assert_eq!(
        found,
        [
            (occ(PASSWORD, 1), ValueState::Empty),
            (occ(PASSWORD, 3), ValueState::Plaintext),
            (occ(CLIENT_SECRET, 4), ValueState::Encrypted),
        ]
    );
    assert!(!format!("{found:?}").contains("pw\""));
}
