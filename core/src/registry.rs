//! The strategies linked into this binary, collected with `inventory`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{ConfigError, Result};
use crate::resolver::Resolution;
use crate::settings::Settings;
use crate::strategy::{AuthStrategy, StrategyDescriptor};

/// Built-in strategies and the `mailgate` cargo feature that links each.
pub const BUILT_IN: &[(&str, &str)] = &[("open", "open"), ("basic", "basic"), ("oauth", "oauth")];

/// The registered strategies, by name.
#[derive(Clone, Debug)]
pub struct Registry {
    by_name: BTreeMap<&'static str, &'static StrategyDescriptor>,
}

impl Registry {
    /// Every strategy submitted by a crate linked into this binary.
    ///
    /// A strategy crate is linked only if the binary names it
    /// (`use mailgate_auth_basic as _;`); the `mailgate` facade does that per feature.
    pub fn collect() -> Result<Self, ConfigError> {
        Self::from_descriptors(inventory::iter::<StrategyDescriptor>)
    }

    /// A registry of the given descriptors; two with one name are an error naming both.
    pub fn from_descriptors(
        descriptors: impl IntoIterator<Item = &'static StrategyDescriptor>,
    ) -> Result<Self, ConfigError> {
        let mut by_name: BTreeMap<&'static str, &'static StrategyDescriptor> = BTreeMap::new();
        for d in descriptors {
            if let Some(first) = by_name.insert(d.name, d) {
                // Name both in a stable order, whatever the link order was.
                let (a, b) = if first.module_path <= d.module_path {
                    (first, d)
                } else {
                    (d, first)
                };
                return Err(ConfigError::DuplicateStrategy {
                    name: d.name.to_owned(),
                    first: a.module_path.to_owned(),
                    second: b.module_path.to_owned(),
                });
            }
        }
        Ok(Self { by_name })
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }

    /// The descriptor registered as `name`.
    pub fn get(&self, name: &str) -> Option<&'static StrategyDescriptor> {
        self.by_name.get(name).copied()
    }

    /// Property keys read by the registered strategies.
    pub fn strategy_keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.values().flat_map(|d| d.keys.iter().copied())
    }

    /// The descriptor for a resolution, or an error listing what is available.
    pub fn descriptor_for(
        &self,
        resolution: &Resolution,
    ) -> Result<&'static StrategyDescriptor, ConfigError> {
        self.get(&resolution.strategy)
            .ok_or_else(|| ConfigError::UnknownStrategy {
                name: resolution.strategy.clone(),
                chosen_by: resolution.rule.to_string(),
                available: self.names().iter().map(|s| (*s).to_owned()).collect(),
                feature: BUILT_IN
                    .iter()
                    .find(|(name, _)| *name == resolution.strategy)
                    .map(|(_, feature)| (*feature).to_owned()),
            })
    }

    /// Builds the strategy a resolution chose.
    pub fn build(
        &self,
        resolution: &Resolution,
        settings: &Settings,
    ) -> Result<Arc<dyn AuthStrategy>> {
        (self.descriptor_for(resolution)?.build)(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::resolver::{AuthFlags, resolve};
    use crate::strategy::SmtpSession;

    #[derive(Debug)]
    struct Nothing;

    #[async_trait::async_trait]
    impl AuthStrategy for Nothing {
        async fn authenticate(&self, _: &mut SmtpSession<'_>) -> Result<()> {
            Ok(())
        }
    }

    fn build(_: &Settings) -> Result<Arc<dyn AuthStrategy>> {
        Ok(Arc::new(Nothing))
    }

    static ONE: StrategyDescriptor = StrategyDescriptor {
        name: "one",
        keys: &["x.one.key"],
        build,
        module_path: "crate_a",
    };
    static ONE_AGAIN: StrategyDescriptor = StrategyDescriptor {
        name: "one",
        keys: &[],
        build,
        module_path: "crate_b",
    };
    static OPEN: StrategyDescriptor = StrategyDescriptor {
        name: "open",
        keys: &[],
        build,
        module_path: "crate_open",
    };

    #[test]
    fn duplicate_names_are_an_error_naming_both() {
        for order in [[&ONE, &ONE_AGAIN], [&ONE_AGAIN, &ONE]] {
            let err = Registry::from_descriptors(order).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("`one`"), "{msg}");
            assert!(
                msg.find("crate_a").unwrap() < msg.find("crate_b").unwrap(),
                "stable order: {msg}"
            );
        }
    }

    #[test]
    fn missing_built_in_names_its_feature() {
        let registry = Registry::from_descriptors([&OPEN, &ONE]).unwrap();
        let resolution = resolve(&AuthFlags {
            oauth: true,
            basic: false,
            strategy_override: None,
        });
        let err = registry.descriptor_for(&resolution).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`oauth` is not compiled"), "{msg}");
        assert!(msg.contains("available: one, open"), "{msg}");
        assert!(msg.contains("feature `oauth`"), "{msg}");
        assert_eq!(Error::from(err).exit_code(), 78);
    }

    #[test]
    fn missing_third_party_strategy_says_how_to_link_it() {
        let registry = Registry::from_descriptors([&OPEN]).unwrap();
        let resolution = resolve(&AuthFlags {
            strategy_override: Some("vault".into()),
            ..AuthFlags::default()
        });
        let msg = registry
            .descriptor_for(&resolution)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("no authentication strategy named `vault`"),
            "{msg}"
        );
        assert!(msg.contains("available: open"), "{msg}");
    }

    #[test]
    fn names_are_sorted_and_keys_collected() {
        let registry = Registry::from_descriptors([&OPEN, &ONE]).unwrap();
        assert_eq!(registry.names(), ["one", "open"]);
        assert_eq!(registry.strategy_keys().collect::<Vec<_>>(), ["x.one.key"]);
    }
}
