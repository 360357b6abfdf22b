use super::*;
use crate::error::Error;

/// The keys the built-in strategies declare, as their crates do.
pub(crate) mod test_keys {
    use crate::strategy::KeySpec;
    pub const EMAIL_PASSWORD: &str = "mksis.logging.emailfrom.password";
    pub const OAUTH_CLIENT_ID: &str = "mksis.security.smtp.oauth.clientID";
    pub const OAUTH_CLIENT_SECRET: &str = "mksis.security.smtp.oauth.clientSecret";
    pub const OAUTH_TOKEN_ENDPOINT: &str = "mksis.security.smtp.oauth.tokenEndpointURL";
    pub const OAUTH_SCOPE: &str = "mksis.security.smtp.oauth.scope";
    pub const SECRETS: &[&str] = &[EMAIL_PASSWORD, OAUTH_CLIENT_SECRET];
    pub const SPECS: &[KeySpec] = &[
        KeySpec::secret(EMAIL_PASSWORD).misspelled_as(&["mksis.logging.email.password"]),
        KeySpec::new(OAUTH_CLIENT_ID).in_security_file(),
        KeySpec::secret(OAUTH_CLIENT_SECRET).in_security_file(),
        KeySpec::new(OAUTH_TOKEN_ENDPOINT)
            .in_security_file()
            .url()
            .max_len(2048),
        KeySpec::new(OAUTH_SCOPE).in_security_file().max_len(2048),
    ];
}
use test_keys as vendor;

fn load(is: &str) -> Result<Settings> {
    load_with(is, None)
}

fn load_with(is: &str, security: Option<&str>) -> Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("is.properties"), is).unwrap();
    if let Some(s) = security {
        std::fs::write(dir.path().join("security.properties"), s).unwrap();
    }
    let s = Settings::load(LoadOptions {
        files: ConfigFiles::in_dir(dir.path()),
        strategy_keys: vendor::SPECS.to_vec(),
        ..LoadOptions::default()
    });
    drop(dir);
    s
}

const HOST: &str = "mksis.logging.email.server.hostname=smtp.example.com\n";

