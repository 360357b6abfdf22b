//! `mailgate encrypt`: the vendor's `encryptPassword -e` step. Encrypts the
//! secret properties in place, checks for plain-text ones, or rotates the key.
//!
//! It works on the files alone, so it runs on a config that does not load yet
//! (say, a client secret still missing its endpoint). It reads the same files
//! loading reads (a missing `security.properties` of the config folder is
//! skipped, a missing file named with `--security` is an error) and finds the
//! key file the way loading does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use mailgate::properties::{ConfigFiles, Properties};
use mailgate::secrets::{self, KeyOrigin, Report, SECRET_KEYS, SecretKey, ValueState};
use mailgate::{ConfigError, Error, key_file_path, keys};

/// Appends a line to the report (writing to a `String` cannot fail).
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        let _ = writeln!($out, $($arg)*);
    };
}

/// Options of `mailgate encrypt`.
#[derive(Args, Debug)]
pub(crate) struct EncryptArgs {
    /// List the secret properties still in plain text; exit 78 if there are any
    #[arg(long, conflicts_with = "rotate_key")]
    check: bool,
    /// Re-encrypt every value with the key in this file (created when missing)
    #[arg(long, value_name = "NEW_KEY_FILE")]
    rotate_key: Option<PathBuf>,
}

/// Runs the command; what it reports is appended to `out` (printed by the
/// caller, which handles a closed stdout).
pub(crate) fn run(
    files: &ConfigFiles,
    given_key: Option<&Path>,
    args: &EncryptArgs,
    out: &mut String,
) -> Result<(), Error> {
    let (props, targets) = files.read()?;
    if targets.is_empty() {
        let path = files
            .is
            .clone()
            .unwrap_or_else(|| files.base_dir().join("is.properties"));
        return Err(ConfigError::Unreadable {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no properties file to encrypt",
            ),
        }
        .into());
    }
    if args.check {
        return check(&targets, out);
    }
    let key_path = key_path(files, props, given_key);
    if let Some(new_path) = &args.rotate_key {
        return rotate(files, &targets, &key_path, new_path, out);
    }
    encrypt(&targets, &key_path, out)
}

/// The key file as loading finds it (`Settings::key_file`): `--key-file`,
/// else `mailgate.crypto.keyFile` from the merged files or the environment,
/// relative to the config folder, else the default there.
fn key_path(files: &ConfigFiles, mut props: Properties, given: Option<&Path>) -> PathBuf {
    props.merge(Properties::from_env([keys::CRYPTO_KEY_FILE]));
    let configured = props
        .get(keys::CRYPTO_KEY_FILE)
        .map(|e| e.value.trim())
        .filter(|v| !v.is_empty());
    key_file_path(&files.base_dir(), configured, given)
}

/// `--check`: lists plain-text secrets; needs no key.
fn check(targets: &[PathBuf], out: &mut String) -> Result<(), Error> {
    let mut plain = 0;
    for path in targets {
        for o in secrets::plaintext_secrets(path, &SECRET_KEYS).map_err(ConfigError::from)? {
            say!(
                out,
                "{}:{}: {} is in plain text",
                path.display(),
                o.line,
                o.key
            );
            plain += 1;
        }
    }
    if plain == 0 {
        say!(out, "no secret is stored in plain text");
        return Ok(());
    }
    Err(ConfigError::PlaintextSecrets { count: plain }.into())
}

fn encrypt(targets: &[PathBuf], key_path: &Path, out: &mut String) -> Result<(), Error> {
    let mut found = Vec::new();
    for path in targets {
        found.push(secrets::find_secrets(path, &SECRET_KEYS).map_err(ConfigError::from)?);
    }
    let has = |state| found.iter().flatten().any(|(_, s)| *s == state);
    let key = if has(ValueState::Encrypted) {
        // Values under a key already: only that key will do, a new one
        // would not decrypt them.
        SecretKey::load(key_path).map_err(ConfigError::from)?
    } else if has(ValueState::Plaintext) {
        let (key, origin) = SecretKey::load_or_create(key_path).map_err(ConfigError::from)?;
        if origin == KeyOrigin::Created {
            say!(
                out,
                "created key file {} (mode 0600): keep it with the config and back it up separately; without it the secrets cannot be decrypted",
                key_path.display()
            );
        }
        key
    } else {
        // No secret holds a value: nothing needs a key, none is created.
        for (path, found) in targets.iter().zip(&found) {
            for (o, _) in found {
                say!(
                    out,
                    "{}:{}: {} is empty; nothing to encrypt",
                    path.display(),
                    o.line,
                    o.key
                );
            }
            say!(out, "{}: unchanged", path.display());
        }
        return Ok(());
    };
    // Every file is checked before any is written.
    for report in secrets::encrypt_files(targets, &SECRET_KEYS, &key).map_err(ConfigError::from)? {
        print_report(&report, "encrypted", out);
    }
    Ok(())
}

