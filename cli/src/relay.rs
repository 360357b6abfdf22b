//! `mailgate relay`: an SMTP listener that stores what legacy senders submit
//! in the outbox before it answers 250, and a worker that delivers it
//! upstream with whatever strategy the config resolves to; reloaded on
//! SIGHUP and when a config file changes, keeping the old settings when the
//! new ones are invalid.

use crate::keys as cli_keys;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use mailgate::message::address::envelope_address;
use mailgate::outbox::Worker;
use mailgate::{ConfigError, Envelope, Error, Mailbox, Mailer, MailerBuilder, Settings, keys};
use mailgate_relay::{Cidr, MessageSink, Rejection, RelayConfig, RelayServer, Submission, Users};
use tokio::sync::watch;

use crate::Failure;

/// Defaults of the relay's settings.
const DEFAULT_LISTEN: &str = "127.0.0.1:2525";
const DEFAULT_MAX_MESSAGE_BYTES: usize = 26_214_400;
const DEFAULT_MAX_RECIPIENTS: usize = 100;
const DEFAULT_MAX_CONNECTIONS: usize = 100;
const DEFAULT_IDLE_SECONDS: u64 = 60;
/// The slowest message data may arrive by default, in bytes per second
/// (Postfix's `smtpd_min_data_rate`): slower, the client is dropped like an
/// idle one.
const DEFAULT_MIN_DATA_RATE: usize = 500;
/// The most Received fields a message may bring (Postfix's `hop_count_limit`).
const DEFAULT_MAX_HOPS: usize = 50;
/// MiB of message data all sessions together may hold, unless one message
/// may be bigger (then that, rounded up).
const DEFAULT_MAX_DATA_MEMORY_MIB: usize = 256;

/// The status file a running relay keeps next to its outbox, for `check`.
pub(crate) const STATUS_FILE: &str = "mailgate-relay.status";

/// Everything the relay builds from the config folder.
struct Loaded {
    mailer: Mailer,
    relay: RelayConfig,
    listen: SocketAddr,
    rewrite_from: Option<Mailbox>,
    metrics: Option<SocketAddr>,
}

/// How to build a [`Mailer`] from the command line's options, again and
/// again (every reload reads the files anew).
pub(crate) type Build = Box<dyn Fn() -> Result<MailerBuilder, Error> + Send + Sync>;

