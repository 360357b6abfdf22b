//! The registry holds exactly the strategies of the enabled features. Run per
//! feature set (`--no-default-features --features basic`, `open`, all): see `.ci/run`.

use mailgate::{Registry, Resolution, Rule};

/// The strategies the enabled features link: the oracle, written from the
/// features themselves rather than asked of the facade.
const LINKED: &[&str] = &[
    #[cfg(feature = "basic")]
    "basic",
    #[cfg(feature = "oauth")]
    "oauth",
    #[cfg(feature = "open")]
    "open",
];

/// Every feature of the facade, each with the strategy it links.
const FEATURES: &[(&str, &str, bool)] = &[
    ("basic", "basic", cfg!(feature = "basic")),
    ("oauth", "oauth", cfg!(feature = "oauth")),
    ("open", "open", cfg!(feature = "open")),
];

#[test]
fn registry_holds_exactly_the_linked_strategies() {
    let registry = Registry::collect().expect("no duplicate strategies");
    let mut expected: Vec<&str> = LINKED.to_vec();
    expected.sort_unstable();
    assert_eq!(registry.names(), expected);
}

#[test]
fn the_oracle_covers_every_built_in_strategy_and_feature() {
    // A strategy added to core's BUILT_IN must be added here too, or the
    // per-feature runs would not test it.
    let mut built_in: Vec<(&str, &str)> = mailgate::registry::BUILT_IN.to_vec();
    built_in.sort_unstable();
    let listed: Vec<(&str, &str)> = FEATURES.iter().map(|(f, s, _)| (*s, *f)).collect();
    assert_eq!(listed, built_in);
    let on: Vec<&str> = FEATURES
        .iter()
        .filter(|(_, _, on)| *on)
        .map(|(_, s, _)| *s)
        .collect();
    assert_eq!(on, LINKED);
}

#[test]
fn resolving_to_a_strategy_left_out_names_its_feature() {
    let registry = Registry::collect().unwrap();
    for (name, feature) in mailgate::registry::BUILT_IN {
        let resolution = Resolution {
            strategy: (*name).to_owned(),
            rule: Rule::Override,
        };
        let linked = LINKED.contains(name);
        match registry.descriptor_for(&resolution) {
            Ok(d) => assert!(linked, "{name} resolved but its feature is off: {d:?}"),
            Err(e) => {
                assert!(!linked, "{name} is linked but did not resolve: {e}");
                let msg = e.to_string();
                assert!(msg.contains(&format!("feature `{feature}`")), "{msg}");
                for available in LINKED {
                    assert!(msg.contains(available), "{msg} should list {available}");
                }
            }
        }
    }
}
