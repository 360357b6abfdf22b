//! `rotate_key` stopped at every step (a crash), then `recover_rotation`:
//! afterwards the key file holds exactly one key, no pending or temporary
//! file is left, and every value decrypts with that key. Also: while the
//! rotation is unfinished every value decrypts with the old or the pending
//! key; a second rotation waits for the recovery; temporary files a killed
//! run left are removed.

mod common;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{CLIENT_SECRET, PASSWORD, SECRET_KEYS, java_get, write};
use mailgate_secrets::{
    Error, RotationStep, SecretKey, decrypt_value, encrypt_files, pending_key, pending_key_path,
    recover_rotation, remove_stale_temp_files, rotate_key, rotate_key_with_hook,
};
use secrecy::ExposeSecret;

const IS: &str =
    "# is\nmksis.logging.email.from=alm@example.com\nmksis.logging.emailfrom.password=Pa55-w0rd\n";
const SECURITY: &str = "# security\nmksis.security.smtp.oauth.clientID=id\nmksis.security.smtp.oauth.clientSecret=Cl1ent-S3cret\n";

/// A config folder with both secrets encrypted under `mailgate.key`.
struct Folder {
    dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    key_file: PathBuf,
}

impl Folder {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            write(dir.path(), "is.properties", IS.as_bytes()),
            write(dir.path(), "security.properties", SECURITY.as_bytes()),
        ];
        let key_file = dir.path().join("mailgate.key");
        let key = SecretKey::create(&key_file).unwrap();
        encrypt_files(&files, &SECRET_KEYS, &key).unwrap();
        Folder {
            dir,
            files,
            key_file,
        }
    }

    fn value(&self, file: usize, key: &str) -> String {
        java_get(&fs::read(&self.files[file]).unwrap(), key).unwrap()
    }

    /// Every value decrypts to its secret with `key`.
    #[track_caller]
    fn assert_all_under(&self, key: &SecretKey) {
        for (file, prop, secret) in [
            (0, PASSWORD, "Pa55-w0rd"),
            (1, CLIENT_SECRET, "Cl1ent-S3cret"),
        ] {
            let plain = decrypt_value(key, prop, &self.value(file, prop))
                .unwrap_or_else(|e| panic!("{prop}: {e}"));
            assert_eq!(plain.expose_secret(), secret);
        }
    }

    /// Every value decrypts with the key file's key or the pending one.
    #[track_caller]
    fn assert_all_readable(&self) {
        let current = SecretKey::load(&self.key_file).unwrap();
        let pending = pending_key(&self.key_file).unwrap();
        for (file, prop) in [(0, PASSWORD), (1, CLIENT_SECRET)] {
            let value = self.value(file, prop);
            let ok = decrypt_value(&current, prop, &value).is_ok()
                || pending
                    .as_ref()
                    .is_some_and(|k| decrypt_value(k, prop, &value).is_ok());
            assert!(ok, "{prop} decrypts with neither key");
        }
    }

    /// The folder's files, sorted, apart from the properties files.
    fn others(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".properties"))
            .collect();
        names.sort();
        names
    }
}

/// Every point where a crash leaves something to recover.
const CRASH_POINTS: [RotationStep; 4] = [
    RotationStep::PendingWritten,
    RotationStep::FileRewritten(0),
    RotationStep::FileRewritten(1),
    RotationStep::KeyPromoted,
];

/// Runs a rotation that "crashes" (panics) right after `at`.
fn crash_at(folder: &Folder, new_key: &SecretKey, at: RotationStep) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        rotate_key_with_hook(
            &folder.key_file,
            &folder.files,
            &SECRET_KEYS,
            new_key,
            &mut |step| {
                if step == at {
                    panic!("crash after {step:?}");
                }
            },
        )
    }));
    assert!(result.is_err(), "the rotation did not reach {at:?}");
}