fn load(build: &Build) -> Result<Loaded, Error> {
    let mailer = build()?.build()?;
    // The outbox must work before anything is accepted into it.
    mailer.outbox()?;
    let settings = mailer.settings();
    let listen = parse_listen(settings)?;
    refuse_upstream_self(settings, listen)?;
    let allow = parse_allow(settings)?;
    let users = match settings.value(cli_keys::RELAY_USERS_FILE) {
        Some(path) => {
            let path = settings.base_dir().join(path);
            Some(Users::load(&path).map_err(|e| {
                config(
                    settings,
                    cli_keys::RELAY_USERS_FILE,
                    &format!("a readable users file ({e})"),
                )
            })?)
        }
        None => None,
    };
    // Never an open relay by accident: a listener beyond loopback needs an
    // allow list or local AUTH.
    if !listen.ip().is_loopback()
        && settings.value(cli_keys::RELAY_ALLOW).is_none()
        && users.is_none()
    {
        return Err(settings
            .invalid(
                cli_keys::RELAY_LISTEN,
                &format!(
                    "a loopback address, or set `{}` (the clients allowed) or `{}` (local AUTH): listening on {} for anyone would be an open relay",
                    cli_keys::RELAY_ALLOW,
                    cli_keys::RELAY_USERS_FILE,
                    listen.ip()
                ),
            )
            .into());
    }
    let tls = match (
        settings.value(cli_keys::RELAY_TLS_CERT),
        settings.value(cli_keys::RELAY_TLS_KEY),
    ) {
        (Some(cert), Some(key)) => Some(server_tls(
            &settings.base_dir().join(cert),
            &settings.base_dir().join(key),
            settings,
        )?),
        (None, None) => None,
        (Some(_), None) => {
            return Err(config(
                settings,
                cli_keys::RELAY_TLS_KEY,
                "the key of `mailgate.relay.tls.certFile` (a PEM private key file)",
            ));
        }
        (None, Some(_)) => {
            return Err(config(
                settings,
                cli_keys::RELAY_TLS_CERT,
                "the certificate chain for `mailgate.relay.tls.keyFile` (a PEM file)",
            ));
        }
    };
    let max_recipients = number(
        settings,
        cli_keys::RELAY_MAX_RECIPIENTS,
        DEFAULT_MAX_RECIPIENTS,
        1,
        10_000,
    )?;
    let max_message_bytes = number(
        settings,
        cli_keys::RELAY_MAX_MESSAGE_BYTES,
        DEFAULT_MAX_MESSAGE_BYTES,
        1024,
        1 << 30,
    )?;
    let max_data_memory = number(
        settings,
        cli_keys::RELAY_MAX_DATA_MEMORY,
        DEFAULT_MAX_DATA_MEMORY_MIB.max(max_message_bytes.div_ceil(1 << 20)),
        1,
        1 << 20,
    )?
    .saturating_mul(1 << 20);
    if max_data_memory < max_message_bytes {
        return Err(config(
            settings,
            cli_keys::RELAY_MAX_DATA_MEMORY,
            &format!(
                "at least one message of `{}` ({max_message_bytes} bytes: {} MiB), or no relay session could ever hold one",
                cli_keys::RELAY_MAX_MESSAGE_BYTES,
                max_message_bytes.div_ceil(1 << 20)
            ),
        ));
    }
    let defaults = RelayConfig::default();
    let relay = RelayConfig {
        hostname: hostname(),
        allow,
        // A message of maxRecipients recipients (EHLO, MAIL, the RCPTs,
        // DATA, a few more) must fit in the commands allowed between two.
        max_commands: defaults.max_commands.max(max_recipients + 16),
        max_message_bytes,
        max_data_memory,
        max_recipients,
        max_connections: number(
            settings,
            cli_keys::RELAY_MAX_CONNECTIONS,
            DEFAULT_MAX_CONNECTIONS,
            1,
            10_000,
        )?,
        idle_timeout: Duration::from_secs(number(
            settings,
            cli_keys::RELAY_IDLE_SECONDS,
            DEFAULT_IDLE_SECONDS as usize,
            1,
            3600,
        )? as u64),
        min_data_rate: number(
            settings,
            cli_keys::RELAY_MIN_DATA_RATE,
            DEFAULT_MIN_DATA_RATE,
            0,
            1 << 30,
        )? as u64,
        max_hops: number(
            settings,
            cli_keys::RELAY_MAX_HOPS,
            DEFAULT_MAX_HOPS,
            1,
            1000,
        )?,
        // A worker of this process that meets this id in an EHLO reply is
        // talking to this listener: it refuses instead of looping.
        instance_id: Some(mailgate::smtp::instance_id().to_owned()),
        tls,
        users,
        ..defaults
    };
    // The listener's own checks, at load: a reload then cannot pass here and
    // be refused by the listener.
    relay.validate().map_err(|e| {
        let key = match e.field {
            "allow" => cli_keys::RELAY_ALLOW,
            "max_message_bytes" => cli_keys::RELAY_MAX_MESSAGE_BYTES,
            "max_recipients" => cli_keys::RELAY_MAX_RECIPIENTS,
            "max_connections" => cli_keys::RELAY_MAX_CONNECTIONS,
            "idle_timeout" => cli_keys::RELAY_IDLE_SECONDS,
            "max_hops" => cli_keys::RELAY_MAX_HOPS,
            "max_data_memory" => cli_keys::RELAY_MAX_DATA_MEMORY,
            // The rest is set here, not from properties (the host name).
            _ => cli_keys::RELAY_LISTEN,
        };
        config(settings, key, &e.reason)
    })?;
    let rewrite_from = if settings.flag(cli_keys::RELAY_REWRITE_FROM)? {
        Some(settings.sender().cloned().ok_or_else(|| {
            config(
                settings,
                keys::EMAIL_FROM,
                "the upstream sender address: `mailgate.relay.rewriteFrom=true` sends every message as it",
            )
        })?)
    } else {
        None
    };
    let metrics = match settings.value(cli_keys::RELAY_METRICS) {
        None => None,
        Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
            config(
                settings,
                cli_keys::RELAY_METRICS,
                "HOST:PORT, e.g. 127.0.0.1:9125",
            )
        })?),
    };
    Ok(Loaded {
        mailer,
        relay,
        listen,
        rewrite_from,
        metrics,
    })
}

fn config(settings: &Settings, key: &str, expected: &str) -> Error {
    settings.invalid(key, expected).into()
}

fn parse_listen(settings: &Settings) -> Result<SocketAddr, Error> {
    settings
        .value(cli_keys::RELAY_LISTEN)
        .unwrap_or(DEFAULT_LISTEN)
        .parse::<SocketAddr>()
        .map_err(|_| {
            config(
                settings,
                cli_keys::RELAY_LISTEN,
                "IP:PORT, e.g. 127.0.0.1:2525",
            )
        })
}

