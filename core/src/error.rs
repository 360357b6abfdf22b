//! Errors, with the exit code (sysexits) each one maps to.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where a property value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A line of a properties file.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the key.
        line: usize,
    },
    /// An environment variable overriding the files.
    Env {
        /// The variable's name.
        var: String,
    },
    /// Set in code through the [`crate::MailerBuilder`] (`property`, or a
    /// typed method such as `server`).
    Builder,
    /// Not set anywhere: the program's default (the outbox URL of
    /// [`Registry::default_outbox_url`](crate::Registry::default_outbox_url)).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Builder => f.write_str("a value set in code (MailerBuilder)"),
            Origin::Default => f.write_str("the program's default (the key is not set)"),
        }
    }
}

/// A class of failure: decides the exit code and whether retrying may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller used the API or command line wrongly (EX_USAGE, 64).
    Usage,
    /// The message is malformed: bad address, header injection (EX_DATAERR, 65).
    InvalidInput,
    /// The server's host name does not resolve (EX_NOHOST, 68).
    NoHost,
    /// Reading or writing local storage failed: the outbox (EX_IOERR, 74).
    Io,
    /// The server cannot do what is configured, or refused for good (EX_UNAVAILABLE, 69).
    Unavailable,
    /// Try again later: refused connections, 4xx replies, timeouts, broken
    /// connections, token endpoint 5xx (EX_TEMPFAIL, 75).
    Temporary,
    /// The server or token endpoint refused the credentials (EX_NOPERM, 77).
    AuthRefused,
    /// The settings are wrong or incomplete (EX_CONFIG, 78).
    Config,
}

impl ErrorKind {
    /// The sysexits code for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage => 64,
            ErrorKind::InvalidInput => 65,
            ErrorKind::NoHost => 68,
            ErrorKind::Io => 74,
            ErrorKind::Unavailable => 69,
            ErrorKind::Temporary => 75,
            ErrorKind::AuthRefused => 77,
            ErrorKind::Config => 78,
        }
    }
}

mod config;

pub use config::{ConfigError, UnknownOutboxStore};

/// What the SMTP client was doing when something failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// TCP connect, greeting and EHLO.
    Connect,
    /// TLS handshake (implicit or after STARTTLS).
    Tls,
    /// Authentication.
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA and the message body.
    Data,
    /// NOOP, RSET, QUIT.
    Other,
}

impl Stage {
    /// A stable snake_case name (`connect`, `tls`, `auth`, `mail`, `rcpt`,
    /// `data`, `other`), for machine-readable output; [`fmt::Display`] is
    /// the text for people.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Auth => "auth",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::Other => "other",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Tls => "TLS handshake",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Other => "SMTP command",
        })
    }
}

