//! Converting a prepared message for the upstream (`message::convert`):
//! no panic, and what it returns fits: 7-bit when the server has neither
//! 8BITMIME nor SMTPUTF8, no line over 998 octets; a header address that
//! `non_ascii_header_address` finds is one that `fit` refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_core::message::convert::{Upstream, fit, non_ascii_header_address};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, message)) = data.split_first() else {
        return;
    };
    let upstream = Upstream {
        eight_bit_mime: flags & 1 != 0,
        smtputf8: flags & 2 != 0,
    };
    // What is refused before queueing is what conversion would refuse.
    if non_ascii_header_address(message).is_some() && !upstream.smtputf8 {
        assert!(fit(message, upstream).is_err(), "a non-ASCII local part converted");
    }
    if let Ok(out) = fit(message, upstream) {
        if out.as_ref() == message {
            return;
        }
        for line in out.split(|b| *b == b'\n') {
            assert!(line.len() <= 999, "a line of {} octets", line.len());
        }
        if !upstream.eight_bit_mime && !upstream.smtputf8 {
            assert!(out.is_ascii(), "8-bit bytes left for a 7-bit server");
        }
    }
});
