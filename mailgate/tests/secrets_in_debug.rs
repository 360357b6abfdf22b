//! No secret (password, client secret, token, AUTH payload) appears in the
//! `Debug` or `Display` of any public type, in any state: before and after
//! loading, decrypting, connecting and failing.

#![cfg(all(feature = "basic", feature = "oauth"))]

use mailgate::secrecy::SecretString;
use mailgate::{AuthFlags, Mailer, ScriptedServer, Settings};
use mailgate_devserver::{DevSmtpServer, Mechanism};

const USER: &str = "alm@example.com";
const PASSWORD: &str = "Pw-hunter2-xyz";
const CLIENT_SECRET: &str = "Cs-s3cr3t-abc";
/// base64 of "\0alm@example.com\0Pw-hunter2-xyz" (the AUTH PLAIN payload).
const PLAIN_PAYLOAD: &str = "AGFsbUBleGFtcGxlLmNvbQBQdy1odW50ZXIyLXh5eg==";

fn assert_clean(what: &str, text: &str) {
    for secret in [
        PASSWORD,
        CLIENT_SECRET,
        PLAIN_PAYLOAD,
        "UHctaHVudGVyMi14eXo",
    ] {
        assert!(!text.contains(secret), "{what} shows a secret: {text}");
    }
}

fn config(dir: &std::path::Path, port: u16, flags: &str) {
    std::fs::write(
        dir.join("is.properties"),
        format!(
            "{flags}mksis.smtp.ssl.enabled=true\n\
             mksis.logging.email.from={USER}\n\
             mksis.logging.emailfrom.password={PASSWORD}\n\
             mksis.logging.email.server.hostname=localhost\n\
             mksis.logging.email.server.port={port}\n\
             mailgate.smtp.ssl.caFile=ca.pem\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("security.properties"),
        format!(
            "mksis.security.smtp.oauth.clientID=id\n\
             mksis.security.smtp.oauth.clientSecret={CLIENT_SECRET}\n\
             mksis.security.smtp.oauth.tokenEndpointURL=http://127.0.0.1:9/token\n\
             mksis.security.smtp.oauth.scope=s\n"
        ),
    )
    .unwrap();
}

#[test]
fn settings_hold_no_raw_secret_and_show_none() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), 25, "mksis.smtp.authentication=true\n");
    mailgate_devserver::DevCa::generate()
        .unwrap()
        .write_ca_pem(dir.path().join("ca.pem"))
        .unwrap();
    let registry = mailgate::default_registry().unwrap();
    let settings = Settings::load(mailgate::settings::LoadOptions {
        files: mailgate::properties::ConfigFiles::in_dir(dir.path()),
        strategy_keys: registry.strategy_keys().copied().collect(),
        ..Default::default()
    })
    .unwrap();
    assert_clean("Settings", &format!("{settings:?}"));
    // No accessor hands out a secret's raw value.
    for key in registry.secret_keys() {
        assert!(settings.entry(key).is_none(), "{key}");
        assert!(settings.value(key).is_none(), "{key}");
        let err = settings.require(key, "test").unwrap_err();
        assert_clean("require error", &format!("{err} {err:?}"));
        assert_eq!(settings.shown(key).as_deref(), Some("<secret: plain text>"));
        assert!(settings.origin(key).is_some());
        assert!(settings.keys().any(|k| k == key));
        let err = settings.invalid(key, "something else");
        assert_clean("invalid error", &format!("{err} {err:?}"));
    }
    // After reading a secret the settings still show none.
    let _ = settings
        .require_secret("mksis.logging.emailfrom.password", "test")
        .unwrap();
    assert_clean("Settings after use", &format!("{settings:?}"));
}

