//! The authentication plug-in point: [`AuthStrategy`], its registration
//! ([`StrategyDescriptor`]) and the connection it works on ([`SmtpSession`]).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::time::Instant;

use crate::error::{Error, Result, Stage};
use crate::resolver::VendorMode;
use crate::settings::Settings;
use crate::smtp::Reply;
use crate::smtp::connection::Connection;

/// Authenticates an SMTP connection that is already open (and TLS'd where configured).
///
/// For every new connection the pool calls [`prepare`](Self::prepare) before
/// it connects and hands its result, the connection's own credential, to
/// [`authenticate`](Self::authenticate). Per-connection state therefore
/// never lives on the strategy, which concurrent connections share.
/// Implementations drive the SASL exchange themselves through
/// [`SmtpSession::auth_command`] (the encoders are in [`crate::sasl`]), which
/// never logs the payload.
///
/// ```
/// use mailgate_core::{AuthStrategy, Result, SmtpSession, async_trait};
///
/// #[derive(Debug)]
/// struct Anonymous;
///
/// #[async_trait]
/// impl AuthStrategy for Anonymous {
///     type Credential = ();
///     async fn prepare(&self) -> Result<()> {
///         Ok(())
///     }
///     async fn authenticate(&self, _: &mut SmtpSession<'_>, _: ()) -> Result<()> {
///         Ok(())
///     }
///     fn sends_credentials(&self) -> bool {
///         false
///     }
/// }
/// ```
#[async_trait]
pub trait AuthStrategy: Send + Sync + fmt::Debug + 'static {
    /// What [`prepare`](Self::prepare) gets for one connection and
    /// [`authenticate`](Self::authenticate) uses up: a token, a password
    /// fetched from a command, or `()`.
    type Credential: Send + 'static;

    /// Runs before each new connection is opened: a strategy that fetches
    /// credentials does it here, so a failing credential source never leaves
    /// a half-open SMTP session behind.
    async fn prepare(&self) -> Result<Self::Credential>;

    /// Authenticates `session` with the credential `prepare` returned for
    /// this connection. A refusal is [`Error::AuthRefused`]; set its
    /// `retry_on_new_connection` to get one more `prepare` and call on a
    /// fresh connection.
    async fn authenticate(
        &self,
        session: &mut SmtpSession<'_>,
        credential: Self::Credential,
    ) -> Result<()>;

    /// Whether this strategy sends credentials; such strategies are refused on
    /// unencrypted connections unless `mailgate.smtp.allowPlaintextAuth=true`.
    fn sends_credentials(&self) -> bool {
        true
    }

    /// The sender address the server will insist on (the auth user), if any.
    fn required_sender(&self) -> Option<&str> {
        None
    }

    /// Where the strategy gets access tokens, if it uses them.
    fn token_source(&self) -> Option<&dyn TokenSource> {
        None
    }

    /// Facts safe to show an operator (`mailgate check`); never a secret.
    fn describe(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// A source of OAuth access tokens (the trigger API's `getOAuthAccessToken`).
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A currently valid access token.
    async fn access_token(&self) -> Result<SecretString>;

    /// Requests sent to the token endpoint so far, where the source counts
    /// them (for metrics).
    fn fetch_count(&self) -> Option<u64> {
        None
    }
}

/// A built strategy of any type, as the registry and the pool hold it.
#[derive(Clone)]
pub struct SharedStrategy(Arc<dyn ErasedStrategy>);

impl SharedStrategy {
    /// Wraps `strategy`.
    pub fn new<S: AuthStrategy>(strategy: S) -> Self {
        Self(Arc::new(strategy))
    }

    pub(crate) fn get(&self) -> &dyn ErasedStrategy {
        &*self.0
    }

    /// See [`AuthStrategy::sends_credentials`].
    pub fn sends_credentials(&self) -> bool {
        self.0.sends_credentials()
    }

    /// See [`AuthStrategy::required_sender`].
    pub fn required_sender(&self) -> Option<&str> {
        self.0.required_sender()
    }

    /// See [`AuthStrategy::token_source`].
    pub fn token_source(&self) -> Option<&dyn TokenSource> {
        self.0.token_source()
    }

