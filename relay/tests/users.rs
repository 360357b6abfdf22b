//! The users file: load, verify, add (atomic, 0600, other lines kept),
//! errors naming the line and never the hash.

use std::fs;

use mailgate_relay::{UserChange, Users, UsersError, add_user, check_user_name, hash_password};

#[test]
fn hash_and_verify() {
    let hash = hash_password("s3cret");
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert_ne!(hash, hash_password("s3cret"), "salts are random");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    fs::write(
        &path,
        format!(
            "# relay users\n\n  # indented comment\nprinter:{hash}\r\nalm:{}\n",
            hash_password("other")
        ),
    )
    .unwrap();
    let users = Users::load(&path).unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users.names(), vec!["alm", "printer"]);
    assert!(users.verify("printer", "s3cret"));
    assert!(!users.verify("printer", "S3cret"));
    assert!(!users.verify("printer", ""));
    assert!(users.verify("alm", "other"));
    assert!(!users.verify("nobody", "s3cret"));
    assert!(!users.verify("alm", "s3cret"));
    let debug = format!("{users:?}");
    assert!(
        !debug.contains("argon2") && !debug.contains("printer"),
        "{debug}"
    );
}

fn load_error(content: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay-users");
    fs::write(&path, content).unwrap();
    let err = Users::load(&path).expect_err("invalid file loads");
    assert!(matches!(err, UsersError::Line { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("relay-users"), "names the file: {text}");
    text
}

#[test]
fn errors_name_the_line_and_hide_the_hash() {
    let good = hash_password("pw");
    let text = load_error(&format!("# c\na:{good}\nb\n"));
    assert!(text.contains(":3:"), "{text}");

    let text = load_error(&format!("a:{good}\na:{good}\n"));
    assert!(
        text.contains(":2:") && text.contains("more than once"),
        "{text}"
    );

    let secretish = "$argon2id$v=19$m=19456,t=2,p=1$SECRETSALT$notbase64!!";
    let text = load_error(&format!("\n\nx:{secretish}\n"));
    assert!(text.contains(":3:"), "{text}");
    assert!(
        !text.contains("SECRETSALT") && !text.contains("notbase64"),
        "{text}"
    );

    let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
    let text = load_error(&format!("x:{bcrypt}\n"));
    assert!(!text.contains("R9h/cIPz0gi"), "{text}");

    let argon2i = good.replacen("$argon2id$", "$argon2i$", 1);
    let text = load_error(&format!("x:{argon2i}\n"));
    assert!(text.contains("not argon2id"), "{text}");

    let text = load_error(&format!(":{good}\n"));
    assert!(text.contains(":1:") && text.contains("empty"), "{text}");
    let text = load_error(&format!("a b:{good}\n"));
    assert!(text.contains(":1:"), "{text}");

    let expensive = good.replacen("m=19456", "m=4194304", 1);
    let text = load_error(&format!("x:{expensive}\n"));
    assert!(text.contains("KiB"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin");
    fs::write(&path, b"a:\xff\xfe\n").unwrap();
    assert!(Users::load(&path).unwrap_err().to_string().contains(":1:"));
    let missing = Users::load(dir.path().join("missing")).unwrap_err();
    assert!(matches!(missing, UsersError::Io { .. }));
    assert!(missing.to_string().contains("missing"));
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn add_user_keeps_other_lines_and_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");

    // A new file.
    assert_eq!(
        add_user(&path, "printer", "pw1").unwrap(),
        UserChange::Added
    );
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    assert!(Users::load(&path).unwrap().verify("printer", "pw1"));

    // Other lines, comments, CRLF endings and a missing final newline stay.
    let other = hash_password("x");
    let before = format!(
        "# header comment\r\n\r\nprinter:{}\r\n  # between\nalm:{other}",
        hash_password("old")
    );
    fs::write(&path, &before).unwrap();
    assert_eq!(
        add_user(&path, "printer", "new").unwrap(),
        UserChange::Replaced
    );
    let after = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = after.split('\n').collect();
    assert_eq!(lines[0], "# header comment\r");
    assert_eq!(lines[1], "\r");
    assert!(lines[2].starts_with("printer:$argon2id$") && lines[2].ends_with('\r'));
    assert_eq!(lines[3], "  # between");
    assert_eq!(lines[4], format!("alm:{other}"));
    assert_eq!(lines.len(), 5, "no line added: {after:?}");
    let users = Users::load(&path).unwrap();
    assert!(users.verify("printer", "new"));
    assert!(!users.verify("printer", "old"));
    assert!(users.verify("alm", "x"));

    assert_eq!(add_user(&path, "cron", "pw2").unwrap(), UserChange::Added);
    let after = fs::read_to_string(&path).unwrap();
    assert!(
        after.contains(&format!("alm:{other}\ncron:$argon2id$")),
        "{after:?}"
    );
    assert!(after.ends_with('\n'));
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    assert_eq!(Users::load(&path).unwrap().len(), 3);

    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["users".to_owned()]);
}

#[test]
fn add_user_refuses_bad_names_and_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    for bad in ["", "a:b", "a b", "tab\there", "#x", &"n".repeat(256)] {
        assert!(
            matches!(
                add_user(&path, bad, "pw"),
                Err(UsersError::InvalidName { .. })
            ),
            "{bad:?} accepted"
        );
        assert!(check_user_name(bad).is_err());
    }
    assert!(!path.exists());
    assert!(check_user_name("printer@example.com").is_ok());
    assert!(check_user_name("jürgen").is_ok());

    fs::write(&path, "garbage line\n").unwrap();
    let err = add_user(&path, "ok", "pw").unwrap_err();
    assert!(err.to_string().contains(":1:"), "{err}");
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "garbage line\n",
        "untouched"
    );
}

#[test]
fn a_users_file_that_is_a_fifo_or_a_device_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("users.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for path in [fifo.as_path(), std::path::Path::new("/dev/zero")] {
        let started = std::time::Instant::now();
        let err = Users::load(path).unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{path:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // Adding a user to it is refused too, and writes nothing.
        assert!(add_user(path, "printer", &hash_password("pw")).is_err());
    }
}

#[cfg(unix)]
#[test]
fn add_user_through_a_link_updates_the_file_it_points_to() {
    let dir = tempfile::tempdir().unwrap();
    let target_dir = dir.path().join("real");
    fs::create_dir(&target_dir).unwrap();
    let target = target_dir.join("users");
    fs::write(&target, format!("alm:{}\n", hash_password("a"))).unwrap();
    let link = dir.path().join("users");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    add_user(&link, "printer", "p").unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let users = Users::load(&target).unwrap();
    assert!(
        users.verify("printer", "p"),
        "the target holds the new user"
    );
    assert!(users.verify("alm", "a"));
}
