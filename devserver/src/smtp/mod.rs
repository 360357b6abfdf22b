//! The development SMTP server.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::shared::{FaultSlot, lock};
use crate::tls::DevCa;
use crate::token::TokenRegistry;

mod auth;
mod message;
pub(crate) mod sasl;
mod session;

pub use message::{AuthAttempt, AuthInfo, ReceivedCommand, ReceivedMessage};

/// How the server uses TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS at all.
    #[default]
    None,
    /// STARTTLS is offered. With `required`, AUTH is advertised only after
    /// STARTTLS, and AUTH and MAIL before it get `530 5.7.0`.
    StartTls {
        /// Refuse AUTH and MAIL before STARTTLS.
        required: bool,
    },
    /// TLS from the first byte (SMTPS, port 465 style).
    Implicit,
}

/// A SASL mechanism the server can offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    /// RFC 4616 PLAIN.
    Plain,
    /// LOGIN (username and password prompts).
    Login,
    /// Google/Microsoft XOAUTH2.
    XOAuth2,
    /// RFC 7628 OAUTHBEARER.
    OAuthBearer,
}

impl Mechanism {
    /// Every mechanism, in the order they are advertised.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::XOAuth2,
        Mechanism::OAuthBearer,
    ];

    /// The name used in EHLO and AUTH.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Parses a mechanism name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The points of an SMTP session where a [`Fault`] can strike. A fault acts
/// where the server would send its reply to that stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The 220 greeting.
    Greeting,
    /// The reply to EHLO or HELO.
    Ehlo,
    /// The 220 reply to STARTTLS.
    StartTls,
    /// The final reply of an AUTH exchange (after the credentials arrived).
    Auth,
    /// The reply to MAIL FROM.
    Mail,
    /// The reply to each RCPT TO.
    Rcpt,
    /// The 354 reply to DATA.
    Data,
    /// The reply after the final `.` of the message data. A
    /// [`FaultAction::Reply`] there refuses the message (it is not
    /// recorded); with any other fault it is recorded as usual.
    DataEnd,
    /// The reply to RSET.
    Rset,
    /// The reply to QUIT.
    Quit,
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Send this reply instead of the normal one. The text may hold several
    /// lines (`\n`). A 421 reply also closes the connection. At
    /// [`Stage::DataEnd`] the message is not recorded.
    Reply {
        /// Where.
        stage: Stage,
        /// Reply code.
        code: u16,
        /// Reply text, e.g. `4.3.2 Try again later`.
        text: String,
    },
    /// Wait before sending the reply.
    Delay {
        /// Where.
        stage: Stage,
        /// How long.
        delay: Duration,
    },
    /// Close the connection instead of replying.
    Disconnect {
        /// Where.
        stage: Stage,
    },
    /// Close the connection once this many bytes of message data arrived
    /// (0: right after the 354 reply). No reply is sent.
    DisconnectDuringData {
        /// Bytes of data to read first.
        after_bytes: usize,
    },
    /// Refuse an AUTH attempt as if the credentials were wrong (with the
    /// mechanism's error challenge where it has one).
    RefuseAuth,
    /// Write exactly these bytes, in one write, instead of the normal reply,
    /// then go on as if the normal reply had been sent (at
    /// [`Stage::StartTls`]: the TLS handshake follows).
    Raw {
        /// Where.
        stage: Stage,
        /// What to write: any bytes, several reply lines or none.
        bytes: Vec<u8>,
    },
    /// Write these bytes right after the reply, in the same write (one TCP
    /// segment), then go on as normal: at [`Stage::StartTls`] the `220` and
    /// injected plaintext arrive together, and the server starts the TLS
    /// handshake without looking at them. Accompanies the normal reply or
    /// one a [`FaultAction::Reply`] or [`FaultAction::Raw`] puts in its
    /// place; does not fire when a flood or trickle replaces the reply.
    Append {
        /// Where.
        stage: Stage,
        /// What to write after the reply.
        bytes: Vec<u8>,
    },
    /// Instead of the normal reply, write `chunk` over and over until
    /// `total_bytes` were written (the last copy cut short if need be) or
    /// the client closed the connection, then close it.
    Flood {
        /// Where.
        stage: Stage,
        /// The bytes repeated, e.g. `b"A"` or `b"250-X\r\n"`.
        chunk: Vec<u8>,
        /// How many bytes to write in all.
        total_bytes: u64,
    },
    /// Instead of the normal reply, write `bytes` one byte at a time,
    /// `interval` apart, then go on as if the normal reply had been sent.
    Trickle {
        /// Where.
        stage: Stage,
        /// What to write.
        bytes: Vec<u8>,
        /// The pause between two bytes.
        interval: Duration,
    },
    /// Instead of the normal reply, write `bytes` one byte per `interval`,
    /// starting over at the end, until the client closes the connection or
    /// the server shuts down.
    TrickleForever {
        /// Where.
        stage: Stage,
        /// What to write, over and over.
        bytes: Vec<u8>,
        /// The pause between two bytes.
        interval: Duration,
    },
}

