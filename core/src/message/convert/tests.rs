use super::*;
use mail_parser::MessageParser;

const SEVEN_BIT: Upstream = Upstream {
    eight_bit_mime: false,
    smtputf8: false,
};
const EIGHT_BIT: Upstream = Upstream {
    eight_bit_mime: true,
    smtputf8: false,
};

fn fitted(message: &str, upstream: Upstream) -> Vec<u8> {
    fit(message.as_bytes(), upstream)
        .expect("fits")
        .into_owned()
}

fn lines_ok(bytes: &[u8]) {
    assert!(!has_long_line(bytes), "a line over 998 octets");
    let text = String::from_utf8_lossy(bytes);
    for line in text.split("\r\n") {
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "bare line end in {line:?}"
        );
    }
}

#[test]
fn what_fits_is_not_copied() {
    let m = "Subject: hi\r\n\r\nplain text\r\n";
    assert!(matches!(
        fit(m.as_bytes(), SEVEN_BIT).unwrap(),
        Cow::Borrowed(_)
    ));
    let m = "Subject: caf\u{e9}\r\n\r\ncaf\u{e9}\r\n";
    let both = Upstream {
        eight_bit_mime: true,
        smtputf8: true,
    };
    assert!(matches!(fit(m.as_bytes(), both).unwrap(), Cow::Borrowed(_)));
}

