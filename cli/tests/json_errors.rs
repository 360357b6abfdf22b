//! `--json` on failure: one object on stdout, `{"error": {...}}` (or an
//! `error` member beside a command's own fields), the human text on stderr
//! as without `--json`, the same exit status; and `check --json`'s
//! `warnings` holding every warning stderr shows.

mod support;

use mailgate_devserver::{DevSmtpServer, Fault, Stage};
use mailgate_integration_tests::ConfigDir;
use serde_json::{Value, json};
use support::{Input, Run, SENDER, config, mailgate, relay};

/// The one line stderr shows for the failure, without `mailgate: `.
#[track_caller]
fn stderr_message(run: &Run) -> String {
    let stderr = run.stderr();
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("mailgate: "))
        .unwrap_or_else(|| panic!("no `mailgate:` line on stderr:\n{stderr}"));
    line.to_owned()
}

/// The `error` member of stdout's one object, after checking that its
/// fields are exactly the documented ones and that it agrees with the exit
/// status and with stderr.
#[track_caller]
fn error_of(run: &Run, obj: &Value) -> Value {
    let error = obj
        .get("error")
        .unwrap_or_else(|| panic!("no `error` member in {obj:#}"))
        .clone();
    let mut keys: Vec<&str> = error
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "enhanced_status",
            "exit_code",
            "kind",
            "message",
            "recipients",
            "stage",
            "status"
        ]
    );
    assert_eq!(
        error["exit_code"].as_i64(),
        run.code().map(i64::from),
        "{error:#}"
    );
    assert_eq!(error["message"], stderr_message(run).as_str());
    error
}

/// A message to one recipient, with `--json`.
async fn send_json(dir: &ConfigDir, to: &[&str]) -> Run {
    let mut args = vec!["send", "--json", "--subject", "s", "--body", "b"];
    for rcpt in to {
        args.extend(["--to", rcpt]);
    }
    mailgate(dir, &args, Input::Empty).await
}

#[tokio::test]
async fn a_refused_connection_is_kind_connect() {
    let port = mailgate_integration_tests::unused_port().to_string();
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.smtp.oauth.authentication", "false"),
            ("mksis.smtp.authentication", "false"),
            ("mksis.smtp.ssl.enabled", "false"),
            ("mksis.logging.email.from", SENDER),
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", &port),
        ],
        &[],
    );
    let run = send_json(&dir, &["dev@example.com"]).await;
    run.assert_code(75);
    let error = error_of(&run, &run.json());
    assert_eq!(error["kind"], "connect");
    assert_eq!(error["stage"], "connect");
    assert_eq!(error["status"], Value::Null);
    assert_eq!(error["enhanced_status"], Value::Null);
    assert_eq!(error["recipients"], json!([]));
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("127.0.0.1:{port}"))),
        "{error:#}"
    );
    // The same failure without --json: the same text and status, no stdout.
    let plain = mailgate(
        &dir,
        &[
            "send",
            "--subject",
            "s",
            "--body",
            "b",
            "--to",
            "dev@example.com",
        ],
        Input::Empty,
    )
    .await;
    plain.assert_code(75);
    assert!(plain.stdout().is_empty(), "{}", plain.stdout());
    assert_eq!(stderr_message(&plain), stderr_message(&run));
}

async fn refusing_server(fault: Fault) -> (DevSmtpServer, ConfigDir) {
    let server = DevSmtpServer::builder()
        .fault(fault)
        .start()
        .await
        .expect("dev server starts");
    let dir = config(&server, &[]);
    (server, dir)
}