/// An upstream that is the relay's own listener would send every message
/// back to it, round and round: a configuration error naming both keys.
/// The upstream's name is resolved only when its port is the listen port.
fn refuse_upstream_self(settings: &Settings, listen: SocketAddr) -> Result<(), Error> {
    let server = settings.server();
    if server.port != listen.port() {
        return Ok(());
    }
    let upstream: Vec<IpAddr> = match server.host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        // A name that does not resolve now is not this relay; delivery
        // reports it.
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(server.host.as_str(), server.port))
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    if !upstream.iter().any(|&ip| reaches(ip, listen.ip())) {
        return Ok(());
    }
    Err(settings
        .invalid(
            keys::SERVER_HOSTNAME,
            &format!(
                "a server other than this relay: `{}` port `{}` (`{}`) is the relay's own `{}` ({listen}), so every message would loop back to it; point the upstream at the real server or move `{}`",
                server.host,
                server.port,
                keys::SERVER_PORT,
                cli_keys::RELAY_LISTEN,
                cli_keys::RELAY_LISTEN,
            ),
        )
        .into())
}

/// Whether a connection to `upstream` reaches a listener bound to `listen`
/// (same port assumed): the same address, or a listener on every address
/// (`0.0.0.0`, `::`) and an address of this host, or `0.0.0.0` as the
/// upstream (Linux connects it to this host).
fn reaches(upstream: IpAddr, listen: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (upstream, listen) = (canonical(upstream), canonical(listen));
    if upstream == listen || upstream.is_unspecified() {
        return true;
    }
    // Binding succeeds only to an address of this host.
    listen.is_unspecified()
        && (upstream.is_loopback() || std::net::UdpSocket::bind((upstream, 0)).is_ok())
}

fn parse_allow(settings: &Settings) -> Result<Vec<Cidr>, Error> {
    match settings.value(cli_keys::RELAY_ALLOW) {
        None => Ok(mailgate_relay::default_allow()),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Cidr>().map_err(|e| {
                    config(
                        settings,
                        cli_keys::RELAY_ALLOW,
                        &format!(
                            "comma-separated addresses or CIDRs, e.g. 127.0.0.1, 10.0.0.0/8 ({e})"
                        ),
                    )
                })
            })
            .collect(),
    }
}

fn number(
    settings: &Settings,
    key: &str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, Error> {
    match settings.value(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                config(
                    settings,
                    key,
                    &format!("a whole number from {min} to {max}"),
                )
            }),
    }
}

fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "localhost".into())
}

