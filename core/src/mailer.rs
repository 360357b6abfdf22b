//! [`Mailer`]: the library API, including the trigger scripts' functions.

use std::path::PathBuf;
use std::sync::Arc;

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use secrecy::SecretString;

use crate::error::{Error, Origin, Result};
use crate::properties::{ConfigFiles, Properties};
use crate::registry::Registry;
use crate::resolver::{Resolution, resolve};
use crate::settings::{LoadOptions, Settings};
use crate::smtp::{ConnectReport, Delivery, Transport};

pub use crate::settings::DEFAULT_MAX_CONNECTIONS;

/// Builds a [`Mailer`]: where the properties files are, and overrides.
///
/// ```no_run
/// # async fn run() -> mailgate_core::Result<()> {
/// let mailer = mailgate_core::Mailer::builder()
///     .config_dir("/opt/rvs/server/config/properties")
///     .property("mailgate.smtp.timeoutSeconds", "10")
///     .build()?;
/// mailer
///     .sendmail("alm@example.com", "dev@example.com", "Build 42", "passed")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use]
pub struct MailerBuilder {
    files: ConfigFiles,
    overrides: Properties,
    env: bool,
    key_file: Option<PathBuf>,
    max_connections: Option<usize>,
}

impl Default for MailerBuilder {
    fn default() -> Self {
        Self {
            files: ConfigFiles::default(),
            overrides: Properties::default(),
            env: true,
            key_file: None,
            max_connections: None,
        }
    }
}

impl MailerBuilder {
    /// Reads `is.properties` and `security.properties` (optional) from `dir`;
    /// files named with [`Self::is_file`] or [`Self::security_file`] win.
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        let named = std::mem::take(&mut self.files);
        let mut files = ConfigFiles::in_dir(dir);
        if named.is.is_some() && named.dir.is_none() {
            files.is = named.is;
        }
        let explicit_security = !named.security_optional;
        if let Some(security) = named.security.filter(|_| explicit_security) {
            files = files.with_security(security);
        }
        self.files = files;
        self
    }

    /// Reads exactly these files.
    pub fn files(mut self, files: ConfigFiles) -> Self {
        self.files = files;
        self
    }

    /// Reads this file as `is.properties`.
    pub fn is_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.is = Some(path.into());
        self
    }

    /// Reads this file as `security.properties` (then it must exist).
    pub fn security_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files = std::mem::take(&mut self.files).with_security(path);
        self
    }

    /// Sets a property; wins over the files and the environment.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides
            .set(key.into(), value.into(), Origin::Builder);
        self
    }

    /// Whether environment variables override properties (default true);
    /// see [`crate::properties::env_var_name`] for the mapping.
    pub fn env_overrides(mut self, enabled: bool) -> Self {
        self.env = enabled;
        self
    }

    /// The key file for `ENC(...)` values, overriding `mailgate.crypto.keyFile`.
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key_file = Some(path.into());
        self
    }

    /// Bound on simultaneous SMTP connections; as many are kept idle for
    /// reuse. Wins over `mailgate.smtp.maxConnections` (default 4).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// Reads and validates the settings and builds the chosen strategy.
    pub fn build(self) -> Result<Mailer> {
        let registry = Registry::collect()?;
        let settings = Settings::load(LoadOptions {
            files: self.files,
            overrides: self.overrides,
            env: self.env,
            strategy_keys: registry.strategy_keys().collect(),
            key_file: self.key_file,
        })?;
        let resolution = resolve(settings.flags());
        tracing::debug!(
            "strategy `{}` chosen: {}",
            resolution.strategy,
            resolution.rule
        );
        let strategy = registry.build(&resolution, &settings)?;
        let transport = Transport::new(
            settings.server().clone(),
            strategy,
            resolution.strategy.clone(),
            self.max_connections
                .unwrap_or(settings.server().max_connections),
        )?;
        Ok(Mailer {
            inner: Arc::new(Inner {
                settings,
                resolution,
                transport,
            }),
        })
    }
}

struct Inner {
    settings: Settings,
    resolution: Resolution,
    transport: Transport,
}

