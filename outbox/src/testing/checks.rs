//! The checks of the suite: what every outbox store must do. Each gets an
//! [`Outbox`] of its own.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailgate_core::outbox::{Completion, NewMessage, OutboxStore, Status};

use super::Outbox;

/// Message `n` of the suite: two recipients, a Subject, a Message-ID and
/// bytes that are not all ASCII (an `é` and a NUL).
pub fn message(n: usize) -> NewMessage {
    NewMessage {
        from: "alm@example.com".into(),
        to: vec![format!("dev{n}@example.com"), "qa@example.com".into()],
        subject: format!("Build {n}"),
        message_id: Some(format!("<id{n}@example.com>")),
        bytes: format!("Subject: Build {n}\r\n\r\nbody {n} \u{e9}\u{0}\r\n").into_bytes(),
        dsn: None,
    }
}

const LEASE: Duration = Duration::from_secs(60);

/// Enqueue, claim, complete, list, retry, delete, stats, purge, leases.
pub async fn lifecycle(outbox: &Outbox<'_>) {
    let store = outbox.store();
    let t0 = SystemTime::now();
    let a = store.enqueue(message(1)).await.unwrap();
    let b = store.enqueue(message(2)).await.unwrap();
    let c = store.enqueue(message(3)).await.unwrap();
    assert!(a < b && b < c, "ids grow");

    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.queued, stats.sending, stats.sent, stats.dead),
        (3, 0, 0, 0)
    );
    assert!(stats.oldest_waiting.is_some());

    // Claim two; the bytes come back exactly.
    let claimed = store
        .claim("w1", LEASE, 2, t0 + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].message.id, a);
    assert_eq!(claimed[0].bytes, message(1).bytes);
    assert_eq!(claimed[0].message.status, Status::Sending);
    assert_eq!(claimed[0].message.attempts, 1);
    assert_eq!(claimed[0].message.to, message(1).to);
    assert_eq!(claimed[0].message.subject, "Build 1");
    assert_eq!(
        claimed[0].message.message_id.as_deref(),
        Some("<id1@example.com>")
    );
    assert_eq!(claimed[0].message.size, message(1).bytes.len() as u64);

    // A second worker gets only the third; leased ones are not handed out twice.
    let other = store
        .claim("w2", LEASE, 10, t0 + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(other.iter().map(|c| c.message.id).collect::<Vec<_>>(), [c]);

    // Only the lease owner completes.
    let sent = Completion::Sent {
        reply: "250 ok".into(),
    };
    assert!(!store.complete(a, "w2", sent.clone(), t0).await.unwrap());
    assert!(
        store
            .complete(a, "w1", sent, t0 + Duration::from_secs(2))
            .await
            .unwrap()
    );
    let next = t0 + Duration::from_secs(100);
    assert!(
        store
            .complete(
                b,
                "w1",
                Completion::Retry {
                    error: "451 later".into(),
                    next_attempt: next
                },
                t0
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .complete(
                c,
                "w2",
                Completion::Dead {
                    error: "550 no such user".into()
                },
                t0
            )
            .await
            .unwrap()
    );

    let all = store.list(true).await.unwrap();
    assert_eq!(all.len(), 3);
    let by_id = |id| all.iter().find(|m| m.id == id).unwrap().clone();
    assert_eq!(by_id(a).status, Status::Sent);
    assert!(by_id(a).sent_at.is_some());
    assert_eq!(by_id(b).status, Status::Queued);
    assert_eq!(by_id(b).last_error.as_deref(), Some("451 later"));
    assert_eq!(by_id(b).next_attempt.map(next_ms), Some(next_ms(next)));
    assert_eq!(by_id(c).status, Status::Dead);
    assert_eq!(by_id(c).last_error.as_deref(), Some("550 no such user"));
    let not_sent = store.list(false).await.unwrap();
    assert_eq!(not_sent.iter().map(|m| m.id).collect::<Vec<_>>(), [b, c]);

    // Not due before its next attempt; due after.
    assert!(
        store
            .claim("w1", LEASE, 10, t0 + Duration::from_secs(50))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.next_due().await.unwrap().map(next_ms),
        Some(next_ms(next))
    );
    assert_eq!(store.queued_ids().await.unwrap(), [b]);
    // claim_one ignores back-off (queue flush, send --queue).
    let one = store
        .claim_one(b, "w3", LEASE, t0 + Duration::from_secs(50))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.message.attempts, 2);
    assert!(
        store.claim_one(b, "w4", LEASE, t0).await.unwrap().is_none(),
        "already leased"
    );
    assert!(
        store.claim_one(c, "w4", LEASE, t0).await.unwrap().is_none(),
        "dead is not claimed"
    );
    assert!(
        !store.delete(b).await.unwrap(),
        "a message being sent is not deleted"
    );

    // An expired lease is taken over by another worker; the first can no longer complete.
    let later = t0 + Duration::from_secs(50) + LEASE + Duration::from_secs(1);
    outbox.reach(later).await;
    let taken = store.claim("w5", LEASE, 10, later).await.unwrap();
    assert_eq!(taken.iter().map(|c| c.message.id).collect::<Vec<_>>(), [b]);
    assert!(
        !store
            .complete(
                b,
                "w3",
                Completion::Sent {
                    reply: "250".into()
                },
                later
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .complete(
                b,
                "w5",
                Completion::Sent {
                    reply: "250".into()
                },
                later
            )
            .await
            .unwrap()
    );

    // Retry a dead one by hand: attempts and age count afresh.
    let t1 = t0 + Duration::from_secs(3600);
    assert!(store.retry(c, t1).await.unwrap());
    let m = store
        .list(false)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == c)
        .unwrap();
    assert_eq!((m.status, m.attempts), (Status::Queued, 0));
    assert_eq!(next_ms(m.age_from), next_ms(t1));
    assert!(
        !store.retry(a, t1).await.unwrap(),
        "a sent message is not retried"
    );
    assert!(!store.retry(9_999_999, t1).await.unwrap());

    // retry --dead
    let d = store.enqueue(message(4)).await.unwrap();
    let got = store.claim_one(d, "w1", LEASE, t1).await.unwrap().unwrap();
    assert!(
        store
            .complete(
                got.message.id,
                "w1",
                Completion::Dead { error: "x".into() },
                t1
            )
            .await
            .unwrap()
    );
    assert_eq!(store.retry_dead(t1).await.unwrap(), 1);

    // Many completions at once; only the lease owner's count.
    let f = store.enqueue(message(6)).await.unwrap();
    let g = store.enqueue(message(7)).await.unwrap();
    let h = store.enqueue(message(8)).await.unwrap();
    for id in [f, g] {
        store.claim_one(id, "wm", LEASE, t1).await.unwrap().unwrap();
    }
    store
        .claim_one(h, "other", LEASE, t1)
        .await
        .unwrap()
        .unwrap();
    let kept = store
        .complete_many(
            "wm",
            &[
                (
                    f,
                    Completion::Sent {
                        reply: "250".into(),
                    },
                ),
                (
                    g,
                    Completion::Dead {
                        error: "550 gone".into(),
                    },
                ),
                (
                    h,
                    Completion::Sent {
                        reply: "250".into(),
                    },
                ),
            ],
            t1,
        )
        .await
        .unwrap();
    assert_eq!(kept, [true, true, false]);
    let all = store.list(true).await.unwrap();
    let status = |id| all.iter().find(|m| m.id == id).unwrap().status;
    assert_eq!(
        (status(f), status(g), status(h)),
        (Status::Sent, Status::Dead, Status::Sending)
    );
    assert_eq!(
        all.iter()
            .find(|m| m.id == g)
            .unwrap()
            .last_error
            .as_deref(),
        Some("550 gone")
    );
    store.release(&[h], "other").await.unwrap();
    for id in [f, g, h] {
        store.delete(id).await.unwrap();
    }

    // Release: claimed but not started, given back due, the attempt not counted.
    let e = store.enqueue(message(5)).await.unwrap();
    let got = store.claim_one(e, "w9", LEASE, t1).await.unwrap().unwrap();
    assert_eq!(got.message.attempts, 1);
    assert_eq!(store.release(&[e], "someone-else").await.unwrap(), 0);
    assert_eq!(store.release(&[e], "w9").await.unwrap(), 1);
    let m = store
        .list(false)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == e)
        .unwrap();
    assert_eq!((m.status, m.attempts), (Status::Queued, 0));
    assert!(store.delete(e).await.unwrap());

    // Delete and purge.
    assert!(store.delete(d).await.unwrap());
    assert!(!store.delete(d).await.unwrap());
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.queued, stats.sending, stats.sent, stats.dead),
        (1, 0, 2, 0)
    );
    assert_eq!(
        store
            .purge_sent(SystemTime::now() + Duration::from_secs(3600 * 24 * 400))
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.stats().await.unwrap().sent, 0);
}