    /// See [`AuthStrategy::describe`].
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        self.0.describe()
    }
}

impl fmt::Debug for SharedStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(f)
    }
}

type Credential = Box<dyn Any + Send>;

/// [`AuthStrategy`] with its credential type erased, so strategies of
/// different types fit one registry.
#[async_trait]
pub(crate) trait ErasedStrategy: Send + Sync {
    async fn prepare(&self) -> Result<Credential>;
    async fn authenticate(
        &self,
        session: &mut SmtpSession<'_>,
        credential: Credential,
    ) -> Result<()>;
    fn sends_credentials(&self) -> bool;
    fn required_sender(&self) -> Option<&str>;
    fn token_source(&self) -> Option<&dyn TokenSource>;
    fn describe(&self) -> Vec<(&'static str, String)>;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

#[async_trait]
impl<S: AuthStrategy> ErasedStrategy for S {
    async fn prepare(&self) -> Result<Credential> {
        Ok(Box::new(AuthStrategy::prepare(self).await?))
    }

    async fn authenticate(
        &self,
        session: &mut SmtpSession<'_>,
        credential: Credential,
    ) -> Result<()> {
        // The pool pairs each credential with the strategy that made it.
        let credential = credential.downcast::<S::Credential>().map_err(|_| {
            Error::Usage("a credential reached a strategy that did not prepare it".to_owned())
        })?;
        AuthStrategy::authenticate(self, session, *credential).await
    }

    fn sends_credentials(&self) -> bool {
        AuthStrategy::sends_credentials(self)
    }

    fn required_sender(&self) -> Option<&str> {
        AuthStrategy::required_sender(self)
    }

    fn token_source(&self) -> Option<&dyn TokenSource> {
        AuthStrategy::token_source(self)
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        AuthStrategy::describe(self)
    }

    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Builds a strategy from the settings; errors name the missing or bad keys.
pub type BuildFn = fn(&Settings) -> Result<SharedStrategy>;

/// Which file of the vendor's a key belongs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFile {
    /// `is.properties`.
    Is,
    /// `security.properties`.
    Security,
}

/// A property key a strategy reads, as its descriptor declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// The key.
    pub name: &'static str,
    /// A secret: encrypted by `mailgate encrypt`, never shown, decrypted at load.
    pub secret: bool,
    /// The file it belongs in (for "wrong file" warnings).
    pub file: KeyFile,
    /// Longest value accepted, in bytes.
    pub max_len: usize,
    /// A URL: shown as `scheme://host/...` only (the path may name a tenant).
    pub url: bool,
    /// Spellings operators get wrong that no edit distance catches; loading
    /// warns "did you mean" for them.
    pub misspellings: &'static [&'static str],
}

impl KeySpec {
    /// A key of `is.properties` whose value may be shown.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            secret: false,
            file: KeyFile::Is,
            max_len: 998,
            url: false,
            misspellings: &[],
        }
    }

    /// A secret key.
    pub const fn secret(name: &'static str) -> Self {
        Self {
            secret: true,
            ..Self::new(name)
        }
    }

    /// The key belongs in `security.properties`.
    pub const fn in_security_file(self) -> Self {
        Self {
            file: KeyFile::Security,
            ..self
        }
    }

    /// Values up to `max_len` bytes (default 998).
    pub const fn max_len(self, max_len: usize) -> Self {
        Self { max_len, ..self }
    }

    /// A URL, shown as `scheme://host/...` only.
    pub const fn url(self) -> Self {
        Self { url: true, ..self }
    }

    /// Spellings to answer with "did you mean" this key.
    pub const fn misspelled_as(self, misspellings: &'static [&'static str]) -> Self {
        Self {
            misspellings,
            ..self
        }
    }
}

