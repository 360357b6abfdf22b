//! The authentication plug-in point: [`AuthStrategy`], its registration
//! ([`StrategyDescriptor`]) and the connection it works on ([`SmtpSession`]).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::error::{Error, Result};
use crate::resolver::VendorMode;
use crate::settings::Settings;

// Where they lived before: the session is the SMTP client's, the scripted
// server is test support, the key specs are the settings'.
pub use crate::settings::{KeyFile, KeySpec};
pub use crate::smtp::SmtpSession;
pub use crate::testing::ScriptedServer;

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

impl fmt::Debug for dyn ErasedStrategy + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.debug(f)
    }
}
