//! Secrets at load time: `ENC(...)` values are decrypted with the key file,
//! plain ones load with a warning that names the command that encrypts them.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use mailgate_secrets::{SecretKey, decrypt_value, is_encrypted, looks_foreign_encrypted};
use secrecy::SecretString;

use crate::error::{ConfigError, Origin};

/// The key file of one load, read on first use and shared by clones of the
/// settings: the file is read at most once per load.
#[derive(Clone, Default)]
pub(crate) struct KeyCache {
    path: PathBuf,
    key: Arc<OnceLock<Result<Arc<SecretKey>, String>>>,
}

impl KeyCache {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            key: Arc::default(),
        }
    }

    fn key(&self) -> Result<Arc<SecretKey>, String> {
        self.key
            .get_or_init(|| {
                SecretKey::load(&self.path)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.key.get() {
            None => "not read",
            Some(Ok(_)) => "read",
            Some(Err(_)) => "unusable",
        };
        f.debug_struct("KeyCache")
            .field("path", &self.path)
            .field("key", &state)
            .finish()
    }
}

/// The plain secret of `key`, whose raw value is `value`.
pub(crate) fn reveal(
    keys: &KeyCache,
    key: &str,
    value: &str,
    origin: &Origin,
) -> Result<SecretString, ConfigError> {
    let trimmed = value.trim();
    if looks_foreign_encrypted(trimmed) {
        return Err(ConfigError::ForeignEncrypted {
            key: key.to_owned(),
            origin: origin.clone(),
        });
    }
    if !is_encrypted(trimmed) {
        // Only a file can be encrypted in place; the environment and code cannot.
        if matches!(origin, Origin::File { .. }) {
            tracing::warn!(
                "`{key}` at {origin} is stored in plain text; run `mailgate encrypt` to encrypt it"
            );
        }
        return Ok(SecretString::from(value.to_owned()));
    }
    let value = trimmed;
    let fail = |reason: String| ConfigError::Secret {
        key: key.to_owned(),
        origin: origin.clone(),
        reason,
    };
    let key_path = &keys.path;
    // Key-file errors already name the file and say what to do.
    let secret_key = keys.key().map_err(fail)?;
    let decrypted = decrypt_value(&secret_key, key, value).or_else(|e| {
        // A rotation that could not be finished at load: the value may be
        // under the pending key already.
        match (&e, mailgate_secrets::pending_key(key_path)) {
            (mailgate_secrets::Error::WrongKey { .. }, Ok(Some(pending))) => {
                decrypt_value(&pending, key, value).map_err(|_| e)
            }
            _ => Err(e),
        }
    });
    decrypted.map_err(|e| {
        let reason = e.to_string();
        let path = key_path.display().to_string();
        if reason.contains(&path) {
            fail(reason)
        } else {
            fail(format!("{reason} (key file {path})"))
        }
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use crate::properties::ConfigFiles;
    use crate::settings::tests::test_keys as keys;
    use crate::settings::{LoadOptions, Settings};

    const HOST: &str = "mksis.logging.email.server.hostname=smtp.example.com\n";

    fn load(dir: &std::path::Path) -> Settings {
        Settings::load(LoadOptions {
            files: ConfigFiles::in_dir(dir),
            strategy_keys: keys::SPECS.to_vec(),
            ..LoadOptions::default()
        })
        .unwrap()
    }

    fn encrypted_dir(secret: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let key = mailgate_secrets::SecretKey::create(dir.path().join("mailgate.key")).unwrap();
        let enc = mailgate_secrets::encrypt_value(&key, keys::EMAIL_PASSWORD, secret).unwrap();
        std::fs::write(
            dir.path().join("is.properties"),
            format!("{HOST}{}={enc}\n", keys::EMAIL_PASSWORD),
        )
        .unwrap();
        dir
    }

    #[test]
    fn the_key_file_is_read_once_per_load() {
        let dir = encrypted_dir("hunter2");
        let s = load(dir.path());
        assert!(format!("{s:?}").contains("not read"));
        let first = s.require_secret(keys::EMAIL_PASSWORD, "basic").unwrap();
        // Gone after the first use: the clone and later reads use the key read then.
        std::fs::remove_file(dir.path().join("mailgate.key")).unwrap();
        let again = s
            .clone()
            .require_secret(keys::EMAIL_PASSWORD, "basic")
            .unwrap();
        assert_eq!(first.expose_secret(), again.expose_secret());
        s.verify_secrets().unwrap();
        // A new load reads the file again, and finds it gone.
        let err = load(dir.path())
            .require_secret(keys::EMAIL_PASSWORD, "basic")
            .unwrap_err();
        assert!(err.to_string().contains("mailgate.key"), "{err}");
    }

    #[test]
    fn encrypted_values_are_decrypted_with_the_default_key_file() {
        let dir = encrypted_dir("hunter2\u{e9}");
        let s = load(dir.path());
        let secret = s.require_secret(keys::EMAIL_PASSWORD, "basic").unwrap();
        assert_eq!(secret.expose_secret(), "hunter2\u{e9}");
    }

    #[test]
    fn missing_key_file_names_the_key_and_the_file() {
        let dir = encrypted_dir("hunter2");
        std::fs::remove_file(dir.path().join("mailgate.key")).unwrap();
        let msg = load(dir.path())
            .require_secret(keys::EMAIL_PASSWORD, "basic")
            .unwrap_err()
            .to_string();
        assert!(msg.contains(keys::EMAIL_PASSWORD), "{msg}");
        assert!(msg.contains("mailgate.key"), "{msg}");
        assert!(msg.contains("not found"), "{msg}");
    }

    #[test]
    fn wrong_key_file_is_an_error_without_the_value() {
        let dir = encrypted_dir("hunter2");
        let other = dir.path().join("other.key");
        mailgate_secrets::SecretKey::create(&other).unwrap();
        let raw = std::fs::read_to_string(dir.path().join("is.properties")).unwrap();
        let s = Settings::load(LoadOptions {
            files: ConfigFiles::in_dir(dir.path()),
            key_file: Some(other),
            strategy_keys: keys::SPECS.to_vec(),
            ..LoadOptions::default()
        })
        .unwrap();
        let msg = s
            .require_secret(keys::EMAIL_PASSWORD, "basic")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("another key"), "{msg}");
        assert!(msg.contains("other.key"), "{msg}");
        let enc = raw.lines().nth(1).unwrap().split_once('=').unwrap().1;
        assert!(!msg.contains(enc) && !msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn key_file_property_is_relative_to_the_config_folder() {
        let dir = encrypted_dir("pw");
        std::fs::rename(dir.path().join("mailgate.key"), dir.path().join("k.key")).unwrap();
        let is = std::fs::read_to_string(dir.path().join("is.properties")).unwrap();
        std::fs::write(
            dir.path().join("is.properties"),
            format!("{is}mailgate.crypto.keyFile=k.key\n"),
        )
        .unwrap();
        let s = load(dir.path());
        assert_eq!(
            s.require_secret(keys::EMAIL_PASSWORD, "basic")
                .unwrap()
                .expose_secret(),
            "pw"
        );
    }
}
