//! Key files: creation (0600, atomic, never overwriting), loading, refusal
//! of loose permissions, format errors, and no key bytes in Debug or errors.

mod common;

use std::fs;

use common::*;
use mailgate_secrets::{Error, KeyOrigin, SecretKey, decrypt_value, encrypt_value};
use secrecy::ExposeSecret;

fn key_hex(path: &std::path::Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    assert_eq!(line.len(), 64);
    assert!(line.bytes().all(|c| c.is_ascii_hexdigit()));
    line.to_owned()
}

#[test]
fn load_or_create_creates_0600_then_loads_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/mailgate.key");
    let (k1, origin) = SecretKey::load_or_create(&path).unwrap();
    assert_eq!(origin, KeyOrigin::Created);
    assert_eq!(k1.file(), Some(path.as_path()));
    #[cfg(unix)]
    {
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()) & 0o077, 0);
    }
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# mailgate secrets key"));
    let hex = key_hex(&path);

    let (k2, origin) = SecretKey::load_or_create(&path).unwrap();
    assert_eq!(origin, KeyOrigin::Loaded);
    assert_eq!(k1.id(), k2.id());
    let v = encrypt_value(&k1, PASSWORD, "pw").unwrap();
    assert_eq!(
        decrypt_value(&k2, PASSWORD, &v).unwrap().expose_secret(),
        "pw"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), text, "not rewritten");

    // Debug shows the id and file, never the key.
    for dbg in [format!("{k1:?}"), format!("{k2:#?}")] {
        assert!(dbg.contains(&k1.id()), "{dbg}");
        assert!(!dbg.to_lowercase().contains(&hex[..16]), "{dbg}");
    }
    // No temporary file left behind.
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn create_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    SecretKey::create(&path).unwrap();
    let before = fs::read(&path).unwrap();
    let e = SecretKey::create(&path).unwrap_err();
    assert!(matches!(e, Error::KeyFileExists { .. }), "{e}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[cfg(unix)]
#[test]
fn loose_permissions_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailgate.key");
    SecretKey::create(&path).unwrap();
    let hex = key_hex(&path);
    for m in [0o644, 0o640, 0o604, 0o660, 0o601, 0o610] {
        chmod(&path, m);
        let e = SecretKey::load(&path).unwrap_err();
        assert!(
            matches!(e, Error::KeyFilePermissions { mode, .. } if mode == m),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
        assert!(msg.contains(&format!("{m:04o}")), "{msg}");
        assert!(!msg.contains(&hex[..16]) && !format!("{e:?}").contains(&hex[..16]));
        // load_or_create refuses it too (and does not replace it).
        assert!(matches!(
            SecretKey::load_or_create(&path),
            Err(Error::KeyFilePermissions { .. })
        ));
    }
    for m in [0o600, 0o400] {
        chmod(&path, m);
        SecretKey::load(&path).unwrap();
    }
}

#[test]
fn missing_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.key");
    let e = SecretKey::load(&path).unwrap_err();
    assert!(matches!(e, Error::KeyFileMissing { .. }));
    assert!(e.to_string().contains(&path.display().to_string()));
    assert!(!path.exists(), "load must not create");
}

#[test]
fn hand_made_key_file_and_format_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let hex = "0123456789abcdef".repeat(4);
    let write_private = |text: &[u8]| {
        fs::write(&path, text).unwrap();
        #[cfg(unix)]
        chmod(&path, 0o600);
    };
    write_private(format!("{}\n", hex.to_uppercase()).as_bytes());
    let k = SecretKey::load(&path).unwrap();
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    assert_eq!(k.id(), SecretKey::from_bytes(bytes).id());

    let secret_looking = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75e";
    for bad in [
        &b""[..],
        b"# nothing\n",
        b"abc\n",
        secret_looking.as_bytes(),
        b"\xff\xfe\xfd",
    ] {
        write_private(bad);
        let e = SecretKey::load(&path).unwrap_err();
        assert!(matches!(e, Error::KeyFileFormat { .. }), "{e}");
        assert!(!format!("{e} {e:?}").contains("5ec7e7"), "{e}");
    }
    write_private(format!("{hex}\n{hex}\n").as_bytes());
    assert!(matches!(
        SecretKey::load(&path),
        Err(Error::KeyFileFormat { .. })
    ));
    write_private(&vec![b'#'; 10_000]);
    assert!(matches!(
        SecretKey::load(&path),
        Err(Error::KeyFileFormat { .. })
    ));
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fifo.key");
    let status = std::process::Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || tx.send(SecretKey::load(&p).map(|_| ())));
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("loading a FIFO as key file blocked");
    let e = result.unwrap_err();
    assert!(
        matches!(e, Error::KeyFileFormat { reason, .. } if reason == "not a regular file"),
        "{e}"
    );
}
