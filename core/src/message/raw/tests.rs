use super::*;

#[test]
fn exact_messages_need_crlf_and_short_lines_only() {
    let ok = b"DKIM-Signature: v=1; a=rsa-sha256\r\nBcc: x@example.com\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n.\r\n";
    check_exact(ok).unwrap();
    check_exact(b"").unwrap();
    check_exact(b"Subject: no end").unwrap();
    let lf = check_exact(b"Subject: a\r\n\r\nbody\nmore\r\n").unwrap_err();
    assert_eq!(lf.exit_code(), 65);
    assert!(lf.to_string().contains("line 3 ends in a bare LF"), "{lf}");
    let cr = check_exact(b"Subject: a\rb\r\n").unwrap_err();
    assert!(
        cr.to_string().contains("line 1 ends in a CR without LF"),
        "{cr}"
    );
    let cr_at_end = check_exact(b"Subject: a\r").unwrap_err();
    assert!(
        cr_at_end.to_string().contains("CR without LF"),
        "{cr_at_end}"
    );
    let mut long = b"Subject: a\r\n\r\n".to_vec();
    long.extend(std::iter::repeat_n(b'x', MAX_LINE));
    long.extend_from_slice(b"\r\n");
    check_exact(&long).unwrap();
    long.insert(20, b'x');
    let e = check_exact(&long).unwrap_err();
    assert!(e.to_string().contains("line 3 is 999 octets"), "{e}");
    let long_header = format!("X-Long: {}\r\n\r\n", "y".repeat(MAX_LINE));
    let e = check_exact(long_header.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("line 1 is 1006 octets"), "{e}");
}

#[test]
fn subject_and_message_id_read_past_a_long_trace() {
    let received = "Received: from a (b [192.0.2.1]) by c (mailgate) with ESMTP id X\r\n for <d@example.com>; Tue, 01 Dec 2026 20:30:42 +0000\r\n";
    let m = format!(
        "{}Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n folded\r\nMessage-ID: <a.b@example.com>\r\nX-Other: x\r\n\r\nSubject: body\r\n",
        received.repeat(40)
    );
    assert_eq!(
        subject_and_message_id(m.as_bytes()),
        (
            "Grüße folded".to_owned(),
            Some("<a.b@example.com>".to_owned())
        )
    );
    // A last field without a line end still counts.
    assert_eq!(
        subject_and_message_id(b"Subject: last"),
        ("last".to_owned(), None)
    );
    assert_eq!(subject_and_message_id(b""), (String::new(), None));
}

#[test]
fn header_section_byte_for_byte() {
    let msg = b"Subject: a\r\n b\r\nTo: x@y\nX-Empty:\r\n\r\nbody\r\n";
    let s = HeaderSection::parse(msg);
    assert_eq!(s.fields.len(), 3);
    assert_eq!(
        &msg[s.fields[0].start..s.fields[0].end],
        b"Subject: a\r\n b\r\n"
    );
    assert_eq!(&msg[s.body_start..], b"body\r\n");
    assert!(s.has_separator);
    let s = HeaderSection::parse(b"just a body line\n");
    assert!(s.fields.is_empty() && s.body_start == 0 && !s.has_separator);
}

#[test]
fn added_fields_go_below_the_trace_fields() {
    let msg = b"Received: from a\r\n\tby b; date\r\nReturn-Path: <x@y>\r\nReceived: c\r\nSubject: s\r\nReceived: late\r\n\r\nb\r\n";
    let c = Completion {
        message_id_domain: "example.com",
        ..Completion::default()
    };
    let out = String::from_utf8(complete(msg, &c).unwrap()).unwrap();
    let head = "Received: from a\r\n\tby b; date\r\nReturn-Path: <x@y>\r\nReceived: c\r\nDate: ";
    assert!(out.starts_with(head), "{out}");
    assert!(
        out.ends_with("MIME-Version: 1.0\r\nSubject: s\r\nReceived: late\r\n\r\nb\r\n"),
        "{out}"
    );
    assert_eq!(HeaderSection::parse(b"Subject: s\r\n\r\n").trace_end(), 0);
}

