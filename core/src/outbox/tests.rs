use super::*;

fn settings() -> OutboxSettings {
    OutboxSettings {
        url: None,
        retry_initial: Duration::from_secs(30),
        retry_max: Duration::from_secs(1800),
        max_age: Duration::from_secs(72 * 3600),
        keep_sent: Duration::from_secs(24 * 3600),
        lease: Duration::from_secs(300),
        worker_timeout: Duration::from_secs(30),
        delay_warning: Some(Duration::from_secs(4 * 3600)),
        keep_sent_bodies: false,
    }
}

#[test]
fn backoff_doubles_up_to_the_maximum_with_jitter() {
    let s = settings();
    assert_eq!(backoff(&s, 1, 1.0), Duration::from_secs(30));
    assert_eq!(backoff(&s, 2, 1.0), Duration::from_secs(60));
    assert_eq!(backoff(&s, 3, 1.0), Duration::from_secs(120));
    assert_eq!(backoff(&s, 7, 1.0), Duration::from_secs(1800));
    assert_eq!(backoff(&s, 1000, 1.0), Duration::from_secs(1800));
    assert_eq!(backoff(&s, 1, 0.0), Duration::from_secs(15));
    assert_eq!(backoff(&s, 0, 0.5), Duration::from_secs_f64(22.5));
}

#[test]
fn postgres_urls_are_shown_without_password_or_query() {
    assert_eq!(
        shown_url("postgres://mg:s3cret@db.example.com:5432/mailgate?sslmode=require&password=x"),
        "postgres://mg@db.example.com:5432/mailgate"
    );
    assert_eq!(
        shown_url("postgresql://db/mailgate"),
        "postgresql://db/mailgate"
    );
    assert_eq!(shown_url("postgres://:pw@db/x"), "postgres://db/x");
    assert_eq!(shown_url("sqlite:outbox.db"), "sqlite:outbox.db");
    // A pasted password with unencoded delimiters.
    for url in [
        "postgres://mg:ab#cd@db/mail",
        "postgres://mg:ab?cd@db/mail",
        "postgres://mg:ab/cd@db/mail",
    ] {
        assert_eq!(shown_url(url), "postgres://mg@db/mail", "{url}");
    }
    assert_eq!(
        format!(
            "{:?}",
            OutboxUrl::new("postgres://a:b@h/d", crate::Origin::Builder)
        ),
        "OutboxUrl { url: \"postgres://a@h/d\", origin: Builder }"
    );
}

fn listed(status: Status, to: &[&str], finished: Vec<RecipientRecord>) -> QueuedMessage {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + to.len() as u64);
    QueuedMessage {
        id: 1,
        status,
        attempts: 1,
        last_error: Some("451 earlier".into()),
        next_attempt: Some(t),
        created: t,
        age_from: t,
        sent_at: None,
        from: "a@example.com".into(),
        to: to.iter().map(|a| (*a).to_owned()).collect(),
        subject: String::new(),
        message_id: None,
        size: 10,
        finished,
        dsn: None,
        delay_warned: vec!["c@example.com".into()],
        body_dropped: false,
    }
}

fn record(address: &str, status: Status) -> RecipientRecord {
    RecipientRecord {
        address: address.into(),
        status,
        reply: Some("reply".into()),
        attempts: 1,
    }
}

#[test]
fn a_completion_sets_what_the_stores_record() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(5000);
    let later = now + Duration::from_secs(60);
    let to = ["b@example.com", "c@example.com"];
    let mut m = listed(Status::Sending, &to, Vec::new());
    Completion::Sent {
        reply: "250".into(),
    }
    .apply(&mut m, now);
    assert_eq!(
        (m.status, m.sent_at, m.next_attempt),
        (Status::Sent, Some(now), None)
    );
    assert_eq!(m.last_error.as_deref(), Some("451 earlier"), "kept");
    assert_eq!(m.delay_warned, ["c@example.com"], "kept");

    let mut m = listed(Status::Sending, &to, Vec::new());
    let retry = Completion::Retry {
        error: "421 busy".into(),
        next_attempt: later,
    };
    retry.apply(&mut m, now);
    assert_eq!(
        (m.status, m.sent_at, m.next_attempt),
        (Status::Queued, None, Some(later))
    );
    assert_eq!(m.last_error.as_deref(), Some("421 busy"));

    let mut m = listed(Status::Sending, &to, Vec::new());
    Completion::Dead {
        error: "550 no".into(),
    }
    .apply(&mut m, now);
    assert_eq!((m.status, m.next_attempt), (Status::Dead, None));

    let mut m = listed(Status::Sending, &to, Vec::new());
    let finished = vec![record("b@example.com", Status::Sent)];
    let some_due = Completion::Recipients {
        finished: finished.clone(),
        next_attempt: Some(later),
        error: "452 full".into(),
        delay_warned: vec!["b@example.com".into(), "c@example.com".into()],
    };
    some_due.apply(&mut m, now);
    assert_eq!((m.status, m.next_attempt), (Status::Queued, Some(later)));
    assert_eq!(m.finished, finished);
    assert_eq!(m.delay_warned, ["c@example.com"], "only the due ones");
    let all_done = Completion::Recipients {
        finished: vec![
            record("b@example.com", Status::Sent),
            record("c@example.com", Status::Dead),
        ],
        next_attempt: None,
        error: "550 no".into(),
        delay_warned: Vec::new(),
    };
    all_done.apply(&mut m, now);
    assert_eq!(
        (m.status, m.sent_at, m.next_attempt),
        (Status::Dead, None, None)
    );
    assert!(m.delay_warned.is_empty());
}

