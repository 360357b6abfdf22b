//! The operator's side (issue 13), through the real binary: hostile local
//! files in every input path, `encrypt --rotate-key` killed at every step,
//! leftovers, `check` diagnostics, the vendor-folder guard and the command
//! line's conventions (completions, man page, `--version`, `-q`, `NO_COLOR`).

#![cfg(all(feature = "open", feature = "basic", feature = "oauth"))]

mod support;

use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mailgate::secrecy::ExposeSecret as _;
use mailgate::secrets::{SecretKey, decrypt_value, pending_key_path};
use mailgate_integration_tests::{
    ConfigDir, MeasuredRun, exit_code, output_text, run_mailgate, run_mailgate_measured,
};

const PW: &str = "mksis.logging.emailfrom.password";
const CS: &str = "mksis.security.smtp.oauth.clientSecret";
const PASSWORD: &str = "Pa55-w0rd-operator";
const CLIENT_SECRET: &str = "Cl1ent-S3cret-operator";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailgate")
}

fn mailgate(dir: &Path, args: &[&str]) -> Output {
    run_mailgate(bin(), dir, args)
}

/// `mailgate` with `envs` set.
fn mailgate_env(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .arg("--config-dir")
        .arg(dir)
        .args(args)
        .env_remove("MAILGATE_CONFIG_DIR")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("mailgate runs")
}

/// An open-relay folder pointing at a port nothing listens on: it loads,
/// and any send would fail only at connect.
fn open_dir(extra: &[(&str, &str)]) -> ConfigDir {
    let mut is = vec![
        ("mksis.smtp.oauth.authentication", "false"),
        ("mksis.smtp.authentication", "false"),
        ("mksis.logging.email.from", "alm@example.com"),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
        ("mksis.logging.email.server.port", "9"),
        ("mailgate.smtp.timeoutSeconds", "2"),
    ];
    is.extend_from_slice(extra);
    ConfigDir::with_properties(&is, &[])
}

/// The OAuth keys of `security.properties`, with `secret` as the client secret.
fn oauth_keys(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("mksis.security.smtp.oauth.clientID", "client".to_owned()),
        (CS, secret.to_owned()),
        (
            "mksis.security.smtp.oauth.tokenEndpointURL",
            "https://login.example.com/t/oauth2/v2.0/token".to_owned(),
        ),
        (
            "mksis.security.smtp.oauth.scope",
            "https://outlook.office365.com/.default".to_owned(),
        ),
    ]
}