#[tokio::test]
async fn mailers_builders_strategies_and_errors_show_no_secret() {
    let server = DevSmtpServer::builder()
        .starttls_required()
        .mechanisms([Mechanism::Plain])
        .user(USER, "not-the-configured-password")
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    server.ca().write_ca_pem(dir.path().join("ca.pem")).unwrap();
    config(
        dir.path(),
        server.port(),
        "mksis.smtp.authentication=true\n",
    );

    let builder = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .property("mksis.logging.emailfrom.password", PASSWORD);
    assert_clean("MailerBuilder", &format!("{builder:?}"));
    let with_url = Mailer::builder()
        .property("mailgate.outbox.url", "postgres://mg:Db-pw-77@db/mail")
        .property("x.vault.credential", "Vault-cred-88");
    let dbg = format!("{with_url:?}");
    assert!(
        !dbg.contains("Db-pw-77") && !dbg.contains("Vault-cred-88"),
        "{dbg}"
    );
    let mailer = builder.build().unwrap();
    assert_clean("Mailer", &format!("{mailer:?}"));
    assert_clean("Resolution", &format!("{:?}", mailer.resolution()));
    assert_clean("describe", &format!("{:?}", mailer.describe_strategy()));

    // A refusal (wrong password): the error, in every form, and the
    // mailer after it.
    let err = mailer
        .sendmail(USER, "dev@example.com", "s", "b")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 77, "{err}");
    assert_clean(
        "refusal",
        &format!("{err} {err:?} {:?}", std::error::Error::source(&err)),
    );
    assert_clean("Mailer after a refusal", &format!("{mailer:?}"));
    mailer.close().await;

    let registry = mailgate::default_registry().unwrap();
    assert_clean("Registry", &format!("{registry:?}"));
    let flags = AuthFlags {
        oauth: true,
        basic: false,
        strategy_override: None,
    };
    let (_, oauth) = registry.resolve(&flags).unwrap();
    let (_, basic) = registry
        .resolve(&AuthFlags {
            oauth: false,
            basic: true,
            strategy_override: None,
        })
        .unwrap();
    let settings = mailer.settings();
    for descriptor in [oauth, basic] {
        let strategy = (descriptor.build)(settings).unwrap();
        assert_clean("SharedStrategy", &format!("{strategy:?} {descriptor:?}"));
    }
    let basic = mailgate::basic::BasicAuth::new(USER, SecretString::from(PASSWORD.to_owned()));
    assert_clean("BasicAuth", &format!("{basic:?}"));
    let oauth = mailgate::oauth::OAuthStrategy::from_settings(settings).unwrap();
    assert_clean("OAuthStrategy", &format!("{oauth:?}"));
}

#[tokio::test]
async fn the_session_double_shows_only_redacted_lines() {
    use mailgate::AuthStrategy;
    let basic = mailgate::basic::BasicAuth::new(USER, SecretString::from(PASSWORD.to_owned()));
    let mut server = ScriptedServer::new()
        .offering(&["PLAIN"])
        .reply(&format!("535 5.7.8 rejected {PLAIN_PAYLOAD}"));
    let err = basic
        .authenticate(&mut server.session(), ())
        .await
        .unwrap_err();
    assert_eq!(server.sent(), [format!("AUTH PLAIN {PLAIN_PAYLOAD}")]);
    assert_clean("ScriptedServer", &format!("{server:?}"));
    assert_clean("refusal echoing the payload", &format!("{err} {err:?}"));
}

#[test]
fn the_blocking_mailer_shows_no_secret() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(async {
        DevSmtpServer::builder()
            .starttls_required()
            .mechanisms([Mechanism::Plain])
            .user(USER, PASSWORD)
            .start()
            .await
            .unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    server.ca().write_ca_pem(dir.path().join("ca.pem")).unwrap();
    config(
        dir.path(),
        server.port(),
        "mksis.smtp.authentication=true\n",
    );
    let mailer = mailgate::blocking::Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .unwrap();
    assert_clean("blocking::Mailer", &format!("{mailer:?}"));
    mailer.sendmail(USER, "dev@example.com", "s", "b").unwrap();
    assert_clean("blocking::Mailer after a send", &format!("{mailer:?}"));
    mailer.close();
}