/// Times are kept at least to the millisecond (the SQL stores keep
/// milliseconds): compared at that precision.
fn next_ms(t: SystemTime) -> SystemTime {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
}

/// Many workers claiming at once never get the same message.
pub async fn concurrent_claims_are_exclusive(outbox: &Outbox<'_>, n: usize, workers: usize) {
    let store = outbox.store();
    for i in 0..n {
        store.enqueue(message(i)).await.unwrap();
    }
    let now = SystemTime::now() + Duration::from_secs(1);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim(&format!("w{w}"), LEASE, 7, now).await.unwrap();
                if got.is_empty() {
                    break;
                }
                for c in got {
                    mine.push(c.message.id);
                    assert!(
                        store
                            .complete(
                                c.message.id,
                                &format!("w{w}"),
                                Completion::Sent {
                                    reply: "250".into()
                                },
                                now
                            )
                            .await
                            .unwrap()
                    );
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a message was claimed twice");
    assert_eq!(all.len(), n);
}

/// Per-recipient state: a completion with records keeps them; the message
/// stays queued while a recipient is due; `retry` makes only the dead ones
/// due again; stats count recipients.
pub async fn per_recipient(outbox: &Outbox<'_>) {
    let store = outbox.store();
    use mailgate_core::outbox::RecipientRecord;
    use mailgate_core::outbox::{DsnRequest, Notify, RecipientRequest};
    let mut new = message(1);
    new.to = vec![
        "good@example.com".into(),
        "bad@example.com".into(),
        "later@example.com".into(),
    ];
    // What the sender asked of DSNs is kept as it was given.
    let request = DsnRequest {
        ret_full: true,
        envid: Some("QQ314159".into()),
        recipients: vec![
            RecipientRequest {
                address: "good@example.com".into(),
                notify: Some(Notify {
                    success: true,
                    failure: true,
                    delay: false,
                }),
                orcpt: Some("team@example.com".into()),
            },
            RecipientRequest {
                address: "bad@example.com".into(),
                notify: Some(Notify::default()),
                orcpt: None,
            },
        ],
    };
    new.dsn = Some(request.clone());
    let id = store.enqueue(new).await.unwrap();
    let listed = store.list(false).await.unwrap();
    assert_eq!(
        listed.iter().find(|m| m.id == id).unwrap().dsn,
        Some(request)
    );
    let t0 = SystemTime::now() + Duration::from_secs(1);
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.recipients.queued,
            stats.recipients.sent,
            stats.recipients.dead
        ),
        (3, 0, 0)
    );
    let claimed = store.claim("w1", LEASE, 10, t0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(claimed[0].message.finished.is_empty());
    assert_eq!(claimed[0].message.due(), claimed[0].message.to);
    let record = |address: &str, status, reply: &str| RecipientRecord {
        address: address.into(),
        status,
        reply: Some(reply.into()),
        attempts: 1,
    };
    let finished = vec![
        record("good@example.com", Status::Sent, "250 2.0.0 queued as A1"),
        record("bad@example.com", Status::Dead, "550 5.1.1 no such user"),
    ];
    let next = t0 + Duration::from_secs(30);
    let completion = Completion::Recipients {
        finished: finished.clone(),
        next_attempt: Some(next),
        error: "452 4.2.2 mailbox full".into(),
        delay_warned: Vec::new(),
    };
    assert_eq!(completion.status(), Status::Queued);
    assert!(store.complete(id, "w1", completion, t0).await.unwrap());

    let listed = store.list(false).await.unwrap();
    let m = listed.iter().find(|m| m.id == id).expect("listed");
    assert_eq!(m.status, Status::Queued);
    assert_eq!(m.finished, finished);
    assert_eq!(m.due(), ["later@example.com"]);
    let states = m.recipients();
    let by = |a: &str| states.iter().find(|s| s.address == a).unwrap().clone();
    assert_eq!(by("good@example.com").status, Status::Sent);
    assert_eq!(by("bad@example.com").status, Status::Dead);
    assert_eq!(
        by("bad@example.com").last_error.as_deref(),
        Some("550 5.1.1 no such user")
    );
    assert_eq!(by("later@example.com").status, Status::Queued);
    assert_eq!(
        by("later@example.com").last_error.as_deref(),
        Some("452 4.2.2 mailbox full")
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.recipients.queued,
            stats.recipients.sent,
            stats.recipients.dead
        ),
        (1, 1, 1)
    );

    // The next attempt is for `later` alone; it is sent: the message is
    // dead (one recipient is), the records stay.
    outbox.reach(next).await;
    let claimed = store.claim("w1", LEASE, 10, next).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message.due(), ["later@example.com"]);
    let sent = Completion::Sent {
        reply: "250 ok".into(),
    };
    assert!(store.complete(id, "w1", sent, next).await.unwrap());
    let m = store
        .list(true)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .unwrap();
    assert_eq!(m.status, Status::Sent, "a plain Sent marks the rest sent");
    assert!(m.due().is_empty());

    // A message whose last recipients die is dead; retry makes only the
    // dead recipients due again.
    let mut new = message(2);
    new.to = vec!["good@example.com".into(), "bad@example.com".into()];
    let id = store.enqueue(new).await.unwrap();
    let claimed = store.claim("w1", LEASE, 10, next).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let completion = Completion::Recipients {
        finished: finished.clone(),
        next_attempt: None,
        error: "550 5.1.1 no such user".into(),
        delay_warned: Vec::new(),
    };
    assert_eq!(completion.status(), Status::Dead);
    assert!(store.complete(id, "w1", completion, next).await.unwrap());
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.dead, 1);
    assert!(store.retry(id, next).await.unwrap());
    let m = store
        .list(false)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .unwrap();
    assert_eq!(m.status, Status::Queued);
    assert_eq!(m.due(), ["bad@example.com"], "the sent one stays sent");
    assert_eq!(m.finished.len(), 1);
    assert_eq!(m.finished[0].status, Status::Sent);
    // The same through retry_dead.
    let claimed = store.claim("w1", LEASE, 10, next).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let completion = Completion::Recipients {
        finished: finished.clone(),
        next_attempt: None,
        error: "550".into(),
        delay_warned: Vec::new(),
    };
    assert!(store.complete(id, "w1", completion, next).await.unwrap());
    assert_eq!(store.retry_dead(next).await.unwrap(), 1);
    let m = store
        .list(false)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .unwrap();
    assert_eq!(m.due(), ["bad@example.com"]);
}

