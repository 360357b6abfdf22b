//! The typed builder (`server`, `starttls`, `basic`, ...) against the dev
//! SMTP server, and against the properties files it stands for: the same
//! strategy, by the same rule, the same server settings; no secret in any
//! `Debug`.

#![cfg(all(feature = "open", feature = "basic", feature = "oauth"))]

use std::path::Path;
use std::time::Duration;

use mailgate::secrecy::SecretString;
use mailgate::{ClientCredentials, Mailer, Origin, Rule, TlsMode, keys};
use mailgate_devserver::DevSmtpServer;

const USER: &str = "alm@example.com";
const PASSWORD: &str = "Pw-typed-hunter2";
const CLIENT_SECRET: &str = "Cs-typed-s3cr3t";

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PASSWORD, CLIENT_SECRET] {
        assert!(!text.contains(secret), "{what} shows a secret: {text}");
    }
}

/// The mailer a config folder makes, without environment overrides.
fn from_files(dir: &Path) -> Mailer {
    Mailer::builder()
        .config_dir(dir)
        .build()
        .expect("mailer from the files builds")
}

/// What `check` compares: strategy, rule, server, sender, strategy facts.
fn assert_same(typed: &Mailer, files: &Mailer) {
    assert_eq!(typed.resolution(), files.resolution());
    let (t, f) = (typed.settings().server(), files.settings().server());
    assert_eq!(
        (&t.host, t.port, t.tls, t.timeout, t.allow_plaintext_auth),
        (&f.host, f.port, f.tls, f.timeout, f.allow_plaintext_auth)
    );
    let ca = |s: &mailgate::settings::ServerSettings| {
        s.ca_files
            .iter()
            .map(|c| c.path.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ca(t), ca(f));
    assert_eq!(typed.settings().sender(), files.settings().sender());
    assert_eq!(typed.describe_strategy(), files.describe_strategy());
}

#[tokio::test]
async fn an_open_relay_mailer_from_the_typed_builder_sends() {
    let server = DevSmtpServer::builder().start().await.expect("dev server");
    let mailer = Mailer::builder()
        .server("127.0.0.1", server.port())
        .no_tls()
        .sender(USER)
        .open()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("mailer builds");
    assert_eq!(mailer.resolution().strategy, "open");
    assert_eq!(mailer.resolution().rule, Rule::Neither);

    mailer
        .sendmail(USER, "dev@example.com", "typed", "open relay")
        .await
        .expect("sent");
    let got = server.wait_for_messages(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, USER);
    assert_eq!(got[0].rcpt_to, ["dev@example.com"]);
    assert!(!got[0].tls);
    assert!(got[0].auth.is_none());
    mailer.close().await;
}

#[tokio::test]
async fn basic_auth_over_starttls_from_the_typed_builder_sends() {
    let server = DevSmtpServer::builder()
        .starttls_required()
        .user(USER, PASSWORD)
        .start()
        .await
        .expect("dev server");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_cert_pem()).expect("CA written");

    // A `SecretString` as well as a `String` is taken.
    let password = SecretString::from(PASSWORD.to_owned());
    let builder = Mailer::builder()
        .server("localhost", server.port())
        .starttls()
        .ca_file(&ca)
        .basic(USER, password)
        .timeout(Duration::from_secs(10));
    assert_no_secret("the builder's Debug", &format!("{builder:?}"));
    let mailer = builder.build().expect("mailer builds");
    assert_no_secret("the mailer's Debug", &format!("{mailer:?}"));
    assert_no_secret("the settings' Debug", &format!("{:?}", mailer.settings()));
    assert_eq!(mailer.resolution().strategy, "basic");
    assert_eq!(mailer.resolution().rule, Rule::BasicOnly);
    assert_eq!(mailer.settings().server().tls, TlsMode::StartTls);
    // `check` says where each value came from, and never the secret.
    let password_key = mailgate::basic::PASSWORD_KEY;
    assert_eq!(
        mailer.settings().origin(password_key),
        Some(&Origin::Builder)
    );
    assert_eq!(
        mailer.settings().shown(password_key).as_deref(),
        Some("<secret: plain text>")
    );
    assert_eq!(
        mailer.settings().origin(keys::SERVER_HOSTNAME),
        Some(&Origin::Builder)
    );

    mailer
        .sendmail(USER, "dev@example.com", "typed", "basic over STARTTLS")
        .await
        .expect("sent");
    let got = server.wait_for_messages(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].tls, "sent after STARTTLS");
    assert_eq!(got[0].auth.as_ref().map(|a| a.user.as_str()), Some(USER));
    mailer.close().await;
}

