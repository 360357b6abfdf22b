//! [`MailerBuilder`]: where the settings, the strategies, the transport and
//! the outbox of a [`Mailer`] come from.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::{Inner, Mailer};
use crate::error::{Error, Origin, Result};
use crate::outbox::{OutboxStore, Worker};
use crate::properties::{ConfigFiles, Properties};
use crate::registry::Registry;
use crate::resolver::{AuthFlags, VendorMode};
use crate::settings::{LoadOptions, Settings, keys};
use crate::smtp::{PoolConfig, RecipientPolicy, SmtpTransport};
use crate::transport::MailTransport;

/// Builds a [`Mailer`]: the strategies to choose from, where the properties
/// files are, and overrides. (The `mailgate` facade's `Mailer::builder()`
/// starts with the built-in strategies registered.)
///
/// ```no_run
/// # async fn run() -> mailgate_core::Result<()> {
/// # static MY_STRATEGY: mailgate_core::StrategyDescriptor = mailgate_core::StrategyDescriptor::new(
/// #     "mine", |_| unimplemented!(), module_path!());
/// let mailer = mailgate_core::Mailer::builder()
///     .registry(mailgate_core::Registry::new().with(&MY_STRATEGY)?)
///     .config_dir("/opt/rvs/server/config/properties")
///     .property("mailgate.smtp.timeoutSeconds", "10")
///     .build()?;
/// mailer
///     .sendmail("alm@example.com", "dev@example.com", "Build 42", "passed")
///     .await?;
/// # Ok(()) }
/// ```
///
/// `M` is what [`build`](Self::build) returns: this [`Mailer`], or a type
/// made from one ([`FromMailer`]), such as the `mailgate` facade's mailers.
#[must_use]
pub struct MailerBuilder<M = Mailer> {
    registry: Option<std::result::Result<Registry, crate::error::ConfigError>>,
    files: ConfigFiles,
    overrides: Properties,
    env: bool,
    /// A typed setting that cannot be written as a property (a CA file
    /// whose name holds a comma): reported by [`MailerBuilder::build`], as
    /// a builder method does not fail.
    deferred: Option<crate::error::ConfigError>,
    key_file: Option<PathBuf>,
    max_connections: Option<usize>,
    pool: PoolConfig,
    transport: Option<Arc<dyn MailTransport>>,
    outbox: Option<OutboxOpener>,
    policy: RecipientPolicy,
    background: bool,
    output: std::marker::PhantomData<fn() -> M>,
}

/// A type a [`MailerBuilder`] can build: a [`Mailer`] or a wrapper of one.
pub trait FromMailer: Sized {
    /// Wraps `mailer`.
    fn from_mailer(mailer: Mailer) -> Result<Self>;
}

impl FromMailer for Mailer {
    fn from_mailer(mailer: Mailer) -> Result<Self> {
        Ok(mailer)
    }
}

/// What a strategy crate's typed builder method (`basic(user, password)`,
/// `oauth_client_credentials(..)`) needs of a builder: properties, the
/// vendor's mode and the sender. Implemented by [`MailerBuilder`] and by
/// the `mailgate` facade's builder, so one extension trait serves both.
pub trait SettingsBuilder: Sized {
    /// Sets a property; see [`MailerBuilder::property`].
    fn property(self, key: impl Into<String>, value: impl Into<String>) -> Self;
    /// Sets a secret property; see [`MailerBuilder::secret_property`].
    fn secret_property(self, key: impl Into<String>, value: impl Into<SecretString>) -> Self;
    /// Sets the vendor's flags for `mode`; see [`MailerBuilder::vendor_mode`].
    fn vendor_mode(self, mode: VendorMode) -> Self;
    /// Sets the sender address; see [`MailerBuilder::sender`].
    fn sender(self, address: impl Into<String>) -> Self;
}

impl<M: FromMailer> SettingsBuilder for MailerBuilder<M> {
    fn property(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        MailerBuilder::property(self, key, value)
    }

    fn secret_property(self, key: impl Into<String>, value: impl Into<SecretString>) -> Self {
        MailerBuilder::secret_property(self, key, value)
    }

    fn vendor_mode(self, mode: VendorMode) -> Self {
        MailerBuilder::vendor_mode(self, mode)
    }

    fn sender(self, address: impl Into<String>) -> Self {
        MailerBuilder::sender(self, address)
    }
}

/// Opens the outbox a [`Mailer`] is built with, from its settings
/// ([`MailerBuilder::outbox`]).
pub type OutboxOpener = Box<dyn FnOnce(&Settings) -> Result<Arc<dyn OutboxStore>> + Send>;