/// A recipient still due whose delay was reported keeps that through
/// deferrals and restarts; it counts as queued; a retry by hand keeps it;
/// the final completion drops it.
pub async fn delay_reports_are_recipient_state(outbox: &Outbox<'_>) {
    let store = outbox.store();
    use mailgate_core::outbox::RecipientRecord;
    let mut new = message(1);
    new.to = vec![
        "good@example.com".into(),
        "slow@example.com".into(),
        "late@example.com".into(),
    ];
    let id = store.enqueue(new).await.unwrap();
    let t0 = SystemTime::now() + Duration::from_secs(1);
    let claimed = store.claim("w1", LEASE, 10, t0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(claimed[0].message.delay_warned.is_empty());
    let good = RecipientRecord {
        address: "good@example.com".into(),
        status: Status::Sent,
        reply: Some("250 ok".into()),
        attempts: 1,
    };
    let next = t0 + Duration::from_secs(30);
    let completion = Completion::Recipients {
        finished: vec![good.clone()],
        next_attempt: Some(next),
        error: "451 4.3.0 later".into(),
        delay_warned: vec!["slow@example.com".into()],
    };
    assert_eq!(completion.status(), Status::Queued);
    assert!(store.complete(id, "w1", completion, t0).await.unwrap());
    let listed = store.list(false).await.unwrap();
    let m = listed.iter().find(|m| m.id == id).unwrap();
    assert_eq!(m.finished, std::slice::from_ref(&good));
    assert_eq!(m.delay_warned, ["slow@example.com"]);
    assert_eq!(m.due(), ["slow@example.com", "late@example.com"]);
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.recipients.queued,
            stats.recipients.sent,
            stats.recipients.dead
        ),
        (2, 1, 0),
        "a reported delay is still a queued recipient"
    );

    // A plain deferral leaves the state alone; the claim reads it back.
    outbox.reach(next).await;
    let claimed = store.claim("w1", LEASE, 10, next).await.unwrap();
    assert_eq!(claimed[0].message.delay_warned, ["slow@example.com"]);
    let retry = Completion::Retry {
        error: "connection refused".into(),
        next_attempt: next,
    };
    assert!(store.complete(id, "w1", retry, next).await.unwrap());
    // A retry by hand keeps it: a second notice is not owed.
    assert!(store.retry(id, next).await.unwrap());
    let claimed = store.claim("w1", LEASE, 10, next).await.unwrap();
    assert_eq!(claimed[0].message.delay_warned, ["slow@example.com"]);
    assert_eq!(claimed[0].message.finished, std::slice::from_ref(&good));

    // Done: the records replace the reported delays.
    let done = Completion::Recipients {
        finished: vec![
            good,
            RecipientRecord {
                address: "slow@example.com".into(),
                status: Status::Sent,
                reply: Some("250 ok".into()),
                attempts: 3,
            },
            RecipientRecord {
                address: "late@example.com".into(),
                status: Status::Sent,
                reply: Some("250 ok".into()),
                attempts: 3,
            },
        ],
        next_attempt: None,
        error: String::new(),
        delay_warned: Vec::new(),
    };
    assert!(store.complete(id, "w1", done, next).await.unwrap());
    let m = store
        .list(true)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .unwrap();
    assert_eq!(m.status, Status::Sent);
    assert!(m.delay_warned.is_empty());
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.recipients.queued,
            stats.recipients.sent,
            stats.recipients.dead
        ),
        (0, 3, 0)
    );
}