#[test]
fn typed_settings_equal_the_properties_they_stand_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    mailgate_devserver::DevCa::generate()
        .expect("CA")
        .write_ca_pem(&ca)
        .expect("CA written");

    // Basic AUTH, STARTTLS on 587, a private CA, a 10 s limit.
    std::fs::write(
        dir.path().join("is.properties"),
        format!(
            "mksis.smtp.oauth.authentication=false\n\
             mksis.smtp.authentication=true\n\
             mksis.smtp.ssl.enabled=true\n\
             mailgate.smtp.ssl.mode=starttls\n\
             mailgate.smtp.ssl.caFile={}\n\
             mailgate.smtp.timeoutSeconds=10\n\
             mksis.logging.email.from={USER}\n\
             mksis.logging.emailfrom.password={PASSWORD}\n\
             mksis.logging.email.server.hostname=smtp.office365.com\n\
             mksis.logging.email.server.port=587\n",
            ca.display()
        ),
    )
    .expect("is.properties");
    let typed = Mailer::builder()
        .server("smtp.office365.com", 587)
        .starttls()
        .ca_file(&ca)
        .timeout(Duration::from_secs(10))
        .basic(USER, PASSWORD)
        .build()
        .expect("typed basic builds");
    assert_same(&typed, &from_files(dir.path()));

    // OAuth, implicit TLS on 465.
    std::fs::write(
        dir.path().join("is.properties"),
        format!(
            "mksis.smtp.oauth.authentication=true\n\
             mksis.smtp.authentication=false\n\
             mksis.smtp.ssl.enabled=true\n\
             mailgate.smtp.ssl.mode=implicit\n\
             mksis.logging.email.from={USER}\n\
             mksis.logging.email.server.hostname=smtp.office365.com\n\
             mksis.logging.email.server.port=465\n"
        ),
    )
    .expect("is.properties");
    std::fs::write(
        dir.path().join("security.properties"),
        format!(
            "mksis.security.smtp.oauth.clientID=CLIENT-ID\n\
             mksis.security.smtp.oauth.clientSecret={CLIENT_SECRET}\n\
             mksis.security.smtp.oauth.tokenEndpointURL=https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token\n\
             mksis.security.smtp.oauth.scope=https://outlook.office365.com/.default\n"
        ),
    )
    .expect("security.properties");
    let builder = Mailer::builder()
        .server("smtp.office365.com", 465)
        .implicit_tls()
        .oauth_client_credentials(
            USER,
            ClientCredentials::microsoft_365("contoso.onmicrosoft.com", "CLIENT-ID", CLIENT_SECRET),
        );
    assert_no_secret("the builder's Debug", &format!("{builder:?}"));
    let typed = builder.build().expect("typed oauth builds");
    assert_no_secret("the mailer's Debug", &format!("{typed:?}"));
    assert_eq!(typed.resolution().rule, Rule::OAuthOnly);
    assert_same(&typed, &from_files(dir.path()));

    // Open relay, no TLS.
    std::fs::remove_file(dir.path().join("security.properties")).expect("removed");
    std::fs::write(
        dir.path().join("is.properties"),
        format!(
            "mksis.smtp.ssl.enabled=false\n\
             mksis.logging.email.from={USER}\n\
             mksis.logging.email.server.hostname=relay.example.com\n\
             mksis.logging.email.server.port=25\n"
        ),
    )
    .expect("is.properties");
    let typed = Mailer::builder()
        .server("relay.example.com", 25)
        .no_tls()
        .sender(USER)
        .open()
        .build()
        .expect("typed open builds");
    assert_same(&typed, &from_files(dir.path()));
}

#[test]
fn typed_methods_win_over_the_files_and_their_strategy_override() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("is.properties"),
        "mksis.smtp.oauth.authentication=true\n\
         mailgate.smtp.auth.strategy=oauth\n\
         mailgate.smtp.ssl.mode=implicit\n\
         mksis.logging.email.server.hostname=old.example.com\n",
    )
    .expect("is.properties");
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .server("127.0.0.1", 2525)
        .no_tls()
        .open()
        .build()
        .expect("mailer builds");
    // The flags the builder set decide, by the vendor's table.
    assert_eq!(mailer.resolution().strategy, "open");
    assert_eq!(mailer.resolution().rule, Rule::Neither);
    assert_eq!(mailer.smtp_server(), "127.0.0.1");
    assert_eq!(mailer.settings().server().tls, TlsMode::None);
    // No "ssl.mode is ignored" warning: code asked for no TLS.
    assert!(
        mailer.settings().warnings().is_empty(),
        "{:?}",
        mailer.settings().warnings()
    );
}

#[test]
fn bad_typed_values_are_errors_naming_the_key() {
    let err = Mailer::builder()
        .server("127.0.0.1", 25)
        .open()
        .timeout(Duration::ZERO)
        .build()
        .expect_err("a zero timeout is refused");
    let msg = err.to_string();
    assert!(msg.contains(keys::TIMEOUT_SECONDS), "{msg}");
    assert!(msg.contains("set in code"), "{msg}");

    let err = Mailer::builder()
        .server("127.0.0.1", 25)
        .open()
        .ca_file("a,b.pem")
        .build()
        .expect_err("a comma cannot go into the list");
    assert!(err.to_string().contains("comma"), "{err}");

    let err = Mailer::builder()
        .server("127.0.0.1", 25)
        .sender("not an address")
        .open()
        .build()
        .expect_err("a malformed sender is refused");
    assert!(err.to_string().contains(keys::EMAIL_FROM), "{err}");

    // Basic AUTH without a password: the strategy's own error.
    let err = Mailer::builder()
        .server("127.0.0.1", 25)
        .starttls()
        .basic(USER, "")
        .build()
        .expect_err("a blank password is refused");
    assert!(
        err.to_string().contains(mailgate::basic::PASSWORD_KEY),
        "{err}"
    );
}