/// The relay's STARTTLS certificate and key, read and checked.
fn server_tls(
    cert: &Path,
    key: &Path,
    settings: &Settings,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    // Read bounded and without blocking on special files, then parsed.
    let read = |path: &Path, key: &str| {
        mailgate::properties::fs::read_regular(path, mailgate::properties::MAX_FILE_BYTES).map_err(
            |e| {
                config(
                    settings,
                    key,
                    &format!("a readable PEM file ({}: {e})", path.display()),
                )
            },
        )
    };
    let cert_pem = read(cert, cli_keys::RELAY_TLS_CERT)?;
    let key_pem = zeroize::Zeroizing::new(read(key, cli_keys::RELAY_TLS_KEY)?);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            config(
                settings,
                cli_keys::RELAY_TLS_CERT,
                &format!("a PEM certificate chain ({}: {e})", cert.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(config(
            settings,
            cli_keys::RELAY_TLS_CERT,
            &format!("a PEM certificate chain ({} holds none)", cert.display()),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        config(
            settings,
            cli_keys::RELAY_TLS_KEY,
            &format!("a PEM private key ({}: {e})", key.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|e| {
            config(
                settings,
                cli_keys::RELAY_TLS_KEY,
                &format!("a key that matches the certificate ({e})"),
            )
        })?;
    Ok(Arc::new(config))
}

/// Stores what the listener accepted in the current mailer's outbox.
struct OutboxSink {
    current: RwLock<(Mailer, Option<Mailbox>)>,
    accepted: std::sync::atomic::AtomicU64,
}

/// What the client asked of DSNs (RFC 3461), if it asked anything.
fn dsn_request(submission: &Submission) -> Option<mailgate::outbox::DsnRequest> {
    use mailgate::outbox::{DsnRequest, Notify, RecipientRequest};
    let dsn = &submission.dsn;
    let asked = dsn.ret_full.is_some()
        || dsn.envid.is_some()
        || dsn
            .recipients
            .iter()
            .any(|r| r.notify.is_some() || r.orcpt.is_some());
    asked.then(|| DsnRequest {
        ret_full: dsn.ret_full == Some(true),
        envid: dsn.envid.clone(),
        recipients: submission
            .to
            .iter()
            .zip(&dsn.recipients)
            .map(|(address, r)| RecipientRequest {
                address: address.clone(),
                notify: r.notify.as_ref().map(|words| Notify {
                    success: words.iter().any(|w| w == "SUCCESS"),
                    failure: words.iter().any(|w| w == "FAILURE"),
                    delay: words.iter().any(|w| w == "DELAY"),
                }),
                orcpt: r.orcpt.clone(),
            })
            .collect(),
    })
}

impl OutboxSink {
    /// A non-ASCII local part can never be delivered to an upstream without
    /// SMTPUTF8 (RFC 6531): refused at MAIL or RCPT when the upstream is
    /// known not to offer it, so that no yes is given for it. Unknown (no
    /// connection yet) is checked again before the message is stored.
    fn refuse_utf8_local_part(&self, address: &mailgate::lettre::Address) -> Result<(), String> {
        if address.user().is_ascii() {
            return Ok(());
        }
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        if current.0.upstream_offers_smtputf8() == Some(false) {
            return Err(format!(
                "`{address}` has a non-ASCII local part, and the upstream {} does not offer SMTPUTF8",
                current.0.mail_hostname_and_port()
            ));
        }
        Ok(())
    }

    /// Where `<postmaster>` goes: the configured sender's domain, else this host.
    fn postmaster_domain(&self) -> String {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current
            .0
            .settings()
            .sender()
            .map(|m| m.email.domain().to_owned())
            .unwrap_or_else(hostname)
    }
}

#[async_trait::async_trait]
impl MessageSink for OutboxSink {
    fn check_sender(&self, address: &str) -> Result<String, String> {
        let rewritten = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .is_some();
        if rewritten {
            // Replaced by the configured sender before it is stored.
            return Ok(address.to_owned());
        }
        let address = envelope_address("from", address).map_err(|e| e.to_string())?;
        self.refuse_utf8_local_part(&address)?;
        Ok(address.to_string())
    }

    fn check_recipient(&self, address: &str) -> Result<String, String> {
        if address.eq_ignore_ascii_case("postmaster") {
            // RFC 5321 §4.5.1: qualified with this relay's domain.
            let domain = self.postmaster_domain();
            return Ok(format!("postmaster@{domain}"));
        }
        let address = envelope_address("to", address).map_err(|e| e.to_string())?;
        self.refuse_utf8_local_part(&address)?;
        Ok(address.to_string())
    }

    async fn accept(&self, submission: Submission, data: Vec<u8>) -> Result<String, Rejection> {
        let (mailer, rewrite) = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let refused = |client_text: &str, reason: String| Rejection::Permanent {
            client_text: client_text.to_owned(),
            reason,
        };
        // Checked at MAIL and RCPT already (`check_sender`,
        // `check_recipient`), with the same grammar.
        let from = match &rewrite {
            Some(sender) => Some(sender.email.clone()),
            None if submission.from.is_empty() => None,
            None => Some(
                envelope_address("from", &submission.from)
                    .map_err(|e| refused("sender address not accepted upstream", e.to_string()))?,
            ),
        };
        let to = submission
            .to
            .iter()
            .map(|t| envelope_address("to", t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refused("recipient address not accepted upstream", e.to_string()))?;
        let envelope = Envelope::new(from, to)
            .map_err(|e| refused("envelope not accepted upstream", e.to_string()))?;
        // The buffer the listener received into goes on to the store: no
        // copy of the message on the way.
        let data = match &rewrite {
            Some(sender) => mailgate::message::raw::rewrite_from_owned(data, sender),
            None => data,
        };
        let size = data.len();
        let stored = mailer
            .enqueue_raw_owned(&envelope, data, dsn_request(&submission))
            .await;
        match stored {
            Ok(id) => {
                self.accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    id,
                    from = %submission.from,
                    recipients = submission.to.len(),
                    size,
                    client = %submission.client,
                    tls = submission.tls,
                    auth_user = submission.auth_user.as_deref().unwrap_or("-"),
                    "relay: stored"
                );
                Ok(id.to_string())
            }
            // The outbox could not store it: the sender keeps its copy and retries.
            Err(e @ Error::Outbox { .. }) => Err(Rejection::Temporary(e.to_string())),
            Err(e) if e.is_transient() => Err(Rejection::Temporary(e.to_string())),
            // A message the upstream can never take as it is (a sender other
            // than the authenticated user, a line too long, ...).
            Err(e) => Err(Rejection::Permanent {
                client_text: match &e {
                    Error::InvalidMessage { field, .. } if field == "from" => {
                        "sender not allowed upstream: send as the relay's user, or set mailgate.relay.rewriteFrom=true".to_owned()
                    }
                    Error::InvalidMessage { field, .. } if field == "address" || field == "header" => {
                        "a non-ASCII address, and the upstream does not offer SMTPUTF8".to_owned()
                    }
                    _ => "message refused: it cannot be relayed as it is (see the relay's log)".to_owned(),
                },
                reason: e.to_string(),
            }),
        }
    }
}

/// Learns in the background what the upstream takes (one EHLO), so that
/// RCPT can refuse what it never will (see `refuse_utf8_local_part`).
fn learn_upstream(mailer: &Mailer) {
    let mailer = mailer.clone();
    tokio::spawn(async move {
        mailer.learn_upstream_smtputf8().await;
    });
}

/// What the status file says, for `check`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Status {
    pub(crate) pid: u32,
    pub(crate) listen: String,
    pub(crate) started: u64,
    /// When the settings in use were loaded (seconds since the epoch).
    pub(crate) loaded: u64,
    /// The last reload that failed, if the last one did: when, and why.
    pub(crate) reload_error: Option<(u64, String)>,
    /// The files whose change triggers a reload.
    pub(crate) watched: Vec<PathBuf>,
    pub(crate) running: bool,
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where the status file is: next to the outbox file, else in the config folder.
pub(crate) fn status_path(mailer: &Mailer) -> PathBuf {
    let folder = mailer
        .outbox()
        .ok()
        .and_then(|store| store.local_file())
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    folder
        .unwrap_or_else(|| mailer.settings().base_dir())
        .join(STATUS_FILE)
}

fn write_status(path: &Path, status: &Status) {
    let tmp = path.with_extension("status.tmp");
    let text = serde_json::to_string_pretty(status).unwrap_or_default();
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
        tracing::warn!("relay: cannot write {}: {e}", path.display());
    }
}

/// The status file's bytes: a small regular file, else nothing.
fn read_status(path: &Path) -> Option<Vec<u8>> {
    mailgate::properties::fs::read_regular(path, 64 * 1024).ok()
}

/// What `check` shows of a relay using this folder.
pub(crate) fn status_line(mailer: &Mailer) -> Option<String> {
    let path = status_path(mailer);
    let status: Status = serde_json::from_slice(&read_status(&path)?).ok()?;
    let alive = status.running && unsafe { libc::kill(status.pid as i32, 0) } == 0;
    if !alive {
        return Some(format!(
            "not running (last ran as pid {} on {})",
            status.pid, status.listen
        ));
    }
    let changed = status.watched.iter().any(|f| {
        std::fs::metadata(f)
            .and_then(|m| m.modified())
            .map(|t| epoch(t) > status.loaded)
            .unwrap_or(false)
    });
    let mut line = format!("running (pid {}) on {}", status.pid, status.listen);
    match &status.reload_error {
        Some((_, error)) => line.push_str(&format!(
            "; the last reload FAILED, old settings still in use: {error}"
        )),
        None if changed => {
            line.push_str("; a config file changed since the settings were loaded: reload pending")
        }
        None => line.push_str("; settings current"),
    }
    Some(line)
}

/// A relay whose outbox cannot be read and written would answer 451 to
/// everything: better to refuse to start (exit 74) and say why. A delete
/// that matches nothing needs a write transaction, so a read-only file
/// fails here; a file that is not a database fails the read.
async fn probe_outbox(mailer: &Mailer) -> Result<(), Error> {
    let store = mailer.outbox()?;
    store.stats().await?;
    store.purge_sent(SystemTime::UNIX_EPOCH).await?;
    Ok(())
}

/// `mailgate relay`.
pub(crate) async fn run(build: Build) -> Result<(), Failure> {
    let loaded = load(&build)?;
    probe_outbox(&loaded.mailer).await?;
    let server = RelayServer::bind(loaded.listen, loaded.relay)
        .await
        .map_err(|e| {
            Error::Config(ConfigError::Invalid {
                key: cli_keys::RELAY_LISTEN.to_owned(),
                origin: loaded
                    .mailer
                    .settings()
                    .entry(cli_keys::RELAY_LISTEN)
                    .map(|e| e.origin.clone())
                    .unwrap_or(mailgate::Origin::Builder),
                value: Some(loaded.listen.to_string()),
                expected: format!("an address this host can listen on ({e})"),
            })
        })?;
    let listen = server.local_addr();
    let status_file = status_path(&loaded.mailer);
    let final_status = status_file.clone();
    let watched = watched_files(loaded.mailer.settings());
    let started = epoch(SystemTime::now());
    let mut status = Status {
        pid: std::process::id(),
        listen: listen.to_string(),
        started,
        loaded: started,
        reload_error: None,
        watched: watched.clone(),
        running: true,
    };
    write_status(&status_file, &status);

    let sink = Arc::new(OutboxSink {
        current: RwLock::new((loaded.mailer.clone(), loaded.rewrite_from.clone())),
        accepted: Default::default(),
    });
    learn_upstream(&loaded.mailer);
    let (mailer_tx, mailer_rx) = watch::channel(loaded.mailer.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let totals = Arc::new(Totals::default());
    let workers = tokio::spawn(work(mailer_rx, stop_rx, Arc::clone(&totals)));
    let metrics = loaded.metrics.map(|addr| {
        tokio::spawn(metrics::serve(
            addr,
            Arc::new(metrics::Sources {
                sink: Arc::clone(&sink),
                mailer: mailer_tx.subscribe(),
                totals: Arc::clone(&totals),
            }),
        ))
    });

    // Signal handlers first: a SIGTERM or SIGHUP sent the moment the line
    // below appears must not meet the default action (the end of the process).
    use tokio::signal::unix::{SignalKind, signal};
    let hup = signal(SignalKind::hangup());
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    let shutdown = async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            // Without handlers the default action (exit) applies.
            _ => std::future::pending().await,
        }
    };

    // The line scripts and service managers wait for.
    eprintln!(
        "mailgate relay: listening on {listen}; outbox {}",
        loaded.mailer.outbox()?.describe()
    );

    // Reloads: SIGHUP and changes to the watched files.
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let _watcher = watch_files(&watched, reload_tx.clone());
    let reloader = {
        let sink = Arc::clone(&sink);
        let server_config = server.handle();
        async move {
            let Ok(mut hup) = hup else {
                return;
            };
            loop {
                let why = tokio::select! {
                    _ = hup.recv() => "SIGHUP",
                    Some(why) = reload_rx.recv() => why,
                };
                // Let an editor finish writing (several events per save).
                tokio::time::sleep(Duration::from_millis(300)).await;
                while reload_rx.try_recv().is_ok() {}
                match load(&build) {
                    Ok(new) => {
                        if new.listen != listen && new.listen.port() != 0 {
                            tracing::warn!(
                                "relay: `{}` changed to {}; the listener stays on {listen} until a restart",
                                cli_keys::RELAY_LISTEN,
                                new.listen
                            );
                        }
                        if let Err(e) = server_config.set_config(new.relay) {
                            // Validated at load; should it still happen,
                            // nothing of the new settings is used.
                            status.reload_error = Some((epoch(SystemTime::now()), e.to_string()));
                            tracing::error!(
                                "relay: reload ({why}) failed, the old settings stay in use: {e}"
                            );
                        } else {
                            *sink.current.write().unwrap_or_else(|p| p.into_inner()) =
                                (new.mailer.clone(), new.rewrite_from.clone());
                            learn_upstream(&new.mailer);
                            let _ = mailer_tx.send(new.mailer);
                            status.loaded = epoch(SystemTime::now());
                            status.reload_error = None;
                            tracing::info!("relay: settings reloaded ({why})");
                        }
                    }
                    Err(e) => {
                        status.reload_error = Some((epoch(SystemTime::now()), e.to_string()));
                        tracing::error!(
                            "relay: reload ({why}) failed, the old settings stay in use: {e}"
                        );
                    }
                }
                write_status(&status_file, &status);
            }
        }
    };

    let result = tokio::select! {
        result = server.run(sink.clone() as Arc<dyn MessageSink>, shutdown) => result,
        () = reloader => Ok(()),
    };
    // The listener has stopped and its transactions are done; the worker
    // finishes the deliveries in hand.
    drop(reload_tx);
    let _ = stop_tx.send(true);
    let _ = workers.await;
    if let Some(m) = metrics {
        m.abort();
    }
    if let Some(text) = read_status(&final_status)
        && let Ok(mut last) = serde_json::from_slice::<Status>(&text)
    {
        last.running = false;
        write_status(&final_status, &last);
    }
    eprintln!("mailgate relay: stopped");
    result.map_err(|e| Error::Usage(format!("the relay listener failed: {e}")).into())
}

/// The files whose change reloads the relay.
fn watched_files(settings: &Settings) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = settings.files_read().to_vec();
    files.push(settings.key_file());
    for key in [
        cli_keys::RELAY_USERS_FILE,
        cli_keys::RELAY_TLS_CERT,
        cli_keys::RELAY_TLS_KEY,
    ] {
        if let Some(v) = settings.value(key) {
            files.push(settings.base_dir().join(v));
        }
    }
    files
}

/// Watches the folders of `files` (editors replace files by renaming) and
/// reports a change to one of them.
fn watch_files(
    files: &[PathBuf],
    tx: tokio::sync::mpsc::UnboundedSender<&'static str>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher as _};
    let names: Vec<PathBuf> = files.to_vec();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Not a read (an open, a close without writing): every command on
        // the folder reads it, and so does the reload itself, which would
        // then reload again, and again.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event
                .paths
                .iter()
                .any(|p| names.iter().any(|n| same_file(p, n)))
        {
            let _ = tx.send("a config file changed");
        }
    })
    .map_err(|e| tracing::warn!("relay: cannot watch the config files ({e}); reload with SIGHUP"))
    .ok()?;
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(
                "relay: cannot watch {} ({e}); reload with SIGHUP",
                dir.display()
            );
        }
    }
    Some(watcher)
}

