//! The property keys mailgate knows.

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
/// Where the outbox lives: a URL whose scheme chooses the registered store
/// (see [`crate::outbox::OutboxDescriptor`]).
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
/// Seconds a worker may go unheard before the others take over its
/// messages (default 30).
pub const OUTBOX_WORKER_TIMEOUT: &str = "mailgate.outbox.workerTimeoutSeconds";
/// Hours (decimals allowed) a recipient may stay deferred before its
/// sender gets one delay notice (default 4; 0: never).
pub const OUTBOX_DELAY_WARNING: &str = "mailgate.outbox.delayWarningHours";
/// `true`: sent messages keep their body for `keepSentHours` (default
/// false: the header section, envelope, size and replies only).
pub const OUTBOX_KEEP_SENT_BODIES: &str = "mailgate.outbox.keepSentBodies";
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
        SERVER_HOSTNAME | HELO_NAME | MESSAGE_ID_DOMAIN => 253,
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
