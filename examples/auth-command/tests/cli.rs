//! The five-line `mailgate-with-command` binary: the whole command line,
//! with the `command` strategy known to every command.
//! `cargo test -p mailgate-auth-command --features cli` (CI runs it).
#![cfg(feature = "cli")]

use std::path::Path;
use std::process::Command;

use mailgate_devserver::{DevSmtpServer, Mechanism};

const USER: &str = "alm@example.com";

fn mailgate(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailgate-with-command"))
        .arg("--config-dir")
        .arg(dir)
        .args(args)
        .env_remove("MAILGATE_CONFIG_DIR")
        .output()
        .unwrap()
}

fn config(dir: &Path, port: u16) {
    std::fs::write(
        dir.join("is.properties"),
        format!(
            "mksis.smtp.ssl.enabled=true\n\
             mksis.logging.email.from={USER}\n\
             mksis.logging.email.server.hostname=localhost\n\
             mksis.logging.email.server.port={port}\n\
             mailgate.smtp.ssl.caFile=ca.pem\n\
             mailgate.smtp.auth.strategy=command\n\
             mailgate.auth.command=echo from-the-command\n\
             mailgate.auth.comand.timeoutSeconds=5\n"
        ),
    )
    .unwrap();
}

// Multi-threaded: the dev server keeps serving while the test waits for
// the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_send_know_the_strategy() {
    let server = DevSmtpServer::builder()
        .starttls_required()
        .mechanisms([Mechanism::Plain])
        .user(USER, "from-the-command")
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    server.ca().write_ca_pem(dir.path().join("ca.pem")).unwrap();
    config(dir.path(), server.port());

    let out = mailgate(dir.path(), &["check", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["strategy"], "command");
    assert_eq!(json["rule"], "override");
    // The strategy's keys are known: its setting is listed, and a
    // misspelling of one gets a "did you mean".
    assert!(
        json["settings"]["mailgate.auth.command"].is_object(),
        "{json}"
    );
    assert!(
        stderr.contains("did you mean `mailgate.auth.command.timeoutSeconds`"),
        "{stderr}"
    );

    let out = mailgate(
        dir.path(),
        &[
            "send",
            "--to",
            "dev@example.com",
            "--subject",
            "via command",
            "--body",
            "hi",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let auth = messages[0].auth.as_ref().expect("authenticated");
    assert_eq!(
        (auth.mechanism, auth.user.as_str()),
        (Mechanism::Plain, USER)
    );
}

#[test]
fn the_built_in_strategies_are_still_there() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("is.properties"),
        "mksis.logging.email.server.hostname=localhost\nmksis.smtp.authentication=true\n\
         mksis.logging.email.from=alm@example.com\nmksis.logging.emailfrom.password=pw\n\
         mksis.smtp.ssl.enabled=true\n",
    )
    .unwrap();
    let out = mailgate(dir.path(), &["check", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["strategy"], "basic");
    // `encrypt --check` knows the built-in secret keys through the registry.
    let out = mailgate(dir.path(), &["encrypt", "--check"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("mksis.logging.emailfrom.password"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
