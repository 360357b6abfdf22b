use super::*;

fn kind(code: u16, stage: Stage, reply: &str) -> u8 {
    Error::Smtp {
        server: "s".into(),
        stage,
        code,
        reply: reply.into(),
    }
    .exit_code()
}

#[test]
fn smtp_replies_map_by_enhanced_status_then_command() {
    assert_eq!(kind(451, Stage::Rcpt, "4.7.1 greylisted"), 75);
    assert_eq!(kind(530, Stage::Mail, "5.7.0 Authentication required"), 77);
    assert_eq!(kind(550, Stage::Rcpt, "5.7.1 Relaying denied"), 77);
    assert_eq!(kind(550, Stage::Rcpt, "5.1.1 User unknown"), 65);
    assert_eq!(kind(552, Stage::Data, "5.3.4 Message too big"), 65);
    assert_eq!(kind(550, Stage::Rcpt, "no such user"), 65);
    assert_eq!(
        kind(504, Stage::Auth, "5.5.4 Unrecognized authentication type"),
        69
    );
    assert_eq!(kind(554, Stage::Data, "Transaction failed"), 69);
    assert_eq!(kind(535, Stage::Auth, "Authentication failed"), 77);
    assert_eq!(kind(530, Stage::Mail, "Authentication required"), 77);
    assert_eq!(kind(530, Stage::Rcpt, ""), 77);
    assert_eq!(
        kind(535, Stage::Mail, "5.7.139 Authentication unsuccessful"),
        77
    );
    assert_eq!(kind(538, Stage::Auth, "Encryption required"), 77);
    assert_eq!(kind(250, Stage::Data, "odd"), 69);
}

#[test]
fn connection_failures_are_temporary_unknown_hosts_are_68() {
    let connect = Error::Connect {
        server: "s:25".into(),
        reason: "connection refused".into(),
        source: None,
    };
    assert_eq!(connect.exit_code(), 75);
    assert!(connect.is_transient());
    let unknown = Error::UnknownHost {
        server: "s:25".into(),
        host: "s".into(),
        reason: "Name or service not known".into(),
    };
    assert_eq!(unknown.exit_code(), 68);
    assert!(!unknown.is_transient());
    let injection = Error::StartTlsInjection {
        server: "s:25".into(),
        bytes: 3,
    };
    assert_eq!(injection.exit_code(), 69);
}

#[test]
fn refused_recipients_classify_by_the_worst_and_list_addresses() {
    let refusal = |address: &str, code, reply: &str| RecipientRefusal {
        address: address.into(),
        code,
        reply: reply.into(),
        index: 0,
    };
    let temporary = Error::Recipients {
        server: "s:25".into(),
        total: 3,
        refused: vec![refusal("b@x", 452, "4.5.3 Too many recipients")],
    };
    assert_eq!(temporary.exit_code(), 75);
    assert_eq!(temporary.status(), Some(452));
    let text = temporary.to_string();
    assert!(
        text.contains("refused 1 of 3") && text.contains("<b@x> 452"),
        "{text}"
    );
    let mixed = Error::Recipients {
        server: "s:25".into(),
        total: 3,
        refused: vec![
            refusal("b@x", 452, "4.5.3 later"),
            refusal("c@x", 550, "5.1.1 unknown"),
        ],
    };
    assert_eq!(mixed.exit_code(), 65);
    let many = Error::Recipients {
        server: "s:25".into(),
        total: 30,
        refused: (0..30)
            .map(|i| refusal(&format!("u{i}@x"), 550, "no"))
            .collect(),
    };
    assert!(many.to_string().contains("and 20 more"));
    let partly = Error::PartlyDelivered {
        server: "s:25".into(),
        total: 3,
        refused: vec![refusal("b@x", 550, "5.1.1 unknown")],
    };
    assert_eq!(partly.exit_code(), 65);
    assert_eq!(partly.stage(), Some(Stage::Rcpt));
    let text = partly.to_string();
    assert!(
        text.contains("refused 1 of 3") && text.contains("sent to the other 2"),
        "{text}"
    );
}

fn smtp(code: u16, stage: Stage, reply: &str) -> Error {
    Error::Smtp {
        server: "s:25".into(),
        stage,
        code,
        reply: reply.into(),
    }
}

#[test]
fn smtp_replies_report_transience_status_and_stage() {
    let later = smtp(451, Stage::Mail, "4.3.0 Try again later");
    assert!(later.is_transient() && !later.is_permanent());
    assert_eq!(later.status(), Some(451));
    assert_eq!(later.enhanced_status(), Some((4, 3, 0)));
    assert_eq!(later.stage(), Some(Stage::Mail));

    let denied = smtp(550, Stage::Rcpt, "5.7.1 Relaying denied");
    assert!(!denied.is_transient() && denied.is_permanent());
    assert_eq!(denied.status(), Some(550));
    assert_eq!(denied.enhanced_status(), Some((5, 7, 1)));
    assert_eq!(denied.stage(), Some(Stage::Rcpt));

    let plain = smtp(554, Stage::Data, "Transaction failed");
    assert_eq!(plain.status(), Some(554));
    assert_eq!(plain.enhanced_status(), None);
    assert_eq!(plain.stage(), Some(Stage::Data));
}

