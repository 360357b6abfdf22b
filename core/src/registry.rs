//! The strategies a program can use: listed explicitly (the `mailgate`
//! facade's `default_registry()` lists the compiled-in ones), plus, opt-in,
//! those third-party crates submit through `inventory`.

use std::collections::BTreeMap;

use crate::error::{ConfigError, Result};
use crate::resolver::{AuthFlags, Choice, Resolution, VendorMode, precedence};
use crate::settings::Settings;
use crate::strategy::{KeySpec, SharedStrategy, StrategyDescriptor, Submitted};

/// The registered strategies, by name, and how to get the ones that are not.
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

    /// The keys the registered strategies declare secret: what `mailgate
    /// encrypt` encrypts and what is never shown.
    pub fn secret_keys(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = self
            .strategy_keys()
            .filter(|k| k.secret)
            .map(|k| k.name)
            .collect();
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
}
