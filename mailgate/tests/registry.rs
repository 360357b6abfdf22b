//! The registry holds exactly the strategies of the enabled features. Run per
//! feature set (`--no-default-features --features basic`, `open`, all): see `.ci/run`.

use mailgate::{Registry, Resolution, Rule};

#[test]
fn registry_holds_exactly_the_linked_strategies() {
    let registry = Registry::collect().expect("no duplicate strategies");
    let mut expected: Vec<&str> = mailgate::LINKED_STRATEGIES.to_vec();
    expected.sort_unstable();
    assert_eq!(registry.names(), expected);
}

#[test]
fn resolving_to_a_strategy_left_out_names_its_feature() {
    let registry = Registry::collect().unwrap();
    for (name, feature) in mailgate::registry::BUILT_IN {
        let resolution = Resolution {
            strategy: (*name).to_owned(),
            rule: Rule::Override,
        };
        let linked = mailgate::LINKED_STRATEGIES.contains(name);
        match registry.descriptor_for(&resolution) {
            Ok(d) => assert!(linked, "{name} resolved but its feature is off: {d:?}"),
            Err(e) => {
                assert!(!linked, "{name} is linked but did not resolve: {e}");
                let msg = e.to_string();
                assert!(msg.contains(&format!("feature `{feature}`")), "{msg}");
                for available in mailgate::LINKED_STRATEGIES {
                    assert!(msg.contains(available), "{msg} should list {available}");
                }
            }
        }
    }
}