impl FaultAction {
    /// The stage the action strikes at ([`Stage::Data`] for
    /// [`FaultAction::DisconnectDuringData`], [`Stage::Auth`] for
    /// [`FaultAction::RefuseAuth`]).
    pub fn stage(&self) -> Stage {
        match self {
            FaultAction::Reply { stage, .. }
            | FaultAction::Delay { stage, .. }
            | FaultAction::Disconnect { stage }
            | FaultAction::Raw { stage, .. }
            | FaultAction::Append { stage, .. }
            | FaultAction::Flood { stage, .. }
            | FaultAction::Trickle { stage, .. }
            | FaultAction::TrickleForever { stage, .. } => *stage,
            FaultAction::DisconnectDuringData { .. } => Stage::Data,
            FaultAction::RefuseAuth => Stage::Auth,
        }
    }
}

/// A fault to inject, server-wide, optionally only the first `n` times it
/// matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    action: FaultAction,
    times: Option<u64>,
}

impl Fault {
    /// Reply with `code` and `text` at `stage` instead of the normal reply.
    pub fn reply(stage: Stage, code: u16, text: impl Into<String>) -> Self {
        Self::new(FaultAction::Reply {
            stage,
            code,
            text: text.into(),
        })
    }

    /// Wait `delay` before replying at `stage`.
    pub fn delay(stage: Stage, delay: Duration) -> Self {
        Self::new(FaultAction::Delay { stage, delay })
    }

    /// Close the connection instead of replying at `stage`.
    pub fn disconnect(stage: Stage) -> Self {
        Self::new(FaultAction::Disconnect { stage })
    }

    /// Close the connection in the middle of DATA, once `after_bytes` bytes
    /// of message data were read.
    pub fn disconnect_during_data(after_bytes: usize) -> Self {
        Self::new(FaultAction::DisconnectDuringData { after_bytes })
    }

    /// Refuse the first `n` AUTH attempts (server-wide).
    pub fn refuse_auth(n: u64) -> Self {
        Self::new(FaultAction::RefuseAuth).times(n)
    }

    /// Write exactly `bytes` (in one write) instead of the normal reply at
    /// `stage`, then go on as if the normal reply had been sent.
    pub fn raw(stage: Stage, bytes: impl Into<Vec<u8>>) -> Self {
        Self::new(FaultAction::Raw {
            stage,
            bytes: bytes.into(),
        })
    }

    /// Write `bytes` right after the reply at `stage`, in the same write;
    /// e.g. at [`Stage::StartTls`], `b"250-fake\r\n250 AUTH PLAIN\r\n"`
    /// for the STARTTLS response injection attack.
    pub fn append(stage: Stage, bytes: impl Into<Vec<u8>>) -> Self {
        Self::new(FaultAction::Append {
            stage,
            bytes: bytes.into(),
        })
    }

    /// Instead of the reply at `stage`, write `chunk` repeatedly until
    /// `total_bytes` were written or the client went away, then close: an
    /// endless line (`b"A"`), a reply of countless lines (`b"250-X\r\n"`).
    pub fn flood(stage: Stage, chunk: impl Into<Vec<u8>>, total_bytes: u64) -> Self {
        Self::new(FaultAction::Flood {
            stage,
            chunk: chunk.into(),
            total_bytes,
        })
    }

