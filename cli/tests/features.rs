//! The binary holds exactly the strategies of its features; a config that
//! resolves to one left out fails with exit 78 naming the feature. `.ci/run`
//! runs this file once per feature set.

use std::process::Command;

use mailgate_integration_tests::ConfigDir;

const LINKED: &[(&str, bool)] = &[
    ("basic", cfg!(feature = "basic")),
    ("oauth", cfg!(feature = "oauth")),
    ("open", cfg!(feature = "open")),
];

fn config_for(strategy: &str) -> ConfigDir {
    let (oauth, basic) = match strategy {
        "oauth" => ("true", "false"),
        "basic" => ("false", "true"),
        _ => ("false", "false"),
    };
    ConfigDir::with_properties(
        &[
            ("mksis.smtp.oauth.authentication", oauth),
            ("mksis.smtp.authentication", basic),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.from", "alm@example.com"),
            ("mksis.logging.emailfrom.password", "pw"),
            ("mksis.logging.email.server.hostname", "smtp.example.com"),
        ],
        &[
            ("mksis.security.smtp.oauth.clientID", "id"),
            ("mksis.security.smtp.oauth.clientSecret", "secret"),
            (
                "mksis.security.smtp.oauth.tokenEndpointURL",
                "https://login.example.com/token",
            ),
            (
                "mksis.security.smtp.oauth.scope",
                "https://outlook.office365.com/.default",
            ),
        ],
    )
}

#[test]
fn each_strategy_resolves_only_when_its_feature_is_on() {
    let available: Vec<&str> = LINKED
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    for (strategy, linked) in LINKED {
        let dir = config_for(strategy);
        let out = Command::new(env!("CARGO_BIN_EXE_mailgate"))
            .arg("--config-dir")
            .arg(dir.path())
            .args(["check", "--json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if *linked {
            assert_eq!(out.status.code(), Some(0), "{strategy}: {stderr}");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["strategy"], *strategy);
        } else {
            assert_eq!(out.status.code(), Some(78), "{strategy}: {stderr}");
            assert!(
                stderr.contains(&format!("`{strategy}` is not compiled into this build")),
                "{stderr}"
            );
            assert!(
                stderr.contains(&format!("feature `{strategy}`")),
                "{stderr}"
            );
            assert!(
                stderr.contains(&format!("available: {}", available.join(", "))),
                "{stderr}"
            );
        }
    }
}