#[test]
fn stats_count_messages_and_recipients() {
    let two = ["a@example.com", "b@example.com"];
    let messages = [
        listed(
            Status::Queued,
            &two,
            vec![record("a@example.com", Status::Sent)],
        ),
        listed(Status::Sending, &["c@example.com"], Vec::new()),
        listed(Status::Sent, &two, Vec::new()),
        listed(
            Status::Dead,
            &two,
            vec![record("a@example.com", Status::Dead)],
        ),
    ];
    let stats = Stats::of(&messages);
    assert_eq!(
        (stats.queued, stats.sending, stats.sent, stats.dead),
        (1, 1, 1, 1)
    );
    assert_eq!(
        stats.oldest_waiting,
        Some(messages[1].created),
        "the older waiting one"
    );
    let r = &stats.recipients;
    assert_eq!((r.queued, r.sent, r.dead), (2, 3, 2));
    assert_eq!(Stats::of(&[]), Stats::default());
}

#[test]
fn a_new_message_is_stored_queued_and_due_at_once() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(7);
    let new = NewMessage {
        from: "a@example.com".into(),
        to: vec!["b@example.com".into()],
        subject: "s".into(),
        message_id: Some("<m@example.com>".into()),
        bytes: b"Subject: s\r\n\r\nbody".to_vec(),
        dsn: Some(DsnRequest::default()),
    };
    let (m, bytes) = new.clone().into_queued(42, now);
    assert_eq!(bytes, new.bytes);
    assert_eq!(
        (m.id, m.status, m.attempts, m.size),
        (42, Status::Queued, 0, 18)
    );
    assert_eq!(
        (m.next_attempt, m.created, m.age_from),
        (Some(now), now, now)
    );
    assert_eq!((m.from, m.to, m.dsn), (new.from, new.to, new.dsn));
    assert!(m.finished.is_empty() && !m.body_dropped && m.sent_at.is_none());
}

#[test]
fn the_header_section_ends_at_the_first_blank_line() {
    assert_eq!(header_section_len(b"A: 1\r\n\r\nbody\r\n\r\nmore"), Some(8));
    assert_eq!(header_section_len(b"A: 1\r\n\r\n"), None, "no body");
    assert_eq!(
        header_section_len(b"A: 1\r\nB: 2\r\n"),
        None,
        "no blank line"
    );
    assert_eq!(header_section_len(b"A: 1\n\nbody"), None, "CRLF only");
}

#[test]
fn a_retry_makes_queued_and_dead_messages_due_with_their_dead_recipients() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(9000);
    let finished = vec![
        record("a@example.com", Status::Sent),
        record("b@example.com", Status::Dead),
    ];
    let mut m = listed(Status::Dead, &["a@example.com", "b@example.com"], finished);
    m.attempts = 5;
    assert!(m.retry(now));
    assert_eq!(
        (m.status, m.next_attempt, m.age_from, m.attempts),
        (Status::Queued, Some(now), now, 0)
    );
    assert_eq!(m.finished, [record("a@example.com", Status::Sent)]);
    assert_eq!(
        m.delay_warned,
        ["c@example.com"],
        "a reported delay stays reported"
    );
    for status in [Status::Sending, Status::Sent] {
        let mut m = listed(status, &["a@example.com"], Vec::new());
        let before = m.clone();
        assert!(!m.retry(now));
        assert_eq!(m, before);
    }
}

#[test]
fn statuses_round_trip() {
    for st in Status::ALL {
        assert_eq!(Status::parse(st.as_str()), Some(st));
    }
    assert_eq!(Status::parse("nope"), None);
}
