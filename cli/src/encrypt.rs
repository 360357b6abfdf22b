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
use std::time::{Duration, SystemTime};

use clap::Args;
use mailgate::properties::{ConfigFiles, Properties};
use mailgate::secrets::{self, KeyOrigin, Report, RotationStep, SecretKey, ValueState};
use mailgate::{ConfigError, Error, key_file_path, keys};

use crate::Failure;

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
    /// Re-encrypt every value under a new key and put that key in the key
    /// file, all or nothing: a fresh random key, or the one in
    /// NEW_KEY_FILE (an existing key file, left as it is)
    #[arg(long, value_name = "NEW_KEY_FILE", num_args = 0..=1)]
    rotate_key: Option<Option<PathBuf>>,
    /// Encrypt even in a folder the RV&S server itself reads (it cannot
    /// read ENC(...) values: give mailgate its own copy instead)
    #[arg(long)]
    yes: bool,
}

/// How long `encrypt` waits for another `encrypt` on the same folders.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// EX_TEMPFAIL: another `encrypt` holds the folder.
const EXIT_TEMPFAIL: u8 = 75;

/// The keys the registered strategies declare: all of them, and the secret ones.
pub(crate) struct Known {
    /// Encrypted by this command.
    pub(crate) secret: Vec<&'static str>,
    /// Not counted as the RV&S server's own keys by the vendor guard.
    pub(crate) all: Vec<&'static str>,
}

impl Known {
    pub(crate) fn of(registry: &mailgate::Registry) -> Self {
        Self {
            secret: registry.secret_keys(),
            all: registry.keys().map(|k| k.name).collect(),
        }
    }
}

/// Runs the command; what it reports is appended to `out` (printed by the
/// caller, which handles a closed stdout).
pub(crate) fn run(
    files: &ConfigFiles,
    given_key: Option<&Path>,
    args: &EncryptArgs,
    known: &Known,
    out: &mut String,
) -> Result<(), Failure> {
    let (props, targets) = files.read().map_err(Error::from)?;
    if targets.is_empty() {
        let path = files
            .is
            .clone()
            .unwrap_or_else(|| files.base_dir().join("is.properties"));
        return Err(Error::from(ConfigError::Unreadable {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no properties file to encrypt",
            ),
        })
        .into());
    }
    let key_path = key_path(files, props, given_key);
    if args.check {
        return check(&targets, &key_path, &known.secret, out);
    }
    // Held to the end: no other `encrypt` works in these folders meanwhile,
    // so every temporary file of ours older than this run is a leftover.
    let dirs = folders(&targets, &key_path);
    let _locks = lock_folders(&dirs)?;
    remove_leftovers(&dirs, SystemTime::now(), out)?;
    finish_rotation(&key_path, &known.secret, out)?;
    match &args.rotate_key {
        Some(new_key) => rotate(&targets, &key_path, new_key.as_deref(), &known.secret, out),
        None => encrypt(&targets, &key_path, args.yes, known, out),
    }
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

fn secrets_error(e: secrets::Error) -> Failure {
    Error::from(ConfigError::from(e)).into()
}

