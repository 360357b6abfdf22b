//! The relay's settings.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use crate::cidr::Cidr;
use crate::users::Users;

/// Settings of the SMTP listener. [`RelayConfig::default`] is a loopback-
/// only relay without TLS or AUTH; [`RelayConfig::validate`] checks a
/// config before [`RelayServer::bind`](crate::RelayServer::bind) or
/// [`RelayHandle::set_config`](crate::RelayHandle::set_config) takes it.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The name in the greeting and the EHLO reply.
    pub hostname: String,
    /// Clients allowed to connect and submit (default: `127.0.0.0/8` and
    /// `::1`). Others get `554 5.7.1` at connect and nothing else.
    pub allow: Vec<Cidr>,
    /// The largest message accepted, in bytes (after dot-unstuffing);
    /// advertised as `SIZE`. A larger `MAIL FROM ... SIZE=` is refused at
    /// MAIL, larger data is read to its end and refused (`552 5.3.4`),
    /// never stored.
    pub max_message_bytes: usize,
    /// The longest command line (and SASL response line), CRLF included;
    /// longer ones are refused with `500 5.5.2`. At least 512 (RFC 5321).
    pub max_line: usize,
    /// The longest line of message data after dot-unstuffing, CRLF
    /// included (1000 per RFC 5321: 998 characters and CRLF). A message
    /// with a longer line is refused with `550 5.6.0` at its end, never
    /// stored.
    pub max_data_line: usize,
    /// Recipients per message; an extra `RCPT` gets `452 4.5.3`.
    pub max_recipients: usize,
    /// Commands per session since its last accepted message (any line
    /// read as a command, AUTH responses excluded); the one beyond gets
    /// `421 4.7.0` and the connection is closed. Each accepted message
    /// starts the count afresh: a client sending many messages over one
    /// connection is not idling.
    pub max_commands: usize,
    /// Error replies (5xx) per session; at this many the session gets
    /// `421 4.7.0` and is closed.
    pub max_errors: usize,
    /// Sessions served at once. Connections beyond get `421 4.7.0` at once
    /// and are closed, by a single task: there are never more session
    /// tasks than this.
    pub max_connections: usize,
    /// The time a client has to send a whole command line (or SASL
    /// response), and the longest wait for each chunk of message data, or
    /// for the client to take a reply: longer gets `421 4.4.2` and close.
    /// Bytes trickling in do not extend the deadline of a command line.
    pub idle_timeout: Duration,
    /// The slowest average rate, in bytes per second, at which message
    /// data may arrive beyond the first `idle_timeout` of the DATA phase;
    /// 0 (the default) sets none, leaving `idle_timeout` per chunk and
    /// `data_timeout` for the whole. With a minimum, a client trickling
    /// data (a byte now and then, each within the idle timeout) is dropped
    /// (`421 4.4.2`) after about `idle_timeout` instead of holding its
    /// session for `data_timeout`. Postfix's `smtpd_min_data_rate` (500)
    /// is the model.
    pub min_data_rate: u64,
    /// The time for the whole DATA phase (from the 354 to the final dot),
    /// also the bound on the sink storing one message, and how long a
    /// transaction may go on after shutdown began.
    pub data_timeout: Duration,
    /// TLS for STARTTLS; STARTTLS is offered when set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// When TLS is configured, AUTH is offered and accepted only after
    /// STARTTLS (default true). Without TLS configured, AUTH works over
    /// the plain connection (see [`RelayConfig::warnings`]).
    pub require_tls_for_auth: bool,
    /// Local users for AUTH PLAIN and LOGIN. When set, MAIL requires a
    /// successful AUTH (`530 5.7.0` otherwise).
    pub users: Option<Users>,
    /// Failed AUTH attempts per session; the one that reaches it gets
    /// `421 4.7.0` and the connection is closed.
    pub max_auth_failures: usize,
    /// The delay before a `535` answer to wrong credentials.
    pub auth_failure_delay: Duration,
    /// The most `Received:` fields a message may already carry (default
    /// 50, as Postfix's `hop_count_limit`): one with more is on a loop and
    /// is refused at the end of DATA with `554 5.4.6`, never stored.
    pub max_hops: usize,
    /// The most bytes of message data all sessions together hold at once
    /// (default 256 MiB), so that many big messages at the same time
    /// cannot exhaust the machine's memory. A session reserves its share
    /// before it answers `354` (the declared `SIZE=`, else a little, and
    /// more as the data grows) and keeps it until the message is stored
    /// or refused. When the budget has no room within
    /// [`data_memory_wait`](Self::data_memory_wait), `DATA` is answered
    /// `452 4.3.1` (or, when the data outgrows its share, the end of the
    /// data is): the client keeps its message and retries later. At least
    /// [`max_message_bytes`](Self::max_message_bytes).
    pub max_data_memory: usize,
    /// How long a session waits for room in
    /// [`max_data_memory`](Self::max_data_memory) before it answers `452`
    /// (default 2 s).
    pub data_memory_wait: Duration,
    /// This process's instance id, shown in the EHLO (and HELO) reply's
    /// first line as `NAME mailgate ready [ID]`, so that a mailgate client
    /// in the same process finds it is talking to itself and refuses to
    /// loop (`mailgate::smtp::instance_id`). Printable ASCII, no spaces or
    /// brackets; `None` shows no id.
    pub instance_id: Option<String>,
}