#[tokio::test]
async fn a_550_at_rcpt_fills_recipients_and_the_enhanced_status() {
    let (server, dir) = refusing_server(Fault::reply(Stage::Rcpt, 550, "5.1.1 User unknown")).await;
    let run = send_json(&dir, &["nobody@example.com"]).await;
    run.assert_code(65);
    let obj = run.json();
    assert_eq!(obj.as_object().map(|o| o.len()), Some(1), "{obj:#}");
    let error = error_of(&run, &obj);
    assert_eq!(error["kind"], "recipients_refused");
    assert_eq!(error["stage"], "rcpt");
    assert_eq!(error["status"], 550);
    assert_eq!(error["enhanced_status"], "5.1.1");
    assert_eq!(
        error["recipients"],
        json!([{ "address": "nobody@example.com", "code": 550, "reply": "5.1.1 User unknown" }])
    );
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_partly_sent_message_keeps_its_shape_and_adds_the_error() {
    let (server, dir) =
        refusing_server(Fault::reply(Stage::Rcpt, 550, "5.1.1 User unknown").times(1)).await;
    let run = send_json(&dir, &["nobody@example.com", "dev@example.com"]).await;
    run.assert_code(65);
    let obj = run.json();
    assert_eq!(obj["status"], "partly sent");
    assert_eq!(obj["accepted"], json!(["dev@example.com"]));
    let refused =
        json!([{ "address": "nobody@example.com", "code": 550, "reply": "5.1.1 User unknown" }]);
    assert_eq!(obj["refused"], refused);
    assert!(obj["message_id"].is_string(), "{obj:#}");
    let error = error_of(&run, &obj);
    assert_eq!(error["kind"], "partly_delivered");
    assert_eq!(error["stage"], "rcpt");
    assert_eq!(error["status"], 550);
    assert_eq!(error["enhanced_status"], "5.1.1");
    assert_eq!(error["recipients"], refused);
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn a_config_error_names_the_key_and_the_file() {
    let server = relay().await;
    let dir = config(&server, &[("mksis.logging.email.server.port", "smtp")]);
    let run = send_json(&dir, &["dev@example.com"]).await;
    run.assert_code(78);
    let error = error_of(&run, &run.json());
    assert_eq!(error["kind"], "config");
    assert_eq!(error["stage"], Value::Null);
    assert_eq!(error["status"], Value::Null);
    assert_eq!(error["enhanced_status"], Value::Null);
    assert_eq!(error["recipients"], json!([]));
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("mksis.logging.email.server.port")
            && message.contains(&dir.is_path().display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn a_usage_error_from_the_parser_is_kind_usage() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let run = mailgate(&dir, &["send", "--json", "--no-such-flag"], Input::Empty).await;
    run.assert_code(64);
    let error = run.json()["error"].clone();
    assert_eq!(error["kind"], "usage");
    assert_eq!(error["exit_code"], 64);
    assert_eq!(error["stage"], Value::Null);
    assert_eq!(error["recipients"], json!([]));
    // clap's whole text, as stderr shows it.
    assert_eq!(error["message"], run.stderr().trim_end());
    // Without --json stdout stays empty.
    let plain = mailgate(&dir, &["send", "--no-such-flag"], Input::Empty).await;
    plain.assert_code(64);
    assert!(plain.stdout().is_empty(), "{}", plain.stdout());
}

#[tokio::test]
async fn a_usage_error_of_the_command_is_kind_usage() {
    let server = relay().await;
    let dir = config(&server, &[]);
    let run = mailgate(&dir, &["send", "--json", "--body", "b"], Input::Empty).await;
    run.assert_code(64);
    let error = error_of(&run, &run.json());
    assert_eq!(error["kind"], "usage");
}

#[tokio::test]
async fn an_outbox_that_cannot_be_opened_is_kind_outbox() {
    let server = relay().await;
    // A folder where the SQLite file should be.
    let dir = config(&server, &[("mailgate.outbox.url", "sqlite:not-a-file")]);
    std::fs::create_dir(dir.path().join("not-a-file")).expect("folder made");
    for args in [
        &["queue", "list", "--json"][..],
        &["queue", "stats", "--json"],
    ] {
        let run = mailgate(&dir, args, Input::Empty).await;
        run.assert_code(74);
        let error = error_of(&run, &run.json());
        assert_eq!(error["kind"], "outbox", "{args:?}");
        assert_eq!(error["stage"], Value::Null);
        assert_eq!(error["recipients"], json!([]));
    }
}

#[tokio::test]
async fn a_queued_message_dead_at_once_carries_the_error_beside_its_status() {
    let (server, dir) = refusing_server(Fault::reply(Stage::Rcpt, 550, "5.1.1 User unknown")).await;
    let run = mailgate(
        &dir,
        &[
            "send",
            "--queue",
            "--json",
            "--subject",
            "s",
            "--body",
            "b",
            "--to",
            "nobody@example.com",
        ],
        Input::Empty,
    )
    .await;
    run.assert_code(65);
    let obj = run.json();
    assert_eq!(obj["status"], "dead", "{obj:#}");
    assert!(obj["id"].is_number(), "{obj:#}");
    let error = error_of(&run, &obj);
    assert_eq!(error["kind"], "dead");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn check_json_lists_every_warning_stderr_shows() {
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.smtp.oauth.authentication", "false"),
            ("mksis.smtp.authentication", "true"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.from", SENDER),
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", "587"),
            // A near miss of mailgate.smtp.timeoutSeconds.
            ("mailgate.smtp.timeoutSecond", "10"),
        ],
        &[("mksis.logging.emailfrom.password", "plain-pw-in-file")],
    );
    let run = mailgate(&dir, &["check", "--json"], Input::Empty).await;
    run.assert_code(0);
    let obj = run.json();
    let warnings: Vec<String> = obj["warnings"]
        .as_array()
        .expect("a warnings array")
        .iter()
        .map(|w| w.as_str().expect("a string").to_owned())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("mksis.logging.emailfrom.password") && w.contains("plain text")),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("timeoutSecond")),
        "{warnings:#?}"
    );
    // Each warning line of stderr is in the list.
    let stderr = run.stderr();
    let shown: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("WARN "))
        .collect();
    assert!(!shown.is_empty(), "{stderr}");
    for line in shown {
        assert!(
            warnings.iter().any(|w| w == line.trim()),
            "`{line}` is not in {warnings:#?}"
        );
    }
    assert!(!run.stdout().contains("plain-pw-in-file"));
}