/// A basic (over TLS) folder with both secrets, basic's and OAuth's, in
/// plain text.
fn secrets_dir() -> ConfigDir {
    let security = oauth_keys(CLIENT_SECRET);
    let security: Vec<(&str, &str)> = security.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ConfigDir::with_properties(
        &[
            ("mksis.smtp.authentication", "true"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.from", "alm@example.com"),
            (PW, PASSWORD),
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", "9"),
        ],
        &security,
    )
}

/// `FILE:LINE` of `key` in `file` of `dir`, as errors and `check` show it.
fn at(dir: &ConfigDir, file: &str, key: &str) -> String {
    let line = dir
        .read_file(file)
        .lines()
        .position(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} not in {file}"))
        + 1;
    format!("{}:{line}", dir.path().join(file).display())
}

fn mkfifo(path: &Path) -> PathBuf {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    path.to_owned()
}

/// A sparse file of `len` bytes: reading it would take long, refusing it not.
fn sparse(path: &Path, len: u64) -> PathBuf {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
    path.to_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Refused quickly, in little memory, with `code`, naming `name`.
#[track_caller]
fn assert_refused(run: &MeasuredRun, code: i32, name: &str, why: &str) {
    let (stdout, stderr) = output_text(&run.output);
    assert_eq!(
        run.output.status.code(),
        Some(code),
        "{name}: status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        run.output.status
    );
    assert!(
        run.elapsed < Duration::from_secs(5),
        "{name}: took {:?}",
        run.elapsed
    );
    assert!(
        run.peak_rss_kib < 64 * 1024,
        "{name}: peak RSS {} KiB",
        run.peak_rss_kib
    );
    assert!(stderr.contains(name), "{name}: {stderr}");
    assert!(stderr.contains(why), "{name}: {stderr}");
}

fn measured(dir: &Path, args: &[&str]) -> MeasuredRun {
    run_mailgate_measured(bin(), dir, args, Duration::from_secs(20))
}

// ---------------------------------------------------------------------------
// 1. Files that are not regular files, and oversized ones

#[test]
fn properties_files_that_are_fifos_devices_or_huge_are_refused() {
    let dir = open_dir(&[]);
    let fifo = mkfifo(&dir.path().join("fifo.properties"));
    let huge = sparse(&dir.path().join("huge.properties"), 8 << 20);
    for (flag, bad, why) in [
        ("--is", fifo.as_path(), "not a regular file"),
        ("--is", Path::new("/dev/zero"), "not a regular file"),
        ("--is", Path::new("/dev/urandom"), "not a regular file"),
        ("--is", huge.as_path(), "larger than 4194304 bytes"),
        ("--security", fifo.as_path(), "not a regular file"),
        ("--security", Path::new("/dev/zero"), "not a regular file"),
        ("--security", huge.as_path(), "larger than 4194304 bytes"),
    ] {
        let run = measured(dir.path(), &[flag, s(bad), "check"]);
        assert_refused(&run, 78, s(bad), why);
        // `encrypt` reads the same files the same way.
        let run = measured(dir.path(), &[flag, s(bad), "encrypt"]);
        assert_refused(&run, 78, s(bad), why);
    }
}

#[test]
fn ca_files_that_are_fifos_devices_or_huge_are_refused() {
    let dir = open_dir(&[]);
    let fifo = mkfifo(&dir.path().join("ca.pem"));
    let huge = sparse(&dir.path().join("huge.pem"), 8 << 20);
    for (bad, why) in [
        (fifo.as_path(), "not a regular file"),
        (Path::new("/dev/zero"), "not a regular file"),
        (Path::new("/dev/urandom"), "not a regular file"),
        (huge.as_path(), "larger than 4194304 bytes"),
    ] {
        dir.write_is(&[
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mailgate.smtp.ssl.caFile", s(bad)),
        ]);
        let run = measured(dir.path(), &["check"]);
        assert_refused(&run, 78, s(bad), why);
        let (_, stderr) = output_text(&run.output);
        assert!(stderr.contains("mailgate.smtp.ssl.caFile"), "{stderr}");
    }
}

#[test]
fn key_files_that_are_fifos_devices_or_huge_are_refused() {
    let dir = secrets_dir();
    assert_eq!(exit_code(&mailgate(dir.path(), &["encrypt"])), 0);
    let fifo = mkfifo(&dir.path().join("fifo.key"));
    let huge = sparse(&dir.path().join("huge.key"), 8 << 20);
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&huge, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (bad, why) in [
        (fifo.as_path(), "not a regular file"),
        (Path::new("/dev/zero"), "not a regular file"),
        (huge.as_path(), "too large"),
    ] {
        let run = measured(dir.path(), &["--key-file", s(bad), "check"]);
        assert_refused(&run, 78, s(bad), why);
    }
}

#[test]
fn message_inputs_that_are_fifos_devices_or_huge_are_refused() {
    let dir = open_dir(&[("mailgate.smtp.maxMessageBytes", "1000")]);
    let fifo = mkfifo(&dir.path().join("body.fifo"));
    let huge = sparse(&dir.path().join("huge.txt"), 1001);
    let base = ["send", "--to", "dev@example.com", "--subject", "s"];
    for (args, bad, code, why) in [
        (
            vec!["--body-file"],
            fifo.as_path(),
            66,
            "not a regular file",
        ),
        (
            vec!["--body-file"],
            Path::new("/dev/zero"),
            66,
            "not a regular file",
        ),
        (
            vec!["--body-file"],
            huge.as_path(),
            65,
            "larger than 1000 bytes",
        ),
        (
            vec!["--body", "b", "--html-file"],
            fifo.as_path(),
            66,
            "not a regular file",
        ),
        (
            vec!["--body", "b", "--html-file"],
            Path::new("/dev/urandom"),
            66,
            "not a regular file",
        ),
        (
            vec!["--body", "b", "--html-file"],
            huge.as_path(),
            65,
            "larger than 1000 bytes",
        ),
        (
            vec!["--body", "b", "--attach"],
            fifo.as_path(),
            66,
            "not a regular file",
        ),
        (
            vec!["--body", "b", "--attach"],
            Path::new("/dev/zero"),
            66,
            "not a regular file",
        ),
        (
            vec!["--body", "b", "--attach"],
            huge.as_path(),
            65,
            "larger than 1000 bytes",
        ),
        (
            vec!["--body", "b", "--attach"],
            Path::new("/nonexistent/f"),
            66,
            "cannot read",
        ),
    ] {
        let mut all: Vec<&str> = base.to_vec();
        all.extend(args);
        all.push(s(bad));
        let run = measured(dir.path(), &all);
        assert_refused(&run, code, s(bad), why);
    }
    for (bad, code, why) in [
        (fifo.as_path(), 66, "not a regular file"),
        (Path::new("/dev/zero"), 66, "not a regular file"),
        (huge.as_path(), 65, "larger than 1000 bytes"),
    ] {
        let run = measured(dir.path(), &["send", "--raw", s(bad)]);
        assert_refused(&run, code, s(bad), why);
    }
    // Without a limit set, the default one (25 MiB) holds too.
    let dir = open_dir(&[]);
    let huge = sparse(&dir.path().join("huge.eml"), 1 << 30);
    let run = measured(dir.path(), &["send", "--raw", s(&huge)]);
    assert_refused(&run, 65, s(&huge), "larger than 26214400 bytes");
}

#[test]
fn an_oversized_value_names_key_file_and_line() {
    let host = "h".repeat(8 << 20);
    let dir = ConfigDir::new();
    dir.write_file(
        "is.properties",
        format!("# x\nmksis.logging.email.server.hostname={host}\n"),
    );
    let run = measured(dir.path(), &["check"]);
    // 8 MiB is over the file limit already.
    assert_refused(&run, 78, "is.properties", "larger than 4194304 bytes");
    dir.write_file(
        "is.properties",
        format!(
            "# x\nmksis.logging.email.server.hostname={}\n",
            &host[..1 << 20]
        ),
    );
    let run = measured(dir.path(), &["check"]);
    assert_refused(&run, 78, "is.properties:2", "more than the 253 it may hold");
    let (_, stderr) = output_text(&run.output);
    assert!(
        stderr.contains("`mksis.logging.email.server.hostname`"),
        "{stderr}"
    );
    assert!(
        stderr.len() < 1000,
        "the echo is cut short: {} bytes",
        stderr.len()
    );
}

// ---------------------------------------------------------------------------
// 2. --rotate-key killed at every step, then recovered; leftovers

/// Every value decrypts with the key in `mailgate.key`, and the folder holds
/// no other key material: no pending file, no temporary key file.
#[track_caller]
fn assert_one_key(dir: &ConfigDir) -> SecretKey {
    let key = SecretKey::load(dir.path().join("mailgate.key")).expect("the key file loads");
    let is = mailgate::properties::Properties::read_file(&dir.is_path()).unwrap();
    let security = mailgate::properties::Properties::read_file(&dir.security_path()).unwrap();
    for (props, name, secret) in [(&is, PW, PASSWORD), (&security, CS, CLIENT_SECRET)] {
        let value = &props.get(name).unwrap().value;
        let plain = decrypt_value(&key, name, value).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(plain.expose_secret(), secret);
    }
    let mut others: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".properties"))
        .collect();
    others.sort();
    assert_eq!(
        others,
        ["mailgate.key"],
        "only the key file besides the properties"
    );
    key
}

