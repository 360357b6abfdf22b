//! The strategies and outbox stores a program can use: listed explicitly
//! (the `mailgate` facade's `default_registry()` lists the compiled-in
//! ones), plus, opt-in, the strategies third-party crates submit through
//! `inventory`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{ConfigError, Origin, Result};
use crate::outbox::{OutboxDescriptor, OutboxStore, OutboxUrl};
use crate::resolver::{AuthFlags, Choice, Resolution, VendorMode, precedence};
use crate::settings::Settings;
use crate::strategy::{KeySpec, SharedStrategy, StrategyDescriptor, Submitted};

/// The registered strategies and outbox stores, by name, and how to get
/// the ones that are not.
///
/// ```
/// # use mailgate_core::{Registry, Result, Settings, SharedStrategy, StrategyDescriptor};
/// # fn build(_: &Settings) -> Result<SharedStrategy> { unimplemented!() }
/// static VAULT: StrategyDescriptor = StrategyDescriptor::new("vault", build, module_path!());
/// let registry = Registry::new().with(&VAULT).unwrap();
/// assert_eq!(registry.names(), ["vault"]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Registry {
    by_name: BTreeMap<&'static str, &'static StrategyDescriptor>,
    /// Strategies known to exist but left out of this build, with what adds them.
    absent: Vec<Absent>,
    /// The outbox stores, by name.
    stores: BTreeMap<&'static str, &'static OutboxDescriptor>,
    /// Stores known to exist but left out of this build, with what adds them.
    absent_stores: Vec<AbsentStore>,
    /// The outbox URL when `mailgate.outbox.url` is not set.
    default_outbox: Option<&'static str>,
    /// Keys of the program's other parts (the command line's relay and
    /// sendmail), declared like a strategy's.
    program_keys: Vec<&'static [KeySpec]>,
}

#[derive(Clone, Debug)]
struct AbsentStore {
    name: &'static str,
    schemes: &'static [&'static str],
    how: &'static str,
}

#[derive(Clone, Debug)]
struct Absent {
    name: &'static str,
    provides: Option<VendorMode>,
    how: &'static str,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `descriptor`; a second strategy with its name, or a second one
    /// providing its vendor mode, is an error naming both crates.
    pub fn with(mut self, descriptor: &'static StrategyDescriptor) -> Result<Self, ConfigError> {
        let clash = self.by_name.get(descriptor.name).copied().or_else(|| {
            descriptor.provides.and_then(|mode| {
                self.by_name
                    .values()
                    .copied()
                    .find(|d| d.provides == Some(mode))
            })
        });
        if let Some(first) = clash {
            if std::ptr::eq(first, descriptor) {
                return Ok(self);
            }
            // Name both in a stable order, whatever the link order was.
            let (a, b) = if first.module_path <= descriptor.module_path {
                (first, descriptor)
            } else {
                (descriptor, first)
            };
            let name = if first.name == descriptor.name {
                format!("as `{}`", descriptor.name)
            } else {
                format!(
                    "for the {} mode (`{}` and `{}`)",
                    descriptor.provides.map(|m| m.id()).unwrap_or_default(),
                    first.name,
                    descriptor.name
                )
            };
            return Err(ConfigError::DuplicateStrategy {
                name,
                first: a.module_path.to_owned(),
                second: b.module_path.to_owned(),
            });
        }
        self.by_name.insert(descriptor.name, descriptor);
        Ok(self)
    }

    /// Records a strategy this build left out, so that choosing it says how
    /// to add it (`how`: e.g. "the `basic` feature of the `mailgate` crate").
    pub fn absent(
        mut self,
        name: &'static str,
        provides: Option<VendorMode>,
        how: &'static str,
    ) -> Self {
        self.absent.push(Absent {
            name,
            provides,
            how,
        });
        self
    }

    /// Adds every descriptor submitted with `inventory::submit!` by a crate
    /// linked into this binary (opt-in for third-party strategies; a crate
    /// is linked only if the binary names it, e.g. `use my_strategy as _;`).
    pub fn with_inventory(self) -> Result<Self, ConfigError> {
        let mut submitted: Vec<&'static StrategyDescriptor> = inventory::iter::<Submitted>
            .into_iter()
            .map(|s| s.0)
            .collect();
        // Link order is not stable; errors must be.
        submitted.sort_by_key(|d| (d.name, d.module_path));
        submitted.into_iter().try_fold(self, Self::with)
    }

