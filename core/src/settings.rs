//! Typed, validated settings from `is.properties`, `security.properties`, the
//! environment and builder overrides.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use secrecy::SecretString;

use crate::error::{ConfigError, Origin, Result};
use crate::outbox::{OutboxLocation, OutboxSettings};
use crate::properties::{ConfigFiles, Entry, Properties, is_secret_key};
use crate::resolver::AuthFlags;

/// The property keys mailgate knows.
pub mod keys {
    /// true: OAuth token authentication (see the precedence table).
    pub const OAUTH_AUTHENTICATION: &str = "mksis.smtp.oauth.authentication";
    /// true: basic authentication ("closed mail relay").
    pub const BASIC_AUTHENTICATION: &str = "mksis.smtp.authentication";
    /// true: TLS to the SMTP server, never a plaintext fallback.
    pub const SSL_ENABLED: &str = "mksis.smtp.ssl.enabled";
    /// Sender address and auth user name.
    pub const EMAIL_FROM: &str = "mksis.logging.email.from";
    /// Basic-auth password (note `emailfrom`, no dot).
    pub const EMAIL_PASSWORD: &str = "mksis.logging.emailfrom.password";
    /// SMTP server host.
    pub const SERVER_HOSTNAME: &str = "mksis.logging.email.server.hostname";
    /// SMTP port (default 25).
    pub const SERVER_PORT: &str = "mksis.logging.email.server.port";
    /// OAuth client id.
    pub const OAUTH_CLIENT_ID: &str = "mksis.security.smtp.oauth.clientID";
    /// OAuth client secret.
    pub const OAUTH_CLIENT_SECRET: &str = "mksis.security.smtp.oauth.clientSecret";
    /// OAuth token endpoint.
    pub const OAUTH_TOKEN_ENDPOINT: &str = "mksis.security.smtp.oauth.tokenEndpointURL";
    /// OAuth scope.
    pub const OAUTH_SCOPE: &str = "mksis.security.smtp.oauth.scope";
    /// `starttls` | `implicit` (default: implicit on 465, else starttls).
    pub const SSL_MODE: &str = "mailgate.smtp.ssl.mode";
    /// Extra trusted CA PEM files, comma-separated, relative to the config folder.
    pub const SSL_CA_FILE: &str = "mailgate.smtp.ssl.caFile";
    /// Limit for connect, TLS and each reply, in seconds (default 30).
    pub const TIMEOUT_SECONDS: &str = "mailgate.smtp.timeoutSeconds";
    /// Name sent in EHLO (default: this host's name).
    pub const HELO_NAME: &str = "mailgate.smtp.heloName";
    /// true: allow credentials over an unencrypted connection (default false).
    pub const ALLOW_PLAINTEXT_AUTH: &str = "mailgate.smtp.allowPlaintextAuth";
    /// Bound on simultaneous SMTP connections of one `Mailer` (default 4).
    pub const MAX_CONNECTIONS: &str = "mailgate.smtp.maxConnections";
    /// Domain of the Message-IDs mailgate writes (default: the sender's).
    pub const MESSAGE_ID_DOMAIN: &str = "mailgate.smtp.messageIdDomain";
    /// Largest message read from a file or stdin, in bytes (default 25 MiB).
    pub const MAX_MESSAGE_BYTES: &str = "mailgate.smtp.maxMessageBytes";
    /// Where the outbox lives: `sqlite:PATH` (relative to the config folder) or `postgres://...`.
    pub const OUTBOX_URL: &str = "mailgate.outbox.url";
    /// First retry delay in seconds (default 30).
    pub const OUTBOX_RETRY_INITIAL: &str = "mailgate.outbox.retry.initialSeconds";
    /// Longest retry delay in seconds (default 1800).
    pub const OUTBOX_RETRY_MAX: &str = "mailgate.outbox.retry.maxSeconds";
    /// A queued message older than this many hours is dead (default 72).
    pub const OUTBOX_MAX_AGE: &str = "mailgate.outbox.maxAgeHours";
    /// Sent messages are kept this many hours (default 24).
    pub const OUTBOX_KEEP_SENT: &str = "mailgate.outbox.keepSentHours";
    /// A worker's lease on a message, in seconds (default 300).
    pub const OUTBOX_LEASE: &str = "mailgate.outbox.leaseSeconds";
    /// Picks a registered strategy by name, overriding the flags.
    pub const AUTH_STRATEGY: &str = "mailgate.smtp.auth.strategy";
    /// Key file for `ENC(...)` values (default `mailgate.key` in the config folder).
    pub const CRYPTO_KEY_FILE: &str = "mailgate.crypto.keyFile";