#[test]
fn rotate_key_killed_at_each_step_is_finished_by_the_next_load_or_encrypt() {
    for (step, recover_with) in [
        ("pending", "check"),
        ("file1", "check"),
        ("file2", "encrypt"),
        ("promoted", "check"),
        ("file1", "encrypt"),
    ] {
        let dir = secrets_dir();
        assert_eq!(exit_code(&mailgate(dir.path(), &["encrypt"])), 0);
        let old = SecretKey::load(dir.path().join("mailgate.key")).unwrap();
        let killed = mailgate_env(
            dir.path(),
            &["encrypt", "--rotate-key"],
            &[("MAILGATE_TEST_ROTATE_KILL_AFTER", step)],
        );
        assert_eq!(
            killed.status.signal(),
            Some(libc::SIGKILL),
            "{step}: {}",
            killed.status
        );
        assert!(
            pending_key_path(&dir.path().join("mailgate.key")).exists(),
            "{step}"
        );

        // The next run finishes it: `check` (a load) or `encrypt`.
        let out = mailgate(dir.path(), &[recover_with]);
        let (stdout, stderr) = output_text(&out);
        assert_eq!(
            exit_code(&out),
            0,
            "{step}/{recover_with}: {stdout}\n{stderr}"
        );
        assert!(
            stderr.contains("finished a key rotation")
                || stdout.contains("finished an interrupted key rotation"),
            "{step}/{recover_with}: {stdout}\n{stderr}"
        );
        let key = assert_one_key(&dir);
        assert_ne!(key.id(), old.id(), "{step}: the new key is in the key file");
        // Loading needs nothing more: check decrypts every secret with it.
        assert_eq!(exit_code(&mailgate(dir.path(), &["check"])), 0, "{step}");
    }
}

