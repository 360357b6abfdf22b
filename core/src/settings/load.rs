//! Reading the files, the environment and the overrides into [`Settings`].

use super::near_miss::{CONFUSIONS, near_miss_warnings};
use super::*;

impl Settings {
    /// Reads and validates the settings. Flags, server and sender are checked
    /// here; strategy-specific keys when the strategy is built.
    pub fn load(options: LoadOptions) -> Result<Self> {
        let LoadOptions {
            files,
            overrides,
            env,
            strategy_keys,
            key_file,
        } = options;
        let known: Vec<&'static str> = keys::CORE
            .iter()
            .copied()
            .chain(strategy_keys.iter().map(|k| k.name))
            .collect();
        let secret_keys: Vec<&'static str> = strategy_keys
            .iter()
            .filter(|k| k.secret)
            .map(|k| k.name)
            .collect();
        let confusions: Vec<(&'static str, &'static str)> = strategy_keys
            .iter()
            .flat_map(|k| k.misspellings.iter().map(|wrong| (*wrong, k.name)))
            .chain(CONFUSIONS.iter().copied())
            .collect();
        let read_all = || -> Result<(Properties, Vec<PathBuf>), ConfigError> {
            let (mut props, read) = files.read()?;
            if env {
                props.merge(Properties::from_env(known.iter().copied()));
            }
            props.merge(overrides.clone());
            Ok((props, read))
        };
        let (mut props, mut read) = read_all()?;
        if finish_rotation(&files, &props, key_file.as_deref(), &secret_keys) {
            (props, read) = read_all()?;
        }

        let mut warnings = near_miss_warnings(&props, &known, &confusions);
        // The hundreds of unrelated keys (some of them other systems' secrets)
        // are not kept for the Mailer's lifetime.
        props.retain(|key| known.contains(&key));
        check_lengths(&props, &strategy_keys)?;
        // A key its strategy declared decides by the declaration; any other
        // is a secret when it is named like one (another system's password).
        let secret_names: Vec<String> = props
            .keys()
            .filter(|k| holds_secret(&strategy_keys, k))
            .map(str::to_owned)
            .collect();
        let mut secrets = BTreeMap::new();
        for key in secret_names {
            if let Some(entry) = props.remove(&key) {
                let value = SecretString::from(entry.value.as_str().to_owned());
                let origin = entry.origin;
                secrets.insert(key, SecretEntry { value, origin });
            }
        }

        let mut settings = Settings {
            props,
            files,
            read,
            flags: AuthFlags::default(),
            server: ServerSettings {
                host: String::new(),
                port: 25,
                tls: TlsMode::None,
                ca_files: Vec::new(),
                timeout: Duration::from_secs(30),
                helo_name: None,
                allow_plaintext_auth: false,
                max_connections: DEFAULT_MAX_CONNECTIONS,
            },
            sender: None,
            message_id_domain: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            outbox: OutboxSettings {
                url: None,
                retry_initial: Duration::from_secs(30),
                retry_max: Duration::from_secs(1800),
                max_age: Duration::from_secs(72 * 3600),
                keep_sent: Duration::from_secs(24 * 3600),
                lease: Duration::from_secs(300),
                worker_timeout: Duration::from_secs(30),
                delay_warning: Some(DEFAULT_DELAY_WARNING),
                keep_sent_bodies: false,
            },
            warnings: Vec::new(),
            key_file_override: key_file,
            strategy_keys,
            secrets,
            key: KeyCache::default(),
        };
        settings.key = KeyCache::new(settings.key_file());
        settings.flags = AuthFlags {
            oauth: settings.flag(keys::OAUTH_AUTHENTICATION)?,
            basic: settings.flag(keys::BASIC_AUTHENTICATION)?,
            strategy_override: settings.value(keys::AUTH_STRATEGY).map(str::to_owned),
        };
        let (server, server_warnings) = settings.load_server()?;
        settings.server = server;
        warnings.extend(server_warnings);
        for w in &warnings {
            tracing::warn!("{}", w.0);
        }
        settings.warnings = warnings;
        settings.sender = settings.optional_mailbox(keys::EMAIL_FROM)?;
        settings.message_id_domain = settings.message_id_domain_setting()?;
        settings.outbox = settings.outbox_settings()?;
        settings.max_message_bytes = match settings.value(keys::MAX_MESSAGE_BYTES) {
            None => DEFAULT_MAX_MESSAGE_BYTES,
            Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                settings.invalid(keys::MAX_MESSAGE_BYTES, "a number of bytes above 0")
            })?,
        };
        Ok(settings)
    }

    fn message_id_domain_setting(&self) -> Result<Option<String>, ConfigError> {
        let Some(domain) = self.value(keys::MESSAGE_ID_DOMAIN) else {
            return Ok(None);
        };
        let ascii = idna::domain_to_ascii(domain).ok().filter(|d| {
            !d.is_empty()
                && d.len() <= 253
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        });
        ascii.map(Some).ok_or_else(|| {
            self.invalid(
                keys::MESSAGE_ID_DOMAIN,
                "a domain name such as mail.example.com",
            )
        })
    }
}

/// Finishes a key rotation a crash interrupted (`mailgate encrypt
/// --rotate-key`, see `mailgate_secrets::recover_rotation`); true when files
/// were rewritten and must be read again. When it cannot be finished now (no
/// write permission, another process rotating), loading goes on: a value
/// decrypts with the old or the pending key until `mailgate encrypt` finishes it.
fn finish_rotation(
    files: &ConfigFiles,
    props: &Properties,
    given: Option<&Path>,
    secret_keys: &[&str],
) -> bool {
    let configured = props
        .get(keys::CRYPTO_KEY_FILE)
        .map(|e| e.value.trim())
        .filter(|v| !v.is_empty());
    let key_file = key_file_path(&files.base_dir(), configured, given);
    if !mailgate_secrets::pending_key_path(&key_file).exists() {
        return false;
    }
    match mailgate_secrets::recover_rotation(&key_file, secret_keys) {
        Ok(Some(_)) => {
            tracing::warn!(
                "finished a key rotation that was interrupted: every secret is now under {}",
                key_file.display()
            );
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!("{e}; until then each secret is decrypted with the old or the new key");
            false
        }
    }
}

/// Whether `key` holds a secret: as the strategy that reads it declared,
/// else when it is named like one (another system's password).
pub(super) fn holds_secret(specs: &[KeySpec], key: &str) -> bool {
    match specs.iter().find(|spec| spec.name == key) {
        Some(spec) => spec.secret,
        None => is_secret_key(key),
    }
}

/// Every value within its key's bound (declared, or [`keys::max_value_len`]).
fn check_lengths(props: &Properties, specs: &[KeySpec]) -> Result<(), ConfigError> {
    for key in props.keys() {
        let Some(entry) = props.get(key) else {
            continue;
        };
        let spec = specs.iter().find(|k| k.name == key);
        let max = spec.map_or_else(|| keys::max_value_len(key), |k| k.max_len);
        if entry.value.len() > max {
            return Err(ConfigError::TooLong {
                key: key.to_owned(),
                origin: entry.origin.clone(),
                len: entry.value.len(),
                max,
                shown: (!is_secret_key(key) && !spec.is_some_and(|k| k.secret))
                    .then(|| cut_short(&shown_value(&entry.value), 40)),
            });
        }
    }
    Ok(())
}