/// Sends mail with the settings of an RV&S config folder. Cheap to clone;
/// clones share one connection pool and one token cache.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.mail_hostname_and_port())
            .field("strategy", &self.inner.resolution.strategy)
            .field("strategy_impl", self.inner.transport.strategy())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A builder.
    pub fn builder() -> MailerBuilder {
        MailerBuilder::default()
    }

    /// A mailer for the config folder holding `is.properties` and `security.properties`.
    pub fn from_config_dir(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::builder().config_dir(dir).build()
    }

    /// A mailer for two named files.
    pub fn from_files(is: impl Into<PathBuf>, security: impl Into<PathBuf>) -> Result<Self> {
        Self::builder().is_file(is).security_file(security).build()
    }

    /// The loaded settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The chosen strategy and the rule that chose it.
    pub fn resolution(&self) -> &Resolution {
        &self.inner.resolution
    }

    /// Facts about the strategy that are safe to show (never a secret).
    pub fn describe_strategy(&self) -> Vec<(&'static str, String)> {
        self.inner.transport.strategy().describe()
    }

    /// The SMTP server's host (trigger API `getSMTPServer()`).
    pub fn smtp_server(&self) -> &str {
        &self.inner.settings.server().host
    }

    /// The SMTP port (trigger API `getSMTPPort()`).
    pub fn smtp_port(&self) -> u16 {
        self.inner.settings.server().port
    }

    /// `host:port`.
    pub fn mail_hostname_and_port(&self) -> String {
        self.inner.settings.server().address()
    }

    /// An OAuth access token (trigger API `getOAuthAccessToken()`), from the
    /// same cache the connections use.
    pub async fn oauth_access_token(&self) -> Result<SecretString> {
        match self.inner.transport.strategy().token_source() {
            Some(source) => source.access_token().await,
            None => Err(Error::Usage(format!(
                "the `{}` strategy uses no OAuth tokens (chosen because {}); set mksis.smtp.oauth.authentication=true and mksis.smtp.authentication=false to use OAuth",
                self.inner.resolution.strategy, self.inner.resolution.rule
            ))),
        }
    }

    /// Sends a message built with lettre's builder.
    ///
    /// With a strategy that authenticates as a user (basic), the envelope
    /// sender must be that user; this is checked before anything is sent.
    pub async fn send(&self, message: &Message) -> Result<Delivery> {
        let envelope = message.envelope();
        if let (Some(user), Some(from)) = (
            self.inner.transport.strategy().required_sender(),
            envelope.from(),
        ) && !from.to_string().eq_ignore_ascii_case(user)
        {
            return Err(Error::invalid_message(
                "from",
                format!(
                    "`{from}` is not the authenticated user `{user}`; with {} authentication the sender must be the user set in mksis.logging.email.from",
                    self.inner.resolution.strategy
                ),
            ));
        }
        self.inner
            .transport
            .send(envelope, &message.formatted())
            .await
    }

    /// The trigger API's `sendmail(from, to, subject, message)`: a plain-text
    /// message; `to` may be a comma-separated list.
    pub async fn sendmail(
        &self,
        from: &str,
        to: &str,
        subject: &str,
        message: &str,
    ) -> Result<Delivery> {
        let message = OutgoingMessage {
            from: Some(from.to_owned()),
            to: vec![to.to_owned()],
            subject: subject.to_owned(),
            body: message.to_owned(),
            ..OutgoingMessage::default()
        }
        .build(None)?;
        self.send(&message).await
    }

    /// Connects, negotiates TLS and authenticates, then quits without sending.
    pub async fn check_connection(&self) -> Result<ConnectReport> {
        self.inner.transport.check().await
    }

    /// Politely closes the pooled connections (QUIT). Dropping the mailer closes them too, abruptly.
    pub async fn close(&self) {
        self.inner.transport.close().await;
    }
}

/// A message described by its parts; [`OutgoingMessage::build`] validates them.
#[derive(Clone, Debug, Default)]
pub struct OutgoingMessage {
    /// Sender; `None` uses `mksis.logging.email.from`.
    pub from: Option<String>,
    /// Recipients; each entry may be a comma-separated list.
    pub to: Vec<String>,
    /// Carbon copies.
    pub cc: Vec<String>,
    /// Blind carbon copies (envelope only).
    pub bcc: Vec<String>,
    /// Subject (one line).
    pub subject: String,
    /// Body.
    pub body: String,
    /// The body is HTML.
    pub html: bool,
}