/// A strategy's registration: its name, the vendor mode it provides, the
/// keys it reads and how to build it. Only constant data; a strategy crate
/// exports one as a `static` and the facade's
/// `mailgate::default_registry()` lists the built-in ones.
///
/// ```
/// # use mailgate_core::{Result, Settings, SharedStrategy, KeySpec, StrategyDescriptor};
/// # fn build(_: &Settings) -> Result<SharedStrategy> { unimplemented!() }
/// pub static DESCRIPTOR: StrategyDescriptor =
///     StrategyDescriptor::new("vault", build, module_path!())
///         .keys(&[KeySpec::new("vault.url"), KeySpec::secret("vault.token")]);
/// ```
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct StrategyDescriptor {
    /// The name `mailgate.smtp.auth.strategy` picks it by.
    pub name: &'static str,
    /// The vendor mode it provides, if any: the precedence table picks it
    /// for that mode.
    pub provides: Option<VendorMode>,
    /// Property keys the strategy reads (for "did you mean" warnings, env
    /// overrides, encryption and redaction).
    pub keys: &'static [KeySpec],
    /// Builds the strategy.
    pub build: BuildFn,
    /// `module_path!()` of the registering crate, to name it in errors.
    pub module_path: &'static str,
}

impl StrategyDescriptor {
    /// A descriptor with no keys that provides no vendor mode.
    pub const fn new(name: &'static str, build: BuildFn, module_path: &'static str) -> Self {
        Self {
            name,
            provides: None,
            keys: &[],
            build,
            module_path,
        }
    }

    /// The keys the strategy reads.
    pub const fn keys(self, keys: &'static [KeySpec]) -> Self {
        Self { keys, ..self }
    }

    /// The vendor mode the strategy provides.
    pub const fn provides(self, mode: VendorMode) -> Self {
        Self {
            provides: Some(mode),
            ..self
        }
    }
}

impl fmt::Debug for StrategyDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrategyDescriptor")
            .field("name", &self.name)
            .field("provides", &self.provides)
            .field("module_path", &self.module_path)
            .finish_non_exhaustive()
    }
}

/// A descriptor submitted with `inventory::submit!` by a third-party crate
/// that wants to be found without being listed (opt-in; see
/// [`Registry::with_inventory`](crate::Registry::with_inventory)).
pub struct Submitted(pub &'static StrategyDescriptor);

inventory::collect!(Submitted);

/// An open SMTP connection as a strategy sees it, during the AUTH stage
/// (one deadline for the whole exchange). In unit tests it comes from a
/// [`ScriptedServer`], with no network.
pub struct SmtpSession<'a> {
    wire: Wire<'a>,
}

enum Wire<'a> {
    Live {
        conn: &'a mut Connection,
        deadline: Instant,
    },
    Scripted(&'a mut ScriptedServer),
}

impl<'a> SmtpSession<'a> {
    pub(crate) fn new(conn: &'a mut Connection) -> Self {
        let deadline = conn.peer().deadline();
        Self {
            wire: Wire::Live { conn, deadline },
        }
    }

    /// `host:port` of the server, for error messages.
    pub fn server(&self) -> &str {
        match &self.wire {
            Wire::Live { conn, .. } => &conn.peer().address,
            Wire::Scripted(s) => &s.address,
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_encrypted(&self) -> bool {
        match &self.wire {
            Wire::Live { conn, .. } => conn.is_encrypted(),
            Wire::Scripted(s) => s.encrypted,
        }
    }

    /// Whether the server's EHLO reply lists `mechanism` (e.g. `PLAIN`, `OAUTHBEARER`).
    pub async fn offers_auth(&mut self, mechanism: &str) -> Result<bool> {
        Ok(match &self.wire {
            Wire::Live { conn, .. } => conn.caps().offers_auth(mechanism),
            Wire::Scripted(s) => s
                .mechanisms
                .iter()
                .any(|m| m.eq_ignore_ascii_case(mechanism)),
        })
    }

    /// The mechanisms the server offers, as it spelled them.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        match &self.wire {
            Wire::Live { conn, .. } => conn.caps().auth_mechanisms().to_vec(),
            Wire::Scripted(s) => s.mechanisms.clone(),
        }
    }