#[test]
fn a_completed_rotation_leaves_the_new_key_in_the_key_file() {
    let dir = secrets_dir();
    assert_eq!(exit_code(&mailgate(dir.path(), &["encrypt"])), 0);
    let old = SecretKey::load(dir.path().join("mailgate.key")).unwrap();
    let out = mailgate(dir.path(), &["encrypt", "--rotate-key"]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("now holds the new key"), "{stdout}");
    let key = assert_one_key(&dir);
    assert_ne!(key.id(), old.id());
    // With a key of one's own: it is used, and the given file left alone.
    let mine = dir.path().join("../mine.key");
    let _ = std::fs::remove_file(&mine);
    let given = SecretKey::create(&mine).unwrap();
    let out = mailgate(dir.path(), &["encrypt", "--rotate-key", s(&mine)]);
    assert_eq!(exit_code(&out), 0, "{}", output_text(&out).1);
    assert_eq!(assert_one_key(&dir).id(), given.id());
    std::fs::remove_file(&mine).unwrap();
    // A key file that does not exist is refused before anything is written.
    let out = mailgate(dir.path(), &["encrypt", "--rotate-key", s(&mine)]);
    assert_eq!(exit_code(&out), 66, "{}", output_text(&out).1);
    assert_eq!(assert_one_key(&dir).id(), given.id());
}

#[test]
fn encrypt_removes_stale_temp_files_of_its_own_pattern_only() {
    let dir = secrets_dir();
    // A killed run just now: its leftovers go at the next run, however young.
    let stale = [
        dir.write_file(
            ".mailgate-Ab12Cd.tmp",
            "mksis.logging.emailfrom.password=plain\n",
        ),
        dir.write_file(".mailgate-key-Xy98Zw", "00112233"),
    ];
    let kept = [
        dir.write_file(".mailgate-notours.tmp", "x"),
        dir.write_file(".mailgate-key-Xy98Zw.bak", "x"),
        dir.write_file("notes.txt", "x"),
    ];
    // While another encrypt holds the folder, nothing is removed: its
    // temporary files may be in progress.
    let held = std::fs::File::open(dir.path()).unwrap();
    use std::os::unix::io::AsRawFd as _;
    // SAFETY: flock on a descriptor owned here.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(held);
    });
    let started = std::time::Instant::now();
    let out = mailgate(dir.path(), &["encrypt"]);
    releaser.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "it waited for the lock"
    );
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 0, "{stdout}\n{stderr}");
    for p in &stale {
        assert!(!p.exists(), "{} left", p.display());
        assert!(
            stdout.contains(&format!("removed {}", p.display())),
            "{stdout}"
        );
    }
    for p in &kept {
        assert!(p.exists(), "{} removed", p.display());
    }
}