#[test]
fn the_blocking_mailer_has_the_typed_builder_too() {
    let mailer = mailgate::blocking::Mailer::builder()
        .server("127.0.0.1", 25)
        .no_tls()
        .open()
        .build()
        .expect("blocking mailer builds");
    assert_eq!(mailer.smtp_port(), 25);
    mailer.close();
}

/// A third-party strategy's typed method, written once over
/// `SettingsBuilder`: it applies to the facade's builders (async and
/// blocking) and to core's, and sets what it says.
trait RelayHostExt: mailgate::SettingsBuilder {
    fn office_relay(self, sender: &str) -> Self {
        self.property(keys::SERVER_HOSTNAME, "relay.example.com")
            .property(keys::SERVER_PORT, "2525")
            .sender(sender)
            .vendor_mode(mailgate::VendorMode::OpenRelay)
    }
}
impl<B: mailgate::SettingsBuilder> RelayHostExt for B {}

#[test]
fn an_extension_over_settings_builder_serves_every_builder() {
    use mailgate::prelude::BasicBuilderExt as _;
    let facade = Mailer::builder()
        .office_relay(USER)
        .build()
        .expect("facade");
    let blocking = mailgate::blocking::Mailer::builder()
        .office_relay(USER)
        .build()
        .expect("blocking");
    let core = mailgate_core::Mailer::builder()
        .registry(mailgate::default_registry().expect("registry"))
        .office_relay(USER)
        .starttls()
        .basic(USER, "pw")
        .build()
        .expect("core");
    assert_eq!(facade.mail_hostname_and_port(), "relay.example.com:2525");
    assert_eq!(facade.resolution().strategy, "open");
    assert_eq!(blocking.smtp_port(), 2525);
    // Core's builder takes the strategies' methods through the prelude's
    // traits; the last mode set wins.
    assert_eq!(core.resolution().strategy, "basic");
    assert_eq!(
        core.settings()
            .sender()
            .map(|s| s.email.to_string())
            .as_deref(),
        Some(USER)
    );
    blocking.close();
}

/// The pool's limits are the builder's: with the default a second message
/// reuses the connection; with a zero idle age it opens a new one.
#[tokio::test]
async fn the_pool_config_decides_whether_an_idle_connection_is_reused() {
    let server = DevSmtpServer::builder().start().await.expect("dev server");
    let connections = |pool: mailgate::PoolConfig| {
        let port = server.port();
        let server = &server;
        async move {
            let before = server.messages().len();
            let mailer = Mailer::builder()
                .server("127.0.0.1", port)
                .no_tls()
                .sender(USER)
                .open()
                .pool(pool)
                .build()
                .expect("mailer builds");
            for subject in ["one", "two"] {
                mailer
                    .sendmail(USER, "dev@example.com", subject, "pool")
                    .await
                    .expect("sent");
            }
            mailer.close().await;
            let got = server
                .wait_for_messages(before + 2, Duration::from_secs(5))
                .await;
            let ids: std::collections::BTreeSet<u64> =
                got[before..].iter().map(|m| m.connection_id).collect();
            ids.len()
        }
    };
    assert_eq!(connections(mailgate::PoolConfig::default()).await, 1);
    let no_reuse = mailgate::PoolConfig::default().max_idle_age(Duration::ZERO);
    assert_eq!(connections(no_reuse).await, 2);
}

/// A part of the program that is neither a strategy nor a store (the
/// command line's relay) declares its keys with `Registry::with_keys`:
/// then its values are kept; undeclared, a `mailgate.*` key is dropped
/// with a warning naming it.
#[test]
fn keys_declared_with_the_registry_are_kept_and_undeclared_ones_warned_about() {
    static RELAYISH: &[mailgate::KeySpec] = &[mailgate::KeySpec::new("mailgate.relay.listen")];
    let build = |registry: mailgate::Registry| {
        Mailer::builder()
            .registry(registry)
            .server("127.0.0.1", 25)
            .no_tls()
            .sender(USER)
            .open()
            .property("mailgate.relay.listen", "127.0.0.1:2525")
            .build()
            .expect("mailer builds")
    };
    let declared = build(
        mailgate::default_registry()
            .expect("registry")
            .with_keys(RELAYISH),
    );
    assert_eq!(
        declared.settings().value("mailgate.relay.listen"),
        Some("127.0.0.1:2525")
    );
    assert!(
        declared.settings().warnings().is_empty(),
        "{:?}",
        declared.settings().warnings()
    );

    let undeclared = build(mailgate::default_registry().expect("registry"));
    assert_eq!(undeclared.settings().value("mailgate.relay.listen"), None);
    assert!(
        undeclared
            .settings()
            .warnings()
            .iter()
            .any(|w| w.0.contains("mailgate.relay.listen")),
        "{:?}",
        undeclared.settings().warnings()
    );
}