    /// Masks `secret` (and its base64 and URL-encoded forms) in everything
    /// shown from this server from now on: errors, logs, stdout. Strategies
    /// call it with each password or token before sending it.
    pub fn protect(&mut self, secret: &str) {
        match &mut self.wire {
            Wire::Live { conn, .. } => conn.peer().protect(secret),
            Wire::Scripted(s) => s.redactor.protect(secret),
        }
    }

    /// Server text made fit to show: every protected secret masked, control
    /// characters escaped, length bounded.
    pub fn clean(&self, text: &str) -> String {
        match &self.wire {
            Wire::Live { conn, .. } => conn.peer().clean(text),
            Wire::Scripted(s) => s.redactor.clean(text),
        }
    }

    /// Sends one line of the SASL exchange and reads the reply, within the
    /// AUTH stage's deadline.
    ///
    /// `shown` is what the log says was sent: pass the command with the
    /// payload replaced (e.g. `AUTH PLAIN <redacted>`); every word of `line`
    /// that `shown` leaves out is masked in later output too. A 4xx/5xx reply
    /// comes back as `Ok(reply)` so the strategy can interpret it.
    pub async fn auth_command(&mut self, line: &str, shown: &str) -> Result<Reply> {
        if line.contains(['\r', '\n']) {
            // A line break would let the payload smuggle a second command.
            return Err(Error::Protocol {
                server: self.server().to_owned(),
                stage: Stage::Auth,
                reason: format!("refusing to send an AUTH line with a line break ({shown})"),
                source: None,
            });
        }
        if line != shown {
            let shown_words: Vec<&str> = shown.split_whitespace().collect();
            for word in line.split_whitespace() {
                if !shown_words.contains(&word) {
                    self.protect(word);
                }
            }
        }
        match &mut self.wire {
            Wire::Live { conn, deadline } => {
                conn.command_shown(line, shown, Stage::Auth, *deadline)
                    .await
            }
            Wire::Scripted(s) => s.answer(line, shown),
        }
    }

    /// A whole `AUTH PLAIN` exchange for `user` and `password` (protected
    /// first, sent redacted), ended by [`Self::finish_auth`] without a retry.
    pub async fn auth_plain(
        &mut self,
        strategy: &str,
        user: &str,
        password: &SecretString,
    ) -> Result<()> {
        self.protect(password.expose_secret());
        let payload = crate::sasl::plain(user, password).map_err(|e| Error::Protocol {
            server: self.server().to_owned(),
            stage: Stage::Auth,
            reason: format!("{strategy}: {e}"),
            source: None,
        })?;
        let line = SecretString::from(format!("AUTH PLAIN {}", payload.expose_secret()));
        let reply = self
            .auth_command(line.expose_secret(), "AUTH PLAIN <redacted>")
            .await?;
        self.finish_auth(strategy, &reply, false).await
    }

    /// Ends an AUTH exchange from its final reply, the same way for every
    /// strategy: 235 is success; 530, 534, 535 and 538 are a refusal
    /// ([`Error::AuthRefused`], exit 77) carrying `retry_on_new_connection`;
    /// a 334 (the server wants more) is cancelled with `*` and reported as a
    /// protocol failure; anything else is an [`Error::Smtp`] at the AUTH stage.
    pub async fn finish_auth(
        &mut self,
        strategy: &str,
        reply: &Reply,
        retry_on_new_connection: bool,
    ) -> Result<()> {
        match reply.code {
            235 => Ok(()),
            530 | 534 | 535 | 538 => Err(Error::AuthRefused {
                strategy: strategy.to_owned(),
                server: self.server().to_owned(),
                reply: self.clean(&reply.to_string()),
                retry_on_new_connection,
            }),
            334 => {
                let cancel = self.auth_command("*", "*").await?;
                Err(Error::Protocol {
                    server: self.server().to_owned(),
                    stage: Stage::Auth,
                    reason: format!(
                        "the server asked for more ({}) after the {strategy} exchange; cancelled ({})",
                        self.clean(&reply.to_string()),
                        self.clean(&cancel.to_string())
                    ),
                    source: None,
                })
            }
            _ => Err(match &self.wire {
                Wire::Live { conn, .. } => conn.peer().smtp_error(Stage::Auth, reply),
                Wire::Scripted(s) => Error::Smtp {
                    server: s.address.clone(),
                    stage: Stage::Auth,
                    code: reply.code,
                    reply: s.redactor.clean(&reply.text()),
                },
            }),
        }
    }
}