#[test]
fn refused_recipients_report_the_refusal_that_decides_the_kind() {
    let mixed = Error::Recipients {
        server: "s:25".into(),
        total: 2,
        refused: vec![
            RecipientRefusal {
                address: "b@x".into(),
                code: 452,
                reply: "4.2.2 Mailbox full".into(),
                index: 0,
            },
            RecipientRefusal {
                address: "c@x".into(),
                code: 550,
                reply: "5.1.1 User unknown".into(),
                index: 1,
            },
        ],
    };
    assert!(!mixed.is_transient());
    assert_eq!(mixed.status(), Some(550));
    assert_eq!(mixed.enhanced_status(), Some((5, 1, 1)));
    assert_eq!(mixed.stage(), Some(Stage::Rcpt));
}

#[test]
fn auth_refusals_carry_the_code_from_the_reply() {
    let refused = Error::AuthRefused {
        strategy: "basic".into(),
        server: "s:587".into(),
        reply: "535 5.7.8 Authentication credentials invalid".into(),
        retry_on_new_connection: false,
    };
    assert!(!refused.is_transient());
    assert_eq!(refused.exit_code(), 77);
    assert_eq!(refused.status(), Some(535));
    assert_eq!(refused.enhanced_status(), Some((5, 7, 8)));
    assert_eq!(refused.stage(), Some(Stage::Auth));
    let bare = Error::AuthRefused {
        strategy: "basic".into(),
        server: "s:587".into(),
        reply: "535".into(),
        retry_on_new_connection: false,
    };
    assert_eq!((bare.status(), bare.enhanced_status()), (Some(535), None));
}

#[test]
fn failures_without_a_reply_have_no_status() {
    let timeout = Error::Timeout {
        server: "s:25".into(),
        stage: Stage::Data,
        after: Duration::from_secs(30),
    };
    assert!(timeout.is_transient());
    assert_eq!(timeout.status(), None);
    assert_eq!(timeout.stage(), Some(Stage::Data));

    let connect = Error::Connect {
        server: "s:25".into(),
        reason: "connection refused".into(),
        source: None,
    };
    assert_eq!(connect.status(), None);
    assert_eq!(connect.stage(), Some(Stage::Connect));

    let tls = Error::Tls {
        server: "s:25".into(),
        reason: "invalid peer certificate".into(),
        source: None,
    };
    assert!(!tls.is_transient());
    assert_eq!(tls.stage(), Some(Stage::Tls));

    let invalid = Error::invalid_message("to", "no recipient");
    assert!(invalid.is_permanent());
    assert_eq!((invalid.status(), invalid.stage()), (None, None));
}

#[test]
fn wrapped_errors_are_sources() {
    use std::error::Error as _;
    let unreadable = Error::from(ConfigError::Unreadable {
        path: PathBuf::from("/nonexistent/is.properties"),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
    });
    assert_eq!(unreadable.kind(), ErrorKind::Config);
    assert_eq!((unreadable.status(), unreadable.stage()), (None, None));
    let text = unreadable.to_string();
    assert!(
        text.contains("/nonexistent/is.properties") && !text.contains("--"),
        "{text}"
    );
    let io = unreadable
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the I/O error is the source");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);

    let strategy = Error::Strategy {
        strategy: "oauth".into(),
        kind: ErrorKind::Temporary,
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )),
    };
    assert!(strategy.is_transient());
    assert_eq!(strategy.stage(), None);
    let io = strategy
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the strategy's cause is the source");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
}

#[test]
fn names_and_stages_are_snake_case() {
    let connect = Error::Connect {
        server: "s:25".into(),
        reason: "connection refused".into(),
        source: None,
    };
    assert_eq!(connect.name(), "connect");
    assert_eq!(smtp(550, Stage::Rcpt, "x").name(), "smtp_reply");
    assert_eq!(Error::Usage("u".into()).name(), "usage");
    for stage in [
        Stage::Connect,
        Stage::Tls,
        Stage::Auth,
        Stage::Mail,
        Stage::Rcpt,
        Stage::Data,
        Stage::Other,
    ] {
        let name = stage.as_str();
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
    }
}

#[test]
fn reply_code_needs_three_digits_then_a_separator() {
    assert_eq!(reply_code("535 5.7.8 no"), Some((535, "5.7.8 no")));
    assert_eq!(reply_code("535-5.7.8 no"), Some((535, "5.7.8 no")));
    assert_eq!(reply_code("535"), Some((535, "")));
    assert_eq!(reply_code("5355 x"), None);
    assert_eq!(reply_code("53"), None);
    assert_eq!(reply_code("ü35 x"), None);
    assert_eq!(reply_code(""), None);
}

#[test]
fn enhanced_status_needs_three_numbers() {
    assert_eq!(
        enhanced_status("5.7.139 Authentication unsuccessful"),
        Some((5, 7, 139))
    );
    assert_eq!(enhanced_status("Requested action aborted"), None);
    assert_eq!(enhanced_status("1.2.3 x"), None);
    assert_eq!(enhanced_status(""), None);
}