    /// Only what third-party crates submitted through `inventory`.
    pub fn collect() -> Result<Self, ConfigError> {
        Self::new().with_inventory()
    }

    /// A registry of the given descriptors; two with one name are an error naming both.
    pub fn from_descriptors(
        descriptors: impl IntoIterator<Item = &'static StrategyDescriptor>,
    ) -> Result<Self, ConfigError> {
        descriptors.into_iter().try_fold(Self::new(), Self::with)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }

    /// The descriptor registered as `name`.
    pub fn get(&self, name: &str) -> Option<&'static StrategyDescriptor> {
        self.by_name.get(name).copied()
    }

    /// Every registered descriptor, by name.
    pub fn descriptors(&self) -> impl Iterator<Item = &'static StrategyDescriptor> + '_ {
        self.by_name.values().copied()
    }

    /// Property keys read by the registered strategies.
    pub fn strategy_keys(&self) -> impl Iterator<Item = &'static KeySpec> + '_ {
        self.by_name.values().flat_map(|d| d.keys.iter())
    }

    /// Property keys read by the registered outbox stores.
    pub fn store_keys(&self) -> impl Iterator<Item = &'static KeySpec> + '_ {
        self.stores.values().flat_map(|d| d.keys.iter())
    }

    /// Declares the keys a part of the program reads that is neither a
    /// strategy nor a store (the command line's `relay` and `sendmail`): then
    /// loading keeps their values, warns about near misses of them, and
    /// `encrypt` and `check` know them, as for a strategy's keys.
    pub fn with_keys(mut self, keys: &'static [KeySpec]) -> Self {
        self.program_keys.push(keys);
        self
    }

    /// Property keys read by the registered strategies and stores and
    /// declared with [`Registry::with_keys`]: what loading knows beyond
    /// core's own keys.
    pub fn keys(&self) -> impl Iterator<Item = &'static KeySpec> + '_ {
        self.strategy_keys()
            .chain(self.store_keys())
            .chain(self.program_keys.iter().flat_map(|keys| keys.iter()))
    }

    /// The keys the registered strategies and stores declare secret: what
    /// `mailgate encrypt` encrypts and what is never shown.
    pub fn secret_keys(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> =
            self.keys().filter(|k| k.secret).map(|k| k.name).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Which strategy sends for `flags`: the precedence table's choice,
    /// found among the registered ones, or an error saying how to add it.
    pub fn resolve(
        &self,
        flags: &AuthFlags,
    ) -> Result<(Resolution, &'static StrategyDescriptor), ConfigError> {
        let (choice, rule) = precedence(flags);
        let found = match &choice {
            Choice::Named(name) => self.get(name),
            Choice::Mode(mode) => self.descriptors().find(|d| d.provides == Some(*mode)),
        };
        match found {
            Some(descriptor) => Ok((
                Resolution {
                    strategy: descriptor.name.to_owned(),
                    choice,
                    rule,
                },
                descriptor,
            )),
            None => {
                let absent = self.absent.iter().find(|a| match &choice {
                    Choice::Named(name) => a.name == name,
                    Choice::Mode(mode) => a.provides == Some(*mode),
                });
                Err(ConfigError::UnknownStrategy {
                    name: match (&choice, absent) {
                        (Choice::Named(name), _) => format!("`{name}`"),
                        (_, Some(a)) => format!("`{}`", a.name),
                        (Choice::Mode(mode), None) => format!("for the {mode} mode"),
                    },
                    chosen_by: rule.to_string(),
                    available: self.names().iter().map(|s| (*s).to_owned()).collect(),
                    hint: absent.map(|a| a.how.to_owned()),
                })
            }
        }
    }

    /// Resolves `flags` and builds the chosen strategy from `settings`.
    pub fn build(
        &self,
        flags: &AuthFlags,
        settings: &Settings,
    ) -> crate::Result<(Resolution, SharedStrategy)> {
        let (resolution, descriptor) = self.resolve(flags)?;
        Ok((resolution, (descriptor.build)(settings)?))
    }

    /// Adds the outbox store `descriptor`; a second store with its name, or
    /// one taking one of its URL schemes, is an error naming both crates.
    pub fn with_store(
        mut self,
        descriptor: &'static OutboxDescriptor,
    ) -> Result<Self, ConfigError> {
        let clash = self.stores.values().copied().find_map(|d| {
            if d.name == descriptor.name {
                return Some((d, format!("as `{}`", d.name)));
            }
            let shared = descriptor.schemes.iter().find(|s| d.takes(s))?;
            Some((
                d,
                format!(
                    "for `{shared}:` URLs (`{}` and `{}`)",
                    d.name, descriptor.name
                ),
            ))
        });
        if let Some((first, name)) = clash {
            if std::ptr::eq(first, descriptor) {
                return Ok(self);
            }
            let (a, b) = if first.module_path <= descriptor.module_path {
                (first, descriptor)
            } else {
                (descriptor, first)
            };
            return Err(ConfigError::DuplicateStore {
                name,
                first: a.module_path.to_owned(),
                second: b.module_path.to_owned(),
            });
        }
        self.stores.insert(descriptor.name, descriptor);
        Ok(self)
    }

    /// Records an outbox store this build left out, so that a URL of one of
    /// its `schemes` says how to add it (`how`: e.g. "the cargo feature
    /// `outbox-x` of the `mailgate` crate").
    pub fn absent_store(
        mut self,
        name: &'static str,
        schemes: &'static [&'static str],
        how: &'static str,
    ) -> Self {
        self.absent_stores.push(AbsentStore { name, schemes, how });
        self
    }

    /// The outbox URL used when `mailgate.outbox.url` is not set (a path is
    /// relative to the config folder, as in the key). Without one, a
    /// program with stores needs the key set.
    pub fn default_outbox_url(mut self, url: &'static str) -> Self {
        self.default_outbox = Some(url);
        self
    }

    /// Registered store names, sorted.
    pub fn store_names(&self) -> Vec<&'static str> {
        self.stores.keys().copied().collect()
    }

    /// Every registered store, by name.
    pub fn stores(&self) -> impl Iterator<Item = &'static OutboxDescriptor> + '_ {
        self.stores.values().copied()
    }

    /// Whether any outbox store is registered: then
    /// [`MailerBuilder::build`](crate::MailerBuilder::build) gives the
    /// mailer an outbox.
    pub fn has_stores(&self) -> bool {
        !self.stores.is_empty()
    }

    /// The schemes the registered stores take, as `scheme:`, sorted.
    pub fn store_schemes(&self) -> Vec<String> {
        let mut schemes: Vec<String> = self
            .stores()
            .flat_map(|d| d.schemes.iter().map(|s| format!("{s}:")))
            .collect();
        schemes.sort();
        schemes
    }

    /// The outbox URL of `settings`: `mailgate.outbox.url`, else the
    /// default of [`Self::default_outbox_url`].
    pub fn outbox_url(&self, settings: &Settings) -> Result<OutboxUrl, ConfigError> {
        match (&settings.outbox().url, self.default_outbox) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(default)) => Ok(OutboxUrl::new(default, Origin::Default)),
            (None, None) => Err(ConfigError::NoOutboxUrl {
                available: self.store_schemes(),
            }),
        }
    }

    /// The registered store that takes `url`'s scheme, or an error naming
    /// `mailgate.outbox.url`, the schemes available and how to add the
    /// store (the cargo feature of one left out of the build).
    pub fn store_for(&self, url: &OutboxUrl) -> Result<&'static OutboxDescriptor, ConfigError> {
        let scheme = url.scheme();
        if let Some(found) = scheme
            .as_deref()
            .and_then(|s| self.stores().find(|d| d.takes(s)))
        {
            return Ok(found);
        }
        let absent = scheme.as_deref().and_then(|s| {
            self.absent_stores
                .iter()
                .find(|a| a.schemes.iter().any(|x| x.eq_ignore_ascii_case(s)))
        });
        Err(ConfigError::UnknownOutboxStore(Box::new(
            crate::error::UnknownOutboxStore {
                url: crate::settings::cut_short(&url.shown(), 80),
                origin: url.origin().clone(),
                scheme,
                store: absent.map(|a| a.name.to_owned()),
                available: self.store_schemes(),
                hint: absent.map(|a| a.how.to_owned()),
            },
        )))
    }

    /// Opens the outbox `settings` name ([`Self::outbox_url`]) with the
    /// registered store that takes its scheme.
    pub fn open_store(&self, settings: &Settings) -> crate::Result<Arc<dyn OutboxStore>> {
        let url = self.outbox_url(settings)?;
        let descriptor = self.store_for(&url)?;
        (descriptor.open)(&url, settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::strategy::{AuthStrategy, SmtpSession};

    #[derive(Debug)]
    struct Nothing;

    #[async_trait::async_trait]
    impl AuthStrategy for Nothing {
        type Credential = ();
        async fn prepare(&self) -> crate::Result<()> {
            Ok(())
        }
        async fn authenticate(&self, _: &mut SmtpSession<'_>, _: ()) -> crate::Result<()> {
            Ok(())
        }
    }

    fn build(_: &Settings) -> crate::Result<SharedStrategy> {
        Ok(SharedStrategy::new(Nothing))
    }

    static ONE: StrategyDescriptor = StrategyDescriptor::new("one", build, "crate_a")
        .keys(&[KeySpec::new("x.one.key"), KeySpec::secret("x.one.secret")]);
    static ONE_AGAIN: StrategyDescriptor = StrategyDescriptor::new("one", build, "crate_b");
    static OPEN: StrategyDescriptor =
        StrategyDescriptor::new("open", build, "crate_open").provides(VendorMode::OpenRelay);
    static OTHER_OPEN: StrategyDescriptor =
        StrategyDescriptor::new("free", build, "crate_free").provides(VendorMode::OpenRelay);

    fn flags(oauth: bool, basic: bool) -> AuthFlags {
        AuthFlags {
            oauth,
            basic,
            strategy_override: None,
        }
    }

    #[test]
    fn duplicate_names_are_an_error_naming_both() {
        for order in [[&ONE, &ONE_AGAIN], [&ONE_AGAIN, &ONE]] {
            let err = Registry::from_descriptors(order).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("as `one`"), "{msg}");
            assert!(
                msg.find("crate_a").unwrap() < msg.find("crate_b").unwrap(),
                "stable order: {msg}"
            );
        }
    }

    #[test]
    fn two_providers_of_one_mode_are_an_error() {
        let msg = Registry::from_descriptors([&OPEN, &OTHER_OPEN])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("open-relay mode"), "{msg}");
        assert!(
            msg.contains("crate_free") && msg.contains("crate_open"),
            "{msg}"
        );
    }

    #[test]
    fn registering_the_same_descriptor_twice_is_harmless() {
        let registry = Registry::new().with(&OPEN).unwrap().with(&OPEN).unwrap();
        assert_eq!(registry.names(), ["open"]);
    }

    #[test]
    fn the_precedence_table_finds_the_provider_of_a_mode() {
        let registry = Registry::from_descriptors([&OPEN, &ONE]).unwrap();
        let (resolution, descriptor) = registry.resolve(&flags(false, false)).unwrap();
        assert_eq!(resolution.strategy, "open");
        assert_eq!(resolution.choice, Choice::Mode(VendorMode::OpenRelay));
        assert!(std::ptr::eq(descriptor, &OPEN));
    }

    #[test]
    fn an_absent_built_in_says_how_to_add_it() {
        let registry = Registry::from_descriptors([&OPEN, &ONE]).unwrap().absent(
            "oauth",
            Some(VendorMode::OAuth),
            "the `oauth` feature of the `mailgate` crate",
        );
        let err = registry.resolve(&flags(true, false)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`oauth` is not compiled"), "{msg}");
        assert!(msg.contains("available: one, open"), "{msg}");
        assert!(
            msg.contains("`oauth` feature of the `mailgate` crate"),
            "{msg}"
        );
        assert!(
            msg.contains("mksis.smtp.oauth.authentication=true"),
            "{msg}"
        );
        assert_eq!(Error::from(err).exit_code(), 78);
    }

    #[test]
    fn a_mode_nobody_provides_is_named() {
        let registry = Registry::from_descriptors([&ONE]).unwrap();
        let msg = registry
            .resolve(&flags(false, true))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("for the SMTP basic authentication mode"),
            "{msg}"
        );
        assert!(msg.contains("Registry::with"), "{msg}");
    }

    #[test]
    fn a_missing_third_party_strategy_says_how_to_register_it() {
        let registry = Registry::from_descriptors([&OPEN]).unwrap();
        let msg = registry
            .resolve(&AuthFlags {
                strategy_override: Some("vault".into()),
                ..AuthFlags::default()
            })
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("no authentication strategy `vault` is registered"),
            "{msg}"
        );
        assert!(msg.contains("available: open"), "{msg}");
        assert!(
            msg.contains("Registry::with(&its_crate::DESCRIPTOR)"),
            "{msg}"
        );
        assert!(msg.contains("with_inventory"), "{msg}");
    }

    #[test]
    fn names_are_sorted_and_keys_collected() {
        let registry = Registry::from_descriptors([&OPEN, &ONE]).unwrap();
        assert_eq!(registry.names(), ["one", "open"]);
        let keys: Vec<&str> = registry.strategy_keys().map(|k| k.name).collect();
        assert_eq!(keys, ["x.one.key", "x.one.secret"]);
        assert_eq!(registry.secret_keys(), ["x.one.secret"]);
    }

    mod stores {
        use super::*;
        use crate::outbox::{OutboxStore, OutboxUrl};
        use crate::properties::Properties;
        use crate::settings::LoadOptions;

        fn open(_: &OutboxUrl, _: &Settings) -> crate::Result<Arc<dyn OutboxStore>> {
            Err(crate::Error::Usage("opened".into()))
        }

        static KV: OutboxDescriptor =
            OutboxDescriptor::new("kv", &["kv", "kv+tls"], open, "crate_kv")
                .keys(&[KeySpec::new("x.kv.ns"), KeySpec::secret("x.kv.token")]);
        static KV_AGAIN: OutboxDescriptor =
            OutboxDescriptor::new("kv", &["kv2"], open, "crate_kv2");
        static OTHER_TLS: OutboxDescriptor =
            OutboxDescriptor::new("other", &["KV+TLS"], open, "crate_other");
        static FILE: OutboxDescriptor =
            OutboxDescriptor::new("file", &["file"], open, "crate_file");

        fn settings(url: Option<&str>) -> Settings {
            let mut overrides = Properties::default();
            overrides.set(
                "mksis.logging.email.server.hostname".into(),
                "smtp.example.com".into(),
                Origin::Builder,
            );
            if let Some(url) = url {
                overrides.set("mailgate.outbox.url".into(), url.into(), Origin::Builder);
            }
            Settings::load(LoadOptions {
                overrides,
                ..LoadOptions::default()
            })
            .unwrap()
        }

        fn open_error(registry: &Registry, url: Option<&str>) -> String {
            registry.open_store(&settings(url)).unwrap_err().to_string()
        }

        #[test]
        fn a_url_opens_the_store_that_takes_its_scheme() {
            let registry = Registry::new()
                .with_store(&KV)
                .unwrap()
                .with_store(&FILE)
                .unwrap();
            assert_eq!(registry.store_names(), ["file", "kv"]);
            assert_eq!(registry.store_schemes(), ["file:", "kv+tls:", "kv:"]);
            let url = OutboxUrl::new("KV+TLS://h/x", Origin::Builder);
            assert!(std::ptr::eq(registry.store_for(&url).unwrap(), &KV));
            // `open` was reached: its own error comes back.
            assert_eq!(open_error(&registry, Some("file:x")), "opened");
        }

        #[test]
        fn two_stores_with_one_name_or_scheme_are_an_error_naming_both() {
            let msg = Registry::new()
                .with_store(&KV_AGAIN)
                .unwrap()
                .with_store(&KV)
                .unwrap_err()
                .to_string();
            assert!(msg.contains("as `kv`"), "{msg}");
            assert!(
                msg.find("crate_kv`").unwrap() < msg.find("crate_kv2").unwrap(),
                "{msg}"
            );
            let msg = Registry::new()
                .with_store(&KV)
                .unwrap()
                .with_store(&OTHER_TLS)
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("for `KV+TLS:` URLs (`kv` and `other`)"),
                "{msg}"
            );
            let again = Registry::new()
                .with_store(&KV)
                .unwrap()
                .with_store(&KV)
                .unwrap();
            assert_eq!(again.store_names(), ["kv"]);
        }

        #[test]
        fn an_unknown_scheme_names_the_key_the_schemes_and_what_to_do() {
            let registry = Registry::new().with_store(&KV).unwrap();
            let msg = open_error(&registry, Some("mysql://mg:Pw-55@db/x"));
            assert!(
                msg.contains("`mailgate.outbox.url` at a value set in code"),
                "{msg}"
            );
            assert!(msg.contains("`mysql:` URLs"), "{msg}");
            assert!(msg.contains("available: kv+tls:, kv:"), "{msg}");
            assert!(msg.contains("Registry::with_store"), "{msg}");
            assert!(!msg.contains("Pw-55"), "{msg}");
            let msg = open_error(&registry, Some("outbox.db"));
            assert!(msg.contains("not a URL"), "{msg}");
            let err = registry
                .open_store(&settings(Some("mysql://db/x")))
                .unwrap_err();
            assert_eq!(err.exit_code(), 78);
        }

        #[test]
        fn an_absent_store_names_its_feature_and_the_default_url_is_used_when_unset() {
            let registry = Registry::new()
                .with_store(&KV)
                .unwrap()
                .absent_store("file", &["file"], "the cargo feature `outbox-file` of `x`")
                .default_outbox_url("file:outbox.db");
            let msg = open_error(&registry, None);
            assert!(
                msg.contains(
                    "`mailgate.outbox.url` is not set and its default is `file:outbox.db`"
                ),
                "{msg}"
            );
            assert!(
                msg.contains("store `file` for `file:` URLs is not compiled"),
                "{msg}"
            );
            assert!(
                msg.contains("enable the cargo feature `outbox-file` of `x`"),
                "{msg}"
            );
            let msg = open_error(&registry, Some("FILE:elsewhere.db"));
            assert!(
                msg.contains("at a value set in code (MailerBuilder) is `FILE:elsewhere.db`"),
                "{msg}"
            );
            let url = registry.outbox_url(&settings(None)).unwrap();
            assert_eq!(
                (url.as_str(), url.origin()),
                ("file:outbox.db", &Origin::Default)
            );
        }

        #[test]
        fn without_a_default_an_unset_url_says_to_set_it() {
            let registry = Registry::new().with_store(&KV).unwrap();
            let msg = open_error(&registry, None);
            assert!(msg.contains("`mailgate.outbox.url` is not set"), "{msg}");
            assert!(msg.contains("available: kv+tls:, kv:"), "{msg}");
        }

        fn build(registry: Registry, url: &str) -> crate::Result<crate::Mailer> {
            crate::Mailer::builder()
                .registry(registry)
                .server("smtp.example.com", 25)
                // The test strategy claims to send credentials.
                .allow_plaintext_auth(true)
                .property("mailgate.outbox.url", url)
                .build()
        }

        #[test]
        fn a_mailer_opens_the_outbox_through_its_registry_when_it_lists_stores() {
            let strategies = || Registry::from_descriptors([&OPEN]).unwrap();
            // No store registered: no outbox, whatever the URL says.
            let mailer = build(strategies(), "mysql://db/x").unwrap();
            let err = mailer.outbox().unwrap_err().to_string();
            assert!(err.contains("Registry::with_store"), "{err}");
            // Stores registered: the one taking the scheme is opened.
            let err = build(strategies().with_store(&KV).unwrap(), "kv://h/x").unwrap_err();
            assert_eq!(err.to_string(), "opened");
            let err = build(strategies().with_store(&KV).unwrap(), "mysql://db/x").unwrap_err();
            assert!(err.to_string().contains("`mysql:` URLs"), "{err}");
            // An opener of the program's own wins over the registry.
            let err = crate::Mailer::builder()
                .registry(strategies().with_store(&KV).unwrap())
                .server("smtp.example.com", 25)
                .allow_plaintext_auth(true)
                .outbox(|_| Err(crate::Error::Usage("the program's own".into())))
                .build()
                .unwrap_err();
            assert_eq!(err.to_string(), "the program's own");
        }

        #[test]
        fn store_keys_are_known_and_their_secrets_collected() {
            let registry = Registry::from_descriptors([&ONE])
                .unwrap()
                .with_store(&KV)
                .unwrap();
            let keys: Vec<&str> = registry.keys().map(|k| k.name).collect();
            assert_eq!(keys, ["x.one.key", "x.one.secret", "x.kv.ns", "x.kv.token"]);
            assert_eq!(registry.secret_keys(), ["x.kv.token", "x.one.secret"]);
            assert!(registry.has_stores());
            assert!(!Registry::new().has_stores());
        }
    }
}
