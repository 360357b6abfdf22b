//! The keys of the command line's own parts, `sendmail` and `relay`:
//! declared here, where they are read, and made known to loading through
//! [`Registry::with_keys`](mailgate::Registry::with_keys), as a strategy
//! declares its keys. Core's key list holds core's keys alone.

use mailgate::KeySpec;

/// The domain `sendmail` appends to a bare local name (`root`,
/// `www-data`) as sender or recipient (default: the domain of
/// `mksis.logging.email.from`).
pub const SENDMAIL_DOMAIN: &str = "mailgate.sendmail.domain";
/// An aliases file for `sendmail` (msmtp's format: `root: ops@example.com`,
/// `default: admin@example.com`), relative to the config folder.
pub const SENDMAIL_ALIASES: &str = "mailgate.sendmail.aliases";
/// `false`: `sendmail` sends at once and never opens the outbox, as
/// msmtp does (default true: stored first, then one attempt). For a
/// config that users other than the outbox's owner call `sendmail`
/// with (the Debian package's `/etc/mailgate`).
pub const SENDMAIL_QUEUE: &str = "mailgate.sendmail.queue";
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

/// The `sendmail` keys, with the longest value each takes.
pub static SENDMAIL_KEYS: &[KeySpec] = &[
    KeySpec::new(SENDMAIL_DOMAIN).max_len(253),
    KeySpec::new(SENDMAIL_ALIASES).max_len(4096),
    KeySpec::new(SENDMAIL_QUEUE).max_len(64),
];

/// The `relay` keys, with the longest value each takes.
pub static RELAY_KEYS: &[KeySpec] = &[
    KeySpec::new(RELAY_LISTEN).max_len(4096),
    KeySpec::new(RELAY_ALLOW).max_len(4096),
    KeySpec::new(RELAY_MAX_MESSAGE_BYTES).max_len(4096),
    KeySpec::new(RELAY_MAX_RECIPIENTS).max_len(4096),
    KeySpec::new(RELAY_MAX_CONNECTIONS).max_len(4096),
    KeySpec::new(RELAY_IDLE_SECONDS).max_len(4096),
    KeySpec::new(RELAY_MIN_DATA_RATE).max_len(4096),
    KeySpec::new(RELAY_TLS_CERT).max_len(4096),
    KeySpec::new(RELAY_TLS_KEY).max_len(4096),
    KeySpec::new(RELAY_USERS_FILE).max_len(4096),
    KeySpec::new(RELAY_REWRITE_FROM).max_len(4096),
    KeySpec::new(RELAY_METRICS).max_len(4096),
    KeySpec::new(RELAY_MAX_HOPS).max_len(4096),
    KeySpec::new(RELAY_MAX_DATA_MEMORY).max_len(4096),
];