/// A sent message keeps its header section and size, not its body (unless
/// the store keeps bodies); a dead one keeps everything, so that `retry`
/// sends it whole. `dropping` and `keeping` are two stores on one outbox,
/// the second opened with `mailgate.outbox.keepSentBodies=true`.
pub async fn sent_messages_keep_their_headers_only(outbox: &Outbox<'_>) {
    let dropping = outbox.store();
    let keeping = outbox.store_keeping_bodies();
    let header = "From: app@example.org\r\nSubject: big\r\nMessage-ID: <big@example.org>\r\n\r\n";
    let body = "line of the body\r\n\r\n".repeat(4096);
    let big = |n: usize| NewMessage {
        bytes: format!("{header}{body}").into_bytes(),
        ..message(n)
    };
    let whole = big(0).bytes.len() as u64;
    let t = SystemTime::now() + Duration::from_secs(1);
    let find = |store: Arc<dyn OutboxStore>, id| async move {
        store
            .list(true)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.id == id)
            .unwrap()
    };

    // Marked sent alone, through a batch, and with per-recipient records.
    let a = dropping.enqueue(big(1)).await.unwrap();
    let b = dropping.enqueue(big(2)).await.unwrap();
    let c = dropping.enqueue(big(3)).await.unwrap();
    let dead = dropping.enqueue(big(4)).await.unwrap();
    let claimed = dropping.claim("w1", LEASE, 10, t).await.unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(claimed.iter().all(|c| !c.message.body_dropped));
    let sent = Completion::Sent {
        reply: "250 ok".into(),
    };
    assert!(dropping.complete(a, "w1", sent, t).await.unwrap());
    assert_eq!(dropping.complete_sent("w1", &[b], t).await.unwrap(), [b]);
    let records = message(3)
        .to
        .iter()
        .map(|address| mailgate_core::outbox::RecipientRecord {
            address: address.clone(),
            status: Status::Sent,
            reply: Some("250 ok".into()),
            attempts: 1,
        })
        .collect();
    let all_sent = Completion::Recipients {
        finished: records,
        next_attempt: None,
        error: String::new(),
        delay_warned: Vec::new(),
    };
    assert_eq!(all_sent.status(), Status::Sent);
    assert!(dropping.complete(c, "w1", all_sent, t).await.unwrap());
    let gone = Completion::Dead {
        error: "550 no".into(),
    };
    assert!(dropping.complete(dead, "w1", gone, t).await.unwrap());
    for id in [a, b, c] {
        let m = find(Arc::clone(&dropping), id).await;
        assert_eq!(m.status, Status::Sent);
        assert!(m.body_dropped, "{id}");
        assert_eq!(m.size, whole, "the size of the whole message is kept");
    }
    let m = find(Arc::clone(&dropping), dead).await;
    assert!(!m.body_dropped, "a dead message keeps its body");

    // The dead one, sent after a retry by hand, comes back whole first.
    assert!(dropping.retry(dead, t).await.unwrap());
    let claimed = dropping
        .claim_one(dead, "w1", LEASE, t)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.bytes, big(4).bytes);
    // What is left of a sent one: its header section to the blank line.
    let sent = Completion::Sent {
        reply: "250 ok".into(),
    };
    assert!(dropping.complete(dead, "w1", sent, t).await.unwrap());
    assert!(
        !dropping.retry(dead, t).await.unwrap(),
        "a sent message is not retried"
    );
    let m = find(Arc::clone(&dropping), dead).await;
    assert!(m.body_dropped);

    // A store that keeps bodies keeps them.
    let kept = keeping.enqueue(big(5)).await.unwrap();
    let claimed = keeping
        .claim_one(kept, "w2", LEASE, t)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.bytes.len() as u64, whole);
    assert_eq!(
        keeping.complete_sent("w2", &[kept], t).await.unwrap(),
        [kept]
    );
    let m = find(Arc::clone(&keeping), kept).await;
    assert!(!m.body_dropped);
    assert_eq!(m.size, whole);
}