#[test]
fn complete_adds_only_what_is_missing() {
    let from: Mailbox = "Alm <alm@bücher.example>".parse().unwrap();
    let c = Completion {
        from: Some(&from),
        message_id_domain: "example.com",
    };
    let msg = b"Subject: hi\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\n";
    let out = String::from_utf8(complete(msg, &c).unwrap()).unwrap();
    assert!(out.starts_with("Message-ID: <"), "{out}");
    assert!(out.contains("@example.com>\r\nMIME-Version: 1.0\r\nFrom: Alm <alm@xn--bcher-kva.example>\r\nSubject: hi\r\n"), "{out}");
    assert_eq!(out.matches("Date:").count(), 1);
    let with_bcc = complete(b"Bcc: hidden@example.com\r\nSubject: s\r\n\r\nb", &c).unwrap();
    assert!(!String::from_utf8(with_bcc).unwrap().contains("hidden@"));
    assert!(out.ends_with("\r\n\r\nbody\n"), "body untouched: {out:?}");

    let out = String::from_utf8(complete(b"no headers here\n", &c).unwrap()).unwrap();
    assert!(
        out.ends_with("From: Alm <alm@xn--bcher-kva.example>\r\n\r\nno headers here\n"),
        "{out:?}"
    );
}

#[test]
fn long_header_lines_fold_at_whitespace_or_fail_by_name() {
    let long_to = format!(
        "To: {}\r\n\r\nb",
        (0..80)
            .map(|i| format!("u{i}@example.com"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let out = fold_header_lines(long_to.as_bytes().to_vec(), None).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.split("\r\n").all(|l| l.len() <= MAX_LINE), "{text}");
    let unfolded = text.replace("\r\n ", " ");
    assert_eq!(unfolded, long_to);

    let soft = fold_header_lines(long_to.as_bytes().to_vec(), Some(SOFT_LINE)).unwrap();
    let soft = String::from_utf8(soft).unwrap();
    assert!(soft.split("\r\n").all(|l| l.len() <= SOFT_LINE), "{soft}");
    assert_eq!(soft.replace("\r\n ", " "), long_to);

    let unfoldable = format!("X-Long: {}\r\n\r\nb", "x".repeat(2000));
    let err = fold_header_lines(unfoldable.as_bytes().to_vec(), None).unwrap_err();
    assert!(
        err.to_string().contains("`X-Long` header has a line of"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 65);
}

#[test]
fn long_body_lines_are_refused_with_their_number() {
    let msg = format!("Subject: s\r\n\r\nok\r\n{}\r\n", "y".repeat(999));
    let err = check_body_lines(msg.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("body line 2 is 999 octets"),
        "{err}"
    );
}

#[test]
fn bcc_removed_and_recipients_read() {
    let msg = b"To: A <a@example.com>, b@example.com\r\nCc: undisclosed-recipients:;\r\nBcc: secret@example.com,\r\n other@example.com\r\nCc: \"Doe, J\" <j@example.com>\r\nSubject: x\r\n\r\nBcc: stays in the body\r\n";
    let rcpts = header_recipients(msg).unwrap();
    assert_eq!(
        rcpts,
        [
            "a@example.com",
            "b@example.com",
            "j@example.com",
            "secret@example.com",
            "other@example.com"
        ]
    );
    let out = String::from_utf8(remove_fields(msg, "bcc")).unwrap();
    assert!(!out.contains("secret@") && !out.contains("other@"), "{out}");
    assert!(
        out.ends_with("Subject: x\r\n\r\nBcc: stays in the body\r\n"),
        "{out}"
    );
}

#[test]
fn from_rewritten_to_the_sender_with_the_author_as_reply_to() {
    let sender: Mailbox = "alm@contoso.com".parse().unwrap();
    let msg = b"Subject: s\r\nFrom: Printer <printer@lab.local>\r\nTo: a@x\r\n\r\nbody\r\n";
    let out = String::from_utf8(rewrite_from(msg, &sender)).unwrap();
    assert_eq!(
        out,
        "From: alm@contoso.com\r\nReply-To: Printer <printer@lab.local>\r\nSubject: s\r\nTo: a@x\r\n\r\nbody\r\n"
    );
    let with_reply = b"From: p@lab\r\nReply-To: team@lab\r\n\r\nb";
    let out = String::from_utf8(rewrite_from(with_reply, &sender)).unwrap();
    assert_eq!(out, "From: alm@contoso.com\r\nReply-To: team@lab\r\n\r\nb");
    let none = String::from_utf8(rewrite_from(b"just body\n", &sender)).unwrap();
    assert_eq!(none, "From: alm@contoso.com\r\n\r\njust body\n");
}

#[test]
fn rewrite_from_takes_obsolete_syntax_and_leaves_one_from_and_one_reply_to() {
    let sender: Mailbox = "alm@contoso.com".parse().unwrap();
    let obsolete = b"Received: from x\r\nFrom : CEO <ceo@x.example>\r\nSubject\t: s\r\n\r\nb\r\n";
    let out = String::from_utf8(rewrite_from(obsolete, &sender)).unwrap();
    assert_eq!(
        out,
        "Received: from x\r\nFrom: alm@contoso.com\r\nReply-To: CEO <ceo@x.example>\r\nSubject\t: s\r\n\r\nb\r\n"
    );
    let two = b"From: A <a@x>\r\nTo: t@x\r\nFrom:\r\n B <b@x>\r\n\r\nb";
    let out = String::from_utf8(rewrite_from(two, &sender)).unwrap();
    assert_eq!(
        out,
        "From: alm@contoso.com\r\nReply-To: A <a@x>,\r\n B <b@x>\r\nTo: t@x\r\n\r\nb"
    );
    let replies = b"From: a@x\r\nReply-To: r1@x\r\nReply-To : r2@x\r\n\r\nb";
    let out = String::from_utf8(rewrite_from(replies, &sender)).unwrap();
    assert_eq!(
        out,
        "From: alm@contoso.com\r\nReply-To: r1@x, r2@x\r\n\r\nb"
    );
    let section = HeaderSection::parse(obsolete);
    assert_eq!(section.fields[1].name, "From");
    assert_eq!(
        section.fields[1].value(obsolete),
        b" CEO <ceo@x.example>\r\n"
    );
}

#[test]
fn owned_messages_are_completed_and_rewritten_in_their_own_buffer() {
    let from: Mailbox = "alm@example.com".parse().unwrap();
    let c = Completion {
        from: Some(&from),
        message_id_domain: "example.com",
    };
    let body = "line of the body\r\n".repeat(1000);
    for text in [
        format!("Received: x\r\nBcc: b@x\r\nSubject: s\r\n\r\n{body}"),
        format!("Subject: s\r\nnot a header\r\n{body}"),
        body.clone(),
        String::new(),
    ] {
        let mut buffer = Vec::with_capacity(text.len() + 1024);
        buffer.extend_from_slice(text.as_bytes());
        let at = buffer.as_ptr();
        let owned = complete_owned(buffer, &c).unwrap();
        assert_eq!(owned.as_ptr(), at, "moved to another buffer");
        let copied = complete(text.as_bytes(), &c).unwrap();
        // Date and Message-ID differ between two runs: compare around them.
        let mask = |m: &[u8]| {
            String::from_utf8_lossy(m)
                .lines()
                .filter(|l| !l.starts_with("Date:") && !l.starts_with("Message-ID:"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(mask(&owned), mask(&copied), "{text:?}");
        let rewritten = rewrite_from_owned(owned.clone(), &from);
        assert_eq!(rewritten, rewrite_from(&owned, &from));
        let mut buffer = Vec::with_capacity(owned.len() + 1024);
        buffer.extend_from_slice(&owned);
        let at_rewrite = buffer.as_ptr();
        let rewritten = rewrite_from_owned(buffer, &from);
        assert_eq!(rewritten.as_ptr(), at_rewrite);
    }
}

#[test]
fn ids_and_dates() {
    let a = message_id("example.com");
    let b = message_id("example.com");
    assert_ne!(a, b);
    assert!(
        a.starts_with('<') && a.ends_with("@example.com>") && a.len() == 46,
        "{a}"
    );
    let d = rfc5322_date(SystemTime::UNIX_EPOCH);
    assert_eq!(d, "Thu, 01 Jan 1970 00:00:00 +0000");
}
