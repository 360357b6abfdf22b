//! A prepared message (`send --raw`, `sendmail`, the relay's DATA) through
//! everything that reads it: no panic, and a completed message has no line
//! over 998 octets and no Bcc header field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_core::Mailbox;
use mailgate_core::message::raw;

fuzz_target!(|data: &[u8]| {
    let from: Mailbox = "alm@example.com".parse().unwrap();
    let _ = raw::header_recipients(data);
    let _ = raw::subject_and_message_id(data);
    let _ = raw::rewrite_from(data, &from);
    let completion = raw::Completion {
        from: Some(&from),
        message_id_domain: "example.com",
    };
    if let Ok(out) = raw::complete(data, &completion) {
        // complete() checks the body it kept; the full check agrees.
        assert!(raw::check_body_lines(&out).is_ok());
        for line in out.split(|b| *b == b'\n') {
            assert!(line.len() <= 999, "a line of {} octets", line.len());
        }
        // The header as mailgate reads it (a body line may say "Bcc:").
        let section = raw::HeaderSection::parse(&out);
        assert!(!section.fields.iter().any(|f| f.is("bcc")), "Bcc kept");
    }
});