    /// Instead of the reply at `stage`, write `bytes` one byte at a time,
    /// `interval` apart, then go on as if the normal reply had been sent.
    pub fn trickle(stage: Stage, bytes: impl Into<Vec<u8>>, interval: Duration) -> Self {
        Self::new(FaultAction::Trickle {
            stage,
            bytes: bytes.into(),
            interval,
        })
    }

    /// Instead of the reply at `stage`, write `bytes` one byte per
    /// `interval`, over and over, until the client closes the connection or
    /// the server shuts down: a reply that never ends but never stalls.
    pub fn trickle_forever(stage: Stage, bytes: impl Into<Vec<u8>>, interval: Duration) -> Self {
        Self::new(FaultAction::TrickleForever {
            stage,
            bytes: bytes.into(),
            interval,
        })
    }

    /// Fire only the first `n` times this fault matches (server-wide).
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// What the fault does.
    pub fn action(&self) -> &FaultAction {
        &self.action
    }

    fn new(action: FaultAction) -> Self {
        Self {
            action,
            times: None,
        }
    }

    fn slot(self) -> FaultSlot<Self> {
        let times = self.times;
        FaultSlot::new(self, times)
    }
}

/// Decides whether `(user, token)` is accepted.
pub type TokenValidator = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Configures and starts a [`DevSmtpServer`].
#[must_use]
pub struct DevSmtpServerBuilder {
    hostname: String,
    tls: TlsMode,
    ca: Option<DevCa>,
    mechanisms: Option<BTreeSet<Mechanism>>,
    users: HashMap<String, String>,
    validators: Vec<TokenValidator>,
    token_users: Vec<String>,
    require_auth: Option<bool>,
    oauth_scope: String,
    faults: Vec<Fault>,
    reject_bare_lf: bool,
    reject_bare_cr: bool,
    max_line_length: usize,
    max_message_size: usize,
    max_recipients: usize,
    idle_timeout: Duration,
    pipelining: bool,
}

impl fmt::Debug for DevSmtpServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevSmtpServerBuilder")
            .field("hostname", &self.hostname)
            .field("tls", &self.tls)
            .field("mechanisms", &self.mechanisms)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("validators", &self.validators.len())
            .field("token_users", &self.token_users)
            .field("require_auth", &self.require_auth)
            .field("faults", &self.faults)
            .field("reject_bare_lf", &self.reject_bare_lf)
            .field("reject_bare_cr", &self.reject_bare_cr)
            .field("pipelining", &self.pipelining)
            .finish_non_exhaustive()
    }
}

impl Default for DevSmtpServerBuilder {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            tls: TlsMode::None,
            ca: None,
            mechanisms: None,
            users: HashMap::new(),
            validators: Vec::new(),
            token_users: Vec::new(),
            require_auth: None,
            oauth_scope: "https://mail.example.test/.default".into(),
            faults: Vec::new(),
            reject_bare_lf: true,
            reject_bare_cr: true,
            max_line_length: 8 * 1024,
            max_message_size: 10 * 1024 * 1024,
            max_recipients: 1000,
            idle_timeout: Duration::from_secs(60),
            pipelining: true,
        }
    }
}

