//! The SMTP reply reader, EHLO parser and cleaner on arbitrary server bytes,
//! fed in chunks whose sizes come from the input: no panic, the buffer stays
//! within the line limit, cleaned text holds no control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_core::smtp::{Capabilities, Redactor, ReplyLimits, ReplyReader};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let limits = if seed & 1 == 0 {
        ReplyLimits::default()
    } else {
        ReplyLimits { max_line: 64, max_lines: 8, max_bytes: 256 }
    };
    let chunk = usize::from(seed >> 1) + 1;
    let mut redactor = Redactor::new();
    redactor.protect("s3cret-token~");
    let mut reader = ReplyReader::new(limits);
    for part in bytes.chunks(chunk) {
        reader.extend(part);
        loop {
            match reader.next_reply() {
                Ok(Some(reply)) => {
                    assert!((200..600).contains(&reply.code));
                    let caps = Capabilities::from_ehlo(&reply);
                    let _ = caps.size_limit();
                    let shown = redactor.clean(&reply.to_string());
                    assert!(!shown.chars().any(char::is_control));
                }
                Ok(None) => break,
                Err(e) => {
                    let shown = redactor.clean(&e.to_string());
                    assert!(!shown.chars().any(char::is_control));
                    return;
                }
            }
        }
        assert!(reader.buffered() < limits.max_line);
    }
});
