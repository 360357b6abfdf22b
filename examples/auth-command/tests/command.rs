//! The `command` strategy: against the session test double (no network),
//! registered explicitly and through inventory, and end to end through a
//! `Mailer` against the development SMTP server.

use std::path::Path;
use std::time::{Duration, Instant};

use mailgate_auth_command::{COMMAND_KEY, CommandAuth, DESCRIPTOR, TIMEOUT_KEY};
use mailgate_core::properties::ConfigFiles;
use mailgate_core::secrecy::ExposeSecret;
use mailgate_core::settings::LoadOptions;
use mailgate_core::{AuthFlags, AuthStrategy, Error, Mailer, Registry, ScriptedServer, Settings};
use mailgate_devserver::{DevSmtpServer, Mechanism};

const USER: &str = "alm@example.com";

fn write_is(dir: &Path, extra: &str) {
    let is = format!(
        "mksis.logging.email.server.hostname=localhost\n\
         mksis.logging.email.from={USER}\n\
         mailgate.smtp.auth.strategy=command\n{extra}"
    );
    std::fs::write(dir.join("is.properties"), is).unwrap();
}

fn strategy(command: &str, timeout: Option<u64>) -> CommandAuth {
    let dir = tempfile::tempdir().unwrap();
    let mut extra = format!("{COMMAND_KEY}={command}\n");
    if let Some(t) = timeout {
        extra += &format!("{TIMEOUT_KEY}={t}\n");
    }
    write_is(dir.path(), &extra);
    let settings = Settings::load(LoadOptions {
        files: ConfigFiles::in_dir(dir.path()),
        strategy_keys: DESCRIPTOR.keys.to_vec(),
        ..LoadOptions::default()
    })
    .unwrap();
    CommandAuth::from_settings(&settings).unwrap()
}

#[tokio::test]
async fn the_password_is_the_commands_stdout_and_goes_as_plain() {
    let auth = strategy("printf 'hunter2\\n'", None);
    let password = auth.prepare().await.unwrap();
    assert_eq!(password.expose_secret(), "hunter2");

    let mut server = ScriptedServer::new()
        .offering(&["PLAIN"])
        .reply("235 2.7.0 ok");
    auth.authenticate(&mut server.session(), password)
        .await
        .unwrap();
    // base64("\0alm@example.com\0hunter2")
    assert_eq!(
        server.sent(),
        ["AUTH PLAIN AGFsbUBleGFtcGxlLmNvbQBodW50ZXIy"]
    );
    assert_eq!(server.shown(), ["AUTH PLAIN <redacted>"]);
}

#[tokio::test]
async fn each_connection_gets_its_own_password() {
    // Two prepares, two credentials: nothing is shared on the strategy.
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("n");
    let auth = strategy(
        &format!(
            "n=$(cat {0} 2>/dev/null || echo 0); echo $((n+1)) > {0}; echo pw$n",
            counter.display()
        ),
        None,
    );
    let first = auth.prepare().await.unwrap();
    let second = auth.prepare().await.unwrap();
    assert_eq!(first.expose_secret(), "pw0");
    assert_eq!(second.expose_secret(), "pw1");
}

#[tokio::test]
async fn a_refusal_is_auth_refused_and_the_echo_is_masked() {
    let auth = strategy("echo hunter2", None);
    let password = auth.prepare().await.unwrap();
    let mut server = ScriptedServer::new()
        .offering(&["PLAIN"])
        .reply("535 5.7.8 no such password: hunter2");
    let err = auth
        .authenticate(&mut server.session(), password)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthRefused { .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
}

#[tokio::test]
async fn a_failing_command_shows_its_stderr_without_the_password() {
    let auth = strategy(
        "echo hunter2; echo 'vault: hunter2 is expired' >&2; exit 3",
        None,
    );
    let err = auth.prepare().await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("is expired"), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert_eq!(err.exit_code(), 78);
}

#[tokio::test]
async fn a_hanging_command_is_killed_at_its_deadline() {
    let auth = strategy("sleep 30", Some(1));
    let started = Instant::now();
    let err = auth.prepare().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("within 1 s"), "{err}");
}

#[test]
fn a_bad_timeout_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    write_is(
        dir.path(),
        &format!("{COMMAND_KEY}=true\n{TIMEOUT_KEY}=soon\n"),
    );
    let settings = Settings::load(LoadOptions {
        files: ConfigFiles::in_dir(dir.path()),
        strategy_keys: DESCRIPTOR.keys.to_vec(),
        ..LoadOptions::default()
    })
    .unwrap();
    let err = CommandAuth::from_settings(&settings).unwrap_err();
    assert!(err.to_string().contains(TIMEOUT_KEY), "{err}");
    assert_eq!(err.exit_code(), 78);
}

fn flags() -> AuthFlags {
    AuthFlags {
        strategy_override: Some("command".into()),
        ..AuthFlags::default()
    }
}

#[test]
fn registered_explicitly() {
    let registry = Registry::new().with(&DESCRIPTOR).unwrap();
    let (resolution, descriptor) = registry.resolve(&flags()).unwrap();
    assert_eq!(resolution.strategy, "command");
    assert!(std::ptr::eq(descriptor, &DESCRIPTOR));
}

#[test]
fn registered_through_inventory() {
    let registry = Registry::collect().unwrap();
    assert_eq!(registry.names(), ["command"]);
    // Listed explicitly as well: the same descriptor is not a duplicate.
    let both = Registry::new()
        .with(&DESCRIPTOR)
        .unwrap()
        .with_inventory()
        .unwrap();
    assert_eq!(both.names(), ["command"]);
}

#[test]
fn a_missing_registration_says_how_to_register() {
    let msg = Registry::new().resolve(&flags()).unwrap_err().to_string();
    assert!(
        msg.contains("no authentication strategy `command` is registered"),
        "{msg}"
    );
    assert!(
        msg.contains("Registry::with(&its_crate::DESCRIPTOR)"),
        "{msg}"
    );
}

#[tokio::test]
async fn sends_through_a_mailer_against_a_real_server() {
    let server = DevSmtpServer::builder()
        .starttls_required()
        .mechanisms([Mechanism::Plain])
        .user(USER, "from-the-command")
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    server.ca().write_ca_pem(dir.path().join("ca.pem")).unwrap();
    write_is(
        dir.path(),
        &format!(
            "mksis.smtp.ssl.enabled=true\n\
             mksis.logging.email.server.port={}\n\
             mailgate.smtp.ssl.caFile=ca.pem\n\
             {COMMAND_KEY}=echo from-the-command\n",
            server.port()
        ),
    );
    let mailer = Mailer::builder()
        .registry(Registry::new().with(&DESCRIPTOR).unwrap())
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .unwrap();
    assert_eq!(mailer.resolution().strategy, "command");
    mailer
        .sendmail(USER, "dev@example.com", "from a command", "hello")
        .await
        .unwrap();
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let auth = messages[0].auth.as_ref().expect("authenticated");
    assert_eq!(
        (auth.mechanism, auth.user.as_str()),
        (Mechanism::Plain, USER)
    );
    assert!(messages[0].tls);
    mailer.close().await;
}