/// A stand-in SMTP server for unit tests of a strategy: it offers the
/// mechanisms it is told, answers each AUTH line with the next scripted
/// reply, and records what the strategy sent. No network, no runtime
/// beyond the test's own.
///
/// ```
/// # use mailgate_core::ScriptedServer;
/// let mut server = ScriptedServer::new()
///     .offering(&["PLAIN"])
///     .reply("235 2.7.0 Authentication successful");
/// let session = server.session();
/// // strategy.authenticate(&mut session, credential).await?;
/// # drop(session);
/// assert_eq!(server.unused_replies(), 1);
/// ```
pub struct ScriptedServer {
    address: String,
    encrypted: bool,
    mechanisms: Vec<String>,
    replies: std::collections::VecDeque<Reply>,
    sent: Vec<String>,
    shown: Vec<String>,
    redactor: crate::smtp::Redactor,
}

impl fmt::Debug for ScriptedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // What the strategy sent may hold secrets: show only what the log shows.
        f.debug_struct("ScriptedServer")
            .field("address", &self.address)
            .field("mechanisms", &self.mechanisms)
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Default for ScriptedServer {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedServer {
    /// An encrypted connection to `scripted.test:587` that offers no AUTH
    /// mechanism and has no reply scripted.
    pub fn new() -> Self {
        Self {
            address: "scripted.test:587".to_owned(),
            encrypted: true,
            mechanisms: Vec::new(),
            replies: Default::default(),
            sent: Vec::new(),
            shown: Vec::new(),
            redactor: crate::smtp::Redactor::new(),
        }
    }

    /// The mechanisms the EHLO reply lists.
    pub fn offering(mut self, mechanisms: &[&str]) -> Self {
        self.mechanisms = mechanisms.iter().map(|m| (*m).to_owned()).collect();
        self
    }

    /// Whether the connection counts as encrypted (default true).
    pub fn encrypted(mut self, encrypted: bool) -> Self {
        self.encrypted = encrypted;
        self
    }

    /// Appends the reply to the next line the strategy sends:
    /// `"235 2.7.0 ok"`, `"334 "`; lines of a multi-line reply are
    /// separated by `\n`. A malformed code reads as 500.
    pub fn reply(mut self, reply: &str) -> Self {
        let code = reply
            .get(..3)
            .and_then(|c| c.parse().ok())
            .filter(|c| (200..600).contains(c))
            .unwrap_or(500);
        let lines = reply
            .get(3..)
            .unwrap_or("")
            .split('\n')
            .map(|l| l.trim_start_matches([' ', '-']).to_owned())
            .collect();
        self.replies.push_back(Reply { code, lines });
        self
    }

    /// A session on this server, for [`AuthStrategy::authenticate`].
    pub fn session(&mut self) -> SmtpSession<'_> {
        SmtpSession {
            wire: Wire::Scripted(self),
        }
    }

    /// The lines the strategy sent, as sent (payloads included).
    pub fn sent(&self) -> &[String] {
        &self.sent
    }

    /// The lines as the log shows them (payloads redacted).
    pub fn shown(&self) -> &[String] {
        &self.shown
    }

    /// Scripted replies no line has used.
    pub fn unused_replies(&self) -> usize {
        self.replies.len()
    }

    /// `text` as this server's errors would show it: every secret the
    /// strategy protected masked.
    pub fn clean(&self, text: &str) -> String {
        self.redactor.clean(text)
    }

    fn answer(&mut self, line: &str, shown: &str) -> Result<Reply> {
        self.sent.push(line.to_owned());
        self.shown.push(shown.to_owned());
        self.replies.pop_front().ok_or_else(|| Error::Protocol {
            server: self.address.clone(),
            stage: Stage::Auth,
            reason: format!("the scripted server has no reply left for `{shown}`"),
            source: None,
        })
    }
}

impl fmt::Debug for dyn ErasedStrategy + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.debug(f)
    }
}
