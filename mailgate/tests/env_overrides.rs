//! Environment overrides are off in the library unless asked for. One test
//! in its own binary: it sets a process-wide variable.

#![cfg(feature = "open")]

use mailgate::{Mailer, Origin, keys};

#[test]
fn a_library_reads_the_environment_only_when_told_to() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("is.properties"),
        "mksis.logging.email.server.hostname=from-file.example.com\n\
         mksis.logging.email.server.port=25\n",
    )
    .expect("is.properties");
    // SAFETY: the only test of this binary; nothing reads the environment
    // on another thread meanwhile.
    unsafe {
        std::env::set_var(
            "MKSIS_LOGGING_EMAIL_SERVER_HOSTNAME",
            "from-env.example.com",
        )
    };

    let by_default = Mailer::builder().config_dir(dir.path()).build().unwrap();
    assert_eq!(by_default.smtp_server(), "from-file.example.com");

    let opted_in = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(true)
        .build()
        .unwrap();
    assert_eq!(opted_in.smtp_server(), "from-env.example.com");
    assert!(matches!(
        opted_in.settings().origin(keys::SERVER_HOSTNAME),
        Some(Origin::Env { .. })
    ));

    // The builder's own settings win over the environment.
    let typed = Mailer::builder()
        .config_dir(dir.path())
        .env_overrides(true)
        .property(keys::SERVER_HOSTNAME, "from-code.example.com")
        .build()
        .unwrap();
    assert_eq!(typed.smtp_server(), "from-code.example.com");

    unsafe { std::env::remove_var("MKSIS_LOGGING_EMAIL_SERVER_HOSTNAME") };
}
