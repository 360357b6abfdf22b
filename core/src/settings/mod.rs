//! Typed, validated settings from `is.properties`, `security.properties`, the
//! environment and builder overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::{ConfigError, Origin, Result};
use crate::outbox::OutboxSettings;
use crate::properties::{ConfigFiles, Entry, Properties, is_secret_key};
use crate::resolver::AuthFlags;
use crate::secret::{KeyCache, reveal};

pub mod keys;
mod load;
use load::holds_secret;
mod near_miss;
mod outbox;
mod server;
mod spec;

pub use server::{CaFile, ServerSettings, TlsMode};
pub use spec::{KeyFile, KeySpec};
// Its home is the redaction module; named here too for existing callers.
pub use crate::smtp::redact::url_userinfo;

/// How long a recipient may stay deferred before its sender is told
/// (`mailgate.outbox.delayWarningHours`, 4 hours as Postfix's
/// `delay_warning_time` is commonly set).
pub const DEFAULT_DELAY_WARNING: Duration = Duration::from_secs(4 * 3600);

/// The largest CA file read (`mailgate.smtp.ssl.caFile`): 4 MiB, room for
/// a whole system bundle (some hundred kilobytes).
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The most CA files `mailgate.smtp.ssl.caFile` may list.
pub const MAX_CA_FILES: usize = 16;

/// Default bound on a message read from a file or stdin: 25 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 25 * 1024 * 1024;

/// Default bound on simultaneous SMTP connections of one `Mailer`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

/// Highest `mailgate.smtp.maxConnections` accepted: beyond it a server sees
/// a connection flood, not a client.
pub const MAX_MAX_CONNECTIONS: usize = 100;

/// A warning found while loading (also logged with `tracing::warn!`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning(pub String);

/// Loaded settings. Strategies read their keys through [`Settings::require`]
/// and [`Settings::require_secret`], whose errors name the key and file.
#[derive(Clone)]
pub struct Settings {
    props: Properties,
    files: ConfigFiles,
    read: Vec<PathBuf>,
    flags: AuthFlags,
    server: ServerSettings,
    sender: Option<Mailbox>,
    message_id_domain: Option<String>,
    max_message_bytes: u64,
    outbox: OutboxSettings,
    warnings: Vec<Warning>,
    key_file_override: Option<PathBuf>,
    /// The keys the registered strategies declared.
    strategy_keys: Vec<KeySpec>,
    /// Secret values, out of `props` from the moment they are loaded: no
    /// accessor but [`Settings::require_secret`] reaches them.
    secrets: BTreeMap<String, SecretEntry>,
    /// The key file, read at most once per load.
    key: KeyCache,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each value as `check` shows it: no secret, no URL password.
        let shown: BTreeMap<&str, String> = self
            .keys()
            .filter_map(|key| Some((key, self.shown(key)?)))
            .collect();
        f.debug_struct("Settings")
            .field("values", &shown)
            .field("read", &self.read)
            .field("flags", &self.flags)
            .field("server", &self.server)
            .field("outbox", &self.outbox)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A secret setting as read (maybe `ENC(...)`), never shown.
#[derive(Clone)]
struct SecretEntry {
    value: SecretString,
    origin: Origin,
}

impl fmt::Debug for SecretEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretEntry")
            .field("value", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}

/// What to read and which overrides to apply; see [`crate::MailerBuilder`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The files.
    pub files: ConfigFiles,
    /// Set by the builder; win over everything else.
    pub overrides: Properties,
    /// Apply environment overrides.
    pub env: bool,
    /// Keys the registered strategies and outbox stores read, beyond
    /// core's ([`Registry::keys`](crate::Registry::keys)).
    pub strategy_keys: Vec<KeySpec>,
    /// A key file given on the command line.
    pub key_file: Option<PathBuf>,
}

impl Settings {
    /// The outbox settings (`mailgate.outbox.*`).
    pub fn outbox(&self) -> &OutboxSettings {
        &self.outbox
    }

