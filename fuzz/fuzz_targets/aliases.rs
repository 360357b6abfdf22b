//! Parsing an aliases file (`message::aliases`): no panic on any text, and
//! what parses gives every listed name its addresses back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_core::message::aliases::{Aliases, bare_name};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = bare_name(text);
    if let Ok(aliases) = Aliases::parse(text) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, _) = line.split_once(':').expect("parsed lines have a colon");
            let targets = aliases.lookup(Some(name.trim())).expect("a listed name is found");
            assert!(!targets.is_empty());
        }
    }
});