/// Everything that can go wrong building a [`crate::Mailer`] or sending mail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings are wrong or incomplete.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The message is malformed (exit 65). Nothing was sent.
    #[error("invalid {field}: {reason}")]
    InvalidMessage {
        /// The field: `subject`, `to`, `from`, ...
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Nothing accepts connections at the configured address (yet): refused,
    /// unreachable, or the name could not be looked up now. Temporary (75).
    #[error("cannot connect to SMTP server {server}: {reason}")]
    Connect {
        /// host:port
        server: String,
        /// Why.
        reason: String,
        /// The socket error, when one address was tried (the reason lists several).
        #[source]
        source: Option<std::io::Error>,
    },
    /// The server's host name does not resolve (68).
    #[error(
        "cannot connect to SMTP server {server}: the host name `{host}` does not resolve ({reason}); check `mksis.logging.email.server.hostname`"
    )]
    UnknownHost {
        /// host:port
        server: String,
        /// The name that was looked up.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// Bytes arrived after the server's `220` reply to STARTTLS, before the
    /// TLS handshake: the server is broken or someone on the network path is
    /// injecting replies (RFC 3207 §6). Nothing more was sent (69).
    #[error(
        "{server} (or something on the network path) sent {bytes} byte(s) after its 220 reply to STARTTLS, before the TLS handshake; refusing to continue, since those bytes could fake the server's replies (response injection). Nothing was sent"
    )]
    StartTlsInjection {
        /// host:port
        server: String,
        /// How many bytes were waiting.
        bytes: usize,
    },
    /// The TLS handshake failed, e.g. the certificate is not trusted. Nothing was sent.
    #[error(
        "TLS with {server} failed: {reason}; if the server uses a private CA, list its PEM file in `mailgate.smtp.ssl.caFile`"
    )]
    Tls {
        /// host:port
        server: String,
        /// Why (server text cleaned).
        reason: String,
        /// The handshake error, when there was one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// TLS is required but the server does not offer STARTTLS. Nothing was sent.
    #[error(
        "{server} does not offer STARTTLS but `mksis.smtp.ssl.enabled=true`; refusing to continue without TLS (use port 465 or `mailgate.smtp.ssl.mode=implicit` if the server speaks implicit TLS)"
    )]
    StartTlsUnavailable {
        /// host:port
        server: String,
    },
    /// The server's EHLO reply carries this process's own instance id
    /// ([`crate::smtp::instance_id`]): the upstream is this mailgate relay
    /// itself, and delivering would send the message round in a loop.
    /// Nothing was sent (78).
    #[error(
        "{server} is this mailgate relay itself (its EHLO reply carries this process's instance id {instance}): delivering there would loop the mail; point `mksis.logging.email.server.hostname` and `mksis.logging.email.server.port` at the real upstream server"
    )]
    MailLoop {
        /// host:port
        server: String,
        /// This process's instance id.
        instance: String,
    },
    /// Credentials would cross an unencrypted connection.
    #[error(
        "the {strategy} strategy would send credentials to {server} without TLS; set `mksis.smtp.ssl.enabled=true` (or, on a trusted network only, `mailgate.smtp.allowPlaintextAuth=true`)"
    )]
    PlaintextAuth {
        /// The strategy.
        strategy: String,
        /// host:port
        server: String,
    },
    /// The server offers none of the mechanisms the strategy can use.
    #[error(
        "{server} offers no AUTH mechanism the {strategy} strategy supports (wanted one of {wanted})"
    )]
    NoMechanism {
        /// The strategy.
        strategy: String,
        /// host:port
        server: String,
        /// Mechanisms the strategy could use.
        wanted: String,
    },
    /// The server refused the credentials.
    #[error("{server} refused {strategy} authentication: {reply}")]
    AuthRefused {
        /// The strategy.
        strategy: String,
        /// host:port
        server: String,
        /// The server's reply (decoded where it was base64), never the credentials.
        reply: String,
        /// The strategy asks for one more attempt on a new connection (fresh token).
        retry_on_new_connection: bool,
    },
    /// The server answered with an error code.
    #[error("{server} rejected {stage} with {code}: {reply}")]
    Smtp {
        /// host:port
        server: String,
        /// The command.
        stage: Stage,
        /// The reply code.
        code: u16,
        /// The reply text.
        reply: String,
    },
    /// One or more recipients were refused; the message went to no one.
    #[error("{server} refused {} of {total} recipient(s): {}; nothing was sent", refused.len(), describe_refusals(refused))]
    Recipients {
        /// host:port
        server: String,
        /// How many recipients the message had.
        total: usize,
        /// Each refused recipient with the server's reply.
        refused: Vec<RecipientRefusal>,
    },
    /// Some recipients were refused; the message went to the others (see
    /// [`Delivery::refusal`](crate::Delivery::refusal)). Its kind is that
    /// of the refusals, as for [`Error::Recipients`].
    #[error("{server} refused {} of {total} recipient(s): {}; the message was sent to the other {}", refused.len(), describe_refusals(refused), total.saturating_sub(refused.len()))]
    PartlyDelivered {
        /// host:port
        server: String,
        /// How many recipients the message had.
        total: usize,
        /// Each refused recipient with the server's reply.
        refused: Vec<RecipientRefusal>,
    },
    /// The connection broke or the server spoke nonsense.
    #[error("connection to {server} failed during {stage}: {reason}")]
    Protocol {
        /// host:port
        server: String,
        /// The command.
        stage: Stage,
        /// Why.
        reason: String,
        /// The I/O error, when reading or writing failed.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A reply did not arrive in time.
    #[error("{server} did not answer {stage} within {}s (`mailgate.smtp.timeoutSeconds`)", after.as_secs_f32())]
    Timeout {
        /// host:port
        server: String,
        /// The command.
        stage: Stage,
        /// The limit.
        after: Duration,
    },
    /// A strategy-specific failure (e.g. the OAuth token endpoint).
    #[error("{strategy}: {source}")]
    Strategy {
        /// The strategy.
        strategy: String,
        /// How to treat it.
        kind: ErrorKind,
        /// The cause, free of secrets.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The outbox could not be read or written; nothing was changed by the
    /// failed call (exit 74).
    #[error("outbox {location}: {reason}")]
    Outbox {
        /// The backend and where it is (no password).
        location: String,
        /// What failed and what to do.
        reason: String,
    },
    /// The call does not fit the configuration (e.g. a token from a strategy that has none).
    #[error("{0}")]
    Usage(String),
}

/// A recipient the server refused at RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientRefusal {
    /// The address, cleaned for display.
    pub address: String,
    /// The reply code.
    pub code: u16,
    /// The reply text, cleaned for display.
    pub reply: String,
    /// Its position in the envelope's recipients.
    pub index: usize,
}