impl OutgoingMessage {
    /// Validates and builds the message. CR or LF in a header field, a bad
    /// address or no recipient is [`Error::InvalidMessage`] (exit 65).
    pub fn build(&self, default_from: Option<&Mailbox>) -> Result<Message> {
        let from = match &self.from {
            Some(from) => mailbox("from", from)?,
            None => default_from.cloned().ok_or_else(|| {
                Error::Usage(
                    "no sender: pass --from or set mksis.logging.email.from in is.properties"
                        .into(),
                )
            })?,
        };
        reject_line_breaks("subject", &self.subject)?;
        let mut builder = Message::builder().from(from).subject(self.subject.clone());
        let mut recipients = 0;
        for (field, list) in [("to", &self.to), ("cc", &self.cc), ("bcc", &self.bcc)] {
            for addr in list
                .iter()
                .flat_map(|s| split_addresses(s))
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let mbox = mailbox(field, addr)?;
                recipients += 1;
                builder = match field {
                    "to" => builder.to(mbox),
                    "cc" => builder.cc(mbox),
                    _ => builder.bcc(mbox),
                };
            }
        }
        if recipients == 0 {
            return Err(Error::invalid_message("to", "no recipient given"));
        }
        let content_type = if self.html {
            ContentType::TEXT_HTML
        } else {
            ContentType::TEXT_PLAIN
        };
        builder
            .header(content_type)
            .body(self.body.clone())
            .map_err(|e| Error::invalid_message("message", e.to_string()))
    }
}

/// Splits an address list at commas outside quoted names, so that
/// `"Doe, John" <j@example.com>, a@example.com` is two addresses.
fn split_addresses(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in list.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts
}

fn reject_line_breaks(field: &str, value: &str) -> Result<()> {
    if value.contains(['\r', '\n']) {
        return Err(Error::invalid_message(
            field,
            "it contains a line break (CR or LF), which could inject headers; nothing was sent",
        ));
    }
    Ok(())
}

fn mailbox(field: &str, value: &str) -> Result<Mailbox> {
    reject_line_breaks(field, value)?;
    value.trim().parse::<Mailbox>().map_err(|e| {
        Error::invalid_message(
            field,
            format!("`{}` is not a valid address ({e})", value.trim()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(to: &[&str], subject: &str) -> OutgoingMessage {
        OutgoingMessage {
            from: Some("alm@example.com".into()),
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            subject: subject.into(),
            body: "hello".into(),
            ..OutgoingMessage::default()
        }
    }

    #[test]
    fn header_injection_in_subject_is_rejected() {
        let err = msg(&["a@example.com"], "hi\r\nBcc: victim@example.com")
            .build(None)
            .unwrap_err();
        assert_eq!(err.exit_code(), 65);
        assert!(err.to_string().contains("subject"), "{err}");
    }

    #[test]
    fn header_injection_in_address_is_rejected() {
        let err = msg(&["a@example.com\nBcc: x@example.com"], "s")
            .build(None)
            .unwrap_err();
        assert_eq!(err.exit_code(), 65);
        assert!(err.to_string().contains("invalid to"), "{err}");
    }

    #[test]
    fn comma_separated_recipients() {
        let m = msg(&["a@example.com, b@example.com", "c@example.com"], "s")
            .build(None)
            .unwrap();
        assert_eq!(m.envelope().to().len(), 3);
    }

    #[test]
    fn quoted_names_may_hold_commas() {
        let m = msg(&["\"Doe, John\" <j@example.com>, a@example.com"], "s")
            .build(None)
            .unwrap();
        let to: Vec<String> = m.envelope().to().iter().map(ToString::to_string).collect();
        assert_eq!(to, ["j@example.com", "a@example.com"]);
        assert_eq!(
            split_addresses(r#""a \" ,b" <x@y>, z@w"#),
            [r#""a \" ,b" <x@y>"#, " z@w"]
        );
    }

    #[test]
    fn bad_address_names_field() {
        let err = msg(&["not-an-address"], "s").build(None).unwrap_err();
        assert!(err.to_string().contains("`not-an-address`"), "{err}");
        assert_eq!(err.exit_code(), 65);
    }

    #[test]
    fn no_recipient() {
        let err = msg(&[" , "], "s").build(None).unwrap_err();
        assert_eq!(err.exit_code(), 65);
    }

    #[test]
    fn default_sender_is_used() {
        let mut m = msg(&["a@example.com"], "s");
        m.from = None;
        assert_eq!(m.build(None).unwrap_err().exit_code(), 64);
        let from: Mailbox = "alm@example.com".parse().unwrap();
        let built = m.build(Some(&from)).unwrap();
        assert_eq!(
            built.envelope().from().unwrap().to_string(),
            "alm@example.com"
        );
    }
}
