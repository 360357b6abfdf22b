//! The envelope address grammar (`message::address::envelope_address`),
//! which the relay's MAIL/RCPT, `send`, `sendmail` and the outbox share:
//! no panic, and an address it accepts is taken again as it is (what the
//! relay accepted, the outbox parses).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_core::message::address::envelope_address;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(address) = envelope_address("to", text) {
        let shown: &str = address.as_ref();
        assert_eq!(shown, text);
        let again = envelope_address("to", shown).expect("accepted twice");
        assert_eq!(AsRef::<str>::as_ref(&again), shown);
    }
});
