//! A mailer with an outbox, for the outbox end-to-end tests (per recipient,
//! DSNs, conversion): open relay to a peer on loopback, plus `extra` keys.

use mailgate::Mailer;
use mailgate_integration_tests::ConfigDir;

/// A config folder for the upstream on `port` with `extra` keys, and a
/// mailer built from it with the outbox the settings name.
pub fn outbox_mailer(port: u16, extra: &[(&str, &str)]) -> (ConfigDir, Mailer) {
    let port = port.to_string();
    let mut is = vec![
        ("mksis.logging.email.from", "alm@example.com"),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
        ("mksis.logging.email.server.port", port.as_str()),
        ("mailgate.smtp.timeoutSeconds", "10"),
    ];
    is.extend_from_slice(extra);
    let dir = ConfigDir::with_properties(&is, &[]);
    let mailer = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(false)
        .build()
        .expect("mailer builds");
    (dir, mailer)
}