#[tokio::test]
async fn check_json_that_fails_is_one_object_with_the_error() {
    let port = mailgate_integration_tests::unused_port().to_string();
    let dir = ConfigDir::with_properties(
        &[
            ("mksis.smtp.oauth.authentication", "false"),
            ("mksis.smtp.authentication", "false"),
            ("mksis.smtp.ssl.enabled", "false"),
            ("mksis.logging.email.from", SENDER),
            ("mksis.logging.email.server.hostname", "127.0.0.1"),
            ("mksis.logging.email.server.port", &port),
        ],
        &[],
    );
    let run = mailgate(&dir, &["check", "--json", "--connect"], Input::Empty).await;
    run.assert_code(75);
    let obj = run.json();
    assert_eq!(obj["connect"]["ok"], false, "{obj:#}");
    let error = error_of(&run, &obj);
    assert_eq!(error["kind"], "connect");
    assert_eq!(error["stage"], "connect");
}

#[cfg(feature = "basic")]
mod auth {
    use super::*;
    use mailgate_devserver::Mechanism;

    const USER: &str = "alm@example.com";
    const PASSWORD: &str = "json-err-Secret-9f3a";

    #[tokio::test]
    async fn a_refused_login_shows_no_password_anywhere() {
        let server = DevSmtpServer::builder()
            .starttls_required()
            .mechanisms([Mechanism::Plain])
            .user(USER, PASSWORD)
            .fault(Fault::refuse_auth(100))
            .start()
            .await
            .expect("dev server starts");
        let dir = ConfigDir::new();
        server
            .ca()
            .write_ca_pem(dir.path().join("ca.pem"))
            .expect("CA written");
        let port = server.port().to_string();
        dir.write_is(&[
            ("mksis.smtp.authentication", "true"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.from", USER),
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mksis.logging.email.server.port", &port),
            ("mailgate.smtp.ssl.caFile", "ca.pem"),
            ("mailgate.smtp.timeoutSeconds", "10"),
        ]);
        dir.write_security(&[("mksis.logging.emailfrom.password", PASSWORD)]);
        let run = send_json(&dir, &["dev@example.com"]).await;
        run.assert_code(77);
        let error = error_of(&run, &run.json());
        assert_eq!(error["kind"], "auth_refused");
        assert_eq!(error["stage"], "auth");
        assert!(error["status"].is_u64(), "{error:#}");
        assert_eq!(error["recipients"], json!([]));
        for (name, text) in [("stdout", run.stdout()), ("stderr", run.stderr())] {
            assert!(
                !text.contains(PASSWORD),
                "the password is on {name}:\n{text}"
            );
        }
        assert!(server.messages().is_empty());
    }
}