fn same_file(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    a.file_name() == b.file_name()
        && canon(a.parent().unwrap_or(a)) == canon(b.parent().unwrap_or(b))
}

/// The delivery side: a worker per mailer; on a reload the old one finishes
/// the messages in hand (its token cache goes with it) and a new one starts.
/// `stop` ends it the same way.
async fn work(
    mut mailers: watch::Receiver<Mailer>,
    mut stop: watch::Receiver<bool>,
    totals: Arc<Totals>,
) {
    loop {
        let mailer = mailers.borrow_and_update().clone();
        let worker = match Worker::new(&mailer) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("relay: no delivery: {e}");
                return;
            }
        };
        totals.start(&worker);
        let mut next = mailers.clone();
        let mut stopping = stop.clone();
        let until = async move {
            let changed = tokio::select! {
                changed = next.changed() => changed.is_ok(),
                _ = stopping.wait_for(|s| *s) => return,
            };
            if !changed {
                // The sender is gone only when the relay stops.
                let _ = stopping.wait_for(|s| *s).await;
            }
        };
        if let Err(e) = worker.run(until).await {
            tracing::error!("relay: delivery stopped: {e}");
        }
        totals.retire(&worker);
        mailer.close().await;
        if *stop.borrow_and_update() {
            return;
        }
    }
}