/// A setting out of its range; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("relay setting {field}: {reason}")]
pub struct ConfigError {
    /// The field of [`RelayConfig`].
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            hostname: "localhost".to_owned(),
            allow: default_allow(),
            max_message_bytes: 10 * 1024 * 1024,
            max_line: 2048,
            max_data_line: 1000,
            max_recipients: 100,
            max_commands: 1000,
            max_errors: 10,
            max_connections: 64,
            idle_timeout: Duration::from_secs(300),
            min_data_rate: 0,
            data_timeout: Duration::from_secs(600),
            tls: None,
            require_tls_for_auth: true,
            users: None,
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_secs(1),
            max_hops: 50,
            max_data_memory: 256 * 1024 * 1024,
            data_memory_wait: Duration::from_secs(2),
            instance_id: None,
        }
    }
}

/// `127.0.0.0/8` and `::1/128`.
pub fn default_allow() -> Vec<Cidr> {
    vec![
        Cidr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8)
            .unwrap_or(Cidr::host(IpAddr::V4(Ipv4Addr::LOCALHOST))),
        Cidr::host(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

impl RelayConfig {
    /// Checks every setting; the first one out of range is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.hostname.is_empty()
            || self.hostname.len() > 255
            || !self.hostname.bytes().all(|b| b.is_ascii_graphic())
        {
            return err(
                "hostname",
                "must be 1 to 255 printable ASCII characters without spaces",
            );
        }
        if self.allow.is_empty() {
            return err(
                "allow",
                "is empty: no client could submit (the default is 127.0.0.0/8 and ::1)",
            );
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > isize::MAX as usize / 2 {
            return err("max_message_bytes", "must be at least 1");
        }
        if self.max_data_memory < self.max_message_bytes {
            return err(
                "max_data_memory",
                "must be at least max_message_bytes: a message that big could never be held",
            );
        }
        if self.data_memory_wait > Duration::from_secs(60) {
            return err("data_memory_wait", "must be at most 60 seconds");
        }
        if !(512..=65536).contains(&self.max_line) {
            return err(
                "max_line",
                "must be from 512 to 65536 (RFC 5321: at least 512)",
            );
        }
        if !(1000..=1024 * 1024).contains(&self.max_data_line) {
            return err(
                "max_data_line",
                "must be from 1000 to 1048576 (RFC 5321: at least 1000)",
            );
        }
        for (field, value) in [
            ("max_recipients", self.max_recipients),
            ("max_commands", self.max_commands),
            ("max_errors", self.max_errors),
            ("max_connections", self.max_connections),
            ("max_auth_failures", self.max_auth_failures),
            ("max_hops", self.max_hops),
        ] {
            if value == 0 {
                return err(field, "must be at least 1");
            }
        }
        if let Some(id) = &self.instance_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'[' && b != b']'))
        {
            return err(
                "instance_id",
                "must be 1 to 64 printable ASCII characters without spaces or brackets",
            );
        }
        let day = Duration::from_secs(24 * 3600);
        if self.idle_timeout.is_zero() || self.idle_timeout > day {
            return err("idle_timeout", "must be more than zero and at most a day");
        }
        if self.data_timeout.is_zero() || self.data_timeout > day {
            return err("data_timeout", "must be more than zero and at most a day");
        }
        if self.auth_failure_delay > Duration::from_secs(60) {
            return err("auth_failure_delay", "must be at most 60 seconds");
        }
        Ok(())
    }

    /// Settings that are valid but likely unintended, as sentences:
    /// passwords over plaintext from beyond loopback, an allow list that
    /// lets anybody in without AUTH.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let beyond_loopback = self.allow.iter().any(|c| !is_loopback_net(c));
        if self.users.is_some()
            && beyond_loopback
            && (self.tls.is_none() || !self.require_tls_for_auth)
        {
            warnings.push(
                "AUTH is accepted without TLS from clients beyond loopback: their passwords cross the network in plaintext"
                    .to_owned(),
            );
        }
        if self.users.is_none() && self.allow.iter().any(|c| c.prefix() == 0) {
            warnings.push(format!(
                "the allow list holds {} and no users are set: anybody who can reach the port can submit mail",
                self.allow
                    .iter()
                    .filter(|c| c.prefix() == 0)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(users) = &self.users
            && users.is_empty()
        {
            warnings.push(
                "the users file lists nobody: no client can authenticate, so none can submit"
                    .to_owned(),
            );
        }
        warnings
    }

    /// Whether a client at `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }
}

fn is_loopback_net(c: &Cidr) -> bool {
    match c.addr() {
        IpAddr::V4(a) => a.is_loopback() && c.prefix() >= 8,
        IpAddr::V6(a) => a.is_loopback(),
    }
}