impl DevSmtpServerBuilder {
    /// The name in the greeting and the EHLO reply (default `localhost`).
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = name.into();
        self
    }

    /// Sets the TLS mode (default [`TlsMode::None`]).
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = mode;
        self
    }

    /// Offers STARTTLS; AUTH and MAIL work without it.
    pub fn starttls(self) -> Self {
        self.tls(TlsMode::StartTls { required: false })
    }

    /// Offers STARTTLS and requires it before AUTH and MAIL.
    pub fn starttls_required(self) -> Self {
        self.tls(TlsMode::StartTls { required: true })
    }

    /// TLS from the first byte.
    pub fn implicit_tls(self) -> Self {
        self.tls(TlsMode::Implicit)
    }

    /// Uses this CA's server certificate instead of generating a new CA.
    pub fn ca(mut self, ca: DevCa) -> Self {
        self.ca = Some(ca);
        self
    }

    /// The mechanisms offered. Default: all four when a user, token or
    /// validator is configured, none (no AUTH in EHLO) otherwise.
    pub fn mechanisms(mut self, mechanisms: impl IntoIterator<Item = Mechanism>) -> Self {
        self.mechanisms = Some(mechanisms.into_iter().collect());
        self
    }

    /// Accepts `user` with `password` for PLAIN and LOGIN.
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.insert(user.into(), password.into());
        self
    }

    /// Accepts `token` for XOAUTH2 and OAUTHBEARER, for any user (unless
    /// [`DevSmtpServerBuilder::token_user`] restricts the users).
    pub fn accept_token(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token_validator(move |_, t| t == token)
    }

    /// Accepts a token for XOAUTH2 and OAUTHBEARER when `validator(user,
    /// token)` is true. Several validators: any one may accept.
    pub fn token_validator(
        mut self,
        validator: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.validators.push(Arc::new(validator));
        self
    }

    /// Accepts exactly the unexpired tokens in `registry` (typically those a
    /// [`crate::DevTokenEndpoint`] issued). A token bound to a user
    /// ([`crate::DevTokenEndpointBuilder::client_user`],
    /// [`TokenRegistry::insert_for_user`]) is accepted only with that
    /// XOAUTH2/OAUTHBEARER user; an unbound one (the default) with any user,
    /// unless [`DevSmtpServerBuilder::token_user`] restricts the users.
    pub fn token_registry(self, registry: TokenRegistry) -> Self {
        self.token_validator(move |user, token| registry.is_valid_for(token, user))
    }

    /// Accepts XOAUTH2 and OAUTHBEARER only for this user (ASCII
    /// case-insensitive), whatever token source accepts the token; call
    /// again to allow more users. Default: no restriction, any user name
    /// (even an empty OAUTHBEARER one) goes with a valid token.
    pub fn token_user(mut self, user: impl Into<String>) -> Self {
        self.token_users.push(user.into());
        self
    }

    /// Whether MAIL needs a successful AUTH first. Default: required when
    /// any user, token or validator is configured.
    pub fn require_auth(mut self, required: bool) -> Self {
        self.require_auth = Some(required);
        self
    }

    /// The scope named in the OAuth error challenges.
    pub fn oauth_scope(mut self, scope: impl Into<String>) -> Self {
        self.oauth_scope = scope.into();
        self
    }

    /// Adds a fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// Whether a bare LF (one without a CR before it) is refused, as
    /// Postfix's `smtpd_forbid_bare_newline = reject` and sendmail 8.18 do
    /// against SMTP smuggling. Default `true`: a command line ending in a
    /// bare LF gets `500 5.5.2 Error: bare <LF> received`; a message holding
    /// one is read to its end and gets `550 5.5.2` (and is not recorded).
    /// With `false`, a bare LF ends a command line and is kept in message
    /// data, and the message is recorded with
    /// [`ReceivedMessage::bare_lf`] set.
    ///
    /// Either way only `<CR><LF>.<CR><LF>` ends the message data, and the
    /// data is kept as received (only dot-stuffing is undone), never
    /// rewritten to CRLF.
    pub fn reject_bare_lf(mut self, reject: bool) -> Self {
        self.reject_bare_lf = reject;
        self
    }

    /// Whether message data holding a bare CR (one without an LF after it)
    /// is refused with `550 5.5.2 Error: bare <CR> received`, as sendmail
    /// 8.18 does. Default `true`. With `false` the message is recorded with
    /// [`ReceivedMessage::bare_cr`] set. (A CR inside a command line, as any
    /// control character there, gets `500 5.5.2` either way.)
    pub fn reject_bare_cr(mut self, reject: bool) -> Self {
        self.reject_bare_cr = reject;
        self
    }

    /// Longest command or data line accepted, terminator included (default
    /// 8 KiB). Longer lines get `500 5.5.2`.
    pub fn max_line_length(mut self, bytes: usize) -> Self {
        self.max_line_length = bytes.max(64);
        self
    }

    /// Largest message accepted (default 10 MiB), advertised as SIZE.
    /// Larger ones get `552 5.3.4`.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Most recipients per message (default 1000); more get `452 4.5.3`.
    pub fn max_recipients(mut self, n: usize) -> Self {
        self.max_recipients = n;
        self
    }

    /// How long the server waits for the client (default 60 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Whether the EHLO reply advertises RFC 2920 `PIPELINING` (default
    /// `true`). Either way commands that arrive pipelined are processed in
    /// order, one reply each, as a lenient server would; only STARTTLS
    /// drops what was sent after it
    /// ([`DevSmtpServer::discarded_before_tls`]), and a refused DATA with
    /// message content sent behind it gets `554 5.5.0` and the connection
    /// is closed (that content never runs as commands).
    pub fn pipelining(mut self, advertise: bool) -> Self {
        self.pipelining = advertise;
        self
    }

    /// Binds 127.0.0.1 on an ephemeral port and starts serving. Needs a
    /// tokio runtime.
    pub async fn start(self) -> io::Result<DevSmtpServer> {
        let ca = match self.ca {
            Some(ca) => ca,
            None => DevCa::generate()?,
        };
        let tls_config = match self.tls {
            TlsMode::None => None,
            _ => Some(ca.server_config()?),
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let has_credentials = !self.users.is_empty() || !self.validators.is_empty();
        let require_auth = self.require_auth.unwrap_or(has_credentials);
        let mechanisms: Vec<Mechanism> = match self.mechanisms {
            Some(set) => set.into_iter().collect(),
            None if has_credentials => Mechanism::ALL.to_vec(),
            None => Vec::new(),
        };
        let state = Arc::new(ServerState {
            config: Config {
                hostname: self.hostname,
                tls: self.tls,
                tls_config,
                mechanisms,
                users: self.users,
                validators: self.validators,
                token_users: self.token_users,
                require_auth,
                oauth_scope: self.oauth_scope,
                reject_bare_lf: self.reject_bare_lf,
                reject_bare_cr: self.reject_bare_cr,
                max_line_length: self.max_line_length,
                max_message_size: self.max_message_size,
                max_recipients: self.max_recipients,
                idle_timeout: self.idle_timeout,
                pipelining: self.pipelining,
            },
            faults: Mutex::new(self.faults.into_iter().map(Fault::slot).collect()),
            faults_fired: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            discarded_before_tls: AtomicU64::new(0),
            discarded_bytes_before_tls: AtomicU64::new(0),
            commands: Mutex::new(Vec::new()),
            messages: Mutex::new(Vec::new()),
            auth_attempts: Mutex::new(Vec::new()),
            message_count: watch::channel(0).0,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), shutdown_rx));
        tracing::debug!(%addr, tls = ?state.config.tls, "dev SMTP server listening");
        Ok(DevSmtpServer {
            addr,
            ca,
            state,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }
}

pub(crate) struct Config {
    pub hostname: String,
    pub tls: TlsMode,
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
    pub mechanisms: Vec<Mechanism>,
    pub users: HashMap<String, String>,
    pub validators: Vec<TokenValidator>,
    pub token_users: Vec<String>,
    pub require_auth: bool,
    pub oauth_scope: String,
    pub reject_bare_lf: bool,
    pub reject_bare_cr: bool,
    pub max_line_length: usize,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub idle_timeout: Duration,
    pub pipelining: bool,
}

pub(crate) struct ServerState {
    pub config: Config,
    faults: Mutex<Vec<FaultSlot<Fault>>>,
    faults_fired: Mutex<HashMap<Stage, u64>>,
    connections: AtomicU64,
    pub open_connections: AtomicU64,
    discarded_before_tls: AtomicU64,
    discarded_bytes_before_tls: AtomicU64,
    commands: Mutex<Vec<ReceivedCommand>>,
    messages: Mutex<Vec<ReceivedMessage>>,
    auth_attempts: Mutex<Vec<AuthAttempt>>,
    message_count: watch::Sender<usize>,
}

/// What takes the place of the normal reply at a stage.
#[derive(Debug)]
pub(crate) enum Replacement {
    /// Another reply.
    Reply { code: u16, text: String },
    /// These bytes, as they are.
    Raw(Vec<u8>),
    /// `chunk` repeated up to `total` bytes, then the connection closes.
    Flood { chunk: Vec<u8>, total: u64 },
    /// `bytes` one at a time; `forever`: cycling until the client leaves.
    Trickle {
        bytes: Vec<u8>,
        interval: Duration,
        forever: bool,
    },
}

/// What the faults say for one stage.
#[derive(Debug, Default)]
pub(crate) struct StageFaults {
    pub delay: Duration,
    pub disconnect: bool,
    pub replace: Option<Replacement>,
    /// Written in the same write as the reply.
    pub append: Vec<u8>,
}

impl ServerState {
    /// Fires the faults for `stage`: delays add up; a disconnect wins over a
    /// replacement; the first matching replacement (reply, raw bytes, flood
    /// or trickle) is used; appended bytes add up, unless the connection
    /// closes or a flood or trickle replaces the reply.
    pub(crate) fn stage_faults(&self, stage: Stage) -> StageFaults {
        let mut out = StageFaults::default();
        let mut fired = 0;
        let mut faults = lock(&self.faults);
        for slot in faults.iter_mut() {
            if slot.fault.action.stage() != stage {
                continue;
            }
            let replacement = match &slot.fault.action {
                FaultAction::Delay { delay, .. } => {
                    let delay = *delay;
                    if slot.fire() {
                        fired += 1;
                        out.delay += delay;
                    }
                    continue;
                }
                FaultAction::Disconnect { .. } => {
                    if !out.disconnect && slot.fire() {
                        fired += 1;
                        out.disconnect = true;
                    }
                    continue;
                }
                _ if out.replace.is_some() => continue,
                FaultAction::Reply { code, text, .. } => Replacement::Reply {
                    code: *code,
                    text: text.clone(),
                },
                FaultAction::Raw { bytes, .. } => Replacement::Raw(bytes.clone()),
                FaultAction::Flood {
                    chunk, total_bytes, ..
                } => Replacement::Flood {
                    chunk: chunk.clone(),
                    total: *total_bytes,
                },
                FaultAction::Trickle {
                    bytes, interval, ..
                } => Replacement::Trickle {
                    bytes: bytes.clone(),
                    interval: *interval,
                    forever: false,
                },
                FaultAction::TrickleForever {
                    bytes, interval, ..
                } => Replacement::Trickle {
                    bytes: bytes.clone(),
                    interval: *interval,
                    forever: true,
                },
                _ => continue,
            };
            if slot.fire() {
                fired += 1;
                out.replace = Some(replacement);
            }
        }
        let written_whole = matches!(
            out.replace,
            None | Some(Replacement::Reply { .. } | Replacement::Raw(_))
        );
        if written_whole && !out.disconnect {
            for slot in faults.iter_mut() {
                if let FaultAction::Append { stage: s, bytes } = &slot.fault.action
                    && *s == stage
                {
                    let bytes = bytes.clone();
                    if slot.fire() {
                        fired += 1;
                        out.append.extend_from_slice(&bytes);
                    }
                }
            }
        }
        drop(faults);
        self.count_fired(stage, fired);
        out
    }

    fn count_fired(&self, stage: Stage, n: u64) {
        if n > 0 {
            *lock(&self.faults_fired).entry(stage).or_default() += n;
        }
    }

    /// The byte count after which DATA is cut off, if a fault says so.
    pub(crate) fn data_disconnect(&self) -> Option<usize> {
        let found = lock(&self.faults).iter_mut().find_map(|slot| {
            if let FaultAction::DisconnectDuringData { after_bytes } = slot.fault.action
                && slot.fire()
            {
                return Some(after_bytes);
            }
            None
        });
        if found.is_some() {
            self.count_fired(Stage::Data, 1);
        }
        found
    }

    /// Whether a RefuseAuth fault takes this attempt.
    pub(crate) fn refuse_auth(&self) -> bool {
        let refused = lock(&self.faults)
            .iter_mut()
            .any(|slot| slot.fault.action == FaultAction::RefuseAuth && slot.fire());
        if refused {
            self.count_fired(Stage::Auth, 1);
        }
        refused
    }

    pub(crate) fn record_command(&self, command: ReceivedCommand) {
        lock(&self.commands).push(command);
    }

    pub(crate) fn record_discarded_before_tls(&self, bytes: usize) {
        self.discarded_before_tls.fetch_add(1, Ordering::SeqCst);
        self.discarded_bytes_before_tls
            .fetch_add(bytes as u64, Ordering::SeqCst);
    }

    pub(crate) fn record_message(&self, message: ReceivedMessage) {
        let count = {
            let mut messages = lock(&self.messages);
            messages.push(message);
            messages.len()
        };
        self.message_count.send_replace(count);
    }

    pub(crate) fn record_auth(&self, attempt: AuthAttempt) {
        lock(&self.auth_attempts).push(attempt);
    }

    pub(crate) fn check_password(&self, user: &str, password: &str) -> bool {
        self.config.users.get(user).is_some_and(|p| p == password)
    }

    pub(crate) fn check_token(&self, user: &str, token: &str) -> bool {
        let users = &self.config.token_users;
        (users.is_empty() || users.iter().any(|u| u.eq_ignore_ascii_case(user)))
            && self.config.validators.iter().any(|v| v(user, token))
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut shutdown: watch::Receiver<()>,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let id = state.connections.fetch_add(1, Ordering::SeqCst) + 1;
                    // The session's guard takes it off again.
                    state.open_connections.fetch_add(1, Ordering::SeqCst);
                    tracing::debug!(id, %peer, "dev SMTP connection");
                    let state = Arc::clone(&state);
                    let shutdown = shutdown.clone();
                    sessions.spawn(session::run(stream, id, state, shutdown));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dev SMTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

/// A running development SMTP server on 127.0.0.1. Dropping it shuts it
/// down: idle sessions get `421 4.3.2` and are closed.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use mailgate_devserver::{DevSmtpServer, Mechanism};
/// let server = DevSmtpServer::builder()
///     .starttls_required()
///     .mechanisms([Mechanism::Plain, Mechanism::Login])
///     .user("alice@example.com", "secret")
///     .start()
///     .await?;
/// println!("{} trusts {}", server.addr(), server.ca_cert_pem());
/// // ... send mail ...
/// let mail = server.wait_for_messages(1, std::time::Duration::from_secs(5)).await;
/// assert_eq!(mail[0].subject().as_deref(), Some("Hello"));
/// # Ok(()) }
/// ```
pub struct DevSmtpServer {
    addr: SocketAddr,
    ca: DevCa,
    state: Arc<ServerState>,
    shutdown: Option<watch::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for DevSmtpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevSmtpServer")
            .field("addr", &self.addr)
            .field("tls", &self.state.config.tls)
            .finish_non_exhaustive()
    }
}

impl DevSmtpServer {
    /// A builder with defaults: no TLS, no users or tokens, hence no AUTH
    /// offered and no AUTH required (an open relay). Configuring a user,
    /// token or validator offers all four mechanisms (unless
    /// [`DevSmtpServerBuilder::mechanisms`] says otherwise) and requires
    /// AUTH (unless [`DevSmtpServerBuilder::require_auth`] says otherwise).
    /// Bare LF and bare CR are refused
    /// ([`DevSmtpServerBuilder::reject_bare_lf`]).
    pub fn builder() -> DevSmtpServerBuilder {
        DevSmtpServerBuilder::default()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The TLS mode.
    pub fn tls_mode(&self) -> TlsMode {
        self.state.config.tls
    }

    /// The CA that signed the server certificate.
    pub fn ca(&self) -> &DevCa {
        &self.ca
    }

    /// The CA certificate, PEM, for the client to trust.
    pub fn ca_cert_pem(&self) -> &str {
        self.ca.ca_cert_pem()
    }

    /// The messages accepted so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        lock(&self.state.messages).clone()
    }

    /// The AUTH exchanges so far, in order.
    pub fn auth_attempts(&self) -> Vec<AuthAttempt> {
        lock(&self.state.auth_attempts).clone()
    }

    /// How many connections were accepted.
    pub fn connection_count(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// How many sessions are running now (accepted and not yet closed by
    /// either side).
    pub fn open_connections(&self) -> u64 {
        self.state.open_connections.load(Ordering::SeqCst)
    }

    /// Every command line received so far, in order, all connections (see
    /// [`ReceivedCommand`]).
    pub fn commands(&self) -> Vec<ReceivedCommand> {
        lock(&self.state.commands).clone()
    }

    /// The command lines received on one connection (1 for the first), in
    /// order.
    pub fn commands_on(&self, connection: u64) -> Vec<ReceivedCommand> {
        lock(&self.state.commands)
            .iter()
            .filter(|c| c.connection == connection)
            .cloned()
            .collect()
    }

    /// How many times faults fired at `stage` so far (each firing of each
    /// fault counts once; [`FaultAction::stage`] says where a fault
    /// belongs). Not reset by [`DevSmtpServer::clear`].
    pub fn faults_fired(&self, stage: Stage) -> u64 {
        lock(&self.state.faults_fired)
            .get(&stage)
            .copied()
            .unwrap_or(0)
    }

    /// How many times bytes the client sent after its STARTTLS line were
    /// already buffered when the server was about to start the TLS
    /// handshake: the client did not wait for the `220` (RFC 3207 section
    /// 4: STARTTLS must be the last command of a pipelined group). The server dropped those bytes unprocessed and
    /// did the handshake as usual; they are not in
    /// [`DevSmtpServer::commands`]. Bytes still in flight then go into the
    /// handshake and make it fail. Not reset by [`DevSmtpServer::clear`].
    pub fn discarded_before_tls(&self) -> u64 {
        self.state.discarded_before_tls.load(Ordering::SeqCst)
    }

    /// How many plaintext bytes were dropped that way, in all.
    pub fn discarded_bytes_before_tls(&self) -> u64 {
        self.state.discarded_bytes_before_tls.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` messages were accepted, or `timeout` passed;
    /// returns the messages accepted by then.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        let mut rx = self.state.message_count.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await;
        self.messages()
    }

    /// How many messages were accepted so far.
    pub fn message_count(&self) -> usize {
        lock(&self.state.messages).len()
    }

    /// The messages accepted after the first `seen`, in order: only those are
    /// copied, so a caller that follows arrivals ([`DevSmtpServer::wait_for_messages_after`])
    /// does not copy every stored message again for each new one.
    pub fn messages_after(&self, seen: usize) -> Vec<ReceivedMessage> {
        lock(&self.state.messages)
            .get(seen..)
            .map(<[ReceivedMessage]>::to_vec)
            .unwrap_or_default()
    }

    /// Waits until more than `seen` messages were accepted, or `timeout`
    /// passed; returns the messages after the first `seen` (none when the
    /// time ran out). For following arrivals: `seen += new.len()`.
    pub async fn wait_for_messages_after(
        &self,
        seen: usize,
        timeout: Duration,
    ) -> Vec<ReceivedMessage> {
        let mut rx = self.state.message_count.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|count| *count > seen)).await;
        self.messages_after(seen)
    }

    /// Forgets the recorded messages, auth attempts and commands (not the
    /// counters of connections, faults or discarded input).
    pub fn clear(&self) {
        lock(&self.state.commands).clear();
        lock(&self.state.messages).clear();
        lock(&self.state.auth_attempts).clear();
        self.state.message_count.send_replace(0);
    }

    /// Adds a fault while running.
    pub fn add_fault(&self, fault: Fault) {
        lock(&self.state.faults).push(fault.slot());
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Stops accepting, tells idle sessions `421` and waits for every
    /// session to end.
    pub async fn shutdown(mut self) {
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DevSmtpServer {
    fn drop(&mut self) {
        // Dropping the sender wakes every session and the accept loop.
        self.shutdown.take();
    }
}