/// The counters of the workers that were replaced, and the current one,
/// under one lock: a worker retiring between two reads would otherwise be
/// counted in neither, and the `_total` counters would go back.
#[derive(Default)]
struct Totals(std::sync::Mutex<(mailgate::outbox::WorkerStats, Option<Worker>)>);

impl Totals {
    fn start(&self, worker: &Worker) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(worker.clone());
    }

    fn retire(&self, worker: &Worker) {
        let mut totals = self.0.lock().unwrap_or_else(|p| p.into_inner());
        totals.0 += &worker.stats();
        totals.1 = None;
    }

    fn now(&self) -> mailgate::outbox::WorkerStats {
        let totals = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut sum = totals.0.clone();
        if let Some(current) = &totals.1 {
            sum += &current.stats();
        }
        sum
    }
}

mod metrics {
    //! A Prometheus text endpoint, `GET /metrics`, on the address of
    //! `mailgate.relay.metrics` (loopback, unless the operator says otherwise).

    use std::convert::Infallible;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Request, Response, StatusCode};

    use super::*;

    /// What the page shows.
    pub(super) struct Sources {
        pub(super) sink: Arc<OutboxSink>,
        pub(super) mailer: watch::Receiver<Mailer>,
        pub(super) totals: Arc<Totals>,
    }

    pub(super) async fn serve(addr: SocketAddr, sources: Arc<Sources>) {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("relay: metrics endpoint {addr}: {e}");
                return;
            }
        };
        tracing::info!("relay: metrics on http://{addr}/metrics");
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!("relay: metrics: cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let sources = Arc::clone(&sources);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let sources = Arc::clone(&sources);
                        async move { Ok::<_, Infallible>(respond(&req, &sources).await) }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(io, service);
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            });
        }
    }

    async fn respond(
        req: &Request<hyper::body::Incoming>,
        sources: &Sources,
    ) -> Response<Full<Bytes>> {
        if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found: GET /metrics\n")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
        let text = render(sources).await;
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        r
    }

    pub(super) async fn render(sources: &Sources) -> String {
        let mailer = sources.mailer.borrow().clone();
        let work = sources.totals.now();
        let accepted = sources
            .sink
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        metric(
            "mailgate_relay_accepted_total",
            "counter",
            "Messages accepted from clients (stored in the outbox).",
            accepted.to_string(),
        );
        metric(
            "mailgate_relay_delivered_total",
            "counter",
            "Messages the upstream server accepted.",
            work.delivered.to_string(),
        );
        metric(
            "mailgate_relay_deferred_total",
            "counter",
            "Delivery attempts that failed for now (retried later).",
            work.deferred.to_string(),
        );
        metric(
            "mailgate_relay_dead_total",
            "counter",
            "Messages that became dead.",
            work.dead.to_string(),
        );
        metric(
            "mailgate_relay_recipients_delivered_total",
            "counter",
            "Recipients the upstream server accepted a message for.",
            work.recipients.delivered.to_string(),
        );
        metric(
            "mailgate_relay_recipients_deferred_total",
            "counter",
            "Recipient attempts that failed for now (retried later).",
            work.recipients.deferred.to_string(),
        );
        metric(
            "mailgate_relay_recipients_dead_total",
            "counter",
            "Recipients that will never get their message (their sender is told).",
            work.recipients.dead.to_string(),
        );
        let stats = match mailer.outbox() {
            Ok(store) => store.stats().await.ok(),
            Err(_) => None,
        };
        if let Some(stats) = stats {
            metric(
                "mailgate_relay_queue_depth",
                "gauge",
                "Messages queued or being sent.",
                (stats.queued + stats.sending).to_string(),
            );
            metric(
                "mailgate_relay_dead_messages",
                "gauge",
                "Dead messages kept in the outbox.",
                stats.dead.to_string(),
            );
        }
        if let Some(fetches) = mailer.token_fetches() {
            metric(
                "mailgate_relay_token_fetches_total",
                "counter",
                "OAuth token requests of the current settings.",
                fetches.to_string(),
            );
        }
        metric(
            "mailgate_relay_upstream_seconds_sum",
            "counter",
            "Time spent delivering upstream.",
            format!("{:.6}", work.attempt_micros as f64 / 1e6),
        );
        metric(
            "mailgate_relay_upstream_seconds_count",
            "counter",
            "Upstream delivery attempts.",
            work.attempts.to_string(),
        );
        out
    }
}