fn rotate(
    files: &ConfigFiles,
    targets: &[PathBuf],
    old_path: &Path,
    new_path: &Path,
    out: &mut String,
) -> Result<(), Error> {
    let old = SecretKey::load(old_path).map_err(ConfigError::from)?;
    let (new, origin) = SecretKey::load_or_create(new_path).map_err(ConfigError::from)?;
    if origin == KeyOrigin::Created {
        say!(out, "created key file {} (mode 0600)", new_path.display());
    }
    // Every value of every file is decrypted before any file is written.
    let reports =
        secrets::rotate_files(targets, &SECRET_KEYS, &old, &new).map_err(ConfigError::from)?;
    for report in &reports {
        print_report(report, "re-encrypted", out);
        for o in &report.plaintext {
            say!(
                out,
                "{}:{}: {} is in plain text; run `mailgate encrypt`",
                report.path.display(),
                o.line,
                o.key
            );
        }
    }
    say!(
        out,
        "the values now need key file {}: set mailgate.crypto.keyFile={} (resolved against the config folder), or replace {} with it",
        new_path.display(),
        property_path(&files.base_dir(), new_path).display(),
        old_path.display()
    );
    Ok(())
}

/// `file` as `mailgate.crypto.keyFile` must name it: relative to the config
/// folder `base` when it is inside it, else absolute.
fn property_path(base: &Path, file: &Path) -> PathBuf {
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    match std::path::absolute(base) {
        Ok(base) => file.strip_prefix(&base).map(Path::to_owned).unwrap_or(file),
        Err(_) => file,
    }
}