#[test]
fn encrypt_gives_up_on_a_folder_another_encrypt_holds() {
    let dir = secrets_dir();
    let stale = dir.write_file(".mailgate-Ab12Cd.tmp", "x");
    let held = std::fs::File::open(dir.path()).unwrap();
    use std::os::unix::io::AsRawFd as _;
    // SAFETY: flock on a descriptor owned here.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let out = mailgate(dir.path(), &["encrypt"]);
    let (_, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 75, "{stderr}");
    assert!(stderr.contains("another `mailgate encrypt`"), "{stderr}");
    assert!(stale.exists());
    assert!(!dir.read_file("is.properties").contains("ENC("));
    drop(held);
}

// ---------------------------------------------------------------------------
// 3. check: origins, near misses, rule ids, errors with file and line

#[test]
fn check_shows_where_each_setting_came_from() {
    let dir = open_dir(&[("mailgate.smtp.heloName", "from-file.example.com")]);
    let out = mailgate_env(
        dir.path(),
        &["check"],
        &[("MAILGATE_SMTP_HELONAME", "from-env.example.com")],
    );
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 0, "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("mailgate.smtp.heloName"))
        .unwrap_or_else(|| panic!("no heloName line:\n{stdout}"));
    assert!(line.contains("from-env.example.com"), "{line}");
    assert!(
        line.contains("environment variable MAILGATE_SMTP_HELONAME"),
        "{line}"
    );
    let line = stdout
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("mksis.logging.email.server.hostname")
        })
        .unwrap();
    assert!(
        line.contains(&at(
            &dir,
            "is.properties",
            "mksis.logging.email.server.hostname"
        )),
        "{line}"
    );
    assert!(
        stdout.contains("rule:     no-auth-flag: neither"),
        "{stdout}"
    );

    let out = mailgate_env(
        dir.path(),
        &["check", "--json"],
        &[("MAILGATE_SMTP_HELONAME", "from-env.example.com")],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let helo = &json["settings"]["mailgate.smtp.heloName"];
    assert_eq!(helo["source"], "env", "{json:#}");
    assert_eq!(helo["variable"], "MAILGATE_SMTP_HELONAME");
    assert_eq!(helo["value"], "from-env.example.com");
    let host = &json["settings"]["mksis.logging.email.server.hostname"];
    assert_eq!(host["source"], "file");
    let line: u64 = at(&dir, "is.properties", "mksis.logging.email.server.hostname")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(host["line"], line);
    assert_eq!(json["rule"], "no-auth-flag");
}

#[test]
fn check_shows_no_secret_and_fails_on_a_value_under_another_key() {
    let dir = secrets_dir();
    assert_eq!(exit_code(&mailgate(dir.path(), &["encrypt"])), 0);
    let out = mailgate(dir.path(), &["check"]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("<secret: ENC(...)>"), "{stdout}");
    assert!(!stdout.contains("ENC(v1:"), "{stdout}");
    // The OAuth secret under another key: the basic folder still loads,
    // but check says the secret does not decrypt.
    let stranger = SecretKey::generate().unwrap();
    let value = mailgate::secrets::encrypt_value(&stranger, CS, CLIENT_SECRET).unwrap();
    dir.write_security(&[(CS, &value)]);
    let out = mailgate(dir.path(), &["check"]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 78, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(CS) && stderr.contains("another key"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&at(&dir, "security.properties", CS)),
        "{stderr}"
    );
}