/// The folders of the properties files and the key file, symlinks resolved.
fn folders(targets: &[PathBuf], key_path: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in targets.iter().map(PathBuf::as_path).chain([key_path]) {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs.sort();
    dirs
}

/// An exclusive `flock` on each folder (in a fixed order, so two runs
/// cannot deadlock), waiting up to [`LOCK_WAIT`] for another `encrypt`.
fn lock_folders(dirs: &[PathBuf]) -> Result<Vec<std::fs::File>, Failure> {
    let mut locks = Vec::new();
    for dir in dirs {
        let Ok(file) = std::fs::File::open(dir) else {
            // A folder that cannot be opened fails later with a clear error.
            continue;
        };
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        // `File::try_lock` is `flock` on Unix, as the secrets crate's locks are.
        while file.try_lock().is_err() {
            if std::time::Instant::now() > deadline {
                return Err(Failure::exit(
                    EXIT_TEMPFAIL,
                    "busy",
                    format!(
                        "another `mailgate encrypt` is working in {}; try again when it is done",
                        dir.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        locks.push(file);
    }
    Ok(locks)
}

/// Removes the temporary files a killed run left beside the properties
/// files and the key file: copies of a properties file (which may hold
/// plaintext secrets) and of a key file (raw key material). Only files
/// older than this run: the folders are locked, so no other run is writing.
fn remove_leftovers(
    dirs: &[PathBuf],
    started: SystemTime,
    out: &mut String,
) -> Result<(), Failure> {
    for dir in dirs {
        for removed in secrets::remove_stale_temp_files(dir, started).map_err(secrets_error)? {
            say!(
                out,
                "removed {} (a temporary file an interrupted run left)",
                removed.display()
            );
        }
    }
    Ok(())
}

/// Finishes a key rotation a crash interrupted, before anything else.
fn finish_rotation(key_path: &Path, secret: &[&str], out: &mut String) -> Result<(), Failure> {
    if let Some(done) = secrets::recover_rotation(key_path, secret).map_err(secrets_error)? {
        for report in &done.reports {
            print_report(report, "re-encrypted", out);
        }
        say!(
            out,
            "finished an interrupted key rotation: every secret is now under key file {} (key id {})",
            key_path.display(),
            done.key.id()
        );
    }
    Ok(())
}

/// `--check`: lists plain-text secrets; needs no key.
fn check(
    targets: &[PathBuf],
    key_path: &Path,
    secret: &[&str],
    out: &mut String,
) -> Result<(), Failure> {
    let mut problems = 0;
    for path in targets {
        for (o, state) in secrets::find_secrets(path, secret).map_err(secrets_error)? {
            let what = match state {
                ValueState::Plaintext => "is in plain text",
                ValueState::Foreign => {
                    "looks encrypted by another tool (the RV&S server's encryptPassword?): mailgate cannot use it"
                }
                _ => continue,
            };
            say!(out, "{}:{}: {} {what}", path.display(), o.line, o.key);
            problems += 1;
        }
    }
    let pending = secrets::pending_key_path(key_path);
    if pending.exists() {
        say!(
            out,
            "{}: a key rotation is unfinished; run `mailgate encrypt` to finish it",
            pending.display()
        );
        return Err(
            Error::from(ConfigError::from(secrets::Error::RotationPending {
                pending,
            }))
            .into(),
        );
    }
    if problems == 0 {
        say!(out, "no secret is stored in plain text");
        return Ok(());
    }
    Err(Error::from(ConfigError::PlaintextSecrets { count: problems }).into())
}

fn encrypt(
    targets: &[PathBuf],
    key_path: &Path,
    yes: bool,
    known: &Known,
    out: &mut String,
) -> Result<(), Failure> {
    let mut found = Vec::new();
    for path in targets {
        found.push(secrets::find_secrets(path, &known.secret).map_err(secrets_error)?);
    }
    // A value another tool encrypted is not a plaintext: reported, nothing written.
    for (path, found) in targets.iter().zip(&found) {
        if let Some((o, _)) = found.iter().find(|(_, s)| *s == ValueState::Foreign) {
            return Err(secrets_error(secrets::Error::ForeignEncrypted {
                property: o.key.clone(),
                location: secrets::Location::new(path, o.line),
            }));
        }
    }
    let keep = vendor_guard(targets, &found, yes, &known.all, out)?;
    let (targets, found): (Vec<PathBuf>, Vec<_>) = targets
        .iter()
        .cloned()
        .zip(found)
        .zip(keep)
        .filter_map(|(pair, keep)| keep.then_some(pair))
        .unzip();
    let has = |state| found.iter().flatten().any(|(_, s)| *s == state);
    let key = if has(ValueState::Encrypted) {
        // Values under a key already: only that key will do, a new one
        // would not decrypt them.
        SecretKey::load(key_path).map_err(secrets_error)?
    } else if has(ValueState::Plaintext) {
        let (key, origin) = SecretKey::load_or_create(key_path).map_err(secrets_error)?;
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
    for report in secrets::encrypt_files(&targets, &known.secret, &key).map_err(secrets_error)? {
        print_report(&report, "encrypted", out);
    }
    Ok(())
}

/// A file holding at least this many `mksis.` keys that are not e-mail keys
/// is the RV&S server's own (a typo or two in a mailgate copy is not).
const SERVER_KEYS_THRESHOLD: usize = 3;

/// Up to three of the server keys of `path` when it looks like a file the
/// RV&S server itself reads (see [`SERVER_KEYS_THRESHOLD`]).
fn server_keys(path: &Path, strategy_keys: &[&str]) -> Result<Option<Vec<String>>, Failure> {
    let props = Properties::read_file(path).map_err(Error::from)?;
    let server: Vec<String> = props
        .keys()
        .filter(|k| {
            k.starts_with("mksis.")
                && !keys::CORE.contains(k)
                && !strategy_keys.contains(k)
                && !keys::VENDOR_EMAIL_KEYS.contains(k)
        })
        .map(str::to_owned)
        .collect();
    Ok((server.len() >= SERVER_KEYS_THRESHOLD).then(|| server.into_iter().take(3).collect()))
}

/// The vendor-compatibility guard. The RV&S server cannot read `ENC(...)`
/// values: encrypting a file it reads breaks its mail. Returns which files
/// to encrypt. Without `--yes`, a server file with plaintext secrets is
/// refused (nothing is written), unless every one of those secrets is
/// overridden by a later file only mailgate reads (the layout where
/// mailgate's `--security` file holds its own secrets): then it is left as
/// it is.
fn vendor_guard(
    targets: &[PathBuf],
    found: &[Vec<(secrets::Occurrence, ValueState)>],
    yes: bool,
    strategy_keys: &[&str],
    out: &mut String,
) -> Result<Vec<bool>, Failure> {
    let mut server = Vec::new();
    for path in targets {
        server.push(server_keys(path, strategy_keys)?);
    }
    let mut keep = vec![true; targets.len()];
    let mut refused = Vec::new();
    for (i, path) in targets.iter().enumerate() {
        let Some(examples) = &server[i] else {
            continue;
        };
        let plain: Vec<&secrets::Occurrence> = found[i]
            .iter()
            .filter(|(_, s)| *s == ValueState::Plaintext)
            .map(|(o, _)| o)
            .collect();
        if plain.is_empty() {
            continue;
        }
        if yes {
            tracing::warn!(
                "{} is read by the RV&S server too: it cannot read the ENC(...) values written now (--yes)",
                path.display()
            );
            continue;
        }
        let overridden_by = |key: &str| {
            (i + 1..targets.len())
                .find(|&j| server[j].is_none() && found[j].iter().any(|(o, _)| o.key == key))
        };
        if let Some(later) = plain
            .iter()
            .map(|o| overridden_by(&o.key))
            .collect::<Option<Vec<usize>>>()
        {
            keep[i] = false;
            let mut later: Vec<String> = later
                .iter()
                .map(|&j| targets[j].display().to_string())
                .collect();
            later.dedup();
            say!(
                out,
                "{}: left as it is: the RV&S server reads it; mailgate uses the secrets of {} instead",
                path.display(),
                later.join(", ")
            );
        } else {
            refused.push(format!(
                "{} (it holds server keys such as {})",
                path.display(),
                examples
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if refused.is_empty() {
        return Ok(keep);
    }
    Err(Failure::exit(
        78,
        "config",
        format!(
            "not encrypting: the RV&S server reads {} and cannot read ENC(...) values, so it would stop sending mail. \
             Give mailgate its own copy of is.properties and security.properties (a folder only mailgate reads, \
             see \"Secrets at rest\" in the README) and encrypt that; or pass --yes if the server does not read \
             this file. Nothing was written",
            refused.join(" and ")
        ),
    ))
}

/// A `--rotate-key` test hook: `MAILGATE_TEST_ROTATE_KILL_AFTER` names a
/// step (`pending`, `file1`, `file2`, `promoted`) after which the process
/// kills itself with SIGKILL, as a crash would (the tests of the recovery).
fn kill_hook() -> impl FnMut(RotationStep) {
    let kill_after = std::env::var("MAILGATE_TEST_ROTATE_KILL_AFTER").ok();
    move |step| {
        let name = match step {
            RotationStep::PendingWritten => "pending".to_owned(),
            RotationStep::FileRewritten(i) => format!("file{}", i + 1),
            RotationStep::KeyPromoted => "promoted".to_owned(),
            _ => return,
        };
        if kill_after.as_deref() == Some(name.as_str()) {
            // SAFETY: kill(2) on this process; nothing after it runs.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
}

fn rotate(
    targets: &[PathBuf],
    key_path: &Path,
    new_path: Option<&Path>,
    secret: &[&str],
    out: &mut String,
) -> Result<(), Failure> {
    let new = match new_path {
        None => SecretKey::generate().map_err(secrets_error)?,
        Some(path) => match SecretKey::load(path) {
            Ok(key) => key,
            Err(secrets::Error::KeyFileMissing { .. }) => {
                return Err(Failure::exit(
                    66,
                    "no_input",
                    format!(
                        "new key file {} not found: make one with `(umask 077; openssl rand -hex 32 > {})`, or pass --rotate-key without a file for a fresh random key",
                        path.display(),
                        path.display()
                    ),
                ));
            }
            Err(e) => return Err(secrets_error(e)),
        },
    };
    // Every value of every file is decrypted before anything is written;
    // then pending key, files, key file (see mailgate_secrets::rotate_key).
    let done = secrets::rotate_key_with_hook(key_path, targets, secret, &new, &mut kill_hook())
        .map_err(secrets_error)?;
    for report in &done.reports {
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
        "key file {} now holds the new key (key id {}); the old key is gone from it: keep a copy of the old key only to read backups of the properties files made before now",
        key_path.display(),
        done.key.id()
    );
    Ok(())
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
        let known = Known::of(&mailgate::default_registry().unwrap());
        run(files, given_key, args, &known, &mut String::new()).map_err(|f| match f {
            Failure::Mailgate(e) => e,
            Failure::Exit(report) | Failure::Printed(report) => {
                panic!("exit {}: {}", report.exit_code(), report.message())
            }
            Failure::Stdout(e) => panic!("stdout: {e}"),
        })
    }

    fn args(check: bool, rotate_key: Option<PathBuf>) -> EncryptArgs {
        EncryptArgs {
            check,
            rotate_key: rotate_key.map(Some),
            yes: false,
        }
    }

    fn encrypt_dir(dir: &ConfigDir) -> Result<(), Error> {
        run_quiet(&ConfigFiles::in_dir(dir.path()), None, &args(false, None))
    }

    /// The value of `key` in `file` of `dir`, as loading reads it.
    fn value(dir: &ConfigDir, file: &str, key: &str) -> String {
        let props = Properties::read_file(&dir.path().join(file)).unwrap();
        props.get(key).unwrap().value.to_string()
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
        let new = SecretKey::create(&new_key).unwrap();
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
        // The key file loading uses holds the new key; the given file is left as it was.
        let promoted = SecretKey::load(dir.path().join("mailgate.key")).unwrap();
        assert_eq!(promoted.id(), new.id());
        assert!(new_key.exists());
        let pw = value(&dir, "is.properties", PW);
        assert_eq!(decrypt_value(&new, PW, &pw).unwrap().expose_secret(), "pw");
        let cs = value(&dir, "security.properties", CS);
        assert_eq!(decrypt_value(&new, CS, &cs).unwrap().expose_secret(), "cs");
    }
}