fn print_report(report: &Report, verb: &str, out: &mut String) {
    let path = report.path.display();
    for o in &report.changed {
        say!(out, "{path}:{}: {verb} {}", o.line, o.key);
    }
    for o in &report.unchanged {
        say!(out, "{path}:{}: {} already encrypted", o.line, o.key);
    }
    for o in &report.empty {
        say!(
            out,
            "{path}:{}: {} is empty; nothing to encrypt",
            o.line,
            o.key
        );
    }
    if !report.written {
        say!(out, "{path}: unchanged");
    }
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use mailgate::secrecy::ExposeSecret;
    use mailgate::secrets::{decrypt_value, is_encrypted};
    use mailgate_integration_tests::ConfigDir;

    use super::*;

    const PW: &str = "mksis.logging.emailfrom.password";
    const CS: &str = "mksis.security.smtp.oauth.clientSecret";

    /// `run` with its report discarded.
    fn run_quiet(
        files: &ConfigFiles,
        given_key: Option<&Path>,
        args: &EncryptArgs,
    ) -> Result<(), Error> {
        run(files, given_key, args, &mut String::new())
    }

    fn args(check: bool, rotate_key: Option<PathBuf>) -> EncryptArgs {
        EncryptArgs { check, rotate_key }
    }

    fn encrypt_dir(dir: &ConfigDir) -> Result<(), Error> {
        run_quiet(&ConfigFiles::in_dir(dir.path()), None, &args(false, None))
    }

    /// The value of `key` in `file` of `dir`, as loading reads it.
    fn value(dir: &ConfigDir, file: &str, key: &str) -> String {
        let props = Properties::read_file(&dir.path().join(file)).unwrap();
        props.get(key).unwrap().value.clone()
    }

    #[test]
    fn key_file_set_in_security_properties_is_the_one_used() {
        let dir = ConfigDir::with_properties(
            &[(PW, "pw")],
            &[(keys::CRYPTO_KEY_FILE, "keys/custom.key")],
        );
        encrypt_dir(&dir).unwrap();
        assert!(!dir.path().join("mailgate.key").exists());
        let key = SecretKey::load(dir.path().join("keys/custom.key")).unwrap();
        let enc = value(&dir, "is.properties", PW);
        assert_eq!(decrypt_value(&key, PW, &enc).unwrap().expose_secret(), "pw");
    }

    #[test]
    fn check_needs_and_creates_no_key() {
        let dir = ConfigDir::with_properties(&[(PW, "pw")], &[]);
        let e = run_quiet(&ConfigFiles::in_dir(dir.path()), None, &args(true, None)).unwrap_err();
        assert_eq!(e.exit_code(), 78, "{e}");
        // A key file that could not be read is not even looked at.
        let key_file = dir.path().join("unreadable.key");
        let e = run_quiet(
            &ConfigFiles::in_dir(dir.path()),
            Some(&key_file),
            &args(true, None),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Config(ConfigError::PlaintextSecrets { count: 1 })),
            "{e}"
        );
        assert!(!dir.path().join("mailgate.key").exists());
        assert!(!key_file.exists());
    }

    #[test]
    fn no_secret_value_creates_no_key() {
        let dir = ConfigDir::with_properties(&[("a", "1"), (PW, "")], &[("b", "2")]);
        let before = dir.read_file("is.properties");
        encrypt_dir(&dir).unwrap();
        assert!(!dir.path().join("mailgate.key").exists());
        assert_eq!(dir.read_file("is.properties"), before);
    }

    #[test]
    fn encrypted_values_without_their_key_create_no_new_key() {
        let dir = ConfigDir::with_properties(&[(PW, "pw")], &[(CS, "cs")]);
        encrypt_dir(&dir).unwrap();
        std::fs::remove_file(dir.path().join("mailgate.key")).unwrap();
        // A new plaintext secret, next to values under the lost key.
        dir.write_security(&[(CS, "new")]);
        let e = encrypt_dir(&dir).unwrap_err();
        assert_eq!(e.exit_code(), 78, "{e}");
        assert!(e.to_string().contains("not found"), "{e}");
        assert!(!dir.path().join("mailgate.key").exists());
        assert_eq!(value(&dir, "security.properties", CS), "new");
    }

    #[test]
    fn a_named_security_file_that_is_missing_is_an_error() {
        let dir = ConfigDir::with_properties(&[(PW, "pw")], &[]);
        let files =
            ConfigFiles::in_dir(dir.path()).with_security(dir.path().join("nope.properties"));
        for a in [args(false, None), args(true, None)] {
            let e = run_quiet(&files, None, &a).unwrap_err();
            assert_eq!(e.exit_code(), 78, "{e}");
            assert!(e.to_string().contains("nope.properties"), "{e}");
        }
        assert!(!is_encrypted(&value(&dir, "is.properties", PW)));
        assert!(!dir.path().join("mailgate.key").exists());
        // The folder's own security.properties may be missing.
        dir.remove_file("security.properties");
        encrypt_dir(&dir).unwrap();
        assert!(is_encrypted(&value(&dir, "is.properties", PW)));
    }

    #[test]
    fn rotation_writes_no_file_unless_every_file_rotates() {
        let dir = ConfigDir::with_properties(&[(PW, "pw")], &[(CS, "cs")]);
        encrypt_dir(&dir).unwrap();
        let old = SecretKey::load(dir.path().join("mailgate.key")).unwrap();
        // security.properties, rotated second, holds a damaged value.
        let cs = value(&dir, "security.properties", CS);
        let damaged = cs.replacen("ENC(v1:", "ENC(v1:AAAA", 1);
        dir.write_security(&[(CS, &damaged)]);
        let is_before = dir.read_file("is.properties");
        let new_key = dir.path().join("new.key");
        let e = run_quiet(
            &ConfigFiles::in_dir(dir.path()),
            None,
            &args(false, Some(new_key.clone())),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 78, "{e}");
        assert_eq!(dir.read_file("is.properties"), is_before);
        let pw = value(&dir, "is.properties", PW);
        assert_eq!(decrypt_value(&old, PW, &pw).unwrap().expose_secret(), "pw");

        dir.write_security(&[(CS, &cs)]);
        run_quiet(
            &ConfigFiles::in_dir(dir.path()),
            None,
            &args(false, Some(new_key.clone())),
        )
        .unwrap();
        let new = SecretKey::load(&new_key).unwrap();
        let pw = value(&dir, "is.properties", PW);
        assert_eq!(decrypt_value(&new, PW, &pw).unwrap().expose_secret(), "pw");
        let cs = value(&dir, "security.properties", CS);
        assert_eq!(decrypt_value(&new, CS, &cs).unwrap().expose_secret(), "cs");
    }

    #[test]
    fn property_path_is_relative_to_the_config_folder() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            property_path(Path::new("config"), Path::new("config/new.key")),
            PathBuf::from("new.key")
        );
        assert_eq!(
            property_path(Path::new("config"), &cwd.join("config/keys/new.key")),
            PathBuf::from("keys/new.key")
        );
        // Outside the folder: absolute, never relative to the working folder.
        assert_eq!(
            property_path(Path::new("config"), Path::new("new.key")),
            cwd.join("new.key")
        );
        assert_eq!(
            property_path(Path::new("/etc/mailgate"), Path::new("/srv/new.key")),
            PathBuf::from("/srv/new.key")
        );
    }
}