    /// Keys of `security.properties`; all others belong in `is.properties`.
    pub const SECURITY_FILE_KEYS: &[&str] = &[
        OAUTH_CLIENT_ID,
        OAUTH_CLIENT_SECRET,
        OAUTH_TOKEN_ENDPOINT,
        OAUTH_SCOPE,
    ];

    /// Keys whose values are secrets, encrypted by `mailgate encrypt`.
    pub const SECRETS: &[&str] = &mailgate_secrets::SECRET_KEYS;

    /// Every key core knows (strategies add their own).
    pub const CORE: &[&str] = &[
        OAUTH_AUTHENTICATION,
        BASIC_AUTHENTICATION,
        SSL_ENABLED,
        EMAIL_FROM,
        EMAIL_PASSWORD,
        SERVER_HOSTNAME,
        SERVER_PORT,
        OAUTH_CLIENT_ID,
        OAUTH_CLIENT_SECRET,
        OAUTH_TOKEN_ENDPOINT,
        OAUTH_SCOPE,
        SSL_MODE,
        SSL_CA_FILE,
        TIMEOUT_SECONDS,
        HELO_NAME,
        ALLOW_PLAINTEXT_AUTH,
        MAX_CONNECTIONS,
        MESSAGE_ID_DOMAIN,
        MAX_MESSAGE_BYTES,
        OUTBOX_URL,
        OUTBOX_RETRY_INITIAL,
        OUTBOX_RETRY_MAX,
        OUTBOX_MAX_AGE,
        OUTBOX_KEEP_SENT,
        OUTBOX_LEASE,
        AUTH_STRATEGY,
        CRYPTO_KEY_FILE,
    ];

    /// The file a key belongs in, for "add it to ..." messages.
    pub fn file_of(key: &str) -> &'static str {
        if SECURITY_FILE_KEYS.contains(&key) || key.starts_with("mksis.security.") {
            "security.properties"
        } else {
            "is.properties"
        }
    }
}

/// How the connection is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS (`mksis.smtp.ssl.enabled=false`).
    None,
    /// Plain connect, then STARTTLS, required.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

impl TlsMode {
    /// `none`, `starttls` or `implicit`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::StartTls => "starttls",
            TlsMode::Implicit => "implicit",
        }
    }
}

/// A CA certificate file to trust in addition to the system roots.
#[derive(Clone, Debug)]
pub struct CaFile {
    /// Resolved path.
    pub path: PathBuf,
    /// PEM content.
    pub pem: Vec<u8>,
    /// Its certificates, each checked to be usable as a trust anchor.
    pub certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Where `mailgate.smtp.ssl.caFile` named it.
    pub origin: Origin,
}

/// The outbox file in the config folder when `mailgate.outbox.url` is not set.
pub const DEFAULT_OUTBOX_FILE: &str = "mailgate-outbox.db";

/// Default bound on a message read from a file or stdin: 25 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 25 * 1024 * 1024;

/// Default bound on simultaneous SMTP connections of one `Mailer`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

/// Highest `mailgate.smtp.maxConnections` accepted: beyond it a server sees
/// a connection flood, not a client.
pub const MAX_MAX_CONNECTIONS: usize = 100;

