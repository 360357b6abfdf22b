//! `mailgate encrypt`: the vendor's `encryptPassword -e` step. Encrypts the
//! secret properties in place, checks for plain-text ones, or rotates the key.
//!
//! It works on the files alone, so it runs on a config that does not load yet
//! (say, a client secret still missing its endpoint).

use std::path::{Path, PathBuf};

use clap::Args;
use mailgate::properties::{ConfigFiles, Properties};
use mailgate::secrets::{self, KeyOrigin, Report, SecretKey};
use mailgate::{ConfigError, Error, key_file_path, keys};

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

pub(crate) fn run(
    files: &ConfigFiles,
    given_key: Option<&Path>,
    args: &EncryptArgs,
) -> Result<(), Error> {
    let targets: Vec<&Path> = files.paths().filter(|p| p.exists()).collect();
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
    let key_path = key_path(files, given_key)?;
    if args.check {
        return check(&targets);
    }
    if let Some(new_path) = &args.rotate_key {
        return rotate(&targets, &key_path, new_path);
    }
    let (key, origin) = SecretKey::load_or_create(&key_path).map_err(ConfigError::from)?;
    if origin == KeyOrigin::Created {
        println!(
            "created key file {} (mode 0600): keep it with the config and back it up separately; without it the secrets cannot be decrypted",
            key_path.display()
        );
    }
    for path in targets {
        let report = secrets::encrypt_file(path, keys::SECRETS, &key).map_err(ConfigError::from)?;
        print_report(&report, "encrypted");
    }
    Ok(())
}

/// The key file as loading will find it: `--key-file`, else
/// `mailgate.crypto.keyFile` (file or environment), else the default.
fn key_path(files: &ConfigFiles, given: Option<&Path>) -> Result<PathBuf, Error> {
    let mut props = Properties::default();
    if let Some(is) = files.is.as_deref().filter(|p| p.exists()) {
        props.merge(Properties::read_file(is)?);
    }
    props.merge(Properties::from_env([keys::CRYPTO_KEY_FILE]));
    let configured = props
        .get(keys::CRYPTO_KEY_FILE)
        .map(|e| e.value.trim().to_owned())
        .filter(|v| !v.is_empty());
    Ok(key_file_path(
        &files.base_dir(),
        configured.as_deref(),
        given,
    ))
}

fn check(targets: &[&Path]) -> Result<(), Error> {
    let mut plain = 0;
    for path in targets {
        for o in secrets::plaintext_secrets(path, keys::SECRETS).map_err(ConfigError::from)? {
            println!("{}:{}: {} is in plain text", path.display(), o.line, o.key);
            plain += 1;
        }
    }
    if plain == 0 {
        println!("no secret is stored in plain text");
        return Ok(());
    }
    Err(ConfigError::PlaintextSecrets { count: plain }.into())
}

fn rotate(targets: &[&Path], old_path: &Path, new_path: &Path) -> Result<(), Error> {
    let old = SecretKey::load(old_path).map_err(ConfigError::from)?;
    let (new, origin) = SecretKey::load_or_create(new_path).map_err(ConfigError::from)?;
    if origin == KeyOrigin::Created {
        println!("created key file {} (mode 0600)", new_path.display());
    }
    for path in targets {
        let report =
            secrets::rotate_file(path, keys::SECRETS, &old, &new).map_err(ConfigError::from)?;
        print_report(&report, "re-encrypted");
        for o in &report.plaintext {
            println!(
                "{}:{}: {} is in plain text; run `mailgate encrypt`",
                path.display(),
                o.line,
                o.key
            );
        }
    }
    println!(
        "the values now need {}: set mailgate.crypto.keyFile to it (or replace {} with it)",
        new_path.display(),
        old_path.display()
    );
    Ok(())
}

fn print_report(report: &Report, verb: &str) {
    let path = report.path.display();
    for o in &report.changed {
        println!("{path}:{}: {verb} {}", o.line, o.key);
    }
    for o in &report.unchanged {
        println!("{path}:{}: {} already encrypted", o.line, o.key);
    }
    for o in &report.empty {
        println!("{path}:{}: {} is empty; nothing to encrypt", o.line, o.key);
    }
    if !report.written {
        println!("{path}: unchanged");
    }
}