impl RecipientRefusal {
    /// Whether the server may take this recipient later (a 4xx reply).
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// The enhanced status code (RFC 3463) of the reply, if it has one.
    pub fn enhanced_status(&self) -> Option<(u8, u16, u16)> {
        enhanced_status(&self.reply)
    }
}

/// At most this many refused recipients are listed in the error text.
const LISTED_REFUSALS: usize = 10;

fn describe_refusals(refused: &[RecipientRefusal]) -> String {
    let mut parts: Vec<String> = refused
        .iter()
        .take(LISTED_REFUSALS)
        .map(|r| format!("<{}> {} {}", r.address, r.code, r.reply))
        .collect();
    if refused.len() > LISTED_REFUSALS {
        parts.push(format!("and {} more", refused.len() - LISTED_REFUSALS));
    }
    parts.join("; ")
}

impl Error {
    /// A strategy's own failure with a message (no secret in it) and the
    /// [`ErrorKind`] that decides its exit code and whether it is transient.
    pub fn strategy(strategy: &str, kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Strategy {
            strategy: strategy.to_owned(),
            kind,
            source: message.into().into(),
        }
    }

    /// A stable snake_case name for this error, one per variant, for
    /// machine-readable output (the command line's `--json` error object
    /// calls it `kind`; the README lists them). It is finer than
    /// [`Error::kind`], whose class the exit code carries.
    ///
    /// Matched here, without a wildcard, so that a new variant needs a name.
    pub fn name(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::InvalidMessage { .. } => "invalid_message",
            Error::Connect { .. } => "connect",
            Error::UnknownHost { .. } => "unknown_host",
            Error::StartTlsInjection { .. } => "starttls_injection",
            Error::Tls { .. } => "tls",
            Error::StartTlsUnavailable { .. } => "starttls_unavailable",
            Error::MailLoop { .. } => "mail_loop",
            Error::PlaintextAuth { .. } => "plaintext_auth",
            Error::NoMechanism { .. } => "no_mechanism",
            Error::AuthRefused { .. } => "auth_refused",
            Error::Smtp { .. } => "smtp_reply",
            Error::Recipients { .. } => "recipients_refused",
            Error::PartlyDelivered { .. } => "partly_delivered",
            Error::Protocol { .. } => "protocol",
            Error::Timeout { .. } => "timeout",
            Error::Strategy { .. } => "strategy",
            Error::Outbox { .. } => "outbox",
            Error::Usage(_) => "usage",
        }
    }

    /// The failure class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::PlaintextAuth { .. } | Error::MailLoop { .. } => {
                ErrorKind::Config
            }
            Error::InvalidMessage { .. } => ErrorKind::InvalidInput,
            Error::Connect { .. } => ErrorKind::Temporary,
            Error::UnknownHost { .. } => ErrorKind::NoHost,
            Error::Tls { .. }
            | Error::StartTlsInjection { .. }
            | Error::StartTlsUnavailable { .. }
            | Error::NoMechanism { .. } => ErrorKind::Unavailable,
            Error::AuthRefused { .. } => ErrorKind::AuthRefused,
            Error::Smtp {
                code, stage, reply, ..
            } => smtp_kind(*code, *stage, reply),
            Error::Recipients { refused, .. } | Error::PartlyDelivered { refused, .. } => {
                recipients_kind(refused)
            }
            Error::Protocol { .. } | Error::Timeout { .. } => ErrorKind::Temporary,
            Error::Strategy { kind, .. } => *kind,
            Error::Usage(_) => ErrorKind::Usage,
            Error::Outbox { .. } => ErrorKind::Io,
        }
    }

    /// The recipients the server refused at RCPT, with its replies
    /// ([`Error::Recipients`], [`Error::PartlyDelivered`]); empty otherwise.
    pub fn refused_recipients(&self) -> &[RecipientRefusal] {
        match self {
            Error::Recipients { refused, .. } | Error::PartlyDelivered { refused, .. } => refused,
            _ => &[],
        }
    }

    /// The sysexits exit code.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }

    /// Whether trying again later, unchanged, may succeed: the
    /// [`ErrorKind::Temporary`] class (exit 75), e.g. a refused connection,
    /// a 4xx reply, a timeout, a broken connection or a token endpoint 5xx.
    /// The opposite of [`Error::is_permanent`].
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Temporary
    }

    /// Whether the same call will fail again until something changes (the
    /// settings, the message, the server): every error that is not
    /// [transient](Error::is_transient).
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// The SMTP reply code behind this error, `None` when no SMTP error
    /// reply was involved (connection or TLS failures, timeouts, settings,
    /// invalid messages, ...).
    ///
    /// For [`Error::Recipients`] it is the code of the refusal that decides
    /// [`Error::kind`]: the first permanent one, else the first. For
    /// [`Error::AuthRefused`] it is the code the server refused AUTH with.
    /// The enhanced status code (RFC 3463), where the server sent one, is
    /// [`Error::enhanced_status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Smtp { code, .. } => Some(*code),
            Error::Recipients { refused, .. } | Error::PartlyDelivered { refused, .. } => {
                deciding_refusal(refused).map(|r| r.code)
            }
            Error::AuthRefused { reply, .. } => reply_code(reply).map(|(code, _)| code),
            _ => None,
        }
    }

    /// The enhanced status code (RFC 3463) of the reply behind this error as
    /// `(class, subject, detail)`, e.g. `(5, 7, 1)` for `550 5.7.1 Relaying
    /// denied`; `None` when [`Error::status`] is, or the server sent none.
    pub fn enhanced_status(&self) -> Option<(u8, u16, u16)> {
        match self {
            Error::Smtp { reply, .. } => enhanced_status(reply),
            Error::Recipients { refused, .. } | Error::PartlyDelivered { refused, .. } => {
                deciding_refusal(refused).and_then(|r| enhanced_status(&r.reply))
            }
            Error::AuthRefused { reply, .. } => {
                reply_code(reply).and_then(|(_, text)| enhanced_status(text))
            }
            _ => None,
        }
    }

    /// The stage of the SMTP conversation that failed, `None` for errors
    /// outside one (settings, invalid messages, the outbox, usage, and
    /// strategy failures such as the OAuth token endpoint's). Failures to
    /// reach the server, including a host name that does not resolve, are
    /// [`Stage::Connect`].
    pub fn stage(&self) -> Option<Stage> {
        match self {
            Error::Smtp { stage, .. }
            | Error::Protocol { stage, .. }
            | Error::Timeout { stage, .. } => Some(*stage),
            Error::Connect { .. } | Error::UnknownHost { .. } | Error::MailLoop { .. } => {
                Some(Stage::Connect)
            }
            Error::Tls { .. }
            | Error::StartTlsInjection { .. }
            | Error::StartTlsUnavailable { .. } => Some(Stage::Tls),
            Error::AuthRefused { .. } | Error::NoMechanism { .. } | Error::PlaintextAuth { .. } => {
                Some(Stage::Auth)
            }
            Error::Recipients { .. } | Error::PartlyDelivered { .. } => Some(Stage::Rcpt),
            _ => None,
        }
    }

    pub(crate) fn invalid_message(field: &str, reason: impl Into<String>) -> Self {
        Error::InvalidMessage {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The refusal that decides the kind of [`Error::Recipients`]: the first
/// permanent one, else the first.
fn deciding_refusal(refused: &[RecipientRefusal]) -> Option<&RecipientRefusal> {
    refused
        .iter()
        .find(|r| r.code / 100 != 4)
        .or_else(|| refused.first())
}

/// The code that starts a reply shown whole (`535 5.7.8 ...`), and the text after it.
fn reply_code(reply: &str) -> Option<(u16, &str)> {
    let digits = reply
        .get(..3)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?;
    let rest = &reply[3..];
    if !(rest.is_empty() || rest.starts_with([' ', '-'])) {
        return None;
    }
    Some((digits.parse().ok()?, rest.get(1..).unwrap_or_default()))
}

/// Temporary when every refusal was; else as the first permanent one.
fn recipients_kind(refused: &[RecipientRefusal]) -> ErrorKind {
    refused
        .iter()
        .find(|r| r.code / 100 != 4)
        .map_or(ErrorKind::Temporary, |r| {
            smtp_kind(r.code, Stage::Rcpt, &r.reply)
        })
}

/// Classifies an SMTP error reply: 4xx is temporary; then the enhanced
/// status code (RFC 3463) where the server sends one, since it says what is
/// wrong whatever the command; then the codes that only ever mean
/// authentication (530 required, 534 mechanism too weak, 535 refused, 538
/// encryption required); then the command.
///
/// This is the one classifier of SMTP replies; the README's exit-code table
/// follows it.
fn smtp_kind(code: u16, stage: Stage, reply: &str) -> ErrorKind {
    if code / 100 == 4 {
        return ErrorKind::Temporary;
    }
    if code / 100 != 5 {
        // A 2xx or 3xx where an error was expected: the server is confused.
        return ErrorKind::Unavailable;
    }
    match enhanced_status(reply) {
        // Security or policy: authentication required, relaying denied, sender not allowed.
        Some((_, 7, _)) => ErrorKind::AuthRefused,
        // Addressing, or the message too big.
        Some((_, 1, _) | (_, 3, 4) | (_, 2, 3)) => ErrorKind::InvalidInput,
        _ => match (code, stage) {
            (530 | 534 | 535 | 538, _) => ErrorKind::AuthRefused,
            // Syntax error or command not implemented: the server cannot do it.
            (500..=504, _) => ErrorKind::Unavailable,
            (_, Stage::Auth) => ErrorKind::AuthRefused,
            (_, Stage::Mail | Stage::Rcpt) => ErrorKind::InvalidInput,
            _ => ErrorKind::Unavailable,
        },
    }
}

/// The `class.subject.detail` enhanced status code that starts `reply`, if any.
fn enhanced_status(reply: &str) -> Option<(u8, u16, u16)> {
    let word = reply.split_whitespace().next()?;
    let mut parts = word.splitn(3, '.');
    let class = parts
        .next()?
        .parse()
        .ok()
        .filter(|c| matches!(c, 2 | 4 | 5))?;
    let subject = parts.next()?.parse().ok()?;
    let detail = parts.next()?.parse().ok()?;
    Some((class, subject, detail))
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