    /// The entry for `key`, if set and not a secret: secrets are reached
    /// only through [`Settings::require_secret`] (and shown through
    /// [`Settings::shown`]).
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.props.get(key)
    }

    /// Where `key` was set, secret or not.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        match self.secrets.get(key) {
            Some(secret) => Some(&secret.origin),
            None => self.props.get(key).map(|e| &e.origin),
        }
    }

    /// Every key mailgate read (its own and the registered strategies'),
    /// secrets included, sorted; [`Settings::shown`] and
    /// [`Settings::origin`] tell what may be shown of each.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let mut keys: Vec<&str> = self
            .props
            .keys()
            .chain(self.secrets.keys().map(String::as_str))
            .collect();
        keys.sort_unstable();
        keys.into_iter()
    }

    /// The value of `key` as it may be shown (`mailgate check`): a secret as
    /// `<secret: ENC(...)>` or `<secret: plain text>`, never its value; a
    /// URL without its password; control characters escaped; cut short.
    pub fn shown(&self, key: &str) -> Option<String> {
        if let Some(secret) = self.secrets.get(key) {
            let v = secret.value.expose_secret().trim();
            return Some(if v.is_empty() {
                "<secret: empty>".to_owned()
            } else if mailgate_secrets::is_encrypted(v)
                && !mailgate_secrets::looks_foreign_encrypted(v)
            {
                "<secret: ENC(...)>".to_owned()
            } else if mailgate_secrets::looks_foreign_encrypted(v) {
                "<secret: encrypted by another tool>".to_owned()
            } else {
                "<secret: plain text>".to_owned()
            });
        }
        let entry = self.entry(key)?;
        Some(if self.spec(key).is_some_and(|k| k.url) {
            // The host only, as everywhere else: the path names the tenant.
            let v = entry.value.trim();
            match v.split_once("://") {
                Some((scheme, rest)) => {
                    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                    let host = rest[..end].rsplit('@').next().unwrap_or_default();
                    let more = if end < rest.len() { "/..." } else { "" };
                    cut_short(
                        &format!("{scheme}://{host}{more}")
                            .escape_debug()
                            .to_string(),
                        SHOWN_CHARS,
                    )
                }
                None => shown_value(v),
            }
        } else if key == keys::OUTBOX_URL {
            cut_short(
                &crate::outbox::shown_url(&entry.value)
                    .escape_debug()
                    .to_string(),
                SHOWN_CHARS,
            )
        } else {
            shown_value(&entry.value)
        })
    }

    /// Decrypts every `ENC(...)` secret that is set, whichever strategy
    /// needs it, so a value under another key is found before a send needs
    /// it (`mailgate check`). A value another tool encrypted is an error too.
    pub fn verify_secrets(&self) -> Result<(), ConfigError> {
        for (key, secret) in &self.secrets {
            let value = secret.value.expose_secret();
            // A plain value needs no key (and was warned about at load).
            if mailgate_secrets::is_encrypted(value)
                || mailgate_secrets::looks_foreign_encrypted(value)
            {
                reveal(&self.key, key, value, &secret.origin)?;
            }
        }
        Ok(())
    }

    /// `key` as a number of seconds within `range`, or `default` when unset.
    pub fn seconds(
        &self,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        match self.value(key).map(str::parse::<u64>) {
            None => Ok(Duration::from_secs(default)),
            Some(Ok(s)) if range.contains(&s) => Ok(Duration::from_secs(s)),
            Some(_) => Err(self.invalid(
                key,
                &format!("seconds from {} to {}", range.start(), range.end()),
            )),
        }
    }

    /// How the registered strategy that reads `key` declared it.
    pub fn spec(&self, key: &str) -> Option<&KeySpec> {
        self.strategy_keys.iter().find(|k| k.name == key)
    }

    /// Whether `key` holds a secret: as its strategy declared it, else
    /// when it is named like one (a password, secret or token of some
    /// other system).
    pub fn is_secret(&self, key: &str) -> bool {
        holds_secret(&self.strategy_keys, key)
    }

    /// The file `key` belongs in: as its strategy declared, else by its prefix.
    pub fn file_of(&self, key: &str) -> &'static str {
        match self.spec(key).map(|k| k.file) {
            Some(KeyFile::Security) => "security.properties",
            Some(KeyFile::Is) => "is.properties",
            None => keys::file_of(key),
        }
    }

    /// The trimmed value of `key`, or `None` when absent or blank.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.entry(key)
            .map(|e| e.value.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value of a key `needed_by` requires; errors name the key and its file.
    ///
    /// A secret is not returned here: it is read with [`Settings::require_secret`].
    pub fn require(&self, key: &str, needed_by: &str) -> Result<&str, ConfigError> {
        match self.entry(key) {
            None if self.secrets.contains_key(key) => {
                Err(self.invalid(key, "a secret: read it with `Settings::require_secret`"))
            }
            None => Err(self.missing(key, needed_by)),
            Some(e) if e.value.trim().is_empty() => Err(ConfigError::Blank {
                key: key.to_owned(),
                origin: e.origin.clone(),
                needed_by: needed_by.to_owned(),
            }),
            Some(e) => Ok(e.value.trim()),
        }
    }

    /// A required secret, decrypted when it is an `ENC(...)` value.
    ///
    /// A plain-text secret loads with a warning naming the command that encrypts it.
    pub fn require_secret(&self, key: &str, needed_by: &str) -> Result<SecretString, ConfigError> {
        let (value, origin) = match (self.secrets.get(key), self.props.get(key)) {
            (Some(secret), _) => (secret.value.expose_secret(), &secret.origin),
            // A key no strategy declared secret, read as one all the same.
            (None, Some(entry)) => (entry.value.as_str(), &entry.origin),
            (None, None) => return Err(self.missing(key, needed_by)),
        };
        if value.trim().is_empty() {
            return Err(ConfigError::Blank {
                key: key.to_owned(),
                origin: origin.clone(),
                needed_by: needed_by.to_owned(),
            });
        }
        // Not trimmed: a password may end in an (escaped) space, as Java reads it.
        reveal(&self.key, key, value, origin)
    }

    /// A `true`/`false` key that is `default` when absent.
    pub fn flag_or(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.value(key) {
            None => Ok(default),
            Some(_) => self.flag(key),
        }
    }

    /// A boolean flag; absent is `false`, anything but true/false is an error.
    pub fn flag(&self, key: &str) -> Result<bool, ConfigError> {
        match self.value(key) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(self.invalid(key, "`true` or `false`")),
        }
    }

    /// An optional address (`a@example.com` or `Name <a@example.com>`).
    pub fn optional_mailbox(&self, key: &str) -> Result<Option<Mailbox>, ConfigError> {
        self.value(key)
            .map(|v| {
                parse_mailbox(v)
                    .ok_or_else(|| self.invalid(key, "an e-mail address such as alm@example.com"))
            })
            .transpose()
    }

    /// A required address; errors name the key and its file.
    pub fn require_mailbox(&self, key: &str, needed_by: &str) -> Result<Mailbox, ConfigError> {
        self.require(key, needed_by)?;
        Ok(self
            .optional_mailbox(key)?
            .expect("required value is present"))
    }

    /// An error for `key` holding something other than `expected`. Secret values are not shown.
    pub fn invalid(&self, key: &str, expected: &str) -> ConfigError {
        let entry = self.entry(key);
        ConfigError::Invalid {
            key: key.to_owned(),
            origin: self.origin(key).cloned().unwrap_or(Origin::Builder),
            value: entry
                .filter(|_| !self.is_secret(key))
                .map(|e| shown_value(&e.value)),
            expected: expected.to_owned(),
        }
    }

    fn missing(&self, key: &str, needed_by: &str) -> ConfigError {
        ConfigError::Missing {
            key: key.to_owned(),
            needed_by: needed_by.to_owned(),
            file: self.file_of(key),
            read: if self.read.is_empty() {
                "no files".to_owned()
            } else {
                self.read
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }
    }

    /// The flags that choose the strategy.
    pub fn flags(&self) -> &AuthFlags {
        &self.flags
    }

    /// Where and how to connect.
    pub fn server(&self) -> &ServerSettings {
        &self.server
    }

    /// `mksis.logging.email.from`, when set.
    pub fn sender(&self) -> Option<&Mailbox> {
        self.sender.as_ref()
    }

    /// `mailgate.smtp.messageIdDomain`, when set.
    pub fn message_id_domain(&self) -> Option<&str> {
        self.message_id_domain.as_deref()
    }

    /// `mailgate.smtp.maxMessageBytes` (default [`DEFAULT_MAX_MESSAGE_BYTES`]):
    /// the most a message read from a file or stdin may hold.
    pub fn max_message_bytes(&self) -> u64 {
        self.max_message_bytes
    }

    /// The files that were read.
    pub fn files_read(&self) -> &[PathBuf] {
        &self.read
    }

    /// Warnings found while loading (unknown keys that look like known ones).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The folder relative paths are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.files.base_dir()
    }

    /// The key file for `ENC(...)` values: the command line's, else
    /// `mailgate.crypto.keyFile`, else `mailgate.key` in the config folder.
    pub fn key_file(&self) -> PathBuf {
        key_file_path(
            &self.base_dir(),
            self.value(keys::CRYPTO_KEY_FILE),
            self.key_file_override.as_deref(),
        )
    }
}

