//! Typed, validated settings from `is.properties`, `security.properties`, the
//! environment and builder overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::{ConfigError, Origin, Result};
use crate::outbox::{OutboxLocation, OutboxSettings};
use crate::properties::{ConfigFiles, Entry, Properties, is_secret_key};
use crate::resolver::AuthFlags;
use crate::secret::{KeyCache, reveal};
use crate::strategy::{KeyFile, KeySpec};

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
    /// SMTP server host.
    pub const SERVER_HOSTNAME: &str = "mksis.logging.email.server.hostname";
    /// SMTP port (default 25).
    pub const SERVER_PORT: &str = "mksis.logging.email.server.port";
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
    /// `false`: no delivery status notification when a recipient is dead (default true).
    pub const OUTBOX_BOUNCES: &str = "mailgate.outbox.bounces";
    /// Who is told when a delivery status notification cannot be delivered.
    pub const OUTBOX_POSTMASTER: &str = "mailgate.outbox.postmaster";
    /// `false`: `sendmail` and `send --queue` never start a worker for what
    /// they leave queued (default true).
    pub const OUTBOX_AUTO_DELIVER: &str = "mailgate.outbox.autoDeliver";
    /// The domain `sendmail` appends to a bare local name (`root`,
    /// `www-data`) as sender or recipient (default: the domain of
    /// `mksis.logging.email.from`).
    pub const SENDMAIL_DOMAIN: &str = "mailgate.sendmail.domain";
    /// An aliases file for `sendmail` (msmtp's format: `root: ops@example.com`,
    /// `default: admin@example.com`), relative to the config folder.
    pub const SENDMAIL_ALIASES: &str = "mailgate.sendmail.aliases";
    /// Seconds a worker may go unheard before the others take over its
    /// messages (default 30).
    pub const OUTBOX_WORKER_TIMEOUT: &str = "mailgate.outbox.workerTimeoutSeconds";
    /// Hours (decimals allowed) a recipient may stay deferred before its
    /// sender gets one delay notice (default 4; 0: never).
    pub const OUTBOX_DELAY_WARNING: &str = "mailgate.outbox.delayWarningHours";
    /// `true`: sent messages keep their body for `keepSentHours` (default
    /// false: the header section, envelope, size and replies only).
    pub const OUTBOX_KEEP_SENT_BODIES: &str = "mailgate.outbox.keepSentBodies";
    /// Where `mailgate relay` listens (default `127.0.0.1:2525`).
    pub const RELAY_LISTEN: &str = "mailgate.relay.listen";
    /// Clients allowed to submit to the relay: comma-separated CIDRs (default loopback).
    pub const RELAY_ALLOW: &str = "mailgate.relay.allow";
    /// Largest message the relay accepts, advertised as SIZE (default 26214400).
    pub const RELAY_MAX_MESSAGE_BYTES: &str = "mailgate.relay.maxMessageBytes";
    /// Most recipients per message (default 100).
    pub const RELAY_MAX_RECIPIENTS: &str = "mailgate.relay.maxRecipients";
    /// Most simultaneous client connections (default 100).
    pub const RELAY_MAX_CONNECTIONS: &str = "mailgate.relay.maxConnections";
    /// A client silent this long is dropped, in seconds (default 60).
    pub const RELAY_IDLE_SECONDS: &str = "mailgate.relay.idleSeconds";
    /// Slowest message data accepted, bytes per second after the first
    /// `idleSeconds` (default 500; 0: no minimum).
    pub const RELAY_MIN_DATA_RATE: &str = "mailgate.relay.minDataRate";
    /// The relay's STARTTLS certificate chain (PEM), relative to the config folder.
    pub const RELAY_TLS_CERT: &str = "mailgate.relay.tls.certFile";
    /// The relay's STARTTLS private key (PEM), relative to the config folder.
    pub const RELAY_TLS_KEY: &str = "mailgate.relay.tls.keyFile";
    /// Local AUTH users (`name:argon2-hash` lines), relative to the config folder.
    pub const RELAY_USERS_FILE: &str = "mailgate.relay.usersFile";
    /// true: the envelope sender and From become the upstream user; the author moves to Reply-To.
    pub const RELAY_REWRITE_FROM: &str = "mailgate.relay.rewriteFrom";
    /// `HOST:PORT` of a Prometheus metrics endpoint (default: none).
    pub const RELAY_METRICS: &str = "mailgate.relay.metrics";
    /// Most `Received:` fields a message may carry into the relay (default
    /// 50); more is a mail loop, refused with `554 5.4.6`.
    pub const RELAY_MAX_HOPS: &str = "mailgate.relay.maxHops";
    /// MiB of message data all relay sessions together may hold (default
    /// 256, at least one `maxMessageBytes`); beyond it DATA gets `452 4.3.1`.
    pub const RELAY_MAX_DATA_MEMORY: &str = "mailgate.relay.maxDataMemoryMB";
    /// Picks a registered strategy by name, overriding the flags.
    pub const AUTH_STRATEGY: &str = "mailgate.smtp.auth.strategy";
    /// Key file for `ENC(...)` values (default `mailgate.key` in the config folder).
    pub const CRYPTO_KEY_FILE: &str = "mailgate.crypto.keyFile";

    /// Every key core knows; strategies declare their own in their
    /// [`StrategyDescriptor`](crate::StrategyDescriptor).
    pub const CORE: &[&str] = &[
        OAUTH_AUTHENTICATION,
        BASIC_AUTHENTICATION,
        SSL_ENABLED,
        EMAIL_FROM,
        SERVER_HOSTNAME,
        SERVER_PORT,
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
        OUTBOX_BOUNCES,
        OUTBOX_POSTMASTER,
        OUTBOX_WORKER_TIMEOUT,
        OUTBOX_AUTO_DELIVER,
        OUTBOX_DELAY_WARNING,
        OUTBOX_KEEP_SENT_BODIES,
        SENDMAIL_DOMAIN,
        SENDMAIL_ALIASES,
        RELAY_LISTEN,
        RELAY_ALLOW,
        RELAY_MAX_MESSAGE_BYTES,
        RELAY_MAX_RECIPIENTS,
        RELAY_MAX_CONNECTIONS,
        RELAY_IDLE_SECONDS,
        RELAY_MIN_DATA_RATE,
        RELAY_TLS_CERT,
        RELAY_TLS_KEY,
        RELAY_USERS_FILE,
        RELAY_REWRITE_FROM,
        RELAY_METRICS,
        RELAY_MAX_HOPS,
        RELAY_MAX_DATA_MEMORY,
        AUTH_STRATEGY,
        CRYPTO_KEY_FILE,
    ];

    /// The vendor's own e-mail keys that mailgate does not read. They are
    /// real keys of an RV&S `is.properties`, not misspellings of mailgate's:
    /// no "did you mean" for them.
    pub const VENDOR_EMAIL_KEYS: &[&str] = &[
        "mksis.logging.email.to",
        "mksis.logging.email.cc",
        "mksis.logging.email.bcc",
        "mksis.logging.email.subject",
        "mksis.logging.email.enabled",
        "mksis.logging.email.level",
        "mksis.logging.email.threshold",
        "mksis.logging.email.server.timeout",
        "mksis.logging.email.server.connectiontimeout",
        "mksis.smtp.starttls.enable",
        "mksis.smtp.timeout",
        "mksis.smtp.connectiontimeout",
    ];

    /// The longest value core's `key` may hold, in bytes: a host name is at
    /// most 253 (DNS), a flag or number a few characters; anything else 4096.
    /// A strategy's keys have their declared [`KeySpec::max_len`](crate::KeySpec).
    pub fn max_value_len(key: &str) -> usize {
        const SHORT: &[&str] = &[
            OAUTH_AUTHENTICATION,
            BASIC_AUTHENTICATION,
            SSL_ENABLED,
            SERVER_PORT,
            SSL_MODE,
            TIMEOUT_SECONDS,
            ALLOW_PLAINTEXT_AUTH,
            MAX_CONNECTIONS,
            MAX_MESSAGE_BYTES,
            OUTBOX_RETRY_INITIAL,
            OUTBOX_RETRY_MAX,
            OUTBOX_MAX_AGE,
            OUTBOX_KEEP_SENT,
            OUTBOX_LEASE,
            OUTBOX_BOUNCES,
            OUTBOX_WORKER_TIMEOUT,
            OUTBOX_AUTO_DELIVER,
            OUTBOX_DELAY_WARNING,
            OUTBOX_KEEP_SENT_BODIES,
        ];
        match key {
            SERVER_HOSTNAME | HELO_NAME | MESSAGE_ID_DOMAIN | SENDMAIL_DOMAIN => 253,
            EMAIL_FROM | AUTH_STRATEGY | OUTBOX_POSTMASTER => 998,
            OUTBOX_URL => 2048,
            k if SHORT.contains(&k) => 64,
            _ => 4096,
        }
    }

    /// The file one of core's keys belongs in, for "add it to ..." messages.
    pub fn file_of(key: &str) -> &'static str {
        if key.starts_with("mksis.security.") {
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

/// How long a recipient may stay deferred before its sender is told
/// (`mailgate.outbox.delayWarningHours`, 4 hours as Postfix's
/// `delay_warning_time` is commonly set).
pub const DEFAULT_DELAY_WARNING: Duration = Duration::from_secs(4 * 3600);

/// The outbox file in the config folder when `mailgate.outbox.url` is not set.
pub const DEFAULT_OUTBOX_FILE: &str = "mailgate-outbox.db";

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
    /// Keys the registered strategies read, beyond core's
    /// ([`Registry::strategy_keys`](crate::Registry::strategy_keys)).
    pub strategy_keys: Vec<KeySpec>,
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
                location: OutboxLocation::Sqlite(PathBuf::new()),
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
            worker_timeout: seconds(keys::OUTBOX_WORKER_TIMEOUT, 30, 3600)?,
            delay_warning: self.delay_warning()?,
            keep_sent_bodies: self.flag_or(keys::OUTBOX_KEEP_SENT_BODIES, false)?,
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

    /// `mailgate.outbox.delayWarningHours`: hours with decimals (Postfix's
    /// `delay_warning_time`), 0 for none; at most a year.
    fn delay_warning(&self) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = self.value(keys::OUTBOX_DELAY_WARNING) else {
            return Ok(Some(DEFAULT_DELAY_WARNING));
        };
        let hours = v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|h| h.is_finite() && (0.0..=24.0 * 365.0).contains(h))
            .ok_or_else(|| {
                self.invalid(
                    keys::OUTBOX_DELAY_WARNING,
                    "a number of hours from 0 (no delay notices) to 8760, decimals allowed (0.25 is 15 minutes)",
                )
            })?;
        Ok(Some(Duration::from_secs_f64(hours * 3600.0)).filter(|d| !d.is_zero()))
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
        let names: Vec<&str> = entry
            .value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if names.len() > MAX_CA_FILES {
            return Err(self.invalid(
                keys::SSL_CA_FILE,
                &format!("at most {MAX_CA_FILES} CA files"),
            ));
        }
        for name in names {
            let path = base.join(name);
            let fail = |reason: String| ConfigError::CaFile {
                path: path.clone(),
                origin: entry.origin.clone(),
                reason,
            };
            let pem = mailgate_properties::fs::read_regular(&path, MAX_CA_FILE_BYTES)
                .map_err(|e| fail(format!("cannot read it: {e}")))?;
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
fn holds_secret(specs: &[KeySpec], key: &str) -> bool {
    match specs.iter().find(|spec| spec.name == key) {
        Some(spec) => spec.secret,
        None => is_secret_key(key),
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

/// `(scheme, user info, rest)` of a URL whose user info may hold a
/// password, for hiding it. Pasted passwords are often not percent-encoded,
/// so a `/`, `?` or `#` in one must not end the user info early: when the
/// text before the last `@` holds a `:`, all of it counts as user info
/// (over-hiding a URL whose path has an `@` is the safe mistake).
pub fn url_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = match authority.rfind('@') {
        Some(at) if authority[..at].contains(':') => at,
        _ => rest.rfind('@').filter(|at| rest[..*at].contains(':'))?,
    };
    Some((scheme, &rest[..at], &rest[at + 1..]))
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

/// The key file's name in the config folder when nothing else is set.
pub const DEFAULT_KEY_FILE: &str = "mailgate.key";

fn parse_mailbox(v: &str) -> Option<Mailbox> {
    // A control character would break the SMTP and SASL lines it goes into.
    if v.chars().any(char::is_control) {
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
    ("mksis.logging.emailfrom", keys::EMAIL_FROM),
    ("mksis.smtp.ssl", keys::SSL_ENABLED),
    ("mksis.logging.email.server", keys::SERVER_HOSTNAME),
];

/// Unknown keys that are a near miss of a known one, and unknown `mailgate.*` keys.
fn near_miss_warnings(
    props: &Properties,
    known: &[&str],
    confusions: &[(&str, &str)],
) -> Vec<Warning> {
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
        if known.contains(&key) || keys::VENDOR_EMAIL_KEYS.contains(&key) {
            continue;
        }
        let lower = key.to_ascii_lowercase();
        let shape = histogram(&lower);
        let best = confusions
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
            // Small relative to the key: one edit per ten characters, so
            // `mksis.logging.email.to` is not taken for `...email.from`.
            Some((d, k)) if d <= MAX_DISTANCE && d * 10 <= key.len() => out.push(Warning(format!(
                "unknown property `{}` at {origin}; did you mean `{k}`?",
                cut_short(&key.escape_debug().to_string(), SHOWN_CHARS)
            ))),
            _ if key.starts_with("mailgate.") => out.push(Warning(format!(
                "unknown property `{}` at {origin} is ignored",
                cut_short(&key.escape_debug().to_string(), SHOWN_CHARS)
            ))),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::Error;

    /// The keys the built-in strategies declare, as their crates do.
    pub(crate) mod test_keys {
        use crate::strategy::KeySpec;
        pub const EMAIL_PASSWORD: &str = "mksis.logging.emailfrom.password";
        pub const OAUTH_CLIENT_ID: &str = "mksis.security.smtp.oauth.clientID";
        pub const OAUTH_CLIENT_SECRET: &str = "mksis.security.smtp.oauth.clientSecret";
        pub const OAUTH_TOKEN_ENDPOINT: &str = "mksis.security.smtp.oauth.tokenEndpointURL";
        pub const OAUTH_SCOPE: &str = "mksis.security.smtp.oauth.scope";
        pub const SECRETS: &[&str] = &[EMAIL_PASSWORD, OAUTH_CLIENT_SECRET];
        pub const SPECS: &[KeySpec] = &[
            KeySpec::secret(EMAIL_PASSWORD).misspelled_as(&["mksis.logging.email.password"]),
            KeySpec::new(OAUTH_CLIENT_ID).in_security_file(),
            KeySpec::secret(OAUTH_CLIENT_SECRET).in_security_file(),
            KeySpec::new(OAUTH_TOKEN_ENDPOINT)
                .in_security_file()
                .url()
                .max_len(2048),
            KeySpec::new(OAUTH_SCOPE).in_security_file().max_len(2048),
        ];
    }
    use test_keys as vendor;

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
            strategy_keys: vendor::SPECS.to_vec(),
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
            .require(vendor::OAUTH_CLIENT_SECRET, "oauth")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("security.properties"), "{msg}");
        assert!(msg.contains("oauth strategy"), "{msg}");
    }

    #[test]
    fn security_file_is_merged() {
        let s = load_with(HOST, Some("mksis.security.smtp.oauth.scope=s1\n")).unwrap();
        assert_eq!(s.value(vendor::OAUTH_SCOPE), Some("s1"));
        assert_eq!(s.files_read().len(), 2);
    }

    #[test]
    fn invalid_secret_value_is_not_shown() {
        let s = load(&format!("{HOST}mksis.logging.emailfrom.password=hunter2\n")).unwrap();
        let msg = s.invalid(vendor::EMAIL_PASSWORD, "something").to_string();
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
    fn a_too_long_url_is_echoed_without_its_password() {
        let url = format!("postgres://mg:pw-secret-9@db/{}", "x".repeat(3000));
        let err = load(&format!("{HOST}mailgate.outbox.url={url}\n")).unwrap_err();
        let msg = format!("{err} {err:?}");
        assert!(msg.contains("mailgate.outbox.url"), "{msg}");
        assert!(!msg.contains("pw-secret-9"), "{msg}");
    }

    #[test]
    fn delay_warnings_default_to_4_hours_take_decimals_and_0_turns_them_off() {
        let s = load(HOST).unwrap();
        assert_eq!(
            s.outbox().delay_warning,
            Some(Duration::from_secs(4 * 3600))
        );
        let s = load(&format!("{HOST}mailgate.outbox.delayWarningHours=0.25\n")).unwrap();
        assert_eq!(s.outbox().delay_warning, Some(Duration::from_secs(900)));
        let s = load(&format!("{HOST}mailgate.outbox.delayWarningHours=0\n")).unwrap();
        assert_eq!(s.outbox().delay_warning, None);
        for bad in ["-1", "NaN", "inf", "8761", "four"] {
            let err =
                load(&format!("{HOST}mailgate.outbox.delayWarningHours={bad}\n")).unwrap_err();
            assert!(
                err.to_string()
                    .contains("mailgate.outbox.delayWarningHours"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn sent_bodies_are_dropped_unless_kept() {
        assert!(!load(HOST).unwrap().outbox().keep_sent_bodies);
        let s = load(&format!("{HOST}mailgate.outbox.keepSentBodies=true\n")).unwrap();
        assert!(s.outbox().keep_sent_bodies);
        let err = load(&format!("{HOST}mailgate.outbox.keepSentBodies=yes\n")).unwrap_err();
        assert!(
            err.to_string().contains("mailgate.outbox.keepSentBodies"),
            "{err}"
        );
    }

    #[test]
    fn the_worker_timeout_defaults_to_30_s_and_is_checked() {
        let s = load(HOST).unwrap();
        assert_eq!(s.outbox().worker_timeout, Duration::from_secs(30));
        let s = load(&format!("{HOST}mailgate.outbox.workerTimeoutSeconds=3\n")).unwrap();
        assert_eq!(s.outbox().worker_timeout, Duration::from_secs(3));
        for bad in ["0", "3601", "ten"] {
            let err = load(&format!(
                "{HOST}mailgate.outbox.workerTimeoutSeconds={bad}\n"
            ))
            .unwrap_err();
            assert!(
                err.to_string()
                    .contains("mailgate.outbox.workerTimeoutSeconds"),
                "{err}"
            );
        }
    }

    #[test]
    fn debug_shows_no_url_password_and_no_declared_secret() {
        let s = load(&format!(
            "{HOST}mailgate.outbox.url=postgres://mg:pw-secret-9@db/mail\n"
        ))
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("pw-secret-9"), "{dbg}");
        assert!(dbg.contains("postgres://mg@db/mail"), "{dbg}");
    }

    #[test]
    fn the_declaration_decides_what_is_secret_and_the_name_guess_covers_the_rest() {
        static SPECS: &[KeySpec] = &[
            KeySpec::new("x.vault.tokenTtlSeconds"),
            KeySpec::secret("x.vault.credential"),
        ];
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("is.properties"),
            format!(
                "{HOST}x.vault.tokenTtlSeconds=60\nx.vault.credential=c-r-e-d\n\
                 mksis.logging.emailfrom.password=pw-1\n"
            ),
        )
        .unwrap();
        let s = Settings::load(LoadOptions {
            files: ConfigFiles::in_dir(dir.path()),
            strategy_keys: SPECS.to_vec(),
            ..LoadOptions::default()
        })
        .unwrap();
        // Named like a secret but declared plain: readable.
        assert_eq!(s.value("x.vault.tokenTtlSeconds"), Some("60"));
        assert!(!s.is_secret("x.vault.tokenTtlSeconds"));
        // Declared secret, though its name says nothing: held apart.
        assert!(s.is_secret("x.vault.credential"));
        assert_eq!(s.value("x.vault.credential"), None);
        assert_eq!(
            s.require_secret("x.vault.credential", "vault")
                .unwrap()
                .expose_secret(),
            "c-r-e-d"
        );
        assert!(!format!("{s:?}").contains("c-r-e-d"));
        // Undeclared here (no basic strategy registered) and named like a
        // password: dropped as unknown, never kept in the clear.
        assert!(!format!("{s:?}").contains("pw-1"));
    }

    #[test]
    fn a_secret_keeps_its_trailing_escaped_space() {
        use secrecy::ExposeSecret;
        let s = load(&format!("{HOST}mksis.logging.emailfrom.password=pw\\ \n")).unwrap();
        let secret = s.require_secret(vendor::EMAIL_PASSWORD, "basic").unwrap();
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
        // Unencoded delimiters in a pasted password do not end it early.
        for url in [
            "postgres://mg:ab#cd@db/mail",
            "postgres://mg:ab?cd@db/mail",
            "postgres://mg:ab/cd@db/mail",
        ] {
            let shown = shown_value(url);
            assert_eq!(shown, "postgres://<withheld>@db/mail", "{url}");
        }
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

    #[test]
    fn an_oversized_value_names_key_file_and_line_and_is_cut_short() {
        let host = "h".repeat(8 * 1024);
        let msg = config_err(load(&format!(
            "# c\nmksis.logging.email.server.hostname={host}\n"
        )));
        assert!(
            msg.contains("`mksis.logging.email.server.hostname`"),
            "{msg}"
        );
        assert!(msg.contains("is.properties:2"), "{msg}");
        assert!(msg.contains("8192 bytes long, more than the 253"), "{msg}");
        assert!(
            msg.len() < 400,
            "the echo is cut short: {} bytes",
            msg.len()
        );
        // A secret's start is never shown.
        let pw = "p".repeat(10_000);
        let msg = config_err(load(&format!(
            "{HOST}mksis.logging.emailfrom.password={pw}\n"
        )));
        assert!(msg.contains("mksis.logging.emailfrom.password"), "{msg}");
        assert!(!msg.contains("ppp"), "{msg}");
    }

    #[test]
    fn invalid_values_are_echoed_cut_short() {
        let long = "x".repeat(500);
        let msg = config_err(load(&format!(
            "{HOST}mailgate.smtp.ssl.mode={long}\nmksis.smtp.ssl.enabled=true\n"
        )));
        assert!(msg.contains("..."), "{msg}");
        assert!(msg.len() < 400, "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn fifo_and_device_properties_files_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("is.properties");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for path in [fifo.as_path(), Path::new("/dev/zero")] {
            let start = std::time::Instant::now();
            let err = Settings::load(LoadOptions {
                files: ConfigFiles {
                    dir: None,
                    is: Some(path.to_owned()),
                    security: None,
                    security_optional: false,
                },
                ..LoadOptions::default()
            })
            .unwrap_err();
            assert!(start.elapsed() < Duration::from_secs(2));
            assert_eq!(err.exit_code(), 78);
            let msg = err.to_string();
            assert!(msg.contains("not a regular file"), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn fifo_and_device_ca_files_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ca.pem");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for ca in ["ca.pem", "/dev/zero", "/dev/urandom"] {
            std::fs::write(
                dir.path().join("is.properties"),
                format!("{HOST}mailgate.smtp.ssl.caFile={ca}\n"),
            )
            .unwrap();
            let start = std::time::Instant::now();
            let err = Settings::load(LoadOptions {
                files: ConfigFiles::in_dir(dir.path()),
                ..LoadOptions::default()
            })
            .unwrap_err();
            assert!(start.elapsed() < Duration::from_secs(2), "{ca}");
            let msg = err.to_string();
            assert!(msg.contains("not a regular file"), "{msg}");
            assert!(msg.contains("mailgate.smtp.ssl.caFile"), "{msg}");
            assert_eq!(err.exit_code(), 78);
        }
    }

    #[test]
    fn oversized_properties_and_ca_files_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pem");
        let f = std::fs::File::create(&big).unwrap();
        // Sparse: no disk needed, and nothing may be read from it.
        f.set_len(MAX_CA_FILE_BYTES + 1).unwrap();
        std::fs::write(
            dir.path().join("is.properties"),
            format!("{HOST}mailgate.smtp.ssl.caFile=big.pem\n"),
        )
        .unwrap();
        let msg = Settings::load(LoadOptions {
            files: ConfigFiles::in_dir(dir.path()),
            ..LoadOptions::default()
        })
        .unwrap_err()
        .to_string();
        assert!(msg.contains("larger than 4194304 bytes"), "{msg}");
        std::fs::File::create(dir.path().join("is.properties"))
            .unwrap()
            .set_len(mailgate_properties::MAX_FILE_BYTES + 1)
            .unwrap();
        let msg = Settings::load(LoadOptions {
            files: ConfigFiles::in_dir(dir.path()),
            ..LoadOptions::default()
        })
        .unwrap_err()
        .to_string();
        assert!(msg.contains("larger than 4194304 bytes"), "{msg}");
        assert!(msg.contains("is.properties"), "{msg}");
    }

    #[test]
    fn vendor_email_keys_and_far_edits_get_no_did_you_mean() {
        let s = load(&format!(
            "{HOST}mksis.logging.email.to=ops@example.com\nmksis.logging.email.form=a@example.com\nmksis.logging.email.subject=x\n"
        ))
        .unwrap();
        let w: Vec<_> = s.warnings().iter().map(|w| w.0.as_str()).collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("`mksis.logging.email.form`")
                && w[0].contains("did you mean `mksis.logging.email.from`?"),
            "{w:?}"
        );
    }

    #[test]
    fn a_control_character_in_the_sender_names_key_file_and_line() {
        let msg = config_err(load(&format!(
            "{HOST}mksis.logging.email.from=alm\\u0001@example.com\n"
        )));
        assert!(msg.contains("`mksis.logging.email.from`"), "{msg}");
        assert!(msg.contains("is.properties:2"), "{msg}");
        assert!(msg.contains("\\u{1}"), "{msg}");
    }

    #[test]
    fn a_key_every_strategy_needs_says_so_in_english() {
        let msg = config_err(load("mksis.smtp.authentication=false\n"));
        assert!(msg.contains("required by every strategy"), "{msg}");
        let s = load(HOST).unwrap();
        let msg = s
            .require(vendor::OAUTH_SCOPE, "oauth")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("required by the oauth strategy"), "{msg}");
    }

    #[test]
    fn a_vendor_encrypted_secret_is_reported_not_used() {
        let s = load(&format!(
            "{HOST}mksis.logging.emailfrom.password={{AES}}c2VjcmV0LXZhbHVlLWhlcmU=\n"
        ))
        .unwrap();
        let e = s
            .require_secret(vendor::EMAIL_PASSWORD, "basic")
            .unwrap_err();
        assert!(matches!(e, ConfigError::ForeignEncrypted { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("is.properties:2"), "{msg}");
        assert!(msg.contains("encryptPassword"), "{msg}");
        assert!(!msg.contains("c2VjcmV0"), "{msg}");
        assert!(s.verify_secrets().is_err());
    }

    #[test]
    fn loading_finishes_an_interrupted_key_rotation() {
        use mailgate_secrets::{RotationStep, SecretKey, rotate_key_with_hook};
        use secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join(DEFAULT_KEY_FILE);
        let old = SecretKey::create(&key_file).unwrap();
        let is = dir.path().join("is.properties");
        let security = dir.path().join("security.properties");
        std::fs::write(&is, format!("{HOST}{}=pw\n", vendor::EMAIL_PASSWORD)).unwrap();
        std::fs::write(&security, format!("{}=cs\n", vendor::OAUTH_CLIENT_SECRET)).unwrap();
        mailgate_secrets::encrypt_files(&[&is, &security], vendor::SECRETS, &old).unwrap();
        let new = SecretKey::generate().unwrap();
        // Killed between the two files: is.properties under the new key,
        // security.properties under the old one.
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rotate_key_with_hook(
                &key_file,
                &[&is, &security],
                vendor::SECRETS,
                &new,
                &mut |s| {
                    if s == RotationStep::FileRewritten(0) {
                        panic!("killed");
                    }
                },
            )
        }));
        assert!(crashed.is_err());
        let s = Settings::load(LoadOptions {
            files: ConfigFiles::in_dir(dir.path()),
            strategy_keys: vendor::SPECS.to_vec(),
            ..LoadOptions::default()
        })
        .unwrap();
        assert!(!mailgate_secrets::pending_key_path(&key_file).exists());
        assert_eq!(SecretKey::load(&key_file).unwrap().id(), new.id());
        s.verify_secrets().unwrap();
        assert_eq!(
            s.require_secret(vendor::OAUTH_CLIENT_SECRET, "oauth")
                .unwrap()
                .expose_secret(),
            "cs"
        );
    }
}
