//! Property tests of the parsers of server bytes: whatever arrives, in
//! whatever chunks, the reply reader never panics, stays within its bounds and
//! gives the same replies; EHLO parsing and cleaning never panic; cleaned
//! text holds no control character. CI runs the default number of cases;
//! `PROPTEST_CASES=100000 cargo test -p mailgate-core --test smtp_props`
//! runs more, and `fuzz/` holds the libFuzzer target for long runs.

use mailgate_core::smtp::{Capabilities, Redactor, ReplyLimits, ReplyReader, encode_data};
use proptest::prelude::*;

/// Bytes that look like SMTP replies often enough to reach deep states.
fn reply_like() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"250-".to_vec()),
        Just(b"250 ".to_vec()),
        Just(b"220 ".to_vec()),
        Just(b"535 5.7.8 ".to_vec()),
        Just(b"354".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b" ".to_vec()),
        Just(b"AUTH PLAIN LOGIN".to_vec()),
        Just(b"AUTH=XOAUTH2".to_vec()),
        Just(b"SIZE 99999999999999999999".to_vec()),
        Just(b"PIPELINING".to_vec()),
        Just(b"\x1b[31m\x07".to_vec()),
        Just("\u{202e}é".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(token, 0..200).prop_map(|t| t.concat())
}

fn small_limits() -> ReplyLimits {
    ReplyLimits {
        max_line: 64,
        max_lines: 8,
        max_bytes: 256,
    }
}

/// Feeds `input` in chunks of the given sizes; returns the replies and the
/// first error, checking the buffer bound after every step.
fn run(
    input: &[u8],
    chunks: &[usize],
    limits: ReplyLimits,
) -> (Vec<mailgate_core::Reply>, Option<String>) {
    let mut reader = ReplyReader::new(limits);
    let mut replies = Vec::new();
    let mut rest = input;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        reader.extend(&rest[..n]);
        rest = &rest[n..];
        loop {
            match reader.next_reply() {
                Ok(Some(reply)) => {
                    assert!((200..600).contains(&reply.code));
                    assert!(reply.lines.len() <= limits.max_lines);
                    let _ = Capabilities::from_ehlo(&reply);
                    replies.push(reply);
                }
                Ok(None) => break,
                Err(e) => return (replies, Some(e.to_string())),
            }
        }
        assert!(
            reader.buffered() < limits.max_line,
            "a pending line never exceeds the line limit"
        );
    }
    (replies, None)
}

proptest! {
    #[test]
    fn chunking_never_changes_the_outcome(
        input in reply_like(),
        chunks in proptest::collection::vec(1usize..100, 1..8),
    ) {
        let whole = run(&input, &[input.len().max(1)], small_limits());
        let split = run(&input, &chunks, small_limits());
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn default_limits_on_arbitrary_bytes(
        input in proptest::collection::vec(any::<u8>(), 0..20_000),
        chunks in proptest::collection::vec(1usize..9000, 1..4),
    ) {
        let _ = run(&input, &chunks, ReplyLimits::default());
    }

    #[test]
    fn cleaned_text_has_no_controls(text in any::<String>(), secret in "[ -~]{4,20}") {
        let mut redactor = Redactor::new();
        redactor.protect(&secret);
        let echoed = format!("{text}{secret}{text}");
        let shown = redactor.clean(&echoed);
        prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
        // Split at each mask so no two pieces join into the secret.
        let masked = redactor.mask(&echoed).replace(mailgate_core::smtp::redact::REDACTED, "\0");
        prop_assert!(!masked.contains(&secret), "{masked:?}");
    }

    #[test]
    fn encoded_data_is_crlf_only(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let out = encode_data(&body);
        prop_assert!(out.ends_with(b".\r\n"));
        for (i, &b) in out.iter().enumerate() {
            if b == b'\n' {
                prop_assert_eq!(i.checked_sub(1).map(|j| out[j]), Some(b'\r'));
            }
            if b == b'\r' {
                prop_assert_eq!(out.get(i + 1), Some(&b'\n'));
            }
        }
        let wire = [b"\r\n".as_slice(), &out].concat();
        let first_end = wire.windows(5).position(|w| w == b"\r\n.\r\n");
        prop_assert_eq!(first_end, Some(wire.len() - 5));
    }
}