#[test]
fn check_prints_every_failure_not_only_the_first() {
    let dir = secrets_dir();
    let stranger = SecretKey::generate().unwrap();
    let value = mailgate::secrets::encrypt_value(&stranger, CS, CLIENT_SECRET).unwrap();
    dir.write_security(&[(CS, &value)]);
    // The secret does not decrypt and nothing listens on port 9.
    let out = mailgate(dir.path(), &["check", "--connect"]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 78, "{stdout}\n{stderr}");
    assert!(stdout.contains("secrets:  FAILED"), "{stdout}");
    assert!(stdout.contains("connect:  FAILED"), "{stdout}");
    assert!(stderr.contains(CS), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn vendor_email_keys_get_no_did_you_mean() {
    let dir = open_dir(&[
        ("mksis.logging.email.to", "ops@example.com"),
        ("mksis.smtp.authentification", "false"),
    ]);
    let out = mailgate(dir.path(), &["check"]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 0, "{stdout}\n{stderr}");
    assert!(!stderr.contains("mksis.logging.email.to"), "{stderr}");
    assert!(
        stderr.contains("did you mean `mksis.smtp.authentication`"),
        "{stderr}"
    );
}

#[test]
fn a_control_character_in_the_sender_is_a_config_error_with_file_and_line() {
    let dir = secrets_dir();
    dir.write_is(&[
        ("mksis.smtp.oauth.authentication", "true"),
        ("mksis.smtp.ssl.enabled", "true"),
        ("mksis.logging.email.from", "alm\u{1}@example.com"),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
    ]);
    let out = mailgate(dir.path(), &["check"]);
    let (_, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 78, "{stderr}");
    assert!(stderr.contains("`mksis.logging.email.from`"), "{stderr}");
    assert!(
        stderr.contains(&at(&dir, "is.properties", "mksis.logging.email.from")),
        "{stderr}"
    );
    assert!(!stderr.contains("mailgate.oauth.user"), "{stderr}");
}

#[test]
fn a_key_every_strategy_needs_reads_as_english() {
    let dir = ConfigDir::with_properties(&[("mksis.smtp.authentication", "false")], &[]);
    let out = mailgate(dir.path(), &["check"]);
    let (_, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 78, "{stderr}");
    assert!(stderr.contains("required by every strategy"), "{stderr}");
}

// ---------------------------------------------------------------------------
// 4. The vendor's own server

/// `secrets_dir` with the keys a real RV&S `is.properties` also holds.
fn vendor_dir() -> ConfigDir {
    let dir = secrets_dir();
    let is = dir.read_file("is.properties");
    dir.write_file(
        "is.properties",
        format!("{is}mksis.dbtype=oracle\nmksis.licensePath=/opt/rvs/license\nmksis.im.maxItems=100\nmksis.ip.port=7001\n"),
    );
    dir
}

#[test]
fn encrypt_refuses_a_folder_the_vendor_server_reads_unless_yes() {
    let dir = vendor_dir();
    let before = dir.read_file("is.properties");
    let out = mailgate(dir.path(), &["encrypt"]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 78, "{stdout}\n{stderr}");
    assert!(stderr.contains("cannot read ENC(...) values"), "{stderr}");
    assert!(stderr.contains("`mksis.dbtype`"), "{stderr}");
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(dir.read_file("is.properties"), before, "nothing written");
    assert!(!dir.path().join("mailgate.key").exists(), "no key created");

    let out = mailgate(dir.path(), &["encrypt", "--yes"]);
    assert_eq!(exit_code(&out), 0, "{}", output_text(&out).1);
    assert!(
        dir.read_file("is.properties")
            .contains(&format!("{PW}=ENC(v1:"))
    );
}

#[test]
fn a_vendor_file_whose_secrets_mailgate_takes_from_its_own_file_is_left_alone() {
    // The server's is.properties (with its plain password) for the settings,
    // mailgate's own security file for the secrets: only the latter changes.
    let server = vendor_dir();
    let own = ConfigDir::with_properties(&[], &[(PW, PASSWORD), (CS, CLIENT_SECRET)]);
    let before = server.read_file("is.properties");
    let out = mailgate(
        own.path(),
        &[
            "--is",
            s(&server.is_path()),
            "--security",
            s(&own.security_path()),
            "encrypt",
        ],
    );
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("left as it is: the RV&S server reads it"),
        "{stdout}"
    );
    assert_eq!(server.read_file("is.properties"), before);
    assert!(
        own.read_file("security.properties")
            .contains(&format!("{PW}=ENC(v1:"))
    );
}

#[test]
fn a_value_the_vendor_tool_encrypted_is_reported_not_sent() {
    let dir = secrets_dir();
    let security = oauth_keys("{AES}bXlzZWNyZXRwYXNzd29yZA==");
    let security: Vec<(&str, &str)> = security.iter().map(|(k, v)| (*k, v.as_str())).collect();
    dir.write_security(&security);
    let is = dir.read_file("is.properties");
    dir.write_file(
        "is.properties",
        is.replace(
            "mksis.smtp.authentication=true",
            "mksis.smtp.oauth.authentication=true",
        ),
    );
    for args in [&["check"][..], &["token"], &["encrypt"]] {
        let out = mailgate(dir.path(), args);
        let (stdout, stderr) = output_text(&out);
        assert_eq!(exit_code(&out), 78, "{args:?}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("looks encrypted by another tool"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains(&at(&dir, "security.properties", CS)),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("bXlzZWNy"), "{stderr}");
    }
    let out = mailgate(dir.path(), &["encrypt", "--check"]);
    assert_eq!(exit_code(&out), 78);
    assert!(
        output_text(&out)
            .0
            .contains("looks encrypted by another tool")
    );
}

// ---------------------------------------------------------------------------
// 5. Command-line conventions

#[test]
fn version_is_accepted_after_any_command() {
    for args in [
        &["--version"][..],
        &["check", "--version"],
        &["send", "--version"],
        &["queue", "list", "--version"],
    ] {
        let out = Command::new(bin()).args(args).output().unwrap();
        let (stdout, stderr) = output_text(&out);
        assert_eq!(exit_code(&out), 0, "{args:?}: {stderr}");
        assert!(stdout.starts_with("mailgate"), "{args:?}: {stdout}");
        assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
    }
}

#[test]
fn sendmail_keeps_its_own_dash_v() {
    // `-V ENVID` is one of sendmail's options (accepted and ignored), not
    // the version: the message is read and the folder looked for.
    let out = Command::new(bin())
        .args([
            "--config-dir",
            "/nonexistent/mailgate",
            "sendmail",
            "-V",
            "envid",
            "dev@example.com",
        ])
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 78, "{stdout}\n{stderr}");
    assert!(!stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
    assert!(stderr.contains("/nonexistent/mailgate"), "{stderr}");
    // The library's error names no flag; the command line adds its own.
    assert!(
        stderr.contains("(see --config-dir, --is, --security)"),
        "{stderr}"
    );
}

#[test]
fn bash_completion_loads_and_completes() {
    let out = Command::new(bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0);
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &out.stdout).unwrap();
    // Load it in a real bash and ask it to complete `mailgate ch` and
    // `mailgate encrypt --ro`.
    let probe = format!(
        "set -e; source {}; complete -p mailgate; \
         COMP_WORDS=(mailgate ch); COMP_CWORD=1; COMP_LINE='mailgate ch'; COMP_POINT=11; \
         _mailgate mailgate ch mailgate; echo \"words: ${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(mailgate encrypt --ro); COMP_CWORD=2; COMP_LINE='mailgate encrypt --ro'; COMP_POINT=21; \
         _mailgate mailgate --ro encrypt; echo \"flags: ${{COMPREPLY[*]}}\"",
        script.path().display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("-F _mailgate mailgate"), "{stdout}");
    assert!(stdout.contains("words: check"), "{stdout}");
    assert!(stdout.contains("--rotate-key"), "{stdout}");
}

#[test]
fn completions_for_other_shells_and_the_man_page() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(exit_code(&out), 0, "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("mailgate"),
            "{shell}"
        );
    }
    let out = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 64);
    let out = Command::new(bin()).arg("man").output().unwrap();
    assert_eq!(exit_code(&out), 0);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH mailgate"),
        "{page}"
    );
    for text in [
        ".TH mailgate",
        "encrypt",
        "completions",
        "EXIT STATUS",
        "EX_CONFIG",
        "ENVIRONMENT",
        "mailgate\\-send\\fR(1)",
    ] {
        assert!(page.contains(text), "{text} not in the man page");
    }
}