#[test]
fn a_rotation_killed_at_each_step_is_finished_by_recovery() {
    for at in CRASH_POINTS {
        let folder = Folder::new();
        let old = SecretKey::load(&folder.key_file).unwrap();
        let new_key = SecretKey::generate().unwrap();
        crash_at(&folder, &new_key, at);

        // Unfinished: the pending file is there, and every value decrypts
        // with one of the two keys.
        assert!(pending_key_path(&folder.key_file).exists(), "{at:?}");
        folder.assert_all_readable();
        // A new rotation does not start over an unfinished one.
        let e = rotate_key(
            &folder.key_file,
            &folder.files,
            &SECRET_KEYS,
            &SecretKey::generate().unwrap(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::RotationPending { .. }), "{at:?}: {e}");

        let done = recover_rotation(&folder.key_file, &SECRET_KEYS)
            .unwrap()
            .unwrap_or_else(|| panic!("{at:?}: nothing recovered"));
        assert_eq!(done.key.id(), new_key.id(), "{at:?}");

        // Exactly one key: the key file holds the new key, nothing else
        // holds key material, every value decrypts with it.
        assert_eq!(folder.others(), ["mailgate.key"], "{at:?}");
        let key = SecretKey::load(&folder.key_file).unwrap();
        assert_eq!(key.id(), new_key.id(), "{at:?}");
        folder.assert_all_under(&key);
        for (file, prop) in [(0, PASSWORD), (1, CLIENT_SECRET)] {
            assert!(decrypt_value(&old, prop, &folder.value(file, prop)).is_err());
        }
        // Nothing left to recover.
        assert!(
            recover_rotation(&folder.key_file, &SECRET_KEYS)
                .unwrap()
                .is_none()
        );
    }
}

#[test]
fn a_recovery_killed_midway_is_recovered_again() {
    let folder = Folder::new();
    let new_key = SecretKey::generate().unwrap();
    crash_at(&folder, &new_key, RotationStep::FileRewritten(0));
    // The recovery itself dies after the key file was replaced but before
    // the pending file was removed: the same state as a crash there.
    let pending = pending_key_path(&folder.key_file);
    let saved = fs::read(&pending).unwrap();
    recover_rotation(&folder.key_file, &SECRET_KEYS)
        .unwrap()
        .unwrap();
    fs::write(&pending, &saved).unwrap();
    set_private(&pending);
    recover_rotation(&folder.key_file, &SECRET_KEYS)
        .unwrap()
        .unwrap();
    assert_eq!(folder.others(), ["mailgate.key"]);
    folder.assert_all_under(&SecretKey::load(&folder.key_file).unwrap());
}

#[test]
fn a_complete_rotation_leaves_one_key_in_the_key_file() {
    let folder = Folder::new();
    let new_key = SecretKey::generate().unwrap();
    let mut steps = Vec::new();
    let done = rotate_key_with_hook(
        &folder.key_file,
        &folder.files,
        &SECRET_KEYS,
        &new_key,
        &mut |s| {
            steps.push(s);
        },
    )
    .unwrap();
    assert_eq!(
        steps,
        [
            RotationStep::PendingWritten,
            RotationStep::FileRewritten(0),
            RotationStep::FileRewritten(1),
            RotationStep::KeyPromoted,
            RotationStep::Done
        ]
    );
    assert_eq!(done.reports.len(), 2);
    assert_eq!(folder.others(), ["mailgate.key"]);
    folder.assert_all_under(&SecretKey::load(&folder.key_file).unwrap());
    // The same key again is refused, and writes nothing.
    let before = fs::read(&folder.files[0]).unwrap();
    let e = rotate_key(&folder.key_file, &folder.files, &SECRET_KEYS, &new_key).unwrap_err();
    assert!(matches!(e, Error::SameKey { .. }), "{e}");
    assert_eq!(fs::read(&folder.files[0]).unwrap(), before);
}