/// The certificates of a PEM file, each usable as a trust anchor.
fn parse_ca_pem(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a valid PEM certificate: {e}"))?;
        rustls::RootCertStore::empty()
            .add(cert.clone())
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// SMTP host.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// Extra trusted CAs.
    pub ca_files: Vec<CaFile>,
    /// Limit for connect, TLS and each reply.
    pub timeout: Duration,
    /// EHLO name, when set.
    pub helo_name: Option<String>,
    /// Credentials may cross an unencrypted connection.
    pub allow_plaintext_auth: bool,
    /// Bound on simultaneous connections; as many are kept idle.
    pub max_connections: usize,
}

impl ServerSettings {
    /// `host:port`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A warning found while loading (also logged with `tracing::warn!`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning(pub String);

/// Loaded settings. Strategies read their keys through [`Settings::require`]
/// and [`Settings::require_secret`], whose errors name the key and file.
#[derive(Clone, Debug)]
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
    /// Keys the linked strategies read, beyond core's.
    pub strategy_keys: Vec<&'static str>,
    /// A key file given on the command line.
    pub key_file: Option<PathBuf>,
}

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
        let (mut props, read) = files.read()?;
        let known: Vec<&'static str> = keys::CORE
            .iter()
            .copied()
            .chain(strategy_keys.iter().copied())
            .collect();
        if env {
            props.merge(Properties::from_env(known.iter().copied()));
        }
        props.merge(overrides);

        let mut warnings = near_miss_warnings(&props, &known);
        // The hundreds of unrelated keys (some of them other systems' secrets)
        // are not kept for the Mailer's lifetime.
        props.retain(|key| known.contains(&key));

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
                location: OutboxLocation::Sqlite(PathBuf::new()),
                retry_initial: Duration::from_secs(30),
                retry_max: Duration::from_secs(1800),
                max_age: Duration::from_secs(72 * 3600),
                keep_sent: Duration::from_secs(24 * 3600),
                lease: Duration::from_secs(300),
            },
            warnings: Vec::new(),
            key_file_override: key_file,
        };
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

    fn load_server(&self) -> Result<(ServerSettings, Vec<Warning>), ConfigError> {
        let mut warnings = Vec::new();
        let host = self.require(keys::SERVER_HOSTNAME, "every")?.to_owned();
        let is_ipv6 = host.parse::<std::net::Ipv6Addr>().is_ok();
        if host.contains(char::is_whitespace)
            || host.contains(['/', '@', '[', ']'])
            || (host.contains(':') && !is_ipv6)
        {
            return Err(self.invalid(
                keys::SERVER_HOSTNAME,
                "a host name or IP address without a port (the port is mksis.logging.email.server.port)",
            ));
        }
        let port =
            match self.value(keys::SERVER_PORT) {
                None => 25,
                Some(v) => v.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    self.invalid(keys::SERVER_PORT, "a port number from 1 to 65535")
                })?,
            };
        let ssl = self.flag(keys::SSL_ENABLED)?;
        if !ssl && self.value(keys::SSL_MODE).is_some() {
            warnings.push(Warning(format!(
                "`{}` is ignored because `{}` is not true",
                keys::SSL_MODE,
                keys::SSL_ENABLED
            )));
        }
        if !ssl && port == 465 {
            warnings.push(Warning(format!(
                "port 465 usually speaks implicit TLS, but `{}` is not true: the connection will wait for a greeting that never comes",
                keys::SSL_ENABLED
            )));
        }
        let tls = match (ssl, self.value(keys::SSL_MODE)) {
            (false, _) => TlsMode::None,
            (true, None) if port == 465 => TlsMode::Implicit,
            (true, None) => TlsMode::StartTls,
            (true, Some(m)) if m.eq_ignore_ascii_case("starttls") => TlsMode::StartTls,
            (true, Some(m)) if m.eq_ignore_ascii_case("implicit") => TlsMode::Implicit,
            (true, Some(_)) => return Err(self.invalid(keys::SSL_MODE, "`starttls` or `implicit`")),
        };
        let timeout = match self.value(keys::TIMEOUT_SECONDS) {
            None => Duration::from_secs(30),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    self.invalid(
                        keys::TIMEOUT_SECONDS,
                        "a number of seconds above 0, at most 3600",
                    )
                })?,
        };
        let helo_name = self.value(keys::HELO_NAME).map(str::to_owned);
        if let Some(name) = &helo_name
            && (name.contains(char::is_whitespace) || name.contains(['\r', '\n']))
        {
            return Err(self.invalid(keys::HELO_NAME, "a host name without spaces"));
        }
        let max_connections = match self.value(keys::MAX_CONNECTIONS) {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_MAX_CONNECTIONS).contains(n))
                .ok_or_else(|| {
                    self.invalid(
                        keys::MAX_CONNECTIONS,
                        &format!("a whole number from 1 to {MAX_MAX_CONNECTIONS}"),
                    )
                })?,
        };
        let server = ServerSettings {
            host,
            port,
            tls,
            ca_files: self.ca_files()?,
            timeout,
            helo_name,
            allow_plaintext_auth: self.flag(keys::ALLOW_PLAINTEXT_AUTH)?,
            max_connections,
        };
        Ok((server, warnings))
    }

    /// `mailgate.outbox.*`, validated.
    fn outbox_settings(&self) -> Result<OutboxSettings, ConfigError> {
        let location = match self.value(keys::OUTBOX_URL) {
            None => OutboxLocation::Sqlite(self.base_dir().join(DEFAULT_OUTBOX_FILE)),
            Some(url) => {
                if let Some(path) = url.strip_prefix("sqlite:") {
                    let path = path.trim_start_matches("//");
                    if path.is_empty() || path.contains('?') {
                        return Err(self.invalid(
                            keys::OUTBOX_URL,
                            "`sqlite:PATH` (a file, relative to the config folder) or `postgres://USER@HOST/DB`",
                        ));
                    }
                    OutboxLocation::Sqlite(self.base_dir().join(path))
                } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    OutboxLocation::Postgres(url.to_owned())
                } else {
                    return Err(ConfigError::Invalid {
                        key: keys::OUTBOX_URL.to_owned(),
                        origin: self.entry(keys::OUTBOX_URL).map(|e| e.origin.clone()).unwrap_or(Origin::Builder),
                        value: Some(crate::outbox::shown_url(url)),
                        expected: "`sqlite:PATH` (relative to the config folder) or `postgres://USER@HOST/DB`".into(),
                    });
                }
            }
        };
        let seconds = |key: &str, default: u64, max: u64| -> Result<Duration, ConfigError> {
            match self.value(key) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .map(Duration::from_secs)
                    .ok_or_else(|| self.invalid(key, &format!("a whole number from 1 to {max}"))),
            }
        };
        let hours = |key: &str, default: u64| -> Result<Duration, ConfigError> {
            seconds(key, default, 24 * 365).map(|d| d * 3600)
        };
        let outbox = OutboxSettings {
            location,
            retry_initial: seconds(keys::OUTBOX_RETRY_INITIAL, 30, 86_400)?,
            retry_max: seconds(keys::OUTBOX_RETRY_MAX, 1800, 7 * 86_400)?,
            max_age: hours(keys::OUTBOX_MAX_AGE, 72)?,
            keep_sent: hours(keys::OUTBOX_KEEP_SENT, 24)?,
            lease: seconds(keys::OUTBOX_LEASE, 300, 86_400)?,
        };
        if outbox.lease < self.server.timeout * 10 {
            tracing::warn!(
                "`{}` ({} s) is short: a delivery may take several `{}` and a worker that outlives its lease lets another send the message too; make it at least {} s",
                keys::OUTBOX_LEASE,
                outbox.lease.as_secs(),
                keys::TIMEOUT_SECONDS,
                (self.server.timeout * 10).as_secs()
            );
        }
        if outbox.retry_max < outbox.retry_initial {
            return Err(self.invalid(
                keys::OUTBOX_RETRY_MAX,
                &format!(
                    "at least {} (`{}`)",
                    outbox.retry_initial.as_secs(),
                    keys::OUTBOX_RETRY_INITIAL
                ),
            ));
        }
        Ok(outbox)
    }

    /// The outbox settings (`mailgate.outbox.*`).
    pub fn outbox(&self) -> &OutboxSettings {
        &self.outbox
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

    fn ca_files(&self) -> Result<Vec<CaFile>, ConfigError> {
        let Some(entry) = self.entry(keys::SSL_CA_FILE) else {
            return Ok(Vec::new());
        };
        let base = self.base_dir();
        let mut out = Vec::new();
        for name in entry
            .value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let path = base.join(name);
            let fail = |reason: String| ConfigError::CaFile {
                path: path.clone(),
                origin: entry.origin.clone(),
                reason,
            };
            let pem = std::fs::read(&path).map_err(|e| fail(format!("cannot read it: {e}")))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(fail(
                    "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                ));
            }
            let certs = parse_ca_pem(&pem).map_err(fail)?;
            out.push(CaFile {
                path,
                pem,
                certs,
                origin: entry.origin.clone(),
            });
        }
        Ok(out)
    }

    /// The entry for `key`, if set.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.props.get(key)
    }

    /// The trimmed value of `key`, or `None` when absent or blank.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.entry(key)
            .map(|e| e.value.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value of a key `needed_by` requires; errors name the key and its file.
    pub fn require(&self, key: &str, needed_by: &str) -> Result<&str, ConfigError> {
        match self.entry(key) {
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
        self.require(key, needed_by)?;
        let entry = self.entry(key).expect("a required key is present");
        // Not trimmed: a password may end in an (escaped) space, as Java reads it.
        crate::secret::reveal(self, key, &entry.value, &entry.origin)
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
            origin: entry.map(|e| e.origin.clone()).unwrap_or(Origin::Builder),
            value: entry
                .filter(|_| !is_secret_key(key))
                .map(|e| shown_value(&e.value)),
            expected: expected.to_owned(),
        }
    }

    fn missing(&self, key: &str, needed_by: &str) -> ConfigError {
        ConfigError::Missing {
            key: key.to_owned(),
            needed_by: needed_by.to_owned(),
            file: keys::file_of(key),
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
    let value = match value.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://<withheld>@{}", &rest[at + 1..]),
                None => value.to_owned(),
            }
        }
        None => value.to_owned(),
    };
    value.escape_debug().to_string()
}