/// `mailgate relay-user add NAME`: the password comes on stdin (first line),
/// or from a prompt without echo on a terminal; the users file is
/// `mailgate.relay.usersFile`.
pub(crate) fn add_user(settings: &Settings, name: &str) -> Result<String, Error> {
    let Some(file) = settings.value(cli_keys::RELAY_USERS_FILE) else {
        return Err(settings
            .invalid(
                cli_keys::RELAY_USERS_FILE,
                "the users file to add to (e.g. relay-users, relative to the config folder)",
            )
            .into());
    };
    let path = settings.base_dir().join(file);
    let password = read_password(name)?;
    if password.is_empty() {
        return Err(Error::Usage("relay-user: the password is empty".into()));
    }
    let change = mailgate_relay::add_user(&path, name, &password)
        .map_err(|e| Error::Usage(format!("relay-user: {e}")))?;
    Ok(format!(
        "{} user `{name}` in {}",
        match change {
            mailgate_relay::UserChange::Added => "added",
            mailgate_relay::UserChange::Replaced => "replaced",
        },
        path.display()
    ))
}

fn read_password(name: &str) -> Result<zeroize::Zeroizing<String>, Error> {
    use std::io::{IsTerminal as _, Write as _};
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let echo_off = terminal.then(|| {
        eprint!("password for `{name}`: ");
        let _ = std::io::stderr().flush();
        EchoOff::new()
    });
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = stdin.lock().take_line(&mut line);
    drop(echo_off);
    if terminal {
        eprintln!();
    }
    read.map_err(|e| Error::Usage(format!("relay-user: cannot read the password: {e}")))?;
    let trimmed = line.trim_end_matches(['\r', '\n']).to_owned();
    Ok(zeroize::Zeroizing::new(trimmed))
}

/// Reads one line, at most 4 KiB (a password is not a file).
trait TakeLine {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize>;
}

impl<R: std::io::BufRead> TakeLine for R {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize> {
        use std::io::{BufRead as _, Read as _};
        std::io::BufReader::new(self.by_ref().take(4096)).read_line(out)
    }
}

/// Terminal echo switched off while it lives.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a valid termios buffer.
        unsafe {
            let mut term: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut term) != 0 {
                return EchoOff(None);
            }
            let saved = term;
            term.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &term) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_reaches_the_listener_on_its_address_or_on_all() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(reaches(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(reaches(ip("::ffff:127.0.0.1"), ip("127.0.0.1")));
        assert!(reaches(ip("127.0.0.1"), ip("0.0.0.0")));
        assert!(reaches(ip("::1"), ip("::")));
        assert!(reaches(ip("0.0.0.0"), ip("127.0.0.1")));
        assert!(!reaches(ip("127.0.0.2"), ip("127.0.0.1")));
        assert!(!reaches(ip("192.0.2.7"), ip("0.0.0.0")));
    }
}
