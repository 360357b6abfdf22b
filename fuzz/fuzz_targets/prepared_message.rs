//! A prepared message (`send --raw`, `sendmail`, the relay's DATA) through
//! everything that reads it: no panic; a completed message has no header
//! line over 998 octets and no Bcc header field, and converted for a 7-bit
//! server it is 7-bit with no line over 998 octets; what `check_exact`
//! lets through has CRLF line ends and no line over 998 octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_core::Mailbox;
use mailgate_core::message::{convert, raw};

fuzz_target!(|data: &[u8]| {
    let from: Mailbox = "alm@example.com".parse().unwrap();
    let _ = raw::header_recipients(data);
    let _ = raw::subject_and_message_id(data);
    let _ = raw::rewrite_from(data, &from);
    // What send_raw_exact lets through has CRLF line ends only and no line
    // over 998 octets.
    if raw::check_exact(data).is_ok() {
        let lines = data.split(|b| *b == b'\n').count();
        for (i, line) in data.split(|b| *b == b'\n').enumerate() {
            assert!(i + 1 == lines || line.ends_with(b"\r"), "a bare LF let through");
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(!line.contains(&b'\r'), "a lone CR let through");
            assert!(line.len() <= 998, "a line of {} octets let through", line.len());
        }
    }
    let completion = raw::Completion {
        from: Some(&from),
        message_id_domain: "example.com",
    };
    if let Ok(out) = raw::complete(data, &completion) {
        // The header as mailgate reads it (a body line may say "Bcc:").
        let section = raw::HeaderSection::parse(&out);
        assert!(!section.fields.iter().any(|f| f.is("bcc")), "Bcc kept");
        for line in out[..section.body_start].split(|b| *b == b'\n') {
            assert!(line.len() <= 999, "a header line of {} octets", line.len());
        }
        // Long body lines are converted when sent.
        let seven_bit = convert::Upstream {
            eight_bit_mime: false,
            smtputf8: false,
        };
        if let Ok(fitted) = convert::fit(&out, seven_bit) {
            for line in fitted.split(|b| *b == b'\n') {
                assert!(line.len() <= 999, "a converted line of {} octets", line.len());
            }
        }
    }
});