fn config_err(r: Result<Settings>) -> String {
    match r {
        Err(Error::Config(e)) => e.to_string(),
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn defaults() {
    let s = load(HOST).unwrap();
    assert_eq!(s.server().host, "smtp.example.com");
    assert_eq!(s.server().port, 25);
    assert_eq!(s.server().tls, TlsMode::None);
    assert_eq!(s.flags(), &AuthFlags::default());
    assert!(s.warnings().is_empty());
}

#[test]
fn missing_hostname_names_key_and_file() {
    let msg = config_err(load("mksis.smtp.authentication=false\n"));
    assert!(
        msg.contains("`mksis.logging.email.server.hostname`"),
        "{msg}"
    );
    assert!(msg.contains("is.properties"), "{msg}");
}

#[test]
fn blank_hostname_names_line() {
    let msg = config_err(load("# c\nmksis.logging.email.server.hostname =   \n"));
    assert!(msg.contains("is blank"), "{msg}");
    assert!(msg.contains("is.properties:2"), "{msg}");
}

#[test]
fn flag_that_is_not_boolean() {
    let msg = config_err(load(&format!("{HOST}mksis.smtp.authentication=yes\n")));
    assert!(msg.contains("`mksis.smtp.authentication`"), "{msg}");
    assert!(msg.contains("`yes`"), "{msg}");
    assert!(msg.contains("`true` or `false`"), "{msg}");
    assert!(msg.contains("is.properties:2"), "{msg}");
}

#[test]
fn flags_are_case_insensitive() {
    let s = load(&format!(
        "{HOST}mksis.smtp.authentication=TRUE\nmksis.smtp.oauth.authentication=False\n"
    ))
    .unwrap();
    assert!(s.flags().basic);
    assert!(!s.flags().oauth);
}

#[test]
fn port_out_of_range() {
    for bad in ["0", "65536", "-1", "smtp"] {
        let msg = config_err(load(&format!(
            "{HOST}mksis.logging.email.server.port={bad}\n"
        )));
        assert!(msg.contains("1 to 65535"), "{msg}");
        assert!(msg.contains(&format!("`{bad}`")), "{msg}");
    }
    assert_eq!(
        load(&format!("{HOST}mksis.logging.email.server.port=65535\n"))
            .unwrap()
            .server()
            .port,
        65535
    );
}

#[test]
fn malformed_address() {
    let msg = config_err(load(&format!(
        "{HOST}mksis.logging.email.from=not an address\n"
    )));
    assert!(msg.contains("`mksis.logging.email.from`"), "{msg}");
    assert!(msg.contains("e-mail address"), "{msg}");
}

#[test]
fn unreadable_file() {
    let err = Settings::load(LoadOptions {
        files: ConfigFiles {
            dir: None,
            is: Some("/nonexistent/is.properties".into()),
            security: None,
            security_optional: false,
        },
        ..LoadOptions::default()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/is.properties"), "{msg}");
    assert_eq!(err.exit_code(), 78);
}

#[test]
fn tls_modes() {
    let on = "mksis.smtp.ssl.enabled=true\n";
    assert_eq!(
        load(&format!("{HOST}{on}")).unwrap().server().tls,
        TlsMode::StartTls
    );
    assert_eq!(
        load(&format!("{HOST}{on}mksis.logging.email.server.port=465\n"))
            .unwrap()
            .server()
            .tls,
        TlsMode::Implicit
    );
    assert_eq!(
        load(&format!("{HOST}{on}mailgate.smtp.ssl.mode=implicit\n"))
            .unwrap()
            .server()
            .tls,
        TlsMode::Implicit
    );
    let msg = config_err(load(&format!("{HOST}{on}mailgate.smtp.ssl.mode=ssl\n")));
    assert!(msg.contains("`starttls` or `implicit`"), "{msg}");
}

#[test]
fn timeout_must_be_positive() {
    let msg = config_err(load(&format!("{HOST}mailgate.smtp.timeoutSeconds=0\n")));
    assert!(msg.contains("mailgate.smtp.timeoutSeconds"), "{msg}");
    let s = load(&format!("{HOST}mailgate.smtp.timeoutSeconds=2.5\n")).unwrap();
    assert_eq!(s.server().timeout, Duration::from_millis(2500));
}

#[test]
fn near_miss_warns_and_unrelated_keys_are_silent() {
    let s = load(&format!(
        "{HOST}mksis.smtp.authentification=true\nmksis.im.some.unrelated.key=1\nmksis.dbtype=oracle\nmailgate.smtp.bogus=1\n"
    ))
    .unwrap();
    let w: Vec<_> = s.warnings().iter().map(|w| w.0.as_str()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter()
            .any(|w| w.contains("`mksis.smtp.authentification` at")
                && w.contains("did you mean `mksis.smtp.authentication`?")),
        "{w:?}"
    );
    assert!(w.iter().any(|w| w.contains("mailgate.smtp.bogus")), "{w:?}");
}

#[test]
fn password_without_from_is_a_known_confusion() {
    let s = load(&format!("{HOST}mksis.logging.email.password=x\n")).unwrap();
    let w = &s.warnings()[0].0;
    assert!(
        w.contains("did you mean `mksis.logging.emailfrom.password`?"),
        "{w}"
    );
    assert!(!w.contains("=x"), "{w}");
}

#[test]
fn missing_secret_names_security_file() {
    let s = load(HOST).unwrap();
    let msg = s
        .require(vendor::OAUTH_CLIENT_SECRET, "oauth")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("security.properties"), "{msg}");
    assert!(msg.contains("oauth strategy"), "{msg}");
}

#[test]
fn security_file_is_merged() {
    let s = load_with(HOST, Some("mksis.security.smtp.oauth.scope=s1\n")).unwrap();
    assert_eq!(s.value(vendor::OAUTH_SCOPE), Some("s1"));
    assert_eq!(s.files_read().len(), 2);
}

#[test]
fn invalid_secret_value_is_not_shown() {
    let s = load(&format!("{HOST}mksis.logging.emailfrom.password=hunter2\n")).unwrap();
    let msg = s.invalid(vendor::EMAIL_PASSWORD, "something").to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn ca_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("is.properties"),
        format!("{HOST}mailgate.smtp.ssl.caFile=ca.pem, other.pem\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not pem").unwrap();
    let err = Settings::load(LoadOptions {
        files: ConfigFiles::in_dir(dir.path()),
        ..LoadOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("ca.pem"), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");
}

#[test]
fn hostname_with_a_port_is_refused_and_ipv6_is_bracketed() {
    let msg = config_err(load("mksis.logging.email.server.hostname=127.0.0.1:25\n"));
    assert!(msg.contains("without a port"), "{msg}");
    let s = load("mksis.logging.email.server.hostname=::1\nmksis.logging.email.server.port=2525\n")
        .unwrap();
    assert_eq!(s.server().address(), "[::1]:2525");
}

#[test]
fn odd_tls_settings_warn() {
    let s = load(&format!(
        "{HOST}mailgate.smtp.ssl.mode=implicit\nmksis.logging.email.server.port=465\n"
    ))
    .unwrap();
    let w: Vec<_> = s.warnings().iter().map(|w| w.0.as_str()).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("`mailgate.smtp.ssl.mode` is ignored")),
        "{w:?}"
    );
    assert!(w.iter().any(|w| w.contains("port 465")), "{w:?}");
}

#[test]
fn unrelated_keys_are_not_kept() {
    let s = load(&format!(
        "{HOST}mksis.db.password=dbsecret\nmksis.im.name=x\n"
    ))
    .unwrap();
    assert!(s.entry("mksis.db.password").is_none());
    assert!(!format!("{s:?}").contains("dbsecret"));
}

#[test]
fn a_too_long_url_is_echoed_without_its_password() {
    let url = format!("postgres://mg:pw-secret-9@db/{}", "x".repeat(3000));
    let err = load(&format!("{HOST}mailgate.outbox.url={url}\n")).unwrap_err();
    let msg = format!("{err} {err:?}");
    assert!(msg.contains("mailgate.outbox.url"), "{msg}");
    assert!(!msg.contains("pw-secret-9"), "{msg}");
}

#[test]
fn delay_warnings_default_to_4_hours_take_decimals_and_0_turns_them_off() {
    let s = load(HOST).unwrap();
    assert_eq!(
        s.outbox().delay_warning,
        Some(Duration::from_secs(4 * 3600))
    );
    let s = load(&format!("{HOST}mailgate.outbox.delayWarningHours=0.25\n")).unwrap();
    assert_eq!(s.outbox().delay_warning, Some(Duration::from_secs(900)));
    let s = load(&format!("{HOST}mailgate.outbox.delayWarningHours=0\n")).unwrap();
    assert_eq!(s.outbox().delay_warning, None);
    for bad in ["-1", "NaN", "inf", "8761", "four"] {
        let err = load(&format!("{HOST}mailgate.outbox.delayWarningHours={bad}\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("mailgate.outbox.delayWarningHours"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn sent_bodies_are_dropped_unless_kept() {
    assert!(!load(HOST).unwrap().outbox().keep_sent_bodies);
    let s = load(&format!("{HOST}mailgate.outbox.keepSentBodies=true\n")).unwrap();
    assert!(s.outbox().keep_sent_bodies);
    let err = load(&format!("{HOST}mailgate.outbox.keepSentBodies=yes\n")).unwrap_err();
    assert!(
        err.to_string().contains("mailgate.outbox.keepSentBodies"),
        "{err}"
    );
}

#[test]
fn the_worker_timeout_defaults_to_30_s_and_is_checked() {
    let s = load(HOST).unwrap();
    assert_eq!(s.outbox().worker_timeout, Duration::from_secs(30));
    let s = load(&format!("{HOST}mailgate.outbox.workerTimeoutSeconds=3\n")).unwrap();
    assert_eq!(s.outbox().worker_timeout, Duration::from_secs(3));
    for bad in ["0", "3601", "ten"] {
        let err = load(&format!(
            "{HOST}mailgate.outbox.workerTimeoutSeconds={bad}\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("mailgate.outbox.workerTimeoutSeconds"),
            "{err}"
        );
    }
}

#[test]
fn debug_shows_no_url_password_and_no_declared_secret() {
    let s = load(&format!(
        "{HOST}mailgate.outbox.url=postgres://mg:pw-secret-9@db/mail\n"
    ))
    .unwrap();
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("pw-secret-9"), "{dbg}");
    assert!(dbg.contains("postgres://mg@db/mail"), "{dbg}");
}

#[test]
fn the_declaration_decides_what_is_secret_and_the_name_guess_covers_the_rest() {
    static SPECS: &[KeySpec] = &[
        KeySpec::new("x.vault.tokenTtlSeconds"),
        KeySpec::secret("x.vault.credential"),
    ];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("is.properties"),
        format!(
            "{HOST}x.vault.tokenTtlSeconds=60\nx.vault.credential=c-r-e-d\n\
             mksis.logging.emailfrom.password=pw-1\n"
        ),
    )
    .unwrap();
    let s = Settings::load(LoadOptions {
        files: ConfigFiles::in_dir(dir.path()),
        strategy_keys: SPECS.to_vec(),
        ..LoadOptions::default()
    })
    .unwrap();
    // Named like a secret but declared plain: readable.
    assert_eq!(s.value("x.vault.tokenTtlSeconds"), Some("60"));
    assert!(!s.is_secret("x.vault.tokenTtlSeconds"));
    // Declared secret, though its name says nothing: held apart.
    assert!(s.is_secret("x.vault.credential"));
    assert_eq!(s.value("x.vault.credential"), None);
    assert_eq!(
        s.require_secret("x.vault.credential", "vault")
            .unwrap()
            .expose_secret(),
        "c-r-e-d"
    );
    assert!(!format!("{s:?}").contains("c-r-e-d"));
    // Undeclared here (no basic strategy registered) and named like a
    // password: dropped as unknown, never kept in the clear.
    assert!(!format!("{s:?}").contains("pw-1"));
}

#[test]
fn a_secret_keeps_its_trailing_escaped_space() {
    use secrecy::ExposeSecret;
    let s = load(&format!("{HOST}mksis.logging.emailfrom.password=pw\\ \n")).unwrap();
    let secret = s.require_secret(vendor::EMAIL_PASSWORD, "basic").unwrap();
    assert_eq!(secret.expose_secret(), "pw ");
}

#[test]
fn shown_values_hide_url_credentials_and_escape_controls() {
    assert_eq!(
        shown_value("https://app:s3cret@login.example.com/t?x=1"),
        "https://<withheld>@login.example.com/t?x=1"
    );
    assert_eq!(
        shown_value("https://login.example.com/a@b"),
        "https://login.example.com/a@b"
    );
    // Unencoded delimiters in a pasted password do not end it early.
    for url in [
        "postgres://mg:ab#cd@db/mail",
        "postgres://mg:ab?cd@db/mail",
        "postgres://mg:ab/cd@db/mail",
    ] {
        let shown = shown_value(url);
        assert_eq!(shown, "postgres://<withheld>@db/mail", "{url}");
    }
    assert_eq!(shown_value("yes\u{1b}[2J"), "yes\\u{1b}[2J");
}

#[test]
fn env_overrides_files() {
    // A key no other test reads, so the process-wide variable cannot interfere.
    let var = crate::properties::env_var_name(keys::HELO_NAME);
    // SAFETY: only this test sets or reads this variable.
    unsafe { std::env::set_var(&var, "relay.example.org") };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("is.properties"),
        format!("{HOST}mailgate.smtp.heloName=file\n"),
    )
    .unwrap();
    let s = Settings::load(LoadOptions {
        files: ConfigFiles::in_dir(dir.path()),
        env: true,
        ..LoadOptions::default()
    })
    .unwrap();
    unsafe { std::env::remove_var(&var) };
    assert_eq!(s.server().helo_name.as_deref(), Some("relay.example.org"));
    assert_eq!(
        s.entry(keys::HELO_NAME).unwrap().origin,
        Origin::Env { var }
    );
}

#[test]
fn an_oversized_value_names_key_file_and_line_and_is_cut_short() {
    let host = "h".repeat(8 * 1024);
    let msg = config_err(load(&format!(
        "# c\nmksis.logging.email.server.hostname={host}\n"
    )));
    assert!(
        msg.contains("`mksis.logging.email.server.hostname`"),
        "{msg}"
    );
    assert!(msg.contains("is.properties:2"), "{msg}");
    assert!(msg.contains("8192 bytes long, more than the 253"), "{msg}");
    assert!(
        msg.len() < 400,
        "the echo is cut short: {} bytes",
        msg.len()
    );
    // A secret's start is never shown.
    let pw = "p".repeat(10_000);
    let msg = config_err(load(&format!(
        "{HOST}mksis.logging.emailfrom.password={pw}\n"
    )));
    assert!(msg.contains("mksis.logging.emailfrom.password"), "{msg}");
    assert!(!msg.contains("ppp"), "{msg}");
}

#[test]
fn invalid_values_are_echoed_cut_short() {
    let long = "x".repeat(500);
    let msg = config_err(load(&format!(
        "{HOST}mailgate.smtp.ssl.mode={long}\nmksis.smtp.ssl.enabled=true\n"
    )));
    assert!(msg.contains("..."), "{msg}");
    assert!(msg.len() < 400, "{msg}");
}

#[cfg(unix)]
#[test]
fn fifo_and_device_properties_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("is.properties");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for path in [fifo.as_path(), Path::new("/dev/zero")] {
        let start = std::time::Instant::now();
        let err = Settings::load(LoadOptions {
            files: ConfigFiles {
                dir: None,
                is: Some(path.to_owned()),
                security: None,
                security_optional: false,
            },
            ..LoadOptions::default()
        })
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(err.exit_code(), 78);
        let msg = err.to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}

#[cfg(unix)]
#[test]
fn fifo_and_device_ca_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.pem");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for ca in ["ca.pem", "/dev/zero", "/dev/urandom"] {
        std::fs::write(
            dir.path().join("is.properties"),
            format!("{HOST}mailgate.smtp.ssl.caFile={ca}\n"),
        )
        .unwrap();
        let start = std::time::Instant::now();
        let err = Settings::load(LoadOptions {
            files: ConfigFiles::in_dir(dir.path()),
            ..LoadOptions::default()
        })
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2), "{ca}");
        let msg = err.to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
        assert!(msg.contains("mailgate.smtp.ssl.caFile"), "{msg}");
        assert_eq!(err.exit_code(), 78);
    }
}