impl<M> std::fmt::Debug for MailerBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailerBuilder")
            .field("registry", &self.registry)
            .field("files", &self.files)
            .field("overrides", &self.overrides)
            .field("env", &self.env)
            .field("deferred", &self.deferred)
            .field("key_file", &self.key_file)
            .field("max_connections", &self.max_connections)
            .field("pool", &self.pool)
            .field("transport", &self.transport)
            .field("outbox", &self.outbox.is_some())
            .finish()
    }
}

impl<M> Default for MailerBuilder<M> {
    fn default() -> Self {
        Self {
            registry: None,
            files: ConfigFiles::default(),
            overrides: Properties::default(),
            // A library reads its settings from code and files only: a
            // stray `MKSIS_*` variable in the host's environment must not
            // redirect its mail. The CLI opts in.
            env: false,
            deferred: None,
            key_file: None,
            max_connections: None,
            pool: PoolConfig::default(),
            transport: None,
            outbox: None,
            policy: RecipientPolicy::PerRecipient,
            background: false,
            output: std::marker::PhantomData,
        }
    }
}

impl<M: FromMailer> MailerBuilder<M> {
    /// The strategies to choose from. Without one, only those submitted
    /// through `inventory` are known ([`Registry::collect`]); the `mailgate`
    /// facade's mailers start from `mailgate::default_registry()`.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(Ok(registry));
        self
    }

    /// [`Self::registry`] for a registry that may have failed to assemble
    /// (two strategies under one name): [`Self::build`] reports the error.
    pub fn try_registry(
        mut self,
        registry: std::result::Result<Registry, crate::error::ConfigError>,
    ) -> Self {
        self.registry = Some(registry);
        self
    }

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

    /// Sets a secret property (a password, a client secret): kept like
    /// [`Self::property`]'s values, zeroed when dropped and never shown by
    /// `Debug` (the builder's shows keys and origins only). For strategy
    /// crates' typed methods, such as `basic(user, password)`.
    pub fn secret_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<SecretString>,
    ) -> Self {
        let value: SecretString = value.into();
        self.overrides.set(
            key.into(),
            value.expose_secret().to_owned(),
            Origin::Builder,
        );
        self
    }

    /// The SMTP server: `mksis.logging.email.server.hostname` and
    /// `mksis.logging.email.server.port`. Without TLS unless
    /// [`starttls`](Self::starttls) or [`implicit_tls`](Self::implicit_tls)
    /// says so, as with the properties.
    ///
    /// ```no_run
    /// # async fn run() -> mailgate_core::Result<()> {
    /// # static OPEN: mailgate_core::StrategyDescriptor = mailgate_core::StrategyDescriptor::new(
    /// #     "open", |_| unimplemented!(), module_path!()).provides(mailgate_core::VendorMode::OpenRelay);
    /// let mailer = mailgate_core::Mailer::builder()
    ///     .registry(mailgate_core::Registry::new().with(&OPEN)?)
    ///     .server("smtp.example.com", 587)
    ///     .starttls()
    ///     .sender("alm@example.com")
    ///     .open()
    ///     .timeout(std::time::Duration::from_secs(10))
    ///     .build()?;
    /// mailer.sendmail("alm@example.com", "dev@example.com", "Build 42", "passed").await?;
    /// # Ok(()) }
    /// ```
    pub fn server(self, host: impl Into<String>, port: u16) -> Self {
        self.property(keys::SERVER_HOSTNAME, host)
            .property(keys::SERVER_PORT, port.to_string())
    }

    /// Plain connect, then STARTTLS, required (never a plaintext fallback):
    /// `mksis.smtp.ssl.enabled=true`, `mailgate.smtp.ssl.mode=starttls`.
    /// Port 587's usual mode.
    pub fn starttls(self) -> Self {
        self.property(keys::SSL_ENABLED, "true")
            .property(keys::SSL_MODE, "starttls")
    }

    /// TLS from the first byte (SMTPS): `mksis.smtp.ssl.enabled=true`,
    /// `mailgate.smtp.ssl.mode=implicit`. Port 465's usual mode.
    pub fn implicit_tls(self) -> Self {
        self.property(keys::SSL_ENABLED, "true")
            .property(keys::SSL_MODE, "implicit")
    }

    /// No TLS (`mksis.smtp.ssl.enabled=false`): for a relay on loopback or
    /// a trusted network. Credentials are still refused over such a
    /// connection unless [`allow_plaintext_auth`](Self::allow_plaintext_auth).
    pub fn no_tls(self) -> Self {
        // A blank mode counts as unset: a mode from the files is not
        // warned about as "ignored" when code asked for no TLS.
        self.property(keys::SSL_ENABLED, "false")
            .property(keys::SSL_MODE, "")
    }

    /// Whether credentials may cross an unencrypted connection
    /// (`mailgate.smtp.allowPlaintextAuth`, default false).
    pub fn allow_plaintext_auth(self, allowed: bool) -> Self {
        self.property(keys::ALLOW_PLAINTEXT_AUTH, allowed.to_string())
    }

    /// Trusts the CA certificates (PEM) in `path` besides the system's, for
    /// a server whose certificate a private CA signed
    /// (`mailgate.smtp.ssl.caFile`; a relative path is relative to the
    /// config folder). Each call adds a file. A file that cannot be read
    /// or holds no certificate fails [`build`](Self::build).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        // The property is a comma-separated list of UTF-8 names: a name it
        // cannot hold is reported at build, not silently mangled.
        let name = match path.to_str() {
            Some(name) if !name.contains(',') && !name.trim().is_empty() => name.to_owned(),
            _ => {
                self.deferred.get_or_insert(crate::error::ConfigError::CaFile {
                    path,
                    origin: Origin::Builder,
                    reason: "its name cannot go into `mailgate.smtp.ssl.caFile` (empty, not UTF-8, or holding a comma, which separates files there); use a path without one".into(),
                });
                return self;
            }
        };
        let list = match self.overrides.get(keys::SSL_CA_FILE) {
            Some(set) if !set.value.trim().is_empty() => format!("{},{name}", set.value.as_str()),
            _ => name,
        };
        self.property(keys::SSL_CA_FILE, list)
    }

    /// The sender address (`mksis.logging.email.from`): the default From
    /// and envelope sender of [`Mailer::send_message`] and the other
    /// composing calls. `alm@example.com` or `ALM <alm@example.com>`; a
    /// malformed address fails [`build`](Self::build). With basic AUTH it
    /// is also the user name (a strategy crate's `basic(user, password)`
    /// sets it).
    pub fn sender(self, address: impl Into<String>) -> Self {
        self.property(keys::EMAIL_FROM, address)
    }

    /// Limit for connect, TLS and each reply (`mailgate.smtp.timeoutSeconds`,
    /// default 30 s). Above 0 and at most an hour, else
    /// [`build`](Self::build) fails naming the key.
    pub fn timeout(self, timeout: std::time::Duration) -> Self {
        self.property(keys::TIMEOUT_SECONDS, timeout.as_secs_f64().to_string())
    }

    /// The name sent in EHLO (`mailgate.smtp.heloName`, default this host's name).
    pub fn helo_name(self, name: impl Into<String>) -> Self {
        self.property(keys::HELO_NAME, name)
    }

    /// The vendor's open mail relay: no AUTH (both authentication flags
    /// `false`). The strategy that provides it must be registered (the
    /// `mailgate` facade's feature `open`).
    pub fn open(self) -> Self {
        self.vendor_mode(VendorMode::OpenRelay)
    }

    /// Sets the vendor's flags for `mode` (`mksis.smtp.oauth.authentication`,
    /// `mksis.smtp.authentication`) and clears a
    /// `mailgate.smtp.auth.strategy` the files may set, so that the
    /// precedence table chooses, as it would for files holding these flags.
    /// Strategy crates' typed methods (`basic(..)`,
    /// `oauth_client_credentials(..)`) call it.
    pub fn vendor_mode(self, mode: VendorMode) -> Self {
        let flags = AuthFlags::for_mode(mode);
        self.property(keys::OAUTH_AUTHENTICATION, flags.oauth.to_string())
            .property(keys::BASIC_AUTHENTICATION, flags.basic.to_string())
            // Blank counts as unset; the builder wins over the files.
            .property(keys::AUTH_STRATEGY, "")
    }

    /// Chooses a registered strategy by name (`mailgate.smtp.auth.strategy`),
    /// over the flags: how a third-party strategy is chosen.
    pub fn strategy(self, name: impl Into<String>) -> Self {
        self.property(keys::AUTH_STRATEGY, name)
    }

    /// Whether environment variables (`MKSIS_*`, `MAILGATE_*`) override the
    /// files. Off by default: a library's mail goes where its code and
    /// files say, whatever the host's environment holds. The `mailgate`
    /// command line turns it on. With it on, a variable wins over the
    /// files but not over the builder's own settings; see
    /// [`crate::properties::env_var_name`] for the mapping
    /// (`mksis.logging.email.server.port` is
    /// `MKSIS_LOGGING_EMAIL_SERVER_PORT`).
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

    /// The connection pool's time limits: how long an idle connection is
    /// reused, when it is probed first ([`PoolConfig`]).
    pub fn pool(mut self, config: PoolConfig) -> Self {
        self.pool = config;
        self
    }

    /// Delivers through `transport` instead of the SMTP server the settings
    /// name: every send, and the outbox worker's deliveries. The settings
    /// and the strategy are loaded and checked as usual; the transport
    /// brings its own connection (see [`crate::transport`]).
    pub fn transport(mut self, transport: Arc<dyn MailTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// With `true`, a send whose server refuses any recipient goes to no one
    /// and fails with [`Error::Recipients`] (the behaviour before
    /// per-recipient delivery). By default the message goes to the accepted
    /// recipients and [`Delivery::refused`](crate::Delivery::refused) lists the others. The outbox
    /// worker always delivers per recipient.
    pub fn all_or_nothing(mut self, enabled: bool) -> Self {
        self.policy = if enabled {
            RecipientPolicy::AllOrNothing
        } else {
            RecipientPolicy::PerRecipient
        };
        self
    }

    /// With `true` (and an [`outbox`](Self::outbox)), [`build`](Self::build)
    /// starts a [`Worker`] as a task on the current tokio runtime: what
    /// [`Mailer::enqueue`] stores is delivered, retried and reported
    /// without a separate `mailgate deliver`. [`Mailer::close`] stops it
    /// after the deliveries in hand. `build` then needs a tokio runtime.
    pub fn deliver_in_background(mut self, enabled: bool) -> Self {
        self.background = enabled;
        self
    }

    /// Keeps messages in the outbox `open` returns from the settings,
    /// instead of the one the registry's stores open: a store of the
    /// program's own, or one wrapped around a registered store
    /// ([`Registry::open_store`]). Without it, [`build`](Self::build) opens
    /// the store of `mailgate.outbox.url` when the registry lists any
    /// ([`Registry::with_store`]); [`Mailer::enqueue`] and the [`Worker`]
    /// use it.
    pub fn outbox(
        mut self,
        open: impl FnOnce(&Settings) -> Result<Arc<dyn OutboxStore>> + Send + 'static,
    ) -> Self {
        self.outbox = Some(Box::new(open));
        self
    }

    /// Keeps messages in `store` ([`Self::outbox`] for a store already open).
    pub fn outbox_store(self, store: Arc<dyn OutboxStore>) -> Self {
        self.outbox(move |_| Ok(store))
    }

    /// Reads and validates the settings and builds the chosen strategy;
    /// with [`outbox`](Self::outbox), or a registry listing outbox stores,
    /// opens the outbox (a `mailgate.outbox.url` no registered store takes
    /// is an error naming the key).
    pub fn build(self) -> Result<M> {
        if let Some(error) = self.deferred {
            return Err(error.into());
        }
        let registry = match self.registry {
            Some(registry) => registry?,
            None => Registry::collect()?,
        };
        let settings = Settings::load(LoadOptions {
            files: self.files,
            overrides: self.overrides,
            env: self.env,
            strategy_keys: registry.keys().copied().collect(),
            key_file: self.key_file,
        })?;
        let (resolution, strategy) = registry.build(settings.flags(), &settings)?;
        tracing::debug!(
            "strategy `{}` chosen: {}",
            resolution.strategy,
            resolution.rule
        );
        let transport: Arc<dyn MailTransport> = match self.transport {
            Some(transport) => transport,
            None => Arc::new(SmtpTransport::new(
                settings.server().clone(),
                strategy.clone(),
                resolution.strategy.clone(),
                self.max_connections
                    .unwrap_or(settings.server().max_connections),
                self.pool,
            )?),
        };
        // A program that registers stores wants an outbox (opened lazily:
        // nothing is created before it is used).
        let outbox = match self.outbox {
            Some(open) => Some(open(&settings)?),
            None if registry.has_stores() => Some(registry.open_store(&settings)?),
            None => None,
        };
        let background = self.background && outbox.is_some();
        let runtime = if background {
            Some(tokio::runtime::Handle::try_current().map_err(|_| {
                Error::Usage(
                    "deliver_in_background needs a tokio runtime: build the Mailer inside one (or run `mailgate deliver`)".into(),
                )
            })?)
        } else {
            None
        };
        let mailer = Mailer {
            inner: Arc::new(Inner {
                settings,
                resolution,
                strategy,
                transport,
                outbox,
                outbox_wake: Arc::default(),
                policy: self.policy,
                background: std::sync::Mutex::new(None),
            }),
        };
        if let Some(runtime) = runtime {
            let worker = Worker::new(&mailer)?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = runtime.spawn(async move {
                if let Err(e) = worker
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                {
                    tracing::error!("outbox worker stopped: {e}");
                }
            });
            *mailer
                .inner
                .background
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some((stop, task));
        }
        M::from_mailer(mailer)
    }
}