/// The key file's name in the config folder when nothing else is set.
pub const DEFAULT_KEY_FILE: &str = "mailgate.key";

fn parse_mailbox(v: &str) -> Option<Mailbox> {
    if v.contains(['\r', '\n']) {
        return None;
    }
    v.parse::<Mailbox>().ok()
}

/// Character counts of a lower-case key: letters, digits, and one bucket for the rest.
type Histogram = [u8; 37];

fn histogram(s: &str) -> Histogram {
    let mut h = [0u8; 37];
    for b in s.bytes() {
        let i = match b {
            b'a'..=b'z' => (b - b'a') as usize,
            b'0'..=b'9' => 26 + (b - b'0') as usize,
            _ => 36,
        };
        h[i] = h[i].saturating_add(1);
    }
    h
}

/// Each edit changes the counts by at most 2, so this is at most twice the edit distance.
fn histogram_distance(a: &Histogram, b: &Histogram) -> usize {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as usize).sum()
}

/// Misspellings too far from the right key for an edit distance to catch.
const CONFUSIONS: &[(&str, &str)] = &[
    ("mksis.logging.email.password", keys::EMAIL_PASSWORD),
    ("mksis.logging.emailfrom", keys::EMAIL_FROM),
    ("mksis.smtp.ssl", keys::SSL_ENABLED),
    ("mksis.logging.email.server", keys::SERVER_HOSTNAME),
];