#[test]
fn oversized_properties_and_ca_files_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.pem");
    let f = std::fs::File::create(&big).unwrap();
    // Sparse: no disk needed, and nothing may be read from it.
    f.set_len(MAX_CA_FILE_BYTES + 1).unwrap();
    std::fs::write(
        dir.path().join("is.properties"),
        format!("{HOST}mailgate.smtp.ssl.caFile=big.pem\n"),
    )
    .unwrap();
    let msg = Settings::load(LoadOptions {
        files: ConfigFiles::in_dir(dir.path()),
        ..LoadOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(msg.contains("larger than 4194304 bytes"), "{msg}");
    std::fs::File::create(dir.path().join("is.properties"))
        .unwrap()
        .set_len(mailgate_properties::MAX_FILE_BYTES + 1)
        .unwrap();
    let msg = Settings::load(LoadOptions {
        files: ConfigFiles::in_dir(dir.path()),
        ..LoadOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(msg.contains("larger than 4194304 bytes"), "{msg}");
    assert!(msg.contains("is.properties"), "{msg}");
}

#[test]
fn vendor_email_keys_and_far_edits_get_no_did_you_mean() {
    let s = load(&format!(
        "{HOST}mksis.logging.email.to=ops@example.com\nmksis.logging.email.form=a@example.com\nmksis.logging.email.subject=x\n"
    ))
    .unwrap();
    let w: Vec<_> = s.warnings().iter().map(|w| w.0.as_str()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("`mksis.logging.email.form`")
            && w[0].contains("did you mean `mksis.logging.email.from`?"),
        "{w:?}"
    );
}

#[test]
fn a_control_character_in_the_sender_names_key_file_and_line() {
    let msg = config_err(load(&format!(
        "{HOST}mksis.logging.email.from=alm\\u0001@example.com\n"
    )));
    assert!(msg.contains("`mksis.logging.email.from`"), "{msg}");
    assert!(msg.contains("is.properties:2"), "{msg}");
    assert!(msg.contains("\\u{1}"), "{msg}");
}

#[test]
fn a_key_every_strategy_needs_says_so_in_english() {
    let msg = config_err(load("mksis.smtp.authentication=false\n"));
    assert!(msg.contains("required by every strategy"), "{msg}");
    let s = load(HOST).unwrap();
    let msg = s
        .require(vendor::OAUTH_SCOPE, "oauth")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("required by the oauth strategy"), "{msg}");
}

#[test]
fn a_vendor_encrypted_secret_is_reported_not_used() {
    let s = load(&format!(
        "{HOST}mksis.logging.emailfrom.password={{AES}}c2VjcmV0LXZhbHVlLWhlcmU=\n"
    ))
    .unwrap();
    let e = s
        .require_secret(vendor::EMAIL_PASSWORD, "basic")
        .unwrap_err();
    assert!(matches!(e, ConfigError::ForeignEncrypted { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("is.properties:2"), "{msg}");
    assert!(msg.contains("encryptPassword"), "{msg}");
    assert!(!msg.contains("c2VjcmV0"), "{msg}");
    assert!(s.verify_secrets().is_err());
}

#[test]
fn loading_finishes_an_interrupted_key_rotation() {
    use mailgate_secrets::{RotationStep, SecretKey, rotate_key_with_hook};
    use secrecy::ExposeSecret;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join(DEFAULT_KEY_FILE);
    let old = SecretKey::create(&key_file).unwrap();
    let is = dir.path().join("is.properties");
    let security = dir.path().join("security.properties");
    std::fs::write(&is, format!("{HOST}{}=pw\n", vendor::EMAIL_PASSWORD)).unwrap();
    std::fs::write(&security, format!("{}=cs\n", vendor::OAUTH_CLIENT_SECRET)).unwrap();
    mailgate_secrets::encrypt_files(&[&is, &security], vendor::SECRETS, &old).unwrap();
    let new = SecretKey::generate().unwrap();
    // Killed between the two files: is.properties under the new key,
    // security.properties under the old one.
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rotate_key_with_hook(
            &key_file,
            &[&is, &security],
            vendor::SECRETS,
            &new,
            &mut |s| {
                if s == RotationStep::FileRewritten(0) {
                    panic!("killed");
                }
            },
        )
    }));
    assert!(crashed.is_err());
    let s = Settings::load(LoadOptions {
        files: ConfigFiles::in_dir(dir.path()),
        strategy_keys: vendor::SPECS.to_vec(),
        ..LoadOptions::default()
    })
    .unwrap();
    assert!(!mailgate_secrets::pending_key_path(&key_file).exists());
    assert_eq!(SecretKey::load(&key_file).unwrap().id(), new.id());
    s.verify_secrets().unwrap();
    assert_eq!(
        s.require_secret(vendor::OAUTH_CLIENT_SECRET, "oauth")
            .unwrap()
            .expose_secret(),
        "cs"
    );
}