/// The key file for `ENC(...)` values: `given` (the command line's), else
/// `configured` (`mailgate.crypto.keyFile`, relative to `base`), else
/// [`DEFAULT_KEY_FILE`] in `base`.
pub fn key_file_path(base: &Path, configured: Option<&str>, given: Option<&Path>) -> PathBuf {
    match (given, configured) {
        (Some(path), _) => path.to_owned(),
        (None, Some(p)) => base.join(p),
        (None, None) => base.join(DEFAULT_KEY_FILE),
    }
}

/// A value as an error may show it: control characters escaped, and the
/// user info of a URL (`https://user:password@host`) withheld.
fn shown_value(value: &str) -> String {
    let value = match url_userinfo(value) {
        Some((scheme, _, host)) => format!("{scheme}://<withheld>@{host}"),
        None => value.to_owned(),
    };
    cut_short(&value.escape_debug().to_string(), SHOWN_CHARS)
}

/// At most this many characters of a value are echoed in an error.
const SHOWN_CHARS: usize = 80;

/// `text` cut to `max` characters, with `...` where it was cut.
pub(crate) fn cut_short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// The key file's name in the config folder when nothing else is set.
pub const DEFAULT_KEY_FILE: &str = "mailgate.key";

fn parse_mailbox(v: &str) -> Option<Mailbox> {
    // A control character would break the SMTP and SASL lines it goes into.
    if v.chars().any(char::is_control) {
        return None;
    }
    v.parse::<Mailbox>().ok()
}

#[cfg(test)]
pub(crate) mod tests;
