//! `default_registry()` holds exactly the strategies of the enabled features,
//! registered explicitly (not through the linker). Run per feature set
//! (`--no-default-features --features basic`, `open`, all): see `.ci/run`.

use mailgate::{AuthFlags, Registry, VendorMode};

/// The strategies the enabled features add: the oracle, written from the
/// features themselves rather than asked of the facade.
const LINKED: &[&str] = &[
    #[cfg(feature = "basic")]
    "basic",
    #[cfg(feature = "oauth")]
    "oauth",
    #[cfg(feature = "open")]
    "open",
];

/// Every strategy feature of the facade: its strategy, the vendor mode it
/// provides, flags that choose that mode, and whether it is on.
const FEATURES: &[(&str, VendorMode, (bool, bool), bool)] = &[
    (
        "basic",
        VendorMode::BasicAuth,
        (false, true),
        cfg!(feature = "basic"),
    ),
    (
        "oauth",
        VendorMode::OAuth,
        (true, false),
        cfg!(feature = "oauth"),
    ),
    (
        "open",
        VendorMode::OpenRelay,
        (false, false),
        cfg!(feature = "open"),
    ),
];

fn flags((oauth, basic): (bool, bool)) -> AuthFlags {
    AuthFlags {
        oauth,
        basic,
        strategy_override: None,
    }
}

#[test]
fn the_default_registry_holds_exactly_the_enabled_strategies() {
    let registry = mailgate::default_registry().expect("no duplicate strategies");
    assert_eq!(registry.names(), LINKED);
    let on: Vec<&str> = FEATURES.iter().filter(|f| f.3).map(|f| f.0).collect();
    assert_eq!(on, LINKED);
}

#[test]
fn built_in_strategies_do_not_depend_on_the_linker() {
    // Nothing is submitted through inventory: the built-ins are listed by
    // the facade, so a binary that never names their crates still has them.
    assert!(Registry::collect().unwrap().names().is_empty());
}

#[test]
fn each_vendor_mode_resolves_to_its_strategy_or_names_the_feature() {
    let registry = mailgate::default_registry().unwrap();
    for (name, mode, flag_values, on) in FEATURES {
        match registry.resolve(&flags(*flag_values)) {
            Ok((resolution, descriptor)) => {
                assert!(on, "{name} resolved but its feature is off");
                assert_eq!(resolution.strategy, *name);
                assert_eq!(descriptor.provides, Some(*mode));
            }
            Err(e) => {
                assert!(!on, "{name} is enabled but did not resolve: {e}");
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("cargo feature `{name}` of the `mailgate` crate")),
                    "{msg}"
                );
                for available in LINKED {
                    assert!(msg.contains(available), "{msg} should list {available}");
                }
            }
        }
    }
}

#[test]
fn the_secret_keys_come_from_the_descriptors() {
    let secret = mailgate::default_registry().unwrap().secret_keys();
    let mut expected: Vec<&str> = vec![
        #[cfg(feature = "basic")]
        mailgate::basic::PASSWORD_KEY,
        #[cfg(feature = "oauth")]
        mailgate::oauth::keys::CLIENT_SECRET,
    ];
    expected.sort_unstable();
    assert_eq!(secret, expected);
}

#[test]
fn a_builder_without_a_registry_knows_only_inventory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("is.properties"),
        "mksis.logging.email.server.hostname=localhost\n",
    )
    .unwrap();
    let err = mailgate_core::Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("for the open mail relay mode"), "{msg}");
    assert!(msg.contains("Registry::with"), "{msg}");
    assert_eq!(err.exit_code(), 78);
}

/// Every outbox store feature of the facade: its store, a URL it takes,
/// and whether it is on.
const STORES: &[(&str, &str, bool)] = &[
    (
        "postgres",
        "postgresql://mg:Pw-31@db/mail",
        cfg!(feature = "outbox-postgres"),
    ),
    (
        "sqlite",
        "sqlite:outbox.db",
        cfg!(feature = "outbox-sqlite"),
    ),
];

#[test]
fn the_default_registry_holds_exactly_the_enabled_stores_and_names_the_feature_of_the_others() {
    use mailgate::{Origin, OutboxUrl};
    let registry = mailgate::default_registry().unwrap();
    let on: Vec<&str> = STORES.iter().filter(|s| s.2).map(|s| s.0).collect();
    assert_eq!(registry.store_names(), on);
    assert_eq!(registry.has_stores(), !on.is_empty());
    for (name, url, on) in STORES {
        match registry.store_for(&OutboxUrl::new(*url, Origin::Builder)) {
            Ok(descriptor) => {
                assert!(on, "{name} found but its feature is off");
                assert_eq!(descriptor.name, *name);
            }
            Err(e) => {
                assert!(!on, "{name} is enabled but not found: {e}");
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!(
                        "the cargo feature `outbox-{name}` of the `mailgate` crate"
                    )),
                    "{msg}"
                );
                assert!(msg.contains("mailgate.outbox.url"), "{msg}");
                assert!(!msg.contains("Pw-31"), "{msg}");
            }
        }
    }
    let msg = registry
        .store_for(&OutboxUrl::new("mysql://db/x", Origin::Builder))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no registered outbox store takes `mysql:` URLs"),
        "{msg}"
    );
    assert_eq!(mailgate::outbox_backends(), on);
    assert_eq!(mailgate::DEFAULT_OUTBOX_URL, "sqlite:mailgate-outbox.db");
}