#[test]
fn an_8bit_body_without_mime_becomes_quoted_printable_text() {
    let m =
        "From: a@example.com\r\nSubject: x\r\n\r\nGr\u{fc}\u{df}e aus K\u{f6}ln\r\nline two\r\n";
    let out = fitted(m, SEVEN_BIT);
    assert!(out.is_ascii());
    lines_ok(&out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        text.contains("Content-Transfer-Encoding: quoted-printable\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{text}"
    );
    let parsed = MessageParser::default().parse(&out).unwrap();
    assert_eq!(
        parsed.body_text(0).unwrap().replace("\r\n", "\n"),
        "Gr\u{fc}\u{df}e aus K\u{f6}ln\nline two\n"
    );
}

#[test]
fn a_long_html_line_is_re_encoded_even_with_8bitmime() {
    let html = format!("<p>{}</p>", "caf\u{e9} ".repeat(500));
    let m = format!(
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n"
    );
    let out = fitted(&m, EIGHT_BIT);
    lines_ok(&out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(
        text.matches("Content-Transfer-Encoding").count(),
        1,
        "{text}"
    );
    let parsed = MessageParser::default().parse(&out).unwrap();
    assert_eq!(parsed.body_html(0).unwrap().trim_end(), html);
}

/// A message with LF line ends (as sendmail's callers write them: cron,
/// logwatch) keeps its line breaks when a text part is re-encoded: CRLF
/// hard breaks, as the wire makes them in a part that is not re-encoded,
/// never `=0A` (RFC 2045 §6.7: text line breaks are line breaks).
#[test]
fn a_re_encoded_text_keeps_its_lf_or_cr_line_breaks_as_crlf() {
    let long = "x".repeat(1200);
    for (m, upstream) in [
        (
            format!(
                "To: root\nSubject: report\nMIME-Version: 1.0\nContent-Type: text/plain; charset=\"UTF-8\"\nContent-Transfer-Encoding: 8bit\n\n \nfirst line \n{long} : 1 Time\n\nlast\n"
            ),
            EIGHT_BIT,
        ),
        (
            "Subject: x\n\nGr\u{fc}\u{df}e\nline two\rline three\r\n".to_owned(),
            SEVEN_BIT,
        ),
    ] {
        let out = fitted(&m, upstream);
        let text = String::from_utf8(out.clone()).unwrap();
        let body = text.split_once("\n\n").expect("a body").1;
        assert!(!body.contains("=0A") && !body.contains("=0D"), "{body}");
        lines_ok(body.as_bytes());
        let parsed = MessageParser::default().parse(&out).unwrap();
        let want = m.split_once("\n\n").unwrap().1;
        let want = want
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace('\n', "\r\n");
        assert_eq!(parsed.body_text(0).unwrap(), want, "{text}");
    }
}

#[test]
fn multipart_parts_are_converted_one_by_one_and_the_rest_is_kept() {
    let attachment = "AAECAwQFBgcICQ==";
    let m = format!(
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nna\u{ef}ve\r\n--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<b>na\u{ef}ve</b>\r\n--b2--\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\u{ff}\u{fe}raw\r\n--b1--\r\nepilogue\r\n"
    );
    let out = fitted(&m, SEVEN_BIT);
    assert!(out.is_ascii());
    lines_ok(&out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        text.contains(&format!("base64\r\n\r\n{attachment}\r\n--b1\r\n")),
        "untouched: {text}"
    );
    assert!(text.starts_with("Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n"));
    assert!(text.ends_with("\r\n--b1--\r\nepilogue\r\n"), "{text}");
    let parsed = MessageParser::default().parse(&out).unwrap();
    assert_eq!(parsed.body_text(0).unwrap(), "na\u{ef}ve");
    assert_eq!(parsed.body_html(0).unwrap(), "<b>na\u{ef}ve</b>");
    let binary: Vec<_> = parsed
        .attachments()
        .map(|a| a.contents().to_vec())
        .collect();
    assert_eq!(binary.len(), 2);
    assert_eq!(binary[0], [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // The line break before a delimiter belongs to the delimiter.
    assert_eq!(binary[1], "\u{ff}\u{fe}raw".as_bytes());
}

#[test]
fn signed_parts_are_kept_or_refused_never_changed() {
    let signed = |inner: &str, outside: &str| {
        format!(
            "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/signed; boundary=s; protocol=\"application/pgp-signature\"\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\n{inner}\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nSIG\r\n--s--\r\n--o\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{outside}\r\n--o--\r\n"
        )
    };
    let m = signed("ascii only", "caf\u{e9}");
    let out = fitted(&m, SEVEN_BIT);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("--s\r\nContent-Type: text/plain\r\n\r\nascii only\r\n--s\r\n"));
    assert!(text.is_ascii());
    let err = fit(signed("caf\u{e9}", "x").as_bytes(), SEVEN_BIT).unwrap_err();
    assert_eq!(err.exit_code(), 65);
    assert!(err.to_string().contains("multipart/signed"), "{err}");
    // A long line inside a signed part is refused whatever the server.
    let long = "x".repeat(1200);
    let both = Upstream {
        eight_bit_mime: true,
        smtputf8: true,
    };
    assert!(fit(signed(&long, "y").as_bytes(), both).is_err());
}

#[test]
fn utf8_header_fields_become_encoded_words_and_a_labels() {
    let m = "From: J\u{f6}rg M\u{fc}ller <joerg@b\u{fc}cher.example>\r\nTo: \"Ren\u{e9}e\" <renee@example.com>, plain@example.com\r\nSubject: R\u{e9}sum\u{e9} for the caf\u{e9}\r\nMessage-ID: <abc@example.com>\r\n\r\nbody\r\n";
    let out = fitted(m, EIGHT_BIT);
    assert!(out.is_ascii(), "{}", String::from_utf8_lossy(&out));
    lines_ok(&out);
    let parsed = MessageParser::default().parse(&out).unwrap();
    assert_eq!(parsed.subject(), Some("R\u{e9}sum\u{e9} for the caf\u{e9}"));
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("J\u{f6}rg M\u{fc}ller"));
    assert_eq!(from.address(), Some("joerg@xn--bcher-kva.example"));
    let to: Vec<_> = parsed
        .to()
        .unwrap()
        .iter()
        .map(|a| a.address().unwrap().to_owned())
        .collect();
    assert_eq!(to, ["renee@example.com", "plain@example.com"]);
    assert_eq!(
        parsed.to().unwrap().first().unwrap().name(),
        Some("Ren\u{e9}e")
    );
    assert_eq!(parsed.message_id(), Some("abc@example.com"));
}

#[test]
fn a_utf8_local_part_needs_smtputf8() {
    let m = "From: j\u{f6}rg@example.com\r\nSubject: x\r\n\r\nb\r\n";
    let err = fit(m.as_bytes(), EIGHT_BIT).unwrap_err();
    assert_eq!(err.exit_code(), 65);
    assert!(err.to_string().contains("SMTPUTF8"), "{err}");
}

#[test]
fn a_utf8_local_part_is_found_in_the_header_section_alone() {
    let m = "Subject: Gr\u{fc}\u{df}e\r\nCc: \"J\u{f6}rg\" <jorg@example.com>,\r\n =?x?= <j\u{f6}rg@b\u{fc}ro.example>\r\n\r\nj\u{f6}rg@x\r\n";
    assert_eq!(
        non_ascii_header_address(m.as_bytes()).as_deref(),
        Some("j\u{f6}rg@b\u{fc}ro.example")
    );
    let fine =
        "Subject: Gr\u{fc}\u{df}e\r\nTo: \"J\u{f6}rg\" <jorg@b\u{fc}ro.example>\r\n\r\nb\r\n";
    assert_eq!(non_ascii_header_address(fine.as_bytes()), None);
}

#[test]
fn nested_messages_are_converted_inside() {
    let m = "Subject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\u{e9}t\u{e9}\r\n";
    let out = fitted(m, SEVEN_BIT);
    assert!(out.is_ascii());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Subject: inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9t=C3=A9\r\n"), "{text}");
}

#[test]
fn check_fits_says_what_fit_says_without_the_copy() {
    let both = Upstream {
        eight_bit_mime: true,
        smtputf8: true,
    };
    let long = "x".repeat(1200);
    let signed =
        format!("Content-Type: multipart/signed; boundary=s\r\n\r\n--s\r\n\r\n{long}\r\n--s--\r\n");
    let cases = [
        "Subject: hi\r\n\r\nplain\r\n".to_owned(),
        format!("Subject: x\r\n\r\n{long}\r\n"),
        signed,
        format!("X-Opaque-{long}: caf\u{e9}\r\n\r\nb"),
        format!("Message-ID: <{long}\u{e9}@x>\r\n\r\nb"),
        "From: j\u{f6}rg@example.com\r\n\r\nb\r\n".to_owned(),
        format!("{}-%:^?\t)\t\u{c9}%", "h".repeat(985)),
    ];
    for case in &cases {
        for upstream in [SEVEN_BIT, EIGHT_BIT, both] {
            let fitted = fit(case.as_bytes(), upstream);
            let checked = check_fits(case.as_bytes(), upstream);
            assert_eq!(
                fitted.as_ref().err().map(ToString::to_string),
                checked.as_ref().err().map(ToString::to_string),
                "{case:?} {upstream:?}"
            );
        }
    }
    // Line ends split across writes count as in one piece.
    let mut lines = LineCheck::default();
    lines.put(&[b'a'; 998]);
    lines.put(b"\r");
    lines.put(b"\n");
    assert!(!lines.long());
    lines.put(&[b'a'; 999]);
    assert!(lines.long());
}

#[test]
fn hostile_structures_do_not_panic() {
    let deep = format!(
        "Content-Type: multipart/mixed; boundary=a\r\n\r\n{}\u{e9}",
        "--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n".repeat(100)
    );
    let cases = [
        deep,
        "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\n\u{e9}".into(),
        "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n--z\r\n--z--".into(),
        "Content-Type: multipart/mixed\r\n\r\n\u{e9}".into(),
        "\u{e9}".into(),
        "Content-Transfer-Encoding: base64\r\n\r\n\u{e9}=".into(),
        "Subject: \u{e9}\r\n".into(),
        format!("X: y\r\n\r\n{}", "\u{e9}".repeat(2000)),
        // Found by fuzzing: a 985-octet field name with an 8-bit value.
        format!("{}-%:^?\t)\t\u{c9}%", "h".repeat(985)),
    ];
    for case in &cases {
        if let Ok(Cow::Owned(out)) = fit(case.as_bytes(), SEVEN_BIT) {
            assert!(!has_long_line(&out), "{case:?}");
            assert!(out.is_ascii(), "{case:?}");
        }
    }
}