/// A claim holds the bodies it returns: their sizes add up to at most
/// `CLAIM_MAX_BYTES` (the first message always), whatever `limit` says.
pub async fn claims_are_bounded_in_bytes(outbox: &Outbox<'_>) {
    let store = outbox.store();
    use mailgate_core::outbox::CLAIM_MAX_BYTES;
    let big = usize::try_from(CLAIM_MAX_BYTES).unwrap() / 3 + 1024 * 1024;
    for n in 0..3 {
        let mut new = message(n);
        let mut bytes = format!("Subject: big {n}\r\n\r\n").into_bytes();
        bytes.resize(big, b'x');
        new.bytes = bytes;
        store.enqueue(new).await.unwrap();
    }
    let now = SystemTime::now() + Duration::from_secs(1);
    let first = store.claim("w1", LEASE, 10, now).await.unwrap();
    assert_eq!(first.len(), 2, "two fit in the budget, the third does not");
    let held: usize = first.iter().map(|c| c.bytes.len()).sum();
    assert!(held as i64 <= CLAIM_MAX_BYTES, "{held}");
    assert!(first.iter().all(|c| c.bytes.len() == big));
    let second = store.claim("w2", LEASE, 10, now).await.unwrap();
    assert_eq!(second.len(), 1, "the rest comes in the next claim");
    // A message bigger than the budget on its own is still claimed.
    let mut huge = message(9);
    let mut bytes = b"Subject: huge\r\n\r\n".to_vec();
    bytes.resize(usize::try_from(CLAIM_MAX_BYTES).unwrap() + 1, b'y');
    huge.bytes = bytes;
    store.enqueue(huge).await.unwrap();
    let later = SystemTime::now() + Duration::from_secs(1);
    let alone = store.claim("w3", LEASE, 10, later).await.unwrap();
    assert_eq!(alone.len(), 1);
    assert_eq!(alone[0].bytes.len() as i64, CLAIM_MAX_BYTES + 1);
}