/// Unknown keys that are a near miss of a known one, and unknown `mailgate.*` keys.
fn near_miss_warnings(props: &Properties, known: &[&str]) -> Vec<Warning> {
    const MAX_DISTANCE: usize = 3;
    let known_lower: Vec<(String, Histogram, &str)> = known
        .iter()
        .map(|k| {
            let lower = k.to_ascii_lowercase();
            let shape = histogram(&lower);
            (lower, shape, *k)
        })
        .collect();
    let mut out = Vec::new();
    for key in props.keys() {
        if known.contains(&key) {
            continue;
        }
        let lower = key.to_ascii_lowercase();
        let shape = histogram(&lower);
        let best = CONFUSIONS
            .iter()
            .find(|(wrong, _)| *wrong == lower)
            .map(|(_, right)| (0, *right))
            .or_else(|| {
                known_lower
                    .iter()
                    // Cheap lower bounds first: most of a real file's keys
                    // never reach the quadratic edit distance.
                    .filter(|(l, h, _)| {
                        l.len().abs_diff(lower.len()) <= MAX_DISTANCE
                            && histogram_distance(h, &shape) <= 2 * MAX_DISTANCE
                    })
                    .map(|(l, _, k)| (strsim::levenshtein(&lower, l), *k))
                    .min()
            });
        let origin = props
            .get(key)
            .map(|e| e.origin.to_string())
            .unwrap_or_default();
        match best {
            Some((d, k)) if d <= MAX_DISTANCE && key.len() > 8 => out.push(Warning(format!(
                "unknown property `{key}` at {origin}; did you mean `{k}`?"
            ))),
            _ if key.starts_with("mailgate.") => out.push(Warning(format!(
                "unknown property `{key}` at {origin} is ignored"
            ))),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn load(is: &str) -> Result<Settings> {
        load_with(is, None)
    }

    fn load_with(is: &str, security: Option<&str>) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("is.properties"), is).unwrap();
        if let Some(s) = security {
            std::fs::write(dir.path().join("security.properties"), s).unwrap();
        }
        let s = Settings::load(LoadOptions {
            files: ConfigFiles::in_dir(dir.path()),
            ..LoadOptions::default()
        });
        drop(dir);
        s
    }

    const HOST: &str = "mksis.logging.email.server.hostname=smtp.example.com\n";

    fn config_err(r: Result<Settings>) -> String {
        match r {
            Err(Error::Config(e)) => e.to_string(),
            Err(other) => panic!("expected a config error, got {other}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn defaults() {
        let s = load(HOST).unwrap();
        assert_eq!(s.server().host, "smtp.example.com");
        assert_eq!(s.server().port, 25);
        assert_eq!(s.server().tls, TlsMode::None);
        assert_eq!(s.flags(), &AuthFlags::default());
        assert!(s.warnings().is_empty());
    }

    #[test]
    fn missing_hostname_names_key_and_file() {
        let msg = config_err(load("mksis.smtp.authentication=false\n"));
        assert!(
            msg.contains("`mksis.logging.email.server.hostname`"),
            "{msg}"
        );
        assert!(msg.contains("is.properties"), "{msg}");
    }

    #[test]
    fn blank_hostname_names_line() {
        let msg = config_err(load("# c\nmksis.logging.email.server.hostname =   \n"));
        assert!(msg.contains("is blank"), "{msg}");
        assert!(msg.contains("is.properties:2"), "{msg}");
    }

    #[test]
    fn flag_that_is_not_boolean() {
        let msg = config_err(load(&format!("{HOST}mksis.smtp.authentication=yes\n")));
        assert!(msg.contains("`mksis.smtp.authentication`"), "{msg}");
        assert!(msg.contains("`yes`"), "{msg}");
        assert!(msg.contains("`true` or `false`"), "{msg}");
        assert!(msg.contains("is.properties:2"), "{msg}");
    }

    #[test]
    fn flags_are_case_insensitive() {
        let s = load(&format!(
            "{HOST}mksis.smtp.authentication=TRUE\nmksis.smtp.oauth.authentication=False\n"
        ))
        .unwrap();
        assert!(s.flags().basic);
        assert!(!s.flags().oauth);
    }

    #[test]
    fn port_out_of_range() {
        for bad in ["0", "65536", "-1", "smtp"] {
            let msg = config_err(load(&format!(
                "{HOST}mksis.logging.email.server.port={bad}\n"
            )));
            assert!(msg.contains("1 to 65535"), "{msg}");
            assert!(msg.contains(&format!("`{bad}`")), "{msg}");
        }
        assert_eq!(
            load(&format!("{HOST}mksis.logging.email.server.port=65535\n"))
                .unwrap()
                .server()
                .port,
            65535
        );
    }

    #[test]
    fn malformed_address() {
        let msg = config_err(load(&format!(
            "{HOST}mksis.logging.email.from=not an address\n"
        )));
        assert!(msg.contains("`mksis.logging.email.from`"), "{msg}");
        assert!(msg.contains("e-mail address"), "{msg}");
    }

    #[test]
    fn unreadable_file() {
        let err = Settings::load(LoadOptions {
            files: ConfigFiles {
                dir: None,
                is: Some("/nonexistent/is.properties".into()),
                security: None,
                security_optional: false,
            },
            ..LoadOptions::default()
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/is.properties"), "{msg}");
        assert_eq!(err.exit_code(), 78);
    }

    #[test]
    fn tls_modes() {
        let on = "mksis.smtp.ssl.enabled=true\n";
        assert_eq!(
            load(&format!("{HOST}{on}")).unwrap().server().tls,
            TlsMode::StartTls
        );
        assert_eq!(
            load(&format!("{HOST}{on}mksis.logging.email.server.port=465\n"))
                .unwrap()
                .server()
                .tls,
            TlsMode::Implicit
        );
        assert_eq!(
            load(&format!("{HOST}{on}mailgate.smtp.ssl.mode=implicit\n"))
                .unwrap()
                .server()
                .tls,
            TlsMode::Implicit
        );
        let msg = config_err(load(&format!("{HOST}{on}mailgate.smtp.ssl.mode=ssl\n")));
        assert!(msg.contains("`starttls` or `implicit`"), "{msg}");
    }

    #[test]
    fn timeout_must_be_positive() {
        let msg = config_err(load(&format!("{HOST}mailgate.smtp.timeoutSeconds=0\n")));
        assert!(msg.contains("mailgate.smtp.timeoutSeconds"), "{msg}");
        let s = load(&format!("{HOST}mailgate.smtp.timeoutSeconds=2.5\n")).unwrap();
        assert_eq!(s.server().timeout, Duration::from_millis(2500));
    }

    #[test]
    fn near_miss_warns_and_unrelated_keys_are_silent() {
        let s = load(&format!(
            "{HOST}mksis.smtp.authentification=true\nmksis.im.some.unrelated.key=1\nmksis.dbtype=oracle\nmailgate.smtp.bogus=1\n"
        ))
        .unwrap();
        let w: Vec<_> = s.warnings().iter().map(|w| w.0.as_str()).collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w.iter()
                .any(|w| w.contains("`mksis.smtp.authentification` at")
                    && w.contains("did you mean `mksis.smtp.authentication`?")),
            "{w:?}"
        );
        assert!(w.iter().any(|w| w.contains("mailgate.smtp.bogus")), "{w:?}");
    }

    #[test]
    fn password_without_from_is_a_known_confusion() {
        let s = load(&format!("{HOST}mksis.logging.email.password=x\n")).unwrap();
        let w = &s.warnings()[0].0;
        assert!(
            w.contains("did you mean `mksis.logging.emailfrom.password`?"),
            "{w}"
        );
        assert!(!w.contains("=x"), "{w}");
    }

    #[test]
    fn missing_secret_names_security_file() {
        let s = load(HOST).unwrap();
        let msg = s
            .require(keys::OAUTH_CLIENT_SECRET, "oauth")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("security.properties"), "{msg}");
        assert!(msg.contains("oauth strategy"), "{msg}");
    }

    #[test]
    fn security_file_is_merged() {
        let s = load_with(HOST, Some("mksis.security.smtp.oauth.scope=s1\n")).unwrap();
        assert_eq!(s.value(keys::OAUTH_SCOPE), Some("s1"));
        assert_eq!(s.files_read().len(), 2);
    }

    #[test]
    fn invalid_secret_value_is_not_shown() {
        let s = load(&format!("{HOST}mksis.logging.emailfrom.password=hunter2\n")).unwrap();
        let msg = s.invalid(keys::EMAIL_PASSWORD, "something").to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("is.properties"),
            format!("{HOST}mailgate.smtp.ssl.caFile=ca.pem, other.pem\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("ca.pem"), "not pem").unwrap();
        let err = Settings::load(LoadOptions {
            files: ConfigFiles::in_dir(dir.path()),
            ..LoadOptions::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("ca.pem"), "{err}");
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn hostname_with_a_port_is_refused_and_ipv6_is_bracketed() {
        let msg = config_err(load("mksis.logging.email.server.hostname=127.0.0.1:25\n"));
        assert!(msg.contains("without a port"), "{msg}");
        let s =
            load("mksis.logging.email.server.hostname=::1\nmksis.logging.email.server.port=2525\n")
                .unwrap();
        assert_eq!(s.server().address(), "[::1]:2525");
    }

    #[test]
    fn odd_tls_settings_warn() {
        let s = load(&format!(
            "{HOST}mailgate.smtp.ssl.mode=implicit\nmksis.logging.email.server.port=465\n"
        ))
        .unwrap();
        let w: Vec<_> = s.warnings().iter().map(|w| w.0.as_str()).collect();
        assert!(
            w.iter()
                .any(|w| w.contains("`mailgate.smtp.ssl.mode` is ignored")),
            "{w:?}"
        );
        assert!(w.iter().any(|w| w.contains("port 465")), "{w:?}");
    }

    #[test]
    fn unrelated_keys_are_not_kept() {
        let s = load(&format!(
            "{HOST}mksis.db.password=dbsecret\nmksis.im.name=x\n"
        ))
        .unwrap();
        assert!(s.entry("mksis.db.password").is_none());
        assert!(!format!("{s:?}").contains("dbsecret"));
    }

    #[test]
    fn a_secret_keeps_its_trailing_escaped_space() {
        use secrecy::ExposeSecret;
        let s = load(&format!("{HOST}mksis.logging.emailfrom.password=pw\\ \n")).unwrap();
        let secret = s.require_secret(keys::EMAIL_PASSWORD, "basic").unwrap();
        assert_eq!(secret.expose_secret(), "pw ");
    }

    #[test]
    fn shown_values_hide_url_credentials_and_escape_controls() {
        assert_eq!(
            shown_value("https://app:s3cret@login.example.com/t?x=1"),
            "https://<withheld>@login.example.com/t?x=1"
        );
        assert_eq!(
            shown_value("https://login.example.com/a@b"),
            "https://login.example.com/a@b"
        );
        assert_eq!(shown_value("yes\u{1b}[2J"), "yes\\u{1b}[2J");
    }

    #[test]
    fn env_overrides_files() {
        // A key no other test reads, so the process-wide variable cannot interfere.
        let var = crate::properties::env_var_name(keys::HELO_NAME);
        // SAFETY: only this test sets or reads this variable.
        unsafe { std::env::set_var(&var, "relay.example.org") };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("is.properties"),
            format!("{HOST}mailgate.smtp.heloName=file\n"),
        )
        .unwrap();
        let s = Settings::load(LoadOptions {
            files: ConfigFiles::in_dir(dir.path()),
            env: true,
            ..LoadOptions::default()
        })
        .unwrap();
        unsafe { std::env::remove_var(&var) };
        assert_eq!(s.server().helo_name.as_deref(), Some("relay.example.org"));
        assert_eq!(
            s.entry(keys::HELO_NAME).unwrap().origin,
            Origin::Env { var }
        );
    }
}