#[test]
fn a_value_under_a_wrong_key_stops_the_rotation_before_anything_is_written() {
    let folder = Folder::new();
    let stranger = SecretKey::generate().unwrap();
    let foreign = mailgate_secrets::encrypt_value(&stranger, CLIENT_SECRET, "x").unwrap();
    write(
        folder.dir.path(),
        "security.properties",
        format!("{CLIENT_SECRET}={foreign}\n").as_bytes(),
    );
    let is_before = fs::read(&folder.files[0]).unwrap();
    let key_before = fs::read(&folder.key_file).unwrap();
    let e = rotate_key(
        &folder.key_file,
        &folder.files,
        &SECRET_KEYS,
        &SecretKey::generate().unwrap(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::WrongKey { .. }), "{e}");
    assert_eq!(fs::read(&folder.files[0]).unwrap(), is_before);
    assert_eq!(fs::read(&folder.key_file).unwrap(), key_before);
    assert_eq!(folder.others(), ["mailgate.key"]);
}

#[test]
fn recovery_never_runs_beside_a_rotation_in_progress() {
    let folder = Folder::new();
    let new_key = SecretKey::generate().unwrap();
    let key_file = folder.key_file.clone();
    let mut during = None;
    rotate_key_with_hook(
        &folder.key_file,
        &folder.files,
        &SECRET_KEYS,
        &new_key,
        &mut |step| {
            if step == RotationStep::FileRewritten(0) {
                // Another process (here: another call) tries to recover now.
                during = Some(recover_rotation(&key_file, &SECRET_KEYS));
            }
        },
    )
    .unwrap();
    let e = during.unwrap().unwrap_err();
    assert!(matches!(e, Error::RotationBusy { .. }), "{e}");
    assert_eq!(folder.others(), ["mailgate.key"]);
    folder.assert_all_under(&SecretKey::load(&folder.key_file).unwrap());
}

#[test]
fn stale_temp_files_are_removed_and_fresh_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    let stale_tmp = write(dir.path(), ".mailgate-Ab12Cd.tmp", b"k=plaintext\n");
    let stale_key = write(dir.path(), ".mailgate-key-Xy98Zw", b"00");
    let not_ours = write(dir.path(), ".mailgate-notours.tmp", b"x");
    let other = write(dir.path(), "is.properties", b"k=v\n");
    for p in [&stale_tmp, &stale_key, &not_ours, &other] {
        set_modified(p, old);
    }
    let fresh = write(dir.path(), ".mailgate-Fr35h1.tmp", b"x");
    let run_started = SystemTime::now() - Duration::from_secs(60);
    let mut removed = remove_stale_temp_files(dir.path(), run_started).unwrap();
    removed.sort();
    assert_eq!(removed, [stale_tmp.clone(), stale_key.clone()]);
    assert!(!stale_tmp.exists() && !stale_key.exists());
    assert!(not_ours.exists() && other.exists() && fresh.exists());
}

fn set_modified(path: &Path, when: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_rotation_whose_pending_key_file_would_be_too_large_is_refused_before_anything_changes() {
    let folder = Folder::new();
    // Forty more files with long names: their paths do not fit in the 4 KiB
    // a key file may have, and a pending key that could not be read back
    // could never finish the rotation.
    let long = "x".repeat(120);
    let mut files = folder.files.clone();
    for i in 0..40 {
        files.push(write(
            folder.dir.path(),
            &format!("{long}-{i}.properties"),
            IS.as_bytes(),
        ));
    }
    let old = SecretKey::load(&folder.key_file).unwrap();
    let before: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    let err = rotate_key(
        &folder.key_file,
        &files,
        &SECRET_KEYS,
        &SecretKey::generate().unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("fewer"), "{err}");
    assert!(!pending_key_path(&folder.key_file).exists());
    let after: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    assert_eq!(before, after, "no file changed");
    assert_eq!(SecretKey::load(&folder.key_file).unwrap().id(), old.id());
    folder.assert_all_under(&old);
}