#[test]
fn help_puts_global_options_apart_and_lists_exit_codes() {
    for (command, code) in [
        ("send", "66 an input file"),
        ("check", "78 configuration error"),
        ("encrypt", "78 a secret in plain text"),
        ("token", "77 credentials refused"),
        ("queue", "75 flush"),
        ("deliver", "0 stopped by SIGTERM"),
        ("server", "0 HOST:PORT"),
        ("completions", "74 stdout"),
        ("demo", "70 a message arrived"),
    ] {
        let out = Command::new(bin())
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(exit_code(&out), 0, "{command}");
        assert!(help.contains("Exit status"), "{command}: {help}");
        assert!(help.contains(code), "{command}: {help}");
        let global = help
            .find("Global options:")
            .unwrap_or_else(|| panic!("{command}: {help}"));
        let config_dir = help.find("--config-dir").unwrap();
        assert!(
            config_dir > global,
            "{command}: --config-dir under Global options"
        );
    }
    let out = Command::new(bin())
        .args(["send", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    // send's own options come before the global ones.
    assert!(
        help.find("--subject").unwrap() < help.find("Global options:").unwrap(),
        "{help}"
    );
}

#[tokio::test]
async fn quiet_prints_nothing_on_success() {
    let server = support::relay().await;
    let dir = support::config(&server, &[]);
    let run = support::mailgate(
        &dir,
        &[
            "-q",
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "q",
            "--body",
            "b",
        ],
        support::Input::Empty,
    )
    .await;
    run.assert_code(0);
    assert_eq!(run.stdout(), "");
    assert_eq!(run.stderr(), "");
    assert_eq!(server.messages().len(), 1);
    // Through the outbox, and the outbox's own commands.
    for args in [
        &[
            "-q",
            "send",
            "--queue",
            "--to",
            "dev@example.com",
            "--subject",
            "q",
            "--body",
            "b",
        ][..],
        &["-q", "queue", "flush"],
    ] {
        let run = support::mailgate(&dir, args, support::Input::Empty).await;
        run.assert_code(0);
        assert_eq!(
            (run.stdout().as_str(), run.stderr().as_str()),
            ("", ""),
            "{args:?}"
        );
    }
    assert_eq!(server.messages().len(), 2);
    // -q after the command, and for check and encrypt (a plain secret warns
    // without -q).
    let run = support::mailgate(&dir, &["check", "-q"], support::Input::Empty).await;
    run.assert_code(0);
    assert_eq!((run.stdout().as_str(), run.stderr().as_str()), ("", ""));
    let secrets = secrets_dir();
    let out = mailgate(secrets.path(), &["encrypt", "-q"]);
    assert_eq!(exit_code(&out), 0);
    assert_eq!(output_text(&out), (String::new(), String::new()));
    assert!(secrets.read_file("is.properties").contains("ENC(v1:"));
    // A failure still says why, on stderr.
    let out = mailgate(
        secrets.path(),
        &["-q", "--key-file", "/nonexistent.key", "check"],
    );
    assert_eq!(exit_code(&out), 78);
    assert!(!output_text(&out).1.is_empty());
}

/// Runs `mailgate -v check` on a folder with a plain-text secret (it warns)
/// with stderr on a pseudo-terminal; returns what the terminal got.
fn stderr_on_a_terminal(dir: &Path, no_color: Option<&str>) -> String {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills in two descriptors; the other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    use std::os::fd::FromRawFd as _;
    // SAFETY: both descriptors are fresh and owned here.
    let (master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    };
    let mut cmd = Command::new(bin());
    cmd.arg("--config-dir")
        .arg(dir)
        .args(["-v", "check"])
        .env_remove("MAILGATE_CONFIG_DIR")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // The child is gone and our copy of the slave closed: read to EOF (EIO).
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut master = master;
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn no_color_turns_the_log_colours_off() {
    let dir = secrets_dir();
    let coloured = stderr_on_a_terminal(dir.path(), None);
    assert!(coloured.contains("plain text"), "{coloured}");
    assert!(
        coloured.contains('\u{1b}'),
        "a terminal gets colours: {coloured:?}"
    );
    for v in ["1", "yes"] {
        let plain = stderr_on_a_terminal(dir.path(), Some(v));
        assert!(plain.contains("plain text"), "{plain}");
        assert!(!plain.contains('\u{1b}'), "NO_COLOR={v}: {plain:?}");
    }
    // Empty means unset (no-color.org).
    assert!(stderr_on_a_terminal(dir.path(), Some("")).contains('\u{1b}'));
}

#[cfg(not(feature = "demo"))]
#[test]
fn the_default_build_has_no_demo_and_says_how_to_get_it() {
    let out = Command::new(bin()).arg("demo").output().unwrap();
    let (_, stderr) = output_text(&out);
    assert_eq!(exit_code(&out), 69, "{stderr}");
    assert!(stderr.contains("--features demo"), "{stderr}");
}
